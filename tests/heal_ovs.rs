//! The self-healing pipeline against a real Open vSwitch 3.1 (issue 12, item 3): the daemon
//! (`shardflow run --config` with docs/pipeline.md's example) puts back the dispatch and pipeline
//! flows that someone deletes or changes behind its back (by hand with `ovs-ofctl`, through the
//! REST API with `force=true`), counts the repair (`shardflow_pipeline_repairs_total`) and logs
//! it; `/readyz` is 200 again once the pipeline is back; the REST API refuses to delete owned
//! flows without `force=true`. Run with `--test-threads=2`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::pipeline::cookie::{self, Category};
use support::pipeline_env::{example_toml, PipelineEnv, DPID};
use support::{wait_until, Ovs};

/// The cookie of a `dump-flows` line (0 when it prints none).
fn cookie_of(line: &str) -> u64 {
    line.split("cookie=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

fn owned(cookie: u64) -> bool {
    matches!(cookie::category(cookie), Some(Category::Dispatch | Category::Pipeline))
}

/// The switch's dispatch and pipeline flows (`dump-flows --no-stats`, sorted).
fn owned_flows(ovs: &Ovs) -> Vec<String> {
    ovs.flows("br0").into_iter().filter(|l| owned(cookie_of(l))).map(|l| l.trim().to_string()).collect()
}

/// What the daemon keeps on the switch, printed as `dump-flows --no-stats` prints it, sorted.
fn expected(env: &PipelineEnv) -> Vec<String> {
    let mut v: Vec<String> = shardflow::daemon::desired_texts(&env.cfg, env.generation)
        .iter()
        .map(|t| FlowMod::parse(t, FlowModCommand::Add).unwrap().to_flow_text().trim().to_string())
        .collect();
    v.sort();
    v
}

fn repairs(env: &PipelineEnv, kind: &str) -> f64 {
    env.d.metric_sum("shardflow_pipeline_repairs_total", &[&format!("kind=\"{kind}\""), DPID])
}

/// Waits (10 s at most) until the owned flows equal `want`; returns how long it took.
fn wait_healed(env: &PipelineEnv, want: &[String], what: &str) -> Duration {
    let t0 = Instant::now();
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        last = owned_flows(&env.ovs);
        last == want
    });
    assert!(ok, "{what}: the pipeline did not come back:\nwant {want:#?}\nhave {last:#?}\n{}", env.d.stderr());
    t0.elapsed()
}

fn readyz_200(env: &PipelineEnv) {
    let mut last = (0, String::new());
    let ok = wait_until(Duration::from_secs(5), || {
        last = env.d.get("/readyz");
        last.0 == 200
    });
    assert!(ok, "/readyz not 200: {last:?}");
}

#[test]
fn pipeline_flows_deleted_or_changed_behind_the_daemons_back_are_put_back() {
    let env = PipelineEnv::start_with_config(&example_toml(), &[], false, &[]);
    let want = expected(&env);
    assert!(want.len() > 10, "{want:#?}");
    assert_eq!(owned_flows(&env.ovs), want);
    readyz_200(&env);
    assert_eq!(env.d.get("/readyz").1, "ready\n");
    assert_eq!(repairs(&env, "missing"), 0.0);

    // 1. A pipeline flow deleted by hand, by its exact cookie.
    let victim = want.iter().find(|l| cookie::category(cookie_of(l)) == Some(Category::Pipeline)).unwrap().clone();
    let c = format!("cookie={:#x}/-1", cookie_of(&victim));
    env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "del-flows", "br0", &c]);
    assert!(!owned_flows(&env.ovs).contains(&victim), "ovs-ofctl deleted {victim}");
    let took = wait_healed(&env, &want, "deleted by hand");
    eprintln!("FIGURE heal: a pipeline flow deleted by ovs-ofctl was back after {took:?} (audit every 500 ms)");
    assert!(wait_until(Duration::from_secs(5), || repairs(&env, "missing") >= 1.0), "repair not counted");
    readyz_200(&env);
    assert!(env.d.stderr().contains("pipeline repaired"), "the repair is logged");

    // 2. The dispatch flow of table 250 changed by hand (another controller's modify).
    let dispatch = want.iter().find(|l| cookie::category(cookie_of(l)) == Some(Category::Dispatch)).unwrap().clone();
    let c = format!("cookie={:#x}/-1", cookie_of(&dispatch));
    env.ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "mod-flows", "br0", &format!("{c},actions=drop")]);
    assert_ne!(owned_flows(&env.ovs), want, "mod-flows changed {dispatch}");
    wait_healed(&env, &want, "changed by hand");
    assert!(wait_until(Duration::from_secs(5), || repairs(&env, "changed") >= 1.0), "change not counted");

    // 3. REST without force refuses, and deletes nothing.
    let url = format!("/v1/switches/{DPID}/flows");
    let (st, body) = env.d.delete(&url);
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("force=true"), "{body}");
    let (st, body) = env.d.delete(&format!("{url}?cookie_mask=0xff"));
    assert_eq!(st, 400, "a mask without a cookie is not cookie 0: {body}");
    assert_eq!(owned_flows(&env.ovs), want);

    // 4. REST with force: every flow goes, the owned ones come back whole.
    let before = repairs(&env, "missing");
    let (st, body) = env.d.delete(&format!("{url}?force=true"));
    assert_eq!(st, 200, "{body}");
    let took = wait_healed(&env, &want, "deleted through REST with force=true");
    eprintln!("FIGURE heal: the whole pipeline ({} flows) deleted through REST was back after {took:?}", want.len());
    assert!(
        wait_until(Duration::from_secs(5), || repairs(&env, "missing") >= before + want.len() as f64),
        "every missing flow counted: {} -> {}",
        before,
        repairs(&env, "missing")
    );
    readyz_200(&env);

    // The audit's cost at this size, from its histogram (requests + comparison, this build).
    let sum = env.d.metric_sum("shardflow_pipeline_audit_seconds_sum", &[]);
    let count = env.d.metric_sum("shardflow_pipeline_audit_seconds_count", &[]);
    assert!(count >= 3.0, "audits ran: {count}");
    eprintln!(
        "FIGURE audit: {count} audits of {} owned flows, mean {:.3} ms each (two filtered flow-stats round trips + compare)",
        want.len(),
        sum / count * 1e3
    );
}

/// An intact pipeline is never "repaired": for the variants the daemon generates (IPv6 with the
/// ARP responder and paused first packets; ARP to the controller), the switch's flows compare
/// equal to what was sent, audit after audit (a normalization gap would repair forever).
#[test]
fn an_intact_pipeline_is_never_repaired() {
    let ipv6 = support::pipeline_env::pipeline_doc_block("toml ipv6");
    for (name, toml, mark) in [
        ("ipv6 + resume", ipv6.replacen("[pipeline]\n", "[pipeline]\nfirst_packet = \"resume\"\n", 1), ",pause)"),
        ("ipv6 + arp to the controller", ipv6.replace("arp = \"responder\"", "arp = \"controller\""), "arp,arp_op=1 "),
    ] {
        let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);
        let want = expected(&env);
        assert!(want.iter().any(|l| l.contains(mark)) && want.iter().any(|l| l.contains("ipv6")), "{name}: {want:#?}");
        assert_eq!(owned_flows(&env.ovs), want, "{name}");
        // At least four audits after the install.
        let ok = wait_until(Duration::from_secs(10), || {
            env.d.metric_sum("shardflow_pipeline_audit_seconds_count", &[]) >= 4.0
        });
        assert!(ok, "{name}: audits did not run");
        let all = env.d.metric_sum("shardflow_pipeline_repairs_total", &[]);
        assert_eq!(all, 0.0, "{name}: an intact pipeline was repaired:\n{}", env.d.stderr());
        assert_eq!(env.d.get("/readyz"), (200, "ready\n".to_string()), "{name}");
        assert!(!env.d.stderr().contains("pipeline repaired"), "{name}");
    }
}
