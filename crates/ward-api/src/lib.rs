//! The HTTP API: Ward's native REST API, `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Handlers parse requests into domain types, call the [`Supervisor`] and turn its views into
//! the wire types of `ward_client::wire`; no handler touches the store or the runtime.

mod access;
mod auth;
mod convert;
mod error;
mod events;
mod exec;
mod images;
mod limits;
mod logs;
mod metrics;
mod openapi;
mod quota;
mod secrets;
pub mod tls;
mod users;
mod workloads;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ward_supervisor::Supervisor;

pub use auth::{route_policy, ApiKey, Reach, PROJECT_HEADER};
pub use error::ApiError;
pub use limits::{RateLimit, RateLimiter};
pub use metrics::Metrics;

/// What every handler shares.
pub struct ApiState {
    pub supervisor: Supervisor,
    pub images: ward_supervisor::ImageService,
    /// Where uploaded archives wait while they are imported.
    pub upload_dir: std::path::PathBuf,
    pub admin_key: ApiKey,
    /// Secrets, sealed at rest.
    pub secrets: Arc<ward_supervisor::SecretService>,
    /// API keys, projects and the audit log.
    pub access: Arc<ward_supervisor::AccessService>,
    pub metrics: Arc<Metrics>,
    /// Calls per API key; the bootstrap admin token is not limited.
    pub rate_limiter: RateLimiter,
    /// Users and their sessions.
    pub users: Arc<ward_supervisor::UserService>,
    /// Login attempts per user name.
    pub login_limiter: RateLimiter,
}

/// Builds the router with authentication on every route but `/healthz`.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route(
            "/api/v1/workloads",
            get(workloads::list).post(workloads::create),
        )
        .route("/api/v1/apply", post(workloads::apply))
        .route(
            "/api/v1/workloads/{name}",
            get(workloads::get)
                .put(workloads::put)
                .delete(workloads::delete),
        )
        .route("/api/v1/workloads/{name}/start", post(workloads::start))
        .route("/api/v1/workloads/{name}/stop", post(workloads::stop))
        .route("/api/v1/workloads/{name}/restart", post(workloads::restart))
        .route("/api/v1/workloads/{name}/logs", get(logs::logs))
        .route("/api/v1/workloads/{name}/exec", get(exec::exec))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/images", get(images::list))
        .route("/api/v1/images/pull", post(images::pull))
        .route(
            "/api/v1/images/import",
            post(images::import).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/images/prune", post(images::prune))
        .route("/api/v1/images/export", post(images::export))
        .route("/api/v1/registries", get(images::logins))
        .route("/api/v1/registries/login", post(images::login))
        .route(
            "/api/v1/registries/{registry}",
            axum::routing::delete(images::logout),
        )
        .route(
            "/api/v1/keys",
            get(access::list_keys).post(access::create_key),
        )
        .route(
            "/api/v1/keys/{id}",
            axum::routing::delete(access::revoke_key),
        )
        .route("/api/v1/secrets", get(secrets::list))
        .route(
            "/api/v1/secrets/{name}",
            get(secrets::get).put(secrets::set).delete(secrets::remove),
        )
        .route("/api/v1/secrets/{name}/value", get(secrets::reveal))
        .route("/api/v1/quota", get(quota::get).put(quota::set))
        .route("/api/v1/sessions", post(users::login))
        .route(
            "/api/v1/users",
            get(users::list_users).post(users::set_user),
        )
        .route(
            "/api/v1/users/{name}",
            axum::routing::delete(users::remove_user),
        )
        .route(
            "/api/v1/users/{name}/grants",
            post(users::grant).delete(users::revoke),
        )
        .route("/api/v1/audit", get(access::audit))
        .route("/api/v1/audit/verify", get(access::verify_audit))
        .route(
            "/api/v1/projects",
            get(access::list_projects).post(access::create_project),
        )
        .route(
            "/api/v1/images/{reference}",
            get(images::get).delete(images::remove),
        )
        .layer(DefaultBodyLimit::max(limits::MAX_JSON_BODY_BYTES))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.metrics.count_events(&state.supervisor);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] over TLS.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.metrics.count_events(&state.supervisor);
    axum::serve(tls::TlsListener::new(listener, tls)?, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[utoipa::path(get, path = "/healthz", tag = "daemon", security(()),
    responses((status = 200, description = "The daemon is up")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {}; see /openapi.json",
        request.uri().path()
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

async fn count_requests(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    state.metrics.count_request();
    next.run(request).await.into_response()
}
