//! `GET /api/v1/workloads/{name}/logs`: newline-delimited JSON, optionally followed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use ward_client::wire::LogEntry;

use crate::convert::log_entry;
use crate::error::ApiError;
use crate::workloads::project_of;
use crate::{blocking, ApiState};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    pub project: Option<String>,
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines after this time: RFC 3339, or a duration like `10m` meaning that long ago.
    pub since: Option<String>,
}

/// Parses `since`: an RFC 3339 time or a duration back from now.
pub fn parse_since(text: &str) -> Result<SystemTime, ApiError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    match humantime::parse_duration(text) {
        Ok(duration) => Ok(SystemTime::now()
            .checked_sub(duration)
            .unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(ApiError::bad_request(format!(
            "since: {text:?} is neither a duration like 10m nor a time like 2026-01-02T15:04:05Z"
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/workloads/{name}/logs", params(("name" = String, Path), LogQuery), tag = "workloads",
    responses((status = 200, description = "Newline-delimited JSON log entries", body = LogEntry, content_type = "application/x-ndjson"),
        (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    let since = query.since.as_deref().map(parse_since).transpose()?;
    let response = Response::builder().header(header::CONTENT_TYPE, "application/x-ndjson");
    if !query.follow {
        let mut body = String::new();
        let workloads = state.workloads.clone();
        let tail = query.tail;
        let lines = blocking(move || workloads.logs(&project, &name, tail, since)).await?;
        for (instance, line) in &lines {
            push_line(&mut body, &log_entry(instance, line));
        }
        return response
            .body(Body::from(body))
            .map_err(|error| ApiError::internal(&error));
    }
    let workloads = state.workloads.clone();
    let tail = query.tail;
    let (initial, follow) =
        blocking(move || workloads.follow_logs(&project, &name, tail, since)).await?;
    let mut body = String::new();
    for (instance, line) in &initial {
        push_line(&mut body, &log_entry(instance, line));
    }
    let stream =
        futures_util::stream::unfold((Some(body), follow), |(first, mut follow)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(Bytes::from(first)), (None, follow)));
            }
            let fresh = follow.next().await?;
            let mut chunk = String::new();
            for (instance, line) in &fresh {
                push_line(&mut chunk, &log_entry(instance, line));
            }
            Some((Ok(Bytes::from(chunk)), (None, follow)))
        });
    response
        .body(Body::from_stream(stream))
        .map_err(|error| ApiError::internal(&error))
}

fn push_line(buffer: &mut String, entry: &LogEntry) {
    if let Ok(json) = serde_json::to_string(entry) {
        buffer.push_str(&json);
        buffer.push('\n');
    }
}
