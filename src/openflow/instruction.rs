//! PLACEHOLDER (owned by the actions helper): OpenFlow 1.3 instructions.
use super::action::Action;
use super::wire::Reader;
use super::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    ApplyActions(Vec<Action>),
    GotoTable(u8),
}

impl Instruction {
    pub fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Instruction>, DecodeError> {
        Err(r.error("instructions not written yet"))
    }
    pub fn encode_list(list: &[Instruction], out: &mut Vec<u8>) { let _ = (list, out); }
}

/// OVS's text after `actions=` for a list of instructions.
pub fn format_instructions(list: &[Instruction]) -> String { format!("{list:?}") }
