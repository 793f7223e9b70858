//! The default pipeline (`pipeline::default`) on a real Open vSwitch 3.1 (private sandbox per
//! test): installed flows equal the generator's and docs/pipeline.md's exactly; TCP/UDP/SCTP from
//! the uplink learn their return flows into table 6 and the pod's reply follows them out of the
//! uplink; pod-to-pod traffic is tracked in the pod zone; the gateway ARP responder answers.
//!
//! The configuration is the example of docs/pipeline.md (its ```toml block), so the doc cannot go
//! stale: uplink = port 1, pod A = port 2, gateway = port 3, pod B = port 4, tunnel = port 5.
//! The IPv6 tests use the doc's second example (```toml ipv6, its extra flows in ```flows ipv6):
//! IPv6 pod-to-pod through conntrack to the policy table, IPv6 learned return flows, neighbour
//! discovery switched, and the ARP controller mode.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use shardflow::packet::{build, MacAddr};
use shardflow::pipeline::default::{flow_texts, generate, learned_cookie, meter_texts, ArpMode, PipelineConfig};
use support::pipeline_env::{add_dummy_ports, mac, pcap_frames, pcap_path};
use support::{repo, wait_until, Ovs};

const GENERATION: u16 = 1;
const REMOTE_MAC: &str = "02:00:00:00:00:aa";
const NODE_MAC: &str = "02:00:00:00:00:01";
const REMOTE_IP: &str = "192.168.0.10";
const POD_A_MAC: &str = "0a:58:0a:f4:01:02";
const POD_A_IP: &str = "10.244.1.2";
const POD_B_IP: &str = "10.244.1.4";
const GW_MAC: &str = "02:00:0a:f4:01:01";

// === the doc ===

fn doc() -> String {
    std::fs::read_to_string(repo().join("docs/pipeline.md")).unwrap()
}

/// The body of the first fenced block opened with "```LANG".
fn fenced(doc: &str, lang: &str) -> String {
    let open = format!("```{lang}\n");
    let start = doc.find(&open).unwrap_or_else(|| panic!("docs/pipeline.md has no ```{lang} block")) + open.len();
    let end = doc[start..].find("```").unwrap() + start;
    doc[start..end].to_string()
}

/// The example configuration and shard count of docs/pipeline.md.
fn example() -> (PipelineConfig, usize) {
    example_of("toml")
}

/// The IPv6 example of docs/pipeline.md (the ```toml ipv6 block).
fn example6() -> (PipelineConfig, usize) {
    example_of("toml ipv6")
}

fn example_of(block: &str) -> (PipelineConfig, usize) {
    let t: toml::Table = toml::from_str(&fenced(&doc(), block)).unwrap();
    let shards = t["shards"]["count"].as_integer().unwrap() as usize;
    let cfg: PipelineConfig = t["pipeline"].clone().try_into().unwrap();
    cfg.validate().unwrap();
    (cfg, shards)
}

/// The generator's flows in `dump-flows --no-stats` form, ordered by table, priority (high
/// first), then text: the order of the doc's block.
fn expected() -> Vec<String> {
    let (cfg, shards) = example();
    expected_for(&cfg, shards)
}

fn expected_for(cfg: &PipelineConfig, shards: usize) -> Vec<String> {
    let flows = generate(cfg, shards, GENERATION).unwrap();
    let mut v: Vec<(u8, std::cmp::Reverse<u16>, String)> =
        flows.iter().map(|f| (f.table_id, std::cmp::Reverse(f.priority), f.to_flow_text())).collect();
    v.sort();
    v.into_iter().map(|(_, _, t)| t).collect()
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
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

#[test]
fn doc_flows_are_the_generators() {
    let want = expected();
    let doc_flows: Vec<String> = fenced(&doc(), "flows").lines().map(str::to_string).collect();
    assert!(
        doc_flows == want,
        "docs/pipeline.md's ```flows block is stale:\n{}\nthe block should read:\n{}",
        diff("doc", &doc_flows, "generator", &want),
        want.join("\n")
    );
}

// === OVS ===

/// A sandbox with the example's ports (1-5, each with a tx pcap) and the pipeline installed
/// with `ovs-ofctl add-flows`.
fn setup() -> Ovs {
    let (cfg, shards) = example();
    setup_with(&cfg, shards)
}

/// [`setup`] with another configuration (same ports).
fn setup_with(cfg: &PipelineConfig, shards: usize) -> Ovs {
    let ovs = Ovs::start(&["br0"]);
    add_dummy_ports(&ovs, &[3, 4, 5]);
    let file = ovs.path("pipeline.flows");
    std::fs::write(&file, flow_texts(cfg, shards, GENERATION).join("\n") + "\n").unwrap();
    // The packet-in meters the flows name come first (OVS refuses a flow with an unknown meter).
    for m in meter_texts(cfg) {
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-meter", "br0", &m]);
    }
    ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flows", "br0", file.to_str().unwrap()]);
    ovs
}

/// Waits for a new frame on `port` after `before` frames and returns it.
fn next_frame(ovs: &Ovs, port: u32, before: usize) -> Vec<u8> {
    let path = pcap_path(ovs, port);
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            got = pcap_frames(&path);
            got.len() > before
        }),
        "nothing left port {port}"
    );
    got.pop().unwrap()
}

fn receive(ovs: &Ovs, port: &str, packet: &str) {
    ovs.ok("ovs-appctl", &["netdev-dummy/receive", port, packet]);
}

/// The datapath port number of OpenFlow port `of_port` (what `Datapath actions:` print).
fn dp_port(ovs: &Ovs, of_port: u32) -> u32 {
    let show = ovs.ok("ovs-appctl", &["dpif/show"]);
    let token = format!(" {of_port}/");
    show.lines()
        .find_map(|l| l.find(&token).map(|i| &l[i + token.len()..]))
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("port {of_port} not in dpif/show:\n{show}"))
}

fn trace(ovs: &Ovs, flow: &str) -> String {
    ovs.ok("ovs-appctl", &["ofproto/trace", "br0", flow])
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

#[test]
fn installed_flows_equal_generator_and_doc() {
    let ovs = setup();
    let dumped = ovs.flows("br0");
    let want = sorted(&expected());
    assert!(dumped == want, "dump-flows differs from the generator:\n{}", diff("OVS", &dumped, "generator", &want));
    let doc_flows: Vec<String> = fenced(&doc(), "flows").lines().map(str::to_string).collect();
    assert_eq!(sorted(&doc_flows), dumped, "docs/pipeline.md's flows differ from what OVS shows");
}

#[test]
fn uplink_traffic_learns_return_flows_and_the_reply_follows_them() {
    let ovs = setup();
    let l4 = [
        ("tcp", 6u8, "tcp(src=40000,dst=80),tcp_flags(syn)", "tp_src=80,tp_dst=40000"),
        ("udp", 17, "udp(src=5353,dst=53)", "tp_src=53,tp_dst=5353"),
        ("sctp", 132, "sctp(src=3868,dst=3869)", "tp_src=3869,tp_dst=3868"),
    ];
    // The trace of a SYN from the uplink: classifier -> 4 -> 15 (learn) -> 5 -> pod A.
    let t = trace(
        &ovs,
        &format!("tcp,in_port=1,dl_src={REMOTE_MAC},dl_dst={NODE_MAC},nw_src={REMOTE_IP},nw_dst={POD_A_IP},tp_src=40000,tp_dst=80,tcp_flags=0x002"),
    );
    for step in [
        "goto_table:4",
        " 4. tcp",
        "goto_table:15",
        "15. tcp",
        "learn(table=6",
        "resubmit(,5)",
        " 5. ip,nw_dst=10.244.1.2",
    ] {
        assert!(t.contains(step), "trace lacks {step:?}:\n{t}");
    }
    assert!(t.contains(&format!("Datapath actions: set(eth(dst={POD_A_MAC})),{}", dp_port(&ovs, 2))), "{t}");

    for (i, (kw, proto, l4key, reply_ports)) in l4.iter().enumerate() {
        let before = pcap_frames(&pcap_path(&ovs, 2)).len();
        receive(
            &ovs,
            "br0-p1",
            &format!(
                "in_port(1),eth(src={REMOTE_MAC},dst={NODE_MAC}),eth_type(0x0800),ipv4(src={REMOTE_IP},dst={POD_A_IP},proto={proto},tos=0,ttl=64,frag=no),{l4key}"
            ),
        );
        // Delivered to pod A with its MAC.
        let f = next_frame(&ovs, 2, before);
        assert_eq!(mac(&f[0..6]), POD_A_MAC, "{kw}");
        // Learned into table 6: the return direction, MACs swapped, out of the uplink.
        let want = format!(
            " cookie={:#x}, table=6, idle_timeout=60, priority=100,{kw},nw_src={POD_A_IP},nw_dst={REMOTE_IP},{reply_ports} actions=load:0x{}->NXM_OF_ETH_DST[],load:0x{}->NXM_OF_ETH_SRC[],load:0->NXM_NX_TUN_IPV4_DST[],output:1",
            learned_cookie(GENERATION, *proto),
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
        assert_eq!(t6.len(), i + 2, "one learned flow per protocol plus the miss: {t6:?}");
    }

    // The pod's reply takes the learned flow: out of the uplink, MACs swapped, no conntrack.
    let t = trace(
        &ovs,
        &format!("tcp,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},nw_src={POD_A_IP},nw_dst={REMOTE_IP},tp_src=80,tp_dst=40000,tcp_flags=0x012"),
    );
    assert!(t.contains(" 6. tcp,nw_src=10.244.1.2,nw_dst=192.168.0.10,tp_src=80,tp_dst=40000, priority 100"), "{t}");
    assert!(!t.contains("ct("), "the reply must not enter conntrack:\n{t}");
    assert!(
        t.contains(&format!("Datapath actions: set(eth(src={NODE_MAC},dst={REMOTE_MAC})),{}", dp_port(&ovs, 1))),
        "{t}"
    );
    for (kw, proto, _, reply) in l4 {
        let before = pcap_frames(&pcap_path(&ovs, 1)).len();
        let l4reply = match kw {
            "tcp" => "tcp(src=80,dst=40000),tcp_flags(syn|ack)".to_string(),
            "udp" => "udp(src=53,dst=5353)".to_string(),
            _ => "sctp(src=3869,dst=3868)".to_string(),
        };
        receive(
            &ovs,
            "br0-p2",
            &format!(
                "in_port(2),eth(src={POD_A_MAC},dst={GW_MAC}),eth_type(0x0800),ipv4(src={POD_A_IP},dst={REMOTE_IP},proto={proto},tos=0,ttl=64,frag=no),{l4reply}"
            ),
        );
        let f = next_frame(&ovs, 1, before);
        assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (REMOTE_MAC.to_string(), NODE_MAC.to_string()), "{kw} {reply}");
        assert_eq!(f[23], proto, "{kw}");
    }
    // Nothing of this went through conntrack.
    let ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"]);
    assert!(!ct.contains(REMOTE_IP), "{ct}");
}

#[test]
fn tunnel_traffic_is_marked_and_learns_tun_dst() {
    let ovs = setup();
    // `-generate` makes the trace's side effects (the learn) real; dummy ports carry no tunnel
    // metadata, so the tunnel source comes from the traced flow.
    let t = ovs.ok(
        "ovs-appctl",
        &[
            "ofproto/trace",
            "br0",
            &format!("udp,in_port=5,tun_src=192.168.100.2,tun_dst=192.168.100.1,dl_src={REMOTE_MAC},dl_dst={NODE_MAC},nw_src={REMOTE_IP},nw_dst={POD_A_IP},udp_src=4000,udp_dst=53"),
            "-generate",
        ],
    );
    for step in
        ["load:0x1->NXM_NX_REG0[1]", "15. udp", "learn(table=6", "Final flow: udp,reg0=0x2,tun_src=192.168.100.2"]
    {
        assert!(t.contains(step), "trace lacks {step:?}:\n{t}");
    }
    assert!(!t.contains("learn action ignored"), "{t}");
    assert!(t.contains(&format!("Datapath actions: set(eth(dst={POD_A_MAC})),{}", dp_port(&ovs, 2))), "{t}");
    let want = format!(
        " cookie={:#x}, table=6, idle_timeout=60, priority=100,udp,nw_src={POD_A_IP},nw_dst={REMOTE_IP},tp_src=53,tp_dst=4000 actions=load:0x200000000aa->NXM_OF_ETH_DST[],load:0x20000000001->NXM_OF_ETH_SRC[],load:0xc0a86402->NXM_NX_TUN_IPV4_DST[],output:5",
        learned_cookie(GENERATION, 17)
    );
    let mut t6 = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            t6 = table(&ovs, 6);
            t6.contains(&want)
        }),
        "table 6 lacks\n{want}\nit has:\n{}",
        t6.join("\n")
    );
    // The reply goes back into the tunnel, to the peer node.
    let t = trace(&ovs, &format!("udp,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},nw_src={POD_A_IP},nw_dst={REMOTE_IP},udp_src=53,udp_dst=4000"));
    assert!(t.contains("output:5") && t.contains("tun_dst=192.168.100.2"), "{t}");
}

#[test]
fn pod_to_pod_syn_is_tracked_in_the_pod_zone() {
    let ovs = setup();
    let syn = format!(
        "in_port(2),eth(src={POD_A_MAC},dst={GW_MAC}),eth_type(0x0800),ipv4(src={POD_A_IP},dst={POD_B_IP},proto=6,tos=0,ttl=64,frag=no),tcp(src=33333,dst=8080),tcp_flags(syn)"
    );
    // With the policy table empty, a new connection ends in a packet-in to a shard.
    let t = ovs.ok(
        "ovs-appctl",
        &[
            "ofproto/trace",
            "br0",
            &format!("tcp,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},nw_src={POD_A_IP},nw_dst={POD_B_IP},tp_src=33333,tp_dst=8080,tcp_flags=0x002"),
            "--ct-next",
            "trk,new",
        ],
    );
    for step in [
        " 6. priority 0",
        "resubmit(,1)",
        "ct(table=2,zone=1)",
        " 2. ct_state=+new-inv+trk",
        " 3. priority 0",
        "multipath(",
        "250. reg15=",
    ] {
        assert!(t.contains(step), "trace lacks {step:?}:\n{t}");
    }
    assert!(t.contains("controller(id="), "{t}");

    // As the policy would: commit in the pod zone and forward.
    ovs.ok(
        "ovs-ofctl",
        &["-O", "OpenFlow13", "add-flow", "br0", "table=3,priority=100,tcp,actions=ct(commit,zone=1),resubmit(,5)"],
    );
    let before = pcap_frames(&pcap_path(&ovs, 4)).len();
    receive(&ovs, "br0-p2", &syn);
    let f = next_frame(&ovs, 4, before);
    assert_eq!(mac(&f[0..6]), "0a:58:0a:f4:01:04");
    let mut ct = String::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"]);
            ct.contains("orig=(src=10.244.1.2,dst=10.244.1.4,sport=33333,dport=8080)")
        }),
        "no conntrack entry: {ct}"
    );
    let line = ct.lines().find(|l| l.contains("sport=33333")).unwrap();
    assert!(line.contains("zone=1") && line.contains("SYN_SENT"), "{line}");

    // A spoofed source from pod A's port is dropped in table 0.
    let t = trace(&ovs, &format!("tcp,in_port=2,dl_src={POD_A_MAC},nw_src=10.244.1.99,nw_dst={POD_B_IP},tp_dst=80"));
    assert!(t.contains("priority 40") && t.contains("Datapath actions: drop"), "{t}");
}

#[test]
fn gateway_arp_is_answered() {
    let ovs = setup();
    let asker = "0a:58:0a:f4:01:04";
    let t = trace(
        &ovs,
        &format!("arp,in_port=4,dl_src={asker},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={POD_B_IP},arp_tpa=10.244.1.1,arp_sha={asker}"),
    );
    assert!(t.contains("20. arp,arp_tpa=10.244.1.1,arp_op=1, priority 100"), "{t}");
    assert!(
        t.contains(&format!(
            "Datapath actions: set(eth(src={GW_MAC},dst={asker})),set(arp(sip=10.244.1.1,tip={POD_B_IP},op=2,sha={GW_MAC},tha={asker})),{}",
            dp_port(&ovs, 4)
        )),
        "{t}"
    );
    // A real request gets a real reply on the asking port.
    let before = pcap_frames(&pcap_path(&ovs, 4)).len();
    receive(
        &ovs,
        "p4",
        &format!("in_port(4),eth(src={asker},dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),arp(sip={POD_B_IP},tip=10.244.1.1,op=1,sha={asker},tha=00:00:00:00:00:00)"),
    );
    let f = next_frame(&ovs, 4, before);
    assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (asker.to_string(), GW_MAC.to_string()));
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), 2, "ARP reply");
    assert_eq!(mac(&f[22..28]), GW_MAC, "sender hardware address");
    // Other ARP is switched normally (a request for a pod floods, not answered).
    let t = trace(
        &ovs,
        &format!(
            "arp,in_port=4,dl_src={asker},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={POD_B_IP},arp_tpa={POD_A_IP}"
        ),
    );
    assert!(t.contains("priority 10") && t.contains("NORMAL"), "{t}");
}

// === IPv6 and the ARP controller mode (the doc's IPv6 example) ===

const POD_A_IP6: &str = "fd00:10:244:1::2";
const POD_B_IP6: &str = "fd00:10:244:1::4";
const POD_B_MAC: &str = "0a:58:0a:f4:01:04";
const REMOTE_IP6: &str = "2001:db8::10";

fn m(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn ipv6_doc_flows_are_the_generators_and_ovs() {
    let (cfg4, shards4) = example();
    let (cfg6, shards) = example6();
    assert_eq!(shards, shards4);
    // The IPv6 example is the IPv4 one plus IPv6 keys: every IPv4 flow stays as it is.
    assert_eq!(cfg6.local_pods.len(), cfg4.local_pods.len());
    let v4 = expected();
    let all = expected_for(&cfg6, shards);
    assert!(v4.iter().all(|f| all.contains(f)), "the IPv6 example changes IPv4 flows");
    let added: Vec<String> = all.iter().filter(|f| !v4.contains(f)).cloned().collect();
    let doc_flows: Vec<String> = fenced(&doc(), "flows ipv6").lines().map(str::to_string).collect();
    assert!(
        doc_flows == added,
        "docs/pipeline.md's ```flows ipv6 block is stale:\n{}\nthe block should read:\n{}",
        diff("doc", &doc_flows, "generator", &added),
        added.join("\n")
    );
    let ovs = setup_with(&cfg6, shards);
    let dumped = ovs.flows("br0");
    let want = sorted(&all);
    assert!(dumped == want, "dump-flows differs from the generator:\n{}", diff("OVS", &dumped, "generator", &want));
}

#[test]
fn ipv6_pod_to_pod_syn_is_tracked_in_the_pod_zone() {
    let (cfg, shards) = example6();
    let ovs = setup_with(&cfg, shards);
    // With the policy table empty, a new IPv6 connection ends in a packet-in to a shard.
    let t = ovs.ok(
        "ovs-appctl",
        &[
            "ofproto/trace",
            "br0",
            &format!("tcp6,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},ipv6_src={POD_A_IP6},ipv6_dst={POD_B_IP6},tp_src=33333,tp_dst=8080,tcp_flags=0x002"),
            "--ct-next",
            "trk,new",
        ],
    );
    for step in [
        &format!("0. ipv6,in_port=2,dl_src={POD_A_MAC},ipv6_src={POD_A_IP6}, priority 50")[..],
        " 6. priority 0",
        "resubmit(,1)",
        " 1. ipv6, priority 100",
        "ct(table=2,zone=1)",
        " 2. ct_state=+new-inv+trk",
        " 3. priority 0",
        "multipath(",
        "250. reg15=",
        "controller(id=",
    ] {
        assert!(t.contains(step), "trace lacks {step:?}:\n{t}");
    }

    // As the policy would (policy::decide's IPv6 form): commit in the pod zone and deliver.
    ovs.ok(
        "ovs-ofctl",
        &[
            "-O",
            "OpenFlow13",
            "add-flow",
            "br0",
            &format!("table=3,priority=100,tcp6,ipv6_src={POD_A_IP6},ipv6_dst={POD_B_IP6},tp_src=33333,tp_dst=8080,actions=ct(commit,zone=1),set_field:{POD_B_MAC}->eth_dst,output:4"),
        ],
    );
    let syn =
        build::tcp_syn(m(POD_A_MAC), m(GW_MAC), POD_A_IP6.parse().unwrap(), POD_B_IP6.parse().unwrap(), 33333, 8080);
    let before = pcap_frames(&pcap_path(&ovs, 4)).len();
    receive(&ovs, "br0-p2", &hex(&syn));
    let f = next_frame(&ovs, 4, before);
    assert_eq!(mac(&f[0..6]), POD_B_MAC);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let mut ct = String::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"]);
            ct.contains(&format!("orig=(src={POD_A_IP6},dst={POD_B_IP6},sport=33333,dport=8080)"))
        }),
        "no conntrack entry: {ct}"
    );
    let line = ct.lines().find(|l| l.contains("sport=33333")).unwrap();
    assert!(line.starts_with("tcp,") && line.contains("zone=1") && line.contains("SYN_SENT"), "{line}");

    // A spoofed IPv6 source from pod A's port is dropped in table 0; so is IPv6 to a pod
    // address nobody has.
    let t = trace(
        &ovs,
        &format!("tcp6,in_port=2,dl_src={POD_A_MAC},ipv6_src=fd00:10:244:1::99,ipv6_dst={POD_B_IP6},tp_dst=80"),
    );
    assert!(t.contains("ipv6,in_port=2, priority 40") && t.contains("Datapath actions: drop"), "{t}");
    let t = trace(
        &ovs,
        &format!("udp6,in_port=1,dl_src={REMOTE_MAC},dl_dst={NODE_MAC},ipv6_src={REMOTE_IP6},ipv6_dst=fd00:10:244:1::77,udp_src=1,udp_dst=2"),
    );
    assert!(
        t.contains(" 5. ipv6,ipv6_dst=fd00:10:244:1::/64, priority 80") && t.contains("Datapath actions: drop"),
        "{t}"
    );
    // Pod IPv6 to elsewhere leaves through the gateway port (after the policy).
    ovs.ok(
        "ovs-ofctl",
        &["-O", "OpenFlow13", "add-flow", "br0", "table=3,priority=100,udp6,actions=ct(commit,zone=1),resubmit(,5)"],
    );
    let t = ovs.ok(
        "ovs-appctl",
        &[
            "ofproto/trace",
            "br0",
            &format!("udp6,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},ipv6_src={POD_A_IP6},ipv6_dst={REMOTE_IP6},udp_src=5000,udp_dst=53"),
            "--ct-next",
            "trk,new",
        ],
    );
    assert!(t.contains(" 5. ipv6,reg0=0x4/0x4, priority 10") && t.contains("output:3"), "{t}");
}

#[test]
fn ipv6_uplink_traffic_learns_return_flows_and_the_reply_follows_them() {
    let (cfg, shards) = example6();
    let ovs = setup_with(&cfg, shards);
    let syn =
        build::tcp_syn(m(REMOTE_MAC), m(NODE_MAC), REMOTE_IP6.parse().unwrap(), POD_A_IP6.parse().unwrap(), 40000, 80);
    let before = pcap_frames(&pcap_path(&ovs, 2)).len();
    receive(&ovs, "br0-p1", &hex(&syn));
    let f = next_frame(&ovs, 2, before);
    assert_eq!(mac(&f[0..6]), POD_A_MAC);
    let want = format!(
        " cookie={:#x}, table=6, idle_timeout=60, priority=100,tcp6,ipv6_src={POD_A_IP6},ipv6_dst={REMOTE_IP6},tp_src=80,tp_dst=40000 actions=load:0x{}->NXM_OF_ETH_DST[],load:0x{}->NXM_OF_ETH_SRC[],load:0->NXM_NX_TUN_IPV4_DST[],output:1",
        learned_cookie(GENERATION, 6),
        REMOTE_MAC.replace(':', "").trim_start_matches('0'),
        NODE_MAC.replace(':', "").trim_start_matches('0'),
    );
    let mut t6 = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            t6 = table(&ovs, 6);
            t6.contains(&want)
        }),
        "table 6 lacks\n{want}\nit has:\n{}",
        t6.join("\n")
    );
    // The pod's SYN-ACK takes the learned flow: out of the uplink, MACs swapped, no conntrack.
    let t = trace(
        &ovs,
        &format!("tcp6,in_port=2,dl_src={POD_A_MAC},dl_dst={GW_MAC},ipv6_src={POD_A_IP6},ipv6_dst={REMOTE_IP6},tp_src=80,tp_dst=40000,tcp_flags=0x012"),
    );
    assert!(
        t.contains(" 6. tcp6,ipv6_src=fd00:10:244:1::2,ipv6_dst=2001:db8::10,tp_src=80,tp_dst=40000, priority 100"),
        "{t}"
    );
    assert!(!t.contains("ct("), "the reply must not enter conntrack:\n{t}");
    let reply =
        build::tcp_syn_ack(m(POD_A_MAC), m(GW_MAC), POD_A_IP6.parse().unwrap(), REMOTE_IP6.parse().unwrap(), 80, 40000);
    let before = pcap_frames(&pcap_path(&ovs, 1)).len();
    receive(&ovs, "br0-p2", &hex(&reply));
    let f = next_frame(&ovs, 1, before);
    assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (REMOTE_MAC.to_string(), NODE_MAC.to_string()));
    assert_eq!((&f[12..14], f[20]), (&[0x86, 0xdd][..], 6), "an IPv6 TCP segment");
    let ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"]);
    assert!(!ct.contains(REMOTE_IP6), "{ct}");
}

#[test]
fn ipv6_neighbour_discovery_is_switched_not_tracked() {
    let (cfg, shards) = example6();
    let ovs = setup_with(&cfg, shards);
    // Pod A asks for pod B's address: the solicitation floods (NORMAL), never meets conntrack.
    let ns = build::nd_solicit(m(POD_A_MAC), POD_A_IP6.parse().unwrap(), POD_B_IP6.parse().unwrap());
    let t = trace(
        &ovs,
        &format!("icmp6,in_port=2,dl_src={POD_A_MAC},dl_dst=33:33:ff:00:00:04,ipv6_src={POD_A_IP6},ipv6_dst=ff02::1:ff00:4,icmpv6_type=135,icmpv6_code=0,nd_target={POD_B_IP6}"),
    );
    assert!(t.contains("icmp6,in_port=2,icmp_type=135, priority 300") && t.contains("NORMAL"), "{t}");
    assert!(!t.contains("ct("), "{t}");
    let before = pcap_frames(&pcap_path(&ovs, 4)).len();
    let before_gw = pcap_frames(&pcap_path(&ovs, 3)).len();
    receive(&ovs, "br0-p2", &hex(&ns));
    let f = next_frame(&ovs, 4, before);
    assert_eq!(f, ns, "pod B gets the solicitation as sent");
    next_frame(&ovs, 3, before_gw);
    // Pod B's advertisement goes back to pod A (NORMAL learned A's MAC from the solicitation).
    let na = build::nd_advert(m(POD_B_MAC), POD_B_IP6.parse().unwrap(), m(POD_A_MAC), POD_A_IP6.parse().unwrap());
    let before = pcap_frames(&pcap_path(&ovs, 2)).len();
    receive(&ovs, "p4", &hex(&na));
    assert_eq!(next_frame(&ovs, 2, before), na);
    // The gateway's neighbour discovery is switched too.
    let t = trace(
        &ovs,
        &format!("icmp6,in_port=3,dl_src={GW_MAC},dl_dst={POD_A_MAC},ipv6_src=fd00:10:244:1::1,ipv6_dst={POD_A_IP6},icmpv6_type=136,icmpv6_code=0,nd_target=fd00:10:244:1::1"),
    );
    assert!(t.contains("icmp6,in_port=3,icmp_type=136, priority 300") && t.contains("NORMAL"), "{t}");
    let ct = ovs.ok("ovs-appctl", &["dpctl/dump-conntrack"]);
    assert!(!ct.contains("fd00:10:244:1::"), "{ct}");
}

#[test]
fn arp_controller_mode_sends_requests_to_the_dispatch() {
    let (mut cfg, shards) = example6();
    cfg.arp = ArpMode::Controller;
    let ovs = setup_with(&cfg, shards);
    assert_eq!(ovs.flows("br0"), sorted(&expected_for(&cfg, shards)));
    let asker = POD_B_MAC;
    // A request for a pod's address: the packet-in dispatch (multipath, table 250).
    let t = trace(
        &ovs,
        &format!("arp,in_port=4,dl_src={asker},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={POD_B_IP},arp_tpa={POD_A_IP},arp_sha={asker}"),
    );
    for step in ["20. arp,arp_op=1, priority 50", "multipath(", "250. reg15=", "controller(id="] {
        assert!(t.contains(step), "trace lacks {step:?}:\n{t}");
    }
    assert!(!t.contains("NORMAL"), "{t}");
    // The gateway's address is still answered by flows.
    let t = trace(
        &ovs,
        &format!("arp,in_port=4,dl_src={asker},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={POD_B_IP},arp_tpa=10.244.1.1,arp_sha={asker}"),
    );
    assert!(t.contains("20. arp,arp_tpa=10.244.1.1,arp_op=1, priority 100"), "{t}");
    let before = pcap_frames(&pcap_path(&ovs, 4)).len();
    let req = build::arp_request(m(asker), POD_B_IP.parse().unwrap(), "10.244.1.1".parse().unwrap());
    receive(&ovs, "p4", &hex(&req));
    let f = next_frame(&ovs, 4, before);
    assert_eq!((mac(&f[0..6]), mac(&f[6..12])), (asker.to_string(), GW_MAC.to_string()));
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), 2, "ARP reply");
    // Replies are switched.
    let t = trace(
        &ovs,
        &format!("arp,in_port=2,dl_src={POD_A_MAC},dl_dst={asker},arp_op=2,arp_spa={POD_A_IP},arp_tpa={POD_B_IP},arp_sha={POD_A_MAC},arp_tha={asker}"),
    );
    assert!(t.contains("20. arp,arp_op=2, priority 10") && t.contains("NORMAL"), "{t}");
}
