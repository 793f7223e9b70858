//! One emulated OVS 3.1 switch connection: answers the controller the way OVS does (handshake,
//! echo, barrier, multiparts, role, bundles), and keeps its window of PACKET_INs in flight.
//!
//! Each connection is one task on a current-thread tokio runtime; a switch's connections share
//! its 5-tuple counter (and, in latency mode, its single outstanding packet). Reads and writes go
//! through `ready()` + `try_read`/`try_write`, so a connection never blocks on one direction
//! while the controller waits on the other.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardflow::openflow::message::multipart::{mp_type, MultipartReplyBody};
use shardflow::openflow::message::{
    AggregateStats, AsyncConfig, BundleControl, Desc, FeaturesReply, Hello, Message, MultipartReply, Port, Role,
    SwitchConfig,
};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::template::{packet_out_id, symmetric_hash, tuple, Host, MatchMeta, Proto, Template};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `--window` packet-ins in flight per connection.
    Throughput,
    /// One packet-in in flight per switch.
    Latency,
    /// No window: packet-ins are written whenever the connection takes them (a flood); answers
    /// are counted, not timed (ARP answers of `--arp-every` are timed).
    Flood,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// The PACKET_OUT carrying the packet (matched by the sequence embedded in it).
    Packetout,
    /// The first FLOW_MOD after the packet-in (oldest unanswered packet-in first).
    Flowmod,
}

/// What every connection of the run shares (read-only).
#[derive(Debug)]
pub struct Plan {
    pub mode: Mode,
    pub answer: Answer,
    pub window: usize,
    pub proto: Proto,
    pub pairs: Vec<(Host, Host)>,
    pub n_switches: u64,
    pub meta: MatchMeta,
    pub warm: Instant,
    pub end: Instant,
    pub timeout: Duration,
    pub start_delay: Duration,
    pub n_ports: u32,
    /// Flood mode: every `arp_every`-th packet-in is an ARP request (0: none).
    pub arp_every: u64,
}

impl Plan {
    fn measuring(&self, now: Instant) -> bool {
        now >= self.warm && now < self.end
    }
}

/// Counters of one connection (or, merged, of the run). "Measured" counters only count what
/// happened between the end of the warm-up and the end of the run.
#[derive(Debug)]
pub struct Stats {
    pub connections: u64,
    pub failed: u64,
    pub closed: u64,
    pub handshaken: u64,
    pub sent: u64,
    pub answered: u64,
    pub flow_mods: u64,
    pub packet_outs: u64,
    pub msgs_rx: u64,
    pub msgs_tx: u64,
    pub bundle_adds: u64,
    pub unmatched_packet_outs: u64,
    pub unknown: u64,
    /// Over the whole run.
    pub errors: u64,
    pub timeouts: u64,
    pub first_error: Option<String>,
    /// Latency of answered packet-ins, nanoseconds.
    pub hist: Histogram<u64>,
    /// ARP requests sent (measured) and those answered by an ARP reply PACKET_OUT.
    pub arp_sent: u64,
    pub arp_answered: u64,
    /// Latency of answered ARP requests, nanoseconds.
    pub arp_hist: Histogram<u64>,
}

pub fn new_hist() -> Histogram<u64> {
    #[allow(clippy::unwrap_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap()
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections: 0,
            failed: 0,
            closed: 0,
            handshaken: 0,
            sent: 0,
            answered: 0,
            flow_mods: 0,
            packet_outs: 0,
            msgs_rx: 0,
            msgs_tx: 0,
            bundle_adds: 0,
            unmatched_packet_outs: 0,
            unknown: 0,
            errors: 0,
            timeouts: 0,
            first_error: None,
            hist: new_hist(),
            arp_sent: 0,
            arp_answered: 0,
            arp_hist: new_hist(),
        }
    }
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.connections += o.connections;
        self.failed += o.failed;
        self.closed += o.closed;
        self.handshaken += o.handshaken;
        self.sent += o.sent;
        self.answered += o.answered;
        self.flow_mods += o.flow_mods;
        self.packet_outs += o.packet_outs;
        self.msgs_rx += o.msgs_rx;
        self.msgs_tx += o.msgs_tx;
        self.bundle_adds += o.bundle_adds;
        self.unmatched_packet_outs += o.unmatched_packet_outs;
        self.unknown += o.unknown;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        let _ = self.hist.add(&o.hist);
        self.arp_sent += o.arp_sent;
        self.arp_answered += o.arp_answered;
        let _ = self.arp_hist.add(&o.arp_hist);
    }
}

// === The in-flight ring ===

#[derive(Clone, Copy)]
struct Slot {
    seq: u32,
    sport: u16,
    live: bool,
    sent: Instant,
}

/// Packet-ins in flight on one connection, by sequence number (FIFO: `oldest..next`).
struct Ring {
    slots: Vec<Slot>,
    mask: u32,
    next: u32,
    oldest: u32,
    live: usize,
}

impl Ring {
    fn new(window: usize, now: Instant) -> Ring {
        let n = (window.max(1) * 4).next_power_of_two().max(1024);
        Ring {
            slots: vec![Slot { seq: 0, sport: 0, live: false, sent: now }; n],
            mask: n as u32 - 1,
            next: 0,
            oldest: 0,
            live: 0,
        }
    }

    /// Reserves the next sequence number; `true` in the second place when an old packet still in
    /// flight had to be given up (counts as a timeout).
    fn push(&mut self, sport: u16, now: Instant) -> (u32, bool) {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        let s = &mut self.slots[(seq & self.mask) as usize];
        let evicted = s.live;
        if !evicted {
            self.live += 1;
        }
        *s = Slot { seq, sport, live: true, sent: now };
        if self.next.wrapping_sub(self.oldest) > self.mask + 1 {
            self.oldest = self.next.wrapping_sub(self.mask + 1);
        }
        (seq, evicted)
    }

    /// The packet `seq` (with source port `sport`) was answered: its send time.
    fn take(&mut self, seq: u32, sport: u16) -> Option<Instant> {
        let s = &mut self.slots[(seq & self.mask) as usize];
        if s.live && s.seq == seq && s.sport == sport {
            s.live = false;
            self.live -= 1;
            Some(s.sent)
        } else {
            None
        }
    }

    fn skip_dead(&mut self) {
        while self.oldest != self.next {
            let s = &self.slots[(self.oldest & self.mask) as usize];
            if s.live && s.seq == self.oldest {
                break;
            }
            self.oldest = self.oldest.wrapping_add(1);
        }
    }

    /// The oldest packet in flight is answered (FLOW_MOD answers).
    fn take_oldest(&mut self) -> Option<Instant> {
        self.skip_dead();
        if self.oldest == self.next {
            return None;
        }
        let s = &mut self.slots[(self.oldest & self.mask) as usize];
        s.live = false;
        self.live -= 1;
        Some(s.sent)
    }

    /// Gives up packets sent before `deadline`; how many.
    fn expire(&mut self, deadline: Instant) -> usize {
        let mut n = 0;
        loop {
            self.skip_dead();
            if self.oldest == self.next {
                return n;
            }
            let s = &mut self.slots[(self.oldest & self.mask) as usize];
            if s.sent >= deadline {
                return n;
            }
            s.live = false;
            self.live -= 1;
            n += 1;
        }
    }
}

// === Switches ===

/// A connection's mailbox (latency mode hands the switch's one packet to a connection).
#[derive(Default)]
pub struct ConnSlot {
    pending: RefCell<VecDeque<u64>>,
    notify: Notify,
    alive: Cell<bool>,
}

/// One emulated switch: its index, tuple counter and connections.
pub struct Switch {
    pub index: u64,
    counter: Cell<u64>,
    conns: Vec<ConnSlot>,
    started: Cell<bool>,
}

impl Switch {
    pub fn new(index: u64, n_conns: usize) -> Rc<Switch> {
        let conns = (0..n_conns).map(|_| ConnSlot { alive: Cell::new(true), ..Default::default() }).collect();
        Rc::new(Switch { index, counter: Cell::new(0), conns, started: Cell::new(false) })
    }

    /// The next tuple index and which connection it goes on (symmetric hash % connections).
    fn next_tuple(&self, plan: &Plan) -> (u64, usize) {
        let k = self.counter.get();
        self.counter.set(k + 1);
        (k, self.conn_of(plan, k))
    }

    fn conn_of(&self, plan: &Plan, k: u64) -> usize {
        let n = self.conns.len();
        if n == 1 {
            return 0;
        }
        let (pair, sp, dp, tcp) = tuple(k, self.index, plan.n_switches, plan.pairs.len() as u64, plan.proto);
        let (a, b) = plan.pairs[pair];
        (symmetric_hash(a.ip, b.ip, if tcp { 6 } else { 17 }, sp, dp) % n as u64) as usize
    }

    /// The next tuple that hashes to connection `c` (throughput mode: tuples of other connections
    /// are skipped, never reused).
    fn next_for(&self, plan: &Plan, c: usize) -> u64 {
        loop {
            let (k, to) = self.next_tuple(plan);
            if to == c {
                return k;
            }
        }
    }

    /// Latency mode: hands the switch's next packet to the connection it hashes to (or to a live
    /// one when that connection is gone).
    fn issue(&self, plan: &Plan) {
        let (k, mut to) = self.next_tuple(plan);
        if !self.conns[to].alive.get() {
            match self.conns.iter().position(|c| c.alive.get()) {
                Some(i) => to = i,
                None => return,
            }
        }
        self.conns[to].pending.borrow_mut().push_back(k);
        self.conns[to].notify.notify_one();
    }
}

// === The connection ===

const READ_BUF: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;
const OUT_HIGH: usize = 512 * 1024;
const OFP13: u8 = 4;
const ONF_EXPERIMENTER: u32 = 0x4F4E_4600;
const NX_VENDOR_ID: u32 = 0x0000_2320;

struct Conn {
    plan: Arc<Plan>,
    sw: Rc<Switch>,
    c: usize,
    /// `[pair][tcp as usize]`.
    templates: Vec<[Template; 2]>,
    ring: Ring,
    out: Vec<u8>,
    out_pos: usize,
    stats: Stats,
    features_at: Option<Instant>,
    config: SwitchConfig,
    async_config: AsyncConfig,
    role: Role,
    /// ARP requests in flight (id, sent), oldest first: the controller answers a connection's
    /// packet-ins in order, so an answer also tells which older ones were never answered.
    arps: VecDeque<(u32, Instant)>,
    next_arp: u32,
}

/// ARP requests in flight per connection at most; older ones are given up.
const ARP_IN_FLIGHT: usize = 65_536;
/// The first two bytes of an ARP request's sender MAC; the other four carry its id (the reply's
/// target MAC brings it back).
const ARP_MAC_PREFIX: [u8; 2] = [0x0a, 0x5a];

/// Runs one switch connection until the end of the run; its counters.
pub async fn run_conn(plan: Arc<Plan>, sw: Rc<Switch>, c: usize, addr: SocketAddr, connect_timeout: Duration) -> Stats {
    let mut stats = Stats { connections: 1, ..Default::default() };
    let meta = MatchMeta { reg15: c as u32, ..plan.meta };
    let mut templates = Vec::new();
    for (a, b) in &plan.pairs {
        match (Template::new(*a, *b, false, meta), Template::new(*a, *b, true, meta)) {
            (Ok(u), Ok(t)) => templates.push([u, t]),
            (Err(e), _) | (_, Err(e)) => {
                stats.failed = 1;
                stats.first_error = Some(format!("template: {e:#}"));
                sw.conns[c].alive.set(false);
                return stats;
            }
        }
    }
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(stats, &sw, c, format!("connect {addr}: {e}")),
        Err(_) => return failed(stats, &sw, c, format!("connect {addr}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let now = Instant::now();
    let mut conn = Conn {
        ring: Ring::new(plan.window, now),
        plan,
        sw,
        c,
        templates,
        out: Vec::with_capacity(OUT_HIGH * 2),
        out_pos: 0,
        stats,
        features_at: None,
        config: SwitchConfig { flags: 0, miss_send_len: 128 },
        async_config: AsyncConfig {
            packet_in_mask: [0x7, 0],
            port_status_mask: [0x7, 0x7],
            flow_removed_mask: [0xf, 0],
        },
        role: Role { role: Role::EQUAL, generation_id: u64::MAX },
        arps: VecDeque::new(),
        next_arp: 0,
    };
    if let Err(e) = conn.run(&stream).await {
        if Instant::now() < conn.plan.end {
            conn.stats.closed = 1;
            if conn.stats.first_error.is_none() {
                conn.stats.first_error = Some(format!("connection {addr}: {e}"));
            }
        }
    }
    conn.sw.conns[c].alive.set(false);
    conn.stats
}

fn failed(mut stats: Stats, sw: &Switch, c: usize, why: String) -> Stats {
    stats.failed = 1;
    stats.first_error = Some(why);
    sw.conns[c].alive.set(false);
    stats
}

impl Conn {
    async fn run(&mut self, stream: &TcpStream) -> io::Result<()> {
        let mut buf = vec![0u8; READ_BUF];
        let (mut start, mut end) = (0usize, 0usize);
        self.push_msg(&Message::Hello(Hello::with_bitmap(1 << OFP13)), 1);
        let plan = self.plan.clone();
        let sw = self.sw.clone();
        let c = self.c;
        let mut next_expiry = Instant::now() + Duration::from_millis(50);
        loop {
            let now = Instant::now();
            if now >= plan.end {
                return Ok(());
            }
            if now >= next_expiry {
                self.expire(now);
                next_expiry = now + Duration::from_millis(50);
            }
            let send_from = self.features_at.map(|t| t + plan.start_delay);
            let sending = send_from.is_some_and(|t| now >= t);
            if sending {
                self.fill(now);
            }
            let mut wake = plan.end.min(next_expiry);
            if let Some(t) = send_from.filter(|_| !sending) {
                wake = wake.min(t);
            }
            let interest = if self.out_pos < self.out.len() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let latency = plan.mode == Mode::Latency;
            tokio::select! {
                biased;
                r = stream.ready(interest) => {
                    let ready = r?;
                    if ready.is_readable() {
                        if end + READ_CHUNK > buf.len() {
                            buf.copy_within(start..end, 0);
                            end -= start;
                            start = 0;
                        }
                        match stream.try_read(&mut buf[end..]) {
                            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the controller")),
                            Ok(n) => {
                                end += n;
                                start += self.on_input(&buf[start..end], Instant::now())?;
                                if start == end {
                                    start = 0;
                                    end = 0;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if ready.is_writable() && self.out_pos < self.out.len() {
                        self.flush(stream)?;
                    }
                }
                _ = sw.conns[c].notify.notified(), if latency => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            // Write what is due now rather than waiting for the next turn of the loop.
            if self.out_pos < self.out.len() {
                self.flush(stream)?;
            }
        }
    }

    fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        match stream.try_write(&self.out[self.out_pos..]) {
            Ok(n) => {
                self.out_pos += n;
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn expire(&mut self, now: Instant) {
        let Some(deadline) = now.checked_sub(self.plan.timeout) else { return };
        let n = self.ring.expire(deadline);
        if n > 0 {
            self.stats.timeouts += n as u64;
            if self.plan.mode == Mode::Latency {
                for _ in 0..n {
                    self.sw.issue(&self.plan);
                }
            }
        }
    }

    /// Queues packet-ins: up to the window (throughput) or the packets handed to us (latency).
    fn fill(&mut self, now: Instant) {
        let plan = self.plan.clone();
        match plan.mode {
            Mode::Throughput => {
                while self.ring.live < plan.window && self.out.len() - self.out_pos < OUT_HIGH {
                    let k = self.sw.next_for(&plan, self.c);
                    self.send_packet(k, now);
                }
            }
            Mode::Latency => {
                if !self.sw.started.get() {
                    self.sw.started.set(true);
                    self.sw.issue(&plan);
                }
                loop {
                    let k = self.sw.conns[self.c].pending.borrow_mut().pop_front();
                    let Some(k) = k else { break };
                    self.send_packet(k, now);
                }
            }
            Mode::Flood => {
                while self.out.len() - self.out_pos < OUT_HIGH {
                    let k = self.sw.next_for(&plan, self.c);
                    if plan.arp_every > 0 && k % plan.arp_every == 0 {
                        self.send_arp(k, now);
                    } else {
                        self.send_unwatched(k, now);
                    }
                }
            }
        }
    }

    /// Flood mode: a packet-in that is not tracked for an answer.
    fn send_unwatched(&mut self, k: u64, now: Instant) {
        let plan = &self.plan;
        let (pair, sport, dport, tcp) = tuple(k, self.sw.index, plan.n_switches, plan.pairs.len() as u64, plan.proto);
        self.templates[pair][tcp as usize].write(&mut self.out, sport, dport, k as u32);
        if plan.measuring(now) {
            self.stats.sent += 1;
            self.stats.msgs_tx += 1;
        }
    }

    /// An ARP request from a pair's source for its destination, as OVS sends it from the
    /// pipeline's `arp = "controller"` flow; its id in the sender MAC.
    fn send_arp(&mut self, k: u64, now: Instant) {
        let plan = self.plan.clone();
        let (a, b) = plan.pairs[(k % plan.pairs.len() as u64) as usize];
        let id = self.next_arp;
        self.next_arp = id.wrapping_add(1);
        let i = id.to_be_bytes();
        let sha = shardflow::packet::MacAddr([ARP_MAC_PREFIX[0], ARP_MAC_PREFIX[1], i[0], i[1], i[2], i[3]]);
        if let Ok(bytes) = crate::template::arp_packet_in(sha, a, b.ip, plan.meta) {
            self.out.extend_from_slice(&bytes);
        }
        if self.arps.len() >= ARP_IN_FLIGHT {
            self.arps.pop_front();
        }
        self.arps.push_back((id, now));
        if plan.measuring(now) {
            self.stats.sent += 1;
            self.stats.msgs_tx += 1;
            self.stats.arp_sent += 1;
        }
    }

    /// An ARP reply in a PACKET_OUT's frame, if it answers one of ours: its id.
    fn arp_answer_id(frame: &[u8]) -> Option<u32> {
        // Ethernet type ARP, operation 2 (reply), target MAC = our sender MAC.
        if frame.get(12..14)? != [0x08, 0x06] || frame.get(20..22)? != [0, 2] || frame.get(32..34)? != ARP_MAC_PREFIX {
            return None;
        }
        let t = frame.get(34..38)?;
        Some(u32::from_be_bytes([t[0], t[1], t[2], t[3]]))
    }

    fn on_arp_answer(&mut self, id: u32, now: Instant) {
        // Older requests still queued were not answered (dropped by the controller).
        while let Some((front, sent)) = self.arps.pop_front() {
            if front == id {
                if self.plan.measuring(sent) && self.plan.measuring(now) {
                    self.stats.arp_answered += 1;
                    let ns = now.saturating_duration_since(sent).as_nanos().max(1) as u64;
                    self.stats.arp_hist.saturating_record(ns);
                }
                return;
            }
        }
    }

    fn send_packet(&mut self, k: u64, now: Instant) {
        let plan = &self.plan;
        let (pair, sport, dport, tcp) = tuple(k, self.sw.index, plan.n_switches, plan.pairs.len() as u64, plan.proto);
        let (seq, evicted) = self.ring.push(sport, now);
        if evicted {
            self.stats.timeouts += 1;
        }
        self.templates[pair][tcp as usize].write(&mut self.out, sport, dport, seq);
        if plan.measuring(now) {
            self.stats.sent += 1;
            self.stats.msgs_tx += 1;
        }
    }

    fn answered(&mut self, sent: Instant, now: Instant) {
        if self.plan.measuring(now) {
            self.stats.answered += 1;
            let ns = now.saturating_duration_since(sent).as_nanos().max(1) as u64;
            self.stats.hist.saturating_record(ns);
        }
        if self.plan.mode == Mode::Latency {
            self.sw.issue(&self.plan);
        }
    }

    fn push_msg(&mut self, msg: &Message, xid: u32) {
        shardflow::openflow::message::encode_into(msg, xid, &mut self.out);
        if self.plan.measuring(Instant::now()) {
            self.stats.msgs_tx += 1;
        }
    }

    /// Handles every whole message at the start of `input`; how many bytes were used.
    fn on_input(&mut self, input: &[u8], now: Instant) -> io::Result<usize> {
        let mut at = 0;
        let measuring = self.plan.measuring(now);
        while input.len() - at >= 8 {
            let len = usize::from(u16::from_be_bytes([input[at + 2], input[at + 3]]));
            if len < 8 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message length {len} < 8")));
            }
            if input.len() - at < len {
                break;
            }
            let msg = &input[at..at + len];
            at += len;
            if measuring {
                self.stats.msgs_rx += 1;
            }
            self.on_message(msg, now, measuring);
        }
        Ok(at)
    }

    fn on_message(&mut self, m: &[u8], now: Instant, measuring: bool) {
        let xid = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
        let be16 = |at: usize| m.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
        let be32 = |at: usize| m.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
        if m[0] != OFP13 && m[1] != 0 {
            self.stats.unknown += 1;
            return;
        }
        match m[1] {
            0 => {} // HELLO: ours went first; both speak 1.3
            1 => {
                self.stats.errors += 1;
                if self.stats.first_error.is_none() {
                    let text = shardflow::openflow::message::decode(m)
                        .map(|(h, msg)| shardflow::openflow::message::ofp_print(&h, &msg))
                        .unwrap_or_else(|_| format!("type {} code {}", be16(8), be16(10)));
                    self.stats.first_error = Some(format!("OFPT_ERROR from the controller: {text}"));
                }
            }
            2 => {
                // ECHO_REQUEST -> ECHO_REPLY with the same xid and payload.
                let start = self.out.len();
                self.out.extend_from_slice(m);
                self.out[start + 1] = 3;
                if measuring {
                    self.stats.msgs_tx += 1;
                }
            }
            3 => {}
            4 => self.on_experimenter(m, xid, be32(8), be32(12)),
            5 => {
                let f = FeaturesReply {
                    datapath_id: self.sw.index + 1,
                    n_buffers: 0,
                    n_tables: 254,
                    auxiliary_id: 0,
                    capabilities: 0x4f,
                    reserved: 0,
                };
                self.push_msg(&Message::FeaturesReply(f), xid);
                if self.features_at.is_none() {
                    self.features_at = Some(now);
                    self.stats.handshaken = 1;
                }
            }
            7 => self.push_msg(&Message::GetConfigReply(self.config), xid),
            9 => {
                if m.len() == 12 {
                    self.config = SwitchConfig { flags: be16(8), miss_send_len: be16(10) };
                }
            }
            13 => {
                if measuring {
                    self.stats.packet_outs += 1;
                }
                // header 8, buffer_id 4, in_port 4, actions_len 2, pad 6, actions, frame
                let actions_len = usize::from(be16(16));
                if let Some(id) = m.get(24 + actions_len..).and_then(Self::arp_answer_id) {
                    self.on_arp_answer(id, now);
                    return;
                }
                if self.plan.answer == Answer::Packetout && self.plan.mode != Mode::Flood {
                    match packet_out_id(m).and_then(|(seq, sport)| self.ring.take(seq, sport)) {
                        Some(sent) => self.answered(sent, now),
                        None => {
                            if measuring {
                                self.stats.unmatched_packet_outs += 1;
                            }
                        }
                    }
                }
            }
            14 => {
                if measuring {
                    self.stats.flow_mods += 1;
                }
                if self.plan.answer == Answer::Flowmod {
                    if let Some(sent) = self.ring.take_oldest() {
                        self.answered(sent, now);
                    }
                }
            }
            // GROUP_MOD, PORT_MOD, TABLE_MOD, METER_MOD: accepted silently.
            15 | 16 | 17 | 29 => {}
            18 => self.on_multipart(be16(8), xid),
            20 => self.push_msg(&Message::BarrierReply, xid),
            24 => {
                let role = be32(8);
                let generation_id = u64::from(be32(16)) << 32 | u64::from(be32(20));
                if role != Role::NOCHANGE {
                    self.role = Role { role, generation_id };
                }
                self.push_msg(&Message::RoleReply(self.role), xid);
            }
            26 => self.push_msg(&Message::GetAsyncReply(self.async_config), xid),
            28 => {
                if let Ok((_, Message::SetAsync(a))) = shardflow::openflow::message::decode(m) {
                    self.async_config = a;
                }
            }
            _ => self.stats.unknown += 1,
        }
    }

    fn on_experimenter(&mut self, m: &[u8], xid: u32, experimenter: u32, exp_type: u32) {
        match (experimenter, exp_type) {
            (ONF_EXPERIMENTER, 2300) => {
                if let Ok((_, Message::BundleControl(b))) = shardflow::openflow::message::decode(m) {
                    // OPEN/CLOSE/COMMIT/DISCARD requests (even) -> the reply (odd), same bundle.
                    if b.ctrl_type % 2 == 0 && b.ctrl_type <= 6 {
                        let reply = BundleControl { ctrl_type: b.ctrl_type + 1, properties: Vec::new(), ..b };
                        self.push_msg(&Message::BundleControl(reply), xid);
                        return;
                    }
                }
                self.stats.unknown += 1;
            }
            (ONF_EXPERIMENTER, 2301) => self.stats.bundle_adds += 1,
            // NXT_SET_CONTROLLER_ID, NXT_SET_PACKET_IN_FORMAT and the rest: accepted silently.
            (NX_VENDOR_ID, _) => {}
            _ => self.stats.unknown += 1,
        }
    }

    fn on_multipart(&mut self, t: u16, xid: u32) {
        use MultipartReplyBody as B;
        let body = match t {
            mp_type::DESC => B::Desc(Box::new(Desc::new(
                "Nicira, Inc.",
                "Open vSwitch",
                "3.1.0",
                "None",
                &format!("shardflow-perf switch {}", self.sw.index + 1),
            ))),
            mp_type::FLOW => B::Flow(Vec::new()),
            mp_type::AGGREGATE => B::Aggregate(AggregateStats { packet_count: 0, byte_count: 0, flow_count: 0 }),
            mp_type::TABLE => B::Table(Vec::new()),
            mp_type::PORT_STATS => B::PortStats(Vec::new()),
            mp_type::GROUP => B::GroupStats(Vec::new()),
            mp_type::GROUP_DESC => B::GroupDesc(Vec::new()),
            mp_type::METER => B::MeterStats(Vec::new()),
            mp_type::METER_CONFIG => B::MeterConfig(Vec::new()),
            mp_type::PORT_DESC => B::PortDesc(self.ports()),
            // Fixed-size replies: all zeros, the right length.
            mp_type::GROUP_FEATURES => B::Unknown { mp_type: t, body: vec![0; 40] },
            mp_type::METER_FEATURES => B::Unknown { mp_type: t, body: vec![0; 16] },
            other => B::Unknown { mp_type: other, body: Vec::new() },
        };
        self.push_msg(&Message::MultipartReply(MultipartReply::new(body)), xid);
    }

    /// Ports 1..=n (named as in docs/pipeline.md's example where it names them) and LOCAL.
    fn ports(&self) -> Vec<Port> {
        let sw = self.sw.index as u8;
        let mut v: Vec<Port> = (1..=self.plan.n_ports)
            .map(|n| {
                let name = match n {
                    1 => "uplink".to_string(),
                    3 => "gw0".to_string(),
                    5 => "tun0".to_string(),
                    n => format!("veth{n}"),
                };
                let mut p = Port::new(n, &name);
                p.hw_addr = [0x02, 0x50, 0, sw, (n >> 8) as u8, n as u8];
                p.curr = 0x840; // 10GB_FD | COPPER
                p.curr_speed = 10_000_000;
                p.max_speed = 10_000_000;
                p
            })
            .collect();
        let mut local = Port::new(0xffff_fffe, &format!("br{}", self.sw.index));
        local.hw_addr = [0x02, 0x50, 0xff, sw, 0, 0];
        v.push(local);
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arp_requests_carry_their_id_and_replies_bring_it_back() {
        use shardflow::packet::MacAddr;
        let pods = crate::template::default_pods();
        let meta = crate::template::MatchMeta { reg0: 0, ct_state: 0, ct_zone: 0, reg15: 1, table_id: 250, cookie: 7 };
        let sha = MacAddr([0x0a, 0x5a, 0, 1, 0x02, 0x03]);
        let bytes = crate::template::arp_packet_in(sha, pods[1], pods[0].ip, meta).expect("template");
        let Ok((_, Message::PacketIn(pi))) = shardflow::openflow::message::decode(&bytes) else {
            panic!("not a packet-in")
        };
        let key = shardflow::packet::FlowKey::extract(4, &pi.data).expect("a frame");
        assert!(key.is_arp());
        // The controller's reply: "pod A is-at its MAC", to the asker's MAC.
        let reply = shardflow::packet::build::arp_reply(pods[0].mac, pods[0].ip, sha, pods[1].ip);
        assert_eq!(Conn::arp_answer_id(&reply), Some(0x0001_0203));
        assert_eq!(Conn::arp_answer_id(&pi.data), None, "a request is no answer");
    }

    use super::*;

    #[test]
    fn ring_matches_answers_and_expires() {
        let t0 = Instant::now();
        let mut r = Ring::new(4, t0);
        let (a, _) = r.push(1024, t0);
        let (b, _) = r.push(1025, t0 + Duration::from_millis(10));
        let (c, _) = r.push(1026, t0 + Duration::from_millis(20));
        assert_eq!(r.live, 3);
        assert_eq!(r.take(b, 1024), None, "wrong port");
        assert!(r.take(b, 1025).is_some());
        assert_eq!(r.take(b, 1025), None, "answered twice");
        assert_eq!(r.take_oldest(), Some(t0));
        assert_eq!(r.take(a, 1024), None);
        assert_eq!(r.expire(t0 + Duration::from_millis(15)), 0);
        assert_eq!(r.expire(t0 + Duration::from_millis(25)), 1);
        assert_eq!(r.take(c, 1026), None);
        assert_eq!(r.live, 0);
    }

    #[test]
    fn ring_gives_up_lost_packets_when_it_wraps() {
        let t0 = Instant::now();
        let mut r = Ring::new(1, t0);
        let cap = r.slots.len();
        let mut evicted = 0;
        for i in 0..cap * 2 {
            if r.push(i as u16, t0).1 {
                evicted += 1;
            }
        }
        assert_eq!(evicted, cap);
        assert_eq!(r.live, cap);
    }
}
