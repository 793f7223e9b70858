//! The daemon: pinned glommio shards serving switch connections, a control thread (tokio) with
//! the HTTP endpoint, and the messages between them.
//!
//! Start-up order matters: the configuration is validated and every port probed before anything
//! binds; the control plane comes next (so a signal during start-up is honoured); then the shards.

mod accept;
mod api;
mod conn;
pub mod decider;
mod heal;
mod io;
mod live;
mod meter_sync;
mod node_metrics;
mod node_router;
mod packet_in_budget;
mod registry;
mod reload;
mod shard;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use shards::{shard_of, Mesh, Pool, PoolConfig, ShardId};

use crate::config::{Config, ConfigError, Mode};
use crate::control::api::ApiError;
use crate::control::metrics::Metrics;
use crate::control::signal::{ShutdownReason, ShutdownSignal, ShutdownTrigger};
use crate::control::ControlPlane;
use crate::openflow::message::Message;
use crate::packet::ConnKey;

pub use conn::OpError;
pub use registry::Registry;
pub use shard::{conn_key_text, flow_stats_line};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("control plane: {0}")]
    Control(String),
    #[error("shards: {0}")]
    Shards(String),
    #[error("{0}")]
    Fatal(String),
}

impl DaemonError {
    /// sysexits-style status: 64 for configuration errors, 70 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(e) => e.exit_code(),
            _ => 70,
        }
    }
}

/// A packet-in of a connection that another shard owns (single-connection mode).
#[derive(Debug, Clone)]
pub struct Handoff {
    pub from: ShardId,
    pub conn: u64,
    pub dpid: u64,
    pub key: ConnKey,
    /// What the owner needs to decide (when the pipeline is configured).
    pub packet: Option<Box<HandoffPacket>>,
}

/// The packet-in itself, for the owner's decision.
#[derive(Debug, Clone)]
pub struct HandoffPacket {
    pub dpid: u64,
    pub flow: crate::packet::FlowKey,
    /// `ConnKey::hash64` of the flow, computed once where the packet-in arrived.
    pub conn_hash: u64,
    /// The paused packet-in (`first_packet = "resume"`): sent back as NXT_RESUME after the
    /// flows instead of a PACKET_OUT.
    pub paused: Option<Box<crate::openflow::message::PacketIn2>>,
    pub in_port: u32,
    pub ct_state: u32,
    pub data: Vec<u8>,
}

/// An operation the control thread asks of the shard that holds a switch's connection.
#[derive(Debug)]
pub enum Command {
    /// Flow, group or meter mods, confirmed by a barrier (or atomically in a bundle).
    Apply {
        msgs: Vec<Message>,
        bundle: bool,
    },
    DumpFlows,
    DumpGroups,
    DumpMeters,
}

#[derive(Debug)]
pub enum CommandReply {
    Applied(usize),
    /// Lines as `ovs-ofctl dump-flows` / `dump-groups` / `dump-meters` print them.
    Lines(Vec<String>),
}

/// What travels between shards, and from the control thread to a shard.
pub enum ShardMsg {
    Handoff(Handoff),
    /// The owner's answer to a handoff: messages to send on connection `conn` of the receiver.
    Answer {
        conn: u64,
        messages: Vec<Message>,
        /// The decided connection, kept by the receiving shard (it holds the switch connection
        /// its flows are restored on).
        decided: Option<Box<crate::policy::Decided>>,
    },
    Command {
        dpid: u64,
        cmd: Command,
        reply: flume::Sender<Result<CommandReply, ApiError>>,
    },
    Stats {
        reply: flume::Sender<crate::control::api::ShardStats>,
    },
    /// The node's bridge changed (pods came or went, ports got a role): every shard takes the
    /// new view (its decider locates the pods, its cached answers and connections about
    /// removed pods go); the shard that installs the bridge's pipeline sends the change.
    Node(Arc<node_router::NodeApplied>),
    /// cni-ctl's answers changed: drop cached answers and the flows installed from them.
    Invalidate {
        ips: Vec<std::net::IpAddr>,
        below_version: u64,
        all: bool,
        reply: flume::Sender<Invalidated>,
    },
}

/// What an invalidation did on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Invalidated {
    pub answers_dropped: u64,
    pub connections_removed: u64,
}

/// What every shard and the control thread share (all of it `Sync`, none of it locked on the
/// packet path).
pub struct Shared {
    pub cfg: Arc<Config>,
    /// `ssl:` on every shard listener (`[openflow] tls_*`), client certificates required.
    pub of_tls: Option<Arc<rustls::ServerConfig>>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub mesh: Mesh<ShardMsg>,
    pub shutdown: ShutdownSignal,
    trigger: ShutdownTrigger,
    /// Cookie generation of this run.
    pub generation: u16,
    /// The flows every switch gets: the default pipeline (when configured) and the dispatch.
    pub desired: Vec<crate::openflow::flow::FlowMod>,
    /// Where Packet-In decisions get their policy answers.
    pub answers: Arc<crate::policy::PolicySource>,
    /// Where MACs and IPs were seen (shared by the shards: lock-free reads on the packet path).
    pub tracker: Arc<crate::tracker::Tracker>,
    /// Switch connections each shard serves at once: `openflow.max_switch_connections`,
    /// lowered to fit the file-descriptor limit.
    pub max_switch_connections: usize,
    /// The pipeline audit's counters.
    pub heal: heal::HealMetrics,
    /// Pods installed and removed as the node changes.
    pub node_metrics: node_metrics::NodeMetrics,
    fatal_reason: std::sync::OnceLock<String>,
}

impl Shared {
    pub fn listen_addr(&self, shard: usize) -> SocketAddr {
        match self.cfg.openflow.mode {
            Mode::Fanout => self.cfg.openflow_addr(shard),
            // One port: every shard binds it (SO_REUSEPORT) and the kernel spreads connections.
            Mode::Single => self.cfg.openflow_addr(0),
        }
    }

    /// Whether `shard`'s connection to `dpid` installs the switch's pipeline: in fan-out mode the
    /// dpid's owner (every shard has a connection to it), in single mode the one connection.
    pub fn installs_pipeline(&self, dpid: u64, shard: usize) -> bool {
        match self.cfg.openflow.mode {
            Mode::Fanout => shard_of(dpid_hash(dpid), self.cfg.shards.count) == shard,
            Mode::Single => true,
        }
    }

    /// Stops the daemon from inside (a shard that cannot listen).
    pub fn fatal(&self, why: String) {
        tracing::error!("{why}");
        let _ = self.fatal_reason.set(why);
        self.trigger.trigger(ShutdownReason::Fatal);
    }
}

/// The policy source of the configuration: the embedded allow-all default, a policy file (read
/// before any port is bound, so a bad file stops the start; indexed here), or cni-ctl (a gRPC
/// client on the control runtime).
fn policy_source(
    cfg: &Config,
    runtime: tokio::runtime::Handle,
    file: Option<crate::policy::PolicyFile>,
    tls: Option<crate::control::cnictl::tls::TlsFiles>,
    metrics: &Metrics,
) -> Result<Arc<crate::policy::PolicySource>, DaemonError> {
    use crate::config::PolicySourceKind;
    use crate::control::cnictl::{ClientConfig, PolicyClient};
    use crate::policy::{PolicyFile, PolicySource};
    let p = &cfg.policy;
    Ok(Arc::new(match p.source {
        PolicySourceKind::Embedded => PolicySource::Embedded,
        PolicySourceKind::File => {
            let file = match file {
                Some(f) => f,
                None => {
                    let path = p.file.as_ref().ok_or_else(|| DaemonError::Fatal("policy.file is missing".into()))?;
                    PolicyFile::load(path).map_err(|e| {
                        DaemonError::Config(ConfigError::Invalid { key: "policy.file".into(), reason: e.to_string() })
                    })?
                }
            };
            PolicySource::from_file(file)
        }
        PolicySourceKind::Cnictl => {
            let endpoint = p.cnictl.clone().ok_or_else(|| DaemonError::Fatal("policy.cnictl is missing".into()))?;
            let cc = ClientConfig {
                endpoint,
                deadline: std::time::Duration::from_millis(p.timeout_ms),
                tls,
                tls_server_name: p.tls_server_name.clone(),
                ..ClientConfig::default()
            };
            let client =
                PolicyClient::new(cc, runtime).map_err(|e| DaemonError::Fatal(format!("cni-ctl client: {e}")))?;
            // Its statistics on /metrics (`shardflow_cnictl_*`), read at each scrape.
            crate::control::cnictl::metrics::CnictlMetrics::register(metrics.registry(), client.handle())
                .map_err(|e| DaemonError::Metrics(e.to_string()))?;
            client.source()
        }
    }))
}

/// How many node updates may wait for the shards (each holds a whole view: a reader that falls
/// behind only delays the agent, which folds later changes into its next update).
pub const NODE_UPDATES_BOUND: usize = 16;

/// Starts the node agent on the control runtime when `[node] ovsdb` is not "none"; returns the
/// receiving end of its updates.
fn start_node_agent(
    control: &ControlPlane,
    metrics: &Metrics,
    agent: Option<crate::control::node::NodeAgentConfig>,
) -> Result<Option<flume::Receiver<crate::node::NodeUpdate>>, DaemonError> {
    let Some(agent) = agent else {
        tracing::info!("node management off ([node] ovsdb = \"none\")");
        return Ok(None);
    };
    let node_metrics = crate::control::node::NodeMetrics::register(metrics.registry())
        .map_err(|e| DaemonError::Metrics(e.to_string()))?;
    let (tx, node_updates) = flume::bounded::<crate::node::NodeUpdate>(NODE_UPDATES_BOUND);
    tracing::info!(ovsdb = %agent.addr, bridge = %agent.bridge, "node agent starting");
    crate::control::node::spawn(&control.runtime(), agent, tx, node_metrics, control.shutdown_signal());
    Ok(Some(node_updates))
}

/// The Tracker's expiry scans its maps: it runs on the control runtime, never on a shard. Its
/// sizes and refusals (`learning.max_hosts`) go to `/metrics` every second.
fn expire_tracker_off_the_shards(
    control: &ControlPlane,
    tracker: Arc<crate::tracker::Tracker>,
    metrics: &Metrics,
) -> Result<(), DaemonError> {
    use prometheus::{IntCounter, IntGauge};
    let m = |e: prometheus::Error| DaemonError::Metrics(e.to_string());
    let hosts = IntGauge::new("tracker_hosts", "IP addresses the Tracker knows").map_err(m)?;
    let refused = IntCounter::new(
        "tracker_hosts_refused_total",
        "New IPs and MACs the Tracker did not learn because it was full (learning.max_hosts)",
    )
    .map_err(m)?;
    metrics.registry().register(Box::new(hosts.clone())).map_err(m)?;
    metrics.registry().register(Box::new(refused.clone())).map_err(m)?;
    let signal = control.shutdown_signal();
    control.runtime().spawn(async move {
        let tick = async {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                n += 1;
                if n % 5 == 0 {
                    tracker.expire(std::time::Instant::now(), TRACKER_IDLE);
                }
                let s = tracker.stats();
                hosts.set(s.ips as i64);
                let total = s.ips_dropped + s.macs_dropped;
                refused.inc_by(total.saturating_sub(refused.get()));
            }
        };
        tokio::select! {
            _ = tick => {}
            _ = signal.wait() => {}
        }
    });
    Ok(())
}

/// Addresses and paths the Tracker has not seen for this long are forgotten.
const TRACKER_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// How long an `Invalidate` call may take to reach every shard and collect their answers.
pub const INVALIDATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// The gRPC status of a failed invalidation: no answer in time is `DEADLINE_EXCEEDED` (cni-ctl
/// may retry: invalidating twice is harmless), a daemon not running is `UNAVAILABLE`.
pub fn invalidate_status(e: &ApiError) -> tonic::Status {
    match e {
        ApiError::Timeout => tonic::Status::deadline_exceeded(e.to_string()),
        ApiError::NotReady(_) => tonic::Status::unavailable(e.to_string()),
        _ => tonic::Status::internal(e.to_string()),
    }
}

/// `ControllerService/Invalidate` served by `api`: each call awaits every shard's answer for at
/// most `deadline`, then fails with `DEADLINE_EXCEEDED`.
pub fn invalidate_callback(
    api: Arc<api::DaemonApi>,
    deadline: std::time::Duration,
) -> crate::control::cnictl::server::InvalidateFn {
    use crate::control::cnictl::server::InvalidationReply;
    Arc::new(move |inv| {
        let api = api.clone();
        Box::pin(async move {
            let until = std::time::Instant::now() + deadline;
            match api.invalidate_async(inv.ips, inv.below_version, inv.all, until).await {
                Ok(r) => Ok(InvalidationReply { dropped: r.answers_dropped, flows_deleted: r.connections_removed }),
                Err(e) => {
                    tracing::warn!("invalidation failed: {e}");
                    Err(invalidate_status(&e))
                }
            }
        })
    })
}

/// Serves cni-ctl's ControllerService (invalidations) on the control runtime: the handler
/// awaits the shards (with [`INVALIDATE_DEADLINE`]), it never blocks the runtime.
fn serve_controller_service(
    control: &ControlPlane,
    addr: SocketAddr,
    api: Arc<api::DaemonApi>,
    tls: Option<crate::control::cnictl::tls::TlsFiles>,
) -> Result<(), DaemonError> {
    use crate::control::cnictl::server::{serve_with_tls, Services};
    let std_listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| DaemonError::Config(ConfigError::bind("policy.listen", addr, e)))?;
    let callback = invalidate_callback(api, INVALIDATE_DEADLINE);
    let signal = control.shutdown_signal();
    let rt = control.runtime();
    rt.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("ControllerService: {e}");
                return;
            }
        };
        tracing::info!(%addr, tls = tls.is_some(), "serving cni-ctl's ControllerService (invalidations)");
        let services = Services::new().controller(callback);
        if let Err(e) = serve_with_tls(listener, services, tls.as_ref(), async move { signal.wait().await }).await {
            tracing::error!("ControllerService stopped: {e}");
        }
    });
    Ok(())
}

/// The flows of [`desired_flows`] as `ovs-ofctl` text.
pub fn desired_texts(cfg: &Config, generation: u16) -> Vec<String> {
    let (mode, n) = (cfg.openflow.mode, cfg.shards.count);
    match &cfg.pipeline {
        Some(p) => crate::pipeline::default::flow_texts_mode(p, mode, n, generation),
        None => crate::pipeline::dispatch::flow_texts(mode, n, generation),
    }
}

/// What the daemon keeps on every switch: the default pipeline when `[pipeline]` is configured
/// (it includes the packet-in dispatch), else the dispatch alone.
pub fn desired_flows(cfg: &Config, generation: u16) -> Result<Vec<crate::openflow::flow::FlowMod>, String> {
    let (mode, n) = (cfg.openflow.mode, cfg.shards.count);
    match &cfg.pipeline {
        Some(p) => crate::pipeline::default::generate_mode(p, mode, n, generation).map_err(|e| e.to_string()),
        None => crate::pipeline::dispatch::flows(mode, n, generation).map_err(|e| e.to_string()),
    }
}

/// The shard that speaks for `dpid` (REST commands, `/v1/switches`): its owner (jump hash of the
/// dpid) when that shard has a connection to it, else the lowest shard in `connected`.
pub fn primary_of(dpid: u64, n_shards: usize, connected: &[usize]) -> Option<usize> {
    let owner = shard_of(dpid_hash(dpid), n_shards);
    if connected.contains(&owner) {
        Some(owner)
    } else {
        connected.iter().copied().min()
    }
}

/// A stable hash of a datapath id (for the owner of a switch).
pub fn dpid_hash(dpid: u64) -> u64 {
    crate::packet::key::fmix64(dpid)
}

/// Raises the soft file-descriptor limit to the hard one (logged) and returns the per-shard
/// switch connection cap that sits well below it (see [`accept::cap_for_fd_limit`]).
fn connection_cap(cfg: &Config) -> usize {
    let configured = cfg.openflow.max_switch_connections;
    let nofile = match shards::fd_limit::raise_to_hard() {
        Ok(l) => {
            if l.soft_before != l.soft {
                tracing::info!(
                    from = l.soft_before,
                    to = l.soft,
                    "raised the open-file limit (RLIMIT_NOFILE) to the hard limit"
                );
            } else {
                tracing::info!(limit = l.soft, hard = l.hard, "open-file limit (RLIMIT_NOFILE)");
            }
            l.soft
        }
        Err(e) => {
            let soft = shards::fd_limit::current().unwrap_or(1024);
            tracing::warn!(limit = soft, "cannot raise the open-file limit: {e}");
            soft
        }
    };
    let cap = accept::cap_for_fd_limit(configured, nofile, cfg.shards.count);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            nofile,
            "openflow.max_switch_connections lowered to fit the open-file limit ({cap} per shard)"
        );
    }
    cap
}

/// Runs the daemon until SIGTERM/SIGINT or a fatal error. The node agent (`[node] ovsdb`, unless
/// "none") follows the node's bridge in OVSDB and its updates install and remove pods.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    run_inner(cfg, None)
}

/// [`run`] for a daemon embedded in another program that follows the node itself: the node's
/// updates come from `updates` (bounded by its sender), and no node agent is started.
pub fn run_with_node(cfg: Config, updates: flume::Receiver<crate::node::NodeUpdate>) -> Result<(), DaemonError> {
    run_inner(cfg, Some(updates))
}

fn run_inner(cfg: Config, given_updates: Option<flume::Receiver<crate::node::NodeUpdate>>) -> Result<(), DaemonError> {
    cfg.validate()?;
    // No [pipeline] section: the zero-config pipeline (docs/pipeline.md), unless
    // learning.zero_config = false (the packet-in dispatch alone, as before).
    let mut cfg = cfg;
    if cfg.pipeline.is_none() && cfg.learning.zero_config {
        cfg.pipeline = Some(crate::pipeline::default::PipelineConfig::zero_config());
    }
    // A bad policy file is a configuration error too: found before any port is bound. Read
    // once, here (a million rules take seconds).
    let policy_file = match (cfg.policy.source, &cfg.policy.file) {
        (crate::config::PolicySourceKind::File, Some(path)) => Some(
            crate::policy::PolicyFile::load(path)
                .map_err(|e| ConfigError::Invalid { key: "policy.file".into(), reason: e.to_string() })?,
        ),
        _ => None,
    };
    // The gRPC TLS files too: read and checked before any port is bound.
    let policy_tls = match cfg.policy.tls_paths()? {
        Some(paths) => Some(
            crate::control::cnictl::tls::TlsFiles::load(&paths)
                .map_err(|e| ConfigError::Invalid { key: e.key().to_string(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let of_tls = match cfg.openflow.tls_paths()? {
        Some((cert, key, ca)) => Some(
            tls::server_config(&cert, &key, &ca)
                .map_err(|e| ConfigError::Invalid { key: e.key().to_string(), reason: e.to_string() })?,
        ),
        None => None,
    };
    // The node agent's OVSDB address (or none): a bad one is a configuration error, found here.
    let node_agent = match given_updates {
        Some(_) => None,
        None => crate::control::node::NodeAgentConfig::from_config(&cfg, std::env::var("OVS_RUNDIR").ok().as_deref())?,
    };
    cfg.check_ports_free()?;
    let cfg = Arc::new(cfg);
    let n = cfg.shards.count;
    let max_switch_connections = connection_cap(&cfg);
    let metrics = Arc::new(Metrics::new().map_err(|e| DaemonError::Metrics(e.to_string()))?);
    let heal = heal::HealMetrics::register(&metrics).map_err(|e| DaemonError::Metrics(e.to_string()))?;
    let node_metrics =
        node_metrics::NodeMetrics::register(&metrics).map_err(|e| DaemonError::Metrics(e.to_string()))?;
    let registry = Arc::new(Registry::new(n));
    let mesh: Mesh<ShardMsg> = Mesh::new(n, 4096);
    // The cookie generation is a hash of what this configuration installs: a restart with the
    // same configuration re-installs byte-identical flows (nothing changes on the switch), a
    // changed one marks the old flows as stale.
    let generation = crate::pipeline::resync::generation_of(&desired_texts(&cfg, 0));
    let desired = desired_flows(&cfg, generation).map_err(DaemonError::Fatal)?;
    // What of it could run in hardware (offload::report), until a REST report refreshes it.
    let offload = crate::offload::report::analyze(&crate::offload::Profile::default_profile(), &desired);
    metrics.set_offloadable_ratios(offload.tables.iter().map(|t| (t.table, t.share.ratio)));
    // The control plane needs the API, the API needs the shutdown signal of the control plane:
    // the API learns the shared state once it exists.
    let hosts = cfg.learning.max_hosts;
    let tracker = Arc::new(crate::tracker::Tracker::new(crate::tracker::TrackerConfig {
        max_ips: hosts,
        max_macs: hosts,
        ..crate::tracker::TrackerConfig::default()
    }));
    let api = Arc::new(api::DaemonApi::new(registry.clone(), mesh.clone(), cfg.clone(), tracker.clone()));
    let control =
        ControlPlane::start(&cfg, metrics.clone(), api.clone()).map_err(|e| DaemonError::Control(e.to_string()))?;
    tracing::info!(http = %control.http_addr(), shards = n, mode = %cfg.openflow.mode, "shardflow starting");

    if let Some(addr) = cfg.policy.listen {
        serve_controller_service(&control, addr, api.clone(), policy_tls.clone())?;
    }
    expire_tracker_off_the_shards(&control, tracker.clone(), &metrics).inspect_err(|_| control.shutdown())?;
    let node_updates = match given_updates {
        Some(rx) => Some(rx),
        None => start_node_agent(&control, &metrics, node_agent).inspect_err(|_| control.shutdown())?,
    };
    let answers = policy_source(&cfg, control.runtime(), policy_file, policy_tls, &metrics)
        .inspect_err(|_| control.shutdown())?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        of_tls,
        metrics,
        registry,
        mesh,
        shutdown: control.shutdown_signal(),
        trigger: control.shutdown_trigger(),
        generation,
        desired,
        answers,
        tracker: tracker.clone(),
        max_switch_connections,
        heal,
        node_metrics,
        fatal_reason: std::sync::OnceLock::new(),
    });
    match (node_updates, &cfg.pipeline) {
        (Some(updates), Some(base)) => {
            let router = node_router::NodeRouter::new(
                base.clone(),
                cfg.openflow.mode,
                n,
                generation,
                cfg.learning.max_pods,
                shared.desired.clone(),
            );
            node_router::route(
                &control.runtime(),
                control.shutdown_signal(),
                updates,
                router,
                shared.mesh.clone(),
                tracker.clone(),
                shared.node_metrics.clone(),
            );
        }
        (Some(updates), None) => {
            tracing::info!("learning.zero_config = false and no [pipeline]: the node's pods are not installed");
            node_router::drain(&control.runtime(), control.shutdown_signal(), updates, tracker.clone());
        }
        (None, _) => {}
    }
    if let (Some(cell), Some(path)) = (shared.answers.file(), &cfg.policy.file) {
        reload::start(
            cell.clone(),
            path.clone(),
            shared.metrics.registry(),
            &control.runtime(),
            control.shutdown_signal(),
        )
        .map_err(DaemonError::Fatal)
        .inspect_err(|_| control.shutdown())?;
    }
    let pool_cfg = PoolConfig {
        shards: n,
        cpus: cfg.shards.cpus.clone(),
        io_memory: cfg.shards.io_memory,
        spin_before_park: cfg.shards.spin_before_park(),
        name: "shardflow".to_string(),
    };
    let pool = {
        let shared = shared.clone();
        Pool::start(&pool_cfg, move |ctx| shard::main(ctx, shared.clone()))
    };
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            control.shutdown();
            let _ = control.join();
            return Err(DaemonError::Shards(e.to_string()));
        }
    };
    let pool_result = pool.join();
    // The shards end only on shutdown; make sure the control plane follows.
    control.shutdown();
    let reason = control.join().map_err(|e| DaemonError::Control(e.to_string()))?;
    pool_result.map_err(|e| DaemonError::Shards(e.to_string()))?;
    tracing::info!("shardflow stopped: {reason:?}");
    match reason {
        ShutdownReason::Fatal => {
            Err(DaemonError::Fatal(shared.fatal_reason.get().cloned().unwrap_or_else(|| "fatal error".into())))
        }
        _ => Ok(()),
    }
}
