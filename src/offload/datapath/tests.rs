//! Parser and lowering tests: every syntax OVS prints, real captures, errors with positions,
//! and a no-panic property over prefixes and mutations of the captures.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::offload::requirement::{ActionReq, CtFlag, CtReq, MaskKind, MatchField, NatKind, OutputKind};
use crate::offload::Profile;

fn fields(r: &Requirements) -> Vec<(&'static str, MaskKind)> {
    r.matches.iter().map(|m| (m.field.name(), m.mask)).collect()
}

const CAPTURE_M: &str = include_str!("../../../tests/golden/dpctl/pipeline-dump-flows-m.txt");
const CAPTURE: &str = include_str!("../../../tests/golden/dpctl/pipeline-dump-flows.txt");
const OVS_SUITE: &str = include_str!("../../../tests/golden/dpctl/ovs-testsuite.txt");

fn one(line: &str) -> DpFlow {
    let f = parse_flow(line).unwrap_or_else(|e| panic!("{e}\n{line}"));
    assert_eq!(f.to_string(), line, "prints back as given");
    f
}

fn err(line: &str) -> ParseError {
    match parse_flow(line) {
        Ok(f) => panic!("parsed: {f:?}"),
        Err(e) => e,
    }
}

// === whole lines ===

#[test]
fn verbose_line_with_ufid_masks_and_dp() {
    let f = one("ufid:62f56bb6-bd32-4835-b36a-1a8025428387, skb_priority(0/0),ct_state(0x21/0x21),ct_zone(0x1/0),recirc_id(0x1),in_port(br0-p1),eth(src=02:00:00:00:00:01/00:00:00:00:00:00,dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(src=10.0.0.0/255.0.0.0,dst=10.0.0.2/0.0.0.0,proto=6,frag=no),tcp(src=1234/0,dst=80), packets:1, bytes:106, used:0.312s, flags:S., dp:ovs, actions:ct(commit,zone=1),br0-p2, dp-extra-info:miniflow_bits(4,1)");
    assert_eq!(f.ufid.as_deref(), Some("62f56bb6-bd32-4835-b36a-1a8025428387"));
    assert_eq!((f.dp.as_deref(), f.offloaded, f.flow_type()), (Some("ovs"), Offloaded::No, "ovs"));
    assert_eq!(f.stats, DpStats { packets: 1, bytes: 106, used: Some(0.312), tcp_flags: Some("S.".into()) });
    assert_eq!(f.dp_extra_info.as_deref(), Some("miniflow_bits(4,1)"));
    let ct = f.key("ct_state").unwrap();
    assert_eq!((ct.value.as_deref(), ct.mask.as_deref(), ct.is_masked()), (Some("0x21"), Some("0x21"), true));
    assert!(f.key("ct_zone").unwrap().is_wildcard(), "0x1/0 matches nothing");
    assert_eq!(f.key("recirc_id").unwrap().value.as_deref(), Some("0x1"));
    assert_eq!(f.key("in_port").unwrap().value.as_deref(), Some("br0-p1"));
    let ipv4 = f.key("ipv4").unwrap();
    let src = ipv4.get("src").unwrap();
    assert_eq!((src.value.as_deref(), src.mask.as_deref()), (Some("10.0.0.0"), Some("255.0.0.0")));
    assert!(src.is_masked() && !ipv4.get("dst").unwrap().is_masked() && ipv4.get("dst").unwrap().is_wildcard());
    assert_eq!(ipv4.get("frag").unwrap().value.as_deref(), Some("no"));
    assert!(f.key("eth").unwrap().get("src").unwrap().is_wildcard());
    assert_eq!(f.actions.len(), 2);
    assert_eq!(f.actions[0].kind(), DpActionKind::Ct);
    assert_eq!(f.actions[0].arg("zone").unwrap().value.as_deref(), Some("1"));
    assert!(f.actions[0].arg("commit").is_some());
    assert_eq!((f.actions[1].kind(), f.actions[1].name.as_str()), (DpActionKind::Output, "br0-p2"));
    assert_eq!(
        f.short(),
        "ct_state(0x21/0x21),recirc_id(0x1),in_port(br0-p1),eth(dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(src=10.0.0.0/255.0.0.0,proto=6,frag=no),tcp(dst=80) actions:ct(commit,zone=1),br0-p2"
    );
}

#[test]
fn offloaded_and_partial_and_tc() {
    // As `format_dpif_flow` prints a flow the TC layer holds in hardware.
    let f = one("ufid:1b0c0f3e-7b4f-4bd9-8c3a-5d1d2c2a9e11, skb_priority(0/0),skb_mark(0/0),in_port(enp1s0f0_0),eth(src=0a:58:0a:f4:01:02,dst=0a:58:0a:f4:01:04),eth_type(0x0800),ipv4(src=10.244.1.2,dst=10.244.1.4,proto=6,tos=0/0,ttl=0/0,frag=no),tcp(src=0/0,dst=80), packets:120, bytes:9600, used:0.410s, offloaded:yes, dp:tc, actions:enp1s0f0_1");
    assert_eq!((f.offloaded, f.flow_type()), (Offloaded::Yes, "offloaded"));
    let f = one("recirc_id(0),in_port(p1),packet_type(ns=0,id=0),eth(),eth_type(0x0800),ipv4(),udp(), packets:1, bytes:106, used:0.000s, offloaded:partial, dp:ovs, actions:p2");
    assert_eq!((f.offloaded, f.flow_type()), (Offloaded::Partial, "partial"));
    let eth = f.key("eth").unwrap();
    assert_eq!((eth.form, eth.value.as_ref(), eth.nested.len()), (Form::Call, None, 0));
    // In TC's software path only (not in hardware): the layer is the type.
    let f = one("ufid:00000000-0000-0000-0000-000000000001, in_port(eth0),eth_type(0x0800), packets:0, bytes:0, used:never, dp:tc, actions:drop");
    assert_eq!((f.flow_type(), f.stats.used), ("tc", None));
    assert!(f.actions.is_empty(), "`drop` is the empty action list");
}

#[test]
fn plain_dump_without_m() {
    let f = one("ct_state(+new-est+trk),recirc_id(0x1),in_port(1),packet_type(ns=0,id=0),eth_type(0x0800),ipv4(frag=no), packets:1, bytes:106, used:0.320s, actions:ct(commit,zone=1),100");
    assert_eq!((f.ufid.as_ref(), f.dp.as_ref(), f.flow_type()), (None, None, "ovs"));
    assert_eq!(f.key("ct_state").unwrap().value.as_deref(), Some("+new-est+trk"));
    assert_eq!(f.actions[1].kind(), DpActionKind::Output);
    assert_eq!(f.key("packet_type").unwrap().get("id").unwrap().value.as_deref(), Some("0"));
}

#[test]
fn tunnel_keys_and_geneve_options() {
    let f = one("recirc_id(0),tunnel(tun_id=0x7b,src=1.1.2.92,dst=1.1.2.88,ttl=64,tp_dst=6081,geneve({class=0xffff,type=0x80,len=4,0xa/0xf}{class=0xffff,type=0,len=4}),flags(-df+csum+key)),in_port(6081),eth_type(0x0800),ipv4(frag=no), packets:0, bytes:0, used:never, actions:2");
    let t = f.key("tunnel").unwrap();
    assert_eq!(t.get("tun_id").unwrap().value.as_deref(), Some("0x7b"));
    assert_eq!(t.get("flags").unwrap().value.as_deref(), Some("-df+csum+key"));
    let g = t.get("geneve").unwrap();
    assert_eq!(g.nested.len(), 2);
    assert!(g.nested.iter().all(|o| o.form == Form::Braces));
    assert_eq!(g.nested[0].nested[3].name, "0xa/0xf");
    let r = lower(&f);
    let names: Vec<&str> = r.matches.iter().map(|m| m.field.name()).collect();
    assert_eq!(
        names,
        [
            "tun_id",
            "tun_ipv4_src",
            "tun_ipv4_dst",
            "tun_ttl",
            "tun_tp_dst",
            "tun_geneve_opts",
            "tun_flags",
            "in_port",
            "eth_type",
            "ip_frag"
        ],
        "recirc_id(0) is the first pass, not a match"
    );
    assert_eq!(r.recirculations, 0);
    let f = one("tunnel(tun_id=0x1,src=10.1.1.1,dst=10.1.1.2,vxlan(gbp(id=10,flags=0x1)),flags(+key)),in_port(4789),eth_type(0x0800), packets:0, bytes:0, used:never, actions:3");
    assert!(lower(&f).has_match(MatchField::TunGbp));
}

#[test]
fn vlan_encap_and_ipv6() {
    let f = one("recirc_id(0),in_port(2),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x8100),vlan(vid=99,pcp=7),encap(eth_type(0x86dd),ipv6(src=fe80::1/ffff::,dst=fd00::2,label=0/0,proto=58,tclass=0/0,hlimit=255,frag=no),icmpv6(type=135,code=0),nd(target=fd00::2)), packets:0, bytes:0, used:never, actions:pop_vlan,push_vlan(vid=10,pcp=0),1");
    let enc = f.key("encap").unwrap();
    assert_eq!(enc.get("ipv6").unwrap().get("src").unwrap().mask.as_deref(), Some("ffff::"));
    let r = lower(&f);
    let got = fields(&r);
    for want in [
        ("vlan_vid", MaskKind::Exact),
        ("ipv6_src", MaskKind::Prefix),
        ("nd_target", MaskKind::Exact),
        ("icmpv6_type", MaskKind::Exact),
    ] {
        assert!(got.contains(&want), "{want:?} in {got:?}");
    }
    assert!(!r.has_match(MatchField::Ipv6Label), "wildcarded");
    assert_eq!(r.actions, [ActionReq::PopVlan, ActionReq::PushVlan, ActionReq::Output { to: OutputKind::Port }]);
    assert_eq!(f.actions[1].arg("vid").unwrap().value.as_deref(), Some("10"));
}

// === actions ===

#[test]
fn every_action_syntax() {
    let acts = "ct(commit,zone=1,mark=0x1/0xff,label=0x1/0x1,helper=ftp,nat(dst=10.0.0.5:8080)),recirc(0x2),\
set(eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)),set(ipv4(src=10.0.0.1/255.255.255.0)),\
set(tunnel(tun_id=0x5,src=2.2.2.2,dst=1.1.1.1,ttl=64,flags(df|key))),push_vlan(vid=10,pcp=0),pop_vlan,\
userspace(pid=4294967295,controller(reason=1,dont_send=0,continuation=0,recirc_id=7,rule_cookie=0x3cff010000000002,controller_id=2,max_len=65535)),\
clone(ct_clear,2),sample(sample=50.0%,actions(meter(0),userspace(pid=0,ipfix(output_port=4294967295)))),\
check_pkt_len(size=514,gt(3),le(2)),\
tnl_push(tnl_port(4789),header(size=50,type=4,eth(dst=aa:55:00:00:00:03,src=aa:55:00:00:00:01,dl_type=0x0800),ipv4(src=10.0.0.1,dst=10.0.0.3,proto=17,tos=0,ttl=64,frag=0x4000),udp(src=0,dst=4789,csum=0x0),vxlan(flags=0xc000004,vni=0x0)),out_port(1)),\
tnl_push(tnl_port(3),header(size=38,type=3,eth(dst=f8:bc:12:44:34:b6,src=aa:55:aa:55:00:00,dl_type=0x0800),ipv4(src=1.1.2.88,dst=1.1.2.92,proto=47,tos=0,ttl=64,frag=0x4000),gre((flags=0x2000,proto=0x6558),key=0x1c8)),out_port(100)),\
tnl_pop(4789),hash(l4(0)),trunc(100),meter(0),ct(zone=2,nat),ct,drop,br0-p2,7";
    let line = format!("recirc_id(0),in_port(1), packets:0, bytes:0, used:never, actions:{acts}");
    let f = one(&line);
    use DpActionKind as K;
    let kinds: Vec<K> = f.actions.iter().map(DpAction::kind).collect();
    assert_eq!(
        kinds,
        [
            K::Ct,
            K::Recirc,
            K::Set,
            K::Set,
            K::Set,
            K::PushVlan,
            K::PopVlan,
            K::Userspace,
            K::Clone,
            K::Sample,
            K::CheckPktLen,
            K::TunnelPush,
            K::TunnelPush,
            K::TunnelPop,
            K::Hash,
            K::Trunc,
            K::Meter,
            K::Ct,
            K::Ct,
            K::Drop,
            K::Output,
            K::Output
        ]
    );
    let nat = f.actions[0].arg("nat").unwrap();
    assert_eq!(nat.get("dst").unwrap().value.as_deref(), Some("10.0.0.5:8080"));
    assert_eq!(f.actions[1].value.as_deref(), Some("0x2"));
    assert_eq!(f.actions[8].sub_actions().iter().map(DpAction::kind).collect::<Vec<_>>(), [K::CtClear, K::Output]);
    assert_eq!(f.actions[9].sub_actions().iter().map(DpAction::kind).collect::<Vec<_>>(), [K::Meter, K::Userspace]);
    assert_eq!(f.actions[10].sub_actions().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["3", "2"]);
    let gre = f.actions[12].arg("header").unwrap().get("gre").unwrap();
    assert_eq!(gre.nested[0].form, Form::Parens);

    let r = lower(&f);
    assert_eq!(
        r.actions[0],
        ActionReq::Ct(CtReq {
            zone: Some(1),
            commit: true,
            nat: Some(NatKind::Dst),
            set_mark: true,
            set_label: true,
            alg: Some(21),
            ..CtReq::default()
        })
    );
    let kinds: Vec<&str> = r.actions.iter().map(ActionReq::kind).collect();
    assert_eq!(
        kinds,
        [
            "ct",
            "recirc",
            "set_field",
            "set_field",
            "set_field",
            "tunnel_encap",
            "push_vlan",
            "pop_vlan",
            "controller",
            "clone",
            "ct_clear",
            "output",
            "sample",
            "meter",
            "userspace",
            "check_pkt_len",
            "output",
            "output",
            "tnl_push",
            "tnl_push",
            "tnl_pop",
            "hash",
            "truncate",
            "meter",
            "ct",
            "ct",
            "drop",
            "output",
            "output"
        ]
    );
    assert_eq!(r.actions[2], ActionReq::SetField { field: MatchField::EthSrc, masked: false });
    assert_eq!(r.actions[4], ActionReq::SetField { field: MatchField::Ipv4Src, masked: true });
    assert_eq!(r.actions[5], ActionReq::TunnelEncap { ipv6: false });
    assert_eq!(r.actions[24], ActionReq::Ct(CtReq { zone: Some(2), nat: Some(NatKind::Reverse), ..CtReq::default() }));
    assert_eq!(
        (r.recirculations, r.ct_zones.as_slice()),
        (1, &[1u16, 2][..]),
        "recirc(0x2) is one pass; zones 1 and 2"
    );
}

#[test]
fn odd_but_real_printer_output() {
    // `format_generic_odp_action` and an unknown hash algorithm put spaces inside brackets.
    let f =
        one("in_port(1), packets:0, bytes:0, used:never, actions:action24(01 02 03),hash(Unknown hash algorithm(5))");
    assert_eq!(f.actions[0].value.as_deref(), Some("01 02 03"));
    assert_eq!(f.actions[1].args[0].name, "Unknown hash algorithm");
    // An unknown `label:` (a newer OVS) is kept, in place.
    let f = one("in_port(1), packets:0, bytes:0, used:never, dp:ovs, pmd:3, actions:2");
    assert_eq!(f.extra, [("pmd".to_string(), "3".to_string())]);
    // `<empty>` key list.
    assert!(one("<empty>, packets:0, bytes:0, used:never, actions:drop").keys[0].name == "<empty>");
}

// === errors ===

#[test]
fn errors_name_line_and_column() {
    let e = err("in_port(1),eth_type(0x0800, packets:0, bytes:0, used:never, actions:2");
    assert_eq!(e.kind, ErrorKind::Unclosed { open: '(', column: 20 }, "{e}");
    assert_eq!(e.to_string(), "line 1, column 70: '(' opened at column 20 is not closed");
    let e = err("in_port(1), packets:0, bytes:0, used:never");
    assert_eq!(e.kind, ErrorKind::Missing("actions:"));
    let e = err("in_port(1), packets:x, bytes:0, used:never, actions:2");
    assert_eq!(e.kind, ErrorKind::BadNumber { field: "packets", value: "x".into() });
    assert_eq!(e.column, 21);
    let e = err("in_port(1), packets:1, bytes:0, used:soon, actions:2");
    assert!(matches!(e.kind, ErrorKind::BadNumber { field: "used", .. }), "{e}");
    let e = err("in_port(1), packets:1, packets:1, bytes:0, used:never, actions:2");
    assert_eq!(e.kind, ErrorKind::Duplicate("packets"));
    let e = err("in_port(1), packets:1, bytes:0, used:never, offloaded:maybe, actions:2");
    assert!(matches!(e.kind, ErrorKind::BadValue { field: "offloaded", .. }), "{e}");
    let e = err("in_port(1), packets:1, bytes:0, used:never, actions:ct(commit");
    assert_eq!(e.kind, ErrorKind::Unclosed { open: '(', column: 55 });
    let e = err("in_port(1), packets:1, bytes:0, used:never, actions:set(eth(src=1)");
    assert_eq!(e.kind, ErrorKind::Unclosed { open: '(', column: 56 });
    let e = err("in_port(1)) , packets:1, bytes:0, used:never, actions:2");
    assert_eq!((e.kind, e.column), (ErrorKind::Unexpected(')'), 11));
    let e = err("ufid:zz, in_port(1), packets:1, bytes:0, used:never, actions:2");
    assert_eq!(e.kind, ErrorKind::Expected("a UUID after ufid:"));
    let e = err("");
    assert_eq!(e.kind, ErrorKind::Missing("match"));
    let e = err("in_port(1), packets:1, bytes:0, used:never, actions:");
    assert_eq!(e.kind, ErrorKind::Expected("actions after actions:"));
    let deep = format!("in_port({}1{}), packets:0, bytes:0, used:never, actions:2", "a(".repeat(40), ")".repeat(40));
    assert_eq!(err(&deep).kind, ErrorKind::TooDeep);
    let long = format!("in_port({}), packets:0, bytes:0, used:never, actions:2", "1".repeat(MAX_LINE));
    assert_eq!(err(&long).kind, ErrorKind::TooLong);
    // Columns count characters, not bytes.
    let e = err("in_port(é)), packets:0, bytes:0, used:never, actions:2");
    assert_eq!((e.kind, e.column), (ErrorKind::Unexpected(')'), 11));
}

#[test]
fn dump_skips_headings_and_names_the_bad_line() {
    let text = "flow-dump from the main thread:\nin_port(1), packets:0, bytes:0, used:never, actions:2\n\nflow-dump from pmd on cpu core: 3\nin_port(2), packets:0, bytes:0, used:never, actions:1\n";
    assert_eq!(parse_dump(text).unwrap().len(), 2);
    let bad = "in_port(1), packets:0, bytes:0, used:never, actions:2\nin_port(2 packets:0\n";
    let e = parse_dump(bad).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let per_line: Vec<(usize, bool)> = parse_lines(bad).map(|(n, r)| (n, r.is_ok())).collect();
    assert_eq!(per_line, [(1, true), (2, false)]);
}

// === real captures ===

#[test]
fn captures_from_the_pipeline_parse_and_print_back() {
    for text in [CAPTURE_M, CAPTURE] {
        let flows = parse_dump(text).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("flow-dump")).collect();
        assert_eq!(flows.len(), lines.len());
        assert!(flows.len() >= 10);
        for (f, l) in flows.iter().zip(lines) {
            assert_eq!(f.to_string(), l);
            let r = lower(f);
            assert!(r.notes.is_empty(), "{:?} in {l}", r.notes);
            assert!(!r.actions.is_empty() || l.ends_with("actions:drop"), "{l}");
        }
    }
    // What the pipeline puts in the datapath (see tests/dpctl_ovs.rs for the live version).
    let flows = parse_dump(CAPTURE_M).unwrap();
    let reqs = lower_dump(&flows);
    let all: Vec<&ActionReq> = reqs.iter().flat_map(|r| &r.actions).collect();
    assert!(all
        .iter()
        .any(|a| matches!(a, ActionReq::Ct(CtReq { zone: Some(2), nat: Some(NatKind::Dst), commit: true, .. }))));
    assert!(all.iter().any(|a| matches!(a, ActionReq::Ct(CtReq { zone: Some(1), commit: false, .. }))));
    assert!(all.contains(&&ActionReq::Recirculate) && all.contains(&&ActionReq::Controller));
    // Second-pass flows sit one recirculation deep, found through their parent's recirc(N).
    for (f, r) in flows.iter().zip(&reqs) {
        let second = f.key("recirc_id").and_then(|k| k.value.as_deref()) != Some("0");
        let own = u32::from(r.actions.contains(&ActionReq::Recirculate));
        assert_eq!(r.recirculations, u32::from(second) + own, "{f}");
        assert_eq!(r.has_match(MatchField::RecircId), second, "{f}");
    }
}

#[test]
fn ovs_testsuite_lines_parse() {
    let mut n = 0;
    for line in OVS_SUITE.lines() {
        let f = parse_flow(line).unwrap_or_else(|e| panic!("{e}\n{line}"));
        // The suite rewrites `used:` to `used:0.0s`; OVS prints three decimals.
        assert_eq!(f.to_string(), line.replace("used:0.0s", "used:0.000s"));
        let r = lower(&f);
        // What the table leaves out is said, by name.
        assert!(r.notes.iter().all(|x| x.contains("nsh") || x.contains("key")), "{:?}\n{line}", r.notes);
        n += 1;
    }
    assert!(n >= 150, "{n}");
}

// === no panic on any input ===

/// xorshift64: deterministic mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn exercise(line: &str) {
    crate::fuzzing::dpctl_text(line.as_bytes());
    if let Ok(f) = parse_flow(line) {
        let _ = (f.to_string(), f.short(), lower(&f));
        for a in &f.actions {
            let _ = (a.kind(), a.sub_actions());
        }
    }
}

#[test]
fn every_prefix_and_random_mutations_parse_or_error_cleanly() {
    let corpus: Vec<&str> = CAPTURE_M.lines().chain(CAPTURE.lines()).chain(OVS_SUITE.lines().step_by(3)).collect();
    // Every prefix (at char boundaries).
    let mut n = 0;
    for line in &corpus {
        for (i, _) in line.char_indices() {
            exercise(&line[..i]);
            n += 1;
        }
    }
    // Random mutations: a byte of the grammar replaced, inserted or removed; a span repeated.
    const ALPHABET: &[u8] = b"(){}=,/: x0a.-+|%<>";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let line = corpus[rng.below(corpus.len())];
        let mut b = line.as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(4) {
                0 if at < b.len() => b[at] = ALPHABET[rng.below(ALPHABET.len())],
                1 => b.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                2 if at < b.len() => {
                    b.remove(at);
                }
                _ => {
                    let end = (at + rng.below(40)).min(b.len());
                    let span = b[at..end].to_vec();
                    b.splice(at..at, span);
                }
            }
        }
        exercise(&String::from_utf8_lossy(&b));
        n += 1;
    }
    // Non-ASCII where delimiters are expected.
    exercise("in_port(é), packets:0, bytes:0, used:never, actions:ü(");
    assert!(n > 20_000);
}

// === the name mapping ===

#[test]
fn the_table_reaches_every_datapath_field_of_the_profiles() {
    // Fields no datapath key carries: OpenFlow-only or folded at translation.
    let not_in_datapath = [MatchField::ConjId, MatchField::ActsetOutput, MatchField::Cvlan];
    for f in MatchField::ALL {
        if !not_in_datapath.contains(f) {
            assert!(DP_FIELDS.iter().any(|(_, _, m, _)| m == f), "no datapath key lowers to {f}");
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (key, sub, _, _) in DP_FIELDS {
        assert!(seen.insert((key, sub)), "{key}.{sub} twice");
    }
    assert_eq!(datapath_field("ipv4", "src"), Some((MatchField::Ipv4Src, 32)));
    assert_eq!(datapath_field("ct_tuple4", "tp_dst"), Some((MatchField::CtTuple, 16)));
    assert_eq!(datapath_field("skb_mark", ""), Some((MatchField::PktMark, 32)));
    assert_eq!(datapath_field("key42", ""), None);
}

#[test]
fn mask_kinds_from_printed_masks() {
    use lower::mask_kind;
    assert_eq!(mask_kind(None, 16), MaskKind::Exact);
    assert_eq!(mask_kind(Some("255.255.255.252"), 32), MaskKind::Prefix);
    assert_eq!(mask_kind(Some("255.255.255.255"), 32), MaskKind::Exact);
    assert_eq!(mask_kind(Some("255.0.255.0"), 32), MaskKind::Arbitrary);
    assert_eq!(mask_kind(Some("ff:ff:ff:00:00:00"), 48), MaskKind::Prefix);
    assert_eq!(mask_kind(Some("01:00:00:00:00:00"), 48), MaskKind::Arbitrary);
    assert_eq!(mask_kind(Some("ffff:ffff::"), 128), MaskKind::Prefix);
    assert_eq!(mask_kind(Some("0xf000"), 16), MaskKind::Prefix);
    assert_eq!(mask_kind(Some("0xffff"), 16), MaskKind::Exact);
    assert_eq!(mask_kind(Some("0x4"), 32), MaskKind::Arbitrary);
    assert_eq!(mask_kind(Some("0xfff"), 12), MaskKind::Exact);
    assert_eq!(mask_kind(Some("junk"), 16), MaskKind::Arbitrary);
}

#[test]
fn lowering_skips_wildcards_and_the_ethernet_packet_type() {
    let f = one("ufid:00000000-0000-0000-0000-000000000002, skb_priority(0/0),skb_mark(0/0),ct_state(0x22/0x32),ct_zone(0x1/0),ct_mark(0/0),ct_label(0/0),ct_tuple4(src=10.244.1.4/0.0.0.0,dst=10.244.1.2/0.0.0.0,proto=6/0,tp_src=40000/0,tp_dst=80/0),recirc_id(0x1),dp_hash(0/0),in_port(p4),packet_type(ns=0,id=0),eth(src=0a:58:0a:f4:01:04/00:00:00:00:00:00,dst=02:00:0a:f4:01:01),eth_type(0x0800),ipv4(src=10.244.1.4/0.0.0.0,dst=10.244.1.2,proto=6/0,tos=0/0,ttl=64/0,frag=no),tcp(src=40000/0,dst=80/0),tcp_flags(0/0), packets:4, bytes:202, used:0.285s, flags:P., dp:ovs, actions:set(eth(dst=0a:58:0a:f4:01:02)),br0-p2");
    let r = lower(&f);
    assert_eq!(r.recirculations, 1, "recirc_id(0x1): one pass deep");
    assert_eq!(
        fields(&r),
        [
            ("ct_state", MaskKind::Arbitrary),
            ("recirc_id", MaskKind::Exact),
            ("in_port", MaskKind::Exact),
            ("eth_dst", MaskKind::Exact),
            ("eth_type", MaskKind::Exact),
            ("ipv4_dst", MaskKind::Exact),
            ("ip_frag", MaskKind::Exact)
        ]
    );
    let ct = &r.matches[0];
    assert_eq!(
        (ct.flags_on.as_slice(), ct.flags_off.as_slice()),
        (&[CtFlag::Est, CtFlag::Trk][..], &[CtFlag::Inv][..])
    );
    assert_eq!(
        r.actions,
        [ActionReq::SetField { field: MatchField::EthDst, masked: false }, ActionReq::Output { to: OutputKind::Port }]
    );
    assert!(r.ct_zones.is_empty(), "ct_zone(0x1/0) is wildcarded");
    // The plain (non -m) forms of ct_state.
    let f = one("ct_state(+est-inv+trk),recirc_id(0x1),in_port(4), packets:0, bytes:0, used:never, actions:4");
    let ct = &lower(&f).matches[0];
    assert_eq!(
        (ct.flags_on.as_slice(), ct.flags_off.as_slice()),
        (&[CtFlag::Est, CtFlag::Trk][..], &[CtFlag::Inv][..])
    );
    let f = one("ct_state(new|trk),in_port(4), packets:0, bytes:0, used:never, actions:4");
    let ct = &lower(&f).matches[0];
    assert_eq!(ct.flags_on, [CtFlag::New, CtFlag::Trk]);
    assert_eq!(ct.flags_off.len(), 6, "an exact ct_state: every other flag clear");
    // Flags with signs (no -m) are a partial match.
    let f = one("recirc_id(0),in_port(4),eth_type(0x0800),ipv4(proto=6,frag=no),tcp_flags(+syn-ack), packets:0, bytes:0, used:never, actions:4");
    assert!(fields(&lower(&f)).contains(&("tcp_flags", MaskKind::Arbitrary)));
    let f = one("recirc_id(0),in_port(4),eth_type(0x0800),ipv4(proto=6,frag=no),tcp_flags(syn), packets:0, bytes:0, used:never, actions:4");
    assert!(fields(&lower(&f)).contains(&("tcp_flags", MaskKind::Exact)));
    // Output back out of the in port is a hairpin.
    let f = one("in_port(p4),eth_type(0x0806), packets:0, bytes:0, used:never, actions:p4");
    assert_eq!(lower(&f).actions, [ActionReq::Output { to: OutputKind::InPort }]);
}

// === explanations ===

#[test]
fn captures_explained_under_both_profiles() {
    let flows = parse_dump(CAPTURE_M).unwrap();
    let verdicts = |name: &str| -> Vec<(String, String)> {
        let p = Profile::builtin(name).unwrap();
        explain(&flows, &p).iter().map(|e| (e.verdict.line(), e.flow.short())).collect()
    };
    let find = |v: &[(String, String)], needle: &str| -> String {
        v.iter().find(|(_, f)| f.contains(needle)).map(|(l, _)| l.clone()).unwrap_or_else(|| panic!("{needle}"))
    };
    let tc = verdicts("tc-flower");
    // The ARP responder rewrites ARP fields: no datapath action does that, so the flow is
    // slow-pathed; the unknown EtherType goes to the controller.
    assert_eq!(find(&tc, "eth_type(0x0806)"), "not offloadable: userspace is a slow-path action");
    assert_eq!(find(&tc, "eth_type(0x88b5)"), "not offloadable: controller is a slow-path action");
    // Everything else the pipeline put in the datapath (ct zones 1 and 2, NAT, recirculation,
    // MAC rewrites) is within TC flower.
    let blocked: Vec<&(String, String)> = tc.iter().filter(|(l, _)| l != "offloadable").collect();
    assert_eq!(blocked.len(), 2, "{blocked:#?}");

    let cx = verdicts("connectx");
    assert!(find(&cx, "eth_type(0x0806)").contains("field arp_spa not matchable"), "{cx:#?}");
    // A connection's first packet (+new) committed in the datapath: the NIC's conntrack only
    // offloads established connections.
    assert_eq!(find(&cx, "ct_state(0x21/0x37)"), "not offloadable: ct_state +new not matchable");
    assert_eq!(find(&cx, "ct_state(0x22/0x32)"), "offloadable");
    // The printed line: verdict, type, short form.
    let p = Profile::builtin("tc-flower").unwrap();
    let e = explain(&flows, &p);
    let line = e.iter().map(ToString::to_string).find(|l| l.contains("0x88b5")).unwrap();
    assert!(
        line.starts_with("not offloadable: controller is a slow-path action | type=ovs | recirc_id(0),in_port(br0-p1),packet_type(ns=0,id=0),eth_type(0x88b5) actions:meter(2),userspace("),
        "{line}"
    );
}

#[test]
fn recirculation_depth_follows_the_chain() {
    let text = "\
recirc_id(0),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:ct(zone=1),recirc(0x1)
recirc_id(0x1),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:ct(zone=2),recirc(0x2)
recirc_id(0x2),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:ct(zone=3),recirc(0x3)
recirc_id(0x3),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:recirc(0x4)
recirc_id(0x4),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:2
recirc_id(0x9),in_port(1),eth_type(0x0800), packets:0, bytes:0, used:never, actions:2
";
    let flows = parse_dump(text).unwrap();
    let depth: Vec<u32> = lower_dump(&flows).iter().map(|r| r.recirculations).collect();
    // Each flow: the passes before it plus its own recirc; 0x9's parent expired: one deep.
    assert_eq!(depth, [1, 2, 3, 4, 4, 1]);
    assert_eq!(lower(&flows[4]).recirculations, 1, "alone, a flow only knows it is not the first pass");
    let cx = Profile::builtin("connectx").unwrap();
    let lines: Vec<String> = explain(&flows, &cx).iter().map(|e| e.verdict.line()).collect();
    assert_eq!(lines[2], "offloadable");
    assert_eq!(lines[4], "not offloadable: too many recirculations (4, at most 3)");
    let tc = Profile::builtin("tc-flower").unwrap();
    assert!(explain(&flows, &tc).iter().all(|e| e.verdict.offloadable));
    // A loop in the chain (recirc ids reused in a stale dump) stays bounded.
    let looped = "\
recirc_id(0x1),in_port(1), packets:0, bytes:0, used:never, actions:recirc(0x2)
recirc_id(0x2),in_port(1), packets:0, bytes:0, used:never, actions:recirc(0x1)
";
    let d: Vec<u32> = lower_dump(&parse_dump(looped).unwrap()).iter().map(|r| r.recirculations).collect();
    assert!(d.iter().all(|x| *x <= 4), "{d:?}");
}

#[test]
fn many_flows_sharing_a_recirc_id_stay_linear() {
    // 5,000 first passes into recirc(0x1) and 5,000 second passes: a quadratic walk would be
    // 25 million steps per round.
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!(
            "recirc_id(0),in_port({i}),eth_type(0x0800), packets:0, bytes:0, used:never, actions:ct(zone=1),recirc(0x1)\n"
        ));
        text.push_str(&format!(
            "recirc_id(0x1),in_port({i}),eth_type(0x0800), packets:0, bytes:0, used:never, actions:2\n"
        ));
    }
    let flows = parse_dump(&text).unwrap();
    let t = std::time::Instant::now();
    let reqs = lower_dump(&flows);
    assert!(reqs.iter().step_by(2).all(|r| r.recirculations == 1));
    assert!(reqs.iter().skip(1).step_by(2).all(|r| r.recirculations == 1));
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn judge_dump_agrees_with_explain() {
    let text = format!("{CAPTURE_M}{OVS_SUITE}garbage(\n");
    let flows: Vec<DpFlow> = parse_lines(&text).filter_map(|(_, r)| r.ok()).collect();
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).unwrap();
        let mut errors = Vec::new();
        let judged = judge_dump(&text, &p, |e| errors.push(e));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, text.lines().count());
        let explained = explain(&flows, &p);
        assert_eq!(judged.len(), explained.len());
        for (j, e) in judged.iter().zip(&explained) {
            assert_eq!(j.to_string(), e.to_string());
            assert_eq!(j.requirements, e.requirements);
        }
    }
}
