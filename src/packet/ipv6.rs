//! IPv6 fixed header and a bounded walk over extension headers (hop-by-hop, routing, fragment,
//! destination options, AH) to the upper-layer protocol.

use std::net::Ipv6Addr;

use super::types::{be16, be32, malformed, need_room, put16, put32, truncated, IpProtocol, Result};

const LAYER: &str = "ipv6";

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const HEADER_LEN: usize = 40;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;

/// Longest extension-header chain walked; a longer one is Malformed (a cheap bound against
/// crafted chains; real traffic has at most a handful).
pub const MAX_EXT_HEADERS: usize = 8;

/// Fragment header contents, when one was found on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragInfo {
    /// In 8-byte units. Non-zero: a later fragment with no upper-layer header.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

impl FragInfo {
    pub fn is_later(&self) -> bool {
        self.offset != 0
    }
}

/// Where the upper-layer header starts, after the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    pub protocol: IpProtocol,
    /// Offset into [`Packet::payload`].
    pub offset: usize,
    pub frag: Option<FragInfo>,
}

fn ext_ipv6_addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// A zero-copy IPv6 view; the payload stops at `payload_len` (Ethernet padding excluded).
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

    pub fn check_len(&self) -> Result<()> {
        let len = self.b().len();
        if len < field::HEADER_LEN {
            return Err(truncated(LAYER));
        }
        if self.version() != 6 {
            return Err(malformed(LAYER, "version"));
        }
        if len < field::HEADER_LEN + usize::from(self.payload_len()) {
            return Err(truncated(LAYER));
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.b()[field::VER_TC_FLOW] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        ((be32(self.b(), field::VER_TC_FLOW) >> 20) & 0xff) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.b(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.b(), field::LENGTH)
    }

    /// The Next Header of the fixed header (maybe an extension header).
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.b()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        ext_ipv6_addr(&self.b()[field::SRC])
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        ext_ipv6_addr(&self.b()[field::DST])
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[field::HEADER_LEN..field::HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers (at most [`MAX_EXT_HEADERS`]) and reports the upper-layer
    /// protocol and where it starts. Stops at a later fragment (offset != 0), at ESP, at
    /// No Next Header and at anything that is not an extension header listed above.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let p = self.payload();
        let mut proto = self.next_header();
        let mut at = 0usize;
        let mut frag = None;
        for _ in 0..=MAX_EXT_HEADERS {
            let rest = &p[at..];
            let len = match proto {
                IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                    if rest.len() < 2 {
                        return Err(truncated("ipv6 extension header"));
                    }
                    (usize::from(rest[1]) + 1) * 8
                }
                IpProtocol::Ah => {
                    if rest.len() < 2 {
                        return Err(truncated("ipv6 extension header"));
                    }
                    (usize::from(rest[1]) + 2) * 4
                }
                IpProtocol::Ipv6Frag => 8,
                _ => return Ok(UpperLayer { protocol: proto, offset: at, frag }),
            };
            if rest.len() < len {
                return Err(truncated("ipv6 extension header"));
            }
            if proto == IpProtocol::Ipv6Frag {
                let off = be16(rest, 2);
                let f = FragInfo { offset: off >> 3, more: off & 1 != 0, ident: be32(rest, 4) };
                frag = Some(f);
                if f.is_later() {
                    return Ok(UpperLayer { protocol: IpProtocol::from(rest[0]), offset: at + len, frag });
                }
            }
            proto = IpProtocol::from(rest[0]);
            at += len;
        }
        Err(malformed(LAYER, "too many extension headers"))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
}

/// An owned IPv6 fixed header. Extension headers are part of the payload as far as the Repr
/// is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, payload_len: usize) -> Ipv6Repr {
        Ipv6Repr { src, dst, next_header, payload_len, hop_limit: 64, traffic_class: 0, flow_label: 0 }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Ipv6Repr> {
        p.check_len()?;
        Ok(Ipv6Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    pub fn header_len(&self) -> usize {
        field::HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        need_room(buf, field::HEADER_LEN, LAYER)?;
        let len = u16::try_from(self.payload_len).map_err(|_| malformed(LAYER, "payload length"))?;
        let vtf = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        put32(buf, field::VER_TC_FLOW, vtf);
        put16(buf, field::LENGTH, len);
        buf[field::NXT_HDR] = self.next_header.into();
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC].copy_from_slice(&self.src.octets());
        buf[field::DST].copy_from_slice(&self.dst.octets());
        Ok(field::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last))
    }

    /// Fixed header + hop-by-hop (8) + dest opts (16) + fragment (8, first) + AH (12) + 4 bytes
    /// of "UDP".
    fn chain() -> Vec<u8> {
        let mut pl = Vec::new();
        pl.extend_from_slice(&[60, 0, 5, 2, 0, 0, 1, 0]); // HBH -> dest opts, router alert + padn
        pl.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // DO -> frag
        pl.extend_from_slice(&[51, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]); // frag -> AH, off 0, M
        pl.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9]); // AH (len 1 => 12) -> UDP
        pl.extend_from_slice(&[0x12, 0x34, 0x00, 0x35]);
        let r = Ipv6Repr::new(addr(1), addr(2), IpProtocol::HopByHop, pl.len());
        let mut buf = vec![0xa5u8; 40];
        r.emit(&mut buf).expect("emit");
        buf.extend_from_slice(&pl);
        buf
    }

    #[test]
    fn walks_extension_chain() {
        let b = chain();
        let p = Packet::new_checked(&b[..]).expect("ipv6");
        let u = p.upper_layer().expect("upper");
        assert_eq!(u.protocol, IpProtocol::Udp);
        assert_eq!(u.offset, 8 + 16 + 8 + 12);
        assert_eq!(u.frag, Some(FragInfo { offset: 0, more: true, ident: 0xdeadbeef }));
        assert_eq!(&p.payload()[u.offset..], &[0x12, 0x34, 0x00, 0x35]);
    }

    #[test]
    fn later_fragment_stops() {
        let mut b = chain();
        b[40 + 24 + 2..40 + 24 + 4].copy_from_slice(&((100u16 << 3) | 1).to_be_bytes());
        let p = Packet::new_checked(&b[..]).expect("ipv6");
        let u = p.upper_layer().expect("upper");
        assert_eq!(u.protocol, IpProtocol::Ah);
        assert_eq!(u.frag.map(|f| f.offset), Some(100));
    }

    #[test]
    fn round_trip_and_fields() {
        let mut r = Ipv6Repr::new(addr(1), addr(2), IpProtocol::Tcp, 0);
        r.traffic_class = 0xb8;
        r.flow_label = 0xabcde;
        r.hop_limit = 255;
        let mut buf = [0xa5u8; 41];
        assert_eq!(r.emit(&mut buf).expect("emit"), 40);
        assert_eq!(buf[40], 0xa5);
        assert_eq!(&buf[..4], &[0x6b, 0x8a, 0xbc, 0xde]);
        let p = Packet::new_checked(&buf[..40]).expect("ipv6");
        assert_eq!(Ipv6Repr::parse(&p).expect("repr"), r);
    }

    #[test]
    fn truncated_prefixes_and_chain_bounds() {
        let b = chain();
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "prefix {n}");
        }
        // Dest-opts claiming 256*8 bytes runs past the payload.
        let mut bad = b.clone();
        bad[40 + 8 + 1] = 255;
        let p = Packet::new_checked(&bad[..]).expect("ipv6");
        assert!(p.upper_layer().is_err());
        // Ten hop-by-hop headers in a row exceed the bound.
        let mut pl = Vec::new();
        for _ in 0..10 {
            pl.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        }
        let r = Ipv6Repr::new(addr(1), addr(2), IpProtocol::HopByHop, pl.len());
        let mut buf = vec![0u8; 40];
        r.emit(&mut buf).expect("emit");
        buf.extend_from_slice(&pl);
        let p = Packet::new_checked(&buf[..]).expect("ipv6");
        assert!(p.upper_layer().is_err());
        let mut bad = b;
        bad[0] = 0x45;
        assert!(Packet::new_checked(&bad[..]).is_err());
    }
}
