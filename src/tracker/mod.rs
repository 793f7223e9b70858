//! The Tracker: learns where addresses live from the traffic the shards see (source MAC and IP
//! of every packet-in, ARP senders), and follows the path of connections across switches and
//! ports for operators. One per daemon, shared by every shard (`Arc<Tracker>`).
//!
//! Sans-IO and clock-free: every call takes `now`. Built on [`DashMap`]: a packet whose source
//! is already known at the same place only takes a shard *read* lock and stores its time in an
//! atomic, so the steady state of the packet path never writes a map; a new or moved address
//! takes one shard write lock. Reads ([`Tracker::locate`], [`TrackerView`]) take read locks only.
//!
//! What is learned, from [`Tracker::learn`]:
//! - the source MAC (`eth_src`) -> `(dpid, port)`, unless it is zero, broadcast or multicast;
//! - for IPv4/IPv6 packets the source IP -> `(mac, dpid, port)`; for ARP the sender
//!   (`arp_spa` -> `arp_sha`). Unspecified (0.0.0.0, ::), broadcast, multicast and loopback
//!   sources are ignored, and so is any IP whose MAC is not a unicast address;
//! - nothing from reserved ports (LOCAL, CONTROLLER, ... >= 0xffffff00), and no IP (the MAC
//!   still) from ports marked with [`Tracker::exclude_port`]: the gateway, tunnel and uplink
//!   ports carry many IPs behind one router MAC, which are not "located" there.
//!
//! A known IP seen with another MAC, port or switch *moves* (the last packet wins; `first_seen`
//! restarts, `moves` counts it). The maps are bounded ([`TrackerConfig`]): when full, new
//! addresses are not learned (counted in [`TrackerStats`]) until [`Tracker::expire`] frees room;
//! the bound is approximate under concurrent inserts (a few over, never unbounded).
//!
//! "The last packet wins" only among packets a switch's *routed* connection reported: a shard
//! feeds the Tracker nothing from a connection whose claim on its datapath id was not verified
//! (a second connection claiming a connected dpid: `packet_in_dropped_total{cause="unverified"}`,
//! docs/security.md "Datapath-id impostors"), so no other local process can move an address.

mod path;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::{DashMap, DashSet};
use serde::Serialize;

use crate::openflow::Dpid;
use crate::packet::{FlowKey, MacAddr};
use crate::policy::decision::{Location, Locator};

pub use path::{Hop, HopEntry, PathEntry};

/// Ports at or above this are reserved (LOCAL, CONTROLLER, IN_PORT...): never learned.
pub const OFPP_MAX: u32 = 0xffff_ff00;

/// Bounds of the tracker's maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Learned IPs.
    pub max_ips: usize,
    /// Learned MACs.
    pub max_macs: usize,
    /// Connections whose path is recorded.
    pub max_paths: usize,
    /// Distinct (switch, port, shard) hops kept per connection.
    pub max_hops: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { max_ips: 65_536, max_macs: 65_536, max_paths: 16_384, max_hops: 8 }
    }
}

/// Where and since when an IP was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub mac: MacAddr,
    pub port: u32,
    pub dpid: u64,
    /// First packet at this place (restarts when the IP moves).
    pub first_seen: Instant,
    pub last_seen: Instant,
    /// How many times the IP moved (MAC, port or switch changed).
    pub moves: u32,
}

/// One learned IP, for the REST API (`GET /v1/tracker`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeenEntry {
    pub ip: String,
    pub mac: String,
    /// 16 hex digits, like OVS.
    pub dpid: Dpid,
    pub port: u32,
    /// Seconds since `first_seen`.
    pub age_secs: f64,
    /// Seconds since `last_seen`.
    pub idle_secs: f64,
    pub moves: u32,
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrackerStats {
    pub ips: usize,
    pub macs: usize,
    pub paths: usize,
    /// IP moves seen.
    pub moves: u64,
    /// New IPs / MACs / paths not learned because the map was full.
    pub ips_dropped: u64,
    pub macs_dropped: u64,
    pub paths_dropped: u64,
}

/// The stored form of [`Seen`]: `last_seen` is an atomic so a refresh needs no write lock.
#[derive(Debug)]
struct IpEntry {
    mac: MacAddr,
    port: u32,
    dpid: u64,
    first_seen: Instant,
    /// Nanoseconds since the tracker's epoch.
    last_ns: AtomicU64,
    moves: u32,
}

#[derive(Debug)]
struct MacEntry {
    dpid: u64,
    port: u32,
    last_ns: AtomicU64,
}

/// The daemon's tracker. `Send + Sync`; share it as `Arc<Tracker>`.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    /// Times are stored as nanoseconds since this instant (`now` before it counts as 0).
    epoch: Instant,
    // Shards read these on every packet-in: a fast hasher, not SipHash. The maps are bounded
    // (`TrackerConfig`), so keys chosen to collide can slow them, never grow them.
    ips: DashMap<IpAddr, IpEntry, shards::FastBuild>,
    macs: DashMap<MacAddr, MacEntry, shards::FastBuild>,
    paths: DashMap<crate::packet::ConnKey, path::PathRecord, shards::FastBuild>,
    excluded: DashSet<(u64, u32)>,
    n_ips: AtomicUsize,
    n_macs: AtomicUsize,
    n_paths: AtomicUsize,
    moves: AtomicU64,
    ips_dropped: AtomicU64,
    macs_dropped: AtomicU64,
    paths_dropped: AtomicU64,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(TrackerConfig::default())
    }
}

/// A unicast, non-zero MAC.
fn good_mac(m: MacAddr) -> bool {
    m != MacAddr::ZERO && !m.is_multicast()
}

/// An IP that can be the source of a host.
fn good_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    }
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker::with_epoch(config, Instant::now())
    }

    /// With an explicit time origin (tests; `now` values before it count as the epoch).
    pub fn with_epoch(config: TrackerConfig, epoch: Instant) -> Tracker {
        Tracker {
            config,
            epoch,
            ips: DashMap::default(),
            macs: DashMap::default(),
            paths: DashMap::default(),
            excluded: DashSet::new(),
            n_ips: AtomicUsize::new(0),
            n_macs: AtomicUsize::new(0),
            n_paths: AtomicUsize::new(0),
            moves: AtomicU64::new(0),
            ips_dropped: AtomicU64::new(0),
            macs_dropped: AtomicU64::new(0),
            paths_dropped: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> TrackerConfig {
        self.config
    }

    fn ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Sources entering `dpid` on `port` are not learned as IP locations (gateway, tunnel,
    /// uplink ports); their MACs still are.
    pub fn exclude_port(&self, dpid: u64, port: u32) {
        self.excluded.insert((dpid, port));
    }

    pub fn is_excluded(&self, dpid: u64, port: u32) -> bool {
        self.excluded.contains(&(dpid, port))
    }

    /// Learns the source of the packet `key` that entered switch `dpid` on `in_port`. Returns
    /// whether an IP was learned or refreshed.
    pub fn learn(&self, dpid: u64, in_port: u32, key: &FlowKey, now: Instant) -> bool {
        if in_port >= OFPP_MAX {
            return false;
        }
        let ns = self.ns(now);
        if good_mac(key.eth_src) {
            self.learn_mac(key.eth_src, dpid, in_port, ns);
        }
        let (ip, mac) = if key.is_ip() {
            (key.ip_src, key.eth_src)
        } else if key.eth_type == 0x0806 && matches!(key.arp_op, 1 | 2) {
            (IpAddr::V4(key.arp_spa), key.arp_sha)
        } else {
            return false;
        };
        if !good_ip(ip) || !good_mac(mac) || self.is_excluded(dpid, in_port) {
            return false;
        }
        self.learn_ip(ip, mac, dpid, in_port, now, ns)
    }

    fn learn_mac(&self, mac: MacAddr, dpid: u64, port: u32, ns: u64) {
        if let Some(e) = self.macs.get(&mac) {
            if e.dpid == dpid && e.port == port {
                e.last_ns.fetch_max(ns, Ordering::Relaxed);
                return;
            }
        }
        match self.macs.entry(mac) {
            dashmap::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.dpid = dpid;
                e.port = port;
                *e.last_ns.get_mut() = ns;
            }
            dashmap::Entry::Vacant(v) => {
                if self.n_macs.load(Ordering::Relaxed) >= self.config.max_macs {
                    self.macs_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.n_macs.fetch_add(1, Ordering::Relaxed);
                v.insert(MacEntry { dpid, port, last_ns: AtomicU64::new(ns) });
            }
        }
    }

    fn learn_ip(&self, ip: IpAddr, mac: MacAddr, dpid: u64, port: u32, now: Instant, ns: u64) -> bool {
        // The steady state: known at the same place, a read lock and an atomic store.
        if let Some(e) = self.ips.get(&ip) {
            if e.mac == mac && e.dpid == dpid && e.port == port {
                e.last_ns.fetch_max(ns, Ordering::Relaxed);
                return true;
            }
        }
        match self.ips.entry(ip) {
            dashmap::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                if e.mac != mac || e.dpid != dpid || e.port != port {
                    e.mac = mac;
                    e.dpid = dpid;
                    e.port = port;
                    e.first_seen = now;
                    e.moves = e.moves.saturating_add(1);
                    self.moves.fetch_add(1, Ordering::Relaxed);
                }
                e.last_ns.fetch_max(ns, Ordering::Relaxed);
                true
            }
            dashmap::Entry::Vacant(v) => {
                if self.n_ips.load(Ordering::Relaxed) >= self.config.max_ips {
                    self.ips_dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                self.n_ips.fetch_add(1, Ordering::Relaxed);
                v.insert(IpEntry { mac, port, dpid, first_seen: now, last_ns: AtomicU64::new(ns), moves: 0 });
                true
            }
        }
    }

    /// Where `ip` was last seen, on any switch.
    pub fn get(&self, ip: IpAddr) -> Option<Seen> {
        self.ips.get(&ip).map(|e| Seen {
            mac: e.mac,
            port: e.port,
            dpid: e.dpid,
            first_seen: e.first_seen,
            last_seen: self.instant(e.last_ns.load(Ordering::Relaxed)),
            moves: e.moves,
        })
    }

    /// Port and MAC of `ip`, on any switch (see [`TrackerView`] for one switch).
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.ips.get(&ip).map(|e| Location { port: e.port, mac: e.mac, tun_dst: None })
    }

    /// Port and MAC of `ip` if it was last seen on switch `dpid`.
    pub fn locate_on(&self, dpid: u64, ip: IpAddr) -> Option<Location> {
        self.ips.get(&ip).filter(|e| e.dpid == dpid).map(|e| Location { port: e.port, mac: e.mac, tun_dst: None })
    }

    /// `(dpid, port)` where `mac` was last seen as a source.
    pub fn locate_mac(&self, mac: MacAddr) -> Option<(u64, u32)> {
        self.macs.get(&mac).map(|e| (e.dpid, e.port))
    }

    /// A [`Locator`] limited to the switch `dpid` (ports are per switch).
    pub fn view(&self, dpid: u64) -> TrackerView<'_> {
        TrackerView { tracker: self, dpid }
    }

    /// Number of learned IPs.
    pub fn len(&self) -> usize {
        self.n_ips.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            ips: self.n_ips.load(Ordering::Relaxed),
            macs: self.n_macs.load(Ordering::Relaxed),
            paths: self.n_paths.load(Ordering::Relaxed),
            moves: self.moves.load(Ordering::Relaxed),
            ips_dropped: self.ips_dropped.load(Ordering::Relaxed),
            macs_dropped: self.macs_dropped.load(Ordering::Relaxed),
            paths_dropped: self.paths_dropped.load(Ordering::Relaxed),
        }
    }

    /// Forgets IPs, MACs and paths not seen for `idle` or more. Returns the number of IPs removed.
    pub fn expire(&self, now: Instant, idle: Duration) -> usize {
        // Stale: not seen for `idle` or more, i.e. last <= now - idle (nothing when now - idle
        // is before the epoch).
        let Some(cutoff) = self.ns(now).checked_sub(u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX)) else {
            return 0;
        };
        let fresh = |last: u64| last > cutoff;
        let before = self.ips.len();
        self.ips.retain(|_, e| fresh(e.last_ns.load(Ordering::Relaxed)));
        let removed = before.saturating_sub(self.ips.len());
        self.n_ips.store(self.ips.len(), Ordering::Relaxed);
        self.macs.retain(|_, e| fresh(e.last_ns.load(Ordering::Relaxed)));
        self.n_macs.store(self.macs.len(), Ordering::Relaxed);
        self.paths.retain(|_, p| fresh(p.last_ns));
        self.n_paths.store(self.paths.len(), Ordering::Relaxed);
        removed
    }

    /// Forgets what was learned on one port (a pod's port removed: `daemon::node_router`).
    pub fn forget_port(&self, dpid: u64, port: u32) {
        self.ips.retain(|_, e| !(e.dpid == dpid && e.port == port));
        self.n_ips.store(self.ips.len(), Ordering::Relaxed);
        self.macs.retain(|_, e| !(e.dpid == dpid && e.port == port));
        self.n_macs.store(self.macs.len(), Ordering::Relaxed);
    }

    /// Every learned IP, sorted by IP, ages relative to `now` (for the REST API).
    pub fn snapshot(&self, now: Instant) -> Vec<SeenEntry> {
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let mut v: Vec<(IpAddr, SeenEntry)> = self
            .ips
            .iter()
            .map(|r| {
                let e = r.value();
                let last = self.instant(e.last_ns.load(Ordering::Relaxed));
                let entry = SeenEntry {
                    ip: r.key().to_string(),
                    mac: e.mac.to_string(),
                    dpid: Dpid(e.dpid),
                    port: e.port,
                    age_secs: secs(e.first_seen),
                    idle_secs: secs(last),
                    moves: e.moves,
                };
                (*r.key(), entry)
            })
            .collect();
        v.sort_by_key(|a| a.0);
        v.into_iter().map(|(_, e)| e).collect()
    }
}

/// The tracker seen from one switch: a [`Locator`] for [`crate::policy::decide`] and
/// [`crate::policy::arp::arp_answer`]. Only IPs last seen on `dpid` are located.
#[derive(Debug, Clone, Copy)]
pub struct TrackerView<'a> {
    pub tracker: &'a Tracker,
    pub dpid: u64,
}

impl Locator for TrackerView<'_> {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.tracker.locate_on(self.dpid, ip)
    }
}

/// Moved down to the policy layer (the decision machine chains locators too).
pub use crate::policy::decision::Chain;
