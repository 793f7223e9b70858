//! Golden flows: every line of `tests/golden/*.flows` is checked against Open vSwitch itself.
//!
//! For each flow text, `ovs-ofctl -O OpenFlow13 -mmmmm parse-flow` gives OVS's FLOW_MOD bytes
//! and its `ofp-print` line. We require:
//! 1. our `FlowMod::parse(text, Add)?.encode(xid)` equals OVS's bytes (xid taken from OVS's);
//! 2. our `FlowMod::decode_body` of OVS's bytes re-encodes to the same bytes;
//! 3. our `ofp_print_body()` of the decoded flow_mod, with OVS's prefix, equals OVS's line;
//! 4. our `to_flow_text()` parsed by OVS again gives the same bytes.
//!
//! All failures are collected and reported together, with the first differing byte.
//!
//! A line may end in a comment ` # ...`; when the comment contains `lossy-text`, check 4 is
//! skipped: OVS's own printed text of that flow does not read back to the same bytes
//! (e.g. `tcp_flags=0x2/0xfff` prints as `tcp_flags=syn`, an exact match).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::wire::Reader;
use shardflow::openflow::ErrorCode;
use shardflow::oracle;
use support::golden::{byte_diff, same_ignoring_xid};

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flows"))
        .collect();
    files.sort();
    files
}

/// Checks one flow; returns the problems found (empty when all is well).
fn check(text: &str, lossy_text: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let ovs = match oracle::parse_flow(text) {
        Ok(o) => o,
        Err(e) => return vec![format!("OVS refuses it: {e}")],
    };
    if ovs.bytes.len() < 8 {
        return vec![format!("OVS gave no bytes: {:?}", ovs.text)];
    }
    let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);

    // 1. Our encoder from the text.
    let ours = match FlowMod::parse(text, FlowModCommand::Add) {
        Ok(fm) => Some(fm),
        Err(e) => {
            problems.push(format!("we refuse it: {e}"));
            None
        }
    };
    if let Some(fm) = &ours {
        let bytes = fm.encode(xid);
        if bytes != ovs.bytes {
            problems.push(format!("encode(parse(text)) differs: {}", byte_diff(&bytes, &ovs.bytes)));
        }
    }

    // 2. and 3. Our decoder on OVS's bytes.
    let mut r = Reader::new(&ovs.bytes[8..], "flow_mod", ErrorCode::BAD_REQUEST_BAD_LEN);
    match FlowMod::decode_body(&mut r) {
        Err(e) => problems.push(format!("we cannot decode OVS's bytes: {e}")),
        Ok(fm) => {
            let again = fm.encode(xid);
            if again != ovs.bytes {
                problems.push(format!("decode -> encode differs: {}", byte_diff(&again, &ovs.bytes)));
            }
            let printed = format!("OFPT_FLOW_MOD (OF1.3) (xid={xid:#x}): {}", fm.ofp_print_body());
            if printed != ovs.text {
                problems.push(format!("ofp-print differs:\n      ours: {printed}\n      ovs:  {}", ovs.text));
            }
            if let Some(parsed) = &ours {
                let header = |f: &FlowMod| FlowMod { instructions: Vec::new(), ..f.clone() };
                if header(parsed) != header(&fm) {
                    problems.push(format!(
                        "parse(text) and decode(OVS bytes) differ outside the instructions:\n      parsed:  {:?}\n      decoded: {:?}",
                        header(parsed),
                        header(&fm)
                    ));
                }
            }
            // 4. Our dump-flows text, read back by OVS.
            let flow_text = fm.to_flow_text();
            match oracle::parse_flow(&flow_text) {
                _ if lossy_text => {}
                Err(e) => problems.push(format!("OVS refuses our to_flow_text {flow_text:?}: {e}")),
                Ok(back) => {
                    if !same_ignoring_xid(&back.bytes, &ovs.bytes) {
                        problems.push(format!(
                            "to_flow_text {flow_text:?} reads back differently: {}",
                            byte_diff(&back.bytes, &ovs.bytes)
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn golden_flows_match_ovs() {
    assert!(oracle::available(), "ovs-ofctl is needed for the golden flows (install openvswitch-switch)");
    let mut flows: Vec<(String, usize, String, bool)> = Vec::new();
    for file in golden_files() {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let content = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, line) in content.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (flow, comment) = match line.find(" #") {
                Some(at) => (line[..at].trim(), &line[at..]),
                None => (line, ""),
            };
            flows.push((name.clone(), i + 1, flow.to_string(), comment.contains("lossy-text")));
        }
    }
    assert!(!flows.is_empty(), "no golden flows found");

    // Each check runs ovs-ofctl twice; spread them over a few threads.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4);
    let chunk = flows.len().div_ceil(workers);
    let mut failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = flows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(file, line, text, lossy)| {
                            let p = check(text, *lossy);
                            (!p.is_empty()).then(|| format!("{file}:{line}: {text}\n    {}", p.join("\n    ")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec!["a worker panicked".into()])).collect()
    });
    failures.sort();
    println!("golden flows: {} checked, {} failed", flows.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} golden flows differ from OVS:\n\n{}\n",
        failures.len(),
        flows.len(),
        failures.join("\n\n")
    );
}
