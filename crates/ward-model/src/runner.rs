//! What goes over a model runner's Unix socket: one [`Request`] line per connection, then JSON
//! lines — for `info`, one [`ModelInfo`]; for `generate`, the [`Event`]s of that completion,
//! the last a `done` or an `error`. The daemon speaks it without linking llama.cpp.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// What the model is and how the runner runs it.
    Info,
    Generate(Generate),
    /// Embeddings of each input, for a model that makes them.
    Embed(Embed),
}

/// Texts to embed, each on its own (none sees another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    pub inputs: Vec<String>,
}

/// What to complete: text as it is, or chat messages put through the model's own template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// One completion to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generate {
    pub prompt: Prompt,
    pub max_tokens: u32,
    /// 0: always the likeliest token.
    pub temperature: f32,
    pub top_p: f32,
    /// The same seed, prompt and settings give the same completion.
    pub seed: u32,
    /// Generation ends before the first of these; it is not part of the completion.
    #[serde(default)]
    pub stop: Vec<String>,
    /// A GBNF grammar the completion must follow (root rule `root`).
    #[serde(default)]
    pub grammar: Option<String>,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended it, or a stop string came.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
}

/// What a request hears back, in order: its text piece by piece, then one `Done` or `Error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Text(String),
    Done {
        finish_reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        /// Prompt tokens whose keys and values an earlier completion left in the cache:
        /// not computed again.
        #[serde(default)]
        cached_tokens: u32,
    },
    Error(Refusal),
    /// The answer to an `embed` request: a unit-length vector per input, in order.
    Embeddings {
        vectors: Vec<Vec<f32>>,
        prompt_tokens: u32,
    },
}

impl Event {
    /// Whether nothing follows this event.
    pub fn is_last(&self) -> bool {
        !matches!(self, Event::Text(_))
    }
}

/// Why a request was not run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The prompt and the smallest completion do not fit the context.
    #[error("the prompt is {prompt_tokens} tokens and the context holds {context}: shorten it")]
    PromptTooLong { prompt_tokens: u32, context: u32 },
    #[error("{0}")]
    Invalid(String),
    /// One input of an embedding request is longer than the model reads.
    #[error("input {index} is {tokens} tokens and the model reads at most {context}: shorten or split it")]
    InputTooLong {
        index: usize,
        tokens: u32,
        context: u32,
    },
    /// The runner stopped before the completion ended (the daemon says this, not a runner).
    #[error("{0}")]
    RunnerStopped(String),
}

/// What the model is, read once it is loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub parameters: u64,
    pub size_bytes: u64,
    pub context_train: u32,
    pub context: u32,
    pub slots: u32,
    pub chat_template: Option<String>,
    /// The length of its vectors, for a model that makes embeddings (and only them).
    #[serde(default)]
    pub embedding_length: Option<u32>,
}
