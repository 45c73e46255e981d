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
use domain::mcp_session::{EndReason, SessionStart};
use domain::EventMetadata;
use eventstore::{EventStore, StoreError};
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

/// Whose a live session is: the server it was started on and the end user its URL named (the
/// tracking id, or none). A request on the session must come the same way: one end user's
/// session id used under another tracking id would file their calls under the wrong person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub server_id: Uuid,
    pub tracking_id: Option<String>,
}

impl SessionOwner {
    fn of(start: &SessionStart) -> Self {
        Self {
            server_id: start.server_id,
            tracking_id: start.tracking_id.clone(),
        }
    }

    fn is(&self, server_id: Uuid, tracking_id: Option<&str>) -> bool {
        self.server_id == server_id && self.tracking_id.as_deref() == tracking_id
    }
}

/// What the event store says of a session a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// Live, and the request comes from its server and end user.
    Live,
    /// Live, but another server's or another end user's: as unknown to this request as one
    /// that never existed, and left alone for its owner.
    NotYours,
    /// Ended, or never started.
    Gone,
}

/// Whose each live session is, from the event store, briefly cached.
pub struct Sessions {
    store: EventStore,
    live: RwLock<HashMap<String, (Instant, SessionOwner)>>,
}

impl Sessions {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            live: RwLock::default(),
        }
    }

    /// Whether `session_id` is a live session of `server_id` started for `tracking_id`.
    pub async fn check(
        &self,
        session_id: &str,
        server_id: Uuid,
        tracking_id: Option<&str>,
    ) -> Result<SessionCheck, StoreError> {
        let verdict = |yours: bool| {
            if yours {
                SessionCheck::Live
            } else {
                SessionCheck::NotYours
            }
        };
        let cached = self.live.read().ok().and_then(|l| {
            l.get(session_id)
                .filter(|(at, _)| at.elapsed() < SESSION_RECHECK)
                .map(|(_, owner)| owner.is(server_id, tracking_id))
        });
        if let Some(yours) = cached {
            return Ok(verdict(yours));
        }
        match mcp_sessions::live(&self.store, session_id).await? {
            Some(start) => {
                let owner = SessionOwner::of(&start);
                let yours = owner.is(server_id, tracking_id);
                self.remember(session_id, owner);
                Ok(verdict(yours))
            }
            None => {
                self.forget(session_id);
                Ok(SessionCheck::Gone)
            }
        }
    }

    fn remember(&self, session_id: &str, owner: SessionOwner) {
        if let Ok(mut live) = self.live.write() {
            if live.len() >= MAX_CACHED {
                live.clear();
            }
            live.insert(session_id.to_owned(), (Instant::now(), owner));
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
        let owner = SessionOwner::of(&start);
        let tracking_id = scope.caller.tracking_id.as_ref().map(|t| t.as_str());
        if !owner.is(scope.tenant.server_id, tracking_id) {
            return Ok(None);
        }
        let params: InitializeRequestParams = serde_json::from_value(start.initialize_params)?;
        self.sessions.remember(session_id, owner);
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
        let owner = SessionOwner::of(&start);
        mcp_sessions::start(&self.store, session_id, start, &scope.metadata)
            .await
            .map_err(|e| fail(&scope, e))?;
        self.sessions.remember(session_id, owner);
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
            Err(eventstore::ExecuteError::Domain(_)) => Ok(()),
            Err(e) => Err(fail(&scope, e)),
        }
    }
}
