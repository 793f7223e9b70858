//! PLACEHOLDER (owned by the match helper): the OXM `ofp_match` of OpenFlow 1.3.
use super::field::{Field, Value};
use super::wire::Reader;
use super::DecodeError;

/// One matched field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchEntry {
    pub field: Field,
    pub value: Value,
    pub mask: Option<Value>,
}

/// An OpenFlow 1.3 match (`ofp_match` of type OXM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub entries: Vec<MatchEntry>,
}

impl Match {
    /// Reads an `ofp_match` (header, OXM TLVs, padding to 8).
    pub fn decode(r: &mut Reader<'_>) -> Result<Match, DecodeError> {
        Err(r.error("ofp_match decoding not written yet"))
    }
    /// Writes an `ofp_match` with its padding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 1, 0, 4, 0, 0, 0, 0]);
    }
}
