//! The HTTP endpoint of the real daemon (`shardflow run`) at its edges: bodies over the limit,
//! oversized and slow request heads, the connection cap, health checks behind heavy requests,
//! file-descriptor exhaustion, and (against a real Open vSwitch) health behind many flow dumps.
//! Each test starts its own daemon on free ports. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{free_ports, http_request, wait_until, Daemon, Ovs};

// === helpers ===

/// What came back on a raw connection: the status line's code if any, and whether the server
/// closed the connection (EOF or reset) — as opposed to our read timing out.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    head: String,
    closed: bool,
}

/// Reads what the server sends until it closes the connection or `limit` passes.
fn read_outcome(s: &mut TcpStream, limit: Duration) -> Outcome {
    let until = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break true, // reset
        }
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok());
    Outcome { status, head, closed }
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.http_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Resident memory of `pid` in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `GET /healthz` on a fresh connection, with the time it took.
fn healthz(addr: &str) -> (std::io::Result<(u16, String)>, Duration) {
    let t = Instant::now();
    let r = http_request(addr, "GET", "/healthz", "");
    (r, t.elapsed())
}

const ONE_SHARD: &str = "[shards]\ncount = 1\n";

// === bodies and heads ===

#[test]
fn body_over_the_limit_is_413_at_once_and_never_read() {
    let d = Daemon::start_with_config(1, ONE_SHARD);
    let before = rss_kib(d.pid());
    let mut s = connect(&d);
    let head = format!(
        "POST /v1/switches/1/flows HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Authorization: Bearer {}\r\nContent-Length: 104857600\r\n\r\ntable=0,actions=drop\n",
        support::test_token()
    );
    s.write_all(head.as_bytes()).unwrap();
    // Keep pushing the 100 MiB body from another thread while the answer is read: a server
    // that reads it takes it all; ours stops reading and closes, so the writer fails early.
    let mut w = s.try_clone().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let n = written.clone();
    let writer = std::thread::spawn(move || {
        w.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = vec![b'#'; 64 << 10];
        while n.load(Ordering::Relaxed) < 100 << 20 {
            match w.write(&chunk) {
                Ok(k) => n.fetch_add(k as u64, Ordering::Relaxed),
                Err(_) => break,
            };
        }
    });
    let out = read_outcome(&mut s, Duration::from_secs(10));
    assert_eq!(out.status, Some(413), "{out:?}");
    assert!(out.head.to_ascii_lowercase().contains("connection: close"), "{out:?}");
    assert!(out.closed, "the connection stays open after a 413: {out:?}");
    drop(s);
    writer.join().unwrap();
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < 100 << 20, "the daemon took the whole 100 MiB body");
    let grown = rss_kib(d.pid()).saturating_sub(before);
    eprintln!("413 for a declared 100 MiB body: {sent} bytes pushed before the close, RSS +{grown} KiB");
    assert!(grown < 16 << 10, "RSS grew by {grown} KiB for a refused body ({sent} bytes sent)");
    // The daemon goes on serving.
    assert_eq!(d.get("/healthz").0, 200);
    assert!(d.metric_sum("shardflow_http_requests_total", &["status=\"413\""]) >= 1.0);
}

#[test]
fn oversized_request_head_is_refused() {
    let d = Daemon::start_with_config(1, ONE_SHARD);
    let mut s = connect(&d);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 << 10));
        let _ = w.write_all(big.as_bytes());
    });
    let out = read_outcome(&mut s, Duration::from_secs(10));
    writer.join().unwrap();
    // 431 when the answer wins the race with the reset of the unread bytes; a close otherwise.
    assert!(out.closed, "no answer and no close for a 64 KiB head: {out:?}");
    assert!(matches!(out.status, None | Some(431)), "{out:?}");
    // A head just under the limit is fine.
    let mut s = connect(&d);
    let ok =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n", "a".repeat(12 << 10));
    s.write_all(ok.as_bytes()).unwrap();
    assert_eq!(read_outcome(&mut s, Duration::from_secs(10)).status, Some(200));
}

#[test]
fn slow_request_head_is_cut_at_the_header_timeout() {
    let d = Daemon::start_with_config(1, &format!("{ONE_SHARD}[http]\nheader_timeout_ms = 300\n"));
    let mut s = connect(&d);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let out = read_outcome(&mut s, Duration::from_secs(10));
    assert!(out.closed, "a head never finished keeps its connection: {out:?}");
    assert!(matches!(out.status, None | Some(408)), "{out:?}");
    assert_eq!(d.get("/healthz").0, 200);
}

// === lanes and caps ===

#[test]
fn healthz_and_metrics_answer_while_heavy_requests_hold_every_slot() {
    let d = Daemon::start_with_config(1, &format!("{ONE_SHARD}[http]\nmax_in_flight = 2\n"));
    // Ten REST requests whose bodies never finish: two hold the heavy slots (reading their
    // body until the request deadline, 10 s), eight wait for a slot.
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = connect(&d);
        let req = format!(
            "POST /v1/switches/1/flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 100\r\n\r\ntable=0",
            support::test_token()
        );
        s.write_all(req.as_bytes()).unwrap();
        slow.push(s);
    }
    for _ in 0..5 {
        let (r, took) = healthz(&d.http_addr());
        let (status, body) = r.unwrap();
        assert_eq!(status, 200, "{body}");
        // Far below the 10 s the heavy requests hold their slots.
        assert!(took < Duration::from_secs(3), "/healthz took {took:?} behind heavy requests");
    }
    let (st, body) = d.get("/metrics");
    assert_eq!(st, 200);
    assert!(body.contains("shardflow_http_connections_refused_total"), "{body}");
    drop(slow);
}

#[test]
fn connections_over_the_cap_are_refused_and_counted() {
    let d =
        Daemon::start_with_config(1, &format!("{ONE_SHARD}[http]\nmax_connections = 4\nheader_timeout_ms = 30000\n"));
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&d);
        s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        held.push(s);
    }
    let mut fifth = connect(&d);
    let out = read_outcome(&mut fifth, Duration::from_secs(10));
    assert!(out.closed, "the connection over the cap was kept: {out:?}");
    assert!(matches!(out.status, None | Some(503)), "{out:?}");
    drop(held);
    let mut refused = 0.0;
    // The server notices the held connections' close in its own time: until then a scrape may be
    // refused like the fifth connection was.
    let ok = wait_until(Duration::from_secs(10), || {
        if !d.try_get("/metrics").is_ok_and(|(st, _)| st == 200) {
            return false;
        }
        refused = d.metric_sum("shardflow_http_connections_refused_total", &[]);
        refused >= 1.0
    });
    assert!(ok, "refusal not counted: {refused}");
}

// === file descriptors ===

/// The daemon under `ulimit -n LIMIT` (soft and hard), stderr to a file, killed on drop.
struct Limited {
    child: Child,
    http: String,
    log: PathBuf,
    dir: PathBuf,
}

impl Limited {
    fn start(limit: u32, toml: &str) -> Limited {
        let dir = std::env::temp_dir().join(format!("shardflow-fd-{}-{}", std::process::id(), limit));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, toml).unwrap();
        let log = dir.join("stderr.log");
        let (base, http) = free_ports(1);
        let child = support::with_token(&mut Command::new("bash"))
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$@\""))
            .arg("bash")
            .arg(env!("CARGO_BIN_EXE_shardflow"))
            .args(["run", "--shards", "1", "--base-port", &base.to_string()])
            .args(["--http", &format!("127.0.0.1:{http}"), "--log-level", "info", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let d = Limited { child, http: format!("127.0.0.1:{http}"), log, dir };
        let ok = wait_until(Duration::from_secs(10), || matches!(healthz(&d.http).0, Ok((200, _))));
        assert!(ok, "no /healthz 200 under ulimit -n {limit}:\n{}", d.stderr());
        d
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- shardflow stderr ----\n{}", self.stderr());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn http_survives_file_descriptor_exhaustion() {
    let d = Limited::start(128, "[shards]\ncount = 1\n[http]\nmax_connections = 1000\nheader_timeout_ms = 60000\n");
    // Idle connections until the daemon runs out of descriptors (its accept fails).
    let mut idle = Vec::new();
    let exhausted = wait_until(Duration::from_secs(20), || {
        for _ in 0..16 {
            if let Ok(s) = TcpStream::connect(&d.http) {
                idle.push(s);
            }
        }
        d.stderr().contains("http accept failed")
    });
    assert!(exhausted, "no accept failure after {} connections:\n{}", idle.len(), d.stderr());
    eprintln!("accept failed (EMFILE under ulimit -n 128) with {} connections open", idle.len());
    drop(idle);
    let ok = wait_until(Duration::from_secs(10), || matches!(healthz(&d.http).0, Ok((200, _))));
    assert!(ok, "/healthz does not answer after the connections closed:\n{}", d.stderr());
    let (st, metrics) = http_request(&d.http, "GET", "/metrics", "").unwrap();
    assert_eq!(st, 200);
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("shardflow_http_accept_errors_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "accept errors not counted");
}

// === against a real switch ===

#[test]
fn healthz_answers_behind_many_parallel_flow_dumps() {
    let ovs = Ovs::start(&["br0"]);
    let d = Daemon::start_with_config(1, &format!("{ONE_SHARD}[http]\nmax_connections = 512\n"));
    d.attach(&ovs, "br0", false);
    let ok = wait_until(Duration::from_secs(15), || {
        d.json("/v1/switches").as_array().is_some_and(|a| a.iter().any(|s| !s["pipeline_installed_ms"].is_null()))
    });
    assert!(ok, "switch not connected:\n{}", d.stderr());
    let path = "/v1/switches/0000000000000001/flows";
    assert_eq!(d.get(path).0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let dumps = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (stop, dumps, addr) = (stop.clone(), dumps.clone(), d.http_addr());
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((200, _)) = http_request(&addr, "GET", path, "") {
                    dumps.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = dumps.load(Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (r, took) = healthz(&d.http_addr());
        assert_eq!(r.unwrap().0, 200);
        worst = worst.max(took);
    }
    let during = dumps.load(Ordering::Relaxed) - started;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!("20 /healthz behind 64 looping flow dumps ({during} dumps meanwhile): worst {worst:?}");
    assert!(during > 0, "no flow dump completed meanwhile: the load was not there");
    assert!(worst < Duration::from_secs(3), "/healthz took {worst:?} behind flow dumps");
}
