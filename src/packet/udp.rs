//! UDP datagrams: ports, length, checksum with the pseudo-header (zero means "none" on IPv4).

use std::net::IpAddr;

use super::checksum;
use super::types::{be16, malformed, need_room, put16, truncated, IpProtocol, Result};

const LAYER: &str = "udp";

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;

/// A zero-copy UDP view; the payload stops at the UDP `length`.
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
        let l = usize::from(self.len());
        if l < field::HEADER_LEN {
            return Err(malformed(LAYER, "length"));
        }
        if len < l {
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

    pub fn src_port(&self) -> u16 {
        be16(self.b(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.b(), field::DST_PORT)
    }

    /// Header plus payload, as the header says.
    pub fn len(&self) -> u16 {
        be16(self.b(), field::LENGTH)
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= field::HEADER_LEN as u16
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[field::HEADER_LEN..usize::from(self.len())]
    }

    /// True when the checksum verifies, or is zero (absent) on IPv4.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if src.is_ipv4() && self.checksum() == 0 {
            return true;
        }
        let l = self.len();
        let d = &self.b()[..usize::from(l)];
        checksum::is_valid(&[
            checksum::pseudo_header(src, dst, IpProtocol::Udp.into(), u32::from(l)),
            checksum::data(d),
        ])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Recomputes the checksum; a computed zero is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        let l = self.len();
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let d = &b[..usize::from(l)];
        let mut c = checksum::finish(&[
            checksum::pseudo_header(src, dst, IpProtocol::Udp.into(), u32::from(l)),
            checksum::data(d),
        ]);
        if c == 0 {
            c = 0xffff;
        }
        put16(b, field::CHECKSUM, c);
    }
}

/// An owned UDP header (the payload is given to [`UdpRepr::emit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<UdpRepr> {
        p.check_len()?;
        Ok(UdpRepr { src_port: p.src_port(), dst_port: p.dst_port() })
    }

    pub fn header_len(&self) -> usize {
        field::HEADER_LEN
    }

    /// Writes header and payload with the checksum filled; returns the datagram length.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8], src: &IpAddr, dst: &IpAddr) -> Result<usize> {
        let total = field::HEADER_LEN + payload.len();
        let l = u16::try_from(total).map_err(|_| malformed(LAYER, "length"))?;
        need_room(buf, total, LAYER)?;
        let d = &mut buf[..total];
        put16(d, field::SRC_PORT, self.src_port);
        put16(d, field::DST_PORT, self.dst_port);
        put16(d, field::LENGTH, l);
        d[field::HEADER_LEN..].copy_from_slice(payload);
        Packet::new_unchecked(d).fill_checksum(src, dst);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(x: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, x))
    }

    /// 10.0.0.1:5353 > 10.0.0.2:53 payload "abc"; checksum 0x1255 from a Python one-off.
    const DGRAM: [u8; 11] = [0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0x12, 0x55, b'a', b'b', b'c'];

    #[test]
    fn deconstruct_and_emit() {
        let p = Packet::new_checked(&DGRAM[..]).expect("udp");
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (5353, 53, 11));
        assert_eq!(p.payload(), b"abc");
        assert!(p.verify_checksum(&a(1), &a(2)));
        let r = UdpRepr::parse(&p).expect("repr");
        let mut buf = [0xa5u8; 12];
        assert_eq!(r.emit(&mut buf, b"abc", &a(1), &a(2)).expect("emit"), 11);
        assert_eq!(&buf[..11], &DGRAM);
        assert_eq!(buf[11], 0xa5);
    }

    #[test]
    fn zero_checksum_is_absent_on_v4() {
        let mut b = DGRAM;
        b[6] = 0;
        b[7] = 0;
        assert!(Packet::new_checked(&b[..]).expect("udp").verify_checksum(&a(1), &a(2)));
        b[7] = 1;
        assert!(!Packet::new_checked(&b[..]).expect("udp").verify_checksum(&a(1), &a(2)));
    }

    #[test]
    fn truncated_and_impossible() {
        for n in 0..DGRAM.len() {
            assert!(Packet::new_checked(&DGRAM[..n]).is_err(), "prefix {n}");
        }
        let mut bad = DGRAM;
        bad[5] = 7;
        assert!(Packet::new_checked(&bad[..]).is_err());
    }
}
