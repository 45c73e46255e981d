//! `/api/v1/auth/*`: signup, login, refresh, logout, and `/api/v1/me`.

use crate::auth::{passwords, tokens};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{AuthUser, JsonBody, JsonBodyWithNul, NoQuery, RequestContext};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use commands::errors::{account_gone, invalid_refresh_token, Failure};
use commands::services::accounts::{self, NewRefreshFamily, Rotation};
use domain::limit::{LimitKind, Refusal};
use domain::login::{LoginCommand, LoginFailure};
use domain::values::{check_password_strength, Email, Name};
use domain::{Actor, Aggregate};
use eventstore::{ExecuteError, KeyKind};
use projections::models::organizations::OrgRow;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    email: String,
    password: String,
    name: String,
    /// An invitation's token (from `POST /api/v1/orgs/{org}/members`): the new account joins
    /// its org with the invited role. Without one, signing up joins nothing, invited or not.
    #[serde(default)]
    invitation_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

/// What signing in gives: an access token for `Authorization: Bearer`, and a refresh token
/// that trades for a new pair once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    refresh_token: String,
    /// Seconds until the refresh token expires.
    refresh_token_expires_in: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedUp {
    user: NewUser,
    /// The org joined by accepting the invitation whose `invitation_token` the body carried
    /// (empty without one).
    joined_orgs: Vec<Uuid>,
    #[serde(flatten)]
    tokens: TokenPair,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NewUser {
    id: Uuid,
    #[schema(value_type = String)]
    email: Email,
    #[schema(value_type = String)]
    name: Name,
    #[serde(with = "domain::time::rfc3339")]
    created_at: chrono::DateTime<Utc>,
}

/// The signed-in user and their orgs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    id: Uuid,
    #[schema(value_type = Option<String>)]
    email: Option<Email>,
    #[schema(value_type = Option<String>)]
    name: Option<Name>,
    orgs: Vec<OrgRow>,
}

fn validation(errors: Vec<(&str, String)>) -> ApiError {
    ApiError::validation(
        errors
            .into_iter()
            .map(|(field, message)| crate::error::FieldError {
                field: field.to_owned(),
                message,
            })
            .collect(),
    )
}

/// A new refresh family and its first token.
fn new_family() -> (NewRefreshFamily, String) {
    let family_id = Uuid::new_v4();
    let token = tokens::new_refresh_token(family_id);
    (
        NewRefreshFamily {
            family_id,
            token_hash: token.hash,
            expires_at: Utc::now() + chrono::Duration::seconds(tokens::REFRESH_TTL_SECS),
        },
        token.token,
    )
}

fn pair(
    state: &AppState,
    user_id: Uuid,
    email: &str,
    refresh_token: String,
) -> Result<TokenPair, ApiError> {
    let (access_token, expires_in) = state.tokens.issue_access(user_id, email, Utc::now())?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token,
        refresh_token_expires_in: tokens::REFRESH_TTL_SECS,
    })
}

#[utoipa::path(operation_id = "auth_signup", post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, description = "Signed up; tokens issued", body = SignedUp),
        (status = 403, description = "The invitation is for another email address (`invitation_email_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No pending invitation has this token: never issued, used, revoked or replaced (`invitation_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken, or the invitation has expired (`invitation_expired`)", body = Problem, content_type = "application/problem+json")))]
pub async fn signup(
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(body): JsonBody<SignupBody>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let email = Email::parse(&body.email)
        .map_err(|e| errors.push(("email", e.to_string())))
        .ok();
    let name = Name::parse(&body.name)
        .map_err(|e| errors.push(("name", e.to_string())))
        .ok();
    if let Err(e) = check_password_strength(&body.password) {
        errors.push(("password", e.to_string()));
    }
    let (Some(email), Some(name), true) = (email, name, errors.is_empty()) else {
        return Err(validation(errors));
    };
    let address = ctx.client_ip.as_deref();
    if let Err(refused) = state.guard.signup(address) {
        let retry = refused.retry_after_secs;
        refuse(&state, &ctx, refused, None, address.unwrap_or_default()).await;
        return Err(ApiError::limit_reached(
            format!(
                "too many signups from this address (at most {} an hour); retry in {retry} s \
                 (signups_per_address)",
                refused.allowed
            ),
            Some(retry),
        ));
    }
    if accounts::find_user_by_email(&state.store, &email)
        .await?
        .is_some()
    {
        // Who holds an email is the store's key to answer, in the table's words.
        return Err(Failure::from(KeyKind::UserEmail).into());
    }
    let turn = argon_turn(&state, address).await?;
    let password_hash = passwords::hash(body.password).await?;
    drop(turn);
    let user_id = Uuid::new_v4();
    let (family, refresh_token) = new_family();
    let metadata = ctx.metadata(Actor::PlatformUser { id: user_id });
    let invitation = body
        .invitation_token
        .as_deref()
        .map(|token| accounts::PresentedInvitation {
            token_hash: tokens::hash_invitation_token(token),
            now: Utc::now(),
        });
    let signed_up = accounts::sign_up(
        &state.store,
        user_id,
        email.clone(),
        name.clone(),
        password_hash,
        family,
        invitation,
        &metadata,
    )
    .await?;
    let created_at = signed_up
        .recorded_at
        .ok_or_else(|| ApiError::internal("a signup was committed without an event"))?;
    let joined = signed_up.joined_orgs;
    if !joined.is_empty() {
        // Joined an org by invitation: let the membership read model catch up.
        state
            .settle(
                domain::organization::Organization::TYPE,
                signed_up.last_cursor,
            )
            .await;
    }
    let tokens = pair(&state, user_id, email.as_str(), refresh_token)?;
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            user: NewUser {
                id: user_id,
                email,
                name,
                created_at,
            },
            joined_orgs: joined,
            tokens,
        }),
    ))
}

#[utoipa::path(operation_id = "auth_login", post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, description = "Tokens", body = TokenPair), (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"), (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBodyWithNul(body): JsonBodyWithNul<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let typed_email = body.email.trim().to_lowercase();
    let address = ctx.client_ip.as_deref();
    if let Err(refused) = state.limiter.check(&typed_email, address) {
        tracing::warn!(client_ip = ?ctx.client_ip, limit = %refused.limit, "login rate limited");
        let key = match refused.limit {
            LimitKind::LoginsPerAddress => address.unwrap_or_default().to_owned(),
            _ => format!("{typed_email}/{}", address.unwrap_or_default()),
        };
        refuse(&state, &ctx, refused, None, &key).await;
        return Err(ApiError::too_many_requests(refused.retry_after_secs));
    }
    let user = match Email::parse(&body.email) {
        Ok(email) => accounts::find_user_by_email(&state.store, &email).await?,
        Err(_) => None,
    };
    let stored_hash = match &user {
        Some((user_id, _)) => accounts::password_hash(&state.store, *user_id).await?,
        None => None,
    };
    let turn = argon_turn(&state, address).await?;
    let ok = passwords::verify(body.password, stored_hash).await?;
    drop(turn);
    match (ok, user) {
        (true, Some((user_id, user))) => {
            let email = user
                .email
                .ok_or_else(|| ApiError::internal("user without email"))?;
            state.limiter.succeeded(&typed_email, address);
            let (family, refresh_token) = new_family();
            let metadata = ctx.metadata(Actor::PlatformUser { id: user_id });
            accounts::record_login_success(&state.store, user_id, email.clone(), family, &metadata)
                .await?;
            Ok(Json(pair(&state, user_id, email.as_str(), refresh_token)?))
        }
        (_, user) => {
            let user_id = user.as_ref().map(|(id, _)| *id);
            let reason = if user_id.is_some() {
                LoginFailure::WrongPassword
            } else {
                LoginFailure::UnknownEmail
            };
            // Failures on an account slow its further failures from addresses it never signed
            // in from, boundedly; a right password is never held back.
            let delay = state.limiter.failed(&typed_email, address);
            let metadata = ctx.metadata(Actor::Anonymous);
            accounts::record_login_failure(
                &state.store,
                LoginCommand::RecordFailure {
                    user_id,
                    email: typed_email,
                    reason,
                },
                &metadata,
            )
            .await?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Err(ApiError::new(
                ErrorCode::InvalidCredentials,
                "email or password is wrong",
            ))
        }
    }
}

/// A turn at argon2 work for this address, or 429 when it already has its share running.
async fn argon_turn(
    state: &AppState,
    address: Option<&str>,
) -> Result<passwords::ArgonTurn, ApiError> {
    state.argon.turn(address).await.ok_or_else(|| {
        tracing::warn!(client_ip = ?address, "argon2 work refused: too many at once from one address");
        ApiError::too_many_requests(1)
    })
}

/// Records a platform limit's refusal (at most one event per limit and key a minute).
async fn refuse(
    state: &AppState,
    ctx: &RequestContext,
    refused: commands::limits::Refused,
    user_id: Option<Uuid>,
    key: &str,
) {
    let refusal = Refusal {
        limit: refused.limit,
        allowed: refused.allowed,
        org_id: None,
        server_id: None,
        end_user_id: None,
        user_id,
        retry_after_secs: Some(refused.retry_after_secs),
    };
    state
        .guard
        .record(&state.store, refusal, key, &ctx.metadata(Actor::Anonymous))
        .await;
}

fn invalid_refresh() -> ApiError {
    invalid_refresh_token().into()
}

#[utoipa::path(operation_id = "auth_refresh", post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, description = "New token pair", body = TokenPair), (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json")))]
pub async fn refresh(
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<impl IntoResponse, ApiError> {
    let family_id = tokens::refresh_family(&body.refresh_token).ok_or_else(invalid_refresh)?;
    let presented = tokens::hash_refresh_token(&body.refresh_token);
    let next = tokens::new_refresh_token(family_id);
    let now = Utc::now();
    let metadata = ctx.metadata(Actor::Anonymous);
    let outcome = accounts::rotate_refresh_token(
        &state.store,
        family_id,
        &presented,
        &next.hash,
        now,
        now + chrono::Duration::seconds(tokens::REFRESH_TTL_SECS),
        &metadata,
    )
    .await?;
    match outcome {
        Rotation::Rotated { user_id } => {
            let user = accounts::load_user(&state.store, user_id)
                .await?
                .ok_or_else(invalid_refresh)?;
            let email = user
                .email
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default();
            Ok(Json(pair(&state, user_id, &email, next.token)?))
        }
        Rotation::ReuseDetected => Err(ApiError::new(
            ErrorCode::RefreshTokenReused,
            "this refresh token was already used; all tokens of this login are revoked",
        )),
    }
}

#[utoipa::path(operation_id = "auth_logout", post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204, description = "Token family revoked"), (status = 401, description = "Invalid refresh token", body = Problem, content_type = "application/problem+json")))]
pub async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    let family_id = tokens::refresh_family(&body.refresh_token).ok_or_else(invalid_refresh)?;
    let presented = tokens::hash_refresh_token(&body.refresh_token);
    accounts::revoke_refresh_family(
        &state.store,
        family_id,
        &presented,
        &ctx.metadata(Actor::Anonymous),
    )
    .await
    .map_err(|e| match e {
        // Logging out does not tell an expired or revoked token from an unknown one.
        ExecuteError::Domain(_) => invalid_refresh(),
        e => e.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "auth_me", get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The signed-in user and their orgs", body = Me)))]
pub async fn me(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
) -> Result<impl IntoResponse, ApiError> {
    let profile = accounts::load_user(&state.store, user.user_id)
        .await?
        .ok_or_else(account_gone)?;
    let orgs = projections::models::organizations::orgs_of(&state.pool, user.user_id).await?;
    Ok(Json(Me {
        id: user.user_id,
        email: profile.email,
        name: profile.name,
        orgs,
    }))
}
