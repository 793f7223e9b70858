//! Puts the pipeline's packet-in meters (`pipeline::meters`) on a switch as configured. Used by
//! the pipeline install on connect and by the audit before a repair: OVS deletes the flows that
//! name a meter when the meter is deleted, and a flow naming a missing meter is refused, so the
//! meters must be back before the flows are.

use std::rc::Rc;

use crate::openflow::message::multipart::{MultipartReplyBody, MultipartRequest, MultipartRequestBody};
use crate::openflow::message::Message;
use crate::pipeline::meters::{self, MeterPlan};

use super::conn::{Conn, OpError};
use super::Shared;

/// Reads the switch's meters, adds the missing ones and modifies the changed ones (confirmed by
/// a barrier), and returns the plan, whose `after` part (stale meters to delete) waits until the
/// flows no longer name them. Without a `[pipeline]` the daemon owns no meter.
pub async fn sync_meters(shared: &Shared, conn: &Rc<Conn>, shard: usize) -> Result<MeterPlan, OpError> {
    let Some(p) = shared.cfg.pipeline.as_ref() else { return Ok(MeterPlan::default()) };
    let body = MultipartRequestBody::MeterConfig { meter_id: crate::openflow::message::meter::METER_ALL };
    let reply = conn.request(&Message::MultipartRequest(MultipartRequest::new(body))).await?;
    let mut actual = Vec::new();
    for m in reply {
        if let Message::MultipartReply(r) = m {
            if let MultipartReplyBody::MeterConfig(c) = r.body {
                actual.extend(c);
            }
        }
    }
    let plan = meters::plan(&meters::meter_mods(&p.meters), &actual);
    if !plan.before.is_empty() {
        let msgs: Vec<Message> = plan.before.iter().cloned().map(Message::MeterMod).collect();
        conn.apply(&msgs).await?;
    }
    tracing::info!(
        shard,
        set = plan.before.len(),
        unchanged = plan.unchanged,
        stale = plan.after.len(),
        "packet-in meters in place"
    );
    Ok(plan)
}
