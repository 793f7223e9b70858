//! What the HTTP layer asks of the daemon: the [`ControlApi`] trait and its request and
//! response types.
//!
//! The trait's methods are blocking: the HTTP server calls them on the control runtime's
//! blocking pool (never on the runtime's thread, never on a shard), and the daemon implements
//! them by sending a request to the owning shard (flume) and waiting for the answer, both until
//! `deadline`. Keeping them blocking keeps [`crate::control::http::handle`] a plain function. The HTTP layer parses and
//! validates everything first (dpid, flow text, query), so an implementation sees only
//! well-formed requests.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message::{GroupMod, MeterMod};
use crate::pipeline::cookie::{self, Category};

// === dpid ===

/// Re-exported: the type lives with the OpenFlow codec, where the tracker and the registry can
/// use it without depending on this (edge) layer.
pub use crate::openflow::dpid::Dpid;

// === responses ===

/// One connected switch (`GET /v1/switches`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchInfo {
    pub dpid: Dpid,
    /// The shard that owns the switch's primary connection.
    pub shard: usize,
    /// The switch's address, `ip:port`.
    pub peer: String,
    /// Seconds since the handshake completed.
    pub connected_secs: u64,
    pub n_tables: u8,
    /// Number of controller connections of this switch (one per shard in fanout mode).
    pub connections: usize,
    /// Milliseconds from the handshake to the dispatch flows committed on the switch.
    #[serde(default)]
    pub pipeline_installed_ms: Option<f64>,
}

/// Per-shard statistics (`GET /v1/shards`). Fields the daemon has no value for stay 0; more
/// can be carried in `extra` without changing this type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: usize,
    /// Pinned CPU, if any.
    pub cpu: Option<usize>,
    pub switches: usize,
    pub packet_ins: u64,
    pub handoffs_in: u64,
    pub handoffs_out: u64,
    pub flow_mods: u64,
    pub flows_cached: u64,
    pub decision_p50_us: f64,
    pub decision_p99_us: f64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// What a flow-mod or delete request did (`POST`/`DELETE .../flows`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowModReply {
    /// Flow mods the switch accepted (confirmed by a barrier or bundle commit).
    pub applied: usize,
    /// Whether they went in one atomic bundle.
    pub bundle: bool,
}

/// What an invalidation did (`POST /v1/invalidate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateReply {
    pub answers_dropped: u64,
    pub connections_removed: u64,
}

// === requests ===

/// The flow-mod command of `POST .../flows?command=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

impl FromStr for FlowCommand {
    type Err = String;
    fn from_str(s: &str) -> Result<FlowCommand, String> {
        Ok(match s {
            "add" => FlowCommand::Add,
            "modify" => FlowCommand::Modify,
            "modify_strict" => FlowCommand::ModifyStrict,
            "delete" => FlowCommand::Delete,
            "delete_strict" => FlowCommand::DeleteStrict,
            _ => {
                return Err(format!("bad command {s:?}: expected add, modify, modify_strict, delete or delete_strict"))
            }
        })
    }
}

impl From<FlowCommand> for FlowModCommand {
    fn from(c: FlowCommand) -> FlowModCommand {
        match c {
            FlowCommand::Add => FlowModCommand::Add,
            FlowCommand::Modify => FlowModCommand::Modify,
            FlowCommand::ModifyStrict => FlowModCommand::ModifyStrict,
            FlowCommand::Delete => FlowModCommand::Delete,
            FlowCommand::DeleteStrict => FlowModCommand::DeleteStrict,
        }
    }
}

/// Which flows `DELETE .../flows` removes: those whose cookie matches under the mask, in
/// `table` (all tables if `None`). A zero mask matches every cookie: the HTTP layer refuses such
/// a filter (and any that can reach the daemon's own flows, see [`DeleteFilter::owned_hit`])
/// unless asked with `force=true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteFilter {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table: Option<u8>,
}

impl DeleteFilter {
    /// The equivalent non-strict DELETE flow mod (table `OFPTT_ALL` when `table` is `None`).
    pub fn to_flow_mod(&self) -> FlowMod {
        let mut fm = FlowMod::new(FlowModCommand::Delete);
        fm.cookie = self.cookie;
        fm.cookie_mask = self.cookie_mask;
        fm.table_id = self.table.unwrap_or(0xff);
        fm
    }

    /// The categories of flows the daemon owns and keeps in place (dispatch and pipeline,
    /// [`crate::pipeline::cookie`]) that this filter can delete: those whose category byte is
    /// compatible with the cookie under the mask (generation and object bits are not known here,
    /// so any value of them is assumed). Empty when the filter cannot touch them.
    pub fn owned_hit(&self) -> Vec<Category> {
        let m = self.cookie_mask & cookie::CATEGORY_MASK;
        [Category::Dispatch, Category::Pipeline]
            .into_iter()
            .filter(|c| (((*c as u64) << cookie::CATEGORY_SHIFT) & m) == (self.cookie & m))
            .collect()
    }
}

// === errors ===

/// Why the daemon could not serve a request. The HTTP layer maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 503: the daemon is starting or stopping.
    #[error("not ready: {0}")]
    NotReady(String),
    /// 404: no switch with this dpid is connected.
    #[error("unknown switch {0}")]
    UnknownSwitch(Dpid),
    /// 502: the switch answered with an OpenFlow error (`name` like `OFPBAC_BAD_OUT_PORT`).
    #[error("switch refused: {name}: {detail}")]
    Refused { name: String, detail: String },
    /// 504: no answer before the deadline.
    #[error("timed out waiting for the switch")]
    Timeout,
    /// 502: anything else between us and the switch (connection lost, shard gone).
    #[error("{0}")]
    Failed(String),
    /// 400: the request itself cannot be carried out (a flow mod over OpenFlow's 65,535 bytes).
    #[error("bad request: {0}")]
    BadRequest(String),
}

// === the trait ===

/// The daemon's side of the REST API. Called on blocking threads (several at once), never on a
/// shard nor on an async runtime's thread; each call must return by `deadline` (answer
/// [`ApiError::Timeout`] then: HTTP 504).
pub trait ControlApi: Send + Sync {
    /// `Ok(())` when the daemon serves traffic, else why not (for `/healthz`).
    fn ready(&self) -> Result<(), String>;
    /// `Ok(())` when the daemon is ready and every connected bridge has its pipeline installed
    /// and intact, else why not, naming the dpid (for `/readyz`). Defaults to [`ControlApi::ready`].
    fn pipelines_ready(&self) -> Result<(), String> {
        self.ready()
    }
    /// The connected switches.
    fn switches(&self, deadline: Instant) -> Result<Vec<SwitchInfo>, ApiError>;
    /// The switch's flows, one `ovs-ofctl dump-flows` line each.
    fn dump_flows(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError>;
    /// Send `flows` (already parsed with `command`) to the switch; with `bundle`, in one atomic
    /// bundle so that either all or none apply.
    fn flow_mods(
        &self,
        dpid: Dpid,
        command: FlowCommand,
        flows: Vec<FlowMod>,
        bundle: bool,
        deadline: Instant,
    ) -> Result<FlowModReply, ApiError>;
    /// Delete the flows selected by `filter`.
    fn delete_flows(&self, dpid: Dpid, filter: DeleteFilter, deadline: Instant) -> Result<FlowModReply, ApiError>;
    /// Per-shard statistics.
    fn shards(&self, deadline: Instant) -> Result<Vec<ShardStats>, ApiError>;
    /// Send group mods (`ovs-ofctl add-group` syntax, already parsed); with `bundle`, atomically.
    fn group_mods(
        &self,
        dpid: Dpid,
        groups: Vec<GroupMod>,
        bundle: bool,
        deadline: Instant,
    ) -> Result<FlowModReply, ApiError> {
        let _ = (dpid, groups, bundle, deadline);
        Err(ApiError::Failed("groups are not supported here".into()))
    }
    /// Send meter mods (`ovs-ofctl add-meter` syntax, already parsed).
    fn meter_mods(&self, dpid: Dpid, meters: Vec<MeterMod>, deadline: Instant) -> Result<FlowModReply, ApiError> {
        let _ = (dpid, meters, deadline);
        Err(ApiError::Failed("meters are not supported here".into()))
    }
    /// Drop cached policy answers (and the connections decided from them) about `ips`, of a
    /// version below `below_version`, or all; what cni-ctl's ControllerService.Invalidate does.
    fn invalidate(
        &self,
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        deadline: Instant,
    ) -> Result<InvalidateReply, ApiError> {
        let _ = (ips, below_version, all, deadline);
        Err(ApiError::Failed("invalidation is not supported here".into()))
    }
    /// What the Tracker has seen: addresses (IP -> MAC, switch, port) and traffic paths.
    fn tracker(&self) -> Result<serde_json::Value, ApiError> {
        Err(ApiError::Failed("no tracker here".into()))
    }
    /// The switch's groups, one `ovs-ofctl dump-groups` line each.
    fn dump_groups(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        let _ = (dpid, deadline);
        Err(ApiError::Failed("groups are not supported here".into()))
    }
    /// The switch's meters, one `ovs-ofctl dump-meters` entry each.
    fn dump_meters(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        let _ = (dpid, deadline);
        Err(ApiError::Failed("meters are not supported here".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dpid_forms() {
        assert_eq!("0000000000000001".parse::<Dpid>().unwrap(), Dpid(1));
        assert_eq!("0x1a".parse::<Dpid>().unwrap(), Dpid(0x1a));
        assert_eq!("00:00:00:00:00:00:00:ff".parse::<Dpid>().unwrap(), Dpid(0xff));
        assert_eq!("FFFFFFFFFFFFFFFF".parse::<Dpid>().unwrap(), Dpid(u64::MAX));
        for bad in ["", "0x", "xyz", "10000000000000000", "-1", "0x 1"] {
            assert!(bad.parse::<Dpid>().is_err(), "{bad:?}");
        }
        assert_eq!(Dpid(1).to_string(), "0000000000000001");
        assert_eq!(serde_json::to_string(&Dpid(0xab)).unwrap(), "\"00000000000000ab\"");
        let back: Dpid = serde_json::from_str("\"0xab\"").unwrap();
        assert_eq!(back, Dpid(0xab));
    }

    #[test]
    fn delete_filter_flow_mod() {
        let fm = DeleteFilter { cookie: 5, cookie_mask: 0xff, table: None }.to_flow_mod();
        assert_eq!(fm.command, FlowModCommand::Delete);
        assert_eq!((fm.cookie, fm.cookie_mask, fm.table_id), (5, 0xff, 0xff));
        let fm = DeleteFilter { table: Some(3), ..Default::default() }.to_flow_mod();
        assert_eq!(fm.table_id, 3);
    }

    #[test]
    fn delete_filter_owned_hit() {
        let f = |cookie, cookie_mask| DeleteFilter { cookie, cookie_mask, table: None }.owned_hit();
        // No cookie filter, or one that leaves the category free: both owned categories.
        assert_eq!(f(0, 0), vec![Category::Dispatch, Category::Pipeline]);
        assert_eq!(f(0x10, 0xff), vec![Category::Dispatch, Category::Pipeline]);
        // The category named under a full category mask.
        let cat = |c: Category| cookie::make(0, c, 0);
        assert!(f(cat(Category::Manual), cookie::CATEGORY_MASK).is_empty());
        assert!(f(cat(Category::Connection), u64::MAX).is_empty());
        assert_eq!(f(cat(Category::Pipeline), cookie::CATEGORY_MASK), vec![Category::Pipeline]);
        assert_eq!(f(cookie::make(7, Category::Dispatch, 3), u64::MAX), vec![Category::Dispatch]);
        // Part of the category byte: 0x00-0x03 includes both.
        assert_eq!(f(0, 0xfc << cookie::CATEGORY_SHIFT), vec![Category::Dispatch, Category::Pipeline]);
        assert_eq!(f(0, 0xfe << cookie::CATEGORY_SHIFT), vec![Category::Dispatch]);
    }
}
