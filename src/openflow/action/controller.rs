//! `controller(...)`: NXAST_CONTROLLER and NXAST_CONTROLLER2.
//!
//! A plain `controller` / `controller:N` is an `OFPAT_OUTPUT` to the CONTROLLER port and is not
//! this type; this one carries what OFPAT_OUTPUT cannot (reason, controller id, userdata, pause,
//! meter). OVS writes NXAST_CONTROLLER unless userdata, pause or a meter need the
//! property-based NXAST_CONTROLLER2, or the action arrived as CONTROLLER2.

use std::fmt;

use super::port::parse_u16;
use super::{nx_finish, nx_start, NXAST_CONTROLLER, NXAST_CONTROLLER2};
use crate::openflow::wire::{pad8, Reader};
use crate::openflow::{DecodeError, ErrorCode, TextError};

/// `OFPR_ACTION`: the default packet-in reason.
pub const REASON_ACTION: u8 = 1;

const REASONS: &[(u8, &str)] =
    &[(0, "no_match"), (1, "action"), (2, "invalid_ttl"), (3, "action_set"), (4, "group"), (5, "packet_out")];

const PROP_MAX_LEN: u16 = 0;
const PROP_CONTROLLER_ID: u16 = 1;
const PROP_REASON: u16 = 2;
const PROP_USERDATA: u16 = 3;
const PROP_PAUSE: u16 = 4;
const PROP_METER_ID: u16 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub max_len: u16,
    /// Controller connection id (0: all controllers).
    pub id: u16,
    pub reason: u8,
    pub userdata: Vec<u8>,
    pub pause: bool,
    pub meter_id: Option<u32>,
    /// Encode as NXAST_CONTROLLER2. Set when it arrived that way, and by [`Controller::parse`]
    /// when userdata, pause or a meter need it, so text and bytes give equal values.
    pub v2: bool,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            max_len: u16::MAX,
            id: 0,
            reason: REASON_ACTION,
            userdata: Vec::new(),
            pause: false,
            meter_id: None,
            v2: false,
        }
    }
}

impl Controller {
    /// Whether OVS would express this as a plain output to CONTROLLER when parsing text.
    pub fn is_plain(&self) -> bool {
        self.reason == REASON_ACTION
            && self.id == 0
            && self.userdata.is_empty()
            && !self.pause
            && self.meter_id.is_none()
    }

    /// NXAST_CONTROLLER: `r` holds the 6 bytes after the NX header.
    pub(super) fn decode_v1(r: &mut Reader<'_>) -> Result<Controller, DecodeError> {
        let max_len = r.u16()?;
        let id = r.u16()?;
        let reason = r.u8()?;
        let _zero = r.u8()?;
        Ok(Controller { max_len, id, reason, ..Controller::default() })
    }

    /// NXAST_CONTROLLER2: `r` holds the bytes after the NX header (6 pad bytes, properties).
    pub(super) fn decode_v2(r: &mut Reader<'_>) -> Result<Controller, DecodeError> {
        let pad = r.bytes(6)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "nonzero padding"));
        }
        let mut c = Controller { v2: true, ..Controller::default() };
        while !r.is_empty() {
            let ptype = r.u16()?;
            let plen = r.u16()? as usize;
            if plen < 4 {
                return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_LEN, "property shorter than its header"));
            }
            let p = r.sub(plen - 4)?;
            // Properties are padded to 8, but the last one's padding may be cut by the action end.
            let padding = (pad8(plen) - plen).min(r.remaining());
            r.skip(padding)?;
            // Like OVS's `ofpprop_parse_u16` and friends, a payload longer than the value is
            // accepted (OVS itself writes 16-bit values with 2 bytes of padding); re-encoding
            // writes the canonical length.
            let mut p = p.context("NXAST_CONTROLLER2 property", ErrorCode::BAD_ACTION_BAD_LEN);
            match ptype {
                PROP_MAX_LEN => c.max_len = p.u16()?,
                PROP_CONTROLLER_ID => c.id = p.u16()?,
                PROP_REASON => c.reason = p.u8()?,
                PROP_USERDATA => c.userdata = p.take_rest().to_vec(),
                PROP_PAUSE => c.pause = true,
                // Meter 0 is OVS's "no meter" (NX_CTLR_NO_METER).
                PROP_METER_ID => c.meter_id = Some(p.u32()?).filter(|m| *m != 0),
                _ => return Err(p.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, format!("unknown property {ptype}"))),
            }
        }
        Ok(c)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.v2 || !self.userdata.is_empty() || self.pause || self.meter_id.is_some() {
            let start = nx_start(out, NXAST_CONTROLLER2);
            out.extend_from_slice(&[0; 6]);
            let prop = |out: &mut Vec<u8>, t: u16, data: &[u8]| {
                let s = out.len();
                out.extend_from_slice(&t.to_be_bytes());
                out.extend_from_slice(&((4 + data.len()) as u16).to_be_bytes());
                out.extend_from_slice(data);
                crate::openflow::wire::pad_to_8(out, s);
            };
            let [a, b] = self.max_len.to_be_bytes();
            if self.max_len != u16::MAX {
                prop(out, PROP_MAX_LEN, &[a, b, 0, 0]);
            }
            let [a, b] = self.id.to_be_bytes();
            if self.id != 0 {
                prop(out, PROP_CONTROLLER_ID, &[a, b, 0, 0]);
            }
            if self.reason != REASON_ACTION {
                prop(out, PROP_REASON, &[self.reason]);
            }
            if !self.userdata.is_empty() {
                prop(out, PROP_USERDATA, &self.userdata);
            }
            if self.pause {
                prop(out, PROP_PAUSE, &[]);
            }
            if let Some(m) = self.meter_id {
                prop(out, PROP_METER_ID, &m.to_be_bytes());
            }
            nx_finish(out, start);
        } else {
            let start = nx_start(out, NXAST_CONTROLLER);
            out.extend_from_slice(&self.max_len.to_be_bytes());
            out.extend_from_slice(&self.id.to_be_bytes());
            out.extend_from_slice(&[self.reason, 0]);
            nx_finish(out, start);
        }
    }

    /// Parses the inside of `controller(...)` (key=value list), like OVS's `parse_CONTROLLER`.
    pub fn parse(args: &str) -> Result<Controller, TextError> {
        let mut c = Controller::default();
        let args = args.trim();
        if args.is_empty() {
            return Ok(c);
        }
        if args.bytes().all(|b| b.is_ascii_digit()) {
            c.max_len = parse_u16(args).ok_or_else(|| TextError::new(args, "bad max_len"))?;
            return Ok(c);
        }
        for item in super::text::split_top_level(args) {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (item.trim(), ""),
            };
            match k {
                "reason" => {
                    c.reason = REASONS
                        .iter()
                        .find(|(_, n)| *n == v)
                        .map(|(r, _)| *r)
                        .ok_or_else(|| TextError::new(v, "unknown reason"))?
                }
                "max_len" => c.max_len = parse_u16(v).ok_or_else(|| TextError::new(v, "bad max_len"))?,
                "id" => c.id = parse_u16(v).ok_or_else(|| TextError::new(v, "bad id"))?,
                "userdata" => {
                    c.userdata = super::text::parse_dotted_hex(v)
                        .ok_or_else(|| TextError::new(v, "bad hex digit in `controller' action `userdata'"))?
                }
                "pause" => c.pause = true,
                "meter_id" => {
                    c.meter_id = Some(super::port::parse_u32(v).ok_or_else(|| TextError::new(v, "bad meter_id"))?)
                        .filter(|m| *m != 0)
                }
                _ => return Err(TextError::new(k, "unknown key parsing controller action")),
            }
        }
        c.v2 = !c.userdata.is_empty() || c.pause || c.meter_id.is_some();
        Ok(c)
    }
}

/// Prints like OVS's `format_CONTROLLER`.
impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plain() {
            return write!(f, "CONTROLLER:{}", self.max_len);
        }
        let mut parts = Vec::new();
        if self.reason != REASON_ACTION {
            match REASONS.iter().find(|(r, _)| *r == self.reason) {
                Some((_, n)) => parts.push(format!("reason={n}")),
                // OVS's internal explicit/implicit miss reasons print as nothing.
                None if matches!(self.reason, 6 | 7) => parts.push("reason=".into()),
                None => parts.push(format!("reason={}", self.reason)),
            }
        }
        if self.max_len != u16::MAX {
            parts.push(format!("max_len={}", self.max_len));
        }
        if self.id != 0 {
            parts.push(format!("id={}", self.id));
        }
        if !self.userdata.is_empty() {
            parts.push(format!("userdata={}", super::text::dotted_hex(&self.userdata)));
        }
        if self.pause {
            parts.push("pause".into());
        }
        if let Some(m) = self.meter_id {
            parts.push(format!("meter_id={m}"));
        }
        write!(f, "controller({})", parts.join(","))
    }
}
