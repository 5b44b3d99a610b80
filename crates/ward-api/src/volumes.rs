//! Named volumes: `/api/v1/volumes`, listed with the workloads that mount them, removed one by
//! one or pruned; a volume a workload mounts is never removed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use ward_client::wire::{VolumeDocument, VolumeList, VolumePruneResponse};
use ward_core::door::Admission;
use ward_core::view::VolumeView;

use crate::convert::rfc3339;
use crate::error::ApiError;
use crate::workloads::ProjectQuery;
use crate::{blocking, ApiState};

fn document(view: VolumeView) -> VolumeDocument {
    VolumeDocument {
        name: view.name,
        created_at: view.created_at.map(rfc3339),
        used_by: view.used_by,
    }
}

#[utoipa::path(get, path = "/api/v1/volumes", tag = "volumes", params(ProjectQuery),
    responses((status = 200, body = VolumeList)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
) -> Result<Json<VolumeList>, ApiError> {
    let workloads = state.workloads.clone();
    let volumes = blocking(move || workloads.volumes(&admission)).await?;
    Ok(Json(VolumeList {
        volumes: volumes.into_iter().map(document).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path, description = "the volume"), ProjectQuery),
    responses((status = 200, body = VolumePruneResponse),
        (status = 404, body = ward_client::wire::ErrorBody),
        (status = 409, description = "a workload mounts it", body = ward_client::wire::ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
) -> Result<Json<VolumePruneResponse>, ApiError> {
    let workloads = state.workloads.clone();
    let removed = name.clone();
    blocking(move || workloads.remove_volume(&admission, &name)).await?;
    Ok(Json(VolumePruneResponse {
        removed: vec![removed],
    }))
}

#[utoipa::path(post, path = "/api/v1/volumes/prune", tag = "volumes", params(ProjectQuery),
    responses((status = 200, body = VolumePruneResponse)))]
pub async fn prune(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
) -> Result<Json<VolumePruneResponse>, ApiError> {
    let workloads = state.workloads.clone();
    let removed = blocking(move || workloads.prune_volumes(&admission)).await?;
    Ok(Json(VolumePruneResponse { removed }))
}
