//! One model on llama.cpp, serving several sequences at once: each request takes a slot (its
//! own sequence in the context's KV cache), and every step decodes one batch that holds the
//! next prompt chunk of the slots still reading their prompt and the last sampled token of
//! the slots generating (continuous batching). A finished slot keeps its KV cache, and a new
//! prompt goes to the free slot that holds the longest beginning of it, so the next turn of a
//! conversation reads only what is new. The engine runs on the thread that calls [`run`];
//! requests come in through a channel and their tokens go out through each one's own.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::params::LlamaPoolingType;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use ward_model::gguf::Header;

use crate::bert;
pub use ward_model::runner::{
    ChatMessage, Embed, Event, FinishReason, Generate, ModelInfo, Prompt, Refusal,
};

/// How the engine runs its model.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub model: PathBuf,
    /// Tokens of context each slot holds (prompt and completion together).
    pub context: u32,
    /// Sequences decoded together.
    pub slots: u32,
    /// CPU threads for decoding.
    pub threads: i32,
    /// The most tokens one decode step takes.
    pub batch: u32,
}

/// A request with the channel its events go to.
#[derive(Debug)]
pub struct Job {
    pub task: Task,
    pub events: mpsc::Sender<Event>,
}

#[derive(Debug)]
pub enum Task {
    Generate(Generate),
    Embed(Embed),
}

/// The most inputs of an embedding request decoded in one batch.
const EMBEDDING_SEQUENCES: u32 = 64;
/// Tokens of short inputs packed into one batch: the encoder attends across the whole batch
/// (masked to each input), so fewer tokens waste less (an input longer than this goes alone).
const EMBEDDING_PACK_TOKENS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("llama.cpp: {0}")]
    Backend(#[from] llama_cpp_2::LlamaCppError),
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot make a context: {0}")]
    Context(String),
    #[error("decode failed: {0}")]
    Decode(String),
}

/// Loads the model, reports what it is through `ready`, then serves `jobs` until the channel
/// closes and every slot is done.
pub fn run(
    config: &EngineConfig,
    jobs: mpsc::Receiver<Job>,
    ready: impl FnOnce(&ModelInfo),
) -> Result<(), EngineError> {
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    if let Some(encoder) = bert_encoder(config) {
        // llama.cpp only tokenizes: its vocabulary alone is loaded.
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model =
            LlamaModel::load_from_file(&backend, &config.model, &params).map_err(|error| {
                EngineError::Load {
                    path: config.model.clone(),
                    reason: error.to_string(),
                }
            })?;
        return serve_embeddings(&model, Embedder::Bert(encoder), &jobs, ready);
    }
    let model = LlamaModel::load_from_file(&backend, &config.model, &LlamaModelParams::default())
        .map_err(|error| EngineError::Load {
        path: config.model.clone(),
        reason: error.to_string(),
    })?;
    if let Some(pooling) = pooling(&model) {
        let embedder = Embedder::llama(&backend, &model, pooling, config)?;
        return serve_embeddings(&model, embedder, &jobs, ready);
    }
    let slots = config.slots.max(1);
    let total_context = config.context.saturating_mul(slots);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(total_context))
        .with_n_batch(config.batch)
        .with_n_ubatch(config.batch)
        .with_n_seq_max(slots)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads);
    let mut context = model
        .new_context(&backend, params)
        .map_err(|error| EngineError::Context(error.to_string()))?;
    let info = ModelInfo {
        parameters: model.n_params(),
        size_bytes: model.size(),
        context_train: model.n_ctx_train(),
        context: context.n_ctx() / slots,
        slots,
        chat_template: model
            .chat_template(None)
            .ok()
            .and_then(|template| template.to_string().ok()),
        embedding_length: None,
    };
    ready(&info);
    let mut scheduler = Scheduler::new(&model, slots as usize, info.context, config.batch);
    scheduler.serve(&mut context, &jobs)
}

/// A completion and where its events go.
struct Running {
    request: Generate,
    events: mpsc::Sender<Event>,
}

/// A slot at work.
struct Active {
    job: Running,
    sampler: LlamaSampler,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already in the KV cache.
    read: usize,
    /// The token to feed next, once the prompt is read.
    next: Option<LlamaToken>,
    /// Position of the next token in the sequence.
    position: u32,
    /// The tokens in the slot's KV cache, one per position before `position`.
    fed: Vec<LlamaToken>,
    /// Prompt tokens that were in the cache already.
    reused: u32,
    generated: u32,
    /// Bytes of text not yet sent: an incomplete UTF-8 character, or what could be the
    /// start of a stop string.
    pending: Vec<u8>,
}

struct Scheduler<'model> {
    model: &'model LlamaModel,
    slots: Vec<Option<Active>>,
    /// What each free slot's KV cache still holds from its last completion, position by
    /// position: a new prompt that begins the same way goes to the slot that holds most of
    /// it and is read only from where they part (a conversation's next turn re-reads only
    /// the new messages).
    cached: Vec<Vec<LlamaToken>>,
    context: u32,
    batch: u32,
}

impl<'model> Scheduler<'model> {
    fn new(model: &'model LlamaModel, slots: usize, context: u32, batch: u32) -> Self {
        Scheduler {
            model,
            slots: (0..slots).map(|_| None).collect(),
            cached: vec![Vec::new(); slots],
            context,
            batch,
        }
    }

    fn serve(
        &mut self,
        context: &mut LlamaContext<'_>,
        jobs: &mpsc::Receiver<Job>,
    ) -> Result<(), EngineError> {
        let mut open = true;
        loop {
            // Take new jobs while slots are free; wait for one only when nothing runs.
            while open && self.slots.iter().any(Option::is_none) {
                let busy = self.slots.iter().any(Option::is_some);
                let job = if busy {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.admit(job, context);
            }
            if !open && self.slots.iter().all(Option::is_none) {
                return Ok(());
            }
            self.step(context)?;
        }
    }

    /// Puts a job in a free slot, or answers it at once if it cannot run.
    fn admit(&mut self, job: Job, context: &mut LlamaContext<'_>) {
        let request = match job.task {
            Task::Generate(request) => request,
            Task::Embed(_) => {
                let _ = job.events.send(Event::Error(Refusal::Invalid(
                    "this model generates text and makes no embeddings: use an embedding model"
                        .into(),
                )));
                return;
            }
        };
        let job = Running {
            request,
            events: job.events,
        };
        let prompt = match self.prompt_tokens(&job.request.prompt) {
            Ok(prompt) => prompt,
            Err(refusal) => {
                let _ = job.events.send(Event::Error(refusal));
                return;
            }
        };
        let prompt_tokens = prompt.len() as u32;
        if prompt_tokens + 1 > self.context {
            let _ = job.events.send(Event::Error(Refusal::PromptTooLong {
                prompt_tokens,
                context: self.context,
            }));
            return;
        }
        let sampler = match self.sampler(&job.request) {
            Ok(sampler) => sampler,
            Err(refusal) => {
                let _ = job.events.send(Event::Error(refusal));
                return;
            }
        };
        // The free slot whose cache shares the longest beginning with the prompt (at least
        // the prompt's last token is read again: its logits give the first token); among
        // equals, the one holding least, so that longer caches stay for their own turns.
        let Some((index, shared)) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_none())
            .map(|(index, _)| {
                let cached = &self.cached[index];
                let shared = cached
                    .iter()
                    .zip(&prompt)
                    .take_while(|(a, b)| a == b)
                    .count()
                    .min(prompt.len() - 1);
                (index, shared)
            })
            .max_by_key(|&(index, shared)| (shared, std::cmp::Reverse(self.cached[index].len())))
        else {
            return;
        };
        let sequence = Some(index as u32);
        let kept = shared > 0
            && context
                .clear_kv_cache_seq(sequence, Some(shared as u32), None)
                .unwrap_or(false);
        let shared = if kept {
            shared
        } else {
            let _ = context.clear_kv_cache_seq(sequence, None, None);
            0
        };
        self.cached[index].clear();
        self.slots[index] = Some(Active {
            job,
            sampler,
            fed: prompt[..shared].to_vec(),
            reused: shared as u32,
            prompt,
            read: shared,
            next: None,
            position: shared as u32,
            generated: 0,
            pending: Vec::new(),
        });
    }

    fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, Refusal> {
        let text = match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => {
                let template = self.model.chat_template(None).map_err(|_| {
                    Refusal::Invalid("this model has no chat template; send a prompt".into())
                })?;
                let messages = messages
                    .iter()
                    .map(|message| {
                        LlamaChatMessage::new(message.role.clone(), message.content.clone())
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| Refusal::Invalid("messages: a message holds a NUL byte".into()))?;
                self.model
                    .apply_chat_template(&template, &messages, true)
                    .map_err(|error| {
                        Refusal::Invalid(format!("the chat template failed: {error}"))
                    })?
            }
        };
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(text.as_bytes(), vocab.should_add_bos(), true);
        if tokens.is_empty() {
            return Err(Refusal::Invalid("prompt: it is empty".into()));
        }
        Ok(tokens)
    }

    fn sampler(&self, request: &Generate) -> Result<LlamaSampler, Refusal> {
        let mut chain = Vec::new();
        if let Some(grammar) = &request.grammar {
            chain.push(
                LlamaSampler::grammar(self.model, grammar, "root")
                    .map_err(|error| Refusal::Invalid(format!("grammar: {error}")))?,
            );
        }
        if request.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.push(LlamaSampler::top_p(request.top_p.clamp(0.0, 1.0), 1));
            chain.push(LlamaSampler::temp(request.temperature));
            chain.push(LlamaSampler::dist(request.seed));
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    /// One decode over every working slot, then a token for each slot whose logits came.
    fn step(&mut self, context: &mut LlamaContext<'_>) -> Result<(), EngineError> {
        let mut batch = LlamaBatch::new(self.batch as usize, self.slots.len() as i32);
        // (slot, index in the batch of its logits)
        let mut sampled = Vec::new();
        let mut room = self.batch as usize;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(active) = slot else { continue };
            if room == 0 {
                break;
            }
            let sequence = [index as i32];
            if active.read < active.prompt.len() {
                let take = (active.prompt.len() - active.read).min(room);
                for offset in 0..take {
                    let last = active.read + offset + 1 == active.prompt.len();
                    let token = active.prompt[active.read + offset];
                    batch
                        .add(token, active.position as i32, &sequence, last)
                        .map_err(|error| EngineError::Decode(error.to_string()))?;
                    active.fed.push(token);
                    active.position += 1;
                    if last {
                        sampled.push((index, batch.n_tokens() - 1));
                    }
                }
                active.read += take;
                room -= take;
            } else if let Some(token) = active.next.take() {
                batch
                    .add(token, active.position as i32, &sequence, true)
                    .map_err(|error| EngineError::Decode(error.to_string()))?;
                active.fed.push(token);
                active.position += 1;
                room -= 1;
                sampled.push((index, batch.n_tokens() - 1));
            }
        }
        if batch.n_tokens() == 0 {
            return Ok(());
        }
        context
            .decode(&mut batch)
            .map_err(|error| EngineError::Decode(error.to_string()))?;
        for (index, logits) in sampled {
            let finished = {
                let Some(active) = self.slots[index].as_mut() else {
                    continue;
                };
                let token = active.sampler.sample(context, logits);
                self.advance(index, token)
            };
            if let Some((reason, mut active)) = finished {
                // The KV cache stays, for a next prompt that begins the same way.
                self.cached[index] = std::mem::take(&mut active.fed);
                finish(active, reason);
            }
        }
        Ok(())
    }

    /// Takes the sampled token of slot `index`; returns the slot's job once it is done.
    fn advance(&mut self, index: usize, token: LlamaToken) -> Option<(FinishReason, Active)> {
        let vocab = self.model.vocab();
        let context = self.context;
        let active = self.slots[index].as_mut()?;
        if vocab.is_eog(token) {
            return self.slots[index]
                .take()
                .map(|active| (FinishReason::Stop, active));
        }
        active.generated += 1;
        active
            .pending
            .extend(vocab.token_to_piece(token, false, None));
        if let Some(cut) = stop_at(&active.pending, &active.job.request.stop) {
            active.pending.truncate(cut);
            return self.slots[index]
                .take()
                .map(|active| (FinishReason::Stop, active));
        }
        let sendable = sendable_prefix(&active.pending, &active.job.request.stop);
        if sendable > 0 {
            let text = String::from_utf8_lossy(&active.pending[..sendable]).into_owned();
            active.pending.drain(..sendable);
            if active.job.events.send(Event::Text(text)).is_err() {
                // The caller left: free the slot.
                return self.slots[index]
                    .take()
                    .map(|active| (FinishReason::Stop, active));
            }
        }
        if active.generated >= active.job.request.max_tokens || active.position + 1 >= context {
            return self.slots[index]
                .take()
                .map(|active| (FinishReason::Length, active));
        }
        active.next = Some(token);
        None
    }
}

/// The pooling of a model that makes embeddings (its GGUF says `<arch>.pooling_type`, and
/// not "none"); `None` for a model that generates text.
fn pooling(model: &LlamaModel) -> Option<LlamaPoolingType> {
    let architecture = model.meta_val_str("general.architecture").ok()?;
    let pooling: i32 = model
        .meta_val_str(&format!("{architecture}.pooling_type"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    match LlamaPoolingType::from(pooling) {
        kind @ (LlamaPoolingType::Mean | LlamaPoolingType::Cls | LlamaPoolingType::Last) => {
            Some(kind)
        }
        _ => None,
    }
}

/// The model at `config.model` on Ward's BERT encoder, if it is one the encoder takes.
fn bert_encoder(config: &EngineConfig) -> Option<bert::Encoder> {
    let header = Header::read_file(&config.model).ok()?;
    let pooling = match header.architecture_value("pooling_type")?.as_u64()? {
        1 => bert::Pooling::Mean,
        2 => bert::Pooling::Cls,
        _ => return None,
    };
    let threads = usize::try_from(config.threads).unwrap_or(1);
    match bert::Encoder::load(&config.model, &header, pooling, threads) {
        Ok(encoder) => Some(encoder),
        Err(reason) => {
            if header.architecture() == Some("bert") {
                eprintln!("ward-runner: the model runs on llama.cpp: {reason}");
            }
            None
        }
    }
}

/// What turns the tokens of inputs into vectors.
enum Embedder<'a> {
    /// llama.cpp, for any embedding model it runs.
    Llama {
        context: LlamaContext<'a>,
        batch_tokens: u32,
        context_train: u32,
        info: ModelInfo,
    },
    /// Ward's own encoder, for BERT models with unquantised weights.
    Bert(bert::Encoder),
}

impl<'a> Embedder<'a> {
    fn llama(
        backend: &LlamaBackend,
        model: &'a LlamaModel,
        pooling: LlamaPoolingType,
        config: &EngineConfig,
    ) -> Result<Embedder<'a>, EngineError> {
        let context_train = model.n_ctx_train().max(1);
        // Every token of a sequence must be in one micro-batch (the encoder sees the whole
        // input at once), so a batch holds at least the longest input.
        let batch_tokens = config.batch.max(context_train);
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_ctx(NonZeroU32::new(batch_tokens))
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_seq_max(EMBEDDING_SEQUENCES)
            .with_n_threads(config.threads)
            .with_n_threads_batch(config.threads);
        let context = model
            .new_context(backend, params)
            .map_err(|error| EngineError::Context(error.to_string()))?;
        let info = ModelInfo {
            parameters: model.n_params(),
            size_bytes: model.size(),
            context_train,
            context: context_train,
            slots: 1,
            chat_template: None,
            embedding_length: Some(model.n_embd_out().max(0) as u32),
        };
        Ok(Embedder::Llama {
            context,
            batch_tokens,
            context_train,
            info,
        })
    }

    fn info(&self) -> ModelInfo {
        match self {
            Embedder::Llama { info, .. } => info.clone(),
            Embedder::Bert(encoder) => ModelInfo {
                parameters: encoder.parameters(),
                size_bytes: encoder.bytes(),
                context_train: encoder.positions() as u32,
                context: encoder.positions() as u32,
                slots: 1,
                chat_template: None,
                embedding_length: Some(encoder.hidden() as u32),
            },
        }
    }

    /// Tokens an input may have.
    fn context(&self) -> u32 {
        match self {
            Embedder::Llama { context_train, .. } => *context_train,
            Embedder::Bert(encoder) => encoder.positions() as u32,
        }
    }

    /// One vector per input, each of unit length.
    fn embed(&mut self, inputs: &[Vec<LlamaToken>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let (context, batch_tokens) = match self {
            Embedder::Bert(encoder) => {
                let tokens: Vec<Vec<u32>> = inputs
                    .iter()
                    .map(|input| input.iter().map(|token| token.0 as u32).collect())
                    .collect();
                let vectors = encoder.encode(&tokens).map_err(EngineError::Decode)?;
                return Ok(vectors.iter().map(|vector| unit_length(vector)).collect());
            }
            Embedder::Llama {
                context,
                batch_tokens,
                ..
            } => (context, *batch_tokens),
        };
        // Inputs are packed, several sequences to a batch.
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut next = 0;
        while next < inputs.len() {
            let mut batch = LlamaBatch::new(batch_tokens as usize, EMBEDDING_SEQUENCES as i32);
            let first = next;
            while next < inputs.len()
                && next - first < EMBEDDING_SEQUENCES as usize
                && (batch.n_tokens() == 0
                    || batch.n_tokens() as usize + inputs[next].len() <= EMBEDDING_PACK_TOKENS)
            {
                batch
                    .add_sequence(&inputs[next], (next - first) as i32, true)
                    .map_err(|error| EngineError::Decode(error.to_string()))?;
                next += 1;
            }
            context.clear_kv_cache();
            context
                .decode(&mut batch)
                .map_err(|error| EngineError::Decode(error.to_string()))?;
            for sequence in 0..(next - first) {
                let pooled = context
                    .embeddings_seq_ith(sequence as i32)
                    .map_err(|error| EngineError::Decode(error.to_string()))?;
                vectors.push(unit_length(pooled));
            }
        }
        Ok(vectors)
    }
}

/// Serves embedding requests: each input's pooled vector comes back scaled to unit length.
fn serve_embeddings(
    model: &LlamaModel,
    mut embedder: Embedder,
    jobs: &mpsc::Receiver<Job>,
    ready: impl FnOnce(&ModelInfo),
) -> Result<(), EngineError> {
    let context_train = embedder.context();
    ready(&embedder.info());
    let vocab = model.vocab();
    for job in jobs {
        let request = match job.task {
            Task::Embed(request) => request,
            Task::Generate(_) => {
                let _ = job.events.send(Event::Error(Refusal::Invalid(
                    "this model makes embeddings and generates no text: use it with /v1/embeddings"
                        .into(),
                )));
                continue;
            }
        };
        let mut inputs = Vec::with_capacity(request.inputs.len());
        let mut refusal = None;
        for (index, text) in request.inputs.iter().enumerate() {
            let tokens = vocab.tokenize(text.as_bytes(), true, false);
            if tokens.len() as u32 > context_train {
                refusal = Some(Refusal::InputTooLong {
                    index,
                    tokens: tokens.len() as u32,
                    context: context_train,
                });
                break;
            }
            inputs.push(tokens);
        }
        if let Some(refusal) = refusal {
            let _ = job.events.send(Event::Error(refusal));
            continue;
        }
        let prompt_tokens = inputs.iter().map(|tokens| tokens.len() as u32).sum();
        let vectors = embedder.embed(&inputs)?;
        let _ = job.events.send(Event::Embeddings {
            vectors,
            prompt_tokens,
        });
    }
    Ok(())
}

/// `vector` scaled to length 1 (a zero vector stays zero).
fn unit_length(vector: &[f32]) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|value| f64::from(*value) * f64::from(*value))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return vector.to_vec();
    }
    vector
        .iter()
        .map(|value| (f64::from(*value) / norm) as f32)
        .collect()
}

/// Sends what is left and the end.
fn finish(active: Active, reason: FinishReason) {
    if !active.pending.is_empty() {
        let text = String::from_utf8_lossy(&active.pending).into_owned();
        let _ = active.job.events.send(Event::Text(text));
    }
    let _ = active.job.events.send(Event::Done {
        finish_reason: reason,
        prompt_tokens: active.prompt.len() as u32,
        completion_tokens: active.generated,
        cached_tokens: active.reused,
    });
}

/// Where the first stop string begins in `text`, if one is there.
fn stop_at(text: &[u8], stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| {
            text.windows(stop.len())
                .position(|window| window == stop.as_bytes())
        })
        .min()
}

/// How many leading bytes of `text` can be sent: whole UTF-8 characters that cannot be the
/// beginning of a stop string still being written.
fn sendable_prefix(text: &[u8], stops: &[String]) -> usize {
    let mut end = match std::str::from_utf8(text) {
        Ok(_) => text.len(),
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        // Not UTF-8 at all: send it as it is (lossily).
        Err(_) => text.len(),
    };
    for stop in stops.iter().filter(|stop| !stop.is_empty()) {
        let stop = stop.as_bytes();
        for keep in (1..stop.len()).rev() {
            if keep <= end && text[..end].ends_with(&stop[..keep]) {
                end -= keep;
                break;
            }
        }
    }
    while end > 0 && end < text.len() && (text[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_string_is_cut_and_its_beginning_held_back() {
        let stops = vec!["END".to_string()];
        assert_eq!(stop_at(b"abcENDxyz", &stops), Some(3));
        assert_eq!(stop_at(b"abc", &stops), None);
        assert_eq!(sendable_prefix(b"abcEN", &stops), 3);
        assert_eq!(sendable_prefix(b"abcE", &stops), 3);
        assert_eq!(sendable_prefix(b"abcX", &stops), 4);
    }

    #[test]
    fn an_incomplete_character_waits_for_its_last_bytes() {
        let euro = "€".as_bytes();
        assert_eq!(sendable_prefix(&euro[..2], &[]), 0);
        let mut text = b"a".to_vec();
        text.extend_from_slice(&euro[..1]);
        assert_eq!(sendable_prefix(&text, &[]), 1);
        assert_eq!(sendable_prefix(euro, &[]), 3);
    }
}
