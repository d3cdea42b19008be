//! The SSRF guard's rules: which addresses and ports a webhook may reach. The delivery
//! path resolves the host at send time and checks every address here before connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::Host;

/// Networks and host names an operator allows despite the rules (plain http, any port,
/// private addresses), e.g. loopback in development and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl Allowlist {
    /// Parses a comma-separated list of CIDR networks, single addresses and host names.
    ///
    /// # Errors
    /// The first entry that is none of those.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                list.nets.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "\"{entry}\" is not a network, an address or a host name"
                ));
            }
        }
        Ok(list)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    #[must_use]
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// A host as written in a URL: a listed name, or an address in a listed network.
    #[must_use]
    pub fn permits_host(&self, host: &Host<&str>) -> bool {
        match host {
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                self.hosts.contains(&name)
            }
            Host::Ipv4(ip) => self.permits_ip(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => self.permits_ip(IpAddr::V6(*ip)),
        }
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a destination is refused; the message is recorded on the failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is a {1} address")]
    Address(IpAddr, &'static str),
    #[error("port {0} is not allowed (only 80 and 443)")]
    Port(u16),
    #[error("the host resolved to no address")]
    Unresolved,
}

/// The address as it will be connected to: IPv4 wrapped in IPv6 (mapped, NAT64) is
/// judged as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    // NAT64 well-known prefix 64:ff9b::/96 reaches the IPv4 address in its low bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// What kind of non-public address `ip` is, if it is one.
#[must_use]
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if ip.is_documentation() || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        Some("reserved")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("reserved")
    } else if first == 0x2002 {
        // 6to4 embeds an IPv4 address that the relay would reach.
        let s = ip.segments();
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        classify_v4(Ipv4Addr::new(a, b, c, d))
    } else {
        None
    }
}

/// Whether a delivery may connect to `ip`.
///
/// # Errors
/// [`Refusal::Address`] for a non-public address that is not allowlisted.
pub fn check_address(ip: IpAddr, allowlist: &Allowlist) -> Result<(), Refusal> {
    match classify(ip) {
        Some(kind) if !allowlist.permits_ip(ip) => Err(Refusal::Address(ip, kind)),
        _ => Ok(()),
    }
}

/// Only the standard web ports, unless the host is allowlisted.
///
/// # Errors
/// [`Refusal::Port`].
pub const fn check_port(port: u16, host_allowlisted: bool) -> Result<(), Refusal> {
    if host_allowlisted || port == 80 || port == 443 {
        Ok(())
    } else {
        Err(Refusal::Port(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn url_host(raw: &str) -> IpAddr {
        match url::Url::parse(raw).unwrap().host().unwrap() {
            Host::Ipv4(v4) => IpAddr::V4(v4),
            Host::Ipv6(v6) => IpAddr::V6(v6),
            Host::Domain(d) => panic!("{raw} parsed as the domain {d}"),
        }
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let none = Allowlist::default();
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fc00::1", "private"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(
                check_address(ip(addr), &none),
                Err(Refusal::Address(ip(addr), kind)),
                "{addr}"
            );
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert_eq!(check_address(ip(public), &none), Ok(()), "{public}");
        }
    }

    #[test]
    fn odd_spellings_of_loopback_are_still_loopback() {
        // The URL parser normalizes decimal, octal and hex IPv4 forms; the guard then
        // sees the real address.
        for raw in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
        ] {
            let addr = url_host(raw);
            assert_eq!(classify(addr), Some("loopback"), "{raw} → {addr}");
        }
        assert_eq!(
            classify(url_host("http://0xa9fea9fe/")),
            Some("cloud metadata")
        );
    }

    #[test]
    fn the_allowlist_lets_listed_networks_and_hosts_through() {
        let list = Allowlist::parse("127.0.0.0/8, ::1, hooks.internal").unwrap();
        assert_eq!(check_address(ip("127.0.0.1"), &list), Ok(()));
        assert_eq!(check_address(ip("::ffff:127.0.0.1"), &list), Ok(()));
        assert_eq!(check_address(ip("::1"), &list), Ok(()));
        assert!(check_address(ip("10.0.0.1"), &list).is_err());
        assert!(list.permits_host(&Host::Domain("HOOKS.internal")));
        assert!(!list.permits_host(&Host::Domain("other.internal")));
        assert!(Allowlist::parse("not a host!").is_err());
        assert!(Allowlist::parse("").unwrap().is_empty());
    }

    #[test]
    fn only_web_ports_unless_allowlisted() {
        assert_eq!(check_port(443, false), Ok(()));
        assert_eq!(check_port(80, false), Ok(()));
        assert_eq!(check_port(8080, false), Err(Refusal::Port(8080)));
        assert_eq!(check_port(8080, true), Ok(()));
    }
}
