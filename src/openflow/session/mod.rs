//! One OpenFlow 1.3 switch connection as a sans-IO state machine (in the style of quinn-proto):
//! bytes and `now` go in, bytes to send, [`Event`]s and the next deadline come out. It does no
//! IO, reads no clock and needs no runtime, so it is deterministic and is tested with simulated
//! time; the glommio task that owns the socket is a thin driver around it:
//!
//! ```text
//! loop {
//!     session.poll_transmit(&mut out); write_all(out);
//!     while let Some(ev) = session.poll_event() { ... }
//!     if session.is_closed() { break }            // after flushing what poll_transmit gave
//!     select! { bytes = read() => session.handle_input(&bytes, now()),   // EOF: close(PeerClosed)
//!               _ = sleep_until(session.poll_timeout()) => session.handle_timeout(now()) }
//! }
//! ```
//!
//! What it does: HELLO negotiation to 1.3 (version bitmap), FEATURES_REQUEST, the connection's
//! configuration (controller id, packet-in format, miss_send_len, async masks), the port list
//! (PORT_DESC, then kept current from PORT_STATUS), echo both ways, xid allocation,
//! request/reply correlation with deadlines, multipart reassembly, and OFPT_ERROR answers to
//! input that does not decode (as OVS answers ours).

mod pending;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::openflow::error::{ErrorCode, NX_VENDOR_ID, ONF_EXPERIMENTER};
use crate::openflow::message::multipart::{MultipartReplyBody, MultipartRequest, MultipartRequestBody};
use crate::openflow::message::{
    self, AsyncConfig, ErrorMsg, FeaturesReply, FlowRemoved, Header, Hello, Message, MsgType, PacketIn, PacketIn2,
    Port, PortStatus, SwitchConfig, HEADER_LEN, OFP13_VERSION,
};
use crate::openflow::DecodeError;
use pending::{Progress, Requests, Waiter};

/// The versions we speak, as a HELLO version bitmap: OpenFlow 1.3 only.
const OUR_VERSIONS: u32 = 1 << OFP13_VERSION;

/// OFPPR_* reasons of PORT_STATUS.
const PORT_ADD: u8 = 0;
const PORT_DELETE: u8 = 1;

// === Config ===

/// How packet-ins reach us: OFPT_PACKET_IN, or NXT_PACKET_IN2 (needed for pause/resume
/// continuations and userdata).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PacketInFormat {
    #[default]
    Standard,
    Nxt2,
}

/// What a session asks of its switch and how patient it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Idle time (no input at all) before we probe with ECHO_REQUEST.
    pub echo_interval: Duration,
    /// After the probe, how much longer without any input before the session closes.
    pub echo_timeout: Duration,
    /// How long a request (and each handshake step, HELLO included) may wait for its answer.
    pub request_timeout: Duration,
    /// Sent as NXT_SET_CONTROLLER_ID so `controller(id=K)` actions reach this connection alone.
    pub controller_id: Option<u16>,
    pub packet_in_format: PacketInFormat,
    /// SET_CONFIG's miss_send_len: how much of a table-miss packet we get (0xffff: all).
    pub miss_send_len: u16,
    /// Sent as OFPT_SET_ASYNC when set (e.g. to narrow packet-ins on one of several connections).
    pub async_config: Option<AsyncConfig>,
    /// Bytes (OpenFlow lengths of every part) one multipart reply may reassemble to; past it
    /// the request fails with [`Refusal::ReplyTooLarge`] and its later parts are ignored.
    pub multipart_max_bytes: usize,
    /// Parts one multipart reply may have (small parts would otherwise cost more than bytes).
    pub multipart_max_parts: usize,
    /// A multipart reply must be complete this long after its request at the latest: each part
    /// renews `request_timeout`, never beyond this fixed deadline.
    pub multipart_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            echo_interval: Duration::from_secs(5),
            echo_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            controller_id: None,
            packet_in_format: PacketInFormat::Standard,
            miss_send_len: 0xffff,
            async_config: None,
            multipart_max_bytes: 64 << 20,
            multipart_max_parts: 1 << 16,
            multipart_timeout: Duration::from_secs(60),
        }
    }
}

// === State, events, close reasons ===

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Our HELLO is queued; waiting for the switch's.
    Hello,
    /// Version agreed; waiting for FEATURES_REPLY and then the port description.
    Features,
    /// Handshake complete: `datapath_id`, `features` and `ports` are known.
    Ready,
    /// Finished; nothing more is accepted. Flush `poll_transmit` once more, then drop the socket.
    Closed,
}

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("no common OpenFlow version: switch offers bitmap {peer_versions:#x}, we speak 1.3")]
    Incompatible { peer_versions: u32 },
    #[error("switch refused our HELLO: {0}")]
    HelloRejected(ErrorCode),
    #[error("first message was {0}, not a HELLO")]
    NoHello(String),
    #[error("framing error, stream cannot be trusted: {0}")]
    Framing(DecodeError),
    #[error("handshake step {step} timed out")]
    HandshakeTimeout { step: &'static str },
    #[error("handshake step {step} failed: {code}")]
    HandshakeFailed { step: &'static str, code: ErrorCode },
    #[error("no input for the echo interval plus the echo timeout")]
    EchoTimeout,
    /// The driver saw EOF or a socket error.
    #[error("connection closed by the switch or the network")]
    PeerClosed,
    /// The application closed it.
    #[error("closed locally: {0}")]
    Local(String),
    /// The switch did not read what we sent: output stayed above its high-water mark for the
    /// stall timeout (the driver decides; the session only names it).
    #[error("output above {high_water} bytes for {secs} s: the switch does not read")]
    OutputStalled { high_water: usize, secs: u64 },
}

impl CloseReason {
    /// A short fixed name for metrics labels and logs (`echo_timeout`, `handshake_failed`...).
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::Incompatible { .. } | CloseReason::HelloRejected(_) | CloseReason::NoHello(_) => {
                "hello_failed"
            }
            CloseReason::Framing(_) => "framing_error",
            CloseReason::HandshakeTimeout { .. } => "handshake_timeout",
            CloseReason::HandshakeFailed { .. } => "handshake_failed",
            CloseReason::EchoTimeout => "echo_timeout",
            // Not "disconnected": the shard counts that once per switch that was ready.
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Local(_) => "closed_locally",
            CloseReason::OutputStalled { .. } => "output_stalled",
        }
    }
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished; `Session::ports` holds the full port list.
    Ready {
        datapath_id: u64,
    },
    PacketIn(PacketIn),
    PacketIn2(PacketIn2),
    /// A port changed; `Session::ports` already reflects it.
    PortStatus(PortStatus),
    FlowRemoved(FlowRemoved),
    /// The answer to a `request`/`barrier`: one message, or for a multipart reply the parts
    /// merged into one `MultipartReply` (flags without REPLY_MORE).
    Reply {
        xid: u32,
        messages: Vec<Message>,
    },
    /// The switch answered a `request`/`barrier` with OFPT_ERROR; or its reply did not decode, in
    /// which case `error` is the OFPT_ERROR we sent back about it.
    RequestFailed {
        xid: u32,
        error: ErrorMsg,
    },
    RequestTimedOut {
        xid: u32,
    },
    /// OFPT_ERROR for an xid nobody waits for: a fire-and-forget `send`, or the handshake's
    /// configuration messages.
    Error {
        xid: u32,
        error: ErrorMsg,
    },
    Closed {
        reason: CloseReason,
    },
    /// Something the session refused to do for the application: a message that does not fit
    /// OpenFlow's 16-bit length was not sent (a request with it fails here), or a multipart
    /// reply outgrew its bounds. For a request `xid` this is its only answer.
    Refused {
        xid: u32,
        reason: Refusal,
    },
    /// A well-formed message the session has no use for (an unknown type or experimenter
    /// message, a reply nobody waits for...): passed on, not answered with an error.
    Unhandled(Header, Box<Message>),
}

/// What [`Event::Refused`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The message was not sent: it does not fit one OpenFlow message.
    #[error(transparent)]
    Encode(#[from] message::EncodeError),
    /// The multipart reply passed `multipart_max_bytes` or `multipart_max_parts`.
    #[error("multipart reply over its bounds: {bytes} bytes in {parts} parts (at most {max_bytes} bytes, {max_parts} parts)")]
    ReplyTooLarge { bytes: usize, parts: usize, max_bytes: usize, max_parts: usize },
}

impl Refusal {
    /// A short fixed name for metrics labels (`message_too_large`, `multipart_too_large`).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Encode(_) => "message_too_large",
            Refusal::ReplyTooLarge { .. } => "multipart_too_large",
        }
    }
}

// === Session ===

/// One switch connection, sans IO. See the module documentation for the driver loop.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: SessionState,
    /// Bytes of an incomplete message carried over between `handle_input` calls.
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<Event>,
    requests: Requests,
    /// When the HELLO exchange must be complete (only in `Hello`).
    hello_deadline: Instant,
    last_input: Instant,
    /// When our echo probe went out, if one is outstanding.
    probe_sent: Option<Instant>,
    features: Option<FeaturesReply>,
    ports: Vec<Port>,
    /// Messages of a type or experimenter we do not know, answered with OFPT_ERROR.
    unsupported: u64,
}

impl Session {
    /// A session for a freshly connected switch; our HELLO (1.3 version bitmap) is queued.
    pub fn new(cfg: SessionConfig, now: Instant) -> Session {
        let mut s = Session {
            hello_deadline: now + cfg.request_timeout,
            cfg,
            state: SessionState::Hello,
            rx: Vec::new(),
            tx: Vec::with_capacity(1024),
            events: VecDeque::new(),
            requests: Requests::new(),
            last_input: now,
            probe_sent: None,
            features: None,
            ports: Vec::new(),
            unsupported: 0,
        };
        let xid = s.requests.alloc_xid();
        message::encode_into(&Message::Hello(Hello::with_bitmap(OUR_VERSIONS)), xid, &mut s.tx);
        s
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// How many messages of an unknown type, experimenter or experimenter subtype the switch
    /// sent (each answered with OFPBRC_BAD_TYPE / BAD_VENDOR / BAD_SUBTYPE).
    pub fn unsupported_messages(&self) -> u64 {
        self.unsupported
    }

    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    pub fn datapath_id(&self) -> Option<u64> {
        self.features.map(|f| f.datapath_id)
    }

    pub fn features(&self) -> Option<&FeaturesReply> {
        self.features.as_ref()
    }

    /// The switch's ports (LOCAL included), from PORT_DESC and kept current by PORT_STATUS.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Bytes queued for the switch and not yet taken by `poll_transmit`.
    pub fn queued_output(&self) -> usize {
        self.tx.len()
    }

    /// How many requests are waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    // --- output ---

    /// Appends the bytes to send to `out` and returns how many. Still yields queued bytes after
    /// the session closed (a HELLO_FAILED error, for one), so flush before dropping the socket.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.tx.len();
        if out.is_empty() {
            std::mem::swap(out, &mut self.tx);
        } else {
            out.append(&mut self.tx);
        }
        n
    }

    /// Whether `poll_event` has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let liveness = match self.state {
            SessionState::Closed => return None,
            SessionState::Hello => self.hello_deadline,
            SessionState::Features | SessionState::Ready => match self.probe_sent {
                None => self.last_input + self.cfg.echo_interval,
                Some(sent) => sent + self.cfg.echo_timeout,
            },
        };
        Some(match self.requests.next_deadline() {
            Some(d) => d.min(liveness),
            None => liveness,
        })
    }

    // --- application requests ---

    /// Queues `msg` with a fresh xid and expects no answer; an OFPT_ERROR for it comes back as
    /// [`Event::Error`] with that xid. After the session closed nothing is queued.
    pub fn send(&mut self, msg: &Message) -> u32 {
        let xid = self.requests.alloc_xid();
        self.send_with_xid(msg, xid);
        xid
    }

    /// Queues `msg` and waits for its answer: [`Event::Reply`], [`Event::RequestFailed`] or
    /// [`Event::RequestTimedOut`] after `request_timeout` (multipart parts each extend it).
    /// After the session closed nothing is queued and no event follows (the `Closed` event
    /// stands for every outstanding request).
    pub fn request(&mut self, msg: &Message, now: Instant) -> u32 {
        self.request_as(msg, Waiter::User, now)
    }

    /// A BARRIER_REQUEST tracked like a request: its `Reply` means the switch has finished
    /// every message sent before it (their errors, if any, came first).
    pub fn barrier(&mut self, now: Instant) -> u32 {
        self.request(&Message::BarrierRequest, now)
    }

    /// Closes the session: outstanding requests are dropped and [`Event::Closed`] is queued.
    /// Closing a closed session does nothing.
    pub fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        debug!(%reason, dpid = ?self.datapath_id(), "openflow session closed");
        self.state = SessionState::Closed;
        self.requests.clear();
        self.rx.clear();
        self.events.push_back(Event::Closed { reason });
    }

    /// Queues `msg`; one that does not fit OpenFlow's 16-bit length is refused (nothing is
    /// queued, the stream stays intact) and [`Event::Refused`] says so.
    fn send_with_xid(&mut self, msg: &Message, xid: u32) -> bool {
        if self.is_closed() {
            return false;
        }
        match message::try_encode_into(msg, xid, &mut self.tx) {
            Ok(_) => true,
            Err(e) => {
                warn!(xid, error = %e, "openflow message not sent");
                self.events.push_back(Event::Refused { xid, reason: Refusal::Encode(e) });
                false
            }
        }
    }

    fn request_as(&mut self, msg: &Message, waiter: Waiter, now: Instant) -> u32 {
        let xid = self.requests.alloc_xid();
        if !self.is_closed() {
            let c = &self.cfg;
            let limits = pending::Limits {
                max_bytes: c.multipart_max_bytes,
                max_parts: c.multipart_max_parts,
                until: now + c.multipart_timeout.max(c.request_timeout),
            };
            self.requests.insert(xid, waiter, now + c.request_timeout, limits);
            if !self.send_with_xid(msg, xid) {
                self.requests.remove(xid);
            }
        }
        xid
    }

    // --- input ---

    /// Feeds bytes read from the switch. Partial messages are kept until complete; every whole
    /// message is handled before this returns.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.is_closed() || bytes.is_empty() {
            return;
        }
        self.last_input = now;
        self.probe_sent = None;
        if self.rx.is_empty() {
            // Fast path: frame straight from the caller's buffer, keep only the tail.
            let used = self.handle_frames(bytes, now);
            if !self.is_closed() {
                self.rx.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.rx.extend_from_slice(bytes);
            let rx = std::mem::take(&mut self.rx);
            let used = self.handle_frames(&rx, now);
            if !self.is_closed() {
                self.rx = rx;
                self.rx.drain(..used);
            }
        }
    }

    /// Handles every whole message at the start of `buf`; returns how many bytes were used.
    fn handle_frames(&mut self, buf: &[u8], now: Instant) -> usize {
        let mut used = 0;
        while !self.is_closed() {
            match message::frame_len(&buf[used..]) {
                Ok(Some(n)) => {
                    self.handle_frame(&buf[used..used + n], now);
                    used += n;
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "openflow framing error, closing");
                    let header = &buf[used..used + HEADER_LEN];
                    let xid = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                    let err = ErrorMsg::for_request(e.code, header);
                    self.send_with_xid(&Message::Error(err), xid);
                    self.close(CloseReason::Framing(e));
                }
            }
        }
        used
    }

    fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        let xid = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let msg_type = MsgType::from(frame[1]);
        if self.state == SessionState::Hello && msg_type != MsgType::Hello {
            let name = msg_type.name().map_or_else(|| format!("type {}", frame[1]), str::to_string);
            // An OFPT_ERROR first is most likely the switch refusing our HELLO.
            if let Ok((_, Message::Error(e))) = message::decode(frame) {
                return self.close(CloseReason::HelloRejected(e.code));
            }
            return self.close(CloseReason::NoHello(name));
        }
        match message::decode(frame) {
            Ok((header, msg)) => match unsupported(&msg) {
                // A request of ours may be answered with anything; the application judges.
                Some(code) if !self.requests.contains(header.xid) => self.refuse_unsupported(frame, header, code),
                _ => self.handle_message(header, msg, now),
            },
            Err(e) => self.handle_malformed(frame, xid, msg_type, e),
        }
    }

    /// Answers a message OVS would not understand either as OVS does (`ofpraw_decode` failing
    /// in `handle_openflow`): OFPT_ERROR with the first 64 bytes of it, and the connection lives.
    fn refuse_unsupported(&mut self, frame: &[u8], header: Header, code: ErrorCode) {
        self.unsupported += 1;
        warn!(xid = header.xid, msg_type = frame[1], %code, "unsupported openflow message from switch, answered with an error");
        self.send_with_xid(&Message::Error(ErrorMsg::for_request(code, frame)), header.xid);
    }

    /// Answers a message that does not decode with OFPT_ERROR, as OVS would, and lives on.
    fn handle_malformed(&mut self, frame: &[u8], xid: u32, msg_type: MsgType, e: DecodeError) {
        warn!(error = %e, xid, ?msg_type, "malformed openflow message from switch");
        let err = ErrorMsg::for_request(e.code, frame);
        // Never answer an error with an error: two peers could loop forever.
        if msg_type != MsgType::Error {
            self.send_with_xid(&Message::Error(err.clone()), xid);
        }
        // A reply we cannot read still ends the request: better now than at its timeout.
        match self.requests.remove(xid) {
            Some(Waiter::User) => self.events.push_back(Event::RequestFailed { xid, error: err }),
            Some(Waiter::Features) => {
                self.close(CloseReason::HandshakeFailed { step: "FEATURES_REQUEST", code: e.code })
            }
            Some(Waiter::PortDesc) => self.close(CloseReason::HandshakeFailed { step: "PORT_DESC", code: e.code }),
            None => {}
        }
    }

    fn handle_message(&mut self, header: Header, msg: Message, now: Instant) {
        match msg {
            Message::Hello(hello) => self.handle_hello(header, hello, now),
            Message::EchoRequest(data) => {
                self.send_with_xid(&Message::EchoReply(data), header.xid);
            }
            Message::Error(error) => self.handle_error(header.xid, error),
            Message::PacketIn(p) => self.events.push_back(Event::PacketIn(p)),
            Message::PacketIn2(p) => self.events.push_back(Event::PacketIn2(p)),
            Message::FlowRemoved(f) => self.events.push_back(Event::FlowRemoved(f)),
            Message::PortStatus(ps) => {
                self.apply_port_status(&ps);
                self.events.push_back(Event::PortStatus(ps));
            }
            msg if self.requests.contains(header.xid) => self.handle_reply(header, msg, now),
            // The answer to our own echo probe: its arrival already counted as input.
            Message::EchoReply(_) => {}
            msg => {
                debug!(?header, "unsolicited openflow message");
                self.events.push_back(Event::Unhandled(header, Box::new(msg)));
            }
        }
    }

    fn handle_hello(&mut self, header: Header, hello: Hello, now: Instant) {
        if self.state != SessionState::Hello {
            debug!("second HELLO from switch ignored");
            return;
        }
        match hello.negotiate(header.version, OUR_VERSIONS) {
            Some(_) => {
                debug!(peer_version = header.version, "openflow version 1.3 agreed");
                self.state = SessionState::Features;
                // From here on the echo clock, not the HELLO deadline, watches the connection.
                self.request_as(&Message::FeaturesRequest, Waiter::Features, now);
            }
            None => {
                let (peer_versions, _) = hello.allowed_versions(header.version);
                let text = format!(
                    "We support version 0x{OFP13_VERSION:02x}, you support version bitmap {peer_versions:#x}; no common versions."
                );
                let err = ErrorMsg { code: ErrorCode::HELLO_FAILED_INCOMPATIBLE, data: text.into_bytes() };
                self.send_with_xid(&Message::Error(err), header.xid);
                self.close(CloseReason::Incompatible { peer_versions });
            }
        }
    }

    fn handle_error(&mut self, xid: u32, error: ErrorMsg) {
        // OVS answers our HELLO after sending its own, so a refusal arrives once we have moved on.
        if error.code.etype == ErrorCode::HELLO_FAILED_INCOMPATIBLE.etype {
            return self.close(CloseReason::HelloRejected(error.code));
        }
        match self.requests.remove(xid) {
            Some(Waiter::User) => self.events.push_back(Event::RequestFailed { xid, error }),
            Some(Waiter::Features) => {
                self.close(CloseReason::HandshakeFailed { step: "FEATURES_REQUEST", code: error.code })
            }
            Some(Waiter::PortDesc) => self.close(CloseReason::HandshakeFailed { step: "PORT_DESC", code: error.code }),
            None => {
                debug!(xid, code = %error.code, "openflow error for an untracked message");
                self.events.push_back(Event::Error { xid, error });
            }
        }
    }

    fn handle_reply(&mut self, header: Header, msg: Message, now: Instant) {
        let xid = header.xid;
        match self.requests.reply(xid, msg, usize::from(header.length), now + self.cfg.request_timeout) {
            None | Some(Progress::More) => {}
            Some(Progress::TooLarge(waiter, reason)) => {
                warn!(xid, %reason, "multipart reply refused");
                match waiter {
                    Waiter::User => self.events.push_back(Event::Refused { xid, reason }),
                    Waiter::Features => self.close(CloseReason::HandshakeFailed {
                        step: "FEATURES_REQUEST",
                        code: ErrorCode::BAD_REQUEST_BAD_LEN,
                    }),
                    Waiter::PortDesc => self.close(CloseReason::HandshakeFailed {
                        step: "PORT_DESC",
                        code: ErrorCode::BAD_REQUEST_BAD_LEN,
                    }),
                }
            }
            Some(Progress::Done(Waiter::User, messages)) => self.events.push_back(Event::Reply { xid, messages }),
            Some(Progress::Done(Waiter::Features, messages)) => self.handle_features(messages, now),
            Some(Progress::Done(Waiter::PortDesc, messages)) => self.handle_port_desc(messages),
        }
    }

    /// FEATURES_REPLY: configure the connection, then ask for the port list.
    fn handle_features(&mut self, messages: Vec<Message>, now: Instant) {
        let Some(Message::FeaturesReply(f)) = messages.into_iter().next() else {
            return self.close(CloseReason::HandshakeFailed {
                step: "FEATURES_REQUEST",
                code: ErrorCode::BAD_REQUEST_BAD_TYPE,
            });
        };
        debug!(dpid = format_args!("{:016x}", f.datapath_id), "switch features");
        self.features = Some(f);
        if let Some(id) = self.cfg.controller_id {
            self.send(&Message::SetControllerId(id));
        }
        if self.cfg.packet_in_format == PacketInFormat::Nxt2 {
            self.send(&Message::SetPacketInFormat(2));
        }
        self.send(&Message::SetConfig(SwitchConfig { flags: 0, miss_send_len: self.cfg.miss_send_len }));
        if let Some(a) = self.cfg.async_config {
            self.send(&Message::SetAsync(a));
        }
        let req = Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::PortDesc));
        self.request_as(&req, Waiter::PortDesc, now);
    }

    fn handle_port_desc(&mut self, messages: Vec<Message>) {
        let mut ports = Vec::new();
        for m in messages {
            match m {
                Message::MultipartReply(r) => match r.body {
                    MultipartReplyBody::PortDesc(p) => ports.extend(p),
                    _ => return self.port_desc_failed(),
                },
                _ => return self.port_desc_failed(),
            }
        }
        self.ports = ports;
        self.state = SessionState::Ready;
        let datapath_id = self.datapath_id().unwrap_or_default();
        debug!(dpid = format_args!("{datapath_id:016x}"), ports = self.ports.len(), "openflow session ready");
        self.events.push_back(Event::Ready { datapath_id });
    }

    fn port_desc_failed(&mut self) {
        self.close(CloseReason::HandshakeFailed { step: "PORT_DESC", code: ErrorCode::BAD_REQUEST_BAD_TYPE })
    }

    fn apply_port_status(&mut self, ps: &PortStatus) {
        let pos = self.ports.iter().position(|p| p.port_no == ps.port.port_no);
        match (ps.reason, pos) {
            (PORT_DELETE, Some(i)) => {
                self.ports.remove(i);
            }
            (PORT_DELETE, None) => {}
            (_, Some(i)) => self.ports[i] = ps.port.clone(),
            (_, None) => {
                if ps.reason != PORT_ADD {
                    debug!(port = ps.port.port_no, "PORT_STATUS modify for an unknown port: added");
                }
                self.ports.push(ps.port.clone());
            }
        }
    }

    // --- time ---

    /// Runs whatever is due at `now`: request deadlines, the HELLO deadline, the echo probe and
    /// the echo timeout. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        for (xid, waiter) in self.requests.expire(now) {
            match waiter {
                Waiter::User => self.events.push_back(Event::RequestTimedOut { xid }),
                Waiter::Features => return self.close(CloseReason::HandshakeTimeout { step: "FEATURES_REQUEST" }),
                Waiter::PortDesc => return self.close(CloseReason::HandshakeTimeout { step: "PORT_DESC" }),
            }
        }
        match self.state {
            SessionState::Closed => {}
            SessionState::Hello => {
                if now >= self.hello_deadline {
                    self.close(CloseReason::HandshakeTimeout { step: "HELLO" });
                }
            }
            SessionState::Features | SessionState::Ready => match self.probe_sent {
                Some(sent) if now >= sent + self.cfg.echo_timeout => self.close(CloseReason::EchoTimeout),
                Some(_) => {}
                None if now >= self.last_input + self.cfg.echo_interval => {
                    debug!("switch idle, probing with ECHO_REQUEST");
                    self.send(&Message::EchoRequest(Vec::new()));
                    self.probe_sent = Some(now);
                }
                None => {}
            },
        }
    }
}

/// The error OVS answers a well-formed message with when it does not know its type
/// (OFPBRC_BAD_TYPE), its experimenter (OFPBRC_BAD_VENDOR) or, for Nicira and ONF, its subtype
/// (OFPBRC_BAD_SUBTYPE); `None` for messages we understand.
fn unsupported(msg: &Message) -> Option<ErrorCode> {
    match msg {
        Message::Unknown { .. } => Some(ErrorCode::BAD_REQUEST_BAD_TYPE),
        // A subtype OVS knows (a role status, a flow monitor pause...) is passed on, not refused.
        Message::Experimenter(e) if e.experimenter == NX_VENDOR_ID || e.experimenter == ONF_EXPERIMENTER => {
            (!ovs_knows_subtype(e.experimenter, e.exp_type)).then_some(ErrorCode::BAD_REQUEST_BAD_EXP_TYPE)
        }
        Message::Experimenter(_) => Some(ErrorCode::BAD_REQUEST_BAD_EXPERIMENTER),
        _ => None,
    }
}

/// Whether OVS (`include/openvswitch/ofp-msgs.h`) has a Nicira or ONF message of this subtype in
/// OpenFlow 1.3, so that it would not answer it with OFPBRC_BAD_SUBTYPE.
fn ovs_knows_subtype(experimenter: u32, subtype: u32) -> bool {
    match experimenter {
        NX_VENDOR_ID => matches!(subtype, 10 | 11 | 13..=20 | 24..=30 | 32),
        ONF_EXPERIMENTER => matches!(subtype, 1870 | 1871 | 1872 | 1911 | 2300 | 2301 | 2350),
        _ => false,
    }
}
