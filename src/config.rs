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
use secrecy::{ExposeSecret, SecretString};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// A URL that may carry credentials (`postgres://user:password@host/db`).
fn secret_url(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
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
