//! tcat's own reader of a GGUF file's header (magic, version, counts, metadata, tensor
//! infos), run before candle parses the file so that a hostile or damaged header is refused
//! with a message naming the file and the key or tensor, and never reaches a division by a zero
//! alignment, an allocation sized by an unchecked count, or a tensor read past the end of the
//! file.
//!
//! Layout (llama.cpp's `docs/gguf.md`): `GGUF`, version `u32` (1, 2 or 3), tensor count and
//! metadata count (`u64`; `u32` in version 1), the metadata pairs, the tensor infos (name,
//! dimension count, dimensions innermost first, type, offset), then the tensor data starting at
//! the next multiple of `general.alignment` (32 when absent).
//!
//! The same pass builds the metadata and tensor infos as candle's `gguf_file::Content` (with
//! candle's reading of strings: trailing NULs dropped, invalid UTF-8 replaced), so the file is
//! parsed once. Loading a model can leave out the tokenizer's vocabulary arrays
//! ([`Keep::WithoutVocabulary`]): for SmolLM2 they are about 100k strings, 13 MB of small
//! allocations that the model never reads and whose freed pages would stay in its footprint.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use tcat_core::{Error, Result};

/// The most dimensions a GGUF tensor may have (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// The alignment of the tensor data when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// One tensor's entry in the header, as validated.
#[derive(Debug, Clone)]
pub(crate) struct TensorEntry {
    /// Its dimensions in candle's order (outermost first).
    pub shape: Vec<usize>,
}

/// Which metadata values [`read`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Every value.
    All,
    /// Every value but the arrays under `tokenizer.ggml.` (tokens, scores, types, merges): what
    /// building the model reads. Scalars under that prefix (token ids, flags) are kept.
    WithoutVocabulary,
}

/// The validated header of a GGUF file.
#[derive(Debug, Clone)]
pub(crate) struct GgufHeader {
    /// The tensors, in file order.
    pub tensors: Vec<TensorEntry>,
}

impl GgufHeader {
    /// The number of elements the file's tensors hold (checked: the sum fits).
    pub fn total_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.shape.iter().map(|&d| d as u64).product::<u64>()).sum()
    }
}

fn dtype_of(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// The names of GGUF metadata value types, by id.
fn value_type_name(id: u32) -> &'static str {
    match id {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Fixed byte sizes of the scalar value types.
fn scalar_size(id: u32) -> Option<u64> {
    match id {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

struct Reader<R: Read> {
    inner: R,
    path: PathBuf,
    pos: u64,
    len: u64,
    version: u32,
}

impl<R: Read> Reader<R> {
    fn error(&self, message: impl Into<String>) -> Error {
        // Version 1 files use 32-bit counts: say so, since a newer file mislabelled as version 1
        // fails here with sizes that make no sense.
        let read_as = if self.version == 1 { " (read as GGUF version 1, whose counts are 32-bit)" } else { "" };
        Error::InvalidInput(format!("{}: invalid GGUF header: {}{read_as}", self.path.display(), message.into()))
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what} needs {n} bytes at offset {}, but the file has only {} bytes left",
                self.pos,
                self.remaining()
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|e| self.error(format!("{what}: {e}")))?;
        self.pos += n;
        Ok(buf)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what} needs {n} bytes at offset {}, but the file has only {} bytes left",
                self.pos,
                self.remaining()
            )));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| self.error(format!("{what}: {e}")))?;
        if copied != n {
            return Err(self.error(format!("{what}: the file ends early")));
        }
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A count or length: `u64`, or `u32` in version 1.
    fn count(&mut self, what: &str) -> Result<u64> {
        if self.version == 1 { Ok(self.u32(what)? as u64) } else { self.u64(what) }
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(what)?;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    /// A string value as candle reads it: trailing NULs dropped, invalid UTF-8 replaced.
    fn lossy_string(&mut self, what: &str) -> Result<String> {
        let len = self.count(&format!("{what} (string length)"))?;
        let mut bytes = self.bytes(len, &format!("{what} (string of {len} bytes)"))?;
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads one value of type `ty`: returned when `keep`, else skipped (`None`).
    fn value(&mut self, ty: u32, key: &str, depth: usize, keep: bool) -> Result<Option<Value>> {
        let what = format!("metadata `{key}`");
        if let Some(size) = scalar_size(ty) {
            if !keep {
                self.skip(size, &what)?;
                return Ok(None);
            }
            let b = self.bytes(size, &what)?;
            let value = match ty {
                0 => Value::U8(b[0]),
                1 => Value::I8(b[0] as i8),
                2 => Value::U16(u16::from_le_bytes([b[0], b[1]])),
                3 => Value::I16(i16::from_le_bytes([b[0], b[1]])),
                4 => Value::U32(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                5 => Value::I32(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                6 => Value::F32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                7 => match b[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    other => return Err(self.error(format!("{what}: bool byte {other}, expected 0 or 1"))),
                },
                _ => {
                    let eight = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                    match ty {
                        10 => Value::U64(u64::from_le_bytes(eight)),
                        11 => Value::I64(i64::from_le_bytes(eight)),
                        _ => Value::F64(f64::from_le_bytes(eight)),
                    }
                }
            };
            return Ok(Some(value));
        }
        match ty {
            8 if keep => Ok(Some(Value::String(self.lossy_string(&what)?))),
            8 => {
                let len = self.count(&format!("{what} (string length)"))?;
                self.skip(len, &format!("{what} (string of {len} bytes)"))?;
                Ok(None)
            }
            9 => {
                if depth > 2 {
                    return Err(self.error(format!("{what}: arrays nested deeper than 2")));
                }
                let elem = self.u32(&format!("{what} (array element type)"))?;
                let n = self.count(&format!("{what} (array length)"))?;
                let min = match scalar_size(elem) {
                    Some(s) => s,
                    None if elem == 8 => {
                        if self.version == 1 {
                            4
                        } else {
                            8
                        }
                    }
                    None if elem == 9 => 4 + if self.version == 1 { 4 } else { 8 },
                    None => return Err(self.error(format!("{what}: unknown array element type {elem}"))),
                };
                if n.checked_mul(min).is_none_or(|b| b > self.remaining()) {
                    return Err(self.error(format!(
                        "{what}: an array of {n} {} values cannot fit in the {} bytes left",
                        value_type_name(elem),
                        self.remaining()
                    )));
                }
                match (scalar_size(elem), keep) {
                    (Some(s), false) => {
                        self.skip(n * s, &what)?;
                        Ok(None)
                    }
                    _ => {
                        // `n` is bounded by the bytes left (checked above).
                        let mut values = Vec::with_capacity(if keep { n as usize } else { 0 });
                        for _ in 0..n {
                            if let Some(v) = self.value(elem, key, depth + 1, keep)? {
                                values.push(v);
                            }
                        }
                        Ok(keep.then_some(Value::Array(values)))
                    }
                }
            }
            other => Err(self.error(format!("{what}: unknown value type {other}"))),
        }
    }
}

/// Reads and validates the header of the GGUF file at `path`: every count against the bytes
/// left, `general.alignment` (a `u32` power of two), each tensor's dimension count (1 to 4),
/// dimensions (positive, product fits, the innermost a multiple of its type's block), type,
/// unique name, and data range (aligned, inside the file); and returns it with the file's
/// metadata and tensor infos as candle's `Content`, the metadata as `keep` asks.
pub(crate) fn read(path: &Path, keep: Keep) -> Result<(GgufHeader, Content)> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let len = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?.len();
    let mut r = Reader { inner: BufReader::new(file), path: path.to_path_buf(), pos: 0, len, version: 3 };
    let magic = r.bytes(4, "the magic number")?;
    if magic != b"GGUF" {
        return Err(r.error(format!("magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = r.u32("the version")?;
    if !(1..=3).contains(&version) {
        return Err(r.error(format!("version {version}, expected 1, 2 or 3")));
    }
    r.version = version;
    let tensor_count = r.count("the tensor count")?;
    let kv_count = r.count("the metadata count")?;
    // Each metadata pair takes at least a key length, a type and one byte; each tensor info a
    // name length, a dimension count, one dimension, a type and an offset.
    let (min_kv, min_tensor) = if version == 1 { (9, 24) } else { (13, 32) };
    if kv_count.checked_mul(min_kv).is_none_or(|b| b > r.remaining()) {
        return Err(r.error(format!("{kv_count} metadata entries cannot fit in a file of {len} bytes")));
    }
    if tensor_count.checked_mul(min_tensor).is_none_or(|b| b > r.remaining()) {
        return Err(r.error(format!("{tensor_count} tensors cannot fit in a file of {len} bytes")));
    }
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut metadata = HashMap::new();
    for _ in 0..kv_count {
        let key = r.string("a metadata key")?;
        let ty = r.u32(&format!("metadata `{key}` (value type)"))?;
        let vocabulary = ty == 9 && key.starts_with("tokenizer.ggml.");
        let value = r.value(ty, &key, 0, keep == Keep::All || !vocabulary)?;
        if key == "general.alignment" {
            let a = match &value {
                Some(Value::U32(a)) => *a as u64,
                _ => {
                    return Err(r.error(format!(
                        "metadata `general.alignment` has type {}, expected u32",
                        value_type_name(ty)
                    )));
                }
            };
            if a == 0 || !a.is_power_of_two() {
                return Err(r.error(format!("metadata `general.alignment` is {a}, expected a power of two")));
            }
            alignment = a;
        }
        if let Some(value) = value {
            metadata.insert(key, value);
        }
    }
    let mut tensors = Vec::new();
    let mut tensor_infos = HashMap::new();
    let mut ranges = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let what = |s: &str| format!("tensor `{name}`: {s}");
        let n_dims = r.u32(&what("dimension count"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(r.error(what(&format!("{n_dims} dimensions, expected 1 to {MAX_DIMS}"))));
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            dims.push(r.count(&what("dimension"))?);
        }
        let ty = r.u32(&what("type"))?;
        let offset = r.u64(&what("offset"))?;
        if dims.contains(&0) {
            return Err(r.error(what(&format!("dimensions {dims:?} (innermost first) include a zero"))));
        }
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= isize::MAX as u64);
        let Some(elements) = elements else {
            return Err(r.error(what(&format!("dimensions {dims:?} (innermost first) overflow"))));
        };
        let Some(dtype) = dtype_of(ty) else {
            return Err(r.error(what(&format!("unknown type {ty}"))));
        };
        let block = dtype.block_size() as u64;
        if !dims[0].is_multiple_of(block) {
            return Err(r.error(what(&format!(
                "innermost dimension {} is not a multiple of the {dtype:?} block of {block}",
                dims[0]
            ))));
        }
        let Some(bytes) = (elements / block).checked_mul(dtype.type_size() as u64) else {
            return Err(r.error(what(&format!("dimensions {dims:?} (innermost first) overflow in bytes"))));
        };
        if !offset.is_multiple_of(alignment) {
            return Err(r.error(what(&format!("data offset {offset} is not a multiple of the alignment {alignment}"))));
        }
        if !seen.insert(name.clone()) {
            return Err(r.error(format!("tensor `{name}` appears twice")));
        }
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        tensor_infos.insert(name.clone(), TensorInfo { ggml_dtype: dtype, shape: shape.clone().into(), offset });
        ranges.push((name, offset, bytes));
        tensors.push(TensorEntry { shape });
    }
    let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
    let data_len = len.saturating_sub(data_start);
    for (name, offset, bytes) in ranges {
        if offset.checked_add(bytes).is_none_or(|end| end > data_len) {
            return Err(r.error(format!(
                "tensor `{name}`: data at offset {offset} of {bytes} bytes runs past the end of the data section \
                 ({data_len} bytes)"
            )));
        }
    }
    let magic = match version {
        1 => VersionedMagic::GgufV1,
        2 => VersionedMagic::GgufV2,
        _ => VersionedMagic::GgufV3,
    };
    let content = Content { magic, metadata, tensor_infos, tensor_data_offset: data_start };
    Ok((GgufHeader { tensors }, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Every metadata entry printed, sorted by key (candle's `Value` has no `PartialEq`).
    fn entries(metadata: &HashMap<String, Value>) -> Vec<String> {
        let mut all: Vec<String> = metadata.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        all.sort();
        all
    }

    fn tensors(content: &Content) -> Vec<String> {
        let mut all: Vec<String> = content
            .tensor_infos
            .iter()
            .map(|(k, t)| format!("{k}: {:?} {:?} @{}", t.ggml_dtype, t.shape, t.offset))
            .collect();
        all.sort();
        all
    }

    /// The content as candle's own reader builds it, for comparison.
    fn candle_content(path: &Path) -> Content {
        Content::read(&mut std::fs::File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn the_content_is_candles_and_the_model_view_drops_only_vocabulary_arrays() {
        // A file with every value type, strings with trailing NULs, nested arrays and a
        // vocabulary; and the committed llama3 GGUF fixture.
        let path = std::env::temp_dir().join(format!("tcat-gguf-header-{}.gguf", std::process::id()));
        let strings = |xs: &[&str]| Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect());
        let metadata = vec![
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String("padded\0\0".into())),
            ("a.u8", Value::U8(7)),
            ("a.i8", Value::I8(-7)),
            ("a.u16", Value::U16(65535)),
            ("a.i16", Value::I16(-300)),
            ("a.u32", Value::U32(1 << 31)),
            ("a.i32", Value::I32(-5)),
            ("a.u64", Value::U64(u64::MAX)),
            ("a.i64", Value::I64(i64::MIN)),
            ("a.f32", Value::F32(1e-6)),
            ("a.f64", Value::F64(-2.5)),
            ("a.bool", Value::Bool(true)),
            ("a.nested", Value::Array(vec![Value::Array(vec![Value::U32(1), Value::U32(2)]), Value::Array(vec![])])),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.tokens", strings(&["a", "b", "ab"])),
            ("tokenizer.ggml.merges", strings(&["a b"])),
            ("tokenizer.ggml.token_type", Value::Array(vec![Value::I32(1), Value::I32(1), Value::I32(3)])),
        ];
        let w =
            QTensor::quantize(&Tensor::ones((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::Q8_0)
                .unwrap();
        let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        candle_core::quantized::gguf_file::write(
            &mut std::fs::File::create(&path).unwrap(),
            &metadata_refs,
            &[("w.weight", &w), ("v.weight", &w)],
        )
        .unwrap();
        let fixture = tcat_testkit::fixture("llama31-gguf").join("model.gguf");
        for file in [&path, &fixture] {
            let want = candle_content(file);
            let (header, all) = read(file, Keep::All).unwrap();
            assert_eq!(entries(&all.metadata), entries(&want.metadata), "{}", file.display());
            assert_eq!(tensors(&all), tensors(&want), "{}", file.display());
            assert_eq!(all.tensor_data_offset, want.tensor_data_offset);
            assert_eq!(format!("{:?}", all.magic), format!("{:?}", want.magic));
            assert_eq!(header.tensors.len(), want.tensor_infos.len());
            // The model's view: the same but the tokenizer's arrays.
            let (_, model) = read(file, Keep::WithoutVocabulary).unwrap();
            let kept: Vec<String> = entries(&want.metadata)
                .into_iter()
                .filter(|e| !(e.starts_with("tokenizer.ggml.") && e.contains(" = Array(")))
                .collect();
            assert!(kept.len() < want.metadata.len(), "{}: no vocabulary arrays to leave out", file.display());
            assert_eq!(entries(&model.metadata), kept, "{}", file.display());
            assert_eq!(tensors(&model), tensors(&want));
            assert_eq!(model.tensor_data_offset, want.tensor_data_offset);
        }
        // Read back as candle does: the trailing NULs go.
        let (_, all) = read(&path, Keep::All).unwrap();
        assert_eq!(all.metadata["general.name"].to_string().unwrap(), "padded");
        std::fs::remove_file(&path).ok();
    }
}
