//! Which hosted server a request is for: `{slug}.{base}` in the Host header, or `/s/{slug}/…`
//! in the path. Servers are read from the write model (slug index + server stream), so a server
//! answers the moment it is created (an unknown slug is never cached), and a found one is
//! cached briefly so the hot path does no look-up.
//!
//! A cached server may be stale (archived, its slug since taken by another org's server):
//! everything the edge commits for it requires the slug to still name it (see
//! `RequestScope::store`), so a stale entry can answer reads for at most [`TENANT_TTL`] but
//! never file anything under the wrong org.

use commands::tracking::{TrackingKey, TrackingSeal};
use domain::server::Server;
use domain::values::AuthMode;
use eventstore::{index, EventStore, StoreError};
use moka::future::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A hosted server as the MCP edge needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub server_id: Uuid,
    pub org_id: Uuid,
    pub slug: String,
    pub name: String,
    pub auth_mode: AuthMode,
    pub support_tool: bool,
    pub walkthrough_tools: bool,
    pub conformance_fixtures: bool,
    /// Tracking ids must be signed with one of `tracking_keys`.
    pub require_signed_tracking: bool,
    /// The server's active tracking secrets, opened (a revoked one is gone at the next load).
    pub tracking_keys: Vec<TrackingKey>,
    /// The org's identity provider end users sign in with (`oauth` mode).
    pub identity_provider_id: Option<Uuid>,
}

/// How long a resolved server is trusted, counted from when its look-up began (so a load that
/// raced a write is not trusted longer). A configuration change, or an archive, reaches
/// running clients within this time of its commit; one made through this process at once.
/// It keeps the per-call cost of tenant resolution at a map read.
pub const TENANT_TTL: Duration = Duration::from_secs(1);

/// Bound on cached slugs.
const MAX_CACHED: u64 = 10_000;

/// A resolved server and what its look-up saw.
#[derive(Clone)]
struct Resolved {
    tenant: Arc<Tenant>,
    /// When the look-up began: nothing committed after it is reflected.
    read_at: Instant,
    /// The cache's generation when the look-up began (see [`TenantCache::invalidate_all`]).
    generation: u64,
}

/// Why a look-up cached nothing: no active server has the slug (a miss is never cached, so
/// a server answers the moment it is created), or the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    #[error("no active server has this slug")]
    Unknown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Slug → the active server with it, briefly cached. Concurrent look-ups of one slug share one
/// load. Clones share the cache.
#[derive(Clone)]
pub struct TenantCache {
    entries: Cache<String, Resolved>,
    generation: Arc<AtomicU64>,
    /// Opens the servers' tracking secrets.
    seal: TrackingSeal,
}

impl TenantCache {
    pub fn new(seal: TrackingSeal) -> Self {
        Self {
            seal,
            entries: Cache::builder()
                .max_capacity(MAX_CACHED)
                // Only a bound on memory: an entry is trusted for `TENANT_TTL` from its read.
                .time_to_live(TENANT_TTL)
                .build(),
            generation: Arc::default(),
        }
    }

    /// The active server with this slug, if any (archived servers have released their slug).
    pub async fn resolve(
        &self,
        store: &EventStore,
        slug: &str,
    ) -> Result<Option<Arc<Tenant>>, Arc<Miss>> {
        // An entry read before an invalidation, or longer ago than the TTL, is dropped and the
        // slug looked up again; should that look-up be overtaken too (another invalidation
        // while it ran), the slug is read without the cache.
        for _ in 0..2 {
            let resolved = self
                .entries
                .try_get_with_by_ref(slug, async {
                    let read_at = Instant::now();
                    let generation = self.generation.load(Ordering::Acquire);
                    match load(store, &self.seal, slug).await? {
                        Some(tenant) => Ok(Resolved {
                            tenant: Arc::new(tenant),
                            read_at,
                            generation,
                        }),
                        None => Err(Miss::Unknown),
                    }
                })
                .await;
            let resolved = match resolved {
                Ok(resolved) => resolved,
                Err(miss) if matches!(*miss, Miss::Unknown) => return Ok(None),
                Err(miss) => return Err(miss),
            };
            if self.trusted(&resolved) {
                return Ok(Some(resolved.tenant));
            }
            self.entries.invalidate(slug).await;
        }
        let tenant = load(store, &self.seal, slug)
            .await
            .map_err(|e| Arc::new(Miss::from(e)))?;
        Ok(tenant.map(Arc::new))
    }

    fn trusted(&self, resolved: &Resolved) -> bool {
        resolved.read_at.elapsed() < TENANT_TTL
            && resolved.generation == self.generation.load(Ordering::Acquire)
    }

    /// Forgets one slug (a commit for its server was refused: the slug names another now).
    pub async fn forget(&self, slug: &str) {
        self.entries.invalidate(slug).await;
    }

    /// Forgets every server, including any whose look-up is under way (a server was changed
    /// through this process).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }
}

async fn load(
    store: &EventStore,
    seal: &TrackingSeal,
    slug: &str,
) -> Result<Option<Tenant>, StoreError> {
    let Some(server_id) =
        index::owner_of(store.pool(), eventstore::KeyKind::ServerSlug, slug).await?
    else {
        return Ok(None);
    };
    let (server, _) = store.load::<Server>(&server_id.to_string()).await?;
    let (Some(org_id), Some(config)) = (server.org_id, server.config) else {
        return Ok(None);
    };
    if server.archived {
        return Ok(None);
    }
    let tracking_keys = commands::services::servers::tracking_keys(
        store,
        seal,
        server_id,
        &server.tracking_secrets,
    )
    .await?;
    Ok(Some(Tenant {
        server_id,
        org_id,
        slug: config.slug.as_str().to_owned(),
        name: config.name.as_str().to_owned(),
        auth_mode: config.auth_mode,
        support_tool: config.support_tool,
        walkthrough_tools: config.walkthrough_tools,
        conformance_fixtures: config.conformance_fixtures,
        require_signed_tracking: config.require_signed_tracking,
        tracking_keys,
        identity_provider_id: config.identity_provider_id,
    }))
}

/// The host part of a `Host` header value, lowercased, without port or IPv6 brackets.
pub fn host_name(host_header: &str) -> String {
    let host = host_header.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The slug a host names: `acme.localhost` → `acme` when the base domain is `localhost`.
/// Only one label below the base counts; anything else names no server.
pub fn slug_from_host<'a>(host: &'a str, base_domain: &str) -> Option<&'a str> {
    let label = host.strip_suffix(base_domain)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then_some(label)
}

/// Whether a host is one of ours: the base domain, a subdomain of it, or loopback. Requests
/// naming any other host are refused, which is what defeats DNS rebinding: a browser page on
/// `evil.example` that resolves to this machine still sends `Host: evil.example`.
pub fn is_platform_host(host: &str, base_domain: &str, extra_hosts: &[String]) -> bool {
    host == base_domain
        || slug_from_host(host, base_domain).is_some()
        || matches!(host, "localhost" | "127.0.0.1" | "::1")
        || host.ends_with(".localhost") && base_domain == "localhost"
        || extra_hosts.iter().any(|h| h == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized_and_slugs_found_one_label_below_the_base() {
        assert_eq!(host_name("Acme.Localhost:8080"), "acme.localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(slug_from_host("acme.localhost", "localhost"), Some("acme"));
        assert_eq!(slug_from_host("a.b.localhost", "localhost"), None);
        assert_eq!(slug_from_host("localhost", "localhost"), None);
        assert_eq!(
            slug_from_host("acme.mcp.example.com", "mcp.example.com"),
            Some("acme")
        );
        assert_eq!(
            slug_from_host("acmemcp.example.com", "mcp.example.com"),
            None
        );
    }

    #[test]
    fn only_our_hosts_are_accepted() {
        let none: Vec<String> = vec![];
        assert!(is_platform_host("acme.localhost", "localhost", &none));
        assert!(is_platform_host("127.0.0.1", "mcp.example.com", &none));
        assert!(is_platform_host(
            "acme.mcp.example.com",
            "mcp.example.com",
            &none
        ));
        assert!(!is_platform_host("evil.example", "mcp.example.com", &none));
        assert!(is_platform_host(
            "evil.example",
            "x",
            &["evil.example".to_owned()]
        ));
    }
}
