//! Secrets: `/api/v1/secrets`. Values go in and, only to a caller granted `secrets:read`,
//! come out of `/value`; every other answer names secrets without them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use base64::Engine;
use ward_client::wire::{SecretDocument, SecretList, SecretValue};
use ward_core::door::Admission;
use ward_core::view::SecretInfo;

use crate::convert::rfc3339;
use crate::error::{ApiError, JsonBody};
use crate::workloads::{project_of, ProjectQuery};
use crate::ApiState;

fn document(info: &SecretInfo) -> SecretDocument {
    SecretDocument {
        name: info.name.clone(),
        created_at: rfc3339(info.created_at),
        updated_at: rfc3339(info.updated_at),
    }
}

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", params(ProjectQuery),
    responses((status = 200, body = SecretList)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<SecretList>, ApiError> {
    let project = project_of(&query.project)?;
    let secrets = state.secrets.list(&project)?;
    Ok(Json(SecretList {
        secrets: secrets.iter().map(document).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "the secret"), ProjectQuery),
    responses((status = 200, body = SecretDocument), (status = 404, description = "no such secret")))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<SecretDocument>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(document(&state.secrets.info(&project, &name)?)))
}

/// Creates or replaces a secret. The body carries `value` (text) or `value_base64`.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "the secret"), ProjectQuery), request_body = SecretValue,
    responses((status = 200, body = SecretDocument), (status = 400, description = "bad name or value")))]
pub async fn set(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
    JsonBody(body): JsonBody<SecretValue>,
) -> Result<Json<SecretDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let value = match (body.value, body.value_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|error| ApiError::bad_request(format!("value_base64: {error}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "value: give the value as value (text) or value_base64, one of the two",
            ))
        }
    };
    let info = state
        .secrets
        .set(&project, &name, &value, Some(&admission))?;
    tracing::info!(secret = %name, project = %project, "secret stored");
    Ok(Json(document(&info)))
}

#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "the secret"), ProjectQuery),
    responses((status = 200, body = SecretDocument), (status = 404, description = "no such secret")))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<SecretDocument>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(document(&state.secrets.remove(
        &project,
        &name,
        Some(&admission),
    )?)))
}

/// The value, for a key granted `secrets:read`; the reading goes into the audit log.
#[utoipa::path(get, path = "/api/v1/secrets/{name}/value", tag = "secrets",
    params(("name" = String, Path, description = "the secret"), ProjectQuery),
    responses((status = 200, body = SecretValue), (status = 403, description = "the key lacks secrets:read"),
        (status = 404, description = "no such secret")))]
pub async fn reveal(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<SecretValue>, ApiError> {
    let project = project_of(&query.project)?;
    let value = state.secrets.reveal(&project, &name)?;
    Ok(Json(match String::from_utf8(value) {
        Ok(text) => SecretValue {
            value: Some(text),
            value_base64: None,
        },
        Err(error) => SecretValue {
            value: None,
            value_base64: Some(
                base64::engine::general_purpose::STANDARD.encode(error.into_bytes()),
            ),
        },
    }))
}
