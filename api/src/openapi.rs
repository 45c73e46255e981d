//! The OpenAPI document, generated from the handlers' annotations (utoipa) and served at
//! `/api/v1/openapi.json`.

use crate::routes;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An RFC 9457 problem, as every error is rendered.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `slug_taken`, `org_not_found`.
    pub code: String,
    /// For `validation_failed`: each invalid field and why.
    pub errors: Option<Vec<crate::error::FieldError>>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "mcplatform API", description = "Multi-tenant hosted MCP servers: accounts, organizations, servers, audit and event streams."),
    paths(
        routes::auth::signup, routes::auth::login, routes::auth::refresh, routes::auth::logout,
        routes::auth::me,
        routes::orgs::create, routes::orgs::list, routes::orgs::get,
        routes::orgs::members, routes::orgs::add_member, routes::orgs::change_role,
        routes::orgs::remove_member,
        routes::servers::list, routes::servers::create, routes::servers::get,
        routes::servers::update, routes::servers::archive,
        routes::dashboard::overview, routes::dashboard::audit_log,
        routes::tickets::list, routes::tickets::get, routes::tickets::change_status,
        routes::tickets::comment, routes::tickets::assign,
        routes::end_users::list, routes::end_users::get,
        routes::sessions::list, routes::sessions::get,
        routes::tool_calls::list, routes::tool_calls::tools,
        routes::walkthroughs::list, routes::walkthroughs::create, routes::walkthroughs::get,
        routes::walkthroughs::update, routes::walkthroughs::publish,
        routes::walkthroughs::unpublish, routes::walkthroughs::archive,
        routes::walkthroughs::steps, routes::walkthroughs::add_step,
        routes::walkthroughs::edit_step, routes::walkthroughs::remove_step,
        routes::walkthroughs::move_step, routes::walkthroughs::versions,
        routes::walkthrough_analytics::analytics, routes::walkthrough_analytics::sankey,
        routes::walkthroughs::server_list, routes::walkthroughs::assign,
        routes::walkthroughs::update_assignment, routes::walkthroughs::unassign,
        routes::events::page, routes::events::stream,
        routes::health::healthz, routes::health::readyz,
    ),
    components(schemas(Problem, crate::error::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
