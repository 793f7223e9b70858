//! cni-ctl flapping under traffic (issue 12, item 7), against a real Open vSwitch 3.1 and the
//! reference cni-ctl server (`shardflow cnictl`, a child process): the daemon (`shardflow run`,
//! docs/pipeline.md's example, `[policy] source = "cnictl"`) decides a few connections, one of
//! them carrying paced traffic both ways; then cni-ctl is killed (SIGKILL), and
//! - the established connection's packets keep flowing (its flows are in the switch);
//! - a repeated first packet of an already-decided pair whose flows are gone (deleted, as an
//!   idle timeout would) is decided again from the shard's answer cache: delivered, counted as
//!   `allow`, its flows back;
//! - a new pair fails closed: dropped, no flow, counted as `fail_closed` in /metrics;
//!
//! and once cni-ctl is back on the same address, new pairs are decided again (recovery).
//! Every step waits on what it expects with a deadline. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{example_toml, inject, PipelineEnv};
use support::{wait_until, Cnictl};

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const A_PORT: u32 = 2;
const B_PORT: u32 = 4;

/// Everything allowed; answers cached for a minute (longer than the test).
const POLICY: &str = "version = 4\ndefault = \"allow\"\nttl_ms = 60000\n";

fn a() -> IpAddr {
    A.into()
}
fn b() -> IpAddr {
    B.into()
}

/// Pod B's SYN to pod A:80 from `sport`.
fn syn(sport: u16) -> Vec<u8> {
    build::tcp_syn(B_MAC, GW_MAC, b(), a(), sport, 80)
}

struct Env {
    p: PipelineEnv,
}

impl Env {
    fn decisions(&self, verdict: &str) -> u64 {
        self.p.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{verdict}\"")]) as u64
    }

    fn verdicts(&self) -> String {
        ["allow", "deny", "fail_closed", "fail_open"].map(|v| format!("{v}={}", self.decisions(v))).join(" ")
    }

    /// Waits (`t`) until the `verdict` counter reaches `n`; the value seen.
    fn wait_decisions(&self, verdict: &str, n: u64, t: Duration) -> u64 {
        let mut got = 0;
        wait_until(t, || {
            got = self.decisions(verdict);
            got >= n
        });
        got
    }

    /// The flows of br0 carrying the connection cookie of pod B's `frame`.
    fn flows_of(&self, frame: &[u8]) -> Vec<String> {
        let c = format!("cookie={:#x},", self.p.conn_cookie(B_PORT, frame));
        self.p.ovs.flows("br0").into_iter().filter(|l| l.trim_start().starts_with(&c)).collect()
    }

    fn wait_flows(&self, frame: &[u8], n: usize, t: Duration) -> Vec<String> {
        let mut got = Vec::new();
        wait_until(t, || {
            got = self.flows_of(frame);
            got.len() == n
        });
        got
    }

    /// Injects pod B's `frame` (a SYN) and waits (5 s) until it is delivered to pod A and the
    /// connection's two flows are in place.
    fn decided(&self, what: &str, frame: &[u8]) {
        let a0 = self.p.count(A_PORT);
        self.p.inject(B_PORT, &[frame.to_vec()]);
        let got = self.p.wait_count(A_PORT, a0 + 1, Duration::from_secs(5));
        assert!(got > a0, "{what}: SYN not delivered to pod A; {}\n{}", self.verdicts(), self.p.d.stderr());
        let f = self.wait_flows(frame, 2, Duration::from_secs(5));
        assert_eq!(f.len(), 2, "{what}: the connection's two flows: {f:#?}");
    }
}

#[test]
fn cnictl_flapping_keeps_cached_answers_fails_closed_and_recovers() {
    let dir = std::env::temp_dir().join(format!("shardflow-cnictl-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut srv = Cnictl::start(&policy, "127.0.0.1:0", 0);
    let addr = srv.addr;
    let toml = format!("{}\n[policy]\nsource = \"cnictl\"\ncnictl = \"{}\"\n", example_toml(), srv.url());
    let env = Env { p: PipelineEnv::start_with_config(&toml, &[], false, &[]) };

    // 1. Decided pairs: 43000 carries traffic; 43001..43003 will repeat their first packet.
    let established = syn(43000);
    env.decided("established pair", &established);
    let repeats: Vec<Vec<u8>> = (43001..43004).map(syn).collect();
    for (i, s) in repeats.iter().enumerate() {
        env.decided(&format!("pair {i}"), s);
    }
    // Pod A answers the established pair: its SYN-ACK goes back through the reverse flow.
    let b0 = env.p.count(B_PORT);
    env.p.inject(A_PORT, &[build::tcp_syn_ack(A_MAC, B_MAC, a(), b(), 80, 43000)]);
    assert!(env.p.wait_count(B_PORT, b0 + 1, Duration::from_secs(5)) > b0, "SYN-ACK of the established pair");
    let allow0 = env.decisions("allow");
    assert_eq!(allow0, 4, "four pairs decided by cni-ctl: {}", env.verdicts());

    // 2. Paced traffic on the established pair (pod A -> pod B ACKs every 20 ms) from now on.
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let pacer = scope.spawn(|| {
            let ack = build::tcp_ack(A_MAC, B_MAC, a(), b(), 80, 43000);
            while !stop.load(Ordering::SeqCst) {
                inject(&env.p.ovs, A_PORT, std::slice::from_ref(&ack));
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| flap(&env, &mut srv, addr, &policy, &repeats)));
        stop.store(true, Ordering::SeqCst);
        pacer.join().unwrap();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
    eprintln!("FIGURE paced traffic: {} ACKs injected on the established pair", sent.load(Ordering::SeqCst));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kill cni-ctl, check cached answers, fail-closed and the established traffic; restart it and
/// check recovery.
fn flap(env: &Env, srv: &mut Cnictl, addr: std::net::SocketAddr, policy: &std::path::Path, repeats: &[Vec<u8>]) {
    let traffic_to_b = |what: &str| {
        let b0 = env.p.count(B_PORT);
        let got = env.p.wait_count(B_PORT, b0 + 3, Duration::from_secs(5));
        assert!(got >= b0 + 3, "{what}: the established pair's traffic stopped ({b0} -> {got} frames at pod B)");
    };
    traffic_to_b("cni-ctl up");

    // cni-ctl dies (no goodbye: SIGKILL), its port closes.
    let mut child = srv.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    traffic_to_b("cni-ctl down");

    // Repeated first packets of decided pairs whose flows went away: answered from the cache.
    let (allow0, fc0) = (env.decisions("allow"), env.decisions("fail_closed"));
    for (i, s) in repeats.iter().enumerate() {
        let cookie = env.p.conn_cookie(4, s);
        env.p.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "del-flows", "br0", &format!("cookie={cookie:#x}/-1")]);
        assert!(env.flows_of(s).is_empty(), "pair {i}: flows deleted");
        env.decided(&format!("pair {i} repeated with cni-ctl down"), s);
    }
    let n = repeats.len() as u64;
    assert_eq!(env.wait_decisions("allow", allow0 + n, Duration::from_secs(3)), allow0 + n, "{}", env.verdicts());
    assert_eq!(env.decisions("fail_closed"), fc0, "no cached pair failed closed: {}", env.verdicts());
    eprintln!(
        "FIGURE cni-ctl down: {n} repeated first packets decided from the cache ({:?} after the kill)",
        killed.elapsed()
    );

    // New pairs fail closed: counted, not delivered, no flows.
    let fresh = syn(43100);
    let a0 = env.p.count(A_PORT);
    let t = Instant::now();
    env.p.inject(B_PORT, std::slice::from_ref(&fresh));
    assert_eq!(
        env.wait_decisions("fail_closed", fc0 + 1, Duration::from_secs(5)),
        fc0 + 1,
        "a new pair fails closed: {}\n{}",
        env.verdicts(),
        env.p.d.stderr()
    );
    let fail_closed_after = t.elapsed();
    // Ordering marker: a later SYN of an already-cached pair is delivered to pod A after the
    // fail-closed decision; the new pair's SYN must not be among what reached pod A.
    let marker = &repeats[0];
    let cookie = env.p.conn_cookie(4, marker);
    env.p.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "del-flows", "br0", &format!("cookie={cookie:#x}/-1")]);
    env.decided("marker", marker);
    assert_eq!(env.p.count(A_PORT), a0 + 1, "only the marker reached pod A, not the new pair's SYN");
    assert!(env.flows_of(&fresh).is_empty(), "no flow for a fail-closed pair: {:#?}", env.flows_of(&fresh));
    traffic_to_b("cni-ctl down, after the fail-closed pair");
    eprintln!("FIGURE cni-ctl down: new pair failed closed {fail_closed_after:?} after its SYN; {}", env.verdicts());

    // cni-ctl back on the same address: the new pair's retransmissions (every second, as TCP)
    // until one is decided; a brand-new pair after that is decided at once.
    let srv2 = Cnictl::start(policy, &addr.to_string(), 0);
    assert_eq!(srv2.addr, addr);
    let back = Instant::now();
    let a0 = env.p.count(A_PORT);
    let mut tries = 0;
    let ok = wait_until(Duration::from_secs(15), || {
        tries += 1;
        env.p.inject(B_PORT, std::slice::from_ref(&fresh));
        env.p.wait_count(A_PORT, a0 + 1, Duration::from_secs(1)) > a0
    });
    assert!(
        ok,
        "no recovery within 15 s of cni-ctl's restart ({tries} tries); {}\n{}",
        env.verdicts(),
        env.p.d.stderr()
    );
    let recovered = back.elapsed();
    assert_eq!(env.wait_flows(&fresh, 2, Duration::from_secs(5)).len(), 2, "the recovered pair's flows");
    env.decided("a brand-new pair after recovery", &syn(43200));
    traffic_to_b("after recovery");
    eprintln!("FIGURE cni-ctl recovery: decided on try {tries}, {recovered:?} after the restart; {}", env.verdicts());
    drop(srv2);
}
