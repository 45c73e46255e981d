//! Configuration: flags with environment fallbacks, grouped by what uses them, so each verb
//! takes (and its `--help` shows) only the groups it needs.
//!
//! Secrets (the platform secret, and URLs that may carry a password) are `SecretString`: their
//! `Debug` prints `[REDACTED]`, `--help` never echoes their environment values, and they are
//! exposed only where a connection is opened or a key derived.

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};
use commands::limits::Limits;
use secrecy::{ExposeSecret, SecretString};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// A URL that may carry credentials (`postgres://user:password@host/db`).
fn secret_url(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// A duration: `500ms`, `10s`, `2m`, or a bare number of seconds; more than zero.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 10s or 2m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?} is not a duration such as 500ms, 10s or 2m")),
    };
    if d.is_zero() {
        return Err("a timeout must be more than zero".to_owned());
    }
    Ok(d)
}

/// A bearer token for `/metrics`: at least 16 characters, never printed, not even refused
/// (clap's own wording of a refusal would print it; see [`PlatformSecret`]).
#[derive(Clone)]
struct MetricsToken;

impl TypedValueParser for MetricsToken {
    type Value = SecretString;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<SecretString, clap::Error> {
        match value.to_str() {
            Some(token) if token.len() >= SECRET_MIN_LEN => Ok(SecretString::from(token)),
            _ => Err(clap::Error::raw(
                ErrorKind::ValueValidation,
                format!(
                    "the metrics token (--metrics-token or MCPLATFORM_METRICS_TOKEN) must be at least {SECRET_MIN_LEN} characters of UTF-8; it is not shown\n"
                ),
            )
            .with_cmd(cmd)),
        }
    }
}

/// Shortest platform secret accepted.
const SECRET_MIN_LEN: usize = 16;

/// The platform secret: at least 16 characters. Its own parser, because clap words a refused
/// value as "invalid value '<the value>' for ..." and a secret must not be printed, even a
/// refused one: this refusal names the flag and the rule only.
#[derive(Clone)]
struct PlatformSecret;

impl TypedValueParser for PlatformSecret {
    type Value = SecretString;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<SecretString, clap::Error> {
        let refuse = |rule: &str| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!(
                    "the platform secret (--secret or MCPLATFORM_SECRET) {rule}; it is not shown\n"
                ),
            )
            .with_cmd(cmd)
        };
        let secret = value.to_str().ok_or_else(|| refuse("is not UTF-8"))?;
        if secret.len() < SECRET_MIN_LEN {
            return Err(refuse(&format!(
                "must be at least {SECRET_MIN_LEN} characters"
            )));
        }
        Ok(SecretString::from(secret))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The Postgres database that holds the event store and the read models.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL (a password in it is never printed).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/mcplatform",
        value_parser = secret_url
    )]
    pub database_url: SecretString,
}

/// What every running piece (edges, relay, projectors) connects to.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// NATS server with JetStream (credentials in it are never printed).
    #[arg(
        long,
        env = "NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222",
        value_parser = secret_url
    )]
    pub nats_url: SecretString,

    /// Names this deployment's JetStream stream (`{PREFIX}_EVENTS`) and subjects.
    #[arg(long, env = "MCPLATFORM_NATS_PREFIX", default_value = "mcpl")]
    pub nats_prefix: String,
}

/// The HTTP edges: where they listen, which hosts they serve, and the secret they sign with.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address the HTTP server listens on (port 0 picks a free one).
    #[arg(long, env = "MCPLATFORM_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Servers are served at `{slug}.{base domain}`.
    #[arg(long, env = "MCPLATFORM_BASE_DOMAIN", default_value = "localhost")]
    pub base_domain: String,

    /// Browser origins (comma-separated) that may call MCP servers besides each server's own,
    /// such as a web-based MCP inspector.
    #[arg(long, env = "MCPLATFORM_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Vec<String>,

    /// Host names (comma-separated) that MCP requests may name besides the base domain, its
    /// subdomains and loopback.
    #[arg(long, env = "MCPLATFORM_EXTRA_HOSTS", value_delimiter = ',')]
    pub extra_hosts: Vec<String>,

    /// Hours an invitation's link can be accepted (1 hour to a year).
    #[arg(
        long,
        env = "MCPLATFORM_INVITATION_TTL_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u32).range(1..=8760)
    )]
    pub invitation_ttl_hours: u32,

    /// Signing and encryption secret of at least 16 characters; when unset, one is generated
    /// for development and kept in `.mcplatform/secret`.
    #[arg(
        long,
        env = "MCPLATFORM_SECRET",
        hide_env_values = true,
        value_parser = PlatformSecret
    )]
    pub secret: Option<SecretString>,

    /// How long a client may take to send a request's headers, from the connection's start or
    /// the first byte of a later request (500ms, 10s, 2m).
    #[arg(long, env = "MCPLATFORM_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,

    /// How long a client may take to send a request's body, from the end of its headers.
    #[arg(long, env = "MCPLATFORM_BODY_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub body_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request with none under way; a
    /// response still being sent (event streams, MCP streams) is never cut.
    #[arg(long, env = "MCPLATFORM_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Most open connections from one client address; more are closed at once.
    #[arg(long, env = "MCPLATFORM_CONNECTIONS_PER_ADDRESS", default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub connections_per_address: u32,

    /// A separate address serving only `/metrics`, unauthenticated (keep it private).
    #[arg(long, env = "MCPLATFORM_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// A bearer token (at least 16 characters) that lets `/metrics` be scraped on the main
    /// address with `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "MCPLATFORM_METRICS_TOKEN",
        hide_env_values = true,
        value_parser = MetricsToken
    )]
    pub metrics_token: Option<SecretString>,

    #[command(flatten)]
    pub streams: StreamArgs,

    #[command(flatten)]
    pub outbound: OutboundArgs,
}

/// The one guard of every outbound fetch (client metadata documents, identity providers):
/// https only, no private, loopback, link-local or metadata address after resolution or on a
/// redirect, with size and time limits.
#[derive(Debug, Clone, Args)]
pub struct OutboundArgs {
    /// Networks (comma-separated CIDRs, such as `127.0.0.0/8`) exempt from the address rules
    /// and reachable over plain http, none by default.
    #[arg(long, env = "MCPLATFORM_OUTBOUND_ALLOW", default_value = "", value_parser = outbound_allow)]
    pub outbound_allow: OutboundAllow,

    /// Time to connect to an outbound address.
    #[arg(long, env = "MCPLATFORM_OUTBOUND_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub outbound_connect_timeout: Duration,

    /// Time for a whole outbound exchange, redirects and body included.
    #[arg(long, env = "MCPLATFORM_OUTBOUND_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub outbound_timeout: Duration,

    /// Largest outbound answer read, in bytes.
    #[arg(long, env = "MCPLATFORM_OUTBOUND_MAX_BYTES", default_value_t = 1024 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..))]
    pub outbound_max_bytes: u32,
}

/// The parsed allow list (a newtype so clap takes the whole list as one value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundAllow(pub Vec<ipnet::IpNet>);

fn outbound_allow(s: &str) -> Result<OutboundAllow, String> {
    commands::outbound::parse_allow(s).map(OutboundAllow)
}

impl OutboundArgs {
    /// The guard these settings describe, built once per process.
    pub fn guard(&self) -> anyhow::Result<commands::outbound::Outbound> {
        commands::outbound::Outbound::new(commands::outbound::OutboundConfig {
            allow: self.outbound_allow.0.clone(),
            connect_timeout: self.outbound_connect_timeout,
            timeout: self.outbound_timeout,
            max_body_bytes: usize::try_from(self.outbound_max_bytes).unwrap_or(usize::MAX),
            ..commands::outbound::OutboundConfig::default()
        })
        .context("building the outbound HTTP guard")
    }
}

/// Caps on open live event streams (`/api/v1/orgs/{org}/events/stream`); one more is refused
/// with 429 `too_many_streams`.
#[derive(Debug, Clone, Copy, Args)]
pub struct StreamArgs {
    /// Most live event streams one user may hold open on this instance.
    #[arg(long, env = "MCPLATFORM_STREAMS_PER_USER", default_value_t = 20)]
    pub streams_per_user: usize,

    /// Most live event streams open for one organization on this instance.
    #[arg(long, env = "MCPLATFORM_STREAMS_PER_ORG", default_value_t = 100)]
    pub streams_per_org: usize,

    /// Most live event streams open on this instance.
    #[arg(long, env = "MCPLATFORM_STREAMS_PER_INSTANCE", default_value_t = 2000)]
    pub streams_per_instance: usize,
}

impl StreamArgs {
    pub fn limits(&self) -> api::live::StreamLimits {
        api::live::StreamLimits {
            per_user: self.streams_per_user,
            per_org: self.streams_per_org,
            per_instance: self.streams_per_instance,
        }
    }
}

/// `up` and `serve`: a runtime with HTTP edges.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    // More connections than Postgres has cores to run them only adds backends that take turns
    // with cold caches: on 2 cores, 10 served walkthrough calls 7% faster than 32. The two
    // group committers, up to four walkthrough reads, the relay and each projector hold
    // connections of their own besides.
    /// Largest number of pooled Postgres connections for the HTTP edges' queries.
    #[arg(long, env = "MCPLATFORM_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Platform limits against abuse (0 turns one off). Rates are kept per process: N instances
/// allow up to N times a rate.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Support tickets one end user (an anonymous caller: one client address) opens per day.
    #[arg(long, env = "MCPLATFORM_LIMIT_TICKETS_PER_END_USER_PER_DAY", default_value_t = Limits::default().tickets_per_end_user_per_day)]
    pub limit_tickets_per_end_user_per_day: u32,

    /// New end users (new tracking ids) one server sees per hour.
    #[arg(long, env = "MCPLATFORM_LIMIT_NEW_END_USERS_PER_SERVER_PER_HOUR", default_value_t = Limits::default().new_end_users_per_server_per_hour)]
    pub limit_new_end_users_per_server_per_hour: u32,

    /// New end users (new tracking ids) one client address brings per hour.
    #[arg(long, env = "MCPLATFORM_LIMIT_NEW_END_USERS_PER_ADDRESS_PER_HOUR", default_value_t = Limits::default().new_end_users_per_address_per_hour)]
    pub limit_new_end_users_per_address_per_hour: u32,

    /// Open protocol sessions per end user (active in the last hour, not ended).
    #[arg(long, env = "MCPLATFORM_LIMIT_SESSIONS_PER_END_USER", default_value_t = Limits::default().sessions_per_end_user)]
    pub limit_sessions_per_end_user: u32,

    /// Orgs one account owns.
    #[arg(long, env = "MCPLATFORM_LIMIT_ORGS_PER_ACCOUNT", default_value_t = Limits::default().orgs_per_account)]
    pub limit_orgs_per_account: u32,

    /// Signups from one client address per hour.
    #[arg(long, env = "MCPLATFORM_LIMIT_SIGNUPS_PER_ADDRESS_PER_HOUR", default_value_t = Limits::default().signups_per_address_per_hour)]
    pub limit_signups_per_address_per_hour: u32,

    /// Login attempts from one client address per minute, whatever the account.
    #[arg(long, env = "MCPLATFORM_LIMIT_LOGINS_PER_ADDRESS_PER_MINUTE", default_value_t = Limits::default().logins_per_address_per_minute)]
    pub limit_logins_per_address_per_minute: u32,

    /// Login attempts for one account from one client address per minute.
    #[arg(long, env = "MCPLATFORM_LIMIT_LOGINS_PER_ACCOUNT_AND_ADDRESS_PER_MINUTE", default_value_t = Limits::default().logins_per_account_and_address_per_minute)]
    pub limit_logins_per_account_and_address_per_minute: u32,

    /// Dynamic client registrations (RFC 7591) from one client address per hour.
    #[arg(long, env = "MCPLATFORM_LIMIT_CLIENT_REGISTRATIONS_PER_ADDRESS_PER_HOUR", default_value_t = Limits::default().client_registrations_per_address_per_hour)]
    pub limit_client_registrations_per_address_per_hour: u32,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            tickets_per_end_user_per_day: self.limit_tickets_per_end_user_per_day,
            new_end_users_per_server_per_hour: self.limit_new_end_users_per_server_per_hour,
            new_end_users_per_address_per_hour: self.limit_new_end_users_per_address_per_hour,
            sessions_per_end_user: self.limit_sessions_per_end_user,
            orgs_per_account: self.limit_orgs_per_account,
            signups_per_address_per_hour: self.limit_signups_per_address_per_hour,
            logins_per_address_per_minute: self.limit_logins_per_address_per_minute,
            logins_per_account_and_address_per_minute: self
                .limit_logins_per_account_and_address_per_minute,
            client_registrations_per_address_per_hour: self
                .limit_client_registrations_per_address_per_hour,
        }
    }
}

/// `healthcheck`: where the local server listens.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Address the server listens on; an unspecified one (0.0.0.0) is asked on loopback.
    #[arg(long, env = "MCPLATFORM_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
}

impl HealthcheckArgs {
    /// The address to ask: a server bound to every interface is reached on loopback.
    pub fn target(&self) -> SocketAddr {
        let ip = match self.bind.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.bind.port())
    }
}

impl HttpArgs {
    /// The secret, or the development one from `.mcplatform/secret` (created on first use).
    pub fn secret_or_dev(&self) -> anyhow::Result<SecretString> {
        if let Some(secret) = &self.secret {
            return Ok(secret.clone());
        }
        let path = Path::new(".mcplatform/secret");
        if let Ok(existing) = std::fs::read_to_string(path) {
            let existing = SecretString::from(existing.trim());
            if existing.expose_secret().len() >= SECRET_MIN_LEN {
                tracing::warn!("MCPLATFORM_SECRET is not set: using the development secret in .mcplatform/secret");
                return Ok(existing);
            }
        }
        let fresh = SecretString::from(api::auth::tokens::random_secret());
        std::fs::create_dir_all(".mcplatform").context("creating .mcplatform/")?;
        std::fs::write(path, fresh.expose_secret()).context("writing .mcplatform/secret")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        tracing::warn!("MCPLATFORM_SECRET is not set: generated a development secret in .mcplatform/secret; set MCPLATFORM_SECRET in production");
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn secrets_never_print_in_debug() {
        let probe = Probe::parse_from([
            "probe",
            "--database-url",
            "postgres://app:db-password-123@db/mcplatform",
            "--nats-url",
            "nats://user:nats-password-456@nats:4222",
            "--secret",
            "platform-secret-0123456789",
        ]);
        let printed = format!("{probe:?}");
        for secret in [
            "db-password-123",
            "nats-password-456",
            "platform-secret-0123456789",
        ] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        assert_eq!(
            probe.serve.http.secret.as_ref().map(|s| s.expose_secret()),
            Some("platform-secret-0123456789")
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        let refused = Probe::try_parse_from(["probe", "--secret", "short"]);
        assert!(refused.is_err());
    }

    #[test]
    fn a_refused_secret_is_not_printed() {
        let refused = Probe::try_parse_from(["probe", "--secret", "shortsecret12"])
            .unwrap_err()
            .to_string();
        assert!(!refused.contains("shortsecret12"), "{refused}");
        assert!(refused.contains("at least 16 characters"), "{refused}");
    }

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        for refused in ["0", "0s", "", "s", "10h", "-1s", "1.5s"] {
            assert!(duration(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_metrics_token_is_long_and_never_printed() {
        let refused = Probe::try_parse_from(["probe", "--metrics-token", "short-token"])
            .unwrap_err()
            .to_string();
        assert!(!refused.contains("short-token"), "{refused}");
        let probe = Probe::parse_from(["probe", "--metrics-token", "metrics-token-0123456789"]);
        assert!(!format!("{probe:?}").contains("metrics-token-0123456789"));
    }

    #[test]
    fn the_outbound_allow_list_is_empty_by_default_and_parsed() {
        let probe = Probe::parse_from(["probe"]);
        assert_eq!(
            probe.serve.http.outbound.outbound_allow,
            OutboundAllow::default()
        );
        let probe = Probe::parse_from(["probe", "--outbound-allow", "127.0.0.0/8,::1/128"]);
        assert_eq!(probe.serve.http.outbound.outbound_allow.0.len(), 2);
        assert!(Probe::try_parse_from(["probe", "--outbound-allow", "10.0.0.0/99"]).is_err());
    }

    #[test]
    fn a_healthcheck_of_every_interface_asks_loopback() {
        let args = HealthcheckArgs {
            bind: "0.0.0.0:8080".parse().unwrap(),
        };
        assert_eq!(args.target(), "127.0.0.1:8080".parse().unwrap());
        let args = HealthcheckArgs {
            bind: "[::]:9000".parse().unwrap(),
        };
        assert_eq!(args.target(), "[::1]:9000".parse().unwrap());
    }
}
