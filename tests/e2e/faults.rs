//! Faults: NATS away (writes succeed, read models converge when it is back) and Postgres away
//! (503 while down, recovery without a restart). The outage is a TCP proxy in front of the real
//! server that the test cuts and restores, so the shared servers keep running for other tests.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A TCP proxy that can be cut (all connections dropped, new ones refused) and restored on the
/// same port.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Proxy {
            addr,
            upstream: upstream.parse().unwrap(),
            tasks: Arc::default(),
            acceptor: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().await.push(task);
            }
        }));
    }

    pub(crate) async fn cut(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
            let _ = a.await;
        }
        for t in self.tasks.lock().await.drain(..) {
            t.abort();
        }
    }

    pub(crate) async fn restore(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

/// `up` whose Postgres connections go through a proxy the test can cut. The database is
/// created and migrated directly first. (Proxy first, so the app is dropped before it.)
pub(crate) async fn app_behind_postgres_proxy() -> (Proxy, TestApp) {
    let env = TestEnv::new();
    assert!(env.cli(&["migrate"]).status.success());
    let pg = Proxy::start("127.0.0.1:5432").await;
    let db_url = format!("postgres://postgres@{}/{}", pg.addr, env.db_name);
    let proc = env.start_with(&["up"], &[("DATABASE_URL", &db_url)]);
    let app = TestApp {
        proc,
        env,
        http: client(),
    };
    (pg, app)
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_while_nats_is_away_and_read_models_converge_after() {
    let env = TestEnv::new();
    let mut nats = Proxy::start("127.0.0.1:4222").await;
    let nats_url = format!("nats://{}", nats.addr);
    let proc = env.start_with(&["up"], &[("NATS_URL", &nats_url)]);
    let app = TestApp {
        proc,
        env,
        http: client(),
    };
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;

    nats.cut().await;
    let started = std::time::Instant::now();
    for i in 0..5 {
        let (status, body) = app
            .post(
                &format!("/api/v1/orgs/{org}/servers"),
                &owner.token,
                json!({"name": "s", "slug": format!("during-outage-{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "writes must not hang on NATS"
    );

    nats.restore().await;
    eventually(
        "read models to converge after NATS is back",
        Duration::from_secs(60),
        || async {
            let (_, body) = app
                .get(&format!("/api/v1/orgs/{org}/servers"), &owner.token)
                .await;
            (body["items"].as_array()?.len() == 5).then_some(())
        },
    )
    .await;
    // Each projection converges on its own; the dashboard too.
    eventually(
        "the dashboard to converge",
        Duration::from_secs(30),
        || async {
            let (_, dash) = app
                .get(&format!("/api/v1/orgs/{org}/dashboard"), &owner.token)
                .await;
            (dash["counters"]["servers"] == 5).then_some(())
        },
    )
    .await;
    let (status, _) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_answers_503_and_recovers_without_a_restart() {
    let (mut pg, app) = app_behind_postgres_proxy().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;

    pg.cut().await;
    let (status, body) = app.get("/api/v1/orgs", &owner.token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/servers"),
            &owner.token,
            json!({"name": "s", "slug": "while-down"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    pg.restore().await;
    eventually(
        "requests to succeed again",
        Duration::from_secs(30),
        || async {
            let (status, _) = app.get("/api/v1/orgs", &owner.token).await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/servers"),
            &owner.token,
            json!({"name": "s", "slug": "after-recovery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually("projectors to resume", Duration::from_secs(30), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/servers"), &owner.token)
            .await;
        (body["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_recreated_and_projection_resumes() {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "before").await;

    let js =
        async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
    js.delete_stream(app.env.stream_name()).await.unwrap();

    let (status, body) = app
        .post(
            &format!("/api/v1/orgs/{org}/servers"),
            &owner.token,
            json!({"name": "s", "slug": "after"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually(
        "the new server to be projected",
        Duration::from_secs(30),
        || async {
            let (_, body) = app
                .get(&format!("/api/v1/orgs/{org}/servers"), &owner.token)
                .await;
            (body["items"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    eventually(
        "the dashboard to count it",
        Duration::from_secs(30),
        || async {
            let (_, dash) = app
                .get(&format!("/api/v1/orgs/{org}/dashboard"), &owner.token)
                .await;
            (dash["counters"]["servers"] == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_that_cannot_be_recorded_fails_and_nothing_is_reported_done() {
    use crate::mcp_raw::Mcp;
    let (mut pg, app) = app_behind_postgres_proxy().await;
    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    app.create_server(&owner, &org, "acme-docs").await;
    let mut mcp = Mcp::new(app.url("/s/acme-docs/mcp"));
    mcp.initialize("during-outage").await;

    pg.cut().await;
    let reply = mcp
        .call_tool(
            "get_support",
            json!({"title": "While the database is away", "description": "d"}),
        )
        .await;
    let message = reply.message();
    assert!(
        reply.status == StatusCode::SERVICE_UNAVAILABLE || message.get("error").is_some(),
        "a call that could not be stored must fail: {} {}",
        reply.status,
        reply.text
    );
    assert!(message.get("result").is_none(), "{}", reply.text);

    pg.restore().await;
    let reply = eventually(
        "calls to succeed again",
        Duration::from_secs(30),
        || async {
            let reply = mcp
                .call_tool(
                    "get_support",
                    json!({"title": "After recovery", "description": "d"}),
                )
                .await;
            (reply.message()["result"]["isError"] == false).then_some(reply)
        },
    )
    .await;
    assert!(reply.text.contains("TCK-"));
    // Only what was answered as done is recorded as done.
    let calls = eventually("the call recorded", Duration::from_secs(30), || async {
        let (_, body) = app
            .get(&format!("/api/v1/orgs/{org}/tool-calls"), &owner.token)
            .await;
        let items = body["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert!(calls.iter().all(
        |c| c["arguments"]["title"] != "While the database is away" || c["outcome"] == "error"
    ));
    let (_, tickets) = app
        .get(&format!("/api/v1/orgs/{org}/tickets"), &owner.token)
        .await;
    assert!(tickets["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["title"] != "While the database is away"));
}
