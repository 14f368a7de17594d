//! Output files written atomically: to a temporary file beside the target, then renamed over
//! it, so a failed or interrupted write leaves a previous file intact and never a torn one.
//!
//! A symbolic link is followed to its final target, and the temporary file is created in
//! the target's directory (a rename does not cross file systems), so writing through a link
//! updates what it points to and the link stays a link.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Links followed at most before giving up (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// The file a write to `path` lands in: `path` with every symbolic link along the final
/// component followed (relative links resolve against the link's directory). The target may
/// not exist yet.
pub fn resolve_target(flag: &str, path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)
                    .with_context(|| format!("{flag} {}: reading the link {}", path.display(), current.display()))?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    bail!("{flag} {}: more than {MAX_LINKS} symbolic links (a loop?); expected a file path", path.display())
}

/// Writes `path` (named by `flag` in errors) through `write`, which fills a temporary file
/// in the target's directory; the temporary file replaces the target only when `write`
/// succeeded and the bytes reached the disk. An existing target keeps its permissions.
pub fn write_atomically(flag: &str, path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let Plan { target, dir, existing } = plan(flag, path)?;
    let shown = path.display();
    let name = target.file_name().unwrap_or_default();
    let temp = create_temp(flag, path, &dir, name)?;
    let result = (|| -> Result<()> {
        write(&temp.path)?;
        let file = std::fs::OpenOptions::new().write(true).open(&temp.path)?;
        if let Some(meta) = &existing {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp.path, &target)?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            temp.keep();
            Ok(())
        }
        Err(e) => Err(e.context(format!("{flag} {shown}: writing failed; any previous file is left as it was"))),
    }
}

/// Where a write to `path` goes.
struct Plan {
    target: PathBuf,
    dir: PathBuf,
    existing: Option<std::fs::Metadata>,
}

/// Checks, before any work, that `path` can be written: it names a file (not a directory) in
/// an existing directory, after following links.
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    plan(flag, path).map(|_| ())
}

fn plan(flag: &str, path: &Path) -> Result<Plan> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        bail!("{flag}: empty path; expected a file path");
    }
    let target = resolve_target(flag, path)?;
    let existing = std::fs::metadata(&target).ok();
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        bail!("{flag} {shown}: is a directory; expected a file path");
    }
    if target.file_name().is_none() {
        bail!("{flag} {shown}: names no file (ends in `..` or `/`); expected a file path");
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{flag} {shown}: {} is not a directory; expected an existing directory", dir.display()),
        Err(e) => {
            bail!("{flag} {shown}: directory {} is not usable ({e}); expected an existing directory", dir.display())
        }
    }
    Ok(Plan { target, dir, existing })
}

/// Writes `bytes` to `path` atomically ([`write_atomically`]).
pub fn write_bytes(flag: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(flag, path, |temp| {
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(temp)?;
        file.write_all(bytes)?;
        Ok(())
    })
}

/// A temporary file removed on drop unless kept.
struct Temp {
    path: PathBuf,
    kept: bool,
}

impl Temp {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn create_temp(flag: &str, path: &Path, dir: &Path, name: &std::ffi::OsStr) -> Result<Temp> {
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0..100u32 {
        let mut file_name = std::ffi::OsString::from(".");
        file_name.push(name);
        file_name.push(format!(".tcat-{pid}-{attempt}.tmp"));
        let candidate = dir.join(file_name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(_) => return Ok(Temp { path: candidate, kept: false }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                bail!(
                    "{flag} {}: cannot create a file in {} ({e}); expected a writable directory",
                    path.display(),
                    dir.display()
                )
            }
        }
    }
    bail!("{flag} {}: no free temporary name in {} ({last:?})", path.display(), dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tcat-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file_and_leaves_no_temporary() {
        let dir = scratch("fail");
        let out = dir.join("out.bin");
        std::fs::write(&out, b"old").unwrap();
        let err = write_atomically("--out", &out, |temp| {
            std::fs::write(temp, b"half")?;
            bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("--out"), "{err:#}");
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        write_bytes("--out", &out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_stay_links() {
        let dir = scratch("link");
        std::fs::create_dir(dir.join("real")).unwrap();
        std::fs::write(dir.join("real/target.bin"), b"old").unwrap();
        std::os::unix::fs::symlink("real/target.bin", dir.join("hop")).unwrap();
        std::os::unix::fs::symlink("hop", dir.join("link")).unwrap();
        write_bytes("--out", &dir.join("link"), b"new").unwrap();
        assert!(std::fs::symlink_metadata(dir.join("link")).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(dir.join("hop")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(dir.join("real/target.bin")).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.join("real")).unwrap().count(), 1);
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        let err = write_bytes("--out", &dir.join("loop"), b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic links"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
