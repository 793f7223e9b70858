//! `shardflow offload ...`: which flows a smart NIC could run in hardware, and why not
//! (`shardflow::offload`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use shardflow::offload::report::{self, Report};
use shardflow::offload::{check_flow, Profile, DEFAULT_PROFILE};
use shardflow::openflow::flow::{FlowMod, FlowModCommand};

use super::{EX_DATAERR, EX_USAGE};

/// Where the daemon's REST token is by default (docs/security.md).
const DEFAULT_TOKEN_FILE: &str = "/run/shardflow/http.token";
/// Largest REST answer read (a report of a big switch is a few MiB at most).
const MAX_ANSWER: u64 = 64 << 20;

#[derive(Subcommand, Debug)]
pub enum OffloadCommand {
    /// Judge flows (ovs-ofctl syntax): one line per flow, `offloadable` or
    /// `not offloadable: REASON; REASON`.
    Check {
        /// A built-in profile (tc-flower, connectx) or a profile file (.toml).
        #[arg(long, default_value = DEFAULT_PROFILE)]
        profile: String,
        /// After each flow's line, one indented line per reason with the source the profile
        /// cites for it.
        #[arg(long)]
        sources: bool,
        /// The flows, in ovs-ofctl syntax (`table=3,priority=100,tcp,actions=ct(commit,zone=1),output:2`).
        #[arg(required = true)]
        flows: Vec<String>,
    },
    /// Judge datapath flows: `ovs-appctl dpctl/dump-flows -m` text on stdin, one line per flow
    /// (the verdict as `check` prints it, ` | type=ovs|offloaded|partial|tc | ` and the flow).
    Datapath(super::offload_datapath::DatapathArgs),
    /// The offload report of a live daemon's switches (through its REST API), or of the
    /// pipeline a configuration file installs (`--config`).
    Report {
        /// A built-in profile (tc-flower, connectx); with `--config`, a profile file too.
        #[arg(long, default_value = DEFAULT_PROFILE)]
        profile: String,
        /// The datapath id of one switch (default: every connected switch).
        #[arg(long)]
        switch: Option<String>,
        /// The daemon's HTTP address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: String,
        /// The REST bearer token's file (or set SHARDFLOW_HTTP_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Instead of a daemon: the default pipeline this configuration file installs, plus the
        /// connection flows decided for three example connections (allowed, service, denied).
        #[arg(long, conflicts_with = "switch")]
        config: Option<PathBuf>,
        /// Print the JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: OffloadCommand) -> ExitCode {
    match cmd {
        OffloadCommand::Check { profile, sources, flows } => check(&profile, sources, &flows),
        OffloadCommand::Datapath(args) => super::offload_datapath::run(args),
        OffloadCommand::Report { profile, switch, http, token_file, config, json } => {
            let r = match config {
                Some(path) => offline_report(&profile, &path).map(|r| vec![(None, r)]),
                None => live_report(&profile, switch.as_deref(), &http, token_file.as_deref()),
            };
            match r {
                Ok(reports) => {
                    print_reports(&reports, json);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shardflow: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(profile: &str, sources: bool, flows: &[String]) -> ExitCode {
    let profile = match Profile::named_or_file(profile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardflow: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut bad = 0;
    let mut out = std::io::stdout().lock();
    for (i, text) in flows.iter().enumerate() {
        match FlowMod::parse(text, FlowModCommand::Add) {
            Ok(fm) => {
                let v = check_flow(&profile, &fm);
                let _ = writeln!(out, "{}", v.line());
                if sources {
                    for r in &v.reasons {
                        let _ = writeln!(out, "  {r}: {}", profile.source_for(r).unwrap_or("(no source)"));
                    }
                }
            }
            Err(e) => {
                bad += 1;
                let _ = out.flush();
                eprintln!("shardflow: flow {}: bad flow: {e}", i + 1);
            }
        }
    }
    if bad > 0 {
        ExitCode::from(EX_DATAERR)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_reports(reports: &[(Option<String>, Report)], json: bool) {
    if json {
        let v: Vec<serde_json::Value> =
            reports.iter().map(|(dpid, r)| serde_json::json!({ "switch": dpid, "report": r })).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    for (i, (dpid, r)) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        if let Some(d) = dpid {
            println!("switch {d}");
        }
        print!("{}", r.render_text());
    }
}

/// The pipeline a configuration installs, and the flows decided for three example connections.
fn offline_report(profile: &str, path: &std::path::Path) -> anyhow::Result<Report> {
    use shardflow::config::Config;
    let profile = Profile::named_or_file(profile)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg = Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(p) = cfg.pipeline.as_ref() else {
        bail!("{}: no [pipeline] section: only the packet-in dispatch would be installed", path.display())
    };
    let mut flows = shardflow::pipeline::default::generate(p, cfg.shards.count, 1)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    flows.extend(example_connection_flows(p));
    Ok(report::analyze(&profile, &flows))
}

/// The connection flows `policy::decide` installs for an allowed pod-to-pod TCP connection, a
/// service connection (DNAT to the second pod) and a denied one, from the first local pod.
fn example_connection_flows(p: &shardflow::pipeline::default::PipelineConfig) -> Vec<FlowMod> {
    use shardflow::packet::{build, FlowKey};
    use shardflow::policy::decision::{decide, DecisionContext};
    use shardflow::policy::{Endpoint, NetworkPolicy};
    use std::net::{IpAddr, Ipv4Addr};
    let (Some(a), Some(b)) = (p.local_pods.first(), p.local_pods.get(1).or(p.local_pods.first())) else {
        return Vec::new();
    };
    let ctx = DecisionContext::new(p, 1);
    let svc_ip = {
        // The first address of the service range past its network address.
        let net = p.service_cidr.addr();
        IpAddr::V4(Ipv4Addr::from(u32::from(net).wrapping_add(10)))
    };
    let mut out = Vec::new();
    let cases: [(IpAddr, u16, NetworkPolicy); 3] = [
        (IpAddr::V4(b.ip), 80, NetworkPolicy::allow()),
        (svc_ip, 80, NetworkPolicy::service(vec![Endpoint { ip: IpAddr::V4(b.ip), port: 8080, weight: 1 }])),
        (IpAddr::V4(b.ip), 22, NetworkPolicy::deny()),
    ];
    for (i, (dst, port, policy)) in cases.into_iter().enumerate() {
        let frame = build::tcp_syn(a.mac, p.gateway_mac, IpAddr::V4(a.ip), dst, 40000 + i as u16, port);
        if let Ok(key) = FlowKey::extract(a.port, &frame) {
            out.extend(decide(&key, a.port, &policy, &ctx).flows);
        }
    }
    out
}

fn token(token_file: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("SHARDFLOW_HTTP_TOKEN") {
        if token_file.is_none() && !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let path = token_file.unwrap_or(std::path::Path::new(DEFAULT_TOKEN_FILE));
    let t = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the REST token from {} (--token-file, SHARDFLOW_HTTP_TOKEN)", path.display())
    })?;
    Ok(t.trim().to_string())
}

fn live_report(
    profile: &str,
    switch: Option<&str>,
    http: &str,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<(Option<String>, Report)>> {
    // The daemon knows only its built-in profiles; say so before asking it.
    if let Err(e) = Profile::builtin(profile) {
        bail!("{e} (a live report takes a built-in profile)");
    }
    let token = token(token_file)?;
    let dpids: Vec<String> = match switch {
        Some(s) => vec![s.to_string()],
        None => {
            let (status, body) = get(http, "/v1/switches", &token)?;
            if status != 200 {
                bail!("GET /v1/switches: {status} {}", body.trim());
            }
            let v: serde_json::Value = serde_json::from_str(&body).context("GET /v1/switches: not JSON")?;
            let list: Vec<String> = v
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.get("dpid").and_then(|d| d.as_str()).map(str::to_string)).collect())
                .unwrap_or_default();
            if list.is_empty() {
                bail!("no switch is connected to the daemon at {http}");
            }
            list
        }
    };
    let mut out = Vec::new();
    for d in dpids {
        let path = format!("/v1/switches/{d}/offload?profile={profile}");
        let (status, body) = get(http, &path, &token)?;
        if status != 200 {
            bail!("GET {path}: {status} {}", body.trim());
        }
        let r: Report = serde_json::from_str(&body).with_context(|| format!("GET {path}: not a report"))?;
        out.push((Some(d), r));
    }
    Ok(out)
}

/// One GET over HTTP/1.1 (Connection: close) with the bearer token: (status, body).
fn get(addr: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("cannot connect to the daemon at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("GET {path}: no HTTP answer") };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: bad status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        // `get`: a chunk size that does not land on a character boundary ends the body.
        let (Some(chunk), Some(next)) = (rest.get(..n), rest.get(n..)) else { break };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = next.trim_start_matches("\r\n");
    }
    out
}
