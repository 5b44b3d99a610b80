//! Completions from a project's models, as every caller asks for them.

use tokio::sync::mpsc;

use crate::Error;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The calls an assistant turn made.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` turn: the call it answers.
    pub tool_call_id: Option<String>,
}

/// A call of a tool, as a model made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of an object.
    pub arguments: String,
}

/// A function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema of an object.
    pub parameters: serde_json::Value,
}

/// Whether the model calls tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// It answers in words only.
    None,
    /// It calls tools or answers, as it sees fit.
    #[default]
    Auto,
    /// It calls at least one tool.
    Required,
    /// It calls this tool.
    Named(String),
}

/// What to complete: text as it is, or chat messages put through the model's own template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompletionPrompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub prompt: CompletionPrompt,
    pub max_tokens: u32,
    /// 0: always the likeliest token.
    pub temperature: f32,
    pub top_p: f32,
    /// The same seed, prompt and settings give the same completion.
    pub seed: u32,
    /// Generation ends before the first of these.
    pub stop: Vec<String>,
    pub format: ResponseFormat,
    /// Tools the model may call (none: it answers in words).
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// How long the model stays loaded after this request; `None`: the daemon's setting.
    pub keep_alive: Option<std::time::Duration>,
}

/// What shape the completion must have.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ResponseFormat {
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that this JSON Schema accepts.
    JsonSchema(serde_json::Value),
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended it, or a stop string came.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
    /// The model called tools.
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// What a completion sends, in order: its text piece by piece, then `Done` or `Failed`.
#[derive(Clone, Debug, PartialEq)]
pub enum CompletionEvent {
    Text(String),
    /// Call `index` (from 0) begins, of tool `name`; its arguments follow.
    ToolCall {
        index: u32,
        id: String,
        name: String,
    },
    /// More JSON text of call `index`'s arguments.
    ToolArguments {
        index: u32,
        text: String,
    },
    Done {
        finish_reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
        /// Prompt tokens read from the cache of an earlier completion.
        cached_tokens: u32,
    },
    Failed(Error),
}

/// A model a runner holds in memory now.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedModel {
    pub name: String,
    pub digest: String,
    /// The runner's process.
    pub pid: u32,
    /// Memory the runner uses now (resident).
    pub memory_bytes: u64,
    /// Requests it decodes together, and tokens of context each.
    pub slots: u32,
    pub context: u32,
    /// Requests running or waiting now.
    pub requests: u32,
    /// When it unloads if no request comes (seconds from now).
    pub unloads_in_seconds: u64,
}

/// Texts to turn into vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingRequest {
    pub inputs: Vec<String>,
    /// As a completion's.
    pub keep_alive: Option<std::time::Duration>,
}

/// A unit-length vector per input, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// Runs completions on loaded models, loading them on first use.
pub trait Inference: Send + Sync {
    /// The project's models that are loaded now.
    fn loaded(&self, project: &str) -> Result<Vec<LoadedModel>, Error>;

    /// Runners that have stopped on their own (crashed, killed, out of memory) since the
    /// engine started; the next request to each started a new one.
    fn runner_failures(&self) -> u64;

    /// The models of every project that are loaded now, each with its project.
    fn loaded_everywhere(&self) -> Result<Vec<(String, LoadedModel)>, Error>;

    /// Loads `model` now rather than at its first request. Blocks while it loads.
    fn load(&self, project: &str, model: &str) -> Result<LoadedModel, Error>;

    /// Stops `model`'s runner; its requests in flight end with an error.
    fn unload(&self, project: &str, model: &str) -> Result<(), Error>;

    /// Starts a completion of `request` on model `model` of `project`. Blocks while the model
    /// loads: call it off the async threads.
    fn complete(
        &self,
        project: &str,
        model: &str,
        request: CompletionRequest,
    ) -> Result<mpsc::Receiver<CompletionEvent>, Error>;

    /// Embeds `request`'s inputs with embedding model `model` of `project`. Blocks while the
    /// model loads and runs: call it off the async threads.
    fn embed(
        &self,
        project: &str,
        model: &str,
        request: EmbeddingRequest,
    ) -> Result<Embeddings, Error>;
}
