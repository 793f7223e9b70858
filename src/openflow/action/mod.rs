//! PLACEHOLDER (owned by the actions helper): OpenFlow and Nicira actions.
pub mod ct;
pub mod bundle;
pub mod conjunction;
pub mod learn;
pub mod multipath;

use super::wire::Reader;
use super::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Output { port: u32, max_len: u16 },
    Ct(ct::Ct),
    Nat(ct::Nat),
    Learn(learn::Learn),
}

impl Action {
    /// Reads every action in `r`.
    pub fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Action>, DecodeError> {
        Err(r.error("actions not written yet"))
    }
    pub fn encode_list(actions: &[Action], out: &mut Vec<u8>) {
        let _ = (actions, out);
    }
}

/// OVS's text for a list of actions (`drop` when empty).
pub fn format_actions(actions: &[Action]) -> String {
    if actions.is_empty() { "drop".into() } else { format!("{actions:?}") }
}
