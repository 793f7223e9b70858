use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::build;
use crate::policy::arp::{arp_answer, ArpDecision};

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x04]);
const GW_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn key(frame: &[u8], port: u32) -> FlowKey {
    FlowKey::extract(port, frame).unwrap()
}

fn syn(src_mac: MacAddr, src: &str, dst: &str, sport: u16) -> FlowKey {
    key(&build::tcp_syn(src_mac, GW_MAC, ip(src), ip(dst), sport, 80), 2)
}

fn setup() -> (Tracker, Instant) {
    let t0 = Instant::now();
    (Tracker::with_epoch(TrackerConfig::default(), t0), t0)
}

#[test]
fn tracker_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tracker>();
    check::<Arc<Tracker>>();
}

#[test]
fn learns_ip_sources_and_arp_senders() {
    let (t, t0) = setup();
    assert!(t.learn(1, 2, &syn(A_MAC, "10.244.1.2", "10.244.1.4", 1000), t0));
    let arp = key(&build::arp_request(B_MAC, v4("10.244.1.4"), v4("10.244.1.2")), 4);
    assert!(t.learn(1, 4, &arp, t0));
    let v6 = key(&build::tcp_syn(A_MAC, GW_MAC, ip("fd00::2"), ip("fd00::4"), 1, 2), 2);
    assert!(t.learn(1, 2, &v6, t0));
    assert_eq!(t.len(), 3);
    assert_eq!(t.locate(ip("10.244.1.2")), Some(Location { port: 2, mac: A_MAC, tun_dst: None }));
    assert_eq!(t.locate(ip("10.244.1.4")), Some(Location { port: 4, mac: B_MAC, tun_dst: None }));
    assert_eq!(t.locate(ip("fd00::2")), Some(Location { port: 2, mac: A_MAC, tun_dst: None }));
    assert_eq!(t.locate(ip("10.244.1.9")), None);
    // The destination is not learned.
    assert_eq!(t.locate(ip("fd00::4")), None);
    assert_eq!(t.locate_mac(A_MAC), Some((1, 2)));
    assert_eq!(t.locate_mac(B_MAC), Some((1, 4)));
    let s = t.get(ip("10.244.1.4")).unwrap();
    assert_eq!((s.mac, s.port, s.dpid, s.first_seen, s.last_seen, s.moves), (B_MAC, 4, 1, t0, t0, 0));
    // Seen again later at the same place: only last_seen moves.
    let t1 = t0 + Duration::from_secs(5);
    assert!(t.learn(1, 4, &arp, t1));
    let s = t.get(ip("10.244.1.4")).unwrap();
    assert_eq!((s.first_seen, s.last_seen, s.moves), (t0, t1, 0));
    // An arp reply's sender too.
    let r = key(&build::arp_reply(GW_MAC, v4("10.244.1.1"), A_MAC, v4("10.244.1.2")), 3);
    assert!(t.learn(1, 3, &r, t1));
    assert_eq!(t.locate(ip("10.244.1.1")), Some(Location { port: 3, mac: GW_MAC, tun_dst: None }));
}

#[test]
fn ignores_bad_sources() {
    let (t, t0) = setup();
    // Multicast / broadcast / zero source MACs.
    for m in [MacAddr::BROADCAST, MacAddr::ZERO, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])] {
        assert!(!t.learn(1, 2, &syn(m, "10.244.1.2", "10.244.1.4", 1), t0));
    }
    // Unspecified, broadcast, multicast, loopback source IPs (the MAC is still learned).
    for s in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1", "::", "ff02::1", "::1"] {
        let dst = if s.contains(':') { "fd00::4" } else { "10.244.1.4" };
        assert!(!t.learn(1, 2, &syn(A_MAC, s, dst, 1), t0), "{s}");
    }
    // ARP probe (spa 0.0.0.0), ARP with a broadcast sender MAC.
    let probe = key(&build::arp_request(A_MAC, Ipv4Addr::UNSPECIFIED, v4("10.244.1.2")), 2);
    assert!(!t.learn(1, 2, &probe, t0));
    let bad = key(&build::arp_request(MacAddr::BROADCAST, v4("10.244.1.7"), v4("10.244.1.2")), 2);
    assert!(!t.learn(1, 2, &bad, t0));
    // Reserved ports.
    assert!(!t.learn(1, 0xffff_fffe, &syn(B_MAC, "10.244.1.4", "10.244.1.2", 1), t0));
    assert_eq!(t.len(), 0);
    assert_eq!(t.locate_mac(A_MAC), Some((1, 2)));
    assert_eq!(t.locate_mac(B_MAC), None);
    assert_eq!(t.stats().macs, 1);
    // Excluded ports (gateway): MAC learned, IPs behind it not located there.
    t.exclude_port(1, 3);
    assert!(!t.learn(1, 3, &syn(GW_MAC, "10.244.2.9", "10.244.1.2", 1), t0));
    assert_eq!(t.locate(ip("10.244.2.9")), None);
    assert_eq!(t.locate_mac(GW_MAC), Some((1, 3)));
    assert!(t.learn(2, 3, &syn(GW_MAC, "10.244.2.9", "10.244.1.2", 1), t0), "only on switch 1");
}

#[test]
fn a_moved_ip_follows_its_last_port_and_mac() {
    let (t, t0) = setup();
    let t1 = t0 + Duration::from_secs(1);
    let t2 = t0 + Duration::from_secs(2);
    t.learn(1, 2, &syn(A_MAC, "10.244.1.2", "10.244.1.4", 1), t0);
    t.learn(1, 7, &syn(A_MAC, "10.244.1.2", "10.244.1.4", 1), t1);
    let s = t.get(ip("10.244.1.2")).unwrap();
    assert_eq!((s.port, s.mac, s.first_seen, s.last_seen, s.moves), (7, A_MAC, t1, t1, 1));
    assert_eq!(t.locate_mac(A_MAC), Some((1, 7)));
    // Same IP, new MAC (pod re-created), other switch.
    t.learn(2, 5, &syn(B_MAC, "10.244.1.2", "10.244.1.4", 1), t2);
    let s = t.get(ip("10.244.1.2")).unwrap();
    assert_eq!((s.dpid, s.port, s.mac, s.moves), (2, 5, B_MAC, 2));
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().moves, 2);
    assert_eq!(t.view(1).locate(ip("10.244.1.2")), None);
    assert_eq!(t.view(2).locate(ip("10.244.1.2")), Some(Location { port: 5, mac: B_MAC, tun_dst: None }));
}

#[test]
fn expiry_forgets_idle_addresses_and_paths() {
    let (t, t0) = setup();
    let k_a = syn(A_MAC, "10.244.1.2", "10.244.1.4", 1);
    let k_b = syn(B_MAC, "10.244.1.4", "10.244.1.2", 2);
    t.observe(1, 2, 0, &k_a, t0);
    t.observe(1, 4, 1, &k_b, t0 + Duration::from_secs(50));
    assert_eq!((t.len(), t.stats().macs, t.stats().paths), (2, 2, 2));
    assert_eq!(t.expire(t0 + Duration::from_secs(59), Duration::from_secs(60)), 0);
    assert_eq!(t.expire(t0 + Duration::from_secs(60), Duration::from_secs(60)), 1);
    assert_eq!(t.locate(ip("10.244.1.2")), None);
    assert!(t.locate(ip("10.244.1.4")).is_some());
    assert_eq!(t.locate_mac(A_MAC), None);
    assert_eq!((t.len(), t.stats().macs, t.stats().paths), (1, 1, 1));
    assert_eq!(t.expire(t0 + Duration::from_secs(200), Duration::from_secs(60)), 1);
    assert!(t.is_empty());
    assert_eq!(t.stats().paths, 0);
}

#[test]
fn bounded_maps_drop_new_addresses_when_full() {
    let t0 = Instant::now();
    let t = Tracker::with_epoch(TrackerConfig { max_ips: 2, max_macs: 2, max_paths: 1, max_hops: 2 }, t0);
    for i in 0..4u8 {
        let mac = MacAddr([0x0a, 0, 0, 0, 0, i + 1]);
        t.observe(1, u32::from(i) + 1, 0, &syn(mac, &format!("10.0.0.{}", i + 1), "10.0.1.1", 1), t0);
    }
    let s = t.stats();
    assert_eq!((s.ips, s.macs, s.paths, s.ips_dropped, s.macs_dropped, s.paths_dropped), (2, 2, 1, 2, 2, 3));
    // Known addresses still refresh and move when full.
    assert!(t.learn(1, 9, &syn(MacAddr([0x0a, 0, 0, 0, 0, 1]), "10.0.0.1", "10.0.1.1", 1), t0));
    assert_eq!(t.locate(ip("10.0.0.1")).unwrap().port, 9);
    t.expire(t0 + Duration::from_secs(1), Duration::from_millis(1));
    assert!(t.learn(
        1,
        3,
        &syn(MacAddr([0x0a, 0, 0, 0, 0, 3]), "10.0.0.3", "10.0.1.1", 1),
        t0 + Duration::from_secs(1)
    ));
}

#[test]
fn view_is_a_locator_for_one_switch_and_chains() {
    let (t, t0) = setup();
    t.learn(1, 4, &key(&build::arp_request(B_MAC, v4("10.244.1.4"), v4("10.244.1.2")), 4), t0);
    let view = t.view(1);
    let loc: &dyn Locator = &view;
    assert_eq!(loc.locate(ip("10.244.1.4")), Some(Location { port: 4, mac: B_MAC, tun_dst: None }));
    assert_eq!(t.view(2).locate(ip("10.244.1.4")), None);
    struct Fixed;
    impl Locator for Fixed {
        fn locate(&self, ip: IpAddr) -> Option<Location> {
            (ip == IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1))).then_some(Location { port: 3, mac: GW_MAC, tun_dst: None })
        }
    }
    let c = Chain { first: &Fixed, second: &view };
    assert_eq!(c.locate(ip("10.244.1.1")).unwrap().port, 3);
    assert_eq!(c.locate(ip("10.244.1.4")).unwrap().port, 4);
    assert_eq!(c.locate(ip("10.244.1.5")), None);
    // What the shard does for an ARP packet-in: learn the sender, then answer from the view.
    let req = build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4"));
    let k = key(&req, 2);
    t.learn(1, 2, &k, t0);
    let ArpDecision::Reply(po) = arp_answer(&k, 2, &t.view(1)) else { panic!("a reply") };
    assert_eq!(po.data, build::arp_reply(B_MAC, v4("10.244.1.4"), A_MAC, v4("10.244.1.2")));
    assert_eq!(t.locate(ip("10.244.1.2")), Some(Location { port: 2, mac: A_MAC, tun_dst: None }));
}

#[test]
fn concurrent_learning_from_two_threads() {
    let t = Arc::new(Tracker::new(TrackerConfig::default()));
    let now = Instant::now();
    let threads: Vec<_> = (0..2u8)
        .map(|n| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for round in 0..3u64 {
                    for i in 0..500u16 {
                        let [hi, lo] = i.to_be_bytes();
                        let mac = MacAddr([0x0a, n, 0, 0, hi, lo]);
                        let src = format!("10.{n}.{hi}.{lo}");
                        let k = syn(mac, &src, "10.9.9.9", i);
                        t.observe(
                            u64::from(n) + 1,
                            u32::from(i) + 1,
                            usize::from(n),
                            &k,
                            now + Duration::from_millis(round),
                        );
                        // Both threads also fight over one IP.
                        t.learn(u64::from(n) + 1, 1, &syn(mac, "10.8.8.8", "10.9.9.9", 1), now);
                        assert!(t.locate(ip(&src)).is_some());
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(t.len(), 1001);
    assert_eq!(t.stats().ips, t.snapshot(now).len());
    assert_eq!(t.stats().paths, 1000);
    for n in 0..2u8 {
        for i in [0u16, 257, 499] {
            let [hi, lo] = i.to_be_bytes();
            let s = t.get(ip(&format!("10.{n}.{hi}.{lo}"))).unwrap();
            assert_eq!((s.dpid, s.port, s.moves), (u64::from(n) + 1, u32::from(i) + 1, 0));
            assert_eq!(s.last_seen, now + Duration::from_millis(2));
        }
    }
    assert!(t.get(ip("10.8.8.8")).is_some());
}

#[test]
fn paths_follow_a_connection_across_switches_and_shards() {
    let (t, t0) = setup();
    let fwd = syn(A_MAC, "10.244.1.2", "10.244.2.4", 40000);
    let back = key(&build::tcp_syn_ack(B_MAC, GW_MAC, ip("10.244.2.4"), ip("10.244.1.2"), 80, 40000), 3);
    let t1 = t0 + Duration::from_secs(1);
    t.record_path(1, 2, 0, &fwd, t0);
    t.record_path(2, 3, 1, &fwd, t0);
    t.record_path(1, 3, 0, &back, t1);
    t.record_path(1, 2, 0, &fwd, t1); // same hop again: counted, not added
    let hops = t.path_of(&fwd.conn_key()).unwrap();
    assert_eq!(hops, t.path_of(&back.conn_key()).unwrap());
    let places: Vec<_> = hops.iter().map(|h| (h.dpid, h.in_port, h.shard, h.packets)).collect();
    assert_eq!(places, vec![(1, 2, 0, 2), (2, 3, 1, 1), (1, 3, 0, 1)]);
    assert_eq!((hops[0].at, hops[0].last), (t0, t1));
    // ARP and non-IP traffic have no path.
    assert!(!t.record_path(1, 2, 0, &key(&build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4")), 2), t0));
    // Another connection between the same hosts, and an unrelated one.
    t.record_path(1, 2, 0, &syn(A_MAC, "10.244.1.2", "10.244.2.4", 40001), t1);
    t.record_path(1, 2, 0, &syn(A_MAC, "10.244.1.2", "10.244.9.9", 40001), t1);
    let now = t0 + Duration::from_secs(3);
    let p = t.path(ip("10.244.2.4"), ip("10.244.1.2"), now);
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].src.as_str(), p[0].dst.as_str(), p[0].proto), ("10.244.1.2:40000", "10.244.2.4:80", 6));
    assert_eq!(p[0].hops.len(), 3);
    assert_eq!(p[0].hops[0].age_secs, 3.0);
    assert_eq!(p[0].hops[0].idle_secs, 2.0);
    assert_eq!(p[1].src, "10.244.1.2:40001");
    assert_eq!(t.paths(now).len(), 3);
    let json = serde_json::to_value(&p[0]).unwrap();
    assert_eq!(json["hops"][1]["dpid"], "0000000000000002");
    assert_eq!(json["hops"][1]["shard"], 1);
}

#[test]
fn hops_are_bounded() {
    let t0 = Instant::now();
    let t = Tracker::with_epoch(TrackerConfig { max_hops: 2, ..TrackerConfig::default() }, t0);
    let k = syn(A_MAC, "10.244.1.2", "10.244.2.4", 40000);
    for port in 1..=4 {
        t.record_path(1, port, 0, &k, t0);
    }
    let p = t.paths(t0);
    assert_eq!((p[0].hops.len(), p[0].hops_dropped), (2, 2));
}

#[test]
fn snapshot_is_json_for_the_rest_api() {
    let (t, t0) = setup();
    t.learn(0x1234, 4, &key(&build::arp_request(B_MAC, v4("10.244.1.4"), v4("10.244.1.2")), 4), t0);
    t.learn(1, 2, &syn(A_MAC, "10.244.1.2", "10.244.1.4", 1), t0 + Duration::from_secs(1));
    let s = t.snapshot(t0 + Duration::from_secs(3));
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].ip, "10.244.1.2");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({
            "ip": "10.244.1.4", "mac": "0a:58:0a:f4:01:04", "dpid": "0000000000001234", "port": 4,
            "age_secs": 3.0, "idle_secs": 3.0, "moves": 0
        })
    );
    assert_eq!(json[0]["age_secs"], 2.0);
    let stats = serde_json::to_value(t.stats()).unwrap();
    assert_eq!(stats["ips"], 2);
}

#[test]
fn forgetting_a_port() {
    let (t, t0) = setup();
    t.learn(1, 2, &syn(A_MAC, "10.244.1.2", "10.244.1.4", 1), t0);
    t.learn(1, 4, &syn(B_MAC, "10.244.1.4", "10.244.1.2", 1), t0);
    t.learn(2, 4, &syn(GW_MAC, "10.244.2.4", "10.244.1.2", 1), t0);
    t.forget_port(1, 4);
    assert_eq!(t.locate(ip("10.244.1.4")), None);
    assert_eq!(t.len(), 2);
    // Only that port of that switch: port 4 of switch 2 and port 2 of switch 1 stay.
    assert!(t.locate(ip("10.244.2.4")).is_some());
    assert!(t.locate_mac(A_MAC).is_some());
}
