//! REST commands for one switch, run on the shard that holds its connection: apply flow mods
//! (optionally in a bundle), dump flows, groups and meters.

use super::*;
use crate::openflow::flow::FlowModCommand;
use crate::openflow::message::try_encode;
use crate::openflow::session::Refusal;
use crate::openflow::text::{group::format_group_desc, meter::format_meter_config};

impl Shard {
    pub(super) async fn command(self: &Rc<Self>, dpid: u64, cmd: Command) -> Result<CommandReply, ApiError> {
        let conn_id = self.by_dpid.borrow().get(&dpid).copied();
        let conn = conn_id.and_then(|id| self.conns.borrow().get(&id).cloned());
        let Some(conn) = conn else {
            return Err(ApiError::UnknownSwitch(crate::control::api::Dpid(dpid)));
        };
        match cmd {
            Command::Apply { msgs, bundle } => {
                // A message that cannot be framed is the request's fault: refused before any is
                // sent (the session would refuse it too, after the others went out).
                if let Some((i, e)) = msgs.iter().enumerate().find_map(|(i, m)| try_encode(m, 0).err().map(|e| (i, e)))
                {
                    self.metrics.dropped("message_too_large", 1);
                    return Err(ApiError::BadRequest(format!("flow {}: {e}", i + 1)));
                }
                let n = msgs.len();
                let t0 = Instant::now();
                let r = if bundle { conn.bundle(msgs.clone()).await } else { conn.apply(&msgs).await };
                match r {
                    Ok(()) => {
                        self.live.borrow_mut().record(dpid, &msgs);
                        self.metrics.flow_mods_n("ok", n as u64);
                        self.metrics.observe_flow_install(t0.elapsed());
                        self.flow_mods.set(self.flow_mods.get() + n as u64);
                        Ok(CommandReply::Applied(n))
                    }
                    Err(e) => {
                        self.metrics.flow_mods_n(if e == OpError::Timeout { "timeout" } else { "error" }, n as u64);
                        if let Some(name) = e.error_name() {
                            self.metrics.openflow_error(&name);
                        }
                        Err(op_to_api(e))
                    }
                }
            }
            Command::DumpFlows => {
                let body = MultipartRequestBody::Flow(FlowStatsRequest::default());
                let lines = Self::multipart(&conn, body, |b, out| {
                    if let MultipartReplyBody::Flow(flows) = b {
                        out.extend(flows.iter().map(flow_stats_line));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
            Command::DumpGroups => {
                let lines = Self::multipart(&conn, MultipartRequestBody::GroupDesc, |b, out| {
                    if let MultipartReplyBody::GroupDesc(groups) = b {
                        out.extend(groups.iter().map(format_group_desc));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
            Command::DumpMeters => {
                let body = MultipartRequestBody::MeterConfig { meter_id: 0xffff_ffff };
                let lines = Self::multipart(&conn, body, |b, out| {
                    if let MultipartReplyBody::MeterConfig(meters) = b {
                        out.extend(meters.iter().map(format_meter_config));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
        }
    }

    /// Sends a multipart request and collects lines from every part of the reply.
    pub(super) async fn multipart(
        conn: &Rc<Conn>,
        body: MultipartRequestBody,
        mut each: impl FnMut(&MultipartReplyBody, &mut Vec<String>),
    ) -> Result<Vec<String>, ApiError> {
        let reply = conn.request(&Message::MultipartRequest(MultipartRequest::new(body))).await.map_err(op_to_api)?;
        let mut lines = Vec::new();
        for m in &reply {
            if let Message::MultipartReply(r) = m {
                each(&r.body, &mut lines);
            }
        }
        Ok(lines)
    }
}

pub(super) fn op_to_api(e: OpError) -> ApiError {
    match e {
        OpError::Refused { index, error } => {
            ApiError::Refused { name: error.code.to_string(), detail: format!("flow {} of the request", index + 1) }
        }
        OpError::Timeout => ApiError::Timeout,
        OpError::Local { index, reason: reason @ Refusal::Encode(_) } => {
            ApiError::BadRequest(format!("flow {}: {reason}", index + 1))
        }
        other => ApiError::Failed(other.to_string()),
    }
}

/// A flow of a flow-stats reply as `ovs-ofctl dump-flows --no-stats` prints it.
pub fn flow_stats_line(fs: &FlowStats) -> String {
    let mut fm = FlowMod::new(FlowModCommand::Add);
    fm.cookie = fs.cookie;
    fm.table_id = fs.table_id;
    fm.priority = fs.priority;
    fm.idle_timeout = fs.idle_timeout;
    fm.hard_timeout = fs.hard_timeout;
    fm.flags = fs.flags;
    fm.r#match = fs.r#match.clone();
    fm.instructions = fs.instructions.clone();
    fm.to_flow_text()
}
