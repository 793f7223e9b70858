//! The node: what each port of the node's bridge is (a pod, the gateway, the uplink, the tunnel,
//! or a plain learning port), as Open vSwitch's database says.
//!
//! This is the shared vocabulary between the OVSDB client (which builds a [`NodeView`] from the
//! Bridge, Port and Interface tables), the CNI plugin (which writes the `external_ids` read here)
//! and the shards (which install and remove a pod's flows when it comes and goes). Nothing here
//! does IO: a view is built from rows, two views are compared with [`NodeView::diff`].

pub mod ovsdb_bridge;
pub mod ovsdb_rows;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::packet::MacAddr;

/// `external_ids` keys of an Interface that make it a local pod (the ones Antrea and
/// ovn-kubernetes use, so a node's existing tooling reads them).
pub mod keys {
    pub const ATTACHED_MAC: &str = "attached-mac";
    /// Comma-separated CIDRs, IPv4 and/or IPv6 (`10.244.1.2/24,fd00::2/64`).
    pub const IP_ADDRESS: &str = "ip_address";
    pub const POD_NAME: &str = "pod-name";
    pub const POD_NAMESPACE: &str = "pod-namespace";
    pub const CONTAINER_ID: &str = "container-id";
    /// `gateway`, `uplink` or `tunnel`: an infrastructure port.
    pub const ROLE: &str = "shardflow-role";
}

/// A local pod, from its Interface's `external_ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub mac: MacAddr,
    /// Its addresses (the prefix lengths of `ip_address` are not kept: flows match hosts).
    pub ips: Vec<IpAddr>,
    pub name: String,
    pub namespace: String,
    pub container_id: String,
}

/// What a port of the bridge is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRole {
    Pod(PodInfo),
    /// The host's interface on the pod network (`shardflow-role=gateway`).
    Gateway,
    /// The node's NIC towards other nodes (`shardflow-role=uplink`).
    Uplink,
    /// An overlay tunnel port (`shardflow-role=tunnel`, or a `geneve`/`vxlan` interface).
    Tunnel,
    /// No metadata: the Tracker learns who is behind it (zero-config).
    Learning,
}

/// One port of the node's bridge that has an OpenFlow port number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePort {
    /// The Interface's name (unique on a host).
    pub name: String,
    pub ofport: u32,
    pub role: PortRole,
}

/// The node's bridge as the database has it now. Ports without an OpenFlow port number yet
/// (`ofport` empty or -1: being added, or failed) are not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The bridge's name (`[node] bridge`, `br-int` by default).
    pub bridge: String,
    /// Its datapath id, once ovs-vswitchd has set `Bridge.datapath_id`.
    pub datapath_id: Option<u64>,
    /// By interface name.
    pub ports: BTreeMap<String, NodePort>,
}

/// What changed between two views, port by port (a port whose number or role changed is
/// `Changed`, so that its old flows go before its new ones come).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeChange {
    Added(NodePort),
    Removed(NodePort),
    Changed { old: NodePort, new: NodePort },
}

impl NodeView {
    /// The changes that turn `self` into `next`, in interface-name order.
    pub fn diff(&self, next: &NodeView) -> Vec<NodeChange> {
        let mut out = Vec::new();
        for (name, old) in &self.ports {
            match next.ports.get(name) {
                None => out.push(NodeChange::Removed(old.clone())),
                Some(new) if new != old => out.push(NodeChange::Changed { old: old.clone(), new: new.clone() }),
                Some(_) => {}
            }
        }
        for (name, new) in &next.ports {
            if !self.ports.contains_key(name) {
                out.push(NodeChange::Added(new.clone()));
            }
        }
        out
    }

    /// The local pods, in interface-name order.
    pub fn pods(&self) -> impl Iterator<Item = (&NodePort, &PodInfo)> {
        self.ports.values().filter_map(|p| match &p.role {
            PortRole::Pod(info) => Some((p, info)),
            _ => None,
        })
    }
}

/// A new view and how it differs from the one before, as the OVSDB client hands it to the
/// shards. The first update after a (re)connection carries the whole bridge as `Added`
/// (or the difference to what the daemon knew before the reconnection).
#[derive(Debug, Clone)]
pub struct NodeUpdate {
    pub view: std::sync::Arc<NodeView>,
    pub changes: Vec<NodeChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, ofport: u32, role: PortRole) -> NodePort {
        NodePort { name: name.into(), ofport, role }
    }

    fn pod(last: u8) -> PortRole {
        PortRole::Pod(PodInfo {
            mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, last]),
            ips: vec![IpAddr::from([10, 244, 1, last])],
            name: format!("pod{last}"),
            namespace: "default".into(),
            container_id: format!("c{last}"),
        })
    }

    fn view(ports: Vec<NodePort>) -> NodeView {
        NodeView {
            bridge: "br-int".into(),
            datapath_id: Some(1),
            ports: ports.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    #[test]
    fn diff_names_added_removed_and_changed_ports() {
        let before = view(vec![port("a", 2, pod(2)), port("b", 3, PortRole::Gateway), port("c", 4, pod(4))]);
        let after = view(vec![port("a", 2, pod(2)), port("b", 3, PortRole::Uplink), port("d", 5, pod(5))]);
        let d = before.diff(&after);
        assert_eq!(
            d,
            vec![
                NodeChange::Changed { old: port("b", 3, PortRole::Gateway), new: port("b", 3, PortRole::Uplink) },
                NodeChange::Removed(port("c", 4, pod(4))),
                NodeChange::Added(port("d", 5, pod(5))),
            ]
        );
        assert!(after.diff(&after).is_empty());
        assert_eq!(after.pods().map(|(p, _)| p.ofport).collect::<Vec<_>>(), vec![2, 5]);
    }
}
