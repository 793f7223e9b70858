//! OpenFlow 1.3 instructions: bytes both ways and the text OVS prints after `actions=`.
//!
//! OVS folds instructions and actions into one text list (`meter:1,output:2,clear_actions,
//! write_actions(output:3),write_metadata:0x1/0xff,goto_table:5`): apply-actions are the bare
//! actions, the rest are keywords. It requires (and prints) the order meter, apply_actions,
//! clear_actions, write_actions, write_metadata, goto_table.

use std::fmt;

use super::action::{self, Action, ParseContext};
use super::wire::{pad_to_8, patch_u16, Reader};
use super::{DecodeError, ErrorCode, TextError};

pub const OFPIT_GOTO_TABLE: u16 = 1;
pub const OFPIT_WRITE_METADATA: u16 = 2;
pub const OFPIT_WRITE_ACTIONS: u16 = 3;
pub const OFPIT_APPLY_ACTIONS: u16 = 4;
pub const OFPIT_CLEAR_ACTIONS: u16 = 5;
pub const OFPIT_METER: u16 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    ApplyActions(Vec<Action>),
    WriteActions(Vec<Action>),
    ClearActions,
    GotoTable(u8),
    WriteMetadata {
        metadata: u64,
        mask: u64,
    },
    Meter(u32),
    /// An instruction type we do not know, kept whole (header included).
    Unknown {
        bytes: Vec<u8>,
    },
}

impl Instruction {
    /// Position in OVS's required order (unknown ones last).
    fn rank(&self) -> u8 {
        match self {
            Instruction::Meter(_) => 0,
            Instruction::ApplyActions(_) => 1,
            Instruction::ClearActions => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::WriteMetadata { .. } => 4,
            Instruction::GotoTable(_) => 5,
            Instruction::Unknown { .. } => 6,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Instruction::Meter(_) => "meter",
            Instruction::ApplyActions(_) => "apply_actions",
            Instruction::ClearActions => "clear_actions",
            Instruction::WriteActions(_) => "write_actions",
            Instruction::WriteMetadata { .. } => "write_metadata",
            Instruction::GotoTable(_) => "goto_table",
            Instruction::Unknown { .. } => "unknown instruction",
        }
    }

    /// Reads every instruction in `r` (all of its bytes). Lengths are checked
    /// (`OFPBIC_BAD_LEN`); the actions inside apply/write-actions are decoded with
    /// [`Action::decode_list`].
    pub fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Instruction>, DecodeError> {
        let mut out = Vec::new();
        while !r.is_empty() {
            let bad = |r: &Reader<'_>, d: String| r.error_code(ErrorCode::BAD_INSTRUCTION_BAD_LEN, d);
            if r.remaining() < 8 {
                return Err(bad(r, format!("{} trailing bytes", r.remaining())));
            }
            let len = r.peek_u16(2)? as usize;
            if len < 8 || len % 8 != 0 || len > r.remaining() {
                return Err(bad(r, format!("instruction length {len} with {} bytes left", r.remaining())));
            }
            let bytes = r.bytes(len)?;
            let mut ir = Reader::new(bytes, "ofp_instruction", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
            let itype = ir.u16()?;
            ir.skip(2)?;
            let fixed = |ir: &Reader<'_>, want: usize| {
                if len == want {
                    Ok(())
                } else {
                    Err(bad(ir, format!("instruction type {itype} length {len}, expected {want}")))
                }
            };
            let ins = match itype {
                OFPIT_GOTO_TABLE => {
                    fixed(&ir, 8)?;
                    // OVS accepts any table here; "later than this table" is the flow's check.
                    Instruction::GotoTable(ir.u8()?)
                }
                OFPIT_WRITE_METADATA => {
                    fixed(&ir, 24)?;
                    ir.skip(4)?;
                    let metadata = ir.u64()?;
                    let mask = ir.u64()?;
                    Instruction::WriteMetadata { metadata, mask }
                }
                OFPIT_WRITE_ACTIONS | OFPIT_APPLY_ACTIONS => {
                    ir.skip(4)?;
                    let mut ar = ir.context("ofp_action", ErrorCode::BAD_ACTION_BAD_LEN);
                    let actions = Action::decode_list(&mut ar)?;
                    if itype == OFPIT_WRITE_ACTIONS {
                        if let Some(a) = actions.iter().find(|a| !a.allowed_in_action_set()) {
                            return Err(ir.error_code(
                                ErrorCode::BAD_ACTION_BAD_TYPE,
                                format!("disallowed action in action set: {a}"),
                            ));
                        }
                    }
                    if itype == OFPIT_APPLY_ACTIONS {
                        Instruction::ApplyActions(actions)
                    } else {
                        Instruction::WriteActions(actions)
                    }
                }
                OFPIT_CLEAR_ACTIONS => {
                    fixed(&ir, 8)?;
                    Instruction::ClearActions
                }
                OFPIT_METER => {
                    fixed(&ir, 8)?;
                    let m = ir.u32()?;
                    if !valid_meter(m) {
                        return Err(ir.error_code(ErrorCode::METER_MOD_FAILED_INVALID_METER, format!("meter {m}")));
                    }
                    Instruction::Meter(m)
                }
                _ => Instruction::Unknown { bytes: bytes.to_vec() },
            };
            out.push(ins);
        }
        Ok(out)
    }

    /// Writes every instruction in the order given.
    pub fn encode_list(list: &[Instruction], out: &mut Vec<u8>) {
        for i in list {
            i.encode(out);
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let put_head = |out: &mut Vec<u8>, t: u16| {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        };
        match self {
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => {
                let t = if matches!(self, Instruction::ApplyActions(_)) {
                    OFPIT_APPLY_ACTIONS
                } else {
                    OFPIT_WRITE_ACTIONS
                };
                put_head(out, t);
                out.extend_from_slice(&[0; 4]);
                Action::encode_list(a, out);
            }
            Instruction::ClearActions => {
                put_head(out, OFPIT_CLEAR_ACTIONS);
                out.extend_from_slice(&[0; 4]);
            }
            Instruction::GotoTable(t) => {
                put_head(out, OFPIT_GOTO_TABLE);
                out.extend_from_slice(&[*t, 0, 0, 0]);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                put_head(out, OFPIT_WRITE_METADATA);
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&metadata.to_be_bytes());
                out.extend_from_slice(&mask.to_be_bytes());
            }
            Instruction::Meter(m) => {
                put_head(out, OFPIT_METER);
                out.extend_from_slice(&m.to_be_bytes());
            }
            Instruction::Unknown { bytes } => {
                out.extend_from_slice(bytes);
                return;
            }
        }
        pad_to_8(out, start);
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }
}

/// Meter ids a flow may use: 1 up to OFPM13_MAX (OVS answers OFPMMFC_INVALID_METER otherwise,
/// the reserved slowpath/controller/all meters included).
fn valid_meter(m: u32) -> bool {
    (1..=0xffff_0000).contains(&m)
}

/// `%#x` as C prints it: `0` for zero.
fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::ApplyActions(a) => f.write_str(&action::format_actions(a)),
            Instruction::WriteActions(a) => write!(f, "write_actions({})", action::format_actions(a)),
            Instruction::ClearActions => f.write_str("clear_actions"),
            Instruction::GotoTable(t) => write!(f, "goto_table:{t}"),
            Instruction::WriteMetadata { metadata, mask } => {
                write!(f, "write_metadata:{}", c_hex(*metadata))?;
                if *mask != u64::MAX {
                    write!(f, "/{}", c_hex(*mask))?;
                }
                Ok(())
            }
            Instruction::Meter(m) => write!(f, "meter:{m}"),
            Instruction::Unknown { bytes } => write!(f, "unknown_instruction({})", super::wire::to_hex(bytes)),
        }
    }
}

/// What OVS prints after `actions=`: the instructions in OVS's order, apply-actions as bare
/// actions, `drop` when there is nothing to do.
pub fn format_instructions(list: &[Instruction]) -> String {
    let mut sorted: Vec<&Instruction> =
        list.iter().filter(|i| !matches!(i, Instruction::ApplyActions(a) if a.is_empty())).collect();
    sorted.sort_by_key(|i| i.rank());
    if sorted.is_empty() {
        return "drop".into();
    }
    sorted.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Appends a parsed instruction, enforcing OVS's order and closing the pending apply-actions.
fn push(
    out: &mut Vec<Instruction>,
    last_rank: &mut u8,
    ins: Instruction,
    apply: &mut Vec<Action>,
) -> Result<(), TextError> {
    let rank = ins.rank();
    if let Some(prev) = out.iter().find(|i| i.rank() == rank) {
        return Err(TextError::new(prev.name(), "duplicate instruction"));
    }
    if rank < *last_rank {
        return Err(TextError::new(
            ins.name(),
            "invalid instruction ordering: for OpenFlow 1.1+ compatibility the order is meter, \
             apply_actions, clear_actions, write_actions, write_metadata, goto_table",
        ));
    }
    *last_rank = rank;
    if rank > 1 && !apply.is_empty() {
        // Apply-actions end where the first later instruction starts.
        out.push(Instruction::ApplyActions(std::mem::take(apply)));
    }
    out.push(ins);
    Ok(())
}

/// Parses the text after `actions=` with no knowledge of the match; see [`parse_instructions_in`].
pub fn parse_instructions(s: &str) -> Result<Vec<Instruction>, TextError> {
    parse_instructions_in(s, &ParseContext::default())
}

/// Parses the text after `actions=` into instructions in the order OVS encodes them (meter,
/// apply_actions, clear_actions, write_actions, write_metadata, goto_table). Like OVS, a
/// keyword out of that order or given twice is an error, and `drop` stands alone.
pub fn parse_instructions_in(s: &str, ctx: &ParseContext) -> Result<Vec<Instruction>, TextError> {
    let mut out: Vec<Instruction> = Vec::new();
    let mut apply: Vec<Action> = Vec::new();
    let mut saw_drop = false;
    let mut last_rank = 0u8;
    for item in action::split_top_level(s) {
        let (key, arg) = action::text::split_key_value(item)?;
        let arg = arg.trim();
        match key.to_ascii_lowercase().as_str() {
            "drop" => saw_drop = true,
            "meter" => {
                let m = action::port::parse_u32(arg)
                    .filter(|m| valid_meter(*m))
                    .ok_or_else(|| TextError::new(arg, "invalid meter id (OFPMMFC_INVALID_METER)"))?;
                push(&mut out, &mut last_rank, Instruction::Meter(m), &mut apply)?;
            }
            "clear_actions" => push(&mut out, &mut last_rank, Instruction::ClearActions, &mut apply)?,
            "write_actions" => {
                let acts = action::parse_actions_in(arg, ctx)?;
                if let Some(a) = acts.iter().find(|a| !a.allowed_in_action_set()) {
                    return Err(TextError::new(a.to_string(), "disallowed action in action set (OFPBAC_BAD_TYPE)"));
                }
                if !acts.is_empty() {
                    push(&mut out, &mut last_rank, Instruction::WriteActions(acts), &mut apply)?;
                } else {
                    last_rank = last_rank.max(3);
                }
            }
            "write_metadata" => {
                let (v, m) = match arg.split_once('/') {
                    Some((v, m)) => (v, Some(m)),
                    None => (arg, None),
                };
                let metadata = action::port::parse_u64(v).ok_or_else(|| TextError::new(v, "invalid metadata"))?;
                let mask = match m {
                    Some(m) => action::port::parse_u64(m).ok_or_else(|| TextError::new(m, "invalid metadata mask"))?,
                    None => u64::MAX,
                };
                push(&mut out, &mut last_rank, Instruction::WriteMetadata { metadata, mask }, &mut apply)?;
            }
            "goto_table" => {
                // Decimal, as OVS reads table ids (`goto_table:010` is table 10).
                let t = action::port::parse_dec(arg)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| TextError::new(arg, "invalid table id"))?;
                push(&mut out, &mut last_rank, Instruction::GotoTable(t), &mut apply)?;
            }
            "apply_actions" => return Err(TextError::new(item, "apply_actions is the default instruction")),
            _ => {
                if last_rank > 1 {
                    return Err(TextError::new(
                        item,
                        "invalid instruction ordering: apply_actions must appear before other instructions",
                    ));
                }
                let acts = action::parse_actions_in(item, ctx)?;
                apply.extend(acts);
                last_rank = 1;
            }
        }
    }
    if !apply.is_empty() {
        out.push(Instruction::ApplyActions(apply));
    }
    if saw_drop && !out.is_empty() {
        return Err(TextError::new(s, "\"drop\" must not be accompanied by any other action or instruction"));
    }
    out.sort_by_key(|i| i.rank());
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Vec<Instruction>, DecodeError> {
        Instruction::decode_list(&mut Reader::new(bytes, "instructions", ErrorCode::BAD_INSTRUCTION_BAD_LEN))
    }

    #[test]
    fn wire_order_is_kept_but_text_is_canonical() {
        // goto_table:5 then meter:1 on the wire (OVS sorts them when it decodes).
        let bytes = [0, 1, 0, 8, 5, 0, 0, 0, 0, 6, 0, 8, 0, 0, 0, 1];
        let list = decode(&bytes).unwrap();
        assert_eq!(list, vec![Instruction::GotoTable(5), Instruction::Meter(1)]);
        assert_eq!(format_instructions(&list), "meter:1,goto_table:5");
        let mut out = vec![0xa5; 2];
        Instruction::encode_list(&list, &mut out);
        assert_eq!(&out[2..], &bytes[..]);
    }

    #[test]
    fn bad_lengths_and_unknown_types() {
        assert_eq!(decode(&[0, 1, 0, 16, 5, 0, 0, 0]).unwrap_err().code, ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        assert_eq!(decode(&[0, 1, 0, 4, 5, 0, 0, 0]).unwrap_err().code, ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        assert_eq!(decode(&[0, 2, 0, 8, 0, 0, 0, 0]).unwrap_err().code, ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        // An action inside apply_actions with a bad length is an action error.
        let e = decode(&[0, 4, 0, 16, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_ACTION_BAD_LEN);
        // NXAST_EXIT inside write_actions: OVS refuses it in an action set.
        let bytes = [0, 3, 0, 24, 0, 0, 0, 0, 0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 17, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&bytes).unwrap_err().code, ErrorCode::BAD_ACTION_BAD_TYPE);
        // Experimenter instruction: kept whole.
        let exp = [0xff, 0xff, 0, 8, 0, 0, 0x23, 0x20];
        let list = decode(&exp).unwrap();
        assert!(matches!(&list[0], Instruction::Unknown { bytes } if bytes[..] == exp[..]));
        let mut out = Vec::new();
        Instruction::encode_list(&list, &mut out);
        assert_eq!(out, exp);
    }

    #[test]
    fn text() {
        let list = parse_instructions(
            "meter:1,output:2,clear_actions,write_actions(output:3),write_metadata:0x1/0xff,goto_table:5",
        )
        .unwrap();
        assert_eq!(list.len(), 6);
        assert_eq!(
            format_instructions(&list),
            "meter:1,output:2,clear_actions,write_actions(output:3),write_metadata:0x1/0xff,goto_table:5"
        );
        assert!(parse_instructions("drop").unwrap().is_empty());
        assert_eq!(format_instructions(&[]), "drop");
        assert_eq!(format_instructions(&[Instruction::ApplyActions(vec![])]), "drop");
        assert_eq!(
            format_instructions(&[Instruction::WriteMetadata { metadata: 0, mask: 0xff00 }]),
            "write_metadata:0/0xff00"
        );
        assert!(parse_instructions("goto_table:256").is_err());
        assert!(parse_instructions("meter:1,meter:2").is_err());
        assert!(parse_instructions("meter:0").is_err());
        assert_eq!(decode(&[0, 6, 0, 8, 0, 0, 0, 0]).unwrap_err().code, ErrorCode::METER_MOD_FAILED_INVALID_METER);
        assert!(parse_instructions("clear_actions,meter:1").is_err());
        assert!(parse_instructions("output:1,drop").is_err());
        assert!(parse_instructions("write_actions(note:01)").is_err());
        assert!(parse_instructions("write_actions(controller(reason=no_match))").is_err());
        assert!(parse_instructions("write_actions(resubmit(,2),ct_clear,CONTROLLER:100)").is_ok());
    }
}
