//! `GET /api/v1/quota` (a project's limits and use) and `PUT /api/v1/quota` (keys of every
//! project only: a project does not set its own limits).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde_json::Value;
use ward_client::wire::{QuotaDocument, QuotaLimits, QuotaUse};
use ward_core::door::Admission;
use ward_core::view::{Quota, QuotaUsage};

use crate::error::{ApiError, JsonBody};
use crate::workloads::{project_of, ProjectQuery};
use crate::{blocking, ApiState};

/// The most cores a quota may name.
const MAX_CORES: f64 = 100_000.0;
/// The least memory a quota may give a project (its cgroup needs some to start anything).
const MIN_MEMORY_BYTES: u64 = 4 << 20;

/// Bytes from a JSON number or a size string like `8GiB`.
fn bytes_of(field: &str, value: &Option<Value>) -> Result<Option<u64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{field}: give a whole number of bytes or a size like 8GiB"
            ))
        }),
        Some(Value::String(text)) => ward_spec::units::parse_size(text)
            .map(Some)
            .map_err(|reason| ApiError::bad_request(format!("{field}: {reason}"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "{field}: give a whole number of bytes or a size like 8GiB"
        ))),
    }
}

fn document(project: String, quota: Option<Quota>, usage: QuotaUsage) -> QuotaDocument {
    QuotaDocument {
        project,
        limits: quota.map(|quota| QuotaLimits {
            cpu: quota.cpu,
            memory: quota.memory.map(Value::from),
            workloads: quota.workloads,
            replicas: quota.replicas,
            gpus: quota.gpus,
            volume_bytes: quota.volume_bytes.map(Value::from),
        }),
        usage: QuotaUse {
            cpu: usage.cpu,
            memory: usage.memory,
            workloads: usage.workloads,
            replicas: usage.replicas,
            gpus: usage.gpus,
            measured_memory: usage.measured_memory,
            volume_bytes: usage.volume_bytes,
        },
    }
}

#[utoipa::path(get, path = "/api/v1/quota", tag = "access", params(ProjectQuery),
    responses((status = 200, body = QuotaDocument)))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<QuotaDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let workloads = state.workloads.clone();
    let (quota, usage) = blocking(move || workloads.quota(&project)).await?;
    Ok(Json(document(project_of(&query.project)?, quota, usage)))
}

/// Sets the project's quota (absent fields: no limit), for a key of every project.
#[utoipa::path(put, path = "/api/v1/quota", tag = "access", params(ProjectQuery), request_body = QuotaLimits,
    responses((status = 200, body = QuotaDocument), (status = 400, description = "a bad limit")))]
pub async fn set(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<ProjectQuery>,
    JsonBody(limits): JsonBody<QuotaLimits>,
) -> Result<Json<QuotaDocument>, ApiError> {
    let project = project_of(&query.project)?;
    if let Some(cpu) = limits.cpu {
        if !cpu.is_finite() || !(0.01..=MAX_CORES).contains(&cpu) {
            return Err(ApiError::bad_request(format!(
                "cpu: give a number of cores from 0.01 to {MAX_CORES}"
            )));
        }
    }
    let memory = bytes_of("memory", &limits.memory)?;
    if memory.is_some_and(|bytes| bytes < MIN_MEMORY_BYTES) {
        return Err(ApiError::bad_request(
            "memory: a project needs at least 4MiB; leave memory out for no limit",
        ));
    }
    let quota = Quota {
        cpu: limits.cpu,
        memory,
        workloads: limits.workloads,
        replicas: limits.replicas,
        gpus: limits.gpus,
        volume_bytes: bytes_of("volume_bytes", &limits.volume_bytes)?,
    };
    let workloads = state.workloads.clone();
    let (quota, usage) = blocking(move || {
        workloads.set_quota(&project, &quota, Some(&admission))?;
        workloads.quota(&project)
    })
    .await?;
    Ok(Json(document(project_of(&query.project)?, quota, usage)))
}
