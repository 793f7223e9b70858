//! TCP segments: ports, sequence numbers, flags, data offset (options), checksum with the
//! IPv4/IPv6 pseudo-header.

use std::fmt;
use std::net::IpAddr;

use super::checksum;
use super::types::{be16, be32, malformed, need_room, put16, put32, truncated, IpProtocol, Result};

const LAYER: &str = "tcp";

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const MIN_HEADER_LEN: usize = 20;
}

pub const MIN_HEADER_LEN: usize = field::MIN_HEADER_LEN;
pub const MAX_OPTIONS_LEN: usize = 40;

/// The 12 flag bits after the data offset, as OVS's `tcp_flags` field holds them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
    pub const MASK: u16 = 0x0fff;

    pub fn has(&self, bits: u16) -> bool {
        self.0 & bits == bits
    }

    pub fn syn(&self) -> bool {
        self.has(Self::SYN)
    }

    pub fn ack(&self) -> bool {
        self.has(Self::ACK)
    }

    pub fn fin(&self) -> bool {
        self.has(Self::FIN)
    }

    pub fn rst(&self) -> bool {
        self.has(Self::RST)
    }
}

/// tcpdump style: `S`, `S.`, `P.`, `F.`, `R`; `none` when no flag is set.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CHARS: [(u16, char); 8] = [
            (TcpFlags::FIN, 'F'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::ACK, '.'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
        ];
        if self.0 & 0xff == 0 {
            return f.write_str("none");
        }
        for (bit, c) in CHARS {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self} {:#05x})", self.0)
    }
}

// === Packet view ===

/// A zero-copy view of one TCP segment; the buffer is exactly the IP payload.
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
        if len < field::MIN_HEADER_LEN {
            return Err(truncated(LAYER));
        }
        let hl = self.header_len();
        if hl < field::MIN_HEADER_LEN {
            return Err(malformed(LAYER, "data offset"));
        }
        if len < hl {
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

    pub fn seq_number(&self) -> u32 {
        be32(self.b(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.b(), field::ACK)
    }

    /// Data offset in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::FLAGS] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(be16(self.b(), field::FLAGS) & TcpFlags::MASK)
    }

    pub fn window_len(&self) -> u16 {
        be16(self.b(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.b(), field::URGENT)
    }

    pub fn options(&self) -> &[u8] {
        &self.b()[field::MIN_HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }

    /// Verifies the checksum over the pseudo-header and the whole segment.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let b = self.b();
        let Ok(len) = u32::try_from(b.len()) else { return false };
        checksum::is_valid(&[checksum::pseudo_header(src, dst, IpProtocol::Tcp.into(), len), checksum::data(b)])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_flags(&mut self, flags: TcpFlags) {
        let b = self.buffer.as_mut();
        let v = (be16(b, field::FLAGS) & !TcpFlags::MASK) | (flags.0 & TcpFlags::MASK);
        put16(b, field::FLAGS, v);
    }

    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let len = b.len() as u32;
        let c = checksum::finish(&[checksum::pseudo_header(src, dst, IpProtocol::Tcp.into(), len), checksum::data(b)]);
        put16(b, field::CHECKSUM, c);
    }
}

// === Repr ===

/// TCP options as raw bytes (`Copy`, no allocation); whole 32-bit words, at most 40 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpOptions {
    len: u8,
    bytes: [u8; MAX_OPTIONS_LEN],
}

impl TcpOptions {
    pub const NONE: TcpOptions = TcpOptions { len: 0, bytes: [0; MAX_OPTIONS_LEN] };

    pub fn new(opts: &[u8]) -> Result<TcpOptions> {
        if opts.len() > MAX_OPTIONS_LEN || opts.len() % 4 != 0 {
            return Err(malformed(LAYER, "options length"));
        }
        let mut bytes = [0u8; MAX_OPTIONS_LEN];
        bytes[..opts.len()].copy_from_slice(opts);
        Ok(TcpOptions { len: opts.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self::NONE
    }
}

impl fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpOptions({:02x?})", self.as_bytes())
    }
}

/// An owned TCP header (the payload stays outside: [`TcpRepr::emit`] takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub options: TcpOptions,
}

impl TcpRepr {
    pub fn new(src_port: u16, dst_port: u16, flags: u16) -> TcpRepr {
        TcpRepr {
            src_port,
            dst_port,
            seq_number: 0,
            ack_number: 0,
            flags: TcpFlags(flags),
            window_len: 65535,
            urgent_at: 0,
            options: TcpOptions::NONE,
        }
    }

    /// Parses the header; checksum verification is separate ([`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<TcpRepr> {
        p.check_len()?;
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            options: TcpOptions::new(p.options())?,
        })
    }

    pub fn header_len(&self) -> usize {
        field::MIN_HEADER_LEN + usize::from(self.options.len)
    }

    /// Writes header and `payload` with the checksum filled; returns the segment length.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8], src: &IpAddr, dst: &IpAddr) -> Result<usize> {
        let hl = self.header_len();
        let total = hl + payload.len();
        need_room(buf, total, LAYER)?;
        let seg = &mut buf[..total];
        put16(seg, field::SRC_PORT, self.src_port);
        put16(seg, field::DST_PORT, self.dst_port);
        put32(seg, field::SEQ, self.seq_number);
        put32(seg, field::ACK, self.ack_number);
        put16(seg, field::FLAGS, ((hl as u16 / 4) << 12) | (self.flags.0 & TcpFlags::MASK));
        put16(seg, field::WINDOW, self.window_len);
        put16(seg, field::URGENT, self.urgent_at);
        seg[field::MIN_HEADER_LEN..hl].copy_from_slice(self.options.as_bytes());
        seg[hl..].copy_from_slice(payload);
        Packet::new_unchecked(seg).fill_checksum(src, dst);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    /// A SYN 10.0.0.1:1234 > 10.0.0.2:80 seq 1 win 65535 with MSS 1460. Checksum 0x7f01
    /// computed independently (Python one-off over pseudo-header + segment).
    const SYN: [u8; 24] = [
        0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0x7f, 0x01, 0, 0, 0x02, 0x04, 0x05,
        0xb4,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SYN[..]).expect("tcp");
        assert_eq!((p.src_port(), p.dst_port()), (1234, 80));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert!(p.flags().syn() && !p.flags().ack());
        assert_eq!(p.flags().to_string(), "S");
        assert!(p.verify_checksum(&v4(1), &v4(2)));
        assert!(!p.verify_checksum(&v4(1), &v4(3)));
    }

    #[test]
    fn emit_into_junk() {
        let r = TcpRepr::parse(&Packet::new_checked(&SYN[..]).expect("tcp")).expect("repr");
        let mut buf = [0xa5u8; 30];
        assert_eq!(r.emit(&mut buf, &[], &v4(1), &v4(2)).expect("emit"), 24);
        assert_eq!(&buf[..24], &SYN);
        assert_eq!(buf[24], 0xa5);
    }

    #[test]
    fn v6_round_trip_with_payload() {
        let (s, d) = (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)));
        let mut r = TcpRepr::new(40000, 443, TcpFlags::PSH | TcpFlags::ACK);
        r.seq_number = 0xdeadbeef;
        r.ack_number = 7;
        let mut buf = vec![0xa5u8; 25];
        let n = r.emit(&mut buf, b"hello", &s, &d).expect("emit");
        let p = Packet::new_checked(&buf[..n]).expect("tcp");
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.flags().to_string(), "P.");
        assert_eq!(TcpRepr::parse(&p).expect("repr"), r);
    }

    #[test]
    fn truncated_and_impossible() {
        for n in 0..SYN.len() {
            assert!(Packet::new_checked(&SYN[..n]).is_err(), "prefix {n}");
        }
        let mut bad = SYN;
        bad[12] = 0x40; // data offset 16 bytes
        assert!(Packet::new_checked(&bad[..]).is_err());
        assert!(TcpRepr::new(1, 2, 0).emit(&mut [0u8; 19], &[], &v4(1), &v4(2)).is_err());
    }

    #[test]
    fn flag_text() {
        assert_eq!(TcpFlags(TcpFlags::SYN | TcpFlags::ACK).to_string(), "S.");
        assert_eq!(TcpFlags(TcpFlags::FIN | TcpFlags::ACK).to_string(), "F.");
        assert_eq!(TcpFlags(TcpFlags::RST).to_string(), "R");
        assert_eq!(TcpFlags(0).to_string(), "none");
    }
}
