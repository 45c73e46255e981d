//! `bench -- auth`: what signing in costs a hosted server, and how fast a revocation is honoured.
//!
//! Against a running mcplatform it sets up one org with an identity provider and two servers
//! on the same build, alike but for `auth_mode`: `none` (each virtual client its own end user
//! by tracking id) and `oauth` (each virtual client its own end user by an access token of
//! ours). Measurement rounds alternate none, oauth, none, oauth… so that whatever else the
//! shared machine does falls on both; it prints each round and the ratio oauth/none.
//!
//! The access tokens are minted in the server's store through the very command services the
//! authorization server runs (`end_users::sign_in`, `oauth::issue_code`, `oauth::redeem_code`):
//! the browser part of a sign-in (consent, the provider's login) has no place in a load test,
//! and what is measured is the bearer path at the MCP edge, which sees the same grants either
//! way.
//!
//! Then revocations: a token in use on every instance given (`--url`, `--second-url`) is
//! revoked through `POST …/oauth/revoke` on the first, and each instance is polled every 20 ms
//! until it refuses the token; it prints how long that took on each.

use super::machine;
use super::mcp_load::{self, VirtualClient};
use super::{ms, percentile, Row};
use anyhow::{bail, Context};
use base64::Engine;
use chrono::Utc;
use commands::services::{end_users, oauth};
use domain::values::{Email, OrgId};
use domain::{Actor, EventMetadata};
use eventstore::EventStore;
use reqwest::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The read-only tool every round calls (a conformance fixture).
const TOOL: &str = "test_simple_text";
/// The redirect URI the bench's client registers and its codes name (never visited).
const REDIRECT: &str = "http://127.0.0.1/callback";
/// The PKCE verifier of every code the bench redeems.
const VERIFIER: &str = "bench-auth-pkce-verifier-of-at-least-forty-three-characters";
/// How often a revoked token is tried on each instance.
const POLL: Duration = Duration::from_millis(20);
/// How long an instance may go on admitting a revoked token before the bench gives up on it.
const GIVE_UP: Duration = Duration::from_secs(5);

pub(crate) struct Options {
    pub url: String,
    pub second_url: Option<String>,
    pub database_url: String,
    pub seconds: u64,
    pub clients: usize,
    pub rounds: usize,
    pub revocations: usize,
    pub analyze: bool,
    /// Sign-ins per second at the token endpoint during a third kind of round (0: none).
    pub sign_ins: f64,
}

/// The org, its identity provider, and the two servers.
struct Setup {
    base: String,
    org: Uuid,
    provider: Uuid,
    open_slug: String,
    oauth_slug: String,
    oauth_server: Uuid,
    client_id: String,
}

async fn set_up(http: &Client, base: &str) -> anyhow::Result<(Setup, String)> {
    // The org and the `none` server come from `bench mcp`'s set-up.
    let tenant = mcp_load::set_up(http, base).await?;
    let org = Uuid::parse_str(&tenant.org).context("the org's id")?;
    let provider = mcp_load::post(
        http,
        &format!("{base}/api/v1/orgs/{org}/identity-providers"),
        Some(&tenant.token),
        json!({
            "name": "Bench IdP",
            "kind": "oauth2",
            // Never contacted: the bench's end users are signed in through the command service.
            "authorization_endpoint": "https://idp.bench.invalid/authorize",
            "token_endpoint": "https://idp.bench.invalid/token",
            "userinfo_endpoint": "https://idp.bench.invalid/user",
            "client_id": "bench-client",
            "client_secret": "bench-client-secret",
            "scopes": ["openid", "email"],
        }),
    )
    .await
    .context("creating the identity provider")?;
    let provider = uuid_field(&provider, "id")?;
    let oauth_slug = format!("{}-oauth", tenant.slug);
    let server = mcp_load::post(
        http,
        &format!("{base}/api/v1/orgs/{org}/servers"),
        Some(&tenant.token),
        json!({
            "name": "Bench OAuth", "slug": oauth_slug, "conformance_fixtures": true,
            "auth_mode": "oauth", "identity_provider_id": provider,
        }),
    )
    .await
    .context("creating the oauth server")?;
    let oauth_server = uuid_field(&server, "id")?;
    // A client registered as MCP clients register (RFC 7591), for the codes and the revocation.
    let registered = mcp_load::post(
        http,
        &format!("{base}/s/{oauth_slug}/oauth/register"),
        None,
        json!({ "client_name": "mcplatform bench", "redirect_uris": [REDIRECT] }),
    )
    .await
    .context("registering the bench's OAuth client")?;
    let client_id = registered["client_id"]
        .as_str()
        .context("the registration has no client_id")?
        .to_owned();
    Ok((
        Setup {
            base: base.to_owned(),
            org,
            provider,
            open_slug: tenant.slug,
            oauth_slug,
            oauth_server,
            client_id,
        },
        tenant.token,
    ))
}

fn uuid_field(body: &Value, field: &str) -> anyhow::Result<Uuid> {
    body[field]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .with_context(|| format!("no {field} in {body}"))
}

impl Setup {
    /// The `none` server's URL for virtual client `n`: its own tracking id, its own end user.
    fn open_url(&self, n: usize) -> String {
        format!("{}/s/{}/t/bench-auth-{n}/mcp", self.base, self.open_slug)
    }

    /// The `oauth` server's URL on the instance at `base`.
    fn oauth_url(&self, base: &str) -> String {
        format!("{base}/s/{}/mcp", self.oauth_slug)
    }

    /// A fresh end user signed in with the provider, and an access token of theirs, minted as
    /// the authorization server's callback and token endpoint mint one: sign-in, a code for the
    /// bench's client, the code redeemed with its PKCE verifier.
    async fn mint(&self, store: &EventStore, n: usize) -> anyhow::Result<String> {
        let end_user = self.sign_in(store, n).await?;
        let code = self.code(store, end_user).await?;
        let metadata = EventMetadata::by(Actor::System).for_org(self.org);
        let tokens = oauth::redeem_code(
            store,
            &metadata,
            self.oauth_server,
            &code,
            &self.client_id,
            REDIRECT,
            VERIFIER,
            Utc::now(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("redeeming the code: {e}"))?;
        Ok(tokens.access_token)
    }

    /// End user `n`, signed in with the provider (found again on a second sign-in).
    async fn sign_in(&self, store: &EventStore, n: usize) -> anyhow::Result<Uuid> {
        let metadata = EventMetadata::by(Actor::System).for_org(self.org);
        let subject = format!("bench-{}-{n}", &self.oauth_slug);
        let email = Email::parse(&format!("{subject}@example.com"))
            .map_err(|e| anyhow::anyhow!("bench email: {e:?}"))?;
        end_users::sign_in(
            store,
            &metadata,
            end_users::SignIn {
                org_id: OrgId(self.org),
                server_id: self.oauth_server,
                provider_id: self.provider,
                subject,
                email: Some(email),
                email_verified: true,
                name: Some(format!("Bench user {n}")),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("signing in end user {n}: {e}"))
    }

    /// A code for the bench's client, as the sign-in callback issues one.
    async fn code(&self, store: &EventStore, end_user: Uuid) -> anyhow::Result<String> {
        let metadata = EventMetadata::by(Actor::System).for_org(self.org);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(VERIFIER.as_bytes()));
        let (_, code) = oauth::issue_code(
            store,
            &metadata,
            oauth::CodeRequest {
                org_id: self.org,
                server_id: self.oauth_server,
                client_id: self.client_id.clone(),
                end_user_id: end_user,
                scopes: vec![oauth::SCOPE_MCP.to_owned()],
                resource: self.oauth_url(&self.base),
                redirect_uri: REDIRECT.to_owned(),
                code_challenge: challenge,
            },
            Utc::now(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("issuing a code: {e}"))?;
        Ok(code)
    }

    /// Redeems a code at the server's token endpoint, as an MCP client finishing its sign-in
    /// does: the grant is committed through the server.
    async fn redeem_over_http(&self, http: &Client, code: &str) -> anyhow::Result<()> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", VERIFIER)
            .finish();
        let resp = http
            .post(format!("{}/s/{}/oauth/token", self.base, self.oauth_slug))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the token endpoint answered {}", resp.status());
        }
        Ok(())
    }
}

/// Sign-ins finished at the token endpoint at `per_second` until `stop`: the churn of a server
/// whose end users keep signing in while others call. Returns how many were made.
async fn churn(
    setup: Arc<Setup>,
    store: EventStore,
    per_second: f64,
    stop: Instant,
) -> anyhow::Result<u64> {
    let http = Client::new();
    let end_user = setup.sign_in(&store, 2_000_000).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut made = 0;
    while Instant::now() < stop {
        tick.tick().await;
        let code = setup.code(&store, end_user).await?;
        setup.redeem_over_http(&http, &code).await?;
        made += 1;
    }
    Ok(made)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Oauth,
    /// `none` while end users of the `oauth` server finish signing in at its token endpoint:
    /// what the sign-ins themselves cost.
    NoneChurn,
    /// `oauth` while other end users finish signing in at the token endpoint.
    Churn,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Oauth => "oauth",
            Mode::NoneChurn => "none+s",
            Mode::Churn => "oauth+s",
        }
    }
}

/// One round: every virtual client initializes a session of its own, then calls [`TOOL`] in a
/// loop for `seconds` (with sign-ins at `sign_ins` per second meanwhile in [`Mode::Churn`]).
async fn round(
    setup: &Arc<Setup>,
    store: &EventStore,
    tokens: &[String],
    mode: Mode,
    seconds: u64,
    sign_ins: f64,
) -> anyhow::Result<Row> {
    let mut sessions = Vec::with_capacity(tokens.len());
    for (n, token) in tokens.iter().enumerate() {
        sessions.push(match mode {
            Mode::None | Mode::NoneChurn => VirtualClient::connect(&setup.open_url(n), n).await?,
            Mode::Oauth | Mode::Churn => {
                VirtualClient::connect_as(&setup.oauth_url(&setup.base), n, Some(token)).await?
            }
        });
    }
    let churning = matches!(mode, Mode::Churn | Mode::NoneChurn).then(|| {
        let stop = Instant::now() + Duration::from_secs(seconds);
        tokio::spawn(churn(setup.clone(), store.clone(), sign_ins, stop))
    });
    let row = mcp_load::drive(sessions, seconds, TOOL, "{}").await;
    if let Some(churning) = churning {
        let made = churning.await??;
        eprintln!(
            "  ({made} sign-ins finished at the token endpoint during the round: {:.1}/s)",
            made as f64 / seconds as f64
        );
    }
    Ok(row)
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    if options.clients == 0 || options.rounds == 0 {
        bail!("--clients and --rounds must be at least 1");
    }
    let base = options.url.trim_end_matches('/').to_owned();
    let second = options
        .second_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned());
    let http = Client::new();
    let (setup, _) = set_up(&http, &base).await?;
    let setup = Arc::new(setup);
    // Small: the server's pools and everyone else's share Postgres's 100 connections.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&options.database_url)
        .await
        .context("connecting to the server's database (--database-url)")?;
    let store = EventStore::open(pool.clone())
        .await
        .context("opening the server's event store (is --database-url the server's?)")?;
    let minting = Instant::now();
    let mut tokens = Vec::with_capacity(options.clients);
    for n in 0..options.clients {
        tokens.push(setup.mint(&store, n).await?);
    }
    let minted = minting.elapsed();

    // Warm-up of both (sessions, caches, plans), then the database analyzed as autovacuum would.
    round(&setup, &store, &tokens, Mode::None, 2, 0.0).await?;
    round(&setup, &store, &tokens, Mode::Oauth, 2, 0.0).await?;
    if options.analyze {
        super::analyze(Some(&options.database_url)).await?;
    }

    println!(
        "mcplatform auth benchmark against {base}: {} clients, {} s per round, {} rounds per mode",
        options.clients, options.seconds, options.rounds
    );
    println!("none:  {}", setup.open_url(0));
    println!("oauth: {} (Bearer mcp_at_…)", setup.oauth_url(&base));
    println!(
        "{} end users signed in and their tokens minted through the command services in {:.0} ms",
        options.clients,
        ms(minted)
    );
    println!("{}", machine::describe());
    println!(
        "{:<6} {:<7} {:>8} {:>12} {:>10} {:>10} {:>8} {:>13} {:>11}",
        "round",
        "mode",
        "clients",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "cpu µs/call",
        "oauth/none"
    );
    let mut totals: [(f64, Vec<Duration>, Vec<Duration>); 4] = Default::default();
    let mut modes = vec![Mode::None, Mode::Oauth];
    if options.sign_ins > 0.0 {
        modes.extend([Mode::NoneChurn, Mode::Churn]);
    }
    for r in 1..=options.rounds {
        let mut open_rate = 0.0;
        for &mode in &modes {
            let row = round(
                &setup,
                &store,
                &tokens,
                mode,
                options.seconds,
                options.sign_ins,
            )
            .await?;
            let ratio = match mode {
                Mode::None => {
                    open_rate = row.per_second;
                    String::new()
                }
                Mode::Oauth | Mode::NoneChurn | Mode::Churn => {
                    format!("{:.3}x", row.per_second / open_rate.max(1e-9))
                }
            };
            println!(
                "{:<6} {:<7} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>8} {:>13} {:>11}",
                r,
                mode.name(),
                options.clients,
                row.per_second,
                ms(row.p50),
                ms(row.p99),
                row.failed,
                machine::column(row.cpu_us),
                ratio
            );
            let total = &mut totals[mode as usize];
            total.0 += row.per_second;
            total.1.push(row.p50);
            total.2.push(row.p99);
        }
    }
    let mean = |m: Mode| totals[m as usize].0 / options.rounds as f64;
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        percentile(&v, 0.5)
    };
    let none = &totals[Mode::None as usize];
    for &mode in &modes[1..] {
        let other = &totals[mode as usize];
        println!(
            "{}/none: throughput {:.3}x (mean of rounds: {:.0} vs {:.0} calls/s), p50 {:.2}x, \
             p99 {:.2}x (medians of rounds)",
            mode.name(),
            mean(mode) / mean(Mode::None).max(1e-9),
            mean(mode),
            mean(Mode::None),
            ms(median(&other.1)) / ms(median(&none.1)).max(1e-9),
            ms(median(&other.2)) / ms(median(&none.2)).max(1e-9),
        );
    }
    if options.sign_ins > 0.0 {
        println!(
            "(+s: while other end users finish signing in at the oauth server's token endpoint, \
             {}/s)",
            options.sign_ins
        );
    }

    if options.revocations > 0 {
        revocations(
            &http,
            &setup,
            &store,
            second.as_deref(),
            options.revocations,
        )
        .await?;
    }
    pool.close().await;
    Ok(())
}

/// Where a revocation is, as the probes see it.
#[derive(Clone, Copy)]
enum Revocation {
    NotYet,
    /// Sent, not yet answered: a refusal now is counted as 0 ms.
    Sent,
    /// Answered (committed) at this instant.
    Answered(Instant),
}

/// What one instance did with a revoked token, from the revocation's answer.
struct Honoured {
    /// When the last probe the instance still admitted was sent, if after the answer: the
    /// instance admitted the token at least this long.
    last_admitted: Option<Duration>,
    /// When the first refusal arrived: the instance refused the token by then.
    refused_by: Duration,
}

/// Calls the tool every [`POLL`] with a token until `instance` refuses it.
async fn probe(
    mut client: VirtualClient,
    instance: String,
    mut revocation: tokio::sync::watch::Receiver<Revocation>,
) -> anyhow::Result<Honoured> {
    let mut last_admitted = None;
    loop {
        let sent = Instant::now();
        let status = client.call_status(TOOL, "{}").await?;
        let now = *revocation.borrow_and_update();
        match (status.as_u16(), now) {
            (401, Revocation::Answered(at)) => {
                return Ok(Honoured {
                    last_admitted,
                    refused_by: at.elapsed(),
                })
            }
            (401, Revocation::Sent) => {
                return Ok(Honoured {
                    last_admitted,
                    refused_by: Duration::ZERO,
                })
            }
            (401, Revocation::NotYet) => {
                bail!("{instance} refused the token before its revocation")
            }
            (s, Revocation::Answered(at)) if (200..300).contains(&s) => {
                if at.elapsed() > GIVE_UP {
                    bail!("{instance} still admits a token revoked {GIVE_UP:?} ago");
                }
                if sent > at {
                    last_admitted = Some(sent - at);
                }
            }
            (s, _) if (200..300).contains(&s) => {}
            (s, _) => bail!("{instance} answered {s} to a probe"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Revokes `count` tokens, each while it is in use on every instance, and prints how long each
/// instance went on admitting them.
async fn revocations(
    http: &Client,
    setup: &Setup,
    store: &EventStore,
    second: Option<&str>,
    count: usize,
) -> anyhow::Result<()> {
    let mut instances = vec![setup.base.clone()];
    instances.extend(second.map(str::to_owned));
    println!();
    println!(
        "revocation: POST {}/s/{}/oauth/revoke, then each instance tried every {} ms",
        setup.base,
        setup.oauth_slug,
        POLL.as_millis()
    );
    let mut honoured: Vec<Vec<Honoured>> = instances.iter().map(|_| Vec::new()).collect();
    for k in 0..count {
        let token = setup.mint(store, 1_000_000 + k).await?;
        let mut probes = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let mut client = VirtualClient::connect_as(&setup.oauth_url(instance), i, Some(&token))
                .await
                .with_context(|| format!("a session on {instance} with a fresh token"))?;
            let status = client.call_status(TOOL, "{}").await?;
            if !status.is_success() {
                bail!("{instance} refused a fresh token: {status}");
            }
            probes.push(client);
        }
        // In use everywhere for a while: each instance has the token's validation cached, and
        // the revocation falls at a different point of the cache's 1 s each time.
        let warm = Duration::from_millis(1000 + (k as u64 * 379) % 1000);
        let warm_until = Instant::now() + warm;
        let (revoked_tx, revoked_rx) = tokio::sync::watch::channel(Revocation::NotYet);
        let pollers: Vec<_> = probes
            .into_iter()
            .zip(&instances)
            .map(|(client, instance)| {
                tokio::spawn(probe(client, instance.clone(), revoked_rx.clone()))
            })
            .collect();
        tokio::time::sleep_until(warm_until.into()).await;
        let _ = revoked_tx.send(Revocation::Sent);
        let resp = http
            .post(format!(
                "{}/s/{}/oauth/revoke",
                setup.base, setup.oauth_slug
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", &token)
                    .append_pair("client_id", &setup.client_id)
                    .finish(),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("revocation answered {}", resp.status());
        }
        // Counted from the answer: the revocation is committed when the endpoint answers.
        let _ = revoked_tx.send(Revocation::Answered(Instant::now()));
        for (i, poller) in pollers.into_iter().enumerate() {
            honoured[i].push(poller.await??);
        }
    }
    println!(
        "{:<40} {:>11} {:>14} {:>14} {:>17}",
        "instance", "revocations", "refused by ms", "max last ok ms", "ok after 1 s"
    );
    for (i, instance) in instances.iter().enumerate() {
        let mut refused: Vec<Duration> = honoured[i].iter().map(|h| h.refused_by).collect();
        refused.sort_unstable();
        let admitted: Vec<Duration> = honoured[i].iter().filter_map(|h| h.last_admitted).collect();
        let late = admitted
            .iter()
            .filter(|d| **d > Duration::from_secs(1))
            .count();
        let role = if i == 0 { " (revoked here)" } else { "" };
        println!(
            "{:<40} {:>11} {:>14} {:>14} {:>17}",
            format!("{instance}{role}"),
            refused.len(),
            format!(
                "{:.0} / {:.0}",
                ms(percentile(&refused, 0.5)),
                ms(refused.last().copied().unwrap_or_default())
            ),
            admitted
                .iter()
                .max()
                .map_or_else(|| "-".to_owned(), |d| format!("{:.0}", ms(*d))),
            format!("{late} of {}", refused.len())
        );
    }
    println!(
        "(refused by: p50 / max from the revocation's answer to the first refusal; last ok: \
         when the last probe the instance admitted was sent; ok after 1 s: revocations whose \
         token was admitted on a probe sent more than 1 s after the revocation was answered)"
    );
    if second.is_none() {
        println!("(one instance: give --second-url to see another instance honour it)");
    }
    Ok(())
}
