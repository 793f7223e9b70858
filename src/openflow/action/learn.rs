//! NXAST_LEARN (subtype 16) and NXAST_LEARN2 (subtype 45): add or refresh a flow built from the
//! packet being processed.
//!
//! Wire layout (`nicira-ext.h`): after the 10-byte NX header come idle_timeout, hard_timeout,
//! priority (u16 each), cookie (u64), flags (u16), table_id (u8), pad (u8), fin_idle_timeout,
//! fin_hard_timeout (u16 each): 32 bytes in all. LEARN2 adds limit (u32), result_dst_ofs (u16),
//! 2 pad bytes and, when flag WRITE_RESULT is set, the result_dst header (u32). Then the specs,
//! each a u16 header (n_bits in bits 0-9, source type bit 13, destination type bits 11-12), the
//! source (field header + ofs, or an immediate of 2*ceil(n_bits/16) bytes) and the destination
//! (field header + ofs, nothing for output). A zero u16 or the end ends the list; the rest up to
//! the 8-byte boundary must be zero.

use super::nx_field::{
    checked_subfield, format_hex, format_value, parse_int, parse_nx_subfield, parse_value, put_field, read_field,
};
use crate::openflow::field::{Subfield, Value};
use crate::openflow::wire::{pad_to_8, patch_u16, Reader};
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::fmt;

pub const NXAST_LEARN: u16 = 16;
pub const NXAST_LEARN2: u16 = 45;

/// `flags` bits.
pub const SEND_FLOW_REM: u16 = 1 << 0;
pub const DELETE_LEARNED: u16 = 1 << 1;
/// LEARN2 only: write 1 to `result_dst` when the flow was learned (set from `result_dst`).
pub const WRITE_RESULT: u16 = 1 << 2;

const SRC_IMMEDIATE: u16 = 1 << 13;
const DST_MASK: u16 = 3 << 11;
const DST_LOAD: u16 = 1 << 11;
const DST_OUTPUT: u16 = 2 << 11;
const N_BITS_MASK: u16 = 0x3ff;
/// Spec header bits that mean nothing (OVS ignores them).
const IGNORED_BITS: u16 = !(N_BITS_MASK | SRC_IMMEDIATE | DST_MASK);

/// OVS's default priority for a learned flow (OFP_DEFAULT_PRIORITY); not printed.
pub const DEFAULT_PRIORITY: u16 = 0x8000;

/// A `learn` action. Encoded as LEARN2 when `limit` or `result_dst` is set, else as LEARN (as
/// OVS does; a LEARN2 with neither re-encodes as LEARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learn {
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub cookie: u64,
    /// SEND_FLOW_REM | DELETE_LEARNED; WRITE_RESULT is derived from `result_dst`.
    pub flags: u16,
    pub table_id: u8,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    /// Maximum number of flows this action may learn (0: no limit).
    pub limit: u32,
    pub result_dst: Option<Subfield>,
    pub specs: Vec<LearnSpec>,
}

impl Default for Learn {
    /// What `learn()` means in OVS text: table 1, default priority, permanent.
    fn default() -> Self {
        Learn {
            idle_timeout: 0,
            hard_timeout: 0,
            priority: DEFAULT_PRIORITY,
            cookie: 0,
            flags: 0,
            table_id: 1,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            limit: 0,
            result_dst: None,
            specs: Vec::new(),
        }
    }
}

/// One learn spec: where `n_bits` bits come from and where they go in the learned flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnSpec {
    /// Header bits no spec field uses (bits 10, 14 and 15). OVS ignores them on decode (header
    /// `0xc430` is accepted as `0x0030`); we keep them so decode -> encode is lossless.
    pub ignored_bits: u16,
    pub src: LearnSrc,
    pub dst: LearnDst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnSrc {
    /// Bits read from the packet being processed.
    Field(Subfield),
    /// A constant: `n_bits` bits, right-aligned in `bytes` (2 * ceil(n_bits / 16) bytes, as on
    /// the wire).
    Immediate { n_bits: u16, bytes: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnDst {
    /// The learned flow matches these bits.
    Match(Subfield),
    /// The learned flow's actions load these bits.
    Load(Subfield),
    /// The learned flow outputs to the port the source holds.
    Output,
}

impl LearnSpec {
    pub fn n_bits(&self) -> u16 {
        match &self.src {
            LearnSrc::Field(sf) => sf.n_bits,
            LearnSrc::Immediate { n_bits, .. } => *n_bits,
        }
    }
}

/// Bytes an immediate of `n_bits` takes on the wire.
fn imm_len(n_bits: u16) -> usize {
    2 * (n_bits as usize).div_ceil(16)
}

// === decode / encode ===

impl Learn {
    /// `r` holds the action's bytes after the 10-byte NX header of a LEARN action.
    pub fn decode(r: &mut Reader<'_>) -> Result<Learn, DecodeError> {
        Self::decode_subtype(NXAST_LEARN, r)
    }

    /// Decodes LEARN (16) or LEARN2 (45); `r` holds the bytes after the NX header.
    pub fn decode_subtype(subtype: u16, r: &mut Reader<'_>) -> Result<Learn, DecodeError> {
        let bad = |r: &Reader<'_>, m: String| r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, m);
        let mut l = Learn {
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            priority: r.u16()?,
            cookie: r.u64()?,
            flags: r.u16()?,
            table_id: r.u8()?,
            ..Learn::default()
        };
        let pad = r.u8()?;
        l.fin_idle_timeout = r.u16()?;
        l.fin_hard_timeout = r.u16()?;
        if pad != 0 {
            return Err(bad(r, "non-zero pad".into()));
        }
        if l.table_id == 255 {
            return Err(bad(r, "table 255 is not valid for learn".into()));
        }
        let known = if subtype == NXAST_LEARN2 {
            SEND_FLOW_REM | DELETE_LEARNED | WRITE_RESULT
        } else {
            SEND_FLOW_REM | DELETE_LEARNED
        };
        if l.flags & !known != 0 {
            return Err(bad(r, format!("unknown flags {:#x}", l.flags)));
        }
        if subtype == NXAST_LEARN2 {
            l.limit = r.u32()?;
            let ofs = r.u16()?;
            r.skip(2)?;
            if l.flags & WRITE_RESULT != 0 {
                let field = read_field(r)?;
                l.result_dst = Some(checked_subfield(r, field, ofs, 1)?);
            }
            l.flags &= !WRITE_RESULT;
        }
        while r.remaining() >= 2 && r.peek_u16(0)? != 0 {
            let header = r.u16()?;
            // Like OVS's `learn_pull_spec`, only a reserved destination type is refused; other
            // unused header bits are ignored (and kept, see `LearnSpec::ignored_bits`).
            if header & DST_MASK == DST_MASK {
                return Err(bad(r, format!("bad learn spec header {header:#06x}")));
            }
            let n_bits = header & N_BITS_MASK;
            if n_bits == 0 {
                return Err(bad(r, "learn spec with 0 bits".into()));
            }
            let src = if header & SRC_IMMEDIATE != 0 {
                let bytes = r.bytes(imm_len(n_bits))?.to_vec();
                LearnSrc::Immediate { n_bits, bytes }
            } else {
                let field = read_field(r)?;
                let ofs = r.u16()?;
                LearnSrc::Field(checked_subfield(r, field, ofs, n_bits)?)
            };
            let dst = match header & DST_MASK {
                DST_OUTPUT => {
                    if matches!(src, LearnSrc::Immediate { .. }) {
                        return Err(bad(r, "output from an immediate".into()));
                    }
                    LearnDst::Output
                }
                kind => {
                    let field = read_field(r)?;
                    let ofs = r.u16()?;
                    let sf = checked_subfield(r, field, ofs, n_bits)?;
                    if kind == DST_LOAD {
                        LearnDst::Load(sf)
                    } else {
                        LearnDst::Match(sf)
                    }
                }
            };
            l.specs.push(LearnSpec { ignored_bits: header & IGNORED_BITS, src, dst });
        }
        if r.take_rest().iter().any(|b| *b != 0) {
            return Err(bad(r, "non-zero bytes after the last spec".into()));
        }
        Ok(l)
    }

    /// Whether this needs NXAST_LEARN2.
    pub fn is_learn2(&self) -> bool {
        self.limit != 0 || self.result_dst.is_some()
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let learn2 = self.is_learn2();
        out.extend_from_slice(&0xffffu16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&0x2320u32.to_be_bytes());
        out.extend_from_slice(&(if learn2 { NXAST_LEARN2 } else { NXAST_LEARN }).to_be_bytes());
        out.extend_from_slice(&self.idle_timeout.to_be_bytes());
        out.extend_from_slice(&self.hard_timeout.to_be_bytes());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&self.cookie.to_be_bytes());
        let flags = if self.result_dst.is_some() { self.flags | WRITE_RESULT } else { self.flags & !WRITE_RESULT };
        out.extend_from_slice(&flags.to_be_bytes());
        out.push(self.table_id);
        out.push(0);
        out.extend_from_slice(&self.fin_idle_timeout.to_be_bytes());
        out.extend_from_slice(&self.fin_hard_timeout.to_be_bytes());
        if learn2 {
            out.extend_from_slice(&self.limit.to_be_bytes());
            out.extend_from_slice(&self.result_dst.map_or(0, |sf| sf.ofs).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            if let Some(sf) = self.result_dst {
                put_field(out, sf.field);
            }
        }
        for spec in &self.specs {
            let mut header = (spec.n_bits() & N_BITS_MASK) | (spec.ignored_bits & IGNORED_BITS);
            header |= match spec.src {
                LearnSrc::Field(_) => 0,
                LearnSrc::Immediate { .. } => SRC_IMMEDIATE,
            };
            header |= match spec.dst {
                LearnDst::Match(_) => 0,
                LearnDst::Load(_) => DST_LOAD,
                LearnDst::Output => DST_OUTPUT,
            };
            out.extend_from_slice(&header.to_be_bytes());
            match &spec.src {
                LearnSrc::Field(sf) => {
                    put_field(out, sf.field);
                    out.extend_from_slice(&sf.ofs.to_be_bytes());
                }
                LearnSrc::Immediate { n_bits, bytes } => {
                    let want = imm_len(*n_bits);
                    // Right-align whatever we hold into exactly `want` bytes.
                    let mut imm = vec![0u8; want];
                    let take = bytes.len().min(want);
                    imm[want - take..].copy_from_slice(&bytes[bytes.len() - take..]);
                    out.extend_from_slice(&imm);
                }
            }
            if let LearnDst::Match(sf) | LearnDst::Load(sf) = &spec.dst {
                put_field(out, sf.field);
                out.extend_from_slice(&sf.ofs.to_be_bytes());
            }
        }
        pad_to_8(out, start);
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }
}

// === text ===

impl Learn {
    /// Parses what stands between the parentheses of `learn(...)` (OVS's `learn_parse`).
    pub fn parse(args: &str) -> Result<Learn, TextError> {
        let mut l = Learn::default();
        for item in split_args(args) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match (item.find('='), item.find(':')) {
                (Some(e), Some(c)) if c < e => (&item[..c], &item[c + 1..]),
                (Some(e), _) => (&item[..e], &item[e + 1..]),
                (None, Some(c)) => (&item[..c], &item[c + 1..]),
                (None, None) => (item, ""),
            };
            let num = |what: &str| -> Result<u64, TextError> {
                parse_u64(value).ok_or_else(|| TextError::new(item, format!("bad {what} value")))
            };
            let n16 = |what: &str| -> Result<u16, TextError> {
                u16::try_from(num(what)?).map_err(|_| TextError::new(item, format!("{what} out of range")))
            };
            match name {
                "table" => {
                    let t = num("table")?;
                    if t >= 255 {
                        return Err(TextError::new(item, "table id 255 not valid for `learn' action"));
                    }
                    l.table_id = t as u8;
                }
                "priority" => l.priority = n16("priority")?,
                "idle_timeout" => l.idle_timeout = n16("idle_timeout")?,
                "hard_timeout" => l.hard_timeout = n16("hard_timeout")?,
                "fin_idle_timeout" => l.fin_idle_timeout = n16("fin_idle_timeout")?,
                "fin_hard_timeout" => l.fin_hard_timeout = n16("fin_hard_timeout")?,
                "cookie" => l.cookie = num("cookie")?,
                "limit" => {
                    l.limit = u32::try_from(num("limit")?).map_err(|_| TextError::new(item, "limit out of range"))?
                }
                "send_flow_rem" => l.flags |= SEND_FLOW_REM,
                "delete_learned" => l.flags |= DELETE_LEARNED,
                "result_dst" => {
                    let sf = parse_nx_subfield(value)?;
                    if sf.n_bits != 1 {
                        return Err(TextError::new(item, "result_dst must be a single bit"));
                    }
                    l.result_dst = Some(sf);
                }
                "load" => l.specs.push(parse_load(item, value)?),
                "output" => l.specs.push(LearnSpec {
                    ignored_bits: 0,
                    src: LearnSrc::Field(parse_nx_subfield(value)?),
                    dst: LearnDst::Output,
                }),
                _ => l.specs.push(parse_match(item, name, value)?),
            }
        }
        Ok(l)
    }
}

/// `NAME[..]=SRC`, `NAME[..]` or `NAME=VALUE`: a match spec.
fn parse_match(item: &str, name: &str, value: &str) -> Result<LearnSpec, TextError> {
    let dst =
        parse_nx_subfield(name).map_err(|e| TextError::new(item, format!("unknown keyword or field: {}", e.reason)))?;
    if value.is_empty() {
        return Ok(LearnSpec { ignored_bits: 0, src: LearnSrc::Field(dst), dst: LearnDst::Match(dst) });
    }
    if let Ok(src) = parse_nx_subfield(value) {
        if src.n_bits != dst.n_bits {
            return Err(TextError::new(
                item,
                format!("bit widths of {name} ({}) and {value} ({}) differ", dst.n_bits, src.n_bits),
            ));
        }
        return Ok(LearnSpec { ignored_bits: 0, src: LearnSrc::Field(src), dst: LearnDst::Match(dst) });
    }
    let bytes = if dst.is_whole() {
        let v = parse_value(dst.field, value)?;
        v.as_bytes().to_vec()
    } else {
        let b = parse_int(value, dst.field.bytes()).map_err(|e| TextError::new(item, e.reason))?;
        if Value::new(&b).map_or(0, |v| v.to_u128()) >> dst.n_bits != 0 {
            return Err(TextError::new(item, format!("value does not fit into {} bits", dst.n_bits)));
        }
        b
    };
    Ok(LearnSpec { ignored_bits: 0, src: immediate(dst.n_bits, &bytes), dst: LearnDst::Match(dst) })
}

/// `load:SRC->DST` or `load:VALUE->DST`.
fn parse_load(item: &str, value: &str) -> Result<LearnSpec, TextError> {
    let (src, dst) = value.split_once("->").ok_or_else(|| TextError::new(item, "missing `->'"))?;
    let dst = parse_nx_subfield(dst)?;
    // OVS: an immediate when a '-' (of "->") comes before any '['.
    let immediate_src = value.find(['[', '-']).is_some_and(|i| value.as_bytes()[i] == b'-');
    if immediate_src {
        let b = parse_int(src, 16).map_err(|e| TextError::new(item, e.reason))?;
        let v = u128::from_be_bytes(b.as_slice().try_into().unwrap_or([0; 16]));
        if dst.n_bits < 128 && v >> dst.n_bits != 0 {
            return Err(TextError::new(item, format!("value does not fit into {} bits", dst.n_bits)));
        }
        return Ok(LearnSpec { ignored_bits: 0, src: immediate(dst.n_bits, &b), dst: LearnDst::Load(dst) });
    }
    let src = parse_nx_subfield(src)?;
    if src.n_bits != dst.n_bits {
        return Err(TextError::new(
            item,
            format!("source ({}) and destination ({}) bit widths differ", src.n_bits, dst.n_bits),
        ));
    }
    Ok(LearnSpec { ignored_bits: 0, src: LearnSrc::Field(src), dst: LearnDst::Load(dst) })
}

/// An immediate of `n_bits` from a big-endian value (right-aligned into the wire width).
fn immediate(n_bits: u16, value: &[u8]) -> LearnSrc {
    let want = imm_len(n_bits);
    let mut bytes = vec![0u8; want];
    let take = value.len().min(want);
    bytes[want - take..].copy_from_slice(&value[value.len() - take..]);
    LearnSrc::Immediate { n_bits, bytes }
}

/// Decimal or `0x` hex, like C's `strtoull(s, NULL, 0)` for the numbers learn takes.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Splits on commas that are not inside parentheses or brackets.
pub(crate) fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The immediate's low `n_bits` bits as a whole-field value of `len` bytes.
fn imm_value(bytes: &[u8], n_bits: u16, len: usize) -> Value {
    let v = bytes.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128);
    let v = if n_bits >= 128 { v } else { v & ((1u128 << n_bits) - 1) };
    Value::from_u128(v, len)
}

/// Prints like OVS's `learn_format`.
impl fmt::Display for Learn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "learn(table={}", self.table_id)?;
        if self.idle_timeout != 0 {
            write!(f, ",idle_timeout={}", self.idle_timeout)?;
        }
        if self.hard_timeout != 0 {
            write!(f, ",hard_timeout={}", self.hard_timeout)?;
        }
        if self.fin_idle_timeout != 0 {
            write!(f, ",fin_idle_timeout={}", self.fin_idle_timeout)?;
        }
        if self.fin_hard_timeout != 0 {
            write!(f, ",fin_hard_timeout={}", self.fin_hard_timeout)?;
        }
        if self.priority != DEFAULT_PRIORITY {
            write!(f, ",priority={}", self.priority)?;
        }
        if self.flags & SEND_FLOW_REM != 0 {
            f.write_str(",send_flow_rem")?;
        }
        if self.flags & DELETE_LEARNED != 0 {
            f.write_str(",delete_learned")?;
        }
        if self.cookie != 0 {
            write!(f, ",cookie={:#x}", self.cookie)?;
        }
        if self.limit != 0 {
            write!(f, ",limit={}", self.limit)?;
        }
        if let Some(sf) = &self.result_dst {
            write!(f, ",result_dst={}", sf)?;
        }
        for spec in &self.specs {
            f.write_str(",")?;
            match (&spec.src, &spec.dst) {
                (LearnSrc::Immediate { n_bits, bytes }, LearnDst::Match(dst)) => {
                    if dst.is_whole() {
                        let v = imm_value(bytes, *n_bits, dst.field.bytes());
                        write!(f, "{}={}", dst.field.name(), format_value(dst.field, &v))?;
                    } else {
                        write!(f, "{}={}", dst, format_hex(bytes))?;
                    }
                }
                (LearnSrc::Field(src), LearnDst::Match(dst)) => {
                    write!(f, "{dst}")?;
                    if src.field != dst.field || src.ofs != dst.ofs {
                        write!(f, "={}", src)?;
                    }
                }
                (LearnSrc::Immediate { bytes, .. }, LearnDst::Load(dst)) => {
                    write!(f, "load:{}->{}", format_hex(bytes), dst)?
                }
                (LearnSrc::Field(src), LearnDst::Load(dst)) => write!(f, "load:{}->{}", src, dst)?,
                (LearnSrc::Field(src), LearnDst::Output) => write!(f, "output:{}", src)?,
                (LearnSrc::Immediate { bytes, .. }, LearnDst::Output) => write!(f, "output:{}", format_hex(bytes))?,
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::nx_testutil::*;

    const FLOWS: &[&str] = &[
        "tcp,actions=learn(table=6,idle_timeout=10,hard_timeout=20,priority=100,cookie=0x5,fin_idle_timeout=3,fin_hard_timeout=4,send_flow_rem,delete_learned,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=00:11:22:33:44:55,load:NXM_NX_REG1[]->NXM_NX_REG2[],load:0x5->NXM_NX_REG3[],output:NXM_OF_IN_PORT[])",
        "tcp,actions=learn(table=6,limit=10,result_dst=reg0[5],eth_type=0x800)",
        "tcp,actions=learn(table=6,cookie=0x10,limit=5,result_dst=reg1[3],hard_timeout=0,priority=32768,idle_timeout=65535,eth_type=0x800)",
        "tcp,actions=learn(table=6,eth_type=0x800,ip_dst=10.0.0.1,nw_proto=6,tcp_dst=80,NXM_OF_TCP_SRC[]=NXM_OF_TCP_DST[],tun_dst=NXM_NX_TUN_IPV4_SRC[],load:0xdeadbeef->NXM_NX_TUN_ID[0..31],reg0[0..3]=5,eth_type[]=0x86dd,in_port=3)",
        "tcp,actions=learn(eth_type=0x800,NXM_OF_IP_SRC[0..7]=NXM_OF_IP_DST[8..15],load:0->reg3[1..2],load:0x1234567890abcdef1234->xxreg0[],output:reg0[0..15])",
        "sctp,actions=learn(table=2,eth_type=0x800,nw_proto=132,sctp_src=sctp_dst,OXM_OF_SCTP_DST[]=OXM_OF_SCTP_SRC[],ct_mark=5,ip_dst=10.0.0.0)",
        "ip,actions=learn(table=6,eth_type=0x86dd,ipv6_src=fe80::1,in_port=LOCAL,eth_src=NXM_OF_ETH_DST[],load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[])",
        "ip,actions=learn()",
        "ip,actions=learn(table=0,priority=0)",
        "tcp,actions=learn(eth_type=0x800,nw_proto=6,tcp_flags=0x2,ip_frag=first,tun_flags=0x1,in_port=ANY)",
        "tcp,actions=learn(eth_type=0x800,nw_proto=6,tcp_flags=0x212,nw_frag=later)",
        "tcp,actions=learn(eth_type=0x800,nw_proto=6,tcp_flags=0,nw_frag=no)",
        "tcp,actions=learn(eth_type=0x800,nw_proto=6,tcp_flags=syn|ack,tun_flags=oam)",
        "ip,actions=learn(eth_type=0x800,ip_dscp=10,NXM_NX_IP_ECN[]=NXM_NX_IP_ECN[],nw_ecn=1)",
        "tcp,actions=learn(eth_type=0x800,nw_proto=6,NXM_NX_TCP_FLAGS[],tcp_flags[0..3]=NXM_NX_REG0[4..7])",
        "tcp,actions=learn(table=6,idle_timeout=60,eth_type=0x800,nw_proto=6,NXM_OF_ETH_SRC[]=NXM_OF_ETH_DST[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],NXM_OF_TCP_SRC[]=NXM_OF_TCP_DST[],NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],output:NXM_OF_IN_PORT[])",
    ];

    fn decode_nx(b: &[u8]) -> Result<Learn, DecodeError> {
        let (subtype, mut r) = nx_body(b)?;
        Learn::decode_subtype(subtype, &mut r)
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn learn_matches_ovs() {
        for flow in FLOWS {
            check_against_ovs(flow, Learn::parse, decode_nx, |a, out| a.encode(out), "learn");
        }
    }

    #[test]
    fn bad_text_is_an_error() {
        for bad in [
            "table=255",
            "load:0x10000->reg0[0..15]",
            "NXM_OF_IP_SRC[]=NXM_OF_TCP_SRC[]",
            "bogus=1",
            "load:reg0[]",
            "output:nosuch[]",
        ] {
            assert!(Learn::parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by the byte-mutation test: OVS accepts a spec header with unused bits set (0xc430)
    /// and prints it as if they were clear; we accept it too and keep the bits.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn spec_header_unused_bits_are_ignored_like_ovs() {
        let flow = "actions=learn(table=6,eth_type=0x800)";
        let mut ovs = crate::oracle::parse_flow(flow).expect("OVS parses it").bytes;
        let match_len = u16::from_be_bytes([ovs[50], ovs[51]]) as usize;
        let act = 48 + crate::openflow::wire::pad8(match_len) + 8;
        assert_eq!(&ovs[act + 32..act + 34], &[0x20, 0x10], "immediate, 16 bits");
        ovs[act + 32] |= 0xc4;
        let printed = crate::oracle::ofp_print(&ovs).expect("ofp-print runs");
        assert!(printed.contains("actions=learn(table=6,eth_type=0x800)") && !printed.contains("error"), "{printed}");
        let alen = u16::from_be_bytes([ovs[act + 2], ovs[act + 3]]) as usize;
        let bytes = &ovs[act..act + alen];
        let l = decode_nx(bytes).expect("accepted like OVS");
        assert_eq!(l.to_string(), "learn(table=6,eth_type=0x800)");
        assert_eq!(l.specs[0].ignored_bits, 0xc400);
        let mut again = Vec::new();
        l.encode(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let mut out = Vec::new();
        Learn::parse("table=6,eth_type=0x800").expect("test input is valid").encode(&mut out);
        // Reserved destination type 3.
        let mut b = out.clone();
        b[32] |= 0x18;
        assert!(decode_nx(&b).is_err());
        // Table 255.
        let mut b = out.clone();
        b[26] = 255;
        assert!(decode_nx(&b).is_err());
        // Junk after the specs.
        let mut b = out.clone();
        let n = b.len();
        b[n - 1] = 1;
        assert!(decode_nx(&b).is_err());
    }
}
