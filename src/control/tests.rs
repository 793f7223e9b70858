//! The HTTP layer and the control plane over real sockets on 127.0.0.1, with a fake
//! [`ControlApi`] (the daemon is not under test here).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::openflow::flow::FlowMod;

// === a fake api ===

#[derive(Debug, Clone, PartialEq)]
enum Call {
    FlowMods { dpid: Dpid, command: FlowCommand, flows: Vec<String>, bundle: bool },
    Delete { dpid: Dpid, filter: DeleteFilter },
}

#[derive(Default)]
struct FakeApi {
    not_ready: AtomicBool,
    calls: Mutex<Vec<Call>>,
    deadlines_ok: AtomicBool,
}

impl FakeApi {
    fn new() -> Arc<FakeApi> {
        let f = FakeApi::default();
        f.deadlines_ok.store(true, Ordering::SeqCst);
        Arc::new(f)
    }

    fn check(&self, dpid: Dpid, deadline: Instant) -> Result<(), ApiError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || left > Duration::from_secs(10) {
            self.deadlines_ok.store(false, Ordering::SeqCst);
        }
        match dpid.0 {
            1 => Ok(()),
            2 => Err(ApiError::Refused { name: "OFPBAC_BAD_OUT_PORT".into(), detail: "port 99".into() }),
            3 => Err(ApiError::Timeout),
            4 => Err(ApiError::Failed("connection lost".into())),
            5 => Err(ApiError::NotReady("handshake in progress".into())),

            _ => Err(ApiError::UnknownSwitch(dpid)),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl ControlApi for FakeApi {
    fn ready(&self) -> Result<(), String> {
        if self.not_ready.load(Ordering::SeqCst) {
            Err("no switch connected yet".into())
        } else {
            Ok(())
        }
    }

    fn switches(&self, _deadline: Instant) -> Result<Vec<SwitchInfo>, ApiError> {
        if self.not_ready.load(Ordering::SeqCst) {
            return Err(ApiError::NotReady("starting".into()));
        }
        Ok(vec![SwitchInfo {
            dpid: Dpid(1),
            shard: 1,
            peer: "127.0.0.1:40000".into(),
            connected_secs: 3,
            n_tables: 254,
            connections: 2,
            pipeline_installed_ms: Some(1.5),
        }])
    }

    fn dump_flows(&self, dpid: Dpid, deadline: Instant) -> Result<Vec<String>, ApiError> {
        if matches!(dpid.0, 6 | 7) {
            // Not a deadline check: these wait on purpose.
            let left = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(if dpid.0 == 6 { left } else { left + Duration::from_secs(3) });
            return Err(ApiError::Timeout);
        }
        self.check(dpid, deadline)?;
        Ok(vec![" cookie=0x5, table=3, priority=100,tcp actions=drop".into()])
    }

    fn flow_mods(
        &self,
        dpid: Dpid,
        command: FlowCommand,
        flows: Vec<FlowMod>,
        bundle: bool,
        deadline: Instant,
    ) -> Result<FlowModReply, ApiError> {
        self.check(dpid, deadline)?;
        let n = flows.len();
        let flows = flows.iter().map(|f| f.to_flow_text()).collect();
        self.calls.lock().unwrap().push(Call::FlowMods { dpid, command, flows, bundle });
        Ok(FlowModReply { applied: n, bundle })
    }

    fn delete_flows(&self, dpid: Dpid, filter: DeleteFilter, deadline: Instant) -> Result<FlowModReply, ApiError> {
        self.check(dpid, deadline)?;
        self.calls.lock().unwrap().push(Call::Delete { dpid, filter });
        Ok(FlowModReply { applied: 1, bundle: false })
    }

    fn shards(&self, _deadline: Instant) -> Result<Vec<ShardStats>, ApiError> {
        let mut s = ShardStats { shard: 0, cpu: Some(0), packet_ins: 42, ..Default::default() };
        s.extra.insert("hot_syn_entries".into(), serde_json::json!(7));
        Ok(vec![s, ShardStats { shard: 1, ..Default::default() }])
    }
}

// === a tiny HTTP client ===

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    request_raw(addr, method, path, body, body.len())
}

fn request_raw(addr: SocketAddr, method: &str, path: &str, body: &[u8], content_length: usize) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {content_length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body: ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Resp { status, headers, body: body.to_string() }
}

fn start(api: Arc<FakeApi>) -> (ControlPlane, Arc<Metrics>) {
    let mut cfg = Config::default();
    // Authentication has its own tests (control::auth, tests/security_rest.rs).
    cfg.http.auth = false;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.openflow.request_timeout_secs = 2;
    let metrics = Arc::new(Metrics::new().unwrap());
    let cp = ControlPlane::start(&cfg, metrics.clone(), api).unwrap();
    (cp, metrics)
}

// === routes ===

#[test]
fn healthz_follows_readiness() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let r = request(cp.http_addr(), "GET", "/healthz", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    api.not_ready.store(true, Ordering::SeqCst);
    let r = request(cp.http_addr(), "GET", "/healthz", b"");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("no switch connected yet"), "{}", r.body);
    let r = request(cp.http_addr(), "POST", "/healthz", b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET"));
}

#[test]
fn readyz_follows_pipelines_ready() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let r = request(cp.http_addr(), "GET", "/readyz", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    api.not_ready.store(true, Ordering::SeqCst);
    let r = request(cp.http_addr(), "GET", "/readyz", b"");
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("not ready: "), "{}", r.body);
    assert_eq!(request(cp.http_addr(), "POST", "/readyz", b"").status, 405);
}

#[test]
fn metrics_route_serves_prometheus_text() {
    let api = FakeApi::new();
    let (cp, metrics) = start(api);
    metrics.shard(0, 1).packet_in("udp");
    let _ = request(cp.http_addr(), "GET", "/healthz", b"");
    let r = request(cp.http_addr(), "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    assert!(r.body.contains("shardflow_packet_in_total{kind=\"udp\",shard=\"0\"} 1"), "{}", r.body);
    assert!(r.body.contains("shardflow_http_requests_total{route=\"/healthz\",status=\"200\"} 1"));
    assert!(r.body.contains("# TYPE shardflow_packet_in_decision_seconds histogram"));
    assert_eq!(request(cp.http_addr(), "DELETE", "/metrics", b"").status, 405);
}

#[test]
fn switches_and_shards_json() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let r = request(cp.http_addr(), "GET", "/v1/switches", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v[0]["dpid"], "0000000000000001");
    assert_eq!(v[0]["shard"], 1);
    assert_eq!(v[0]["n_tables"], 254);
    let r = request(cp.http_addr(), "GET", "/v1/shards", b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["packet_ins"], 42);
    assert_eq!(v[0]["hot_syn_entries"], 7, "extra fields are flattened");
    assert_eq!(request(cp.http_addr(), "POST", "/v1/switches", b"").status, 405);
    assert_eq!(request(cp.http_addr(), "PUT", "/v1/shards", b"").status, 405);
    api.not_ready.store(true, Ordering::SeqCst);
    let r = request(cp.http_addr(), "GET", "/v1/switches", b"");
    assert_eq!(r.status, 503);
    assert!(r.error().contains("starting"));
}

#[test]
fn unknown_paths_are_404() {
    let (cp, _) = start(FakeApi::new());
    for p in ["/", "/v1", "/v2/switches", "/v1/switches/1", "/v1/switches/1/flows/extra", "/healthz/x"] {
        let r = request(cp.http_addr(), "GET", p, b"");
        assert_eq!(r.status, 404, "{p}");
        assert!(r.error().contains("no such path"), "{p}: {}", r.body);
    }
}

#[test]
fn dump_flows_and_dpid_forms() {
    let (cp, _) = start(FakeApi::new());
    for dpid in ["0000000000000001", "0x1", "1", "00:00:00:00:00:00:00:01"] {
        let r = request(cp.http_addr(), "GET", &format!("/v1/switches/{dpid}/flows"), b"");
        assert_eq!(r.status, 200, "{dpid}: {}", r.body);
        assert_eq!(r.json()[0], " cookie=0x5, table=3, priority=100,tcp actions=drop");
    }
    let r = request(cp.http_addr(), "GET", "/v1/switches/xyz/flows", b"");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("bad dpid \"xyz\""), "{}", r.body);
    let r = request(cp.http_addr(), "GET", "/v1/switches/11112222333344445/flows", b"");
    assert_eq!(r.status, 400);
    let r = request(cp.http_addr(), "GET", "/v1/switches/1/flows?table=3", b"");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("\"table\""), "{}", r.body);
    let r = request(cp.http_addr(), "PUT", "/v1/switches/1/flows", b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, POST, DELETE"));
}

#[test]
fn api_errors_map_to_statuses() {
    let (cp, _) = start(FakeApi::new());
    let get = |dpid: &str| request(cp.http_addr(), "GET", &format!("/v1/switches/{dpid}/flows"), b"");
    let r = get("2");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["openflow_error"], "OFPBAC_BAD_OUT_PORT");
    assert!(r.error().contains("OFPBAC_BAD_OUT_PORT"));
    assert_eq!(get("3").status, 504);
    let r = get("4");
    assert_eq!(r.status, 502);
    assert!(r.error().contains("connection lost"));
    assert_eq!(get("5").status, 503);
    let r = get("99");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("unknown switch 0000000000000099"), "{}", r.body);
    // The same mapping on POST and DELETE.
    let r = request(cp.http_addr(), "POST", "/v1/switches/2/flows", b"table=3,actions=output:99\n");
    assert_eq!(r.status, 502);
    assert_eq!(request(cp.http_addr(), "DELETE", "/v1/switches/99/flows?force=true", b"").status, 404);
}

#[test]
fn post_flows_parses_and_forwards() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let body = b"# a comment\ntable=3,priority=100,tcp,nw_src=10.0.0.1 actions=drop\n\n\
                 table=0,priority=5,arp,actions=NORMAL\n";
    let r = request(cp.http_addr(), "POST", "/v1/switches/0x1/flows?command=add&bundle=true", body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({"applied": 2, "bundle": true}));
    let r =
        request(cp.http_addr(), "POST", "/v1/switches/1/flows?command=delete_strict", b"table=3,tcp,priority=100\n");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(cp.http_addr(), "POST", "/v1/switches/1/flows", b"actions=drop");
    assert_eq!(r.status, 200, "{}", r.body);
    let calls = api.calls();
    assert_eq!(calls.len(), 3);
    match &calls[0] {
        Call::FlowMods { dpid, command, flows, bundle } => {
            assert_eq!((*dpid, *command, *bundle), (Dpid(1), FlowCommand::Add, true));
            assert_eq!(flows.len(), 2);
            assert!(flows[0].contains("nw_src=10.0.0.1"), "{flows:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&calls[1], Call::FlowMods { command: FlowCommand::DeleteStrict, bundle: false, .. }));
    assert!(matches!(&calls[2], Call::FlowMods { command: FlowCommand::Add, bundle: false, .. }));
    assert!(api.deadlines_ok.load(Ordering::SeqCst), "deadline must be in the future, within the timeout");
}

#[test]
fn post_flows_rejects_bad_input() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let post = |q: &str, body: &[u8]| request(cp.http_addr(), "POST", &format!("/v1/switches/1/flows{q}"), body);
    let r = post("", b"table=3,actions=drop\ntable=3,nw_srcc=1,actions=drop\n");
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("line 2:") && r.error().contains("nw_srcc"), "{}", r.body);
    let r = post("?command=replace", b"actions=drop");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("bad command \"replace\""), "{}", r.body);
    let r = post("?bundle=maybe", b"actions=drop");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("bad bundle"), "{}", r.body);
    let r = post("?atomic=1", b"actions=drop");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("unknown query parameter \"atomic\""), "{}", r.body);
    let r = post("?command=add&command=modify", b"actions=drop");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("twice"), "{}", r.body);
    let r = post("", b"\n# only a comment\n");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("no flows"), "{}", r.body);
    let r = post("", &[0xff, 0xfe, b'\n']);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("UTF-8"), "{}", r.body);
    let r = request(cp.http_addr(), "POST", "/v1/switches/zz/flows", b"actions=drop");
    assert_eq!(r.status, 400);
    assert!(api.calls().is_empty(), "nothing reaches the api on a 400");
}

#[test]
fn body_over_one_mib_is_413() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    // Declared too large: refused before reading.
    let r = request_raw(cp.http_addr(), "POST", "/v1/switches/1/flows", b"", (1 << 20) + 1);
    assert_eq!(r.status, 413);
    assert!(r.error().contains("larger than 1048576"), "{}", r.body);
    // Really too large.
    let line = b"table=3,priority=1,actions=drop\n";
    let body: Vec<u8> = line.iter().copied().cycle().take((1 << 20) + line.len()).collect();
    let r = request(cp.http_addr(), "POST", "/v1/switches/1/flows", &body);
    assert_eq!(r.status, 413);
    assert!(api.calls().is_empty());
    // The server still answers afterwards.
    assert_eq!(request(cp.http_addr(), "GET", "/healthz", b"").status, 200);
}

/// Dpid 6 waits until its deadline (a shard that does not answer), dpid 7 blocks 3 s past it (an
/// api that ignores its deadline). Both answer 504 by the deadline (plus the grace for 7), and
/// health, metrics and cheap REST calls go on answering while they hold every heavy slot.
#[test]
fn unresponsive_shard_is_504_and_health_still_answers() {
    let api = FakeApi::new();
    let mut cfg = Config::default();
    // Authentication has its own tests (control::auth, tests/security_rest.rs).
    cfg.http.auth = false;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.openflow.request_timeout_secs = 1;
    cfg.http.max_in_flight = 4;
    let metrics = Arc::new(Metrics::new().unwrap());
    let cp = ControlPlane::start(&cfg, metrics, api).unwrap();
    let addr = cp.http_addr();
    // Fill every heavy slot with calls to the stalled switches.
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let dpid = if i % 2 == 0 { 6 } else { 7 };
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = request(addr, "GET", &format!("/v1/switches/{dpid}/flows"), b"");
                (dpid, r, t.elapsed())
            })
        })
        .collect();
    // Meanwhile health and metrics answer, each on a fresh connection, several times over.
    let until = Instant::now() + Duration::from_millis(800);
    let mut n = 0;
    while Instant::now() < until {
        assert_eq!(request(addr, "GET", "/healthz", b"").status, 200);
        assert_eq!(request(addr, "GET", "/metrics", b"").status, 200);
        n += 1;
    }
    assert!(n >= 2, "health answered only {n} times in 800 ms");
    for h in slow {
        let (dpid, r, took) = h.join().unwrap();
        assert_eq!(r.status, 504, "dpid {dpid}: {}", r.body);
        // The request deadline is 1 s; dpid 7 gets the 0.5 s grace on top, never its 4 s.
        assert!(took < Duration::from_millis(2500), "dpid {dpid}: 504 after {took:?}");
    }
}

/// A body that never finishes holds its slot only until the request deadline: then 408 and the
/// connection closed, and nothing reaches the api.
#[test]
fn a_body_that_never_finishes_is_408_at_the_deadline() {
    let api = FakeApi::new();
    let mut cfg = Config::default();
    // Authentication has its own tests (control::auth, tests/security_rest.rs).
    cfg.http.auth = false;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.openflow.request_timeout_secs = 1;
    let metrics = Arc::new(Metrics::new().unwrap());
    let cp = ControlPlane::start(&cfg, metrics, api.clone()).unwrap();
    let mut s = TcpStream::connect(cp.http_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/switches/1/flows HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\ntable=0").unwrap();
    let mut raw = Vec::new();
    // read_to_end returns only once the server closes (or after the 5 s read timeout: an error).
    s.read_to_end(&mut raw).expect("the connection was not closed");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(api.calls().is_empty());
}

#[test]
fn delete_flows_query() {
    let api = FakeApi::new();
    let (cp, _) = start(api.clone());
    let del = |q: &str| request(cp.http_addr(), "DELETE", &format!("/v1/switches/1/flows{q}"), b"");
    // A mask that leaves the category byte free can reach the daemon's flows: force.
    assert_eq!(del("?cookie=0x10&cookie_mask=0xf0&table=3").status, 409);
    assert_eq!(del("?cookie=0x10&cookie_mask=0xf0&table=3&force=true").status, 200);
    assert_eq!(del("?cookie=0x10").status, 200);
    assert_eq!(del("?force=true").status, 200);
    let calls = api.calls();
    let filters: Vec<DeleteFilter> = calls
        .iter()
        .map(|c| match c {
            Call::Delete { filter, .. } => *filter,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(filters[0], DeleteFilter { cookie: 0x10, cookie_mask: 0xf0, table: Some(3) });
    assert_eq!(filters[1], DeleteFilter { cookie: 0x10, cookie_mask: u64::MAX, table: None });
    assert_eq!(filters[2], DeleteFilter::default());
    for (q, needle) in [
        ("?cookie=zz", "bad cookie"),
        ("?cookie_mask=0xg", "bad cookie_mask"),
        ("?table=255", "bad table"),
        ("?table=-1", "bad table"),
        ("?priority=5", "unknown query parameter \"priority\""),
        // A mask alone is not cookie 0.
        ("?cookie_mask=0xff", "cookie_mask without cookie"),
        ("?force=yes&cookie=1", "bad force"),
    ] {
        let r = del(q);
        assert_eq!(r.status, 400, "{q}");
        assert!(r.error().contains(needle), "{q}: {}", r.body);
    }
    // Anything that can reach the daemon's dispatch or pipeline flows needs force=true.
    for (q, needle) in [
        ("", "without a cookie filter would delete the daemon's own dispatch and pipeline flows"),
        ("?table=3", "dispatch and pipeline"),
        ("?cookie=0x0000020000000000&cookie_mask=0x0000ff0000000000", "own pipeline flows"),
        ("?cookie=0x0000010000000007", "own dispatch flows"),
        ("?force=false", "force=true"),
    ] {
        let r = del(q);
        assert_eq!(r.status, 409, "{q}: {}", r.body);
        assert!(r.error().contains(needle), "{q}: {}", r.body);
    }
    // The manual category, by mask: allowed.
    assert_eq!(del("?cookie=0x00000f0000000000&cookie_mask=0x0000ff0000000000").status, 200);
    assert_eq!(api.calls().len(), 4);
}

// === lifecycle ===

#[test]
fn shutdown_stops_http_and_runtime_within_a_second() {
    let (cp, _) = start(FakeApi::new());
    let addr = cp.http_addr();
    let signal = cp.shutdown_signal();
    // A task on the control runtime sees the shutdown too.
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = signal.clone();
    cp.runtime().spawn(async move {
        s2.wait().await;
        let _ = tx.send(());
    });
    assert_eq!(request(addr, "GET", "/healthz", b"").status, 200);
    assert!(!signal.is_triggered());
    let t0 = Instant::now();
    cp.shutdown();
    let reason = cp.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "took {:?}", t0.elapsed());
    assert_eq!(reason, ShutdownReason::Requested);
    assert!(signal.is_triggered());
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_ok(), "runtime task woke up");
    // The port is closed: it can be bound again, and connecting fails.
    let l = TcpListener::bind(addr);
    assert!(l.is_ok(), "http port still held: {l:?}");
    drop(l);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn dropping_the_control_plane_stops_it() {
    let (cp, _) = start(FakeApi::new());
    let addr = cp.http_addr();
    let signal = cp.shutdown_signal();
    let t0 = Instant::now();
    drop(cp);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(signal.is_triggered());
    assert!(TcpListener::bind(addr).is_ok());
}

#[test]
fn trigger_from_a_component_stops_the_plane() {
    let (cp, _) = start(FakeApi::new());
    cp.shutdown_trigger().trigger(ShutdownReason::Fatal);
    assert_eq!(cp.join().unwrap(), ShutdownReason::Fatal);
}

#[test]
fn http_port_taken_is_an_error_naming_it() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let mut cfg = Config::default();
    // Authentication has its own tests (control::auth, tests/security_rest.rs).
    cfg.http.auth = false;
    cfg.http.listen = addr;
    let metrics = Arc::new(Metrics::new().unwrap());
    let err = match ControlPlane::start(&cfg, metrics, FakeApi::new()) {
        Err(e) => e,
        Ok(_) => panic!("bound a taken port"),
    };
    assert!(matches!(err, ControlError::HttpBind { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn shutdown_pair_made_before_start_is_used() {
    let (trigger, signal) = shutdown_channel();
    let mut cfg = Config::default();
    // Authentication has its own tests (control::auth, tests/security_rest.rs).
    cfg.http.auth = false;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let cp =
        ControlPlane::start_with_shutdown(&cfg, metrics, FakeApi::new(), (trigger.clone(), signal.clone())).unwrap();
    assert_eq!(request(cp.http_addr(), "GET", "/healthz", b"").status, 200);
    trigger.trigger(ShutdownReason::Fatal);
    assert_eq!(cp.join().unwrap(), ShutdownReason::Fatal);
    assert!(signal.is_triggered());
}
