//! `bench -- mcp`: a load generator that speaks MCP (2025-11-25 Streamable HTTP) to a running
//! mcplatform. It signs up a bench user, creates an org and a server (with the conformance
//! fixtures, whose `test_simple_text` is the read-only tool), then runs virtual clients that
//! initialize once and call a tool in a loop. A call counts once the server answered it, and
//! the server answers only after its `ToolCalled` event is committed; at the end the bench
//! waits until the dashboard's recorded-call count includes every call it made.

use super::{ms, percentile};
use anyhow::{bail, Context};
use reqwest::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VERSION: &str = "2025-11-25";

pub(crate) struct Tenant {
    pub base: String,
    pub token: String,
    pub org: String,
    pub slug: String,
    pub mcp_url: String,
}

pub(crate) async fn post(
    http: &Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    Ok(body)
}

pub(crate) async fn set_up(http: &Client, base: &str) -> anyhow::Result<Tenant> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let signup = post(
        http,
        &format!("{base}/api/v1/auth/signup"),
        None,
        json!({ "email": format!("bench-{id}@example.com"), "password": "bench passphrase 123", "name": "Bench" }),
    )
    .await
    .context("signing up the bench user (is mcplatform running at --url?)")?;
    let token = signup["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let slug = format!("bench-{id}");
    let org = post(
        http,
        &format!("{base}/api/v1/orgs"),
        Some(&token),
        json!({ "name": "Bench", "slug": slug }),
    )
    .await?;
    let org = org["id"].as_str().unwrap_or_default().to_owned();
    post(
        http,
        &format!("{base}/api/v1/orgs/{org}/servers"),
        Some(&token),
        json!({ "name": "Bench", "slug": slug, "conformance_fixtures": true }),
    )
    .await?;
    Ok(Tenant {
        base: base.to_owned(),
        token,
        org,
        mcp_url: format!("{base}/s/{slug}/t/bench-user/mcp"),
        slug,
    })
}

/// The JSON-RPC response in a reply (a JSON body or an SSE stream).
fn response_of(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

/// One virtual client: an initialized session.
pub(crate) struct VirtualClient {
    http: Client,
    url: String,
    session: String,
    next_id: u64,
}

impl VirtualClient {
    pub(crate) async fn connect(http: Client, url: &str, n: usize) -> anyhow::Result<Self> {
        let resp = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": { "protocolVersion": VERSION, "capabilities": {},
                            "clientInfo": { "name": "mcplatform-bench", "version": format!("vc-{n}") } }
            }))
            .send()
            .await?;
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("initialize returned no Mcp-Session-Id")?;
        resp.text().await?;
        let client = Self {
            http,
            url: url.to_owned(),
            session,
            next_id: 1,
        };
        client
            .send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await?;
        Ok(client)
    }

    async fn send(&self, body: Value) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", VERSION)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(text)
    }

    /// Calls a tool; the result when it succeeded.
    pub(crate) async fn call_value(
        &mut self,
        tool: &str,
        arguments: &Value,
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let text = self
            .send(json!({
                "jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": { "name": tool, "arguments": arguments }
            }))
            .await?;
        match response_of(&text) {
            Some(mut v) if v["result"]["isError"] == false => Ok(v["result"].take()),
            other => bail!("{tool} failed: {other:?}"),
        }
    }

    async fn call(&mut self, tool: &str, arguments: &Value) -> anyhow::Result<()> {
        self.next_id += 1;
        let text = self
            .send(json!({
                "jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": { "name": tool, "arguments": arguments }
            }))
            .await?;
        match response_of(&text) {
            Some(v) if v["result"]["isError"] == false => Ok(()),
            other => bail!("{tool} failed: {other:?}"),
        }
    }
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    failed: u64,
    calls: u64,
}

async fn measure(
    tenant: &Tenant,
    clients: usize,
    seconds: u64,
    tool: &'static str,
    arguments: Value,
) -> anyhow::Result<Figures> {
    let http = Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut sessions = Vec::with_capacity(clients);
    for n in 0..clients {
        sessions.push(VirtualClient::connect(http.clone(), &tenant.mcp_url, n).await?);
    }
    let failed = Arc::new(AtomicU64::new(0));
    let arguments = Arc::new(arguments);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut client in sessions {
        let failed = failed.clone();
        let arguments = arguments.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.call(tool, &arguments).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  first failure: {e:#}");
                        }
                    }
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
    Ok(Figures {
        per_second: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        failed: failed.load(Ordering::Relaxed),
        calls: all.len() as u64,
    })
}

/// Waits until the org's dashboard counts `expected` recorded tool calls.
async fn recorded(http: &Client, tenant: &Tenant, expected: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body: Value = http
            .get(format!(
                "{}/api/v1/orgs/{}/dashboard",
                tenant.base, tenant.org
            ))
            .bearer_auth(&tenant.token)
            .send()
            .await?
            .json()
            .await?;
        let n = body["counters"]["tool_calls_24h"].as_u64().unwrap_or(0);
        if n >= expected || Instant::now() > deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(
    base: &str,
    seconds: u64,
    clients: &[usize],
    analyze: Option<&str>,
) -> anyhow::Result<()> {
    let base = base.trim_end_matches('/');
    let http = Client::new();
    let tenant = set_up(&http, base).await?;
    let mut warm_calls = 0;
    if analyze.is_some() {
        let warm = measure(&tenant, 16, 2, "test_simple_text", json!({})).await?;
        recorded(&http, &tenant, warm.calls).await?;
        super::analyze(analyze).await?;
        warm_calls = warm.calls;
    }
    println!("mcplatform MCP benchmark against {base} ({seconds} s per row)");
    println!("server: {}", tenant.mcp_url);
    println!(
        "{:<22} {:>8} {:>12} {:>10} {:>10} {:>8}",
        "tool", "clients", "calls/s", "p50 ms", "p99 ms", "failed"
    );
    let mut total = warm_calls;
    let workloads: [(&'static str, Value); 2] = [
        ("test_simple_text", json!({})),
        (
            "get_support",
            json!({ "title": "Bench ticket", "description": "opened by the load generator",
                     "context": "bench" }),
        ),
    ];
    for (tool, arguments) in workloads {
        for &n in clients {
            let f = measure(&tenant, n, seconds, tool, arguments.clone()).await?;
            total += f.calls;
            println!(
                "{:<22} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>8}",
                tool,
                n,
                f.per_second,
                ms(f.p50),
                ms(f.p99),
                f.failed
            );
        }
    }
    let seen = recorded(&http, &tenant, total).await?;
    println!("recorded tool calls: {seen} of {total} answered (dashboard, via the projections)");
    if seen < total {
        bail!(
            "{} answered calls are missing from the read models",
            total - seen
        );
    }
    Ok(())
}
