//! Test support: a private, real Open vSwitch per test (scripts/ovs-sandbox.sh), stopped on drop.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod golden;
pub mod pipeline_env;
pub mod pods;
pub mod two_nodes;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One sandboxed OVS (ovsdb-server + ovs-vswitchd, userspace datapath) in a temporary folder.
pub struct Ovs {
    pub dir: PathBuf,
}

impl Ovs {
    /// Starts OVS with the given bridges (each with dummy ports 1 and 2, named `BR-p1`, `BR-p2`).
    pub fn start(bridges: &[&str]) -> Ovs {
        let base = std::env::temp_dir();
        // pid, a per-process sequence number (two tests may read the same clock value) and time.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = base.join(format!(
            "shardflow-test-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(repo().join("scripts/ovs-sandbox.sh"))
            .arg("up")
            .arg(&dir)
            .args(bridges)
            .output()
            .expect("run scripts/ovs-sandbox.sh (is Open vSwitch installed? scripts/test.sh installs it)");
        assert!(out.status.success(), "ovs sandbox did not start: {}", String::from_utf8_lossy(&out.stderr));
        Ovs { dir }
    }

    fn env(&self, cmd: &mut Command) {
        for v in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            cmd.env(v, &self.dir);
        }
        cmd.env("OVS_PKGDATADIR", "/usr/share/openvswitch");
    }

    /// Runs an OVS tool (`ovs-ofctl`, `ovs-appctl`, `ovs-vsctl`) against this instance.
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool);
        self.env(&mut cmd);
        if tool == "ovs-vsctl" {
            cmd.arg(format!("--db=unix:{}/db.sock", self.dir.display()));
        }
        cmd.args(args).output().unwrap()
    }

    /// Like [`tool`] but panics with OVS's message on failure, returning stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.tool(tool, args);
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ovs-ofctl -O OpenFlow13 dump-flows BR --no-stats`, sorted lines.
    pub fn flows(&self, br: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", br, "--no-stats"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    pub fn mgmt(&self, br: &str) -> String {
        format!("unix:{}/{br}.mgmt", self.dir.display())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// `unix:DIR/db.sock`: this instance's OVSDB address.
    pub fn db(&self) -> String {
        format!("unix:{}/db.sock", self.dir.display())
    }

    /// Stops ovsdb-server (ovs-vswitchd keeps running and reconnects once it is back).
    pub fn stop_ovsdb(&self) {
        self.sandbox("stop-ovsdb");
    }

    /// Starts ovsdb-server again on the same database.
    pub fn start_ovsdb(&self) {
        self.sandbox("start-ovsdb");
    }

    fn sandbox(&self, cmd: &str) {
        let out = Command::new(repo().join("scripts/ovs-sandbox.sh")).arg(cmd).arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "ovs-sandbox.sh {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/ovs-sandbox.sh")).arg("down").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the built `shardflow` binary.
pub fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow")).args(args).output().unwrap()
}

pub fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

// === the shardflow daemon as a child process (tests/daemon_ovs.rs, tests/daemon_config.rs) ===

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when 127.0.0.1:`port` can be bound right now (the listener is dropped at once).
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port P in 20000..60000 with P..P+n free, and a different free HTTP port.
pub fn free_ports(n: u16) -> (u16, u16) {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ (u64::from(std::process::id()) << 20);
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Below the kernel's ephemeral range (32768-60999 here): a port picked there could be taken
    // by any test's outgoing connection between the probe and the daemon's bind.
    for _ in 0..1000 {
        let base = 20000 + (next() % 12_000) as u16;
        let http = 20000 + (next() % 12_000) as u16;
        if http >= base && http <= base + n {
            continue;
        }
        if (base..=base + n).all(port_free) && port_free(http) && reserve(base, n, http) {
            return (base, http);
        }
    }
    panic!("no free ports found");
}

/// Ports handed out by [`free_ports`] in this test process: a port probed free may not be bound
/// yet by the daemon it was picked for, so another test running in parallel must not get it too.
fn reserve(base: u16, n: u16, http: u16) -> bool {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let wanted: Vec<u16> = (base..=base + n).chain([http]).collect();
    if wanted.iter().any(|p| taken.contains(p)) {
        return false;
    }
    taken.extend(wanted);
    true
}

/// The REST bearer token of every daemon this test process starts (`SHARDFLOW_HTTP_TOKEN`),
/// sent by [`http_request`]: random per process, so a stray daemon of another test run does
/// not answer this one's calls.
pub fn test_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut buf = [0u8; 16];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
        buf.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Set the daemon's REST token ([`test_token`]) on a command that starts `shardflow run`, and
/// turn node management off (`SHARDFLOW_NODE_OVSDB=none`): a test daemon must not reach for
/// the OVSDB of `OVS_RUNDIR` or of the system. A test that wants the node agent passes
/// `--ovsdb ADDR` (a flag beats the environment).
pub fn with_token(cmd: &mut Command) -> &mut Command {
    cmd.env("SHARDFLOW_HTTP_TOKEN", test_token()).env("SHARDFLOW_NODE_OVSDB", "none")
}

/// One HTTP/1.1 request over a plain TcpStream (Connection: close), with the test token;
/// returns (status, body).
pub fn http_request(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_request_as(addr, method, path, body, Some(&format!("Bearer {}", test_token()))).map(|(st, _, b)| (st, b))
}

/// [`http_request`] with a chosen `Authorization` header (or none); returns (status, head, body).
pub fn http_request_as(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad response {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Ok((status, head.to_string(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `shardflow run` daemon on free ports, stderr captured in a temporary file (printed when
/// the test fails), killed on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub base_port: u16,
    pub http_port: u16,
    pub shards: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// `run --shards N` on fresh free ports, plus `extra` args; waits for /healthz 200 (10 s).
    pub fn start(shards: u16, extra: &[&str]) -> Daemon {
        Daemon::start_fresh(shards, extra)
    }

    /// [`Daemon::start_on`] on fresh free ports, picked again when the daemon finds one taken:
    /// a port probed free can still be taken by someone else before the daemon binds it.
    fn start_fresh(shards: u16, extra: &[&str]) -> Daemon {
        Daemon::start_fresh_env(shards, extra, &[])
    }

    /// [`Daemon::start`] with extra environment variables for the daemon (e.g. `RUST_LOG`).
    pub fn start_env(shards: u16, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_fresh_env(shards, extra, env)
    }

    fn start_fresh_env(shards: u16, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        for _ in 0..3 {
            let (base, http) = free_ports(shards);
            match Daemon::try_start_on(shards, base, http, extra, env) {
                Ok(d) => return d,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("a port was taken before the daemon bound it; picking others:\n{log}");
                }
                Err(log) => panic!("{log}"),
            }
        }
        let (base, http) = free_ports(shards);
        Daemon::try_start_on(shards, base, http, extra, env).unwrap_or_else(|log| panic!("{log}"))
    }

    /// Same on given ports (a restart on the ports of a stopped daemon).
    pub fn start_on(shards: u16, base_port: u16, http_port: u16, extra: &[&str]) -> Daemon {
        Daemon::try_start_on(shards, base_port, http_port, extra, &[]).unwrap_or_else(|log| panic!("{log}"))
    }

    /// [`Daemon::start_on`], or the daemon's log when it exited before answering.
    fn try_start_on(
        shards: u16,
        base_port: u16,
        http_port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let dir = std::env::temp_dir().join(format!(
            "shardflow-daemon-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("stderr.log");
        let err = std::fs::File::create(&log).unwrap();
        let child = with_token(&mut Command::new(env!("CARGO_BIN_EXE_shardflow")))
            // These tests were written for a daemon that installs only the packet-in dispatch
            // without a [pipeline] section; a test of the zero-config pipeline says
            // `--zero-config true` (flags win over the environment).
            .env("SHARDFLOW_LEARNING_ZERO_CONFIG", "false")
            .args(["run", "--shards", &shards.to_string(), "--base-port", &base_port.to_string()])
            .args(["--http", &format!("127.0.0.1:{http_port}"), "--log-level", "info"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn shardflow");
        let mut d = Daemon { child: Some(child), base_port, http_port, shards, dir, log, exited: None };
        let mut early = None;
        let ok = wait_until(Duration::from_secs(10), || {
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    early = Some(st);
                    return true;
                }
            }
            matches!(d.try_get("/healthz"), Ok((200, _)))
        });
        if let Some(st) = early {
            return Err(format!("shardflow exited early ({st}):\n{}", d.stderr()));
        }
        assert!(ok, "shardflow /healthz not 200 within 10 s:\n{}", d.stderr());
        Ok(d)
    }

    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// The OpenFlow port of shard `i`.
    pub fn of_port(&self, i: u16) -> u16 {
        self.base_port + i
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_request(&self.http_addr(), "GET", path, "")
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(&self.http_addr(), "GET", path, "").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http_request(&self.http_addr(), "POST", path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn delete(&self, path: &str) -> (u16, String) {
        http_request(&self.http_addr(), "DELETE", path, "").unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    /// GET returning parsed JSON, asserting 200.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (st, body) = self.get(path);
        assert_eq!(st, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Points `br` of `ovs` at every shard's port (fanout) or at the first one (`single`),
    /// out-of-band.
    pub fn attach(&self, ovs: &Ovs, br: &str, single: bool) {
        let n = if single { 1 } else { self.shards };
        let mut args: Vec<String> = vec!["set-controller".into(), br.into()];
        for i in 0..n {
            args.push(format!("tcp:127.0.0.1:{}", self.of_port(i)));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ovs.ok("ovs-vsctl", &refs);
        let uuids = ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]);
        for u in uuids.split_whitespace() {
            ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit; None if it did not exit in time.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited {
            return Some(st);
        }
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.exited = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.exited.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("---- shardflow stderr ({}) ----\n{}", self.log.display(), self.stderr());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// === additions for tests/pipeline_daemon.rs ===

impl Ovs {
    /// `scripts/ovs-sandbox.sh restart-vswitchd DIR`: ovs-vswitchd stops and starts again on the
    /// same database (its flow tables start empty; ports keep their numbers).
    pub fn restart_vswitchd(&self) {
        let out = Command::new(repo().join("scripts/ovs-sandbox.sh"))
            .arg("restart-vswitchd")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "restart-vswitchd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The number of records in a classic pcap file (24-byte header, then 16-byte record headers
/// with incl_len at offset 8, little-endian as OVS writes it); 0 for a missing file. A record
/// cut short (OVS still writing it) is not counted.
pub fn pcap_packet_count(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap_or_default();
    let mut n = 0;
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes([b[at + 8], b[at + 9], b[at + 10], b[at + 11]]) as usize;
        at += 16;
        if at + incl > b.len() {
            break;
        }
        at += incl;
        n += 1;
    }
    n
}

impl Daemon {
    /// `run --shards N --config FILE` on fresh free ports, FILE holding `toml` (written to a
    /// temporary file, removed once the daemon answers: it reads the file at start-up only).
    pub fn start_with_config(shards: u16, toml: &str) -> Daemon {
        Daemon::start_with_config_args(shards, toml, &[])
    }

    /// Same on given ports (a restart on the ports of a stopped daemon).
    pub fn start_on_with_config(shards: u16, base_port: u16, http_port: u16, toml: &str) -> Daemon {
        let file = std::env::temp_dir().join(format!(
            "shardflow-config-{}-{}.toml",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&file, toml).unwrap();
        let d = Daemon::start_on(shards, base_port, http_port, &["--config", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        d
    }
}

// === additions for tests/decisions_daemon.rs ===

impl Daemon {
    /// `run --shards N --config FILE EXTRA...` on fresh free ports (e.g. `--mode single`).
    pub fn start_with_config_args(shards: u16, toml: &str, extra: &[&str]) -> Daemon {
        let file = std::env::temp_dir().join(format!(
            "shardflow-config-{}-{}.toml",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&file, toml).unwrap();
        let mut args: Vec<&str> = vec!["--config", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let d = Daemon::start_fresh(shards, &args);
        let _ = std::fs::remove_file(&file);
        d
    }

    /// Sum of the samples of a Prometheus metric at /metrics whose label text contains every
    /// needle (e.g. `verdict="allow"`); 0 when absent.
    pub fn metric_sum(&self, name: &str, needles: &[&str]) -> f64 {
        let (st, body) = self.get("/metrics");
        assert_eq!(st, 200, "GET /metrics: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }
}

// === additions for tests/policy_daemon.rs ===

/// The reference cni-ctl server (`shardflow cnictl --policy FILE --listen ADDR --latency-ms N`)
/// as a child process; its stderr in a temporary file (printed when the test fails), killed on
/// drop.
pub struct Cnictl {
    pub child: Option<Child>,
    /// The address it listens on (the port it picked for `127.0.0.1:0`).
    pub addr: std::net::SocketAddr,
    pub log: PathBuf,
    // Kept open: cnictl writes its one line and nothing more, but must never see EPIPE.
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl Cnictl {
    /// Starts it and waits (10 s) for its `cnictl listening on ADDR` line. A port that is not
    /// free yet (exit 69, e.g. just released) is tried again for up to 5 s.
    pub fn start(policy: &Path, listen: &str, latency_ms: u64) -> Cnictl {
        Cnictl::start_args(policy, listen, latency_ms, &[])
    }

    /// [`Cnictl::start`] with more arguments (e.g. `--tls-cert C --tls-key K --tls-client-ca A`).
    pub fn start_args(policy: &Path, listen: &str, latency_ms: u64, extra: &[&std::ffi::OsStr]) -> Cnictl {
        use std::io::BufRead as _;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::env::temp_dir().join(format!(
                "shardflow-cnictl-{}-{}.log",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            ));
            let err = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_shardflow"))
                .args(["cnictl", "--policy"])
                .arg(policy)
                .args(["--listen", listen, "--latency-ms", &latency_ms.to_string(), "--log-level", "info"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(err))
                .spawn()
                .expect("spawn shardflow cnictl");
            // read_line returns at EOF (the child exited) as well.
            let (tx, rx) = std::sync::mpsc::channel();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(stdout);
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let _ = tx.send((line, r));
            });
            let got = rx.recv_timeout(Duration::from_secs(10));
            let Ok((line, reader)) = got else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cnictl printed no line within 10 s:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            };
            if let Some(addr) = line.trim().strip_prefix("cnictl listening on ") {
                return Cnictl { child: Some(child), addr: addr.parse().unwrap(), log, _stdout: Some(reader) };
            }
            let st = child.wait().unwrap();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            if st.code() == Some(69) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            panic!("cnictl did not start ({st}), stdout {line:?}:\n{text}");
        }
    }

    /// `http://ADDR`, what `[policy] cnictl` wants.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://ADDR`, what `[policy] cnictl` wants when cnictl serves TLS.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (5 s) for the exit; its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("cnictl running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cnictl did not exit within 5 s of SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cnictl {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- cnictl stderr ({}) ----\n{}", self.log.display(), self.stderr());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A free 127.0.0.1 port right now (bound to port 0 and released).
pub fn free_port() -> u16 {
    // Outside the ephemeral range, for the same reason as `free_ports`.
    free_ports(0).1
}

/// What an OpenFlow 1.3 switch answers to `m` from the daemon during the handshake and a pipeline
/// install, minimally (None: nothing to answer): echo, features (with `dpid`), get-config,
/// multipart (port desc, desc padded to its fixed size, any other kind empty), barrier, and an
/// ONF bundle control (its reply type). For the hand-written fake switches of the tests.
#[allow(dead_code)]
pub fn switch_answer(m: &[u8], dpid: u64) -> Option<Vec<u8>> {
    let xid = &m[4..8];
    let reply = |ty: u8, body: &[u8]| {
        let mut r = vec![4, ty];
        r.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        r.extend_from_slice(xid);
        r.extend_from_slice(body);
        r
    };
    Some(match m[1] {
        2 => reply(3, &m[8..]),
        5 => {
            let mut b = dpid.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 0, 254, 0, 0, 0, 0, 0, 0, 0x4f, 0, 0, 0, 0]);
            reply(6, &b)
        }
        7 => reply(8, &[0, 0, 0xff, 0xff]),
        18 => {
            let mp = u16::from_be_bytes([m[8], m[9]]);
            let mut b = mp.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 6]);
            if mp == 0 {
                b.resize(8 + 1056, 0);
            }
            reply(19, &b)
        }
        20 => reply(21, &[]),
        4 if m.len() >= 24 && m[8..12] == [0x4f, 0x4e, 0x46, 0] && m[12..16] == 2300u32.to_be_bytes() => {
            // bundle control request -> its reply (type + 1)
            let mut r = m.to_vec();
            let t = u16::from_be_bytes([r[20], r[21]]) + 1;
            r[20..22].copy_from_slice(&t.to_be_bytes());
            r
        }
        _ => return None,
    })
}
