//! A BERT encoder for embedding models (`general.architecture = bert`, weights of 32, 16 or
//! bfloat 16 bits), in Rust: the matrix products run on the `gemm` crate's kernels, which use
//! the widest vector instructions the CPU has, chosen at run time; the inputs of a request are
//! packed one after another with no padding, and each attends only to itself. llama.cpp
//! still tokenizes; a model this encoder does not take runs on llama.cpp.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;
use ward_model::gguf::{Header, Tensor, Value};

/// The most tokens encoded at once: a request's inputs are encoded in groups of whole inputs
/// of at most this many tokens (an input is never longer than the model's positions).
const GROUP_TOKENS: usize = 2048;
/// Tokens in one block of the steps between attentions, about: a block's intermediate values
/// stay in the core's cache (blocks of 16 to 32 rows measured fastest, 64 and more slower).
const ROW_BLOCK: usize = 32;
/// Query rows of one attention work item: several per input, so that a single long input
/// still keeps every thread busy.
const ATTENTION_ROWS: usize = 32;

/// How an input's token vectors become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    /// The first token's (`[CLS]`).
    Cls,
}

/// A loaded encoder.
pub struct Encoder {
    hidden: usize,
    heads: usize,
    feed_forward: usize,
    epsilon: f32,
    vocabulary: usize,
    positions: usize,
    /// vocabulary × hidden.
    token_embedding: Vec<f32>,
    /// positions × hidden.
    position_embedding: Vec<f32>,
    /// The embedding of token type 0, which every token of an input has.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    pooling: Pooling,
    parameters: u64,
    pool: rayon::ThreadPool,
}

/// y = x·W + b, with W stored input × output, row by row.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    input: usize,
    output: usize,
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value in one product: output 3 × hidden.
    qkv: Linear,
    attention_output: Linear,
    attention_norm: Norm,
    up: Linear,
    down: Linear,
    output_norm: Norm,
}

impl Encoder {
    /// Loads the model at `path` (whose header is `header`) if this encoder takes it:
    /// `Err` says why not, and the model then runs on llama.cpp.
    pub fn load(
        path: &Path,
        header: &Header,
        pooling: Pooling,
        threads: usize,
    ) -> Result<Encoder, String> {
        if header.architecture() != Some("bert") {
            return Err("not a bert model".into());
        }
        let number = |key: &str| {
            header
                .architecture_value(key)
                .and_then(Value::as_u64)
                .map(|value| value as usize)
                .filter(|value| *value > 0)
                .ok_or_else(|| format!("bert.{key} is missing"))
        };
        let hidden = number("embedding_length")?;
        let heads = number("attention.head_count")?;
        let feed_forward = number("feed_forward_length")?;
        let layer_count = number("block_count")?;
        if hidden % heads != 0 {
            return Err(format!("{heads} heads do not divide {hidden}"));
        }
        let epsilon = match header.architecture_value("attention.layer_norm_epsilon") {
            Some(Value::Float(epsilon)) => *epsilon as f32,
            _ => 1e-12,
        };
        let file = File::open(path).map_err(|error| error.to_string())?;
        let length = file.metadata().map_err(|error| error.to_string())?.len();
        let reader = Reader {
            file,
            length,
            header,
        };
        let (token_embedding, vocabulary) = reader.table("token_embd.weight", hidden)?;
        let (position_embedding, positions) = reader.table("position_embd.weight", hidden)?;
        let (types, _) = reader.table("token_types.weight", hidden)?;
        let token_type = types[..hidden].to_vec();
        let embedding_norm = reader.norm("token_embd_norm", hidden)?;
        let mut layers = Vec::with_capacity(layer_count);
        for index in 0..layer_count {
            let name = |part: &str| format!("blk.{index}.{part}");
            let query = reader.linear(&name("attn_q"), hidden, hidden)?;
            let key = reader.linear(&name("attn_k"), hidden, hidden)?;
            let value = reader.linear(&name("attn_v"), hidden, hidden)?;
            layers.push(Layer {
                qkv: Linear::side_by_side(&[query, key, value]),
                attention_output: reader.linear(&name("attn_output"), hidden, hidden)?,
                attention_norm: reader.norm(&name("attn_output_norm"), hidden)?,
                up: reader.linear(&name("ffn_up"), hidden, feed_forward)?,
                down: reader.linear(&name("ffn_down"), feed_forward, hidden)?,
                output_norm: reader.norm(&name("layer_output_norm"), hidden)?,
            });
        }
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|index| format!("encoder-{index}"))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Encoder {
            hidden,
            heads,
            feed_forward,
            epsilon,
            vocabulary,
            positions,
            token_embedding,
            position_embedding,
            token_type,
            embedding_norm,
            layers,
            pooling,
            parameters: header.parameters(),
            pool,
        })
    }

    /// Tokens an input may have.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The length of the vectors made.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// Memory the weights take.
    pub fn bytes(&self) -> u64 {
        let linear = |linear: &Linear| linear.weight.len() + linear.bias.len();
        let norm = |norm: &Norm| norm.weight.len() + norm.bias.len();
        let values = self.token_embedding.len()
            + self.position_embedding.len()
            + self.token_type.len()
            + norm(&self.embedding_norm)
            + self
                .layers
                .iter()
                .map(|layer| {
                    linear(&layer.qkv)
                        + linear(&layer.attention_output)
                        + norm(&layer.attention_norm)
                        + linear(&layer.up)
                        + linear(&layer.down)
                        + norm(&layer.output_norm)
                })
                .sum::<usize>();
        values as u64 * 4
    }

    /// One pooled vector per input. Every token must be below the vocabulary's size and no
    /// input longer than [`Encoder::positions`].
    pub fn encode(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String> {
        for (index, tokens) in inputs.iter().enumerate() {
            if tokens.is_empty() || tokens.len() > self.positions {
                return Err(format!(
                    "input {index} has {} tokens; the model takes 1 to {}",
                    tokens.len(),
                    self.positions
                ));
            }
            if let Some(token) = tokens
                .iter()
                .find(|token| **token as usize >= self.vocabulary)
            {
                return Err(format!(
                    "input {index} has token {token}, past the vocabulary"
                ));
            }
        }
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut first = 0;
        while first < inputs.len() {
            let mut last = first + 1;
            let mut tokens = inputs[first].len();
            while last < inputs.len() && tokens + inputs[last].len() <= GROUP_TOKENS {
                tokens += inputs[last].len();
                last += 1;
            }
            let group = &inputs[first..last];
            vectors.extend(self.pool.install(|| self.encode_group(group)));
            first = last;
        }
        Ok(vectors)
    }

    /// Encodes inputs whose tokens, one after another, are the rows of each matrix.
    fn encode_group(&self, inputs: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let hidden = self.hidden;
        let spans: Vec<(usize, usize)> = inputs
            .iter()
            .scan(0, |start, tokens| {
                let span = (*start, tokens.len());
                *start += tokens.len();
                Some(span)
            })
            .collect();
        let rows: usize = inputs.iter().map(Vec::len).sum();
        let mut x = vec![0f32; rows * hidden];
        for (tokens, (start, _)) in inputs.iter().zip(&spans) {
            for (position, token) in tokens.iter().enumerate() {
                let row = &mut x[(start + position) * hidden..][..hidden];
                let word = &self.token_embedding[*token as usize * hidden..][..hidden];
                let place = &self.position_embedding[position * hidden..][..hidden];
                for (((out, word), place), kind) in
                    row.iter_mut().zip(word).zip(place).zip(&self.token_type)
                {
                    *out = word + place + kind;
                }
            }
        }
        let epsilon = self.epsilon;
        // Blocks of about ROW_BLOCK rows, as many for each thread.
        let threads = self.pool.current_num_threads();
        let blocks = threads * (rows / (threads * ROW_BLOCK)).max(1);
        let row_block = rows.div_ceil(blocks);
        let block = row_block * hidden;
        // `load` refuses a model without layers.
        let first = &self.layers[0];
        // Everything but attention works on each token alone, so it runs in blocks of rows,
        // each block through every step from one attention to the next while it is in cache.
        let mut qkv = vec![0f32; rows * 3 * hidden];
        x.par_chunks_mut(block)
            .zip(qkv.par_chunks_mut(row_block * 3 * hidden))
            .for_each(|(x, qkv)| {
                self.embedding_norm.apply(x, None, epsilon);
                first.qkv.apply(x, qkv);
            });
        let mut context = vec![0f32; rows * hidden];
        for (index, layer) in self.layers.iter().enumerate() {
            self.attend(&qkv, &spans, &mut context);
            let next = self.layers.get(index + 1);
            x.par_chunks_mut(block)
                .zip(context.par_chunks(block))
                .zip(qkv.par_chunks_mut(row_block * 3 * hidden))
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(projected, up), ((x, context), qkv)| {
                        let rows = x.len() / hidden;
                        projected.resize(x.len(), 0.0);
                        up.resize(rows * self.feed_forward, 0.0);
                        layer.attention_output.apply(context, projected);
                        layer.attention_norm.apply(x, Some(projected), epsilon);
                        layer.up.apply(x, up);
                        gelu_all(up);
                        layer.down.apply(up, projected);
                        layer.output_norm.apply(x, Some(projected), epsilon);
                        if let Some(next) = next {
                            next.qkv.apply(x, qkv);
                        }
                    },
                );
        }
        self.pool_rows(&x, &spans)
    }

    /// The pooled vector of each input, whose tokens are rows `spans` of `x`.
    fn pool_rows(&self, x: &[f32], spans: &[(usize, usize)]) -> Vec<Vec<f32>> {
        let hidden = self.hidden;
        spans
            .iter()
            .map(|(start, len)| match self.pooling {
                Pooling::Cls => x[start * hidden..][..hidden].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0f32; hidden];
                    for row in x[start * hidden..(start + len) * hidden].chunks_exact(hidden) {
                        sum.iter_mut()
                            .zip(row)
                            .for_each(|(sum, value)| *sum += value);
                    }
                    let scale = 1.0 / *len as f32;
                    sum.iter_mut().for_each(|value| *value *= scale);
                    sum
                }
            })
            .collect()
    }

    /// Self-attention of each input over its own tokens, every head: `qkv` holds each
    /// token's query, key and value side by side; `context` gets each token's result.
    fn attend(&self, qkv: &[f32], spans: &[(usize, usize)], context: &mut [f32]) {
        let hidden = self.hidden;
        let width = hidden / self.heads;
        let scale = 1.0 / (width as f32).sqrt();
        // Work items: a block of query rows of one input, and the rows of `context` it fills.
        let mut items = Vec::new();
        let mut rest = context;
        for &(start, len) in spans {
            let mut row = 0;
            while row < len {
                let count = ATTENTION_ROWS.min(len - row);
                let (block, tail) = rest.split_at_mut(count * hidden);
                items.push((start, len, row, block));
                rest = tail;
                row += count;
            }
        }
        let shape = Heads {
            hidden,
            heads: self.heads,
            scale,
        };
        items
            .into_par_iter()
            .for_each(|(start, len, first, block)| {
                let keys = &qkv[start * 3 * hidden..(start + len) * 3 * hidden];
                #[cfg(target_arch = "x86_64")]
                if wide() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    unsafe { attend_rows_wide(&shape, keys, first, block) };
                    return;
                }
                attend_rows(&shape, keys, first, block);
            });
    }
}

/// The shape of self-attention.
struct Heads {
    hidden: usize,
    heads: usize,
    scale: f32,
}

/// Fills `block`, the results of query rows `first..` of one input whose tokens' query, key
/// and value are the rows of `tokens`.
#[inline(always)]
fn attend_rows(shape: &Heads, tokens: &[f32], first: usize, block: &mut [f32]) {
    let Heads {
        hidden,
        heads,
        scale,
    } = *shape;
    let width = hidden / heads;
    let mut scores = vec![0f32; tokens.len() / (3 * hidden)];
    for (offset, out) in block.chunks_exact_mut(hidden).enumerate() {
        let row = &tokens[(first + offset) * 3 * hidden..][..hidden];
        for head in 0..heads {
            let query = &row[head * width..][..width];
            let mut max = f32::NEG_INFINITY;
            for (score, token) in scores.iter_mut().zip(tokens.chunks_exact(3 * hidden)) {
                let key = &token[hidden + head * width..][..width];
                *score = dot(query, key) * scale;
                max = max.max(*score);
            }
            let mut total = 0.0;
            for score in scores.iter_mut() {
                *score = exp(*score - max);
                total += *score;
            }
            let out = &mut out[head * width..][..width];
            out.fill(0.0);
            for (score, token) in scores.iter().zip(tokens.chunks_exact(3 * hidden)) {
                let value = &token[2 * hidden + head * width..][..width];
                let weight = score / total;
                out.iter_mut()
                    .zip(value)
                    .for_each(|(out, value)| *out += weight * value);
            }
        }
    }
}

/// [`attend_rows`] compiled for AVX2, whose loops then take eight values at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_rows_wide(shape: &Heads, tokens: &[f32], first: usize, block: &mut [f32]) {
    attend_rows(shape, tokens, first, block)
}

/// [`gelu`] of every value.
fn gelu_all(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { gelu_all_wide(values) };
        return;
    }
    values.iter_mut().for_each(|value| *value = gelu(*value));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_all_wide(values: &mut [f32]) {
    values.iter_mut().for_each(|value| *value = gelu(*value));
}

/// Whether the CPU has AVX2 and FMA (the test is cached by the standard library).
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

impl Linear {
    /// Several products of the same input as one, their outputs side by side.
    fn side_by_side(parts: &[Linear]) -> Linear {
        let input = parts[0].input;
        let output: usize = parts.iter().map(|part| part.output).sum();
        let mut weight = Vec::with_capacity(input * output);
        for row in 0..input {
            for part in parts {
                weight.extend_from_slice(&part.weight[row * part.output..][..part.output]);
            }
        }
        let bias = parts
            .iter()
            .flat_map(|part| part.bias.iter().copied())
            .collect();
        Linear {
            weight,
            bias,
            input,
            output,
        }
    }

    /// `out` = `x`·W + b, for as many rows as `x` has.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let rows = x.len() / self.input;
        assert_eq!(x.len(), rows * self.input);
        assert_eq!(out.len(), rows * self.output);
        for row in out.chunks_exact_mut(self.output) {
            row.copy_from_slice(&self.bias);
        }
        // SAFETY: `out` holds rows × output values, `x` rows × input and the weight
        // input × output, each row after row with the strides given; none overlap.
        unsafe {
            gemm::gemm(
                rows,
                self.output,
                self.input,
                out.as_mut_ptr(),
                1,
                self.output as isize,
                true,
                x.as_ptr(),
                1,
                self.input as isize,
                self.weight.as_ptr(),
                1,
                self.output as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

impl Norm {
    /// Each row of `x` (with `residual` added first, if any) normalised to mean 0 and
    /// variance 1, then scaled and shifted.
    fn apply(&self, x: &mut [f32], residual: Option<&[f32]>, epsilon: f32) {
        let width = self.weight.len();
        for (index, row) in x.chunks_exact_mut(width).enumerate() {
            if let Some(residual) = residual {
                let add = &residual[index * width..][..width];
                row.iter_mut()
                    .zip(add)
                    .for_each(|(value, add)| *value += add);
            }
            let mean = row.iter().sum::<f32>() / width as f32;
            let variance =
                row.iter().map(|value| (value - mean).powi(2)).sum::<f32>() / width as f32;
            let scale = 1.0 / (variance + epsilon).sqrt();
            for ((value, weight), bias) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *value = (*value - mean) * scale * weight + bias;
            }
        }
    }
}

/// Reads tensors out of a GGUF file, as 32-bit floats.
struct Reader<'a> {
    file: File,
    /// The file's length: no tensor is read past it, whatever the header declares.
    length: u64,
    header: &'a Header,
}

impl Reader<'_> {
    fn tensor(&self, name: &str) -> Result<(&Tensor, Vec<f32>), String> {
        let tensor = self
            .header
            .tensors
            .iter()
            .find(|tensor| tensor.name == name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        let size: u64 = match tensor.kind {
            0 => 4,
            1 | 30 => 2,
            kind => {
                return Err(format!(
                    "tensor {name} is {}",
                    ward_model::gguf::type_name(kind)
                ))
            }
        };
        let bytes = tensor
            .elements()
            .checked_mul(size)
            .filter(|bytes| tensor.offset.saturating_add(*bytes) <= self.length)
            .ok_or_else(|| format!("tensor {name} runs past the end of the file"))?;
        let mut bytes = vec![0u8; bytes as usize];
        self.file
            .read_exact_at(&mut bytes, tensor.offset)
            .map_err(|error| format!("tensor {name}: {error}"))?;
        let values = match tensor.kind {
            0 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            1 => bytes
                .chunks_exact(2)
                .map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
        };
        Ok((tensor, values))
    }

    /// A table of rows `width` wide, and how many rows it has.
    fn table(&self, name: &str, width: usize) -> Result<(Vec<f32>, usize), String> {
        let (tensor, values) = self.tensor(name)?;
        match tensor.shape[..] {
            [columns, rows] if columns as usize == width && rows > 0 => Ok((values, rows as usize)),
            _ => Err(format!("tensor {name} has shape {:?}", tensor.shape)),
        }
    }

    fn vector(&self, name: &str, length: usize) -> Result<Vec<f32>, String> {
        let (tensor, values) = self.tensor(name)?;
        if tensor.shape[..] != [length as u64] {
            return Err(format!("tensor {name} has shape {:?}", tensor.shape));
        }
        Ok(values)
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm, String> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"), width)?,
            bias: self.vector(&format!("{name}.bias"), width)?,
        })
    }

    /// A linear layer: GGUF keeps its weight output × input, row by row; it is turned to
    /// input × output, the layout the products read fastest.
    fn linear(&self, name: &str, input: usize, output: usize) -> Result<Linear, String> {
        let (stored, rows) = self.table(&format!("{name}.weight"), input)?;
        if rows != output {
            return Err(format!(
                "tensor {name}.weight has {rows} rows, not {output}"
            ));
        }
        let mut weight = vec![0f32; input * output];
        for (out, row) in stored.chunks_exact(input).enumerate() {
            for (index, value) in row.iter().enumerate() {
                weight[index * output + out] = *value;
            }
        }
        Ok(Linear {
            weight,
            bias: self.vector(&format!("{name}.bias"), output)?,
            input,
            output,
        })
    }
}

/// An IEEE half-precision value as a 32-bit float.
fn half_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => {
            let value = mantissa as f32 * 2f32.powi(-24);
            return if sign == 0 { value } else { -value };
        }
        0x1f => 0xff << 23 | mantissa << 13,
        _ => (exponent + 127 - 15) << 23 | mantissa << 13,
    };
    f32::from_bits(sign | magnitude)
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so that the compiler keeps them in vector registers.
    let mut sums = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (a, b) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for lane in 0..8 {
            sums[lane] += a[lane] * b[lane];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(a, b)| a * b)
        .sum();
    sums.iter().sum::<f32>() + tail
}

/// e^x to about 1e-7 relative, branch-free so that loops over it use vector instructions.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The error function to 5e-7 (Abramowitz and Stegun 7.1.26, in 32 bits).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// BERT's activation: x·Φ(x), with the exact normal distribution (not the tanh estimate).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_close_to_the_library_ones() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let want = x.exp();
            assert!(
                ((exp(x) - want) / want).abs() < 5e-7,
                "exp({x}) = {} not {want}",
                exp(x)
            );
            x += 0.137;
        }
        for step in -600..=600 {
            let x = step as f64 / 100.0;
            let want = libm_erf(x);
            assert!(
                (f64::from(erf(x as f32)) - want).abs() < 5e-7,
                "erf({x}) = {} not {want}",
                erf(x as f32)
            );
        }
    }

    /// erf by its series (for |x| ≤ 3) or continued fraction, in 64 bits.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc is below 2.3e-5 there and falls fast; its continued fraction converges.
            let a = x.abs();
            let mut fraction = 0.0;
            for k in (1..60).rev() {
                fraction = (k as f64 / 2.0) / (a + fraction);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + fraction);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x7bff), 65504.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(half_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn side_by_side_products_match_separate_ones() {
        let part = |seed: f32, output: usize| Linear {
            weight: (0..3 * output).map(|i| (i as f32 * seed).sin()).collect(),
            bias: (0..output).map(|i| i as f32 * 0.5).collect(),
            input: 3,
            output,
        };
        let (a, b) = (part(0.3, 2), part(0.7, 4));
        let x: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let (mut one, mut two, mut both) = (vec![0.0; 4], vec![0.0; 8], vec![0.0; 12]);
        a.apply(&x, &mut one);
        b.apply(&x, &mut two);
        Linear::side_by_side(&[a, b]).apply(&x, &mut both);
        for row in 0..2 {
            let joined: Vec<f32> = [&one[row * 2..][..2], &two[row * 4..][..4]].concat();
            assert_eq!(&both[row * 6..][..6], &joined[..]);
        }
        // Row 0 of `a` by hand: x0·W[:,0] + b0.
        let want: f32 = (0..3).map(|k| x[k] * (((k * 2) as f32) * 0.3).sin()).sum();
        assert!((one[0] - want).abs() < 1e-5);
    }
}
