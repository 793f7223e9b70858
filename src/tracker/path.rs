//! Trajectories: on which switches, ports and shards the packets of a connection were seen.
//!
//! Keyed by the direction-free [`ConnKey`], so both directions of a connection share one
//! trajectory; hops are distinct `(dpid, in_port, shard)` in the order first seen, at most
//! [`TrackerConfig::max_hops`](super::TrackerConfig) of them (later new hops are counted, not
//! kept). Only IPv4/IPv6 packets are recorded. Recording takes one shard write lock: call it
//! on packet-ins (first packets), not on every packet of a flow.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::Tracker;
use crate::openflow::Dpid;
use crate::packet::FlowKey;

/// One place a connection's packets were seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub dpid: u64,
    pub in_port: u32,
    /// The shard that handled the packet-in.
    pub shard: usize,
    /// First packet seen here.
    pub at: Instant,
    /// Last packet seen here.
    pub last: Instant,
    pub packets: u64,
}

#[derive(Debug)]
pub(super) struct PathRecord {
    /// The first packet's source and destination (the initiator, as far as the tracker knows).
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    proto: u8,
    pub(super) last_ns: u64,
    hops: Vec<Hop>,
    hops_dropped: u64,
}

/// One hop, for the REST API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HopEntry {
    pub dpid: Dpid,
    pub in_port: u32,
    pub shard: usize,
    /// Seconds since the first packet at this hop.
    pub age_secs: f64,
    /// Seconds since the last packet at this hop.
    pub idle_secs: f64,
    pub packets: u64,
}

/// One connection's trajectory, for the REST API (`GET /v1/tracker/paths?src=..&dst=..`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathEntry {
    /// The first packet's source and destination, `ip:port` (`[v6]:port`); ICMP: the echo id.
    pub src: String,
    pub dst: String,
    pub proto: u8,
    pub hops: Vec<HopEntry>,
    /// New hops not kept (more than `max_hops`).
    pub hops_dropped: u64,
}

fn ep_text((ip, port): (IpAddr, u16)) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

impl Tracker {
    /// Records that a packet of `key`'s connection entered `dpid` on `in_port`, handled by
    /// `shard`. Returns false when not recorded (not IP, or the path map is full).
    pub fn record_path(&self, dpid: u64, in_port: u32, shard: usize, key: &FlowKey, now: Instant) -> bool {
        if !key.is_ip() {
            return false;
        }
        let ns = self.ns(now);
        let ck = key.conn_key();
        let max_hops = self.config.max_hops;
        let hop = Hop { dpid, in_port, shard, at: now, last: now, packets: 1 };
        // Full (the steady state under a flood of new connections): refuse with a read, not a
        // write lock, so shards do not contend on the map.
        if self.n_paths.load(Ordering::Relaxed) >= self.config.max_paths && !self.paths.contains_key(&ck) {
            self.paths_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.paths.entry(ck) {
            dashmap::Entry::Occupied(mut o) => {
                let p = o.get_mut();
                p.last_ns = p.last_ns.max(ns);
                if let Some(h) = p.hops.iter_mut().find(|h| h.dpid == dpid && h.in_port == in_port && h.shard == shard)
                {
                    h.last = h.last.max(now);
                    h.packets = h.packets.saturating_add(1);
                } else if p.hops.len() < max_hops {
                    p.hops.push(hop);
                } else {
                    p.hops_dropped = p.hops_dropped.saturating_add(1);
                }
                true
            }
            dashmap::Entry::Vacant(v) => {
                if self.n_paths.load(Ordering::Relaxed) >= self.config.max_paths {
                    self.paths_dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                self.n_paths.fetch_add(1, Ordering::Relaxed);
                let icmp = matches!(key.ip_proto, 1 | 58);
                let (sp, dp) = if icmp { (key.icmp_id, key.icmp_id) } else { (key.l4_src, key.l4_dst) };
                let mut hops = Vec::with_capacity(max_hops.min(4));
                if max_hops > 0 {
                    hops.push(hop);
                }
                v.insert(PathRecord {
                    src: (key.ip_src, sp),
                    dst: (key.ip_dst, dp),
                    proto: key.ip_proto,
                    last_ns: ns,
                    hops_dropped: u64::from(max_hops == 0),
                    hops,
                });
                true
            }
        }
    }

    /// [`learn`](Tracker::learn) and [`record_path`](Tracker::record_path) in one call: what a
    /// shard does for each packet-in.
    pub fn observe(&self, dpid: u64, in_port: u32, shard: usize, key: &FlowKey, now: Instant) {
        self.learn(dpid, in_port, key, now);
        self.record_path(dpid, in_port, shard, key, now);
    }

    /// The hops of one connection (either direction's key), in the order first seen. For the
    /// tests: operators read [`Tracker::path`].
    #[cfg(test)]
    pub(super) fn path_of(&self, key: &crate::packet::ConnKey) -> Option<Vec<Hop>> {
        self.paths.get(key).map(|p| p.hops.clone())
    }

    /// The trajectories of every connection between `ip_src` and `ip_dst` (either direction,
    /// any protocol and ports), oldest first. Scans the map: for operators, not the packet path.
    pub fn path(&self, ip_src: IpAddr, ip_dst: IpAddr, now: Instant) -> Vec<PathEntry> {
        self.collect_paths(now, |p| {
            (p.src.0 == ip_src && p.dst.0 == ip_dst) || (p.src.0 == ip_dst && p.dst.0 == ip_src)
        })
    }

    /// Every recorded trajectory, oldest first.
    pub fn paths(&self, now: Instant) -> Vec<PathEntry> {
        self.collect_paths(now, |_| true)
    }

    fn collect_paths(&self, now: Instant, keep: impl Fn(&PathRecord) -> bool) -> Vec<PathEntry> {
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let mut v: Vec<(Instant, PathEntry)> = self
            .paths
            .iter()
            .filter(|r| keep(r.value()))
            .map(|r| {
                let p = r.value();
                let first = p.hops.iter().map(|h| h.at).min().unwrap_or(now);
                let hops = p
                    .hops
                    .iter()
                    .map(|h| HopEntry {
                        dpid: Dpid(h.dpid),
                        in_port: h.in_port,
                        shard: h.shard,
                        age_secs: secs(h.at),
                        idle_secs: secs(h.last),
                        packets: h.packets,
                    })
                    .collect();
                let e = PathEntry {
                    src: ep_text(p.src),
                    dst: ep_text(p.dst),
                    proto: p.proto,
                    hops,
                    hops_dropped: p.hops_dropped,
                };
                (first, e)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.src.cmp(&b.1.src)));
        v.into_iter().map(|(_, e)| e).collect()
    }
}
