//! Which network addresses a request to a URL chosen by strangers may reach: public ones only.
//!
//! Inside Lambda, 127.0.0.1:9001 is the Runtime API and 169.254.0.0/16 holds the X-Ray daemon
//! and metadata endpoints: a URL that reaches them can act with the function's credentials.
//! So the image fetcher and the webhook sender (`adapters::http_fetch::GuardedClient`) refuse
//! every address [`is_public`] refuses, on every hop, whether the address is written in the URL
//! or comes from DNS.
//!
//! The one way around it is [`ExemptHosts`]: exact `host:port` pairs for the local stack and
//! the tests, whose image servers and webhook receivers run on loopback. Never set in production.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::domain::http_url::HttpUrl;

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

/// Exact `host:port` pairs (`127.0.0.1:8811`, `[::1]:8080`, `images.test:80`) reached even
/// though they are not public: the local stack serves its sample images and receives its
/// webhooks on loopback (FETCH_ALLOW_HOSTS, WEBHOOK_ALLOW_HOSTS). Empty by default, and it must
/// stay empty in production. Held in the form requests are compared in (lower case, IPv6 in
/// brackets, IPv4 dotted), so a URL is exempt only when its host and port are exactly listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExemptHosts(Vec<String>);

impl ExemptHosts {
    /// Reads a list such as `127.0.0.1:8811, localhost:9000`. Every entry needs a port: an
    /// entry that could never match would look like protection it isn't.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| canonical_host_and_port(entry).ok_or_else(|| format!("{entry:?} is not host:port")))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `url`'s host and port (the scheme's default when it names none) are listed.
    pub fn exempts(&self, url: &HttpUrl) -> bool {
        self.0.contains(&host_and_port(url))
    }
}

fn canonical_host_and_port(entry: &str) -> Option<String> {
    let explicit_port = entry.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.ends_with(':') && !port.starts_with('+') && port.parse::<u16>().is_ok()
    });
    let url = HttpUrl::parse(&format!("http://{entry}/")).ok()?;
    let only_host_and_port = url.as_url().path() == "/" && url.as_url().query().is_none();
    (explicit_port && only_host_and_port).then(|| host_and_port(&url))
}

/// `host:port` as the exemption list spells it: `127.0.0.1:8811`, `[::1]:80`, `images.test:443`.
fn host_and_port(url: &HttpUrl) -> String {
    let url = url.as_url();
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{}:{port}", url.host_str().unwrap_or_default())
}

#[cfg(test)]
mod tests;
