use super::*;

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
        ExemptHosts::parse(" 127.0.0.1:8811, Images.Test:80 ,[::1]:9000,"),
        Ok(ExemptHosts(vec!["127.0.0.1:8811".to_owned(), "images.test:80".to_owned(), "[::1]:9000".to_owned()]))
    );
    assert_eq!(
        ExemptHosts::parse("127.1:80,[0:0::1]:8080"),
        Ok(ExemptHosts(vec!["127.0.0.1:80".to_owned(), "[::1]:8080".to_owned()]))
    );
    assert_eq!(ExemptHosts::parse(""), Ok(ExemptHosts(vec![])));
    for bad in ["127.0.0.1", "localhost:", ":80", "host:99999", "::1", "::ffff:1", "[::1]", "a:80/x", "u@h:80"] {
        assert!(ExemptHosts::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_url_is_exempt_only_on_a_listed_host_and_port() {
    let exempt = ExemptHosts::parse("127.0.0.1:8811, images.test:80").expect("host:port list");
    let url = |text: &str| HttpUrl::parse(text).expect("valid URL");
    assert!(exempt.exempts(&url("http://127.0.0.1:8811/a.jpg")));
    assert!(exempt.exempts(&url("http://Images.Test/a.jpg")), "port 80 is http's default");
    assert!(!exempt.exempts(&url("https://images.test/a.jpg")), "port 443");
    assert!(!exempt.exempts(&url("http://127.0.0.1:8812/a.jpg")));
    assert!(!exempt.exempts(&url("http://localhost:8811/a.jpg")));
    assert!(!ExemptHosts::default().exempts(&url("http://127.0.0.1:8811/a.jpg")));
}
