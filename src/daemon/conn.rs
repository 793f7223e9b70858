//! One switch connection on a shard: the socket, the sans-IO [`Session`], and the FlowManager
//! operations (flow mods confirmed by a barrier, bundles, requests) that run over it.
//!
//! Three local tasks share the connection through an `Rc`: the reader feeds the session what
//! arrives, the writer sends what the session queues, and the timer drives the session's
//! deadlines (echo, request timeouts). All run on the shard's executor, so plain `RefCell`s are
//! enough, and a `RefCell` borrow never lives across an await.
//!
//! Bounds (OVS's rconn does the same): the output queued for a switch has a high-water mark.
//! Above it the reader stops reading from that switch (nothing it sends can add answers); if
//! the output does not drain below half of it within the stall timeout the connection is closed
//! ([`CloseReason::OutputStalled`]). Fire-and-forget sends above twice the mark are dropped and
//! counted. When the session closes, the reader stops at once and the writer gets
//! [`CLOSE_FLUSH`] to flush, so the socket is released even if the peer never reads or closes.
//! Buffers start small (an idle connection costs a few KiB) and grow only with traffic.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::tls::SwitchStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::control::metrics::ShardMetrics;
use crate::openflow::message::bundle::{ctrl_type, BUNDLE_ATOMIC, BUNDLE_ORDERED};
use crate::openflow::message::{BundleAdd, BundleControl, ErrorMsg, Message};
use crate::openflow::session::{CloseReason, Event, Refusal, Session, SessionConfig};

use super::io::{self, WriteHalf};

/// Why a FlowManager operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The switch answered with OFPT_ERROR for message `index` (0-based) of the operation.
    #[error("message {index}: {}", .error.code)]
    Refused { index: usize, error: ErrorMsg },
    #[error("timed out waiting for the switch")]
    Timeout,
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// Refused here, before or instead of the switch: message `index` does not fit one OpenFlow
    /// message, or the reply outgrew its bounds.
    #[error("message {index}: {reason}")]
    Local { index: usize, reason: Refusal },
}

impl OpError {
    /// OVS's name of the error, when the switch refused.
    pub fn error_name(&self) -> Option<String> {
        match self {
            OpError::Refused { error, .. } => Some(error.code.to_string()),
            _ => None,
        }
    }
}

/// An operation waiting for its completion: the barrier (or request) xid it ends with, the
/// xids of the messages it covers (to attribute OFPT_ERRORs), and where to send the result.
struct PendingOp {
    msg_xids: Vec<u32>,
    error: Option<OpError>,
    done: flume::Sender<Result<Vec<Message>, OpError>>,
}

/// How long the writer may go on flushing after the session closed before the socket is dropped.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// The reader's buffer: small for an idle connection, doubled (up to the max) when a read fills
/// it, so a busy switch is read in large chunks.
const READ_BUF_MIN: usize = 4 * 1024;
const READ_BUF_MAX: usize = 64 * 1024;
/// A writer buffer above this capacity is released after its write (a burst does not pin it).
const WRITE_BUF_KEEP: usize = 256 * 1024;

/// The output bounds of one connection (`openflow.output_high_water`, `output_stall_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    pub high_water: usize,
    pub stall_timeout: Duration,
}

pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    metrics: ShardMetrics,
    limits: OutputLimits,
    /// Bytes handed to the socket by the writer and not yet confirmed written.
    in_flight: Cell<usize>,
    /// Tasks waiting for the output to drain; each is told once after the writer's next write.
    drain_waiters: RefCell<Vec<flume::Sender<()>>>,
    /// Told once when the session closes (reader and writer stop waiting on the socket).
    stop_tx: RefCell<Option<(flume::Sender<()>, flume::Sender<()>)>>,
    session: RefCell<Session>,
    /// Completion xid -> operation.
    ops: RefCell<HashMap<u32, PendingOp>>,
    /// Message xid -> completion xid, for errors about messages inside an operation.
    op_of_msg: RefCell<HashMap<u32, u32>>,
    kick_tx: flume::Sender<()>,
    rearm_tx: flume::Sender<()>,
    dpid: Cell<Option<u64>>,
    bundle_ids: Cell<u32>,
    /// The deadline the timer task sleeps until (None: not sleeping on one).
    armed: Cell<Option<Instant>>,
}

/// The receivers that belong to the writer and timer tasks.
pub struct ConnTasks {
    kick_rx: flume::Receiver<()>,
    rearm_rx: flume::Receiver<()>,
    stop_read_rx: flume::Receiver<()>,
    stop_write_rx: flume::Receiver<()>,
}

impl Conn {
    pub fn new(
        id: u64,
        peer: SocketAddr,
        cfg: SessionConfig,
        limits: OutputLimits,
        metrics: ShardMetrics,
    ) -> (Rc<Conn>, ConnTasks) {
        let now = Instant::now();
        // Capacity 1: a pending wake-up is as good as many.
        let (kick_tx, kick_rx) = flume::bounded(1);
        let (rearm_tx, rearm_rx) = flume::bounded(1);
        let (stop_read_tx, stop_read_rx) = flume::bounded(1);
        let (stop_write_tx, stop_write_rx) = flume::bounded(1);
        let conn = Rc::new(Conn {
            id,
            peer,
            metrics,
            limits,
            in_flight: Cell::new(0),
            drain_waiters: RefCell::new(Vec::new()),
            stop_tx: RefCell::new(Some((stop_read_tx, stop_write_tx))),
            session: RefCell::new(Session::new(cfg, now)),
            ops: RefCell::new(HashMap::new()),
            op_of_msg: RefCell::new(HashMap::new()),
            kick_tx,
            rearm_tx,
            dpid: Cell::new(None),
            bundle_ids: Cell::new(0),
            armed: Cell::new(None),
        });
        (conn, ConnTasks { kick_rx, rearm_rx, stop_read_rx, stop_write_rx })
    }

    pub fn dpid(&self) -> Option<u64> {
        self.dpid.get()
    }

    pub fn is_closed(&self) -> bool {
        self.session.borrow().is_closed()
    }

    pub fn n_tables(&self) -> u8 {
        self.session.borrow().features().map(|f| f.n_tables).unwrap_or(0)
    }

    pub fn pending_ops(&self) -> usize {
        self.ops.borrow().len()
    }

    /// Wakes the writer, and the timer only when the session's next deadline moved earlier
    /// than the one it sleeps for (a new request) or it has events nobody else will take (a
    /// refused send): most sends and reads change no deadline, and re-arming a timer per packet
    /// is measurable. Once the session is closed, tells the reader and the writer to stop.
    fn wake(&self) {
        let _ = self.kick_tx.try_send(());
        let (next, closed, events) = {
            let s = self.session.borrow();
            (s.poll_timeout(), s.is_closed(), s.has_events())
        };
        let rearm = match (next, self.armed.get()) {
            (Some(next), Some(armed)) => next < armed,
            _ => true,
        };
        if rearm || events {
            let _ = self.rearm_tx.try_send(());
        }
        if closed {
            if let Some((r, w)) = self.stop_tx.borrow_mut().take() {
                let _ = r.try_send(());
                let _ = w.try_send(());
            }
        }
    }

    /// Bytes queued for the switch: in the session and in the writer's hands.
    pub fn output_backlog(&self) -> usize {
        self.session.borrow().queued_output() + self.in_flight.get()
    }

    /// Sends messages the shard decided on (a packet-in answer) without waiting for anything.
    /// Above twice the output high-water mark (a switch that does not read) they are dropped
    /// and counted (`shard_dropped_total{cause="output_full"}`); returns how many were sent.
    pub fn send_all(&self, msgs: &[Message]) -> usize {
        if self.output_backlog() > self.limits.high_water.saturating_mul(2) {
            self.metrics.dropped("output_full", msgs.len() as u64);
            return 0;
        }
        {
            let mut s = self.session.borrow_mut();
            for m in msgs {
                s.send(m);
            }
        }
        self.wake();
        msgs.len()
    }

    /// Waits until the output is at or below the high-water mark (at once when it is), e.g.
    /// between slices of a large restore. `false` when the connection closed or the output did
    /// not drain within the stall timeout.
    pub async fn wait_for_room(&self) -> bool {
        let deadline = Instant::now() + self.limits.stall_timeout;
        while self.output_backlog() > self.limits.high_water {
            if self.is_closed() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.drained_within(left).await {
                return false;
            }
        }
        !self.is_closed()
    }

    /// Waits for the writer's next completed write, at most `left`; `false` on timeout.
    async fn drained_within(&self, left: Duration) -> bool {
        let (tx, rx) = flume::bounded(1);
        self.drain_waiters.borrow_mut().push(tx);
        futures_lite::future::race(
            async {
                // Dropped unsent (the connection ends) counts as drained: the caller re-checks.
                let _ = rx.recv_async().await;
                true
            },
            async {
                glommio::timer::sleep(left).await;
                false
            },
        )
        .await
    }

    fn notify_drained(&self) {
        for w in self.drain_waiters.borrow_mut().drain(..) {
            let _ = w.try_send(());
        }
    }

    /// Closes the session (the writer flushes what is queued, then the socket closes).
    pub fn close(&self, reason: CloseReason) {
        self.session.borrow_mut().close(reason);
        self.wake();
    }

    // === FlowManager ===

    /// Sends `msgs` and a barrier; completes when the barrier reply comes. An OFPT_ERROR for any
    /// of them fails the operation with the first such error (OVS processes them in order).
    pub async fn apply(&self, msgs: &[Message]) -> Result<(), OpError> {
        let rx = {
            let mut s = self.session.borrow_mut();
            if s.is_closed() {
                return Err(OpError::Closed("session closed".into()));
            }
            let xids: Vec<u32> = msgs.iter().map(|m| s.send(m)).collect();
            let barrier = s.barrier(Instant::now());
            self.track(barrier, xids)
        };
        self.wake();
        rx.recv_async().await.map_err(|_| OpError::Closed("connection dropped".into()))?.map(|_| ())
    }

    /// Sends one request and returns its reply (multipart parts already merged).
    pub async fn request(&self, msg: &Message) -> Result<Vec<Message>, OpError> {
        let rx = {
            let mut s = self.session.borrow_mut();
            if s.is_closed() {
                return Err(OpError::Closed("session closed".into()));
            }
            let xid = s.request(msg, Instant::now());
            self.track(xid, vec![xid])
        };
        self.wake();
        rx.recv_async().await.map_err(|_| OpError::Closed("connection dropped".into()))?
    }

    /// Applies `msgs` atomically and in order in one ONF bundle: all or nothing.
    ///
    /// OVS checks some things when a message is added (e.g. `OFPBIC_BAD_TABLE_ID` for a
    /// `goto_table` backwards) and drops that one add from the bundle with an error, but keeps the
    /// bundle open: a COMMIT sent right behind the adds would commit the others. So the adds go
    /// out followed by a barrier (errors about any add arrive before its reply); only when none
    /// was refused does the COMMIT follow (OVS checks the rest then, and answers the failing
    /// message's xid before failing the commit: the adds stay tracked with the commit, so the
    /// error names the message). An add that was refused, or a barrier that failed, DISCARDs the
    /// bundle. A connection lost half-way leaves nothing applied: OVS discards the open bundles
    /// of a connection that closes, and a commit is applied whole or not at all.
    pub async fn bundle(&self, msgs: Vec<Message>) -> Result<(), OpError> {
        let id = self.bundle_ids.get().wrapping_add(1);
        self.bundle_ids.set(id);
        let flags = BUNDLE_ATOMIC | BUNDLE_ORDERED;
        let ctrl = |t| Message::BundleControl(BundleControl { bundle_id: id, ctrl_type: t, flags, properties: vec![] });
        self.expect_ctrl(ctrl(ctrl_type::OPEN_REQUEST), ctrl_type::OPEN_REPLY).await?;
        let adds: Vec<Message> = msgs
            .into_iter()
            .map(|m| Message::BundleAdd(BundleAdd { bundle_id: id, flags, message: Box::new(m), properties: vec![] }))
            .collect();
        let add_xids = match self.send_tracked_barrier(&adds).await {
            Ok(xids) => xids,
            Err(e) => {
                let _ = self.expect_ctrl(ctrl(ctrl_type::DISCARD_REQUEST), ctrl_type::DISCARD_REPLY).await;
                return Err(e);
            }
        };
        // A refused commit discards the bundle on OVS's side: nothing more to send then.
        let reply = self.request_tracking(&ctrl(ctrl_type::COMMIT_REQUEST), add_xids).await?;
        match reply.first() {
            Some(Message::BundleControl(c)) if c.ctrl_type == ctrl_type::COMMIT_REPLY => Ok(()),
            other => Err(OpError::Unexpected(format!("bundle commit answered with {other:?}"))),
        }
    }

    /// Sends `msgs` and a barrier like [`Conn::apply`], and returns the xids they went out with.
    async fn send_tracked_barrier(&self, msgs: &[Message]) -> Result<Vec<u32>, OpError> {
        let (rx, xids) = {
            let mut s = self.session.borrow_mut();
            if s.is_closed() {
                return Err(OpError::Closed("session closed".into()));
            }
            let xids: Vec<u32> = msgs.iter().map(|m| s.send(m)).collect();
            let barrier = s.barrier(Instant::now());
            (self.track(barrier, xids.clone()), xids)
        };
        self.wake();
        rx.recv_async().await.map_err(|_| OpError::Closed("connection dropped".into()))?.map(|_| xids)
    }

    /// Sends the request `msg` and returns its reply, or fails with the first OFPT_ERROR about it
    /// or about any of the earlier messages `earlier` (already sent; `index` counts in
    /// `earlier`, then `msg`).
    async fn request_tracking(&self, msg: &Message, mut earlier: Vec<u32>) -> Result<Vec<Message>, OpError> {
        let rx = {
            let mut s = self.session.borrow_mut();
            if s.is_closed() {
                return Err(OpError::Closed("session closed".into()));
            }
            let xid = s.request(msg, Instant::now());
            earlier.push(xid);
            self.track(xid, earlier)
        };
        self.wake();
        rx.recv_async().await.map_err(|_| OpError::Closed("connection dropped".into()))?
    }

    async fn expect_ctrl(&self, msg: Message, want: u16) -> Result<(), OpError> {
        let reply = self.request(&msg).await?;
        match reply.first() {
            Some(Message::BundleControl(c)) if c.ctrl_type == want => Ok(()),
            other => Err(OpError::Unexpected(format!("bundle control answered with {other:?}"))),
        }
    }

    fn track(&self, completion: u32, msg_xids: Vec<u32>) -> flume::Receiver<Result<Vec<Message>, OpError>> {
        let (done, rx) = flume::bounded(1);
        let mut idx = self.op_of_msg.borrow_mut();
        for x in &msg_xids {
            idx.insert(*x, completion);
        }
        self.ops.borrow_mut().insert(completion, PendingOp { msg_xids, error: None, done });
        rx
    }

    fn finish(&self, completion: u32, result: Result<Vec<Message>, OpError>) {
        if let Some(op) = self.ops.borrow_mut().remove(&completion) {
            let mut idx = self.op_of_msg.borrow_mut();
            for x in &op.msg_xids {
                idx.remove(x);
            }
            let result = match (op.error, result) {
                (Some(e), _) => Err(e),
                (None, r) => r,
            };
            let _ = op.done.try_send(result);
        }
    }

    fn fail_all(&self, why: &str) {
        let ops: Vec<u32> = self.ops.borrow().keys().copied().collect();
        for x in ops {
            self.finish(x, Err(OpError::Closed(why.to_string())));
        }
    }

    /// Routes a completion-related session event; `None` when it was not one.
    fn on_op_event(&self, ev: Event) -> Option<Event> {
        match ev {
            Event::Reply { xid, messages } => {
                if self.ops.borrow().contains_key(&xid) {
                    self.finish(xid, Ok(messages));
                    None
                } else {
                    Some(Event::Reply { xid, messages })
                }
            }
            Event::RequestFailed { xid, error } | Event::Error { xid, error } => {
                let completion = self.op_of_msg.borrow().get(&xid).copied();
                match completion {
                    Some(c) => {
                        let mut ops = self.ops.borrow_mut();
                        if let Some(op) = ops.get_mut(&c) {
                            let index = op.msg_xids.iter().position(|x| *x == xid).unwrap_or(0);
                            if op.error.is_none() {
                                op.error = Some(OpError::Refused { index, error });
                            }
                        }
                        drop(ops);
                        if c == xid {
                            // The request itself failed: nothing else will complete it.
                            self.finish(c, Err(OpError::Closed(String::new())));
                        }
                        None
                    }
                    None => Some(Event::Error { xid, error }),
                }
            }
            Event::Refused { xid, reason } => {
                let completion = self.op_of_msg.borrow().get(&xid).copied();
                match completion {
                    Some(c) => {
                        if let Some(op) = self.ops.borrow_mut().get_mut(&c) {
                            let index = op.msg_xids.iter().position(|x| *x == xid).unwrap_or(0);
                            if op.error.is_none() {
                                op.error = Some(OpError::Local { index, reason: reason.clone() });
                            }
                        }
                        self.metrics.dropped(reason.label(), 1);
                        if c == xid {
                            self.finish(c, Err(OpError::Local { index: 0, reason }));
                        }
                        None
                    }
                    None => Some(Event::Refused { xid, reason }),
                }
            }
            Event::RequestTimedOut { xid } => {
                let completion = self.op_of_msg.borrow().get(&xid).copied().unwrap_or(xid);
                self.finish(completion, Err(OpError::Timeout));
                None
            }
            other => Some(other),
        }
    }

    /// Events for the shard (packet-ins, readiness, port status...), after FlowManager
    /// completions have been taken out.
    pub fn take_events(&self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let ev = self.session.borrow_mut().poll_event();
            let Some(ev) = ev else { break };
            if let Event::Ready { datapath_id } = &ev {
                self.dpid.set(Some(*datapath_id));
            }
            if let Event::Closed { reason } = &ev {
                self.fail_all(&reason.to_string());
            }
            if let Some(ev) = self.on_op_event(ev) {
                out.push(ev);
            }
        }
        out
    }

    // === IO tasks ===

    /// Reads until the peer closes or the session ends; returns at once when the session closes
    /// (the socket is not kept open for a peer that never closes). Above the output high-water
    /// mark it stops reading until the output drains to half of it, and closes the session
    /// ([`CloseReason::OutputStalled`], counted) if that takes longer than the stall timeout.
    pub async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
        self: &Rc<Self>,
        mut rd: R,
        stop_rx: flume::Receiver<()>,
        on_events: impl Fn(Vec<Event>),
    ) {
        let mut buf = vec![0u8; READ_BUF_MIN];
        loop {
            if self.is_closed() {
                break;
            }
            if self.output_backlog() > self.limits.high_water && !self.pause_reading().await {
                let l = self.limits;
                tracing::warn!(peer = %self.peer, conn = self.id, backlog = self.output_backlog(), "switch does not read its output: closing");
                self.metrics.connection_closed("output_stalled");
                self.session
                    .borrow_mut()
                    .close(CloseReason::OutputStalled { high_water: l.high_water, secs: l.stall_timeout.as_secs() });
            } else if !self.is_closed() {
                let read = futures_lite::future::race(async { Some(rd.read(&mut buf).await) }, async {
                    let _ = stop_rx.recv_async().await;
                    None
                })
                .await;
                match read {
                    None => {}
                    Some(Ok(0)) => {
                        self.session.borrow_mut().close(CloseReason::PeerClosed);
                    }
                    Some(Ok(n)) => {
                        let refused = {
                            let mut s = self.session.borrow_mut();
                            let before = s.unsupported_messages();
                            s.handle_input(&buf[..n], Instant::now());
                            s.unsupported_messages() - before
                        };
                        if refused > 0 {
                            // Answered with OFPBRC_BAD_TYPE/BAD_VENDOR/BAD_SUBTYPE by the session.
                            self.metrics.session_events("unsupported_message", refused);
                        }
                        if n == buf.len() && buf.len() < READ_BUF_MAX {
                            buf.resize(buf.len() * 2, 0);
                        }
                    }
                    Some(Err(e)) => {
                        self.session.borrow_mut().close(CloseReason::Local(format!("read: {e}")));
                    }
                }
            }
            on_events(self.take_events());
            self.wake();
            // Under a flood a read never waits (glommio reads the socket synchronously when it
            // has data), so without this the reader would keep the executor and the writer it
            // just woke would never run: answers pile up in memory and nothing is sent. One
            // yield per read batch (64 KiB) lets the writer and the other connections go.
            futures_lite::future::yield_now().await;
        }
    }

    /// Not reading: waits until the output is at most half the high-water mark. `false` when
    /// it did not get there within the stall timeout; `true` also when the session closed.
    async fn pause_reading(&self) -> bool {
        let deadline = Instant::now() + self.limits.stall_timeout;
        tracing::debug!(peer = %self.peer, conn = self.id, backlog = self.output_backlog(), "output above high-water: reading paused");
        while self.output_backlog() > self.limits.high_water / 2 {
            if self.is_closed() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.drained_within(left).await {
                return self.is_closed();
            }
        }
        true
    }

    /// Sends what the session queues; after the session closes, flushes for at most
    /// [`CLOSE_FLUSH`] more and closes. A write that blocks (the peer does not read) is given up
    /// [`CLOSE_FLUSH`] after the session closed, so the socket is always released.
    pub async fn write_loop(
        self: &Rc<Self>,
        mut wr: WriteHalf<SwitchStream>,
        kick_rx: flume::Receiver<()>,
        stop_rx: flume::Receiver<()>,
    ) {
        let mut out = Vec::new();
        let stopped = async {
            let _ = stop_rx.recv_async().await;
            glommio::timer::sleep(CLOSE_FLUSH).await;
        };
        let mut stopped = std::pin::pin!(stopped);
        loop {
            out.clear();
            self.session.borrow_mut().poll_transmit(&mut out);
            if !out.is_empty() {
                self.in_flight.set(out.len());
                // The flush matters under TLS: what the socket did not take is still in rustls.
                let write = async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                };
                let written = futures_lite::future::race(async { Some(write.await) }, async {
                    (&mut stopped).await;
                    None
                })
                .await;
                self.in_flight.set(0);
                if out.capacity() > WRITE_BUF_KEEP {
                    out = Vec::new();
                }
                self.notify_drained();
                match written {
                    Some(Ok(())) => {}
                    Some(Err(_)) => {
                        self.session.borrow_mut().close(CloseReason::Local("write failed".into()));
                        self.wake();
                        break;
                    }
                    // Closed and not flushed in time: drop the rest with the socket.
                    None => break,
                }
                // Output came while writing: go on before waiting for a kick.
                if self.session.borrow().queued_output() > 0 && !self.is_closed() {
                    continue;
                }
            }
            if self.is_closed() {
                out.clear();
                self.session.borrow_mut().poll_transmit(&mut out);
                let flush = async {
                    if !out.is_empty() {
                        let _ = wr.write_all(&out).await;
                    }
                    let _ = wr.close().await;
                };
                futures_lite::future::race(flush, glommio::timer::sleep(CLOSE_FLUSH)).await;
                break;
            }
            if kick_rx.recv_async().await.is_err() {
                break;
            }
        }
        self.notify_drained();
    }

    /// Drives the session's deadlines; re-armed whenever the session may have a new one (or
    /// events that no read will pick up, such as a refused send).
    pub async fn timer_loop(self: &Rc<Self>, rearm_rx: flume::Receiver<()>, on_events: impl Fn(Vec<Event>)) {
        loop {
            if self.is_closed() {
                break;
            }
            let deadline = self.session.borrow().poll_timeout();
            self.armed.set(deadline);
            let wait =
                deadline.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600));
            let rearmed = futures_lite::future::race(
                async {
                    glommio::timer::sleep(wait).await;
                    false
                },
                async { rearm_rx.recv_async().await.is_ok() },
            )
            .await;
            self.armed.set(None);
            if !rearmed {
                self.session.borrow_mut().handle_timeout(Instant::now());
            }
            if !rearmed || self.session.borrow().has_events() {
                on_events(self.take_events());
                self.wake();
            }
        }
    }

    pub fn tasks(stream: SwitchStream) -> (io::ReadHalf<SwitchStream>, WriteHalf<SwitchStream>) {
        io::split(stream)
    }
}

/// The receivers of a connection's tasks, by task.
pub struct TaskRx {
    pub kick: flume::Receiver<()>,
    pub rearm: flume::Receiver<()>,
    pub stop_read: flume::Receiver<()>,
    pub stop_write: flume::Receiver<()>,
}

impl ConnTasks {
    pub fn into_parts(self) -> TaskRx {
        TaskRx {
            kick: self.kick_rx,
            rearm: self.rearm_rx,
            stop_read: self.stop_read_rx,
            stop_write: self.stop_write_rx,
        }
    }
}
