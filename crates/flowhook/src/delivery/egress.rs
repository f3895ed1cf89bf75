//! Egress policy: which addresses deliveries may go to. Checked on the *resolved* address — the
//! HTTP client resolves through [`PolicyResolver`], which drops forbidden addresses, and connects
//! only to what it returned, so a DNS answer that changes between check and connect (rebinding)
//! cannot slip through. IP-literal hosts are checked before sending.
//!
//! Private targets are allowed by default (on-premises receivers are the norm); `deny_private`
//! refuses loopback, private, link-local, CGNAT and unique-local ranges.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EgressPolicy {
    /// When not empty, only these ranges.
    pub allow: Vec<IpNet>,
    /// Never these ranges.
    pub deny: Vec<IpNet>,
    pub deny_private: bool,
}

/// Text that marks an egress refusal in an error chain.
pub const REFUSED: &str = "refused by the egress policy";

impl EgressPolicy {
    /// From configuration strings; the error names the bad CIDR.
    pub fn parse(allow: &[String], deny: &[String], deny_private: bool) -> Result<Self, String> {
        let nets = |list: &[String]| -> Result<Vec<IpNet>, String> {
            list.iter()
                .map(|s| {
                    s.parse::<IpNet>()
                        .map_err(|_| format!("`{s}` is not a CIDR (e.g. 10.0.0.0/8)"))
                })
                .collect()
        };
        Ok(EgressPolicy {
            allow: nets(allow)?,
            deny: nets(deny)?,
            deny_private,
        })
    }

    /// `Err(why)` when `ip` may not be a target.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if self.deny_private && is_private(ip) {
            return Err(format!("{ip} is a private address, {REFUSED}"));
        }
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is in a denied range, {REFUSED}"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is outside the allowed ranges, {REFUSED}"));
        }
        Ok(())
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64) // 100.64.0.0/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xFE00) == 0xFC00 // fc00::/7
                || (v6.segments()[0] & 0xFFC0) == 0xFE80 // fe80::/10
        }
    }
}

/// A DNS resolver for the HTTP client that returns only permitted addresses.
pub struct PolicyResolver(pub Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusal = Some(why);
                        false
                    }
                })
                .collect();
            if permitted.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} has no address"));
                return Err(Box::new(std::io::Error::other(format!("{host}: {why}")))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_switch_allow_and_deny() {
        let open = EgressPolicy::default();
        assert!(
            open.check(ip("127.0.0.1")).is_ok(),
            "private targets allowed by default"
        );
        let closed = EgressPolicy {
            deny_private: true,
            ..Default::default()
        };
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(closed.check(ip(p)).is_err(), "{p} is private");
        }
        assert!(closed.check(ip("8.8.8.8")).is_ok());
        let p = EgressPolicy::parse(
            &["203.0.113.0/24".into()],
            &["203.0.113.7/32".into()],
            false,
        )
        .unwrap();
        assert!(p.check(ip("203.0.113.5")).is_ok());
        assert!(p
            .check(ip("203.0.113.7"))
            .unwrap_err()
            .contains("denied range"));
        assert!(p
            .check(ip("198.51.100.1"))
            .unwrap_err()
            .contains("outside the allowed"));
        assert!(EgressPolicy::parse(&["nonsense".into()], &[], false)
            .unwrap_err()
            .contains("`nonsense`"));
    }
}
