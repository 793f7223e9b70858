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
//!   rather than queued to time out. The channel from the shards to the dispatcher is bounded
//!   too ([`MAX_QUEUED`]): when the dispatcher falls behind (or its runtime is stalled) a query
//!   is refused the same way at the send, instead of piling up in memory.
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
use crate::policy::PolicyError;
use crate::policy::{NetworkPolicy, PolicyQuery};

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
    /// Mutual TLS: cni-ctl's certificate is verified against the CA, this identity is shown.
    /// With it the endpoint is `https://HOST:PORT` (a bare `HOST:PORT` gets `https://`).
    pub tls: Option<super::tls::TlsFiles>,
    /// The name cni-ctl's certificate must carry, when not the endpoint's host.
    pub tls_server_name: Option<String>,
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
            tls: None,
            tls_server_name: None,
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
    /// Queries refused by admission control: [`MAX_WAITING`] distinct queries waiting, or
    /// [`MAX_QUEUED`] not yet seen by the dispatcher.
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

/// Most queries sent by the shards and not yet taken by the dispatcher (the bound of its
/// inbox); past it a query is refused at once. The dispatcher takes them in bulk into its own
/// waiting list, itself bounded by [`MAX_WAITING`], so this matches it.
pub const MAX_QUEUED: usize = MAX_WAITING;

/// A new query from a shard, and where its answer goes.
type Query = (PolicyQuery, flume::Sender<Reply>);
/// The results of one call, back to the dispatcher.
type Done = Vec<(PolicyQuery, Reply)>;

struct Inner {
    cfg: ClientConfig,
    channel: Channel,
    /// To the dispatcher, which alone owns the in-flight map: a shard only sends on a channel,
    /// it never takes a lock. Bounded by [`MAX_QUEUED`].
    queries: flume::Sender<Query>,
    /// Call results to the dispatcher. Unbounded, yet never holds more than
    /// [`MAX_BATCHES_IN_FLIGHT`] messages: each call sends exactly one, and the dispatcher
    /// starts no more calls than that. Kept apart from `queries` so that a full query queue
    /// can never hold back (or drop) the answers that would drain it.
    done: flume::Sender<Done>,
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
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let uri =
            if cfg.endpoint.contains("://") { cfg.endpoint.clone() } else { format!("{scheme}://{}", cfg.endpoint) };
        let mut ep = TonicEndpoint::from_shared(uri.clone())
            .map_err(|e| PolicyError::Config(format!("endpoint {uri:?}: {e}")))?;
        match &cfg.tls {
            Some(tls) => {
                // tonic speaks plaintext to an `http://` URI even with TLS configured: refuse
                // the mix rather than send in the clear what the operator meant to protect.
                if ep.uri().scheme_str() != Some("https") {
                    return Err(PolicyError::Config(format!("endpoint {uri:?}: TLS is configured, use https://")));
                }
                ep = ep
                    .tls_config(tls.client_config(cfg.tls_server_name.as_deref()))
                    .map_err(|e| PolicyError::Config(format!("TLS: {}", super::tls::error_chain(&e))))?;
            }
            None => {
                let host = ep.uri().host().unwrap_or("");
                if !super::tls::is_loopback_host(host) {
                    tracing::warn!(endpoint = %uri, "cni-ctl is queried in plaintext gRPC over the network: configure TLS");
                }
            }
        }
        let ep = ep
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
        let (queries, queries_rx) = flume::bounded(MAX_QUEUED);
        let (done, done_rx) = flume::unbounded();
        let inner = Arc::new(Inner {
            cfg,
            channel,
            queries,
            done,
            in_flight: AtomicUsize::new(0),
            stats: ClientStats::default(),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
            no_batch: AtomicBool::new(false),
        });
        rt.spawn(dispatch(inner.clone(), queries_rx, done_rx));
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
async fn dispatch(inner: Arc<Inner>, queries: flume::Receiver<Query>, done: flume::Receiver<Done>) {
    let mut inflight: HashMap<PolicyQuery, Waiters> = HashMap::new();
    let mut waiting: Vec<PolicyQuery> = Vec::new();
    let mut calls = 0usize;
    let on_query = |(q, tx): Query, inflight: &mut HashMap<PolicyQuery, Waiters>, waiting: &mut Vec<PolicyQuery>| {
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
    };
    let on_done = |results: Done, inflight: &mut HashMap<PolicyQuery, Waiters>, calls: &mut usize| {
        *calls = calls.saturating_sub(1);
        for (q, result) in results {
            for w in inflight.remove(&q).unwrap_or_default() {
                let _ = w.send(result.clone());
            }
        }
    };
    loop {
        // Results first: they free call slots and waiters.
        tokio::select! {
            biased;
            d = done.recv_async() => match d {
                Ok(d) => on_done(d, &mut inflight, &mut calls),
                Err(_) => break,
            },
            q = queries.recv_async() => match q {
                Ok(q) => on_query(q, &mut inflight, &mut waiting),
                Err(_) => break,
            },
        }
        // Take everything that is already there: what arrives together leaves together.
        while let Ok(d) = done.try_recv() {
            on_done(d, &mut inflight, &mut calls);
        }
        while let Ok(q) = queries.try_recv() {
            on_query(q, &mut inflight, &mut waiting);
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
        let _ = self.inner.done.send(out);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.answer(None);
    }
}

impl PolicyClientHandle {
    /// Asks cni-ctl about `q`. The answer (or the error) arrives on the returned channel; an
    /// identical query already in flight is joined, not sent again. Never blocks: with
    /// [`MAX_QUEUED`] queries not yet taken by the dispatcher, the answer is
    /// `PolicyError::Overloaded` at once (counted in `refused`).
    pub fn query(&self, q: PolicyQuery) -> flume::Receiver<Reply> {
        self.inner.stats.queries.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        match self.inner.queries.try_send((q, tx)) {
            Ok(()) => {}
            Err(flume::TrySendError::Full((_, tx))) => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Err(PolicyError::Overloaded(MAX_QUEUED)));
            }
            // The dispatcher is gone with its runtime.
            Err(flume::TrySendError::Disconnected((_, tx))) => {
                let _ = tx.send(Err(PolicyError::Stopped));
            }
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

/// What the policy layer sees of the client: the shards ask through
/// [`crate::policy::PolicySource::CniCtl`] without knowing the transport.
impl crate::policy::RemotePolicy for PolicyClientHandle {
    fn query(&self, q: PolicyQuery) -> flume::Receiver<Reply> {
        PolicyClientHandle::query(self, q)
    }
    fn is_down(&self) -> bool {
        PolicyClientHandle::is_down(self)
    }
    fn endpoint(&self) -> &str {
        PolicyClientHandle::endpoint(self)
    }
}

impl PolicyClientHandle {
    /// This client as the policy source's transport.
    pub fn source(&self) -> crate::policy::PolicySource {
        crate::policy::PolicySource::CniCtl(Arc::new(self.clone()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::MacAddr;

    fn q(port: u16) -> PolicyQuery {
        PolicyQuery {
            src_ip: "10.244.1.5".parse().unwrap(),
            dst_ip: "10.244.2.7".parse().unwrap(),
            src_mac: MacAddr::ZERO,
            dst_mac: MacAddr::ZERO,
            src_port: port,
            dst_port: 80,
            protocol: 6,
            is_reply: false,
            nat: false,
        }
    }

    /// The dispatcher's runtime is never driven (a stalled control thread): the shards' queries
    /// pile up in its inbox until [`MAX_QUEUED`], then each further one is refused at once and
    /// counted, instead of growing memory without bound.
    #[test]
    fn a_stalled_dispatcher_refuses_past_the_queue_bound() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Nothing listens there, and nothing is sent anyway: the runtime never runs.
        let cfg = ClientConfig { endpoint: "http://127.0.0.1:9".into(), ..ClientConfig::default() };
        let client = PolicyClient::new(cfg, rt.handle().clone()).unwrap();
        let queued: Vec<_> = (0..MAX_QUEUED).map(|i| client.query(q(i as u16))).collect();
        assert!(queued.iter().all(|rx| rx.is_empty()), "queries within the bound wait for the dispatcher");
        assert_eq!(client.stats().snapshot().refused, 0);
        let over = client.query(q(1));
        assert!(matches!(over.try_recv(), Ok(Err(PolicyError::Overloaded(MAX_QUEUED)))), "refused at once");
        let s = client.stats().snapshot();
        assert_eq!((s.queries, s.refused), (MAX_QUEUED as u64 + 1, 1));
    }
}
