//! Whole-frame checksum verification: IPv4 header, then TCP/UDP/SCTP/ICMP/ICMPv6.
//!
//! [`super::FlowKey::extract`] does not verify checksums (neither does OVS's `flow_extract`);
//! this is for tests, the load generator and any policy that wants to drop corrupt frames.

use std::net::IpAddr;

use super::ethernet::Frame;
use super::icmp;
use super::icmpv6;
use super::ipv4;
use super::ipv6;
use super::sctp;
use super::tcp;
use super::types::{EtherType, IpProtocol, PacketError, Result};
use super::udp;

/// Ok when every checksum present in the frame verifies. Non-IP frames and fragments (whose
/// transport checksum covers bytes not in this frame) only get their IPv4 header checked.
/// Allocation-free.
pub fn verify_checksums(frame: &[u8]) -> Result<()> {
    let eth = Frame::new_checked(frame)?;
    let net = eth.payload();
    // (src, dst, protocol, transport byte range within `net`, fragment)
    let (src, dst, proto, range, fragment) = match eth.ethertype() {
        EtherType::Ipv4 => {
            let p = ipv4::Packet::new_checked(net)?;
            if !p.verify_checksum() {
                return Err(PacketError::Checksum { layer: "ipv4" });
            }
            let range = p.header_len()..usize::from(p.total_len());
            (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()), p.protocol(), range, p.is_fragment())
        }
        EtherType::Ipv6 => {
            let p = ipv6::Packet::new_checked(net)?;
            let u = p.upper_layer()?;
            let range = ipv6::HEADER_LEN + u.offset..ipv6::HEADER_LEN + usize::from(p.payload_len());
            (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()), u.protocol, range, u.frag.is_some())
        }
        _ => return Ok(()),
    };
    let l4 = net.get(range).unwrap_or(&[]);
    if fragment {
        return Ok(());
    }
    let ok = match (proto, src, dst) {
        (IpProtocol::Tcp, _, _) => tcp::Packet::new_checked(l4)?.verify_checksum(&src, &dst),
        (IpProtocol::Udp, _, _) => udp::Packet::new_checked(l4)?.verify_checksum(&src, &dst),
        (IpProtocol::Sctp, _, _) => sctp::Packet::new_checked(l4)?.verify_checksum(),
        (IpProtocol::Icmp, IpAddr::V4(_), _) => icmp::Packet::new_checked(l4)?.verify_checksum(),
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) => icmpv6::Packet::new_checked(l4)?.verify_checksum(&s, &d),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(PacketError::Checksum { layer: "transport" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{build, MacAddr};

    #[test]
    fn built_frames_verify_and_corruption_is_caught() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let (s4, d4): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("a"), "10.0.0.2".parse().expect("b"));
        let (s6, d6): (IpAddr, IpAddr) = ("fd00::1".parse().expect("a"), "fd00::2".parse().expect("b"));
        let frames = [
            build::tcp(a, b, s4, d4, 1, 2, 0x18, 1, 2, b"payload"),
            build::tcp(a, b, s6, d6, 1, 2, 0x18, 1, 2, b"odd"),
            build::udp(a, b, s4, d4, 1, 2, b"x"),
            build::udp(a, b, s6, d6, 1, 2, b"xy"),
            build::sctp(a, b, s4, d4, 1, 2, 3, &[1, 0, 0, 4]),
            build::icmp_echo_request(a, b, "10.0.0.1".parse().expect("a"), "10.0.0.2".parse().expect("b"), 1, 2),
            build::icmpv6_echo_request(a, b, "fd00::1".parse().expect("a"), "fd00::2".parse().expect("b"), 1, 2),
            build::nd_solicit(a, "fe80::1".parse().expect("a"), "fd00::2".parse().expect("t")),
        ];
        for f in &frames {
            verify_checksums(f).expect("built frame verifies");
            // Flip one bit in the last byte (transport payload or header).
            let mut bad = f.clone();
            let n = bad.len() - 1;
            bad[n] ^= 0x01;
            assert!(matches!(verify_checksums(&bad), Err(PacketError::Checksum { .. })));
        }
        let mut bad = frames[0].clone();
        bad[14 + 8] ^= 1; // IPv4 TTL
        assert_eq!(verify_checksums(&bad), Err(PacketError::Checksum { layer: "ipv4" }));
    }
}
