//! Daemon configuration: defaults, then a TOML file, then `SHARDFLOW_*` environment variables,
//! then command-line flags (each layer overrides the one before).
//!
//! The configuration is validated before any port is bound ([`Config::validate`]), and the ports
//! are probed ([`Config::check_ports_free`]) because glommio's listener always sets
//! `SO_REUSEPORT`: a second daemon on the same ports would otherwise bind silently and steal half
//! of the switch connections.
//!
//! # The default configuration, as a file
//!
//! Every key is optional; unknown keys are errors (a typo must not be silently ignored).
//!
//! ```toml
//! [shards]
//! # Number of thread-per-core executors. Default: the number of available cores.
//! count = 2
//! # Pin shard i to cpus[i]. Default: unpinned. Must list `count` distinct, existing CPUs.
//! # cpus = [0, 1]
//! # Spin this long before parking an idle executor: lowers cross-core wake-up latency
//! # (~100 us -> ~20 us) at the cost of CPU. Default: park at once.
//! # spin_before_park_us = 50
//! # Locked memory glommio registers per executor, in bytes (at least 512 KiB; a service unit
//! # needs LimitMEMLOCK >= this times `count`).
//! io_memory = 1048576
//! # Live connections each shard remembers: ~180 bytes each, resident from the start (no page
//! # faults on the packet path); past it one is evicted (shardflow_connections_evicted_total).
//! max_connections = 229376
//!
//! [openflow]
//! listen = "127.0.0.1"
//! # "fanout": shard i listens on base_port + i (OVS connects to every port);
//! # "single": one port, packet-ins are handed to the shard that owns the connection.
//! base_port = 6653
//! mode = "fanout"
//! echo_interval_secs = 5
//! request_timeout_secs = 10
//! # Bytes queued to one switch above which the daemon stops reading from it; closed if it
//! # stays above for output_stall_timeout_secs (a peer that does not read cannot grow us).
//! output_high_water = 4194304
//! output_stall_timeout_secs = 10
//! # Switch connections per shard; more are refused (lowered at start to fit the fd limit).
//! max_switch_connections = 512
//! # Bytes one multipart reply (a flow dump, all parts) may reassemble to.
//! multipart_max_bytes = 67108864
//!
//! [http]
//! # Metrics (/metrics), health (/healthz) and the REST API (/v1/...).
//! listen = "127.0.0.1:9464"
//! max_connections = 256     # more are answered 503 and closed (counted)
//! max_in_flight = 16        # REST requests handled at once (health and metrics have their own lane)
//! header_timeout_ms = 5000  # time to send a request head (and idle time of a kept-alive connection)
//!
//! [log]
//! # A level (trace, debug, info, warn, error) or a tracing filter ("info,shardflow=debug").
//! level = "info"
//! format = "plain"   # or "json"
//!
//! [learning]
//! # Without a [pipeline] section: the zero-config pipeline (true) or the dispatch alone (false).
//! zero_config = true
//! max_pods = 1024     # pods from OVSDB per bridge; more refused (node_pods_refused_total)
//! max_hosts = 65536   # addresses the Tracker learns; more not learned until others expire
//!
//! [node]
//! # The OVSDB server whose bridge the daemon keeps (unix:PATH or tcp:IP:PORT), or "none".
//! # Default: unix:$OVS_RUNDIR/db.sock when OVS_RUNDIR is set, else unix:/var/run/openvswitch/db.sock.
//! # ovsdb = "unix:/var/run/openvswitch/db.sock"
//! bridge = "br-int"
//! datapath_type = "auto"   # or "system", "netdev"
//! ```
//!
//! # Environment variables
//!
//! `SHARDFLOW_SHARDS` (or `SHARDFLOW_SHARDS_COUNT`), `SHARDFLOW_SHARDS_CPUS` ("0,1" or "0-3"),
//! `SHARDFLOW_SHARDS_SPIN_BEFORE_PARK_US`, `SHARDFLOW_SHARDS_IO_MEMORY`, `SHARDFLOW_SHARDS_MAX_CONNECTIONS`,
//! `SHARDFLOW_OPENFLOW_LISTEN`, `SHARDFLOW_OPENFLOW_BASE_PORT`, `SHARDFLOW_OPENFLOW_MODE`,
//! `SHARDFLOW_OPENFLOW_ECHO_INTERVAL_SECS`, `SHARDFLOW_OPENFLOW_REQUEST_TIMEOUT_SECS`,
//! `SHARDFLOW_OPENFLOW_OUTPUT_HIGH_WATER`, `SHARDFLOW_OPENFLOW_OUTPUT_STALL_TIMEOUT_SECS`,
//! `SHARDFLOW_OPENFLOW_MAX_SWITCH_CONNECTIONS`, `SHARDFLOW_OPENFLOW_MULTIPART_MAX_BYTES`,
//! `SHARDFLOW_HTTP_LISTEN`, `SHARDFLOW_HTTP_MAX_CONNECTIONS`, `SHARDFLOW_HTTP_MAX_IN_FLIGHT`,
//! `SHARDFLOW_HTTP_HEADER_TIMEOUT_MS`, `SHARDFLOW_LEARNING_ZERO_CONFIG`, `SHARDFLOW_LEARNING_MAX_PODS`,
//! `SHARDFLOW_LEARNING_MAX_HOSTS`, `SHARDFLOW_LOG_LEVEL`, `SHARDFLOW_LOG_FORMAT`,
//! `SHARDFLOW_NODE_OVSDB`, `SHARDFLOW_NODE_BRIDGE`, `SHARDFLOW_NODE_DATAPATH_TYPE`, and
//! `SHARDFLOW_CONFIG` (the file, see [`config_path`]). Any other `SHARDFLOW_*` variable is an
//! error, like an unknown key in the file.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// glommio refuses to start an executor with less locked memory than this.
pub const MIN_IO_MEMORY: usize = 512 * 1024;
/// Upper bound on the number of shards: the packet-in dispatch (controller ids) defines it.
pub use crate::pipeline::dispatch::MAX_SHARDS;
/// Conventional exit status for a configuration error (`EX_USAGE` would be 64, `EX_CONFIG` 78;
/// the style guide asks for 64).
pub const EXIT_CONFIG: i32 = 64;
/// Exit status when a port is taken (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

// === errors ===

/// Why a configuration could not be loaded or is not acceptable. Every variant names the key
/// (or variable, or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {reason}")]
    Env { var: String, value: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key}: port {addr} is already in use (another shardflow running?): {source}")]
    PortInUse { key: String, addr: SocketAddr, source: std::io::Error },
    /// EADDRNOTAVAIL: the address is not one of this host's (a typo, or another machine's).
    #[error("{key}: address {} is not available on this host (no interface has it): {source}", .addr.ip())]
    AddrNotAvailable { key: String, addr: SocketAddr, source: std::io::Error },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    /// A listener that could not bind `addr`: "not available on this host" for
    /// EADDRNOTAVAIL, "already in use" otherwise.
    pub fn bind(key: impl Into<String>, addr: SocketAddr, source: std::io::Error) -> Self {
        let key = key.into();
        match source.kind() {
            std::io::ErrorKind::AddrNotAvailable => ConfigError::AddrNotAvailable { key, addr, source },
            _ => ConfigError::PortInUse { key, addr, source },
        }
    }

    /// The process exit status a daemon should use for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::PortInUse { .. } | ConfigError::AddrNotAvailable { .. } => EXIT_UNAVAILABLE,
            _ => EXIT_CONFIG,
        }
    }
}

// === enums ===

pub use crate::pipeline::dispatch::Mode;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?}, expected \"plain\" or \"json\"")),
        }
    }
}

// === sections ===

/// `[shards]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardsConfig {
    /// Number of executors (default: available cores).
    pub count: usize,
    /// Optional CPU per shard; `cpus[i]` pins shard i.
    pub cpus: Option<Vec<usize>>,
    /// Optional busy-wait before an idle executor parks, in microseconds.
    pub spin_before_park_us: Option<u64>,
    /// Locked memory per executor for glommio's registered buffers, in bytes.
    pub io_memory: usize,
    /// Live connections each shard remembers (decided flows to restore, counters); reserved and
    /// touched when the shard starts (~180 bytes each), so the table never rehashes nor faults
    /// pages in later. Past it the record under the clock hand is evicted (counted); its flows
    /// stay on the switch until their idle timeout.
    pub max_connections: usize,
}

/// Default `shards.max_connections`: the most a 2^18-bucket index holds at its load factor
/// (7/8). The table is resident from the start: ~37 MB of slots + ~4 MB of index per shard.
pub const DEFAULT_MAX_CONNECTIONS: usize = 229_376;

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig {
            count: available_cores(),
            cpus: None,
            spin_before_park_us: None,
            io_memory: 1 << 20,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ShardsConfig {
    /// `spin_before_park_us` as a duration, for `LocalExecutorBuilder::spin_before_park`.
    pub fn spin_before_park(&self) -> Option<Duration> {
        self.spin_before_park_us.map(Duration::from_micros)
    }
}

/// `[openflow]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenflowConfig {
    pub listen: IpAddr,
    pub base_port: u16,
    pub mode: Mode,
    pub echo_interval_secs: u64,
    pub request_timeout_secs: u64,
    /// Bytes queued for one switch connection above which the daemon stops reading from it
    /// (a peer that does not read its answers cannot grow the daemon).
    pub output_high_water: usize,
    /// How long a connection may stay above `output_high_water` before it is closed
    /// (`shardflow_openflow_connections_closed_total{cause="output_stalled"}`).
    pub output_stall_timeout_secs: u64,
    /// Switch connections each shard serves at once; more are refused
    /// (`shardflow_openflow_connections_refused_total{cause="cap"}`). Lowered at start to fit
    /// the file-descriptor limit.
    pub max_switch_connections: usize,
    /// Bytes one multipart reply may reassemble to (all parts); past it the request fails.
    pub multipart_max_bytes: usize,
    /// `ssl:` controllers (docs/security.md): the shards' certificate chain (PEM). With
    /// `tls_key` and `tls_ca`, every shard listener speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) every switch's certificate must chain to (OVS: `ovs-pki`'s switchca).
    pub tls_ca: Option<PathBuf>,
}

impl OpenflowConfig {
    /// `(cert, key, ca)` when TLS is configured; one or two of them alone is an error.
    pub fn tls_paths(&self) -> Result<Option<(PathBuf, PathBuf, PathBuf)>, ConfigError> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => Ok(None),
            (Some(c), Some(k), Some(a)) => Ok(Some((c.clone(), k.clone(), a.clone()))),
            (c, k, _) => {
                let key = if c.is_none() {
                    "openflow.tls_cert"
                } else if k.is_none() {
                    "openflow.tls_key"
                } else {
                    "openflow.tls_ca"
                };
                Err(ConfigError::invalid(key, "TLS needs tls_cert, tls_key and tls_ca together"))
            }
        }
    }
}

impl Default for OpenflowConfig {
    fn default() -> Self {
        OpenflowConfig {
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 6653,
            mode: Mode::Fanout,
            echo_interval_secs: 5,
            request_timeout_secs: 10,
            output_high_water: DEFAULT_OUTPUT_HIGH_WATER,
            output_stall_timeout_secs: 10,
            max_switch_connections: DEFAULT_MAX_SWITCH_CONNECTIONS,
            multipart_max_bytes: DEFAULT_MULTIPART_MAX_BYTES,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

/// Default `openflow.output_high_water`: 4 MiB queued per switch connection.
pub const DEFAULT_OUTPUT_HIGH_WATER: usize = 4 << 20;
/// Default `openflow.max_switch_connections` per shard (a node has a few bridges; each
/// connects once to every shard in fan-out mode).
pub const DEFAULT_MAX_SWITCH_CONNECTIONS: usize = 512;
/// Default `openflow.multipart_max_bytes`: 64 MiB for one reassembled reply (a flow dump).
pub const DEFAULT_MULTIPART_MAX_BYTES: usize = 64 << 20;
/// The smallest `openflow.output_high_water`: one largest OpenFlow message and some.
pub const MIN_OUTPUT_HIGH_WATER: usize = 128 << 10;

impl OpenflowConfig {
    pub fn echo_interval(&self) -> Duration {
        Duration::from_secs(self.echo_interval_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
    pub fn output_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.output_stall_timeout_secs)
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the metrics/health/REST endpoint. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// HTTP connections open at once (at least 1); more are answered 503 and closed.
    pub max_connections: usize,
    /// REST requests handled at once (at least 1); `/healthz`, `/readyz`, `/metrics` have their own lane.
    pub max_in_flight: usize,
    /// Time a client has to send a request head (at least 1 ms).
    pub header_timeout_ms: u64,
    /// Bearer-token authentication of the REST API (docs/security.md). `false` opens every
    /// route to anyone who can reach the port (a warning at start).
    pub auth: bool,
    /// File holding the REST token (mode 0600 or 0640; read at start). `SHARDFLOW_HTTP_TOKEN`
    /// wins over it; without either a token is generated into the state directory.
    pub token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464),
            max_connections: 256,
            max_in_flight: 16,
            header_timeout_ms: 5000,
            auth: true,
            token_file: None,
        }
    }
}

impl HttpConfig {
    /// The HTTP server's bounds.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections.max(1),
            max_in_flight: self.max_in_flight.max(1),
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level or a `tracing_subscriber::EnvFilter` directive.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".to_string(), format: LogFormat::Plain }
    }
}

/// Where Packet-In decisions get their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicySourceKind {
    /// Allow everything (Kubernetes without NetworkPolicies).
    #[default]
    Embedded,
    /// A local policy file (`policy.file`).
    File,
    /// cni-ctl over gRPC (`policy.cnictl`).
    Cnictl,
}

/// `[policy]`: used when the `[pipeline]` section is present (decisions install flows into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub source: PolicySourceKind,
    pub file: Option<PathBuf>,
    /// cni-ctl's address, e.g. `http://127.0.0.1:50051`.
    pub cnictl: Option<String>,
    /// Deadline of one cni-ctl query, milliseconds.
    pub timeout_ms: u64,
    /// When cni-ctl cannot be reached: allow (true) or drop (false, the default).
    pub fail_open: bool,
    /// Idle timeout of an allowed connection's flows, seconds.
    pub conn_idle_timeout: u16,
    /// Idle timeout of a denied connection's drop flow, seconds.
    pub deny_idle_timeout: u16,
    /// Packets waiting for cni-ctl, per shard, beyond which new ones are dropped (and counted).
    pub max_pending: usize,
    /// Where to serve cni-ctl's ControllerService (invalidations), e.g. `127.0.0.1:50052`.
    pub listen: Option<SocketAddr>,
    /// Mutual TLS on both gRPC links (docs/security.md): this daemon's certificate chain (PEM),
    /// shown to cni-ctl and to ControllerService's clients. Set with `tls_key` and `tls_ca`.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM). Without it both links are plaintext.
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that cni-ctl's server certificate and ControllerService's client
    /// certificates must chain to.
    pub tls_ca: Option<PathBuf>,
    /// The name cni-ctl's certificate must carry, when not the host of `cnictl`.
    pub tls_server_name: Option<String>,
}

/// Where the three PEM files of a mutual-TLS identity are, and the names of the settings they
/// came from (for errors). Read by `control::cnictl::tls::TlsFiles::load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Setting names for errors, in the order cert, key, ca.
    pub names: [&'static str; 3],
}

impl PolicyConfig {
    /// The TLS files of `[policy]`: none (plaintext) or all three; one or two alone is an error.
    pub fn tls_paths(&self) -> Result<Option<TlsPaths>, ConfigError> {
        let names = ["policy.tls_cert", "policy.tls_key", "policy.tls_ca"];
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => {
                Ok(Some(TlsPaths { cert: cert.clone(), key: key.clone(), ca: ca.clone(), names }))
            }
            (cert, key, ca) => {
                let missing = [cert.is_none(), key.is_none(), ca.is_none()];
                let i = missing.iter().position(|m| *m).unwrap_or(0);
                Err(ConfigError::invalid(names[i], "TLS needs tls_cert, tls_key and tls_ca together"))
            }
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            source: PolicySourceKind::Embedded,
            file: None,
            cnictl: None,
            timeout_ms: 200,
            fail_open: false,
            conn_idle_timeout: 300,
            deny_idle_timeout: 10,
            max_pending: 10_000,
            listen: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

/// `[learning]`: what the daemon does on a node without a `[pipeline]` section, and the bounds
/// of what it learns from the node (pods from OVSDB, hosts from traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningConfig {
    /// Without `[pipeline]`: install the zero-config pipeline (learning ports, every new
    /// connection decided by the policy; docs/pipeline.md "Zero-config"), or, when false, only
    /// the packet-in dispatch (another controller or the operator owns the tables).
    pub zero_config: bool,
    /// Pods from the node's database installed per bridge; more are refused and counted
    /// (`shardflow_node_pods_refused_total`).
    pub max_pods: usize,
    /// Addresses (IPs, and MACs) the Tracker learns from traffic; more are not learned until
    /// older ones expire (`/v1/tracker` stats `ips_dropped`, `macs_dropped`).
    pub max_hosts: usize,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig { zero_config: true, max_pods: 1024, max_hosts: 65_536 }
    }
}

/// `[node].datapath_type`: the datapath of the node's bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatapathType {
    /// `system` when the kernel datapath is there (the `openvswitch` module is loaded and
    /// ovs-vswitchd offers it), else `netdev` (the userspace datapath); an existing bridge keeps
    /// a datapath that can work here.
    #[default]
    Auto,
    System,
    Netdev,
}

impl FromStr for DatapathType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DatapathType::Auto),
            "system" => Ok(DatapathType::System),
            "netdev" => Ok(DatapathType::Netdev),
            _ => Err(format!("unknown datapath type {s:?}, expected \"auto\", \"system\" or \"netdev\"")),
        }
    }
}

/// `[node]`: the node's bridge, kept by the daemon through OVSDB (docs/config.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The OVSDB server (`unix:PATH` or `tcp:IP:PORT`), or `"none"` to leave the node alone.
    /// Unset: `unix:$OVS_RUNDIR/db.sock` when `OVS_RUNDIR` is set, else
    /// `unix:/var/run/openvswitch/db.sock`.
    pub ovsdb: Option<String>,
    /// The bridge the daemon makes sure of and whose ports it follows.
    pub bridge: String,
    pub datapath_type: DatapathType,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { ovsdb: None, bridge: "br-int".to_string(), datapath_type: DatapathType::Auto }
    }
}

/// Longest interface name Linux takes (IFNAMSIZ - 1): the bridge's internal port carries its name.
pub const MAX_BRIDGE_NAME: usize = 15;

impl NodeConfig {
    /// The OVSDB address to use, or `None` when node management is off (`ovsdb = "none"`).
    /// `rundir` is `OVS_RUNDIR` (passed in, so tests stay hermetic).
    pub fn address(&self, rundir: Option<&str>) -> Result<Option<crate::ovsdb::OvsdbAddr>, ConfigError> {
        match self.ovsdb.as_deref().map(str::trim) {
            Some("none") => Ok(None),
            Some(a) => crate::ovsdb::OvsdbAddr::parse(a)
                .map(Some)
                .map_err(|e| ConfigError::invalid("node.ovsdb", format!("{e}, or \"none\""))),
            None => Ok(Some(crate::ovsdb::OvsdbAddr::default_for(rundir))),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.address(None)?;
        let b = &self.bridge;
        if b.is_empty() || b.len() > MAX_BRIDGE_NAME {
            return Err(ConfigError::invalid(
                "node.bridge",
                format!("{b:?} must be 1 to {MAX_BRIDGE_NAME} characters (an interface name)"),
            ));
        }
        if b.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) || b == "." || b == ".." {
            return Err(ConfigError::invalid("node.bridge", format!("{b:?} is not a valid interface name")));
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub shards: ShardsConfig,
    pub openflow: OpenflowConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// The default pipeline (docs/pipeline.md). Without this section the daemon installs the
    /// zero-config pipeline, or with `learning.zero_config = false` only the packet-in dispatch
    /// (every table miss reaches the shards).
    pub pipeline: Option<crate::pipeline::default::PipelineConfig>,
    pub policy: PolicyConfig,
    pub learning: LearningConfig,
    pub node: NodeConfig,
}

/// Command-line overrides; the CLI fills this from clap. `None` leaves the value alone.
/// (`config` is the file; pass it to [`Config::load`] via [`config_path`].)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub shards: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    pub listen: Option<IpAddr>,
    pub base_port: Option<u16>,
    pub mode: Option<Mode>,
    pub http: Option<SocketAddr>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// `--zero-config true|false` (`learning.zero_config`).
    pub zero_config: Option<bool>,
    /// `--ovsdb`: `[node] ovsdb`.
    pub ovsdb: Option<String>,
}

/// The config file to read: `--config` if given, else `SHARDFLOW_CONFIG`, else none.
pub fn config_path(env: &[(String, String)], flags: &Overrides) -> Option<PathBuf> {
    flags
        .config
        .clone()
        .or_else(|| env.iter().rev().find(|(k, _)| k == "SHARDFLOW_CONFIG").map(|(_, v)| PathBuf::from(v)))
}

/// `shards.cpus`, `SHARDFLOW_SHARDS_CPUS`, `--cpus`: [`shards::parse_cpu_list`] (order kept,
/// shard i gets the i-th CPU), with the configuration's refusal of an empty list.
pub fn cpu_list_setting(s: &str) -> Result<Vec<usize>, String> {
    match shards::parse_cpu_list(s) {
        Ok(v) if v.is_empty() => Err("empty CPU list".to_string()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// Number of cores this process may run on (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// CPUs that exist and are online: `/sys/devices/system/cpu/online`, else `0..available_cores`.
pub fn online_cpus() -> BTreeSet<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| shards::parse_cpu_set(&s).ok().filter(|v| !v.is_empty()))
        .map(|v| v.into_iter().collect())
        .unwrap_or_else(|| (0..available_cores()).collect())
}

// === impl Config ===

impl Config {
    /// Build the configuration: defaults < `file` (TOML) < `SHARDFLOW_*` in `env` < `flags`.
    /// `env` is passed in (not read here) so tests stay hermetic; the daemon passes
    /// `std::env::vars().collect::<Vec<_>>()`. Does not validate: call [`Config::validate`].
    pub fn load(file: Option<&Path>, env: &[(String, String)], flags: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                Config::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.apply_flags(flags);
        Ok(cfg)
    }

    /// Parse TOML text over the defaults. The error message names the key (toml's own text).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The default configuration as TOML (what `shardflow config --default` could print).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (var, value) in env {
            let Some(key) = var.strip_prefix("SHARDFLOW_") else { continue };
            let bad = |reason: String| ConfigError::Env { var: var.clone(), value: value.clone(), reason };
            let v = value.trim();
            match key {
                "CONFIG" => {}
                "SHARDS" | "SHARDS_COUNT" => self.shards.count = parse_num(v).map_err(bad)?,
                "SHARDS_CPUS" => self.shards.cpus = Some(cpu_list_setting(v).map_err(bad)?),
                "SHARDS_SPIN_BEFORE_PARK_US" => self.shards.spin_before_park_us = Some(parse_num(v).map_err(bad)?),
                "SHARDS_IO_MEMORY" => self.shards.io_memory = parse_num(v).map_err(bad)?,
                "SHARDS_MAX_CONNECTIONS" => self.shards.max_connections = parse_num(v).map_err(bad)?,
                "OPENFLOW_LISTEN" => {
                    self.openflow.listen = v.parse().map_err(|_| bad("not an IP address".to_string()))?
                }
                "OPENFLOW_BASE_PORT" => self.openflow.base_port = parse_num(v).map_err(bad)?,
                "OPENFLOW_MODE" => self.openflow.mode = v.parse().map_err(bad)?,
                "OPENFLOW_ECHO_INTERVAL_SECS" => self.openflow.echo_interval_secs = parse_num(v).map_err(bad)?,
                "OPENFLOW_REQUEST_TIMEOUT_SECS" => self.openflow.request_timeout_secs = parse_num(v).map_err(bad)?,
                "OPENFLOW_OUTPUT_HIGH_WATER" => self.openflow.output_high_water = parse_num(v).map_err(bad)?,
                "OPENFLOW_OUTPUT_STALL_TIMEOUT_SECS" => {
                    self.openflow.output_stall_timeout_secs = parse_num(v).map_err(bad)?
                }
                "OPENFLOW_MAX_SWITCH_CONNECTIONS" => {
                    self.openflow.max_switch_connections = parse_num(v).map_err(bad)?
                }
                "OPENFLOW_MULTIPART_MAX_BYTES" => self.openflow.multipart_max_bytes = parse_num(v).map_err(bad)?,
                "HTTP_LISTEN" => self.http.listen = v.parse().map_err(|_| bad("not an IP:port address".to_string()))?,
                "HTTP_MAX_CONNECTIONS" => self.http.max_connections = parse_num(v).map_err(bad)?,
                "HTTP_MAX_IN_FLIGHT" => self.http.max_in_flight = parse_num(v).map_err(bad)?,
                "HTTP_HEADER_TIMEOUT_MS" => self.http.header_timeout_ms = parse_num(v).map_err(bad)?,
                // The token itself never enters the configuration (which can be printed): the
                // control plane reads it from the environment (crate::control::auth).
                "HTTP_TOKEN" => {}
                "HTTP_TOKEN_FILE" => self.http.token_file = Some(PathBuf::from(v)),
                "HTTP_AUTH" => {
                    self.http.auth = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("expected true or false".to_string())),
                    }
                }
                "LEARNING_ZERO_CONFIG" => {
                    self.learning.zero_config = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("expected true or false".to_string())),
                    }
                }
                "LEARNING_MAX_PODS" => self.learning.max_pods = parse_num(v).map_err(bad)?,
                "LEARNING_MAX_HOSTS" => self.learning.max_hosts = parse_num(v).map_err(bad)?,
                "LOG_LEVEL" => self.log.level = v.to_string(),
                "LOG_FORMAT" => self.log.format = v.parse().map_err(bad)?,
                "NODE_OVSDB" => self.node.ovsdb = Some(v.to_string()),
                "NODE_BRIDGE" => self.node.bridge = v.to_string(),
                "NODE_DATAPATH_TYPE" => self.node.datapath_type = v.parse().map_err(bad)?,
                _ => return Err(bad("unknown SHARDFLOW_ variable".to_string())),
            }
        }
        Ok(())
    }

    fn apply_flags(&mut self, f: &Overrides) {
        if let Some(n) = f.shards {
            self.shards.count = n;
        }
        if let Some(c) = &f.cpus {
            self.shards.cpus = Some(c.clone());
        }
        if let Some(ip) = f.listen {
            self.openflow.listen = ip;
        }
        if let Some(p) = f.base_port {
            self.openflow.base_port = p;
        }
        if let Some(m) = f.mode {
            self.openflow.mode = m;
        }
        if let Some(a) = f.http {
            self.http.listen = a;
        }
        if let Some(l) = &f.log_level {
            self.log.level = l.clone();
        }
        if let Some(fm) = f.log_format {
            self.log.format = fm;
        }
        if let Some(z) = f.zero_config {
            self.learning.zero_config = z;
        }
        if let Some(db) = &f.ovsdb {
            self.node.ovsdb = Some(db.clone());
        }
    }

    /// The OpenFlow ports the daemon listens on: `base_port..base_port+count` in fanout mode,
    /// `base_port` alone in single mode. Call after [`Config::validate`] (no overflow then).
    pub fn openflow_ports(&self) -> Vec<u16> {
        let n = match self.openflow.mode {
            Mode::Fanout => self.shards.count,
            Mode::Single => 1,
        };
        (0..n).filter_map(|i| u16::try_from(usize::from(self.openflow.base_port) + i).ok()).collect()
    }

    /// The address shard `shard` listens on (fanout), or the single listener (single mode).
    pub fn openflow_addr(&self, shard: usize) -> SocketAddr {
        let ports = self.openflow_ports();
        let port = match self.openflow.mode {
            Mode::Fanout => ports.get(shard).copied().unwrap_or(self.openflow.base_port),
            Mode::Single => self.openflow.base_port,
        };
        SocketAddr::new(self.openflow.listen, port)
    }

    /// Check that the configuration can work on this machine. Every error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.pipeline {
            p.validate().map_err(|e| match e {
                crate::pipeline::default::PipelineError::Invalid { key, reason } => {
                    ConfigError::Invalid { key, reason }
                }
                other => ConfigError::invalid("pipeline", other.to_string()),
            })?;
        }
        match self.policy.source {
            PolicySourceKind::File if self.policy.file.is_none() => {
                return Err(ConfigError::invalid("policy.file", "source = \"file\" needs a policy file"))
            }
            PolicySourceKind::Cnictl if self.policy.cnictl.is_none() => {
                return Err(ConfigError::invalid("policy.cnictl", "source = \"cnictl\" needs cni-ctl's address"))
            }
            _ => {}
        }
        self.policy.tls_paths()?;
        self.openflow.tls_paths()?;
        self.node.validate()?;
        for (key, v) in [
            ("http.max_connections", self.http.max_connections as u64),
            ("http.max_in_flight", self.http.max_in_flight as u64),
            ("http.header_timeout_ms", self.http.header_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.learning.max_hosts == 0 {
            return Err(ConfigError::invalid("learning.max_hosts", "must be at least 1"));
        }
        if self.policy.timeout_ms == 0 {
            return Err(ConfigError::invalid("policy.timeout_ms", "must be at least 1"));
        }
        let n = self.shards.count;
        if n == 0 || n > MAX_SHARDS {
            return Err(ConfigError::invalid(
                "shards.count",
                format!("{n} is out of range: must be between 1 and {MAX_SHARDS}"),
            ));
        }
        if let Some(cpus) = &self.shards.cpus {
            if cpus.len() != n {
                return Err(ConfigError::invalid(
                    "shards.cpus",
                    format!("lists {} CPUs but shards.count is {n}: give one CPU per shard", cpus.len()),
                ));
            }
            let online = online_cpus();
            let mut seen = BTreeSet::new();
            for &c in cpus {
                if !online.contains(&c) {
                    return Err(ConfigError::invalid(
                        "shards.cpus",
                        format!("CPU {c} does not exist or is offline (online: {})", fmt_set(&online)),
                    ));
                }
                if !seen.insert(c) {
                    return Err(ConfigError::invalid(
                        "shards.cpus",
                        format!("CPU {c} is listed twice: each shard needs its own CPU"),
                    ));
                }
            }
        }
        if let Some(us) = self.shards.spin_before_park_us {
            if us > 1_000_000 {
                return Err(ConfigError::invalid(
                    "shards.spin_before_park_us",
                    format!("{us} us is more than a second of busy-waiting; use at most 1000000"),
                ));
            }
        }
        if self.shards.io_memory < MIN_IO_MEMORY {
            return Err(ConfigError::invalid(
                "shards.io_memory",
                format!("{} bytes is below glommio's floor of {MIN_IO_MEMORY} bytes (512 KiB)", self.shards.io_memory),
            ));
        }
        if self.shards.max_connections == 0 || self.shards.max_connections > u32::MAX as usize {
            return Err(ConfigError::invalid(
                "shards.max_connections",
                format!("{} is out of range (1 to {})", self.shards.max_connections, u32::MAX),
            ));
        }
        let base = self.openflow.base_port;
        if base == 0 {
            return Err(ConfigError::invalid(
                "openflow.base_port",
                "0 is not a usable port: switches must be told which port to connect to",
            ));
        }
        let needed = match self.openflow.mode {
            Mode::Fanout => n,
            Mode::Single => 1,
        };
        let last = usize::from(base) + needed - 1;
        if last > usize::from(u16::MAX) {
            return Err(ConfigError::invalid(
                "openflow.base_port",
                format!("{base} + {needed} shards - 1 = {last} is above 65535"),
            ));
        }
        if self.openflow.echo_interval_secs == 0 {
            return Err(ConfigError::invalid("openflow.echo_interval_secs", "must be at least 1"));
        }
        if self.openflow.request_timeout_secs == 0 {
            return Err(ConfigError::invalid("openflow.request_timeout_secs", "must be at least 1"));
        }
        if self.openflow.output_high_water < MIN_OUTPUT_HIGH_WATER {
            return Err(ConfigError::invalid(
                "openflow.output_high_water",
                format!(
                    "{} bytes is below {MIN_OUTPUT_HIGH_WATER} (two largest OpenFlow messages)",
                    self.openflow.output_high_water
                ),
            ));
        }
        if self.openflow.output_stall_timeout_secs == 0 {
            return Err(ConfigError::invalid("openflow.output_stall_timeout_secs", "must be at least 1"));
        }
        if self.openflow.max_switch_connections == 0 {
            return Err(ConfigError::invalid("openflow.max_switch_connections", "must be at least 1"));
        }
        if self.openflow.multipart_max_bytes < 1 << 16 {
            return Err(ConfigError::invalid("openflow.multipart_max_bytes", "must be at least 65536"));
        }
        let hp = self.http.listen.port();
        if hp != 0 && (base..=last as u16).contains(&hp) {
            return Err(ConfigError::invalid(
                "http.listen",
                format!("port {hp} is one of the OpenFlow ports {base}-{last}"),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{:?} is not a level or tracing filter: {e}", self.log.level),
            ));
        }
        Ok(())
    }

    /// Probe every OpenFlow port and the HTTP port with a plain std listener (no SO_REUSEPORT)
    /// and release it at once. glommio's listener always sets SO_REUSEPORT, so without this a
    /// second daemon would bind the same ports silently and steal connections. There is a small
    /// window between the probe and the real bind; it catches the common case (a second start).
    pub fn check_ports_free(&self) -> Result<(), ConfigError> {
        for (i, port) in self.openflow_ports().into_iter().enumerate() {
            let addr = SocketAddr::new(self.openflow.listen, port);
            let key = match self.openflow.mode {
                Mode::Fanout => format!("openflow.base_port (shard {i})"),
                Mode::Single => "openflow.base_port".to_string(),
            };
            probe_openflow(addr).map_err(|source| ConfigError::bind(key, addr, source))?;
        }
        if self.http.listen.port() != 0 {
            probe(self.http.listen).map_err(|source| ConfigError::bind("http.listen", self.http.listen, source))?;
        }
        Ok(())
    }
}

fn probe(addr: SocketAddr) -> std::io::Result<()> {
    TcpListener::bind(addr).map(drop)
}

/// Whether an OpenFlow port is free for the shards' (SO_REUSEPORT) listeners.
///
/// A plain bind fails not only when another process listens there, but also for a minute after
/// this daemon's own previous run: its closed switch connections linger in TIME-WAIT, and they
/// inherited SO_REUSEPORT (not SO_REUSEADDR) from glommio's listener. Those do not stop the
/// shards from binding again, so when the bind fails, the port counts as taken only if
/// something accepts a connection on it.
fn probe_openflow(addr: SocketAddr) -> std::io::Result<()> {
    match TcpListener::bind(addr) {
        Ok(l) => {
            drop(l);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let target = if addr.ip().is_unspecified() {
                SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), addr.port())
            } else {
                addr
            };
            match std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_millis(500)) {
                Ok(_) => Err(e),
                Err(_) => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

fn parse_num<T: FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{s:?} is not a valid number here"))
}

fn fmt_set(s: &BTreeSet<usize>) -> String {
    s.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// The HTTP server's bounds (`[http]` in the configuration; served by `control::http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; one more is answered 503 and closed
    /// (`shardflow_http_connections_refused_total`).
    pub max_connections: usize,
    /// Heavy requests (everything but `/healthz`, `/readyz`, `/metrics`) handled at once; more
    /// wait for a slot until their deadline, then get 503.
    pub max_in_flight: usize,
    /// Time to receive a request head, counted from the first poll for it (an idle kept-alive
    /// connection is closed after it too); past it hyper closes the connection.
    pub header_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits { max_connections: 256, max_in_flight: 16, header_timeout: std::time::Duration::from_secs(5) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write_tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn invalid_key(cfg: &Config) -> String {
        match cfg.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        assert_eq!(c.shards.count, available_cores());
        assert_eq!(c.shards.io_memory, 1 << 20);
        assert_eq!(c.openflow.base_port, 6653);
        assert_eq!(c.openflow.mode, Mode::Fanout);
        assert_eq!(c.openflow.echo_interval_secs, 5);
        assert_eq!(c.openflow.request_timeout_secs, 10);
        assert_eq!(c.http.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Plain);
        c.validate().unwrap();
        // The default rendered as TOML reads back to itself.
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn module_doc_example_parses() {
        // The commented example in the module docs, uncommented keys only.
        let text = "[shards]\ncount = 2\nio_memory = 1048576\n[openflow]\nlisten = \"127.0.0.1\"\n\
                    base_port = 6653\nmode = \"fanout\"\necho_interval_secs = 5\n\
                    request_timeout_secs = 10\n[http]\nlisten = \"127.0.0.1:9464\"\n\
                    [log]\nlevel = \"info\"\nformat = \"plain\"\n";
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.shards.count, 2);
        c.validate().unwrap();
    }

    #[test]
    fn precedence_file_then_env_then_flags() {
        let path = write_tmp(
            "prec.toml",
            "[shards]\ncount = 3\nspin_before_park_us = 40\n[openflow]\nbase_port = 7000\nmode = \"single\"\n\
             [http]\nlisten = \"127.0.0.1:9000\"\n[log]\nlevel = \"debug\"\n",
        );
        // File alone overrides defaults.
        let c = Config::load(Some(&path), &[], &Overrides::default()).unwrap();
        assert_eq!(c.shards.count, 3);
        assert_eq!(c.shards.spin_before_park(), Some(Duration::from_micros(40)));
        assert_eq!(c.openflow.base_port, 7000);
        assert_eq!(c.openflow.mode, Mode::Single);
        assert_eq!(c.openflow.echo_interval_secs, 5, "untouched key keeps its default");
        // Env overrides file.
        let e = env(&[
            ("SHARDFLOW_SHARDS", "4"),
            ("SHARDFLOW_OPENFLOW_BASE_PORT", "7100"),
            ("SHARDFLOW_HTTP_LISTEN", "127.0.0.1:9100"),
            ("SHARDFLOW_LOG_LEVEL", "warn"),
            ("SHARDFLOW_LOG_FORMAT", "json"),
            ("PATH", "/bin"),
        ]);
        let c = Config::load(Some(&path), &e, &Overrides::default()).unwrap();
        assert_eq!(c.shards.count, 4);
        assert_eq!(c.openflow.base_port, 7100);
        assert_eq!(c.http.listen.port(), 9100);
        assert_eq!(c.log.level, "warn");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.openflow.mode, Mode::Single, "file value kept where env is silent");
        // Flags override env.
        let f = Overrides {
            shards: Some(1),
            base_port: Some(7200),
            mode: Some(Mode::Fanout),
            http: Some("127.0.0.1:9200".parse().unwrap()),
            log_level: Some("error".into()),
            log_format: Some(LogFormat::Plain),
            listen: Some("0.0.0.0".parse().unwrap()),
            cpus: Some(vec![0]),
            config: None,
            zero_config: Some(false),
            ovsdb: Some("none".into()),
        };
        let c = Config::load(Some(&path), &e, &f).unwrap();
        assert_eq!(c.shards.count, 1);
        assert!(!c.learning.zero_config);
        assert_eq!(c.shards.cpus, Some(vec![0]));
        assert_eq!(c.openflow.base_port, 7200);
        assert_eq!(c.openflow.mode, Mode::Fanout);
        assert_eq!(c.openflow.listen, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(c.http.listen.port(), 9200);
        assert_eq!(c.log.level, "error");
        assert_eq!(c.log.format, LogFormat::Plain);
        c.validate().unwrap();
    }

    #[test]
    fn all_env_keys_apply() {
        let e = env(&[
            ("SHARDFLOW_SHARDS_COUNT", "2"),
            ("SHARDFLOW_SHARDS_CPUS", "0-1"),
            ("SHARDFLOW_SHARDS_SPIN_BEFORE_PARK_US", "70"),
            ("SHARDFLOW_SHARDS_IO_MEMORY", "2097152"),
            ("SHARDFLOW_OPENFLOW_LISTEN", "::1"),
            ("SHARDFLOW_OPENFLOW_MODE", "single"),
            ("SHARDFLOW_OPENFLOW_ECHO_INTERVAL_SECS", "7"),
            ("SHARDFLOW_OPENFLOW_REQUEST_TIMEOUT_SECS", "3"),
            ("SHARDFLOW_CONFIG", "/nonexistent"),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.shards.count, 2);
        assert_eq!(c.shards.cpus, Some(vec![0, 1]));
        assert_eq!(c.shards.spin_before_park_us, Some(70));
        assert_eq!(c.shards.io_memory, 2 << 20);
        assert_eq!(c.openflow.listen, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.openflow.mode, Mode::Single);
        assert_eq!(c.openflow.echo_interval(), Duration::from_secs(7));
        assert_eq!(c.openflow.request_timeout(), Duration::from_secs(3));
        assert_eq!(config_path(&e, &Overrides::default()), Some(PathBuf::from("/nonexistent")));
        let f = Overrides { config: Some("/a.toml".into()), ..Default::default() };
        assert_eq!(config_path(&e, &f), Some(PathBuf::from("/a.toml")), "flag beats env");
    }

    #[test]
    fn bad_env_names_the_variable() {
        for (var, val) in [
            ("SHARDFLOW_SHARDS", "two"),
            ("SHARDFLOW_OPENFLOW_BASE_PORT", "70000"),
            ("SHARDFLOW_OPENFLOW_MODE", "broadcast"),
            ("SHARDFLOW_HTTP_LISTEN", "localhost"),
            ("SHARDFLOW_SHARDS_CPUS", "3-1"),
            ("SHARDFLOW_LOG_FORMAT", "xml"),
            ("SHARDFLOW_SHARD", "2"),
        ] {
            let err = Config::load(None, &env(&[(var, val)]), &Overrides::default()).unwrap_err();
            match &err {
                ConfigError::Env { var: v, .. } => assert_eq!(v, var),
                other => panic!("{var}: expected Env error, got {other:?}"),
            }
            assert!(err.to_string().contains(var), "{err}");
            assert_eq!(err.exit_code(), EXIT_CONFIG);
        }
    }

    #[test]
    fn file_errors_name_the_key() {
        let p = write_tmp("unknown.toml", "[openflow]\nbase_prot = 1\n");
        let err = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains("base_prot"), "{err}");

        let p = write_tmp("section.toml", "[grpc]\nlisten = \"x\"\n");
        let err = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("grpc"), "{err}");

        let p = write_tmp("type.toml", "[shards]\ncount = \"many\"\n");
        let err = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("count"), "{err}");

        let p = write_tmp("mode.toml", "[openflow]\nmode = \"broadcast\"\n");
        let err = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("broadcast"), "{err}");

        let missing = Path::new("/nonexistent/shardflow.toml");
        let err = Config::load(Some(missing), &[], &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/shardflow.toml"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let base = || {
            let mut c = Config::default();
            c.shards.count = 2;
            c
        };
        let mut c = base();
        c.shards.count = 0;
        assert_eq!(invalid_key(&c), "shards.count");
        c.shards.count = 257;
        assert_eq!(invalid_key(&c), "shards.count");

        let mut c = base();
        c.shards.cpus = Some(vec![0]);
        assert_eq!(invalid_key(&c), "shards.cpus");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("lists 1 CPUs but shards.count is 2"), "{e}");
        c.shards.cpus = Some(vec![0, 0]);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        c.shards.cpus = Some(vec![0, 100_000]);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("shards.cpus") && e.contains("CPU 100000 does not exist"), "{e}");
        c.shards.cpus = Some(vec![1, 0]);
        if online_cpus().len() >= 2 {
            c.validate().unwrap();
        }

        let mut c = base();
        c.shards.io_memory = 4096;
        assert_eq!(invalid_key(&c), "shards.io_memory");
        let mut c = base();
        c.shards.spin_before_park_us = Some(5_000_000);
        assert_eq!(invalid_key(&c), "shards.spin_before_park_us");

        let mut c = base();
        c.openflow.base_port = 65535;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("openflow.base_port") && e.contains("65536"), "{e}");
        c.openflow.mode = Mode::Single;
        c.validate().unwrap(); // one port fits
        assert_eq!(c.openflow_ports(), vec![65535]);
        c.openflow.base_port = 0;
        assert_eq!(invalid_key(&c), "openflow.base_port");

        let mut c = base();
        c.openflow.echo_interval_secs = 0;
        assert_eq!(invalid_key(&c), "openflow.echo_interval_secs");
        let mut c = base();
        c.openflow.request_timeout_secs = 0;
        assert_eq!(invalid_key(&c), "openflow.request_timeout_secs");

        let mut c = base();
        c.http.listen = "127.0.0.1:6654".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("http.listen") && e.contains("6653-6654"), "{e}");
        c.http.listen = "127.0.0.1:6655".parse().unwrap();
        c.validate().unwrap();

        let mut c = base();
        c.log.level = "info,[[[".into();
        assert_eq!(invalid_key(&c), "log.level");
        c.log.level = "info,shardflow=debug".into();
        c.validate().unwrap();
    }

    #[test]
    fn node_section_keys_env_flag_and_validation() {
        let c = Config::default();
        assert_eq!(c.node.bridge, "br-int");
        assert_eq!(c.node.datapath_type, DatapathType::Auto);
        assert_eq!(c.node.address(Some("/tmp/ovs")).unwrap().unwrap().to_string(), "unix:/tmp/ovs/db.sock");
        assert_eq!(c.node.address(None).unwrap().unwrap().to_string(), "unix:/var/run/openvswitch/db.sock");

        let c = Config::from_toml(
            "[node]\novsdb = \"tcp:127.0.0.1:6640\"\nbridge = \"br-x\"\ndatapath_type = \"netdev\"\n",
        )
        .unwrap();
        assert_eq!(c.node.address(Some("/x")).unwrap().unwrap().to_string(), "tcp:127.0.0.1:6640");
        assert_eq!(c.node.datapath_type, DatapathType::Netdev);
        c.validate().unwrap();
        assert!(Config::from_toml("[node]\ndatapath_type = \"kernel\"\n").unwrap_err().contains("kernel"));

        let e = env(&[
            ("SHARDFLOW_NODE_OVSDB", "none"),
            ("SHARDFLOW_NODE_BRIDGE", "br9"),
            ("SHARDFLOW_NODE_DATAPATH_TYPE", "system"),
        ]);
        let c = Config::load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.node.address(Some("/x")).unwrap(), None, "\"none\" turns node management off");
        assert_eq!((c.node.bridge.as_str(), c.node.datapath_type), ("br9", DatapathType::System));
        let f = Overrides { ovsdb: Some("unix:/run/x.sock".into()), ..Default::default() };
        let c = Config::load(None, &e, &f).unwrap();
        assert_eq!(c.node.ovsdb.as_deref(), Some("unix:/run/x.sock"), "the flag beats the environment");
        let err =
            Config::load(None, &env(&[("SHARDFLOW_NODE_DATAPATH_TYPE", "x")]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("SHARDFLOW_NODE_DATAPATH_TYPE"), "{err}");

        for (ovsdb, bridge) in [("ssl:1.2.3.4:6640", "br-int"), ("tcp:localhost", "br-int"), ("unix:", "br-int")] {
            let mut c = Config::default();
            c.node.ovsdb = Some(ovsdb.into());
            c.node.bridge = bridge.into();
            assert_eq!(invalid_key(&c), "node.ovsdb", "{ovsdb}");
        }
        for bridge in ["", "a-very-long-bridge-name", "br 0", "br/0", ".."] {
            let mut c = Config::default();
            c.node.bridge = bridge.into();
            assert_eq!(invalid_key(&c), "node.bridge", "{bridge:?}");
        }
    }

    #[test]
    fn ports_and_addresses_per_mode() {
        let mut c = Config::default();
        c.shards.count = 3;
        c.openflow.base_port = 7000;
        assert_eq!(c.openflow_ports(), vec![7000, 7001, 7002]);
        assert_eq!(c.openflow_addr(2), "127.0.0.1:7002".parse().unwrap());
        c.openflow.mode = Mode::Single;
        assert_eq!(c.openflow_ports(), vec![7000]);
        assert_eq!(c.openflow_addr(2), "127.0.0.1:7000".parse().unwrap());
    }

    #[test]
    fn cpu_list_parsing() {
        assert_eq!(cpu_list_setting("0,2-4, 7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(cpu_list_setting("3,1"), Ok(vec![3, 1]), "shard i gets the i-th CPU: order kept");
        assert_eq!(cpu_list_setting("").unwrap_err(), "empty CPU list");
        assert_eq!(cpu_list_setting(" , ").unwrap_err(), "empty CPU list");
        assert_eq!(cpu_list_setting("a").unwrap_err(), "\"a\" is not a CPU number");
        assert_eq!(cpu_list_setting("4-2").unwrap_err(), "\"4-2\" is not an ascending CPU range");
        assert!(online_cpus().contains(&0));
    }

    /// A free port range on 127.0.0.1: bind an ephemeral port and hope its successor is free;
    /// retried, because another test may grab it.
    fn taken_port_config() -> (TcpListener, Config) {
        for _ in 0..50 {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            if p >= 65000 {
                continue;
            }
            let mut c = Config::default();
            c.shards.count = 2;
            c.openflow.base_port = p - 1; // shard 1 collides with the held port
            if TcpListener::bind(("127.0.0.1", p - 1)).is_err() {
                continue;
            }
            c.http.listen = "127.0.0.1:0".parse().unwrap();
            return (l, c);
        }
        panic!("no free port pair found");
    }

    #[test]
    fn port_probe_names_the_taken_port() {
        let (held, c) = taken_port_config();
        let port = held.local_addr().unwrap().port();
        let err = c.check_ports_free().unwrap_err();
        match &err {
            ConfigError::PortInUse { key, addr, .. } => {
                assert_eq!(addr.port(), port);
                assert!(key.contains("shard 1"), "{key}");
            }
            other => panic!("expected PortInUse, got {other:?}"),
        }
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert_eq!(err.exit_code(), EXIT_UNAVAILABLE);
        drop(held);
        // Free again. (Parallel tests bind ephemeral ports: one of them may take another port of
        // this configuration meanwhile, so only the released one is checked.)
        if let Err(ConfigError::PortInUse { addr, .. }) = c.check_ports_free() {
            assert_ne!(addr.port(), port, "the released port is still reported taken");
        }

        // The HTTP port is probed too.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = c;
        c.http.listen = held.local_addr().unwrap();
        let err = c.check_ports_free().unwrap_err();
        assert!(matches!(&err, ConfigError::PortInUse { key, .. } if key == "http.listen"), "{err:?}");
    }
}
