//! Prometheus metrics, in a registry owned by [`Metrics`] (no hidden global registry), every
//! name under the `shardflow_` prefix.
//!
//! Shards must not take locks on the hot path. Prometheus counters, gauges and histograms are
//! atomics, but looking a labelled child up in a `*Vec` takes a read lock and hashes the labels.
//! So each shard gets a [`ShardMetrics`] whose children for its own `shard` label (and for the
//! common label values) are resolved once, up front; updating one is a single atomic add.
//! Rare label values (OpenFlow error codes, session events) go through the `*Vec` lookup.

use std::sync::Arc;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 10 us to 1 s (1-2.5-5 per decade), in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
];

/// Packet-in kinds resolved up front for every shard (`packet_in_total{kind}`); any other
/// kind still works, through the slower labelled lookup.
pub const PACKET_IN_KINDS: &[&str] = &["arp", "tcp", "udp", "sctp", "icmp", "icmpv6", "ip_other", "other", "invalid"];

/// Flow-mod results resolved up front (`flow_mods_total{result}`).
pub const FLOW_MOD_RESULTS: &[&str] = &["ok", "error", "timeout"];

/// Why metrics could not be set up (a duplicate or malformed name: a programming error).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric of the daemon and the registry that exports them.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `shardflow_switch_connections{shard}`: switches connected now.
    pub switch_connections: IntGaugeVec,
    /// `shardflow_packet_in_total{shard,kind}`.
    pub packet_in_total: IntCounterVec,
    /// `shardflow_packet_in_handoff_total{from,to}`: packet-ins passed to the owning shard.
    pub packet_in_handoff_total: IntCounterVec,
    /// `shardflow_flow_mods_total{shard,result}`.
    pub flow_mods_total: IntCounterVec,
    /// `shardflow_openflow_errors_total{shard,code}`: OFPT_ERROR received, by error name.
    pub openflow_errors_total: IntCounterVec,
    /// `shardflow_session_events_total{shard,event}`: connected, disconnected, echo_timeout...,
    /// unsupported_message (refused with OFPBRC_BAD_TYPE/BAD_VENDOR/BAD_SUBTYPE).
    pub session_events_total: IntCounterVec,
    /// `shardflow_packet_in_decision_seconds{shard}`: packet-in to decision sent.
    pub packet_in_decision_seconds: HistogramVec,
    /// `shardflow_flow_install_seconds`: flow-mod sent to barrier reply.
    pub flow_install_seconds: Histogram,
    /// `shardflow_http_requests_total{route,status}`: the REST/metrics endpoint itself.
    pub http_requests_total: IntCounterVec,
    /// `shardflow_decisions_total{shard,verdict}`: packet-in decisions (allow, service, deny,
    /// fail_closed, fail_open, dropped_pending, unsupported).
    pub decisions_total: IntCounterVec,
    /// `shardflow_connections_live{shard}`: connection records a shard keeps now.
    pub connections_live: IntGaugeVec,
    /// `shardflow_mesh_inbox_depth{shard}`: messages waiting in a shard's mesh inbox (handoffs,
    /// answers, control requests; at most 4,096 each), set on every sweep tick.
    pub mesh_inbox_depth: IntGaugeVec,
    /// `shardflow_mesh_outbox_depth{shard}`: messages a shard holds for other shards whose inbox
    /// was full (bounded per target, drops counted in `shard_dropped_total`), set on every
    /// sweep tick.
    pub mesh_outbox_depth: IntGaugeVec,
    /// `shardflow_connections_evicted_total{shard}`: records dropped because the shard's table
    /// (`shards.max_connections`) was full.
    pub connections_evicted_total: IntCounterVec,
    /// `shardflow_openflow_connections_refused_total{shard,cause}`: switch connections not
    /// served: `cap` (`openflow.max_switch_connections`), `accept_error` (e.g. EMFILE).
    pub openflow_connections_refused_total: IntCounterVec,
    /// `shardflow_openflow_connections_closed_total{shard,cause}`: switch connections the
    /// daemon closed for a bound: `output_stalled` (above `openflow.output_high_water` for
    /// `output_stall_timeout_secs`).
    pub openflow_connections_closed_total: IntCounterVec,
    /// `shardflow_shard_dropped_total{shard,cause}`: work a shard refused at a bound:
    /// `handoff_full`/`answer_full` (a peer shard's outbox), `output_full` (a connection's
    /// output), `message_too_large` (over 65,535 bytes), `multipart_too_large`.
    pub shard_dropped_total: IntCounterVec,
    /// `shardflow_http_connections_refused_total`: HTTP connections closed at accept because
    /// `http.max_connections` were open.
    pub http_connections_refused_total: IntCounter,
    /// `shardflow_http_accept_errors_total`: failed HTTP accepts (e.g. out of file descriptors).
    pub http_accept_errors_total: IntCounter,
    /// `shardflow_offloadable_flows_ratio{table}`: the share of a table's flows the default
    /// offload profile could put in hardware (`offload::report`): set at start from the
    /// configured pipeline, refreshed by every `GET /v1/switches/{dpid}/offload` under the
    /// default profile (which sees the installed flows, connection flows included).
    pub offloadable_flows_ratio: GaugeVec,
    /// `shardflow_packet_in_dropped_total{shard,cause}`: packet-ins a shard refused (see
    /// [`PACKET_IN_DROP_CAUSES`]).
    pub packet_in_dropped_total: IntCounterVec,
}

impl Metrics {
    /// Create and register all metrics in a fresh registry.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("shardflow".to_string()), None)?;
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let switch_connections =
            IntGaugeVec::new(Opts::new("switch_connections", "Switches connected now"), &["shard"])?;
        registry.register(Box::new(switch_connections.clone()))?;
        let packet_in_total = counter("packet_in_total", "Packet-ins received", &["shard", "kind"])?;
        let packet_in_handoff_total = counter(
            "packet_in_handoff_total",
            "Packet-ins handed from the receiving shard to the owning shard",
            &["from", "to"],
        )?;
        let flow_mods_total = counter("flow_mods_total", "Flow mods sent", &["shard", "result"])?;
        let openflow_errors_total =
            counter("openflow_errors_total", "OpenFlow error messages received from switches", &["shard", "code"])?;
        let session_events_total = counter(
            "session_events_total",
            "OpenFlow session events (connected, disconnected, handshake_failed, echo_timeout)",
            &["shard", "event"],
        )?;
        let packet_in_decision_seconds = HistogramVec::new(
            HistogramOpts::new("packet_in_decision_seconds", "Time from packet-in received to decision sent")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["shard"],
        )?;
        registry.register(Box::new(packet_in_decision_seconds.clone()))?;
        let flow_install_seconds = Histogram::with_opts(
            HistogramOpts::new("flow_install_seconds", "Time from flow mod sent to barrier reply")
                .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(flow_install_seconds.clone()))?;
        let http_requests_total = counter("http_requests_total", "HTTP requests served", &["route", "status"])?;
        let decisions_total = counter("decisions_total", "Packet-in decisions by verdict", &["shard", "verdict"])?;
        let connections_live =
            IntGaugeVec::new(Opts::new("connections_live", "Connection records a shard keeps"), &["shard"])?;
        registry.register(Box::new(connections_live.clone()))?;
        let mesh_inbox_depth =
            IntGaugeVec::new(Opts::new("mesh_inbox_depth", "Messages waiting in a shard's mesh inbox"), &["shard"])?;
        registry.register(Box::new(mesh_inbox_depth.clone()))?;
        let mesh_outbox_depth = IntGaugeVec::new(
            Opts::new("mesh_outbox_depth", "Messages a shard holds for other shards whose inbox is full"),
            &["shard"],
        )?;
        registry.register(Box::new(mesh_outbox_depth.clone()))?;
        let connections_evicted_total = counter(
            "connections_evicted_total",
            "Connection records evicted because the shard's table was full",
            &["shard"],
        )?;
        let openflow_connections_refused_total = counter(
            "openflow_connections_refused_total",
            "Switch connections refused (cap: max_switch_connections; accept_error: e.g. no fds left)",
            &["shard", "cause"],
        )?;
        let openflow_connections_closed_total = counter(
            "openflow_connections_closed_total",
            "Switch connections closed by the daemon for a bound (output_stalled)",
            &["shard", "cause"],
        )?;
        let shard_dropped_total = counter(
            "shard_dropped_total",
            "Messages or work a shard dropped at a bound, by cause",
            &["shard", "cause"],
        )?;
        let http_connections_refused_total = IntCounter::new(
            "http_connections_refused_total",
            "HTTP connections refused because http.max_connections were open",
        )?;
        registry.register(Box::new(http_connections_refused_total.clone()))?;
        let http_accept_errors_total =
            IntCounter::new("http_accept_errors_total", "HTTP accepts that failed (e.g. out of file descriptors)")?;
        registry.register(Box::new(http_accept_errors_total.clone()))?;
        let packet_in_dropped_total = counter(
            "packet_in_dropped_total",
            "Packet-ins a shard dropped without acting on them, by cause",
            &["shard", "cause"],
        )?;
        let offloadable_flows_ratio = GaugeVec::new(
            Opts::new(
                "offloadable_flows_ratio",
                "Share of a table's flows the default offload profile could run in hardware",
            ),
            &["table"],
        )?;
        registry.register(Box::new(offloadable_flows_ratio.clone()))?;
        Ok(Metrics {
            registry,
            offloadable_flows_ratio,
            openflow_connections_refused_total,
            openflow_connections_closed_total,
            shard_dropped_total,
            switch_connections,
            packet_in_total,
            packet_in_handoff_total,
            flow_mods_total,
            openflow_errors_total,
            session_events_total,
            packet_in_decision_seconds,
            flow_install_seconds,
            http_requests_total,
            decisions_total,
            connections_live,
            mesh_inbox_depth,
            mesh_outbox_depth,
            connections_evicted_total,
            http_connections_refused_total,
            http_accept_errors_total,
            packet_in_dropped_total,
        })
    }

    /// Sets `offloadable_flows_ratio{table}` to one report's (table, ratio) pairs; tables the
    /// report does not have are dropped, so the gauge is always one report, never a mix.
    pub fn set_offloadable_ratios(&self, tables: impl IntoIterator<Item = (u8, f64)>) {
        self.offloadable_flows_ratio.reset();
        for (t, r) in tables {
            self.offloadable_flows_ratio.with_label_values(&[t.to_string().as_str()]).set(r);
        }
    }

    /// The registry, to register more metrics from other components.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Pre-resolved handles for shard `shard` of `n_shards` (clone into the shard's executor).
    pub fn shard(&self, shard: usize, n_shards: usize) -> ShardMetrics {
        let s = shard.to_string();
        let packet_in =
            PACKET_IN_KINDS.iter().map(|k| (*k, self.packet_in_total.with_label_values(&[s.as_str(), k]))).collect();
        let flow_mods =
            FLOW_MOD_RESULTS.iter().map(|r| (*r, self.flow_mods_total.with_label_values(&[s.as_str(), r]))).collect();
        let handoff_to = (0..n_shards)
            .map(|to| self.packet_in_handoff_total.with_label_values(&[s.as_str(), &to.to_string()]))
            .collect();
        ShardMetrics {
            shard,
            label: s.clone().into(),
            metrics: self.clone(),
            switch_connections: self.switch_connections.with_label_values(&[s.as_str()]),
            packet_in: Arc::new(packet_in),
            flow_mods: Arc::new(flow_mods),
            handoff_to: Arc::new(handoff_to),
            decisions: Arc::new(
                DECISION_VERDICTS
                    .iter()
                    .map(|v| (*v, self.decisions_total.with_label_values(&[s.as_str(), v])))
                    .collect(),
            ),
            connections_live: self.connections_live.with_label_values(&[s.as_str()]),
            mesh_inbox_depth: self.mesh_inbox_depth.with_label_values(&[s.as_str()]),
            mesh_outbox_depth: self.mesh_outbox_depth.with_label_values(&[s.as_str()]),
            connections_evicted: self.connections_evicted_total.with_label_values(&[s.as_str()]),
            packet_in_decision: self.packet_in_decision_seconds.with_label_values(&[s.as_str()]),
            flow_install: self.flow_install_seconds.clone(),
            packet_in_dropped: Arc::new(
                PACKET_IN_DROP_CAUSES
                    .iter()
                    .map(|c| (*c, self.packet_in_dropped_total.with_label_values(&[s.as_str(), c])))
                    .collect(),
            ),
            shard_dropped: Arc::new(
                SHARD_DROP_CAUSES
                    .iter()
                    .map(|c| (*c, self.shard_dropped_total.with_label_values(&[s.as_str(), c])))
                    .collect(),
            ),
        }
    }

    /// All metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// Decision verdicts counted without a label look-up (others still work, resolved per call).
pub const DECISION_VERDICTS: &[&str] = &[
    "allow",
    "service",
    "deny",
    "no_endpoints",
    "fail_closed",
    "fail_open",
    "flood_unknown",
    "arp_reply",
    "arp_flood",
    "arp_nothing",
];

/// Why a shard drops a packet-in (`packet_in_dropped_total{cause}`), resolved up front:
/// `rate_new_connection`, `rate_arp`, `rate_other` (the shard's per-class budget,
/// `[pipeline.shard_limits]`), `held_full` (`policy.max_pending` packets already wait for
/// cni-ctl), `invalid` (not a parsable frame), `unverified` (from a connection that is not its
/// dpid's routed one: peer-driven, so it must stay as cheap as the others).
pub const PACKET_IN_DROP_CAUSES: &[&str] =
    &["rate_new_connection", "rate_arp", "rate_other", "held_full", "invalid", "unverified"];

/// Why a shard drops work at a bound (`shard_dropped_total{cause}`), resolved up front: these
/// are counted under floods (a packet-in answer per drop), so no label look-up per drop.
pub const SHARD_DROP_CAUSES: &[&str] =
    &["handoff_full", "answer_full", "output_full", "message_too_large", "multipart_too_large"];

/// A shard's view of the metrics: cheap to clone, every update one atomic operation.
#[derive(Clone)]
pub struct ShardMetrics {
    pub shard: usize,
    label: Arc<str>,
    metrics: Metrics,
    /// `switch_connections{shard}`: inc on handshake done, dec on disconnect.
    pub switch_connections: IntGauge,
    packet_in: Arc<Vec<(&'static str, IntCounter)>>,
    flow_mods: Arc<Vec<(&'static str, IntCounter)>>,
    handoff_to: Arc<Vec<IntCounter>>,
    decisions: Arc<Vec<(&'static str, IntCounter)>>,
    /// `connections_live{shard}`, set on every sweep tick.
    pub connections_live: IntGauge,
    /// `mesh_inbox_depth{shard}`, set on every sweep tick.
    pub mesh_inbox_depth: IntGauge,
    /// `mesh_outbox_depth{shard}`, set on every sweep tick.
    pub mesh_outbox_depth: IntGauge,
    /// `connections_evicted_total{shard}`.
    pub connections_evicted: IntCounter,
    /// `packet_in_decision_seconds{shard}`.
    pub packet_in_decision: Histogram,
    /// `flow_install_seconds`.
    pub flow_install: Histogram,
    packet_in_dropped: Arc<Vec<(&'static str, IntCounter)>>,
    shard_dropped: Arc<Vec<(&'static str, IntCounter)>>,
}

impl ShardMetrics {
    /// Count a packet-in of `kind` (one of [`PACKET_IN_KINDS`] is lock-free).
    pub fn packet_in(&self, kind: &str) {
        match self.packet_in.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => c.inc(),
            None => self.metrics.packet_in_total.with_label_values(&[&*self.label, kind]).inc(),
        }
    }

    /// Count a flow mod with `result` (one of [`FLOW_MOD_RESULTS`] is lock-free).
    pub fn flow_mod(&self, result: &str) {
        self.flow_mods_n(result, 1);
    }

    /// Count `n` flow mods with `result`.
    pub fn flow_mods_n(&self, result: &str, n: u64) {
        match self.flow_mods.iter().find(|(r, _)| *r == result) {
            Some((_, c)) => c.inc_by(n),
            None => self.metrics.flow_mods_total.with_label_values(&[&*self.label, result]).inc_by(n),
        }
    }

    /// Count a packet-in handed from this shard to shard `to`.
    pub fn handoff(&self, to: usize) {
        match self.handoff_to.get(to) {
            Some(c) => c.inc(),
            None => self.metrics.packet_in_handoff_total.with_label_values(&[&*self.label, &to.to_string()]).inc(),
        }
    }

    /// Count an OFPT_ERROR from a switch, labelled with its name (e.g. `OFPBAC_BAD_OUT_PORT`).
    pub fn openflow_error(&self, code: &str) {
        self.metrics.openflow_errors_total.with_label_values(&[&*self.label, code]).inc();
    }

    /// Count a session event (`connected`, `disconnected`, `handshake_failed`, `echo_timeout`).
    pub fn session_event(&self, event: &str) {
        self.metrics.session_events_total.with_label_values(&[&*self.label, event]).inc();
    }

    /// `n` session events at once (`unsupported_message`: messages the session refused).
    pub fn session_events(&self, event: &str, n: u64) {
        self.metrics.session_events_total.with_label_values(&[&*self.label, event]).inc_by(n);
    }

    /// Count a switch connection refused (`cap`, `accept_error`).
    pub fn connection_refused(&self, cause: &str) {
        self.metrics.openflow_connections_refused_total.with_label_values(&[&*self.label, cause]).inc();
    }

    /// Count a switch connection the daemon closed for a bound (`output_stalled`), or because
    /// it did not answer an echo when another connection claimed its dpid (`superseded`).
    pub fn connection_closed(&self, cause: &str) {
        self.metrics.openflow_connections_closed_total.with_label_values(&[&*self.label, cause]).inc();
    }

    /// Count `n` messages (or units of work) dropped at a bound, by cause.
    pub fn dropped(&self, cause: &str, n: u64) {
        match self.shard_dropped.iter().find(|(c, _)| *c == cause) {
            Some((_, c)) => c.inc_by(n),
            None => self.metrics.shard_dropped_total.with_label_values(&[&*self.label, cause]).inc_by(n),
        }
    }

    /// Count a packet-in decision by verdict.
    pub fn decision(&self, verdict: &str) {
        // Resolved once per shard: no label hashing on the packet path.
        match self.decisions.iter().find(|(v, _)| *v == verdict) {
            Some((_, c)) => c.inc(),
            None => self.metrics.decisions_total.with_label_values(&[&*self.label, verdict]).inc(),
        }
    }

    /// Record a packet-in decision latency.
    pub fn observe_decision(&self, d: std::time::Duration) {
        self.packet_in_decision.observe(d.as_secs_f64());
    }

    /// Count a packet-in dropped for `cause` (one of [`PACKET_IN_DROP_CAUSES`] is lock-free).
    pub fn packet_in_dropped(&self, cause: &str) {
        match self.packet_in_dropped.iter().find(|(c, _)| *c == cause) {
            Some((_, c)) => c.inc(),
            None => self.metrics.packet_in_dropped_total.with_label_values(&[&*self.label, cause]).inc(),
        }
    }

    /// Record a flow install latency (flow mod to barrier reply).
    pub fn observe_flow_install(&self, d: std::time::Duration) {
        self.flow_install.observe(d.as_secs_f64());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn render_has_every_name_and_updates() {
        let m = Metrics::new().unwrap();
        let s0 = m.shard(0, 2);
        let s1 = m.shard(1, 2);
        s0.switch_connections.inc();
        s0.packet_in("tcp");
        s0.packet_in("tcp");
        s0.packet_in("weird");
        s1.handoff(0);
        s1.handoff(5);
        s0.flow_mod("ok");
        s0.flow_mods_n("rejected", 3);
        s0.openflow_error("OFPBAC_BAD_OUT_PORT");
        s1.session_event("connected");
        s0.observe_decision(Duration::from_micros(30));
        s0.observe_flow_install(Duration::from_millis(2));
        m.http_requests_total.with_label_values(&["/metrics", "200"]).inc();
        let text = m.render();
        for line in [
            "shardflow_switch_connections{shard=\"0\"} 1",
            "shardflow_switch_connections{shard=\"1\"} 0",
            "shardflow_packet_in_total{kind=\"tcp\",shard=\"0\"} 2",
            "shardflow_packet_in_total{kind=\"weird\",shard=\"0\"} 1",
            "shardflow_packet_in_handoff_total{from=\"1\",to=\"0\"} 1",
            "shardflow_packet_in_handoff_total{from=\"1\",to=\"5\"} 1",
            "shardflow_flow_mods_total{result=\"ok\",shard=\"0\"} 1",
            "shardflow_flow_mods_total{result=\"rejected\",shard=\"0\"} 3",
            "shardflow_openflow_errors_total{code=\"OFPBAC_BAD_OUT_PORT\",shard=\"0\"} 1",
            "shardflow_session_events_total{event=\"connected\",shard=\"1\"} 1",
            "shardflow_packet_in_decision_seconds_bucket{shard=\"0\",le=\"0.00001\"} 0",
            "shardflow_packet_in_decision_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1",
            "shardflow_packet_in_decision_seconds_count{shard=\"0\"} 1",
            "shardflow_flow_install_seconds_bucket{le=\"0.0025\"} 1",
            "shardflow_flow_install_seconds_bucket{le=\"1\"} 1",
            "shardflow_http_requests_total{route=\"/metrics\",status=\"200\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE shardflow_flow_install_seconds histogram"));
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.shard(0, 1).packet_in("arp");
        assert!(a.render().contains("kind=\"arp\",shard=\"0\"} 1"));
        assert!(!b.render().contains("kind=\"arp\",shard=\"0\"} 1"));
    }
}
