//! What the control thread may read about the shards without asking them: the connected
//! switches (a `DashMap`, written only on connect and disconnect, never per packet) and
//! readiness.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::control::api::{Dpid, SwitchInfo};

/// One controller connection of a switch.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub shard: usize,
    pub conn: u64,
    pub peer: SocketAddr,
    pub connected_at: Instant,
    pub n_tables: u8,
}

/// Where a switch's pipeline (the dispatch and pipeline flows the daemon owns) stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PipelineState {
    /// Connected, not installed yet (or being installed again after a reconnect).
    #[default]
    Pending,
    /// Installed, and the latest audit found it intact.
    Installed,
    /// Installing failed, or an audit found flows missing or changed: why (being repaired).
    Broken(String),
}

/// A connected switch.
#[derive(Debug, Clone, Default)]
pub struct SwitchRecord {
    pub conns: Vec<ConnInfo>,
    /// Handshake-to-dispatch-flows-committed time of the latest install.
    pub pipeline_installed_in: Option<Duration>,
    /// For `/readyz`.
    pub pipeline: PipelineState,
}

/// What a connection that just finished its handshake may do with the datapath id it claims
/// ([`Registry::claim`]).
///
/// "Another peer" is another *connection*: the same dpid on the same shard under a different
/// connection id (in fanout mode a bridge has one connection to each shard, all with its dpid:
/// that is normal). Addresses cannot tell an impostor from the bridge itself (OVS and a local
/// process both come from 127.0.0.1), so the connection already routed is asked instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds the dpid here: route it.
    Free,
    /// Connection `conn` on this shard holds it: it must prove it is gone (no echo reply within
    /// a short deadline) before the new one takes over; if it answers, the new one is refused.
    Verify { conn: u64 },
    /// In single mode a bridge has one connection in all; another shard's connection `conn`
    /// holds the dpid and cannot be asked from here: refused (the old one's own echo probe
    /// closes it if it is dead, and the bridge's next attempt gets in).
    InUse { shard: usize, conn: u64, peer: SocketAddr },
}

#[derive(Debug, Default)]
pub struct Registry {
    switches: DashMap<u64, SwitchRecord>,
    shards_up: AtomicUsize,
    n_shards: usize,
}

impl Registry {
    pub fn new(n_shards: usize) -> Registry {
        Registry { switches: DashMap::new(), shards_up: AtomicUsize::new(0), n_shards }
    }

    pub fn shard_up(&self) {
        self.shards_up.fetch_add(1, Ordering::SeqCst);
    }

    pub fn shard_down(&self) {
        self.shards_up.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn ready(&self) -> Result<(), String> {
        let up = self.shards_up.load(Ordering::SeqCst);
        if up == self.n_shards {
            Ok(())
        } else {
            Err(format!("{up} of {} shards listening", self.n_shards))
        }
    }

    /// Whether connection `conn` of `shard` may route `dpid` (see [`Claim`]). `fanout`: one
    /// connection per shard is the bridge's normal shape, so only `shard`'s own connections
    /// compete; otherwise every shard's do.
    pub fn claim(&self, dpid: u64, shard: usize, conn: u64, fanout: bool) -> Claim {
        let Some(rec) = self.switches.get(&dpid) else { return Claim::Free };
        let others = || rec.conns.iter().filter(|c| c.conn != conn || c.shard != shard);
        if let Some(c) = others().find(|c| c.shard == shard) {
            return Claim::Verify { conn: c.conn };
        }
        if !fanout {
            if let Some(c) = others().next() {
                return Claim::InUse { shard: c.shard, conn: c.conn, peer: c.peer };
            }
        }
        Claim::Free
    }

    pub fn connected(&self, dpid: u64, info: ConnInfo) {
        let mut rec = self.switches.entry(dpid).or_default();
        rec.conns.retain(|c| !(c.shard == info.shard && c.conn == info.conn));
        rec.conns.push(info);
    }

    pub fn disconnected(&self, dpid: u64, shard: usize, conn: u64) {
        let empty = match self.switches.get_mut(&dpid) {
            Some(mut rec) => {
                rec.conns.retain(|c| !(c.shard == shard && c.conn == conn));
                rec.conns.is_empty()
            }
            None => false,
        };
        if empty {
            self.switches.remove_if(&dpid, |_, r| r.conns.is_empty());
        }
    }

    pub fn pipeline_installed(&self, dpid: u64, took: Duration) {
        if let Some(mut rec) = self.switches.get_mut(&dpid) {
            rec.pipeline_installed_in = Some(took);
            rec.pipeline = PipelineState::Installed;
        }
    }

    /// Records where `dpid`'s pipeline stands (the installing shard: on connect, after each
    /// audit and repair). Written only when it changes: no write per audit of a healthy switch.
    pub fn pipeline_state(&self, dpid: u64, state: PipelineState) {
        let same = self.switches.get(&dpid).is_some_and(|r| r.pipeline == state);
        if !same {
            if let Some(mut rec) = self.switches.get_mut(&dpid) {
                rec.pipeline = state;
            }
        }
    }

    /// The installing shard's connection `conn` to `dpid` closed: unless `shard` has another
    /// connection to it by now (it reconnected), nobody keeps the pipeline in place, so it is
    /// pending again (the switch may still be listed through other shards' connections).
    pub fn pipeline_unwatched(&self, dpid: u64, shard: usize, conn: u64) {
        if let Some(mut rec) = self.switches.get_mut(&dpid) {
            if !rec.conns.iter().any(|c| c.shard == shard && c.conn != conn) {
                rec.pipeline = PipelineState::Pending;
            }
        }
    }

    /// `Ok(())` when every connected switch has its pipeline installed and intact; else the
    /// switches that do not, by dpid, and why. (No switch connected is ready: the daemon cannot
    /// know of bridges that never connected.)
    pub fn pipelines_ready(&self) -> Result<(), String> {
        let mut bad: Vec<(u64, String)> = self
            .switches
            .iter()
            .filter_map(|e| match &e.value().pipeline {
                PipelineState::Installed => None,
                PipelineState::Pending => Some((*e.key(), "pipeline not installed yet".to_string())),
                PipelineState::Broken(why) => Some((*e.key(), format!("pipeline broken: {why}"))),
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        bad.sort();
        Err(bad.iter().map(|(d, why)| format!("switch {d:016x}: {why}")).collect::<Vec<_>>().join("; "))
    }

    /// The shards that have a connection to `dpid`, in shard order.
    pub fn shards_of(&self, dpid: u64) -> Vec<usize> {
        let mut v: Vec<usize> =
            self.switches.get(&dpid).map(|r| r.conns.iter().map(|c| c.shard).collect()).unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn switch_infos(&self, primary_shard: impl Fn(u64, &[usize]) -> Option<usize>) -> Vec<SwitchInfo> {
        let mut out: Vec<SwitchInfo> = self
            .switches
            .iter()
            .filter_map(|e| {
                let dpid = *e.key();
                let rec = e.value();
                let shards: Vec<usize> = rec.conns.iter().map(|c| c.shard).collect();
                let shard = primary_shard(dpid, &shards)?;
                let c = rec.conns.iter().find(|c| c.shard == shard)?;
                Some(SwitchInfo {
                    dpid: Dpid(dpid),
                    shard,
                    peer: c.peer.to_string(),
                    connected_secs: c.connected_at.elapsed().as_secs(),
                    n_tables: c.n_tables,
                    connections: rec.conns.len(),
                    pipeline_installed_ms: rec.pipeline_installed_in.map(|d| d.as_secs_f64() * 1e3),
                })
            })
            .collect();
        out.sort_by_key(|s| s.dpid);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(shard: usize, conn: u64) -> ConnInfo {
        ConnInfo {
            shard,
            conn,
            peer: SocketAddr::from(([127, 0, 0, 1], 1000 + conn as u16)),
            connected_at: Instant::now(),
            n_tables: 254,
        }
    }

    #[test]
    fn readiness_follows_each_switchs_pipeline() {
        let r = Registry::new(2);
        assert!(r.pipelines_ready().is_ok(), "no switch: nothing to wait for");
        r.connected(1, info(0, 10));
        r.connected(1, info(1, 11));
        r.connected(2, info(0, 20));
        let e = r.pipelines_ready().unwrap_err();
        assert!(e.contains("switch 0000000000000001: pipeline not installed yet"), "{e}");
        assert!(e.contains("switch 0000000000000002"), "{e}");
        r.pipeline_installed(1, Duration::from_millis(3));
        r.pipeline_installed(2, Duration::from_millis(3));
        assert!(r.pipelines_ready().is_ok());
        r.pipeline_state(2, PipelineState::Broken("1 missing (e.g. table=3 ...)".into()));
        let e = r.pipelines_ready().unwrap_err();
        assert_eq!(e, "switch 0000000000000002: pipeline broken: 1 missing (e.g. table=3 ...)");
        r.pipeline_state(2, PipelineState::Installed);
        assert!(r.pipelines_ready().is_ok());

        // The installing shard's connection goes; another shard's stays: pending.
        r.disconnected(1, 0, 10);
        r.pipeline_unwatched(1, 0, 10);
        assert!(r.pipelines_ready().unwrap_err().contains("0000000000000001: pipeline not installed yet"));
        // It came back before the old audit noticed: the new one's state is kept.
        r.connected(1, info(0, 12));
        r.pipeline_installed(1, Duration::from_millis(3));
        r.pipeline_unwatched(1, 0, 10);
        assert!(r.pipelines_ready().is_ok());
        // A switch gone entirely is not waited for.
        r.disconnected(2, 0, 20);
        assert!(r.pipelines_ready().is_ok());
    }

    #[test]
    fn a_second_connection_for_a_dpid_on_a_shard_must_verify_the_first() {
        let r = Registry::new(2);
        assert_eq!(r.claim(1, 0, 10, true), Claim::Free);
        r.connected(1, info(0, 10));
        // The routed connection itself (a repeated Ready) is not competing with itself.
        assert_eq!(r.claim(1, 0, 10, true), Claim::Free);
        // Fanout: the bridge's connection to another shard is normal.
        assert_eq!(r.claim(1, 1, 11, true), Claim::Free);
        // Same shard, another connection: the first one is asked.
        assert_eq!(r.claim(1, 0, 12, true), Claim::Verify { conn: 10 });
        assert_eq!(r.claim(1, 0, 12, false), Claim::Verify { conn: 10 });
        // Single mode: another shard's connection holds the dpid.
        assert_eq!(
            r.claim(1, 1, 11, false),
            Claim::InUse { shard: 0, conn: 10, peer: SocketAddr::from(([127, 0, 0, 1], 1010)) }
        );
        // Another dpid is free.
        assert_eq!(r.claim(2, 0, 12, false), Claim::Free);
    }

    #[test]
    fn a_disconnect_removes_only_its_own_connection() {
        let r = Registry::new(2);
        r.connected(1, info(0, 10));
        r.connected(1, info(1, 11));
        // A connection that was never routed (a refused impostor) leaving changes nothing.
        r.disconnected(1, 0, 99);
        assert_eq!(r.shards_of(1), vec![0, 1]);
        assert_eq!(r.claim(1, 0, 12, true), Claim::Verify { conn: 10 });
        // The takeover: the old one is dropped, the new one routed; the old one's late
        // disconnect leaves the new one in place.
        r.disconnected(1, 0, 10);
        r.connected(1, info(0, 12));
        r.disconnected(1, 0, 10);
        assert_eq!(r.shards_of(1), vec![0, 1]);
        assert_eq!(r.claim(1, 0, 13, true), Claim::Verify { conn: 12 });
        r.disconnected(1, 0, 12);
        r.disconnected(1, 1, 11);
        assert!(r.shards_of(1).is_empty());
        assert_eq!(r.claim(1, 0, 13, false), Claim::Free);
    }
}
