//! The sans-IO OpenFlow session against a real Open vSwitch 3.1 (private sandbox per test),
//! driven by a blocking std TCP loop with the real clock: the handshake, a request and its
//! reply, an error for a bad FLOW_MOD, what OVS does with garbage, and 15 s of idle time.
//! (A malformed message *from* the switch cannot be produced with OVS; the unit tests in
//! src/openflow/session/tests.rs cover that.)
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use shardflow::openflow::error::ErrorCode;
use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::message::multipart::{FlowStatsRequest, MultipartReplyBody, MultipartRequestBody};
use shardflow::openflow::message::{frame_len, Header, Message, MsgType, MultipartRequest};
use shardflow::openflow::session::{CloseReason, Event, Session, SessionConfig, SessionState};
use support::Ovs;

/// A session on an accepted socket, pumped by hand. Every byte received is also kept in `rx_log`
/// so a test can see what OVS sent that the session handled silently (echo requests).
struct Driver {
    stream: TcpStream,
    session: Session,
    rx_log: Vec<u8>,
}

impl Driver {
    /// Points br0 of `ovs` at a fresh listener and accepts its connection (bounded wait).
    fn connect(ovs: &Ovs, cfg: SessionConfig) -> Driver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        ovs.ok(
            "ovs-vsctl",
            &[
                "set-controller",
                "br0",
                &format!("tcp:127.0.0.1:{port}"),
                "--",
                "set",
                "controller",
                "br0",
                "connection_mode=out-of-band",
            ],
        );
        listener.set_nonblocking(true).expect("nonblocking listener");
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("OVS did not connect within 10 s: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream.set_nodelay(true).expect("nodelay");
        Driver { stream, session: Session::new(cfg, Instant::now()), rx_log: Vec::new() }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        if self.session.poll_transmit(&mut out) > 0 && self.stream.write_all(&out).is_err() {
            self.session.close(CloseReason::PeerClosed);
        }
    }

    /// Runs the session until `until`, or until `stop` accepts an event; returns every event seen.
    fn run(&mut self, until: Instant, mut stop: impl FnMut(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush();
            while let Some(ev) = self.session.poll_event() {
                let done = stop(&ev);
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            let now = Instant::now();
            if self.session.is_closed() || now >= until {
                return seen;
            }
            let wake = self.session.poll_timeout().map_or(until, |t| t.min(until));
            let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait)).expect("read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => self.session.close(CloseReason::PeerClosed),
                Ok(n) => {
                    self.rx_log.extend_from_slice(&buf[..n]);
                    self.session.handle_input(&buf[..n], Instant::now());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.session.close(CloseReason::PeerClosed),
            }
            self.session.handle_timeout(Instant::now());
        }
    }

    /// Runs until an event matches `want` (panics after `secs` seconds with what was seen).
    fn expect(&mut self, secs: u64, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let seen = self.run(Instant::now() + Duration::from_secs(secs), |e| want(e));
        match seen.last() {
            Some(e) if want(e) => e.clone(),
            _ => panic!("no {what} within {secs} s; events: {seen:?}"),
        }
    }

    fn ready(&mut self) {
        let ev = self.expect(5, "Ready", |e| matches!(e, Event::Ready { .. }));
        assert_eq!(ev, Event::Ready { datapath_id: 1 });
    }

    /// The headers of every whole message received so far.
    fn received_headers(&self) -> Vec<Header> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(Some(n)) = frame_len(&self.rx_log[at..]) {
            let b = &self.rx_log[at..at + n];
            out.push(Header {
                version: b[0],
                msg_type: MsgType::from(b[1]),
                length: n as u16,
                xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            });
            at += n;
        }
        out
    }
}

fn flow_stats() -> Message {
    Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default())))
}

#[test]
fn handshake_requests_errors_and_garbage() {
    let ovs = Ovs::start(&["br0"]);
    let mut d = Driver::connect(&ovs, SessionConfig::default());
    d.ready();
    assert_eq!(d.session.state(), SessionState::Ready);
    assert_eq!(d.session.datapath_id(), Some(1));
    let mut ports: Vec<(u32, String)> = d.session.ports().iter().map(|p| (p.port_no, p.name_str())).collect();
    ports.sort();
    assert_eq!(ports, vec![(1, "br0-p1".into()), (2, "br0-p2".into()), (0xffff_fffe, "br0".into())]);

    // A flow, then the flow stats request sees it.
    let fm = FlowMod::parse("table=0,priority=10,ip,nw_dst=10.0.0.9,actions=output:2", FlowModCommand::Add)
        .expect("flow text");
    d.session.send(&Message::FlowMod(fm));
    let b = d.session.barrier(Instant::now());
    d.expect(5, "barrier reply", |e| matches!(e, Event::Reply { xid, .. } if *xid == b));
    let req = d.session.request(&flow_stats(), Instant::now());
    match d.expect(5, "flow stats reply", |e| matches!(e, Event::Reply { xid, .. } if *xid == req)) {
        Event::Reply { messages, .. } => match &messages[..] {
            [Message::MultipartReply(r)] => match &r.body {
                MultipartReplyBody::Flow(flows) => {
                    assert_eq!(flows.len(), 1, "{flows:?}");
                    assert_eq!(flows[0].priority, 10);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        },
        _ => unreachable!(),
    }

    // A FLOW_MOD with command 9: OVS refuses it with OFPFMFC_BAD_COMMAND, the session lives.
    let bad = d.session.request(&Message::FlowMod(FlowMod::new(FlowModCommand::Unknown(9))), Instant::now());
    match d.expect(5, "RequestFailed", |e| matches!(e, Event::RequestFailed { xid, .. } if *xid == bad)) {
        Event::RequestFailed { error, .. } => {
            assert_eq!(error.code, ErrorCode::FLOW_MOD_FAILED_BAD_COMMAND, "{}", error.code);
            assert_eq!(&error.data[..2], &[4, 14], "the FLOW_MOD comes back in the error");
        }
        _ => unreachable!(),
    }
    assert_eq!(d.session.state(), SessionState::Ready);

    // Garbage that frames: an unknown message type. OVS answers OFPBRC_BAD_TYPE.
    let unknown = Message::Unknown {
        header: Header { version: 4, msg_type: MsgType::Unknown(99), length: 12, xid: 0 },
        body: vec![0xde, 0xad, 0xbe, 0xef],
    };
    let x = d.session.send(&unknown);
    match d.expect(5, "error for unknown type", |e| matches!(e, Event::Error { xid, .. } if *xid == x)) {
        Event::Error { error, .. } => assert_eq!(error.code, ErrorCode::BAD_REQUEST_BAD_TYPE),
        _ => unreachable!(),
    }
    // A message of another OpenFlow version (1.0 BARRIER_REQUEST): OVS 3.1 drops it without an
    // answer and keeps the connection (observed; no OFPBRC_BAD_VERSION comes back).
    let v10 = Message::Unknown {
        header: Header { version: 1, msg_type: MsgType::Unknown(18), length: 8, xid: 0 },
        body: vec![],
    };
    d.session.send(&v10);
    let seen = d.run(Instant::now() + Duration::from_secs(1), |_| false);
    assert!(seen.is_empty(), "{seen:?}");
    let b = d.session.barrier(Instant::now());
    d.expect(5, "barrier after garbage", |e| matches!(e, Event::Reply { xid, .. } if *xid == b));

    // Garbage that breaks framing (length 4 < header): OVS drops the connection.
    d.stream.write_all(&[4, 20, 0, 4, 0, 0, 0, 1]).expect("write");
    d.expect(5, "connection drop", |e| matches!(e, Event::Closed { reason: CloseReason::PeerClosed }));
}

#[test]
fn survives_idle_by_answering_ovs_echo() {
    let ovs = Ovs::start(&["br0"]);
    // We never probe ourselves here, so staying connected proves OVS's probes were answered
    // (OVS drops a connection 5 s after an unanswered probe).
    let cfg = SessionConfig { echo_interval: Duration::from_secs(60), ..SessionConfig::default() };
    let mut d = Driver::connect(&ovs, cfg);
    d.ready();
    let seen = d.run(Instant::now() + Duration::from_secs(15), |_| false);
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(d.session.state(), SessionState::Ready);
    let echoes = d.received_headers().iter().filter(|h| h.msg_type == MsgType::EchoRequest).count();
    assert!(echoes >= 2, "OVS probes every 5 s idle; saw {echoes}");
    let b = d.session.barrier(Instant::now());
    d.expect(5, "barrier after idle", |e| matches!(e, Event::Reply { xid, .. } if *xid == b));
}

#[test]
fn our_echo_probe_is_answered_by_ovs() {
    let ovs = Ovs::start(&["br0"]);
    // Probing after 1 s idle with a 1 s timeout: OVS must answer every probe in time.
    let cfg = SessionConfig {
        echo_interval: Duration::from_secs(1),
        echo_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let mut d = Driver::connect(&ovs, cfg);
    d.ready();
    let seen = d.run(Instant::now() + Duration::from_secs(4), |_| false);
    assert!(seen.is_empty(), "{seen:?}");
    let replies = d.received_headers().iter().filter(|h| h.msg_type == MsgType::EchoReply).count();
    assert!(replies >= 2, "expected OVS's echo replies, saw {replies}");
    assert_eq!(d.session.state(), SessionState::Ready);
}
