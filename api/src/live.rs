//! The live hub: one reader of the event log per instance that feeds every live event stream
//! (`/api/v1/orgs/{org}/events/stream`), and the caps on how many streams are open.
//!
//! A single task tails the log in committed order (`read_after` from where it is, all orgs at
//! once), woken by one NATS subscription to every event subject and, without NATS or when a
//! wake is lost, by a slow poll. Each new event is serialized once and handed to its org's
//! `tokio::sync::broadcast` channel; a stream holds a receiver of its org's channel and filters
//! by type itself. While no stream is open the hub reads nothing; the first stream to open
//! after that waits for it to restart from the head. So a thousand idle streams cost the
//! database one small query per [`SAFETY_POLL`], and a busy org one read per batch of events,
//! however many streams watch it. See `docs/design.md`, "Live event streams".
//!
//! A stream that starts from a cursor reads its backlog from Postgres (bounded pages) after
//! subscribing, then takes events from the hub, skipping those at or before the last one it
//! sent: see [`Subscription`].

use crate::error::{ApiError, ErrorCode};
use domain::values::Role;
use eventstore::nats::Topology;
use eventstore::{Cursor, EventFilter, EventStore, StoredEvent};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use uuid::Uuid;

/// How often the hub reads the log when nothing woke it: the floor of its cost while streams
/// are open and nothing happens. Without NATS it is the only wake.
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// The poll interval without NATS.
const POLL_WITHOUT_NATS: Duration = Duration::from_millis(500);
/// Between two reads of the log, at least this long: under a burst of events one read takes
/// the whole batch, instead of one read per NATS message.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(25);
/// Events per read of the log, the hub's and a stream's backlog pages alike.
pub const PAGE: i64 = 500;
/// Events an org's channel keeps for a slow stream; one further behind catches up from
/// Postgres.
const CHANNEL_CAPACITY: usize = 1024;
/// How long a stream's answer that the caller is a member of its org is trusted.
const MEMBERSHIP_TTL: Duration = Duration::from_secs(30);

/// The caps on open streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub per_user: usize,
    pub per_org: usize,
    pub per_instance: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_user: 20,
            per_org: 100,
            per_instance: 2000,
        }
    }
}

/// A stream's caller, as the shared membership cache last saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Member(Role),
    /// No longer an active member: the stream ends.
    Gone,
    /// The database could not say: the stream goes on as it was (a database error is no
    /// reason to cut every stream).
    Unknown,
}

/// One event as every stream sends it: serialized once by the hub.
#[derive(Debug)]
pub struct LiveEvent {
    pub cursor: Cursor,
    pub event_type: String,
    /// The event's JSON, the SSE `data`, as owners and admins see it.
    pub json: String,
    /// The JSON as other members see it (no client ip or user agent in the metadata), when
    /// that differs.
    pub member_json: Option<String>,
    /// For `MemberRemoved`: the member removed, whose streams of this org end here.
    pub removed_user: Option<Uuid>,
}

impl LiveEvent {
    pub fn new(event: &StoredEvent) -> Self {
        #[derive(serde::Deserialize)]
        struct Removed {
            user_id: Uuid,
        }
        let removed_user =
            if event.aggregate_type == "organization" && event.event_type == "MemberRemoved" {
                serde_json::from_str::<Removed>(event.payload.get())
                    .ok()
                    .map(|r| r.user_id)
            } else {
                None
            };
        Self {
            cursor: event.cursor,
            event_type: event.event_type.clone(),
            json: serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned()),
            member_json: crate::routes::events::without_client_details(event)
                .map(|seen| serde_json::to_string(&seen).unwrap_or_else(|_| "{}".to_owned())),
            removed_user,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<Uuid, usize>,
    per_org: HashMap<Uuid, usize>,
}

struct Inner {
    store: EventStore,
    limits: StreamLimits,
    counts: Mutex<Counts>,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Arc<LiveEvent>>>>,
    /// Open subscriptions; the hub reads the log only while there are some.
    subscribers: AtomicUsize,
    /// Whether the hub is reading: false while it is idle, until it has restarted from the
    /// head. A subscriber waits for it before reading its backlog (see [`LiveHub::subscribe`]).
    reading: watch::Sender<bool>,
    wake: Notify,
    /// Set once at shutdown: channels are closed and no stream opens any more.
    closed: watch::Sender<bool>,
    membership: moka::future::Cache<(Uuid, Uuid), Access>,
}

/// The hub's handle, cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

impl LiveHub {
    /// Starts the hub's reader (needs a Tokio runtime).
    pub fn start(
        store: EventStore,
        nats: Option<async_nats::Client>,
        topology: Topology,
        limits: StreamLimits,
    ) -> Self {
        let (reading, _) = watch::channel(false);
        let (closed, _) = watch::channel(false);
        let hub = Self {
            inner: Arc::new(Inner {
                store,
                limits,
                counts: Mutex::new(Counts::default()),
                channels: Mutex::new(HashMap::new()),
                subscribers: AtomicUsize::new(0),
                reading,
                wake: Notify::new(),
                closed,
                membership: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(MEMBERSHIP_TTL)
                    .build(),
            }),
        };
        tokio::spawn(hub.clone().run(nats, topology));
        hub
    }

    pub fn limits(&self) -> StreamLimits {
        self.inner.limits
    }

    /// Closes every stream (at shutdown: open streams would otherwise hold it forever).
    pub fn shutdown(&self) {
        self.inner.closed.send_replace(true);
        lock(&self.inner.channels).clear();
        self.inner.wake.notify_one();
    }

    /// A slot for one more stream of `user` in `org`, or 429 `too_many_streams` at a cap. The
    /// slot is freed when the permit drops, with the stream.
    pub fn admit(&self, user: Uuid, org: Uuid) -> Result<StreamPermit, ApiError> {
        let limits = self.inner.limits;
        let mut counts = lock(&self.inner.counts);
        let refuse = |what: &str, cap: usize| -> Result<StreamPermit, ApiError> {
            Err(ApiError::too_many_streams(format!(
                "{what} has {cap} live event streams open, the most allowed; close one, or \
                 retry later"
            )))
        };
        if counts.per_user.get(&user).copied().unwrap_or(0) >= limits.per_user {
            return refuse("this user", limits.per_user);
        }
        if counts.per_org.get(&org).copied().unwrap_or(0) >= limits.per_org {
            return refuse("this organization", limits.per_org);
        }
        if counts.total >= limits.per_instance {
            return refuse("this server instance", limits.per_instance);
        }
        counts.total += 1;
        *counts.per_user.entry(user).or_default() += 1;
        *counts.per_org.entry(org).or_default() += 1;
        metrics::gauge!("mcpl_live_streams").set(counts.total as f64);
        Ok(StreamPermit {
            hub: self.inner.clone(),
            user,
            org,
        })
    }

    /// A receiver of every event of `org` the hub reads from now on. Once this returns, the
    /// hub's position is at or before what a read of the log would see now: a backlog read
    /// after it, together with the receiver, misses nothing.
    pub async fn subscribe(&self, org: Uuid) -> Option<Subscription> {
        if *self.inner.closed.borrow() {
            return None;
        }
        self.inner.subscribers.fetch_add(1, Ordering::SeqCst);
        let guard = SubscriberGuard {
            hub: self.inner.clone(),
            org,
        };
        let receiver = lock(&self.inner.channels)
            .entry(org)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        self.inner.wake.notify_one();
        let mut reading = self.inner.reading.subscribe();
        let mut closed = self.inner.closed.subscribe();
        tokio::select! {
            ready = reading.wait_for(|reading| *reading) => { ready.ok()?; }
            _ = closed.wait_for(|closed| *closed) => return None,
        }
        Some(Subscription {
            receiver,
            _guard: guard,
        })
    }

    /// Whether `user` is still an active member of `org`, and in which role, from a cache
    /// shared by every stream (one query per user and org per [`MEMBERSHIP_TTL`]).
    pub async fn access(&self, pool: &sqlx::PgPool, user: Uuid, org: Uuid) -> Access {
        self.inner
            .membership
            .get_with((user, org), async {
                match projections::models::organizations::membership(pool, user, &org.to_string())
                    .await
                {
                    Ok(Some((_, role))) => {
                        Role::parse(&role).map_or(Access::Unknown, Access::Member)
                    }
                    Ok(None) => Access::Gone,
                    Err(_) => Access::Unknown,
                }
            })
            .await
    }

    /// Forgets the cached membership of `user` in `org` (they were removed).
    pub async fn forget_member(&self, user: Uuid, org: Uuid) {
        self.inner.membership.invalidate(&(user, org)).await;
    }

    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    async fn run(self, nats: Option<async_nats::Client>, topology: Topology) {
        let inner = &self.inner;
        let mut wakes = match &nats {
            Some(client) => match client.subscribe(topology.all_subjects()).await {
                Ok(sub) => Some(sub),
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: no NATS wake-ups; polling");
                    None
                }
            },
            None => None,
        };
        let poll = if wakes.is_some() {
            SAFETY_POLL
        } else {
            POLL_WITHOUT_NATS
        };
        let mut closed = inner.closed.subscribe();
        let mut cursor: Option<Cursor> = None;
        loop {
            if *closed.borrow() {
                return;
            }
            // Idle: no stream is open. Stop reading; the next subscriber waits for a restart
            // from the head. `reading` is lowered before the count is read, so a subscriber
            // counted after this check waits for that restart.
            inner.reading.send_replace(false);
            if inner.subscribers.load(Ordering::SeqCst) == 0 {
                cursor = None;
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = closed.changed() => {}
                }
                continue;
            }
            let at = match cursor {
                Some(at) => at,
                None => match inner.store.head().await {
                    Ok(head) => head,
                    Err(e) => {
                        tracing::warn!(error = %e, "live hub: cannot read the head; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            cursor = Some(at);
            inner.reading.send_replace(true);
            let page = match inner
                .store
                .read_after(&EventFilter::default(), at, PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = page.len() as i64 == PAGE;
            if let Some(last) = page.last() {
                cursor = Some(last.cursor);
                self.publish(&page);
            }
            if full {
                continue;
            }
            tokio::time::sleep(MIN_READ_INTERVAL).await;
            // Nothing more to read: sleep until NATS says something happened, a subscriber
            // arrives, or the poll interval passes.
            match wakes.as_mut() {
                Some(sub) => {
                    let woken = tokio::select! {
                        got = tokio::time::timeout(poll, sub.next()) => got.map(|m| m.is_some()),
                        _ = inner.wake.notified() => Ok(true),
                        _ = closed.changed() => Ok(true),
                    };
                    if let Ok(false) = woken {
                        tracing::warn!("live hub: the NATS subscription ended; polling");
                        wakes = None;
                    }
                    // Drain what else arrived; one read covers them all.
                    if let Some(sub) = wakes.as_mut() {
                        while let Some(Some(_)) = sub.next().now_or_never() {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL_WITHOUT_NATS) => {}
                        _ = inner.wake.notified() => {}
                        _ = closed.changed() => {}
                    }
                }
            }
        }
    }

    /// Hands each event to its org's channel, if a stream listens there.
    fn publish(&self, page: &[StoredEvent]) {
        let mut channels = lock(&self.inner.channels);
        for event in page {
            let Some(org) = event.org_id else { continue };
            let Some(sender) = channels.get(&org) else {
                continue;
            };
            if sender.send(Arc::new(LiveEvent::new(event))).is_err() {
                // Every receiver is gone: forget the channel.
                channels.remove(&org);
            }
        }
    }
}

/// A stream's receiver of its org's events; counted while it lives.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<LiveEvent>>,
    _guard: SubscriberGuard,
}

/// Dropped after the receiver (fields drop in order): forgets the org's channel when this was
/// its last receiver.
struct SubscriberGuard {
    hub: Arc<Inner>,
    org: Uuid,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut channels = lock(&self.hub.channels);
        if channels
            .get(&self.org)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.org);
        }
        drop(channels);
        self.hub.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One open stream's slot under the caps, freed on drop.
pub struct StreamPermit {
    hub: Arc<Inner>,
    user: Uuid,
    org: Uuid,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut guard = lock(&self.hub.counts);
        let counts = &mut *guard;
        counts.total = counts.total.saturating_sub(1);
        for (map, key) in [
            (&mut counts.per_user, self.user),
            (&mut counts.per_org, self.org),
        ] {
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        metrics::gauge!("mcpl_live_streams").set(counts.total as f64);
    }
}

/// A poisoned lock only means another stream panicked holding it; the counts are still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ApiError {
    /// 429 `too_many_streams`: a cap on open live streams is reached.
    pub fn too_many_streams(detail: String) -> Self {
        ApiError::new(ErrorCode::TooManyStreams, detail).with_retry_after(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_removed_event_names_the_member() {
        let user = Uuid::new_v4();
        let payload = serde_json::value::RawValue::from_string(format!(
            r#"{{"user_id":"{user}","email":"a@b.c"}}"#
        ))
        .unwrap();
        let event = StoredEvent {
            event_id: Uuid::new_v4(),
            cursor: Cursor::new(5, 7),
            aggregate_type: "organization".to_owned(),
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 3,
            event_type: "MemberRemoved".to_owned(),
            event_version: "1".to_owned(),
            org_id: Some(Uuid::new_v4()),
            recorded_at: chrono::Utc::now(),
            payload,
            metadata: serde_json::value::RawValue::from_string("{}".to_owned()).unwrap(),
        };
        let live = LiveEvent::new(&event);
        assert_eq!(live.removed_user, Some(user));
        assert_eq!(live.cursor, Cursor::new(5, 7));
        assert!(live.json.contains("\"MemberRemoved\""));
    }
}
