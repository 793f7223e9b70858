//! Two nodes on one machine (issue 8, item 7): each node is a network namespace of the test's
//! own holding its Open vSwitch (real ports), its daemon, its underlay address and its pods'
//! host-side veths; the nodes are joined by a veth "underlay" (172.31.0.N/24 on each node's
//! `br-phy`, OVS's userspace tunnelling) and a Geneve port on each `br-int`.
//!
//! Why namespaces for the nodes: the daemon and its switch talk over 127.0.0.1 and the underlay
//! addresses must not appear in the host's namespace; inside a namespace each node has its own
//! loopback, so both daemons use the default ports. Node N's pod is 10.244.N.2 (port 4); its
//! uplink (1) and gateway (2) are internal ports, unused; the tunnel is port 3.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::pods::{ethtool_tx_off, sh, unique, Netns, BRIDGE};
use super::{http_request, repo, wait_until, with_token, Ovs};

/// Where a node's daemon answers HTTP, inside its namespace.
pub const HTTP: &str = "127.0.0.1:9464";
/// The OpenFlow port of each node's pod.
pub const POD_PORT: u32 = 4;
/// The OpenFlow port of each node's Geneve tunnel.
pub const TUNNEL_PORT: u32 = 3;

/// One node: its namespace, OVS, daemon and pod.
pub struct NodeNs {
    pub index: u8,
    pub daemon: Option<Child>,
    pub log: PathBuf,
    pub pod: Netns,
    pub ovs: Ovs,
    /// Dropped last: deleting it removes every link inside (underlay, the pod's host end).
    pub ns: Netns,
}

impl NodeNs {
    /// Node N's underlay address.
    pub fn underlay_ip(index: u8) -> String {
        format!("172.31.0.{index}")
    }

    /// Node N's pod address.
    pub fn pod_ip(index: u8) -> IpAddr {
        IpAddr::from([10, 244, index, 2])
    }

    fn mac(index: u8, last: u8) -> String {
        format!("0a:58:0a:f4:{index:02x}:{last:02x}")
    }

    /// Node `index` (1 or 2): OVS inside `ns` with br-phy (holding `underlay`, already moved
    /// into `ns`, and the underlay address) and br-int (uplink, gateway, Geneve tunnel and one
    /// pod); OVS's tunnel route to the underlay subnet; the other node's underlay MAC known
    /// (the first packet into the tunnel is not lost to ARP resolution).
    fn start(index: u8, ns: Netns, underlay: &str) -> NodeNs {
        let dir = std::env::temp_dir().join(unique("sf-node-"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(repo().join("scripts/ovs-sandbox.sh"))
            .arg("up-real")
            .arg(&dir)
            .args(["br-phy", BRIDGE])
            .output()
            .unwrap();
        assert!(out.status.success(), "node {index}: OVS did not start: {}", String::from_utf8_lossy(&out.stderr));
        let ovs = Ovs { dir };
        let hwaddr = |i: u8| format!("02:00:ac:1f:00:{i:02x}");
        ovs.ok(
            "ovs-vsctl",
            &[
                "add-port",
                "br-phy",
                underlay,
                "--",
                "set",
                "bridge",
                "br-phy",
                &format!("other_config:hwaddr={}", hwaddr(index)),
            ],
        );
        ns.ok("ip", &["link", "set", underlay, "up"]);
        ethtool_tx_off(Some(&ns), underlay);
        ns.ok("ip", &["addr", "add", &format!("{}/24", Self::underlay_ip(index)), "dev", "br-phy"]);
        ns.ok("ip", &["link", "set", "br-phy", "up"]);
        // --disable-system-route: OVS's tunnel routing table is ours to fill.
        ovs.ok("ovs-appctl", &["ovs/route/add", "172.31.0.0/24", "br-phy"]);
        let other = 3 - index;
        ovs.ok("ovs-appctl", &["tnl/neigh/set", "br-phy", &Self::underlay_ip(other), &hwaddr(other)]);
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br-phy", "priority=0,actions=NORMAL"]);
        #[rustfmt::skip]
        ovs.ok("ovs-vsctl", &[
            "add-port", BRIDGE, "up0", "--", "set", "interface", "up0", "type=internal", "ofport_request=1",
            "--", "add-port", BRIDGE, "gw0", "--", "set", "interface", "gw0", "type=internal", "ofport_request=2",
            "--", "add-port", BRIDGE, "gnv0", "--", "set", "interface", "gnv0", "type=geneve",
            "options:remote_ip=flow", &format!("ofport_request={TUNNEL_PORT}"),
        ]);

        // The pod: a namespace whose veth's host end lives in the node's namespace.
        let pod = Netns::new("sfn-pod-");
        let host_if = unique("sfnp");
        sh("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod.name]);
        pod.own_link(&host_if);
        sh("ip", &["link", "set", &host_if, "netns", &ns.name]);
        ns.ok("ip", &["link", "set", &host_if, "up"]);
        ethtool_tx_off(Some(&ns), &host_if);
        pod.ok("ip", &["link", "set", "eth0", "address", &Self::mac(index, 2)]);
        pod.ok("ip", &["addr", "add", &format!("{}/24", Self::pod_ip(index)), "dev", "eth0"]);
        pod.ok("ip", &["link", "set", "eth0", "up"]);
        pod.ok("ip", &["route", "add", "10.244.0.0/16", "via", &format!("10.244.{index}.1")]);
        ethtool_tx_off(Some(&pod), "eth0");
        ovs.ok(
            "ovs-vsctl",
            &["add-port", BRIDGE, &host_if, "--", "set", "interface", &host_if, &format!("ofport_request={POD_PORT}")],
        );
        let log = ovs.dir.join("shardflow.log");
        NodeNs { index, daemon: None, log, pod, ovs, ns }
    }

    /// Node N's configuration: its pod range, gateway, ports and pod, and the tunnel route to
    /// the other node's pods.
    pub fn config(&self) -> String {
        let (n, other) = (self.index, 3 - self.index);
        format!(
            "[shards]\ncount = 2\n\n[pipeline]\npod_cidr = \"10.244.{n}.0/24\"\nservice_cidr = \"10.96.0.0/12\"\n\
             gateway_ip = \"10.244.{n}.1\"\ngateway_mac = \"{}\"\nuplink_port = 1\ngateway_port = 2\n\
             tunnel_port = {TUNNEL_PORT}\n\n[[pipeline.local_pods]]\nport = {POD_PORT}\nip = \"{}\"\nmac = \"{}\"\n\n\
             [[pipeline.tunnel_routes]]\ncidr = \"10.244.{other}.0/24\"\nremote_ip = \"{}\"\n",
            format_args!("02:00:0a:f4:{n:02x}:01"),
            Self::pod_ip(n),
            Self::mac(n, 2),
            Self::underlay_ip(other)
        )
    }

    /// The daemon of this node, inside its namespace (2 shards on 127.0.0.1:6653-6654), br-int
    /// pointed at both; waits until the bridge is connected to both shards and ready.
    pub fn start_daemon(&mut self) {
        let cfg = self.ovs.dir.join("shardflow.toml");
        std::fs::write(&cfg, self.config()).unwrap();
        let err = std::fs::File::create(&self.log).unwrap();
        let child = with_token(&mut Command::new("ip"))
            .args(["netns", "exec", &self.ns.name, env!("CARGO_BIN_EXE_shardflow"), "run"])
            .args(["--http", HTTP, "--log-level", "info", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let up = wait_until(Duration::from_secs(10), || self.get("/healthz").is_some_and(|(st, _)| st == 200));
        assert!(up, "node {}: the daemon did not answer /healthz:\n{}", self.index, self.stderr());
        self.ovs.ok("ovs-vsctl", &["set-controller", BRIDGE, "tcp:127.0.0.1:6653", "tcp:127.0.0.1:6654"]);
        for u in self.ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]).split_whitespace() {
            self.ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
        }
        let ok = wait_until(Duration::from_secs(20), || {
            let connected = self.get("/v1/switches").is_some_and(|(st, b)| {
                st == 200
                    && serde_json::from_str::<Value>(&b)
                        .ok()
                        .and_then(|v| v.as_array().cloned())
                        .is_some_and(|a| a.iter().any(|s| s["connections"].as_u64() == Some(2)))
            });
            connected && self.get("/readyz").is_some_and(|(st, _)| st == 200)
        });
        assert!(ok, "node {}: br-int not connected and ready:\n{}", self.index, self.stderr());
    }

    /// A GET to this node's daemon, made from inside its namespace.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let path = path.to_string();
        self.ns.run(move || http_request(HTTP, "GET", &path, "").ok())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
