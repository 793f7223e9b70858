//! Cross-shard messaging: one bounded inbox per shard, writable from anywhere.
//!
//! A shard that receives work for a key it does not own (a packet-in whose connection hashes
//! elsewhere, a REST call from the control thread) forwards it to the owner's inbox. The inboxes
//! are flume channels because flume can be awaited from any executor (glommio on the shards,
//! tokio on the control thread) and also used blocking from a plain thread; glommio's own
//! channels need glommio at both ends and crossbeam's cannot be awaited.
//!
//! Channels are bounded so that a slow shard pushes back on its producers ([`Mesh::send_to`]
//! waits) instead of growing memory without limit; nothing is ever dropped silently.
//!
//! A shard that must not wait (its packet path) sends through its [`Outbox`]: when the target's
//! inbox is full, messages wait in a bounded queue per target, in order, drained by at most one
//! task per target; past the queue's bound they are handed back to be dropped and counted.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use crate::ShardId;

/// Errors of sending into a shard's inbox. On error the message is dropped; to get it back use
/// [`Mesh::sender`] and flume's own `try_send` / `send_async`, whose errors carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshError {
    /// The shard index is outside the mesh.
    NoSuchShard { shard: ShardId, n_shards: usize },
    /// The inbox is full (only from the `try_` functions).
    Full { shard: ShardId },
    /// The inbox has no receiver. A mesh keeps every inbox open while any clone of it lives,
    /// so this is only seen through senders that outlived all clones of the mesh.
    Closed { shard: ShardId },
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeshError::NoSuchShard { shard, n_shards } => {
                write!(f, "no {shard} in a mesh of {n_shards} shards")
            }
            MeshError::Full { shard } => write!(f, "inbox of {shard} is full"),
            MeshError::Closed { shard } => write!(f, "inbox of {shard} is closed"),
        }
    }
}

impl std::error::Error for MeshError {}

struct Inbox<M> {
    tx: flume::Sender<M>,
    rx: flume::Receiver<M>,
}

/// One bounded inbox per shard. Cheap to clone (an `Arc`); give a clone to every shard and to
/// the control thread.
pub struct Mesh<M: Send + 'static> {
    inboxes: Arc<[Inbox<M>]>,
    capacity: usize,
}

impl<M: Send + 'static> Clone for Mesh<M> {
    fn clone(&self) -> Self {
        Mesh { inboxes: Arc::clone(&self.inboxes), capacity: self.capacity }
    }
}

impl<M: Send + 'static> fmt::Debug for Mesh<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh").field("n_shards", &self.inboxes.len()).field("capacity", &self.capacity).finish()
    }
}

impl<M: Send + 'static> Mesh<M> {
    /// `n_shards` inboxes (at least 1) of `capacity` messages each (at least 1: a zero-capacity
    /// flume channel is a rendezvous, which would make every send wait for a receiver).
    pub fn new(n_shards: usize, capacity: usize) -> Mesh<M> {
        let capacity = capacity.max(1);
        let inboxes: Vec<Inbox<M>> = (0..n_shards.max(1))
            .map(|_| {
                let (tx, rx) = flume::bounded(capacity);
                Inbox { tx, rx }
            })
            .collect();
        Mesh { inboxes: inboxes.into(), capacity }
    }

    /// Number of shards (inboxes).
    pub fn n_shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Capacity of each inbox.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn inbox_of(&self, id: ShardId) -> Result<&Inbox<M>, MeshError> {
        self.inboxes.get(id.0).ok_or(MeshError::NoSuchShard { shard: id, n_shards: self.inboxes.len() })
    }

    /// The receiving end of shard `id`'s inbox. Only that shard should receive from it: flume
    /// channels are multi-consumer, so a second receiver would steal its messages.
    ///
    /// # Panics
    /// If `id` is not in the mesh (a programming error: ids come from the pool).
    pub fn inbox(&self, id: ShardId) -> flume::Receiver<M> {
        match self.inbox_of(id) {
            Ok(i) => i.rx.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    /// A sender into shard `id`'s inbox, e.g. to keep on a hot path without the lookup.
    ///
    /// # Panics
    /// If `id` is not in the mesh (a programming error: ids come from the pool).
    pub fn sender(&self, id: ShardId) -> flume::Sender<M> {
        match self.inbox_of(id) {
            Ok(i) => i.tx.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    /// Sends `msg` to shard `id`, waiting while its inbox is full (backpressure). Usable from
    /// any async runtime (glommio, tokio).
    pub async fn send_to(&self, id: ShardId, msg: M) -> Result<(), MeshError> {
        let inbox = self.inbox_of(id)?;
        inbox.tx.send_async(msg).await.map_err(|_| MeshError::Closed { shard: id })
    }

    /// Sends `msg` to shard `id` if its inbox has room, without waiting.
    pub fn try_send_to(&self, id: ShardId, msg: M) -> Result<(), MeshError> {
        let inbox = self.inbox_of(id)?;
        inbox.tx.try_send(msg).map_err(|e| match e {
            flume::TrySendError::Full(_) => MeshError::Full { shard: id },
            flume::TrySendError::Disconnected(_) => MeshError::Closed { shard: id },
        })
    }

    /// Like [`Mesh::try_send_to`], but a full (or closed) inbox hands the message back, for the
    /// caller to wait for room without losing it.
    pub fn try_send_or_return(&self, id: ShardId, msg: M) -> Result<(), (M, MeshError)> {
        let inbox = match self.inbox_of(id) {
            Ok(i) => i,
            Err(e) => return Err((msg, e)),
        };
        inbox.tx.try_send(msg).map_err(|e| match e {
            flume::TrySendError::Full(m) => (m, MeshError::Full { shard: id }),
            flume::TrySendError::Disconnected(m) => (m, MeshError::Closed { shard: id }),
        })
    }

    /// Sends `msg` to shard `id`, blocking the calling thread while the inbox is full. For
    /// plain threads only: never call it on an executor (it would stall every task there).
    pub fn send_blocking_to(&self, id: ShardId, msg: M) -> Result<(), MeshError> {
        let inbox = self.inbox_of(id)?;
        inbox.tx.send(msg).map_err(|_| MeshError::Closed { shard: id })
    }

    /// Messages waiting in shard `id`'s inbox (0 for an unknown shard); for metrics.
    pub fn queued(&self, id: ShardId) -> usize {
        self.inbox_of(id).map_or(0, |i| i.rx.len())
    }
}

// === Outbox ===

/// [`Outbox::send`] found the target's queue full: the message comes back to be dropped (and
/// counted) by the caller, or the target is not in the mesh.
#[derive(Debug)]
pub struct OutboxFull<M> {
    pub msg: M,
    pub error: MeshError,
}

struct Queue<M> {
    waiting: VecDeque<M>,
    /// A task is draining `waiting` into the target's inbox.
    draining: bool,
    /// The drainer holds one message taken from `waiting` while it waits for room (it counts
    /// towards the bound).
    in_hand: bool,
}

/// One shard's way out to the others without waiting: a message goes straight into the target's
/// inbox when it has room and nothing of ours waits before it; otherwise into a per-target queue
/// of at most `capacity` messages, which one task per target (spawned when the queue starts,
/// ending when it empties) moves into the inbox in order as room appears. Lives on one executor
/// (`Rc`, not `Send`): create it on the shard that sends.
pub struct Outbox<M: Send + 'static> {
    mesh: Mesh<M>,
    capacity: usize,
    queues: Rc<RefCell<Vec<Queue<M>>>>,
}

impl<M: Send + 'static> Outbox<M> {
    /// An outbox over `mesh` whose per-target queues hold `capacity` messages (at least 1).
    pub fn new(mesh: Mesh<M>, capacity: usize) -> Outbox<M> {
        let queues =
            (0..mesh.n_shards()).map(|_| Queue { waiting: VecDeque::new(), draining: false, in_hand: false }).collect();
        Outbox { mesh, capacity: capacity.max(1), queues: Rc::new(RefCell::new(queues)) }
    }

    /// Messages waiting for room towards shard `to`.
    pub fn queued(&self, to: ShardId) -> usize {
        self.queues.borrow().get(to.0).map_or(0, |q| q.waiting.len() + usize::from(q.in_hand))
    }

    /// Messages waiting for room towards every shard together (the shard's `mesh_outbox_depth`).
    pub fn queued_total(&self) -> usize {
        self.queues.borrow().iter().map(|q| q.waiting.len() + usize::from(q.in_hand)).sum()
    }

    /// Sends `msg` to shard `to` without waiting: into its inbox, or behind what already waits
    /// for it. `Err` hands the message back when the queue is full (or `to` is unknown).
    /// Must run on a glommio executor (it may spawn the draining task).
    pub fn send(&self, to: ShardId, msg: M) -> Result<(), OutboxFull<M>> {
        let mut queues = self.queues.borrow_mut();
        let Some(q) = queues.get_mut(to.0) else {
            return Err(OutboxFull {
                msg,
                error: MeshError::NoSuchShard { shard: to, n_shards: self.mesh.n_shards() },
            });
        };
        let msg = if !q.draining {
            match self.mesh.try_send_or_return(to, msg) {
                Ok(()) => return Ok(()),
                Err((msg, MeshError::Full { .. })) => msg,
                Err((msg, error)) => return Err(OutboxFull { msg, error }),
            }
        } else {
            msg
        };
        if q.waiting.len() + usize::from(q.in_hand) >= self.capacity {
            return Err(OutboxFull { msg, error: MeshError::Full { shard: to } });
        }
        q.waiting.push_back(msg);
        if !q.draining {
            q.draining = true;
            drop(queues);
            let (mesh, queues) = (self.mesh.clone(), Rc::clone(&self.queues));
            glommio::spawn_local(drain(mesh, queues, to)).detach();
        }
        Ok(())
    }
}

/// Moves the messages waiting for `to` into its inbox, in order, waiting for room; ends when
/// the queue is empty (or the inbox is gone: the rest is dropped with the mesh).
async fn drain<M: Send + 'static>(mesh: Mesh<M>, queues: Rc<RefCell<Vec<Queue<M>>>>, to: ShardId) {
    loop {
        let next = {
            let mut qs = queues.borrow_mut();
            let q = &mut qs[to.0];
            match q.waiting.pop_front() {
                Some(m) => {
                    q.in_hand = true;
                    m
                }
                None => {
                    q.draining = false;
                    return;
                }
            }
        };
        let sent = mesh.send_to(to, next).await;
        let mut qs = queues.borrow_mut();
        qs[to.0].in_hand = false;
        if sent.is_err() {
            qs[to.0].waiting.clear();
            qs[to.0].draining = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a small glommio executor (the outbox spawns local tasks).
    fn on_executor<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move { f().await })
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn outbox_keeps_order_bounds_the_queue_and_spawns_one_drainer() {
        on_executor(|| async {
            let mesh: Mesh<u32> = Mesh::new(2, 2);
            let out = Outbox::new(mesh.clone(), 3);
            let to = ShardId(1);
            // 2 fit the inbox, 3 wait in the queue, the 6th and 7th come back.
            for i in 0..5 {
                assert!(out.send(to, i).is_ok(), "{i}");
            }
            assert_eq!(out.queued(to), 3);
            assert_eq!(out.queued_total(), 3, "the depth exported as mesh_outbox_depth");
            assert_eq!(mesh.queued(to), 2, "the depth exported as mesh_inbox_depth");
            let back = out.send(to, 5).expect_err("queue full");
            assert_eq!((back.msg, back.error), (5, MeshError::Full { shard: to }));
            assert!(out.send(to, 6).is_err());
            assert!(out.send(ShardId(9), 7).is_err(), "unknown shard");
            // The receiver takes everything; the drainer refills the inbox in order.
            let rx = mesh.inbox(to);
            let mut got = Vec::new();
            while got.len() < 5 {
                got.push(rx.recv_async().await.expect("recv"));
            }
            assert_eq!(got, vec![0, 1, 2, 3, 4], "in order, nothing lost below the bound");
            // Once drained, sends go straight to the inbox again (no task left behind).
            glommio::yield_if_needed().await;
            while out.queued(to) > 0 || out.queues.borrow()[1].draining {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert!(out.send(to, 8).is_ok());
            assert_eq!(out.queued(to), 0);
            assert_eq!(rx.recv_async().await.ok(), Some(8));
        });
    }

    #[test]
    fn a_message_sent_while_others_wait_queues_behind_them() {
        on_executor(|| async {
            let mesh: Mesh<u32> = Mesh::new(1, 1);
            let out = Outbox::new(mesh.clone(), 8);
            let to = ShardId(0);
            out.send(to, 1).expect("inbox");
            out.send(to, 2).expect("queued");
            let rx = mesh.inbox(to);
            assert_eq!(rx.recv_async().await.ok(), Some(1));
            // Room in the inbox now, but 2 waits: 3 must not overtake it.
            out.send(to, 3).expect("queued behind 2");
            let a = rx.recv_async().await.ok();
            let b = rx.recv_async().await.ok();
            assert_eq!((a, b), (Some(2), Some(3)));
        });
    }

    #[test]
    fn try_send_full_and_unknown_shard() {
        let mesh: Mesh<u32> = Mesh::new(2, 1);
        assert_eq!(mesh.n_shards(), 2);
        assert_eq!(mesh.try_send_to(ShardId(1), 7), Ok(()));
        assert_eq!(mesh.try_send_to(ShardId(1), 8), Err(MeshError::Full { shard: ShardId(1) }));
        assert_eq!(mesh.queued(ShardId(1)), 1);
        assert_eq!(mesh.queued(ShardId(0)), 0);
        assert_eq!(mesh.try_send_to(ShardId(2), 9), Err(MeshError::NoSuchShard { shard: ShardId(2), n_shards: 2 }));
        assert_eq!(mesh.inbox(ShardId(1)).try_recv(), Ok(7));
        assert!(mesh.inbox(ShardId(1)).try_recv().is_err());
    }

    #[test]
    fn closed_when_mesh_is_gone() {
        let mesh: Mesh<u32> = Mesh::new(1, 4);
        let tx = mesh.sender(ShardId(0));
        let copy = mesh.clone();
        drop(mesh);
        assert!(tx.try_send(1).is_ok(), "a clone still keeps the inbox open");
        drop(copy);
        assert!(matches!(tx.try_send(2), Err(flume::TrySendError::Disconnected(2))));
    }

    #[test]
    fn zero_sizes_are_raised_to_one() {
        let mesh: Mesh<u8> = Mesh::new(0, 0);
        assert_eq!((mesh.n_shards(), mesh.capacity()), (1, 1));
        assert_eq!(mesh.try_send_to(ShardId(0), 1), Ok(()));
    }

    #[test]
    #[should_panic(expected = "no shard-3")]
    fn inbox_of_unknown_shard_panics() {
        let mesh: Mesh<u8> = Mesh::new(2, 1);
        let _ = mesh.inbox(ShardId(3));
    }
}
