//! The datapath view against a real Open vSwitch 3.1 (userspace datapath, dummy ports): the
//! daemon installs docs/pipeline.md's default pipeline on a private OVS, traffic goes through
//! it (ARP to the gateway, pod-to-pod TCP with the handshake and data, UDP, a service
//! connection DNATed in zone 2, a connection from the uplink learning its return flow), then
//! `ovs-appctl dpctl/dump-flows -m` is parsed line by line: every line parses and prints back
//! as OVS printed it, and what the pipeline must have put in the datapath is there (conntrack
//! with its zone, recirculation and the flows of the pass it starts, NAT, masks, ports, the
//! controller's userspace action).
//!
//! With `DPCTL_CAPTURE_DIR=DIR` the dumps are written to DIR (how
//! tests/golden/dpctl/pipeline-*.txt were made).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use shardflow::offload::datapath::{self, DpActionKind, DpFlow};
use shardflow::offload::requirement::{ActionReq, CtReq, MaskKind, MatchField, NatKind};
use shardflow::offload::Profile;
use shardflow::packet::{build, MacAddr};
use support::pipeline_env::{example_toml, PipelineEnv};
use support::wait_until;

const UPLINK: u32 = 1;
const POD_A: u32 = 2;
const POD_B: u32 = 4;
const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]);
const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const REMOTE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);
const NODE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);

/// Everything allowed; 10.96.0.10:80/tcp -> pod A:8080.
const POLICY: &str = r#"
default = "allow"

[[service]]
vip = "10.96.0.10"
port = 80
protocol = "tcp"
endpoints = [ { ip = "10.244.1.2", port = 8080, weight = 1 } ]
"#;

fn ip(a: Ipv4Addr) -> IpAddr {
    a.into()
}

/// A temporary folder for the policy file, removed on drop.
struct Tmp(std::path::PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Injects `frame` on `port` and waits (5 s) for one more frame to leave `out`.
fn deliver(env: &PipelineEnv, port: u32, frame: Vec<u8>, out: u32, what: &str) {
    let before = env.count(out);
    env.inject(port, &[frame]);
    let got = env.wait_count(out, before + 1, Duration::from_secs(5));
    assert!(got > before, "{what}: nothing left port {out}\n{}", env.d.stderr());
}

fn dump(env: &PipelineEnv, args: &[&str]) -> String {
    let mut a = vec!["dpctl/dump-flows"];
    a.extend_from_slice(args);
    env.ovs.ok("ovs-appctl", &a)
}

fn capture(name: &str, text: &str) {
    if let Ok(dir) = std::env::var("DPCTL_CAPTURE_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), text).unwrap();
    }
}

fn drive_traffic(env: &PipelineEnv) {
    let (a, b, r, vip) = (ip(A), ip(B), ip(REMOTE), ip(VIP));
    // First the packets that change the OpenFlow tables (policy decisions add connection
    // flows, the uplink's first packet learns its return flow): each change makes OVS
    // revalidate, and a datapath flow whose mask no longer fits is deleted. The established
    // traffic after them then leaves the flows a dump should show.
    // ARP for the gateway from pod A: answered by table 20's responder, out of the in port.
    deliver(env, POD_A, build::arp_request(A_MAC, A, GW), POD_A, "ARP reply");
    // Pod B -> pod A tcp/80 and udp/53: the first packets go to the controller.
    deliver(env, POD_B, build::tcp_syn(B_MAC, GW_MAC, b, a, 40000, 80), POD_A, "SYN");
    deliver(env, POD_B, build::udp(B_MAC, GW_MAC, b, a, 5353, 53, b"q"), POD_A, "UDP query");
    // Pod B -> the service VIP: DNAT to pod A:8080 in zone 2.
    deliver(env, POD_B, build::tcp_syn(B_MAC, GW_MAC, b, vip, 40443, 80), POD_A, "SYN to the VIP");
    // The uplink: a remote client to pod A learns its return flow (table 15 -> table 6).
    deliver(env, UPLINK, build::tcp_syn(REMOTE_MAC, NODE_MAC, r, a, 50000, 80), POD_A, "uplink SYN");

    // The rest of each connection stays in the switch (ct zones, recirculation, table 5's
    // rewrite, the learned flow).
    deliver(env, POD_A, build::tcp_syn_ack(A_MAC, GW_MAC, a, b, 80, 40000), POD_B, "SYN-ACK");
    deliver(env, POD_A, build::tcp_syn_ack(A_MAC, GW_MAC, a, b, 8080, 40443), POD_B, "SYN-ACK from the endpoint");
    for i in 0..3u32 {
        let seq = 1001 + i * 4;
        deliver(env, POD_B, build::tcp(B_MAC, GW_MAC, b, a, 40000, 80, 0x18, seq, 5001, b"data"), POD_A, "data");
        deliver(env, POD_A, build::tcp_ack(A_MAC, GW_MAC, a, b, 80, 40000), POD_B, "ACK");
        deliver(env, POD_B, build::udp(B_MAC, GW_MAC, b, a, 5353, 53, b"q"), POD_A, "UDP query");
        deliver(env, POD_A, build::udp(A_MAC, GW_MAC, a, b, 53, 5353, b"r"), POD_B, "UDP answer");
        let data = build::tcp(B_MAC, GW_MAC, b, vip, 40443, 80, 0x18, seq, 5001, b"data");
        deliver(env, POD_B, data, POD_A, "data to the VIP");
        deliver(env, POD_A, build::tcp_ack(A_MAC, GW_MAC, a, b, 8080, 40443), POD_B, "ACK from the endpoint");
        deliver(env, POD_A, build::tcp_ack(A_MAC, GW_MAC, a, r, 80, 50000), UPLINK, "reply to the uplink");
        deliver(env, UPLINK, build::tcp_ack(REMOTE_MAC, NODE_MAC, r, a, 50000, 80), POD_A, "uplink ACK");
    }
    // ARP again: its slow-pathed datapath flow counts no packets, so it is not kept alive by
    // use; this one is fresh for the dump.
    deliver(env, POD_A, build::arp_request(A_MAC, A, GW), POD_A, "ARP reply");
    // A frame the classifier does not know (EtherType 0x88b5, local experimental) from the
    // uplink: table 0's miss, `meter:3` and a packet-in; the daemon installs nothing for it.
    let mut odd = Vec::with_capacity(60);
    odd.extend_from_slice(&NODE_MAC.0);
    odd.extend_from_slice(&REMOTE_MAC.0);
    odd.extend_from_slice(&[0x88, 0xb5]);
    odd.resize(60, 0x5a);
    env.inject(UPLINK, &[odd.clone(), odd]);
}

fn has_match(f: &DpFlow, field: MatchField) -> bool {
    datapath::lower(f).has_match(field)
}

#[test]
fn real_dump_flows_parse_and_hold_the_pipeline() {
    let dir = std::env::temp_dir().join(format!("shardflow-dpctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = Tmp(dir);
    let policy = tmp.0.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let toml = format!("{}\n[policy]\nsource = \"file\"\nfile = {:?}\n", example_toml(), policy.display().to_string());
    let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);
    drive_traffic(&env);

    // The datapath flows are installed by the upcall that handled each packet; wait until the
    // established TCP flows have counted packets (the dump is then complete for this traffic).
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(5), || {
        text = dump(&env, &["-m"]);
        datapath::parse_dump(&text).is_ok_and(|fs| {
            fs.iter().any(|f| f.stats.packets > 0 && f.actions.iter().any(|a| a.name == "set"))
                && fs.iter().any(|f| f.stats.packets > 0 && f.actions.iter().any(|a| a.arg("controller").is_some()))
        })
    });
    assert!(ok, "no established flow with packets in the datapath:\n{text}");
    capture("pipeline-dump-flows-m.txt", &text);

    let flows = datapath::parse_dump(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("flow-dump from")).collect();
    assert_eq!(flows.len(), lines.len(), "one flow per line");
    assert!(flows.len() >= 10, "the traffic above makes at least 10 datapath flows: {}", flows.len());
    for (f, l) in flows.iter().zip(&lines) {
        assert_eq!(f.to_string(), *l, "parsed and printed back as OVS printed it");
        assert!(f.ufid.is_some(), "-m prints the ufid: {l}");
        assert_eq!(f.dp.as_deref(), Some("ovs"), "{l}");
        assert_eq!(f.flow_type(), "ovs", "nothing is offloaded on dummy ports: {l}");
        assert!(f.key("in_port").is_some() && f.key("recirc_id").is_some(), "{l}");
    }

    // Conntrack in the pod zone (1) and the service zone (2, with NAT), each followed by a
    // recirculation whose pass has flows of its own matching on the conntrack state.
    let reqs = datapath::lower_dump(&flows);
    let acts: Vec<&ActionReq> = reqs.iter().flat_map(|r| &r.actions).collect();
    let ct_zone = |zone: u16, nat: Option<NatKind>| {
        acts.iter().any(|a| matches!(a, ActionReq::Ct(CtReq { zone: Some(z), nat: n, .. }) if *z == zone && *n == nat))
    };
    assert!(ct_zone(1, None), "ct(zone=1) in the datapath:\n{text}");
    assert!(ct_zone(2, Some(NatKind::Dst)), "ct(commit,zone=2,nat(dst=..)) in the datapath:\n{text}");
    assert!(ct_zone(2, Some(NatKind::Reverse)), "the reply's ct(zone=2,nat) in the datapath:\n{text}");
    let nat = flows
        .iter()
        .flat_map(|f| &f.actions)
        .find(|a| {
            a.kind() == DpActionKind::Ct && a.arg("nat").is_some_and(|n| n.nested.iter().any(|x| x.name == "dst"))
        })
        .unwrap_or_else(|| panic!("a ct with nat(dst=...):\n{text}"));
    let dst = nat.arg("nat").unwrap().get("dst").unwrap().value.clone().unwrap();
    assert_eq!(dst, "10.244.1.2:8080", "the service's endpoint");
    assert!(nat.arg("commit").is_some() && nat.arg("zone").unwrap().value.as_deref() == Some("2"), "{nat}");

    let recircs: Vec<u32> = flows
        .iter()
        .flat_map(|f| &f.actions)
        .filter(|a| a.kind() == DpActionKind::Recirc)
        .map(|a| u32::from_str_radix(a.value.as_deref().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    assert!(!recircs.is_empty(), "recirc(...) in the datapath:\n{text}");
    for id in &recircs {
        let key = format!("{id:#x}");
        assert!(
            flows.iter().any(|f| f.key("recirc_id").unwrap().value.as_deref() == Some(key.as_str())),
            "recirc({key}) has flows of its own pass (recirc_id({key})):\n{text}"
        );
    }
    // The second pass matches the conntrack state, masked (only the bits the pipeline tests).
    let second: Vec<&DpFlow> =
        flows.iter().filter(|f| f.key("recirc_id").unwrap().value.as_deref() != Some("0")).collect();
    assert!(!second.is_empty());
    for f in &second {
        let ct = f.key("ct_state").unwrap_or_else(|| panic!("{f}"));
        assert!(ct.is_masked(), "ct_state is matched under a mask after recirculation: {f}");
        assert!(has_match(f, MatchField::CtState), "{f}");
    }
    // Along the chain, a second-pass flow is one recirculation deep (two with its own recirc).
    for (f, r) in flows.iter().zip(&reqs) {
        let second = f.key("recirc_id").unwrap().value.as_deref() != Some("0");
        let own = u32::from(r.actions.contains(&ActionReq::Recirculate));
        assert_eq!(r.recirculations, u32::from(second) + own, "{f}");
    }

    // Ports by name (-m), masks: pod B's first pass matches its exact source (the
    // anti-spoofing flow) and a prefix of the destination.
    let in_ports: std::collections::BTreeSet<String> =
        flows.iter().filter_map(|f| f.key("in_port").and_then(|k| k.value.clone())).collect();
    for p in ["br0-p1", "br0-p2", "p4"] {
        assert!(in_ports.contains(p), "in_port({p}) among {in_ports:?}");
    }
    let from_b = flows
        .iter()
        .find(|f| {
            f.key("in_port").unwrap().value.as_deref() == Some("p4")
                && f.key("recirc_id").unwrap().value.as_deref() == Some("0")
                && f.actions.first().is_some_and(|a| a.to_string() == "ct(zone=1)")
        })
        .unwrap_or_else(|| panic!("pod B's first pass into conntrack zone 1:\n{text}"));
    let ipv4 = from_b.key("ipv4").unwrap();
    assert_eq!(ipv4.get("src").unwrap().value.as_deref(), Some("10.244.1.4"), "{from_b}");
    assert!(!ipv4.get("src").unwrap().is_masked(), "the pod's source is matched exactly: {from_b}");
    // Only the prefix of the destination the classifier needed (staged lookup): a masked match.
    assert!(ipv4.get("dst").unwrap().is_masked(), "{from_b}");
    let r = datapath::lower(from_b);
    let dst = r.matches.iter().find(|m| m.field == MatchField::Ipv4Dst).unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(dst.mask, MaskKind::Prefix, "{from_b}");
    assert!(r.matches.iter().any(|m| m.field == MatchField::Ipv4Src && m.mask == MaskKind::Exact), "{r:?}");
    assert!(!r.has_match(MatchField::TcpFlags), "a wildcarded field is not a requirement");

    // Table 5's `set_field:MAC->eth_dst` is a datapath `set(eth(dst=..))` rewrite.
    assert!(
        acts.contains(&&ActionReq::SetField { field: MatchField::EthDst, masked: false }),
        "set(eth(dst=..)) in the datapath:\n{text}"
    );
    // The ARP responder's actions (ARP field rewrites) are not datapath actions: the flow is
    // slow-pathed; the unknown frame goes up to the controller behind the datapath meter of
    // table 0's `meter:3`.
    let slow = flows.iter().find(|f| f.key("eth_type").unwrap().value.as_deref() == Some("0x0806")).unwrap();
    assert_eq!(slow.actions[0].arg("slow_path").and_then(|k| k.value.as_deref()), Some("action"), "{slow}");
    assert!(acts.contains(&&ActionReq::Userspace) && acts.contains(&&ActionReq::Controller), "{acts:?}");
    assert!(acts.contains(&&ActionReq::Meter), "{acts:?}");

    // The explanation under the default profile (TC flower): only those two stay in software.
    let tc = Profile::builtin("tc-flower").unwrap();
    let explained = datapath::explain(&flows, &tc);
    let blocked: Vec<String> = explained.iter().filter(|e| !e.verdict.offloadable).map(ToString::to_string).collect();
    assert_eq!(blocked.len(), 2, "{blocked:#?}");
    assert!(blocked.iter().any(|l| l.starts_with("not offloadable: userspace is a slow-path action | type=ovs | ")));
    assert!(blocked.iter().any(|l| l.starts_with("not offloadable: controller is a slow-path action | type=ovs | ")));
    // Under the ConnectX-class profile the connection's first packet, committed in the
    // datapath (+new), is refused too.
    let cx = Profile::builtin("connectx").unwrap();
    let new_committed = datapath::explain(&flows, &cx)
        .iter()
        .filter(|e| e.verdict.line().contains("ct_state +new not matchable"))
        .count();
    assert!(new_committed >= 1, "{text}");
    eprintln!(
        "FIGURE dpctl: {} datapath flows parsed ({} in a recirculation pass), {} recirc actions; tc-flower: {} offloadable",
        flows.len(),
        second.len(),
        recircs.len(),
        explained.iter().filter(|e| e.verdict.offloadable).count()
    );

    // The same dump without -m (numbers for ports, only what is matched) and the offloaded
    // view (empty: no NIC here) parse too.
    let plain = dump(&env, &[]);
    capture("pipeline-dump-flows.txt", &plain);
    let pf = datapath::parse_dump(&plain).unwrap_or_else(|e| panic!("{e}\n{plain}"));
    assert!(!pf.is_empty());
    for (f, l) in pf.iter().zip(plain.lines().filter(|l| !l.starts_with("flow-dump from"))) {
        assert_eq!(f.to_string(), l);
        assert!(f.ufid.is_none() && f.dp.is_none(), "{l}");
    }
    // The operator's pipe: `ovs-appctl dpctl/dump-flows -m | shardflow offload datapath`.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(["offload", "datapath"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = explained.iter().map(ToString::to_string).collect();
    assert_eq!(got, want, "the CLI prints what the library explains");
    eprintln!("FIGURE dpctl CLI on the live dump:\n{out}");

    let off = dump(&env, &["-m", "type=offloaded"]);
    assert!(datapath::parse_dump(&off).unwrap().is_empty(), "{off}");
}
