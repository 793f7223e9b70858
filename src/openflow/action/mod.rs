//! OpenFlow 1.3 actions with Open vSwitch's Nicira extensions: bytes both ways ([`Action::decode_list`],
//! [`Action::encode_list`]) and `ovs-ofctl` text both ways ([`format_actions`], [`parse_actions`]).
//!
//! Like OVS (`ofp_raw_action_type` vs `ofpact`), each variant here is one *wire* action, so that
//! decode -> encode gives back the same bytes; the text layer maps OVS's spellings onto them
//! (`mod_dl_src:` becomes an OXM set_field, `load:` one NXAST_REG_LOAD per 64-bit run, ...).
//! Actions we do not know are kept whole as [`Action::Unknown`].

pub mod bundle;
mod codec;
pub mod conjunction;
pub mod controller;
pub mod ct;
pub mod learn;
pub mod multipath;
pub mod nx_field;
#[cfg(test)]
pub(crate) mod nx_testutil;
pub mod port;
pub mod text;
mod value;

#[cfg(test)]
mod tests;

use super::wire::{pad_to_8, patch_u16, Reader};
use super::{DecodeError, ErrorCode, Field, Subfield, Value};

pub(crate) use codec::{nx_finish, nx_start};

pub use controller::Controller;

pub use text::{format_actions, parse_actions, parse_actions_in, split_top_level, ParseContext};

// === wire constants ===

pub const OFPAT_OUTPUT: u16 = 0;
pub const OFPAT_COPY_TTL_OUT: u16 = 11;
pub const OFPAT_COPY_TTL_IN: u16 = 12;
pub const OFPAT_SET_MPLS_TTL: u16 = 15;
pub const OFPAT_DEC_MPLS_TTL: u16 = 16;
pub const OFPAT_PUSH_VLAN: u16 = 17;
pub const OFPAT_POP_VLAN: u16 = 18;
pub const OFPAT_PUSH_MPLS: u16 = 19;
pub const OFPAT_POP_MPLS: u16 = 20;
pub const OFPAT_SET_QUEUE: u16 = 21;
pub const OFPAT_GROUP: u16 = 22;
pub const OFPAT_SET_NW_TTL: u16 = 23;
pub const OFPAT_DEC_NW_TTL: u16 = 24;
pub const OFPAT_SET_FIELD: u16 = 25;
pub const OFPAT_EXPERIMENTER: u16 = 0xffff;

/// Nicira's experimenter id.
pub use super::error::NX_VENDOR_ID;

pub const NXAST_RESUBMIT: u16 = 1;
pub const NXAST_POP_QUEUE: u16 = 5;
pub const NXAST_REG_MOVE: u16 = 6;
pub const NXAST_REG_LOAD: u16 = 7;
pub const NXAST_NOTE: u16 = 8;
pub const NXAST_MULTIPATH: u16 = 10;
pub const NXAST_BUNDLE: u16 = 12;
pub const NXAST_BUNDLE_LOAD: u16 = 13;
pub const NXAST_RESUBMIT_TABLE: u16 = 14;
pub const NXAST_OUTPUT_REG: u16 = 15;
pub const NXAST_LEARN: u16 = 16;
pub const NXAST_LEARN2: u16 = 45;
pub const NXAST_EXIT: u16 = 17;
pub const NXAST_FIN_TIMEOUT: u16 = 19;
pub const NXAST_CONTROLLER: u16 = 20;
pub const NXAST_DEC_TTL_CNT_IDS: u16 = 21;
pub const NXAST_OUTPUT_REG2: u16 = 32;
pub const NXAST_REG_LOAD2: u16 = 33;
pub const NXAST_CONJUNCTION: u16 = 34;
pub const NXAST_CT: u16 = 35;
pub const NXAST_NAT: u16 = 36;
pub const NXAST_CONTROLLER2: u16 = 37;
pub const NXAST_OUTPUT_TRUNC: u16 = 39;
pub const NXAST_CT_CLEAR: u16 = 43;
pub const NXAST_RESUBMIT_TABLE_CT: u16 = 44;
pub const NXAST_STACK_PUSH: u16 = 27;
pub const NXAST_STACK_POP: u16 = 28;
pub const NXAST_SAMPLE: u16 = 29;
pub const NXAST_SAMPLE2: u16 = 38;
pub const NXAST_SAMPLE3: u16 = 41;
pub const NXAST_CLONE: u16 = 42;
pub const NXAST_CHECK_PKT_LARGER: u16 = 49;

/// One action, as it stands on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// OFPAT_OUTPUT. `port` is the OpenFlow 1.3 (32-bit) number: reserved ports are
    /// `0xfffffff8` (IN_PORT) .. `0xffffffff`; see [`port`]. `max_len` matters for CONTROLLER.
    Output {
        port: u32,
        max_len: u16,
    },
    /// NXAST_OUTPUT_TRUNC, `output(port=P,max_len=N)`: output at most `max_len` bytes.
    OutputTrunc {
        port: u16,
        max_len: u32,
    },
    /// NXAST_OUTPUT_REG (or REG2 when `reg2`): output to the port in a sub-field.
    OutputReg {
        src: Subfield,
        max_len: u16,
        reg2: bool,
    },
    /// OFPAT_GROUP.
    Group(u32),
    /// OFPAT_SET_FIELD: sets a whole field (OpenFlow 1.3 allows no mask here).
    SetField {
        field: Field,
        value: Value,
    },
    /// NXAST_REG_LOAD: `load:VALUE->DST[..]`, at most 64 bits.
    RegLoad {
        dst: Subfield,
        value: u64,
    },
    /// NXAST_REG_LOAD2: a set_field with an optional mask, for fields REG_LOAD cannot name.
    RegLoad2 {
        field: Field,
        value: Value,
        mask: Option<Value>,
    },
    /// NXAST_REG_MOVE: `move:SRC[..]->DST[..]` (equal widths).
    RegMove {
        src: Subfield,
        dst: Subfield,
    },
    PushVlan(u16),
    PopVlan,
    PushMpls(u16),
    PopMpls(u16),
    SetQueue(u32),
    /// NXAST_POP_QUEUE.
    PopQueue,
    /// OFPAT_DEC_NW_TTL.
    DecTtl,
    /// NXAST_DEC_TTL_CNT_IDS: `dec_ttl(id,...)`.
    DecTtlCntIds(Vec<u16>),
    /// OFPAT_SET_NW_TTL (`mod_nw_ttl`).
    SetNwTtl(u8),
    SetMplsTtl(u8),
    DecMplsTtl,
    /// OFPAT_COPY_TTL_OUT / IN: decoded and re-encoded, though OVS itself rejects them.
    CopyTtlOut,
    CopyTtlIn,
    /// NXAST_RESUBMIT_TABLE, or RESUBMIT_TABLE_CT when `ct`, or the old NXAST_RESUBMIT (no
    /// table) when `legacy`. `in_port` is 16-bit (`0xfff8`: IN_PORT), `table` 255 means "this".
    Resubmit {
        in_port: u16,
        table: u8,
        ct: bool,
        legacy: bool,
    },
    /// NXAST_NOTE: the bytes after the header, padding included (OVS prints them all).
    Note(Vec<u8>),
    CtClear,
    Exit,
    /// NXAST_FIN_TIMEOUT (0 = leave unchanged).
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// NXAST_CONTROLLER / CONTROLLER2.
    Controller(Controller),
    /// NXAST_CLONE: run the nested actions on a copy of the packet.
    Clone(Vec<Action>),
    /// NXAST_STACK_PUSH / NXAST_STACK_POP (`push:SRC[..]`, `pop:DST[..]`).
    StackPush(Subfield),
    StackPop(Subfield),
    /// NXAST_SAMPLE / SAMPLE2 / SAMPLE3.
    Sample(Sample),
    /// NXAST_CHECK_PKT_LARGER: `check_pkt_larger(LEN)->DST[bit]`.
    CheckPktLarger {
        pkt_len: u16,
        dst: Subfield,
    },
    Ct(ct::Ct),
    Nat(ct::Nat),
    Learn(learn::Learn),
    Multipath(multipath::Multipath),
    /// `bundle` and `bundle_load`.
    Bundle(bundle::Bundle),
    Conjunction(conjunction::Conjunction),
    /// Any action we do not understand, kept whole (header included) so it re-encodes as is.
    Unknown {
        bytes: Vec<u8>,
    },
}

/// `sample(...)`: IPFIX sampling. OVS writes NXAST_SAMPLE3 when a direction is given,
/// NXAST_SAMPLE2 when a sampling port is, NXAST_SAMPLE otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// 16-bit port; `port::OFPP_NONE` when unset.
    pub sampling_port: u16,
    /// 0 default, 1 ingress, 2 egress.
    pub direction: u8,
    /// The subtype to encode as: the one it arrived as, or what OVS would choose (set by the
    /// text parser); 0 means "choose".
    pub subtype: u16,
}

impl Sample {
    pub fn wire_subtype(&self) -> u16 {
        match self.subtype {
            NXAST_SAMPLE | NXAST_SAMPLE2 | NXAST_SAMPLE3 => self.subtype,
            _ if self.direction != 0 => NXAST_SAMPLE3,
            _ if self.sampling_port != port::OFPP_NONE => NXAST_SAMPLE2,
            _ => NXAST_SAMPLE,
        }
    }
}

// === impl Action: constructors for code that builds pipelines ===

impl Action {
    /// `output:PORT` with a 16-bit (OVS-internal) port number or reserved port
    /// ([`port::OFPP_LOCAL`], ...); CONTROLLER gets max_len 65535 as OVS's text does.
    pub fn output(p: u16) -> Action {
        let max_len = if p == port::OFPP_CONTROLLER { u16::MAX } else { 0 };
        Action::Output { port: port::port_to_ofp11(p), max_len }
    }

    /// `CONTROLLER:max_len` (plain OFPAT_OUTPUT to the controller).
    pub fn to_controller(max_len: u16) -> Action {
        Action::Output { port: port::OFPP11_CONTROLLER, max_len }
    }

    /// `resubmit(,TABLE)`.
    pub fn resubmit_table(table: u8) -> Action {
        Action::Resubmit { in_port: port::OFPP_IN_PORT, table, ct: false, legacy: false }
    }

    /// `load:VALUE->DST[..]` (one NXAST_REG_LOAD; `dst` at most 64 bits, `value` must fit it).
    pub fn load(dst: Subfield, value: u64) -> Action {
        Action::RegLoad { dst, value }
    }

    /// `set_field:VALUE->FIELD` for a whole field (OFPAT_SET_FIELD).
    pub fn set_field(field: Field, value: Value) -> Action {
        Action::SetField { field, value }
    }

    /// `move:SRC->DST` (the widths must be equal).
    pub fn move_bits(src: Subfield, dst: Subfield) -> Action {
        Action::RegMove { src, dst }
    }

    /// The 16-bit port an `Output` sends to, if this is one.
    pub fn output_port(&self) -> Option<u16> {
        match self {
            Action::Output { port: p, .. } => port::port_from_ofp11(*p, "output").ok(),
            _ => None,
        }
    }

    /// Whether OVS accepts this action inside `write_actions(...)` (the action set): it answers
    /// OFPBAC_BAD_TYPE for the others ("disallowed action in action set").
    pub fn allowed_in_action_set(&self) -> bool {
        !matches!(
            self,
            Action::Controller(_)
                | Action::Note(_)
                | Action::Exit
                | Action::PopQueue
                | Action::FinTimeout { .. }
                | Action::OutputReg { .. }
                | Action::OutputTrunc { .. }
                | Action::StackPush(_)
                | Action::StackPop(_)
                | Action::Sample(_)
                | Action::Clone(_)
                | Action::Learn(_)
                | Action::Multipath(_)
                | Action::Bundle(_)
                | Action::Conjunction(_)
                | Action::CheckPktLarger { .. }
        )
    }
}
