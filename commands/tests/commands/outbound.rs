//! The outbound guard against a real HTTP server on loopback: refused without the allow list,
//! accepted with it; redirects checked hop by hop; oversized and slow answers refused.

use commands::outbound::{parse_allow, Options, Outbound, OutboundConfig, OutboundError};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback HTTP/1.1 server answering by path; enough of HTTP for the guard's cases.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let port = address.port();
                let reply = |status: &str, headers: &str, body: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                        body.len()
                    )
                };
                let answer = match path.as_str() {
                    "/ok" => reply(
                        "200 OK",
                        "content-type: application/json\r\n",
                        r#"{"ok":true}"#,
                    ),
                    "/agent" => {
                        let agent = head
                            .lines()
                            .find_map(|line| line.strip_prefix("user-agent: "))
                            .unwrap_or("")
                            .to_owned();
                        reply("200 OK", "", &agent)
                    }
                    "/big" => reply("200 OK", "", &"x".repeat(5000)),
                    "/big-stream" => {
                        // No length announced: the guard must stop reading at its cap.
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                            .await;
                        for _ in 0..100 {
                            let chunk = "y".repeat(1000);
                            let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                            if socket.write_all(frame.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                        return;
                    }
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        reply("200 OK", "", "late")
                    }
                    "/to-private" => reply("302 Found", "location: http://10.0.0.1/x\r\n", ""),
                    "/to-metadata" => reply(
                        "307 Temporary Redirect",
                        "location: http://169.254.169.254/latest/meta-data/\r\n",
                        "",
                    ),
                    "/to-ok" => reply(
                        "302 Found",
                        &format!("location: http://localhost:{port}/ok\r\n"),
                        "",
                    ),
                    "/loop" => reply("302 Found", "location: /loop\r\n", ""),
                    "/status" => reply("503 Service Unavailable", "", "down"),
                    _ => reply("404 Not Found", "", ""),
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    address
}

fn guard(allow: &str) -> Outbound {
    Outbound::new(OutboundConfig {
        allow: parse_allow(allow).unwrap(),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(800),
        max_body_bytes: 4096,
        max_redirects: 3,
    })
    .unwrap()
}

#[tokio::test]
async fn loopback_is_refused_without_the_allow_list_and_served_with_it() {
    let at = serve().await;
    let closed = guard("");
    for url in [
        format!("http://{at}/ok"),
        format!("https://{at}/ok"),
        format!("http://localhost:{}/ok", at.port()),
    ] {
        let refused = closed.get(&url).await.unwrap_err();
        assert!(
            matches!(refused, OutboundError::RefusedAddress(ip) if ip.is_loopback()),
            "{url}: {refused:?}"
        );
    }
    // Only loopback is allowed: the rest of the private space stays closed.
    let open = guard("127.0.0.0/8");
    let answer = open.get(&format!("http://{at}/ok")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body().as_ref(), br#"{"ok":true}"#);
    let json: serde_json::Value = open
        .get_json(&format!("http://localhost:{}/ok", at.port()))
        .await
        .unwrap();
    assert_eq!(json["ok"], true);
    let agent = open.get(&format!("http://{at}/agent")).await.unwrap();
    assert!(agent.body().starts_with(b"mcplatform/"));
    assert_eq!(
        open.get_json::<serde_json::Value>(&format!("http://{at}/status"))
            .await
            .unwrap_err(),
        OutboundError::Status(http::StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn every_redirect_is_checked_again() {
    let at = serve().await;
    let open = guard("127.0.0.0/8");
    assert_eq!(
        open.get(&format!("http://{at}/to-private"))
            .await
            .unwrap_err(),
        OutboundError::RefusedAddress("10.0.0.1".parse().unwrap())
    );
    assert_eq!(
        open.get(&format!("http://{at}/to-metadata"))
            .await
            .unwrap_err(),
        OutboundError::RefusedAddress("169.254.169.254".parse().unwrap())
    );
    // A redirect to an allowed place by name is followed.
    let followed = open.get(&format!("http://{at}/to-ok")).await.unwrap();
    assert_eq!(followed.body().as_ref(), br#"{"ok":true}"#);
    assert_eq!(
        open.get(&format!("http://{at}/loop")).await.unwrap_err(),
        OutboundError::TooManyRedirects(3)
    );
    // Not followed when asked: the 3xx comes back as it is.
    let request = http::Request::get(format!("http://{at}/to-private"))
        .body(Vec::new())
        .unwrap();
    let unfollowed = open
        .send(
            request,
            Options {
                follow_redirects: false,
                max_body_bytes: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(unfollowed.status(), http::StatusCode::FOUND);
}

#[tokio::test]
async fn oversized_and_slow_answers_are_refused() {
    let at = serve().await;
    let open = guard("127.0.0.0/8");
    assert_eq!(
        open.get(&format!("http://{at}/big")).await.unwrap_err(),
        OutboundError::TooLarge { limit: 4096 }
    );
    assert_eq!(
        open.get(&format!("http://{at}/big-stream"))
            .await
            .unwrap_err(),
        OutboundError::TooLarge { limit: 4096 }
    );
    // A smaller cap for one request.
    let request = http::Request::get(format!("http://{at}/ok"))
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        open.send(
            request,
            Options {
                follow_redirects: true,
                max_body_bytes: Some(4)
            }
        )
        .await
        .unwrap_err(),
        OutboundError::TooLarge { limit: 4 }
    );
    let started = std::time::Instant::now();
    assert!(matches!(
        open.get(&format!("http://{at}/slow")).await.unwrap_err(),
        OutboundError::Timeout(_)
    ));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn oauth2_crates_use_the_guard() {
    use oauth2::AsyncHttpClient;
    let at = serve().await;
    let closed = guard("");
    let request = http::Request::get(format!("http://{at}/ok"))
        .body(Vec::new())
        .unwrap();
    assert!(matches!(
        closed.oauth().call(request).await,
        Err(OutboundError::RefusedAddress(_))
    ));
    let open = guard("127.0.0.0/8");
    let request = http::Request::get(format!("http://{at}/ok"))
        .body(Vec::new())
        .unwrap();
    let answer = open.oauth().call(request).await.unwrap();
    assert_eq!(answer.body(), br#"{"ok":true}"#);
    // A POST's redirect is not followed (token endpoints).
    let request = http::Request::post(format!("http://{at}/to-ok"))
        .body(b"grant_type=x".to_vec())
        .unwrap();
    let answer = open.oauth().call(request).await.unwrap();
    assert_eq!(answer.status(), http::StatusCode::FOUND);
}
