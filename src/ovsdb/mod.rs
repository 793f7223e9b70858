//! An OVSDB client (RFC 7047 JSON-RPC over a unix socket or TCP): `transact` and `monitor`,
//! enough to keep the node's bridge as the daemon needs it and to follow its ports.
//!
//! Written here on serde_json and tokio rather than taken from crates.io: the Rust OVSDB crates
//! there are 0.0.x, pull in schema code generation and bring no bounds on what the server sends;
//! the part of RFC 7047 the daemon needs is a few hundred lines.
//!
//! Split as the rest of the project is: [`codec`] (framing a byte stream into JSON values, with
//! a size bound), [`rpc`] (request ids, the pending-request bound, answers to the server's
//! `echo`, sorting what arrives into responses and notifications) and [`cache`] (the local copy
//! of monitored tables that `update` notifications are applied to) do no IO; [`client`] is the
//! tokio transport that drives them. A short-lived CLI (the CNI plugin) can use the client on a
//! current-thread runtime.

pub mod addr;
pub mod cache;
pub mod client;
pub mod codec;
pub mod datum;
pub mod rpc;

pub use addr::OvsdbAddr;
pub use cache::{Row, TableCache};
pub use client::{Client, ClientStats, Monitor};

/// The Open vSwitch database's name.
pub const VSWITCH_DB: &str = "Open_vSwitch";

/// Why an OVSDB call failed.
#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    #[error("bad OVSDB address {addr:?}: {reason} (expected unix:PATH or tcp:IP:PORT)")]
    Addr { addr: String, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("OVSDB connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("OVSDB connection closed")]
    Closed,
    #[error("OVSDB peer sent malformed JSON-RPC: {0}")]
    Protocol(String),
    #[error("OVSDB message larger than {limit} bytes refused")]
    FrameTooLarge { limit: usize },
    #[error("more than {limit} OVSDB requests waiting for an answer: refused")]
    TooManyPending { limit: usize },
    #[error("OVSDB monitor cache would exceed {limit} rows: refused")]
    CacheFull { limit: usize },
    /// The server answered the request with an error (RFC 7047 4.1: the whole request failed).
    #[error("OVSDB {method} failed: {error}{}", details_suffix(.details))]
    Rpc { method: String, error: String, details: Option<String> },
    /// One operation of a transaction failed (RFC 7047 5.2); `index` is its position in the
    /// operations sent (equal to their count for a commit-time error such as a constraint).
    #[error("OVSDB transaction operation {index} failed: {error}{}", details_suffix(.details))]
    Operation { index: usize, error: String, details: Option<String> },
    #[error("no answer from OVSDB within {0:?}")]
    Timeout(std::time::Duration),
}

fn details_suffix(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}
