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
    assert!(addrs.contains(&"10.99.0.2".parse().unwrap()) && addrs.contains(&"fd00:99::2".parse().unwrap()), "{addrs:?}");
    assert!(ip_json(Some(&ns), &["link", "show", "dev", "lo"])[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    // Routes: the default through the address's gateway, the other through its own.
    let routes = ip_json(Some(&ns), &["route", "show"]);
    let via = |dst: &str| {
        routes.as_array().unwrap().iter().find(|r| r["dst"] == dst).map(|r| r["gateway"].as_str().unwrap_or("").to_string())
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
