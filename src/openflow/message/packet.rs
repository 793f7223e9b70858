//! The packet path: PACKET_IN (switch to controller), PACKET_OUT (controller to switch) and
//! FLOW_REMOVED.

use super::text::{duration_text, match_text, port_text};
use crate::openflow::action::{format_actions, Action};
use crate::openflow::error::ErrorCode;
use crate::openflow::oxm::Match;
use crate::openflow::wire::Reader;
use crate::openflow::DecodeError;

/// OFP_NO_BUFFER: the packet is carried whole (OVS never buffers since 2.7).
pub const NO_BUFFER: u32 = 0xffff_ffff;

/// OVS's name for a packet-in reason (`ofputil_packet_in_reason_to_string`).
pub fn packet_in_reason_name(reason: u8) -> String {
    match reason {
        0 => "no_match".into(),
        1 => "action".into(),
        2 => "invalid_ttl".into(),
        3 => "action_set".into(),
        4 => "group".into(),
        5 => "packet_out".into(),
        n => n.to_string(),
    }
}

/// What OVS prints on the first line of any packet-in (OpenFlow or NXT_PACKET_IN2).
pub(crate) struct PacketInSummary<'a> {
    pub table_id: u8,
    pub cookie: u64,
    pub total_len: u32,
    pub r#match: &'a Match,
    pub reason: u8,
    pub data_len: usize,
    pub buffer_id: u32,
}

pub(crate) fn packet_in_summary(p: &PacketInSummary<'_>) -> String {
    let mut s = String::new();
    if p.table_id != 0 {
        s.push_str(&format!(" table_id={}", p.table_id));
    }
    if p.cookie != u64::MAX {
        s.push_str(&format!(" cookie=0x{:x}", p.cookie));
    }
    s.push_str(&format!(" total_len={} {}", p.total_len, match_text(p.r#match)));
    s.push_str(&format!(" (via {}) data_len={}", packet_in_reason_name(p.reason), p.data_len));
    if p.buffer_id == NO_BUFFER {
        s.push_str(" (unbuffered)");
    } else {
        s.push_str(&format!(" buffer=0x{:08x}", p.buffer_id));
    }
    s
}

/// `\n` + the packet's flow text, or nothing when the packet is empty or not describable.
fn flow_line(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    super::packet_text::packet_flow_text(data).map(|t| format!("\n{t}")).unwrap_or_default()
}

// === Packet-in ===

/// OFPT_PACKET_IN (OF1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub buffer_id: u32,
    /// The full packet's length; `data` may be shorter (miss_send_len / max_len).
    pub total_len: u16,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// Pipeline fields at the time of the packet-in (in_port, metadata, registers, tunnel...).
    pub r#match: Match,
    pub data: Vec<u8>,
}

impl PacketIn {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let buffer_id = r.u32()?;
        let total_len = r.u16()?;
        let reason = r.u8()?;
        let table_id = r.u8()?;
        let cookie = r.u64()?;
        let r#match = Match::decode(r)?;
        r.skip(2)?;
        Ok(PacketIn { buffer_id, total_len, reason, table_id, cookie, r#match, data: r.take_rest().to_vec() })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buffer_id.to_be_bytes());
        out.extend_from_slice(&self.total_len.to_be_bytes());
        out.push(self.reason);
        out.push(self.table_id);
        out.extend_from_slice(&self.cookie.to_be_bytes());
        self.r#match.encode(out);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.data);
    }

    /// The summary line, then the packet's flow when we can describe it like OVS.
    pub fn fmt_body(&self) -> String {
        let mut s = packet_in_summary(&PacketInSummary {
            table_id: self.table_id,
            cookie: self.cookie,
            total_len: self.total_len as u32,
            r#match: &self.r#match,
            reason: self.reason,
            data_len: self.data.len(),
            buffer_id: self.buffer_id,
        });
        s.push_str(&flow_line(&self.data));
        s
    }
}

// === Packet-out ===

/// OFPT_PACKET_OUT (OF1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    /// 32-bit port; OFPP_CONTROLLER (0xfffffffd) when the packet did not come from a port.
    pub in_port: u32,
    pub actions: Vec<Action>,
    /// The packet, when `buffer_id` is NO_BUFFER.
    pub data: Vec<u8>,
}

impl PacketOut {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let buffer_id = r.u32()?;
        let in_port = r.u32()?;
        let actions_len = r.u16()? as usize;
        r.skip(6)?;
        let mut ar = r.sub(actions_len)?.context("ofp_packet_out actions", ErrorCode::BAD_ACTION_BAD_LEN);
        let actions = Action::decode_list(&mut ar)?;
        Ok(PacketOut { buffer_id, in_port, actions, data: r.take_rest().to_vec() })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buffer_id.to_be_bytes());
        out.extend_from_slice(&self.in_port.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 8]);
        let start = out.len();
        Action::encode_list(&self.actions, out);
        let len = (out.len() - start) as u16;
        crate::openflow::wire::patch_u16(out, len_at, len);
        out.extend_from_slice(&self.data);
    }

    /// The summary line, then the packet's flow when we can describe it like OVS.
    pub fn fmt_body(&self) -> String {
        let mut s = format!(" in_port={} actions={}", port_text(self.in_port), format_actions(&self.actions));
        if self.buffer_id == NO_BUFFER {
            s.push_str(&format!(" data_len={}", self.data.len()));
            s.push_str(&flow_line(&self.data));
        } else {
            s.push_str(&format!(" buffer=0x{:08x}", self.buffer_id));
        }
        s
    }
}

// === Flow removed ===

/// OFPT_FLOW_REMOVED (OF1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    /// OFPRR_*: 0 idle timeout, 1 hard timeout, 2 delete, 3 group delete, 4 meter delete.
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub r#match: Match,
}

/// OVS's name for a flow-removed reason.
pub fn flow_removed_reason_name(reason: u8) -> String {
    match reason {
        0 => "idle".into(),
        1 => "hard".into(),
        2 => "delete".into(),
        3 => "group_delete".into(),
        4 => "meter_delete".into(),
        5 => "eviction".into(),
        n => n.to_string(),
    }
}

/// `priority=N,` + match text, as OVS's `match_format` prints a match with a priority
/// (the default priority 32768 is left out).
pub(crate) fn match_with_priority(m: &Match, priority: u16) -> String {
    let t = match_text(m);
    if priority == 0x8000 {
        t
    } else if t.is_empty() {
        format!("priority={priority}")
    } else {
        format!("priority={priority},{t}")
    }
}

impl FlowRemoved {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FlowRemoved {
            cookie: r.u64()?,
            priority: r.u16()?,
            reason: r.u8()?,
            table_id: r.u8()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            r#match: Match::decode(r)?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.push(self.reason);
        out.push(self.table_id);
        out.extend_from_slice(&self.duration_sec.to_be_bytes());
        out.extend_from_slice(&self.duration_nsec.to_be_bytes());
        out.extend_from_slice(&self.idle_timeout.to_be_bytes());
        out.extend_from_slice(&self.hard_timeout.to_be_bytes());
        out.extend_from_slice(&self.packet_count.to_be_bytes());
        out.extend_from_slice(&self.byte_count.to_be_bytes());
        self.r#match.encode(out);
    }

    pub fn fmt_body(&self) -> String {
        let mut s = format!(
            " {} reason={}",
            match_with_priority(&self.r#match, self.priority),
            flow_removed_reason_name(self.reason)
        );
        if self.table_id != 255 {
            s.push_str(&format!(" table_id={}", self.table_id));
        }
        if self.cookie != 0 {
            s.push_str(&format!(" cookie:0x{:x}", self.cookie));
        }
        s.push_str(&format!(" duration{}", duration_text(self.duration_sec, self.duration_nsec)));
        s.push_str(&format!(" idle{}", self.idle_timeout));
        if self.hard_timeout != 0 {
            s.push_str(&format!(" hard{}", self.hard_timeout));
        }
        s.push_str(&format!(" pkts{} bytes{}", self.packet_count, self.byte_count));
        s
    }
}
