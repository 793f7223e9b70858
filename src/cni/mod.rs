//! `shardflow-cni`: the CNI plugin that plugs a pod into the node's Open vSwitch bridge.
//!
//! ADD delegates addresses to the IPAM plugin named in the configuration, creates a veth pair
//! over rtnetlink with the pod's end in the pod's network namespace, applies the addresses and
//! routes there, turns TX checksum offload off on both ends, and attaches the host end to the
//! bridge through OVSDB with the pod's `external_ids` (see [`crate::node::keys`]), which is how
//! the daemon learns the pod. DEL undoes it and is idempotent; CHECK verifies it.

pub mod config;
pub mod error;
pub mod ethtool;
pub mod ipam;
pub mod netns;
pub mod ovs;
pub mod plugin;
pub mod result;
pub mod veth;

pub use error::CniError;
