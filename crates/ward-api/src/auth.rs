//! Authentication, authorisation and audit for every endpoint except `GET /healthz`.
//!
//! One middleware runs around every route: it finds the route's [`Operation`], the principal
//! of the bearer key (the bootstrap admin token, an API key or a user's session), and the
//! project the call names (`?project=` or the `X-Ward-Project` header), and asks the
//! engine's [`Door`](ward_core::door::Door) for admission. The handlers get the
//! [`Admission`](ward_core::door::Admission), and the project pinned into the query; after
//! the handler ran, the gate records the outcome of an audited call that its change did not
//! already record.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use ward_core::access::Principal;
use ward_core::door::Caller;
use ward_core::ops::{Access, Audit, Operation, Reach};

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

    /// Compares in constant time so response timing does not reveal the key (only whether
    /// the lengths differ, which every key of one kind shares).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ApiKey(<hidden>)")
    }
}

pub async fn authorize(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_string());
    // HEAD is served by the GET route, and needs what GET needs.
    let method = match *request.method() {
        Method::HEAD => Method::GET,
        ref method => method.clone(),
    };
    let operation = route
        .as_deref()
        .and_then(|route| Operation::for_http(method.as_str(), route));
    if operation.is_some_and(|operation| operation.policy().access == Access::Open) {
        return next.run(request).await;
    }
    let principal = match authenticate(&state, &request, operation) {
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
    let Some(route) = route else {
        // No such route: the fallback answers, and only to a valid key.
        return next.run(request).await;
    };
    let Some(operation) = operation else {
        return ApiError::forbidden(format!("{method} {route} is not open to API keys"))
            .into_response();
    };
    let named = match named_project(&request) {
        Ok(named) => named,
        Err(error) => return error.into_response(),
    };
    let target = request.uri().path().to_string();
    let gate = &state.door;
    let admission = match gate.admit(
        &Caller::new(principal),
        operation,
        named.as_deref(),
        &target,
    ) {
        Ok(admission) => admission,
        Err(refusal) => return ApiError::from(ward_core::Error::from(refusal)).into_response(),
    };
    if operation.policy().reach == Reach::Project {
        if let Err(error) = set_query_project(&mut request, admission.project_or_default()) {
            gate.finish(&admission, 400, &error.detail().message);
            return error.into_response();
        }
    }
    request
        .extensions_mut()
        .insert(admission.principal().clone());
    request.extensions_mut().insert(admission.clone());
    let response = next.run(request).await;
    if operation.policy().audit != Audit::Each {
        return response;
    }
    let (response, outcome) = outcome_of(response).await;
    gate.finish(&admission, response.status().as_u16(), &outcome);
    response
}

/// The cookie that holds a browser's session token.
pub const SESSION_COOKIE: &str = "ward_session";
/// The cookie that holds the session's anti-forgery token, for the page to send back.
pub const CSRF_COOKIE: &str = "ward_csrf";
/// The header a cookie-authenticated change carries the anti-forgery token in.
const CSRF_HEADER: &str = "x-csrf-token";

/// The principal of the request's bearer key, or of its session cookie; 401 without either.
/// A change made with the cookie must carry the session's anti-forgery token, and a
/// WebSocket opened with it must come from the API's own origin.
fn authenticate(
    state: &ApiState,
    request: &Request,
    operation: Option<Operation>,
) -> Result<Principal, ApiError> {
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let presented = match bearer {
        Some(presented) => presented,
        None => {
            let token = cookie(request, SESSION_COOKIE).ok_or_else(ApiError::unauthorized)?;
            let principal = match state.users.authenticate(token) {
                Ok(Some(principal)) => principal,
                Ok(None) => return Err(ApiError::unauthorized()),
                Err(error) => return Err(ApiError::internal(&error)),
            };
            check_forgery(state, request, operation, token)?;
            return Ok(principal);
        }
    };
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

/// Refuses what another site could make a browser send with its cookie: a change without
/// the session's anti-forgery token, and a WebSocket from another origin.
fn check_forgery(
    state: &ApiState,
    request: &Request,
    operation: Option<Operation>,
    token: &str,
) -> Result<(), ApiError> {
    let headers = request.headers();
    if headers.contains_key(axum::http::header::UPGRADE) {
        let origin = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|value| value.to_str().ok());
        if let (Some(origin), Some(host)) = (origin, host) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host != host {
                return Err(ApiError::forbidden(format!(
                    "a WebSocket opened with a session cookie must come from this API's origin, not {origin}"
                )));
            }
        }
    }
    let changes = match operation {
        Some(operation) => !operation.is_read(),
        None => !matches!(*request.method(), Method::GET | Method::HEAD),
    };
    if !changes {
        return Ok(());
    }
    let expected = state.users.csrf_token(token);
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if ApiKey::new(expected).matches(presented) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "a change made with a session cookie needs the session's X-CSRF-Token header: the csrf_token of the login answer, also in the ward_csrf cookie",
        ))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// The project the request names, by `?project=` or the header; both must agree.
fn named_project(request: &Request) -> Result<Option<String>, ApiError> {
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
    match (from_query, from_header) {
        (Some(query), Some(header)) if query != header => Err(ApiError::bad_request(format!(
            "project: the query names {query} and the X-Ward-Project header {header}; name one"
        ))),
        (Some(project), _) | (None, Some(project)) => Ok(Some(project)),
        (None, None) => Ok(None),
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
