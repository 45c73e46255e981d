//! `/api/v1/orgs/{org}/servers`: hosted MCP servers.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{JsonBody, Membership, NoQuery, Path, QueryParams, RequestContext};
use crate::paging::Items;
use crate::params::{OrgPath, ServerPath};
use crate::routes::Written;
use crate::state::{AppState, ServerUrls};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::services::servers;
use domain::server::{Server, ServerChanges, ServerConfig};
use domain::values::{AuthMode, Name, OrgId, Slug};
use domain::Aggregate;
use projections::models::servers::{self as rm, ServerRow};
use serde::{Deserialize, Serialize};
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
    /// Refuse tracking ids that are not signed with one of the server's tracking secrets.
    /// A new server has none, so this can only be turned on later.
    #[serde(default)]
    require_signed_tracking: Option<bool>,
    /// One of the org's identity providers, which end users sign in with; `auth_mode: oauth`
    /// needs one.
    #[serde(default)]
    identity_provider_id: Option<Uuid>,
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
    /// Refuse tracking ids that are not signed (`{id}.{signature}`) with one of the server's
    /// active tracking secrets; needs one.
    #[serde(default)]
    require_signed_tracking: Option<bool>,
    /// One of the org's identity providers (`oauth` mode needs one); `null` unbinds it.
    #[serde(
        default,
        deserialize_with = "crate::routes::walkthroughs::double_option"
    )]
    #[schema(value_type = Option<Uuid>)]
    identity_provider_id: Option<Option<Uuid>>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Also list archived servers.
    #[serde(default)]
    include_archived: bool,
}

/// A hosted MCP server and the URLs its clients connect to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerView {
    #[serde(flatten)]
    row: ServerRow,
    urls: ServerUrls,
}

/// A server written while the read models lag: what the write model knows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingServer {
    id: Uuid,
    org_id: Option<Uuid>,
    #[schema(value_type = String)]
    name: Name,
    #[schema(value_type = String)]
    slug: Slug,
    #[schema(value_type = String)]
    auth_mode: AuthMode,
    support_tool: bool,
    walkthrough_tools: bool,
    conformance_fixtures: bool,
    require_signed_tracking: bool,
    identity_provider_id: Option<Uuid>,
    /// `active` or `archived`.
    status: &'static str,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    updated_at: DateTime<Utc>,
    urls: ServerUrls,
}

fn render(state: &AppState, row: ServerRow) -> ServerView {
    let urls = state.server_urls(&row.slug);
    ServerView { row, urls }
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
) -> Result<Json<Written<ServerView, PendingServer>>, ApiError> {
    if projected {
        if let Some(row) = rm::get(&state.pool, org, &server_id.to_string()).await? {
            return Ok(Json(Written::Read(render(state, row))));
        }
    }
    // The stream with its times: the server as the write model has it, created when its first
    // event was recorded and updated when its last was.
    let history = state
        .store
        .history::<Server>(&server_id.to_string())
        .await?;
    let (Some(first), Some(last)) = (history.first(), history.last()) else {
        return Err(ApiError::not_found(ErrorCode::ServerNotFound));
    };
    let (created_at, updated_at) = (first.recorded_at, last.recorded_at);
    let mut server = Server::default();
    for recorded in &history {
        server.apply(&recorded.event);
    }
    let config = server
        .config
        .ok_or_else(|| ApiError::not_found(ErrorCode::ServerNotFound))?;
    let urls = state.server_urls(config.slug.as_str());
    Ok(Json(Written::Pending(PendingServer {
        id: server_id,
        org_id: server.org_id,
        name: config.name,
        slug: config.slug,
        auth_mode: config.auth_mode,
        support_tool: config.support_tool,
        walkthrough_tools: config.walkthrough_tools,
        conformance_fixtures: config.conformance_fixtures,
        require_signed_tracking: config.require_signed_tracking,
        identity_provider_id: config.identity_provider_id,
        status: if server.archived {
            "archived"
        } else {
            "active"
        },
        created_at,
        updated_at,
        urls,
    })))
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
        return Err(ApiError::not_found(ErrorCode::ServerNotFound));
    }
    rm::get(&state.pool, org, server_ref)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::ServerNotFound))
}

#[utoipa::path(operation_id = "servers_list", get, path = "/api/v1/orgs/{org}/servers", tag = "servers", params(OrgPath, ListQuery), security(("bearer" = [])),
    responses((status = 200, description = "Servers of the org", body = Items<ServerView>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Items<ServerView>>, ApiError> {
    let rows = rm::list(&state.pool, org, q.include_archived).await?;
    let items = rows.into_iter().map(|r| render(&state, r)).collect();
    Ok(Json(Items { items }))
}

#[utoipa::path(operation_id = "servers_create", post, path = "/api/v1/orgs/{org}/servers", tag = "servers", params(OrgPath), request_body = CreateServerBody, security(("bearer" = [])),
    responses((status = 201, description = "Server created, with its MCP URLs", body = Written<ServerView, PendingServer>), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Slug taken", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    JsonBody(body): JsonBody<CreateServerBody>,
) -> Result<impl IntoResponse, ApiError> {
    let config = ServerConfig {
        name: Name::parse(&body.name).map_err(|e| ApiError::value("name", e))?,
        slug: Slug::parse(&body.slug).map_err(|e| ApiError::value("slug", e))?,
        auth_mode: parse_auth_mode(body.auth_mode.as_deref())?.unwrap_or_default(),
        support_tool: body.support_tool.unwrap_or(true),
        walkthrough_tools: body.walkthrough_tools.unwrap_or(true),
        conformance_fixtures: body.conformance_fixtures.unwrap_or(false),
        require_signed_tracking: body.require_signed_tracking.unwrap_or(false),
        identity_provider_id: body.identity_provider_id,
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
        written(&state, org, server_id, projected).await?,
    ))
}

#[utoipa::path(operation_id = "servers_get", get, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(ServerPath), security(("bearer" = [])),
    responses((status = 200, description = "The server", body = ServerView)))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(ServerPath { server, .. }): Path<ServerPath>,
) -> Result<Json<ServerView>, ApiError> {
    let row = fetch(&state, org, &server).await?;
    Ok(Json(render(&state, row)))
}

#[utoipa::path(operation_id = "servers_update", patch, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(ServerPath), request_body = UpdateServerBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = Written<ServerView, PendingServer>), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Slug taken or server archived", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(ServerPath { server, .. }): Path<ServerPath>,
    JsonBody(body): JsonBody<UpdateServerBody>,
) -> Result<Json<Written<ServerView, PendingServer>>, ApiError> {
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
        require_signed_tracking: body.require_signed_tracking,
        identity_provider_id: body.identity_provider_id,
    };
    let current = fetch(&state, org, &server).await?;
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
    written(&state, org, current.id, projected).await
}

#[utoipa::path(operation_id = "servers_archive", delete, path = "/api/v1/orgs/{org}/servers/{server}", tag = "servers", params(ServerPath), security(("bearer" = [])),
    responses((status = 200, description = "Archived; the slug is free again", body = Written<ServerView, PendingServer>), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json")))]
pub async fn archive(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(ServerPath { server, .. }): Path<ServerPath>,
) -> Result<Json<Written<ServerView, PendingServer>>, ApiError> {
    let current = fetch(&state, org, &server).await?;
    let done = servers::archive(
        &state.store,
        org.0,
        current.id,
        user.user_id,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Server::TYPE, done.last_cursor()).await;
    written(&state, org, current.id, projected).await
}
