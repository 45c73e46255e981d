//! `/api/v1/orgs/{org}/identity-providers`: the org's identity providers, through which end
//! users of its `oauth` servers sign in. Members read; owners and admins write. No answer ever
//! carries the client secret (it is sealed at rest and only the sign-in flow opens it).

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{JsonBody, Membership, NoQuery, Path, RequestContext};
use crate::paging::Items;
use crate::params::{IdentityProviderPath, OrgPath};
use crate::routes::walkthroughs::double_option;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::services::identity_providers::{self as service, ProviderInput, ProviderPatch};
use domain::identity_provider::{IdentityProvider, ProviderKind, ProviderOptions};
use domain::values::{Name, OrgId};
use domain::Aggregate;
use projections::models::identity_providers::{self as rm, ProviderRow};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The quirks real providers need.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsBody {
    /// Send RFC 8707 `resource` to the provider (default false).
    #[serde(default)]
    send_resource: bool,
    /// An `audience` parameter instead (Auth0, Cognito); null for none.
    #[serde(default)]
    audience: Option<String>,
    /// Leave `prompt` out of the authorization request (default false).
    #[serde(default)]
    drop_prompt: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderBody {
    name: String,
    /// `oidc` or `oauth2`.
    kind: String,
    /// The OpenID issuer (`oidc`): its discovery document is fetched when saved, and must name
    /// exactly this issuer.
    #[serde(default)]
    issuer: Option<String>,
    /// `oauth2` only (an `oidc` provider's come from discovery).
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
    /// Where the user's identity is read (`oauth2`; GitHub: `https://api.github.com/user`).
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    client_id: String,
    /// Sealed at rest; never answered.
    #[schema(format = Password)]
    client_secret: String,
    /// Default for `oidc`: `openid email profile` (`openid` is always added).
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    options: Option<OptionsBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsPatch {
    #[serde(default)]
    send_resource: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    audience: Option<Option<String>>,
    #[serde(default)]
    drop_prompt: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    /// `oidc`: the provider is rediscovered on every change.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    issuer: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    authorization_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    token_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    userinfo_endpoint: Option<Option<String>>,
    #[serde(default)]
    client_id: Option<String>,
    /// A new secret replaces the sealed one; absent keeps it.
    #[serde(default)]
    #[schema(format = Password)]
    client_secret: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    options: Option<OptionsPatch>,
}

/// The quirks of a provider.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OptionsView {
    send_resource: bool,
    audience: Option<String>,
    drop_prompt: bool,
}

/// An identity provider of the org (never its client secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderView {
    id: Uuid,
    org_id: Uuid,
    name: String,
    /// `oidc` or `oauth2`.
    kind: String,
    issuer: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    /// Where the ID token's signing keys are (`oidc`, discovered).
    jwks_uri: Option<String>,
    client_id: String,
    scopes: Vec<String>,
    options: OptionsView,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    updated_at: DateTime<Utc>,
}

fn render(row: ProviderRow) -> ProviderView {
    ProviderView {
        id: row.id,
        org_id: row.org_id,
        name: row.name,
        kind: row.kind,
        issuer: row.issuer,
        authorization_endpoint: row.authorization_endpoint,
        token_endpoint: row.token_endpoint,
        userinfo_endpoint: row.userinfo_endpoint,
        jwks_uri: row.jwks_uri,
        client_id: row.client_id,
        scopes: row.scopes.0,
        options: OptionsView {
            send_resource: row.send_resource,
            audience: row.audience,
            drop_prompt: row.drop_prompt,
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn parse_kind(kind: &str) -> Result<ProviderKind, ApiError> {
    ProviderKind::parse(kind).ok_or_else(|| ApiError::field("kind", "must be one of: oidc, oauth2"))
}

fn provider_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(ErrorCode::IdentityProviderNotFound))
}

/// The provider after a write, from the read model once it includes the write, else from the
/// write model (NATS away), so a successful write never answers 404.
async fn written(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    projected: bool,
) -> Result<ProviderView, ApiError> {
    if projected {
        if let Some(row) = rm::get(&state.pool, org, id).await? {
            return Ok(render(row));
        }
    }
    let history = state
        .store
        .history::<IdentityProvider>(&id.to_string())
        .await?;
    let (Some(first), Some(last)) = (history.first(), history.last()) else {
        return Err(ApiError::not_found(ErrorCode::IdentityProviderNotFound));
    };
    let (created_at, updated_at) = (first.recorded_at, last.recorded_at);
    let mut provider = IdentityProvider::default();
    for recorded in &history {
        provider.apply(&recorded.event);
    }
    let config = provider
        .of_org(org.0)
        .cloned()
        .ok_or_else(|| ApiError::not_found(ErrorCode::IdentityProviderNotFound))?;
    Ok(ProviderView {
        id,
        org_id: org.0,
        name: config.name.as_str().to_owned(),
        kind: config.kind.as_str().to_owned(),
        issuer: config.issuer,
        authorization_endpoint: config.authorization_endpoint,
        token_endpoint: config.token_endpoint,
        userinfo_endpoint: config.userinfo_endpoint,
        jwks_uri: config.jwks_uri,
        client_id: config.client_id,
        scopes: config.scopes,
        options: OptionsView {
            send_resource: config.options.send_resource,
            audience: config.options.audience,
            drop_prompt: config.options.drop_prompt,
        },
        created_at,
        updated_at,
    })
}

#[utoipa::path(operation_id = "identity_providers_list", get, path = "/api/v1/orgs/{org}/identity-providers", tag = "identity-providers", params(OrgPath), security(("bearer" = [])),
    responses((status = 200, description = "Identity providers of the org (never a client secret)", body = Items<ProviderView>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
) -> Result<Json<Items<ProviderView>>, ApiError> {
    let items = rm::list(&state.pool, org)
        .await?
        .into_iter()
        .map(render)
        .collect();
    Ok(Json(Items { items }))
}

#[utoipa::path(operation_id = "identity_providers_create", post, path = "/api/v1/orgs/{org}/identity-providers", tag = "identity-providers", params(OrgPath), request_body = CreateProviderBody, security(("bearer" = [])),
    responses((status = 201, description = "Registered (an `oidc` provider discovered)", body = ProviderView), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field is invalid, or discovery failed (`provider_discovery_failed`)", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    JsonBody(body): JsonBody<CreateProviderBody>,
) -> Result<impl IntoResponse, ApiError> {
    let options = body.options.unwrap_or(OptionsBody {
        send_resource: false,
        audience: None,
        drop_prompt: false,
    });
    let input = ProviderInput {
        name: Name::parse(&body.name).map_err(|e| ApiError::value("name", e))?,
        kind: parse_kind(&body.kind)?,
        issuer: body.issuer,
        authorization_endpoint: body.authorization_endpoint,
        token_endpoint: body.token_endpoint,
        userinfo_endpoint: body.userinfo_endpoint,
        client_id: body.client_id,
        client_secret: SecretString::from(body.client_secret),
        scopes: body.scopes,
        options: ProviderOptions {
            send_resource: options.send_resource,
            audience: options.audience,
            drop_prompt: options.drop_prompt,
        },
    };
    let id = Uuid::new_v4();
    let done = service::create(
        &state.store,
        &state.outbound,
        &state.provider_seal,
        org.0,
        id,
        user.user_id,
        input,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state
        .settle(IdentityProvider::TYPE, done.last_cursor())
        .await;
    Ok((
        StatusCode::CREATED,
        Json(written(&state, org, id, projected).await?),
    ))
}

#[utoipa::path(operation_id = "identity_providers_get", get, path = "/api/v1/orgs/{org}/identity-providers/{provider}", tag = "identity-providers", params(IdentityProviderPath), security(("bearer" = [])),
    responses((status = 200, description = "The identity provider (never its client secret)", body = ProviderView)))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(IdentityProviderPath { provider, .. }): Path<IdentityProviderPath>,
) -> Result<Json<ProviderView>, ApiError> {
    let id = provider_id(&provider)?;
    let row = rm::get(&state.pool, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::IdentityProviderNotFound))?;
    Ok(Json(render(row)))
}

#[utoipa::path(operation_id = "identity_providers_update", patch, path = "/api/v1/orgs/{org}/identity-providers/{provider}", tag = "identity-providers", params(IdentityProviderPath), request_body = UpdateProviderBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated (an `oidc` provider rediscovered)", body = ProviderView), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field is invalid, or discovery failed", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(IdentityProviderPath { provider, .. }): Path<IdentityProviderPath>,
    JsonBody(body): JsonBody<UpdateProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    let id = provider_id(&provider)?;
    let options = body.options.unwrap_or(OptionsPatch {
        send_resource: None,
        audience: None,
        drop_prompt: None,
    });
    let patch = ProviderPatch {
        name: body
            .name
            .as_deref()
            .map(Name::parse)
            .transpose()
            .map_err(|e| ApiError::value("name", e))?,
        kind: body.kind.as_deref().map(parse_kind).transpose()?,
        issuer: body.issuer,
        authorization_endpoint: body.authorization_endpoint,
        token_endpoint: body.token_endpoint,
        userinfo_endpoint: body.userinfo_endpoint,
        client_id: body.client_id,
        client_secret: body.client_secret.map(SecretString::from),
        scopes: body.scopes,
        send_resource: options.send_resource,
        audience: options.audience,
        drop_prompt: options.drop_prompt,
    };
    let done = service::update(
        &state.store,
        &state.outbound,
        &state.provider_seal,
        org.0,
        id,
        user.user_id,
        patch,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state
        .settle(IdentityProvider::TYPE, done.last_cursor())
        .await;
    Ok(Json(written(&state, org, id, projected).await?))
}

#[utoipa::path(operation_id = "identity_providers_delete", delete, path = "/api/v1/orgs/{org}/identity-providers/{provider}", tag = "identity-providers", params(IdentityProviderPath), security(("bearer" = [])),
    responses((status = 204, description = "Deleted, with its sealed secret"), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Servers use it (`identity_provider_in_use`)", body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(IdentityProviderPath { provider, .. }): Path<IdentityProviderPath>,
) -> Result<StatusCode, ApiError> {
    let id = provider_id(&provider)?;
    let done = service::delete(
        &state.store,
        org.0,
        id,
        user.user_id,
        &ctx.metadata(user.actor()),
    )
    .await?;
    state
        .settle(IdentityProvider::TYPE, done.last_cursor())
        .await;
    Ok(StatusCode::NO_CONTENT)
}
