//! Configuration and control-plane lifecycle through the public API, in-process.
//!
//! This test binary is its own process, so the SIGTERM/SIGINT test below can signal itself
//! without disturbing other tests: the control plane's handlers are installed before
//! `ControlPlane::start` returns, so the signal is caught, never fatal. Only one test here
//! starts a control plane. (Running the built `shardflow run` binary as a child belongs here
//! once the run command exists.)
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardflow::config::{Config, ConfigError, Mode, Overrides};
use shardflow::control::{
    ApiError, ControlApi, ControlPlane, DeleteFilter, Dpid, FlowCommand, FlowModReply, Metrics, ShardStats,
    ShutdownReason, SwitchInfo,
};
use shardflow::openflow::flow::FlowMod;

struct NoSwitches;

impl ControlApi for NoSwitches {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn switches(&self, _: Instant) -> Result<Vec<SwitchInfo>, ApiError> {
        Ok(Vec::new())
    }
    fn dump_flows(&self, dpid: Dpid, _: Instant) -> Result<Vec<String>, ApiError> {
        Err(ApiError::UnknownSwitch(dpid))
    }
    fn flow_mods(
        &self,
        dpid: Dpid,
        _: FlowCommand,
        _: Vec<FlowMod>,
        _: bool,
        _: Instant,
    ) -> Result<FlowModReply, ApiError> {
        Err(ApiError::UnknownSwitch(dpid))
    }
    fn delete_flows(&self, dpid: Dpid, _: DeleteFilter, _: Instant) -> Result<FlowModReply, ApiError> {
        Err(ApiError::UnknownSwitch(dpid))
    }
    fn shards(&self, _: Instant) -> Result<Vec<ShardStats>, ApiError> {
        Ok(Vec::new())
    }
}

fn tmp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardflow-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn file_env_flags_then_validate_then_probe() {
    let path = tmp_file(
        "daemon.toml",
        "[shards]\ncount = 2\n[openflow]\nbase_port = 16653\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let env = vec![("SHARDFLOW_OPENFLOW_MODE".to_string(), "single".to_string())];
    let flags = Overrides { base_port: Some(16700), ..Default::default() };
    let cfg = Config::load(Some(&path), &env, &flags).unwrap();
    assert_eq!(cfg.shards.count, 2);
    assert_eq!(cfg.openflow.mode, Mode::Single);
    assert_eq!(cfg.openflow.base_port, 16700);
    cfg.validate().unwrap();
    assert_eq!(cfg.openflow_ports(), vec![16700]);

    // A port held by "another daemon" is named.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let flags = Overrides { base_port: Some(port), ..Default::default() };
    let cfg = Config::load(Some(&path), &env, &flags).unwrap();
    let err = cfg.check_ports_free().unwrap_err();
    assert!(matches!(err, ConfigError::PortInUse { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn bad_file_is_a_clear_error() {
    let path = tmp_file("bad.toml", "[http]\nlisten = \"127.0.0.1:9464\"\nport = 1\n");
    let err = Config::load(Some(&path), &[], &Overrides::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.toml") && text.contains("port"), "{text}");
    assert_eq!(err.exit_code(), 64);
}

fn kill(sig: &str) {
    let status = Command::new("kill").args([sig, &std::process::id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_and_sigint_stop_the_control_plane() {
    for (sig, want) in [("-TERM", ShutdownReason::Sigterm), ("-INT", ShutdownReason::Sigint)] {
        let mut cfg = Config::default();
        cfg.http.listen = "127.0.0.1:0".parse().unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let cp = ControlPlane::start(&cfg, metrics, Arc::new(NoSwitches)).unwrap();
        let addr = cp.http_addr();
        let signal = cp.shutdown_signal();
        let t0 = Instant::now();
        kill(sig);
        // Wait (bounded) for the signal to be seen, then for the plane to stop.
        while !signal.is_triggered() && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(signal.is_triggered(), "{sig} not seen");
        assert_eq!(cp.join().unwrap(), want);
        assert!(t0.elapsed() < Duration::from_secs(1), "{sig}: took {:?}", t0.elapsed());
        assert!(TcpListener::bind(addr).is_ok(), "http port still held after {sig}");
    }
}
