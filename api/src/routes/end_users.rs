//! `/api/v1/orgs/{org}/users`: the end users of an org's servers, as people: end users merged
//! by identity stitching are one (`GET .../users/{id}` of a merged-away end user answers with the
//! survivor), and `POST .../users/{id}/unmerge` undoes a merge.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{JsonBody, Membership, NoQuery, Path, RequestContext};
use crate::paging::{Page, PageQuery, Paged};
use crate::params::{EndUserPath, OrgPath};
use crate::routes::tickets::TicketItem;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use commands::services::end_users;
use domain::end_user::{EndUser, TrackingId};
use domain::values::OrgId;
use domain::Aggregate;
use projections::models::people::{self, Person};
use projections::models::tickets::{self as rm_tickets, TicketFilter};
use projections::models::usage::{self as rm, SessionFilter, SessionRow};
use projections::models::walkthrough_progress::{self, ProgressRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A person (an end user, or several merged into one) with their recent sessions, tickets and
/// walkthroughs, all of their end users'.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndUserDetail {
    #[serde(flatten)]
    row: Person,
    /// The 20 most recent, newest first.
    recent_sessions: Vec<SessionRow>,
    /// The 50 most recent, newest first.
    tickets: Vec<TicketItem>,
    walkthroughs: Vec<ProgressRow>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: only people who signed in with one of the org's identity providers; `false`:
    /// only anonymous ones.
    #[serde(default)]
    identified: Option<bool>,
}

#[utoipa::path(operation_id = "end_users_list", get, path = "/api/v1/orgs/{org}/users", tag = "end users",
    params(OrgPath, ListQuery, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "End users (people: merged end users are one), most recently seen first", body = Page<Person>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged {
        filter: q,
        limit,
        before,
    }: Paged<ListQuery>,
) -> Result<Json<Page<Person>>, ApiError> {
    let rows = people::list(&state.pool, org, q.identified, before, limit.rows()).await?;
    Ok(Json(Page::of(rows, limit, |r| {
        (r.last_seen_at, r.id.to_string())
    })))
}

/// The person with their sessions, tickets and walkthroughs.
async fn detail(state: &AppState, org: OrgId, row: Person) -> Result<EndUserDetail, ApiError> {
    let id = row.id;
    let sessions = rm::sessions(
        &state.pool,
        org,
        &SessionFilter {
            end_user_id: Some(id),
            ..Default::default()
        },
        None,
        20,
    )
    .await?;
    let tickets = rm_tickets::list(
        &state.pool,
        org,
        &TicketFilter {
            end_user_id: Some(id),
            ..Default::default()
        },
        None,
        50,
    )
    .await?;
    let tickets = tickets.into_iter().map(TicketItem::from).collect();
    // The survivor's runs: a merge carried the merged end users' further runs over to it.
    let walkthroughs = walkthrough_progress::of_end_user(&state.pool, org, id).await?;
    Ok(EndUserDetail {
        row,
        recent_sessions: sessions,
        tickets,
        walkthroughs,
    })
}

#[utoipa::path(operation_id = "end_users_get", get, path = "/api/v1/orgs/{org}/users/{user}", tag = "end users",
    params(EndUserPath), security(("bearer" = [])),
    responses((status = 200, description = "The person the end user belongs to (for an end user merged into another, the survivor: its `id` differs from the one asked and `merged` lists the one asked), with recent sessions, tickets and walkthroughs", body = EndUserDetail), (status = 404, description = "No such end user in this org", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(EndUserPath { user, .. }): Path<EndUserPath>,
) -> Result<Json<EndUserDetail>, ApiError> {
    let row = end_user(&state, org, &user)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::EndUserNotFound))?;
    Ok(Json(detail(&state, org, row).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnmergeBody {
    /// The end user to split off again: one of the person's `merged` ids.
    merged: Uuid,
}

/// A person after an unmerge: the one the path named, and the one split off again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UnmergeResult {
    person: Uuid,
    restored: Uuid,
}

#[utoipa::path(operation_id = "end_users_unmerge", post, path = "/api/v1/orgs/{org}/users/{user}/unmerge", tag = "end users",
    params(EndUserPath), request_body = UnmergeBody, security(("bearer" = [])),
    responses((status = 200, description = "The merge is undone (an `EndUserUnmerged` event): `restored` is a person of its own again", body = UnmergeResult), (status = 403, description = "Only owners and admins undo merges", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such end user in this org", body = Problem, content_type = "application/problem+json"), (status = 409, description = "`merged` is not merged into this person (not_merged), or was merged into an end user merged again since (merge_later)", body = Problem, content_type = "application/problem+json")))]
pub async fn unmerge(
    State(state): State<AppState>,
    Membership { user, org, role }: Membership,
    ctx: RequestContext,
    Path(EndUserPath { user: named, .. }): Path<EndUserPath>,
    JsonBody(body): JsonBody<UnmergeBody>,
) -> Result<Json<UnmergeResult>, ApiError> {
    if !role.can_manage() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only owners and admins undo merges",
        ));
    }
    let end_user_id = end_user_id(&state, org, &named)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::EndUserNotFound))?;
    let done = end_users::unmerge(
        &state.store,
        &ctx.metadata(user.actor()),
        org,
        end_user_id,
        body.merged,
    )
    .await?;
    state.settle(EndUser::TYPE, done.cursor).await;
    Ok(Json(UnmergeResult {
        person: done.person,
        restored: body.merged,
    }))
}

/// An end user named in a path or a filter: by id, or by a tracking id the org's servers have
/// seen (the support team knows those). Tracking ids are often UUIDs themselves, so an id that
/// names no end user of the org is tried as a tracking id too.
async fn end_user_id(state: &AppState, org: OrgId, raw: &str) -> Result<Option<Uuid>, ApiError> {
    let raw = raw.trim();
    if let Ok(id) = raw.parse::<Uuid>() {
        if people::person_of_end_user(&state.pool, org, id)
            .await?
            .is_some()
        {
            return Ok(Some(id));
        }
    }
    let Some(tracking_id) = TrackingId::parse(raw) else {
        return Ok(None);
    };
    Ok(end_users::find(&state.pool, org, &tracking_id).await?)
}

/// The person an end user named in a path belongs to (the survivor, after a merge).
async fn end_user(state: &AppState, org: OrgId, raw: &str) -> Result<Option<Person>, ApiError> {
    match end_user_id(state, org, raw).await? {
        Some(id) => Ok(people::get(&state.pool, org, id).await?),
        None => Ok(None),
    }
}

/// An `end_user` filter of a list (an end user id or tracking id): `Some(None)` when absent,
/// `Some(Some(id))` for an end user of the org, `None` when it names nobody (the list is then
/// empty).
pub async fn end_user_filter(
    state: &AppState,
    org: OrgId,
    raw: Option<&str>,
) -> Result<Option<Option<Uuid>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Some(None));
    };
    Ok(end_user(state, org, raw)
        .await?
        .map(|person| Some(person.id)))
}
