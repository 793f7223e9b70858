//! `/v1/shards`: the shard's counters, decision latency quantiles and its connections as text.

use super::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::packet::key::{ConnAddr, ConnEnd, ConnFamily};

impl Shard {
    pub(super) fn stats(&self) -> ShardStats {
        let h = self.decision_us.borrow();
        let keys = self.keys.borrow();
        let mut extra = BTreeMap::new();
        // The connections this shard decides, for operators and tests (bounded).
        let conns: Vec<serde_json::Value> = keys
            .iter()
            .take(1000)
            .map(|(_, r)| {
                let (key, c) = match r {
                    ConnRecord::Seen { key, counts } => (conn_key_text(key), counts),
                    ConnRecord::Decided { decided, counts, .. } => (decided.to_string(), counts),
                };
                serde_json::json!({
                    "key": key,
                    "forward": c.forward,
                    "reverse": c.reverse,
                    "handed_over": c.handed_over,
                })
            })
            .collect();
        extra.insert("connections".to_string(), serde_json::Value::Array(conns));
        if let Some(d) = &self.decider {
            extra.insert("hot_syn".to_string(), serde_json::json!(d.hot_syn_len()));
            extra.insert("policy_cache".to_string(), serde_json::json!(d.cached_answers()));
            extra.insert("policy_pending".to_string(), serde_json::json!(d.pending()));
        }
        let live = self.live.borrow();
        let decided = self.decided_flows_n.borrow();
        let live_flows: serde_json::Map<String, serde_json::Value> = self
            .by_dpid
            .borrow()
            .keys()
            .map(|d| {
                let n = live.len(*d) as u64 + decided.get(d).copied().unwrap_or(0);
                (format!("{d:016x}"), serde_json::json!(n))
            })
            .collect();
        extra.insert("connections_live".to_string(), serde_json::json!(keys.len()));
        extra.insert("connections_evicted".to_string(), serde_json::json!(keys.evicted()));
        extra.insert("connections_expired".to_string(), serde_json::json!(keys.expired()));
        extra.insert("live_flows".to_string(), serde_json::Value::Object(live_flows));
        ShardStats {
            shard: self.id(),
            cpu: self.shared.cfg.shards.cpus.as_ref().and_then(|c| c.get(self.id()).copied()),
            switches: self.by_dpid.borrow().len(),
            packet_ins: self.packet_ins.get(),
            handoffs_in: self.handoffs_in.get(),
            handoffs_out: self.handoffs_out.get(),
            flow_mods: self.flow_mods.get(),
            flows_cached: keys.len() as u64,
            decision_p50_us: if h.is_empty() { 0.0 } else { h.value_at_quantile(0.5) as f64 },
            decision_p99_us: if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 },
            extra,
        }
    }
}

/// `proto lo-addr:port <-> hi-addr:port`, the canonical (direction-free) order.
pub fn conn_key_text(k: &ConnKey) -> String {
    let ep = |e: ConnEnd| match e.addr {
        ConnAddr::Ip(IpAddr::V6(a)) => format!("[{a}]:{}", e.port),
        ConnAddr::Ip(a) => format!("{a}:{}", e.port),
        ConnAddr::Mac(m) => format!("{m}"),
    };
    let proto = match (k.family(), k.proto()) {
        (ConnFamily::Arp, _) => "arp".to_string(),
        (ConnFamily::L2, _) => "l2".to_string(),
        (_, 6) => "tcp".to_string(),
        (_, 17) => "udp".to_string(),
        (_, 132) => "sctp".to_string(),
        (_, 1) => "icmp".to_string(),
        (_, 58) => "icmpv6".to_string(),
        (_, p) => format!("ip/{p}"),
    };
    format!("{proto} {} <-> {}", ep(k.lo()), ep(k.hi()))
}
