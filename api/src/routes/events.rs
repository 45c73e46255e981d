//! `/api/v1/orgs/{org}/events`: the org's raw event stream for analysts, as cursor pages (JSON
//! or NDJSON by `Accept`) and live as server-sent events.

use crate::error::{ApiError, ErrorCode, Problem};
use crate::extract::{Membership, QueryPairs};
use crate::live::{Access, LiveBatch, StreamPermit, Subscription};
use crate::params::OrgPath;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use domain::values::Role;
use eventstore::{Cursor, EventFilter, StoredEvent};
use serde::Serialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

const NDJSON: &str = "application/x-ndjson";

/// Events oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsPage {
    items: Vec<StoredEvent>,
    /// The last event's cursor (the one asked for, when there is none): pass it as `after`.
    #[schema(value_type = String)]
    next_cursor: Cursor,
    /// Whether the page is full, so more may follow.
    has_more: bool,
}

struct EventQuery {
    after: Option<Cursor>,
    limit: i64,
    types: Vec<String>,
}

fn parse_query(pairs: &[(String, String)]) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery {
        after: None,
        limit: 100,
        types: Vec::new(),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "after" if !value.is_empty() => q.after = Some(value.parse::<Cursor>()?),
            "after" => {}
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidLimit,
                            "limit must be an integer between 1 and 1000",
                        )
                    })?;
            }
            "type" => {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    let valid =
                        t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return Err(ApiError::new(
                            ErrorCode::InvalidType,
                            "an event type is letters, digits and '_' (e.g. ServerCreated)",
                        ));
                    }
                    q.types.push(t.to_owned());
                }
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("unknown query parameter `{other}`; use after, limit, type"),
                ))
            }
        }
    }
    Ok(q)
}

/// Whether an `Accept` header asks for NDJSON: it names `application/x-ndjson` with a weight
/// above 0 (`q=0` means "not this") and at least that of JSON, whose weight comes from the
/// most specific range matching it (`application/json`, `application/*`, `*/*`). NDJSON is
/// never chosen by a wildcard alone: JSON is the default.
fn prefers_ndjson(accept: &str) -> bool {
    // (type, subtype, q) of each range; one whose weight cannot be read is left out.
    let ranges: Vec<(&str, &str, f32)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let (kind, subtype) = parts.next()?.split_once('/')?;
            let mut q = 1.0;
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = value
                            .trim()
                            .parse::<f32>()
                            .ok()
                            .filter(|q| (0.0..=1.0).contains(q))?;
                    }
                }
            }
            Some((kind, subtype, q))
        })
        .collect();
    let weight = |kind: &str, subtype: &str, exact_only: bool| {
        let exact = ranges
            .iter()
            .find(|(k, s, _)| k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype));
        let any_subtype = || {
            ranges
                .iter()
                .find(|(k, s, _)| k.eq_ignore_ascii_case(kind) && *s == "*")
        };
        let anything = || ranges.iter().find(|(k, s, _)| *k == "*" && *s == "*");
        match exact {
            Some(range) => Some(range.2),
            None if exact_only => None,
            None => any_subtype().or_else(anything).map(|range| range.2),
        }
    };
    let Some(ndjson) = weight("application", "x-ndjson", true) else {
        return false;
    };
    ndjson > 0.0 && ndjson >= weight("application", "json", false).unwrap_or(0.0)
}

#[utoipa::path(operation_id = "events_page", get, path = "/api/v1/orgs/{org}/events", tag = "events", params(OrgPath, ("after" = Option<String>, Query, description = "Cursor"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"), ("type" = Option<Vec<String>>, Query, description = "Event types, repeatable or comma-separated")), security(("bearer" = [])),
    responses((status = 200, description = "Events oldest first (JSON, or NDJSON with Accept: application/x-ndjson: one event per line, the next cursor and whether more follow in the x-next-cursor and x-has-more headers)", content((EventsPage = "application/json"), (StoredEvent = "application/x-ndjson")))))]
pub async fn page(
    State(state): State<AppState>,
    Membership { org, role, .. }: Membership,
    QueryPairs(pairs): QueryPairs,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(&pairs)?;
    let filter = EventFilter {
        org_id: Some(org.0),
        event_types: q.types,
        ..EventFilter::default()
    };
    let after = q.after.unwrap_or(Cursor::START);
    let items = state.store.read_after(&filter, after, q.limit).await?;
    let items: Vec<StoredEvent> = items.into_iter().map(|e| as_seen_by(role, e)).collect();
    let next_cursor = items.last().map(|e| e.cursor).unwrap_or(after);
    let has_more = items.len() as i64 == q.limit;
    let wants_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(prefers_ndjson);
    if wants_ndjson {
        let mut body = String::new();
        for event in &items {
            body.push_str(&serde_json::to_string(event).map_err(ApiError::internal)?);
            body.push('\n');
        }
        let mut response = body.into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        if let Ok(v) = HeaderValue::from_str(&next_cursor.to_string()) {
            h.insert("x-next-cursor", v);
        }
        h.insert(
            "x-has-more",
            HeaderValue::from_static(if has_more { "true" } else { "false" }),
        );
        return Ok(response);
    }
    Ok(Json(EventsPage {
        items,
        next_cursor,
        has_more,
    })
    .into_response())
}

/// Live tail, fed by the instance's live hub ([`crate::live`]): no stream reads the database
/// while it waits. A client reconnecting with `Last-Event-ID` (or `after`) reads what it missed
/// from Postgres once, then follows the hub, resuming exactly after the last event it got. With
/// no cursor the stream starts at the current head. Open streams are capped per user, per org
/// and per instance (429 `too_many_streams`).
#[utoipa::path(operation_id = "events_stream", get, path = "/api/v1/orgs/{org}/events/stream", tag = "events", params(OrgPath, ("after" = Option<String>, Query, description = "Cursor; default the current head"), ("type" = Option<Vec<String>>, Query, description = "Event types")), security(("bearer" = [])),
    responses((status = 200, description = "Server-sent events: each an event's JSON, its id the cursor (send it back as Last-Event-ID to resume), its event name the event type", content_type = "text/event-stream", body = String), (status = 429, description = "Too many live streams open for this user, org or server instance (`too_many_streams`, with Retry-After)", body = Problem, content_type = "application/problem+json")))]
pub async fn stream(
    State(state): State<AppState>,
    Membership { user, org, role }: Membership,
    QueryPairs(pairs): QueryPairs,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(&pairs)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Cursor>().ok());
    let permit = state.live.admit(user.user_id, org.0)?;
    let subscription = state
        .live
        .subscribe(org.0, &q.types)
        .await
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the server is shutting down"))?;
    let tail = Tail {
        state,
        _permit: permit,
        subscription,
        user_id: user.user_id,
        org,
        role,
        expires_at: user.expires_at,
        last_access_check: tokio::time::Instant::now(),
        last_sent: tokio::time::Instant::now(),
        types: q.types,
        // The hub's receiver starts at the head; a cursor asks for the backlog before it.
        backlog_from: last_event_id.or(q.after),
        position: None,
        buffer: VecDeque::new(),
        ending: false,
    };
    let chunks = futures::stream::unfold(tail, |mut tail| async move {
        let chunk = tail.next().await?;
        Some((Ok::<_, Infallible>(chunk), tail))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// How often a stream asks (the shared cache of) whether its caller is still a member.
const ACCESS_CHECK: Duration = Duration::from_secs(5);
/// After this long without an event, a stream sends a comment, so proxies and clients see it
/// is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream gathers what its org's channel holds into one chunk (one write) up to this size.
const MAX_CHUNK: usize = 256 * 1024;

struct Tail {
    state: AppState,
    _permit: StreamPermit,
    subscription: Subscription,
    user_id: uuid::Uuid,
    org: domain::values::OrgId,
    /// The caller's role, as of the last access check: what of the metadata they see.
    role: Role,
    expires_at: i64,
    last_access_check: tokio::time::Instant,
    last_sent: tokio::time::Instant,
    types: Vec<String>,
    /// Set while the stream has events to read from Postgres first: after this cursor.
    backlog_from: Option<Cursor>,
    /// How far the stream has gone: every event of the org at or before it was sent or left
    /// out by the type filter. The hub's events at or before it are skipped.
    position: Option<Cursor>,
    /// Backlog pages, each one chunk of frames.
    buffer: VecDeque<Bytes>,
    /// Set when the stream ends after the chunk it is sending.
    ending: bool,
}

/// Whether a stream goes on after a batch.
#[derive(PartialEq, Eq)]
enum Taken {
    More,
    /// The batch removed the caller from the org: the stream ends after what came before.
    Removed,
}

impl Tail {
    /// The next chunk of frames (or a keep-alive comment), or `None` when the stream ends: the
    /// caller's access token expired, they stopped being a member, or the server is shutting
    /// down.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.ending || !self.still_allowed().await {
                return None;
            }
            if let Some(chunk) = self.buffer.pop_front() {
                return Some(self.sent(chunk));
            }
            if let Some(after) = self.backlog_from {
                self.read_backlog(after).await?;
                continue;
            }
            let wait = self
                .until_next_check()
                .min(KEEP_ALIVE.saturating_sub(self.last_sent.elapsed()));
            let mut received =
                match tokio::time::timeout(wait, self.subscription.receiver.recv()).await {
                    Ok(received) => received,
                    Err(_) if self.last_sent.elapsed() >= KEEP_ALIVE => {
                        return Some(self.sent(Bytes::from_static(b":\n\n")));
                    }
                    Err(_) => continue,
                };
            // Everything the channel holds now goes out as one chunk.
            let mut chunk = Vec::new();
            let mut size = 0;
            loop {
                match received {
                    Ok(batch) => {
                        if self.take(&batch, &mut chunk, &mut size) == Taken::Removed {
                            self.state
                                .live
                                .forget_member(self.user_id, self.org.0)
                                .await;
                            self.ending = true;
                            break;
                        }
                    }
                    // Too slow: the channel dropped batches this stream had not taken. Read
                    // them from Postgres, then go on with the channel, skipping what was read.
                    Err(RecvError::Lagged(_)) => {
                        match self.position {
                            Some(at) => self.backlog_from = Some(at),
                            // A live stream lagging before its first event cannot say where it
                            // was; it ends, and its client reconnects.
                            None => self.ending = true,
                        }
                        break;
                    }
                    Err(RecvError::Closed) => {
                        self.ending = true;
                        break;
                    }
                }
                if size >= MAX_CHUNK {
                    break;
                }
                received = match self.subscription.receiver.try_recv() {
                    Ok(batch) => Ok(batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Closed) => Err(RecvError::Closed),
                };
            }
            match chunk.len() {
                0 => continue,
                1 => return chunk.pop().map(|one| self.sent(one)),
                _ => {
                    let mut joined = BytesMut::with_capacity(size);
                    for part in chunk {
                        joined.extend_from_slice(&part);
                    }
                    return Some(self.sent(joined.freeze()));
                }
            }
        }
    }

    /// Adds what this stream sends of `batch` (already filtered by the hub to the stream's
    /// types) to `chunk`: the whole batch's frames when the stream is not past its start (no
    /// copy), else event by event.
    fn take(&mut self, batch: &LiveBatch, chunk: &mut Vec<Bytes>, size: &mut usize) -> Taken {
        let member_view = !self.role.sees_client_details();
        let removal = batch.removal_of(self.user_id);
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            // Only removals, none of which filter-matching events came with.
            return if removal.is_some() {
                Taken::Removed
            } else {
                Taken::More
            };
        };
        if removal.is_none() && self.position.is_none_or(|at| first > at) {
            self.position = Some(last);
            let frames = if member_view {
                &batch.member_frames
            } else {
                &batch.frames
            };
            *size += frames.len();
            chunk.push(frames.clone());
            return Taken::More;
        }
        for event in &batch.events {
            if removal.is_some_and(|at| event.cursor >= at) {
                break;
            }
            if self.position.is_some_and(|at| event.cursor <= at) {
                continue;
            }
            self.position = Some(event.cursor);
            let frame = if member_view {
                &event.member_frame
            } else {
                &event.frame
            };
            *size += frame.len();
            chunk.push(frame.clone());
        }
        if removal.is_some() {
            Taken::Removed
        } else {
            Taken::More
        }
    }

    fn sent(&mut self, chunk: Bytes) -> Bytes {
        self.last_sent = tokio::time::Instant::now();
        chunk
    }

    /// One page of the backlog after `after` into the buffer, as one chunk; the backlog ends
    /// with a page that is not full. `None` when the database cannot be read: the stream ends,
    /// and its client resumes with `Last-Event-ID`.
    async fn read_backlog(&mut self, after: Cursor) -> Option<()> {
        let filter = EventFilter {
            org_id: Some(self.org.0),
            event_types: self.types.clone(),
            ..EventFilter::default()
        };
        let page = match self
            .state
            .live
            .store()
            .read_after(&filter, after, crate::live::PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "event stream: backlog read failed; ending the stream");
                return None;
            }
        };
        self.backlog_from = match page.last() {
            Some(last) if page.len() as i64 == crate::live::PAGE => Some(last.cursor),
            _ => None,
        };
        let reached = page.last().map_or(after, |last| last.cursor);
        self.position = Some(self.position.map_or(reached, |at| at.max(reached)));
        if !page.is_empty() {
            let role = self.role;
            let mut frames = BytesMut::new();
            for event in page {
                crate::live::sse_frame(&mut frames, &as_seen_by(role, event));
            }
            self.buffer.push_back(frames.freeze());
        }
        Some(())
    }

    fn until_next_check(&self) -> Duration {
        let to_expiry = (self.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
        ACCESS_CHECK
            .saturating_sub(self.last_access_check.elapsed())
            .min(Duration::from_secs(to_expiry))
            .max(Duration::from_millis(10))
    }

    /// The access token is checked here, locally; membership every [`ACCESS_CHECK`] through
    /// the hub's shared cache (a removal seen by the hub ends the stream at once).
    async fn still_allowed(&mut self) -> bool {
        if chrono::Utc::now().timestamp() >= self.expires_at {
            return false;
        }
        if self.last_access_check.elapsed() < ACCESS_CHECK {
            return true;
        }
        self.last_access_check = tokio::time::Instant::now();
        match self
            .state
            .live
            .access(&self.state.pool, self.user_id, self.org.0)
            .await
        {
            Access::Member(role) => {
                // A member made admin, or an admin made member, sees accordingly from now on.
                self.role = role;
                true
            }
            Access::Gone => false,
            Access::Unknown => true,
        }
    }
}

/// An event as a member of `role` sees it: the client ip and user agent in its metadata are
/// left out unless the role sees them ([`Role::sees_client_details`]); the rest is unchanged.
fn as_seen_by(role: Role, event: StoredEvent) -> StoredEvent {
    if role.sees_client_details() {
        return event;
    }
    without_client_details(&event).unwrap_or(event)
}

/// The event without the client ip and user agent in its metadata, if it had either.
pub(crate) fn without_client_details(event: &StoredEvent) -> Option<StoredEvent> {
    let mut metadata =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(event.metadata.get())
            .ok()?;
    let ip = metadata.remove("client_ip");
    let agent = metadata.remove("user_agent");
    if ip.is_none() && agent.is_none() {
        return None;
    }
    let mut seen = event.clone();
    // A map of JSON values always serializes; were it not to, `null` still shows nothing.
    seen.metadata = serde_json::value::to_raw_value(&metadata).unwrap_or_default();
    Some(seen)
}

#[cfg(test)]
mod tests {
    use super::{as_seen_by, prefers_ndjson};
    use domain::values::Role;
    use eventstore::{Cursor, StoredEvent};
    use serde_json::value::RawValue;

    #[test]
    fn only_owners_and_admins_see_where_an_event_came_from() {
        let event = StoredEvent {
            event_id: uuid::Uuid::nil(),
            cursor: Cursor::new(1, 1),
            aggregate_type: "tool_call".to_owned(),
            aggregate_id: "x".to_owned(),
            sequence: 1,
            event_type: "ToolCallCompleted".to_owned(),
            event_version: "1".to_owned(),
            org_id: None,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            payload: RawValue::from_string("{}".to_owned()).unwrap(),
            metadata: RawValue::from_string(
                r#"{"actor":{"kind":"system"},"request_id":"r","client_ip":"203.0.113.9","user_agent":"curl/8"}"#
                    .to_owned(),
            )
            .unwrap(),
        };
        let metadata = |role| -> serde_json::Value {
            serde_json::from_str(as_seen_by(role, event.clone()).metadata.get()).unwrap()
        };
        for role in [Role::Owner, Role::Admin] {
            assert_eq!(metadata(role)["client_ip"], "203.0.113.9");
            assert_eq!(metadata(role)["user_agent"], "curl/8");
        }
        let member = metadata(Role::Member);
        assert!(member.get("client_ip").is_none() && member.get("user_agent").is_none());
        assert_eq!(member["request_id"], "r", "the rest is kept: {member}");
    }

    #[test]
    fn ndjson_is_chosen_by_name_and_weight() {
        for accept in [
            "application/x-ndjson",
            "application/x-ndjson, application/json",
            "application/json;q=0.5, application/x-ndjson",
            "Application/X-NDJSON; q=0.8, */*;q=0.1",
        ] {
            assert!(prefers_ndjson(accept), "{accept}");
        }
        for accept in [
            "application/json",
            "*/*",
            "application/*",
            "application/x-ndjson;q=0, application/json",
            "application/x-ndjson;q=0",
            "application/x-ndjson;q=0.5, application/json",
            "application/x-ndjson;q=0.5, */*",
            "application/x-ndjson;q=nonsense",
            "text/html",
        ] {
            assert!(!prefers_ndjson(accept), "{accept}");
        }
    }
}
