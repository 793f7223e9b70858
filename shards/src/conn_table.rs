//! A shard's table of live connections: bounded, pre-sized, with idle expiry in small slices.
//!
//! The packet path must never stall on this table, and a million connections must cost
//! little. So:
//! - **No rehash, no reallocation, no page faults later**: the index and the slab are sized for
//!   `capacity` and written once when the table is made, so every page is backed before the
//!   first packet. A first touch of fresh memory can cost milliseconds in a VM whose host backs
//!   guest memory lazily (measured here: 5-8 ms `record` calls on an idle node until the
//!   table's pages were all touched); the table's whole budget is resident from the start
//!   instead, and memory stays flat however connections come and go.
//! - **A bound with eviction**: a new key when the table is full evicts the slot under the
//!   clock hand (counted in [`ConnTable::evicted`]); the caller's flows for it simply age out on
//!   the switch.
//! - **Expiry in slices**: [`ConnTable::sweep`] looks at a bounded number of slots from where
//!   the last call stopped; called every tick, it walks the whole table every few seconds
//!   without ever holding the shard for long. No queue to compact, no sort.
//!
//! Keys are the caller's 64-bit hash of the connection (`ConnKey::hash64`, already a good
//! mix), so the index holds 12 bytes per entry and needs no hasher of its own. Two distinct
//! connections with one hash (about one in 10^7 among a million) share a record; the caller
//! checks its own key in the value when that matters. Time is whole seconds since the table
//! was made, passed in by the caller: one clock read serves a batch and tests are deterministic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that already are good 64-bit hashes: passes them through.
#[derive(Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the table; anything else folds in FNV-1a style.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `HashMap` hashing with [`PassThrough`].
pub type PassThroughBuild = BuildHasherDefault<PassThrough>;

/// A fast non-cryptographic hasher for small structured keys on a shard (addresses, ports):
/// the multiply-rotate scheme of rustc's FxHasher, finished with a 64-bit mix so that the
/// high bits hashbrown uses are well spread. Not for keys an attacker picks freely to collide
/// on purpose at scale: shard maps are bounded, so the worst case is slower, never unbounded.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(FX_K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // fmix64 (MurmurHash3's finaliser).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
}

/// `HashMap` hashing with [`FastHasher`].
pub type FastBuild = BuildHasherDefault<FastHasher>;

struct Slot<V> {
    key: u64,
    /// Seconds since the table's epoch of the latest insert or touch.
    last_seen: u32,
    /// Idle timeout in seconds; 0 never expires.
    idle: u32,
    value: Option<V>,
}

/// What [`ConnTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted<V> {
    New,
    /// The key was there; this is the value it replaced.
    Replaced(V),
    /// The table was full: the record of this other key made room.
    Evicted(u64, V),
}

/// Live connections of one shard, keyed by a 64-bit connection hash.
pub struct ConnTable<V> {
    index: HashMap<u64, u32, PassThroughBuild>,
    slots: Vec<Slot<V>>,
    free: Vec<u32>,
    capacity: usize,
    hand: usize,
    evicted: u64,
    expired: u64,
}

impl<V> ConnTable<V> {
    /// A table of at most `capacity` connections (at least 1), all memory reserved up front.
    pub fn with_capacity(capacity: usize) -> ConnTable<V> {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let mut index = HashMap::with_capacity_and_hasher(capacity, PassThroughBuild::default());
        // Touch every page of the index (its buckets are spread over all of it) once now.
        for k in 0..capacity as u64 {
            index.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0);
        }
        index.clear();
        let slots = (0..capacity).map(|_| Slot { key: 0, last_seen: 0, idle: 0, value: None }).collect();
        // Slots are handed out from the front: the lowest free index last in the stack.
        let free = (0..capacity as u32).rev().collect();
        ConnTable { index, slots, free, capacity, hand: 0, evicted: 0, expired: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Records evicted to make room for new ones, since the table was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records removed by [`ConnTable::sweep`], since the table was made.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        let i = *self.index.get(&key)? as usize;
        self.slots.get(i)?.value.as_ref()
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let i = *self.index.get(&key)? as usize;
        self.slots.get_mut(i)?.value.as_mut()
    }

    /// Inserts or replaces `key`'s record, seen at `now` (seconds), idle for `idle` seconds
    /// before [`ConnTable::sweep`] may remove it (0: never).
    pub fn insert(&mut self, key: u64, value: V, now: u32, idle: u32) -> Inserted<V> {
        if let Some(&i) = self.index.get(&key) {
            let s = &mut self.slots[i as usize];
            let old = std::mem::replace(s, Slot { key, last_seen: now, idle, value: Some(value) });
            return match old.value {
                Some(v) => Inserted::Replaced(v),
                None => Inserted::New,
            };
        }
        let mut outcome = Inserted::New;
        if self.index.len() >= self.capacity {
            if let Some((victim, v)) = self.evict_one() {
                outcome = Inserted::Evicted(victim, v);
            }
        }
        let slot = Slot { key, last_seen: now, idle, value: Some(value) };
        let Some(i) = self.free.pop() else {
            // Unreachable: a full table evicted one above, and there are `capacity` slots.
            return outcome;
        };
        self.slots[i as usize] = slot;
        self.index.insert(key, i);
        outcome
    }

    /// `key`'s record, its last-seen time moved to `now` (never backwards) and, if given, its
    /// idle timeout changed; one probe. None when there is no such record.
    pub fn touch_mut(&mut self, key: u64, now: u32, idle: Option<u32>) -> Option<&mut V> {
        let i = *self.index.get(&key)? as usize;
        let s = self.slots.get_mut(i)?;
        s.last_seen = s.last_seen.max(now);
        if let Some(idle) = idle {
            s.idle = idle;
        }
        s.value.as_mut()
    }

    /// Looks at up to `budget` slots (of all `capacity`) from where the previous call stopped and removes the
    /// records idle for their timeout at `now`, handing each to `gone`. Returns how many went.
    pub fn sweep(&mut self, now: u32, budget: usize, mut gone: impl FnMut(u64, V)) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            if self.hand >= n {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            let s = &mut self.slots[i];
            let idle_out = s.value.is_some() && s.idle > 0 && now.saturating_sub(s.last_seen) >= s.idle;
            if idle_out {
                let key = s.key;
                if let Some(v) = s.value.take() {
                    self.index.remove(&key);
                    self.free.push(i as u32);
                    removed += 1;
                    gone(key, v);
                }
            }
        }
        self.expired += removed as u64;
        removed
    }

    /// The live records among the `n` slots from slot `start` (for work done in slices: walk
    /// `start = 0, n, 2n, ...` up to [`ConnTable::capacity`]).
    pub fn slots(&self, start: usize, n: usize) -> impl Iterator<Item = (u64, &V)> {
        self.slots.iter().skip(start).take(n).filter_map(|s| s.value.as_ref().map(|v| (s.key, v)))
    }

    /// Every live record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots.iter().filter_map(|s| s.value.as_ref().map(|v| (s.key, v)))
    }

    /// Removes every record for which `doomed` says so; returns them. Scans the table: for
    /// rare bulk changes (policy invalidation), not the packet path.
    pub fn remove_where(&mut self, mut doomed: impl FnMut(u64, &V) -> bool) -> Vec<(u64, V)> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let hit = s.value.as_ref().is_some_and(|v| doomed(s.key, v));
            if hit {
                if let Some(v) = s.value.take() {
                    self.index.remove(&s.key);
                    self.free.push(i as u32);
                    out.push((s.key, v));
                }
            }
        }
        out
    }

    /// Frees the slot under the clock hand (the first occupied one from there).
    fn evict_one(&mut self) -> Option<(u64, V)> {
        let n = self.slots.len();
        for _ in 0..n {
            if self.hand >= n {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            if let Some(v) = self.slots[i].value.take() {
                let key = self.slots[i].key;
                self.index.remove(&key);
                self.free.push(i as u32);
                self.evicted += 1;
                return Some((key, v));
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fast_hasher_spreads_small_keys() {
        use std::hash::BuildHasher;
        let b = FastBuild::default();
        let mut seen = std::collections::HashSet::new();
        for a in 0u32..256 {
            for p in [80u16, 443, 8080] {
                // The top 7 bits (hashbrown's control byte) vary.
                seen.insert(b.hash_one((a, p)) >> 57);
            }
        }
        assert!(seen.len() > 100, "{}", seen.len());
    }

    #[test]
    fn insert_get_touch() {
        let mut t = ConnTable::with_capacity(4);
        assert_eq!(t.insert(10, "a", 0, 5), Inserted::New);
        assert_eq!(t.insert(10, "b", 1, 5), Inserted::Replaced("a"));
        assert_eq!(t.get(10), Some(&"b"));
        *t.touch_mut(10, 4, Some(9)).unwrap() = "c";
        assert_eq!(t.get(10), Some(&"c"));
        assert!(t.touch_mut(11, 3, None).is_none());
        assert_eq!(t.remove_where(|k, _| k == 10).len(), 1);
        assert_eq!(t.get(10), None);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_evicts_and_counts() {
        let mut t = ConnTable::with_capacity(3);
        for k in 0..3 {
            assert_eq!(t.insert(k, k, 0, 0), Inserted::New);
        }
        assert_eq!(t.insert(99, 99, 0, 0), Inserted::Evicted(0, 0));
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 1);
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(99), Some(&99));
        // Never more than the capacity, however many come.
        for k in 100..1000 {
            t.insert(k, k, 0, 0);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 901);
    }

    #[test]
    fn sweep_expires_idle_records_in_slices() {
        let mut t = ConnTable::with_capacity(100);
        for k in 0..100u64 {
            t.insert(k, k, 0, if k % 2 == 0 { 10 } else { 0 });
        }
        assert!(t.touch_mut(0, 8, None).is_some());
        let mut gone = Vec::new();
        // Not yet idle long enough.
        assert_eq!(t.sweep(9, 100, |k, _| gone.push(k)), 0);
        // Slices of 30 slots: the whole table after four calls.
        let mut total = 0;
        for _ in 0..4 {
            total += t.sweep(10, 30, |k, _| gone.push(k));
        }
        assert_eq!(total, 49, "every even key but 0 (touched at 8)");
        assert_eq!(t.len(), 51);
        assert!(gone.iter().all(|k| k % 2 == 0 && *k != 0));
        assert_eq!(t.expired(), 49);
        // Freed slots are reused: no growth beyond the capacity.
        for k in 1000..1049 {
            assert_eq!(t.insert(k, k, 11, 0), Inserted::New);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.evicted(), 0);
    }

    #[test]
    fn remove_where_and_iter() {
        let mut t = ConnTable::with_capacity(10);
        for k in 0..10u64 {
            t.insert(k, k * 10, 0, 0);
        }
        let out = t.remove_where(|_, v| *v >= 50);
        assert_eq!(out.len(), 5);
        assert_eq!(t.iter().count(), 5);
        assert!(t.iter().all(|(k, v)| *v == k * 10 && *v < 50));
    }
}
