//! The handle to the Postgres event store: loading aggregates, committing units of work,
//! executing commands with optimistic concurrency, and reading the log in cursor order.
//!
//! Appends go through the group committers (`group_commit`): concurrent units of work are
//! written in one transaction, so the durable-commit cost is paid once per batch. Each unit
//! still succeeds or fails on its own (optimistic concurrency per aggregate, unique-key claims).

use crate::codec::decode_payload;
use crate::cursor::Cursor;
use crate::error::{CommitError, ExecuteError, StoreError};
use crate::event::{Appended, Executed, Recorded, StoredEvent};
use crate::group_commit;
use crate::index::KeyKind;
use crate::kept::KeptConnections;
use crate::reading::{self, EventFilter};
use crate::retry::{ConflictPauses, MAX_RETRIES};
use crate::unit_of_work::{KeyClaim, UnitOfWork};
use domain::{Aggregate, EventMetadata};
use serde_json::value::RawValue;
use sqlx::{PgPool, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// A unit of work on its way to a committer, with where to send the outcome.
pub(crate) struct Job {
    pub(crate) uow: UnitOfWork,
    pub(crate) reply: oneshot::Sender<Result<Vec<Appended>, CommitError>>,
}

/// Handle to the event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    store_id: Uuid,
    jobs: mpsc::Sender<Job>,
    hot_reads: Arc<KeptConnections>,
    /// Set on a handle from [`EventStore::for_owner_of`].
    owner: Option<Arc<RequiredOwner>>,
    /// Shared by every clone of one opened store.
    watchers: Arc<Watchers>,
}

/// The owner every unit committed through a handle is written for.
struct RequiredOwner {
    claim: KeyClaim,
    moved: AtomicBool,
}

/// What to run after a commit that appended events of an aggregate type (in this process),
/// told each such event's stream id and event type.
type Watcher = Arc<dyn Fn(&str, &'static str) + Send + Sync>;

#[derive(Default)]
struct Watchers(RwLock<Vec<(&'static str, Watcher)>>);

/// The watchers a unit wakes, with the events (stream id, event type) each is told of.
type Woken = Vec<(Watcher, Vec<(String, &'static str)>)>;

impl Watchers {
    /// The watchers of the aggregate types `uow` appends to, with those events (none, without
    /// allocating, for the usual unit nobody watches).
    fn of(&self, uow: &UnitOfWork) -> Woken {
        let Ok(watchers) = self.0.read() else {
            return Vec::new();
        };
        watchers
            .iter()
            .filter(|(kind, _)| uow.events.iter().any(|e| e.aggregate_type == *kind))
            .map(|(kind, watcher)| {
                let events = uow
                    .events
                    .iter()
                    .filter(|e| e.aggregate_type == *kind)
                    .map(|e| (e.aggregate_id.clone(), e.event_type))
                    .collect();
                (watcher.clone(), events)
            })
            .collect()
    }
}

/// Connections kept for the reads every MCP call of a kind makes (see [`KeptConnections`]).
const HOT_READ_CONNECTIONS: usize = 4;

impl EventStore {
    /// Opens the store on a migrated database and starts its group committers.
    pub async fn open(pool: PgPool) -> Result<Self, StoreError> {
        let store_id: Uuid = sqlx::query_scalar("SELECT store_id FROM event_store_identity")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            jobs: group_commit::start(&pool),
            hot_reads: Arc::new(KeptConnections::new(pool.clone(), HOT_READ_CONNECTIONS)),
            pool,
            store_id,
            owner: None,
            watchers: Arc::default(),
        })
    }

    /// A handle whose every commit is written for the owner of `(kind, key)`: each unit it
    /// commits requires that `owner_id` still owns the key (`UnitOfWork::require_owner`), and
    /// is refused as [`CommitError::OwnerMoved`] otherwise. For units decided on a cached look-up
    /// of the key (the MCP edge's server, resolved from its slug): whatever such a handle
    /// commits can never be filed under an owner the key no longer names.
    pub fn for_owner_of(&self, kind: KeyKind, key: impl Into<String>, owner_id: Uuid) -> Self {
        Self {
            owner: Some(Arc::new(RequiredOwner {
                claim: KeyClaim {
                    kind,
                    key: key.into(),
                    owner_id,
                },
                moved: AtomicBool::new(false),
            })),
            ..self.clone()
        }
    }

    /// Whether a commit through this handle (or a clone) was refused because its owner moved
    /// (see [`EventStore::for_owner_of`]).
    pub fn owner_moved(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.moved.load(Ordering::Acquire))
    }

    /// Runs `watcher` after every commit, through this store or any handle of it, that appends
    /// events of `A`: in this process only (other processes' commits are not seen).
    pub fn on_commit_of<A: Aggregate>(&self, watcher: impl Fn() + Send + Sync + 'static) {
        self.on_events_of::<A>(move |_, _| watcher());
    }

    /// Runs `watcher` for each event of `A` a commit appended (its stream id and event type),
    /// through this store or any handle of it, in this process only.
    pub fn on_events_of<A: Aggregate>(
        &self,
        watcher: impl Fn(&str, &'static str) + Send + Sync + 'static,
    ) {
        if let Ok(mut watchers) = self.watchers.0.write() {
            watchers.push((A::TYPE, Arc::new(watcher)));
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// For a read that runs on every call of a hot path: no round trip besides its own.
    pub fn hot_reads(&self) -> &KeptConnections {
        &self.hot_reads
    }

    /// The id of this event store, carried by every message the relay publishes.
    pub fn store_id(&self) -> Uuid {
        self.store_id
    }

    /// Loads an aggregate from the last of its stream's `reset_events` on: for aggregates
    /// where those events replace the whole state, so what came before need not be read. The
    /// version is the stream's last sequence, as with [`EventStore::load`].
    pub async fn load_since_reset<A: Aggregate>(
        &self,
        aggregate_id: &str,
        reset_events: &'static [&'static str],
    ) -> Result<(A, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= COALESCE(( \
                 SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 AND event_type = ANY($3) ORDER BY sequence DESC LIMIT 1), 1) \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(reset_events)
        .fetch_all(&self.pool)
        .await?;
        self.replay_rows::<A>(aggregate_id, rows)
    }

    /// Loads an aggregate and the version (last sequence) it was built from.
    pub async fn load<A: Aggregate>(&self, aggregate_id: &str) -> Result<(A, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await?;
        self.replay_rows::<A>(aggregate_id, rows)
    }

    /// A stream's events in order, each with when it was recorded: for a write answered while
    /// the read models lag, which still owes the times of what it changed (when the resource
    /// was created, or assigned).
    pub async fn history<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<Recorded<A::Event>>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload, recorded_at FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let sequence: i64 = row.try_get("sequence")?;
                let event_type: &str = row.try_get("event_type")?;
                let payload: &RawValue = row.try_get("payload")?;
                let event =
                    decode_payload(event_type, payload).map_err(|source| StoreError::Decode {
                        aggregate_type: A::TYPE.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        sequence,
                        source,
                    })?;
                Ok(Recorded {
                    sequence,
                    recorded_at: row.try_get("recorded_at")?,
                    event,
                })
            })
            .collect()
    }

    /// Replays rows of `sequence, event_type, payload` (in sequence order) into an aggregate;
    /// rows whose sequence is null (an outer join that found no event) are skipped.
    pub fn replay_rows<A: Aggregate>(
        &self,
        aggregate_id: &str,
        rows: Vec<sqlx::postgres::PgRow>,
    ) -> Result<(A, i64), StoreError> {
        self.replay_rows_onto(A::default(), 0, aggregate_id, rows)
    }

    /// Like [`EventStore::replay_rows`], onto an aggregate already at `version` (the rows
    /// being the events after it).
    pub fn replay_rows_onto<A: Aggregate>(
        &self,
        mut aggregate: A,
        mut version: i64,
        aggregate_id: &str,
        rows: Vec<sqlx::postgres::PgRow>,
    ) -> Result<(A, i64), StoreError> {
        for row in rows {
            let Some(sequence) = row.try_get::<Option<i64>, _>("sequence")? else {
                continue;
            };
            let event_type: &str = row.try_get("event_type")?;
            let payload: &RawValue = row.try_get("payload")?;
            let event: A::Event =
                decode_payload(event_type, payload).map_err(|source| StoreError::Decode {
                    aggregate_type: A::TYPE.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    sequence,
                    source,
                })?;
            aggregate.apply(&event);
            version = sequence;
        }
        Ok((aggregate, version))
    }

    pub async fn commit(&self, mut uow: UnitOfWork) -> Result<Vec<Appended>, CommitError> {
        if uow.is_empty() {
            return Ok(vec![]);
        }
        if let Some(owner) = &self.owner {
            uow.required_owners.push(owner.claim.clone());
        }
        let watchers = self.watchers.of(&uow);
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { uow, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = rx.await.map_err(|_| StoreError::Closed)?;
        match &result {
            Ok(_) => {
                for (watcher, events) in &watchers {
                    for (id, event_type) in events {
                        watcher(id, event_type);
                    }
                }
            }
            Err(CommitError::OwnerMoved { kind, key }) => {
                if let Some(owner) = &self.owner {
                    if owner.claim.kind == *kind && owner.claim.key == *key {
                        owner.moved.store(true, Ordering::Release);
                    }
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Loads an aggregate, decides a command with `decide`, and commits the events together
    /// with whatever `extend` adds to the unit of work. On a concurrency conflict the whole
    /// cycle runs again against the fresh state (the command is re-validated, so a retry never
    /// applies a stale decision), a bounded number of times.
    pub async fn execute<A, D, X>(
        &self,
        aggregate_id: &str,
        metadata: &EventMetadata,
        mut decide: D,
        mut extend: X,
    ) -> Result<Executed<A::Event>, ExecuteError<A::Error>>
    where
        A: Aggregate,
        D: FnMut(&A) -> Result<Vec<A::Event>, A::Error>,
        X: FnMut(&A, &[A::Event], &mut UnitOfWork),
    {
        let mut pauses = ConflictPauses::new();
        for _ in 0..MAX_RETRIES {
            let (aggregate, version) = self.load::<A>(aggregate_id).await?;
            let events = decide(&aggregate).map_err(ExecuteError::Domain)?;
            let mut uow = UnitOfWork::new();
            uow.append::<A>(aggregate_id, version, &events, metadata)?;
            extend(&aggregate, &events, &mut uow);
            match self.commit(uow).await {
                Ok(appended) => return Ok(Executed { events, appended }),
                Err(CommitError::Conflict) => pauses.pause().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// Runs a command on an aggregate with nothing else in the unit of work.
    pub async fn run<A: Aggregate>(
        &self,
        aggregate_id: &str,
        metadata: &EventMetadata,
        command: impl Fn(&A) -> A::Command,
    ) -> Result<Executed<A::Event>, ExecuteError<A::Error>> {
        self.execute::<A, _, _>(
            aggregate_id,
            metadata,
            |a| a.handle(command(a)),
            |_, _, _| {},
        )
        .await
    }

    /// Reads up to `limit` committed events after `after`, in cursor order. Never returns an
    /// event while an older transaction that could still append before it is running.
    pub async fn read_after(
        &self,
        filter: &EventFilter,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        reading::read_after(&self.pool, filter, after, limit).await
    }

    /// The cursor of the newest readable event (for "events behind head").
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        reading::head(&self.pool).await
    }
}
