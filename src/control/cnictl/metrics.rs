//! The cni-ctl client's statistics ([`ClientStats`], kept by the client as relaxed atomics) as
//! Prometheus metrics, read at scrape time: nothing is added to the query path.
//!
//! Names (under the registry's `shardflow_` prefix):
//! `cnictl_queries_total`, `cnictl_rpcs_total`, `cnictl_coalesced_total`, `cnictl_errors_total`,
//! `cnictl_retries_total`, `cnictl_batches_total`, `cnictl_refused_total` (counters) and
//! `cnictl_in_flight`, `cnictl_down` (gauges).
//!
//! [`ClientStats`]: super::client::ClientStats

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts, Registry};

use super::client::PolicyClientHandle;

/// Reads one counter out of a snapshot.
type Get = fn(&super::client::StatsSnapshot) -> u64;

/// A collector over one client's statistics: register it once
/// ([`CnictlMetrics::register`]); each scrape copies the counters.
pub struct CnictlMetrics {
    client: PolicyClientHandle,
    counters: Vec<(IntCounter, Get)>,
    in_flight: IntGauge,
    down: IntGauge,
}

impl CnictlMetrics {
    /// The collector for `client`.
    pub fn new(client: PolicyClientHandle) -> Result<CnictlMetrics, prometheus::Error> {
        let defs: [(&str, &str, Get); 7] = [
            ("cnictl_queries_total", "Queries the shards asked cni-ctl", |s| s.queries),
            ("cnictl_rpcs_total", "RPCs sent to cni-ctl (retries included)", |s| s.rpcs),
            ("cnictl_coalesced_total", "Queries that joined an identical one in flight", |s| s.coalesced),
            ("cnictl_errors_total", "Queries (one per RPC group) that ended in an error", |s| s.errors),
            ("cnictl_retries_total", "Retries after UNAVAILABLE", |s| s.retries),
            ("cnictl_batches_total", "ExistBatch calls that answered", |s| s.batches),
            ("cnictl_refused_total", "Queries refused by admission control (too many waiting or queued)", |s| {
                s.refused
            }),
        ];
        let counters = defs
            .into_iter()
            .map(|(n, h, g)| Ok((IntCounter::new(n, h)?, g)))
            .collect::<Result<Vec<_>, prometheus::Error>>()?;
        Ok(CnictlMetrics {
            client,
            counters,
            in_flight: IntGauge::with_opts(Opts::new("cnictl_in_flight", "Distinct cni-ctl queries in flight now"))?,
            down: IntGauge::with_opts(Opts::new("cnictl_down", "1 when cni-ctl is considered down"))?,
        })
    }

    /// Registers the collector for `client` in `registry`.
    pub fn register(registry: &Registry, client: PolicyClientHandle) -> Result<(), prometheus::Error> {
        registry.register(Box::new(CnictlMetrics::new(client)?))
    }
}

impl Collector for CnictlMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d: Vec<&Desc> = self.counters.iter().flat_map(|(c, _)| c.desc()).collect();
        d.extend(self.in_flight.desc());
        d.extend(self.down.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = self.client.stats().snapshot();
        let mut out = Vec::with_capacity(self.counters.len() + 2);
        for (c, get) in &self.counters {
            // The client's counters only grow: bring the exported one up to it.
            let (now, was) = (get(&snap), c.get());
            if now > was {
                c.inc_by(now - was);
            }
            out.extend(c.collect());
        }
        self.in_flight.set(i64::try_from(self.client.in_flight()).unwrap_or(i64::MAX));
        self.down.set(i64::from(self.client.is_down()));
        out.extend(self.in_flight.collect());
        out.extend(self.down.collect());
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::control::cnictl::client::{ClientConfig, PolicyClient};
    use crate::packet::MacAddr;
    use crate::policy::PolicyQuery;

    #[test]
    fn counters_follow_the_client_at_each_scrape() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Nobody listens on port 1 of 127.0.0.1: every query fails after its deadline.
        let cfg = ClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            deadline: std::time::Duration::from_millis(50),
            max_tries: 1,
            down_after: 1,
            ..ClientConfig::default()
        };
        let client = PolicyClient::new(cfg, rt.handle().clone()).unwrap();
        let registry = Registry::new_custom(Some("shardflow".into()), None).unwrap();
        CnictlMetrics::register(&registry, client.handle()).unwrap();
        let scrape = || {
            let mut s = String::new();
            prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut s).unwrap();
            s
        };
        assert!(scrape().contains("shardflow_cnictl_queries_total 0"), "{}", scrape());
        let q = PolicyQuery {
            src_ip: "10.0.0.1".parse().unwrap(),
            dst_ip: "10.0.0.2".parse().unwrap(),
            src_mac: MacAddr::ZERO,
            dst_mac: MacAddr::ZERO,
            src_port: 1000,
            dst_port: 80,
            protocol: 6,
            is_reply: false,
            nat: false,
        };
        let rx = client.query(q);
        let answer = rt.block_on(rx.recv_async()).unwrap();
        assert!(answer.is_err(), "nobody answers on port 1");
        let text = scrape();
        assert!(text.contains("shardflow_cnictl_queries_total 1"), "{text}");
        assert!(text.contains("shardflow_cnictl_errors_total 1"), "{text}");
        assert!(text.contains("shardflow_cnictl_down 1"), "{text}");
        assert!(text.contains("shardflow_cnictl_in_flight 0"), "{text}");
        // A second scrape does not count twice.
        assert!(scrape().contains("shardflow_cnictl_queries_total 1"));
    }
}
