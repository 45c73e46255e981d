//! The projector worker: feeds one projection from its durable JetStream pull consumer.
//!
//! One active worker per projection (advisory lock); more instances are hot standbys. A batch
//! is applied and its checkpoint stored in one Postgres transaction, then acknowledged. Events at
//! or below the checkpoint are skipped, so redelivery is harmless. On a failed batch the consumer
//! is recreated from the last committed stream sequence, so nothing is applied out of order.

use crate::checkpoint;
use crate::projection::{Projection, ProjectionError, Reads, Tables};
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy};
use async_nats::HeaderName;
use backon::Retryable;
use eventstore::leader::LeaderLock;
use eventstore::nats::{class_of, ACTIVITY_AGGREGATES};
use eventstore::nats::{Topology, HEADER_CURSOR, HEADER_STORE_ID};
use eventstore::{retry, Cursor, EventFilter, StoredEvent};
use futures::StreamExt;
use sqlx::{Connection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A batch at least this large means events are arriving fast: worth lingering for more.
const LINGER_FROM: usize = 16;
/// How long a busy projector waits to fill its batch.
const LINGER: Duration = Duration::from_millis(20);
const BATCH: usize = 500;
const CATCH_UP_PAGE: i64 = 2000;

pub struct Worker {
    pool: PgPool,
    js: jetstream::Context,
    topology: Topology,
    store_id: Uuid,
    projection: Arc<dyn Projection>,
}

/// One consumed message, routed by its headers before its body is parsed.
struct Incoming {
    message: jetstream::Message,
    stream_sequence: u64,
    ours: bool,
    cursor: Option<Cursor>,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        topology: Topology,
        store_id: Uuid,
        projection: Arc<dyn Projection>,
    ) -> Self {
        Self {
            pool,
            js,
            topology,
            store_id,
            projection,
        }
    }

    /// Runs forever; errors are recorded on the checkpoint and retried with backoff
    /// ([`retry::WORKERS`]).
    pub async fn run(self) {
        let name = self.projection.name();
        loop {
            let _ = (|| async {
                let led = self.lead().await;
                if let Err(e) = &led {
                    let _ = checkpoint::record_error(&self.pool, name, &e.to_string()).await;
                }
                led
            })
            .retry(retry::WORKERS)
            .notify(|e, pause| {
                tracing::warn!(projection = name, error = %e, ?pause, "projector interrupted; retrying");
            })
            .await;
        }
    }

    async fn lead(&self) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut lock = LeaderLock::acquire(&self.pool, checkpoint::worker_lock_key(name)).await?;
        checkpoint::ensure(&self.pool, name).await?;
        checkpoint::claim(&self.pool, name, lock.owner).await?;
        let caught_up = self.catch_up_from_store(&mut lock).await?;
        if caught_up > 0 {
            tracing::info!(
                projection = name,
                events = caught_up,
                "projector: caught up from the event store"
            );
        }
        let start = checkpoint::read(&self.pool, name)
            .await?
            .map(|c| c.stream_sequence)
            .unwrap_or(0);
        let consumer = self.consumer(start).await?;
        tracing::info!(projection = name, "projector: active");
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?
            .ready_chunks(BATCH);
        let mut last_ping = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            if last_ping.elapsed() > Duration::from_secs(5) {
                // Still holding the lock's connection?
                lock.check().await?;
                last_ping = tokio::time::Instant::now();
            }
            let mut chunk = match next {
                Err(_) => continue,
                Ok(None) => return Err(ProjectionError::Nats("consumer stream ended".into())),
                Ok(Some(chunk)) => chunk,
            };
            // Under load, wait a moment for a fuller batch: one transaction per batch is what a
            // projection pays most for. A lone event (a REST write waiting for its read model)
            // is applied at once.
            if chunk.len() >= LINGER_FROM && chunk.len() < BATCH {
                let deadline = tokio::time::Instant::now() + LINGER;
                while chunk.len() < BATCH {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Ok(Some(more)) => chunk.extend(more),
                        _ => break,
                    }
                }
            }
            let mut batch = Vec::with_capacity(chunk.len());
            for message in chunk {
                let message = message.map_err(|e| ProjectionError::Nats(e.to_string()))?;
                batch.push(self.route(message));
            }
            if let Err(e) = self.apply(&mut lock, &batch).await {
                // Start over from the last committed message, in order.
                if let Ok(stream) = self.js.get_stream(self.topology.stream_name()).await {
                    let _ = stream
                        .delete_consumer(&self.topology.consumer_name(name))
                        .await;
                }
                return Err(e);
            }
            if let Some(last) = batch.last() {
                last.message
                    .ack()
                    .await
                    .map_err(|e| ProjectionError::Nats(e.to_string()))?;
            }
        }
    }

    /// Applies whatever the event store has beyond the checkpoint before consuming live: a new
    /// projection, or one whose messages aged out of the stream, starts from Postgres, the
    /// source of truth. Messages for events it applied here are then skipped by cursor.
    async fn catch_up_from_store(&self, lock: &mut LeaderLock) -> Result<u64, ProjectionError> {
        let owner = lock.owner;
        let name = self.projection.name();
        // The log can be limited to the types read; types left out are skipped below.
        let filter = EventFilter {
            aggregate_types: self
                .projection
                .reads()
                .only()
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            ..EventFilter::default()
        };
        let mut applied = 0u64;
        loop {
            let mut tx = lock.connection().begin().await?;
            let current = checkpoint::lock(&mut tx, name).await?;
            fence(&current, owner)?;
            let page =
                eventstore::reading::read_after(&mut *tx, &filter, current.cursor, CATCH_UP_PAGE)
                    .await?;
            let Some(last) = page.last().map(|e| e.cursor) else {
                // Ended now, not whenever the connection is next used: the checkpoint row lock
                // gave this transaction an id, and an open one holds every reader back.
                tx.rollback().await?;
                return Ok(applied);
            };
            // The checkpoint passes the whole page; only what the projection reads is applied,
            // by the same filter as what arrives from NATS (`apply` below).
            let page = self.projection.wanted(page);
            if !page.is_empty() {
                self.projection.apply(&mut tx, Tables::LIVE, &page).await?;
            }
            checkpoint::store(
                &mut tx,
                name,
                checkpoint::Checkpoint {
                    cursor: last,
                    ..current
                },
            )
            .await?;
            tx.commit().await?;
            applied += page.len() as u64;
        }
    }

    async fn consumer(
        &self,
        after_sequence: i64,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, ProjectionError> {
        let mut stream = self
            .js
            .get_or_create_stream(self.topology.stream_config())
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        // A stream that was recreated starts its sequences again: a remembered position past
        // its end means "from the beginning" (what is already applied is skipped by cursor).
        let last = stream
            .info()
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?
            .state
            .last_sequence;
        let after_sequence = if after_sequence as u64 > last {
            0
        } else {
            after_sequence
        };
        let reads = self.projection.reads();
        let filter_subject = match reads {
            Reads::Only([only]) => self.topology.aggregate_subjects(only),
            // Several aggregate types of one class: that class.
            Reads::Only([first, rest @ ..])
                if rest.iter().all(|t| class_of(t) == class_of(first)) =>
            {
                self.topology.class_subjects(class_of(first))
            }
            // Every event but end users' activity: the org class.
            Reads::All | Reads::AllBut(_)
                if !ACTIVITY_AGGREGATES.iter().any(|t| reads.includes(t)) =>
            {
                self.topology.class_subjects("org")
            }
            _ => self.topology.all_subjects(),
        };
        let deliver_policy = if after_sequence > 0 {
            DeliverPolicy::ByStartSequence {
                start_sequence: after_sequence as u64 + 1,
            }
        } else {
            DeliverPolicy::All
        };
        let name = self.topology.consumer_name(self.projection.name());
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject,
                    deliver_policy,
                    ack_policy: AckPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))
    }

    fn route(&self, message: jetstream::Message) -> Incoming {
        let stream_sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let headers = message.headers.as_ref();
        let header = |name: HeaderName| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let ours = header(HEADER_STORE_ID)
            .and_then(|id| id.parse::<Uuid>().ok())
            .is_some_and(|id| id == self.store_id);
        let cursor = header(HEADER_CURSOR).and_then(|c| c.parse().ok());
        Incoming {
            message,
            stream_sequence,
            ours,
            cursor,
        }
    }

    /// Applies one batch and advances the checkpoint, in one transaction.
    async fn apply(
        &self,
        lock: &mut LeaderLock,
        batch: &[Incoming],
    ) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let owner = lock.owner;
        let mut tx = lock.connection().begin().await?;
        let current = checkpoint::lock(&mut tx, name).await?;
        fence(&current, owner)?;
        let mut next = current;
        let mut events: Vec<StoredEvent> = Vec::new();
        for incoming in batch {
            next.stream_sequence = next.stream_sequence.max(incoming.stream_sequence as i64);
            let (true, Some(cursor)) = (incoming.ours, incoming.cursor) else {
                continue; // another event store's message: not ours to apply
            };
            // Compare with what this batch has reached, not only the stored checkpoint: the same
            // event twice in one batch (a re-publish after the de-duplication window) applies once.
            if cursor <= next.cursor {
                continue; // already applied (redelivery, or covered by a rebuild)
            }
            next.cursor = cursor;
            // The subject ends in `{aggregate}.{event}`: skip unwanted events undecoded.
            let aggregate = incoming.message.subject.rsplit('.').nth(1);
            if aggregate.is_some_and(|a| !self.projection.wants(a)) {
                continue;
            }
            let event: StoredEvent = serde_json::from_slice(&incoming.message.payload)
                .map_err(eventstore::StoreError::Encode)?;
            if self.projection.wants(&event.aggregate_type) {
                events.push(event);
            }
        }
        if !events.is_empty() {
            self.projection
                .apply(&mut tx, Tables::LIVE, &events)
                .await?;
        }
        if next != current {
            checkpoint::store(&mut tx, name, next).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Refuses to write when another worker has become leader of record since we were elected.
fn fence(current: &checkpoint::Checkpoint, owner: Uuid) -> Result<(), ProjectionError> {
    if current.owner != Some(owner) {
        return Err(ProjectionError::LostLeadership);
    }
    Ok(())
}
