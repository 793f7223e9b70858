//! The CNI plugin `shardflow-cni` against the real thing: network namespaces made by the test,
//! netlink, ethtool, host-local IPAM (Debian's containernetworking-plugins) and a private Open
//! vSwitch with real (veth) ports. Needs root, `ip`, `ethtool`, Open vSwitch and
//! /usr/lib/cni/host-local (scripts/test.sh installs them). `ip` and `ethtool` serve as
//! independent oracles of what the plugin did over netlink.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;

use serde_json::Value;
use shardflow::cni::result::{CniResult, IpConfig, Route};
use shardflow::cni::{netns, veth};
use support::pods::{host_link_exists, sh, tx_checksum_off, unique, Netns};

fn cidr(s: &str) -> shardflow::cni::result::Cidr {
    s.parse().unwrap()
}

fn ip_json(ns: Option<&Netns>, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = match ns {
        Some(ns) => ns.ok("ip", &full),
        None => sh("ip", &full),
    };
    serde_json::from_str(&text).unwrap()
}

/// The library's netlink half on its own: the pair is made with the pod's end inside the
/// namespace, MTU, addresses (v4 and v6), routes (gateway from the IPAM address or the route's
/// own), both ends up with TX checksumming off; deleting the host end removes both, twice is a
/// no-op. `ip -j` and `ethtool -k` check each point.
#[test]
fn veth_pair_configured_in_a_real_namespace() {
    let ns = Netns::new("sfcni-");
    let host = unique("sfcnih");
    let lease = CniResult {
        cni_version: "1.0.0".into(),
        ips: vec![
            IpConfig { address: cidr("10.99.0.2/24"), gateway: Some(IpAddr::from([10, 99, 0, 1])), interface: None },
            IpConfig { address: cidr("fd00:99::2/64"), gateway: None, interface: None },
        ],
        routes: vec![
            Route { dst: cidr("0.0.0.0/0"), gw: None },
            Route { dst: cidr("10.98.0.0/16"), gw: Some(IpAddr::from([10, 99, 0, 254])) },
        ],
        ..CniResult::default()
    };
    let file = netns::open_existing(&ns.path()).unwrap();
    let pair = veth::create(&file, &host, "eth0", Some(1400), &lease).unwrap_or_else(|e| panic!("{e}"));
    ns.own_link(&host);

    // The pod's end: the MAC reported, the MTU, up, both addresses.
    let link = &ip_json(Some(&ns), &["link", "show", "dev", "eth0"])[0];
    assert_eq!(link["address"], Value::String(pair.container.mac.clone()));
    assert_eq!(link["mtu"], 1400);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{link}");
    let addrs = ns.addrs("eth0");
    assert!(
        addrs.contains(&"10.99.0.2".parse().unwrap()) && addrs.contains(&"fd00:99::2".parse().unwrap()),
        "{addrs:?}"
    );
    assert!(ip_json(Some(&ns), &["link", "show", "dev", "lo"])[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    // Routes: the default through the address's gateway, the other through its own.
    let routes = ip_json(Some(&ns), &["route", "show"]);
    let via = |dst: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == dst)
            .map(|r| r["gateway"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(via("default").as_deref(), Some("10.99.0.1"), "{routes}");
    assert_eq!(via("10.98.0.0/16").as_deref(), Some("10.99.0.254"), "{routes}");
    // The host end: in the host namespace, same MTU, up; TX checksumming off on both ends.
    let hl = &ip_json(None, &["link", "show", "dev", &host])[0];
    assert_eq!((hl["mtu"].as_u64(), hl["address"].as_str()), (Some(1400), Some(pair.host.mac.as_str())));
    assert!(tx_checksum_off(None, &host), "ethtool -k {host}");
    assert!(tx_checksum_off(Some(&ns), "eth0"), "ethtool -k eth0 in the pod");
    // The library's own reader agrees, and says "on" for a fresh veth (so it can tell).
    let plain = unique("sfcnip");
    sh("ip", &["link", "add", &plain, "type", "veth", "peer", "name", &format!("{plain}b")]);
    ns.own_link(&plain);
    assert!(veth::tx_checksum_on(&plain).unwrap(), "a fresh veth has TX checksumming on");
    assert!(!veth::tx_checksum_on(&host).unwrap());
    assert!(!netns::run(Some(&file), |_| async { veth::tx_checksum_on("eth0") }).unwrap());

    // Delete: both ends go; a second delete finds nothing and is fine.
    let h = host.clone();
    assert!(netns::run(None, |nl| async move { veth::delete(&nl, &h).await }).unwrap());
    assert!(!host_link_exists(&host));
    assert!(!ns.exec("ip", &["link", "show", "dev", "eth0"]).status.success(), "eth0 left in the pod");
    let h = host.clone();
    assert!(!netns::run(None, |nl| async move { veth::delete(&nl, &h).await }).unwrap());
}

/// A namespace path that is not there is "container unknown" (code 3); a file that is not a
/// namespace cannot be entered (code 5), and nothing is created.
#[test]
fn missing_or_bogus_namespaces_are_refused() {
    let e = netns::open_existing(std::path::Path::new("/run/netns/sf-no-such-ns")).err().unwrap();
    assert_eq!(e.code, 3);
    let f = std::env::temp_dir().join(unique("sfcni-notns-"));
    std::fs::write(&f, "x").unwrap();
    let file = netns::open_existing(&f).unwrap();
    let e = netns::run(Some(&file), |_| async { Ok(()) }).err().unwrap();
    assert_eq!(e.code, 5, "{e}");
    let _ = std::fs::remove_file(&f);
}

// === the plugin binary, invoked as kubelet would, on a node of its own ===

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use support::pods::{cni_binary, Cni, CniOutput, CNI_PLUGINS};
use support::{repo, wait_until, Ovs};

/// A node: a network namespace of the test's own holding a real-port OVS (started inside it)
/// and the host ends of the pods' veths (the plugin runs inside it, as on a node's host).
///
/// Why a namespace: every real-port ovs-vswitchd opens a tap named `ovs-netdev` for its
/// userspace datapath, so two in one namespace collide ("Device or resource busy") and tests
/// running in parallel, or any other real-port OVS on the machine, would break each other.
struct Node {
    // Dropped in this order: OVS stopped, then the namespace (with the host ends) deleted.
    ovs: Ovs,
    ns: Netns,
    bridge: String,
    cni: Cni,
}

/// A pod added through the plugin, with what its ADD result said.
struct Pod {
    ns: Netns,
    container_id: String,
    ip: IpAddr,
    mac: String,
    host_if: String,
    result: Value,
}

impl Node {
    fn start(subnet: &str, gateway: &str) -> Node {
        let ns = Netns::new("sfnode-");
        let bridge = unique("sfbr");
        let dir = std::env::temp_dir().join(unique("sf-cni-ovs-"));
        std::fs::create_dir_all(&dir).unwrap();
        let sandbox = repo().join("scripts/ovs-sandbox.sh");
        let out = ns.exec(sandbox.to_str().unwrap(), &["up-real", dir.to_str().unwrap(), &bridge]);
        let ovs = Ovs { dir };
        assert!(out.status.success(), "ovs sandbox in {}: {}", ns.name, String::from_utf8_lossy(&out.stderr));
        let mut cni = Cni::new(&ovs, &bridge, subnet);
        cni.gateway = Some(gateway.into());
        cni.routes = vec!["0.0.0.0/0".into()];
        Node { ovs, ns, bridge, cni }
    }

    /// One plugin call inside the node's namespace with kubelet's environment and `conf` on
    /// stdin (`CNI_PATH`: the plugin's folder, then host-local's).
    fn invoke_with(
        &self,
        command: &str,
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
        args: &str,
        conf: &Value,
    ) -> CniOutput {
        let bin = cni_binary();
        let cni_path = format!("{}:{CNI_PLUGINS}", bin.parent().unwrap().display());
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name])
            .arg(&bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", cni_path)
            .env("CNI_ARGS", args)
            .env("OVS_RUNDIR", &self.ovs.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(n) = netns {
            cmd.env("CNI_NETNS", n);
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{command}: stdout is not JSON ({e}): {text}"))
        };
        CniOutput { ok: out.status.success(), json, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    fn invoke(&self, command: &str, id: &str, netns: Option<&Path>, ifname: &str, args: &str) -> CniOutput {
        self.invoke_with(command, id, netns, ifname, args, &self.cni.conf())
    }

    /// ADD of pod `namespace/name` in a fresh namespace; panics on a plugin error.
    fn add_pod(&self, namespace: &str, name: &str) -> Pod {
        let ns = Netns::new("sfpod-");
        let container_id = format!("{}-{name}", ns.name);
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}");
        let out = self.invoke("ADD", &container_id, Some(&ns.path()), "eth0", &args);
        assert!(out.ok, "ADD {namespace}/{name}: {} {}", out.json, out.stderr);
        let r = out.json;
        let host_if = r["interfaces"][0]["name"].as_str().unwrap().to_string();
        let mac = r["interfaces"][1]["mac"].as_str().unwrap().to_string();
        let ip = r["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().parse().unwrap();
        Pod { ns, container_id, ip, mac, host_if, result: r }
    }

    fn del_pod(&self, pod: &Pod) -> CniOutput {
        self.invoke("DEL", &pod.container_id, Some(&pod.ns.path()), "eth0", "IgnoreUnknown=1")
    }

    /// True when link `name` exists in the node's namespace (where the host ends are).
    fn has_link(&self, name: &str) -> bool {
        self.ns.exec("ip", &["link", "show", "dev", name]).status.success()
    }

    /// The leases host-local holds for the network (one file per address in `dataDir/NAME/`).
    fn leases(&self) -> Vec<String> {
        let dir = self.cni.data_dir.join(&self.cni.name);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| n.parse::<IpAddr>().is_ok());
        v.sort();
        v
    }

    /// `external_ids` of an OVS Interface, as `key=value` strings with the quotes taken off.
    fn external_ids(&self, iface: &str) -> Vec<String> {
        let raw = self.ovs.get("Interface", iface, "external_ids").unwrap_or_default();
        raw.trim_matches(['{', '}']).split(", ").filter(|s| !s.is_empty()).map(|kv| kv.replace('"', "")).collect()
    }
}

fn assert_error(out: &CniOutput, code: u64, what: &str) {
    assert!(!out.ok, "{what}: succeeded: {}", out.json);
    assert_eq!(out.json["code"].as_u64(), Some(code), "{what}: {} / {}", out.json, out.stderr);
    assert_eq!(out.json["cniVersion"], "1.0.0", "{what}: {}", out.json);
    assert!(out.json["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", out.json);
}

/// ADD -> the pod's interface with its address and MAC, TX checksumming off on both ends, the
/// OVS port (opened by ovs-vswitchd: it has an OpenFlow port number) with the pod's
/// external_ids; CHECK passes, and fails (code 100) once the port's external_ids are changed
/// behind its back; DEL -> port, veth and lease gone; DEL again succeeds; DEL of a pod whose
/// namespace is already gone succeeds and still releases everything.
#[test]
fn add_check_del_on_a_real_ovs_with_host_local() {
    let node = Node::start("10.244.7.0/24", "10.244.7.1");
    let ovs = &node.ovs;
    let pod = node.add_pod("default", "web-0");
    let r = &pod.result;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert!(pod.host_if.starts_with("sf") && pod.host_if.len() <= 15, "{r}");
    assert!(r["interfaces"][0]["sandbox"].is_null(), "{r}");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"].as_str(), Some(pod.ns.path().to_str().unwrap()));
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["ips"][0]["gateway"], "10.244.7.1");
    // The pod: its address, its MAC as reported, a default route through the gateway.
    assert!(pod.ns.addrs("eth0").contains(&pod.ip), "{:?} vs {}", pod.ns.addrs("eth0"), pod.ip);
    assert_eq!(pod.ns.mac("eth0"), pod.mac);
    assert!(pod.ns.ok("ip", &["route", "show", "default"]).contains("via 10.244.7.1"));
    assert!(tx_checksum_off(Some(&node.ns), &pod.host_if), "ethtool -k {} on the node", pod.host_if);
    assert!(tx_checksum_off(Some(&pod.ns), "eth0"), "ethtool -k eth0 in the pod");
    // OVS: the port on the bridge, opened as a real veth, with the pod's external_ids.
    assert!(ovs.ports(&node.bridge).contains(&pod.host_if), "{:?}", ovs.ports(&node.bridge));
    let opened = wait_until(Duration::from_secs(5), || ovs.ofport(&pod.host_if).is_some());
    assert!(opened, "no ofport for {}: {:?}", pod.host_if, ovs.get("Interface", &pod.host_if, "error"));
    let ids = node.external_ids(&pod.host_if);
    for want in [
        format!("attached-mac={}", pod.mac),
        format!("ip_address={}/24", pod.ip),
        "pod-name=web-0".to_string(),
        "pod-namespace=default".to_string(),
        format!("container-id={}", pod.container_id),
    ] {
        assert!(ids.contains(&want), "{want} not in {ids:?}");
    }
    assert_eq!(node.leases(), vec![pod.ip.to_string()]);

    // CHECK with the ADD result as prevResult.
    let mut conf = node.cni.conf();
    conf["prevResult"] = pod.result.clone();
    // As kubelet sends them (host-local refuses unknown args without IgnoreUnknown).
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
    let check = |conf: &Value| node.invoke_with("CHECK", &pod.container_id, Some(&pod.ns.path()), "eth0", args, conf);
    let out = check(&conf);
    assert!(out.ok, "CHECK: {} {}", out.json, out.stderr);
    ovs.ok("ovs-vsctl", &["set", "interface", &pod.host_if, "external_ids:attached-mac=02:00:00:00:00:01"]);
    let out = check(&conf);
    assert_error(&out, 100, "CHECK after the port's attached-mac changed");
    assert!(out.json["details"].as_str().unwrap_or("").contains("attached-mac"), "{}", out.json);
    assert_error(&check(&node.cni.conf()), 7, "CHECK without prevResult");

    // DEL: everything goes; DEL again is fine.
    let out = node.del_pod(&pod);
    assert!(out.ok && out.json.is_null(), "DEL: {} {}", out.json, out.stderr);
    assert!(!ovs.ports(&node.bridge).contains(&pod.host_if), "port left: {:?}", ovs.ports(&node.bridge));
    assert!(ovs.get("Interface", &pod.host_if, "name").is_none(), "Interface row left");
    assert!(!node.has_link(&pod.host_if), "host veth left");
    assert!(!pod.ns.exec("ip", &["link", "show", "dev", "eth0"]).status.success(), "eth0 left in the pod");
    assert!(node.leases().is_empty(), "lease left: {:?}", node.leases());
    let out = node.del_pod(&pod);
    assert!(out.ok, "second DEL: {} {}", out.json, out.stderr);

    // A pod whose namespace is gone before DEL (the runtime removed it first).
    let pod2 = node.add_pod("default", "web-1");
    sh("ip", &["netns", "del", &pod2.ns.name]);
    let out = node.invoke("DEL", &pod2.container_id, Some(&pod2.ns.path()), "eth0", "");
    assert!(out.ok, "DEL without its namespace: {} {}", out.json, out.stderr);
    assert!(!ovs.ports(&node.bridge).contains(&pod2.host_if) && !node.has_link(&pod2.host_if));
    assert!(node.leases().is_empty(), "lease left: {:?}", node.leases());

    // A runtime that sends no K8S_* args: the pod is named by its container id, in a namespace
    // named after the network (the daemon takes a port for a pod only with every key).
    let ns3 = Netns::new("sfpod-");
    let id3 = format!("{}-bare", ns3.name);
    let out = node.invoke("ADD", &id3, Some(&ns3.path()), "eth0", "");
    assert!(out.ok, "ADD without CNI_ARGS: {} {}", out.json, out.stderr);
    let host3 = out.json["interfaces"][0]["name"].as_str().unwrap().to_string();
    let ids = node.external_ids(&host3);
    for want in [format!("pod-name={id3}"), format!("pod-namespace={}", node.cni.name)] {
        assert!(ids.contains(&want), "{want} not in {ids:?}");
    }
    assert!(node.invoke("DEL", &id3, Some(&ns3.path()), "eth0", "").ok);
    assert!(node.leases().is_empty(), "lease left: {:?}", node.leases());
}

/// Errors are spec JSON with the spec's codes and a non-zero exit, and a failed ADD leaves
/// nothing behind (no veth, no port, no lease).
#[test]
fn errors_are_spec_codes_and_a_failed_add_leaves_nothing() {
    let node = Node::start("10.244.8.0/24", "10.244.8.1");
    let ns = Netns::new("sfcnie-");
    let id = format!("{}-c", ns.name);
    let add = |conf: &Value, netns: Option<&Path>| node.invoke_with("ADD", &id, netns, "eth0", "", conf);
    let conf_with = |key: &str, v: Value| {
        let mut c = node.cni.conf();
        c[key] = v;
        c
    };

    assert_error(&add(&Value::String("not an object".into()), Some(&ns.path())), 6, "a config that is not an object");
    let out = add(&conf_with("cniVersion", "0.2.0".into()), Some(&ns.path()));
    assert_eq!(out.json["code"], 1, "{}", out.json);
    assert!(!out.ok);
    assert_error(&add(&node.cni.conf(), None), 4, "ADD without CNI_NETNS");
    assert_error(&add(&node.cni.conf(), Some(Path::new("/run/netns/sf-none"))), 3, "ADD into a missing netns");
    let mut conf = node.cni.conf();
    conf["ipam"]["type"] = "no-such-ipam".into();
    assert_error(&add(&conf, Some(&ns.path())), 7, "an IPAM plugin not on CNI_PATH");
    assert_error(&add(&conf_with("mtu", 9.into()), Some(&ns.path())), 7, "mtu 9");
    // OVSDB not there: try again later, before any lease is taken.
    let nowhere = format!("unix:{}/nothing.sock", node.ovs.dir.display());
    assert_error(&add(&conf_with("ovsdb", nowhere.into()), Some(&ns.path())), 11, "no OVSDB");
    assert!(node.leases().is_empty());
    // A bridge that does not exist: try again later, and the veth and the lease are undone.
    let out = add(&conf_with("bridge", "sfnobridge".into()), Some(&ns.path()));
    assert_error(&out, 11, "ADD to a missing bridge");
    let host = veth::host_veth_name(&id, "eth0");
    assert!(!node.has_link(&host), "veth left after a failed ADD");
    assert!(!ns.exec("ip", &["link", "show", "dev", "eth0"]).status.success(), "eth0 left after a failed ADD");
    assert!(node.leases().is_empty(), "lease left after a failed ADD: {:?}", node.leases());
    assert!(node.ovs.get("Interface", &host, "name").is_none(), "Interface row left after a failed ADD");

    // VERSION needs nothing else.
    let out = node.invoke_with("VERSION", "", None, "", "", &serde_json::json!({"cniVersion": "1.0.0"}));
    assert!(out.ok, "{} {}", out.json, out.stderr);
    assert_eq!(out.json["supportedVersions"], serde_json::json!(["1.0.0"]));
    assert_error(&node.invoke("UP", &id, Some(&ns.path()), "eth0", ""), 4, "CNI_COMMAND=UP");
}

/// Two pods made by the plugin talk TCP through the bridge with a plain NORMAL flow: the
/// plumbing is whole (addresses, MACs, the real veth ports in the userspace datapath, and TX
/// checksums done in software, without which the SYN-ACK would arrive with a bad checksum).
#[test]
fn two_plugin_pods_talk_tcp_through_a_normal_bridge() {
    let node = Node::start("10.244.9.0/24", "10.244.9.1");
    // The bridge's management socket may come a moment after `add-br` returns.
    let ready = || node.ovs.tool("ovs-ofctl", &["-O", "OpenFlow13", "show", &node.bridge]).status.success();
    assert!(wait_until(Duration::from_secs(5), ready), "bridge {} has no management socket", node.bridge);
    node.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", &node.bridge, "actions=NORMAL"]);
    let a = node.add_pod("default", "client");
    let b = node.add_pod("default", "server");
    let to = std::net::SocketAddr::new(b.ip, 8080);
    let _server = b.ns.echo_server(to);
    let (mut s, took) = a.ns.connect(to, Duration::from_secs(3)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let payload = vec![0x5a; 64 * 1024];
    let got = support::pods::echo(&mut s, &payload, Duration::from_secs(5)).unwrap();
    assert_eq!(got, payload, "64 KiB echoed through the bridge");
    eprintln!("connect through a NORMAL bridge: {took:?}");
    drop(s);
    for p in [&a, &b] {
        let out = node.del_pod(p);
        assert!(out.ok, "DEL: {} {}", out.json, out.stderr);
    }
    assert!(node.leases().is_empty());
}
