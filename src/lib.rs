//! shardflow: a thread-per-core OpenFlow 1.3 controller for Open vSwitch based Kubernetes
//! networking. The library holds the protocol, packet and policy logic; `main.rs` is a thin edge.

pub mod cni;
pub mod config;
pub mod control;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod node;
pub mod offload;
pub mod openflow;
#[doc(hidden)]
pub mod oracle;
pub mod ovsdb;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod tracker;
