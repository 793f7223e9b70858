//! OpenFlow port numbers as actions carry them, and their text.
//!
//! OVS keeps ports as 16-bit numbers internally (`ofp_port_t`) and maps the OpenFlow 1.1+ 32-bit
//! reserved ports (`0xfffffff8..`) onto `0xfff8..`. Actions such as `resubmit` carry the 16-bit
//! form on the wire, `OFPAT_OUTPUT` the 32-bit one; both print and parse with the same names.

use crate::openflow::{DecodeError, ErrorCode, TextError};

pub const OFPP_MAX: u16 = 0xff00;
pub const OFPP_IN_PORT: u16 = 0xfff8;
pub const OFPP_TABLE: u16 = 0xfff9;
pub const OFPP_NORMAL: u16 = 0xfffa;
pub const OFPP_FLOOD: u16 = 0xfffb;
pub const OFPP_ALL: u16 = 0xfffc;
pub const OFPP_CONTROLLER: u16 = 0xfffd;
pub const OFPP_LOCAL: u16 = 0xfffe;
pub const OFPP_NONE: u16 = 0xffff;

/// The 32-bit (OpenFlow 1.1+) spelling of the reserved ports.
pub const OFPP11_OFFSET: u32 = 0xffff_0000;
pub const OFPP11_CONTROLLER: u32 = OFPP11_OFFSET + OFPP_CONTROLLER as u32;
pub const OFPP11_IN_PORT: u32 = OFPP11_OFFSET + OFPP_IN_PORT as u32;

/// The reserved port names are the match parser's (`text::value::PORT_NAMES`; OVS prints
/// OFPP_NONE as ANY and reads NONE too).
use crate::openflow::text::value::PORT_NAMES as NAMES;

/// Name of a reserved 16-bit port (`IN_PORT`, `LOCAL`, ...), if it is one.
pub fn reserved_name(port: u16) -> Option<&'static str> {
    NAMES.iter().find(|(p, _)| *p == port).map(|(_, n)| *n)
}

/// OVS's text for a 16-bit port: a reserved name or the decimal number.
pub fn format_port16(port: u16) -> String {
    crate::openflow::text::format_port(port)
}

/// Maps an OpenFlow 1.1+ port number onto OVS's 16-bit space (like `ofputil_port_from_ofp11`):
/// numbers below 0xff00 are themselves, `0xffffff00..` are the reserved ports, others are
/// rejected with `OFPBAC_BAD_OUT_PORT`, as OVS does.
pub fn port_from_ofp11(port: u32, what: &'static str) -> Result<u16, DecodeError> {
    crate::openflow::text::value::port_from_ofp11(port).ok_or_else(|| {
        DecodeError::new(ErrorCode::BAD_ACTION_BAD_OUT_PORT, what, format!("port {port:#x} out of range"))
    })
}

/// The inverse of [`port_from_ofp11`].
pub use crate::openflow::text::value::port_to_ofp11;

/// Parses a port as `ofputil_port_from_string` does (no port-name map): a reserved name in any
/// case (`in_port`, `LOCAL`, `ANY` or `NONE` for OFPP_NONE), or a number below 0xff00, or a 32-bit
/// reserved number.
pub fn parse_port16(s: &str) -> Result<u16, TextError> {
    let s = s.trim();
    if let Some((p, _)) = NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)) {
        return Ok(*p);
    }
    if s.eq_ignore_ascii_case("NONE") {
        return Ok(OFPP_NONE);
    }
    // OVS reads port numbers in decimal only (`010` is 10, `0x10` is not a port).
    let n: u32 = parse_dec(s)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| TextError::new(s, "not a port number or name"))?;
    if n < OFPP_MAX as u32 {
        Ok(n as u16)
    } else if n >= OFPP11_OFFSET + OFPP_MAX as u32 {
        Ok((n - OFPP11_OFFSET) as u16)
    } else {
        Err(TextError::new(s, "port is outside the supported range"))
    }
}

/// Whether OVS accepts the port as an output port (`ofpact_check_output_port`).
pub fn is_valid_output(port: u16) -> bool {
    port < OFPP_MAX || (port >= OFPP_IN_PORT && port != OFPP_NONE)
}

/// Decimal or `0x` hex, like `str_to_u32`.
pub fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

pub fn parse_u16(s: &str) -> Option<u16> {
    parse_u64(s).and_then(|v| u16::try_from(v).ok())
}

pub fn parse_u8(s: &str) -> Option<u8> {
    parse_u64(s).and_then(|v| u8::try_from(v).ok())
}

/// Decimal digits only (leading zeros allowed), as OVS reads ports, table ids and
/// `dec_ttl` controller ids.
pub fn parse_dec(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decimal, `0x` hex or (leading 0) octal as `strtoull(..., 0)` reads it; OVS reads most
/// action arguments this way (`group:010` is group 8).
pub fn parse_u64(s: &str) -> Option<u64> {
    crate::openflow::text::parse_number(s.trim()).ok().and_then(|v| u64::try_from(v).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port16("in_port").unwrap(), OFPP_IN_PORT);
        assert_eq!(parse_port16("LOCAL").unwrap(), OFPP_LOCAL);
        assert_eq!(parse_port16("65279").unwrap(), 65279);
        assert!(parse_port16("65280").is_err());
        assert_eq!(parse_port16("010").unwrap(), 10);
        assert!(parse_port16("0x10").is_err());
        assert_eq!(parse_u64("010"), Some(8));
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_port16("4294967294").unwrap(), OFPP_LOCAL);
        assert_eq!(format_port16(OFPP_CONTROLLER), "CONTROLLER");
        assert_eq!(format_port16(OFPP_NONE), "ANY");
        assert_eq!(parse_port16("none").unwrap(), OFPP_NONE);
        assert_eq!(port_from_ofp11(0xffff_fffd, "t").unwrap(), OFPP_CONTROLLER);
        assert!(port_from_ofp11(0xff00, "t").is_err());
        assert_eq!(port_to_ofp11(OFPP_LOCAL), 0xffff_fffe);
    }
}
