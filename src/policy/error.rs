//! The policy layer's one error type, below everything that produces it (the file loader, the
//! cni-ctl client and its answer conversions, the source): none of them imports another for it.

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
