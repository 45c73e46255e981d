//! The relay: publishes committed events, in cursor order, to the JetStream stream.
//!
//! One leader at a time (Postgres advisory lock); other instances stand by. It reads after its
//! checkpoint, publishes each event with `Nats-Msg-Id = event_id` (JetStream drops
//! re-publishes), awaits the acks in order, then moves its checkpoint on (stored at most every
//! `CHECKPOINT_EVERY` under load, and whenever it has caught up). LISTEN/NOTIFY wakes it on
//! append; polling is the fallback. When NATS is away it retries with backoff while appends
//! keep succeeding; it catches up when NATS is back.

use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::leader::LeaderLock;
use crate::nats::{Topology, HEADER_CURSOR, HEADER_STORE_ID};
use crate::reading::{read_after, EventFilter};
use crate::retry;
use async_nats::jetstream;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use backon::Retryable;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Advisory-lock key of the relay leader ("mcplrely").
const RELAY_LOCK: i64 = 0x6d63_706c_7265_6c79;
const PAGE: i64 = 2000;
const NOTIFY_CHANNEL: &str = "mcplatform_events";
/// Under load the checkpoint is written at most this often (and always once caught up): each
/// write is a commit of its own, and a relay that restarts from an older checkpoint only
/// re-publishes what JetStream's duplicate window and the projectors' cursors drop anyway.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A page smaller than this was read while commits were still arriving: waiting this long
/// before the next read lets the next page gather more of them, so the fixed cost of a round
/// (the read, the acks, the projectors' transactions downstream) is shared by more events.
const SMALL_PAGE: usize = 100;
const LINGER: Duration = Duration::from_millis(6);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("nats: {0}")]
    Nats(String),
    #[error("another relay became leader")]
    LostLeadership,
    #[error("the JetStream stream does not exist")]
    StreamMissing,
}

pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    topology: Topology,
    store_id: Uuid,
}

impl Relay {
    pub fn new(pool: PgPool, js: jetstream::Context, topology: Topology, store_id: Uuid) -> Self {
        Self {
            pool,
            js,
            topology,
            store_id,
        }
    }

    /// Runs forever: stands by until it holds the leader lock, then relays. Errors are logged
    /// and retried with backoff ([`retry::WORKERS`]).
    pub async fn run(self) {
        loop {
            let _ = (|| self.lead())
                .retry(retry::WORKERS)
                .notify(|e, pause| {
                    tracing::warn!(error = %e, ?pause, "relay interrupted; retrying");
                })
                .await;
        }
    }

    async fn lead(&self) -> Result<(), RelayError> {
        let mut lock = LeaderLock::acquire(&self.pool, RELAY_LOCK).await?;
        sqlx::query("UPDATE relay_checkpoint SET owner = $1")
            .bind(lock.owner)
            .execute(lock.connection())
            .await?;
        tracing::info!("relay: leader");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        self.ensure_stream().await;
        let mut cursor = load_checkpoint(lock.connection()).await?;
        let (mut stored, mut stored_at) = (cursor, Instant::now());
        let mut idle_rounds = 0u32;
        loop {
            let events: Vec<StoredEvent> =
                read_after(lock.connection(), &EventFilter::default(), cursor, PAGE).await?;
            let Some(last) = events.last().map(|e| e.cursor) else {
                if stored != cursor {
                    store_checkpoint(&mut lock, cursor).await?;
                    stored = cursor;
                }
                // Nothing new: wait for a notification, or poll after a while.
                match tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        idle_rounds += 1;
                        if idle_rounds.is_multiple_of(10) {
                            lock.check().await?;
                        }
                    }
                }
                continue;
            };
            self.publish_until_acked(&events).await;
            cursor = last;
            if stored_at.elapsed() >= CHECKPOINT_EVERY {
                store_checkpoint(&mut lock, cursor).await?;
                (stored, stored_at) = (cursor, Instant::now());
            }
            if events.len() < SMALL_PAGE {
                tokio::time::sleep(LINGER).await;
            }
        }
    }

    /// Creates or updates the stream; retried until NATS answers.
    async fn ensure_stream(&self) {
        let _ = (|| self.js.get_or_create_stream(self.topology.stream_config()))
            .retry(retry::WORKERS)
            .notify(|e, pause| {
                tracing::warn!(error = %e, ?pause, "relay: cannot reach the JetStream stream yet");
            })
            .await;
    }

    async fn publish_until_acked(&self, events: &[StoredEvent]) {
        let _ = (|| async {
            let published = self.publish(events).await;
            if let Err(RelayError::StreamMissing) = published {
                self.ensure_stream().await;
            }
            published
        })
        .retry(retry::WORKERS)
        .notify(|e, pause| {
            tracing::warn!(error = %e, pending = events.len(), ?pause, "relay: publish failed; retrying");
        })
        .await;
    }

    /// Publishes a page and awaits every ack, in order.
    async fn publish(&self, events: &[StoredEvent]) -> Result<(), RelayError> {
        let store_id = self.store_id.to_string();
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            acks.push(
                self.js
                    .send_publish(self.topology.subject_for(event), message(event, &store_id)?)
                    .await
                    .map_err(publish_error)?,
            );
        }
        for ack in acks {
            ack.await.map_err(publish_error)?;
        }
        Ok(())
    }
}

fn publish_error(e: async_nats::jetstream::context::PublishError) -> RelayError {
    match e.kind() {
        PublishErrorKind::StreamNotFound => RelayError::StreamMissing,
        _ => RelayError::Nats(e.to_string()),
    }
}

/// The JetStream message of one event: the whole stored event as JSON, with the headers a
/// consumer needs to skip it without parsing the body: which event store it came from and its
/// cursor. (The org, aggregate and event type are in the subject; every header is parsed into
/// a map by each consumer of every message, so there are no more of them than are read.)
pub fn message(event: &StoredEvent, store_id: &str) -> Result<Publish, RelayError> {
    let body = serde_json::to_vec(event).map_err(StoreError::Encode)?;
    let cursor = event.cursor.to_string();
    Ok(Publish::build()
        .payload(body.into())
        .message_id(event.event_id.to_string())
        .header(HEADER_STORE_ID, store_id)
        .header(HEADER_CURSOR, cursor.as_str()))
}

pub async fn load_checkpoint<'e, E>(executor: E) -> Result<Cursor, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, global_position FROM relay_checkpoint",
    )
    .fetch_one(executor)
    .await?;
    Ok(Cursor::new(
        row.try_get("tx")?,
        row.try_get("global_position")?,
    ))
}

/// Stores the checkpoint if this relay is still the leader of record (fencing).
async fn store_checkpoint(lock: &mut LeaderLock, cursor: Cursor) -> Result<(), RelayError> {
    let owner = lock.owner;
    let stored = sqlx::query(
        "UPDATE relay_checkpoint SET transaction_id = $1::text::xid8, global_position = $2, \
         updated_at = now() WHERE owner = $3",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.global_position)
    .bind(owner)
    .execute(lock.connection())
    .await?;
    if stored.rows_affected() == 0 {
        return Err(RelayError::LostLeadership);
    }
    Ok(())
}
