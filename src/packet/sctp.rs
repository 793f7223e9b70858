//! SCTP common header: ports, verification tag, CRC32c checksum (RFC 4960 appendix B: the CRC
//! is stored least-significant byte first, as Linux and OVS do).

use super::checksum;
use super::types::{be16, be32, need_room, put16, put32, truncated, Result};

const LAYER: &str = "sctp";

mod field {
    use core::ops::Range;
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const VTAG: usize = 4;
    pub const CHECKSUM: Range<usize> = 8..12;
    pub const HEADER_LEN: usize = 12;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;

/// Chunk type of an INIT (the first packet of an association).
pub const CHUNK_INIT: u8 = 1;

/// A zero-copy SCTP view over the whole IP payload.
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
        if self.b().len() < field::HEADER_LEN {
            return Err(truncated(LAYER));
        }
        Ok(())
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

    pub fn verification_tag(&self) -> u32 {
        be32(self.b(), field::VTAG)
    }

    /// The CRC32c as a number (read little-endian from the wire).
    pub fn checksum(&self) -> u32 {
        let c = &self.b()[field::CHECKSUM];
        u32::from_le_bytes([c[0], c[1], c[2], c[3]])
    }

    /// The chunks after the common header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[field::HEADER_LEN..]
    }

    /// Type of the first chunk, if there is one.
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.payload().first().copied()
    }

    fn compute(&self) -> u32 {
        let b = self.b();
        let mut crc = checksum::crc32c_init();
        crc = checksum::crc32c_update(crc, &b[..field::CHECKSUM.start]);
        crc = checksum::crc32c_update(crc, &[0; 4]);
        crc = checksum::crc32c_update(crc, &b[field::CHECKSUM.end..]);
        checksum::crc32c_finish(crc)
    }

    pub fn verify_checksum(&self) -> bool {
        self.compute() == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn fill_checksum(&mut self) {
        let c = self.compute();
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_le_bytes());
    }
}

/// An owned SCTP common header (chunks are the payload given to [`SctpRepr::emit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SctpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub verification_tag: u32,
}

impl SctpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<SctpRepr> {
        p.check_len()?;
        Ok(SctpRepr { src_port: p.src_port(), dst_port: p.dst_port(), verification_tag: p.verification_tag() })
    }

    pub fn emit(&self, buf: &mut [u8], chunks: &[u8]) -> Result<usize> {
        let total = field::HEADER_LEN + chunks.len();
        need_room(buf, total, LAYER)?;
        let d = &mut buf[..total];
        put16(d, field::SRC_PORT, self.src_port);
        put16(d, field::DST_PORT, self.dst_port);
        put32(d, field::VTAG, self.verification_tag);
        d[field::HEADER_LEN..].copy_from_slice(chunks);
        Packet::new_unchecked(d).fill_checksum();
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An INIT chunk header with 16 bytes of parameters (a-rwnd etc.), for a known packet.
    const INIT_CHUNK: [u8; 20] =
        [1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 10, 0, 10, 0xaa, 0xbb, 0xcc, 0xdd];

    #[test]
    fn round_trip_with_crc() {
        let r = SctpRepr { src_port: 5000, dst_port: 38412, verification_tag: 0 };
        let mut buf = [0xa5u8; 33];
        assert_eq!(r.emit(&mut buf, &INIT_CHUNK).expect("emit"), 32);
        assert_eq!(buf[32], 0xa5);
        let p = Packet::new_checked(&buf[..32]).expect("sctp");
        assert!(p.verify_checksum());
        assert_eq!(p.first_chunk_type(), Some(CHUNK_INIT));
        assert_eq!(SctpRepr::parse(&p).expect("repr"), r);
        // The CRC equals a plain crc32c of the packet with the field zeroed.
        let mut z = buf[..32].to_vec();
        z[8..12].fill(0);
        assert_eq!(p.checksum(), checksum::crc32c(&z));
        let mut bad = buf;
        bad[20] ^= 0x80;
        assert!(!Packet::new_checked(&bad[..32]).expect("sctp").verify_checksum());
    }

    #[test]
    fn truncated() {
        let b = [0u8; 12];
        for n in 0..12 {
            assert!(Packet::new_checked(&b[..n]).is_err());
        }
    }
}
