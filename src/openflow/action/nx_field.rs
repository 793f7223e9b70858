//! Field helpers shared by the Nicira actions that name fields with a bare 32-bit NXM header
//! (`ct` zones, `learn` specs, `multipath`, `bundle_load`): the header word, the packed
//! `ofs_nbits`, and the text forms (`NXM_NX_REG0[0..15]`, `0x5`, `eth_type=0x800`).
//!
//! Sub-field text is [`crate::openflow::text::parse_subfield`] and [`Subfield`]'s `Display`;
//! `ofs_nbits` packing is in `action/value.rs`.

use crate::openflow::field::{Field, Hdr, Subfield, Value, OXM_EXPERIMENTER};
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, ErrorCode, TextError};

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
    field_from_word(word)
        .ok_or_else(|| r.error_code(ErrorCode::BAD_ACTION_BAD_SET_TYPE, format!("unknown field header {word:#010x}")))
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

/// Like [`crate::openflow::text::parse_subfield`], and refuses fields with no 32-bit header (experimenter OXM only).
pub fn parse_nx_subfield(s: &str) -> Result<Subfield, TextError> {
    let sf = crate::openflow::text::parse_subfield(s)?;
    if nxm_word(sf.field).is_none() {
        return Err(TextError::new(s, format!("experimenter OXM field '{}' not supported", sf.field.name())));
    }
    Ok(sf)
}

pub use crate::openflow::text::value::format_hex;

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

/// A whole-field value as `learn` prints an immediate (OVS's `mf_format` without a mask).
pub fn format_value(field: Field, v: &Value) -> String {
    crate::openflow::text::format_value(field, v, None)
}

/// Parses a `learn` immediate (OVS's `mf_parse` with an all-ones mask required: "wildcards not
/// allowed here").
pub fn parse_value(field: Field, s: &str) -> Result<Value, TextError> {
    let v = match crate::openflow::text::parse_value(field, s.trim())? {
        (v, None) => v,
        (v, Some(m)) if m.is_all_ones() => v,
        _ => return Err(TextError::new(s, format!("{}: wildcards not allowed here", field.name()))),
    };
    // The immediate fills the field's meaningful bits only (13 for vlan_vid).
    let spare = field.bytes() as u32 * 8 - field.bits() as u32;
    if spare > 0 && spare < 128 && v.to_u128() >> field.bits() != 0 {
        return Err(TextError::new(s, format!("{}: value does not fit the field", field.name())));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subfields_parse_like_ovs() {
        use crate::openflow::text::parse_subfield;
        let sf = parse_subfield("NXM_NX_REG0[0..15]").expect("test input is valid");
        assert_eq!(sf.to_string(), "NXM_NX_REG0[0..15]");
        assert_eq!(parse_subfield("reg1[3]").expect("test input is valid").to_string(), "NXM_NX_REG1[3]");
        assert_eq!(parse_subfield("eth_src").expect("test input is valid").to_string(), "NXM_OF_ETH_SRC[]");
        assert_eq!(parse_subfield("reg0[]").expect("test input is valid"), Subfield::whole(Field::reg(0)));
        let flags = parse_subfield("tcp_flags").expect("test input is valid");
        assert_eq!(flags.n_bits, 12);
        assert_eq!(flags.to_string(), "NXM_NX_TCP_FLAGS[]");
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
        assert_eq!(
            format_value(Field::IPV4_DST, &parse_value(Field::IPV4_DST, "10.0.0.1").expect("test input is valid")),
            "10.0.0.1"
        );
        assert!(parse_value(Field::VLAN_VID, "0x2000").is_err());
    }
}
