//! Downloading images from URLs chosen by strangers: bounded in time, size and redirects, and
//! never reaching an address inside our own network, whatever the URL, its DNS or its
//! redirects say.
//!
//! Which addresses are refused, and why, is `domain::address_policy`; this is where it is
//! enforced. Every destination is checked where it is used, on the first URL and on every
//! redirect:
//! - scheme and credentials: each hop must be a valid [`HttpUrl`];
//! - IP-literal hosts, here, before the request (reqwest never calls a resolver for them);
//! - host names, inside the DNS resolver reqwest connects with, so the addresses checked are
//!   the addresses connected to (no window for DNS rebinding between check and connect).
//!
//! [`GuardedClient`] holds these checks so the webhook sender, which also posts to URLs chosen
//! by strangers, uses the same ones.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, HeaderValue, LOCATION};
use reqwest::{Client, ClientBuilder, StatusCode};

use crate::domain::address_policy::{ExemptHosts, is_public};
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
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_bytes: 25 * 1024 * 1024,
            max_redirects: 3,
        }
    }
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

/// A reqwest client that only reaches public addresses, plus the exact `host:port` pairs of
/// (test-only) [`ExemptHosts`]. Redirects are never followed by reqwest (each hop must be
/// checked by the caller, through [`GuardedClient::client_for`]) and proxy variables are
/// ignored (a proxy would resolve names out of our sight).
#[derive(Clone)]
pub struct GuardedClient {
    checked: Client,
    /// Built only when some hosts are exempt: resolves without checking.
    unchecked: Option<Client>,
    exempt_hosts: ExemptHosts,
}

impl GuardedClient {
    /// `configure` sets timeouts, user agent and the like; redirects, proxies and DNS are
    /// set after it, so it cannot undo them.
    pub fn new(
        exempt_hosts: ExemptHosts,
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
        let unchecked = if exempt_hosts.is_empty() { None } else { Some(build(false)?) };
        Ok(Self { checked: build(true)?, unchecked, exempt_hosts })
    }

    /// The client to send a request to `url` with, or a refusal if its host is a non-public
    /// IP literal. Host names are checked later, by the client's resolver, at connect time.
    pub fn client_for(&self, url: &HttpUrl) -> Result<&Client, NonPublicAddress> {
        if let Some(unchecked) = &self.unchecked
            && self.exempt_hosts.exempts(url)
        {
            return Ok(unchecked);
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
    pub fn new(limits: FetchLimits, exempt_hosts: ExemptHosts) -> Result<Self, reqwest::Error> {
        Self::with_lookup(limits, exempt_hosts, Arc::new(SystemLookup))
    }

    /// With another way to resolve names (tests); every check still applies to its answers.
    pub fn with_lookup(
        limits: FetchLimits,
        exempt_hosts: ExemptHosts,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, reqwest::Error> {
        let connect_timeout = limits.connect_timeout;
        let client = GuardedClient::new(exempt_hosts, lookup, |builder| {
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
        // Content-Length can lie or be absent: count while streaming. Where it is given (and
        // within the cap), the body is read into room for all of it at once: grown by doubling
        // instead, a 16 MB photo was copied again at every step, into fresh pages (memmove, here
        // and in the upload, had 30% of the worker's page faults, docs/performance.md).
        let expected = response.content_length().unwrap_or(0).min(limit);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
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
