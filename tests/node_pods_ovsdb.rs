//! The whole path against a real Open vSwitch: `shardflow run` with no configuration file and
//! `--ovsdb` pointing at the test's OVS. The node agent sets `br-int` up (controllers = the
//! shards), the zero-config pipeline goes in, pods are plugged in with `ovs-vsctl add-port ...
//! external_ids:attached-mac=...,ip_address=...,pod-name=...` as a CNI plugin does, their flows
//! come (and stay through the audit), a connection between two of them is decided, and
//! `del-port` takes a pod's flows and its connections' flows away.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use shardflow::packet::{build, FlowKey, MacAddr};
use support::pipeline_env::pcap_frames;
use support::{wait_until, Daemon, Ovs};

const P1_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a]);
const P2_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0b]);

fn add_pod(ovs: &Ovs, name: &str, ofport: u32, mac: MacAddr, ips: &str) {
    let pcap = format!("options:tx_pcap={}", ovs.path(&format!("{name}-tx.pcap")).display());
    let ids = [
        format!("external_ids:attached-mac={mac}"),
        format!("external_ids:ip_address=\"{ips}\""),
        format!("external_ids:pod-name={name}"),
        "external_ids:pod-namespace=default".to_string(),
        format!("external_ids:container-id=c-{name}"),
        format!("ofport_request={ofport}"),
        pcap,
    ];
    let mut args = vec!["add-port", "br-int", name, "--", "set", "interface", name, "type=dummy"];
    args.extend(ids.iter().map(String::as_str));
    ovs.ok("ovs-vsctl", &args);
}

fn flows_with(ovs: &Ovs, needle: &str) -> Vec<String> {
    ovs.flows("br-int").into_iter().filter(|f| f.contains(needle)).collect()
}

#[test]
fn pods_plugged_into_ovsdb_get_flows_and_lose_them_with_their_port() {
    let ovs = Ovs::start(&["br0"]);
    let db = ovs.db();
    let d = Daemon::start(2, &["--ovsdb", &db, "--zero-config", "true"]);
    // The agent makes br-int and points it at both shards; the zero-config pipeline goes in.
    let ok = wait_until(Duration::from_secs(20), || {
        ovs.tool("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br-int"]).status.success()
            && !flows_with(&ovs, "actions=load:0x1->NXM_NX_REG0[5],goto_table:1").is_empty()
    });
    assert!(ok, "no zero-config pipeline on br-int:\n{}", d.stderr());
    let base = ovs.flows("br-int").len();

    let p1 = format!("table=5, priority=100,ip,nw_dst=10.244.1.10 actions=set_field:{P1_MAC}->eth_dst,output:10");
    // From the plug-in (ovs-vsctl returns once ovs-vswitchd has the port) to its flows in
    // dump-flows, polled back to back: OVSDB monitor -> agent -> router -> bundle.
    let t0 = std::time::Instant::now();
    add_pod(&ovs, "pod1", 10, P1_MAC, "10.244.1.10/24");
    while t0.elapsed() < Duration::from_secs(10) && flows_with(&ovs, &p1).is_empty() {}
    eprintln!("FIGURE ovs-vsctl add-port -> the pod's flows in dump-flows: {:?} (debug build)", t0.elapsed());
    add_pod(&ovs, "pod2", 11, P2_MAC, "10.244.1.11/24,fd00::b/64");
    let p2 = format!("table=5, priority=100,ip,nw_dst=10.244.1.11 actions=set_field:{P2_MAC}->eth_dst,output:11");
    let ok =
        wait_until(Duration::from_secs(10), || !flows_with(&ovs, &p1).is_empty() && !flows_with(&ovs, &p2).is_empty());
    assert!(ok, "the pods' flows did not come: {:#?}\n{}", ovs.flows("br-int"), d.stderr());
    assert!(!flows_with(&ovs, &format!("priority=50,ip,in_port=10,dl_src={P1_MAC},nw_src=10.244.1.10")).is_empty());
    assert!(!flows_with(&ovs, "priority=40,ip,in_port=11 actions=drop").is_empty());
    assert_eq!(ovs.flows("br-int").len(), base + 6, "three flows per pod: {:#?}", ovs.flows("br-int"));
    assert!(d.metric_sum("shardflow_node_pods_installed_total", &[]) >= 2.0);

    // The audit keeps them.
    let audits = d.metric_sum("shardflow_pipeline_audit_seconds_count", &[]);
    assert!(wait_until(Duration::from_secs(5), || d.metric_sum("shardflow_pipeline_audit_seconds_count", &[])
        >= audits + 2.0));
    assert_eq!(d.metric_sum("shardflow_pipeline_repairs_total", &[]), 0.0);
    assert_eq!(ovs.flows("br-int").len(), base + 6);

    // pod1 -> pod2: decided to pod2's port with its MAC (both from OVSDB), the SYN delivered.
    let syn = build::tcp_syn(P1_MAC, P2_MAC, [10, 244, 1, 10].into(), [10, 244, 1, 11].into(), 43000, 80);
    let hex: String = syn.iter().map(|b| format!("{b:02x}")).collect();
    ovs.ok("ovs-appctl", &["netdev-dummy/receive", "pod1", &hex]);
    let fwd = format!("tp_src=43000,tp_dst=80 actions=ct(commit,zone=1),set_field:{P2_MAC}->eth_dst,output:11");
    assert!(
        wait_until(Duration::from_secs(5), || !flows_with(&ovs, &fwd).is_empty()),
        "{:#?}",
        flows_with(&ovs, "table=3")
    );
    let ok = wait_until(Duration::from_secs(5), || {
        pcap_frames(&ovs.path("pod2-tx.pcap")).iter().any(|f| FlowKey::extract(11, f).is_ok_and(|k| k.ip_proto == 6))
    });
    assert!(ok, "the SYN did not reach pod2");

    // pod2 unplugged: its flows and its connection's flows go; pod1's stay.
    ovs.ok("ovs-vsctl", &["del-port", "br-int", "pod2"]);
    let ok = wait_until(Duration::from_secs(10), || {
        flows_with(&ovs, "10.244.1.11").is_empty() && flows_with(&ovs, "in_port=11").is_empty()
    });
    assert!(ok, "pod2's flows are left: {:#?}", ovs.flows("br-int"));
    assert!(!flows_with(&ovs, &p1).is_empty());
    assert_eq!(ovs.flows("br-int").len(), base + 3);
    assert!(d.metric_sum("shardflow_node_pods_removed_total", &[]) >= 1.0);
}

/// A pod plugged in while the daemon is down is installed when it starts.
#[test]
fn pods_added_while_the_daemon_is_down_are_picked_up() {
    let ovs = Ovs::start(&["br0"]);
    let db = ovs.db();
    let mut d = Daemon::start(1, &["--ovsdb", &db, "--zero-config", "true"]);
    assert!(wait_until(Duration::from_secs(20), || !flows_with(&ovs, "REG0[5]").is_empty()), "{}", d.stderr());
    d.stop(Duration::from_secs(10)).expect("the daemon stops");
    add_pod(&ovs, "pod3", 12, MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0c]), "10.244.1.12/24");
    let d2 = Daemon::start(1, &["--ovsdb", &db, "--zero-config", "true"]);
    let want = "table=5, priority=100,ip,nw_dst=10.244.1.12 actions=set_field:0a:58:0a:f4:01:0c->eth_dst,output:12";
    let ok = wait_until(Duration::from_secs(20), || !flows_with(&ovs, want).is_empty());
    assert!(ok, "pod3 was not picked up: {:#?}\n{}", ovs.flows("br-int"), d2.stderr());
}
