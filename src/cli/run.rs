//! `shardflow run`: configuration (file, then env, then flags), validated before any port is
//! bound; then the daemon until SIGTERM/SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use shardflow::config::{self, Config, LogFormat, Mode, Overrides};

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// TOML configuration file (also SHARDFLOW_CONFIG). See docs/config.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of shards (pinned executors). Default: one per available core.
    #[arg(long)]
    shards: Option<usize>,
    /// CPUs to pin the shards to, e.g. `0-1` or `0,2`.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Address the OpenFlow listeners bind (default 127.0.0.1).
    #[arg(long)]
    listen: Option<IpAddr>,
    /// First OpenFlow port; shard i listens on base-port + i (default 6653).
    #[arg(long)]
    base_port: Option<u16>,
    /// `fanout` (one controller connection per shard) or `single` (one port, handoff).
    #[arg(long)]
    mode: Option<Mode>,
    /// HTTP endpoint for /healthz, /metrics and the REST API (default 127.0.0.1:9464).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Log level or filter directive (default info; also RUST_LOG).
    #[arg(long)]
    log_level: Option<String>,
    /// `plain` or `json`.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Without a `[pipeline]` section: the zero-config pipeline (`true`, the default) or only
    /// the packet-in dispatch (`false`). Also `learning.zero_config`.
    #[arg(long)]
    zero_config: Option<bool>,
    /// OVSDB server of the node's bridge (`unix:PATH`, `tcp:IP:PORT`) or `none` to leave the
    /// node alone. Default: unix:$OVS_RUNDIR/db.sock, else unix:/var/run/openvswitch/db.sock.
    #[arg(long)]
    ovsdb: Option<String>,
}

pub fn run(args: RunArgs) -> ExitCode {
    let flags = Overrides {
        config: args.config,
        shards: args.shards,
        cpus: args.cpus.map(|c| c.0),
        listen: args.listen,
        base_port: args.base_port,
        mode: args.mode,
        http: args.http,
        log_level: args.log_level,
        log_format: args.log_format,
        zero_config: args.zero_config,
        ovsdb: args.ovsdb,
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let path = config::config_path(&env, &flags);
    // The REST token's source is checked with the rest: a bad token file stops the daemon
    // before any port is bound.
    let checked = Config::load(path.as_deref(), &env, &flags).and_then(|c| c.validate().map(|_| c)).and_then(|c| {
        shardflow::control::auth::HttpAuth::check(&c.http, &env)
            .map_err(|e| config::ConfigError::Invalid { key: "http.token_file".into(), reason: e.to_string() })?;
        Ok(c)
    });
    let cfg = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardflow: bad configuration: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    super::init_logging(&cfg.log.level, cfg.log.format);
    match shardflow::daemon::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("shardflow: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `--cpus`: a newtype, because clap reads a bare `Vec<usize>` as many values of `usize` and
/// panics when the parser returns the whole list.
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    config::cpu_list_setting(s).map(CpuList)
}
