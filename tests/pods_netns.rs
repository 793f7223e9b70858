//! End to end with real pods (issue 8, item 5): network namespaces plugged into a real Open
//! vSwitch (userspace datapath, system veth ports, no dummy override) by the CNI plugin
//! `shardflow-cni` (host-local IPAM), and the daemon as the node agent (`[node] ovsdb` pointing
//! at the test's OVS; it creates br-int and learns the pods from OVSDB). Real kernel TCP stacks
//! talk through the daemon's decisions.
//!
//! Needs root, `ip netns`, `ethtool`, Open vSwitch and Debian's `containernetworking-plugins`
//! (scripts/test.sh installs them).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::pods::{echo, mentions, tx_checksum_off, unique, Netns, Node, BRIDGE};
use support::{wait_until, Ovs};

const SUBNET: &str = "10.244.1.0/24";
/// Long enough for a decided first packet on a busy 2-core machine, short enough for a test
/// that expects a drop.
const CONNECT: Duration = Duration::from_secs(3);

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

// === the harness itself (no daemon, no plugin) ===

/// The fixture's pods talk through a real-port bridge (OVS in a node namespace) with one NORMAL
/// flow (TX checksum off on both veth ends, else TCP would fail), a drop flow stops them, and
/// dropping the fixture leaves no namespace or veth behind.
#[test]
fn harness_pods_talk_through_a_real_port_bridge() {
    let node = Netns::new("sfhnode-");
    let ovs = Ovs::start_real_in(&node, &["br0"]);
    let (a_if, b_if) = (unique("sfha"), unique("sfhb"));
    let (a_ns, b_ns);
    {
        let a = Netns::new("sfh-");
        let b = Netns::new("sfh-");
        a.plug(&node, &ovs, "br0", &a_if, "10.250.0.2/24", "0a:58:0a:fa:00:02", &[]);
        b.plug(&node, &ovs, "br0", &b_if, "10.250.0.3/24", "0a:58:0a:fa:00:03", &[]);
        assert!(tx_checksum_off(Some(&a), "eth0") && tx_checksum_off(Some(&node), &a_if));
        let ip_b: IpAddr = "10.250.0.3".parse().unwrap();
        assert_eq!(b.addrs("eth0"), vec![ip_b]);
        let _server = b.echo_server(sa(ip_b, 7000));

        // fail_mode=secure and no flow: nothing passes.
        assert!(a.connect(sa(ip_b, 7000), Duration::from_millis(500)).is_err(), "a bridge without flows forwarded");

        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", "priority=0,actions=NORMAL"]);
        let (mut s, took) = a.connect(sa(ip_b, 7000), CONNECT).expect("connect through NORMAL");
        assert_eq!(echo(&mut s, b"ping", CONNECT).unwrap(), b"ping");
        assert!(took < CONNECT);

        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", "priority=10,tcp,tp_dst=7000,actions=drop"]);
        let err = a.connect(sa(ip_b, 7000), Duration::from_millis(500)).map(|_| ()).unwrap_err();
        assert!(matches!(err.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock), "{err}");
        a_ns = a.name.clone();
        b_ns = b.name.clone();
    }
    let netns = support::pods::sh("ip", &["netns", "list"]);
    assert!(!netns.contains(&a_ns) && !netns.contains(&b_ns), "namespaces left behind: {netns}");
    // The kernel tears a namespace down asynchronously (and only once no socket holds it).
    let links = || node.ok("ip", &["-o", "link"]);
    let gone = wait_until(Duration::from_secs(10), || {
        let l = links();
        !l.contains(&a_if) && !l.contains(&b_if)
    });
    assert!(gone, "veths left behind: {}", links());
    drop(ovs);
}

// === the zero-config node ===

/// No configuration but where OVSDB is: the daemon creates br-int (netdev here: no kernel
/// datapath), the plugin adds two pods, and a TCP connection between them works, decided by the
/// embedded allow-all policy on its first packet, with its flows in table 3.
#[test]
fn zero_config_pods_added_by_the_plugin_connect() {
    let node = Node::start(2, "", SUBNET);
    assert_eq!(node.ovs.get("Bridge", BRIDGE, "datapath_type").as_deref(), Some("netdev"));
    assert_eq!(node.ovs.get("Bridge", BRIDGE, "fail_mode").as_deref(), Some("secure"));

    let a = node.cni.add_pod("default", "client");
    let b = node.cni.add_pod("default", "server");
    // What the plugin is for: the pod in OVSDB with its metadata, checksums done in software.
    // `ovs-vsctl get` quotes a value only when it must: compare without quotes.
    let ids = node.ovs.get("Interface", &b.host_if, "external_ids").unwrap().replace('"', "");
    for want in ["pod-name=server", "pod-namespace=default", &format!("container-id={}", b.container_id)] {
        assert!(ids.contains(want), "external_ids {ids} lack {want}");
    }
    assert!(ids.contains(&b.ip.to_string()) && ids.contains("attached-mac"), "external_ids {ids}");
    assert!(tx_checksum_off(Some(&b.ns), "eth0") && tx_checksum_off(Some(&node.ns), &b.host_if));

    let _server = b.ns.echo_server(sa(b.ip, 8080));
    let (mut s, took) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("pod a -> pod b:8080 through the daemon");
    assert_eq!(echo(&mut s, b"hello through shardflow", CONNECT).unwrap(), b"hello through shardflow");
    eprintln!("connect through the zero-config daemon: {took:?}");

    let t3: Vec<String> =
        node.ovs.flows_matching(BRIDGE, "table=3").into_iter().filter(|f| mentions(f, &b.ip.to_string())).collect();
    assert!(
        t3.iter().any(|f| f.contains("tp_dst=8080") && mentions(f, &a.ip.to_string())),
        "no connection flow for {} -> {}:8080 in table 3: {t3:#?}",
        a.ip,
        b.ip
    );
    assert!(node.metric_sum("shardflow_decisions_total", &["verdict=\"allow\""]) >= 1.0);
}

// === the policy file ===

/// A port the policy file denies: the connection times out, the daemon installs a drop flow for
/// it; another port between the same pods still connects (the policy, not the path, decided).
#[test]
fn a_denied_port_times_out_and_gets_a_drop_flow() {
    let dir = std::env::temp_dir().join(unique("sf-policy-"));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\ndefault = \"allow\"\n[[rule]]\naction = \"deny\"\nprotocol = \"tcp\"\nports = \"2222\"\n",
    )
    .unwrap();
    let extra = format!("[policy]\nsource = \"file\"\nfile = \"{}\"\n", policy.display());
    let node = Node::start(2, &extra, SUBNET);
    let _ = std::fs::remove_dir_all(&dir);
    let a = node.cni.add_pod("default", "client");
    let b = node.cni.add_pod("default", "server");
    let _denied = b.ns.echo_server(sa(b.ip, 2222));
    let _allowed = b.ns.echo_server(sa(b.ip, 8080));

    let err = a.ns.connect(sa(b.ip, 2222), CONNECT).map(|_| ()).expect_err("a denied port connected");
    assert!(matches!(err.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock), "{err}");
    let drop_flows: Vec<String> = node
        .ovs
        .flows_matching(BRIDGE, "table=3,tcp,tp_dst=2222")
        .into_iter()
        .filter(|f| f.contains("actions=drop") && mentions(f, &b.ip.to_string()))
        .collect();
    assert!(
        !drop_flows.is_empty(),
        "no drop flow for :2222 in table 3: {:#?}",
        node.ovs.flows_matching(BRIDGE, "table=3")
    );
    assert!(node.metric_sum("shardflow_decisions_total", &["verdict=\"deny\""]) >= 1.0);

    let (mut s, _) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("the allowed port connects");
    assert_eq!(echo(&mut s, b"ok", CONNECT).unwrap(), b"ok");
}

// === services ===

/// A service VIP (policy file `[[service]]`, `[pipeline] service_cidr`) reaches its endpoint pod:
/// the client connects to 10.96.0.10:80 and talks to the pod's listener on 8080.
#[test]
fn a_service_vip_reaches_its_endpoint_pod() {
    let dir = std::env::temp_dir().join(unique("sf-svc-"));
    std::fs::create_dir_all(&dir).unwrap();
    // host-local hands out .2 first, then .3: the server is the second pod added.
    let endpoint = "10.244.1.3";
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\ndefault = \"allow\"\n[[service]]\nvip = \"10.96.0.10\"\nport = 80\nprotocol = \"tcp\"\n\
             endpoints = [ {{ ip = \"{endpoint}\", port = 8080, weight = 1 }} ]\n"
        ),
    )
    .unwrap();
    let extra = format!(
        "[policy]\nsource = \"file\"\nfile = \"{}\"\n\n[pipeline]\npod_cidr = \"{SUBNET}\"\nservice_cidr = \"10.96.0.0/12\"\n\
         gateway_ip = \"10.244.1.1\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n",
        policy.display()
    );
    let mut node = Node::start(2, &extra, SUBNET);
    let _ = std::fs::remove_dir_all(&dir);
    // The node's uplink and gateway ports, named by their role in OVSDB (the configuration's
    // defaults are ports 1 and 2): internal ports, taps in the node's namespace.
    node.add_internal_port("up0", &["external_ids:shardflow-role=uplink", "ofport_request=1"]);
    node.add_internal_port("gw0", &["external_ids:shardflow-role=gateway", "ofport_request=2"]);
    // The pods route the service range through the gateway (the pipeline answers its ARP).
    node.cni.gateway = Some("10.244.1.1".into());
    node.cni.routes = vec!["10.96.0.0/12".into()];
    let a = node.cni.add_pod("default", "client");
    let b = node.cni.add_pod("default", "server");
    assert_eq!(b.ip.to_string(), endpoint, "host-local handed out another address than expected");
    // A decision made before the endpoint's node update reached the deciding shard would send
    // the connection to the gateway (and its flow would stay for the idle timeout).
    node.wait_pod_flows(&b.ip);
    let _server = b.ns.echo_server(sa(b.ip, 8080));

    let vip: IpAddr = "10.96.0.10".parse().unwrap();
    let (mut s, _) = a.ns.connect(sa(vip, 80), CONNECT).unwrap_or_else(|e| {
        panic!(
            "client -> 10.96.0.10:80: {e}\nflows: {:#?}\nclient neighbours: {}",
            node.ovs.flows_matching(BRIDGE, ""),
            a.ns.ok("ip", &["neigh"])
        )
    });
    assert_eq!(echo(&mut s, b"via the VIP", CONNECT).unwrap(), b"via the VIP");
    // The reply came from the VIP as the client sees it; the DNAT is in conntrack.
    assert_eq!(s.peer_addr().unwrap(), sa(vip, 80));
    let dnat = node.flows_with(&vip);
    assert!(dnat.iter().any(|f| f.contains("nat(dst=10.244.1.3:8080)")), "no DNAT flow to the endpoint: {dnat:#?}");
}

// === DEL ===

/// DEL removes the pod's port from the bridge, its veth, the flows naming its address and its
/// Tracker entries; a second DEL (kubelet retries) succeeds as well.
#[test]
fn del_removes_the_port_the_flows_and_the_tracker_entries() {
    let node = Node::start(2, "", SUBNET);
    let a = node.cni.add_pod("default", "client");
    let b = node.cni.add_pod("default", "server");
    let _server = b.ns.echo_server(sa(b.ip, 8080));
    let (mut s, _) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("connect before DEL");
    assert_eq!(echo(&mut s, b"x", CONNECT).unwrap(), b"x");
    drop(s);
    let ip_b = b.ip.to_string();
    // The Tracker's address entries (paths, the traffic history, expire when idle).
    let tracker_knows_b = || {
        let t = node.json("/v1/tracker");
        t["addresses"].as_array().is_some_and(|a| a.iter().any(|e| e["ip"].as_str() == Some(ip_b.as_str())))
    };
    assert!(!node.flows_with(&b.ip).is_empty(), "no flow names {ip_b} before DEL");
    assert!(
        wait_until(Duration::from_secs(5), tracker_knows_b),
        "the Tracker never learned {ip_b}: {}",
        node.json("/v1/tracker")
    );

    let out = node.cni.del_pod(&b);
    assert!(out.ok, "DEL: {} {}", out.json, out.stderr);
    assert!(!node.ovs.ports(BRIDGE).contains(&b.host_if), "the port is still on {BRIDGE}");
    assert!(!node.link_exists(&b.host_if), "the veth {} is still there", b.host_if);
    let gone = wait_until(Duration::from_secs(10), || node.flows_with(&b.ip).is_empty() && !tracker_knows_b());
    assert!(gone, "after DEL: flows {:#?}, tracker {}", node.flows_with(&b.ip), node.json("/v1/tracker"));
    // The other pod is untouched.
    assert!(node.ovs.ports(BRIDGE).contains(&a.host_if));
    let again = node.cni.del_pod(&b);
    assert!(again.ok, "a second DEL must succeed: {} {}", again.json, again.stderr);
}

// === the daemon goes away ===

/// An established TCP connection keeps working across `kill -9` of the daemon (its flows stay
/// on the bridge: fail_mode=secure) and its restart (the restarted daemon adopts them instead of
/// deleting them); a new connection is decided again after the restart.
#[test]
fn an_established_connection_survives_kill_9_and_restart() {
    let mut node = Node::start(2, "", SUBNET);
    let a = node.cni.add_pod("default", "client");
    let b = node.cni.add_pod("default", "server");
    let _server = b.ns.echo_server(sa(b.ip, 8080));
    let (mut s, _) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("connect");
    assert_eq!(echo(&mut s, b"before", CONNECT).unwrap(), b"before");

    node.kill9();
    assert_eq!(echo(&mut s, b"daemon dead", CONNECT).unwrap(), b"daemon dead");
    node.restart();
    assert_eq!(echo(&mut s, b"after restart", CONNECT).unwrap(), b"after restart");
    // Still after the restarted daemon's first audits (500 ms each) had the chance to remove
    // what it does not own.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(echo(&mut s, b"still", CONNECT).unwrap(), b"still");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut s2, _) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("a new connection after the restart");
    assert_eq!(echo(&mut s2, b"new", CONNECT).unwrap(), b"new");
}

/// A pod added while the daemon is down is picked up when it starts: its flows are installed
/// before any of its traffic, and a connection to it works.
#[test]
fn pods_added_while_the_daemon_is_down_are_picked_up() {
    let mut node = Node::start(2, "", SUBNET);
    let a = node.cni.add_pod("default", "client");
    node.kill9();
    let b = node.cni.add_pod("default", "late");
    node.restart();
    let known = wait_until(Duration::from_secs(10), || !node.flows_with(&b.ip).is_empty());
    assert!(known, "no flow names {} after the restart: {:#?}", b.ip, node.ovs.flows_matching(BRIDGE, ""));
    let _server = b.ns.echo_server(sa(b.ip, 8080));
    let (mut s, _) = a.ns.connect(sa(b.ip, 8080), CONNECT).expect("connect to the pod added while down");
    assert_eq!(echo(&mut s, b"late", CONNECT).unwrap(), b"late");
}
