//! The one guard every outbound fetch goes through: Client ID Metadata Documents, identity
//! providers' discovery, token and userinfo calls, and later upstreams, webhooks and URL
//! imports. A URL a tenant or an end user hands us must not reach into the platform's own
//! network (SSRF), so:
//!
//! - only `https` is spoken, except to networks listed in `MCPLATFORM_OUTBOUND_ALLOW`
//!   (comma-separated CIDRs, empty by default), which are exempt from the address rules and
//!   may use plain `http` (tests list `127.0.0.0/8`);
//! - private, loopback, link-local, unspecified, multicast, CGNAT, ULA and other reserved
//!   addresses (and their IPv4-mapped, IPv4-compatible, 6to4 and NAT64 IPv6 forms) are refused
//!   after DNS resolution, by the resolver the connector uses, so the address checked is the
//!   address connected to (no rebinding between the two); an IP-literal URL, which skips the
//!   resolver, is checked before the request; cloud metadata addresses are refused even when
//!   an allowed network contains them;
//! - redirects are followed by hand, each hop checked again, up to a limit;
//! - the answer's body is streamed and cut at a size cap, and the whole exchange (every hop,
//!   the body included) has a deadline besides the connect timeout.
//!
//! The transport is hyper-util's pooled client with rustls on the `ring` provider (already in
//! the tree for NATS) and Mozilla's roots (`webpki-roots`): the TLS of this client is its own,
//! so no process-wide crypto provider is needed.
//!
//! `OAuthHttp` makes the guard the HTTP client of the `oauth2` and `openidconnect` crates, so
//! token exchanges, discovery and JWKS fetches pass it too.

use bytes::Bytes;
use http::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, LOCATION, USER_AGENT,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use url::{Host, Url};

/// Why an outbound fetch was refused or failed. Callers map these to their own errors (an
/// OAuth `invalid_client_metadata`, a provider error, a problem); the text is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("not a valid absolute http(s) URL")]
    BadUrl,
    #[error("the scheme `{0}` is not allowed: only https (plain http only to allowed networks)")]
    BadScheme(String),
    #[error("{0} is a private, loopback, link-local, metadata or otherwise reserved address")]
    RefusedAddress(IpAddr),
    #[error("the host `{0}` does not resolve")]
    Unresolvable(String),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("a redirect without a valid Location")]
    BadRedirect,
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("the answer is not the JSON expected: {0}")]
    BadJson(String),
    #[error("HTTP error: {0}")]
    Transport(String),
}

/// The guard's settings: built once from the configuration (`MCPLATFORM_OUTBOUND_*`).
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Networks exempt from the address rules, which may also be reached over plain http.
    pub allow: Vec<IpNet>,
    /// Time to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange: every redirect hop and the body.
    pub timeout: Duration,
    /// Largest body read; a longer one is refused.
    pub max_body_bytes: usize,
    /// Most redirects followed.
    pub max_redirects: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_redirects: 5,
        }
    }
}

/// Parses `MCPLATFORM_OUTBOUND_ALLOW`: comma-separated CIDRs (`127.0.0.0/8`, `fd12::/16`) or
/// bare addresses; blanks are skipped.
pub fn parse_allow(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{item}` is not a CIDR network or an IP address"))
        })
        .collect()
}

/// Per-request choices; `Options::default()` takes the guard's settings and follows redirects.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub follow_redirects: bool,
    /// A smaller cap than the guard's for this request (a CIMD document: a few KB).
    pub max_body_bytes: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            follow_redirects: true,
            max_body_bytes: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Address rules

/// Addresses of cloud instance metadata services: refused even inside an allowed network.
const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // Azure's wire server.
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    // Alibaba Cloud.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // AWS over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Whether `ip` is a cloud metadata address (in any of its IPv6 disguises).
pub fn is_metadata(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    METADATA.contains(&ip) || embedded_v4(ip).is_some_and(|v4| METADATA.contains(&IpAddr::V4(v4)))
}

/// Whether `ip` is not a public unicast address: what the guard refuses outside the allowed
/// networks.
pub fn is_reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_reserved(v4),
        IpAddr::V6(v6) => v6_reserved(v6),
    }
}

fn v4_reserved(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: metadata services live here
        || ip.is_multicast()
        || ip.is_documentation()
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || a >= 240 // reserved, broadcast included
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0; 6] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

fn v6_reserved(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reserved(v4);
    }
    let s = ip.segments();
    // `::`, `::1` and the deprecated IPv4-compatible form, whatever it embeds.
    if s[..6] == [0; 6] {
        return true;
    }
    if let Some(v4) = embedded_v4(IpAddr::V6(ip)) {
        if v4_reserved(v4) {
            return true;
        }
    }
    ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (fd00:ec2::254 is here)
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to anywhere
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (s[0] == 0x100 && s[1..4] == [0; 3]) // discard-only 100::/64
}

/// The address rules with the allowed networks: what an address may be connected to.
#[derive(Debug)]
struct Rules {
    allow: Vec<IpNet>,
}

impl Rules {
    fn allowed(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// Whether `ip` may be connected to, over plain http when `plain` is set.
    fn check(&self, ip: IpAddr, plain: bool) -> Result<(), OutboundError> {
        if is_metadata(ip) {
            return Err(OutboundError::RefusedAddress(ip));
        }
        if self.allowed(ip) {
            return Ok(());
        }
        if is_reserved(ip) {
            return Err(OutboundError::RefusedAddress(ip));
        }
        if plain {
            return Err(OutboundError::BadScheme("http".to_owned()));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The resolver: the addresses a connection may use are the checked ones

/// Resolves a host name and refuses the whole answer if any address in it is refused (a public
/// host has no business answering with a private address). Two of them: one for https, one
/// for plain http (allowed networks only).
#[derive(Clone)]
struct GuardedResolver {
    rules: Arc<Rules>,
    plain: bool,
}

/// An `OutboundError` carried through hyper-util's connect error, found again by `classify`.
#[derive(Debug)]
struct Refusal(OutboundError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, Refusal>> + Send + 'static>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Refusal;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (rules, plain) = (self.rules.clone(), self.plain);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Refusal(OutboundError::Unresolvable(host.clone())))?
                .collect();
            if found.is_empty() {
                return Err(Refusal(OutboundError::Unresolvable(host)));
            }
            for address in &found {
                rules.check(address.ip(), plain).map_err(Refusal)?;
            }
            Ok(found.into_iter())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The guard

type HttpsClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;
type PlainClient = Client<HttpConnector<GuardedResolver>, Full<Bytes>>;

struct Inner {
    config: OutboundConfig,
    rules: Arc<Rules>,
    https: HttpsClient,
    plain: PlainClient,
}

/// The outbound guard: cheap to clone, one per process, shared by both edges.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

const USER_AGENT_VALUE: &str = concat!("mcplatform/", env!("CARGO_PKG_VERSION"));

impl Outbound {
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundError> {
        let rules = Arc::new(Rules {
            allow: config.allow.clone(),
        });
        let connector = |plain: bool| {
            let mut http = HttpConnector::new_with_resolver(GuardedResolver {
                rules: rules.clone(),
                plain,
            });
            http.enforce_http(false);
            http.set_connect_timeout(Some(config.connect_timeout));
            http.set_nodelay(true);
            http
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| OutboundError::Transport(error.to_string()))?
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector(false));
        let pool = |builder: &mut hyper_util::client::legacy::Builder| {
            builder
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(4);
        };
        let mut https_builder = Client::builder(TokioExecutor::new());
        pool(&mut https_builder);
        let mut plain_builder = Client::builder(TokioExecutor::new());
        pool(&mut plain_builder);
        Ok(Self {
            inner: Arc::new(Inner {
                https: https_builder.build(https),
                plain: plain_builder.build(connector(true)),
                rules,
                config,
            }),
        })
    }

    pub fn config(&self) -> &OutboundConfig {
        &self.inner.config
    }

    /// Whether a URL may be fetched before any connection: its scheme, and its address when
    /// it is an IP literal (the resolver checks names). Plain http is accepted here for names
    /// (the plain resolver then admits allowed networks only).
    pub fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        let plain = match url.scheme() {
            "https" => false,
            "http" => true,
            other => return Err(OutboundError::BadScheme(other.to_owned())),
        };
        match url.host() {
            Some(Host::Ipv4(v4)) => self.inner.rules.check(IpAddr::V4(v4), plain),
            Some(Host::Ipv6(v6)) => self.inner.rules.check(IpAddr::V6(v6), plain),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(OutboundError::BadUrl),
        }
    }

    /// [`Outbound::check_url`], and a host name resolved now and its addresses checked: for a
    /// URL saved to be fetched later (a provider's endpoints), so a refusal is said at once.
    /// Every fetch checks again. An https name that does not resolve yet is let through; a
    /// plain http one must resolve into an allowed network.
    pub async fn vet_url(&self, url: &Url) -> Result<(), OutboundError> {
        self.check_url(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let plain = url.scheme() == "http";
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::net::lookup_host((name, port)).await {
            Ok(addresses) => {
                for address in addresses {
                    self.inner.rules.check(address.ip(), plain)?;
                }
                Ok(())
            }
            Err(_) if !plain => Ok(()),
            Err(_) => Err(OutboundError::Unresolvable(name.to_owned())),
        }
    }

    /// GETs `url`, following redirects; any status is returned.
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>, OutboundError> {
        let request = Request::get(url)
            .body(Vec::new())
            .map_err(|_| OutboundError::BadUrl)?;
        self.send(request, Options::default()).await
    }

    /// GETs `url` with `Accept: application/json` and reads a 2xx answer as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, OutboundError> {
        let request = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| OutboundError::BadUrl)?;
        let response = self.send(request, Options::default()).await?;
        if !response.status().is_success() {
            return Err(OutboundError::Status(response.status()));
        }
        serde_json::from_slice(response.body())
            .map_err(|error| OutboundError::BadJson(error.to_string()))
    }

    /// Sends `request` through the guard: the URL checked, redirects (when followed) checked
    /// hop by hop, the body capped, the whole exchange under the deadline. A 3xx that is not
    /// followed is returned as it is.
    pub async fn send(
        &self,
        request: Request<Vec<u8>>,
        options: Options,
    ) -> Result<Response<Bytes>, OutboundError> {
        let deadline = self.inner.config.timeout;
        tokio::time::timeout(deadline, self.exchange(request, options))
            .await
            .map_err(|_| OutboundError::Timeout(deadline))?
    }

    async fn exchange(
        &self,
        request: Request<Vec<u8>>,
        options: Options,
    ) -> Result<Response<Bytes>, OutboundError> {
        let limit = options
            .max_body_bytes
            .unwrap_or(self.inner.config.max_body_bytes)
            .min(self.inner.config.max_body_bytes);
        let (mut parts, mut body) = request.into_parts();
        let mut url = Url::parse(&parts.uri.to_string()).map_err(|_| OutboundError::BadUrl)?;
        let mut hops = 0usize;
        loop {
            self.check_url(&url)?;
            let uri: http::Uri = url.as_str().parse().map_err(|_| OutboundError::BadUrl)?;
            let mut outgoing = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(http::Version::HTTP_11)
                .body(Full::new(Bytes::from(body.clone())))
                .map_err(|_| OutboundError::BadUrl)?;
            *outgoing.headers_mut() = parts.headers.clone();
            outgoing.headers_mut().remove(HOST);
            outgoing
                .headers_mut()
                .entry(USER_AGENT)
                .or_insert(HeaderValue::from_static(USER_AGENT_VALUE));
            let answer = if url.scheme() == "https" {
                self.inner.https.request(outgoing).await
            } else {
                self.inner.plain.request(outgoing).await
            }
            .map_err(|error| classify(&error))?;

            let status = answer.status();
            let redirect = matches!(
                status,
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            if redirect && options.follow_redirects {
                if hops >= self.inner.config.max_redirects {
                    return Err(OutboundError::TooManyRedirects(
                        self.inner.config.max_redirects,
                    ));
                }
                hops += 1;
                let next = answer
                    .headers()
                    .get(LOCATION)
                    .and_then(|location| location.to_str().ok())
                    .and_then(|location| url.join(location).ok())
                    .ok_or(OutboundError::BadRedirect)?;
                // The body of a redirect is not read; the connection is dropped with it.
                drop(answer);
                let keeps_method = matches!(
                    status,
                    StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                );
                if !keeps_method && parts.method != Method::HEAD {
                    parts.method = Method::GET;
                    body = Vec::new();
                    parts.headers.remove(CONTENT_LENGTH);
                    parts.headers.remove(http::header::CONTENT_TYPE);
                }
                if next.origin() != url.origin() {
                    // Credentials are for the origin they were given to.
                    parts.headers.remove(AUTHORIZATION);
                    parts.headers.remove(COOKIE);
                }
                url = next;
                continue;
            }

            let (head, incoming) = answer.into_parts();
            let declared = head
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit as u64) {
                return Err(OutboundError::TooLarge { limit });
            }
            let bytes = read_capped(incoming, limit).await?;
            return Ok(Response::from_parts(head, bytes));
        }
    }

    /// The guard as the HTTP client of the `oauth2` and `openidconnect` crates.
    pub fn oauth(&self) -> OAuthHttp {
        OAuthHttp(self.clone())
    }
}

async fn read_capped(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, OutboundError> {
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| OutboundError::Transport(error.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(OutboundError::TooLarge { limit });
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// Finds the refusal our resolver raised in a client error's chain, or words the failure.
fn classify(error: &hyper_util::client::legacy::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(Refusal(refused)) = current.downcast_ref::<Refusal>() {
            return refused.clone();
        }
        source = current.source();
    }
    if error.is_connect() {
        // The innermost cause says what happened (refused, timed out, TLS).
        let mut cause: &dyn std::error::Error = error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        return OutboundError::Connect(cause.to_string());
    }
    OutboundError::Transport(error.to_string())
}

/// The guard as `oauth2::AsyncHttpClient` (and so `openidconnect`'s, the same trait). A token
/// request's redirect is never followed (the `oauth2` crate's advice against SSRF); a GET's
/// (discovery, JWKS, userinfo) is, hop by hop through the guard.
#[derive(Clone, Debug)]
pub struct OAuthHttp(Outbound);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = OutboundError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, OutboundError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let options = Options {
                follow_redirects: request.method() == Method::GET,
                max_body_bytes: None,
            };
            let response = self.0.send(request, options).await?;
            Ok(response.map(|body| body.to_vec()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|_| unreachable!("test address {text}"))
    }

    #[test]
    fn reserved_v4() {
        for refused in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
        ] {
            assert!(is_reserved(ip(refused)), "{refused} should be refused");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
        ] {
            assert!(!is_reserved(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn reserved_v6_and_disguised_v4() {
        for refused in [
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "fec0::1",
        ] {
            assert!(is_reserved(ip(refused)), "{refused} should be refused");
        }
        for public in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_reserved(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn metadata_in_every_form_even_when_allowed() {
        let rules = Rules {
            allow: parse_allow("169.254.0.0/16, fd00::/8, 0.0.0.0/0").unwrap_or_default(),
        };
        for metadata in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "168.63.129.16",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                is_metadata(ip(metadata)),
                "{metadata} is a metadata address"
            );
            assert_eq!(
                rules.check(ip(metadata), false),
                Err(OutboundError::RefusedAddress(ip(metadata)))
            );
        }
        assert_eq!(rules.check(ip("169.254.1.1"), true), Ok(()));
    }

    #[test]
    fn allow_list_exempts_and_admits_plain_http() {
        let rules = Rules {
            allow: parse_allow("127.0.0.0/8").unwrap_or_default(),
        };
        assert_eq!(rules.check(ip("127.0.0.1"), true), Ok(()));
        assert_eq!(rules.check(ip("::ffff:127.0.0.1"), true), Ok(()));
        assert_eq!(
            rules.check(ip("10.0.0.1"), false),
            Err(OutboundError::RefusedAddress(ip("10.0.0.1")))
        );
        assert_eq!(
            rules.check(ip("8.8.8.8"), true),
            Err(OutboundError::BadScheme("http".into()))
        );
        assert_eq!(rules.check(ip("8.8.8.8"), false), Ok(()));
        let none = Rules { allow: Vec::new() };
        assert_eq!(
            none.check(ip("127.0.0.1"), false),
            Err(OutboundError::RefusedAddress(ip("127.0.0.1")))
        );
    }

    #[test]
    fn parses_allow_lists() {
        assert_eq!(parse_allow(""), Ok(Vec::new()));
        assert_eq!(parse_allow(" , ").map(|nets| nets.len()), Ok(0));
        let nets = parse_allow("127.0.0.0/8, ::1,10.1.2.3").unwrap_or_default();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&ip("::1")));
        assert!(nets[2].contains(&ip("10.1.2.3")));
        assert!(!nets[2].contains(&ip("10.1.2.4")));
        assert!(parse_allow("127.0.0.0/33").is_err());
        assert!(parse_allow("localhost").is_err());
    }

    #[tokio::test]
    async fn urls_checked_before_any_connection() {
        let guard = Outbound::new(OutboundConfig::default()).unwrap_or_else(|_| unreachable!());
        let check =
            |url: &str| guard.check_url(&Url::parse(url).unwrap_or_else(|_| unreachable!()));
        assert_eq!(
            check("ftp://example.com/x"),
            Err(OutboundError::BadScheme("ftp".into()))
        );
        assert_eq!(
            check("https://127.0.0.1/x"),
            Err(OutboundError::RefusedAddress(ip("127.0.0.1")))
        );
        assert_eq!(
            check("https://[::ffff:7f00:1]/x"),
            Err(OutboundError::RefusedAddress(ip("::ffff:127.0.0.1")))
        );
        // Decimal and hex spellings are normalized by the URL parser.
        assert_eq!(
            check("https://2130706433/x"),
            Err(OutboundError::RefusedAddress(ip("127.0.0.1")))
        );
        assert_eq!(
            check("https://0x7f.1/x"),
            Err(OutboundError::RefusedAddress(ip("127.0.0.1")))
        );
        assert_eq!(
            check("http://8.8.8.8/x"),
            Err(OutboundError::BadScheme("http".into()))
        );
        assert_eq!(check("https://example.com/x"), Ok(()));
        // A name resolving to loopback is refused by the resolver.
        assert!(matches!(
            guard.get("https://localhost:9/x").await,
            Err(OutboundError::RefusedAddress(address)) if is_reserved(address)
        ));
    }
}
