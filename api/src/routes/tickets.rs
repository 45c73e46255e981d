//! `/api/v1/orgs/{org}/tickets`: support tickets opened through `get_support`, worked by the
//! org's members.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{present_or_null, JsonBody, Membership, NoQuery, Path, RequestContext};
use crate::filters::{one_of, optional_one_of};
use crate::paging::{Page, PageQuery, Paged};
use crate::params::{OrgPath, TicketPath};
use crate::routes::end_users::end_user_filter;
use crate::routes::servers::server_id_filter;
use crate::routes::Written;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use commands::services::tickets;
use domain::ticket::{reference, reference_range, Ticket, TicketEvent, TicketStatus};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::Executed;
use projections::models::tickets::{self as rm, ActivityRow, TicketFilter, TicketRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tickets in this status.
    #[serde(default, deserialize_with = "optional_one_of")]
    #[param(value_type = Option<crate::filters::TicketStatusSchema>, inline)]
    status: Option<TicketStatus>,
    /// Server id or slug.
    #[serde(default)]
    server: Option<String>,
    /// End user id or tracking id.
    #[serde(default)]
    end_user: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    #[serde(deserialize_with = "one_of")]
    #[schema(value_type = crate::filters::TicketStatusSchema, inline)]
    status: TicketStatus,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    body: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// An org member's user id or email; `null` takes the ticket off whoever has it.
    #[serde(deserialize_with = "present_or_null")]
    member: Option<String>,
}

/// A ticket named in a path: by its id, or by the `TCK-…` reference its end user was given.
async fn ticket_id(state: &AppState, org: OrgId, raw: &str) -> Result<Uuid, ApiError> {
    // Pasted references often bring a space or a tab along.
    let raw = raw.trim();
    if let Ok(id) = raw.parse() {
        return Ok(id);
    }
    let range =
        reference_range(raw).ok_or_else(|| ApiError::not_found(ErrorCode::TicketNotFound))?;
    match rm::ids_in_range(&state.pool, org, range).await?.as_slice() {
        [id] => Ok(*id),
        [] => Err(ApiError::not_found(ErrorCode::TicketNotFound)),
        several => Err(ApiError::new(
            ErrorCode::AmbiguousReference,
            format!(
                "the reference {raw} names more than one ticket ({}); use one of their ids",
                several
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[utoipa::path(operation_id = "tickets_list", get, path = "/api/v1/orgs/{org}/tickets", tag = "tickets",
    params(OrgPath, ListQuery, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Tickets, newest first, and the next cursor", body = Page<TicketItem>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged {
        filter: q,
        limit,
        before,
    }: Paged<ListQuery>,
) -> Result<Json<Page<TicketItem>>, ApiError> {
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(Json(Page::empty()));
    };
    let filter = TicketFilter {
        status: q.status.map(|s| s.as_str().to_owned()),
        server_id,
        end_user_id,
    };
    let rows = rm::list(&state.pool, org, &filter, before, limit.rows()).await?;
    let items = rows.into_iter().map(TicketItem::from).collect();
    Ok(Json(Page::of(items, limit, |r: &TicketItem| {
        (r.row.created_at, r.row.id.to_string())
    })))
}

/// A ticket in a list (here and in an end user's detail): its row and the reference its end
/// user was given and quotes back.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TicketItem {
    #[serde(flatten)]
    row: TicketRow,
    /// `TCK-` and the id's first 8 hex digits: what the end user was given.
    reference: String,
}

impl From<TicketRow> for TicketItem {
    fn from(row: TicketRow) -> Self {
        let reference = reference(row.id);
        Self { row, reference }
    }
}

/// A ticket with where it can go next and what happened to it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TicketDetail {
    #[serde(flatten)]
    row: TicketRow,
    /// `TCK-` and the id's first 8 hex digits: what the end user was given.
    reference: String,
    /// The statuses the ticket may move to from its current one.
    #[schema(value_type = Vec<crate::filters::TicketStatusSchema>, inline)]
    allowed_transitions: Vec<&'static str>,
    /// Oldest first.
    activity: Vec<ActivityRow>,
}

/// A ticket written while the read models lag: what the write model knows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingTicket {
    id: Uuid,
    reference: String,
    #[schema(value_type = Option<crate::filters::TicketStatusSchema>, inline)]
    status: Option<&'static str>,
    assignee_id: Option<Uuid>,
}

async fn detail(state: &AppState, org: OrgId, id: Uuid) -> Result<TicketDetail, ApiError> {
    let row = rm::get(&state.pool, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::TicketNotFound))?;
    let activity = rm::activity(&state.pool, org, id).await?;
    let allowed_transitions = TicketStatus::parse(&row.status)
        .map(|s| s.allowed_next().iter().map(|n| n.as_str()).collect())
        .unwrap_or_default();
    Ok(TicketDetail {
        row,
        reference: reference(id),
        allowed_transitions,
        activity,
    })
}

/// Answers a write with the ticket as the read model has it once caught up; otherwise with
/// what the write model knows.
async fn written(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    done: Executed<TicketEvent>,
) -> Result<Json<Written<TicketDetail, PendingTicket>>, ApiError> {
    if state.settle(Ticket::TYPE, done.last_cursor()).await {
        if let Ok(detail) = detail(state, org, id).await {
            return Ok(Json(Written::Read(detail)));
        }
    }
    let (ticket, _) = state.store.load::<Ticket>(&id.to_string()).await?;
    Ok(Json(Written::Pending(PendingTicket {
        id,
        reference: reference(id),
        status: ticket.status.map(|s| s.as_str()),
        assignee_id: ticket.assignee,
    })))
}

#[utoipa::path(operation_id = "tickets_get", get, path = "/api/v1/orgs/{org}/tickets/{ticket}", tag = "tickets",
    params(TicketPath), security(("bearer" = [])),
    responses((status = 200, description = "The ticket with its activity timeline", body = TicketDetail), (status = 404, description = "No such ticket in this org", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(TicketPath { ticket, .. }): Path<TicketPath>,
) -> Result<Json<TicketDetail>, ApiError> {
    let id = ticket_id(&state, org, &ticket).await?;
    Ok(Json(detail(&state, org, id).await?))
}

#[utoipa::path(operation_id = "tickets_change_status", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/status", tag = "tickets",
    params(TicketPath), request_body = StatusBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket after the change", body = Written<TicketDetail, PendingTicket>), (status = 404, description = "No such ticket in this org", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Illegal transition, the detail naming the allowed ones; or a reference naming more than one ticket", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Unknown status", body = Problem, content_type = "application/problem+json")))]
pub async fn change_status(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(TicketPath { ticket, .. }): Path<TicketPath>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<Json<Written<TicketDetail, PendingTicket>>, ApiError> {
    let id = ticket_id(&state, org, &ticket).await?;
    let done = tickets::change_status(
        &state.store,
        org.0,
        id,
        body.status,
        user.actor(),
        &ctx.metadata(user.actor()),
    )
    .await?;
    written(&state, org, id, done).await
}

#[utoipa::path(operation_id = "tickets_comment", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/comments", tag = "tickets",
    params(TicketPath), request_body = CommentBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket with the comment in its timeline", body = Written<TicketDetail, PendingTicket>), (status = 404, description = "No such ticket in this org", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Empty or oversize body", body = Problem, content_type = "application/problem+json")))]
pub async fn comment(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(TicketPath { ticket, .. }): Path<TicketPath>,
    JsonBody(body): JsonBody<CommentBody>,
) -> Result<Json<Written<TicketDetail, PendingTicket>>, ApiError> {
    let id = ticket_id(&state, org, &ticket).await?;
    let done = tickets::comment(
        &state.store,
        org.0,
        id,
        body.body,
        user.actor(),
        &ctx.metadata(user.actor()),
    )
    .await?;
    written(&state, org, id, done).await
}

#[utoipa::path(operation_id = "tickets_assign", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/assign", tag = "tickets",
    params(TicketPath), request_body = AssignBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket with its new assignee", body = Written<TicketDetail, PendingTicket>), (status = 404, description = "No such ticket in this org", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Not a member of the org", body = Problem, content_type = "application/problem+json")))]
pub async fn assign(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(TicketPath { ticket, .. }): Path<TicketPath>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Written<TicketDetail, PendingTicket>>, ApiError> {
    let id = ticket_id(&state, org, &ticket).await?;
    let metadata = ctx.metadata(user.actor());
    let done = match &body.member {
        Some(member) => {
            tickets::assign(&state.store, org.0, id, member, user.actor(), &metadata).await?
        }
        None => tickets::unassign(&state.store, org.0, id, user.actor(), &metadata).await?,
    };
    written(&state, org, id, done).await
}
