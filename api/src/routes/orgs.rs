//! `/api/v1/orgs` and `/api/v1/orgs/{org}/members`.

use crate::auth::tokens;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{AuthUser, JsonBody, Membership, NoQuery, Path, RequestContext};
use crate::filters::one_of;
use crate::paging::Items;
use crate::params::{MemberPath, OrgPath};
use crate::routes::{recorded_at, Written};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::services::{accounts, organizations};
use domain::limit::{LimitKind, Refusal};
use domain::organization::Organization;
use domain::values::{Email, Name, OrgId, Role, Slug};
use domain::Aggregate;
use projections::models::organizations::{self as rm, MemberRow, OrgRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedOrg {
    id: Uuid,
    #[schema(value_type = String)]
    name: Name,
    #[schema(value_type = String)]
    slug: Slug,
    /// The caller's role: `owner`.
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    role: Role,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
}

/// A member added while the read models lag: what the command decided.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingMember {
    /// `null` for an invitation.
    pub(crate) user_id: Option<Uuid>,
    #[schema(value_type = String)]
    pub(crate) email: Email,
    /// Not known yet: `null`.
    pub(crate) name: Option<String>,
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    pub(crate) role: Role,
    /// `active` or `invited`.
    pub(crate) status: &'static str,
    /// A member's only: when they joined.
    #[serde(
        with = "domain::time::rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) joined_at: Option<DateTime<Utc>>,
    /// An invitation's only: when it was sent.
    #[serde(
        with = "domain::time::rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) invited_at: Option<DateTime<Utc>>,
}

/// An invitation sent: its member row (`status` `invited`), and its token, shown this once.
/// The invitation grants nothing until the invited person accepts it with the token: signed in,
/// with `POST accept_url`, or signing up with `invitation_token` in the body. Inviting the
/// email again replaces the token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Invitation {
    #[serde(flatten)]
    pub(crate) member: Written<MemberRow, PendingMember>,
    /// The secret that accepts the invitation, shown only here (the platform keeps its sha256
    /// hash): send it, or `accept_url`, to the invited person only.
    pub(crate) invitation_token: String,
    /// `POST` it, signed in as the invited email, to accept the invitation.
    pub(crate) accept_url: String,
    /// When the token stops working.
    #[serde(with = "domain::time::rfc3339")]
    pub(crate) expires_at: DateTime<Utc>,
}

/// A role changed while the read models lag.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingRole {
    user_id: Uuid,
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    role: Role,
    /// `active`.
    status: &'static str,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgBody {
    name: String,
    slug: String,
}

#[utoipa::path(operation_id = "orgs_create", post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrgBody, security(("bearer" = [])),
    responses((status = 201, description = "Org created; caller is owner", body = CreatedOrg), (status = 409, description = "Slug taken", body = Problem, content_type = "application/problem+json"), (status = 429, description = "The account owns as many orgs as it may", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    JsonBody(body): JsonBody<CreateOrgBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = Name::parse(&body.name).map_err(|e| ApiError::value("name", e))?;
    let slug = Slug::parse(&body.slug).map_err(|e| ApiError::value("slug", e))?;
    let profile = accounts::load_user(&state.store, user.user_id)
        .await?
        .ok_or_else(commands::errors::account_gone)?;
    let owner_email = profile
        .email
        .ok_or_else(|| ApiError::internal("user without email"))?;
    check_orgs_per_account(&state, &user, &ctx).await?;
    let org_id = Uuid::new_v4();
    let done = organizations::create(
        &state.store,
        org_id,
        user.user_id,
        owner_email,
        name.clone(),
        slug.clone(),
        &ctx.metadata(user.actor()),
    )
    .await?;
    state.settle(Organization::TYPE, done.last_cursor()).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOrg {
            id: org_id,
            name,
            slug,
            role: Role::Owner,
            created_at: recorded_at(&done)?,
        }),
    ))
}

/// The platform limit on orgs one account owns (read from the orgs read model, which an org
/// creation waits for). A count frees up when an org is deleted or handed over.
async fn check_orgs_per_account(
    state: &AppState,
    user: &AuthUser,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    let allowed = state.guard.limits.orgs_per_account;
    if allowed == 0 {
        return Ok(());
    }
    let owned = rm::orgs_of(&state.pool, user.user_id)
        .await?
        .iter()
        .filter(|o| o.role == Role::Owner.as_str())
        .count();
    if owned < allowed as usize {
        return Ok(());
    }
    let refusal = Refusal {
        limit: LimitKind::OrgsPerAccount,
        allowed,
        org_id: None,
        server_id: None,
        end_user_id: None,
        user_id: Some(user.user_id),
        retry_after_secs: None,
    };
    state
        .guard
        .record(
            &state.store,
            refusal,
            &user.user_id.to_string(),
            &ctx.metadata(user.actor()),
        )
        .await;
    Err(ApiError::limit_reached(
        format!("an account owns at most {allowed} orgs (orgs_per_account)"),
        None,
    ))
}

#[utoipa::path(operation_id = "orgs_list", get, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "Orgs of the caller", body = Items<OrgRow>)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
) -> Result<Json<Items<OrgRow>>, ApiError> {
    let items = rm::orgs_of(&state.pool, user.user_id).await?;
    Ok(Json(Items { items }))
}

#[utoipa::path(operation_id = "orgs_get", get, path = "/api/v1/orgs/{org}", tag = "orgs", params(OrgPath), security(("bearer" = [])),
    responses((status = 200, description = "The org", body = OrgRow)))]
pub async fn get(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    _: NoQuery,
) -> Result<Json<OrgRow>, ApiError> {
    let row = rm::org(&state.pool, org, user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::OrgNotFound))?;
    Ok(Json(row))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberBody {
    email: String,
    #[serde(default = "default_role", deserialize_with = "one_of")]
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    role: Role,
}

fn default_role() -> Role {
    Role::Member
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleBody {
    #[serde(deserialize_with = "one_of")]
    #[schema(value_type = crate::filters::RoleSchema, inline)]
    role: Role,
}

#[utoipa::path(operation_id = "orgs_members", get, path = "/api/v1/orgs/{org}/members", tag = "members", params(OrgPath), security(("bearer" = [])),
    responses((status = 200, description = "Members and invitations", body = Items<MemberRow>)))]
pub async fn members(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
) -> Result<Json<Items<MemberRow>>, ApiError> {
    let items = rm::members(&state.pool, org).await?;
    Ok(Json(Items { items }))
}

#[utoipa::path(operation_id = "orgs_add_member", post, path = "/api/v1/orgs/{org}/members", tag = "members", params(OrgPath), request_body = AddMemberBody, security(("bearer" = [])),
    responses((status = 201, description = "Invited (whether the email has an account or not): the invitation's token and link, shown once; it grants nothing until accepted", body = Invitation), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Already a member", body = Problem, content_type = "application/problem+json")))]
pub async fn add_member(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> Result<impl IntoResponse, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::value("email", e))?;
    let role = body.role;
    let token = tokens::new_invitation_token();
    let ttl = chrono::Duration::from_std(state.config.invitation_ttl)
        .map_err(|_| ApiError::internal("invitation ttl out of range"))?;
    let expires_at = Utc::now() + ttl;
    let done = organizations::invite(
        &state.store,
        org.0,
        user.user_id,
        email.clone(),
        role,
        organizations::NewInvitation {
            token_hash: token.hash,
            expires_at,
        },
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Organization::TYPE, done.last_cursor()).await;
    let member = match projected {
        true => rm::member(&state.pool, org, email.as_str()).await?,
        false => None,
    };
    let member = match member {
        Some(m) => Written::Read(m),
        // Read model behind (NATS away): answer from what the command decided.
        None => Written::Pending(PendingMember {
            user_id: None,
            email,
            name: None,
            role,
            status: "invited",
            joined_at: None,
            invited_at: Some(recorded_at(&done)?),
        }),
    };
    let accept_url = state.api_url(&format!("/api/v1/invitations/{}/accept", token.token));
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            member,
            invitation_token: token.token,
            accept_url,
            expires_at,
        }),
    ))
}

/// The member a path segment names (user id or email), from the write model.
async fn member_id(state: &AppState, org: OrgId, member_ref: &str) -> Result<MemberRef, ApiError> {
    let org_state = organizations::load(&state.store, org.0)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::OrgNotFound))?;
    if let Ok(id) = member_ref.parse::<Uuid>() {
        if org_state.members.contains_key(&id) {
            return Ok(MemberRef::User(id));
        }
    }
    let lowered = member_ref.trim().to_lowercase();
    if let Some((id, _)) = org_state
        .members
        .iter()
        .find(|(_, m)| m.email.as_str() == lowered)
    {
        return Ok(MemberRef::User(*id));
    }
    if org_state.invitations.contains_key(&lowered) {
        if let Ok(email) = Email::parse(&lowered) {
            return Ok(MemberRef::Invitation(email));
        }
    }
    Err(ApiError::not_found(ErrorCode::MemberNotFound))
}

enum MemberRef {
    User(Uuid),
    Invitation(Email),
}

#[utoipa::path(operation_id = "orgs_change_role", patch, path = "/api/v1/orgs/{org}/members/{member}", tag = "members", params(MemberPath), request_body = ChangeRoleBody, security(("bearer" = [])),
    responses((status = 200, description = "Role changed", body = Written<MemberRow, PendingRole>), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Last owner", body = Problem, content_type = "application/problem+json")))]
pub async fn change_role(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(MemberPath { member, .. }): Path<MemberPath>,
    JsonBody(body): JsonBody<ChangeRoleBody>,
) -> Result<Json<Written<MemberRow, PendingRole>>, ApiError> {
    let role = body.role;
    let MemberRef::User(target) = member_id(&state, org, &member).await? else {
        return Err(ApiError::new(
            ErrorCode::InvitationPending,
            "this person has not accepted the invitation yet: invite them again with the new role",
        ));
    };
    let done = organizations::change_role(
        &state.store,
        org.0,
        user.user_id,
        target,
        role,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Organization::TYPE, done.last_cursor()).await;
    let member = match projected {
        true => rm::member(&state.pool, org, &target.to_string()).await?,
        false => None,
    };
    Ok(Json(match member {
        Some(m) => Written::Read(m),
        None => Written::Pending(PendingRole {
            user_id: target,
            role,
            status: "active",
        }),
    }))
}

#[utoipa::path(operation_id = "orgs_remove_member", delete, path = "/api/v1/orgs/{org}/members/{member}", tag = "members", params(MemberPath), security(("bearer" = [])),
    responses((status = 204, description = "Removed (or invitation revoked)"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Last owner", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_member(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(MemberPath { member, .. }): Path<MemberPath>,
) -> Result<StatusCode, ApiError> {
    let metadata = ctx.metadata(user.actor());
    let done = match member_id(&state, org, &member).await? {
        MemberRef::User(target) => {
            organizations::remove_member(&state.store, org.0, user.user_id, target, &metadata)
                .await?
        }
        MemberRef::Invitation(email) => {
            organizations::revoke_invitation(&state.store, org.0, user.user_id, email, &metadata)
                .await?
        }
    };
    state.settle(Organization::TYPE, done.last_cursor()).await;
    Ok(StatusCode::NO_CONTENT)
}
