//! The `shardflow flow` tools against a real Open vSwitch: what shardflow encodes, OVS installs
//! as meant; what OVS holds, shardflow reads back as OVS prints it.
#![allow(clippy::unwrap_used)]

mod support;

use support::{shardflow, Ovs};

const FLOWS: &[&str] = &[
    "table=0,priority=200,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=ct(commit,zone=2,nat(dst=10.0.0.5:8080)),resubmit(,3)",
    "table=0,priority=0,ip,actions=multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG0[0..15]),resubmit(,1)",
    "table=1,priority=10,reg0=0x1,actions=controller(id=2)",
    "table=3,priority=100,cookie=0x1000000000000001,idle_timeout=300,ct_state=+new+trk,tcp,nw_src=10.0.0.1,tp_dst=8080,actions=ct(commit,zone=1),output:2",
    "table=15,priority=10,udp,actions=learn(table=6,idle_timeout=60,eth_type=0x800,nw_proto=17,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_UDP_SRC[]=NXM_OF_UDP_DST[],output:NXM_OF_IN_PORT[]),output:2",
    "table=5,priority=1,ipv6,ipv6_src=fd00::/64,actions=write_metadata:0x5/0xff,goto_table:6",
    "table=7,priority=3,arp,arp_op=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:0x2->NXM_OF_ARP_OP[],IN_PORT",
];

fn add(ovs: &Ovs, extra: &[&str], flows: &[&str]) -> std::process::Output {
    let sw = ovs.mgmt("br0");
    let mut args = vec!["flow", "add", "--switch", sw.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(flows);
    shardflow(&args)
}

#[test]
fn flows_added_by_shardflow_read_back_as_ovs_prints_them() {
    let ovs = Ovs::start(&["br0"]);
    let out = add(&ovs, &[], FLOWS);
    assert!(out.status.success(), "flow add: {}", String::from_utf8_lossy(&out.stderr));
    let installed = ovs.flows("br0");
    assert_eq!(installed.len(), FLOWS.len(), "{installed:#?}");

    // The same flows added by ovs-ofctl on a second bridge print identically.
    let ovs2 = Ovs::start(&["br0"]);
    for f in FLOWS {
        ovs2.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", f]);
    }
    assert_eq!(installed, ovs2.flows("br0"));

    // shardflow's own reading of the switch's flow stats equals ovs-ofctl dump-flows.
    let out = shardflow(&["flow", "dump", "--switch", &ovs.mgmt("br0")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ours: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    ours.sort();
    assert_eq!(ours, installed);
}

#[test]
fn a_refused_flow_is_reported_and_a_failed_bundle_applies_nothing() {
    let ovs = Ovs::start(&["br0"]);
    // group 99 does not exist: OVS refuses that FLOW_MOD with OFPBAC_BAD_OUT_GROUP.
    let bad = "table=0,priority=2,actions=group:99";
    let out = add(&ovs, &[], &["table=0,priority=1,actions=drop", bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message 2") && err.contains("OFPBAC_BAD_OUT_GROUP"), "{err}");
    assert_eq!(ovs.flows("br0").len(), 1, "the good flow of a plain batch is installed");

    let out = add(&ovs, &["--bundle"], &["table=9,priority=1,actions=drop", bad]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("OFPBFC_MSG_FAILED"));
    assert_eq!(ovs.flows("br0").len(), 1, "nothing of the failed bundle is installed");

    let out = add(&ovs, &["--bundle"], &["table=9,priority=1,actions=drop", "table=9,priority=2,actions=output:1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ovs.flows("br0").len(), 3);
}

#[test]
fn modify_and_delete_commands_reach_the_switch() {
    let ovs = Ovs::start(&["br0"]);
    assert!(add(&ovs, &[], &["table=2,priority=5,cookie=0x7,udp,tp_dst=53,actions=output:1"]).status.success());
    let out = add(&ovs, &["--command", "modify-strict"], &["table=2,priority=5,udp,tp_dst=53,actions=output:2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ovs.flows("br0"), vec![" cookie=0x7, table=2, priority=5,udp,tp_dst=53 actions=output:2".to_string()]);
    let out = add(&ovs, &["--command", "delete"], &["table=2,cookie=0x7/-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ovs.flows("br0").is_empty());
}

#[test]
fn bad_flow_text_is_a_clear_error() {
    let out = shardflow(&["flow", "encode", "tcp,tp_dst=99999,actions=drop"]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("99999"), "the message names the bad token: {err}");
    let out = shardflow(&["flow", "decode", "04zz"]);
    assert_eq!(out.status.code(), Some(64));
}
