//! Downloading images from URLs chosen by strangers: bounded in time, size and redirects, and
//! never reaching an address inside our own network, whatever the URL, its DNS or its
//! redirects say.
//!
//! Inside Lambda, 127.0.0.1:9001 is the Runtime API and 169.254.0.0/16 holds the X-Ray daemon
//! and metadata endpoints: a URL that reaches them can act with the function's credentials.
//! So every destination is checked where it is used, on the first URL and on every redirect:
//! - scheme and credentials: each hop must be a valid [`HttpUrl`];
//! - IP-literal hosts, here, before the request (reqwest never calls a resolver for them);
//! - host names, inside the DNS resolver reqwest connects with, so the addresses checked are
//!   the addresses connected to (no window for DNS rebinding between check and connect).
//!
//! [`GuardedClient`] holds these checks so the webhook sender, which also posts to URLs chosen
//! by strangers, uses the same ones.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, HeaderValue, LOCATION};
use reqwest::{Client, ClientBuilder, StatusCode};

use crate::domain::errors::FetchError;
use crate::domain::http_url::{HttpUrl, InvalidUrl};
use crate::ports::Fetcher;

#[derive(Clone, Debug)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// For the whole download, redirects and body included, so a slow server cannot hold a worker.
    pub total_timeout: Duration,
    pub max_bytes: u64,
    pub max_redirects: usize,
    /// Exact `host:port` pairs (`127.0.0.1:8811`, `[::1]:8080`, `images.test:80`) fetched even
    /// though they are not public: the local stack serves its sample images from loopback.
    /// Empty by default, and it must stay empty in production (FETCH_ALLOW_HOSTS unset).
    pub allowed_hosts: Vec<String>,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_bytes: 25 * 1024 * 1024,
            max_redirects: 3,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Reads an allowlist such as `127.0.0.1:8811, localhost:9000` (FETCH_ALLOW_HOSTS) into the
/// form requests are compared in (lower case, IPv6 in brackets, IPv4 dotted). Every entry needs
/// a port: an entry that could never match would look like protection it isn't.
pub fn parse_allowed_hosts(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| canonical_host_and_port(entry).ok_or_else(|| format!("{entry:?} is not host:port")))
        .collect()
}

fn canonical_host_and_port(entry: &str) -> Option<String> {
    let explicit_port = entry.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.ends_with(':') && !port.starts_with('+') && port.parse::<u16>().is_ok()
    });
    let url = HttpUrl::parse(&format!("http://{entry}/")).ok()?;
    let only_host_and_port = url.as_url().path() == "/" && url.as_url().query().is_none();
    (explicit_port && only_host_and_port).then(|| host_and_port(&url))
}

/// The ranges no fetch may reach: private, loopback, link-local, shared, multicast, reserved
/// and documentation networks, and the IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64, 6to4), which could otherwise smuggle in any of the IPv4 ranges.
const BLOCKED_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"; 0.0.0.0 reaches localhost on Linux
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT, shared
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback: the Lambda Runtime API
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local: metadata endpoints, X-Ray
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and broadcast 255.255.255.255
];

const BLOCKED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // ::, ::1 and IPv4-compatible ::a.b.c.d
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96), // IPv4-mapped: all of it, public or not
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96), // NAT64, well-known prefix
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // NAT64, local-use prefix
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local (private)
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated private)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// Whether a fetch may connect to `ip`: false for every address in the ranges above.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            !BLOCKED_V4.iter().any(|&(net, len)| same_prefix(ip.to_bits().into(), net.to_bits().into(), len, 32))
        }
        IpAddr::V6(ip) => !BLOCKED_V6.iter().any(|&(net, len)| same_prefix(ip.to_bits(), net.to_bits(), len, 128)),
    }
}

/// Whether the first `len` of the `width` low bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, len: u8, width: u8) -> bool {
    let ignored = u32::from(width - len);
    a.checked_shr(ignored).unwrap_or(0) == b.checked_shr(ignored).unwrap_or(0)
}

/// A destination refused before any connection: a literal non-public address, or (from inside
/// the resolver) a host name with a non-public address among its DNS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to a non-public network address")]
pub struct NonPublicAddress;

/// The host name did not resolve; the message is the resolver's, which never names the URL.
#[derive(Debug, thiserror::Error)]
#[error("the host name did not resolve: {0}")]
struct LookupFailed(String);

/// Turns a host name into addresses. The system resolver in production; tests map names such as
/// `evil.test` themselves, so they can prove what happens without any real DNS or traffic.
#[async_trait]
pub trait HostLookup: Send + Sync {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// `getaddrinfo`, through tokio's blocking pool.
pub struct SystemLookup;

#[async_trait]
impl HostLookup for SystemLookup {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0)).await?.map(|address| address.ip()).collect())
    }
}

/// The resolver reqwest connects with. With `check`, a name with any non-public address is
/// refused outright (rather than connecting to its public addresses only), so a name that
/// points inside fails the same way every time.
struct CheckingResolver {
    lookup: Arc<dyn HostLookup>,
    check: bool,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = Arc::clone(&self.lookup);
        let check = self.check;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = lookup.lookup(&host).await.map_err(|error| LookupFailed(error.to_string()))?;
            if ips.is_empty() {
                return Err(LookupFailed("no addresses".into()).into());
            }
            if check && !ips.iter().all(|ip| is_public(*ip)) {
                return Err(NonPublicAddress.into());
            }
            // Port 0 is replaced by the URL's port, or the scheme's default.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A reqwest client that only reaches public addresses, plus the exact `host:port` pairs of a
/// (test-only) allowlist. Redirects are never followed by reqwest (each hop must be checked by
/// the caller, through [`GuardedClient::client_for`]) and proxy variables are ignored (a
/// proxy would resolve names out of our sight).
#[derive(Clone)]
pub struct GuardedClient {
    checked: Client,
    /// Built only when the allowlist is not empty: resolves without checking.
    allowed: Option<Client>,
    allowed_hosts: Vec<String>,
}

impl GuardedClient {
    /// `configure` sets timeouts, user agent and the like; redirects, proxies and DNS are
    /// set after it, so it cannot undo them.
    pub fn new(
        allowed_hosts: &[String],
        lookup: Arc<dyn HostLookup>,
        configure: impl Fn(ClientBuilder) -> ClientBuilder,
    ) -> Result<Self, reqwest::Error> {
        let build = |check: bool| {
            configure(Client::builder())
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(CheckingResolver { lookup: Arc::clone(&lookup), check })
                .build()
        };
        // Entries that are not host:port could never match; FETCH_ALLOW_HOSTS is checked by
        // `parse_allowed_hosts` at start-up, so dropping them here only ever allows less.
        let allowed_hosts: Vec<String> =
            allowed_hosts.iter().filter_map(|entry| canonical_host_and_port(entry.trim())).collect();
        let allowed = if allowed_hosts.is_empty() { None } else { Some(build(false)?) };
        Ok(Self { checked: build(true)?, allowed, allowed_hosts })
    }

    /// The client to send a request to `url` with, or a refusal if its host is a non-public
    /// IP literal. Host names are checked later, by the client's resolver, at connect time.
    pub fn client_for(&self, url: &HttpUrl) -> Result<&Client, NonPublicAddress> {
        if let Some(allowed) = &self.allowed
            && self.allowed_hosts.contains(&host_and_port(url))
        {
            return Ok(allowed);
        }
        let literal = match url.as_url().host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) | None => None,
        };
        match literal {
            Some(ip) if !is_public(ip) => Err(NonPublicAddress),
            _ => Ok(&self.checked),
        }
    }
}

/// `host:port` as the allowlist spells it: `127.0.0.1:8811`, `[::1]:80`, `images.test:443`.
fn host_and_port(url: &HttpUrl) -> String {
    let url = url.as_url();
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{}:{port}", url.host_str().unwrap_or_default())
}

/// Whether the request failed because the resolver refused a non-public address.
pub fn refused_address(error: &reqwest::Error) -> bool {
    caused_by::<NonPublicAddress>(error)
}

fn caused_by<T: std::error::Error + 'static>(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<T>() {
            return true;
        }
        source = cause.source();
    }
    false
}

pub struct HttpFetcher {
    client: GuardedClient,
    limits: FetchLimits,
}

impl HttpFetcher {
    pub fn new(limits: FetchLimits) -> Result<Self, reqwest::Error> {
        Self::with_lookup(limits, Arc::new(SystemLookup))
    }

    /// With another way to resolve names (tests); every check still applies to its answers.
    pub fn with_lookup(limits: FetchLimits, lookup: Arc<dyn HostLookup>) -> Result<Self, reqwest::Error> {
        let connect_timeout = limits.connect_timeout;
        let client = GuardedClient::new(&limits.allowed_hosts, lookup, |builder| {
            builder.connect_timeout(connect_timeout).user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
        })?;
        Ok(Self { client, limits })
    }

    /// The download itself, hop by hop; `fetch` bounds it in time.
    async fn download(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError> {
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            let client = self.client.client_for(&current).map_err(|_| FetchError::BlockedAddress)?;
            let response = client
                .get(current.as_str())
                .header(ACCEPT, HeaderValue::from_static("image/*"))
                .send()
                .await
                .map_err(|error| self.classify(error))?;
            let status = response.status();
            if let Some(location) = redirect_location(&response) {
                if redirects == self.limits.max_redirects {
                    return Err(FetchError::TooManyRedirects { limit: self.limits.max_redirects });
                }
                redirects += 1;
                current = next_hop(&current, location)?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return self.read_body(response).await;
        }
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let limit = self.limits.max_bytes;
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        // Content-Length can lie or be absent: count while streaming.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| self.classify(error))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, error: reqwest::Error) -> FetchError {
        // The resolver's refusal arrives wrapped as a DNS and connect error: look for it first.
        if refused_address(&error) {
            FetchError::BlockedAddress
        } else if error.is_dns() || caused_by::<LookupFailed>(&error) {
            FetchError::Dns
        } else if error.is_connect() {
            FetchError::Connect
        } else if error.is_timeout() {
            FetchError::Timeout { seconds: self.limits.total_timeout.as_secs() }
        } else {
            FetchError::Transfer(without_url(error))
        }
    }
}

/// The `Location` of a redirect we follow. Any other 3xx (300, 304, or one without a
/// `Location`) is answered as its status, like any other non-2xx.
fn redirect_location(response: &reqwest::Response) -> Option<&HeaderValue> {
    let follows = matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    if follows { response.headers().get(LOCATION) } else { None }
}

/// Where a redirect leads, resolved against the current URL and held to the same rules as the
/// first URL (http/https, a host, no credentials).
fn next_hop(current: &HttpUrl, location: &HeaderValue) -> Result<HttpUrl, FetchError> {
    let location = location.to_str().map_err(|_| FetchError::BadRedirect("the Location header is not text".into()))?;
    let next = current.as_url().join(location).map_err(|error| FetchError::BadRedirect(error.to_string()))?;
    HttpUrl::parse(next.as_str()).map_err(|error| match error {
        InvalidUrl::SchemeNotAllowed { found } => FetchError::BlockedScheme { scheme: found },
        other => FetchError::BadRedirect(other.to_string()),
    })
}

/// reqwest puts the URL in its messages; URLs may carry tokens in their query, keep them out.
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError> {
        let limit = self.limits.total_timeout;
        tokio::time::timeout(limit, self.download(url))
            .await
            .unwrap_or(Err(FetchError::Timeout { seconds: limit.as_secs() }))
    }
}

#[cfg(test)]
mod tests;
