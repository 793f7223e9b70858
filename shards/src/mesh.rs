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

use std::fmt;
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

#[cfg(test)]
mod tests {
    use super::*;

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
