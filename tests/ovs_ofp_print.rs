//! Our decoder against Open vSwitch's own ofp-print test corpus: the OpenFlow 1.3 messages of
//! OVS's `tests/ofp-print.at` (extracted by `scripts/extract-ofp-print-corpus.py` into
//! `tests/golden/ovs-ofp-print/corpus.txt`; written by OVS's authors, not by us). Each message goes
//! through `ovs-ofctl ofp-print` on this machine (the oracle: the .at file's expected text is
//! for another OVS version) and through our decoder, printed as `shardflow flow decode` prints it.
//! Where OVS refuses (a decode error), we must refuse with the same error; where it prints, we
//! must print the same text.
//!
//! Divergences not fixed yet are listed with their reason in
//! `tests/golden/ovs-ofp-print/known-divergences.txt` (by hex); the test fails on any other, and
//! also on a listed one that no longer diverges (so the list only shrinks). A listed refusal
//! divergence (one side refuses, the other prints) is marked `refusal` in the list.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use shardflow::openflow::message;
use shardflow::openflow::wire::from_hex;
use shardflow::oracle;

fn golden(file: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ovs-ofp-print").join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (title, hex) of each distinct message of a corpus file.
fn corpus(file: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut title = String::new();
    for line in golden(file).lines() {
        if let Some(t) = line.strip_prefix("# ") {
            title = t.to_string();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            // `vN HEX`: OVS's verbosity N; `flow decode` has one verbosity, so the default is compared.
            let hex = line.split_whitespace().last().unwrap().to_string();
            if !out.iter().any(|(_, h)| *h == hex) {
                out.push((title.clone(), hex));
            }
        }
    }
    out
}

/// hex -> reason, from the allow-list.
fn known() -> BTreeMap<String, String> {
    golden("known-divergences.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (hex, why) = l.split_once(' ').unwrap_or((l, ""));
            (hex.to_string(), why.trim().to_string())
        })
        .collect()
}

/// What `shardflow flow decode` prints for these bytes.
fn ours(bytes: &[u8]) -> String {
    message::ofp_to_string(bytes).trim_end().to_string()
}

fn refused(text: &str) -> bool {
    text.contains("***decode error")
}

#[test]
fn our_decoder_agrees_with_ovs_on_its_own_corpus() {
    let cases = corpus("corpus.txt");
    assert!(cases.len() >= 40, "corpus too small: {}", cases.len());
    agree_with_ovs(&cases);
}

/// The divergences issue 12 lists beyond OVS's corpus (set_field length, group id, bad band,
/// unknown vendor, flow monitor length, meter features, port name, zero packet-in...), on
/// messages OVS encoded with one field altered (`issue12-cases.txt`).
#[test]
fn our_decoder_agrees_with_ovs_on_the_issue_cases() {
    let cases = corpus("issue12-cases.txt");
    assert!(cases.len() >= 10, "{}", cases.len());
    agree_with_ovs(&cases);
}

fn agree_with_ovs(cases: &[(String, String)]) {
    assert!(oracle::available(), "ovs-ofctl is needed (install openvswitch-switch)");
    let known = known();
    let mut new = Vec::new();
    let mut fixed = Vec::new();
    let (mut agree, mut refusals) = (0, 0);
    for (title, hex) in cases {
        let bytes = from_hex(hex).unwrap();
        let ovs = match oracle::ofp_print(&bytes) {
            Ok(t) => t,
            Err(e) => format!("***decode error (ovs-ofctl failed): {e}***"),
        };
        let ours = ours(&bytes);
        if refused(&ovs) {
            refusals += 1;
        }
        match (ours == ovs, known.get(hex)) {
            (true, None) => agree += 1,
            (true, Some(_)) => fixed.push(format!("{title}: agrees now, remove it from known-divergences.txt")),
            (false, Some(_)) => {}
            (false, None) => {
                let kind = if refused(&ovs) != refused(&ours) { "REFUSAL" } else { "printing" };
                new.push(format!("{title} ({kind}):\n  {hex}\n  ovs:  {ovs}\n  ours: {ours}"))
            }
        }
    }
    println!(
        "{} OVS corpus messages: {agree} agree, {refusals} refused by OVS, {} known divergences",
        cases.len(),
        known.len()
    );
    assert!(new.is_empty() && fixed.is_empty(), "{}\n\n{}", new.join("\n\n"), fixed.join("\n"));
}
