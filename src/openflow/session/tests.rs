//! The session driven with simulated time and bytes captured from a real OVS 3.1
//! (tests/golden/messages/*.hex), with the xid patched to the one the session chose where a
//! reply must match a request.

use super::*;
use crate::openflow::flow::FlowModCommand;
use crate::openflow::message::multipart::{FlowStatsRequest, MultipartReply, MULTIPART_MORE};
use crate::openflow::message::{decode, encode, frame_len, FlowMod};

const SEC: Duration = Duration::from_secs(1);

fn golden(name: &str) -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/messages").join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text: String = text.split_whitespace().collect();
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn with_xid(mut bytes: Vec<u8>, xid: u32) -> Vec<u8> {
    bytes[4..8].copy_from_slice(&xid.to_be_bytes());
    bytes
}

/// Everything the session wants to send, cut into decoded messages.
fn sent(s: &mut Session) -> Vec<(Header, Message)> {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let mut msgs = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let n = frame_len(&out[at..]).expect("we frame correctly").expect("whole messages only");
        msgs.push(decode(&out[at..at + n]).expect("we encode decodable messages"));
        at += n;
    }
    msgs
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The xid of the only sent message of `msg_type` (panics otherwise).
fn xid_of(msgs: &[(Header, Message)], msg_type: MsgType) -> u32 {
    let found: Vec<u32> = msgs.iter().filter(|(h, _)| h.msg_type == msg_type).map(|(h, _)| h.xid).collect();
    assert_eq!(found.len(), 1, "{msg_type:?} in {msgs:?}");
    found[0]
}

fn config_all() -> SessionConfig {
    SessionConfig {
        controller_id: Some(7),
        packet_in_format: PacketInFormat::Nxt2,
        miss_send_len: 128,
        async_config: Some(AsyncConfig {
            packet_in_mask: [1, 0],
            port_status_mask: [7, 0],
            flow_removed_mask: [0xf, 0],
        }),
        ..SessionConfig::default()
    }
}

/// A session driven through the whole handshake with OVS's bytes; returns it Ready at `t0`.
fn ready(t0: Instant) -> Session {
    let mut s = Session::new(SessionConfig::default(), t0);
    let _ = sent(&mut s);
    s.handle_input(&golden("hello"), t0);
    let feat = xid_of(&sent(&mut s), MsgType::FeaturesRequest);
    s.handle_input(&with_xid(golden("features_reply"), feat), t0);
    let pd = xid_of(&sent(&mut s), MsgType::MultipartRequest);
    s.handle_input(&with_xid(golden("port_desc_reply"), pd), t0);
    assert_eq!(events(&mut s), vec![Event::Ready { datapath_id: 1 }]);
    assert_eq!(s.state(), SessionState::Ready);
    s
}

// === Handshake ===

#[test]
fn full_handshake_with_ovs_bytes() {
    let t0 = Instant::now();
    let mut s = Session::new(config_all(), t0);
    assert_eq!(s.state(), SessionState::Hello);
    let mut out = Vec::new();
    assert_eq!(s.poll_transmit(&mut out), 16);
    assert_eq!(out, [4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10], "HELLO with the 1.3 bitmap");
    assert_eq!(s.poll_transmit(&mut out), 0, "nothing twice");

    s.handle_input(&golden("hello"), t0);
    assert_eq!(s.state(), SessionState::Features);
    let msgs = sent(&mut s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1, Message::FeaturesRequest);
    assert_ne!(msgs[0].0.xid, 0);

    s.handle_input(&with_xid(golden("features_reply"), msgs[0].0.xid), t0 + SEC);
    assert_eq!(s.datapath_id(), Some(1));
    assert_eq!(s.features().map(|f| f.n_tables), Some(254));
    assert_eq!(s.state(), SessionState::Features, "not ready before the port list");
    let msgs = sent(&mut s);
    let bodies: Vec<&Message> = msgs.iter().map(|(_, m)| m).collect();
    assert_eq!(
        bodies,
        vec![
            &Message::SetControllerId(7),
            &Message::SetPacketInFormat(2),
            &Message::SetConfig(SwitchConfig { flags: 0, miss_send_len: 128 }),
            &Message::SetAsync(config_all().async_config.expect("set")),
            &Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::PortDesc)),
        ]
    );
    let xids: std::collections::HashSet<u32> = msgs.iter().map(|(h, _)| h.xid).collect();
    assert_eq!(xids.len(), 5, "distinct xids");
    assert!(events(&mut s).is_empty());

    s.handle_input(&with_xid(golden("port_desc_reply"), msgs[4].0.xid), t0 + SEC);
    assert_eq!(events(&mut s), vec![Event::Ready { datapath_id: 1 }]);
    assert_eq!(s.state(), SessionState::Ready);
    let names: Vec<(u32, String)> = s.ports().iter().map(|p| (p.port_no, p.name_str())).collect();
    assert_eq!(names, vec![(0xffff_fffe, "br0".to_string()), (1, "br0-p1".to_string()), (2, "br0-p2".to_string())]);
    assert_eq!(s.pending_requests(), 0);
}

#[test]
fn defaults_send_only_set_config() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    let _ = sent(&mut s);
    s.handle_input(&golden("hello"), t0);
    let feat = xid_of(&sent(&mut s), MsgType::FeaturesRequest);
    s.handle_input(&with_xid(golden("features_reply"), feat), t0);
    let types: Vec<MsgType> = sent(&mut s).iter().map(|(h, _)| h.msg_type).collect();
    assert_eq!(types, vec![MsgType::SetConfig, MsgType::MultipartRequest]);
}

#[test]
fn handshake_byte_by_byte() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    let _ = sent(&mut s);
    let feed = |s: &mut Session, bytes: &[u8]| {
        for b in bytes {
            s.handle_input(std::slice::from_ref(b), t0);
        }
    };
    feed(&mut s, &golden("hello"));
    let feat = xid_of(&sent(&mut s), MsgType::FeaturesRequest);
    // Two messages in one stream, split at every byte: the reply and an echo request.
    let mut stream = with_xid(golden("features_reply"), feat);
    stream.extend(encode(&Message::EchoRequest(b"hi".to_vec()), 0x55));
    feed(&mut s, &stream);
    let msgs = sent(&mut s);
    assert!(msgs.contains(&(
        Header { version: 4, msg_type: MsgType::EchoReply, length: 10, xid: 0x55 },
        Message::EchoReply(b"hi".to_vec())
    )));
    let pd = xid_of(&msgs, MsgType::MultipartRequest);
    feed(&mut s, &with_xid(golden("port_desc_reply"), pd));
    assert_eq!(events(&mut s), vec![Event::Ready { datapath_id: 1 }]);
    assert_eq!(s.ports().len(), 3);
}

#[test]
fn ovs_1_5_hello_without_bitmap_negotiates_1_3() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    let _ = sent(&mut s);
    s.handle_input(&[6, 0, 0, 8, 0, 0, 0, 9], t0);
    assert_eq!(s.state(), SessionState::Features);
    assert_eq!(sent(&mut s)[0].1, Message::FeaturesRequest);
}

#[test]
fn no_common_version_sends_hello_failed_and_closes() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    let _ = sent(&mut s);
    // A HELLO offering OpenFlow 1.0 and 1.5 (bitmap 0x42) only.
    s.handle_input(&[6, 0, 0, 16, 0, 0, 0, 3, 0, 1, 0, 8, 0, 0, 0, 0x42], t0);
    assert!(s.is_closed());
    assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::Incompatible { peer_versions: 0x42 } }]);
    let msgs = sent(&mut s);
    assert_eq!(msgs.len(), 1, "the error is still flushed after close");
    assert_eq!(msgs[0].0.xid, 3);
    match &msgs[0].1 {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::HELLO_FAILED_INCOMPATIBLE);
            assert!(String::from_utf8_lossy(&e.data).contains("0x42"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn first_message_not_hello_closes() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    s.handle_input(&golden("features_reply"), t0);
    assert!(
        matches!(events(&mut s).as_slice(), [Event::Closed { reason: CloseReason::NoHello(n) }] if n == "OFPT_FEATURES_REPLY")
    );
}

#[test]
fn hello_and_features_deadlines_close() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + 10 * SEC));
    s.handle_timeout(t0 + 9 * SEC);
    assert!(!s.is_closed(), "early timeout does nothing");
    s.handle_timeout(t0 + 10 * SEC);
    assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::HandshakeTimeout { step: "HELLO" } }]);

    // The switch says HELLO but never answers FEATURES_REQUEST, while staying chatty enough
    // that the echo timer never fires.
    let mut s = Session::new(SessionConfig::default(), t0);
    s.handle_input(&golden("hello"), t0);
    for i in 1..=10 {
        s.handle_input(&encode(&Message::EchoRequest(vec![]), i), t0 + i * SEC);
        s.handle_timeout(t0 + i * SEC);
    }
    assert_eq!(
        events(&mut s),
        vec![Event::Closed { reason: CloseReason::HandshakeTimeout { step: "FEATURES_REQUEST" } }]
    );
}

#[test]
fn features_request_refused_closes() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    s.handle_input(&golden("hello"), t0);
    let feat = xid_of(&sent(&mut s), MsgType::FeaturesRequest);
    s.handle_input(&with_xid(golden("error_bad_len"), feat), t0);
    assert_eq!(
        events(&mut s),
        vec![Event::Closed {
            reason: CloseReason::HandshakeFailed { step: "FEATURES_REQUEST", code: ErrorCode::BAD_REQUEST_BAD_LEN }
        }]
    );
}

// === Echo ===

#[test]
fn answers_echo_request_with_same_xid_and_payload() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let mut req = golden("echo_reply");
    req[1] = 2; // the captured ECHO_REPLY turned back into the request it answered
    s.handle_input(&req, t0);
    let msgs = sent(&mut s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.xid, 0x67);
    assert_eq!(msgs[0].1, Message::EchoReply(b"shardflow".to_vec()));
    assert!(events(&mut s).is_empty());
}

#[test]
fn echo_probe_after_idle_then_close_after_timeout() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + 5 * SEC));
    s.handle_timeout(t0 + 4 * SEC);
    assert!(sent(&mut s).is_empty());
    s.handle_timeout(t0 + 5 * SEC);
    let msgs = sent(&mut s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1, Message::EchoRequest(vec![]));
    assert_eq!(s.poll_timeout(), Some(t0 + 10 * SEC));
    s.handle_timeout(t0 + 9 * SEC);
    assert!(!s.is_closed());
    assert!(sent(&mut s).is_empty(), "one probe, not one per call");
    s.handle_timeout(t0 + 10 * SEC);
    assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::EchoTimeout }]);
    assert_eq!(s.state(), SessionState::Closed);
}

#[test]
fn echo_reply_keeps_the_session_alive() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    s.handle_timeout(t0 + 5 * SEC);
    let probe = sent(&mut s);
    let xid = probe[0].0.xid;
    s.handle_input(&encode(&Message::EchoReply(vec![]), xid), t0 + 7 * SEC);
    assert!(events(&mut s).is_empty(), "our probe's reply is not an event");
    assert_eq!(s.poll_timeout(), Some(t0 + 12 * SEC), "idle clock restarts at the reply");
    s.handle_timeout(t0 + 10 * SEC);
    assert!(!s.is_closed());
}

// === Requests ===

fn flow_stats_request() -> Message {
    Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default())))
}

#[test]
fn request_times_out() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let t1 = t0 + 2 * SEC;
    // Keep the echo timer out of the way: input every second.
    let xid = s.request(&flow_stats_request(), t1);
    assert_ne!(xid, 0);
    for i in 3..12 {
        s.handle_input(&encode(&Message::EchoRequest(vec![]), 0), t0 + i * SEC);
        s.handle_timeout(t0 + i * SEC);
    }
    assert!(events(&mut s).is_empty(), "{:?}", s.poll_event());
    assert_eq!(s.poll_timeout(), Some(t1 + 10 * SEC));
    s.handle_timeout(t1 + 10 * SEC);
    assert_eq!(events(&mut s), vec![Event::RequestTimedOut { xid }]);
    assert!(!s.is_closed());
    // A late reply is not mistaken for anything else.
    s.handle_input(&with_xid(golden("barrier_reply"), xid), t1 + 11 * SEC);
    assert!(
        matches!(events(&mut s).as_slice(), [Event::Unhandled(h, m)] if h.xid == xid && **m == Message::BarrierReply)
    );
}

#[test]
fn barrier_reply_correlates() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let b = s.barrier(t0);
    let out = sent(&mut s);
    assert_eq!(out[0].1, Message::BarrierRequest);
    assert_eq!(out[0].0.xid, b);
    s.handle_input(&with_xid(golden("barrier_reply"), b), t0);
    assert_eq!(events(&mut s), vec![Event::Reply { xid: b, messages: vec![Message::BarrierReply] }]);
    assert_eq!(s.pending_requests(), 0);
}

#[test]
fn multipart_reply_is_reassembled() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let xid = s.request(&flow_stats_request(), t0);
    let Ok((_, Message::MultipartReply(whole))) = decode(&golden("flow_stats_reply")) else { panic!("golden") };
    let MultipartReplyBody::Flow(entries) = whole.body.clone() else { panic!("flow stats") };
    assert!(entries.len() >= 3, "golden reply has several flows");
    let parts: Vec<Vec<_>> = vec![entries[..1].to_vec(), entries[1..2].to_vec(), entries[2..].to_vec()];
    let mut stream = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let flags = if i + 1 < parts.len() { MULTIPART_MORE } else { 0 };
        let part = MultipartReply { flags, body: MultipartReplyBody::Flow(p.clone()) };
        stream.push(encode(&Message::MultipartReply(part), xid));
    }
    s.handle_input(&stream[0], t0 + SEC);
    s.handle_input(&stream[1], t0 + 9 * SEC);
    assert!(events(&mut s).is_empty(), "no reply before the last part");
    s.handle_timeout(t0 + 11 * SEC);
    assert!(events(&mut s).is_empty(), "each part extends the deadline");
    s.handle_input(&stream[2], t0 + 12 * SEC);
    let expect = Message::MultipartReply(MultipartReply { flags: 0, body: MultipartReplyBody::Flow(entries) });
    assert_eq!(events(&mut s), vec![Event::Reply { xid, messages: vec![expect] }]);
}

#[test]
fn errors_correlate_with_requests_and_sends() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let req = s.request(&flow_stats_request(), t0);
    let fire = s.send(&Message::FlowMod(FlowMod::new(FlowModCommand::Unknown(9))));
    let other = s.barrier(t0);
    assert!(req != fire && fire != other);
    s.handle_input(&with_xid(golden("error_bad_len"), fire), t0);
    s.handle_input(&with_xid(golden("error_bad_multipart"), req), t0);
    let ev = events(&mut s);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        matches!(&ev[0], Event::Error { xid, error } if *xid == fire && error.code == ErrorCode::BAD_REQUEST_BAD_LEN)
    );
    assert!(matches!(&ev[1], Event::RequestFailed { xid, error }
        if *xid == req && error.code == ErrorCode::BAD_REQUEST_BAD_MULTIPART));
    assert_eq!(s.pending_requests(), 1, "the barrier still waits");
    assert_eq!(s.state(), SessionState::Ready);
}

// === Malformed input ===

#[test]
fn malformed_message_gets_error_and_session_lives() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    // A BARRIER_REPLY must be header-only; this one carries 4 stray bytes.
    let bad = [4, 21, 0, 12, 0, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef];
    s.handle_input(&bad, t0);
    let msgs = sent(&mut s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.xid, 0x1234);
    assert_eq!(msgs[0].1, Message::Error(ErrorMsg { code: ErrorCode::BAD_REQUEST_BAD_LEN, data: bad.to_vec() }));
    assert_eq!(s.state(), SessionState::Ready);

    // A long malformed message: only its first 64 bytes are echoed back.
    let mut pin = vec![0u8; 200];
    pin[..8].copy_from_slice(&[4, 10, 0, 200, 0, 0, 0, 5]);
    pin[24..28].copy_from_slice(&[0, 1, 0x0f, 0xff]); // ofp_match longer than the message
    s.handle_input(&pin, t0);
    let msgs = sent(&mut s);
    match &msgs[..] {
        [(h, Message::Error(e))] => {
            assert_eq!(h.xid, 5);
            assert_eq!(e.data, pin[..64].to_vec());
        }
        other => panic!("{other:?}"),
    }
    // A message of another version.
    s.handle_input(&[1, 2, 0, 8, 0, 0, 0, 6], t0);
    assert!(
        matches!(&sent(&mut s)[..], [(h, Message::Error(e))] if h.xid == 6 && e.code == ErrorCode::BAD_REQUEST_BAD_VERSION)
    );
    assert!(events(&mut s).is_empty());

    // The session still works.
    let b = s.barrier(t0);
    s.handle_input(&with_xid(golden("barrier_reply"), b), t0);
    assert_eq!(events(&mut s), vec![Event::Reply { xid: b, messages: vec![Message::BarrierReply] }]);
}

#[test]
fn malformed_reply_fails_its_request_at_once() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let b = s.barrier(t0);
    let _ = sent(&mut s);
    let mut bad = vec![4, 21, 0, 9, 0, 0, 0, 0, 0];
    bad[4..8].copy_from_slice(&b.to_be_bytes());
    s.handle_input(&bad, t0);
    assert!(
        matches!(&events(&mut s)[..], [Event::RequestFailed { xid, error }] if *xid == b && error.code == ErrorCode::BAD_REQUEST_BAD_LEN)
    );
    assert_eq!(sent(&mut s).len(), 1, "the switch is told too");
}

#[test]
fn malformed_error_is_not_answered() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    s.handle_input(&[4, 1, 0, 10, 0, 0, 0, 1, 0, 1], t0); // too short for type + code
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.state(), SessionState::Ready);
}

#[test]
fn framing_error_closes() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let b = s.barrier(t0);
    // A message whose length (4) is shorter than its own header, then a valid reply that must
    // not be read: nothing after a framing error can be trusted.
    let mut stream = vec![4, 21, 0, 4, 0, 0, 0, 9];
    stream.extend(with_xid(golden("barrier_reply"), b));
    s.handle_input(&stream, t0);
    assert!(s.is_closed());
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Event::Closed { reason: CloseReason::Framing(e) }] if e.code == ErrorCode::BAD_REQUEST_BAD_LEN),
        "{ev:?}"
    );
    let msgs = sent(&mut s);
    let bytes_sent: Vec<&Message> = msgs.iter().map(|(_, m)| m).collect();
    assert!(matches!(bytes_sent.last(), Some(Message::Error(e)) if e.code == ErrorCode::BAD_REQUEST_BAD_LEN));
    s.handle_input(&with_xid(golden("barrier_reply"), b), t0);
    s.handle_timeout(t0 + 100 * SEC);
    assert!(events(&mut s).is_empty(), "a closed session is silent");
    assert_eq!(s.poll_timeout(), None);
}

// === Async messages ===

#[test]
fn port_status_updates_the_port_list() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let add = golden("port_status");
    s.handle_input(&add, t0);
    let ev = events(&mut s);
    assert!(matches!(&ev[..], [Event::PortStatus(ps)] if ps.reason == 0 && ps.port.port_no == 9), "{ev:?}");
    assert_eq!(s.ports().len(), 4);
    assert_eq!(s.ports()[3].name_str(), "p9");

    let mut modify = add.clone();
    modify[8] = 2;
    modify[51] = 1; // ofp_port.config (bytes 48..52): PORT_DOWN
    s.handle_input(&modify, t0);
    assert_eq!(s.ports().len(), 4);
    assert_eq!(s.ports()[3].config, 1);

    let mut del = add;
    del[8] = 1;
    s.handle_input(&del, t0);
    assert_eq!(s.ports().iter().map(|p| p.port_no).collect::<Vec<_>>(), vec![0xffff_fffe, 1, 2]);
    assert_eq!(events(&mut s).len(), 2);
}

#[test]
fn packet_ins_and_flow_removed_become_events() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    for (name, want) in [("packet_in", "PacketIn"), ("packet_in2", "PacketIn2"), ("flow_removed", "FlowRemoved")] {
        s.handle_input(&golden(name), t0);
        let ev = events(&mut s);
        assert_eq!(ev.len(), 1, "{name}: {ev:?}");
        assert!(format!("{:?}", ev[0]).starts_with(want), "{name}: {:?}", ev[0]);
    }
    assert!(sent(&mut s).is_empty(), "nothing to answer");
}

/// As OVS answers what it does not understand: OFPBRC_BAD_TYPE for an unknown message type,
/// OFPBRC_BAD_VENDOR for an unknown experimenter, OFPBRC_BAD_SUBTYPE for an unknown Nicira or
/// ONF subtype, each with the first 64 bytes of the message; the session lives on.
#[test]
fn unknown_message_types_and_experimenters_are_answered_like_ovs() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let mut long_unknown = vec![4, 99, 0, 100, 0, 0, 0, 9];
    long_unknown.extend((0..92).map(|i| i as u8));
    for (msg, xid, want) in [
        (vec![4, 99, 0, 10, 0, 0, 0, 4, 1, 2], 4, ErrorCode::BAD_REQUEST_BAD_TYPE),
        (vec![4, 4, 0, 16, 0, 0, 0, 5, 0, 0, 0xab, 0xcd, 0, 0, 0, 1], 5, ErrorCode::BAD_REQUEST_BAD_EXPERIMENTER),
        (vec![4, 4, 0, 16, 0, 0, 0, 6, 0, 0, 0x23, 0x20, 0, 0, 0xff, 0xff], 6, ErrorCode::BAD_REQUEST_BAD_EXP_TYPE),
        (vec![4, 4, 0, 16, 0, 0, 0, 7, 0x4f, 0x4e, 0x46, 0, 0, 0, 3, 0xe7], 7, ErrorCode::BAD_REQUEST_BAD_EXP_TYPE),
        (long_unknown.clone(), 9, ErrorCode::BAD_REQUEST_BAD_TYPE),
    ] {
        s.handle_input(&msg, t0);
        assert!(events(&mut s).is_empty(), "answered, not passed on");
        let out = sent(&mut s);
        assert_eq!(out.len(), 1, "{out:?}");
        let (h, m) = &out[0];
        assert_eq!(h.xid, xid);
        match m {
            Message::Error(e) => {
                assert_eq!(e.code, want);
                assert_eq!(e.data, msg[..msg.len().min(64)], "the first 64 bytes of the message");
            }
            other => panic!("expected an OFPT_ERROR, got {other:?}"),
        }
    }
    assert_eq!(s.unsupported_messages(), 5);
    // A subtype OVS knows (ONFT_FLOW_MONITOR_PAUSED) is passed on, not refused.
    s.handle_input(&[4, 4, 0, 16, 0, 0, 0, 8, 0x4f, 0x4e, 0x46, 0, 0, 0, 0x07, 0x4f], t0);
    assert!(sent(&mut s).is_empty());
    assert!(matches!(&events(&mut s)[..], [Event::Unhandled(h, _)] if h.xid == 8));
    assert_eq!(s.state(), SessionState::Ready);
    // The connection lives: an echo request is answered.
    s.handle_input(&[4, 2, 0, 8, 0, 0, 0, 10], t0);
    assert!(matches!(&sent(&mut s)[..], [(h, Message::EchoReply(_))] if h.xid == 10));
}

/// An experimenter message answering a request of ours goes to the requester, not refused.
#[test]
fn an_experimenter_reply_to_our_request_is_not_refused() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let req = Message::Experimenter(message::Experimenter { experimenter: 0xabcd, exp_type: 1, data: vec![] });
    let xid = s.request(&req, t0);
    let _ = sent(&mut s);
    let mut reply = vec![4, 4, 0, 16];
    reply.extend(xid.to_be_bytes());
    reply.extend([0, 0, 0xab, 0xcd, 0, 0, 0, 2]);
    s.handle_input(&reply, t0);
    assert!(sent(&mut s).is_empty());
    assert!(matches!(&events(&mut s)[..], [Event::Reply { xid: x, .. }] if *x == xid));
    assert_eq!(s.unsupported_messages(), 0);
}

#[test]
fn close_drops_requests_and_is_idempotent() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.request(&flow_stats_request(), t0);
    s.close(CloseReason::PeerClosed);
    s.close(CloseReason::Local("again".into()));
    assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::PeerClosed }]);
    assert_eq!(s.pending_requests(), 0);
    let _ = sent(&mut s);
    s.send(&Message::BarrierRequest);
    assert!(sent(&mut s).is_empty(), "nothing is queued after close");
}

#[test]
fn xids_never_zero_across_wrap() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    s.requests.set_next_xid(u32::MAX);
    assert_eq!(s.send(&Message::BarrierRequest), u32::MAX);
    assert_eq!(s.send(&Message::BarrierRequest), 1);
}

#[test]
fn hello_refused_after_ours_closes() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    s.handle_input(&golden("hello"), t0);
    // OVS sent its HELLO first, then refuses ours (xid 1) with HELLO_FAILED.
    let err = ErrorMsg { code: ErrorCode::HELLO_FAILED_INCOMPATIBLE, data: b"no".to_vec() };
    s.handle_input(&encode(&Message::Error(err), 1), t0);
    let ev = events(&mut s);
    assert_eq!(ev, vec![Event::Closed { reason: CloseReason::HelloRejected(ErrorCode::HELLO_FAILED_INCOMPATIBLE) }]);
    if let [Event::Closed { reason }] = &ev[..] {
        assert_eq!(reason.label(), "hello_failed");
    }
    assert_eq!(CloseReason::EchoTimeout.label(), "echo_timeout");
}

// === Bounds (issue 12) ===

/// A packet-out whose frame alone is 70,000 bytes: more than a 16-bit OpenFlow length can say.
fn oversized_packet_out() -> Message {
    Message::PacketOut(crate::openflow::message::PacketOut {
        buffer_id: u32::MAX,
        in_port: 0xffff_fffd,
        actions: vec![crate::openflow::action::Action::Output { port: 1, max_len: 0 }],
        data: vec![0xa5; 70_000],
    })
}

#[test]
fn a_message_over_64_kib_is_refused_and_the_stream_stays_intact() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let before = s.send(&Message::BarrierRequest);
    let big = s.send(&oversized_packet_out());
    let after = s.send(&Message::BarrierRequest);
    // Nothing of the big one went out: the bytes frame as exactly the two barriers.
    let out = sent(&mut s);
    assert_eq!(out.iter().map(|(h, _)| h.xid).collect::<Vec<_>>(), vec![before, after]);
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Event::Refused { xid, reason: Refusal::Encode(message::EncodeError::TooLong { len, .. }) }]
            if *xid == big && *len > 70_000),
        "{ev:?}"
    );
    assert!(!s.is_closed());
}

#[test]
fn a_request_too_large_to_send_fails_at_once_and_is_not_pending() {
    let t0 = Instant::now();
    let mut s = ready(t0);
    let _ = sent(&mut s);
    let pending = s.pending_requests();
    let xid = s.request(&oversized_packet_out(), t0);
    assert_eq!(s.pending_requests(), pending, "no request waits for an answer that cannot come");
    assert!(matches!(&events(&mut s)[..], [Event::Refused { xid: x, .. }] if *x == xid));
    assert_eq!(s.queued_output(), 0);
}

/// `n` flow-stats parts for request `xid`, each with the golden reply's flows, all but the last
/// with REPLY_MORE.
fn flow_parts(xid: u32, n: usize) -> (Vec<Vec<u8>>, usize) {
    let Ok((_, Message::MultipartReply(whole))) = decode(&golden("flow_stats_reply")) else { panic!("golden") };
    let parts: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let flags = if i + 1 < n { MULTIPART_MORE } else { 0 };
            encode(&Message::MultipartReply(MultipartReply { flags, body: whole.body.clone() }), xid)
        })
        .collect();
    let len = parts[0].len();
    (parts, len)
}

#[test]
fn multipart_reassembly_is_capped_in_bytes() {
    let t0 = Instant::now();
    let cfg = SessionConfig { multipart_max_bytes: 4096, ..SessionConfig::default() };
    let mut s = Session::new(cfg, t0);
    drive_ready(&mut s, t0);
    let xid = s.request(&flow_stats_request(), t0);
    let (parts, len) = flow_parts(xid, 64);
    let fit = 4096 / len;
    for p in &parts[..fit] {
        s.handle_input(p, t0);
    }
    assert!(events(&mut s).is_empty(), "under the cap: still reassembling");
    s.handle_input(&parts[fit], t0);
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Event::Refused { xid: x, reason: Refusal::ReplyTooLarge { bytes, parts, max_bytes: 4096, .. } }]
            if *x == xid && *bytes > 4096 && *parts == fit + 1),
        "{ev:?}"
    );
    assert_eq!(s.pending_requests(), 0, "the reassembly is freed");
    // The rest of the reply is not reassembled again (unsolicited, passed on) and the session lives.
    for p in &parts[fit + 1..] {
        s.handle_input(p, t0);
    }
    assert!(events(&mut s).iter().all(|e| matches!(e, Event::Unhandled(..))));
    assert!(!s.is_closed());
}

#[test]
fn multipart_reassembly_is_capped_in_parts() {
    let t0 = Instant::now();
    let cfg = SessionConfig { multipart_max_parts: 3, ..SessionConfig::default() };
    let mut s = Session::new(cfg, t0);
    drive_ready(&mut s, t0);
    let xid = s.request(&flow_stats_request(), t0);
    let (parts, _) = flow_parts(xid, 10);
    for p in &parts[..4] {
        s.handle_input(p, t0);
    }
    let ev = events(&mut s);
    assert!(matches!(&ev[..], [Event::Refused { reason: Refusal::ReplyTooLarge { parts: 4, .. }, .. }]), "{ev:?}");
}

#[test]
fn multipart_parts_do_not_extend_the_fixed_deadline() {
    let t0 = Instant::now();
    let cfg = SessionConfig { multipart_timeout: 30 * SEC, ..SessionConfig::default() };
    let mut s = Session::new(cfg, t0);
    drive_ready(&mut s, t0);
    let xid = s.request(&flow_stats_request(), t0);
    let (parts, _) = flow_parts(xid, 100);
    // A part every 5 s (each within the 10 s request timeout): alive until 30 s, no later.
    let mut timed_out_at = None;
    for (i, p) in parts.iter().enumerate().take(99) {
        let now = t0 + (5 * i as u32 + 1) * SEC;
        s.handle_timeout(now);
        if events(&mut s).iter().any(|e| matches!(e, Event::RequestTimedOut { xid: x } if *x == xid)) {
            timed_out_at = Some(now);
            break;
        }
        s.handle_input(p, now);
        let _ = sent(&mut s);
    }
    let at = timed_out_at.expect("the request timed out despite a steady trickle of parts");
    assert!(at >= t0 + 30 * SEC && at <= t0 + 36 * SEC, "timed out {:?} after the request", at - t0);
}

/// Drives a session made with a custom config through OVS's handshake bytes.
fn drive_ready(s: &mut Session, t0: Instant) {
    let _ = sent(s);
    s.handle_input(&golden("hello"), t0);
    let feat = xid_of(&sent(s), MsgType::FeaturesRequest);
    s.handle_input(&with_xid(golden("features_reply"), feat), t0);
    let pd = xid_of(&sent(s), MsgType::MultipartRequest);
    s.handle_input(&with_xid(golden("port_desc_reply"), pd), t0);
    assert!(matches!(&events(s)[..], [Event::Ready { .. }]), "handshake");
    assert_eq!(s.state(), SessionState::Ready);
}
