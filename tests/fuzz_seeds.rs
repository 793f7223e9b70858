//! The fuzz targets' properties (src/fuzzing.rs) over their seed corpus, in the ordinary suite:
//! every golden message and every truncation and single-byte corruption of it, every golden
//! flow text, and frames built by the packet builders.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use shardflow::fuzzing;
use shardflow::openflow::wire::from_hex;
use std::net::{IpAddr, Ipv4Addr};

use shardflow::packet::{build, MacAddr};

fn golden(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// The input itself, each truncation, and a few corruptions of every byte.
fn variants(seed: &[u8], mut f: impl FnMut(&[u8])) {
    f(seed);
    for n in 0..seed.len() {
        f(&seed[..n]);
    }
    let mut m = seed.to_vec();
    for i in 0..m.len() {
        let orig = m[i];
        for x in [0x00, 0xff, orig ^ 0x01, orig ^ 0x80] {
            m[i] = x;
            f(&m);
        }
        m[i] = orig;
    }
}

#[test]
fn openflow_decode_over_captured_messages() {
    let files = golden("tests/golden/messages", "hex");
    assert!(files.len() >= 20, "the captured corpus is missing");
    for p in files {
        let bytes = from_hex(&std::fs::read_to_string(&p).unwrap()).unwrap();
        variants(&bytes, fuzzing::openflow_decode);
    }
}

#[test]
fn flow_text_over_golden_flows() {
    let mut n = 0;
    let mut failures = Vec::new();
    for p in golden("tests/golden", "flows") {
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let line = line.split(" # ").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let text = line.to_string();
            if let Err(e) = std::panic::catch_unwind(|| fuzzing::flow_text(text.as_bytes())) {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                failures.push(format!("{}: {line}\n    {}", p.display(), msg.lines().next().unwrap_or("")));
            }
            n += 1;
        }
    }
    assert!(n >= 150, "only {n} golden flows");
    assert!(failures.is_empty(), "{} of {n} flows break the property:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn packet_parse_over_built_frames() {
    let mac_a = MacAddr([2, 0, 0, 0, 0, 1]);
    let mac_b = MacAddr([2, 0, 0, 0, 0, 2]);
    let v4a: Ipv4Addr = "10.0.0.1".parse().unwrap();
    let v4b: Ipv4Addr = "10.0.0.2".parse().unwrap();
    let v6a: IpAddr = "fd00::1".parse().unwrap();
    let v6b: IpAddr = "fd00::2".parse().unwrap();
    let frames = vec![
        build::tcp_syn(mac_a, mac_b, v4a.into(), v4b.into(), 1234, 80),
        build::udp(mac_a, mac_b, v6a, v6b, 5353, 53, b"q"),
        build::icmp_echo_request(mac_a, mac_b, v4a, v4b, 7, 1),
        build::arp_request(mac_a, v4a, v4b),
    ];
    // scripts/fuzz-seeds.sh asks for the frames as fuzzer seeds.
    let out_dir = std::env::var_os("SHARDFLOW_FUZZ_FRAMES");
    for (i, f) in frames.into_iter().enumerate() {
        let mut seed = 1u32.to_be_bytes().to_vec();
        seed.extend_from_slice(&f);
        if let Some(d) = &out_dir {
            std::fs::write(Path::new(d).join(format!("frame-{i}")), &seed).unwrap();
        }
        variants(&seed, fuzzing::packet_parse);
    }
}

/// Every finding the fuzzers ever saved (`fuzz/artifacts/<target>/`) must stay fixed: each is
/// replayed through its target's property.
#[test]
fn fuzz_findings_stay_fixed() {
    // Copied from fuzz/artifacts/<target>/ (the fuzzer's scratch output, not committed).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fuzz-findings");
    type Property = fn(&[u8]);
    let targets: [(&str, Property); 3] = [
        ("openflow_decode", fuzzing::openflow_decode),
        ("flow_text", fuzzing::flow_text),
        ("packet_parse", fuzzing::packet_parse),
    ];
    let mut replayed = 0;
    for (target, property) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else { continue };
        for entry in dir.filter_map(Result::ok) {
            let bytes = std::fs::read(entry.path()).unwrap();
            property(&bytes);
            replayed += 1;
        }
    }
    assert!(replayed >= 4, "the committed findings are missing from {}", root.display());
}
