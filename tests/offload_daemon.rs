//! The offload report of a live switch: the daemon (`shardflow run` with docs/pipeline.md's
//! example) attached to a real Open vSwitch, a decided pod-to-pod connection and a learned return
//! flow on it, then `GET /v1/switches/{dpid}/offload` (JSON, both profiles, the errors), the
//! `shardflow_offloadable_flows_ratio{table}` gauge, and `shardflow offload report` through the
//! REST API.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use shardflow::offload::report::Report;
use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{example_toml, PipelineEnv, DPID};
use support::{http_request_as, test_token, wait_until};

const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const REMOTE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);
const NODE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

fn a() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2))
}
fn b() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, 1, 4))
}
fn remote() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10))
}

fn report(env: &PipelineEnv, query: &str) -> Report {
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/offload{query}"));
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn category<'a>(r: &'a Report, c: &str) -> &'a shardflow::offload::report::Share {
    &r.categories.iter().find(|x| x.category == c).unwrap_or_else(|| panic!("no {c} flows: {r:#?}")).share
}

fn table(r: &Report, t: u8) -> &shardflow::offload::report::Share {
    &r.tables.iter().find(|x| x.table == t).unwrap_or_else(|| panic!("no table {t}")).share
}

#[test]
fn offload_report_of_a_live_switch() {
    let env = PipelineEnv::start_with_config(&example_toml(), &[], false, &[]);
    // Pod A -> pod B: the shard decides, the connection's flows land in table 3; a TCP SYN from
    // the uplink to pod A learns its return flow in table 6.
    env.inject(2, &[build::tcp_syn(A_MAC, GW_MAC, a(), b(), 40000, 80)]);
    env.inject(1, &[build::tcp_syn(REMOTE_MAC, NODE_MAC, remote(), a(), 5555, 80)]);
    let mut flows: Vec<String> = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let (_, body) = env.d.get(&format!("/v1/switches/{DPID}/flows"));
        flows = serde_json::from_str(&body).unwrap_or_default();
        let has = |t: &str| flows.iter().any(|f| f.contains(t) && f.contains("priority=100,tcp"));
        has("table=3,") && has("table=6,")
    });
    assert!(ok, "no connection or learned flow:\n{}", flows.join("\n"));

    // tc-flower (the default): every installed flow judged, none unreadable.
    let r = report(&env, "?flows=all");
    assert_eq!(r.profile, "tc-flower");
    assert_eq!(r.unparsed_count, 0, "{:?}", r.unparsed);
    assert_eq!(r.flows.len(), flows.len(), "one verdict per flow of the switch");
    assert_eq!(r.total.flows, flows.len());
    let conn = category(&r, "connection");
    assert!(conn.flows >= 2 && conn.offloadable == conn.flows, "decided flows offload under tc: {conn:?}");
    let learned = category(&r, "learned");
    assert!(learned.flows >= 1 && learned.offloadable == learned.flows, "learned return flows: {learned:?}");
    // learn leaves no datapath action (its reads become exact matches): table 15 offloads.
    let t15 = table(&r, 15);
    assert_eq!((t15.flows, t15.offloadable), (4, 4), "{t15:?}");
    assert_eq!(table(&r, 250).ratio, 0.0, "the dispatch table is all controller()");
    assert!(r.total.offloadable > 0 && r.total.offloadable < r.total.flows);
    assert!(r.hints.iter().any(|h| h.starts_with("learn (table 15)")), "{:?}", r.hints);
    assert_eq!(r.ct_zones, vec![1], "the pod zone; the service zone only with a service connection");

    // The gauge follows the last report under the default profile.
    let metrics = env.d.get("/metrics").1;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("shardflow_offloadable_flows_ratio{table=\"3\"}"))
        .unwrap_or_else(|| panic!("no gauge for table 3:\n{metrics}"));
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let t3 = table(&r, 3);
    assert!(t3.flows >= 3, "the policy miss and the connection's flows: {t3:?}");
    assert!((v - t3.ratio).abs() < 1e-9, "{line} vs {}", t3.ratio);

    // connectx: the conntrack verdicts on +new, +rel and +inv stay in software; by default the
    // JSON lists only the blocked flows.
    let cx = report(&env, "?profile=connectx");
    assert_eq!(cx.profile, "connectx");
    assert!(cx.flows.iter().all(|f| !f.offloadable));
    let t2 = table(&cx, 2);
    for flag in ["+new", "+rel", "+inv"] {
        let want = format!("ct_state {flag} not matchable");
        assert!(t2.blocking.iter().any(|b| b.reason == want), "{want}: {t2:?}");
    }
    assert!(cx.total.offloadable < r.total.offloadable, "connectx is stricter");
    assert!(report(&env, "?flows=none").flows.is_empty());

    // Errors: an unknown profile (400, naming the built-in ones), a bad query, an unknown switch.
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/offload?profile=nope"));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("unknown profile") && body.contains("connectx"), "{body}");
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/offload?profile=/etc/passwd"));
    assert_eq!(st, 400, "no file is read on a caller's say-so: {body}");
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/offload?flows=some"));
    assert_eq!(st, 400, "{body}");
    let (st, body) = env.d.get(&format!("/v1/switches/{DPID}/offload?colour=red"));
    assert_eq!(st, 400, "{body}");
    let (st, body) = env.d.get("/v1/switches/00000000000000ff/offload");
    assert_eq!(st, 404, "{body}");
    let (st, _, body) =
        http_request_as(&env.d.http_addr(), "GET", &format!("/v1/switches/{DPID}/offload"), "", None).unwrap();
    assert_eq!(st, 401, "the report lists flows: it needs the token: {body}");
    let (st, _) = env.d.post(&format!("/v1/switches/{DPID}/offload"), "");
    assert_eq!(st, 405);

    // The CLI through the REST API: one switch, then every switch (the list comes from
    // /v1/switches).
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shardflow"))
            .args(["offload", "report", "--http", &env.d.http_addr()])
            .args(args)
            .env("SHARDFLOW_HTTP_TOKEN", test_token())
            .output()
            .unwrap()
    };
    let out = cli(&["--switch", DPID]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("switch {DPID}\nprofile tc-flower: ")), "{text}");
    assert!(text.contains(&format!("{} of {} flows offloadable", r.total.offloadable, r.total.flows)), "{text}");
    assert!(text.contains("table=250 priority=10 reg15=0 [dispatch]: controller is a slow-path action"), "{text}");
    let out = cli(&["--profile", "connectx"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("profile connectx: "), "{text}");
    assert!(text.contains("ct_state +new not matchable"), "{text}");
    let out = cli(&["--profile", "nope", "--switch", DPID]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile \"nope\""));
    let out = Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(["offload", "report", "--http", &env.d.http_addr(), "--switch", DPID])
        .env("SHARDFLOW_HTTP_TOKEN", "wrong-token-0123456789")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}
