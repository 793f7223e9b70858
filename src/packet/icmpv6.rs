//! ICMPv6 (RFC 4443) with Neighbor Discovery (RFC 4861): the NS/NA target address and the
//! source/target link-layer address options that OVS matches as `nd_target`, `nd_sll`, `nd_tll`.

use std::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::types::{be16, malformed, need_room, put16, truncated, IpProtocol, MacAddr, Result};

const LAYER: &str = "icmpv6";

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const HEADER_LEN: usize = 8;
    pub const ND_TARGET: Range<usize> = 8..24;
    pub const ND_OPTIONS: usize = 24;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Header, reserved word and target address of NS/NA.
pub const ND_MIN_LEN: usize = field::ND_OPTIONS;

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;

/// ND option types.
pub const OPT_SOURCE_LL: u8 = 1;
pub const OPT_TARGET_LL: u8 = 2;

pub fn type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        DEST_UNREACHABLE => "unreachable",
        PACKET_TOO_BIG => "too-big",
        TIME_EXCEEDED => "time-exceeded",
        ECHO_REQUEST => "echo-request",
        ECHO_REPLY => "echo-reply",
        ROUTER_SOLICIT => "router-solicit",
        ROUTER_ADVERT => "router-advert",
        NEIGHBOR_SOLICIT => "neighbor-solicit",
        NEIGHBOR_ADVERT => "neighbor-advert",
        _ => return None,
    })
}

fn is_nd(t: u8) -> bool {
    t == NEIGHBOR_SOLICIT || t == NEIGHBOR_ADVERT
}

/// Link-layer addresses carried in ND options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NdLinkLayer {
    pub source: Option<MacAddr>,
    pub target: Option<MacAddr>,
}

/// A zero-copy ICMPv6 view over the upper-layer bytes.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// 8 bytes for every message; NS/NA also need their 16-byte target.
    pub fn check_len(&self) -> Result<()> {
        let len = self.b().len();
        if len < field::HEADER_LEN {
            return Err(truncated(LAYER));
        }
        if is_nd(self.msg_type()) && len < field::ND_OPTIONS {
            return Err(truncated("icmpv6 nd"));
        }
        Ok(())
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.b()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.b()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    pub fn echo_ident(&self) -> u16 {
        be16(self.b(), field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        be16(self.b(), field::ECHO_SEQ)
    }

    /// The target address of a Neighbor Solicitation or Advertisement.
    pub fn nd_target(&self) -> Option<Ipv6Addr> {
        if !is_nd(self.msg_type()) {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[field::ND_TARGET]);
        Some(Ipv6Addr::from(a))
    }

    /// Walks the ND options of NS/NA. An option of length 0 or running past the end is
    /// Malformed (RFC 4861 says to drop such a packet). Options other than 6-byte link-layer
    /// addresses are skipped.
    pub fn nd_link_layer(&self) -> Result<NdLinkLayer> {
        let mut out = NdLinkLayer::default();
        if !is_nd(self.msg_type()) {
            return Ok(out);
        }
        let mut opts = &self.b()[field::ND_OPTIONS..];
        while !opts.is_empty() {
            if opts.len() < 2 {
                return Err(truncated("icmpv6 nd option"));
            }
            let len = usize::from(opts[1]) * 8;
            if len == 0 {
                return Err(malformed(LAYER, "nd option length 0"));
            }
            if opts.len() < len {
                return Err(truncated("icmpv6 nd option"));
            }
            if len == 8 {
                let mac = Some(MacAddr::from_slice(&opts[2..8]));
                match opts[0] {
                    OPT_SOURCE_LL => out.source = out.source.or(mac),
                    OPT_TARGET_LL => out.target = out.target.or(mac),
                    _ => {}
                }
            }
            opts = &opts[len..];
        }
        Ok(out)
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[field::HEADER_LEN..]
    }

    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.b();
        let Ok(len) = u32::try_from(b.len()) else { return false };
        let ph = checksum::pseudo_header(&IpAddr::V6(*src), &IpAddr::V6(*dst), IpProtocol::Icmpv6.into(), len);
        checksum::is_valid(&[ph, checksum::data(b)])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let ph =
            checksum::pseudo_header(&IpAddr::V6(*src), &IpAddr::V6(*dst), IpProtocol::Icmpv6.into(), b.len() as u32);
        let c = checksum::finish(&[ph, checksum::data(b)]);
        put16(b, field::CHECKSUM, c);
    }
}

/// An owned ICMPv6 header: type, code, raw rest-of-header. ND bodies (target, options) are
/// the payload; [`nd_body`] writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv6Repr {
    pub msg_type: u8,
    pub code: u8,
    pub rest: [u8; 4],
}

impl Icmpv6Repr {
    pub fn echo_request(ident: u16, seq: u16) -> Icmpv6Repr {
        Self::echo(ECHO_REQUEST, ident, seq)
    }

    pub fn echo_reply(ident: u16, seq: u16) -> Icmpv6Repr {
        Self::echo(ECHO_REPLY, ident, seq)
    }

    fn echo(t: u8, ident: u16, seq: u16) -> Icmpv6Repr {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&ident.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        Icmpv6Repr { msg_type: t, code: 0, rest }
    }

    /// NS (flags 0) or NA (`flags` = R/S/O bits in the top byte, e.g. 0x60 solicited+override).
    pub fn neighbor(msg_type: u8, flags: u8) -> Icmpv6Repr {
        Icmpv6Repr { msg_type, code: 0, rest: [flags, 0, 0, 0] }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Icmpv6Repr> {
        p.check_len()?;
        let mut rest = [0u8; 4];
        rest.copy_from_slice(&p.b()[field::REST]);
        Ok(Icmpv6Repr { msg_type: p.msg_type(), code: p.msg_code(), rest })
    }

    pub fn emit(&self, buf: &mut [u8], payload: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize> {
        let total = field::HEADER_LEN + payload.len();
        need_room(buf, total, LAYER)?;
        let d = &mut buf[..total];
        d[field::TYPE] = self.msg_type;
        d[field::CODE] = self.code;
        d[field::REST].copy_from_slice(&self.rest);
        d[field::HEADER_LEN..].copy_from_slice(payload);
        Packet::new_unchecked(d).fill_checksum(src, dst);
        Ok(total)
    }
}

/// The NS/NA body after the 8-byte header: target, then an optional link-layer address option
/// (`OPT_SOURCE_LL` for NS, `OPT_TARGET_LL` for NA). Returns the bytes used in `out`.
pub fn nd_body(out: &mut [u8; 24], target: Ipv6Addr, ll: Option<(u8, MacAddr)>) -> usize {
    out[..16].copy_from_slice(&target.octets());
    match ll {
        Some((opt, mac)) => {
            out[16] = opt;
            out[17] = 1;
            out[18..24].copy_from_slice(&mac.0);
            24
        }
        None => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    /// NS from fe80::1 for fd00::2 to its solicited-node group, SLL 02:00:00:00:00:01.
    /// Checksum 0x7c17 from a Python one-off over the pseudo-header.
    const NS: [u8; 32] = [
        135, 0, 0x7c, 0x17, 0, 0, 0, 0, // header
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // target
        1, 1, 2, 0, 0, 0, 0, 1, // SLL option
    ];

    #[test]
    fn deconstruct_ns() {
        let (s, d) = (addr("fe80::1"), addr("ff02::1:ff00:2"));
        let p = Packet::new_checked(&NS[..]).expect("icmpv6");
        assert_eq!(p.nd_target(), Some(addr("fd00::2")));
        let ll = p.nd_link_layer().expect("options");
        assert_eq!(ll.source, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(ll.target, None);
        assert!(p.verify_checksum(&s, &d));
        let r = Icmpv6Repr::parse(&p).expect("repr");
        let mut body = [0u8; 24];
        let n = nd_body(&mut body, addr("fd00::2"), Some((OPT_SOURCE_LL, MacAddr([2, 0, 0, 0, 0, 1]))));
        let mut buf = [0xa5u8; 33];
        assert_eq!(r.emit(&mut buf, &body[..n], &s, &d).expect("emit"), 32);
        assert_eq!(&buf[..32], &NS);
        assert_eq!(buf[32], 0xa5);
    }

    #[test]
    fn bad_options_and_truncation() {
        for n in 0..24 {
            assert!(Packet::new_checked(&NS[..n]).is_err(), "prefix {n}");
        }
        // Cut inside the option: view ok, option walk fails.
        let p = Packet::new_checked(&NS[..28]).expect("icmpv6");
        assert!(p.nd_link_layer().is_err());
        let mut bad = NS;
        bad[25] = 0;
        assert!(Packet::new_checked(&bad[..]).expect("icmpv6").nd_link_layer().is_err());
    }

    #[test]
    fn echo_round_trip() {
        let (s, d) = (addr("fd00::1"), addr("fd00::2"));
        let r = Icmpv6Repr::echo_request(7, 9);
        let mut buf = [0u8; 12];
        r.emit(&mut buf, b"abcd", &s, &d).expect("emit");
        let p = Packet::new_checked(&buf[..]).expect("icmpv6");
        assert!(p.verify_checksum(&s, &d));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (7, 9));
        assert_eq!(p.nd_target(), None);
        assert_eq!(Icmpv6Repr::parse(&p).expect("repr"), r);
    }
}
