//! Where a shard's answers come from: everything allowed (`Embedded`), a policy file, or cni-ctl
//! over gRPC. The first two answer at once, without IO ([`PolicySource::answer_now`]); cni-ctl
//! answers on a flume channel a glommio shard can await ([`PolicySource::ask`]).
//!
//! The transport is not imported here: cni-ctl's client (`control::cnictl::client`) implements
//! [`RemotePolicy`] and the daemon injects it as [`PolicySource::CniCtl`].
//!
//! A policy file lives in a [`PolicyCell`]: replaced whole on a reload, read by the shards
//! through a [`PolicyView`] that never waits (see there).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::decision::{Location, Locator};
use super::error::PolicyError;
use super::file::PolicyFile;
use super::index::IndexedPolicy;
use super::{NetworkPolicy, PolicyQuery};

/// A policy service reached over the network (cni-ctl): asked without blocking, answered on a
/// channel. Implemented by the transport (`control::cnictl::PolicyClientHandle`), so this layer
/// stays free of it.
pub trait RemotePolicy: Send + Sync {
    /// Sends the query; the answer (or why there is none) arrives on the returned channel.
    /// Must not block: a glommio shard calls it.
    fn query(&self, q: PolicyQuery) -> flume::Receiver<Result<NetworkPolicy, PolicyError>>;
    /// The service is considered down (consecutive failures).
    fn is_down(&self) -> bool;
    /// Where it is, for logs.
    fn endpoint(&self) -> &str;
}

/// The daemon's policy source.
#[derive(Clone)]
pub enum PolicySource {
    /// Everything allowed, untranslated: Kubernetes without NetworkPolicies or services.
    Embedded,
    /// A policy file (indexed), evaluated in place; replaceable while the shards decide.
    File(Arc<PolicyCell>),
    /// cni-ctl over gRPC (the transport, injected by the daemon).
    CniCtl(Arc<dyn RemotePolicy>),
}

impl std::fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Embedded => f.write_str("Embedded"),
            PolicySource::File(c) => {
                let p = c.load();
                write!(
                    f,
                    "File(version {}, {} rules, generation {})",
                    p.version(),
                    p.file().rules.len(),
                    c.generation()
                )
            }
            PolicySource::CniCtl(c) => write!(f, "CniCtl({})", c.endpoint()),
        }
    }
}

impl PolicySource {
    /// A policy file's source, indexed here (off the shards: about a second per million rules).
    pub fn from_file(file: PolicyFile) -> PolicySource {
        PolicySource::File(Arc::new(PolicyCell::new(IndexedPolicy::new(file))))
    }

    /// The answer without IO: `Some` for `Embedded` and `File`, `None` for cni-ctl (use
    /// [`PolicySource::ask`]). A shard decides from its [`PolicyView`] instead: for a file this
    /// takes the cell's lock (held by a reload for a pointer swap).
    pub fn answer_now(&self, q: PolicyQuery) -> Option<NetworkPolicy> {
        match self {
            PolicySource::Embedded => Some(NetworkPolicy::allow()),
            PolicySource::File(f) => Some(f.load().evaluate(&q)),
            PolicySource::CniCtl(_) => None,
        }
    }

    /// The answer on a channel (`rx.recv_async().await` on a shard). cni-ctl: the query is sent
    /// on the client's runtime (coalesced with an identical one in flight); the others: the
    /// channel already holds the answer.
    pub fn ask(&self, q: PolicyQuery) -> flume::Receiver<Result<NetworkPolicy, PolicyError>> {
        match self {
            PolicySource::CniCtl(c) => c.query(q),
            other => {
                let (tx, rx) = flume::bounded(1);
                let answer = other.answer_now(q).ok_or(PolicyError::Stopped);
                let _ = tx.send(answer);
                rx
            }
        }
    }

    /// cni-ctl is considered down (consecutive failures); never for the others. The daemon
    /// decides fail-closed (deny) or fail-open (allow) from this.
    pub fn is_down(&self) -> bool {
        match self {
            PolicySource::CniCtl(c) => c.is_down(),
            _ => false,
        }
    }

    /// The policy file's cell, if the source is one (its `[[endpoint]]`s are a [`Locator`]).
    pub fn file(&self) -> Option<&Arc<PolicyCell>> {
        match self {
            PolicySource::File(f) => Some(f),
            _ => None,
        }
    }
}

/// A file's static endpoints; nothing for the other sources.
impl Locator for PolicySource {
    fn locate(&self, ip: std::net::IpAddr) -> Option<Location> {
        self.file().and_then(|f| f.load().locate(ip))
    }
}

// === a replaceable policy ===

/// The current policy file, replaced whole by a reload while the shards go on deciding.
///
/// A versioned pointer: `generation` (an atomic) says whether the pointer moved; the pointer
/// itself sits behind a mutex that a reload holds only to swap it. A shard never waits on it:
/// its [`PolicyView`] compares generations (one atomic load per decision) and, when they
/// differ, *tries* the lock; if a swap holds it that instant, the shard decides with the
/// snapshot it has and tries again at the next decision. The old snapshot is handed back by
/// [`PolicyCell::replace`] so the caller frees it off the shards (see
/// `daemon::reload`).
pub struct PolicyCell {
    generation: AtomicU64,
    current: Mutex<Arc<IndexedPolicy>>,
}

impl PolicyCell {
    pub fn new(policy: IndexedPolicy) -> PolicyCell {
        PolicyCell { generation: AtomicU64::new(1), current: Mutex::new(Arc::new(policy)) }
    }

    /// Bumped by every replacement (starts at 1).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current policy and its generation, unless a replacement holds the lock right now.
    /// Never blocks.
    pub fn try_load(&self) -> Option<(u64, Arc<IndexedPolicy>)> {
        let g = self.current.try_lock().ok()?;
        Some((self.generation.load(Ordering::Acquire), g.clone()))
    }

    /// The current policy. Takes the lock: not on a shard (use a [`PolicyView`]).
    pub fn load(&self) -> Arc<IndexedPolicy> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `policy` in place and returns the one it replaces. Drop that one off the shards,
    /// once no shard holds it (`Arc::strong_count == 1`): freeing a big index takes a while.
    pub fn replace(&self, policy: Arc<IndexedPolicy>) -> Arc<IndexedPolicy> {
        let mut g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *g, policy);
        // Inside the lock: a reader that takes the lock reads the generation of what it got.
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(g);
        old
    }
}

/// A shard's snapshot of a [`PolicyCell`]: what it decides with, refreshed without waiting
/// when a reload moved the generation. Not `Sync`: one per shard.
pub struct PolicyView {
    cell: Arc<PolicyCell>,
    snapshot: RefCell<(u64, Arc<IndexedPolicy>)>,
}

impl PolicyView {
    /// Off the shards (or at a shard's start): takes the current policy.
    pub fn new(cell: Arc<PolicyCell>) -> PolicyView {
        let current = cell.load();
        let generation = cell.generation();
        PolicyView { cell, snapshot: RefCell::new((generation, current)) }
    }

    /// Takes the newest policy if a reload replaced it and the cell is free this instant;
    /// returns the generation decided with from now on. One atomic load when nothing changed.
    pub fn refresh(&self) -> u64 {
        let seen = self.snapshot.borrow().0;
        if self.cell.generation() != seen {
            if let Some(fresh) = self.cell.try_load() {
                // The old snapshot is dropped here, but the reload that replaced it still
                // holds it: it is freed off the shards.
                *self.snapshot.borrow_mut() = fresh;
            }
        }
        self.snapshot.borrow().0
    }

    /// Runs `f` on the snapshot (no reference count touched: nothing shared is written).
    pub fn with<R>(&self, f: impl FnOnce(&IndexedPolicy) -> R) -> R {
        f(&self.snapshot.borrow().1)
    }
}

/// The snapshot's `[[endpoint]]`s.
impl Locator for PolicyView {
    fn locate(&self, ip: std::net::IpAddr) -> Option<Location> {
        self.with(|p| p.locate(ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::MacAddr;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn q() -> PolicyQuery {
        PolicyQuery {
            src_ip: "10.0.0.1".parse().unwrap(),
            dst_ip: "10.0.0.2".parse().unwrap(),
            src_mac: MacAddr::ZERO,
            dst_mac: MacAddr::ZERO,
            src_port: 1000,
            dst_port: 80,
            protocol: 6,
            is_reply: false,
            nat: false,
        }
    }

    #[test]
    fn embedded_and_file_answer_now() {
        let e = PolicySource::Embedded;
        assert_eq!(e.answer_now(q()), Some(NetworkPolicy::allow()));
        assert_eq!(e.ask(q()).recv().unwrap().unwrap(), NetworkPolicy::allow());
        assert!(!e.is_down());
        let f = PolicySource::from_file(PolicyFile::parse("default = \"deny\"\nversion = 2").unwrap());
        let p = f.answer_now(q()).unwrap();
        assert!(!p.allowed);
        assert_eq!(p.version, 2);
        assert_eq!(f.ask(q()).try_recv().unwrap().unwrap(), p);
        assert!(f.locate("10.0.0.1".parse().unwrap()).is_none());
    }

    /// A policy of `n` /32-to-/32 rules (none matches `q()`), deny by default, `version`.
    fn big(n: u32, version: u64) -> PolicyFile {
        use crate::policy::file::{AddrMatch, Protocol, Rule, RuleAction};
        let host = |a: u32| AddrMatch::Net(format!("{}/32", std::net::Ipv4Addr::from(a)).parse().unwrap());
        let rules = (0..n)
            .map(|i| Rule {
                action: RuleAction::Allow,
                src: host(0x0b00_0000 + i),
                dst: host(0x0c00_0000 + i),
                protocol: Protocol::Tcp,
                ports: None,
            })
            .collect();
        PolicyFile { version, default: RuleAction::Deny, rules, ..PolicyFile::default() }
    }

    #[test]
    fn decisions_go_on_while_a_big_policy_is_built_and_swapped() {
        let cell = Arc::new(PolicyCell::new(IndexedPolicy::new(big(10, 1))));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let decisions = Arc::new(AtomicU64::new(0));
        // The "shard": decides in a loop through its view, as the Decider does.
        let shard = {
            let (cell, stop, decisions) = (cell.clone(), stop.clone(), decisions.clone());
            std::thread::spawn(move || {
                let view = PolicyView::new(cell);
                let mut max = std::time::Duration::ZERO;
                let mut versions = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let t = std::time::Instant::now();
                    view.refresh();
                    let p = view.with(|f| f.evaluate(&q()));
                    max = max.max(t.elapsed());
                    if versions.last() != Some(&p.version) {
                        versions.push(p.version);
                    }
                    decisions.fetch_add(1, Ordering::Release);
                }
                (max, versions)
            })
        };
        while decisions.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        // The reload: build (the long part) and swap, off the "shard".
        let before = decisions.load(Ordering::Acquire);
        let t = std::time::Instant::now();
        let fresh = Arc::new(IndexedPolicy::new(big(200_000, 2)));
        let built = decisions.load(Ordering::Acquire);
        let old = cell.replace(fresh);
        let reload = t.elapsed();
        assert!(built > before, "the shard decided while the index was built ({before} -> {built})");
        // The shard takes the new policy at its next decision and lets go of the old one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(Arc::strong_count(&old), 1, "the shard released the replaced policy");
        stop.store(true, Ordering::Release);
        let (max, versions) = shard.join().unwrap();
        assert_eq!(versions, vec![1, 2], "answers of the old policy, then of the new one");
        assert_eq!(cell.generation(), 2);
        eprintln!(
            "FIGURE reload of 200k rules (debug build) in {reload:?}: {} decisions meanwhile, max decision {max:?}",
            built - before
        );
    }

    #[test]
    fn a_view_never_waits_for_the_lock() {
        let cell = Arc::new(PolicyCell::new(IndexedPolicy::new(big(1, 1))));
        let view = PolicyView::new(cell.clone());
        // A writer holds the lock (as a swap does for an instant) after moving the generation.
        let g = cell.current.lock().unwrap();
        cell.generation.fetch_add(1, Ordering::AcqRel);
        assert_eq!(view.refresh(), 1, "the view keeps its snapshot rather than wait");
        assert_eq!(view.with(|p| p.version()), 1);
        drop(g);
        assert_eq!(view.refresh(), 2, "and takes the new one once the lock is free");
    }
}
