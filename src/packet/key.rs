//! Flow keys extracted from frames, and the direction-free connection key used for sharding.
//!
//! [`FlowKey`] holds what OVS's `flow_extract` would see (field names follow ovs-fields(7)),
//! computed without allocating. [`ConnKey`] folds both directions of a connection onto one
//! value whose [`ConnKey::hash64`] is a fixed, documented function of the bytes: shards and the
//! load generator (other processes, other machines) must agree on it.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp;
use super::ethernet::Frame;
use super::icmp;
use super::icmpv6;
use super::ipv4;
use super::ipv6;
use super::sctp;
use super::tcp;
use super::types::{EtherType, IpProtocol, MacAddr, Result};
use super::udp;

/// Fragment state, as OVS's `nw_frag` (`no`, `first`, `later`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFrag {
    #[default]
    No,
    /// The fragment with offset 0: transport ports are present.
    First,
    /// A fragment with a non-zero offset: no transport header.
    Later,
}

impl IpFrag {
    pub fn as_str(&self) -> &'static str {
        match self {
            IpFrag::No => "no",
            IpFrag::First => "first",
            IpFrag::Later => "later",
        }
    }
}

/// Tunnel metadata. A frame does not carry it: it comes from the Packet-In match
/// (`tun_id`, `tun_src`, `tun_dst`) and is attached with [`FlowKey::with_tunnel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub tun_id: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// The header fields of one frame. Fields a frame does not have stay zero / `None`, as in OVS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub in_port: u32,
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    /// Outer VLAN ID (`dl_vlan`).
    pub vlan: Option<u16>,
    /// Outer VLAN priority (`dl_vlan_pcp`), 0 when untagged.
    pub vlan_pcp: u8,
    /// Inner VLAN ID of a double-tagged (QinQ) frame.
    pub vlan_inner: Option<u16>,
    /// EtherType after the VLAN tags (`dl_type`).
    pub eth_type: u16,
    /// `nw_src` / `ipv6_src`; 0.0.0.0 when the frame is not IP (ARP keeps its own fields).
    pub ip_src: IpAddr,
    pub ip_dst: IpAddr,
    /// Upper-layer protocol after IPv6 extension headers (`nw_proto`); 0 when not IP.
    pub ip_proto: u8,
    /// DSCP shifted left by 2, as OVS's `nw_tos`.
    pub ip_tos: u8,
    pub ip_ecn: u8,
    /// TTL or hop limit.
    pub ip_ttl: u8,
    pub ip_frag: IpFrag,
    pub ipv6_label: u32,
    /// TCP/UDP/SCTP ports; 0 for ICMP (see `icmp_type`, `icmp_code`, `icmp_id`).
    pub l4_src: u16,
    pub l4_dst: u16,
    /// The 12 TCP flag bits.
    pub tcp_flags: u16,
    /// ICMP or ICMPv6 type and code.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Echo identifier of ICMP/ICMPv6 echo request/reply (what conntrack keys on), else 0.
    pub icmp_id: u16,
    pub arp_op: u16,
    pub arp_spa: Ipv4Addr,
    pub arp_tpa: Ipv4Addr,
    pub arp_sha: MacAddr,
    pub arp_tha: MacAddr,
    pub nd_target: Option<Ipv6Addr>,
    pub nd_sll: Option<MacAddr>,
    pub nd_tll: Option<MacAddr>,
    pub tunnel: Option<Tunnel>,
}

const V4_ZERO: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl FlowKey {
    fn empty(in_port: u32) -> FlowKey {
        FlowKey {
            in_port,
            eth_src: MacAddr::ZERO,
            eth_dst: MacAddr::ZERO,
            vlan: None,
            vlan_pcp: 0,
            vlan_inner: None,
            eth_type: 0,
            ip_src: V4_ZERO,
            ip_dst: V4_ZERO,
            ip_proto: 0,
            ip_tos: 0,
            ip_ecn: 0,
            ip_ttl: 0,
            ip_frag: IpFrag::No,
            ipv6_label: 0,
            l4_src: 0,
            l4_dst: 0,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            icmp_id: 0,
            arp_op: 0,
            arp_spa: Ipv4Addr::UNSPECIFIED,
            arp_tpa: Ipv4Addr::UNSPECIFIED,
            arp_sha: MacAddr::ZERO,
            arp_tha: MacAddr::ZERO,
            nd_target: None,
            nd_sll: None,
            nd_tll: None,
            tunnel: None,
        }
    }

    /// Parses a frame as it arrived on `in_port`. Truncated or malformed headers of a known
    /// protocol are an `Err`; unknown EtherTypes and IP protocols give a key with what is known.
    /// Checksums are not verified (OVS does not either). Does not allocate.
    pub fn extract(in_port: u32, frame: &[u8]) -> Result<FlowKey> {
        let eth = Frame::new_checked(frame)?;
        let mut k = FlowKey::empty(in_port);
        k.eth_src = eth.src_addr();
        k.eth_dst = eth.dst_addr();
        if let Some(t) = eth.vlan(0) {
            k.vlan = Some(t.vid);
            k.vlan_pcp = t.pcp;
        }
        k.vlan_inner = eth.vlan(1).map(|t| t.vid);
        let et = eth.ethertype();
        k.eth_type = et.into();
        match et {
            EtherType::Ipv4 => k.extract_ipv4(eth.payload())?,
            EtherType::Ipv6 => k.extract_ipv6(eth.payload())?,
            EtherType::Arp | EtherType::Rarp => k.extract_arp(eth.payload())?,
            _ => {}
        }
        Ok(k)
    }

    pub fn with_tunnel(mut self, t: Tunnel) -> FlowKey {
        self.tunnel = Some(t);
        self
    }

    /// OVS's `vlan_tci` (with the CFI/"present" bit 0x1000), 0 when untagged.
    pub fn vlan_tci(&self) -> u16 {
        match self.vlan {
            Some(vid) => (u16::from(self.vlan_pcp) << 13) | 0x1000 | vid,
            None => 0,
        }
    }

    pub fn is_ip(&self) -> bool {
        self.eth_type == 0x0800 || self.eth_type == 0x86dd
    }

    pub fn is_arp(&self) -> bool {
        self.eth_type == 0x0806 || self.eth_type == 0x8035
    }

    /// The direction-free connection key of this frame.
    pub fn conn_key(&self) -> ConnKey {
        ConnKey::from_flow(self)
    }

    fn extract_arp(&mut self, b: &[u8]) -> Result<()> {
        let p = arp::Packet::new_checked(b)?;
        self.arp_op = p.operation().into();
        // Like OVS: only Ethernet/IPv4 ARP fills the address fields.
        if let Ok(r) = arp::ArpRepr::parse(&p) {
            self.arp_spa = r.source_protocol_addr;
            self.arp_tpa = r.target_protocol_addr;
            self.arp_sha = r.source_hardware_addr;
            self.arp_tha = r.target_hardware_addr;
        }
        Ok(())
    }

    fn extract_ipv4(&mut self, b: &[u8]) -> Result<()> {
        let p = ipv4::Packet::new_checked(b)?;
        self.ip_src = IpAddr::V4(p.src_addr());
        self.ip_dst = IpAddr::V4(p.dst_addr());
        self.ip_proto = p.protocol().into();
        self.ip_tos = p.dscp() << 2;
        self.ip_ecn = p.ecn();
        self.ip_ttl = p.ttl();
        if p.is_fragment() {
            self.ip_frag = if p.frag_offset() != 0 { IpFrag::Later } else { IpFrag::First };
        }
        if self.ip_frag == IpFrag::Later {
            return Ok(());
        }
        self.extract_l4(p.payload())
    }

    fn extract_ipv6(&mut self, b: &[u8]) -> Result<()> {
        let p = ipv6::Packet::new_checked(b)?;
        self.ip_src = IpAddr::V6(p.src_addr());
        self.ip_dst = IpAddr::V6(p.dst_addr());
        self.ip_tos = p.traffic_class() & 0xfc;
        self.ip_ecn = p.traffic_class() & 3;
        self.ip_ttl = p.hop_limit();
        self.ipv6_label = p.flow_label();
        let u = p.upper_layer()?;
        self.ip_proto = u.protocol.into();
        if let Some(f) = u.frag {
            self.ip_frag = if f.is_later() { IpFrag::Later } else { IpFrag::First };
        }
        if self.ip_frag == IpFrag::Later {
            return Ok(());
        }
        // `upper_layer` returned an offset inside the payload.
        let rest = p.payload().get(u.offset..).unwrap_or(&[]);
        self.extract_l4(rest)
    }

    fn extract_l4(&mut self, b: &[u8]) -> Result<()> {
        match (IpProtocol::from(self.ip_proto), self.ip_src) {
            (IpProtocol::Tcp, _) => {
                let t = tcp::Packet::new_checked(b)?;
                self.l4_src = t.src_port();
                self.l4_dst = t.dst_port();
                self.tcp_flags = t.flags().0;
            }
            (IpProtocol::Udp, _) => {
                let u = udp::Packet::new_checked(b)?;
                self.l4_src = u.src_port();
                self.l4_dst = u.dst_port();
            }
            (IpProtocol::Sctp, _) => {
                let s = sctp::Packet::new_checked(b)?;
                self.l4_src = s.src_port();
                self.l4_dst = s.dst_port();
            }
            (IpProtocol::Icmp, IpAddr::V4(_)) => {
                let i = icmp::Packet::new_checked(b)?;
                self.icmp_type = i.msg_type();
                self.icmp_code = i.msg_code();
                if i.is_echo() {
                    self.icmp_id = i.echo_ident();
                }
            }
            (IpProtocol::Icmpv6, IpAddr::V6(_)) => {
                let i = icmpv6::Packet::new_checked(b)?;
                self.icmp_type = i.msg_type();
                self.icmp_code = i.msg_code();
                if i.is_echo() {
                    self.icmp_id = i.echo_ident();
                }
                // OVS reads ND fields only with code 0.
                if i.msg_code() == 0 {
                    self.nd_target = i.nd_target();
                    let ll = i.nd_link_layer()?;
                    self.nd_sll = ll.source;
                    self.nd_tll = ll.target;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// === ConnKey ===

/// One side of a connection: an IP address (or, for non-IP frames, a MAC) and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnAddr {
    Ip(IpAddr),
    Mac(MacAddr),
}

/// One end of a connection (address and port), as a [`ConnKey`] holds two of them. Not a
/// service's backend: that is `policy::Endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnEnd {
    pub addr: ConnAddr,
    /// Transport port; the echo identifier for ICMP echo; 0 otherwise.
    pub port: u16,
}

impl ConnEnd {
    /// The 16 canonical address bytes: IPv4 and MAC left-aligned and zero-padded (the family
    /// byte of the key tells them apart).
    fn addr_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        match self.addr {
            ConnAddr::Ip(IpAddr::V4(a)) => b[..4].copy_from_slice(&a.octets()),
            ConnAddr::Ip(IpAddr::V6(a)) => b = a.octets(),
            ConnAddr::Mac(m) => b[..6].copy_from_slice(&m.0),
        }
        b
    }

    fn order(&self, other: &ConnEnd) -> Ordering {
        (self.addr_bytes(), self.port).cmp(&(other.addr_bytes(), other.port))
    }
}

/// What kind of conversation a [`ConnKey`] names; its value is the family byte of the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnFamily {
    /// Non-IP, non-ARP: the two MAC addresses.
    L2 = 0,
    /// ARP: sender and target protocol addresses.
    Arp = 1,
    Ipv4 = 4,
    Ipv6 = 6,
}

/// A direction-free connection key: the 5-tuple in canonical order (lower endpoint first).
/// `A -> B` and `B -> A` give equal keys (equality and `Hash` ignore the direction) and equal
/// [`hash64`](ConnKey::hash64). VLAN, tunnel and in_port are deliberately not part of it, so
/// both halves of a connection map to one shard wherever they enter the switch.
#[derive(Debug, Clone, Copy)]
pub struct ConnKey {
    family: ConnFamily,
    proto: u8,
    lo: ConnEnd,
    hi: ConnEnd,
    forward: bool,
}

impl PartialEq for ConnKey {
    fn eq(&self, o: &ConnKey) -> bool {
        self.family == o.family && self.proto == o.proto && self.lo == o.lo && self.hi == o.hi
    }
}

impl Eq for ConnKey {}

impl Hash for ConnKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.canonical_bytes().hash(h)
    }
}

/// Length of [`ConnKey::canonical_bytes`].
pub const CONN_KEY_BYTES: usize = 38;

impl ConnKey {
    /// Builds the key of a conversation from `src` to `dst`.
    pub fn new(family: ConnFamily, proto: u8, src: ConnEnd, dst: ConnEnd) -> ConnKey {
        let forward = src.order(&dst) != Ordering::Greater;
        let (lo, hi) = if forward { (src, dst) } else { (dst, src) };
        ConnKey { family, proto, lo, hi, forward }
    }

    pub fn from_flow(k: &FlowKey) -> ConnKey {
        let ep = |addr, port| ConnEnd { addr, port };
        if k.is_ip() {
            let family = if k.ip_src.is_ipv4() { ConnFamily::Ipv4 } else { ConnFamily::Ipv6 };
            let icmp = matches!(IpProtocol::from(k.ip_proto), IpProtocol::Icmp | IpProtocol::Icmpv6);
            let (sp, dp) = if icmp { (k.icmp_id, k.icmp_id) } else { (k.l4_src, k.l4_dst) };
            ConnKey::new(family, k.ip_proto, ep(ConnAddr::Ip(k.ip_src), sp), ep(ConnAddr::Ip(k.ip_dst), dp))
        } else if k.is_arp() {
            let (s, d) = (ConnAddr::Ip(IpAddr::V4(k.arp_spa)), ConnAddr::Ip(IpAddr::V4(k.arp_tpa)));
            ConnKey::new(ConnFamily::Arp, 0, ep(s, 0), ep(d, 0))
        } else {
            ConnKey::new(ConnFamily::L2, 0, ep(ConnAddr::Mac(k.eth_src), 0), ep(ConnAddr::Mac(k.eth_dst), 0))
        }
    }

    pub fn family(&self) -> ConnFamily {
        self.family
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// The endpoint that sorts first.
    pub fn lo(&self) -> ConnEnd {
        self.lo
    }

    pub fn hi(&self) -> ConnEnd {
        self.hi
    }

    /// True when the frame this key came from went from [`lo`](Self::lo) to [`hi`](Self::hi).
    pub fn is_forward(&self) -> bool {
        self.forward
    }

    /// Source of the frame this key came from.
    pub fn src(&self) -> ConnEnd {
        if self.forward {
            self.lo
        } else {
            self.hi
        }
    }

    pub fn dst(&self) -> ConnEnd {
        if self.forward {
            self.hi
        } else {
            self.lo
        }
    }

    /// The same key seen from the other direction.
    pub fn reversed(&self) -> ConnKey {
        ConnKey { forward: !self.forward, ..*self }
    }

    /// The bytes that define the key, in order: family (1), protocol (1), lo address (16),
    /// lo port (2, big-endian), hi address (16), hi port (2). Addresses as in `addr_bytes`.
    pub fn canonical_bytes(&self) -> [u8; CONN_KEY_BYTES] {
        let mut b = [0u8; CONN_KEY_BYTES];
        b[0] = self.family as u8;
        b[1] = self.proto;
        b[2..18].copy_from_slice(&self.lo.addr_bytes());
        b[18..20].copy_from_slice(&self.lo.port.to_be_bytes());
        b[20..36].copy_from_slice(&self.hi.addr_bytes());
        b[36..38].copy_from_slice(&self.hi.port.to_be_bytes());
        b
    }

    /// Stable, seedless 64-bit hash: FNV-1a 64 over [`canonical_bytes`](Self::canonical_bytes),
    /// then the MurmurHash3 `fmix64` finalizer (FNV alone mixes the high bits poorly, and jump
    /// consistent hashing reads all 64). The same on every process and machine; changing it
    /// moves every connection to another shard, so it is pinned by a test vector.
    pub fn hash64(&self) -> u64 {
        fmix64(fnv1a64(&self.canonical_bytes()))
    }
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::build::{self, Eth, L4};
    use crate::packet::icmp::IcmpRepr;
    use crate::packet::tcp::{TcpFlags, TcpRepr};
    use crate::packet::udp::UdpRepr;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("ipv4")
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("ipv6")
    }

    /// An IPv6 frame with arbitrary extension headers before `l4`.
    fn ipv6_with_ext(ext: &[u8], first: IpProtocol, l4: &[u8]) -> Vec<u8> {
        let mut pl = ext.to_vec();
        pl.extend_from_slice(l4);
        let ip6 = ipv6::Ipv6Repr::new(v6("fd00::1"), v6("fd00::2"), first, pl.len());
        let e =
            crate::packet::ethernet::EthernetRepr { src: A, dst: B, vlans: [None, None], ethertype: EtherType::Ipv6 };
        let mut out = vec![0u8; 14 + 40];
        let at = e.emit(&mut out).expect("eth");
        ip6.emit(&mut out[at..]).expect("ip6");
        out.extend_from_slice(&pl);
        out
    }

    /// Frames covering every branch of `extract`.
    fn corpus() -> Vec<(&'static str, Vec<u8>)> {
        let (a4, b4, a6, b6) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1"), ip("fd00::2"));
        let mut v = vec![
            ("tcp syn", build::tcp_syn(A, B, a4, b4, 1234, 80)),
            ("tcp syn-ack", build::tcp_syn_ack(B, A, b4, a4, 80, 1234)),
            ("tcp all flags v6", build::tcp(A, B, a6, b6, 1, 2, 0xfff, 0, 0, b"x")),
            ("tcp ack v6", build::tcp_ack(A, B, a6, b6, 40000, 443)),
            ("udp", build::udp(A, B, a4, b4, 5353, 53, b"abc")),
            ("udp6", build::udp(A, B, a6, b6, 546, 547, b"dhcp")),
            ("sctp", build::sctp(A, B, a4, b4, 5000, 38412, 0, &[1, 0, 0, 4])),
            ("sctp6", build::sctp(A, B, a6, b6, 5000, 38412, 7, &[1, 0, 0, 4])),
            ("icmp echo", build::icmp_echo_request(A, B, v4("10.0.0.1"), v4("10.0.0.2"), 7, 1)),
            ("icmp reply", build::icmp_echo_reply(B, A, v4("10.0.0.2"), v4("10.0.0.1"), 7, 1)),
            ("icmp6 echo", build::icmpv6_echo_request(A, B, v6("fd00::1"), v6("fd00::2"), 9, 3)),
            ("arp request", build::arp_request(A, v4("10.0.0.1"), v4("10.0.0.2"))),
            ("arp reply", build::arp_reply(B, v4("10.0.0.2"), A, v4("10.0.0.1"))),
            ("nd solicit", build::nd_solicit(A, v6("fe80::1"), v6("fd00::2"))),
            ("nd advert", build::nd_advert(B, v6("fd00::2"), A, v6("fe80::1"))),
        ];
        let syn = build::tcp_syn(A, B, a4, b4, 1, 2);
        let tagged = build::push_vlan(&syn, 0x8100, 10).expect("vlan");
        v.push(("qinq", build::push_vlan(&tagged, 0x88a8, 20).expect("qinq")));
        v.push(("vlan", tagged));
        // TOS/ECN/TTL, a first and a later IPv4 fragment.
        let mut ip4 = ipv4::Ipv4Repr::new(v4("10.0.0.1"), v4("10.0.0.2"), IpProtocol::Udp, 16);
        ip4.dscp = 46;
        ip4.ecn = 1;
        ip4.ttl = 3;
        ip4.more_frags = true;
        ip4.dont_frag = false;
        let e = Eth::new(A, B);
        let first = ip_frame_with(e, ip4, &L4::Udp(UdpRepr { src_port: 7, dst_port: 9 }), &[0u8; 8]);
        v.push(("v4 first fragment", first));
        ip4.frag_offset = 2;
        let later = ip_frame_with(e, ip4, &L4::Other(IpProtocol::Udp), &[0u8; 16]);
        v.push(("v4 later fragment", later));
        let gre = build::ip_frame(e, a4, b4, L4::Other(IpProtocol::Gre), &[0u8; 4]).expect("gre");
        v.push(("gre", gre));
        let mut udp_hdr = [0u8; 8];
        UdpRepr { src_port: 1000, dst_port: 2000 }.emit(&mut udp_hdr, &[], &a6, &b6).expect("udp");
        // Hop-by-hop -> fragment (first, M) -> UDP.
        let ext = [44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0x00, 0x01, 0, 0, 0, 1];
        v.push(("v6 ext first fragment", ipv6_with_ext(&ext, IpProtocol::HopByHop, &udp_hdr)));
        // Destination options -> fragment (offset 1) -> UDP: a later fragment.
        let ext = [44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0x00, 0x08, 0, 0, 0, 1];
        v.push(("v6 later fragment", ipv6_with_ext(&ext, IpProtocol::Ipv6Opts, &udp_hdr)));
        // LLDP: unknown to us, key with L2 only.
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc];
        lldp.extend_from_slice(&[2, 7, 4, 2, 0, 0, 0, 0, 1, 0, 0]);
        v.push(("lldp", lldp));
        v
    }

    /// Like `build::ip_frame` but with a caller-chosen IPv4 header (fragments, TOS, TTL).
    fn ip_frame_with(e: Eth, ip4: ipv4::Ipv4Repr, l4: &L4, payload: &[u8]) -> Vec<u8> {
        let f = build::ip_frame(e, ip4.src.into(), ip4.dst.into(), *l4, payload).expect("frame");
        let mut out = f[..14].to_vec();
        let mut hdr = [0u8; 20];
        let mut r = ip4;
        r.payload_len = f.len() - 34;
        r.emit(&mut hdr).expect("ip");
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&f[34..]);
        out
    }

    // === Comparison with Open vSwitch ===

    /// `ovs-ofctl ofp-print` of a packet-out carrying `frame`: OVS runs `flow_extract` on it and
    /// prints the flow. Returns the protocol word and the key=value pairs.
    fn ovs_fields(frame: &[u8]) -> (String, Vec<(String, String)>) {
        let total = 24 + frame.len();
        let mut m = vec![4u8, 13, (total >> 8) as u8, total as u8, 0, 0, 0, 1];
        m.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(frame);
        let text = crate::oracle::ofp_print(&m).expect("ovs-ofctl ofp-print");
        let line = text.lines().nth(1).expect("packet line").to_string();
        let flow = line.split(' ').next().expect("flow").to_string();
        let mut proto = String::new();
        let mut kv = Vec::new();
        for tok in flow.split(',') {
            match tok.split_once('=') {
                Some((k, v)) => kv.push((k.to_string(), v.to_string())),
                None => proto = tok.to_string(),
            }
        }
        (proto, kv)
    }

    fn ovs_tcp_flags(f: u16) -> String {
        const NAMES: [&str; 12] =
            ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]"];
        let v: Vec<&str> = (0..12).filter(|i| f & (1 << i) != 0).map(|i| NAMES[i]).collect();
        if v.is_empty() {
            "0".to_string()
        } else {
            v.join("|")
        }
    }

    /// Our key rendered with OVS's field names, for the fields OVS prints.
    fn ours(k: &FlowKey) -> Vec<(&'static str, String)> {
        let mut v = vec![("dl_src", k.eth_src.to_string()), ("dl_dst", k.eth_dst.to_string())];
        match (k.vlan, k.vlan_inner) {
            (None, _) => v.push(("vlan_tci", "0x0000".into())),
            (Some(vid), inner) => {
                v.push(("dl_vlan", vid.to_string()));
                v.push(("dl_vlan_pcp", k.vlan_pcp.to_string()));
                if let Some(i) = inner {
                    v.push(("dl_vlan1", i.to_string()));
                }
            }
        }
        if k.is_arp() {
            v.push(("arp_spa", k.arp_spa.to_string()));
            v.push(("arp_tpa", k.arp_tpa.to_string()));
            v.push(("arp_op", k.arp_op.to_string()));
            v.push(("arp_sha", k.arp_sha.to_string()));
            v.push(("arp_tha", k.arp_tha.to_string()));
            return v;
        }
        if !k.is_ip() {
            v.push(("dl_type", format!("0x{:04x}", k.eth_type)));
            return v;
        }
        match (k.ip_src, k.ip_dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                v.push(("nw_src", s.to_string()));
                v.push(("nw_dst", d.to_string()));
            }
            (s, d) => {
                v.push(("ipv6_src", s.to_string()));
                v.push(("ipv6_dst", d.to_string()));
                v.push(("ipv6_label", format!("0x{:05x}", k.ipv6_label)));
            }
        }
        v.push(("nw_tos", k.ip_tos.to_string()));
        v.push(("nw_ecn", k.ip_ecn.to_string()));
        v.push(("nw_ttl", k.ip_ttl.to_string()));
        v.push(("nw_frag", k.ip_frag.as_str().to_string()));
        if k.ip_frag == IpFrag::Later {
            return v;
        }
        match IpProtocol::from(k.ip_proto) {
            IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp => {
                v.push(("tp_src", k.l4_src.to_string()));
                v.push(("tp_dst", k.l4_dst.to_string()));
                if k.ip_proto == 6 {
                    v.push(("tcp_flags", ovs_tcp_flags(k.tcp_flags)));
                }
            }
            IpProtocol::Icmp | IpProtocol::Icmpv6 => {
                v.push(("icmp_type", k.icmp_type.to_string()));
                v.push(("icmp_code", k.icmp_code.to_string()));
                if let Some(t) = k.nd_target {
                    v.push(("nd_target", t.to_string()));
                    v.push(("nd_sll", k.nd_sll.unwrap_or(MacAddr::ZERO).to_string()));
                    v.push(("nd_tll", k.nd_tll.unwrap_or(MacAddr::ZERO).to_string()));
                }
            }
            _ => v.push(("nw_proto", k.ip_proto.to_string())),
        }
        v
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn extract_matches_ovs_flow_extract() {
        assert!(crate::oracle::available(), "ovs-ofctl is needed");
        for (name, frame) in corpus() {
            let k = FlowKey::extract(5, &frame).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (_proto, theirs) = ovs_fields(&frame);
            for (field, val) in ours(&k) {
                let got = theirs.iter().find(|(f, _)| f == field).map(|(_, v)| v.as_str());
                assert_eq!(got, Some(val.as_str()), "{name}: field {field}; OVS printed {theirs:?}");
            }
        }
    }

    #[test]
    fn extract_spot_checks() {
        let f = build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1234, 80);
        let k = FlowKey::extract(3, &f).expect("key");
        assert_eq!(k.in_port, 3);
        assert_eq!((k.l4_src, k.l4_dst, k.ip_proto), (1234, 80, 6));
        assert_eq!(k.tcp_flags, TcpFlags::SYN);
        let f = build::push_vlan(&f, 0x8100, 0x123).expect("vlan");
        let k = FlowKey::extract(3, &f).expect("key");
        assert_eq!((k.vlan, k.vlan_tci()), (Some(0x123), 0x1123));
        let f = build::icmp_echo_request(A, B, v4("10.0.0.1"), v4("10.0.0.2"), 77, 1);
        let k = FlowKey::extract(3, &f).expect("key");
        assert_eq!((k.icmp_type, k.icmp_id), (8, 77));
        let f = build::nd_solicit(A, v6("fe80::1"), v6("fd00::2"));
        let k = FlowKey::extract(3, &f).expect("key");
        assert_eq!((k.nd_target, k.nd_sll, k.nd_tll), (Some(v6("fd00::2")), Some(A), None));
    }

    #[test]
    fn padded_frames_extract_the_same() {
        for (name, frame) in corpus() {
            let k = FlowKey::extract(1, &frame).expect(name);
            let padded = build::pad_to_min(frame.clone());
            assert_eq!(FlowKey::extract(1, &padded).expect(name), k, "{name}");
        }
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        for (name, frame) in corpus() {
            if name == "lldp" || name == "gre" {
                continue; // no length field covers their payload: prefixes are valid frames
            }
            for n in 0..frame.len() {
                assert!(FlowKey::extract(1, &frame[..n]).is_err(), "{name}: prefix {n} of {}", frame.len());
            }
        }
    }

    #[test]
    fn malformed_is_an_error_never_a_panic() {
        // Flip every byte of every frame to a few values: extract must return, never panic.
        for (_, frame) in corpus() {
            for i in 0..frame.len() {
                for x in [0x00, 0xff, 0x0f, 0x80] {
                    let mut f = frame.clone();
                    f[i] = x;
                    let _ = FlowKey::extract(1, &f);
                }
            }
        }
        let mut bad = build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2);
        bad[14 + 20 + 12] = 0x20; // TCP data offset 8
        assert!(FlowKey::extract(1, &bad).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // Random frames behind each EtherType and IP protocol we parse, all lengths.
        let mut g = Gen(0x0123_4567_89ab_cdef);
        let types: [u16; 6] = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8035];
        let mut ok = 0;
        for i in 0..20_000 {
            let len = (g.next() % 120) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
            if len >= 14 {
                f[12..14].copy_from_slice(&types[i % types.len()].to_be_bytes());
            }
            if len >= 24 && i % 3 == 0 {
                f[14] = 0x45; // plausible IPv4 header start
                f[23] = [1u8, 6, 17, 132][i % 4];
            }
            if len >= 21 && i % 3 == 1 {
                f[14] = 0x60;
                f[20] = [0u8, 6, 17, 44, 58, 60, 43, 51][i % 8];
            }
            if FlowKey::extract(1, &f).is_ok() {
                ok += 1;
            }
            let _ = super::super::describe(&f);
        }
        assert!(ok > 0);
    }

    // === ConnKey ===

    /// Deterministic xorshift64* generator: no crates, same sequence everywhere.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn conn_key_is_direction_free() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for i in 0..2000 {
            let r = g.next();
            let (sp, dp) = (r as u16, (r >> 16) as u16);
            let (s, d): (IpAddr, IpAddr) = if i % 2 == 0 {
                (Ipv4Addr::from(g.next() as u32).into(), Ipv4Addr::from((g.next() % 4) as u32).into())
            } else {
                (Ipv6Addr::from(u128::from(g.next())).into(), Ipv6Addr::from(u128::from(g.next() % 4)).into())
            };
            let fwd = build::tcp(A, B, s, d, sp, dp, TcpFlags::SYN, 0, 0, &[]);
            let rev = build::tcp(B, A, d, s, dp, sp, TcpFlags::SYN | TcpFlags::ACK, 0, 0, &[]);
            let kf = FlowKey::extract(1, &fwd).expect("fwd").conn_key();
            let kr = FlowKey::extract(2, &rev).expect("rev").conn_key();
            assert_eq!(kf, kr);
            assert_eq!(kf.hash64(), kr.hash64());
            assert_eq!(kf.canonical_bytes(), kr.canonical_bytes());
            if (s, sp) != (d, dp) {
                assert_ne!(kf.is_forward(), kr.is_forward());
            }
            assert_eq!(kf.src(), kr.dst());
            assert_eq!(kf.reversed().is_forward(), kr.is_forward());
        }
    }

    #[test]
    fn conn_key_pairs_icmp_echo_and_arp() {
        let req = build::icmp_echo_request(A, B, v4("10.0.0.1"), v4("10.0.0.2"), 7, 1);
        let rep = build::icmp_echo_reply(B, A, v4("10.0.0.2"), v4("10.0.0.1"), 7, 1);
        let other = build::icmp_echo_request(A, B, v4("10.0.0.1"), v4("10.0.0.2"), 8, 1);
        let k = |f: &[u8]| FlowKey::extract(1, f).expect("key").conn_key();
        assert_eq!(k(&req), k(&rep));
        assert_ne!(k(&req), k(&other));
        let a = build::arp_request(A, v4("10.0.0.1"), v4("10.0.0.2"));
        let b = build::arp_reply(B, v4("10.0.0.2"), A, v4("10.0.0.1"));
        assert_eq!(k(&a), k(&b));
        assert_eq!(k(&a).family(), ConnFamily::Arp);
        // UDP and TCP on the same tuple are different connections.
        let u = build::udp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, &[]);
        let t = build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2);
        assert_ne!(k(&u), k(&t));
        assert_ne!(k(&u).hash64(), k(&t).hash64());
        let _ = (IcmpRepr::echo_request(1, 1), TcpRepr::new(1, 2, 0));
    }

    #[test]
    fn hash64_is_pinned() {
        // Vectors computed by an independent one-off (Python) from the documented definition;
        // if these change, every deployed shard assignment changes.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let src = ConnEnd { addr: ConnAddr::Ip(ip("10.0.0.2")), port: 80 };
        let dst = ConnEnd { addr: ConnAddr::Ip(ip("10.0.0.1")), port: 1234 };
        let k = ConnKey::new(ConnFamily::Ipv4, 6, src, dst);
        assert!(!k.is_forward());
        let mut want = [0u8; CONN_KEY_BYTES];
        want[0] = 4;
        want[1] = 6;
        want[2..6].copy_from_slice(&[10, 0, 0, 1]);
        want[18..20].copy_from_slice(&1234u16.to_be_bytes());
        want[20..24].copy_from_slice(&[10, 0, 0, 2]);
        want[36..38].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(k.canonical_bytes(), want);
        assert_eq!(k.hash64(), HASH_VECTOR);
    }

    const HASH_VECTOR: u64 = 0x8372_0994_e12e_4dec;
}
