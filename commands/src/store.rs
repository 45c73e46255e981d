//! The Postgres event store.
//!
//! Appends go through a group committer: concurrent units of work are written in one
//! transaction, so the durable-commit cost is paid once per batch. Each unit still succeeds or
//! fails on its own (optimistic concurrency per aggregate, unique-key claims).

use crate::cursor::Cursor;
use crate::kept::KeptConnections;
use chrono::{DateTime, Utc};
use domain::text::replace_nul_escapes;
use domain::{Aggregate, DomainEvent, EventMetadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder, Row};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use uuid::Uuid;

/// Largest number of units of work committed in one transaction.
const MAX_GROUP: usize = 256;
/// Committer tasks: two let one batch be collected while the other waits for its fsync.
const COMMITTERS: usize = 2;
/// A group commit starts beside one still under way only once this many units are waiting, or
/// once they have waited [`JOIN_WAIT`] for it; until then they wait for it to finish and go in
/// the next group. A transaction's fixed cost (its round trips, its commit record and WAL
/// flush: ~120 µs of CPU on a 2-core machine, against a few µs per event) is what a small group
/// pays most for. Under a steady 2,000 or 3,000 step completions/s, units starting a commit of
/// their own beside another as soon as they came cost 7 to 8% more CPU per completion, and at
/// 3,000/s (a machine ~90% busy) the p99 was 53 to 170 ms against 25 to 44 ms.
const OVERLAP_FROM: usize = 16;
/// How long gathered units wait for the commit under way before starting their own beside it.
/// It bounds what a slow disk costs them: where a WAL flush takes milliseconds, two groups'
/// flushes still overlap.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// Optimistic-concurrency retries of a command before answering conflict.
pub const MAX_RETRIES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event {aggregate_type}/{aggregate_id}#{sequence} cannot be decoded: {source}")]
    Decode {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        source: serde_json::Error,
    },
    #[error("event cannot be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("the event store is shutting down")]
    Closed,
}

impl StoreError {
    /// True when the database could not be reached (the edge answers 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => is_unavailable(e),
            StoreError::Closed => true,
            _ => false,
        }
    }
}

/// Whether a database error means "cannot reach Postgres" rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another writer appended to one of the streams first.
    #[error("concurrent modification")]
    Conflict,
    /// A unique key (an email, a slug) already belongs to someone else.
    #[error("{kind} is already taken")]
    KeyTaken { kind: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    #[error(transparent)]
    Domain(E),
    #[error("concurrent modification, retries exhausted")]
    Conflict,
    #[error("{kind} is already taken")]
    KeyTaken { kind: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<CommitError> for ExecuteError<E> {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Conflict => ExecuteError::Conflict,
            CommitError::KeyTaken { kind } => ExecuteError::KeyTaken { kind },
            CommitError::Store(s) => ExecuteError::Store(s),
        }
    }
}

/// An event ready to append.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Chosen here, not by the database, so each unit of a group commit can tell its own rows.
    pub event_id: Uuid,
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: &'static str,
    pub event_version: &'static str,
    /// JSON text, written to the `json` columns as it is.
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub org_id: Option<Uuid>,
}

/// A write-side unique key: `(kind, key)` owned by one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub kind: &'static str,
    pub key: String,
    pub owner_id: Uuid,
}

/// Everything one command writes, committed atomically.
#[derive(Debug, Default, Clone)]
pub struct UnitOfWork {
    pub events: Vec<PendingEvent>,
    pub claims: Vec<KeyClaim>,
    pub releases: Vec<KeyClaim>,
    pub invitations_added: Vec<(String, Uuid)>,
    pub invitations_removed: Vec<(String, Uuid)>,
    /// Password hashes by user: credentials never travel in events.
    pub credentials: Vec<(Uuid, String)>,
    /// What must still hold about an email when this unit commits (see [`EmailGuard`]).
    pub email_guard: Option<EmailGuard>,
    /// Keys the command decided on without reading them (from a cache): the unit commits only
    /// if each is still owned as given here, else it is a conflict. Checked under a share lock
    /// on the key, so its owner cannot change between the check and the commit.
    pub expected_owners: Vec<KeyClaim>,
}

/// Serializes signups and invitations of one email: both take a transaction-scoped lock on the
/// email and re-check what they decided on, so an invitation is never left pending for an
/// account that signed up at the same moment. A failed check is a conflict: the command runs
/// again with fresh look-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailGuard {
    /// Inviting: the email must still have no account.
    NoAccount(String),
    /// Signing up: the email's pending invitations must be exactly these orgs (sorted).
    Invitations(String, Vec<Uuid>),
}

impl UnitOfWork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the events a command produced on an aggregate loaded at `version`.
    pub fn append<E: DomainEvent>(
        &mut self,
        aggregate_type: &'static str,
        aggregate_id: impl Into<String>,
        version: i64,
        events: &[E],
        metadata: &EventMetadata,
    ) -> Result<&mut Self, StoreError> {
        let aggregate_id = aggregate_id.into();
        let metadata_json =
            serde_json::value::to_raw_value(metadata).map_err(StoreError::Encode)?;
        for (i, event) in events.iter().enumerate() {
            self.events.push(PendingEvent {
                event_id: Uuid::new_v4(),
                aggregate_type,
                aggregate_id: aggregate_id.clone(),
                sequence: version + 1 + i as i64,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: encode_payload(event)?,
                metadata: metadata_json.clone(),
                org_id: metadata.org_id,
            });
        }
        Ok(self)
    }

    pub fn claim(
        &mut self,
        kind: &'static str,
        key: impl Into<String>,
        owner_id: Uuid,
    ) -> &mut Self {
        self.claims.push(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        });
        self
    }

    pub fn release(
        &mut self,
        kind: &'static str,
        key: impl Into<String>,
        owner_id: Uuid,
    ) -> &mut Self {
        self.releases.push(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        });
        self
    }

    /// Commits only if `(kind, key)` is still owned by `owner_id` (see `expected_owners`).
    pub fn expect_owner(
        &mut self,
        kind: &'static str,
        key: impl Into<String>,
        owner_id: Uuid,
    ) -> &mut Self {
        self.expected_owners.push(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        });
        self
    }

    fn has_index_writes(&self) -> bool {
        !(self.claims.is_empty()
            && self.releases.is_empty()
            && self.invitations_added.is_empty()
            && self.invitations_removed.is_empty()
            && self.credentials.is_empty()
            && self.email_guard.is_none())
    }
}

/// Splits `{"Variant": {...}}` into the payload object, as JSON text; the variant is the event
/// type. The event is serialized once, straight to text: building a value tree first (and
/// dropping it after the commit) was a visible share of every tool call.
fn encode_payload<E: DomainEvent>(event: &E) -> Result<Box<RawValue>, StoreError> {
    let text = serde_json::to_string(event).map_err(StoreError::Encode)?;
    // serde_json writes an externally tagged variant as `{"Variant":<payload>}`, compactly.
    let prefix = format!("{{\"{}\":", event.event_type());
    let payload = match text.strip_prefix(&prefix).and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.to_owned(),
        // A unit variant is a bare string: no payload.
        None if text.starts_with('"') => "null".to_owned(),
        None => text,
    };
    RawValue::from_string(payload).map_err(StoreError::Encode)
}

/// The inverse of [`encode_payload`]: reads the payload, JSON text, as the `event_type` variant
/// (a null payload is a unit variant), parsing it once, into the event itself. A NUL character
/// in it (stored before the edges refused them) reads as U+FFFD, so that no read model is ever
/// handed text it cannot store (see `domain::text`).
fn decode_payload<E: DomainEvent>(
    event_type: &str,
    payload: &RawValue,
) -> Result<E, serde_json::Error> {
    use serde::de::value::{MapAccessDeserializer, MapDeserializer, StrDeserializer};
    if let Cow::Owned(replaced) = replace_nul_escapes(payload.get()) {
        return decode_payload(event_type, &RawValue::from_string(replaced)?);
    }
    if payload.get() == "null" {
        return <E as serde::Deserialize>::deserialize(StrDeserializer::<serde_json::Error>::new(
            event_type,
        ));
    }
    let tagged =
        MapDeserializer::<_, serde_json::Error>::new(std::iter::once((event_type, payload)));
    <E as serde::Deserialize>::deserialize(MapAccessDeserializer::new(tagged))
}

/// An event as stored, with its position in the committed order. The payload and metadata are
/// JSON text as the database holds it: the relay passes them on untouched, and a projector
/// parses a payload once, into the domain event, instead of into a value tree first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub cursor: Cursor,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub org_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
}

impl StoredEvent {
    /// Decodes the payload as a domain event of the matching aggregate.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, StoreError> {
        decode_payload(&self.event_type, &self.payload).map_err(|source| StoreError::Decode {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            source,
        })
    }

    /// The metadata, typed. Malformed metadata (never written by us) reads as a system actor.
    /// A NUL in it reads as U+FFFD, as in [`StoredEvent::decode`].
    pub fn typed_metadata(&self) -> EventMetadata {
        serde_json::from_str(&replace_nul_escapes(self.metadata.get()))
            .unwrap_or_else(|_| EventMetadata::system())
    }

    /// The payload as a JSON value, for readers that look into it without knowing its type.
    /// A NUL in it reads as U+FFFD, as in [`StoredEvent::decode`].
    pub fn payload_value(&self) -> Value {
        serde_json::from_str(&replace_nul_escapes(self.payload.get())).unwrap_or(Value::Null)
    }
}

/// What a committed event got from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub cursor: Cursor,
}

/// The result of a successful command: its events and where they landed.
#[derive(Debug, Clone)]
pub struct Executed<E> {
    pub events: Vec<E>,
    pub appended: Vec<Appended>,
}

impl<E> Executed<E> {
    /// The cursor of the last event written, if any.
    pub fn last_cursor(&self) -> Option<Cursor> {
        self.appended.iter().map(|a| a.cursor).max()
    }
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub org_id: Option<Uuid>,
    pub event_types: Vec<String>,
    pub aggregate_types: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

struct Job {
    uow: UnitOfWork,
    reply: oneshot::Sender<Result<Vec<Appended>, CommitError>>,
}

/// Handle to the event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    store_id: Uuid,
    jobs: mpsc::Sender<Job>,
    hot_reads: Arc<KeptConnections>,
}

/// Connections kept for the reads every MCP call of a kind makes (see [`KeptConnections`]).
const HOT_READ_CONNECTIONS: usize = 4;

impl EventStore {
    /// Opens the store on a migrated database and starts its group committers.
    pub async fn open(pool: PgPool) -> Result<Self, StoreError> {
        let store_id: Uuid = sqlx::query_scalar("SELECT store_id FROM event_store_identity")
            .fetch_one(&pool)
            .await?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let connections = Arc::new(KeptConnections::new(pool.clone(), COMMITTERS));
        let under_way = Arc::new(UnderWay::default());
        for _ in 0..COMMITTERS {
            tokio::spawn(run_committer(
                connections.clone(),
                rx.clone(),
                under_way.clone(),
            ));
        }
        Ok(Self {
            hot_reads: Arc::new(KeptConnections::new(pool.clone(), HOT_READ_CONNECTIONS)),
            pool,
            store_id,
            jobs: tx,
        })
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

    /// Loads an aggregate from the last `reset_event` of its stream on: for aggregates where
    /// that event replaces the whole state, so what came before it need not be read. The
    /// version is the stream's last sequence, as with [`EventStore::load`].
    pub async fn load_since_reset<A: Aggregate>(
        &self,
        aggregate_id: &str,
        reset_event: &str,
    ) -> Result<(A, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= COALESCE(( \
                 SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 AND event_type = $3 ORDER BY sequence DESC LIMIT 1), 1) \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(reset_event)
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

    pub async fn commit(&self, uow: UnitOfWork) -> Result<Vec<Appended>, CommitError> {
        if uow.events.is_empty() && !uow.has_index_writes() && uow.expected_owners.is_empty() {
            return Ok(vec![]);
        }
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { uow, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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
        for _ in 0..MAX_RETRIES {
            let (aggregate, version) = self.load::<A>(aggregate_id).await?;
            let events = decide(&aggregate).map_err(ExecuteError::Domain)?;
            let mut uow = UnitOfWork::new();
            uow.append(A::TYPE, aggregate_id, version, &events, metadata)?;
            extend(&aggregate, &events, &mut uow);
            match self.commit(uow).await {
                Ok(appended) => return Ok(Executed { events, appended }),
                Err(CommitError::Conflict) => conflict_backoff().await,
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
        read_after(&self.pool, filter, after, limit).await
    }

    /// The cursor of the newest readable event (for "events behind head").
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        head(&self.pool).await
    }
}

/// See [`EventStore::head`]; free for readers without a committer (CLI).
pub async fn head(pool: &PgPool) -> Result<Cursor, StoreError> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position FROM events \
         WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
        None => Cursor::START,
    })
}

/// A short random pause before retrying a conflicted command, so contenders spread out.
pub async fn conflict_backoff() {
    let jitter = Uuid::new_v4().as_u128() % 4000;
    tokio::time::sleep(std::time::Duration::from_micros(500 + jitter as u64)).await;
}

pub const EVENT_COLUMNS: &str = "event_id, transaction_id::text::bigint AS tx, \
    global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, org_id, \
    recorded_at, payload, metadata";

/// See [`EventStore::read_after`]. Free so readers without a committer (CLI, relay) use it.
pub async fn read_after<'e, E>(
    executor: E,
    filter: &EventFilter,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
    q.push(EVENT_COLUMNS);
    q.push(" FROM events WHERE (transaction_id, global_position) > (");
    q.push_bind(after.transaction_id.to_string());
    q.push("::xid8, ");
    q.push_bind(after.global_position);
    q.push(") AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())");
    if let Some(org_id) = filter.org_id {
        q.push(" AND org_id = ").push_bind(org_id);
    }
    if !filter.event_types.is_empty() {
        q.push(" AND event_type = ANY(")
            .push_bind(filter.event_types.clone())
            .push(")");
    }
    if !filter.aggregate_types.is_empty() {
        q.push(" AND aggregate_type = ANY(")
            .push_bind(filter.aggregate_types.clone())
            .push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND recorded_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND recorded_at < ").push_bind(until);
    }
    if filter.org_id.is_some() {
        q.push(" ORDER BY org_id, transaction_id, global_position LIMIT ");
    } else {
        q.push(" ORDER BY transaction_id, global_position LIMIT ");
    }
    q.push_bind(limit);
    let rows = q.build().fetch_all(executor).await?;
    rows.iter().map(row_to_event).collect()
}

pub fn row_to_event(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        event_id: row.try_get("event_id")?,
        cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        org_id: row.try_get("org_id")?,
        recorded_at: row.try_get("recorded_at")?,
        payload: row.try_get::<&RawValue, _>("payload")?.to_owned(),
        metadata: row.try_get::<&RawValue, _>("metadata")?.to_owned(),
    })
}

/// The group commits under way, shared by the committers (see [`OVERLAP_FROM`]).
#[derive(Default)]
struct UnderWay {
    commits: AtomicUsize,
    finished: Notify,
}

impl UnderWay {
    /// Counts a commit as under way until the returned guard is dropped, however it ends.
    fn count(&self) -> CommitUnderWay<'_> {
        self.commits.fetch_add(1, Ordering::AcqRel);
        CommitUnderWay(self)
    }
}

struct CommitUnderWay<'a>(&'a UnderWay);

impl Drop for CommitUnderWay<'_> {
    fn drop(&mut self) {
        self.0.commits.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.notify_waiters();
    }
}

async fn run_committer(
    connections: Arc<KeptConnections>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    under_way: Arc<UnderWay>,
) {
    loop {
        let batch = {
            let mut rx = jobs.lock().await;
            match rx.recv().await {
                Some(job) => gather(&mut rx, vec![job], &under_way, JOIN_WAIT).await,
                None => return,
            }
        };
        let uows: Vec<&UnitOfWork> = batch.iter().map(|j| &j.uow).collect();
        let committed = {
            let _counted = under_way.count();
            connections.run(|conn| commit_on(conn, &uows)).await
        };
        match committed {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) if is_unavailable(&e) => unreachable_store(batch, &e),
            Err(e) => {
                // Something in the group failed the shared transaction (a deadlock, a value
                // Postgres refused). Commit each unit alone, so only the culprit fails, with
                // its own error.
                tracing::debug!(error = %e, units = batch.len(), "group commit failed; committing units one by one");
                for job in batch {
                    let alone = [&job.uow];
                    let result = match connections.run(|conn| commit_on(conn, &alone)).await {
                        Ok(mut results) => results.pop().unwrap_or(Err(CommitError::Conflict)),
                        Err(e) if is_retryable(&e) => Err(CommitError::Conflict),
                        Err(e) => Err(CommitError::Store(StoreError::Database(e))),
                    };
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Adds what is waiting to `batch`; while another group commit is under way and fewer than
/// [`OVERLAP_FROM`] units are gathered, keeps gathering until it finishes (at most
/// `join_wait`).
async fn gather(
    rx: &mut mpsc::Receiver<Job>,
    mut batch: Vec<Job>,
    under_way: &UnderWay,
    join_wait: std::time::Duration,
) -> Vec<Job> {
    let give_up = tokio::time::sleep(join_wait);
    tokio::pin!(give_up);
    let mut waited_out = false;
    loop {
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() >= OVERLAP_FROM || waited_out {
            return batch;
        }
        // Registered before the count is read, so a commit finishing in between still wakes us.
        let finished = under_way.finished.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        if under_way.commits.load(Ordering::Acquire) == 0 {
            return batch;
        }
        // Whatever ends the wait, the next round takes what came meanwhile.
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => batch.push(job),
                None => return batch,
            },
            () = &mut finished => {}
            () = &mut give_up => waited_out = true,
        }
    }
}

/// [`commit_group`] on a kept connection, handed back with the results.
async fn commit_on(
    mut conn: PgConnection,
    uows: &[&UnitOfWork],
) -> Result<(PgConnection, Vec<Result<Vec<Appended>, CommitError>>), sqlx::Error> {
    let results = commit_group(&mut conn, uows).await?;
    Ok((conn, results))
}

/// Answers a batch that could not reach Postgres: unavailable, so the edge says 503.
fn unreachable_store(batch: Vec<Job>, error: &sqlx::Error) {
    tracing::warn!(%error, units = batch.len(), "event store unreachable");
    for job in batch {
        let _ = job.reply.send(Err(CommitError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        ))));
    }
}

/// Deadlocks and serialization failures: the unit may simply be tried again.
fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Writes a group of units of work in one transaction. A group of plain appends (the hot path:
/// tool calls, step completions) is one statement, [`append_group`]. A group with index writes
/// (rare: key claims, credentials, invitations) runs in an explicit transaction with a savepoint
/// per such unit; its plain appends go in one multi-row insert, and a unit that lost a sequence
/// race has its partial rows removed before commit.
async fn commit_group(
    conn: &mut PgConnection,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    if !uows.iter().any(|uow| uow.has_index_writes()) {
        return append_group(conn, uows).await;
    }
    let mut tx = conn.begin().await?;
    match write_group(&mut tx, uows).await {
        Ok(results) => {
            tx.commit().await?;
            Ok(results)
        }
        Err(e) => {
            // Ended at once: a kept connection is closed after a failure, but a transaction
            // left open until then would hold every event reader back.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The hot path: a group of plain appends (and expected owners) in one round trip, through the
/// `append_group` function (migrations 0008 and 0009), whose single statement is its own
/// transaction.
async fn append_group(
    conn: &mut PgConnection,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    let mut events: Vec<(i32, &PendingEvent)> = uows
        .iter()
        .enumerate()
        .flat_map(|(i, uow)| uow.events.iter().map(move |e| (i as i32, e)))
        .collect();
    events.sort_by(|(_, a), (_, b)| in_lock_order(a, b));
    let mut units = Vec::with_capacity(events.len());
    let mut columns = EventColumns::with_capacity(events.len());
    for (unit, e) in &events {
        units.push(*unit);
        columns.push(e);
    }
    let expected = ExpectedOwners::of(uows);
    let query = sqlx::query(
        "SELECT event_id, tx, global_position, refused_unit FROM append_group(\
         $1::int[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::json[], \
         $8::json[], $9::uuid[], $10::uuid[], $11::int[], $12::text[], $13::text[], $14::uuid[])",
    )
    .bind(&units);
    let rows = expected
        .bind_to(columns.bind_to(query))
        .fetch_all(&mut *conn)
        .await?;
    let mut refused = vec![false; uows.len()];
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        match row.try_get::<Option<i32>, _>("refused_unit")? {
            Some(unit) => {
                if let Some(r) = usize::try_from(unit).ok().and_then(|u| refused.get_mut(u)) {
                    *r = true;
                }
            }
            None => {
                let event_id: Uuid = row.try_get("event_id")?;
                let cursor = Cursor::new(row.try_get("tx")?, row.try_get("global_position")?);
                stored.insert(event_id, Appended { event_id, cursor });
            }
        }
    }
    Ok(uows
        .iter()
        .zip(refused)
        .map(|(uow, refused)| {
            let appended: Option<Vec<Appended>> = uow
                .events
                .iter()
                .map(|e| stored.get(&e.event_id).copied())
                .collect();
            match appended {
                Some(appended) if !refused => Ok(appended),
                _ => Err(CommitError::Conflict),
            }
        })
        .collect())
}

async fn write_group(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uows: &[&UnitOfWork],
) -> Result<Vec<Result<Vec<Appended>, CommitError>>, sqlx::Error> {
    let mut results: Vec<Option<Result<Vec<Appended>, CommitError>>> =
        (0..uows.len()).map(|_| None).collect();

    // Units decided on keys they did not read: one check for the whole group, first.
    let expected = ExpectedOwners::of(uows);
    if !expected.units.is_empty() {
        let refused: Vec<i32> = expected
            .bind_to(sqlx::query(
                "SELECT refused_by_owners($1::int[], $2::text[], $3::text[], $4::uuid[])",
            ))
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        for unit in refused {
            if let Some(result) = usize::try_from(unit).ok().and_then(|u| results.get_mut(u)) {
                *result = Some(Err(CommitError::Conflict));
            }
        }
    }

    for (i, uow) in uows.iter().enumerate() {
        if results[i].is_none() && uow.has_index_writes() {
            results[i] = Some(commit_with_savepoint(tx, uow).await?);
        }
    }

    let plain: Vec<usize> = (0..uows.len()).filter(|i| results[*i].is_none()).collect();
    if !plain.is_empty() {
        let mut events: Vec<&PendingEvent> =
            plain.iter().flat_map(|i| uows[*i].events.iter()).collect();
        events.sort_by(|a, b| in_lock_order(a, b));
        let inserted = insert_events(tx, &events, true).await?;
        let mut to_delete: Vec<&PendingEvent> = Vec::new();
        for i in plain {
            let uow = uows[i];
            let got: Vec<Option<Appended>> = uow
                .events
                .iter()
                .map(|e| inserted.get(&e.event_id).copied())
                .collect();
            if got.iter().all(Option::is_some) {
                results[i] = Some(Ok(got.into_iter().flatten().collect()));
            } else {
                to_delete.extend(
                    uow.events
                        .iter()
                        .zip(&got)
                        .filter(|(_, g)| g.is_some())
                        .map(|(e, _)| e),
                );
                results[i] = Some(Err(CommitError::Conflict));
            }
        }
        if !to_delete.is_empty() {
            delete_events(tx, &to_delete).await?;
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(CommitError::Conflict)))
        .collect())
}

async fn commit_with_savepoint(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uow: &UnitOfWork,
) -> Result<Result<Vec<Appended>, CommitError>, sqlx::Error> {
    sqlx::query("SAVEPOINT unit_of_work")
        .execute(&mut **tx)
        .await?;
    match write_unit(tx, uow).await {
        Ok(appended) => {
            sqlx::query("RELEASE SAVEPOINT unit_of_work")
                .execute(&mut **tx)
                .await?;
            Ok(Ok(appended))
        }
        Err(UnitFailure::Refused(e)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT unit_of_work")
                .execute(&mut **tx)
                .await?;
            Ok(Err(e))
        }
        Err(UnitFailure::Db(e)) => Err(e),
    }
}

enum UnitFailure {
    Refused(CommitError),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for UnitFailure {
    fn from(e: sqlx::Error) -> Self {
        UnitFailure::Db(e)
    }
}

async fn write_unit(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    uow: &UnitOfWork,
) -> Result<Vec<Appended>, UnitFailure> {
    if let Some(guard) = &uow.email_guard {
        let email = match guard {
            EmailGuard::NoAccount(e) | EmailGuard::Invitations(e, _) => e,
        };
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mcplatform:email:' || $1, 0))")
            .bind(email)
            .execute(&mut **tx)
            .await?;
        let holds = match guard {
            EmailGuard::NoAccount(email) => {
                !sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM unique_keys WHERE kind = $1 AND key = $2)",
                )
                .bind(crate::keys::EMAIL)
                .bind(email)
                .fetch_one(&mut **tx)
                .await?
            }
            EmailGuard::Invitations(email, expected) => {
                let pending: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT org_id FROM pending_invitations WHERE email = $1 ORDER BY org_id",
                )
                .bind(email)
                .fetch_all(&mut **tx)
                .await?;
                &pending == expected
            }
        };
        if !holds {
            return Err(UnitFailure::Refused(CommitError::Conflict));
        }
    }
    for claim in &uow.releases {
        sqlx::query("DELETE FROM unique_keys WHERE kind = $1 AND key = $2 AND owner_id = $3")
            .bind(claim.kind)
            .bind(&claim.key)
            .bind(claim.owner_id)
            .execute(&mut **tx)
            .await?;
    }
    for claim in &uow.claims {
        let inserted = sqlx::query(
            "INSERT INTO unique_keys (kind, key, owner_id) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, key) DO UPDATE SET owner_id = EXCLUDED.owner_id \
             WHERE unique_keys.owner_id = EXCLUDED.owner_id",
        )
        .bind(claim.kind)
        .bind(&claim.key)
        .bind(claim.owner_id)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(UnitFailure::Refused(CommitError::KeyTaken {
                kind: claim.kind.to_owned(),
            }));
        }
    }
    for (email, org_id) in &uow.invitations_added {
        sqlx::query("INSERT INTO pending_invitations (email, org_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(email)
            .bind(org_id)
            .execute(&mut **tx)
            .await?;
    }
    for (email, org_id) in &uow.invitations_removed {
        sqlx::query("DELETE FROM pending_invitations WHERE email = $1 AND org_id = $2")
            .bind(email)
            .bind(org_id)
            .execute(&mut **tx)
            .await?;
    }
    for (user_id, password_hash) in &uow.credentials {
        sqlx::query(
            "INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
             updated_at = now()",
        )
        .bind(user_id)
        .bind(password_hash)
        .execute(&mut **tx)
        .await?;
    }
    let events: Vec<&PendingEvent> = uow.events.iter().collect();
    let inserted = insert_events(tx, &events, true).await?;
    let mut appended = Vec::with_capacity(events.len());
    for e in &events {
        match inserted.get(&e.event_id) {
            Some(a) => appended.push(*a),
            None => return Err(UnitFailure::Refused(CommitError::Conflict)),
        }
    }
    Ok(appended)
}

/// One lock order for the events of every group (their primary key order), so two committers
/// never deadlock on each other.
fn in_lock_order(a: &PendingEvent, b: &PendingEvent) -> std::cmp::Ordering {
    (a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
        b.aggregate_type,
        &b.aggregate_id,
        b.sequence,
    ))
}

/// The expected key owners of a group's units, each with its unit's index, as the arrays the
/// `refused_by_owners` check binds (migrations 0008 and 0009).
struct ExpectedOwners<'a> {
    units: Vec<i32>,
    kinds: Vec<&'a str>,
    keys: Vec<&'a str>,
    owner_ids: Vec<Uuid>,
}

impl<'a> ExpectedOwners<'a> {
    fn of(uows: &[&'a UnitOfWork]) -> Self {
        let mut expected = Self {
            units: Vec::new(),
            kinds: Vec::new(),
            keys: Vec::new(),
            owner_ids: Vec::new(),
        };
        for (i, uow) in uows.iter().enumerate() {
            for claim in &uow.expected_owners {
                expected.units.push(i as i32);
                expected.kinds.push(claim.kind);
                expected.keys.push(claim.key.as_str());
                expected.owner_ids.push(claim.owner_id);
            }
        }
        expected
    }

    /// Binds units, kinds, keys and owner ids as the next four parameters.
    fn bind_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.units)
            .bind(&self.kinds)
            .bind(&self.keys)
            .bind(&self.owner_ids)
    }
}

/// Events as the column arrays a multi-row insert binds.
struct EventColumns<'a> {
    event_ids: Vec<Uuid>,
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    /// Sent as text and cast to `json` in SQL (`json[]` is not a type sqlx binds).
    payloads: Vec<&'a str>,
    metadatas: Vec<&'a str>,
    org_ids: Vec<Option<Uuid>>,
}

impl<'a> EventColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            event_ids: Vec::with_capacity(n),
            aggregate_types: Vec::with_capacity(n),
            aggregate_ids: Vec::with_capacity(n),
            sequences: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadatas: Vec::with_capacity(n),
            org_ids: Vec::with_capacity(n),
        }
    }

    /// Binds the columns, in this order, as the next nine parameters: aggregate types and ids,
    /// sequences, event types, versions, payloads, metadata, org ids and event ids.
    fn bind_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadatas)
            .bind(&self.org_ids)
            .bind(&self.event_ids)
    }

    fn push(&mut self, e: &'a PendingEvent) {
        self.event_ids.push(e.event_id);
        self.aggregate_types.push(e.aggregate_type);
        self.aggregate_ids.push(e.aggregate_id.as_str());
        self.sequences.push(e.sequence);
        self.event_types.push(e.event_type);
        self.versions.push(e.event_version);
        self.payloads.push(e.payload.get());
        self.metadatas.push(e.metadata.get());
        self.org_ids.push(e.org_id);
    }
}

/// One multi-row insert. With `skip_conflicts`, rows whose (aggregate, sequence) exists are
/// skipped and simply missing from the result.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[&PendingEvent],
    skip_conflicts: bool,
) -> Result<HashMap<Uuid, Appended>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let mut columns = EventColumns::with_capacity(events.len());
    for e in events {
        columns.push(e);
    }
    let sql = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, org_id, event_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::json[], $7::json[], $8::uuid[], $9::uuid[]) {} \
         RETURNING event_id, transaction_id::text::bigint AS tx, global_position",
        if skip_conflicts {
            "ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING"
        } else {
            ""
        }
    );
    let rows = columns
        .bind_to(sqlx::query(&sql))
        .fetch_all(&mut **tx)
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let event_id: Uuid = row.try_get("event_id")?;
        out.insert(
            event_id,
            Appended {
                event_id,
                cursor: Cursor::new(row.try_get("tx")?, row.try_get("global_position")?),
            },
        );
    }
    Ok(out)
}

/// Removes rows this group inserted for a unit that lost a race, by their primary key (the
/// rows are this transaction's own: the key was free when they went in).
async fn delete_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[&PendingEvent],
) -> Result<(), sqlx::Error> {
    let types: Vec<&str> = events.iter().map(|e| e.aggregate_type).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    sqlx::query(
        "DELETE FROM events e USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS k(t, i, s) \
         WHERE e.aggregate_type = k.t AND e.aggregate_id = k.i AND e.sequence = k.s",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::organization::OrganizationEvent;
    use domain::values::{Email, Role};

    #[test]
    fn payloads_round_trip_without_the_variant_tag() {
        let event = OrganizationEvent::MemberAdded {
            user_id: Uuid::nil(),
            email: Email::parse("a@b.co").unwrap(),
            role: Role::Admin,
        };
        let payload = encode_payload(&event).unwrap();
        let value: Value = serde_json::from_str(payload.get()).unwrap();
        assert_eq!(value["role"], "admin");
        assert!(value.get("MemberAdded").is_none());
        let back: OrganizationEvent = decode_payload("MemberAdded", &payload).unwrap();
        assert_eq!(back, event);
        let empty = RawValue::from_string("{}".to_owned()).unwrap();
        assert!(decode_payload::<OrganizationEvent>("NoSuchEvent", &empty).is_err());
    }

    #[test]
    fn a_nul_stored_in_a_payload_reads_as_a_replacement_character() {
        use domain::tool_call::{Outcome, ToolCallEvent, ToolCallRecord};
        let event = ToolCallEvent::ToolCalled(ToolCallRecord {
            server_id: Uuid::nil(),
            session_id: None,
            end_user_id: None,
            tracking_id: None,
            tool: "Ada".into(),
            outcome: Outcome::Ok,
            error: None,
            duration_ms: 1,
            client_name: None,
            client_version: None,
            arguments: Value::Null,
        });
        let payload = encode_payload(&event).unwrap();
        let stored = RawValue::from_string(payload.get().replace("Ada", "A\\u0000da")).unwrap();
        let ToolCallEvent::ToolCalled(read) = decode_payload("ToolCalled", &stored).unwrap();
        assert_eq!(read.tool, "A\u{FFFD}da");
    }

    fn job() -> Job {
        Job {
            uow: UnitOfWork::new(),
            reply: oneshot::channel().0,
        }
    }

    /// Gathers from one new unit with no wait of its own to run out; a gathering that waits
    /// when it should not (or misses its wake-up) fails after a generous timeout instead.
    async fn gather_without_giving_up(
        rx: &mut mpsc::Receiver<Job>,
        under_way: &UnderWay,
        expected: &str,
    ) -> Vec<Job> {
        let forever = std::time::Duration::from_secs(3600);
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            gather(rx, vec![job()], under_way, forever),
        )
        .await
        .expect(expected)
    }

    #[tokio::test]
    async fn with_no_commit_under_way_a_group_goes_at_once_with_what_is_waiting() {
        let (tx, mut rx) = mpsc::channel(64);
        for _ in 0..3 {
            tx.try_send(job()).unwrap();
        }
        let batch = gather(&mut rx, vec![job()], &UnderWay::default(), JOIN_WAIT).await;
        assert_eq!(batch.len(), 4);
    }

    #[tokio::test]
    async fn a_small_group_waits_for_the_commit_under_way_and_takes_what_came_meanwhile() {
        let (tx, mut rx) = mpsc::channel(64);
        let under_way = Arc::new(UnderWay::default());
        let finishing = {
            let under_way = under_way.clone();
            tokio::spawn(async move {
                let commit = under_way.count();
                tokio::task::yield_now().await;
                tx.send(job()).await.unwrap();
                tx.send(job()).await.unwrap();
                drop(commit);
            })
        };
        tokio::task::yield_now().await;
        // Only the commit's end can end this wait.
        let batch = gather_without_giving_up(&mut rx, &under_way, "woken when it finished").await;
        finishing.await.unwrap();
        assert_eq!(batch.len(), 3);
    }

    #[tokio::test]
    async fn a_full_enough_group_or_a_long_wait_starts_beside_the_commit_under_way() {
        let (tx, mut rx) = mpsc::channel(64);
        let under_way = UnderWay::default();
        let _commit = under_way.count();
        for _ in 1..OVERLAP_FROM {
            tx.try_send(job()).unwrap();
        }
        let batch = gather_without_giving_up(&mut rx, &under_way, "a full group goes").await;
        assert_eq!(batch.len(), OVERLAP_FROM);

        // The commit under way never finishes: the lone unit goes when its wait runs out.
        let started = std::time::Instant::now();
        let batch = gather(&mut rx, vec![job()], &under_way, JOIN_WAIT).await;
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= JOIN_WAIT);
    }
}
