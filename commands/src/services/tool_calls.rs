//! Recording tool calls: one fact per call.

use crate::store::{CommitError, EventStore, UnitOfWork};
use crate::Cursor;
use domain::tool_call::{ToolCall, ToolCallCommand, ToolCallRecord};
use domain::{Aggregate, EventMetadata};
use uuid::Uuid;

/// Records a call durably. A call is its own new stream, so there is nothing to load and
/// nothing to conflict with: the event goes straight to the group committer. `staged` holds
/// what the call itself decided to write (if anything); it commits in the same transaction,
/// so a call's effects and its record are never apart. Only a staged unit can conflict.
pub async fn record(
    store: &EventStore,
    call_id: Uuid,
    org_id: Uuid,
    record: ToolCallRecord,
    staged: Option<UnitOfWork>,
    metadata: &EventMetadata,
) -> Result<Option<Cursor>, CommitError> {
    let metadata = metadata.clone().for_org(org_id);
    let events = match ToolCall::default().handle(ToolCallCommand::Record(record)) {
        Ok(events) => events,
        // A fresh aggregate has recorded nothing, so this cannot be reached.
        Err(_) => return Err(CommitError::Conflict),
    };
    let mut uow = staged.unwrap_or_default();
    uow.append(ToolCall::TYPE, call_id.to_string(), 0, &events, &metadata)?;
    let appended = store.commit(uow).await?;
    Ok(appended.iter().map(|a| a.cursor).max())
}
