//! Field helpers shared by the Nicira actions that name fields with a bare 32-bit NXM header
//! (`ct` zones, `learn` specs, `multipath`, `bundle_load`): the header word, the packed
//! `ofs_nbits`, and the text forms (`NXM_NX_REG0[0..15]`, `0x5`, `eth_type=0x800`).
//!
//! Lives beside `learn.rs` (declared from there with `#[path]`) so that the owner of
//! `action/mod.rs` need not change; it can move into `field.rs` once the match helper's
//! `parse_subfield` / `format_value` / `parse_value` are in place.

use crate::openflow::field::{Field, Format, Hdr, Subfield, Value, OXM_EXPERIMENTER};
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::net::{Ipv4Addr, Ipv6Addr};

// === wire ===

/// The 32-bit header OVS writes for `field` inside NX actions: the NXM header when the field has
/// one, else its (non-experimenter) OXM header; the length is the field's width, no mask bit.
/// `None` for fields only reachable through an experimenter OXM (OVS refuses those too).
pub fn nxm_word(field: Field) -> Option<u32> {
    let d = field.def();
    let hdr = d.nxm.or(d.oxm13).or(d.oxm15()).filter(|h| h.class != OXM_EXPERIMENTER)?;
    Some(hdr.word(d.bytes, false))
}

/// Reads a 32-bit header word and finds its field. Mask bit and length must agree with the field.
pub fn read_field(r: &mut Reader<'_>) -> Result<Field, DecodeError> {
    let word = r.u32()?;
    field_from_word(word).ok_or_else(|| {
        r.error_code(ErrorCode::BAD_ACTION_BAD_SET_TYPE, format!("unknown field header {word:#010x}"))
    })
}

/// The field a 32-bit header word names, when we know it and the length matches.
pub fn field_from_word(word: u32) -> Option<Field> {
    let class = (word >> 16) as u16;
    if class == OXM_EXPERIMENTER || word & 0x100 != 0 {
        return None;
    }
    let hdr = Hdr { class, field: ((word >> 9) & 0x7f) as u8, experimenter: 0 };
    let f = Field::from_header(hdr).or_else(|| Field::all().find(|f| f.def().oxm15() == Some(hdr)))?;
    (f.bytes() == (word & 0xff) as usize).then_some(f)
}

/// Packs a bit offset and width as OVS's `ofs_nbits` (offset << 6 | (n_bits - 1)).
pub fn ofs_nbits(sf: &Subfield) -> u16 {
    (sf.ofs << 6) | (sf.n_bits.saturating_sub(1) & 0x3f)
}

/// Builds a subfield and checks it lies inside the field's meaningful bits (OFPBAC_BAD_SET_LEN
/// otherwise, as OVS's `mf_check_src` / `mf_check_dst` answer).
pub fn checked_subfield(r: &Reader<'_>, field: Field, ofs: u16, n_bits: u16) -> Result<Subfield, DecodeError> {
    let width = field.bits() as u32;
    if n_bits == 0 || ofs as u32 + n_bits as u32 > width {
        return Err(r.error_code(
            ErrorCode::BAD_ACTION_BAD_SET_LEN,
            format!("bits {ofs}+{n_bits} do not fit {} ({width} bits)", field.name()),
        ));
    }
    Ok(Subfield { field, ofs, n_bits })
}

/// Splits a packed `ofs_nbits` into (offset, number of bits).
pub fn unpack_ofs_nbits(v: u16) -> (u16, u16) {
    (v >> 6, (v & 0x3f) + 1)
}

/// Writes the header word of `sf.field` (0 when it has none we can write, which OVS rejects).
pub fn put_field(out: &mut Vec<u8>, field: Field) {
    out.extend_from_slice(&nxm_word(field).unwrap_or(0).to_be_bytes());
}

// === text ===

/// Parses `NAME`, `NAME[]`, `NAME[N]` or `NAME[LO..HI]` (OVS's `mf_parse_subfield`); NAME is any
/// field name, NXM/OXM names included.
pub fn parse_subfield(s: &str) -> Result<Subfield, TextError> {
    let s = s.trim();
    let (name, bits) = match s.find('[') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let field = Field::from_name(name).ok_or_else(|| TextError::new(s, format!("unknown field `{name}'")))?;
    // OVS measures subfields against the field's meaningful bits (12 for tcp_flags, 6 for
    // ip_dscp), and a whole field is that many bits.
    let width = field.bits();
    let whole = Subfield { field, ofs: 0, n_bits: width };
    let Some(bits) = bits else { return Ok(whole) };
    let inner = bits
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .ok_or_else(|| TextError::new(s, "expected `[...]' after the field name"))?;
    if inner.is_empty() {
        return Ok(whole);
    }
    let num = |t: &str| t.trim().parse::<u16>().map_err(|_| TextError::new(s, format!("bad bit number `{t}'")));
    let (lo, hi) = match inner.split_once("..") {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(inner)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(TextError::new(s, format!("starting bit {lo} is after ending bit {hi}")));
    }
    if hi >= width {
        return Err(TextError::new(s, format!("bit {hi} is out of range for {width}-bit field {name}")));
    }
    Ok(Subfield { field, ofs: lo, n_bits: hi - lo + 1 })
}

/// Whether `sf` covers its whole field (all meaningful bits), as OVS decides when printing.
pub fn is_whole(sf: &Subfield) -> bool {
    sf.ofs == 0 && sf.n_bits >= sf.field.bits()
}

/// OVS's `mf_format_subfield`: `NXM_NX_REG0[]`, `NXM_NX_REG0[5]`, `NXM_NX_REG0[0..15]`, where
/// "whole" means all of the field's meaningful bits (`NXM_NX_TCP_FLAGS[]` is 12 bits).
pub fn fmt_subfield(sf: &Subfield) -> String {
    if is_whole(sf) {
        format!("{}[]", sf.field.def().wire_name)
    } else {
        sf.to_string()
    }
}

/// Like [`parse_subfield`], and refuses fields with no 32-bit header (experimenter OXM only).
pub fn parse_nx_subfield(s: &str) -> Result<Subfield, TextError> {
    let sf = parse_subfield(s)?;
    if nxm_word(sf.field).is_none() {
        return Err(TextError::new(s, format!("experimenter OXM field '{}' not supported", sf.field.name())));
    }
    Ok(sf)
}

/// OVS's `ds_put_hex` / `mf_format_subvalue`: `0x` and the bytes from the first non-zero one,
/// the first without leading zero; `0` when all are zero.
pub fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        if s.is_empty() {
            if *b != 0 {
                s = format!("0x{b:x}");
            }
        } else {
            s.push_str(&format!("{b:02x}"));
        }
    }
    if s.is_empty() {
        s.push('0');
    }
    s
}

/// Parses an integer the way OVS's `parse_int_string` does: `0x` hex of any length, else a
/// decimal that fits 64 bits. Returns the big-endian value in `n_bytes` bytes; errors when it
/// does not fit.
pub fn parse_int(s: &str, n_bytes: usize) -> Result<Vec<u8>, TextError> {
    let t = s.trim();
    let mut out = vec![0u8; n_bytes];
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let digits = hex.trim_start_matches('0');
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(TextError::new(s, "bad hexadecimal value"));
        }
        if digits.len() > n_bytes * 2 {
            return Err(TextError::new(s, "too many bits in immediate value"));
        }
        for (i, c) in digits.chars().rev().enumerate() {
            let d = c.to_digit(16).unwrap_or(0) as u8;
            let byte = n_bytes - 1 - i / 2;
            out[byte] |= if i % 2 == 0 { d } else { d << 4 };
        }
        Ok(out)
    } else {
        let v: u64 = t.parse().map_err(|_| TextError::new(s, "bad integer value"))?;
        let be = v.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        if 8 - skip > n_bytes {
            return Err(TextError::new(s, "too many bits in immediate value"));
        }
        out[n_bytes - (8 - skip)..].copy_from_slice(&be[skip..]);
        Ok(out)
    }
}

/// OpenFlow 1.0 port names as OVS prints them (16-bit ports).
const PORT_NAMES: &[(u16, &str)] = &[
    (0xfff8, "IN_PORT"),
    (0xfff9, "TABLE"),
    (0xfffa, "NORMAL"),
    (0xfffb, "FLOOD"),
    (0xfffc, "ALL"),
    (0xfffd, "CONTROLLER"),
    (0xfffe, "LOCAL"),
    (0xffff, "ANY"),
    (0xfff7, "UNSET"),
];

/// A whole-field value in the field's own text form (OVS's `mf_format` without a mask).
pub fn format_value(field: Field, v: &Value) -> String {
    let b = v.as_bytes();
    match field.def().format {
        Format::Decimal => v.to_u128().to_string(),
        Format::Ethernet if b.len() == 6 => {
            b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
        }
        Format::Ipv4 if b.len() == 4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        Format::Ipv6 if b.len() == 16 => Ipv6Addr::from(v.to_u128()).to_string(),
        Format::TcpFlags => format_flags(v.to_u128() as u32, TCP_FLAG_NAMES),
        Format::TunnelFlags => format_flags(v.to_u128() as u32, &[(1, "oam")]),
        Format::CtState => format_flags(v.to_u128() as u32, CT_STATE_NAMES),
        Format::Frag => match v.to_u128() & 3 {
            0 => "no".into(),
            1 => "first".into(),
            3 => "later".into(),
            _ => "<error>".into(),
        },
        Format::Port16 | Format::Port32 => {
            let n = v.to_u128();
            let n16 = if field.def().format == Format::Port32 && n >= 0xffff_ff00 { n - 0xffff_0000 } else { n };
            PORT_NAMES
                .iter()
                .find(|(p, _)| *p as u128 == n16)
                .map(|(_, name)| name.to_string())
                .unwrap_or_else(|| n.to_string())
        }
        _ => format_hex(b),
    }
}

const TCP_FLAG_NAMES: &[(u32, &str)] = &[
    (0x001, "fin"),
    (0x002, "syn"),
    (0x004, "rst"),
    (0x008, "psh"),
    (0x010, "ack"),
    (0x020, "urg"),
    (0x040, "ece"),
    (0x080, "cwr"),
    (0x100, "ns"),
    (0x200, "[200]"),
    (0x400, "[400]"),
    (0x800, "[800]"),
];

const CT_STATE_NAMES: &[(u32, &str)] = &[
    (0x01, "new"),
    (0x02, "est"),
    (0x04, "rel"),
    (0x08, "rpl"),
    (0x10, "inv"),
    (0x20, "trk"),
    (0x40, "snat"),
    (0x80, "dnat"),
];

/// OVS's `format_flags` with '|': names from the lowest bit up, `0x..` for unnamed bits, `0`
/// when none is set.
fn format_flags(flags: u32, names: &[(u32, &str)]) -> String {
    if flags == 0 {
        return "0".into();
    }
    let mut parts = Vec::new();
    for i in 0..32 {
        let bit = 1u32 << i;
        if flags & bit != 0 {
            match names.iter().find(|(b, _)| *b == bit) {
                Some((_, n)) => parts.push(n.to_string()),
                None => parts.push(format!("{bit:#x}")),
            }
        }
    }
    parts.join("|")
}

/// The inverse of [`format_flags`]: names or numbers joined by '|'.
fn parse_flags(s: &str, names: &[(u32, &str)]) -> Option<u32> {
    s.split('|').try_fold(0u32, |acc, part| {
        let part = part.trim();
        let bit = match names.iter().find(|(_, n)| *n == part) {
            Some((b, _)) => *b,
            None => {
                let b = parse_int(part, 4).ok()?;
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            }
        };
        Some(acc | bit)
    })
}

/// Parses a whole-field value in the field's own text form (OVS's `mf_parse_value`), for the
/// formats `learn` immediates use: integers, Ethernet, IPv4, IPv6 and port names.
pub fn parse_value(field: Field, s: &str) -> Result<Value, TextError> {
    let n = field.bytes();
    let t = s.trim();
    let bad = |what: &str| TextError::new(s, format!("{}: {what}", field.name()));
    let v = match field.def().format {
        Format::Ethernet => {
            let parts: Vec<&str> = t.split(':').collect();
            if parts.len() != 6 {
                return Err(bad("invalid Ethernet address"));
            }
            let mut out = [0u8; 6];
            for (o, p) in out.iter_mut().zip(parts) {
                *o = u8::from_str_radix(p, 16).map_err(|_| bad("invalid Ethernet address"))?;
            }
            Value::new(&out)
        }
        Format::Ipv4 => Value::new(&t.parse::<Ipv4Addr>().map_err(|_| bad("invalid IP address"))?.octets()),
        Format::Ipv6 => Value::new(&t.parse::<Ipv6Addr>().map_err(|_| bad("invalid IPv6 address"))?.octets()),
        Format::TcpFlags => Some(Value::from_u128(parse_flags(t, TCP_FLAG_NAMES).ok_or_else(|| bad("invalid TCP flags"))? as u128, n)),
        Format::TunnelFlags => Some(Value::from_u128(parse_flags(t, &[(1, "oam")]).ok_or_else(|| bad("invalid tunnel flags"))? as u128, n)),
        Format::Frag => match t {
            "no" => Some(Value::from_u128(0, n)),
            "first" => Some(Value::from_u128(1, n)),
            "later" => Some(Value::from_u128(3, n)),
            _ => Value::new(&parse_int(t, n).map_err(|_| bad("invalid fragment type"))?),
        },
        Format::Port16 | Format::Port32 => match PORT_NAMES.iter().find(|(_, name)| *name == t) {
            Some((p, _)) => {
                let p = if n == 4 { *p as u128 + 0xffff_0000 } else { *p as u128 };
                Some(Value::from_u128(p, n))
            }
            None => Value::new(&parse_int(t, n).map_err(|_| bad("invalid port"))?),
        },
        _ => Value::new(&parse_int(t, n).map_err(|e| bad(&e.reason))?),
    };
    let v = v.ok_or_else(|| bad("value too long"))?;
    let spare = field.bytes() as u32 * 8 - field.bits() as u32;
    if spare > 0 && spare < 128 && v.to_u128() >> field.bits() != 0 {
        return Err(bad("value does not fit the field"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subfields_parse_like_ovs() {
        let sf = parse_subfield("NXM_NX_REG0[0..15]").expect("test input is valid");
        assert_eq!(sf.to_string(), "NXM_NX_REG0[0..15]");
        assert_eq!(parse_subfield("reg1[3]").expect("test input is valid").to_string(), "NXM_NX_REG1[3]");
        assert_eq!(parse_subfield("eth_src").expect("test input is valid").to_string(), "NXM_OF_ETH_SRC[]");
        assert_eq!(parse_subfield("reg0[]").expect("test input is valid"), Subfield::whole(Field::reg(0)));
        let flags = parse_subfield("tcp_flags").expect("test input is valid");
        assert_eq!(flags.n_bits, 12);
        assert_eq!(fmt_subfield(&flags), "NXM_NX_TCP_FLAGS[]");
        assert!(parse_subfield("tcp_flags[12]").is_err());
        assert!(parse_subfield("reg0[0..32]").is_err());
        assert!(parse_subfield("reg0[5..3]").is_err());
        assert!(parse_subfield("bogus[]").is_err());
        assert!(parse_subfield("reg0[0..15").is_err());
    }

    #[test]
    fn header_words() {
        assert_eq!(nxm_word(Field::reg(0)), Some(0x0001_0004));
        assert_eq!(nxm_word(Field::ETH_SRC), Some(0x0000_0406));
        assert_eq!(nxm_word(Field::xreg(1)), Some(0x8001_0208));
        assert_eq!(nxm_word(Field::SCTP_DST), Some(0x8000_2402));
        assert_eq!(field_from_word(0x0001_0004), Some(Field::reg(0)));
        assert_eq!(field_from_word(0x0001_0005), None);
        assert_eq!(field_from_word(0x0001_0108), None);
    }

    #[test]
    fn values() {
        assert_eq!(format_hex(&[0, 0, 0x08, 0x00]), "0x800");
        assert_eq!(format_hex(&[0, 0]), "0");
        assert_eq!(parse_int("0x5", 4).expect("test input is valid"), vec![0, 0, 0, 5]);
        assert_eq!(parse_int("258", 2).expect("test input is valid"), vec![1, 2]);
        assert!(parse_int("0x10000", 2).is_err());
        assert!(parse_int("65536", 2).is_err());
        assert!(parse_int("zz", 2).is_err());
        let v = parse_value(Field::ETH_DST, "00:11:22:33:44:55").expect("test input is valid");
        assert_eq!(format_value(Field::ETH_DST, &v), "00:11:22:33:44:55");
        let v = parse_value(Field::ETH_TYPE, "0x800").expect("test input is valid");
        assert_eq!(format_value(Field::ETH_TYPE, &v), "0x800");
        let v = parse_value(Field::IN_PORT, "LOCAL").expect("test input is valid");
        assert_eq!(format_value(Field::IN_PORT, &v), "LOCAL");
        assert_eq!(format_value(Field::IPV4_DST, &parse_value(Field::IPV4_DST, "10.0.0.1").expect("test input is valid")), "10.0.0.1");
        assert!(parse_value(Field::VLAN_VID, "0x2000").is_err());
    }
}
