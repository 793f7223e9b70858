//! The pipeline audit, sans IO: are the flows the daemon owns and keeps on every bridge (the
//! dispatch and the default pipeline) still there, as installed? Someone may delete or change
//! them by hand (`ovs-ofctl del-flows`), through the REST API with `force=true`, or from another
//! controller; the daemon's audit (`daemon::heal`) reads them back periodically and puts back
//! what differs.
//!
//! Cheap when nothing changed: the desired flows are indexed once per connection
//! ([`Expected::new`]); an audit reads only the owned flows (one flow-stats request per owned
//! category, filtered by cookie mask: [`Expected::requests`], so connection flows, learned flows
//! and the operator's flows never cross the wire) and compares them by identity with
//! [`Expected::check`], which builds nothing when the switch agrees.
//!
//! The repair is a [`ResyncPlan`] like a resync's: ADD what is missing, ADD again what changed
//! (same identity: OVS replaces it atomically), DELETE_STRICT stale flows of the owned
//! categories (an older generation). Flows with the identity of a desired flow but another
//! cookie (an operator's or another controller's flow put in its place) are not seen by the
//! filtered read; the desired flow reads as missing and its ADD replaces them.

use std::collections::HashMap;

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message::multipart::{FlowStats, FlowStatsRequest};

use super::cookie::{self, Category};
use super::resync::{delete_strict, difference, FlowIdentity, ResyncPlan, ALL_TABLES};

/// The categories the audit keeps in place: the packet-in dispatch and the default pipeline.
/// (Connection flows come and go with traffic and idle timeouts; learned flows are the
/// switch's; manual flows are the operator's.)
pub const AUDITED: [Category; 2] = [Category::Dispatch, Category::Pipeline];

/// The desired owned flows, indexed by identity once.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    want: Vec<(FlowIdentity, FlowMod)>,
    index: HashMap<FlowIdentity, usize>,
}

impl Expected {
    /// Indexes the flows of `desired` in the [`AUDITED`] categories (others are left out: the
    /// audit reads only those categories back). Of several with one identity the last wins, as
    /// in [`super::resync::plan`].
    pub fn new(desired: &[FlowMod]) -> Expected {
        let mut e = Expected::default();
        for d in desired {
            let audited = cookie::category(d.cookie).is_some_and(|c| AUDITED.contains(&c));
            if !audited || d.table_id == ALL_TABLES {
                continue;
            }
            let mut fm = d.clone();
            fm.command = FlowModCommand::Add;
            let key = FlowIdentity::of_flow_mod(&fm);
            match e.index.get(&key) {
                Some(&i) => e.want[i].1 = fm,
                None => {
                    e.index.insert(key.clone(), e.want.len());
                    e.want.push((key, fm));
                }
            }
        }
        e
    }

    /// How many flows are kept in place.
    pub fn len(&self) -> usize {
        self.want.len()
    }

    pub fn is_empty(&self) -> bool {
        self.want.is_empty()
    }

    /// The flow-stats requests that read the audited flows back: every table, cookie category
    /// byte equal to each audited category (any generation, so stale generations are seen).
    pub fn requests() -> [FlowStatsRequest; AUDITED.len()] {
        AUDITED.map(|c| FlowStatsRequest {
            cookie: cookie::make(0, c, 0),
            cookie_mask: cookie::CATEGORY_MASK,
            ..FlowStatsRequest::default()
        })
    }

    /// What to send so that the switch holds the expected flows again, given `actual`, the
    /// switch's flows of the audited categories (others in it are ignored). Empty when intact.
    pub fn check(&self, actual: &[FlowStats]) -> ResyncPlan {
        let mut plan = ResyncPlan::default();
        let mut seen = vec![false; self.want.len()];
        for a in actual {
            let audited = cookie::category(a.cookie).is_some_and(|c| AUDITED.contains(&c));
            if !audited || a.table_id == ALL_TABLES {
                continue;
            }
            match self.index.get(&FlowIdentity::of_stats(a)) {
                Some(&i) => {
                    seen[i] = true;
                    match difference(&self.want[i].1, a) {
                        "" => plan.unchanged += 1,
                        what => plan.changed.push((self.want[i].1.clone(), what)),
                    }
                }
                None => plan.deletes.push(delete_strict(a)),
            }
        }
        for (i, (_, fm)) in self.want.iter().enumerate() {
            if !seen[i] {
                plan.adds.push(fm.clone());
            }
        }
        plan
    }
}

/// A short account of a repair plan for logs and `/readyz`: counts, and the first flow of each
/// kind in `ovs-ofctl` text.
pub fn describe(plan: &ResyncPlan) -> String {
    let mut parts = Vec::new();
    if let Some(f) = plan.adds.first() {
        parts.push(format!("{} missing (e.g. {})", plan.adds.len(), f.to_flow_text()));
    }
    if let Some((f, what)) = plan.changed.first() {
        parts.push(format!("{} changed (e.g. {what} of {})", plan.changed.len(), f.to_flow_text()));
    }
    if let Some(f) = plan.deletes.first() {
        parts.push(format!("{} stale (e.g. cookie {:#x} in table {})", plan.deletes.len(), f.cookie, f.table_id));
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openflow::flow::FlowMod;
    use crate::pipeline::dispatch::Mode;
    use crate::pipeline::resync::to_flow_mod;

    fn pipeline() -> Vec<FlowMod> {
        let cfg = crate::pipeline::doc_example();
        crate::pipeline::default::generate_mode(&cfg, Mode::Fanout, 2, 0x1234).unwrap()
    }

    /// The switch's view of `flows`, as flow stats.
    fn stats(flows: &[FlowMod]) -> Vec<FlowStats> {
        flows
            .iter()
            .map(|f| FlowStats {
                table_id: f.table_id,
                priority: f.priority,
                cookie: f.cookie,
                idle_timeout: f.idle_timeout,
                hard_timeout: f.hard_timeout,
                flags: f.flags & crate::pipeline::resync::STATE_FLAGS,
                r#match: f.r#match.clone(),
                instructions: f.instructions.clone(),
                duration_sec: 1,
                duration_nsec: 0,
                packet_count: 0,
                byte_count: 0,
            })
            .collect()
    }

    #[test]
    fn intact_missing_changed_stale() {
        let flows = pipeline();
        let e = Expected::new(&flows);
        assert!(e.len() > 10 && e.len() == flows.len(), "{} of {}", e.len(), flows.len());
        let mut actual = stats(&flows);
        assert!(e.check(&actual).is_empty());
        assert_eq!(e.check(&actual).unchanged, flows.len());

        // One gone, one changed (instructions), one stale (an older generation's flow).
        let gone = actual.remove(3);
        actual[5].instructions.clear();
        let mut stale = actual[0].clone();
        stale.cookie = cookie::make(0x9999, Category::Pipeline, 1);
        stale.priority = 4242;
        actual.push(stale);
        // Flows of other categories are none of the audit's business.
        let mut conn = actual[1].clone();
        conn.cookie = cookie::make(0x1234, Category::Connection, 7);
        conn.priority = 4343;
        actual.push(conn);
        let plan = e.check(&actual);
        assert_eq!(plan.adds.len(), 1);
        assert_eq!(FlowIdentity::of_flow_mod(&plan.adds[0]), FlowIdentity::of_stats(&gone));
        assert_eq!(plan.changed.len(), 1);
        assert_eq!(plan.changed[0].1, "instructions");
        assert_eq!(plan.deletes.len(), 1);
        assert_eq!(plan.deletes[0].priority, 4242);
        assert_eq!(plan.deletes[0].cookie_mask, u64::MAX);
        let text = describe(&plan);
        assert!(text.contains("1 missing") && text.contains("1 changed") && text.contains("1 stale"), "{text}");

        // After the repair, intact again.
        let mut repaired: Vec<FlowStats> = actual.iter().filter(|a| a.priority != 4242).cloned().collect();
        repaired.extend(stats(&plan.adds));
        let fixed = stats(&[plan.changed[0].0.clone()]).remove(0);
        let at = repaired.iter().position(|a| FlowIdentity::of_stats(a) == FlowIdentity::of_stats(&fixed)).unwrap();
        repaired[at] = fixed;
        assert!(e.check(&repaired).is_empty(), "{:?}", describe(&e.check(&repaired)));
        // A round trip through to_flow_mod changes nothing either.
        let again: Vec<FlowMod> = repaired.iter().map(to_flow_mod).collect();
        assert!(e.check(&stats(&again)).is_empty());
    }

    #[test]
    fn requests_filter_each_owned_category() {
        let r = Expected::requests();
        assert_eq!(r.len(), 2);
        for (req, cat) in r.iter().zip(AUDITED) {
            assert_eq!(cookie::category(req.cookie), Some(cat));
            assert_eq!(req.cookie_mask, cookie::CATEGORY_MASK);
            assert_eq!(req.table_id, ALL_TABLES);
        }
    }

    /// The audit's CPU cost at the default pipeline's size when nothing changed (printed, not
    /// asserted: the machine is shared).
    #[test]
    fn audit_cost_when_intact() {
        let flows = pipeline();
        let e = Expected::new(&flows);
        let actual = stats(&flows);
        let n = 200;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            assert!(e.check(&actual).is_empty());
        }
        let per = t0.elapsed() / n;
        eprintln!("FIGURE audit check: {} flows intact, {:?} per check (this build)", flows.len(), per);
    }
}
