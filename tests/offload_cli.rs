//! `shardflow offload check` and `shardflow offload report --config` as an operator runs them:
//! one line per flow, bad input named without costing the other flows, profiles by name or by
//! file, and the offline report of docs/pipeline.md's example.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use support::pipeline_env::pipeline_doc_block;
use support::shardflow;

/// A scratch directory for this test process, removed on drop (even when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("shardflow-offload-cli-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const FLOWS: [&str; 4] = [
    "table=5,priority=100,ip,nw_dst=10.244.1.2,actions=set_field:0a:58:0a:f4:01:02->eth_dst,output:2",
    "table=250,priority=10,reg15=0,actions=controller(id=1)",
    "table=2,priority=100,ct_state=+new-inv+trk,actions=goto_table:3",
    "ip,actions=learn(table=6,eth_type=0x800,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],output:NXM_OF_IN_PORT[]),note:01,controller",
];

#[test]
fn check_prints_one_line_per_flow() {
    let o = shardflow(&[&["offload", "check"][..], &FLOWS[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "offloadable\n\
         not offloadable: controller is a slow-path action\n\
         offloadable\n\
         not offloadable: controller is a slow-path action\n"
    );
    let o = shardflow(&[&["offload", "check", "--profile", "connectx"][..], &FLOWS[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().nth(2), Some("not offloadable: ct_state +new not matchable"));
    // --sources: each reason with the source its profile cites.
    let o =
        shardflow(&["offload", "check", "--profile", "connectx", "--sources", FLOWS[2], "arp,arp_op=1,actions=NORMAL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "not offloadable: ct_state +new not matchable");
    assert!(lines[1].starts_with("  ct_state +new not matchable: TC_CT mlx5_tc_ct_match_add()"), "{text}");
    assert_eq!(lines[2], "not offloadable: field arp_op not matchable");
    assert!(lines[3].contains("FLOW_DISSECTOR_KEY_ARP is not among the accepted keys"), "{text}");
}

#[test]
fn bad_input_is_named_and_costs_nothing_else() {
    // A bad flow: the others are still judged, the bad one is named on stderr, exit 65.
    let o = shardflow(&["offload", "check", FLOWS[0], "ip,actions=output:2,bogus", FLOWS[1]]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert_eq!(stdout(&o), "offloadable\nnot offloadable: controller is a slow-path action\n");
    assert!(stderr(&o).contains("flow 2: bad flow"), "{}", stderr(&o));
    // A flow OVS would refuse is refused here too (checked against its match as OVS does).
    let o = shardflow(&["offload", "check", "actions=mod_tp_dst:80"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(stderr(&o).contains("flow 1: bad flow"), "{}", stderr(&o));
    // An unknown profile: usage error (64), nothing printed on stdout.
    let o = shardflow(&["offload", "check", "--profile", "bluefield9", FLOWS[0]]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("unknown profile \"bluefield9\" (built in: tc-flower, connectx"), "{}", stderr(&o));
    // No flow at all: clap's usage error.
    let o = shardflow(&["offload", "check"]);
    assert!(!o.status.success());
}

#[test]
fn profiles_load_from_files() {
    let s = Scratch::new("profiles");
    // The shipped tc-flower profile with learn refused: the verdict follows the file.
    let text = include_str!("../src/offload/profiles/tc-flower.toml")
        .replace("[actions.learn]\nsupported = true", "[actions.learn]\nsupported = false\nclass = \"userspace_only\"");
    assert!(text.contains("[actions.learn]\nsupported = false"));
    let p = s.file("strict.toml", &text.replace("name = \"tc-flower\"", "name = \"strict\""));
    let o = shardflow(&["offload", "check", "--profile", &p, FLOWS[3]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "not offloadable: learn is userspace-only; controller is a slow-path action\n");
    // A profile with a typo is refused with the file and the key named.
    let p = s.file("typo.toml", &text.replace("[match.eth_src]", "[match.eth_scr]"));
    let o = shardflow(&["offload", "check", "--profile", &p, FLOWS[0]]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("typo.toml: [match.eth_scr]: unknown field"), "{}", stderr(&o));
    let p = s.file("broken.toml", "name = \"x\"\n[ct\n");
    let o = shardflow(&["offload", "check", "--profile", &p, FLOWS[0]]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("broken.toml"), "{}", stderr(&o));
    let missing = s.0.join("missing.toml").display().to_string();
    let o = shardflow(&["offload", "check", "--profile", &missing, FLOWS[0]]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("cannot read profile"), "{}", stderr(&o));
}

#[test]
fn report_of_the_example_configuration() {
    let s = Scratch::new("report");
    let cfg = s.file("pipeline.toml", &pipeline_doc_block("toml"));
    let o = shardflow(&["offload", "report", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // 39 pipeline and dispatch flows (docs/pipeline.md) and 5 decided connection flows.
    assert!(text.starts_with("profile tc-flower: 38 of 44 flows offloadable (86%)\n"), "{text}");
    assert!(text.contains("\n15     learn                     4            4   100%\n"), "{text}");
    assert!(text.contains("\nconnection       5            5   100%\n"), "{text}");
    assert!(text.contains("table=0 priority=90 ip,nw_dst=10.96.0.0/12 [pipeline]: continues into table 250 (controller is a slow-path action)"));
    let o = shardflow(&["offload", "report", "--config", &cfg, "--profile", "connectx", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v[0]["report"];
    assert_eq!(r["profile"], "connectx");
    assert!(r["total"]["offloadable"].as_u64().unwrap() < 38, "{r}");
    // A configuration without a pipeline has nothing to report on.
    let bare = s.file("bare.toml", "[shards]\ncount = 2\n");
    let o = shardflow(&["offload", "report", "--config", &bare]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no [pipeline] section"), "{}", stderr(&o));
}

/// The README's report is the CLI's output for docs/pipeline.md's example, as is.
#[test]
fn readme_report_is_the_cli_output() {
    let s = Scratch::new("readme");
    let cfg = s.file("pipeline.toml", &pipeline_doc_block("toml"));
    let o = shardflow(&["offload", "report", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let open = "```text offload-report\n";
    let start = readme.find(open).expect("README has the offload report block") + open.len();
    let end = readme[start..].find("```").unwrap() + start;
    assert_eq!(&readme[start..end], stdout(&o), "README.md's offload report is stale: paste the CLI's output");
}
