//! Loading a model by hub id, end to end through hf-hub, with no internet.
//!
//! A small HTTP/1.1 server on 127.0.0.1 stands in for the Hugging Face hub: it serves the BERT
//! fixture as the repository `tcat-test/tiny-bert` (or the GPT-2 fixture with a chat template as
//! `tcat-test/tiny-chat`) on the two routes hf-hub's sync API uses (the repository info and
//! `resolve/main/{file}` with `Range`), and records every request. `tcat`
//! runs as a child process with `HF_ENDPOINT` pointing at that server and `HF_HOME` at a fresh
//! folder; the test process's own environment is never changed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const REPO: &str = "tcat-test/tiny-bert";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// What the repository holds (its `siblings`).
const FILES: [&str; 4] = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
/// What loading a BERT encoder with its tokenizer must download (all of it: the tokenizer
/// config is one of the optional side files fetched when the repository has it).
const NEEDED: [&str; 4] = FILES;
const TEXT: &str = "hello world";
/// How long one `tcat` run may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

fn fixture() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bert"))
}

// ---------------------------------------------------------------------------------------------
// The stand-in hub.

/// One request as the server saw it, with the status it answered.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    status: u16,
}

struct Blob {
    name: String,
    bytes: Vec<u8>,
    etag: String,
}

impl Blob {
    fn new(name: &str, bytes: Vec<u8>) -> Self {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        // Hex only: hf-hub names the blob's lock file with `set_extension`, so no dots.
        let etag = format!("{:016x}{:08x}", h.finish(), bytes.len());
        Blob { name: name.to_string(), bytes, etag }
    }
}

/// A hub on 127.0.0.1 serving the fixture as `REPO`; stops when dropped.
struct Hub {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// The BERT fixture as `REPO`.
    fn start() -> Self {
        let blobs = FILES
            .iter()
            .map(|name| {
                let bytes =
                    std::fs::read(fixture().join(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"));
                Blob::new(name, bytes)
            })
            .collect();
        Self::serve(REPO, blobs)
    }

    /// `blobs` as the repository `repo`.
    fn serve(repo: &'static str, blobs: Vec<Blob>) -> Self {
        let blobs = Arc::new(blobs);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (blobs, seen) = (blobs.clone(), seen.clone());
                            workers.push(std::thread::spawn(move || serve(stream, repo, &blobs, &seen)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                // Workers end on their own: every socket has read and write timeouts.
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        Hub { port, stop, seen, thread: Some(thread) }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(stream: TcpStream, repo: &str, blobs: &[Blob], seen: &Mutex<Vec<Seen>>) {
    // An accepted socket may inherit the listener's non-blocking mode on some platforms.
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(SOCKET_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(SOCKET_TIMEOUT)).is_err()
    {
        return;
    }
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return,
    };
    let mut range = None;
    for _ in 0..100 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    let response = respond(&method, &path, range.as_deref(), repo, blobs);
    seen.lock().unwrap().push(Seen { method, path, range, status: response.status });
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
    let mut stream = &stream;
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&response.body));
    let _ = stream.flush();
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Unknown",
    }
}

fn not_found(message: &str) -> Response {
    Response {
        status: 404,
        headers: vec![("Content-Type", "application/json".into())],
        body: serde_json::json!({ "error": message }).to_string().into_bytes(),
    }
}

fn respond(method: &str, path: &str, range: Option<&str>, repo: &str, blobs: &[Blob]) -> Response {
    if method != "GET" {
        return Response { status: 405, headers: vec![("Allow", "GET".into())], body: Vec::new() };
    }
    if path == format!("/api/models/{repo}/revision/main") {
        let siblings: Vec<_> = blobs.iter().map(|b| serde_json::json!({ "rfilename": b.name })).collect();
        let info = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings });
        return Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body: info.to_string().into_bytes(),
        };
    }
    if path.starts_with("/api/") {
        return not_found("Repository not found");
    }
    let Some(name) = path.strip_prefix(&format!("/{repo}/resolve/main/")) else {
        return not_found("Repository not found");
    };
    let Some(blob) = blobs.iter().find(|b| b.name == name) else {
        return not_found("Entry not found");
    };
    let len = blob.bytes.len();
    let mut headers = vec![
        ("ETag", format!("\"{}\"", blob.etag)),
        ("X-Repo-Commit", COMMIT.to_string()),
        ("Accept-Ranges", "bytes".into()),
    ];
    let Some(range) = range else {
        return Response { status: 200, headers, body: blob.bytes.clone() };
    };
    match parse_range(range, len) {
        Some((start, end)) => {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
            Response { status: 206, headers, body: blob.bytes[start..=end].to_vec() }
        }
        None => {
            headers.push(("Content-Range", format!("bytes */{len}")));
            Response { status: 416, headers, body: Vec::new() }
        }
    }
}

/// `bytes=a-b` or `bytes=a-` against a body of `len` bytes, as an inclusive range.
fn parse_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let (start, end) = range.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

// ---------------------------------------------------------------------------------------------
// Running `tcat`.

/// A fresh, empty folder for `HF_HOME`, removed when dropped.
struct TempHome(PathBuf);

impl TempHome {
    fn new(tag: &str) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("tcat-hub-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp HF_HOME");
        TempHome(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp dir is UTF-8")
    }

    /// The hf-hub cache folder of `REPO`.
    fn repo_cache(&self) -> PathBuf {
        self.0.join("hub").join(format!("models--{}", REPO.replace('/', "--")))
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    args: Vec<String>,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert!(self.success, "tcat {:?} failed:\n{}", self.args, self.stderr);
        self
    }

    /// Asserts a clean failure (non-zero exit, no panic) and returns stderr.
    fn fails(self) -> String {
        assert!(!self.success, "tcat {:?} should fail; stdout:\n{}", self.args, self.stdout);
        assert!(!self.stderr.contains("panicked"), "tcat {:?} panicked:\n{}", self.args, self.stderr);
        self.stderr
    }
}

/// Runs `tcat` with a hub environment of its own: `env` on top of a cleared hub and proxy setup
/// (ureq would send even 127.0.0.1 through a proxy from the environment), on the device named
/// by `TCAT_TEST_DEVICE` (the CPU when unset).
fn tcat(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcat"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Ok(device) = std::env::var("TCAT_TEST_DEVICE") {
        cmd.args(["--device", &device]);
    }
    for var in [
        "HF_HOME",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn tcat");
    // Drain both pipes on their own threads so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tcat") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tcat {args:?} did not finish within {RUN_LIMIT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        success: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The one embedding `tcat embed --json TEXT` printed.
fn embedding(run: &Run) -> Vec<f64> {
    let lines: Vec<&str> = run.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line per text expected, got:\n{}", run.stdout);
    let value: serde_json::Value = serde_json::from_str(lines[0]).expect("embed --json prints JSON");
    assert_eq!(value["text"], TEXT);
    let v: Vec<f64> = value["embedding"]
        .as_array()
        .expect("`embedding` is an array")
        .iter()
        .map(|x| x.as_f64().expect("embedding entries are numbers"))
        .collect();
    assert!(!v.is_empty() && v.iter().all(|x| x.is_finite()), "bad embedding {v:?}");
    v
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(max <= 1e-6, "{what}: max abs diff {max:e}");
}

fn embed_fixture() -> Vec<f64> {
    embedding(&tcat(&["embed", "--model", fixture().to_str().unwrap(), "--json", TEXT], &[]).ok())
}

fn hidden_states(file: &Path) -> Vec<f32> {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor("hidden_states").expect("hidden_states written");
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn resolve_path(file: &str) -> String {
    repo_resolve_path(REPO, file)
}

fn repo_resolve_path(repo: &str, file: &str) -> String {
    format!("/{repo}/resolve/main/{file}")
}

fn api_path(repo: &str) -> String {
    format!("/api/models/{repo}/revision/main")
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Online download into a fresh cache, then the warm cache online (no downloads) and offline
/// (no requests at all), each giving the same results as the fixture folder itself.
#[test]
fn hub_id_downloads_into_the_cache_then_works_offline() {
    let hub = Hub::start();
    let home = TempHome::new("online");
    let endpoint = hub.endpoint();
    let online = [("HF_HOME", home.path()), ("HF_ENDPOINT", endpoint.as_str())];
    let want = embed_fixture();

    // 1. Online, cold cache.
    let got = embedding(&tcat(&["embed", "--model", REPO, "--json", TEXT], &online).ok());
    assert_close(&got, &want, "embedding by hub id vs fixture folder");

    let seen = hub.seen();
    assert!(seen.iter().all(|s| s.method == "GET" && (s.status == 200 || s.status == 206)), "requests: {seen:#?}");
    assert_eq!(seen.iter().filter(|s| s.path == api_path(REPO)).count(), 1, "one repo info request: {seen:#?}");
    for file in NEEDED {
        let ranges: Vec<Option<&str>> =
            seen.iter().filter(|s| s.path == resolve_path(file)).map(|s| s.range.as_deref()).collect();
        assert_eq!(ranges, [Some("bytes=0-0"), Some("bytes=0-")], "{file}: metadata then download: {seen:#?}");
    }
    assert!(
        seen.iter().all(|s| s.path == api_path(REPO) || FILES.iter().any(|f| s.path == resolve_path(f))),
        "only the repo's listed files are requested: {seen:#?}"
    );

    // The hf-hub cache layout: refs/main -> commit, snapshots/{commit}/{file} -> blobs/{etag}.
    let cache = home.repo_cache();
    let main_ref = std::fs::read_to_string(cache.join("refs/main")).expect("refs/main written");
    assert_eq!(main_ref.trim(), COMMIT);
    let snapshot = cache.join("snapshots").join(COMMIT);
    for file in NEEDED {
        let cached = std::fs::read(snapshot.join(file)).unwrap_or_else(|e| panic!("{file} not in the snapshot: {e}"));
        assert!(cached == std::fs::read(fixture().join(file)).unwrap(), "{file}: cached bytes differ from the fixture");
    }
    let blobs: Vec<String> = std::fs::read_dir(cache.join("blobs"))
        .expect("blobs folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!blobs.iter().any(|b| b.ends_with(".part")), "unfinished downloads left: {blobs:?}");

    // 2. Online, warm cache: `forward` lists the repo again but downloads nothing.
    let before = hub.seen().len();
    let out_hub = home.0.join("hub-forward.safetensors");
    let out_dir = home.0.join("dir-forward.safetensors");
    let ids = "2,5,7,3";
    tcat(&["forward", "--model", REPO, "--ids", ids, "--out", out_hub.to_str().unwrap()], &online).ok();
    let new: Vec<Seen> = hub.seen()[before..].to_vec();
    assert_eq!(new.len(), 1, "a warm cache needs only the repo info: {new:#?}");
    assert_eq!(new[0].path, api_path(REPO));
    tcat(&["forward", "--model", fixture().to_str().unwrap(), "--ids", ids, "--out", out_dir.to_str().unwrap()], &[])
        .ok();
    let (a, b) = (hidden_states(&out_hub), hidden_states(&out_dir));
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-6, "forward by hub id vs fixture folder: max abs diff {max:e}");

    // 3. Offline: the cache alone, not one request even though the server still answers.
    let before = hub.seen().len();
    let offline = [("HF_HOME", home.path()), ("HF_ENDPOINT", endpoint.as_str()), ("HF_HUB_OFFLINE", "1")];
    let got = embedding(&tcat(&["embed", "--model", REPO, "--json", TEXT], &offline).ok());
    assert_close(&got, &want, "offline embedding by hub id vs fixture folder");
    assert_eq!(hub.seen().len(), before, "offline made requests: {:#?}", &hub.seen()[before..]);

    // 4. Offline with the server gone: still fine.
    drop(hub);
    let got = embedding(&tcat(&["embed", "--model", REPO, "--json", TEXT], &offline).ok());
    assert_close(&got, &want, "offline embedding with no server");
}

#[test]
fn offline_with_an_empty_cache_fails_clearly() {
    let hub = Hub::start();
    let home = TempHome::new("empty");
    let endpoint = hub.endpoint();
    let env = [("HF_HOME", home.path()), ("HF_ENDPOINT", endpoint.as_str()), ("HF_HUB_OFFLINE", "1")];
    let stderr = tcat(&["embed", "--model", REPO, "--json", TEXT], &env).fails();
    assert!(stderr.contains(REPO), "error should name the model:\n{stderr}");
    assert!(stderr.contains("cache"), "error should mention the local cache:\n{stderr}");
    assert!(stderr.contains("HF_HUB_OFFLINE"), "error should mention HF_HUB_OFFLINE:\n{stderr}");
    assert!(hub.seen().is_empty(), "offline made requests: {:#?}", hub.seen());
}

#[test]
fn unknown_repo_fails_clearly() {
    let hub = Hub::start();
    let home = TempHome::new("unknown");
    let endpoint = hub.endpoint();
    let repo = "tcat-test/no-such-model";
    let env = [("HF_HOME", home.path()), ("HF_ENDPOINT", endpoint.as_str())];
    let stderr = tcat(&["embed", "--model", repo, "--json", TEXT], &env).fails();
    assert!(stderr.contains(repo), "error should name the repo:\n{stderr}");
    assert!(stderr.contains("404"), "error should carry the hub's 404:\n{stderr}");
    let seen = hub.seen();
    assert_eq!(seen.len(), 1, "only the repo info is asked for: {seen:#?}");
    assert_eq!((seen[0].path.as_str(), seen[0].status), (api_path(repo).as_str(), 404));
}

const CHAT_REPO: &str = "tcat-test/tiny-chat";
/// A template that starts every turn with `bos_token` (`<|endoftext|>`, id 0 in the GPT-2
/// fixture's tokenizer), so the prompt ids show whether it was applied.
const CHAT_TEMPLATE: &str = "{% for m in messages %}{{ bos_token }}{{ m.role }}: {{ m.content }}\n{% endfor %}\
                             {% if add_generation_prompt %}assistant:{% endif %}";

/// The GPT-2 fixture as a chat model: its config, weights, tokenizer and generation config, with
/// the chat template either inside `tokenizer_config.json` or as `chat_template.jinja`.
fn chat_repo_files(template_file: bool) -> Vec<(&'static str, Vec<u8>)> {
    let gpt2 = fixture().join("../gpt2");
    let read = |name: &str| std::fs::read(gpt2.join(name)).unwrap_or_else(|e| panic!("gpt2 fixture {name}: {e}"));
    let mut config: serde_json::Value = serde_json::from_slice(&read("tokenizer_config.json")).unwrap();
    assert!(config.get("chat_template").is_none(), "the gpt2 fixture ships no template of its own");
    let mut files: Vec<(&'static str, Vec<u8>)> =
        ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]
            .into_iter()
            .map(|name| (name, read(name)))
            .collect();
    if template_file {
        files.push(("chat_template.jinja", CHAT_TEMPLATE.as_bytes().to_vec()));
    } else {
        config["chat_template"] = CHAT_TEMPLATE.into();
    }
    files.push(("tokenizer_config.json", config.to_string().into_bytes()));
    files
}

/// The ids `generate --json` printed.
fn generated_ids(run: &Run) -> Vec<u64> {
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("generate --json prints JSON");
    value["ids"].as_array().expect("`ids` is an array").iter().map(|i| i.as_u64().expect("ids are numbers")).collect()
}

/// `generate --chat` by hub id needs the tokenizer config (and, in newer repositories, the
/// template file): both are fetched, and the result equals the same files in a local folder.
#[test]
fn hub_id_generate_chat_fetches_the_tokenizer_config_and_template() {
    let chat = ["--chat", "--prompt", "hello", "--max-new-tokens", "4", "--json"];
    for template_file in [false, true] {
        let files = chat_repo_files(template_file);
        let home = TempHome::new(if template_file { "chat-jinja" } else { "chat-config" });
        let local = home.0.join("local");
        std::fs::create_dir_all(&local).unwrap();
        for (name, bytes) in &files {
            std::fs::write(local.join(name), bytes).unwrap();
        }
        let want = generated_ids(
            &tcat(&[&["generate", "--model", local.to_str().unwrap()][..], &chat].concat()[..], &[]).ok(),
        );
        assert_eq!(want[0], 0, "the template's bos_token opens the prompt: {want:?}");

        let hub = Hub::serve(CHAT_REPO, files.iter().map(|(name, bytes)| Blob::new(name, bytes.clone())).collect());
        let endpoint = hub.endpoint();
        let env = [("HF_HOME", home.path()), ("HF_ENDPOINT", endpoint.as_str())];
        let got = generated_ids(&tcat(&[&["generate", "--model", CHAT_REPO][..], &chat].concat()[..], &env).ok());
        assert_eq!(got, want, "chat generation by hub id vs the same files in a folder");

        let seen = hub.seen();
        assert!(seen.iter().all(|s| s.status == 200 || s.status == 206), "requests: {seen:#?}");
        for (name, _) in &files {
            assert!(
                seen.iter()
                    .any(|s| s.path == repo_resolve_path(CHAT_REPO, name) && s.range.as_deref() == Some("bytes=0-")),
                "{name} was not downloaded: {seen:#?}"
            );
        }
        let snapshot = home.0.join("hub/models--tcat-test--tiny-chat/snapshots").join(COMMIT);
        assert!(snapshot.join("tokenizer_config.json").is_file() && snapshot.join("generation_config.json").is_file());
        assert_eq!(snapshot.join("chat_template.jinja").is_file(), template_file);
    }
}

#[test]
fn range_parsing() {
    assert_eq!(parse_range("bytes=0-0", 10), Some((0, 0)));
    assert_eq!(parse_range("bytes=3-", 10), Some((3, 9)));
    assert_eq!(parse_range("bytes=2-100", 10), Some((2, 9)));
    assert_eq!(parse_range("bytes=10-", 10), None);
    assert_eq!(parse_range("bytes=5-4", 10), None);
    assert_eq!(parse_range("items=0-1", 10), None);
}
