//! One switch connection on a shard: the socket, the sans-IO [`Session`], and the FlowManager
//! operations (flow mods confirmed by a barrier, bundles, requests) that run over it.
//!
//! Three local tasks share the connection through an `Rc`: the reader feeds the session what
//! arrives, the writer sends what the session queues, and the timer drives the session's
//! deadlines (echo, request timeouts). All run on the shard's executor, so plain `RefCell`s are
//! enough, and a `RefCell` borrow never lives across an await.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::openflow::message::bundle::{ctrl_type, BUNDLE_ATOMIC, BUNDLE_ORDERED};
use crate::openflow::message::{BundleAdd, BundleControl, ErrorMsg, Message};
use crate::openflow::session::{CloseReason, Event, Session, SessionConfig};

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

pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
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
}

impl Conn {
    pub fn new(id: u64, peer: SocketAddr, cfg: SessionConfig) -> (Rc<Conn>, ConnTasks) {
        let now = Instant::now();
        // Capacity 1: a pending wake-up is as good as many.
        let (kick_tx, kick_rx) = flume::bounded(1);
        let (rearm_tx, rearm_rx) = flume::bounded(1);
        let conn = Rc::new(Conn {
            id,
            peer,
            session: RefCell::new(Session::new(cfg, now)),
            ops: RefCell::new(HashMap::new()),
            op_of_msg: RefCell::new(HashMap::new()),
            kick_tx,
            rearm_tx,
            dpid: Cell::new(None),
            bundle_ids: Cell::new(0),
            armed: Cell::new(None),
        });
        (conn, ConnTasks { kick_rx, rearm_rx })
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
    /// than the one it sleeps for (a new request): most sends and reads change no deadline, and
    /// re-arming a timer per packet is measurable.
    fn wake(&self) {
        let _ = self.kick_tx.try_send(());
        let next = self.session.borrow().poll_timeout();
        let rearm = match (next, self.armed.get()) {
            (Some(next), Some(armed)) => next < armed,
            _ => true,
        };
        if rearm {
            let _ = self.rearm_tx.try_send(());
        }
    }

    /// Sends messages the shard decided on (a packet-in answer) without waiting for anything.
    pub fn send_all(&self, msgs: &[Message]) {
        {
            let mut s = self.session.borrow_mut();
            for m in msgs {
                s.send(m);
            }
        }
        self.wake();
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

    /// Applies `msgs` atomically and in order in one ONF bundle: all or nothing. OVS checks the
    /// bundled messages at commit time and answers the failing one's xid before failing the
    /// commit, so the adds are tracked together with the commit: the error names the message.
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
        let commit = self.request_after(&adds, &ctrl(ctrl_type::COMMIT_REQUEST)).await;
        match commit {
            Ok(reply) => match reply.first() {
                Some(Message::BundleControl(c)) if c.ctrl_type == ctrl_type::COMMIT_REPLY => Ok(()),
                other => Err(OpError::Unexpected(format!("bundle commit answered with {other:?}"))),
            },
            Err(e) => {
                // A failed commit discards the bundle; an add that failed may leave it open.
                let _ = self.expect_ctrl(ctrl(ctrl_type::DISCARD_REQUEST), ctrl_type::DISCARD_REPLY).await;
                Err(e)
            }
        }
    }

    /// Sends `pre` and then the request `msg`; completes with `msg`'s reply, or fails with the
    /// first OFPT_ERROR about any of them (`index` counts in `pre`, then `msg`).
    async fn request_after(&self, pre: &[Message], msg: &Message) -> Result<Vec<Message>, OpError> {
        let rx = {
            let mut s = self.session.borrow_mut();
            if s.is_closed() {
                return Err(OpError::Closed("session closed".into()));
            }
            let mut xids: Vec<u32> = pre.iter().map(|m| s.send(m)).collect();
            let xid = s.request(msg, Instant::now());
            xids.push(xid);
            self.track(xid, xids)
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

    /// Reads until the peer closes or the session ends. Returns after the session is closed.
    pub async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
        self: &Rc<Self>,
        mut rd: R,
        on_events: impl Fn(Vec<Event>),
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.is_closed() {
                break;
            }
            match rd.read(&mut buf).await {
                Ok(0) => {
                    self.session.borrow_mut().close(CloseReason::PeerClosed);
                }
                Ok(n) => {
                    self.session.borrow_mut().handle_input(&buf[..n], Instant::now());
                }
                Err(e) => {
                    self.session.borrow_mut().close(CloseReason::Local(format!("read: {e}")));
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

    /// Sends what the session queues; after the session closes, flushes once more and closes.
    pub async fn write_loop(self: &Rc<Self>, mut wr: WriteHalf<TcpStream>, kick_rx: flume::Receiver<()>) {
        let mut out = Vec::with_capacity(64 * 1024);
        loop {
            out.clear();
            self.session.borrow_mut().poll_transmit(&mut out);
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                self.session.borrow_mut().close(CloseReason::Local("write failed".into()));
                break;
            }
            if self.is_closed() {
                out.clear();
                self.session.borrow_mut().poll_transmit(&mut out);
                if !out.is_empty() {
                    let _ = wr.write_all(&out).await;
                }
                let _ = wr.close().await;
                break;
            }
            if kick_rx.recv_async().await.is_err() {
                break;
            }
        }
    }

    /// Drives the session's deadlines; re-armed whenever the session may have a new one.
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
                on_events(self.take_events());
                let _ = self.kick_tx.try_send(());
            }
        }
    }

    pub fn tasks(stream: TcpStream) -> (io::ReadHalf<TcpStream>, WriteHalf<TcpStream>) {
        io::split(stream)
    }
}

impl ConnTasks {
    pub fn into_parts(self) -> (flume::Receiver<()>, flume::Receiver<()>) {
        (self.kick_rx, self.rearm_rx)
    }
}
