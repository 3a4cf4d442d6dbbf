//! Who the client is behind a reverse proxy: when the connection comes from an address listed in
//! `trusted_proxies`, the client is the right-most address of `X-Forwarded-For` that is not
//! itself a trusted proxy. Otherwise the peer address is the client and the header is ignored
//! (anyone can send it).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::http::HeaderMap;

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR block (like 10.0.0.0/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The configured proxies, carried in each request's extensions.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<Vec<Net>>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let nets = list
            .iter()
            .map(|s| {
                s.parse::<Net>()
                    .map_err(|e| format!("trusted_proxies: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Arc::new(nets)))
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusted(ip) => client = ip,
                Ok(ip) => return ip,
                // Garbage in the chain: stop at the last address we could trust.
                Err(_) => return client,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    #[test]
    fn cidr_blocks() {
        let n: Net = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.9.8.7".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.1.1".parse().unwrap()));
        let v6: Net = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "nope", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_trusted_peers_may_name_the_client() {
        let none = TrustedProxies::default();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(none.client(peer, &headers("203.0.113.9")), peer);
        let local = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(local.client(peer, &headers("203.0.113.9")), client);
        // A client cannot spoof by prepending: the right-most untrusted hop counts.
        assert_eq!(
            local.client(peer, &headers("1.1.1.1, 203.0.113.9, 10.0.0.5")),
            client
        );
        assert_eq!(local.client(peer, &headers("garbage")), peer);
        assert_eq!(local.client(peer, &HeaderMap::new()), peer);
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(local.client(stranger, &headers("203.0.113.9")), stranger);
    }
}
