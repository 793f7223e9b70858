//! The control plane: one OS thread (`shardflow-control`) running a tokio current-thread
//! runtime, apart from the glommio shards. It owns process signals (SIGTERM, SIGINT), turns them
//! into a [`ShutdownSignal`] the shards await, serves the HTTP endpoint (metrics, health, REST;
//! see [`http`]) on that runtime, and offers the runtime ([`ControlPlane::runtime`]) to the
//! tokio-based clients and servers (gRPC to and from cni-ctl). Nothing on the runtime's thread
//! waits: REST handlers, whose shard calls wait until their deadline, run on its blocking pool.
//!
//! Lifecycle: [`ControlPlane::start`] returns once the HTTP port is bound and the signal
//! handlers are installed (so a SIGTERM after it returns is never lost). Shutdown comes from a
//! signal, [`ControlPlane::shutdown`] or any [`ShutdownTrigger`]; the control thread then stops
//! serving HTTP (closing the port) and its runtime, and [`ControlPlane::join`] returns the
//! reason. Dropping a `ControlPlane` shuts it down and joins it.

pub mod api;
pub mod auth;
pub mod cnictl;
pub mod http;
pub mod metrics;
pub mod node;
pub mod signal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use api::{ApiError, ControlApi, DeleteFilter, Dpid, FlowCommand, FlowModReply, ShardStats, SwitchInfo};
pub use metrics::{Metrics, MetricsError, ShardMetrics};
pub use signal::{shutdown_channel, ShutdownReason, ShutdownSignal, ShutdownTrigger};

use crate::config::Config;
use http::{HttpContext, HttpLimits, HttpServer};

/// How long tasks on the control runtime get to finish after shutdown is triggered.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// Why the control plane could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Auth(auth::AuthError),
    #[error("http.listen: cannot listen on {addr}: {message}")]
    HttpBind { addr: SocketAddr, message: String },
    #[error("cannot build the control runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("cannot spawn a control thread: {0}")]
    Thread(std::io::Error),
    #[error("the control thread panicked")]
    Panicked,
}

/// The running control plane.
pub struct ControlPlane {
    trigger: ShutdownTrigger,
    signal: ShutdownSignal,
    http_addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    thread: Option<JoinHandle<ShutdownReason>>,
}

impl ControlPlane {
    /// Bind the HTTP endpoint on `cfg.http.listen`, start the control thread and install the
    /// signal handlers. API calls from HTTP get `cfg.openflow.request_timeout()` as deadline.
    pub fn start(cfg: &Config, metrics: Arc<Metrics>, api: Arc<dyn ControlApi>) -> Result<ControlPlane, ControlError> {
        ControlPlane::start_with_shutdown(cfg, metrics, api, shutdown_channel())
    }

    /// Like [`ControlPlane::start`], with a shutdown pair made earlier by
    /// [`shutdown_channel`] (when the shards start first and already hold the signal).
    pub fn start_with_shutdown(
        cfg: &Config,
        metrics: Arc<Metrics>,
        api: Arc<dyn ControlApi>,
        (trigger, signal): (ShutdownTrigger, ShutdownSignal),
    ) -> Result<ControlPlane, ControlError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (auth, source) = auth::HttpAuth::resolve(&cfg.http, &env).map_err(ControlError::Auth)?;
        log_auth(cfg, &source);
        let ctx = HttpContext { metrics, api, request_timeout: cfg.openflow.request_timeout(), auth };
        // Bound here, so a port in use is an error of `start`; served on the control runtime.
        let http = HttpServer::bind(cfg.http.listen)?;
        let http_addr = http.addr();
        let limits = cfg.http.limits();
        let (init_tx, init_rx) = std::sync::mpsc::channel();
        let (t, s) = (trigger.clone(), signal.clone());
        let spawned = std::thread::Builder::new()
            .name("shardflow-control".to_string())
            .spawn(move || control_thread(t, s, (http, ctx, limits), init_tx));
        let thread = spawned.map_err(ControlError::Thread)?;
        let runtime = match init_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ControlError::Panicked);
            }
        };
        Ok(ControlPlane { trigger, signal, http_addr, runtime, thread: Some(thread) })
    }

    /// The HTTP endpoint's bound address (the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The signal shards await (`signal.wait().await`).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.signal.clone()
    }

    /// A trigger for components that must be able to stop the daemon (fatal errors).
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// The control runtime, to spawn tokio tasks (gRPC clients) on. Tasks are dropped when
    /// the control plane stops.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.clone()
    }

    /// Trigger shutdown programmatically (idempotent). Does not wait: see [`ControlPlane::join`].
    pub fn shutdown(&self) {
        self.trigger.trigger(ShutdownReason::Requested);
    }

    /// Wait until the control plane has stopped (after a signal or [`ControlPlane::shutdown`]);
    /// the HTTP port is closed when this returns.
    pub fn join(mut self) -> Result<ShutdownReason, ControlError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<ShutdownReason, ControlError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ControlError::Panicked),
            None => Ok(self.signal.reason().unwrap_or(ShutdownReason::Requested)),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
            let _ = self.join_inner();
        }
    }
}

/// Say at start how the REST API is guarded, and warn about what exposes it.
fn log_auth(cfg: &Config, source: &Option<auth::TokenSource>) {
    match source {
        None => tracing::warn!(
            "http.auth = false: the REST API (flows, tracker, invalidate) is open to anyone who reaches {}",
            cfg.http.listen
        ),
        Some(auth::TokenSource::Env) => tracing::info!("REST API token from {}", auth::TOKEN_ENV),
        Some(auth::TokenSource::File(p)) => tracing::info!(path = %p.display(), "REST API token from http.token_file"),
        Some(auth::TokenSource::Generated(p)) => {
            tracing::info!(path = %p.display(), "REST API token generated (mode 0600)")
        }
    }
    if !cfg.http.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %cfg.http.listen,
            "the HTTP endpoint listens beyond loopback: anyone on the network can reach it (and read /metrics); \
             its traffic, the bearer token included, is not encrypted"
        );
    }
}

fn control_thread(
    trigger: ShutdownTrigger,
    signal: ShutdownSignal,
    (http, ctx, limits): (HttpServer, HttpContext, HttpLimits),
    init: std::sync::mpsc::Sender<Result<tokio::runtime::Handle, ControlError>>,
) -> ShutdownReason {
    let built = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(http::blocking_threads(&limits))
        .thread_name("shardflow-control-blocking")
        .build();
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            let _ = init.send(Err(ControlError::Runtime(e)));
            return ShutdownReason::Fatal;
        }
    };
    let handle = rt.handle().clone();
    // The listener closes when this task ends: on the shutdown signal, or with the runtime.
    let http_task = rt.spawn(http.serve(ctx, limits, signal.clone()));
    let reason = rt.block_on(async {
        use tokio::signal::unix::{signal as unix_signal, SignalKind};
        let installed =
            unix_signal(SignalKind::terminate()).and_then(|t| unix_signal(SignalKind::interrupt()).map(|i| (t, i)));
        let (mut term, mut int) = match installed {
            Ok(pair) => pair,
            Err(e) => {
                let _ = init.send(Err(ControlError::Signal(e)));
                return None;
            }
        };
        let _ = init.send(Ok(handle));
        tracing::debug!("control plane running");
        tokio::select! {
            _ = term.recv() => trigger.trigger(ShutdownReason::Sigterm),
            _ = int.recv() => trigger.trigger(ShutdownReason::Sigint),
            _ = signal.wait() => {}
        }
        // Tasks on this runtime (gRPC clients) await the same signal: let them finish, within
        // a bounded grace period, instead of dropping them mid-flight.
        let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while tokio::runtime::Handle::current().metrics().num_alive_tasks() > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Some(signal.reason().unwrap_or(ShutdownReason::Requested))
    });
    http_task.abort();
    // Tasks still alive after the grace period are dropped.
    rt.shutdown_timeout(std::time::Duration::from_millis(50));
    tracing::info!(?reason, "control plane stopped");
    reason.unwrap_or(ShutdownReason::Fatal)
}

#[cfg(test)]
mod tests;
