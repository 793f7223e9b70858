//! A compact one-line summary of a frame for logs, in the spirit of tcpdump:
//! `tcp 10.0.0.1:1234 > 10.0.0.2:80 [S]`.

use std::fmt::{self, Write};
use std::net::IpAddr;

use super::icmp;
use super::icmpv6;
use super::key::{FlowKey, IpFrag};
use super::tcp::TcpFlags;
use super::types::IpProtocol;

/// One line describing `frame`; a malformed frame is described as such, never a panic.
/// Allocates the returned `String` only (use [`Describe`] to write into your own buffer).
pub fn describe(frame: &[u8]) -> String {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "{}", Describe(frame));
    s
}

/// `Display` adapter behind [`describe`], for `tracing` fields and reuse of buffers.
pub struct Describe<'a>(pub &'a [u8]);

struct Host(IpAddr, Option<u16>);

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match FlowKey::extract(0, self.0) {
            Ok(k) => k,
            Err(e) => return write!(f, "malformed ({e}) len {}", self.0.len()),
        };
        if let Some(v) = k.vlan {
            write!(f, "vlan {v} ")?;
            if let Some(i) = k.vlan_inner {
                write!(f, "vlan {i} ")?;
            }
        }
        if k.is_arp() {
            return match k.arp_op {
                1 => write!(f, "arp who-has {} tell {}", k.arp_tpa, k.arp_spa),
                2 => write!(f, "arp reply {} is-at {}", k.arp_spa, k.arp_sha),
                op => write!(f, "arp op {op} {} > {}", k.arp_spa, k.arp_tpa),
            };
        }
        if !k.is_ip() {
            return write!(f, "eth {} > {} type 0x{:04x} len {}", k.eth_src, k.eth_dst, k.eth_type, self.0.len());
        }
        let v6 = k.ip_src.is_ipv6();
        let ports = k.ip_frag != IpFrag::Later;
        let (s, d) = (k.ip_src, k.ip_dst);
        match IpProtocol::from(k.ip_proto) {
            p @ (IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp) if ports => {
                let name = match p {
                    IpProtocol::Tcp => "tcp",
                    IpProtocol::Udp => "udp",
                    _ => "sctp",
                };
                write!(f, "{name} {} > {}", Host(s, Some(k.l4_src)), Host(d, Some(k.l4_dst)))?;
                if p == IpProtocol::Tcp {
                    write!(f, " [{}]", TcpFlags(k.tcp_flags))?;
                }
            }
            IpProtocol::Icmp | IpProtocol::Icmpv6 if ports => {
                let (proto, name) =
                    if v6 { ("icmp6", icmpv6::type_name(k.icmp_type)) } else { ("icmp", icmp::type_name(k.icmp_type)) };
                write!(f, "{proto} {s} > {d} ")?;
                match name {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "type {}", k.icmp_type)?,
                }
                if k.icmp_code != 0 {
                    write!(f, " code {}", k.icmp_code)?;
                }
                if let Some(t) = k.nd_target {
                    write!(f, " {t}")?;
                } else if matches!(k.icmp_type, 0 | 8 | 128 | 129) {
                    write!(f, " id {}", k.icmp_id)?;
                }
            }
            p => {
                let name = if v6 { "ipv6" } else { "ip" };
                write!(f, "{name} {s} > {d} proto {}", u8::from(p))?;
            }
        }
        match k.ip_frag {
            IpFrag::No => Ok(()),
            IpFrag::First => f.write_str(" frag first"),
            IpFrag::Later => f.write_str(" frag later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::build;
    use crate::packet::MacAddr;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn lines() {
        let syn = build::tcp_syn(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 1234, 80);
        assert_eq!(describe(&syn), "tcp 10.0.0.1:1234 > 10.0.0.2:80 [S]");
        let sa = build::tcp_syn_ack(B, A, ip("fd00::2"), ip("fd00::1"), 80, 1234);
        assert_eq!(describe(&sa), "tcp [fd00::2]:80 > [fd00::1]:1234 [S.]");
        let tagged = build::push_vlan(&syn, 0x8100, 10).expect("vlan");
        assert_eq!(describe(&tagged), "vlan 10 tcp 10.0.0.1:1234 > 10.0.0.2:80 [S]");
        let u = build::udp(A, B, ip("10.0.0.1"), ip("10.0.0.2"), 5353, 53, b"q");
        assert_eq!(describe(&u), "udp 10.0.0.1:5353 > 10.0.0.2:53");
        let e = build::icmp_echo_request(A, B, "10.0.0.1".parse().expect("a"), "10.0.0.2".parse().expect("b"), 7, 1);
        assert_eq!(describe(&e), "icmp 10.0.0.1 > 10.0.0.2 echo-request id 7");
        let a = build::arp_request(A, "10.0.0.1".parse().expect("a"), "10.0.0.2".parse().expect("b"));
        assert_eq!(describe(&a), "arp who-has 10.0.0.2 tell 10.0.0.1");
        let r = build::arp_reply(B, "10.0.0.2".parse().expect("a"), A, "10.0.0.1".parse().expect("b"));
        assert_eq!(describe(&r), "arp reply 10.0.0.2 is-at 02:00:00:00:00:02");
        let ns = build::nd_solicit(A, "fe80::1".parse().expect("a"), "fd00::2".parse().expect("t"));
        assert_eq!(describe(&ns), "icmp6 fe80::1 > ff02::1:ff00:2 neighbor-solicit fd00::2");
        assert_eq!(describe(&syn[..30]), "malformed (ipv4: truncated) len 30");
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc];
        lldp.extend_from_slice(&[0; 4]);
        assert_eq!(describe(&lldp), "eth 02:00:00:00:00:01 > 01:80:c2:00:00:0e type 0x88cc len 18");
    }
}
