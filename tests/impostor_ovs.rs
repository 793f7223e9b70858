//! Datapath-id impostors (issue 11, item 2), against a real Open vSwitch 3.1 and the daemon
//! (docs/pipeline.md's ```toml ipv6 example, 2 shards, fan-out), with raw TCP fake switches:
//! - a fake claiming the connected bridge's dpid on the shard that serves its REST route is
//!   refused (closed, `openflow_connections_refused_total{cause="dpid_in_use"}`), its
//!   packet-ins move nothing in the Tracker and decide nothing; REST dumps and POSTs still reach
//!   the real bridge, before and after the fake leaves;
//! - a switch connection that went silent (no echo reply) is closed when another connection
//!   claims its dpid, and the newcomer takes over (how a restarted bridge gets back in); the
//!   real bridge reconnecting (`set-controller` again) is listed and served again.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{pipeline_doc_block, PipelineEnv, DPID, SHARDS};
use support::{wait_until, Daemon};

const A4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const C4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const C_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 6]);
const EVIL_MAC: MacAddr = MacAddr([0x02, 0xee, 0xee, 0xee, 0xee, 0x01]);

/// A switch written by hand: HELLO, FEATURES (with a chosen dpid), and what the daemon asks
/// during the handshake and a pipeline install, answered minimally.
struct Fake {
    s: TcpStream,
    dpid: u64,
}

enum Read1 {
    Msg(Vec<u8>),
    Nothing,
    Closed,
}

impl Fake {
    fn connect(port: u16, dpid: u64) -> Fake {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut f = Fake { s, dpid };
        f.send(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10]);
        f
    }

    fn read_msg(&mut self, timeout: Duration) -> Read1 {
        self.s.set_read_timeout(Some(timeout)).unwrap();
        let mut h = [0u8; 8];
        match self.s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Read1::Nothing,
            Err(_) => return Read1::Closed,
        }
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        assert!(len >= 8, "bad length from the daemon: {h:?}");
        let mut m = h.to_vec();
        m.resize(len, 0);
        self.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if self.s.read_exact(&mut m[8..]).is_err() {
            return Read1::Closed;
        }
        Read1::Msg(m)
    }

    fn send(&mut self, m: &[u8]) {
        // The daemon may have closed: a write error then is what the test looks for elsewhere.
        let _ = self.s.write_all(m);
    }

    /// The answer a switch gives to `m` (None: nothing to answer).
    fn answer(&self, m: &[u8]) -> Option<Vec<u8>> {
        support::switch_answer(m, self.dpid)
    }

    /// Serves the daemon until `done()` or the daemon closes (`false` then) or 10 s pass.
    /// `extra` goes out in the same write as the answer to the port-description request (the
    /// handshake's last step): it reaches the daemon in the same read as the handshake's end.
    fn serve_until(&mut self, mut extra: Vec<u8>, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            loop {
                match self.read_msg(Duration::from_millis(50)) {
                    Read1::Msg(m) => {
                        let port_desc = m[1] == 18 && m[8..10] == [0, 13];
                        if let Some(mut r) = self.answer(&m) {
                            if port_desc {
                                r.append(&mut extra);
                            }
                            self.send(&r);
                        }
                    }
                    Read1::Nothing => break,
                    Read1::Closed => return false,
                }
            }
        }
        panic!("fake switch {:016x}: neither done nor closed within 10 s", self.dpid);
    }

    /// Reads (answering nothing) until the daemon closes the connection; false after `t`.
    fn wait_closed(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Read1::Closed = self.read_msg(Duration::from_millis(100)) {
                return true;
            }
        }
        false
    }
}

/// An OpenFlow 1.3 PACKET_IN of `frame` from `in_port` (no buffer, table 0, reason action).
fn packet_in(frame: &[u8], in_port: u32, xid: u32) -> Vec<u8> {
    let mut b = vec![0xff, 0xff, 0xff, 0xff];
    b.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    b.extend_from_slice(&[1, 0]);
    b.extend_from_slice(&[0; 8]);
    // ofp_match: OXM, length 12 (header + in_port), padded to 16.
    b.extend_from_slice(&[0, 1, 0, 12, 0x80, 0, 0, 4]);
    b.extend_from_slice(&in_port.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&[0; 2]);
    b.extend_from_slice(frame);
    let mut m = vec![4, 10];
    m.extend_from_slice(&((8 + b.len()) as u16).to_be_bytes());
    m.extend_from_slice(&xid.to_be_bytes());
    m.extend(b);
    m
}

fn tracker_entry(d: &Daemon, ip: &str) -> Option<Value> {
    d.json("/v1/tracker")["addresses"].as_array()?.iter().find(|e| e["ip"] == ip).cloned()
}

fn switch_peers(d: &Daemon, dpid: &str) -> Option<(String, u64)> {
    d.json("/v1/switches")
        .as_array()?
        .iter()
        .find(|s| s["dpid"] == dpid)
        .map(|s| (s["peer"].as_str().unwrap_or_default().to_string(), s["connections"].as_u64().unwrap_or(0)))
}

fn refused(d: &Daemon) -> f64 {
    d.metric_sum("shardflow_openflow_connections_refused_total", &["cause=\"dpid_in_use\""])
}

/// REST's dump of br0 as sorted lines, and OVS's own.
fn dumps(env: &PipelineEnv) -> (Vec<String>, usize) {
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/flows"));
    assert_eq!(st, 200, "GET flows: {body}");
    let v: Vec<String> = serde_json::from_str(&body).unwrap();
    (v, env.ovs.flows("br0").len())
}

#[test]
fn an_impostor_is_refused_and_the_real_bridge_keeps_its_route_and_tracker() {
    let env = PipelineEnv::start_with_config(&pipeline_doc_block("toml ipv6"), &[], false, &[6]);
    let d = &env.d;
    // The real bridge teaches the Tracker where pod C (port 6) lives.
    let pi0: u64 = env.packet_ins();
    env.inject(6, &[build::udp(C_MAC, GW_MAC, C4.into(), A4.into(), 40600, 53, b"hello")]);
    assert!(wait_until(Duration::from_secs(5), || env.packet_ins() > pi0), "port 6's packet reaches the daemon");
    let mut c_before = None;
    assert!(
        wait_until(Duration::from_secs(3), || {
            c_before = tracker_entry(d, "10.244.1.6");
            c_before.is_some()
        }),
        "the Tracker learned 10.244.1.6"
    );
    let c_before = c_before.unwrap();
    let (rest0, ovs0) = dumps(&env);
    assert_eq!(rest0.len(), ovs0, "REST dumps the real bridge: {rest0:#?}");
    assert!(rest0.len() > 5, "the pipeline is there: {rest0:#?}");
    let (peer0, conns0) = switch_peers(d, DPID).unwrap();
    let decisions0 = d.metric_sum("shardflow_decisions_total", &[]);

    // The impostor: dpid 1, on the shard that serves dpid 1's REST route, with packet-ins that
    // claim pod C's IP from port 2 with another MAC (ARP and IP) and a SYN from pod B.
    let primary = shardflow::daemon::primary_of(1, usize::from(SHARDS), &[0, 1]).unwrap() as u16;
    let mut evil = Fake::connect(d.of_port(primary), 1);
    let mut lies = packet_in(&build::arp_request(EVIL_MAC, C4, A4), 2, 0x7001);
    lies.extend(packet_in(&build::udp(EVIL_MAC, GW_MAC, C4.into(), A4.into(), 40601, 53, b"mine"), 2, 0x7002));
    lies.extend(packet_in(&build::tcp_syn(B_MAC, GW_MAC, B4.into(), A4.into(), 40700, 80), 4, 0x7003));
    let served = evil.serve_until(lies, || false);
    assert!(!served, "the impostor was closed");
    assert!(wait_until(Duration::from_secs(3), || refused(d) == 1.0), "refusal counted: {}", refused(d));
    let unverified = d.metric_sum("shardflow_packet_in_dropped_total", &["cause=\"unverified\""]);
    assert!(unverified >= 1.0, "the impostor's packet-ins were seen and ignored: {unverified}");
    assert!(
        d.stderr().contains("switch connection refused: datapath id already connected"),
        "refusal logged: {}",
        d.stderr()
    );

    // The real bridge keeps its route, its Tracker entries, its decisions.
    assert_eq!(switch_peers(d, DPID), Some((peer0.clone(), conns0)), "the switch is still the real bridge");
    let c_after = tracker_entry(d, "10.244.1.6").unwrap();
    assert_eq!((&c_after["mac"], &c_after["port"]), (&c_before["mac"], &c_before["port"]), "{c_after}");
    assert_eq!(c_after["moves"], c_before["moves"], "{c_after}");
    assert_eq!(d.metric_sum("shardflow_decisions_total", &[]), decisions0, "no decision from the impostor");
    let (rest1, ovs1) = dumps(&env);
    assert_eq!(rest1.len(), ovs1);
    assert_eq!(rest1.len(), rest0.len(), "the dump is still the real bridge's");
    let (st, body) = d.post(&format!("/v1/switches/{DPID}/flows"), "table=0,priority=7,tcp,tp_dst=9999,actions=drop");
    assert_eq!(st, 200, "{body}");
    assert!(
        env.ovs.flows("br0").iter().any(|l| l.contains("tp_dst=9999")),
        "the POST landed on the real bridge: {:#?}",
        env.ovs.flows("br0")
    );
    // The impostor is gone: the route stays.
    drop(evil);
    let (st, body) = d.get(&format!("/v1/switches/{DPID}/flows"));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("tp_dst=9999"), "{body}");
    eprintln!(
        "FIGURE impostor refused: dpid_in_use={} unverified packet-ins ignored={unverified}; Tracker 10.244.1.6 stays {c_after}",
        refused(d)
    );

    // The real bridge reconnecting (its controller set again: new connections, new ports) is
    // let in and served.
    env.ovs.ok("ovs-vsctl", &["del-controller", "br0"]);
    assert!(wait_until(Duration::from_secs(10), || switch_peers(d, DPID).is_none()), "br0 gone after del-controller");
    d.attach(&env.ovs, "br0", false);
    assert!(
        wait_until(Duration::from_secs(10), || switch_peers(d, DPID).is_some_and(|(_, n)| n == conns0)),
        "br0 back"
    );
    let (rest2, ovs2) = dumps(&env);
    assert_eq!(rest2.len(), ovs2, "REST dumps the real bridge again");
    assert_eq!(refused(d), 1.0, "the bridge's own reconnect is not refused");
}

#[test]
fn a_silent_connection_loses_its_dpid_to_a_newcomer_after_an_echo() {
    let d = Daemon::start(1, &[]);
    let dpid: u64 = 0x00ab_cdef_0000_0042;
    let text = format!("{dpid:016x}");
    let mut old = Fake::connect(d.of_port(0), dpid);
    assert!(old.serve_until(Vec::new(), || switch_peers(&d, &text).is_some()), "old listed");
    let (old_peer, _) = switch_peers(&d, &text).unwrap();
    assert_eq!(old_peer, old.s.local_addr().unwrap().to_string());

    // A live connection answering its echo keeps the dpid: a newcomer is refused...
    let mut evil = Fake::connect(d.of_port(0), dpid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut evil_closed = false;
    while !evil_closed {
        assert!(Instant::now() < deadline, "the newcomer was not refused within 10 s");
        // The old one answers (the echo among them) while the newcomer handshakes.
        while let Read1::Msg(m) = old.read_msg(Duration::from_millis(20)) {
            if let Some(r) = old.answer(&m) {
                old.send(&r);
            }
        }
        match evil.read_msg(Duration::from_millis(20)) {
            Read1::Msg(m) => {
                if let Some(r) = evil.answer(&m) {
                    evil.send(&r);
                }
            }
            Read1::Closed => evil_closed = true,
            Read1::Nothing => {}
        }
    }
    assert_eq!(refused(&d), 1.0);
    assert_eq!(switch_peers(&d, &text).unwrap().0, old_peer, "the old one keeps the dpid");

    // ...but once it goes silent (a bridge whose TCP died without a FIN), a newcomer's claim
    // closes it after the echo deadline and takes over.
    let mut new = Fake::connect(d.of_port(0), dpid);
    let new_peer = new.s.local_addr().unwrap().to_string();
    let t0 = Instant::now();
    assert!(
        new.serve_until(Vec::new(), || switch_peers(&d, &text).is_some_and(|(p, _)| p == new_peer)),
        "the newcomer took over"
    );
    let took = t0.elapsed();
    assert!(old.wait_closed(Duration::from_secs(5)), "the silent one was closed");
    assert_eq!(refused(&d), 1.0, "a takeover is not a refusal");
    let superseded = d.metric_sum("shardflow_openflow_connections_closed_total", &["cause=\"superseded\""]);
    assert_eq!(superseded, 1.0, "the takeover is counted");
    assert!(d.stderr().contains("did not answer an echo"), "{}", d.stderr());
    // Its late disconnect left the new route alone.
    assert!(new.serve_until(Vec::new(), || switch_peers(&d, &text).is_some_and(|(p, n)| p == new_peer && n == 1)));
    // And REST reaches it (served from a thread while the request waits for its answer).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut dumped = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match new.read_msg(Duration::from_millis(20)) {
                    Read1::Msg(m) => {
                        dumped |= m[1] == 18 && m[8..10] == [0, 1];
                        if let Some(r) = new.answer(&m) {
                            new.send(&r);
                        }
                    }
                    Read1::Closed => return false,
                    Read1::Nothing => {}
                }
            }
            dumped
        })
    };
    let (st, body) = d.get(&format!("/v1/switches/{text}/flows"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(st, 200, "{body}");
    assert!(server.join().unwrap(), "the flow dump request reached the newcomer");
    eprintln!("FIGURE takeover of a silent connection's dpid in {:.0} ms", took.as_secs_f64() * 1e3);
}

#[test]
fn single_mode_refuses_a_dpid_held_on_another_shard() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Single mode: one port, every shard accepts on it (SO_REUSEPORT): a claim lands on the
    // holder's shard (echo answered: refused) or on the other (cannot be asked: refused).
    let d = Daemon::start(2, &["--mode", "single"]);
    let dpid: u64 = 0x00ab_cdef_0000_0043;
    let text = format!("{dpid:016x}");
    let mut held = Fake::connect(d.of_port(0), dpid);
    assert!(held.serve_until(Vec::new(), || switch_peers(&d, &text).is_some()), "listed");
    let (peer, _) = switch_peers(&d, &text).unwrap();
    // The holder stays alive: it answers everything (its echoes too) from a thread.
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match held.read_msg(Duration::from_millis(20)) {
                    Read1::Msg(m) => {
                        if let Some(r) = held.answer(&m) {
                            held.send(&r);
                        }
                    }
                    Read1::Closed => return false,
                    Read1::Nothing => {}
                }
            }
            true
        })
    };
    let mut n = 0.0;
    let mut both = false;
    while !both && n < 16.0 {
        let mut evil = Fake::connect(d.of_port(0), dpid);
        assert!(!evil.serve_until(Vec::new(), || false), "claim {n} was closed");
        n += 1.0;
        assert!(wait_until(Duration::from_secs(3), || refused(&d) == n), "counted: {} of {n}", refused(&d));
        let log = d.stderr();
        both = log.contains("(single mode)") && log.contains("answered an echo");
    }
    assert!(both, "16 claims never reached both shards: {}", d.stderr());
    assert_eq!(switch_peers(&d, &text), Some((peer, 1)), "still the first connection, alone");
    stop.store(true, Ordering::Relaxed);
    assert!(server.join().unwrap(), "the holder was never closed");
    eprintln!("FIGURE single mode: {n} claims refused on both shards");
}
