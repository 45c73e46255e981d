//! The Postgres event store: units of work and how they are appended, loading aggregates,
//! executing commands with optimistic concurrency, and reading the stream in cursor order.
//!
//! Appends go through the group committers (`group_commit`): concurrent units of work are
//! written in one transaction, so the durable-commit cost is paid once per batch. Each unit
//! still succeeds or fails on its own (optimistic concurrency per aggregate, unique-key claims).

mod group_commit;

use crate::cursor::Cursor;
use crate::kept::KeptConnections;
use chrono::{DateTime, Utc};
use domain::text::replace_nul_escapes;
use domain::{Aggregate, DomainEvent, EventMetadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use std::borrow::Cow;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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
        Ok(Self {
            jobs: group_commit::start(&pool),
            hot_reads: Arc::new(KeptConnections::new(pool.clone(), HOT_READ_CONNECTIONS)),
            pool,
            store_id,
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
}
