//! ICMP errors belong to the connection that caused them (conntrack's "related"): a
//! Destination Unreachable for a TCP SYN must reach the shard that owns that TCP connection.
//! [`ConnKey::of_frame`] reads the datagram quoted inside an ICMP/ICMPv6 error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ethernet::Frame;
use super::key::{ConnAddr, ConnEnd, ConnFamily, ConnKey, FlowKey};
use super::types::{be16, IpProtocol, Result};
use super::{ipv4, ipv6};

/// ICMPv4 error types that quote the offending datagram.
fn is_icmp_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 error types (RFC 4443: destination unreachable, too big, time exceeded, parameter).
fn is_icmpv6_error(t: u8) -> bool {
    matches!(t, 1..=4)
}

impl ConnKey {
    /// The connection a frame belongs to: its own [`FlowKey::conn_key`], except for ICMP and
    /// ICMPv6 errors, which yield the key of the quoted datagram when it can be read (else
    /// their own). Allocation-free.
    pub fn of_frame(frame: &[u8]) -> Result<ConnKey> {
        let k = FlowKey::extract(0, frame)?;
        let own = k.conn_key();
        let icmp_error = match IpProtocol::from(k.ip_proto) {
            IpProtocol::Icmp if k.ip_src.is_ipv4() => is_icmp_error(k.icmp_type),
            IpProtocol::Icmpv6 if k.ip_src.is_ipv6() => is_icmpv6_error(k.icmp_type),
            _ => false,
        };
        if !icmp_error || k.ip_frag != super::key::IpFrag::No {
            return Ok(own);
        }
        Ok(quoted(frame).unwrap_or(own))
    }
}

/// The ICMP message body (after its 8-byte header) of an unfragmented IP frame.
fn icmp_body(frame: &[u8]) -> Option<&[u8]> {
    let eth = Frame::new_checked(frame).ok()?;
    let hl = eth.header_len();
    let net = frame.get(hl..)?;
    let (l4_at, end) = match net.first()? >> 4 {
        4 => {
            let p = ipv4::Packet::new_checked(net).ok()?;
            (p.header_len(), usize::from(p.total_len()))
        }
        6 => {
            let p = ipv6::Packet::new_checked(net).ok()?;
            (ipv6::HEADER_LEN + p.upper_layer().ok()?.offset, ipv6::HEADER_LEN + usize::from(p.payload_len()))
        }
        _ => return None,
    };
    net.get(l4_at + 8..end)
}

/// Leniently reads the quoted datagram: it is cut short by design (RFC 792 quotes the IP
/// header and 8 bytes), so lengths announced inside it are not required to be present.
fn quoted(frame: &[u8]) -> Option<ConnKey> {
    let q = icmp_body(frame)?;
    let (family, src, dst, proto, l4) = match q.first()? >> 4 {
        4 => {
            let ihl = usize::from(q[0] & 0x0f) * 4;
            if ihl < 20 || q.len() < ihl {
                return None;
            }
            if be16(q, 6) & 0x1fff != 0 {
                return None; // a later fragment quotes no transport header
            }
            let s = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
            let d = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
            (ConnFamily::Ipv4, IpAddr::V4(s), IpAddr::V4(d), q[9], &q[ihl..])
        }
        6 => {
            if q.len() < 40 {
                return None;
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&q[8..24]);
            d.copy_from_slice(&q[24..40]);
            (ConnFamily::Ipv6, IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)), q[6], &q[40..])
        }
        _ => return None,
    };
    let ports = match IpProtocol::from(proto) {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp if l4.len() >= 4 => (be16(l4, 0), be16(l4, 2)),
        // A quoted echo request: conntrack keys echo on its identifier.
        IpProtocol::Icmp | IpProtocol::Icmpv6 if l4.len() >= 6 && matches!(l4[0], 0 | 8 | 128 | 129) => {
            (be16(l4, 4), be16(l4, 4))
        }
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp | IpProtocol::Icmp | IpProtocol::Icmpv6 => return None,
        _ => (0, 0),
    };
    let ep = |a, p| ConnEnd { addr: ConnAddr::Ip(a), port: p };
    Some(ConnKey::new(family, proto, ep(src, ports.0), ep(dst, ports.1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::build::{self, Eth, L4};
    use crate::packet::icmp::IcmpRepr;
    use crate::packet::icmpv6::Icmpv6Repr;
    use crate::packet::MacAddr;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// An ICMP error from `router` back to the sender of `orig`, quoting `quote_len` bytes of
    /// its IP datagram.
    fn error_for(orig: &[u8], router: IpAddr, quote_len: usize) -> Vec<u8> {
        let k = FlowKey::extract(0, orig).expect("orig");
        let quote = &orig[14..(14 + quote_len).min(orig.len())];
        let l4 = if router.is_ipv4() {
            L4::Icmp(IcmpRepr { msg_type: 3, code: 3, rest: [0; 4] })
        } else {
            L4::Icmpv6(Icmpv6Repr { msg_type: 1, code: 4, rest: [0; 4] })
        };
        build::ip_frame(Eth::new(B, A), router, k.ip_src, l4, quote).expect("icmp error")
    }

    #[test]
    fn icmp_errors_map_to_the_quoted_connection() {
        let cases = [
            build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 40000, 80),
            build::udp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 5353, 53, b"query"),
            build::tcp_syn(A, B, ip("fd00::1"), ip("fd00::2"), 40000, 443),
            build::udp(A, B, ip("fd00::1"), ip("fd00::2"), 546, 547, b"x"),
            build::icmp_echo_request(A, B, "10.0.0.1".parse().expect("a"), "10.0.0.2".parse().expect("b"), 9, 1),
        ];
        for orig in cases {
            let want = ConnKey::of_frame(&orig).expect("orig");
            let router = if want.family() == ConnFamily::Ipv4 { ip("192.0.2.1") } else { ip("2001:db8::1") };
            let q = if router.is_ipv4() { 28 } else { 48 };
            let err = error_for(&orig, router, q);
            let got = ConnKey::of_frame(&err).expect("error");
            assert_eq!(got, want);
            assert_eq!(got.hash64(), want.hash64());
            // Its own FlowKey-based key is different (router <-> sender).
            assert_ne!(FlowKey::extract(0, &err).expect("k").conn_key(), want);
        }
    }

    #[test]
    fn short_quotes_fall_back_to_own_key() {
        let orig = build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 40000, 80);
        for q in [0, 10, 20, 22] {
            let err = error_for(&orig, ip("192.0.2.1"), q);
            let own = FlowKey::extract(0, &err).expect("k").conn_key();
            assert_eq!(ConnKey::of_frame(&err).expect("error"), own, "quote {q}");
        }
        // Non-error frames: the plain key.
        let k = FlowKey::extract(0, &orig).expect("k").conn_key();
        assert_eq!(ConnKey::of_frame(&orig).expect("k"), k);
    }
}
