//! Nicira (vendor 0x00002320) experimenter messages a controller for OVS needs:
//! NXT_SET_PACKET_IN_FORMAT, NXT_SET_CONTROLLER_ID, NXT_PACKET_IN2 and NXT_RESUME.

use crate::openflow::error::ErrorCode;
use crate::openflow::oxm::Match;
use crate::openflow::wire::{pad8, pad_to_8, patch_u16, Reader};
use crate::openflow::DecodeError;

pub use crate::openflow::error::NX_VENDOR_ID;
pub const NXT_SET_PACKET_IN_FORMAT: u32 = 16;
pub const NXT_SET_CONTROLLER_ID: u32 = 20;
pub const NXT_RESUME: u32 = 28;
pub const NXT_PACKET_IN2: u32 = 30;

/// NXPINT_* property types of NXT_PACKET_IN2 / NXT_RESUME.
mod prop {
    pub const PACKET: u16 = 0;
    pub const FULL_LEN: u16 = 1;
    pub const BUFFER_ID: u16 = 2;
    pub const TABLE_ID: u16 = 3;
    pub const COOKIE: u16 = 4;
    pub const REASON: u16 = 5;
    pub const METADATA: u16 = 6;
    pub const USERDATA: u16 = 7;
    pub const CONTINUATION: u16 = 8;
}

/// NXT_PACKET_IN2 and NXT_RESUME body: a list of properties, each optional.
///
/// Properties are re-encoded in the order OVS writes them (packet, full_len, buffer_id,
/// table_id, cookie, reason, metadata, continuation, userdata, then unknown ones), so a message
/// from OVS round-trips byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketIn2 {
    pub packet: Option<Vec<u8>>,
    /// The packet's length before truncation to `packet`; absent when not truncated.
    pub full_len: Option<u32>,
    pub buffer_id: Option<u32>,
    pub table_id: Option<u8>,
    pub cookie: Option<u64>,
    pub reason: Option<u8>,
    /// Pipeline metadata (in_port, registers, tunnel, conntrack fields...), bare OXM/NXM
    /// entries on the wire; decoded as a [`Match`].
    pub metadata: Option<Match>,
    pub userdata: Option<Vec<u8>>,
    /// The paused pipeline state, opaque to a controller: sent back unchanged in NXT_RESUME.
    pub continuation: Option<Vec<u8>>,
    pub unknown: Vec<(u16, Vec<u8>)>,
}

impl PacketIn2 {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = PacketIn2::default();
        while !r.is_empty() {
            let ptype = r.u16()?;
            let len = r.u16()? as usize;
            if len < 4 {
                return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("property length {len}")));
            }
            let mut body = r.sub(len - 4)?;
            // The last property's padding may be missing; OVS requires it, so do we.
            r.skip(pad8(len) - len)?;
            let bad = |what: &str| {
                DecodeError::new(ErrorCode::BAD_REQUEST_BAD_LEN, "NXT_PACKET_IN2", format!("bad {what} property"))
            };
            match ptype {
                prop::PACKET => p.packet = Some(body.take_rest().to_vec()),
                prop::FULL_LEN | prop::BUFFER_ID => {
                    if body.remaining() != 4 {
                        return Err(bad("u32"));
                    }
                    let v = body.u32()?;
                    if ptype == prop::FULL_LEN {
                        p.full_len = Some(v)
                    } else {
                        p.buffer_id = Some(v)
                    }
                }
                prop::TABLE_ID | prop::REASON => {
                    if body.remaining() != 1 {
                        return Err(bad("u8"));
                    }
                    let v = body.u8()?;
                    if ptype == prop::TABLE_ID {
                        p.table_id = Some(v)
                    } else {
                        p.reason = Some(v)
                    }
                }
                prop::COOKIE => {
                    // ofpprop_put_be64: 4 pad bytes so the value is 8-aligned.
                    if body.remaining() != 12 {
                        return Err(bad("cookie"));
                    }
                    body.skip(4)?;
                    p.cookie = Some(body.u64()?);
                }
                prop::METADATA => p.metadata = Some(Match::decode_oxms(body.take_rest(), false)?),
                prop::USERDATA => p.userdata = Some(body.take_rest().to_vec()),
                prop::CONTINUATION => p.continuation = Some(body.take_rest().to_vec()),
                t => p.unknown.push((t, body.take_rest().to_vec())),
            }
        }
        Ok(p)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        fn put(out: &mut Vec<u8>, ptype: u16, f: impl FnOnce(&mut Vec<u8>)) {
            let start = out.len();
            out.extend_from_slice(&ptype.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            f(out);
            let len = (out.len() - start) as u16;
            patch_u16(out, start + 2, len);
            pad_to_8(out, start);
        }
        if let Some(d) = &self.packet {
            put(out, prop::PACKET, |o| o.extend_from_slice(d));
        }
        if let Some(v) = self.full_len {
            put(out, prop::FULL_LEN, |o| o.extend_from_slice(&v.to_be_bytes()));
        }
        if let Some(v) = self.buffer_id {
            put(out, prop::BUFFER_ID, |o| o.extend_from_slice(&v.to_be_bytes()));
        }
        if let Some(v) = self.table_id {
            put(out, prop::TABLE_ID, |o| o.push(v));
        }
        if let Some(v) = self.cookie {
            put(out, prop::COOKIE, |o| {
                o.extend_from_slice(&[0; 4]);
                o.extend_from_slice(&v.to_be_bytes())
            });
        }
        if let Some(v) = self.reason {
            put(out, prop::REASON, |o| o.push(v));
        }
        if let Some(m) = &self.metadata {
            put(out, prop::METADATA, |o| m.encode_oxms(o));
        }
        if let Some(d) = &self.continuation {
            put(out, prop::CONTINUATION, |o| o.extend_from_slice(d));
        }
        if let Some(d) = &self.userdata {
            put(out, prop::USERDATA, |o| o.extend_from_slice(d));
        }
        for (t, d) in &self.unknown {
            put(out, *t, |o| o.extend_from_slice(d));
        }
    }

    /// OVS's text after the message name: the packet-in summary, userdata and the packet's flow
    /// (the continuation, which OVS decodes and prints, is left out).
    pub fn fmt_body(&self) -> String {
        let data_len = self.packet.as_ref().map_or(0, |p| p.len());
        let empty = Match::default();
        let mut s = super::packet::packet_in_summary(&super::packet::PacketInSummary {
            table_id: self.table_id.unwrap_or(0),
            cookie: self.cookie.unwrap_or(0),
            total_len: self.full_len.unwrap_or(data_len as u32),
            r#match: self.metadata.as_ref().unwrap_or(&empty),
            reason: self.reason.unwrap_or(0),
            data_len,
            buffer_id: self.buffer_id.unwrap_or(u32::MAX),
        });
        if let Some(u) = &self.userdata {
            let hex: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!("\n userdata={}", hex.join(".")));
        }
        // OVS next prints the decoded continuation (bridge, actions, odp_port...); we keep it
        // opaque and print nothing for it.
        if let Some(p) = self.packet.as_deref().filter(|p| !p.is_empty()) {
            if let Some(t) = super::packet_text::packet_flow_text(p) {
                s.push('\n');
                s.push_str(&t);
            }
        }
        s
    }
}
