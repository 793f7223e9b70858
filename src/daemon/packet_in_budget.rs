//! A shard's own packet-in budget per class (`[pipeline.shard_limits]`): token buckets, checked
//! right after a packet-in is parsed, so that a flood costs a shard a parse and a counter per
//! packet, not a decision, a Tracker update and three messages to the switch. Behind the
//! switch's meters (`pipeline::meters`) it bounds what a switch without them can make a shard
//! do; per class, so that a flood of one class cannot starve another (ARP stays answered while
//! new connections are shed).

use std::cell::Cell;
use std::time::Instant;

use crate::pipeline::default::PacketInLimits;

/// The class of a packet-in, as the pipeline's meters divide them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A packet-in the shard decides (a new connection).
    NewConnection,
    /// An ARP packet-in (answered or flooded by the shard).
    Arp,
    /// Anything else (recorded only).
    Other,
}

impl Class {
    /// The `packet_in_dropped_total` cause of a packet-in of this class over its budget.
    pub fn rate_cause(self) -> &'static str {
        match self {
            Class::NewConnection => "rate_new_connection",
            Class::Arp => "rate_arp",
            Class::Other => "rate_other",
        }
    }
}

/// One token bucket: `rate` tokens per second, at most `rate / 10` (at least 1) held.
/// `rate == 0` admits everything.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: Cell<f64>,
    last: Cell<Option<Instant>>,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate);
        let burst = (rate / 10.0).max(1.0);
        Bucket { rate, burst, tokens: Cell::new(burst), last: Cell::new(None) }
    }

    fn admit(&self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = self.last.get().map(|t| now.saturating_duration_since(t).as_secs_f64()).unwrap_or(0.0);
        // A clock read per batch of packet-ins: several share one `now` (elapsed 0).
        if elapsed > 0.0 || self.last.get().is_none() {
            self.last.set(Some(now));
        }
        let tokens = (self.tokens.get() + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            self.tokens.set(tokens - 1.0);
            true
        } else {
            self.tokens.set(tokens);
            false
        }
    }
}

/// The budgets of one shard, one bucket per [`Class`].
#[derive(Debug)]
pub struct PacketInBudget {
    new_connection: Bucket,
    arp: Bucket,
    other: Bucket,
}

impl PacketInBudget {
    pub fn new(limits: &PacketInLimits) -> PacketInBudget {
        PacketInBudget {
            new_connection: Bucket::new(limits.new_connections_pps),
            arp: Bucket::new(limits.arp_pps),
            other: Bucket::new(limits.other_pps),
        }
    }

    /// Whether a packet-in of `class` arriving at `now` is within budget (and takes its token).
    pub fn admit(&self, class: Class, now: Instant) -> bool {
        match class {
            Class::NewConnection => self.new_connection.admit(now),
            Class::Arp => self.arp.admit(now),
            Class::Other => self.other.admit(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let b = PacketInBudget::new(&PacketInLimits { new_connections_pps: 1000, arp_pps: 0, other_pps: 5 });
        let t0 = Instant::now();
        // A burst of a tenth of a second's worth, all at one instant (one read batch).
        let admitted = (0..500).filter(|_| b.admit(Class::NewConnection, t0)).count();
        assert_eq!(admitted, 100);
        // 50 ms later: 50 more tokens.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!((0..500).filter(|_| b.admit(Class::NewConnection, t1)).count(), 50);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..500).filter(|_| b.admit(Class::NewConnection, t2)).count(), 100);
        // 0 = no limit; a small rate still admits one at a time.
        assert!((0..100_000).all(|_| b.admit(Class::Arp, t0)));
        assert_eq!((0..10).filter(|_| b.admit(Class::Other, t0)).count(), 1);
        assert!(b.admit(Class::Other, t0 + Duration::from_millis(200)));
    }

    #[test]
    fn classes_do_not_share_a_budget() {
        let b = PacketInBudget::new(&PacketInLimits { new_connections_pps: 10, arp_pps: 10, other_pps: 10 });
        let t = Instant::now();
        assert!(b.admit(Class::NewConnection, t));
        assert!(!b.admit(Class::NewConnection, t), "the new-connection budget is spent");
        assert!(b.admit(Class::Arp, t), "ARP has its own");
        assert!(b.admit(Class::Other, t));
        assert_eq!(Class::Arp.rate_cause(), "rate_arp");
    }
}
