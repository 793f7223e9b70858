//! NXAST_BUNDLE (subtype 12) and NXAST_BUNDLE_LOAD (subtype 13): pick one live member port by
//! hashing, then output to it (`bundle`) or store its number in a subfield (`bundle_load`).
//!
//! Wire layout after the 10-byte NX header: algorithm, fields, basis (u16 each), slave_type
//! (u32, always the NXM header of in_port), n_slaves, ofs_nbits (u16 each), dst (u32), 4 zero
//! bytes (32 bytes so far), then n_slaves u16 port numbers, padded to 8. OVS 3.1 prints the list
//! as `members:1,2` and accepts `slaves:` as the old spelling.

use super::multipath::HashFields;
use super::nx_field::{
    checked_subfield, field_from_word, format_value, nxm_word, parse_nx_subfield, parse_value, put_field,
    unpack_ofs_nbits,
};
use super::value::ofs_nbits;
use crate::openflow::field::{Field, Subfield, Value};
use crate::openflow::wire::{pad_to_8, patch_u16, Reader};
use crate::openflow::{DecodeError, ErrorCode, TextError};
use std::fmt;

pub const NXAST_BUNDLE: u16 = 12;
pub const NXAST_BUNDLE_LOAD: u16 = 13;
/// OVS refuses more members than this.
pub const MAX_MEMBERS: usize = 2048;

/// How the member is chosen (`enum nx_bd_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleAlgorithm {
    /// The first live member.
    ActiveBackup,
    /// Highest random weight.
    Hrw,
}

impl BundleAlgorithm {
    pub fn from_wire(v: u16) -> Option<BundleAlgorithm> {
        match v {
            0 => Some(BundleAlgorithm::ActiveBackup),
            1 => Some(BundleAlgorithm::Hrw),
            _ => None,
        }
    }
    pub fn to_wire(self) -> u16 {
        match self {
            BundleAlgorithm::ActiveBackup => 0,
            BundleAlgorithm::Hrw => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BundleAlgorithm::ActiveBackup => "active_backup",
            BundleAlgorithm::Hrw => "hrw",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub algorithm: BundleAlgorithm,
    pub fields: HashFields,
    pub basis: u16,
    /// OpenFlow 1.0 (16-bit) port numbers.
    pub members: Vec<u16>,
    /// `Some` for `bundle_load` (NXAST_BUNDLE_LOAD): where the chosen port number goes.
    pub dst: Option<Subfield>,
}

fn port_text(p: u16) -> String {
    format_value(Field::IN_PORT, &Value::from_u128(p as u128, 2))
}

impl Bundle {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(subtype: u16, r: &mut Reader<'_>) -> Result<Bundle, DecodeError> {
        let load = match subtype {
            NXAST_BUNDLE => false,
            NXAST_BUNDLE_LOAD => true,
            _ => {
                return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_EXP_TYPE, format!("subtype {subtype} is not bundle")))
            }
        };
        let bad = |r: &Reader<'_>, m: String| r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, m);
        let algorithm = r.u16()?;
        let fields = r.u16()?;
        let basis = r.u16()?;
        let slave_type = r.u32()?;
        let n = r.u16()? as usize;
        let packed = r.u16()?;
        let dst_word = r.u32()?;
        let zero = r.u32()?;
        if r.remaining() < n * 2 {
            return Err(r.error_code(
                ErrorCode::BAD_ACTION_BAD_LEN,
                format!("room for {} members, {n} claimed", r.remaining() / 2),
            ));
        }
        let members = (0..n).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
        let fields = HashFields::from_wire(fields).ok_or_else(|| bad(r, format!("unsupported fields {fields}")))?;
        let algorithm =
            BundleAlgorithm::from_wire(algorithm).ok_or_else(|| bad(r, format!("unknown algorithm {algorithm}")))?;
        if n > MAX_MEMBERS {
            return Err(bad(r, format!("too many members ({n})")));
        }
        if Some(slave_type) != nxm_word(Field::IN_PORT) {
            return Err(bad(r, format!("unsupported member type {slave_type:#x}")));
        }
        if zero != 0 {
            return Err(bad(r, "non-zero reserved bytes".into()));
        }
        let dst = if load {
            let (ofs, n_bits) = unpack_ofs_nbits(packed);
            let field = field_from_word(dst_word).ok_or_else(|| {
                r.error_code(ErrorCode::BAD_ACTION_BAD_SET_TYPE, format!("unknown field header {dst_word:#010x}"))
            })?;
            let sf = checked_subfield(r, field, ofs, n_bits)?;
            if n_bits < 16 {
                return Err(bad(r, "destination field must be at least 16 bits".into()));
            }
            Some(sf)
        } else {
            if packed != 0 || dst_word != 0 {
                return Err(bad(r, "bundle with a destination".into()));
            }
            None
        };
        // Member ports are checked against the match, as OVS does (`check::check_actions`).
        Ok(Bundle { algorithm, fields, basis, members, dst })
    }

    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 0x23, 0x20]);
        let subtype = if self.dst.is_some() { NXAST_BUNDLE_LOAD } else { NXAST_BUNDLE };
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&self.algorithm.to_wire().to_be_bytes());
        out.extend_from_slice(&self.fields.to_wire().to_be_bytes());
        out.extend_from_slice(&self.basis.to_be_bytes());
        put_field(out, Field::IN_PORT);
        out.extend_from_slice(&(self.members.len() as u16).to_be_bytes());
        match &self.dst {
            Some(sf) => {
                out.extend_from_slice(&ofs_nbits(sf).to_be_bytes());
                put_field(out, sf.field);
            }
            None => out.extend_from_slice(&[0; 6]),
        }
        out.extend_from_slice(&[0; 4]);
        for p in &self.members {
            out.extend_from_slice(&p.to_be_bytes());
        }
        pad_to_8(out, start);
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }

    /// Parses what stands between the parentheses of `bundle(...)` / `bundle_load(...)`:
    /// `fields,basis,algorithm,ofport,[dst,]members:P,P...`.
    pub fn parse(keyword: &str, args: &str) -> Result<Bundle, TextError> {
        let load = match keyword {
            "bundle" => false,
            "bundle_load" => true,
            _ => return Err(TextError::new(keyword, "not a bundle action")),
        };
        let (head, ports) =
            args.split_once(':').ok_or_else(|| TextError::new(args, "missing member delimiter, expected `members'"))?;
        let mut parts: Vec<&str> = head.split(',').map(str::trim).collect();
        let delim = parts.pop().unwrap_or("");
        if delim != "members" && delim != "slaves" {
            return Err(TextError::new(delim, "missing member delimiter, expected `members'"));
        }
        let want = if load { 5 } else { 4 };
        if parts.len() != want {
            return Err(TextError::new(args, format!("{keyword} takes {want} arguments before members:")));
        }
        let fields = HashFields::from_name(parts[0]).ok_or_else(|| TextError::new(parts[0], "unknown fields"))?;
        let basis: u16 = parts[1].parse().map_err(|_| TextError::new(parts[1], "bad basis"))?;
        let algorithm = match parts[2] {
            "active_backup" => BundleAlgorithm::ActiveBackup,
            "hrw" => BundleAlgorithm::Hrw,
            other => return Err(TextError::new(other, "unknown algorithm")),
        };
        if parts[3] != "ofport" {
            return Err(TextError::new(parts[3], "unknown member_type"));
        }
        let dst = if load {
            let sf = parse_nx_subfield(parts[4])?;
            if sf.n_bits < 16 {
                return Err(TextError::new(parts[4], "destination field must be at least 16 bits"));
            }
            Some(sf)
        } else {
            None
        };
        let mut members = Vec::new();
        for p in ports.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            // Member ports are checked against the match, as OVS does (`check::check_actions`).
            members.push(parse_value(Field::IN_PORT, p)?.to_u128() as u16);
        }
        if members.len() > MAX_MEMBERS {
            return Err(TextError::new(ports, "too many members"));
        }
        Ok(Bundle { algorithm, fields, basis, members, dst })
    }
}

impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kw = if self.dst.is_some() { "bundle_load" } else { "bundle" };
        write!(f, "{kw}({},{},{},ofport,", self.fields.name(), self.basis, self.algorithm.name())?;
        if let Some(sf) = &self.dst {
            write!(f, "{},", sf)?;
        }
        f.write_str("members:")?;
        let ports: Vec<String> = self.members.iter().map(|p| port_text(*p)).collect();
        write!(f, "{})", ports.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::nx_testutil::*;

    fn decode_nx(b: &[u8]) -> Result<Bundle, DecodeError> {
        let (subtype, mut r) = nx_body(b)?;
        Bundle::decode(subtype, &mut r)
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn bundle_matches_ovs() {
        for (kw, flow) in [
            ("bundle", "actions=bundle(eth_src,0,active_backup,ofport,members:1,2)"),
            ("bundle", "ip,actions=bundle(eth_src,0,hrw,ofport,slaves:1,2)"),
            ("bundle", "ip,actions=bundle(eth_src,50,active_backup,ofport,members:)"),
            ("bundle", "ip,actions=bundle(symmetric_l3l4+udp,7,hrw,ofport,members:1,2,3,4,5,LOCAL)"),
            ("bundle_load", "ip,actions=bundle_load(symmetric_l4,60,hrw,ofport,NXM_NX_REG0[],members:1,2,3)"),
            ("bundle_load", "ip,actions=bundle_load(nw_src,0,active_backup,ofport,reg1[0..15],members:10)"),
        ] {
            check_against_ovs(flow, |a| Bundle::parse(kw, a), decode_nx, |b, out| b.encode(out), kw);
        }
    }

    #[test]
    fn bad_ones_are_refused() {
        for (kw, bad) in [
            ("bundle", "eth_src,0,hrw,ofport,1,2"),
            ("bundle", "eth_src,0,hrw,port,members:1"),
            ("bundle", "eth_src,0,nope,ofport,members:1"),
            ("bundle_load", "eth_src,0,hrw,ofport,reg0[0..7],members:1"),
            ("bundle_load", "eth_src,0,hrw,ofport,members:1"),
        ] {
            assert!(Bundle::parse(kw, bad).is_err(), "{bad}");
        }
        let mut b = Vec::new();
        Bundle::parse("bundle", "eth_src,0,hrw,ofport,members:1,2").expect("test input is valid").encode(&mut b);
        let mut c = b.clone();
        c[21] = 9; // n_slaves beyond the bytes
        assert!(decode_nx(&c).is_err());
        let mut c = b.clone();
        c[19] = 4; // slave_type not in_port
        assert!(decode_nx(&c).is_err());
    }
}
