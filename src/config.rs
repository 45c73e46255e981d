//! Configuration: flags with environment fallbacks (ARCHITECTURE.md, Configuration and CLI).

use anyhow::Context;
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < 16 {
            return Err("must be at least 16 characters".to_owned());
        }
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Postgres connection URL; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/mcplatform"
    )]
    pub database_url: String,

    /// NATS server with JetStream.
    #[arg(
        long,
        env = "NATS_URL",
        global = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// Address the HTTP server listens on (port 0 picks a free one).
    #[arg(
        long,
        env = "MCPLATFORM_BIND",
        global = true,
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,

    /// Servers are served at `{slug}.{base domain}`.
    #[arg(
        long,
        env = "MCPLATFORM_BASE_DOMAIN",
        global = true,
        default_value = "localhost"
    )]
    pub base_domain: String,

    /// Browser origins allowed to call MCP servers besides each server's own (comma-separated,
    /// for example a web-based MCP inspector). Clients that send no Origin are not affected.
    #[arg(
        long,
        env = "MCPLATFORM_MCP_ALLOWED_ORIGINS",
        global = true,
        value_delimiter = ','
    )]
    pub mcp_allowed_origins: Vec<String>,

    /// Further host names (besides the base domain, its subdomains and loopback) that MCP
    /// requests may name, comma-separated.
    #[arg(
        long,
        env = "MCPLATFORM_EXTRA_HOSTS",
        global = true,
        value_delimiter = ','
    )]
    pub extra_hosts: Vec<String>,

    /// Names this deployment's JetStream stream (`{PREFIX}_EVENTS`) and subjects.
    #[arg(
        long,
        env = "MCPLATFORM_NATS_PREFIX",
        global = true,
        default_value = "mcpl"
    )]
    pub nats_prefix: String,

    /// Signing and encryption secret (at least 16 characters). In development it is generated
    /// and kept in `.mcplatform/secret`.
    #[arg(long, env = "MCPLATFORM_SECRET", global = true, hide_env_values = true)]
    pub secret: Option<Secret>,

    /// Largest number of pooled Postgres connections, for the edges' queries (the two group
    /// committers, up to four walkthrough reads, the relay and each projector hold connections
    /// of their own besides). Many more than Postgres has cores to run them only adds backends
    /// that take turns with cold caches: on 2 cores, 10 served walkthrough calls 7% faster
    /// than 32.
    #[arg(long, env = "MCPLATFORM_DB_POOL", global = true, default_value_t = 16)]
    pub db_pool: u32,

    /// Log format: text or json.
    #[arg(
        long,
        env = "MCPLATFORM_LOG_FORMAT",
        global = true,
        default_value = "text"
    )]
    pub log_format: String,
}

impl Config {
    /// The secret, or the development one from `.mcplatform/secret` (created on first use).
    pub fn secret_or_dev(&self) -> anyhow::Result<Secret> {
        if let Some(secret) = &self.secret {
            return Ok(secret.clone());
        }
        let path = Path::new(".mcplatform/secret");
        if let Ok(existing) = std::fs::read_to_string(path) {
            let existing = existing.trim().to_owned();
            if existing.len() >= 16 {
                tracing::warn!("MCPLATFORM_SECRET is not set: using the development secret in .mcplatform/secret");
                return Ok(Secret(existing));
            }
        }
        let fresh = api::auth::tokens::random_secret();
        std::fs::create_dir_all(".mcplatform").context("creating .mcplatform/")?;
        std::fs::write(path, &fresh).context("writing .mcplatform/secret")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        tracing::warn!("MCPLATFORM_SECRET is not set: generated a development secret in .mcplatform/secret; set MCPLATFORM_SECRET in production");
        Ok(Secret(fresh))
    }
}
