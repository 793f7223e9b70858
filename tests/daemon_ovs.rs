//! The daemon (`shardflow run`) against a real Open vSwitch 3.1 (private sandbox per test):
//! dispatch pipeline install, the REST FlowManager, bundles, idle echo, a malformed message from
//! a (fake) switch, fan-out and single-mode connection ownership, and a controller restart.
//! Each test has its own OVS and daemon on free ports. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardflow::packet::build;
use shardflow::packet::key::{ConnAddr, ConnEnd, ConnKey, FlowKey};
use shardflow::packet::MacAddr;
use support::{wait_until, Daemon, Ovs};

const DPID1: &str = "0000000000000001";
const DPID2: &str = "0000000000000002";

// === helpers ===

/// `/v1/switches` as dpid -> entry.
fn switches(d: &Daemon) -> BTreeMap<String, Value> {
    let v = d.json("/v1/switches");
    v.as_array()
        .expect("switches is an array")
        .iter()
        .map(|s| (s["dpid"].as_str().expect("dpid string").to_string(), s.clone()))
        .collect()
}

/// Waits until every dpid is listed with `conns` connections and its pipeline installed.
fn wait_switches(d: &Daemon, dpids: &[&str], conns: u64, timeout: Duration) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    let ok = wait_until(timeout, || {
        last = switches(d);
        dpids.iter().all(|id| {
            last.get(*id)
                .is_some_and(|s| s["connections"].as_u64() == Some(conns) && !s["pipeline_installed_ms"].is_null())
        })
    });
    assert!(ok, "switches {dpids:?} not listed with {conns} connections and a pipeline within {timeout:?}: {last:?}");
    last
}

/// A dump-flows line without its `cookie=0x..,` field and surrounding blanks.
fn strip_cookie(line: &str) -> String {
    let t = line.trim();
    let parts: Vec<&str> = t.split(", ").filter(|p| !p.trim_start().starts_with("cookie=")).collect();
    parts.join(", ").trim().to_string()
}

fn set(lines: &[String]) -> BTreeSet<String> {
    lines.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// Flow lines of `br` outside the dispatch tables (0 and 250).
#[allow(dead_code)]
fn user_flows(ovs: &Ovs, br: &str) -> Vec<String> {
    ovs.flows(br)
        .into_iter()
        .filter(|l| !l.contains("table=250") && l.contains("table="))
        .filter(|l| !l.contains("resubmit(,250)"))
        .collect()
}

fn dispatch_expected(shards: usize) -> BTreeSet<String> {
    let mut v = BTreeSet::new();
    v.insert(format!(
        "priority=0 actions=multipath(symmetric_l3l4+udp,0,hrw,{shards},0,NXM_NX_REG15[0..15]),resubmit(,250)"
    ));
    for k in 0..shards {
        // ovs-ofctl prints a non-zero register value in hex
        let reg = if k == 0 { "0".to_string() } else { format!("{k:#x}") };
        v.insert(format!("table=250, priority=10,reg15={reg} actions=controller(id={})", k + 1));
    }
    v
}

fn parse_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

/// One of the 50 test connections: 10.0.0.1:(40000+i) -> 10.0.1.(i+1):80, its SYN from port 1
/// and its SYN-ACK from port 2.
struct TestConn {
    syn: Vec<u8>,
    syn_ack: Vec<u8>,
    key: ConnKey,
}

fn test_conns(n: usize) -> Vec<TestConn> {
    (0..n)
        .map(|i| {
            let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let s = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
            let sport = 40000 + i as u16;
            let syn = build::tcp_syn(mac(1), mac(2), c, s, sport, 80);
            let syn_ack = build::tcp_syn_ack(mac(2), mac(1), s, c, 80, sport);
            let key = FlowKey::extract(1, &syn).expect("extract syn").conn_key();
            let rkey = FlowKey::extract(2, &syn_ack).expect("extract syn-ack").conn_key();
            assert_eq!(key.hash64(), rkey.hash64(), "both directions hash alike");
            TestConn { syn, syn_ack, key }
        })
        .collect()
}

/// The daemon's text for a key (`conn_key_text` in src/daemon/shard/stats.rs).
fn key_text(k: &ConnKey) -> String {
    let ep = |e: ConnEnd| match e.addr {
        ConnAddr::Ip(IpAddr::V6(a)) => format!("[{a}]:{}", e.port),
        ConnAddr::Ip(a) => format!("{a}:{}", e.port),
        ConnAddr::Mac(m) => format!("{m}"),
    };
    assert_eq!(k.proto(), 6, "test keys are TCP");
    format!("tcp {} <-> {}", ep(k.lo()), ep(k.hi()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Injects every SYN on br0-p1 and every SYN-ACK on br0-p2, one ovs-appctl per packet.
fn inject(ovs: &Ovs, conns: &[TestConn]) {
    for c in conns {
        ovs.ok("ovs-appctl", &["netdev-dummy/receive", "br0-p1", &hex(&c.syn)]);
        ovs.ok("ovs-appctl", &["netdev-dummy/receive", "br0-p2", &hex(&c.syn_ack)]);
    }
}

/// (shard, connection entry) for every connection on every shard, keyed by key text.
fn shard_conns(d: &Daemon) -> (Value, BTreeMap<String, Vec<(u64, Value)>>) {
    let v = d.json("/v1/shards");
    let mut m: BTreeMap<String, Vec<(u64, Value)>> = BTreeMap::new();
    for s in v.as_array().expect("shards array") {
        let id = s["shard"].as_u64().expect("shard id");
        for c in s["connections"].as_array().expect("connections array") {
            m.entry(c["key"].as_str().expect("key").to_string()).or_default().push((id, c.clone()));
        }
    }
    (v, m)
}

/// Waits until every key is seen with forward >= 1 and reverse >= 1 (on whichever shards).
fn wait_conns(d: &Daemon, conns: &[TestConn]) -> (Value, BTreeMap<String, Vec<(u64, Value)>>) {
    let mut last = (Value::Null, BTreeMap::new());
    let ok = wait_until(Duration::from_secs(10), || {
        last = shard_conns(d);
        conns.iter().all(|c| {
            last.1.get(&key_text(&c.key)).is_some_and(|v| {
                let f: u64 = v.iter().map(|(_, e)| e["forward"].as_u64().unwrap_or(0)).sum();
                let r: u64 = v.iter().map(|(_, e)| e["reverse"].as_u64().unwrap_or(0)).sum();
                f >= 1 && r >= 1
            })
        })
    });
    assert!(ok, "not every connection seen both ways within 10 s: {}", last.0);
    last
}

// === 1. pipeline ===

#[test]
fn two_bridges_two_shards_get_the_dispatch_pipeline() {
    let ovs = Ovs::start(&["br0", "br1"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    d.attach(&ovs, "br1", false);
    let sw = wait_switches(&d, &[DPID1, DPID2], 2, Duration::from_secs(10));
    for (dpid, s) in &sw {
        eprintln!("pipeline_installed_ms dpid {dpid}: {}", s["pipeline_installed_ms"]);
        assert_eq!(s["connections"], 2, "{s}");
    }
    let want = dispatch_expected(2);
    for (br, dpid) in [("br0", DPID1), ("br1", DPID2)] {
        let flows = ovs.flows(br);
        let got: BTreeSet<String> = flows.iter().map(|l| strip_cookie(l)).collect();
        assert_eq!(got, want, "{br} dump-flows: {flows:#?}");
        assert_eq!(flows.len(), 3, "{flows:#?}");
        let v = d.json(&format!("/v1/switches/{dpid}/flows"));
        let ours: Vec<String> =
            v.as_array().expect("flows array").iter().map(|l| l.as_str().expect("line").to_string()).collect();
        assert_eq!(set(&ours), set(&flows), "REST dump-flows of {dpid} vs ovs-ofctl");
    }
}

// === 2. FlowManager ===

#[test]
fn flow_manager_over_rest() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let url = |cmd: &str| format!("/v1/switches/{DPID1}/flows?command={cmd}");
    let has = |needle: &[&str]| ovs.flows("br0").iter().any(|l| needle.iter().all(|n| l.contains(n)));

    // add
    let (st, body) = d.post(
        &url("add"),
        "table=5,priority=100,cookie=0x1234,ip,nw_dst=10.1.0.1,actions=output:2\n\
         table=5,priority=200,cookie=0x1234,ip,nw_dst=10.1.0.2,actions=output:2\n",
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(parse_json(&body)["applied"], 2, "{body}");
    assert!(has(&["nw_dst=10.1.0.1", "actions=output:2"]) && has(&["nw_dst=10.1.0.2", "actions=output:2"]));

    // modify (loose): every ip flow of table 5
    let (st, body) = d.post(&url("modify"), "table=5,ip,actions=output:1");
    assert_eq!(st, 200, "{body}");
    assert!(has(&["nw_dst=10.1.0.1", "actions=output:1"]), "{:#?}", ovs.flows("br0"));
    assert!(has(&["nw_dst=10.1.0.2", "actions=output:1"]), "{:#?}", ovs.flows("br0"));

    // modify_strict: only the exact match and priority
    let (st, body) = d.post(&url("modify_strict"), "table=5,priority=200,ip,nw_dst=10.1.0.2,actions=drop");
    assert_eq!(st, 200, "{body}");
    assert!(has(&["nw_dst=10.1.0.2", "actions=drop"]), "{:#?}", ovs.flows("br0"));
    assert!(has(&["nw_dst=10.1.0.1", "actions=output:1"]), "{:#?}", ovs.flows("br0"));

    // delete_strict
    let (st, body) = d.post(&url("delete_strict"), "table=5,priority=100,ip,nw_dst=10.1.0.1");
    assert_eq!(st, 200, "{body}");
    assert!(!has(&["nw_dst=10.1.0.1"]), "{:#?}", ovs.flows("br0"));
    assert!(has(&["nw_dst=10.1.0.2"]), "{:#?}", ovs.flows("br0"));

    // delete by cookie/mask: 0x5601 and 0x5602 go, 0x1234 and the dispatch flows stay
    let (st, body) = d.post(
        &url("add"),
        "table=5,priority=10,cookie=0x5601,tcp,tp_dst=81,actions=drop\n\
         table=5,priority=10,cookie=0x5602,tcp,tp_dst=82,actions=drop",
    );
    assert_eq!(st, 200, "{body}");
    assert!(has(&["cookie=0x5601"]) && has(&["cookie=0x5602"]));
    // (The mask covers the cookie's category byte too: a mask that leaves it free could reach
    // the daemon's own flows and is refused without force=true.)
    let (st, body) = d.delete(&format!("/v1/switches/{DPID1}/flows?cookie=0x5600&cookie_mask=0xff000000ff00&table=5"));
    assert_eq!(st, 200, "{body}");
    let flows = ovs.flows("br0");
    assert!(!flows.iter().any(|l| l.contains("cookie=0x56")), "{flows:#?}");
    assert!(has(&["cookie=0x1234", "nw_dst=10.1.0.2"]), "{flows:#?}");
    assert_eq!(flows.len(), 3 + 1, "dispatch flows + one user flow: {flows:#?}");

    // refused by the switch: 502 naming the OpenFlow error
    let before = ovs.flows("br0");
    let (st, body) = d.post(&url("add"), "table=5,priority=300,ip,nw_dst=10.9.9.9,actions=group:99");
    assert_eq!(st, 502, "{body}");
    let j = parse_json(&body);
    assert_eq!(j["openflow_error"], "OFPBAC_BAD_OUT_GROUP", "{body}");
    assert_eq!(ovs.flows("br0"), before);

    // the connection is fine afterwards
    let (st, body) = d.post(&url("add"), "table=5,priority=300,ip,nw_dst=10.9.9.8,actions=output:2");
    assert_eq!(st, 200, "{body}");
    assert!(has(&["nw_dst=10.9.9.8"]), "{:#?}", ovs.flows("br0"));
    assert_eq!(switches(&d)[DPID1]["connections"], 2);
}

// === 3. bundles ===

#[test]
fn bundle_is_all_or_nothing() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let url = format!("/v1/switches/{DPID1}/flows?command=add&bundle=true");
    let before = ovs.flows("br0");

    let (st, body) = d.post(
        &url,
        "table=7,priority=1,ip,nw_dst=10.2.0.1,actions=output:1\n\
         table=7,priority=1,ip,nw_dst=10.2.0.2,actions=group:99\n\
         table=7,priority=1,ip,nw_dst=10.2.0.3,actions=output:2\n",
    );
    assert!(st >= 400, "a bundle with a bad flow must fail: {st} {body}");
    eprintln!("bad bundle answer: {st} {body}");
    assert_eq!(ovs.flows("br0"), before, "a failed bundle applies nothing");

    let (st, body) = d.post(
        &url,
        "table=7,priority=1,ip,nw_dst=10.2.0.1,actions=output:1\n\
         table=7,priority=1,ip,nw_dst=10.2.0.2,actions=output:2\n\
         table=7,priority=1,ip,nw_dst=10.2.0.3,actions=output:2\n",
    );
    assert_eq!(st, 200, "{body}");
    let j = parse_json(&body);
    assert_eq!(j["applied"], 3, "{body}");
    assert_eq!(j["bundle"], true, "{body}");
    let flows = ovs.flows("br0");
    for ip in ["10.2.0.1", "10.2.0.2", "10.2.0.3"] {
        assert!(
            flows.iter().any(|l| l.contains("table=7") && l.contains(&format!("nw_dst={ip} "))),
            "{ip}: {flows:#?}"
        );
    }
    assert_eq!(flows.len(), before.len() + 3);
}

#[test]
fn bundle_error_names_the_failing_flow() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let (st, body) = d.post(
        &format!("/v1/switches/{DPID1}/flows?command=add&bundle=true"),
        "table=7,priority=1,ip,nw_dst=10.2.0.1,actions=output:1\n\
         table=7,priority=1,ip,nw_dst=10.2.0.2,actions=group:99\n\
         table=7,priority=1,ip,nw_dst=10.2.0.3,actions=output:2\n",
    );
    assert_eq!(st, 502, "{body}");
    let j = parse_json(&body);
    assert_eq!(j["openflow_error"], "OFPBAC_BAD_OUT_GROUP", "{body}");
    assert!(j["error"].as_str().unwrap_or("").contains("flow 2"), "{body}");
}

// === 4. idle ===

/// The daemon probes an idle switch with ECHO_REQUEST every `openflow.echo_interval_secs` (1 s
/// here, instead of 5) and closes a connection whose probe is unanswered for 5 s. Six probes
/// over the two connections (logged at debug) prove the short interval is in force; both
/// connections still the same at 7 s (> 1 + 5) prove OVS answered: the test waits for those
/// two events (about 7 s) instead of sleeping 15 s.
#[test]
fn idle_connections_survive_echo() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start_env(
        2,
        &[],
        &[("SHARDFLOW_OPENFLOW_ECHO_INTERVAL_SECS", "1"), ("RUST_LOG", "info,shardflow::openflow::session=debug")],
    );
    d.attach(&ovs, "br0", false);
    let sw = wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let peer = sw[DPID1]["peer"].clone();
    let probes = || d.stderr().matches("switch idle, probing with ECHO_REQUEST").count();
    let lived = wait_until(Duration::from_secs(20), || {
        let sw = switches(&d);
        probes() >= 6 && sw[DPID1]["connected_secs"].as_u64().unwrap_or(0) >= 7 || sw[DPID1]["connections"] != 2
    });
    let sw = switches(&d);
    let s = &sw[DPID1];
    assert!(lived, "no 7 s of idle connection with 6 probes within 20 s: {s}, {} probes", probes());
    assert_eq!(s["connections"], 2, "{s}");
    assert!(s["connected_secs"].as_u64().unwrap_or(0) >= 7, "{s}");
    assert_eq!(s["peer"], peer, "same connection: {s}");
    eprintln!("FIGURE idle: {} echo probes in {} s of idle connections", probes(), s["connected_secs"]);
    let (st, metrics) = d.get("/metrics");
    assert_eq!(st, 200);
    let ev: Vec<&str> = metrics.lines().filter(|l| l.starts_with("shardflow_session_events_total")).collect();
    eprintln!("session events: {ev:#?}");
    assert!(!ev.is_empty(), "no shardflow_session_events_total in /metrics");
    for l in &ev {
        if l.contains("disconnected") {
            let n: f64 = l.rsplit(' ').next().and_then(|x| x.parse().ok()).unwrap_or(-1.0);
            assert_eq!(n, 0.0, "a disconnection: {l}");
        }
    }
    let (st, body) = d.post(&format!("/v1/switches/{DPID1}/flows?command=add"), "table=3,priority=5,ip,actions=drop");
    assert_eq!(st, 200, "{body}");
    assert!(ovs.flows("br0").iter().any(|l| l.contains("table=3")));
}

// === 5. a malformed message from a (fake) switch ===

struct Fake {
    s: TcpStream,
}

const ONF: u32 = 0x4F4E_4600;

impl Fake {
    /// Reads one message (header + body) within `timeout`; None on timeout.
    fn read_msg(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.s.set_read_timeout(Some(timeout)).expect("timeout");
        let mut h = [0u8; 8];
        match self.s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(e) => panic!("fake switch read: {e}"),
        }
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        assert!(len >= 8, "bad length from the daemon: {h:?}");
        let mut m = h.to_vec();
        m.resize(len, 0);
        self.s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        self.s.read_exact(&mut m[8..]).expect("message body");
        Some(m)
    }

    fn send(&mut self, m: &[u8]) {
        self.s.write_all(m).expect("fake switch write");
    }

    /// Answers what a switch must answer; returns the message for the caller too.
    fn serve(&mut self, m: &[u8], dpid: u64) {
        let ty = m[1];
        let xid = &m[4..8];
        let reply = |ty: u8, body: &[u8]| {
            let mut r = vec![4, ty];
            r.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            r.extend_from_slice(xid);
            r.extend_from_slice(body);
            r
        };
        match ty {
            2 => {
                let r = reply(3, &m[8..]);
                self.send(&r)
            }
            5 => {
                let mut b = dpid.to_be_bytes().to_vec();
                b.extend_from_slice(&0u32.to_be_bytes()); // n_buffers
                b.push(254); // n_tables
                b.push(0); // auxiliary_id
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&0x4fu32.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes());
                let r = reply(6, &b);
                self.send(&r)
            }
            7 => {
                let r = reply(8, &[0, 0, 0xff, 0xff]);
                self.send(&r)
            }
            18 => {
                let mp = u16::from_be_bytes([m[8], m[9]]);
                let mut b = mp.to_be_bytes().to_vec();
                b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                if mp == 0 {
                    b.resize(8 + 1056, 0); // DESC: five zeroed strings
                }
                let r = reply(19, &b);
                self.send(&r)
            }
            20 => {
                let r = reply(21, &[]);
                self.send(&r)
            }
            4 if m.len() >= 16 => {
                let exp = u32::from_be_bytes([m[8], m[9], m[10], m[11]]);
                let et = u32::from_be_bytes([m[12], m[13], m[14], m[15]]);
                if exp == ONF && et == 2300 && m.len() >= 24 {
                    // bundle control: OPEN/CLOSE/COMMIT/DISCARD request -> reply (type + 1)
                    let mut r = m.to_vec();
                    let t = u16::from_be_bytes([r[20], r[21]]) + 1;
                    r[20..22].copy_from_slice(&t.to_be_bytes());
                    self.send(&r)
                }
            }
            _ => {}
        }
    }
}

#[test]
fn malformed_message_from_a_switch_gets_an_error_and_the_connection_lives() {
    let d = Daemon::start(2, &[]);
    let dpid: u64 = 0x00ab_cdef_0000_0042;
    let dpid_text = format!("{dpid:016x}");
    let s = TcpStream::connect(("127.0.0.1", d.of_port(0))).expect("connect to shard 0");
    s.set_nodelay(true).expect("nodelay");
    let mut f = Fake { s };
    f.send(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Vec<u8> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "not listed within 10 s; message types seen {seen:?}\n{:?}", switches(&d));
        while let Some(m) = f.read_msg(Duration::from_millis(100)) {
            seen.push(m[1]);
            f.serve(&m, dpid);
        }
        if switches(&d).contains_key(&dpid_text) {
            break;
        }
    }
    // give the pipeline install a moment to finish (answered by serve)
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        if let Some(m) = f.read_msg(Duration::from_millis(50)) {
            f.serve(&m, dpid);
        }
    }

    // an OFPT_PACKET_IN whose body is 3 bytes
    let bad = [4u8, 10, 0, 11, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
    f.send(&bad);
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        assert!(Instant::now() < deadline, "no OFPT_ERROR within 5 s");
        let Some(m) = f.read_msg(Duration::from_millis(200)) else { continue };
        if m[1] == 1 {
            break m;
        }
        f.serve(&m, dpid);
    };
    let et = u16::from_be_bytes([err[8], err[9]]);
    let code = u16::from_be_bytes([err[10], err[11]]);
    eprintln!("error for the malformed packet-in: type {et} code {code}, {} bytes of data", err.len() - 12);
    assert_eq!(&err[4..8], &bad[4..8], "the error carries our xid");
    assert_eq!(et, 1, "OFPET_BAD_REQUEST");
    let data = &err[12..];
    assert!(data.len() >= 8 && bad.starts_with(data) || data.starts_with(&bad), "data echoes our message: {data:02x?}");

    // the connection lives: an echo request is answered
    f.send(&[4, 2, 0, 12, 0xab, 0xcd, 0xef, 0x01, 9, 8, 7, 6]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no ECHO_REPLY within 5 s");
        let Some(m) = f.read_msg(Duration::from_millis(200)) else { continue };
        if m[1] == 3 {
            assert_eq!(&m[4..8], &[0xab, 0xcd, 0xef, 0x01], "same xid");
            assert_eq!(&m[8..], &[9, 8, 7, 6], "same payload");
            break;
        }
        f.serve(&m, dpid);
    }
    assert!(switches(&d).contains_key(&dpid_text), "still listed");
}

// === 6. fan-out ===

#[test]
fn fanout_each_connection_on_exactly_one_shard() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let conns = test_conns(50);
    let t = Instant::now();
    inject(&ovs, &conns);
    eprintln!("injected 100 packets in {:?}", t.elapsed());
    let (stats, m) = wait_conns(&d, &conns);
    let mut per_shard = [0usize; 2];
    for c in &conns {
        let v = &m[&key_text(&c.key)];
        assert_eq!(v.len(), 1, "{} on several shards: {v:?}", key_text(&c.key));
        let (shard, e) = &v[0];
        assert!(e["forward"].as_u64() >= Some(1) && e["reverse"].as_u64() >= Some(1), "{e}");
        assert_eq!(e["handed_over"], 0, "{e}");
        per_shard[*shard as usize] += 1;
    }
    eprintln!("fanout: connections per shard {per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0), "both shards get connections: {per_shard:?}");
    for s in stats.as_array().expect("shards") {
        assert_eq!(s["handoffs_out"], 0, "{s}");
        assert_eq!(s["handoffs_in"], 0, "{s}");
    }
}

// === 7. single mode ===

#[test]
fn single_mode_hands_connections_to_their_owner() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &["--mode", "single"]);
    d.attach(&ovs, "br0", true);
    let sw = wait_switches(&d, &[DPID1], 1, Duration::from_secs(10));
    let conn_shard = sw[DPID1]["shard"].as_u64().expect("shard");
    assert_eq!(
        ovs.flows("br0").iter().map(|l| strip_cookie(l)).collect::<Vec<_>>(),
        vec!["priority=0 actions=CONTROLLER:65535".to_string()]
    );
    let conns = test_conns(50);
    inject(&ovs, &conns);
    let (_, m) = wait_conns(&d, &conns);
    let mut foreign_packet_ins = 0u64;
    for c in &conns {
        let v = &m[&key_text(&c.key)];
        assert_eq!(v.len(), 1, "{} on several shards: {v:?}", key_text(&c.key));
        let owner = shards::shard_of(c.key.hash64(), 2) as u64;
        assert_eq!(v[0].0, owner, "{} is owned by shard_of(hash, 2)", key_text(&c.key));
        // handed_over counts the packet-ins of the key that came through the mesh
        let want_ho = if owner != conn_shard { 2 } else { 0 };
        assert_eq!(v[0].1["handed_over"], want_ho, "{}", v[0].1);
        if owner != conn_shard {
            foreign_packet_ins += 2;
        }
    }
    // counters settle once every packet-in is recorded
    let mut stats = Value::Null;
    let ok = wait_until(Duration::from_secs(5), || {
        stats = d.json("/v1/shards");
        let a = stats.as_array().expect("shards");
        let out: u64 = a.iter().map(|s| s["handoffs_out"].as_u64().unwrap_or(0)).sum();
        let inn: u64 = a.iter().map(|s| s["handoffs_in"].as_u64().unwrap_or(0)).sum();
        let pi: u64 = a.iter().map(|s| s["packet_ins"].as_u64().unwrap_or(0)).sum();
        out == foreign_packet_ins && inn == out && pi == 100
    });
    eprintln!("single: connection on shard {conn_shard}, foreign packet-ins {foreign_packet_ins}");
    assert!(foreign_packet_ins > 0, "some keys belong to the other shard");
    assert!(ok, "handoffs_out (sum) must equal {foreign_packet_ins}, handoffs_in alike, packet_ins 100: {stats}");
}

// === 8. controller restart ===

#[test]
fn controller_restart_keeps_flows_and_reconnects() {
    let ovs = Ovs::start(&["br0"]);
    let mut d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let (st, body) = d
        .post(&format!("/v1/switches/{DPID1}/flows?command=add"), "table=4,priority=9,cookie=0x77,ip,actions=output:2");
    assert_eq!(st, 200, "{body}");
    let before = ovs.flows("br0");
    assert_eq!(before.len(), 4, "{before:#?}");

    let t = Instant::now();
    let st = d.stop(Duration::from_secs(5)).unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM\n{}", d.stderr()));
    eprintln!("SIGTERM -> exit {st} in {:?}", t.elapsed());
    assert!(st.success(), "exit status {st}\n{}", d.stderr());
    // The daemon has exited (waited for above): nothing of it can touch the flows any more.
    assert_eq!(ovs.flows("br0"), before, "fail_mode=secure keeps the flows");

    let (base, http) = (d.base_port, d.http_port);
    drop(d);
    if let Ok(o) = std::process::Command::new("ss").args(["-tanH"]).output() {
        let text = String::from_utf8_lossy(&o.stdout);
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("127.0.0.1:{base} ")) || l.contains(&format!("127.0.0.1:{} ", base + 1)))
            .collect();
        eprintln!("sockets on the OpenFlow ports after the stop: {mine:#?}");
    }
    let t = Instant::now();
    let d2 = Daemon::start_on(2, base, http, &[]);
    wait_switches(&d2, &[DPID1], 2, Duration::from_secs(20));
    eprintln!("reconnected {:?} after the restart", t.elapsed());
    // Same configuration, same cookie generation: the resync finds nothing to change, so the
    // tables are identical, cookies included.
    assert!(wait_until(Duration::from_secs(5), || d2.stderr().contains("pipeline in place")), "{}", d2.stderr());
    let after = ovs.flows("br0");
    assert_eq!(after, before);
    assert!(d2.stderr().contains("added=0"), "nothing re-added: {}", d2.stderr());
    assert!(after.iter().any(|l| l.contains("cookie=0x77")), "{after:#?}");
}

// === groups and meters through the FlowManager ===

#[test]
fn groups_and_meters_over_rest() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(2, &[]);
    d.attach(&ovs, "br0", false);
    wait_switches(&d, &[DPID1], 2, Duration::from_secs(10));
    let groups = "group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=output:2\n\
                  group_id=2,type=all,bucket=actions=set_field:10.0.0.9->ip_dst,output:2";
    let (st, body) = d.post(&format!("/v1/switches/{DPID1}/groups?command=add"), groups);
    assert_eq!(st, 200, "{body}");
    // What the daemon reads back is what ovs-ofctl reads back.
    let ovs_groups: BTreeSet<String> = ovs
        .ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-groups", "br0"])
        .lines()
        .filter(|l| l.contains("group_id="))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(ovs_groups.len(), 2, "{ovs_groups:#?}");
    let ours: BTreeSet<String> = d
        .json(&format!("/v1/switches/{DPID1}/groups"))
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("text").trim().to_string())
        .collect();
    assert_eq!(ours, ovs_groups);
    // A flow may now use group 1 (it was refused before the group existed).
    let (st, body) = d.post(&format!("/v1/switches/{DPID1}/flows"), "table=8,priority=1,ip,actions=group:1");
    assert_eq!(st, 200, "{body}");

    let (st, body) =
        d.post(&format!("/v1/switches/{DPID1}/meters"), "meter=7,kbps,burst,band=type=drop,rate=1000,burst_size=100");
    assert_eq!(st, 200, "{body}");
    let meters = d.json(&format!("/v1/switches/{DPID1}/meters"));
    let m = meters.as_array().expect("a list");
    assert_eq!(m.len(), 1, "{meters}");
    assert!(m[0].as_str().unwrap_or("").contains("meter=7"), "{meters}");
    let dump = ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-meters", "br0"]);
    assert!(dump.contains("meter=7 kbps burst") && dump.contains("rate=1000"), "{dump}");

    // A group the switch refuses names OVS's error; deleting one by id works.
    let (st, body) =
        d.post(&format!("/v1/switches/{DPID1}/groups?command=modify"), "group_id=99,type=all,bucket=output:1");
    assert_eq!(st, 502, "{body}");
    assert!(body.contains("OFPGMFC_UNKNOWN_GROUP"), "{body}");
    let (st, body) = d.post(&format!("/v1/switches/{DPID1}/groups?command=delete"), "group_id=2");
    assert_eq!(st, 200, "{body}");
    let left = ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-groups", "br0"]);
    assert!(left.contains("group_id=1") && !left.contains("group_id=2"), "{left}");
    // Bad text is a 400 naming the line, and nothing reaches the switch.
    let (st, body) = d.post(&format!("/v1/switches/{DPID1}/meters"), "meter=8,kbps,band=type=drop,rate=1\nmeter=x");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("line 2"), "{body}");
}
