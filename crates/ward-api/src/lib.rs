//! The HTTP API: Ward's native REST API, `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Handlers parse requests into domain types, call the engine's services and turn its views into
//! the wire types of `ward_client::wire`; no handler touches the store or the runtime. A
//! supervisor call that writes the database or reads the disk runs through [`blocking`], off
//! the async workers.

mod access;
mod alerts;
mod auth;
mod convert;
mod embeddings;
mod error;
mod events;
mod exec;
mod images;
mod limits;
mod logs;
mod metrics;
mod models;
mod ndjson;
mod openai;
mod openapi;
mod quota;
mod secrets;
mod series;
pub mod tls;
mod upload;
mod users;
mod volumes;
mod workloads;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use ward_core::door::Door;
use ward_core::ops::Operation;
use ward_core::services::{Images, Keys, Models, Secrets, Users, Workloads};

pub use auth::{ApiKey, PROJECT_HEADER};
pub use error::ApiError;
pub use limits::{RateLimit, RateLimiter};
pub use metrics::Metrics;

/// What every handler shares.
pub struct ApiState {
    /// Workloads, their events, logs, exec, volumes and quotas.
    pub workloads: Arc<dyn Workloads>,
    /// What every call passes first, and the audit log behind it.
    pub door: Arc<dyn Door>,
    pub images: Arc<dyn Images>,
    pub models: Arc<dyn Models>,
    pub model_transfers: Arc<dyn ward_core::services::ModelTransfers>,
    /// Completions on the project's models.
    pub inference: Arc<dyn ward_core::inference::Inference>,
    /// Where uploaded archives wait while they are imported.
    pub upload_dir: std::path::PathBuf,
    pub admin_key: ApiKey,
    /// Secrets, sealed at rest.
    pub secrets: Arc<dyn Secrets>,
    /// API keys, projects and the audit log.
    pub access: Arc<dyn Keys>,
    pub metrics: Arc<Metrics>,
    /// Calls per API key; the bootstrap admin token is not limited.
    pub rate_limiter: RateLimiter,
    /// Users and their sessions.
    pub users: Arc<dyn Users>,
    /// Login attempts per user name.
    pub login_limiter: RateLimiter,
    /// Whether session cookies carry `Secure`: the API speaks TLS.
    pub secure_cookies: bool,
    /// Alert rules' active alerts and their silences.
    pub alerts: Arc<dyn ward_core::services::Alerts>,
}

/// Builds the router: every route is one [`Operation`], and the gate admits every call but
/// those of open operations.
pub fn router(state: Arc<ApiState>) -> Router {
    routes()
        .router
        .layer(DefaultBodyLimit::max(limits::MAX_JSON_BODY_BYTES))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// The operations the router serves, in the order it binds them.
pub fn routed_operations() -> Vec<Operation> {
    routes().bound
}

fn routes() -> Routes {
    use Operation::*;
    Routes::default()
        .bind(Health, healthz)
        .bind(Metrics, metrics::metrics)
        .bind(OpenApi, openapi::openapi)
        .bind(WorkloadList, workloads::list)
        .bind(WorkloadCreate, workloads::create)
        .bind(WorkloadApply, workloads::apply)
        .bind(WorkloadGet, workloads::get)
        .bind(WorkloadReplace, workloads::put)
        .bind(WorkloadDelete, workloads::delete)
        .bind(WorkloadStart, workloads::start)
        .bind(WorkloadStop, workloads::stop)
        .bind(WorkloadRestart, workloads::restart)
        .bind(WorkloadKill, workloads::kill)
        .bind(WorkloadNote, events::note)
        .bind(WorkloadLogs, logs::logs)
        .bind(WorkloadExec, exec::exec)
        .bind(WorkloadAttach, exec::attach)
        .bind(Events, events::events)
        .bind(MetricsQuery, series::query)
        .bind(AlertList, alerts::list)
        .bind(SilenceList, alerts::silences)
        .bind(SilenceCreate, alerts::create_silence)
        .bind(SilenceExpire, alerts::expire_silence)
        .bind(ImageList, images::list)
        .bind(ImagePull, images::pull)
        .bind_unlimited(ImageImport, images::import)
        .bind(ImagePrune, images::prune)
        .bind(ImageExport, images::export)
        .bind(ImageGet, images::get)
        .bind(ImageRemove, images::remove)
        .bind(ModelList, models::list)
        .bind_unlimited(ModelImport, models::import)
        .bind(ModelLoaded, models::loaded)
        .bind(ModelPull, models::pull)
        .bind(ModelPush, models::push)
        .bind(ModelGet, models::get)
        .bind(ModelLoad, models::load)
        .bind(ModelUnload, models::unload)
        .bind(ModelRemove, models::remove)
        .bind(OpenAiModels, models::openai_list)
        .bind(OpenAiChat, openai::chat)
        .bind(OpenAiText, openai::text)
        .bind(OpenAiEmbeddings, embeddings::embeddings)
        .bind(RegistryList, images::logins)
        .bind(RegistryLogin, images::login)
        .bind(RegistryLogout, images::logout)
        .bind(VolumeList, volumes::list)
        .bind(VolumePrune, volumes::prune)
        .bind(VolumeRemove, volumes::remove)
        .bind(KeyList, access::list_keys)
        .bind(KeyCreate, access::create_key)
        .bind(KeyRevoke, access::revoke_key)
        .bind(SecretList, secrets::list)
        .bind(SecretGet, secrets::get)
        .bind(SecretSet, secrets::set)
        .bind(SecretRemove, secrets::remove)
        .bind(SecretReveal, secrets::reveal)
        .bind(QuotaGet, quota::get)
        .bind(QuotaSet, quota::set)
        .bind(SessionCreate, users::login)
        .bind(SessionDelete, users::logout)
        .bind(UserList, users::list_users)
        .bind(UserSet, users::set_user)
        .bind(UserRemove, users::remove_user)
        .bind(UserGrant, users::grant)
        .bind(UserRevoke, users::revoke)
        .bind(AuditList, access::audit)
        .bind(AuditVerify, access::verify_audit)
        .bind(ProjectList, access::list_projects)
        .bind(ProjectCreate, access::create_project)
}

/// A router under construction, bound only through [`Operation`]s, so that no route exists
/// without a declaration.
#[derive(Default)]
struct Routes {
    router: Router<Arc<ApiState>>,
    bound: Vec<Operation>,
}

impl Routes {
    fn bind<H, T>(self, operation: Operation, handler: H) -> Routes
    where
        H: Handler<T, Arc<ApiState>>,
        T: 'static,
    {
        let serve = on(method_filter(operation), handler);
        self.bind_router(operation, serve)
    }

    /// [`Routes::bind`] for a route whose body is streamed to disk, without the JSON limit.
    fn bind_unlimited<H, T>(self, operation: Operation, handler: H) -> Routes
    where
        H: Handler<T, Arc<ApiState>>,
        T: 'static,
    {
        let serve = on(method_filter(operation), handler).layer(DefaultBodyLimit::disable());
        self.bind_router(operation, serve)
    }

    fn bind_router(mut self, operation: Operation, serve: MethodRouter<Arc<ApiState>>) -> Routes {
        self.router = self.router.route(operation.policy().route, serve);
        self.bound.push(operation);
        self
    }
}

fn method_filter(operation: Operation) -> MethodFilter {
    match operation.policy().method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("no operation is declared with method {other}"),
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.metrics.count_events(&state.workloads);
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
    state.metrics.count_events(&state.workloads);
    axum::serve(tls::TlsListener::new(listener, tls)?, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs a supervisor call that may wait for the database or the disk on a blocking thread,
/// so that no async worker, and no other request, waits with it.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ward_core::Error> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| ApiError::internal(&error))??)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::OpenApi;

    use super::*;

    /// Every route is exactly one declared operation, every declared operation is routed,
    /// and the OpenAPI document describes exactly those.
    #[test]
    fn every_route_is_one_declared_operation_with_an_openapi_entry() {
        let routed = routed_operations();
        let distinct: BTreeSet<Operation> = routed.iter().copied().collect();
        assert_eq!(distinct.len(), routed.len(), "an operation is bound twice");
        for operation in Operation::ALL {
            assert!(
                distinct.contains(operation),
                "{operation:?} is declared but not routed"
            );
        }
        let declared: BTreeSet<(String, String)> = routed
            .iter()
            .map(|operation| {
                let policy = operation.policy();
                (policy.method.to_string(), policy.route.to_string())
            })
            .collect();
        let document = openapi::ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &document.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    documented.insert((method.to_string(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = declared.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&declared).collect();
        assert!(
            undocumented.is_empty(),
            "routes without an OpenAPI entry: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "OpenAPI entries without a route: {unrouted:?}"
        );
    }
}
