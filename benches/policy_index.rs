//! Policy decision time against the number of rules: the index at 10, 10k and 1M rules, the
//! in-order scan (the reference it replaced) at 10 and 10k. The rules are a seeded mix like
//! `scripts/gen-policy.py`'s (pod pairs, pod to subnet with port ranges, namespace pairs,
//! ICMP, IPv6); half the queries are made from a rule's addresses so they match something.
//!
//!     cargo bench --bench policy_index -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardflow::packet::MacAddr;
use shardflow::policy::file::{AddrMatch, IpCidr, PortRange, Protocol, Rule, RuleAction};
use shardflow::policy::index::IndexedPolicy;
use shardflow::policy::{PolicyFile, PolicyQuery};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn v4(r: &mut Rng, prefix: u8) -> AddrMatch {
    let a = 0x0a00_0000 | (r.next() as u32 & 0x00ff_ffff);
    let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    AddrMatch::Net(IpCidr::new(IpAddr::V4(Ipv4Addr::from(a & m)), prefix).expect("masked"))
}

fn v6(r: &mut Rng, prefix: u8) -> AddrMatch {
    let a = (0xfd00u128 << 112) | (u128::from(r.next()) << 48) | u128::from(r.next() & 0xffff_ffff_ffff);
    let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    AddrMatch::Net(IpCidr::new(IpAddr::V6(Ipv6Addr::from(a & m)), prefix).expect("masked"))
}

fn rules(n: usize) -> Vec<Rule> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            let kind = r.next() % 100;
            let action = if r.next() % 10 < 7 { RuleAction::Allow } else { RuleAction::Deny };
            let port = |r: &mut Rng| [80u16, 443, 8080, 53, 9090, 5432][(r.next() % 6) as usize];
            let (src, dst, protocol, ports) = match kind {
                0..55 => {
                    let p = port(&mut r);
                    (v4(&mut r, 32), v4(&mut r, 32), Protocol::Tcp, Some(PortRange { lo: p, hi: p }))
                }
                55..75 => {
                    let lo = (r.next() % 60000) as u16 + 1;
                    let hi = lo + (r.next() % 2000) as u16;
                    (v4(&mut r, 32), v4(&mut r, 24), Protocol::Udp, Some(PortRange { lo, hi }))
                }
                75..85 => (v4(&mut r, 16), v4(&mut r, 24), Protocol::Any, None),
                85..90 => (v4(&mut r, 24), AddrMatch::Any, Protocol::Icmp, None),
                90..97 => {
                    let p = (r.next() % 65535) as u16 + 1;
                    (v6(&mut r, 128), v6(&mut r, 64), Protocol::Udp, Some(PortRange { lo: p, hi: p }))
                }
                _ => (AddrMatch::Any, v4(&mut r, 32), Protocol::Sctp, None),
            };
            Rule { action, src, dst, protocol, ports }
        })
        .collect()
}

fn ip_in(m: &AddrMatch, r: &mut Rng) -> IpAddr {
    match m {
        AddrMatch::Any => IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r.next() as u32 & 0xffffff))),
        AddrMatch::Net(n) => n.addr(),
    }
}

fn queries(rules: &[Rule]) -> Vec<PolicyQuery> {
    let mut r = Rng(7);
    (0..1024)
        .map(|i| {
            let (src_ip, dst_ip, protocol, dst_port) = if i % 2 == 0 && !rules.is_empty() {
                let rule = &rules[(r.next() % rules.len() as u64) as usize];
                let proto = match rule.protocol {
                    Protocol::Tcp | Protocol::Any => 6,
                    Protocol::Udp => 17,
                    Protocol::Sctp => 132,
                    Protocol::Icmp => 1,
                };
                (ip_in(&rule.src, &mut r), ip_in(&rule.dst, &mut r), proto, rule.ports.map_or(80, |p| p.lo))
            } else {
                let a = |r: &mut Rng| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r.next() as u32 & 0xffffff)));
                (a(&mut r), a(&mut r), 6, 80)
            };
            PolicyQuery {
                src_ip,
                dst_ip,
                src_mac: MacAddr::ZERO,
                dst_mac: MacAddr::ZERO,
                src_port: 40000,
                dst_port,
                protocol,
                is_reply: false,
                nat: false,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_decision");
    for n in [10usize, 10_000, 1_000_000] {
        let file = PolicyFile { default: RuleAction::Deny, rules: rules(n), ..PolicyFile::default() };
        let qs = queries(&file.rules);
        let indexed = IndexedPolicy::new(file.clone());
        for q in qs.iter().take(64) {
            assert_eq!(indexed.evaluate(q), file.evaluate(q), "index and scan agree");
        }
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("index", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(indexed.evaluate(black_box(&qs[i])))
            })
        });
        if n <= 10_000 {
            let mut i = 0;
            g.bench_with_input(BenchmarkId::new("scan", n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(file.evaluate(black_box(&qs[i])))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
