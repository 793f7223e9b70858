//! The offload verdict of OpenFlow flows under both built-in profiles: a table of flows in
//! `ovs-ofctl` text (parsed and checked by our codec as OVS would), each with the exact line
//! `shardflow offload check` prints for `tc-flower` and for `connectx`. The reasons are the
//! profiles' cited facts (src/offload/profiles/*.toml) applied to the datapath flow OVS would make
//! of the flow alone (src/offload/lower.rs says what one flow cannot tell).
#![allow(clippy::unwrap_used)]

use shardflow::offload::{check_flow, Profile};
use shardflow::openflow::flow::{FlowMod, FlowModCommand};

/// (flow, tc-flower verdict, connectx verdict).
const CASES: &[(&str, &str, &str)] = &[
    // The default pipeline's own flows (docs/pipeline.md's example), each judged alone.
    (
        r#"priority=300,arp actions=goto_table:20"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"priority=200,ip,in_port=1 actions=load:0x1->NXM_NX_REG0[0],goto_table:4"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"priority=90,ip,nw_dst=10.96.0.0/12 actions=meter:1,multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG15[0..15]),resubmit(,250)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"priority=50,ip,in_port=2,dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.2 actions=load:0x1->NXM_NX_REG0[2],goto_table:6"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"priority=40,ip,in_port=2 actions=drop"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"priority=0 actions=meter:3,multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG15[0..15]),resubmit(,250)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=1,priority=100,ip actions=ct(table=2,zone=1)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=2,priority=200,ct_state=+inv+trk actions=drop"#,
        "offloadable",
        "not offloadable: ct_state +inv not matchable",
    ),
    (
        r#"table=2,priority=150,ct_state=+est-inv+trk actions=goto_table:5"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=2,priority=140,ct_state=+rel-inv+trk actions=goto_table:5"#,
        "offloadable",
        "not offloadable: ct_state +rel not matchable",
    ),
    (
        r#"table=2,priority=100,ct_state=+new-inv+trk actions=goto_table:3"#,
        "offloadable",
        "not offloadable: ct_state +new not matchable",
    ),
    (
        r#"table=4,priority=100,tcp actions=goto_table:15"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=5,priority=100,ip,nw_dst=10.244.1.2 actions=set_field:0a:58:0a:f4:01:02->eth_dst,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=5,priority=80,ip,nw_dst=10.244.1.0/24 actions=drop"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=5,priority=10,ip,reg0=0x4/0x4 actions=output:3"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=6,priority=0 actions=resubmit(,1)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=15,priority=100,tcp actions=learn(table=6,idle_timeout=60,priority=100,cookie=0x1040680000006,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],NXM_OF_TCP_SRC[]=NXM_OF_TCP_DST[],NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],load:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[],load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],output:NXM_OF_IN_PORT[]),resubmit(,5)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=20,priority=100,arp,arp_tpa=10.244.1.1,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:00:0a:f4:01:01->eth_src,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:02:00:0a:f4:01:01->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:10.244.1.1->arp_spa,IN_PORT"#,
        "not offloadable: rewrite of arp_op unsupported; rewrite of arp_tha unsupported; rewrite of arp_sha unsupported; rewrite of arp_tpa unsupported; rewrite of arp_spa unsupported",
        "not offloadable: field arp_op not matchable; field arp_tpa not matchable; field arp_sha not matchable; field arp_spa not matchable; rewrite of arp_op unsupported; rewrite of arp_tha unsupported; rewrite of arp_sha unsupported; rewrite of arp_tpa unsupported; rewrite of arp_spa unsupported",
    ),
    (
        r#"table=20,priority=10,arp actions=NORMAL"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=250,priority=10,reg15=0 actions=controller(id=1)"#,
        "not offloadable: controller is a slow-path action",
        "not offloadable: controller is a slow-path action",
    ),
    // Decided connection flows (allow, service DNAT, deny) and a learned return flow.
    (
        r#"table=3,priority=100,idle_timeout=60,tcp,in_port=2,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_src=40000,tp_dst=80 actions=ct(commit,zone=1),resubmit(,5)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=0,priority=150,tcp,nw_src=10.244.1.2,nw_dst=10.96.0.10,tp_src=40001,tp_dst=80 actions=ct(commit,zone=2,nat(dst=10.244.1.4:8080),table=5)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=3,priority=100,idle_timeout=10,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.4,tp_dst=22 actions=drop"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"table=6,priority=100,idle_timeout=60,tcp,nw_src=10.1.0.9,nw_dst=10.244.1.2,tp_src=80,tp_dst=40000 actions=set_field:0a:58:0a:f4:01:02->eth_dst,set_field:02:00:0a:f4:01:01->eth_src,set_field:10.0.0.7->tun_dst,output:5"#,
        "offloadable",
        "offloadable",
    ),
    // learn, controller, note, conntrack (zones, NAT, ALG, mark/label), VLANs, rewrites, tunnels,
    // masks, meters, groups, fields and actions outside the profiles.
    (
        r#"ip actions=learn(table=6,eth_type=0x800,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],output:NXM_OF_IN_PORT[])"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=controller"#,
        "not offloadable: controller is a slow-path action",
        "not offloadable: controller is a slow-path action",
    ),
    (
        r#"ip actions=note:01.02,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=ct(commit,zone=5,nat(src=10.0.0.1-10.0.0.10:1024-65535)),output:3"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=ct(zone=2,nat,table=7)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tcp,tp_dst=21 actions=ct(commit,alg=ftp,zone=1),output:2"#,
        "not offloadable: ct alg unsupported",
        "not offloadable: ct alg unsupported",
    ),
    (
        r#"ip actions=ct(commit,zone=NXM_NX_REG4[0..15]),output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=ct(commit,zone=3,exec(set_field:0x1->ct_mark)),output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=ct(commit,zone=3,exec(set_field:0x1->ct_label)),output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ct_state=+trk,ct_zone=5,ct_mark=0x1/0x1,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"in_port=1 actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"dl_vlan=100 actions=strip_vlan,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"vlan_tci=0x1000/0x1000 actions=output:2"#,
        "not offloadable: mask on vlan_vid unsupported (arbitrary, exact at most)",
        "not offloadable: mask on vlan_vid unsupported (arbitrary, exact at most)",
    ),
    (
        r#"ip actions=set_field:10.0.0.9->nw_dst,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tcp actions=mod_tp_dst:8080,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"udp actions=set_field:53->udp_dst,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"sctp actions=set_field:99->sctp_dst,output:2"#,
        "not offloadable: rewrite of sctp_dst unsupported",
        "not offloadable: rewrite of sctp_dst unsupported",
    ),
    (
        r#"ip actions=mod_nw_tos:16,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ipv6 actions=set_field:fd00::1->ipv6_src,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"icmp actions=set_field:3->icmp_type,output:2"#,
        "not offloadable: rewrite of icmp_type unsupported",
        "not offloadable: rewrite of icmp_type unsupported",
    ),
    (
        r#"ip actions=set_field:0x5->pkt_mark,output:2"#,
        "not offloadable: rewrite of pkt_mark unsupported",
        "not offloadable: rewrite of pkt_mark unsupported",
    ),
    (
        r#"ip actions=load:0x1->NXM_NX_REG1[],output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=mod_nw_ttl:9,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=dec_ttl,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"arp actions=set_field:1->arp_op,output:2"#,
        "not offloadable: rewrite of arp_op unsupported",
        "not offloadable: rewrite of arp_op unsupported",
    ),
    (
        r#"ip actions=load:0x1->NXM_OF_ETH_SRC[0..7],output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=load:0x1->NXM_NX_IP_TTL[0..3],output:2"#,
        "offloadable",
        "not offloadable: masked rewrite of ip_ttl unsupported",
    ),
    (
        r#"ip actions=set_field:10.0.0.5->tun_dst,set_field:0x64->tun_id,output:5"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tun_id=0x64,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tun_src=10.1.0.0/16,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=set_field:fd00::5->tun_ipv6_dst,output:5"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tun_id=0x10/0xf0,ip actions=output:2"#,
        "not offloadable: mask on tun_id unsupported (arbitrary, exact at most)",
        "not offloadable: mask on tun_id unsupported (arbitrary, exact at most)",
    ),
    (
        r#"ip,nw_src=10.0.0.0/255.0.255.0 actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tcp,tp_dst=0x1000/0xf000 actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"sctp,tp_dst=5000 actions=output:2"#,
        "offloadable",
        "not offloadable: field sctp_dst not matchable",
    ),
    (
        r#"ip actions=meter:2,output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=group:1"#,
        "not offloadable: action group unsupported",
        "not offloadable: action group unsupported",
    ),
    (
        r#"ipv6,ipv6_label=0x12345 actions=output:2"#,
        "not offloadable: field ipv6_label not matchable",
        "not offloadable: field ipv6_label not matchable",
    ),
    (
        r#"icmp6,icmp_type=135,nd_target=fd00::1 actions=NORMAL"#,
        "not offloadable: field nd_target not matchable",
        "not offloadable: field nd_target not matchable",
    ),
    (
        r#"pkt_mark=0x1,ip actions=output:2"#,
        "not offloadable: field pkt_mark not matchable",
        "not offloadable: field pkt_mark not matchable",
    ),
    (
        r#"ip,ct_state=+est+trk,ct_nw_src=10.0.0.1 actions=output:2"#,
        "not offloadable: field ct_tuple not matchable",
        "not offloadable: field ct_tuple not matchable",
    ),
    (
        r#"tcp actions=fin_timeout(idle_timeout=10),output:2"#,
        "not offloadable: fin_timeout is userspace-only",
        "not offloadable: fin_timeout is userspace-only",
    ),
    (
        r#"ip actions=clone(output:3),output:2"#,
        "not offloadable: action clone unsupported",
        "not offloadable: action clone unsupported",
    ),
    (
        r#"ip actions=sample(probability=100,collector_set_id=1),output:2"#,
        "not offloadable: action sample unsupported",
        "not offloadable: action sample unsupported",
    ),
    (
        r#"ip actions=output(port=2,max_len=100)"#,
        "not offloadable: action truncate unsupported",
        "not offloadable: action truncate unsupported",
    ),
    (
        r#"ip actions=set_queue:1,output:2"#,
        "not offloadable: action set_queue unsupported",
        "not offloadable: action set_queue unsupported",
    ),
    (
        r#"ip actions=check_pkt_larger(1500)->NXM_NX_REG0[0],resubmit(,1)"#,
        "offloadable",
        "not offloadable: action check_pkt_len unsupported",
    ),
    (
        r#"ip actions=push_mpls:0x8847,output:2"#,
        "offloadable",
        "not offloadable: action push_mpls unsupported",
    ),
    (
        r#"mpls,mpls_label=5 actions=pop_mpls:0x0800,output:2"#,
        "offloadable",
        "not offloadable: field mpls_label not matchable; action pop_mpls unsupported",
    ),
    (
        r#"ct_state=+trk+snat,ip actions=output:2"#,
        "not offloadable: ct_state +snat not matchable",
        "not offloadable: ct_state +snat not matchable",
    ),
    (
        r#"arp,arp_op=1 actions=NORMAL"#,
        "offloadable",
        "not offloadable: field arp_op not matchable",
    ),
    (
        r#"ip actions=LOCAL"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip,in_port=2 actions=IN_PORT"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=output:1,output:2,output:3,output:4,output:5,output:6,output:7,output:8,output:9,output:10,output:11,output:12,output:13,output:14,output:15,output:16,output:17"#,
        "not offloadable: too many actions (17, at most 16)",
        "not offloadable: too many actions (17, at most 16)",
    ),
    (
        r#"ip actions=ct(force,commit,zone=1),output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"conj_id=7,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"icmp,icmp_type=8 actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"metadata=0x1,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"recirc_id=5,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=FLOOD"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"tcp,tcp_flags=+syn actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ct_label=0x1/0x1,ip actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ipv6,ipv6_src=fd00::/64 actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"udp,tp_src=0x100/0xff00 actions=output:2"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=write_actions(output:2)"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"ip actions=dec_ttl,goto_table:5"#,
        "offloadable",
        "offloadable",
    ),
    (
        r#"sctp,pkt_mark=0x1,tp_dst=9 actions=set_field:1->sctp_src,controller"#,
        "not offloadable: field pkt_mark not matchable; rewrite of sctp_src unsupported; controller is a slow-path action",
        "not offloadable: field sctp_dst not matchable; field pkt_mark not matchable; rewrite of sctp_src unsupported; controller is a slow-path action",
    ),
];

#[test]
fn every_flow_has_its_verdict_under_both_profiles() {
    assert!(CASES.len() >= 40, "at least 40 flows per profile");
    let tc = Profile::builtin("tc-flower").unwrap();
    let cx = Profile::builtin("connectx").unwrap();
    let mut wrong = Vec::new();
    for (flow, want_tc, want_cx) in CASES {
        let fm = FlowMod::parse(flow, FlowModCommand::Add).unwrap_or_else(|e| panic!("{flow}: {e}"));
        for (p, want) in [(&tc, want_tc), (&cx, want_cx)] {
            let got = check_flow(p, &fm).line();
            if got != *want {
                wrong.push(format!("{flow}\n  {}: want {want}\n  {}: got  {got}", p.name, p.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong verdicts:\n{}", wrong.len(), wrong.join("\n"));
}

/// connectx is modelled as a subset of tc-flower: a flow TC cannot take, the NIC cannot either,
/// and the NIC refuses more.
#[test]
fn connectx_is_stricter_than_tc_flower() {
    let tc = Profile::builtin("tc-flower").unwrap();
    let cx = Profile::builtin("connectx").unwrap();
    let (mut tc_no, mut cx_no) = (0, 0);
    for (flow, ..) in CASES {
        let fm = FlowMod::parse(flow, FlowModCommand::Add).unwrap();
        let (a, b) = (check_flow(&tc, &fm), check_flow(&cx, &fm));
        assert!(a.offloadable || !b.offloadable, "{flow}: connectx takes what tc-flower refuses");
        tc_no += usize::from(!a.offloadable);
        cx_no += usize::from(!b.offloadable);
    }
    assert!(tc_no >= 15 && cx_no > tc_no, "tc-flower refuses {tc_no}, connectx {cx_no}");
}

/// The report over docs/pipeline.md's pipeline and 20,000 decided connection flows (10,000
/// allowed pod-to-pod connections): every connection flow offloads under tc-flower, and the time
/// the report takes is printed (it runs on the REST API's blocking pool, never on a shard).
#[test]
fn report_over_many_connection_flows() {
    use shardflow::config::Config;
    use shardflow::offload::report::analyze;
    use shardflow::packet::{build, FlowKey};
    use shardflow::policy::decision::{decide, DecisionContext};
    use shardflow::policy::NetworkPolicy;
    use std::net::IpAddr;

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pipeline.md")).unwrap();
    let start = doc.find("```toml\n").unwrap() + 8;
    let end = doc[start..].find("```").unwrap() + start;
    let cfg = Config::from_toml(&doc[start..end]).unwrap();
    let p = cfg.pipeline.as_ref().unwrap();
    let mut flows = shardflow::pipeline::default::generate(p, cfg.shards.count, 1).unwrap();
    let pipeline_flows = flows.len();
    let ctx = DecisionContext::new(p, 1);
    let (a, b) = (&p.local_pods[0], &p.local_pods[1]);
    for i in 0..10_000u16 {
        let frame = build::tcp_syn(a.mac, p.gateway_mac, IpAddr::V4(a.ip), IpAddr::V4(b.ip), 20_000 + i, 80);
        let key = FlowKey::extract(a.port, &frame).unwrap();
        flows.extend(decide(&key, a.port, &NetworkPolicy::allow(), &ctx).flows);
    }
    assert_eq!(flows.len(), pipeline_flows + 20_000);
    let tc = Profile::builtin("tc-flower").unwrap();
    let t0 = std::time::Instant::now();
    let r = analyze(&tc, &flows);
    let took = t0.elapsed();
    let conn = &r.categories.iter().find(|c| c.category == "connection").unwrap().share;
    assert_eq!((conn.flows, conn.offloadable), (20_000, 20_000));
    assert_eq!(r.flows.len(), flows.len());
    eprintln!("FIGURE offload report: {} flows analysed in {:.1} ms", flows.len(), took.as_secs_f64() * 1e3);
}
