//! The node's updates, from the node agent (OVSDB) to the shards. Runs on the control thread:
//! what an update means for the pipeline (the effective configuration, every flow of the bridge,
//! the change to send) is computed here, off the shards (at `learning.max_pods` = 1000 pods it
//! is ~3,000 flows built, parsed and compared: milliseconds of CPU a shard must not spend in one
//! turn), on tokio's blocking pool. The shards get the result ([`NodeApplied`]) and only act on
//! it (`daemon::shard::node`): take the pipeline, drop what was decided about removed pods, and
//! (the installing shard) send the change in one bundle.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use shards::{Mesh, ShardId};

use crate::config::Mode;
use crate::node::{NodeChange, NodeUpdate, PortRole};
use crate::openflow::flow::FlowMod;
use crate::pipeline::default::PipelineConfig;
use crate::pipeline::node as node_pipeline;
use crate::pipeline::resync::ResyncPlan;

use super::node_metrics::NodeMetrics;
use super::ShardMsg;

/// What a change takes away: the pod addresses whose cached answers and connections must go,
/// and the port whose learned addresses the Tracker forgets. A removed port loses everything; a
/// changed one only what changed (a pod whose labels changed keeps its connections; one that lost
/// an address loses that address's; one that got another port or MAC loses them all).
fn gone(change: &NodeChange) -> (Vec<IpAddr>, Option<u32>) {
    let pod_ips = |p: &crate::node::NodePort| match &p.role {
        PortRole::Pod(info) => info.ips.clone(),
        _ => Vec::new(),
    };
    match change {
        NodeChange::Added(_) => (Vec::new(), None),
        NodeChange::Removed(p) => (pod_ips(p), Some(p.ofport)),
        NodeChange::Changed { old, new } => {
            let same_place = old.ofport == new.ofport
                && match (&old.role, &new.role) {
                    (PortRole::Pod(o), PortRole::Pod(n)) => o.mac == n.mac,
                    (o, n) => std::mem::discriminant(o) == std::mem::discriminant(n),
                };
            if same_place {
                let kept = pod_ips(new);
                let lost: Vec<IpAddr> = pod_ips(old).into_iter().filter(|ip| !kept.contains(ip)).collect();
                // An address that went may have been learned on the port too.
                let port = (!lost.is_empty()).then_some(old.ofport);
                (lost, port)
            } else {
                (pod_ips(old), Some(old.ofport))
            }
        }
    }
}

/// One update of the node's bridge, worked out for the shards.
#[derive(Debug)]
pub struct NodeApplied {
    /// The pipeline decisions are made for from now on (pods located, infrastructure ports).
    pub pipeline: Arc<PipelineConfig>,
    /// The node's bridge, when ovs-vswitchd gave it a datapath id.
    pub dpid: Option<u64>,
    /// Every flow the bridge should hold now (the audit and the resync on connect expect them).
    pub flows: Arc<Vec<FlowMod>>,
    /// What turns the flows expected before into these: one bundle.
    pub plan: ResyncPlan,
    /// Addresses of pods that went (removed, or the old side of a change): every shard drops
    /// its cached answers and decided connections about them.
    pub gone_ips: Vec<IpAddr>,
    pub pods_installed: usize,
    pub pods_removed: usize,
}

/// The control thread's memory of the node: what the shards were last told.
pub struct NodeRouter {
    base: PipelineConfig,
    mode: Mode,
    shards: usize,
    generation: u16,
    max_pods: usize,
    /// The configuration's flows (what a bridge holds without the node's pods).
    base_flows: Arc<Vec<FlowMod>>,
    /// The node's bridge and its flows as last sent.
    last: Option<(u64, Arc<Vec<FlowMod>>)>,
    last_pods: BTreeSet<(u32, Ipv4Addr)>,
}

impl NodeRouter {
    pub fn new(
        base: PipelineConfig,
        mode: Mode,
        shards: usize,
        generation: u16,
        max_pods: usize,
        base_flows: Vec<FlowMod>,
    ) -> NodeRouter {
        let last_pods = base.local_pods.iter().map(|p| (p.port, p.ip)).collect();
        NodeRouter { base, mode, shards, generation, max_pods, base_flows: Arc::new(base_flows), last: None, last_pods }
    }

    /// Works out `update` (sans IO). Refused pods are logged and counted in `metrics` once,
    /// when they arrive (added or changed), not on every later update.
    pub fn apply(&mut self, update: &NodeUpdate, metrics: &NodeMetrics) -> Result<NodeApplied, String> {
        let view = &update.view;
        let (eff, refused) = node_pipeline::effective(&self.base, Some(view), self.max_pods);
        let flows =
            Arc::new(node_pipeline::flows(&eff, self.mode, self.shards, self.generation).map_err(|e| e.to_string())?);
        let arriving: BTreeSet<&str> = update
            .changes
            .iter()
            .filter_map(|c| match c {
                NodeChange::Added(p) | NodeChange::Changed { new: p, .. } => Some(p.name.as_str()),
                NodeChange::Removed(_) => None,
            })
            .collect();
        for r in refused.iter().filter(|r| arriving.contains(r.name.as_str())) {
            metrics.pods_refused.inc();
            tracing::warn!(port = %r.name, "pod not installed: {}", r.reason);
        }
        let gone_ips: Vec<IpAddr> = update.changes.iter().flat_map(|c| gone(c).0).collect();
        let pods: BTreeSet<(u32, Ipv4Addr)> = eff.local_pods.iter().map(|p| (p.port, p.ip)).collect();
        let pods_installed = pods.difference(&self.last_pods).count();
        let pods_removed = self.last_pods.difference(&pods).count();
        let plan = match view.datapath_id {
            Some(dpid) => {
                let before = match &self.last {
                    Some((d, f)) if *d == dpid => f.clone(),
                    _ => self.base_flows.clone(),
                };
                let plan = node_pipeline::change_plan(&before, &flows);
                self.last = Some((dpid, flows.clone()));
                plan
            }
            None => ResyncPlan::default(),
        };
        self.last_pods = pods;
        metrics.updates_applied.inc();
        metrics.pods_installed.inc_by(pods_installed as u64);
        metrics.pods_removed.inc_by(pods_removed as u64);
        Ok(NodeApplied {
            pipeline: Arc::new(eff),
            dpid: view.datapath_id,
            flows,
            plan,
            gone_ips,
            pods_installed,
            pods_removed,
        })
    }
}

/// Takes the node agent's updates, works each out off the runtime's threads, forgets what the
/// Tracker learned on removed ports, and hands the result to every shard (their inboxes are
/// awaited, never dropped from: a lost update would leave a pod's flows behind). The receiver is
/// bounded by its sender, the node agent.
pub fn route(
    runtime: &tokio::runtime::Handle,
    signal: crate::control::signal::ShutdownSignal,
    updates: flume::Receiver<NodeUpdate>,
    mut router: NodeRouter,
    mesh: Mesh<ShardMsg>,
    tracker: Arc<crate::tracker::Tracker>,
    metrics: NodeMetrics,
) {
    runtime.spawn(async move {
        let run = async {
            while let Ok(u) = updates.recv_async().await {
                let m = metrics.clone();
                let worked = tokio::task::spawn_blocking(move || {
                    let r = router.apply(&u, &m);
                    (router, u, r)
                })
                .await;
                let Ok((back, u, result)) = worked else { return };
                router = back;
                let applied = match result {
                    Ok(a) => Arc::new(a),
                    Err(e) => {
                        metrics.bundle_failures.inc();
                        tracing::error!("the node's pipeline cannot be built, update not taken: {e}");
                        continue;
                    }
                };
                if let Some(dpid) = applied.dpid {
                    for port in u.changes.iter().filter_map(|c| gone(c).1) {
                        tracker.forget_port(dpid, port);
                    }
                    let p = &applied.pipeline;
                    for port in [p.gateway_port, p.uplink_port].into_iter().filter(|p| *p != 0).chain(p.tunnel_port) {
                        tracker.exclude_port(dpid, port);
                    }
                }
                tracing::info!(
                    bridge = %u.view.bridge,
                    dpid = ?applied.dpid.map(|d| format!("{d:016x}")),
                    pods_installed = applied.pods_installed,
                    pods_removed = applied.pods_removed,
                    flows_added = applied.plan.adds.len() + applied.plan.changed.len(),
                    flows_deleted = applied.plan.deletes.len(),
                    "node update"
                );
                for s in 0..mesh.n_shards() {
                    if mesh.sender(ShardId(s)).send_async(ShardMsg::Node(applied.clone())).await.is_err() {
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = signal.wait() => {}
        }
    });
}

/// Without a pipeline (dispatch only) the node's updates install nothing, but they are still
/// read (the agent must not stall on a full channel) and the Tracker still forgets what it
/// learned on ports that went.
pub fn drain(
    runtime: &tokio::runtime::Handle,
    signal: crate::control::signal::ShutdownSignal,
    updates: flume::Receiver<NodeUpdate>,
    tracker: Arc<crate::tracker::Tracker>,
) {
    runtime.spawn(async move {
        let run = async {
            while let Ok(u) = updates.recv_async().await {
                let Some(dpid) = u.view.datapath_id else { continue };
                for port in u.changes.iter().filter_map(|c| gone(c).1) {
                    tracker.forget_port(dpid, port);
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = signal.wait() => {}
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::control::metrics::Metrics;
    use crate::node::{NodePort, NodeView, PodInfo};
    use crate::packet::MacAddr;

    fn pod(name: &str, ofport: u32, last: u8) -> NodePort {
        NodePort {
            name: name.into(),
            ofport,
            role: PortRole::Pod(PodInfo {
                mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, last]),
                ips: vec![IpAddr::from([10, 244, 1, last])],
                name: format!("pod-{last}"),
                namespace: "default".into(),
                container_id: format!("c{last}"),
            }),
        }
    }

    fn update(ports: Vec<NodePort>, changes: Vec<NodeChange>) -> NodeUpdate {
        let view = NodeView {
            bridge: "br-int".into(),
            datapath_id: Some(1),
            ports: ports.into_iter().map(|p| (p.name.clone(), p)).collect(),
        };
        NodeUpdate { view: Arc::new(view), changes }
    }

    #[test]
    fn a_change_takes_away_only_what_changed() {
        let a = pod("a", 7, 7);
        let mut relabelled = a.clone();
        let mut readdressed = a.clone();
        let mut moved = a.clone();
        moved.ofport = 9;
        if let (PortRole::Pod(r), PortRole::Pod(d)) = (&mut relabelled.role, &mut readdressed.role) {
            r.name = "renamed".into();
            d.ips.push(IpAddr::from([10, 244, 1, 70]));
            d.ips.remove(0);
        }
        let ip7 = IpAddr::from([10, 244, 1, 7]);
        assert_eq!(gone(&NodeChange::Removed(a.clone())), (vec![ip7], Some(7)));
        assert_eq!(gone(&NodeChange::Added(a.clone())), (vec![], None));
        assert_eq!(gone(&NodeChange::Changed { old: a.clone(), new: relabelled }), (vec![], None));
        assert_eq!(gone(&NodeChange::Changed { old: a.clone(), new: readdressed }), (vec![ip7], Some(7)));
        assert_eq!(gone(&NodeChange::Changed { old: a, new: moved }), (vec![ip7], Some(7)));
    }

    #[test]
    fn updates_become_plans_and_counts() {
        let metrics = NodeMetrics::register(&Metrics::new().unwrap()).unwrap();
        let base = PipelineConfig::zero_config();
        let base_flows = node_pipeline::flows(&base, Mode::Fanout, 2, 1).unwrap();
        let mut r = NodeRouter::new(base, Mode::Fanout, 2, 1, 1, base_flows);
        // Added: its three flows; a second pod is over learning.max_pods (1): refused once.
        let a = r
            .apply(
                &update(
                    vec![pod("a", 7, 7), pod("b", 8, 8)],
                    vec![NodeChange::Added(pod("a", 7, 7)), NodeChange::Added(pod("b", 8, 8))],
                ),
                &metrics,
            )
            .unwrap();
        assert_eq!((a.plan.adds.len(), a.plan.deletes.len(), a.pods_installed, a.pods_removed), (3, 0, 1, 0));
        assert_eq!(a.pipeline.local_pods.len(), 1);
        assert_eq!(metrics.pods_refused.get(), 1);
        // The same view again (another port's change): nothing to send, the refusal not recounted.
        let again = r.apply(&update(vec![pod("a", 7, 7), pod("b", 8, 8)], vec![]), &metrics).unwrap();
        assert!(again.plan.is_empty());
        assert_eq!(metrics.pods_refused.get(), 1);
        // Removed: its flows deleted, its address to invalidate; b now fits and comes.
        let gone = r.apply(&update(vec![pod("b", 8, 8)], vec![NodeChange::Removed(pod("a", 7, 7))]), &metrics).unwrap();
        assert_eq!((gone.plan.adds.len(), gone.plan.deletes.len()), (3, 3));
        assert_eq!((gone.pods_installed, gone.pods_removed), (1, 1));
        assert_eq!(gone.gone_ips, vec![IpAddr::from([10, 244, 1, 7])]);
        assert_eq!(metrics.updates_applied.get(), 3);
        assert_eq!((metrics.pods_installed.get(), metrics.pods_removed.get()), (2, 1));
    }
}
