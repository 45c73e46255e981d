//! `/api/v1/orgs/{org}/walkthroughs`: authoring, publishing and versions (analytics and sankey
//! are in `walkthrough_analytics`); `/api/v1/orgs/{org}/servers/{server}/walkthroughs`: which
//! walkthroughs a server offers.

use crate::error::{from_execute, ApiError};
use crate::extract::{present_or_null, AuthUser, JsonBody, NoQuery, QueryParams, RequestContext};
use crate::openapi::Problem;
use crate::paging;
use crate::routes::orgs::resolve;
use crate::routes::servers;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use commands::services::walkthroughs::{self as service, AssignError};
use domain::values::OrgId;
use domain::walkthrough::{
    parse_details, Assignment, Step, StepContent, StepEdit, Walkthrough, WalkthroughCommand,
    WalkthroughError, WalkthroughEvent,
};
use domain::Aggregate;
use eventstore::{ExecuteError, Executed};
use projections::models::walkthroughs as rm;
use serde::Deserialize;
use serde_json::{json, Value};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn walkthrough_error(e: ExecuteError<WalkthroughError>) -> ApiError {
    from_execute(e, |d| {
        let detail = d.to_string();
        use WalkthroughError as W;
        match d {
            W::NotFound => ApiError::not_found("walkthrough"),
            W::StepNotFound => ApiError::not_found("step"),
            W::NotAssigned => ApiError::not_found("assignment"),
            W::NotAllowed => ApiError::Forbidden { detail },
            W::AnchorNotFound => ApiError::field("after_step_id", detail),
            W::MoveAfterItself => ApiError::field("after_step_id", detail),
            W::Length { field, .. } | W::TooMany { field, .. } => ApiError::field(field, detail),
            W::AlreadyExists => ApiError::Conflict {
                code: "conflict",
                detail,
            },
            W::Archived => ApiError::Conflict {
                code: "walkthrough_archived",
                detail,
            },
            W::NoSteps => ApiError::Conflict {
                code: "no_steps",
                detail,
            },
            W::NothingToPublish(_) => ApiError::Conflict {
                code: "nothing_to_publish",
                detail,
            },
            W::NotPublished | W::AssignUnpublished => ApiError::Conflict {
                code: "not_published",
                detail,
            },
            W::AlreadyAssigned => ApiError::Conflict {
                code: "already_assigned",
                detail,
            },
        }
    })
}

fn assign_error(e: AssignError) -> ApiError {
    match e {
        AssignError::ServerNotFound => ApiError::not_found("server"),
        AssignError::ServerArchived => ApiError::Conflict {
            code: "server_archived",
            detail: e.to_string(),
        },
        AssignError::Execute(e) => walkthrough_error(e),
    }
}

fn walkthrough_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("walkthrough"))
}

fn step_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("step"))
}

fn render_step(step: &Step, position: usize) -> Value {
    json!({
        "id": step.id,
        "position": position + 1,
        "title": step.content.title,
        "content": step.content.content,
        "agent_instructions": step.content.agent_instructions,
        "operations": step.content.operations,
    })
}

fn render_steps(steps: &[Step]) -> Vec<Value> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| render_step(s, i))
        .collect()
}

async fn detail(state: &AppState, org: OrgId, id: Uuid) -> Result<Option<Value>, ApiError> {
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
    Ok(Some(json!({
        "id": row.id,
        "title": row.title,
        "description": row.description,
        "status": row.status,
        "published_version": row.published_version,
        "unpublished_changes": unpublished_changes,
        "step_count": row.steps.0.len(),
        "steps": render_steps(&row.steps.0),
        "servers": servers,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })))
}

/// What the write model knows, for when the read model has not caught up (NATS away).
fn from_write_model(id: Uuid, w: &Walkthrough) -> Value {
    json!({
        "id": id,
        "title": w.title,
        "description": w.description,
        "status": w.status.as_str(),
        "published_version": (w.version > 0).then_some(w.version),
        "unpublished_changes": w.version == 0 || w.steps != w.published
            || w.title != w.published_title || w.description != w.published_description,
        "step_count": w.steps.len(),
        "steps": render_steps(&w.steps),
        "servers": w.assignments.iter().map(|(server_id, a)| json!({
            "server_id": server_id, "walkthrough_id": id,
            "display_order": a.display_order, "enabled": a.enabled,
        })).collect::<Vec<_>>(),
        "created_at": null,
        "updated_at": null,
    })
}

/// Answers a write with the walkthrough as the read model has it once caught up.
async fn written(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    done: &Executed<WalkthroughEvent>,
) -> Result<Value, ApiError> {
    if state.settle(Walkthrough::TYPE, done.last_cursor()).await {
        if let Some(value) = detail(state, org, id).await? {
            return Ok(value);
        }
    }
    let walkthrough = service::load(&state.store, org.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("walkthrough"))?;
    Ok(from_write_model(id, &walkthrough))
}

/// Runs one authoring command and answers with the walkthrough.
async fn change(
    state: &AppState,
    user: &AuthUser,
    ctx: &RequestContext,
    org: OrgId,
    id: Uuid,
    command: impl Fn() -> WalkthroughCommand,
) -> Result<(Executed<WalkthroughEvent>, Value), ApiError> {
    let done = service::change(
        &state.store,
        org.0,
        id,
        user.user_id,
        &ctx.metadata(user.actor()),
        command,
    )
    .await
    .map_err(walkthrough_error)?;
    let value = written(state, org, id, &done).await?;
    Ok((done, value))
}

#[utoipa::path(operation_id = "walkthroughs_list", get, path = "/api/v1/orgs/{org}/walkthroughs", tag = "walkthroughs",
    params(("org" = String, Path, description = "Org id or slug"), ("status" = Option<String>, Query, description = "draft, published, unpublished or archived (default: all but archived)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    security(("bearer" = [])),
    responses((status = 200, description = "Walkthroughs, newest first"), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(org_ref): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let limit = paging::limit(q.limit)?;
    let before = paging::decode(q.cursor.as_deref(), |id| id.parse::<Uuid>().ok())?;
    if let Some(status) = q.status.as_deref() {
        if !["draft", "published", "unpublished", "archived"].contains(&status) {
            return Err(ApiError::field(
                "status",
                "must be one of draft, published, unpublished, archived",
            ));
        }
    }
    let rows = rm::list(&state.pool, org, q.status.as_deref(), before, limit.rows()).await?;
    let items: Vec<ListItem> = rows
        .into_iter()
        .map(|row| ListItem {
            step_count: row.steps.0.len(),
            row,
        })
        .collect();
    Ok(paging::page(items, limit, |i| {
        (i.row.created_at, i.row.id.to_string())
    }))
}

/// A walkthrough in a list: its fields without the step contents.
#[derive(serde::Serialize)]
struct ListItem {
    #[serde(flatten)]
    row: rm::WalkthroughRow,
    step_count: usize,
}

#[utoipa::path(operation_id = "walkthroughs_create", post, path = "/api/v1/orgs/{org}/walkthroughs", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug")), request_body = CreateBody, security(("bearer" = [])),
    responses((status = 201, description = "Created, as a draft without steps"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 400, description = "Unreadable request", body = Problem), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such org (or not a member)", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(org_ref): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let (title, description) = parse_details(&body.title, body.description.as_deref())
        .map_err(|e| walkthrough_error(ExecuteError::Domain(e)))?;
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
    .await
    .map_err(walkthrough_error)?;
    Ok((
        StatusCode::CREATED,
        Json(written(&state, org, id, &done).await?),
    ))
}

#[utoipa::path(operation_id = "walkthroughs_get", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "The walkthrough with its draft steps and servers"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such walkthrough", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    detail(&state, org, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("walkthrough"))
}

#[utoipa::path(operation_id = "walkthroughs_update", patch, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), request_body = UpdateBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated (the draft; publish to show it)"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 409, description = "Archived", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let (_, value) = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::ChangeDetails {
            title: body.title.clone(),
            description: body.description.clone(),
        }
    })
    .await?;
    Ok(Json(value))
}

/// `publish`, `unpublish`, `archive`.
async fn lifecycle(
    state: AppState,
    user: AuthUser,
    ctx: RequestContext,
    org_ref: String,
    id: String,
    command: WalkthroughCommand,
) -> Result<Json<Value>, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let (_, value) = change(&state, &user, &ctx, org, id, || command.clone()).await?;
    Ok(Json(value))
}

#[utoipa::path(operation_id = "walkthroughs_publish", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/publish", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "The draft is now a new immutable version, shown to end users; after an unpublish with no edits, the same version is shown again"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 409, description = "No steps, nothing changed while published, or archived", body = Problem)))]
pub async fn publish(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    lifecycle(state, user, ctx, org_ref, id, WalkthroughCommand::Publish).await
}

#[utoipa::path(operation_id = "walkthroughs_unpublish", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/unpublish", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "End users no longer see it"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 409, description = "Not published", body = Problem)))]
pub async fn unpublish(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    lifecycle(state, user, ctx, org_ref, id, WalkthroughCommand::Unpublish).await
}

#[utoipa::path(operation_id = "walkthroughs_archive", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/archive", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "Archived: read-only, hidden from end users and from the default list"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 409, description = "Already archived", body = Problem)))]
pub async fn archive(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    lifecycle(state, user, ctx, org_ref, id, WalkthroughCommand::Archive).await
}

#[utoipa::path(operation_id = "walkthroughs_steps_list", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "The draft's steps, in order"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such walkthrough", body = Problem)))]
pub async fn steps(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = fetch(&state, org, &id).await?;
    Ok(Json(json!({ "items": render_steps(&row.steps.0) })))
}

/// The step as the answer to a step write.
fn step_of(value: &Value, step: Uuid) -> Result<Value, ApiError> {
    value["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == json!(step)).cloned())
        .ok_or_else(|| ApiError::not_found("step"))
}

#[utoipa::path(operation_id = "walkthroughs_steps_add", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), request_body = StepBody, security(("bearer" = [])),
    responses((status = 201, description = "The new step (last unless after_step_id says otherwise)"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough", body = Problem), (status = 409, description = "Archived", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn add_step(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<StepBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let step = StepContent::parse(
        &body.title,
        &body.content,
        body.agent_instructions.as_deref(),
        &body.operations,
    )
    .map_err(|e| walkthrough_error(ExecuteError::Domain(e)))?;
    let new_id = Uuid::new_v4();
    let (_, value) = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::AddStep {
            step_id: new_id,
            after: body.after_step_id,
            step: step.clone(),
        }
    })
    .await?;
    Ok((StatusCode::CREATED, Json(step_of(&value, new_id)?)))
}

#[utoipa::path(operation_id = "walkthroughs_steps_edit", patch, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id"), ("step" = Uuid, Path, description = "Step id")), request_body = EditStepBody, security(("bearer" = [])),
    responses((status = 200, description = "The edited step"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough or step", body = Problem), (status = 409, description = "Archived", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn edit_step(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id, step)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<EditStepBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let step = step_id(&step)?;
    let edit = StepEdit {
        title: body.title,
        content: body.content,
        agent_instructions: body.agent_instructions,
        operations: body.operations,
    };
    let (_, value) = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::EditStep {
            step_id: step,
            edit: edit.clone(),
        }
    })
    .await?;
    Ok(Json(step_of(&value, step)?))
}

#[utoipa::path(operation_id = "walkthroughs_steps_remove", delete, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id"), ("step" = Uuid, Path, description = "Step id")), security(("bearer" = [])),
    responses((status = 200, description = "Removed from the draft; the walkthrough"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough or step", body = Problem), (status = 409, description = "Archived", body = Problem)))]
pub async fn remove_step(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id, step)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let step = step_id(&step)?;
    let (_, value) = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::RemoveStep { step_id: step }
    })
    .await?;
    Ok(Json(value))
}

#[utoipa::path(operation_id = "walkthroughs_steps_move", post, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/steps/{step}/move", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id"), ("step" = Uuid, Path, description = "Step id")), request_body = MoveBody, security(("bearer" = [])),
    responses((status = 200, description = "Moved; the walkthrough (step ids unchanged)"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such walkthrough or step", body = Problem), (status = 409, description = "Archived", body = Problem), (status = 422, description = "after_step_id is the step itself or not in this walkthrough", body = Problem)))]
pub async fn move_step(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, id, step)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let id = walkthrough_id(&id)?;
    let step = step_id(&step)?;
    let (_, value) = change(&state, &user, &ctx, org, id, || {
        WalkthroughCommand::MoveStep {
            step_id: step,
            after_step_id: body.after_step_id,
        }
    })
    .await?;
    Ok(Json(value))
}

#[utoipa::path(operation_id = "walkthroughs_versions", get, path = "/api/v1/orgs/{org}/walkthroughs/{walkthrough}/versions", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 200, description = "Every published version with its content, newest first"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such walkthrough", body = Problem)))]
pub async fn versions(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let row = fetch(&state, org, &id).await?;
    let rows = rm::versions(&state.pool, org, row.id).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|v| {
            json!({
                "version": v.version, "title": v.title, "description": v.description,
                "step_count": v.steps.0.len(), "steps": render_steps(&v.steps.0),
                "published_at": v.published_at, "published_by": v.published_by,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// The walkthrough as the read model has it; unknown or another org's: 404.
pub(super) async fn fetch(
    state: &AppState,
    org: OrgId,
    raw: &str,
) -> Result<rm::WalkthroughRow, ApiError> {
    rm::get(&state.pool, org, walkthrough_id(raw)?)
        .await?
        .ok_or_else(|| ApiError::not_found("walkthrough"))
}

#[utoipa::path(operation_id = "server_walkthroughs_list", get, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug")), security(("bearer" = [])),
    responses((status = 200, description = "The server's assignments in display order"), (status = 401, description = "Not signed in", body = Problem), (status = 404, description = "No such server", body = Problem)))]
pub async fn server_list(
    State(state): State<AppState>,
    user: AuthUser,
    _: NoQuery,
    Path((org_ref, server_ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let server = servers::fetch(&state, org, &server_ref).await?;
    let rows = rm::assignments_of_server(&state.pool, org, server.id).await?;
    Ok(Json(json!({ "items": rows })))
}

async fn assignment_written(
    state: &AppState,
    org: OrgId,
    server_id: Uuid,
    walkthrough: Uuid,
    done: &Executed<WalkthroughEvent>,
) -> Result<Value, ApiError> {
    if state.settle(Walkthrough::TYPE, done.last_cursor()).await {
        let rows = rm::assignments_of_server(&state.pool, org, server_id).await?;
        if let Some(row) = rows.into_iter().find(|r| r.walkthrough_id == walkthrough) {
            return Ok(json!(row));
        }
    }
    let w = service::load(&state.store, org.0, walkthrough)
        .await?
        .ok_or_else(|| ApiError::not_found("walkthrough"))?;
    let a = w
        .assignments
        .get(&server_id)
        .ok_or_else(|| ApiError::not_found("assignment"))?;
    Ok(json!({
        "walkthrough_id": walkthrough, "title": w.title, "status": w.status.as_str(),
        "published_version": w.version, "display_order": a.display_order, "enabled": a.enabled,
        "assigned_at": null,
    }))
}

#[utoipa::path(operation_id = "server_walkthroughs_assign", post, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug")), request_body = AssignBody, security(("bearer" = [])),
    responses((status = 201, description = "Assigned"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such server or walkthrough", body = Problem), (status = 409, description = "Not published, or already assigned", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn assign(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, server_ref)): Path<(String, String)>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let server = servers::fetch(&state, org, &server_ref).await?;
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
    .await
    .map_err(assign_error)?;
    Ok((
        StatusCode::CREATED,
        Json(assignment_written(&state, org, server.id, walkthrough, &done).await?),
    ))
}

#[utoipa::path(operation_id = "server_walkthroughs_update", patch, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), request_body = AssignmentBody, security(("bearer" = [])),
    responses((status = 200, description = "Updated"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such server, walkthrough or assignment", body = Problem), (status = 422, description = "Invalid field", body = Problem)))]
pub async fn update_assignment(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, server_ref, walkthrough)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<AssignmentBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let server = servers::fetch(&state, org, &server_ref).await?;
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
    .await
    .map_err(assign_error)?;
    Ok(Json(
        assignment_written(&state, org, server.id, walkthrough, &done).await?,
    ))
}

#[utoipa::path(operation_id = "server_walkthroughs_remove", delete, path = "/api/v1/orgs/{org}/servers/{server}/walkthroughs/{walkthrough}", tag = "walkthroughs", params(("org" = String, Path, description = "Org id or slug"), ("server" = String, Path, description = "Server id or slug"), ("walkthrough" = Uuid, Path, description = "Walkthrough id")), security(("bearer" = [])),
    responses((status = 204, description = "Unassigned; end users' progress is kept"), (status = 403, description = "Not an owner or admin", body = Problem), (status = 404, description = "No such server, walkthrough or assignment", body = Problem)))]
pub async fn unassign(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path((org_ref, server_ref, walkthrough)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (org, _) = resolve(&state, &user, &org_ref).await?;
    let server = servers::fetch(&state, org, &server_ref).await?;
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
    .await
    .map_err(assign_error)?;
    state.settle(Walkthrough::TYPE, done.last_cursor()).await;
    Ok(StatusCode::NO_CONTENT)
}
