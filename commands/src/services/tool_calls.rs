//! Recording tool calls: one fact per call.

use domain::tool_call::{ToolCall, ToolCallCommand, ToolCallRecord};
use domain::{Aggregate, EventMetadata};
use eventstore::Cursor;
use eventstore::{CommitError, EventStore, UnitOfWork};
use uuid::Uuid;

/// Records a call durably. A call is its own new stream, so there is nothing to load and
/// nothing to conflict with: the event goes straight to the group committer. `staged` holds
/// what the call itself decided to write (if anything); it commits in the same transaction,
/// so a call's effects and its record are never apart. Only a staged unit can conflict.
pub async fn record(
    store: &EventStore,
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
    // Time-ordered (UUIDv7): the call's id keys its stream in the events' primary key and its
    // row in `rm_tool_calls`, so new calls go to the newest end of the calls' range in both
    // indexes rather than to a random leaf page (which, once the indexes outgrow memory, costs
    // a read and, after each checkpoint, a full-page WAL image per call).
    let call_id = Uuid::now_v7();
    let mut uow = staged.unwrap_or_default();
    uow.append::<ToolCall>(call_id.to_string(), 0, &events, &metadata)?;
    let appended = store.commit(uow).await?;
    Ok(appended.iter().map(|a| a.cursor).max())
}
