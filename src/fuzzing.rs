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

// === session ===

/// A tiny deterministic generator (xorshift64*) for the session target's schedule: chunk sizes,
/// time steps and application calls come from the input's first 8 bytes, the byte stream from
/// the rest, so a seed is 8 schedule bytes followed by a real OVS byte stream.
struct Schedule(u64);

impl Schedule {
    fn new(seed: u64) -> Schedule {
        Schedule(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A chunk length: mostly small (split headers), sometimes whole messages' worth.
    fn chunk(&mut self) -> usize {
        match self.next() % 8 {
            0 => 1,
            1..=3 => 1 + (self.next() % 16) as usize,
            4..=6 => 1 + (self.next() % 300) as usize,
            _ => 1 + (self.next() % 4096) as usize,
        }
    }
}

/// What the session target saw of one run: the bytes sent and the events, checked as they come.
#[derive(Default)]
struct Watch {
    out: Vec<u8>,
    readies: usize,
    closed: bool,
    events: usize,
    packet_ins: usize,
    /// xids of the application's requests, and of those answered.
    asked: std::collections::HashSet<u32>,
    answered: std::collections::HashSet<u32>,
}

impl Watch {
    fn drain(&mut self, s: &mut crate::openflow::session::Session) {
        use crate::openflow::session::Event;
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        assert_well_framed(&out);
        self.out.extend_from_slice(&out);
        while let Some(ev) = s.poll_event() {
            assert!(!self.closed, "an event after Closed: {ev:?}");
            self.events += 1;
            match &ev {
                Event::PacketIn(_) | Event::PacketIn2(_) => self.packet_ins += 1,
                Event::Ready { datapath_id } => {
                    self.readies += 1;
                    assert_eq!(self.readies, 1, "Ready twice");
                    assert_eq!(Some(*datapath_id), s.datapath_id());
                }
                Event::Closed { .. } => self.closed = true,
                Event::Reply { xid, .. } | Event::RequestFailed { xid, .. } | Event::RequestTimedOut { xid } => {
                    assert!(self.asked.contains(xid), "an answer to xid {xid}, which nobody asked: {ev:?}");
                    assert!(self.answered.insert(*xid), "xid {xid} answered twice: {ev:?}");
                }
                _ => {}
            }
        }
    }
}

/// Checks that `out` is a sequence of whole OpenFlow 1.3 messages that our decoder reads back;
/// returns how many.
fn assert_well_framed(out: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < out.len() {
        let len = match message::frame_len(&out[at..]) {
            Ok(Some(len)) => len,
            Ok(None) => panic!("the session sent a partial message at byte {at}: {:02x?}", &out[at..]),
            Err(e) => panic!("the session sent a bad header at byte {at}: {e}"),
        };
        let frame = &out[at..at + len];
        assert_eq!(frame[0], message::OFP13_VERSION, "the session sent a non-1.3 message");
        if let Err(e) = message::decode(frame) {
            panic!("the session sent a message that does not decode: {e}\n{frame:02x?}");
        }
        at += len;
        n += 1;
    }
    n
}

/// Any byte stream to the sans-IO OpenFlow session, cut into chunks with time advancing and
/// requests from the application in between (the schedule is the input's first 8 bytes).
///
/// Properties: no panic; the session only ever sends whole, decodable OpenFlow 1.3 messages;
/// what it sends is bounded by what it was given (no amplification); its state only moves
/// forward (Hello, Features, Ready, Closed); `Ready` and `Closed` come at most once and nothing
/// after `Closed`; every answer names a request the application made, at most once; after
/// `handle_timeout(now)` the next deadline is in the future (a driver never spins); and the
/// events and bytes do not depend on how the stream was cut when no time passes.
pub fn session(data: &[u8]) {
    let _ = session_run(data);
}

/// How far a [`session`] run got (for the seed tests: the seeds must reach deep states).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionReach {
    pub ready: bool,
    pub packet_ins: usize,
    pub events: usize,
}

/// [`session`], returning how far the full-schedule run got.
pub fn session_run(data: &[u8]) -> SessionReach {
    use crate::openflow::session::{Session, SessionConfig, SessionState};
    use std::time::{Duration, Instant};

    if data.len() < 8 {
        return SessionReach::default();
    }
    let (seed, stream) = data.split_at(8);
    let seed = u64::from_be_bytes(seed.try_into().unwrap_or_default());
    let t0 = Instant::now();
    let cfg = SessionConfig { controller_id: if seed & 1 == 1 { Some(3) } else { None }, ..SessionConfig::default() };
    let rank = |s: SessionState| match s {
        SessionState::Hello => 0,
        SessionState::Features => 1,
        SessionState::Ready => 2,
        SessionState::Closed => 3,
    };

    // 1. The full schedule: chunks, time steps, application requests and closes.
    let mut sched = Schedule::new(seed);
    let mut s = Session::new(cfg.clone(), t0);
    let mut now = t0;
    let (mut fed, mut ticks, mut calls) = (0usize, 0usize, 0usize);
    let mut w = Watch::default();
    let mut last_rank = 0;
    let mut at = 0;
    while at < stream.len() {
        match sched.next() % 16 {
            0..=9 => {
                let n = sched.chunk().min(stream.len() - at);
                s.handle_input(&stream[at..at + n], now);
                fed += n;
                at += n;
            }
            10..=12 => {
                let step = match sched.next() % 4 {
                    0 => Duration::from_millis(1),
                    1 => Duration::from_millis(900),
                    2 => Duration::from_secs(5),
                    _ => Duration::from_secs(11),
                };
                now += step;
                s.handle_timeout(now);
                ticks += 1;
                if let Some(next) = s.poll_timeout() {
                    assert!(next > now, "after handle_timeout the next deadline is not in the future");
                }
            }
            13 | 14 => {
                let xid = if sched.next() % 2 == 0 { s.barrier(now) } else { s.request(&flow_stats_request(), now) };
                // A closed session queues nothing and promises no answer.
                if !s.is_closed() {
                    w.asked.insert(xid);
                }
                calls += 1;
            }
            _ => {
                if sched.next() % 8 == 0 {
                    s.close(crate::openflow::session::CloseReason::Local("fuzz".into()));
                }
            }
        }
        let r = rank(s.state());
        assert!(r >= last_rank, "the session went back to {:?}", s.state());
        last_rank = r;
        w.drain(&mut s);
        if s.is_closed() {
            assert_eq!(s.poll_timeout(), None, "a closed session has no deadline");
            assert_eq!(s.pending_requests(), 0, "a closed session keeps no requests");
        }
        assert!(s.pending_requests() <= w.asked.len() - w.answered.len() + 1, "more requests pending than made");
    }
    // Output is bounded by input: an error answer is at most 12 + 64 bytes for an 8-byte
    // message, an echo reply as long as its request; plus our HELLO, the handshake's few
    // messages, one probe per tick and each application request.
    let budget = 10 * fed + 256 + 16 * ticks + 64 * calls;
    assert!(w.out.len() <= budget, "sent {} bytes for {fed} bytes in, {ticks} ticks, {calls} calls", w.out.len());

    // 2. Cutting the stream differently, at one instant, changes nothing.
    let whole = |cuts: &mut dyn FnMut() -> usize| {
        let mut s = Session::new(cfg.clone(), t0);
        let mut at = 0;
        while at < stream.len() {
            let n = cuts().min(stream.len() - at);
            s.handle_input(&stream[at..at + n], t0);
            at += n;
        }
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        (out, std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>())
    };
    let mut sched = Schedule::new(seed.rotate_left(17));
    let a = whole(&mut || sched.chunk());
    let b = whole(&mut || usize::MAX);
    assert_eq!(a, b, "the session depends on how its input was cut");
    SessionReach { ready: w.readies == 1, packet_ins: w.packet_ins, events: w.events }
}

fn flow_stats_request() -> message::Message {
    use crate::openflow::message::multipart::{FlowStatsRequest, MultipartRequest, MultipartRequestBody};
    message::Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default())))
}

// === policy file ===

/// Any text to the policy file parser. Whatever parses must print (as TOML, by
/// [`policy_file_to_toml`]) and parse back equal; and its decisions must be those of a plain
/// first-match scan of its rules, on fixed packets and on packets at the edges of every rule
/// (network and broadcast addresses, first and last ports and their neighbours), so that a rule
/// index can never decide differently from the rule order.
pub fn policy_file(data: &[u8]) {
    use crate::policy::file::PolicyFile;

    let Ok(text) = std::str::from_utf8(data) else { return };
    let p = match PolicyFile::parse(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "a policy error without a reason for {text:?}");
            return;
        }
    };
    let printed = policy_file_to_toml(&p);
    match PolicyFile::parse(&printed) {
        Ok(back) => assert_eq!(back, p, "{text:?} printed as {printed:?} reads back differently"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
    for q in policy_queries(&p) {
        let first = p.rules.iter().find(|r| {
            proto_matches(r.protocol, q.protocol)
                && addr_matches(&r.src, q.src_ip)
                && addr_matches(&r.dst, q.dst_ip)
                && r.ports.is_none_or(|pr| pr.lo <= q.dst_port && q.dst_port <= pr.hi)
        });
        assert_eq!(first.is_some(), p.rules.iter().any(|r| r.matches(&q)));
        let expected = first.map_or(p.default, |r| r.action) == crate::policy::file::RuleAction::Allow;
        assert_eq!(p.allows(&q), expected, "decision differs from the first matching rule for {q:?}");
        let answer = p.evaluate(&q);
        assert_eq!(answer.allowed, expected);
        assert_eq!((answer.version, answer.ttl), (p.version, p.ttl));
        let service = p
            .services
            .iter()
            .find(|s| s.vip == q.dst_ip && s.port == q.dst_port && proto_matches(s.protocol, q.protocol));
        assert_eq!(p.service_for(&q), service, "service differs from the first matching one for {q:?}");
        assert_eq!(matches!(answer.dst_type, crate::policy::DstType::Dnat { .. }), service.is_some());
    }
}

/// The reference meaning of a rule's protocol (ICMP covers ICMPv6), independent of the parser's.
fn proto_matches(p: crate::policy::file::Protocol, proto: u8) -> bool {
    use crate::policy::file::Protocol;
    match p {
        Protocol::Tcp => proto == 6,
        Protocol::Udp => proto == 17,
        Protocol::Sctp => proto == 132,
        Protocol::Icmp => proto == 1 || proto == 58,
        Protocol::Any => true,
    }
}

/// The reference meaning of a rule side: a network holds the addresses of its family that agree
/// with it in the first `prefix` bits.
fn addr_matches(a: &crate::policy::file::AddrMatch, ip: std::net::IpAddr) -> bool {
    use crate::policy::file::AddrMatch;
    use std::net::IpAddr;
    match (a, ip) {
        (AddrMatch::Any, _) => true,
        (AddrMatch::Net(n), ip) => match (n.addr(), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let keep = u32::MAX.checked_shl(32 - u32::from(n.prefix())).unwrap_or(0);
                u32::from(ip) & keep == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let keep = u128::MAX.checked_shl(128 - u32::from(n.prefix())).unwrap_or(0);
                u128::from(ip) & keep == u128::from(net)
            }
            _ => false,
        },
    }
}

/// A policy file as TOML that [`crate::policy::file::PolicyFile::parse`] reads back to the same
/// value (the fuzz target's printer; the daemon has no need to write policy files).
pub fn policy_file_to_toml(p: &crate::policy::file::PolicyFile) -> String {
    use crate::policy::file::{AddrMatch, Protocol, RuleAction};
    use std::fmt::Write;

    let action = |a: RuleAction| if a == RuleAction::Allow { "allow" } else { "deny" };
    let proto = |p: Protocol| match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        Protocol::Icmp => "icmp",
        Protocol::Any => "any",
    };
    let addr = |a: &AddrMatch| match a {
        AddrMatch::Any => "any".to_string(),
        AddrMatch::Net(n) => n.to_string(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "version = {}", p.version);
    let _ = writeln!(s, "default = \"{}\"", action(p.default));
    let _ = writeln!(s, "ttl_ms = {}", p.ttl.as_millis());
    for r in &p.rules {
        let _ = writeln!(s, "\n[[rule]]\naction = \"{}\"", action(r.action));
        let _ =
            writeln!(s, "src = \"{}\"\ndst = \"{}\"\nprotocol = \"{}\"", addr(&r.src), addr(&r.dst), proto(r.protocol));
        if let Some(pr) = r.ports {
            let _ = writeln!(s, "ports = \"{}-{}\"", pr.lo, pr.hi);
        }
    }
    for v in &p.services {
        let _ =
            writeln!(s, "\n[[service]]\nvip = \"{}\"\nport = {}\nprotocol = \"{}\"", v.vip, v.port, proto(v.protocol));
        let eps: Vec<String> = v
            .endpoints
            .iter()
            .map(|e| format!("{{ ip = \"{}\", port = {}, weight = {} }}", e.ip, e.port, e.weight))
            .collect();
        let _ = writeln!(s, "endpoints = [{}]", eps.join(", "));
    }
    for e in &p.endpoints {
        let _ = writeln!(s, "\n[[endpoint]]\nip = \"{}\"\nmac = \"{}\"\nport = {}", e.ip, e.mac, e.port);
    }
    s
}

/// Packets to decide: a few fixed ones, and for every rule and service the addresses and ports
/// at its edges.
fn policy_queries(p: &crate::policy::file::PolicyFile) -> Vec<crate::policy::PolicyQuery> {
    use crate::policy::file::AddrMatch;
    use crate::policy::PolicyQuery;
    use std::net::IpAddr;

    /// The network's first and last address and the addresses just outside it.
    fn edges(a: &AddrMatch) -> Vec<IpAddr> {
        let AddrMatch::Net(n) = a else { return vec![] };
        match n.addr() {
            IpAddr::V4(a) => {
                let (lo, host) = (u32::from(a), u32::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0));
                [lo, lo | host, lo.wrapping_sub(1), (lo | host).wrapping_add(1)].map(|x| IpAddr::V4(x.into())).to_vec()
            }
            IpAddr::V6(a) => {
                let (lo, host) = (u128::from(a), u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0));
                [lo, lo | host, lo.wrapping_sub(1), (lo | host).wrapping_add(1)].map(|x| IpAddr::V6(x.into())).to_vec()
            }
        }
    }

    let mut srcs: Vec<IpAddr> =
        vec![IpAddr::V4([10, 244, 0, 5].into()), IpAddr::V6([0xfd00, 0, 0, 0, 0, 0, 0, 5].into())];
    let mut dsts = srcs.clone();
    let mut ports: Vec<u16> = vec![0, 53, 80, 443, 8080, 65535];
    for r in p.rules.iter().take(4) {
        srcs.extend(edges(&r.src));
        dsts.extend(edges(&r.dst));
        if let Some(pr) = r.ports {
            ports.extend([pr.lo, pr.hi, pr.lo.wrapping_sub(1), pr.hi.wrapping_add(1)]);
        }
    }
    for s in p.services.iter().take(4) {
        dsts.push(s.vip);
        ports.push(s.port);
    }
    srcs.dedup();
    dsts.dedup();
    ports.sort_unstable();
    ports.dedup();
    let query = |src_ip, dst_ip, dst_port, protocol| PolicyQuery {
        src_ip,
        dst_ip,
        src_mac: crate::packet::MacAddr([2, 0, 0, 0, 0, 1]),
        dst_mac: crate::packet::MacAddr([2, 0, 0, 0, 0, 2]),
        src_port: 40000,
        dst_port,
        protocol,
        is_reply: false,
        nat: false,
    };
    const PROTOS: [u8; 6] = [6, 17, 132, 1, 58, 47];
    let mut out = Vec::new();
    // Every pair of addresses with a rotating port and protocol, then every port and protocol
    // with a rotating pair.
    for (i, &src) in srcs.iter().enumerate() {
        for (j, &dst) in dsts.iter().enumerate() {
            out.push(query(src, dst, ports[(i + j) % ports.len()], PROTOS[(i * 5 + j) % PROTOS.len()]));
        }
    }
    for (k, &port) in ports.iter().enumerate() {
        for (m, &proto) in PROTOS.iter().enumerate() {
            out.push(query(srcs[(k + m) % srcs.len()], dsts[(k * 3 + m) % dsts.len()], port, proto));
        }
    }
    out
}

// === REST ===

/// The REST target's daemon: each dpid answers in one way (1 serves, 2 is refused by the switch,
/// 3 times out, 4 fails, 5 is not ready, others are unknown), and every call checks what the
/// HTTP layer passed it.
struct FuzzApi {
    ready: bool,
}

impl FuzzApi {
    fn outcome(
        &self,
        dpid: crate::control::api::Dpid,
        deadline: std::time::Instant,
    ) -> Result<(), crate::control::api::ApiError> {
        use crate::control::api::ApiError;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(left <= REST_TIMEOUT, "an api call with a deadline beyond the request timeout");
        match dpid.0 {
            1 => Ok(()),
            2 => Err(ApiError::Refused { name: "OFPBAC_BAD_OUT_PORT".into(), detail: "port 99".into() }),
            3 => Err(ApiError::Timeout),
            4 => Err(ApiError::Failed("connection lost".into())),
            5 => Err(ApiError::NotReady("handshake in progress".into())),
            _ => Err(ApiError::UnknownSwitch(dpid)),
        }
    }
}

const REST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl crate::control::api::ControlApi for FuzzApi {
    fn ready(&self) -> Result<(), String> {
        if self.ready {
            Ok(())
        } else {
            Err("no switch connected yet".into())
        }
    }

    fn switches(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Vec<crate::control::api::SwitchInfo>, crate::control::api::ApiError> {
        self.outcome(crate::control::api::Dpid(if self.ready { 1 } else { 5 }), deadline)?;
        Ok(vec![])
    }

    fn dump_flows(
        &self,
        dpid: crate::control::api::Dpid,
        deadline: std::time::Instant,
    ) -> Result<Vec<String>, crate::control::api::ApiError> {
        self.outcome(dpid, deadline)?;
        Ok(vec![" cookie=0x5, table=3, priority=100,tcp actions=drop".into()])
    }

    fn flow_mods(
        &self,
        dpid: crate::control::api::Dpid,
        _command: crate::control::api::FlowCommand,
        flows: Vec<FlowMod>,
        bundle: bool,
        deadline: std::time::Instant,
    ) -> Result<crate::control::api::FlowModReply, crate::control::api::ApiError> {
        assert!(!flows.is_empty(), "flow_mods called with no flows");
        self.outcome(dpid, deadline)?;
        Ok(crate::control::api::FlowModReply { applied: flows.len(), bundle })
    }

    fn delete_flows(
        &self,
        dpid: crate::control::api::Dpid,
        filter: crate::control::api::DeleteFilter,
        deadline: std::time::Instant,
    ) -> Result<crate::control::api::FlowModReply, crate::control::api::ApiError> {
        assert!(filter.table.is_none_or(|t| t < 255), "delete filter {filter:?} names OFPTT_ALL as a table");
        self.outcome(dpid, deadline)?;
        Ok(crate::control::api::FlowModReply { applied: 1, bundle: false })
    }

    fn shards(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Vec<crate::control::api::ShardStats>, crate::control::api::ApiError> {
        self.outcome(crate::control::api::Dpid(if self.ready { 1 } else { 5 }), deadline)?;
        Ok(vec![crate::control::api::ShardStats::default()])
    }

    fn group_mods(
        &self,
        dpid: crate::control::api::Dpid,
        groups: Vec<message::GroupMod>,
        bundle: bool,
        deadline: std::time::Instant,
    ) -> Result<crate::control::api::FlowModReply, crate::control::api::ApiError> {
        assert!(!groups.is_empty(), "group_mods called with no groups");
        self.outcome(dpid, deadline)?;
        Ok(crate::control::api::FlowModReply { applied: groups.len(), bundle })
    }

    fn meter_mods(
        &self,
        dpid: crate::control::api::Dpid,
        meters: Vec<message::MeterMod>,
        deadline: std::time::Instant,
    ) -> Result<crate::control::api::FlowModReply, crate::control::api::ApiError> {
        assert!(!meters.is_empty(), "meter_mods called with no meters");
        self.outcome(dpid, deadline)?;
        Ok(crate::control::api::FlowModReply { applied: meters.len(), bundle: false })
    }

    fn invalidate(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: std::time::Instant,
    ) -> Result<crate::control::api::InvalidateReply, crate::control::api::ApiError> {
        assert!(!ips.is_empty() || below_version > 0 || all, "invalidate called with nothing to invalidate");
        self.outcome(crate::control::api::Dpid(if self.ready { 1 } else { 5 }), deadline)?;
        Ok(crate::control::api::InvalidateReply { answers_dropped: ips.len() as u64, connections_removed: 0 })
    }
}

/// The statuses the REST API may answer with; anything else (a 500 among them) is a bug.
pub const REST_STATUSES: &[u16] = &[200, 201, 204, 400, 401, 404, 405, 409, 413, 431, 502, 503, 504];

/// The bearer token of the `rest` target's router.
const REST_TOKEN: &str = "fuzz-token-0123456789abcdef";

/// A request to the REST router, `handle` (no sockets): the first byte picks the method, the
/// second the daemon's state (bit 0: not ready), whether the body was too large (bit 1) and
/// the `Authorization` header (bits 2-3: the right token, none, a wrong token, another
/// scheme); then the URL (path and query) up to a newline, then the body.
///
/// Properties: no panic; without the right token a non-public route answers 401 and calls
/// nothing, with it never 401; a status from [`REST_STATUSES`]; a route label for the metrics; a
/// JSON body that parses whenever the content type says JSON; every error says why (a non-empty
/// `error`, or text for `/healthz`); a 405 names what is allowed; and the api is only called
/// with what the request asked for (see `FuzzApi`).
pub fn rest(data: &[u8]) {
    use crate::control::http::{handle, Body, HttpContext};
    use crate::control::metrics::Metrics;
    use std::sync::{Arc, OnceLock};

    static CONTEXTS: OnceLock<Option<[HttpContext; 2]>> = OnceLock::new();
    let Some(contexts) = CONTEXTS.get_or_init(|| {
        let metrics = Arc::new(Metrics::new().ok()?);
        let ctx = |ready| HttpContext {
            metrics: metrics.clone(),
            api: Arc::new(FuzzApi { ready }),
            request_timeout: REST_TIMEOUT,
            auth: crate::control::auth::HttpAuth::Bearer(crate::control::auth::Token::new(REST_TOKEN)),
        };
        Some([ctx(true), ctx(false)])
    }) else {
        panic!("metrics registry does not build");
    };
    if data.len() < 2 {
        return;
    }
    const METHODS: [&str; 8] = ["GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "OPTIONS", "BREW"];
    let Ok(method) = hyper::Method::from_bytes(METHODS[usize::from(data[0]) % METHODS.len()].as_bytes()) else {
        return;
    };
    let method = crate::control::http::Method::from(&method);
    let ctx = &contexts[usize::from(data[1] & 1)];
    let rest = &data[2..];
    let (url, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let url = String::from_utf8_lossy(url);
    let body = if data[1] & 2 != 0 { Body::TooLarge } else { Body::Bytes(body.to_vec()) };
    let right = format!("Bearer {REST_TOKEN}");
    let authorization: Option<&[u8]> = match (data[1] >> 2) & 3 {
        0 => Some(right.as_bytes()),
        1 => None,
        2 => Some(b"Bearer fuzz-token-0123456789abcdeg"),
        _ => Some(b"Basic ZnV6ejpmdXp6"),
    };
    let authorized = (data[1] >> 2) & 3 == 0;
    let mut route: &'static str = "unset";
    let reply = handle(ctx, &method, &url, authorization, body, &mut route);
    let what = format!("{method:?} {url:?} -> {} {}", reply.status, reply.body);
    assert!(REST_STATUSES.contains(&reply.status), "unexpected status: {what}");
    let path = url.split('?').next().unwrap_or("");
    let public = crate::control::auth::is_public(path);
    if authorized || public {
        assert_ne!(reply.status, 401, "refused with the right token or on an open route: {what}");
    } else {
        // FuzzApi asserts on what it is called with; a 401 must not have called it at all.
        assert_eq!(reply.status, 401, "served without the right token: {what}");
        assert_eq!(route, crate::control::http::UNAUTHORIZED_ROUTE, "{what}");
    }
    assert!(
        route == "other" || route == crate::control::http::UNAUTHORIZED_ROUTE || route.starts_with('/'),
        "no route label ({route:?}): {what}"
    );
    let json = (reply.content_type == "application/json")
        .then(|| serde_json::from_str::<serde_json::Value>(&reply.body))
        .map(|r| r.unwrap_or_else(|e| panic!("a JSON answer that does not parse ({e}): {what}")));
    if reply.status >= 400 {
        let reason = match &json {
            Some(v) => v.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_string(),
            None => reply.body.clone(),
        };
        assert!(!reason.trim().is_empty(), "an error without a reason: {what}");
    }
    if reply.status == 405 {
        assert!(reply.allow.is_some_and(|a| !a.is_empty()), "a 405 without Allow: {what}");
    }
}

/// Any text to the `dpctl/dump-flows` parser (`offload::datapath`). Whatever parses prints as a
/// line that parses to a flow printing the same (printing is a fixed point), and every flow
/// lowers and is judged under the default profile without panicking.
pub fn dpctl_text(data: &[u8]) {
    use crate::offload::datapath::{explain, parse_flow, parse_lines};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut flows = Vec::new();
    for (line, r) in parse_lines(text) {
        let Ok(f) = r else { continue };
        let once = f.to_string();
        let again = parse_flow(&once).unwrap_or_else(|e| panic!("line {line} printed as {once:?} does not parse: {e}"));
        assert_eq!(again.to_string(), once, "printing line {line} is not a fixed point");
        let _ = f.short();
        flows.push(f);
    }
    // Loaded once: reading the profile's TOML costs far more than judging a flow.
    static PROFILE: std::sync::OnceLock<crate::offload::Profile> = std::sync::OnceLock::new();
    let profile = PROFILE.get_or_init(crate::offload::Profile::default_profile);
    for e in explain(&flows, profile) {
        let _ = e.to_string();
    }
}
