//! `/api/v1/alerts`: the project's pending and firing alerts, and the silences that mute
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use ward_core::door::Admission;
use ward_core::view::{AlertView, SilenceView};

use crate::convert::rfc3339;
use crate::error::{ApiError, JsonBody};
use crate::workloads::{project_of, ProjectQuery};
use crate::ApiState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertDocument {
    /// `alertname`, `project`, `workload`, `replica`, `severity`, and `series` for anomalies.
    pub labels: BTreeMap<String, String>,
    /// `summary` in words, and `value`.
    pub annotations: BTreeMap<String, String>,
    /// `pending` (the condition holds, not yet for its rule's `for`) or `firing`.
    pub state: String,
    pub active_at: String,
    /// The silences muting it now.
    pub silenced_by: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SilenceDocument {
    pub id: String,
    /// Label name and exact value; `project` is always one.
    pub matchers: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Label name and exact value, like `{"alertname": "HighMemory"}`.
    pub matchers: BTreeMap<String, String>,
    /// How long, like `2h`.
    pub duration: String,
    #[serde(default)]
    pub comment: String,
}

fn alert_document(alert: &AlertView) -> AlertDocument {
    AlertDocument {
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        state: alert.state.as_str().to_string(),
        active_at: rfc3339(alert.active_at),
        silenced_by: alert.silenced_by.clone(),
    }
}

fn silence_document(silence: &SilenceView) -> SilenceDocument {
    SilenceDocument {
        id: silence.id.clone(),
        matchers: silence.matchers.clone(),
        starts_at: rfc3339(silence.starts_at),
        ends_at: rfc3339(silence.ends_at),
        created_by: silence.created_by.clone(),
        comment: silence.comment.clone(),
    }
}

#[utoipa::path(get, path = "/api/v1/alerts", params(ProjectQuery), tag = "alerts",
    responses((status = 200, body = Vec<AlertDocument>)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<Vec<AlertDocument>>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(
        state
            .alerts
            .alerts(&project)
            .iter()
            .map(alert_document)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/alerts/silences", params(ProjectQuery), tag = "alerts",
    responses((status = 200, body = Vec<SilenceDocument>)))]
pub async fn silences(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<Vec<SilenceDocument>>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(
        state
            .alerts
            .silences(&project)
            .iter()
            .map(silence_document)
            .collect(),
    ))
}

/// Mutes the project's alerts whose labels match every matcher, for `duration`.
#[utoipa::path(post, path = "/api/v1/alerts/silences", params(ProjectQuery), tag = "alerts",
    request_body = SilenceRequest,
    responses((status = 201, body = SilenceDocument), (status = 400, description = "no matcher, or a bad duration")))]
pub async fn create_silence(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    JsonBody(request): JsonBody<SilenceRequest>,
) -> Result<(StatusCode, Json<SilenceDocument>), ApiError> {
    let duration = humantime::parse_duration(request.duration.trim()).map_err(|error| {
        ApiError::bad_request(format!(
            "duration: {:?}: {error}; give one like 2h",
            request.duration
        ))
    })?;
    let silence = state
        .alerts
        .silence(&admission, request.matchers, duration, &request.comment)?;
    Ok((StatusCode::CREATED, Json(silence_document(&silence))))
}

#[utoipa::path(delete, path = "/api/v1/alerts/silences/{silence}", params(("silence" = String, Path), ProjectQuery), tag = "alerts",
    responses((status = 200, body = SilenceDocument), (status = 404, description = "no such silence in the project")))]
pub async fn expire_silence(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(id): Path<String>,
) -> Result<Json<SilenceDocument>, ApiError> {
    Ok(Json(silence_document(
        &state.alerts.expire(&admission, &id)?,
    )))
}
