//! A policy file reloaded on SIGHUP while the daemon decides, against a real Open vSwitch 3.1
//! (private sandbox): the new rules decide new connections, decisions go on while a big file
//! (200,000 rules) is read and indexed, and a bad file leaves the old policy in place.
//! Ports as in `tests/policy_daemon.rs` (docs/pipeline.md's example): pod A 2 (10.244.1.2),
//! pod B 4 (10.244.1.4).
#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{example_toml, PipelineEnv};
use support::wait_until;

const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const B_PORT: u32 = 4;

/// Version 1: everything allowed but pod B -> pod A tcp/22.
const V1: &str = "version = 1\ndefault = \"allow\"\n[[rule]]\naction = \"deny\"\nsrc = \"10.244.1.4\"\ndst = \"10.244.1.2\"\nprotocol = \"tcp\"\nports = 22\n";

/// Version 2: `n` rules about other addresses, then pod B -> pod A tcp/23 denied too.
fn v2(n: u32) -> String {
    let mut t = String::with_capacity(n as usize * 90);
    t.push_str("version = 2\ndefault = \"allow\"\n");
    for i in 0..n {
        let (s, d) = (0x0b00_0000 + i, 0x0c00_0000 + i);
        let _ = write!(
            t,
            "[[rule]]\naction = \"deny\"\nsrc = \"{}\"\ndst = \"{}\"\nprotocol = \"tcp\"\nports = 80\n",
            Ipv4Addr::from(s),
            Ipv4Addr::from(d)
        );
    }
    t.push_str(
        "[[rule]]\naction = \"deny\"\nsrc = \"10.244.1.4\"\ndst = \"10.244.1.2\"\nprotocol = \"tcp\"\nports = 23\n",
    );
    t
}

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn decisions(env: &PipelineEnv, verdict: &str) -> u64 {
    env.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{verdict}\"")]) as u64
}

fn metric(env: &PipelineEnv, name: &str, needles: &[&str]) -> u64 {
    env.d.metric_sum(name, needles) as u64
}

/// Injects pod B's SYN to pod A `dport` from `sport`; waits (5 s) for one more `verdict`.
fn decided(env: &PipelineEnv, sport: u16, dport: u16, verdict: &str) -> bool {
    let n0 = decisions(env, verdict);
    env.inject(B_PORT, &[build::tcp_syn(B_MAC, GW_MAC, IpAddr::V4(B), IpAddr::V4(A), sport, dport)]);
    wait_until(Duration::from_secs(5), || decisions(env, verdict) > n0)
}

fn hup(env: &PipelineEnv) {
    let st = std::process::Command::new("kill").args(["-HUP", &env.d.pid().to_string()]).status().unwrap();
    assert!(st.success(), "kill -HUP");
}

#[test]
fn sighup_reloads_the_policy_file_while_decisions_go_on() {
    let tmp = Tmp(std::env::temp_dir().join(format!("shardflow-reload-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let path = tmp.0.join("policy.toml");
    std::fs::write(&path, V1).unwrap();
    let toml = format!("{}\n[policy]\nsource = \"file\"\nfile = {:?}\n", example_toml(), path.display().to_string());
    let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);
    assert_eq!(metric(&env, "shardflow_policy_generation", &[]), 1, "generation 1 at start");
    assert_eq!(metric(&env, "shardflow_policy_rules", &[]), 1);

    // Version 1: tcp/23 allowed, tcp/22 denied.
    assert!(decided(&env, 41000, 23, "allow"), "v1 allows tcp/23\n{}", env.d.stderr());
    assert!(decided(&env, 41001, 22, "deny"), "v1 denies tcp/22");

    // Version 2 (200,000 rules) while new connections keep coming.
    const RULES: u32 = 200_000;
    std::fs::write(&path, v2(RULES)).unwrap();
    let t = Instant::now();
    hup(&env);
    let mut during = 0u32;
    let mut sport = 42000;
    let mut decided_all = true;
    while metric(&env, "shardflow_policy_generation", &[]) < 2 && t.elapsed() < Duration::from_secs(120) {
        // tcp/80 is allowed by both versions: each new connection must be decided.
        decided_all &= decided(&env, sport, 80, "allow");
        sport += 1;
        if metric(&env, "shardflow_policy_generation", &[]) < 2 {
            during += 1;
        }
    }
    let reload = t.elapsed();
    assert!(decided_all, "every connection during the reload was decided\n{}", env.d.stderr());
    assert_eq!(metric(&env, "shardflow_policy_generation", &[]), 2, "reloaded within 120 s\n{}", env.d.stderr());
    assert_eq!(metric(&env, "shardflow_policy_reloads_total", &["result=\"ok\""]), 1);
    assert_eq!(metric(&env, "shardflow_policy_rules", &[]), u64::from(RULES) + 1);
    // The new rule decides new connections (the shards take the new index at once).
    assert!(decided(&env, 41002, 23, "deny"), "v2 denies tcp/23\n{}", env.d.stderr());
    assert!(decided(&env, 41003, 22, "allow"), "v2 no longer denies tcp/22");
    // The old index is freed once every shard let go of it (their tick is 100 ms).
    assert!(
        wait_until(Duration::from_secs(5), || metric(&env, "shardflow_policy_retired", &[]) == 0),
        "the replaced policy is freed"
    );
    eprintln!(
        "FIGURE SIGHUP reload of {RULES} rules (debug build): generation 2 after {reload:?}, {during} connections decided while it ran, reload_ms={}",
        metric(&env, "shardflow_policy_reload_milliseconds", &[])
    );

    // A bad file: counted, logged, the old policy stays.
    std::fs::write(&path, "[[rule]]\naction = \"maybe\"\n").unwrap();
    hup(&env);
    assert!(
        wait_until(Duration::from_secs(10), || metric(&env, "shardflow_policy_reloads_total", &["result=\"error\""])
            == 1),
        "the bad reload is counted\n{}",
        env.d.stderr()
    );
    assert!(env.d.stderr().contains("rule[0].action"), "the error names the entry\n{}", env.d.stderr());
    assert_eq!(metric(&env, "shardflow_policy_generation", &[]), 2, "the old policy stays");
    assert!(decided(&env, 41004, 23, "deny"), "v2 still decides");
}
