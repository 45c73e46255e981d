//! `bench -- mcp`: a load generator that speaks MCP (2025-11-25 Streamable HTTP) to a running
//! mcplatform. It signs up a bench user, creates an org and a server (with the conformance
//! fixtures, whose `test_simple_text` is the read-only tool), then runs virtual clients that
//! initialize once and call a tool in a loop. A call counts once the server answered it, and
//! the server answers only after its `ToolCalled` event is committed; at the end the bench
//! waits until the dashboard's recorded-call count includes every call it made.

use super::machine::{self, BusyCpu};
use super::Row;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::Client;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
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

/// The JSON-RPC message in a reply that answers a request (a JSON body, or the `data:` line of
/// an SSE stream that carries it).
fn response_line(text: &str) -> Option<&str> {
    if text.starts_with('{') {
        return Some(text);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.contains("\"result\"") || d.contains("\"error\""))
}

/// The parts of a `tools/call` answer the load generator looks at. Decoding only these (serde
/// skips the rest without building it) keeps the generator's share of the machine small: it
/// runs on the same two cores as the server it measures.
#[derive(Deserialize)]
struct Reply<S> {
    result: Option<CallResult<S>>,
}

#[derive(Deserialize)]
struct CallResult<S> {
    #[serde(rename = "isError", default)]
    is_error: bool,
    #[serde(rename = "structuredContent")]
    structured: Option<S>,
}

/// A walkthrough tool's structured answer: where the caller is now.
#[derive(Deserialize)]
pub(crate) struct StepAnswer {
    pub status: Option<String>,
    pub step: Option<StepRef>,
}

#[derive(Deserialize)]
pub(crate) struct StepRef {
    pub id: String,
}

/// One virtual client: an initialized session on an HTTP/1.1 connection of its own. It speaks
/// through hyper's connection API rather than reqwest's pooled client: the generator shares
/// the machine with the server it measures, and this way it costs about half as much per call.
pub(crate) struct VirtualClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    session: String,
    next_id: u64,
    /// `Authorization` header value (`Bearer mcp_at_…`) of a client signed in by OAuth.
    authorization: Option<String>,
}

impl VirtualClient {
    pub(crate) async fn connect(url: &str, n: usize) -> anyhow::Result<Self> {
        Self::connect_as(url, n, None).await
    }

    /// A virtual client that presents `access_token` (ours, `mcp_at_…`) on every request, as an
    /// MCP client signed in to a server in `oauth` mode does.
    pub(crate) async fn connect_as(
        url: &str,
        n: usize,
        access_token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse().context("virtual client URL")?;
        let authority = uri
            .authority()
            .context("virtual client URL has no host")?
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut client = Self {
            sender,
            authority,
            path: uri.path().to_owned(),
            session: String::new(),
            next_id: 1,
            authorization: access_token.map(|t| format!("Bearer {t}")),
        };
        let initialize = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": VERSION, "capabilities": {},
                        "clientInfo": { "name": "mcplatform-bench", "version": format!("vc-{n}") } }
        });
        let (headers, _) = client.exchange(initialize.to_string()).await?;
        client.session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("initialize returned no Mcp-Session-Id")?;
        client
            .exchange(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned())
            .await?;
        Ok(client)
    }

    /// Posts one JSON-RPC message; the response headers and body of a 2xx answer.
    async fn exchange(&mut self, body: String) -> anyhow::Result<(hyper::HeaderMap, Bytes)> {
        let (parts, body) = self.send(body).await?;
        if !parts.status.is_success() {
            bail!("{}: {}", parts.status, String::from_utf8_lossy(&body));
        }
        Ok((parts.headers, body))
    }

    /// Posts one JSON-RPC message; the response, whatever its status.
    async fn send(
        &mut self,
        body: String,
    ) -> anyhow::Result<(hyper::http::response::Parts, Bytes)> {
        let mut request = hyper::Request::post(self.path.as_str())
            .header("host", self.authority.as_str())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", VERSION);
        if !self.session.is_empty() {
            request = request.header("mcp-session-id", self.session.as_str());
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let answered = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            Ok::<_, hyper::Error>((parts, body.collect().await?.to_bytes()))
        };
        Ok(tokio::time::timeout(Duration::from_secs(30), answered)
            .await
            .context("no answer within 30 s")??)
    }

    /// The HTTP status a `tools/call` is answered with (the revocation probe: 200 while the
    /// token is honoured, 401 once it is refused).
    pub(crate) async fn call_status(
        &mut self,
        tool: &str,
        arguments: &str,
    ) -> anyhow::Result<hyper::StatusCode> {
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#,
            self.next_id
        );
        Ok(self.send(body).await?.0.status)
    }

    /// Calls a tool with arguments given as a JSON object's text; its structured content
    /// (decoded as `S`) when the call succeeded.
    pub(crate) async fn call<S: DeserializeOwned>(
        &mut self,
        tool: &str,
        arguments: &str,
    ) -> anyhow::Result<Option<S>> {
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#,
            self.next_id
        );
        let (_, body) = self.exchange(body).await?;
        let text = std::str::from_utf8(&body).context("a reply that is not UTF-8")?;
        let reply = response_line(text).and_then(|l| serde_json::from_str::<Reply<S>>(l).ok());
        match reply.and_then(|r| r.result) {
            Some(result) if !result.is_error => Ok(result.structured),
            _ => bail!("{tool} failed: {text}"),
        }
    }
}

async fn measure(
    tenant: &Tenant,
    clients: usize,
    seconds: u64,
    tool: &'static str,
    arguments: &str,
) -> anyhow::Result<Row> {
    let mut sessions = Vec::with_capacity(clients);
    for n in 0..clients {
        sessions.push(VirtualClient::connect(&tenant.mcp_url, n).await?);
    }
    Ok(drive(sessions, seconds, tool, arguments).await)
}

/// Each initialized client calls `tool` in a loop for `seconds`, as fast as it is answered.
pub(crate) async fn drive(
    sessions: Vec<VirtualClient>,
    seconds: u64,
    tool: &'static str,
    arguments: &str,
) -> Row {
    let failed = Arc::new(AtomicU64::new(0));
    let arguments: Arc<str> = arguments.into();
    let cpu = BusyCpu::now();
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
                match client.call::<IgnoredAny>(tool, &arguments).await {
                    Ok(_) => latencies.push((t.duration_since(started), t.elapsed())),
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
    Row::from_clients(tasks, started, &failed, cpu).await
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
        let warm = measure(&tenant, 16, 2, "test_simple_text", "{}").await?;
        recorded(&http, &tenant, warm.calls).await?;
        super::analyze(analyze).await?;
        warm_calls = warm.calls;
    }
    println!("mcplatform MCP benchmark against {base} ({seconds} s per row)");
    println!("server: {}", tenant.mcp_url);
    println!("{}", machine::describe());
    Row::print_header();
    let mut total = warm_calls;
    let workloads: [(&'static str, &str); 2] = [
        ("test_simple_text", "{}"),
        (
            "get_support",
            r#"{"title":"Bench ticket","description":"opened by the load generator","context":"bench"}"#,
        ),
    ];
    for (tool, arguments) in workloads {
        for &n in clients {
            let f = measure(&tenant, n, seconds, tool, arguments).await?;
            total += f.calls;
            f.print(tool, n);
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
