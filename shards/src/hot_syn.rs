//! The hot-SYN cache: recently opened connection targets, bounded and with a TTL.
//!
//! Telling a reply from a request by the TCP ACK bit alone fails under retransmission, NAT and
//! reordering. When A sends a SYN to B:port, the controller marks the target as *hot*; a later
//! packet A->B is then known to belong to A's own connection, not to be B's reply, and the
//! controller installs the forward flow rather than only the return one.
//!
//! Each shard owns the cache of the connections it owns (both directions of a connection hash
//! to the same shard), so there is no lock. It must stay bounded under a SYN flood: when full,
//! marking a new key evicts the oldest mark. Lookups are a single hash probe with no allocation;
//! marks are amortised O(1): a FIFO of marks in time order, where re-marking a key leaves its
//! older item behind as stale (recognised by a stamp) and stale items are dropped as they reach
//! the front or by a compaction once they outnumber the capacity.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    stamp: u64,
}

/// A bounded set of keys, each hot for `ttl` after its latest [`HotSynCache::mark`].
#[derive(Debug)]
pub struct HotSynCache<K> {
    map: HashMap<K, Mark, crate::FastBuild>,
    /// Marks in the order they were made: (stamp, key). Items whose stamp differs from the
    /// key's current mark are stale.
    order: VecDeque<(u64, K)>,
    capacity: usize,
    ttl: Duration,
    next_stamp: u64,
}

impl<K: Hash + Eq + Clone> HotSynCache<K> {
    /// A cache of at most `capacity` keys (at least 1), hot for `ttl` after being marked.
    /// Memory for `capacity` keys is reserved up front, so marks do not reallocate.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        HotSynCache {
            map: HashMap::with_capacity_and_hasher(capacity, crate::FastBuild::default()),
            order: VecDeque::with_capacity(capacity + 1),
            capacity,
            ttl,
            next_stamp: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keys held, including expired ones not yet purged (purging happens on `mark` and
    /// [`HotSynCache::purge_expired`]). Never more than the capacity.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expired(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) >= self.ttl
    }

    /// Whether `key` was marked less than `ttl` before `now`.
    pub fn is_hot(&self, key: &K, now: Instant) -> bool {
        self.map.get(key).is_some_and(|m| !self.expired(m.at, now))
    }

    /// Marks `key` hot from `now` (re-marking extends it). If the cache is full of other keys,
    /// the oldest mark is evicted first.
    pub fn mark(&mut self, key: K, now: Instant) {
        self.purge_expired(now);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let is_new = match self.map.entry(key.clone()) {
            MapEntry::Occupied(mut o) => {
                // Never move a mark backwards in time: the queue is in time order.
                let at = o.get().at.max(now);
                o.insert(Mark { at, stamp });
                false
            }
            MapEntry::Vacant(v) => {
                v.insert(Mark { at: now, stamp });
                true
            }
        };
        if is_new && self.map.len() > self.capacity {
            self.evict_oldest();
        }
        self.order.push_back((stamp, key));
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order.retain(|(s, k)| map.get(k).is_some_and(|m| m.stamp == *s));
        }
    }

    /// Forgets `key`; true if it was held (hot or expired).
    pub fn remove(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }

    /// Drops expired keys from the front of the queue. Amortised O(1) per mark.
    pub fn purge_expired(&mut self, now: Instant) {
        while let Some((stamp, key)) = self.order.front() {
            match self.map.get(key) {
                Some(m) if m.stamp == *stamp => {
                    if !self.expired(m.at, now) {
                        return;
                    }
                    self.map.remove(key);
                }
                _ => {} // stale item
            }
            self.order.pop_front();
        }
    }

    /// Removes the key with the oldest live mark. `mark` purges first, which leaves a live item
    /// at the front; skipping stale items here keeps eviction right without relying on that.
    fn evict_oldest(&mut self) {
        while let Some((stamp, key)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|m| m.stamp == stamp) {
                self.map.remove(&key);
                return;
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::Gen;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ttl_expiry() {
        let t = Instant::now();
        let mut c = HotSynCache::new(8, ms(100));
        c.mark("a", t);
        assert!(c.is_hot(&"a", t));
        assert!(c.is_hot(&"a", t + ms(99)));
        assert!(!c.is_hot(&"a", t + ms(100)), "expired exactly at ttl");
        assert!(!c.is_hot(&"b", t));
        c.mark("a", t + ms(90));
        assert!(c.is_hot(&"a", t + ms(150)), "re-mark extends");
        c.mark("b", t + ms(300));
        assert_eq!(c.len(), 1, "a was purged as expired");
        assert!(c.remove(&"b"));
        assert!(!c.remove(&"b"));
        assert!(c.is_empty());
    }

    #[test]
    fn evicts_oldest_mark_when_full() {
        let t = Instant::now();
        let mut c = HotSynCache::new(3, Duration::from_secs(60));
        c.mark(1, t);
        c.mark(2, t + ms(1));
        c.mark(3, t + ms(2));
        c.mark(1, t + ms(3)); // 1 is now the newest
        c.mark(4, t + ms(4)); // evicts 2
        assert_eq!(c.len(), 3);
        assert!(!c.is_hot(&2, t + ms(5)));
        assert!(c.is_hot(&1, t + ms(5)) && c.is_hot(&3, t + ms(5)) && c.is_hot(&4, t + ms(5)));
        c.mark(5, t + ms(5)); // evicts 3
        assert!(!c.is_hot(&3, t + ms(6)));
        c.mark(6, t + ms(6)); // evicts 1
        assert!(!c.is_hot(&1, t + ms(7)));
        assert!(c.is_hot(&4, t + ms(7)) && c.is_hot(&5, t + ms(7)) && c.is_hot(&6, t + ms(7)));
    }

    #[test]
    fn capacity_zero_is_one() {
        let t = Instant::now();
        let mut c = HotSynCache::new(0, ms(10));
        c.mark(1, t);
        c.mark(2, t);
        assert_eq!((c.capacity(), c.len()), (1, 1));
        assert!(c.is_hot(&2, t) && !c.is_hot(&1, t));
    }

    #[test]
    fn remarks_keep_the_queue_bounded() {
        let t = Instant::now();
        let mut c = HotSynCache::new(10, Duration::from_secs(1));
        for i in 0..100_000u64 {
            c.mark(i % 7, t + Duration::from_micros(i));
            assert!(c.order.len() <= 2 * c.capacity + 16);
        }
        assert_eq!(c.len(), 7);
    }

    /// Random marks, removals and lookups against a naive ordered list.
    #[test]
    fn matches_a_naive_model() {
        for seed in 0..20u64 {
            let mut g = Gen::new(seed);
            let t = Instant::now();
            let mut now = t;
            let cap = g.below(20) as usize + 1;
            let ttl = ms(g.below(40) + 1);
            let mut c = HotSynCache::new(cap, ttl);
            // (key, marked at), oldest mark first.
            let mut model: Vec<(u16, Instant)> = Vec::new();
            for step in 0..5_000 {
                now += Duration::from_micros(g.below(2_000));
                let k = g.below(40) as u16;
                match g.below(6) {
                    0..=2 => {
                        c.mark(k, now);
                        model.retain(|(_, at)| now.duration_since(*at) < ttl);
                        let existed = model.iter().position(|(mk, _)| *mk == k).map(|i| model.remove(i));
                        if existed.is_none() && model.len() == cap {
                            model.remove(0);
                        }
                        model.push((k, now));
                    }
                    3 => {
                        let held = model.iter().position(|(mk, _)| *mk == k).map(|i| model.remove(i));
                        assert_eq!(c.remove(&k), held.is_some(), "seed {seed} step {step}");
                    }
                    _ => {}
                }
                for probe in 0..40u16 {
                    let want = model.iter().any(|(mk, at)| *mk == probe && now.duration_since(*at) < ttl);
                    assert_eq!(c.is_hot(&probe, now), want, "seed {seed} step {step} key {probe}");
                }
                assert!(c.len() <= cap);
                assert_eq!(c.len(), model.len(), "seed {seed} step {step}");
            }
        }
    }
}
