//! The decision machine with simulated time: no runtime, no sockets, no OVS. Each test drives
//! `decide_now` / `answered` with an `Instant` it moves itself.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::build;
use crate::pipeline::default::LocalPod;
use crate::policy::error::PolicyError;
use crate::policy::index::IndexedPolicy;
use crate::policy::source::{PolicyCell, RemotePolicy};
use crate::policy::{Location, PolicyFile};

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);

const SETTINGS: DecisionSettings =
    DecisionSettings { fail_open: false, conn_idle_timeout: 300, deny_idle_timeout: 7, max_pending: 2 };

/// cni-ctl as the machine sees it: never answers at once. The machine itself never asks it
/// (the runtime does), so a query here is a bug.
struct Remote;

impl RemotePolicy for Remote {
    fn query(&self, _q: PolicyQuery) -> flume::Receiver<Result<NetworkPolicy, PolicyError>> {
        panic!("the machine must not ask the transport itself")
    }
    fn is_down(&self) -> bool {
        false
    }
    fn endpoint(&self) -> &str {
        "test"
    }
}

/// Where addresses are, as the Tracker would say.
#[derive(Default)]
struct Seen(HashMap<IpAddr, Location>);

impl Locator for Seen {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.0.get(&ip).copied()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Pod A on port 2, pod B on port 4, gateway 3, uplink 1 (docs/pipeline.md's example).
fn pipeline() -> PipelineConfig {
    PipelineConfig {
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        gateway_ip: Ipv4Addr::new(10, 244, 1, 1),
        gateway_mac: GW_MAC,
        gateway_port: 3,
        uplink_port: 1,
        local_pods: vec![
            LocalPod { port: 2, ip: Ipv4Addr::new(10, 244, 1, 2), mac: A_MAC, ipv6: None },
            LocalPod { port: 4, ip: Ipv4Addr::new(10, 244, 1, 4), mac: B_MAC, ipv6: None },
        ],
        ..PipelineConfig::default()
    }
}

fn machine(settings: DecisionSettings, source: PolicySource) -> DecisionMachine {
    DecisionMachine::new(pipeline(), 1, settings, Arc::new(source))
}

fn remote() -> PolicySource {
    PolicySource::CniCtl(Arc::new(Remote))
}

/// A SYN from pod A (port 2) to `dst:80`.
fn syn_to(dst: &str, sport: u16) -> (FlowKey, Held) {
    let frame = build::tcp_syn(A_MAC, GW_MAC, ip("10.244.1.2"), ip(dst), sport, 80);
    (FlowKey::extract(2, &frame).unwrap(), (frame, None))
}

fn policy(allowed: bool, version: u64, ttl: Duration) -> NetworkPolicy {
    NetworkPolicy { allowed, version, ttl, ..NetworkPolicy::allow() }
}

/// `decide_now` for a SYN from A to `dst`; `Err` is the query handed back (a miss).
fn now_for(m: &DecisionMachine, dst: &str, sport: u16, t: Instant) -> Result<Outcome, PolicyQuery> {
    let (k, held) = syn_to(dst, sport);
    m.decide_now(&k, 7, 2, 0, held, &Seen::default(), t).map_err(|(q, _)| q)
}

/// Feeds `answer` for the SYN from A to `dst` at `t`.
fn answer_for(
    m: &DecisionMachine,
    dst: &str,
    sport: u16,
    answer: Result<NetworkPolicy, String>,
    t: Instant,
) -> Outcome {
    let (k, held) = syn_to(dst, sport);
    let q = now_for(m, dst, sport, t).err().expect("a miss first");
    m.answered(&k, 7, 2, q, answer, held, &Seen::default(), t)
}

/// The outcome of a decision expected at once (a cache hit, a file, the embedded policy).
fn hit(r: Result<Outcome, PolicyQuery>, what: &str) -> Outcome {
    match r {
        Ok(o) => o,
        Err(q) => panic!("{what}: a miss for {q:?}"),
    }
}

fn flow_mods(o: &Outcome) -> Vec<&crate::openflow::flow::FlowMod> {
    o.messages
        .iter()
        .filter_map(|m| match m {
            Message::FlowMod(f) => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cached_answer_is_used_until_its_deadline_then_asked_again() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    let o = answer_for(&m, "10.244.1.4", 1000, Ok(policy(true, 1, Duration::from_secs(10))), t0);
    assert_eq!(o.label, "allow");
    assert_eq!(flow_mods(&o).len(), 2, "both directions installed");
    assert_eq!(m.cached_answers(), 1);
    // Just before the deadline: decided from the cache, without the source.
    let hit = hit(now_for(&m, "10.244.1.4", 1000, t0 + Duration::from_millis(9_999)), "a cache hit");
    assert_eq!(hit.label, "allow");
    // At the deadline: a miss, and the stale entry is gone.
    assert!(now_for(&m, "10.244.1.4", 1000, t0 + Duration::from_secs(10)).is_err());
    assert_eq!(m.cached_answers(), 0);
}

#[test]
fn an_answer_with_no_ttl_is_not_cached() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    answer_for(&m, "10.244.1.4", 1000, Ok(policy(true, 1, Duration::ZERO)), t0);
    assert_eq!(m.cached_answers(), 0);
    assert!(now_for(&m, "10.244.1.4", 1000, t0).is_err());
}

#[test]
fn fail_closed_installs_nothing_and_caches_nothing() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    let o = answer_for(&m, "10.244.1.4", 1000, Err("no answer within 200 ms".into()), t0);
    assert_eq!(o.label, "fail_closed");
    assert!(o.decided.is_none());
    assert!(o.messages.is_empty(), "the packet is dropped, no flow: the next packet asks again");
    assert_eq!(m.cached_answers(), 0);
    assert!(now_for(&m, "10.244.1.4", 1000, t0).is_err(), "asked again");
}

#[test]
fn fail_open_allows_with_the_deny_idle_timeout_and_caches_nothing() {
    let m = machine(DecisionSettings { fail_open: true, ..SETTINGS }, remote());
    let t0 = Instant::now();
    let o = answer_for(&m, "10.244.1.4", 1000, Err("cni-ctl unavailable".into()), t0);
    assert_eq!(o.label, "fail_open");
    assert!(o.decided.is_some());
    let flows = flow_mods(&o);
    assert_eq!(flows.len(), 2);
    assert!(flows.iter().all(|f| f.idle_timeout == SETTINGS.deny_idle_timeout), "re-asked soon, not allowed for good");
    assert!(matches!(o.messages.last(), Some(Message::PacketOut(_))), "the packet goes on");
    assert_eq!(m.cached_answers(), 0);
    // A real answer gets the connection idle timeout.
    let o = answer_for(&m, "10.244.1.4", 1001, Ok(policy(true, 1, Duration::from_secs(5))), t0);
    assert_eq!(o.label, "allow");
    assert!(flow_mods(&o).iter().all(|f| f.idle_timeout == SETTINGS.conn_idle_timeout));
}

#[test]
fn the_pending_bound_refuses_past_max_pending_and_frees_on_drop() {
    let m = machine(SETTINGS, remote());
    let a = m.reserve().unwrap();
    let b = m.reserve().unwrap();
    assert_eq!(m.pending(), 2);
    let refused = m.reserve().err().expect("past max_pending");
    assert!(refused.contains("2 packets already wait"), "{refused}");
    drop(a);
    assert_eq!(m.pending(), 1);
    let c = m.reserve().unwrap();
    drop((b, c));
    assert_eq!(m.pending(), 0);
}

#[test]
fn an_unlocated_pod_address_is_flooded_until_someone_locates_it() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    // 10.244.1.9 is in the pod range, not a configured pod, not seen yet.
    let o = answer_for(&m, "10.244.1.9", 1000, Ok(policy(true, 1, Duration::from_secs(10))), t0);
    assert_eq!(o.label, "flood_unknown");
    assert!(o.decided.is_none());
    match o.messages.as_slice() {
        [Message::PacketOut(po)] => {
            assert_eq!(po.actions, vec![Action::Output { port: OFPP_FLOOD, max_len: 0 }]);
            assert_eq!(po.in_port, 2);
        }
        other => panic!("one flood packet-out, got {} messages", other.len()),
    }
    // The Tracker has seen it answer on port 6: the next packet (a cache hit) gets flows to it.
    let mut seen = Seen::default();
    seen.0.insert(ip("10.244.1.9"), Location { port: 6, mac: MacAddr([2, 0, 0, 0, 0, 9]), tun_dst: None });
    let (k, held) = syn_to("10.244.1.9", 1000);
    let o = hit(m.decide_now(&k, 7, 2, 0, held, &seen, t0).map_err(|(q, _)| q), "cached");
    assert_eq!(o.label, "allow");
    assert_eq!(flow_mods(&o).len(), 2);
    // A denied connection to an unlocated address is not flooded: its drop flow is installed.
    let o = answer_for(&m, "10.244.1.10", 1000, Ok(policy(false, 1, Duration::from_secs(10))), t0);
    assert_eq!(o.label, "deny");
}

#[test]
fn without_configuration_an_unknown_destination_is_also_asked_for_by_arp() {
    // Zero-config: ARP replies come to the controller, so the flood goes with an ARP request on
    // the sender's behalf (a host with a warm neighbour cache never ARPs by itself).
    let m = DecisionMachine::new(PipelineConfig::zero_config(), 1, SETTINGS, Arc::new(remote()));
    let o = answer_for(&m, "192.168.7.9", 1000, Ok(policy(true, 1, Duration::from_secs(10))), Instant::now());
    assert_eq!(o.label, "flood_unknown");
    match o.messages.as_slice() {
        [Message::PacketOut(syn), Message::PacketOut(probe)] => {
            for po in [syn, probe] {
                assert_eq!(po.actions, vec![Action::Output { port: OFPP_FLOOD, max_len: 0 }]);
                assert_eq!(po.in_port, 2);
            }
            let expected = build::arp_request(A_MAC, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(192, 168, 7, 9));
            assert_eq!(probe.data, expected);
            assert_ne!(syn.data, expected);
        }
        other => panic!("the flood and an ARP probe, got {} messages", other.len()),
    }
    // With a configured pipeline (ARP replies switched by OVS) there is no probe: the first test.
}

#[test]
fn a_service_address_without_endpoints_gets_a_drop_flow() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    // 10.96.0.10 is in the default service range; the answer has no endpoints (Direct).
    let o = answer_for(&m, "10.96.0.10", 1000, Ok(policy(true, 1, Duration::from_secs(10))), t0);
    assert_eq!(o.label, "no_endpoints");
    assert!(matches!(o.decided.as_ref().map(Decided::verdict), Some(Verdict::Deny)));
    assert!(!flow_mods(&o).is_empty());
}

#[test]
fn invalidation_by_address_by_version_and_all() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    answer_for(&m, "10.244.1.4", 1000, Ok(policy(true, 5, ttl)), t0);
    answer_for(&m, "10.244.1.4", 1001, Ok(policy(true, 1, ttl)), t0);
    answer_for(&m, "10.244.1.3", 1002, Ok(policy(false, 5, ttl)), t0);
    assert_eq!(m.cached_answers(), 3);
    // By address (source or destination).
    let dropped = m.invalidate(&[ip("10.244.1.3")], 0, false);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].dst_ip, ip("10.244.1.3"));
    assert!(now_for(&m, "10.244.1.3", 1002, t0).is_err(), "asked again");
    assert!(now_for(&m, "10.244.1.4", 1000, t0).is_ok(), "the others stay");
    // By version: answers of a version below 3 go.
    let dropped = m.invalidate(&[], 3, false);
    assert_eq!(dropped.iter().map(|q| q.src_port).collect::<Vec<_>>(), vec![1001]);
    assert_eq!(m.cached_answers(), 1);
    // All.
    assert_eq!(m.invalidate(&[], 0, true).len(), 1);
    assert_eq!(m.cached_answers(), 0);
}

#[test]
fn a_reloaded_policy_files_old_answers_are_misses() {
    let file = |default: &str, version: u64| {
        IndexedPolicy::new(PolicyFile::parse(&format!("default = \"{default}\"\nversion = {version}")).unwrap())
    };
    let cell = Arc::new(PolicyCell::new(file("allow", 1)));
    let m = machine(SETTINGS, PolicySource::File(cell.clone()));
    let t0 = Instant::now();
    let o = hit(now_for(&m, "10.244.1.4", 1000, t0), "a file answers at once");
    assert_eq!(o.label, "allow");
    assert_eq!(m.cached_answers(), 1, "a file's answer is cached (so invalidation works the same)");
    // The reload: the cached allow of generation 1 must not be used with generation 2.
    drop(cell.replace(Arc::new(file("deny", 2))));
    let o = hit(now_for(&m, "10.244.1.4", 1000, t0), "a file answers at once");
    assert_eq!(o.label, "deny");
    assert_eq!(m.refresh_policy(), 2);
}

#[test]
fn the_embedded_policy_answers_at_once_without_caching() {
    let m = machine(SETTINGS, PolicySource::Embedded);
    let o = hit(now_for(&m, "10.244.1.4", 1000, Instant::now()), "embedded answers at once");
    assert_eq!(o.label, "allow");
    assert_eq!(m.cached_answers(), 0);
}

#[test]
fn the_cache_bound_drops_expired_answers_first() {
    let m = machine(SETTINGS, remote());
    let t0 = Instant::now();
    // Fill to the bound with answers that expire at t0 + 1 s, straight through the cache.
    for i in 0..CACHE_MAX {
        let q = PolicyQuery { src_port: (i % 60_000) as u16, dst_port: (i / 60_000) as u16, ..base_query() };
        m.remember(q, &policy(true, 1, Duration::from_secs(1)), t0, 0);
    }
    assert_eq!(m.cached_answers(), CACHE_MAX);
    // Later, one more: the expired ones make room; the new one stays.
    let o =
        answer_for(&m, "10.244.1.4", 1000, Ok(policy(true, 1, Duration::from_secs(10))), t0 + Duration::from_secs(2));
    assert_eq!(o.label, "allow");
    assert_eq!(m.cached_answers(), 1);
}

fn base_query() -> PolicyQuery {
    PolicyQuery {
        src_ip: ip("10.244.1.200"),
        dst_ip: ip("10.244.1.201"),
        src_mac: MacAddr::ZERO,
        dst_mac: MacAddr::ZERO,
        src_port: 0,
        dst_port: 0,
        protocol: 17,
        is_reply: false,
        nat: false,
    }
}
