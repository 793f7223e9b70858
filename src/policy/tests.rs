//! Every case of the decision, each flow checked against OVS's own encoder.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use shards::HotSynCache;

use super::decision::OFPP_TABLE;
use super::*;
use crate::openflow::action::Action;
use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message::{self, Message};
use crate::oracle;
use crate::packet::build;
use crate::packet::{FlowKey, MacAddr};
use crate::pipeline::cookie::{self, Category};
use crate::pipeline::default::{LocalPod, PipelineConfig};

const GEN: u16 = 1;
const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// docs/pipeline.md's example: uplink 1, pod A port 2, gateway 3, pod B port 4, tunnel 5.
fn cfg() -> PipelineConfig {
    PipelineConfig {
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        gateway_ip: Ipv4Addr::new(10, 244, 1, 1),
        gateway_mac: GW_MAC,
        gateway_port: 3,
        uplink_port: 1,
        tunnel_port: Some(5),
        local_pods: vec![
            LocalPod { port: 2, ip: Ipv4Addr::new(10, 244, 1, 2), mac: A_MAC, ipv6: None },
            LocalPod { port: 4, ip: Ipv4Addr::new(10, 244, 1, 4), mac: B_MAC, ipv6: None },
        ],
        ..PipelineConfig::default()
    }
}

fn key(frame: &[u8], in_port: u32) -> FlowKey {
    FlowKey::extract(in_port, frame).unwrap()
}

fn syn(src: &str, dst: &str, sp: u16, dp: u16) -> FlowKey {
    key(&build::tcp_syn(A_MAC, GW_MAC, ip(src), ip(dst), sp, dp), 2)
}

/// Decides, checks each flow text against OVS (bytes equal, dump form reads back) and returns
/// the texts.
fn run(k: &FlowKey, in_port: u32, p: &NetworkPolicy) -> (Decision, Vec<String>) {
    let c = cfg();
    let ctx = DecisionContext::new(&c, GEN);
    let (verdict, texts, po) = decision_texts(k, in_port, p, &ctx);
    let d = decide(k, in_port, p, &ctx);
    assert_eq!(d.verdict, verdict);
    assert_eq!(d.packet_out.is_some(), po.is_some());
    if let (Some(out), Some(first)) = (&d.packet_out, d.flows.first()) {
        // The packet goes on with the decided actions of its own direction's flow.
        let want: Vec<_> = first
            .instructions
            .iter()
            .filter_map(|i| match i {
                crate::openflow::instruction::Instruction::ApplyActions(a) => Some(a.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(out.actions, want);
        assert_eq!(out.in_port, in_port);
    }
    assert_eq!(d.flows.len(), texts.len(), "every text parses: {texts:?}");
    assert!(oracle::available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
    for (t, fm) in texts.iter().zip(&d.flows) {
        let ovs = oracle::parse_flow(t).unwrap_or_else(|e| panic!("OVS refuses {t}: {e}"));
        let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);
        assert_eq!(fm.encode(xid), ovs.bytes, "{t}");
        let back = FlowMod::parse(&fm.to_flow_text(), FlowModCommand::Add).unwrap();
        assert_eq!(&back, fm, "{}", fm.to_flow_text());
    }
    // One cookie per connection, category Connection, object = ConnKey::hash64's low 40 bits.
    let want = cookie::make(GEN, Category::Connection, k.conn_key().hash64());
    assert!(d.flows.iter().all(|f| f.cookie == want));
    assert_eq!(cookie::category(want), Some(Category::Connection));
    (d, texts)
}

fn c(k: &FlowKey) -> String {
    format!("{:#x}", cookie::make(GEN, Category::Connection, k.conn_key().hash64()))
}

fn allowed_po(d: &Decision, in_port: u32) {
    let po = d.packet_out.as_ref().expect("a packet-out");
    assert_eq!(po.in_port, in_port);
    // The decided actions of the packet's own direction (checked in `run`), not a table re-run.
    assert!(!po.actions.is_empty());
    assert!(!po.actions.contains(&Action::Output { port: OFPP_TABLE, max_len: 0 }));
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn allowed_tcp_pod_to_pod_installs_both_directions_in_table_3() {
    let k = syn("10.244.1.2", "10.244.1.4", 33333, 8080);
    let (d, t) = run(&k, 2, &NetworkPolicy::allow());
    assert_eq!(d.verdict, Verdict::Allow);
    let ck = c(&k);
    assert_eq!(
        t,
        vec![
            format!("table=3,priority=100,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=33333,tp_dst=8080,actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:04->eth_dst,output:4"),
            format!("table=3,priority=100,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=8080,tp_dst=33333,actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"),
        ]
    );
    allowed_po(&d, 2);
    // The packet-out is what OVS reads as in_port=2 with the forward flow's actions and the packet.
    let frame = build::tcp_syn(A_MAC, GW_MAC, ip("10.244.1.2"), ip("10.244.1.4"), 33333, 8080);
    let msgs = d.messages(&frame);
    assert_eq!(msgs.len(), 3);
    let Message::PacketOut(po) = &msgs[2] else { panic!("packet-out last") };
    let printed = oracle::ofp_print(&message::encode(&Message::PacketOut(po.clone()), 7)).unwrap();
    assert!(
        printed
            .contains("in_port=2 actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:04->eth_dst,output:4 data_len=54"),
        "{printed}"
    );
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn allowed_to_a_remote_address_goes_out_of_the_gateway() {
    let k = syn("10.244.1.2", "10.244.2.9", 40000, 443);
    let (_, t) = run(&k, 2, &NetworkPolicy::allow());
    assert!(t[0].ends_with("tp_src=40000,tp_dst=443,actions=ct(commit,zone=1),output:3"), "{}", t[0]);
    assert!(t[1].ends_with("actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"), "{}", t[1]);
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn allowed_to_another_nodes_pod_goes_into_the_tunnel_with_tun_dst() {
    use crate::pipeline::default::TunnelRoute;
    let mut c = cfg();
    c.tunnel_routes =
        vec![TunnelRoute { cidr: "10.244.2.0/24".parse().unwrap(), remote_ip: Ipv4Addr::new(172, 31, 0, 2) }];
    let ctx = DecisionContext::new(&c, GEN);
    let k = syn("10.244.1.2", "10.244.2.9", 40000, 443);
    let p = NetworkPolicy::allow();
    let (_, texts, _) = decision_texts(&k, 2, &p, &ctx);
    assert!(
        texts[0].ends_with("tp_dst=443,actions=ct(commit,zone=1),set_field:172.31.0.2->tun_dst,output:5"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].ends_with("actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"),
        "{}",
        texts[1]
    );
    // Typed flows equal the texts, and the texts are what OVS encodes.
    let d = decide(&k, 2, &p, &ctx);
    let parsed: Vec<FlowMod> = texts.iter().map(|t| FlowMod::parse(t, FlowModCommand::Add).unwrap()).collect();
    assert_eq!(d.flows, parsed);
    for (t, fm) in texts.iter().zip(&d.flows) {
        let ovs = oracle::parse_flow(t).unwrap_or_else(|e| panic!("OVS refuses {t}: {e}"));
        let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);
        assert_eq!(fm.encode(xid), ovs.bytes, "{t}");
    }
    // Without a tunnel port the route is not used: the gateway, as before.
    c.tunnel_port = None;
    let ctx = DecisionContext::new(&c, GEN);
    let (_, texts, _) = decision_texts(&k, 2, &p, &ctx);
    assert!(texts[0].ends_with("actions=ct(commit,zone=1),output:3"), "{}", texts[0]);
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn allowed_udp_sctp_icmp_and_other_protocols() {
    let (a, b) = (ip("10.244.1.2"), ip("10.244.1.4"));
    let udp = key(&build::udp(A_MAC, B_MAC, a, b, 5353, 53, b"q"), 2);
    let (_, t) = run(&udp, 2, &NetworkPolicy::allow());
    assert!(t[0].contains(",udp,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=5353,tp_dst=53,"), "{t:?}");
    assert!(t[1].contains(",udp,nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=53,tp_dst=5353,"), "{t:?}");

    let sctp = key(&build::sctp(A_MAC, B_MAC, a, b, 3868, 3869, 0, &[1, 0, 0, 4]), 2);
    let (_, t) = run(&sctp, 2, &NetworkPolicy::allow());
    assert!(t[0].contains(",sctp,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=3868,tp_dst=3869,"), "{t:?}");
    assert!(t[1].contains(",sctp,nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=3869,tp_dst=3868,"), "{t:?}");

    let ping = key(
        &build::icmp_echo_request(A_MAC, B_MAC, "10.244.1.2".parse().unwrap(), "10.244.1.4".parse().unwrap(), 7, 1),
        2,
    );
    let (_, t) = run(&ping, 2, &NetworkPolicy::allow());
    assert!(t[0].contains(",icmp,nw_src=10.244.1.2,nw_dst=10.244.1.4,icmp_type=8,icmp_code=0,"), "{t:?}");
    assert!(t[1].contains(",icmp,nw_src=10.244.1.4,nw_dst=10.244.1.2,icmp_type=0,icmp_code=0,"), "{t:?}");

    // An ICMP type without a reply type: the reverse matches the addresses only.
    let mut unreach = ping;
    unreach.icmp_type = 3;
    let (_, t) = run(&unreach, 2, &NetworkPolicy::allow());
    assert!(t[0].contains("icmp_type=3,icmp_code=0,") && !t[1].contains("icmp_type"), "{t:?}");

    let mut gre = udp;
    gre.ip_proto = 47;
    let (_, t) = run(&gre, 2, &NetworkPolicy::allow());
    assert!(t[0].contains(",ip,nw_proto=47,nw_src=10.244.1.2,nw_dst=10.244.1.4,actions="), "{t:?}");
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn allowed_ipv6() {
    let (a, b) = (ip("fd00::2"), ip("fd00::4"));
    let k = key(&build::tcp_syn(A_MAC, B_MAC, a, b, 40000, 80), 2);
    let (d, t) = run(&k, 2, &NetworkPolicy::allow());
    let ck = c(&k);
    assert_eq!(
        t,
        vec![
            format!("table=3,priority=100,cookie={ck},idle_timeout=300,tcp6,ipv6_src=fd00::2,ipv6_dst=fd00::4,tp_src=40000,tp_dst=80,actions=ct(commit,zone=1),output:3"),
            format!("table=3,priority=100,cookie={ck},idle_timeout=300,tcp6,ipv6_src=fd00::4,ipv6_dst=fd00::2,tp_src=80,tp_dst=40000,actions=ct(commit,zone=1),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"),
        ]
    );
    allowed_po(&d, 2);
    for frame in [
        build::udp(A_MAC, B_MAC, a, b, 546, 547, b"x"),
        build::sctp(A_MAC, B_MAC, a, b, 1, 2, 0, &[1, 0, 0, 4]),
        build::icmpv6_echo_request(A_MAC, B_MAC, "fd00::2".parse().unwrap(), "fd00::4".parse().unwrap(), 9, 1),
    ] {
        let (_, t) = run(&key(&frame, 2), 2, &NetworkPolicy::allow());
        assert_eq!(t.len(), 2);
        assert!(t[1].contains("ipv6_src=fd00::4,ipv6_dst=fd00::2"), "{t:?}");
        if t[0].contains("icmp6") {
            assert!(t[0].contains("icmp_type=128") && t[1].contains("icmp_type=129"), "{t:?}");
        }
    }
}

fn ep(s: &str, port: u16, weight: u32) -> Endpoint {
    Endpoint { ip: ip(s), port, weight }
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn service_with_one_endpoint_is_dnated_in_table_0() {
    let k = syn("10.244.1.2", "10.96.0.10", 33333, 80);
    let q = PolicyQuery::from_flow(&k, false, &cfg().service_cidr);
    assert!(q.nat && !q.is_reply);
    let (d, t) = run(&k, 2, &NetworkPolicy::service(vec![ep("10.244.1.4", 8080, 1)]));
    assert_eq!(d.verdict, Verdict::Service { endpoint: ep("10.244.1.4", 8080, 1) });
    let ck = c(&k);
    assert_eq!(
        t,
        vec![
            format!("table=0,priority=150,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.1.2,nw_dst=10.96.0.10,tp_src=33333,tp_dst=80,in_port=2,actions=ct(commit,zone=2,nat(dst=10.244.1.4:8080)),set_field:0a:58:0a:f4:01:04->eth_dst,output:4"),
            format!("table=0,priority=150,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.1.4,nw_dst=10.244.1.2,tp_src=8080,tp_dst=33333,in_port=4,actions=ct(zone=2,nat),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"),
        ]
    );
    allowed_po(&d, 2);
    // A remote endpoint, port kept (0): out of the gateway, its reply expected from the gateway.
    let (_, t) = run(&k, 2, &NetworkPolicy::service(vec![ep("10.244.7.7", 0, 1)]));
    assert!(t[0].ends_with("actions=ct(commit,zone=2,nat(dst=10.244.7.7)),output:3"), "{}", t[0]);
    assert!(
        t[1].contains("nw_src=10.244.7.7,nw_dst=10.244.1.2,tp_src=80,tp_dst=33333,in_port=3,actions=ct(zone=2,nat)"),
        "{}",
        t[1]
    );
    // IPv6 endpoint address form.
    let k6 = key(&build::tcp_syn(A_MAC, GW_MAC, ip("fd00::2"), ip("fd00:96::10"), 1000, 80), 2);
    let (_, t) = run(&k6, 2, &NetworkPolicy::service(vec![ep("fd00::7", 8080, 1)]));
    assert!(t[0].contains("nat(dst=[fd00::7]:8080)"), "{}", t[0]);
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn service_with_three_endpoints_is_consistent_and_stable() {
    let eps = vec![ep("10.244.1.4", 8080, 1), ep("10.244.2.5", 8080, 1), ep("10.244.3.6", 8080, 1)];
    let k = syn("10.244.1.2", "10.96.0.10", 33333, 80);
    let chosen = choose_endpoint(&k.conn_key(), &eps).unwrap().clone();
    let (d, t) = run(&k, 2, &NetworkPolicy::service(eps.clone()));
    assert_eq!(d.verdict, Verdict::Service { endpoint: chosen.clone() });
    assert!(t[0].contains(&format!("nat(dst={}:8080)", chosen.ip)), "{}", t[0]);
    // Both directions of the connection choose alike (ConnKey is direction-free).
    let back = key(&build::tcp_syn_ack(B_MAC, A_MAC, ip("10.96.0.10"), ip("10.244.1.2"), 80, 33333), 4);
    assert_eq!(choose_endpoint(&back.conn_key(), &eps), Some(&chosen));

    // HRW: over many connections, removing one endpoint moves only its own connections; all
    // three get a fair share; weights are respected; weight 0 is never chosen.
    let mut counts = [0usize; 3];
    let mut heavy = [0usize; 3];
    let weighted = vec![ep("10.244.1.4", 8080, 1), ep("10.244.2.5", 8080, 2), ep("10.244.3.6", 8080, 0)];
    let n = 3000u16;
    for i in 0..n {
        let ck = syn("10.244.1.2", "10.96.0.10", 10000 + i, 80).conn_key();
        let e = choose_endpoint(&ck, &eps).unwrap();
        let idx = eps.iter().position(|x| x == e).unwrap();
        counts[idx] += 1;
        for gone in 0..3 {
            if gone == idx {
                continue;
            }
            let mut fewer = eps.clone();
            fewer.remove(gone);
            assert_eq!(choose_endpoint(&ck, &fewer), Some(e), "connection {i} moved when {gone} left");
        }
        // A new endpoint takes connections only for itself.
        let mut more = eps.clone();
        more.push(ep("10.244.4.8", 8080, 1));
        let m = choose_endpoint(&ck, &more).unwrap();
        assert!(m == e || m.ip == ip("10.244.4.8"));
        let w = choose_endpoint(&ck, &weighted).unwrap();
        heavy[weighted.iter().position(|x| x == w).unwrap()] += 1;
    }
    for c in counts {
        assert!((800..1200).contains(&c), "unbalanced: {counts:?}");
    }
    assert_eq!(heavy[2], 0, "weight 0 chosen: {heavy:?}");
    assert!((1800..2200).contains(&heavy[1]), "weight 2 should get ~2/3: {heavy:?}");
    assert_eq!(choose_endpoint(&k.conn_key(), &[ep("10.244.1.4", 1, 0)]), None);
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn src_port_translation_and_snat() {
    let k = syn("10.244.1.2", "10.244.2.9", 33333, 443);
    let p = NetworkPolicy { src_port: Some(40001), ..NetworkPolicy::allow() };
    let (d, t) = run(&k, 2, &p);
    assert_eq!(d.verdict, Verdict::Allow);
    let ck = c(&k);
    assert_eq!(
        t,
        vec![
            format!("table=0,priority=150,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.1.2,nw_dst=10.244.2.9,tp_src=33333,tp_dst=443,in_port=2,actions=ct(commit,zone=2,nat(src=10.244.1.2:40001)),output:3"),
            format!("table=0,priority=150,cookie={ck},idle_timeout=300,tcp,nw_src=10.244.2.9,nw_dst=10.244.1.2,tp_src=443,tp_dst=40001,in_port=3,actions=ct(zone=2,nat),set_field:0a:58:0a:f4:01:02->eth_dst,output:2"),
        ]
    );
    allowed_po(&d, 2);
    let p = NetworkPolicy {
        dst_type: DstType::Snat { ip: ip("192.168.0.1") },
        src_port: Some(40001),
        ..NetworkPolicy::allow()
    };
    let (_, t) = run(&k, 2, &p);
    assert!(t[0].contains("nat(src=192.168.0.1:40001)"), "{}", t[0]);
    assert!(t[1].contains("nw_dst=192.168.0.1,tp_src=443,tp_dst=40001,in_port=3"), "{}", t[1]);
    let p = NetworkPolicy { dst_type: DstType::Snat { ip: ip("192.168.0.1") }, ..NetworkPolicy::allow() };
    let (_, t) = run(&k, 2, &p);
    assert!(t[0].contains("nat(src=192.168.0.1))") && t[1].contains("tp_dst=33333"), "{t:?}");
}

#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn denied_installs_one_drop_flow_and_no_packet_out() {
    let k = syn("10.244.1.2", "10.244.1.4", 33333, 9999);
    let (d, t) = run(&k, 2, &NetworkPolicy::deny());
    assert_eq!((d.verdict, d.packet_out), (Verdict::Deny, None));
    assert_eq!(
        t,
        vec![format!("table=3,priority=100,cookie={},idle_timeout=10,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=33333,tp_dst=9999,actions=drop", c(&k))]
    );
    // A service: in table 0, where its packets are.
    let k = syn("10.244.1.2", "10.96.0.10", 33333, 80);
    let (d, t) = run(&k, 2, &NetworkPolicy { allowed: false, ..NetworkPolicy::service(vec![ep("10.244.1.4", 80, 1)]) });
    assert_eq!((d.verdict, d.packet_out), (Verdict::Deny, None));
    assert_eq!(
        t,
        vec![format!("table=0,priority=150,cookie={},idle_timeout=10,tcp,nw_src=10.244.1.2,nw_dst=10.96.0.10,tp_src=33333,tp_dst=80,in_port=2,actions=drop", c(&k))]
    );
    // A service without a usable endpoint is dropped the same way.
    let (d, t2) = run(&k, 2, &NetworkPolicy::service(vec![ep("10.244.1.4", 80, 0)]));
    assert_eq!((d.verdict, t2), (Verdict::Deny, t));
}

// === hot SYN ===

fn tcp(src: &str, dst: &str, sp: u16, dp: u16, flags: u16) -> FlowKey {
    key(&build::tcp(A_MAC, B_MAC, ip(src), ip(dst), sp, dp, flags, 1, 1, &[]), 2)
}

const SYN: u16 = 0x002;
const ACK: u16 = 0x010;

#[test]
fn hot_syn_tells_requests_from_replies() {
    let t0 = Instant::now();
    let mut hot = HotSynCache::new(64, Duration::from_secs(5));
    let (a, b) = ("10.244.1.2", "10.244.1.4");
    // A's client port is the lower one, so the port heuristic alone would get its ACK wrong.
    let a_syn = tcp(a, b, 1000, 5000, SYN);
    assert!(!classify(&a_syn, 0, &mut hot, t0), "a SYN is a request");
    assert!(hot.is_hot(&HotTarget { client: ip(a), server: ip(b), port: 5000 }, t0));
    // Retransmitted SYN: still a request, still hot (re-marked).
    assert!(!classify(&a_syn, 0, &mut hot, t0 + Duration::from_secs(4)));
    assert!(hot.is_hot(&hot_syn::target_of(&a_syn), t0 + Duration::from_secs(8)));
    // SYN-ACK from B:5000 back to A: a reply.
    let t = t0 + Duration::from_secs(5);
    assert!(classify(&tcp(b, a, 5000, 1000, SYN | ACK), 0, &mut hot, t));
    // Early ACK (and data) A -> B:5000 while hot: A's own connection, not a reply.
    let early_ack = tcp(a, b, 1000, 5000, ACK);
    assert!(!classify(&early_ack, 0, &mut hot, t));
    assert!(!classify(&tcp(a, b, 1000, 5000, ACK | 0x008), 0, &mut hot, t));
    // Without the mark the same ACK would be taken for a reply (lower source port).
    let cold = HotSynCache::new(4, Duration::from_secs(5));
    assert!(is_reply(&early_ack, 0, &cold, t));
    // B's ACK to A while hot: a reply.
    assert!(classify(&tcp(b, a, 5000, 1000, ACK), 0, &mut hot, t));
    // Conntrack's +rpl+trk wins over everything.
    assert!(is_reply(&early_ack, 0x20 | 0x08, &hot, t));
    assert!(!is_reply(&early_ack, 0x20 | 0x01, &hot, t));
    // After the TTL the mark is gone: back to the port rule.
    assert!(is_reply(&early_ack, 0, &hot, t0 + Duration::from_secs(20)));
    // Not TCP: a request unless conntrack says otherwise; nothing marked.
    let udp = key(&build::udp(A_MAC, B_MAC, ip(b), ip(a), 53, 5353, b""), 4);
    let before = hot.len();
    assert!(!classify(&udp, 0, &mut hot, t));
    assert_eq!(hot.len(), before);
    assert!(is_reply(&udp, 0x28, &hot, t));
}

#[test]
fn the_guess_orients_the_query_but_both_flows_are_always_installed() {
    let c = cfg();
    let ctx = DecisionContext::new(&c, GEN);
    let (a, b) = ("10.244.1.2", "10.244.1.4");
    // An early ACK (A -> B:5000) and B's reply, each decided from the packet as received:
    // the same pair of flows whatever the guess, so neither direction can be left out.
    let fwd = tcp(a, b, 1000, 5000, ACK);
    let rev = key(&build::tcp(B_MAC, A_MAC, ip(b), ip(a), 5000, 1000, ACK, 1, 1, &[]), 4);
    let set = |k: &FlowKey, port| -> HashSet<String> {
        decide(k, port, &NetworkPolicy::allow(), &ctx).flows.iter().map(|f| f.to_flow_text()).collect()
    };
    assert_eq!(set(&fwd, 2), set(&rev, 4));
    assert_eq!(set(&fwd, 2).len(), 2);
    // The query is initiator first: a packet guessed to be a reply is swapped.
    let q = PolicyQuery::from_flow(&rev, true, &c.service_cidr);
    assert_eq!((q.src_ip, q.dst_ip, q.src_port, q.dst_port), (ip(a), ip(b), 1000, 5000));
    assert_eq!((q.src_mac, q.dst_mac, q.protocol, q.is_reply, q.nat), (A_MAC, B_MAC, 6, true, false));
    let q2 = PolicyQuery::from_flow(&fwd, false, &c.service_cidr);
    assert_eq!((q2.src_ip, q2.dst_ip, q2.src_port, q2.dst_port), (q.src_ip, q.dst_ip, q.src_port, q.dst_port));
}

/// The packet path builds flows typed; the text form is the oracle. Every verdict, protocol,
/// family, location and translation: the typed flows equal the parsed texts exactly (so they
/// encode to the same bytes, which the tests above check against OVS), and the packet-out
/// carries the forward flow's actions. Needs no OVS.
#[test]
fn typed_flows_equal_the_text_oracle_for_every_form() {
    use std::net::Ipv6Addr;
    let mut c = cfg();
    c.pod_cidr6 = Some("fd00:10:244:1::/64".parse().unwrap());
    c.local_pods[0].ipv6 = Some("fd00:10:244:1::2".parse().unwrap());
    c.local_pods[1].ipv6 = Some("fd00:10:244:1::4".parse().unwrap());
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("fd00:10:244:1::2".parse().unwrap(), "fd00:10:244:1::4".parse().unwrap());
    let a4 = Ipv4Addr::new(10, 244, 1, 2);
    let frames: Vec<(Vec<u8>, u32)> = vec![
        (build::tcp_syn(A_MAC, GW_MAC, ip("10.244.1.2"), ip("10.244.1.4"), 33333, 8080), 2),
        (build::tcp_syn(A_MAC, GW_MAC, ip("10.244.1.2"), ip("10.96.0.10"), 40000, 80), 2),
        (build::tcp_syn(A_MAC, GW_MAC, ip("10.244.1.2"), ip("8.8.8.8"), 40001, 443), 2),
        (build::tcp_syn(GW_MAC, A_MAC, ip("192.168.7.7"), ip("10.244.1.2"), 5555, 22), 3),
        (build::udp(A_MAC, B_MAC, ip("10.244.1.2"), ip("10.244.1.4"), 5353, 53, b"q"), 2),
        (build::sctp(A_MAC, B_MAC, ip("10.244.1.2"), ip("10.244.1.4"), 1000, 2000, 7, &[]), 2),
        (build::icmp_echo_request(A_MAC, B_MAC, a4, Ipv4Addr::new(10, 244, 1, 4), 7, 1), 2),
        (build::icmp_echo_request(A_MAC, B_MAC, a4, Ipv4Addr::new(10, 244, 1, 4), 7, 1), 4),
        (build::tcp_syn(A_MAC, B_MAC, IpAddr::V6(a6), IpAddr::V6(b6), 1234, 80), 2),
        (build::udp(A_MAC, B_MAC, IpAddr::V6(a6), IpAddr::V6(b6), 1234, 53, b"q"), 2),
        (build::icmpv6_echo_request(A_MAC, B_MAC, a6, b6, 9, 1), 2),
    ];
    let ep = |s: &str, port, weight| Endpoint { ip: ip(s), port, weight };
    let policies = vec![
        NetworkPolicy::allow(),
        NetworkPolicy::deny(),
        NetworkPolicy::service(vec![ep("10.244.1.4", 8080, 1), ep("10.244.9.9", 0, 2)]),
        NetworkPolicy::service(vec![ep("10.244.1.2", 8080, 1)]),
        NetworkPolicy::service(vec![]),
        NetworkPolicy { src_port: Some(30000), ..NetworkPolicy::allow() },
        NetworkPolicy { dst_type: DstType::Snat { ip: ip("172.16.0.1") }, ..NetworkPolicy::allow() },
        NetworkPolicy {
            dst_type: DstType::Snat { ip: ip("172.16.0.1") },
            src_port: Some(31000),
            ..NetworkPolicy::allow()
        },
    ];
    let mut checked = 0;
    for (frame, in_port) in &frames {
        let k = key(frame, *in_port);
        for p in &policies {
            if k.ip_src.is_ipv6() && !matches!(p.dst_type, DstType::Direct) {
                continue; // no IPv6 services or NAT
            }
            for ctx in [
                DecisionContext::new(&c, GEN),
                DecisionContext { conn_idle_timeout: 77, ..DecisionContext::new(&c, 9) },
            ] {
                let (verdict, texts, po) = decision_texts(&k, *in_port, p, &ctx);
                let parsed: Vec<FlowMod> =
                    texts.iter().map(|t| FlowMod::parse(t, FlowModCommand::Add).expect("oracle text parses")).collect();
                let decided = plan(&k, *in_port, p, &ctx);
                let d = decide(&k, *in_port, p, &ctx);
                assert_eq!(d.flows, parsed, "{texts:?}");
                assert_eq!(d.verdict, verdict);
                assert_eq!(decided.verdict(), verdict);
                assert_eq!(d.flows[0].encode(7), parsed[0].encode(7));
                assert_eq!(d.packet_out.is_some(), po.is_some());
                let msgs = decided.messages(&c, frame.clone());
                assert_eq!(msgs.len(), parsed.len() + usize::from(po.is_some()));
                if let Some(Message::PacketOut(out)) = msgs.last() {
                    assert_eq!(out.data, *frame);
                    assert_eq!(Some(&out.actions), d.packet_out.as_ref().map(|p| &p.actions));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 100, "{checked}");
}
