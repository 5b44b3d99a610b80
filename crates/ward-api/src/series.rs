//! `GET /api/v1/metrics/query`: a project's stored metrics, gathered into steps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use ward_core::door::Admission;
use ward_core::services::{metric_name, MetricQuery};

use crate::error::ApiError;
use crate::workloads::project_of;
use crate::{blocking, ApiState};

/// Times past this (the year 9999) are refused.
const LATEST: f64 = 253_402_300_800.0;

/// Steps a query makes when it names none.
const DEFAULT_POINTS: i64 = 240;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SeriesQuery {
    /// The metric, like `ward_instance_memory_bytes` (or `memory`, `cpu`, `pids`).
    pub name: String,
    pub project: Option<String>,
    /// Only this workload's series.
    pub workload: Option<String>,
    /// From, in seconds since the epoch (default an hour before `end`).
    pub start: Option<f64>,
    /// To, in seconds since the epoch (default now).
    pub end: Option<f64>,
    /// Seconds per step (default: the range in 240 steps).
    pub step: Option<f64>,
    /// avg (default), min, max, sum, last or count of each step's samples.
    pub aggregation: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesResult {
    pub name: String,
    pub aggregation: String,
    pub step: f64,
    pub series: Vec<SeriesDocument>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesDocument {
    pub labels: BTreeMap<String, String>,
    /// `[seconds since the epoch, value]`, one per step that has samples.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<[f64; 2]>,
}

fn time_of(field: &str, seconds: Option<f64>, default: i64) -> Result<i64, ApiError> {
    match seconds {
        None => Ok(default),
        Some(seconds) if (0.0..LATEST).contains(&seconds) => Ok((seconds * 1000.0) as i64),
        Some(seconds) => Err(ApiError::bad_request(format!(
            "{field}: {seconds} is not a time from 1970 to 9999; give seconds since the epoch"
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/metrics/query", params(SeriesQuery), tag = "metrics",
    responses((status = 200, body = SeriesResult), (status = 400, description = "a bad name, time, step or aggregation")))]
pub async fn query(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<SeriesResult>, ApiError> {
    let project = project_of(&query.project)?;
    // The host's series say how busy the machine is, which one project's key has no
    // business learning about the others.
    if metric_name(&query.name).starts_with("ward_host_") && !admission.principal().is_global() {
        return Err(ApiError::from(ward_core::Error::forbidden(
            "name: the host's series are for keys of every project (admin or global keys)",
        )));
    }
    if query.name.is_empty() {
        return Err(ApiError::bad_request(
            "name: give a metric, like ward_instance_memory_bytes or memory",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let end = time_of("end", query.end, now)?;
    let start = time_of("start", query.start, end - 3_600_000)?;
    if start > end {
        return Err(ApiError::bad_request("start: must not be after end"));
    }
    let step = match query.step {
        Some(step) if step.is_finite() && step > 0.0 && step < LATEST => {
            (step * 1000.0).round().max(1.0) as i64
        }
        Some(_) => return Err(ApiError::bad_request("step: give seconds above 0, like 10")),
        None => ((end - start) / DEFAULT_POINTS).max(1000),
    };
    let metric = MetricQuery {
        name: metric_name(&query.name).to_owned(),
        workload: query.workload.clone(),
        start,
        end,
        step,
        aggregation: query
            .aggregation
            .clone()
            .unwrap_or_else(|| "avg".to_owned()),
    };
    let workloads = state.workloads.clone();
    let found = {
        let metric = metric.clone();
        blocking(move || workloads.query_metrics(&project, &metric)).await?
    };
    Ok(Json(SeriesResult {
        name: metric.name,
        aggregation: metric.aggregation,
        step: step as f64 / 1000.0,
        series: found
            .into_iter()
            .map(|series| SeriesDocument {
                labels: series.labels.into_iter().collect(),
                points: series
                    .points
                    .into_iter()
                    .map(|(t, v)| [t as f64 / 1000.0, v])
                    .collect(),
            })
            .collect(),
    }))
}
