//! Slow and greedy clients: the header, body and idle timeouts, and the cap on connections per
//! client address. Each test starts `up` with short limits and speaks raw HTTP/1.1 over TCP.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// `up` with these limits, and a client.
fn start(vars: &[(&str, &str)]) -> TestApp {
    let env = TestEnv::new();
    let proc = env.start_with(&["up"], vars);
    TestApp {
        proc,
        env,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // Below the shortest idle timeout here, so no pooled connection is reused just as
            // the server closes it.
            .pool_idle_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    }
}

fn server_addr(app: &TestApp) -> SocketAddr {
    app.proc
        .base()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap()
}

/// A connection to the app from the loopback address `from` (127.0.0.1, 127.0.0.2, ...).
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(server_addr(app)).await.unwrap()
}

/// Reads until the server closes the connection (or resets it); `None` if it is still open
/// after `within`. Returns what was read.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request whose headers never end is cut after the header timeout, as is a connection that
/// sends nothing at all.
#[tokio::test]
async fn unfinished_headers_are_cut_at_the_header_timeout() {
    let app = start(&[("MCPLATFORM_HEADER_TIMEOUT", "1s")]);
    let mut partial = connect_from(&app, "127.0.0.1").await;
    let mut silent = connect_from(&app, "127.0.0.1").await;
    let started = Instant::now();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Bytes keep coming, slowly: the timeout counts from the first.
        let _ = partial.write_all(b"a").await;
    }
    let answer = read_until_closed(&mut partial, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "a request with unfinished headers still open after {:?}",
        started.elapsed()
    );
    let answer = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some(""), "a silent connection is closed");

    // A complete request is answered as before.
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A body sent too slowly is answered 408 (problem `request_timeout`) after the body timeout,
/// and the connection closed.
#[tokio::test]
async fn a_body_sent_too_slowly_is_answered_408() {
    let app = start(&[
        ("MCPLATFORM_BODY_TIMEOUT", "1s"),
        ("MCPLATFORM_HEADER_TIMEOUT", "5s"),
    ]);
    let mut tcp = connect_from(&app, "127.0.0.1").await;
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\nX-Request-Id: slow-body-1\r\n\r\n{\"email\": ",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("a slow body is answered and the connection closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-request-id: slow-body-1"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(problem["code"], "request_timeout", "{answer}");

    // A body sent in time is read as before.
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@acme.dev", "password": "wrong password"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// Connections from one address beyond the cap are closed at once, while another address is
/// served; a closed connection frees its place.
#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed() {
    let app = start(&[
        ("MCPLATFORM_CONNECTIONS_PER_ADDRESS", "4"),
        ("MCPLATFORM_HEADER_TIMEOUT", "60s"),
    ]);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(&app, "127.0.0.2").await);
    }
    let mut over = connect_from(&app, "127.0.0.2").await;
    assert_eq!(
        read_until_closed(&mut over, Duration::from_secs(5))
            .await
            .as_deref(),
        Some(""),
        "the fifth connection from 127.0.0.2 is closed unanswered"
    );
    // Another address is served meanwhile.
    let mut other = connect_from(&app, "127.0.0.1").await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut other, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // One of the four goes: a new connection from 127.0.0.2 takes its place and is served.
    drop(held.pop());
    let answer = eventually(
        "a freed place to be taken",
        Duration::from_secs(5),
        || async {
            let mut again = connect_from(&app, "127.0.0.2").await;
            again
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let answer = read_until_closed(&mut again, Duration::from_secs(5)).await?;
            answer.starts_with("HTTP/1.1 200").then_some(answer)
        },
    )
    .await;
    assert!(answer.contains("\"ok\""), "{answer}");
}

/// A kept-alive connection with nothing under way is closed after the idle timeout, but a live
/// event stream is not: it keeps delivering long past it.
#[tokio::test]
async fn the_idle_timeout_closes_idle_connections_but_never_a_stream() {
    let app = start(&[
        ("MCPLATFORM_IDLE_TIMEOUT", "1s"),
        ("MCPLATFORM_HEADER_TIMEOUT", "1s"),
    ]);
    let mut idle = connect_from(&app, "127.0.0.1").await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle kept-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let owner = app.signup("owner@acme.dev").await;
    let org = app.create_org(&owner, "acme").await;
    let mut stream = app
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/events/stream")))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.create_server(&owner, &org, "after-idle").await;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !text.contains("after-idle") {
        let chunk = timeout(deadline - Instant::now(), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no event on the stream; so far: {text}"))
            .expect("the stream is still open")
            .unwrap_or_else(|| panic!("the stream ended; so far: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}
