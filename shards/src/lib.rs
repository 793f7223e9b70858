//! shardflow's thread-per-core layer: pinned executors, the messages between them, and the
//! per-shard state they own.
//!
//! # The model
//! A [`Pool`] runs one glommio executor per shard, each on its own thread and, when CPUs are
//! given, pinned to one core. Work is divided by key, not shared: a connection's key hashes
//! (`shardflow::packet::ConnKey::hash64`, direction-free and the same on every process) to one
//! shard with [`shard_of`], jump consistent hashing, so growing the pool moves few keys.
//!
//! | state | where it lives | why no lock |
//! | --- | --- | --- |
//! | switch connections | the shard that accepted them | only its executor reads/writes the socket |
//! | [`ConnTable`] of live connections | the shard owning the connection key | one owner, `!Sync` use |
//! | [`HotSynCache`] of hot targets | the shard owning the connection key | both directions hash to it |
//! | inboxes ([`Mesh`]) | shared, one bounded flume channel per shard | channels are the only shared state |
//!
//! A shard that sees work for a key it does not own (a packet-in that arrived on another
//! shard's switch connection, a REST request on the control thread) sends it to the owner
//! through the [`Mesh`]: the owner applies it to its own state. No state is ever touched by two
//! threads, so the tables are plain `HashMap`s and nothing waits on a lock; the only cross-core
//! cost is the channel hand-off. The channels are bounded: a slow shard slows its producers
//! down instead of queueing without limit.
//!
//! Shard code must never block its executor: no blocking IO, no `std::sync::Mutex`, no sleep.
//! Each executor registers `io_memory` bytes of locked memory: a service unit needs
//! `LimitMEMLOCK` of at least `shards * io_memory` (glommio's floor is 512 KiB per executor).

mod conn_table;
pub mod fd_limit;
mod hot_syn;
mod jump;
mod mesh;
mod pool;
mod procfs;
#[cfg(test)]
mod testgen;

pub use conn_table::{ConnTable, FastBuild, FastHasher, Inserted, PassThrough, PassThroughBuild};
pub use hot_syn::HotSynCache;
pub use jump::jump_consistent_hash;
pub use mesh::{Mesh, MeshError, Outbox, OutboxFull};
pub use pool::{Pool, PoolConfig, PoolError, ShardCtx, ShardFailure, DEFAULT_IO_MEMORY, MIN_IO_MEMORY};
pub use procfs::{
    memlock_limit, parse_cpu_list, parse_cpu_set, process_allowed_cpus, thread_allowed_cpus, CpuListError,
};

use std::fmt;

/// Index of a shard in a pool of `n` shards (`0..n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ShardId(pub usize);

impl ShardId {
    /// The shard owning `hash` in a pool of `n_shards`; see [`shard_of`].
    pub fn of(hash: u64, n_shards: usize) -> ShardId {
        ShardId(shard_of(hash, n_shards))
    }

    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

impl From<ShardId> for usize {
    fn from(s: ShardId) -> usize {
        s.0
    }
}

/// The shard (`0..n_shards`) that owns a key hash. A pool of 0 shards is treated as 1 (the
/// answer is 0) rather than panicking; pools larger than `u32::MAX` are clamped to it.
pub fn shard_of(hash: u64, n_shards: usize) -> usize {
    let n = u32::try_from(n_shards).unwrap_or(u32::MAX);
    jump_consistent_hash(hash, n) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a deterministic stream of well-spread keys, no crates needed.
    fn keys(n: usize) -> impl Iterator<Item = u64> {
        let mut s: u64 = 0x1234_5678_9abc_def0;
        (0..n).map(move |_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn in_range() {
        for n in 1..=64 {
            for k in keys(500) {
                assert!(shard_of(k, n) < n);
            }
        }
        assert_eq!(shard_of(42, 0), 0);
        assert_eq!(shard_of(42, 1), 0);
        assert_eq!(shard_of(u64::MAX, 1), 0);
    }

    #[test]
    fn stable_reference_values() {
        // From an independent one-off of the paper's C++ code (Python, same arithmetic).
        let want: [(u64, usize, usize); 6] = [
            (0, 10, 0),
            (1, 10, REF[0]),
            (0xdead_beef, 10, REF[1]),
            (0x8372_0994_e12e_4dec, 4, REF[2]),
            (0x8372_0994_e12e_4dec, 1000, REF[3]),
            (u64::MAX, 1_000_000, REF[4]),
        ];
        for (k, n, b) in want {
            assert_eq!(shard_of(k, n), b, "key {k:#x} n {n}");
        }
    }

    const REF: [usize; 5] = [6, 5, 1, 710, 589_430];

    #[test]
    fn balanced() {
        let n = 8;
        let total = 80_000;
        let mut count = vec![0usize; n];
        for k in keys(total) {
            count[shard_of(k, n)] += 1;
        }
        let mean = total / n;
        for (i, c) in count.iter().enumerate() {
            // Loose: within 5% of the mean (expected deviation is about 1%).
            assert!(c.abs_diff(mean) < mean / 20, "shard {i} has {c}, mean {mean}: {count:?}");
        }
    }

    #[test]
    fn growing_moves_few_keys_and_only_to_the_new_shard() {
        let total = 20_000;
        for n in 1..32 {
            let mut moved = 0usize;
            for k in keys(total) {
                let (a, b) = (shard_of(k, n), shard_of(k, n + 1));
                if a != b {
                    assert_eq!(b, n, "a key moved between old shards");
                    moved += 1;
                }
            }
            let expect = total / (n + 1);
            assert!(moved.abs_diff(expect) < expect / 5 + 50, "n {n}: moved {moved}, expected ~{expect}");
        }
    }

    #[test]
    fn shard_id() {
        let s = ShardId::of(0xdead_beef, 10);
        assert_eq!(s.index(), shard_of(0xdead_beef, 10));
        assert_eq!(ShardId(3).to_string(), "shard-3");
    }
}
