//! PLACEHOLDER (owned by the ct/nat/learn helper): NXAST for `conjunction`.
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, TextError};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conjunction {}

impl Conjunction {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(subtype: u16, r: &mut Reader<'_>) -> Result<Conjunction, DecodeError> { let _ = subtype; Err(r.error("conjunction not written yet")) }
    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) { let _ = out; }
    /// Parses what stands between the parentheses of `conjunction(...)`; `keyword` is the word before them.
    pub fn parse(keyword: &str, args: &str) -> Result<Conjunction, TextError> { let _ = keyword; Err(TextError::new(args, "conjunction not written yet")) }
}
impl fmt::Display for Conjunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("conjunction") }
}
