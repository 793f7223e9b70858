//! The index against the in-order scan (the oracle), over seeded random rule sets and queries;
//! the fast parse path against the TOML parser over seeded random texts.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::packet::MacAddr;
use crate::policy::file::{IpCidr, PortRange, StaticEndpoint};
use crate::policy::Endpoint;

/// splitmix64: a seeded generator, so a failure names its seed and replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Few distinct bits, so that random networks nest and overlap and random addresses hit them.
fn addr4(rng: &mut Rng) -> Ipv4Addr {
    let a = [10, 10, 10, 192, 0, 255][rng.below(6) as usize];
    Ipv4Addr::new(a, rng.pick(&[0, 1, 244]), rng.pick(&[0, 1, 2, 255]), rng.pick(&[0, 1, 2, 3, 66, 128, 255]))
}

fn addr6(rng: &mut Rng) -> Ipv6Addr {
    let hi: u128 = rng.pick(&[0xfd00, 0xfd01, 0, 0xfe80]);
    let mid: u128 = rng.pick(&[0, 1, 0xffff]);
    let lo: u128 = rng.pick(&[0, 1, 2, 0x0a0b_0c0d]);
    Ipv6Addr::from(hi << 112 | mid << 64 | lo)
}

fn addr(rng: &mut Rng) -> IpAddr {
    if rng.chance(75) {
        IpAddr::V4(addr4(rng))
    } else {
        IpAddr::V6(addr6(rng))
    }
}

/// A network around a random address (host bits cleared).
fn side(rng: &mut Rng) -> AddrMatch {
    if rng.chance(20) {
        return AddrMatch::Any;
    }
    let a = addr(rng);
    let prefix = match a {
        IpAddr::V4(_) => rng.pick(&[0, 1, 8, 16, 23, 24, 30, 31, 32, 32]),
        IpAddr::V6(_) => rng.pick(&[0, 16, 63, 64, 112, 127, 128, 128]),
    };
    let net = match a {
        IpAddr::V4(v) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    };
    AddrMatch::Net(IpCidr::new(net, prefix).unwrap())
}

const PORTS: [u16; 9] = [0, 1, 52, 53, 54, 80, 443, 8080, 65535];

fn rule(rng: &mut Rng, pool: &[(AddrMatch, AddrMatch)]) -> Rule {
    // Often a network pair already used: groups above SMALL_GROUP get port tables.
    let (src, dst) = if !pool.is_empty() && rng.chance(60) {
        pool[rng.below(pool.len() as u64) as usize].clone()
    } else {
        (side(rng), side(rng))
    };
    let protocol = rng.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp, Protocol::Any]);
    // Any combination the struct allows, not only what the parser accepts (ports with icmp).
    let ports = rng.chance(60).then(|| {
        let a = rng.pick(&PORTS);
        let b = if rng.chance(50) { a } else { rng.pick(&PORTS) };
        PortRange { lo: a.min(b), hi: a.max(b) }
    });
    Rule { action: if rng.chance(50) { RuleAction::Allow } else { RuleAction::Deny }, src, dst, protocol, ports }
}

fn query(rng: &mut Rng) -> PolicyQuery {
    let p = rng.pick(&PORTS);
    PolicyQuery {
        src_ip: addr(rng),
        dst_ip: addr(rng),
        src_mac: MacAddr::ZERO,
        dst_mac: MacAddr::ZERO,
        src_port: rng.below(65536) as u16,
        dst_port: match rng.below(3) {
            0 => p,
            1 => p.wrapping_add(1),
            _ => rng.below(65536) as u16,
        },
        protocol: rng.pick(&[0, 1, 6, 6, 17, 17, 47, 58, 132]),
        is_reply: false,
        nat: false,
    }
}

fn random_file(rng: &mut Rng, n: usize) -> PolicyFile {
    let mut pool = Vec::new();
    let mut rules = Vec::with_capacity(n);
    for _ in 0..n {
        let r = rule(rng, &pool);
        if pool.len() < 6 {
            pool.push((r.src.clone(), r.dst.clone()));
        }
        rules.push(r);
    }
    let mut services = Vec::new();
    for i in 0..rng.below(4) {
        services.push(Service {
            vip: addr(rng),
            port: rng.pick(&PORTS),
            protocol: rng.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
            endpoints: vec![Endpoint { ip: addr(rng), port: i as u16, weight: 1 }],
        });
    }
    let endpoints =
        (0..rng.below(4)).map(|i| StaticEndpoint { ip: addr(rng), mac: MacAddr::ZERO, port: i as u32 + 1 }).collect();
    PolicyFile {
        version: rng.below(10),
        default: if rng.chance(50) { RuleAction::Allow } else { RuleAction::Deny },
        ttl: std::time::Duration::from_secs(30),
        rules,
        services,
        endpoints,
    }
}

fn scan(f: &PolicyFile, q: &PolicyQuery) -> Option<usize> {
    f.rules.iter().position(|r| r.matches(q))
}

#[test]
fn index_agrees_with_the_in_order_scan() {
    let mut matched = 0usize;
    let mut through_tables = 0usize;
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let n = [0, 1, 2, 5, 20, 60, 200][(seed % 7) as usize];
        let f = random_file(&mut rng, n);
        let idx = IndexedPolicy::new(f.clone());
        through_tables += idx.rules.groups.iter().filter(|g| g.slots.is_some()).count();
        for _ in 0..400 {
            let q = query(&mut rng);
            let want = scan(&f, &q);
            assert_eq!(idx.first_match(&q), want, "seed {seed}: {q:?}\nrules: {:#?}", f.rules);
            assert_eq!(idx.evaluate(&q), f.evaluate(&q), "seed {seed}: {q:?}");
            matched += usize::from(want.is_some());
            // The service's own address, so services are hit too.
            if let Some(s) = f.services.first() {
                let q = PolicyQuery { dst_ip: s.vip, dst_port: s.port, protocol: 6, ..q };
                assert_eq!(idx.evaluate(&q), f.evaluate(&q), "seed {seed}: {q:?}");
            }
        }
        for e in &f.endpoints {
            assert_eq!(idx.locate(e.ip), f.locate(e.ip), "seed {seed}");
        }
    }
    // The generator is worth something: most queries match some rule, large groups exist.
    assert!(matched > 300 * 400 / 10, "only {matched} queries matched a rule");
    assert!(through_tables > 50, "only {through_tables} groups with port tables");
}

#[test]
fn nested_prefixes_and_port_tables_keep_the_first_match() {
    let cidr = |s: &str| AddrMatch::Net(s.parse().unwrap());
    let r = |action, src: AddrMatch, dst: AddrMatch, protocol, ports: Option<(u16, u16)>| Rule {
        action,
        src,
        dst,
        protocol,
        ports: ports.map(|(lo, hi)| PortRange { lo, hi }),
    };
    use RuleAction::{Allow, Deny};
    let mut rules = vec![
        r(Deny, cidr("10.1.2.3"), cidr("10.9.0.0/16"), Protocol::Tcp, Some((1000, 2000))),
        r(Allow, cidr("10.1.0.0/16"), cidr("10.9.9.0/24"), Protocol::Tcp, None),
        r(Deny, AddrMatch::Any, AddrMatch::Any, Protocol::Icmp, None),
    ];
    // A large group on one network pair: port ranges overlapping in rule order.
    for i in 0..20u16 {
        rules.push(r(Allow, cidr("10.5.0.0/16"), cidr("10.6.0.1"), Protocol::Udp, Some((100 * i, 100 * i + 150))));
    }
    rules.push(r(Deny, cidr("10.5.0.0/16"), cidr("10.6.0.1"), Protocol::Any, None));
    let f = PolicyFile { default: Deny, rules, ..PolicyFile::default() };
    let idx = IndexedPolicy::new(f.clone());
    let q = |s: &str, d: &str, proto: u8, port: u16| PolicyQuery {
        src_ip: s.parse().unwrap(),
        dst_ip: d.parse().unwrap(),
        src_mac: MacAddr::ZERO,
        dst_mac: MacAddr::ZERO,
        src_port: 1,
        dst_port: port,
        protocol: proto,
        is_reply: false,
        nat: false,
    };
    let cases = [
        (q("10.1.2.3", "10.9.9.9", 6, 1500), Some(0)),
        (q("10.1.2.3", "10.9.9.9", 6, 2001), Some(1)),
        (q("10.1.2.4", "10.9.9.9", 6, 1500), Some(1)),
        (q("10.1.2.4", "10.9.8.9", 6, 1500), None),
        (q("10.1.2.4", "10.9.8.9", 1, 0), Some(2)),
        (q("fd00::1", "fd00::2", 58, 7), Some(2)),
        (q("10.5.1.1", "10.6.0.1", 17, 120), Some(3)),
        (q("10.5.1.1", "10.6.0.1", 17, 160), Some(4)),
        (q("10.5.1.1", "10.6.0.1", 17, 2050), Some(22)),
        (q("10.5.1.1", "10.6.0.1", 17, 2051), Some(23)),
        (q("10.5.1.1", "10.6.0.1", 6, 120), Some(23)),
        (q("10.5.1.1", "10.6.0.2", 17, 120), None),
    ];
    for (q, want) in cases {
        assert_eq!(scan(&f, &q), want, "the oracle: {q:?}");
        assert_eq!(idx.first_match(&q), want, "{q:?}");
    }
    assert!(idx.rules.groups.iter().any(|g| g.slots.is_some()), "the 21-rule group has port tables");
}

// === the fast parse path against the TOML parser ===

/// Random policy text from pieces that are valid, nearly valid and invalid, in the layouts the
/// scanner takes and in others it must hand to the TOML parser.
fn random_text(rng: &mut Rng) -> String {
    const TOP: &[&str] = &[
        "version = 7\n",
        "default = \"deny\"\n",
        "default = \"allow\" # the default\n",
        "ttl_ms = 5000\n",
        "ttl_ms = 0\n",
        "# a comment\n",
        "\n",
        "version = \"x\"\n",
        "bogus = 1\n",
    ];
    const RULE_LINES: &[&str] = &[
        "action = \"allow\"\n",
        "action = \"deny\"\n",
        "action=\"allow\"\n",
        "  action = \"Deny\"   # caps\n",
        "action = \"maybe\"\n",
        "src = \"10.0.0.0/8\"\n",
        "src = \"10.0.0.1/8\"\n",
        "src = \"any\"\n",
        "dst = \"fd00::/64\"\n",
        "dst = \"10.244.1.2\"\r\n",
        "protocol = \"tcp\"\n",
        "protocol = \"icmp\"\n",
        "protocol = \"gre\"\n",
        "ports = 80\n",
        "ports = \"8000-8080\"\n",
        "ports = \"2000-1000\"\n",
        "ports = 70000\n",
        "ports = 080\n",
        "ports = -1\n",
        "ports = 1_000\n",
        "ports = 99999999999999999999\n",
        "src = \"a\\\"b\"\n",
        "src = '10.0.0.0/8'\n",
        "dst = { x = 1 }\n",
        "action = 5\n",
        "source = \"10.0.0.0/8\"\n",
        "\t# tabbed comment\n",
        "\n",
        "src = \"10.0.0.0/8\"#tight\n",
        "dst.x = \"1\"\n",
        "src = \"10.0.0.0/8\" trailing\n",
        "protocol = \"udp\"\r",
    ];
    const OTHER: &[&str] = &[
        "[[service]]\nvip = \"10.96.0.10\"\nport = 53\nprotocol = \"udp\"\nendpoints = [{ ip = \"10.244.1.2\", port = 5353 }]\n",
        "[[service]]\nvip = \"10.96.0.10\"\nport = 80\nendpoints = [\n  { ip = \"10.244.1.2\" },\n]\n",
        "[[endpoint]]\nip = \"10.0.0.1\"\nmac = \"0a:00:00:00:00:01\"\nport = 1\n",
        "[[endpoint]]\nip = \"10.0.0.1\"\nmac = \"0a:00\"\nport = 1\n",
        "[other]\nx = 1\n",
        "[[ rule ]]\naction = \"allow\"\n",
        "[[rule]] # commented header\naction = \"allow\"\n",
        "rule = []\n",
        "x = \"\"\"\n[[rule]]\n\"\"\"\n",
    ];
    let mut t = String::new();
    for _ in 0..rng.below(3) {
        t.push_str(rng.pick(TOP));
    }
    for _ in 0..rng.below(8) {
        if rng.chance(12) {
            t.push_str(rng.pick(OTHER));
            continue;
        }
        t.push_str("[[rule]]\n");
        // Mostly good rules, so that a bad line is the only one.
        let good = rng.chance(60);
        if !good || rng.chance(95) {
            t.push_str(if rng.chance(50) { "action = \"allow\"\n" } else { "action = \"deny\"\n" });
        }
        for _ in 0..rng.below(4) {
            let line = rng.pick(RULE_LINES);
            if good && !matches!(line, l if l.starts_with("src = \"10.0.0.0/8\"\n") || l.starts_with("ports = 80\n")) {
                continue;
            }
            t.push_str(line);
        }
    }
    t
}

#[test]
fn fast_parse_agrees_with_toml() {
    let (mut fast_ok, mut fast_taken) = (0, 0);
    for seed in 0..3000u64 {
        let mut rng = Rng(seed);
        let text = random_text(&mut rng);
        fast_taken += usize::from(PolicyFile::parse_fast(&text).is_some());
        let fast = PolicyFile::parse(&text).map_err(|e| e.to_string());
        let toml = PolicyFile::parse_toml(&text).map_err(|e| e.to_string());
        assert_eq!(fast, toml, "seed {seed}, text:\n{text}");
        fast_ok += usize::from(fast.is_ok());
    }
    assert!(fast_ok > 500, "only {fast_ok} texts parsed");
    assert!(fast_taken > 600, "the scanner took only {fast_taken} of the texts");
}

#[test]
fn load_streams_the_same_file() {
    let dir = std::env::temp_dir().join(format!("shardflow-index-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("p.toml");
    for seed in 0..200u64 {
        let text = random_text(&mut Rng(seed));
        std::fs::write(&p, &text).unwrap();
        let loaded = PolicyFile::load(&p).map_err(|e| e.to_string());
        let parsed = PolicyFile::parse_toml(&text).map_err(|e| match e {
            crate::policy::PolicyError::Entry { key, reason } => {
                format!("policy file {}: {key}: {reason}", p.display())
            }
            crate::policy::PolicyError::Parse { reason, .. } => format!("policy file {}: {reason}", p.display()),
            other => other.to_string(),
        });
        assert_eq!(loaded, parsed, "seed {seed}, text:\n{text}");
    }
    std::fs::write(&p, b"[[rule]]\naction = \"allow\xff\"\n").unwrap();
    let e = PolicyFile::load(&p).unwrap_err().to_string();
    assert!(e.contains("UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
