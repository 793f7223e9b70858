//! The pipeline issue's acceptance tests: the real daemon (`shardflow run --config` with the
//! `[pipeline]` example of docs/pipeline.md) against a real Open vSwitch 3.1 (private sandbox per
//! test). The daemon installs the default pipeline in one bundle on connect, uplink traffic learns
//! its return flows, conntrack zones and NAT work with REST-added policy flows, a daemon restart
//! loses no packet and changes nothing, an ovs-vswitchd restart gets the pipeline and the live
//! flows back, and a resync removes a stale flow and re-adds a missing one in one bundle.
//!
//! Ports (the example): uplink 1 (`br0-p1`), pod A 2 (`br0-p2`), gateway 3, pod B 4, tunnel 5
//! (`p3`..`p5`), each with a tx pcap. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardflow::config::Config;
use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::pipeline::cookie::{self, Category};
use shardflow::pipeline::default::learned_cookie;
use support::pipeline_env::{add_dummy_ports, example_toml, mac, pcap_frames, pcap_path, port_name, DPID, SHARDS};
use support::{pcap_packet_count, wait_until, Daemon, Ovs};
const REMOTE_MAC: &str = "02:00:00:00:00:aa";
const NODE_MAC: &str = "02:00:00:00:00:01";
const REMOTE_IP: &str = "192.168.0.10";
const POD_A_MAC: &str = "0a:58:0a:f4:01:02";
const POD_A_IP: &str = "10.244.1.2";
const POD_B_MAC: &str = "0a:58:0a:f4:01:04";
const POD_B_IP: &str = "10.244.1.4";
const GW_MAC: &str = "02:00:0a:f4:01:01";

// === configuration and expected flows ===

struct Expect {
    cfg: Config,
    generation: u16,
}

impl Expect {
    fn new(toml: &str) -> Expect {
        let cfg = Config::from_toml(toml).unwrap();
        assert_eq!(cfg.shards.count, usize::from(SHARDS));
        let generation = shardflow::pipeline::resync::generation_of(&shardflow::daemon::desired_texts(&cfg, 0));
        Expect { cfg, generation }
    }

    /// The daemon's desired flows as `dump-flows --no-stats` prints them, sorted.
    fn flows(&self) -> Vec<String> {
        let mut v: Vec<String> = shardflow::daemon::desired_texts(&self.cfg, self.generation)
            .iter()
            .map(|t| FlowMod::parse(t, FlowModCommand::Add).unwrap_or_else(|e| panic!("{t}: {e}")).to_flow_text())
            .collect();
        v.sort();
        v
    }

    /// A connection-category cookie of this generation.
    fn conn_cookie(&self, object: u64) -> u64 {
        cookie::make(self.generation, Category::Connection, object)
    }

    fn learned_prefix(&self) -> String {
        // Learned flows: generation | 0x04 | 0x06_80_0000_PP; the prefix without PP.
        format!("cookie={:#x}", learned_cookie(self.generation, 6) >> 8)
    }
}

fn diff(a_name: &str, a: &[String], b_name: &str, b: &[String]) -> String {
    let a: BTreeSet<&String> = a.iter().collect();
    let b: BTreeSet<&String> = b.iter().collect();
    let mut s = String::new();
    for x in a.difference(&b) {
        s.push_str(&format!("only in {a_name}: {x}\n"));
    }
    for x in b.difference(&a) {
        s.push_str(&format!("only in {b_name}: {x}\n"));
    }
    s
}

// === set-up ===

/// OVS with ports 1-5 (tx pcaps) and the daemon with the example config, attached (fan-out),
/// its pipeline in place.
fn setup() -> (Ovs, Daemon, Expect) {
    setup_with(&example_toml())
}

/// The example config with a policy file that denies everything: the pipeline's own behaviour
/// shows, not the default policy's decisions.
fn setup_deny_all() -> (Ovs, Daemon, Expect) {
    let dir = std::env::temp_dir().join(format!("shardflow-denyall-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("deny.toml");
    std::fs::write(&policy, "default = \"deny\"\n").unwrap();
    let toml = format!("{}\n[policy]\nsource = \"file\"\nfile = \"{}\"\n", example_toml(), policy.display());
    setup_with(&toml)
}

fn setup_with(toml: &str) -> (Ovs, Daemon, Expect) {
    let ovs = Ovs::start(&["br0"]);
    add_dummy_ports(&ovs, &[3, 4, 5]);
    let d = Daemon::start_with_config(SHARDS, toml);
    d.attach(&ovs, "br0", false);
    wait_pipeline(&d, Duration::from_secs(10));
    (ovs, d, Expect::new(&example_toml()))
}

/// Waits until the switch is listed with both connections and its pipeline installed; returns
/// its /v1/switches entry.
fn wait_pipeline(d: &Daemon, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        last = d.json("/v1/switches");
        let s = last.as_array().and_then(|a| a.iter().find(|s| s["dpid"] == DPID));
        let ready = s.is_some_and(|s| {
            s["connections"].as_u64() == Some(u64::from(SHARDS)) && !s["pipeline_installed_ms"].is_null()
        });
        ready && !pipeline_logs(d).is_empty()
    });
    assert!(ok, "no pipeline within {timeout:?}: {last}\n{}", d.stderr());
    last.as_array().unwrap().iter().find(|s| s["dpid"] == DPID).unwrap().clone()
}

/// The key=value fields of every "pipeline in place" log line of the daemon.
fn pipeline_logs(d: &Daemon) -> Vec<BTreeMap<String, String>> {
    d.stderr()
        .lines()
        .filter(|l| l.contains("pipeline in place"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn field(m: &BTreeMap<String, String>, k: &str) -> usize {
    m.get(k).unwrap_or_else(|| panic!("log line lacks {k}: {m:?}")).parse().unwrap()
}

/// Waits for the pcap of `port` to hold `n` records (3 s); returns the count seen.
fn wait_count(ovs: &Ovs, port: u32, n: usize) -> usize {
    let path = pcap_path(ovs, port);
    let mut got = 0;
    wait_until(Duration::from_secs(3), || {
        got = pcap_packet_count(&path);
        got >= n
    });
    got
}

fn ip(b: &[u8]) -> String {
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// `netdev-dummy/receive` of one or more packets (flow syntax) on OpenFlow port `port`.
fn receive(ovs: &Ovs, port: u32, packets: &[String]) {
    let name = port_name(port);
    let mut args: Vec<&str> = vec!["netdev-dummy/receive", &name];
    args.extend(packets.iter().map(String::as_str));
    ovs.ok("ovs-appctl", &args);
}

/// An IPv4 packet in the datapath flow syntax of netdev-dummy/receive.
fn pkt(in_port: u32, (smac, dmac): (&str, &str), (src, dst): (&str, &str), proto: u8, l4: &str) -> String {
    format!(
        "in_port({in_port}),eth(src={smac},dst={dmac}),eth_type(0x0800),ipv4(src={src},dst={dst},proto={proto},tos=0,ttl=64,frag=no),{l4}"
    )
}

fn table(ovs: &Ovs, t: u8) -> Vec<String> {
    let mut v: Vec<String> = ovs
        .ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", &format!("table={t}"), "--no-stats"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn conntrack(ovs: &Ovs) -> String {
    ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"])
}

/// `dump-flows --no-stats` without panicking (None while ovs-vswitchd is not answering).
fn try_flows(ovs: &Ovs) -> Option<Vec<String>> {
    let out = ovs.tool("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "--no-stats"]);
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    v.sort();
    Some(v)
}

/// Stops the daemon with SIGTERM and starts a new one with the same config on the same ports;
/// returns it and the time from its start to its pipeline being in place.
fn restart_daemon(d: Daemon) -> (Daemon, Duration) {
    let mut d = d;
    let st = d.stop(Duration::from_secs(5)).unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM\n{}", d.stderr()));
    assert!(st.success(), "exit status {st}\n{}", d.stderr());
    let (base, http) = (d.base_port, d.http_port);
    drop(d);
    let t = Instant::now();
    let d2 = Daemon::start_on_with_config(SHARDS, base, http, &example_toml());
    wait_pipeline(&d2, Duration::from_secs(20));
    (d2, t.elapsed())
}

// === 1 ===

#[test]
fn pipeline_installed_in_one_bundle_equals_generator() {
    let (ovs, d, e) = setup();
    let sw = wait_pipeline(&d, Duration::from_secs(1));
    let want = e.flows();
    let got = ovs.flows("br0");
    assert!(got == want, "dump-flows differs from desired_texts:\n{}", diff("OVS", &got, "desired", &want));
    let logs = pipeline_logs(&d);
    assert_eq!(logs.len(), 1, "one install: {logs:?}");
    let l = &logs[0];
    assert_eq!(field(l, "added"), want.len(), "{l:?}");
    assert_eq!((field(l, "replaced"), field(l, "deleted"), field(l, "unchanged")), (0, 0, 0), "{l:?}");
    // Every pipeline flow carries this run's generation and category 0x01 or 0x02.
    for line in &got {
        let c = line.trim().strip_prefix("cookie=0x").unwrap().split(',').next().unwrap();
        let c = u64::from_str_radix(c, 16).unwrap();
        assert_eq!(cookie::generation(c), e.generation, "{line}");
        assert!(matches!(cookie::category(c), Some(Category::Dispatch | Category::Pipeline)), "{line}");
    }
    eprintln!(
        "FIGURE pipeline: {} flows, one bundle, pipeline_installed_ms={} (generation {:#06x})",
        want.len(),
        sw["pipeline_installed_ms"],
        e.generation
    );
}

// === 2 ===

#[test]
fn learned_return_flows_with_the_daemon() {
    let (ovs, _d, e) = setup();
    let l4 = [
        (
            "tcp",
            6u8,
            "tcp(src=40000,dst=80),tcp_flags(syn)",
            "tp_src=80,tp_dst=40000",
            "tcp(src=80,dst=40000),tcp_flags(syn|ack)",
        ),
        ("udp", 17, "udp(src=5353,dst=53)", "tp_src=53,tp_dst=5353", "udp(src=53,dst=5353)"),
        ("sctp", 132, "sctp(src=3868,dst=3869)", "tp_src=3869,tp_dst=3868", "sctp(src=3869,dst=3868)"),
    ];
    for (i, (kw, proto, l4key, reply_ports, _)) in l4.iter().enumerate() {
        let before = pcap_packet_count(&pcap_path(&ovs, 2));
        receive(&ovs, 1, &[pkt(1, (REMOTE_MAC, NODE_MAC), (REMOTE_IP, POD_A_IP), *proto, l4key)]);
        assert_eq!(wait_count(&ovs, 2, before + 1), before + 1, "{kw}: delivered to pod A once");
        let f = pcap_frames(&pcap_path(&ovs, 2)).pop().unwrap();
        assert_eq!(mac(&f[0..6]), POD_A_MAC, "{kw}");
        let want = format!(
            " cookie={:#x}, table=6, idle_timeout=60, priority=100,{kw},nw_src={POD_A_IP},nw_dst={REMOTE_IP},{reply_ports} actions=load:0x{}->NXM_OF_ETH_DST[],load:0x{}->NXM_OF_ETH_SRC[],load:0->NXM_NX_TUN_IPV4_DST[],output:1",
            learned_cookie(e.generation, *proto),
            REMOTE_MAC.replace(':', "").trim_start_matches('0'),
            NODE_MAC.replace(':', "").trim_start_matches('0'),
        );
        let mut t6 = Vec::new();
        assert!(
            wait_until(Duration::from_secs(3), || {
                t6 = table(&ovs, 6);
                t6.contains(&want)
            }),
            "{kw}: table 6 lacks\n{want}\nit has:\n{}",
            t6.join("\n")
        );
        assert_eq!(t6.len(), i + 2, "one learned flow per protocol plus the miss: {t6:#?}");
    }
    let t6 = table(&ovs, 6);
    eprintln!("FIGURE learned: table 6 holds {} learned flows:\n{}", t6.len() - 1, t6.join("\n"));

    // The pod's replies follow them out of the uplink, MACs swapped, without conntrack.
    let up = pcap_path(&ovs, 1);
    let before = pcap_packet_count(&up);
    for (kw, proto, _, _, reply) in &l4 {
        receive(&ovs, 2, &[pkt(2, (POD_A_MAC, GW_MAC), (POD_A_IP, REMOTE_IP), *proto, reply)]);
        let _ = kw;
    }
    assert_eq!(wait_count(&ovs, 1, before + 3), before + 3, "three replies leave the uplink");
    let fs = pcap_frames(&up);
    for (f, (kw, proto, ..)) in fs[before..].iter().zip(&l4) {
        assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (REMOTE_MAC.to_string(), NODE_MAC.to_string()), "{kw}");
        assert_eq!(f[23], *proto, "{kw}");
        assert_eq!((ip(&f[26..30]), ip(&f[30..34])), (POD_A_IP.to_string(), REMOTE_IP.to_string()), "{kw}");
    }
    let ct = conntrack(&ovs);
    assert!(!ct.contains(REMOTE_IP), "uplink connections bypass conntrack: {ct}");
    eprintln!("FIGURE learned: uplink tx pcap {before} -> {}", pcap_packet_count(&up));
}

// === 3 ===

/// Sum of forward+reverse packet-ins of the connections whose key contains every needle.
fn packet_ins_of(d: &Daemon, needles: &[&str]) -> u64 {
    let v = d.json("/v1/shards");
    let mut n = 0;
    for s in v.as_array().unwrap() {
        for c in s["connections"].as_array().unwrap() {
            let k = c["key"].as_str().unwrap();
            if needles.iter().all(|x| k.contains(x)) {
                n += c["forward"].as_u64().unwrap() + c["reverse"].as_u64().unwrap();
            }
        }
    }
    n
}

#[test]
fn conntrack_zones_and_nat() {
    let (ovs, d, e) = setup_deny_all();
    let url = format!("/v1/switches/{DPID}/flows?command=add");
    let syn = pkt(4, (POD_B_MAC, GW_MAC), (POD_B_IP, POD_A_IP), 6, "tcp(src=33333,dst=80),tcp_flags(syn)");
    let key = ["10.244.1.4:33333", "10.244.1.2:80"];

    // The policy denies: table 6 miss -> ct(zone=1) -> +new -> table 3 miss -> packet-in -> a
    // drop flow (priority 100), nothing committed, nothing delivered.
    let pod_a = pcap_path(&ovs, 2);
    let before_a = pcap_packet_count(&pod_a);
    receive(&ovs, 4, std::slice::from_ref(&syn));
    assert!(
        wait_until(Duration::from_secs(5), || packet_ins_of(&d, &key) >= 1),
        "the shard did not record the pod-to-pod SYN: {}",
        d.json("/v1/shards")
    );
    // The packet-in is sent from the SYN's pass through the pipeline: once the shard recorded
    // it, OVS is done with the packet (a commit or an output would have happened already).
    let ct = conntrack(&ovs);
    assert!(!ct.contains("sport=33333"), "no commit without a policy: {ct}");
    assert_eq!(pcap_packet_count(&pod_a), before_a, "not delivered without a policy");

    // The policy's per-connection flow, through the FlowManager.
    let policy = format!(
        "table=3,priority=200,cookie={:#x},tcp,nw_src={POD_B_IP},nw_dst={POD_A_IP},tp_dst=80,actions=ct(commit,zone=1),resubmit(,5)",
        e.conn_cookie(1)
    );
    let (st, body) = d.post(&url, &policy);
    assert_eq!(st, 200, "{body}");
    let pins = packet_ins_of(&d, &key);
    receive(&ovs, 4, &[syn]);
    assert_eq!(wait_count(&ovs, 2, before_a + 1), before_a + 1, "delivered to pod A");
    let f = pcap_frames(&pod_a).pop().unwrap();
    assert_eq!(mac(&f[0..6]), POD_A_MAC);
    let mut ct = String::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            ct = conntrack(&ovs);
            ct.contains("orig=(src=10.244.1.4,dst=10.244.1.2,sport=33333,dport=80)")
        }),
        "no conntrack entry: {ct}"
    );
    let line = ct.lines().find(|l| l.contains("sport=33333")).unwrap().to_string();
    assert!(line.contains("zone=1") && line.contains("SYN_SENT"), "{line}");
    assert_eq!(packet_ins_of(&d, &key), pins, "the policy flow handles the SYN in the switch");
    eprintln!("FIGURE ct zone 1: {line}");

    // A service (ClusterIP 10.96.0.10:80 -> pod A:8080) in table 0, priority 150. The DNAT'd
    // headers are only visible after recirculation: `ct(commit,nat(..)),resubmit(,5)` would match
    // table 5 on the VIP and drop (checked below by trace), so the flow recirculates into table 5.
    let service = format!(
        "table=0,priority=150,cookie={:#x},tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,zone=2,nat(dst={POD_A_IP}:8080),table=5)",
        e.conn_cookie(2)
    );
    let (st, body) = d.post(&url, &service);
    assert_eq!(st, 200, "{body}");
    let t0 = table(&ovs, 0);
    assert!(
        t0.iter().any(|l| l.contains(
            "priority=150,tcp,nw_dst=10.96.0.10,tp_dst=80 actions=ct(commit,table=5,zone=2,nat(dst=10.244.1.2:8080))"
        )),
        "{t0:#?}"
    );
    let before_a = pcap_packet_count(&pod_a);
    receive(
        &ovs,
        4,
        &[pkt(4, (POD_B_MAC, GW_MAC), (POD_B_IP, "10.96.0.10"), 6, "tcp(src=44444,dst=80),tcp_flags(syn)")],
    );
    assert_eq!(wait_count(&ovs, 2, before_a + 1), before_a + 1, "the DNAT'd SYN reaches pod A");
    let f = pcap_frames(&pod_a).pop().unwrap();
    assert_eq!(mac(&f[0..6]), POD_A_MAC);
    assert_eq!(
        (ip(&f[26..30]), ip(&f[30..34])),
        (POD_B_IP.to_string(), POD_A_IP.to_string()),
        "translated destination"
    );
    assert_eq!(u16::from_be_bytes([f[36], f[37]]), 8080, "translated port");
    assert!(
        wait_until(Duration::from_secs(3), || {
            ct = conntrack(&ovs);
            ct.contains("sport=44444")
        }),
        "no service entry: {ct}"
    );
    let line = ct.lines().find(|l| l.contains("sport=44444")).unwrap().to_string();
    assert!(
        line.contains("orig=(src=10.244.1.4,dst=10.96.0.10,sport=44444,dport=80)")
            && line.contains("reply=(src=10.244.1.2,dst=10.244.1.4,sport=8080,dport=44444)")
            && line.contains("zone=2"),
        "{line}"
    );
    eprintln!("FIGURE ct zone 2 (DNAT): {line}");
    // The datapath commits with NAT and recirculates into table 5 (there nw_dst is the pod's).
    let t = ovs.ok(
        "ovs-appctl",
        &[
            "ofproto/trace",
            "br0",
            "tcp,in_port=4,dl_src=0a:58:0a:f4:01:04,nw_src=10.244.1.4,nw_dst=10.96.0.10,tp_src=44445,tp_dst=80,tcp_flags=0x002",
        ],
    );
    assert!(t.contains("Datapath actions: ct(commit,zone=2,nat(dst=10.244.1.2:8080)),recirc("), "{t}");
}

// === 4 ===

#[test]
fn daemon_restart_loses_no_packet() {
    const TOTAL: usize = 300;
    const BATCH: usize = 5;
    let (ovs, d, e) = setup();
    // An established uplink -> pod A connection: SYN (learns the return flow), SYN-ACK back.
    let fwd = (REMOTE_MAC, NODE_MAC);
    let addrs = (REMOTE_IP, POD_A_IP);
    receive(&ovs, 1, &[pkt(1, fwd, addrs, 6, "tcp(src=41000,dst=80),tcp_flags(syn)")]);
    let learned = learned_cookie(e.generation, 6);
    assert!(
        wait_until(Duration::from_secs(3), || table(&ovs, 6)
            .iter()
            .any(|l| l.contains(&format!("cookie={learned:#x}")))),
        "no learned flow"
    );
    let up0 = pcap_packet_count(&pcap_path(&ovs, 1));
    receive(
        &ovs,
        2,
        &[pkt(2, (POD_A_MAC, GW_MAC), (POD_A_IP, REMOTE_IP), 6, "tcp(src=80,dst=41000),tcp_flags(syn|ack)")],
    );
    assert_eq!(wait_count(&ovs, 1, up0 + 1), up0 + 1, "the SYN-ACK follows the learned flow");
    let before = ovs.flows("br0");
    assert_eq!(before.len(), e.flows().len() + 1, "pipeline + one learned flow: {before:#?}");

    let pod_a = pcap_path(&ovs, 2);
    let start_count = pcap_packet_count(&pod_a);
    let ack = pkt(1, fwd, addrs, 6, "tcp(src=41000,dst=80),tcp_flags(ack)");
    let sent = AtomicUsize::new(0);
    let resumed = AtomicBool::new(false);
    let (d2, reconnect, window) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let paused_at = Instant::now();
            let mut k = 0;
            while k < TOTAL {
                // Packets 0-100 before the stop, 100-200 while no daemon runs, the rest after the
                // resync (the sender waits at 200 for it, at most 30 s).
                if k >= 200 && !resumed.load(Ordering::SeqCst) && paused_at.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let batch: Vec<String> = std::iter::repeat_n(ack.clone(), BATCH).collect();
                receive(&ovs, 1, &batch);
                k += BATCH;
                sent.store(k, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert!(wait_until(Duration::from_secs(10), || sent.load(Ordering::SeqCst) >= 100), "sender stuck");
        let at_stop = sent.load(Ordering::SeqCst);
        let (d2, took) = restart_daemon(d);
        let at_back = sent.load(Ordering::SeqCst);
        resumed.store(true, Ordering::SeqCst);
        sender.join().unwrap();
        (d2, took, (at_stop, at_back))
    });
    let mut got = 0;
    wait_until(Duration::from_secs(5), || {
        got = pcap_packet_count(&pod_a) - start_count;
        got >= TOTAL
    });
    std::thread::sleep(Duration::from_millis(200));
    got = pcap_packet_count(&pod_a) - start_count;
    eprintln!(
        "FIGURE daemon restart: {got}/{TOTAL} packets arrived; sent {}..{} between SIGTERM and the new pipeline; new daemon start -> pipeline in place {:?}",
        window.0, window.1, reconnect
    );
    assert_eq!(got, TOTAL, "every packet of the stream reached pod A");
    let after = ovs.flows("br0");
    assert!(after == before, "flows changed across the restart:\n{}", diff("before", &before, "after", &after));
    let logs = pipeline_logs(&d2);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let l = &logs[0];
    assert_eq!((field(l, "added"), field(l, "replaced"), field(l, "deleted")), (0, 0, 0), "{l:?}");
    assert_eq!(field(l, "unchanged"), e.flows().len(), "{l:?}");
}

// === 5 ===

#[test]
fn vswitchd_restart_restores_pipeline_and_live_flows() {
    let (ovs, d, e) = setup();
    let rest = format!(
        "table=3,priority=100,cookie=0x0001030000000001,tcp,nw_src={POD_B_IP},nw_dst={POD_A_IP},tp_dst=80,actions=ct(commit,zone=1),resubmit(,5)\n\
         table=4,priority=9,cookie=0x77,ip,nw_src=192.168.9.9,actions=drop\n"
    );
    let (st, body) = d.post(&format!("/v1/switches/{DPID}/flows?command=add"), &rest);
    assert_eq!(st, 200, "{body}");
    // One learned flow too (OVS forgets it with the restart).
    receive(&ovs, 1, &[pkt(1, (REMOTE_MAC, NODE_MAC), (REMOTE_IP, POD_A_IP), 17, "udp(src=5353,dst=53)")]);
    let learned = e.learned_prefix();
    assert!(
        wait_until(Duration::from_secs(3), || table(&ovs, 6).iter().any(|l| l.trim_start().starts_with(&learned))),
        "no learned flow"
    );
    let before = ovs.flows("br0");
    assert_eq!(before.len(), e.flows().len() + 3, "{before:#?}");
    let want: Vec<String> = before.iter().filter(|l| !l.trim_start().starts_with(&learned)).cloned().collect();
    assert!(
        want.iter().any(|l| l.contains("cookie=0x1030000000001")) && want.iter().any(|l| l.contains("cookie=0x77"))
    );

    // A poller (every 20 ms, from before the restart) sees the tables go (ovs-ofctl failing or
    // empty: the new ovs-vswitchd) and come back whole.
    let done = AtomicBool::new(false);
    let t_cmd = Instant::now();
    let (restart_cmd, back, gone, up, last) = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut gone: Option<Duration> = None;
            let mut up: Option<Duration> = None;
            let mut last = None;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let f = try_flows(&ovs);
                let t = t_cmd.elapsed();
                if f.is_some() && gone.is_some() && up.is_none() {
                    up = Some(t);
                }
                match &f {
                    Some(f) if *f == want && gone.is_some() => return (Some(t), gone, up, last),
                    Some(f) if f.len() >= before.len() => {}
                    _ => {
                        gone.get_or_insert(t);
                    }
                }
                last = f;
                if Instant::now() >= deadline || (done.load(Ordering::SeqCst) && gone.is_none()) {
                    return (None, gone, up, last);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ovs.restart_vswitchd();
        let restart_cmd = t_cmd.elapsed();
        let (back, gone, up, last) = poller.join().unwrap();
        done.store(true, Ordering::SeqCst);
        (restart_cmd, back, gone, up, last)
    });
    let Some(back) = back else {
        panic!(
            "flows not restored (restart command {restart_cmd:?}, tables gone at {gone:?}):\n{}\n{}",
            diff("wanted", &want, "OVS", &last.unwrap_or_default()),
            d.stderr()
        );
    };
    let gone = gone.unwrap();
    let after_return = back.saturating_sub(restart_cmd);
    eprintln!(
        "FIGURE vswitchd restart: all {} flows back {after_return:?} after the restart command returned (it took {restart_cmd:?}); after the command started: old tables gone at {gone:?}, new ovs-vswitchd first answering at {up:?}, tables whole at {back:?}",
        want.len()
    );
    assert!(after_return < Duration::from_secs(10), "{after_return:?}");
    // The resync after the restart put everything back in one bundle.
    assert!(wait_until(Duration::from_secs(2), || pipeline_logs(&d).len() >= 2), "{}", d.stderr());
    let logs = pipeline_logs(&d);
    let l = logs.last().unwrap();
    assert_eq!(field(l, "added"), want.len(), "pipeline + both REST flows re-added: {l:?}");
    assert_eq!((field(l, "deleted"), field(l, "replaced")), (0, 0), "{l:?}");
    let sw = wait_pipeline(&d, Duration::from_secs(2));
    eprintln!("FIGURE vswitchd restart: handshake -> resync committed {} ms", sw["pipeline_installed_ms"]);
}

// === 6 ===

#[test]
fn stale_flow_removed_and_missing_readded_in_one_bundle() {
    let (ovs, mut d, e) = setup();
    let want = e.flows();
    assert_eq!(ovs.flows("br0"), want);
    // While the daemon runs, its pipeline audit would put this right within a second: change
    // the tables while it is stopped, so that the resync of the next one is what repairs them.
    let st = d.stop(Duration::from_secs(5)).unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM\n{}", d.stderr()));
    assert!(st.success(), "exit status {st}\n{}", d.stderr());
    let stale = "cookie=0x1234020000000001,table=2,priority=7,ip,actions=drop";
    ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", stale]);
    let missing =
        want.iter().find(|l| l.contains("table=4, priority=50,ip ")).expect("table 4 priority 50 flow").clone();
    ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "--strict", "del-flows", "br0", "table=4,priority=50,ip"]);
    let changed = ovs.flows("br0");
    assert!(changed.iter().any(|l| l.contains("cookie=0x1234020000000001")), "{changed:#?}");
    assert!(!changed.contains(&missing), "{changed:#?}");
    assert_eq!(changed.len(), want.len());

    let (d2, took) = restart_daemon(d);
    let got = ovs.flows("br0");
    assert!(got == want, "after the resync:\n{}", diff("OVS", &got, "desired", &want));
    let logs = pipeline_logs(&d2);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let l = &logs[0];
    assert_eq!((field(l, "added"), field(l, "deleted"), field(l, "replaced")), (1, 1, 0), "{l:?}");
    assert_eq!(field(l, "unchanged"), want.len() - 1, "{l:?}");
    eprintln!("FIGURE stale/missing: restart -> resync (added=1 deleted=1) in place after {took:?}");
}
