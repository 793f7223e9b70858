//! A shard: one pinned glommio executor with its listener, its switch connections, and the
//! state it alone owns (the connections whose packet-ins it decides, their counters, the
//! hot-SYN cache). Nothing here is shared with another thread except through the mesh inbox.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use hdrhistogram::Histogram;
use shards::{shard_of, ConnTable, Inserted, Outbox, ShardCtx, ShardId};

use crate::config::Mode;
use crate::control::api::{ApiError, ShardStats};
use crate::control::metrics::ShardMetrics;
use crate::openflow::field::Field;
use crate::openflow::flow::FlowMod;
use crate::openflow::message::multipart::FlowStats;
use crate::openflow::message::multipart::{
    FlowStatsRequest, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
};
use crate::openflow::message::{Message, PacketIn};
use crate::openflow::session::{CloseReason, Event, PacketInFormat, SessionConfig};
use crate::packet::{ConnKey, FlowKey};
use crate::pipeline::default::PacketInLimits;
use crate::pipeline::resync::{self, ResyncPolicy};
use crate::pipeline::{cookie, dispatch};
use crate::policy::Decided;

mod node;

use super::accept;
use super::conn::{Conn, OpError, OutputLimits};
use super::decider::{Decider, Outcome};
use super::live::LiveFlows;
use super::packet_in_budget::{Class, PacketInBudget};
use super::registry::{Claim, ConnInfo, PipelineState};
use super::{Command, CommandReply, Handoff, HandoffPacket, ShardMsg, Shared};

/// Packet-ins of one connection seen by a shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Packet-ins in the key's forward (canonical) direction and the reverse one.
    pub forward: u32,
    pub reverse: u32,
    /// How many of them arrived on another shard and were handed over.
    pub handed_over: u32,
}

/// What a shard keeps per live connection: one small record (see `size_of` in the tests), not
/// the flows. Records go when idle for their flows' idle timeout, or when the table is full.
#[derive(Debug, Clone)]
pub enum ConnRecord {
    /// Packet-ins counted on the owning shard; nothing installed through this shard.
    Seen { key: ConnKey, counts: Counts },
    /// Flows installed on switch `dpid` through this shard's connection: rebuilt from the
    /// record when the switch needs them again (a resync), deleted by cookie on invalidation.
    Decided { dpid: u64, decided: Decided, counts: Counts },
}

impl ConnRecord {
    fn counts_mut(&mut self) -> &mut Counts {
        match self {
            ConnRecord::Seen { counts, .. } | ConnRecord::Decided { counts, .. } => counts,
        }
    }
}

/// Idle timeout of a record that installed nothing, seconds.
const KEY_IDLE_SECS: u32 = 300;
/// Records looked at per expiry tick: the whole table every few seconds, never a long turn.
const SWEEP_SLICE: usize = 16_384;
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Records rebuilt per slice of a resync (up to twice as many flows).
const RESTORE_SLICE: usize = 1024;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a routed connection has to answer the echo sent when another connection of this
/// shard claims its datapath id: a live OVS answers in well under a millisecond; one that does
/// not within this is taken for gone (a bridge that restarted reconnects from a new port).
const VERIFY_DEADLINE: Duration = Duration::from_millis(1500);
/// Messages waiting per target shard when its inbox is full (handoffs and answers); past it they
/// are dropped and counted (`shard_dropped_total{cause="handoff_full"|"answer_full"}`).
const OUTBOX_CAPACITY: usize = 4096;

pub struct Shard {
    pub ctx: ShardCtx,
    shared: Arc<Shared>,
    metrics: ShardMetrics,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    /// The one connection per switch this shard routes to (REST, decisions, the Tracker): set
    /// only for a connection whose claim on the dpid held ([`Claim`]), removed only by that
    /// same connection's disconnect.
    by_dpid: RefCell<HashMap<u64, u64>>,
    /// Connections that were routed once (counted in `switch_connections`), by id.
    routed: RefCell<HashSet<u64>>,
    /// Refused datapath-id claims, logged at most once per interval.
    impostor_log: accept::RateLimitedLog,
    /// Live connections, keyed by `ConnKey::hash64`; time in seconds since `epoch`.
    keys: RefCell<ConnTable<ConnRecord>>,
    epoch: Instant,
    /// Whole seconds since `epoch`, refreshed by the expiry tick: records need no finer clock,
    /// so the packet path reads none for them.
    coarse_secs: Cell<u32>,
    /// When the batch of messages being handled was read.
    batch_now: Cell<Instant>,
    /// Flows of the decided connections in `keys`, per switch.
    decided_flows_n: RefCell<HashMap<u64, u64>>,
    /// Flows installed through this shard's FlowManager by REST, and connection flows adopted
    /// from a switch after a daemon restart, per switch (decided flows are in `keys`).
    live: RefCell<LiveFlows>,
    /// Packet-In decisions (cache, hot-SYN cache, policy source), when a pipeline is configured.
    decider: Option<Rc<Decider>>,
    decision_us: RefCell<Histogram<u64>>,
    next_conn: Cell<u64>,
    /// TLS handshakes in progress: they count against the connection cap like connections.
    handshakes: Cell<usize>,
    /// Handoffs and answers to other shards whose inbox is full: bounded, in order, one
    /// draining task per target at most.
    outbox: Outbox<ShardMsg>,
    packet_ins: Cell<u64>,
    handoffs_in: Cell<u64>,
    handoffs_out: Cell<u64>,
    flow_mods: Cell<u64>,
    /// Packet-ins acted on per class and second (`[pipeline.shard_limits]`).
    budget: PacketInBudget,
    /// Packets held in tasks that wait for cni-ctl: at most `policy.max_pending`, beyond that
    /// dropped before a task is spawned (`packet_in_dropped_total{cause="held_full"}`).
    held: Cell<usize>,
    /// The flows every switch gets (config only) and, for the node's bridge, the flows with
    /// the node's pods and ports (see [`node`]).
    desired: RefCell<node::Desired>,
}

/// The shard's main task: listen, accept, serve the inbox, until shutdown.
pub async fn main(ctx: ShardCtx, shared: Arc<Shared>) {
    let metrics = shared.metrics.shard(ctx.id.0, ctx.n_shards);
    let shard = Rc::new(Shard {
        ctx,
        shared: shared.clone(),
        metrics,
        conns: RefCell::new(HashMap::new()),
        by_dpid: RefCell::new(HashMap::new()),
        routed: RefCell::new(HashSet::new()),
        impostor_log: accept::RateLimitedLog::default(),
        keys: RefCell::new(ConnTable::with_capacity(shared.cfg.shards.max_connections)),
        epoch: Instant::now(),
        coarse_secs: Cell::new(0),
        batch_now: Cell::new(Instant::now()),
        decided_flows_n: RefCell::new(HashMap::new()),
        live: RefCell::new(LiveFlows::default()),
        decider: shared.cfg.pipeline.as_ref().map(|p| {
            Rc::new(Decider::new(p.clone(), shared.generation, shared.cfg.policy.clone(), shared.answers.clone()))
        }),
        decision_us: RefCell::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")),
        next_conn: Cell::new(0),
        handshakes: Cell::new(0),
        outbox: Outbox::new(shared.mesh.clone(), OUTBOX_CAPACITY),
        packet_ins: Cell::new(0),
        handoffs_in: Cell::new(0),
        handoffs_out: Cell::new(0),
        flow_mods: Cell::new(0),
        budget: PacketInBudget::new(
            &shared.cfg.pipeline.as_ref().map(|p| p.shard_limits).unwrap_or(PacketInLimits::OFF),
        ),
        held: Cell::new(0),
        desired: RefCell::new(node::Desired::new(&shared.desired)),
    });
    let addr = shared.listen_addr(ctx.id.0);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = ctx.id.0, %addr, "cannot listen: {e}");
            shared.fatal(format!("shard {} cannot listen on {addr}: {e}", ctx.id.0));
            return;
        }
    };
    tracing::info!(shard = ctx.id.0, %addr, "listening for switches");
    shared.registry.shard_up();

    let inbox = glommio::spawn_local({
        let shard = shard.clone();
        async move { shard.serve_inbox().await }
    })
    .detach();
    let expiry = glommio::spawn_local({
        let shard = shard.clone();
        async move { shard.expire_loop().await }
    })
    .detach();

    let accept = {
        let shard = shard.clone();
        async move { shard.accept_loop(listener).await }
    };
    futures_lite::future::race(accept, shared.shutdown.wait()).await;

    // Shutdown: no new switches; let in-flight operations finish, then close cleanly.
    tracing::info!(shard = ctx.id.0, "shutting down");
    shared.registry.shard_down();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < deadline && shard.conns.borrow().values().any(|c| c.pending_ops() > 0) {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    for c in &conns {
        c.close(CloseReason::Local("controller shutting down".into()));
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline && !shard.conns.borrow().is_empty() {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    drop(inbox);
    drop(expiry);
}

impl Shard {
    fn id(&self) -> usize {
        self.ctx.id.0
    }

    fn session_config(&self) -> SessionConfig {
        let of = &self.shared.cfg.openflow;
        SessionConfig {
            echo_interval: of.echo_interval(),
            request_timeout: of.request_timeout(),
            controller_id: match of.mode {
                Mode::Fanout => Some(dispatch::controller_id(self.id())),
                Mode::Single => None,
            },
            packet_in_format: match self.shared.cfg.pipeline.as_ref().map(|p| p.first_packet) {
                Some(crate::pipeline::default::FirstPacket::Resume) => PacketInFormat::Nxt2,
                _ => PacketInFormat::Standard,
            },
            ..SessionConfig::default()
        }
    }

    /// Accepts switch connections: at most `max_switch_connections` at once (the rest are closed
    /// at once, counted), and accept errors (EMFILE...) back off and are logged rate-limited.
    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        let cap = self.shared.max_switch_connections;
        let backoff = accept::Backoff::default();
        let (refused_log, error_log) = (accept::RateLimitedLog::default(), accept::RateLimitedLog::default());
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    backoff.success();
                    if self.conns.borrow().len() + self.handshakes.get() >= cap {
                        self.metrics.connection_refused("cap");
                        if let Some(suppressed) = refused_log.should_log(Instant::now()) {
                            let peer = stream.peer_addr().ok();
                            tracing::warn!(
                                shard = self.id(),
                                ?peer,
                                cap,
                                suppressed,
                                "switch connection refused: openflow.max_switch_connections reached"
                            );
                        }
                        drop(stream);
                        continue;
                    }
                    match self.shared.of_tls.clone() {
                        None => {
                            let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                            self.clone().serve(super::tls::SwitchStream::Plain(stream), peer)
                        }
                        Some(tls) => self.clone().serve_tls(stream, tls),
                    }
                }
                Err(e) => {
                    self.metrics.connection_refused("accept_error");
                    let wait = backoff.error();
                    if let Some(suppressed) = error_log.should_log(Instant::now()) {
                        tracing::warn!(shard = self.id(), suppressed, retry_in = ?wait, "accept failed: {e}");
                    }
                    glommio::timer::sleep(wait).await;
                }
            }
        }
    }

    /// `ssl:`: the TLS handshake (client certificate required, within the deadline) on its
    /// own task, then [`Self::serve`]; a failed one is closed, counted (`cause="tls"`), logged.
    fn serve_tls(self: Rc<Self>, stream: glommio::net::TcpStream, tls: Arc<rustls::ServerConfig>) {
        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let _ = stream.set_nodelay(true);
        glommio::spawn_local(async move {
            let handshake = async { Some(super::tls::TlsStream::accept(stream, tls).await) };
            let timeout = async {
                glommio::timer::sleep(super::tls::HANDSHAKE_TIMEOUT).await;
                None
            };
            self.handshakes.set(self.handshakes.get() + 1);
            let done = futures_lite::future::race(handshake, timeout).await;
            self.handshakes.set(self.handshakes.get().saturating_sub(1));
            match done {
                Some(Ok(s)) => self.serve(super::tls::SwitchStream::Tls(Box::new(s)), peer),
                Some(Err(e)) => {
                    self.metrics.connection_refused("tls");
                    tracing::warn!(shard = self.id(), %peer, "switch refused: TLS handshake failed: {e}");
                }
                None => {
                    self.metrics.connection_refused("tls");
                    tracing::warn!(shard = self.id(), %peer, "switch refused: no TLS handshake within {:?}", super::tls::HANDSHAKE_TIMEOUT);
                }
            }
        })
        .detach();
    }

    /// Serves one accepted switch connection until it closes.
    fn serve(self: Rc<Self>, stream: super::tls::SwitchStream, peer: SocketAddr) {
        if let super::tls::SwitchStream::Plain(s) = &stream {
            let _ = s.set_nodelay(true);
        }
        let id = ((self.id() as u64) << 48) | self.next_conn.replace(self.next_conn.get() + 1);
        let of = &self.shared.cfg.openflow;
        let limits = OutputLimits { high_water: of.output_high_water, stall_timeout: of.output_stall_timeout() };
        let (conn, tasks) = Conn::new(id, peer, self.session_config(), limits, self.metrics.clone());
        self.conns.borrow_mut().insert(id, conn.clone());
        tracing::debug!(shard = self.id(), %peer, conn = id, "switch connected");
        let (rd, wr) = Conn::tasks(stream);
        let rx = tasks.into_parts();
        let shard = self.clone();
        glommio::spawn_local(async move {
            let on_events = |evs: Vec<Event>| {
                // One clock read per batch of messages read: the packet-ins of the batch share
                // it as their arrival time.
                shard.batch_now.set(Instant::now());
                for ev in evs {
                    shard.on_event(&conn, ev);
                }
            };
            let writer = conn.write_loop(wr, rx.kick, rx.stop_write);
            let timer = conn.timer_loop(rx.rearm, on_events);
            let reader = conn.read_loop(rd, rx.stop_read, on_events);
            futures_lite::future::zip(writer, futures_lite::future::zip(timer, reader)).await;
            shard.conns.borrow_mut().remove(&conn.id);
            if let Some(dpid) = conn.dpid() {
                if shard.by_dpid.borrow().get(&dpid) == Some(&conn.id) {
                    shard.by_dpid.borrow_mut().remove(&dpid);
                }
                // A connection never routed (refused, or closed while its claim was checked)
                // was never counted nor registered.
                if shard.routed.borrow_mut().remove(&conn.id) {
                    shard.shared.registry.disconnected(dpid, shard.id(), conn.id);
                    shard.metrics.switch_connections.dec();
                    shard.metrics.session_event("disconnected");
                }
            }
            tracing::info!(shard = shard.id(), %peer, dpid = ?conn.dpid().map(|d| format!("{d:016x}")), "switch disconnected");
        })
        .detach();
    }

    fn on_event(self: &Rc<Self>, conn: &Rc<Conn>, ev: Event) {
        match ev {
            Event::Ready { datapath_id } => self.on_ready(conn, datapath_id),
            Event::PacketIn(pi) => self.on_packet_in(conn, pi, None),
            Event::PacketIn2(mut p) => {
                // Paused (a continuation to resume): kept whole for NXT_RESUME, so the packet and
                // the metadata are copied; otherwise they are taken.
                let paused = p.continuation.is_some();
                let (packet, metadata) =
                    if paused { (p.packet.clone(), p.metadata.clone()) } else { (p.packet.take(), p.metadata.take()) };
                if let Some(data) = packet {
                    let pi = PacketIn {
                        buffer_id: p.buffer_id.unwrap_or(u32::MAX),
                        total_len: p.full_len.unwrap_or(data.len() as u32) as u16,
                        reason: p.reason.unwrap_or(0),
                        table_id: p.table_id.unwrap_or(0),
                        cookie: p.cookie.unwrap_or(0),
                        r#match: metadata.unwrap_or_default(),
                        data,
                    };
                    self.on_packet_in(conn, pi, paused.then(|| Box::new(p)));
                }
            }
            Event::Closed { reason } => {
                self.metrics.session_event(reason.label());
                tracing::info!(shard = self.id(), peer = %conn.peer, "session closed: {reason}");
            }
            Event::Refused { xid, reason } => {
                // A decided answer (packet-out, flow mod) too large to send: dropped, counted.
                self.metrics.dropped(reason.label(), 1);
                tracing::warn!(shard = self.id(), peer = %conn.peer, xid, "not sent: {reason}");
            }
            Event::Error { xid, error } => {
                self.metrics.openflow_error(&error.code.to_string());
                tracing::warn!(shard = self.id(), peer = %conn.peer, xid, "switch error: {}", error.code);
            }
            other => tracing::trace!(shard = self.id(), "session event {other:?}"),
        }
    }

    /// A connection finished its handshake claiming `dpid`: routed if nobody else holds the
    /// dpid here, refused if another live connection does, and let in after the old one was
    /// asked with an echo and did not answer (see [`Claim`], docs/security.md).
    fn on_ready(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64) {
        let fanout = matches!(self.shared.cfg.openflow.mode, Mode::Fanout);
        match self.shared.registry.claim(dpid, self.id(), conn.id, fanout) {
            Claim::Free => self.route(conn, dpid),
            Claim::InUse { shard, conn: holder, peer } => self.refuse_claim(
                conn,
                dpid,
                &format!("shard {shard} already has connection {holder:#x} from {peer} for it (single mode)"),
            ),
            Claim::Verify { conn: old } => {
                let (shard, conn) = (self.clone(), conn.clone());
                glommio::spawn_local(async move { shard.verify_claim(&conn, dpid, old).await }).detach();
            }
        }
    }

    /// Another connection of this shard (`old`) holds `dpid`: it gets an echo request and
    /// [`VERIFY_DEADLINE`] to answer. Answered: the newcomer is refused. Not answered (or
    /// `old` is already closing): `old` is closed and the newcomer routed. Until then the
    /// newcomer is not routed: its packet-ins are ignored.
    async fn verify_claim(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, old: u64) {
        let holder = self.conns.borrow().get(&old).cloned();
        let alive = match &holder {
            Some(h) if !h.is_closed() => {
                let echo = async { h.request(&Message::EchoRequest(Vec::new())).await.is_ok() };
                let deadline = async {
                    glommio::timer::sleep(VERIFY_DEADLINE).await;
                    false
                };
                futures_lite::future::or(echo, deadline).await
            }
            _ => false,
        };
        if conn.is_closed() {
            return;
        }
        // Someone else took the dpid meanwhile (another claimant's check ended first).
        let current = self.by_dpid.borrow().get(&dpid).copied();
        if alive || current.is_some_and(|c| c != old) {
            let why = match &holder {
                Some(h) => format!("connection {old:#x} from {} holds it and answered an echo", h.peer),
                None => format!("connection {old:#x} holds it"),
            };
            self.refuse_claim(conn, dpid, &why);
            return;
        }
        if let Some(h) = holder {
            tracing::warn!(
                shard = self.id(),
                dpid = %format!("{dpid:016x}"),
                old = %h.peer,
                new = %conn.peer,
                "switch connection did not answer an echo within {VERIFY_DEADLINE:?} when another claimed its datapath id: closed, the new one takes over"
            );
            self.metrics.connection_closed("superseded");
            h.close(CloseReason::Local(
                "superseded: no echo reply while another connection claimed the datapath id".into(),
            ));
        }
        // Its own disconnect comes later and removes nothing of the new route.
        self.shared.registry.disconnected(dpid, self.id(), old);
        self.route(conn, dpid);
    }

    /// Refuses `conn`'s claim on `dpid` (closed, counted as
    /// `openflow_connections_refused_total{cause="dpid_in_use"}`, logged rate-limited).
    fn refuse_claim(&self, conn: &Conn, dpid: u64, why: &str) {
        self.metrics.connection_refused("dpid_in_use");
        if let Some(suppressed) = self.impostor_log.should_log(Instant::now()) {
            tracing::warn!(
                shard = self.id(),
                peer = %conn.peer,
                dpid = %format!("{dpid:016x}"),
                suppressed,
                "switch connection refused: datapath id already connected: {why}"
            );
        }
        conn.close(CloseReason::Local(format!("datapath id {dpid:016x} already connected")));
    }

    /// Makes `conn` the shard's connection to `dpid` and installs or restores what it needs.
    fn route(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64) {
        let ready_at = Instant::now();
        self.by_dpid.borrow_mut().insert(dpid, conn.id);
        self.routed.borrow_mut().insert(conn.id);
        self.shared.registry.connected(
            dpid,
            ConnInfo {
                shard: self.id(),
                conn: conn.id,
                peer: conn.peer,
                connected_at: ready_at,
                n_tables: conn.n_tables(),
            },
        );
        self.metrics.switch_connections.inc();
        self.metrics.session_event("connected");
        if let Some(d) = &self.decider {
            for port in d.infrastructure_ports() {
                self.shared.tracker.exclude_port(dpid, port);
            }
        }
        tracing::info!(shard = self.id(), peer = %conn.peer, dpid = %format!("{dpid:016x}"), "switch ready");
        // One connection per switch installs the pipeline: the dpid's primary shard. Every other
        // shard puts back the connection flows it decided, if the switch lost them (an
        // ovs-vswitchd restart), without touching anything else.
        if !self.shared.installs_pipeline(dpid, self.id()) {
            let mine = self.live.borrow().flows(dpid);
            if mine.is_empty() && !self.decided_flows_n.borrow().contains_key(&dpid) {
                return;
            }
            let (shard, conn) = (self.clone(), conn.clone());
            glommio::spawn_local(async move {
                let Ok(actual) = shard.flow_stats(&conn).await else { return };
                let plan = resync::plan(&mine, &actual, &ResyncPolicy::none());
                if !plan.is_empty() {
                    let n = plan.adds.len() + plan.changed.len();
                    match conn.bundle(plan.messages()).await {
                        Ok(()) => tracing::info!(shard = shard.id(), restored = n, "connection flows restored"),
                        Err(e) => tracing::warn!(shard = shard.id(), "restoring connection flows failed: {e}"),
                    }
                }
                shard.restore_decided(&conn, dpid, &actual).await;
            })
            .detach();
            return;
        }
        self.shared.registry.pipeline_state(dpid, PipelineState::Pending);
        let (shard, conn) = (self.clone(), conn.clone());
        glommio::spawn_local(async move {
            shard.install_pipeline(&conn, dpid, ready_at).await;
            // Then keep it in place for as long as the connection lives.
            let desired: super::heal::DesiredFn = {
                let shard = shard.clone();
                Rc::new(move || shard.desired_for(dpid))
            };
            super::heal::watch(shard.shared.clone(), conn, dpid, shard.id(), desired).await;
        })
        .detach();
    }

    /// Resyncs `dpid`'s pipeline on connect (one bundle), then restores this shard's live
    /// connection flows.
    async fn install_pipeline(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, ready_at: Instant) {
        let shard = self;
        {
            let conn = conn.clone();
            let (_, flows) = shard.desired_for(dpid);
            // Resync rather than reinstall: read what the switch holds (it keeps its flows
            // across a controller restart), and change only what differs, in one bundle.
            let actual = match shard.flow_stats(&conn).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "reading the flows failed: {e}");
                    let why = format!("reading the flows failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                    return;
                }
            };
            // The packet-in meters the flows name go first (meter mods cannot be bundled).
            let meters = match super::meter_sync::sync_meters(&shard.shared, &conn, shard.id()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "installing the packet-in meters failed (pipeline.meters rates of 0 run without them): {e}");
                    let why = format!("installing the packet-in meters failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                    return;
                }
            };
            // Connection flows on the switch that this daemon does not know yet (it restarted)
            // are adopted, not deleted: established connections keep their flows.
            let adopted = shard.live.borrow_mut().adopt(dpid, resync::adopt(&actual, cookie::Category::Connection));
            let mut desired: Vec<FlowMod> = flows.to_vec();
            desired.extend(shard.live.borrow().flows(dpid));
            let policy = ResyncPolicy::only(&[cookie::Category::Dispatch, cookie::Category::Pipeline]);
            let plan = resync::plan(&desired, &actual, &policy);
            let n = (plan.adds.len() + plan.changed.len() + plan.deletes.len()) as u64;
            let result = if plan.is_empty() { Ok(()) } else { conn.bundle(plan.messages()).await };
            match result {
                Ok(()) => {
                    let took = ready_at.elapsed();
                    shard.metrics.flow_mods_n("ok", n);
                    shard.metrics.observe_flow_install(took);
                    shard.flow_mods.set(shard.flow_mods.get() + n);
                    shard.shared.registry.pipeline_installed(dpid, took);
                    tracing::info!(
                        shard = shard.id(),
                        dpid = %format!("{dpid:016x}"),
                        added = plan.adds.len(),
                        replaced = plan.changed.len(),
                        deleted = plan.deletes.len(),
                        unchanged = plan.unchanged,
                        adopted,
                        "pipeline in place {:.3} ms after the handshake",
                        took.as_secs_f64() * 1e3
                    );
                    // Meters the configuration no longer has, now that no flow names them.
                    if !meters.after.is_empty() {
                        let msgs: Vec<Message> = meters.after.iter().cloned().map(Message::MeterMod).collect();
                        if let Err(e) = conn.apply(&msgs).await {
                            tracing::warn!(shard = shard.id(), "deleting stale packet-in meters failed: {e}");
                        }
                    }
                    // Then this shard's live connections, in slices between packet-ins.
                    shard.restore_decided(&conn, dpid, &actual).await;
                }
                Err(e) => {
                    shard.metrics.flow_mods_n("error", n);
                    tracing::error!(shard = shard.id(), dpid = %format!("{dpid:016x}"), "installing the pipeline failed: {e}");
                    let why = format!("installing failed: {e}");
                    shard.shared.registry.pipeline_state(dpid, PipelineState::Broken(why));
                }
            }
        }
    }

    /// Puts back the flows of the live connections this shard decided on `dpid` that the switch
    /// does not have (`actual`, by cookie: an ovs-vswitchd restart lost them), rebuilt from
    /// their records. Slices of [`RESTORE_SLICE`] records, with a pause between slices so that
    /// packet-ins go on: a resync of a large table is never one long turn. Logged with its time.
    async fn restore_decided(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, actual: &[FlowStats]) {
        let Some(decider) = self.decider.clone() else { return };
        if !self.decided_flows_n.borrow().contains_key(&dpid) {
            return;
        }
        let t0 = Instant::now();
        let present: std::collections::HashSet<u64> = actual
            .iter()
            .filter(|f| cookie::category(f.cookie) == Some(cookie::Category::Connection))
            .map(|f| f.cookie)
            .collect();
        let capacity = self.keys.borrow().capacity();
        let (mut flows, mut connections) = (0usize, 0usize);
        for start in (0..capacity).step_by(RESTORE_SLICE) {
            let msgs: Vec<Message> = {
                let keys = self.keys.borrow();
                let mut v = Vec::new();
                for (_, r) in keys.slots(start, RESTORE_SLICE) {
                    if let ConnRecord::Decided { dpid: d, decided, .. } = r {
                        if *d == dpid && !present.contains(&decided.cookie) {
                            connections += 1;
                            v.extend(decider.flows_of(decided).into_iter().map(Message::FlowMod));
                        }
                    }
                }
                v
            };
            if !msgs.is_empty() {
                // Never above the output high-water mark: a slow switch slows the restore down
                // instead of growing the queue or losing flows.
                if !conn.wait_for_room().await {
                    tracing::warn!(shard = self.id(), dpid = %format!("{dpid:016x}"), flows, "switch does not take the restored flows; stopped");
                    return;
                }
                flows += msgs.len();
                conn.send_all(&msgs);
            }
            if conn.is_closed() {
                tracing::warn!(shard = self.id(), dpid = %format!("{dpid:016x}"), flows, "connection closed while restoring connection flows");
                return;
            }
            // Let the writer and the packet-ins run (a timer, not a yield: a yield alone would
            // not let the executor poll its IO).
            glommio::timer::sleep(Duration::from_micros(20)).await;
        }
        // A barrier: the switch has taken them all (errors, if any, were logged as they came).
        let done = conn.apply(&[]).await;
        self.flow_mods.set(self.flow_mods.get() + flows as u64);
        self.metrics.flow_mods_n("ok", flows as u64);
        tracing::info!(
            shard = self.id(),
            dpid = %format!("{dpid:016x}"),
            connections,
            flows,
            barrier = ?done,
            "live connection flows restored in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }

    // === packet-in path ===

    fn on_packet_in(
        self: &Rc<Self>,
        conn: &Rc<Conn>,
        pi: PacketIn,
        paused: Option<Box<crate::openflow::message::PacketIn2>>,
    ) {
        let t0 = self.batch_now.get();
        self.packet_ins.set(self.packet_ins.get() + 1);
        // Only the dpid's routed connection speaks for it: the Tracker never moves an address,
        // and nothing is decided, on the word of a connection whose claim was not verified.
        let dpid = conn.dpid().unwrap_or(0);
        if self.by_dpid.borrow().get(&dpid) != Some(&conn.id) {
            self.metrics.packet_in_dropped("unverified");
            return;
        }
        let in_port = pi.r#match.get(Field::IN_PORT_OXM).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let key = match FlowKey::extract(in_port, &pi.data) {
            Ok(k) => k,
            Err(e) => {
                self.metrics.packet_in("invalid");
                self.metrics.packet_in_dropped("invalid");
                tracing::debug!(shard = self.id(), "unparsable packet-in: {e}");
                return;
            }
        };
        let kind = if key.is_arp() {
            "arp"
        } else {
            match key.ip_proto {
                6 => "tcp",
                17 => "udp",
                132 => "sctp",
                1 => "icmp",
                58 => "icmpv6",
                _ if key.is_ip() => "ip_other",
                _ => "other",
            }
        };
        self.metrics.packet_in(kind);
        let ct_state = pi.r#match.get(Field::CT_STATE).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let reg0 = pi.r#match.get(Field::reg(0)).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let decide = self.decider.as_ref().is_some_and(|d| d.should_decide(&key, in_port, reg0));
        // The shard's budget per class: over it, the packet-in costs nothing more.
        let class = match (key.is_arp(), decide) {
            (true, _) => Class::Arp,
            (false, true) => Class::NewConnection,
            (false, false) => Class::Other,
        };
        if !self.budget.admit(class, t0) {
            self.metrics.packet_in_dropped(class.rate_cause());
            return;
        }
        tracing::debug!(
            shard = self.id(),
            table = pi.table_id,
            cookie = %format!("{:#x}", pi.cookie),
            packet = %crate::packet::describe(&pi.data),
            "packet-in"
        );
        self.shared.tracker.observe(dpid, in_port, self.id(), &key, t0);
        if key.is_arp() {
            self.answer_arp(conn, &key, in_port, &pi.data);
            return;
        }
        let ck = key.conn_key();
        let conn_hash = ck.hash64();
        let owner = match self.shared.cfg.openflow.mode {
            // The switch already hashed the connection to this shard.
            Mode::Fanout => self.id(),
            Mode::Single => shard_of(conn_hash, self.ctx.n_shards),
        };
        let packet = decide
            .then(|| Box::new(HandoffPacket { flow: key, conn_hash, paused, in_port, ct_state, data: pi.data, dpid }));
        if packet.is_none() {
            // Recorded only: the time to here is the whole of it. (Decisions record their own.)
            self.observe_latency(t0);
        }
        if owner == self.id() {
            self.record(ck, conn_hash, false);
            if let Some(p) = packet {
                self.decide_and_send(p, conn.id, t0);
            }
        } else {
            self.handoffs_out.set(self.handoffs_out.get() + 1);
            self.metrics.handoff(owner);
            let h = Handoff { from: self.ctx.id, conn: conn.id, dpid: conn.dpid().unwrap_or(0), key: ck, packet };
            self.send_to_shard(ShardId(owner), ShardMsg::Handoff(h));
        }
    }

    /// Sends to another shard's inbox without waiting: when it is full the message waits in
    /// this shard's bounded outbox towards it (in order, one draining task per target); when
    /// that is full too it is dropped and counted by cause (`handoff_full`, `answer_full`).
    fn send_to_shard(&self, to: ShardId, msg: ShardMsg) {
        if let Err(back) = self.outbox.send(to, msg) {
            let cause = match back.msg {
                ShardMsg::Handoff(_) => "handoff_full",
                ShardMsg::Answer { .. } => "answer_full",
                _ => "mesh_full",
            };
            self.metrics.dropped(cause, 1);
            tracing::debug!(shard = self.id(), to = to.0, cause, "message to shard dropped: {}", back.error);
        }
    }

    /// Packet-in to answer sent: the shard's histogram (`/v1/shards` p50/p99) and prometheus.
    fn observe_latency(&self, t0: Instant) {
        let took = t0.elapsed();
        let us = took.as_micros().max(1) as u64;
        let _ = self.decision_us.borrow_mut().record(us.min(60_000_000));
        self.metrics.observe_decision(took);
    }

    /// ARP from the packet-in path (`pipeline.arp = "controller"`): answered from the configured
    /// pods and the Tracker when the target is known, else flooded.
    fn answer_arp(&self, conn: &Rc<Conn>, key: &FlowKey, in_port: u32, frame: &[u8]) {
        let Some(decider) = &self.decider else { return };
        let dpid = conn.dpid().unwrap_or(0);
        let view = self.shared.tracker.view(dpid);
        // The configured pods and the node's (from its database), then what was learned.
        let pods = decider.pipeline();
        let chain = crate::tracker::Chain { first: &*pods, second: &view };
        let decision = crate::policy::arp::arp_answer_for(key, in_port, &chain, &[decider.gateway_mac()]);
        let label = match &decision {
            crate::policy::arp::ArpDecision::Reply(_) => "arp_reply",
            crate::policy::arp::ArpDecision::Flood(_) => "arp_flood",
            crate::policy::arp::ArpDecision::Nothing => "arp_nothing",
        };
        self.metrics.decision(label);
        if let Some(m) = decision.message(frame) {
            conn.send_all(&[m]);
        }
    }

    /// Decides a packet-in on this (owning) shard and sends the answer on connection `conn`,
    /// here or on the shard that received it.
    fn decide_and_send(self: &Rc<Self>, p: Box<HandoffPacket>, conn: u64, t0: Instant) {
        self.decide_then(p, t0, move |shard, outcome| shard.send_on(conn, outcome.messages, outcome.decided));
    }

    /// Decides at once when the answer is at hand (no task, no await); a policy query waits in
    /// a task of its own while other packet-ins go on.
    fn decide_then(
        self: &Rc<Self>,
        p: Box<HandoffPacket>,
        t0: Instant,
        then: impl FnOnce(&Rc<Shard>, Outcome) + 'static,
    ) {
        let Some(decider) = self.decider.clone() else { return };
        let HandoffPacket { dpid, flow, conn_hash, paused, in_port, ct_state, data } = *p;
        let view = self.shared.tracker.view(dpid);
        match decider.decide_now(&flow, conn_hash, in_port, ct_state, (data, paused), &view, t0) {
            Ok(outcome) => {
                self.metrics.decision(outcome.label);
                then(self, outcome);
                self.observe_latency(t0);
            }
            Err((q, data)) => {
                // Each held packet is a task with the frame: bounded before the task exists.
                if self.held.get() >= self.shared.cfg.policy.max_pending {
                    self.metrics.packet_in_dropped("held_full");
                    return;
                }
                self.held.set(self.held.get() + 1);
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let view = shard.shared.tracker.view(dpid);
                    let outcome = decider.decide_later(&flow, conn_hash, in_port, q, data, &view).await;
                    shard.held.set(shard.held.get() - 1);
                    shard.metrics.decision(outcome.label);
                    then(&shard, outcome);
                    shard.observe_latency(t0);
                })
                .detach();
            }
        }
    }

    /// Sends decided messages on one of this shard's connections and keeps the decided
    /// connection's record (so a resync after an ovs-vswitchd restart rebuilds its flows).
    fn send_on(&self, conn: u64, messages: Vec<Message>, decided: Option<Decided>) {
        if messages.is_empty() {
            return;
        }
        let c = self.conns.borrow().get(&conn).cloned();
        let Some(c) = c else { return };
        if c.send_all(&messages) == 0 {
            // Dropped at the connection's output bound (counted there): nothing was installed.
            return;
        }
        let n = messages.iter().filter(|m| matches!(m, Message::FlowMod(_))).count() as u64;
        self.flow_mods.set(self.flow_mods.get() + n);
        self.metrics.flow_mods_n("ok", n);
        if let (Some(d), Some(dpid)) = (decided, c.dpid()) {
            self.keep_decided(dpid, d);
        }
    }

    fn now_secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Keeps a decided connection's record, idle for its flows' idle timeout.
    fn keep_decided(&self, dpid: u64, d: Decided) {
        let now = self.coarse_secs.get();
        let idle = u32::from(d.idle_timeout);
        let hash = d.conn_hash;
        self.count_flows(dpid, flow_count(&d) as i64);
        let mut keys = self.keys.borrow_mut();
        // Usually the packet-in was just counted here: replace that record in place.
        let gone = match keys.touch_mut(hash, now, Some(idle)) {
            Some(r) => {
                let counts = *r.counts_mut();
                Inserted::Replaced(std::mem::replace(r, ConnRecord::Decided { dpid, decided: d, counts }))
            }
            None => keys.insert(hash, ConnRecord::Decided { dpid, decided: d, counts: Counts::default() }, now, idle),
        };
        drop(keys);
        self.forget(gone);
    }

    /// Accounts for a record that is gone (replaced, evicted, expired, invalidated).
    fn forget(&self, gone: Inserted<ConnRecord>) {
        let r = match gone {
            Inserted::New => return,
            Inserted::Replaced(r) => r,
            Inserted::Evicted(_, r) => {
                self.metrics.connections_evicted.inc();
                r
            }
        };
        if let ConnRecord::Decided { dpid, decided, .. } = r {
            self.count_flows(dpid, -(flow_count(&decided) as i64));
        }
    }

    /// Keeps `decided_flows_n` (per switch, for `/v1/shards` live_flows) without a scan.
    fn count_flows(&self, dpid: u64, delta: i64) {
        let mut m = self.decided_flows_n.borrow_mut();
        let n = m.entry(dpid).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            m.remove(&dpid);
        }
    }

    /// Counts a packet-in of connection `key` on the shard that owns it.
    fn record(&self, key: ConnKey, hash: u64, handed_over: bool) {
        let bump = |c: &mut Counts| {
            if key.is_forward() {
                c.forward = c.forward.saturating_add(1);
            } else {
                c.reverse = c.reverse.saturating_add(1);
            }
            if handed_over {
                c.handed_over = c.handed_over.saturating_add(1);
            }
        };
        let now = self.coarse_secs.get();
        let mut keys = self.keys.borrow_mut();
        // One probe for a known connection, two (miss, insert) for a new one.
        let gone = match keys.touch_mut(hash, now, None) {
            Some(r) => {
                bump(r.counts_mut());
                return;
            }
            None => {
                let mut counts = Counts::default();
                bump(&mut counts);
                keys.insert(hash, ConnRecord::Seen { key, counts }, now, KEY_IDLE_SECS)
            }
        };
        drop(keys);
        self.forget(gone);
    }

    // === inbox ===

    async fn serve_inbox(self: Rc<Self>) {
        let inbox = self.shared.mesh.inbox(self.ctx.id);
        while let Ok(msg) = inbox.recv_async().await {
            match msg {
                ShardMsg::Handoff(h) => {
                    self.handoffs_in.set(self.handoffs_in.get() + 1);
                    self.record(h.key, h.key.hash64(), true);
                    let Some(p) = h.packet else { continue };
                    let (from, conn) = (h.from, h.conn);
                    self.decide_then(p, Instant::now(), move |shard, outcome| {
                        let decided = outcome.decided.map(Box::new);
                        let back = ShardMsg::Answer { conn, messages: outcome.messages, decided };
                        if from == shard.ctx.id {
                            shard.on_answer(back);
                        } else {
                            shard.send_to_shard(from, back);
                        }
                    });
                }
                msg @ ShardMsg::Answer { .. } => self.on_answer(msg),
                ShardMsg::Command { dpid, cmd, reply } => {
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let r = shard.command(dpid, cmd).await;
                        let _ = reply.send_async(r).await;
                    })
                    .detach();
                }
                ShardMsg::Stats { reply } => {
                    let _ = reply.send_async(self.stats()).await;
                }
                ShardMsg::Invalidate { ips, below_version, all, reply } => {
                    let _ = reply.send_async(self.invalidate(&ips, below_version, all)).await;
                }
                ShardMsg::Node(update) => self.on_node_update(&update),
            }
        }
    }

    /// Drops cached answers and removes the connections decided from them: their flows are
    /// deleted by cookie on every switch this shard talks to (the next packet asks again).
    fn invalidate(&self, ips: &[std::net::IpAddr], below_version: u64, all: bool) -> super::Invalidated {
        let dropped = self.decider.as_ref().map(|d| d.invalidate(ips, below_version, all)).unwrap_or_default();
        // The connections decided from the dropped answers, and those naming an address.
        let mut doomed: std::collections::HashSet<u64> =
            dropped.iter().filter_map(query_conn_key).map(|k| k.hash64()).collect();
        let touched = self.keys.borrow_mut().remove_where(|hash, r| {
            all || doomed.contains(&hash)
                || match r {
                    ConnRecord::Seen { key, .. } => {
                        let touches = |e: crate::packet::key::Endpoint| match e.addr {
                            crate::packet::key::ConnAddr::Ip(ip) => ips.contains(&ip),
                            crate::packet::key::ConnAddr::Mac(_) => false,
                        };
                        touches(key.lo()) || touches(key.hi())
                    }
                    ConnRecord::Decided { decided, .. } => {
                        let (a, b) = decided.addresses();
                        ips.contains(&a) || ips.contains(&b)
                    }
                }
        });
        doomed.extend(touched.iter().map(|(hash, _)| *hash));
        for (_, r) in touched {
            self.forget(Inserted::Replaced(r));
        }
        let mut cookies: Vec<u64> =
            doomed.iter().map(|h| cookie::make(self.shared.generation, cookie::Category::Connection, *h)).collect();
        // Connection flows adopted from the switch (a previous run decided them) count too.
        cookies.extend(self.live.borrow().connection_cookies(ips, all));
        cookies.sort_unstable();
        cookies.dedup();
        let mut deletes = Vec::new();
        for c in cookies {
            self.live.borrow_mut().remove_cookie(c);
            let mut fm = FlowMod::new(crate::openflow::flow::FlowModCommand::Delete);
            fm.table_id = 0xff;
            fm.cookie = c;
            fm.cookie_mask = u64::MAX;
            deletes.push(Message::FlowMod(fm));
        }
        if !deletes.is_empty() {
            // Only to routed connections: an unverified one learns nothing of the flows.
            let routed = self.routed.borrow();
            for c in self.conns.borrow().values().filter(|c| routed.contains(&c.id)) {
                c.send_all(&deletes);
            }
        }
        let removed = deletes.len();
        tracing::info!(shard = self.id(), answers = dropped.len(), connections = removed, "policy invalidated");
        super::Invalidated { answers_dropped: dropped.len() as u64, connections_removed: removed as u64 }
    }

    fn on_answer(&self, msg: ShardMsg) {
        if let ShardMsg::Answer { conn, messages, decided } = msg {
            self.send_on(conn, messages, decided.map(|d| *d));
        }
    }

    async fn command(self: &Rc<Self>, dpid: u64, cmd: Command) -> Result<CommandReply, ApiError> {
        let conn_id = self.by_dpid.borrow().get(&dpid).copied();
        let conn = conn_id.and_then(|id| self.conns.borrow().get(&id).cloned());
        let Some(conn) = conn else {
            return Err(ApiError::UnknownSwitch(crate::control::api::Dpid(dpid)));
        };
        match cmd {
            Command::Apply { msgs, bundle } => {
                // A message that cannot be framed is the request's fault: refused before any is
                // sent (the session would refuse it too, after the others went out).
                if let Some((i, e)) = msgs
                    .iter()
                    .enumerate()
                    .find_map(|(i, m)| crate::openflow::message::try_encode(m, 0).err().map(|e| (i, e)))
                {
                    self.metrics.dropped("message_too_large", 1);
                    return Err(ApiError::BadRequest(format!("flow {}: {e}", i + 1)));
                }
                let n = msgs.len();
                let t0 = Instant::now();
                let r = if bundle { conn.bundle(msgs.clone()).await } else { conn.apply(&msgs).await };
                match r {
                    Ok(()) => {
                        self.live.borrow_mut().record(dpid, &msgs);
                        self.metrics.flow_mods_n("ok", n as u64);
                        self.metrics.observe_flow_install(t0.elapsed());
                        self.flow_mods.set(self.flow_mods.get() + n as u64);
                        Ok(CommandReply::Applied(n))
                    }
                    Err(e) => {
                        self.metrics.flow_mods_n(if e == OpError::Timeout { "timeout" } else { "error" }, n as u64);
                        if let Some(name) = e.error_name() {
                            self.metrics.openflow_error(&name);
                        }
                        Err(op_to_api(e))
                    }
                }
            }
            Command::DumpFlows => {
                let body = MultipartRequestBody::Flow(FlowStatsRequest::default());
                let lines = Self::multipart(&conn, body, |b, out| {
                    if let MultipartReplyBody::Flow(flows) = b {
                        out.extend(flows.iter().map(flow_stats_line));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
            Command::DumpGroups => {
                let lines = Self::multipart(&conn, MultipartRequestBody::GroupDesc, |b, out| {
                    if let MultipartReplyBody::GroupDesc(groups) = b {
                        out.extend(groups.iter().map(crate::openflow::text::group::format_group_desc));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
            Command::DumpMeters => {
                let body = MultipartRequestBody::MeterConfig { meter_id: 0xffff_ffff };
                let lines = Self::multipart(&conn, body, |b, out| {
                    if let MultipartReplyBody::MeterConfig(meters) = b {
                        out.extend(meters.iter().map(crate::openflow::text::meter::format_meter_config));
                    }
                })
                .await?;
                Ok(CommandReply::Lines(lines))
            }
        }
    }

    /// Every flow of the switch (OFPMP_FLOW, all parts).
    async fn flow_stats(&self, conn: &Rc<Conn>) -> Result<Vec<FlowStats>, OpError> {
        let req = MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default()));
        let reply = conn.request(&Message::MultipartRequest(req)).await?;
        let mut out = Vec::new();
        for m in reply {
            if let Message::MultipartReply(r) = m {
                if let MultipartReplyBody::Flow(f) = r.body {
                    out.extend(f);
                }
            }
        }
        Ok(out)
    }

    /// Sends a multipart request and collects lines from every part of the reply.
    async fn multipart(
        conn: &Rc<Conn>,
        body: MultipartRequestBody,
        mut each: impl FnMut(&MultipartReplyBody, &mut Vec<String>),
    ) -> Result<Vec<String>, ApiError> {
        let reply = conn.request(&Message::MultipartRequest(MultipartRequest::new(body))).await.map_err(op_to_api)?;
        let mut lines = Vec::new();
        for m in &reply {
            if let Message::MultipartReply(r) = m {
                each(&r.body, &mut lines);
            }
        }
        Ok(lines)
    }

    fn stats(&self) -> ShardStats {
        let h = self.decision_us.borrow();
        let keys = self.keys.borrow();
        let mut extra = std::collections::BTreeMap::new();
        // The connections this shard decides, for operators and tests (bounded).
        let conns: Vec<serde_json::Value> = keys
            .iter()
            .take(1000)
            .map(|(_, r)| {
                let (key, c) = match r {
                    ConnRecord::Seen { key, counts } => (conn_key_text(key), counts),
                    ConnRecord::Decided { decided, counts, .. } => (decided.to_string(), counts),
                };
                serde_json::json!({
                    "key": key,
                    "forward": c.forward,
                    "reverse": c.reverse,
                    "handed_over": c.handed_over,
                })
            })
            .collect();
        extra.insert("connections".to_string(), serde_json::Value::Array(conns));
        if let Some(d) = &self.decider {
            extra.insert("hot_syn".to_string(), serde_json::json!(d.hot_syn_len()));
            extra.insert("policy_cache".to_string(), serde_json::json!(d.cached_answers()));
            extra.insert("policy_pending".to_string(), serde_json::json!(d.pending()));
        }
        let live = self.live.borrow();
        let decided = self.decided_flows_n.borrow();
        let live_flows: serde_json::Map<String, serde_json::Value> = self
            .by_dpid
            .borrow()
            .keys()
            .map(|d| {
                let n = live.len(*d) as u64 + decided.get(d).copied().unwrap_or(0);
                (format!("{d:016x}"), serde_json::json!(n))
            })
            .collect();
        extra.insert("connections_live".to_string(), serde_json::json!(keys.len()));
        extra.insert("connections_evicted".to_string(), serde_json::json!(keys.evicted()));
        extra.insert("connections_expired".to_string(), serde_json::json!(keys.expired()));
        extra.insert("live_flows".to_string(), serde_json::Value::Object(live_flows));
        ShardStats {
            shard: self.id(),
            cpu: self.shared.cfg.shards.cpus.as_ref().and_then(|c| c.get(self.id()).copied()),
            switches: self.by_dpid.borrow().len(),
            packet_ins: self.packet_ins.get(),
            handoffs_in: self.handoffs_in.get(),
            handoffs_out: self.handoffs_out.get(),
            flow_mods: self.flow_mods.get(),
            flows_cached: keys.len() as u64,
            decision_p50_us: if h.is_empty() { 0.0 } else { h.value_at_quantile(0.5) as f64 },
            decision_p99_us: if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 },
            extra,
        }
    }

    /// Expires idle records a slice at a time (the Tracker expires on the control thread).
    async fn expire_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP_EVERY).await;
            let now = self.now_secs(Instant::now());
            self.coarse_secs.set(now);
            // A reloaded policy file is taken even when no packet-in comes (the old one is
            // freed off the shards once none holds it).
            if let Some(d) = &self.decider {
                d.refresh_policy();
            }
            let mut gone = Vec::new();
            let n = self.keys.borrow_mut().sweep(now, SWEEP_SLICE, |_, r| gone.push(r));
            for r in gone {
                self.forget(Inserted::Replaced(r));
            }
            self.metrics.connections_live.set(self.keys.borrow().len() as i64);
            if n > 0 {
                tracing::trace!(shard = self.id(), gone = n, "idle connections expired");
            }
        }
    }
}

/// The connection a cached policy query was about.
fn query_conn_key(q: &crate::policy::PolicyQuery) -> Option<ConnKey> {
    use crate::packet::key::{ConnAddr, ConnFamily, Endpoint};
    let family = match q.src_ip {
        std::net::IpAddr::V4(_) => ConnFamily::Ipv4,
        std::net::IpAddr::V6(_) => ConnFamily::Ipv6,
    };
    let src = Endpoint { addr: ConnAddr::Ip(q.src_ip), port: q.src_port };
    let dst = Endpoint { addr: ConnAddr::Ip(q.dst_ip), port: q.dst_port };
    Some(ConnKey::new(family, q.protocol, src, dst))
}

/// `proto lo-addr:port <-> hi-addr:port`, the canonical (direction-free) order.
pub fn conn_key_text(k: &ConnKey) -> String {
    let ep = |e: crate::packet::key::Endpoint| match e.addr {
        crate::packet::key::ConnAddr::Ip(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", e.port),
        crate::packet::key::ConnAddr::Ip(a) => format!("{a}:{}", e.port),
        crate::packet::key::ConnAddr::Mac(m) => format!("{m}"),
    };
    let proto = match (k.family(), k.proto()) {
        (crate::packet::key::ConnFamily::Arp, _) => "arp".to_string(),
        (crate::packet::key::ConnFamily::L2, _) => "l2".to_string(),
        (_, 6) => "tcp".to_string(),
        (_, 17) => "udp".to_string(),
        (_, 132) => "sctp".to_string(),
        (_, 1) => "icmp".to_string(),
        (_, 58) => "icmpv6".to_string(),
        (_, p) => format!("ip/{p}"),
    };
    format!("{proto} {} <-> {}", ep(k.lo()), ep(k.hi()))
}

fn op_to_api(e: OpError) -> ApiError {
    match e {
        OpError::Refused { index, error } => {
            ApiError::Refused { name: error.code.to_string(), detail: format!("flow {} of the request", index + 1) }
        }
        OpError::Timeout => ApiError::Timeout,
        OpError::Local { index, reason: reason @ crate::openflow::session::Refusal::Encode(_) } => {
            ApiError::BadRequest(format!("flow {}: {reason}", index + 1))
        }
        other => ApiError::Failed(other.to_string()),
    }
}

/// A flow of a flow-stats reply as `ovs-ofctl dump-flows --no-stats` prints it.
pub fn flow_stats_line(fs: &crate::openflow::message::multipart::FlowStats) -> String {
    let mut fm = FlowMod::new(crate::openflow::flow::FlowModCommand::Add);
    fm.cookie = fs.cookie;
    fm.table_id = fs.table_id;
    fm.priority = fs.priority;
    fm.idle_timeout = fs.idle_timeout;
    fm.hard_timeout = fs.hard_timeout;
    fm.flags = fs.flags;
    fm.r#match = fs.r#match.clone();
    fm.instructions = fs.instructions.clone();
    fm.to_flow_text()
}

/// How many flows a decided connection has on the switch.
fn flow_count(d: &Decided) -> u64 {
    match d.plan {
        crate::policy::Plan::Deny { .. } => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-connection cost the table is sized by: a slot (key, times, record) plus the
    /// index's 12-16 bytes at a load factor between 7/16 and 7/8. Kept well under 200 bytes.
    #[test]
    fn a_live_connection_costs_under_200_bytes() {
        let record = std::mem::size_of::<ConnRecord>();
        let slot = 8 + 4 + 4 + record;
        let index_at_half_load = 16 * 16 / 7 + 1;
        eprintln!("ConnRecord {record} B, Decided {} B, slot {slot} B", std::mem::size_of::<Decided>());
        assert!(slot + index_at_half_load <= 200, "slot {slot} + index {index_at_half_load}");
    }
}
