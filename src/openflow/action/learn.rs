//! PLACEHOLDER (owned by the ct/nat/learn helper): NXAST_LEARN.
use crate::openflow::wire::Reader;
use crate::openflow::{DecodeError, TextError};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learn {}

impl Learn {
    pub fn decode(r: &mut Reader<'_>) -> Result<Learn, DecodeError> { Err(r.error("learn not written yet")) }
    pub fn encode(&self, out: &mut Vec<u8>) { let _ = out; }
    pub fn parse(args: &str) -> Result<Learn, TextError> { Err(TextError::new(args, "learn not written yet")) }
}
impl fmt::Display for Learn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("learn") }
}
