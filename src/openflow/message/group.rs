//! Groups: GROUP_MOD and the group descriptions and statistics of the multipart replies.

use super::text::{duration_text, mod_command_text, port_text};
use crate::openflow::action::{format_actions, Action};
use crate::openflow::error::ErrorCode;
use crate::openflow::wire::{patch_u16, Reader};
use crate::openflow::DecodeError;

/// OFPG_ANY: "no group" in watch_group and in requests.
pub const GROUP_ANY: u32 = 0xffff_ffff;
/// OFPG_ALL: every group (delete, stats requests).
pub const GROUP_ALL: u32 = 0xffff_fffc;
/// OFPP_ANY: "no port" in watch_port.
pub const PORT_ANY: u32 = 0xffff_ffff;

/// `OFPGT_*`.
pub mod group_type {
    pub const ALL: u8 = 0;
    pub const SELECT: u8 = 1;
    pub const INDIRECT: u8 = 2;
    pub const FF: u8 = 3;
}

/// `OFPGC_*`.
pub mod group_command {
    pub const ADD: u16 = 0;
    pub const MODIFY: u16 = 1;
    pub const DELETE: u16 = 2;
}

fn group_type_name(t: u8) -> String {
    match t {
        0 => "all".into(),
        1 => "select".into(),
        2 => "indirect".into(),
        3 => "ff".into(),
        n => n.to_string(),
    }
}

/// One `ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Relative share for select groups (0 for the others).
    pub weight: u16,
    /// Liveness port for fast-failover groups (PORT_ANY if none).
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Bucket {
    /// A bucket with just actions (no weight, nothing watched).
    pub fn new(actions: Vec<Action>) -> Bucket {
        Bucket { weight: 0, watch_port: PORT_ANY, watch_group: GROUP_ANY, actions }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u16()? as usize;
        if len < 16 {
            return Err(r.error_code(ErrorCode::GROUP_MOD_FAILED_BAD_BUCKET, format!("bucket length {len}")));
        }
        let weight = r.u16()?;
        let watch_port = r.u32()?;
        let watch_group = r.u32()?;
        r.skip(4)?;
        let mut ar = r.sub(len - 16)?.context("ofp_bucket actions", ErrorCode::BAD_ACTION_BAD_LEN);
        Ok(Bucket { weight, watch_port, watch_group, actions: Action::decode_list(&mut ar)? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.weight.to_be_bytes());
        out.extend_from_slice(&self.watch_port.to_be_bytes());
        out.extend_from_slice(&self.watch_group.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        Action::encode_list(&self.actions, out);
        let len = (out.len() - start) as u16;
        patch_u16(out, start, len);
    }

    /// `bucket=weight:5,watch_port:3,actions=...` as OVS prints it.
    pub fn fmt(&self, gtype: u8) -> String {
        let mut s = "bucket=".to_string();
        let default_weight = if gtype == group_type::SELECT { 1 } else { 0 };
        if self.weight != default_weight {
            s.push_str(&format!("weight:{},", self.weight));
        }
        if self.watch_port != PORT_ANY {
            s.push_str(&format!("watch_port:{},", port_text(self.watch_port)));
        }
        if self.watch_group != GROUP_ANY {
            s.push_str(&format!("watch_group:{},", self.watch_group));
        }
        s.push_str("actions=");
        s.push_str(&format_actions(&self.actions));
        s
    }
}

fn decode_buckets(r: &mut Reader<'_>) -> Result<Vec<Bucket>, DecodeError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        let len = r.peek_u16(0)? as usize;
        if len < 16 {
            return Err(r.error_code(ErrorCode::GROUP_MOD_FAILED_BAD_BUCKET, format!("bucket length {len}")));
        }
        let mut br = r.sub(len)?;
        v.push(Bucket::decode(&mut br)?);
    }
    Ok(v)
}

fn fmt_group(group_id: u32, gtype: u8, buckets: &[Bucket]) -> String {
    let mut s = format!("group_id={},type={}", group_id, group_type_name(gtype));
    for b in buckets {
        s.push(',');
        s.push_str(&b.fmt(gtype));
    }
    s
}

// === Group mod ===

/// OFPT_GROUP_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: u16,
    pub group_type: u8,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let command = r.u16()?;
        let group_type = r.u8()?;
        r.skip(1)?;
        let group_id = r.u32()?;
        let mut br = r.context("ofp_bucket", ErrorCode::GROUP_MOD_FAILED_BAD_BUCKET);
        let buckets = decode_buckets(&mut br)?;
        *r = br.context(r.what(), r.code());
        Ok(GroupMod { command, group_type, group_id, buckets })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.command.to_be_bytes());
        out.push(self.group_type);
        out.push(0);
        out.extend_from_slice(&self.group_id.to_be_bytes());
        for b in &self.buckets {
            b.encode(out);
        }
    }

    pub fn fmt_body(&self) -> String {
        let cmd = mod_command_text(self.command);
        format!("\n {} {}", cmd, fmt_group(self.group_id, self.group_type, &self.buckets))
    }
}

// === Multipart bodies ===

/// One `ofp_group_desc` of an OFPMP_GROUP_DESC reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: u8,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupDesc {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(r.error(format!("group desc length {len}")));
        }
        let group_type = r.u8()?;
        r.skip(1)?;
        let group_id = r.u32()?;
        let mut br = r.sub(len - 8)?.context("ofp_bucket", ErrorCode::GROUP_MOD_FAILED_BAD_BUCKET);
        Ok(GroupDesc { group_type, group_id, buckets: decode_buckets(&mut br)? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.push(self.group_type);
        out.push(0);
        out.extend_from_slice(&self.group_id.to_be_bytes());
        for b in &self.buckets {
            b.encode(out);
        }
        let len = (out.len() - start) as u16;
        patch_u16(out, start, len);
    }

    pub fn fmt(&self) -> String {
        format!("\n {}", fmt_group(self.group_id, self.group_type, &self.buckets))
    }
}

/// One `ofp_group_stats` of an OFPMP_GROUP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    pub group_id: u32,
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// (packet_count, byte_count) per bucket.
    pub bucket_stats: Vec<(u64, u64)>,
}

impl GroupStats {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u16()? as usize;
        if len < 40 || (len - 40) % 16 != 0 {
            return Err(r.error(format!("group stats length {len}")));
        }
        r.skip(2)?;
        let mut g = GroupStats {
            group_id: r.u32()?,
            ref_count: r.u32()?,
            packet_count: {
                r.skip(4)?;
                r.u64()?
            },
            byte_count: r.u64()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            bucket_stats: Vec::new(),
        };
        for _ in 0..(len - 40) / 16 {
            g.bucket_stats.push((r.u64()?, r.u64()?));
        }
        Ok(g)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((40 + 16 * self.bucket_stats.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.group_id.to_be_bytes());
        out.extend_from_slice(&self.ref_count.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.packet_count.to_be_bytes());
        out.extend_from_slice(&self.byte_count.to_be_bytes());
        out.extend_from_slice(&self.duration_sec.to_be_bytes());
        out.extend_from_slice(&self.duration_nsec.to_be_bytes());
        for (p, b) in &self.bucket_stats {
            out.extend_from_slice(&p.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
        }
    }

    pub fn fmt(&self) -> String {
        let mut s = format!("\n group_id={}", self.group_id);
        if self.duration_sec != u32::MAX {
            s.push_str(&format!(",duration={}", duration_text(self.duration_sec, self.duration_nsec)));
        }
        s.push_str(&format!(
            ",ref_count={},packet_count={},byte_count={}",
            self.ref_count, self.packet_count, self.byte_count
        ));
        for (i, (p, b)) in self.bucket_stats.iter().enumerate() {
            s.push_str(&format!(",bucket{i}:packet_count={p},byte_count={b}"));
        }
        s
    }
}
