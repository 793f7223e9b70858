//! What a flow asks of a datapath: the fields it matches (and how they are masked), the actions
//! it runs (with the parameters that decide offload), how many recirculations it needs and the
//! conntrack zones it uses.
//!
//! This is the common ground between the two things shardflow judges: an OpenFlow flow (lowered
//! by [`super::lower`], as far as one flow tells what OVS's translation will make of it) and a
//! datapath flow from `ovs-appctl dpctl/dump-flows -m` (lowered by the datapath parser). Both are
//! described in *datapath* terms, the terms OVS hands to its offload provider (`struct match` and
//! `OVS_ACTION_ATTR_*` in `lib/netdev-offload-tc.c`): OpenFlow-only things (registers, metadata,
//! `goto_table`, `resubmit`) never appear here, because OVS folds them away before a datapath
//! flow exists. A [`super::Profile`] then judges a `Requirements` into a [`super::Verdict`].

use serde::Serialize;
use std::fmt;

/// A field a datapath flow can match, named as OVS's datapath flow keys name it (lower case, as
/// in the capability profiles' `[match.NAME]` tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchField {
    InPort,
    RecircId,
    DpHash,
    SkbPriority,
    PktMark,
    ConjId,
    ActsetOutput,
    PacketType,
    EthSrc,
    EthDst,
    EthType,
    VlanVid,
    VlanPcp,
    /// A second (inner, 802.1ad) VLAN header.
    Cvlan,
    MplsLabel,
    MplsTc,
    MplsBos,
    MplsTtl,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    IpProto,
    /// DSCP and ECN (the IPv4 TOS / IPv6 traffic class byte).
    IpTos,
    IpTtl,
    IpFrag,
    TcpSrc,
    TcpDst,
    TcpFlags,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    IcmpType,
    IcmpCode,
    Icmpv6Type,
    Icmpv6Code,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    NdTarget,
    NdSll,
    NdTll,
    TunId,
    TunIpv4Src,
    TunIpv4Dst,
    TunIpv6Src,
    TunIpv6Dst,
    TunTos,
    TunTtl,
    TunTpSrc,
    TunTpDst,
    TunFlags,
    TunGbp,
    TunGeneveOpts,
    CtState,
    CtZone,
    CtMark,
    CtLabel,
    /// The original-direction tuple of the tracked connection (`ct_nw_src`, `ct_tp_dst`, ...).
    CtTuple,
}

impl MatchField {
    /// Every field, in declaration order (profiles are checked to name only these).
    pub const ALL: &'static [MatchField] = &[
        MatchField::InPort,
        MatchField::RecircId,
        MatchField::DpHash,
        MatchField::SkbPriority,
        MatchField::PktMark,
        MatchField::ConjId,
        MatchField::ActsetOutput,
        MatchField::PacketType,
        MatchField::EthSrc,
        MatchField::EthDst,
        MatchField::EthType,
        MatchField::VlanVid,
        MatchField::VlanPcp,
        MatchField::Cvlan,
        MatchField::MplsLabel,
        MatchField::MplsTc,
        MatchField::MplsBos,
        MatchField::MplsTtl,
        MatchField::Ipv4Src,
        MatchField::Ipv4Dst,
        MatchField::Ipv6Src,
        MatchField::Ipv6Dst,
        MatchField::Ipv6Label,
        MatchField::IpProto,
        MatchField::IpTos,
        MatchField::IpTtl,
        MatchField::IpFrag,
        MatchField::TcpSrc,
        MatchField::TcpDst,
        MatchField::TcpFlags,
        MatchField::UdpSrc,
        MatchField::UdpDst,
        MatchField::SctpSrc,
        MatchField::SctpDst,
        MatchField::IcmpType,
        MatchField::IcmpCode,
        MatchField::Icmpv6Type,
        MatchField::Icmpv6Code,
        MatchField::ArpOp,
        MatchField::ArpSpa,
        MatchField::ArpTpa,
        MatchField::ArpSha,
        MatchField::ArpTha,
        MatchField::NdTarget,
        MatchField::NdSll,
        MatchField::NdTll,
        MatchField::TunId,
        MatchField::TunIpv4Src,
        MatchField::TunIpv4Dst,
        MatchField::TunIpv6Src,
        MatchField::TunIpv6Dst,
        MatchField::TunTos,
        MatchField::TunTtl,
        MatchField::TunTpSrc,
        MatchField::TunTpDst,
        MatchField::TunFlags,
        MatchField::TunGbp,
        MatchField::TunGeneveOpts,
        MatchField::CtState,
        MatchField::CtZone,
        MatchField::CtMark,
        MatchField::CtLabel,
        MatchField::CtTuple,
    ];

    /// The name used in profiles and reasons (`ipv4_src`, `ct_state`).
    pub fn name(self) -> &'static str {
        match self {
            MatchField::InPort => "in_port",
            MatchField::RecircId => "recirc_id",
            MatchField::DpHash => "dp_hash",
            MatchField::SkbPriority => "skb_priority",
            MatchField::PktMark => "pkt_mark",
            MatchField::ConjId => "conj_id",
            MatchField::ActsetOutput => "actset_output",
            MatchField::PacketType => "packet_type",
            MatchField::EthSrc => "eth_src",
            MatchField::EthDst => "eth_dst",
            MatchField::EthType => "eth_type",
            MatchField::VlanVid => "vlan_vid",
            MatchField::VlanPcp => "vlan_pcp",
            MatchField::Cvlan => "cvlan",
            MatchField::MplsLabel => "mpls_label",
            MatchField::MplsTc => "mpls_tc",
            MatchField::MplsBos => "mpls_bos",
            MatchField::MplsTtl => "mpls_ttl",
            MatchField::Ipv4Src => "ipv4_src",
            MatchField::Ipv4Dst => "ipv4_dst",
            MatchField::Ipv6Src => "ipv6_src",
            MatchField::Ipv6Dst => "ipv6_dst",
            MatchField::Ipv6Label => "ipv6_label",
            MatchField::IpProto => "ip_proto",
            MatchField::IpTos => "ip_tos",
            MatchField::IpTtl => "ip_ttl",
            MatchField::IpFrag => "ip_frag",
            MatchField::TcpSrc => "tcp_src",
            MatchField::TcpDst => "tcp_dst",
            MatchField::TcpFlags => "tcp_flags",
            MatchField::UdpSrc => "udp_src",
            MatchField::UdpDst => "udp_dst",
            MatchField::SctpSrc => "sctp_src",
            MatchField::SctpDst => "sctp_dst",
            MatchField::IcmpType => "icmp_type",
            MatchField::IcmpCode => "icmp_code",
            MatchField::Icmpv6Type => "icmpv6_type",
            MatchField::Icmpv6Code => "icmpv6_code",
            MatchField::ArpOp => "arp_op",
            MatchField::ArpSpa => "arp_spa",
            MatchField::ArpTpa => "arp_tpa",
            MatchField::ArpSha => "arp_sha",
            MatchField::ArpTha => "arp_tha",
            MatchField::NdTarget => "nd_target",
            MatchField::NdSll => "nd_sll",
            MatchField::NdTll => "nd_tll",
            MatchField::TunId => "tun_id",
            MatchField::TunIpv4Src => "tun_ipv4_src",
            MatchField::TunIpv4Dst => "tun_ipv4_dst",
            MatchField::TunIpv6Src => "tun_ipv6_src",
            MatchField::TunIpv6Dst => "tun_ipv6_dst",
            MatchField::TunTos => "tun_tos",
            MatchField::TunTtl => "tun_ttl",
            MatchField::TunTpSrc => "tun_tp_src",
            MatchField::TunTpDst => "tun_tp_dst",
            MatchField::TunFlags => "tun_flags",
            MatchField::TunGbp => "tun_gbp",
            MatchField::TunGeneveOpts => "tun_geneve_opts",
            MatchField::CtState => "ct_state",
            MatchField::CtZone => "ct_zone",
            MatchField::CtMark => "ct_mark",
            MatchField::CtLabel => "ct_label",
            MatchField::CtTuple => "ct_tuple",
        }
    }

    /// The field a profile names, if any.
    pub fn from_name(name: &str) -> Option<MatchField> {
        MatchField::ALL.iter().copied().find(|f| f.name() == name)
    }
}

impl fmt::Display for MatchField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a field is masked. Ordered: a profile that allows `Arbitrary` allows `Prefix` and
/// `Exact` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// Every bit matched.
    Exact,
    /// The high bits matched, the low bits wild (an address prefix, `10.0.0.0/8`).
    Prefix,
    /// Any other bit pattern (`reg0=0x4/0x4`, `tp_dst=0x1000/0xf000`).
    Arbitrary,
}

impl MaskKind {
    /// The kind of a big-endian mask (`None`: no mask, an exact match).
    pub fn of_mask(mask: Option<&[u8]>) -> MaskKind {
        let Some(m) = mask else { return MaskKind::Exact };
        if m.iter().all(|b| *b == 0xff) {
            return MaskKind::Exact;
        }
        // A prefix: ones, then zeros, nothing else.
        let mut seen_zero = false;
        for b in m {
            for bit in (0..8).rev() {
                let one = b & (1 << bit) != 0;
                if one && seen_zero {
                    return MaskKind::Arbitrary;
                }
                if !one {
                    seen_zero = true;
                }
            }
        }
        MaskKind::Prefix
    }

    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Exact => "exact",
            MaskKind::Prefix => "prefix",
            MaskKind::Arbitrary => "arbitrary",
        }
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A conntrack state flag, as `ct_state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtFlag {
    New,
    Est,
    Rel,
    Rpl,
    Inv,
    Trk,
    Snat,
    Dnat,
}

impl CtFlag {
    /// In OVS's bit order (`CS_NEW` = bit 0 ... `CS_DST_NAT` = bit 7).
    pub const ALL: [CtFlag; 8] =
        [CtFlag::New, CtFlag::Est, CtFlag::Rel, CtFlag::Rpl, CtFlag::Inv, CtFlag::Trk, CtFlag::Snat, CtFlag::Dnat];

    pub fn name(self) -> &'static str {
        match self {
            CtFlag::New => "new",
            CtFlag::Est => "est",
            CtFlag::Rel => "rel",
            CtFlag::Rpl => "rpl",
            CtFlag::Inv => "inv",
            CtFlag::Trk => "trk",
            CtFlag::Snat => "snat",
            CtFlag::Dnat => "dnat",
        }
    }

    pub fn from_name(s: &str) -> Option<CtFlag> {
        CtFlag::ALL.iter().copied().find(|f| f.name() == s)
    }

    /// The flags set in OVS's `ct_state` bits (`CS_NEW` = 0x01 ... `CS_DST_NAT` = 0x80).
    pub fn from_bits(bits: u32) -> Vec<CtFlag> {
        CtFlag::ALL.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, f)| *f).collect()
    }
}

/// One matched field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchReq {
    pub field: MatchField,
    pub mask: MaskKind,
    /// For `ct_state`: the flags that must be set (`+est`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags_on: Vec<CtFlag>,
    /// For `ct_state`: the flags that must be clear (`-new`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags_off: Vec<CtFlag>,
}

impl MatchReq {
    pub fn new(field: MatchField, mask: MaskKind) -> MatchReq {
        MatchReq { field, mask, flags_on: Vec::new(), flags_off: Vec::new() }
    }

    /// A `ct_state` match: the flags that must be set and those that must be clear.
    pub fn ct_state(on: Vec<CtFlag>, off: Vec<CtFlag>) -> MatchReq {
        MatchReq { field: MatchField::CtState, mask: MaskKind::Arbitrary, flags_on: on, flags_off: off }
    }
}

/// The kind of NAT a `ct` action asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatKind {
    /// `nat` without arguments: reverse an existing connection's translation.
    Reverse,
    Src,
    Dst,
}

/// A `ct` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CtReq {
    /// The zone, when given as a number; `None` with `zone_from_field` (taken from a register at
    /// translation: the datapath flow then holds a number, but one flow cannot tell which).
    pub zone: Option<u16>,
    pub zone_from_field: bool,
    pub commit: bool,
    pub force: bool,
    pub nat: Option<NatKind>,
    /// `exec(set_field:..->ct_mark)`.
    pub set_mark: bool,
    /// `exec(set_field:..->ct_label)`.
    pub set_label: bool,
    /// An application-layer gateway (`alg=ftp`), as its L4 port.
    pub alg: Option<u16>,
    /// `ct(table=N)`: the packet recirculates after tracking.
    pub recirculates: bool,
}

/// What an output action sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A port of the bridge (a VF representor, an uplink, a tunnel port).
    Port,
    /// The port the packet came in on (hairpin).
    InPort,
    /// The bridge's internal port (`LOCAL`).
    Local,
    /// Several ports at once (`NORMAL`, `FLOOD`, `ALL`): OVS translates them into one output per
    /// port (`NORMAL` after MAC learning in ovs-vswitchd).
    Multiple,
}

/// One action of the datapath flow, with the parameters that decide whether it offloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionReq {
    Output {
        to: OutputKind,
    },
    /// An explicit drop (no actions at all is a drop too and needs no action).
    Drop,
    PushVlan,
    PopVlan,
    PushMpls,
    PopMpls,
    /// A header rewrite (`set_field`, `mod_*`, `load`/`move` into a packet field; datapath
    /// `set(...)`/`set_masked(...)`). `masked`: only some bits of the field are written.
    SetField {
        field: MatchField,
        masked: bool,
    },
    /// `dec_ttl`: OVS turns it into a masked TTL rewrite after an exact TTL match.
    DecTtl,
    /// Encapsulation metadata for a tunnel port (`set_field:..->tun_dst`, datapath
    /// `set(tunnel(...))`).
    TunnelEncap {
        ipv6: bool,
    },
    /// The userspace datapath's explicit tunnel push / pop (`tnl_push`, `tnl_pop`).
    TunnelPush,
    TunnelPop,
    Ct(CtReq),
    CtClear,
    /// A datapath recirculation (`recirc(N)`), other than the one `ct(table=N)` implies.
    Recirculate,
    /// An OpenFlow meter (`meter:N`; datapath `meter(N)`).
    Meter,
    /// An OpenFlow group: its buckets live in the group table, not in the flow.
    Group,
    /// Datapath hashing (`hash(...)`), as select groups with `dp_hash` use.
    Hash,
    Sample,
    /// `clone(...)`: actions on a copy of the packet.
    Clone,
    /// `output(port=..,max_len=..)`: a truncated copy.
    Truncate,
    CheckPktLen,
    /// Sent to the controller: the datapath's `userspace(...)` action (the slow path).
    Controller,
    /// `learn(...)`: executed by ovs-vswitchd at translation time (no datapath action; its
    /// reads are exact matches). Kept so that a profile can still refuse it.
    Learn,
    /// `fin_timeout(...)`: needs the TCP flags of every packet, from the datapath's statistics.
    FinTimeout,
    /// Another datapath `userspace(...)` action (sFlow, slow-path reasons, ...).
    Userspace,
    /// `set_queue` / `enqueue`: the datapath's `set(skb_priority(..))`.
    SetQueue,
    /// Anything else, by name (an action the lowering does not know).
    Other {
        name: String,
    },
}

impl ActionReq {
    /// The profile key of this action (`[actions.NAME]`), and its name in reasons.
    pub fn kind(&self) -> &str {
        match self {
            ActionReq::Output { to: OutputKind::Port } => "output",
            ActionReq::Output { to: OutputKind::InPort } => "output_in_port",
            ActionReq::Output { to: OutputKind::Local } => "output_local",
            ActionReq::Output { to: OutputKind::Multiple } => "output_multiple",
            ActionReq::Drop => "drop",
            ActionReq::PushVlan => "push_vlan",
            ActionReq::PopVlan => "pop_vlan",
            ActionReq::PushMpls => "push_mpls",
            ActionReq::PopMpls => "pop_mpls",
            ActionReq::SetField { .. } => "set_field",
            ActionReq::DecTtl => "dec_ttl",
            ActionReq::TunnelEncap { .. } => "tunnel_encap",
            ActionReq::TunnelPush => "tnl_push",
            ActionReq::TunnelPop => "tnl_pop",
            ActionReq::Ct(_) => "ct",
            ActionReq::CtClear => "ct_clear",
            ActionReq::Recirculate => "recirc",
            ActionReq::Meter => "meter",
            ActionReq::Group => "group",
            ActionReq::Hash => "hash",
            ActionReq::Sample => "sample",
            ActionReq::Clone => "clone",
            ActionReq::Truncate => "truncate",
            ActionReq::CheckPktLen => "check_pkt_len",
            ActionReq::Controller => "controller",
            ActionReq::Learn => "learn",
            ActionReq::FinTimeout => "fin_timeout",
            ActionReq::Userspace => "userspace",
            ActionReq::SetQueue => "set_queue",
            ActionReq::Other { name } => name,
        }
    }
}

/// Everything a flow asks of the datapath that decides whether hardware can run it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Requirements {
    pub matches: Vec<MatchReq>,
    pub actions: Vec<ActionReq>,
    /// Recirculations on the packet's way through this flow, counting those before it when
    /// known (a flow reached only after `ct(table=N)` is one deep already): `ct(table=N)` and
    /// datapath `recirc(N)` each count one; `goto_table` and `resubmit` count none.
    pub recirculations: u32,
    /// The conntrack zones the flow's `ct` actions and `ct_zone` match use, as numbers (a `ct`
    /// action's zone is judged from [`CtReq::zone`] as well; list it here too so that reports
    /// count the zones in use).
    pub ct_zones: Vec<u16>,
    /// What the lowering left out and why (register matches folded at translation, ...):
    /// explanations, not reasons against offload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Requirements {
    /// Adds a match, once per field (the strictest mask wins).
    pub fn add_match(&mut self, m: MatchReq) {
        if let Some(old) = self.matches.iter_mut().find(|o| o.field == m.field) {
            old.mask = old.mask.max(m.mask);
            for f in m.flags_on {
                if !old.flags_on.contains(&f) {
                    old.flags_on.push(f);
                }
            }
            for f in m.flags_off {
                if !old.flags_off.contains(&f) {
                    old.flags_off.push(f);
                }
            }
        } else {
            self.matches.push(m);
        }
    }

    pub fn add_zone(&mut self, zone: u16) {
        if !self.ct_zones.contains(&zone) {
            self.ct_zones.push(zone);
        }
    }

    pub fn has_match(&self, field: MatchField) -> bool {
        self.matches.iter().any(|m| m.field == field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_kinds() {
        assert_eq!(MaskKind::of_mask(None), MaskKind::Exact);
        assert_eq!(MaskKind::of_mask(Some(&[0xff, 0xff])), MaskKind::Exact);
        assert_eq!(MaskKind::of_mask(Some(&[0xff, 0xf0, 0, 0])), MaskKind::Prefix);
        assert_eq!(MaskKind::of_mask(Some(&[0, 0, 0, 0])), MaskKind::Prefix);
        assert_eq!(MaskKind::of_mask(Some(&[0, 0, 0, 4])), MaskKind::Arbitrary);
        assert_eq!(MaskKind::of_mask(Some(&[0xff, 0x0f])), MaskKind::Arbitrary);
    }

    #[test]
    fn field_names_round_trip() {
        for f in MatchField::ALL {
            assert_eq!(MatchField::from_name(f.name()), Some(*f));
        }
        assert_eq!(CtFlag::from_bits(0x21), vec![CtFlag::New, CtFlag::Trk]);
    }
}
