//! Ethernet II frames, with up to two 802.1Q / 802.1ad (QinQ) VLAN tags.
//!
//! Like OVS (`FLOW_MAX_VLAN_HEADERS` = 2), at most two tags are taken as tags; a third TPID is
//! reported as the frame's EtherType and left in the payload.

use super::types::{be16, need_room, put16, truncated, EtherType, MacAddr, Result};

const LAYER: &str = "ethernet";

/// How many VLAN tags are parsed as tags.
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
    /// One tag: TCI (2) then the next EtherType (2), after the TPID already read.
    pub const TAG_LEN: usize = 4;
}

pub const HEADER_LEN: usize = field::HEADER_LEN;

/// TPIDs that introduce a VLAN tag.
pub fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == 0x8100 || ethertype == 0x88a8
}

/// One VLAN tag as it appears on the wire: the TPID that introduced it and its TCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// 0x8100 (802.1Q) or 0x88a8 (802.1ad service tag).
    pub tpid: u16,
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl VlanTag {
    pub fn new(vid: u16) -> VlanTag {
        VlanTag { tpid: 0x8100, pcp: 0, dei: false, vid: vid & 0x0fff }
    }

    pub fn from_tci(tpid: u16, tci: u16) -> VlanTag {
        VlanTag { tpid, pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
    }

    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

// === Frame view ===

/// A zero-copy view of an Ethernet frame. After [`Frame::new_checked`] no accessor panics.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Checks the fixed header and every VLAN tag it announces (up to [`MAX_VLAN_TAGS`]).
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Frame { buffer };
        f.check_len()?;
        Ok(f)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::HEADER_LEN {
            return Err(truncated(LAYER));
        }
        let mut at = field::ETHERTYPE;
        let mut tags = 0;
        while tags < MAX_VLAN_TAGS && is_vlan_tpid(be16(b, at)) {
            if b.len() < at + 2 + field::TAG_LEN {
                return Err(truncated("vlan"));
            }
            at += field::TAG_LEN;
            tags += 1;
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::DST])
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SRC])
    }

    /// The EtherType right after the source address (a TPID when the frame is tagged).
    pub fn outer_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Number of VLAN tags parsed as tags (0..=2).
    pub fn vlan_count(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut at = field::ETHERTYPE;
        let mut tags = 0;
        while tags < MAX_VLAN_TAGS && is_vlan_tpid(be16(b, at)) {
            at += field::TAG_LEN;
            tags += 1;
        }
        tags
    }

    /// The `i`th tag from the outside, if present.
    pub fn vlan(&self, i: usize) -> Option<VlanTag> {
        if i >= self.vlan_count() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = field::ETHERTYPE + i * field::TAG_LEN;
        Some(VlanTag::from_tci(be16(b, at), be16(b, at + 2)))
    }

    /// Header length including the VLAN tags.
    pub fn header_len(&self) -> usize {
        field::HEADER_LEN + self.vlan_count() * field::TAG_LEN
    }

    /// The EtherType after the VLAN tags: what the payload is.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), self.header_len() - 2))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the inner EtherType (after the tags).
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = self.header_len() - 2;
        put16(self.buffer.as_mut(), at, t.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

// === Repr ===

/// An owned Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// Outer tag first. `vlans[1]` is only meaningful when `vlans[0]` is present.
    pub vlans: [Option<VlanTag>; MAX_VLAN_TAGS],
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> Result<EthernetRepr> {
        f.check_len()?;
        Ok(EthernetRepr {
            src: f.src_addr(),
            dst: f.dst_addr(),
            vlans: [f.vlan(0), f.vlan(1)],
            ethertype: f.ethertype(),
        })
    }

    fn tags(&self) -> impl Iterator<Item = &VlanTag> {
        self.vlans.iter().map_while(|v| v.as_ref())
    }

    pub fn header_len(&self) -> usize {
        field::HEADER_LEN + self.tags().count() * field::TAG_LEN
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.header_len();
        need_room(buf, len, LAYER)?;
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        let mut at = field::ETHERTYPE;
        for t in self.tags() {
            put16(buf, at, t.tpid);
            put16(buf, at + 2, t.tci());
            at += field::TAG_LEN;
        }
        put16(buf, at, self.ethertype.into());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketError;

    /// Broadcast ARP frame tagged QinQ (0x88a8 vid 100) then 802.1Q (pcp 5, vid 10).
    const QINQ: [u8; 24] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x88, 0xa8, 0x00, 0x64, // S-tag vid 100
        0x81, 0x00, 0xa0, 0x0a, // C-tag pcp 5 vid 10
        0x08, 0x06, // ARP
        0xde, 0xad,
    ];

    #[test]
    fn deconstruct_qinq() {
        let f = Frame::new_checked(&QINQ[..]).expect("frame");
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr().to_string(), "02:00:00:00:00:01");
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.vlan(0), Some(VlanTag { tpid: 0x88a8, pcp: 0, dei: false, vid: 100 }));
        assert_eq!(f.vlan(1), Some(VlanTag { tpid: 0x8100, pcp: 5, dei: false, vid: 10 }));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &[0xde, 0xad]);
    }

    #[test]
    fn round_trip_into_junk() {
        let f = Frame::new_checked(&QINQ[..]).expect("frame");
        let r = EthernetRepr::parse(&f).expect("repr");
        let mut buf = [0xa5u8; 24];
        let n = r.emit(&mut buf).expect("emit");
        assert_eq!(n, 22);
        assert_eq!(&buf[..22], &QINQ[..22]);
        assert_eq!(buf[22], 0xa5);
        assert!(r.emit(&mut [0u8; 21]).is_err());
    }

    #[test]
    fn third_tag_stays_in_payload() {
        let mut b = QINQ.to_vec();
        b.splice(20..20, [0x81, 0x00]); // the inner type is now a third TPID
        b.splice(22..22, [0x00, 0x07]);
        let f = Frame::new_checked(&b[..]).expect("frame");
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.ethertype(), EtherType::Vlan);
        assert_eq!(&f.payload()[..2], &[0x00, 0x07]);
    }

    #[test]
    fn truncated_prefixes() {
        for n in 0..22 {
            assert!(Frame::new_checked(&QINQ[..n]).is_err(), "prefix {n}");
        }
        assert!(matches!(Frame::new_checked(&QINQ[..15]), Err(PacketError::Truncated { layer: "vlan" })));
    }

    #[test]
    fn setters() {
        let mut b = QINQ;
        let mut f = Frame::new_checked(&mut b[..]).expect("frame");
        f.set_dst_addr(MacAddr([1, 2, 3, 4, 5, 6]));
        f.set_ethertype(EtherType::Ipv4);
        assert_eq!(f.dst_addr(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.vlan(1).map(|t| t.vid), Some(10));
    }
}
