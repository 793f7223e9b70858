//! The answer to "could hardware run this flow?": [`Verdict`], with every [`Reason`] against.
//!
//! A reason's `Display` is the text the CLI prints after `not offloadable: ` (reasons joined by
//! `; `), so it is short, lower case and names the field or action concerned.

use super::requirement::{CtFlag, MaskKind, MatchField};
use serde::Serialize;
use std::fmt;

/// Why a flow cannot go to hardware under a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// An action that sends the packet up to ovs-vswitchd (`controller`): every packet it
    /// matches takes the slow path.
    SlowPath { action: String },
    /// An action only ovs-vswitchd can carry out (`learn`, `fin_timeout`).
    UserspaceOnly { action: String },
    /// An action the profile's datapath cannot express.
    ActionUnsupported { action: String },
    /// A field the profile cannot match on.
    FieldNotMatchable { field: MatchField },
    /// A field matched with a mask the profile cannot express.
    MaskUnsupported { field: MatchField, mask: MaskKind, allowed: MaskKind },
    /// A `ct_state` flag the profile cannot match, set (`+new`) or clear (`-new`).
    CtStateFlag { flag: CtFlag, set: bool },
    /// A header rewrite the profile cannot do (or not with a partial mask).
    RewriteUnsupported { field: MatchField, masked: bool },
    /// A part of `ct(...)` the profile cannot do (`nat`, `alg`, `force`, ...).
    CtFeature { feature: String },
    /// A conntrack zone above what the profile can hold.
    CtZoneTooHigh { zone: u16, max: u16 },
    /// More recirculations than the profile allows.
    TooManyRecirculations { count: u32, max: u32 },
    /// More datapath actions than one hardware rule can hold.
    TooManyActions { count: usize, max: usize },
    /// The packet goes on (`goto_table`, `resubmit`: the same datapath flow) into a table where
    /// every flow it can meet is blocked; `why` is one of those flows' reasons. Only the
    /// pipeline report, which sees the other tables, gives it.
    ContinuesInto { table: u8, why: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SlowPath { action } => write!(f, "{action} is a slow-path action"),
            Reason::UserspaceOnly { action } => write!(f, "{action} is userspace-only"),
            Reason::ActionUnsupported { action } => write!(f, "action {action} unsupported"),
            Reason::FieldNotMatchable { field } => write!(f, "field {field} not matchable"),
            Reason::MaskUnsupported { field, mask, allowed } => {
                write!(f, "mask on {field} unsupported ({mask}, {allowed} at most)")
            }
            Reason::CtStateFlag { flag, set } => {
                write!(f, "ct_state {}{} not matchable", if *set { '+' } else { '-' }, flag.name())
            }
            Reason::RewriteUnsupported { field, masked: false } => write!(f, "rewrite of {field} unsupported"),
            Reason::RewriteUnsupported { field, masked: true } => write!(f, "masked rewrite of {field} unsupported"),
            Reason::CtFeature { feature } => write!(f, "ct {feature} unsupported"),
            Reason::CtZoneTooHigh { zone, max } => write!(f, "ct zone {zone} above {max}"),
            Reason::TooManyRecirculations { count, max } => {
                write!(f, "too many recirculations ({count}, at most {max})")
            }
            Reason::TooManyActions { count, max } => write!(f, "too many actions ({count}, at most {max})"),
            Reason::ContinuesInto { table, why } => write!(f, "continues into table {table} ({why})"),
        }
    }
}

/// A profile's judgement of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True exactly when `reasons` is empty.
    pub offloadable: bool,
    pub reasons: Vec<Reason>,
}

impl Verdict {
    pub fn from_reasons(reasons: Vec<Reason>) -> Verdict {
        Verdict { offloadable: reasons.is_empty(), reasons }
    }

    /// The CLI's line: `offloadable`, or `not offloadable: R1; R2`.
    pub fn line(&self) -> String {
        if self.offloadable {
            "offloadable".to_string()
        } else {
            let r: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
            format!("not offloadable: {}", r.join("; "))
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}
