//! PLACEHOLDER (owned by the ct/nat/learn helper): NXAST_CT and NXAST_NAT.
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, TextError};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct {}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat {}

impl Ct {
    /// `r` holds the action's bytes after the 10-byte NX header (type, len, experimenter, subtype).
    pub fn decode(r: &mut Reader<'_>) -> Result<Ct, DecodeError> { Err(r.error("ct not written yet")) }
    /// Writes the whole action, header included.
    pub fn encode(&self, out: &mut Vec<u8>) { let _ = out; }
    /// Parses what stands between the parentheses of `ct(...)`.
    pub fn parse(args: &str) -> Result<Ct, TextError> { Err(TextError::new(args, "ct not written yet")) }
}
impl fmt::Display for Ct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("ct") }
}
impl Nat {
    pub fn decode(r: &mut Reader<'_>) -> Result<Nat, DecodeError> { Err(r.error("nat not written yet")) }
    pub fn encode(&self, out: &mut Vec<u8>) { let _ = out; }
    pub fn parse(args: &str) -> Result<Nat, TextError> { Err(TextError::new(args, "nat not written yet")) }
}
impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("nat") }
}
