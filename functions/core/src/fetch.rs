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

use crate::errors::FetchError;
use crate::http_url::{HttpUrl, InvalidUrl};
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
mod tests {
    //! The network tests only ever connect to 127.0.0.1: a hostile server there is reachable
    //! through the allowlist, and everything else must be refused before any connection.

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const IMAGE: &[u8] = b"\x89PNG\r\n\x1a\n not really a PNG, but the fetcher does not care";

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// Every range edge: first and last address blocked, the neighbours outside public.
    #[test]
    fn is_public_knows_every_range_edge() {
        let table: &[(&str, bool)] = &[
            // 0.0.0.0/8
            ("0.0.0.0", false),
            ("0.255.255.255", false),
            ("1.0.0.0", true),
            // 10.0.0.0/8
            ("9.255.255.255", true),
            ("10.0.0.0", false),
            ("10.255.255.255", false),
            ("11.0.0.0", true),
            // 100.64.0.0/10
            ("100.63.255.255", true),
            ("100.64.0.0", false),
            ("100.127.255.255", false),
            ("100.128.0.0", true),
            // 127.0.0.0/8
            ("126.255.255.255", true),
            ("127.0.0.0", false),
            ("127.0.0.1", false),
            ("127.255.255.255", false),
            ("128.0.0.0", true),
            // 169.254.0.0/16
            ("169.253.255.255", true),
            ("169.254.0.0", false),
            ("169.254.169.254", false),
            ("169.254.255.255", false),
            ("169.255.0.0", true),
            // 172.16.0.0/12
            ("172.15.255.255", true),
            ("172.16.0.0", false),
            ("172.31.255.255", false),
            ("172.32.0.0", true),
            // 192.0.0.0/24 and 192.0.2.0/24, with 192.0.1.0/24 public between them
            ("191.255.255.255", true),
            ("192.0.0.0", false),
            ("192.0.0.255", false),
            ("192.0.1.0", true),
            ("192.0.1.255", true),
            ("192.0.2.0", false),
            ("192.0.2.255", false),
            ("192.0.3.0", true),
            // 192.168.0.0/16
            ("192.167.255.255", true),
            ("192.168.0.0", false),
            ("192.168.255.255", false),
            ("192.169.0.0", true),
            // 198.18.0.0/15
            ("198.17.255.255", true),
            ("198.18.0.0", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            // 198.51.100.0/24
            ("198.51.99.255", true),
            ("198.51.100.0", false),
            ("198.51.100.255", false),
            ("198.51.101.0", true),
            // 203.0.113.0/24
            ("203.0.112.255", true),
            ("203.0.113.0", false),
            ("203.0.113.255", false),
            ("203.0.114.0", true),
            // 224.0.0.0/4 and 240.0.0.0/4: everything from 224 up
            ("223.255.255.255", true),
            ("224.0.0.0", false),
            ("239.255.255.255", false),
            ("240.0.0.0", false),
            ("255.255.255.255", false),
            // ordinary public addresses
            ("8.8.8.8", true),
            ("93.184.216.34", true),
            // ::/96: unspecified, loopback, IPv4-compatible
            ("::", false),
            ("::1", false),
            ("::7f00:1", false),
            ("::ffff:ffff", false),
            ("::1:0:0", true),
            // ::ffff:0:0/96, mapped: blocked whatever the embedded IPv4
            ("::fffe:ffff:ffff", true),
            ("::ffff:0.0.0.0", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", false),
            ("::ffff:255.255.255.255", false),
            ("::1:0:0:0", true),
            // 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64)
            ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("64:ff9b::", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::ffff:ffff", false),
            ("64:ff9b::1:0:0", true),
            ("64:ff9b:1::", false),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false),
            ("64:ff9b:2::", true),
            // 2002::/16 (6to4)
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2002::", false),
            ("2002:7f00:1::", false),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2003::", true),
            // fc00::/7
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fc00::", false),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe00::", true),
            // fe80::/10 and fec0::/10
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fe80::", false),
            ("fe80::1", false),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fec0::", false),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            // ff00::/8
            ("ff00::", false),
            ("ff02::1", false),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            // ordinary public addresses
            ("2001:4860:4860::8888", true),
            ("2606:4700::1111", true),
        ];
        for &(address, public) in table {
            assert_eq!(is_public(ip(address)), public, "{address}");
        }
    }

    #[test]
    fn allowlist_entries_need_a_port() {
        assert_eq!(
            parse_allowed_hosts(" 127.0.0.1:8811, Images.Test:80 ,[::1]:9000,"),
            Ok(vec!["127.0.0.1:8811".to_owned(), "images.test:80".to_owned(), "[::1]:9000".to_owned()])
        );
        assert_eq!(
            parse_allowed_hosts("127.1:80,[0:0::1]:8080"),
            Ok(vec!["127.0.0.1:80".to_owned(), "[::1]:8080".to_owned()])
        );
        assert_eq!(parse_allowed_hosts(""), Ok(vec![]));
        for bad in ["127.0.0.1", "localhost:", ":80", "host:99999", "::1", "::ffff:1", "[::1]", "a:80/x", "u@h:80"] {
            assert!(parse_allowed_hosts(bad).is_err(), "{bad}");
        }
    }

    /// Names the tests resolve themselves; anything else "does not exist".
    struct MapLookup(HashMap<&'static str, Vec<IpAddr>>);

    #[async_trait]
    impl HostLookup for MapLookup {
        async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
            self.0.get(host).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        }
    }

    fn test_lookup() -> Arc<dyn HostLookup> {
        Arc::new(MapLookup(HashMap::from([
            ("evil.test", vec![ip("10.0.0.1")]),
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("mixed.test", vec![ip("93.184.216.34"), ip("10.0.0.1")]),
            ("images.test", vec![ip("127.0.0.1")]),
            ("localhost", vec![ip("127.0.0.1"), ip("::1")]),
            ("empty.test", vec![]),
        ])))
    }

    /// A server on 127.0.0.1 that misbehaves on request. Its routes:
    /// `/image`, `/accept`, `/status/<n>`, `/chain/<n>` (n redirects, then the image),
    /// `/redirect?to=<location>&status=<n>`, `/dir/sub/relative` (to `../image`), `/no-location`,
    /// `/endless`, `/huge` (a Content-Length over any cap, then silence), `/slow` (a byte a second).
    struct Hostile {
        address: SocketAddr,
        connections: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Hostile {
        async fn start() -> Hostile {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(serve(socket));
                }
            });
            Hostile { address, connections }
        }

        fn url(&self, path: &str) -> HttpUrl {
            HttpUrl::parse(&format!("http://{}{path}", self.address)).expect("valid URL")
        }

        fn allowed(&self) -> String {
            self.address.to_string()
        }

        fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    async fn serve(mut socket: TcpStream) {
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let url = url::Url::parse("http://hostile").and_then(|base| base.join(&target)).expect("request target");
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let accept = head.lines().find_map(|line| line.strip_prefix("accept: ").or(line.strip_prefix("Accept: ")));
        let segments: Vec<&str> = url.path().trim_start_matches('/').split('/').collect();
        let respond = |status: u16, headers: &str, body: &[u8]| {
            let mut response = format!(
                "HTTP/1.1 {status} Hostile\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(body);
            response
        };
        let response = match segments.as_slice() {
            ["image"] | ["dir", "image"] => respond(200, "Content-Type: image/png\r\n", IMAGE),
            ["accept"] if accept == Some("image/*") => respond(200, "", IMAGE),
            ["accept"] => respond(406, "", b""),
            ["status", code] => respond(code.parse().unwrap_or(500), "", b"nope"),
            ["chain", "0"] => respond(200, "", IMAGE),
            ["chain", left] => {
                let left: u16 = left.parse().unwrap_or(0);
                // Cycle through every redirect status we follow.
                let status = [301, 302, 303, 307, 308][usize::from(left % 5)];
                respond(status, &format!("Location: /chain/{}\r\n", left.saturating_sub(1)), b"")
            }
            ["redirect"] => {
                let status = query.get("status").and_then(|s| s.parse().ok()).unwrap_or(302);
                let to = query.get("to").cloned().unwrap_or_default();
                respond(status, &format!("Location: {to}\r\n"), b"")
            }
            ["dir", "sub", "relative"] => respond(302, "Location: ../image\r\n", b""),
            ["no-location"] => respond(302, "", b""),
            ["endless"] => {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
                let chunk = [0u8; 8192];
                while socket.write_all(&chunk).await.is_ok() {}
                return;
            }
            ["huge"] => {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\nabc").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            ["slow"] => {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
                for _ in 0..100 {
                    if socket.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                return;
            }
            _ => respond(404, "", b"not here"),
        };
        let _ = socket.write_all(&response).await;
        let _ = socket.shutdown().await;
    }

    fn limits(allowed_hosts: Vec<String>) -> FetchLimits {
        FetchLimits { total_timeout: Duration::from_secs(10), allowed_hosts, ..FetchLimits::default() }
    }

    fn fetcher(allowed_hosts: Vec<String>) -> HttpFetcher {
        HttpFetcher::with_lookup(limits(allowed_hosts), test_lookup()).expect("client")
    }

    async fn code_of(fetcher: &HttpFetcher, url: &HttpUrl) -> String {
        match fetcher.fetch(url).await {
            Ok(body) => format!("ok ({} bytes)", body.len()),
            Err(error) => error.code(),
        }
    }

    fn redirect_to(server: &Hostile, location: &str) -> HttpUrl {
        let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("to", location).finish();
        server.url(&format!("/redirect?{query}"))
    }

    #[tokio::test]
    async fn an_allowed_host_serves_the_image_with_accept_image() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        assert_eq!(fetcher.fetch(&server.url("/image")).await.expect("image"), IMAGE);
        assert_eq!(fetcher.fetch(&server.url("/accept")).await.expect("image"), IMAGE);
    }

    #[tokio::test]
    async fn redirects_to_internal_addresses_are_blocked() {
        let server = Hostile::start().await;
        // A second loopback server that would answer 200: reaching it would be an escape.
        let decoy = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        let targets = [
            format!("http://127.0.0.1:{}/image", decoy.address.port()),
            format!("http://localhost:{}/image", decoy.address.port()),
            format!("http://images.test:{}/image", decoy.address.port()),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://metadata.test/latest/meta-data/".to_owned(),
            "http://evil.test/".to_owned(),
            "http://[::ffff:127.0.0.1]/".to_owned(),
            "http://2130706433/".to_owned(),
        ];
        for target in targets {
            for status in ["301", "302", "303", "307", "308"] {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("to", &target)
                    .append_pair("status", status)
                    .finish();
                assert_eq!(
                    code_of(&fetcher, &server.url(&format!("/redirect?{query}"))).await,
                    "blocked_address",
                    "{target} {status}"
                );
            }
        }
        assert_eq!(decoy.connections(), 0);
    }

    #[tokio::test]
    async fn redirects_away_from_http_are_blocked() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        for target in ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://127.0.0.1:6379/_INFO"] {
            let error = fetcher.fetch(&redirect_to(&server, target)).await.expect_err("blocked");
            assert_eq!(error.code(), "blocked_scheme", "{target}");
            assert!(!error.is_transient());
        }
    }

    #[tokio::test]
    async fn redirects_with_credentials_or_nonsense_are_refused() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        let with_credentials = format!("http://user:secret@{}/image", server.address);
        assert_eq!(code_of(&fetcher, &redirect_to(&server, &with_credentials)).await, "bad_redirect");
        assert_eq!(code_of(&fetcher, &redirect_to(&server, "http://")).await, "bad_redirect");
        assert_eq!(code_of(&fetcher, &redirect_to(&server, "http://exa mple.com/")).await, "bad_redirect");
        // A redirect status without a Location is just a status.
        assert_eq!(code_of(&fetcher, &server.url("/no-location")).await, "http_status_302");
    }

    #[tokio::test]
    async fn at_most_three_redirects_are_followed() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        assert_eq!(fetcher.fetch(&server.url("/chain/3")).await.expect("three redirects"), IMAGE);
        let error = fetcher.fetch(&server.url("/chain/4")).await.expect_err("four redirects");
        assert_eq!(error.code(), "too_many_redirects");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn relative_redirects_resolve_against_the_current_url() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        assert_eq!(fetcher.fetch(&server.url("/dir/sub/relative")).await.expect("image"), IMAGE);
        let path_only = redirect_to(&server, "/image");
        assert_eq!(fetcher.fetch(&path_only).await.expect("image"), IMAGE);
    }

    /// Every one of these is refused before any connection: the literal check runs first,
    /// and nothing listens on their ports here to prove otherwise, so the check is also
    /// asserted directly on the client's decision.
    #[tokio::test]
    async fn internal_literal_hosts_are_blocked_before_connecting() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        let port = server.address.port();
        let urls = [
            "http://0.0.0.0/".to_owned(),
            format!("http://0.0.0.0:{port}/image"),
            "http://[::]/".to_owned(),
            "http://[::1]/".to_owned(),
            format!("http://[::1]:{port}/image"),
            "http://[::ffff:127.0.0.1]/".to_owned(),
            "http://[::ffff:7f00:1]/".to_owned(),
            "http://2130706433/".to_owned(),
            "http://0177.0.0.1/".to_owned(),
            "http://0x7f000001/".to_owned(),
            "http://0x7f.1/".to_owned(),
            "http://127.1/".to_owned(),
            "http://127.0.0.1./".to_owned(),
            format!("http://127.0.0.2:{port}/image"),
            "http://10.0.0.1/".to_owned(),
            "http://100.64.0.1/".to_owned(),
            "http://172.16.0.1/".to_owned(),
            "http://192.168.1.1/".to_owned(),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "https://169.254.169.254/".to_owned(),
            "http://[fe80::1]/".to_owned(),
            "http://[fc00::1]/".to_owned(),
            "http://[64:ff9b::7f00:1]/".to_owned(),
            "http://[2002:7f00:1::]/".to_owned(),
            "http://224.0.0.1/".to_owned(),
            "http://255.255.255.255/".to_owned(),
        ];
        for text in urls {
            let url = HttpUrl::parse(&text).expect("valid URL");
            assert_eq!(fetcher.client.client_for(&url).err(), Some(NonPublicAddress), "{text}");
            let started = Instant::now();
            assert_eq!(code_of(&fetcher, &url).await, "blocked_address", "{text}");
            assert!(started.elapsed() < Duration::from_millis(200), "{text} took {:?}", started.elapsed());
        }
        assert_eq!(server.connections(), 0);
    }

    /// Names go through the resolver, which refuses non-public answers before connecting.
    #[tokio::test]
    async fn names_that_resolve_inside_are_blocked() {
        let server = Hostile::start().await;
        let port = server.address.port();
        let fetcher = fetcher(vec![server.allowed()]);
        for text in ["http://evil.test/", "http://metadata.test/latest/meta-data/", "http://mixed.test/"] {
            let url = HttpUrl::parse(text).expect("valid URL");
            assert_eq!(code_of(&fetcher, &url).await, "blocked_address", "{text}");
        }
        // The real system resolver: localhost is loopback, and its port is not allowed by name.
        let real = HttpFetcher::new(limits(vec![server.allowed()])).expect("client");
        let localhost = HttpUrl::parse(&format!("http://localhost:{port}/image")).expect("valid URL");
        assert_eq!(code_of(&real, &localhost).await, "blocked_address");
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn the_allowlist_is_exact_host_and_port() {
        let server = Hostile::start().await;
        let port = server.address.port();
        // Allowed by name: the name resolves to loopback and is fetched anyway.
        let by_name = fetcher(vec![format!("images.test:{port}")]);
        let named = HttpUrl::parse(&format!("http://images.test:{port}/image")).expect("valid URL");
        assert_eq!(by_name.fetch(&named).await.expect("image"), IMAGE);
        // ...but not the same server by address, nor another port by name.
        assert_eq!(code_of(&by_name, &server.url("/image")).await, "blocked_address");
        let other_port = HttpUrl::parse(&format!("http://images.test:{}/image", port ^ 1)).expect("valid URL");
        assert_eq!(code_of(&by_name, &other_port).await, "blocked_address");
        // Nothing allowed by default.
        let default = HttpFetcher::with_lookup(FetchLimits::default(), test_lookup()).expect("client");
        assert_eq!(code_of(&default, &server.url("/image")).await, "blocked_address");
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_dns_errors() {
        let fetcher = fetcher(vec![]);
        for text in ["http://nowhere.test/a.jpg", "http://empty.test/a.jpg"] {
            let error = fetcher.fetch(&HttpUrl::parse(text).expect("valid URL")).await.expect_err("no address");
            assert_eq!(error.code(), "dns_error", "{text}");
            assert!(error.is_transient());
        }
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_cap() {
        let server = Hostile::start().await;
        let limits = FetchLimits { max_bytes: 64 * 1024, ..limits(vec![server.allowed()]) };
        let fetcher = HttpFetcher::with_lookup(limits, test_lookup()).expect("client");
        let error = fetcher.fetch(&server.url("/endless")).await.expect_err("too large");
        assert_eq!(error.code(), "too_large_bytes");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn a_content_length_over_the_cap_is_refused_before_the_body() {
        let server = Hostile::start().await;
        let limits = FetchLimits { max_bytes: 1000, ..limits(vec![server.allowed()]) };
        let fetcher = HttpFetcher::with_lookup(limits, test_lookup()).expect("client");
        let started = Instant::now();
        assert_eq!(code_of(&fetcher, &server.url("/huge")).await, "too_large_bytes");
        // The server never sends the body: refusing took no waiting for it.
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_trickling_server_hits_the_total_timeout() {
        let server = Hostile::start().await;
        let limits = FetchLimits { total_timeout: Duration::from_secs(2), ..limits(vec![server.allowed()]) };
        let fetcher = HttpFetcher::with_lookup(limits, test_lookup()).expect("client");
        let started = Instant::now();
        let error = fetcher.fetch(&server.url("/slow")).await.expect_err("timeout");
        assert_eq!(error.code(), "download_timeout");
        assert!(error.is_transient());
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn error_statuses_keep_their_code_and_meaning() {
        let server = Hostile::start().await;
        let fetcher = fetcher(vec![server.allowed()]);
        let not_found = fetcher.fetch(&server.url("/status/404")).await.expect_err("404");
        assert_eq!((not_found.code().as_str(), not_found.is_transient()), ("http_status_404", false));
        let unavailable = fetcher.fetch(&server.url("/status/503")).await.expect_err("503");
        assert_eq!((unavailable.code().as_str(), unavailable.is_transient()), ("http_status_503", true));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let fetcher = fetcher(vec![address.to_string()]);
        let url = HttpUrl::parse(&format!("http://{address}/image")).expect("valid URL");
        assert_eq!(code_of(&fetcher, &url).await, "connect_error");
    }

    /// URLs may carry tokens: no failure message repeats a query string.
    #[tokio::test]
    async fn messages_never_contain_the_query() {
        let server = Hostile::start().await;
        let limits = FetchLimits { max_bytes: 10, ..limits(vec![server.allowed()]) };
        let fetcher = HttpFetcher::with_lookup(limits, test_lookup()).expect("client");
        let secret = "token=SECRET123";
        let urls = [
            server.url(&format!("/status/404?{secret}")),
            server.url(&format!("/image?{secret}")),
            server.url(&format!("/chain/4?{secret}")),
            redirect_to(&server, &format!("file:///etc/passwd?{secret}")),
            redirect_to(&server, &format!("http://10.0.0.1/?{secret}")),
            redirect_to(&server, &format!("http://user:pw@example.com/?{secret}")),
            HttpUrl::parse(&format!("http://evil.test/?{secret}")).expect("valid URL"),
            HttpUrl::parse(&format!("http://nowhere.test/?{secret}")).expect("valid URL"),
        ];
        for url in urls {
            let error = fetcher.fetch(&url).await.expect_err("fails");
            assert!(!format!("{error} {error:?}").contains("SECRET123"), "{error:?}");
        }
    }
}
