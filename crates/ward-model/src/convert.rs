//! Turns a sentence-transformers directory (a BERT encoder in `model.safetensors`, its
//! WordPiece vocabulary in `tokenizer.json`, its pooling in `modules.json`) into one GGUF
//! file that llama.cpp runs as an embedding model. Weights stay 32-bit floats, so the
//! embeddings are the directory's own to rounding. Everything read is checked as input: a
//! length or offset past its file, a shape that does not match its bytes, or an architecture
//! Ward cannot run is a clear error, never a panic or a half-written file's silent success.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// The largest safetensors header read (the header of a large model is a few MiB).
const MAX_SAFETENSORS_HEADER: u64 = 64 << 20;
/// The largest JSON file read from the directory.
const MAX_JSON: u64 = 64 << 20;
/// GGUF's default alignment of tensor data.
const ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a conversion made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub architecture: String,
    pub layers: u64,
    pub embedding_length: u64,
    pub vocabulary: usize,
    /// `mean`, `cls` or `last`.
    pub pooling: &'static str,
}

/// Whether `dir` looks like a sentence-transformers (or plain Hugging Face BERT) directory.
pub fn is_model_directory(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && dir.join("model.safetensors").is_file()
        && dir.join("tokenizer.json").is_file()
}

/// Writes the GGUF form of the model in `dir` to `out`.
pub fn sentence_transformers(dir: &Path, out: impl Write) -> Result<Converted, ConvertError> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let model_type = config["model_type"].as_str().unwrap_or("");
    if model_type != "bert" {
        return Err(ConvertError::Unsupported(format!(
            "{}: model_type {model_type:?} is not one Ward converts (bert); convert it to GGUF with llama.cpp's convert_hf_to_gguf.py and import the file",
            config_path.display()
        )));
    }
    let number = |key: &str| -> Result<u64, ConvertError> {
        config[key].as_u64().ok_or_else(|| ConvertError::Input {
            path: config_path.clone(),
            reason: format!("{key} is missing or not a whole number"),
        })
    };
    let layers = number("num_hidden_layers")?;
    let embedding_length = number("hidden_size")?;
    let heads = number("num_attention_heads")?;
    let feed_forward = number("intermediate_size")?;
    let positions = number("max_position_embeddings")?;
    let token_types = config["type_vocab_size"].as_u64().unwrap_or(2);
    let epsilon = config["layer_norm_eps"].as_f64().unwrap_or(1e-12);
    if let Some(activation) = config["hidden_act"].as_str() {
        if activation != "gelu" {
            return Err(ConvertError::Unsupported(format!(
                "{}: hidden_act {activation:?} is not one llama.cpp's BERT runs (gelu)",
                config_path.display()
            )));
        }
    }
    let pooling = pooling(dir)?;
    let vocabulary = Vocabulary::read(&dir.join("tokenizer.json"))?;

    let weights_path = dir.join("model.safetensors");
    let mut weights = Safetensors::open(&weights_path)?;
    let mut tensors = Vec::new();
    for (name, source) in &weights.tensors {
        let Some(target) = bert_tensor_name(name.strip_prefix("bert.").unwrap_or(name)) else {
            continue;
        };
        tensors.push((target, name.clone(), source.shape.clone()));
    }
    let expected = 5 + 16 * layers as usize;
    if tensors.len() != expected {
        return Err(ConvertError::Input {
            path: weights_path,
            reason: format!(
                "it holds {} of the {expected} tensors a BERT of {layers} layers has",
                tensors.len()
            ),
        });
    }
    tensors.sort();

    let mut metadata: Vec<(&str, Meta)> = vec![
        ("general.architecture", Meta::Text("bert".into())),
        (
            "general.name",
            Meta::Text(
                dir.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "embedding".into()),
            ),
        ),
        ("general.file_type", Meta::U32(0)),
        ("bert.block_count", Meta::U32(layers as u32)),
        ("bert.context_length", Meta::U32(positions as u32)),
        ("bert.embedding_length", Meta::U32(embedding_length as u32)),
        ("bert.feed_forward_length", Meta::U32(feed_forward as u32)),
        ("bert.attention.head_count", Meta::U32(heads as u32)),
        (
            "bert.attention.layer_norm_epsilon",
            Meta::F32(epsilon as f32),
        ),
        ("bert.attention.causal", Meta::Bool(false)),
        ("bert.pooling_type", Meta::U32(pooling.1)),
        ("tokenizer.ggml.model", Meta::Text("bert".into())),
        ("tokenizer.ggml.pre", Meta::Text("default".into())),
        ("tokenizer.ggml.tokens", Meta::Texts(vocabulary.tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(vocabulary.kinds)),
        (
            "tokenizer.ggml.token_type_count",
            Meta::U32(token_types as u32),
        ),
        (
            "tokenizer.ggml.normalizer.lowercase",
            Meta::Bool(vocabulary.lowercase),
        ),
        (
            "tokenizer.ggml.normalizer.strip_accents",
            Meta::Bool(vocabulary.strip_accents),
        ),
    ];
    for (key, token) in [
        ("tokenizer.ggml.bos_token_id", "[CLS]"),
        ("tokenizer.ggml.cls_token_id", "[CLS]"),
        ("tokenizer.ggml.seperator_token_id", "[SEP]"),
        ("tokenizer.ggml.unknown_token_id", "[UNK]"),
        ("tokenizer.ggml.padding_token_id", "[PAD]"),
        ("tokenizer.ggml.mask_token_id", "[MASK]"),
    ] {
        if let Some(id) = vocabulary.special.get(token) {
            metadata.push((key, Meta::U32(*id)));
        }
    }
    let vocabulary_size = vocabulary.size;
    for (target, _, shape) in &tensors {
        if target == "token_embd.weight" && shape.first() != Some(&(vocabulary_size as u64)) {
            return Err(ConvertError::Input {
                path: weights_path.clone(),
                reason: format!(
                    "the word embeddings have {:?} rows and the vocabulary {vocabulary_size} tokens",
                    shape.first()
                ),
            });
        }
    }

    let mut out = BufWriter::new(out);
    out.write_all(b"GGUF")?;
    out.write_all(&3u32.to_le_bytes())?;
    out.write_all(&(tensors.len() as u64).to_le_bytes())?;
    out.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in &metadata {
        write_string(&mut out, key)?;
        value.write(&mut out)?;
    }
    let mut offset = 0u64;
    for (target, _, shape) in &tensors {
        write_string(&mut out, target)?;
        out.write_all(&(shape.len() as u32).to_le_bytes())?;
        // GGUF lists the fastest-moving dimension first.
        for dimension in shape.iter().rev() {
            out.write_all(&dimension.to_le_bytes())?;
        }
        out.write_all(&0u32.to_le_bytes())?; // F32
        out.write_all(&offset.to_le_bytes())?;
        offset += padded(shape.iter().product::<u64>() * 4);
    }
    // The header is padded to the alignment; so is every tensor.
    let header_length = header_length(&metadata, &tensors);
    out.write_all(&vec![0u8; (padded(header_length) - header_length) as usize])?;
    for (_, source, _) in &tensors {
        let values = weights.read_f32(source)?;
        let length = values.len() as u64 * 4;
        for value in values {
            out.write_all(&value.to_le_bytes())?;
        }
        out.write_all(&vec![0u8; (padded(length) - length) as usize])?;
    }
    out.flush()?;
    Ok(Converted {
        architecture: "bert".into(),
        layers,
        embedding_length,
        vocabulary: vocabulary_size,
        pooling: pooling.0,
    })
}

/// The llama.cpp name of a Hugging Face BERT tensor; `None` for those it does not use.
fn bert_tensor_name(name: &str) -> Option<String> {
    let fixed = match name {
        "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
        "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
        "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
        "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
        "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some(fixed.to_string());
    }
    let rest = name.strip_prefix("encoder.layer.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let target = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{target}.{kind}"))
}

/// The pooling the directory's modules ask for, as a name and llama.cpp's number.
fn pooling(dir: &Path) -> Result<(&'static str, u32), ConvertError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        // A plain Hugging Face BERT: sentence-transformers' default is the mean.
        return Ok(("mean", 1));
    }
    let modules = read_json(&modules_path)?;
    let mut pooling = ("mean", 1);
    for module in modules.as_array().into_iter().flatten() {
        let kind = module["type"].as_str().unwrap_or("");
        let module_path = module["path"].as_str().unwrap_or("");
        match kind.rsplit('.').next().unwrap_or("") {
            "Transformer" | "Normalize" => {}
            "Pooling" => {
                let path = dir.join(module_path).join("config.json");
                let config = read_json(&path)?;
                let on = |key: &str| config[key].as_bool().unwrap_or(false);
                pooling = if on("pooling_mode_cls_token") {
                    ("cls", 2)
                } else if on("pooling_mode_lasttoken") {
                    ("last", 3)
                } else if on("pooling_mode_mean_tokens") {
                    ("mean", 1)
                } else {
                    return Err(ConvertError::Unsupported(format!(
                        "{}: only mean, CLS and last-token pooling are supported",
                        path.display()
                    )));
                };
            }
            other => {
                return Err(ConvertError::Unsupported(format!(
                    "{}: module {other:?} is not one Ward runs (Transformer, Pooling, Normalize)",
                    modules_path.display()
                )))
            }
        }
    }
    Ok(pooling)
}

/// A WordPiece vocabulary in llama.cpp's form: a word-initial piece carries a leading
/// U+2581, a continuation (`##piece`) loses its `##`.
struct Vocabulary {
    tokens: Vec<String>,
    kinds: Vec<i32>,
    size: usize,
    special: BTreeMap<String, u32>,
    lowercase: bool,
    strip_accents: bool,
}

impl Vocabulary {
    fn read(path: &Path) -> Result<Vocabulary, ConvertError> {
        let tokenizer = read_json(path)?;
        let invalid = |reason: String| ConvertError::Input {
            path: path.to_path_buf(),
            reason,
        };
        let model = &tokenizer["model"];
        if model["type"].as_str() != Some("WordPiece") {
            return Err(ConvertError::Unsupported(format!(
                "{}: the tokenizer is {:?}, and Ward converts WordPiece tokenizers",
                path.display(),
                model["type"].as_str().unwrap_or("unnamed")
            )));
        }
        let vocab = model["vocab"]
            .as_object()
            .ok_or_else(|| invalid("model.vocab is missing".into()))?;
        let size = vocab.len();
        let mut tokens: Vec<Option<String>> = vec![None; size];
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .filter(|id| (*id as usize) < size)
                .ok_or_else(|| {
                    invalid(format!("token {token:?} has id {id}, outside 0..{size}"))
                })?;
            if tokens[id as usize].replace(token.clone()).is_some() {
                return Err(invalid(format!("two tokens have id {id}")));
            }
        }
        let mut special = BTreeMap::new();
        for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(content), Some(id), true) = (
                added["content"].as_str(),
                added["id"].as_u64(),
                added["special"].as_bool().unwrap_or(false),
            ) {
                if (id as usize) < size {
                    special.insert(content.to_string(), id as u32);
                }
            }
        }
        let mut kinds = Vec::with_capacity(size);
        let mut converted = Vec::with_capacity(size);
        for (id, token) in tokens.into_iter().enumerate() {
            let token = token.ok_or_else(|| invalid(format!("no token has id {id}")))?;
            // llama.cpp's token types: 1 normal, 3 control.
            let is_special = special.values().any(|special| *special as usize == id);
            kinds.push(if is_special { 3 } else { 1 });
            converted.push(
                if is_special || (token.starts_with('[') && token.ends_with(']')) {
                    token
                } else if let Some(piece) = token.strip_prefix("##") {
                    piece.to_string()
                } else {
                    format!("\u{2581}{token}")
                },
            );
        }
        let normalizer = &tokenizer["normalizer"];
        let lowercase = normalizer["lowercase"].as_bool().unwrap_or(false);
        // Hugging Face's BertNormalizer strips accents when it lowercases, unless told.
        let strip_accents = normalizer["strip_accents"].as_bool().unwrap_or(lowercase);
        Ok(Vocabulary {
            tokens: converted,
            kinds,
            size,
            special,
            lowercase,
            strip_accents,
        })
    }
}

/// A safetensors file's table of tensors; the weights are read one tensor at a time.
struct Safetensors {
    path: PathBuf,
    file: File,
    data_start: u64,
    tensors: BTreeMap<String, SafeTensor>,
}

struct SafeTensor {
    dtype: String,
    shape: Vec<u64>,
    begin: u64,
    end: u64,
}

impl Safetensors {
    fn open(path: &Path) -> Result<Safetensors, ConvertError> {
        let invalid = |reason: String| ConvertError::Input {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(|error| invalid(error.to_string()))?;
        let file_length = file.metadata()?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length)
            .map_err(|_| invalid("the file ends before its header".into()))?;
        let header_length = u64::from_le_bytes(length);
        if header_length > MAX_SAFETENSORS_HEADER || 8 + header_length > file_length {
            return Err(invalid(format!(
                "its header claims {header_length} bytes, more than the file or Ward allows"
            )));
        }
        let mut header = vec![0u8; header_length as usize];
        file.read_exact(&mut header)?;
        let header: BTreeMap<String, Json> = serde_json::from_slice(&header)
            .map_err(|error| invalid(format!("its header is not JSON: {error}")))?;
        let data_start = 8 + header_length;
        let data_length = file_length - data_start;
        let mut tensors = BTreeMap::new();
        for (name, entry) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = entry["dtype"].as_str().unwrap_or("").to_string();
            let shape: Vec<u64> = entry["shape"]
                .as_array()
                .ok_or_else(|| invalid(format!("tensor {name} has no shape")))?
                .iter()
                .map(|dimension| dimension.as_u64())
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(format!("tensor {name} has a shape that is not numbers")))?;
            let offsets = entry["data_offsets"].as_array();
            let (Some(begin), Some(end)) = (
                offsets.and_then(|offsets| offsets.first()?.as_u64()),
                offsets.and_then(|offsets| offsets.get(1)?.as_u64()),
            ) else {
                return Err(invalid(format!("tensor {name} has no data_offsets")));
            };
            let width = match dtype.as_str() {
                "F32" => 4,
                "F16" | "BF16" => 2,
                "I64" | "F64" => 8,
                _ => 0,
            };
            let elements = shape
                .iter()
                .try_fold(1u64, |product, dimension| product.checked_mul(*dimension));
            if begin > end
                || end > data_length
                || elements.and_then(|elements| elements.checked_mul(width)) != Some(end - begin)
                    && width != 0
            {
                return Err(invalid(format!(
                    "tensor {name}: its offsets {begin}..{end} do not hold a {dtype} tensor of shape {shape:?} inside the file"
                )));
            }
            tensors.insert(
                name,
                SafeTensor {
                    dtype,
                    shape,
                    begin,
                    end,
                },
            );
        }
        Ok(Safetensors {
            path: path.to_path_buf(),
            file,
            data_start,
            tensors,
        })
    }

    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ConvertError> {
        let tensor = &self.tensors[name];
        let mut bytes = vec![0u8; (tensor.end - tensor.begin) as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + tensor.begin))?;
        self.file.read_exact(&mut bytes)?;
        let values = match tensor.dtype.as_str() {
            "F32" => bytes
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
                .collect(),
            "F16" => bytes
                .chunks_exact(2)
                .map(|chunk| f16_to_f32(u16::from_le_bytes([chunk[0], chunk[1]])))
                .collect(),
            "BF16" => bytes
                .chunks_exact(2)
                .map(|chunk| {
                    f32::from_bits((u16::from_le_bytes([chunk[0], chunk[1]]) as u32) << 16)
                })
                .collect(),
            other => {
                return Err(ConvertError::Input {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor {name} is {other}; Ward reads F32, F16 and BF16 weights"
                    ),
                })
            }
        };
        Ok(values)
    }
}

/// IEEE half to single precision.
fn f16_to_f32(half: u16) -> f32 {
    let sign = ((half >> 15) as u32) << 31;
    let exponent = ((half >> 10) & 0x1f) as u32;
    let mantissa = (half & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise it.
            let shift = mantissa.leading_zeros() - 21;
            let mantissa = (mantissa << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (mantissa << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

fn read_json(path: &Path) -> Result<Json, ConvertError> {
    let invalid = |reason: String| ConvertError::Input {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|error| invalid(error.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_JSON {
        return Err(invalid(format!("it is larger than {} MiB", MAX_JSON >> 20)));
    }
    serde_json::from_slice(&text).map_err(|error| invalid(format!("not JSON: {error}")))
}

/// One GGUF metadata value.
enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Text(String),
    Texts(Vec<String>),
    I32s(Vec<i32>),
}

impl Meta {
    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        match self {
            Meta::U32(value) => {
                out.write_all(&4u32.to_le_bytes())?;
                out.write_all(&value.to_le_bytes())
            }
            Meta::F32(value) => {
                out.write_all(&6u32.to_le_bytes())?;
                out.write_all(&value.to_le_bytes())
            }
            Meta::Bool(value) => {
                out.write_all(&7u32.to_le_bytes())?;
                out.write_all(&[u8::from(*value)])
            }
            Meta::Text(value) => {
                out.write_all(&8u32.to_le_bytes())?;
                write_string(out, value)
            }
            Meta::Texts(values) => {
                out.write_all(&9u32.to_le_bytes())?;
                out.write_all(&8u32.to_le_bytes())?;
                out.write_all(&(values.len() as u64).to_le_bytes())?;
                values.iter().try_for_each(|value| write_string(out, value))
            }
            Meta::I32s(values) => {
                out.write_all(&9u32.to_le_bytes())?;
                out.write_all(&5u32.to_le_bytes())?;
                out.write_all(&(values.len() as u64).to_le_bytes())?;
                values
                    .iter()
                    .try_for_each(|value| out.write_all(&value.to_le_bytes()))
            }
        }
    }

    fn length(&self) -> u64 {
        4 + match self {
            Meta::U32(_) | Meta::F32(_) => 4,
            Meta::Bool(_) => 1,
            Meta::Text(value) => 8 + value.len() as u64,
            Meta::Texts(values) => {
                12 + values
                    .iter()
                    .map(|value| 8 + value.len() as u64)
                    .sum::<u64>()
            }
            Meta::I32s(values) => 12 + 4 * values.len() as u64,
        }
    }
}

fn write_string(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())
}

/// The bytes of everything before the tensor data.
fn header_length(metadata: &[(&str, Meta)], tensors: &[(String, String, Vec<u64>)]) -> u64 {
    let mut length = 4 + 4 + 8 + 8;
    for (key, value) in metadata {
        length += 8 + key.len() as u64 + value.length();
    }
    for (name, _, shape) in tensors {
        length += 8 + name.len() as u64 + 4 + 8 * shape.len() as u64 + 4 + 8;
    }
    length
}

fn padded(length: u64) -> u64 {
    length.div_ceil(ALIGNMENT) * ALIGNMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn tensor_names_follow_llama_cpp() {
        assert_eq!(
            bert_tensor_name("encoder.layer.3.attention.self.query.bias").as_deref(),
            Some("blk.3.attn_q.bias")
        );
        assert_eq!(
            bert_tensor_name("encoder.layer.0.output.LayerNorm.weight").as_deref(),
            Some("blk.0.layer_output_norm.weight")
        );
        assert_eq!(bert_tensor_name("embeddings.position_ids"), None);
        assert_eq!(bert_tensor_name("pooler.dense.weight"), None);
    }
}
