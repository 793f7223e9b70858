//! Packet-In decisions from a policy file and from cni-ctl (the reference server, `shardflow
//! cnictl`, as a child process), with the real daemon (`shardflow run --config`, docs/pipeline.md's
//! example plus a `[policy]` section) against a real Open vSwitch 3.1 (private sandbox per test):
//! deny / allow / service (DNAT) from a file, a slow cni-ctl that does not block the shard,
//! cni-ctl down (fail-closed, then recovery; fail-open), and invalidation over gRPC and REST.
//!
//! Ports (the example): uplink 1 (`br0-p1`), pod A 2 (`br0-p2`, 10.244.1.2), gateway 3, pod B 4
//! (10.244.1.4), tunnel 5 (`p3`..`p5`), each with a tx pcap. Frames are built by
//! `shardflow::packet::build` and injected as hex with `netdev-dummy/receive`. Run with
//! `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Deref;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardflow::control::cnictl::proto::controller_service_client::ControllerServiceClient;
use shardflow::control::cnictl::proto::Invalidation;
use shardflow::packet::{build, MacAddr};
use shardflow::pipeline::cookie::{self, Category};
use support::pipeline_env::{example_toml, ip4_at, mac, pcap_frames, PipelineEnv};
use support::{free_port, wait_until, Cnictl};

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const A_PORT: u32 = 2;
const B_PORT: u32 = 4;

/// Pod B -> pod A tcp/22 denied, everything else allowed; 10.96.0.10:80/tcp -> pod A:8080.
const POLICY: &str = r#"
version = 7
default = "allow"
ttl_ms = 30000

[[rule]]
action = "deny"
src = "10.244.1.4"
dst = "10.244.1.2"
protocol = "tcp"
ports = "22"

[[service]]
vip = "10.96.0.10"
port = 80
protocol = "tcp"
endpoints = [ { ip = "10.244.1.2", port = 8080, weight = 1 } ]
"#;

fn a() -> IpAddr {
    A.into()
}
fn b() -> IpAddr {
    B.into()
}

// === set-up ===

/// A temporary folder (the policy file), removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new() -> Tmp {
        let dir = std::env::temp_dir().join(format!(
            "shardflow-policy-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    /// Writes [`POLICY`] and returns its path.
    fn policy(&self) -> PathBuf {
        let p = self.0.join("policy.toml");
        std::fs::write(&p, POLICY).unwrap();
        p
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    /// OVS with ports 1-5 (tx pcaps) and the daemon with the example config plus `[policy]`
    /// holding `policy` (TOML lines), attached (fan-out), its pipeline in place.
    fn start(policy: &str) -> Env {
        let toml = format!("{}\n[policy]\n{policy}\n", example_toml());
        Env(PipelineEnv::start_with_config(&toml, &[], false, &[]))
    }

    /// `shardflow_decisions_total{verdict=V}` over the shards (`None`: every verdict).
    fn decisions(&self, verdict: Option<&str>) -> u64 {
        match verdict {
            Some(v) => self.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{v}\"")]) as u64,
            None => self.d.metric_sum("shardflow_decisions_total", &[]) as u64,
        }
    }

    /// Waits (3 s) until `decisions(verdict)` reaches `n`; the value seen.
    fn wait_decisions(&self, verdict: Option<&str>, n: u64) -> u64 {
        let mut got = 0;
        wait_until(Duration::from_secs(3), || {
            got = self.decisions(verdict);
            got >= n
        });
        got
    }

    /// `dump-flows table=T --no-stats` lines carrying `cookie`, without the cookie, sorted.
    fn flows_of(&self, table: u8, cookie: u64) -> Vec<String> {
        let out = self
            .ovs
            .ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", &format!("table={table}"), "--no-stats"]);
        let mut v: Vec<String> = out.lines().map(split_cookie).filter(|(c, _)| *c == cookie).map(|(_, t)| t).collect();
        v.sort();
        v
    }

    /// Every flow of br0 carrying `cookie` (any table).
    fn all_flows_of(&self, cookie: u64) -> Vec<String> {
        self.ovs.flows("br0").iter().map(|l| split_cookie(l)).filter(|(c, _)| *c == cookie).map(|(_, t)| t).collect()
    }

    /// Waits (3 s) for `n` flows of `cookie` in `table`; returns them.
    fn wait_flows(&self, table: u8, cookie: u64, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        wait_until(Duration::from_secs(3), || {
            got = self.flows_of(table, cookie);
            got.len() >= n
        });
        got
    }

    /// The connection cookie the daemon gives the connection of `frame`.
    fn conn_cookie(&self, in_port: u32, frame: &[u8]) -> u64 {
        let c = self.0.conn_cookie(in_port, frame);
        assert_eq!(cookie::category(c), Some(Category::Connection));
        c
    }
}

/// ` cookie=0xC, REST` -> (C, ` REST`); a line without a cookie gets 0.
fn split_cookie(line: &str) -> (u64, String) {
    let Some(rest) = line.trim_start().strip_prefix("cookie=0x") else { return (0, line.to_string()) };
    let (c, rest) = rest.split_once(',').unwrap();
    (u64::from_str_radix(c, 16).unwrap(), rest.to_string())
}

/// (source port, destination port) of a TCP/UDP frame without IP options.
fn ports_of(f: &[u8]) -> (u16, u16) {
    (u16::from_be_bytes([f[34], f[35]]), u16::from_be_bytes([f[36], f[37]]))
}

/// Waits for a conntrack line containing every needle; returns it.
fn ct_line(env: &Env, needles: &[&str]) -> String {
    let mut ct = String::new();
    let ok = wait_until(Duration::from_secs(3), || {
        ct = env.conntrack();
        ct.lines().any(|l| needles.iter().all(|n| l.contains(n)))
    });
    assert!(ok, "no conntrack entry with {needles:?}:\n{ct}");
    ct.lines().find(|l| needles.iter().all(|n| l.contains(n))).unwrap().trim().to_string()
}

/// The two table-3 flows of an allowed pod B -> pod A TCP connection (without cookies).
fn allowed_pair(sport: u16, dport: u16) -> Vec<String> {
    let mut v = vec![
        format!(" table=3, idle_timeout=300, priority=100,tcp,nw_src={B},nw_dst={A},tp_src={sport},tp_dst={dport} actions=ct(commit,zone=1),set_field:{A_MAC}->eth_dst,output:{A_PORT}"),
        format!(" table=3, idle_timeout=300, priority=100,tcp,nw_src={A},nw_dst={B},tp_src={dport},tp_dst={sport} actions=ct(commit,zone=1),set_field:{B_MAC}->eth_dst,output:{B_PORT}"),
    ];
    v.sort();
    v
}

/// Injects pod B's SYN `sport -> A:dport` and asserts it is decided (allow), delivered to pod A
/// and its two flows installed; returns the first-packet latency.
fn allowed_syn(env: &Env, what: &str, sport: u16, dport: u16) -> Duration {
    let syn = build::tcp_syn(B_MAC, GW_MAC, b(), a(), sport, dport);
    let (allow0, a0) = (env.decisions(Some("allow")), env.count(A_PORT));
    let t = Instant::now();
    env.inject(B_PORT, std::slice::from_ref(&syn));
    assert_eq!(
        env.wait_count(A_PORT, a0 + 1, Duration::from_secs(5)),
        a0 + 1,
        "{what}: the SYN reaches pod A once\n{}",
        env.d.stderr()
    );
    let latency = t.elapsed();
    let f = env.last_frame(A_PORT);
    assert_eq!(mac(&f[0..6]), A_MAC.to_string(), "{what}: eth_dst = pod A's MAC");
    assert_eq!(&f[14..], &syn[14..], "{what}: delivered unchanged");
    assert_eq!(env.wait_decisions(Some("allow"), allow0 + 1), allow0 + 1, "{what}: one allow decision");
    let c = env.conn_cookie(B_PORT, &syn);
    let got = env.wait_flows(3, c, 2);
    assert_eq!(got, allowed_pair(sport, dport), "{what}: table 3 flows of cookie {c:#x}");
    latency
}

fn verdicts(env: &Env) -> String {
    ["allow", "service", "deny", "fail_closed", "fail_open"]
        .iter()
        .map(|v| format!("{v}={}", env.decisions(Some(v))))
        .collect::<Vec<_>>()
        .join(" ")
}

// === 1 ===

#[test]
fn policy_file_denies_allows_and_dnats() {
    let tmp = Tmp::new();
    let env = Env::start(&format!("source = \"file\"\nfile = {:?}", tmp.policy().display().to_string()));

    // Denied: pod B -> pod A tcp/22. A drop flow in table 3 (idle 10 s), nothing delivered.
    let syn22 = build::tcp_syn(B_MAC, GW_MAC, b(), a(), 40022, 22);
    let (deny0, a0) = (env.decisions(Some("deny")), env.count(A_PORT));
    env.inject(B_PORT, std::slice::from_ref(&syn22));
    assert_eq!(env.wait_decisions(Some("deny"), deny0 + 1), deny0 + 1, "one deny decision\n{}", env.d.stderr());
    let c22 = env.conn_cookie(B_PORT, &syn22);
    let drop_flow = env.wait_flows(3, c22, 1);
    assert_eq!(
        drop_flow,
        vec![format!(
            " table=3, idle_timeout=10, priority=100,tcp,nw_src={B},nw_dst={A},tp_src=40022,tp_dst=22 actions=drop"
        )],
        "the deny flow (cookie {c22:#x})"
    );
    assert_eq!(env.all_flows_of(c22).len(), 1, "only the drop flow: {:#?}", env.all_flows_of(c22));
    env.settle();
    assert_eq!(env.count(A_PORT), a0, "the denied SYN is not delivered");
    // Its retransmission is dropped in the switch: no packet-in, no decision.
    let (pi, dec) = (env.packet_ins(), env.decisions(None));
    env.inject(B_PORT, std::slice::from_ref(&syn22));
    env.settle();
    assert_eq!((env.packet_ins(), env.decisions(None)), (pi, dec), "the drop flow handles the retransmission");
    assert_eq!(env.count(A_PORT), a0, "the retransmitted SYN is not delivered either");
    eprintln!("FIGURE file deny: {}", drop_flow[0].trim());

    // Allowed: tcp/80 (default allow).
    let l80 = allowed_syn(&env, "file allow tcp/80", 40080, 80);
    eprintln!("FIGURE file allow: tcp/80 delivered {l80:?} after the inject started");

    // The service: 10.96.0.10:80 -> pod A:8080, DNAT in zone 2, both directions in table 0.
    let syn_vip = build::tcp_syn(B_MAC, GW_MAC, b(), VIP.into(), 40443, 80);
    let (svc0, a0) = (env.decisions(Some("service")), env.count(A_PORT));
    let t = Instant::now();
    env.inject(B_PORT, std::slice::from_ref(&syn_vip));
    assert_eq!(
        env.wait_count(A_PORT, a0 + 1, Duration::from_secs(5)),
        a0 + 1,
        "the VIP SYN reaches pod A\n{}",
        env.d.stderr()
    );
    let latency = t.elapsed();
    let f = env.last_frame(A_PORT);
    assert_eq!(mac(&f[0..6]), A_MAC.to_string(), "eth_dst = pod A's MAC");
    assert_eq!((ip4_at(&f, 26), ip4_at(&f, 30)), (B, A), "nw_dst translated to the endpoint");
    assert_eq!(ports_of(&f), (40443, 8080), "tp_dst translated to the endpoint's port");
    assert_eq!(env.wait_decisions(Some("service"), svc0 + 1), svc0 + 1, "one service decision");
    let cs = env.conn_cookie(B_PORT, &syn_vip);
    let t0 = env.wait_flows(0, cs, 2);
    let want = {
        let mut v = vec![
            format!(" idle_timeout=300, priority=150,tcp,in_port={B_PORT},nw_src={B},nw_dst={VIP},tp_src=40443,tp_dst=80 actions=ct(commit,zone=2,nat(dst={A}:8080)),set_field:{A_MAC}->eth_dst,output:{A_PORT}"),
            format!(" idle_timeout=300, priority=150,tcp,in_port={A_PORT},nw_src={A},nw_dst={B},tp_src=8080,tp_dst=40443 actions=ct(zone=2,nat),set_field:{B_MAC}->eth_dst,output:{B_PORT}"),
        ];
        v.sort();
        v
    };
    assert_eq!(t0, want, "the service flows in table 0 (cookie {cs:#x})");
    let line = ct_line(&env, &["sport=40443"]);
    assert!(
        line.contains("orig=(src=10.244.1.4,dst=10.96.0.10,sport=40443,dport=80)")
            && line.contains("reply=(src=10.244.1.2,dst=10.244.1.4,sport=8080,dport=40443)")
            && line.contains("zone=2"),
        "{line}"
    );
    eprintln!(
        "FIGURE file service: SYN to the VIP delivered DNATed {latency:?} after the inject started; conntrack: {line}"
    );

    // Pod A's SYN-ACK goes back to pod B with the VIP as its source (un-DNAT), in the switch.
    let (pi, dec, b0) = (env.packet_ins(), env.decisions(None), env.count(B_PORT));
    env.inject(A_PORT, &[build::tcp_syn_ack(A_MAC, GW_MAC, a(), b(), 8080, 40443)]);
    assert_eq!(env.wait_count(B_PORT, b0 + 1, Duration::from_secs(3)), b0 + 1, "the SYN-ACK reaches pod B");
    let f = env.last_frame(B_PORT);
    assert_eq!(mac(&f[0..6]), B_MAC.to_string(), "eth_dst = pod B's MAC");
    assert_eq!((ip4_at(&f, 26), ip4_at(&f, 30)), (VIP, B), "source back to the VIP");
    assert_eq!(ports_of(&f), (80, 40443), "source port back to 80");
    assert_eq!(f[47] & 0x12, 0x12, "a SYN-ACK");
    env.settle();
    assert_eq!((env.packet_ins(), env.decisions(None)), (pi, dec), "the reply caused no packet-in");
    let line = ct_line(&env, &["sport=40443", "state_reply=SYN_SENT"]);
    eprintln!(
        "FIGURE file service: SYN-ACK reached pod B from 10.96.0.10:80; conntrack: {line}; verdicts {}",
        verdicts(&env)
    );
}

// === 2 ===

#[test]
fn slow_cnictl_does_not_block_the_shard() {
    const N: u16 = 20;
    const LATENCY_MS: u64 = 50;
    let tmp = Tmp::new();
    let srv = Cnictl::start(&tmp.policy(), "127.0.0.1:0", LATENCY_MS);
    let env = Env::start(&format!("source = \"cnictl\"\ncnictl = \"{}\"", srv.url()));

    // One connection first (the client connects lazily): one answer takes the latency.
    let first = allowed_syn(&env, "cnictl warm-up", 41000, 80);
    assert!(first >= Duration::from_millis(LATENCY_MS), "an answer waits {LATENCY_MS} ms: {first:?}");

    // 20 new connections at once (one inject), each a cni-ctl query of its own.
    let syns: Vec<Vec<u8>> = (1..=N).map(|i| build::tcp_syn(B_MAC, GW_MAC, b(), a(), 41000 + i, 80)).collect();
    let (allow0, a0) = (env.decisions(Some("allow")), env.count(A_PORT));
    let t = Instant::now();
    env.inject(B_PORT, &syns);
    let injected = t.elapsed();
    // Meanwhile the shards answer: /v1/shards (through each shard's inbox) shows the queries
    // waiting together.
    let mut max_pending = 0;
    let mut stats_calls = Vec::new();
    let mut first_at = None;
    let mut last_at = None;
    let deadline = t + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = env.count(A_PORT) - a0;
        if n > 0 && first_at.is_none() {
            first_at = Some(t.elapsed());
        }
        if n >= usize::from(N) {
            last_at = Some(t.elapsed());
            break;
        }
        if stats_calls.len() < 10 {
            let s = Instant::now();
            let pending: u64 = env.shards().iter().map(|s| s["policy_pending"].as_u64().unwrap_or(0)).sum();
            stats_calls.push(s.elapsed());
            max_pending = max_pending.max(pending);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let Some(total) = last_at else {
        panic!(
            "only {} of {N} SYNs delivered within 5 s; verdicts {}\n{}",
            env.count(A_PORT) - a0,
            verdicts(&env),
            env.d.stderr()
        );
    };
    assert_eq!(env.wait_decisions(Some("allow"), allow0 + u64::from(N)), allow0 + u64::from(N), "{N} allow decisions");
    env.settle();
    assert_eq!(env.count(A_PORT), a0 + usize::from(N), "each SYN delivered once");
    let mut got: Vec<u16> = pcap_frames(&env.pcap(A_PORT))[a0..].iter().map(|f| ports_of(f).0).collect();
    got.sort_unstable();
    assert_eq!(got, (41001..=41000 + N).collect::<Vec<_>>(), "every connection's SYN");
    for i in 1..=N {
        let c = env.conn_cookie(B_PORT, &syns[usize::from(i) - 1]);
        assert_eq!(env.flows_of(3, c), allowed_pair(41000 + i, 80), "flows of connection {i}");
    }
    let serial = Duration::from_millis(LATENCY_MS * u64::from(N));
    eprintln!(
        "FIGURE slow cni-ctl ({LATENCY_MS} ms): warm-up connection {first:?}; {N} connections injected in {injected:?}, first delivered {:?}, all {N} delivered {total:?} after the inject started (serial would be >= {serial:?}); policy_pending seen up to {max_pending}; /v1/shards answered in {:?} while they waited",
        first_at.unwrap(),
        stats_calls
    );
    assert!(total < Duration::from_millis(900), "the {N} decisions overlap: {total:?}");
}

// === 3 ===

#[test]
fn cnictl_down_fails_closed_then_recovers() {
    let tmp = Tmp::new();
    let policy = tmp.policy();
    let mut srv = Cnictl::start(&policy, "127.0.0.1:0", 0);
    let addr = srv.addr;
    let env = Env::start(&format!("source = \"cnictl\"\ncnictl = \"{}\"", srv.url()));
    let l = allowed_syn(&env, "cnictl up", 41100, 80);
    eprintln!("FIGURE cnictl up: first SYN delivered {l:?} after the inject started");
    // The client's statistics on /metrics: one query, sent, answered.
    let m = |name: &str| env.d.metric_sum(name, &[]) as u64;
    assert!(m("shardflow_cnictl_queries_total") >= 1, "{}", env.d.get("/metrics").1);
    assert!(m("shardflow_cnictl_rpcs_total") >= 1);
    assert_eq!(m("shardflow_cnictl_errors_total"), 0);
    assert_eq!(m("shardflow_cnictl_down"), 0);

    let st = srv.stop();
    assert!(st.success(), "cnictl exit status {st}");
    let syn = build::tcp_syn(B_MAC, GW_MAC, b(), a(), 41101, 80);
    let c = env.conn_cookie(B_PORT, &syn);
    let (fc0, a0, dec0) = (env.decisions(Some("fail_closed")), env.count(A_PORT), env.decisions(None));
    let t = Instant::now();
    env.inject(B_PORT, std::slice::from_ref(&syn));
    assert_eq!(env.wait_decisions(Some("fail_closed"), fc0 + 1), fc0 + 1, "fail_closed counted\n{}", env.d.stderr());
    let fc_after = t.elapsed();
    env.settle();
    assert_eq!(env.decisions(None), dec0 + 1, "one decision: {}", verdicts(&env));
    assert_eq!(env.count(A_PORT), a0, "nothing delivered while cni-ctl is down");
    assert!(env.all_flows_of(c).is_empty(), "no flow installed: {:#?}", env.all_flows_of(c));
    eprintln!(
        "FIGURE cnictl down: SYN dropped (fail_closed) {fc_after:?} after the inject started; no flow; verdicts {}",
        verdicts(&env)
    );
    // The failed query is counted by the client (its deadline may end just after the shard's).
    assert!(
        wait_until(Duration::from_secs(3), || m("shardflow_cnictl_errors_total") >= 1),
        "cnictl_errors_total counts the failed query: {}",
        env.d.get("/metrics").1
    );

    // cni-ctl back on the same port; the SYN's retransmission (TCP: after 1 s) is decided.
    let srv2 = Cnictl::start(&policy, &addr.to_string(), 0);
    assert_eq!(srv2.addr, addr);
    let restarted = Instant::now();
    let mut tries = 0;
    let mut delivered = None;
    while tries < 5 && delivered.is_none() {
        tries += 1;
        let t = Instant::now();
        env.inject(B_PORT, std::slice::from_ref(&syn));
        if env.wait_count(A_PORT, a0 + 1, Duration::from_secs(1)) > a0 {
            delivered = Some(t.elapsed());
        }
    }
    let Some(latency) = delivered else {
        panic!(
            "the retransmitted SYN never got through after cni-ctl came back; verdicts {}\n{}",
            verdicts(&env),
            env.d.stderr()
        );
    };
    let f = env.last_frame(A_PORT);
    assert_eq!(&f[14..], &syn[14..]);
    assert_eq!(env.flows_of(3, c), allowed_pair(41101, 80), "the connection's flows after recovery");
    eprintln!(
        "FIGURE cnictl recovery: retransmitted SYN delivered on try {tries} ({latency:?} after that inject, {:?} after cni-ctl was back); verdicts {}",
        restarted.elapsed(),
        verdicts(&env)
    );
    assert_eq!(tries, 1, "the first retransmission after cni-ctl is back is decided");
    assert!(wait_until(Duration::from_secs(3), || m("shardflow_cnictl_in_flight") == 0), "nothing left in flight");
    assert_eq!(m("shardflow_cnictl_down"), 0, "up again after an answer");
    assert!(m("shardflow_cnictl_queries_total") >= 3, "{}", env.d.get("/metrics").1);
}

// === 4 ===

#[test]
fn fail_open_allows_while_cnictl_is_down() {
    let port = free_port();
    let env = Env::start(&format!("source = \"cnictl\"\ncnictl = \"http://127.0.0.1:{port}\"\nfail_open = true"));
    let syn = build::tcp_syn(B_MAC, GW_MAC, b(), a(), 41200, 80);
    let (fo0, a0) = (env.decisions(Some("fail_open")), env.count(A_PORT));
    let t = Instant::now();
    env.inject(B_PORT, std::slice::from_ref(&syn));
    assert_eq!(
        env.wait_count(A_PORT, a0 + 1, Duration::from_secs(5)),
        a0 + 1,
        "the SYN is delivered (fail-open)\n{}",
        env.d.stderr()
    );
    let latency = t.elapsed();
    assert_eq!(&env.last_frame(A_PORT)[14..], &syn[14..]);
    assert_eq!(env.wait_decisions(Some("fail_open"), fo0 + 1), fo0 + 1, "fail_open counted: {}", verdicts(&env));
    assert_eq!(env.decisions(Some("allow")), 0, "counted as fail_open, not allow");
    let c = env.conn_cookie(B_PORT, &syn);
    let flows = env.all_flows_of(c);
    eprintln!(
        "FIGURE fail-open: SYN delivered {latency:?} after the inject started with nothing on 127.0.0.1:{port}; verdicts {}; flows installed for it: {flows:#?}",
        verdicts(&env)
    );
}

// === 5 ===

#[test]
fn invalidation_over_grpc_and_rest() {
    let tmp = Tmp::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = Env::start(&format!(
        "source = \"file\"\nfile = {:?}\nlisten = \"{listen}\"",
        tmp.policy().display().to_string()
    ));
    assert!(
        wait_until(Duration::from_secs(3), || env.d.stderr().contains("ControllerService")),
        "the daemon serves ControllerService on {listen}\n{}",
        env.d.stderr()
    );

    // gRPC: one decided connection to pod A, then Invalidate{ips: [pod A]}.
    allowed_syn(&env, "before gRPC invalidate", 41300, 80);
    let syn1 = build::tcp_syn(B_MAC, GW_MAC, b(), a(), 41300, 80);
    let c1 = env.conn_cookie(B_PORT, &syn1);
    let cache0: u64 = env.shards().iter().map(|s| s["policy_cache"].as_u64().unwrap_or(0)).sum();
    assert_eq!(cache0, 1, "one cached answer");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t = Instant::now();
    let reply = rt.block_on(async {
        let mut c = ControllerServiceClient::connect(format!("http://{listen}")).await.unwrap();
        c.invalidate(Invalidation { ips: vec![A.to_string()], below_version: 0, all: false })
            .await
            .unwrap()
            .into_inner()
    });
    let took = t.elapsed();
    assert_eq!((reply.dropped, reply.flows_deleted), (1, 1), "one answer and one connection: {reply:?}");
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(3), || {
        left = env.all_flows_of(c1);
        left.is_empty()
    });
    assert!(gone, "the connection's flows are deleted: {left:#?}");
    let cache: u64 = env.shards().iter().map(|s| s["policy_cache"].as_u64().unwrap_or(0)).sum();
    assert_eq!(cache, 0, "the cached answer is gone");
    eprintln!("FIGURE gRPC Invalidate: reply {reply:?} in {took:?}; flows of {c1:#x} gone from table 3");

    // The next packet of that connection asks again (a new decision, flows back).
    let (dec, a0) = (env.decisions(None), env.count(A_PORT));
    env.inject(B_PORT, std::slice::from_ref(&syn1));
    assert_eq!(env.wait_count(A_PORT, a0 + 1, Duration::from_secs(3)), a0 + 1, "delivered after the invalidation");
    assert_eq!(env.wait_decisions(None, dec + 1), dec + 1, "decided again");
    assert_eq!(env.wait_flows(3, c1, 2), allowed_pair(41300, 80), "flows back");

    // REST: the same for another connection (and the re-decided one).
    allowed_syn(&env, "before REST invalidate", 41301, 80);
    let c2 = env.conn_cookie(B_PORT, &build::tcp_syn(B_MAC, GW_MAC, b(), a(), 41301, 80));
    let t = Instant::now();
    let (st, body) = env.d.post(&format!("/v1/invalidate?ip={A}"), "");
    let took = t.elapsed();
    assert_eq!(st, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((r["answers_dropped"].as_u64(), r["connections_removed"].as_u64()), (Some(2), Some(2)), "{body}");
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(3), || {
        left = env.all_flows_of(c1);
        left.extend(env.all_flows_of(c2));
        left.is_empty()
    });
    assert!(gone, "both connections' flows are deleted: {left:#?}");
    let t3: Vec<String> =
        env.ovs.flows("br0").into_iter().filter(|l| l.contains("table=3, ") && l.contains("priority=100")).collect();
    assert!(t3.is_empty(), "no connection flow left in table 3: {t3:#?}");
    eprintln!("FIGURE REST invalidate: {body} in {took:?}; table 3 holds no connection flow");
}
