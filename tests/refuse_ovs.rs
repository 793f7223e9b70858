//! Refuse what OVS refuses: every flow of `tests/golden/refuse-flows.txt` goes through our
//! encoder (`FlowMod::parse`, what the CLI, REST and the pipeline use) and through Open vSwitch,
//! and the verdicts must agree. OVS's verdict is what a switch would do with the flow:
//! `ovs-ofctl -O OpenFlow13 parse-flow` refuses it (its `ofpacts_check`, or "no usable protocol"
//! when only OpenFlow 1.0 could carry it), or OVS's decoder (`ofp-print` of the bytes
//! parse-flow made) refuses the FLOW_MOD (e.g. an action not allowed in an action set).
//! Where OVS names an error (`OFPBAC_MATCH_INCONSISTENT`), our reason must name the same one;
//! "no usable protocol" is OFPBAC_MATCH_INCONSISTENT for a switch speaking OpenFlow 1.3.
//!
//! The decoder is held to the same rule: for each flow we can build without the check
//! (`FlowMod::parse_unchecked`), our bytes go through OVS's decoder and ours, and both must
//! accept, or both refuse with the same error.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::message;
use shardflow::oracle;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// Refused, with the OpenFlow error name when one is given.
    Refuse(Option<String>),
}

/// The first `OFP...`/`NX...` error name in OVS's message.
fn error_name(msg: &str) -> Option<String> {
    msg.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| (w.starts_with("OFP") || w.starts_with("NX") || w.starts_with("ONF")) && w.contains('_'))
        .map(str::to_string)
}

/// OVS's decoder on some bytes: `Refuse(name)` when ofp-print reports a decode error.
fn ovs_decode(bytes: &[u8]) -> Verdict {
    match oracle::ofp_print(bytes) {
        Err(e) => Verdict::Refuse(error_name(&e)),
        Ok(text) => match text.split("***decode error: ").nth(1) {
            Some(rest) => Verdict::Refuse(rest.split("***").next().map(str::to_string)),
            None => Verdict::Accept,
        },
    }
}

fn ovs_verdict(flow: &str) -> Verdict {
    match oracle::parse_flow(flow) {
        Err(e) if e.contains("no usable protocol") => Verdict::Refuse(Some("OFPBAC_MATCH_INCONSISTENT".into())),
        Err(e) => Verdict::Refuse(error_name(&e)),
        Ok(o) => ovs_decode(&o.bytes),
    }
}

/// Problems with one flow (empty when our verdicts agree with OVS's).
fn check(flow: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let ovs = ovs_verdict(flow);
    let ours = FlowMod::parse(flow, FlowModCommand::Add);
    match (&ovs, &ours) {
        (Verdict::Accept, Ok(_)) | (Verdict::Refuse(None), Err(_)) => {}
        (Verdict::Refuse(Some(name)), Err(e)) => {
            if !e.to_string().contains(name.as_str()) {
                problems.push(format!("both refuse, but OVS says {name} and we say: {e}"));
            }
        }
        (Verdict::Accept, Err(e)) => problems.push(format!("OVS accepts it, we refuse: {e}")),
        (Verdict::Refuse(n), Ok(_)) => problems.push(format!("OVS refuses it ({n:?}), we accept it")),
    }
    // The decoders, on the bytes of the flow built without the check.
    if let Ok(fm) = FlowMod::parse_unchecked(flow, FlowModCommand::Add) {
        let bytes = fm.encode(1);
        let ovs = ovs_decode(&bytes);
        let ours = message::decode(&bytes);
        match (&ovs, &ours) {
            (Verdict::Accept, Ok(_)) | (Verdict::Refuse(None), Err(_)) => {}
            (Verdict::Refuse(Some(name)), Err(e)) => {
                if e.code.name() != Some(name.as_str()) {
                    problems.push(format!("decode: both refuse, OVS with {name}, we with {e}"));
                }
            }
            (Verdict::Accept, Err(e)) => problems.push(format!("decode: OVS accepts the bytes, we refuse: {e}")),
            (Verdict::Refuse(n), Ok(_)) => problems.push(format!("decode: OVS refuses the bytes ({n:?}), we accept")),
        }
    }
    problems
}

#[test]
fn we_refuse_what_ovs_refuses() {
    assert!(oracle::available(), "ovs-ofctl is needed (install openvswitch-switch)");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/refuse-flows.txt");
    let content = std::fs::read_to_string(&path).unwrap();
    let flows: Vec<(usize, &str)> = content
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4);
    let chunk = flows.len().div_ceil(workers);
    let results: Vec<(usize, &str, Verdict, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = flows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || part.iter().map(|(n, f)| (*n, *f, ovs_verdict(f), check(f))).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let refused = results.iter().filter(|r| r.2 != Verdict::Accept).count();
    // The table must exercise both sides, or it proves nothing.
    assert!(refused >= 40 && results.len() - refused >= 40, "{refused} refused of {}", results.len());
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.3.is_empty())
        .map(|(n, f, _, p)| format!("refuse-flows.txt:{n}: {f}\n    {}", p.join("\n    ")))
        .collect();
    println!("{} flows, {refused} refused by OVS, {} disagreements", results.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} flows disagree with OVS:\n\n{}\n",
        failures.len(),
        results.len(),
        failures.join("\n\n")
    );
}
