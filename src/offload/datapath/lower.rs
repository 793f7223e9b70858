//! Lowering a datapath flow into profile-neutral needs: which fields it really matches (and
//! whether with a mask), which actions it takes, at which recirculation pass.
//!
//! Datapath keys have their own names (`ipv4(src=..)`, `tcp(dst=..)`, `ct_tuple4(..)`,
//! `tunnel(tun_id=..)`); the capability profiles speak the codec's OpenFlow field names
//! (`ip_src`, `tcp_dst`, `ct_nw_src`, `tun_id`: `openflow::field`). [`DP_FIELDS`] is the one
//! table between the two, so the datapath view is judged by the same profile facts as the
//! OpenFlow view, never by a second copy of them. Keys that have no OpenFlow field (the
//! datapath's own metadata, e.g. `skb_priority`, or tunnel options the codec does not model)
//! lower to [`DpFieldName::DatapathOnly`] with a descriptive name.

use super::{DpAction, DpActionKind, DpFlow, DpKey, Form};

/// A datapath key field in the codec's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DpFieldName {
    /// An OpenFlow field of the codec (`openflow::field::Field::from_name` knows it).
    Field(&'static str),
    /// A datapath attribute with no OpenFlow field of the codec.
    DatapathOnly(&'static str),
}

impl DpFieldName {
    pub fn name(self) -> &'static str {
        match self {
            DpFieldName::Field(n) | DpFieldName::DatapathOnly(n) => n,
        }
    }
}

use DpFieldName::{DatapathOnly as D, Field as F};

/// `(datapath key, field inside it or "" for the key's own value, name)`, after OVS's
/// `format_odp_key_attr__` (key and field names) and `include/openvswitch/meta-flow.h` (the
/// OpenFlow field each datapath attribute carries).
pub static DP_FIELDS: &[(&str, &str, DpFieldName)] = &[
    ("skb_priority", "", D("skb_priority")),
    ("skb_mark", "", F("pkt_mark")),
    ("recirc_id", "", F("recirc_id")),
    ("dp_hash", "", F("dp_hash")),
    ("in_port", "", F("in_port")),
    ("packet_type", "", D("packet_type")),
    ("packet_type", "ns", D("packet_type")),
    ("packet_type", "id", D("packet_type")),
    ("ct_state", "", F("ct_state")),
    ("ct_zone", "", F("ct_zone")),
    ("ct_mark", "", F("ct_mark")),
    ("ct_label", "", F("ct_label")),
    ("ct_tuple4", "src", F("ct_nw_src")),
    ("ct_tuple4", "dst", F("ct_nw_dst")),
    ("ct_tuple4", "proto", F("ct_nw_proto")),
    ("ct_tuple4", "tp_src", F("ct_tp_src")),
    ("ct_tuple4", "tp_dst", F("ct_tp_dst")),
    ("ct_tuple6", "src", F("ct_ipv6_src")),
    ("ct_tuple6", "dst", F("ct_ipv6_dst")),
    ("ct_tuple6", "proto", F("ct_nw_proto")),
    ("ct_tuple6", "src_port", F("ct_tp_src")),
    ("ct_tuple6", "dst_port", F("ct_tp_dst")),
    ("eth", "src", F("eth_src")),
    ("eth", "dst", F("eth_dst")),
    ("eth_type", "", F("eth_type")),
    ("vlan", "vid", F("vlan_vid")),
    ("vlan", "pcp", F("vlan_pcp")),
    ("vlan", "cfi", F("vlan_tci")),
    ("mpls", "label", F("mpls_label")),
    ("mpls", "tc", F("mpls_tc")),
    ("mpls", "ttl", F("mpls_ttl")),
    ("mpls", "bos", F("mpls_bos")),
    ("ipv4", "src", F("ip_src")),
    ("ipv4", "dst", F("ip_dst")),
    ("ipv4", "proto", F("nw_proto")),
    ("ipv4", "tos", F("nw_tos")),
    ("ipv4", "ttl", F("nw_ttl")),
    ("ipv4", "frag", F("ip_frag")),
    ("ipv6", "src", F("ipv6_src")),
    ("ipv6", "dst", F("ipv6_dst")),
    ("ipv6", "label", F("ipv6_label")),
    ("ipv6", "proto", F("nw_proto")),
    ("ipv6", "tclass", F("nw_tos")),
    ("ipv6", "hlimit", F("nw_ttl")),
    ("ipv6", "frag", F("ip_frag")),
    ("tcp", "src", F("tcp_src")),
    ("tcp", "dst", F("tcp_dst")),
    ("tcp_flags", "", F("tcp_flags")),
    ("udp", "src", F("udp_src")),
    ("udp", "dst", F("udp_dst")),
    ("sctp", "src", F("sctp_src")),
    ("sctp", "dst", F("sctp_dst")),
    ("icmp", "type", F("icmp_type")),
    ("icmp", "code", F("icmp_code")),
    ("icmpv6", "type", F("icmpv6_type")),
    ("icmpv6", "code", F("icmpv6_code")),
    ("arp", "sip", F("arp_spa")),
    ("arp", "tip", F("arp_tpa")),
    ("arp", "op", F("arp_op")),
    ("arp", "sha", F("arp_sha")),
    ("arp", "tha", F("arp_tha")),
    ("nd", "target", F("nd_target")),
    ("nd", "sll", F("nd_sll")),
    ("nd", "tll", F("nd_tll")),
    ("nd_ext", "nd_reserved", D("nd_reserved")),
    ("nd_ext", "nd_options_type", D("nd_options_type")),
    ("tunnel", "tun_id", F("tun_id")),
    ("tunnel", "src", F("tun_src")),
    ("tunnel", "dst", F("tun_dst")),
    ("tunnel", "ipv6_src", F("tun_ipv6_src")),
    ("tunnel", "ipv6_dst", F("tun_ipv6_dst")),
    ("tunnel", "flags", F("tun_flags")),
    ("tunnel", "tos", D("tun_tos")),
    ("tunnel", "ttl", D("tun_ttl")),
    ("tunnel", "tp_src", D("tun_tp_src")),
    ("tunnel", "tp_dst", D("tun_tp_dst")),
    ("tunnel", "geneve", D("tun_metadata")),
    ("tunnel", "vxlan", F("tun_gbp_id")),
    ("tunnel", "erspan", D("tun_erspan")),
    ("tunnel", "gtpu", D("tun_gtpu")),
    ("nsh", "", D("nsh")),
];

/// The name of datapath key `key`'s field `sub` (`""` for the key's own value); `None` for a
/// key this table does not know (an unknown `keyN(...)`).
pub fn datapath_field(key: &str, sub: &str) -> Option<DpFieldName> {
    DP_FIELDS.iter().find(|(k, s, _)| *k == key && *s == sub).map(|(_, _, n)| *n)
}

/// One field a datapath flow really matches on (its mask is not all zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpMatchNeed {
    pub field: DpFieldName,
    /// Where it sits in the dump (`ipv4.src`, `in_port`), for the explanation.
    pub path: String,
    pub value: String,
    /// `None` when matched exactly; the mask as printed otherwise.
    pub mask: Option<String>,
}

/// One action of a datapath flow, in offload terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpActionNeed {
    Output {
        port: String,
    },
    Drop,
    Ct {
        commit: bool,
        zone: Option<u16>,
        nat: bool,
        mark: bool,
        label: bool,
        helper: Option<String>,
    },
    CtClear,
    Recirc {
        id: u32,
    },
    /// A header rewrite (`set(eth(dst=..))`): one per field written; `masked` for a partial
    /// rewrite (`set(ipv4(src=../255.255.255.0))`).
    SetField {
        field: DpFieldName,
        masked: bool,
    },
    /// `set(tunnel(...))` (kernel) or `tnl_push(...)` (userspace): encapsulation.
    TunnelEncap,
    /// `tnl_pop(PORT)`: decapsulation in the userspace datapath.
    TunnelDecap,
    PushVlan,
    PopVlan,
    PushMpls,
    PopMpls,
    /// `userspace(...)`: the packet goes up to ovs-vswitchd; `why` is `controller`,
    /// `slow_path(...)`, `sFlow`, `ipfix`, `flow_sample` or `userdata`.
    Userspace {
        why: String,
    },
    Meter {
        id: u32,
    },
    /// `sample(...)` / `clone(...)` / `check_pkt_len(...)` / `dec_ttl(...)`, with the actions
    /// inside lowered too.
    Nested {
        name: String,
        actions: Vec<DpActionNeed>,
    },
    /// Anything else (`hash`, `trunc`, `lb_output`, `push_nsh`, unknown `actionN`).
    Other {
        name: String,
    },
}

/// A datapath flow lowered: what a profile needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpNeeds {
    /// The recirculation pass this flow serves (`recirc_id(0x1)`); 0 is the first pass.
    pub recirc_id: u32,
    pub matches: Vec<DpMatchNeed>,
    pub actions: Vec<DpActionNeed>,
    /// Key names this table does not know (a newer OVS), left out of `matches`.
    pub unknown_keys: Vec<String>,
}

/// Lowers a parsed flow into its needs.
pub fn lower(flow: &DpFlow) -> DpNeeds {
    let mut needs = DpNeeds { recirc_id: 0, matches: Vec::new(), actions: Vec::new(), unknown_keys: Vec::new() };
    if let Some(r) = flow.key("recirc_id").and_then(|k| k.value.as_deref()) {
        needs.recirc_id = parse_u32(r).unwrap_or(0);
    }
    lower_keys(&flow.keys, "", &mut needs);
    needs.actions = flow.actions.iter().map(lower_action).collect();
    needs
}

fn lower_keys(keys: &[DpKey], prefix: &str, needs: &mut DpNeeds) {
    for k in keys {
        if k.is_wildcard() {
            continue;
        }
        match k.name.as_str() {
            // The inner headers of a VLAN-tagged packet: the same keys, one level down.
            "encap" => lower_keys(&k.nested, &format!("{prefix}encap."), needs),
            // An Ethernet frame (namespace 0, type 0) is what every profile takes: no need.
            "packet_type" if is_ethernet_packet_type(k) => {}
            // `eth()`: present, every field wildcarded.
            "eth" if k.nested.is_empty() && k.value.is_none() => {}
            "tunnel" => lower_tunnel(k, prefix, needs),
            name => {
                if k.nested.is_empty() {
                    match datapath_field(name, "") {
                        Some(field) => needs.matches.push(need(field, format!("{prefix}{name}"), k)),
                        None => needs.unknown_keys.push(format!("{prefix}{name}")),
                    }
                    continue;
                }
                for sub in k.nested.iter().filter(|s| !s.is_wildcard()) {
                    let path = format!("{prefix}{name}.{}", sub.name);
                    match datapath_field(name, &sub.name) {
                        Some(field) => needs.matches.push(need(field, path, sub)),
                        None => needs.unknown_keys.push(path),
                    }
                }
            }
        }
    }
}

fn lower_tunnel(k: &DpKey, prefix: &str, needs: &mut DpNeeds) {
    for sub in k.nested.iter().filter(|s| !s.is_wildcard()) {
        let path = format!("{prefix}tunnel.{}", sub.name);
        // `vxlan(gbp(id=..,flags=..))`: the group policy id and flags.
        if sub.name == "vxlan" {
            for g in sub.nested.iter().flat_map(|g| g.nested.iter()).filter(|f| !f.is_wildcard()) {
                let field = if g.name == "flags" { F("tun_gbp_flags") } else { F("tun_gbp_id") };
                needs.matches.push(need(field, format!("{path}.gbp.{}", g.name), g));
            }
            continue;
        }
        match datapath_field("tunnel", &sub.name) {
            Some(field) => needs.matches.push(need(field, path, sub)),
            None => needs.unknown_keys.push(path),
        }
    }
}

fn is_ethernet_packet_type(k: &DpKey) -> bool {
    let zero = |n: &str| k.get(n).and_then(|f| f.value.as_deref()).is_some_and(|v| parse_u32(v) == Some(0));
    zero("ns") && zero("id")
}

fn need(field: DpFieldName, path: String, k: &DpKey) -> DpMatchNeed {
    let value = match (&k.value, k.nested.is_empty()) {
        (Some(v), _) => v.clone(),
        (None, _) => k.nested.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
    };
    DpMatchNeed { field, path, value, mask: k.mask.clone().filter(|_| k.is_masked()) }
}

fn lower_action(a: &DpAction) -> DpActionNeed {
    use DpActionKind as K;
    match a.kind() {
        K::Output => DpActionNeed::Output { port: a.name.clone() },
        K::Drop => DpActionNeed::Drop,
        K::Ct => DpActionNeed::Ct {
            commit: a.arg("commit").is_some() || a.arg("force_commit").is_some(),
            zone: a
                .arg("zone")
                .and_then(|z| z.value.as_deref())
                .and_then(parse_u32)
                .and_then(|z| u16::try_from(z).ok()),
            nat: a.arg("nat").is_some(),
            mark: a.arg("mark").is_some(),
            label: a.arg("label").is_some(),
            helper: a.arg("helper").and_then(|h| h.value.clone()),
        },
        K::CtClear => DpActionNeed::CtClear,
        K::Recirc => DpActionNeed::Recirc { id: a.value.as_deref().and_then(parse_u32).unwrap_or(0) },
        K::Set => lower_set(a),
        K::PushVlan => DpActionNeed::PushVlan,
        K::PopVlan => DpActionNeed::PopVlan,
        K::PushMpls => DpActionNeed::PushMpls,
        K::PopMpls => DpActionNeed::PopMpls,
        K::TunnelPush => DpActionNeed::TunnelEncap,
        K::TunnelPop => DpActionNeed::TunnelDecap,
        K::Userspace => {
            // `userspace(pid=N,controller(...))`: the reason is the first bracketed argument.
            let why = a
                .args
                .iter()
                .find(|x| x.form == Form::Call)
                .map(|x| match (x.name.as_str(), &x.value) {
                    ("slow_path", Some(v)) => format!("slow_path({v})"),
                    (n, _) => n.to_string(),
                })
                .unwrap_or_else(|| "userspace".to_string());
            DpActionNeed::Userspace { why }
        }
        K::Meter => DpActionNeed::Meter { id: a.value.as_deref().and_then(parse_u32).unwrap_or(0) },
        K::Clone | K::Sample | K::CheckPktLen | K::DecTtl => {
            DpActionNeed::Nested { name: a.name.clone(), actions: a.sub_actions().iter().map(lower_action).collect() }
        }
        K::PushEth | K::PopEth | K::Hash | K::Trunc | K::Other => DpActionNeed::Other { name: a.name.clone() },
    }
}

/// `set(KEY(field=value[/mask],...))`: one rewrite per field; `set(tunnel(...))` is an
/// encapsulation. Several fields of one header in one set are separate rewrites to a profile.
fn lower_set(a: &DpAction) -> DpActionNeed {
    let Some(inner) = a.args.first() else {
        return DpActionNeed::Other { name: "set".to_string() };
    };
    if inner.name == "tunnel" {
        return DpActionNeed::TunnelEncap;
    }
    let fields: Vec<DpActionNeed> = if inner.nested.is_empty() {
        datapath_field(&inner.name, "")
            .map(|field| DpActionNeed::SetField { field, masked: inner.is_masked() })
            .into_iter()
            .collect()
    } else {
        inner
            .nested
            .iter()
            .filter(|f| !f.is_wildcard())
            .map(|f| match datapath_field(&inner.name, &f.name) {
                Some(field) => DpActionNeed::SetField { field, masked: f.is_masked() },
                None => DpActionNeed::Other { name: format!("set({}.{})", inner.name, f.name) },
            })
            .collect()
    };
    match fields.len() {
        0 => DpActionNeed::Other { name: format!("set({})", inner.name) },
        1 => fields.into_iter().next().unwrap_or(DpActionNeed::Other { name: "set".to_string() }),
        _ => DpActionNeed::Nested { name: "set".to_string(), actions: fields },
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
