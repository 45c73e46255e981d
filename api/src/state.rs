//! Shared state of the REST edge.

use crate::auth::passwords::ArgonGate;
use crate::auth::rate_limit::LoginLimiter;
use crate::auth::tokens::TokenKeys;
use eventstore::nats::Topology;
use eventstore::{Cursor, EventStore};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `{slug}.{base_domain}` hosts the servers.
    pub base_domain: String,
    /// The port the process listens on, used in the URLs shown to users.
    pub public_port: u16,
    /// How long a write waits for its read models before answering anyway.
    pub consistency_wait: Duration,
    /// Lets `/metrics` be scraped on the main address; without it the route answers 404.
    pub metrics_token: Option<crate::metrics::ScrapeToken>,
    /// How long an invitation's token can be accepted.
    pub invitation_ttl: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub pool: PgPool,
    pub nats: Option<async_nats::Client>,
    pub topology: Topology,
    pub tokens: Arc<TokenKeys>,
    pub limiter: Arc<LoginLimiter>,
    /// Bounds argon2 work per process and per client address.
    pub argon: Arc<ArgonGate>,
    /// The platform limits and this process's rate budgets (`commands::limits`).
    pub guard: Arc<commands::limits::Guard>,
    /// The live event streams' hub and caps.
    pub live: crate::live::LiveHub,
    pub config: Arc<ApiConfig>,
    /// Seals servers' tracking secrets at rest (key derived from the platform secret).
    pub tracking_seal: commands::tracking::TrackingSeal,
    /// The one guard of every outbound fetch (`commands::outbound`).
    pub outbound: commands::outbound::Outbound,
    /// Seals identity providers' client secrets at rest (`commands::sealing`).
    pub provider_seal: commands::sealing::Seal,
}

impl AppState {
    /// Read-your-writes: wait until the read models reading `aggregate_type` include `cursor`.
    /// Skipped when NATS is disconnected (they cannot catch up until it is back). Returns
    /// whether the read models include the write, so a handler knows whether to answer from
    /// them or from the write model.
    pub async fn settle(&self, aggregate_type: &str, cursor: Option<Cursor>) -> bool {
        let Some(cursor) = cursor else { return true };
        // Still connecting (just started) counts as up: the projectors are about to run.
        let reachable = self
            .nats
            .as_ref()
            .is_some_and(|n| n.connection_state() != async_nats::connection::State::Disconnected);
        if !reachable {
            return false;
        }
        let caught_up = projections::wait::until_projected(
            &self.pool,
            aggregate_type,
            cursor,
            self.config.consistency_wait,
        )
        .await;
        if !caught_up {
            tracing::debug!(%cursor, aggregate_type, "read models still catching up");
        }
        caught_up
    }

    /// The scheme, and the port as a URL shows it, of the URLs shown to users: a `localhost`
    /// base domain is served over plain HTTP on the listening port, any other over HTTPS.
    fn scheme_and_port(&self) -> (&'static str, String) {
        let base = &self.config.base_domain;
        let local = matches!(base.as_str(), "localhost") || base.ends_with(".localhost");
        if local {
            ("http", format!(":{}", self.config.public_port))
        } else {
            ("https", String::new())
        }
    }

    /// The public URL of a path of the platform's API (`/api/v1/...`), on the base domain.
    pub fn api_url(&self, path: &str) -> String {
        let (scheme, port_part) = self.scheme_and_port();
        format!("{scheme}://{}{port_part}{path}", self.config.base_domain)
    }

    /// The MCP URLs of a server.
    pub fn server_urls(&self, slug: &str) -> ServerUrls {
        let base = &self.config.base_domain;
        let (scheme, port_part) = self.scheme_and_port();
        ServerUrls {
            mcp_path: format!("{scheme}://{base}{port_part}/s/{slug}/mcp"),
            mcp_path_with_tracking: format!(
                "{scheme}://{base}{port_part}/s/{slug}/t/{{tracking_id}}/mcp"
            ),
            mcp: format!("{scheme}://{slug}.{base}{port_part}/mcp"),
            mcp_with_tracking: format!("{scheme}://{slug}.{base}{port_part}/t/{{tracking_id}}/mcp"),
        }
    }
}

/// The URLs MCP clients reach a server at, the path forms first: they work with every client.
/// The subdomain forms (`{slug}.{base domain}`) are for production hosts with wildcard DNS and
/// for browsers; on a `*.localhost` base domain, the Python MCP SDK and some resolvers cannot
/// reach them. In the `_with_tracking` forms, replace `{tracking_id}` with the end user's
/// tracking id: their tool calls, sessions and walkthrough progress are then theirs.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServerUrls {
    /// Path form (`{base domain}/s/{slug}/mcp`): works with every client.
    pub mcp_path: String,
    /// Path form for one end user.
    pub mcp_path_with_tracking: String,
    /// Subdomain form (`{slug}.{base domain}/mcp`): for production hosts and browsers.
    pub mcp: String,
    /// Subdomain form for one end user.
    pub mcp_with_tracking: String,
}
