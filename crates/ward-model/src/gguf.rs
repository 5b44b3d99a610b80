//! Reads the header of a GGUF file (version 2 or 3): its metadata and its tensors' names,
//! shapes and types, never the weights. Every length and count is checked against the file
//! before it is trusted, so a hostile file costs a bounded amount of memory and time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Serialize;

const MAGIC: &[u8; 4] = b"GGUF";
/// Tensor data's alignment where a file does not say (`general.alignment`).
const DEFAULT_ALIGNMENT: u64 = 32;
/// The longest string kept (a chat template is a few KiB; a token a few bytes).
const MAX_STRING: u64 = 1 << 20;
/// The most metadata entries, tensors, or elements of one array a file may declare.
const MAX_COUNT: u64 = 1 << 24;
/// Arrays longer than this are counted, not kept (token lists, merges, scores).
const KEPT_ARRAY: u64 = 64;

/// One metadata value. Long arrays keep only their length.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Array(Vec<Value>),
    /// An array of `len` elements, too long to keep.
    LongArray {
        len: u64,
    },
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Unsigned(value) => Some(*value),
            Value::Signed(value) => u64::try_from(*value).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A tensor's name, shape and storage type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u64>,
    /// ggml's type number.
    pub kind: u32,
    /// Where its data begins, in bytes from the start of the file.
    #[serde(skip)]
    pub offset: u64,
}

impl Tensor {
    pub fn elements(&self) -> u64 {
        self.shape.iter().copied().fold(1u64, u64::saturating_mul)
    }
}

/// The header of a GGUF file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<Tensor>,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (it does not start with \"GGUF\")")]
    NotGguf,
    #[error("GGUF version {0} is not one Ward reads (2 or 3)")]
    Version(u32),
    #[error("the file ends inside its header")]
    Truncated,
    #[error("the header is malformed: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Header {
    pub fn read_file(path: &Path) -> Result<Header, GgufError> {
        let file = File::open(path)?;
        let length = file.metadata()?.len();
        Header::read(BufReader::new(file), length)
    }

    /// Reads a header from `reader`, a file of `length` bytes.
    pub fn read(reader: impl Read, length: u64) -> Result<Header, GgufError> {
        let mut input = Input {
            reader,
            left: length,
        };
        let mut magic = [0u8; 4];
        input.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err(GgufError::NotGguf);
        }
        let version = input.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let tensor_count = input.count("tensor count")?;
        let metadata_count = input.count("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..metadata_count {
            let key = input.string()?;
            let kind = input.u32()?;
            let value = input.value(kind)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = input.string()?;
            let dimensions = input.u32()?;
            if dimensions > 8 {
                return Err(GgufError::Malformed(format!(
                    "tensor {name} has {dimensions} dimensions"
                )));
            }
            let shape = (0..dimensions)
                .map(|_| input.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let kind = input.u32()?;
            let offset = input.u64()?;
            tensors.push(Tensor {
                name,
                shape,
                kind,
                offset,
            });
        }
        // Tensor data begins after the header, padded to the file's alignment; each tensor's
        // offset counts from there.
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .filter(|alignment| *alignment > 0)
            .unwrap_or(DEFAULT_ALIGNMENT);
        let data = (length - input.left).div_ceil(alignment) * alignment;
        for tensor in &mut tensors {
            tensor.offset = tensor.offset.saturating_add(data);
        }
        Ok(Header {
            version,
            metadata,
            tensors,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// `general.architecture`, like `llama` or `bert`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// A key of the architecture's own, like `llama.context_length`.
    pub fn architecture_value(&self, suffix: &str) -> Option<&Value> {
        self.get(&format!("{}.{suffix}", self.architecture()?))
    }

    pub fn context_length(&self) -> Option<u64> {
        self.architecture_value("context_length")
            .and_then(Value::as_u64)
    }

    /// For a model that makes embeddings (it says how it pools its tokens), the length of its
    /// vectors; `None` for a model that generates text.
    pub fn embedding_length(&self) -> Option<u64> {
        let pooling = self.architecture_value("pooling_type")?.as_u64()?;
        if !(1..=3).contains(&pooling) {
            return None;
        }
        self.architecture_value("embedding_length")
            .and_then(Value::as_u64)
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template").and_then(Value::as_str)
    }

    /// Weights in every tensor.
    pub fn parameters(&self) -> u64 {
        self.tensors
            .iter()
            .map(Tensor::elements)
            .fold(0u64, u64::saturating_add)
    }

    /// The storage type most of the weights have, like `Q4_K` or `F16`.
    pub fn quantization(&self) -> Option<&'static str> {
        let mut by_kind: BTreeMap<u32, u64> = BTreeMap::new();
        for tensor in &self.tensors {
            *by_kind.entry(tensor.kind).or_default() += tensor.elements();
        }
        by_kind
            .into_iter()
            .max_by_key(|(_, elements)| *elements)
            .map(|(kind, _)| type_name(kind))
    }
}

/// ggml's name of a tensor type.
pub fn type_name(kind: u32) -> &'static str {
    match kind {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

/// A reader that knows how many bytes the file has left.
struct Input<R> {
    reader: R,
    left: u64,
}

impl<R: Read> Input<R> {
    fn bytes(&mut self, buffer: &mut [u8]) -> Result<(), GgufError> {
        if (buffer.len() as u64) > self.left {
            return Err(GgufError::Truncated);
        }
        self.reader.read_exact(buffer).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                GgufError::Truncated
            } else {
                GgufError::Io(error)
            }
        })?;
        self.left -= buffer.len() as u64;
        Ok(())
    }

    fn skip(&mut self, count: u64) -> Result<(), GgufError> {
        if count > self.left {
            return Err(GgufError::Truncated);
        }
        let copied = io::copy(&mut (&mut self.reader).take(count), &mut io::sink())?;
        if copied != count {
            return Err(GgufError::Truncated);
        }
        self.left -= count;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        let mut buffer = [0u8; 4];
        self.bytes(&mut buffer)?;
        Ok(u32::from_le_bytes(buffer))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        let mut buffer = [0u8; 8];
        self.bytes(&mut buffer)?;
        Ok(u64::from_le_bytes(buffer))
    }

    /// A count, checked against [`MAX_COUNT`].
    fn count(&mut self, what: &str) -> Result<u64, GgufError> {
        let count = self.u64()?;
        if count > MAX_COUNT {
            return Err(GgufError::Malformed(format!(
                "{what} {count} is past {MAX_COUNT}"
            )));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let length = self.u64()?;
        if length > MAX_STRING {
            return Err(GgufError::Malformed(format!(
                "a string of {length} bytes is past {MAX_STRING}"
            )));
        }
        let mut buffer = vec![0u8; length as usize];
        self.bytes(&mut buffer)?;
        String::from_utf8(buffer)
            .map_err(|_| GgufError::Malformed("a string is not UTF-8".to_string()))
    }

    fn value(&mut self, kind: u32) -> Result<Value, GgufError> {
        let mut fixed = |size: usize| -> Result<[u8; 8], GgufError> {
            let mut buffer = [0u8; 8];
            self.bytes(&mut buffer[..size])?;
            Ok(buffer)
        };
        Ok(match kind {
            0 => Value::Unsigned(u64::from(fixed(1)?[0])),
            1 => Value::Signed(i64::from(fixed(1)?[0] as i8)),
            2 => Value::Unsigned(u64::from(u16::from_le_bytes(first(fixed(2)?)))),
            3 => Value::Signed(i64::from(i16::from_le_bytes(first(fixed(2)?)))),
            4 => Value::Unsigned(u64::from(u32::from_le_bytes(first(fixed(4)?)))),
            5 => Value::Signed(i64::from(i32::from_le_bytes(first(fixed(4)?)))),
            6 => Value::Float(f64::from(f32::from_le_bytes(first(fixed(4)?)))),
            7 => Value::Bool(fixed(1)?[0] != 0),
            8 => Value::Text(self.string()?),
            9 => {
                let element = self.u32()?;
                if element == 9 {
                    return Err(GgufError::Malformed("an array of arrays".to_string()));
                }
                let len = self.count("array length")?;
                if len > KEPT_ARRAY {
                    for _ in 0..len {
                        self.skip_value(element)?;
                    }
                    Value::LongArray { len }
                } else {
                    Value::Array(
                        (0..len)
                            .map(|_| self.value(element))
                            .collect::<Result<_, _>>()?,
                    )
                }
            }
            10 => Value::Unsigned(u64::from_le_bytes(fixed(8)?)),
            11 => Value::Signed(i64::from_le_bytes(fixed(8)?)),
            12 => Value::Float(f64::from_le_bytes(fixed(8)?)),
            other => {
                return Err(GgufError::Malformed(format!(
                    "unknown metadata type {other}"
                )))
            }
        })
    }

    fn skip_value(&mut self, kind: u32) -> Result<(), GgufError> {
        let size = match kind {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                let length = self.u64()?;
                return self.skip(length);
            }
            other => {
                return Err(GgufError::Malformed(format!(
                    "unknown array element type {other}"
                )))
            }
        };
        self.skip(size)
    }
}

fn first<const N: usize>(bytes: [u8; 8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header with one string, one number, one long array and one tensor.
    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes()); // tensors
        out.extend_from_slice(&3u64.to_le_bytes()); // metadata
        let string = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        string(&mut out, "general.architecture");
        out.extend_from_slice(&8u32.to_le_bytes());
        string(&mut out, "llama");
        string(&mut out, "llama.context_length");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&4096u32.to_le_bytes());
        string(&mut out, "tokenizer.ggml.tokens");
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&100u64.to_le_bytes());
        for index in 0..100 {
            string(&mut out, &format!("t{index}"));
        }
        string(&mut out, "token_embd.weight");
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&64u64.to_le_bytes());
        out.extend_from_slice(&100u64.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes()); // Q8_0
        out.extend_from_slice(&0u64.to_le_bytes());
        out
    }

    #[test]
    fn reads_metadata_and_tensors() {
        let bytes = sample();
        let header = Header::read(&bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(header.architecture(), Some("llama"));
        assert_eq!(header.context_length(), Some(4096));
        assert_eq!(
            header.get("tokenizer.ggml.tokens"),
            Some(&Value::LongArray { len: 100 })
        );
        assert_eq!(header.parameters(), 6400);
        assert_eq!(header.quantization(), Some("Q8_0"));
    }

    #[test]
    fn every_cut_of_a_header_is_refused_without_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(
                Header::read(&bytes[..cut], cut as u64).is_err(),
                "a header cut at {cut} was read"
            );
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_it_is_allocated() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Header::read(&bytes[..], bytes.len() as u64),
            Err(GgufError::Malformed(_))
        ));
        assert!(matches!(
            Header::read(&b"GGML"[..], 4),
            Err(GgufError::NotGguf)
        ));
    }
}
