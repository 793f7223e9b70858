//! The node agent against a real Open vSwitch (ovsdb-server + ovs-vswitchd in a private
//! sandbox per test): the bridge ensured with the right columns and left alone on a second
//! start; pods and roles added and removed with `ovs-vsctl` arrive as NodeUpdates; malformed
//! pods refused and counted; ovsdb-server stopped and started again (with a port written into
//! its database meanwhile) -> the agent reconnects and re-reads; and the daemon itself:
//! `shardflow run --ovsdb` sets the bridge up so that OVS connects to every shard, a missing
//! socket does not stop it, a bad address is a configuration error.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use shardflow::config::DatapathType;
use shardflow::control::node::{self, NodeAgentConfig, NodeMetrics};
use shardflow::control::signal::{shutdown_channel, ShutdownReason, ShutdownTrigger};
use shardflow::node::{NodeChange, NodeUpdate, PortRole};
use shardflow::ovsdb::OvsdbAddr;
use support::{wait_until, Daemon, Ovs};

/// The agent on a thread of its own (a current-thread runtime, as on the control thread);
/// stopped and joined on drop.
struct Agent {
    rx: flume::Receiver<NodeUpdate>,
    metrics: NodeMetrics,
    stop: ShutdownTrigger,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(ovs: &Ovs, controllers: &[&str]) -> Agent {
        let cfg = NodeAgentConfig {
            addr: OvsdbAddr::parse(&ovs.db()).unwrap(),
            bridge: "br-int".into(),
            datapath_type: DatapathType::Auto,
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
        };
        let (tx, rx) = flume::bounded(16);
        let metrics = NodeMetrics::register(&prometheus::Registry::new()).unwrap();
        let (stop, signal) = shutdown_channel();
        let m = metrics.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let task = node::spawn(rt.handle(), cfg, tx, m, signal.clone());
            rt.block_on(async move {
                signal.wait().await;
                let _ = task.await;
            });
        });
        Agent { rx, metrics, stop, thread: Some(thread) }
    }

    /// Receives updates until one satisfies `pred` (10 s at most); returns it and every
    /// change received on the way.
    fn until(&self, what: &str, pred: impl Fn(&NodeUpdate) -> bool) -> (NodeUpdate, Vec<NodeChange>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(u) => {
                    seen.extend(u.changes.iter().cloned());
                    if pred(&u) {
                        return (u, seen);
                    }
                }
                Err(e) => panic!("no node update with {what} within 10 s ({e}); changes seen: {seen:#?}"),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.trigger(ShutdownReason::Requested);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn vsctl_get(ovs: &Ovs, args: &[&str]) -> String {
    ovs.ok("ovs-vsctl", args).trim().to_string()
}

/// The uuids of br-int's controllers, sorted (a rewrite would make new rows).
fn controller_uuids(ovs: &Ovs) -> Vec<String> {
    let mut v: Vec<String> = vsctl_get(ovs, &["--bare", "get", "bridge", "br-int", "controller"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

const CTLS: &[&str] = &["tcp:127.0.0.1:6999", "tcp:127.0.0.1:7000"];

#[test]
fn bridge_is_ensured_and_left_alone_on_a_second_start() {
    let ovs = Ovs::start(&["br0"]);
    let br0_before = vsctl_get(&ovs, &["list", "bridge", "br0"]);
    let br_uuid;
    let ctl_uuids;
    {
        let agent = Agent::start(&ovs, CTLS);
        let (first, _) = agent.until("the first view", |_| true);
        assert_eq!(first.view.bridge, "br-int");
        assert!(first.view.ports.is_empty(), "the bridge's internal port is left out: {:?}", first.view.ports);
        // As the daemon needs it, read back by OVS's own tool.
        assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "datapath_type"]), "netdev", "no kernel module here");
        assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "protocols"]), "[OpenFlow13]");
        assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "fail_mode"]), "secure");
        let ctl = vsctl_get(&ovs, &["get-controller", "br-int"]);
        let mut targets: Vec<&str> = ctl.lines().map(str::trim).collect();
        targets.sort();
        assert_eq!(targets, CTLS);
        let modes = vsctl_get(&ovs, &["--bare", "--columns=connection_mode", "list", "controller"]);
        assert_eq!(modes.split_whitespace().collect::<Vec<_>>(), ["out-of-band", "out-of-band"]);
        // The internal port exists (ovs-vswitchd made the bridge) and other bridges are untouched.
        assert!(vsctl_get(&ovs, &["list-ports", "br0"]).contains("br0-p1"));
        assert!(wait_until(Duration::from_secs(5), || {
            vsctl_get(&ovs, &["get", "interface", "br-int", "ofport"]) == "65534"
        }));
        assert_eq!(vsctl_get(&ovs, &["list", "bridge", "br0"]), br0_before);
        assert_eq!(agent.metrics.transact_errors.get(), 0);
        assert_eq!(agent.metrics.connected.get(), 1);
        br_uuid = vsctl_get(&ovs, &["get", "bridge", "br-int", "_uuid"]);
        ctl_uuids = controller_uuids(&ovs);
    }
    // A second start writes nothing: same rows.
    let agent = Agent::start(&ovs, CTLS);
    agent.until("the first view again", |_| true);
    assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "_uuid"]), br_uuid);
    assert_eq!(controller_uuids(&ovs), ctl_uuids, "controllers rewritten on a second start");
    drop(agent);

    // A bridge changed by hand is put right (only what differs), with other columns kept.
    ovs.ok("ovs-vsctl", &["set", "bridge", "br-int", "fail_mode=standalone", "other_config:foo=bar"]);
    let agent = Agent::start(&ovs, CTLS);
    agent.until("the first view", |_| true);
    assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "fail_mode"]), "secure");
    assert_eq!(vsctl_get(&ovs, &["get", "bridge", "br-int", "other_config:foo"]), "bar");
    assert_eq!(controller_uuids(&ovs), ctl_uuids, "controllers were right: kept");

    // Deleted by hand while the agent runs: created again.
    ovs.ok("ovs-vsctl", &["del-br", "br-int"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            ovs.tool("ovs-vsctl", &["br-exists", "br-int"]).status.success()
                && vsctl_get(&ovs, &["get", "bridge", "br-int", "fail_mode"]) == "secure"
        }),
        "br-int not created again after del-br"
    );
    assert_eq!(controller_uuids(&ovs).len(), 2);
}

fn add_pod(ovs: &Ovs, name: &str, mac: &str, ips: &str) {
    let ids = [
        format!("external_ids:attached-mac={mac}"),
        format!("external_ids:ip_address=\"{ips}\""),
        format!("external_ids:pod-name={name}"),
        "external_ids:pod-namespace=default".to_string(),
        format!("external_ids:container-id=c-{name}"),
    ];
    let mut args = vec!["add-port", "br-int", name, "--", "set", "interface", name, "type=dummy"];
    args.extend(ids.iter().map(String::as_str));
    ovs.ok("ovs-vsctl", &args);
}

#[test]
fn pods_and_roles_arrive_as_node_updates() {
    let ovs = Ovs::start(&["br0"]);
    let agent = Agent::start(&ovs, CTLS);
    agent.until("the first view", |_| true);

    add_pod(&ovs, "pod1", "0a:58:0a:f4:01:05", "10.244.1.5/24,fd00::5/64");
    ovs.ok(
        "ovs-vsctl",
        &[
            "add-port",
            "br-int",
            "gw0",
            "--",
            "set",
            "interface",
            "gw0",
            "type=dummy",
            "external_ids:shardflow-role=gateway",
        ],
    );
    ovs.ok("ovs-vsctl", &["add-port", "br-int", "host1", "--", "set", "interface", "host1", "type=dummy"]);
    let (u, changes) =
        agent.until("pod1, gw0 and host1", |u| ["pod1", "gw0", "host1"].iter().all(|p| u.view.ports.contains_key(*p)));
    let added: Vec<&str> = changes
        .iter()
        .filter_map(|c| if let NodeChange::Added(p) = c { Some(p.name.as_str()) } else { None })
        .collect();
    for p in ["pod1", "gw0", "host1"] {
        assert!(added.contains(&p), "{p} not announced as Added: {changes:?}");
    }
    let pod = &u.view.ports["pod1"];
    let PortRole::Pod(info) = &pod.role else { panic!("{pod:?}") };
    assert_eq!(info.mac.to_string(), "0a:58:0a:f4:01:05");
    assert_eq!(info.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["10.244.1.5", "fd00::5"]);
    assert_eq!(
        (info.name.as_str(), info.namespace.as_str(), info.container_id.as_str()),
        ("pod1", "default", "c-pod1")
    );
    let ofport: u32 = vsctl_get(&ovs, &["get", "interface", "pod1", "ofport"]).parse().unwrap();
    assert_eq!(pod.ofport, ofport);
    assert_eq!(u.view.ports["gw0"].role, PortRole::Gateway);
    assert_eq!(u.view.ports["host1"].role, PortRole::Learning);
    assert!(u.view.datapath_id.is_some(), "ovs-vswitchd set the datapath id");

    // A malformed pod (bad MAC) is left out, warned about once and counted; a bad CIDR too.
    add_pod(&ovs, "bad1", "0a:58:zz:00:00:01", "10.244.1.6/24");
    add_pod(&ovs, "bad2", "0a:58:0a:f4:01:07", "10.244.1.7/99");
    ovs.ok("ovs-vsctl", &["add-port", "br-int", "host2", "--", "set", "interface", "host2", "type=dummy"]);
    let (u, _) = agent.until("host2 (after the malformed ones)", |u| u.view.ports.contains_key("host2"));
    assert!(wait_until(Duration::from_secs(5), || agent.metrics.malformed_ports.get() == 2));
    assert!(!u.view.ports.contains_key("bad1") && !u.view.ports.contains_key("bad2"), "{:?}", u.view.ports.keys());

    // Removed ports go as Removed, with what they were.
    ovs.ok("ovs-vsctl", &["del-port", "br-int", "pod1"]);
    let (u, changes) = agent.until("pod1 gone", |u| !u.view.ports.contains_key("pod1"));
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, NodeChange::Removed(p) if p.name == "pod1" && matches!(p.role, PortRole::Pod(_)))),
        "{changes:?}"
    );
    assert!(u.view.ports.contains_key("gw0"));
    // A role change is a Changed.
    ovs.ok("ovs-vsctl", &["set", "interface", "host1", "external_ids:shardflow-role=uplink"]);
    let (_, changes) = agent.until("host1 an uplink", |u| u.view.ports["host1"].role == PortRole::Uplink);
    assert!(changes.iter().any(|c| matches!(c, NodeChange::Changed { new, .. } if new.name == "host1")), "{changes:?}");
    assert_eq!(agent.metrics.malformed_ports.get(), 2, "no second warning for the same ports");
    assert!(agent.metrics.updates.get() >= 4);
}

#[test]
fn reconnects_after_an_ovsdb_server_restart_and_rereads() {
    let ovs = Ovs::start(&["br0"]);
    let agent = Agent::start(&ovs, CTLS);
    agent.until("the first view", |_| true);
    add_pod(&ovs, "pod1", "0a:58:0a:f4:01:05", "10.244.1.5/24");
    agent.until("pod1", |u| u.view.ports.contains_key("pod1"));
    let br = vsctl_get(&ovs, &["get", "bridge", "br-int", "_uuid"]);

    ovs.stop_ovsdb();
    assert!(wait_until(Duration::from_secs(5), || agent.metrics.connected.get() == 0), "the agent saw the loss");
    // While the server is down, the database file changes: a port `late` comes, pod1 goes.
    let pod1_port = ovsdb_tool_port_uuid(&ovs, "pod1");
    let txn = serde_json::json!(["Open_vSwitch",
        {"op": "insert", "table": "Interface", "uuid-name": "i", "row": {"name": "late", "type": "dummy",
            "external_ids": ["map", [["attached-mac", "0a:58:0a:f4:01:09"], ["ip_address", "10.244.1.9/24"],
                ["pod-name", "late"], ["pod-namespace", "default"], ["container-id", "c-late"]]]}},
        {"op": "insert", "table": "Port", "uuid-name": "p", "row": {"name": "late", "interfaces": ["named-uuid", "i"]}},
        {"op": "mutate", "table": "Bridge", "where": [["_uuid", "==", ["uuid", br]]],
            "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]], ["ports", "delete", ["set", [["uuid", pod1_port]]]]]}
    ]);
    let out = std::process::Command::new("ovsdb-tool")
        .args(["transact", ovs.path("conf.db").to_str().unwrap(), &txn.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "ovsdb-tool transact: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("error"), "{}", String::from_utf8_lossy(&out.stdout));
    ovs.start_ovsdb();

    // The difference to the last view sent: `late` added (once ovs-vswitchd numbered it), pod1 removed.
    let (u, changes) =
        agent.until("late, without pod1", |u| u.view.ports.contains_key("late") && !u.view.ports.contains_key("pod1"));
    assert!(changes.iter().any(|c| matches!(c, NodeChange::Added(p) if p.name == "late")), "{changes:?}");
    assert!(changes.iter().any(|c| matches!(c, NodeChange::Removed(p) if p.name == "pod1")), "{changes:?}");
    assert!(matches!(u.view.ports["late"].role, PortRole::Pod(_)));
    assert_eq!(agent.metrics.connected.get(), 1);
    assert!(agent.metrics.reconnects.get() >= 1);
}

/// The uuid of Port `name`, read from the database file while the server is down.
fn ovsdb_tool_port_uuid(ovs: &Ovs, name: &str) -> String {
    let q = serde_json::json!(["Open_vSwitch", {"op": "select", "table": "Port", "where": [["name", "==", name]], "columns": ["_uuid"]}]);
    let out = std::process::Command::new("ovsdb-tool")
        .args(["query", ovs.path("conf.db").to_str().unwrap(), &q.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "ovsdb-tool query: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["rows"][0]["_uuid"][1].as_str().unwrap().to_string()
}

#[test]
fn the_daemon_sets_the_bridge_up_and_ovs_connects_to_every_shard() {
    let ovs = Ovs::start(&["br0"]);
    let db = ovs.db();
    let d = Daemon::start(2, &["--ovsdb", &db]);
    let want: Vec<String> = (0..2).map(|i| format!("tcp:127.0.0.1:{}", d.of_port(i))).collect();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut got: Vec<String> =
                vsctl_get(&ovs, &["get-controller", "br-int"]).lines().map(|l| l.trim().to_string()).collect();
            got.sort();
            got == want
        }),
        "br-int's controllers are not the daemon's ports {want:?}:\n{}",
        d.stderr()
    );
    // OVS connects to both shards (the daemon lists the switch once both are up).
    assert!(
        wait_until(Duration::from_secs(15), || d.metric_sum("shardflow_switch_connections", &[]) >= 2.0),
        "OVS did not connect to both shards:\n{}",
        d.stderr()
    );
    assert_eq!(d.metric_sum("shardflow_ovsdb_connected", &[]), 1.0);
    assert!(d.metric_sum("shardflow_node_updates_total", &[]) >= 1.0);
}

#[test]
fn a_missing_socket_does_not_stop_the_daemon_and_a_bad_address_is_a_config_error() {
    let missing = format!("unix:/tmp/shardflow-no-ovsdb-{}/db.sock", std::process::id());
    let d = Daemon::start(1, &["--ovsdb", &missing]);
    assert!(
        wait_until(Duration::from_secs(5), || d.metric_sum("shardflow_ovsdb_reconnects_total", &[]) >= 2.0),
        "{}",
        d.stderr()
    );
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.metric_sum("shardflow_ovsdb_connected", &[]), 0.0);
    assert!(d.stderr().contains("retrying"), "{}", d.stderr());

    let out = support::shardflow(&["run", "--ovsdb", "ssl:127.0.0.1:6640", "--http", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node.ovsdb"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Figures (printed; run with `--nocapture`): agent start to first view (connect, bridge
/// created, monitor), and `ovs-vsctl add-port` started to the pod's NodeUpdate received, over
/// 20 pods (bounded). Each must stay under 5 s; the figures go into the report.
#[test]
fn pod_arrival_latency() {
    let ovs = Ovs::start(&["br0"]);
    let t0 = Instant::now();
    let agent = Agent::start(&ovs, CTLS);
    agent.until("the first view", |_| true);
    let first = t0.elapsed();
    let mut lat = Vec::new();
    for i in 0..20u8 {
        let name = format!("pod{i}");
        let t = Instant::now();
        add_pod(&ovs, &name, &format!("0a:58:0a:f4:02:{i:02x}"), &format!("10.244.2.{}/24", i + 10));
        agent.until(&name, |u| u.view.ports.contains_key(&name));
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "node agent: first view {:.1} ms; add-port -> NodeUpdate p50 {:.1} ms, max {:.1} ms (20 pods)",
        first.as_secs_f64() * 1e3,
        lat[lat.len() / 2].as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    assert!(first < Duration::from_secs(5) && lat[lat.len() - 1] < Duration::from_secs(5));
}
