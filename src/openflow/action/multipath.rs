//! PLACEHOLDER (owned by the ct/nat/learn helper): NXAST for `multipath`.
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, TextError};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipath {}

impl Multipath {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(subtype: u16, r: &mut Reader<'_>) -> Result<Multipath, DecodeError> { let _ = subtype; Err(r.error("multipath not written yet")) }
    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) { let _ = out; }
    /// Parses what stands between the parentheses of `multipath(...)`; `keyword` is the word before them.
    pub fn parse(keyword: &str, args: &str) -> Result<Multipath, TextError> { let _ = keyword; Err(TextError::new(args, "multipath not written yet")) }
}
impl fmt::Display for Multipath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("multipath") }
}
