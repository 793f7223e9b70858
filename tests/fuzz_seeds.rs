//! The fuzz targets' properties (src/fuzzing.rs) over their seed corpus, in the ordinary suite:
//! every golden message and every truncation and single-byte corruption of it, every golden
//! flow text, frames built by the packet builders, OVS byte streams through the session under
//! several schedules, policy files and REST requests, dpctl/dump-flows captures.
//!
//! With `SHARDFLOW_FUZZ_CORPUS=DIR` the seeds are also written to `DIR/<target>/` (what
//! `scripts/fuzz-seeds.sh` does to start the fuzzers from them).
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
    for (i, f) in frames.into_iter().enumerate() {
        let mut seed = 1u32.to_be_bytes().to_vec();
        seed.extend_from_slice(&f);
        save_seed("packet_parse", &format!("frame-{i}"), &seed);
        variants(&seed, fuzzing::packet_parse);
    }
}

#[test]
fn dpctl_text_over_captured_dumps() {
    let files = golden("tests/golden/dpctl", "txt");
    assert!(files.len() >= 3, "the dpctl captures are missing");
    let mut n = 0;
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        save_seed("dpctl_text", &name, text.as_bytes());
        fuzzing::dpctl_text(text.as_bytes());
        // Each line, its truncations and corruptions (every 10th line of OVS's test suite).
        let step = if name.starts_with("ovs-testsuite") { 10 } else { 1 };
        for line in text.lines().step_by(step) {
            variants(line.as_bytes(), fuzzing::dpctl_text);
            n += 1;
        }
    }
    assert!(n >= 30, "{n}");
}

/// Writes a seed to `$SHARDFLOW_FUZZ_CORPUS/<target>/<name>` when scripts/fuzz-seeds.sh asks.
fn save_seed(target: &str, name: &str, bytes: &[u8]) {
    if let Some(root) = std::env::var_os("SHARDFLOW_FUZZ_CORPUS") {
        let dir = Path::new(&root).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn golden_message(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/messages").join(format!("{name}.hex"));
    from_hex(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn with_xid(mut m: Vec<u8>, xid: u32) -> Vec<u8> {
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m
}

/// OVS's side of a connection: HELLO, FEATURES_REPLY and PORT_DESC reply with the xids the
/// session uses (FEATURES_REQUEST is xid 2; the port description comes after SET_CONFIG, and
/// after SET_CONTROLLER_ID when the schedule's low bit asks for a controller id), then traffic.
fn ovs_stream(controller_id: bool, traffic: &[&str]) -> Vec<u8> {
    let mut s = golden_message("hello");
    s.extend(with_xid(golden_message("features_reply"), 2));
    s.extend(with_xid(golden_message("port_desc_reply"), if controller_id { 5 } else { 4 }));
    for name in traffic {
        s.extend(golden_message(name));
    }
    s
}

#[test]
fn session_over_ovs_streams() {
    let traffic = [
        "packet_in",
        "packet_in2",
        "port_status",
        "flow_removed",
        "echo_reply",
        "barrier_reply",
        "error_bad_type",
        "flow_stats_reply",
        "packet_in",
    ];
    let mut streams = vec![
        ("handshake", ovs_stream(false, &[])),
        ("traffic", ovs_stream(false, &traffic)),
        ("traffic-ctlid", ovs_stream(true, &traffic)),
        ("no-hello", golden_message("packet_in")),
        ("hello-only", golden_message("hello")),
    ];
    // A stream that breaks framing after the handshake (length 4 < header).
    let mut bad = ovs_stream(false, &["packet_in"]);
    bad.extend_from_slice(&[4, 10, 0, 4, 0, 0, 0, 9]);
    streams.push(("bad-length", bad));
    let mut n = 0;
    let mut deep = 0;
    for (name, stream) in &streams {
        // Schedules: even seeds run without a controller id, odd ones with (see ovs_stream).
        for seed in 0u64..16 {
            if (seed & 1 == 1) != name.ends_with("ctlid") && name.starts_with("traffic") {
                continue;
            }
            let mut input = seed.to_be_bytes().to_vec();
            input.extend_from_slice(stream);
            if seed < 2 {
                save_seed("session", &format!("{name}-{seed}"), &input);
            }
            let reach = fuzzing::session_run(&input);
            if name.starts_with("traffic") && reach.ready && reach.packet_ins > 0 {
                deep += 1;
            }
            n += 1;
        }
    }
    // Truncations and corruptions of the full handshake-and-traffic stream under one schedule.
    let mut input = 0u64.to_be_bytes().to_vec();
    input.extend_from_slice(&streams[1].1);
    variants(&input, fuzzing::session);
    assert!(n >= 60, "only {n} session runs");
    // The traffic streams under most schedules get through the handshake to packet-ins (some
    // schedules close or time out first): the property sees the Ready state, not just HELLO.
    assert!(deep >= 8, "only {deep} of 16 traffic runs reached Ready and a packet-in");
}

/// Policy files: the documented example, each family and protocol, services and endpoints, and
/// texts the parser must refuse.
const POLICIES: &[&str] = &[
    r#"version = 3
default = "deny"
ttl_ms = 30000
[[rule]]
action = "deny"
src = "10.244.1.66"
dst = "10.244.0.0/16"
[[rule]]
action = "allow"
src = "10.244.0.0/16"
dst = "10.244.2.0/24"
protocol = "tcp"
ports = "8000-8080"
[[rule]]
action = "allow"
src = "fd00::/64"
dst = "any"
[[service]]
vip = "10.96.0.10"
port = 53
protocol = "udp"
endpoints = [
  { ip = "10.244.1.2", port = 5353, weight = 1 },
  { ip = "10.244.2.2", port = 5353, weight = 2 },
]
[[endpoint]]
ip = "10.244.1.2"
mac = "0a:58:0a:f4:01:02"
port = 5
"#,
    "",
    r#"default = "allow"
[[rule]]
action = "deny"
protocol = "udp"
ports = 53
"#,
    r#"[[rule]]
action = "deny"
src = "0.0.0.0/0"
dst = "::/0"
protocol = "icmp"
"#,
    r#"[[rule]]
action = "allow"
src = "*"
dst = "10.0.0.0/8"
protocol = "sctp"
ports = "0-65535"
"#,
    r#"[[service]]
vip = "fd00::10"
port = 80
endpoints = [{ ip = "fd00::2" }]
"#,
    r#"[[rule]]
action = "allow"
src = "10.0.0.1/8"
"#,
    r#"[[rule]]
action = "allow"
ports = 80
"#,
    "ttl_ms = 0\n",
    r#"[[endpoint]]
ip = "10.0.0.1"
mac = "zz"
port = 0
"#,
    r#"default = "maybe""#,
    r#"[[rule]]
action = "deny"
protocol = "tcp"
ports = "9-8"
"#,
];

#[test]
fn policy_file_over_examples() {
    let mut parsed = 0;
    for (i, text) in POLICIES.iter().enumerate() {
        save_seed("policy_file", &format!("policy-{i}"), text.as_bytes());
        if shardflow::policy::file::PolicyFile::parse(text).is_ok() {
            parsed += 1;
        }
        fuzzing::policy_file(text.as_bytes());
        // Every line dropped in turn: half-written files.
        let lines: Vec<&str> = text.lines().collect();
        for skip in 0..lines.len() {
            let t: Vec<&str> = lines.iter().enumerate().filter(|(j, _)| *j != skip).map(|(_, l)| *l).collect();
            fuzzing::policy_file(t.join("\n").as_bytes());
        }
    }
    assert!(parsed >= 6, "only {parsed} example policies parse: the examples went stale");
}

/// REST requests in the target's input form: method byte, flags byte (bit 0: not ready,
/// bit 1: body too large, bits 2-3: the right token, none, a wrong one, another scheme), URL,
/// newline, body.
fn rest_input(method: u8, flags: u8, url: &str, body: &str) -> Vec<u8> {
    let mut v = vec![method, flags];
    v.extend_from_slice(url.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body.as_bytes());
    v
}

#[test]
fn rest_over_routes() {
    const GET: u8 = 0;
    const POST: u8 = 1;
    const DELETE: u8 = 2;
    const PUT: u8 = 3;
    let requests = [
        (GET, "/healthz", ""),
        (POST, "/healthz", ""),
        (GET, "/metrics", ""),
        (GET, "/v1/switches", ""),
        (GET, "/v1/shards", ""),
        (GET, "/v1/tracker", ""),
        (GET, "/v1/switches/1/flows", ""),
        (GET, "/v1/switches/0x0000000000000001/flows?x=1", ""),
        (POST, "/v1/switches/1/flows", "table=3,priority=100,tcp,actions=drop\n# note\n"),
        (POST, "/v1/switches/2/flows?bundle=true", "priority=1,actions=drop\npriority=2,ip,actions=drop"),
        (POST, "/v1/switches/3/flows?command=modify_strict", "priority=1,actions=drop"),
        (POST, "/v1/switches/1/flows", "not a flow"),
        (DELETE, "/v1/switches/1/flows?cookie=0x5&table=3", ""),
        (DELETE, "/v1/switches/4/flows?cookie_mask=0xff", ""),
        (DELETE, "/v1/switches/1/flows?table=255", ""),
        (PUT, "/v1/switches/1/flows", ""),
        (GET, "/v1/switches/zz/flows", ""),
        (POST, "/v1/switches/1/groups", "group_id=1,type=all,bucket=output:1"),
        (POST, "/v1/switches/1/groups?command=delete", ""),
        (GET, "/v1/switches/5/groups", ""),
        (POST, "/v1/switches/1/meters", "meter=1,pktps,band=type=drop,rate=10"),
        (GET, "/v1/switches/9/meters", ""),
        (POST, "/v1/invalidate?ip=10.0.0.1&below_version=3", ""),
        (POST, "/v1/invalidate?all=true", ""),
        (POST, "/v1/invalidate", ""),
        (GET, "/nope", ""),
    ];
    for (i, (method, url, body)) in requests.iter().enumerate() {
        // Bits 2-3 cover the Authorization header: every route without the right token too.
        for flags in 0..16u8 {
            let input = rest_input(*method, flags, url, body);
            if flags == 0 {
                save_seed("rest", &format!("req-{i}"), &input);
            }
            fuzzing::rest(&input);
        }
    }
    // Truncations and corruptions of a flow post.
    variants(
        &rest_input(POST, 0, "/v1/switches/1/flows?bundle=1", "table=3,priority=100,tcp,actions=drop"),
        fuzzing::rest,
    );
}

/// Every finding the fuzzers ever saved (`fuzz/artifacts/<target>/`) must stay fixed: each is
/// replayed through its target's property.
#[test]
fn fuzz_findings_stay_fixed() {
    // Copied from fuzz/artifacts/<target>/ (the fuzzer's scratch output, not committed).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fuzz-findings");
    type Property = fn(&[u8]);
    let targets: [(&str, Property); 7] = [
        ("openflow_decode", fuzzing::openflow_decode),
        ("flow_text", fuzzing::flow_text),
        ("packet_parse", fuzzing::packet_parse),
        ("session", fuzzing::session),
        ("policy_file", fuzzing::policy_file),
        ("rest", fuzzing::rest),
        ("dpctl_text", fuzzing::dpctl_text),
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
