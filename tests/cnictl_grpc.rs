//! The cni-ctl gRPC both ways over real tonic on 127.0.0.1 (ephemeral ports): the client
//! against the reference server (answers, concurrency, coalescing, deadline, down and
//! recovery), `ControllerService/Invalidate` reaching the daemon's callback, and the
//! `shardflow cnictl` binary.
#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardflow::control::cnictl::client::{ClientConfig, PolicyClient};
use shardflow::control::cnictl::proto::controller_service_client::ControllerServiceClient;
use shardflow::control::cnictl::proto::route_service_client::RouteServiceClient;
use shardflow::control::cnictl::proto::{self, Invalidation as WireInvalidation};
use shardflow::control::cnictl::server::{self, Invalidation, InvalidationReply, RouteState, Services};
use shardflow::packet::MacAddr;
use shardflow::policy::{DstType, PolicyError, PolicyFile, PolicyQuery};

const POLICY: &str = r#"
version = 9
default = "deny"

[[rule]]
action = "allow"
src = "10.244.0.0/16"
dst = "10.244.0.0/16"
protocol = "tcp"
ports = "80"

[[rule]]
action = "allow"
src = "10.244.0.0/16"
dst = "10.96.0.10"

[[service]]
vip = "10.96.0.10"
port = 53
protocol = "udp"
endpoints = [{ ip = "10.244.1.2", port = 5353, weight = 1 }, { ip = "10.244.2.2", port = 5353, weight = 2 }]
"#;

/// The daemon's control thread: a current-thread tokio runtime on its own thread.
struct Control {
    rt: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Control {
    fn start() -> Control {
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            htx.send(rt.handle().clone()).unwrap();
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        });
        Control { rt: hrx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
    }

    fn client(&self, addr: SocketAddr, cfg: ClientConfig) -> PolicyClient {
        PolicyClient::new(ClientConfig { endpoint: format!("http://{addr}"), ..cfg }, self.rt.clone()).unwrap()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

/// A server running on the control runtime, stopped (and waited for) on drop.
struct Server {
    addr: SocketAddr,
    state: Option<Arc<RouteState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<Result<(), PolicyError>>>,
}

impl Server {
    fn start(ctl: &Control, addr: SocketAddr, services: Services, state: Option<Arc<RouteState>>) -> Server {
        let std_listener = StdListener::bind(addr).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        ctl.rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let r = server::serve(listener, services, async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = done_tx.send(r);
        });
        Server { addr, state, stop: Some(stop), done: Some(done) }
    }

    fn routes(ctl: &Control, addr: SocketAddr, policy: &str, latency: Duration) -> Server {
        let state = RouteState::new(PolicyFile::parse(policy).unwrap(), latency);
        Server::start(ctl, addr, Services::new().route(state.clone()), Some(state))
    }

    fn calls(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.calls())
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.recv_timeout(Duration::from_secs(10)).expect("server stops").unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn query(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> PolicyQuery {
    PolicyQuery {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        src_mac: "0a:58:0a:f4:01:05".parse().unwrap(),
        dst_mac: MacAddr::ZERO,
        src_port: sport,
        dst_port: dport,
        protocol: proto,
        is_reply: false,
        nat: dst.starts_with("10.96."),
    }
}

fn wait<T>(rx: flume::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(10)).expect("an answer within 10 s")
}

#[test]
fn client_gets_allow_deny_and_dnat_from_the_reference_server() {
    let ctl = Control::start();
    let srv = Server::routes(&ctl, any_port(), POLICY, Duration::ZERO);
    let client = ctl.client(srv.addr, ClientConfig::default());
    let source = client.source();
    assert!(source.answer_now(query("10.244.1.5", "10.244.2.6", 6, 40000, 80)).is_none());

    let p = wait(source.ask(query("10.244.1.5", "10.244.2.6", 6, 40000, 80))).unwrap();
    assert!(p.allowed);
    assert_eq!((p.dst_type, p.version), (DstType::Direct, 9));

    let p = wait(client.query(query("10.244.1.5", "10.244.2.6", 6, 40000, 443))).unwrap();
    assert!(!p.allowed, "port 443 falls to the default deny");
    let p = wait(client.query(query("192.168.1.1", "10.244.2.6", 6, 40000, 80))).unwrap();
    assert!(!p.allowed, "outside source");

    let p = wait(client.query(query("10.244.1.5", "10.96.0.10", 17, 40000, 53))).unwrap();
    assert!(p.allowed);
    let DstType::Dnat { endpoints } = p.dst_type else { panic!("not DNAT: {p:?}") };
    let eps: Vec<(String, u16, u32)> = endpoints.iter().map(|e| (e.ip.to_string(), e.port, e.weight)).collect();
    assert_eq!(eps, [("10.244.1.2".to_string(), 5353, 1), ("10.244.2.2".to_string(), 5353, 2)]);

    let s = client.stats().snapshot();
    assert_eq!((s.queries, s.rpcs, s.errors, s.retries), (4, 4, 0, 0));
    assert_eq!(srv.calls(), 4);
    assert!(!client.is_down());
}

#[test]
fn many_distinct_queries_are_in_flight_together() {
    let ctl = Control::start();
    let srv = Server::routes(&ctl, any_port(), POLICY, Duration::from_millis(50));
    let client = ctl.client(srv.addr, ClientConfig { deadline: Duration::from_secs(5), ..ClientConfig::default() });
    // Connect first, so the timing is the queries' alone.
    wait(client.query(query("10.244.1.5", "10.244.2.6", 6, 1, 80))).unwrap();

    let t = Instant::now();
    let rxs: Vec<_> = (0..100).map(|i| client.query(query("10.244.1.5", "10.244.2.6", 6, 2000 + i, 80))).collect();
    for rx in rxs {
        assert!(wait(rx).unwrap().allowed);
    }
    let took = t.elapsed();
    // One after the other would be 100 x 50 ms = 5 s.
    assert!(took < Duration::from_millis(2500), "100 queries took {took:?}");
    // They wait together, so they leave together: a few ExistBatch calls, not 100 Exist calls.
    let s = client.stats().snapshot();
    assert!(srv.calls() <= 1 + 4, "calls: {}", srv.calls());
    assert!(s.batches >= 1 && s.rpcs == srv.calls(), "{s:?}");
    assert_eq!((s.coalesced, s.errors, s.refused), (0, 0, 0));
    eprintln!("FIGURE 100 distinct queries at 50 ms: {took:?}, {} calls ({} batches)", srv.calls(), s.batches);
}

/// A cni-ctl without `ExistBatch` (UNIMPLEMENTED): the client notices once and asks one `Exist`
/// per query from then on; every query is answered.
#[test]
fn a_cnictl_without_exist_batch_gets_one_exist_per_query() {
    use shardflow::control::cnictl::proto::route_service_server::{RouteService, RouteServiceServer};
    struct Old(Arc<std::sync::atomic::AtomicU64>);
    #[tonic::async_trait]
    impl RouteService for Old {
        async fn exist(
            &self,
            _r: tonic::Request<proto::RouteQuery>,
        ) -> Result<tonic::Response<proto::NetworkPolicy>, tonic::Status> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(tonic::Response::new(proto::NetworkPolicy { allowed: true, ..Default::default() }))
        }
        async fn exist_batch(
            &self,
            _r: tonic::Request<proto::RouteQueries>,
        ) -> Result<tonic::Response<proto::NetworkPolicies>, tonic::Status> {
            Err(tonic::Status::unimplemented("ExistBatch"))
        }
    }
    let ctl = Control::start();
    let exists = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = RouteServiceServer::new(Old(exists.clone()));
    ctl.rt.spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(listener).unwrap());
        let _ = tonic::transport::Server::builder().serve_with_incoming(svc, incoming).await;
    });
    let client = ctl.client(addr, ClientConfig { deadline: Duration::from_secs(5), ..ClientConfig::default() });
    for round in 0..2 {
        let rxs: Vec<_> =
            (0..20).map(|i| client.query(query("10.244.1.5", "10.244.2.6", 6, 3000 + round * 100 + i, 80))).collect();
        for rx in rxs {
            assert!(wait(rx).unwrap().allowed);
        }
    }
    let s = client.stats().snapshot();
    assert_eq!(exists.load(std::sync::atomic::Ordering::Relaxed), 40, "{s:?}");
    assert_eq!((s.batches, s.errors), (0, 0), "{s:?}");
}

#[test]
fn identical_queries_in_flight_are_coalesced_into_one_rpc() {
    let ctl = Control::start();
    let srv = Server::routes(&ctl, any_port(), POLICY, Duration::from_millis(50));
    let client = ctl.client(srv.addr, ClientConfig { deadline: Duration::from_secs(5), ..ClientConfig::default() });
    let q = query("10.244.1.5", "10.96.0.10", 17, 40000, 53);
    let rxs: Vec<_> = (0..100).map(|_| client.query(q)).collect();
    let answers: Vec<_> = rxs.into_iter().map(|rx| wait(rx).unwrap()).collect();
    assert!(answers.iter().all(|a| a == &answers[0] && matches!(a.dst_type, DstType::Dnat { .. })));
    assert_eq!(srv.calls(), 1);
    let s = client.stats().snapshot();
    assert_eq!((s.queries, s.rpcs, s.coalesced), (100, 1, 99));
    assert_eq!(client.in_flight(), 0);
    // Once answered, the same query is asked again (no answer cache in the client).
    wait(client.query(q)).unwrap();
    assert_eq!(srv.calls(), 2);
}

#[test]
fn a_slow_server_times_out_at_the_deadline() {
    let ctl = Control::start();
    let srv = Server::routes(&ctl, any_port(), POLICY, Duration::from_millis(1000));
    let client = ctl.client(srv.addr, ClientConfig { deadline: Duration::from_millis(200), ..ClientConfig::default() });
    let t = Instant::now();
    let e = wait(client.query(query("10.244.1.5", "10.244.2.6", 6, 1, 80))).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e, PolicyError::Timeout(200));
    assert!(took >= Duration::from_millis(190) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(client.stats().snapshot().errors, 1);
}

#[test]
fn server_down_then_back_on_the_same_port() {
    let ctl = Control::start();
    let srv = Server::routes(&ctl, any_port(), POLICY, Duration::ZERO);
    let addr = srv.addr;
    let cfg = ClientConfig { deadline: Duration::from_millis(200), down_after: 2, ..ClientConfig::default() };
    let client = ctl.client(addr, cfg);
    let q = |i: u16| query("10.244.1.5", "10.244.2.6", 6, i, 80);
    assert!(wait(client.query(q(1))).unwrap().allowed);

    srv.stop();
    for i in 0..2 {
        let t = Instant::now();
        let e = wait(client.query(q(10 + i))).unwrap_err();
        let took = t.elapsed();
        assert!(matches!(e, PolicyError::Unavailable(_) | PolicyError::Timeout(_)), "{e:?}");
        // Bounded by the deadline (plus scheduling slack), never hanging.
        assert!(took < Duration::from_secs(2), "error after {took:?}");
    }
    assert!(client.is_down());
    let s = client.stats().snapshot();
    assert_eq!(s.errors, 2);
    assert!(s.retries >= 1, "the first failure is retried: {s:?}");

    let srv = Server::routes(&ctl, addr, POLICY, Duration::ZERO);
    let mut ok = false;
    for i in 0..40 {
        if wait(client.query(q(100 + i))).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "no answer after the server came back");
    assert!(!client.is_down());
    assert!(srv.calls() >= 1);
}

#[test]
fn invalidate_reaches_the_daemon_callback() {
    let ctl = Control::start();
    let seen: Arc<Mutex<Vec<Invalidation>>> = Arc::default();
    let log = seen.clone();
    let callback: server::InvalidateFn = Arc::new(move |inv: Invalidation| {
        let dropped = inv.ips.len() as u64;
        log.lock().unwrap().push(inv);
        Box::pin(async move { Ok(InvalidationReply { dropped, flows_deleted: 2 * dropped }) })
    });
    let srv = Server::start(&ctl, any_port(), Services::new().controller(callback), None);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("http://{}", srv.addr);
    rt.block_on(async {
        let mut c = ControllerServiceClient::connect(url.clone()).await.unwrap();
        let req = WireInvalidation { ips: vec!["10.244.1.2".into(), "fd00::7".into()], below_version: 4, all: false };
        let r = c.invalidate(req).await.unwrap().into_inner();
        assert_eq!((r.dropped, r.flows_deleted), (2, 4));
        let bad = WireInvalidation { ips: vec!["10.244.1.999".into()], ..Default::default() };
        let e = c.invalidate(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("ips[0]"), "{}", e.message());
        // RouteService is not served here.
        let mut r = RouteServiceClient::connect(url).await.unwrap();
        let e = r.exist(proto::RouteQuery::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the bad request does not reach the callback");
    assert_eq!(
        seen[0],
        Invalidation {
            ips: vec!["10.244.1.2".parse().unwrap(), "fd00::7".parse().unwrap()],
            below_version: 4,
            all: false
        }
    );
}

#[test]
fn the_cnictl_binary_serves_a_policy_file() {
    let dir = std::env::temp_dir().join(format!("shardflow-cnictl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(["cnictl", "--policy"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("cnictl listening on ").expect(&line).parse().unwrap();

    let ctl = Control::start();
    let client = ctl.client(addr, ClientConfig { deadline: Duration::from_secs(2), ..ClientConfig::default() });
    assert!(wait(client.query(query("10.244.1.5", "10.244.2.6", 6, 1, 80))).unwrap().allowed);
    assert!(!wait(client.query(query("10.244.1.5", "10.244.2.6", 6, 1, 22))).unwrap().allowed);
    let p = wait(client.query(query("10.244.1.5", "10.96.0.10", 17, 1, 53))).unwrap();
    assert!(matches!(p.dst_type, DstType::Dnat { ref endpoints } if endpoints.len() == 2));

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "cnictl did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cnictl_binary_refuses_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("shardflow-cnictl-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    std::fs::write(&file, "[[rule]]\naction = \"allow\"\nsrc = \"10.0.0.1/8\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardflow")).args(["cnictl", "--policy"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule[0].src"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
