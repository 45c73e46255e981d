//! Every `tools/call` becomes a `ToolCalled` event — successes, tool errors, unknown tools —
//! before the client hears the result. A call whose event cannot be stored fails.

use crate::handler::Served;
use commands::services::tool_calls;
use domain::tool_call::{Outcome, ToolCallRecord};
use eventstore::{CommitError, UnitOfWork};
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject};
use rmcp::ErrorData;
use serde_json::Value;
use std::time::Duration;

/// The first text of a failed result: what the caller was told went wrong.
fn error_text(result: &CallToolResult) -> Option<String> {
    result.content.iter().find_map(|block| match block {
        ContentBlock::Text(text) => Some(text.text.clone()),
        _ => None,
    })
}

/// Why a call could not be recorded.
pub enum RecordError {
    /// The call's staged writes lost a race (another client changed the same stream): the
    /// call should run again on fresh state.
    Conflict,
    /// Anything else: the call is reported as failed.
    Failed(ErrorData),
}

/// Records the call, committing whatever the tool staged in the same transaction.
pub async fn record(
    served: &Served,
    tool: &str,
    arguments: &JsonObject,
    outcome: &Result<CallToolResponse, ErrorData>,
    duration: Duration,
    client: Option<&Implementation>,
    staged: Option<UnitOfWork>,
) -> Result<(), RecordError> {
    let (outcome, error) = match outcome {
        Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => (
            Outcome::Error,
            Some(error_text(result).unwrap_or_else(|| "tool error".to_owned())),
        ),
        Ok(_) => (Outcome::Ok, None),
        Err(e) => (Outcome::Error, Some(e.message.to_string())),
    };
    let record = ToolCallRecord {
        server_id: served.tenant.server_id,
        session_id: served.session_id.clone(),
        end_user_id: served.caller.end_user_id,
        tracking_id: served
            .caller
            .tracking_id
            .as_ref()
            .map(|t| t.as_str().to_owned()),
        tool: tool.to_owned(),
        outcome,
        error,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        duration_us: Some(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)),
        client_name: client.map(|c| c.name.clone()),
        client_version: client.map(|c| c.version.clone()),
        arguments: Value::Object(arguments.clone()),
    };
    match tool_calls::record(
        &served.store,
        served.tenant.org_id,
        record,
        staged,
        &served.metadata,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(CommitError::Conflict) => Err(RecordError::Conflict),
        // The slug names another server now (or none): nothing is filed, and the edge answers
        // as for an unknown server.
        Err(CommitError::OwnerMoved { .. }) => Err(RecordError::Failed(ErrorData::new(
            rmcp::model::ErrorCode::INVALID_REQUEST,
            crate::edge::unknown_server(&served.tenant.slug),
            None,
        ))),
        Err(e) => {
            tracing::error!(error = %e, tool, "recording a tool call failed");
            Err(RecordError::Failed(ErrorData::internal_error(
                "this call could not be recorded, so it is reported as failed; please retry",
                None,
            )))
        }
    }
}
