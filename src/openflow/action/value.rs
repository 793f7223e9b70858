//! Field values, sub-fields and NXM/OXM headers as actions use them, in bytes and in text.
//!
//! The text side (`set_field:10.0.0.1->ip_src`, `load:0x1->NXM_NX_REG0[0..3]`) follows OVS's
//! `mf_format` / `mf_parse` / `mf_parse_subfield` for the formats a writable field can have.
//! Value and sub-field text come from [`crate::openflow::text`] and [`Subfield`]'s `Display`.

use crate::openflow::field::{Hdr, OXM_EXPERIMENTER};
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, ErrorCode, Field, Subfield, TextError, Value};

// === headers ===

/// The header OVS puts in Nicira actions (`nxm_header_from_mff`): the NXM one when the field has
/// one, its OXM one otherwise.
pub fn nx_header(field: Field) -> Hdr {
    let d = field.def();
    d.nxm.or(d.oxm13).unwrap_or_else(|| d.header13())
}

/// Whether the field's Nicira-action header fits the fixed 4-byte slot of NXAST_REG_LOAD and
/// NXAST_OUTPUT_REG (experimenter OXMs need the "2" variants).
pub fn fits_nxm_slot(field: Field) -> bool {
    nx_header(field).class != OXM_EXPERIMENTER
}

/// Writes the action-style header of `field` (no mask, value length = field width).
pub fn put_nx_header(field: Field, out: &mut Vec<u8>) {
    nx_header(field).put(out, field.bytes() as u8, false);
}

/// A header read from the wire.
#[derive(Debug, Clone, Copy)]
pub struct ReadHeader {
    pub field: Field,
    pub masked: bool,
    /// Payload length in bytes (value, or value + mask), experimenter id excluded.
    pub len: usize,
}

/// Reads an NXM/OXM header (4 bytes, or 8 with an experimenter id) and finds its field.
/// An unknown field is `OFPBMC_BAD_FIELD`, as in OVS's `nx_pull_header`.
pub fn read_header(r: &mut Reader<'_>) -> Result<ReadHeader, DecodeError> {
    let w = r.u32()?;
    let class = (w >> 16) as u16;
    let fid = ((w >> 9) & 0x7f) as u8;
    let masked = (w >> 8) & 1 == 1;
    let mut len = (w & 0xff) as usize;
    let hdr = if class == OXM_EXPERIMENTER {
        let exp = r.u32()?;
        if len < 4 {
            return Err(r.error_code(ErrorCode::BAD_MATCH_BAD_LEN, "experimenter OXM too short"));
        }
        len -= 4;
        Hdr::exp(exp, fid)
    } else {
        Hdr::nxm(class, fid)
    };
    let field = Field::from_header(hdr)
        .ok_or_else(|| r.error_code(ErrorCode::BAD_MATCH_BAD_FIELD, format!("unknown field header {w:#010x}")))?;
    let expect = field.bytes() * if masked { 2 } else { 1 };
    if len != expect {
        return Err(r.error_code(ErrorCode::BAD_MATCH_BAD_LEN, format!("{} header length {len}", field.name())));
    }
    Ok(ReadHeader { field, masked, len })
}

/// `(ofs << 6) | (n_bits - 1)`, the NXM sub-field encoding.
pub fn ofs_nbits(sf: &Subfield) -> u16 {
    (sf.ofs << 6) | (sf.n_bits.saturating_sub(1) & 0x3f)
}

/// Decodes `ofs_nbits` against a field, checking the bits lie inside it (`mf_check_src/dst`).
pub fn subfield_from(field: Field, ofs_nbits: u16, r: &Reader<'_>) -> Result<Subfield, DecodeError> {
    let sf = Subfield { field, ofs: ofs_nbits >> 6, n_bits: (ofs_nbits & 0x3f) + 1 };
    check_subfield(sf, r)
}

pub fn check_subfield(sf: Subfield, r: &Reader<'_>) -> Result<Subfield, DecodeError> {
    if sf.n_bits == 0 || sf.ofs as u32 + sf.n_bits as u32 > sf.field.bits() as u32 {
        return Err(r.error_code(
            ErrorCode::BAD_ACTION_BAD_ARGUMENT,
            format!("bits {}+{} outside {}", sf.ofs, sf.n_bits, sf.field.name()),
        ));
    }
    Ok(sf)
}

// === text ===

/// Parses an unsigned integer of up to 128 bits (decimal, `0x` hex or leading-0 octal).
pub fn parse_u128(s: &str) -> Option<u128> {
    crate::openflow::text::parse_number(s.trim()).ok()
}

/// Parses `VALUE` or `VALUE/MASK` in the field's text format (mask `None` when absent): the
/// match helper's `mf_parse` ([`crate::openflow::text::parse_value`]).
pub fn parse_value(field: Field, s: &str) -> Result<(Value, Option<Value>), TextError> {
    crate::openflow::text::parse_value(field, s.trim())
}

/// `%#x`-style hex of a value: `0` for zero, else `0x..` without leading zeros.
pub fn hex(v: u128) -> String {
    crate::openflow::text::value::format_hex(&v.to_be_bytes())
}

/// Prints a value (and mask) the way `mf_format` does for the field.
pub fn format_value(field: Field, value: &Value, mask: Option<&Value>) -> String {
    crate::openflow::text::format_value(field, value, mask)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subfields() {
        use crate::openflow::text::parse_subfield;
        let sf = parse_subfield("NXM_NX_REG0[0..15]").unwrap();
        assert_eq!((sf.field, sf.ofs, sf.n_bits), (Field::reg(0), 0, 16));
        assert!(parse_subfield("reg0[]").unwrap().is_whole());
        assert_eq!(parse_subfield("reg1[5]").unwrap().n_bits, 1);
        assert!(parse_subfield("reg1[0..32]").is_err());
        assert!(parse_subfield("nosuch[]").is_err());
    }

    #[test]
    fn values() {
        let (v, m) = parse_value(Field::IPV4_SRC, "10.0.0.1/24").unwrap();
        assert_eq!(format_value(Field::IPV4_SRC, &v, m.as_ref()), "10.0.0.1/24");
        let (v, _) = parse_value(Field::reg(0), "0").unwrap();
        assert_eq!(format_value(Field::reg(0), &v, None), "0");
        let (v, _) = parse_value(Field::ETH_DST, "00:11:22:33:44:55").unwrap();
        assert_eq!(format_value(Field::ETH_DST, &v, None), "00:11:22:33:44:55");
        assert!(parse_value(Field::reg(0), "0x100000000").is_err());
        let (v, _) = parse_value(Field::xxreg(0), "0x10000000000000001").unwrap();
        assert_eq!(format_value(Field::xxreg(0), &v, None), "0x10000000000000001");
    }
}
