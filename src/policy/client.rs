//! The cni-ctl client (`RouteService/Exist`), run on the control thread's tokio runtime and
//! used from the shards without tokio.
//!
//! - One kept-alive HTTP/2 channel (lazy connect, `http2_keep_alive_interval`), many queries in
//!   flight on it.
//! - A deadline per query (default 200 ms) covering every try; UNAVAILABLE (cni-ctl not
//!   reachable, connection reset) is retried with exponential backoff, at most `max_tries`
//!   times within the deadline. Other errors are not retried.
//! - Identical queries in flight are coalesced: one RPC, every waiter gets its answer (or error).
//! - Distinct queries waiting at the same time go out together in one `ExistBatch` call (at most
//!   [`MAX_BATCH`] each, at most [`MAX_BATCHES_IN_FLIGHT`] calls at once; while they are busy new
//!   queries gather for the next batch). A cni-ctl without `ExistBatch` (UNIMPLEMENTED) is asked
//!   one `Exist` per query from then on.
//! - Admission control instead of timeouts under load: at most [`MAX_WAITING`] distinct queries
//!   wait to be sent; past that a query is refused at once (`PolicyError::Overloaded`, counted)
//!   rather than queued to time out.
//! - Health: `down_after` consecutive failed queries mark cni-ctl down ([`PolicyClientHandle::is_down`],
//!   for fail-closed / fail-open); the first success marks it up again. While down a query gets
//!   one try (no retries) so packets are not held for the whole backoff.
//!
//! A shard calls [`PolicyClientHandle::query`] and awaits `rx.recv_async()`: the query goes to a
//! dispatcher task on the control runtime, which alone owns the in-flight map, so a shard never
//! takes a lock (a channel send is all it does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::Code;

use super::proto::route_service_client::RouteServiceClient;
use super::proto::{RouteQueries, RouteQuery};
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
    /// `ExistBatch` calls that answered (each carries one or more queries).
    pub batches: AtomicU64,
    /// Queries refused by admission control ([`MAX_WAITING`]).
    pub refused: AtomicU64,
}

/// A copy of [`ClientStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queries: u64,
    pub rpcs: u64,
    pub coalesced: u64,
    pub errors: u64,
    pub retries: u64,
    pub batches: u64,
    pub refused: u64,
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
            batches: g(&self.batches),
            refused: g(&self.refused),
        }
    }
}

type Reply = Result<NetworkPolicy, PolicyError>;
type Waiters = Vec<flume::Sender<Reply>>;

/// Most queries in one `ExistBatch` (the reference server's limit too).
pub const MAX_BATCH: usize = super::server::MAX_BATCH;
/// Most `ExistBatch` calls in flight at once; more queries gather for the next batch.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Most distinct queries waiting to be sent (admission control); past it a query is refused.
pub const MAX_WAITING: usize = 65_536;

/// What the dispatcher task hears: a new query from a shard, or the results of a call.
enum Cmd {
    Query(PolicyQuery, flume::Sender<Reply>),
    Done(Vec<(PolicyQuery, Reply)>),
}

struct Inner {
    cfg: ClientConfig,
    channel: Channel,
    /// To the dispatcher, which alone owns the in-flight map: a shard only sends on a channel,
    /// it never takes a lock.
    cmds: flume::Sender<Cmd>,
    in_flight: AtomicUsize,
    stats: ClientStats,
    failures: AtomicU32,
    down: AtomicBool,
    /// cni-ctl answered UNIMPLEMENTED to `ExistBatch`: one `Exist` per query from then on.
    no_batch: AtomicBool,
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
        let (cmds, rx) = flume::unbounded();
        let inner = Arc::new(Inner {
            cfg,
            channel,
            cmds,
            in_flight: AtomicUsize::new(0),
            stats: ClientStats::default(),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
            no_batch: AtomicBool::new(false),
        });
        rt.spawn(dispatch(inner.clone(), rx));
        Ok(PolicyClient { handle: PolicyClientHandle { inner } })
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

/// The dispatcher: joins identical queries in flight, gathers distinct ones into batches (one
/// `ExistBatch` per batch, a bounded number at once), and answers every waiter when its call
/// completes. Runs on the control runtime until the runtime stops (then the waiters' channels
/// close: the shards see the source gone and fail closed or open).
async fn dispatch(inner: Arc<Inner>, rx: flume::Receiver<Cmd>) {
    let mut inflight: HashMap<PolicyQuery, Waiters> = HashMap::new();
    let mut waiting: Vec<PolicyQuery> = Vec::new();
    let mut calls = 0usize;
    while let Ok(cmd) = rx.recv_async().await {
        let mut next = Some(cmd);
        // Take everything that is already there: what arrives together leaves together.
        while let Some(cmd) = next.take().or_else(|| rx.try_recv().ok()) {
            match cmd {
                Cmd::Query(q, tx) => {
                    if let Some(waiters) = inflight.get_mut(&q) {
                        waiters.push(tx);
                        inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    } else if waiting.len() >= MAX_WAITING {
                        inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Err(PolicyError::Overloaded(waiting.len())));
                    } else {
                        inflight.insert(q, vec![tx]);
                        waiting.push(q);
                    }
                }
                Cmd::Done(results) => {
                    calls = calls.saturating_sub(1);
                    for (q, result) in results {
                        for w in inflight.remove(&q).unwrap_or_default() {
                            let _ = w.send(result.clone());
                        }
                    }
                }
            }
        }
        while calls < MAX_BATCHES_IN_FLIGHT && !waiting.is_empty() {
            let n = waiting.len().min(MAX_BATCH);
            let batch: Vec<PolicyQuery> = waiting.drain(..n).collect();
            calls += 1;
            let done = Completion { inner: inner.clone(), queries: batch, answered: false };
            tokio::spawn(async move {
                let results = done.inner.clone().call_batch(&done.queries).await;
                done.finish(results);
            });
        }
        inner.in_flight.store(inflight.len(), Ordering::Relaxed);
    }
}

/// Reports one call's results to the dispatcher: the call's ([`Completion::finish`]), or
/// [`PolicyError::Stopped`] for every query when dropped unanswered (the task was dropped or
/// panicked), so no waiter is left behind.
struct Completion {
    inner: Arc<Inner>,
    queries: Vec<PolicyQuery>,
    answered: bool,
}

impl Completion {
    fn finish(mut self, results: Vec<Reply>) {
        self.answer(Some(results));
    }

    fn answer(&mut self, results: Option<Vec<Reply>>) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let mut results = results.unwrap_or_default().into_iter();
        let out = self.queries.iter().map(|q| (*q, results.next().unwrap_or(Err(PolicyError::Stopped)))).collect();
        let _ = self.inner.cmds.send(Cmd::Done(out));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.answer(None);
    }
}

impl PolicyClientHandle {
    /// Asks cni-ctl about `q`. The answer (or the error) arrives on the returned channel; an
    /// identical query already in flight is joined, not sent again. Never blocks.
    pub fn query(&self, q: PolicyQuery) -> flume::Receiver<Reply> {
        self.inner.stats.queries.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        if let Err(flume::SendError(Cmd::Query(_, tx))) = self.inner.cmds.send(Cmd::Query(q, tx)) {
            // The dispatcher is gone with its runtime.
            let _ = tx.send(Err(PolicyError::Stopped));
        }
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
        self.inner.in_flight.load(Ordering::Relaxed)
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
    /// One batch: one `ExistBatch` (or one `Exist` when it is the only query, or when cni-ctl
    /// has no `ExistBatch`), answers in the queries' order.
    async fn call_batch(self: Arc<Self>, queries: &[PolicyQuery]) -> Vec<Reply> {
        if queries.len() > 1 && !self.no_batch.load(Ordering::Relaxed) {
            let result = self.batch_tries(queries).await;
            match result {
                Err(PolicyError::Rpc { code, .. }) if code == format!("{:?}", Code::Unimplemented) => {
                    tracing::info!(endpoint = %self.cfg.endpoint, "cni-ctl has no ExistBatch: one Exist per query");
                    self.no_batch.store(true, Ordering::Relaxed);
                }
                other => {
                    self.health(other.as_ref().map(|_| ()));
                    return match other {
                        Ok(answers) => answers,
                        Err(e) => queries.iter().map(|_| Err(e.clone())).collect(),
                    };
                }
            }
        }
        // One Exist per query, all at once.
        let mut handles = Vec::with_capacity(queries.len());
        for q in queries {
            let q = *q;
            let this = self.clone();
            handles.push(tokio::spawn(async move { this.call(&q).await }));
        }
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap_or(Err(PolicyError::Stopped)));
        }
        out
    }

    /// One query: tries within the deadline, then the health bookkeeping.
    async fn call(&self, q: &PolicyQuery) -> Reply {
        let result = self.tries(q).await;
        self.health(result.as_ref().map(|_| ()));
        result
    }

    /// Health bookkeeping after a call: consecutive failures mark cni-ctl down, a success up.
    fn health(&self, result: Result<(), &PolicyError>) {
        match result {
            Ok(()) => {
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
    }

    /// One `ExistBatch` with the same tries and deadline as one query.
    async fn batch_tries(&self, queries: &[PolicyQuery]) -> Result<Vec<Reply>, PolicyError> {
        let req = RouteQueries { queries: queries.iter().map(RouteQuery::from).collect() };
        let answers = self
            .with_tries(|left| {
                let mut client = RouteServiceClient::new(self.channel.clone());
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(left);
                async move { client.exist_batch(r).await.map(|resp| resp.into_inner()) }
            })
            .await?;
        if answers.answers.len() != queries.len() {
            return Err(PolicyError::BadAnswer(format!(
                "{} answers to {} queries",
                answers.answers.len(),
                queries.len()
            )));
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(answers.answers.into_iter().map(NetworkPolicy::try_from).collect())
    }

    async fn tries(&self, q: &PolicyQuery) -> Reply {
        let resp = self
            .with_tries(|left| {
                let mut client = RouteServiceClient::new(self.channel.clone());
                let mut req = tonic::Request::new(RouteQuery::from(q));
                // grpc-timeout: cni-ctl can give up too.
                req.set_timeout(left);
                async move { client.exist(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        NetworkPolicy::try_from(resp)
    }

    /// Runs `rpc` (given the time left) until it answers, within the deadline; UNAVAILABLE is
    /// retried with backoff (once only while cni-ctl is down), other errors are final.
    async fn with_tries<T, F, Fut>(&self, mut rpc: F) -> Result<T, PolicyError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
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
            let status = match tokio::time::timeout(left, rpc(left)).await {
                Err(_) => return Err(PolicyError::Timeout(deadline_ms)),
                Ok(Ok(answer)) => return Ok(answer),
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
