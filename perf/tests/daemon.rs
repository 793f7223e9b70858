//! loadgen against the real daemon: `shardflow run` with docs/pipeline.md's example pipeline (one
//! shard, fan-out), two emulated switches in throughput mode for 2 s. Skipped (with a message)
//! when the `shardflow` binary is not built next to this test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// target/<profile>/shardflow, next to target/<profile>/deps/<this test>.
fn shardflow_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("shardflow");
    bin.is_file().then_some(bin)
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Two distinct free ports in 20000..30000 (below the ephemeral range).
fn free_ports() -> (u16, u16) {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 20);
    let mut x = seed | 1;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20000 + (x % 10_000) as u16;
        let http = 20000 + ((x >> 20) % 10_000) as u16;
        if base != http && port_free(base) && port_free(http) {
            return (base, http);
        }
    }
    panic!("no free ports");
}

fn healthz(http: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", http)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.starts_with("HTTP/1.1 200")
}

struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn loadgen_drives_the_daemon() {
    let Some(bin) = shardflow_bin() else {
        eprintln!("skipped: no shardflow binary next to {:?} (build the workspace first)", std::env::current_exe());
        return;
    };
    let (base, http) = free_ports();
    let dir = std::env::temp_dir().join(format!("shardflow-perf-test-{}-{base}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[shards]
count = 1
io_memory = 1048576

[openflow]
listen = "127.0.0.1"
base_port = {base}
mode = "fanout"

[http]
listen = "127.0.0.1:{http}"

[log]
level = "warn"

[pipeline]
pod_cidr = "10.244.1.0/24"
service_cidr = "10.96.0.0/12"
gateway_ip = "10.244.1.1"
gateway_mac = "02:00:0a:f4:01:01"
gateway_port = 3
uplink_port = 1
tunnel_port = 5
pod_zone = 1
service_zone = 2
learn_idle_timeout = 60
learn_hard_timeout = 0

[[pipeline.local_pods]]
port = 2
ip = "10.244.1.2"
mac = "0a:58:0a:f4:01:02"

[[pipeline.local_pods]]
port = 4
ip = "10.244.1.4"
mac = "0a:58:0a:f4:01:04"
"#
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
    let child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn shardflow");
    let mut daemon = Daemon(child, dir.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthz(http) {
        if let Ok(Some(st)) = daemon.0.try_wait() {
            panic!("shardflow exited ({st}): {}", std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "shardflow not healthy within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let json = dir.join("result.json");
    let window = 16u64;
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--controller", &format!("127.0.0.1:{base}")])
        .args(["--switches", "2", "--mode", "throughput", "--window", &window.to_string()])
        .args(["--warmup", "1", "--duration", "2", "--threads", "1"])
        .args(["--controller-pid", &daemon.0.id().to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "loadgen failed: {stdout}{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {r}"));
    let answered = n("answered");
    let flow_mods = n("flow_mods");
    assert!(answered > 0, "nothing answered: {stdout}");
    assert_eq!(n("connections_failed"), 0, "{stdout}");
    assert_eq!(n("connections_closed"), 0, "{stdout}");
    assert_eq!(n("connections_handshaken"), 2, "{stdout}");
    assert_eq!(n("errors_received"), 0, "{stdout}");
    // Two flows (forward and reverse) per decided connection; the interval's edges may cut a
    // window's worth of answers on each connection.
    let slack = 2 * window * 2 + 4;
    assert!(flow_mods.abs_diff(2 * answered) <= slack, "flow_mods {flow_mods} vs answered {answered}: {stdout}");
    assert!(r["latency"]["p50_us"].as_f64().unwrap_or(0.0) > 0.0, "{stdout}");
    assert!(r["controller"]["rss_end_mb"].as_f64().unwrap_or(0.0) > 0.0, "{stdout}");
}
