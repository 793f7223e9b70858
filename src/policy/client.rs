//! The cni-ctl client (`RouteService/Exist`), run on the control thread's tokio runtime and
//! used from the shards without tokio.
//!
//! - One kept-alive HTTP/2 channel (lazy connect, `http2_keep_alive_interval`), many queries in
//!   flight on it.
//! - A deadline per query (default 200 ms) covering every try; UNAVAILABLE (cni-ctl not
//!   reachable, connection reset) is retried with exponential backoff, at most `max_tries`
//!   times within the deadline. Other errors are not retried.
//! - Identical queries in flight are coalesced: one RPC, every waiter gets its answer (or error).
//! - Health: `down_after` consecutive failed queries mark cni-ctl down ([`PolicyClientHandle::is_down`],
//!   for fail-closed / fail-open); the first success marks it up again. While down a query gets
//!   one try (no retries) so packets are not held for the whole backoff.
//!
//! A shard calls [`PolicyClientHandle::query`] and awaits `rx.recv_async()`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::Code;

use super::proto::route_service_client::RouteServiceClient;
use super::proto::RouteQuery;
use super::source::PolicyError;
use super::{NetworkPolicy, PolicyQuery};

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// cni-ctl's address: `http://HOST:PORT` (a bare `HOST:PORT` gets `http://`).
    pub endpoint: String,
    /// Everything one query may take, tries and backoff included.
    pub deadline: Duration,
    /// Tries for UNAVAILABLE, the first included (at least 1).
    pub max_tries: u32,
    /// First backoff before a retry; doubled each time.
    pub backoff: Duration,
    /// HTTP/2 PING interval on the kept-alive connection (also while idle).
    pub keepalive: Duration,
    /// Consecutive failed queries before cni-ctl counts as down (at least 1).
    pub down_after: u32,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            endpoint: "http://127.0.0.1:50051".into(),
            deadline: Duration::from_millis(200),
            max_tries: 3,
            backoff: Duration::from_millis(10),
            keepalive: Duration::from_secs(10),
            down_after: 3,
        }
    }
}

/// Counters, readable at any time (relaxed atomics).
#[derive(Debug, Default)]
pub struct ClientStats {
    /// `query` calls.
    pub queries: AtomicU64,
    /// RPCs sent (tries, retries included).
    pub rpcs: AtomicU64,
    /// Queries that joined an identical one in flight instead of sending an RPC.
    pub coalesced: AtomicU64,
    /// Queries (after coalescing: one per RPC group) that ended in an error.
    pub errors: AtomicU64,
    /// Retries after UNAVAILABLE.
    pub retries: AtomicU64,
}

/// A copy of [`ClientStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queries: u64,
    pub rpcs: u64,
    pub coalesced: u64,
    pub errors: u64,
    pub retries: u64,
}

impl ClientStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            queries: g(&self.queries),
            rpcs: g(&self.rpcs),
            coalesced: g(&self.coalesced),
            errors: g(&self.errors),
            retries: g(&self.retries),
        }
    }
}

type Reply = Result<NetworkPolicy, PolicyError>;
type Waiters = Vec<flume::Sender<Reply>>;

struct Inner {
    cfg: ClientConfig,
    rt: tokio::runtime::Handle,
    channel: Channel,
    inflight: Mutex<HashMap<PolicyQuery, Waiters>>,
    stats: ClientStats,
    failures: AtomicU32,
    down: AtomicBool,
}

/// The client's owner (on the control thread). Dropping it does not stop the client: the
/// handles keep it alive.
pub struct PolicyClient {
    handle: PolicyClientHandle,
}

/// What the shards hold: `Clone + Send + Sync`, no tokio needed to call it.
#[derive(Clone)]
pub struct PolicyClientHandle {
    inner: Arc<Inner>,
}

impl PolicyClient {
    /// A client of `cfg.endpoint` whose RPCs run on `rt` (a current-thread runtime is fine; it
    /// needs the time driver: `enable_all`). Nothing is connected yet: the first query connects.
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<PolicyClient, PolicyError> {
        let uri = if cfg.endpoint.contains("://") { cfg.endpoint.clone() } else { format!("http://{}", cfg.endpoint) };
        let ep = TonicEndpoint::from_shared(uri.clone())
            .map_err(|e| PolicyError::Config(format!("endpoint {uri:?}: {e}")))?
            .connect_timeout(cfg.deadline)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(cfg.keepalive)
            .keep_alive_timeout(cfg.keepalive.max(Duration::from_secs(1)))
            .keep_alive_while_idle(true);
        // The channel's worker task is spawned on the current runtime.
        let channel = {
            let _guard = rt.enter();
            ep.connect_lazy()
        };
        let cfg =
            ClientConfig { endpoint: uri, max_tries: cfg.max_tries.max(1), down_after: cfg.down_after.max(1), ..cfg };
        let inner = Inner {
            cfg,
            rt,
            channel,
            inflight: Mutex::new(HashMap::new()),
            stats: ClientStats::default(),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
        };
        Ok(PolicyClient { handle: PolicyClientHandle { inner: Arc::new(inner) } })
    }

    pub fn handle(&self) -> PolicyClientHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for PolicyClient {
    type Target = PolicyClientHandle;
    fn deref(&self) -> &PolicyClientHandle {
        &self.handle
    }
}

/// Answers the waiters of one query: with the result ([`Completion::finish`]), or with
/// [`PolicyError::Stopped`] when dropped unanswered (the task was dropped with its runtime, or
/// panicked). Keeps the in-flight map from holding dead entries.
struct Completion {
    inner: Arc<Inner>,
    query: PolicyQuery,
    answered: bool,
}

impl Completion {
    fn finish(mut self, result: Reply) {
        self.answer(result);
    }

    fn answer(&mut self, result: Reply) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let waiters = lock(&self.inner.inflight).remove(&self.query).unwrap_or_default();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.answer(Err(PolicyError::Stopped));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PolicyClientHandle {
    /// Asks cni-ctl about `q`. The answer (or the error) arrives on the returned channel; an
    /// identical query already in flight is joined, not sent again. Never blocks.
    pub fn query(&self, q: PolicyQuery) -> flume::Receiver<Reply> {
        let inner = &self.inner;
        inner.stats.queries.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        {
            let mut map = lock(&inner.inflight);
            if let Some(waiters) = map.get_mut(&q) {
                waiters.push(tx);
                inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                return rx;
            }
            map.insert(q, vec![tx]);
        }
        let done = Completion { inner: inner.clone(), query: q, answered: false };
        // If the runtime is gone the future is dropped unpolled and `done` answers Stopped.
        inner.rt.spawn(async move {
            let result = done.inner.call(&q).await;
            done.finish(result);
        });
        rx
    }

    /// cni-ctl is down: `down_after` consecutive queries failed and none succeeded since.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Queries in flight (distinct, after coalescing).
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.inflight).len()
    }

    /// The URI the client talks to.
    pub fn endpoint(&self) -> &str {
        &self.inner.cfg.endpoint
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }
}

impl Inner {
    /// One query: tries within the deadline, then the health bookkeeping.
    async fn call(&self, q: &PolicyQuery) -> Reply {
        let result = self.tries(q).await;
        match &result {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.cfg.endpoint, "cni-ctl is answering again");
                }
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let n = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                if n >= self.cfg.down_after && !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(endpoint = %self.cfg.endpoint, failures = n, "cni-ctl is down: {e}");
                }
            }
        }
        result
    }

    async fn tries(&self, q: &PolicyQuery) -> Reply {
        let deadline_ms = u64::try_from(self.cfg.deadline.as_millis()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + self.cfg.deadline;
        let max_tries = if self.down.load(Ordering::Relaxed) { 1 } else { self.cfg.max_tries };
        let mut backoff = self.cfg.backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PolicyError::Timeout(deadline_ms));
            }
            self.stats.rpcs.fetch_add(1, Ordering::Relaxed);
            let mut client = RouteServiceClient::new(self.channel.clone());
            let mut req = tonic::Request::new(RouteQuery::from(q));
            // grpc-timeout: cni-ctl can give up too.
            req.set_timeout(left);
            let status = match tokio::time::timeout(left, client.exist(req)).await {
                Err(_) => return Err(PolicyError::Timeout(deadline_ms)),
                Ok(Ok(resp)) => return NetworkPolicy::try_from(resp.into_inner()),
                Ok(Err(status)) => status,
            };
            match status.code() {
                Code::Unavailable => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if tries >= max_tries || backoff >= left {
                        return Err(PolicyError::Unavailable(status.message().to_string()));
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                // tonic's server answers CANCELLED "Timeout expired" when the grpc-timeout runs
                // out: a race with the local timeout, the same failure.
                Code::DeadlineExceeded => return Err(PolicyError::Timeout(deadline_ms)),
                Code::Cancelled if Instant::now() + Duration::from_millis(5) >= deadline => {
                    return Err(PolicyError::Timeout(deadline_ms))
                }
                code => {
                    return Err(PolicyError::Rpc { code: format!("{code:?}"), message: status.message().to_string() })
                }
            }
        }
    }
}
