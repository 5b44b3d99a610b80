//! OpenAI's `POST /v1/chat/completions` and `POST /v1/completions`, so the official clients
//! work against Ward: the whole answer at once, or (`stream: true`) Server-Sent Events of
//! chunks ending with a usage chunk and `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use ward_core::inference::{
    ChatMessage, CompletionEvent, CompletionPrompt, CompletionRequest, FinishReason,
    ResponseFormat, ToolCall, ToolChoice, ToolSpec,
};

use crate::error::{ApiError, JsonBody};
use crate::workloads::{project_of, ProjectQuery};
use crate::{blocking, ApiState};

/// Tokens a completion may take when the request does not say.
const DEFAULT_MAX_TOKENS: u32 = 512;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    #[schema(value_type = Object)]
    pub stop: Option<Value>,
    /// `{"type": "text"}`, `{"type": "json_object"}`, or `{"type": "json_schema",
    /// "json_schema": {"name": …, "schema": {…}}}`.
    #[schema(value_type = Object)]
    pub response_format: Option<Value>,
    /// How long the model stays loaded after this request, as Ollama takes it: seconds, or a
    /// duration like `10m`; 0 unloads it at once, a negative number keeps it loaded.
    #[schema(value_type = Object)]
    pub keep_alive: Option<Value>,
    /// Functions the model may call: `[{"type": "function", "function": {"name": …,
    /// "description": …, "parameters": {JSON Schema of an object}}}]`.
    #[schema(value_type = Vec<Object>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto` (the default with tools), `required`, or `{"type": "function",
    /// "function": {"name": …}}`.
    #[schema(value_type = Object)]
    pub tool_choice: Option<Value>,
}

/// OpenAI's `tools`: function tools with names of letters, digits, `_` and `-`.
fn tools(value: Option<&Vec<Value>>) -> Result<Vec<ToolSpec>, ApiError> {
    let Some(tools) = value else {
        return Ok(Vec::new());
    };
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let field = |name: &str| format!("tools[{index}].{name}");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::bad_request(format!(
                "{}: give \"function\" (the only kind of tool)",
                field("type")
            )));
        }
        let function = tool.get("function").ok_or_else(|| {
            ApiError::bad_request(format!("{}: give the function", field("function")))
        })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| {
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{}: give 1 to 64 letters, digits, _ or -",
                    field("function.name")
                ))
            })?;
        if specs.iter().any(|spec| spec.name == name) {
            return Err(ApiError::bad_request(format!(
                "{}: {name:?} is named twice",
                field("function.name")
            )));
        }
        specs.push(ToolSpec {
            name: name.to_string(),
            description: function
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    Ok(specs)
}

/// OpenAI's `tool_choice`.
fn tool_choice(value: Option<&Value>) -> Result<ToolChoice, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            _ => Err(ApiError::bad_request(
                "tool_choice: give none, auto, required, or {\"type\": \"function\", \"function\": {\"name\": …}}",
            )),
        },
        Some(choice) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Named(name.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "tool_choice.function.name: name the tool the model must call",
                )
            }),
    }
}

/// The calls of an assistant message.
fn message_calls(message: &Value, index: usize) -> Result<Vec<ToolCall>, ApiError> {
    let Some(calls) = message.get("tool_calls").filter(|calls| !calls.is_null()) else {
        return Ok(Vec::new());
    };
    let refuse = || {
        ApiError::bad_request(format!(
            "messages[{index}].tool_calls: give a list of {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}"
        ))
    };
    calls
        .as_array()
        .ok_or_else(refuse)?
        .iter()
        .map(|call| {
            Ok(ToolCall {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                name: call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(refuse)?
                    .to_string(),
                arguments: call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}")
                    .to_string(),
            })
        })
        .collect()
}

/// Ollama's `keep_alive`.
pub(crate) fn keep_alive(value: Option<&Value>) -> Result<Option<std::time::Duration>, ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "keep_alive: give seconds, or a duration like 10m (0 unloads at once, a negative number never)",
        )
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(seconds) if seconds < 0.0 => Ok(Some(std::time::Duration::MAX)),
            Some(seconds) if seconds.is_finite() => {
                Ok(Some(std::time::Duration::from_secs_f64(seconds.min(1e12))))
            }
            _ => Err(refuse()),
        },
        Some(Value::String(text)) => humantime::parse_duration(text)
            .map(Some)
            .map_err(|_| refuse()),
        Some(_) => Err(refuse()),
    }
}

/// OpenAI's `response_format`.
fn response_format(value: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => value
            .get("json_schema")
            .and_then(|json_schema| json_schema.get("schema"))
            .cloned()
            .map(ResponseFormat::JsonSchema)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "response_format.json_schema.schema: give the JSON Schema the answer must follow",
                )
            }),
        _ => Err(ApiError::bad_request(
            "response_format.type: give text, json_object or json_schema",
        )),
    }
}

/// The text of a message's `content`: a string, or OpenAI's list of parts (text parts only).
fn message_text(message: &Value, index: usize) -> Result<ChatMessage, ApiError> {
    let field = |name: &str| format!("messages[{index}].{name}");
    let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(format!("{}: give system, user or assistant", field("role")))
    })?;
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{}: a text part has no text",
                            field("content")
                        ))
                    }),
                _ => Err(ApiError::bad_request(format!(
                    "{}: only text parts are taken; this model reads no images or audio",
                    field("content")
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(""),
        Some(Value::Null) | None => String::new(),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{}: give a string or a list of text parts",
                field("content")
            )))
        }
    };
    Ok(ChatMessage {
        role: role.to_string(),
        content,
        tool_calls: message_calls(message, index)?,
        tool_call_id: message
            .get("tool_call_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn completion_request(request: &ChatRequest) -> Result<CompletionRequest, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("messages: give at least one message"));
    }
    let messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(index, message)| message_text(message, index))
        .collect::<Result<Vec<_>, _>>()?;
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(
            "temperature: give a number from 0 to 2",
        ));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&top_p) {
        return Err(ApiError::bad_request("top_p: give a number from 0 to 1"));
    }
    let stop = match &request.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_request("stop: give a string or a list of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "stop: give a string or a list of strings",
            ))
        }
    };
    let seed = match request.seed {
        // OpenAI's seeds are 64-bit; llama.cpp's 32: the low bits decide.
        Some(seed) => seed as u32,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos()),
    };
    Ok(CompletionRequest {
        tools: tools(request.tools.as_ref())?,
        tool_choice: tool_choice(request.tool_choice.as_ref())?,
        format: response_format(request.response_format.as_ref())?,
        keep_alive: keep_alive(request.keep_alive.as_ref())?,
        prompt: CompletionPrompt::Chat(messages),
        max_tokens: request
            .max_completion_tokens
            .or(request.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)
            .max(1),
        temperature,
        top_p,
        seed,
        stop,
    })
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn usage(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    })
}

/// Which of OpenAI's answer shapes a completion takes.
#[derive(Clone, Copy)]
enum Shape {
    /// `chat.completion`, with the text in `message` (whole) or `delta` (streamed).
    Chat,
    /// `text_completion`, with the text in `text`.
    Text,
}

impl Shape {
    fn id(self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        match self {
            Shape::Chat => format!("chatcmpl-{nanos:x}"),
            Shape::Text => format!("cmpl-{nanos:x}"),
        }
    }

    fn whole(self) -> &'static str {
        match self {
            Shape::Chat => "chat.completion",
            Shape::Text => "text_completion",
        }
    }

    fn chunk(self) -> &'static str {
        match self {
            Shape::Chat => "chat.completion.chunk",
            Shape::Text => "text_completion",
        }
    }

    /// One choice holding `text` (the whole text, or a streamed piece).
    fn choice(self, text: Option<&str>, streamed: bool, finish: Option<FinishReason>) -> Value {
        let finish = finish.map(FinishReason::as_str);
        match (self, streamed) {
            (Shape::Chat, false) => json!({"index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": text.unwrap_or_default()}}),
            (Shape::Chat, true) => {
                let delta = match text {
                    Some(text) => json!({"content": text}),
                    None => json!({}),
                };
                json!({"index": 0, "delta": delta, "finish_reason": finish})
            }
            (Shape::Text, _) => {
                json!({"index": 0, "text": text.unwrap_or_default(), "finish_reason": finish})
            }
        }
    }
}

#[utoipa::path(post, path = "/v1/chat/completions", params(ProjectQuery), tag = "openai",
    request_body = ChatRequest,
    responses((status = 200, description = "a chat.completion, or with stream: true Server-Sent Events of chat.completion.chunk"),
        (status = 400, description = "a bad request, or a prompt past the model's context"),
        (status = 404, description = "no such model"),
        (status = 503, description = "the model's runner could not start")))]
pub async fn chat(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    let completion = completion_request(&request)?;
    respond(
        &state,
        project,
        request.model,
        completion,
        request.stream,
        Shape::Chat,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TextRequest {
    pub model: String,
    #[schema(value_type = Object)]
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    #[schema(value_type = Object)]
    pub stop: Option<Value>,
    /// As a chat's.
    #[schema(value_type = Object)]
    pub keep_alive: Option<Value>,
}

#[utoipa::path(post, path = "/v1/completions", params(ProjectQuery), tag = "openai",
    request_body = TextRequest,
    responses((status = 200, description = "a text_completion, or with stream: true Server-Sent Events of them"),
        (status = 400, description = "a bad request, or a prompt past the model's context"),
        (status = 404, description = "no such model"),
        (status = 503, description = "the model's runner could not start")))]
pub async fn text(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
    JsonBody(request): JsonBody<TextRequest>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    let prompt = match &request.prompt {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        _ => return Err(ApiError::bad_request("prompt: give one string")),
    };
    // The same checks as a chat's, on the same fields.
    let as_chat = ChatRequest {
        model: request.model.clone(),
        messages: vec![json!({"role": "user", "content": ""})],
        stream: request.stream,
        max_tokens: request.max_tokens,
        max_completion_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed,
        stop: request.stop.clone(),
        response_format: None,
        keep_alive: request.keep_alive.clone(),
        tools: None,
        tool_choice: None,
    };
    let mut completion = completion_request(&as_chat)?;
    completion.prompt = CompletionPrompt::Text(prompt);
    respond(
        &state,
        project,
        request.model,
        completion,
        request.stream,
        Shape::Text,
    )
    .await
}

/// Runs `completion` and answers in `shape`, whole or streamed.
async fn respond(
    state: &Arc<ApiState>,
    project: String,
    model: String,
    completion: CompletionRequest,
    stream: bool,
    shape: Shape,
) -> Result<Response, ApiError> {
    let inference = state.inference.clone();
    let asked = model.clone();
    let mut measured = state.metrics.completion(&project, &model);
    let rejected_project = project.clone();
    let mut events = match blocking(move || inference.complete(&project, &asked, completion)).await
    {
        Ok(events) => events,
        Err(error) => {
            if error.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
                state.metrics.rejected(&rejected_project, &model);
            }
            return Err(error);
        }
    };
    // The first event says whether the completion runs at all: a refusal is an error status,
    // not a stream that fails.
    let first = events.recv().await;
    if let Some(CompletionEvent::Failed(error)) = first {
        return Err(error.into());
    }
    observe(&mut measured, first.as_ref());
    let id = shape.id();
    let created = now_seconds();
    if !stream {
        let mut text = String::new();
        // (id, name, arguments) of each call.
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut next = first;
        loop {
            match next {
                Some(CompletionEvent::Text(piece)) => text.push_str(&piece),
                Some(CompletionEvent::ToolCall { id, name, .. }) => {
                    calls.push((id, name, String::new()))
                }
                Some(CompletionEvent::ToolArguments { index, text }) => {
                    if let Some(call) = calls.get_mut(index as usize) {
                        call.2.push_str(&text);
                    }
                }
                Some(CompletionEvent::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }) => {
                    let mut choice = shape.choice(Some(&text), false, Some(finish_reason));
                    if !calls.is_empty() {
                        if text.is_empty() {
                            choice["message"]["content"] = Value::Null;
                        }
                        choice["message"]["tool_calls"] = calls
                            .iter()
                            .map(|(id, name, arguments)| {
                                json!({"id": id, "type": "function",
                                    "function": {"name": name, "arguments": arguments}})
                            })
                            .collect();
                    }
                    return Ok(Json(json!({
                        "id": id,
                        "object": shape.whole(),
                        "created": created,
                        "model": model,
                        "choices": [choice],
                        "usage": usage(prompt_tokens, completion_tokens, cached_tokens),
                    }))
                    .into_response());
                }
                Some(CompletionEvent::Failed(error)) => return Err(error.into()),
                None => return Err(ended_early().into()),
            }
            next = events.recv().await;
            observe(&mut measured, next.as_ref());
        }
    }
    let chunk = move |choices: Value| {
        json!({
            "id": id,
            "object": shape.chunk(),
            "created": created,
            "model": model,
            "choices": choices,
        })
    };
    let opening = match shape {
        Shape::Chat => Some(chunk(json!([{"index": 0, "finish_reason": null,
            "delta": {"role": "assistant", "content": ""}}]))),
        Shape::Text => None,
    };
    let measured = Arc::new(std::sync::Mutex::new(measured));
    let rest = stream::unfold(
        (events, first, false),
        move |(mut events, pending, done)| {
            let chunk = chunk.clone();
            let measured = measured.clone();
            async move {
                if done {
                    return None;
                }
                let event = match pending {
                    Some(event) => Some(event),
                    None => {
                        let event = events.recv().await;
                        if let Ok(mut measured) = measured.lock() {
                            observe(&mut measured, event.as_ref());
                        }
                        event
                    }
                };
                match event {
                    Some(CompletionEvent::Text(piece)) => {
                        let line = chunk(json!([shape.choice(Some(&piece), true, None)]));
                        Some((vec![line], (events, None, false)))
                    }
                    Some(CompletionEvent::ToolCall { index, id, name }) => {
                        let line = chunk(json!([{"index": 0, "finish_reason": null,
                            "delta": {"tool_calls": [{"index": index, "id": id, "type": "function",
                                "function": {"name": name, "arguments": ""}}]}}]));
                        Some((vec![line], (events, None, false)))
                    }
                    Some(CompletionEvent::ToolArguments { index, text }) => {
                        let line = chunk(json!([{"index": 0, "finish_reason": null,
                            "delta": {"tool_calls": [{"index": index,
                                "function": {"arguments": text}}]}}]));
                        Some((vec![line], (events, None, false)))
                    }
                    Some(CompletionEvent::Done {
                        finish_reason,
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                    }) => {
                        let finished =
                            chunk(json!([shape.choice(None, true, Some(finish_reason))]));
                        let mut usage_chunk = chunk(json!([]));
                        usage_chunk["usage"] =
                            usage(prompt_tokens, completion_tokens, cached_tokens);
                        Some((vec![finished, usage_chunk], (events, None, true)))
                    }
                    Some(CompletionEvent::Failed(error)) => {
                        let error = ApiError::from(error).detail();
                        Some((vec![json!({"error": error})], (events, None, true)))
                    }
                    None => {
                        let error = ApiError::from(ended_early()).detail();
                        Some((vec![json!({"error": error})], (events, None, true)))
                    }
                }
            }
        },
    )
    .flat_map(stream::iter);
    let events = stream::iter(opening)
        .chain(rest)
        .map(|value| Ok::<_, Infallible>(SseEvent::default().data(value.to_string())))
        .chain(stream::once(async {
            Ok::<_, Infallible>(SseEvent::default().data("[DONE]"))
        }));
    Ok(Sse::new(events).into_response())
}

/// Counts a completion's event in its metrics.
fn observe(measured: &mut crate::metrics::CompletionMetrics, event: Option<&CompletionEvent>) {
    match event {
        Some(
            CompletionEvent::Text(_)
            | CompletionEvent::ToolCall { .. }
            | CompletionEvent::ToolArguments { .. },
        ) => measured.piece(),
        Some(CompletionEvent::Done {
            prompt_tokens,
            completion_tokens,
            ..
        }) => measured.done(*prompt_tokens, *completion_tokens),
        _ => {}
    }
}

fn ended_early() -> ward_core::Error {
    ward_core::Error::new(
        ward_core::ErrorKind::Unavailable,
        "the completion ended without its end",
    )
}
