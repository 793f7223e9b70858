//! Packet-in meters (`[pipeline.meters]`, `pipeline::meters`) with the real daemon
//! (`shardflow run --config`, docs/pipeline.md's ```toml example with `arp = "controller"` and
//! low rates, 2 shards, fan-out) against a private Open vSwitch 3.1 per test, userspace
//! (netdev) datapath: the daemon installs the meters with the configured rates and the
//! controller flows name them; a burst of first packets above the new-connection rate is partly
//! dropped by the switch (meter band counts), every SYN either dropped there or a packet-in,
//! while ARP (its own meter) is still answered by the controller; the table-0 miss has its own
//! meter; after a reconnect the daemon puts back a meter changed and one deleted by hand (and
//! the flows OVS deleted with it). The daemon's own bounds, with the meters off: a shard's
//! per-class budget (`[pipeline.shard_limits]`) drops the excess of a burst and counts it
//! (`shardflow_packet_in_dropped_total{cause="rate_new_connection"}`) while ARP is answered;
//! packets held for a slow cni-ctl stop at `policy.max_pending`, the rest dropped and counted
//! (`cause="held_full"`). Ports as tests/ipv6_arp_daemon.rs: uplink 1, pod A 2, gateway 3,
//! pod B 4, tunnel 5.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{example_toml, PipelineEnv};
use support::{wait_until, Cnictl};

const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const B_PORT: u32 = 4;

/// Rates of the test: low enough that a burst of one `netdev-dummy/receive` call (at most 100
/// frames) overflows them.
const NEW_PPS: u32 = 10;
const ARP_PPS: u32 = 50;
const OTHER_PPS: u32 = 5;

/// docs/pipeline.md's ```toml example with ARP requests to the controller and the test rates.
fn config() -> String {
    config_with(NEW_PPS, ARP_PPS, OTHER_PPS)
}

/// [`config`] with other meter rates.
fn config_with(new_pps: u32, arp_pps: u32, other_pps: u32) -> String {
    let t = example_toml();
    let meters = "[pipeline.meters]\nnew_connections_pps = 10000\narp_pps = 1000\nother_pps = 1000\n";
    assert!(t.contains(meters), "the doc's example has its [pipeline.meters]: {t}");
    let t = t.replace(
        meters,
        &format!("[pipeline.meters]\nnew_connections_pps = {new_pps}\narp_pps = {arp_pps}\nother_pps = {other_pps}\n"),
    );
    t.replace("learn_hard_timeout = 0\n", "learn_hard_timeout = 0\narp = \"controller\"\n")
}

fn start() -> PipelineEnv {
    PipelineEnv::start_with_config(&config(), &[], false, &[])
}

fn dump_meters(env: &PipelineEnv) -> String {
    env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-meters", "br0"])
}

/// Band 0's packet count of `meter` (`ovs-ofctl -O OpenFlow13 meter-stats br0 meter=N`):
/// the packets the meter dropped.
fn band_drops(env: &PipelineEnv, meter: u32) -> u64 {
    let out = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "meter-stats", "br0", &format!("meter={meter}")]);
    let band = out.split("bands:").nth(1).unwrap_or_else(|| panic!("no bands in meter-stats: {out}"));
    let n = band.split("packet_count:").nth(1).unwrap_or_else(|| panic!("no band packet_count: {out}"));
    n.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// The `dump-flows --no-stats` line of table `table`, priority `prio` (the first one).
fn flow(env: &PipelineEnv, table: u8, prio: u16) -> String {
    let out = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "--no-stats"]);
    let t = if table == 0 { String::new() } else { format!("table={table}, ") };
    out.lines()
        .find(|l| l.contains(&format!(" {t}priority={prio},")) || l.contains(&format!(" {t}priority={prio} ")))
        .unwrap_or_else(|| panic!("no table {table} priority {prio} flow:\n{out}"))
        .to_string()
}

fn verdict(env: &PipelineEnv, v: &str) -> u64 {
    env.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{v}\"")]) as u64
}

/// The meters the daemon installed and the flows that name them.
#[test]
fn daemon_installs_the_meters_and_the_controller_flows_name_them() {
    let env = start();
    let meters = dump_meters(&env);
    for (id, rate) in [(1, NEW_PPS), (2, ARP_PPS), (3, OTHER_PPS)] {
        let want = format!("meter={id} pktps stats bands=\ntype=drop rate={rate}\n");
        assert!(meters.contains(&want), "no {want:?} in dump-meters:\n{meters}");
    }
    for (table, prio, meter) in [(0, 90, 1), (3, 0, 1), (20, 50, 2), (0, 0, 3)] {
        let l = flow(&env, table, prio);
        assert!(l.contains(&format!("actions=meter:{meter},multipath(")), "table {table} priority {prio}: {l}");
    }
    // Flows that do not go to the controller carry no meter.
    let all = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "--no-stats"]);
    assert_eq!(all.matches("meter:").count(), 4, "{all}");
    eprintln!("FIGURE dump-meters:\n{meters}");
}

/// A burst of first packets above the rate: the switch drops the excess (meter 1's band), the
/// rest reach the daemon; ARP, on its own meter, is still answered; unknown EtherTypes hit
/// meter 3.
#[test]
fn a_burst_of_new_connections_is_metered_at_the_switch_and_arp_still_answered() {
    let env = start();
    let (pi0, drops0) = (env.packet_ins(), band_drops(&env, 1));
    const BURST: u64 = 80;
    let syns: Vec<Vec<u8>> =
        (0..BURST).map(|i| build::tcp_syn(B_MAC, GW_MAC, B4.into(), A4.into(), 41000 + i as u16, 80)).collect();
    env.inject(B_PORT, &syns);
    // Every SYN is either dropped by meter 1 or a packet-in (nothing else drops them).
    let mut seen = (0, 0);
    let settled = wait_until(Duration::from_secs(10), || {
        seen = (band_drops(&env, 1) - drops0, env.packet_ins() - pi0);
        seen.0 + seen.1 == BURST
    });
    assert!(settled, "{BURST} SYNs: dropped by meter 1 + packet-ins = {seen:?}\n{}", env.d.stderr());
    let (dropped, passed) = seen;
    assert!(dropped > 0, "the meter dropped nothing of a burst of {BURST} at {NEW_PPS} pps");
    assert!(passed > 0, "the meter let nothing through");
    assert!(passed < BURST / 2, "{passed} of {BURST} passed a {NEW_PPS} pps meter in one burst");

    // ARP request from pod B for pod A: its own meter, answered by the controller.
    let (rep0, c0) = (verdict(&env, "arp_reply"), env.count(B_PORT));
    env.inject(B_PORT, &[build::arp_request(B_MAC, B4, A4)]);
    assert_eq!(env.wait_count(B_PORT, c0 + 1, Duration::from_secs(5)), c0 + 1, "an ARP reply on port 4");
    let f = env.last_frame(B_PORT);
    assert_eq!((&f[12..14], &f[20..22]), (&[0x08, 0x06][..], &[0, 2][..]), "an ARP reply: {f:02x?}");
    assert!(wait_until(Duration::from_secs(2), || verdict(&env, "arp_reply") == rep0 + 1), "arp_reply +1");
    assert_eq!(band_drops(&env, 2), 0, "the ARP meter dropped nothing");

    // Frames of an EtherType the classifier does not know: the table-0 miss, meter 3.
    let junk: Vec<Vec<u8>> = (0..30u8)
        .map(|i| {
            let mut f = vec![0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 1, i, 0x88, 0xb5];
            f.extend_from_slice(&[i; 46]);
            f
        })
        .collect();
    let (pi1, other0) = (env.packet_ins(), band_drops(&env, 3));
    env.inject(B_PORT, &junk);
    let mut other = (0, 0);
    let settled = wait_until(Duration::from_secs(10), || {
        other = (band_drops(&env, 3) - other0, env.packet_ins() - pi1);
        other.0 + other.1 == 30
    });
    assert!(settled, "30 unknown frames: dropped by meter 3 + packet-ins = {other:?}");
    assert!(other.0 > 0, "meter 3 dropped nothing of 30 frames at {OTHER_PPS} pps");
    eprintln!(
        "FIGURE burst of {BURST} SYNs at a {NEW_PPS} pps meter: {dropped} dropped by the switch, {passed} packet-ins; \
         ARP answered; 30 unknown frames at {OTHER_PPS} pps: {} dropped, {} packet-ins",
        other.0, other.1
    );
}

/// Reconnects every shard's connection in turn, never leaving the bridge without a controller
/// (going from no controller to some makes OVS flush its flows and meters, which would hide
/// what a resync does).
fn bounce_connections(env: &PipelineEnv) {
    for keep in 0..2 {
        let target = format!("tcp:127.0.0.1:{}", env.d.of_port(keep));
        env.ovs.ok("ovs-vsctl", &["set-controller", "br0", &target]);
        env.d.attach(&env.ovs, "br0", false);
    }
}

/// The daemon's "packet-in meters in place" log lines.
fn meter_logs(env: &PipelineEnv) -> Vec<String> {
    env.d.stderr().lines().filter(|l| l.contains("packet-in meters in place")).map(str::to_string).collect()
}

/// A reconnect with the meters as configured sends none; meters changed or deleted by hand are
/// put back when the switch reconnects, with the flows OVS deleted together with a deleted meter.
#[test]
fn a_reconnect_puts_the_meters_back() {
    let env = start();
    // attach's change to out-of-band makes OVS reconnect (and, having flushed, the daemon
    // install again): wait for that second install so it is not taken for the bounce's.
    let _ = wait_until(Duration::from_secs(5), || env.d.stderr().matches("pipeline in place").count() >= 2);
    let n0 = meter_logs(&env).len();
    bounce_connections(&env);
    let mut logs = Vec::new();
    let ok = wait_until(Duration::from_secs(20), || {
        logs = meter_logs(&env);
        logs.len() > n0
    });
    assert!(ok, "no meter resync after the reconnect:\n{}", env.d.stderr());
    let unchanged = |l: &String| l.contains("set=0 unchanged=3 stale=0");
    assert!(logs[n0..].iter().all(unchanged), "meters re-sent though unchanged: {logs:#?}");

    env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "mod-meter", "br0", "meter=1,pktps,stats,band=type=drop,rate=999"]);
    env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "del-meters", "br0", "meter=2"]);
    let meters = dump_meters(&env);
    assert!(meters.contains("rate=999") && !meters.contains("meter=2 "), "{meters}");
    let t20 = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "table=20", "--no-stats"]);
    assert!(!t20.contains("meter:2"), "OVS deletes the flows of a deleted meter:\n{t20}");

    let n1 = meter_logs(&env).len();
    bounce_connections(&env);
    let mut last = String::new();
    let back = wait_until(Duration::from_secs(20), || {
        last = dump_meters(&env);
        last.contains(&format!("meter=1 pktps stats bands=\ntype=drop rate={NEW_PPS}\n"))
            && last.contains(&format!("meter=2 pktps stats bands=\ntype=drop rate={ARP_PPS}\n"))
    });
    assert!(back, "meters not put back after the reconnect:\n{last}\n{}", env.d.stderr());
    assert_eq!(last.matches("meter=").count(), 3, "{last}");
    let logs = meter_logs(&env);
    assert!(logs[n1..].iter().any(|l| l.contains("set=2 unchanged=1")), "one meter added, one modified: {logs:#?}");
    let flows_back = wait_until(Duration::from_secs(10), || flow(&env, 20, 50).contains("actions=meter:2,"));
    assert!(flows_back, "table 20's ARP flow not put back: {}", flow(&env, 20, 50));
}

// === the daemon's own bounds ===

fn dropped(env: &PipelineEnv, cause: &str) -> u64 {
    env.d.metric_sum("shardflow_packet_in_dropped_total", &[&format!("cause=\"{cause}\"")]) as u64
}

fn decisions(env: &PipelineEnv) -> u64 {
    env.d.metric_sum("shardflow_decisions_total", &[]) as u64
}

fn syn_burst(n: u64, first_port: u16) -> Vec<Vec<u8>> {
    (0..n).map(|i| build::tcp_syn(B_MAC, GW_MAC, B4.into(), A4.into(), first_port + i as u16, 80)).collect()
}

/// ARP request from pod B for pod A, answered by a shard out of port 4.
fn arp_answered(env: &PipelineEnv) {
    let (rep0, c0) = (verdict(env, "arp_reply"), env.count(B_PORT));
    env.inject(B_PORT, &[build::arp_request(B_MAC, B4, A4)]);
    assert_eq!(env.wait_count(B_PORT, c0 + 1, Duration::from_secs(5)), c0 + 1, "an ARP reply on port 4");
    assert!(wait_until(Duration::from_secs(2), || verdict(env, "arp_reply") == rep0 + 1), "arp_reply +1");
}

/// No meters (rates 0: no meter, no `meter:` instruction), a shard budget of 10 new connections
/// per second: a burst is decided up to the budget, the rest dropped by the shards and counted;
/// ARP, on its own budget, is answered.
#[test]
fn a_shard_budget_drops_and_counts_the_excess_and_arp_is_answered() {
    let toml = config_with(0, 0, 0) + "\n[pipeline.shard_limits]\nnew_connections_pps = 10\narp_pps = 1000\n";
    // The table must come after [pipeline]'s keys: put it before the first [[pipeline.local_pods]].
    let toml = {
        let (head, pods) = toml.split_once("[[pipeline.local_pods]]").unwrap();
        let (pods, limits) = pods.split_once("\n[pipeline.shard_limits]").unwrap();
        format!("{head}[pipeline.shard_limits]{limits}\n[[pipeline.local_pods]]{pods}")
    };
    let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);
    let meters = dump_meters(&env);
    assert!(!meters.contains("meter="), "rates of 0 install no meter:\n{meters}");
    let all = env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", "br0", "--no-stats"]);
    assert!(!all.contains("meter:"), "{all}");

    const BURST: u64 = 60;
    let (d0, r0) = (decisions(&env), dropped(&env, "rate_new_connection"));
    env.inject(B_PORT, &syn_burst(BURST, 42000));
    // Every SYN reaches a shard (no meter); each is decided or dropped for the budget.
    let mut seen = (0, 0);
    let settled = wait_until(Duration::from_secs(10), || {
        seen = (decisions(&env) - d0, dropped(&env, "rate_new_connection") - r0);
        seen.0 + seen.1 == BURST
    });
    assert!(settled, "{BURST} SYNs: decided + dropped for the budget = {seen:?}\n{}", env.d.stderr());
    assert!(seen.1 > 0, "nothing dropped at 10 new connections/s per shard: {seen:?}");
    assert!(seen.0 > 0 && seen.0 < BURST / 2, "decided {} of {BURST}", seen.0);
    arp_answered(&env);
    assert_eq!(dropped(&env, "rate_arp"), 0);
    eprintln!(
        "FIGURE shard budget 10/s per shard, {BURST} SYNs at once: {} decided, {} dropped (rate_new_connection)",
        seen.0, seen.1
    );
}

/// cni-ctl answers after 3 s; at most `policy.max_pending` = 4 packets wait per shard, the rest
/// of a burst is dropped before a task is spawned and counted; ARP is answered meanwhile and the
/// held packets are decided once the answers come.
#[test]
fn packets_held_for_a_slow_cnictl_are_bounded_and_the_rest_counted() {
    let dir = std::env::temp_dir().join(format!("shardflow-meters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "version = 1\ndefault = \"allow\"\n").unwrap();
    let srv = Cnictl::start(&policy, "127.0.0.1:0", 3000);
    let toml = format!(
        "{}\n[policy]\nsource = \"cnictl\"\ncnictl = \"{}\"\nmax_pending = 4\ntimeout_ms = 10000\n",
        config(),
        srv.url()
    );
    let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);

    // Under the meter's burst (10 at once): all 10 reach the shards; at most 4 per shard wait.
    const BURST: u64 = 10;
    let (d0, h0) = (decisions(&env), dropped(&env, "held_full"));
    env.inject(B_PORT, &syn_burst(BURST, 43000));
    let mut held_full = 0;
    let ok = wait_until(Duration::from_secs(5), || {
        held_full = dropped(&env, "held_full") - h0;
        held_full >= BURST - 8
    });
    assert!(ok, "held_full {held_full}: at most 8 of {BURST} can wait (4 per shard)\n{}", env.d.stderr());
    arp_answered(&env);
    // The held ones are decided when cni-ctl answers.
    let mut decided = 0;
    let ok = wait_until(Duration::from_secs(15), || {
        decided = decisions(&env) - d0 - 1; // the ARP reply is a decision too
        decided + held_full == BURST
    });
    assert!(ok, "decided {decided} + held_full {held_full} != {BURST}\n{}\n{}", env.d.stderr(), srv.stderr());
    assert!(decided <= 8, "{decided} packets waited for cni-ctl, 4 per shard at most");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("FIGURE slow cni-ctl (3 s), max_pending 4 per shard, {BURST} SYNs: {held_full} dropped (held_full), {decided} decided later");
}
