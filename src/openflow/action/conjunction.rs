//! NXAST_CONJUNCTION (subtype 34): `conjunction(id,k/n)`, one clause of a conjunctive match.
//!
//! Wire layout after the 10-byte NX header: clause (u8, 0-based), n_clauses (u8), id (u32);
//! 16 bytes in all. Text counts clauses from 1.

use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::fmt;

pub const NXAST_CONJUNCTION: u16 = 34;

/// NXBAC_BAD_CONJUNCTION: the Nicira error (NX1.2+ code 15, experimenter 0x2320) OVS answers a
/// bad conjunction with.
pub const BAD_CONJUNCTION: ErrorCode = ErrorCode::NX_BAD_ACTION_BAD_CONJUNCTION;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conjunction {
    pub id: u32,
    /// 0-based clause index (printed as `clause + 1`).
    pub clause: u8,
    /// Number of clauses, 2..=64.
    pub n_clauses: u8,
}

impl Conjunction {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(subtype: u16, r: &mut Reader<'_>) -> Result<Conjunction, DecodeError> {
        if subtype != NXAST_CONJUNCTION {
            return Err(
                r.error_code(ErrorCode::BAD_ACTION_BAD_EXP_TYPE, format!("subtype {subtype} is not conjunction"))
            );
        }
        let clause = r.u8()?;
        let n_clauses = r.u8()?;
        let id = r.u32()?;
        if !r.is_empty() {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_LEN, "NXAST_CONJUNCTION is 16 bytes"));
        }
        if !(2..=64).contains(&n_clauses) || clause >= n_clauses {
            return Err(r.error_code(BAD_CONJUNCTION, format!("clause {clause} of {n_clauses}")));
        }
        Ok(Conjunction { id, clause, n_clauses })
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20]);
        out.extend_from_slice(&NXAST_CONJUNCTION.to_be_bytes());
        out.push(self.clause);
        out.push(self.n_clauses);
        out.extend_from_slice(&self.id.to_be_bytes());
    }

    /// Parses what stands between the parentheses of `conjunction(...)`: `id,k/n`.
    pub fn parse(keyword: &str, args: &str) -> Result<Conjunction, TextError> {
        let syntax = || TextError::new(args, "\"conjunction\" syntax is \"conjunction(id,i/n)\"");
        if keyword != "conjunction" {
            return Err(TextError::new(keyword, "not a conjunction action"));
        }
        let (id, kn) = args.split_once(',').ok_or_else(syntax)?;
        let (k, n) = kn.split_once('/').ok_or_else(syntax)?;
        let id = parse_c_int(id.trim()).ok_or_else(syntax)?;
        let k: u8 = k.trim().parse().map_err(|_| syntax())?;
        let n: u8 = n.trim().parse().map_err(|_| syntax())?;
        if n < 2 {
            return Err(TextError::new(args, "number of clauses must be greater than 1"));
        }
        if n > 64 {
            return Err(TextError::new(args, "number of clauses must be at most 64"));
        }
        if k < 1 {
            return Err(TextError::new(args, "clause index must be positive"));
        }
        if k > n {
            return Err(TextError::new(args, "clause index must be less than or equal to number of clauses"));
        }
        Ok(Conjunction { id, clause: k - 1, n_clauses: n })
    }
}

/// `%i`: decimal, `0x` hex or leading-0 octal; negative values wrap as in C.
fn parse_c_int(s: &str) -> Option<u32> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

impl fmt::Display for Conjunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conjunction({},{}/{})", self.id, self.clause as u16 + 1, self.n_clauses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::nx_testutil::*;

    fn decode_nx(b: &[u8]) -> Result<Conjunction, DecodeError> {
        let (subtype, mut r) = nx_body(b)?;
        Conjunction::decode(subtype, &mut r)
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn conjunction_matches_ovs() {
        for flow in [
            "ip,actions=conjunction(1,2/3)",
            "ip,actions=conjunction(0x10,1/2)",
            "actions=conjunction(4294967295,64/64)",
            "actions=conjunction(0,1/2)",
        ] {
            check_against_ovs(
                flow,
                |a| Conjunction::parse("conjunction", a),
                decode_nx,
                |c, out| c.encode(out),
                "conjunction",
            );
        }
    }

    #[test]
    fn bad_ones_are_refused() {
        for bad in ["1,0/2", "1,3/2", "1,1/1", "1,1/65", "1", "x,1/2", "1,1/2x"] {
            assert!(Conjunction::parse("conjunction", bad).is_err(), "{bad}");
            assert!(crate::oracle::parse_flow(&format!("actions=conjunction({bad})")).is_err(), "OVS takes {bad}");
        }
        let b = [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 34, 2, 2, 0, 0, 0, 1];
        assert_eq!(decode_nx(&b).expect_err("must be refused").code, BAD_CONJUNCTION);
    }
}
