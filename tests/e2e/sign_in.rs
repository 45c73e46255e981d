//! End users signing in through a hosted server's authorization server, against a real OpenID
//! provider (npm's `oidc-provider` on loopback, see `oidc.rs`): the consent page, the redirect
//! to the provider and its callback, our code back to the client with `iss`, and every
//! refusal on the way. The browser is [`Browser`]: an HTTP client with a cookie jar that
//! follows redirects itself and answers the consent page.

use crate::helpers::*;
use crate::mcp_raw::Mcp;
use crate::oauth_tokens::form_body;
use crate::oidc::{OidcAccount, OidcClient, OidcProvider};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

pub const VERIFIER: &str = "sign-in-test-verifier-of-at-least-forty-three-characters-0123";
const PROVIDER_SECRET: &str = "platform-client-secret-at-the-idp-0123456789";
pub const CLIENT_REDIRECT: &str = "http://127.0.0.1:43117/callback";

pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A browser, as far as sign-in needs one: cookies per host (like a browser, not per port),
/// redirects followed by hand, the consent page answered.
pub struct Browser {
    http: reqwest::Client,
    jar: Mutex<HashMap<String, HashMap<String, String>>>,
}

/// What a page of the flow answered.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            jar: Mutex::new(HashMap::new()),
        }
    }

    fn host(url: &str) -> String {
        reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn cookie_header(&self, url: &str) -> Option<String> {
        let jar = self.jar.lock().expect("jar");
        let cookies = jar.get(&Self::host(url))?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn keep(&self, url: &str, response: reqwest::Response) -> Answer {
        {
            let mut jar = self.jar.lock().expect("jar");
            let cookies = jar.entry(Self::host(url)).or_default();
            for value in response.headers().get_all("set-cookie") {
                let value = value.to_str().unwrap_or_default();
                let pair = value.split(';').next().unwrap_or_default();
                let Some((name, v)) = pair.split_once('=') else {
                    continue;
                };
                let gone = value.to_ascii_lowercase().contains("max-age=0")
                    || value
                        .to_ascii_lowercase()
                        .contains("expires=thu, 01 jan 1970");
                if gone || v.is_empty() {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        let status = response.status();
        let headers = response.headers().clone();
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                reqwest::Url::parse(url)
                    .and_then(|base| base.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_owned())
            });
        Answer {
            status,
            location,
            headers,
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&self, url: &str) -> Answer {
        let mut request = self.http.get(url);
        if let Some(cookies) = self.cookie_header(url) {
            request = request.header("cookie", cookies);
        }
        let response = request.send().await.expect("GET");
        self.keep(url, response).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        origin: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some(cookies) = self.cookie_header(url) {
            request = request.header("cookie", cookies);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("POST");
        self.keep(url, response).await
    }

    /// Follows redirects from `url` until one leads to `stop_prefix` (answered without being
    /// fetched), answering a consent page with `decision`. The URL it stopped at, or the page
    /// that was neither a redirect nor a consent.
    pub async fn follow(
        &self,
        url: &str,
        stop_prefix: &str,
        decision: &str,
    ) -> Result<String, Answer> {
        let mut next = url.to_owned();
        for _ in 0..20 {
            if next.starts_with(stop_prefix) {
                return Ok(next);
            }
            let answer = self.get(&next).await;
            if let Some(location) = answer
                .location
                .clone()
                .filter(|_| answer.status.is_redirection())
            {
                next = location;
                continue;
            }
            let Some((action, mut fields)) = consent_form(&answer.body) else {
                return Err(answer);
            };
            fields.push(("decision".into(), decision.into()));
            let origin = origin_of(&action);
            let posted = self.post_form(&action, &fields, Some(&origin)).await;
            match posted
                .location
                .clone()
                .filter(|_| posted.status.is_redirection())
            {
                Some(location) => next = location,
                None => return Err(posted),
            }
        }
        panic!("more than 20 redirects from {url}");
    }
}

pub fn origin_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).expect("url");
    u.origin().ascii_serialization()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The consent page's form: where it posts and its hidden fields.
pub fn consent_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    let form_at = html.find("<form method=\"post\"")?;
    let form_tag = &html[form_at..form_at + html[form_at..].find('>')?];
    let action = attr(form_tag, "action")?;
    let mut fields = vec![];
    let mut rest = &html[form_at..];
    while let Some(at) = rest.find("<input type=\"hidden\"") {
        let end = rest[at..].find('>')? + at;
        let tag = &rest[at..end];
        fields.push((attr(tag, "name")?, attr(tag, "value")?));
        rest = &rest[end..];
    }
    Some((action, fields))
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An org whose servers `guide` and `other` sign in through a real OpenID provider.
pub struct SignInTenant {
    pub app: TestApp,
    pub idp: OidcProvider,
    pub org: String,
    pub owner: User,
    pub provider_id: String,
}

impl SignInTenant {
    pub async fn start(accounts: &[OidcAccount]) -> Self {
        Self::start_with(accounts, json!({}), &["openid", "email", "profile"]).await
    }

    /// With the stand-in's settings and the scopes the platform asks the provider for.
    pub async fn start_with(accounts: &[OidcAccount], settings: Value, scopes: &[&str]) -> Self {
        let app = spawn_app().await;
        let callbacks: Vec<String> = ["guide", "other"]
            .iter()
            .map(|slug| app.url(&format!("/s/{slug}/oauth/callback")))
            .collect();
        let callbacks: Vec<&str> = callbacks.iter().map(String::as_str).collect();
        let idp = OidcProvider::start_with(
            &[OidcClient::new("platform", PROVIDER_SECRET, &callbacks)],
            accounts,
            settings,
        )
        .await;
        let owner = app.signup("owner@acme.test").await;
        let org = app.create_org(&owner, "acme").await;
        let (status, provider) = app
            .post(
                &format!("/api/v1/orgs/{org}/identity-providers"),
                &owner.token,
                json!({
                    "name": "Acme SSO",
                    "kind": "oidc",
                    "issuer": idp.issuer,
                    "client_id": "platform",
                    "client_secret": PROVIDER_SECRET,
                    "scopes": scopes,
                    "options": { "send_resource": false, "audience": null, "drop_prompt": false },
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{provider}");
        let provider_id = provider["id"].as_str().expect("provider id").to_owned();
        for slug in ["guide", "other"] {
            app.create_server(&owner, &org, slug).await;
            let (status, body) = app
                .patch(
                    &format!("/api/v1/orgs/{org}/servers/{slug}"),
                    &owner.token,
                    json!({ "auth_mode": "oauth", "identity_provider_id": provider_id }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        Self {
            app,
            idp,
            org,
            owner,
            provider_id,
        }
    }

    pub fn issuer(&self, slug: &str) -> String {
        self.app.url(&format!("/s/{slug}"))
    }

    pub async fn register(&self, slug: &str) -> String {
        let resp = self
            .app
            .http
            .post(self.app.url(&format!("/s/{slug}/oauth/register")))
            .json(&json!({ "client_name": "Test IDE", "redirect_uris": ["http://127.0.0.1/callback"] }))
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        body["client_id"].as_str().expect("client id").to_owned()
    }

    /// The authorization request's URL, with these parameters changed (`None` leaves one out).
    pub fn authorize_url(
        &self,
        slug: &str,
        client_id: &str,
        changes: &[(&str, Option<&str>)],
    ) -> String {
        let resource = self.app.url(&format!("/s/{slug}/mcp"));
        let challenge = challenge(VERIFIER);
        let mut params: Vec<(&str, Option<&str>)> = vec![
            ("response_type", Some("code")),
            ("client_id", Some(client_id)),
            ("redirect_uri", Some(CLIENT_REDIRECT)),
            ("code_challenge", Some(&challenge)),
            ("code_challenge_method", Some("S256")),
            ("state", Some("client-state-42")),
            ("scope", Some("mcp")),
            ("resource", Some(&resource)),
        ];
        for (name, value) in changes {
            match params.iter_mut().find(|(n, _)| n == name) {
                Some(param) => param.1 = *value,
                None => params.push((name, *value)),
            }
        }
        let pairs: Vec<(&str, &str)> = params
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect();
        format!(
            "{}/oauth/authorize?{}",
            self.issuer(slug),
            form_body(&pairs)
        )
    }

    /// Redeems a code at the token endpoint.
    pub async fn redeem(&self, slug: &str, client_id: &str, code: &str) -> (StatusCode, Value) {
        let resp = self
            .app
            .http
            .post(self.app.url(&format!("/s/{slug}/oauth/token")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", client_id),
                ("redirect_uri", CLIENT_REDIRECT),
                ("code_verifier", VERIFIER),
            ]))
            .send()
            .await
            .expect("token");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Refreshes at the token endpoint.
    pub async fn refresh(&self, slug: &str, client_id: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .app
            .http
            .post(self.app.url(&format!("/s/{slug}/oauth/token")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client_id),
            ]))
            .send()
            .await
            .expect("token");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Event types of the org, in order.
    pub async fn event_types(&self) -> Vec<String> {
        let pool = self.app.env.pool().await;
        sqlx::query_scalar(
            "SELECT event_type FROM events WHERE metadata->>'org_id' = $1 ORDER BY global_position",
        )
        .bind(&self.org)
        .fetch_all(&pool)
        .await
        .expect("events")
    }

    /// The payload of the org's last event of a type.
    pub async fn last_payload(&self, event_type: &str) -> Option<Value> {
        let pool = self.app.env.pool().await;
        sqlx::query_scalar(
            "SELECT payload FROM events WHERE metadata->>'org_id' = $1 AND event_type = $2 \
             ORDER BY global_position DESC LIMIT 1",
        )
        .bind(&self.org)
        .bind(event_type)
        .fetch_optional(&pool)
        .await
        .expect("event")
    }
}

#[tokio::test]
async fn an_end_user_consents_signs_in_with_the_provider_and_the_client_gets_a_working_token() {
    let t =
        SignInTenant::start(&[OidcAccount::verified("alice", "alice@example.com", "Alice")]).await;
    let client_id = t.register("guide").await;
    let browser = Browser::new();
    let url = t.authorize_url("guide", &client_id, &[]);

    // The consent page: names the client, its redirect's host and the scopes; cannot be framed.
    let page = browser.get(&url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.body.contains("Test IDE") && page.body.contains("127.0.0.1"));
    assert!(page.body.contains("Acme SSO"), "names the provider");
    let (action, fields) = consent_form(&page.body).expect("a consent form");
    assert_eq!(action, format!("{}/oauth/authorize", t.issuer("guide")));
    let origin = origin_of(&action);

    // Without its CSRF token, or from another origin, the consent is refused.
    let mut without: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n != "csrf_token")
        .cloned()
        .collect();
    without.push(("decision".into(), "allow".into()));
    assert_eq!(
        browser
            .post_form(&action, &without, Some(&origin))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut forged = fields.clone();
    forged.retain(|(n, _)| n != "csrf_token");
    forged.push(("csrf_token".into(), "AAAA".into()));
    forged.push(("decision".into(), "allow".into()));
    assert_eq!(
        browser
            .post_form(&action, &forged, Some(&origin))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut allowed = fields.clone();
    allowed.push(("decision".into(), "allow".into()));
    let framed = browser
        .post_form(&action, &allowed, Some("http://evil.example"))
        .await;
    assert_eq!(framed.status, StatusCode::FORBIDDEN);
    // Another browser (without the CSRF cookie) cannot post this form.
    let other = Browser::new();
    assert_eq!(
        other
            .post_form(&action, &allowed, Some(&origin))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Allowed: to the provider, with our own state and PKCE, never the client's.
    let posted = browser.post_form(&action, &allowed, Some(&origin)).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let to_provider = posted.location.clone().expect("location");
    assert!(to_provider.starts_with(&t.idp.issuer), "{to_provider}");
    let provider_params = query(&to_provider);
    assert_ne!(provider_params["state"], "client-state-42");
    assert_eq!(provider_params["code_challenge_method"], "S256");
    assert_ne!(provider_params["code_challenge"], challenge(VERIFIER));
    assert_eq!(
        provider_params["redirect_uri"],
        format!("{}/oauth/callback", t.issuer("guide"))
    );
    assert!(provider_params["scope"].split(' ').any(|s| s == "openid"));
    assert!(provider_params.contains_key("nonce"));

    // The provider signs alice in and sends her back; we send her to the client.
    let back = browser
        .follow(&to_provider, "http://127.0.0.1:43117/", "allow")
        .await;
    let back = back.unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
    let answer = query(&back);
    assert_eq!(answer["state"], "client-state-42");
    assert_eq!(answer["iss"], t.issuer("guide"));
    let code = answer
        .get("code")
        .unwrap_or_else(|| panic!("no code: {back}"));
    assert!(code.starts_with("mcp_ac_"));

    let (status, tokens) = t.redeem("guide", &client_id, code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let list = Mcp::new(t.app.url("/s/guide/mcp"))
        .modern()
        .with_bearer(access)
        .call("tools/list", json!({}))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    // The token is guide's only.
    let other_server = Mcp::new(t.app.url("/s/other/mcp"))
        .modern()
        .with_bearer(access)
        .call("tools/list", json!({}))
        .await;
    assert_eq!(other_server.status, StatusCode::UNAUTHORIZED);

    // Who signed in is an identified end user of the org, with the provider's subject.
    let users = eventually(
        "the signed-in end user listed",
        Duration::from_secs(10),
        || async {
            let (status, body) = t
                .app
                .get(
                    &format!("/api/v1/orgs/{}/users?identified=true", t.org),
                    &t.owner.token,
                )
                .await;
            (status == StatusCode::OK && items(&body).len() == 1).then_some(body)
        },
    )
    .await;
    let user = &items(&users)[0];
    let text = user.to_string();
    assert!(
        text.contains("alice@example.com") && text.contains("alice"),
        "{text}"
    );

    // Every step is an event.
    let types = t.event_types().await;
    for expected in [
        "OauthClientRegistered",
        "OauthConsentGiven",
        "OauthAuthorizationStarted",
        "SignInCallbackTaken",
        "EndUserSignedIn",
        "OauthCodeIssued",
        "SignInCompleted",
        "OauthClientFirstUsed",
        "OauthTokensIssued",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in {types:?}"
        );
    }
    let signed_in = t.last_payload("EndUserSignedIn").await.expect("signed in");
    assert_eq!(signed_in["subject"], "alice");
    assert_eq!(signed_in["email"], "alice@example.com");
    assert_eq!(signed_in["provider_id"], t.provider_id);

    // The callback link again: refused, and recorded.
    let callback_url = browser_callback_url(&browser, &t, &client_id).await;
    let again = browser.get(&callback_url).await;
    assert_eq!(
        again.status,
        StatusCode::SEE_OTHER,
        "a new flow's callback works once"
    );
    assert!(query(&again.location.expect("to the client")).contains_key("code"));
    let replay = browser.get(&callback_url).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);
    assert!(replay.body.contains("finished already"));
    assert!(t
        .event_types()
        .await
        .iter()
        .any(|t| t == "SignInCallbackReplayed"));
}

/// Runs a second authorization in `browser` (consent remembered: no page) up to the provider's
/// callback to us, and answers that callback URL without fetching it.
async fn browser_callback_url(browser: &Browser, t: &SignInTenant, client_id: &str) -> String {
    let first = browser.get(&t.authorize_url("guide", client_id, &[])).await;
    assert_eq!(
        first.status,
        StatusCode::SEE_OTHER,
        "consent is remembered: {}",
        first.body
    );
    let to_provider = first.location.expect("to the provider");
    assert!(to_provider.starts_with(&t.idp.issuer));
    let callback_prefix = format!("{}/oauth/callback", t.issuer("guide"));
    browser
        .follow(&to_provider, &callback_prefix, "allow")
        .await
        .unwrap_or_else(|page| panic!("{} {}", page.status, page.body))
}

#[tokio::test]
async fn bad_authorization_requests_get_a_page_or_an_error_at_the_client() {
    let t =
        SignInTenant::start(&[OidcAccount::verified("alice", "alice@example.com", "Alice")]).await;
    let client_id = t.register("guide").await;
    let browser = Browser::new();

    // No redirect to a URI we cannot trust: a page.
    for changes in [
        vec![("redirect_uri", Some("http://127.0.0.1:43117/callback/"))],
        vec![("redirect_uri", Some("http://127.0.0.1:43117/callbacK"))],
        vec![("redirect_uri", Some("https://evil.example/callback"))],
        vec![("redirect_uri", None)],
        vec![("client_id", Some("0b5a1e3e-1111-4222-8333-944445555666"))],
        vec![("client_id", None)],
    ] {
        let page = browser
            .get(&t.authorize_url("guide", &client_id, &changes))
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{changes:?}: {}",
            page.body
        );
        assert!(page.location.is_none());
        assert_eq!(page.headers["x-frame-options"], "DENY");
    }
    // Another server's client is unknown here.
    let others = t.register("other").await;
    assert_eq!(
        browser
            .get(&t.authorize_url("guide", &others, &[]))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // A trusted redirect gets the error, with the client's state and our iss.
    let other_resource = t.app.url("/s/other/mcp");
    for (changes, error) in [
        (vec![("code_challenge", None)], "invalid_request"),
        (
            vec![("code_challenge_method", Some("plain"))],
            "invalid_request",
        ),
        (vec![("code_challenge_method", None)], "invalid_request"),
        (vec![("code_challenge", Some("short"))], "invalid_request"),
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (
            vec![("resource", Some(other_resource.as_str()))],
            "invalid_target",
        ),
        (
            vec![("resource", Some("https://evil.example/mcp"))],
            "invalid_target",
        ),
        (vec![("scope", Some("mcp admin"))], "invalid_scope"),
    ] {
        let answer = browser
            .get(&t.authorize_url("guide", &client_id, &changes))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{changes:?}: {}",
            answer.body
        );
        let location = answer.location.expect("location");
        assert!(location.starts_with(CLIENT_REDIRECT), "{location}");
        let params = query(&location);
        assert_eq!(params["error"], error, "{changes:?}");
        assert_eq!(params["state"], "client-state-42");
        assert_eq!(params["iss"], t.issuer("guide"));
    }
    // A loopback redirect matches on any port (RFC 8252).
    let page = browser
        .get(&t.authorize_url(
            "guide",
            &client_id,
            &[("redirect_uri", Some("http://127.0.0.1:1/callback"))],
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);

    // Denied: the client hears access_denied.
    let page = browser
        .get(&t.authorize_url("guide", &client_id, &[]))
        .await;
    let (action, mut fields) = consent_form(&page.body).expect("form");
    fields.push(("decision".into(), "deny".into()));
    let denied = browser
        .post_form(&action, &fields, Some(&origin_of(&action)))
        .await;
    let params = query(&denied.location.expect("location"));
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "client-state-42");
}

/// Starts a flow in `browser` up to the provider and answers the provider URL it was sent to.
async fn started_flow(t: &SignInTenant, browser: &Browser, client_id: &str) -> String {
    let page = browser.get(&t.authorize_url("guide", client_id, &[])).await;
    let to_provider = match consent_form(&page.body) {
        Some((action, mut fields)) => {
            fields.push(("decision".into(), "allow".into()));
            browser
                .post_form(&action, &fields, Some(&origin_of(&action)))
                .await
                .location
        }
        None => page.location,
    };
    to_provider.expect("to the provider")
}

#[tokio::test]
async fn a_callback_is_refused_unless_its_state_is_this_browsers_live_flow() {
    let t = SignInTenant::start(&[
        OidcAccount::verified("alice", "alice@example.com", "Alice"),
        OidcAccount::unverified("bob", "bob@example.com", "Bob"),
        OidcAccount {
            sub: "carol".into(),
            email: None,
            email_verified: None,
            name: Some("Carol".into()),
        },
    ])
    .await;
    let client_id = t.register("guide").await;
    let callback = format!("{}/oauth/callback", t.issuer("guide"));

    // Unknown or forged states: a page, nothing sent anywhere.
    let browser = Browser::new();
    for state in ["", "nope", &format!("{}.forged", Uuid::new_v4().simple())] {
        let page = browser
            .get(&format!("{callback}?code=x&state={state}"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{state}");
        assert!(page.location.is_none());
    }

    // The provider's error goes to the client as access_denied, and is recorded.
    let to_provider = started_flow(&t, &browser, &client_id).await;
    let state = query(&to_provider)["state"].clone();
    let state_q = form_body(&[("state", &state)]);
    // Another browser with the same link is refused, and the flow stays usable.
    let stranger = Browser::new();
    let page = stranger
        .get(&format!("{callback}?error=access_denied&{state_q}"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("another browser"));
    let answer = browser
        .get(&format!(
            "{callback}?error=access_denied&error_description=no&{state_q}"
        ))
        .await;
    let params = query(&answer.location.expect("to the client"));
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "client-state-42");
    let failed = t.last_payload("SignInFailed").await.expect("recorded");
    assert_eq!(failed["reason"], "provider_error");

    // An iss naming another issuer (a mix-up) is refused.
    let to_provider = started_flow(&t, &browser, &client_id).await;
    let state_q = form_body(&[("state", &query(&to_provider)["state"])]);
    let answer = browser
        .get(&format!(
            "{callback}?code=abc&iss=http%3A%2F%2Fevil.example&{state_q}"
        ))
        .await;
    assert_eq!(
        query(&answer.location.expect("to the client"))["error"],
        "access_denied"
    );
    assert_eq!(
        t.last_payload("SignInFailed").await.unwrap()["reason"],
        "issuer_mismatch"
    );

    // An unverified email, and no email: refused with access_denied, recorded.
    for (sub, reason) in [("bob", "unverified_email"), ("carol", "no_email")] {
        t.idp.login_as(sub).await;
        let browser = Browser::new();
        let to_provider = started_flow(&t, &browser, &client_id).await;
        let back = browser
            .follow(&to_provider, "http://127.0.0.1:43117/", "allow")
            .await
            .unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
        let params = query(&back);
        assert_eq!(params["error"], "access_denied", "{sub}: {back}");
        assert!(!params.contains_key("code"));
        assert_eq!(
            t.last_payload("SignInFailed").await.unwrap()["reason"],
            reason
        );
    }
    // Nobody was signed in.
    assert!(!t.event_types().await.iter().any(|t| t == "EndUserSignedIn"));
}

#[tokio::test]
async fn after_a_full_sign_in_no_token_or_secret_is_stored_in_plaintext() {
    let t =
        SignInTenant::start(&[OidcAccount::verified("alice", "alice@example.com", "Alice")]).await;
    let client_id = t.register("guide").await;
    let browser = Browser::new();
    let to_provider = started_flow(&t, &browser, &client_id).await;
    let provider_state = query(&to_provider)["state"].clone();
    let back = browser
        .follow(&to_provider, "http://127.0.0.1:43117/", "allow")
        .await
        .unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
    let code = query(&back)["code"].clone();
    let (status, tokens) = t.redeem("guide", &client_id, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    // A refresh, so the rotated pair is searched for too.
    let (status, rotated) = t.refresh("guide", &client_id, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");

    let issued_by_provider: Vec<String> = reqwest::get(format!("{}/_test/issued", t.idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        issued_by_provider.len() >= 2,
        "the provider's code and tokens: {issued_by_provider:?}"
    );
    let mut secrets = vec![
        access,
        refresh,
        code,
        rotated["access_token"].as_str().unwrap().to_owned(),
        rotated["refresh_token"].as_str().unwrap().to_owned(),
        PROVIDER_SECRET.to_owned(),
        VERIFIER.to_owned(),
        provider_state,
        t.owner.token.clone(),
        t.owner.refresh_token.clone(),
    ];
    secrets.extend(issued_by_provider);
    // The provider's tokens are kept, sealed.
    let pool = t.app.env.pool().await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM provider_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_plaintext(&t.app, &secrets).await;
}

#[tokio::test]
async fn the_providers_tokens_are_refreshed_when_ours_are_and_a_sign_out_there_ends_our_grant() {
    let t = SignInTenant::start_with(
        &[OidcAccount::verified("alice", "alice@example.com", "Alice")],
        json!({ "access_token_ttl": 2 }),
        &["openid", "email", "offline_access"],
    )
    .await;
    let client_id = t.register("guide").await;
    let browser = Browser::new();
    // The provider grants offline_access (a refresh token) only when consent is asked for.
    let url = t.authorize_url("guide", &client_id, &[("prompt", Some("consent"))]);
    let back = browser
        .follow(&url, "http://127.0.0.1:43117/", "allow")
        .await
        .unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
    let code = query(&back)["code"].clone();
    let (status, tokens) = t.redeem("guide", &client_id, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let pool = t.app.env.pool().await;
    let kept = || async {
        sqlx::query_as::<_, (Vec<u8>, Option<chrono::DateTime<chrono::Utc>>)>(
            "SELECT sealed, access_expires_at FROM provider_tokens",
        )
        .fetch_one(&pool)
        .await
        .expect("provider tokens kept")
    };
    let (sealed, expires) = kept().await;
    assert!(expires.is_some());

    // The provider's access token expires; our refresh renews it there too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, rotated) = t
        .refresh(
            "guide",
            &client_id,
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (renewed, renewed_expiry) = kept().await;
    assert_ne!(renewed, sealed, "renewed and sealed again");
    assert!(renewed_expiry > expires);

    // Signed out at the provider: the next refresh of ours is refused and the grant ends.
    let signed_out = reqwest::Client::new()
        .post(format!("{}/_test/sign-out", t.idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(signed_out.status().is_success());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, refused) = t
        .refresh(
            "guide",
            &client_id,
            rotated["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
    let list = Mcp::new(t.app.url("/s/guide/mcp"))
        .modern()
        .with_bearer(rotated["access_token"].as_str().unwrap())
        .call("tools/list", json!({}))
        .await;
    assert_eq!(
        list.status,
        StatusCode::UNAUTHORIZED,
        "the grant's access token ends too"
    );
    let revoked = t.last_payload("OauthGrantRevoked").await.expect("revoked");
    assert_eq!(revoked["reason"], "provider_refused");
}

/// Signs `sub` in through a fresh browser and redeems the code: our tokens for them.
async fn tokens_for(t: &SignInTenant, client_id: &str, sub: &str) -> Value {
    t.idp.login_as(sub).await;
    let browser = Browser::new();
    let back = browser
        .follow(
            &t.authorize_url("guide", client_id, &[]),
            "http://127.0.0.1:43117/",
            "allow",
        )
        .await
        .unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
    let (status, tokens) = t.redeem("guide", client_id, &query(&back)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

#[tokio::test]
async fn a_session_is_its_signed_in_end_users_and_refused_tokens_are_recorded_once() {
    let t = SignInTenant::start(&[
        OidcAccount::verified("alice", "alice@example.com", "Alice"),
        OidcAccount::verified("bob", "bob@example.com", "Bob"),
    ])
    .await;
    let client_id = t.register("guide").await;
    let alice = tokens_for(&t, &client_id, "alice").await;
    let bob = tokens_for(&t, &client_id, "bob").await;
    let alice_at = alice["access_token"].as_str().unwrap();
    let bob_at = bob["access_token"].as_str().unwrap();

    // Alice's 2025-era session answers her token only; bob's valid token finds no session.
    let mut session = Mcp::new(t.app.url("/s/guide/mcp")).with_bearer(alice_at);
    session.initialize("alice-ide").await;
    assert_eq!(
        session.call("tools/list", json!({})).await.status,
        StatusCode::OK
    );
    let mut hijack = Mcp::new(t.app.url("/s/guide/mcp")).with_bearer(bob_at);
    hijack.session_id = session.session_id.clone();
    assert_eq!(
        hijack.call("tools/list", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        session.call("tools/list", json!({})).await.status,
        StatusCode::OK
    );

    // A forged token, many times: refused each time, recorded once.
    for _ in 0..5 {
        let forged = Mcp::new(t.app.url("/s/guide/mcp"))
            .modern()
            .with_bearer("mcp_at_forged0000000000000000000000000000000000")
            .call("tools/list", json!({}))
            .await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    }
    // A wrong PKCE verifier at the token endpoint.
    let resp = t
        .app
        .http
        .post(t.app.url("/s/guide/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("grant_type", "authorization_code"),
            ("code", "mcp_ac_not-a-code-of-ours-0000000000000000000000"),
            ("client_id", &client_id),
            ("redirect_uri", CLIENT_REDIRECT),
            ("code_verifier", VERIFIER),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let pool = t.app.env.pool().await;
    let refusals: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE event_type = 'OauthRequestRefused' ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mcp_refusals: Vec<_> = refusals.iter().filter(|r| r["endpoint"] == "mcp").collect();
    assert_eq!(mcp_refusals.len(), 1, "{refusals:?}");
    assert_eq!(mcp_refusals[0]["error"], "invalid_token");
    let token_refusal = refusals
        .iter()
        .find(|r| r["endpoint"] == "token")
        .unwrap_or_else(|| panic!("{refusals:?}"));
    assert_eq!(token_refusal["error"], "invalid_grant");
    assert_eq!(token_refusal["client_id"], client_id.as_str());
    // The refusals are the org's, and name no token.
    let text = serde_json::to_string(&refusals).unwrap();
    assert!(!text.contains("mcp_at_forged") && !text.contains("mcp_ac_not"));
    let orgs: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT metadata->>'org_id' FROM events WHERE event_type = 'OauthRequestRefused'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(orgs.iter().all(|o| o.as_deref() == Some(t.org.as_str())));
}

#[tokio::test]
async fn one_person_signing_in_on_two_servers_of_the_org_is_one_end_user() {
    let t =
        SignInTenant::start(&[OidcAccount::verified("alice", "alice@example.com", "Alice")]).await;
    let browser = Browser::new();
    for slug in ["guide", "other"] {
        let client_id = t.register(slug).await;
        let url = t.authorize_url(slug, &client_id, &[]).replace(
            &form_body(&[("resource", &t.app.url("/s/guide/mcp"))]),
            &form_body(&[("resource", &t.app.url(&format!("/s/{slug}/mcp")))]),
        );
        // Consent is per server and client: the second server asks again.
        let page = browser.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{slug}: consent asked");
        let back = browser
            .follow(&url, "http://127.0.0.1:43117/", "allow")
            .await
            .unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
        let code = query(&back)["code"].clone();
        let (status, tokens) = t.redeem(slug, &client_id, &code).await;
        assert_eq!(status, StatusCode::OK, "{slug}: {tokens}");
    }
    let pool = t.app.env.pool().await;
    let people: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT payload->>'end_user_id' FROM events WHERE event_type = 'SignInCompleted'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(people.len(), 1, "one person: {people:?}");
    let users = eventually(
        "the person listed once",
        Duration::from_secs(10),
        || async {
            let (status, body) = t
                .app
                .get(
                    &format!("/api/v1/orgs/{}/users?identified=true", t.org),
                    &t.owner.token,
                )
                .await;
            (status == StatusCode::OK && items(&body).len() == 1).then_some(body)
        },
    )
    .await;
    assert_eq!(items(&users)[0]["id"], people[0].as_str());
}
