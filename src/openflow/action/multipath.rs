//! NXAST_MULTIPATH (subtype 10): hash some packet fields and pick one of `n_links` links,
//! storing the link number in a subfield: `multipath(fields,basis,algorithm,n_links,arg,dst)`.
//!
//! Wire layout after the 10-byte NX header: fields, basis, pad, algorithm, max_link (n_links - 1)
//! (u16 each), arg (u32), pad (u16), ofs_nbits (u16), dst (u32 NXM header): 32 bytes in all.

use super::nx_field::{checked_subfield, parse_nx_subfield, put_field, read_field, unpack_ofs_nbits};
use super::value::ofs_nbits;
use crate::openflow::field::Subfield;
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::fmt;

pub const NXAST_MULTIPATH: u16 = 10;

/// Which packet fields are hashed (`enum nx_hash_fields`); shared with `bundle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFields {
    EthSrc,
    SymmetricL4,
    SymmetricL3L4,
    SymmetricL3L4Udp,
    NwSrc,
    NwDst,
    SymmetricL3,
}

impl HashFields {
    const ALL: [(HashFields, u16, &'static str); 7] = [
        (HashFields::EthSrc, 0, "eth_src"),
        (HashFields::SymmetricL4, 1, "symmetric_l4"),
        (HashFields::SymmetricL3L4, 2, "symmetric_l3l4"),
        (HashFields::SymmetricL3L4Udp, 3, "symmetric_l3l4+udp"),
        (HashFields::NwSrc, 4, "nw_src"),
        (HashFields::NwDst, 5, "nw_dst"),
        (HashFields::SymmetricL3, 6, "symmetric_l3"),
    ];
    /// `None` for values OVS refuses (OFPBAC_BAD_ARGUMENT).
    pub fn from_wire(v: u16) -> Option<HashFields> {
        Self::ALL.iter().find(|e| e.1 == v).map(|e| e.0)
    }
    pub fn to_wire(self) -> u16 {
        Self::ALL.iter().find(|e| e.0 == self).map_or(0, |e| e.1)
    }
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.2)
    }
    pub fn from_name(s: &str) -> Option<HashFields> {
        Self::ALL.iter().find(|e| e.2 == s).map(|e| e.0)
    }
}

/// How a hash becomes a link number (`enum nx_mp_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpAlgorithm {
    ModuloN,
    HashThreshold,
    Hrw,
    IterHash,
}

impl MpAlgorithm {
    const ALL: [(MpAlgorithm, &'static str); 4] = [
        (MpAlgorithm::ModuloN, "modulo_n"),
        (MpAlgorithm::HashThreshold, "hash_threshold"),
        (MpAlgorithm::Hrw, "hrw"),
        (MpAlgorithm::IterHash, "iter_hash"),
    ];
    pub fn from_wire(v: u16) -> Option<MpAlgorithm> {
        Self::ALL.get(v as usize).map(|e| e.0)
    }
    pub fn to_wire(self) -> u16 {
        Self::ALL.iter().position(|e| e.0 == self).unwrap_or(0) as u16
    }
    pub fn name(self) -> &'static str {
        Self::ALL[self.to_wire() as usize].1
    }
    pub fn from_name(s: &str) -> Option<MpAlgorithm> {
        Self::ALL.iter().find(|e| e.1 == s).map(|e| e.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipath {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: MpAlgorithm,
    /// Number of links minus one, as on the wire.
    pub max_link: u16,
    /// Algorithm argument (iter_hash: the number of iterations).
    pub arg: u32,
    pub dst: Subfield,
}

impl Multipath {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(subtype: u16, r: &mut Reader<'_>) -> Result<Multipath, DecodeError> {
        if subtype != NXAST_MULTIPATH {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_EXP_TYPE, format!("subtype {subtype} is not multipath")));
        }
        let bad = |r: &Reader<'_>, m: String| r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, m);
        let fields = r.u16()?;
        let basis = r.u16()?;
        r.skip(2)?;
        let algorithm = r.u16()?;
        let max_link = r.u16()?;
        let arg = r.u32()?;
        r.skip(2)?;
        let (ofs, n_bits) = unpack_ofs_nbits(r.u16()?);
        let field = read_field(r)?;
        if !r.is_empty() {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_LEN, "NXAST_MULTIPATH is 32 bytes"));
        }
        let fields = HashFields::from_wire(fields).ok_or_else(|| bad(r, format!("unsupported fields {fields}")))?;
        let algorithm =
            MpAlgorithm::from_wire(algorithm).ok_or_else(|| bad(r, format!("unknown algorithm {algorithm}")))?;
        let dst = checked_subfield(r, field, ofs, n_bits)?;
        if n_bits < 16 && (max_link as u32) >> n_bits != 0 {
            return Err(bad(r, format!("{n_bits}-bit destination cannot hold link {max_link}")));
        }
        Ok(Multipath { fields, basis, algorithm, max_link, arg, dst })
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xff, 0xff, 0, 32, 0, 0, 0x23, 0x20]);
        out.extend_from_slice(&NXAST_MULTIPATH.to_be_bytes());
        out.extend_from_slice(&self.fields.to_wire().to_be_bytes());
        out.extend_from_slice(&self.basis.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.algorithm.to_wire().to_be_bytes());
        out.extend_from_slice(&self.max_link.to_be_bytes());
        out.extend_from_slice(&self.arg.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&ofs_nbits(&self.dst).to_be_bytes());
        put_field(out, self.dst.field);
    }

    /// Parses what stands between the parentheses of `multipath(...)`; `keyword` is the word before them.
    pub fn parse(keyword: &str, args: &str) -> Result<Multipath, TextError> {
        if keyword != "multipath" {
            return Err(TextError::new(keyword, "not a multipath action"));
        }
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        if parts.len() != 6 {
            return Err(TextError::new(args, "multipath takes 6 arguments: fields,basis,algorithm,n_links,arg,dst"));
        }
        let fields = HashFields::from_name(parts[0]).ok_or_else(|| TextError::new(parts[0], "unknown fields"))?;
        let basis = parse_num(parts[1])? as u16;
        let algorithm =
            MpAlgorithm::from_name(parts[2]).ok_or_else(|| TextError::new(parts[2], "unknown algorithm"))?;
        let n_links = parse_num(parts[3])?;
        if !(1..=65536).contains(&n_links) {
            return Err(TextError::new(parts[3], format!("n_links {n_links} is not in valid range 1 to 65536")));
        }
        let arg = parse_num(parts[4])? as u32;
        let dst = parse_nx_subfield(parts[5])?;
        if dst.n_bits < 16 && (n_links - 1) >> dst.n_bits != 0 {
            return Err(TextError::new(
                parts[5],
                format!(
                    "{}-bit destination field has {} possible values, less than specified n_links {n_links}",
                    dst.n_bits,
                    1u32 << dst.n_bits
                ),
            ));
        }
        Ok(Multipath { fields, basis, algorithm, max_link: (n_links - 1) as u16, arg, dst })
    }
}

/// C `atoi`-like but strict: a decimal number (OVS reads these with `atoi`).
fn parse_num(s: &str) -> Result<i64, TextError> {
    s.trim().parse::<i64>().map_err(|_| TextError::new(s, "expected a number"))
}

impl fmt::Display for Multipath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "multipath({},{},{},{},{},{})",
            self.fields.name(),
            self.basis,
            self.algorithm.name(),
            self.max_link as u32 + 1,
            self.arg,
            self.dst
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::nx_testutil::*;

    fn decode_nx(b: &[u8]) -> Result<Multipath, DecodeError> {
        let (subtype, mut r) = nx_body(b)?;
        Multipath::decode(subtype, &mut r)
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn multipath_matches_ovs() {
        for flow in [
            "ip,actions=multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG0[0..15])",
            "ip,actions=multipath(eth_src,50,modulo_n,1,0,reg1[])",
            "ip,actions=multipath(symmetric_l4,1,iter_hash,256,100,NXM_NX_REG0[0..15])",
            "ip,actions=multipath(symmetric_l3l4,65535,hash_threshold,65536,4294967295,xreg1[0..15])",
            "ip,actions=multipath(nw_src,0,hrw,4,0,reg2[2..3])",
            "ip,actions=multipath(nw_dst,0,hrw,2,0,eth_src[0..7])",
            "ip,actions=multipath(symmetric_l3,7,modulo_n,3,0,NXM_NX_REG3[4..5])",
        ] {
            check_against_ovs(
                flow,
                |a| Multipath::parse("multipath", a),
                decode_nx,
                |m, out| m.encode(out),
                "multipath",
            );
        }
    }

    #[test]
    fn bad_ones_are_refused() {
        for bad in [
            "eth_src,0,hrw,5,0,reg0[0..1]",
            "bogus,0,hrw,2,0,reg0[]",
            "eth_src,0,nope,2,0,reg0[]",
            "eth_src,0,hrw,0,0,reg0[]",
            "eth_src,0,hrw,2,0",
        ] {
            assert!(Multipath::parse("multipath", bad).is_err(), "{bad}");
        }
        let mut b = Vec::new();
        Multipath::parse("multipath", "eth_src,0,hrw,2,0,reg0[]").expect("test input is valid").encode(&mut b);
        b[11] = 9; // fields
        assert!(decode_nx(&b).is_err());
    }
}
