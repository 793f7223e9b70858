//! A shard's side of the node's bridge: pods installed and removed as they come and go.
//!
//! The control thread works each update out (`daemon::node_router`: the effective pipeline,
//! every flow of the bridge, the change) and every shard gets the result: its decider takes the
//! new pipeline (so a decision to a pod's IP outputs to its port with its MAC), and its cached
//! answers and decided connections about removed pods' addresses go (the invalidation path of
//! cni-ctl's `Invalidate`: their flows are deleted by cookie on this shard's connections). The
//! shard that installs the pipeline of the node's bridge also sends the change in one bundle
//! (no full resync). The audit and the resync on (re)connect ask [`Shard::desired_for`], so
//! they expect the node's pods too. Nothing here is heavier than a pointer swap and a bundle.

use super::super::node_router::NodeApplied;
use super::*;

/// The flows a switch should hold: the configuration's, or for the node's bridge the
/// configuration's with the node's pods and ports. `version` changes with every update.
pub(super) struct Desired {
    version: u64,
    base: Arc<Vec<FlowMod>>,
    /// The node's bridge and its flows, once a view naming its datapath id came.
    node: Option<(u64, Arc<Vec<FlowMod>>)>,
}

impl Desired {
    pub(super) fn new(base: &[FlowMod]) -> Desired {
        Desired { version: 0, base: Arc::new(base.to_vec()), node: None }
    }
}

impl Shard {
    /// What `dpid` should hold now, and the version of that answer.
    pub(super) fn desired_for(&self, dpid: u64) -> (u64, Arc<Vec<FlowMod>>) {
        let d = self.desired.borrow();
        match &d.node {
            Some((node_dpid, flows)) if *node_dpid == dpid => (d.version, flows.clone()),
            _ => (d.version, d.base.clone()),
        }
    }

    /// Takes an update of the node's bridge (see the module's doc).
    pub(super) fn on_node_update(self: &Rc<Self>, applied: &Arc<NodeApplied>) {
        if let Some(decider) = &self.decider {
            decider.set_pipeline(applied.pipeline.clone());
        }
        if !applied.gone_ips.is_empty() {
            // Cached answers and decided connections about them, on this shard.
            self.invalidate(&applied.gone_ips, 0, false);
        }
        let Some(dpid) = applied.dpid else {
            // No datapath id yet: nothing to install on; the pods are known for when it comes.
            return;
        };
        {
            let mut d = self.desired.borrow_mut();
            d.version += 1;
            d.node = Some((dpid, applied.flows.clone()));
        }
        if !self.shared.installs_pipeline(dpid, self.id()) || applied.plan.is_empty() {
            return;
        }
        let conn_id = self.by_dpid.borrow().get(&dpid).copied();
        let Some(conn) = conn_id.and_then(|id| self.conns.borrow().get(&id).cloned()) else {
            // Not connected (here): the resync on connect installs the current pipeline.
            return;
        };
        let (shard, applied) = (self.clone(), applied.clone());
        glommio::spawn_local(async move {
            let t0 = Instant::now();
            let plan = &applied.plan;
            let (adds, changed, deletes) = (plan.adds.len(), plan.changed.len(), plan.deletes.len());
            match conn.bundle(plan.messages()).await {
                Ok(()) => {
                    let n = (adds + changed + deletes) as u64;
                    shard.metrics.flow_mods_n("ok", n);
                    shard.flow_mods.set(shard.flow_mods.get() + n);
                    tracing::info!(
                        shard = shard.id(),
                        dpid = %format!("{dpid:016x}"),
                        pods_installed = applied.pods_installed,
                        pods_removed = applied.pods_removed,
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
}
