//! Protocol sessions of 2025-era MCP clients, stored as events so any instance can continue
//! them.

use domain::mcp_session::{
    EndReason, McpSession, McpSessionCommand, McpSessionError, McpSessionEvent, SessionStart,
};
use domain::EventMetadata;
use eventstore::{EventStore, ExecuteError, Executed, StoreError};

type Result = std::result::Result<Executed<McpSessionEvent>, ExecuteError<McpSessionError>>;

pub async fn start(
    store: &EventStore,
    session_id: &str,
    start: SessionStart,
    metadata: &EventMetadata,
) -> Result {
    let metadata = metadata.clone().for_org(start.org_id);
    store
        .run::<McpSession>(session_id, &metadata, |_| {
            McpSessionCommand::Start(start.clone())
        })
        .await
}

pub async fn end(
    store: &EventStore,
    session_id: &str,
    reason: EndReason,
    metadata: &EventMetadata,
) -> Result {
    store
        .run::<McpSession>(session_id, metadata, |_| McpSessionCommand::End { reason })
        .await
}

/// A session that can still be continued, as the write model sees it.
pub async fn live(
    store: &EventStore,
    session_id: &str,
) -> std::result::Result<Option<SessionStart>, StoreError> {
    let (session, _) = store.load::<McpSession>(session_id).await?;
    Ok(session.live().cloned())
}
