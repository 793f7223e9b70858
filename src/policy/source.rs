//! Where a shard's answers come from: everything allowed (`Embedded`), a policy file, or cni-ctl
//! over gRPC. The first two answer at once, without IO ([`PolicySource::answer_now`]); cni-ctl
//! answers on a flume channel a glommio shard can await ([`PolicySource::ask`]).

use std::sync::Arc;

use super::client::PolicyClientHandle;
use super::decision::{Location, Locator};
use super::file::PolicyFile;
use super::{NetworkPolicy, PolicyQuery};

/// Why a policy could not be loaded or an answer not obtained. `Clone`: one failed RPC answers
/// every coalesced waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {reason}")]
    Io { path: String, reason: String },
    /// The policy file is not valid (TOML syntax, or an entry, in `reason`).
    #[error("policy file {path}: {reason}")]
    Parse { path: String, reason: String },
    /// One entry of a policy file is wrong; `key` names it (`rule[2].src`, 0-based).
    #[error("{key}: {reason}")]
    Entry { key: String, reason: String },
    /// A client or server setting is wrong (bad endpoint URI ...).
    #[error("cni-ctl: {0}")]
    Config(String),
    /// cni-ctl could not be reached (after the retries).
    #[error("cni-ctl unavailable: {0}")]
    Unavailable(String),
    /// No answer within the per-call deadline.
    #[error("cni-ctl: no answer within {0} ms")]
    Timeout(u64),
    /// cni-ctl answered with another gRPC error.
    #[error("cni-ctl: {code}: {message}")]
    Rpc { code: String, message: String },
    /// cni-ctl's answer does not make sense (bad address, unknown dst_type ...).
    #[error("cni-ctl answer: {0}")]
    BadAnswer(String),
    /// The client's runtime is gone (the daemon is stopping).
    #[error("cni-ctl client stopped")]
    Stopped,
    /// Admission control: this many distinct queries already wait to be sent.
    #[error("cni-ctl client overloaded: {0} queries already wait")]
    Overloaded(usize),
    /// The server could not run (bind, transport).
    #[error("cni-ctl server: {0}")]
    Server(String),
}

/// The daemon's policy source.
#[derive(Clone)]
pub enum PolicySource {
    /// Everything allowed, untranslated: Kubernetes without NetworkPolicies or services.
    Embedded,
    /// A policy file, evaluated in place.
    File(Arc<PolicyFile>),
    /// cni-ctl over gRPC.
    CniCtl(PolicyClientHandle),
}

impl std::fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Embedded => f.write_str("Embedded"),
            PolicySource::File(p) => write!(f, "File(version {}, {} rules)", p.version, p.rules.len()),
            PolicySource::CniCtl(c) => write!(f, "CniCtl({})", c.endpoint()),
        }
    }
}

impl PolicySource {
    /// The answer without IO: `Some` for `Embedded` and `File`, `None` for cni-ctl (use
    /// [`PolicySource::ask`]).
    pub fn answer_now(&self, q: PolicyQuery) -> Option<NetworkPolicy> {
        match self {
            PolicySource::Embedded => Some(NetworkPolicy::allow()),
            PolicySource::File(f) => Some(f.evaluate(&q)),
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

    /// The policy file, if the source is one (its `[[endpoint]]`s are a [`Locator`]).
    pub fn file(&self) -> Option<&Arc<PolicyFile>> {
        match self {
            PolicySource::File(f) => Some(f),
            _ => None,
        }
    }
}

/// A file's static endpoints; nothing for the other sources.
impl Locator for PolicySource {
    fn locate(&self, ip: std::net::IpAddr) -> Option<Location> {
        self.file().and_then(|f| f.locate(ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::MacAddr;

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
        let f = PolicySource::File(Arc::new(PolicyFile::parse("default = \"deny\"\nversion = 2").unwrap()));
        let p = f.answer_now(q()).unwrap();
        assert!(!p.allowed);
        assert_eq!(p.version, 2);
        assert_eq!(f.ask(q()).try_recv().unwrap().unwrap(), p);
        assert!(f.locate("10.0.0.1".parse().unwrap()).is_none());
    }
}
