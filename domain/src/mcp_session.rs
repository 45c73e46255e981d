//! A protocol session of a 2025-era MCP client (`Mcp-Session-Id`). Sessions live in the event
//! store, not in a process: any instance of mcplatform can continue one by replaying the
//! client's `initialize` from [`McpSessionEvent::McpSessionStarted`].
//!
//! 2026-era clients have no protocol session; the sessions read model groups their calls by end
//! user and client instead (see the `mcp_usage` projection).

use crate::text::{scrub_nul, scrub_string};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who a session belongs to, fixed at its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub org_id: Uuid,
    pub server_id: Uuid,
    #[serde(default)]
    pub end_user_id: Option<Uuid>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    /// The end user whose access token started the session (a server in `oauth` mode): every
    /// request on it must carry a token of theirs (MCP security best practices, session
    /// hijacking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in: Option<Uuid>,
    pub protocol_version: String,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub client_version: Option<String>,
    /// The client's `initialize` params, replayed when another instance continues the session.
    pub initialize_params: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The client sent `DELETE` with its session id.
    ClientClosed,
}

#[derive(Debug, Default, Clone)]
pub struct McpSession {
    pub start: Option<SessionStart>,
    pub ended: bool,
}

impl McpSession {
    /// The start of a session that can still be continued.
    pub fn live(&self) -> Option<&SessionStart> {
        self.start.as_ref().filter(|_| !self.ended)
    }
}

#[derive(Debug, Clone)]
pub enum McpSessionCommand {
    Start(SessionStart),
    End { reason: EndReason },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum McpSessionEvent {
    McpSessionStarted(SessionStart),
    McpSessionEnded { reason: EndReason },
}

impl DomainEvent for McpSessionEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpSessionError {
    #[error("session not found")]
    NotFound,
    #[error("session already started")]
    AlreadyStarted,
}

impl Aggregate for McpSession {
    const TYPE: &'static str = "mcp_session";
    type Command = McpSessionCommand;
    type Event = McpSessionEvent;
    type Error = McpSessionError;

    fn handle(&self, command: McpSessionCommand) -> Result<Vec<McpSessionEvent>, McpSessionError> {
        match command {
            McpSessionCommand::Start(mut start) => {
                if self.start.is_some() {
                    return Err(McpSessionError::AlreadyStarted);
                }
                // The client names itself; a NUL in that name is kept as U+FFFD (see `text`).
                for text in [
                    Some(&mut start.protocol_version),
                    start.client_name.as_mut(),
                    start.client_version.as_mut(),
                    start.tracking_id.as_mut(),
                ]
                .into_iter()
                .flatten()
                {
                    scrub_string(text);
                }
                scrub_nul(&mut start.initialize_params);
                Ok(vec![McpSessionEvent::McpSessionStarted(start)])
            }
            McpSessionCommand::End { reason } => {
                if self.start.is_none() {
                    return Err(McpSessionError::NotFound);
                }
                // Ending twice (two instances both saw the DELETE) is not an error.
                if self.ended {
                    return Ok(vec![]);
                }
                Ok(vec![McpSessionEvent::McpSessionEnded { reason }])
            }
        }
    }

    fn apply(&mut self, event: &McpSessionEvent) {
        match event {
            McpSessionEvent::McpSessionStarted(start) => self.start = Some(start.clone()),
            McpSessionEvent::McpSessionEnded { .. } => self.ended = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{given_when, replay};

    fn start() -> SessionStart {
        SessionStart {
            org_id: Uuid::nil(),
            server_id: Uuid::nil(),
            end_user_id: None,
            tracking_id: None,
            signed_in: None,
            protocol_version: "2025-11-25".into(),
            client_name: Some("cursor".into()),
            client_version: None,
            initialize_params: Value::Null,
        }
    }

    #[test]
    fn a_session_starts_once_and_ends_idempotently() {
        let started = vec![McpSessionEvent::McpSessionStarted(start())];
        assert_eq!(
            given_when::<McpSession>(&started, McpSessionCommand::Start(start())).err(),
            Some(McpSessionError::AlreadyStarted)
        );
        let end = || McpSessionCommand::End {
            reason: EndReason::ClientClosed,
        };
        let ended = given_when::<McpSession>(&started, end()).unwrap_or_default();
        assert_eq!(ended.len(), 1);
        let mut all = started.clone();
        all.extend(ended);
        assert!(replay::<McpSession>(&all).live().is_none());
        assert_eq!(given_when::<McpSession>(&all, end()), Ok(vec![]));
        assert_eq!(
            given_when::<McpSession>(&[], end()).err(),
            Some(McpSessionError::NotFound)
        );
    }
}
