//! OpenFlow 1.3 messages (plus the Nicira and ONF experimenter messages OVS speaks), sans IO:
//! [`frame_len`] finds message boundaries in a byte stream, [`decode`] turns exactly one message
//! into a [`Message`], [`encode`] turns it back into bytes, and [`ofp_print`] prints it the way
//! `ovs-ofctl ofp-print` does.
//!
//! Every length from the wire goes through [`Reader`]; nothing here panics on peer input.
//! Types we do not know decode to `Unknown`/`Experimenter` variants that re-encode unchanged,
//! so a session can answer them (OFPBRC_BAD_TYPE...) instead of dropping the connection.
//!
//! ```
//! use shardflow::openflow::message::{decode, encode, frame_len, ofp_print, Hello, Message};
//!
//! // What OVS sends with protocols=OpenFlow13, followed by the start of the next message.
//! let stream = [4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10, 4, 2];
//! let n = frame_len(&stream).unwrap().unwrap();
//! let (header, msg) = decode(&stream[..n]).unwrap();
//! assert_eq!(msg, Message::Hello(Hello::with_bitmap(1 << 4)));
//! assert_eq!(ofp_print(&header, &msg), "OFPT_HELLO (OF1.3) (xid=0x1):\n version bitmap: 0x04");
//! assert_eq!(encode(&msg, 1), &stream[..n]);
//! ```
//!
//! Layout: [`basic`] (hello, error, features, config, role, async), [`packet`] (packet-in/out,
//! flow removed), [`port`], [`multipart`], [`group`], [`meter`], [`nicira`] (NX messages),
//! [`bundle`] (ONF bundles), [`text`] and [`packet_text`] (printing helpers). FLOW_MOD lives in
//! [`crate::openflow::flow`].

pub mod basic;
pub mod bundle;
pub mod group;
pub mod meter;
pub mod multipart;
pub mod nicira;
pub mod packet;
pub mod packet_text;
pub mod port;
pub mod text;

pub use basic::{AsyncConfig, ErrorMsg, FeaturesReply, Hello, HelloElement, Role, SwitchConfig};
pub use bundle::{BundleAdd, BundleControl};
pub use group::{Bucket, GroupDesc, GroupMod, GroupStats};
pub use meter::{MeterBand, MeterConfig, MeterMod, MeterStats};
pub use multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, GroupFeatures, MeterFeatures, MultipartReply,
    MultipartReplyBody, MultipartRequest, MultipartRequestBody, PortStats, TableStats,
};
pub use nicira::PacketIn2;
pub use packet::{FlowRemoved, PacketIn, PacketOut};
pub use port::{Port, PortMod, PortStatus, TableMod};

use crate::openflow::error::{ErrorCode, ONF_EXPERIMENTER};
pub use crate::openflow::flow::FlowMod;
use crate::openflow::wire::{patch_u16, Reader};
use crate::openflow::DecodeError;
use text::{hex_dump, version_tag};

/// The OpenFlow 1.3 wire version.
pub const OFP13_VERSION: u8 = 4;
/// Size of `ofp_header`.
pub const HEADER_LEN: usize = 8;

// === Header ===

/// `ofp_header`: every OpenFlow message starts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub msg_type: MsgType,
    /// Total message length, header included.
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Reads the 8 header bytes (no checks beyond their presence).
    pub fn decode(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        Ok(Header { version: r.u8()?, msg_type: MsgType::from(r.u8()?), length: r.u16()?, xid: r.u32()? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.msg_type.into());
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.xid.to_be_bytes());
    }
}

macro_rules! msg_types {
    ($( $v:ident = $n:literal, $name:literal; )*) => {
        /// `ofp_type` of OpenFlow 1.3.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MsgType {
            $( $v, )*
            Unknown(u8),
        }

        impl From<u8> for MsgType {
            fn from(v: u8) -> Self {
                match v { $( $n => MsgType::$v, )* other => MsgType::Unknown(other) }
            }
        }

        impl From<MsgType> for u8 {
            fn from(t: MsgType) -> u8 {
                match t { $( MsgType::$v => $n, )* MsgType::Unknown(other) => other }
            }
        }

        impl MsgType {
            /// OVS's name (`OFPT_HELLO`), `None` for unknown types.
            pub fn name(self) -> Option<&'static str> {
                match self { $( MsgType::$v => Some($name), )* MsgType::Unknown(_) => None }
            }
        }
    };
}

msg_types! {
    Hello = 0, "OFPT_HELLO";
    Error = 1, "OFPT_ERROR";
    EchoRequest = 2, "OFPT_ECHO_REQUEST";
    EchoReply = 3, "OFPT_ECHO_REPLY";
    Experimenter = 4, "OFPT_EXPERIMENTER";
    FeaturesRequest = 5, "OFPT_FEATURES_REQUEST";
    FeaturesReply = 6, "OFPT_FEATURES_REPLY";
    GetConfigRequest = 7, "OFPT_GET_CONFIG_REQUEST";
    GetConfigReply = 8, "OFPT_GET_CONFIG_REPLY";
    SetConfig = 9, "OFPT_SET_CONFIG";
    PacketIn = 10, "OFPT_PACKET_IN";
    FlowRemoved = 11, "OFPT_FLOW_REMOVED";
    PortStatus = 12, "OFPT_PORT_STATUS";
    PacketOut = 13, "OFPT_PACKET_OUT";
    FlowMod = 14, "OFPT_FLOW_MOD";
    GroupMod = 15, "OFPT_GROUP_MOD";
    PortMod = 16, "OFPT_PORT_MOD";
    TableMod = 17, "OFPT_TABLE_MOD";
    MultipartRequest = 18, "OFPT_MULTIPART_REQUEST";
    MultipartReply = 19, "OFPT_MULTIPART_REPLY";
    BarrierRequest = 20, "OFPT_BARRIER_REQUEST";
    BarrierReply = 21, "OFPT_BARRIER_REPLY";
    QueueGetConfigRequest = 22, "OFPT_QUEUE_GET_CONFIG_REQUEST";
    QueueGetConfigReply = 23, "OFPT_QUEUE_GET_CONFIG_REPLY";
    RoleRequest = 24, "OFPT_ROLE_REQUEST";
    RoleReply = 25, "OFPT_ROLE_REPLY";
    GetAsyncRequest = 26, "OFPT_GET_ASYNC_REQUEST";
    GetAsyncReply = 27, "OFPT_GET_ASYNC_REPLY";
    SetAsync = 28, "OFPT_SET_ASYNC";
    MeterMod = 29, "OFPT_METER_MOD";
}

// === Framing ===

/// How many bytes the next whole message at the start of `buf` takes: `Ok(None)` while its
/// header or body is still incomplete, an error when its length field is below the header size
/// (the stream cannot be resynchronised after that; OVS drops such a connection).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len < HEADER_LEN {
        return Err(DecodeError::new(
            ErrorCode::BAD_REQUEST_BAD_LEN,
            "ofp_header",
            format!("length {len} is shorter than the header"),
        ));
    }
    Ok(if buf.len() >= len { Some(len) } else { None })
}

// === Message ===

/// An experimenter message we do not decode, kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experimenter {
    pub experimenter: u32,
    pub exp_type: u32,
    pub data: Vec<u8>,
}

/// One OpenFlow message, without its header (the xid is passed to [`encode`] separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    /// An experimenter message other than the Nicira/ONF ones below.
    Experimenter(Experimenter),
    FeaturesRequest,
    FeaturesReply(FeaturesReply),
    PacketIn(PacketIn),
    PacketOut(PacketOut),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PortMod(PortMod),
    FlowMod(FlowMod),
    TableMod(TableMod),
    GroupMod(GroupMod),
    MeterMod(MeterMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    BarrierRequest,
    BarrierReply,
    RoleRequest(Role),
    RoleReply(Role),
    GetAsyncRequest,
    GetAsyncReply(AsyncConfig),
    SetAsync(AsyncConfig),
    /// NXT_SET_CONTROLLER_ID: the id OVS puts in NXAST_CONTROLLER2-directed packet-ins.
    SetControllerId(u16),
    /// NXT_SET_PACKET_IN_FORMAT: 0 standard, 1 nxt_packet_in, 2 nxt_packet_in2.
    SetPacketInFormat(u32),
    PacketIn2(PacketIn2),
    Resume(PacketIn2),
    BundleControl(BundleControl),
    BundleAdd(BundleAdd),
    /// A message type we do not know (or a version other than 1.3 for a non-HELLO is refused
    /// before this); `header.xid` is ignored on encode in favour of the xid given.
    Unknown {
        header: Header,
        body: Vec<u8>,
    },
}

fn bad_len(what: &'static str, detail: String) -> DecodeError {
    DecodeError::new(ErrorCode::BAD_REQUEST_BAD_LEN, what, detail)
}

/// Requires that `r` has been read completely (fixed-size messages may not carry extra bytes).
fn finish(r: &Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(bad_len(what, format!("{} unexpected trailing bytes", r.remaining())))
    }
}

/// Decodes exactly one message: `buf` must hold one whole message and nothing else (use
/// [`frame_len`] to cut a stream). The version must be OpenFlow 1.3, except for HELLO, which
/// any version may send (OVS 3.1 sends a 1.5 HELLO when its protocols are unset).
pub fn decode(buf: &[u8]) -> Result<(Header, Message), DecodeError> {
    let mut r = Reader::new(buf, "ofp_header", ErrorCode::BAD_REQUEST_BAD_LEN);
    let header = Header::decode(&mut r)?;
    if header.length as usize != buf.len() {
        return Err(bad_len("ofp_header", format!("length field {} but {} bytes", header.length, buf.len())));
    }
    if header.version != OFP13_VERSION && header.msg_type != MsgType::Hello {
        return Err(DecodeError::new(
            ErrorCode::BAD_REQUEST_BAD_VERSION,
            "ofp_header",
            format!("version {:#04x}, only 0x04 (OpenFlow 1.3) is spoken", header.version),
        ));
    }
    let what = header.msg_type.name().unwrap_or("ofp_message");
    let mut r = r.context(what, ErrorCode::BAD_REQUEST_BAD_LEN);
    let msg = decode_body(&header, &mut r)?;
    Ok((header, msg))
}

fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let what = r.what();
    let empty = |r: &Reader<'_>, m: Message| finish(r, what).map(|_| m);
    let msg = match header.msg_type {
        MsgType::Hello => Message::Hello(Hello::decode(r)?),
        MsgType::Error => Message::Error(ErrorMsg::decode(r)?),
        MsgType::EchoRequest => Message::EchoRequest(r.take_rest().to_vec()),
        MsgType::EchoReply => Message::EchoReply(r.take_rest().to_vec()),
        MsgType::Experimenter => return decode_experimenter(header, r),
        MsgType::FeaturesRequest => return empty(r, Message::FeaturesRequest),
        MsgType::FeaturesReply => Message::FeaturesReply(FeaturesReply::decode(r)?),
        MsgType::PacketIn => Message::PacketIn(PacketIn::decode(r)?),
        MsgType::PacketOut => Message::PacketOut(PacketOut::decode(r)?),
        MsgType::FlowRemoved => Message::FlowRemoved(FlowRemoved::decode(r)?),
        MsgType::PortStatus => Message::PortStatus(PortStatus::decode(r)?),
        MsgType::PortMod => Message::PortMod(PortMod::decode(r)?),
        MsgType::FlowMod => Message::FlowMod(FlowMod::decode_body(r)?),
        MsgType::TableMod => Message::TableMod(TableMod::decode(r)?),
        MsgType::GroupMod => Message::GroupMod(GroupMod::decode(r)?),
        MsgType::MeterMod => Message::MeterMod(MeterMod::decode(r)?),
        MsgType::MultipartRequest => Message::MultipartRequest(MultipartRequest::decode(r)?),
        MsgType::MultipartReply => Message::MultipartReply(MultipartReply::decode(r)?),
        MsgType::GetConfigRequest => return empty(r, Message::GetConfigRequest),
        MsgType::GetConfigReply => Message::GetConfigReply(SwitchConfig::decode(r)?),
        MsgType::SetConfig => Message::SetConfig(SwitchConfig::decode(r)?),
        MsgType::BarrierRequest => return empty(r, Message::BarrierRequest),
        MsgType::BarrierReply => return empty(r, Message::BarrierReply),
        MsgType::RoleRequest => Message::RoleRequest(Role::decode(r)?),
        MsgType::RoleReply => Message::RoleReply(Role::decode(r)?),
        MsgType::GetAsyncRequest => return empty(r, Message::GetAsyncRequest),
        MsgType::GetAsyncReply => Message::GetAsyncReply(AsyncConfig::decode(r)?),
        MsgType::SetAsync => Message::SetAsync(AsyncConfig::decode(r)?),
        _ => Message::Unknown { header: *header, body: r.take_rest().to_vec() },
    };
    finish(r, what)?;
    Ok(msg)
}

fn decode_experimenter(header: &Header, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let experimenter = r.u32()?;
    let exp_type = r.u32()?;
    let msg = match (experimenter, exp_type) {
        (nicira::NX_VENDOR_ID, nicira::NXT_SET_CONTROLLER_ID) => {
            let mut r = r.context("NXT_SET_CONTROLLER_ID", ErrorCode::BAD_REQUEST_BAD_LEN);
            r.skip(6)?;
            let id = r.u16()?;
            finish(&r, "NXT_SET_CONTROLLER_ID")?;
            Message::SetControllerId(id)
        }
        (nicira::NX_VENDOR_ID, nicira::NXT_SET_PACKET_IN_FORMAT) => {
            let mut r = r.context("NXT_SET_PACKET_IN_FORMAT", ErrorCode::BAD_REQUEST_BAD_LEN);
            let f = r.u32()?;
            finish(&r, "NXT_SET_PACKET_IN_FORMAT")?;
            Message::SetPacketInFormat(f)
        }
        (nicira::NX_VENDOR_ID, nicira::NXT_PACKET_IN2) => {
            Message::PacketIn2(PacketIn2::decode(&mut r.context("NXT_PACKET_IN2", ErrorCode::BAD_REQUEST_BAD_LEN))?)
        }
        (nicira::NX_VENDOR_ID, nicira::NXT_RESUME) => {
            Message::Resume(PacketIn2::decode(&mut r.context("NXT_RESUME", ErrorCode::BAD_REQUEST_BAD_LEN))?)
        }
        (ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_CONTROL) => {
            let mut r = r.context("ONFT_BUNDLE_CONTROL", ErrorCode::BAD_REQUEST_BAD_LEN);
            Message::BundleControl(BundleControl::decode(&mut r)?)
        }
        (ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_ADD_MESSAGE) => {
            let mut r = r.context("ONFT_BUNDLE_ADD_MESSAGE", ErrorCode::BAD_REQUEST_BAD_LEN);
            Message::BundleAdd(BundleAdd::decode(&mut r, header)?)
        }
        _ => Message::Experimenter(Experimenter { experimenter, exp_type, data: r.take_rest().to_vec() }),
    };
    Ok(msg)
}

// === Encoding ===

/// The largest OpenFlow message: its length is a u16.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message is longer than its 16-bit length field can say: sending it would corrupt the
    /// stream (the peer would frame the rest of it as the next message).
    #[error("{msg_type:?} message of {len} bytes does not fit OpenFlow's 16-bit length (at most 65535)")]
    TooLong { msg_type: MsgType, len: usize },
}

/// The message's bytes with `xid`, OpenFlow 1.3 version.
///
/// # Panics
/// When the message is over [`MAX_MESSAGE_LEN`] bytes: for messages built from trusted, small
/// parts (tests, tools); anything built from outside input goes through [`try_encode`].
pub fn encode(msg: &Message, xid: u32) -> Vec<u8> {
    match try_encode(msg, xid) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`encode`], refusing a message that does not fit instead of corrupting it.
pub fn try_encode(msg: &Message, xid: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    try_encode_into(msg, xid, &mut out)?;
    Ok(out)
}

/// Appends the message to `out` (OpenFlow 1.3; an `Unknown` keeps its own version).
///
/// # Panics
/// When the message is over [`MAX_MESSAGE_LEN`] bytes (see [`encode`]); the session and every
/// path fed from outside use [`try_encode_into`].
pub fn encode_into(msg: &Message, xid: u32, out: &mut Vec<u8>) {
    if let Err(e) = try_encode_into(msg, xid, out) {
        panic!("{e}");
    }
}

/// Appends the message to `out`, or leaves `out` as it was and refuses a message over
/// [`MAX_MESSAGE_LEN`] bytes. Returns the message's length.
pub fn try_encode_into(msg: &Message, xid: u32, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let version = match msg {
        Message::Unknown { header, .. } => header.version,
        _ => OFP13_VERSION,
    };
    try_encode_version(msg, version, xid, out)
}

/// Appends the message to `out` with an explicit header version (a HELLO of another version
/// re-encodes as it came).
///
/// # Panics
/// When the message is over [`MAX_MESSAGE_LEN`] bytes (see [`try_encode_version`]).
pub fn encode_version(msg: &Message, version: u8, xid: u32, out: &mut Vec<u8>) {
    if let Err(e) = try_encode_version(msg, version, xid, out) {
        panic!("{e}");
    }
}

/// [`encode_version`] that refuses, leaving `out` unchanged, a message whose length does not
/// fit the header's u16 (every inner length is bounded by the message's, so this one check
/// covers the nested `len as u16` of matches, actions and instructions too).
pub fn try_encode_version(msg: &Message, version: u8, xid: u32, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    let header = Header { version, msg_type: msg_type(msg), length: 0, xid };
    header.encode(out);
    encode_body(msg, xid, out);
    let len = out.len() - start;
    if len > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLong { msg_type: msg_type(msg), len });
    }
    patch_u16(out, start + 2, len as u16);
    Ok(len)
}

/// Appends the message with its length field patched as `len as u16` and no check: only for a
/// message nested in another (a bundled message), whose container's own check refuses the whole
/// when it is too long (the container is always longer than what it holds).
pub(crate) fn encode_nested(msg: &Message, xid: u32, out: &mut Vec<u8>) {
    let version = match msg {
        Message::Unknown { header, .. } => header.version,
        _ => OFP13_VERSION,
    };
    let start = out.len();
    let header = Header { version, msg_type: msg_type(msg), length: 0, xid };
    header.encode(out);
    encode_body(msg, xid, out);
    let len = out.len() - start;
    patch_u16(out, start + 2, len as u16);
}

/// The `ofp_type` a message is sent as.
pub fn msg_type(msg: &Message) -> MsgType {
    use Message as M;
    match msg {
        M::Hello(_) => MsgType::Hello,
        M::Error(_) => MsgType::Error,
        M::EchoRequest(_) => MsgType::EchoRequest,
        M::EchoReply(_) => MsgType::EchoReply,
        M::Experimenter(_)
        | M::SetControllerId(_)
        | M::SetPacketInFormat(_)
        | M::PacketIn2(_)
        | M::Resume(_)
        | M::BundleControl(_)
        | M::BundleAdd(_) => MsgType::Experimenter,
        M::FeaturesRequest => MsgType::FeaturesRequest,
        M::FeaturesReply(_) => MsgType::FeaturesReply,
        M::PacketIn(_) => MsgType::PacketIn,
        M::PacketOut(_) => MsgType::PacketOut,
        M::FlowRemoved(_) => MsgType::FlowRemoved,
        M::PortStatus(_) => MsgType::PortStatus,
        M::PortMod(_) => MsgType::PortMod,
        M::FlowMod(_) => MsgType::FlowMod,
        M::TableMod(_) => MsgType::TableMod,
        M::GroupMod(_) => MsgType::GroupMod,
        M::MeterMod(_) => MsgType::MeterMod,
        M::MultipartRequest(_) => MsgType::MultipartRequest,
        M::MultipartReply(_) => MsgType::MultipartReply,
        M::GetConfigRequest => MsgType::GetConfigRequest,
        M::GetConfigReply(_) => MsgType::GetConfigReply,
        M::SetConfig(_) => MsgType::SetConfig,
        M::BarrierRequest => MsgType::BarrierRequest,
        M::BarrierReply => MsgType::BarrierReply,
        M::RoleRequest(_) => MsgType::RoleRequest,
        M::RoleReply(_) => MsgType::RoleReply,
        M::GetAsyncRequest => MsgType::GetAsyncRequest,
        M::GetAsyncReply(_) => MsgType::GetAsyncReply,
        M::SetAsync(_) => MsgType::SetAsync,
        M::Unknown { header, .. } => header.msg_type,
    }
}

fn put_experimenter(out: &mut Vec<u8>, experimenter: u32, exp_type: u32) {
    out.extend_from_slice(&experimenter.to_be_bytes());
    out.extend_from_slice(&exp_type.to_be_bytes());
}

fn encode_body(msg: &Message, xid: u32, out: &mut Vec<u8>) {
    use Message as M;
    match msg {
        M::Hello(h) => h.encode(out),
        M::Error(e) => e.encode(out),
        M::EchoRequest(d) | M::EchoReply(d) => out.extend_from_slice(d),
        M::Experimenter(e) => {
            put_experimenter(out, e.experimenter, e.exp_type);
            out.extend_from_slice(&e.data);
        }
        M::FeaturesRequest | M::GetConfigRequest | M::BarrierRequest | M::BarrierReply | M::GetAsyncRequest => {}
        M::FeaturesReply(f) => f.encode(out),
        M::PacketIn(p) => p.encode(out),
        M::PacketOut(p) => p.encode(out),
        M::FlowRemoved(f) => f.encode(out),
        M::PortStatus(p) => p.encode(out),
        M::PortMod(p) => p.encode(out),
        M::FlowMod(f) => f.encode_body(out),
        M::TableMod(t) => t.encode(out),
        M::GroupMod(g) => g.encode(out),
        M::MeterMod(m) => m.encode(out),
        M::MultipartRequest(m) => m.encode(out),
        M::MultipartReply(m) => m.encode(out),
        M::GetConfigReply(c) | M::SetConfig(c) => c.encode(out),
        M::RoleRequest(r) | M::RoleReply(r) => r.encode(out),
        M::GetAsyncReply(a) | M::SetAsync(a) => a.encode(out),
        M::SetControllerId(id) => {
            put_experimenter(out, nicira::NX_VENDOR_ID, nicira::NXT_SET_CONTROLLER_ID);
            out.extend_from_slice(&[0; 6]);
            out.extend_from_slice(&id.to_be_bytes());
        }
        M::SetPacketInFormat(f) => {
            put_experimenter(out, nicira::NX_VENDOR_ID, nicira::NXT_SET_PACKET_IN_FORMAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        M::PacketIn2(p) => {
            put_experimenter(out, nicira::NX_VENDOR_ID, nicira::NXT_PACKET_IN2);
            p.encode(out);
        }
        M::Resume(p) => {
            put_experimenter(out, nicira::NX_VENDOR_ID, nicira::NXT_RESUME);
            p.encode(out);
        }
        M::BundleControl(b) => {
            put_experimenter(out, ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_CONTROL);
            b.encode(out);
        }
        M::BundleAdd(b) => {
            put_experimenter(out, ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_ADD_MESSAGE);
            b.encode(out, xid);
        }
        M::Unknown { body, .. } => out.extend_from_slice(body),
    }
}

// === Text ===

/// The name OVS gives a message (`OFPT_HELLO`, `NXT_PACKET_IN2`, `OFPST_FLOW request`), from its
/// raw bytes; `None` when OVS would not recognise it.
fn raw_name(buf: &[u8]) -> Option<String> {
    let t = MsgType::from(*buf.get(1)?);
    let be32 = |at: usize| buf.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    match t {
        MsgType::Experimenter => {
            let name = match (be32(8)?, be32(12)?) {
                (nicira::NX_VENDOR_ID, nicira::NXT_SET_CONTROLLER_ID) => "NXT_SET_CONTROLLER_ID",
                (nicira::NX_VENDOR_ID, nicira::NXT_SET_PACKET_IN_FORMAT) => "NXT_SET_PACKET_IN_FORMAT",
                (nicira::NX_VENDOR_ID, nicira::NXT_PACKET_IN2) => "NXT_PACKET_IN2",
                (nicira::NX_VENDOR_ID, nicira::NXT_RESUME) => "NXT_RESUME",
                (ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_CONTROL) => "ONFT_BUNDLE_CONTROL",
                (ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_ADD_MESSAGE) => "ONFT_BUNDLE_ADD_MESSAGE",
                (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_CANCEL) => "ONFT_FLOW_MONITOR_CANCEL",
                (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_PAUSED) => "ONFT_FLOW_MONITOR_PAUSED",
                (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_RESUMED) => "ONFT_FLOW_MONITOR_RESUMED",
                (ONF_EXPERIMENTER, ONFT_ROLE_STATUS) => "ONFT_ROLE_STATUS",
                _ => return None,
            };
            Some(name.to_string())
        }
        MsgType::MultipartRequest | MsgType::MultipartReply => {
            let mp = u16::from_be_bytes([*buf.get(8)?, *buf.get(9)?]);
            let dir = if t == MsgType::MultipartRequest { "request" } else { "reply" };
            if mp == multipart::mp_type::EXPERIMENTER
                && (be32(16)?, be32(20)?) == (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_CANCEL)
            {
                return Some(format!("ONFST_FLOW_MONITOR {dir}"));
            }
            Some(format!("{} {}", multipart::mp_type_name(mp)?, dir))
        }
        t => t.name().map(str::to_string),
    }
}

/// `NAME (OF1.3) (xid=0x..):`, the first words OVS prints for a message.
fn name_line(buf: &[u8]) -> Option<String> {
    let name = raw_name(buf)?;
    let xid = u32::from_be_bytes([*buf.get(4)?, *buf.get(5)?, *buf.get(6)?, *buf.get(7)?]);
    Some(format!("{}{} (xid=0x{:x}):", name, version_tag(buf[0]), xid))
}

/// What `ovs-ofctl ofp-print` prints for a decoded message, without the trailing newline.
pub fn ofp_print(header: &Header, msg: &Message) -> String {
    let bytes = encode_for_print(header, msg);
    let mut s = match raw_check(&bytes) {
        Err(code) => format!("***decode error: {code}***\n{}", hex_dump(&bytes)),
        Ok(()) => name_line(&bytes).unwrap_or_default() + &body_text(header, msg, &bytes),
    };
    s.truncate(s.trim_end().len());
    s
}

/// OVS's first decoding stage (`ofpraw_decode`): is the type (vendor, subtype, multipart type)
/// one OVS knows, and does the length fit its fixed part? OVS prints a failure here without the
/// message's name, so the printer needs to know.
fn raw_check(buf: &[u8]) -> Result<(), ErrorCode> {
    let bad_len = Err(ErrorCode::BAD_REQUEST_BAD_LEN);
    let body = buf.len().saturating_sub(HEADER_LEN);
    let be16 = |at: usize| buf.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |at: usize| buf.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    // (minimum body length, whether that is also the maximum)
    let (min, exact) = match MsgType::from(buf.get(1).copied().unwrap_or(0xff)) {
        MsgType::Hello | MsgType::EchoRequest | MsgType::EchoReply => (0, false),
        MsgType::Error => (4, false),
        MsgType::Experimenter => {
            let (Some(vendor), Some(subtype)) = (be32(8), be32(12)) else { return bad_len };
            let (min, exact) = match (vendor, subtype) {
                (nicira::NX_VENDOR_ID, nicira::NXT_SET_PACKET_IN_FORMAT) => (12, true),
                (nicira::NX_VENDOR_ID, nicira::NXT_SET_CONTROLLER_ID) => (16, true),
                (nicira::NX_VENDOR_ID, nicira::NXT_PACKET_IN2 | nicira::NXT_RESUME) => (8, false),
                (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_CANCEL) => (12, true),
                (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_PAUSED | ONFT_FLOW_MONITOR_RESUMED) => (8, true),
                (ONF_EXPERIMENTER, ONFT_ROLE_STATUS) => (24, false),
                (nicira::NX_VENDOR_ID, _) | (ONF_EXPERIMENTER, _)
                    if subtype != bundle::ONFT_BUNDLE_CONTROL && subtype != bundle::ONFT_BUNDLE_ADD_MESSAGE =>
                {
                    return Err(ErrorCode::BAD_REQUEST_BAD_EXP_TYPE)
                }
                (ONF_EXPERIMENTER, bundle::ONFT_BUNDLE_CONTROL) => {
                    return if body >= 16 && (body - 16) % 8 == 0 { Ok(()) } else { bad_len };
                }
                (ONF_EXPERIMENTER, _) => (24, false),
                _ => return Err(ErrorCode::BAD_REQUEST_BAD_EXPERIMENTER),
            };
            (min, exact)
        }
        MsgType::FeaturesRequest
        | MsgType::GetConfigRequest
        | MsgType::BarrierRequest
        | MsgType::BarrierReply
        | MsgType::GetAsyncRequest => (0, true),
        MsgType::FeaturesReply => (24, true),
        MsgType::GetConfigReply | MsgType::SetConfig => (4, true),
        MsgType::PacketIn | MsgType::PacketOut => (16, false),
        MsgType::FlowRemoved | MsgType::FlowMod => (40, false),
        MsgType::PortStatus => (72, true),
        MsgType::GroupMod | MsgType::MeterMod => (8, false),
        MsgType::PortMod => (32, true),
        MsgType::TableMod => (8, true),
        MsgType::QueueGetConfigRequest => (8, true),
        // 8 bytes, then queues in whole 8-byte units.
        MsgType::QueueGetConfigReply => return if body >= 8 && body % 8 == 0 { Ok(()) } else { bad_len },
        MsgType::RoleRequest | MsgType::RoleReply => (16, true),
        MsgType::GetAsyncReply | MsgType::SetAsync => (24, true),
        t @ (MsgType::MultipartRequest | MsgType::MultipartReply) => {
            let Some(mp) = be16(8) else { return bad_len };
            let request = t == MsgType::MultipartRequest;
            use multipart::mp_type as m;
            let (min, exact) = match (mp, request) {
                (m::DESC | m::TABLE | m::GROUP_DESC | m::GROUP_FEATURES | m::METER_FEATURES | m::PORT_DESC, true) => {
                    (0, true)
                }
                (m::FLOW | m::AGGREGATE, true) => (32, false),
                (m::PORT_STATS | m::QUEUE | m::GROUP | m::METER | m::METER_CONFIG, true) => (8, true),
                (m::DESC, false) => (1056, true),
                (m::AGGREGATE, false) => (24, true),
                (m::GROUP_FEATURES, false) => (40, true),
                (m::METER_FEATURES, false) => (16, true),
                (m::TABLE_FEATURES, _) | (_, false) if mp <= m::PORT_DESC => (0, false),
                // ONFST_FLOW_MONITOR (`uint8_t[8][]`): whole 8-byte units after the vendor header.
                (m::EXPERIMENTER, _)
                    if be32(16) == Some(ONF_EXPERIMENTER) && be32(20) == Some(ONFT_FLOW_MONITOR_CANCEL) =>
                {
                    return if body >= 16 && (body - 16) % 8 == 0 { Ok(()) } else { bad_len };
                }
                // What else OVS knows in OpenFlow 1.3: Nicira's IPFIX statistics (3, 4).
                (m::EXPERIMENTER, _) => match (be32(16), be32(20)) {
                    (Some(nicira::NX_VENDOR_ID), Some(3 | 4)) => (8, false),
                    (Some(nicira::NX_VENDOR_ID | ONF_EXPERIMENTER), Some(_)) => {
                        return Err(ErrorCode::BAD_REQUEST_BAD_EXP_TYPE)
                    }
                    (Some(_), Some(_)) => return Err(ErrorCode::BAD_REQUEST_BAD_EXPERIMENTER),
                    _ => return bad_len,
                },
                _ => return Err(ErrorCode::BAD_REQUEST_BAD_MULTIPART),
            };
            (min + 8, exact)
        }
        MsgType::Unknown(_) => return Err(ErrorCode::BAD_REQUEST_BAD_TYPE),
    };
    if body < min || (exact && body != min) {
        bad_len
    } else {
        Ok(())
    }
}

fn encode_for_print(header: &Header, msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_version(msg, header.version, header.xid, &mut out);
    out
}

fn body_text(header: &Header, msg: &Message, bytes: &[u8]) -> String {
    use Message as M;
    match msg {
        M::Hello(h) => h.fmt_body(header.version, bytes),
        M::Error(e) => e.fmt_body(bytes),
        M::EchoRequest(d) | M::EchoReply(d) => format!(" {} bytes of payload\n{}", d.len(), hex_dump(d)),
        M::FeaturesRequest | M::GetConfigRequest | M::BarrierRequest | M::BarrierReply | M::GetAsyncRequest => {
            String::new()
        }
        M::FeaturesReply(f) => f.fmt_body(),
        M::PacketIn(p) => p.fmt_body(),
        M::PacketOut(p) => p.fmt_body(),
        M::FlowRemoved(f) => f.fmt_body(),
        M::PortStatus(p) => p.fmt_body(),
        M::PortMod(p) => p.fmt_body(),
        M::FlowMod(f) => format!(" {}", f.ofp_print_body()),
        M::TableMod(t) => t.fmt_body(),
        M::GroupMod(g) => g.fmt_body(),
        M::MeterMod(m) => m.fmt_body(),
        M::MultipartRequest(m) => match &m.body {
            multipart::MultipartRequestBody::Unknown { mp_type: multipart::mp_type::EXPERIMENTER, body }
                if body.len() >= 8 && body[..8] == [0x4f, 0x4e, 0x46, 0, 0, 0, 0x07, 0x4e] =>
            {
                multipart::onf_flow_monitor_request_text(&body[8..], bytes)
            }
            _ => m.fmt_body(),
        },
        M::MultipartReply(m) => match &m.body {
            multipart::MultipartReplyBody::Unknown { mp_type: multipart::mp_type::EXPERIMENTER, body }
                if body.len() >= 8 && body[..8] == [0x4f, 0x4e, 0x46, 0, 0, 0, 0x07, 0x4e] =>
            {
                multipart::onf_flow_monitor_reply_text(&body[8..], bytes)
            }
            _ => m.fmt_body(),
        },
        M::GetConfigReply(c) | M::SetConfig(c) => c.fmt_body(),
        M::RoleRequest(r) | M::RoleReply(r) => r.fmt_body(),
        M::GetAsyncReply(a) | M::SetAsync(a) => a.fmt_body(),
        M::SetControllerId(id) => format!(" id={id}"),
        M::SetPacketInFormat(f) => {
            let name = match f {
                0 => "standard".to_string(),
                1 => "nxt_packet_in".to_string(),
                2 => "nxt_packet_in2".to_string(),
                n => format!("{n}"),
            };
            format!(" format={name}")
        }
        M::PacketIn2(p) | M::Resume(p) => p.fmt_body(),
        M::BundleControl(b) => b.fmt_body(),
        M::BundleAdd(b) => b.fmt_body(header.xid),
        M::Experimenter(e) => onf_body_text(e),
        // Types OVS knows but we keep raw (queue config...): name only.
        M::Unknown { header: h, body } if h.msg_type == MsgType::QueueGetConfigReply => {
            text::queue_config_text(body, bytes)
        }
        M::Unknown { .. } => String::new(),
    }
}

/// ONF messages of OpenFlow 1.3 OVS sends a controller and we keep raw (`Experimenter`).
pub const ONFT_FLOW_MONITOR_CANCEL: u32 = 1870;
pub const ONFT_FLOW_MONITOR_PAUSED: u32 = 1871;
pub const ONFT_FLOW_MONITOR_RESUMED: u32 = 1872;
pub const ONFT_ROLE_STATUS: u32 = 1911;

/// The text OVS prints after the name of an ONF message we keep raw (lengths already checked
/// by `raw_check`).
fn onf_body_text(e: &Experimenter) -> String {
    let be32 = |at: usize| e.data.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    match (e.experimenter, e.exp_type) {
        (ONF_EXPERIMENTER, ONFT_FLOW_MONITOR_CANCEL) => format!(" id={}", be32(0)),
        (ONF_EXPERIMENTER, ONFT_ROLE_STATUS) if e.data.len() >= 16 => {
            // `ofputil_format_role_status`.
            let role = match be32(0) {
                0 => "nochange".to_string(),
                1 => "equal".to_string(),
                2 => "primary".to_string(),
                3 => "secondary".to_string(),
                n => n.to_string(),
            };
            let mut s = format!(" role={role}");
            let generation = u64::from_be_bytes(e.data[8..16].try_into().unwrap_or([0xff; 8]));
            if generation != u64::MAX {
                s.push_str(&format!(" generation_id={generation}"));
            }
            let reason = match e.data[4] {
                0 => "primary_request".to_string(),
                1 => "configuration_changed".to_string(),
                2 => "experimenter_data_changed".to_string(),
                n => format!("unknown({n})"),
            };
            s + " reason=" + &reason
        }
        _ => String::new(),
    }
}

/// OVS's `ofp_to_string` for arbitrary bytes (an ERROR's data, a bundled message): the message
/// text when it decodes, else a note on what is wrong and a hex dump. Ends with a newline unless
/// empty-ish.
pub fn ofp_to_string(buf: &[u8]) -> String {
    if buf.is_empty() {
        return "OpenFlow message is empty\n".to_string();
    }
    if buf.len() < HEADER_LEN {
        return format!("OpenFlow packet too short (only {} bytes):\n{}", buf.len(), hex_dump(buf));
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len > buf.len() {
        let head = name_line(buf).map(|l| l + "\n").unwrap_or_default();
        return format!("{head}(***truncated to {} bytes from {}***)\n{}", buf.len(), len, hex_dump(buf));
    }
    if len < buf.len() {
        return format!("(***only uses {} bytes out of {}***)\n{}", len, buf.len(), hex_dump(buf));
    }
    match decode(buf) {
        Ok((h, m)) => ofp_print(&h, &m) + "\n",
        Err(e) => {
            let (head, code) = match raw_check(buf) {
                Err(code) => (String::new(), code),
                Ok(()) => (name_line(buf).map(|l| l + " ").unwrap_or_default(), e.code),
            };
            format!("{head}***decode error: {code}***\n{}", hex_dump(buf))
        }
    }
}

#[cfg(test)]
mod tests;
