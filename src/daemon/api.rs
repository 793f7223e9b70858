//! The daemon's side of the REST API: called on the control runtime's blocking pool (HTTP), it
//! asks the shard that holds a switch's connection (through the mesh) and waits for the answer.
//!
//! Every wait has the request's deadline, the send into a shard's inbox included: a shard that
//! does not drain its inbox (stalled, or flooded) costs the caller [`ApiError::Timeout`] at the
//! deadline, never a thread blocked for good. [`DaemonApi::invalidate_async`] is the same fan-out
//! for callers on the runtime itself (gRPC `Invalidate`): it awaits, never blocks.

use std::sync::Arc;
use std::time::Instant;

use flume::{RecvTimeoutError, SendTimeoutError};

use shards::{Mesh, ShardId};

use crate::config::Config;
use crate::control::api::{
    ApiError, ControlApi, DeleteFilter, Dpid, FlowCommand, FlowModReply, ShardStats, SwitchInfo,
};
use crate::openflow::flow::FlowMod;
use crate::openflow::message::{GroupMod, Message, MeterMod};

use super::{primary_of, Command, CommandReply, Registry, ShardMsg};

pub struct DaemonApi {
    registry: Arc<Registry>,
    mesh: Mesh<ShardMsg>,
    cfg: Arc<Config>,
    tracker: Arc<crate::tracker::Tracker>,
}

impl DaemonApi {
    pub fn new(
        registry: Arc<Registry>,
        mesh: Mesh<ShardMsg>,
        cfg: Arc<Config>,
        tracker: Arc<crate::tracker::Tracker>,
    ) -> DaemonApi {
        DaemonApi { registry, mesh, cfg, tracker }
    }

    /// The shard to ask about `dpid`: its hash owner when that shard has a connection to it,
    /// else the lowest shard that has one.
    fn shard_for(&self, dpid: u64) -> Result<usize, ApiError> {
        primary_of(dpid, self.cfg.shards.count, &self.registry.shards_of(dpid))
            .ok_or(ApiError::UnknownSwitch(Dpid(dpid)))
    }

    fn ask(&self, dpid: u64, cmd: Command, deadline: Instant) -> Result<CommandReply, ApiError> {
        let shard = self.shard_for(dpid)?;
        let (tx, rx) = flume::bounded(1);
        self.send(shard, ShardMsg::Command { dpid, cmd, reply: tx }, deadline)?;
        match rx.recv_deadline(deadline) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(ApiError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(ApiError::Failed("shard dropped the request".into())),
        }
    }

    /// Put `msg` in shard `shard`'s inbox, waiting for room at most until `deadline`.
    fn send(&self, shard: usize, msg: ShardMsg, deadline: Instant) -> Result<(), ApiError> {
        if shard >= self.mesh.n_shards() {
            return Err(ApiError::Failed(format!("no shard {shard}")));
        }
        match self.mesh.sender(ShardId(shard)).send_deadline(msg, deadline) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(ApiError::Timeout),
            Err(SendTimeoutError::Disconnected(_)) => Err(ApiError::NotReady(format!("shard {shard} is not running"))),
        }
    }

    /// Ask every shard (`make` builds each one's message around its reply channel) and collect
    /// the answers, all by `deadline`. Every request goes out before any answer is awaited, so
    /// the shards work in parallel.
    fn broadcast<R>(&self, make: impl Fn(flume::Sender<R>) -> ShardMsg, deadline: Instant) -> Result<Vec<R>, ApiError> {
        let mut waiting = Vec::with_capacity(self.cfg.shards.count);
        for s in 0..self.cfg.shards.count {
            let (tx, rx) = flume::bounded(1);
            self.send(s, make(tx), deadline)?;
            waiting.push((s, rx));
        }
        waiting
            .into_iter()
            .map(|(s, rx)| match rx.recv_deadline(deadline) {
                Ok(r) => Ok(r),
                Err(RecvTimeoutError::Timeout) => Err(ApiError::Timeout),
                Err(RecvTimeoutError::Disconnected) => Err(ApiError::NotReady(format!("shard {s} is not running"))),
            })
            .collect()
    }

    /// [`DaemonApi::broadcast`] for callers on an async runtime (tokio, with its time driver):
    /// awaits room and answers, never blocks the thread.
    async fn broadcast_async<R>(
        &self,
        make: impl Fn(flume::Sender<R>) -> ShardMsg,
        deadline: Instant,
    ) -> Result<Vec<R>, ApiError> {
        let until = tokio::time::Instant::from_std(deadline);
        let mut waiting = Vec::with_capacity(self.cfg.shards.count);
        for s in 0..self.cfg.shards.count.min(self.mesh.n_shards()) {
            let (tx, rx) = flume::bounded(1);
            let send = self.mesh.sender(ShardId(s)).into_send_async(make(tx));
            match tokio::time::timeout_at(until, send).await {
                Ok(Ok(())) => waiting.push((s, rx)),
                Ok(Err(_)) => return Err(ApiError::NotReady(format!("shard {s} is not running"))),
                Err(_) => return Err(ApiError::Timeout),
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for (s, rx) in waiting {
            match tokio::time::timeout_at(until, rx.into_recv_async()).await {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(_)) => return Err(ApiError::NotReady(format!("shard {s} is not running"))),
                Err(_) => return Err(ApiError::Timeout),
            }
        }
        Ok(out)
    }
}

impl DaemonApi {
    fn apply(&self, dpid: Dpid, msgs: Vec<Message>, bundle: bool, deadline: Instant) -> Result<FlowModReply, ApiError> {
        match self.ask(dpid.0, Command::Apply { msgs, bundle }, deadline)? {
            CommandReply::Applied(n) => Ok(FlowModReply { applied: n, bundle }),
            CommandReply::Lines(_) => Err(ApiError::Failed("unexpected reply".into())),
        }
    }

    fn lines(&self, dpid: Dpid, cmd: Command, deadline: Instant) -> Result<Vec<String>, ApiError> {
        match self.ask(dpid.0, cmd, deadline)? {
            CommandReply::Lines(l) => Ok(l),
            CommandReply::Applied(_) => Err(ApiError::Failed("unexpected reply".into())),
        }
    }
}

impl DaemonApi {
    /// Broadcasts a policy invalidation to every shard and sums what they did (blocking, until
    /// `deadline`: for the HTTP route).
    pub fn invalidate(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: Instant,
    ) -> Result<super::Invalidated, ApiError> {
        let make = |reply| ShardMsg::Invalidate { ips: ips.clone(), below_version, all, reply };
        Ok(sum(self.broadcast(make, deadline)?))
    }

    /// [`DaemonApi::invalidate`] for the control runtime (gRPC `Invalidate`): awaits the shards
    /// until `deadline` without blocking the runtime's thread.
    pub async fn invalidate_async(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: Instant,
    ) -> Result<super::Invalidated, ApiError> {
        let make = |reply| ShardMsg::Invalidate { ips: ips.clone(), below_version, all, reply };
        Ok(sum(self.broadcast_async(make, deadline).await?))
    }
}

fn sum(parts: Vec<super::Invalidated>) -> super::Invalidated {
    parts.into_iter().fold(super::Invalidated::default(), |mut t, r| {
        t.answers_dropped += r.answers_dropped;
        t.connections_removed += r.connections_removed;
        t
    })
}

impl ControlApi for DaemonApi {
    fn ready(&self) -> Result<(), String> {
        self.registry.ready()
    }

    fn pipelines_ready(&self) -> Result<(), String> {
        self.registry.ready()?;
        self.registry.pipelines_ready()
    }

    fn switches(&self, _deadline: Instant) -> Result<Vec<SwitchInfo>, ApiError> {
        let n = self.cfg.shards.count;
        Ok(self.registry.switch_infos(|dpid, shards| primary_of(dpid, n, shards)))
    }

    fn dump_flows(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        self.lines(dpid, Command::DumpFlows, deadline)
    }

    fn dump_groups(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        self.lines(dpid, Command::DumpGroups, deadline)
    }

    fn dump_meters(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        self.lines(dpid, Command::DumpMeters, deadline)
    }

    fn group_mods(
        &self,
        dpid: Dpid,
        groups: Vec<GroupMod>,
        bundle: bool,
        deadline: Instant,
    ) -> Result<FlowModReply, ApiError> {
        self.apply(dpid, groups.into_iter().map(Message::GroupMod).collect(), bundle, deadline)
    }

    fn meter_mods(&self, dpid: Dpid, meters: Vec<MeterMod>, deadline: Instant) -> Result<FlowModReply, ApiError> {
        self.apply(dpid, meters.into_iter().map(Message::MeterMod).collect(), false, deadline)
    }

    fn flow_mods(
        &self,
        dpid: Dpid,
        _command: FlowCommand,
        flows: Vec<FlowMod>,
        bundle: bool,
        deadline: Instant,
    ) -> Result<FlowModReply, ApiError> {
        self.apply(dpid, flows.into_iter().map(Message::FlowMod).collect(), bundle, deadline)
    }

    fn delete_flows(&self, dpid: Dpid, filter: DeleteFilter, deadline: Instant) -> Result<FlowModReply, ApiError> {
        self.apply(dpid, vec![Message::FlowMod(filter.to_flow_mod())], false, deadline)
    }

    fn invalidate(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: Instant,
    ) -> Result<crate::control::api::InvalidateReply, ApiError> {
        let r = DaemonApi::invalidate(self, ips, below_version, all, deadline)?;
        Ok(crate::control::api::InvalidateReply {
            answers_dropped: r.answers_dropped,
            connections_removed: r.connections_removed,
        })
    }

    fn tracker(&self) -> Result<serde_json::Value, ApiError> {
        let now = Instant::now();
        Ok(serde_json::json!({
            "addresses": self.tracker.snapshot(now),
            "paths": self.tracker.paths(now),
            // Counts, and what the bounds (learning.max_hosts) refused.
            "stats": self.tracker.stats(),
        }))
    }

    fn shards(&self, deadline: Instant) -> Result<Vec<ShardStats>, ApiError> {
        self.broadcast(|reply| ShardMsg::Stats { reply }, deadline)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! A shard that does not answer (its inbox full, or nobody reading it): every call ends at
    //! its deadline with `Timeout`, and the async path never blocks the runtime's thread.

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::daemon::registry::ConnInfo;

    /// A one-shard daemon api whose shard never reads its inbox (of `capacity` messages, filled
    /// when `full`), with switch 1 connected to it.
    fn stalled(capacity: usize, full: bool) -> (DaemonApi, Mesh<ShardMsg>) {
        let mut cfg = Config::default();
        cfg.shards.count = 1;
        let registry = Arc::new(Registry::new(1));
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        registry.connected(1, ConnInfo { shard: 0, conn: 7, peer, connected_at: Instant::now(), n_tables: 254 });
        let mesh: Mesh<ShardMsg> = Mesh::new(1, capacity);
        if full {
            for _ in 0..capacity {
                let (tx, _rx) = flume::bounded(1);
                mesh.try_send_to(ShardId(0), ShardMsg::Stats { reply: tx }).unwrap();
            }
        }
        let tracker = Arc::new(crate::tracker::Tracker::new(crate::tracker::TrackerConfig::default()));
        (DaemonApi::new(registry, mesh.clone(), Arc::new(cfg), tracker), mesh)
    }

    /// Runs `f` on a thread; its result, or None if it has not returned within `limit` (the
    /// thread is left behind: the old blocking send never returned).
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).ok()
    }

    #[test]
    fn a_full_inbox_costs_a_timeout_at_the_deadline() {
        let (api, _mesh) = stalled(2, true);
        let api = Arc::new(api);
        let a = api.clone();
        let r = within(Duration::from_secs(5), move || {
            let start = Instant::now();
            let r = a.dump_flows(Dpid(1), start + Duration::from_millis(200));
            (r, start.elapsed())
        });
        let (r, took) = r.expect("the call blocked past its deadline (inbox full)");
        assert_eq!(r, Err(ApiError::Timeout));
        assert!(took >= Duration::from_millis(200), "answered before the deadline: {took:?}");
        let a = api.clone();
        let r = within(Duration::from_secs(5), move || a.shards(Instant::now() + Duration::from_millis(100)));
        assert_eq!(r.expect("stats blocked past the deadline"), Err(ApiError::Timeout));
        let r = within(Duration::from_secs(5), move || {
            api.invalidate(vec![], 0, true, Instant::now() + Duration::from_millis(100)).map(|_| ())
        });
        assert_eq!(r.expect("invalidate blocked past the deadline"), Err(ApiError::Timeout));
    }

    #[test]
    fn a_shard_that_never_answers_costs_a_timeout() {
        let (api, mesh) = stalled(8, false);
        let r = api.dump_flows(Dpid(1), Instant::now() + Duration::from_millis(100));
        assert_eq!(r, Err(ApiError::Timeout));
        assert_eq!(mesh.queued(ShardId(0)), 1, "the request did reach the inbox");
        assert_eq!(api.dump_flows(Dpid(9), Instant::now()), Err(ApiError::UnknownSwitch(Dpid(9))));
    }

    #[test]
    fn async_invalidate_times_out_without_blocking_the_runtime() {
        let (api, _mesh) = stalled(2, true);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let (r, during) = rt.block_on(async move {
            // Another task on the same (single) thread: it only advances if the call awaits.
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    t.fetch_add(1, Ordering::Relaxed);
                }
            });
            let before = ticks.load(Ordering::Relaxed);
            let r = api.invalidate_async(vec![], 0, true, Instant::now() + Duration::from_millis(300)).await;
            let during = ticks.load(Ordering::Relaxed) - before;
            ticker.abort();
            (r.map(|_| ()), during)
        });
        assert_eq!(r, Err(ApiError::Timeout));
        assert!(during >= 3, "the runtime's other task ran {during} times during a 300 ms wait");
    }

    #[test]
    fn grpc_invalidate_answers_deadline_exceeded() {
        use crate::control::cnictl::proto::controller_service_client::ControllerServiceClient;
        use crate::control::cnictl::proto::Invalidation as Wire;
        use crate::control::cnictl::server::{serve, Services};

        let (api, _mesh) = stalled(2, true);
        let callback = crate::daemon::invalidate_callback(Arc::new(api), Duration::from_millis(300));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, Services::new().controller(callback), async move {
                let _ = stop_rx.await;
            }));
            let mut c = ControllerServiceClient::connect(format!("http://{addr}")).await.unwrap();
            let call = c.invalidate(Wire { ips: vec!["10.0.0.1".into()], below_version: 0, all: false });
            // The server and this client share the thread: a blocking handler would stall both.
            let e = tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .expect("no answer: the handler blocked the runtime")
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
            let _ = stop_tx.send(());
            let _ = server.await;
        });
    }
}
