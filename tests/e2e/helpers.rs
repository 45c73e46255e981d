//! `spawn_app()` and friends: start the binary like a user would and talk HTTP to it.

#![allow(dead_code)]

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "e2e-test-secret-0123456789abcdef";
/// The bearer token every test app takes for `/metrics` on its main address.
pub const METRICS_TOKEN: &str = "e2e-metrics-token-0123456789";

pub fn admin_url(db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

/// A database and NATS prefix of one test; dropped (database and stream) on drop.
pub struct TestEnv {
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
}

impl TestEnv {
    pub fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("mcpl_test_{}", &id[..16]);
        Self {
            db_url: admin_url(&db_name),
            db_name,
            prefix: format!("t{}", &id[..12]),
        }
    }

    /// The binary as a command with this environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcplatform"));
        cmd.env("DATABASE_URL", &self.db_url)
            .env("NATS_URL", "nats://127.0.0.1:4222")
            .env("MCPLATFORM_NATS_PREFIX", &self.prefix)
            .env("MCPLATFORM_SECRET", SECRET)
            .env("MCPLATFORM_BIND", "127.0.0.1:0")
            .env("MCPLATFORM_DB_POOL", "8")
            .env("MCPLATFORM_METRICS_TOKEN", METRICS_TOKEN)
            // Loopback stand-ins (an OpenID provider, client metadata documents) are fetched.
            .env("MCPLATFORM_OUTBOUND_ALLOW", "127.0.0.0/8")
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Runs a CLI verb to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mcplatform")
    }

    /// Starts a long-running verb (`up`, `serve`, ...) and waits for its listening line if it
    /// serves HTTP.
    pub fn start(&self, args: &[&str]) -> Proc {
        self.start_with(args, &[])
    }

    /// Like [`TestEnv::start`], with extra environment variables (another secret, a proxy).
    pub fn start_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Proc {
        self.start_env(args, vars, &[])
    }

    /// Like [`TestEnv::start_with`], also removing the variables in `unset` (such as
    /// `MCPLATFORM_METRICS_TOKEN`, which [`TestEnv::command`] sets).
    pub fn start_env(&self, args: &[&str], vars: &[(&str, &str)], unset: &[&str]) -> Proc {
        let mut cmd = self.command();
        for key in unset {
            cmd.env_remove(key);
        }
        for (key, value) in vars {
            cmd.env(key, value);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mcplatform");
        let mut base = None;
        if args.first().is_some_and(|a| *a == "up" || *a == "serve") {
            let stdout = child.stdout.take().expect("stdout");
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(rest) = line.trim().strip_prefix("mcplatform listening on ") {
                    base = Some(rest.to_owned());
                    break;
                }
            }
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            assert!(
                base.is_some(),
                "mcplatform {args:?} did not start listening"
            );
        }
        Proc { child, base }
    }

    /// A pool on this test's database (after the binary created and migrated it).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.db_url)
            .await
            .expect("connect test database")
    }

    pub fn stream_name(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_uppercase())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let db = self.db_name.clone();
        let stream = self.stream_name();
        // Drop runs outside async; clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(&stream).await;
                }
                if let Ok(pool) = sqlx::PgPool::connect(&admin_url("postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running `mcplatform` process; killed on drop.
pub struct Proc {
    pub child: Child,
    pub base: Option<String>,
}

impl Proc {
    pub fn base(&self) -> &str {
        self.base.as_deref().expect("process serves HTTP")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `mcplatform up` on a fresh database, and an HTTP client for it. Field order matters: the
/// process is killed before the environment (database, stream) is dropped.
pub struct TestApp {
    pub proc: Proc,
    pub env: TestEnv,
    pub http: Client,
}

pub async fn spawn_app() -> TestApp {
    let env = TestEnv::new();
    let proc = env.start(&["up"]);
    TestApp {
        proc,
        env,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

/// A signed-up platform user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// `/metrics` as scraped with the test apps' token.
    pub async fn scrape(&self) -> Option<String> {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.proc.base(), path)
    }

    /// Sends a request; returns status and JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn signup(&self, email: &str) -> User {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/signup",
                None,
                Some(json!({ "email": email, "password": PASSWORD, "name": email.split('@').next() })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "signup {email}: {body}");
        User {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            email: email.to_owned(),
            token: body["access_token"].as_str().expect("token").to_owned(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Creates an org owned by `user`; returns its id.
    pub async fn create_org(&self, user: &User, slug: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/orgs",
                &user.token,
                json!({ "name": slug, "slug": slug }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create org {slug}: {body}");
        body["id"].as_str().expect("org id").to_owned()
    }

    /// Invites `email` to `org` as `role`; returns the answer, which carries the invitation's
    /// `invitation_token` and `accept_url`.
    pub async fn invite(&self, by: &User, org: &str, email: &str, role: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/orgs/{org}/members"),
                &by.token,
                json!({ "email": email, "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "invite {email}: {body}");
        assert!(body["invitation_token"].is_string(), "{body}");
        body
    }

    /// `user` accepts an invitation with its token.
    pub async fn accept(&self, user: &User, token: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/invitations/{token}/accept"),
            Some(&user.token),
            None,
        )
        .await
    }

    /// Makes a signed-up user a member of `org`: invited, and accepting with the token.
    pub async fn add_member(&self, by: &User, org: &str, user: &User, role: &str) -> Value {
        let invited = self.invite(by, org, &user.email, role).await;
        let token = invited["invitation_token"].as_str().expect("token");
        let (status, joined) = self.accept(user, token).await;
        assert_eq!(status, StatusCode::OK, "accept {}: {joined}", user.email);
        joined
    }

    /// Registers a plain OAuth 2.0 identity provider with loopback endpoints (nothing is
    /// fetched when it is saved); returns its id. For servers in `oauth` mode.
    pub async fn create_oauth2_provider(&self, user: &User, org: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/orgs/{org}/identity-providers"),
                &user.token,
                json!({
                    "name": "Loopback OAuth",
                    "kind": "oauth2",
                    "authorization_endpoint": "http://127.0.0.1:9/authorize",
                    "token_endpoint": "http://127.0.0.1:9/token",
                    "userinfo_endpoint": "http://127.0.0.1:9/user",
                    "client_id": "loopback-client",
                    "client_secret": "loopback-client-secret",
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create provider: {body}");
        body["id"].as_str().expect("provider id").to_owned()
    }

    /// Registers an OpenID Connect identity provider (discovered from `issuer`, fetched through
    /// the outbound guard: loopback is allowed in the tests); returns its id.
    pub async fn create_oidc_provider(
        &self,
        user: &User,
        org: &str,
        issuer: &str,
        client_id: &str,
        client_secret: &str,
    ) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/orgs/{org}/identity-providers"),
                &user.token,
                json!({
                    "name": "Loopback OpenID",
                    "kind": "oidc",
                    "issuer": issuer,
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "scopes": ["email", "profile"],
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create oidc provider: {body}");
        body["id"].as_str().expect("provider id").to_owned()
    }

    /// Puts a server in `oauth` mode, signing in with `provider`.
    pub async fn require_sign_in(&self, user: &User, org: &str, slug: &str, provider: &str) {
        let (status, body) = self
            .patch(
                &format!("/api/v1/orgs/{org}/servers/{slug}"),
                &user.token,
                json!({ "auth_mode": "oauth", "identity_provider_id": provider }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "oauth mode for {slug}: {body}");
    }

    /// Creates a server; returns its body.
    pub async fn create_server(&self, user: &User, org: &str, slug: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/orgs/{org}/servers"),
                &user.token,
                json!({ "name": slug, "slug": slug }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create server {slug}: {body}");
        body
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Assertions and look-ups shared by the REST tests ----

/// Asserts a problem+json body with the given status and code.
#[track_caller]
pub fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "expected {status} {code}, got {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

/// Asserts a 422 whose `errors` name `field`.
#[track_caller]
pub fn assert_invalid_field(got: &(StatusCode, Value), field: &str) {
    assert_problem(got, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let errors = got.1["errors"].as_array().expect("errors array");
    assert!(
        errors.iter().any(|e| e["field"] == field),
        "expected an error on `{field}`: {}",
        got.1
    );
}

#[track_caller]
pub fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().expect("items array")
}

/// Signs up with the full response (for `joined_orgs`).
pub async fn signup_full(app: &TestApp, email: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({ "email": email, "password": PASSWORD, "name": "Someone" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Signs up presenting an invitation's token; returns the full response.
pub async fn signup_with_invitation(app: &TestApp, email: &str, token: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/auth/signup",
            None,
            Some(json!({
                "email": email, "password": PASSWORD, "name": "Someone", "invitation_token": token
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

pub async fn counters(app: &TestApp, user: &User, org: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/orgs/{org}/dashboard"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["counters"].clone()
}

/// Waits until the dashboard counters match `expected` (a subset of fields).
pub async fn expect_counters(app: &TestApp, user: &User, org: &str, expected: Value) {
    let expected = expected.as_object().expect("object").clone();
    let mut last = Value::Null;
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            last = counters(app, user, org).await;
            if expected.iter().all(|(k, v)| &last[k] == v) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        ok.is_ok(),
        "dashboard counters: expected {expected:?}, got {last}"
    );
}

/// Every table of the database (the event log among them) as text: none of `secrets` in it,
/// nor their bytes as hex.
pub async fn assert_no_plaintext(app: &TestApp, secrets: &[&str]) {
    let pool = app.env.pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    assert!(tables.iter().any(|t| t == "events"));
    for secret in secrets {
        assert!(secret.len() >= 16, "a secret worth searching for: {secret}");
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for table in &tables {
            let found: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} t WHERE t::text LIKE $1 OR t::text LIKE $2"
            ))
            .bind(format!("%{secret}%"))
            .bind(format!("%{hex}%"))
            .fetch_one(&pool)
            .await
            .expect("search");
            assert_eq!(found, 0, "{secret} found in {table}");
        }
    }
}
