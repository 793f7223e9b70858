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

// === the plugin binary, invoked as kubelet would (tests/support/pods.rs `Cni`) ===

use std::path::Path;
use std::time::Duration;

use support::pods::{Cni, CniOutput};
use support::{wait_until, Ovs};

/// The leases host-local holds for this network (one file per address in `dataDir/NAME/`).
fn leases(cni: &Cni) -> Vec<String> {
    let dir = cni.data_dir.join(&cni.name);
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.parse::<IpAddr>().is_ok());
    v.sort();
    v
}

/// `external_ids` of an OVS Interface, as `key=value` strings with the quotes taken off.
fn external_ids(ovs: &Ovs, iface: &str) -> Vec<String> {
    let raw = ovs.get("Interface", iface, "external_ids").unwrap_or_default();
    raw.trim_matches(['{', '}']).split(", ").filter(|s| !s.is_empty()).map(|kv| kv.replace('"', "")).collect()
}

fn assert_error(out: &CniOutput, code: u64, what: &str) {
    assert!(!out.ok, "{what}: succeeded: {}", out.json);
    assert_eq!(out.json["code"].as_u64(), Some(code), "{what}: {} / {}", out.json, out.stderr);
    assert_eq!(out.json["cniVersion"], "1.0.0", "{what}: {}", out.json);
    assert!(out.json["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", out.json);
}

fn network(ovs: &Ovs, bridge: &str, subnet: &str, gateway: &str) -> Cni {
    let mut cni = Cni::new(ovs, bridge, subnet);
    cni.gateway = Some(gateway.into());
    cni.routes = vec!["0.0.0.0/0".into()];
    cni
}

/// ADD -> the pod's interface with its address and MAC, TX checksumming off on both ends, the
/// OVS port (opened by ovs-vswitchd: it has an OpenFlow port number) with the pod's
/// external_ids; CHECK passes, and fails (code 100) once the port's external_ids are changed
/// behind its back; DEL -> port, veth and lease gone; DEL again succeeds; DEL of a pod whose
/// namespace is already gone succeeds and still releases everything.
#[test]
fn add_check_del_on_a_real_ovs_with_host_local() {
    let bridge = unique("sfbr");
    let ovs = Ovs::start_real(&[&bridge]);
    let cni = network(&ovs, &bridge, "10.244.7.0/24", "10.244.7.1");

    let pod = cni.add_pod("default", "web-0");
    let r = &pod.result;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert!(pod.host_if.starts_with("sf") && pod.host_if.len() <= 15, "{r}");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"].as_str(), Some(pod.ns.path().to_str().unwrap()));
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["ips"][0]["gateway"], "10.244.7.1");
    // The pod: its address, its MAC as reported, a default route through the gateway.
    assert!(pod.ns.addrs("eth0").contains(&pod.ip), "{:?} vs {}", pod.ns.addrs("eth0"), pod.ip);
    assert_eq!(pod.ns.mac("eth0"), pod.mac);
    assert!(pod.ns.ok("ip", &["route", "show", "default"]).contains("via 10.244.7.1"));
    assert!(tx_checksum_off(None, &pod.host_if) && tx_checksum_off(Some(&pod.ns), "eth0"));
    // OVS: the port on the bridge, opened as a real veth, with the pod's external_ids.
    assert!(ovs.ports(&bridge).contains(&pod.host_if), "{:?}", ovs.ports(&bridge));
    assert!(wait_until(Duration::from_secs(5), || ovs.ofport(&pod.host_if).is_some()), "no ofport for {}", pod.host_if);
    let ids = external_ids(&ovs, &pod.host_if);
    for want in [
        format!("attached-mac={}", pod.mac),
        format!("ip_address={}/24", pod.ip),
        "pod-name=web-0".to_string(),
        "pod-namespace=default".to_string(),
        format!("container-id={}", pod.container_id),
    ] {
        assert!(ids.contains(&want), "{want} not in {ids:?}");
    }
    assert_eq!(leases(&cni), vec![pod.ip.to_string()]);

    // CHECK with the ADD result as prevResult.
    let mut conf = cni.conf();
    conf["prevResult"] = pod.result.clone();
    // As kubelet sends them (host-local refuses unknown args without IgnoreUnknown).
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
    let check = |conf: &Value| cni.invoke_with("CHECK", &pod.container_id, Some(&pod.ns.path()), "eth0", args, conf);
    let out = check(&conf);
    assert!(out.ok, "CHECK: {} {}", out.json, out.stderr);
    ovs.ok("ovs-vsctl", &["set", "interface", &pod.host_if, "external_ids:attached-mac=02:00:00:00:00:01"]);
    let out = check(&conf);
    assert_error(&out, 100, "CHECK after the port's attached-mac changed");
    assert!(out.json["details"].as_str().unwrap_or("").contains("attached-mac"), "{}", out.json);
    let mut no_prev = cni.conf();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    assert_error(&check(&no_prev), 7, "CHECK without prevResult");

    // DEL: everything goes; DEL again is fine.
    let out = cni.del_pod(&pod);
    assert!(out.ok && out.json.is_null(), "DEL: {} {}", out.json, out.stderr);
    assert!(!ovs.ports(&bridge).contains(&pod.host_if), "port left: {:?}", ovs.ports(&bridge));
    assert!(ovs.get("Interface", &pod.host_if, "name").is_none(), "Interface row left");
    assert!(!host_link_exists(&pod.host_if), "host veth left");
    assert!(!pod.ns.exec("ip", &["link", "show", "dev", "eth0"]).status.success(), "eth0 left in the pod");
    assert!(leases(&cni).is_empty(), "lease left: {:?}", leases(&cni));
    let out = cni.del_pod(&pod);
    assert!(out.ok, "second DEL: {} {}", out.json, out.stderr);

    // A pod whose namespace is gone before DEL (the runtime removed it first).
    let pod2 = cni.add_pod("default", "web-1");
    sh("ip", &["netns", "del", &pod2.ns.name]);
    let out = cni.invoke("DEL", &pod2.container_id, Some(&pod2.ns.path()), "eth0", "");
    assert!(out.ok, "DEL without its namespace: {} {}", out.json, out.stderr);
    assert!(!ovs.ports(&bridge).contains(&pod2.host_if) && !host_link_exists(&pod2.host_if));
    assert!(leases(&cni).is_empty(), "lease left: {:?}", leases(&cni));
}

/// Errors are spec JSON with the spec's codes and a non-zero exit, and a failed ADD leaves
/// nothing behind (no veth, no port, no lease).
#[test]
fn errors_are_spec_codes_and_a_failed_add_leaves_nothing() {
    let bridge = unique("sfbr");
    let ovs = Ovs::start_real(&[&bridge]);
    let cni = network(&ovs, &bridge, "10.244.8.0/24", "10.244.8.1");
    let ns = Netns::new("sfcnie-");
    let id = format!("{}-c", ns.name);
    let add = |conf: &Value, netns: Option<&Path>| cni.invoke_with("ADD", &id, netns, "eth0", "", conf);

    let out = add(&Value::String("not an object".into()), Some(&ns.path()));
    assert_error(&out, 6, "a config that is not an object");
    let mut conf = cni.conf();
    conf["cniVersion"] = "0.2.0".into();
    let out = add(&conf, Some(&ns.path()));
    assert_eq!(out.json["code"], 1, "{}", out.json);
    assert_error(&add(&cni.conf(), None), 4, "ADD without CNI_NETNS");
    assert_error(&add(&cni.conf(), Some(Path::new("/run/netns/sf-none"))), 3, "ADD into a missing netns");
    let mut conf = cni.conf();
    conf["ipam"]["type"] = "no-such-ipam".into();
    assert_error(&add(&conf, Some(&ns.path())), 7, "an IPAM plugin not on CNI_PATH");
    let mut conf = cni.conf();
    conf["mtu"] = 9.into();
    assert_error(&add(&conf, Some(&ns.path())), 7, "mtu 9");
    // OVSDB not there: try again later, before any lease is taken.
    let mut conf = cni.conf();
    conf["ovsdb"] = format!("unix:{}/nothing.sock", ovs.dir.display()).into();
    assert_error(&add(&conf, Some(&ns.path())), 11, "no OVSDB");
    assert!(leases(&cni).is_empty());
    // A bridge that does not exist: try again later, and the veth and the lease are undone.
    let mut conf = cni.conf();
    conf["bridge"] = "sfnobridge".into();
    let out = add(&conf, Some(&ns.path()));
    assert_error(&out, 11, "ADD to a missing bridge");
    let host = veth::host_veth_name(&id, "eth0");
    assert!(!host_link_exists(&host), "veth left after a failed ADD");
    assert!(!ns.exec("ip", &["link", "show", "dev", "eth0"]).status.success(), "eth0 left after a failed ADD");
    assert!(leases(&cni).is_empty(), "lease left after a failed ADD: {:?}", leases(&cni));
    assert!(ovs.get("Interface", &host, "name").is_none(), "Interface row left after a failed ADD");

    // VERSION needs nothing else.
    let out = cni.invoke_with("VERSION", "", None, "", "", &serde_json::json!({"cniVersion": "1.0.0"}));
    assert!(out.ok, "{} {}", out.json, out.stderr);
    assert_eq!(out.json["supportedVersions"], serde_json::json!(["1.0.0"]));
    // An unknown command.
    assert_error(&cni.invoke("UP", &id, Some(&ns.path()), "eth0", ""), 4, "CNI_COMMAND=UP");
}
