//! Workload endpoints: list, create, get, apply, delete, start, stop, restart.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use ward_client::wire::{
    ApplyRequest, ApplyResponse, ApplyResult, FieldChange, WorkloadDocument, WorkloadList,
};
use ward_core::door::Admission;
use ward_core::session::Signal;
use ward_core::view::{DesiredState, Phase, WorkloadView};

use crate::convert::workload_document;
use crate::error::ApiError;
use crate::{blocking, ApiState};

/// How long `POST /workloads?wait=true` waits for the first start to settle.
const CREATE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProjectQuery {
    /// The project (default `default`).
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    pub project: Option<String>,
    /// Include stopped and exited workloads.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CreateQuery {
    pub project: Option<String>,
    /// Answer once the workload runs or has failed to start.
    #[serde(default)]
    pub wait: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    pub project: Option<String>,
    /// Remove even if it is running.
    #[serde(default)]
    pub force: bool,
}

pub fn project_of(project: &Option<String>) -> Result<String, ApiError> {
    let project = project.clone().unwrap_or_else(|| "default".to_string());
    ward_spec::validate_name(&project)
        .map_err(|reason| ApiError::bad_request(format!("project: {reason}")))?;
    Ok(project)
}

pub fn parse_json(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!(
            "request body is not valid JSON: {error}; send a workload spec as JSON"
        ))
    })
}

/// Without `all`, like `docker ps`: what is meant to run and has not finished, plus failures.
fn listed_by_default(view: &WorkloadView) -> bool {
    let phase = view.phase();
    (view.desired == DesiredState::Running && phase != Phase::Exited) || phase == Phase::Failed
}

#[utoipa::path(get, path = "/api/v1/workloads", params(ListQuery), tag = "workloads",
    responses((status = 200, body = WorkloadList)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<WorkloadList>, ApiError> {
    let project = project_of(&query.project)?;
    let workloads = state
        .workloads
        .list(Some(&project))
        .iter()
        .filter(|view| query.all || listed_by_default(view))
        .map(workload_document)
        .collect();
    Ok(Json(WorkloadList { workloads }))
}

#[utoipa::path(post, path = "/api/v1/workloads", params(CreateQuery), tag = "workloads",
    request_body(content = Object, description = "A workload spec (CONTRACT §2)"),
    responses((status = 201, body = WorkloadDocument), (status = 400, body = ward_client::wire::ErrorBody), (status = 409, body = ward_client::wire::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<CreateQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<WorkloadDocument>), ApiError> {
    let project = project_of(&query.project)?;
    let spec = ward_spec::parse_value(parse_json(&body)?)?;
    let name = spec.name.clone();
    let workloads = state.workloads.clone();
    let mut view = blocking(move || workloads.create(&admission, spec)).await?;
    if query.wait {
        view = state
            .workloads
            .wait_until_settled(&project, &name, CREATE_WAIT)
            .await?;
    }
    Ok((StatusCode::CREATED, Json(workload_document(&view))))
}

#[utoipa::path(get, path = "/api/v1/workloads/{name}", params(("name" = String, Path), ProjectQuery), tag = "workloads",
    responses((status = 200, body = WorkloadDocument), (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<WorkloadDocument>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(workload_document(
        &state.workloads.get(&project, &name)?,
    )))
}

#[utoipa::path(put, path = "/api/v1/workloads/{name}", params(("name" = String, Path), ProjectQuery), tag = "workloads",
    request_body(content = Object, description = "A workload spec; its name must match the path or be absent"),
    responses((status = 200, body = WorkloadDocument), (status = 400, body = ward_client::wire::ErrorBody)))]
pub async fn put(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
    body: Bytes,
) -> Result<Json<WorkloadDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let mut value = parse_json(&body)?;
    if let Some(object) = value.as_object_mut() {
        match object.get("name").and_then(|given| given.as_str()) {
            Some(given) if given != name => {
                return Err(ApiError::bad_request(format!(
                    "name: the body names workload {given} but the path names {name}: make them the same"
                )));
            }
            Some(_) => {}
            None => {
                object.insert("name".to_string(), serde_json::Value::String(name.clone()));
            }
        }
    }
    let spec = ward_spec::parse_value(value)?;
    let workloads = state.workloads.clone();
    blocking(move || workloads.apply(&admission, vec![spec], false)).await?;
    Ok(Json(workload_document(
        &state.workloads.get(&project, &name)?,
    )))
}

#[utoipa::path(post, path = "/api/v1/apply", params(ProjectQuery), tag = "workloads",
    request_body = ApplyRequest, responses((status = 200, body = ApplyResponse), (status = 400, body = ward_client::wire::ErrorBody)))]
pub async fn apply(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    body: Bytes,
) -> Result<Json<ApplyResponse>, ApiError> {
    let request: ApplyRequest = serde_json::from_value(parse_json(&body)?).map_err(|error| {
        ApiError::bad_request(format!(
            "request body: {error}; send {{\"workloads\": [spec, …], \"dry_run\": false}}"
        ))
    })?;
    if request.workloads.is_empty() {
        return Err(ApiError::bad_request(
            "workloads: the list is empty; send at least one workload spec",
        ));
    }
    let mut specs = Vec::with_capacity(request.workloads.len());
    for (index, value) in request.workloads.into_iter().enumerate() {
        let spec = ward_spec::parse_value(value).map_err(|error| {
            let mut api_error = ApiError::from(error);
            api_error.prefix_message(&format!("workloads[{index}]: "));
            api_error
        })?;
        specs.push(spec);
    }
    let workloads = state.workloads.clone();
    let outcomes = blocking(move || workloads.apply(&admission, specs, request.dry_run)).await?;
    let results = outcomes
        .into_iter()
        .map(|outcome| ApplyResult {
            changes: ward_spec::diff_normalized(
                outcome.old.as_ref().unwrap_or(&serde_json::Value::Null),
                &outcome.new,
            )
            .into_iter()
            .map(|change| FieldChange {
                path: change.path,
                old: change.old,
                new: change.new,
            })
            .collect(),
            name: outcome.name,
            action: outcome.action.as_str().to_string(),
            revision: outcome.revision,
        })
        .collect();
    Ok(Json(ApplyResponse {
        results,
        dry_run: request.dry_run,
    }))
}

#[utoipa::path(delete, path = "/api/v1/workloads/{name}", params(("name" = String, Path), DeleteQuery), tag = "workloads",
    responses((status = 200, description = "Deleted"), (status = 404, body = ward_client::wire::ErrorBody), (status = 409, body = ward_client::wire::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let project = project_of(&query.project)?;
    state
        .workloads
        .delete(&admission, &name, query.force)
        .await?;
    Ok(Json(
        serde_json::json!({ "deleted": name, "project": project }),
    ))
}

#[utoipa::path(post, path = "/api/v1/workloads/{name}/start", params(("name" = String, Path), ProjectQuery), tag = "workloads",
    responses((status = 200, body = WorkloadDocument), (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn start(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
) -> Result<Json<WorkloadDocument>, ApiError> {
    Ok(Json(workload_document(
        &state.workloads.start(&admission, &name).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StopQuery {
    /// Seconds between SIGTERM and SIGKILL for this stop (the daemon's setting otherwise).
    pub timeout: Option<u64>,
}

/// The longest `stop -t` takes: an hour.
const MAXIMUM_STOP_TIMEOUT: u64 = 3600;

#[utoipa::path(post, path = "/api/v1/workloads/{name}/stop", params(("name" = String, Path), ProjectQuery, StopQuery), tag = "workloads",
    responses((status = 200, body = WorkloadDocument), (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn stop(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Result<Json<WorkloadDocument>, ApiError> {
    let grace = match query.timeout {
        Some(seconds) if seconds > MAXIMUM_STOP_TIMEOUT => {
            return Err(ApiError::bad_request(format!(
                "timeout: {seconds} s is more than the {MAXIMUM_STOP_TIMEOUT} s a stop may wait; give less"
            )))
        }
        seconds => seconds.map(Duration::from_secs),
    };
    Ok(Json(workload_document(
        &state.workloads.stop(&admission, &name, grace).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct KillQuery {
    /// KILL (the default), TERM, HUP, INT, USR1, … with or without SIG, or its number.
    pub signal: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/workloads/{name}/kill", params(("name" = String, Path), ProjectQuery, KillQuery), tag = "workloads",
    responses((status = 200, body = WorkloadDocument), (status = 400, body = ward_client::wire::ErrorBody),
        (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn kill(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<KillQuery>,
) -> Result<Json<WorkloadDocument>, ApiError> {
    let signal = match query.signal.as_deref() {
        None => Signal::SIGKILL,
        Some(text) => parse_signal(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "signal: {text:?} is not a signal; give a name like TERM, HUP or KILL, or a number"
            ))
        })?,
    };
    Ok(Json(workload_document(
        &state.workloads.kill(&admission, &name, signal).await?,
    )))
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
fn parse_signal(text: &str) -> Option<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

#[utoipa::path(post, path = "/api/v1/workloads/{name}/restart", params(("name" = String, Path), ProjectQuery), tag = "workloads",
    responses((status = 200, body = WorkloadDocument), (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn restart(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
) -> Result<Json<WorkloadDocument>, ApiError> {
    Ok(Json(workload_document(
        &state.workloads.restart(&admission, &name).await?,
    )))
}
