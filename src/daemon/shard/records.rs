//! The shard's table of live connections: one small record per connection (seen, or decided
//! with what it installed), counted per switch without a scan, and expired a slice at a time.

use super::*;
use crate::policy::Plan;

impl Shard {
    pub(super) fn now_secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Keeps a decided connection's record, idle for its flows' idle timeout.
    pub(super) fn keep_decided(&self, dpid: u64, d: Decided) {
        let now = self.coarse_secs.get();
        let idle = u32::from(d.idle_timeout);
        let hash = d.conn_hash;
        self.count_flows(dpid, flow_count(&d) as i64);
        let mut keys = self.keys.borrow_mut();
        // Usually the packet-in was just counted here: replace that record in place.
        let gone = match keys.touch_mut(hash, now, Some(idle)) {
            Some(r) => {
                let counts = *r.counts_mut();
                Inserted::Replaced(std::mem::replace(r, ConnRecord::Decided { dpid, decided: d, counts }))
            }
            None => keys.insert(hash, ConnRecord::Decided { dpid, decided: d, counts: Counts::default() }, now, idle),
        };
        drop(keys);
        self.forget(gone);
    }

    /// Accounts for a record that is gone (replaced, evicted, expired, invalidated).
    pub(super) fn forget(&self, gone: Inserted<ConnRecord>) {
        let r = match gone {
            Inserted::New => return,
            Inserted::Replaced(r) => r,
            Inserted::Evicted(_, r) => {
                self.metrics.connections_evicted.inc();
                r
            }
        };
        if let ConnRecord::Decided { dpid, decided, .. } = r {
            self.count_flows(dpid, -(flow_count(&decided) as i64));
        }
    }

    /// Keeps `decided_flows_n` (per switch, for `/v1/shards` live_flows) without a scan.
    pub(super) fn count_flows(&self, dpid: u64, delta: i64) {
        let mut m = self.decided_flows_n.borrow_mut();
        let n = m.entry(dpid).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            m.remove(&dpid);
        }
    }

    /// Counts a packet-in of connection `key` on the shard that owns it.
    pub(super) fn record(&self, key: ConnKey, hash: u64, handed_over: bool) {
        let bump = |c: &mut Counts| {
            if key.is_forward() {
                c.forward = c.forward.saturating_add(1);
            } else {
                c.reverse = c.reverse.saturating_add(1);
            }
            if handed_over {
                c.handed_over = c.handed_over.saturating_add(1);
            }
        };
        let now = self.coarse_secs.get();
        let mut keys = self.keys.borrow_mut();
        // One probe for a known connection, two (miss, insert) for a new one.
        let gone = match keys.touch_mut(hash, now, None) {
            Some(r) => {
                bump(r.counts_mut());
                return;
            }
            None => {
                let mut counts = Counts::default();
                bump(&mut counts);
                keys.insert(hash, ConnRecord::Seen { key, counts }, now, KEY_IDLE_SECS)
            }
        };
        drop(keys);
        self.forget(gone);
    }

    /// Expires idle records a slice at a time (the Tracker expires on the control thread).
    pub(super) async fn expire_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP_EVERY).await;
            let now = self.now_secs(Instant::now());
            self.coarse_secs.set(now);
            // A reloaded policy file is taken even when no packet-in comes (the old one is
            // freed off the shards once none holds it).
            if let Some(d) = &self.decider {
                d.refresh_policy();
            }
            let mut gone = Vec::new();
            let n = self.keys.borrow_mut().sweep(now, SWEEP_SLICE, |_, r| gone.push(r));
            for r in gone {
                self.forget(Inserted::Replaced(r));
            }
            self.metrics.connections_live.set(self.keys.borrow().len() as i64);
            // The mesh's queues: the inbox (handoffs, answers, control requests) and what waits
            // in this shard's outbox for a full inbox elsewhere.
            self.metrics.mesh_inbox_depth.set(self.shared.mesh.queued(self.ctx.id) as i64);
            self.metrics.mesh_outbox_depth.set(self.outbox.queued_total() as i64);
            if n > 0 {
                tracing::trace!(shard = self.id(), gone = n, "idle connections expired");
            }
        }
    }
}

/// How many flows a decided connection has on the switch.
pub(super) fn flow_count(d: &Decided) -> u64 {
    match d.plan {
        Plan::Deny { .. } => 1,
        _ => 2,
    }
}
