//! The second line OVS prints for a PACKET_IN / PACKET_OUT: the packet's flow
//! (`tcp,vlan_tci=0x0000,dl_src=...,tcp_flags=syn tcp_csum:abcd`), OVS's `ofp_packet_to_string`.
//!
//! Built as an exact [`Match`] over the fields OVS extracts from a packet
//! (`flow_wildcards_init_for_packet`) and printed by the match printer, so both agree on order
//! and spelling. Frames we cannot describe the way OVS does (double-tagged or truncated tagged
//! frames, IPv6 extension headers, neighbour discovery, MPLS...) give `None`.

use crate::openflow::field::Field;
use crate::openflow::oxm::Match;
use crate::packet::key::IpFrag;
use crate::packet::FlowKey;
use std::net::IpAddr;

fn mac(m: &crate::packet::MacAddr) -> u128 {
    m.0.iter().fold(0u128, |a, b| (a << 8) | *b as u128)
}

fn ip(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(*v) as u128,
        IpAddr::V6(v) => u128::from(*v),
    }
}

/// The flow text of `frame`, or `None` when it is not one we print like OVS.
pub fn packet_flow_text(frame: &[u8]) -> Option<String> {
    let (k, truncated) = match FlowKey::extract(0, frame) {
        Ok(k) => (k, false),
        Err(_) => (truncated_key(frame)?, true),
    };
    if k.vlan_inner.is_some() || k.tunnel.is_some() {
        return None;
    }
    // OVS's flow has two VLAN slots; with one tag the (empty) inner slot prints as
    // `vlan_tci1=0x0000` right after the outer tag's fields.
    let (tci, l3) = match k.vlan {
        Some(vid) => ((vid & 0x0fff) | ((k.vlan_pcp as u16 & 7) << 13) | 0x1000, 18),
        None => (0, 14),
    };
    let mut m = Match::default()
        .with(Field::VLAN_TCI, tci as u128)
        .with(Field::ETH_SRC, mac(&k.eth_src))
        .with(Field::ETH_DST, mac(&k.eth_dst))
        .with(Field::ETH_TYPE, k.eth_type as u128);
    // Where the L4 header starts and which checksum OVS shows.
    let mut l4 = None;
    match k.eth_type {
        0x0800 | 0x86dd => {
            let v6 = k.eth_type == 0x86dd;
            if v6 {
                m = m
                    .with(Field::IPV6_SRC, ip(&k.ip_src))
                    .with(Field::IPV6_DST, ip(&k.ip_dst))
                    .with(Field::IPV6_LABEL, k.ipv6_label as u128);
                // Extension headers move the L4 header; not described here.
                if !truncated && frame.get(l3 + 6).copied() != Some(k.ip_proto) {
                    return None;
                }
                l4 = Some(l3 + 40);
            } else {
                m = m.with(Field::IPV4_SRC, ip(&k.ip_src)).with(Field::IPV4_DST, ip(&k.ip_dst));
                l4 = frame.get(l3).map(|b| l3 + 4 * (b & 0xf) as usize);
            }
            let frag = match k.ip_frag {
                IpFrag::No => 0,
                IpFrag::First => 1,
                IpFrag::Later => 3,
            };
            m = m
                .with(Field::IP_PROTO, k.ip_proto as u128)
                .with(Field::IP_DSCP_SHIFTED, k.ip_tos as u128)
                .with(Field::IP_ECN, k.ip_ecn as u128)
                .with(Field::IP_TTL, k.ip_ttl as u128)
                .with_masked(Field::IP_FRAG, frag, 3);
            if k.ip_frag != IpFrag::Later {
                m = match (k.ip_proto, v6) {
                    (6, _) => m
                        .with(Field::TCP_SRC, k.l4_src as u128)
                        .with(Field::TCP_DST, k.l4_dst as u128)
                        .with(Field::TCP_FLAGS, k.tcp_flags as u128),
                    (17, _) => m.with(Field::UDP_SRC, k.l4_src as u128).with(Field::UDP_DST, k.l4_dst as u128),
                    (132, _) => m.with(Field::SCTP_SRC, k.l4_src as u128).with(Field::SCTP_DST, k.l4_dst as u128),
                    (1, false) => {
                        m.with(Field::ICMPV4_TYPE, k.icmp_type as u128).with(Field::ICMPV4_CODE, k.icmp_code as u128)
                    }
                    (58, true) => {
                        // Neighbour discovery adds nd_* fields; not described here.
                        if matches!(k.icmp_type, 135 | 136) {
                            return None;
                        }
                        m.with(Field::ICMPV6_TYPE, k.icmp_type as u128).with(Field::ICMPV6_CODE, k.icmp_code as u128)
                    }
                    _ => m,
                };
            }
        }
        0x0806 | 0x8035 => {
            m = m
                .with(Field::ARP_OP, k.arp_op as u128)
                .with(Field::ARP_SPA, u32::from(k.arp_spa) as u128)
                .with(Field::ARP_TPA, u32::from(k.arp_tpa) as u128)
                .with(Field::ARP_SHA, mac(&k.arp_sha))
                .with(Field::ARP_THA, mac(&k.arp_tha));
        }
        0x8847 | 0x8848 => return None,
        _ => {}
    }
    let mut s = m.to_string();
    if k.vlan.is_some() {
        let at = s.find("dl_vlan_pcp=").and_then(|i| s[i..].find(',').map(|j| i + j))?;
        s.insert_str(at, ",vlan_tci1=0x0000");
    }
    if let Some(l4) = l4.filter(|_| !truncated) {
        let be16 = |at: usize| frame.get(l4 + at..l4 + at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let csum = match k.ip_proto {
            6 => be16(16).map(|c| format!(" tcp_csum:{c:x}")),
            17 => be16(6).map(|c| format!(" udp_csum:{c:x}")),
            1 if k.eth_type == 0x0800 => be16(2).map(|c| format!(" icmp_csum:{c:x}")),
            58 if k.eth_type == 0x86dd => be16(2).map(|c| format!(" icmp6_csum:{c:x}")),
            132 => frame
                .get(l4 + 8..l4 + 12)
                .map(|b| format!(" sctp_csum:{:x}", u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
            _ => None,
        };
        s.push_str(&csum.unwrap_or_default());
    }
    Some(s)
}

/// OVS keeps what it could parse of a truncated packet and zeroes the rest: the Ethernet
/// header with every L3 field zero.
fn truncated_key(frame: &[u8]) -> Option<FlowKey> {
    let hdr = frame.get(..14)?;
    let eth_type = u16::from_be_bytes([hdr[12], hdr[13]]);
    if matches!(eth_type, 0x8100 | 0x88a8) {
        // A truncated tagged frame: not described.
        return None;
    }
    // An Ethernet header with an EtherType the extractor does not look into.
    let mut plain = hdr.to_vec();
    plain[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let mut k = FlowKey::extract(0, &plain).ok()?;
    k.eth_type = eth_type;
    if eth_type == 0x86dd {
        k.ip_src = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        k.ip_dst = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
    }
    Some(k)
}
