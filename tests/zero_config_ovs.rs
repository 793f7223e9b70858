//! The zero-config node against a real Open vSwitch: a daemon with no configuration at all
//! (`shardflow run`, the zero-config pipeline of docs/pipeline.md), a bridge with two dummy
//! ports and nothing said about them. The Tracker learns both hosts from their ARP (the
//! controller floods what it cannot answer), the embedded allow-all policy decides the first
//! SYN (forward and reverse flows with conntrack in table 3), the SYN leaves host B's port, and
//! the reply goes through conntrack and the reverse flow without asking the controller.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use shardflow::packet::{build, FlowKey, MacAddr};
use support::pipeline_env::{inject, pcap_frames, pcap_path, wait_pipeline, DPID};
use support::{pcap_packet_count, wait_until, Daemon, Ovs};

const A_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0a, 0x01]);
const B_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0b, 0x02]);
const A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

fn frames_with(ovs: &Ovs, port: u32, pred: impl Fn(&FlowKey) -> bool) -> usize {
    pcap_frames(&pcap_path(ovs, port)).iter().filter(|f| FlowKey::extract(port, f).is_ok_and(|k| pred(&k))).count()
}

fn packet_ins(d: &Daemon) -> u64 {
    d.json("/v1/shards").as_array().unwrap().iter().map(|s| s["packet_ins"].as_u64().unwrap()).sum()
}

#[test]
fn two_hosts_learned_and_a_tcp_connection_decided_without_configuration() {
    let ovs = Ovs::start(&["br0"]);
    // No configuration file, no [pipeline]: the zero-config default.
    let d = Daemon::start(2, &["--zero-config", "true"]);
    d.attach(&ovs, "br0", false);
    wait_pipeline(&d, 2, Duration::from_secs(10));
    let flows = ovs.flows("br0");
    assert!(
        flows.iter().any(|f| f.contains("priority=10,ip actions=load:0x1->NXM_NX_REG0[5],goto_table:1")),
        "no learning-port flow in table 0: {flows:#?}"
    );

    // ARP from A for B: nobody knows B yet, the controller floods it (B's port gets it).
    inject(&ovs, 1, &[build::arp_request(A_MAC, A, B)]);
    let ok = wait_until(Duration::from_secs(5), || frames_with(&ovs, 2, |k| k.is_arp() && k.arp_op == 1) >= 1);
    assert!(ok, "the ARP request was not flooded to port 2:\n{}", d.stderr());
    // B's reply goes to the controller too (so B is learned) and is forwarded to A.
    inject(&ovs, 2, &[build::arp_reply(B_MAC, B, A_MAC, A)]);
    let ok = wait_until(Duration::from_secs(5), || frames_with(&ovs, 1, |k| k.is_arp() && k.arp_op == 2) >= 1);
    assert!(ok, "the ARP reply did not reach port 1:\n{}", d.stderr());
    let mut tr = Value::Null;
    let ok = wait_until(Duration::from_secs(3), || {
        tr = d.json("/v1/tracker");
        let addrs = tr["addresses"].as_array().cloned().unwrap_or_default();
        [(A, 1), (B, 2)].iter().all(|(ip, port)| {
            addrs.iter().any(|e| e["ip"] == ip.to_string() && e["port"] == *port && e["dpid"] == DPID)
        })
    });
    assert!(ok, "the Tracker did not learn both hosts: {tr:#}");

    // The first SYN from A to B: decided (allow-all), forward and reverse flows in table 3.
    let syn = build::tcp_syn(A_MAC, B_MAC, A.into(), B.into(), 40000, 8080);
    let to_b = frames_with(&ovs, 2, |k| k.ip_proto == 6);
    inject(&ovs, 1, &[syn]);
    let ok = wait_until(Duration::from_secs(5), || frames_with(&ovs, 2, |k| k.ip_proto == 6) > to_b);
    assert!(ok, "the SYN did not leave port 2:\n{}", d.stderr());
    let fwd = format!(
        "table=3, idle_timeout=300, priority=100,tcp,nw_src={A},nw_dst={B},tp_src=40000,tp_dst=8080 actions=ct(commit,zone=1),set_field:{B_MAC}->eth_dst,output:2"
    );
    let rev = format!(
        "table=3, idle_timeout=300, priority=100,tcp,nw_src={B},nw_dst={A},tp_src=8080,tp_dst=40000 actions=ct(commit,zone=1),set_field:{A_MAC}->eth_dst,output:1"
    );
    let mut flows = Vec::new();
    let ok = wait_until(Duration::from_secs(3), || {
        flows = ovs.flows("br0");
        [&fwd, &rev].iter().all(|w| flows.iter().any(|f| f.ends_with(w.as_str())))
    });
    assert!(ok, "table 3 lacks\n  {fwd}\n  {rev}\nin {flows:#?}");
    let sent = pcap_frames(&pcap_path(&ovs, 2));
    let last = sent.iter().rev().find(|f| FlowKey::extract(2, f).is_ok_and(|k| k.ip_proto == 6)).unwrap();
    let k = FlowKey::extract(2, last).unwrap();
    assert_eq!((k.eth_dst, k.ip_src, k.ip_dst, k.l4_src, k.l4_dst), (B_MAC, A.into(), B.into(), 40000, 8080));
    let ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack", "zone=1"]);
    assert!(ct.contains(&format!("src={A},dst={B},sport=40000,dport=8080")), "not committed in zone 1: {ct}");

    // The SYN-ACK: conntrack (established) and the reverse flow deliver it; no packet-in.
    let before = packet_ins(&d);
    let to_a = pcap_packet_count(&pcap_path(&ovs, 1));
    inject(&ovs, 2, &[build::tcp_syn_ack(B_MAC, A_MAC, B.into(), A.into(), 8080, 40000)]);
    let ok = wait_until(Duration::from_secs(5), || pcap_packet_count(&pcap_path(&ovs, 1)) > to_a);
    assert!(ok, "the SYN-ACK did not reach port 1");
    let k = FlowKey::extract(1, &pcap_frames(&pcap_path(&ovs, 1)).pop().unwrap()).unwrap();
    assert_eq!((k.ip_src, k.ip_dst, k.l4_src, k.l4_dst), (B.into(), A.into(), 8080, 40000));
    assert_eq!(packet_ins(&d), before, "the reply went to the controller");
}

#[test]
fn dispatch_only_when_zero_config_is_off() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(1, &["--zero-config", "false"]);
    d.attach(&ovs, "br0", false);
    let mut flows = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        flows = ovs.flows("br0");
        flows.iter().any(|f| f.contains("table=250"))
    });
    assert!(ok, "no dispatch flows: {flows:#?}\n{}", d.stderr());
    assert!(flows.iter().all(|f| !f.contains("table=3,") && !f.contains("REG0[5]")), "{flows:#?}");
}

/// `learning.max_hosts` bounds what the Tracker learns: past it, new hosts are refused and
/// counted (`shardflow_tracker_hosts_refused_total`, `/v1/tracker` stats).
#[test]
fn learned_hosts_are_bounded_and_refusals_counted() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start_with_config_args(2, "[learning]\nmax_hosts = 1\n", &["--zero-config", "true"]);
    d.attach(&ovs, "br0", false);
    wait_pipeline(&d, 2, Duration::from_secs(10));
    inject(&ovs, 1, &[build::arp_request(A_MAC, A, B)]);
    inject(&ovs, 2, &[build::arp_reply(B_MAC, B, A_MAC, A)]);
    let ok = wait_until(Duration::from_secs(5), || d.metric_sum("shardflow_tracker_hosts_refused_total", &[]) >= 1.0);
    assert!(ok, "no refusal counted: {}", d.json("/v1/tracker"));
    let tr = d.json("/v1/tracker");
    assert_eq!(tr["stats"]["ips"], 1, "{tr:#}");
    assert!(tr["stats"]["ips_dropped"].as_u64().unwrap() >= 1, "{tr:#}");
    assert_eq!(d.metric_sum("shardflow_tracker_hosts", &[]), 1.0);
}

#[test]
fn a_host_that_never_arps_is_asked_for_and_then_decided() {
    // Warm neighbour caches (a restarted daemon, static entries): A sends its SYN to B without
    // any ARP. B is unknown: the SYN is flooded, and with it an ARP request for B on A's behalf,
    // whose reply teaches the Tracker where B is; A's retransmission is then decided.
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(1, &["--zero-config", "true"]);
    d.attach(&ovs, "br0", false);
    wait_pipeline(&d, 1, Duration::from_secs(10));

    let syn = build::tcp_syn(A_MAC, B_MAC, A.into(), B.into(), 40001, 8080);
    inject(&ovs, 1, std::slice::from_ref(&syn));
    let probe = |k: &FlowKey| k.is_arp() && k.arp_op == 1 && k.arp_spa == A && k.arp_tpa == B && k.arp_sha == A_MAC;
    let ok = wait_until(Duration::from_secs(5), || {
        frames_with(&ovs, 2, |k| k.ip_proto == 6) >= 1 && frames_with(&ovs, 2, probe) >= 1
    });
    assert!(ok, "port 2 did not get the flooded SYN and an ARP request for B:\n{}", d.stderr());
    assert!(ovs.flows("br0").iter().all(|f| !f.contains("table=3, idle_timeout")), "decided before B was known");

    // B answers the probe (to A's MAC): the reply comes to the controller, B is learned.
    inject(&ovs, 2, &[build::arp_reply(B_MAC, B, A_MAC, A)]);
    let ok = wait_until(Duration::from_secs(3), || {
        let tr = d.json("/v1/tracker");
        tr["addresses"].as_array().is_some_and(|a| a.iter().any(|e| e["ip"] == B.to_string() && e["port"] == 2))
    });
    assert!(ok, "B was not learned from its ARP reply:\n{}", d.stderr());

    // A retransmits its SYN: now decided, forward and reverse flows in table 3.
    inject(&ovs, 1, &[syn]);
    let fwd = format!("tcp,nw_src={A},nw_dst={B},tp_src=40001,tp_dst=8080 actions=ct(commit,zone=1),set_field:{B_MAC}->eth_dst,output:2");
    let mut flows = Vec::new();
    let ok = wait_until(Duration::from_secs(5), || {
        flows = ovs.flows("br0");
        flows.iter().any(|f| f.ends_with(fwd.as_str()))
    });
    assert!(ok, "the retransmitted SYN was not decided: {flows:#?}\n{}", d.stderr());
}
