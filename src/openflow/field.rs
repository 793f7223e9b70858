//! The fields a flow can match and actions can read or write, with their wire headers
//! (NXM and OXM, as Open vSwitch assigns them), widths and text names.
//!
//! Mirrors OVS's `mf_field` table (`include/openvswitch/meta-flow.h`): one abstract field may have
//! an NXM header and an OXM header; in OpenFlow 1.3 OVS writes the OXM header when the field has
//! one usable in 1.3 and the NXM header otherwise ([`FieldDef::header13`]).

use std::fmt;

/// An NXM/OXM header's identity (without the has-mask bit and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hdr {
    /// 0x0000 NXM_OF, 0x0001 NXM_NX, 0x8000 OpenFlow basic, 0xffff experimenter.
    pub class: u16,
    pub field: u8,
    /// The experimenter id when `class == 0xffff` (ONF 0x4f4e4600, Nicira 0x00002320), else 0.
    pub experimenter: u32,
}

pub const NXM_OF: u16 = 0x0000;
pub const NXM_NX: u16 = 0x0001;
pub const OXM_BASIC: u16 = 0x8000;
pub const OXM_EXPERIMENTER: u16 = 0xffff;
pub const ONF_EXP: u32 = 0x4f4e_4600;
pub const NX_EXP: u32 = super::error::NX_VENDOR_ID;

impl Hdr {
    pub const fn nxm(class: u16, field: u8) -> Hdr {
        Hdr { class, field, experimenter: 0 }
    }
    pub const fn exp(experimenter: u32, field: u8) -> Hdr {
        Hdr { class: OXM_EXPERIMENTER, field, experimenter }
    }
    /// The 32-bit header word for a value of `len` bytes (doubled when masked).
    pub const fn word(&self, len: u8, masked: bool) -> u32 {
        let len = if masked { len as u32 * 2 } else { len as u32 };
        ((self.class as u32) << 16) | ((self.field as u32) << 9) | ((masked as u32) << 8) | len
    }
    /// The bytes of the header as written on the wire: 4 bytes, or 8 with an experimenter id.
    /// Experimenter headers count the 4 experimenter bytes in their length, as OVS does.
    pub fn put(&self, out: &mut Vec<u8>, len: u8, masked: bool) {
        if self.class == OXM_EXPERIMENTER {
            let l = if masked { len * 2 } else { len } + 4;
            let w = ((self.class as u32) << 16) | ((self.field as u32) << 9) | ((masked as u32) << 8) | l as u32;
            out.extend_from_slice(&w.to_be_bytes());
            out.extend_from_slice(&self.experimenter.to_be_bytes());
        } else {
            out.extend_from_slice(&self.word(len, masked).to_be_bytes());
        }
    }
}

/// How a field's value is written in flow text (ovs-fields(7) "Formatting").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Decimal,
    Hex,
    Ethernet,
    Ipv4,
    Ipv6,
    /// A 16-bit OpenFlow 1.0 port number or name.
    Port16,
    /// A 32-bit OpenFlow 1.1+ port number or name.
    Port32,
    Frag,
    TunnelFlags,
    TcpFlags,
    CtState,
}

/// What a match on the field requires of the rest of the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    None,
    Vlan,
    Arp,
    Ip,
    Ipv4,
    Ipv6,
    Ipv4OrIpv6AnyIp,
    Tcp,
    Udp,
    Sctp,
    Icmpv4,
    Icmpv6,
    NdSolicit,
    NdAdvert,
    Nd,
    Mpls,
    Ct,
    TcpOrUdpOrSctp,
}

/// One field's definition.
#[derive(Debug)]
pub struct FieldDef {
    /// Name in flow text (`eth_src`, `reg0`, `ct_state`).
    pub name: &'static str,
    /// Other accepted names (`dl_src`, `NXM_OF_ETH_SRC`).
    pub aliases: &'static [&'static str],
    /// Name used for sub-fields in actions (`NXM_OF_ETH_SRC`, or the OXM name).
    pub wire_name: &'static str,
    pub nxm: Option<Hdr>,
    /// The OXM header OVS uses in OpenFlow 1.3, if any.
    pub oxm13: Option<Hdr>,
    /// Width on the wire, in bytes.
    pub bytes: u8,
    /// Meaningful bits (low bits of the value): 12 for tcp_flags, 13 for vlan_vid, ...
    pub bits: u16,
    pub maskable: bool,
    pub format: Format,
    pub prereq: Prereq,
    pub writable: bool,
}

impl FieldDef {
    /// The header OVS writes for this field in OpenFlow 1.3: the OXM header when the field has
    /// one usable in 1.3, else the NXM header. (`xreg` keeps its OpenFlow 1.5 OXM header here,
    /// as OVS writes it in actions; in a 1.3 match OVS splits it into registers instead.)
    pub fn header13(&self) -> Hdr {
        match (self.oxm13, self.nxm) {
            (Some(h), _) => h,
            (None, Some(h)) => h,
            (None, None) => self.oxm15().unwrap_or(Hdr::nxm(OXM_EXPERIMENTER, 0)),
        }
    }

    /// The OXM header OVS assigns from OpenFlow 1.5 on to a field that has an NXM header for
    /// 1.3 (accepted when decoding, never written in 1.3).
    pub fn oxm15(&self) -> Option<Hdr> {
        match self.name {
            "dp_hash" => Some(Hdr::exp(NX_EXP, 0)),
            _ => None,
        }
    }
}

/// A field: an index into [`FIELDS`]. Cheap to copy and compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field(pub u16);

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Field({})", self.def().name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.def().name)
    }
}

impl Field {
    pub fn def(self) -> &'static FieldDef {
        &FIELDS[self.0 as usize]
    }
    pub fn name(self) -> &'static str {
        self.def().name
    }
    pub fn bytes(self) -> usize {
        self.def().bytes as usize
    }
    pub fn bits(self) -> u16 {
        self.def().bits
    }

    /// Looks a field up by any of its text names, NXM or OXM names included (case-sensitive for
    /// the lower-case names, as OVS is; upper-case wire names are matched exactly).
    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .position(|d| d.name == name || d.wire_name == name || d.aliases.contains(&name))
            .map(|i| Field(i as u16))
    }

    /// Finds the field a wire header names (NXM or OXM form, `experimenter` 0 unless class 0xffff).
    pub fn from_header(hdr: Hdr) -> Option<Field> {
        // Every OXM of every packet-in and flow is looked up here: an index built once, not a
        // scan of the table. The first field naming a header wins, as a scan in order would.
        static BY_HEADER: std::sync::OnceLock<std::collections::HashMap<Hdr, u16>> = std::sync::OnceLock::new();
        let by_header = BY_HEADER.get_or_init(|| {
            let mut m = std::collections::HashMap::new();
            for (i, d) in FIELDS.iter().enumerate() {
                for h in [d.nxm, d.oxm13, d.oxm15()].into_iter().flatten() {
                    m.entry(h).or_insert(i as u16);
                }
            }
            m
        });
        by_header.get(&hdr).map(|i| Field(*i))
    }

    /// `reg0`..`reg15`.
    pub fn reg(n: u8) -> Field {
        assert!(n < 16);
        Field(Self::REG0.0 + n as u16)
    }

    /// `xreg0`..`xreg7` (64-bit pairs of registers).
    pub fn xreg(n: u8) -> Field {
        assert!(n < 8);
        Field(Self::XREG0.0 + n as u16)
    }

    /// `xxreg0`..`xxreg3` (128-bit quads of registers).
    pub fn xxreg(n: u8) -> Field {
        assert!(n < 4);
        Field(Self::XXREG0.0 + n as u16)
    }

    pub fn all() -> impl Iterator<Item = Field> {
        (0..FIELDS.len() as u16).map(Field)
    }
}

macro_rules! fields {
    ($( $konst:ident: $name:literal [$($alias:literal),*] $wire:literal,
        nxm $nxm:expr, oxm $oxm:expr, $bytes:literal / $bits:literal, $mask:literal,
        $fmt:ident, $pre:ident, $w:literal; )*) => {
        /// The field table, in the order of OVS's `mf_field_id`.
        pub static FIELDS: &[FieldDef] = &[
            $( FieldDef {
                name: $name,
                aliases: &[$($alias),*],
                wire_name: $wire,
                nxm: $nxm,
                oxm13: $oxm,
                bytes: $bytes,
                bits: $bits,
                maskable: $mask,
                format: Format::$fmt,
                prereq: Prereq::$pre,
                writable: $w,
            }, )*
        ];

        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(u16)]
        enum FieldIndex { $( $konst, )* }

        impl Field {
            $( pub const $konst: Field = Field(FieldIndex::$konst as u16); )*
        }
    };
}

const fn nx(f: u8) -> Option<Hdr> {
    Some(Hdr::nxm(NXM_NX, f))
}
const fn of(f: u8) -> Option<Hdr> {
    Some(Hdr::nxm(NXM_OF, f))
}
const fn ox(f: u8) -> Option<Hdr> {
    Some(Hdr::nxm(OXM_BASIC, f))
}
const fn onf(f: u8) -> Option<Hdr> {
    Some(Hdr::exp(ONF_EXP, f))
}
const NONE: Option<Hdr> = None;

fields! {
    DP_HASH: "dp_hash" [] "NXM_NX_DP_HASH", nxm nx(35), oxm NONE, 4/32, true, Hex, None, false;
    RECIRC_ID: "recirc_id" [] "NXM_NX_RECIRC_ID", nxm nx(36), oxm NONE, 4/32, false, Decimal, None, false;
    CONJ_ID: "conj_id" [] "NXM_NX_CONJ_ID", nxm nx(37), oxm NONE, 4/32, false, Decimal, None, false;
    TUN_ID: "tun_id" ["tunnel_id"] "NXM_NX_TUN_ID", nxm nx(16), oxm ox(38), 8/64, true, Hex, None, true;
    TUN_SRC: "tun_src" [] "NXM_NX_TUN_IPV4_SRC", nxm nx(31), oxm NONE, 4/32, true, Ipv4, None, true;
    TUN_DST: "tun_dst" [] "NXM_NX_TUN_IPV4_DST", nxm nx(32), oxm NONE, 4/32, true, Ipv4, None, true;
    TUN_IPV6_SRC: "tun_ipv6_src" [] "NXM_NX_TUN_IPV6_SRC", nxm nx(109), oxm NONE, 16/128, true, Ipv6, None, true;
    TUN_IPV6_DST: "tun_ipv6_dst" [] "NXM_NX_TUN_IPV6_DST", nxm nx(110), oxm NONE, 16/128, true, Ipv6, None, true;
    TUN_FLAGS: "tun_flags" [] "NXM_NX_TUN_FLAGS", nxm nx(104), oxm NONE, 2/1, true, TunnelFlags, None, true;
    TUN_GBP_ID: "tun_gbp_id" [] "NXM_NX_TUN_GBP_ID", nxm nx(38), oxm NONE, 2/16, true, Decimal, None, true;
    TUN_GBP_FLAGS: "tun_gbp_flags" [] "NXM_NX_TUN_GBP_FLAGS", nxm nx(39), oxm NONE, 1/8, true, Hex, None, true;
    METADATA: "metadata" [] "OXM_OF_METADATA", nxm NONE, oxm ox(2), 8/64, true, Hex, None, true;
    IN_PORT: "in_port" [] "NXM_OF_IN_PORT", nxm of(0), oxm NONE, 2/16, false, Port16, None, true;
    IN_PORT_OXM: "in_port_oxm" [] "OXM_OF_IN_PORT", nxm NONE, oxm ox(0), 4/32, false, Port32, None, true;
    ACTSET_OUTPUT: "actset_output" [] "ONFOXM_ET_ACTSET_OUTPUT", nxm NONE, oxm onf(43), 4/32, false, Port32, None, false;
    PKT_MARK: "pkt_mark" [] "NXM_NX_PKT_MARK", nxm nx(33), oxm NONE, 4/32, true, Hex, None, true;
    CT_STATE: "ct_state" [] "NXM_NX_CT_STATE", nxm nx(105), oxm NONE, 4/32, true, CtState, None, false;
    CT_ZONE: "ct_zone" [] "NXM_NX_CT_ZONE", nxm nx(106), oxm NONE, 2/16, false, Hex, None, false;
    CT_MARK: "ct_mark" [] "NXM_NX_CT_MARK", nxm nx(107), oxm NONE, 4/32, true, Hex, None, true;
    CT_LABEL: "ct_label" [] "NXM_NX_CT_LABEL", nxm nx(108), oxm NONE, 16/128, true, Hex, None, true;
    CT_NW_PROTO: "ct_nw_proto" [] "NXM_NX_CT_NW_PROTO", nxm nx(119), oxm NONE, 1/8, false, Decimal, Ct, false;
    CT_NW_SRC: "ct_nw_src" [] "NXM_NX_CT_NW_SRC", nxm nx(120), oxm NONE, 4/32, true, Ipv4, Ct, false;
    CT_NW_DST: "ct_nw_dst" [] "NXM_NX_CT_NW_DST", nxm nx(121), oxm NONE, 4/32, true, Ipv4, Ct, false;
    CT_IPV6_SRC: "ct_ipv6_src" [] "NXM_NX_CT_IPV6_SRC", nxm nx(122), oxm NONE, 16/128, true, Ipv6, Ct, false;
    CT_IPV6_DST: "ct_ipv6_dst" [] "NXM_NX_CT_IPV6_DST", nxm nx(123), oxm NONE, 16/128, true, Ipv6, Ct, false;
    CT_TP_SRC: "ct_tp_src" [] "NXM_NX_CT_TP_SRC", nxm nx(124), oxm NONE, 2/16, true, Decimal, Ct, false;
    CT_TP_DST: "ct_tp_dst" [] "NXM_NX_CT_TP_DST", nxm nx(125), oxm NONE, 2/16, true, Decimal, Ct, false;
    REG0: "reg0" [] "NXM_NX_REG0", nxm nx(0), oxm NONE, 4/32, true, Hex, None, true;
    REG1: "reg1" [] "NXM_NX_REG1", nxm nx(1), oxm NONE, 4/32, true, Hex, None, true;
    REG2: "reg2" [] "NXM_NX_REG2", nxm nx(2), oxm NONE, 4/32, true, Hex, None, true;
    REG3: "reg3" [] "NXM_NX_REG3", nxm nx(3), oxm NONE, 4/32, true, Hex, None, true;
    REG4: "reg4" [] "NXM_NX_REG4", nxm nx(4), oxm NONE, 4/32, true, Hex, None, true;
    REG5: "reg5" [] "NXM_NX_REG5", nxm nx(5), oxm NONE, 4/32, true, Hex, None, true;
    REG6: "reg6" [] "NXM_NX_REG6", nxm nx(6), oxm NONE, 4/32, true, Hex, None, true;
    REG7: "reg7" [] "NXM_NX_REG7", nxm nx(7), oxm NONE, 4/32, true, Hex, None, true;
    REG8: "reg8" [] "NXM_NX_REG8", nxm nx(8), oxm NONE, 4/32, true, Hex, None, true;
    REG9: "reg9" [] "NXM_NX_REG9", nxm nx(9), oxm NONE, 4/32, true, Hex, None, true;
    REG10: "reg10" [] "NXM_NX_REG10", nxm nx(10), oxm NONE, 4/32, true, Hex, None, true;
    REG11: "reg11" [] "NXM_NX_REG11", nxm nx(11), oxm NONE, 4/32, true, Hex, None, true;
    REG12: "reg12" [] "NXM_NX_REG12", nxm nx(12), oxm NONE, 4/32, true, Hex, None, true;
    REG13: "reg13" [] "NXM_NX_REG13", nxm nx(13), oxm NONE, 4/32, true, Hex, None, true;
    REG14: "reg14" [] "NXM_NX_REG14", nxm nx(14), oxm NONE, 4/32, true, Hex, None, true;
    REG15: "reg15" [] "NXM_NX_REG15", nxm nx(15), oxm NONE, 4/32, true, Hex, None, true;
    XREG0: "xreg0" [] "OXM_OF_PKT_REG0", nxm NONE, oxm Some(Hdr::nxm(0x8001, 0)), 8/64, true, Hex, None, true;
    XREG1: "xreg1" [] "OXM_OF_PKT_REG1", nxm NONE, oxm Some(Hdr::nxm(0x8001, 1)), 8/64, true, Hex, None, true;
    XREG2: "xreg2" [] "OXM_OF_PKT_REG2", nxm NONE, oxm Some(Hdr::nxm(0x8001, 2)), 8/64, true, Hex, None, true;
    XREG3: "xreg3" [] "OXM_OF_PKT_REG3", nxm NONE, oxm Some(Hdr::nxm(0x8001, 3)), 8/64, true, Hex, None, true;
    XREG4: "xreg4" [] "OXM_OF_PKT_REG4", nxm NONE, oxm Some(Hdr::nxm(0x8001, 4)), 8/64, true, Hex, None, true;
    XREG5: "xreg5" [] "OXM_OF_PKT_REG5", nxm NONE, oxm Some(Hdr::nxm(0x8001, 5)), 8/64, true, Hex, None, true;
    XREG6: "xreg6" [] "OXM_OF_PKT_REG6", nxm NONE, oxm Some(Hdr::nxm(0x8001, 6)), 8/64, true, Hex, None, true;
    XREG7: "xreg7" [] "OXM_OF_PKT_REG7", nxm NONE, oxm Some(Hdr::nxm(0x8001, 7)), 8/64, true, Hex, None, true;
    XXREG0: "xxreg0" [] "NXM_NX_XXREG0", nxm nx(111), oxm NONE, 16/128, true, Hex, None, true;
    XXREG1: "xxreg1" [] "NXM_NX_XXREG1", nxm nx(112), oxm NONE, 16/128, true, Hex, None, true;
    XXREG2: "xxreg2" [] "NXM_NX_XXREG2", nxm nx(113), oxm NONE, 16/128, true, Hex, None, true;
    XXREG3: "xxreg3" [] "NXM_NX_XXREG3", nxm nx(114), oxm NONE, 16/128, true, Hex, None, true;
    ETH_SRC: "eth_src" ["dl_src"] "NXM_OF_ETH_SRC", nxm of(2), oxm ox(4), 6/48, true, Ethernet, None, true;
    ETH_DST: "eth_dst" ["dl_dst"] "NXM_OF_ETH_DST", nxm of(1), oxm ox(3), 6/48, true, Ethernet, None, true;
    ETH_TYPE: "eth_type" ["dl_type"] "NXM_OF_ETH_TYPE", nxm of(3), oxm ox(5), 2/16, false, Hex, None, false;
    VLAN_TCI: "vlan_tci" [] "NXM_OF_VLAN_TCI", nxm of(4), oxm NONE, 2/16, true, Hex, None, true;
    VLAN_VID: "vlan_vid" [] "OXM_OF_VLAN_VID", nxm NONE, oxm ox(6), 2/13, true, Decimal, None, true;
    VLAN_PCP: "vlan_pcp" [] "OXM_OF_VLAN_PCP", nxm NONE, oxm ox(7), 1/3, false, Decimal, Vlan, true;
    MPLS_LABEL: "mpls_label" [] "OXM_OF_MPLS_LABEL", nxm NONE, oxm ox(34), 4/20, false, Decimal, Mpls, true;
    MPLS_TC: "mpls_tc" [] "OXM_OF_MPLS_TC", nxm NONE, oxm ox(35), 1/3, false, Decimal, Mpls, true;
    MPLS_BOS: "mpls_bos" [] "OXM_OF_MPLS_BOS", nxm NONE, oxm ox(36), 1/1, false, Decimal, Mpls, false;
    MPLS_TTL: "mpls_ttl" [] "NXM_NX_MPLS_TTL", nxm nx(30), oxm NONE, 1/8, false, Decimal, Mpls, true;
    IPV4_SRC: "ip_src" ["nw_src"] "NXM_OF_IP_SRC", nxm of(7), oxm ox(11), 4/32, true, Ipv4, Ipv4, true;
    IPV4_DST: "ip_dst" ["nw_dst"] "NXM_OF_IP_DST", nxm of(8), oxm ox(12), 4/32, true, Ipv4, Ipv4, true;
    IPV6_SRC: "ipv6_src" [] "NXM_NX_IPV6_SRC", nxm nx(19), oxm ox(26), 16/128, true, Ipv6, Ipv6, true;
    IPV6_DST: "ipv6_dst" [] "NXM_NX_IPV6_DST", nxm nx(20), oxm ox(27), 16/128, true, Ipv6, Ipv6, true;
    IPV6_LABEL: "ipv6_label" [] "NXM_NX_IPV6_LABEL", nxm nx(27), oxm ox(28), 4/20, true, Hex, Ipv6, true;
    IP_PROTO: "nw_proto" ["ip_proto"] "NXM_OF_IP_PROTO", nxm of(6), oxm ox(10), 1/8, false, Decimal, Ipv4OrIpv6AnyIp, false;
    IP_DSCP: "ip_dscp" [] "OXM_OF_IP_DSCP", nxm NONE, oxm ox(8), 1/6, false, Decimal, Ipv4OrIpv6AnyIp, true;
    IP_DSCP_SHIFTED: "nw_tos" [] "NXM_OF_IP_TOS", nxm of(5), oxm NONE, 1/8, false, Decimal, Ipv4OrIpv6AnyIp, true;
    IP_ECN: "nw_ecn" ["ip_ecn"] "NXM_NX_IP_ECN", nxm nx(28), oxm ox(9), 1/2, false, Decimal, Ipv4OrIpv6AnyIp, true;
    IP_TTL: "nw_ttl" [] "NXM_NX_IP_TTL", nxm nx(29), oxm NONE, 1/8, false, Decimal, Ipv4OrIpv6AnyIp, true;
    IP_FRAG: "ip_frag" ["nw_frag"] "NXM_NX_IP_FRAG", nxm nx(26), oxm NONE, 1/2, true, Frag, Ipv4OrIpv6AnyIp, false;
    ARP_OP: "arp_op" [] "NXM_OF_ARP_OP", nxm of(15), oxm ox(21), 2/16, false, Decimal, Arp, true;
    ARP_SPA: "arp_spa" [] "NXM_OF_ARP_SPA", nxm of(16), oxm ox(22), 4/32, true, Ipv4, Arp, true;
    ARP_TPA: "arp_tpa" [] "NXM_OF_ARP_TPA", nxm of(17), oxm ox(23), 4/32, true, Ipv4, Arp, true;
    ARP_SHA: "arp_sha" [] "NXM_NX_ARP_SHA", nxm nx(17), oxm ox(24), 6/48, true, Ethernet, Arp, true;
    ARP_THA: "arp_tha" [] "NXM_NX_ARP_THA", nxm nx(18), oxm ox(25), 6/48, true, Ethernet, Arp, true;
    TCP_SRC: "tcp_src" ["tp_src"] "NXM_OF_TCP_SRC", nxm of(9), oxm ox(13), 2/16, true, Decimal, Tcp, true;
    TCP_DST: "tcp_dst" ["tp_dst"] "NXM_OF_TCP_DST", nxm of(10), oxm ox(14), 2/16, true, Decimal, Tcp, true;
    TCP_FLAGS: "tcp_flags" [] "NXM_NX_TCP_FLAGS", nxm nx(34), oxm onf(42), 2/12, true, TcpFlags, Tcp, false;
    UDP_SRC: "udp_src" [] "NXM_OF_UDP_SRC", nxm of(11), oxm ox(15), 2/16, true, Decimal, Udp, true;
    UDP_DST: "udp_dst" [] "NXM_OF_UDP_DST", nxm of(12), oxm ox(16), 2/16, true, Decimal, Udp, true;
    SCTP_SRC: "sctp_src" [] "OXM_OF_SCTP_SRC", nxm NONE, oxm ox(17), 2/16, true, Decimal, Sctp, true;
    SCTP_DST: "sctp_dst" [] "OXM_OF_SCTP_DST", nxm NONE, oxm ox(18), 2/16, true, Decimal, Sctp, true;
    ICMPV4_TYPE: "icmp_type" [] "NXM_OF_ICMP_TYPE", nxm of(13), oxm ox(19), 1/8, false, Decimal, Icmpv4, true;
    ICMPV4_CODE: "icmp_code" [] "NXM_OF_ICMP_CODE", nxm of(14), oxm ox(20), 1/8, false, Decimal, Icmpv4, true;
    ICMPV6_TYPE: "icmpv6_type" [] "NXM_NX_ICMPV6_TYPE", nxm nx(21), oxm ox(29), 1/8, false, Decimal, Icmpv6, true;
    ICMPV6_CODE: "icmpv6_code" [] "NXM_NX_ICMPV6_CODE", nxm nx(22), oxm ox(30), 1/8, false, Decimal, Icmpv6, true;
    ND_TARGET: "nd_target" [] "NXM_NX_ND_TARGET", nxm nx(23), oxm ox(31), 16/128, true, Ipv6, Nd, true;
    ND_SLL: "nd_sll" [] "NXM_NX_ND_SLL", nxm nx(24), oxm ox(32), 6/48, true, Ethernet, NdSolicit, true;
    ND_TLL: "nd_tll" [] "NXM_NX_ND_TLL", nxm nx(25), oxm ox(33), 6/48, true, Ethernet, NdAdvert, true;
}

/// A field value (or mask) of up to 16 bytes, big-endian as on the wire. `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value {
    len: u8,
    bytes: [u8; 16],
}

impl Value {
    /// `None` when longer than 16 bytes (no field we know is).
    pub fn new(b: &[u8]) -> Option<Value> {
        if b.len() > 16 {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(Value { len: b.len() as u8, bytes })
    }

    /// The low `len` bytes of `v`, big-endian (`len` at most 16).
    pub fn from_u128(v: u128, len: usize) -> Value {
        let len = len.min(16);
        let all = v.to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&all[16 - len..]);
        Value { len: len as u8, bytes }
    }

    pub fn zero(len: usize) -> Value {
        Value { len: len.min(16) as u8, bytes: [0; 16] }
    }

    /// All ones over `len` bytes (an exact-match mask).
    pub fn ones(len: usize) -> Value {
        let len = len.min(16);
        let mut bytes = [0u8; 16];
        bytes[..len].fill(0xff);
        Value { len: len as u8, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value as an unsigned integer.
    pub fn to_u128(&self) -> u128 {
        self.as_bytes().iter().fold(0u128, |acc, b| (acc << 8) | *b as u128)
    }

    pub fn is_zero(&self) -> bool {
        self.as_bytes().iter().all(|b| *b == 0)
    }

    pub fn is_all_ones(&self) -> bool {
        self.as_bytes().iter().all(|b| *b == 0xff)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value(0x{})", super::wire::to_hex(self.as_bytes()))
    }
}

/// A run of bits inside a field, as actions address them: `NXM_NX_REG0[0..15]`, `reg0[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subfield {
    pub field: Field,
    /// Offset of the lowest bit.
    pub ofs: u16,
    pub n_bits: u16,
}

impl Subfield {
    /// The whole field: all its meaningful bits, as OVS counts them (`mf_field.n_bits`: 12 for
    /// tcp_flags, 6 for ip_dscp, 13 for vlan_vid), not its wire width.
    pub fn whole(field: Field) -> Subfield {
        Subfield { field, ofs: 0, n_bits: field.bits() }
    }
    /// Whether this covers all the field's meaningful bits (printed `NAME[]`).
    pub fn is_whole(&self) -> bool {
        self.ofs == 0 && self.n_bits >= self.field.bits()
    }
}

/// Prints like OVS's `mf_format_subfield`: `NXM_NX_REG0[]`, `NXM_NX_REG0[5]`, `NXM_NX_REG0[0..15]`.
impl fmt::Display for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.field.def().wire_name;
        if self.is_whole() {
            write!(f, "{name}[]")
        } else if self.n_bits == 1 {
            write!(f, "{name}[{}]", self.ofs)
        } else {
            write!(f, "{name}[{}..{}]", self.ofs, self.ofs + self.n_bits - 1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn the_header_index_answers_as_a_scan_of_the_table() {
        let scan = |hdr: Hdr| {
            FIELDS
                .iter()
                .position(|d| d.nxm == Some(hdr) || d.oxm13 == Some(hdr) || d.oxm15() == Some(hdr))
                .map(|i| Field(i as u16))
        };
        let mut n = 0;
        for d in FIELDS {
            for h in [d.nxm, d.oxm13, d.oxm15()].into_iter().flatten() {
                assert_eq!(Field::from_header(h), scan(h), "{h:?}");
                n += 1;
            }
        }
        assert!(n > 100, "{n}");
        let unknown = Hdr { class: 0x8000, field: 127, experimenter: 0 };
        assert_eq!(Field::from_header(unknown), None);
    }

    use super::*;

    #[test]
    fn names_and_headers_are_unique() {
        let mut names = std::collections::HashSet::new();
        let mut hdrs = std::collections::HashSet::new();
        for f in Field::all() {
            let d = f.def();
            for n in std::iter::once(d.name).chain(std::iter::once(d.wire_name)).chain(d.aliases.iter().copied()) {
                assert!(names.insert(n), "name {n} twice");
            }
            for h in [d.nxm, d.oxm13, d.oxm15()].into_iter().flatten() {
                assert!(hdrs.insert(h), "header {h:?} twice");
            }
            assert!(d.nxm.is_some() || d.oxm13.is_some() || d.oxm15().is_some(), "{} has no header", d.name);
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(Field::from_name("dl_src"), Some(Field::ETH_SRC));
        assert_eq!(Field::from_name("NXM_NX_REG3"), Some(Field::reg(3)));
        assert_eq!(Field::from_header(Hdr::nxm(NXM_NX, 105)), Some(Field::CT_STATE));
        assert_eq!(Field::reg(0).def().header13().word(4, true), 0x0001_0108);
        assert_eq!(Field::CT_STATE.def().header13().word(4, true), 0x0001_d308);
        assert_eq!(Subfield { field: Field::reg(0), ofs: 0, n_bits: 16 }.to_string(), "NXM_NX_REG0[0..15]");
        assert_eq!(Subfield::whole(Field::IPV4_SRC).to_string(), "NXM_OF_IP_SRC[]");
        // OVS counts meaningful bits: tcp_flags is 12 bits wide on a 16-bit wire field.
        let flags = Field::from_name("tcp_flags").unwrap();
        assert_eq!(Subfield::whole(flags).n_bits, 12);
        assert_eq!(Subfield::whole(flags).to_string(), "NXM_NX_TCP_FLAGS[]");
        assert_eq!(Subfield { field: flags, ofs: 0, n_bits: 12 }.to_string(), "NXM_NX_TCP_FLAGS[]");
        assert_eq!(Subfield { field: flags, ofs: 0, n_bits: 11 }.to_string(), "NXM_NX_TCP_FLAGS[0..10]");
        assert_eq!(Subfield::whole(Field::from_name("ip_dscp").unwrap()).n_bits, 6);
        assert_eq!(Subfield::whole(Field::from_name("vlan_vid").unwrap()).n_bits, 13);
    }

    /// Every field's wire name and NXM/OXM header, checked against OVS: the source of a
    /// `move` action is written with the field's NXM header (its OXM header when it has no NXM
    /// one), so OVS's bytes for `move:NAME[0..0]->NXM_NX_REG0[0..0]` show the header it assigns.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn headers_match_ovs() {
        let mut problems = Vec::new();
        let mut checked = 0;
        for f in Field::all() {
            let d = f.def();
            let pre = match d.prereq {
                Prereq::None => "",
                Prereq::Vlan => "dl_vlan=1,",
                Prereq::Arp => "arp,",
                Prereq::Ip | Prereq::Ipv4 | Prereq::Ipv4OrIpv6AnyIp => "ip,",
                Prereq::Ipv6 => "ipv6,",
                Prereq::Mpls => "mpls,",
                Prereq::Tcp | Prereq::TcpOrUdpOrSctp => "tcp,",
                Prereq::Udp => "udp,",
                Prereq::Sctp => "sctp,",
                Prereq::Icmpv4 => "icmp,",
                Prereq::Icmpv6 => "icmp6,",
                Prereq::Nd | Prereq::NdSolicit => "icmp6,icmp_type=135,",
                Prereq::NdAdvert => "icmp6,icmp_type=136,",
                Prereq::Ct => "ip,ct_state=+trk+est,",
            };
            let text = format!("{pre}actions=move:{}[0..0]->NXM_NX_REG0[0..0]", d.wire_name);
            let ovs = match crate::oracle::parse_flow(&text) {
                Ok(o) => o,
                Err(e) => {
                    problems.push(format!("{}: OVS refuses {text}: {e}", d.name));
                    continue;
                }
            };
            let b = &ovs.bytes;
            let match_len = u16::from_be_bytes([b[50], b[51]]) as usize;
            let at = 48 + crate::openflow::wire::pad8(match_len) + 8 + 16;
            let hdr = d.nxm.or(d.oxm13).or(d.oxm15()).unwrap_or(Hdr::nxm(0, 0));
            let mut want = Vec::new();
            hdr.put(&mut want, d.bytes, false);
            let got = &b[at..(at + want.len()).min(b.len())];
            if got != want.as_slice() {
                problems.push(format!(
                    "{}: OVS writes header {} for {}, the table says {}",
                    d.name,
                    crate::openflow::wire::to_hex(got),
                    d.wire_name,
                    crate::openflow::wire::to_hex(&want)
                ));
            }
            checked += 1;
            // The text name and aliases name the same field for OVS.
            for n in std::iter::once(d.name).chain(d.aliases.iter().copied()) {
                let t = format!("{pre}actions=move:{n}[0..0]->NXM_NX_REG0[0..0]");
                match crate::oracle::parse_flow(&t) {
                    Ok(o) if o.bytes == ovs.bytes => {}
                    Ok(_) => problems.push(format!("{}: OVS reads name {n} as another field", d.name)),
                    Err(e) => problems.push(format!("{}: OVS does not know the name {n}: {e}", d.name)),
                }
            }
        }
        assert!(problems.is_empty(), "{checked} checked; problems:\n{}", problems.join("\n"));
    }
}
