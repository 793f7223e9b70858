//! A shard's side of the node's bridge: pods installed and removed as they come and go.
//!
//! Every shard gets every [`NodeUpdate`] (`ShardMsg::Node`): its decider takes the new
//! effective pipeline (so a decision to a pod's IP outputs to its port with its MAC), and the
//! cached answers and decided connections about removed pods' addresses go (the invalidation
//! path of cni-ctl's `Invalidate`: their flows are deleted by cookie on this shard's
//! connections). The shard that installs the pipeline of the bridge whose datapath id the view
//! names also sends the pipeline's change, the difference between the flows expected before and
//! after, in one bundle (no full resync), forgets what the Tracker learned on the removed ports,
//! and counts it all. The audit and the resync on (re)connect ask [`Shard::desired_for`], so
//! they expect the node's pods too.

use std::collections::BTreeSet;

use crate::node::{NodeChange, NodeUpdate, PortRole};
use crate::pipeline::node as node_pipeline;

use super::*;

/// The flows a switch should hold: the configuration's, or for the node's bridge the
/// configuration's with the node's pods and ports. `version` changes with every update.
pub(super) struct Desired {
    version: u64,
    base: Rc<Vec<FlowMod>>,
    /// The node's bridge and its flows, once a view naming its datapath id came.
    node: Option<(u64, Rc<Vec<FlowMod>>)>,
}

impl Desired {
    pub(super) fn new(base: &[FlowMod]) -> Desired {
        Desired { version: 0, base: Rc::new(base.to_vec()), node: None }
    }
}

impl Shard {
    /// What `dpid` should hold now, and the version of that answer.
    pub(super) fn desired_for(&self, dpid: u64) -> (u64, Rc<Vec<FlowMod>>) {
        let d = self.desired.borrow();
        match &d.node {
            Some((node_dpid, flows)) if *node_dpid == dpid => (d.version, flows.clone()),
            _ => (d.version, d.base.clone()),
        }
    }

    /// Takes a new view of the node's bridge (see the module's doc).
    pub(super) fn on_node_update(self: &Rc<Self>, update: &NodeUpdate) {
        // Dispatch only (no pipeline at all): nothing of ours to install, nothing to decide.
        let (Some(base), Some(decider)) = (self.shared.cfg.pipeline.as_ref(), self.decider.clone()) else {
            return;
        };
        let view = &update.view;
        let max = self.shared.cfg.learning.max_pods;
        let (eff, refused) = node_pipeline::effective(base, Some(view), max);
        let (mode, n) = (self.shared.cfg.openflow.mode, self.shared.cfg.shards.count);
        let flows = match node_pipeline::flows(&eff, mode, n, self.shared.generation) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(shard = self.id(), "the node's pipeline cannot be built, view not taken: {e}");
                self.shared.node_metrics.bundle_failures.inc();
                return;
            }
        };
        let old_pods: BTreeSet<(u32, std::net::Ipv4Addr)> =
            decider.pipeline().local_pods.iter().map(|p| (p.port, p.ip)).collect();
        let new_pods: BTreeSet<(u32, std::net::Ipv4Addr)> = eff.local_pods.iter().map(|p| (p.port, p.ip)).collect();
        let infra: Vec<u32> =
            [eff.gateway_port, eff.uplink_port].into_iter().filter(|p| *p != 0).chain(eff.tunnel_port).collect();
        decider.set_pipeline(Rc::new(eff));

        // What went: a removed port, or the old side of a changed one (removed, then added).
        let mut gone_ips = Vec::new();
        let mut gone_ports = Vec::new();
        for change in &update.changes {
            if let NodeChange::Removed(p) | NodeChange::Changed { old: p, .. } = change {
                if let PortRole::Pod(info) = &p.role {
                    gone_ips.extend(info.ips.iter().copied());
                }
                gone_ports.push(p.ofport);
            }
        }
        if !gone_ips.is_empty() {
            // Cached answers and decided connections about them, on this shard.
            self.invalidate(&gone_ips, 0, false);
        }

        let Some(dpid) = view.datapath_id else {
            // No datapath id yet: nothing to install on; the pods are known for when it comes.
            return;
        };
        let (_, old_flows) = self.desired_for(dpid);
        let new_flows = Rc::new(flows);
        {
            let mut d = self.desired.borrow_mut();
            d.version += 1;
            d.node = Some((dpid, new_flows.clone()));
        }
        if !self.shared.installs_pipeline(dpid, self.id()) {
            return;
        }
        // Fan-out: one shard installs each bridge's pipeline. Single mode: whichever shard holds
        // the one connection; shard 0 counts (every shard takes the update).
        let counts = match self.shared.cfg.openflow.mode {
            Mode::Fanout => true,
            Mode::Single => self.id() == 0,
        };
        if counts {
            self.count_node_update(update, &refused, &old_pods, &new_pods);
        }
        for port in &gone_ports {
            self.shared.tracker.forget_port(dpid, *port);
        }
        for port in infra {
            self.shared.tracker.exclude_port(dpid, port);
        }

        let plan = node_pipeline::change_plan(&old_flows, &new_flows);
        if plan.is_empty() {
            return;
        }
        let conn_id = self.by_dpid.borrow().get(&dpid).copied();
        let Some(conn) = conn_id.and_then(|id| self.conns.borrow().get(&id).cloned()) else {
            // Not connected (here): the resync on connect installs the current pipeline.
            return;
        };
        let installed = new_pods.difference(&old_pods).count();
        let removed = old_pods.difference(&new_pods).count();
        let shard = self.clone();
        glommio::spawn_local(async move {
            let t0 = Instant::now();
            let (adds, changed, deletes) = (plan.adds.len(), plan.changed.len(), plan.deletes.len());
            match conn.bundle(plan.messages()).await {
                Ok(()) => {
                    let n = (adds + changed + deletes) as u64;
                    shard.metrics.flow_mods_n("ok", n);
                    shard.flow_mods.set(shard.flow_mods.get() + n);
                    tracing::info!(
                        shard = shard.id(),
                        dpid = %format!("{dpid:016x}"),
                        pods_installed = installed,
                        pods_removed = removed,
                        added = adds,
                        replaced = changed,
                        deleted = deletes,
                        "node change applied in one bundle in {:.2} ms",
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                }
                Err(e) => {
                    // The audit puts the expected flows in place on its next round.
                    shard.shared.node_metrics.bundle_failures.inc();
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "node change bundle failed: {e}");
                }
            }
        })
        .detach();
    }

    /// Counts one update: pods installed and removed, and refusals (once, when the pod comes or
    /// changes, not on every later update).
    fn count_node_update(
        &self,
        update: &NodeUpdate,
        refused: &[node_pipeline::Refused],
        old_pods: &BTreeSet<(u32, std::net::Ipv4Addr)>,
        new_pods: &BTreeSet<(u32, std::net::Ipv4Addr)>,
    ) {
        let m = &self.shared.node_metrics;
        m.updates_applied.inc();
        let installed = new_pods.difference(old_pods).count() as u64;
        let removed = old_pods.difference(new_pods).count() as u64;
        m.pods_installed.inc_by(installed);
        m.pods_removed.inc_by(removed);
        let arriving: BTreeSet<&str> = update
            .changes
            .iter()
            .filter_map(|c| match c {
                NodeChange::Added(p) | NodeChange::Changed { new: p, .. } => Some(p.name.as_str()),
                NodeChange::Removed(_) => None,
            })
            .collect();
        for r in refused.iter().filter(|r| arriving.contains(r.name.as_str())) {
            m.pods_refused.inc();
            tracing::warn!(shard = self.id(), port = %r.name, "pod not installed: {}", r.reason);
        }
    }
}
