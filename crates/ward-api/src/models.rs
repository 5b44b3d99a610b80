//! Model endpoints: the native `/api/v1/models` (list, show, import, remove) and OpenAI's
//! `GET /v1/models`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use ward_client::wire::{
    BlobProgress, LoadedModelDocument, LoadedModelList, ModelDocument, ModelList, ModelPullRequest,
    ModelPushRequest, ModelPushed, ModelTransferEvent, OpenAiModel, OpenAiModelList,
};
use ward_core::door::Admission;
use ward_core::inference::LoadedModel;
use ward_core::view::ModelView;

use crate::convert::rfc3339;
use crate::error::ApiError;
use crate::workloads::{project_of, ProjectQuery};
use crate::{blocking, ApiState};

fn document(view: &ModelView) -> ModelDocument {
    ModelDocument {
        name: view.name.clone(),
        digest: view.digest.clone(),
        size: view.size,
        format: view.format.clone(),
        loaded: view.loaded,
        architecture: view.metadata.architecture.clone(),
        parameters: view.metadata.parameters,
        quantization: view.metadata.quantization.clone(),
        context_length: view.metadata.context_length,
        chat_template: view.metadata.chat_template.clone(),
        kind: if view.metadata.embedding_length.is_some() {
            "embedding"
        } else {
            "completion"
        }
        .to_string(),
        embedding_length: view.metadata.embedding_length,
        source: view.source.clone(),
        created_at: rfc3339(view.created_at),
    }
}

#[utoipa::path(get, path = "/api/v1/models", params(ProjectQuery), tag = "models",
    responses((status = 200, body = ModelList)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<ModelList>, ApiError> {
    let project = project_of(&query.project)?;
    let models = state.models.clone();
    let views = blocking(move || models.list(&project)).await?;
    Ok(Json(ModelList {
        models: views.iter().map(document).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "the model's name (percent-encoded)"), ProjectQuery),
    responses((status = 200, body = ModelDocument), (status = 404, description = "no such model")))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<ModelDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let models = state.models.clone();
    let view = blocking(move || models.get(&project, &name)).await?;
    Ok(Json(document(&view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    pub project: Option<String>,
    /// The model's name (a name already taken moves to this file).
    pub name: Option<String>,
}

/// The body is the model file (GGUF).
#[utoipa::path(post, path = "/api/v1/models/import", params(ImportQuery), tag = "models",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ModelDocument), (status = 400, description = "not a GGUF file, or a bad name")))]
pub async fn import(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ModelDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let Some(name) = query.name else {
        return Err(ApiError::bad_request(
            "name: give the model a name (?name=NAME); `ward model import` takes the file's stem",
        ));
    };
    let upload = crate::upload::receive(
        &state.upload_dir,
        body,
        crate::limits::MAX_MODEL_BYTES,
        "the model file",
    )
    .await?;
    let models = state.models.clone();
    let view = blocking(move || {
        models.import(
            &project,
            upload.path().to_path_buf(),
            &name,
            Some(&admission),
        )
    })
    .await?;
    Ok(Json(document(&view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    pub project: Option<String>,
    /// Remove it even while it is loaded.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/api/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "the model's name (percent-encoded)"), RemoveQuery),
    responses((status = 200, body = ModelDocument), (status = 404, description = "no such model"),
        (status = 409, description = "it is loaded")))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<ModelDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let models = state.models.clone();
    let force = query.force;
    let view = blocking(move || models.remove(&project, &name, force, Some(&admission))).await?;
    Ok(Json(document(&view)))
}

/// The project's models as OpenAI's `GET /v1/models` lists them.
#[utoipa::path(get, path = "/v1/models", params(ProjectQuery), tag = "openai",
    responses((status = 200, body = OpenAiModelList)))]
pub async fn openai_list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<OpenAiModelList>, ApiError> {
    let project = project_of(&query.project)?;
    let models = state.models.clone();
    let owner = project.clone();
    let views = blocking(move || models.list(&project)).await?;
    Ok(Json(OpenAiModelList {
        object: "list".to_string(),
        data: views
            .iter()
            .map(|view| OpenAiModel {
                id: view.name.clone(),
                object: "model".to_string(),
                created: view
                    .created_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
                owned_by: owner.clone(),
            })
            .collect(),
    }))
}

fn loaded_document(model: &LoadedModel) -> LoadedModelDocument {
    LoadedModelDocument {
        name: model.name.clone(),
        digest: model.digest.clone(),
        pid: model.pid,
        memory_bytes: model.memory_bytes,
        slots: model.slots,
        context: model.context,
        requests: model.requests,
        unloads_in_seconds: model.unloads_in_seconds,
    }
}

#[utoipa::path(get, path = "/api/v1/models/loaded", params(ProjectQuery), tag = "models",
    responses((status = 200, body = LoadedModelList)))]
pub async fn loaded(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<LoadedModelList>, ApiError> {
    let project = project_of(&query.project)?;
    let inference = state.inference.clone();
    let models = blocking(move || inference.loaded(&project)).await?;
    Ok(Json(LoadedModelList {
        models: models.iter().map(loaded_document).collect(),
    }))
}

/// Loads a model now rather than at its first request.
#[utoipa::path(post, path = "/api/v1/models/{name}/load", tag = "models",
    params(("name" = String, Path, description = "the model's name (percent-encoded)"), ProjectQuery),
    responses((status = 200, body = LoadedModelDocument), (status = 404, description = "no such model"),
        (status = 503, description = "its runner could not start")))]
pub async fn load(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<LoadedModelDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let inference = state.inference.clone();
    let model = blocking(move || inference.load(&project, &name)).await?;
    Ok(Json(loaded_document(&model)))
}

/// Unloads a model; requests in flight on it end with an error.
#[utoipa::path(post, path = "/api/v1/models/{name}/unload", tag = "models",
    params(("name" = String, Path, description = "the model's name (percent-encoded)"), ProjectQuery),
    responses((status = 200, body = ModelDocument), (status = 404, description = "no such model")))]
pub async fn unload(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Result<Json<ModelDocument>, ApiError> {
    let project = project_of(&query.project)?;
    let inference = state.inference.clone();
    let models = state.models.clone();
    let view = blocking(move || {
        inference.unload(&project, &name)?;
        models.get(&project, &name)
    })
    .await?;
    Ok(Json(document(&view)))
}

fn transfer_event(progress: ward_core::view::PullProgress) -> ModelTransferEvent {
    match progress {
        ward_core::view::PullProgress::Resolved {
            manifest_digest,
            blobs,
        } => ModelTransferEvent::Resolved {
            digest: manifest_digest,
            blobs: blobs
                .into_iter()
                .map(|(digest, total)| BlobProgress {
                    digest,
                    done: 0,
                    total,
                })
                .collect(),
        },
        ward_core::view::PullProgress::Blob {
            digest,
            done,
            total,
        } => ModelTransferEvent::Progress(BlobProgress {
            digest,
            done,
            total,
        }),
    }
}

/// Pulls a model from a URL, Hugging Face or a registry. With `Accept: application/x-ndjson`
/// the answer is [`ModelTransferEvent`] lines, progress then the model or the error.
#[utoipa::path(post, path = "/api/v1/models/pull", params(ProjectQuery), tag = "models",
    request_body = ModelPullRequest,
    responses((status = 200, body = ModelDocument, description = "The model; with `Accept: application/x-ndjson`, ModelTransferEvent lines"),
        (status = 400, description = "a bad source, or a file that is not a GGUF model"),
        (status = 502, description = "the server or registry failed")))]
pub async fn pull(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Query(query): Query<ProjectQuery>,
    headers: axum::http::HeaderMap,
    crate::error::JsonBody(request): crate::error::JsonBody<ModelPullRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let project = project_of(&query.project)?;
    if !crate::ndjson::wanted(&headers) {
        let view = state
            .model_transfers
            .pull(
                &project,
                &request.source,
                request.name.as_deref(),
                &|_| {},
                Some(&admission),
            )
            .await?;
        return Ok(Json(document(&view)).into_response());
    }
    // The answer begins before the pull ends: the pull records its own audit entry.
    admission.defer_audit();
    let transfers = state.model_transfers.clone();
    let door = state.door.clone();
    crate::ndjson::lines(move |progress| async move {
        let report = move |update| {
            let _ = progress.send(transfer_event(update));
        };
        match transfers
            .pull(
                &project,
                &request.source,
                request.name.as_deref(),
                &report,
                Some(&admission),
            )
            .await
        {
            Ok(view) => ModelTransferEvent::Done {
                model: document(&view),
            },
            Err(error) => {
                let error = ApiError::from(error);
                let detail = error.detail();
                door.finish_deferred(&admission, error.status().as_u16(), &detail.message);
                ModelTransferEvent::Error { error: detail }
            }
        }
    })
}

/// Pushes a model to a registry in Docker Model Runner's layout (`docker model pull` takes
/// it). With `Accept: application/x-ndjson`, [`ModelTransferEvent`] lines.
#[utoipa::path(post, path = "/api/v1/models/{name}/push", params(("name" = String, Path), ProjectQuery),
    tag = "models", request_body = ModelPushRequest,
    responses((status = 200, body = ModelPushed),
        (status = 404, description = "no such model"),
        (status = 502, description = "the registry failed")))]
pub async fn push(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<ProjectQuery>,
    headers: axum::http::HeaderMap,
    crate::error::JsonBody(request): crate::error::JsonBody<ModelPushRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let project = project_of(&query.project)?;
    if !crate::ndjson::wanted(&headers) {
        let digest = state
            .model_transfers
            .push(&project, &name, &request.reference, &|_| {})
            .await?;
        return Ok(Json(ModelPushed {
            reference: request.reference,
            digest,
        })
        .into_response());
    }
    admission.defer_audit();
    let transfers = state.model_transfers.clone();
    let door = state.door.clone();
    crate::ndjson::lines(move |progress| async move {
        let report = move |update| {
            let _ = progress.send(transfer_event(update));
        };
        let (status, outcome, event) = match transfers
            .push(&project, &name, &request.reference, &report)
            .await
        {
            Ok(digest) => (
                200,
                "pushed".to_string(),
                ModelTransferEvent::Pushed(ModelPushed {
                    reference: request.reference.clone(),
                    digest,
                }),
            ),
            Err(error) => {
                let error = ApiError::from(error);
                let detail = error.detail();
                (
                    error.status().as_u16(),
                    detail.message.clone(),
                    ModelTransferEvent::Error { error: detail },
                )
            }
        };
        door.finish_deferred(&admission, status, &outcome);
        event
    })
}
