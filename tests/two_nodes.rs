//! Two nodes on one machine (issue 8, item 7): two Open vSwitch instances, each in a network
//! namespace of its own with its daemon, joined by a veth underlay and a Geneve port on each
//! br-int (OVS userspace tunnelling). A pod on node 1 reaches a pod on node 2 through node 1's
//! tunnel route (`[[pipeline.tunnel_routes]]`), and the return flows are learned with `tun_dst`
//! on both nodes (tables 15 -> 6).
//!
//! Needs what tests/pods_netns.rs needs (root, `ip netns`, ethtool, Open vSwitch,
//! containernetworking-plugins).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::pods::{echo, BRIDGE};
use support::two_nodes::{NodeNs, TwoNodes};

/// Node N's configuration: its pod range and gateway, and the route to the other node's pods.
fn node_toml(n: u8, other: u8) -> String {
    format!(
        "[pipeline]\npod_cidr = \"10.244.{n}.0/24\"\nservice_cidr = \"10.96.0.0/12\"\ngateway_ip = \"10.244.{n}.1\"\n\
         gateway_mac = \"02:00:0a:f4:0{n}:01\"\n\n[[pipeline.tunnel_routes]]\ncidr = \"10.244.{other}.0/24\"\n\
         remote_ip = \"{}\"\n",
        NodeNs::underlay_ip(other)
    )
}

/// The gateway and uplink (internal ports, unused here: the defaults' port numbers 2 and 1) and
/// the Geneve tunnel (port 3), named by their role.
/// True when `flow` sets the tunnel destination to `ip` (OVS prints a learned `load` or a
/// `set_field`).
fn sets_tun_dst(flow: &str, ip: &str) -> bool {
    let hex: String = ip.split('.').map(|o| format!("{:02x}", o.parse::<u8>().unwrap())).collect();
    flow.contains(&format!("{ip}->tun_dst")) || flow.contains(&format!("0x{hex}->NXM_NX_TUN_IPV4_DST[]"))
}

fn add_infra_ports(node: &NodeNs) {
    for (name, role, port) in [("up0", "uplink", 1), ("gw0", "gateway", 2)] {
        node.ovs.ok(
            "ovs-vsctl",
            &[
                "add-port",
                BRIDGE,
                name,
                "--",
                "set",
                "interface",
                name,
                "type=internal",
                &format!("external_ids:shardflow-role={role}"),
                &format!("ofport_request={port}"),
            ],
        );
    }
    node.add_tunnel(3);
}

#[test]
fn a_pod_on_node_1_reaches_a_pod_on_node_2_and_return_flows_are_learned_with_tun_dst() {
    let mut t = TwoNodes::start();
    t.n1.start_daemon(2, &node_toml(1, 2));
    t.n2.start_daemon(2, &node_toml(2, 1));
    add_infra_ports(&t.n1);
    add_infra_ports(&t.n2);

    let a = t.n1.cni.add_pod("default", "a");
    let b = t.n2.cni.add_pod("default", "b");
    assert_eq!(a.ip.to_string(), "10.244.1.2");
    assert_eq!(b.ip.to_string(), "10.244.2.2");
    // Node 1 routes node 2's pods into the tunnel once its pipeline has the tunnel port.
    let routed = support::wait_until(Duration::from_secs(10), || {
        t.n1.ovs.flows_matching(BRIDGE, "table=5").iter().any(|f| f.contains("10.244.2.0/24") && sets_tun_dst(f, "172.31.0.2"))
    });
    assert!(routed, "no tunnel route on node 1: {:#?}", t.n1.ovs.flows_matching(BRIDGE, "table=5"));

    let _server = b.ns.echo_server(SocketAddr::new(b.ip, 8080));
    let (mut s, took) = a
        .ns
        .connect(SocketAddr::new(b.ip, 8080), Duration::from_secs(5))
        .expect("pod a (node 1) -> pod b (node 2):8080 through Geneve");
    assert_eq!(echo(&mut s, b"across nodes", Duration::from_secs(5)).unwrap(), b"across nodes");
    eprintln!("connect across two nodes: {took:?}");

    // Node 2 learned the return flow to pod a with node 1's underlay address as tun_dst, and
    // node 1 the flow back to pod b with node 2's.
    for (node, peer, remote) in [(&t.n2, "10.244.1.2", "172.31.0.1"), (&t.n1, "10.244.2.2", "172.31.0.2")] {
        let learned = node.ovs.flows_matching(BRIDGE, "table=6");
        assert!(
            learned.iter().any(|f| f.contains(&format!("nw_dst={peer}")) && sets_tun_dst(f, remote)),
            "node {}: no learned return flow to {peer} via {remote}: {learned:#?}",
            node.index
        );
    }
}
