//! Image endpoints: list, pull, import, inspect, remove, prune.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use ward_client::wire::{ImageDocument, ImageList, PruneResponse, PullRequest};
use ward_supervisor::{ImageError, ImageView};

use crate::error::ApiError;
use crate::workloads::{project_of, ProjectQuery};
use crate::ApiState;

impl From<ImageError> for ApiError {
    fn from(error: ImageError) -> ApiError {
        match &error {
            ImageError::NotFound { .. } => ApiError::not_found(error.to_string()),
            ImageError::InUse { .. } => ApiError::conflict(error.to_string()),
            ImageError::Store(_) | ImageError::Blobs(ward_image::store::StoreError::Io { .. }) => {
                ApiError::internal(&error)
            }
            _ => ApiError::bad_request(error.to_string()),
        }
    }
}

pub(crate) fn image_document(view: &ImageView) -> ImageDocument {
    let record = &view.record;
    let created = UNIX_EPOCH + Duration::from_millis(record.created_at_ms.max(0) as u64);
    ImageDocument {
        reference: record.reference.clone(),
        digest: record.manifest_digest.clone(),
        config_digest: record.config_digest.clone(),
        size: record.size.max(0) as u64,
        platform: record.platform.clone(),
        source: record.source.clone(),
        created_at: humantime::format_rfc3339_millis(created).to_string(),
        layers: view
            .manifest
            .layers
            .iter()
            .map(|layer| layer.digest.to_string())
            .collect(),
        config: serde_json::to_value(&view.config.config).unwrap_or_default(),
    }
}

#[utoipa::path(get, path = "/api/v1/images", params(ProjectQuery),
    responses((status = 200, body = ImageList)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<ImageList>, ApiError> {
    let project = project_of(&query.project)?;
    let mut images = Vec::new();
    for record in state.images.list(&project)? {
        match state.images.get(&project, &record.reference) {
            Ok(view) => images.push(image_document(&view)),
            Err(error) => tracing::warn!(image = %record.reference, %error, "image is unreadable"),
        }
    }
    Ok(Json(ImageList { images }))
}

#[utoipa::path(post, path = "/api/v1/images/pull", params(ProjectQuery), request_body = PullRequest,
    responses((status = 200, body = ImageDocument), (status = 400, description = "bad reference, registry error or unusable image")))]
pub async fn pull(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
    Json(request): Json<PullRequest>,
) -> Result<Json<ImageDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let view = state
        .images
        .pull(&project, &request.reference, request.plain_http, &|_| {})
        .await?;
    Ok(Json(image_document(&view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    pub project: Option<String>,
    /// The name to give images the archive does not name.
    pub name: Option<String>,
}

/// The body is the archive: a `docker save` tar or an OCI layout tar (plain or gzip).
#[utoipa::path(post, path = "/api/v1/images/import", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 200, body = ImageList), (status = 400, description = "not an image archive, or a corrupt one")))]
pub async fn import(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImageList>, ApiError> {
    let project = project_of(&query.project)?;
    let upload = tempfile::Builder::new()
        .prefix("import-")
        .suffix(".tar")
        .tempfile_in(&state.upload_dir)
        .map_err(|error| ApiError::internal(&error))?;
    let mut file = tokio::fs::File::from_std(
        upload
            .as_file()
            .try_clone()
            .map_err(|error| ApiError::internal(&error))?,
    );
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|error| ApiError::bad_request(format!("reading the archive: {error}")))?;
        file.write_all(&chunk)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    file.flush()
        .await
        .map_err(|error| ApiError::internal(&error))?;
    let views = state
        .images
        .import(&project, upload.path().to_path_buf(), query.name)
        .await?;
    Ok(Json(ImageList {
        images: views.iter().map(image_document).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/images/{reference}", params(("reference" = String, Path, description = "name (percent-encoded) or digest"), ProjectQuery),
    responses((status = 200, body = ImageDocument), (status = 404, description = "no such image")))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path(reference): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<ImageDocument>, ApiError> {
    let project = project_of(&query.project)?;
    Ok(Json(image_document(
        &state.images.get(&project, &reference)?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    pub project: Option<String>,
    /// Remove the name even if workloads use it.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/api/v1/images/{reference}", params(("reference" = String, Path, description = "name (percent-encoded) or digest"), RemoveQuery),
    responses((status = 200, body = ImageDocument), (status = 404, description = "no such image"), (status = 409, description = "used by a workload")))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Path(reference): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<ImageDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let view = state.images.get(&project, &reference)?;
    let users: Vec<String> = state
        .supervisor
        .list(Some(&project))
        .into_iter()
        .filter(|workload| workload.spec.image.as_deref() == Some(view.record.reference.as_str()))
        .map(|workload| workload.spec.name.clone())
        .collect();
    state
        .images
        .remove(&project, &reference, &users, query.force)?;
    Ok(Json(image_document(&view)))
}

#[utoipa::path(post, path = "/api/v1/images/prune",
    responses((status = 200, body = PruneResponse)))]
pub async fn prune(State(state): State<Arc<ApiState>>) -> Result<Json<PruneResponse>, ApiError> {
    let images = state.images.clone();
    let report = tokio::task::spawn_blocking(move || images.prune())
        .await
        .map_err(|error| ApiError::internal(&error))??;
    Ok(Json(PruneResponse {
        blobs: report.blobs,
        layers: report.layers,
        bytes: report.bytes,
    }))
}
