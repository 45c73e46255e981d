//! The platform's metrics, in the Prometheus text format at `/metrics`: the recorder
//! (`metrics` + `metrics-exporter-prometheus`), what the HTTP layer records per request, the
//! gauges read from the database by one background task every few seconds (the event log's
//! head, the relay's and each projection's position and lag; see [`watch_database`]) and the
//! Postgres pools' usage. The MCP edge and the event store record their own
//! (`mcplatform_mcp_*`, `mcplatform_group_commit_*`) into the same recorder.
//!
//! A scrape runs no query: what it costs must not depend on who asks how often. Who may scrape
//! is the server's choice (docs/design.md, "Who may scrape `/metrics`"): on the main address
//! only with a bearer token ([`ScrapeToken`]), or without one on a separate metrics address
//! ([`router`]).

use axum::http::{header, HeaderMap};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use projections::Reads;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// HTTP responses by status class (`class="2xx"`), both edges.
pub const HTTP_RESPONSES: &str = "mcplatform_http_responses_total";
/// Seconds from a request's routing to its response head, by method, route template and status
/// class.
pub const HTTP_REQUEST_DURATION: &str = "mcplatform_http_request_duration_seconds";
pub const EVENT_STORE_HEAD: &str = "mcplatform_event_store_head_position";
pub const RELAY_CHECKPOINT: &str = "mcplatform_relay_checkpoint_position";
pub const RELAY_LAG_EVENTS: &str = "mcplatform_relay_lag_events";
pub const RELAY_LAG_SECONDS: &str = "mcplatform_relay_lag_seconds";
pub const PROJECTION_CHECKPOINT: &str = "mcplatform_projection_checkpoint_position";
pub const PROJECTION_LAG_EVENTS: &str = "mcplatform_projection_lag_events";
pub const PROJECTION_LAG_SECONDS: &str = "mcplatform_projection_lag_seconds";
pub const POOL_SIZE: &str = "mcplatform_db_pool_connections";
pub const POOL_IDLE: &str = "mcplatform_db_pool_idle_connections";
pub const POOL_IN_USE: &str = "mcplatform_db_pool_in_use_connections";
pub const POOL_MAX: &str = "mcplatform_db_pool_max_connections";
/// Whether the last read of the database gauges succeeded (1) or failed (0).
pub const DATABASE_READ_OK: &str = "mcplatform_db_gauges_read_ok";
/// Seconds since the database gauges were last read successfully: how old the positions and
/// lags shown are.
pub const DATABASE_READ_AGE: &str = "mcplatform_db_gauges_read_age_seconds";

/// Latency buckets, 100 µs to 10 s: an MCP call is well under a millisecond of work, a REST
/// write waits for its read model, a slow disk shows in the seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Group sizes of the group committers (units of work, events), up to their 256-unit limit.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Counting the events behind a position stops here (the gauge then reads "at least this").
const LAG_COUNT_LIMIT: i64 = 100_000;
/// How often histograms are folded in when nobody scrapes (their samples wait in a buffer).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the database gauges are read: fresher than any usual scrape interval, for about a
/// dozen light queries each time, whoever scrapes.
const DATABASE_READ_EVERY: Duration = Duration::from_secs(3);

/// The token that lets `/metrics` be scraped on the main address, kept only as its SHA-256.
#[derive(Clone)]
pub struct ScrapeToken([u8; 32]);

impl ScrapeToken {
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `Authorization: Bearer <token>` (the scheme in any case) carries this token.
    /// Digests are compared in constant time, so timing tells nothing of the token.
    pub fn admits(&self, headers: &HeaderMap) -> Result<(), ScrapeRefusal> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(ScrapeRefusal::Missing)?;
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(ScrapeRefusal::Invalid)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(ScrapeRefusal::Invalid)
        }
    }
}

impl std::fmt::Debug for ScrapeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeToken([REDACTED])")
    }
}

/// Why a scrape with a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeRefusal {
    Missing,
    Invalid,
}

/// The exposition as an HTTP answer.
pub fn exposition() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
}

/// What the separate metrics address serves: `/metrics`, without authentication, and nothing
/// else.
pub fn router() -> Router {
    Router::new().route("/metrics", get(|| async { exposition() }))
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static POOLS: Mutex<Vec<(&'static str, PgPool)>> = Mutex::new(Vec::new());
/// Since when the database gauges are read, and when they last were successfully.
static DATABASE_READ: Mutex<Option<DatabaseRead>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct DatabaseRead {
    watched_since: Instant,
    last_success: Option<Instant>,
}

/// Installs the process-wide recorder (once; later calls do nothing). Call it before anything
/// records: handles made earlier record nowhere.
pub fn install() -> Result<(), BuildError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Prefix("mcplatform_group_commit_batch_".to_owned()),
            BATCH_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histograms fold in at scrapes only");
    }
    let _ = HANDLE.set(handle);
    describe();
    // Every class is listed from the start, at zero.
    for class in CLASSES {
        metrics::counter!(HTTP_RESPONSES, "class" => class).increment(0);
    }
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_RESPONSES, "HTTP responses by status class");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method, route template and status class"
    );
    describe_gauge!(
        EVENT_STORE_HEAD,
        "Global position of the newest readable event"
    );
    describe_gauge!(
        RELAY_CHECKPOINT,
        "Global position the relay has published up to"
    );
    describe_gauge!(
        RELAY_LAG_EVENTS,
        "Events committed but not yet published to NATS"
    );
    describe_gauge!(
        RELAY_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event not yet published to NATS (0 when caught up)"
    );
    describe_gauge!(
        PROJECTION_CHECKPOINT,
        "Global position a projection has applied up to"
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        "Events of a projection's aggregate types it has not applied yet"
    );
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event a projection has not applied yet (0 when caught up)"
    );
    describe_gauge!(
        DATABASE_READ_OK,
        "Whether the last read of the event store and projection gauges succeeded (1) or not (0)"
    );
    describe_gauge!(
        DATABASE_READ_AGE,
        Unit::Seconds,
        "Seconds since the event store and projection gauges were last read successfully"
    );
    describe_gauge!(POOL_SIZE, "Open connections of a Postgres pool");
    describe_gauge!(POOL_IDLE, "Idle connections of a Postgres pool");
    describe_gauge!(POOL_IN_USE, "Connections of a Postgres pool in use");
    describe_gauge!(POOL_MAX, "Most connections a Postgres pool may open");
}

/// Reports a Postgres pool's usage under `name` at every scrape.
pub fn watch_pool(name: &'static str, pool: &PgPool) {
    if let Ok(mut pools) = POOLS.lock() {
        pools.retain(|(n, _)| *n != name);
        pools.push((name, pool.clone()));
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// One route's histogram handles, by method and status class, made on first use.
type RouteHandles = [Option<Histogram>; METHODS.len() * CLASSES.len()];

/// Handles by route template, and the response counters by class.
#[derive(Default)]
struct ThreadHandles {
    by_route: HashMap<Box<str>, RouteHandles>,
    responses: Vec<Counter>,
}

thread_local! {
    /// Per thread: recording a request is then a map read and an atomic push, with no lock and
    /// no allocation once a thread has seen the route.
    static HANDLES: RefCell<ThreadHandles> = RefCell::new(ThreadHandles::default());
}

/// Records one answered request. `route` is the matched route template (`None`: no route).
pub fn record_response(
    method: &Method,
    route: Option<&str>,
    status: StatusCode,
    elapsed: Duration,
) {
    let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
    let route = route.unwrap_or("unmatched");
    let slot = method_index(method) * CLASSES.len() + class;
    HANDLES.with(|handles| {
        let Ok(mut handles) = handles.try_borrow_mut() else {
            return;
        };
        let ThreadHandles {
            by_route,
            responses,
        } = &mut *handles;
        if responses.is_empty() {
            *responses = CLASSES
                .iter()
                .map(|c| metrics::counter!(HTTP_RESPONSES, "class" => *c))
                .collect();
        }
        if let Some(counter) = responses.get(class) {
            counter.increment(1);
        }
        if !by_route.contains_key(route) {
            by_route.insert(route.into(), std::array::from_fn(|_| None));
        }
        if let Some(handles) = by_route.get_mut(route) {
            handles[slot]
                .get_or_insert_with(|| {
                    metrics::histogram!(
                        HTTP_REQUEST_DURATION,
                        "method" => METHODS[slot / CLASSES.len()],
                        "route" => route.to_owned(),
                        "status" => CLASSES[class],
                    )
                })
                .record(elapsed.as_secs_f64());
        }
    });
}

/// Reads the database gauges (the log's head, the relay's and each projection's position and
/// lag) every few seconds, in one task per process (later calls do nothing). A failed read
/// leaves the last values and says so: [`DATABASE_READ_OK`] drops to 0 and
/// [`DATABASE_READ_AGE`] grows.
pub fn watch_database(pool: PgPool) {
    {
        let Ok(mut read) = DATABASE_READ.lock() else {
            return;
        };
        if read.is_some() {
            return;
        }
        *read = Some(DatabaseRead {
            watched_since: Instant::now(),
            last_success: None,
        });
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DATABASE_READ_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let read = read_database_gauges(&pool).await;
            match &read {
                Ok(()) => {
                    if let Ok(mut state) = DATABASE_READ.lock() {
                        if let Some(state) = state.as_mut() {
                            state.last_success = Some(Instant::now());
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "database gauges not read"),
            }
            metrics::gauge!(DATABASE_READ_OK).set(if read.is_ok() { 1.0 } else { 0.0 });
        }
    });
}

async fn read_database_gauges(pool: &PgPool) -> Result<(), eventstore::StoreError> {
    let head = eventstore::reading::head(pool).await?;
    metrics::gauge!(EVENT_STORE_HEAD).set(head.global_position as f64);
    relay_lag(pool).await?;
    projection_lags(pool).await?;
    Ok(())
}

/// The exposition: the recorded metrics, with the pools' usage and the age of the database
/// gauges as of now. Runs no query.
pub fn render() -> String {
    let read = DATABASE_READ.lock().ok().and_then(|read| *read);
    if let Some(read) = read {
        let since = read.last_success.unwrap_or(read.watched_since);
        metrics::gauge!(DATABASE_READ_AGE).set(since.elapsed().as_secs_f64());
    }
    let pools = POOLS.lock().map(|p| p.clone()).unwrap_or_default();
    for (name, pool) in pools {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
        metrics::gauge!(POOL_SIZE, "pool" => name).set(size);
        metrics::gauge!(POOL_IDLE, "pool" => name).set(idle);
        metrics::gauge!(POOL_IN_USE, "pool" => name).set(size.saturating_sub(idle));
        metrics::gauge!(POOL_MAX, "pool" => name).set(pool.options().get_max_connections());
    }
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// How far behind a position the readable log is, in events (counted up to a limit) and in
/// the age of the oldest event beyond it, among the events a reader `reads`.
async fn lag_after(
    pool: &PgPool,
    transaction_id: i64,
    global_position: i64,
    reads: Reads,
) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query(&format!(
        "WITH behind AS ( \
             SELECT recorded_at FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
             AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             AND {} \
             ORDER BY transaction_id, global_position LIMIT $5) \
         SELECT count(*) AS events, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at)), 0)::float8 AS seconds \
         FROM behind",
        Reads::sql_condition(3, 4)
    ))
    .bind(transaction_id.to_string())
    .bind(global_position)
    .bind(reads.only())
    .bind(reads.except())
    .bind(LAG_COUNT_LIMIT)
    .fetch_one(pool)
    .await?;
    Ok((
        row.try_get("events")?,
        row.try_get::<f64, _>("seconds")?.max(0.0),
    ))
}

async fn relay_lag(pool: &PgPool) -> Result<(), sqlx::Error> {
    let checkpoint = eventstore::relay::load_checkpoint(pool).await?;
    let (events, seconds) = lag_after(
        pool,
        checkpoint.transaction_id,
        checkpoint.global_position,
        Reads::All,
    )
    .await?;
    metrics::gauge!(RELAY_CHECKPOINT).set(checkpoint.global_position as f64);
    metrics::gauge!(RELAY_LAG_EVENTS).set(events as f64);
    metrics::gauge!(RELAY_LAG_SECONDS).set(seconds);
    Ok(())
}

async fn projection_lags(pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, transaction_id::text::bigint AS tx, global_position \
         FROM projection_checkpoints ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let position: i64 = row.try_get("global_position")?;
        metrics::gauge!(PROJECTION_CHECKPOINT, "projection" => name.clone()).set(position as f64);
        let Some(projection) = projections::registry::by_name(&name) else {
            continue;
        };
        let (events, seconds) =
            lag_after(pool, row.try_get("tx")?, position, projection.reads()).await?;
        metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => name.clone()).set(events as f64);
        metrics::gauge!(PROJECTION_LAG_SECONDS, "projection" => name).set(seconds);
    }
    Ok(())
}

#[cfg(test)]
mod scrape_token_tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_scrape_token_admits_only_itself_as_a_bearer_token() {
        let token = ScrapeToken::new("scrape-token-0123456789");
        let admits = |value| token.admits(&headers(value));
        assert_eq!(admits(Some("Bearer scrape-token-0123456789")), Ok(()));
        assert_eq!(admits(Some("BEARER scrape-token-0123456789")), Ok(()));
        assert_eq!(admits(None), Err(ScrapeRefusal::Missing));
        for refused in [
            "Bearer scrape-token-012345678",
            "Bearer scrape-token-01234567890",
            "Basic scrape-token-0123456789",
            "scrape-token-0123456789",
            "Bearer ",
        ] {
            assert_eq!(
                admits(Some(refused)),
                Err(ScrapeRefusal::Invalid),
                "{refused}"
            );
        }
        assert!(!format!("{token:?}").contains("scrape"));
    }
}
