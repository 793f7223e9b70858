//! Refusing at the edge what OVS refuses, against a real Open vSwitch 3.1 and the daemon:
//! - REST (`POST /v1/switches/{dpid}/flows`) answers 400 naming OVS's error for flows whose actions
//!   do not fit their match, and nothing reaches the switch; the fixed forms are installed.
//! - the CLI (`shardflow flow encode`, `flow add`) refuses them the same way.
//! - a (fake) switch sending a message of an unknown type or experimenter gets OVS's error back
//!   (OFPBRC_BAD_TYPE / OFPBRC_BAD_VENDOR, with the first 64 bytes) and the connection lives.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{shardflow, wait_until, Daemon, Ovs};

const DPID1: &str = "0000000000000001";

/// The three classes of issue 12 (item 10), each with its fixed form.
const CASES: &[(&str, &str)] = &[
    (
        "table=5,priority=10,tcp,actions=learn(table=25,NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],output:NXM_OF_IN_PORT[])",
        "table=5,priority=10,tcp,actions=learn(table=25,eth_type=0x800,nw_proto=6,NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],output:NXM_OF_IN_PORT[])",
    ),
    (
        "table=5,priority=11,reg0=0x8/0x8,actions=clone(set_field:10.0.0.99->ip_dst,output:2)",
        "table=5,priority=11,ip,reg0=0x8/0x8,actions=clone(set_field:10.0.0.99->ip_dst,output:2)",
    ),
    ("table=5,priority=12,ct_state=+trk,actions=dec_ttl", "table=5,priority=12,ip,ct_state=+trk,actions=dec_ttl"),
];

fn listed(d: &Daemon) -> bool {
    d.json("/v1/switches")
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["dpid"] == DPID1 && !s["pipeline_installed_ms"].is_null()))
}

#[test]
fn rest_and_cli_refuse_what_ovs_refuses_and_take_the_fixed_forms() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(1, &[]);
    d.attach(&ovs, "br0", false);
    assert!(wait_until(Duration::from_secs(10), || listed(&d)), "br0 not listed: {}", d.stderr());
    let url = format!("/v1/switches/{DPID1}/flows");
    let before = ovs.flows("br0");
    for (bad, _) in CASES {
        // OVS itself refuses it: the reference for the verdict.
        let ovs_says = ovs.tool("ovs-ofctl", &["-O", "OpenFlow13", "parse-flow", bad]);
        assert!(!ovs_says.status.success(), "OVS accepts {bad}");
        let (st, body) = d.post(&url, bad);
        assert_eq!(st, 400, "{bad}: {body}");
        assert!(body.contains("OFPBAC_MATCH_INCONSISTENT"), "{bad}: {body}");
        let out = shardflow(&["flow", "encode", bad]);
        assert_eq!(out.status.code(), Some(65), "flow encode {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("OFPBAC_MATCH_INCONSISTENT"), "{out:?}");
        let out = shardflow(&["flow", "add", "--switch", &format!("unix:{}", ovs.mgmt("br0")), bad]);
        assert!(!out.status.success(), "flow add {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("OFPBAC_MATCH_INCONSISTENT"), "{out:?}");
    }
    assert_eq!(ovs.flows("br0"), before, "nothing reached the switch");
    for (_, good) in CASES {
        let (st, body) = d.post(&url, good);
        assert_eq!(st, 200, "{good}: {body}");
    }
    let flows = ovs.flows("br0");
    for needle in ["table=25", "10.0.0.99", "priority=12,ct_state=+trk,ip actions=dec_ttl"] {
        assert!(flows.iter().any(|l| l.contains(needle)), "{needle} not installed: {flows:#?}");
    }
}

// === a (fake) switch sending what nobody knows ===

struct Fake {
    s: TcpStream,
}

impl Fake {
    fn read_msg(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.s.set_read_timeout(Some(timeout)).unwrap();
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
        self.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        self.s.read_exact(&mut m[8..]).unwrap();
        Some(m)
    }

    fn send(&mut self, m: &[u8]) {
        self.s.write_all(m).unwrap();
    }

    /// Answers what a switch must answer during the handshake and the pipeline install.
    fn serve(&mut self, m: &[u8], dpid: u64) {
        if let Some(r) = support::switch_answer(m, dpid) {
            self.send(&r);
        }
    }

    /// Serves the daemon until a message of `ty` with `xid` arrives; returns it.
    fn wait_for(&mut self, ty: u8, xid: [u8; 4], dpid: u64, what: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no {what} within 5 s");
            let Some(m) = self.read_msg(Duration::from_millis(200)) else { continue };
            if m[1] == ty && m[4..8] == xid {
                return m;
            }
            self.serve(&m, dpid);
        }
    }
}

#[test]
fn unknown_messages_from_a_switch_are_answered_like_ovs_and_the_connection_lives() {
    let d = Daemon::start(1, &[]);
    let dpid: u64 = 0x00ab_cdef_0000_0077;
    let s = TcpStream::connect(("127.0.0.1", d.of_port(0))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut f = Fake { s };
    f.send(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10]);
    let dpid_text = format!("{dpid:016x}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.json("/v1/switches").as_array().unwrap().iter().any(|s| s["dpid"] == dpid_text.as_str()) {
        assert!(Instant::now() < deadline, "fake switch not listed within 10 s");
        while let Some(m) = f.read_msg(Duration::from_millis(100)) {
            f.serve(&m, dpid);
        }
    }
    // A message type nobody knows, 100 bytes long: the error carries its first 64.
    let mut unknown = vec![4, 99, 0, 100, 0x11, 0x22, 0x33, 0x44];
    unknown.extend((0..92).map(|i| i as u8));
    // An experimenter nobody knows, and a Nicira subtype nobody knows.
    let vendor = [4u8, 4, 0, 16, 0x55, 0x66, 0x77, 0x88, 0, 0, 0xab, 0xcd, 0, 0, 0, 1];
    let subtype = [4u8, 4, 0, 16, 0x99, 0, 0, 1, 0, 0, 0x23, 0x20, 0, 0, 0xff, 0xff];
    for (msg, etype, code, name) in [
        (&unknown[..], 1u16, 1u16, "OFPBRC_BAD_TYPE"),
        (&vendor[..], 1, 3, "OFPBRC_BAD_VENDOR"),
        (&subtype[..], 1, 4, "OFPBRC_BAD_SUBTYPE"),
    ] {
        f.send(msg);
        let xid = [msg[4], msg[5], msg[6], msg[7]];
        let err = f.wait_for(1, xid, dpid, name);
        assert_eq!(u16::from_be_bytes([err[8], err[9]]), etype, "{name}: {err:02x?}");
        assert_eq!(u16::from_be_bytes([err[10], err[11]]), code, "{name}: {err:02x?}");
        assert_eq!(&err[12..], &msg[..msg.len().min(64)], "{name}: the data is the message's first 64 bytes");
        // OVS prints our answer with the same name.
        let printed = shardflow::oracle::ofp_print(&err).unwrap();
        assert!(printed.contains(name), "{printed}");
    }
    // The connection lives: an echo request is answered.
    f.send(&[4, 2, 0, 12, 0xab, 0xcd, 0xef, 0x01, 9, 8, 7, 6]);
    let echo = f.wait_for(3, [0xab, 0xcd, 0xef, 0x01], dpid, "ECHO_REPLY");
    assert_eq!(&echo[8..], &[9, 8, 7, 6]);
    // And the three refusals are counted.
    let counted = d.metric_sum("shardflow_session_events_total", &["event=\"unsupported_message\""]);
    assert_eq!(counted, 3.0, "unsupported messages counted");
}
