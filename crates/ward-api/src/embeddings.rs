//! OpenAI's `POST /v1/embeddings`: one unit-length vector per input, as 32-bit floats in a
//! JSON list or (`encoding_format: base64`, what the official clients ask for) their
//! little-endian bytes in base64.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use ward_core::inference::EmbeddingRequest;

use crate::error::{ApiError, JsonBody};
use crate::openai::keep_alive;
use crate::workloads::{project_of, ProjectQuery};
use crate::{blocking, ApiState};

/// The most inputs one request may hold (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// A string, or a list of strings.
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (the default) or `base64`.
    pub encoding_format: Option<String>,
    /// The length of the vectors, if given: it must be the model's own.
    pub dimensions: Option<u64>,
    /// As a chat's.
    #[schema(value_type = Object)]
    pub keep_alive: Option<Value>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

fn inputs(input: &Value) -> Result<Vec<String>, ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "input: give a string or a list of strings (token arrays are not taken)",
        )
    };
    let inputs = match input {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string).ok_or_else(refuse))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(refuse()),
    };
    if inputs.is_empty() {
        return Err(ApiError::bad_request("input: give at least one string"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input: {} strings is more than the {MAX_INPUTS} one request may hold; split them",
            inputs.len()
        )));
    }
    Ok(inputs)
}

#[utoipa::path(post, path = "/v1/embeddings", params(ProjectQuery), tag = "openai",
    request_body = EmbeddingsRequest,
    responses((status = 200, description = "a list of embedding objects, one per input, in order"),
        (status = 400, description = "a bad request, an input past the model's context, or a model that makes no embeddings"),
        (status = 404, description = "no such model"),
        (status = 503, description = "the model's runner could not start")))]
pub async fn embeddings(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let project = project_of(&query.project)?;
    let encoding = match request.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(_) => {
            return Err(ApiError::bad_request(
                "encoding_format: give float or base64",
            ))
        }
    };
    let embedding = EmbeddingRequest {
        inputs: inputs(&request.input)?,
        keep_alive: keep_alive(request.keep_alive.as_ref())?,
    };
    let inference = state.inference.clone();
    let model = request.model.clone();
    let metrics_project = project.clone();
    let embeddings = blocking(move || inference.embed(&project, &model, embedding)).await?;
    if let (Some(asked), Some(first)) = (request.dimensions, embeddings.vectors.first()) {
        if asked != first.len() as u64 {
            return Err(ApiError::bad_request(format!(
                "dimensions: model {} makes vectors of {} dimensions and cannot shorten them; leave dimensions out",
                request.model,
                first.len()
            )));
        }
    }
    state
        .metrics
        .completion(&metrics_project, &request.model)
        .done(embeddings.prompt_tokens, 0);
    let data: Vec<Value> = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match encoding {
                Encoding::Float => json!(vector),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = vector
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": embeddings.prompt_tokens, "total_tokens": embeddings.prompt_tokens},
    })))
}
