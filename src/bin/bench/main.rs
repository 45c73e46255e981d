//! Benchmarks: programs that print figures (never timed assertions in tests).
//!
//! `cargo run --release --bin bench -- store` measures, on this machine and in one run:
//! append throughput and latency at 1/16/64 writers beside raw single-row INSERTs, relay
//! throughput into JetStream, append-to-read-model lag at a steady rate, and rebuild throughput
//! of one projection over a million stored events. It uses a scratch database and NATS prefix,
//! and removes both afterwards.

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::{Actor, DomainEvent, EventMetadata};
use eventstore::nats::Topology;
use eventstore::relay::Relay;
use eventstore::{Cursor, EventStore, UnitOfWork};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

mod abuse;
mod auth_load;
mod machine;
mod mcp_load;
mod walkthrough_load;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Parser)]
#[command(about = "mcplatform benchmarks")]
struct Cli {
    /// Postgres server (a scratch database is created on it and dropped afterwards).
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Event store, relay, projection lag and rebuild.
    Store {
        /// Seconds per append measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Events stored for the rebuild measurement.
        #[arg(long, default_value_t = 1_000_000)]
        rebuild_events: i64,
        /// Events relayed for the relay throughput measurement.
        #[arg(long, default_value_t = 100_000)]
        relay_events: i64,
        /// Keep the scratch database.
        #[arg(long)]
        keep: bool,
    },
    /// MCP tool calls against a running mcplatform: virtual clients that initialize once, then
    /// call a read-only tool and `get_support` as fast as they can.
    Mcp {
        /// Base URL of a running mcplatform (`mcplatform up`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent virtual clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// The server's database: analyzed after a warm-up, as a long-running deployment's is.
        #[arg(long, env = "BENCH_SERVER_DATABASE_URL")]
        analyze: Option<String>,
    },
    /// Signed-in end users: `tools/call` throughput of clients with OAuth access tokens against
    /// the same server in `none` mode (alternating rounds, one run), then how long after a
    /// revocation each instance refuses the token.
    Auth {
        /// Base URL of a running mcplatform (`mcplatform up`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Another instance on the same database and NATS (`mcplatform serve`), to show a
        /// revocation through `--url` honoured there too.
        #[arg(long)]
        second_url: Option<String>,
        /// The server's database: the bench mints its clients' tokens in it through the
        /// authorization server's command services.
        #[arg(
            long,
            env = "BENCH_SERVER_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/mcplatform"
        )]
        database_url: String,
        /// Seconds per round.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent virtual clients (each its own end user, with a token of its own).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Rounds per mode, alternating none and oauth.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Tokens revoked while in use (0 skips the revocation measurement).
        #[arg(long, default_value_t = 10)]
        revocations: usize,
        /// Analyze the server's database after the warm-up, as a long-running deployment's is.
        #[arg(long)]
        analyze: bool,
        /// Also rounds of `oauth` while other end users finish signing in at the token
        /// endpoint, this many per second (0: no such rounds).
        #[arg(long, default_value_t = 0.0)]
        sign_ins: f64,
    },
    /// Walkthroughs: `next_walkthrough_step` against a running mcplatform, then analytics and
    /// sankey query latency over a million stored step completions (scratch database).
    Walkthroughs {
        /// Base URL of a running mcplatform (`mcplatform up`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent end users calling as fast as they are answered, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Completions per second offered by `--paced-clients` end users together, each on a
        /// schedule, a row per rate (comma-separated; 0 for none).
        #[arg(long, value_delimiter = ',', default_value = "3000")]
        paced: Vec<f64>,
        /// End users of the `--paced` rows.
        #[arg(long, default_value_t = 64)]
        paced_clients: usize,
        /// The server's database: analyzed after a warm-up, as a long-running deployment's is.
        #[arg(long, env = "BENCH_SERVER_DATABASE_URL")]
        analyze: Option<String>,
        /// Step completions stored for the query measurement (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        completions: u64,
        /// Skip the MCP measurement (no running mcplatform needed).
        #[arg(long)]
        queries_only: bool,
        /// Keep the scratch database.
        #[arg(long)]
        keep: bool,
    },
    /// One tenant's abuse against another's service, on a running mcplatform: live event
    /// streams on a busy org (the victim org's REST throughput and p99 with and without them),
    /// then half-open slow connections (`/healthz` latency while they are open).
    Abuse {
        /// Base URL of a running mcplatform (`mcplatform up`), on 127.0.0.1.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Live event streams open on the busy org (0 skips part a).
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        /// Streams per user: at most the server's `MCPLATFORM_STREAMS_PER_USER`.
        #[arg(long, default_value_t = 20)]
        streams_per_user: usize,
        /// MCP tool calls per second on the busy org.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// MCP clients sharing `--rate`.
        #[arg(long, default_value_t = 16)]
        callers: usize,
        /// Closed-loop REST clients of the victim org.
        #[arg(long, default_value_t = 8)]
        rest_clients: usize,
        /// Half-open slow connections (0 skips part b).
        #[arg(long, default_value_t = 500)]
        slow: usize,
        /// The address the slow connections come from (any 127.x works on Linux loopback).
        #[arg(long, default_value = "127.0.0.2")]
        slow_from: std::net::Ipv4Addr,
        /// The server's database, to show its transactions per second in each row.
        #[arg(long, env = "BENCH_SERVER_DATABASE_URL")]
        database: Option<String>,
    },
}

/// A tool-call-sized fact: what the hot path records most.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum BenchEvent {
    BenchToolCalled {
        server_id: Uuid,
        tool: String,
        outcome: String,
        duration_ms: u32,
        arguments: serde_json::Value,
    },
}

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> &'static str {
        match self {
            BenchEvent::BenchToolCalled { .. } => "BenchToolCalled",
        }
    }
}

/// The stream type the bench's events are appended to: one event per stream, as tool calls.
#[derive(Default)]
struct BenchCall;

impl domain::Aggregate for BenchCall {
    const TYPE: &'static str = "bench_call";
    type Command = std::convert::Infallible;
    type Event = BenchEvent;
    type Error = std::convert::Infallible;

    fn handle(&self, command: Self::Command) -> Result<Vec<BenchEvent>, Self::Error> {
        match command {}
    }

    fn apply(&mut self, _: &BenchEvent) {}
}

fn sample_event() -> BenchEvent {
    BenchEvent::BenchToolCalled {
        server_id: Uuid::new_v4(),
        tool: "search_docs".to_owned(),
        outcome: "ok".to_owned(),
        duration_ms: 12,
        arguments: serde_json::json!({"query": "how do I configure webhooks for my project", "limit": 10}),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Bench::Mcp {
            url,
            seconds,
            clients,
            analyze,
        } => mcp_load::run(&url, seconds, &clients, analyze.as_deref()).await,
        Bench::Auth {
            url,
            second_url,
            database_url,
            seconds,
            clients,
            rounds,
            revocations,
            analyze,
            sign_ins,
        } => {
            if !(0.0..=1000.0).contains(&sign_ins) {
                anyhow::bail!("--sign-ins {sign_ins}: give sign-ins per second, 0 to 1000");
            }
            auth_load::run(auth_load::Options {
                url,
                second_url,
                database_url,
                seconds,
                clients,
                rounds,
                revocations,
                analyze,
                sign_ins,
            })
            .await
        }
        Bench::Walkthroughs {
            url,
            seconds,
            clients,
            paced,
            paced_clients,
            analyze,
            completions,
            queries_only,
            keep,
        } => {
            if !queries_only {
                if let Some(rate) = paced.iter().find(|rate| !(0.0..=1e6).contains(*rate)) {
                    anyhow::bail!("--paced {rate}: give completions per second, 0 to 1000000");
                }
                if paced_clients == 0 && paced.iter().any(|&rate| rate > 0.0) {
                    anyhow::bail!("--paced-clients 0: paced rows need at least one end user");
                }
                let paced = walkthrough_load::Paced {
                    clients: paced_clients,
                    rates: paced.into_iter().filter(|&rate| rate > 0.0).collect(),
                };
                walkthrough_load::run_mcp(&url, seconds, &clients, &paced, analyze.as_deref())
                    .await?;
            }
            if completions > 0 {
                walkthrough_load::run_queries(&cli.postgres, completions, keep).await?;
            }
            Ok(())
        }
        Bench::Abuse {
            url,
            seconds,
            streams,
            streams_per_user,
            rate,
            callers,
            rest_clients,
            slow,
            slow_from,
            database,
        } => {
            abuse::run(abuse::Options {
                url,
                seconds,
                streams,
                streams_per_user,
                rate,
                callers,
                rest_clients,
                slow,
                slow_from,
                database,
            })
            .await
        }
        Bench::Store {
            seconds,
            rebuild_events,
            relay_events,
            keep,
        } => {
            store(
                &cli.postgres,
                &cli.nats_url,
                seconds,
                rebuild_events,
                relay_events,
                keep,
            )
            .await
        }
    }
}

struct Scratch {
    admin: PgPool,
    name: String,
    pool: PgPool,
}

impl Scratch {
    /// Drops the scratch database, unless asked to keep it.
    async fn finish(self, keep: bool) -> anyhow::Result<()> {
        self.pool.close().await;
        if keep {
            println!("kept database {}", self.name);
        } else {
            sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
                .execute(&self.admin)
                .await?;
        }
        Ok(())
    }
}

async fn scratch_database(server: &str, pool_size: u32) -> anyhow::Result<Scratch> {
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{server}/postgres"))
        .await
        .context("connecting to Postgres")?;
    let name = format!("mcpl_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(&format!("{server}/{name}"))
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(Scratch { admin, name, pool })
}

/// On a fresh database Postgres plans (and caches) statements before it has statistics,
/// which a deployment's first autovacuum fixes within a minute; a short bench would measure
/// those first plans. After a warm-up, analyze the server's database like autovacuum would.
pub(crate) async fn analyze(database_url: Option<&str>) -> anyhow::Result<()> {
    let Some(url) = database_url else {
        return Ok(());
    };
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    println!("(analyzed the server's database after a warm-up)");
    Ok(())
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `writers` tasks calling `op` in a loop for `seconds`; returns throughput and latency.
async fn measure<F, Fut>(writers: usize, seconds: u64, op: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                if op().await.is_ok() {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Run {
        per_second: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

async fn store(
    server: &str,
    nats_url: &str,
    seconds: u64,
    rebuild_events: i64,
    relay_events: i64,
    keep: bool,
) -> anyhow::Result<()> {
    let scratch = scratch_database(server, 80).await?;
    let pool = scratch.pool.clone();
    let store = EventStore::open(pool.clone()).await?;
    println!("mcplatform store benchmark (database {})", scratch.name);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // 1. Appends vs raw inserts.
    sqlx::query(
        "CREATE TABLE bench_raw (id uuid PRIMARY KEY, kind text NOT NULL, payload json NOT NULL, \
         metadata json NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let org = Uuid::new_v4();
    let metadata = EventMetadata::by(Actor::EndUser { id: Uuid::new_v4() }).for_org(org);
    let payload = serde_json::to_string(&sample_event())?;
    let metadata_json = serde_json::to_string(&metadata)?;
    println!();
    println!("append (one-event streams, group commit) vs raw single-row INSERT of the same size");
    println!(
        "{:>8} {:>12} {:>9} {:>9} {:>12} {:>9} {:>9} {:>7}",
        "writers", "append ev/s", "p50 ms", "p99 ms", "insert /s", "p50 ms", "p99 ms", "ratio"
    );
    for writers in [1usize, 16, 64] {
        let s = store.clone();
        let m = metadata.clone();
        let append = measure(writers, seconds, move || {
            let s = s.clone();
            let m = m.clone();
            async move {
                let mut uow = UnitOfWork::new();
                uow.append::<BenchCall>(Uuid::now_v7().to_string(), 0, &[sample_event()], &m)?;
                s.commit(uow).await?;
                Ok(())
            }
        })
        .await;
        let p = pool.clone();
        let (pl, ml) = (payload.clone(), metadata_json.clone());
        let raw = measure(writers, seconds, move || {
            let p = p.clone();
            let (pl, ml) = (pl.clone(), ml.clone());
            async move {
                sqlx::query(
                    "INSERT INTO bench_raw (id, kind, payload, metadata) \
                     VALUES ($1, $2, $3::json, $4::json)",
                )
                .bind(Uuid::new_v4())
                .bind("BenchToolCalled")
                .bind(pl)
                .bind(ml)
                .execute(&p)
                .await?;
                Ok(())
            }
        })
        .await;
        println!(
            "{:>8} {:>12.0} {:>9.2} {:>9.2} {:>12.0} {:>9.2} {:>9.2} {:>6.2}x",
            writers,
            append.per_second,
            ms(append.p50),
            ms(append.p99),
            raw.per_second,
            ms(raw.p50),
            ms(raw.p99),
            append.per_second / raw.per_second.max(1.0)
        );
    }

    // 2. Relay throughput: a backlog of events, then time the relay through it.
    let topology = Topology::new(format!(
        "bench{}",
        &Uuid::new_v4().simple().to_string()[..8]
    ));
    let nats = eventstore::nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(nats.clone());
    js.get_or_create_stream(topology.stream_config()).await?;
    // Everything appended so far counts as already relayed: start the relay at the head.
    let head = store.head().await?;
    set_relay_checkpoint(&pool, head).await?;
    insert_synthetic(&pool, org, relay_events).await?;
    let relay_target = store.head().await?;
    let relay = Relay::new(pool.clone(), js.clone(), topology.clone(), store.store_id());
    let relay_task = tokio::spawn(relay.run());
    let started = Instant::now();
    loop {
        let at = eventstore::relay::load_checkpoint(&pool).await?;
        if at >= relay_target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relay_secs = started.elapsed().as_secs_f64();
    println!();
    println!(
        "relay into JetStream: {} events in {:.2} s = {:.0} events/s",
        relay_events,
        relay_secs,
        relay_events as f64 / relay_secs
    );

    // 3. Append-to-read-model lag at a steady 1,000 events/s (relay + the audit projection).
    let audit = projections::registry::by_name("audit_log").context("audit_log projection")?;
    projections::checkpoint::ensure(&pool, audit.name()).await?;
    let now = store.head().await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $1::text::xid8, global_position = $2 WHERE name = $3",
    )
    .bind(now.transaction_id.to_string())
    .bind(now.global_position)
    .bind(audit.name())
    .execute(&pool)
    .await?;
    // Start consuming at the stream's end.
    let mut stream = js.get_stream(topology.stream_name()).await?;
    let last = stream.info().await?.state.last_sequence as i64;
    sqlx::query("UPDATE projection_checkpoints SET stream_sequence = $1 WHERE name = $2")
        .bind(last)
        .bind(audit.name())
        .execute(&pool)
        .await?;
    let worker = projections::worker::Worker::new(
        pool.clone(),
        js.clone(),
        topology.clone(),
        store.store_id(),
        audit.clone(),
    );
    let worker_task = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lag = steady_lag(
        &store,
        &pool,
        &metadata,
        audit.name(),
        1000,
        seconds.max(5) * 2,
    )
    .await?;
    println!(
        "append-to-read-model lag at 1,000 events/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
        ms(lag.0),
        ms(lag.1),
        ms(lag.2),
        lag.3
    );
    relay_task.abort();
    worker_task.abort();

    // 4. Rebuild of one projection over `rebuild_events` stored events.
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    if have < rebuild_events {
        insert_synthetic(&pool, org, rebuild_events - have).await?;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    let report = projections::rebuild::rebuild(&pool, audit, |_| {}).await?;
    println!(
        "rebuild of audit_log over {} events: {:.2} s = {:.0} events/s",
        total, report.seconds, report.events_per_second
    );

    let _ = js.delete_stream(topology.stream_name()).await;
    pool.close().await;
    scratch.finish(keep).await
}

async fn set_relay_checkpoint(pool: &PgPool, cursor: Cursor) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE relay_checkpoint SET transaction_id = $1::text::xid8, global_position = $2",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.global_position)
    .execute(pool)
    .await?;
    Ok(())
}

/// Bulk-loads synthetic tool-call events (one stream each) spread over 100 orgs, in chunks.
async fn insert_synthetic(pool: &PgPool, _org: Uuid, n: i64) -> anyhow::Result<()> {
    let chunk = 100_000i64;
    let mut done = 0;
    while done < n {
        let size = chunk.min(n - done);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata, org_id) \
             SELECT 'bench_call', gen_random_uuid()::text, 1, 'BenchToolCalled', '1', \
             json_build_object('server_id', gen_random_uuid(), 'tool', 'search_docs', \
               'outcome', 'ok', 'duration_ms', (i % 500), 'arguments', \
               json_build_object('query', 'how do I configure webhooks for my project', 'limit', 10)), \
             json_build_object('org_id', o, 'actor', json_build_object('kind', 'end_user', 'id', gen_random_uuid()), \
               'request_id', 'bench'), o \
             FROM (SELECT i, ('00000000-0000-0000-0000-' || lpad((i % 100)::text, 12, '0'))::uuid AS o \
                   FROM generate_series(1, $1) AS i) AS g",
        )
        .bind(size)
        .execute(pool)
        .await?;
        done += size;
    }
    Ok(())
}

/// Appends at `rate` events/s for `seconds` and measures, per event, the time from its commit
/// until the projection's checkpoint includes it. Returns p50, p99, max and the count.
async fn steady_lag(
    store: &EventStore,
    pool: &PgPool,
    metadata: &EventMetadata,
    projection: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(Duration, Duration, Duration, usize)> {
    let pending: Arc<Mutex<Vec<(Cursor, Instant)>>> = Arc::default();
    let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Watcher: polls the checkpoint every millisecond.
    let watcher = {
        let (pending, lags, done, pool) =
            (pending.clone(), lags.clone(), done.clone(), pool.clone());
        let name = projection.to_owned();
        tokio::spawn(async move {
            loop {
                let row: Result<(i64, i64), _> = sqlx::query_as(
                    "SELECT transaction_id::text::bigint, global_position FROM projection_checkpoints WHERE name = $1",
                )
                .bind(&name)
                .fetch_one(&pool)
                .await;
                let now = Instant::now();
                if let Ok((tx, pos)) = row {
                    let at = Cursor::new(tx, pos);
                    let mut p = pending.lock().await;
                    let mut l = lags.lock().await;
                    p.retain(|(c, t)| {
                        if *c <= at {
                            l.push(now - *t);
                            false
                        } else {
                            true
                        }
                    });
                    if done.load(Ordering::Relaxed) && p.is_empty() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // Writers: `rate` appends per second, evenly spaced, from 8 tasks.
    let tasks = 8u64;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, metadata, pending) = (store.clone(), metadata.clone(), pending.clone());
        handles.push(tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(tasks as f64 / rate as f64));
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                tick.tick().await;
                let mut uow = UnitOfWork::new();
                if uow
                    .append::<BenchCall>(
                        Uuid::now_v7().to_string(),
                        0,
                        &[sample_event()],
                        &metadata,
                    )
                    .is_err()
                {
                    continue;
                }
                if let Ok(appended) = store.commit(uow).await {
                    let committed = Instant::now();
                    if let Some(a) = appended.first() {
                        pending.lock().await.push((a.cursor, committed));
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), watcher).await;
    let mut all = lags.lock().await.clone();
    all.sort_unstable();
    Ok((
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default(),
        all.len(),
    ))
}

/// One measured row of a load benchmark against a running server.
pub(crate) struct Row {
    pub(crate) per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) failed: u64,
    pub(crate) calls: u64,
    /// Busy CPU of the whole machine per answered call.
    pub(crate) cpu_us: Option<f64>,
}

impl Row {
    /// Waits for a row's clients and sums it up: each task returns its answered calls' starts
    /// (since `started`) and latencies; `failed` counts the rest; `cpu` is the machine's busy
    /// CPU when the row started.
    pub(crate) async fn from_clients(
        clients: Vec<tokio::task::JoinHandle<Vec<(Duration, Duration)>>>,
        started: Instant,
        failed: &AtomicU64,
        cpu: Option<machine::BusyCpu>,
    ) -> Self {
        let mut timed = Vec::new();
        for client in clients {
            timed.extend(client.await.unwrap_or_default());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_us = cpu.and_then(|c| c.per_call_since(timed.len() as u64));
        print_timeline(&mut timed, started);
        let mut all: Vec<Duration> = timed.into_iter().map(|(_, l)| l).collect();
        all.sort_unstable();
        Row {
            per_second: all.len() as f64 / elapsed,
            p50: percentile(&all, 0.50),
            p99: percentile(&all, 0.99),
            failed: failed.load(Ordering::Relaxed),
            calls: all.len() as u64,
            cpu_us,
        }
    }

    /// The header of [`Row::print`]'s table.
    pub(crate) fn print_header() {
        println!(
            "{:<24} {:>8} {:>12} {:>10} {:>10} {:>8} {:>13}",
            "tool", "clients", "calls/s", "p50 ms", "p99 ms", "failed", "cpu µs/call"
        );
    }

    pub(crate) fn print(&self, tool: &str, clients: usize) {
        println!(
            "{:<24} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>8} {:>13}",
            tool,
            clients,
            self.per_second,
            ms(self.p50),
            ms(self.p99),
            self.failed,
            machine::column(self.cpu_us)
        );
    }
}

/// With `BENCH_TIMELINE` set, prints each quarter second of a run (calls started in it, their
/// p50, p99 and slowest), so a stall can be told from a steady tail. `timed` holds each call's
/// start (since `started`) and latency.
fn print_timeline(timed: &mut [(Duration, Duration)], started: Instant) {
    if std::env::var_os("BENCH_TIMELINE").is_none() {
        return;
    }
    const WINDOW: Duration = Duration::from_millis(250);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(started.elapsed());
    timed.sort_unstable();
    for window in timed.chunk_by(|a, b| {
        a.0.as_millis() / WINDOW.as_millis() == b.0.as_millis() / WINDOW.as_millis()
    }) {
        let at = window[0].0;
        let mut latencies: Vec<Duration> = window.iter().map(|(_, l)| *l).collect();
        latencies.sort_unstable();
        eprintln!(
            "  t={:6.2}s wall={:>5} calls={:5} p50={:6.2} p99={:6.2} max={:6.2}",
            at.as_secs_f64(),
            (wall + at).as_millis() % 100_000,
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[latencies.len() - 1]),
        );
    }
}
