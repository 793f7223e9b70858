//! A shard's own table of the flows it installed, with idle expiry.
//!
//! Each shard owns the flows of the connections that hash to it, so the table is a plain
//! `HashMap` with no lock: it is never shared. Time is passed in (`now`) rather than read, so
//! that expiry is deterministic under test and one clock read serves a whole batch.
//!
//! Idle expiry must not scan the table: a shard may hold a million flows and expires a few per
//! tick. Entries are kept in a FIFO queue of `(time, key)` items in time order: insert and every
//! touch that moves `last_seen` push an item and leave the older ones behind (lazy deletion).
//! So each live entry always has an item at its own `last_seen`, and an item whose key is gone
//! or was seen again since is stale. Expiry pops from the front only while items are old enough
//! and expires a key only if its entry's own `last_seen` is old enough too, so its cost is
//! proportional to what it expires plus the stale items it discards. When stale items outnumber
//! live entries the queue is rebuilt, keeping memory within a constant factor.
//!
//! The queue is ordered as long as `now` never goes backwards between calls. If it does, expiry
//! may come late for some entries, never early: an entry is expired only after checking its own
//! `last_seen`.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One flow and its bookkeeping. `value`, `cookie` and the counters may be changed through
/// [`FlowTable::get_mut`]; the timestamps only through the table, which orders its expiry
/// queue by them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry<V> {
    pub value: V,
    /// The OpenFlow cookie the flow was installed with, for [`FlowTable::remove_by_cookie`].
    pub cookie: u64,
    pub packets: u64,
    pub bytes: u64,
    created: Instant,
    last_seen: Instant,
}

impl<V> FlowEntry<V> {
    /// When the entry was inserted.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The latest `now` of its insert or touch.
    pub fn last_seen(&self) -> Instant {
        self.last_seen
    }
}

#[derive(Debug)]
struct QueueItem<K> {
    at: Instant,
    key: K,
}

/// Flows of one shard keyed by `K` (e.g. a connection key), with idle expiry in amortised O(1)
/// per insert, touch and expired entry.
#[derive(Debug)]
pub struct FlowTable<K, V> {
    map: HashMap<K, FlowEntry<V>>,
    queue: VecDeque<QueueItem<K>>,
}

impl<K: Hash + Eq + Clone, V> Default for FlowTable<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A table with room for `n` entries before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        FlowTable { map: HashMap::with_capacity(n), queue: VecDeque::with_capacity(n) }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn enqueue(&mut self, key: K, at: Instant) {
        self.queue.push_back(QueueItem { at, key });
        self.maybe_compact();
    }

    /// Inserts or replaces the flow of `key`, with zeroed counters and `created = last_seen =
    /// now`. Returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V, cookie: u64, now: Instant) -> Option<V> {
        let entry = FlowEntry { value, cookie, packets: 0, bytes: 0, created: now, last_seen: now };
        let old = self.map.insert(key.clone(), entry).map(|e| e.value);
        self.enqueue(key, now);
        old
    }

    pub fn get(&self, key: &K) -> Option<&FlowEntry<V>> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut FlowEntry<V>> {
        self.map.get_mut(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Records traffic on `key`'s flow: adds `packets` and `bytes` (saturating) and moves
    /// `last_seen` to `now` (never backwards). False if there is no such flow.
    pub fn touch(&mut self, key: &K, now: Instant, packets: u64, bytes: u64) -> bool {
        let Some(e) = self.map.get_mut(key) else { return false };
        e.packets = e.packets.saturating_add(packets);
        e.bytes = e.bytes.saturating_add(bytes);
        if now > e.last_seen {
            e.last_seen = now;
            self.enqueue(key.clone(), now);
        }
        true
    }

    /// Removes `key`'s flow; its queue items become stale.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|e| e.value)
    }

    /// Removes every flow whose cookie matches `cookie` under `mask` (OpenFlow's rule:
    /// `entry.cookie & mask == cookie & mask`; mask 0 matches all). Scans the table: meant for
    /// rare bulk deletes, not the per-packet path.
    pub fn remove_by_cookie(&mut self, cookie: u64, mask: u64) -> Vec<(K, V)> {
        let want = cookie & mask;
        let keys: Vec<K> = self.map.iter().filter(|(_, e)| e.cookie & mask == want).map(|(k, _)| k.clone()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let v = self.map.remove(&k)?.value;
                Some((k, v))
            })
            .collect()
    }

    /// Removes and returns every flow not seen for at least `idle` (`now - last_seen >= idle`).
    pub fn expire_idle(&mut self, now: Instant, idle: Duration) -> Vec<(K, V)> {
        self.expire_idle_at_most(now, idle, usize::MAX)
    }

    /// Like [`FlowTable::expire_idle`] but stops after `limit` expired flows, to bound the
    /// work of one call on a busy shard; the rest go on the next call.
    pub fn expire_idle_at_most(&mut self, now: Instant, idle: Duration, limit: usize) -> Vec<(K, V)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(front) = self.queue.front() else { break };
            if now.saturating_duration_since(front.at) < idle {
                break;
            }
            let Some(item) = self.queue.pop_front() else { break };
            // A key that is gone, or was seen since `item.at`, is skipped: in the second case
            // its newer item is further back in the queue.
            let MapEntry::Occupied(slot) = self.map.entry(item.key) else { continue };
            if now.saturating_duration_since(slot.get().last_seen) >= idle {
                let (k, e) = slot.remove_entry();
                out.push((k, e.value));
            }
        }
        out
    }

    /// Live entries in arbitrary order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &FlowEntry<V>)> {
        self.map.iter()
    }

    /// Drops every flow.
    pub fn clear(&mut self) {
        self.map.clear();
        self.queue.clear();
    }

    /// Queue items, live and stale (for tests of the memory bound).
    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Rebuilds the queue from the live entries once stale items dominate. Runs after at least
    /// `len + 64` pushes since the last rebuild, so its O(n log n) cost is amortised.
    fn maybe_compact(&mut self) {
        if self.queue.len() <= 2 * self.map.len() + 64 {
            return;
        }
        let mut live: Vec<QueueItem<K>> =
            self.map.iter().map(|(k, e)| QueueItem { at: e.last_seen, key: k.clone() }).collect();
        live.sort_by_key(|i| i.at);
        self.queue.clear();
        self.queue.extend(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::Gen;

    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn insert_get_touch_remove() {
        let t = t0();
        let mut ft: FlowTable<u32, &str> = FlowTable::new();
        assert!(ft.is_empty());
        assert_eq!(ft.insert(1, "a", 0x10, t), None);
        assert_eq!(ft.insert(2, "b", 0x20, t), None);
        assert_eq!(ft.len(), 2);
        let e = ft.get(&1).expect("present");
        assert_eq!((e.value, e.cookie, e.packets, e.bytes), ("a", 0x10, 0, 0));
        assert_eq!((e.created(), e.last_seen()), (t, t));

        assert!(ft.touch(&1, t + ms(5), 2, 120));
        assert!(ft.touch(&1, t + ms(3), 1, 60), "an older now still counts traffic");
        let e = ft.get(&1).expect("present");
        assert_eq!((e.packets, e.bytes, e.last_seen(), e.created()), (3, 180, t + ms(5), t));
        assert!(!ft.touch(&9, t, 1, 1));

        ft.get_mut(&2).expect("present").value = "B";
        assert_eq!(ft.get(&2).map(|e| e.value), Some("B"));
        assert_eq!(ft.insert(2, "c", 0x30, t + ms(1)), Some("B"));
        assert_eq!(ft.get(&2).map(|e| (e.cookie, e.created())), Some((0x30, t + ms(1))));
        assert_eq!(ft.remove(&2), Some("c"));
        assert_eq!(ft.remove(&2), None);
        assert_eq!(ft.len(), 1);
        let keys: Vec<_> = ft.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1]);
    }

    #[test]
    fn idle_expiry_respects_touches_and_boundaries() {
        let t = t0();
        let idle = ms(100);
        let mut ft: FlowTable<u32, u32> = FlowTable::new();
        ft.insert(1, 10, 0, t);
        ft.insert(2, 20, 0, t + ms(10));
        ft.insert(3, 30, 0, t + ms(20));
        ft.touch(&1, t + ms(50), 1, 1);

        assert!(ft.expire_idle(t + ms(99), idle).is_empty());
        // 2 has been idle exactly 100 ms at t+110: expired; 1 was touched at 50.
        assert_eq!(ft.expire_idle(t + ms(110), idle), vec![(2, 20)]);
        assert_eq!(ft.expire_idle(t + ms(119), idle), vec![]);
        let mut got = ft.expire_idle(t + ms(150), idle);
        got.sort_unstable();
        assert_eq!(got, vec![(1, 10), (3, 30)]);
        assert!(ft.is_empty());
    }

    #[test]
    fn removed_and_reinserted_entries_use_their_new_time() {
        let t = t0();
        let mut ft: FlowTable<u32, u32> = FlowTable::new();
        ft.insert(1, 1, 0, t);
        ft.remove(&1);
        ft.insert(1, 2, 0, t + ms(80));
        assert!(ft.expire_idle(t + ms(100), ms(100)).is_empty(), "the old queue item is stale");
        assert_eq!(ft.expire_idle(t + ms(180), ms(100)), vec![(1, 2)]);
    }

    #[test]
    fn expire_at_most_bounds_work() {
        let t = t0();
        let mut ft: FlowTable<u32, ()> = FlowTable::new();
        for k in 0..10 {
            ft.insert(k, (), 0, t);
        }
        assert_eq!(ft.expire_idle_at_most(t + ms(10), ms(1), 4).len(), 4);
        assert_eq!(ft.len(), 6);
        assert_eq!(ft.expire_idle_at_most(t + ms(10), ms(1), 100).len(), 6);
    }

    #[test]
    fn remove_by_cookie_uses_mask() {
        let t = t0();
        let mut ft: FlowTable<u32, u32> = FlowTable::new();
        ft.insert(1, 1, 0xaa_01, t);
        ft.insert(2, 2, 0xaa_02, t);
        ft.insert(3, 3, 0xbb_01, t);
        let mut got = ft.remove_by_cookie(0xaa_00, 0xff_00);
        got.sort_unstable();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(ft.remove_by_cookie(0xaa_00, 0xff_00), vec![]);
        assert_eq!(ft.remove_by_cookie(0xbb_02, u64::MAX), vec![]);
        assert_eq!(ft.remove_by_cookie(0, 0), vec![(3, 3)], "mask 0 matches all");
        assert!(ft.is_empty());
        // Removed entries leave stale queue items that expiry skips.
        assert!(ft.expire_idle(t + ms(1000), ms(1)).is_empty());
    }

    #[test]
    fn touches_do_not_grow_the_queue_without_bound() {
        let t = t0();
        let mut ft: FlowTable<u32, ()> = FlowTable::new();
        for k in 0..100 {
            ft.insert(k, (), 0, t);
        }
        for i in 1..=100_000u64 {
            ft.touch(&((i % 100) as u32), t + Duration::from_micros(i), 1, 1);
        }
        assert!(ft.queue_len() <= 2 * ft.len() + 65, "queue {}", ft.queue_len());
        // Expiry is still exact after compactions: last touches were at t + 99_901..=100_000 us.
        let cut = t + Duration::from_micros(99_950) + ms(10);
        assert_eq!(ft.expire_idle(cut, ms(10)).len(), 50);
        assert_eq!(ft.len(), 50);
    }

    /// Random operations against a naive model that scans everything.
    #[test]
    fn matches_a_naive_model() {
        for seed in 0..20u64 {
            let mut g = Gen::new(seed);
            let t = t0();
            let mut now = t;
            let mut ft: FlowTable<u16, u64> = FlowTable::new();
            // key -> (value, cookie, last_seen, packets)
            let mut model: HashMap<u16, (u64, u64, Instant, u64)> = HashMap::new();
            let idle = ms(g.below(50) + 1);
            for step in 0..5_000u64 {
                now += Duration::from_micros(g.below(3_000));
                let k = g.below(300) as u16;
                match g.below(10) {
                    0..=2 => {
                        let cookie = g.below(8);
                        let a = ft.insert(k, step, cookie, now);
                        let b = model.insert(k, (step, cookie, now, 0)).map(|m| m.0);
                        assert_eq!(a, b);
                    }
                    3..=5 => {
                        let a = ft.touch(&k, now, 1, 64);
                        let b = model.get_mut(&k).map(|m| {
                            m.2 = now;
                            m.3 += 1;
                        });
                        assert_eq!(a, b.is_some());
                    }
                    6 => assert_eq!(ft.remove(&k), model.remove(&k).map(|m| m.0)),
                    7 => {
                        let (c, mask) = (g.below(8), g.below(8));
                        let mut a = ft.remove_by_cookie(c, mask);
                        let mut b: Vec<(u16, u64)> =
                            model.iter().filter(|(_, m)| m.1 & mask == c & mask).map(|(k, m)| (*k, m.0)).collect();
                        model.retain(|_, m| m.1 & mask != c & mask);
                        a.sort_unstable();
                        b.sort_unstable();
                        assert_eq!(a, b);
                    }
                    _ => {
                        let mut a = ft.expire_idle(now, idle);
                        let mut b: Vec<(u16, u64)> = model
                            .iter()
                            .filter(|(_, m)| now.duration_since(m.2) >= idle)
                            .map(|(k, m)| (*k, m.0))
                            .collect();
                        model.retain(|_, m| now.duration_since(m.2) < idle);
                        a.sort_unstable();
                        b.sort_unstable();
                        assert_eq!(a, b, "seed {seed} step {step}");
                    }
                }
                assert_eq!(ft.len(), model.len());
                if let Some(m) = model.get(&k) {
                    let e = ft.get(&k).expect("model says present");
                    assert_eq!((e.value, e.cookie, e.last_seen(), e.packets), (m.0, m.1, m.2, m.3));
                }
                assert!(ft.queue_len() <= 2 * ft.len() + 65);
            }
        }
    }
}
