//! From OVSDB rows to a [`NodeView`]: what each Interface of the node's bridge is. No IO: the
//! rows come from the OVSDB client's monitor cache ([`crate::ovsdb::TableCache`]).
//!
//! The rules, in order, for each Interface of the bridge that has an OpenFlow port number:
//! 1. `external_ids:shardflow-role` = `gateway` | `uplink` | `tunnel` gives that role (another
//!    value is malformed);
//! 2. pod metadata (`ip_address`, `pod-name`, `pod-namespace` or `container-id`) makes it a
//!    pod, and then all five keys must be there and valid (`attached-mac` a unicast MAC,
//!    `ip_address` comma-separated IPv4/IPv6 CIDRs): a half-described pod is malformed, never a
//!    learning port (its traffic would be learned and allowed as anyone's);
//! 3. a `geneve` or `vxlan` interface is a tunnel;
//! 4. the bridge's own internal interface (named as the bridge, OpenFlow `LOCAL`) is left out:
//!    it is the host's stack on the bridge, neither a pod nor a learning port;
//! 5. anything else is a learning port (zero-config; `attached-mac` alone, as libvirt sets it,
//!    stays a learning port).
//!
//! Malformed interfaces are left out of the view and returned, so the caller can warn (once)
//! and count them.

use std::net::IpAddr;

use super::{keys, NodePort, NodeView, PodInfo, PortRole};
use crate::ovsdb::{datum, Row, TableCache};
use crate::packet::MacAddr;

/// The columns the view needs, per table (what to monitor).
pub const MONITORED: &[(&str, &[&str])] = &[
    ("Bridge", &["name", "ports", "datapath_id"]),
    ("Port", &["name", "interfaces"]),
    ("Interface", &["name", "type", "ofport", "external_ids"]),
];

/// An interface left out of the view, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Malformed {
    pub interface: String,
    pub reason: String,
}

/// The view of `bridge` from the cached rows, and the interfaces refused; `None` when the
/// database has no bridge of that name.
pub fn node_view(cache: &TableCache, bridge: &str) -> Option<(NodeView, Vec<Malformed>)> {
    let (_, br) = cache.table("Bridge").find(|(_, r)| r.get("name").and_then(datum::string) == Some(bridge))?;
    let mut view = NodeView {
        bridge: bridge.to_string(),
        datapath_id: br.get("datapath_id").and_then(datum::string).and_then(|s| u64::from_str_radix(s, 16).ok()),
        ports: Default::default(),
    };
    let mut malformed = Vec::new();
    let port_uuids = br.get("ports").map(datum::uuids).unwrap_or_default();
    for pu in port_uuids {
        let Some(port) = cache.row("Port", pu) else { continue };
        for iu in port.get("interfaces").map(datum::uuids).unwrap_or_default() {
            let Some(iface) = cache.row("Interface", iu) else { continue };
            match classify(iface, bridge) {
                Classified::Port(p) => {
                    view.ports.insert(p.name.clone(), p);
                }
                Classified::Skip => {}
                Classified::Malformed(m) => malformed.push(m),
            }
        }
    }
    malformed.sort();
    Some((view, malformed))
}

enum Classified {
    Port(NodePort),
    Skip,
    Malformed(Malformed),
}

fn classify(iface: &Row, bridge: &str) -> Classified {
    let Some(name) = iface.get("name").and_then(datum::string) else { return Classified::Skip };
    // Not yet numbered (`[]`), or failed (-1): not in the view until ovs-vswitchd numbers it.
    let ofport = match iface.get("ofport").and_then(datum::integer).map(u32::try_from) {
        Some(Ok(n)) if n > 0 => n,
        _ => return Classified::Skip,
    };
    let ids = iface.get("external_ids").map(datum::string_map).unwrap_or_default();
    let get = |k: &str| ids.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let bad = |reason: String| Classified::Malformed(Malformed { interface: name.to_string(), reason });
    let port = |role| Classified::Port(NodePort { name: name.to_string(), ofport, role });
    if let Some(role) = get(keys::ROLE) {
        return match role {
            "gateway" => port(PortRole::Gateway),
            "uplink" => port(PortRole::Uplink),
            "tunnel" => port(PortRole::Tunnel),
            other => bad(format!("{}={other:?} is not gateway, uplink or tunnel", keys::ROLE)),
        };
    }
    let pod_keys = [keys::IP_ADDRESS, keys::POD_NAME, keys::POD_NAMESPACE, keys::CONTAINER_ID];
    if pod_keys.iter().any(|k| get(k).is_some()) {
        return match pod_info(&get) {
            Ok(info) => port(PortRole::Pod(info)),
            Err(reason) => bad(reason),
        };
    }
    let kind = iface.get("type").and_then(datum::string).unwrap_or("");
    if kind == "geneve" || kind == "vxlan" {
        return port(PortRole::Tunnel);
    }
    if name == bridge {
        return Classified::Skip;
    }
    port(PortRole::Learning)
}

fn pod_info<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<PodInfo, String> {
    let need = |k: &str| match get(k).map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("pod metadata without {k}")),
    };
    let mac_text = need(keys::ATTACHED_MAC)?;
    let mac: MacAddr =
        mac_text.parse().map_err(|_| format!("{}={mac_text:?} is not a MAC address", keys::ATTACHED_MAC))?;
    if mac.0[0] & 1 != 0 || mac.0 == [0; 6] {
        return Err(format!("{}={mac_text} is not a unicast MAC address", keys::ATTACHED_MAC));
    }
    let ips = parse_cidrs(&need(keys::IP_ADDRESS)?)?;
    Ok(PodInfo {
        mac,
        ips,
        name: need(keys::POD_NAME)?,
        namespace: need(keys::POD_NAMESPACE)?,
        container_id: need(keys::CONTAINER_ID)?,
    })
}

/// `10.244.1.5/24,fd00::5/64` -> the addresses (prefix lengths checked, then dropped).
pub fn parse_cidrs(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{}: {part:?} is not an IP address or CIDR", keys::IP_ADDRESS);
        let (ip, len) = match part.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (part, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        if let Some(len) = len {
            let len: u8 = len.parse().map_err(|_| bad())?;
            if len > if ip.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(bad());
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err(format!("{} has no address", keys::IP_ADDRESS));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::ovsdb::codec::Framer;
    use crate::ovsdb::rpc::{Event, Session};

    /// Real messages captured from ovsdb-server 3.1 (a monitor of the columns in [`MONITORED`]
    /// on a sandbox bridge `br0` with dummy ports, then `ovs-vsctl add-port br0 pod1 -- set
    /// interface pod1 external_ids:...` and `del-port br0 pod1`).
    const REPLY: &str = include_str!("../ovsdb/testdata/monitor_reply.json");
    const ADD: &str = include_str!("../ovsdb/testdata/update_add_pod.json");
    const DEL: &str = include_str!("../ovsdb/testdata/update_del_pod.json");

    /// Feeds captured bytes through the framer and the session into a cache, as the client does.
    fn feed(cache: &mut TableCache, session: &mut Session, bytes: &str) {
        let mut f = Framer::new(1 << 20);
        f.push(bytes.as_bytes());
        for msg in f.drain().unwrap() {
            match session.handle(msg).unwrap() {
                Event::Response { outcome, .. } => cache.apply(&outcome.unwrap()).unwrap(),
                Event::Update { updates, .. } => cache.apply(&updates).unwrap(),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn captured_monitor_and_updates_give_the_view() {
        let mut s = Session::new(4);
        let (id, _) = s.request("monitor", json!([])).unwrap();
        assert_eq!(id, 1, "the captured reply answers id 1");
        let mut cache = TableCache::new(1000);
        feed(&mut cache, &mut s, REPLY);
        let (v, bad) = node_view(&cache, "br0").unwrap();
        assert!(bad.is_empty());
        assert_eq!(v.datapath_id, Some(1));
        let names: Vec<_> = v.ports.keys().cloned().collect();
        assert_eq!(names, vec!["br0-p1", "br0-p2"], "the bridge's internal port is left out");
        assert!(v.ports.values().all(|p| p.role == PortRole::Learning));
        assert!(node_view(&cache, "br-int").is_none());

        // The pod's row first comes without an ofport (not in the view), then with one.
        feed(&mut cache, &mut s, ADD);
        let (v2, _) = node_view(&cache, "br0").unwrap();
        let changes = v.diff(&v2);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let crate::node::NodeChange::Added(p) = &changes[0] else { panic!("{changes:?}") };
        assert_eq!(p.name, "pod1");
        let PortRole::Pod(info) = &p.role else { panic!("{p:?}") };
        assert_eq!(info.mac.to_string(), "0a:58:0a:f4:01:05");
        assert_eq!(info.ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert_eq!(
            (info.name.as_str(), info.namespace.as_str(), info.container_id.as_str()),
            ("web", "default", "abc123")
        );

        feed(&mut cache, &mut s, DEL);
        let (v3, _) = node_view(&cache, "br0").unwrap();
        assert_eq!(v3, v);
    }

    fn cache_with(ifaces: Vec<(&str, &str, Value, Value)>) -> TableCache {
        let mut c = TableCache::new(1000);
        let mut ports = Vec::new();
        let mut upd = serde_json::Map::new();
        let mut port_rows = serde_json::Map::new();
        let mut if_rows = serde_json::Map::new();
        for (i, (name, kind, ofport, ids)) in ifaces.into_iter().enumerate() {
            let (pu, iu) = (format!("p{i}"), format!("i{i}"));
            ports.push(json!(["uuid", pu]));
            port_rows.insert(pu, json!({"new": {"name": name, "interfaces": ["uuid", iu]}}));
            if_rows.insert(iu, json!({"new": {"name": name, "type": kind, "ofport": ofport, "external_ids": ids}}));
        }
        upd.insert(
            "Bridge".into(),
            json!({"b": {"new": {"name": "br-int", "ports": ["set", ports], "datapath_id": ["set", []]}}}),
        );
        upd.insert("Port".into(), Value::Object(port_rows));
        upd.insert("Interface".into(), Value::Object(if_rows));
        c.apply(&Value::Object(upd)).unwrap();
        c
    }

    fn pod_ids(mac: &str, ips: &str) -> Value {
        json!([
            "map",
            [
                ["attached-mac", mac],
                ["container-id", "c1"],
                ["ip_address", ips],
                ["pod-name", "a"],
                ["pod-namespace", "ns"]
            ]
        ])
    }

    #[test]
    fn roles_tunnels_and_malformed_pods() {
        let c = cache_with(vec![
            ("br-int", "internal", json!(65534), json!(["map", []])),
            ("gw0", "internal", json!(2), json!(["map", [["shardflow-role", "gateway"]]])),
            ("eth1", "", json!(3), json!(["map", [["shardflow-role", "uplink"]]])),
            ("gnv0", "geneve", json!(4), json!(["map", []])),
            ("t1", "", json!(5), json!(["map", [["shardflow-role", "tunnel"]]])),
            ("vm1", "", json!(6), json!(["map", [["attached-mac", "52:54:00:00:00:01"], ["iface-id", "x"]]])),
            ("good", "", json!(7), pod_ids("0a:58:0a:f4:01:07", "10.244.1.7/24")),
            ("badmac", "", json!(8), pod_ids("0a:58:zz:f4:01:08", "10.244.1.8/24")),
            ("badcidr", "", json!(9), pod_ids("0a:58:0a:f4:01:09", "10.244.1.9/40")),
            ("half", "", json!(10), json!(["map", [["pod-name", "x"]]])),
            ("mcast", "", json!(11), pod_ids("01:00:5e:00:00:01", "10.244.1.11")),
            ("oddrole", "", json!(12), json!(["map", [["shardflow-role", "router"]]])),
            ("failed", "", json!(-1), json!(["map", []])),
            ("new", "", json!(["set", []]), json!(["map", []])),
        ]);
        let (v, bad) = node_view(&c, "br-int").unwrap();
        let role = |n: &str| v.ports.get(n).map(|p| p.role.clone());
        assert_eq!(role("gw0"), Some(PortRole::Gateway));
        assert_eq!(role("eth1"), Some(PortRole::Uplink));
        assert_eq!(role("gnv0"), Some(PortRole::Tunnel));
        assert_eq!(role("t1"), Some(PortRole::Tunnel));
        assert_eq!(role("vm1"), Some(PortRole::Learning));
        assert!(matches!(role("good"), Some(PortRole::Pod(_))));
        for left_out in ["br-int", "badmac", "badcidr", "half", "mcast", "oddrole", "failed", "new"] {
            assert_eq!(role(left_out), None, "{left_out}");
        }
        let names: Vec<_> = bad.iter().map(|m| m.interface.as_str()).collect();
        assert_eq!(names, vec!["badcidr", "badmac", "half", "mcast", "oddrole"]);
        assert!(bad[0].reason.contains("10.244.1.9/40"), "{:?}", bad[0]);
        assert!(bad[2].reason.contains("attached-mac"), "{:?}", bad[2]);
        assert_eq!(v.datapath_id, None);
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidrs(" 10.0.0.1/24 , fd00::1/64,10.0.0.1").unwrap().len(), 2);
        for bad in ["", ",", "10.0.0.1/33", "fd00::1/129", "10.0.0/24", "0.0.0.0/0", "224.0.0.1/32", "10.0.0.1/x"] {
            assert!(parse_cidrs(bad).is_err(), "{bad}");
        }
    }
}
