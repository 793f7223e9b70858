//! The cni-ctl gRPC transport, on the control thread's tokio runtime beside the HTTP server:
//! the protobuf types and their conversions to the policy's domain types ([`proto`]), the
//! client the shards ask through [`crate::policy::PolicySource`] ([`client`]), the servers
//! (`ControllerService` for cni-ctl's invalidations, the reference `RouteService`; [`server`]),
//! the mutual-TLS glue ([`tls`]) and the client's statistics as Prometheus metrics ([`metrics`]).
//!
//! Dependencies point down only: this module imports `policy` (domain types, [`PolicyError`]),
//! `policy` never imports this one. The client reaches the shards as a
//! [`crate::policy::source::RemotePolicy`] injected by the daemon.
//!
//! [`PolicyError`]: crate::policy::PolicyError

pub mod client;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod tls;

pub use client::{ClientConfig, PolicyClient, PolicyClientHandle};
