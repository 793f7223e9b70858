//! Zero-copy views and builders for the packets a controller sees in a Packet-In.
//!
//! Each layer follows the smoltcp pattern: a view `Packet<T: AsRef<[u8]>>` whose `new_checked`
//! validates every length so that no getter panics afterwards, setters when `T: AsMut<[u8]>`,
//! and an owned `Repr` with `parse` and `emit`. Nothing on the parse path allocates.

pub mod arp;
pub mod build;
pub mod checksum;
mod describe;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod key;
mod related;
pub mod sctp;
pub mod tcp;
mod types;
pub mod udp;
pub mod verify;

pub use describe::{describe, Describe};
pub use key::{ConnKey, FlowKey};
pub use types::{EtherType, IpProtocol, MacAddr, PacketError, Result};
pub use verify::verify_checksums;
