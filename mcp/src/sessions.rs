//! 2025-era protocol sessions, kept in the event store so any instance continues them.
//!
//! rmcp runs a session in memory on the instance that holds it and asks a [`SessionStore`] to
//! persist the client's `initialize` and to load it when a request arrives for a session this
//! instance does not hold. Our store writes those as `McpSessionStarted` / `McpSessionEnded`
//! events. rmcp's store calls carry only the session id, so the tenant and caller of the request
//! being served travel in a task-local [`RequestScope`] that the edge sets around each request.

use crate::identity::Caller;
use crate::tenant::Tenant;
use crate::Core;
use commands::services::mcp_sessions;
use domain::end_user::{EndUserError, TrackingId};
use domain::limit::{LimitKind, Refusal};
use domain::mcp_session::{EndReason, SessionStart};
use domain::values::OrgId;
use domain::{Actor, EventMetadata};
use eventstore::{EventStore, ExecuteError, KeyKind, StoreError};
use moka::future::Cache;
use rmcp::model::InitializeRequestParams;
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// What the edge knows about the request being served.
///
/// The end user a tracking id names is not looked up (nor created) when the request arrives
/// but when the request is first served: by the handler, or by the session store recording an
/// `initialize`. A request the transport refuses (wrong `Accept` or content type, a body that
/// is not JSON-RPC, a missing or unknown session) so never creates an end user.
pub struct RequestScope {
    pub tenant: Arc<Tenant>,
    /// The event store for everything this request commits: each unit requires the tenant's
    /// slug to still name its server, so a request resolved from a stale cache entry (the
    /// server archived, the slug since taken by another org's server) files nothing at all;
    /// the edge then answers as for an unknown server (see [`RequestScope::tenant_moved`]).
    pub store: EventStore,
    pub tracking_id: Option<TrackingId>,
    /// The end user a bearer token of ours signed in (servers in `oauth` mode).
    pub signed_in: Option<Uuid>,
    /// Who and where the request comes from, before the caller is known (anonymous actor).
    pub metadata: EventMetadata,
    identified: OnceCell<Identified>,
    /// Set when the session store could not write; the edge then fails the request instead of
    /// handing out a session that no other instance could continue.
    pub store_failed: AtomicBool,
    /// Set when a platform limit (open sessions per end user) refused the session this
    /// request would start: the edge answers 429 with this message.
    pub limited: std::sync::OnceLock<String>,
    /// What the request turned out to be, for its latency metric (set by the handler).
    pub method: std::sync::OnceLock<crate::metrics::Method>,
    /// Set when a commit for this request, made through another request's store (a shared
    /// identification of one tracking id), was refused because this request's slug names
    /// another server now.
    moved: AtomicBool,
}

/// The caller of a served request and the metadata their events carry.
pub struct Identified {
    pub caller: Caller,
    pub metadata: Arc<EventMetadata>,
}

impl RequestScope {
    pub fn new(
        store: &EventStore,
        tenant: Arc<Tenant>,
        tracking_id: Option<TrackingId>,
        metadata: EventMetadata,
    ) -> Self {
        Self {
            store: store.for_owner_of(KeyKind::ServerSlug, tenant.slug.clone(), tenant.server_id),
            tenant,
            tracking_id,
            signed_in: None,
            metadata,
            identified: OnceCell::new(),
            store_failed: AtomicBool::new(false),
            limited: std::sync::OnceLock::new(),
            method: std::sync::OnceLock::new(),
            moved: AtomicBool::new(false),
        }
    }

    /// Whether something this request committed was refused because the tenant's slug no longer
    /// names its server: the request is then answered as for an unknown server.
    pub fn tenant_moved(&self) -> bool {
        self.store.owner_moved() || self.moved.load(Ordering::Acquire)
    }

    /// The caller: the end user the tracking id names (created on first sight), resolved once
    /// per request. A tracking id already seen by this process costs a cache read.
    pub async fn identified(
        &self,
        core: &Core,
    ) -> Result<&Identified, Arc<ExecuteError<EndUserError>>> {
        self.identified
            .get_or_try_init(|| async {
                let Some(tracking_id) = &self.tracking_id else {
                    let Some(id) = self.signed_in else {
                        return Ok(Identified {
                            caller: Caller::default(),
                            metadata: Arc::new(self.metadata.clone()),
                        });
                    };
                    return Ok(Identified {
                        caller: Caller {
                            end_user_id: Some(id),
                            tracking_id: None,
                        },
                        metadata: Arc::new(EventMetadata {
                            actor: Actor::EndUser { id },
                            ..self.metadata.clone()
                        }),
                    });
                };
                let id = core
                    .identities
                    .end_user(
                        &self.store,
                        self.tenant.org_id,
                        self.tenant.server_id,
                        tracking_id,
                        &self.metadata,
                    )
                    .await
                    .inspect_err(|e| {
                        if matches!(&**e, ExecuteError::OwnerMoved { kind: KeyKind::ServerSlug, key }
                            if *key == self.tenant.slug)
                        {
                            self.moved.store(true, Ordering::Release);
                        }
                    })?;
                // Signed in and tracked: both, one person; the caller is the signed-in one.
                let id = match self.signed_in {
                    Some(signed_in) => {
                        let metadata = EventMetadata {
                            actor: Actor::EndUser { id: signed_in },
                            ..self.metadata.clone()
                        };
                        core.identities
                            .merge_signed_in(
                                &self.store,
                                self.tenant.org_id,
                                signed_in,
                                id,
                                tracking_id,
                                &metadata,
                            )
                            .await;
                        signed_in
                    }
                    None => id,
                };
                Ok(Identified {
                    caller: Caller {
                        end_user_id: Some(id),
                        tracking_id: Some(tracking_id.clone()),
                    },
                    metadata: Arc::new(EventMetadata {
                        actor: Actor::EndUser { id },
                        ..self.metadata.clone()
                    }),
                })
            })
            .await
    }
}

tokio::task_local! {
    pub static SCOPE: Arc<RequestScope>;
}

/// How long a session found live is trusted before the event store is asked again. A session
/// ended through another instance stops being served here within this time.
pub const SESSION_RECHECK: Duration = Duration::from_secs(1);

const MAX_CACHED: u64 = 100_000;

/// Whose a live session is: the server it was started on, the end user its URL named (the
/// tracking id, or none) and the end user whose access token started it (in `oauth` mode). A
/// request on the session must come the same way: one end user's session id used under
/// another tracking id, or with another end user's token, would act as the wrong person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub server_id: Uuid,
    pub tracking_id: Option<String>,
    pub signed_in: Option<Uuid>,
}

impl SessionOwner {
    fn of(start: &SessionStart) -> Self {
        Self {
            server_id: start.server_id,
            tracking_id: start.tracking_id.clone(),
            signed_in: start.signed_in,
        }
    }

    fn is(&self, server_id: Uuid, tracking_id: Option<&str>, signed_in: Option<Uuid>) -> bool {
        self.server_id == server_id
            && self.tracking_id.as_deref() == tracking_id
            && self.signed_in == signed_in
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

/// Why a session's owner could not be cached: it is gone (never cached, so a session is
/// never taken for gone longer than the store says), or the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    #[error("no such live session")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose each live session is, from the event store, briefly cached. Concurrent requests on
/// one session that miss the cache share one read.
pub struct Sessions {
    store: EventStore,
    live: Cache<String, SessionOwner>,
}

impl Sessions {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            live: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(SESSION_RECHECK)
                .build(),
        }
    }

    /// Whether `session_id` is a live session of `server_id` started for `tracking_id` by
    /// `signed_in`.
    pub async fn check(
        &self,
        session_id: &str,
        server_id: Uuid,
        tracking_id: Option<&str>,
        signed_in: Option<Uuid>,
    ) -> Result<SessionCheck, Arc<Miss>> {
        let owner = self
            .live
            .try_get_with_by_ref(session_id, async {
                match mcp_sessions::live(&self.store, session_id).await? {
                    Some(start) => Ok(SessionOwner::of(&start)),
                    None => Err(Miss::Gone),
                }
            })
            .await;
        match owner {
            Ok(owner) if owner.is(server_id, tracking_id, signed_in) => Ok(SessionCheck::Live),
            Ok(_) => Ok(SessionCheck::NotYours),
            Err(miss) if matches!(*miss, Miss::Gone) => Ok(SessionCheck::Gone),
            Err(miss) => Err(miss),
        }
    }

    async fn remember(&self, session_id: &str, owner: SessionOwner) {
        self.live.insert(session_id.to_owned(), owner).await;
    }

    pub async fn forget(&self, session_id: &str) {
        self.live.invalidate(session_id).await;
    }
}

/// rmcp's session store, backed by the event store.
pub struct EventSourcedSessionStore {
    pub core: Arc<Core>,
}

impl EventSourcedSessionStore {
    /// Who ends a session: the end user its tracking id names, if they are known (a session
    /// end never brings one into being), else anonymous.
    async fn ended_by(&self, scope: &RequestScope) -> EventMetadata {
        let Some(tracking_id) = &scope.tracking_id else {
            return scope.metadata.clone();
        };
        match self
            .core
            .identities
            .known(&self.core.store, scope.tenant.org_id, tracking_id)
            .await
        {
            Ok(Some(id)) => EventMetadata {
                actor: Actor::EndUser { id },
                ..scope.metadata.clone()
            },
            Ok(None) => scope.metadata.clone(),
            Err(e) => {
                // Only the actor is at stake: the end is still recorded.
                tracing::warn!(error = %e, "looking up who ends a session failed");
                scope.metadata.clone()
            }
        }
    }
}

impl EventSourcedSessionStore {
    /// The platform limit on open sessions per end user, counted in the sessions read model
    /// (so sessions started within the projector's lag, milliseconds, are not yet counted).
    /// Past it the session is refused: the edge answers 429 and the refusal is recorded.
    async fn check_open_sessions(
        &self,
        scope: &RequestScope,
        end_user_id: Uuid,
        metadata: &EventMetadata,
    ) -> Result<(), SessionStoreError> {
        let guard = &self.core.config.guard;
        let allowed = guard.limits.sessions_per_end_user;
        if allowed == 0 {
            return Ok(());
        }
        let open = projections::models::usage::open_sessions_of(
            self.core.store.pool(),
            OrgId(scope.tenant.org_id),
            end_user_id,
            commands::limits::SESSION_IDLE,
        )
        .await
        .map_err(|e| fail(scope, e))?;
        if open < i64::from(allowed) {
            return Ok(());
        }
        let refusal = Refusal {
            limit: LimitKind::SessionsPerEndUser,
            allowed,
            org_id: Some(scope.tenant.org_id),
            server_id: Some(scope.tenant.server_id),
            end_user_id: Some(end_user_id),
            user_id: None,
            retry_after_secs: None,
        };
        guard
            .record(
                &self.core.store,
                refusal,
                &end_user_id.to_string(),
                metadata,
            )
            .await;
        let message = format!(
            "this end user has {open} open sessions, the most allowed is {allowed}: end one \
             (DELETE with its Mcp-Session-Id) or let one go idle for an hour, then initialize \
             again ({})",
            commands::errors::ErrorCode::LimitReached.as_str()
        );
        let _ = scope.limited.set(message.clone());
        Err(message.into())
    }
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
        let Some(start) = mcp_sessions::live(&self.core.store, session_id).await? else {
            return Ok(None);
        };
        let owner = SessionOwner::of(&start);
        let tracking_id = scope.tracking_id.as_ref().map(|t| t.as_str());
        if !owner.is(scope.tenant.server_id, tracking_id, scope.signed_in) {
            return Ok(None);
        }
        let params: InitializeRequestParams = serde_json::from_value(start.initialize_params)?;
        self.core.sessions.remember(session_id, owner).await;
        Ok(Some(SessionState::new(params)))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let scope = current_scope()?;
        // An accepted `initialize`: the first request that may bring an end user into being.
        let identified = scope
            .identified(&self.core)
            .await
            .map_err(|e| fail(&scope, e))?;
        if let Some(end_user_id) = identified.caller.end_user_id {
            self.check_open_sessions(&scope, end_user_id, &identified.metadata)
                .await?;
        }
        let params = &state.initialize_params;
        let start = SessionStart {
            org_id: scope.tenant.org_id,
            server_id: scope.tenant.server_id,
            end_user_id: identified.caller.end_user_id,
            tracking_id: scope.tracking_id.as_ref().map(|t| t.as_str().to_owned()),
            signed_in: scope.signed_in,
            protocol_version: params.protocol_version.to_string(),
            client_name: Some(params.client_info.name.clone()),
            client_version: Some(params.client_info.version.clone()),
            initialize_params: serde_json::to_value(params).map_err(|e| fail(&scope, e))?,
        };
        let owner = SessionOwner::of(&start);
        mcp_sessions::start(&scope.store, session_id, start, &identified.metadata)
            .await
            .map_err(|e| fail(&scope, e))?;
        self.core.sessions.remember(session_id, owner).await;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let scope = current_scope()?;
        self.core.sessions.forget(session_id).await;
        let metadata = self.ended_by(&scope).await;
        match mcp_sessions::end(&scope.store, session_id, EndReason::ClientClosed, &metadata).await
        {
            Ok(_) => Ok(()),
            // The edge only lets a DELETE through for a live session of this server, so a
            // missing session here means it ended meanwhile: nothing left to do.
            Err(eventstore::ExecuteError::Domain(_)) => Ok(()),
            Err(e) => Err(fail(&scope, e)),
        }
    }
}

/// The JSON-RPC ids of the requests in flight in each session this instance serves.
///
/// rmcp's session worker keys the answers it owes by request id: a second request reusing an id
/// still in flight takes over the first one's answer, and the other requests are never answered
/// though each of them runs. The MCP specification forbids reusing an id within a session, so
/// the edge refuses such a request before rmcp sees it (nothing runs, nothing is recorded). An
/// id is released when its request's answer has been sent, or its client went away.
#[derive(Default)]
pub struct InFlight {
    ids: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// A request id claimed in a session; dropping it releases the id.
pub struct InFlightId {
    registry: Arc<InFlight>,
    key: (String, String),
}

impl InFlight {
    /// Claims `id` (a JSON-RPC request id, as JSON: `1` and `"1"` differ) in `session_id`;
    /// `None` while another request of the session holds it.
    pub fn claim(self: &Arc<Self>, session_id: &str, id: &serde_json::Value) -> Option<InFlightId> {
        let key = (session_id.to_owned(), id.to_string());
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.insert(key.clone()).then(|| InFlightId {
            registry: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for InFlightId {
    fn drop(&mut self) {
        let mut ids = self.registry.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn an_id_is_held_per_session_until_released() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.claim("s1", &json!(7));
        assert!(first.is_some());
        assert!(
            in_flight.claim("s1", &json!(7)).is_none(),
            "reused in flight"
        );
        assert!(
            in_flight.claim("s1", &json!("7")).is_some(),
            "a string id is another id"
        );
        assert!(
            in_flight.claim("s2", &json!(7)).is_some(),
            "another session"
        );
        drop(first);
        assert!(in_flight.claim("s1", &json!(7)).is_some(), "released");
        assert_eq!(in_flight.len(), 0);
    }
}
