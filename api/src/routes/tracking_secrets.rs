//! `/api/v1/orgs/{org}/servers/{server}/tracking-secrets`: the secrets a customer's backend
//! signs tracking ids with (`{id}.{signature}`, see `commands::tracking`). A secret is shown
//! once, when created; lists show its id and prefix only. Two at most are active, so one can
//! be rotated with an overlap.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{Membership, NoQuery, Path, RequestContext};
use crate::paging::Items;
use crate::params::ServerPath;
use crate::routes::servers;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::services::servers as service;
use domain::server::{Server, ServerEvent};
use domain::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TrackingSecretPath {
    /// Org id or slug
    pub org: String,
    /// Server id or slug
    pub server: String,
    /// Tracking secret id
    pub secret: String,
}

impl crate::refusals::NamesSomething for TrackingSecretPath {
    const NOT_FOUND: &'static str = "No such server or active tracking secret";
}

/// An active tracking secret, without the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrackingSecretView {
    id: Uuid,
    /// The secret's first characters, to recognise it by: not enough to sign anything.
    prefix: String,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
}

/// A new tracking secret: the only answer that carries the secret itself.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewTrackingSecretView {
    id: Uuid,
    prefix: String,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
    /// The secret, shown this once: the HMAC-SHA256 key (its text, as UTF-8 bytes) the backend
    /// signs tracking ids with. Store it with the backend's other secrets.
    secret: String,
}

/// The server's active tracking secrets, from the write model (strongly consistent: a secret
/// just created or revoked is listed as it now is).
async fn active(state: &AppState, server_id: Uuid) -> Result<Vec<TrackingSecretView>, ApiError> {
    let history = state
        .store
        .history::<Server>(&server_id.to_string())
        .await?;
    let mut views: Vec<TrackingSecretView> = Vec::new();
    for recorded in history {
        match recorded.event {
            ServerEvent::TrackingSecretCreated { secret } => views.push(TrackingSecretView {
                id: secret.secret_id,
                prefix: secret.prefix,
                created_at: recorded.recorded_at,
            }),
            ServerEvent::TrackingSecretRevoked { secret_id } => {
                views.retain(|v| v.id != secret_id);
            }
            _ => {}
        }
    }
    Ok(views)
}

#[utoipa::path(operation_id = "tracking_secrets_list", get, path = "/api/v1/orgs/{org}/servers/{server}/tracking-secrets", tag = "servers", params(ServerPath), security(("bearer" = [])),
    responses((status = 200, description = "The server's active tracking secrets, oldest first, without the secrets", body = Items<TrackingSecretView>), (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(ServerPath { server, .. }): Path<ServerPath>,
) -> Result<Json<Items<TrackingSecretView>>, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    Ok(Json(Items {
        items: active(&state, server.id).await?,
    }))
}

#[utoipa::path(operation_id = "tracking_secrets_create", post, path = "/api/v1/orgs/{org}/servers/{server}/tracking-secrets", tag = "servers", params(ServerPath), security(("bearer" = [])),
    responses((status = 201, description = "A new tracking secret, shown this once", body = NewTrackingSecretView), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Two secrets are active already, or the server is archived", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(ServerPath { server, .. }): Path<ServerPath>,
) -> Result<impl IntoResponse, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let (done, id, fresh) = service::create_tracking_secret(
        &state.store,
        &state.tracking_seal,
        org.0,
        server.id,
        user.user_id,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let created_at = done.recorded_at().unwrap_or_else(Utc::now);
    state.settle(Server::TYPE, done.last_cursor()).await;
    Ok((
        StatusCode::CREATED,
        Json(NewTrackingSecretView {
            id,
            prefix: fresh.prefix,
            created_at,
            secret: fresh.secret,
        }),
    ))
}

#[utoipa::path(operation_id = "tracking_secrets_revoke", delete, path = "/api/v1/orgs/{org}/servers/{server}/tracking-secrets/{secret}", tag = "servers", params(TrackingSecretPath), security(("bearer" = [])),
    responses((status = 204, description = "Revoked: ids signed with it no longer verify"), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such server or active tracking secret", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The server requires signed tracking ids and this is its last secret", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(TrackingSecretPath { server, secret, .. }): Path<TrackingSecretPath>,
) -> Result<StatusCode, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let secret_id: Uuid = secret
        .parse()
        .map_err(|_| ApiError::not_found(ErrorCode::TrackingSecretNotFound))?;
    let done = service::revoke_tracking_secret(
        &state.store,
        org.0,
        server.id,
        secret_id,
        user.user_id,
        &ctx.metadata(user.actor()),
    )
    .await?;
    state.settle(Server::TYPE, done.last_cursor()).await;
    Ok(StatusCode::NO_CONTENT)
}
