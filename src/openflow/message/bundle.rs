//! ONF bundles in OpenFlow 1.3 (experimenter 0x4F4E4600, exp_type 2300/2301): the OF1.4
//! bundle messages carried as experimenter messages, which is how OVS offers atomic
//! multi-flow commits to OF1.3 controllers.

use super::{Header, Message};
use crate::openflow::error::ErrorCode;
use crate::openflow::wire::Reader;
use crate::openflow::DecodeError;

pub const ONFT_BUNDLE_CONTROL: u32 = 2300;
pub const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

/// `ofp14_bundle_ctrl_type`.
pub mod ctrl_type {
    pub const OPEN_REQUEST: u16 = 0;
    pub const OPEN_REPLY: u16 = 1;
    pub const CLOSE_REQUEST: u16 = 2;
    pub const CLOSE_REPLY: u16 = 3;
    pub const COMMIT_REQUEST: u16 = 4;
    pub const COMMIT_REPLY: u16 = 5;
    pub const DISCARD_REQUEST: u16 = 6;
    pub const DISCARD_REPLY: u16 = 7;
}

/// `OFPBF_*` bundle flags.
pub const BUNDLE_ATOMIC: u16 = 1;
pub const BUNDLE_ORDERED: u16 = 2;

const CTRL_NAMES: [&str; 8] = [
    "OPEN_REQUEST",
    "OPEN_REPLY",
    "CLOSE_REQUEST",
    "CLOSE_REPLY",
    "COMMIT_REQUEST",
    "COMMIT_REPLY",
    "DISCARD_REQUEST",
    "DISCARD_REPLY",
];

fn flags_text(flags: u16) -> String {
    let mut parts = Vec::new();
    if flags & BUNDLE_ATOMIC != 0 {
        parts.push("atomic");
    }
    if flags & BUNDLE_ORDERED != 0 {
        parts.push("ordered");
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" ")
    }
}

/// ONFT_BUNDLE_CONTROL: open, close, commit or discard a bundle (and the switch's replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleControl {
    pub bundle_id: u32,
    pub ctrl_type: u16,
    pub flags: u16,
    /// Bundle properties, raw (OVS defines none it acts on).
    pub properties: Vec<u8>,
}

impl BundleControl {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BundleControl {
            bundle_id: r.u32()?,
            ctrl_type: r.u16()?,
            flags: r.u16()?,
            properties: r.take_rest().to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bundle_id.to_be_bytes());
        out.extend_from_slice(&self.ctrl_type.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.properties);
    }

    pub fn fmt_body(&self) -> String {
        format!(
            "\n bundle_id=0x{:x} type={} flags={}",
            self.bundle_id,
            CTRL_NAMES.get(self.ctrl_type as usize).copied().unwrap_or(""),
            flags_text(self.flags)
        )
    }
}

/// ONFT_BUNDLE_ADD_MESSAGE: one message (a FLOW_MOD, usually) added to an open bundle. The
/// inner message carries the same xid as the outer one (OVS rejects anything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAdd {
    pub bundle_id: u32,
    pub flags: u16,
    pub message: Box<Message>,
    /// Whatever follows the inner message (properties), raw.
    pub properties: Vec<u8>,
}

impl BundleAdd {
    pub fn decode(r: &mut Reader<'_>, outer: &Header) -> Result<Self, DecodeError> {
        let bundle_id = r.u32()?;
        r.skip(2)?;
        let flags = r.u16()?;
        let bad_len = |d: String| DecodeError::new(ErrorCode::BUNDLE_FAILED_MSG_BAD_LEN, "ONFT_BUNDLE_ADD_MESSAGE", d);
        let inner_len = r.peek_u16(2).map_err(|e| bad_len(e.detail))? as usize;
        if inner_len < 8 || inner_len > r.remaining() {
            return Err(bad_len(format!("inner length {inner_len}, {} bytes left", r.remaining())));
        }
        let inner = r.bytes(inner_len)?;
        let (h, msg) = super::decode(inner)?;
        if h.xid != outer.xid {
            return Err(DecodeError::new(
                ErrorCode::BUNDLE_FAILED_MSG_BAD_XID,
                "ONFT_BUNDLE_ADD_MESSAGE",
                format!("inner xid {:#x} != outer xid {:#x}", h.xid, outer.xid),
            ));
        }
        Ok(BundleAdd { bundle_id, flags, message: Box::new(msg), properties: r.take_rest().to_vec() })
    }

    pub fn encode(&self, out: &mut Vec<u8>, xid: u32) {
        out.extend_from_slice(&self.bundle_id.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.flags.to_be_bytes());
        // Checked with the BUNDLE_ADD that carries it (longer than the inner message).
        super::encode_nested(&self.message, xid, out);
        out.extend_from_slice(&self.properties);
    }

    pub fn fmt_body(&self, xid: u32) -> String {
        let inner = super::encode(&self.message, xid);
        format!(
            "\n bundle_id=0x{:x} flags={}\n{}",
            self.bundle_id,
            flags_text(self.flags),
            super::ofp_to_string(&inner)
        )
    }
}
