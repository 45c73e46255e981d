//! `/api/v1/orgs/{org}/walkthroughs`: authoring, publishing and versions (analytics and sankey
//! are in `walkthrough_analytics`); `/api/v1/orgs/{org}/servers/{server}/walkthroughs`: which
//! walkthroughs a server offers.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{present_or_null, JsonBody, Membership, NoQuery, Path, RequestContext};
use crate::filters::optional_one_of;
use crate::paging::{Items, Page, PageQuery, Paged};
use crate::params::{AssignmentPath, OrgPath, ServerPath, StepPath, WalkthroughPath};
use crate::routes::servers;
use crate::routes::{recorded_at, Written};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::services::walkthroughs as service;
use domain::values::OrgId;
use domain::walkthrough::{
    parse_details, Assignment, Step, StepContent, StepEdit, Walkthrough, WalkthroughCommand,
    WalkthroughEvent, WalkthroughStatus,
};
use domain::Aggregate;
use eventstore::{Executed, Recorded};
use projections::models::walkthroughs::{
    self as rm, AssignmentRow, ServerWalkthroughRow, WalkthroughRow,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[serde(default)]
    title: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    title: String,
    /// Markdown shown to the end user.
    content: String,
    #[serde(default)]
    agent_instructions: Option<String>,
    #[serde(default)]
    operations: Vec<String>,
    /// Insert after this step; `null` makes it the first. Absent: last.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    after_step_id: Option<Option<Uuid>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditStepBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    agent_instructions: Option<Option<String>>,
    #[serde(default)]
    operations: Option<Vec<String>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The step to follow; `null` makes it the first. Required: a body that forgot it must not
    /// move the step to the top.
    #[serde(deserialize_with = "present_or_null")]
    #[schema(value_type = Option<Uuid>, required = true)]
    after_step_id: Option<Uuid>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    walkthrough_id: String,
    #[serde(default)]
    display_order: Option<i32>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentBody {
    #[serde(default)]
    display_order: Option<i32>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only walkthroughs in this status (default: all but archived).
    #[serde(default, deserialize_with = "optional_one_of")]
    #[param(value_type = Option<crate::filters::WalkthroughStatusSchema>, inline)]
    status: Option<WalkthroughStatus>,
}

/// A step as authors see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepView {
    id: Uuid,
    /// 1 for the first step.
    position: usize,
    title: String,
    /// Markdown shown to the end user.
    content: String,
    /// What the agent should know or say; never shown to the end user as such.
    agent_instructions: Option<String>,
    operations: Vec<String>,
}

/// A walkthrough with its draft steps and the servers it is assigned to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WalkthroughDetail {
    id: Uuid,
    title: String,
    description: Option<String>,
    #[schema(value_type = crate::filters::WalkthroughStatusSchema, inline)]
    status: String,
    /// The version end users are shown; `null` before the first publish.
    published_version: Option<i64>,
    /// Whether the draft differs from the published version (or nothing is published).
    unpublished_changes: bool,
    step_count: usize,
    /// The draft, in order.
    steps: Vec<StepView>,
    servers: Vec<Written<AssignmentRow, AssignmentLink>>,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    updated_at: DateTime<Utc>,
}

/// A step just added: the step, and when it was added.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedStep {
    #[serde(flatten)]
    step: StepView,
    #[serde(with = "domain::time::rfc3339")]
    created_at: DateTime<Utc>,
}

/// An assignment as the write model knows it, while the read models lag.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AssignmentLink {
    server_id: Uuid,
    walkthrough_id: Uuid,
    display_order: i32,
    enabled: bool,
}

/// A walkthrough in a list: its fields without the step contents.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WalkthroughItem {
    #[serde(flatten)]
    row: WalkthroughRow,
    step_count: usize,
}

/// A published version, immutable.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionView {
    version: i32,
    title: String,
    description: Option<String>,
    step_count: usize,
    steps: Vec<StepView>,
    #[serde(with = "domain::time::rfc3339")]
    published_at: DateTime<Utc>,
    published_by: Option<Uuid>,
}

/// An assignment written while the read models lag.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingAssignment {
    walkthrough_id: Uuid,
    title: String,
    #[schema(value_type = crate::filters::WalkthroughStatusSchema, inline)]
    status: &'static str,
    published_version: u32,
    display_order: i32,
    enabled: bool,
    #[serde(with = "domain::time::rfc3339")]
    assigned_at: DateTime<Utc>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn walkthrough_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(ErrorCode::WalkthroughNotFound))
}

fn step_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(ErrorCode::StepNotFound))
}

fn render_step(step: &Step, position: usize) -> StepView {
    StepView {
        id: step.id,
        position: position + 1,
        title: step.content.title.clone(),
        content: step.content.content.clone(),
        agent_instructions: step.content.agent_instructions.clone(),
        operations: step.content.operations.clone(),
    }
}

fn render_steps(steps: &[Step]) -> Vec<StepView> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| render_step(s, i))
        .collect()
}

async fn detail(
    state: &AppState,
    org: OrgId,
    id: Uuid,
) -> Result<Option<WalkthroughDetail>, ApiError> {
    let Some(row) = rm::get(&state.pool, org, id).await? else {
        return Ok(None);
    };
    let servers = rm::assignments_of_walkthrough(&state.pool, org, id).await?;
    let published = match row.published_version {
        Some(v) => rm::version(&state.pool, org, id, v).await?,
        None => None,
    };
    let unpublished_changes = published.as_ref().is_none_or(|p| {
        p.steps.0 != row.steps.0 || p.title != row.title || p.description != row.description
    });
    Ok(Some(WalkthroughDetail {
        id: row.id,
        step_count: row.steps.0.len(),
        steps: render_steps(&row.steps.0),
        title: row.title,
        description: row.description,
        status: row.status,
        published_version: row.published_version.map(i64::from),
        unpublished_changes,
        servers: servers.into_iter().map(Written::Read).collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

/// The walkthrough as the write model has it, with its stream's events and their times; `None`
/// when it does not exist or is another org's.
async fn from_log(
    state: &AppState,
    org: OrgId,
    id: Uuid,
) -> Result<Option<(Walkthrough, Vec<Recorded<WalkthroughEvent>>)>, ApiError> {
    let history = state.store.history::<Walkthrough>(&id.to_string()).await?;
    let mut walkthrough = Walkthrough::default();
    for recorded in &history {
        walkthrough.apply(&recorded.event);
    }
    Ok((walkthrough.org_id == Some(org.0)).then_some((walkthrough, history)))
}

/// What the write model knows, for when the read model has not caught up (NATS away): created
/// when its first event was recorded, updated when its last change was, as the read model
/// counts them (assignments have times of their own).
fn from_write_model(
    id: Uuid,
    w: &Walkthrough,
    history: &[Recorded<WalkthroughEvent>],
) -> Result<WalkthroughDetail, ApiError> {
    let Some(first) = history.first() else {
        return Err(ApiError::not_found(ErrorCode::WalkthroughNotFound));
    };
    let last = history
        .iter()
        .rev()
        .find(|r| {
            !matches!(
                r.event,
                WalkthroughEvent::WalkthroughAssigned { .. }
                    | WalkthroughEvent::WalkthroughAssignmentChanged { .. }
                    | WalkthroughEvent::WalkthroughUnassigned { .. }
            )
        })
        .unwrap_or(first);
    Ok(WalkthroughDetail {
        id,
        title: w.title.clone(),
        description: w.description.clone(),
        status: w.status.as_str().to_owned(),
        published_version: (w.version > 0).then_some(i64::from(w.version)),
        unpublished_changes: w.version == 0
            || w.steps != w.published
            || w.title != w.published_title
            || w.description != w.published_description,
        step_count: w.steps.len(),
        steps: render_steps(&w.steps),
        servers: w
            .assignments
            .iter()
            .map(|(server_id, a)| {
                Written::Pending(AssignmentLink {
                    server_id: *server_id,
                    walkthrough_id: id,
                    display_order: a.display_order,
                    enabled: a.enabled,
                })
            })
            .collect(),
        created_at: first.recorded_at,
        updated_at: last.recorded_at,
    })
}

/// Answers a write with the walkthrough as the read model has it once caught up.
async fn written(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    done: &Executed<WalkthroughEvent>,
) -> Result<WalkthroughDetail, ApiError> {
    if state.settle(Walkthrough::TYPE, done.last_cursor()).await {
        if let Some(detail) = detail(state, org, id).await? {
            return Ok(detail);
        }
    }
    let (walkthrough, history) = from_log(state, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::WalkthroughNotFound))?;
    from_write_model(id, &walkthrough, &history)
}

/// Runs one authoring command and answers with the walkthrough.
async fn change(
    state: &AppState,
    user: &crate::extract::AuthUser,
    ctx: &RequestContext,
    org: OrgId,
    id: Uuid,
    command: impl Fn() -> WalkthroughCommand,
) -> Result<WalkthroughDetail, ApiError> {
    Ok(changed(state, user, ctx, org, id, command).await?.0)
}

/// [`change`], and when the change was recorded.
async fn changed(
    state: &AppState,
    user: &crate::extract::AuthUser,
    ctx: &RequestContext,
    org: OrgId,
    id: Uuid,
    command: impl Fn() -> WalkthroughCommand,
) -> Result<(WalkthroughDetail, DateTime<Utc>), ApiError> {
    let done = service::change(
        &state.store,
        org.0,
        id,
        user.user_id,
        &ctx.metadata(user.actor()),
        command,
    )
    .await?;
    let at = recorded_at(&done)?;
    Ok((written(state, org, id, &done).await?, at))
}

#[utoipa::path(operation_id = "walkthroughs_list", get, path = "/api/v1/orgs/{org}/walkthroughs", tag = "walkthroughs",
    params(OrgPath, ListQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "Walkthroughs, newest first", body = Page<WalkthroughItem>)))]
pub async fn list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    Paged {
        filter: q,
        limit,
        before,
    }: Paged<ListQuery>,
) -> Result<Json<Page<WalkthroughItem>>, ApiError> {
    let status = q.status.map(|s| s.as_str());
    let rows = rm::list(&state.pool, org, status, before, limit.rows()).await?;
    let items = rows
        .into_iter()
        .map(|row| WalkthroughItem {
            step_count: row.steps.0.len(),
            row,
        })
        .collect();
    Ok(Json(Page::of(items, limit, |i| {
        (i.row.created_at, i.row.id.to_string())
    })))
}

#[utoipa::path(operation_id = "walkthroughs_create", post, path = "/api/v1/orgs/{org}/walkthroughs", tag = "walkthroughs", params(OrgPath), request_body = CreateBody, security(("bearer" = [])),
    responses((status = 201, description = "Created, as a draft without steps", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (title, description) = parse_details(&body.title, body.description.as_deref())?;
    let id = Uuid::new_v4();
    let done = service::create(
        &state.store,
        org.0,
        id,
        user.user_id,
        title,
        description,
        &ctx.metadata(user.actor()),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(written(&state, org, id, &done).await?),
    ))
}

#[utoipa::path(operation_id = "walkthroughs_get", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "The walkthrough with its draft steps and servers", body = WalkthroughDetail), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    detail(&state, org, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(ErrorCode::WalkthroughNotFound))
}

#[utoipa::path(operation_id = "walkthroughs_update", patch, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(WalkthroughPath), request_body = UpdateBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated (the draft; publish to show it)", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Archived", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let detail = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::ChangeDetails {
            title: body.title.clone(),
            description: body.description.clone(),
        }
    })
    .await?;
    Ok(Json(detail))
}

/// `publish`, `unpublish`, `archive`.
async fn lifecycle(
    state: AppState,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    walkthrough: String,
    command: WalkthroughCommand,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let detail = change(&state, &user, &ctx, org, id, || command.clone()).await?;
    Ok(Json(detail))
}

#[utoipa::path(operation_id = "walkthroughs_publish", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/publish", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "The draft is now a new immutable version, shown to end users; after an unpublish with no edits, the same version is shown again", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "No steps, nothing changed while published, or archived", body = Problem, content_type = "application/problem+json")))]
pub async fn publish(
    State(state): State<AppState>,
    member: Membership,
    ctx: RequestContext,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    lifecycle(state, member, ctx, walkthrough, WalkthroughCommand::Publish).await
}

#[utoipa::path(operation_id = "walkthroughs_unpublish", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/unpublish", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "End users no longer see it", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not published", body = Problem, content_type = "application/problem+json")))]
pub async fn unpublish(
    State(state): State<AppState>,
    member: Membership,
    ctx: RequestContext,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    lifecycle(
        state,
        member,
        ctx,
        walkthrough,
        WalkthroughCommand::Unpublish,
    )
    .await
}

#[utoipa::path(operation_id = "walkthroughs_archive", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/archive", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "Archived: read-only, hidden from end users and from the default list", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Already archived", body = Problem, content_type = "application/problem+json")))]
pub async fn archive(
    State(state): State<AppState>,
    member: Membership,
    ctx: RequestContext,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    lifecycle(state, member, ctx, walkthrough, WalkthroughCommand::Archive).await
}

#[utoipa::path(operation_id = "walkthroughs_steps_list", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "The draft's steps, in order", body = Items<StepView>), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn steps(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<Items<StepView>>, ApiError> {
    let row = fetch(&state, org, &walkthrough).await?;
    Ok(Json(Items {
        items: render_steps(&row.steps.0),
    }))
}

/// The step as the answer to a step write.
fn step_of(detail: WalkthroughDetail, step: Uuid) -> Result<StepView, ApiError> {
    detail
        .steps
        .into_iter()
        .find(|s| s.id == step)
        .ok_or_else(|| ApiError::not_found(ErrorCode::StepNotFound))
}

#[utoipa::path(operation_id = "walkthroughs_steps_add", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps", tag = "walkthroughs", params(WalkthroughPath), request_body = StepBody, security(("bearer" = [])),
    responses((status = 201, description = "The new step (last unless after_step_id says otherwise), with when it was added", body = CreatedStep), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Archived", body = Problem, content_type = "application/problem+json")))]
pub async fn add_step(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
    JsonBody(body): JsonBody<StepBody>,
) -> Result<impl IntoResponse, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let step = StepContent::parse(
        &body.title,
        &body.content,
        body.agent_instructions.as_deref(),
        &body.operations,
    )?;
    let new_id = Uuid::new_v4();
    let (detail, created_at) = changed(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::AddStep {
            step_id: new_id,
            after: body.after_step_id,
            step: step.clone(),
        }
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedStep {
            step: step_of(detail, new_id)?,
            created_at,
        }),
    ))
}

#[utoipa::path(operation_id = "walkthroughs_steps_edit", patch, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}", tag = "walkthroughs", params(StepPath), request_body = EditStepBody, security(("bearer" = [])),
    responses((status = 200, description = "The edited step", body = StepView), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough or step", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Archived", body = Problem, content_type = "application/problem+json")))]
pub async fn edit_step(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(StepPath {
        walkthrough, step, ..
    }): Path<StepPath>,
    JsonBody(body): JsonBody<EditStepBody>,
) -> Result<Json<StepView>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let step = step_id(&step)?;
    let edit = StepEdit {
        title: body.title,
        content: body.content,
        agent_instructions: body.agent_instructions,
        operations: body.operations,
    };
    let detail = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::EditStep {
            step_id: step,
            edit: edit.clone(),
        }
    })
    .await?;
    Ok(Json(step_of(detail, step)?))
}

#[utoipa::path(operation_id = "walkthroughs_steps_remove", delete, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}", tag = "walkthroughs", params(StepPath), security(("bearer" = [])),
    responses((status = 200, description = "Removed from the draft; the walkthrough", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough or step", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Archived", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_step(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(StepPath {
        walkthrough, step, ..
    }): Path<StepPath>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let step = step_id(&step)?;
    let detail = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::RemoveStep { step_id: step }
    })
    .await?;
    Ok(Json(detail))
}

#[utoipa::path(operation_id = "walkthroughs_steps_move", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}/move", tag = "walkthroughs", params(StepPath), request_body = MoveBody, security(("bearer" = [])),
    responses((status = 200, description = "Moved; the walkthrough (step ids unchanged)", body = WalkthroughDetail), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such walkthrough or step", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Archived", body = Problem, content_type = "application/problem+json"), (status = 422, description = "after_step_id is the step itself or not in this walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn move_step(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(StepPath {
        walkthrough, step, ..
    }): Path<StepPath>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<WalkthroughDetail>, ApiError> {
    let id = walkthrough_id(&walkthrough)?;
    let step = step_id(&step)?;
    let detail = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::MoveStep {
            step_id: step,
            after_step_id: body.after_step_id,
        }
    })
    .await?;
    Ok(Json(detail))
}

#[utoipa::path(operation_id = "walkthroughs_versions", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/versions", tag = "walkthroughs", params(WalkthroughPath), security(("bearer" = [])),
    responses((status = 200, description = "Every published version with its content, newest first", body = Items<VersionView>), (status = 404, description = "No such walkthrough", body = Problem, content_type = "application/problem+json")))]
pub async fn versions(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(WalkthroughPath { walkthrough, .. }): Path<WalkthroughPath>,
) -> Result<Json<Items<VersionView>>, ApiError> {
    let row = fetch(&state, org, &walkthrough).await?;
    let rows = rm::versions(&state.pool, org, row.id).await?;
    let items = rows
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            step_count: v.steps.0.len(),
            steps: render_steps(&v.steps.0),
            title: v.title,
            description: v.description,
            published_at: v.published_at,
            published_by: v.published_by,
        })
        .collect();
    Ok(Json(Items { items }))
}

/// The walkthrough as the read model has it; unknown or another org's: 404.
pub(super) async fn fetch(
    state: &AppState,
    org: OrgId,
    raw: &str,
) -> Result<WalkthroughRow, ApiError> {
    rm::get(&state.pool, org, walkthrough_id(raw)?)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::WalkthroughNotFound))
}

#[utoipa::path(operation_id = "server_walkthroughs_list", get, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs", tag = "walkthroughs", params(ServerPath), security(("bearer" = [])),
    responses((status = 200, description = "The server's assignments in display order", body = Items<ServerWalkthroughRow>), (status = 404, description = "No such server", body = Problem, content_type = "application/problem+json")))]
pub async fn server_list(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    _: NoQuery,
    Path(ServerPath { server, .. }): Path<ServerPath>,
) -> Result<Json<Items<ServerWalkthroughRow>>, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let items = rm::assignments_of_server(&state.pool, org, server.id).await?;
    Ok(Json(Items { items }))
}

async fn assignment_written(
    state: &AppState,
    org: OrgId,
    server_id: Uuid,
    walkthrough: Uuid,
    done: &Executed<WalkthroughEvent>,
) -> Result<Json<Written<ServerWalkthroughRow, PendingAssignment>>, ApiError> {
    if state.settle(Walkthrough::TYPE, done.last_cursor()).await {
        let rows = rm::assignments_of_server(&state.pool, org, server_id).await?;
        if let Some(row) = rows.into_iter().find(|r| r.walkthrough_id == walkthrough) {
            return Ok(Json(Written::Read(row)));
        }
    }
    let (w, history) = from_log(state, org, walkthrough)
        .await?
        .ok_or_else(|| ApiError::not_found(ErrorCode::WalkthroughNotFound))?;
    let a = w
        .assignments
        .get(&server_id)
        .ok_or_else(|| ApiError::not_found(ErrorCode::AssignmentNotFound))?;
    // Assigned when the assignment it still has was made: the server's last assignment.
    let assigned_at = history
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            WalkthroughEvent::WalkthroughAssigned { server_id: s, .. } if *s == server_id => {
                Some(r.recorded_at)
            }
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found(ErrorCode::AssignmentNotFound))?;
    Ok(Json(Written::Pending(PendingAssignment {
        walkthrough_id: walkthrough,
        status: w.status.as_str(),
        published_version: w.version,
        display_order: a.display_order,
        enabled: a.enabled,
        assigned_at,
        title: w.title,
    })))
}

#[utoipa::path(operation_id = "server_walkthroughs_assign", post, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs", tag = "walkthroughs", params(ServerPath), request_body = AssignBody, security(("bearer" = [])),
    responses((status = 201, description = "Assigned", body = Written<ServerWalkthroughRow, PendingAssignment>), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such server or walkthrough", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not published, or already assigned", body = Problem, content_type = "application/problem+json")))]
pub async fn assign(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(ServerPath { server, .. }): Path<ServerPath>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<impl IntoResponse, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let walkthrough = walkthrough_id(&body.walkthrough_id)?;
    let assignment = Assignment {
        display_order: body.display_order.unwrap_or(0),
        enabled: body.enabled.unwrap_or(true),
    };
    let done = service::change_assignment(
        &state.store,
        org.0,
        walkthrough,
        server.id,
        user.user_id,
        &ctx.metadata(user.actor()),
        || WalkthroughCommand::Assign {
            server_id: server.id,
            assignment,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        assignment_written(&state, org, server.id, walkthrough, &done).await?,
    ))
}

#[utoipa::path(operation_id = "server_walkthroughs_update", patch, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(AssignmentPath), request_body = AssignmentBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = Written<ServerWalkthroughRow, PendingAssignment>), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such server, walkthrough or assignment", body = Problem, content_type = "application/problem+json")))]
pub async fn update_assignment(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(AssignmentPath {
        server,
        walkthrough,
        ..
    }): Path<AssignmentPath>,
    JsonBody(body): JsonBody<AssignmentBody>,
) -> Result<Json<Written<ServerWalkthroughRow, PendingAssignment>>, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let walkthrough = walkthrough_id(&walkthrough)?;
    let done = service::change_assignment(
        &state.store,
        org.0,
        walkthrough,
        server.id,
        user.user_id,
        &ctx.metadata(user.actor()),
        || WalkthroughCommand::ChangeAssignment {
            server_id: server.id,
            display_order: body.display_order,
            enabled: body.enabled,
        },
    )
    .await?;
    assignment_written(&state, org, server.id, walkthrough, &done).await
}

#[utoipa::path(operation_id = "server_walkthroughs_remove", delete, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(AssignmentPath), security(("bearer" = [])),
    responses((status = 204, description = "Unassigned; end users' progress is kept"), (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such server, walkthrough or assignment", body = Problem, content_type = "application/problem+json")))]
pub async fn unassign(
    State(state): State<AppState>,
    Membership { user, org, .. }: Membership,
    ctx: RequestContext,
    Path(AssignmentPath {
        server,
        walkthrough,
        ..
    }): Path<AssignmentPath>,
) -> Result<StatusCode, ApiError> {
    let server = servers::fetch(&state, org, &server).await?;
    let walkthrough = walkthrough_id(&walkthrough)?;
    let done = service::change_assignment(
        &state.store,
        org.0,
        walkthrough,
        server.id,
        user.user_id,
        &ctx.metadata(user.actor()),
        || WalkthroughCommand::Unassign {
            server_id: server.id,
        },
    )
    .await?;
    state.settle(Walkthrough::TYPE, done.last_cursor()).await;
    Ok(StatusCode::NO_CONTENT)
}
