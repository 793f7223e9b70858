//! The controller's per-Packet-In work without IO: decode a PACKET_IN (captured from a real OVS),
//! parse its packet and flow key, build the forward and reverse FLOW_MODs (table 3, conntrack)
//! and a PACKET_OUT, and encode all three. The number to watch is ns per decision.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardflow::openflow::action::{ct::Ct, Action};
use shardflow::openflow::field::Field;
use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::instruction::Instruction;
use shardflow::openflow::message::{self, Message, PacketOut};
use shardflow::openflow::oxm::Match;
use shardflow::openflow::wire::from_hex;
use shardflow::packet::FlowKey;

// The daemon's allocator, so allocation costs are the daemon's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PACKET_IN_HEX: &str = include_str!("../tests/golden/messages/packet_in.hex");
const NO_BUFFER: u32 = 0xffff_ffff;

fn ip_u128(a: IpAddr) -> (u16, Field, Field, u128, u128) {
    match a {
        IpAddr::V4(v) => (0x0800, Field::IPV4_SRC, Field::IPV4_DST, u32::from(v) as u128, 0),
        IpAddr::V6(v) => (0x86dd, Field::IPV6_SRC, Field::IPV6_DST, u128::from(v), 0),
    }
}

/// One flow direction of a connection: table 3, conntrack commit in zone 1, out of `out_port`.
fn conn_flow(key: &FlowKey, reverse: bool, out_port: u32, ct: &Ct) -> FlowMod {
    let (src, dst, sp, dp) = if reverse {
        (key.ip_dst, key.ip_src, key.l4_dst, key.l4_src)
    } else {
        (key.ip_src, key.ip_dst, key.l4_src, key.l4_dst)
    };
    let (eth_type, fsrc, fdst, s, _) = ip_u128(src);
    let (_, _, _, d, _) = ip_u128(dst);
    let (tsrc, tdst) = match key.ip_proto {
        17 => (Field::UDP_SRC, Field::UDP_DST),
        132 => (Field::SCTP_SRC, Field::SCTP_DST),
        _ => (Field::TCP_SRC, Field::TCP_DST),
    };
    let mut fm = FlowMod::new(FlowModCommand::Add);
    fm.table_id = 3;
    fm.priority = 100;
    fm.idle_timeout = 300;
    fm.cookie = 0x0100_0000_0000_0001;
    fm.r#match = Match::new()
        .with_proto(eth_type, key.ip_proto)
        .with(fsrc, s)
        .with(fdst, d)
        .with(tsrc, sp as u128)
        .with(tdst, dp as u128);
    fm.instructions =
        vec![Instruction::ApplyActions(vec![Action::Ct(ct.clone()), Action::Output { port: out_port, max_len: 0 }])];
    fm
}

fn decision(pkt_in: &[u8], ct: &Ct, out: &mut Vec<u8>) -> usize {
    out.clear();
    let (_, msg) = message::decode(pkt_in).expect("captured packet-in decodes");
    let Message::PacketIn(pi) = msg else { unreachable!("not a packet-in") };
    let in_port = pi.r#match.get(Field::IN_PORT_OXM).map(|e| e.value.to_u128() as u32).unwrap_or(0);
    let key = FlowKey::extract(in_port, &pi.data).expect("packet parses");
    let fwd = conn_flow(&key, false, 2, ct);
    let rev = conn_flow(&key, true, in_port, ct);
    fwd.encode_into(1, out);
    rev.encode_into(2, out);
    let po = Message::PacketOut(PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions: vec![Action::Output { port: 2, max_len: 0 }],
        data: pi.data,
    });
    message::encode_into(&po, 3, out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let pkt_in = from_hex(PACKET_IN_HEX).expect("hex");
    let ct = Ct::parse("commit,zone=1").expect("ct");
    let mut out = Vec::with_capacity(1024);
    // The bytes must be what OVS would accept: checked in tests, here only sanity.
    assert!(decision(&pkt_in, &ct, &mut out) > 200);

    let mut g = c.benchmark_group("packet_in");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decision", |b| b.iter(|| decision(black_box(&pkt_in), &ct, &mut out)));
    g.bench_function("decode_packet_in", |b| b.iter(|| message::decode(black_box(&pkt_in)).is_ok()));
    let (_, m) = message::decode(&pkt_in).expect("decodes");
    let Message::PacketIn(pi) = m else { unreachable!() };
    g.bench_function("flow_key_extract", |b| b.iter(|| FlowKey::extract(1, black_box(&pi.data)).is_ok()));
    let key = FlowKey::extract(1, &pi.data).expect("parses");
    g.bench_function("conn_key_hash", |b| b.iter(|| black_box(&key).conn_key().hash64()));
    let fm = conn_flow(&key, false, 2, &ct);
    g.bench_function("encode_flow_mod", |b| {
        b.iter(|| {
            out.clear();
            black_box(&fm).encode_into(1, &mut out);
            out.len()
        })
    });
    // The whole policy decision of the daemon (policy::decide: forward and reverse table-3
    // flows with conntrack and the packet-out) for a pod-to-pod SYN, allowed.
    let pipeline: shardflow::pipeline::default::PipelineConfig = {
        let doc = include_str!("../docs/pipeline.md");
        let start = doc.find("```toml\n").expect("example config") + 8;
        let end = start + doc[start..].find("```").expect("end of the block");
        let cfg: shardflow::config::Config = toml::from_str(&doc[start..end]).expect("example config parses");
        cfg.pipeline.expect("[pipeline]")
    };
    let syn = shardflow::packet::build::tcp_syn(
        shardflow::packet::MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x04]),
        pipeline.gateway_mac,
        "10.244.1.4".parse().expect("ip"),
        "10.244.1.2".parse().expect("ip"),
        40001,
        80,
    );
    let key4 = FlowKey::extract(4, &syn).expect("parses");
    let ctx = shardflow::policy::DecisionContext::new(&pipeline, 7);
    let allow = shardflow::policy::NetworkPolicy::allow();
    g.bench_function("policy_decide", |b| {
        b.iter(|| {
            let d = shardflow::policy::decide(black_box(&key4), 4, &allow, &ctx);
            d.messages(&syn).len()
        })
    });
    // The same flows the way the daemon built them before: text, then parsed (the oracle).
    g.bench_function("policy_decide_via_text", |b| {
        b.iter(|| {
            let (_, texts, _) = shardflow::policy::decision_texts(black_box(&key4), 4, &allow, &ctx);
            texts.iter().filter_map(|t| FlowMod::parse(t, FlowModCommand::Add).ok()).count()
        })
    });
    // The daemon's whole synchronous packet path, bytes in to bytes out: decode the PACKET_IN
    // (with the pipeline's reg0 mark and ct_state), extract the flow key, plan the decision,
    // build the typed flows and the packet-out (the frame moved, not copied), encode all three.
    let pkt_in_syn = {
        let pi = message::PacketIn {
            buffer_id: NO_BUFFER,
            total_len: syn.len() as u16,
            reason: 1,
            table_id: 3,
            cookie: 0,
            r#match: Match::new().with(Field::IN_PORT_OXM, 4).with(Field::reg(0), 0x4).with(Field::CT_STATE, 0x21),
            data: syn.clone(),
        };
        message::encode(&Message::PacketIn(pi), 9)
    };
    g.bench_function("daemon_decision_bytes_to_bytes", |b| {
        b.iter(|| {
            out.clear();
            let (_, msg) = message::decode(black_box(&pkt_in_syn)).expect("decodes");
            let Message::PacketIn(pi) = msg else { unreachable!("not a packet-in") };
            let in_port = pi.r#match.get(Field::IN_PORT_OXM).map(|e| e.value.to_u128() as u32).unwrap_or(0);
            let key = FlowKey::extract(in_port, &pi.data).expect("parses");
            let decided = shardflow::policy::plan(&key, in_port, &allow, &ctx);
            for (i, m) in decided.messages(&pipeline, pi.data).iter().enumerate() {
                message::encode_into(m, i as u32 + 1, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
