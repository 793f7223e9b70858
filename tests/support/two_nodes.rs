//! Two nodes on one machine (issue 8, item 7): each node is a network namespace of the test's
//! own holding its Open vSwitch (real ports), its daemon, its underlay address and its pods'
//! host-side veths; the nodes are joined by a veth "underlay" (172.31.0.N/24 on each node's
//! `br-phy`, OVS's userspace tunnelling) and a Geneve port on each `br-int`.
//!
//! Why namespaces for the nodes: the daemon and its switch talk over 127.0.0.1, and the underlay
//! addresses must not appear in the host's namespace; inside a namespace each node has its own
//! loopback, so both daemons use the default ports.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::pods::{sh, unique, Cni, Netns, BRIDGE};
use super::{http_request, repo, wait_until, with_token, Ovs};

/// One node: its namespace, OVS, daemon and CNI network.
pub struct NodeNs {
    pub index: u8,
    pub daemon: Option<Child>,
    pub log: PathBuf,
    pub cni: Cni,
    pub ovs: Ovs,
    /// Dropped last: deleting it removes every link inside (underlay, pods' host ends).
    pub ns: Netns,
}

/// Where node N's daemon answers HTTP inside its namespace.
pub const HTTP: &str = "127.0.0.1:9464";

impl NodeNs {
    /// The node's underlay address.
    pub fn underlay_ip(index: u8) -> String {
        format!("172.31.0.{index}")
    }

    /// Node `index` (1 or 2): namespace, OVS inside it (no bridge), `br-phy` holding
    /// `underlay` (already moved into the namespace) with the underlay address, OVS's tunnel
    /// route to the underlay subnet.
    fn start(index: u8, ns: Netns, underlay: &str) -> NodeNs {
        let dir = std::env::temp_dir().join(unique("sf-node-"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(repo().join("scripts/ovs-sandbox.sh"))
            .arg("up-real")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "node {index}: OVS did not start: {}", String::from_utf8_lossy(&out.stderr));
        let ovs = Ovs { dir };
        let mac = format!("02:00:ac:1f:00:{index:02x}");
        ovs.ok(
            "ovs-vsctl",
            &[
                "add-br",
                "br-phy",
                "--",
                "set",
                "bridge",
                "br-phy",
                "datapath_type=netdev",
                &format!("other_config:hwaddr={mac}"),
                "--",
                "add-port",
                "br-phy",
                underlay,
            ],
        );
        ns.ok("ip", &["link", "set", underlay, "up"]);
        super::pods::ethtool_tx_off(Some(&ns), underlay);
        ns.ok("ip", &["addr", "add", &format!("{}/24", Self::underlay_ip(index)), "dev", "br-phy"]);
        ns.ok("ip", &["link", "set", "br-phy", "up"]);
        // --disable-system-route: OVS's tunnel routing table is ours to fill.
        ovs.ok("ovs-appctl", &["ovs/route/add", "172.31.0.0/24", "br-phy"]);
        ovs.ok("ovs-ofctl", &["add-flow", "br-phy", "priority=0,actions=NORMAL"]);
        let mut cni = Cni::new(&ovs, BRIDGE, &format!("10.244.{index}.0/24"));
        cni.gateway = Some(format!("10.244.{index}.1"));
        cni.routes = vec!["10.244.0.0/16".into()];
        cni.in_ns = Some(ns.name.clone());
        NodeNs { index, daemon: None, log: ovs.dir.join("shardflow.log"), cni, ovs, ns }
    }

    /// The daemon of this node, inside its namespace, with `toml` as its configuration
    /// (`[node] ovsdb` added); waits until br-int is connected to every shard and ready.
    pub fn start_daemon(&mut self, shards: u16, toml: &str) {
        let cfg = self.ovs.dir.join("shardflow.toml");
        std::fs::write(&cfg, format!("[node]\novsdb = \"{}\"\n{toml}", self.ovs.db())).unwrap();
        let err = std::fs::File::create(&self.log).unwrap();
        let child = with_token(&mut Command::new("ip"))
            .args(["netns", "exec", &self.ns.name, env!("CARGO_BIN_EXE_shardflow"), "run", "--shards"])
            .arg(shards.to_string())
            .args(["--http", HTTP, "--log-level", "info", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let ok = wait_until(Duration::from_secs(20), || {
            let connected = self.get("/v1/switches").is_some_and(|(st, b)| {
                st == 200
                    && serde_json::from_str::<Value>(&b).ok().and_then(|v| v.as_array().cloned()).is_some_and(|a| {
                        a.iter().any(|s| s["connections"].as_u64() == Some(u64::from(shards)))
                    })
            });
            connected && self.get("/readyz").is_some_and(|(st, _)| st == 200)
        });
        assert!(ok, "node {}: the daemon did not get br-int ready:\n{}", self.index, self.stderr());
    }

    /// A request to this node's daemon, made from inside its namespace.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let path = path.to_string();
        self.ns.run(move || http_request(HTTP, "GET", &path, "").ok())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Adds this node's tunnel port to br-int: Geneve, remote address from the flow
    /// (`tun_dst` set by the pipeline's tunnel routes and learned return flows), role `tunnel`.
    pub fn add_tunnel(&self, ofport: u32) {
        self.ovs.ok(
            "ovs-vsctl",
            &[
                "add-port",
                BRIDGE,
                "gnv0",
                "--",
                "set",
                "interface",
                "gnv0",
                "type=geneve",
                "options:remote_ip=flow",
                "external_ids:shardflow-role=tunnel",
                &format!("ofport_request={ofport}"),
            ],
        );
    }
}

impl Drop for NodeNs {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- node {} shardflow stderr ----\n{}", self.index, self.stderr());
        }
    }
}

/// Two nodes joined by a veth underlay (node 1 172.31.0.1, node 2 172.31.0.2).
pub struct TwoNodes {
    pub n1: NodeNs,
    pub n2: NodeNs,
}

impl TwoNodes {
    pub fn start() -> TwoNodes {
        let ns1 = Netns::new("sfnode1-");
        let ns2 = Netns::new("sfnode2-");
        let (u1, u2) = (unique("sfu"), unique("sfu"));
        sh("ip", &["link", "add", &u1, "type", "veth", "peer", "name", &u2]);
        ns1.own_link(&u1);
        sh("ip", &["link", "set", &u1, "netns", &ns1.name]);
        sh("ip", &["link", "set", &u2, "netns", &ns2.name]);
        let n1 = NodeNs::start(1, ns1, &u1);
        let n2 = NodeNs::start(2, ns2, &u2);
        TwoNodes { n1, n2 }
    }
}
