//! ICMP for IPv4 (RFC 792): type, code, checksum, and the 4-byte rest-of-header that echo
//! messages use for identifier and sequence number.

use super::checksum;
use super::types::{be16, need_room, put16, truncated, Result};

const LAYER: &str = "icmp";

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;

pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const REDIRECT: u8 = 5;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;

/// A short name for logs, or None for types without one.
pub fn type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        ECHO_REPLY => "echo-reply",
        DEST_UNREACHABLE => "unreachable",
        REDIRECT => "redirect",
        ECHO_REQUEST => "echo-request",
        TIME_EXCEEDED => "time-exceeded",
        _ => return None,
    })
}

/// A zero-copy ICMP view over the whole IP payload.
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

    /// Identifier (meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        be16(self.b(), field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        be16(self.b(), field::ECHO_SEQ)
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[field::HEADER_LEN..]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(&[checksum::data(self.b())])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let c = checksum::finish(&[checksum::data(b)]);
        put16(b, field::CHECKSUM, c);
    }
}

/// An owned ICMP header: type, code and the raw rest-of-header (lossless for every type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpRepr {
    pub msg_type: u8,
    pub code: u8,
    pub rest: [u8; 4],
}

impl IcmpRepr {
    pub fn echo_request(ident: u16, seq: u16) -> IcmpRepr {
        Self::echo(ECHO_REQUEST, ident, seq)
    }

    pub fn echo_reply(ident: u16, seq: u16) -> IcmpRepr {
        Self::echo(ECHO_REPLY, ident, seq)
    }

    fn echo(t: u8, ident: u16, seq: u16) -> IcmpRepr {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&ident.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        IcmpRepr { msg_type: t, code: 0, rest }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<IcmpRepr> {
        p.check_len()?;
        let mut rest = [0u8; 4];
        rest.copy_from_slice(&p.b()[field::REST]);
        Ok(IcmpRepr { msg_type: p.msg_type(), code: p.msg_code(), rest })
    }

    /// Writes header and payload with the checksum filled; returns the message length.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8]) -> Result<usize> {
        let total = field::HEADER_LEN + payload.len();
        need_room(buf, total, LAYER)?;
        let d = &mut buf[..total];
        d[field::TYPE] = self.msg_type;
        d[field::CODE] = self.code;
        d[field::REST].copy_from_slice(&self.rest);
        d[field::HEADER_LEN..].copy_from_slice(payload);
        Packet::new_unchecked(d).fill_checksum();
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request id 0x1234 seq 1 with payload "ping"; checksum 0x06fa from a Python one-off.
    const ECHO: [u8; 12] = [8, 0, 0x06, 0xfa, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g'];

    #[test]
    fn deconstruct_emit_round_trip() {
        let p = Packet::new_checked(&ECHO[..]).expect("icmp");
        assert!(p.is_echo());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert!(p.verify_checksum());
        let r = IcmpRepr::parse(&p).expect("repr");
        assert_eq!(r, IcmpRepr::echo_request(0x1234, 1));
        let mut buf = [0xa5u8; 13];
        assert_eq!(r.emit(&mut buf, b"ping").expect("emit"), 12);
        assert_eq!(&buf[..12], &ECHO);
        assert_eq!(buf[12], 0xa5);
    }

    #[test]
    fn truncated() {
        for n in 0..8 {
            assert!(Packet::new_checked(&ECHO[..n]).is_err());
        }
    }
}
