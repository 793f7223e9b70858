//! The tokio transport: one task per connection owns the socket and drives the sans-IO parts
//! ([`Framer`], [`Session`], [`TableCache`]); [`Client`] hands it requests over a bounded
//! channel and awaits the answers. Works on a current-thread runtime (a short-lived CLI).
//!
//! Bounds: a message may not exceed `max_frame` bytes, at most `max_pending` requests wait for
//! an answer, a monitor's cache holds at most `max_rows` rows; each refusal is counted in
//! [`ClientStats`]. Past the frame or row bound the connection is closed (the cache could no
//! longer be trusted), and every waiting call and monitor sees [`OvsdbError::Closed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::cache::{TableCache, DEFAULT_MAX_ROWS};
use super::codec::{Framer, DEFAULT_MAX_FRAME};
use super::rpc::{self, Event, Session, DEFAULT_MAX_PENDING};
use super::{OvsdbAddr, OvsdbError};

/// Bounds and deadlines of one connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub max_frame: usize,
    pub max_pending: usize,
    pub max_rows: usize,
    /// How long a call waits for its answer (and the connect for the socket).
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_frame: DEFAULT_MAX_FRAME,
            max_pending: DEFAULT_MAX_PENDING,
            max_rows: DEFAULT_MAX_ROWS,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the connection refused, for metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Messages over `max_frame` (the connection was closed).
    pub frames_too_large: AtomicU64,
    /// Requests refused because `max_pending` were waiting.
    pending_refused: AtomicU64,
    /// Updates refused because the cache would pass `max_rows` (the connection was closed).
    pub cache_full: AtomicU64,
    /// Messages that were not JSON-RPC (the connection was closed).
    pub protocol_errors: AtomicU64,
}

impl ClientStats {
    pub fn pending_refused(&self) -> u64 {
        self.pending_refused.load(Ordering::Relaxed)
    }
}

enum Cmd {
    Call { method: &'static str, params: Value, reply: oneshot::Sender<Result<Value, OvsdbError>> },
    Monitor { params: Value, monitor: Value, max_rows: usize, reply: oneshot::Sender<Result<Monitor, OvsdbError>> },
}

/// A connection to an OVSDB server. Dropping it closes the connection (and ends its monitors).
pub struct Client {
    cmds: mpsc::Sender<Cmd>,
    stats: Arc<ClientStats>,
    cfg: ClientConfig,
    next_monitor: u64,
}

/// The tables a monitor follows: the initial contents, then every change. Ends (with
/// [`OvsdbError::Closed`]) when the connection does.
pub struct Monitor {
    rx: watch::Receiver<Arc<TableCache>>,
}

impl Monitor {
    /// The tables now.
    pub fn current(&self) -> Arc<TableCache> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change and returns the tables after it (changes that came while
    /// nobody waited are folded into one).
    pub async fn changed(&mut self) -> Result<Arc<TableCache>, OvsdbError> {
        self.rx.changed().await.map_err(|_| OvsdbError::Closed)?;
        Ok(self.rx.borrow_and_update().clone())
    }
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

impl Client {
    /// Connects with the default bounds and a 10 s call deadline.
    pub async fn connect(addr: &OvsdbAddr) -> Result<Client, OvsdbError> {
        Client::connect_with(addr, ClientConfig::default()).await
    }

    pub async fn connect_with(addr: &OvsdbAddr, cfg: ClientConfig) -> Result<Client, OvsdbError> {
        let connect_err = |source| OvsdbError::Connect { addr: addr.to_string(), source };
        let io = async {
            Ok::<(Reader, Writer), std::io::Error>(match addr {
                OvsdbAddr::Unix(path) => {
                    let (r, w) = tokio::net::UnixStream::connect(path).await?.into_split();
                    (Box::new(r), Box::new(w))
                }
                OvsdbAddr::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    let (r, w) = s.into_split();
                    (Box::new(r), Box::new(w))
                }
            })
        };
        let (reader, writer) = match tokio::time::timeout(cfg.timeout, io).await {
            Ok(r) => r.map_err(connect_err)?,
            Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
        };
        let stats = Arc::new(ClientStats::default());
        let (cmds, rx) = mpsc::channel(cfg.max_pending.max(1));
        let driver = Driver {
            framer: Framer::new(cfg.max_frame),
            session: Session::new(cfg.max_pending),
            calls: HashMap::new(),
            monitors: HashMap::new(),
            stats: stats.clone(),
        };
        tokio::spawn(driver.run(reader, writer, rx));
        Ok(Client { cmds, stats, cfg, next_monitor: 1 })
    }

    /// What this connection refused so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// `transact` (RFC 7047 4.1.3): the operations' results, or the first failed operation as
    /// [`OvsdbError::Operation`] with its index.
    pub async fn transact(&self, db: &str, ops: Vec<Value>) -> Result<Vec<Value>, OvsdbError> {
        let mut params = vec![json!(db)];
        params.extend(ops);
        rpc::transact_results(self.call("transact", Value::Array(params)).await?)
    }

    /// Any request by method name (`list_dbs`, `get_schema`, ...): its `result`.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, OvsdbError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Call { method, params, reply }).await?;
        self.wait(rx).await
    }

    /// `monitor` (RFC 7047 4.1.5) of `tables`, each with the columns to follow. The returned
    /// [`Monitor`] holds the initial rows and follows every change.
    pub async fn monitor(&mut self, db: &str, tables: &[(&str, &[&str])]) -> Result<Monitor, OvsdbError> {
        let requests: serde_json::Map<String, Value> =
            tables.iter().map(|(t, cols)| (t.to_string(), json!({"columns": cols}))).collect();
        let monitor = json!(format!("m{}", self.next_monitor));
        self.next_monitor += 1;
        let params = json!([db, monitor.clone(), requests]);
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Monitor { params, monitor, max_rows: self.cfg.max_rows, reply }).await?;
        self.wait(rx).await
    }

    async fn send(&self, cmd: Cmd) -> Result<(), OvsdbError> {
        self.cmds.send(cmd).await.map_err(|_| OvsdbError::Closed)
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<Result<T, OvsdbError>>) -> Result<T, OvsdbError> {
        match tokio::time::timeout(self.cfg.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(OvsdbError::Closed),
            Err(_) => Err(OvsdbError::Timeout(self.cfg.timeout)),
        }
    }
}

// === the connection task ===

enum Waiter {
    Call(oneshot::Sender<Result<Value, OvsdbError>>),
    Monitor { monitor: String, max_rows: usize, reply: oneshot::Sender<Result<Monitor, OvsdbError>> },
}

struct Driver {
    framer: Framer,
    session: Session,
    calls: HashMap<u64, Waiter>,
    monitors: HashMap<String, (TableCache, watch::Sender<Arc<TableCache>>)>,
    stats: Arc<ClientStats>,
}

impl Driver {
    async fn run(mut self, mut reader: Reader, mut writer: Writer, mut cmds: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 64 * 1024];
        let result: Result<(), OvsdbError> = async {
            loop {
                tokio::select! {
                    cmd = cmds.recv() => match cmd {
                        None => return Ok(()),
                        Some(cmd) => self.start(cmd, &mut writer).await?,
                    },
                    n = reader.read(&mut buf) => {
                        let n = n?;
                        if n == 0 {
                            return Err(OvsdbError::Closed);
                        }
                        self.framer.push(&buf[..n]);
                        let msgs = self.framer.drain().inspect_err(|e| self.count(e))?;
                        for msg in msgs {
                            self.handle(msg, &mut writer).await.inspect_err(|e| self.count(e))?;
                        }
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => tracing::debug!("OVSDB connection closed by the client"),
            Err(OvsdbError::Closed) => tracing::debug!("OVSDB connection closed by the server"),
            Err(e) => tracing::warn!("OVSDB connection lost: {e}"),
        }
        // Dropping the waiters and the monitors' senders tells everyone (Closed).
    }

    fn count(&self, e: &OvsdbError) {
        let c = match e {
            OvsdbError::FrameTooLarge { .. } => &self.stats.frames_too_large,
            OvsdbError::CacheFull { .. } => &self.stats.cache_full,
            OvsdbError::Protocol(_) => &self.stats.protocol_errors,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    async fn start(&mut self, cmd: Cmd, writer: &mut Writer) -> Result<(), OvsdbError> {
        let (method, params, waiter) = match cmd {
            Cmd::Call { method, params, reply } => (method, params, Waiter::Call(reply)),
            Cmd::Monitor { params, monitor, max_rows, reply } => {
                let monitor = monitor.as_str().unwrap_or_default().to_string();
                ("monitor", params, Waiter::Monitor { monitor, max_rows, reply })
            }
        };
        match self.session.request(method, params) {
            Ok((id, bytes)) => {
                self.calls.insert(id, waiter);
                writer.write_all(&bytes).await?;
            }
            Err(e) => {
                self.stats.pending_refused.fetch_add(1, Ordering::Relaxed);
                match waiter {
                    Waiter::Call(reply) => drop(reply.send(Err(e))),
                    Waiter::Monitor { reply, .. } => drop(reply.send(Err(e))),
                }
            }
        }
        Ok(())
    }

    async fn handle(&mut self, msg: Value, writer: &mut Writer) -> Result<(), OvsdbError> {
        match self.session.handle(msg)? {
            Event::Send(bytes) => writer.write_all(&bytes).await?,
            Event::Response { id, method, outcome } => match self.calls.remove(&id) {
                Some(Waiter::Call(reply)) => {
                    let _ =
                        reply.send(outcome.map_err(|e| OvsdbError::Rpc { method, error: e.error, details: e.details }));
                }
                Some(Waiter::Monitor { monitor, max_rows, reply }) => {
                    let initial = match outcome {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = reply.send(Err(OvsdbError::Rpc { method, error: e.error, details: e.details }));
                            return Ok(());
                        }
                    };
                    let mut cache = TableCache::new(max_rows);
                    cache.apply(&initial)?;
                    let (tx, rx) = watch::channel(Arc::new(cache.clone()));
                    self.monitors.insert(monitor, (cache, tx));
                    let _ = reply.send(Ok(Monitor { rx }));
                }
                None => tracing::debug!(id, "OVSDB answer nobody waits for"),
            },
            Event::Update { monitor, updates } => {
                let key = monitor.as_str().unwrap_or_default();
                if let Some((cache, tx)) = self.monitors.get_mut(key) {
                    cache.apply(&updates)?;
                    tx.send_replace(Arc::new(cache.clone()));
                }
            }
            Event::Ignored(why) => tracing::trace!("OVSDB message ignored: {why}"),
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The transport against a fake peer on a unix socket (the real server is in
    //! tests/ovsdb_client.rs): the server's echo answered, an oversized message refused and
    //! counted, the pending-request bound.

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    use super::*;

    fn sock(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("shardflow-ovsdb-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// Reads from the peer until one whole JSON value arrived.
    async fn read_value(s: &mut tokio::net::UnixStream) -> Value {
        let mut f = Framer::new(1 << 20);
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "peer closed");
            f.push(&buf[..n]);
            if let Some(v) = f.drain().unwrap().into_iter().next() {
                return v;
            }
        }
    }

    #[tokio::test]
    async fn answers_echo_and_refuses_an_oversized_message() {
        let path = sock("echo");
        let listener = UnixListener::bind(&path).unwrap();
        let cfg = ClientConfig { max_frame: 4096, timeout: Duration::from_secs(5), ..ClientConfig::default() };
        let addr = OvsdbAddr::Unix(path.clone());
        let (client, peer) = tokio::join!(Client::connect_with(&addr, cfg), listener.accept());
        let client = client.unwrap();
        let (mut peer, _) = peer.unwrap();

        peer.write_all(br#"{"id":"echo","method":"echo","params":[]}"#).await.unwrap();
        assert_eq!(read_value(&mut peer).await, json!({"id": "echo", "result": [], "error": null}));

        // A call, answered by a message far over the frame bound: the connection is refused.
        let call = client.call("list_dbs", json!([]));
        let serve = async {
            let req = read_value(&mut peer).await;
            assert_eq!(req["method"], "list_dbs");
            let big = format!(r#"{{"id":{},"result":["{}"],"error":null}}"#, req["id"], "x".repeat(10_000));
            let _ = peer.write_all(big.as_bytes()).await;
        };
        let (r, ()) = tokio::join!(call, serve);
        assert!(matches!(r, Err(OvsdbError::Closed)), "{:?}", r.map(|v| v.to_string().len()));
        assert_eq!(client.stats().frames_too_large.load(Ordering::Relaxed), 1);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn pending_requests_are_bounded() {
        let path = sock("pending");
        let listener = UnixListener::bind(&path).unwrap();
        let cfg = ClientConfig { max_pending: 2, timeout: Duration::from_millis(300), ..ClientConfig::default() };
        let addr = OvsdbAddr::Unix(path.clone());
        let (client, peer) = tokio::join!(Client::connect_with(&addr, cfg), listener.accept());
        let client = client.unwrap();
        let _peer = peer.unwrap(); // never answers
        let (a, b, c) = tokio::join!(
            client.call("list_dbs", json!([])),
            client.call("list_dbs", json!([])),
            client.call("list_dbs", json!([]))
        );
        let refused = [&a, &b, &c].iter().filter(|r| matches!(r, Err(OvsdbError::TooManyPending { limit: 2 }))).count();
        let timed_out = [&a, &b, &c].iter().filter(|r| matches!(r, Err(OvsdbError::Timeout(_)))).count();
        assert_eq!((refused, timed_out), (1, 2), "{a:?} {b:?} {c:?}");
        assert_eq!(client.stats().pending_refused(), 1);
        let _ = std::fs::remove_file(&path);
    }
}
