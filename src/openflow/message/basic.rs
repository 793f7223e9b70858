//! The small fixed messages of the handshake and switch configuration: HELLO, ERROR,
//! FEATURES_REPLY, GET_CONFIG_REPLY / SET_CONFIG, ROLE_REQUEST / ROLE_REPLY and the async masks.

use super::text::{bit_names, hex_dump};
use crate::openflow::error::ErrorCode;
use crate::openflow::wire::{pad8, Reader};
use crate::openflow::DecodeError;

// === Hello ===

/// OFPHET_VERSIONBITMAP, the only hello element OpenFlow defines.
pub const HELLO_ELEM_VERSIONBITMAP: u16 = 1;

/// One `ofp_hello_elem_header` TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloElement {
    /// 32-bit words of a bitmap; bit `n` set means OpenFlow wire version `n` is supported.
    VersionBitmap(Vec<u32>),
    /// An element type we do not know, kept for a lossless re-encode.
    Unknown { etype: u16, data: Vec<u8> },
}

/// OFPT_HELLO. Elements are optional: an empty hello announces every version up to the header's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub elements: Vec<HelloElement>,
    /// Bytes after the last well-formed element. OVS accepts (and ignores) a malformed tail in
    /// a hello instead of failing the handshake, so we keep it rather than erroring.
    pub trailing: Vec<u8>,
}

impl Hello {
    /// A hello announcing exactly the versions in `bitmap` (bit n = wire version n).
    pub fn with_bitmap(bitmap: u32) -> Self {
        Hello { elements: vec![HelloElement::VersionBitmap(vec![bitmap])], trailing: Vec::new() }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut elements = Vec::new();
        while r.remaining() >= 4 {
            let etype = r.peek_u16(0)?;
            let len = r.peek_u16(2)? as usize;
            if len < 4 || pad8(len) > r.remaining() {
                break;
            }
            r.skip(4)?;
            let mut body = r.sub(len - 4)?;
            r.skip(pad8(len) - len)?;
            if etype == HELLO_ELEM_VERSIONBITMAP && body.remaining() % 4 == 0 {
                let mut words = Vec::new();
                while !body.is_empty() {
                    words.push(body.u32()?);
                }
                elements.push(HelloElement::VersionBitmap(words));
            } else {
                elements.push(HelloElement::Unknown { etype, data: body.take_rest().to_vec() });
            }
        }
        Ok(Hello { elements, trailing: r.take_rest().to_vec() })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for e in &self.elements {
            let start = out.len();
            match e {
                HelloElement::VersionBitmap(words) => {
                    out.extend_from_slice(&HELLO_ELEM_VERSIONBITMAP.to_be_bytes());
                    out.extend_from_slice(&((4 + 4 * words.len()) as u16).to_be_bytes());
                    for w in words {
                        out.extend_from_slice(&w.to_be_bytes());
                    }
                }
                HelloElement::Unknown { etype, data } => {
                    out.extend_from_slice(&etype.to_be_bytes());
                    out.extend_from_slice(&((4 + data.len()) as u16).to_be_bytes());
                    out.extend_from_slice(data);
                }
            }
            crate::openflow::wire::pad_to_8(out, start);
        }
        out.extend_from_slice(&self.trailing);
    }

    /// The versions the sender supports, as OVS's `ofputil_decode_hello` computes them, and
    /// whether every element was understood.
    pub fn allowed_versions(&self, header_version: u8) -> (u32, bool) {
        let mut allowed = if header_version < 32 { ((1u32 << header_version) - 1) << 1 } else { !1 };
        let mut ok = self.trailing.is_empty();
        for e in &self.elements {
            match e {
                HelloElement::VersionBitmap(words) if !words.is_empty() => {
                    let bits = words[0] & !1;
                    if bits == 0 {
                        ok = false;
                    } else {
                        allowed = bits;
                    }
                }
                _ => ok = false,
            }
        }
        (allowed, ok)
    }

    /// The version both ends speak, given the hello's header version and the versions we speak
    /// (a bitmap, bit n = wire version n): the highest common one, as OpenFlow negotiates.
    /// `None` means the handshake fails (answer OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE).
    pub fn negotiate(&self, header_version: u8, ours: u32) -> Option<u8> {
        let (theirs, _) = self.allowed_versions(header_version);
        let common = theirs & ours;
        if common == 0 {
            None
        } else {
            Some(31 - common.leading_zeros() as u8)
        }
    }

    /// The body text; `whole` is the encoded message, dumped when something was not understood.
    pub fn fmt_body(&self, version: u8, whole: &[u8]) -> String {
        let (allowed, ok) = self.allowed_versions(version);
        let list: Vec<String> = (0..32).filter(|i| allowed & (1 << i) != 0).map(|i| format!("0x{i:02x}")).collect();
        let mut s = format!("\n version bitmap: {}", list.join(", "));
        if !ok {
            s.push_str("\n unknown data in hello:\n");
            s.push_str(&hex_dump(whole));
        }
        s
    }
}

// === Error ===

/// OFPT_ERROR: a (type, code) pair, or an experimenter error, and the offending bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    /// For most errors, at least the first 64 bytes of the request that failed; for
    /// HELLO_FAILED an ASCII explanation.
    pub data: Vec<u8>,
}

/// How much of an offending request an OFPT_ERROR carries (OVS sends at most 64 bytes).
pub const ERROR_DATA_MAX: usize = 64;

impl ErrorMsg {
    /// The error OVS would send for `request` (its first 64 bytes are echoed back).
    pub fn for_request(code: ErrorCode, request: &[u8]) -> Self {
        ErrorMsg { code, data: request[..request.len().min(ERROR_DATA_MAX)].to_vec() }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let etype = r.u16()?;
        let code = r.u16()?;
        let experimenter = if etype == 0xffff { r.u32()? } else { 0 };
        Ok(ErrorMsg { code: ErrorCode { etype, code, experimenter }, data: r.take_rest().to_vec() })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.etype.to_be_bytes());
        out.extend_from_slice(&self.code.code.to_be_bytes());
        if self.code.etype == 0xffff {
            out.extend_from_slice(&self.code.experimenter.to_be_bytes());
        }
        out.extend_from_slice(&self.data);
    }

    /// The body text; `whole` is the encoded message, dumped when OVS cannot name the error.
    pub fn fmt_body(&self, whole: &[u8]) -> String {
        if self.code.name().is_none() {
            // OVS fails to decode an error it has no name for, and says so this way.
            return format!(" ***decode error: {}***\n{}", ErrorCode::BAD_REQUEST_BAD_LEN, hex_dump(whole));
        }
        let mut s = format!(" {}\n", self.code);
        if self.code == ErrorCode::HELLO_FAILED_INCOMPATIBLE || self.code == ErrorCode::HELLO_FAILED_EPERM {
            s.push_str(&String::from_utf8_lossy(&self.data));
        } else {
            s.push_str(&super::ofp_to_string(&self.data));
        }
        s
    }
}

// === Features ===

/// OFPT_FEATURES_REPLY (OF1.3: no port list; ports come from the PORT_DESC multipart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeaturesReply {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
    /// `reserved` in the spec; kept so a re-encode is byte-identical.
    pub reserved: u32,
}

const CAPABILITY_NAMES: &[&str] =
    &["FLOW_STATS", "TABLE_STATS", "PORT_STATS", "GROUP_STATS", "", "IP_REASM", "QUEUE_STATS", "", "PORT_BLOCKED"];
/// The OF1.3 capability bits OVS knows (it drops the rest before printing).
const KNOWN_CAPABILITIES: u32 = 0x16f;

impl FeaturesReply {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let datapath_id = r.u64()?;
        let n_buffers = r.u32()?;
        let n_tables = r.u8()?;
        let auxiliary_id = r.u8()?;
        r.skip(2)?;
        let capabilities = r.u32()?;
        let reserved = r.u32()?;
        Ok(FeaturesReply { datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.datapath_id.to_be_bytes());
        out.extend_from_slice(&self.n_buffers.to_be_bytes());
        out.push(self.n_tables);
        out.push(self.auxiliary_id);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.capabilities.to_be_bytes());
        out.extend_from_slice(&self.reserved.to_be_bytes());
    }

    pub fn fmt_body(&self) -> String {
        let mut s =
            format!(" dpid:{:016x}\nn_tables:{}, n_buffers:{}", self.datapath_id, self.n_tables, self.n_buffers);
        if self.auxiliary_id != 0 {
            // OVS (`ofputil_switch_features_format`) adds it to the same line.
            s.push_str(&format!(", auxiliary_id:{}", self.auxiliary_id));
        }
        s.push_str(&format!(
            "\ncapabilities: {}",
            bit_names(self.capabilities & KNOWN_CAPABILITIES, CAPABILITY_NAMES, " ")
        ));
        s
    }
}

// === Switch config ===

/// GET_CONFIG_REPLY and SET_CONFIG body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// OFPC_FRAG_* in the low two bits.
    pub flags: u16,
    /// How many bytes of a table-miss packet go to the controller (0xffff: all).
    pub miss_send_len: u16,
}

impl SwitchConfig {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SwitchConfig { flags: r.u16()?, miss_send_len: r.u16()? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.miss_send_len.to_be_bytes());
    }

    pub fn fmt_body(&self) -> String {
        let frags = ["normal", "drop", "reassemble", "nx-match"][(self.flags & 3) as usize];
        format!(" frags={} miss_send_len={}", frags, self.miss_send_len)
    }
}

// === Role ===

/// ROLE_REQUEST / ROLE_REPLY body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// OFPCR_ROLE_NOCHANGE 0, EQUAL 1, MASTER 2, SLAVE 3.
    pub role: u32,
    pub generation_id: u64,
}

impl Role {
    pub const NOCHANGE: u32 = 0;
    pub const EQUAL: u32 = 1;
    pub const PRIMARY: u32 = 2;
    pub const SECONDARY: u32 = 3;

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let role = r.u32()?;
        r.skip(4)?;
        Ok(Role { role, generation_id: r.u64()? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.role.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.generation_id.to_be_bytes());
    }

    pub fn fmt_body(&self) -> String {
        let name = match self.role {
            0 => "nochange".to_string(),
            1 => "equal".to_string(),
            2 => "primary".to_string(),
            3 => "secondary".to_string(),
            n => format!("{n}"),
        };
        let mut s = format!(" role={name}");
        if self.role != Self::NOCHANGE && self.generation_id != u64::MAX {
            s.push_str(&format!(" generation_id={}", self.generation_id));
        }
        s
    }
}

// === Async config ===

/// GET_ASYNC_REPLY / SET_ASYNC body: which asynchronous messages a controller gets, for the
/// primary/equal role (index 0) and the secondary role (index 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncConfig {
    pub packet_in_mask: [u32; 2],
    pub port_status_mask: [u32; 2],
    pub flow_removed_mask: [u32; 2],
}

const PACKET_IN_REASONS: &[&str] = &["no_match", "action", "invalid_ttl", "action_set", "group", "packet_out"];
const PORT_STATUS_REASONS: &[&str] = &["add", "delete", "modify"];
const FLOW_REMOVED_REASONS: &[&str] = &["idle", "hard", "delete", "group_delete", "meter_delete", "eviction"];

impl AsyncConfig {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut c = AsyncConfig::default();
        for m in [&mut c.packet_in_mask, &mut c.port_status_mask, &mut c.flow_removed_mask] {
            m[0] = r.u32()?;
            m[1] = r.u32()?;
        }
        Ok(c)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for m in [self.packet_in_mask, self.port_status_mask, self.flow_removed_mask] {
            out.extend_from_slice(&m[0].to_be_bytes());
            out.extend_from_slice(&m[1].to_be_bytes());
        }
    }

    pub fn fmt_body(&self) -> String {
        let mut s = String::new();
        for (i, role) in ["primary", "secondary"].iter().enumerate() {
            if i == 1 {
                s.push('\n');
            }
            s.push_str(&format!("\n {role}:\n"));
            let line = |bits: u32, names: &[&str]| {
                if bits == 0 {
                    "(off)".to_string()
                } else {
                    bit_names(bits, names, " ")
                }
            };
            // OF1.3 defines 3 packet-in, 3 port-status and 4 flow-removed reasons; OVS ignores
            // the other bits of an OF1.3 mask.
            s.push_str(&format!("       PACKET_IN: {}\n", line(self.packet_in_mask[i] & 0x7, PACKET_IN_REASONS)));
            s.push_str(&format!("     PORT_STATUS: {}\n", line(self.port_status_mask[i] & 0x7, PORT_STATUS_REASONS)));
            s.push_str(&format!("    FLOW_REMOVED: {}\n", line(self.flow_removed_mask[i] & 0xf, FLOW_REMOVED_REASONS)));
            s.push_str("     ROLE_STATUS: (off)\n    TABLE_STATUS: (off)\n  REQUESTFORWARD: (off)");
        }
        s
    }
}
