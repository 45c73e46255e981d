//! `/api/v1/orgs/{org}/tickets`: support tickets opened through `get_support`, worked by the
//! org's members.

use crate::error::{from_execute, ApiError};
use crate::extract::{present_or_null, AuthUser, JsonBody, NoQuery, QueryParams, RequestContext};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::end_users::end_user_filter;
use crate::routes::orgs::resolve;
use crate::routes::servers::server_id_filter;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use commands::services::tickets::{self, AssignError};
use domain::ticket::{reference, reference_range, Ticket, TicketError, TicketEvent, TicketStatus};
use domain::values::OrgId;
use domain::Aggregate;
use eventstore::{ExecuteError, Executed};
use projections::models::tickets::{self as rm, TicketFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    end_user: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// new, in_progress, awaiting_customer, resolved or closed
    status: String,
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

fn ticket_error(e: ExecuteError<TicketError>) -> ApiError {
    from_execute(e, |d| {
        let detail = d.to_string();
        match d {
            TicketError::NotFound => ApiError::not_found("ticket"),
            TicketError::IllegalTransition { .. } => ApiError::Conflict {
                code: "illegal_transition",
                detail,
            },
            TicketError::AlreadyOpened => ApiError::Conflict {
                code: "conflict",
                detail,
            },
            TicketError::Length { field, .. } => ApiError::field(field, detail),
        }
    })
}

fn parse_status(raw: &str) -> Result<TicketStatus, ApiError> {
    TicketStatus::parse(raw).ok_or_else(|| {
        ApiError::field(
            "status",
            "must be one of new, in_progress, awaiting_customer, resolved, closed",
        )
    })
}

/// A ticket named in a path: by its id, or by the `TCK-…` reference its end user was given.
async fn ticket_id(state: &AppState, org: OrgId, raw: &str) -> Result<Uuid, ApiError> {
    // Pasted references often bring a space or a tab along.
    let raw = raw.trim();
    if let Ok(id) = raw.parse() {
        return Ok(id);
    }
    let range = reference_range(raw).ok_or_else(|| ApiError::not_found("ticket"))?;
    match rm::ids_in_range(&state.pool, org, range).await?.as_slice() {
        [id] => Ok(*id),
        [] => Err(ApiError::not_found("ticket")),
        several => Err(ApiError::Conflict {
            code: "ambiguous_reference",
            detail: format!(
                "the reference {raw} names more than one ticket ({}); use one of their ids",
                several
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[utoipa::path(operation_id = "tickets_list", get, path = "/api/v1/orgs/{org}/tickets", tag = "tickets",
    params(("org" = String, Path, description = "Org id or slug"), ("status" = Option<String>, Query, description = "Only tickets in this status"), ("server" = Option<String>, Query, description = "Server id or slug"), ("end_user" = Option<String>, Query, description = "End user id or tracking id"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "Tickets, newest first, and the next cursor"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let limit = paging::limit(q.limit)?;
    let before = paging::decode(q.cursor.as_deref(), |id| id.parse::<Uuid>().ok())?;
    if let Some(status) = &q.status {
        parse_status(status)?;
    }
    let Some(server_id) = server_id_filter(&state, org, q.server.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let Some(end_user_id) = end_user_filter(&state, org, q.end_user.as_deref()).await? else {
        return Ok(paging::empty());
    };
    let filter = TicketFilter {
        status: q.status,
        server_id,
        end_user_id,
    };
    let rows = rm::list(&state.pool, org, &filter, before, limit.rows()).await?;
    let items = rows.into_iter().map(TicketItem::from).collect();
    Ok(paging::page(items, limit, |r: &TicketItem| {
        (r.row.created_at, r.row.id.to_string())
    }))
}

/// A ticket in a list (here and in an end user's detail): its row and the reference its end
/// user was given and quotes back.
#[derive(Serialize)]
pub(crate) struct TicketItem {
    #[serde(flatten)]
    row: rm::TicketRow,
    reference: String,
}

impl From<rm::TicketRow> for TicketItem {
    fn from(row: rm::TicketRow) -> Self {
        let reference = reference(row.id);
        Self { row, reference }
    }
}

async fn detail(state: &AppState, org: OrgId, id: Uuid) -> Result<Value, ApiError> {
    let row = rm::get(&state.pool, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    let activity = rm::activity(&state.pool, org, id).await?;
    let allowed: Vec<&str> = TicketStatus::parse(&row.status)
        .map(|s| s.allowed_next().iter().map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let mut value = json!(row);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("reference".to_owned(), json!(reference(id)));
        obj.insert("allowed_transitions".to_owned(), json!(allowed));
        obj.insert("activity".to_owned(), json!(activity));
    }
    Ok(value)
}

/// Answers a write with the ticket as the read model has it once caught up; otherwise with
/// what the write model knows.
async fn written(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    done: Executed<TicketEvent>,
) -> Result<Json<Value>, ApiError> {
    if state.settle(Ticket::TYPE, done.last_cursor()).await {
        if let Ok(value) = detail(state, org, id).await {
            return Ok(Json(value));
        }
    }
    let (ticket, _) = state.store.load::<Ticket>(&id.to_string()).await?;
    Ok(Json(json!({
        "id": id,
        "reference": reference(id),
        "status": ticket.status.map(|s| s.as_str()),
        "assignee_id": ticket.assignee,
    })))
}

#[utoipa::path(operation_id = "tickets_get", get, path = "/api/v1/orgs/{org}/tickets/{ticket}", tag = "tickets",
    params(("org" = String, Path, description = "Org id or slug"), ("ticket" = String, Path, description = "Ticket id, or its TCK- reference")), security(("bearer" = [])),
    responses((status = 200, description = "The ticket with its activity timeline"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such ticket in this org", body = Problem), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, ticket_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = ticket_id(&state, org, &ticket_ref).await?;
    Ok(Json(detail(&state, org, id).await?))
}

#[utoipa::path(operation_id = "tickets_change_status", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/status", tag = "tickets",
    params(("org" = String, Path, description = "Org id or slug"), ("ticket" = String, Path, description = "Ticket id, or its TCK- reference")), request_body = StatusBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket after the change"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such ticket in this org", body = Problem), (status = 409, description = "Illegal transition, the detail naming the allowed ones; or a reference naming more than one ticket", body = Problem), (status = 422, description = "Unknown status", body = Problem)))]
pub async fn change_status(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, ticket_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = ticket_id(&state, org, &ticket_ref).await?;
    let to = parse_status(&body.status)?;
    let done = tickets::change_status(
        &state.store,
        org.0,
        id,
        to,
        user.actor(),
        &ctx.metadata(user.actor()),
    )
    .await
    .map_err(ticket_error)?;
    written(&state, org, id, done).await
}

#[utoipa::path(operation_id = "tickets_comment", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/comments", tag = "tickets",
    params(("org" = String, Path, description = "Org id or slug"), ("ticket" = String, Path, description = "Ticket id, or its TCK- reference")), request_body = CommentBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket with the comment in its timeline"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such ticket in this org", body = Problem), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem), (status = 422, description = "Empty or oversize body", body = Problem)))]
pub async fn comment(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, ticket_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<CommentBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = ticket_id(&state, org, &ticket_ref).await?;
    let done = tickets::comment(
        &state.store,
        org.0,
        id,
        body.body,
        user.actor(),
        &ctx.metadata(user.actor()),
    )
    .await
    .map_err(ticket_error)?;
    written(&state, org, id, done).await
}

#[utoipa::path(operation_id = "tickets_assign", post, path = "/api/v1/orgs/{org}/tickets/{ticket}/assign", tag = "tickets",
    params(("org" = String, Path, description = "Org id or slug"), ("ticket" = String, Path, description = "Ticket id, or its TCK- reference")), request_body = AssignBody, security(("bearer" = [])),
    responses((status = 200, description = "The ticket with its new assignee"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such ticket in this org", body = Problem), (status = 409, description = "The reference names more than one ticket (ambiguous_reference)", body = Problem), (status = 422, description = "Not a member of the org", body = Problem)))]
pub async fn assign(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, ticket_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = ticket_id(&state, org, &ticket_ref).await?;
    let metadata = ctx.metadata(user.actor());
    let done = match &body.member {
        Some(member) => tickets::assign(&state.store, org.0, id, member, user.actor(), &metadata)
            .await
            .map_err(|e| match e {
                AssignError::NotAMember(_) => ApiError::field("member", e),
                AssignError::Execute(e) => ticket_error(e),
            })?,
        None => tickets::unassign(&state.store, org.0, id, user.actor(), &metadata)
            .await
            .map_err(ticket_error)?,
    };
    written(&state, org, id, done).await
}
