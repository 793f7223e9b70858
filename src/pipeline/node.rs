//! The expected pipeline of a bridge as a function of the configuration and of what the node's
//! database says about the bridge now ([`NodeView`]): the configured `[pipeline]` (or the
//! zero-config one) with the node's pods added to the static `local_pods`, and the gateway,
//! uplink and tunnel ports of the view (`external_ids:shardflow-role`) in place of the
//! configured port numbers. Sans IO: the shards call [`effective`] when a view comes, then
//! [`flows`] for the whole pipeline (resync, audit) and [`change_plan`] for what to send (one
//! bundle per change, no full resync).
//!
//! Why one generator for both: a pod's flows are exactly the per-pod flows the generator makes
//! for a `[[pipeline.local_pods]]` entry (table 0 anti-spoofing 50/40, table 5 forwarding 100,
//! and with IPv6 the neighbour discovery and v6 flows), with the same stable cookies
//! (`table << 32 | rule << 24 | port`): adding a pod to the input adds exactly its flows to the
//! output, so the change is the difference of two outputs, and the audit and the resync on
//! connect expect what the change installed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::node::{NodeView, PortRole};
use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::pipeline::dispatch::Mode;

use super::default::{flow_texts_mode, LocalPod, PipelineConfig, PipelineError, MAX_PORT};
use super::resync::{FlowIdentity, ResyncPlan};

/// A pod of the view that did not become part of the pipeline, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The Interface's name.
    pub name: String,
    pub reason: String,
}

/// The pipeline configuration of a bridge: `base` (the configured `[pipeline]` or
/// [`PipelineConfig::zero_config`]) with `view`'s infrastructure ports and pods, at most
/// `max_pods` of the view's pods (in interface-name order). Pods that conflict with the
/// configuration (a port, IPv4 address or MAC already taken), that have no IPv4 address, or
/// that are over the bound are refused, not installed.
pub fn effective(base: &PipelineConfig, view: Option<&NodeView>, max_pods: usize) -> (PipelineConfig, Vec<Refused>) {
    let mut cfg = base.clone();
    let mut refused = Vec::new();
    let Some(view) = view else { return (cfg, refused) };
    // Infrastructure ports first: the database names them, the configuration is the fallback.
    for p in view.ports.values() {
        match p.role {
            PortRole::Gateway => cfg.gateway_port = p.ofport,
            PortRole::Uplink => cfg.uplink_port = p.ofport,
            PortRole::Tunnel => cfg.tunnel_port = Some(p.ofport),
            _ => {}
        }
    }
    let mut ports: BTreeSet<u32> = cfg.local_pods.iter().map(|p| p.port).collect();
    ports.extend([cfg.gateway_port, cfg.uplink_port].into_iter().filter(|p| *p != 0));
    ports.extend(cfg.tunnel_port);
    let mut ips: BTreeSet<IpAddr> = cfg.local_pods.iter().map(|p| IpAddr::V4(p.ip)).collect();
    ips.extend(cfg.local_pods.iter().filter_map(|p| p.ipv6.map(IpAddr::V6)));
    if !cfg.zero_config {
        ips.insert(IpAddr::V4(cfg.gateway_ip));
        ips.extend(cfg.gateway_ip6.map(IpAddr::V6));
    }
    let mut macs: BTreeSet<_> = cfg.local_pods.iter().map(|p| p.mac).collect();
    let mut added = 0usize;
    for (port, info) in view.pods() {
        let refuse = |reason: String| Refused { name: port.name.clone(), reason };
        if added >= max_pods {
            refused.push(refuse(format!("more than {max_pods} pods on the bridge (pods.max)")));
            continue;
        }
        if port.ofport == 0 || port.ofport > MAX_PORT {
            refused.push(refuse(format!("ofport {} is not usable", port.ofport)));
            continue;
        }
        if ports.contains(&port.ofport) {
            refused.push(refuse(format!("port {} is already configured", port.ofport)));
            continue;
        }
        if info.mac == crate::packet::MacAddr::ZERO || info.mac.is_multicast() {
            refused.push(refuse(format!("attached-mac {} is not a unicast MAC", info.mac)));
            continue;
        }
        if macs.contains(&info.mac) {
            refused.push(refuse(format!("attached-mac {} is already another pod's", info.mac)));
            continue;
        }
        let Some(ip) = info.ips.iter().find_map(|ip| match ip {
            IpAddr::V4(a) if !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast() => Some(*a),
            _ => None,
        }) else {
            refused.push(refuse("no usable IPv4 address in ip_address (IPv6-only pods are not supported)".into()));
            continue;
        };
        // IPv6 flows exist only with an IPv6 pod range: the address must be inside it.
        let ipv6 = cfg.pod_cidr6.and_then(|c| {
            info.ips.iter().find_map(|ip| match ip {
                IpAddr::V6(a) if c.contains(*a) => Some(*a),
                _ => None,
            })
        });
        if ips.contains(&IpAddr::V4(ip)) || ipv6.is_some_and(|a| ips.contains(&IpAddr::V6(a))) {
            refused.push(refuse(format!("{ip} is already the gateway's or another pod's address")));
            continue;
        }
        ports.insert(port.ofport);
        ips.insert(IpAddr::V4(ip));
        ips.extend(ipv6.map(IpAddr::V6));
        macs.insert(info.mac);
        cfg.local_pods.push(LocalPod { port: port.ofport, ip, mac: info.mac, ipv6 });
        added += 1;
    }
    (cfg, refused)
}

/// Every flow of the bridge for `cfg` (an [`effective`] configuration, whose base was
/// validated at start-up): the pipeline and the packet-in dispatch, as ADDs.
pub fn flows(cfg: &PipelineConfig, mode: Mode, shards: usize, generation: u16) -> Result<Vec<FlowMod>, PipelineError> {
    flow_texts_mode(cfg, mode, shards, generation)
        .into_iter()
        .map(|t| {
            FlowMod::parse(&t, FlowModCommand::Add).map_err(|e| PipelineError::Flow { reason: e.to_string(), flow: t })
        })
        .collect()
}

/// What turns a switch holding `old` into one holding `new` (both from [`flows`]): ADDs of the
/// new or changed flows, DELETE_STRICTs (by cookie) of the flows that went. Sent as one bundle.
pub fn change_plan(old: &[FlowMod], new: &[FlowMod]) -> ResyncPlan {
    let mut plan = ResyncPlan::default();
    let before: HashMap<FlowIdentity, &FlowMod> = old.iter().map(|f| (FlowIdentity::of_flow_mod(f), f)).collect();
    let after: HashMap<FlowIdentity, &FlowMod> = new.iter().map(|f| (FlowIdentity::of_flow_mod(f), f)).collect();
    for f in new {
        match before.get(&FlowIdentity::of_flow_mod(f)) {
            Some(o) if *o == f => plan.unchanged += 1,
            Some(_) => plan.changed.push((f.clone(), "flow")),
            None => plan.adds.push(f.clone()),
        }
    }
    for f in old {
        if !after.contains_key(&FlowIdentity::of_flow_mod(f)) {
            let mut d = FlowMod::new(FlowModCommand::DeleteStrict);
            d.table_id = f.table_id;
            d.priority = f.priority;
            d.r#match = f.r#match.clone();
            d.cookie = f.cookie;
            d.cookie_mask = u64::MAX;
            d.out_port = crate::openflow::flow::ANY;
            d.out_group = crate::openflow::flow::ANY;
            plan.deletes.push(d);
        }
    }
    plan
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::node::{NodePort, PodInfo};
    use crate::packet::MacAddr;
    use crate::pipeline::cookie;

    fn pod(name: &str, ofport: u32, last: u8, v6: bool) -> NodePort {
        let mut ips = vec![IpAddr::from([10, 244, 1, last])];
        if v6 {
            ips.push(format!("fd00:10:244:1::{last:x}").parse().unwrap());
        }
        NodePort {
            name: name.into(),
            ofport,
            role: PortRole::Pod(PodInfo {
                mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, last]),
                ips,
                name: format!("pod-{last}"),
                namespace: "default".into(),
                container_id: format!("c{last}"),
            }),
        }
    }

    fn view(ports: Vec<NodePort>) -> NodeView {
        NodeView {
            bridge: "br-int".into(),
            datapath_id: Some(1),
            ports: ports.into_iter().map(|p| (p.name.clone(), p)).collect::<BTreeMap<_, _>>(),
        }
    }

    /// docs/pipeline.md's example configuration.
    fn configured() -> PipelineConfig {
        crate::pipeline::doc_example()
    }

    fn texts(cfg: &PipelineConfig) -> BTreeSet<String> {
        flows(cfg, Mode::Fanout, 2, 1).unwrap().iter().map(|f| f.to_flow_text()).collect()
    }

    #[test]
    fn without_a_view_the_configured_pipeline_is_unchanged() {
        let base = configured();
        let (eff, refused) = effective(&base, None, 16);
        assert_eq!(eff, base);
        assert!(refused.is_empty());
        let (eff, _) = effective(&base, Some(&view(vec![])), 16);
        assert_eq!(eff, base);
        let generated = crate::pipeline::default::generate(&base, 2, 1).unwrap();
        assert_eq!(flows(&eff, Mode::Fanout, 2, 1).unwrap(), generated);
    }

    #[test]
    fn a_pod_added_brings_exactly_its_flows_with_stable_cookies() {
        let base = configured();
        let before = texts(&base);
        let (eff, refused) = effective(&base, Some(&view(vec![pod("veth7", 7, 7, false)])), 16);
        assert!(refused.is_empty(), "{refused:?}");
        let after = texts(&eff);
        assert!(before.is_subset(&after));
        let added: Vec<&String> = after.difference(&before).collect();
        assert_eq!(added.len(), 3, "{added:#?}");
        let want = [
            " cookie=0x1020005000007, priority=50,ip,in_port=7,dl_src=0a:58:0a:f4:01:07,nw_src=10.244.1.7 actions=load:0x1->NXM_NX_REG0[2],goto_table:6",
            " cookie=0x1020006000007, priority=40,ip,in_port=7 actions=drop",
            " cookie=0x1020501000007, table=5, priority=100,ip,nw_dst=10.244.1.7 actions=set_field:0a:58:0a:f4:01:07->eth_dst,output:7",
        ];
        for w in want {
            assert!(added.iter().any(|t| t.as_str() == w), "no {w:?} in {added:#?}");
        }
        // The change is one plan of three ADDs; the way back three strict deletes by cookie.
        let (old, new) = (flows(&base, Mode::Fanout, 2, 1).unwrap(), flows(&eff, Mode::Fanout, 2, 1).unwrap());
        let plan = change_plan(&old, &new);
        assert_eq!((plan.adds.len(), plan.changed.len(), plan.deletes.len()), (3, 0, 0));
        let back = change_plan(&new, &old);
        assert_eq!((back.adds.len(), back.changed.len(), back.deletes.len()), (0, 0, 3));
        for d in &back.deletes {
            assert_eq!(d.command, FlowModCommand::DeleteStrict);
            assert_eq!(d.cookie_mask, u64::MAX);
            assert_eq!(d.cookie & 0xff_ffff, 7, "{:#x}", d.cookie);
            assert_eq!(cookie::category(d.cookie), Some(cookie::Category::Pipeline));
        }
        // The same pod added twice, or with others, keeps its cookies.
        let (two, _) = effective(&base, Some(&view(vec![pod("veth7", 7, 7, false), pod("veth8", 8, 8, false)])), 16);
        assert!(added.iter().all(|t| texts(&two).contains(*t)));
    }

    #[test]
    fn a_changed_pod_is_removed_then_added_in_one_plan() {
        let base = configured();
        let (old, _) = effective(&base, Some(&view(vec![pod("veth7", 7, 7, false)])), 16);
        // Same interface, another address and MAC (the pod was recreated).
        let (new, _) = effective(&base, Some(&view(vec![pod("veth7", 7, 9, false)])), 16);
        let plan = change_plan(&flows(&old, Mode::Fanout, 2, 1).unwrap(), &flows(&new, Mode::Fanout, 2, 1).unwrap());
        // The anti-spoofing drop (ip,in_port=7) keeps its identity and actions: unchanged.
        assert_eq!((plan.adds.len(), plan.changed.len(), plan.deletes.len()), (2, 0, 2), "{plan:?}");
        assert!(plan.adds.iter().all(|f| f.to_flow_text().contains("10.244.1.9")));
        assert!(plan.deletes.iter().all(|f| f.cookie & 0xff_ffff == 7));
        // One bundle: the adds, then the strict deletes (other matches: they cannot collide).
        assert_eq!(plan.messages().len(), 4);
    }

    /// What one node update costs the installing shard at `learning.max_pods` (printed, not
    /// asserted: the machine is shared).
    #[test]
    fn cost_of_an_update_with_many_pods() {
        let base = configured();
        let ports: Vec<NodePort> = (0..1000u32)
            .map(|i| {
                let mut p = pod(&format!("veth{i:04}"), 100 + i, 0, false);
                if let PortRole::Pod(info) = &mut p.role {
                    info.ips = vec![IpAddr::from([10, 245, (i >> 8) as u8, i as u8])];
                    info.mac = MacAddr([0x0a, 0x58, 0x0b, 0, (i >> 8) as u8, i as u8]);
                }
                p
            })
            .collect();
        let v = view(ports);
        let t0 = std::time::Instant::now();
        let (eff, refused) = effective(&base, Some(&v), 1024);
        let t1 = std::time::Instant::now();
        let f = flows(&eff, Mode::Fanout, 2, 1).unwrap();
        let t2 = std::time::Instant::now();
        let plan = change_plan(&f, &f);
        let t3 = std::time::Instant::now();
        assert!(refused.is_empty() && plan.is_empty());
        eprintln!(
            "FIGURE node update, 1000 pods ({} flows): effective {:?}, flows {:?}, change_plan {:?} (this build)",
            f.len(),
            t1 - t0,
            t2 - t1,
            t3 - t2
        );
    }

    #[test]
    fn ipv6_pods_get_their_nd_and_v6_flows() {
        let mut base = configured();
        base.pod_cidr6 = Some("fd00:10:244:1::/64".parse().unwrap());
        let before = texts(&base);
        let (eff, _) = effective(&base, Some(&view(vec![pod("veth7", 7, 7, true)])), 16);
        let after = texts(&eff);
        let added: Vec<&String> = after.difference(&before).collect();
        // 3 IPv4 + ND 135/136 + v6 accept + v6 spoof drop + v6 delivery.
        assert_eq!(added.len(), 8, "{added:#?}");
        assert!(added.iter().any(|t| t.contains("icmp6,in_port=7,icmp_type=135 actions=NORMAL")));
        assert!(added.iter().any(|t| t.contains("ipv6,ipv6_dst=fd00:10:244:1::7 actions=set_field:0a:58:0a:f4:01:07")));
        use crate::policy::decision::Locator;
        assert_eq!(eff.locate("fd00:10:244:1::7".parse().unwrap()).map(|l| l.port), Some(7));
        assert_eq!(eff.locate("10.244.1.7".parse().unwrap()).map(|l| l.port), Some(7));
    }

    #[test]
    fn conflicting_and_excess_pods_are_refused_and_roles_replace_configured_ports() {
        let base = configured();
        let mut gw = pod("gw0", 9, 9, false);
        gw.role = PortRole::Gateway;
        let v = view(vec![
            pod("a-taken-port", 2, 20, false), // port 2 is a configured pod
            pod("b-taken-ip", 10, 2, false),   // 10.244.1.2 and its MAC are the configured pod's
            pod("c-ok", 11, 11, false),
            pod("d-over", 12, 12, false),
            gw,
        ]);
        let (eff, refused) = effective(&base, Some(&v), 1);
        let names: Vec<&str> = refused.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a-taken-port", "b-taken-ip", "d-over"], "{refused:?}");
        assert!(refused[2].reason.contains("pods.max"));
        assert_eq!(eff.local_pods.len(), 3);
        assert_eq!(eff.gateway_port, 9, "the database's gateway port replaces the configured 3");
        let t = texts(&eff);
        assert!(t.iter().any(|l| l.contains("priority=50,ip,in_port=9 actions=load:0x1->NXM_NX_REG0[3]")));
        assert!(!t.iter().any(|l| l.contains("in_port=3 ")));
    }

    #[test]
    fn zero_config_pipeline_has_learning_ports_and_no_addresses() {
        let zero = PipelineConfig::zero_config();
        zero.validate().unwrap();
        let t: Vec<String> = flows(&zero, Mode::Fanout, 2, 1).unwrap().iter().map(|f| f.to_flow_text()).collect();
        let has = |needle: &str| t.iter().any(|l| l.contains(needle));
        assert!(has("priority=10,ip actions=load:0x1->NXM_NX_REG0[5],goto_table:1"), "{t:#?}");
        assert!(has("table=2, priority=150,ct_state=+est-inv+trk actions=goto_table:3"));
        assert!(has("table=20, priority=10,arp,arp_op=2 actions=meter:2,multipath("));
        assert!(has("table=20, priority=50,arp,arp_op=1 actions=meter:2,multipath("));
        // Nothing names an address, a service range, a gateway or an uplink.
        for absent in ["nw_dst=", "nw_src=", "in_port=", "arp_tpa", "NORMAL", "priority=90,"] {
            assert!(!has(absent), "{absent} in {t:#?}");
        }
        // Pods from the database get the same per-pod flows as configured ones.
        let (eff, refused) = effective(&zero, Some(&view(vec![pod("veth7", 7, 7, false)])), 16);
        assert!(refused.is_empty());
        let t2 = texts(&eff);
        assert!(t2.iter().any(|l| l.contains("priority=40,ip,in_port=7 actions=drop")));
        assert!(t2.iter().any(|l| l.contains("table=5, priority=100,ip,nw_dst=10.244.1.7 ")));
        assert!(!t2.iter().any(|l| l.contains("output:0")));
        let _ = Ipv4Addr::UNSPECIFIED;
    }

    /// Every zero-config flow (with a pod from the database) is what OVS itself encodes.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn zero_config_flows_encode_as_ovs_does() {
        let zero = PipelineConfig::zero_config();
        let (eff, refused) = effective(&zero, Some(&view(vec![pod("veth7", 7, 7, false)])), 16);
        assert!(refused.is_empty());
        for f in flows(&eff, Mode::Fanout, 2, 7).unwrap() {
            let text = f.to_flow_text();
            let ovs = crate::oracle::parse_flow(&text).unwrap_or_else(|e| panic!("OVS refuses {text}: {e}"));
            let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);
            assert_eq!(f.encode(xid), ovs.bytes, "{text}");
        }
    }
}
