//! `bench -- abuse`: what one tenant's abuse costs the others, against a running mcplatform.
//!
//! (a) Live event streams. A busy org takes a steady rate of MCP tool calls (each a
//! `ToolCalled` event) while a victim org's REST clients read a list in a closed loop. The
//! victim's throughput and p99 are measured without streams, then with `--streams` live event
//! streams open on the busy org: once filtered to an event type that never occurs (what the
//! streams cost while they wait: the hub, wake-ups, the database) and once unfiltered (every
//! event sent to every stream: the fan-out itself, bytes the machine has to move). The streams
//! are opened by `--streams-per-user` users each, members of the busy org, so the server needs
//! its per-org cap raised (see the README's benchmarks): all of them watching the busy org is
//! the worst case for the database, the one the caps exist for.
//!
//! (b) Slow connections. `--slow` connections from `--slow-from` (another loopback address)
//! send a request line and part of the headers and never finish; `/healthz` is probed from
//! 127.0.0.1 before and while they are open; the bench reports its latency and how many slow
//! connections the server closed.

use super::machine::{self, BusyCpu};
use super::mcp_load::{self, Tenant, VirtualClient};
use super::{ms, percentile};
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use reqwest::Client;
use serde::de::IgnoredAny;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub struct Options {
    pub url: String,
    pub seconds: u64,
    pub streams: usize,
    pub streams_per_user: usize,
    pub rate: f64,
    pub callers: usize,
    pub rest_clients: usize,
    pub slow: usize,
    pub slow_from: std::net::Ipv4Addr,
    pub database: Option<String>,
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let base = o.url.trim_end_matches('/').to_owned();
    let addr = server_addr(&base).await?;
    let http = Client::new();
    println!(
        "mcplatform abuse benchmark against {base} ({} s per row)",
        o.seconds
    );
    println!("{}", machine::describe());
    if o.streams > 0 {
        streams(&o, &base, addr, &http).await?;
    }
    if o.slow > 0 {
        slow_connections(&o, addr).await?;
    }
    Ok(())
}

async fn server_addr(base: &str) -> anyhow::Result<SocketAddr> {
    let uri: hyper::Uri = base.parse().context("--url")?;
    let authority = uri
        .authority()
        .context("--url has no host")?
        .as_str()
        .to_owned();
    let mut addresses = tokio::net::lookup_host(&authority).await?;
    let found = addresses.find(SocketAddr::is_ipv4);
    found.with_context(|| format!("{authority} has no IPv4 address"))
}

/// One measured row of part (a).
struct Measured {
    rest_per_s: f64,
    p50: Duration,
    p99: Duration,
    rest_failed: u64,
    calls_per_s: f64,
    stream_mb_per_s: f64,
    db_tx_per_s: Option<f64>,
    cpu_us_per_request: Option<f64>,
}

async fn streams(o: &Options, base: &str, addr: SocketAddr, http: &Client) -> anyhow::Result<()> {
    let busy = mcp_load::set_up(http, base).await?;
    let victim = mcp_load::set_up(http, base).await?;
    let users = o.streams.div_ceil(o.streams_per_user.max(1));
    let mut tokens = Vec::with_capacity(users);
    for n in 0..users {
        tokens.push(member_of(http, &busy, n).await?);
    }
    let db = match &o.database {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("--database")?,
        ),
        None => None,
    };
    // The busy org's tool calls run through every row.
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    let interval = Duration::from_secs_f64(o.callers as f64 / o.rate.max(1.0));
    for n in 0..o.callers {
        let mut client = VirtualClient::connect(&busy.mcp_url, n).await?;
        let calls = calls.clone();
        callers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tick.tick().await;
                if client
                    .call::<IgnoredAny>("test_simple_text", "{}")
                    .await
                    .is_ok()
                {
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    println!(
        "(a) {} live streams on the busy org ({} users of {} each), {:.0} tool calls/s there; \
         {} closed-loop REST clients of another org on GET /api/v1/orgs/{{org}}/servers",
        o.streams, users, o.streams_per_user, o.rate, o.rest_clients
    );
    // Warm-up.
    measure(o, addr, &victim, &calls, &AtomicU64::new(0), db.as_ref(), 2).await?;
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>7} {:>9} {:>11} {:>9} {:>12}",
        "row",
        "REST req/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "calls/s",
        "stream MB/s",
        "db tx/s",
        "cpu µs/req"
    );
    let rows: [(&str, Option<&str>); 3] = [
        ("no streams", None),
        ("streams, filtered (idle)", Some("?type=BenchNeverHappens")),
        ("streams, every event", Some("")),
    ];
    let mut baseline: Option<Measured> = None;
    let mut ratios = Vec::new();
    for (label, query) in rows {
        let received = Arc::new(AtomicU64::new(0));
        let mut open = Vec::new();
        if let Some(query) = query {
            open = open_streams(addr, &busy, &tokens, o, query, &received).await?;
            // Let the connections settle before measuring.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let row = measure(o, addr, &victim, &calls, &received, db.as_ref(), o.seconds).await?;
        println!(
            "{:<34} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>9.0} {:>11.1} {:>9} {:>12}",
            format!("{label} ({})", open.len()),
            row.rest_per_s,
            ms(row.p50),
            ms(row.p99),
            row.rest_failed,
            row.calls_per_s,
            row.stream_mb_per_s,
            row.db_tx_per_s
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.0}")),
            machine::column(row.cpu_us_per_request),
        );
        for task in &open {
            task.abort();
        }
        match &baseline {
            None => baseline = Some(row),
            Some(base) => ratios.push((
                label,
                row.rest_per_s / base.rest_per_s,
                row.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-9),
            )),
        }
        // Give the server time to see the closed streams.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (label, throughput, p99) in ratios {
        println!(
            "  {label}: victim throughput {throughput:.2}× (target ≥ 0.9×), p99 {p99:.2}× \
             (target ≤ 1.5×)"
        );
    }
    for caller in callers {
        caller.abort();
    }
    Ok(())
}

/// A new user added to the busy org as a member (invited, then signing up with the
/// invitation's token); their access token.
async fn member_of(http: &Client, busy: &Tenant, n: usize) -> anyhow::Result<String> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let email = format!("bench-streams-{n}-{id}@example.com");
    let invited = mcp_load::post(
        http,
        &format!("{}/api/v1/orgs/{}/members", busy.base, busy.org),
        Some(&busy.token),
        json!({ "email": email, "role": "member" }),
    )
    .await?;
    let signup = mcp_load::post(
        http,
        &format!("{}/api/v1/auth/signup", busy.base),
        None,
        json!({
            "email": email,
            "password": "bench passphrase 123",
            "name": "Bench streams",
            "invitation_token": invited["invitation_token"],
        }),
    )
    .await
    .context(
        "signing up a stream user; start the server with \
         MCPLATFORM_LIMIT_SIGNUPS_PER_ADDRESS_PER_HOUR=0 (see the README's benchmarks)",
    )?;
    Ok(signup["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Opens `--streams` streams (`--streams-per-user` per token), each read and thrown away by a
/// task of its own that counts the bytes.
async fn open_streams(
    addr: SocketAddr,
    busy: &Tenant,
    tokens: &[String],
    o: &Options,
    query: &str,
    received: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut open = Vec::with_capacity(o.streams);
    for n in 0..o.streams {
        let token = &tokens[n / o.streams_per_user.max(1)];
        let request = format!(
            "GET /api/v1/orgs/{}/events/stream{query} HTTP/1.1\r\nhost: {addr}\r\n\
             authorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n",
            busy.org
        );
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
            .await
            .context("a stream did not answer within 10 s")??;
        let head = String::from_utf8_lossy(&head[..read]).into_owned();
        if !head.starts_with("HTTP/1.1 200") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            if head.contains("too_many_streams") {
                bail!(
                    "stream {n} was refused at a cap ({status}); start the server with \
                     MCPLATFORM_STREAMS_PER_ORG={streams} and \
                     MCPLATFORM_STREAMS_PER_INSTANCE={streams} or more (see the README's \
                     benchmarks), and --streams-per-user no higher than its \
                     MCPLATFORM_STREAMS_PER_USER",
                    streams = o.streams.max(2000)
                );
            }
            bail!("stream {n}: {status}");
        }
        let received = received.clone();
        open.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    Ok(open)
}

async fn measure(
    o: &Options,
    addr: SocketAddr,
    victim: &Tenant,
    calls: &AtomicU64,
    received: &AtomicU64,
    db: Option<&sqlx::PgPool>,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let path = format!("/api/v1/orgs/{}/servers", victim.org);
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..o.rest_clients {
        clients.push(RestClient::connect(addr, &victim.token).await?);
    }
    let calls_before = calls.load(Ordering::Relaxed);
    let received_before = received.load(Ordering::Relaxed);
    let tx_before = match db {
        Some(pool) => Some(transactions(pool).await?),
        None => None,
    };
    let cpu = BusyCpu::now();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut client in clients {
        let failed = failed.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.get(&path).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  first REST failure: {e:#}");
                        }
                        // A broken connection: take a new one.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if let Ok(fresh) = RestClient::connect(client.addr, &client.token).await {
                            client = fresh;
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_us_per_request = cpu.and_then(|c| c.per_call_since(all.len() as u64));
    let db_tx_per_s = match (db, tx_before) {
        (Some(pool), Some(before)) => Some((transactions(pool).await? - before) as f64 / elapsed),
        _ => None,
    };
    all.sort_unstable();
    Ok(Measured {
        rest_per_s: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        rest_failed: failed.load(Ordering::Relaxed),
        calls_per_s: (calls.load(Ordering::Relaxed) - calls_before) as f64 / elapsed,
        stream_mb_per_s: (received.load(Ordering::Relaxed) - received_before) as f64
            / elapsed
            / 1e6,
        db_tx_per_s,
        cpu_us_per_request,
    })
}

/// Transactions committed and rolled back in the server's database so far.
async fn transactions(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// A REST client on an HTTP/1.1 connection of its own (hyper, as the MCP virtual clients).
struct RestClient {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    token: String,
}

impl RestClient {
    async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            addr,
            token: token.to_owned(),
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<()> {
        let request = hyper::Request::get(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .body(Empty::<Bytes>::new())?;
        let answered = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        let status = tokio::time::timeout(Duration::from_secs(30), answered)
            .await
            .context("no answer within 30 s")??;
        if !status.is_success() {
            bail!("GET {path}: {status}");
        }
        Ok(())
    }
}

/// Part (b): slow connections from another address, `/healthz` probed from 127.0.0.1.
async fn slow_connections(o: &Options, addr: SocketAddr) -> anyhow::Result<()> {
    println!(
        "(b) {} half-open connections from {} (a request line and part of the headers, never \
         finished); /healthz probed from 127.0.0.1, a new connection each, every 20 ms",
        o.slow, o.slow_from
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8}",
        "row", "probes", "p50 ms", "p99 ms", "max ms", "> 100 ms", "failed"
    );
    let probes = (o.seconds * 50) as usize;
    let quiet = probe_healthz(addr, probes).await;
    quiet.print("no slow connections");

    let mut slow = Vec::with_capacity(o.slow);
    let mut refused = 0;
    for _ in 0..o.slow {
        match slow_connection(o.slow_from, addr).await {
            Ok(stream) => slow.push(stream),
            Err(_) => refused += 1,
        }
    }
    let opened_at = Instant::now();
    let loaded = probe_healthz(addr, probes).await;
    loaded.print(&format!("{} slow connections open", slow.len()));
    // Which of them has the server closed (or answered, then closed)?
    let mut closed = 0;
    let mut answered = 0;
    let mut buffer = [0u8; 1024];
    for stream in &slow {
        match stream.try_read(&mut buffer) {
            Ok(0) => closed += 1,
            Ok(_) => answered += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed += 1,
        }
    }
    println!(
        "  slow connections: {} opened, {refused} refused or failed to connect; after {:.0} s \
         the server had closed {closed} and answered (then closed) {answered}; {} still open",
        slow.len(),
        opened_at.elapsed().as_secs_f64(),
        slow.len() - closed - answered
    );
    Ok(())
}

/// A connection from `from` that sent a request line and part of a header, and stops there.
async fn slow_connection(from: std::net::Ipv4Addr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.into(), 0))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await??;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: slow\r\nx-slow: a")
        .await?;
    Ok(stream)
}

struct Probed {
    latencies: Vec<Duration>,
    failed: usize,
}

impl Probed {
    fn print(&self, label: &str) {
        let over = self
            .latencies
            .iter()
            .filter(|l| **l > Duration::from_millis(100))
            .count();
        println!(
            "{:<34} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>8}",
            label,
            self.latencies.len(),
            ms(percentile(&self.latencies, 0.50)),
            ms(percentile(&self.latencies, 0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            over,
            self.failed
        );
    }
}

/// `n` probes of `/healthz`, each on a new connection, one every 20 ms; a probe not answered in
/// 5 s fails.
async fn probe_healthz(addr: SocketAddr, n: usize) -> Probed {
    let mut latencies = Vec::with_capacity(n);
    let mut failed = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..n {
        tick.tick().await;
        let t = Instant::now();
        let probe = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
                .await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not 200");
            Ok::<_, anyhow::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(())) => latencies.push(t.elapsed()),
            _ => failed += 1,
        }
    }
    latencies.sort_unstable();
    Probed { latencies, failed }
}
