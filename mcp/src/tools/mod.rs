//! The tools a hosted server offers, chosen by its configuration.

pub mod conformance;
pub mod conformance_rounds;
pub mod support;
pub mod walkthroughs;

use crate::identity::Caller;
use crate::tenant::Tenant;
use crate::Core;
use commands::errors::{Chain, ErrorCode, Failure};
use domain::EventMetadata;
use eventstore::{EventStore, UnitOfWork};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool,
};
use rmcp::ErrorData;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Everything a tool may use while serving one call.
pub struct CallContext<'a> {
    pub core: &'a Core,
    pub tenant: &'a Tenant,
    /// The event store for this call: whatever a tool commits through it requires the tenant's
    /// slug to still name its server (see `RequestScope::store`). Tools commit through nothing
    /// else.
    pub store: &'a EventStore,
    pub caller: &'a Caller,
    pub metadata: &'a EventMetadata,
    pub peer: &'a rmcp::Peer<rmcp::RoleServer>,
    pub request: &'a rmcp::service::RequestContext<rmcp::RoleServer>,
    /// What the tool decided to write but leaves to commit together with the call's own
    /// record (see `recording`), so the two are never apart and cost one commit.
    pub staged: &'a Mutex<Option<UnitOfWork>>,
    /// What a tool remembers across attempts when its staged writes conflicted and the call
    /// runs again (the step a `next_walkthrough_step` was completing).
    pub retry_memo: &'a Mutex<Option<Uuid>>,
    /// What to do once the staged writes are committed (update a cache with their result).
    pub after_commit: &'a Mutex<Option<AfterCommit>>,
}

/// Run by the edge after a call's staged writes committed, never otherwise.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

impl CallContext<'_> {
    pub fn stage(&self, uow: UnitOfWork) {
        if let Ok(mut staged) = self.staged.lock() {
            *staged = Some(uow);
        }
    }

    /// Stages `uow` and what to do once it is committed.
    pub fn stage_then(&self, uow: UnitOfWork, after_commit: AfterCommit) {
        self.stage(uow);
        if let Ok(mut after) = self.after_commit.lock() {
            *after = Some(after_commit);
        }
    }

    pub fn remembered(&self) -> Option<Uuid> {
        self.retry_memo.lock().ok().and_then(|m| *m)
    }

    pub fn remember(&self, value: Uuid) {
        if let Ok(mut memo) = self.retry_memo.lock() {
            *memo = Some(value);
        }
    }
}

/// Whether the server offers walkthrough tools: switched on, and at least one enabled,
/// published walkthrough assigned.
pub async fn offers_walkthroughs(core: &Core, tenant: &Tenant) -> Result<bool, ErrorData> {
    if !tenant.walkthrough_tools {
        return Ok(false);
    }
    let offer = core
        .walkthroughs
        .offered(core.store.pool(), tenant.org_id, tenant.server_id)
        .await
        .map_err(|e| {
            internal_error(
                e,
                "reading the walkthroughs a server offers failed",
                "tools are unavailable right now; please retry",
            )
        })?;
    Ok(!offer.is_empty())
}

/// The tools of a server, in a stable order.
pub fn list(tenant: &Tenant, walkthroughs: bool) -> Vec<Tool> {
    let mut tools = Vec::new();
    if tenant.support_tool {
        tools.push(support::tool());
    }
    if walkthroughs {
        tools.extend(walkthroughs::tools());
    }
    if tenant.conformance_fixtures {
        tools.extend(conformance::tools());
        tools.extend(conformance_rounds::tools());
    }
    tools
}

/// Runs a tool. `Err` is a protocol error (unknown tool); a tool that ran and failed, including
/// on arguments of the wrong shape, answers `Ok` with `is_error` so the model can correct
/// itself.
pub async fn call(
    cx: &CallContext<'_>,
    request: &CallToolRequestParams,
    arguments: &JsonObject,
) -> Result<CallToolResponse, ErrorData> {
    let name = request.name.as_ref();
    // Before any tool sees them: no read model could store a NUL (see `domain::text`). The call
    // is still recorded, with its NULs replaced.
    if let Some(field) = domain::text::nul_field(arguments) {
        return Ok(tool_error(invalid(format!(
            "`{field}` must not contain the NUL character (\\u0000); remove it and call again"
        )))
        .into());
    }
    match name {
        support::NAME if cx.tenant.support_tool => {
            support::call(cx, arguments).await.map(Into::into)
        }
        _ if walkthroughs::TOOLS.contains(&name)
            && offers_walkthroughs(cx.core, cx.tenant).await? =>
        {
            walkthroughs::call(cx, name, arguments)
                .await
                .map(Into::into)
        }
        _ if cx.tenant.conformance_fixtures && conformance::has_tool(name) => {
            conformance::call(cx, name, arguments).await.map(Into::into)
        }
        _ if cx.tenant.conformance_fixtures && conformance_rounds::TOOLS.contains(&name) => {
            conformance_rounds::call(
                cx,
                name,
                request.input_responses.as_ref(),
                request.request_state.as_deref(),
            )
            .await
        }
        _ => Err(ErrorData::invalid_params(
            format!("unknown tool: {name}"),
            Some(serde_json::json!({ "tool": name })),
        )),
    }
}

/// A JSON Schema object for a tool's input.
pub fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// A tool error the caller (a model) can read and act on, worded from the error table the REST
/// API answers with: the detail, then the code (`ticket not found (ticket_not_found)`).
pub fn tool_error(failure: impl Into<Failure>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(failure.into().to_string())])
}

/// Arguments the tool cannot take: `validation_failed`, as a refused body field is.
pub fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::ValidationFailed, message)
}

/// A failure that is not the caller's: logged once with its source chain, answered as a
/// protocol error whose message says nothing of the cause.
pub fn internal_error(
    failure: impl Into<Failure>,
    context: &str,
    public: &'static str,
) -> ErrorData {
    let failure = failure.into();
    match &failure.source {
        Some(source) => {
            tracing::error!(code = %failure.code, error = %Chain(source.as_ref()), "{context}")
        }
        None => tracing::error!(code = %failure.code, error = %failure.detail, "{context}"),
    }
    ErrorData::internal_error(public, None)
}

/// Reads a string argument: `Ok(None)` when absent or null, `Err` naming the field when it is
/// there with another type.
pub fn optional_string<'a>(
    arguments: &'a JsonObject,
    field: &str,
) -> Result<Option<&'a str>, CallToolResult> {
    match arguments.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(tool_error(invalid(format!(
            "`{field}` must be a string, not {}",
            json_type(other)
        )))),
    }
}

pub fn required_string<'a>(
    arguments: &'a JsonObject,
    field: &str,
) -> Result<&'a str, CallToolResult> {
    optional_string(arguments, field)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| tool_error(invalid(format!("`{field}` is required"))))
}

pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
