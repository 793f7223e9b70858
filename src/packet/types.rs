//! Small value types shared by the packet layers: MAC address, EtherType, IP protocol, errors.

use std::fmt;

/// Why a frame could not be viewed or emitted. `Copy` and allocation-free on purpose: the parse
/// path runs for every Packet-In and must not touch the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The buffer ends before the header (or a length it announces) does.
    #[error("{layer}: truncated")]
    Truncated { layer: &'static str },
    /// A field holds a value that makes the rest unreadable (bad version, length below minimum).
    #[error("{layer}: malformed {what}")]
    Malformed { layer: &'static str, what: &'static str },
    /// The checksum does not verify (only from explicit `verify_checksum` calls).
    #[error("{layer}: bad checksum")]
    Checksum { layer: &'static str },
    /// The output buffer given to an `emit` is too small.
    #[error("{layer}: output buffer too small")]
    BufferTooSmall { layer: &'static str },
}

pub type Result<T> = std::result::Result<T, PacketError>;

pub(crate) fn truncated(layer: &'static str) -> PacketError {
    PacketError::Truncated { layer }
}

pub(crate) fn malformed(layer: &'static str, what: &'static str) -> PacketError {
    PacketError::Malformed { layer, what }
}

/// Reads a big-endian u16 at `at`; callers have checked the length (the view contract).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Checks that `buf` can hold `len` bytes before an emit writes them.
pub(crate) fn need_room(buf: &[u8], len: usize, layer: &'static str) -> Result<()> {
    if buf.len() < len {
        Err(PacketError::BufferTooSmall { layer })
    } else {
        Ok(())
    }
}

// === MacAddr ===

/// An Ethernet address, printed the way OVS prints it (`aa:bb:cc:00:00:01`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Copies the first six bytes; callers pass a checked slice.
    pub(crate) fn from_slice(b: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit: multicast and broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = PacketError;
    fn from_str(s: &str) -> Result<MacAddr> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(malformed("mac", "text"));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| malformed("mac", "text"))?;
            n += 1;
        }
        if n != 6 {
            return Err(malformed("mac", "text"));
        }
        Ok(MacAddr(out))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(m: [u8; 6]) -> Self {
        MacAddr(m)
    }
}

// === EtherType and IpProtocol ===

/// Declares a number-backed enum whose unknown values survive as `Unknown(n)` (lossless).
macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident : $repr:ty { $($(#[$vm:meta])* $var:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $($val => $name::$var,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                match v {
                    $($name::$var => $val,)*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

pub(crate) use open_enum;

open_enum! {
    /// The EtherTypes a controller looks into; others are carried as `Unknown`.
    EtherType: u16 {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        Vlan = 0x8100,
        Rarp = 0x8035,
        QinQ = 0x88a8,
        Ipv6 = 0x86dd,
        Mpls = 0x8847,
        MplsMcast = 0x8848,
        Lldp = 0x88cc,
    }
}

open_enum! {
    /// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`).
    IpProtocol: u8 {
        HopByHop = 0,
        Icmp = 1,
        Igmp = 2,
        Tcp = 6,
        Udp = 17,
        Ipv6Route = 43,
        Ipv6Frag = 44,
        Gre = 47,
        Esp = 50,
        Ah = 51,
        Icmpv6 = 58,
        Ipv6NoNxt = 59,
        Ipv6Opts = 60,
        Sctp = 132,
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", u16::from(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_are_lossless() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        for v in [0u16, 0x0800, 0x0806, 0x8100, 0x88a8, 0x86dd, 0x1234, 0xffff] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(EtherType::from(0x9999), EtherType::Unknown(0x9999));
    }

    #[test]
    fn mac_text() {
        let m: MacAddr = "aa:bb:cc:00:00:01".parse().expect("mac");
        assert_eq!(m.to_string(), "aa:bb:cc:00:00:01");
        assert!("aa:bb:cc:00:00".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:00:00:01:02".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:00:00:zz".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
    }
}
