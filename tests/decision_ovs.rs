//! The Packet-In decision (`policy::decide`) on a real Open vSwitch 3.1 (private sandbox per
//! test) with the default pipeline of docs/pipeline.md's example installed: the decision's flows
//! and packet-out are sent over the bridge's management socket (HELLO, the messages, BARRIER),
//! as a shard would, and the packet's fate is read from the ports' tx pcaps, the flow counters
//! and `dpctl/dump-conntrack`.
//!
//! Ports: uplink 1, pod A 2 (10.244.1.2), gateway 3, pod B 4 (10.244.1.4), tunnel 5.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shardflow::openflow::message::{self, Header, Hello, Message};
use shardflow::packet::{build, FlowKey, MacAddr};
use shardflow::pipeline::default::{flow_texts, meter_texts, PipelineConfig};
use shardflow::policy::{choose_endpoint, decide, DecisionContext, Endpoint, NetworkPolicy, Verdict};
use support::{repo, wait_until, Ovs};

const GENERATION: u16 = 1;
const TIMEOUT: Duration = Duration::from_secs(10);
const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A_IP: &str = "10.244.1.2";
const B_IP: &str = "10.244.1.4";
const VIP: &str = "10.96.0.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// === setup (as tests/pipeline_ovs.rs) ===

/// docs/pipeline.md's example configuration and shard count.
fn example() -> (PipelineConfig, usize) {
    let doc = std::fs::read_to_string(repo().join("docs/pipeline.md")).unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = doc[start..].find("```").unwrap() + start;
    let t: toml::Table = toml::from_str(&doc[start..end]).unwrap();
    let shards = t["shards"]["count"].as_integer().unwrap() as usize;
    let cfg: PipelineConfig = t["pipeline"].clone().try_into().unwrap();
    cfg.validate().unwrap();
    (cfg, shards)
}

fn setup() -> (Ovs, PipelineConfig) {
    let ovs = Ovs::start(&["br0"]);
    for p in ["3", "4", "5"] {
        let pcap = format!("options:tx_pcap={}", ovs.path(&format!("p{p}-tx.pcap")).display());
        let req = format!("ofport_request={p}");
        let name = format!("p{p}");
        ovs.ok("ovs-vsctl", &["add-port", "br0", &name, "--", "set", "interface", &name, "type=dummy", &req, &pcap]);
    }
    let (cfg, shards) = example();
    let file = ovs.path("pipeline.flows");
    std::fs::write(&file, flow_texts(&cfg, shards, GENERATION).join("\n") + "\n").unwrap();
    // The packet-in meters the flows name come first (OVS refuses a flow with an unknown meter).
    for m in meter_texts(&cfg) {
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-meter", "br0", &m]);
    }
    ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flows", "br0", file.to_str().unwrap()]);
    (ovs, cfg)
}

fn pcap_of(ovs: &Ovs, port: u32) -> PathBuf {
    match port {
        1 | 2 => ovs.path(&format!("br0-p{port}-tx.pcap")),
        p => ovs.path(&format!("p{p}-tx.pcap")),
    }
}

/// The frames in a pcap file (classic format, as OVS's tx_pcap writes it).
fn frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes([b[at + 8], b[at + 9], b[at + 10], b[at + 11]]) as usize;
        at += 16;
        if at + incl > b.len() {
            break;
        }
        out.push(b[at..at + incl].to_vec());
        at += incl;
    }
    out
}

fn count(ovs: &Ovs, port: u32) -> usize {
    frames(&pcap_of(ovs, port)).len()
}

/// Waits for a new frame on `port` after `before` frames and returns its flow key.
fn next_frame(ovs: &Ovs, port: u32, before: usize) -> FlowKey {
    let path = pcap_of(ovs, port);
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            got = frames(&path);
            got.len() > before
        }),
        "nothing left port {port}"
    );
    FlowKey::extract(port, &got.pop().unwrap()).unwrap()
}

/// A frame arriving on a dummy port.
fn receive(ovs: &Ovs, port: u32, frame: &[u8]) {
    let name = if port <= 2 { format!("br0-p{port}") } else { format!("p{port}") };
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    ovs.ok("ovs-appctl", &["netdev-dummy/receive", &name, &hex]);
}

fn conntrack(ovs: &Ovs, zone: u16) -> String {
    ovs.ok("ovs-appctl", &["dpctl/dump-conntrack", &format!("zone={zone}")])
}

/// `n_packets` of the flow in `table` whose dump contains `needle`.
fn n_packets(ovs: &Ovs, table: u8, needle: &str) -> u64 {
    let dump = ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", &format!("table={table}")]);
    let line = dump.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no flow with {needle}:\n{dump}"));
    let n = line.split("n_packets=").nth(1).unwrap().split(',').next().unwrap();
    n.parse().unwrap()
}

// === a blocking OpenFlow client on the management socket ===

struct Client {
    s: UnixStream,
    buf: Vec<u8>,
    xid: u32,
}

impl Client {
    fn connect(ovs: &Ovs) -> Client {
        let s = UnixStream::connect(ovs.path("br0.mgmt")).expect("connect to the management socket");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client { s, buf: Vec::new(), xid: 100 };
        c.send(&Message::Hello(Hello::with_bitmap(1 << 4)));
        loop {
            if let (_, Message::Hello(_)) = c.recv() {
                return c;
            }
        }
    }

    fn send(&mut self, m: &Message) -> u32 {
        self.xid += 1;
        self.s.write_all(&message::encode(m, self.xid)).unwrap();
        self.xid
    }

    fn recv(&mut self) -> (Header, Message) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(n) = message::frame_len(&self.buf).unwrap() {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let (h, m) = message::decode(&frame).unwrap_or_else(|e| panic!("undecodable message: {e}"));
                if let Message::EchoRequest(d) = &m {
                    self.s.write_all(&message::encode(&Message::EchoReply(d.clone()), h.xid)).unwrap();
                    continue;
                }
                return (h, m);
            }
            assert!(Instant::now() < deadline, "timed out waiting for the switch");
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "switch closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `msgs` in order, then a barrier; panics on any OFPT_ERROR before the barrier reply.
    fn apply(&mut self, msgs: &[Message]) {
        for m in msgs {
            self.send(m);
        }
        let x = self.send(&Message::BarrierRequest);
        loop {
            match self.recv() {
                (_, Message::Error(e)) => panic!("switch refused a decision message: {}", e.code),
                (h, Message::BarrierReply) if h.xid == x => return,
                _ => {}
            }
        }
    }
}

/// What a shard does for a packet-in of `frame` on `in_port`: decide, send the flows, then the
/// packet-out carrying the packet.
fn packet_in(ovs: &Ovs, cfg: &PipelineConfig, in_port: u32, frame: &[u8], policy: &NetworkPolicy) -> Verdict {
    let key = FlowKey::extract(in_port, frame).unwrap();
    let ctx = DecisionContext::new(cfg, GENERATION);
    let d = decide(&key, in_port, policy, &ctx);
    Client::connect(ovs).apply(&d.messages(frame));
    d.verdict
}

// === tests ===

#[test]
fn pod_to_pod_tcp_is_committed_forwarded_and_its_reply_returns() {
    let (ovs, cfg) = setup();
    let syn = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(B_IP), 33333, 8080);
    let before = count(&ovs, 4);
    assert_eq!(packet_in(&ovs, &cfg, 2, &syn, &NetworkPolicy::allow()), Verdict::Allow);
    // The packet-out applied the forward flow's actions (ct commit in zone 1, eth_dst, out 4)
    // directly: the packet is delivered and committed without running the tables again.
    let f = next_frame(&ovs, 4, before);
    assert_eq!((f.eth_dst, f.ip_dst, f.l4_dst, f.tcp_flags), (B_MAC, ip(B_IP), 8080, 0x002));
    let fwd = "nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=33333,tp_dst=8080";
    assert_eq!(n_packets(&ovs, 3, fwd), 0);
    let ct = conntrack(&ovs, 1);
    let line = ct.lines().find(|l| l.contains("orig=(src=10.244.1.2,dst=10.244.1.4,sport=33333,dport=8080)"));
    assert!(line.is_some_and(|l| l.contains("zone=1") && l.contains("SYN_SENT")), "{ct}");

    // B's SYN-ACK: conntrack +est (table 2), back to A.
    let before = count(&ovs, 2);
    receive(&ovs, 4, &build::tcp_syn_ack(B_MAC, A_MAC, ip(B_IP), ip(A_IP), 8080, 33333));
    let f = next_frame(&ovs, 2, before);
    assert_eq!((f.eth_dst, f.ip_src, f.l4_src, f.tcp_flags), (A_MAC, ip(B_IP), 8080, 0x012));
    assert!(wait_until(TIMEOUT, || conntrack(&ovs, 1).contains("ESTABLISHED")), "{}", conntrack(&ovs, 1));

    // With conntrack flushed, B's next packet is +new again and the reverse flow of table 3
    // commits it and delivers it (a wrong guess or a lost entry cannot strand the reply).
    ovs.ok("ovs-appctl", &["dpctl/flush-conntrack"]);
    let rev = "nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=8080,tp_dst=33333";
    assert_eq!(n_packets(&ovs, 3, rev), 0);
    let before = count(&ovs, 2);
    receive(&ovs, 4, &build::tcp_ack(B_MAC, A_MAC, ip(B_IP), ip(A_IP), 8080, 33333));
    let f = next_frame(&ovs, 2, before);
    assert_eq!((f.eth_dst, f.ip_src, f.l4_src), (A_MAC, ip(B_IP), 8080));
    assert_eq!(n_packets(&ovs, 3, rev), 1);
    let ct = conntrack(&ovs, 1);
    assert!(
        ct.contains("orig=(src=10.244.1.4,dst=10.244.1.2,sport=8080,dport=33333)") && ct.contains("zone=1"),
        "{ct}"
    );
}

#[test]
fn service_connection_is_dnated_and_the_reply_comes_from_the_vip() {
    let (ovs, cfg) = setup();
    let syn = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(VIP), 33333, 80);
    let ep = Endpoint { ip: ip(B_IP), port: 8080, weight: 1 };
    let before = count(&ovs, 4);
    let v = packet_in(&ovs, &cfg, 2, &syn, &NetworkPolicy::service(vec![ep.clone()]));
    assert_eq!(v, Verdict::Service { endpoint: ep });
    // Leaves on B's port, DNATed to B:8080.
    let f = next_frame(&ovs, 4, before);
    assert_eq!((f.eth_dst, f.ip_src, f.ip_dst, f.l4_src, f.l4_dst), (B_MAC, ip(A_IP), ip(B_IP), 33333, 8080));
    let ct = conntrack(&ovs, 2);
    assert!(
        ct.contains("tcp,orig=(src=10.244.1.2,dst=10.96.0.10,sport=33333,dport=80),reply=(src=10.244.1.4,dst=10.244.1.2,sport=8080,dport=33333),zone=2"),
        "{ct}"
    );
    // B's SYN-ACK takes the reverse flow (table 0, ct(zone=2,nat)): A sees it from VIP:80.
    let before = count(&ovs, 2);
    receive(&ovs, 4, &build::tcp_syn_ack(B_MAC, A_MAC, ip(B_IP), ip(A_IP), 8080, 33333));
    let f = next_frame(&ovs, 2, before);
    assert_eq!((f.eth_dst, f.ip_src, f.ip_dst, f.l4_src, f.l4_dst), (A_MAC, ip(VIP), ip(A_IP), 80, 33333));
    assert_eq!(n_packets(&ovs, 0, "nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=8080"), 1);
    // A's next packets take the forward flow without the controller.
    let before = count(&ovs, 4);
    receive(&ovs, 2, &build::tcp_ack(A_MAC, GW_MAC, ip(A_IP), ip(VIP), 33333, 80));
    let f = next_frame(&ovs, 4, before);
    assert_eq!((f.ip_dst, f.l4_dst), (ip(B_IP), 8080));
    assert!(conntrack(&ovs, 2).contains("ESTABLISHED"), "{}", conntrack(&ovs, 2));

    // Three endpoints: the connection goes where choose_endpoint says (B locally, else the
    // gateway), and conntrack holds that translation.
    let eps = vec![
        Endpoint { ip: ip(B_IP), port: 8080, weight: 1 },
        Endpoint { ip: ip("10.244.2.5"), port: 8080, weight: 1 },
        Endpoint { ip: ip("10.244.3.6"), port: 8443, weight: 1 },
    ];
    for sport in [40000u16, 40001, 40002, 40003] {
        let syn = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(VIP), sport, 80);
        let want = choose_endpoint(&FlowKey::extract(2, &syn).unwrap().conn_key(), &eps).unwrap().clone();
        let out = if want.ip == ip(B_IP) { 4 } else { 3 };
        let before = count(&ovs, out);
        let v = packet_in(&ovs, &cfg, 2, &syn, &NetworkPolicy::service(eps.clone()));
        assert_eq!(v, Verdict::Service { endpoint: want.clone() });
        let f = next_frame(&ovs, out, before);
        assert_eq!((f.ip_dst, f.l4_dst), (want.ip, want.port));
        let ct = conntrack(&ovs, 2);
        let reply = format!("reply=(src={},dst=10.244.1.2,sport={},dport={sport})", want.ip, want.port);
        assert!(ct.contains(&reply), "{reply} not in\n{ct}");
    }
}

#[test]
fn denied_connection_is_dropped_by_its_flow() {
    let (ovs, cfg) = setup();
    let syn = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(B_IP), 33333, 9999);
    let before = count(&ovs, 4);
    assert_eq!(packet_in(&ovs, &cfg, 2, &syn, &NetworkPolicy::deny()), Verdict::Deny);
    let drop = "nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=33333,tp_dst=9999";
    let dump = ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "table=3", "--no-stats"]);
    assert!(
        dump.lines().any(|l| l.contains(drop) && l.contains("idle_timeout=10") && l.ends_with("actions=drop")),
        "{dump}"
    );
    // The retransmitted SYN reaches the drop flow (table 3) and goes nowhere.
    receive(&ovs, 2, &syn);
    assert!(wait_until(Duration::from_secs(3), || n_packets(&ovs, 3, drop) == 1));
    // The drop flow counted the packet in the same pass that would have sent or committed it.
    assert_eq!(count(&ovs, 4), before, "a denied SYN left on B's port");
    assert!(!conntrack(&ovs, 1).contains("dport=9999"), "a denied connection was committed");
    // A denied service connection: dropped in table 0 before any conntrack.
    let svc = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(VIP), 33334, 80);
    let deny = NetworkPolicy {
        allowed: false,
        ..NetworkPolicy::service(vec![Endpoint { ip: ip(B_IP), port: 8080, weight: 1 }])
    };
    assert_eq!(packet_in(&ovs, &cfg, 2, &svc, &deny), Verdict::Deny);
    receive(&ovs, 2, &svc);
    let m = "nw_src=10.244.1.2,nw_dst=10.96.0.10,tp_src=33334,tp_dst=80";
    assert!(wait_until(Duration::from_secs(3), || n_packets(&ovs, 0, m) == 1));
    assert!(conntrack(&ovs, 2).is_empty() || !conntrack(&ovs, 2).contains("sport=33334"));
}

#[test]
fn src_port_translation_is_applied_and_undone() {
    let (ovs, cfg) = setup();
    let syn = build::tcp_syn(A_MAC, GW_MAC, ip(A_IP), ip(B_IP), 33335, 8080);
    let p = NetworkPolicy { src_port: Some(40001), ..NetworkPolicy::allow() };
    let before = count(&ovs, 4);
    assert_eq!(packet_in(&ovs, &cfg, 2, &syn, &p), Verdict::Allow);
    // B sees A's connection from port 40001.
    let f = next_frame(&ovs, 4, before);
    assert_eq!((f.eth_dst, f.ip_src, f.l4_src, f.ip_dst, f.l4_dst), (B_MAC, ip(A_IP), 40001, ip(B_IP), 8080));
    let ct = conntrack(&ovs, 2);
    assert!(ct.contains("reply=(src=10.244.1.4,dst=10.244.1.2,sport=8080,dport=40001),zone=2"), "{ct}");
    // B answers port 40001; A gets it on its own port 33335.
    let before = count(&ovs, 2);
    receive(&ovs, 4, &build::tcp_syn_ack(B_MAC, A_MAC, ip(B_IP), ip(A_IP), 8080, 40001));
    let f = next_frame(&ovs, 2, before);
    assert_eq!((f.eth_dst, f.ip_src, f.l4_src, f.l4_dst), (A_MAC, ip(B_IP), 8080, 33335));
}
