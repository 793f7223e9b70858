//! Issue 11, REST authentication and least privilege, against the real daemon and a real Open
//! vSwitch (private sandbox per test): the REST API refuses callers without the bearer token
//! (401, `WWW-Authenticate: Bearer`) and the bridge's flows stay as they were; the token opens
//! it; health and metrics stay open; a generated token file is 0600 and its path logged; a token
//! file others can read stops the daemon before it binds a port; and the daemon runs as an
//! unprivileged user (uid 65534, no capabilities) serving OpenFlow and REST. See
//! docs/security.md. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_ports, http_request, http_request_as, port_free, test_token, wait_until, Daemon, Ovs};

/// A daemon started by hand (its environment or its user differs from [`Daemon`]'s), killed
/// on drop.
struct Proc {
    child: Child,
    log: PathBuf,
    http: String,
}

impl Proc {
    fn spawn(mut cmd: Command, dir: &Path, http_port: u16) -> Proc {
        let log = dir.join("stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn shardflow");
        Proc { child, log, http: format!("127.0.0.1:{http_port}") }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for /healthz 200 (open: no token needed), failing with the log if it exits.
    fn wait_healthy(&mut self) {
        let ok = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("shardflow exited early ({st}):\n{}", self.stderr());
            }
            matches!(http_request_as(&self.http, "GET", "/healthz", "", None), Ok((200, _, _)))
        });
        assert!(ok, "no /healthz 200 within 10 s:\n{}", self.stderr());
    }

    /// Waits for the exit, at most `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shardflow-sec-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `shardflow run` on the given ports, without the test token in its environment.
fn run_cmd(prefix: &[&str], base: u16, http: u16, extra: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_shardflow");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("SHARDFLOW_") || k == "RUNTIME_DIRECTORY" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(["run", "--shards", "1", "--base-port", &base.to_string()])
        .args(["--http", &format!("127.0.0.1:{http}"), "--log-level", "info", "--ovsdb", "none"])
        .args(extra);
    cmd
}

/// Waits until `dpid` is listed at /v1/switches (open) with its pipeline installed.
fn wait_connected(http: &str) -> String {
    let mut last = String::new();
    let mut dpid = None;
    let ok = wait_until(Duration::from_secs(15), || {
        let Ok((200, _, body)) = http_request_as(http, "GET", "/v1/switches", "", None) else { return false };
        last = body;
        let v: Value = serde_json::from_str(&last).unwrap_or(Value::Null);
        dpid = v.as_array().and_then(|a| {
            a.iter()
                .find(|s| !s["pipeline_installed_ms"].is_null())
                .and_then(|s| s["dpid"].as_str().map(str::to_string))
        });
        dpid.is_some()
    });
    assert!(ok, "no switch connected with its flows within 15 s: {last}");
    dpid.unwrap()
}

#[test]
fn rest_without_the_token_is_401_and_changes_nothing() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start(1, &[]);
    d.attach(&ovs, "br0", false);
    let dpid = wait_connected(&d.http_addr());
    let before = ovs.flows("br0");
    assert!(!before.is_empty(), "the daemon installed no flow to compare with");
    let flows = format!("/v1/switches/{dpid}/flows");
    let flow = "table=0,priority=65535,actions=drop";
    let wrong = format!("Bearer {}", "0".repeat(test_token().len()));
    let calls: Vec<(&str, String, &str)> = vec![
        ("DELETE", format!("{flows}?force=true"), ""),
        ("POST", format!("{flows}?command=add"), flow),
        ("GET", flows.clone(), ""),
        ("GET", format!("/v1/switches/{dpid}/groups"), ""),
        ("GET", "/v1/tracker".to_string(), ""),
        ("POST", "/v1/invalidate?all=true".to_string(), ""),
        ("GET", "/v1/no-such-route".to_string(), ""),
    ];
    let mut refused = 0;
    for (method, path, body) in &calls {
        for auth in [None, Some(wrong.as_str()), Some("Basic c2hhcmRmbG93OnNoYXJkZmxvdw==")] {
            let (st, head, body) = http_request_as(&d.http_addr(), method, path, body, auth).unwrap();
            assert_eq!(st, 401, "{method} {path} with {auth:?}: {body}");
            let head = head.to_ascii_lowercase();
            assert!(head.contains("www-authenticate: bearer"), "{method} {path}: no WWW-Authenticate: {head}");
            let reason: Value = serde_json::from_str(&body).unwrap();
            assert!(reason["error"].as_str().is_some_and(|e| e.contains("unauthorized")), "{body}");
            refused += 1;
        }
    }
    assert_eq!(ovs.flows("br0"), before, "a refused call changed the bridge's flows");
    let counted = d.metric_sum("shardflow_http_requests_total", &["route=\"unauthorized\"", "status=\"401\""]);
    assert_eq!(counted, refused as f64, "401s counted in shardflow_http_requests_total");

    // Open without a token: health, readiness, metrics, the switch and shard lists.
    for path in ["/healthz", "/metrics", "/v1/switches", "/v1/shards"] {
        let (st, _, body) = http_request_as(&d.http_addr(), "GET", path, "", None).unwrap();
        assert_eq!(st, 200, "{path} without a token: {body}");
    }

    // With the token: the same calls are served.
    let (st, body) = d.get("/v1/tracker");
    assert_eq!(st, 200, "{body}");
    let (st, body) = d.get(&flows);
    assert_eq!(st, 200, "{body}");
    let (st, body) = d.post(&format!("{flows}?command=add"), "table=0,priority=65535,cookie=0x5ec,ip,actions=drop");
    assert_eq!(st, 200, "{body}");
    let added = wait_until(Duration::from_secs(5), || ovs.flows("br0").iter().any(|l| l.contains("cookie=0x5ec")));
    assert!(added, "the authorised POST did not reach the bridge: {:?}", ovs.flows("br0"));
}

#[test]
fn a_generated_token_file_is_0600_and_its_path_logged() {
    let dir = tmpdir("gen");
    let run = dir.join("run");
    let (base, http) = free_ports(1);
    let mut cmd = run_cmd(&[], base, http, &[]);
    cmd.env("RUNTIME_DIRECTORY", &run);
    let mut p = Proc::spawn(cmd, &dir, http);
    p.wait_healthy();
    let file = run.join("http.token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:04o}", file.display());
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {token:?}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let log = p.stderr();
    assert!(log.contains(&file.display().to_string()), "the token's path is not logged:\n{log}");
    assert!(!log.contains(&token), "the token itself is logged:\n{log}");
    let with = format!("Bearer {token}");
    assert_eq!(http_request_as(&p.http, "GET", "/v1/tracker", "", Some(&with)).unwrap().0, 200);
    assert_eq!(http_request(&p.http, "GET", "/v1/tracker", "").unwrap().0, 401, "another token opened it");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_token_file_others_can_read_stops_the_daemon_before_it_binds() {
    let dir = tmpdir("perm");
    let file = dir.join("token");
    std::fs::write(&file, "a-token-of-enough-length-42\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, format!("[http]\ntoken_file = \"{}\"\n", file.display())).unwrap();
    let (base, http) = free_ports(1);
    let mut p = Proc::spawn(run_cmd(&[], base, http, &["--config", cfg.to_str().unwrap()]), &dir, http);
    let st = p.wait_exit(Duration::from_secs(10)).expect("the daemon kept running with a world-readable token file");
    let log = p.stderr();
    assert_eq!(st.code(), Some(64), "exit status for a configuration error:\n{log}");
    assert!(log.contains("http.token_file") && log.contains("0644"), "the error does not say why:\n{log}");
    assert!(!log.contains("listening"), "something was bound before the refusal:\n{log}");
    assert!(port_free(http) && port_free(base));

    // The same file, 0600, starts it (and its token opens the API).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut p = Proc::spawn(run_cmd(&[], base, http, &["--config", cfg.to_str().unwrap()]), &dir, http);
    p.wait_healthy();
    let with = "Bearer a-token-of-enough-length-42";
    assert_eq!(http_request_as(&p.http, "GET", "/v1/tracker", "", Some(with)).unwrap().0, 200);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_daemon_runs_unprivileged_with_openflow_and_rest() {
    if std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok() != Some(0) {
        eprintln!("SKIPPED: needs root to drop to uid 65534 (setpriv)");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) is not installed");
        return;
    }
    let ovs = Ovs::start(&["br0"]);
    let dir = tmpdir("nobody");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The state directory systemd's RuntimeDirectory= would make: owned by the user, 0700.
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (base, http) = free_ports(1);
    let prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ];
    let mut cmd = run_cmd(&prefix, base, http, &[]);
    cmd.env("RUNTIME_DIRECTORY", &run);
    let mut p = Proc::spawn(cmd, &dir, http);
    p.wait_healthy();

    // Who it runs as: uid 65534, no capability at all.
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    let field = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or_default().to_string();
    assert!(field("Uid:").split_whitespace().skip(1).all(|u| u == "65534"), "{}", field("Uid:"));
    assert_eq!(field("CapEff:").split_whitespace().nth(1), Some("0000000000000000"), "{status}");
    assert_eq!(field("CapPrm:").split_whitespace().nth(1), Some("0000000000000000"), "{status}");

    // OpenFlow to a real OVS: the switch connects and gets its flows.
    ovs.ok("ovs-vsctl", &["set-controller", "br0", &format!("tcp:127.0.0.1:{base}")]);
    let dpid = wait_connected(&p.http);
    assert!(!ovs.flows("br0").is_empty());

    // REST with the token it generated as that user (0600, owned by 65534).
    let file = run.join("http.token");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let with = format!("Bearer {}", std::fs::read_to_string(&file).unwrap().trim());
    let path = format!("/v1/switches/{dpid}/flows?command=add");
    let (st, _, body) =
        http_request_as(&p.http, "POST", &path, "table=0,priority=65535,cookie=0x5ec,ip,actions=drop", Some(&with))
            .unwrap();
    assert_eq!(st, 200, "{body}");
    let added = wait_until(Duration::from_secs(5), || ovs.flows("br0").iter().any(|l| l.contains("cookie=0x5ec")));
    assert!(added, "the POST did not reach the bridge: {:?}", ovs.flows("br0"));
    assert_eq!(http_request_as(&p.http, "POST", &path, "priority=1,actions=drop", None).unwrap().0, 401);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auth_off_is_explicit_and_warned() {
    let dir = tmpdir("off");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, "[http]\nauth = false\n").unwrap();
    let (base, http) = free_ports(1);
    let mut p = Proc::spawn(run_cmd(&[], base, http, &["--config", cfg.to_str().unwrap()]), &dir, http);
    p.wait_healthy();
    let (st, _, body) = http_request_as(&p.http, "GET", "/v1/tracker", "", None).unwrap();
    assert_eq!(st, 200, "auth = false still refused: {body}");
    let log = p.stderr();
    assert!(log.contains("WARN") && log.contains("http.auth = false"), "no warning for auth = false:\n{log}");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
