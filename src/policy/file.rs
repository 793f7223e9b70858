//! A policy file (TOML): first-match rules, services (DNAT) and static endpoint locations, for
//! nodes without cni-ctl and for the reference cni-ctl server (`shardflow cnictl`).
//!
//! ```toml
//! version = 3
//! default = "deny"
//!
//! [[rule]]
//! action = "allow"
//! src = "10.244.0.0/16"
//! dst = "10.244.1.0/24"
//! protocol = "tcp"
//! ports = "8000-8080"
//!
//! [[service]]
//! vip = "10.96.0.10"
//! port = 53
//! protocol = "udp"
//! endpoints = [{ ip = "10.244.1.2", port = 5353, weight = 1 }]
//!
//! [[endpoint]]
//! ip = "10.244.1.2"
//! mac = "0a:58:0a:f4:01:02"
//! port = 5
//! ```
//!
//! Rules see the connection as the query writes it (initiator first, the VIP for a service);
//! `ports` matches the destination port. The format is described in `docs/policy.md`.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::decision::{Location, Locator};
use super::error::PolicyError;
use super::{DstType, Endpoint, NetworkPolicy, PolicyQuery};
use crate::packet::MacAddr;

/// A rule's verdict, and the file's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Deny,
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `fd00::/64`; a bare address is a /32 or /128).
/// An IPv4 network never contains an IPv6 address and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// `None` if the prefix is too long for the family or `addr` has host bits set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpCidr> {
        let c = IpCidr { addr, prefix };
        (prefix <= c.max_prefix() && c.network(addr) == addr).then_some(c)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// `ip` with the host bits cleared (same family as `ip`).
    fn network(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX.checked_shl(128 - u32::from(self.prefix.min(128))).unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && self.network(ip) == self.addr
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<IpCidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} is not 0-{max}"))?,
        };
        IpCidr::new(addr, prefix).ok_or_else(|| {
            let net = IpCidr { addr, prefix }.network(addr);
            format!("{s:?} has host bits set (did you mean {net}/{prefix}?)")
        })
    }
}

/// Which addresses a rule side matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// `"any"` (or the side left out): IPv4 and IPv6.
    Any,
    Net(IpCidr),
}

impl AddrMatch {
    fn matches(&self, ip: IpAddr) -> bool {
        match self {
            AddrMatch::Any => true,
            AddrMatch::Net(n) => n.contains(ip),
        }
    }
}

/// A rule's protocol. `Icmp` matches ICMP (1) and ICMPv6 (58).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Any,
}

impl Protocol {
    fn parse(s: &str) -> Result<Protocol, String> {
        // Case-insensitive, without allocating (a million rules are parsed at a time).
        const NAMES: [(&str, Protocol); 5] = [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("sctp", Protocol::Sctp),
            ("icmp", Protocol::Icmp),
            ("any", Protocol::Any),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("{s:?} is not tcp, udp, sctp, icmp or any"))
    }

    /// Whether a packet of IP protocol `proto` is of this protocol.
    pub fn matches(self, proto: u8) -> bool {
        match self {
            Protocol::Tcp => proto == 6,
            Protocol::Udp => proto == 17,
            Protocol::Sctp => proto == 132,
            Protocol::Icmp => proto == 1 || proto == 58,
            Protocol::Any => true,
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }
}

/// An inclusive destination port range (`"80"` is 80-80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    fn parse(v: &toml::Value) -> Result<PortRange, String> {
        match v {
            toml::Value::Integer(n) => PortRange::from_int(*n),
            toml::Value::String(s) => PortRange::from_text(s),
            other => Err(format!("{other} is not a port or a range (\"80\", \"1000-2000\")")),
        }
    }

    fn from_int(n: i64) -> Result<PortRange, String> {
        let p = u16::try_from(n).map_err(|_| format!("{n} is not a port (0-65535)"))?;
        Ok(PortRange { lo: p, hi: p })
    }

    fn from_text(s: &str) -> Result<PortRange, String> {
        let one = |s: &str| -> Result<u16, String> {
            s.trim().parse::<u16>().map_err(|_| format!("{s:?} is not a port (0-65535)"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let p = one(s)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is empty (low end above high end)"));
        }
        Ok(PortRange { lo, hi })
    }

    fn contains(&self, p: u16) -> bool {
        (self.lo..=self.hi).contains(&p)
    }
}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: RuleAction,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub protocol: Protocol,
    /// Destination ports (tcp/udp/sctp only); `None`: any.
    pub ports: Option<PortRange>,
}

impl Rule {
    pub fn matches(&self, q: &PolicyQuery) -> bool {
        self.protocol.matches(q.protocol)
            && self.src.matches(q.src_ip)
            && self.dst.matches(q.dst_ip)
            && self.ports.is_none_or(|r| r.contains(q.dst_port))
    }
}

/// One `[[service]]`: connections to `vip:port` are DNATed to `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub vip: IpAddr,
    pub port: u16,
    /// Tcp, Udp or Sctp.
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
}

/// One `[[endpoint]]`: where a local address lives on the bridge (for the daemon's locator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticEndpoint {
    pub ip: IpAddr,
    pub mac: MacAddr,
    /// OpenFlow port number.
    pub port: u32,
}

/// A loaded, checked policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// Put in every answer's `version`.
    pub version: u64,
    /// The verdict when no rule matches.
    pub default: RuleAction,
    /// How long an answer may be cached (`ttl_ms`; default 30 s).
    pub ttl: Duration,
    pub rules: Vec<Rule>,
    pub services: Vec<Service>,
    pub endpoints: Vec<StaticEndpoint>,
}

impl Default for PolicyFile {
    /// Allow everything, no services, no endpoints.
    fn default() -> PolicyFile {
        PolicyFile {
            version: 0,
            default: RuleAction::Allow,
            ttl: super::DEFAULT_TTL,
            rules: Vec::new(),
            services: Vec::new(),
            endpoints: Vec::new(),
        }
    }
}

// === the raw TOML ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    version: u64,
    default: Option<String>,
    ttl_ms: Option<u64>,
    /// `None`: the key is not in the text (the fast path checks the rest of the file has none).
    rule: Option<Vec<RawRule>>,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: String,
    src: Option<String>,
    dst: Option<String>,
    protocol: Option<String>,
    ports: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    vip: String,
    port: i64,
    protocol: Option<String>,
    #[serde(default)]
    endpoints: Vec<RawServiceEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceEndpoint {
    ip: String,
    #[serde(default)]
    port: i64,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    ip: String,
    mac: String,
    port: i64,
}

fn entry(key: String) -> impl Fn(String) -> PolicyError {
    move |reason| PolicyError::Entry { key: key.clone(), reason }
}

fn action(s: &str) -> Result<RuleAction, String> {
    if s.eq_ignore_ascii_case("allow") {
        Ok(RuleAction::Allow)
    } else if s.eq_ignore_ascii_case("deny") {
        Ok(RuleAction::Deny)
    } else {
        Err(format!("{s:?} is not allow or deny"))
    }
}

fn addr_match(s: Option<&str>) -> Result<AddrMatch, String> {
    match s.map(str::trim) {
        None | Some("any") | Some("*") => Ok(AddrMatch::Any),
        Some(s) => s.parse().map(AddrMatch::Net),
    }
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.trim().parse().map_err(|_| format!("{s:?} is not an IP address"))
}

fn int<T: TryFrom<i64>>(n: i64, what: &str) -> Result<T, String> {
    T::try_from(n).map_err(|_| format!("{n} is not {what}"))
}

/// The most `[[rule]]`s a policy file may hold (a bound on what a file can make the daemon
/// allocate: about 100 bytes per rule, rules and index).
pub const MAX_RULES: usize = 10_000_000;

/// One rule from its raw fields; errors name `rule[i].field`. The checks run in this order on
/// both parse paths, so both report the same first error.
fn rule_from_raw(
    i: usize,
    action_text: &str,
    src: Option<&str>,
    dst: Option<&str>,
    protocol: Option<&str>,
    ports: Option<Result<PortRange, String>>,
) -> Result<Rule, PolicyError> {
    // The entry name is formatted on error only.
    let at = |f: &'static str| move |reason: String| entry(format!("rule[{i}].{f}"))(reason);
    let protocol = match protocol {
        None => Protocol::Any,
        Some(p) => Protocol::parse(p).map_err(at("protocol"))?,
    };
    let ports = match ports {
        None => None,
        Some(r) => {
            if !protocol.has_ports() {
                return Err(at("ports")("ports need protocol tcp, udp or sctp".into()));
            }
            Some(r.map_err(at("ports"))?)
        }
    };
    Ok(Rule {
        action: action(action_text).map_err(at("action"))?,
        src: addr_match(src).map_err(at("src"))?,
        dst: addr_match(dst).map_err(at("dst"))?,
        protocol,
        ports,
    })
}

fn toml_error(e: toml::de::Error) -> PolicyError {
    PolicyError::Parse { path: String::new(), reason: e.to_string().trim_end().to_string() }
}

fn check_rule_count(n: usize) -> Result<(), PolicyError> {
    if n > MAX_RULES {
        return Err(entry("rule".into())(format!("{n} rules: at most {MAX_RULES}")));
    }
    Ok(())
}

impl PolicyFile {
    /// Reads and checks the file at `path`. Streams the file through the fast line scanner
    /// (see [`PolicyFile::parse`]); only a file the scanner does not take is read whole and
    /// parsed as TOML.
    pub fn load(path: impl AsRef<Path>) -> Result<PolicyFile, PolicyError> {
        let path = path.as_ref();
        let located = |e: PolicyError| match e {
            PolicyError::Parse { path: _, reason } => PolicyError::Parse { path: path.display().to_string(), reason },
            PolicyError::Entry { key, reason } => {
                PolicyError::Parse { path: path.display().to_string(), reason: format!("{key}: {reason}") }
            }
            other => other,
        };
        if let Some(done) = fast::scan_file(path) {
            return done.map_err(located);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        PolicyFile::parse_toml(&text).map_err(located)
    }

    /// Parses and checks policy TOML. Errors name the entry (`rule[2].src: ...`, 0-based).
    ///
    /// `[[rule]]` blocks written one `key = "value"` per line (as generators and people write
    /// them) are read by a line scanner that builds the rules directly, without a TOML document
    /// tree (which costs about 3 KB per rule); the rest of the file goes through the TOML
    /// parser. Anything the scanner does not fully understand (escapes, inline tables in a rule,
    /// multi-line strings, other headers, a TOML error anywhere) makes the whole text go through
    /// the TOML parser, so both paths give the same rules and the same errors.
    pub fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        PolicyFile::parse_fast(text).unwrap_or_else(|| PolicyFile::parse_toml(text))
    }

    /// The line scanner's path alone: `None` when it hands the text to the TOML parser.
    pub(crate) fn parse_fast(text: &str) -> Option<Result<PolicyFile, PolicyError>> {
        let mut scan = fast::Scanner::default();
        for line in text.split_inclusive('\n') {
            if !scan.feed(line) {
                return None;
            }
        }
        scan.finish()
    }

    /// The TOML parser's path for the whole text (the reference for [`PolicyFile::parse`]).
    pub fn parse_toml(text: &str) -> Result<PolicyFile, PolicyError> {
        let raw: RawFile = toml::from_str(text).map_err(toml_error)?;
        PolicyFile::from_raw(raw)
    }

    /// The file from what the TOML parser read, rules included.
    fn from_raw(raw: RawFile) -> Result<PolicyFile, PolicyError> {
        let raw_rules = raw.rule.as_deref().unwrap_or_default();
        let rules = check_rule_count(raw_rules.len()).and_then(|()| {
            raw_rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let ports = r.ports.as_ref().map(PortRange::parse);
                    rule_from_raw(i, &r.action, r.src.as_deref(), r.dst.as_deref(), r.protocol.as_deref(), ports)
                })
                .collect::<Result<Vec<Rule>, PolicyError>>()
        });
        PolicyFile::build(raw, rules)
    }

    /// The checks of everything but the rules (already converted, or the first rule error), in
    /// the order the file documents: default, ttl, rules, services, endpoints.
    fn build(raw: RawFile, rules: Result<Vec<Rule>, PolicyError>) -> Result<PolicyFile, PolicyError> {
        let default = match raw.default.as_deref() {
            None => RuleAction::Allow,
            Some(s) => action(s).map_err(entry("default".into()))?,
        };
        let ttl = match raw.ttl_ms {
            None => super::DEFAULT_TTL,
            Some(0) => return Err(entry("ttl_ms".into())("0 is not a cache time (leave it out for 30 s)".into())),
            Some(ms) => Duration::from_millis(ms),
        };
        let rules = rules?;
        let mut services = Vec::with_capacity(raw.service.len());
        let mut seen = HashSet::new();
        for (i, s) in raw.service.iter().enumerate() {
            let at = |f: &str| entry(format!("service[{i}].{f}"));
            let vip = ip(&s.vip).map_err(at("vip"))?;
            let port: u16 = int(s.port, "a port (1-65535)").map_err(at("port"))?;
            if port == 0 {
                return Err(at("port")("0 is not a service port (1-65535)".into()));
            }
            let protocol = match s.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(p) => Protocol::parse(p).map_err(at("protocol"))?,
            };
            if !protocol.has_ports() {
                return Err(at("protocol")(format!("a service is tcp, udp or sctp, not {protocol:?}")));
            }
            if !seen.insert((vip, port, protocol as u8)) {
                return Err(at("vip")(format!("{vip} port {port} {protocol:?} is already a service")));
            }
            let mut endpoints = Vec::with_capacity(s.endpoints.len());
            for (j, e) in s.endpoints.iter().enumerate() {
                let at = |f: &str| entry(format!("service[{i}].endpoints[{j}].{f}"));
                let ep = Endpoint {
                    ip: ip(&e.ip).map_err(at("ip"))?,
                    port: int(e.port, "a port (0-65535)").map_err(at("port"))?,
                    weight: int(e.weight.unwrap_or(1), "a weight (0-4294967295)").map_err(at("weight"))?,
                };
                if ep.ip.is_ipv4() != vip.is_ipv4() {
                    return Err(at("ip")(format!("{} is not of the VIP's family ({vip})", ep.ip)));
                }
                endpoints.push(ep);
            }
            services.push(Service { vip, port, protocol, endpoints });
        }
        let mut endpoints = Vec::with_capacity(raw.endpoint.len());
        let mut seen = HashSet::new();
        for (i, e) in raw.endpoint.iter().enumerate() {
            let at = |f: &str| entry(format!("endpoint[{i}].{f}"));
            let ip = ip(&e.ip).map_err(at("ip"))?;
            if !seen.insert(ip) {
                return Err(at("ip")(format!("{ip} is listed twice")));
            }
            let mac: MacAddr =
                e.mac.trim().parse().map_err(|_| at("mac")(format!("{:?} is not a MAC address", e.mac)))?;
            let port: u32 = int(e.port, "an OpenFlow port (1-4294967039)").map_err(at("port"))?;
            if port == 0 || port > 0xffff_feff {
                return Err(at("port")(format!("{port} is not an OpenFlow port (1-4294967039)")));
            }
            endpoints.push(StaticEndpoint { ip, mac, port });
        }
        Ok(PolicyFile { version: raw.version, default, ttl, rules, services, endpoints })
    }

    /// The service `q` is addressed to, if any (VIP, port and protocol).
    pub fn service_for(&self, q: &PolicyQuery) -> Option<&Service> {
        self.services.iter().find(|s| s.vip == q.dst_ip && s.port == q.dst_port && s.protocol.matches(q.protocol))
    }

    /// Whether the first matching rule (or the default) allows `q`.
    pub fn allows(&self, q: &PolicyQuery) -> bool {
        let action = self.rules.iter().find(|r| r.matches(q)).map_or(self.default, |r| r.action);
        action == RuleAction::Allow
    }

    /// The answer for `q`: `allowed` from the first matching rule (else the default), seen as
    /// addressed; `Dnat` with the service's endpoints when `q` goes to a service's VIP:port.
    pub fn evaluate(&self, q: &PolicyQuery) -> NetworkPolicy {
        let dst_type = match self.service_for(q) {
            Some(s) => DstType::Dnat { endpoints: s.endpoints.clone() },
            None => DstType::Direct,
        };
        NetworkPolicy { allowed: self.allows(q), dst_type, src_port: None, version: self.version, ttl: self.ttl }
    }
}

// === the fast path for big rule lists ===

/// A line scanner for `[[rule]]` blocks (see [`PolicyFile::parse`]). It takes a line at a time,
/// converts each rule as its block ends and keeps every other line for the TOML parser. It says
/// "not mine" (`feed` returns false, `finish` returns `None`) rather than guess: the caller then
/// parses the whole text as TOML.
mod fast {
    use std::io::BufRead;
    use std::path::Path;

    use super::{check_rule_count, rule_from_raw, toml_error, PolicyError, PolicyFile, PortRange, RawFile, Rule};

    /// One text field of the block being read; the buffer is kept from block to block.
    #[derive(Default)]
    struct Field {
        set: bool,
        text: String,
    }

    impl Field {
        /// `false` if the key was already given in this block.
        fn put(&mut self, v: &str) -> bool {
            if std::mem::replace(&mut self.set, true) {
                return false;
            }
            self.text.clear();
            self.text.push_str(v);
            true
        }

        fn get(&self) -> Option<&str> {
            self.set.then_some(self.text.as_str())
        }
    }

    /// The fields of the rule block being read (`ports` as written: a number or text).
    #[derive(Default)]
    struct Block {
        action: Field,
        src: Field,
        dst: Field,
        protocol: Field,
        ports_text: Field,
        ports_int: Option<i64>,
    }

    #[derive(Default, PartialEq, Eq)]
    enum Mode {
        /// Before the first header: top-level keys, for the TOML parser.
        #[default]
        Top,
        /// In a `[[rule]]` block.
        Rule,
        /// In a `[[service]]` or `[[endpoint]]` block, for the TOML parser.
        Other,
    }

    #[derive(Default)]
    pub(super) struct Scanner {
        mode: Mode,
        block: Block,
        /// `[[rule]]` blocks seen.
        blocks: usize,
        rules: Vec<Rule>,
        /// The first rule error (the scan goes on: a TOML error later in the file comes first).
        error: Option<PolicyError>,
        /// Everything but the rule blocks.
        rest: String,
    }

    /// TOML whitespace.
    fn trim(s: &str) -> &str {
        s.trim_matches([' ', '\t'])
    }

    /// A value as the scanner takes it: a basic string without escapes, or a decimal integer
    /// without sign, underscores or leading zeros. `None` for anything else.
    enum Value<'a> {
        Text(&'a str),
        Int(i64),
    }

    /// `key = value` with an optional ` # comment`; `None` if the line is not that simple.
    fn key_value(line: &str) -> Option<(&str, Value<'_>)> {
        let key_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))?;
        let (key, after) = line.split_at(key_end);
        if key.is_empty() {
            return None;
        }
        let after = trim(after).strip_prefix('=')?;
        let after = after.trim_start_matches([' ', '\t']);
        let (value, tail) = if let Some(body) = after.strip_prefix('"') {
            let end = body.find(['"', '\\'])?;
            if body.as_bytes()[end] != b'"' {
                return None;
            }
            (Value::Text(&body[..end]), &body[end + 1..])
        } else {
            let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
            let digits = &after[..end];
            if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
                return None;
            }
            (Value::Int(digits.parse().ok()?), &after[end..])
        };
        // Nothing after the value but whitespace and, after whitespace, a comment.
        let rest = tail.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || (rest.starts_with('#') && rest.len() < tail.len())) {
            return None;
        }
        Some((key, value))
    }

    impl Scanner {
        /// One line, with its line ending. `false`: the scanner does not take this text.
        pub(super) fn feed(&mut self, raw: &str) -> bool {
            let line = match raw.strip_suffix('\n') {
                Some(l) => l.strip_suffix('\r').unwrap_or(l),
                None => raw,
            };
            let t = trim(line);
            if t.starts_with('[') {
                return match t {
                    "[[rule]]" => {
                        if !self.end_block() {
                            return false;
                        }
                        self.mode = Mode::Rule;
                        self.blocks += 1;
                        true
                    }
                    "[[service]]" | "[[endpoint]]" => {
                        if !self.end_block() {
                            return false;
                        }
                        self.mode = Mode::Other;
                        self.rest.push_str(raw);
                        true
                    }
                    _ => false,
                };
            }
            if self.mode != Mode::Rule {
                // Multi-line strings could hold anything, headers included.
                if line.contains("\"\"\"") || line.contains("\'\'\'") {
                    return false;
                }
                self.rest.push_str(raw);
                return true;
            }
            // Control characters (a lone CR included) are the TOML parser's to refuse.
            if line.chars().any(|c| (c < ' ' && c != '\t') || c == '\u{7f}') {
                return false;
            }
            if t.is_empty() || t.starts_with('#') {
                return true;
            }
            let Some((key, value)) = key_value(t) else { return false };
            let b = &mut self.block;
            match (key, value) {
                ("action", Value::Text(v)) => b.action.put(v),
                ("src", Value::Text(v)) => b.src.put(v),
                ("dst", Value::Text(v)) => b.dst.put(v),
                ("protocol", Value::Text(v)) => b.protocol.put(v),
                ("ports", _) if b.ports_text.set || b.ports_int.is_some() => false,
                ("ports", Value::Text(v)) => b.ports_text.put(v),
                ("ports", Value::Int(n)) => {
                    b.ports_int = Some(n);
                    true
                }
                // An unknown key, or a number where text is expected: TOML's errors.
                _ => false,
            }
        }

        /// Converts the rule block that ends here, if any. `false`: not mine (no `action`).
        fn end_block(&mut self) -> bool {
            if self.mode != Mode::Rule {
                return true;
            }
            let b = &mut self.block;
            let Some(action) = b.action.get() else { return false };
            let i = self.blocks - 1;
            if self.error.is_none() {
                let rule = check_rule_count(self.blocks).and_then(|()| {
                    let ports = match (b.ports_int, b.ports_text.get()) {
                        (Some(n), _) => Some(PortRange::from_int(n)),
                        (None, Some(s)) => Some(PortRange::from_text(s)),
                        (None, None) => None,
                    };
                    rule_from_raw(i, action, b.src.get(), b.dst.get(), b.protocol.get(), ports)
                });
                match rule {
                    Ok(r) => self.rules.push(r),
                    Err(e) => {
                        self.error = Some(e);
                        self.rules = Vec::new();
                    }
                }
            }
            for f in [&mut b.action, &mut b.src, &mut b.dst, &mut b.protocol, &mut b.ports_text] {
                f.set = false;
            }
            b.ports_int = None;
            true
        }

        /// The file, or `None` if the scanner does not take it.
        pub(super) fn finish(mut self) -> Option<Result<PolicyFile, PolicyError>> {
            if !self.end_block() {
                return None;
            }
            // A TOML error in the rest is reported by the whole-text parse (its line numbers).
            let raw: RawFile = toml::from_str(&self.rest).map_err(toml_error).ok()?;
            if self.blocks > 0 && raw.rule.is_some() {
                return None;
            }
            if self.blocks == 0 {
                return Some(PolicyFile::from_raw(raw));
            }
            let rules = match self.error {
                Some(e) => Err(e),
                None => {
                    self.rules.shrink_to_fit();
                    Ok(self.rules)
                }
            };
            Some(PolicyFile::build(raw, rules))
        }
    }

    /// Streams the file at `path` through the scanner; `None` if it cannot be read this way
    /// or the scanner does not take it (the caller reads it whole, and reports read errors).
    pub(super) fn scan_file(path: &Path) -> Option<Result<PolicyFile, PolicyError>> {
        let file = std::fs::File::open(path).ok()?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let mut scan = Scanner::default();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if scan.feed(&line) => {}
                _ => return None,
            }
        }
        scan.finish()
    }
}

/// The file's `[[endpoint]]` entries.
impl Locator for PolicyFile {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.endpoints.iter().find(|e| e.ip == ip).map(|e| Location { port: e.port, mac: e.mac, tun_dst: None })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(src: &str, dst: &str, proto: u8, dport: u16) -> PolicyQuery {
        PolicyQuery {
            src_ip: src.parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
            src_mac: MacAddr::ZERO,
            dst_mac: MacAddr::ZERO,
            src_port: 40000,
            dst_port: dport,
            protocol: proto,
            is_reply: false,
            nat: false,
        }
    }

    fn err(text: &str) -> String {
        PolicyFile::parse(text).unwrap_err().to_string()
    }

    const RULES: &str = r#"
        version = 4
        default = "deny"
        [[rule]]
        action = "deny"
        src = "10.244.1.66"
        dst = "10.244.0.0/16"
        [[rule]]
        action = "allow"
        src = "10.244.0.0/16"
        dst = "10.244.2.0/24"
        protocol = "tcp"
        ports = "8000-8080"
        [[rule]]
        action = "allow"
        dst = "10.244.3.3/32"
        protocol = "udp"
        ports = 53
        [[rule]]
        action = "allow"
        protocol = "icmp"
        [[rule]]
        action = "allow"
        src = "fd00::/64"
        dst = "any"
    "#;

    #[test]
    fn rules_first_match_and_default() {
        let f = PolicyFile::parse(RULES).unwrap();
        assert_eq!(f.version, 4);
        assert_eq!(f.rules.len(), 5);
        let allowed = |q: PolicyQuery| f.evaluate(&q).allowed;
        // Range ends are inclusive.
        assert!(allowed(q("10.244.1.2", "10.244.2.9", 6, 8000)));
        assert!(allowed(q("10.244.1.2", "10.244.2.9", 6, 8080)));
        assert!(!allowed(q("10.244.1.2", "10.244.2.9", 6, 7999)));
        assert!(!allowed(q("10.244.1.2", "10.244.2.9", 6, 8081)));
        // Protocol must match.
        assert!(!allowed(q("10.244.1.2", "10.244.2.9", 17, 8000)));
        // The first match wins: .66 is denied before the allow rule.
        assert!(!allowed(q("10.244.1.66", "10.244.2.9", 6, 8000)));
        // Integer ports, /32 destination, no source (any).
        assert!(allowed(q("192.168.0.1", "10.244.3.3", 17, 53)));
        assert!(!allowed(q("192.168.0.1", "10.244.3.4", 17, 53)));
        // icmp covers ICMPv6 too; any port.
        assert!(allowed(q("10.1.1.1", "10.2.2.2", 1, 0)));
        assert!(allowed(q("fd01::1", "fd02::2", 58, 0)));
        // IPv6 source network, "any" destination (either family).
        assert!(allowed(q("fd00::1", "fd01::1", 6, 1)));
        assert!(!allowed(q("fd00:0:0:1::1", "fd01::1", 6, 1)));
        // Default deny.
        assert!(!allowed(q("10.9.9.9", "10.8.8.8", 6, 80)));
        let p = f.evaluate(&q("10.9.9.9", "10.8.8.8", 6, 80));
        assert_eq!((p.version, p.dst_type, p.src_port), (4, DstType::Direct, None));
    }

    #[test]
    fn empty_file_allows_all() {
        let f = PolicyFile::parse("").unwrap();
        assert_eq!(f, PolicyFile::default());
        assert_eq!(f.evaluate(&q("10.0.0.1", "10.0.0.2", 6, 80)), NetworkPolicy::allow());
    }

    #[test]
    fn cidr_edges() {
        let c: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.255.255".parse().unwrap()));
        assert!(!c.contains("11.0.0.0".parse().unwrap()));
        // /0 matches its own family only.
        let all4: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains("255.255.255.255".parse().unwrap()));
        assert!(!all4.contains("::1".parse().unwrap()));
        let all6: IpCidr = "::/0".parse().unwrap();
        assert!(all6.contains("fd00::1".parse().unwrap()));
        assert!(!all6.contains("1.2.3.4".parse().unwrap()));
        // IPv4-mapped IPv6 is IPv6.
        assert!(!all4.contains("::ffff:1.2.3.4".parse().unwrap()));
        // Bare addresses are host routes; /32 and /128 are exact.
        let h: IpCidr = "10.1.2.3".parse().unwrap();
        assert_eq!(h.prefix(), 32);
        assert!(h.contains("10.1.2.3".parse().unwrap()) && !h.contains("10.1.2.4".parse().unwrap()));
        assert_eq!("fd00::1".parse::<IpCidr>().unwrap().prefix(), 128);
        assert!("fd00::/127".parse::<IpCidr>().unwrap().contains("fd00::1".parse().unwrap()));
        // Errors.
        assert!("10.0.0.1/8".parse::<IpCidr>().unwrap_err().contains("did you mean 10.0.0.0/8"));
        assert!("10.0.0.0/33".parse::<IpCidr>().unwrap_err().contains("0-32"));
        assert!("fd00::/129".parse::<IpCidr>().unwrap_err().contains("0-128"));
        assert!("10.0.0/8".parse::<IpCidr>().is_err());
        assert!("10.0.0.0/".parse::<IpCidr>().is_err());
        assert!("10.0.0.0/-1".parse::<IpCidr>().is_err());
    }

    #[test]
    fn services_dnat() {
        let f = PolicyFile::parse(
            r#"
            default = "allow"
            ttl_ms = 5000
            [[rule]]
            action = "deny"
            src = "10.244.9.0/24"
            dst = "10.96.0.10"
            [[service]]
            vip = "10.96.0.10"
            port = 80
            endpoints = [{ ip = "10.244.1.2", port = 8080 }, { ip = "10.244.2.2", port = 8080, weight = 3 }]
            [[service]]
            vip = "10.96.0.10"
            port = 53
            protocol = "udp"
            endpoints = []
            "#,
        )
        .unwrap();
        let p = f.evaluate(&q("10.244.1.9", "10.96.0.10", 6, 80));
        assert!(p.allowed);
        assert_eq!(p.ttl, Duration::from_millis(5000));
        let DstType::Dnat { endpoints } = p.dst_type else { panic!("not dnat: {p:?}") };
        assert_eq!(endpoints.len(), 2);
        assert_eq!((endpoints[0].port, endpoints[0].weight), (8080, 1));
        assert_eq!(endpoints[1].weight, 3);
        // Wrong port or protocol: not the service.
        assert_eq!(f.evaluate(&q("10.244.1.9", "10.96.0.10", 6, 81)).dst_type, DstType::Direct);
        assert_eq!(f.evaluate(&q("10.244.1.9", "10.96.0.10", 17, 80)).dst_type, DstType::Direct);
        // UDP service without endpoints: Dnat with none (the decision denies it).
        assert_eq!(f.evaluate(&q("10.244.1.9", "10.96.0.10", 17, 53)).dst_type, DstType::Dnat { endpoints: vec![] });
        // Rules see the VIP.
        let p = f.evaluate(&q("10.244.9.1", "10.96.0.10", 6, 80));
        assert!(!p.allowed);
        assert!(matches!(p.dst_type, DstType::Dnat { .. }));
    }

    #[test]
    fn static_endpoints_locate() {
        let f =
            PolicyFile::parse("[[endpoint]]\nip = \"10.244.1.2\"\nmac = \"0a:58:0a:f4:01:02\"\nport = 5\n").unwrap();
        let loc = f.locate("10.244.1.2".parse().unwrap()).unwrap();
        assert_eq!((loc.port, loc.mac.to_string()), (5, "0a:58:0a:f4:01:02".to_string()));
        assert!(f.locate("10.244.1.3".parse().unwrap()).is_none());
    }

    #[test]
    fn errors_name_the_entry() {
        let rule = |body: &str| format!("[[rule]]\naction = \"allow\"\n[[rule]]\n{body}\n");
        assert_eq!(err(&rule("action = \"maybe\"")), "rule[1].action: \"maybe\" is not allow or deny");
        assert!(err(&rule("action = \"allow\"\nsrc = \"10.0.0.1/8\"")).starts_with("rule[1].src: "));
        assert!(err(&rule("action = \"allow\"\ndst = \"nope\"")).starts_with("rule[1].dst: "));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"gre\"")).starts_with("rule[1].protocol: "));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"tcp\"\nports = \"2000-1000\"")).contains("empty"));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"tcp\"\nports = \"70000\"")).starts_with("rule[1].ports: "));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"tcp\"\nports = \"80-\"")).starts_with("rule[1].ports: "));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"tcp\"\nports = -1")).starts_with("rule[1].ports: "));
        assert!(err(&rule("action = \"allow\"\nports = \"80\"")).contains("ports need protocol"));
        assert!(err(&rule("action = \"allow\"\nprotocol = \"icmp\"\nports = \"80\"")).contains("ports need protocol"));
        // Unknown keys are typos, not ignored.
        assert!(err(&rule("action = \"allow\"\nsource = \"10.0.0.0/8\"")).contains("source"));
        assert!(err("default = \"reject\"").starts_with("default: "));
        assert!(err("ttl_ms = 0").starts_with("ttl_ms: "));
        assert!(err("version = \"x\"").contains("version"));
        let svc = |body: &str| format!("[[service]]\nvip = \"10.96.0.1\"\nport = 443\n[[service]]\n{body}\n");
        assert!(err(&svc("vip = \"10.96.0.300\"\nport = 1")).starts_with("service[1].vip: "));
        assert!(err(&svc("vip = \"10.96.0.2\"\nport = 0")).starts_with("service[1].port: "));
        assert!(err(&svc("vip = \"10.96.0.2\"\nport = 65536")).starts_with("service[1].port: "));
        assert!(err(&svc("vip = \"10.96.0.2\"\nport = 1\nprotocol = \"icmp\"")).starts_with("service[1].protocol: "));
        assert!(err(&svc("vip = \"10.96.0.1\"\nport = 443")).contains("already a service"));
        assert_eq!(
            err(&svc("vip = \"10.96.0.2\"\nport = 1\nendpoints = [{ ip = \"10.0.0.1\" }, { ip = \"x\" }]")),
            "service[1].endpoints[1].ip: \"x\" is not an IP address"
        );
        assert!(err(&svc("vip = \"10.96.0.2\"\nport = 1\nendpoints = [{ ip = \"fd00::1\" }]")).contains("family"));
        assert!(err(&svc("vip = \"10.96.0.2\"\nport = 1\nendpoints = [{ ip = \"10.0.0.1\", weight = -1 }]"))
            .starts_with("service[1].endpoints[0].weight: "));
        let ep = "[[endpoint]]\nip = \"10.0.0.1\"\nmac = \"0a:00:00:00:00:01\"\nport = 1\n";
        assert!(err(&format!("{ep}{ep}")).starts_with("endpoint[1].ip: "));
        assert!(err(&ep.replace("0a:00:00:00:00:01", "0a:00")).starts_with("endpoint[0].mac: "));
        assert!(err(&ep.replace("port = 1", "port = 0")).starts_with("endpoint[0].port: "));
        let syntax = PolicyFile::parse("[[rule]\n").unwrap_err();
        assert!(matches!(syntax, PolicyError::Parse { .. }), "{syntax:?}");
        assert!(err("[[rule]]\nsrc = \"10.0.0.0/8\"\n").contains("action"), "action is required");
    }

    #[test]
    fn rule_count_is_bounded() {
        assert!(check_rule_count(MAX_RULES).is_ok());
        let e = check_rule_count(MAX_RULES + 1).unwrap_err().to_string();
        assert_eq!(e, format!("rule: {} rules: at most {MAX_RULES}", MAX_RULES + 1));
    }

    #[test]
    fn load_names_the_path() {
        let dir = std::env::temp_dir().join(format!("shardflow-policy-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("policy.toml");
        std::fs::write(&p, "[[rule]]\naction = \"allow\"\nsrc = \"1.2.3.4/8\"\n").unwrap();
        let e = PolicyFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("policy.toml") && e.contains("rule[0].src"), "{e}");
        std::fs::write(&p, RULES).unwrap();
        assert_eq!(PolicyFile::load(&p).unwrap().rules.len(), 5);
        let e = PolicyFile::load(dir.join("missing.toml")).unwrap_err().to_string();
        assert!(e.contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
