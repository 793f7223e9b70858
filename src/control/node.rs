//! The node agent, on the control runtime (tokio): keeps the node's bridge as the daemon needs
//! it and tells the shards what its ports are.
//!
//! On every connection to OVSDB it makes sure of the bridge ([`crate::node::ovsdb_bridge`]:
//! nothing is written when it is already right), monitors Bridge/Port/Interface, and on each
//! change builds the [`NodeView`] ([`crate::node::ovsdb_rows`]) and sends a [`NodeUpdate`]
//! (the view and its difference to the last view *sent*) into a bounded channel. The first
//! update is sent even when it holds no port; later ones only when the view changed. When the
//! channel is full the agent waits (the shards are behind; changes meanwhile fold into the next
//! view, nothing is lost since each update carries the diff to the last one sent).
//!
//! The connection is retried with a backoff (0.1 s doubling to 5 s, back to 0.1 s once
//! connected); after a reconnection (an ovsdb-server restart) the bridge is ensured again, the
//! tables read again, and the difference to the last view sent goes out. A missing socket is
//! not fatal: the daemon serves OpenFlow meanwhile.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::config::{Config, ConfigError, DatapathType};
use crate::control::metrics::MetricsError;
use crate::control::signal::ShutdownSignal;
use crate::node::ovsdb_bridge::{self, BridgeSpec, Current};
use crate::node::ovsdb_rows::{self, Malformed};
use crate::node::{NodeUpdate, NodeView};
use crate::ovsdb::{Client, OvsdbAddr, OvsdbError, VSWITCH_DB};

/// First retry delay after a lost or failed connection.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often the agent sends OVSDB an `echo` while nothing else happens (an answer is due
/// within the client's call deadline, 10 s, else the connection counts as lost).
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// What the agent needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgentConfig {
    pub addr: OvsdbAddr,
    pub bridge: String,
    pub datapath_type: DatapathType,
    /// The daemon's own OpenFlow listeners, as controller targets.
    pub controllers: Vec<String>,
}

impl NodeAgentConfig {
    /// From the daemon's configuration; `None` when `[node] ovsdb = "none"`. `rundir` is
    /// `OVS_RUNDIR`.
    pub fn from_config(cfg: &Config, rundir: Option<&str>) -> Result<Option<NodeAgentConfig>, ConfigError> {
        let Some(addr) = cfg.node.address(rundir)? else { return Ok(None) };
        Ok(Some(NodeAgentConfig {
            addr,
            bridge: cfg.node.bridge.clone(),
            datapath_type: cfg.node.datapath_type,
            controllers: controller_targets(cfg),
        }))
    }
}

/// The controller targets of the daemon's OpenFlow listeners: one per shard in fan-out mode,
/// one in single mode; `ssl:` when `[openflow]` has TLS. A wildcard listen address is reached
/// on loopback.
pub fn controller_targets(cfg: &Config) -> Vec<String> {
    let scheme = if cfg.openflow.tls_cert.is_some() { "ssl" } else { "tcp" };
    let ip = match cfg.openflow.listen {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    };
    cfg.openflow_ports()
        .into_iter()
        .map(|p| match ip {
            IpAddr::V4(a) => format!("{scheme}:{a}:{p}"),
            IpAddr::V6(a) => format!("{scheme}:[{a}]:{p}"),
        })
        .collect()
}

// === metrics ===

/// The agent's metrics.
#[derive(Clone)]
pub struct NodeMetrics {
    /// `shardflow_ovsdb_connected`: 1 while connected to OVSDB.
    pub connected: IntGauge,
    /// `shardflow_ovsdb_reconnects_total`: connection attempts after a failure or a loss.
    pub reconnects: IntCounter,
    /// `shardflow_node_updates_total`: NodeUpdates sent to the shards.
    pub updates: IntCounter,
    /// `shardflow_ovsdb_transact_errors_total`: transactions that failed (bridge upkeep).
    pub transact_errors: IntCounter,
    /// `shardflow_node_malformed_ports_total`: interfaces left out for bad pod metadata or role
    /// (counted once each time one turns malformed).
    pub malformed_ports: IntCounter,
    /// `shardflow_ovsdb_refused_total{cause}`: what the OVSDB connection refused at a bound
    /// (`frame_too_large`, `cache_full`, `protocol`, `pending_full`).
    pub refused: IntCounterVec,
}

impl NodeMetrics {
    pub fn register(registry: &Registry) -> Result<NodeMetrics, MetricsError> {
        let connected = IntGauge::new("ovsdb_connected", "1 while the node agent is connected to OVSDB")?;
        let reconnects = IntCounter::new("ovsdb_reconnects_total", "OVSDB connection attempts after a failure")?;
        let updates = IntCounter::new("node_updates_total", "Node updates (port changes) sent to the shards")?;
        let transact_errors = IntCounter::new("ovsdb_transact_errors_total", "OVSDB transactions that failed")?;
        let malformed_ports =
            IntCounter::new("node_malformed_ports_total", "Interfaces left out for malformed external_ids")?;
        let refused = IntCounterVec::new(
            Opts::new("ovsdb_refused_total", "What the OVSDB connection refused at a bound"),
            &["cause"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        registry.register(Box::new(transact_errors.clone()))?;
        registry.register(Box::new(malformed_ports.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(NodeMetrics { connected, reconnects, updates, transact_errors, malformed_ports, refused })
    }

    fn count_refusals(&self, c: &Client) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = c.stats();
        for (cause, n) in [
            ("frame_too_large", s.frames_too_large.load(Relaxed)),
            ("cache_full", s.cache_full.load(Relaxed)),
            ("protocol", s.protocol_errors.load(Relaxed)),
            ("pending_full", s.pending_refused()),
        ] {
            if n > 0 {
                self.refused.with_label_values(&[cause]).inc_by(n);
            }
        }
    }
}

// === the agent ===

/// Starts the agent on `rt`; it ends on `shutdown` or when the receiver is dropped.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    cfg: NodeAgentConfig,
    tx: flume::Sender<NodeUpdate>,
    metrics: NodeMetrics,
    shutdown: ShutdownSignal,
) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        tokio::select! {
            _ = run(cfg, tx, metrics) => {}
            _ = shutdown.wait() => {}
        }
    })
}

/// Why a connection's session ended.
enum End {
    Lost(OvsdbError),
    /// The shards' receiver is gone: nobody to tell.
    ReceiverGone,
}

impl From<OvsdbError> for End {
    fn from(e: OvsdbError) -> Self {
        End::Lost(e)
    }
}

/// State kept across connections.
struct Agent {
    cfg: NodeAgentConfig,
    tx: flume::Sender<NodeUpdate>,
    metrics: NodeMetrics,
    /// The last view sent to the shards (None before the first).
    last_sent: Option<Arc<NodeView>>,
    /// Interfaces already warned about as malformed (those malformed now).
    warned: BTreeSet<String>,
}

/// The agent's loop: connect, serve the connection, back off, again.
pub async fn run(cfg: NodeAgentConfig, tx: flume::Sender<NodeUpdate>, metrics: NodeMetrics) {
    let mut agent = Agent { cfg, tx, metrics, last_sent: None, warned: BTreeSet::new() };
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    loop {
        let mut connected = false;
        match agent.session(&mut connected).await {
            End::ReceiverGone => {
                tracing::info!("node agent stopped: the shards no longer take node updates");
                return;
            }
            End::Lost(e) => {
                agent.metrics.connected.set(0);
                let text = e.to_string();
                if text != last_error {
                    tracing::warn!(ovsdb = %agent.cfg.addr, "node agent: {text}; retrying");
                } else {
                    tracing::debug!(ovsdb = %agent.cfg.addr, "node agent: {text}; retrying");
                }
                last_error = text;
            }
        }
        if connected {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        agent.metrics.reconnects.inc();
    }
}

impl Agent {
    /// One connection: ensure the bridge, monitor, send views until the connection ends.
    async fn session(&mut self, connected: &mut bool) -> End {
        let mut client = match Client::connect(&self.cfg.addr).await {
            Ok(c) => c,
            Err(e) => return End::Lost(e),
        };
        *connected = true;
        self.metrics.connected.set(1);
        tracing::info!(ovsdb = %self.cfg.addr, bridge = %self.cfg.bridge, "node agent connected to OVSDB");
        let end = self.serve(&mut client).await;
        self.metrics.count_refusals(&client);
        end
    }

    async fn serve(&mut self, client: &mut Client) -> End {
        if let Err(e) = self.ensure_bridge(client).await {
            return End::Lost(e);
        }
        let mut monitor = match client.monitor(VSWITCH_DB, ovsdb_rows::MONITORED).await {
            Ok(m) => m,
            Err(e) => return End::Lost(e),
        };
        let mut tables = monitor.current();
        let mut probe = tokio::time::interval_at(tokio::time::Instant::now() + PROBE_EVERY, PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match ovsdb_rows::node_view(&tables, &self.cfg.bridge) {
                Some((view, malformed)) => {
                    self.warn_malformed(&malformed);
                    if let Err(end) = self.send(view).await {
                        return end;
                    }
                }
                None => {
                    // Deleted under us (`ovs-vsctl del-br`): put it back.
                    tracing::warn!(bridge = %self.cfg.bridge, "the node's bridge is gone from OVSDB; creating it again");
                    if let Err(e) = self.ensure_bridge(client).await {
                        return End::Lost(e);
                    }
                }
            }
            tables = loop {
                tokio::select! {
                    t = monitor.changed() => match t {
                        Ok(t) => break t,
                        Err(e) => return End::Lost(e),
                    },
                    // A TCP peer that vanished without a FIN is only found by asking.
                    _ = probe.tick() => {
                        if let Err(e) = client.call("echo", serde_json::json!([])).await {
                            return End::Lost(e);
                        }
                    }
                }
            };
        }
    }

    /// Reads the bridge and writes what differs (nothing when it is right).
    async fn ensure_bridge(&self, client: &Client) -> Result<(), OvsdbError> {
        let read = client.transact(VSWITCH_DB, ovsdb_bridge::read_ops(&self.cfg.bridge)).await;
        let cur = read.and_then(|r| Current::from_results(&r)).inspect_err(|_| self.metrics.transact_errors.inc())?;
        let datapath_type = match self.cfg.datapath_type {
            DatapathType::System => "system",
            DatapathType::Netdev => "netdev",
            DatapathType::Auto => {
                ovsdb_bridge::auto_datapath(&cur, std::path::Path::new("/sys/module/openvswitch").exists())
            }
        };
        let spec = BridgeSpec {
            name: self.cfg.bridge.clone(),
            datapath_type: datapath_type.to_string(),
            controllers: self.cfg.controllers.clone(),
        };
        let ops = ovsdb_bridge::ensure_ops(&spec, &cur);
        if ops.is_empty() {
            tracing::info!(bridge = %spec.name, "the node's bridge is as the daemon needs it");
            return Ok(());
        }
        client.transact(VSWITCH_DB, ops).await.inspect_err(|_| self.metrics.transact_errors.inc())?;
        tracing::info!(
            bridge = %spec.name,
            datapath_type,
            controllers = ?spec.controllers,
            created = cur.bridge.is_none(),
            "the node's bridge set up (OpenFlow13, fail_mode=secure, out-of-band controllers)"
        );
        Ok(())
    }

    /// Warns once per interface that turns malformed, and counts it.
    fn warn_malformed(&mut self, malformed: &[Malformed]) {
        let now: BTreeSet<String> = malformed.iter().map(|m| m.interface.clone()).collect();
        for m in malformed {
            if !self.warned.contains(&m.interface) {
                self.metrics.malformed_ports.inc();
                tracing::warn!(interface = %m.interface, "port left out of the node's view: {}", m.reason);
            }
        }
        self.warned = now;
    }

    /// Sends the view and its difference to the last one sent, if it changed (the first always).
    async fn send(&mut self, view: NodeView) -> Result<(), End> {
        let empty = NodeView::default();
        let before = self.last_sent.as_deref().unwrap_or(&empty);
        if self.last_sent.is_some() && *before == view {
            return Ok(());
        }
        let changes = before.diff(&view);
        let view = Arc::new(view);
        tracing::debug!(changes = changes.len(), ports = view.ports.len(), "node update");
        let update = NodeUpdate { view: view.clone(), changes };
        self.tx.send_async(update).await.map_err(|_| End::ReceiverGone)?;
        self.metrics.updates.inc();
        self.last_sent = Some(view);
        Ok(())
    }
}
