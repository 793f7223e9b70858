//! Pods that come and go, against a real Open vSwitch: the daemon (in this process, through
//! its public `daemon::run_with_node`) runs docs/pipeline.md's example configuration on `br0`
//! and takes the node's updates from a channel this test feeds, as the node agent (OVSDB) does.
//! A pod added gets exactly its flows (one bundle, counted), the audit keeps them, a decision
//! to its address outputs to its port with its MAC; removed, it loses its flows, its
//! connections' flows and its Tracker entries.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shardflow::config::Config;
use shardflow::node::{NodeChange, NodePort, NodeUpdate, NodeView, PodInfo, PortRole};
use shardflow::packet::{build, FlowKey, MacAddr};
use support::pipeline_env::{add_dummy_ports, example_toml, inject, pcap_frames, pcap_path};
use support::{free_ports, http_request_as, wait_until, Ovs};

const A_PORT: u32 = 2;
const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01]);
const NEW_PORT: u32 = 6;
const NEW_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x06]);
const NEW_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);

struct Node {
    ovs: Ovs,
    http: String,
    updates: flume::Sender<NodeUpdate>,
}

impl Node {
    fn get(&self, path: &str) -> String {
        let (st, _, body) = http_request_as(&self.http, "GET", path, "", None).unwrap();
        assert_eq!(st, 200, "GET {path}: {body}");
        body
    }

    fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    fn flows_with(&self, needle: &str) -> Vec<String> {
        self.ovs.flows("br0").into_iter().filter(|f| f.contains(needle)).collect()
    }

    fn send(&self, view: &Arc<NodeView>, changes: Vec<NodeChange>) {
        self.updates.send(NodeUpdate { view: view.clone(), changes }).unwrap();
    }
}

fn start() -> Node {
    start_mode(false)
}

/// OVS with docs/pipeline.md's ports, the daemon (2 shards; fan-out, or `single` mode with one
/// controller connection) attached, its pipeline installed on br0.
fn start_mode(single: bool) -> Node {
    let ovs = Ovs::start(&["br0"]);
    add_dummy_ports(&ovs, &[3, 4, 5, NEW_PORT]);
    let mut cfg = Config::from_toml(&example_toml()).unwrap();
    let (base, http) = free_ports(2);
    cfg.openflow.base_port = base;
    if single {
        cfg.openflow.mode = shardflow::config::Mode::Single;
    }
    cfg.http.listen = format!("127.0.0.1:{http}").parse().unwrap();
    cfg.http.auth = false;
    let (tx, rx) = flume::bounded(16);
    // The daemon lives as long as this test process (its threads end with it).
    std::thread::spawn(move || shardflow::daemon::run_with_node(cfg, rx));
    let http = format!("127.0.0.1:{http}");
    let ok = wait_until(Duration::from_secs(10), || {
        http_request_as(&http, "GET", "/healthz", "", None).is_ok_and(|(st, _, _)| st == 200)
    });
    assert!(ok, "the daemon did not answer /healthz");
    let mut args = vec!["set-controller".to_string(), "br0".to_string(), format!("tcp:127.0.0.1:{base}")];
    if !single {
        args.push(format!("tcp:127.0.0.1:{}", base + 1));
    }
    ovs.ok("ovs-vsctl", &args.iter().map(String::as_str).collect::<Vec<_>>());
    for u in ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]).split_whitespace() {
        ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
    }
    let node = Node { ovs, http, updates: tx };
    // Connected (every connection) and the pipeline in place.
    let conns = if single { 1 } else { 2 };
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(10), || {
        last = serde_json::from_str(&node.get("/v1/switches")).unwrap();
        let s = last.as_array().and_then(|a| a.iter().find(|s| s["dpid"] == "0000000000000001").cloned());
        s.is_some_and(|s| s["connections"].as_u64() == Some(conns) && !s["pipeline_installed_ms"].is_null())
    });
    assert!(ok, "no pipeline on br0: {last}");
    node
}

fn pod_port() -> NodePort {
    NodePort {
        name: "p6".into(),
        ofport: NEW_PORT,
        role: PortRole::Pod(PodInfo {
            mac: NEW_MAC,
            ips: vec![IpAddr::V4(NEW_IP)],
            name: "web-0".into(),
            namespace: "default".into(),
            container_id: "c6".into(),
        }),
    }
}

fn view(ports: Vec<NodePort>) -> Arc<NodeView> {
    Arc::new(NodeView {
        bridge: "br0".into(),
        datapath_id: Some(1),
        ports: ports.into_iter().map(|p| (p.name.clone(), p)).collect(),
    })
}

#[test]
fn a_pod_added_and_removed_through_node_updates() {
    let n = start();
    let pod_flows = [
        format!("priority=50,ip,in_port={NEW_PORT},dl_src={NEW_MAC},nw_src={NEW_IP} actions=load:0x1->NXM_NX_REG0[2],goto_table:6"),
        format!("priority=40,ip,in_port={NEW_PORT} actions=drop"),
        format!("table=5, priority=100,ip,nw_dst={NEW_IP} actions=set_field:{NEW_MAC}->eth_dst,output:{NEW_PORT}"),
    ];
    let has = |flows: &[String], w: &str| flows.iter().any(|f| f.ends_with(w));
    let before = n.ovs.flows("br0");
    assert!(pod_flows.iter().all(|w| !has(&before, w)));

    // Added: exactly its three flows, in one change.
    let t0 = std::time::Instant::now();
    n.send(&view(vec![pod_port()]), vec![NodeChange::Added(pod_port())]);
    // Polled with dump-flows back to back (each a few ms): the time until the flows show.
    let mut after = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) {
        after = n.ovs.flows("br0");
        if pod_flows.iter().all(|w| has(&after, w)) {
            break;
        }
    }
    assert!(pod_flows.iter().all(|w| has(&after, w)), "the pod's flows are not there: {after:#?}");
    eprintln!("FIGURE node update -> pod's flows in dump-flows: {:?} (debug build, dump-flows polling)", t0.elapsed());
    assert_eq!(after.len(), before.len() + 3, "{after:#?}");
    assert_eq!(n.metric("shardflow_node_pods_installed_total"), 1.0);
    assert_eq!(n.metric("shardflow_node_updates_applied_total"), 1.0);
    assert_eq!(n.metric("shardflow_node_bundle_failures_total"), 0.0);

    // The audit (every 500 ms) expects them: two more audits, nothing repaired, still there.
    let audits = n.metric("shardflow_pipeline_audit_seconds_count");
    let ok = wait_until(Duration::from_secs(5), || n.metric("shardflow_pipeline_audit_seconds_count") >= audits + 2.0);
    assert!(ok, "no audit ran");
    assert_eq!(n.metric("shardflow_pipeline_repairs_total"), 0.0, "the audit repaired something");
    let now = n.ovs.flows("br0");
    assert!(pod_flows.iter().all(|w| has(&now, w)), "the audit removed the pod's flows: {now:#?}");

    // A decision to the pod's address outputs to its port with its MAC.
    inject(&n.ovs, A_PORT, &[build::tcp_syn(A_MAC, GW_MAC, A_IP.into(), NEW_IP.into(), 41000, 80)]);
    let fwd = format!("nw_src={A_IP},nw_dst={NEW_IP},tp_src=41000,tp_dst=80 actions=ct(commit,zone=1),set_field:{NEW_MAC}->eth_dst,output:{NEW_PORT}");
    let ok = wait_until(Duration::from_secs(5), || !n.flows_with(&fwd).is_empty());
    assert!(ok, "no decided flow to the pod's port: {:#?}", n.flows_with("table=3"));
    let ok = wait_until(Duration::from_secs(5), || {
        pcap_frames(&pcap_path(&n.ovs, NEW_PORT))
            .iter()
            .any(|f| FlowKey::extract(NEW_PORT, f).is_ok_and(|k| k.ip_proto == 6 && k.eth_dst == NEW_MAC))
    });
    assert!(ok, "the SYN did not leave the pod's port");
    // The pod talks first too (the Tracker learns it from the packet-in).
    inject(&n.ovs, NEW_PORT, &[build::udp(NEW_MAC, GW_MAC, NEW_IP.into(), A_IP.into(), 5353, 53, b"q")]);
    let ok = wait_until(Duration::from_secs(5), || {
        let tr: Value = serde_json::from_str(&n.get("/v1/tracker")).unwrap();
        tr["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["ip"] == NEW_IP.to_string() && e["port"] == NEW_PORT))
    });
    assert!(ok, "the Tracker did not learn the pod");
    let ok = wait_until(Duration::from_secs(5), || n.flows_with(&format!("udp,nw_src={NEW_IP}")).len() == 1);
    assert!(ok, "the pod's UDP was not decided: {:#?}", n.flows_with("table=3"));

    // Removed: its flows, its connections' flows and its Tracker entries go.
    n.send(&view(vec![]), vec![NodeChange::Removed(pod_port())]);
    let mut left = Vec::new();
    let ok = wait_until(Duration::from_secs(5), || {
        left = n
            .ovs
            .flows("br0")
            .into_iter()
            .filter(|f| f.contains(&NEW_IP.to_string()) || f.contains(&format!("in_port={NEW_PORT}")))
            .collect();
        left.is_empty()
    });
    assert!(ok, "flows of the removed pod are left: {left:#?}");
    assert_eq!(n.ovs.flows("br0").len(), before.len(), "the pipeline is back to the configuration's");
    assert_eq!(n.metric("shardflow_node_pods_removed_total"), 1.0);
    let tr: Value = serde_json::from_str(&n.get("/v1/tracker")).unwrap();
    assert!(
        !tr["addresses"].as_array().unwrap().iter().any(|e| e["ip"] == NEW_IP.to_string()),
        "the Tracker still has the pod: {tr:#}"
    );
    // And the audit does not put anything back.
    let audits = n.metric("shardflow_pipeline_audit_seconds_count");
    let ok = wait_until(Duration::from_secs(5), || n.metric("shardflow_pipeline_audit_seconds_count") >= audits + 2.0);
    assert!(ok);
    assert!(n.flows_with(&format!("in_port={NEW_PORT}")).is_empty());
    assert_eq!(n.metric("shardflow_pipeline_repairs_total"), 0.0);
}

#[test]
fn pods_known_before_the_switch_connects_come_with_the_pipeline() {
    let ovs = Ovs::start(&["br0"]);
    add_dummy_ports(&ovs, &[3, 4, 5, NEW_PORT]);
    let mut cfg = Config::from_toml(&example_toml()).unwrap();
    let (base, http) = free_ports(2);
    cfg.openflow.base_port = base;
    cfg.http.listen = format!("127.0.0.1:{http}").parse().unwrap();
    cfg.http.auth = false;
    let (tx, rx) = flume::bounded(16);
    // The node agent's first view comes before any switch.
    tx.send(NodeUpdate { view: view(vec![pod_port()]), changes: vec![NodeChange::Added(pod_port())] }).unwrap();
    std::thread::spawn(move || shardflow::daemon::run_with_node(cfg, rx));
    let http = format!("127.0.0.1:{http}");
    assert!(wait_until(Duration::from_secs(10), || {
        http_request_as(&http, "GET", "/healthz", "", None).is_ok_and(|(st, _, _)| st == 200)
    }));
    ovs.ok(
        "ovs-vsctl",
        &["set-controller", "br0", &format!("tcp:127.0.0.1:{base}"), &format!("tcp:127.0.0.1:{}", base + 1)],
    );
    for u in ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]).split_whitespace() {
        ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
    }
    let want =
        format!("table=5, priority=100,ip,nw_dst={NEW_IP} actions=set_field:{NEW_MAC}->eth_dst,output:{NEW_PORT}");
    let mut flows = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        flows = ovs.flows("br0");
        flows.iter().any(|f| f.ends_with(&want))
    });
    assert!(ok, "the pod did not come with the pipeline: {flows:#?}");
    let _ = tx;
}

/// No configuration at all: a pod from the node's database on port 2 gets its flows in the
/// zero-config pipeline, a learning host on port 1 is answered the pod's MAC from its ARP, and
/// its SYN to the pod is decided to the pod's port.
#[test]
fn zero_config_pods_from_the_database_and_a_learning_host() {
    let ovs = Ovs::start(&["br0"]);
    let mut cfg = Config::default();
    let (base, http) = free_ports(2);
    cfg.shards.count = 2;
    cfg.openflow.base_port = base;
    cfg.http.listen = format!("127.0.0.1:{http}").parse().unwrap();
    cfg.http.auth = false;
    assert!(cfg.pipeline.is_none() && cfg.learning.zero_config);
    let (tx, rx) = flume::bounded(16);
    std::thread::spawn(move || shardflow::daemon::run_with_node(cfg, rx));
    let n = Node { ovs, http: format!("127.0.0.1:{http}"), updates: tx };
    assert!(wait_until(Duration::from_secs(10), || {
        http_request_as(&n.http, "GET", "/healthz", "", None).is_ok_and(|(st, _, _)| st == 200)
    }));
    n.ovs.ok(
        "ovs-vsctl",
        &["set-controller", "br0", &format!("tcp:127.0.0.1:{base}"), &format!("tcp:127.0.0.1:{}", base + 1)],
    );
    for u in n.ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]).split_whitespace() {
        n.ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
    }
    let pod = NodePort { ofport: 2, name: "br0-p2".into(), ..pod_port() };
    let host = NodePort { name: "br0-p1".into(), ofport: 1, role: PortRole::Learning };
    n.send(&view(vec![host, pod.clone()]), vec![NodeChange::Added(pod)]);
    let want = format!("table=5, priority=100,ip,nw_dst={NEW_IP} actions=set_field:{NEW_MAC}->eth_dst,output:2");
    assert!(wait_until(Duration::from_secs(10), || !n.flows_with(&want).is_empty()), "{:#?}", n.ovs.flows("br0"));
    assert!(!n.flows_with("priority=40,ip,in_port=2 actions=drop").is_empty());

    let h_mac = MacAddr([0x02, 0, 0, 0, 0x0c, 0x01]);
    let h_ip = Ipv4Addr::new(10, 244, 1, 99);
    // The host asks for the pod: the controller answers from the pod's metadata.
    inject(&n.ovs, 1, &[build::arp_request(h_mac, h_ip, NEW_IP)]);
    let ok = wait_until(Duration::from_secs(5), || {
        pcap_frames(&pcap_path(&n.ovs, 1)).iter().any(|f| {
            FlowKey::extract(1, f)
                .is_ok_and(|k| k.is_arp() && k.arp_op == 2 && k.arp_sha == NEW_MAC && k.arp_spa == NEW_IP)
        })
    });
    assert!(ok, "no ARP reply with the pod's MAC");
    inject(&n.ovs, 1, &[build::tcp_syn(h_mac, NEW_MAC, h_ip.into(), NEW_IP.into(), 42000, 80)]);
    let fwd = format!("nw_src={h_ip},nw_dst={NEW_IP},tp_src=42000,tp_dst=80 actions=ct(commit,zone=1),set_field:{NEW_MAC}->eth_dst,output:2");
    let rev = format!("nw_src={NEW_IP},nw_dst={h_ip},tp_src=80,tp_dst=42000 actions=ct(commit,zone=1),set_field:{h_mac}->eth_dst,output:1");
    let ok = wait_until(Duration::from_secs(5), || !n.flows_with(&fwd).is_empty() && !n.flows_with(&rev).is_empty());
    assert!(ok, "no decided flows host <-> pod: {:#?}", n.flows_with("table=3"));
    let ok = wait_until(Duration::from_secs(5), || {
        pcap_frames(&pcap_path(&n.ovs, 2)).iter().any(|f| FlowKey::extract(2, f).is_ok_and(|k| k.ip_proto == 6))
    });
    assert!(ok, "the SYN did not reach the pod");
}

/// Single mode (one connection, any shard may hold it): the shard holding it sends the change,
/// and the update is counted once.
#[test]
fn single_mode_pod_added_once() {
    let n = start_mode(true);
    let before = n.ovs.flows("br0").len();
    n.send(&view(vec![pod_port()]), vec![NodeChange::Added(pod_port())]);
    let want =
        format!("table=5, priority=100,ip,nw_dst={NEW_IP} actions=set_field:{NEW_MAC}->eth_dst,output:{NEW_PORT}");
    assert!(wait_until(Duration::from_secs(5), || !n.flows_with(&want).is_empty()), "{:#?}", n.ovs.flows("br0"));
    assert_eq!(n.ovs.flows("br0").len(), before + 3);
    assert_eq!(n.metric("shardflow_node_pods_installed_total"), 1.0);
    assert_eq!(n.metric("shardflow_node_updates_applied_total"), 1.0);
}
