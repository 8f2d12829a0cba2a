//! SSRF guard: which addresses Skyhook is willing to call (SPEC §4 "SSRF").
//!
//! Two checks use this module:
//!
//! * **create time** ([`check_url_at_create`]): the endpoint URL must be a plain
//!   absolute `https` (or `http` in local mode) URL without credentials; a host that
//!   is an IP literal (in any form a resolver accepts) or a `localhost` name is
//!   checked against the [`AddressPolicy`]. Host names are *not* resolved here: DNS
//!   can change between create and send, so the authoritative check is at send time.
//! * **send time** (`crate::sender::HttpSender`): the sender resolves the host
//!   itself through a [`HostResolver`] and refuses the call when any resolved
//!   address is blocked; literal IP hosts are checked with [`check_host`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use async_trait::async_trait;
use url::{Host, Url};

use crate::domain::limits::MAX_URL_CHARS;

/// Which destination addresses are acceptable.
///
/// The default refuses everything that is not a public unicast address, loopback
/// included. `allow_loopback` (local/test mode only, never the Lambda default)
/// unblocks `127.0.0.0/8`, `::1` and IPv4-mapped `::ffff:127.0.0.0/104`, nothing
/// else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_loopback: bool,
}

impl AddressPolicy {
    /// `Ok(())` when Skyhook may connect to `ip`, else the range that blocks it.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), BlockedReason> {
        let reason = match ip {
            IpAddr::V4(v4) => classify_v4(v4).map(|(range, cidr)| BlockedReason { range, cidr, via: None }),
            IpAddr::V6(v6) => classify_v6(v6),
        };
        match reason {
            None => Ok(()),
            Some(reason) if self.allow_loopback && reason.is_plain_loopback() => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

/// The named special-purpose range an address falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockedRange {
    /// `0.0.0.0`, `::`
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`
    Private,
    /// `100.64.0.0/10`
    Cgnat,
    /// `169.254.0.0/16` (incl. the cloud metadata service), `fe80::/10`
    LinkLocal,
    /// `192.0.0.0/24`, `2001::/23`
    IetfProtocolAssignment,
    /// `2001::/32`
    Teredo,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`
    Documentation,
    /// `192.88.99.0/24`
    SixToFourRelayAnycast,
    /// `198.18.0.0/15`
    Benchmarking,
    /// `224.0.0.0/4`, `ff00::/8`
    Multicast,
    /// `240.0.0.0/4`, and IPv6 outside global unicast `2000::/3`
    Reserved,
    /// `255.255.255.255`
    Broadcast,
    /// `100::/64`
    Discard,
    /// `fc00::/7`
    UniqueLocal,
    /// `fec0::/10` (deprecated site-local)
    SiteLocal,
}

impl BlockedRange {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockedRange::Unspecified => "unspecified",
            BlockedRange::ThisNetwork => "this-network",
            BlockedRange::Loopback => "loopback",
            BlockedRange::Private => "private",
            BlockedRange::Cgnat => "cgnat",
            BlockedRange::LinkLocal => "link-local",
            BlockedRange::IetfProtocolAssignment => "ietf-protocol-assignment",
            BlockedRange::Teredo => "teredo",
            BlockedRange::Documentation => "documentation",
            BlockedRange::SixToFourRelayAnycast => "6to4-relay-anycast",
            BlockedRange::Benchmarking => "benchmarking",
            BlockedRange::Multicast => "multicast",
            BlockedRange::Reserved => "reserved",
            BlockedRange::Broadcast => "broadcast",
            BlockedRange::Discard => "discard",
            BlockedRange::UniqueLocal => "unique-local",
            BlockedRange::SiteLocal => "site-local",
        }
    }
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an IPv4 address was carried inside an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:0:0/96`
    Ipv4Mapped,
    /// `::/96` (deprecated)
    Ipv4Compatible,
    /// `64:ff9b::/96`
    Nat64,
    /// `2002::/16`
    SixToFour,
}

impl Embedding {
    pub fn as_str(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "ipv4-mapped",
            Embedding::Ipv4Compatible => "ipv4-compatible",
            Embedding::Nat64 => "nat64",
            Embedding::SixToFour => "6to4",
        }
    }
}

/// Why an address is refused: the range, its CIDR, and — for IPv6 addresses that
/// embed an IPv4 one — how it was embedded (the range is then the IPv4 range).
///
/// Displays as e.g. `link-local (169.254.0.0/16)` or
/// `ipv4-mapped loopback (127.0.0.0/8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockedReason {
    pub range: BlockedRange,
    pub cidr: &'static str,
    pub via: Option<Embedding>,
}

impl BlockedReason {
    /// Loopback that `allow_loopback` may unblock: `127/8`, `::1` or IPv4-mapped
    /// `127/8` (which the OS treats exactly like `127/8`). Loopback reached through
    /// NAT64, 6to4 or the deprecated IPv4-compatible form stays blocked.
    fn is_plain_loopback(&self) -> bool {
        self.range == BlockedRange::Loopback && matches!(self.via, None | Some(Embedding::Ipv4Mapped))
    }
}

impl fmt::Display for BlockedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(via) = self.via {
            write!(f, "{} ", via.as_str())?;
        }
        write!(f, "{} ({})", self.range, self.cidr)
    }
}

impl std::error::Error for BlockedReason {}

/// `(network, prefix length, range, cidr)`, most specific first where they overlap.
const V4_RANGES: &[(u32, u8, BlockedRange, &str)] = &[
    (0xffff_ffff, 32, BlockedRange::Broadcast, "255.255.255.255/32"),
    (0x0000_0000, 32, BlockedRange::Unspecified, "0.0.0.0/32"),
    (0x0000_0000, 8, BlockedRange::ThisNetwork, "0.0.0.0/8"),
    (0x0a00_0000, 8, BlockedRange::Private, "10.0.0.0/8"),
    (0x6440_0000, 10, BlockedRange::Cgnat, "100.64.0.0/10"),
    (0x7f00_0000, 8, BlockedRange::Loopback, "127.0.0.0/8"),
    (0xa9fe_0000, 16, BlockedRange::LinkLocal, "169.254.0.0/16"),
    (0xac10_0000, 12, BlockedRange::Private, "172.16.0.0/12"),
    (0xc000_0000, 24, BlockedRange::IetfProtocolAssignment, "192.0.0.0/24"),
    (0xc000_0200, 24, BlockedRange::Documentation, "192.0.2.0/24"),
    (0xc058_6300, 24, BlockedRange::SixToFourRelayAnycast, "192.88.99.0/24"),
    (0xc0a8_0000, 16, BlockedRange::Private, "192.168.0.0/16"),
    (0xc612_0000, 15, BlockedRange::Benchmarking, "198.18.0.0/15"),
    (0xc633_6400, 24, BlockedRange::Documentation, "198.51.100.0/24"),
    (0xcb00_7100, 24, BlockedRange::Documentation, "203.0.113.0/24"),
    (0xe000_0000, 4, BlockedRange::Multicast, "224.0.0.0/4"),
    (0xf000_0000, 4, BlockedRange::Reserved, "240.0.0.0/4"),
];

/// Plain IPv6 ranges (the embedding ranges are handled in [`classify_v6`]).
const V6_RANGES: &[(u128, u8, BlockedRange, &str)] = &[
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, BlockedRange::Discard, "100::/64"),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, BlockedRange::Teredo, "2001::/32"),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, BlockedRange::IetfProtocolAssignment, "2001::/23"),
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, BlockedRange::Documentation, "2001:db8::/32"),
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, BlockedRange::Documentation, "3fff::/20"),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, BlockedRange::UniqueLocal, "fc00::/7"),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, BlockedRange::LinkLocal, "fe80::/10"),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, BlockedRange::SiteLocal, "fec0::/10"),
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, BlockedRange::Multicast, "ff00::/8"),
];

fn in_v4(addr: u32, net: u32, prefix: u8) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    addr & mask == net & mask
}

fn in_v6(addr: u128, net: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    addr & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<(BlockedRange, &'static str)> {
    let bits = u32::from(ip);
    V4_RANGES.iter().find(|(net, prefix, _, _)| in_v4(bits, *net, *prefix)).map(|(_, _, range, cidr)| (*range, *cidr))
}

fn classify_v6(ip: Ipv6Addr) -> Option<BlockedReason> {
    let bits = u128::from(ip);
    let plain = |range, cidr| Some(BlockedReason { range, cidr, via: None });
    let embedded = |v4: u32, via| {
        classify_v4(Ipv4Addr::from(v4)).map(|(range, cidr)| BlockedReason { range, cidr, via: Some(via) })
    };
    if bits == 0 {
        return plain(BlockedRange::Unspecified, "::/128");
    }
    if bits == 1 {
        return plain(BlockedRange::Loopback, "::1/128");
    }
    // ::ffff:a.b.c.d — the OS connects to a.b.c.d itself.
    if in_v6(bits, 0x0000_0000_0000_0000_0000_ffff_0000_0000, 96) {
        return embedded(bits as u32, Embedding::Ipv4Mapped);
    }
    // ::a.b.c.d (deprecated IPv4-compatible).
    if in_v6(bits, 0, 96) {
        return embedded(bits as u32, Embedding::Ipv4Compatible);
    }
    // 64:ff9b::a.b.c.d — a NAT64 gateway forwards to a.b.c.d.
    if in_v6(bits, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return embedded(bits as u32, Embedding::Nat64);
    }
    // 2002:aabb:ccdd::/48 — 6to4 tunnels to a.b.c.d.
    if in_v6(bits, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return embedded((bits >> 80) as u32, Embedding::SixToFour);
    }
    if let Some((_, _, range, cidr)) = V6_RANGES.iter().find(|(net, prefix, _, _)| in_v6(bits, *net, *prefix)) {
        return plain(*range, cidr);
    }
    // Only 2000::/3 is allocated for global unicast; everything else is either
    // special-purpose (handled above) or unallocated, never a public endpoint.
    if !in_v6(bits, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return plain(BlockedRange::Reserved, "outside 2000::/3");
    }
    None
}

/// Recognises a host that is an IP literal: IPv6 with or without brackets, and
/// IPv4 in every form `inet_aton` and the WHATWG URL parser accept — dotted
/// decimal, decimal integer (`2130706433`), octal parts (`0177.0.0.1`), hex parts
/// (`0x7f.0.0.1`, `0x7f000001`), shortened (`127.1`, `10.1.1`), and one trailing
/// dot. Returns `None` for anything else (a host name).
pub fn parse_host_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    if let Some(inner) = host.strip_prefix('[') {
        return inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    parse_legacy_ipv4(host).map(IpAddr::V4)
}

fn parse_legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts.iter().map(|p| parse_ipv4_part(p)).collect::<Option<_>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    // The last part fills the bytes the leading parts did not give.
    let last_bytes = 4 - leading.len() as u32;
    if *last >= 1u64 << (8 * last_bytes) {
        return None;
    }
    let mut value: u64 = *last;
    for (i, n) in leading.iter().enumerate() {
        value |= n << (8 * (3 - i as u32));
    }
    Some(Ipv4Addr::from(value as u32))
}

/// One part: `0x..` hex (`0x` alone is 0), `0..` octal, else decimal; digits only
/// (no signs, no whitespace), at most `u32::MAX`.
fn parse_ipv4_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)? as u64;
        value = value * radix as u64 + d;
        if value > u32::MAX as u64 {
            return None;
        }
    }
    Some(value)
}

/// `localhost`, `*.localhost` (RFC 6761), case-insensitive, with or without the
/// trailing dot.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Checks a URL host without resolving it: IP literals (the `url` crate already
/// normalises `2130706433`, `0x7f.1`… to `Host::Ipv4` for http(s); a domain that
/// still parses as an IP literal is checked too) and `localhost` names, which are
/// treated as `127.0.0.1`. Other host names pass; they are checked when resolved.
pub fn check_host(host: &Host<&str>, policy: &AddressPolicy) -> Result<(), BlockedReason> {
    match host {
        Host::Ipv4(ip) => policy.check_ip(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => policy.check_ip(IpAddr::V6(*ip)),
        Host::Domain(name) => {
            if let Some(ip) = parse_host_ip(name) {
                policy.check_ip(ip)
            } else if is_localhost_name(name) {
                policy.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                Ok(())
            }
        }
    }
}

/// Why an endpoint URL was refused; `Display` is the user-facing message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    #[error("URL must be at most {max} characters")]
    TooLong { max: usize },
    #[error("URL must be absolute, e.g. https://example.com/webhooks")]
    NotAbsolute,
    #[error("URL is not valid: {0}")]
    Invalid(String),
    #[error("URL must use https")]
    HttpsRequired,
    #[error("URL must use http or https")]
    UnsupportedScheme,
    #[error("URL must not contain credentials (user:password@)")]
    Credentials,
    #[error("URL must have a host")]
    MissingHost,
    #[error("URL host {host} is in a blocked address range: {reason}")]
    Blocked { host: String, reason: BlockedReason },
}

impl UrlRejection {
    /// The user-facing message (same as `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Validates an endpoint URL when it is created or updated. Host names are not
/// resolved (see the module docs); returns the parsed, normalised URL.
pub fn check_url_at_create(url: &str, require_https: bool, policy: &AddressPolicy) -> Result<Url, UrlRejection> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(UrlRejection::TooLong { max: MAX_URL_CHARS });
    }
    let parsed = Url::parse(url).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => UrlRejection::NotAbsolute,
        url::ParseError::EmptyHost => UrlRejection::MissingHost,
        other => UrlRejection::Invalid(other.to_string()),
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if !require_https => {}
        "http" => return Err(UrlRejection::HttpsRequired),
        _ if require_https => return Err(UrlRejection::HttpsRequired),
        _ => return Err(UrlRejection::UnsupportedScheme),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRejection::Credentials);
    }
    let host = parsed.host().ok_or(UrlRejection::MissingHost)?;
    check_host(&host, policy).map_err(|reason| UrlRejection::Blocked { host: host.to_string(), reason })?;
    Ok(parsed)
}

/// Name resolution, behind a trait so tests can map names to chosen addresses.
#[async_trait]
pub trait HostResolver: Send + Sync {
    /// All addresses of `host`, with `port` set on each.
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo` through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl HostResolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// A fixed name → addresses table for tests; unknown names fail with `NotFound`.
/// Names are case-insensitive and a trailing dot is ignored.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    pub fn new(hosts: HashMap<String, Vec<IpAddr>>) -> Self {
        hosts.into_iter().fold(Self::default(), |r, (host, ips)| r.with(&host, ips))
    }

    /// Adds (or replaces) one name.
    pub fn with(mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.hosts.insert(normalise_name(host), ips.into_iter().collect());
        self
    }
}

fn normalise_name(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[async_trait]
impl HostResolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match self.hosts.get(&normalise_name(host)) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy { allow_loopback: false };
    const LOOPBACK_OK: AddressPolicy = AddressPolicy { allow_loopback: true };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("test address {s} must parse"))
    }

    fn blocked_as(policy: &AddressPolicy, addr: &str) -> Option<BlockedRange> {
        policy.check_ip(ip(addr)).err().map(|r| r.range)
    }

    #[test]
    fn given_every_blocked_ipv4_range_when_checked_then_blocked_with_its_name() {
        use BlockedRange::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", ThisNetwork),
            ("0.255.255.255", ThisNetwork),
            ("10.0.0.0", Private),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.64.0.0", Cgnat),
            ("100.127.255.255", Cgnat),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.0.0.1", IetfProtocolAssignment),
            ("192.0.0.255", IetfProtocolAssignment),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", SixToFourRelayAnycast),
            ("192.168.0.1", Private),
            ("192.168.255.255", Private),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("254.255.255.255", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (addr, range) in cases {
            assert_eq!(blocked_as(&STRICT, addr), Some(range), "{addr}");
        }
    }

    #[test]
    fn given_public_ipv4_addresses_next_to_blocked_ranges_when_checked_then_allowed() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ] {
            assert_eq!(STRICT.check_ip(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn given_every_blocked_ipv6_range_when_checked_then_blocked_with_its_name() {
        use BlockedRange::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("100::", Discard),
            ("100::ffff:ffff:ffff:ffff", Discard),
            ("2001::1", Teredo),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Teredo),
            ("2001:1::1", IetfProtocolAssignment),
            ("2001:1ff:ffff::1", IetfProtocolAssignment),
            ("2001:db8::1", Documentation),
            ("2001:db8:ffff::1", Documentation),
            ("3fff::1", Documentation),
            ("fc00::1", UniqueLocal),
            ("fd12:3456:789a::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fec0::1", SiteLocal),
            ("feff::1", SiteLocal),
            ("ff02::1", Multicast),
            ("ff0e::101", Multicast),
            ("4000::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("::1:0:0:1", Reserved),
        ];
        for (addr, range) in cases {
            assert_eq!(blocked_as(&STRICT, addr), Some(range), "{addr}");
        }
    }

    #[test]
    fn given_public_ipv6_addresses_when_checked_then_allowed() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2003::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(STRICT.check_ip(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn given_ipv6_forms_embedding_ipv4_when_checked_then_the_embedded_address_decides() {
        let cases = [
            ("::ffff:127.0.0.1", BlockedRange::Loopback, Embedding::Ipv4Mapped),
            ("::ffff:7f00:1", BlockedRange::Loopback, Embedding::Ipv4Mapped),
            ("::ffff:169.254.169.254", BlockedRange::LinkLocal, Embedding::Ipv4Mapped),
            ("::ffff:10.0.0.1", BlockedRange::Private, Embedding::Ipv4Mapped),
            ("::ffff:0.0.0.0", BlockedRange::Unspecified, Embedding::Ipv4Mapped),
            ("::127.0.0.1", BlockedRange::Loopback, Embedding::Ipv4Compatible),
            ("::10.1.2.3", BlockedRange::Private, Embedding::Ipv4Compatible),
            ("64:ff9b::127.0.0.1", BlockedRange::Loopback, Embedding::Nat64),
            ("64:ff9b::a9fe:a9fe", BlockedRange::LinkLocal, Embedding::Nat64),
            ("2002:7f00:1::", BlockedRange::Loopback, Embedding::SixToFour),
            ("2002:c0a8:101::1", BlockedRange::Private, Embedding::SixToFour),
            ("2002:a9fe:a9fe:1::1", BlockedRange::LinkLocal, Embedding::SixToFour),
        ];
        for (addr, range, via) in cases {
            let reason = STRICT.check_ip(ip(addr)).expect_err(addr);
            assert_eq!((reason.range, reason.via), (range, Some(via)), "{addr}");
        }
        for addr in ["::ffff:8.8.8.8", "::8.8.8.8", "64:ff9b::1.1.1.1", "2002:808:808::1"] {
            assert_eq!(STRICT.check_ip(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn given_allow_loopback_when_checked_then_only_127_8_and_ipv6_loopback_are_unblocked() {
        for addr in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(STRICT.check_ip(ip(addr)).is_err(), "{addr} blocked by default");
            assert_eq!(LOOPBACK_OK.check_ip(ip(addr)), Ok(()), "{addr} allowed with allow_loopback");
        }
        for addr in [
            "0.0.0.0",
            "10.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "100.64.0.1",
            "::",
            "fe80::1",
            "fc00::1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "2002:7f00:1::",
        ] {
            assert!(LOOPBACK_OK.check_ip(ip(addr)).is_err(), "{addr} still blocked");
        }
    }

    #[test]
    fn given_a_default_policy_when_built_then_loopback_is_refused() {
        assert!(!AddressPolicy::default().allow_loopback);
        assert!(AddressPolicy::default().check_ip(ip("127.0.0.1")).is_err());
    }

    #[test]
    fn given_blocked_reasons_when_displayed_then_they_name_the_range_and_cidr() {
        let show = |addr: &str| STRICT.check_ip(ip(addr)).unwrap_err().to_string();
        assert_eq!(show("127.0.0.1"), "loopback (127.0.0.0/8)");
        assert_eq!(show("169.254.169.254"), "link-local (169.254.0.0/16)");
        assert_eq!(show("100.64.1.1"), "cgnat (100.64.0.0/10)");
        assert_eq!(show("fd00::1"), "unique-local (fc00::/7)");
        assert_eq!(show("::ffff:127.0.0.1"), "ipv4-mapped loopback (127.0.0.0/8)");
        assert_eq!(show("64:ff9b::10.0.0.1"), "nat64 private (10.0.0.0/8)");
        assert_eq!(show("2002:a00:1::"), "6to4 private (10.0.0.0/8)");
        assert_eq!(show("::"), "unspecified (::/128)");
        assert_eq!(show("ff02::1"), "multicast (ff00::/8)");
    }

    #[test]
    fn given_legacy_ipv4_spellings_when_parsed_then_they_are_recognised() {
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().unwrap()));
        let cases = [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0177.0.0.01", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.0x0.0x0.0x1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("10.1.1", "10.1.0.1"),
            ("10.65536", "10.1.0.0"),
            ("169.254.43518", "169.254.169.254"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("2852039166", "169.254.169.254"),
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("127.0.0.1.", "127.0.0.1"),
            ("8.8.8.8", "8.8.8.8"),
            ("4294967295", "255.255.255.255"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_host_ip(input), v4(expected), "{input}");
        }
    }

    #[test]
    fn given_ipv6_literals_when_parsed_then_brackets_are_optional() {
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().unwrap()));
        assert_eq!(parse_host_ip("[::1]"), v6("::1"));
        assert_eq!(parse_host_ip("::1"), v6("::1"));
        assert_eq!(parse_host_ip("[::ffff:127.0.0.1]"), v6("::ffff:7f00:1"));
        assert_eq!(parse_host_ip("[fe80::1]"), v6("fe80::1"));
        assert_eq!(parse_host_ip("[::1"), None);
        assert_eq!(parse_host_ip("[example.com]"), None);
    }

    #[test]
    fn given_names_and_malformed_numbers_when_parsed_then_they_are_not_ip_literals() {
        for input in [
            "",
            ".",
            "example.com",
            "1e100.net",
            "localhost",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "127.16777216",
            "4294967296",
            "08.0.0.1",
            "0x1g.0.0.1",
            "+1.0.0.1",
            "1..2",
            "1.2.3.4..",
            "0xffffffffff",
        ] {
            assert_eq!(parse_host_ip(input), None, "{input:?}");
        }
    }

    #[test]
    fn given_localhost_names_when_checked_then_they_are_loopback() {
        for name in ["localhost", "LOCALHOST", "localhost.", "api.localhost", "a.b.localhost."] {
            assert!(is_localhost_name(name), "{name}");
        }
        for name in ["localhost.com", "notlocalhost", "localhosts", "example.com"] {
            assert!(!is_localhost_name(name), "{name}");
        }
    }

    fn rejection(url: &str) -> UrlRejection {
        check_url_at_create(url, true, &STRICT).expect_err(url)
    }

    #[test]
    fn given_a_public_https_url_when_created_then_accepted_and_normalised() {
        let url = check_url_at_create("https://Example.COM/hooks?x=1", true, &STRICT).unwrap();
        assert_eq!(url.as_str(), "https://example.com/hooks?x=1");
        assert!(check_url_at_create("https://93.184.216.34:8443/", true, &STRICT).is_ok());
        assert!(check_url_at_create("https://[2606:4700::1]/", true, &STRICT).is_ok());
        // Names are not resolved at create time.
        assert!(check_url_at_create("https://internal.corp.example/", true, &STRICT).is_ok());
    }

    #[test]
    fn given_the_scheme_when_created_then_https_is_required_unless_relaxed() {
        assert_eq!(rejection("http://example.com/"), UrlRejection::HttpsRequired);
        assert_eq!(rejection("ftp://example.com/"), UrlRejection::HttpsRequired);
        assert!(check_url_at_create("http://example.com/", false, &STRICT).is_ok());
        assert_eq!(check_url_at_create("ftp://example.com/", false, &STRICT), Err(UrlRejection::UnsupportedScheme));
        assert_eq!(check_url_at_create("mailto:ops@example.com", false, &STRICT), Err(UrlRejection::UnsupportedScheme));
        assert_eq!(rejection("http://example.com/").to_string(), "URL must use https");
    }

    #[test]
    fn given_malformed_urls_when_created_then_rejected_with_a_message() {
        assert_eq!(rejection("/relative/path"), UrlRejection::NotAbsolute);
        assert_eq!(rejection("example.com/hooks"), UrlRejection::NotAbsolute);
        assert_eq!(rejection("https://"), UrlRejection::MissingHost);
        assert!(matches!(rejection("https://exa mple.com/"), UrlRejection::Invalid(_)));
        assert!(matches!(rejection("https://example.com:99999/"), UrlRejection::Invalid(_)));
        assert!(rejection("https://example.com:99999/").to_string().starts_with("URL is not valid: "));
    }

    #[test]
    fn given_credentials_in_the_url_when_created_then_refused() {
        for url in ["https://user:pass@example.com/", "https://user@example.com/", "https://:pass@example.com/"] {
            assert_eq!(rejection(url), UrlRejection::Credentials, "{url}");
        }
        assert_eq!(
            rejection("https://u:p@example.com/").to_string(),
            "URL must not contain credentials (user:password@)"
        );
    }

    #[test]
    fn given_a_url_over_the_length_limit_when_created_then_refused() {
        let base = "https://example.com/";
        let ok = format!("{base}{}", "a".repeat(MAX_URL_CHARS - base.len()));
        assert!(check_url_at_create(&ok, true, &STRICT).is_ok());
        let long = format!("{ok}a");
        assert_eq!(rejection(&long), UrlRejection::TooLong { max: MAX_URL_CHARS });
        assert_eq!(rejection(&long).to_string(), "URL must be at most 2048 characters");
    }

    #[test]
    fn given_ip_literal_hosts_in_any_spelling_when_created_then_blocked_ranges_are_refused() {
        let cases = [
            ("https://127.0.0.1/", BlockedRange::Loopback),
            ("https://2130706433/", BlockedRange::Loopback),
            ("https://0177.0.0.1/", BlockedRange::Loopback),
            ("https://0x7f.0.0.1/", BlockedRange::Loopback),
            ("https://0x7f000001/", BlockedRange::Loopback),
            ("https://127.1/", BlockedRange::Loopback),
            ("https://[::1]/", BlockedRange::Loopback),
            ("https://[::ffff:127.0.0.1]/", BlockedRange::Loopback),
            ("https://[::ffff:169.254.169.254]/", BlockedRange::LinkLocal),
            ("https://169.254.169.254/latest/meta-data/", BlockedRange::LinkLocal),
            ("https://10.1.1/", BlockedRange::Private),
            ("https://0/", BlockedRange::Unspecified),
            ("https://[fd00::1]/", BlockedRange::UniqueLocal),
            ("https://[fe80::1]/", BlockedRange::LinkLocal),
            ("https://100.64.0.1/", BlockedRange::Cgnat),
            ("https://224.0.0.1/", BlockedRange::Multicast),
            ("https://localhost/", BlockedRange::Loopback),
            ("https://LocalHost./", BlockedRange::Loopback),
            ("https://app.localhost:8443/", BlockedRange::Loopback),
        ];
        for (url, range) in cases {
            match rejection(url) {
                UrlRejection::Blocked { reason, .. } => assert_eq!(reason.range, range, "{url}"),
                other => panic!("{url}: expected Blocked, got {other:?}"),
            }
        }
    }

    #[test]
    fn given_a_blocked_host_when_created_then_the_message_names_the_host_and_range() {
        assert_eq!(
            rejection("https://169.254.169.254/").to_string(),
            "URL host 169.254.169.254 is in a blocked address range: link-local (169.254.0.0/16)"
        );
        assert_eq!(
            rejection("https://2130706433/").to_string(),
            "URL host 127.0.0.1 is in a blocked address range: loopback (127.0.0.0/8)"
        );
        assert_eq!(
            rejection("https://[::ffff:10.0.0.1]/").to_string(),
            "URL host [::ffff:a00:1] is in a blocked address range: ipv4-mapped private (10.0.0.0/8)"
        );
    }

    #[test]
    fn given_allow_loopback_when_created_then_loopback_urls_pass_but_private_ones_do_not() {
        for url in ["http://127.0.0.1:8080/", "http://localhost:3000/hook", "http://[::1]:9000/", "http://2130706433/"]
        {
            assert!(check_url_at_create(url, false, &LOOPBACK_OK).is_ok(), "{url}");
        }
        for url in ["http://10.0.0.1/", "http://169.254.169.254/", "http://[fe80::1]/"] {
            assert!(
                matches!(check_url_at_create(url, false, &LOOPBACK_OK), Err(UrlRejection::Blocked { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn given_a_domain_host_that_is_a_numeric_literal_when_checked_then_it_is_treated_as_an_ip() {
        // Non-special schemes keep such hosts as opaque domains; check_host still
        // recognises them.
        assert!(check_host(&Host::Domain("0x7f.1"), &STRICT).is_err());
        assert!(check_host(&Host::Domain("2130706433"), &STRICT).is_err());
        assert!(check_host(&Host::Domain("[::1]"), &STRICT).is_err());
        assert!(check_host(&Host::Domain("example.com"), &STRICT).is_ok());
    }

    #[tokio::test]
    async fn given_a_static_resolver_when_resolving_then_known_names_map_and_unknown_ones_fail() {
        let resolver = StaticResolver::default().with("Internal.Test", [ip("10.0.0.1"), ip("::1")]);
        let addrs = resolver.resolve("internal.test.", 443).await.unwrap();
        assert_eq!(addrs, vec!["10.0.0.1:443".parse().unwrap(), "[::1]:443".parse().unwrap()]);
        let err = resolver.resolve("unknown.test", 443).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        let from_map = StaticResolver::new(HashMap::from([("A.test".to_string(), vec![ip("1.2.3.4")])]));
        assert_eq!(from_map.resolve("a.test", 80).await.unwrap(), vec!["1.2.3.4:80".parse().unwrap()]);
    }
}
