//! A shard: one pinned glommio executor with its listener, its switch connections, and the
//! state it alone owns (the connections whose packet-ins it decides, their counters, the
//! hot-SYN cache). Nothing here is shared with another thread except through the mesh inbox.
//!
//! This module holds the [`Shard`] state and its main task (listen, serve the inbox, expire,
//! shut down); each concern is one submodule of `impl Shard`:
//! - [`lifecycle`]: accepting switch connections (cap, TLS), session events, the datapath-id
//!   claim and routing a connection to its switch;
//! - [`reconnect`]: a switch brought in line on (re)connect: pipeline resync, restored flows;
//! - [`packet_in`]: the packet-in path, handoff to the owning shard, deciding, answering;
//! - [`records`]: the table of live connections (one record each), its counts and expiry;
//! - [`inbox`]: the mesh inbox, each message to its handler;
//! - [`invalidate`]: policy invalidation (cached answers, records, flows by cookie);
//! - [`commands`]: REST commands for a switch (apply, dump flows/groups/meters);
//! - [`stats`]: the answer to `/v1/shards`;
//! - [`node`]: the node's bridge (pods coming and going).

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

mod commands;
mod inbox;
mod invalidate;
mod lifecycle;
mod node;
mod packet_in;
mod reconnect;
mod records;
mod stats;

pub use commands::flow_stats_line;
pub use stats::conn_key_text;

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
