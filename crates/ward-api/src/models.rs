//! Model endpoints: the native `/api/v1/models` (list, show, import, remove) and OpenAI's
//! `GET /v1/models`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use ward_client::wire::{
    LoadedModelDocument, LoadedModelList, ModelDocument, ModelList, OpenAiModel, OpenAiModelList,
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
