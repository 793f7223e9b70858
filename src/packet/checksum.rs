//! The Internet checksum (RFC 1071) and CRC32c (SCTP, RFC 4960 appendix B).
//!
//! Sums are kept un-inverted and folded to 16 bits so that parts (pseudo-header, header,
//! payload) computed separately can be [`combine`]d; only the final value is inverted.

use std::net::IpAddr;

/// Ones-complement sum of `data` as big-endian 16-bit words, folded, not inverted.
/// An odd trailing byte is padded with zero, as RFC 1071 says.
pub fn data(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(acc)
}

/// Adds partial sums (each from [`data`] or [`pseudo_header`]), folded, not inverted.
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the TCP/UDP/ICMPv6 pseudo-header. Mixed address families cannot occur in a real
/// packet; they are summed as given (the result is then simply wrong, never a panic).
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u16 {
    let mut parts = [0u16; 4];
    parts[0] = addr_sum(src);
    parts[1] = addr_sum(dst);
    parts[2] = u16::from(proto);
    parts[3] = combine(&[(len >> 16) as u16, len as u16]);
    combine(&parts)
}

fn addr_sum(a: &IpAddr) -> u16 {
    match a {
        IpAddr::V4(a) => data(&a.octets()),
        IpAddr::V6(a) => data(&a.octets()),
    }
}

/// The value to store in a checksum field: inverted sum of all parts.
pub fn finish(parts: &[u16]) -> u16 {
    !combine(parts)
}

/// True when a checksummed region (with its checksum field in place) sums to 0xffff.
pub fn is_valid(parts: &[u16]) -> bool {
    combine(parts) == 0xffff
}

// === CRC32c ===

const CRC32C_POLY: u32 = 0x82f6_3b78; // Castagnoli, bit-reflected

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ CRC32C_POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// Running CRC32c: start from [`crc32c_init`], feed with this, end with [`crc32c_finish`].
/// Split so that SCTP can feed its header with a zeroed checksum field without copying.
pub fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

pub const fn crc32c_init() -> u32 {
    0xffff_ffff
}

pub const fn crc32c_finish(crc: u32) -> u32 {
    !crc
}

/// CRC32c of one buffer.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_finish(crc32c_update(crc32c_init(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
        assert_eq!(finish(&[0xddf2]), 0x220d);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C ("123456789").
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }
}
