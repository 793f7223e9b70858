//! The daemon's side of the REST API: called on the HTTP threads, it asks the shard that holds
//! a switch's connection (through the mesh) and waits for the answer until the deadline.

use std::sync::Arc;
use std::time::Instant;

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
        self.mesh
            .send_blocking_to(ShardId(shard), ShardMsg::Command { dpid, cmd, reply: tx })
            .map_err(|e| ApiError::Failed(e.to_string()))?;
        match rx.recv_deadline(deadline) {
            Ok(r) => r,
            Err(flume::RecvTimeoutError::Timeout) => Err(ApiError::Timeout),
            Err(flume::RecvTimeoutError::Disconnected) => Err(ApiError::Failed("shard dropped the request".into())),
        }
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
    /// Broadcasts a policy invalidation to every shard and sums what they did.
    pub fn invalidate(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: Instant,
    ) -> Result<super::Invalidated, ApiError> {
        let mut total = super::Invalidated::default();
        for s in 0..self.cfg.shards.count {
            let (tx, rx) = flume::bounded(1);
            let msg = ShardMsg::Invalidate { ips: ips.clone(), below_version, all, reply: tx };
            self.mesh.send_blocking_to(ShardId(s), msg).map_err(|e| ApiError::Failed(e.to_string()))?;
            match rx.recv_deadline(deadline) {
                Ok(r) => {
                    total.answers_dropped += r.answers_dropped;
                    total.connections_removed += r.connections_removed;
                }
                Err(flume::RecvTimeoutError::Timeout) => return Err(ApiError::Timeout),
                Err(_) => return Err(ApiError::NotReady(format!("shard {s} is not running"))),
            }
        }
        Ok(total)
    }
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
        }))
    }

    fn shards(&self, deadline: Instant) -> Result<Vec<ShardStats>, ApiError> {
        let mut out = Vec::new();
        for s in 0..self.cfg.shards.count {
            let (tx, rx) = flume::bounded(1);
            self.mesh
                .send_blocking_to(ShardId(s), ShardMsg::Stats { reply: tx })
                .map_err(|e| ApiError::Failed(e.to_string()))?;
            match rx.recv_deadline(deadline) {
                Ok(st) => out.push(st),
                Err(flume::RecvTimeoutError::Timeout) => return Err(ApiError::Timeout),
                Err(_) => return Err(ApiError::NotReady(format!("shard {s} is not running"))),
            }
        }
        Ok(out)
    }
}
