//! Lowering a parsed datapath flow into [`Requirements`], the terms a capability profile judges
//! (`Profile::judge`): which fields it really matches and under which mask kind, which actions
//! it runs, how deep in recirculation it sits, which conntrack zones it uses.
//!
//! A datapath flow already is what OVS hands to its offload provider, so the lowering is
//! nearly one to one (the OpenFlow side, `offload::lower`, has to guess at translation; this
//! side reads the result). [`DP_FIELDS`] is the one table from the datapath's key names
//! (`ipv4(src=..)`, `ct_tuple4(..)`, `tunnel(tun_id=..)`, after OVS's `format_odp_key_attr__`)
//! to the profiles' [`MatchField`]s. What it does not know (an `nsh(...)` key, a newer OVS's
//! attribute) goes into the requirements' notes, never silently away.
//!
//! Recirculation depth: a flow matching `recirc_id(N)` runs after the packet recirculated; how
//! many times is only known by following the dump's `recirc(N)` actions back to the first pass,
//! which [`lower_dump`] does. [`lower`] alone counts one pass for a non-zero `recirc_id`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{DpAction, DpActionKind, DpFlow, DpKey};
use crate::offload::requirement::{
    ActionReq, CtFlag, CtReq, MaskKind, MatchField, MatchReq, NatKind, OutputKind, Requirements,
};

use MatchField as M;

/// `(datapath key, field inside it or "" for the key's own value, profile field, width in
/// bits)`. The width classifies a hex mask (`tcp(src=80/0xf000)` is a 16-bit prefix);
/// addresses carry their own width.
pub static DP_FIELDS: &[(&str, &str, MatchField, u32)] = &[
    ("skb_priority", "", M::SkbPriority, 32),
    ("skb_mark", "", M::PktMark, 32),
    ("recirc_id", "", M::RecircId, 32),
    ("dp_hash", "", M::DpHash, 32),
    ("in_port", "", M::InPort, 32),
    ("packet_type", "ns", M::PacketType, 16),
    ("packet_type", "id", M::PacketType, 16),
    ("ct_state", "", M::CtState, 32),
    ("ct_zone", "", M::CtZone, 16),
    ("ct_mark", "", M::CtMark, 32),
    ("ct_label", "", M::CtLabel, 128),
    ("ct_tuple4", "src", M::CtTuple, 32),
    ("ct_tuple4", "dst", M::CtTuple, 32),
    ("ct_tuple4", "proto", M::CtTuple, 8),
    ("ct_tuple4", "tp_src", M::CtTuple, 16),
    ("ct_tuple4", "tp_dst", M::CtTuple, 16),
    ("ct_tuple6", "src", M::CtTuple, 128),
    ("ct_tuple6", "dst", M::CtTuple, 128),
    ("ct_tuple6", "proto", M::CtTuple, 8),
    ("ct_tuple6", "src_port", M::CtTuple, 16),
    ("ct_tuple6", "dst_port", M::CtTuple, 16),
    ("eth", "src", M::EthSrc, 48),
    ("eth", "dst", M::EthDst, 48),
    ("eth_type", "", M::EthType, 16),
    ("vlan", "vid", M::VlanVid, 12),
    ("vlan", "pcp", M::VlanPcp, 3),
    ("vlan", "cfi", M::VlanVid, 1),
    ("mpls", "label", M::MplsLabel, 20),
    ("mpls", "tc", M::MplsTc, 3),
    ("mpls", "ttl", M::MplsTtl, 8),
    ("mpls", "bos", M::MplsBos, 1),
    ("ipv4", "src", M::Ipv4Src, 32),
    ("ipv4", "dst", M::Ipv4Dst, 32),
    ("ipv4", "proto", M::IpProto, 8),
    ("ipv4", "tos", M::IpTos, 8),
    ("ipv4", "ttl", M::IpTtl, 8),
    ("ipv4", "frag", M::IpFrag, 8),
    ("ipv6", "src", M::Ipv6Src, 128),
    ("ipv6", "dst", M::Ipv6Dst, 128),
    ("ipv6", "label", M::Ipv6Label, 20),
    ("ipv6", "proto", M::IpProto, 8),
    ("ipv6", "tclass", M::IpTos, 8),
    ("ipv6", "hlimit", M::IpTtl, 8),
    ("ipv6", "frag", M::IpFrag, 8),
    ("tcp", "src", M::TcpSrc, 16),
    ("tcp", "dst", M::TcpDst, 16),
    ("tcp_flags", "", M::TcpFlags, 12),
    ("udp", "src", M::UdpSrc, 16),
    ("udp", "dst", M::UdpDst, 16),
    ("sctp", "src", M::SctpSrc, 16),
    ("sctp", "dst", M::SctpDst, 16),
    ("icmp", "type", M::IcmpType, 8),
    ("icmp", "code", M::IcmpCode, 8),
    ("icmpv6", "type", M::Icmpv6Type, 8),
    ("icmpv6", "code", M::Icmpv6Code, 8),
    ("arp", "sip", M::ArpSpa, 32),
    ("arp", "tip", M::ArpTpa, 32),
    ("arp", "op", M::ArpOp, 16),
    ("arp", "sha", M::ArpSha, 48),
    ("arp", "tha", M::ArpTha, 48),
    ("nd", "target", M::NdTarget, 128),
    ("nd", "sll", M::NdSll, 48),
    ("nd", "tll", M::NdTll, 48),
    ("tunnel", "tun_id", M::TunId, 64),
    ("tunnel", "src", M::TunIpv4Src, 32),
    ("tunnel", "dst", M::TunIpv4Dst, 32),
    ("tunnel", "ipv6_src", M::TunIpv6Src, 128),
    ("tunnel", "ipv6_dst", M::TunIpv6Dst, 128),
    ("tunnel", "tos", M::TunTos, 8),
    ("tunnel", "ttl", M::TunTtl, 8),
    ("tunnel", "tp_src", M::TunTpSrc, 16),
    ("tunnel", "tp_dst", M::TunTpDst, 16),
    ("tunnel", "flags", M::TunFlags, 16),
    ("tunnel", "geneve", M::TunGeneveOpts, 0),
    ("tunnel", "vxlan", M::TunGbp, 0),
];

/// The profile field of datapath key `key`'s field `sub` (`""` for the key's own value), with
/// its width in bits; `None` for what the table does not know.
pub fn datapath_field(key: &str, sub: &str) -> Option<(MatchField, u32)> {
    DP_FIELDS.iter().find(|(k, s, _, _)| *k == key && *s == sub).map(|(_, _, f, w)| (*f, *w))
}

/// The requirements of one flow alone: a non-zero `recirc_id` counts as one recirculation
/// before it (see [`lower_dump`] for the depth along the dump's chain).
pub fn lower(flow: &DpFlow) -> Requirements {
    let before = u32::from(recirc_id(flow).is_some_and(|id| id != 0));
    lower_at(flow, before)
}

/// The requirements of every flow of a dump, in order, with each flow's recirculation depth
/// taken from the chain: a flow matching `recirc_id(N)` is one pass deeper than the shallowest
/// flow whose actions `recirc(N)` (one deep when no such flow is in the dump: it expired).
pub fn lower_dump(flows: &[DpFlow]) -> Vec<Requirements> {
    let links: Vec<RecircLinks> = flows.iter().map(RecircLinks::of).collect();
    flows.iter().zip(chain_depths(&links)).map(|(f, d)| lower_at(f, d)).collect()
}

/// What the recirculation chain needs of one flow: the pass it serves and the passes it
/// starts. Small, so a long dump can be judged without keeping its parsed flows
/// ([`lower_first_pass`], then [`chain_depths`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecircLinks {
    /// `recirc_id(N)` matched (0: the first pass).
    pub recirc_id: u32,
    /// The ids of its `recirc(N)` actions, nested ones included.
    pub recircs: Vec<u32>,
}

impl RecircLinks {
    pub fn of(flow: &DpFlow) -> RecircLinks {
        let recircs = all_actions(&flow.actions)
            .iter()
            .filter(|a| a.kind() == DpActionKind::Recirc)
            .filter_map(|a| a.value.as_deref().and_then(parse_u32))
            .collect();
        RecircLinks { recirc_id: recirc_id(flow).unwrap_or(0), recircs }
    }
}

/// A flow's requirements without the passes before it (its own `recirc` actions counted), to
/// be completed with [`chain_depths`]: `requirements.recirculations += depth`.
pub fn lower_first_pass(flow: &DpFlow) -> Requirements {
    lower_at(flow, 0)
}

/// For each flow, the recirculations before it: 0 on the first pass, else one more than the
/// shallowest flow recirculating into its `recirc_id` (1 when none is in the dump: it expired).
pub fn chain_depths(links: &[RecircLinks]) -> Vec<u32> {
    // recirc id -> the flows that recirculate into it.
    let mut parents: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, l) in links.iter().enumerate() {
        for id in &l.recircs {
            parents.entry(*id).or_default().push(i);
        }
    }
    // Depth by relaxation: each round takes, per recirc id, the shallowest flow recirculating
    // into it (linear in flows and recirc actions, however many flows share an id: thousands
    // of connections' first passes share the one id of the rule they froze in), bounded in
    // rounds (a chain is a few passes deep; a cycle in a stale dump cannot grow it further).
    let cap = (links.len() as u32).saturating_add(1);
    let mut depth: Vec<u32> = links.iter().map(|l| u32::from(l.recirc_id != 0)).collect();
    for _ in 0..64 {
        let via: HashMap<u32, u32> =
            parents.iter().map(|(id, ps)| (*id, ps.iter().map(|p| depth[*p]).min().unwrap_or(0))).collect();
        let mut changed = false;
        for (i, l) in links.iter().enumerate() {
            if l.recirc_id == 0 {
                continue;
            }
            let want = via.get(&l.recirc_id).map_or(1, |d| d.saturating_add(1)).min(cap);
            if want != depth[i] {
                depth[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

fn lower_at(flow: &DpFlow, before: u32) -> Requirements {
    let mut req = Requirements { recirculations: before, ..Default::default() };
    lower_keys(&flow.keys, "", &mut req);
    let in_port = flow.key("in_port").and_then(|k| k.value.clone());
    for a in &flow.actions {
        lower_action(a, in_port.as_deref(), &mut req);
    }
    req
}

fn recirc_id(flow: &DpFlow) -> Option<u32> {
    flow.key("recirc_id").and_then(|k| k.value.as_deref()).and_then(parse_u32)
}

/// Every action, nested ones included (`clone(...)`, `sample(...)`, `check_pkt_len(...)`).
fn all_actions(actions: &[DpAction]) -> Vec<DpAction> {
    let mut out = Vec::new();
    for a in actions {
        out.push(a.clone());
        out.extend(all_actions(&a.sub_actions()));
    }
    out
}

// === matches ===

fn lower_keys(keys: &[DpKey], prefix: &str, req: &mut Requirements) {
    for k in keys {
        if k.is_wildcard() {
            continue;
        }
        let name = k.name.as_str();
        match name {
            // The inner headers of a VLAN-tagged packet: the same keys, one level down.
            "encap" => lower_keys(&k.nested, &format!("{prefix}encap."), req),
            // `eth()`: Ethernet present, every field wildcarded.
            "eth" if k.nested.is_empty() && k.value.is_none() => {}
            // An Ethernet frame (namespace 0, type 0) is what every datapath takes.
            "packet_type" if is_ethernet_packet_type(k) => {}
            // recirc_id(0) is the first pass: no recirculation to match.
            "recirc_id" if k.value.as_deref().and_then(parse_u32) == Some(0) => {}
            "ct_state" => req.add_match(ct_state(k)),
            "tunnel" => {
                for sub in k.nested.iter().filter(|s| !s.is_wildcard()) {
                    field_match(req, "tunnel", sub, &format!("{prefix}tunnel"));
                }
            }
            _ if k.nested.is_empty() => {
                if name == "ct_zone" {
                    if let Some(z) = k.value.as_deref().and_then(parse_u32).and_then(|z| u16::try_from(z).ok()) {
                        req.add_zone(z);
                    }
                }
                match datapath_field(name, "") {
                    Some((field, bits)) => req.add_match(MatchReq::new(field, key_mask_kind(k, bits))),
                    None => req.notes.push(format!("datapath key {prefix}{name} is not modelled by the profiles")),
                }
            }
            _ => {
                for sub in k.nested.iter().filter(|s| !s.is_wildcard()) {
                    field_match(req, name, sub, &format!("{prefix}{name}"));
                }
            }
        }
    }
}

fn field_match(req: &mut Requirements, key: &str, sub: &DpKey, path: &str) {
    match datapath_field(key, &sub.name) {
        // Geneve options and VXLAN-GBP are structured: any match on them is the field.
        Some((field, 0)) => req.add_match(MatchReq::new(field, MaskKind::Exact)),
        Some((field, bits)) => req.add_match(MatchReq::new(field, key_mask_kind(sub, bits))),
        None => req.notes.push(format!("datapath key {path}.{} is not modelled by the profiles", sub.name)),
    }
}

fn is_ethernet_packet_type(k: &DpKey) -> bool {
    let zero = |n: &str| k.get(n).and_then(|f| f.value.as_deref()).and_then(parse_u32) == Some(0);
    zero("ns") && zero("id")
}

/// `ct_state(0x21/0x3f)` (with `-m`), `ct_state(+new-est+trk)` (masked, without) or
/// `ct_state(new|trk)` (exact, without): the flags that must be set and those that must be
/// clear.
fn ct_state(k: &DpKey) -> MatchReq {
    let v = k.value.as_deref().unwrap_or("");
    if let Some(bits) = parse_u32(v) {
        let mask = k.mask.as_deref().and_then(parse_u32).unwrap_or(0xff);
        return MatchReq::ct_state(CtFlag::from_bits(bits & mask), CtFlag::from_bits(mask & !bits & 0xff));
    }
    let (mut on, mut off) = (Vec::new(), Vec::new());
    if v.contains(['+', '-']) {
        let mut sign = '+';
        let mut word = String::new();
        for ch in v.chars().chain(std::iter::once('+')) {
            if ch == '+' || ch == '-' {
                if let Some(f) = CtFlag::from_name(&word) {
                    if sign == '+' {
                        on.push(f)
                    } else {
                        off.push(f)
                    }
                }
                word.clear();
                sign = ch;
            } else {
                word.push(ch);
            }
        }
    } else {
        on = v.split('|').filter_map(CtFlag::from_name).collect();
        off = CtFlag::ALL.iter().copied().filter(|f| !on.contains(f)).collect();
    }
    MatchReq::ct_state(on, off)
}

/// The mask kind of a key or field: its printed mask's, except for flags written with signs
/// (`tcp_flags(+syn-ack)`, `flags(-df+csum)` without `-m`): some bits matched, others not.
fn key_mask_kind(k: &DpKey, bits: u32) -> MaskKind {
    match (&k.mask, k.value.as_deref()) {
        (None, Some(v)) if v.starts_with(['+', '-']) => MaskKind::Arbitrary,
        (m, _) => mask_kind(m.as_deref(), bits),
    }
}

/// The kind of a printed mask: none is exact; an address or a number of `bits` bits is exact
/// when all ones, a prefix when ones then zeros, arbitrary otherwise. A mask that does not
/// parse is taken as arbitrary (the strictest kind).
pub(crate) fn mask_kind(mask: Option<&str>, bits: u32) -> MaskKind {
    let Some(m) = mask else { return MaskKind::Exact };
    let (value, width): (u128, u32) = if let Ok(a) = m.parse::<Ipv4Addr>() {
        (u128::from(u32::from(a)), 32)
    } else if let Some(mac) = parse_mac(m) {
        (mac, 48)
    } else if let Ok(a) = m.parse::<Ipv6Addr>() {
        (u128::from(a), 128)
    } else if let Some(n) = parse_u128(m) {
        (n, bits.clamp(1, 128))
    } else {
        return MaskKind::Arbitrary;
    };
    let all = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    let v = value & all;
    if v == all {
        return MaskKind::Exact;
    }
    // Ones then zeros within the width: the complement is a run of low ones.
    let low = !v & all;
    if low & (low.wrapping_add(1)) == 0 {
        MaskKind::Prefix
    } else {
        MaskKind::Arbitrary
    }
}

fn parse_mac(s: &str) -> Option<u128> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    parts.iter().try_fold(0u128, |acc, p| u8::from_str_radix(p, 16).ok().map(|b| (acc << 8) | u128::from(b)))
}

fn parse_u128(s: &str) -> Option<u128> {
    match s.strip_prefix("0x") {
        Some(h) => u128::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    parse_u128(s).and_then(|n| u32::try_from(n).ok())
}

// === actions ===

fn lower_action(a: &DpAction, in_port: Option<&str>, req: &mut Requirements) {
    use DpActionKind as K;
    let push = |req: &mut Requirements, r: ActionReq| req.actions.push(r);
    match a.kind() {
        K::Output => {
            let to = if Some(a.name.as_str()) == in_port { OutputKind::InPort } else { OutputKind::Port };
            push(req, ActionReq::Output { to });
        }
        K::Drop => push(req, ActionReq::Drop),
        K::Ct => {
            let ct = ct_req(a);
            if let Some(z) = ct.zone {
                req.add_zone(z);
            }
            push(req, ActionReq::Ct(ct));
        }
        K::CtClear => push(req, ActionReq::CtClear),
        K::Recirc => {
            push(req, ActionReq::Recirculate);
            req.recirculations = req.recirculations.saturating_add(1);
        }
        K::Set => lower_set(a, req),
        K::PushVlan => push(req, ActionReq::PushVlan),
        K::PopVlan => push(req, ActionReq::PopVlan),
        K::PushMpls => push(req, ActionReq::PushMpls),
        K::PopMpls => push(req, ActionReq::PopMpls),
        K::TunnelPush => push(req, ActionReq::TunnelPush),
        K::TunnelPop => push(req, ActionReq::TunnelPop),
        K::Userspace => {
            let r = if a.arg("controller").is_some() { ActionReq::Controller } else { ActionReq::Userspace };
            push(req, r);
        }
        K::Meter => push(req, ActionReq::Meter),
        K::Hash => push(req, ActionReq::Hash),
        K::Trunc => push(req, ActionReq::Truncate),
        K::DecTtl => push(req, ActionReq::DecTtl),
        K::Clone | K::Sample | K::CheckPktLen => {
            push(
                req,
                match a.kind() {
                    K::Clone => ActionReq::Clone,
                    K::Sample => ActionReq::Sample,
                    _ => ActionReq::CheckPktLen,
                },
            );
            // The nested actions run too (on the copy, the sample, the branch taken).
            for s in a.sub_actions() {
                lower_action(&s, in_port, req);
            }
        }
        K::PushEth | K::PopEth | K::Other => push(req, ActionReq::Other { name: a.name.clone() }),
    }
}

fn ct_req(a: &DpAction) -> CtReq {
    let nat = a.arg("nat").map(|n| {
        // `nat(src=..)`, `nat(dst=..)`, `nat(src)`; bare `nat` reverses an existing translation.
        let kind = n.value.as_deref().or_else(|| n.nested.first().map(|x| x.name.as_str()));
        match kind {
            Some("src") => NatKind::Src,
            Some("dst") => NatKind::Dst,
            _ => NatKind::Reverse,
        }
    });
    let alg = a.arg("helper").and_then(|h| h.value.as_deref()).map(|h| match h {
        "ftp" => 21,
        "tftp" => 69,
        _ => 0,
    });
    CtReq {
        zone: a.arg("zone").and_then(|z| z.value.as_deref()).and_then(parse_u32).and_then(|z| u16::try_from(z).ok()),
        zone_from_field: false,
        commit: a.arg("commit").is_some(),
        force: a.arg("force_commit").is_some(),
        nat,
        set_mark: a.arg("mark").is_some(),
        set_label: a.arg("label").is_some(),
        alg,
        recirculates: false,
    }
}

/// `set(KEY(field=value[/mask],...))`: one rewrite per field written; `set(tunnel(...))` is
/// tunnel encapsulation metadata; `set(skb_priority(..))` is a queue.
fn lower_set(a: &DpAction, req: &mut Requirements) {
    let Some(inner) = a.args.first() else {
        req.actions.push(ActionReq::Other { name: "set".to_string() });
        return;
    };
    match inner.name.as_str() {
        "tunnel" => {
            let ipv6 = inner.get("ipv6_dst").is_some() || inner.get("ipv6_src").is_some();
            req.actions.push(ActionReq::TunnelEncap { ipv6 });
        }
        "skb_priority" => req.actions.push(ActionReq::SetQueue),
        key if inner.nested.is_empty() => match datapath_field(key, "") {
            Some((field, _)) => req.actions.push(ActionReq::SetField { field, masked: inner.is_masked() }),
            None => req.actions.push(ActionReq::Other { name: format!("set({key})") }),
        },
        key => {
            for f in inner.nested.iter().filter(|f| !f.is_wildcard()) {
                match datapath_field(key, &f.name) {
                    Some((field, _)) => req.actions.push(ActionReq::SetField { field, masked: f.is_masked() }),
                    None => req.actions.push(ActionReq::Other { name: format!("set({key}.{})", f.name) }),
                }
            }
        }
    }
}
