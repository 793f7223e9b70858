//! IPv4 headers: options honoured through IHL, checksum, fragment fields.

use std::net::Ipv4Addr;

use super::checksum;
use super::types::{be16, malformed, need_room, put16, truncated, IpProtocol, Result};

const LAYER: &str = "ipv4";

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const MIN_HEADER_LEN: usize = 20;
}

pub const MIN_HEADER_LEN: usize = field::MIN_HEADER_LEN;
/// Options fill at most 40 bytes (IHL is 4 bits of 32-bit words).
pub const MAX_OPTIONS_LEN: usize = 40;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

// === Packet view ===

/// A zero-copy IPv4 view. The buffer may be longer than `total_len` (Ethernet padding);
/// [`Packet::payload`] stops at `total_len`.
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

    /// Version 4, IHL >= 5, header within the buffer, header <= total length <= buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::MIN_HEADER_LEN {
            return Err(truncated(LAYER));
        }
        if self.version() != 4 {
            return Err(malformed(LAYER, "version"));
        }
        let hl = self.header_len();
        if hl < field::MIN_HEADER_LEN {
            return Err(malformed(LAYER, "header length"));
        }
        if len < hl {
            return Err(truncated(LAYER));
        }
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(malformed(LAYER, "total length"));
        }
        if len < total {
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
        self.b()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp(&self) -> u8 {
        self.b()[field::DSCP_ECN] >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.b()[field::DSCP_ECN] & 3
    }

    pub fn total_len(&self) -> u16 {
        be16(self.b(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.b(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.b(), field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.b(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units, as on the wire.
    pub fn frag_offset(&self) -> u16 {
        be16(self.b(), field::FLG_OFF) & OFFSET_MASK
    }

    /// Part of a fragmented datagram (first or later).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.b()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let s = &self.b()[field::SRC];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let s = &self.b()[field::DST];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }

    pub fn options(&self) -> &[u8] {
        &self.b()[field::MIN_HEADER_LEN..self.header_len()]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(&[checksum::data(&self.b()[..self.header_len()])])
    }

    /// The bytes after the header up to `total_len` (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Recomputes the header checksum (call after any setter).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let c = checksum::finish(&[checksum::data(&b[..hl])]);
        put16(b, field::CHECKSUM, c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..total]
    }
}

// === Repr ===

/// IPv4 options kept as raw bytes (no allocation, `Copy`); length is a multiple of 4.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Options {
    len: u8,
    bytes: [u8; MAX_OPTIONS_LEN],
}

impl Ipv4Options {
    pub const NONE: Ipv4Options = Ipv4Options { len: 0, bytes: [0; MAX_OPTIONS_LEN] };

    /// Options must be whole 32-bit words and at most 40 bytes.
    pub fn new(opts: &[u8]) -> Result<Ipv4Options> {
        if opts.len() > MAX_OPTIONS_LEN || opts.len() % 4 != 0 {
            return Err(malformed(LAYER, "options length"));
        }
        let mut bytes = [0u8; MAX_OPTIONS_LEN];
        bytes[..opts.len()].copy_from_slice(opts);
        Ok(Ipv4Options { len: opts.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Default for Ipv4Options {
    fn default() -> Self {
        Self::NONE
    }
}

impl std::fmt::Debug for Ipv4Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ipv4Options({:02x?})", self.as_bytes())
    }
}

/// An owned IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In 8-byte units.
    pub frag_offset: u16,
    pub options: Ipv4Options,
}

impl Ipv4Repr {
    /// A plain unfragmented datagram header with TTL 64 and DF set (what Linux sends).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Ipv4Options::NONE,
        }
    }

    /// Parses the header; does not verify the checksum (see [`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Ipv4Repr> {
        p.check_len()?;
        Ok(Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            options: Ipv4Options::new(p.options())?,
        })
    }

    pub fn header_len(&self) -> usize {
        field::MIN_HEADER_LEN + usize::from(self.options.len)
    }

    pub fn total_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header (checksum filled) at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let hl = self.header_len();
        let total = u16::try_from(self.total_len()).map_err(|_| malformed(LAYER, "total length"))?;
        need_room(buf, hl, LAYER)?;
        buf[field::VER_IHL] = 0x40 | (hl / 4) as u8;
        buf[field::DSCP_ECN] = (self.dscp << 2) | (self.ecn & 3);
        put16(buf, field::LENGTH, total);
        put16(buf, field::IDENT, self.ident);
        let mut flg = self.frag_offset & OFFSET_MASK;
        if self.dont_frag {
            flg |= FLAG_DF;
        }
        if self.more_frags {
            flg |= FLAG_MF;
        }
        put16(buf, field::FLG_OFF, flg);
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = self.protocol.into();
        put16(buf, field::CHECKSUM, 0);
        buf[field::SRC].copy_from_slice(&self.src.octets());
        buf[field::DST].copy_from_slice(&self.dst.octets());
        buf[field::MIN_HEADER_LEN..hl].copy_from_slice(self.options.as_bytes());
        let c = checksum::finish(&[checksum::data(&buf[..hl])]);
        put16(buf, field::CHECKSUM, c);
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    fn with_payload() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.resize(0x73, 0x11);
        v
    }

    #[test]
    fn deconstruct() {
        let b = with_payload();
        let p = Packet::new_checked(&b[..]).expect("ipv4");
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn emit_into_junk_matches_known_checksum() {
        let b = with_payload();
        let r = Ipv4Repr::parse(&Packet::new_checked(&b[..]).expect("ipv4")).expect("repr");
        let mut out = [0xa5u8; 24];
        assert_eq!(r.emit(&mut out).expect("emit"), 20);
        assert_eq!(&out[..20], &HDR);
        assert_eq!(out[20], 0xa5);
    }

    #[test]
    fn options_via_ihl_round_trip() {
        let mut r = Ipv4Repr::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), IpProtocol::Tcp, 4);
        // Router alert (RFC 2113): 94 04 00 00.
        r.options = Ipv4Options::new(&[0x94, 0x04, 0, 0]).expect("opts");
        r.more_frags = true;
        r.frag_offset = 0x123;
        r.dont_frag = false;
        let mut buf = vec![0xa5u8; r.total_len() + 3]; // trailing "Ethernet padding"
        r.emit(&mut buf).expect("emit");
        let p = Packet::new_checked(&buf[..]).expect("ipv4");
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert!(p.verify_checksum());
        assert!(p.is_fragment());
        assert_eq!(p.payload().len(), 4);
        assert_eq!(Ipv4Repr::parse(&p).expect("repr"), r);
    }

    #[test]
    fn truncated_and_impossible() {
        let b = with_payload();
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "prefix {n}");
        }
        let mut bad = b.clone();
        bad[0] = 0x44; // IHL 4
        assert!(Packet::new_checked(&bad[..]).is_err());
        let mut bad = b.clone();
        bad[0] = 0x65; // version 6
        assert!(Packet::new_checked(&bad[..]).is_err());
        let mut bad = b.clone();
        bad[2..4].copy_from_slice(&10u16.to_be_bytes()); // total < header
        assert!(Packet::new_checked(&bad[..]).is_err());
        let mut bad = b;
        bad[10] ^= 1;
        assert!(!Packet::new_checked(&bad[..]).expect("ipv4").verify_checksum());
    }

    #[test]
    fn setters_then_fill_checksum() {
        let mut b = with_payload();
        let mut p = Packet::new_checked(&mut b[..]).expect("ipv4");
        p.set_ttl(63);
        p.set_dst_addr(Ipv4Addr::new(10, 1, 2, 3));
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
    }
}
