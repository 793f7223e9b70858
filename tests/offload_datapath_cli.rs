//! `shardflow offload datapath`: dpctl/dump-flows text on stdin (the capture of
//! tests/golden/dpctl/, made by tests/dpctl_ovs.rs from a real OVS running the default
//! pipeline), one verdict line per datapath flow.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::repo;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(["offload", "datapath"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    // Written from a thread: a large input must not dead-lock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn capture() -> String {
    std::fs::read_to_string(repo().join("tests/golden/dpctl/pipeline-dump-flows-m.txt")).unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

#[test]
fn capture_under_the_default_profile() {
    let text = capture();
    let o = run(&[], &text);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = lines(&o);
    let flows = text.lines().filter(|l| !l.starts_with("flow-dump")).count();
    assert_eq!(out.len(), flows, "one line per datapath flow:\n{}", out.join("\n"));
    for l in &out {
        assert!(l.starts_with("offloadable | ") || l.starts_with("not offloadable: "), "{l}");
        assert!(l.contains(" | type=ovs | "), "{l}");
        assert!(l.contains(" actions:"), "the short form ends with the actions: {l}");
        assert!(!l.contains("skb_priority(0/0)"), "wildcarded keys are left out of the short form: {l}");
    }
    let blocked: Vec<&String> = out.iter().filter(|l| l.starts_with("not ")).collect();
    assert_eq!(blocked.len(), 2, "{blocked:#?}");
    assert!(blocked.iter().any(|l| l.starts_with(
        "not offloadable: userspace is a slow-path action | type=ovs | recirc_id(0),in_port(br0-p2),packet_type(ns=0,id=0),eth(src=0a:58:0a:f4:01:02,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),arp("
    )));
    assert!(blocked.iter().any(|l| l.starts_with("not offloadable: controller is a slow-path action | type=ovs | ")));
    assert!(err.contains("12 datapath flows (0 offloaded), 12 shown: 10 offloadable under tc-flower, 2 not"), "{err}");
}

#[test]
fn capture_under_the_connectx_profile() {
    let o = run(&["--profile", "connectx"], &capture());
    assert!(o.status.success());
    let out = lines(&o);
    assert!(
        out.iter()
            .any(|l| l.starts_with("not offloadable: ct_state +new not matchable | type=ovs | ct_state(0x21/0x37),")),
        "{out:#?}"
    );
    assert!(out.iter().any(|l| l.starts_with("not offloadable: field arp_spa not matchable; ")), "{out:#?}");
}

#[test]
fn offloaded_flows_and_a_bad_line() {
    let text = "\
flow-dump from the main thread:
ufid:00000000-0000-0000-0000-000000000001, recirc_id(0),in_port(p1),eth(),eth_type(0x0800),ipv4(frag=no), packets:1, bytes:106, used:0.100s, offloaded:yes, dp:tc, actions:p2
recirc_id(0),in_port(p1),eth_type(0x0800),ipv4(frag=no, packets:1, bytes:106, used:never, actions:p2
ufid:00000000-0000-0000-0000-000000000002, recirc_id(0),in_port(p2),eth(),eth_type(0x0806), packets:1, bytes:60, used:0.100s, dp:tc, actions:userspace(pid=0,slow_path(action))
";
    let o = run(&[], text);
    assert_eq!(o.status.code(), Some(65), "a bad line is a data error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shardflow: line 3, column 101: '(' opened at column 47 is not closed"), "{err}");
    let out = lines(&o);
    assert_eq!(
        out,
        [
            "offloadable | type=offloaded | recirc_id(0),in_port(p1),eth(),eth_type(0x0800),ipv4(frag=no) actions:p2",
            "not offloadable: userspace is a slow-path action | type=tc | recirc_id(0),in_port(p2),eth(),eth_type(0x0806) actions:userspace(pid=0,slow_path(action))",
        ]
    );
    let o = run(&["--not-offloaded"], text);
    assert_eq!(lines(&o).len(), 1, "the flow in hardware is left out");
}

#[test]
fn unknown_profile_is_a_usage_error() {
    let o = run(&["--profile", "no-such-nic"], "");
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-nic"));
}
