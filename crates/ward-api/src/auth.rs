//! Authentication, authorisation and audit for every endpoint except `GET /healthz`.
//!
//! One middleware runs around every route: it finds the principal of the bearer key (the
//! bootstrap admin token or an API key), decides the project the call addresses (`?project=`
//! or the `X-Ward-Project` header; a key of one project defaults to its own), checks the
//! route's permission from [`route_policy`], writes the project into the query so handlers
//! see only that one, and after the handler ran appends every state-changing call to the
//! audit log with its outcome.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ward_store::NewAuditEntry;
use ward_supervisor::{Capability, Permission, Principal, Role};

use crate::error::ApiError;
use crate::ApiState;

/// The header that names the project, as `?project=` does.
pub const PROJECT_HEADER: &str = "x-ward-project";
/// The longest error body read back for the audit log's outcome.
const MAX_AUDITED_ERROR_BYTES: usize = 64 * 1024;

/// An API key, hidden from `Debug` output.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    /// Compares in constant time so response timing does not reveal the key.
    pub fn matches(&self, candidate: &str) -> bool {
        let expected = self.0.as_bytes();
        let candidate = candidate.as_bytes();
        let mut difference = expected.len() ^ candidate.len();
        for (index, byte) in expected.iter().enumerate() {
            difference |= (byte ^ candidate.get(index).copied().unwrap_or(0)) as usize;
        }
        difference == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ApiKey(<hidden>)")
    }
}

/// Which projects a route works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// One project, named by the request (or the key's own).
    Project,
    /// Every project at once: only keys of every project.
    AllProjects,
    /// No project, or the handler filters by the principal itself.
    Principal,
}

/// What a route needs: the permission, and the projects it touches. `None` for routes this
/// table does not know, which the router answers 404 anyway.
pub fn route_policy(method: &Method, route: &str) -> Option<(Permission, Reach)> {
    use Reach::*;
    let viewer = Permission::Role(Role::Viewer);
    let operator = Permission::Role(Role::Operator);
    let admin = Permission::Role(Role::Admin);
    let read = *method == Method::GET || *method == Method::HEAD;
    Some(match route {
        "/openapi.json" => (Permission::Authenticated, Principal),
        "/metrics" => (viewer, AllProjects),
        "/api/v1/workloads/{name}/exec" => (
            Permission::Capability(Role::Operator, Capability::Exec),
            Project,
        ),
        "/api/v1/workloads"
        | "/api/v1/apply"
        | "/api/v1/workloads/{name}"
        | "/api/v1/workloads/{name}/start"
        | "/api/v1/workloads/{name}/stop"
        | "/api/v1/workloads/{name}/restart"
        | "/api/v1/workloads/{name}/logs"
        | "/api/v1/events"
        | "/api/v1/images"
        | "/api/v1/images/pull"
        | "/api/v1/images/import"
        | "/api/v1/images/{reference}"
        | "/api/v1/registries"
        | "/api/v1/registries/login"
        | "/api/v1/registries/{registry}"
        | "/api/v1/secrets"
        | "/api/v1/secrets/{name}" => (if read { viewer } else { operator }, Project),
        "/api/v1/secrets/{name}/value" => (
            Permission::Capability(Role::Viewer, Capability::SecretsRead),
            Project,
        ),
        // Reads images, writes nothing.
        "/api/v1/images/export" => (viewer, Project),
        "/api/v1/images/prune" => (admin, AllProjects),
        // A project sees its quota; only a key of every project sets one.
        "/api/v1/quota" if read => (viewer, Project),
        "/api/v1/quota" => (admin, AllProjects),
        "/api/v1/keys" | "/api/v1/keys/{id}" => (admin, Principal),
        "/api/v1/users" | "/api/v1/users/{name}" | "/api/v1/users/{name}/grants" => {
            (admin, AllProjects)
        }
        "/api/v1/audit" | "/api/v1/audit/verify" => (
            Permission::Capability(Role::Viewer, Capability::AuditRead),
            Principal,
        ),
        "/api/v1/projects" if read => (viewer, Principal),
        "/api/v1/projects" => (admin, AllProjects),
        _ => return None,
    })
}

/// Whether a call goes into the audit log: every one that changes state, and the reading
/// of a secret's value.
fn is_audited(method: &Method, route: &str) -> bool {
    !(matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || route == "/api/v1/images/export")
        || route == "/api/v1/workloads/{name}/exec"
        || route == "/api/v1/secrets/{name}/value"
}

pub async fn authorize(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Open to all: health, and logging in (which has its own limit and audit entry).
    if request.uri().path() == "/healthz"
        || (request.uri().path() == "/api/v1/sessions" && request.method() == Method::POST)
    {
        return next.run(request).await;
    }
    let principal = match authenticate(&state, &request) {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if principal.actor != Principal::BOOTSTRAP_ACTOR {
        if let Err(wait) = state
            .rate_limiter
            .check(&principal.actor, std::time::Instant::now())
        {
            return ApiError::rate_limited(wait).into_response();
        }
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_string());
    let Some(route) = route else {
        // No such route: the fallback answers, and only to a valid key.
        return next.run(request).await;
    };
    let Some((permission, reach)) = route_policy(&method, &route) else {
        return ApiError::forbidden(format!("{method} {route} is not open to API keys"))
            .into_response();
    };
    let target = request.uri().path().to_string();
    let scoped = scope_request(&mut request, &principal, reach);
    let project = scoped.as_ref().ok().cloned().flatten();
    let response = match scoped {
        Err(error) => error.into_response(),
        Ok(_) if !principal.allows(permission) => {
            ApiError::forbidden(denial(&principal, permission)).into_response()
        }
        Ok(_) => {
            request.extensions_mut().insert(principal.clone());
            next.run(request).await
        }
    };
    // Refused attempts are recorded too: who tried what is the point of an audit log.
    if !is_audited(&method, &route) {
        return response;
    }
    let (response, outcome) = outcome_of(response).await;
    record_audit(
        &state,
        principal.actor.clone(),
        project,
        format!("{method} {route}"),
        target,
        response.status().as_u16(),
        outcome,
    );
    response
}

/// Appends one entry, stamped now, to the audit log; a failure to write it is logged (the
/// call itself has happened by then).
pub(crate) fn record_audit(
    state: &ApiState,
    actor: String,
    project: Option<String>,
    action: String,
    target: String,
    status: u16,
    outcome: String,
) {
    let entry = NewAuditEntry {
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0),
        actor,
        on_behalf_of: None,
        project,
        action,
        target,
        status,
        outcome,
    };
    if let Err(error) = state.access.record(&entry) {
        tracing::error!(%error, action = %entry.action, "cannot write the audit log");
    }
}

/// The principal of the request's bearer key, or 401.
fn authenticate(state: &ApiState, request: &Request) -> Result<Principal, ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    if state.admin_key.matches(presented) {
        return Ok(Principal::bootstrap_admin());
    }
    let found = if presented.starts_with("ws_") {
        state.users.authenticate(presented)
    } else {
        state.access.authenticate(presented)
    };
    match found {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(ApiError::unauthorized()),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

/// Checks that the principal reaches the project the request names (`?project=` or the
/// header), and leaves that project in the query, where handlers read it. Returns it.
fn scope_request(
    request: &mut Request,
    principal: &Principal,
    reach: Reach,
) -> Result<Option<String>, ApiError> {
    let from_query = query_project(request.uri());
    let from_header = request
        .headers()
        .get(PROJECT_HEADER)
        .map(|value| {
            value
                .to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("X-Ward-Project: the header is not text"))
        })
        .transpose()?;
    let named = match (from_query, from_header) {
        (Some(query), Some(header)) if query != header => {
            return Err(ApiError::bad_request(format!(
                "project: the query names {query} and the X-Ward-Project header {header}; name one"
            )))
        }
        (Some(project), _) | (None, Some(project)) => Some(project),
        (None, None) => None,
    };
    match reach {
        Reach::Principal => Ok(None),
        Reach::AllProjects => {
            if principal.is_global() {
                Ok(None)
            } else {
                Err(ApiError::forbidden(
                    "this call spans every project; a key of one project cannot make it",
                ))
            }
        }
        Reach::Project => {
            let project = named.or_else(|| principal.project.clone());
            if let Some(project) = &project {
                ward_spec::validate_name(project)
                    .map_err(|reason| ApiError::bad_request(format!("project: {reason}")))?;
                if !principal.reaches(project) {
                    return Err(ApiError::forbidden(format!(
                        "this key is for project {}, not {project}",
                        principal.project.as_deref().unwrap_or_default()
                    )));
                }
                set_query_project(request, project)?;
            }
            Ok(project)
        }
    }
}

/// The `project` query parameter, percent-decoded.
fn query_project(uri: &Uri) -> Option<String> {
    let query = uri.query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "project")
        .map(|(_, value)| value)
}

/// Rewrites the query so that its `project` is `project`, whatever it said before.
fn set_query_project(request: &mut Request, project: &str) -> Result<(), ApiError> {
    let uri = request.uri();
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    pairs.retain(|(name, _)| name != "project");
    pairs.push(("project".to_string(), project.to_string()));
    let query = serde_urlencoded::to_string(&pairs)
        .map_err(|error| ApiError::bad_request(format!("query: {error}")))?;
    let path_and_query = format!("{}?{query}", uri.path());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| ApiError::bad_request("the request URI is malformed"))?,
    );
    *request.uri_mut() = Uri::from_parts(parts)
        .map_err(|_| ApiError::bad_request("the request URI is malformed"))?;
    Ok(())
}

/// Why `principal` may not do what needs `permission`.
fn denial(principal: &Principal, permission: Permission) -> String {
    match permission {
        Permission::Authenticated => "this key cannot make this call".to_string(),
        Permission::Role(role) => format!(
            "this key's role is {}; this call needs {}",
            principal.role.as_str(),
            role.as_str()
        ),
        Permission::Capability(role, capability) if principal.role >= role => format!(
            "this call needs the {} capability, which this key was not granted",
            capability.as_str()
        ),
        Permission::Capability(role, capability) => format!(
            "this key's role is {}; this call needs {} with the {} capability",
            principal.role.as_str(),
            role.as_str(),
            capability.as_str()
        ),
    }
}

/// The audit outcome of a response: `ok`, or the error message its JSON body carries. An
/// error body is read and put back; a success body (perhaps a stream) is left alone.
async fn outcome_of(response: Response) -> (Response, String) {
    if response.status().is_success() || response.status().is_informational() {
        return (response, "ok".to_string());
    }
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let bytes = match axum::body::to_bytes(body, MAX_AUDITED_ERROR_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let response = Response::from_parts(parts, Body::empty());
            return (response, format!("HTTP {}", status.as_u16()));
        }
    };
    let message = serde_json::from_slice::<ward_client::wire::ErrorBody>(&bytes)
        .map(|body| body.error.message)
        .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
    (Response::from_parts(parts, Body::from(bytes)), message)
}
