//! A pool of glommio executors, one thread each, optionally pinned one per CPU.
//!
//! Every shard runs one *main task* built by the caller's `make(ShardCtx)`; the shard lives
//! as long as that task. The pool starts in two phases so that a failure leaves nothing
//! half-running: first every executor is created (each reports "ready" from inside its own
//! thread), and only when all of them are up does any main task start. If one executor cannot
//! be created (bad CPU, locked-memory limit, thread spawn failure) the others exit without
//! running `make`, and [`Pool::start`] returns the error.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{BuilderErrorKind, ExecutorJoinHandle, GlommioError, LocalExecutorBuilder, Placement};

use crate::procfs as cpus;
use crate::ShardId;

/// glommio refuses to create an executor with less registered IO memory than this.
pub const MIN_IO_MEMORY: usize = 512 * 1024;

/// Default registered IO memory per executor: 1 MiB. glommio's own default (10 MiB) exceeds
/// the 8 MiB RLIMIT_MEMLOCK common on VMs and containers; a controller does little storage IO.
pub const DEFAULT_IO_MEMORY: usize = 1 << 20;

// === PoolConfig ===

/// How many executors to start and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of shards (executors, threads). At least 1.
    pub shards: usize,
    /// One CPU per shard (shard `i` is pinned to `cpus[i]`), or `None` to let the kernel
    /// schedule the threads anywhere.
    pub cpus: Option<Vec<usize>>,
    /// Registered IO memory per executor, in bytes (>= [`MIN_IO_MEMORY`]). Each one counts
    /// against RLIMIT_MEMLOCK: a service unit needs `LimitMEMLOCK` >= shards * io_memory.
    pub io_memory: usize,
    /// Busy-poll this long before parking an idle executor. Cross-core wake-ups cost ~100 us
    /// when parked and ~15-20 us with 50-100 us of spinning: a latency / CPU trade-off.
    pub spin_before_park: Option<Duration>,
    /// Thread name prefix; shard `i` runs on thread `{name}-{i}-{glommio id}`.
    pub name: String,
}

impl PoolConfig {
    /// `shards` unpinned executors with the defaults.
    pub fn new(shards: usize) -> PoolConfig {
        PoolConfig {
            shards,
            cpus: None,
            io_memory: DEFAULT_IO_MEMORY,
            spin_before_park: None,
            name: "shard".to_string(),
        }
    }

    /// Checks the configuration before any thread starts: at least one shard, enough IO memory
    /// for glommio, and when CPUs are given, one per shard, distinct, and each one this process
    /// may run on.
    pub fn validate(&self) -> Result<(), PoolError> {
        if self.shards == 0 {
            return Err(PoolError::NoShards);
        }
        if self.name.contains('\0') {
            return Err(PoolError::BadName(self.name.clone()));
        }
        if self.io_memory < MIN_IO_MEMORY {
            return Err(PoolError::IoMemoryTooSmall { io_memory: self.io_memory, min: MIN_IO_MEMORY });
        }
        if let Some(list) = &self.cpus {
            if list.len() != self.shards {
                return Err(PoolError::CpuCountMismatch { shards: self.shards, cpus: list.len() });
            }
            let mut seen = list.clone();
            seen.sort_unstable();
            if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                return Err(PoolError::DuplicateCpu(w[0]));
            }
            let allowed = cpus::process_allowed_cpus().map_err(|e| PoolError::CpuProbe(e.to_string()))?;
            if let Some(&cpu) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(PoolError::NoSuchCpu { cpu, allowed });
            }
        }
        Ok(())
    }

    /// Locked memory the pool's executors register in total (`shards * io_memory`), to
    /// compare with [`crate::memlock_limit`].
    pub fn memlock_needed(&self) -> u64 {
        (self.shards as u64).saturating_mul(self.io_memory as u64)
    }

    fn placement(&self, shard: usize) -> Placement {
        match &self.cpus {
            Some(list) => list.get(shard).map_or(Placement::Unbound, |&c| Placement::Fixed(c)),
            None => Placement::Unbound,
        }
    }
}

// === ShardCtx ===

/// What a shard's main task knows about its place in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCtx {
    /// This shard.
    pub id: ShardId,
    /// Size of the pool; keys map to shards with `shard_of(hash, n_shards)`.
    pub n_shards: usize,
}

// === errors ===

/// Why a shard did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFailure {
    pub shard: ShardId,
    /// True if its main task (or the thread) panicked; false if glommio failed.
    pub panicked: bool,
    /// The panic message or glommio's error text.
    pub reason: String,
}

impl fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.panicked { "panicked" } else { "failed" };
        write!(f, "{} {what}: {}", self.shard, self.reason)
    }
}

/// Errors of configuring, starting and joining a [`Pool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    NoShards,
    IoMemoryTooSmall {
        io_memory: usize,
        min: usize,
    },
    CpuCountMismatch {
        shards: usize,
        cpus: usize,
    },
    DuplicateCpu(usize),
    /// A thread name cannot hold a NUL byte.
    BadName(String),
    NoSuchCpu {
        cpu: usize,
        allowed: Vec<usize>,
    },
    /// The process affinity mask could not be read to check the CPUs.
    CpuProbe(String),
    /// The thread of a shard could not be started.
    Spawn {
        shard: ShardId,
        reason: String,
    },
    /// One or more shards failed to start (from [`Pool::start`]) or failed or panicked while
    /// running (from [`Pool::join`]).
    Shards(Vec<ShardFailure>),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::NoShards => write!(f, "a pool needs at least one shard"),
            PoolError::IoMemoryTooSmall { io_memory, min } => {
                write!(f, "io_memory {io_memory} bytes is below glommio's minimum of {min}")
            }
            PoolError::CpuCountMismatch { shards, cpus } => {
                write!(f, "{shards} shards but {cpus} CPUs given: give one CPU per shard")
            }
            PoolError::DuplicateCpu(c) => write!(f, "CPU {c} is given to two shards"),
            PoolError::BadName(n) => write!(f, "pool name {n:?} holds a NUL byte"),
            PoolError::NoSuchCpu { cpu, allowed } => {
                write!(f, "CPU {cpu} does not exist or is not allowed for this process (allowed: {allowed:?})")
            }
            PoolError::CpuProbe(e) => write!(f, "cannot read this process's CPU affinity: {e}"),
            PoolError::Spawn { shard, reason } => write!(f, "cannot start {shard}: {reason}"),
            PoolError::Shards(list) => {
                write!(f, "{} shard(s) failed", list.len())?;
                for s in list {
                    write!(f, "; {s}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PoolError {}

// === Pool ===

/// Running executors; [`Pool::join`] waits for their main tasks to return. Dropping a pool
/// without joining it detaches the threads: they run on until their main tasks return.
#[must_use = "a pool must be joined to learn whether its shards failed"]
pub struct Pool {
    handles: Vec<(ShardId, ExecutorJoinHandle<()>)>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("shards", &self.handles.len()).finish()
    }
}

impl Pool {
    /// Starts `cfg.shards` executors and runs `make(ctx)` as the main task of each. Returns
    /// once every executor is up and its main task released; an error if the config is
    /// invalid or any executor could not be created (then no main task has run).
    ///
    /// Blocking: call it from a plain thread (`main`), not from an executor.
    pub fn start<F, Fut>(cfg: &PoolConfig, make: F) -> Result<Pool, PoolError>
    where
        F: Fn(ShardCtx) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        cfg.validate()?;
        Self::start_validated(cfg, make)
    }

    fn start_validated<F, Fut>(cfg: &PoolConfig, make: F) -> Result<Pool, PoolError>
    where
        F: Fn(ShardCtx) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let n = cfg.shards;
        let (ready_tx, ready_rx) = mpsc::channel::<ShardId>();
        let mut go = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);

        for i in 0..n {
            let id = ShardId(i);
            let ctx = ShardCtx { id, n_shards: n };
            let (go_tx, go_rx) = flume::bounded::<()>(1);
            let ready = ready_tx.clone();
            let make = make.clone();
            let mut builder =
                LocalExecutorBuilder::new(cfg.placement(i)).name(&format!("{}-{i}", cfg.name)).io_memory(cfg.io_memory);
            if let Some(spin) = cfg.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            // The closure runs inside the new thread once its executor exists; if creating the
            // executor fails, the closure (and its `ready` sender) is dropped unrun.
            let spawned = builder.spawn(move || async move {
                let _ = ready.send(id);
                drop(ready);
                // Disconnected = start aborted: leave without running the main task.
                if go_rx.recv_async().await.is_ok() {
                    make(ctx).await;
                }
            });
            match spawned {
                Ok(h) => {
                    handles.push((id, h));
                    go.push(go_tx);
                }
                Err(e) => {
                    drop(go);
                    drop(ready_tx);
                    let _ = join_all(handles);
                    return Err(PoolError::Spawn { shard: id, reason: e.to_string() });
                }
            }
        }
        drop(ready_tx);

        // Every shard either says ready or drops its sender (executor creation failed).
        let mut ready = 0;
        while ready < n && ready_rx.recv().is_ok() {
            ready += 1;
        }
        if ready < n {
            drop(go);
            let failures = join_all(handles);
            return Err(PoolError::Shards(failures));
        }
        for tx in go {
            // A shard's receiver lives until it got this token; bounded(1) never blocks here.
            let _ = tx.send(());
        }
        Ok(Pool { handles })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: a started pool has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Waits until every shard's main task has returned. Failures and panics of any shard are
    /// collected into [`PoolError::Shards`] (all shards are joined, not just up to the first
    /// failure); a panic is not propagated to the caller.
    pub fn join(self) -> Result<(), PoolError> {
        let failures = join_all(self.handles);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(PoolError::Shards(failures))
        }
    }
}

fn join_all(handles: Vec<(ShardId, ExecutorJoinHandle<()>)>) -> Vec<ShardFailure> {
    handles
        .into_iter()
        .filter_map(|(shard, h)| match h.join() {
            Ok(()) => None,
            Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(p))) => {
                Some(ShardFailure { shard, panicked: true, reason: panic_text(p.as_ref()) })
            }
            Err(e) => Some(ShardFailure { shard, panicked: false, reason: e.to_string() }),
        })
        .collect()
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard that cannot be placed aborts the start: the shards already running exit
    /// without ever running their main task, and `start` returns only after they are gone.
    #[test]
    fn failed_spawn_aborts_the_started_shards() {
        let mut cfg = PoolConfig::new(3);
        cfg.cpus = Some(vec![0, 1 << 20, 0]); // skips validate: CPU 1M does not exist
        let (tx, rx) = flume::unbounded::<ShardId>();
        let res = Pool::start_validated(&cfg, move |ctx| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(ctx.id);
            }
        });
        match res {
            Err(PoolError::Spawn { shard, reason }) => {
                assert_eq!(shard, ShardId(1));
                assert!(reason.contains("1048576"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "no main task ran");
        assert!(rx.is_disconnected(), "shard 0 finished and dropped its copy of `make`");
    }
}
