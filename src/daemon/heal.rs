//! The self-healing pipeline: on the shard that installed a bridge's pipeline, a task reads the
//! flows the daemon owns back every [`AUDIT_EVERY`] and puts back what was deleted or changed
//! (by hand, through REST with `force=true`, by another controller), in one bundle, counted
//! (`shardflow_pipeline_repairs_total`) and logged; `/readyz` says 503 while it is broken.
//!
//! Why a periodic audit and not OVS's flow monitor (NXST_FLOW_MONITOR): our codec has no flow
//! monitor messages yet, and an audit also catches what a monitor can miss (a monitor that
//! overflows, a change while the connection was down). It is cheap when nothing changed: two
//! flow-stats requests filtered on the owned cookie categories (only the pipeline's flows cross
//! the wire) and a comparison against an index built once per connection
//! ([`crate::pipeline::audit`]). It never blocks the shard: it awaits the switch's replies like
//! any request, and one audit finishes before the next starts.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use crate::control::metrics::{Metrics, MetricsError, LATENCY_BUCKETS};
use crate::openflow::message::multipart::{FlowStats, MultipartReplyBody, MultipartRequest, MultipartRequestBody};
use crate::openflow::message::Message;
use crate::pipeline::audit::{describe, Expected};

use super::conn::{Conn, OpError};
use super::registry::PipelineState;
use super::Shared;

/// How often the owned flows are read back: a deleted pipeline flow is back within about this
/// long (plus a round trip and a bundle).
pub const AUDIT_EVERY: Duration = Duration::from_millis(500);

/// The longest wait between audits while repairs keep failing.
pub const REPAIR_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// The audit's metrics, registered in the daemon's registry.
#[derive(Clone)]
pub struct HealMetrics {
    /// `shardflow_pipeline_repairs_total{dpid,kind}`: owned flows put back (`missing`),
    /// replaced (`changed`) or removed (`stale`), and repairs that failed (`failed`).
    pub repairs: IntCounterVec,
    /// `shardflow_pipeline_audit_seconds`: one audit, requests sent to comparison done.
    pub audit_seconds: Histogram,
}

impl HealMetrics {
    pub fn register(m: &Metrics) -> Result<HealMetrics, MetricsError> {
        let repairs = IntCounterVec::new(
            Opts::new("pipeline_repairs_total", "Owned flows the pipeline audit put back, by switch and kind"),
            &["dpid", "kind"],
        )?;
        m.registry().register(Box::new(repairs.clone()))?;
        let audit_seconds = Histogram::with_opts(
            HistogramOpts::new("pipeline_audit_seconds", "Time of one pipeline audit (read back and compare)")
                .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        m.registry().register(Box::new(audit_seconds.clone()))?;
        Ok(HealMetrics { repairs, audit_seconds })
    }
}

/// Audits `dpid`'s owned flows on `conn` (of shard `shard`) until the connection closes. Run by
/// the shard that installs the pipeline, after the install (or its failure: the first audit then
/// retries it). When the connection closes and that shard has no new one to the switch, the
/// pipeline is pending again for `/readyz` (other shards' connections do not keep it).
pub async fn watch(shared: Arc<Shared>, conn: Rc<Conn>, dpid: u64, shard: usize, desired: DesiredFn) {
    audit_loop(&shared, &conn, dpid, shard, &*desired).await;
    shared.registry.pipeline_unwatched(dpid, shard, conn.id);
}

/// The flows the switch should hold now, with a version that changes whenever they do (pods come
/// and go): the audit re-indexes them on a new version, and drops an audit whose read raced a
/// change (it would see the change's flows as stale, or miss them).
pub type DesiredFn = Rc<dyn Fn() -> (u64, Arc<Vec<crate::openflow::flow::FlowMod>>)>;

async fn audit_loop(
    shared: &Arc<Shared>,
    conn: &Rc<Conn>,
    dpid: u64,
    shard: usize,
    desired: &dyn Fn() -> (u64, Arc<Vec<crate::openflow::flow::FlowMod>>),
) {
    let (mut version, flows) = desired();
    let mut expected = Expected::new(&flows);
    if expected.is_empty() {
        return;
    }
    let label = format!("{dpid:016x}");
    let metrics = &shared.heal;
    // The last problem logged: a repair that keeps failing is logged once per new problem.
    let mut last_problem = String::new();
    // What the previous audit repaired: the same difference again right after a repair the
    // switch accepted means someone keeps changing it back, or the switch reports a flow
    // differently from how it is sent. Repairing goes on, but at the backoff's pace.
    let mut last_repaired = String::new();
    // Doubled after each failed repair (up to REPAIR_BACKOFF_MAX), back to AUDIT_EVERY once intact
    // or repaired: a flow the switch keeps refusing costs a bundle every few seconds, not twice
    // a second.
    let mut wait = AUDIT_EVERY;
    loop {
        glommio::timer::sleep(wait).await;
        if conn.is_closed() {
            return;
        }
        let t0 = Instant::now();
        let (now_version, flows) = desired();
        if now_version != version {
            expected = Expected::new(&flows);
            version = now_version;
        }
        let actual = match owned_flows(conn).await {
            Ok(a) => a,
            Err(e) => {
                if conn.is_closed() {
                    return;
                }
                tracing::warn!(dpid = %label, "pipeline audit: reading the flows failed: {e}");
                continue;
            }
        };
        // The node changed while the flows were read: the read may predate the change's bundle.
        if desired().0 != version {
            wait = AUDIT_EVERY;
            continue;
        }
        let plan = expected.check(&actual);
        metrics.audit_seconds.observe(t0.elapsed().as_secs_f64());
        if plan.is_empty() {
            shared.registry.pipeline_state(dpid, PipelineState::Installed);
            last_problem.clear();
            last_repaired.clear();
            wait = AUDIT_EVERY;
            continue;
        }
        let problem = describe(&plan);
        let recurring = problem == last_repaired;
        shared.registry.pipeline_state(dpid, PipelineState::Broken(problem.clone()));
        // A meter deleted by hand took the flows naming it along (OVS does): it goes back first.
        if !plan.adds.is_empty() || !plan.changed.is_empty() {
            if let Err(e) = super::meter_sync::sync_meters(shared, conn, shard).await {
                tracing::warn!(dpid = %label, "pipeline audit: putting the packet-in meters back failed: {e}");
            }
        }
        match conn.bundle(plan.messages()).await {
            Ok(()) => {
                for (kind, n) in
                    [("missing", plan.adds.len()), ("changed", plan.changed.len()), ("stale", plan.deletes.len())]
                {
                    if n > 0 {
                        metrics.repairs.with_label_values(&[label.as_str(), kind]).inc_by(n as u64);
                    }
                }
                if recurring {
                    wait = (wait * 2).min(REPAIR_BACKOFF_MAX);
                    let why = format!("{problem}; back after every repair");
                    if why != last_problem {
                        tracing::error!(dpid = %label, "pipeline audit: {why} (repairing every {wait:?} at most)");
                    }
                    shared.registry.pipeline_state(dpid, PipelineState::Broken(why.clone()));
                    last_problem = why;
                    continue;
                }
                shared.registry.pipeline_state(dpid, PipelineState::Installed);
                tracing::warn!(
                    dpid = %label,
                    missing = plan.adds.len(),
                    changed = plan.changed.len(),
                    stale = plan.deletes.len(),
                    "pipeline repaired {:.1} ms after the audit began: {problem}",
                    t0.elapsed().as_secs_f64() * 1e3
                );
                last_problem.clear();
                last_repaired = problem;
                wait = AUDIT_EVERY;
            }
            Err(e) => {
                wait = (wait * 2).min(REPAIR_BACKOFF_MAX);
                metrics.repairs.with_label_values(&[label.as_str(), "failed"]).inc();
                let why = format!("{problem}; repair failed: {e}");
                if why != last_problem {
                    tracing::error!(dpid = %label, "pipeline audit: {why}");
                }
                shared.registry.pipeline_state(dpid, PipelineState::Broken(why.clone()));
                last_problem = why;
            }
        }
    }
}

/// The switch's flows of the audited categories (one filtered flow-stats request each, sent
/// together).
async fn owned_flows(conn: &Rc<Conn>) -> Result<Vec<FlowStats>, OpError> {
    let [a, b] =
        Expected::requests().map(|r| Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(r))));
    // Both go out before either reply is awaited: one round trip.
    let (ra, rb) = futures_lite::future::zip(conn.request(&a), conn.request(&b)).await;
    let mut out = Vec::new();
    for reply in [ra?, rb?] {
        for m in reply {
            if let Message::MultipartReply(r) = m {
                if let MultipartReplyBody::Flow(f) = r.body {
                    out.extend(f);
                }
            }
        }
    }
    Ok(out)
}
