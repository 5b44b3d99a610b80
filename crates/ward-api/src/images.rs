//! Image endpoints: list, pull (with NDJSON progress), import, export, inspect, remove,
//! prune, and the registry logins pulls use.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use ward_client::wire::{
    BlobProgress, ExportRequest, ImageDocument, ImageList, LoginRequest, PruneResponse, PullEvent,
    PullRequest, RegistryLogin, RegistryLoginList,
};
use ward_core::door::Admission;
use ward_core::view::{ImageView, PullProgress};

use crate::convert::rfc3339_ms;
use crate::error::{ApiError, JsonBody};
use crate::workloads::{project_of, ProjectQuery};
use crate::ApiState;

pub(crate) fn image_document(view: &ImageView) -> ImageDocument {
    let record = &view.record;
    ImageDocument {
        reference: record.reference.clone(),
        digest: record.manifest_digest.clone(),
        config_digest: record.config_digest.clone(),
        size: record.size.max(0) as u64,
        platform: record.platform.clone(),
        source: record.source.clone(),
        created_at: rfc3339_ms(record.created_at_ms),
        layers: view.layers.clone(),
        config: view.config.clone(),
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

/// Pulls an image. With `Accept: application/x-ndjson` the answer is a stream of
/// [`PullEvent`] lines (progress, then the image or the error), and closing the connection
/// cancels the pull; what it stored stays, and the next pull resumes from there.
#[utoipa::path(post, path = "/api/v1/images/pull", params(ProjectQuery), request_body = PullRequest,
    responses((status = 200, body = ImageDocument, description = "The image; with `Accept: application/x-ndjson`, PullEvent lines"),
        (status = 400, description = "bad reference, registry error or unusable image")))]
pub async fn pull(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<ProjectQuery>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PullRequest>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    if !crate::ndjson::wanted(&headers) {
        let view = state
            .images
            .pull(
                &project,
                &request.reference,
                request.plain_http,
                &|_| {},
                Some(&admission),
            )
            .await?;
        return Ok(Json(image_document(&view)).into_response());
    }
    // The answer begins before the pull ends: the pull records its own audit entry.
    admission.defer_audit();
    let images = state.images.clone();
    let door = state.door.clone();
    crate::ndjson::lines(move |progress_sender| async move {
        let report = move |progress: PullProgress| {
            let _ = progress_sender.send(pull_event(progress));
        };
        match images
            .pull(
                &project,
                &request.reference,
                request.plain_http,
                &report,
                Some(&admission),
            )
            .await
        {
            Ok(view) => PullEvent::Done {
                image: image_document(&view),
            },
            Err(error) => {
                let error = ApiError::from(error);
                let detail = error.detail();
                door.finish_deferred(&admission, error.status().as_u16(), &detail.message);
                PullEvent::Error { error: detail }
            }
        }
    })
}

fn pull_event(progress: PullProgress) -> PullEvent {
    match progress {
        PullProgress::Resolved {
            manifest_digest,
            blobs,
        } => PullEvent::Resolved {
            digest: manifest_digest.to_string(),
            blobs: blobs
                .into_iter()
                .map(|(digest, total)| BlobProgress {
                    digest: digest.to_string(),
                    done: 0,
                    total,
                })
                .collect(),
        },
        PullProgress::Blob {
            digest,
            done,
            total,
        } => PullEvent::Progress(BlobProgress {
            digest: digest.to_string(),
            done,
            total,
        }),
    }
}

/// Writes the images into one tar, both an OCI image layout and a `docker save` archive
/// (`docker load` and `ward image import` read it). Every blob is verified as it is written;
/// a corrupt one ends the stream early.
#[utoipa::path(post, path = "/api/v1/images/export", params(ProjectQuery), request_body = ExportRequest,
    responses((status = 200, content_type = "application/x-tar", description = "The archive"),
        (status = 404, description = "no such image")))]
pub async fn export(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
    JsonBody(request): JsonBody<ExportRequest>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    if request.images.is_empty() {
        return Err(ApiError::bad_request(
            "images: name at least one image to export",
        ));
    }
    let images = state.images.clone();
    let (checked_project, references) = (project.clone(), request.images.clone());
    tokio::task::spawn_blocking(move || images.verify(&checked_project, &references))
        .await
        .map_err(|error| ApiError::internal(&error))??;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let images = state.images.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            sender: sender.clone(),
        };
        let result = images
            .export(&project, &request.images, &mut out)
            .map_err(|error| std::io::Error::other(error.to_string()));
        if let Err(error) = result {
            tracing::warn!(%error, "image export failed");
            let _ = sender.blocking_send(Err(error));
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(ReceiverStream::new(receiver)))
        .map_err(|error| ApiError::internal(&error))
}

/// A blocking writer whose bytes become the chunks of a response body.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(bytes)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks the username and password against the registry (as `docker login` does) and keeps
/// them, readable only by the daemon, for this project's pulls from it.
#[utoipa::path(post, path = "/api/v1/registries/login", params(ProjectQuery), request_body = LoginRequest,
    responses((status = 200, body = RegistryLogin), (status = 400, description = "the registry refused the credentials or could not be reached")))]
pub async fn login(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<ProjectQuery>,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<RegistryLogin>, ApiError> {
    let project = project_of(&query.project)?;
    let registry = state
        .images
        .login(
            &project,
            &request.registry,
            &request.username,
            &request.password,
            request.plain_http,
            Some(&admission),
        )
        .await?;
    Ok(Json(RegistryLogin {
        registry,
        username: request.username,
    }))
}

#[utoipa::path(get, path = "/api/v1/registries", params(ProjectQuery),
    responses((status = 200, body = RegistryLoginList)))]
pub async fn logins(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<RegistryLoginList>, ApiError> {
    let project = project_of(&query.project)?;
    let registries = state
        .images
        .logins(&project)?
        .into_iter()
        .map(|(registry, username)| RegistryLogin { registry, username })
        .collect();
    Ok(Json(RegistryLoginList { registries }))
}

#[utoipa::path(delete, path = "/api/v1/registries/{registry}", params(("registry" = String, Path, description = "the registry, like ghcr.io"), ProjectQuery),
    responses((status = 200, body = RegistryLogin), (status = 404, description = "not logged in to that registry")))]
pub async fn logout(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(registry): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<RegistryLogin>, ApiError> {
    let project = project_of(&query.project)?;
    let (registry, username) = state.images.logout(&project, &registry, Some(&admission))?;
    Ok(Json(RegistryLogin { registry, username }))
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
    Extension(admission): Extension<Admission>,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImageList>, ApiError> {
    let project = project_of(&query.project)?;
    let upload = crate::upload::receive(
        &state.upload_dir,
        body,
        crate::limits::MAX_ARCHIVE_BYTES,
        "the archive",
    )
    .await?;
    let views = state
        .images
        .import(
            &project,
            upload.path().to_path_buf(),
            query.name,
            Some(&admission),
        )
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
    Extension(admission): Extension<Admission>,
    Path(reference): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<ImageDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let view = state.images.get(&project, &reference)?;
    let users: Vec<String> = state
        .workloads
        .list(Some(&project))
        .into_iter()
        .filter(|workload| workload.spec.image.as_deref() == Some(view.record.reference.as_str()))
        .map(|workload| workload.spec.name.clone())
        .collect();
    state
        .images
        .remove(&project, &reference, &users, query.force, Some(&admission))?;
    Ok(Json(image_document(&view)))
}

#[utoipa::path(post, path = "/api/v1/images/prune",
    responses((status = 200, body = PruneResponse)))]
pub async fn prune(State(state): State<Arc<ApiState>>) -> Result<Json<PruneResponse>, ApiError> {
    let images = state.images.clone();
    let in_use = state.workloads.images_in_use();
    let report = tokio::task::spawn_blocking(move || images.prune(&in_use))
        .await
        .map_err(|error| ApiError::internal(&error))??;
    Ok(Json(PruneResponse {
        blobs: report.blobs,
        layers: report.layers,
        bytes: report.bytes,
    }))
}
