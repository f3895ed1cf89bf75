//! Egress policy: which addresses deliveries may go to, and by which route.
//!
//! Checked on the *resolved* address. Without a proxy, the HTTP client resolves through
//! [`PolicyResolver`], which drops forbidden addresses, and connects only to what it returned, so
//! a DNS answer that changes between check and connect (rebinding) cannot slip through; IP-literal
//! hosts are checked before sending ([`EgressPolicy::check_target`]).
//!
//! The client never takes a proxy from the environment (`HTTP_PROXY`, `ALL_PROXY`, …): a proxy
//! resolves and connects on our behalf, past the resolver, so an inherited variable would open
//! every target. Only the proxy configured with `egress_proxy` ([`EgressPolicy::proxy`]) is used;
//! then the target's name is resolved here before sending and refused when *any* of its addresses
//! is forbidden. The proxy resolves the name again: a name that changes its answer between the two
//! lookups is the residual risk of a proxied setup (said in the README). The proxy itself is the
//! operator's choice and is not subject to the policy.
//!
//! Private targets are allowed by default (on-premises receivers are the norm); `deny_private`
//! refuses every range of the IANA IPv4 and IPv6 special-purpose address registries, multicast,
//! every IPv6 address outside global unicast (2000::/3), and every address of this machine's own
//! interfaces. An IPv6 address that carries an IPv4 one (IPv4-mapped and -compatible, NAT64
//! 64:ff9b::/96, 6to4, Teredo) is checked as itself and as the IPv4 address it reaches, so an
//! explicit `egress_deny` of an IPv4 range also covers its IPv6 spellings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EgressPolicy {
    /// When not empty, only these ranges.
    pub allow: Vec<IpNet>,
    /// Never these ranges.
    pub deny: Vec<IpNet>,
    /// Refuse every special-purpose address and this machine's own addresses.
    pub deny_private: bool,
    /// The proxy every delivery goes through (`egress_proxy`); `None`: straight to the target,
    /// never through a proxy named by the environment.
    pub proxy: Option<ProxyUrl>,
}

/// A proxy URL (`http://[user:password@]host:port`); its `Debug` hides the password.
#[derive(Clone, PartialEq)]
pub struct ProxyUrl(pub url::Url);

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        write!(f, "ProxyUrl({shown})")
    }
}

/// Text that marks an egress refusal in an error chain.
pub const REFUSED: &str = "refused by the egress policy";

/// Why a target may not be sent to.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetError {
    /// The policy forbids it (error kind `egress`).
    Refused(String),
    /// Its name did not resolve (error kind `dns`).
    Unresolved(String),
}

/// The special-purpose ranges `deny_private` refuses: every entry of the IANA IPv4 and IPv6
/// Special-Purpose Address Registries (RFC 6890 and its updates, as of 2025), multicast, and the
/// deprecated IPv6 site-local range. Where ranges nest, the most specific names the refusal.
const SPECIAL: &[(&str, &str)] = &[
    // IPv4
    ("0.0.0.0/8", "\"this network\" (RFC 791)"),
    ("10.0.0.0/8", "private-use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private-use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.0.0/29", "IPv4 service continuity prefix (RFC 7335)"),
    ("192.0.0.8/32", "IPv4 dummy address (RFC 7600)"),
    ("192.0.0.9/32", "port control protocol anycast (RFC 7723)"),
    (
        "192.0.0.10/32",
        "traversal using relays around NAT anycast (RFC 8155)",
    ),
    ("192.0.0.170/31", "NAT64/DNS64 discovery (RFC 7050)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private-use (RFC 1918)"),
    (
        "192.175.48.0/24",
        "direct delegation AS112 service (RFC 7534)",
    ),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    // IPv6
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)"),
    ("64:ff9b::/96", "IPv4/IPv6 translation, NAT64 (RFC 6052)"),
    (
        "64:ff9b:1::/48",
        "local-use IPv4/IPv6 translation (RFC 8215)",
    ),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001::/32", "Teredo (RFC 4380)"),
    ("2001:1::1/128", "port control protocol anycast (RFC 7723)"),
    (
        "2001:1::2/128",
        "traversal using relays around NAT anycast (RFC 8155)",
    ),
    (
        "2001:1::3/128",
        "DNS-SD service registration protocol anycast (RFC 9665)",
    ),
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:3::/32", "AMT (RFC 7450)"),
    ("2001:4:112::/48", "AS112-v6 (RFC 7535)"),
    ("2001:10::/28", "deprecated ORCHID (RFC 4843)"),
    ("2001:20::/28", "ORCHIDv2 (RFC 7343)"),
    (
        "2001:30::/28",
        "drone remote ID protocol entity tags (RFC 9374)",
    ),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    (
        "2620:4f:8000::/48",
        "direct delegation AS112 service (RFC 7534)",
    ),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique-local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
];

static SPECIAL_NETS: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    SPECIAL
        .iter()
        .map(|(net, name)| (net.parse().expect("a CIDR of the table"), *name))
        .collect()
});

/// What `ip` is when it is special-purpose: the most specific range of [`SPECIAL`], or, for
/// IPv6, anything outside global unicast 2000::/3 (the rest of the space is reserved).
fn special(ip: IpAddr) -> Option<&'static str> {
    let named = SPECIAL_NETS
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map(|(_, name)| *name);
    named.or(match ip {
        IpAddr::V6(v6) if (v6.segments()[0] & 0xE000) != 0x2000 => {
            Some("outside IPv6 global unicast 2000::/3 (RFC 4291)")
        }
        _ => None,
    })
}

/// An IPv4-mapped address is the IPv4 address itself (a dual-stack socket connects to it).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The IPv4 addresses an IPv6 address reaches, with the form that carries each.
/// 64:ff9b:1::/48 is not read: where its IPv4 part sits depends on the local prefix length.
fn embedded_v4(v6: Ipv6Addr) -> Vec<(Ipv4Addr, &'static str)> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => vec![(tail, "IPv4-compatible")],
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![(tail, "NAT64")],
        [0x2002, ..] => vec![(Ipv4Addr::new(o[2], o[3], o[4], o[5]), "6to4")],
        [0x2001, 0, ..] => vec![
            (Ipv4Addr::new(o[4], o[5], o[6], o[7]), "Teredo server"),
            (
                Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
                "Teredo client",
            ),
        ],
        _ => vec![],
    }
}

/// How often this machine's interface addresses are listed again.
const LOCAL_REFRESH: Duration = Duration::from_secs(10);

/// This machine's interface addresses (listed at first use, then again when older than
/// [`LOCAL_REFRESH`]: an address that appears later is refused within that time). When listing
/// fails, the last list stands.
fn local_addresses() -> Arc<Vec<IpAddr>> {
    static LIST: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>> = Mutex::new(None);
    let mut list = LIST.lock().unwrap_or_else(|e| e.into_inner());
    match &*list {
        Some((at, addrs)) if at.elapsed() < LOCAL_REFRESH => return addrs.clone(),
        _ => {}
    }
    let addrs = match if_addrs::get_if_addrs() {
        Ok(interfaces) => Arc::new(interfaces.iter().map(|i| canonical(i.ip())).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this machine's addresses for the egress policy");
            list.as_ref().map(|(_, a)| a.clone()).unwrap_or_default()
        }
    };
    *list = Some((Instant::now(), addrs.clone()));
    addrs
}

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
            proxy: None,
        })
    }

    /// The same policy sending through `proxy` (an `http://` or `https://` URL with a host,
    /// optionally with credentials); the error says what is wrong without showing them.
    pub fn with_proxy(mut self, proxy: Option<&str>) -> Result<Self, String> {
        self.proxy = match proxy {
            None => None,
            Some(p) => match url::Url::parse(p) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some_and(|h| !h.is_empty()) =>
                {
                    Some(ProxyUrl(u))
                }
                _ => {
                    return Err(
                        "not an http(s) proxy URL (e.g. http://proxy.internal:3128)".to_owned()
                    )
                }
            },
        };
        Ok(self)
    }

    /// `Err(why)` when `ip` may not be a target.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let local = if self.deny_private {
            local_addresses()
        } else {
            Arc::default()
        };
        self.check_with(ip, &local)
    }

    /// [`EgressPolicy::check`] with `local` as this machine's addresses.
    fn check_with(&self, ip: IpAddr, local: &[IpAddr]) -> Result<(), String> {
        let ip = canonical(ip);
        if let Some(why) = self.refusal(ip, local) {
            return Err(why);
        }
        if let IpAddr::V6(v6) = ip {
            for (v4, form) in embedded_v4(v6) {
                if let Some(why) = self.refusal(IpAddr::V4(v4), local) {
                    return Err(format!("{ip} reaches {v4} ({form}): {why}"));
                }
            }
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is outside the allowed ranges, {REFUSED}"));
        }
        Ok(())
    }

    /// Why `ip` itself is refused by `deny_private` or `deny` (not `allow`).
    fn refusal(&self, ip: IpAddr, local: &[IpAddr]) -> Option<String> {
        if self.deny_private {
            if let Some(kind) = special(ip) {
                return Some(format!("{ip} is special-purpose: {kind}, {REFUSED}"));
            }
            if local.contains(&ip) {
                return Some(format!("{ip} is an address of this machine, {REFUSED}"));
            }
        }
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Some(format!("{ip} is in a denied range, {REFUSED}"));
        }
        None
    }

    /// Checks a target before sending: an IP literal as it is; a name — only when a proxy is
    /// configured, since otherwise [`PolicyResolver`] checks it at connect time — by every
    /// address it resolves to, any forbidden one refusing it.
    pub async fn check_target(&self, url: &url::Url) -> Result<(), TargetError> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)).map_err(TargetError::Refused),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)).map_err(TargetError::Refused),
            Some(url::Host::Domain(name)) if self.proxy.is_some() => {
                let port = url.port_or_known_default().unwrap_or(80);
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| TargetError::Unresolved(format!("{name}: {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(TargetError::Unresolved(format!("{name} has no address")));
                }
                for a in addrs {
                    self.check(a.ip())
                        .map_err(|why| TargetError::Refused(format!("{name}: {why}")))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A DNS resolver for the HTTP client that returns only permitted addresses. The configured
/// proxy's own name is resolved unchecked: with a proxy, it is the only name the client resolves.
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    proxy_host: Option<String>,
}

impl PolicyResolver {
    pub fn new(policy: &EgressPolicy) -> Self {
        PolicyResolver {
            proxy_host: policy
                .proxy
                .as_ref()
                .and_then(|p| p.0.host_str().map(str::to_ascii_lowercase)),
            policy: Arc::new(policy.clone()),
        }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        let unchecked = self
            .proxy_host
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| {
                    unchecked
                        || match policy.check(a.ip()) {
                            Ok(()) => true,
                            Err(why) => {
                                refusal = Some(why);
                                false
                            }
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
    use reqwest::dns::Resolve;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn closed() -> EgressPolicy {
        EgressPolicy {
            deny_private: true,
            ..Default::default()
        }
    }

    #[test]
    fn private_switch_allow_and_deny() {
        let open = EgressPolicy::default();
        assert!(
            open.check(ip("127.0.0.1")).is_ok(),
            "private targets allowed by default"
        );
        assert!(closed().check(ip("8.8.8.8")).is_ok());
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

    /// One address inside each range (its first, a middle one and its last where they differ),
    /// and the range's name in the refusal.
    #[test]
    fn deny_private_refuses_every_special_purpose_range() {
        let table: &[(&str, &str)] = &[
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("0.255.255.255", "this network"),
            ("10.0.0.0", "private-use"),
            ("10.255.255.255", "private-use"),
            ("100.64.0.1", "shared address space"),
            ("100.127.255.255", "shared address space"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private-use"),
            ("172.31.255.255", "private-use"),
            ("192.0.0.1", "service continuity"),
            ("192.0.0.8", "dummy address"),
            ("192.0.0.9", "port control protocol"),
            ("192.0.0.10", "relays around NAT"),
            ("192.0.0.170", "NAT64/DNS64 discovery"),
            ("192.0.0.171", "NAT64/DNS64 discovery"),
            ("192.0.0.255", "IETF protocol assignments"),
            ("192.0.2.2", "TEST-NET-1"),
            ("192.31.196.1", "AS112-v4"),
            ("192.52.193.1", "AMT"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.1.1", "private-use"),
            ("192.175.48.1", "direct delegation AS112"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.1", "TEST-NET-2"),
            ("203.0.113.1", "TEST-NET-3"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "limited broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:10.0.0.1", "private-use"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::808:808", "NAT64"),
            ("64:ff9b:1::1", "local-use IPv4/IPv6 translation"),
            ("100::1", "discard-only"),
            ("100:0:0:1::1", "dummy IPv6 prefix"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:1::1", "port control protocol"),
            ("2001:1::2", "relays around NAT"),
            ("2001:1::3", "service registration protocol"),
            ("2001:1::4", "IETF protocol assignments"),
            ("2001:2::1", "benchmarking"),
            ("2001:3::1", "AMT"),
            ("2001:4:112::1", "AS112-v6"),
            ("2001:10::1", "ORCHID"),
            ("2001:20::1", "ORCHIDv2"),
            ("2001:30::1", "drone remote ID"),
            ("2001:1ff:ffff::1", "IETF protocol assignments"),
            ("2001:db8::1", "documentation"),
            ("2001:db8:ffff:ffff::1", "documentation"),
            ("2002:7f00:1::", "6to4"),
            ("2002:808:808::1", "6to4"),
            ("2620:4f:8000::1", "direct delegation AS112"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("5f00::1", "segment routing"),
            ("fc00::1", "unique-local"),
            ("fd00::2", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("4000::1", "outside IPv6 global unicast"),
            ("::2:3:4:5:6", "outside IPv6 global unicast"),
        ];
        let policy = closed();
        for (addr, name) in table {
            let why = policy
                .check_with(ip(addr), &[])
                .expect_err(&format!("{addr} is special-purpose"));
            assert!(why.contains(REFUSED), "{addr}: {why}");
            assert!(why.contains(name), "{addr} should be named {name}: {why}");
        }
        // Just outside the ranges: public unicast stays open.
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2003::1",
            "2606:4700::1111",
            "2620:4f:8001::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
        ] {
            assert_eq!(
                policy.check_with(ip(public), &[]),
                Ok(()),
                "{public} is public"
            );
        }
    }

    #[test]
    fn an_embedded_ipv4_address_is_checked_as_the_address_it_reaches() {
        let table: &[(&str, &str)] = &[
            ("::203.0.113.9", "203.0.113.9 (IPv4-compatible)"),
            ("64:ff9b::cb00:7109", "203.0.113.9 (NAT64)"),
            ("2002:cb00:7109::1", "203.0.113.9 (6to4)"),
            // Teredo: the server in bits 32–63, the client's address inverted in the last 32.
            ("2001:0:cb00:7109::0808:0808", "203.0.113.9 (Teredo server)"),
            ("2001:0:0808:0808::34ff:8ef6", "203.0.113.9 (Teredo client)"),
        ];
        // Without `deny_private`, an explicit IPv4 denial covers the IPv6 spellings.
        let policy = EgressPolicy::parse(&[], &["203.0.113.0/24".into()], false).unwrap();
        for (addr, reaches) in table {
            let why = policy
                .check_with(ip(addr), &[])
                .expect_err(&format!("{addr} reaches a denied address"));
            assert!(
                why.contains(&format!("reaches {reaches}")) && why.contains("denied range"),
                "{addr}: {why}"
            );
        }
        assert_eq!(policy.check_with(ip("2002:808:808::1"), &[]), Ok(()));
        assert_eq!(policy.check_with(ip("2001:db8::1"), &[]), Ok(()));
    }

    #[test]
    fn the_machines_own_addresses_are_refused() {
        let policy = closed();
        // An address the machine holds, even a public one, is refused; others are not.
        let own = [ip("8.8.4.4"), ip("2606:4700::6810:1")];
        for a in own {
            let why = policy.check_with(a, &own).unwrap_err();
            assert!(why.contains("an address of this machine"), "{why}");
            assert!(policy.check_with(a, &[]).is_ok());
        }
        assert!(policy.check_with(ip("::ffff:8.8.4.4"), &own).is_err());
        // And the real list: every address of this machine's interfaces.
        let interfaces = if_addrs::get_if_addrs().expect("the interfaces list");
        assert!(!interfaces.is_empty());
        for i in interfaces {
            assert!(policy.check(i.ip()).is_err(), "{} is refused", i.ip());
        }
        assert!(
            EgressPolicy::default().check(ip("127.0.0.1")).is_ok(),
            "without the switch, local targets are allowed"
        );
    }

    #[test]
    fn a_proxy_url_is_validated_and_its_password_never_shown() {
        let p = EgressPolicy::default()
            .with_proxy(Some("http://u:hunter2secret@proxy.internal:3128"))
            .unwrap();
        let shown = format!("{p:?}");
        assert!(shown.contains("proxy.internal") && !shown.contains("hunter2secret"));
        for bad in [
            "proxy.internal:3128",
            "socks5://p:1080",
            "file:///x",
            "http://",
        ] {
            let why = EgressPolicy::default().with_proxy(Some(bad)).unwrap_err();
            assert!(why.contains("proxy URL"), "{bad}: {why}");
        }
    }

    #[tokio::test]
    async fn with_a_proxy_a_name_is_refused_when_any_address_is_forbidden() {
        let proxied = closed().with_proxy(Some("http://localhost:3128")).unwrap();
        let url = url::Url::parse("http://localhost:8080/hook").unwrap();
        match proxied.check_target(&url).await {
            Err(TargetError::Refused(why)) => assert!(why.contains("loopback"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Without a proxy, names are left to the resolver at connect time; literals are checked.
        assert_eq!(closed().check_target(&url).await, Ok(()));
        let literal = url::Url::parse("http://[::127.0.0.1]:8080/").unwrap();
        assert!(matches!(
            closed().check_target(&literal).await,
            Err(TargetError::Refused(_))
        ));
        let nowhere = url::Url::parse("http://no-such-host.invalid/").unwrap();
        assert!(matches!(
            proxied.check_target(&nowhere).await,
            Err(TargetError::Unresolved(_))
        ));

        // The resolver refuses loopback, except for the configured proxy's own name.
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let plain = PolicyResolver::new(&closed());
        let err = plain.resolve(name("localhost")).await.err().unwrap();
        assert!(err.to_string().contains(REFUSED), "{err}");
        let through = PolicyResolver::new(&proxied);
        assert!(through.resolve(name("localhost")).await.is_ok());
    }
}
