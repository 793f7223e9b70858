//! Counters of the node's pods coming and going (`daemon::shard::node`), registered in the
//! daemon's registry.

use prometheus::{IntCounter, Opts};

use crate::control::metrics::{Metrics, MetricsError};

/// `shardflow_node_*`: what the node's updates did to the pipeline of its bridge.
#[derive(Clone)]
pub struct NodeMetrics {
    /// `node_updates_applied_total`: views of the node's bridge taken by its installing shard.
    pub updates_applied: IntCounter,
    /// `node_pods_installed_total`: pods whose flows were added.
    pub pods_installed: IntCounter,
    /// `node_pods_removed_total`: pods whose flows were removed.
    pub pods_removed: IntCounter,
    /// `node_pods_refused_total`: pods not installed (conflicting, no IPv4, over `learning.max_pods`).
    pub pods_refused: IntCounter,
    /// `node_bundle_failures_total`: change bundles the switch refused (the audit retries).
    pub bundle_failures: IntCounter,
}

impl NodeMetrics {
    pub fn register(m: &Metrics) -> Result<NodeMetrics, MetricsError> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            m.registry().register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(NodeMetrics {
            updates_applied: counter("node_updates_applied_total", "Views of the node's bridge applied")?,
            pods_installed: counter("node_pods_installed_total", "Pods whose flows were installed")?,
            pods_removed: counter("node_pods_removed_total", "Pods whose flows were removed")?,
            pods_refused: counter("node_pods_refused_total", "Pods from the node's database not installed")?,
            bundle_failures: counter("node_bundle_failures_total", "Node change bundles that failed")?,
        })
    }
}
