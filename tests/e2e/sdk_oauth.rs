//! A real MCP client that implements MCP authorization signs an end user in: the official
//! Python SDK's OAuth client (`mcp.client.auth.OAuthClientProvider`, driven by
//! tests/clients/python/mcp_oauth_client.py), against a server in `oauth` mode whose identity
//! provider is a real OpenID provider on loopback (npm `oidc-provider`, tests/support).
//!
//! The SDK does all of OAuth itself (the 401 challenge, RFC 9728 and RFC 8414 discovery,
//! registration, PKCE, `resource`, `state` and `iss` checks, the token request, refresh). A
//! scripted browser (tests/clients/python/oauth_browser.py, cookies kept) stands in for the
//! person: it opens the SDK's authorization URL, posts our consent form with
//! `decision=allow`, and follows the identity provider's redirects (its test account signs in
//! and consents by itself) back to the client's redirect URI, which it hands to the SDK.
//!
//! Client registration, both ways:
//! - dynamic client registration (RFC 7591) at the advertised `registration_endpoint`;
//! - a Client ID Metadata Document: the script serves its document from a loopback origin,
//!   `http://127.0.0.1:{port}/oauth/client-metadata.json`, and the platform fetches it through
//!   its outbound guard. Plain http is allowed there only because the tests set
//!   `MCPLATFORM_OUTBOUND_ALLOW=127.0.0.0/8` (helpers.rs): networks on that list are exempt
//!   from the private-address refusal and may use http. The SDK's constructor accepts https
//!   client ids only, so the script sets the URL on the provider after construction; the
//!   SDK's own CIMD path does the rest (no registration request, the URL as `client_id`).

use crate::helpers::*;
use crate::mcp_clients::{python, repo};
use crate::mcp_raw::Mcp;
use crate::oidc::{OidcAccount, OidcClient, OidcProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const IDP_CLIENT: &str = "mcplatform";
const IDP_SECRET: &str = "mcplatform-at-the-idp-0123456789";
const EMAIL: &str = "alice@example.com";

/// An org whose servers sign their users in with a loopback OpenID provider.
struct SignIn {
    app: TestApp,
    owner: User,
    org: String,
    // Killed on drop, after the app.
    _idp: OidcProvider,
}

async fn sign_in_tenant(slugs: &[&str]) -> SignIn {
    sign_in_tenant_after(slugs, None).await
}

/// Like [`sign_in_tenant`]; with `visitor`, an anonymous end user first calls the first server
/// through that tracking id, while the server does not sign anyone in yet.
async fn sign_in_tenant_after(slugs: &[&str], visitor: Option<&str>) -> SignIn {
    let app = spawn_app().await;
    let base = app.proc.base().to_owned();
    let callbacks: Vec<String> = slugs
        .iter()
        .map(|slug| format!("{base}/s/{slug}/oauth/callback"))
        .collect();
    let callbacks: Vec<&str> = callbacks.iter().map(String::as_str).collect();
    let idp = OidcProvider::start(
        &[OidcClient::new(IDP_CLIENT, IDP_SECRET, &callbacks)],
        &[OidcAccount::verified("alice", EMAIL, "Alice Example")],
    )
    .await;
    let owner = app.signup("owner@acme.test").await;
    let org = app.create_org(&owner, "acme").await;
    let provider = app
        .create_oidc_provider(&owner, &org, &idp.issuer, IDP_CLIENT, IDP_SECRET)
        .await;
    for (i, slug) in slugs.iter().enumerate() {
        app.create_server(&owner, &org, slug).await;
        if let (0, Some(tracking)) = (i, visitor) {
            let mut client = Mcp::new(app.url(&format!("/s/{slug}/t/{tracking}/mcp")));
            client.initialize("anonymous-visitor").await;
            let reply = client
                .call_tool(
                    "get_support",
                    json!({ "title": "Before signing in", "description": "anonymous" }),
                )
                .await;
            assert_eq!(reply.result()["isError"], false, "{}", reply.text);
        }
        app.require_sign_in(&owner, &org, slug, &provider).await;
    }
    SignIn {
        app,
        owner,
        org,
        _idp: idp,
    }
}

/// Runs the SDK's OAuth client; returns its JSON report.
fn py_oauth(args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(repo().join("tests/clients/python/mcp_oauth_client.py"))
        .args(args)
        .output()
        .expect("run the Python OAuth client");
    assert!(
        output.status.success(),
        "python OAuth client {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON report on stdout")
}

fn requests<'a>(report: &'a Value, method: &str, suffix: &str) -> Vec<&'a Value> {
    report["http"]
        .as_array()
        .expect("http log")
        .iter()
        .filter(|e| e[0] == method && e[1].as_str().is_some_and(|u| u.ends_with(suffix)))
        .collect()
}

/// What every authorization of the SDK must show: the request as the spec wants it, our
/// consent page (or none, when the browser consented before), and the redirect back.
fn check_authorization(a: &Value, issuer: &str, resource: &str, client_id: &str, consent: bool) {
    let params = &a["params"];
    assert_eq!(params["response_type"], "code", "{a}");
    assert_eq!(params["code_challenge_method"], "S256", "{a}");
    assert_eq!(params["client_id"], client_id, "{a}");
    assert_eq!(params["resource"], resource, "RFC 8707: {a}");
    assert!(
        params["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == "mcp")),
        "the challenged scope is asked for: {a}"
    );
    assert!(
        params["state"].as_str().is_some_and(|s| s.len() >= 16),
        "{a}"
    );
    let pages = a["consent_pages"].as_array().expect("consent pages");
    if consent {
        assert_eq!(pages.len(), 1, "one consent page: {a}");
        let page = &pages[0];
        let headers = &page["headers"];
        let frame_options = headers["x-frame-options"].as_str().unwrap_or_default();
        let csp = headers["content-security-policy"]
            .as_str()
            .unwrap_or_default();
        assert!(
            frame_options.eq_ignore_ascii_case("deny") || csp.contains("frame-ancestors 'none'"),
            "the consent page cannot be framed: {headers}"
        );
        assert!(
            page["fields"]["csrf_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "the consent form carries a CSRF token: {page}"
        );
        assert!(
            page["action"]
                .as_str()
                .is_some_and(|u| u == format!("{issuer}/oauth/authorize")),
            "{page}"
        );
        let text = page["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("127.0.0.1"),
            "names the redirect host: {text}"
        );
        assert!(text.contains("mcp"), "names the scopes: {text}");
    } else {
        assert!(pages.is_empty(), "consent remembered by the browser: {a}");
    }
    let redirect = &a["redirect"];
    assert_eq!(redirect["state_ok"], true, "state carried through: {a}");
    assert_eq!(redirect["iss"], issuer, "RFC 9207 iss: {a}");
    assert_eq!(redirect["has_code"], true, "{a}");
}

/// The signed-in person as the users API shows them, once the sign-in is projected.
async fn signed_in_person(t: &SignIn) -> Value {
    eventually(
        "the signed-in end user",
        Duration::from_secs(15),
        || async {
            let (status, body) = t
                .app
                .get(
                    &format!("/api/v1/orgs/{}/users?identified=true", t.org),
                    &t.owner.token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let people = items(&body).clone();
            (people.len() == 1 && people[0]["tool_calls"].as_u64() >= Some(1))
                .then(|| people[0].clone())
        },
    )
    .await
}

#[tokio::test]
async fn the_python_sdk_signs_in_with_dynamic_registration_refreshes_and_is_remembered() {
    let t = sign_in_tenant(&["guide"]).await;
    let url = t.app.url("/s/guide/mcp");
    let issuer = t.app.url("/s/guide");

    let report = py_oauth(&[
        "--url",
        &url,
        "--client-name",
        "Py DCR Client",
        "--list-tools",
        "--call",
        "get_support",
        "--args",
        r#"{"title":"Signed in","description":"via the Python SDK's OAuth client"}"#,
        // The SDK asks for `offline_access` (and so sends `prompt=consent`) only when the
        // client declares the refresh_token grant; without it the second authorization finds
        // the consent remembered. Refresh tokens come all the same.
        "--no-offline-access",
        "--refresh",
        "--reauthorize",
    ]);

    // Discovery from the challenge, then one registration at our registration endpoint.
    let challenge = report["challenge"].as_str().expect("a 401 challenge");
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            t.app
                .url("/.well-known/oauth-protected-resource/s/guide/mcp")
        )),
        "{challenge}"
    );
    assert_eq!(report["issuer"], issuer);
    assert_eq!(report["resource"], url);
    assert_eq!(report["registration"], "dcr");
    let registrations = requests(&report, "POST", "/s/guide/oauth/register");
    assert_eq!(registrations.len(), 1, "{}", report["http"]);
    assert_eq!(registrations[0][2], 201);
    let client_id = report["client_id"].as_str().expect("client id");

    // Two authorizations: the first with consent, the second (tokens forgotten, same browser)
    // without.
    let authorizations = report["authorizations"].as_array().unwrap();
    assert_eq!(authorizations.len(), 2, "{report}");
    check_authorization(&authorizations[0], &issuer, &url, client_id, true);
    let consent = &authorizations[0]["consent_pages"][0];
    let text = consent["text"].as_str().unwrap();
    assert!(text.contains("Py DCR Client"), "names the client: {text}");
    check_authorization(&authorizations[1], &issuer, &url, client_id, false);
    for a in authorizations {
        assert_eq!(a["params"]["scope"], "mcp", "{a}");
        assert!(a["params"]["prompt"].is_null(), "{a}");
    }

    // The MCP calls went through with our token.
    assert_eq!(report["tools"], json!(["get_support"]));
    assert_eq!(report["results"][0]["is_error"], false, "{report}");
    assert!(report["results"][0]["text"]
        .as_str()
        .unwrap()
        .contains("TCK-"));
    let tokens = &report["tokens"];
    assert!(tokens["access_token"]
        .as_str()
        .unwrap()
        .starts_with("mcp_at_"));
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("mcp_rt_"));

    // The SDK refreshed a stale token: a new pair (rotation), and the call after it worked.
    let refreshed = &report["refreshed"];
    assert_ne!(
        refreshed["before"]["access_token"],
        refreshed["after"]["access_token"]
    );
    assert_ne!(
        refreshed["before"]["refresh_token"],
        refreshed["after"]["refresh_token"]
    );
    assert_eq!(report["refreshed_tools"], json!(["get_support"]));
    assert_eq!(report["reauthorized_tools"], json!(["get_support"]));
    let token_requests = requests(&report, "POST", "/s/guide/oauth/token");
    assert_eq!(
        token_requests.len(),
        3,
        "code, refresh, code: {}",
        report["http"]
    );
    assert!(
        token_requests.iter().all(|r| r[2] == 200),
        "{token_requests:?}"
    );

    // Our userinfo names the signed-in person (their email only with the `email` scope,
    // which this client did not ask for).
    let me: Value = t
        .app
        .http
        .get(format!("{issuer}/oauth/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me["email"].is_null(), "{me}");

    // The person is identified, with the provider's verified email, and owns the tool call.
    let person = signed_in_person(&t).await;
    assert_eq!(me["sub"], person["id"], "{me} {person}");
    assert_eq!(person["status"], "identified", "{person}");
    assert_eq!(person["emails"], json!([EMAIL]), "{person}");
    assert!(
        person["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "email" && i["value"] == EMAIL && i["verified"] == true),
        "{person}"
    );
}

/// Also: the 2026-07-28 era, and a server URL with a tracking id whose anonymous end user
/// becomes the signed-in person (the protected resource, and so `resource`, is that URL).
#[tokio::test]
async fn the_python_sdk_signs_in_with_a_client_id_metadata_document() {
    let t = sign_in_tenant_after(&["guide"], Some("visitor-7")).await;
    let url = t.app.url("/s/guide/t/visitor-7/mcp");
    let issuer = t.app.url("/s/guide");

    let report = py_oauth(&[
        "--url",
        &url,
        "--cimd",
        "--era",
        "2026",
        "--client-name",
        "Py CIMD Client",
        "--call",
        "get_support",
        "--args",
        r#"{"title":"Signed in","description":"with a client id metadata document"}"#,
        "--reauthorize",
    ]);

    assert_eq!(report["registration"], "cimd");
    let cimd_url = report["cimd_url"].as_str().expect("document url");
    assert_eq!(report["client_id"], cimd_url);
    assert!(
        requests(&report, "POST", "/oauth/register").is_empty(),
        "no dynamic registration: {}",
        report["http"]
    );
    // The platform fetched the document (and the browser never did).
    let fetches = report["cimd_fetches"].as_array().unwrap();
    assert!(!fetches.is_empty(), "{report}");
    assert!(
        fetches
            .iter()
            .all(|f| f["path"] == "/oauth/client-metadata.json"),
        "{fetches:?}"
    );

    // The SDK asks for `offline_access` here, which OpenID pairs with `prompt=consent`: the
    // second authorization, in the same browser, is asked again.
    let authorizations = report["authorizations"].as_array().unwrap();
    assert_eq!(authorizations.len(), 2, "{report}");
    for a in authorizations {
        check_authorization(a, &issuer, &url, cimd_url, true);
        assert_eq!(a["params"]["scope"], "mcp offline_access", "{a}");
        assert_eq!(a["params"]["prompt"], "consent", "{a}");
    }
    let text = authorizations[0]["consent_pages"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.contains("Py CIMD Client"),
        "names the client of the document: {text}"
    );
    assert_eq!(report["protocol_version"], "2026-07-28");
    assert_eq!(report["reauthorized_tools"], json!(["get_support"]));
    assert_eq!(report["results"][0]["is_error"], false, "{report}");

    // One person: the visitor's tracking id and the provider's identity, both calls.
    let person = eventually("the visitor merged", Duration::from_secs(15), || async {
        let person = signed_in_person(&t).await;
        (person["tool_calls"] == 2).then_some(person)
    })
    .await;
    assert_eq!(person["emails"], json!([EMAIL]), "{person}");
    assert_eq!(person["tracking_ids"], json!(["visitor-7"]), "{person}");
    let (_, anonymous) = t
        .app
        .get(
            &format!("/api/v1/orgs/{}/users?identified=false", t.org),
            &t.owner.token,
        )
        .await;
    assert_eq!(anonymous["items"], json!([]), "{anonymous}");

    // The first acceptance of the document was recorded as a CIMD registration.
    let pool = t.app.env.pool().await;
    let registered: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'OauthClientRegistered'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert!(
        registered[0].to_string().contains(cimd_url),
        "{registered:?}"
    );
}

#[tokio::test]
async fn a_person_who_denies_consent_sends_the_client_back_with_access_denied() {
    let t = sign_in_tenant(&["guide"]).await;
    let url = t.app.url("/s/guide/mcp");
    let issuer = t.app.url("/s/guide");

    let report = py_oauth(&["--url", &url, "--decision", "deny", "--list-tools"]);

    // RFC 6749 §4.1.2.1: back to the client with `access_denied` and its state; RFC 9207: with
    // our issuer. The provider was never visited and nobody signed in.
    let error = &report["authorization_error"];
    assert_eq!(error["error"], "access_denied", "{report}");
    let authorization = &report["authorizations"][0];
    assert_eq!(authorization["redirect"]["state_ok"], true, "{report}");
    assert_eq!(authorization["redirect"]["iss"], issuer, "{report}");
    assert_eq!(authorization["redirect"]["has_code"], false, "{report}");
    let steps = authorization["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["url"].as_str().unwrap().starts_with(t.app.proc.base())),
        "the identity provider is not visited: {steps:?}"
    );
    assert!(report["tokens"].is_null(), "{report}");
    let (_, body) = t
        .app
        .get(
            &format!("/api/v1/orgs/{}/users?identified=true", t.org),
            &t.owner.token,
        )
        .await;
    assert_eq!(body["items"], json!([]), "{body}");
}
