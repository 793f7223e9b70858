//! The gRPC servers: `RouteService` answering from a [`PolicyFile`] (the reference cni-ctl,
//! `shardflow cnictl`, and tests/benches) and `ControllerService`, whose `Invalidate` the daemon
//! serves by calling a callback (its cache and flow invalidation).
//!
//! [`serve`] runs either or both on one listener, with TCP_NODELAY on every accepted connection
//! (`serve_with_incoming` alone ignores it: a 40 ms stall every few thousand calls), until the
//! shutdown future completes; calls in progress are then finished.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::proto;
use super::proto::controller_service_server::{ControllerService, ControllerServiceServer};
use super::proto::route_service_server::{RouteService, RouteServiceServer};
use crate::policy::PolicyError;
use crate::policy::PolicyFile;
use crate::policy::PolicyQuery;

/// What cni-ctl asks the daemon to forget (`ControllerService/Invalidate`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invalidation {
    /// Every cached answer involving one of these addresses (as source or destination).
    pub ips: Vec<IpAddr>,
    /// Every cached answer of a policy version below this one (0: none).
    pub below_version: u64,
    /// Everything.
    pub all: bool,
}

/// What the daemon dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvalidationReply {
    /// Cached answers dropped.
    pub dropped: u64,
    /// Connection flows deleted from the switches.
    pub flows_deleted: u64,
}

/// The daemon's invalidation, called on the server's runtime for each `Invalidate`. It returns
/// a future, awaited by the handler: the shards' answers are awaited, never waited for on the
/// runtime's thread (which also runs every shard's cni-ctl queries). An error is the call's
/// status, e.g. `DEADLINE_EXCEEDED` when the shards did not answer in time.
pub type InvalidateFn = Arc<dyn Fn(Invalidation) -> BoxFuture<InvalidationReply, Status> + Send + Sync>;

/// The `RouteService` state: the policy (replaceable while serving), an added latency per call,
/// and a call counter.
pub struct RouteState {
    policy: RwLock<Arc<PolicyFile>>,
    latency: Duration,
    calls: AtomicU64,
}

impl RouteState {
    /// Answers from `policy`, each call delayed by `latency` (zero: none).
    pub fn new(policy: PolicyFile, latency: Duration) -> Arc<RouteState> {
        Arc::new(RouteState { policy: RwLock::new(Arc::new(policy)), latency, calls: AtomicU64::new(0) })
    }

    /// The policy answered from now on (e.g. a reload on SIGHUP).
    pub fn replace(&self, policy: PolicyFile) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    pub fn policy(&self) -> Arc<PolicyFile> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `Exist` calls received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn latency(&self) -> Duration {
        self.latency
    }
}

struct RouteSvc(Arc<RouteState>);

#[tonic::async_trait]
impl RouteService for RouteSvc {
    async fn exist(&self, request: Request<proto::RouteQuery>) -> Result<Response<proto::NetworkPolicy>, Status> {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        let q = PolicyQuery::try_from(request.get_ref()).map_err(Status::invalid_argument)?;
        if !self.0.latency.is_zero() {
            tokio::time::sleep(self.0.latency).await;
        }
        let answer = self.0.policy().evaluate(&q);
        Ok(Response::new(proto::NetworkPolicy::from(&answer)))
    }

    async fn exist_batch(
        &self,
        request: Request<proto::RouteQueries>,
    ) -> Result<Response<proto::NetworkPolicies>, Status> {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        let queries = &request.get_ref().queries;
        if queries.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} queries in one batch: at most {MAX_BATCH}",
                queries.len()
            )));
        }
        let queries: Vec<PolicyQuery> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| PolicyQuery::try_from(q).map_err(|e| Status::invalid_argument(format!("query {i}: {e}"))))
            .collect::<Result<_, _>>()?;
        // The added latency is per call, as for Exist: a batch costs one round trip.
        if !self.0.latency.is_zero() {
            tokio::time::sleep(self.0.latency).await;
        }
        let policy = self.0.policy();
        let answers = queries.iter().map(|q| proto::NetworkPolicy::from(&policy.evaluate(q))).collect();
        Ok(Response::new(proto::NetworkPolicies { answers }))
    }
}

/// The most queries one `ExistBatch` may carry (the client sends at most this many).
pub const MAX_BATCH: usize = 1024;

struct ControllerSvc(InvalidateFn);

#[tonic::async_trait]
impl ControllerService for ControllerSvc {
    async fn invalidate(
        &self,
        request: Request<proto::Invalidation>,
    ) -> Result<Response<proto::InvalidationReply>, Status> {
        let m = request.into_inner();
        let mut ips = Vec::with_capacity(m.ips.len());
        for (i, s) in m.ips.iter().enumerate() {
            let ip =
                s.parse().map_err(|_| Status::invalid_argument(format!("ips[{i}]: {s:?} is not an IP address")))?;
            ips.push(ip);
        }
        let reply = (self.0)(Invalidation { ips, below_version: m.below_version, all: m.all }).await?;
        Ok(Response::new(proto::InvalidationReply { dropped: reply.dropped, flows_deleted: reply.flows_deleted }))
    }
}

/// Which services [`serve`] runs.
#[derive(Clone, Default)]
pub struct Services {
    route: Option<Arc<RouteState>>,
    controller: Option<InvalidateFn>,
}

impl Services {
    pub fn new() -> Services {
        Services::default()
    }

    /// Serve `RouteService` (cni-ctl's side) from `state`.
    pub fn route(mut self, state: Arc<RouteState>) -> Services {
        self.route = Some(state);
        self
    }

    /// Serve `ControllerService` (the daemon's side): `Invalidate` calls `f`.
    pub fn controller(mut self, f: InvalidateFn) -> Services {
        self.controller = Some(f);
        self
    }
}

/// Both generated servers behind one path-routed service (tonic's own router needs axum, not
/// built here). A service not configured answers UNIMPLEMENTED.
#[derive(Clone)]
struct Router {
    route: Option<RouteServiceServer<RouteSvc>>,
    controller: Option<ControllerServiceServer<ControllerSvc>>,
}

impl Service<http::Request<tonic::body::Body>> for Router {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both generated servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if service == <RouteServiceServer<RouteSvc> as NamedService>::NAME {
            if let Some(s) = self.route.as_mut() {
                return s.call(req);
            }
        } else if service == <ControllerServiceServer<ControllerSvc> as NamedService>::NAME {
            if let Some(s) = self.controller.as_mut() {
                return s.call(req);
            }
        }
        let status = Status::unimplemented(format!("{path} is not served here"));
        Box::pin(async move { Ok(status.into_http()) })
    }
}

/// Serves `services` on `listener` (TCP_NODELAY on each connection) until `shutdown`
/// completes: the listener is closed at once, calls in progress finish.
pub async fn serve<F>(listener: tokio::net::TcpListener, services: Services, shutdown: F) -> Result<(), PolicyError>
where
    F: Future<Output = ()>,
{
    serve_with_tls(listener, services, None, shutdown).await
}

/// [`serve`], with mutual TLS when `tls` is given.
///
/// With `tls`, every connection must complete a TLS handshake with a client certificate that
/// chains to its CA; one that does not is closed before any gRPC is read. Without it the
/// services are plaintext, and a listener beyond loopback is logged as a warning.
pub async fn serve_with_tls<F>(
    listener: tokio::net::TcpListener,
    services: Services,
    tls: Option<&super::tls::TlsFiles>,
    shutdown: F,
) -> Result<(), PolicyError>
where
    F: Future<Output = ()>,
{
    let router = Router {
        route: services.route.map(|s| RouteServiceServer::new(RouteSvc(s))),
        controller: services.controller.map(|f| ControllerServiceServer::new(ControllerSvc(f))),
    };
    let local = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    match tls {
        Some(tls) => {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| PolicyError::Config(format!("TLS: {}", super::tls::error_chain(&e))))?;
        }
        None => {
            if let Some(addr) = local.filter(|a| !a.ip().is_loopback()) {
                tracing::warn!(%addr, "gRPC served in plaintext beyond loopback, with no client authentication: configure TLS");
            }
        }
    }
    builder
        .serve_with_incoming_shutdown(router, incoming, shutdown)
        .await
        .map_err(|e| PolicyError::Server(e.to_string()))
}
