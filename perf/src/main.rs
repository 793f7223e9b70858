//! `loadgen`: emulated Open vSwitch 3.1 switches (OpenFlow 1.3) that connect to a controller on
//! 127.0.0.1, answer it as OVS does and flood it with PACKET_INs, measuring answered packet-ins
//! per second and their latency (like cbench). Works with shardflow and with os-ken.

mod proc;
mod report;
mod switch;
mod template;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use switch::{Answer, Mode, Plan, Stats, Switch};
use template::{Host, MatchMeta, Proto};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Connect {
    /// Every switch connects to every controller address (OVS with several controllers); each
    /// packet goes on connection symmetric_hash(5-tuple) % N.
    Fanout,
    /// Switch i connects only to controller i % N.
    Spread,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s:?}: must be between 0 and 86400 seconds"));
    }
    Ok(v)
}

/// Emulated OVS switches flooding an OpenFlow 1.3 controller with PACKET_INs (cbench-like).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Controller address (repeatable; loopback only: 127.0.0.0/8 or [::1]).
    #[arg(long = "controller", value_name = "ADDR", default_value = "127.0.0.1:6653")]
    pub controllers: Vec<SocketAddr>,
    /// How switches connect when there are several controllers [default: fanout].
    #[arg(long, value_enum)]
    pub connect: Option<Connect>,
    /// Emulated switches (dpid = index + 1).
    #[arg(long, default_value_t = 16)]
    pub switches: usize,
    /// throughput: --window packet-ins in flight per connection; latency: one per switch;
    /// flood: no window, packet-ins as fast as the controller takes them.
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    pub mode: Mode,
    /// Packet-ins in flight per switch connection (throughput mode).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub duration: f64,
    /// Seconds before measuring (connections, handshake, first packets; not counted).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub warmup: f64,
    /// Flood mode: every Nth packet-in is an ARP request (a pod asking for another), answered
    /// by the controller with an ARP reply PACKET_OUT, counted and timed (0: none).
    #[arg(long, default_value_t = 0)]
    pub arp_every: u64,
    /// Frames: TCP SYNs, UDP datagrams, or both alternately.
    #[arg(long, value_enum, default_value_t = Proto::Tcp)]
    pub proto: Proto,
    /// What answers a packet-in: its PACKET_OUT, or the first FLOW_MOD after it.
    #[arg(long, value_enum, default_value_t = Answer::Packetout)]
    pub answer: Answer,
    /// A pod IP,MAC,PORT (repeatable) [default: 10.244.1.2,0a:58:0a:f4:01:02,2 and
    /// 10.244.1.4,0a:58:0a:f4:01:04,4, as docs/pipeline.md's example].
    #[arg(long = "pod", value_name = "IP,MAC,PORT")]
    pub pods: Vec<Host>,
    /// Source hosts: the first N pods (more are synthesized: 10.244.1.100+k, port 100+k)
    /// [default: the number of pods].
    #[arg(long)]
    pub hosts: Option<usize>,
    /// The gateway IP,MAC,PORT (destination when there is a single host).
    #[arg(long, value_name = "IP,MAC,PORT", default_value = "10.244.1.1,02:00:0a:f4:01:01,3")]
    pub gateway: Host,
    /// reg0 in the packet-in's match (bit 2 = from a local pod).
    #[arg(long, default_value = "0x4", value_parser = parse_u64)]
    pub reg0: u64,
    /// ct_state in the packet-in's match (0x21 = +new+trk).
    #[arg(long, default_value = "0x21", value_parser = parse_u64)]
    pub ct_state: u64,
    /// ct_zone in the packet-in's match (0: none).
    #[arg(long, default_value_t = 1)]
    pub ct_zone: u16,
    /// table_id of the packet-in (the pipeline's controller table).
    #[arg(long, default_value_t = 250)]
    pub table_id: u8,
    /// cookie of the packet-in (the flow that sent it).
    #[arg(long, default_value = "0x1010000000001", value_parser = parse_u64)]
    pub cookie: u64,
    /// Ports in the PORT_DESC reply (1..=N, plus LOCAL).
    #[arg(long, default_value_t = 8)]
    pub ports: u32,
    /// Worker threads (switches are spread over them) [default: half the cores, at least 1].
    #[arg(long)]
    pub threads: Option<usize>,
    /// A packet-in unanswered after this long is given up (counted in timeouts).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Wait after answering FEATURES_REQUEST before the first packet-in.
    #[arg(long, default_value_t = 200)]
    pub start_delay_ms: u64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency CDF as "percentile value_us" lines to FILE (for gnuplot).
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
    /// The controller's pid: its CPU % and RSS over the measured interval are reported.
    #[arg(long, value_name = "PID")]
    pub controller_pid: Option<u32>,
}

/// The connection addresses of switch `i`.
fn switch_addrs(args: &Args, connect: Connect, i: usize) -> Vec<SocketAddr> {
    match connect {
        Connect::Fanout => args.controllers.clone(),
        Connect::Spread => vec![args.controllers[i % args.controllers.len()]],
    }
}

fn check(args: &Args) -> Result<()> {
    for a in &args.controllers {
        if !a.ip().is_loopback() {
            bail!("--controller {a}: only loopback controllers are allowed (127.0.0.0/8 or [::1])");
        }
    }
    if args.switches == 0 || args.switches > 100_000 {
        bail!("--switches must be between 1 and 100000");
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    if args.duration <= 0.0 {
        bail!("--duration must be more than 0");
    }
    if args.hosts == Some(0) {
        bail!("--hosts must be at least 1");
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<i32> {
    check(args)?;
    let connect = args.connect.unwrap_or(Connect::Fanout);
    let pods = if args.pods.is_empty() { template::default_pods() } else { args.pods.clone() };
    let hosts = template::hosts(&pods, args.hosts.unwrap_or(pods.len()));
    let pairs = template::pairs(&hosts, args.gateway);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = args.threads.unwrap_or((cores / 2).max(1)).clamp(1, args.switches);
    let window = if args.mode == Mode::Latency { 1 } else { args.window };

    let t0 = Instant::now();
    let warm = t0 + Duration::from_secs_f64(args.warmup);
    let end = warm + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        mode: args.mode,
        answer: args.answer,
        window,
        proto: args.proto,
        pairs,
        n_switches: args.switches as u64,
        meta: MatchMeta {
            reg0: args.reg0 as u32,
            ct_state: args.ct_state as u32,
            ct_zone: args.ct_zone,
            reg15: 0,
            table_id: args.table_id,
            cookie: args.cookie,
        },
        warm,
        end,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        start_delay: Duration::from_millis(args.start_delay_ms),
        n_ports: args.ports,
        arp_every: args.arp_every,
    });
    let connect_timeout = Duration::from_secs_f64(args.warmup.clamp(1.0, 5.0));

    let (tx, rx) = mpsc::channel::<Stats>();
    let mut n_connections = 0;
    for t in 0..threads {
        let mine: Vec<(u64, Vec<SocketAddr>)> = (0..args.switches)
            .filter(|i| i % threads == t)
            .map(|i| (i as u64, switch_addrs(args, connect, i)))
            .collect();
        n_connections += mine.iter().map(|(_, a)| a.len()).sum::<usize>();
        let plan = plan.clone();
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                let stats = worker(plan, mine, connect_timeout);
                let _ = tx.send(stats);
            })
            .context("spawning a worker thread")?;
    }
    drop(tx);

    // The measured interval: samples of the controller and of ourselves at both ends.
    sleep_until(warm);
    let ctl_start = args.controller_pid.map(proc::sample);
    let self_start = proc::sample_self();
    sleep_until(end);
    let ctl_end = args.controller_pid.map(proc::sample);
    let self_end = proc::sample_self();
    let wall = end.saturating_duration_since(warm).as_secs_f64();

    let mut total = Stats::default();
    let mut got = 0;
    let grace = end + Duration::from_secs(5);
    while got < threads {
        let left = grace.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => {
                total.merge(&s);
                got += 1;
            }
            Err(_) => break,
        }
    }
    let incomplete = threads - got;
    let r = report::Report::new(report::Inputs {
        args,
        connect,
        window,
        threads,
        connections: n_connections,
        stats: &total,
        wall,
        controller: ctl_start.zip(ctl_end),
        generator: Some((self_start, self_end)),
        incomplete_threads: incomplete,
    });
    print!("{}", r.text());
    if let Some(path) = &args.json {
        let s = serde_json::to_string_pretty(&r).context("serializing the report")?;
        std::fs::write(path, s + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.histogram_out {
        std::fs::write(path, report::cdf(&total.hist)).with_context(|| format!("writing {}", path.display()))?;
    }
    if total.handshaken == 0 {
        eprintln!("loadgen: no connection completed the handshake");
        return Ok(1);
    }
    Ok(0)
}

fn sleep_until(t: Instant) {
    let d = t.saturating_duration_since(Instant::now());
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

/// One worker thread: its switches' connections on a current-thread runtime.
fn worker(plan: Arc<Plan>, switches: Vec<(u64, Vec<SocketAddr>)>, connect_timeout: Duration) -> Stats {
    let mut total = Stats::default();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            total.failed = switches.iter().map(|(_, a)| a.len() as u64).sum();
            total.first_error = Some(format!("tokio runtime: {e}"));
            return total;
        }
    };
    let local = tokio::task::LocalSet::new();
    let all = local.block_on(&rt, async move {
        let mut handles = Vec::new();
        for (index, addrs) in switches {
            let sw = Switch::new(index, addrs.len());
            for (c, addr) in addrs.into_iter().enumerate() {
                let fut = switch::run_conn(plan.clone(), sw.clone(), c, addr, connect_timeout);
                handles.push(tokio::task::spawn_local(fut));
            }
        }
        let mut v = Vec::new();
        for h in handles {
            if let Ok(s) = h.await {
                v.push(s);
            }
        }
        v
    });
    for s in &all {
        total.merge(s);
    }
    total
}
