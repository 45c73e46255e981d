//! `/api/v1/orgs/{org}/servers`: hosted MCP servers.

use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::extract::{AuthUser, JsonBody, NoQuery, RequestContext};
use crate::openapi::Problem;
use crate::routes::orgs::resolve;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use commands::services::servers;
use domain::server::{Server, ServerChanges, ServerConfig};
use domain::values::{AuthMode, Name, OrgId, Slug};
use domain::Aggregate;
use projections::models::servers::{self as rm, ServerRow};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerBody {
    name: String,
    slug: String,
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default)]
    support_tool: Option<bool>,
    #[serde(default)]
    walkthrough_tools: Option<bool>,
    #[serde(default)]
    conformance_fixtures: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(default)]
    support_tool: Option<bool>,
    #[serde(default)]
    walkthrough_tools: Option<bool>,
    #[serde(default)]
    conformance_fixtures: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    include_archived: bool,
}

fn render(state: &AppState, row: &ServerRow) -> Value {
    let mut value = json!(row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("urls".to_owned(), state.server_urls(&row.slug));
    }
    value
}

fn parse_auth_mode(input: Option<&str>) -> Result<Option<AuthMode>, ApiError> {
    input
        .map(|m| AuthMode::parse(m).map_err(|e| ApiError::value("auth_mode", e)))
        .transpose()
}

/// The server after a write: from the read model when it has caught up, otherwise from the
/// write model (NATS away), so a successful write never answers 404.
async fn written(
    state: &AppState,
    org: OrgId,
    server_id: Uuid,
    projected: bool,
) -> Result<Value, ApiError> {
    if projected {
        if let Some(row) = rm::get(&state.pool, org, &server_id.to_string()).await? {
            return Ok(render(state, &row));
        }
    }
    let (server, _) = state.store.load::<Server>(&server_id.to_string()).await?;
    let config = server.config.ok_or_else(|| ApiError::not_found("server"))?;
    Ok(json!({
        "id": server_id,
        "org_id": server.org_id,
        "name": config.name,
        "slug": config.slug,
        "auth_mode": config.auth_mode,
        "support_tool": config.support_tool,
        "walkthrough_tools": config.walkthrough_tools,
        "conformance_fixtures": config.conformance_fixtures,
        "status": if server.archived { "archived" } else { "active" },
        "created_at": null,
        "updated_at": null,
        "urls": state.server_urls(config.slug.as_str()),
    }))
}

/// A `server` filter of a list: `Some(None)` when absent, `Some(Some(id))` for a server of the
/// org named by id or slug, `None` when the org has no such server (the list is then empty).
pub async fn server_id_filter(
    state: &AppState,
    org: OrgId,
    server_ref: Option<&str>,
) -> Result<Option<Option<Uuid>>, ApiError> {
    let Some(server_ref) = server_ref else {
        return Ok(Some(None));
    };
    if !crate::error::plausible_ref(server_ref) {
        return Ok(None);
    }
    Ok(rm::get(&state.pool, org, server_ref)
        .await?
        .map(|s| Some(s.id)))
}

pub(crate) async fn fetch(
    state: &AppState,
    org: OrgId,
    server_ref: &str,
) -> Result<ServerRow, ApiError> {
    if !crate::error::plausible_ref(server_ref) {
        return Err(ApiError::not_found("server"));
    }
    rm::get(&state.pool, org, server_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("server"))
}

#[utoipa::path(operation_id = "servers_list", get, path = "/api/v1/orgs/{org}/servers", tag = "servers", params(("org" = String, Path, description = "Org id or slug"), ("include_archived" = Option<bool>, Query, description = "Also list archived servers")), security(("bearer" = [])),
    responses((status = 200, description = "Servers of the org"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let rows = rm::list(&state.pool, org, q.include_archived).await?;
    let items: Vec<Value> = rows.iter().map(|r| render(&state, r)).collect();
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(operation_id = "servers_create", post, path = "/api/v1/orgs/{org}/servers", tag = "servers", params(("org" = String, Path, description = "Org id or slug")), request_body = CreateServerBody, security(("bearer" = [])),
    responses((status = 201, description = "Server created, with its MCP URLs"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 409, description = "Slug taken", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(org_ref): Path<String>,
    JsonBody(body): JsonBody<CreateServerBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let config = ServerConfig {
        name: Name::parse(&body.name).map_err(|e| ApiError::value("name", e))?,
        slug: Slug::parse(&body.slug).map_err(|e| ApiError::value("slug", e))?,
        auth_mode: parse_auth_mode(body.auth_mode.as_deref())?.unwrap_or_default(),
        support_tool: body.support_tool.unwrap_or(true),
        walkthrough_tools: body.walkthrough_tools.unwrap_or(true),
        conformance_fixtures: body.conformance_fixtures.unwrap_or(false),
    };
    let server_id = Uuid::new_v4();
    let done = servers::create(
        &state.store,
        org.0,
        server_id,
        user.user_id,
        config,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Server::TYPE, done.last_cursor()).await;
    Ok((
        StatusCode::CREATED,
        Json(written(&state, org, server_id, projected).await?),
    ))
}

#[utoipa::path(operation_id = "servers_get", get, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "The server"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, server_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = fetch(&state, org, &server_ref).await?;
    Ok(Json(render(&state, &row)))
}

#[utoipa::path(operation_id = "servers_update", patch, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug")), request_body = UpdateServerBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 409, description = "Slug taken or server archived", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, server_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateServerBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let changes = ServerChanges {
        name: body
            .name
            .as_deref()
            .map(Name::parse)
            .transpose()
            .map_err(|e| ApiError::value("name", e))?,
        slug: body
            .slug
            .as_deref()
            .map(Slug::parse)
            .transpose()
            .map_err(|e| ApiError::value("slug", e))?,
        auth_mode: parse_auth_mode(body.auth_mode.as_deref())?,
        support_tool: body.support_tool,
        walkthrough_tools: body.walkthrough_tools,
        conformance_fixtures: body.conformance_fixtures,
    };
    let current = fetch(&state, org, &server_ref).await?;
    let done = servers::update(
        &state.store,
        org.0,
        current.id,
        user.user_id,
        changes,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Server::TYPE, done.last_cursor()).await;
    Ok(Json(written(&state, org, current.id, projected).await?))
}

#[utoipa::path(operation_id = "servers_archive", delete, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "Archived; the slug is free again"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn archive(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, server_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let current = fetch(&state, org, &server_ref).await?;
    let done = servers::archive(
        &state.store,
        org.0,
        current.id,
        user.user_id,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Server::TYPE, done.last_cursor()).await;
    Ok(Json(written(&state, org, current.id, projected).await?))
}
