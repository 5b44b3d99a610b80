//! Users, their grants, and sessions: `/api/v1/users`, `/api/v1/sessions`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use ward_client::wire::{
    GrantDocument, SessionDocument, SessionRequest, UserDocument, UserList, UserRequest,
};
use ward_core::access::{Capability, Role};
use ward_core::door::Admission;
use ward_core::ops::Operation;
use ward_core::view::{Grant, UserView, DEFAULT_SESSION};

use crate::auth::{CSRF_COOKIE, SESSION_COOKIE};
use crate::convert::{capability_names, rfc3339};
use crate::error::{ApiError, JsonBody};
use crate::ApiState;

fn document(view: &UserView) -> UserDocument {
    UserDocument {
        name: view.name.clone(),
        created_at: rfc3339(view.created_at),
        grants: view
            .grants
            .iter()
            .map(|grant| GrantDocument {
                project: grant.project.clone(),
                role: grant.role.as_str().to_string(),
                capabilities: capability_names(&grant.capabilities),
            })
            .collect(),
    }
}

/// Logs a user in; the answer carries the session token. Open to anyone, limited per user
/// name, and recorded in the audit log whatever the outcome.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "access", security(()), request_body = SessionRequest,
    responses((status = 200, body = SessionDocument), (status = 403, description = "wrong username or password"),
        (status = 429, description = "too many attempts for this user")))]
pub async fn login(
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<SessionRequest>,
) -> Result<Response, ApiError> {
    let attempt_key = format!("login:{}", request.username);
    if let Err(wait) = state
        .login_limiter
        .check(&attempt_key, std::time::Instant::now())
    {
        return Err(ApiError::rate_limited(wait));
    }
    let lifetime = match request.expires_in.as_deref() {
        Some(text) => ward_spec::units::parse_duration(text)
            .map_err(|reason| ApiError::bad_request(format!("expires_in: {reason}")))?,
        None => DEFAULT_SESSION,
    };
    let users = state.users.clone();
    let (username, password, project) = (
        request.username.clone(),
        request.password,
        request.project.clone(),
    );
    let result = tokio::task::spawn_blocking(move || {
        users.login(&username, &password, project.as_deref(), lifetime)
    })
    .await
    .map_err(|error| ApiError::internal(&error))?;
    state.door.record_open(
        Operation::SessionCreate,
        &format!("user:{}", request.username),
        request.project.as_deref(),
        if result.is_ok() { 200 } else { 403 },
        &match &result {
            Ok(_) => "ok".to_string(),
            Err(error) => error.to_string(),
        },
    );
    let session = result?;
    let csrf_token = state.users.csrf_token(&session.token);
    let max_age = session
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    let cookies = [
        (
            SET_COOKIE,
            session_cookie(SESSION_COOKIE, &session.token, max_age, true, &state),
        ),
        (
            SET_COOKIE,
            session_cookie(CSRF_COOKIE, &csrf_token, max_age, false, &state),
        ),
    ];
    let document = SessionDocument {
        token: session.token,
        expires_at: rfc3339(session.expires_at),
        username: request.username,
        project: session.principal.project.clone(),
        role: session.principal.role.as_str().to_string(),
        capabilities: capability_names(&session.principal.capabilities),
        csrf_token,
    };
    Ok((AppendHeaders(cookies), Json(document)).into_response())
}

/// Ends a browser's session: its cookies are cleared.
#[utoipa::path(delete, path = "/api/v1/sessions", tag = "access",
    responses((status = 200, description = "The session cookies are cleared")))]
pub async fn logout(State(state): State<Arc<ApiState>>) -> Response {
    let cookies = [
        (
            SET_COOKIE,
            session_cookie(SESSION_COOKIE, "", 0, true, &state),
        ),
        (
            SET_COOKIE,
            session_cookie(CSRF_COOKIE, "", 0, false, &state),
        ),
    ];
    (
        AppendHeaders(cookies),
        Json(serde_json::json!({ "logged_out": true })),
    )
        .into_response()
}

/// A `Set-Cookie` value: the whole API's, same-site only, and over TLS only when the API
/// speaks TLS. The session itself is out of reach of scripts; the anti-forgery token is not,
/// as the page sends it back in a header.
fn session_cookie(
    name: &str,
    value: &str,
    max_age: u64,
    http_only: bool,
    state: &ApiState,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if state.secure_cookies {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Creates a user, or sets a user's new password (ending its sessions).
#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = UserRequest,
    responses((status = 200, body = UserDocument), (status = 400, description = "bad name or a short password")))]
pub async fn set_user(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    JsonBody(request): JsonBody<UserRequest>,
) -> Result<Json<UserDocument>, ApiError> {
    let users = state.users.clone();
    let view = tokio::task::spawn_blocking(move || {
        users.set_password(&request.name, &request.password, Some(&admission))
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    Ok(Json(document(&view)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "access", responses((status = 200, body = UserList)))]
pub async fn list_users(State(state): State<Arc<ApiState>>) -> Result<Json<UserList>, ApiError> {
    let users = state.users.list()?;
    Ok(Json(UserList {
        users: users.iter().map(document).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "access", params(("name" = String, Path, description = "the user")),
    responses((status = 200, description = "Removed, with its grants and sessions"), (status = 404, description = "no such user")))]
pub async fn remove_user(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.users.remove(&name, Some(&admission))?;
    Ok(Json(serde_json::json!({ "name": name })))
}

/// Grants a role in a project (null: every project), replacing what the user held there.
#[utoipa::path(post, path = "/api/v1/users/{name}/grants", tag = "access", params(("name" = String, Path, description = "the user")),
    request_body = GrantDocument, responses((status = 200, body = UserDocument), (status = 404, description = "no such user")))]
pub async fn grant(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<GrantDocument>,
) -> Result<Json<UserDocument>, ApiError> {
    let grant = Grant {
        project: request.project,
        role: Role::parse(&request.role)?,
        capabilities: Capability::parse_each(request.capabilities.iter().map(String::as_str))?,
    };
    Ok(Json(document(&state.users.grant(
        &name,
        &grant,
        Some(&admission),
    )?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RevokeQuery {
    /// The project whose grant goes; absent: the grant of every project.
    pub grant_project: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/users/{name}/grants", tag = "access",
    params(("name" = String, Path, description = "the user"), RevokeQuery),
    responses((status = 200, body = UserDocument), (status = 404, description = "no such user or grant")))]
pub async fn revoke(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> Result<Json<UserDocument>, ApiError> {
    Ok(Json(document(&state.users.revoke(
        &name,
        query.grant_project.as_deref(),
        Some(&admission),
    )?)))
}
