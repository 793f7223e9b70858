//! The lowering's claims about the datapath flow, checked against what a real Open vSwitch
//! makes of each flow: `ofproto/trace` prints the megaflow and the datapath actions OVS would
//! install. For each flow: `controller` is a `userspace(...)` action (the slow path) exactly when
//! the lowering says so; `ct(table=N)` is a `recirc(...)` exactly as often as the lowering counts;
//! `learn` and `note` leave no `userspace` action; the fields `learn` reads and `dec_ttl` are exact
//! in the megaflow; registers and `goto_table` leave nothing.
#![allow(clippy::unwrap_used)]

mod support;

use shardflow::offload::{lower_flow_mod, ActionReq, MatchField};
use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use support::Ovs;

/// (flow installed in table 0 (with helpers in other tables), packet to trace, megaflow must contain).
const CASES: &[(&str, &str, &str)] = &[
    ("tcp,in_port=1,actions=controller", "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1,tp_dst=80", ""),
    (
        "tcp,in_port=1,actions=learn(table=6,idle_timeout=60,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],output:NXM_OF_IN_PORT[]),output:2",
        "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1,tp_dst=80",
        "nw_src=10.0.0.1,nw_dst=10.0.0.2",
    ),
    ("udp,in_port=1,actions=note:01.02,output:2", "in_port=1,udp,nw_src=10.0.0.1,nw_dst=10.0.0.2", ""),
    ("ip,in_port=1,actions=ct(table=1,zone=5)", "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2", ""),
    ("ip,in_port=1,actions=ct(commit,zone=5),output:2", "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2", ""),
    ("ip,in_port=1,actions=dec_ttl,output:2", "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=9", "nw_ttl=9"),
    (
        "ip,in_port=1,actions=load:0x4->NXM_NX_REG0[],goto_table:3",
        "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2",
        "",
    ),
    ("ip,in_port=1,actions=resubmit(,3),controller", "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2", ""),
];

/// Helpers the flows above hand on to: table 3 outputs to port 2 when reg0 is 4.
const HELPERS: &[&str] = &["table=3,priority=10,reg0=0x4,actions=output:2", "table=3,priority=5,actions=output:2"];

/// (megaflow, datapath actions) from `ofproto/trace`.
fn trace(ovs: &Ovs, packet: &str) -> (String, String) {
    let out = ovs.ok("ovs-appctl", &["ofproto/trace", "br0", packet]);
    let line = |p: &str| out.lines().find_map(|l| l.strip_prefix(p)).map(str::to_string).unwrap_or_default();
    (line("Megaflow: "), line("Datapath actions: "))
}

#[test]
fn lowering_agrees_with_ovs_datapath_flows() {
    let ovs = Ovs::start(&["br0"]);
    let mut report = Vec::new();
    for (flow, packet, in_megaflow) in CASES {
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "del-flows", "br0"]);
        for h in HELPERS {
            ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", h]);
        }
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", flow]);
        let (megaflow, actions) = trace(&ovs, packet);
        assert!(!actions.is_empty(), "{flow}: no datapath actions traced");
        let req = lower_flow_mod(&FlowMod::parse(flow, FlowModCommand::Add).unwrap());
        let slow = req.actions.contains(&ActionReq::Controller);
        assert_eq!(actions.contains("userspace("), slow, "{flow}: datapath actions {actions}");
        assert_eq!(actions.matches("recirc(").count() as u32, req.recirculations, "{flow}: datapath actions {actions}");
        assert!(megaflow.contains(in_megaflow), "{flow}: megaflow {megaflow} lacks {in_megaflow}");
        if flow.contains("learn(") {
            assert!(req.has_match(MatchField::Ipv4Src) && req.has_match(MatchField::Ipv4Dst), "{req:?}");
        }
        if flow.contains("dec_ttl") {
            assert!(req.has_match(MatchField::IpTtl), "{req:?}");
        }
        assert!(!megaflow.contains("reg0"), "registers never reach the datapath: {megaflow}");
        report.push(format!("{flow}\n  megaflow: {megaflow}\n  actions:  {actions}"));
    }
    eprintln!("FIGURE traced datapath flows:\n{}", report.join("\n"));
}
