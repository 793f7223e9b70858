//! The properties the fuzz targets check (`fuzz/`), kept in the library so that the ordinary test
//! suite runs them over the seed corpus too (`tests/fuzz_seeds.rs`). Each function panics when a
//! property is broken; on any input whatsoever it must not panic otherwise.

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message;
use crate::packet::{self, ConnKey, FlowKey};

/// Any bytes to the message decoder. Whatever decodes must encode again, and that encoding must
/// decode to the same message and print without panicking.
pub fn openflow_decode(data: &[u8]) {
    // The stream framer must agree with the decoder on whole messages.
    let _ = message::frame_len(data);
    let Ok((header, msg)) = message::decode(data) else { return };
    let _ = message::ofp_print(&header, &msg);
    let mut bytes = Vec::new();
    message::encode_version(&msg, header.version, header.xid, &mut bytes);
    if bytes.len() > u16::MAX as usize {
        return; // cannot be sent as one message; decode of the original was fine
    }
    let (h2, again) = match message::decode(&bytes) {
        Ok(x) => x,
        Err(e) => panic!("our encoding of a decoded message does not decode: {e}\nmsg: {msg:?}"),
    };
    assert_eq!(h2.xid, header.xid);
    assert_eq!(again, msg, "decode(encode(m)) != m");
}

/// Any text to the flow parser. Whatever parses must encode to a FLOW_MOD that decodes to the
/// same flow, and its printed form must parse back to the same bytes.
pub fn flow_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(fm) = FlowMod::parse(text, FlowModCommand::Add) else { return };
    let bytes = fm.encode(7);
    if bytes.len() > u16::MAX as usize {
        return;
    }
    let (_, msg) = match message::decode(&bytes) {
        Ok(x) => x,
        Err(e) => panic!("our FLOW_MOD for {text:?} does not decode: {e}"),
    };
    let message::Message::FlowMod(decoded) = msg else { panic!("a FLOW_MOD decoded as {msg:?}") };
    assert_eq!(decoded.encode(7), bytes, "FLOW_MOD re-encode differs for {text:?}");
    // What we print must read back, and print the same again. (Not always to the same bytes:
    // OVS's own text is lossy in places, e.g. `tcp_flags=0x2/0xfff` prints as `tcp_flags=syn`,
    // and we print what OVS prints; the golden tests check the read-back against OVS itself.)
    let printed = fm.to_flow_text();
    let _ = fm.ofp_print_body();
    match FlowMod::parse(&printed, FlowModCommand::Add) {
        Ok(back) => assert_eq!(back.to_flow_text(), printed, "{text:?} prints unstably"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
}

/// Any frame (after a 4-byte in_port) to the packet parser and key extraction. Keys of both
/// directions of a connection must agree.
pub fn packet_parse(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let in_port = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let frame = &data[4..];
    let _ = packet::describe(frame);
    let _ = packet::verify_checksums(frame);
    let _ = ConnKey::of_frame(frame);
    if let Ok(key) = FlowKey::extract(in_port, frame) {
        let conn = key.conn_key();
        // The same connection seen the other way round.
        let rev = ConnKey::new(conn.family(), conn.proto(), conn.dst(), conn.src());
        assert_eq!(conn.canonical_bytes(), rev.canonical_bytes(), "a connection key must not depend on direction");
        assert_eq!(conn.hash64(), rev.hash64());
        if conn.src() != conn.dst() {
            assert_ne!(conn.is_forward(), rev.is_forward(), "{conn:?}");
        }
    }
}
