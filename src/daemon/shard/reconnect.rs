//! Bringing a switch in line on (re)connect: the pipeline resynced in one bundle (meters
//! first, the switch's connection flows adopted), then the flows of the connections this shard
//! decided put back from their records in slices.

use super::*;
use crate::daemon::meter_sync;

impl Shard {
    /// Resyncs `dpid`'s pipeline on connect (one bundle), then restores this shard's live
    /// connection flows.
    pub(super) async fn install_pipeline(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, ready_at: Instant) {
        let shard = self;
        {
            let conn = conn.clone();
            let (_, flows) = shard.desired_for(dpid);
            // Resync rather than reinstall: read what the switch holds (it keeps its flows
            // across a controller restart), and change only what differs, in one bundle.
            let actual = match shard.flow_stats(&conn).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "reading the flows failed: {e}");
                    let why = format!("reading the flows failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                    return;
                }
            };
            // The packet-in meters the flows name go first (meter mods cannot be bundled).
            let meters = match meter_sync::sync_meters(&shard.shared, &conn, shard.id()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "installing the packet-in meters failed (pipeline.meters rates of 0 run without them): {e}");
                    let why = format!("installing the packet-in meters failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                    return;
                }
            };
            // Connection flows on the switch that this daemon does not know yet (it restarted)
            // are adopted, not deleted: established connections keep their flows.
            let adopted = shard.live.borrow_mut().adopt(dpid, resync::adopt(&actual, cookie::Category::Connection));
            let mut desired: Vec<FlowMod> = flows.to_vec();
            desired.extend(shard.live.borrow().flows(dpid));
            let policy = ResyncPolicy::only(&[cookie::Category::Dispatch, cookie::Category::Pipeline]);
            let plan = resync::plan(&desired, &actual, &policy);
            let n = (plan.adds.len() + plan.changed.len() + plan.deletes.len()) as u64;
            let result = if plan.is_empty() { Ok(()) } else { conn.bundle(plan.messages()).await };
            match result {
                Ok(()) => {
                    let took = ready_at.elapsed();
                    shard.metrics.flow_mods_n("ok", n);
                    shard.metrics.observe_flow_install(took);
                    shard.flow_mods.set(shard.flow_mods.get() + n);
                    shard.shared.registry.pipeline_installed(dpid, took);
                    tracing::info!(
                        shard = shard.id(),
                        dpid = %format!("{dpid:016x}"),
                        added = plan.adds.len(),
                        replaced = plan.changed.len(),
                        deleted = plan.deletes.len(),
                        unchanged = plan.unchanged,
                        adopted,
                        "pipeline in place {:.3} ms after the handshake",
                        took.as_secs_f64() * 1e3
                    );
                    // Meters the configuration no longer has, now that no flow names them.
                    if !meters.after.is_empty() {
                        let msgs: Vec<Message> = meters.after.iter().cloned().map(Message::MeterMod).collect();
                        if let Err(e) = conn.apply(&msgs).await {
                            tracing::warn!(shard = shard.id(), "deleting stale packet-in meters failed: {e}");
                        }
                    }
                    // Then this shard's live connections, in slices between packet-ins.
                    shard.restore_decided(&conn, dpid, &actual).await;
                }
                Err(e) => {
                    shard.metrics.flow_mods_n("error", n);
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "installing the pipeline failed: {e}");
                    let why = format!("installing failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                }
            }
        }
    }

    /// Puts back the flows of the live connections this shard decided on `dpid` that the switch
    /// does not have (`actual`, by cookie: an ovs-vswitchd restart lost them), rebuilt from
    /// their records. Slices of [`RESTORE_SLICE`] records, with a pause between slices so that
    /// packet-ins go on: a resync of a large table is never one long turn. Logged with its time.
    pub(super) async fn restore_decided(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, actual: &[FlowStats]) {
        let Some(decider) = self.decider.clone() else { return };
        if !self.decided_flows_n.borrow().contains_key(&dpid) {
            return;
        }
        let t0 = Instant::now();
        let present: HashSet<u64> = actual
            .iter()
            .filter(|f| cookie::category(f.cookie) == Some(cookie::Category::Connection))
            .map(|f| f.cookie)
            .collect();
        let capacity = self.keys.borrow().capacity();
        let (mut flows, mut connections) = (0usize, 0usize);
        for start in (0..capacity).step_by(RESTORE_SLICE) {
            let msgs: Vec<Message> = {
                let keys = self.keys.borrow();
                let mut v = Vec::new();
                for (_, r) in keys.slots(start, RESTORE_SLICE) {
                    if let ConnRecord::Decided { dpid: d, decided, .. } = r {
                        if *d == dpid && !present.contains(&decided.cookie) {
                            connections += 1;
                            v.extend(decider.flows_of(decided).into_iter().map(Message::FlowMod));
                        }
                    }
                }
                v
            };
            if !msgs.is_empty() {
                // Never above the output high-water mark: a slow switch slows the restore down
                // instead of growing the queue or losing flows.
                if !conn.wait_for_room().await {
                    tracing::warn!(shard = self.id(), dpid = %format!("{dpid:016x}"), flows, "switch does not take the restored flows; stopped");
                    return;
                }
                flows += msgs.len();
                conn.send_all(&msgs);
            }
            if conn.is_closed() {
                tracing::warn!(shard = self.id(), dpid = %format!("{dpid:016x}"), flows, "connection closed while restoring connection flows");
                return;
            }
            // Let the writer and the packet-ins run (a timer, not a yield: a yield alone would
            // not let the executor poll its IO).
            glommio::timer::sleep(Duration::from_micros(20)).await;
        }
        // A barrier: the switch has taken them all (errors, if any, were logged as they came).
        let done = conn.apply(&[]).await;
        self.flow_mods.set(self.flow_mods.get() + flows as u64);
        self.metrics.flow_mods_n("ok", flows as u64);
        tracing::info!(
            shard = self.id(),
            dpid = %format!("{dpid:016x}"),
            connections,
            flows,
            barrier = ?done,
            "live connection flows restored in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }

    /// Every flow of the switch (OFPMP_FLOW, all parts).
    pub(super) async fn flow_stats(&self, conn: &Rc<Conn>) -> Result<Vec<FlowStats>, OpError> {
        let req = MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default()));
        let reply = conn.request(&Message::MultipartRequest(req)).await?;
        let mut out = Vec::new();
        for m in reply {
            if let Message::MultipartReply(r) = m {
                if let MultipartReplyBody::Flow(f) = r.body {
                    out.extend(f);
                }
            }
        }
        Ok(out)
    }
}
