//! NXAST_CT (subtype 35), `ct(...)`: send the packet through the connection tracker, and
//! NXAST_NAT (subtype 36), `nat(...)`, which is only meaningful nested inside `ct`.
//!
//! NXAST_CT after the 10-byte NX header: flags (u16: commit 1, force 2), zone_src (u32 NXM
//! header, 0 for an immediate zone), zone_ofs_nbits or zone_imm (u16), recirc_table (u8, 255 for
//! none), 3 pad bytes, alg (u16, an L4 port: 21 ftp, 69 tftp): 24 bytes, then nested actions.
//!
//! NXAST_NAT after the header: 2 pad bytes, flags (u16), range_present (u16), then only the
//! parts range_present names, in order: IPv4 min, IPv4 max (4 bytes each) or IPv6 min, IPv6 max
//! (16 each), then port min, port max (2 each); padded to 8.
//!
//! Printing follows OVS: a leading `nat` among the nested actions is printed outside `exec(...)`,
//! and `nat` flags and ports are only printed along with an address range.

use super::nx_field::{checked_subfield, field_from_word, put_field};
use super::value::ofs_nbits;
use super::{format_actions, Action};
use crate::openflow::field::{Field, Subfield};
use crate::openflow::text::parse_subfield;
use crate::openflow::wire::{pad_to_8, patch_u16, Reader};
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const NXAST_CT: u16 = 35;
pub const NXAST_NAT: u16 = 36;

/// `Ct::flags` bits.
pub const CT_COMMIT: u16 = 1 << 0;
pub const CT_FORCE: u16 = 1 << 1;
/// `recirc_table` meaning "do not recirculate".
pub const CT_RECIRC_NONE: u8 = 255;
pub const ALG_FTP: u16 = 21;
pub const ALG_TFTP: u16 = 69;

/// `Nat::flags` bits.
pub const NAT_SRC: u16 = 1 << 0;
pub const NAT_DST: u16 = 1 << 1;
pub const NAT_PERSISTENT: u16 = 1 << 2;
pub const NAT_PROTO_HASH: u16 = 1 << 3;
pub const NAT_PROTO_RANDOM: u16 = 1 << 4;
const NAT_FLAGS: u16 = 0x1f;

const RANGE_IPV4_MIN: u16 = 1 << 0;
const RANGE_IPV4_MAX: u16 = 1 << 1;
const RANGE_IPV6_MIN: u16 = 1 << 2;
const RANGE_IPV6_MAX: u16 = 1 << 3;
const RANGE_PROTO_MIN: u16 = 1 << 4;
const RANGE_PROTO_MAX: u16 = 1 << 5;

/// Where the conntrack zone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtZone {
    /// `zone=5` (0 is the default zone and is not printed).
    Immediate(u16),
    /// `zone=NXM_NX_REG0[0..15]`: always 16 bits.
    Field(Subfield),
}

/// A `ct` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct {
    /// CT_COMMIT | CT_FORCE (other bits kept as received).
    pub flags: u16,
    pub zone: CtZone,
    /// Table to recirculate to after tracking; [`CT_RECIRC_NONE`] for none.
    pub recirc_table: u8,
    /// Application-layer gateway, as an L4 port (0 for none).
    pub alg: u16,
    /// Nested actions (`exec(...)` and `nat`), applied to the connection.
    pub actions: Vec<Action>,
}

impl Default for Ct {
    fn default() -> Self {
        Ct { flags: 0, zone: CtZone::Immediate(0), recirc_table: CT_RECIRC_NONE, alg: 0, actions: Vec::new() }
    }
}

/// The address range of a `nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatRange {
    None,
    V4 { min: Ipv4Addr, max: Option<Ipv4Addr> },
    V6 { min: Ipv6Addr, max: Option<Ipv6Addr> },
}

/// A NAT port range: min and optional max.
pub type PortRange = (u16, Option<u16>);

/// A `nat` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    /// NAT_SRC | NAT_DST | NAT_PERSISTENT | NAT_PROTO_HASH | NAT_PROTO_RANDOM.
    pub flags: u16,
    pub range: NatRange,
    /// Port range: min and optional max.
    pub ports: Option<PortRange>,
}

impl Default for Nat {
    fn default() -> Self {
        Nat { flags: 0, range: NatRange::None, ports: None }
    }
}

fn bad_arg(r: &Reader<'_>, m: impl Into<String>) -> DecodeError {
    r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, m)
}

/// OVS allows nested actions without `commit` only when they are all a bare `nat`.
pub(crate) fn needs_commit(actions: &[Action]) -> bool {
    actions.iter().any(|a| !matches!(a, Action::Nat(n) if n.flags == 0 && n.range == NatRange::None))
}

/// OVS allows inside `ct` only `nat` and writes to `ct_mark` / `ct_label` (set_field, load,
/// move); anything else is refused (OFPBAC_BAD_ARGUMENT on the wire, an error in text).
fn check_nested(actions: &[Action]) -> Result<(), String> {
    for a in actions {
        let dst = match a {
            Action::Nat(_) => continue,
            Action::SetField { field, .. } | Action::RegLoad2 { field, .. } => *field,
            Action::RegLoad { dst, .. } | Action::RegMove { dst, .. } => dst.field,
            other => {
                let text = other.to_string();
                let name = text.split(['(', ':', ',']).next().unwrap_or("");
                return Err(format!("ct action doesn't support nested action {name}"));
            }
        };
        if dst != Field::CT_MARK && dst != Field::CT_LABEL {
            return Err(format!("ct action doesn't support nested modification of {}", dst.name()));
        }
    }
    Ok(())
}

pub(crate) const NEEDS_COMMIT: &str =
    "CT action requires commit flag if actions other than NAT without arguments are specified";

// === impl Ct ===

impl Ct {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(r: &mut Reader<'_>) -> Result<Ct, DecodeError> {
        let flags = r.u16()?;
        let zone_src = r.u32()?;
        let zone_word = r.u16()?;
        let recirc_table = r.u8()?;
        r.skip(3)?;
        let alg = r.u16()?;
        if flags & CT_FORCE != 0 && flags & CT_COMMIT == 0 {
            return Err(bad_arg(r, "\"force\" flag requires \"commit\" flag"));
        }
        let zone = if zone_src == 0 {
            CtZone::Immediate(zone_word)
        } else {
            let field = field_from_word(zone_src).ok_or_else(|| {
                r.error_code(ErrorCode::BAD_ACTION_BAD_SET_TYPE, format!("unknown zone field {zone_src:#010x}"))
            })?;
            let sf = checked_subfield(r, field, zone_word >> 6, (zone_word & 0x3f) + 1)?;
            if sf.n_bits != 16 {
                return Err(r.error_code(
                    ErrorCode::BAD_ACTION_BAD_SET_LEN,
                    format!("zone n_bits {} not within valid range [16..16]", sf.n_bits),
                ));
            }
            CtZone::Field(sf)
        };
        let mut nested = r.sub(r.remaining())?;
        let actions = Action::decode_list(&mut nested)?;
        check_nested(&actions).map_err(|m| bad_arg(r, m))?;
        if flags & CT_COMMIT == 0 && needs_commit(&actions) {
            return Err(bad_arg(r, NEEDS_COMMIT));
        }
        Ok(Ct { flags, zone, recirc_table, alg, actions })
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 0x23, 0x20]);
        out.extend_from_slice(&NXAST_CT.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        match &self.zone {
            CtZone::Immediate(z) => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&z.to_be_bytes());
            }
            CtZone::Field(sf) => {
                put_field(out, sf.field);
                out.extend_from_slice(&ofs_nbits(sf).to_be_bytes());
            }
        }
        out.push(self.recirc_table);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.alg.to_be_bytes());
        Action::encode_list(&self.actions, out);
        pad_to_8(out, start);
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }

    /// Parses what stands between the parentheses of `ct(...)` (OVS's `parse_CT`).
    pub fn parse(args: &str) -> Result<Ct, TextError> {
        let mut ct = Ct::default();
        for item in super::learn::split_args(args) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = split_key(item)?;
            match key {
                "commit" => ct.flags |= CT_COMMIT,
                "force" => ct.flags |= CT_FORCE,
                "table" => {
                    let t =
                        parse_uint(value).filter(|t| *t <= 255).ok_or_else(|| TextError::new(item, "invalid table"))?;
                    if t == CT_RECIRC_NONE as u64 {
                        return Err(TextError::new(item, "invalid table 0xff"));
                    }
                    ct.recirc_table = t as u8;
                }
                "zone" => {
                    ct.zone = match parse_uint(value) {
                        Some(z) => {
                            CtZone::Immediate(u16::try_from(z).map_err(|_| TextError::new(item, "zone out of range"))?)
                        }
                        None => {
                            let sf = parse_subfield(value)?;
                            if sf.n_bits != 16 {
                                return Err(TextError::new(
                                    item,
                                    format!("zone n_bits {} not within valid range [16..16]", sf.n_bits),
                                ));
                            }
                            CtZone::Field(sf)
                        }
                    }
                }
                "alg" => {
                    ct.alg = match value {
                        "ftp" => ALG_FTP,
                        "tftp" => ALG_TFTP,
                        _ => return Err(TextError::new(value, "invalid conntrack helper")),
                    }
                }
                "nat" => ct.actions.push(Action::Nat(Nat::parse(value)?)),
                "exec" => ct.actions.extend(super::text::parse_nested(value, &Default::default())?),
                _ => return Err(TextError::new(item, "invalid argument to \"ct\" action")),
            }
        }
        if ct.flags & CT_FORCE != 0 && ct.flags & CT_COMMIT == 0 {
            return Err(TextError::new(args, "\"force\" flag requires \"commit\" flag"));
        }
        check_nested(&ct.actions).map_err(|m| TextError::new(args, m))?;
        // Actions without `commit` are refused by the check against the match, after its
        // prerequisites, as OVS orders it (`check::check_actions`; OFPBAC_BAD_ARGUMENT).
        Ok(ct)
    }
}

/// `key(value)`, `key=value`, `key:value` or a bare `key`.
fn split_key(item: &str) -> Result<(&str, &str), TextError> {
    match item.find(['=', ':', '(']) {
        None => Ok((item, "")),
        Some(i) if item.as_bytes()[i] == b'(' => {
            let inner =
                item[i + 1..].strip_suffix(')').ok_or_else(|| TextError::new(item, "unbalanced parentheses"))?;
            Ok((&item[..i], inner))
        }
        Some(i) => Ok((&item[..i], &item[i + 1..])),
    }
}

/// Decimal or `0x` hex.
fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Prints like OVS's `format_CONNTRACK`.
impl fmt::Display for Ct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.flags & CT_COMMIT != 0 {
            parts.push("commit".into());
        }
        if self.flags & CT_FORCE != 0 {
            parts.push("force".into());
        }
        if self.recirc_table != CT_RECIRC_NONE {
            parts.push(format!("table={}", self.recirc_table));
        }
        match &self.zone {
            CtZone::Field(sf) => parts.push(format!("zone={}", sf)),
            CtZone::Immediate(0) => {}
            CtZone::Immediate(z) => parts.push(format!("zone={z}")),
        }
        let mut rest = &self.actions[..];
        if let Some((Action::Nat(n), tail)) = rest.split_first() {
            parts.push(n.to_string());
            rest = tail;
        }
        if !rest.is_empty() {
            parts.push(format!("exec({})", format_actions(rest)));
        }
        match self.alg {
            0 => {}
            ALG_FTP => parts.push("alg=ftp".into()),
            ALG_TFTP => parts.push("alg=tftp".into()),
            a => parts.push(format!("alg={a}")),
        }
        write!(f, "ct({})", parts.join(","))
    }
}

// === impl Nat ===

impl Nat {
    /// `r` holds the action's bytes after the 10-byte NX header.
    pub fn decode(r: &mut Reader<'_>) -> Result<Nat, DecodeError> {
        r.skip(2)?;
        let flags = r.u16()?;
        let present = r.u16()?;
        if flags & !NAT_FLAGS != 0
            || (flags & NAT_SRC != 0 && flags & NAT_DST != 0)
            || (flags & NAT_PROTO_HASH != 0 && flags & NAT_PROTO_RANDOM != 0)
        {
            return Err(bad_arg(r, format!("bad nat flags {flags:#x}")));
        }
        let short = |r: &Reader<'_>| r.error_code(ErrorCode::BAD_ACTION_BAD_LEN, "nat range runs past the action");
        let range = if present & RANGE_IPV4_MIN != 0 {
            if present & (RANGE_IPV6_MIN | RANGE_IPV6_MAX) != 0 {
                return Err(bad_arg(r, "both IPv4 and IPv6 ranges"));
            }
            let min = Ipv4Addr::from(r.u32().map_err(|_| short(r))?);
            let max =
                if present & RANGE_IPV4_MAX != 0 { Some(Ipv4Addr::from(r.u32().map_err(|_| short(r))?)) } else { None };
            if max.is_some_and(|m| m < min) {
                return Err(bad_arg(r, "IPv4 range max below min"));
            }
            NatRange::V4 { min, max }
        } else if present & RANGE_IPV4_MAX != 0 {
            return Err(bad_arg(r, "IPv4 max without min"));
        } else if present & RANGE_IPV6_MIN != 0 {
            let min = Ipv6Addr::from(r.array::<16>().map_err(|_| short(r))?);
            let max = if present & RANGE_IPV6_MAX != 0 {
                Some(Ipv6Addr::from(r.array::<16>().map_err(|_| short(r))?))
            } else {
                None
            };
            if max.is_some_and(|m| m < min) {
                return Err(bad_arg(r, "IPv6 range max below min"));
            }
            NatRange::V6 { min, max }
        } else if present & RANGE_IPV6_MAX != 0 {
            return Err(bad_arg(r, "IPv6 max without min"));
        } else {
            NatRange::None
        };
        let ports = if present & RANGE_PROTO_MIN != 0 {
            let min = r.u16().map_err(|_| short(r))?;
            let max = if present & RANGE_PROTO_MAX != 0 { Some(r.u16().map_err(|_| short(r))?) } else { None };
            if max.is_some_and(|m| m < min) {
                return Err(bad_arg(r, "port range max below min"));
            }
            Some((min, max))
        } else if present & RANGE_PROTO_MAX != 0 {
            return Err(bad_arg(r, "port max without min"));
        } else {
            None
        };
        Ok(Nat { flags, range, ports })
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 0x23, 0x20]);
        out.extend_from_slice(&NXAST_NAT.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.flags.to_be_bytes());
        let present_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let mut present = 0u16;
        match self.range {
            NatRange::None => {}
            NatRange::V4 { min, max } => {
                present |= RANGE_IPV4_MIN;
                out.extend_from_slice(&min.octets());
                if let Some(m) = max {
                    present |= RANGE_IPV4_MAX;
                    out.extend_from_slice(&m.octets());
                }
            }
            NatRange::V6 { min, max } => {
                present |= RANGE_IPV6_MIN;
                out.extend_from_slice(&min.octets());
                if let Some(m) = max {
                    present |= RANGE_IPV6_MAX;
                    out.extend_from_slice(&m.octets());
                }
            }
        }
        if let Some((min, max)) = self.ports {
            present |= RANGE_PROTO_MIN;
            out.extend_from_slice(&min.to_be_bytes());
            if let Some(m) = max {
                present |= RANGE_PROTO_MAX;
                out.extend_from_slice(&m.to_be_bytes());
            }
        }
        patch_u16(out, present_at, present);
        pad_to_8(out, start);
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }

    /// Parses what stands between the parentheses of `nat(...)` ("" for a bare `nat`).
    pub fn parse(args: &str) -> Result<Nat, TextError> {
        let mut nat = Nat::default();
        for item in args.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (item, ""),
            };
            match key {
                "src" | "dst" => {
                    if nat.flags & (NAT_SRC | NAT_DST) != 0 {
                        return Err(TextError::new(item, "May only specify one of \"src\" or \"dst\"."));
                    }
                    nat.flags |= if key == "src" { NAT_SRC } else { NAT_DST };
                    if !value.is_empty() {
                        let (range, ports) = parse_nat_range(value)?;
                        nat.range = range;
                        nat.ports = ports;
                    }
                }
                "persistent" => nat.flags |= NAT_PERSISTENT,
                "hash" => nat.flags |= NAT_PROTO_HASH,
                "random" => nat.flags |= NAT_PROTO_RANDOM,
                _ => return Err(TextError::new(item, "invalid key in \"nat\" argument")),
            }
        }
        if nat.flags & !(NAT_SRC | NAT_DST) != 0 && nat.flags & (NAT_SRC | NAT_DST) == 0 {
            return Err(TextError::new(args, "Flags allowed only with \"src\" or \"dst\"."));
        }
        if nat.flags & NAT_PROTO_HASH != 0 && nat.flags & NAT_PROTO_RANDOM != 0 {
            return Err(TextError::new(args, "Both \"hash\" and \"random\" are not allowed."));
        }
        Ok(nat)
    }
}

/// `A[-B][:P[-Q]]` with IPv4 addresses, `[A][-[B]][:P[-Q]]` with IPv6 ones (a bare IPv6 `A[-B]`
/// takes no ports).
fn parse_nat_range(s: &str) -> Result<(NatRange, Option<PortRange>), TextError> {
    let bad = || TextError::new(s, "invalid nat range");
    let (range, port_text) = if s.starts_with('[') {
        let (min, rest) = bracketed_v6(s).ok_or_else(bad)?;
        let (max, rest) = match rest.strip_prefix('-') {
            Some(r) => {
                let (m, r) = bracketed_v6(r).ok_or_else(bad)?;
                (Some(m), r)
            }
            None => (None, rest),
        };
        (NatRange::V6 { min, max }, rest)
    } else if s.matches(':').count() > 1 {
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let min: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let max = b.map(|b| b.parse::<Ipv6Addr>()).transpose().map_err(|_| bad())?;
        (NatRange::V6 { min, max }, "")
    } else {
        let (addrs, ports) = match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        if addrs.is_empty() {
            (NatRange::None, ports)
        } else {
            let (a, b) = match addrs.split_once('-') {
                Some((a, b)) => (a, Some(b)),
                None => (addrs, None),
            };
            // OVS reads nat addresses with `ip_parse` (octets as decimal: `10.0.05.2` is fine).
            let v4 = |t: &str| crate::openflow::text::value::parse_ipv4(t).map(Ipv4Addr::from).map_err(|_| bad());
            let min = v4(a)?;
            let max = b.map(v4).transpose()?;
            (NatRange::V4 { min, max }, ports)
        }
    };
    match range {
        NatRange::V4 { min, max: Some(m) } if m < min => return Err(bad()),
        NatRange::V6 { min, max: Some(m) } if m < min => return Err(bad()),
        _ => {}
    }
    let ports = if port_text.is_empty() {
        None
    } else {
        let p = port_text.strip_prefix(':').ok_or_else(bad)?;
        let (a, b) = match p.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (p, None),
        };
        let min: u16 = a.parse().map_err(|_| bad())?;
        let max = b.map(|b| b.parse::<u16>()).transpose().map_err(|_| bad())?;
        if max.is_some_and(|m| m < min) {
            return Err(bad());
        }
        // OVS writes only non-zero bounds: `:0` means no port range.
        (min != 0).then_some((min, max))
    };
    Ok((range, ports))
}

/// `[addr]rest` -> (addr, rest).
fn bracketed_v6(s: &str) -> Option<(Ipv6Addr, &str)> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    Some((inner[..end].parse().ok()?, &inner[end + 1..]))
}

/// Prints like OVS's `format_NAT`.
impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nat")?;
        if self.flags & (NAT_SRC | NAT_DST) == 0 {
            return Ok(());
        }
        f.write_str(if self.flags & NAT_SRC != 0 { "(src" } else { "(dst" })?;
        if self.range != NatRange::None {
            f.write_str("=")?;
            let bracket = self.ports.is_some_and(|(min, _)| min != 0);
            match self.range {
                NatRange::None => {}
                NatRange::V4 { min, max } => {
                    write!(f, "{min}")?;
                    if let Some(m) = max.filter(|m| *m != min && !m.is_unspecified()) {
                        write!(f, "-{m}")?;
                    }
                }
                NatRange::V6 { min, max } => {
                    let v6 = |a: Ipv6Addr| if bracket { format!("[{a}]") } else { a.to_string() };
                    f.write_str(&v6(min))?;
                    if let Some(m) = max.filter(|m| *m != min && !m.is_unspecified()) {
                        write!(f, "-{}", v6(m))?;
                    }
                }
            }
            if let Some((min, max)) = self.ports.filter(|(min, _)| *min != 0) {
                write!(f, ":{min}")?;
                if let Some(m) = max.filter(|m| *m != min && *m != 0) {
                    write!(f, "-{m}")?;
                }
            }
            if self.flags & NAT_PERSISTENT != 0 {
                f.write_str(",persistent")?;
            }
            if self.flags & NAT_PROTO_HASH != 0 {
                f.write_str(",hash")?;
            }
            if self.flags & NAT_PROTO_RANDOM != 0 {
                f.write_str(",random")?;
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::nx_testutil::*;

    fn decode_nx(b: &[u8]) -> Result<Ct, DecodeError> {
        let (subtype, mut r) = nx_body(b)?;
        if subtype != NXAST_CT {
            return Err(r.error("not ct"));
        }
        Ct::decode(&mut r)
    }

    /// Forms with no `exec` and only `nat` nested: these need nothing from the actions module
    /// beyond Nat's own dispatch.
    const PLAIN: &[&str] = &[
        "ip,actions=ct()",
        "ip,actions=ct(commit)",
        "ip,actions=ct(commit,force)",
        "ip,actions=ct(table=5)",
        "ip,actions=ct(zone=5)",
        "ip,actions=ct(commit,zone=65535,table=0)",
        "ip,actions=ct(commit,zone=NXM_NX_REG0[0..15])",
        "ip,actions=ct(zone=reg1[16..31],table=6)",
        "tcp,actions=ct(commit,alg=ftp)",
        "udp,actions=ct(commit,zone=1,alg=tftp)",
        "ip,actions=ct(nat)",
        "ip,actions=ct(commit,nat(src=10.0.0.1))",
        "ip,actions=ct(commit,nat(dst=10.0.0.1:80))",
        "tcp,actions=ct(commit,nat(src=10.0.0.1-10.0.0.9:1000-2000,random))",
        "tcp,actions=ct(commit,nat(src=10.0.0.1-10.0.0.1:80-80))",
        "ip,actions=ct(commit,nat(src=10.0.0.1,persistent,hash))",
        "ip,actions=ct(commit,nat(src))",
        "ip,actions=ct(commit,nat(dst))",
        "ipv6,actions=ct(commit,nat(dst=[fe80::1]-[fe80::9]:80,persistent,hash))",
        "ipv6,actions=ct(commit,nat(src=fe80::1-fe80::9))",
        "ipv6,actions=ct(commit,nat(src=[fe80::1]))",
        "ipv6,actions=ct(commit,nat(dst=[2001:db8::1]:80-90))",
        "ip,actions=ct(commit,table=7,zone=3,nat(src=192.168.0.1-192.168.0.254))",
        "ip,actions=ct(commit,nat(src=10.0.0.1:0))",
        "ip,actions=ct(zone=0x10,table=1)",
    ];

    /// Forms with `exec(...)`: they need the actions module's nested parse/print.
    const EXEC: &[&str] = &[
        "ip,actions=ct(commit,zone=1,exec(set_field:0x1->ct_mark),nat(src=10.0.0.1-10.0.0.9:1000-2000,random))",
        "tcp,actions=ct(force,commit,table=5,zone=NXM_NX_REG0[0..15],alg=ftp,nat(src=10.0.0.1-10.0.0.9:1000-2000,random),exec(set_field:0x1->ct_mark))",
        "ip,actions=ct(commit,exec(set_field:0x1/0xff->ct_label,set_field:5->ct_mark))",
        "ip,actions=ct(commit,exec(load:0x1->NXM_NX_CT_LABEL[3]))",
        "ip,actions=ct(commit,nat,nat)",
        "ip,actions=ct(commit,exec(nat(src=1.1.1.1)),nat(dst=2.2.2.2))",
        "ip,actions=ct(commit,exec())",
        "ip,actions=ct(commit,exec(move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]))",
        "ip,actions=ct(commit,exec(set_field:0x1->ct_mark,load:0x1->NXM_NX_CT_LABEL[0..3]))",
        "ip,actions=ct(commit,exec(set_field:0x1->ct_label))",
    ];

    fn check(flow: &str) {
        check_against_ovs(flow, Ct::parse, decode_nx, |c, out| c.encode(out), "ct");
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn ct_and_nat_match_ovs() {
        for flow in PLAIN {
            check(flow);
        }
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn ct_exec_matches_ovs() {
        for flow in EXEC {
            check(flow);
        }
    }

    #[test]
    fn bad_text_is_refused_like_ovs() {
        for bad in [
            "force",
            "table=255",
            "alg=21",
            "bogus",
            "nat(src),exec(nat)",
            "commit,nat(src=10.0.0.9-10.0.0.1)",
            "commit,nat(persistent)",
            "commit,nat(src=10.0.0.1,hash,random)",
            "commit,nat(src=1.1.1.1,dst=2.2.2.2)",
            "commit,nat(src=10.0.0.1:90-80)",
            "commit,exec(output:1)",
            "commit,exec(set_field:1->reg0)",
            "commit,exec(ct(commit))",
            "commit,exec(resubmit(,3))",
        ] {
            // Refused by the parser, or (a missing `commit`) by the check against the match.
            let flow = crate::openflow::flow::FlowMod::parse(
                &format!("ip,actions=ct({bad})"),
                crate::openflow::flow::FlowModCommand::Add,
            );
            assert!(flow.is_err(), "{bad}");
            // OVS refuses either in its parser or, for some, only when decoding its own bytes.
            let ovs = crate::oracle::parse_flow(&format!("ip,actions=ct({bad})"));
            assert!(ovs.map_or(true, |f| f.text.contains("decode error")), "OVS takes {bad}");
        }
    }

    #[test]
    fn narrow_zone_field_is_refused() {
        // OVS's parser takes it but its decoder refuses it (OFPBAC_BAD_SET_LEN): refuse early.
        assert!(Ct::parse("zone=reg0[0..7]").is_err());
        let mut b = Vec::new();
        Ct::parse("zone=reg0[0..15]").expect("test input is valid").encode(&mut b);
        b[17] = 7;
        assert_eq!(decode_nx(&b).expect_err("must be refused").code, ErrorCode::BAD_ACTION_BAD_SET_LEN);
    }

    #[test]
    fn bad_bytes_are_refused() {
        let mut b = Vec::new();
        Ct::parse("commit,nat(src=10.0.0.1-10.0.0.9:1000-2000)").expect("test input is valid").encode(&mut b);
        let nat = 24;
        // Both src and dst.
        let mut c = b.clone();
        c[nat + 13] |= 3;
        assert!(decode_nx(&c).is_err());
        // IPv6 and IPv4 both present.
        let mut c = b.clone();
        c[nat + 15] |= RANGE_IPV6_MIN as u8;
        assert!(decode_nx(&c).is_err());
        // Force without commit.
        let mut c = b.clone();
        c[11] = 2;
        assert!(decode_nx(&c).is_err());
        // A nested action OVS does not allow inside ct.
        let ct = Ct { flags: CT_COMMIT, actions: vec![Action::Output { port: 1, max_len: 0 }], ..Ct::default() };
        let mut c = Vec::new();
        ct.encode(&mut c);
        assert_eq!(decode_nx(&c).expect_err("output inside ct").code, ErrorCode::BAD_ACTION_BAD_ARGUMENT);
        // Nested actions other than a bare nat need commit.
        let ct = Ct { actions: vec![Action::Nat(Nat { flags: NAT_SRC, ..Nat::default() })], ..Ct::default() };
        let mut c = Vec::new();
        ct.encode(&mut c);
        assert_eq!(decode_nx(&c).expect_err("nat(src) without commit").code, ErrorCode::BAD_ACTION_BAD_ARGUMENT);
    }
}
