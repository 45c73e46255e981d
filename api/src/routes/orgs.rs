//! `/api/v1/orgs` and `/api/v1/orgs/{org}/members`.

use crate::error::ApiError;
use crate::extract::{AuthUser, JsonBody, NoQuery, RequestContext};
use crate::openapi::Problem;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use commands::services::{accounts, organizations};
use domain::organization::{Organization, OrganizationEvent};
use domain::values::{Email, Name, OrgId, Role, Slug};
use domain::Aggregate;
use projections::models::organizations as rm;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// Resolves `{org}` (id or slug) for the caller: the org and their role. Not a member and no
/// such org look the same: 404.
pub async fn resolve(
    state: &AppState,
    user: &AuthUser,
    org_ref: &str,
) -> Result<(OrgId, Role), ApiError> {
    if !crate::error::plausible_ref(org_ref) {
        return Err(ApiError::not_found("organization"));
    }
    let (org, role) = rm::membership(&state.pool, user.user_id, org_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let role = Role::parse(&role).map_err(ApiError::internal)?;
    tracing::Span::current().record("org", tracing::field::display(org));
    Ok((org, role))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgBody {
    name: String,
    slug: String,
}

#[utoipa::path(operation_id = "orgs_create", post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrgBody, security(("bearer" = [])),
    responses((status = 201, description = "Org created; caller is owner"), (status = 409, description = "Slug taken", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
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
        .ok_or(ApiError::Unauthorized {
            code: "invalid_token",
            detail: "the account no longer exists".to_owned(),
        })?;
    let owner_email = profile
        .email
        .ok_or_else(|| ApiError::internal("user without email"))?;
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
        Json(json!({ "id": org_id, "name": name, "slug": slug, "role": "owner" })),
    ))
}

#[utoipa::path(operation_id = "orgs_list", get, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "Orgs of the caller")))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
) -> Result<impl IntoResponse, ApiError> {
    let items = rm::orgs_of(&state.pool, user.user_id).await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(operation_id = "orgs_get", get, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "Org id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "The org"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path(org_ref): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = rm::org(&state.pool, org, user.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(Json(row))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberBody {
    email: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "member".to_owned()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleBody {
    role: String,
}

#[utoipa::path(operation_id = "orgs_members", get, path = "/api/v1/orgs/{org}/members", tag = "members", params(("org" = String, Path, description = "Org id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "Members and invitations"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn members(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path(org_ref): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let items = rm::members(&state.pool, org).await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(operation_id = "orgs_add_member", post, path = "/api/v1/orgs/{org}/members", tag = "members", params(("org" = String, Path, description = "Org id or slug")), request_body = AddMemberBody, security(("bearer" = [])),
    responses((status = 201, description = "Added, or invited when the email has no account"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 409, description = "Already a member or invited", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn add_member(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(org_ref): Path<String>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let email = Email::parse(&body.email).map_err(|e| ApiError::value("email", e))?;
    let role = Role::parse(&body.role).map_err(|e| ApiError::value("role", e))?;
    let done = organizations::add_member(
        &state.store,
        org.0,
        user.user_id,
        email.clone(),
        role,
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Organization::TYPE, done.last_cursor()).await;
    let member = match projected {
        true => rm::member(&state.pool, org, email.as_str()).await?,
        false => None,
    };
    let body = match member {
        Some(m) => json!(m),
        None => {
            // Read model behind (NATS away): answer from what the command decided.
            let (user_id, status) = match done.events.first() {
                Some(OrganizationEvent::MemberAdded { user_id, .. }) => (Some(*user_id), "active"),
                _ => (None, "invited"),
            };
            json!({ "user_id": user_id, "email": email, "name": null, "role": role.as_str(), "status": status, "joined_at": null })
        }
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The member a path segment names (user id or email), from the write model.
async fn member_id(state: &AppState, org: OrgId, member_ref: &str) -> Result<MemberRef, ApiError> {
    let org_state = organizations::load(&state.store, org.0)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
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
    Err(ApiError::not_found("member"))
}

enum MemberRef {
    User(Uuid),
    Invitation(Email),
}

#[utoipa::path(operation_id = "orgs_change_role", patch, path = "/api/v1/orgs/{org}/members/{member}", tag = "members", params(("org" = String, Path, description = "Org id or slug"), ("member" = String, Path, description = "Member user id or email")), request_body = ChangeRoleBody, security(("bearer" = [])),
    responses((status = 200, description = "Role changed"), (status = 403, description = "Not allowed", body = Problem), (status = 409, description = "Last owner", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn change_role(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, member_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<ChangeRoleBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let role = Role::parse(&body.role).map_err(|e| ApiError::value("role", e))?;
    let MemberRef::User(target) = member_id(&state, org, &member_ref).await? else {
        return Err(ApiError::Conflict {
            code: "invitation_pending",
            detail: "this person has not signed up yet: revoke and re-invite to change the role"
                .to_owned(),
        });
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
    Ok(Json(member.map(|m| json!(m)).unwrap_or_else(
        || json!({ "user_id": target, "role": role.as_str(), "status": "active" }),
    )))
}

#[utoipa::path(operation_id = "orgs_remove_member", delete, path = "/api/v1/orgs/{org}/members/{member}", tag = "members", params(("org" = String, Path, description = "Org id or slug"), ("member" = String, Path, description = "Member user id or email")), security(("bearer" = [])),
    responses((status = 204, description = "Removed (or invitation revoked)"), (status = 403, description = "Not allowed", body = Problem), (status = 409, description = "Last owner", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, member_ref)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let metadata = ctx.metadata(user.actor());
    let done = match member_id(&state, org, &member_ref).await? {
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
