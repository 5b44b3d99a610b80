//! OpenAI's `POST /v1/chat/completions`, so the official clients work against Ward: the
//! whole answer at once, or (`stream: true`) Server-Sent Events of `chat.completion.chunk`s
//! ending with a usage chunk and `[DONE]`.

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

fn completion_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("chatcmpl-{nanos:x}")
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
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
    let inference = state.inference.clone();
    let model = request.model.clone();
    let mut events = blocking(move || inference.complete(&project, &model, completion)).await?;
    // The first event says whether the completion runs at all: a refusal is an error status,
    // not a stream that fails.
    let first = events.recv().await;
    if let Some(CompletionEvent::Failed(error)) = first {
        return Err(error.into());
    }
    let id = completion_id();
    let created = now_seconds();
    let model = request.model.clone();
    if !request.stream {
        let mut text = String::new();
        let mut next = first;
        loop {
            match next {
                Some(CompletionEvent::Text(piece)) => text.push_str(&piece),
                Some(CompletionEvent::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    return Ok(Json(json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": finish_reason.as_str(),
                        }],
                        "usage": usage(prompt_tokens, completion_tokens),
                    }))
                    .into_response())
                }
                Some(CompletionEvent::Failed(error)) => return Err(error.into()),
                None => {
                    return Err(ApiError::from(ward_core::Error::new(
                        ward_core::ErrorKind::Unavailable,
                        "the completion ended without its end",
                    )))
                }
            }
            next = events.recv().await;
        }
    }
    let chunk = move |delta: Value, finish: Option<FinishReason>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": finish.map(FinishReason::as_str),
            }],
        })
    };
    let opening = chunk(json!({"role": "assistant", "content": ""}), None);
    let rest = stream::unfold(
        (events, first, false),
        move |(mut events, pending, done)| {
            let chunk = chunk.clone();
            async move {
                if done {
                    return None;
                }
                let event = match pending {
                    Some(event) => Some(event),
                    None => events.recv().await,
                };
                let lines: Vec<Value> = match event {
                    Some(CompletionEvent::Text(piece)) => {
                        vec![chunk(json!({"content": piece}), None)]
                    }
                    Some(CompletionEvent::Done {
                        finish_reason,
                        prompt_tokens,
                        completion_tokens,
                    }) => {
                        let mut usage_chunk = chunk(json!({}), None);
                        usage_chunk["choices"] = json!([]);
                        usage_chunk["usage"] = usage(prompt_tokens, completion_tokens);
                        let finished = chunk(json!({}), Some(finish_reason));
                        return Some((vec![finished, usage_chunk], (events, None, true)));
                    }
                    Some(CompletionEvent::Failed(error)) => {
                        let error = ApiError::from(error).detail();
                        return Some((vec![json!({"error": error})], (events, None, true)));
                    }
                    None => {
                        let error = json!({"error": {"code": "unavailable",
                            "message": "the completion ended without its end"}});
                        return Some((vec![error], (events, None, true)));
                    }
                };
                Some((lines, (events, None, false)))
            }
        },
    )
    .flat_map(stream::iter);
    let events = stream::once(async move { opening })
        .chain(rest)
        .map(|value| Ok::<_, Infallible>(SseEvent::default().data(value.to_string())))
        .chain(stream::once(async {
            Ok::<_, Infallible>(SseEvent::default().data("[DONE]"))
        }));
    Ok(Sse::new(events).into_response())
}
