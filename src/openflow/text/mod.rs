//! `ovs-ofctl` text for the pieces of a flow: field values, sub-fields and ports.
//!
//! Matches and flows print and parse themselves (`Match`'s `Display`/`parse` in `oxm.rs`,
//! `FlowMod` in `flow.rs`); this module holds the field-level rules they share with the action
//! parsers (set_field, learn, move).

pub mod group;
pub mod meter;
pub mod value;

pub use value::{
    format_port, format_value, parse_number, parse_port, parse_subfield, parse_value, CT_STATE_NAMES, TCP_FLAG_NAMES,
};
