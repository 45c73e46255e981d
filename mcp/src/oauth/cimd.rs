//! Client ID Metadata Documents (MCP authorization 2025-11-25; draft-ietf-oauth-client-id-
//! metadata-document): a client whose id is an https URL publishes its metadata there. The
//! document is fetched through the one outbound guard (https only, no private, loopback,
//! link-local or metadata address after resolution; networks in `MCPLATFORM_OUTBOUND_ALLOW`
//! excepted, which tests use), never through a redirect, answered 200 only, capped in size and
//! time, and must name its own URL as `client_id` and a `client_name`. It is cached as HTTP
//! caching says (`max-age`, `no-store`); a copy past its freshness is still served when the
//! origin cannot answer (a connection failure, a timeout, a 5xx), but not when it answers that
//! the document is gone or broken.

use super::redirects;
use commands::errors::{OauthErrorCode, OauthFailure};
use commands::outbound::{Options, Outbound, OutboundError};
use moka::future::Cache;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Longest a fetch may take, every redirect included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Freshness when the answer says nothing, and the most any answer is trusted.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a stale copy is kept to fall back on.
const KEEP_STALE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_CACHED: u64 = 10_000;

/// What the authorization server reads of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientDocument {
    pub client_id: String,
    pub client_name: Option<String>,
    /// The redirect URIs policy accepts (each judged on its own).
    pub redirect_uris: Vec<String>,
    pub refused_redirect_uris: Vec<String>,
}

#[derive(Clone)]
struct Cached {
    document: Arc<ClientDocument>,
    fresh_until: Instant,
}

/// URL → its document, per instance. Clones share the cache.
#[derive(Clone)]
pub struct Documents {
    entries: Cache<String, Cached>,
}

impl Default for Documents {
    fn default() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(KEEP_STALE)
                .build(),
        }
    }
}

/// Whether a client id is a URL (a metadata document) rather than a registration of ours.
pub fn is_document_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

fn refused(description: impl Into<String>) -> OauthFailure {
    OauthFailure::new(OauthErrorCode::InvalidClient, description)
}

/// The freshness an answer's `Cache-Control` gives: `None` for `no-store` (not kept at all).
fn freshness(cache_control: Option<&str>) -> Option<Duration> {
    let Some(value) = cache_control else {
        return Some(DEFAULT_MAX_AGE);
    };
    let mut max_age = DEFAULT_MAX_AGE;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" {
            return None;
        }
        if directive == "no-cache" {
            max_age = Duration::ZERO;
        } else if let Some(secs) = directive.strip_prefix("max-age=") {
            if let Ok(secs) = secs.trim_matches('"').parse::<u64>() {
                max_age = Duration::from_secs(secs);
            }
        }
    }
    Some(max_age.min(MAX_MAX_AGE))
}

#[derive(Deserialize)]
struct Raw {
    client_id: String,
    /// Required by MCP authorization ("MUST include at least client_id, client_name,
    /// redirect_uris").
    client_name: String,
    #[serde(default)]
    redirect_uris: Vec<serde_json::Value>,
    token_endpoint_auth_method: Option<String>,
}

/// Checks a fetched document against the URL it came from.
fn read(url: &str, body: &[u8]) -> Result<ClientDocument, OauthFailure> {
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| refused(format!("the client metadata document is not valid: {e}")))?;
    if raw.client_id != url {
        return Err(refused(
            "the client metadata document's client_id differs from the URL it was fetched from",
        ));
    }
    if raw
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(refused(
            "this authorization server takes public clients only (token_endpoint_auth_method \
             none)",
        ));
    }
    let mut accepted = vec![];
    let mut refused_uris = vec![];
    for uri in raw.redirect_uris {
        match uri.as_str() {
            Some(uri) if redirects::judge(uri).is_ok() => accepted.push(uri.to_owned()),
            _ => refused_uris.push(uri.to_string().chars().take(2048).collect()),
        }
    }
    if accepted.is_empty() {
        return Err(refused(
            "none of the client metadata document's redirect URIs is acceptable",
        ));
    }
    let client_name: String = raw
        .client_name
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if client_name.trim().is_empty() {
        return Err(refused(
            "the client metadata document's client_name is empty",
        ));
    }
    Ok(ClientDocument {
        client_id: raw.client_id,
        client_name: Some(client_name),
        redirect_uris: accepted,
        refused_redirect_uris: refused_uris,
    })
}

impl Documents {
    /// The document a URL client id names: fresh from the cache, else fetched; when a refetch
    /// fails, the stale copy if there is one. The `bool` says whether it was fetched now.
    pub async fn resolve(
        &self,
        outbound: &Outbound,
        client_id: &str,
    ) -> Result<(Arc<ClientDocument>, bool), OauthFailure> {
        let url =
            url::Url::parse(client_id).map_err(|_| refused("the client id is not a valid URL"))?;
        if url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() == "/"
            || url.as_str() != client_id
        {
            return Err(refused(
                "a client id URL has a path, no fragment and no credentials, in normal form",
            ));
        }
        outbound
            .check_url(&url)
            .map_err(|e| refused(format!("the client id URL is not allowed: {e}")))?;
        let cached = self.entries.get(client_id).await;
        if let Some(cached) = &cached {
            if Instant::now() < cached.fresh_until {
                return Ok((cached.document.clone(), false));
            }
        }
        match self.fetch(outbound, client_id).await {
            Ok((document, max_age)) => {
                let document = Arc::new(document);
                match max_age {
                    Some(max_age) => {
                        self.entries
                            .insert(
                                client_id.to_owned(),
                                Cached {
                                    document: document.clone(),
                                    fresh_until: Instant::now() + max_age,
                                },
                            )
                            .await
                    }
                    None => self.entries.invalidate(client_id).await,
                }
                Ok((document, true))
            }
            // A copy goes stale-if-error only when the origin could not answer; an answer that
            // withdraws or breaks the document is the owner's word and is followed.
            Err(Fetch::Transient(failure)) => match cached {
                Some(stale) => {
                    tracing::warn!(client_id, error = %failure, "client metadata document refetch failed; serving the stale copy");
                    Ok((stale.document, false))
                }
                None => Err(failure),
            },
            Err(Fetch::Final(failure)) => {
                self.entries.invalidate(client_id).await;
                Err(failure)
            }
        }
    }

    async fn fetch(
        &self,
        outbound: &Outbound,
        url: &str,
    ) -> Result<(ClientDocument, Option<Duration>), Fetch> {
        let request = axum::http::Request::get(url)
            .header(axum::http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| Fetch::Final(refused("the client id is not a valid URL")))?;
        // The document is fetched from its own URL, never through a redirect (CIMD §3).
        let options = Options {
            follow_redirects: false,
            max_body_bytes: Some(MAX_DOCUMENT_BYTES),
        };
        let response = tokio::time::timeout(FETCH_TIMEOUT, outbound.send(request, options))
            .await
            .map_err(|_| {
                Fetch::Transient(refused(format!(
                    "the client metadata document did not arrive within {FETCH_TIMEOUT:?}"
                )))
            })?
            .map_err(|e| {
                let failure = refused(format!(
                    "the client metadata document could not be fetched: {e}"
                ));
                match e {
                    OutboundError::Connect(_)
                    | OutboundError::Timeout(_)
                    | OutboundError::Transport(_)
                    | OutboundError::Unresolvable(_) => Fetch::Transient(failure),
                    _ => Fetch::Final(failure),
                }
            })?;
        let status = response.status();
        if status != axum::http::StatusCode::OK {
            let failure = refused(format!(
                "the client metadata document's URL answered HTTP {} (only 200 is taken, \
                 redirects are not followed)",
                status.as_u16()
            ));
            return Err(if status.is_server_error() {
                Fetch::Transient(failure)
            } else {
                Fetch::Final(failure)
            });
        }
        let max_age = freshness(
            response
                .headers()
                .get(axum::http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        Ok((read(url, response.body()).map_err(Fetch::Final)?, max_age))
    }
}

/// Why a fetch failed: the origin could not answer (a stale copy may stand in), or it answered
/// and the answer is not a document (nothing stands in).
enum Fetch {
    Transient(OauthFailure),
    Final(OauthFailure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_follows_cache_control() {
        assert_eq!(freshness(None), Some(DEFAULT_MAX_AGE));
        assert_eq!(freshness(Some("max-age=60")), Some(Duration::from_secs(60)));
        assert_eq!(freshness(Some("public, no-cache")), Some(Duration::ZERO));
        assert_eq!(freshness(Some("no-store")), None);
        assert_eq!(freshness(Some("max-age=999999999")), Some(MAX_MAX_AGE));
    }

    #[test]
    fn a_document_must_name_its_own_url() {
        let url = "https://app.example/client.json";
        let doc = |id: &str| {
            serde_json::json!({
                "client_id": id,
                "client_name": "App",
                "redirect_uris": ["http://127.0.0.1/cb", "http://evil.example/cb"],
            })
            .to_string()
        };
        let read_ok = read(url, doc(url).as_bytes());
        assert!(read_ok.is_ok());
        let document = read_ok.unwrap_or_else(|_| unreachable!());
        assert_eq!(document.redirect_uris, ["http://127.0.0.1/cb"]);
        assert_eq!(document.refused_redirect_uris.len(), 1);
        assert!(read(url, doc("https://app.example/other.json").as_bytes()).is_err());
        assert!(read(url, b"not json").is_err());
    }
}
