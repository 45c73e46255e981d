//! `/api/v1/invitations/{token}/accept`: a signed-in account accepts an invitation with its
//! token. (A new account accepts one by signing up with `invitation_token`.)

use crate::auth::tokens;
use crate::error::{ApiError, Problem};
use crate::extract::{AuthUser, NoQuery, Path, RequestContext};
use crate::params::InvitationPath;
use crate::routes::orgs::PendingMember;
use crate::routes::{recorded_at, Written};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use commands::errors::account_gone;
use commands::services::{accounts, organizations};
use domain::organization::{Organization, OrganizationEvent};
use domain::values::OrgId;
use domain::Aggregate;
use projections::models::organizations::{self as rm, MemberRow};
use serde::Serialize;
use uuid::Uuid;

/// The membership an accepted invitation gave: the org, and the caller's member row in it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Joined {
    /// The org joined.
    org_id: Uuid,
    #[serde(flatten)]
    member: Written<MemberRow, PendingMember>,
}

#[utoipa::path(operation_id = "invitations_accept", post, path = "/api/v1/invitations/{token}/accept", tag = "members", params(InvitationPath), security(("bearer" = [])),
    responses((status = 200, description = "Accepted: the caller is now a member with the invited role", body = Joined),
        (status = 403, description = "The invitation is for another email address (`invitation_email_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No pending invitation has this token: never issued, used, revoked or replaced (`invitation_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The invitation has expired (`invitation_expired`), or the caller is already a member", body = Problem, content_type = "application/problem+json")))]
pub async fn accept(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(InvitationPath { token }): Path<InvitationPath>,
    _: NoQuery,
) -> Result<Json<Joined>, ApiError> {
    let profile = accounts::load_user(&state.store, user.user_id)
        .await?
        .ok_or_else(account_gone)?;
    let email = profile
        .email
        .ok_or_else(|| ApiError::internal("user without email"))?;
    let hash = tokens::hash_invitation_token(&token);
    let (org_id, done) = organizations::accept_invitation(
        &state.store,
        &hash,
        user.user_id,
        email.clone(),
        Utc::now(),
        &ctx.metadata(user.actor()),
    )
    .await?;
    let projected = state.settle(Organization::TYPE, done.last_cursor()).await;
    let row = match projected {
        true => rm::member(&state.pool, OrgId(org_id), &user.user_id.to_string()).await?,
        false => None,
    };
    let member = match row {
        Some(m) => Written::Read(m),
        None => {
            let Some(OrganizationEvent::InvitationAccepted { role, .. }) = done.events.first()
            else {
                return Err(ApiError::internal(
                    "an acceptance wrote no InvitationAccepted",
                ));
            };
            Written::Pending(PendingMember {
                user_id: Some(user.user_id),
                email,
                name: profile.name.map(|n| n.as_str().to_owned()),
                role: *role,
                status: "active",
                joined_at: Some(recorded_at(&done)?),
                invited_at: None,
            })
        }
    };
    Ok(Json(Joined { org_id, member }))
}
