//! IPv6 pod connections, neighbour discovery, the controller's ARP answers and the Tracker, with
//! the real daemon (`shardflow run --config`, docs/pipeline.md's ```toml ipv6 example, 2 shards,
//! fan-out) against a private Open vSwitch per test. Ports: uplink 1 (`br0-p1`), pod A 2
//! (`br0-p2`, 10.244.1.2 / fd00:10:244:1::2), gateway 3, pod B 4 (10.244.1.4 /
//! fd00:10:244:1::4), tunnel 5 (`p3`..`p5`), each with a tx pcap; the ARP test adds port 6,
//! unknown to the config. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{ip4_at, ip6_at, mac, pipeline_doc_block, PipelineEnv, DPID, SHARDS};
use support::wait_until;

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const C_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 6]);
const A4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const GW4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const C4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 4);
const A_PORT: u32 = 2;
const B_PORT: u32 = 4;

/// The ```toml ipv6 block of docs/pipeline.md, with `arp = ARP`.
fn ipv6_toml(arp: &str) -> String {
    let t = pipeline_doc_block("toml ipv6");
    assert!(t.contains("arp = \"responder\""), "{t}");
    t.replace("arp = \"responder\"", &format!("arp = \"{arp}\""))
}

/// The shared pipeline environment plus what these tests read off it.
struct Env(PipelineEnv);

impl Deref for Env {
    type Target = PipelineEnv;

    fn deref(&self) -> &PipelineEnv {
        &self.0
    }
}

impl Env {
    /// OVS with ports 1-5 (+ `extra_ports`, tx pcaps) and the daemon with the ipv6 example
    /// (`arp = ARP`), attached (fan-out), its pipeline in place.
    fn start(arp: &str, extra_ports: &[u32]) -> Env {
        Env(PipelineEnv::start_with_config(&ipv6_toml(arp), &[], false, extra_ports))
    }

    fn decisions(&self) -> u64 {
        self.d.metric_sum("shardflow_decisions_total", &[]) as u64
    }

    fn verdict(&self, v: &str) -> u64 {
        self.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{v}\"")]) as u64
    }

    /// Table 3 priority-100 flows with `cookie`, as dump-flows text (no stats).
    fn conn_flows(&self, cookie: u64) -> Vec<String> {
        let out = self.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "table=3", "--no-stats"]);
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| l.contains("priority=100") && l.contains(&format!("cookie={cookie:#x},")))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    fn all_table3(&self) -> String {
        self.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "table=3"])
    }

    /// Tx counts of ports 1..=6.
    fn counts(&self) -> Vec<usize> {
        (1..=6).map(|p| self.count(p)).collect()
    }
}

fn ct_line(env: &Env, needles: &[&str]) -> String {
    let mut ct = String::new();
    let ok = wait_until(Duration::from_secs(3), || {
        ct = env.conntrack();
        ct.lines().any(|l| needles.iter().all(|n| l.contains(n)))
    });
    assert!(ok, "no conntrack entry with {needles:?}:\n{ct}");
    ct.lines().find(|l| needles.iter().all(|n| l.contains(n))).unwrap().to_string()
}

/// One IPv6 connection from pod B to pod A: `fwd` is decided (one packet-in, one allow) and
/// delivered on port 2 with eth_dst = A's MAC; table 3 holds `proto` forward + reverse flows
/// (`ct(commit,zone=1)`), conntrack has it in zone 1; `reply` from pod A reaches port 4 with
/// no packet-in.
fn ipv6_conn(env: &Env, what: &str, proto: &str, fwd: Vec<u8>, reply: Vec<u8>, ct: &[&str]) {
    let (dec0, pi0, allow0) = (env.decisions(), env.packet_ins(), env.verdict("allow"));
    let (a0, b0) = (env.count(A_PORT), env.count(B_PORT));
    let t = Instant::now();
    env.inject(B_PORT, std::slice::from_ref(&fwd));
    assert_eq!(
        env.wait_count(A_PORT, a0 + 1, Duration::from_secs(5)),
        a0 + 1,
        "{what}: the first packet reaches pod A once\n{}\n{}",
        env.all_table3(),
        env.d.stderr()
    );
    let latency = t.elapsed();
    let f = env.last_frame(A_PORT);
    assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (A_MAC.to_string(), B_MAC.to_string()), "{what}: eth_dst rewritten");
    assert_eq!(&f[12..14], &[0x86, 0xdd], "{what}: IPv6");
    assert_eq!((ip6_at(&f, 22), ip6_at(&f, 38)), (B6, A6), "{what}");
    assert_eq!(&f[14..], &fwd[14..], "{what}: the IPv6 packet is delivered unchanged");
    assert!(
        wait_until(Duration::from_secs(2), || env.decisions() == dec0 + 1),
        "{what}: one decision: {dec0} -> {}",
        env.decisions()
    );
    assert_eq!(env.verdict("allow"), allow0 + 1, "{what}: verdict allow");
    assert_eq!(env.packet_ins(), pi0 + 1, "{what}: one packet-in");

    let cookie = env.conn_cookie(B_PORT, &fwd);
    let mut flows = Vec::new();
    wait_until(Duration::from_secs(3), || {
        flows = env.conn_flows(cookie);
        flows.len() >= 2
    });
    assert_eq!(flows.len(), 2, "{what}: forward + reverse flows of cookie {cookie:#x}:\n{}", env.all_table3());
    let fwd_flow = flows.iter().find(|l| l.contains(&format!("ipv6_src={B6},ipv6_dst={A6}")));
    let rev_flow = flows.iter().find(|l| l.contains(&format!("ipv6_src={A6},ipv6_dst={B6}")));
    let (Some(ff), Some(rf)) = (fwd_flow, rev_flow) else { panic!("{what}: no forward/reverse pair: {flows:#?}") };
    for (l, m, p) in [(ff, A_MAC, A_PORT), (rf, B_MAC, B_PORT)] {
        assert!(l.contains(&format!("priority=100,{proto},")), "{what}: {proto} flow: {l}");
        assert!(l.contains(&format!("actions=ct(commit,zone=1),set_field:{m}->eth_dst,output:{p}")), "{what}: {l}");
    }
    let line = ct_line(env, ct);
    assert!(line.contains("zone=1"), "{what}: committed in zone 1: {line}");

    env.inject(A_PORT, std::slice::from_ref(&reply));
    assert_eq!(env.wait_count(B_PORT, b0 + 1, Duration::from_secs(3)), b0 + 1, "{what}: the reply reaches pod B");
    let f = env.last_frame(B_PORT);
    assert_eq!(mac(&f[0..6]), B_MAC.to_string(), "{what}: reply eth_dst = pod B's MAC");
    assert_eq!((ip6_at(&f, 22), ip6_at(&f, 38)), (A6, B6), "{what}");
    env.settle();
    assert_eq!((env.decisions(), env.packet_ins()), (dec0 + 1, pi0 + 1), "{what}: the reply stays in the switch");
    eprintln!(
        "FIGURE {what}: first packet delivered in {latency:?} (inject included); flows:\n  {}\n  {}\n  conntrack: {}",
        ff.trim(),
        rf.trim(),
        line.trim()
    );
}

// === 1 ===

#[test]
fn ipv6_tcp_decided_once() {
    let env = Env::start("responder", &[]);
    let syn = build::tcp_syn(B_MAC, GW_MAC, B6.into(), A6.into(), 40000, 80);
    let syn_ack = build::tcp_syn_ack(A_MAC, GW_MAC, A6.into(), B6.into(), 80, 40000);
    ipv6_conn(&env, "tcp6 SYN", "tcp6", syn, syn_ack, &["tcp", "src=fd00:10:244:1::4", "sport=40000", "dport=80"]);
}

// === 2 ===

#[test]
fn ipv6_udp_and_icmpv6_decided_once() {
    let env = Env::start("responder", &[]);
    let q = build::udp(B_MAC, GW_MAC, B6.into(), A6.into(), 40053, 53, b"query");
    let r = build::udp(A_MAC, GW_MAC, A6.into(), B6.into(), 53, 40053, b"answer");
    ipv6_conn(&env, "udp6", "udp6", q, r, &["udp", "src=fd00:10:244:1::4", "sport=40053", "dport=53"]);
    let ping = build::icmpv6_echo_request(B_MAC, GW_MAC, B6, A6, 0x77, 1);
    let pong = build::icmpv6_echo_reply(A_MAC, GW_MAC, A6, B6, 0x77, 1);
    ipv6_conn(&env, "icmpv6 echo", "icmp6", ping, pong, &["icmpv6", "src=fd00:10:244:1::4", "id=119"]);
}

// === 3 ===

#[test]
fn neighbour_discovery_is_switched() {
    let env = Env::start("responder", &[]);
    let ns = build::nd_solicit(B_MAC, B6, A6);
    let (dec0, pi0, c0) = (env.decisions(), env.packet_ins(), env.counts());
    env.inject(B_PORT, std::slice::from_ref(&ns));
    assert_eq!(env.wait_count(A_PORT, c0[1] + 1, Duration::from_secs(3)), c0[1] + 1, "the NS reaches pod A");
    let f = env.last_frame(A_PORT);
    assert_eq!(f, ns, "delivered unchanged (NORMAL)");
    env.settle();
    let c1 = env.counts();
    assert_eq!((env.decisions(), env.packet_ins()), (dec0, pi0), "ND is never a packet-in");
    eprintln!("FIGURE ND: solicitation from pod B for {A6}: tx per port 1-6 {c0:?} -> {c1:?}, packet_ins {pi0}, decisions {dec0}");
    // The advertisement back (unicast to pod B).
    let na = build::nd_advert(A_MAC, A6, B_MAC, B6);
    let b0 = env.count(B_PORT);
    env.inject(A_PORT, std::slice::from_ref(&na));
    assert_eq!(env.wait_count(B_PORT, b0 + 1, Duration::from_secs(3)), b0 + 1, "the NA reaches pod B");
    env.settle();
    assert_eq!((env.decisions(), env.packet_ins()), (dec0, pi0), "NA is never a packet-in");
}

// === 4 ===

/// (op, sha, spa, tha, tpa) of an untagged ARP frame.
fn parse_arp(f: &[u8]) -> (u16, String, Ipv4Addr, String, Ipv4Addr) {
    assert!(f.len() >= 42 && f[12..14] == [0x08, 0x06], "not ARP: {f:02x?}");
    (u16::from_be_bytes([f[20], f[21]]), mac(&f[22..28]), ip4_at(f, 28), mac(&f[32..38]), ip4_at(f, 38))
}

#[test]
fn arp_controller_mode() {
    let env = Env::start("controller", &[6]);
    let table20 = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "table=20", "--no-stats"]);
    assert!(table20.contains("priority=50,arp,arp_op=1"), "controller-mode table 20:\n{table20}");

    // (a) pod B asks for pod A: answered by the controller out of port 4.
    let (rep0, fl0, pi0, c0) = (env.verdict("arp_reply"), env.verdict("arp_flood"), env.packet_ins(), env.counts());
    let t = Instant::now();
    env.inject(B_PORT, &[build::arp_request(B_MAC, B4, A4)]);
    assert_eq!(
        env.wait_count(B_PORT, c0[3] + 1, Duration::from_secs(5)),
        c0[3] + 1,
        "an ARP reply on port 4\n{}",
        env.d.stderr()
    );
    let took = t.elapsed();
    let f = env.last_frame(B_PORT);
    assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (B_MAC.to_string(), A_MAC.to_string()), "reply Ethernet header");
    let arp = parse_arp(&f);
    assert_eq!(arp, (2, A_MAC.to_string(), A4, B_MAC.to_string(), B4), "the ARP reply");
    assert!(wait_until(Duration::from_secs(2), || env.verdict("arp_reply") == rep0 + 1), "arp_reply +1");
    env.settle();
    let c1 = env.counts();
    assert_eq!(env.verdict("arp_flood"), fl0);
    assert_eq!(env.packet_ins(), pi0 + 1);
    assert_eq!(
        (c1[0], c1[1], c1[2], c1[4], c1[5]),
        (c0[0], c0[1], c0[2], c0[4], c0[5]),
        "the request went nowhere else"
    );
    eprintln!("FIGURE ARP reply for {A4}: on port 4 in {took:?} (inject included): {arp:?}");

    // (b) an unknown IP in the pod range: flooded to every other port.
    let unknown = Ipv4Addr::new(10, 244, 1, 77);
    let req = build::arp_request(B_MAC, B4, unknown);
    let (fl0, rep0, c0) = (env.verdict("arp_flood"), env.verdict("arp_reply"), env.counts());
    env.inject(B_PORT, std::slice::from_ref(&req));
    for p in [1u32, 2, 3, 5, 6] {
        let i = (p - 1) as usize;
        assert_eq!(
            env.wait_count(p, c0[i] + 1, Duration::from_secs(5)),
            c0[i] + 1,
            "the request for {unknown} is flooded to port {p}"
        );
        let f = env.last_frame(p);
        assert_eq!(&f[..req.len()], &req[..], "port {p}: the original request");
    }
    assert!(wait_until(Duration::from_secs(2), || env.verdict("arp_flood") == fl0 + 1), "arp_flood +1");
    env.settle();
    let c1 = env.counts();
    assert_eq!(c1[3], c0[3], "not back to the asker");
    assert_eq!(env.verdict("arp_reply"), rep0);
    eprintln!("FIGURE ARP flood for {unknown}: tx per port 1-6 {c0:?} -> {c1:?}");

    // (c) the gateway: answered by table 20, no packet-in.
    let (dec0, pi0, b0) = (env.decisions(), env.packet_ins(), env.count(B_PORT));
    env.inject(B_PORT, &[build::arp_request(B_MAC, B4, GW4)]);
    assert_eq!(env.wait_count(B_PORT, b0 + 1, Duration::from_secs(3)), b0 + 1, "the gateway's reply");
    let arp = parse_arp(&env.last_frame(B_PORT));
    assert_eq!(arp, (2, GW_MAC.to_string(), GW4, B_MAC.to_string(), B4));
    env.settle();
    assert_eq!((env.decisions(), env.packet_ins()), (dec0, pi0), "the gateway's ARP stays in the switch");

    // (d) a pod the config does not know (port 6) sends IP: the Tracker learns it, and the
    // controller answers ARP for it.
    let pi0 = env.packet_ins();
    env.inject(6, &[build::udp(C_MAC, GW_MAC, C4.into(), A4.into(), 40600, 53, b"hello")]);
    assert!(wait_until(Duration::from_secs(3), || env.packet_ins() > pi0), "port 6's packet reaches the daemon");
    let mut tr = Value::Null;
    let learned = wait_until(Duration::from_secs(3), || {
        tr = env.d.json("/v1/tracker");
        tr["addresses"].as_array().is_some_and(|a| a.iter().any(|e| e["ip"] == "10.244.1.6"))
    });
    assert!(learned, "the Tracker learned 10.244.1.6: {tr:#}");
    let e = tr["addresses"].as_array().unwrap().iter().find(|e| e["ip"] == "10.244.1.6").unwrap().clone();
    assert_eq!((e["mac"].as_str(), e["port"].as_u64()), (Some(C_MAC.to_string().as_str()), Some(6)), "{e}");
    let (rep0, b0) = (env.verdict("arp_reply"), env.count(B_PORT));
    env.inject(B_PORT, &[build::arp_request(B_MAC, B4, C4)]);
    assert_eq!(
        env.wait_count(B_PORT, b0 + 1, Duration::from_secs(5)),
        b0 + 1,
        "an ARP reply for {C4}\n{}",
        env.d.stderr()
    );
    let arp = parse_arp(&env.last_frame(B_PORT));
    assert_eq!(arp, (2, C_MAC.to_string(), C4, B_MAC.to_string(), B4), "answered from the Tracker");
    assert!(wait_until(Duration::from_secs(2), || env.verdict("arp_reply") == rep0 + 1));
    eprintln!(
        "FIGURE ARP from the Tracker: {e}; reply {arp:?}; verdicts arp_reply={} arp_flood={} all={}",
        env.verdict("arp_reply"),
        env.verdict("arp_flood"),
        env.decisions()
    );
}

// === 5 ===

#[test]
fn tracker_lists_addresses_and_paths() {
    let env = Env::start("responder", &[]);
    let syn4 = build::tcp_syn(B_MAC, GW_MAC, B4.into(), A4.into(), 40700, 80);
    let syn6 = build::tcp_syn(B_MAC, GW_MAC, B6.into(), A6.into(), 40701, 80);
    let a0 = env.count(A_PORT);
    env.inject(B_PORT, &[syn4, syn6]);
    assert_eq!(env.wait_count(A_PORT, a0 + 2, Duration::from_secs(5)), a0 + 2, "both SYNs decided and delivered");
    let want_path = (format!("[{B6}]:40701"), format!("[{A6}]:80"));
    let mut tr = Value::Null;
    let ok = wait_until(Duration::from_secs(3), || {
        tr = env.d.json("/v1/tracker");
        let addrs = tr["addresses"].as_array().cloned().unwrap_or_default();
        let paths = tr["paths"].as_array().cloned().unwrap_or_default();
        ["10.244.1.4", "fd00:10:244:1::4"].iter().all(|ip| addrs.iter().any(|e| e["ip"] == *ip))
            && paths.iter().any(|p| p["src"] == want_path.0.as_str() && p["dst"] == want_path.1.as_str())
    });
    assert!(ok, "/v1/tracker lacks pod B's addresses or the tcp6 path {want_path:?}: {tr:#}");
    for ip in ["10.244.1.4", "fd00:10:244:1::4"] {
        let e = tr["addresses"].as_array().unwrap().iter().find(|e| e["ip"] == ip).unwrap();
        assert_eq!(e["mac"], B_MAC.to_string(), "{e}");
        assert_eq!(e["port"], 4, "{e}");
        assert_eq!(e["dpid"], DPID, "{e}");
        assert_eq!(e["moves"], 0, "{e}");
    }
    let paths = tr["paths"].as_array().unwrap();
    for (src, dst) in [(format!("{B4}:40700"), format!("{A4}:80")), want_path.clone()] {
        let p = paths
            .iter()
            .find(|p| p["src"] == src.as_str() && p["dst"] == dst.as_str())
            .unwrap_or_else(|| panic!("no path {src} -> {dst}: {tr:#}"));
        assert_eq!(p["proto"], 6, "{p}");
        let hops = p["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 1, "one hop (one packet-in): {p}");
        assert_eq!((hops[0]["dpid"].as_str(), hops[0]["in_port"].as_u64()), (Some(DPID), Some(4)), "{p}");
        assert!(hops[0]["shard"].as_u64().is_some_and(|s| s < u64::from(SHARDS)), "{p}");
        assert_eq!(hops[0]["packets"], 1, "{p}");
    }
    eprintln!("FIGURE /v1/tracker: {}", serde_json::to_string(&tr).unwrap());
}
