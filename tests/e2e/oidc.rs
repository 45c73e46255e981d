//! A real OpenID provider on loopback for the sign-in tests: npm's `oidc-provider`, run by
//! `tests/support/oidc_provider.mjs` (installed by `scripts/setup-test-clients.sh`). Started on
//! a free port, ready once its discovery document answers, killed on drop.
//!
//! ```ignore
//! let idp = OidcProvider::start(
//!     &[OidcClient::new("platform", "platform-secret-123", &["http://127.0.0.1:9/cb"])],
//!     &[OidcAccount::verified("alice", "alice@example.com", "Alice")],
//! ).await;
//! idp.login_as("alice").await; // the next interactions sign alice in without a form
//! ```

#![allow(dead_code)]

use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A client registered at the provider (the platform, in the tests).
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

impl OidcClient {
    pub fn new(client_id: &str, client_secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
        }
    }
}

/// An account at the provider; `email` and `email_verified` may be left out to test a
/// provider that does not say.
#[derive(Debug, Clone, Serialize)]
pub struct OidcAccount {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl OidcAccount {
    pub fn verified(sub: &str, email: &str, name: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            email: Some(email.to_owned()),
            email_verified: Some(true),
            name: Some(name.to_owned()),
        }
    }

    pub fn unverified(sub: &str, email: &str, name: &str) -> Self {
        Self {
            email_verified: Some(false),
            ..Self::verified(sub, email, name)
        }
    }
}

/// The running provider; killed on drop.
pub struct OidcProvider {
    /// `http://127.0.0.1:{port}`, exactly as the discovery document names it.
    pub issuer: String,
    pub port: u16,
    child: Child,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

impl OidcProvider {
    /// Starts the provider with these clients and accounts; the first account signs in by
    /// default (see [`OidcProvider::login_as`] to choose another).
    pub async fn start(clients: &[OidcClient], accounts: &[OidcAccount]) -> Self {
        Self::start_with(clients, accounts, json!({})).await
    }

    /// As [`OidcProvider::start`], with more of the stand-in's settings (`access_token_ttl`).
    pub async fn start_with(
        clients: &[OidcClient],
        accounts: &[OidcAccount],
        settings: serde_json::Value,
    ) -> Self {
        let root = repo_root();
        let node = root.join(".tools/bin/node");
        assert!(
            node.exists()
                && root
                    .join(".tools/oidc-provider/node_modules/oidc-provider")
                    .exists(),
            "oidc-provider is not installed: run scripts/setup-test-clients.sh"
        );
        let mut config = json!({
            "clients": clients,
            "accounts": accounts,
            "auto_login": accounts.first().map(|account| account.sub.clone()),
        });
        if let (Some(config), Some(settings)) = (config.as_object_mut(), settings.as_object()) {
            config.extend(settings.clone());
        }
        // A port taken between the probe and the bind is retried on another.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&node)
                .arg(root.join("tests/support/oidc_provider.mjs"))
                .arg(port.to_string())
                .arg(config.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn node");
            let mut provider = Self {
                issuer: format!("http://127.0.0.1:{port}"),
                port,
                child,
            };
            if provider.ready().await {
                return provider;
            }
            provider.kill();
        }
        panic!("oidc-provider did not start");
    }

    /// Waits until the discovery document answers (or the process ends).
    async fn ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let url = self.discovery_url();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(answer) = http.get(&url).send().await {
                if answer.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The account the provider's next interactions sign in, without a form.
    pub async fn login_as(&self, sub: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_test/login", self.issuer))
            .json(&json!({ "sub": sub }))
            .send()
            .await
            .expect("oidc stand-in answers");
        assert!(answer.status().is_success());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn the_stand_in_serves_discovery_and_signs_in_without_a_person() {
    let idp = OidcProvider::start(
        &[OidcClient::new(
            "stand-in-client",
            "stand-in-secret-0123456789",
            &["http://127.0.0.1:9/cb"],
        )],
        &[
            OidcAccount::verified("alice", "alice@example.com", "Alice"),
            OidcAccount::unverified("bob", "bob@example.com", "Bob"),
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let discovery: serde_json::Value = http
        .get(idp.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], idp.issuer);
    idp.login_as("bob").await;
    // Authorize, then follow the interactions (login, consent) back to the redirect URI.
    let mut next = format!(
        "{}/auth?client_id=stand-in-client&response_type=code&scope=openid%20email%20profile&redirect_uri=http://127.0.0.1:9/cb&state=s1&nonce=n1",
        idp.issuer
    );
    let mut code = None;
    let mut cookies = std::collections::BTreeMap::new();
    for _ in 0..8 {
        let cookie = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let answer = http
            .get(&next)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        for set in answer.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            cookies.insert(name.to_owned(), value.to_owned());
        }
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", idp.issuer)
        } else {
            location
        };
        if location.starts_with("http://127.0.0.1:9/cb") {
            let url = reqwest::Url::parse(&location).unwrap();
            code = url
                .query_pairs()
                .find(|(key, _)| key == "code")
                .map(|(_, value)| value.into_owned());
            break;
        }
        next = location;
    }
    let code = code.expect("the flow reaches the redirect URI with a code");
    let tokens: serde_json::Value = http
        .post(format!("{}/token", idp.issuer))
        .basic_auth("stand-in-client", Some("stand-in-secret-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        // The code is base64url: nothing in it needs escaping.
        .body(format!(
            "grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: serde_json::Value = http
        .get(format!("{}/me", idp.issuer))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "bob");
    assert_eq!(me["email_verified"], false);
}
