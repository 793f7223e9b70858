//! Is this packet a reply? The hot-SYN rule of the old design, on a shard's
//! [`shards::HotSynCache`].
//!
//! A SYN (without ACK) from A to B:port marks the *hot target* `(A, B, port)`. Then:
//! - a SYN is never a reply (a retransmitted SYN re-marks and stays a request);
//! - a SYN-ACK is a reply (from B:port back to A);
//! - any other TCP packet A -> B:port while `(A, B, port)` is hot is A's own connection (an early
//!   or retransmitted ACK, data, FIN): **not** a reply;
//! - any other TCP packet B:port -> A while `(A, B, port)` is hot is a reply;
//! - conntrack's `+rpl` (the packet-in's `ct_state`) is a reply, whatever the rest says;
//! - otherwise (nothing hot, no `+rpl`): the side with the lower port is taken as the server, so
//!   a packet from the lower port is a reply (ties: not a reply). Non-TCP: not a reply.
//!
//! The guess only orients the policy query ([`super::PolicyQuery::from_flow`]):
//! [`super::decide`] installs both directions from the packet as received, so a wrong guess can
//! never leave only the return flow installed.

use std::net::IpAddr;
use std::time::Instant;

use shards::HotSynCache;

use crate::packet::FlowKey;

/// TCP flag bits (as in `FlowKey::tcp_flags`).
const SYN: u16 = 0x002;
const ACK: u16 = 0x010;
/// `ct_state` bits (ovs-fields(7)).
pub const CT_STATE_RPL: u32 = 0x08;
pub const CT_STATE_TRK: u32 = 0x20;

/// A connection target opened by a SYN: `client` sent a SYN to `server:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotTarget {
    pub client: IpAddr,
    pub server: IpAddr,
    pub port: u16,
}

fn is_tcp(key: &FlowKey) -> bool {
    key.is_ip() && key.ip_proto == 6
}

fn is_syn(key: &FlowKey) -> bool {
    is_tcp(key) && key.tcp_flags & (SYN | ACK) == SYN
}

/// The target this packet would open if it were a request: `(src, dst, dst port)`.
pub fn target_of(key: &FlowKey) -> HotTarget {
    HotTarget { client: key.ip_src, server: key.ip_dst, port: key.l4_dst }
}

/// The target whose reply this packet would be: `(dst, src, src port)`.
pub fn reply_target_of(key: &FlowKey) -> HotTarget {
    HotTarget { client: key.ip_dst, server: key.ip_src, port: key.l4_src }
}

/// Marks the target of a TCP SYN (without ACK) hot; true if it marked.
pub fn mark(key: &FlowKey, hot: &mut HotSynCache<HotTarget>, now: Instant) -> bool {
    if is_syn(key) {
        hot.mark(target_of(key), now);
        true
    } else {
        false
    }
}

/// Whether `key` is the reply direction of its connection (see the module doc). `ct_state` is
/// the packet-in's `ct_state` (0 when it has none).
pub fn is_reply(key: &FlowKey, ct_state: u32, hot: &HotSynCache<HotTarget>, now: Instant) -> bool {
    if ct_state & (CT_STATE_TRK | CT_STATE_RPL) == CT_STATE_TRK | CT_STATE_RPL {
        return true;
    }
    if !is_tcp(key) {
        return false;
    }
    let syn_ack = key.tcp_flags & (SYN | ACK);
    if syn_ack == SYN {
        return false;
    }
    if syn_ack == SYN | ACK {
        return true;
    }
    if hot.is_hot(&target_of(key), now) {
        return false;
    }
    if hot.is_hot(&reply_target_of(key), now) {
        return true;
    }
    key.l4_src < key.l4_dst
}

/// [`mark`] then [`is_reply`]: what a shard calls once per packet-in.
pub fn classify(key: &FlowKey, ct_state: u32, hot: &mut HotSynCache<HotTarget>, now: Instant) -> bool {
    mark(key, hot, now);
    is_reply(key, ct_state, hot, now)
}
