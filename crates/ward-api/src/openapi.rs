//! `GET /openapi.json`: the OpenAPI 3 description, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ward", description = "Ward's native API: workloads, logs, exec, events, metrics."),
    paths(
        crate::healthz,
        crate::metrics::metrics,
        openapi,
        crate::workloads::list,
        crate::workloads::create,
        crate::workloads::get,
        crate::workloads::put,
        crate::workloads::apply,
        crate::workloads::delete,
        crate::workloads::start,
        crate::workloads::stop,
        crate::workloads::restart,
        crate::workloads::kill,
        crate::logs::logs,
        crate::exec::exec,
        crate::exec::attach,
        crate::events::events,
        crate::events::note,
        crate::series::query,
        crate::alerts::list,
        crate::alerts::silences,
        crate::alerts::create_silence,
        crate::alerts::expire_silence,
        crate::images::list,
        crate::images::pull,
        crate::images::import,
        crate::images::get,
        crate::images::remove,
        crate::images::prune,
        crate::images::export,
        crate::images::login,
        crate::images::logins,
        crate::images::logout,
        crate::models::list,
        crate::models::import,
        crate::models::get,
        crate::models::loaded,
        crate::models::load,
        crate::models::unload,
        crate::models::pull,
        crate::models::push,
        crate::models::remove,
        crate::models::openai_list,
        crate::openai::chat,
        crate::openai::text,
        crate::embeddings::embeddings,
        crate::volumes::list,
        crate::volumes::remove,
        crate::volumes::prune,
        crate::secrets::list,
        crate::secrets::get,
        crate::secrets::set,
        crate::secrets::remove,
        crate::secrets::reveal,
        crate::users::login,
        crate::users::logout,
        crate::users::set_user,
        crate::users::list_users,
        crate::users::remove_user,
        crate::users::grant,
        crate::users::revoke,
        crate::quota::get,
        crate::quota::set,
        crate::access::create_key,
        crate::access::list_keys,
        crate::access::revoke_key,
        crate::access::audit,
        crate::access::verify_audit,
        crate::access::list_projects,
        crate::access::create_project,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "daemon",
    responses((status = 200, description = "This OpenAPI document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
