//! The hosted servers' authorization servers, without the sign-in: discovery, dynamic client
//! registration, our tokens at the MCP edge, the token endpoint (codes, rotation, replay),
//! revocation across instances, userinfo. Codes are issued in-process through the command
//! service, as the sign-in callback issues them.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use base64::Engine;
use chrono::Utc;
use commands::services::oauth::{self, CodeRequest};
use domain::end_user::TrackingId;
use domain::EventMetadata;
use eventstore::EventStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use uuid::Uuid;

const REDIRECT: &str = "http://127.0.0.1:41234/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123456789";

pub fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An org with two servers in `oauth` mode, `guide` and `other`.
struct Tenant {
    app: TestApp,
    org: String,
    servers: Vec<(Uuid, String)>,
    store: EventStore,
    owner: User,
}

async fn tenant() -> Tenant {
    let app = spawn_app().await;
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    let provider = app.create_oauth2_provider(&owner, &org).await;
    let mut servers = vec![];
    for slug in ["guide", "other"] {
        let body = app.create_server(&owner, &org, slug).await;
        let (status, body2) = app
            .patch(
                &format!("/api/v1/orgs/{org}/servers/{slug}"),
                &owner.token,
                json!({ "auth_mode": "oauth", "identity_provider_id": provider }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body2}");
        let id = Uuid::parse_str(body["id"].as_str().expect("server id")).expect("uuid");
        servers.push((id, slug.to_owned()));
    }
    let store = EventStore::open(app.env.pool().await).await.expect("store");
    Tenant {
        app,
        org,
        servers,
        store,
        owner,
    }
}

impl Tenant {
    fn org_id(&self) -> Uuid {
        Uuid::parse_str(&self.org).expect("org id")
    }

    async fn register(&self, slug: &str, redirect_uris: Value) -> (StatusCode, Value) {
        let resp = self
            .app
            .http
            .post(self.app.url(&format!("/s/{slug}/oauth/register")))
            .json(&json!({ "client_name": "Test Client", "redirect_uris": redirect_uris }))
            .send()
            .await
            .expect("register");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A code for `client_id`, as the sign-in callback issues one, for an end user of the org.
    async fn code(&self, server: usize, client_id: &str, scopes: &[&str]) -> String {
        let (server_id, slug) = &self.servers[server];
        let metadata = EventMetadata::by(domain::Actor::System).for_org(self.org_id());
        let end_user = commands::services::end_users::identify(
            &self.store,
            self.org_id(),
            *server_id,
            &TrackingId::parse("signed-in-user").expect("tracking id"),
            &metadata,
        )
        .await
        .expect("end user");
        let (_, code) = oauth::issue_code(
            &self.store,
            &metadata,
            CodeRequest {
                org_id: self.org_id(),
                server_id: *server_id,
                client_id: client_id.to_owned(),
                end_user_id: end_user,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                resource: self.app.url(&format!("/s/{slug}/mcp")),
                // As the authorization request named it (a registered loopback redirect, any port).
                redirect_uri: REDIRECT.to_owned(),
                code_challenge: challenge(VERIFIER),
            },
            Utc::now(),
        )
        .await
        .expect("code");
        code
    }

    async fn token(&self, slug: &str, form: &[(&str, &str)]) -> (StatusCode, Value, String) {
        let resp = self
            .app
            .http
            .post(self.app.url(&format!("/s/{slug}/oauth/token")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .expect("token");
        let status = resp.status();
        let cache = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, resp.json().await.unwrap_or(Value::Null), cache)
    }

    async fn redeem(&self, slug: &str, client_id: &str, code: &str) -> (StatusCode, Value) {
        let (status, body, cache) = self
            .token(
                slug,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("client_id", client_id),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        assert_eq!(cache, "no-store");
        (status, body)
    }

    async fn dcr_client(&self, slug: &str) -> String {
        let (status, body) = self
            .register(slug, json!(["http://127.0.0.1/callback"]))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["client_id"].as_str().expect("client id").to_owned()
    }
}

async fn tools_list(url: String, token: &str) -> StatusCode {
    Mcp::new(url)
        .modern()
        .with_bearer(token)
        .call("tools/list", json!({}))
        .await
        .status
}

#[tokio::test]
async fn discovery_names_the_server_and_its_authorization_server_exactly() {
    let t = tenant().await;
    let app = &t.app;
    let base = app.proc.base();

    // The challenge a client starts from.
    let resp = app
        .http
        .post(app.url("/s/guide/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let prm_url = format!("{base}/.well-known/oauth-protected-resource/s/guide/mcp");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{prm_url}\", scope=\"mcp\"")
    );

    // RFC 9728: the resource is the MCP endpoint, no trailing slash.
    let prm: Value = app
        .http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("{base}/s/guide/mcp"));
    let issuer = format!("{base}/s/guide");
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    let tracked: Value = app
        .http
        .get(format!(
            "{base}/.well-known/oauth-protected-resource/s/guide/t/u1/mcp"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tracked["resource"], format!("{base}/s/guide/t/u1/mcp"));

    // RFC 8414 and both OpenID placements of an issuer with a path.
    for path in [
        "/.well-known/oauth-authorization-server/s/guide",
        "/.well-known/openid-configuration/s/guide",
        "/s/guide/.well-known/openid-configuration",
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let meta: Value = resp.json().await.unwrap();
        assert_eq!(meta["issuer"], issuer, "{path}");
        assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));
        assert_eq!(
            meta["registration_endpoint"],
            format!("{issuer}/oauth/register")
        );
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert!(meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none")));
        assert_eq!(meta["client_id_metadata_document_supported"], true);
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    }

    // The host form: its own issuer, without a path.
    let host = "guide.localhost";
    let port = base.rsplit(':').next().unwrap();
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .header("host", format!("{host}:{port}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], format!("http://{host}:{port}"));
    let prm: Value = app
        .http
        .get(app.url("/.well-known/oauth-protected-resource/mcp"))
        .header("host", format!("{host}:{port}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("http://{host}:{port}/mcp"));

    // A server that does not sign anyone in has no authorization server.
    app.create_server(&t.owner, &t.org, "plain").await;
    let resp = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/s/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dynamic_registration_judges_each_redirect_and_unknown_clients_are_refused() {
    let t = tenant().await;
    let (status, body) = t
        .register(
            "guide",
            json!([
                "http://127.0.0.1:5555/callback",
                "http://evil.example/callback",
                "cursor://anysphere.cursor-retrieval/oauth/callback",
                "javascript:alert(1)"
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["redirect_uris"],
        json!([
            "http://127.0.0.1:5555/callback",
            "cursor://anysphere.cursor-retrieval/oauth/callback"
        ])
    );
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");

    let (status, body) = t.register("guide", json!(["http://evil.example/cb"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_redirect_uri");
    let (status, body) = t.register("guide", json!("not a list")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client_metadata");

    // An unknown client at the token endpoint.
    let (status, body, _) = t
        .token(
            "guide",
            &[
                ("grant_type", "authorization_code"),
                ("code", "mcp_ac_nothing"),
                ("client_id", &Uuid::new_v4().to_string()),
                ("redirect_uri", "http://127.0.0.1/callback"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    // A client of another server is unknown here.
    let other_client = t.dcr_client("other").await;
    let (status, body, _) = t
        .token(
            "guide",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "mcp_rt_x"),
                ("client_id", &other_client),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body, _) = t
        .token(
            "guide",
            &[("grant_type", "password"), ("client_id", &other_client)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn our_tokens_admit_their_server_only_and_codes_are_single_use() {
    let t = tenant().await;
    let app = &t.app;
    let client = t.dcr_client("guide").await;

    // Wrong verifier, wrong redirect (one character, a trailing slash): refused, the code
    // still good.
    let code = t.code(0, &client, &["mcp"]).await;
    for (redirect, verifier) in [
        (REDIRECT, "x".repeat(43)),
        ("http://127.0.0.1:41234/callback/", VERIFIER.to_owned()),
        ("http://127.0.0.1:41234/callbacK", VERIFIER.to_owned()),
        ("http://127.0.0.1/callback", VERIFIER.to_owned()),
    ] {
        let (status, body, _) = t
            .token(
                "guide",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &client),
                    ("redirect_uri", redirect),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect}");
        assert_eq!(body["error"], "invalid_grant");
    }
    // Another client's code.
    let intruder = t.dcr_client("guide").await;
    let (status, body) = t.redeem("guide", &intruder, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // On another server.
    let other_client = t.dcr_client("other").await;
    let (status, body) = t.redeem("other", &other_client, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let (status, tokens) = t.redeem("guide", &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("mcp_at_") && refresh.starts_with("mcp_rt_"));

    // Admitted on its server, in either URL form.
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), &access).await,
        StatusCode::OK
    );
    let port = app.proc.base().rsplit(':').next().unwrap().to_owned();
    let by_host = Mcp::new(app.url("/mcp"))
        .with_host(format!("guide.localhost:{port}"))
        .modern()
        .with_bearer(&access)
        .call("tools/list", json!({}))
        .await;
    assert_eq!(by_host.status, StatusCode::OK, "{}", by_host.text);
    // Refused on another server of the org, in the query string, forged, and by the REST API.
    assert_eq!(
        tools_list(app.url("/s/other/mcp"), &access).await,
        StatusCode::UNAUTHORIZED
    );
    let in_query = Mcp::new(app.url(&format!("/s/guide/mcp?access_token={access}")))
        .modern()
        .call("tools/list", json!({}))
        .await;
    assert_eq!(in_query.status, StatusCode::BAD_REQUEST);
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), &forged).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app.get("/api/v1/orgs", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A replayed code revokes what it issued.
    let (status, body) = t.redeem("guide", &client, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), &access).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body, _) = t
        .token(
            "guide",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", &client),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A token without the `mcp` scope: step-up.
    let code = t.code(0, &client, &["email"]).await;
    let (_, tokens) = t.redeem("guide", &client, &code).await;
    let narrow = tokens["access_token"].as_str().unwrap();
    let resp = app
        .http
        .post(app.url("/s/guide/mcp"))
        .bearer_auth(narrow)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));

    // The events say what happened, and carry no token.
    let pool = app.env.pool().await;
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type IN ('oauth_grant', 'oauth_client') \
         ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for wanted in [
        "OauthClientRegistered",
        "OauthCodeIssued",
        "OauthTokensIssued",
        "OauthReuseDetected",
        "OauthGrantRevoked",
    ] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} in {types:?}");
    }
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    for secret in [&access, &refresh, &code, &narrow.to_owned()] {
        assert!(!payloads.iter().any(|p| p.contains(secret.as_str())));
    }
}

#[tokio::test]
async fn refresh_rotates_and_answers_the_same_pair_within_the_window() {
    let t = tenant().await;
    let app = &t.app;
    let client = t.dcr_client("guide").await;
    let code = t.code(0, &client, &["mcp"]).await;
    let (_, first) = t.redeem("guide", &client, &code).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let rotate = |token: String| {
        let client = client.clone();
        let t = &t;
        async move {
            t.token(
                "guide",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", &client),
                ],
            )
            .await
        }
    };
    let (status, second, cache) = rotate(refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(cache, "no-store");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // The old access token is gone, the new one works.
    let old_access = first["access_token"].as_str().unwrap();
    let new_access = second["access_token"].as_str().unwrap();
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), old_access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), new_access).await,
        StatusCode::OK
    );
    // Two copies of one client refreshing at once: the same new pair.
    let (status, again, _) = rotate(refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["access_token"], second["access_token"]);
    assert_eq!(again["refresh_token"], second["refresh_token"]);
    // Once the family moved on, the first token is reuse: the family is revoked.
    let (status, third, _) = rotate(second["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let (status, body, _) = rotate(refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let third_access = third["access_token"].as_str().unwrap();
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), third_access).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_revocation_is_honoured_by_every_instance_within_a_second() {
    let t = tenant().await;
    let app = &t.app;
    let second = app.env.start(&["serve"]);
    let client = t.dcr_client("guide").await;
    let code = t.code(0, &client, &["mcp"]).await;
    let (_, tokens) = t.redeem("guide", &client, &code).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let there = format!("{}/s/guide/mcp", second.base());
    // Validated (and cached) on the second instance.
    assert_eq!(tools_list(there.clone(), &access).await, StatusCode::OK);

    // Userinfo names the end user.
    let info: Value = app
        .http
        .get(app.url("/s/guide/oauth/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        Uuid::parse_str(info["sub"].as_str().unwrap()).is_ok(),
        "{info}"
    );

    // Another client cannot revoke it (RFC 7009 §2.1), and is told so.
    let intruder = t.dcr_client("guide").await;
    let resp = app
        .http
        .post(app.url("/s/guide/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", access.as_str()),
            ("client_id", intruder.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), &access).await,
        StatusCode::OK
    );

    // Revoked through the first instance (RFC 7009: 200).
    let resp = app
        .http
        .post(app.url("/s/guide/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", access.as_str()),
            ("client_id", client.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    assert_eq!(
        tools_list(app.url("/s/guide/mcp"), &access).await,
        StatusCode::UNAUTHORIZED
    );
    loop {
        let status = tools_list(there.clone(), &access).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1100),
            "the second instance still admits a token revoked {:?} ago",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Revoking an unknown token is not an error.
    let resp = app
        .http
        .post(app.url("/s/guide/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", "mcp_at_unknown"),
            ("client_id", client.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_signed_in_client_with_a_tracking_id_is_both_one_person() {
    let t = tenant().await;
    let app = &t.app;
    let client = t.dcr_client("guide").await;
    let code = t.code(0, &client, &["mcp"]).await;
    let (_, tokens) = t.redeem("guide", &client, &code).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // An anonymous visitor known by tracking id first.
    let pool = app.env.pool().await;
    let metadata = EventMetadata::by(domain::Actor::System).for_org(t.org_id());
    let visitor = commands::services::end_users::identify(
        &t.store,
        t.org_id(),
        t.servers[0].0,
        &TrackingId::parse("visitor-7").unwrap(),
        &metadata,
    )
    .await
    .unwrap();

    // The signed-in client calls with the visitor's tracking id, twice.
    for _ in 0..2 {
        let mut mcp = Mcp::new(app.url("/s/guide/t/visitor-7/mcp")).with_bearer(&access);
        let reply = mcp.initialize("both").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let merges: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, payload FROM events WHERE event_type = 'EndUsersMerged'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(merges.len(), 1, "{merges:?}");
    let payload = &merges[0].1;
    assert_eq!(
        payload["EndUsersMerged"]["merged"]
            .as_str()
            .or(payload["merged"].as_str()),
        Some(visitor.to_string().as_str()),
        "{payload}"
    );
}

/// A loopback origin serving client metadata documents (an allowed test network:
/// `MCPLATFORM_OUTBOUND_ALLOW=127.0.0.0/8`), good and bad.
async fn document_origin(failing: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = |id: String| {
        json!({
            "client_id": id,
            "client_name": "Doc Client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
        })
        .to_string()
    };
    let (b1, b2) = (base.clone(), base.clone());
    let router = axum::Router::new()
        .route(
            "/client.json",
            get(move || {
                let (base, failing) = (b1.clone(), failing.clone());
                async move {
                    if failing.load(std::sync::atomic::Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    (
                        [
                            ("cache-control", "no-cache"),
                            ("content-type", "application/json"),
                        ],
                        doc(format!("{base}/client.json")),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/wrong.json",
            get(move || {
                let base = b2.clone();
                async move { doc(format!("{base}/client.json")) }
            }),
        )
        .route("/big.json", get(|| async { "x".repeat(10 * 1024) }))
        .route(
            "/slow.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(8)).await;
                "{}"
            }),
        )
        .route(
            "/redirect.json",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data")],
                )
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_guarded_and_cached() {
    let t = tenant().await;
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let origin = document_origin(failing.clone()).await;
    let client = format!("{origin}/client.json");

    let code = t.code(0, &client, &["mcp"]).await;
    let (status, tokens) = t.redeem("guide", &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // The origin fails now: the stale copy is served.
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = t.code(0, &client, &["mcp"]).await;
    let (status, tokens) = t.redeem("guide", &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // Refused: a document naming another client id, too large, too slow, redirecting to a
    // metadata address, on a private address, not a document at all.
    for bad in [
        format!("{origin}/wrong.json"),
        format!("{origin}/big.json"),
        format!("{origin}/slow.json"),
        format!("{origin}/redirect.json"),
        "http://10.1.2.3/client.json".to_owned(),
        "https://192.168.0.1/client.json".to_owned(),
        format!("{origin}/"),
    ] {
        let (status, body) = t.redeem("guide", &bad, "mcp_ac_whatever").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_client", "{bad}");
    }

    let pool = t.app.env.pool().await;
    let registered: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'OauthClientRegistered'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert!(
        registered[0].to_string().contains("cimd"),
        "{}",
        registered[0]
    );
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let env = TestEnv::new();
    let proc = env.start_with(
        &["up"],
        &[(
            "MCPLATFORM_LIMIT_CLIENT_REGISTRATIONS_PER_ADDRESS_PER_HOUR",
            "2",
        )],
    );
    let app = TestApp {
        proc,
        env,
        http: reqwest::Client::new(),
    };
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    let provider = app.create_oauth2_provider(&owner, &org).await;
    app.create_server(&owner, &org, "guide").await;
    let (status, body) = app
        .patch(
            &format!("/api/v1/orgs/{org}/servers/guide"),
            &owner.token,
            json!({ "auth_mode": "oauth", "identity_provider_id": provider }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let register = || async {
        app.http
            .post(app.url("/s/guide/oauth/register"))
            .json(&json!({ "redirect_uris": ["http://127.0.0.1/callback"] }))
            .send()
            .await
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(register().await.status(), StatusCode::CREATED);
    }
    let refused = register().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let pool = app.env.pool().await;
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LimitRefused' \
         AND payload->>'limit' = 'client_registrations_per_address'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
}
