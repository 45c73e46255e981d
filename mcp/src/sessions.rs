//! 2025-era protocol sessions, kept in the event store so any instance continues them.
//!
//! rmcp runs a session in memory on the instance that holds it and asks a [`SessionStore`] to
//! persist the client's `initialize` and to load it when a request arrives for a session this
//! instance does not hold. Our store writes those as `McpSessionStarted` / `McpSessionEnded`
//! events. rmcp's store calls carry only the session id, so the tenant and caller of the request
//! being served travel in a task-local [`RequestScope`] that the edge sets around each request.

use crate::identity::Caller;
use crate::tenant::Tenant;
use commands::services::mcp_sessions;
use commands::{EventStore, StoreError};
use domain::mcp_session::{EndReason, SessionStart};
use domain::EventMetadata;
use rmcp::model::InitializeRequestParams;
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What the edge knows about the request being served.
pub struct RequestScope {
    pub tenant: Arc<Tenant>,
    pub caller: Caller,
    pub metadata: EventMetadata,
    /// Set when the session store could not write; the edge then fails the request instead of
    /// handing out a session that no other instance could continue.
    pub store_failed: AtomicBool,
}

tokio::task_local! {
    pub static SCOPE: Arc<RequestScope>;
}

/// How long a session found live is trusted before the event store is asked again. A session
/// ended through another instance stops being served here within this time.
pub const SESSION_RECHECK: Duration = Duration::from_secs(1);

const MAX_CACHED: usize = 100_000;

/// Which server each live session belongs to, from the event store, briefly cached.
pub struct Sessions {
    store: EventStore,
    live: RwLock<HashMap<String, (Instant, Uuid)>>,
}

impl Sessions {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            live: RwLock::default(),
        }
    }

    /// Whether `session_id` is a live session of `server_id`. Another server's session is as
    /// unknown as one that never existed.
    pub async fn is_live_on(&self, session_id: &str, server_id: Uuid) -> Result<bool, StoreError> {
        if let Some((at, owner)) = self
            .live
            .read()
            .ok()
            .and_then(|l| l.get(session_id).copied())
        {
            if at.elapsed() < SESSION_RECHECK {
                return Ok(owner == server_id);
            }
        }
        match mcp_sessions::live(&self.store, session_id).await? {
            Some(start) => {
                self.remember(session_id, start.server_id);
                Ok(start.server_id == server_id)
            }
            None => {
                self.forget(session_id);
                Ok(false)
            }
        }
    }

    fn remember(&self, session_id: &str, server_id: Uuid) {
        if let Ok(mut live) = self.live.write() {
            if live.len() >= MAX_CACHED {
                live.clear();
            }
            live.insert(session_id.to_owned(), (Instant::now(), server_id));
        }
    }

    pub fn forget(&self, session_id: &str) {
        if let Ok(mut live) = self.live.write() {
            live.remove(session_id);
        }
    }
}

/// rmcp's session store, backed by the event store.
pub struct EventSourcedSessionStore {
    pub store: EventStore,
    pub sessions: Arc<Sessions>,
}

fn current_scope() -> Result<Arc<RequestScope>, SessionStoreError> {
    SCOPE
        .try_with(Arc::clone)
        .map_err(|_| "session store used outside an MCP request".into())
}

fn fail(scope: &RequestScope, error: impl std::fmt::Display) -> SessionStoreError {
    scope.store_failed.store(true, Ordering::SeqCst);
    tracing::error!(%error, "session store write failed");
    error.to_string().into()
}

#[async_trait::async_trait]
impl SessionStore for EventSourcedSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let scope = current_scope()?;
        let Some(start) = mcp_sessions::live(&self.store, session_id).await? else {
            return Ok(None);
        };
        if start.server_id != scope.tenant.server_id {
            return Ok(None);
        }
        let params: InitializeRequestParams = serde_json::from_value(start.initialize_params)?;
        self.sessions.remember(session_id, start.server_id);
        Ok(Some(SessionState::new(params)))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let scope = current_scope()?;
        let params = &state.initialize_params;
        let start = SessionStart {
            org_id: scope.tenant.org_id,
            server_id: scope.tenant.server_id,
            end_user_id: scope.caller.end_user_id,
            tracking_id: scope
                .caller
                .tracking_id
                .as_ref()
                .map(|t| t.as_str().to_owned()),
            protocol_version: params.protocol_version.to_string(),
            client_name: Some(params.client_info.name.clone()),
            client_version: Some(params.client_info.version.clone()),
            initialize_params: serde_json::to_value(params).map_err(|e| fail(&scope, e))?,
        };
        mcp_sessions::start(&self.store, session_id, start, &scope.metadata)
            .await
            .map_err(|e| fail(&scope, e))?;
        self.sessions.remember(session_id, scope.tenant.server_id);
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let scope = current_scope()?;
        self.sessions.forget(session_id);
        match mcp_sessions::end(
            &self.store,
            session_id,
            EndReason::ClientClosed,
            &scope.metadata,
        )
        .await
        {
            Ok(_) => Ok(()),
            // The edge only lets a DELETE through for a live session of this server, so a
            // missing session here means it ended meanwhile: nothing left to do.
            Err(commands::ExecuteError::Domain(_)) => Ok(()),
            Err(e) => Err(fail(&scope, e)),
        }
    }
}
