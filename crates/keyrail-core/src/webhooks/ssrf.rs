//! The guard against server-side request forgery: which addresses a webhook may never reach
//! (unless the server is configured with `webhooks_allow_private = true`), and the shape of an
//! acceptable webhook URL. Pure functions; the server applies them when an endpoint is created
//! (to every address its host resolves to) and again when each delivery connects (in its DNS
//! resolver, so a name that re-resolves to a private address in between gets nowhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Whether a webhook must not connect to `ip`: loopback, private, shared (CGNAT), link-local
/// (cloud metadata), unspecified, "this network", broadcast, multicast, documentation,
/// benchmarking and reserved ranges; for IPv6 also unique-local (`fc00::/7`, which holds the
/// cloud metadata address `fd00:ec2::254`), link- and site-local, and the forms that embed an
/// IPv4 address (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4), judged by that address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    const NETS: [([u8; 4], u32); 16] = [
        ([0, 0, 0, 0], 8),       // "this network", 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
        ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and the broadcast address
        ([255, 255, 255, 255], 32),
    ];
    NETS.iter().any(|&(net, bits)| in_v4(ip, net, bits))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64): the IPv4.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0; 8], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return forbidden_v4(low_v4);
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return forbidden_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    const NETS: [([u16; 8], u32); 8] = [
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),     // Teredo (an IPv4 in disguise)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local, incl. fd00:ec2::254
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
    ];
    NETS.iter().any(|&(net, n)| in_v6(ip, net, n))
}

/// The host of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lowercased.
    Name(String),
}

/// A webhook URL taken apart: what the server resolves and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: Host,
    pub port: u16,
}

/// Checks the shape of a webhook URL: at most [`MAX_URL_LEN`] bytes, `http` or `https`, a host,
/// no user info, no spaces or control characters; a host that is a number but not a dotted
/// IPv4 address (`2130706433`, `0x7f.1`: other spellings of addresses) is refused. The message
/// says what is wrong, for a 400 naming `url`.
pub fn parse_url(url: &str) -> Result<WebhookUrl, &'static str> {
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err("url must be 1 to 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("url must not contain spaces or control characters");
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err("url must be an http or https URL");
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err("url must not contain user info");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or("url has an invalid host")?;
        let ip: Ipv6Addr = v6[..close].parse().map_err(|_| "url has an invalid host")?;
        (Host::Ip(IpAddr::V6(ip)), &v6[close + 1..])
    } else {
        let (name, port) = match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        };
        (parse_host(name)?, port)
    };
    let port = match port {
        "" => {
            if https {
                443
            } else {
                80
            }
        }
        p => {
            let digits = p.strip_prefix(':').ok_or("url has an invalid host")?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err("url has an invalid port");
            }
            match digits.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err("url has an invalid port"),
            }
        }
    };
    Ok(WebhookUrl { https, host, port })
}

fn parse_host(name: &str) -> Result<Host, &'static str> {
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err("url has an invalid host");
    }
    // No top-level domain is numeric: such a host is an address in another spelling.
    let last = name.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Err("url has an invalid host");
    }
    Ok(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_table() {
        let forbidden = [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.5",
            "198.18.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
        ];
        for a in forbidden {
            assert!(is_forbidden(ip(a)), "{a} must be forbidden");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "192.167.1.1",
            "11.0.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff::1",
            "fe7f::1",
        ];
        for a in allowed {
            assert!(!is_forbidden(ip(a)), "{a} must be allowed");
        }
    }

    #[test]
    fn urls_take_http_and_https_only() {
        let u = parse_url("https://hooks.example.com/in?x=1").unwrap();
        assert_eq!(
            u,
            WebhookUrl {
                https: true,
                host: Host::Name("hooks.example.com".into()),
                port: 443
            }
        );
        let u = parse_url("HTTP://Example.COM:8080").unwrap();
        assert_eq!((u.https, u.port), (false, 8080));
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert_eq!(
            parse_url("http://[::1]:9000/x").unwrap().host,
            Host::Ip(ip("::1"))
        );
        assert_eq!(
            parse_url("http://127.0.0.1/x").unwrap().host,
            Host::Ip(ip("127.0.0.1"))
        );
        for bad in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://x",
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://example.com:0/",
            "https://example.com:65536/",
            "https://example.com:http/",
            "https:///path",
            "https://exa mple.com/",
            "https://example.com/\n",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::1/",
            "https://-bad..name/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} must be refused");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(parse_url(&long).is_err());
        let fits = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert!(parse_url(&fits).is_ok());
    }
}
