//! API keys, the audit log and projects: `/api/v1/keys`, `/api/v1/audit`, `/api/v1/projects`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use ward_client::wire::{
    AuditEntry, AuditList, AuditVerifyResponse, CreatedKey, KeyDocument, KeyList, KeyRequest,
    ProjectDocument, ProjectList,
};
use ward_core::access::{Capability, Principal, Role};
use ward_core::door::Admission;
use ward_core::view::{KeyView, NewKey};

use crate::convert::{capability_names, rfc3339_ms};
use crate::error::{ApiError, JsonBody};
use crate::ApiState;

/// The most audit entries one call returns.
const MAX_AUDIT_PAGE: usize = 1000;

fn key_document(view: &KeyView) -> KeyDocument {
    let record = &view.record;
    KeyDocument {
        id: record.id.clone(),
        name: record.name.clone(),
        project: record.project.clone(),
        role: view.role.as_str().to_string(),
        capabilities: capability_names(&view.capabilities),
        created_by: record.created_by.clone(),
        created_at: rfc3339_ms(record.created_at_ms),
        expires_at: record.expires_at_ms.map(rfc3339_ms),
        revoked_at: record.revoked_at_ms.map(rfc3339_ms),
    }
}

/// Creates a key; the answer is the only place its secret ever appears.
#[utoipa::path(post, path = "/api/v1/keys", tag = "access", request_body = KeyRequest,
    responses((status = 200, body = CreatedKey), (status = 400, description = "bad role, capability or expiry"),
        (status = 403, description = "the key would hold more than its creator")))]
pub async fn create_key(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<KeyRequest>,
) -> Result<Json<CreatedKey>, ApiError> {
    let project = request
        .project
        .map(|project| {
            ward_spec::validate_name(&project)
                .map(|()| project)
                .map_err(|reason| ApiError::bad_request(format!("project: {reason}")))
        })
        .transpose()?;
    let expires_in = request
        .expires_in
        .as_deref()
        .map(|text| {
            ward_spec::units::parse_duration(text)
                .map_err(|reason| ApiError::bad_request(format!("expires_in: {reason}")))
        })
        .transpose()?;
    let new_key = NewKey {
        name: request.name,
        project,
        role: Role::parse(&request.role)?,
        capabilities: Capability::parse_each(request.capabilities.iter().map(String::as_str))?,
        expires_in,
    };
    let (view, key) = state
        .access
        .create_key(&principal, &new_key, Some(&admission))?;
    tracing::info!(key = %view.record.id, role = view.role.as_str(), project = ?view.record.project, "API key created");
    Ok(Json(CreatedKey {
        key,
        document: key_document(&view),
    }))
}

/// The keys of the caller's project (every key, for a key of every project).
#[utoipa::path(get, path = "/api/v1/keys", tag = "access", responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state.access.list_keys(&principal)?;
    Ok(Json(KeyList {
        keys: keys.iter().map(key_document).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "access", params(("id" = String, Path, description = "the key's id")),
    responses((status = 200, body = KeyDocument), (status = 404, description = "no such key within reach")))]
pub async fn revoke_key(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<KeyDocument>, ApiError> {
    let view = state.access.revoke_key(&principal, &id, Some(&admission))?;
    Ok(Json(key_document(&view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// At most this many entries (default and maximum 1000).
    pub limit: Option<usize>,
}

/// The audit log of the caller's project (all of it, for a key of every project).
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = AuditList)))]
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let limit = query
        .limit
        .unwrap_or(MAX_AUDIT_PAGE)
        .clamp(1, MAX_AUDIT_PAGE);
    let entries = state
        .access
        .audit(&principal, query.after, limit)?
        .into_iter()
        .map(|record| AuditEntry {
            seq: record.seq,
            time: rfc3339_ms(record.entry.time_ms),
            actor: record.entry.actor,
            on_behalf_of: record.entry.on_behalf_of,
            project: record.entry.project,
            action: record.entry.action,
            target: record.entry.target,
            status: record.entry.status,
            outcome: record.entry.outcome,
            hash: record.hash,
        })
        .collect();
    Ok(Json(AuditList { entries }))
}

/// Walks the whole hash chain of the audit log.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "access",
    responses((status = 200, body = AuditVerifyResponse)))]
pub async fn verify_audit(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<AuditVerifyResponse>, ApiError> {
    let verification = state.access.verify_audit()?;
    Ok(Json(AuditVerifyResponse {
        ok: verification.first_bad.is_none(),
        entries: verification.entries,
        first_bad_seq: verification.first_bad.as_ref().map(|(seq, _)| *seq),
        reason: verification.first_bad.map(|(_, reason)| reason),
    }))
}

/// The projects the caller reaches.
#[utoipa::path(get, path = "/api/v1/projects", tag = "access", responses((status = 200, body = ProjectList)))]
pub async fn list_projects(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ProjectList>, ApiError> {
    let projects = state
        .access
        .projects(&principal)?
        .into_iter()
        .map(|name| ProjectDocument { name })
        .collect();
    Ok(Json(ProjectList { projects }))
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "access", request_body = ProjectDocument,
    responses((status = 200, body = ProjectDocument), (status = 400, description = "bad name")))]
pub async fn create_project(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    JsonBody(request): JsonBody<ProjectDocument>,
) -> Result<Json<ProjectDocument>, ApiError> {
    state
        .access
        .create_project(&request.name, Some(&admission))?;
    Ok(Json(request))
}
