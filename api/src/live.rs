//! The live hub: one reader of the event log per instance that feeds every live event stream
//! (`/api/v1/orgs/{org}/events/stream`), and the caps on how many streams are open.
//!
//! A single task tails the log in committed order (`read_after` from where it is, all orgs at
//! once), woken by one NATS subscription to every event subject and, without NATS or when a
//! wake is lost, by a slow poll. Each new event's SSE frame is encoded once. Streams of one
//! org with the same type filter share a `tokio::sync::broadcast` channel, and each read hands
//! every channel the events it takes as one [`LiveBatch`], or nothing: a stream whose filter
//! takes none of a read's events is not even woken. While no stream is open the hub reads
//! nothing; the first stream to open after that waits for it to restart from the head. So a
//! thousand idle streams cost the database one small query per [`SAFETY_POLL`], and a busy org
//! one read per batch of events, however many streams watch it. See `docs/design.md`, "Live
//! event streams".
//!
//! A stream that starts from a cursor reads its backlog from Postgres (bounded pages) after
//! subscribing, then takes events from the hub, skipping those at or before the last one it
//! sent: see [`Subscription`].

use crate::error::{ApiError, ErrorCode};
use bytes::{BufMut, Bytes, BytesMut};
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
/// Batches (reads of the log) an org's channel keeps for a slow stream; one further behind
/// catches up from Postgres.
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

/// One event as every stream sends it: its SSE frame, encoded once by the hub.
#[derive(Debug)]
pub struct LiveEvent {
    pub cursor: Cursor,
    pub event_type: String,
    /// The whole SSE frame (`id`, `event`, `data`, blank line) as owners and admins see it.
    pub frame: Bytes,
    /// The frame as other members see it (no client ip or user agent in the metadata); the
    /// same bytes when nothing differs.
    pub member_frame: Bytes,
}

/// What the hub hands a channel's streams at once: the events of one org from one read of the
/// log that the channel's type filter takes, in order, with their frames also laid end to
/// end. A stream that is not behind sends the whole batch as one chunk (a reference-counted
/// slice, no copy): a thousand streams of a busy org cost a wake and a write each per read,
/// not per event, and streams whose filter takes none of a read's events are not woken.
#[derive(Debug)]
pub struct LiveBatch {
    pub events: Vec<LiveEvent>,
    /// Members removed from the org in this read, and where: their streams of the org end
    /// there, whatever their filter.
    pub removed: Vec<(Uuid, Cursor)>,
    /// Every event's [`LiveEvent::frame`], concatenated.
    pub frames: Bytes,
    /// Every event's [`LiveEvent::member_frame`], concatenated.
    pub member_frames: Bytes,
}

impl LiveBatch {
    /// Encodes `events` (all of one org, in committed order) once.
    pub fn new<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Self {
        #[derive(serde::Deserialize)]
        struct Removed {
            user_id: Uuid,
        }
        let mut frames = BytesMut::new();
        let mut member_frames = BytesMut::new();
        let mut removed = Vec::new();
        // (cursor, type, frame range, member frame range)
        let mut parts = Vec::new();
        for event in events {
            if event.aggregate_type == "organization" && event.event_type == "MemberRemoved" {
                if let Ok(r) = serde_json::from_str::<Removed>(event.payload.get()) {
                    removed.push((r.user_id, event.cursor));
                }
            }
            let start = frames.len();
            sse_frame(&mut frames, event);
            let frame = start..frames.len();
            let member_start = member_frames.len();
            match crate::routes::events::without_client_details(event) {
                Some(seen) => sse_frame(&mut member_frames, &seen),
                None => member_frames.extend_from_slice(&frames[frame.clone()]),
            }
            let member_frame = member_start..member_frames.len();
            parts.push((event.cursor, event.event_type.clone(), frame, member_frame));
        }
        let frames = frames.freeze();
        let member_frames = member_frames.freeze();
        let events = parts
            .into_iter()
            .map(|(cursor, event_type, frame, member_frame)| LiveEvent {
                cursor,
                event_type,
                frame: frames.slice(frame),
                member_frame: member_frames.slice(member_frame),
            })
            .collect();
        Self {
            events,
            removed,
            frames,
            member_frames,
        }
    }

    /// The part of this batch a stream filtered to `types` takes (the removals always), or
    /// `None` when that is nothing. No event is encoded again: the frames are copied.
    pub fn only(&self, types: &[String]) -> Option<Self> {
        let events: Vec<&LiveEvent> = self
            .events
            .iter()
            .filter(|e| types.contains(&e.event_type))
            .collect();
        if events.is_empty() && self.removed.is_empty() {
            return None;
        }
        let mut frames = BytesMut::new();
        let mut member_frames = BytesMut::new();
        let mut ranges = Vec::with_capacity(events.len());
        for event in &events {
            let start = (frames.len(), member_frames.len());
            frames.extend_from_slice(&event.frame);
            member_frames.extend_from_slice(&event.member_frame);
            ranges.push((start.0..frames.len(), start.1..member_frames.len()));
        }
        let frames = frames.freeze();
        let member_frames = member_frames.freeze();
        Some(Self {
            events: events
                .iter()
                .zip(ranges)
                .map(|(event, (frame, member_frame))| LiveEvent {
                    cursor: event.cursor,
                    event_type: event.event_type.clone(),
                    frame: frames.slice(frame),
                    member_frame: member_frames.slice(member_frame),
                })
                .collect(),
            removed: self.removed.clone(),
            frames,
            member_frames,
        })
    }

    /// The first event's cursor, if the batch has events (one with only removals has none).
    pub fn first(&self) -> Option<Cursor> {
        self.events.first().map(|e| e.cursor)
    }

    /// The last event's cursor.
    pub fn last(&self) -> Option<Cursor> {
        self.events.last().map(|e| e.cursor)
    }

    /// Where `user` was removed from the org in this batch, if they were.
    pub fn removal_of(&self, user: Uuid) -> Option<Cursor> {
        self.removed
            .iter()
            .find(|(removed, _)| *removed == user)
            .map(|(_, at)| *at)
    }
}

/// A broadcast channel's key: the org, and the event types its streams take (sorted; empty
/// for all). Streams with the same filter share a channel, so the hub filters once per read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    org: Uuid,
    types: Vec<String>,
}

/// Appends `event` as one server-sent event: its cursor as `id` (what `Last-Event-ID` sends
/// back), its type as `event`, its JSON (one line: serde_json escapes every newline) as `data`.
pub fn sse_frame(out: &mut BytesMut, event: &StoredEvent) {
    use std::fmt::Write as _;
    // Writing into a BytesMut cannot fail, nor can serializing a stored event.
    let _ = write!(
        out,
        "id: {}\nevent: {}\ndata: ",
        event.cursor, event.event_type
    );
    let _ = serde_json::to_writer((&mut *out).writer(), event);
    out.extend_from_slice(b"\n\n");
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
    channels: Mutex<HashMap<ChannelKey, broadcast::Sender<Arc<LiveBatch>>>>,
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

    /// A receiver of every event of `org` that `types` takes (all when empty) the hub reads
    /// from now on. Once this returns, the hub's position is at or before what a read of the
    /// log would see now: a backlog read after it, together with the receiver, misses nothing.
    pub async fn subscribe(&self, org: Uuid, types: &[String]) -> Option<Subscription> {
        if *self.inner.closed.borrow() {
            return None;
        }
        let mut types = types.to_vec();
        types.sort();
        types.dedup();
        let key = ChannelKey { org, types };
        self.inner.subscribers.fetch_add(1, Ordering::SeqCst);
        let receiver = lock(&self.inner.channels)
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        let guard = SubscriberGuard {
            hub: self.inner.clone(),
            key,
        };
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

    /// Hands each channel the events of `page` it takes, as one batch, if it takes any: each
    /// event is encoded once, for all of its org's channels.
    fn publish(&self, page: &[StoredEvent]) {
        let mut channels = lock(&self.inner.channels);
        if channels.is_empty() {
            return;
        }
        let mut by_org: HashMap<Uuid, Vec<&StoredEvent>> = HashMap::new();
        for event in page {
            if let Some(org) = event.org_id {
                by_org.entry(org).or_default().push(event);
            }
        }
        let mut batches: HashMap<Uuid, Arc<LiveBatch>> = HashMap::new();
        channels.retain(|key, sender| {
            let Some(events) = by_org.get(&key.org) else {
                return true;
            };
            let all = batches
                .entry(key.org)
                .or_insert_with(|| Arc::new(LiveBatch::new(events.iter().copied())));
            let batch = if key.types.is_empty() {
                all.clone()
            } else {
                match all.only(&key.types) {
                    Some(batch) => Arc::new(batch),
                    None => return true,
                }
            };
            // An error means every receiver is gone: the channel is forgotten.
            sender.send(batch).is_ok()
        });
    }
}

/// A stream's receiver of its org's events; counted while it lives.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<LiveBatch>>,
    _guard: SubscriberGuard,
}

/// Dropped after the receiver (fields drop in order): forgets the org's channel when this was
/// its last receiver.
struct SubscriberGuard {
    hub: Arc<Inner>,
    key: ChannelKey,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut channels = lock(&self.hub.channels);
        if channels
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.key);
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

    fn stored(event_type: &str, payload: String, metadata: &str) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::new_v4(),
            cursor: Cursor::new(5, 7),
            aggregate_type: "organization".to_owned(),
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 3,
            event_type: event_type.to_owned(),
            event_version: "1".to_owned(),
            org_id: Some(Uuid::new_v4()),
            recorded_at: chrono::Utc::now(),
            payload: serde_json::value::RawValue::from_string(payload).unwrap(),
            metadata: serde_json::value::RawValue::from_string(metadata.to_owned()).unwrap(),
        }
    }

    #[test]
    fn a_member_removed_event_names_the_member() {
        let user = Uuid::new_v4();
        let event = stored(
            "MemberRemoved",
            format!(r#"{{"user_id":"{user}","email":"a@b.c"}}"#),
            "{}",
        );
        let batch = LiveBatch::new([&event]);
        let live = &batch.events[0];
        assert_eq!(batch.removal_of(user), Some(Cursor::new(5, 7)));
        assert_eq!(batch.removal_of(Uuid::new_v4()), None);
        assert_eq!(live.frame, live.member_frame);
        // A stream filtered to other types still learns of the removal, without the event.
        let only = batch
            .only(&["TicketOpened".to_owned()])
            .expect("the removal");
        assert!(only.events.is_empty() && only.frames.is_empty());
        assert_eq!(only.removal_of(user), Some(Cursor::new(5, 7)));
    }

    #[test]
    fn a_filtered_batch_keeps_the_frames_of_the_types_it_takes() {
        let mut first = stored("OrgRenamed", r#"{"name":"a"}"#.to_owned(), "{}");
        first.cursor = Cursor::new(5, 7);
        let mut second = stored(
            "MemberAdded",
            r#"{"x":1}"#.to_owned(),
            r#"{"client_ip":"192.0.2.7"}"#,
        );
        second.cursor = Cursor::new(6, 8);
        let batch = LiveBatch::new([&first, &second]);
        assert!(batch.only(&["TicketOpened".to_owned()]).is_none());
        let only = batch.only(&["MemberAdded".to_owned()]).expect("one event");
        assert_eq!(only.events.len(), 1);
        assert_eq!(
            (only.first(), only.last()),
            (Some(second.cursor), Some(second.cursor))
        );
        assert_eq!(only.frames, batch.events[1].frame);
        assert_eq!(only.member_frames, batch.events[1].member_frame);
        assert_ne!(only.frames, only.member_frames);
    }

    #[test]
    fn frames_are_whole_server_sent_events_laid_end_to_end() {
        let mut first = stored(
            "MemberAdded",
            r#"{"text":"two\nlines"}"#.to_owned(),
            r#"{"client_ip":"192.0.2.7","user_agent":"curl","request_id":"r1"}"#,
        );
        first.cursor = Cursor::new(5, 7);
        let mut second = stored("OrgRenamed", r#"{"name":"x"}"#.to_owned(), "{}");
        second.cursor = Cursor::new(6, 8);
        let batch = LiveBatch::new([&first, &second]);
        assert_eq!(
            (batch.first(), batch.last()),
            (Some(first.cursor), Some(second.cursor))
        );

        let frame = std::str::from_utf8(&batch.events[0].frame).unwrap();
        let lines: Vec<&str> = frame.split('\n').collect();
        assert_eq!(lines[0], format!("id: {}", first.cursor));
        assert_eq!(lines[1], "event: MemberAdded");
        assert!(lines[2].starts_with("data: {"));
        // The payload's newline stays escaped: the data is one line, and the frame ends with
        // the blank line that ends an event.
        assert_eq!(&lines[3..], ["", ""]);
        let data: serde_json::Value = serde_json::from_str(&lines[2]["data: ".len()..]).unwrap();
        assert_eq!(data["metadata"]["client_ip"], "192.0.2.7");

        let member = std::str::from_utf8(&batch.events[0].member_frame).unwrap();
        assert!(!member.contains("192.0.2.7") && !member.contains("curl"));
        assert!(member.contains("\"request_id\":\"r1\""));

        let joined = [&batch.events[0].frame[..], &batch.events[1].frame[..]].concat();
        assert_eq!(&batch.frames[..], &joined[..]);
        let joined = [
            &batch.events[0].member_frame[..],
            &batch.events[1].member_frame[..],
        ]
        .concat();
        assert_eq!(&batch.member_frames[..], &joined[..]);
    }
}
