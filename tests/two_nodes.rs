//! Two nodes on one machine (issue 8, item 7): two Open vSwitch instances, each in a network
//! namespace of its own with its daemon, joined by a veth underlay and a Geneve port on each
//! br-int (OVS userspace tunnelling). A pod on node 1 reaches a pod on node 2 through node 1's
//! tunnel route (`[[pipeline.tunnel_routes]]`: the decided flow sets `tun_dst`), and the return
//! flows are learned with `tun_dst` on both nodes (tables 15 -> 6).
//!
//! Needs root, `ip netns`, ethtool and Open vSwitch (scripts/test.sh installs them).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::pods::{echo, BRIDGE};
use support::two_nodes::{NodeNs, TwoNodes, TUNNEL_PORT};

/// True when `flow` sets the tunnel destination to `ip` (OVS prints a learned `load` or a
/// `set_field`).
fn sets_tun_dst(flow: &str, ip: &str) -> bool {
    let hex: String = ip.split('.').map(|o| format!("{:02x}", o.parse::<u8>().unwrap())).collect();
    flow.contains(&format!("{ip}->tun_dst")) || flow.contains(&format!("0x{hex}->NXM_NX_TUN_IPV4_DST[]"))
}

#[test]
fn a_pod_on_node_1_reaches_a_pod_on_node_2_and_return_flows_are_learned_with_tun_dst() {
    let mut t = TwoNodes::start();
    t.n1.start_daemon();
    t.n2.start_daemon();
    let (a, b) = (NodeNs::pod_ip(1), NodeNs::pod_ip(2));
    let server = t.n2.pod.echo_server(SocketAddr::new(b, 8080));
    let (mut s, took) =
        t.n1.pod
            .connect(SocketAddr::new(b, 8080), Duration::from_secs(5))
            .expect("node 1's pod -> node 2's pod through Geneve");
    assert_eq!(echo(&mut s, b"across nodes", Duration::from_secs(5)).unwrap(), b"across nodes");
    eprintln!("first connect across two nodes: {took:?}");

    // Node 1 decided the connection into the tunnel towards node 2 (table 3, both directions).
    let t3 = t.n1.ovs.flows_matching(BRIDGE, "table=3,tcp,tp_dst=8080");
    assert!(
        t3.iter().any(|f| sets_tun_dst(f, "172.31.0.2") && f.ends_with(&format!("output:{TUNNEL_PORT}"))),
        "node 1: no decided flow into the tunnel: {t3:#?}"
    );
    // Node 2 learned the return flow to node 1's pod with node 1's underlay address as tun_dst,
    // and node 1 the flow back to node 2's pod with node 2's (from the SYN-ACK).
    for (node, peer, remote) in [(&t.n2, a, "172.31.0.1"), (&t.n1, b, "172.31.0.2")] {
        let learned = node.ovs.flows_matching(BRIDGE, "table=6");
        assert!(
            learned.iter().any(|f| f.contains(&format!("nw_dst={peer},")) && sets_tun_dst(f, remote)),
            "node {}: no learned return flow to {peer} via {remote}: {learned:#?}",
            node.index
        );
    }
    // Node 2 never saw the connection as a packet-in: it came from the tunnel (learned path).
    assert!(t.n2.ovs.flows_matching(BRIDGE, "table=3,tcp,tp_dst=8080").is_empty());

    // More connections, each a new one decided on node 1, all through the tunnel.
    for i in 0..5 {
        let (mut s, _) =
            t.n1.pod.connect(SocketAddr::new(b, 8080), Duration::from_secs(5)).expect("another connection");
        assert_eq!(
            echo(&mut s, format!("n{i}").as_bytes(), Duration::from_secs(5)).unwrap(),
            format!("n{i}").as_bytes()
        );
    }
    drop(server);
}
