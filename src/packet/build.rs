//! Whole frames with correct lengths and checksums, for tests and the load generator.
//!
//! The general entry point is [`ip_frame`]; the named helpers (`tcp_syn`, `arp_request`, ...)
//! cover the packets a controller usually sees first. Builders allocate (one `Vec` per frame);
//! only the parse path is allocation-free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp::{ArpRepr, Operation};
use super::ethernet::{is_vlan_tpid, EthernetRepr, VlanTag, HEADER_LEN as ETH_LEN};
use super::icmp::IcmpRepr;
use super::icmpv6::{self, Icmpv6Repr};
use super::ipv4::Ipv4Repr;
use super::ipv6::Ipv6Repr;
use super::sctp::SctpRepr;
use super::tcp::{TcpFlags, TcpRepr};
use super::types::{malformed, truncated, EtherType, IpProtocol, MacAddr, PacketError, Result};
use super::udp::UdpRepr;

const LAYER: &str = "build";

/// Smallest Ethernet frame without FCS; shorter frames are padded by NICs (not by OVS).
pub const MIN_FRAME_LEN: usize = 60;

/// The transport header to put in an IP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpRepr),
    Udp(UdpRepr),
    Sctp(SctpRepr),
    /// IPv4 only.
    Icmp(IcmpRepr),
    /// IPv6 only.
    Icmpv6(Icmpv6Repr),
    /// Any other protocol: the payload is the whole IP payload.
    Other(IpProtocol),
}

impl L4 {
    fn protocol(&self) -> IpProtocol {
        match self {
            L4::Tcp(_) => IpProtocol::Tcp,
            L4::Udp(_) => IpProtocol::Udp,
            L4::Sctp(_) => IpProtocol::Sctp,
            L4::Icmp(_) => IpProtocol::Icmp,
            L4::Icmpv6(_) => IpProtocol::Icmpv6,
            L4::Other(p) => *p,
        }
    }

    fn header_len(&self) -> usize {
        match self {
            L4::Tcp(t) => t.header_len(),
            L4::Udp(_) => super::udp::HEADER_LEN,
            L4::Sctp(_) => super::sctp::HEADER_LEN,
            L4::Icmp(_) => super::icmp::HEADER_LEN,
            L4::Icmpv6(_) => icmpv6::HEADER_LEN,
            L4::Other(_) => 0,
        }
    }

    fn emit(&self, buf: &mut [u8], payload: &[u8], src: &IpAddr, dst: &IpAddr) -> Result<usize> {
        match (self, src, dst) {
            (L4::Tcp(t), _, _) => t.emit(buf, payload, src, dst),
            (L4::Udp(u), _, _) => u.emit(buf, payload, src, dst),
            (L4::Sctp(s), _, _) => s.emit(buf, payload),
            (L4::Icmp(i), IpAddr::V4(_), _) => i.emit(buf, payload),
            (L4::Icmpv6(i), IpAddr::V6(s), IpAddr::V6(d)) => i.emit(buf, payload, s, d),
            (L4::Other(_), _, _) => {
                let n = payload.len();
                buf.get_mut(..n).ok_or(PacketError::BufferTooSmall { layer: LAYER })?.copy_from_slice(payload);
                Ok(n)
            }
            _ => Err(malformed(LAYER, "ICMP version does not match the IP version")),
        }
    }
}

/// Ethernet addressing of a frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eth {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// 802.1Q tag (TPID 0x8100, PCP 0) when set.
    pub vlan: Option<u16>,
}

impl Eth {
    pub fn new(src: MacAddr, dst: MacAddr) -> Eth {
        Eth { src, dst, vlan: None }
    }

    pub fn with_vlan(self, vid: u16) -> Eth {
        Eth { vlan: Some(vid), ..self }
    }

    fn repr(&self, ethertype: EtherType) -> EthernetRepr {
        EthernetRepr { src: self.src, dst: self.dst, vlans: [self.vlan.map(VlanTag::new), None], ethertype }
    }
}

/// Length of the frame [`ip_frame`] builds (to size a buffer for [`ip_frame_into`]).
pub fn ip_frame_len(eth: Eth, src: IpAddr, l4: &L4, payload_len: usize) -> usize {
    let ip = if src.is_ipv4() { super::ipv4::MIN_HEADER_LEN } else { super::ipv6::HEADER_LEN };
    eth.repr(EtherType::Unknown(0)).header_len() + ip + l4.header_len() + payload_len
}

/// An IP frame: Ethernet (+VLAN), IPv4 or IPv6 (by address family; TTL/hop limit 64, 255 for
/// Neighbor Discovery), the transport header and `payload`, all lengths and checksums filled.
pub fn ip_frame(eth: Eth, src: IpAddr, dst: IpAddr, l4: L4, payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; ip_frame_len(eth, src, &l4, payload.len())];
    let n = ip_frame_into(&mut out, eth, src, dst, l4, payload)?;
    out.truncate(n);
    Ok(out)
}

/// [`ip_frame`] into a caller's buffer (the load generator reuses one): no allocation.
/// Returns the frame length; `BufferTooSmall` when `buf` is shorter than [`ip_frame_len`].
pub fn ip_frame_into(buf: &mut [u8], eth: Eth, src: IpAddr, dst: IpAddr, l4: L4, payload: &[u8]) -> Result<usize> {
    let l4_len = l4.header_len() + payload.len();
    let proto = l4.protocol();
    let mut at;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Repr::new(s, d, proto, l4_len);
            at = eth.repr(EtherType::Ipv4).emit(buf)?;
            at += ip.emit(&mut buf[at..])?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = Ipv6Repr::new(s, d, proto, l4_len);
            if matches!(l4, L4::Icmpv6(i) if (icmpv6::ROUTER_SOLICIT..=137).contains(&i.msg_type)) {
                ip.hop_limit = 255; // RFC 4861: ND messages are sent with hop limit 255
            }
            at = eth.repr(EtherType::Ipv6).emit(buf)?;
            at += ip.emit(&mut buf[at..])?;
        }
        _ => return Err(malformed(LAYER, "source and destination address families differ")),
    }
    Ok(at + l4.emit(&mut buf[at..], payload, &src, &dst)?)
}

/// Inserts an 802.1Q tag (outside any existing tag) into a built frame.
pub fn push_vlan(frame: &[u8], tpid: u16, vid: u16) -> Result<Vec<u8>> {
    if frame.len() < ETH_LEN {
        return Err(truncated(LAYER));
    }
    if !is_vlan_tpid(tpid) {
        return Err(malformed(LAYER, "TPID is not 0x8100 or 0x88a8"));
    }
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    Ok(out)
}

/// Pads with zeros to [`MIN_FRAME_LEN`], as a NIC would on the wire.
pub fn pad_to_min(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME_LEN {
        frame.resize(MIN_FRAME_LEN, 0);
    }
    frame
}

// === Named helpers ===
//
// These cannot fail for the inputs they take except by mixing address families or by a
// payload larger than an IP datagram; both are programmer errors, so they panic with a message.

fn must(r: Result<Vec<u8>>) -> Vec<u8> {
    match r {
        Ok(v) => v,
        Err(e) => panic!("packet builder misuse: {e}"),
    }
}

/// A TCP segment with the given flags (`TcpFlags::SYN | TcpFlags::ACK`, ...), seq/ack numbers
/// and payload.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    sport: u16,
    dport: u16,
    flags: u16,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = TcpRepr::new(sport, dport, flags);
    t.seq_number = seq;
    t.ack_number = ack;
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip, dst_ip, L4::Tcp(t), payload))
}

/// The first packet of a TCP connection (seq 1000, no options): what conntrack calls `new`.
pub fn tcp_syn(src_mac: MacAddr, dst_mac: MacAddr, src_ip: IpAddr, dst_ip: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    tcp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, TcpFlags::SYN, 1000, 0, &[])
}

/// The answer to [`tcp_syn`] (addresses as seen by the answering side: src is the server).
pub fn tcp_syn_ack(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    tcp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, &[])
}

/// A bare ACK completing the handshake of [`tcp_syn`] / [`tcp_syn_ack`].
pub fn tcp_ack(src_mac: MacAddr, dst_mac: MacAddr, src_ip: IpAddr, dst_ip: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    tcp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, TcpFlags::ACK, 1001, 5001, &[])
}

pub fn udp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let u = UdpRepr { src_port: sport, dst_port: dport };
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip, dst_ip, L4::Udp(u), payload))
}

/// An SCTP packet carrying `chunks` (e.g. an INIT) with the given verification tag.
#[allow(clippy::too_many_arguments)]
pub fn sctp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    sport: u16,
    dport: u16,
    vtag: u32,
    chunks: &[u8],
) -> Vec<u8> {
    let s = SctpRepr { src_port: sport, dst_port: dport, verification_tag: vtag };
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip, dst_ip, L4::Sctp(s), chunks))
}

/// ICMP echo request with 8 bytes of payload (like `ping -s 8`).
pub fn icmp_echo_request(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let i = IcmpRepr::echo_request(id, seq);
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip.into(), dst_ip.into(), L4::Icmp(i), b"shardflw"))
}

pub fn icmp_echo_reply(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let i = IcmpRepr::echo_reply(id, seq);
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip.into(), dst_ip.into(), L4::Icmp(i), b"shardflw"))
}

pub fn icmpv6_echo_request(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let i = Icmpv6Repr::echo_request(id, seq);
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip.into(), dst_ip.into(), L4::Icmpv6(i), b"shardflw"))
}

pub fn icmpv6_echo_reply(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let i = Icmpv6Repr::echo_reply(id, seq);
    must(ip_frame(Eth::new(src_mac, dst_mac), src_ip.into(), dst_ip.into(), L4::Icmpv6(i), b"shardflw"))
}

fn arp_frame(dst_mac: MacAddr, a: ArpRepr) -> Vec<u8> {
    let e = EthernetRepr { src: a.source_hardware_addr, dst: dst_mac, vlans: [None, None], ethertype: EtherType::Arp };
    let mut out = vec![0u8; e.header_len() + a.buffer_len()];
    if let Err(err) = e.emit(&mut out).and_then(|at| a.emit(&mut out[at..])) {
        panic!("packet builder: {err}"); // unreachable: the buffer is sized from the reprs
    }
    out
}

/// Broadcast "who-has `target_ip` tell `src_ip`".
pub fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        ArpRepr {
            operation: Operation::Request,
            source_hardware_addr: src_mac,
            source_protocol_addr: src_ip,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: target_ip,
        },
    )
}

/// Unicast "`src_ip` is-at `src_mac`" to the asker.
pub fn arp_reply(src_mac: MacAddr, src_ip: Ipv4Addr, dst_mac: MacAddr, dst_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        dst_mac,
        ArpRepr {
            operation: Operation::Reply,
            source_hardware_addr: src_mac,
            source_protocol_addr: src_ip,
            target_hardware_addr: dst_mac,
            target_protocol_addr: dst_ip,
        },
    )
}

/// The solicited-node multicast group of an address (ff02::1:ffXX:XXXX) and its MAC.
pub fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, MacAddr) {
    let t = target.octets();
    let mut g = [0u8; 16];
    g[0] = 0xff;
    g[1] = 0x02;
    g[11] = 0x01;
    g[12] = 0xff;
    g[13..].copy_from_slice(&t[13..]);
    (Ipv6Addr::from(g), MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]))
}

/// Neighbor Solicitation for `target` to its solicited-node group, with a source LL option.
pub fn nd_solicit(src_mac: MacAddr, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let (group, gmac) = solicited_node(target);
    let mut body = [0u8; 24];
    let n = icmpv6::nd_body(&mut body, target, Some((icmpv6::OPT_SOURCE_LL, src_mac)));
    let i = Icmpv6Repr::neighbor(icmpv6::NEIGHBOR_SOLICIT, 0);
    must(ip_frame(Eth::new(src_mac, gmac), src_ip.into(), group.into(), L4::Icmpv6(i), &body[..n]))
}

/// Solicited Neighbor Advertisement (S and O flags) for `target` with a target LL option.
pub fn nd_advert(src_mac: MacAddr, target: Ipv6Addr, dst_mac: MacAddr, dst_ip: Ipv6Addr) -> Vec<u8> {
    let mut body = [0u8; 24];
    let n = icmpv6::nd_body(&mut body, target, Some((icmpv6::OPT_TARGET_LL, src_mac)));
    let i = Icmpv6Repr::neighbor(icmpv6::NEIGHBOR_ADVERT, 0x60);
    must(ip_frame(Eth::new(src_mac, dst_mac), target.into(), dst_ip.into(), L4::Icmpv6(i), &body[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ethernet, ipv4, ipv6, tcp, udp};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Parses a TCP or UDP frame back into reprs and rebuilds it with `ip_frame`.
    fn rebuild(frame: &[u8]) -> Vec<u8> {
        let f = ethernet::Frame::new_checked(frame).expect("eth");
        let e = ethernet::EthernetRepr::parse(&f).expect("eth repr");
        let eth = Eth { src: e.src, dst: e.dst, vlan: e.vlans[0].map(|t| t.vid) };
        let (src, dst, proto, l4): (IpAddr, IpAddr, IpProtocol, &[u8]) = match e.ethertype {
            EtherType::Ipv4 => {
                let p = ipv4::Packet::new_checked(f.payload()).expect("ipv4");
                let hl = p.header_len();
                (p.src_addr().into(), p.dst_addr().into(), p.protocol(), &f.payload()[hl..])
            }
            _ => {
                let p = ipv6::Packet::new_checked(f.payload()).expect("ipv6");
                (p.src_addr().into(), p.dst_addr().into(), p.next_header(), &f.payload()[ipv6::HEADER_LEN..])
            }
        };
        match proto {
            IpProtocol::Tcp => {
                let t = tcp::Packet::new_checked(l4).expect("tcp");
                let r = tcp::TcpRepr::parse(&t).expect("tcp repr");
                ip_frame(eth, src, dst, L4::Tcp(r), t.payload()).expect("rebuild")
            }
            _ => {
                let u = udp::Packet::new_checked(l4).expect("udp");
                let r = udp::UdpRepr::parse(&u).expect("udp repr");
                ip_frame(eth, src, dst, L4::Udp(r), u.payload()).expect("rebuild")
            }
        }
    }

    #[test]
    fn parse_emit_parse_whole_frames() {
        let frames = [
            tcp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, TcpFlags::PSH | TcpFlags::ACK, 9, 10, b"hello"),
            tcp_syn(A, B, ip("fd00::1"), ip("fd00::2"), 40000, 443),
            udp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 53, 5353, b"answer"),
            udp(A, B, ip("fd00::1"), ip("fd00::2"), 53, 5353, b"odd"),
            push_vlan(&udp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, b""), 0x8100, 42).expect("vlan"),
        ];
        for f in &frames {
            assert_eq!(&rebuild(f), f);
        }
    }

    #[test]
    fn into_junk_buffer() {
        let l4 = L4::Udp(UdpRepr { src_port: 1, dst_port: 2 });
        let eth = Eth::new(A, B).with_vlan(7);
        let (s, d) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let want = ip_frame(eth, s, d, l4, b"abc").expect("frame");
        assert_eq!(ip_frame_len(eth, s, &l4, 3), want.len());
        let mut buf = [0xa5u8; 100];
        let n = ip_frame_into(&mut buf, eth, s, d, l4, b"abc").expect("into");
        assert_eq!(&buf[..n], &want[..]);
        assert!(buf[n..].iter().all(|&b| b == 0xa5));
        for short in 0..want.len() {
            let mut small = vec![0xa5u8; short];
            assert!(ip_frame_into(&mut small, eth, s, d, l4, b"abc").is_err(), "buffer {short}");
        }
    }

    #[test]
    fn misuse_is_an_error() {
        let l4 = L4::Udp(UdpRepr { src_port: 1, dst_port: 2 });
        assert!(ip_frame(Eth::new(A, B), ip("10.0.0.1"), ip("fd00::1"), l4, b"").is_err());
        let icmp6 = L4::Icmpv6(Icmpv6Repr::echo_request(1, 1));
        assert!(ip_frame(Eth::new(A, B), ip("10.0.0.1"), ip("10.0.0.2"), icmp6, b"").is_err());
        assert!(push_vlan(&[0u8; 13], 0x8100, 1).is_err());
        assert!(push_vlan(&[0u8; 14], 0x0800, 1).is_err());
    }

    #[test]
    fn neighbor_discovery_addressing() {
        let (g, m) = solicited_node("fd00::1234:5678".parse().expect("t"));
        assert_eq!(g, "ff02::1:ff34:5678".parse::<Ipv6Addr>().expect("g"));
        assert_eq!(m.to_string(), "33:33:ff:34:56:78");
        let ns = nd_solicit(A, "fe80::1".parse().expect("s"), "fd00::2".parse().expect("t"));
        let p = ipv6::Packet::new_checked(&ns[14..]).expect("ipv6");
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(pad_to_min(ns.clone()).len(), ns.len().max(MIN_FRAME_LEN));
    }
}
