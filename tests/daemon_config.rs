//! `shardflow run` refusing a bad configuration before it binds anything: exit statuses and
//! messages (64 config, 69 port taken, 2 clap usage error).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{free_ports, port_free};

/// Runs the binary with `args`, bounded: kills it (and fails) if it does not exit within 10 s.
fn run_bounded(args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardflow"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SHARDFLOW_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardflow {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status, err)
}

fn ports_args(base: u16, http: u16) -> [String; 4] {
    ["--base-port".into(), base.to_string(), "--http".into(), format!("127.0.0.1:{http}")]
}

#[test]
fn zero_shards_exits_64_naming_shards() {
    let (base, http) = free_ports(2);
    let p = ports_args(base, http);
    let (st, err) = run_bounded(&["run", "--shards", "0", &p[0], &p[1], &p[2], &p[3]]);
    assert_eq!(st.code(), Some(64), "{err}");
    assert!(err.contains("shards"), "{err}");
    assert!(port_free(http) && port_free(base), "nothing left bound");
}

#[test]
fn unknown_toml_key_exits_64_naming_it() {
    let (base, http) = free_ports(2);
    let dir = std::env::temp_dir().join(format!("shardflow-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("unknown.toml");
    std::fs::write(&path, "[openflow]\nmystery_knob = 3\n").unwrap();
    let p = ports_args(base, http);
    let (st, err) =
        run_bounded(&["run", "--config", path.to_str().unwrap(), "--shards", "2", &p[0], &p[1], &p[2], &p[3]]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(st.code(), Some(64), "{err}");
    assert!(err.contains("mystery_knob"), "{err}");
}

#[test]
fn openflow_port_taken_exits_69_and_binds_nothing() {
    let (base, http) = free_ports(2);
    // Hold shard 1's port: a daemon binding as it validates would already hold shard 0's and HTTP.
    let held = TcpListener::bind(("127.0.0.1", base + 1)).expect("hold the port");
    let p = ports_args(base, http);
    let t = Instant::now();
    let (st, err) = run_bounded(&["run", "--shards", "2", &p[0], &p[1], &p[2], &p[3]]);
    eprintln!("exit {st} after {:?}: {err}", t.elapsed());
    assert_eq!(st.code(), Some(69), "{err}");
    assert!(err.contains(&(base + 1).to_string()), "names the port: {err}");
    assert!(!err.contains("listening"), "nothing was listening: {err}");
    assert!(port_free(http), "HTTP port {http} not bound afterwards");
    assert!(port_free(base), "shard 0 port {base} not bound afterwards");
    drop(held);
}

#[test]
fn http_not_an_address_is_a_clap_usage_error() {
    let (st, err) = run_bounded(&["run", "--shards", "2", "--http", "127.0.0.1:notaport"]);
    eprintln!("exit {st}: {err}");
    assert_eq!(st.code(), Some(2), "clap's usage error: {err}");
    assert!(err.contains("--http") && err.contains("notaport"), "{err}");
}

/// `--cpus` is read (it used to panic in clap for any value): a list that does not match the
/// shard count is a configuration error naming `shards.cpus`, a malformed one a usage error.
#[test]
fn cpus_flag_is_parsed_not_a_panic() {
    let (base, http) = free_ports(2);
    let p = ports_args(base, http);
    let (st, err) = run_bounded(&["run", "--shards", "2", "--cpus", "0", &p[0], &p[1], &p[2], &p[3]]);
    assert_eq!(st.code(), Some(64), "{err}");
    assert!(err.contains("shards.cpus") && !err.contains("panicked"), "{err}");
    let (st, err) = run_bounded(&["run", "--cpus", "zero", &p[0], &p[1], &p[2], &p[3]]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--cpus") && !err.contains("panicked"), "{err}");
    assert!(port_free(http) && port_free(base), "nothing left bound");
}
