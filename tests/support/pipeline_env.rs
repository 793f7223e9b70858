//! A bridge `br0` wired as docs/pipeline.md's example (uplink 1 `br0-p1`, pod A 2 `br0-p2`,
//! gateway 3, pod B 4, tunnel 5 as dummy ports `p3`..`p5`, each with a tx pcap) and the
//! `shardflow run --config` daemon (2 shards) attached to it; frame injection with
//! `ovs-appctl netdev-dummy/receive`, pcap reading, and the daemon's counters.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use shardflow::config::{Config, Mode};
use shardflow::packet::FlowKey;
use shardflow::pipeline::cookie::{self, Category};

use super::{pcap_packet_count, repo, wait_until, Daemon, Ovs};

/// The datapath id of `br0` in the sandbox.
pub const DPID: &str = "0000000000000001";
/// The shard count of docs/pipeline.md's examples.
pub const SHARDS: u16 = 2;

/// The body of the first fenced block of docs/pipeline.md opened with "```INFO" (e.g. `toml`,
/// `toml ipv6`).
pub fn pipeline_doc_block(info: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/pipeline.md")).unwrap();
    let open = format!("```{info}\n");
    let start = doc.find(&open).unwrap_or_else(|| panic!("docs/pipeline.md has a ```{info} block")) + open.len();
    let end = doc[start..].find("```").unwrap() + start;
    doc[start..end].to_string()
}

/// The ```toml block of docs/pipeline.md (2 shards, pods on ports 2 and 4).
pub fn example_toml() -> String {
    pipeline_doc_block("toml")
}

/// Adds dummy ports `pN` to `br0` with `ofport_request=N` and a tx pcap `pN-tx.pcap`.
pub fn add_dummy_ports(ovs: &Ovs, ports: &[u32]) {
    for p in ports {
        let pcap = format!("options:tx_pcap={}", ovs.path(&format!("p{p}-tx.pcap")).display());
        let req = format!("ofport_request={p}");
        let name = format!("p{p}");
        ovs.ok("ovs-vsctl", &["add-port", "br0", &name, "--", "set", "interface", &name, "type=dummy", &req, &pcap]);
    }
}

/// The interface name of OpenFlow port `port` of `br0`: `br0-p1`, `br0-p2`, then `pN`.
pub fn port_name(port: u32) -> String {
    match port {
        1 | 2 => format!("br0-p{port}"),
        p => format!("p{p}"),
    }
}

/// The tx pcap file of OpenFlow port `port` of `br0`.
pub fn pcap_path(ovs: &Ovs, port: u32) -> PathBuf {
    match port {
        1 | 2 => ovs.path(&format!("br0-p{port}-tx.pcap")),
        p => ovs.path(&format!("p{p}-tx.pcap")),
    }
}

/// Injects `frames` as received on `port` of `br0` (`ovs-appctl netdev-dummy/receive`, hex).
pub fn inject(ovs: &Ovs, port: u32, frames: &[Vec<u8>]) {
    let name = port_name(port);
    let hex: Vec<String> = frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect()).collect();
    let mut args: Vec<&str> = vec!["netdev-dummy/receive", &name];
    args.extend(hex.iter().map(String::as_str));
    ovs.ok("ovs-appctl", &args);
}

/// The frames in a pcap file (classic format, as OVS's tx_pcap writes it); a record cut short
/// is left out.
pub fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes([b[at + 8], b[at + 9], b[at + 10], b[at + 11]]) as usize;
        at += 16;
        if at + incl > b.len() {
            break;
        }
        out.push(b[at..at + incl].to_vec());
        at += incl;
    }
    out
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The IPv4 address at byte offset `at` of frame `f`.
pub fn ip4_at(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

/// The IPv6 address at byte offset `at` of frame `f`.
pub fn ip6_at(f: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&f[at..at + 16]);
    Ipv6Addr::from(o)
}

/// Waits (up to `timeout`) until the daemon reports `br0` with `conns` connections and its
/// pipeline installed (and logged "pipeline in place"); panics otherwise.
pub fn wait_pipeline(d: &Daemon, conns: u64, timeout: Duration) {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        last = d.json("/v1/switches");
        let s = last.as_array().and_then(|a| a.iter().find(|s| s["dpid"] == DPID));
        s.is_some_and(|s| s["connections"].as_u64() == Some(conns) && !s["pipeline_installed_ms"].is_null())
            && d.stderr().contains("pipeline in place")
    });
    assert!(ok, "no pipeline within {timeout:?}: {last}\n{}", d.stderr());
}

/// OVS with `br0` wired as the example, the daemon running a given configuration attached to
/// it, and the generation of that configuration's pipeline.
pub struct PipelineEnv {
    pub ovs: Ovs,
    pub d: Daemon,
    pub generation: u16,
    pub cfg: Config,
    /// One connection (`--mode single`) rather than one per shard.
    pub single: bool,
    /// Sentinel packet-ins sent by [`PipelineEnv::settle`] so far (left out of the counts).
    sentinels: std::cell::Cell<u64>,
}

impl PipelineEnv {
    /// OVS with ports 1-5 (+ `extra_ports`, tx pcaps) and the daemon with `toml` (+ `args`),
    /// attached (fan-out, or one connection when `single`), its pipeline in place (10 s).
    pub fn start_with_config(toml: &str, args: &[&str], single: bool, extra_ports: &[u32]) -> PipelineEnv {
        let ovs = Ovs::start(&["br0"]);
        let ports: Vec<u32> = [3, 4, 5].iter().chain(extra_ports).copied().collect();
        add_dummy_ports(&ovs, &ports);
        let mut cfg = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        if single {
            // The generation hashes the desired flows, whose dispatch part depends on the mode.
            cfg.openflow.mode = Mode::Single;
        }
        let generation = shardflow::pipeline::resync::generation_of(&shardflow::daemon::desired_texts(&cfg, 0));
        let d = Daemon::start_with_config_args(SHARDS, toml, args);
        d.attach(&ovs, "br0", single);
        wait_pipeline(&d, if single { 1 } else { u64::from(SHARDS) }, Duration::from_secs(10));
        PipelineEnv { ovs, d, generation, cfg, single, sentinels: std::cell::Cell::new(0) }
    }

    /// Injects `frames` as received on `port`.
    pub fn inject(&self, port: u32, frames: &[Vec<u8>]) {
        inject(&self.ovs, port, frames);
    }

    /// The tx pcap file of `port`.
    pub fn pcap(&self, port: u32) -> PathBuf {
        pcap_path(&self.ovs, port)
    }

    /// The number of frames sent out of `port` so far.
    pub fn count(&self, port: u32) -> usize {
        pcap_packet_count(&self.pcap(port))
    }

    /// Waits (up to `t`) for the pcap of `port` to hold `n` records; returns the count seen.
    pub fn wait_count(&self, port: u32, n: usize, t: Duration) -> usize {
        let mut got = 0;
        wait_until(t, || {
            got = self.count(port);
            got >= n
        });
        got
    }

    /// The last frame sent out of `port` (panics when there is none).
    pub fn last_frame(&self, port: u32) -> Vec<u8> {
        pcap_frames(&self.pcap(port)).pop().expect("a frame")
    }

    /// `/v1/shards`, one object per shard.
    pub fn shards(&self) -> Vec<Value> {
        self.d.json("/v1/shards").as_array().unwrap().clone()
    }

    /// Packet-ins over all shards (`/v1/shards` packet_ins), [`PipelineEnv::settle`]'s
    /// sentinels left out.
    pub fn packet_ins(&self) -> u64 {
        self.shards().iter().map(|s| s["packet_ins"].as_u64().unwrap()).sum::<u64>() - self.sentinels.get()
    }

    /// The sentinel packet-ins [`PipelineEnv::settle`] has sent (each counted by the daemon as a
    /// packet-in of kind `invalid`).
    pub fn sentinels(&self) -> u64 {
        self.sentinels.get()
    }

    /// Returns once the daemon has read every packet-in OVS queued before this call, on every
    /// controller connection of br0: the event a "nothing more happened" assertion waits for,
    /// instead of a sleep.
    ///
    /// OVS sends a connection's packet-ins in order, and the packet-in of a packet-out's
    /// `controller(id=K)` action is queued behind those of the packets OVS already processed
    /// (one list, flushed in order by its main loop). So one sentinel sent now to each
    /// connection K arrives behind anything earlier on it. The sentinel is a frame the daemon
    /// cannot parse (an IPv4 header cut short, a multicast source MAC): a packet-in of kind
    /// `invalid`, dropped before the Tracker, the connection table or a decision. The sentinels
    /// are left out of [`PipelineEnv::packet_ins`]; a test counting `invalid` packet-ins
    /// subtracts [`PipelineEnv::sentinels`].
    pub fn settle(&self) {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x03, 0, 0, 0, 0x5e, 0x01]); // multicast source: never learned
        frame.extend_from_slice(&[0x08, 0x00, 0x4f, 0x00, 0x00, 0x14]); // IHL 15, 20 bytes: cut short
        frame.resize(34, 0);
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let invalid = |shard: Option<u16>| {
            let s = shard.map(|i| format!("shard=\"{i}\""));
            let mut needles = vec!["kind=\"invalid\""];
            if let Some(s) = &s {
                needles.push(s);
            }
            self.d.metric_sum("shardflow_packet_in_total", &needles) as u64
        };
        // Fan-out: shard i's connection has controller id i + 1; single: one connection, no id.
        let targets: Vec<Option<u16>> = if self.single { vec![None] } else { (0..SHARDS).map(Some).collect() };
        let before: Vec<u64> = targets.iter().map(|t| invalid(*t)).collect();
        for t in &targets {
            let action = match t {
                Some(i) => format!("controller(id={})", i + 1),
                None => "controller".to_string(),
            };
            let out = format!("in_port=controller packet={hex} actions={action}");
            self.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "packet-out", "br0", &out]);
        }
        self.sentinels.set(self.sentinels.get() + targets.len() as u64);
        let settled = wait_until(Duration::from_secs(5), || targets.iter().zip(&before).all(|(t, b)| invalid(*t) > *b));
        assert!(
            settled,
            "the sentinel packet-ins did not reach every shard within 5 s: invalid packet-ins {before:?} -> {:?}\n{}",
            targets.iter().map(|t| invalid(*t)).collect::<Vec<_>>(),
            self.d.stderr()
        );
    }

    /// `ovs-appctl dpctl/dump-conntrack -m`.
    pub fn conntrack(&self) -> String {
        self.ovs.ok("ovs-appctl", &["dpctl/dump-conntrack", "-m"])
    }

    /// The connection cookie the daemon gives the connection of `frame` received on `in_port`
    /// (generation | Connection | ConnKey hash).
    pub fn conn_cookie(&self, in_port: u32, frame: &[u8]) -> u64 {
        let k = FlowKey::extract(in_port, frame).unwrap();
        cookie::make(self.generation, Category::Connection, k.conn_key().hash64())
    }
}
