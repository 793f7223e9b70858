//! The results: text for stdout, the same as JSON, and the latency CDF.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::proc::{cpu_percent, Sample};
use crate::switch::{Answer, Mode, Stats};
use crate::template::Proto;
use crate::{Args, Connect};

pub struct Inputs<'a> {
    pub args: &'a Args,
    pub connect: Connect,
    pub window: usize,
    pub threads: usize,
    pub connections: usize,
    pub stats: &'a Stats,
    pub wall: f64,
    pub controller: Option<(Sample, Sample)>,
    pub generator: Option<(Sample, Sample)>,
    pub incomplete_threads: usize,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Serialize)]
pub struct Controller {
    pub pid: u32,
    pub cpu_percent: Option<f64>,
    pub rss_start_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    pub rss_growth_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub connect: Connect,
    pub answer: Answer,
    pub proto: Proto,
    pub controllers: Vec<String>,
    pub switches: usize,
    pub connections: usize,
    pub threads: usize,
    pub window: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connections_handshaken: u64,
    pub connections_failed: u64,
    pub connections_closed: u64,
    pub packet_ins_sent: u64,
    pub answered: u64,
    pub answered_per_s: f64,
    pub flow_mods: u64,
    pub flow_mods_per_s: f64,
    pub packet_outs: u64,
    pub packet_outs_per_s: f64,
    pub messages_rx: u64,
    pub messages_tx: u64,
    pub messages_per_s: f64,
    pub bundle_adds: u64,
    pub unmatched_packet_outs: u64,
    pub unknown_messages: u64,
    pub errors_received: u64,
    pub timeouts: u64,
    pub first_error: Option<String>,
    pub latency: Latency,
    /// ARP requests sent (`--arp-every`), answered, and the answers' latency.
    pub arp_sent: u64,
    pub arp_answered: u64,
    pub arp_answered_per_s: f64,
    pub arp_latency: Latency,
    pub controller: Option<Controller>,
    pub generator_cpu_percent: Option<f64>,
    pub generator_rss_mb: Option<f64>,
    pub incomplete_threads: usize,
}

const MB: f64 = 1024.0 * 1024.0;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

impl Report {
    pub fn new(i: Inputs<'_>) -> Report {
        let s = i.stats;
        let per_s = |n: u64| round(n as f64 / i.wall.max(1e-9), 1);
        let latency = latency_of(&s.hist);
        let controller = i.args.controller_pid.map(|pid| {
            let (a, b) = match &i.controller {
                Some((a, b)) => (Some(a), Some(b)),
                None => (None, None),
            };
            let mb = |x: Option<&Sample>| x.and_then(|x| x.rss_bytes).map(|b| round(b as f64 / MB, 1));
            let (start, end) = (mb(a), mb(b));
            Controller {
                pid,
                cpu_percent: a.zip(b).and_then(|(a, b)| cpu_percent(a, b)).map(|v| round(v, 1)),
                rss_start_mb: start,
                rss_end_mb: end,
                rss_growth_mb: start.zip(end).map(|(s, e)| round(e - s, 1)),
            }
        });
        Report {
            mode: i.args.mode,
            connect: i.connect,
            answer: i.args.answer,
            proto: i.args.proto,
            controllers: i.args.controllers.iter().map(|a| a.to_string()).collect(),
            switches: i.args.switches,
            connections: i.connections,
            threads: i.threads,
            window: i.window,
            warmup_s: i.args.warmup,
            duration_s: round(i.wall, 3),
            connections_handshaken: s.handshaken,
            connections_failed: s.failed,
            connections_closed: s.closed,
            packet_ins_sent: s.sent,
            answered: s.answered,
            answered_per_s: per_s(s.answered),
            flow_mods: s.flow_mods,
            flow_mods_per_s: per_s(s.flow_mods),
            packet_outs: s.packet_outs,
            packet_outs_per_s: per_s(s.packet_outs),
            messages_rx: s.msgs_rx,
            messages_tx: s.msgs_tx,
            messages_per_s: per_s(s.msgs_rx + s.msgs_tx),
            bundle_adds: s.bundle_adds,
            unmatched_packet_outs: s.unmatched_packet_outs,
            unknown_messages: s.unknown,
            errors_received: s.errors,
            timeouts: s.timeouts,
            first_error: s.first_error.clone(),
            latency,
            arp_sent: s.arp_sent,
            arp_answered: s.arp_answered,
            arp_answered_per_s: per_s(s.arp_answered),
            arp_latency: latency_of(&s.arp_hist),
            controller,
            generator_cpu_percent: i.generator.as_ref().and_then(|(a, b)| cpu_percent(a, b)).map(|v| round(v, 1)),
            generator_rss_mb: i.generator.as_ref().and_then(|(_, b)| b.rss_bytes).map(|b| round(b as f64 / MB, 1)),
            incomplete_threads: i.incomplete_threads,
        }
    }

    pub fn text(&self) -> String {
        let mut t = String::new();
        let opt = |v: Option<f64>, unit: &str| v.map(|v| format!("{v:.1}{unit}")).unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            t,
            "loadgen: mode={:?} connect={:?} answer={:?} proto={:?} controllers={}",
            self.mode,
            self.connect,
            self.answer,
            self.proto,
            self.controllers.join(",")
        );
        let _ = writeln!(
            t,
            "  switches={} connections={} (handshaken {}, failed {}, closed {}) threads={} window={}",
            self.switches,
            self.connections,
            self.connections_handshaken,
            self.connections_failed,
            self.connections_closed,
            self.threads,
            self.window
        );
        let _ = writeln!(t, "  measured {:.3} s after {} s warm-up", self.duration_s, self.warmup_s);
        let _ = writeln!(t, "  packet-ins sent     {:>12}", self.packet_ins_sent);
        let _ = writeln!(t, "  answered            {:>12}  {:>12.1}/s", self.answered, self.answered_per_s);
        let _ = writeln!(t, "  FLOW_MODs           {:>12}  {:>12.1}/s", self.flow_mods, self.flow_mods_per_s);
        let _ = writeln!(t, "  PACKET_OUTs         {:>12}  {:>12.1}/s", self.packet_outs, self.packet_outs_per_s);
        let _ = writeln!(
            t,
            "  messages rx+tx      {:>12}  {:>12.1}/s",
            self.messages_rx + self.messages_tx,
            self.messages_per_s
        );
        let l = &self.latency;
        let _ = writeln!(
            t,
            "  latency us          p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1}, n={})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
        );
        if self.arp_sent > 0 {
            let a = &self.arp_latency;
            let _ = writeln!(
                t,
                "  ARP requests        {:>12}  answered {} ({:.1}/s)  latency us p50 {:.1}  p99 {:.1}  max {:.1}",
                self.arp_sent, self.arp_answered, self.arp_answered_per_s, a.p50_us, a.p99_us, a.max_us
            );
        }
        if let Some(c) = &self.controller {
            let _ = writeln!(
                t,
                "  controller pid {}   cpu {}  rss start {}  end {}  growth {}",
                c.pid,
                opt(c.cpu_percent, "%"),
                opt(c.rss_start_mb, " MB"),
                opt(c.rss_end_mb, " MB"),
                opt(c.rss_growth_mb, " MB")
            );
        }
        let _ = writeln!(
            t,
            "  generator           cpu {}  rss {}",
            opt(self.generator_cpu_percent, "%"),
            opt(self.generator_rss_mb, " MB")
        );
        let _ = writeln!(
            t,
            "  errors received {}  timeouts {}  unmatched PACKET_OUTs {}  unknown messages {}  bundle adds {}",
            self.errors_received, self.timeouts, self.unmatched_packet_outs, self.unknown_messages, self.bundle_adds
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(t, "  first error: {}", e.replace('\n', " | "));
        }
        if self.incomplete_threads > 0 {
            let _ = writeln!(t, "  WARNING: {} worker thread(s) did not report in time", self.incomplete_threads);
        }
        t
    }
}

/// Quantiles of a latency histogram in nanoseconds, as microseconds.
fn latency_of(h: &Histogram<u64>) -> Latency {
    let q = |x: f64| if h.is_empty() { 0.0 } else { round(us(h.value_at_quantile(x)), 1) };
    Latency {
        count: h.len(),
        mean_us: if h.is_empty() { 0.0 } else { round(h.mean() / 1000.0, 1) },
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: if h.is_empty() { 0.0 } else { round(us(h.max()), 1) },
    }
}

/// The latency CDF: "percentile value_us" lines, percentile in 0..=100.
pub fn cdf(h: &Histogram<u64>) -> String {
    let mut s = String::from("# percentile latency_us\n");
    if h.is_empty() {
        return s;
    }
    for v in h.iter_quantiles(5) {
        let _ = writeln!(s, "{:.6} {:.3}", v.quantile_iterated_to() * 100.0, us(v.value_iterated_to()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_ends_at_100() {
        let mut h = crate::switch::new_hist();
        for v in 1..=1000u64 {
            h.saturating_record(v * 1000);
        }
        let c = cdf(&h);
        let last = c.lines().last().expect("lines");
        assert!(last.starts_with("100.000000 "), "{last}");
        assert!(c.lines().count() > 10);
    }
}
