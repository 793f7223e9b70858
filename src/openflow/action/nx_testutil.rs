//! Test helpers for the Nicira actions of this directory: slice OVS's FLOW_MOD down to its
//! actions and check parse / encode / decode / print against `ovs-ofctl`.

use crate::openflow::wire::{pad8, to_hex, Reader};
use crate::openflow::{DecodeError, ErrorCode};
use std::fmt::Display;

/// Splits a whole NX action into (subtype, reader over the bytes after the 10-byte header),
/// checking type, length and experimenter.
pub fn nx_body(b: &[u8]) -> Result<(u16, Reader<'_>), DecodeError> {
    let mut r = Reader::new(b, "NX action", ErrorCode::BAD_ACTION_BAD_LEN);
    let ty = r.u16()?;
    let len = r.u16()? as usize;
    let exp = r.u32()?;
    let subtype = r.u16()?;
    if ty != 0xffff || exp != 0x2320 {
        return Err(r.error("not a Nicira action"));
    }
    if len != b.len() || len % 8 != 0 {
        return Err(r.error(format!("length {len} for {} bytes", b.len())));
    }
    Ok((subtype, r))
}

/// The apply-actions bytes of OVS's FLOW_MOD for `flow`, and OVS's text after `actions=`.
pub fn ovs_actions(flow: &str) -> (Vec<u8>, String) {
    let ovs = crate::oracle::parse_flow(flow).unwrap_or_else(|e| panic!("OVS refuses {flow}: {e}"));
    let b = &ovs.bytes;
    let match_len = u16::from_be_bytes([b[50], b[51]]) as usize;
    let inst = &b[48 + pad8(match_len)..];
    assert_eq!(u16::from_be_bytes([inst[0], inst[1]]), 4, "first instruction is apply_actions: {flow}");
    let ilen = u16::from_be_bytes([inst[2], inst[3]]) as usize;
    let text = ovs.text.split_once(" actions=").map(|(_, a)| a.to_string()).unwrap_or_default();
    (inst[8..ilen].to_vec(), text)
}

/// For one flow whose only action is `keyword(...)`: our parse+encode gives OVS's bytes (after a
/// junk prefix, left untouched), decoding OVS's bytes prints OVS's text and re-encodes to the same
/// bytes, and every truncated prefix is an error.
pub fn check_against_ovs<T: Display + std::fmt::Debug>(
    flow: &str,
    parse: impl Fn(&str) -> Result<T, crate::openflow::TextError>,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    encode: impl Fn(&T, &mut Vec<u8>),
    keyword: &str,
) {
    let (bytes, ovs_text) = ovs_actions(flow);
    let action_text = flow.split_once("actions=").map(|(_, a)| a).unwrap_or("");
    let args = action_text
        .strip_prefix(keyword)
        .map(|a| a.strip_prefix('(').and_then(|a| a.strip_suffix(')')).unwrap_or(a))
        .unwrap_or_else(|| panic!("{flow} does not use {keyword}"));
    let ours = parse(args).unwrap_or_else(|e| panic!("we refuse {flow}: {e}"));
    let mut out = vec![0xa5u8; 7];
    encode(&ours, &mut out);
    assert_eq!(&out[..7], &[0xa5; 7], "encode touched bytes before it: {flow}");
    assert_eq!(to_hex(&out[7..]), to_hex(&bytes), "encode of {flow}");
    let back = decode(&bytes).unwrap_or_else(|e| panic!("decode of OVS bytes for {flow}: {e}"));
    assert_eq!(back.to_string(), ovs_text, "print of {flow}");
    let mut again = Vec::new();
    encode(&back, &mut again);
    assert_eq!(to_hex(&again), to_hex(&bytes), "decode->encode of {flow}");
    // What OVS prints parses back to the same action (the same text: OVS's text hides a few
    // byte-level choices, e.g. a NAT max equal to its min).
    let printed_args = ovs_text
        .strip_prefix(keyword)
        .and_then(|a| a.strip_prefix('('))
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or_else(|| panic!("OVS printed {ovs_text} for {flow}"));
    let reparsed = parse(printed_args).unwrap_or_else(|e| panic!("we refuse OVS's {ovs_text}: {e}"));
    assert_eq!(reparsed.to_string(), ovs_text, "parse of OVS's text for {flow}");
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "prefix {n} of {flow} decoded");
        // With the length patched to the prefix, anything may come out, but no panic.
        let mut p = bytes[..n].to_vec();
        if n >= 4 {
            p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        }
        let _ = decode(&p);
    }
}

/// Every flow of `tests/golden/ct_learn.flows`, end to end through the instruction layer: our
/// bytes for the actions text equal OVS's, OVS's bytes decode, print as OVS prints them and
/// re-encode identically, and truncations never panic.
#[test]
#[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
fn ct_learn_golden_flows_match_ovs() {
    use crate::openflow::action::ParseContext;
    use crate::openflow::instruction::{format_instructions, parse_instructions_in, Instruction};
    const GOLDEN: &str = include_str!("../../../tests/golden/ct_learn.flows");
    let mut failures = Vec::new();
    let mut checked = 0;
    for flow in GOLDEN.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        checked += 1;
        let ovs = match crate::oracle::parse_flow(flow) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{flow}\n  OVS rejects it: {e}"));
                continue;
            }
        };
        let b = &ovs.bytes;
        let match_len = u16::from_be_bytes([b[50], b[51]]) as usize;
        let ovs_inst = &b[48 + pad8(match_len)..];
        let ovs_text = ovs.text.split_once(" actions=").map(|(_, a)| a).unwrap_or("");
        let acts = flow.split_once("actions=").map(|(_, a)| a).unwrap_or("");
        let ours = match parse_instructions_in(acts, &ParseContext::default()) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{flow}\n  our parse: {e}"));
                continue;
            }
        };
        let mut buf = vec![0xa5u8; 5];
        Instruction::encode_list(&ours, &mut buf);
        if &buf[5..] != ovs_inst {
            failures.push(format!(
                "{flow}\n  bytes differ:\n  ours {}\n  ovs  {}",
                to_hex(&buf[5..]),
                to_hex(ovs_inst)
            ));
            continue;
        }
        let mut r = Reader::new(ovs_inst, "instructions", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        let decoded = match Instruction::decode_list(&mut r) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{flow}\n  decode of OVS bytes: {e}"));
                continue;
            }
        };
        let printed = format_instructions(&decoded);
        if printed != ovs_text {
            failures.push(format!("{flow}\n  text differs:\n  ours {printed}\n  ovs  {ovs_text}"));
            continue;
        }
        let mut again = Vec::new();
        Instruction::encode_list(&decoded, &mut again);
        if again != ovs_inst {
            failures.push(format!("{flow}\n  re-encode differs"));
        }
        for n in 0..ovs_inst.len() {
            let mut r = Reader::new(&ovs_inst[..n], "instructions", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
            let _ = Instruction::decode_list(&mut r);
        }
    }
    assert!(failures.is_empty(), "{} of {checked} flows differ from OVS:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 40, "only {checked} golden flows");
}

/// Mutated and random bodies never make a decoder panic (a poor man's fuzz run, seeded from
/// real encodings).
#[test]
fn decoders_never_panic() {
    use crate::openflow::action::{bundle::Bundle, conjunction::Conjunction, ct::Ct, ct::Nat, multipath::Multipath};
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let mut put = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        f(&mut b);
        seeds.push(b);
    };
    let ct = Ct::parse("commit,zone=NXM_NX_REG0[0..15],table=3,nat(src=10.0.0.1-10.0.0.9:1-2)");
    put(&|b| ct.iter().for_each(|c| c.encode(b)));
    let nat = Nat::parse("dst=[fe80::1]-[fe80::9]:80-90,persistent");
    put(&|b| nat.iter().for_each(|c| c.encode(b)));
    let learn = super::learn::Learn::parse("table=6,limit=3,result_dst=reg0[1],eth_type=0x800,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],load:0x5->reg1[],output:reg2[0..15]");
    put(&|b| learn.iter().for_each(|c| c.encode(b)));
    let mp = Multipath::parse("multipath", "eth_src,0,hrw,2,0,reg0[0..15]");
    put(&|b| mp.iter().for_each(|c| c.encode(b)));
    let bl = Bundle::parse("bundle_load", "eth_src,0,hrw,ofport,reg0[],members:1,2,3");
    put(&|b| bl.iter().for_each(|c| c.encode(b)));
    let cj = Conjunction::parse("conjunction", "7,1/2");
    put(&|b| cj.iter().for_each(|c| c.encode(b)));
    assert_eq!(seeds.iter().filter(|s| s.len() >= 16).count(), 6);

    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let mut b = seed[10..].to_vec();
        for _ in 0..1 + rnd() % 4 {
            if b.is_empty() {
                break;
            }
            let i = (rnd() as usize) % b.len();
            b[i] ^= 1 << (rnd() % 8);
        }
        let cut = (rnd() as usize) % (b.len() + 1);
        let b = if round % 3 == 0 { &b[..cut] } else { &b[..] };
        let r = || Reader::new(b, "fuzz", ErrorCode::BAD_ACTION_BAD_LEN);
        let _ = Ct::decode(&mut r());
        let _ = Nat::decode(&mut r());
        let _ = super::learn::Learn::decode_subtype(16, &mut r());
        let _ = super::learn::Learn::decode_subtype(45, &mut r());
        let _ = Multipath::decode(10, &mut r());
        let _ = Bundle::decode(12, &mut r());
        let _ = Bundle::decode(13, &mut r());
        let _ = Conjunction::decode(34, &mut r());
        // Whatever decodes must print and re-encode without panicking.
        if let Ok(l) = super::learn::Learn::decode_subtype(45, &mut r()) {
            let _ = l.to_string();
            l.encode(&mut Vec::new());
        }
        if let Ok(c) = Ct::decode(&mut r()) {
            let _ = c.to_string();
            c.encode(&mut Vec::new());
        }
        if let Ok(n) = Nat::decode(&mut r()) {
            let _ = n.to_string();
        }
        if let Ok(m) = Bundle::decode(13, &mut r()) {
            let _ = m.to_string();
        }
    }
}
