//! ARP (RFC 826). The view reads any hardware/protocol sizes; the Repr is Ethernet/IPv4 only,
//! the one pairing OVS matches on (`arp_sha`, `arp_spa`, ...).

use std::net::Ipv4Addr;

use super::types::{be16, malformed, need_room, open_enum, put16, truncated, MacAddr, Result};

const LAYER: &str = "arp";

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const FIXED_LEN: usize = 8;
    // Variable part: SHA (hlen), SPA (plen), THA (hlen), TPA (plen).
    pub const fn sha(_hlen: usize, _plen: usize) -> usize {
        FIXED_LEN
    }
    pub const fn spa(hlen: usize, _plen: usize) -> usize {
        FIXED_LEN + hlen
    }
    pub const fn tha(hlen: usize, plen: usize) -> usize {
        FIXED_LEN + hlen + plen
    }
    pub const fn tpa(hlen: usize, plen: usize) -> usize {
        FIXED_LEN + 2 * hlen + plen
    }
    pub const fn end(hlen: usize, plen: usize) -> usize {
        FIXED_LEN + 2 * hlen + 2 * plen
    }
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = field::end(6, 4);

open_enum! {
    /// ARP opcode.
    Operation: u16 {
        Request = 1,
        Reply = 2,
    }
}

/// A zero-copy ARP view.
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

    /// The fixed part, then the four addresses sized by HLEN and PLEN.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::FIXED_LEN || len < field::end(self.hlen(), self.plen()) {
            return Err(truncated(LAYER));
        }
        Ok(())
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn hardware_type(&self) -> u16 {
        be16(self.b(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        be16(self.b(), field::PTYPE)
    }

    fn hlen(&self) -> usize {
        usize::from(self.b()[field::HLEN])
    }

    fn plen(&self) -> usize {
        usize::from(self.b()[field::PLEN])
    }

    pub fn hardware_len(&self) -> u8 {
        self.b()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.b()[field::PLEN]
    }

    pub fn operation(&self) -> Operation {
        Operation::from(be16(self.b(), field::OPER))
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        let (h, p) = (self.hlen(), self.plen());
        &self.b()[field::sha(h, p)..field::spa(h, p)]
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        let (h, p) = (self.hlen(), self.plen());
        &self.b()[field::spa(h, p)..field::tha(h, p)]
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        let (h, p) = (self.hlen(), self.plen());
        &self.b()[field::tha(h, p)..field::tpa(h, p)]
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        let (h, p) = (self.hlen(), self.plen());
        &self.b()[field::tpa(h, p)..field::end(h, p)]
    }

    /// Ethernet hardware and IPv4 protocol addresses: the only kind [`ArpRepr`] holds.
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == 1 && self.protocol_type() == 0x0800 && self.hlen() == 6 && self.plen() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_operation(&mut self, op: Operation) {
        put16(self.buffer.as_mut(), field::OPER, op.into());
    }
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: Operation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Fails (Malformed) on any other hardware/protocol pairing.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<ArpRepr> {
        p.check_len()?;
        if !p.is_ethernet_ipv4() {
            return Err(malformed(LAYER, "hardware/protocol type (not Ethernet/IPv4)"));
        }
        Ok(ArpRepr {
            operation: p.operation(),
            source_hardware_addr: MacAddr::from_slice(p.source_hardware_addr()),
            source_protocol_addr: ipv4(p.source_protocol_addr()),
            target_hardware_addr: MacAddr::from_slice(p.target_hardware_addr()),
            target_protocol_addr: ipv4(p.target_protocol_addr()),
        })
    }

    pub fn buffer_len(&self) -> usize {
        ETH_IPV4_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        need_room(buf, ETH_IPV4_LEN, LAYER)?;
        put16(buf, field::HTYPE, 1);
        put16(buf, field::PTYPE, 0x0800);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        put16(buf, field::OPER, self.operation.into());
        let (h, p) = (6, 4);
        buf[field::sha(h, p)..field::spa(h, p)].copy_from_slice(&self.source_hardware_addr.0);
        buf[field::spa(h, p)..field::tha(h, p)].copy_from_slice(&self.source_protocol_addr.octets());
        buf[field::tha(h, p)..field::tpa(h, p)].copy_from_slice(&self.target_hardware_addr.0);
        buf[field::tpa(h, p)..field::end(h, p)].copy_from_slice(&self.target_protocol_addr.octets());
        Ok(ETH_IPV4_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// who-has 10.0.0.2 tell 10.0.0.1, from 02:00:00:00:00:01.
    const REQ: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, // sha spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2, // tha tpa
    ];

    #[test]
    fn deconstruct_and_round_trip() {
        let p = Packet::new_checked(&REQ[..]).expect("arp");
        let r = ArpRepr::parse(&p).expect("repr");
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.source_hardware_addr, MacAddr([2, 0, 0, 0, 0, 1]));
        let mut buf = [0xa5u8; 30];
        assert_eq!(r.emit(&mut buf).expect("emit"), 28);
        assert_eq!(&buf[..28], &REQ);
        assert_eq!(buf[28], 0xa5);
    }

    #[test]
    fn truncated_prefixes() {
        for n in 0..REQ.len() {
            assert!(Packet::new_checked(&REQ[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn other_sizes_are_viewable_but_not_repr() {
        let mut b = REQ;
        b[4] = 8; // claims 8-byte hardware addresses: needs 8 + 2*8 + 2*4 = 32 bytes
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = REQ.to_vec();
        b[2] = 0x86; // protocol type 0x8600
        let p = Packet::new_checked(&b[..]).expect("view");
        assert!(ArpRepr::parse(&p).is_err());
    }
}
