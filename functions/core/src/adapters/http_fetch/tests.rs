//! The network tests only ever connect to 127.0.0.1: a hostile server there is reachable
//! through `ExemptHosts`, and everything else must be refused before any connection.

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

    fn exempt(&self) -> ExemptHosts {
        exempt(&self.address.to_string())
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

fn exempt(list: &str) -> ExemptHosts {
    ExemptHosts::parse(list).expect("host:port list")
}

fn limits() -> FetchLimits {
    FetchLimits { total_timeout: Duration::from_secs(10), ..FetchLimits::default() }
}

fn fetcher(exempt_hosts: ExemptHosts) -> HttpFetcher {
    HttpFetcher::with_lookup(limits(), exempt_hosts, test_lookup()).expect("client")
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
    let fetcher = fetcher(server.exempt());
    assert_eq!(fetcher.fetch(&server.url("/image")).await.expect("image"), IMAGE);
    assert_eq!(fetcher.fetch(&server.url("/accept")).await.expect("image"), IMAGE);
}

#[tokio::test]
async fn redirects_to_internal_addresses_are_blocked() {
    let server = Hostile::start().await;
    // A second loopback server that would answer 200: reaching it would be an escape.
    let decoy = Hostile::start().await;
    let fetcher = fetcher(server.exempt());
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
    let fetcher = fetcher(server.exempt());
    for target in ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://127.0.0.1:6379/_INFO"] {
        let error = fetcher.fetch(&redirect_to(&server, target)).await.expect_err("blocked");
        assert_eq!(error.code(), "blocked_scheme", "{target}");
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn redirects_with_credentials_or_nonsense_are_refused() {
    let server = Hostile::start().await;
    let fetcher = fetcher(server.exempt());
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
    let fetcher = fetcher(server.exempt());
    assert_eq!(fetcher.fetch(&server.url("/chain/3")).await.expect("three redirects"), IMAGE);
    let error = fetcher.fetch(&server.url("/chain/4")).await.expect_err("four redirects");
    assert_eq!(error.code(), "too_many_redirects");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn relative_redirects_resolve_against_the_current_url() {
    let server = Hostile::start().await;
    let fetcher = fetcher(server.exempt());
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
    let fetcher = fetcher(server.exempt());
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
    let fetcher = fetcher(server.exempt());
    for text in ["http://evil.test/", "http://metadata.test/latest/meta-data/", "http://mixed.test/"] {
        let url = HttpUrl::parse(text).expect("valid URL");
        assert_eq!(code_of(&fetcher, &url).await, "blocked_address", "{text}");
    }
    // The real system resolver: localhost is loopback, and its port is not allowed by name.
    let real = HttpFetcher::new(limits(), server.exempt()).expect("client");
    let localhost = HttpUrl::parse(&format!("http://localhost:{port}/image")).expect("valid URL");
    assert_eq!(code_of(&real, &localhost).await, "blocked_address");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn the_allowlist_is_exact_host_and_port() {
    let server = Hostile::start().await;
    let port = server.address.port();
    // Allowed by name: the name resolves to loopback and is fetched anyway.
    let by_name = fetcher(exempt(&format!("images.test:{port}")));
    let named = HttpUrl::parse(&format!("http://images.test:{port}/image")).expect("valid URL");
    assert_eq!(by_name.fetch(&named).await.expect("image"), IMAGE);
    // ...but not the same server by address, nor another port by name.
    assert_eq!(code_of(&by_name, &server.url("/image")).await, "blocked_address");
    let other_port = HttpUrl::parse(&format!("http://images.test:{}/image", port ^ 1)).expect("valid URL");
    assert_eq!(code_of(&by_name, &other_port).await, "blocked_address");
    // Nothing allowed by default.
    let default =
        HttpFetcher::with_lookup(FetchLimits::default(), ExemptHosts::default(), test_lookup()).expect("client");
    assert_eq!(code_of(&default, &server.url("/image")).await, "blocked_address");
}

#[tokio::test]
async fn names_that_do_not_resolve_are_dns_errors() {
    let fetcher = fetcher(ExemptHosts::default());
    for text in ["http://nowhere.test/a.jpg", "http://empty.test/a.jpg"] {
        let error = fetcher.fetch(&HttpUrl::parse(text).expect("valid URL")).await.expect_err("no address");
        assert_eq!(error.code(), "dns_error", "{text}");
        assert!(error.is_transient());
    }
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let server = Hostile::start().await;
    let limits = FetchLimits { max_bytes: 64 * 1024, ..limits() };
    let fetcher = HttpFetcher::with_lookup(limits, server.exempt(), test_lookup()).expect("client");
    let error = fetcher.fetch(&server.url("/endless")).await.expect_err("too large");
    assert_eq!(error.code(), "too_large_bytes");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_content_length_over_the_cap_is_refused_before_the_body() {
    let server = Hostile::start().await;
    let limits = FetchLimits { max_bytes: 1000, ..limits() };
    let fetcher = HttpFetcher::with_lookup(limits, server.exempt(), test_lookup()).expect("client");
    let started = Instant::now();
    assert_eq!(code_of(&fetcher, &server.url("/huge")).await, "too_large_bytes");
    // The server never sends the body: refusing took no waiting for it.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_trickling_server_hits_the_total_timeout() {
    let server = Hostile::start().await;
    let limits = FetchLimits { total_timeout: Duration::from_secs(2), ..limits() };
    let fetcher = HttpFetcher::with_lookup(limits, server.exempt(), test_lookup()).expect("client");
    let started = Instant::now();
    let error = fetcher.fetch(&server.url("/slow")).await.expect_err("timeout");
    assert_eq!(error.code(), "download_timeout");
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn error_statuses_keep_their_code_and_meaning() {
    let server = Hostile::start().await;
    let fetcher = fetcher(server.exempt());
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
    let fetcher = fetcher(exempt(&address.to_string()));
    let url = HttpUrl::parse(&format!("http://{address}/image")).expect("valid URL");
    assert_eq!(code_of(&fetcher, &url).await, "connect_error");
}

/// URLs may carry tokens: no failure message repeats a query string.
#[tokio::test]
async fn messages_never_contain_the_query() {
    let server = Hostile::start().await;
    let limits = FetchLimits { max_bytes: 10, ..limits() };
    let fetcher = HttpFetcher::with_lookup(limits, server.exempt(), test_lookup()).expect("client");
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
