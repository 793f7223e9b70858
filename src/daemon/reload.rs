//! Policy file reloads. SIGHUP makes the daemon read its policy file again; the file is parsed
//! and indexed on a thread of its own (`policy-reload`), never on a shard nor on the control
//! runtime, then swapped into the [`PolicyCell`] the shards read through their views. A bad
//! file is logged and counted, and the old policy stays.
//!
//! The replaced policy is kept by that thread until no shard holds it any more (each shard
//! takes the new one at its next decision, or within its 100 ms tick when idle), then freed
//! there: freeing an index is work (page unmapping, at worst milliseconds) a shard must not do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::control::signal::ShutdownSignal;
use crate::policy::index::IndexedPolicy;
use crate::policy::source::PolicyCell;
use crate::policy::PolicyFile;

/// How often the reload thread looks whether the shards let go of a replaced policy.
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// `shardflow_policy_*`: what reloads did.
#[derive(Clone)]
struct ReloadMetrics {
    /// `policy_reloads_total{result="ok|error"}`.
    reloads: IntCounterVec,
    /// `policy_rules`: rules of the policy in place.
    rules: IntGauge,
    /// `policy_generation`: 1 at start, +1 per reload.
    generation: IntGauge,
    /// `policy_reload_milliseconds`: read, parse and index time of the last good reload.
    reload_ms: IntGauge,
    /// `policy_retired`: replaced policies a shard still holds (freed once none does).
    retired: IntGauge,
}

impl ReloadMetrics {
    fn new(registry: &prometheus::Registry) -> Result<ReloadMetrics, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new("policy_reloads_total", "Policy file reloads (SIGHUP) by result"),
            &["result"],
        )?;
        let rules = IntGauge::new("policy_rules", "Rules of the policy file in place")?;
        let generation = IntGauge::new("policy_generation", "Policy file generation (1 at start, +1 per reload)")?;
        let reload_ms =
            IntGauge::new("policy_reload_milliseconds", "Read, parse and index time of the last good reload")?;
        let retired = IntGauge::new("policy_retired", "Replaced policies still held by a shard")?;
        for c in [&rules, &generation, &reload_ms, &retired] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(reloads.clone()))?;
        // Both series exist from the start (a scrape sees 0, not nothing).
        reloads.with_label_values(&["ok"]);
        reloads.with_label_values(&["error"]);
        Ok(ReloadMetrics { reloads, rules, generation, reload_ms, retired })
    }
}

/// Starts the reload thread and the SIGHUP listener (on `runtime`, the control runtime).
pub(super) fn start(
    cell: Arc<PolicyCell>,
    path: PathBuf,
    registry: &prometheus::Registry,
    runtime: &tokio::runtime::Handle,
    shutdown: ShutdownSignal,
) -> Result<(), String> {
    let metrics = ReloadMetrics::new(registry).map_err(|e| format!("policy reload metrics: {e}"))?;
    {
        let p = cell.load();
        metrics.rules.set(p.file().rules.len() as i64);
        metrics.generation.set(cell.generation() as i64);
    }
    // One pending request is enough: a reload reads the file as it is when it starts.
    let (tx, rx) = flume::bounded::<()>(1);
    let signal = shutdown.clone();
    let hup = {
        let _guard = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?
    };
    runtime.spawn(async move {
        let mut hup = hup;
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        break;
                    }
                    tracing::info!("SIGHUP: reloading the policy file");
                    let _ = tx.try_send(());
                }
                _ = signal.wait() => break,
            }
        }
    });
    std::thread::Builder::new()
        .name("policy-reload".into())
        .spawn(move || reload_thread(cell, path, rx, metrics, shutdown))
        .map_err(|e| format!("cannot start the policy reload thread: {e}"))?;
    Ok(())
}

fn reload_thread(
    cell: Arc<PolicyCell>,
    path: PathBuf,
    requests: flume::Receiver<()>,
    metrics: ReloadMetrics,
    shutdown: ShutdownSignal,
) {
    let mut retired: Vec<Arc<IndexedPolicy>> = Vec::new();
    loop {
        match requests.recv_timeout(RETIRE_POLL) {
            Ok(()) => {
                if let Some(old) = reload(&cell, &path, &metrics) {
                    retired.push(old);
                }
            }
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => break,
        }
        // Freed here, on this thread, once the shards hold the new one only.
        retired.retain(|old| Arc::strong_count(old) > 1);
        metrics.retired.set(retired.len() as i64);
        if shutdown.is_triggered() {
            break;
        }
    }
}

/// Reads, indexes and swaps in the file; returns the replaced policy.
fn reload(cell: &PolicyCell, path: &PathBuf, metrics: &ReloadMetrics) -> Option<Arc<IndexedPolicy>> {
    let t = Instant::now();
    let file = match PolicyFile::load(path) {
        Ok(f) => f,
        Err(e) => {
            metrics.reloads.with_label_values(&["error"]).inc();
            tracing::error!("policy not reloaded, the old one stays: {e}");
            return None;
        }
    };
    let (version, rules) = (file.version, file.rules.len());
    let indexed = Arc::new(IndexedPolicy::new(file));
    let took = t.elapsed();
    let old = cell.replace(indexed);
    metrics.reloads.with_label_values(&["ok"]).inc();
    metrics.rules.set(rules as i64);
    metrics.generation.set(cell.generation() as i64);
    metrics.reload_ms.set(took.as_millis() as i64);
    tracing::info!(version, rules, generation = cell.generation(), ms = took.as_millis() as u64, "policy reloaded");
    Some(old)
}
