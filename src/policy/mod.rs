//! The Packet-In decision, sans-IO: what cni-ctl answers for a connection ([`NetworkPolicy`]),
//! what the shard asks it ([`PolicyQuery`]), the reply-or-request guess ([`hot_syn`]), the flows
//! plus packet-out a shard sends back for one packet-in ([`decision::decide`]), and the state a
//! shard keeps between packet-ins ([`machine`]: answer cache, fail-open/closed, flooding unknown
//! destinations, the pending bound; time passed in).
//!
//! The order on a shard: `FlowKey::extract` -> [`hot_syn::classify`] (marks SYNs, guesses
//! whether the packet is a reply) -> [`PolicyQuery::from_flow`] (oriented initiator first by the
//! guess) -> the shard's cache or the [`PolicySource`] -> [`decision::decide`] (from the packet
//! as received: both directions are always installed, so a wrong guess cannot leave one
//! direction out) -> the FlowManager sends the flows, then the packet-out, in order.
//!
//! IO: none in the decision path. Two exceptions, both off the shards' decision path:
//! [`PolicyFile::load`] reads the policy file (called by the daemon at start and by a reload,
//! `daemon::reload`, never on a shard), and [`source::PolicyCell`] holds the current file behind
//! a mutex that a reload takes for a pointer swap (a shard only *tries* it). The cni-ctl
//! transport (gRPC client, servers, protobuf, TLS) lives in `control::cnictl` and reaches this
//! layer as a [`RemotePolicy`]; the runtime part of a decision (awaiting cni-ctl's answer with a
//! timer) is `daemon::decider`. This module imports only `openflow`, `packet`, `pipeline` and
//! the `shards` crate.
//!
//! The exact flows of each case are documented on [`decision::decide`].

pub mod arp;
pub mod decision;
pub mod hot_syn;
// Where answers come from: the policy file, its index, the source a shard asks; the one error.
pub mod error;
pub mod file;
pub mod index;
pub mod machine;
pub mod source;

use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{FlowKey, MacAddr};
use crate::pipeline::default::Ipv4Cidr;

pub use decision::{
    choose_endpoint, choose_endpoint_hashed, decide, decision_texts, plan, plan_hashed, Decided, Decision,
    DecisionContext, Location, Locator, Plan, Verdict, DEFAULT_CONN_IDLE_TIMEOUT, DEFAULT_DENY_IDLE_TIMEOUT,
    NAT_PRIORITY,
};
pub use error::PolicyError;
pub use file::PolicyFile;
pub use hot_syn::{classify, is_reply, mark, HotTarget};
pub use machine::{DecisionMachine, Held, Label, Outcome, PendingSlot};
pub use source::{PolicySource, RemotePolicy};

/// How long an answer is cached when its source says nothing (cni-ctl's `ttl_ms` 0, a policy
/// file without `ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Target port; 0 keeps the port the client used.
    pub port: u16,
    /// Relative weight for the consistent choice; 0 = draining (never chosen for new connections).
    pub weight: u32,
}

/// Where the connection goes, and how it is translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DstType {
    /// To the destination as addressed.
    Direct,
    /// A service (ClusterIP): DNAT to one of `endpoints`, chosen per connection.
    Dnat { endpoints: Vec<Endpoint> },
    /// Source NAT to `ip` (with [`NetworkPolicy::src_port`] as the port, if any).
    Snat { ip: IpAddr },
}

/// cni-ctl's answer (`route/exist`) for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub allowed: bool,
    pub dst_type: DstType,
    /// Source port translation (`nat(src=IP:PORT)`); the IP is the Snat IP or the packet's own.
    pub src_port: Option<u16>,
    /// cni-ctl's rule version (for caching and logs; not encoded in the flows).
    pub version: u64,
    /// How long the shard may cache this answer (not a flow timeout).
    pub ttl: Duration,
}

impl NetworkPolicy {
    /// An allowed, untranslated connection.
    pub fn allow() -> NetworkPolicy {
        NetworkPolicy {
            allowed: true,
            dst_type: DstType::Direct,
            src_port: None,
            version: 0,
            ttl: Duration::from_secs(30),
        }
    }

    pub fn deny() -> NetworkPolicy {
        NetworkPolicy { allowed: false, ..NetworkPolicy::allow() }
    }

    pub fn service(endpoints: Vec<Endpoint>) -> NetworkPolicy {
        NetworkPolicy { dst_type: DstType::Dnat { endpoints }, ..NetworkPolicy::allow() }
    }
}

/// What the shard asks cni-ctl for one connection, initiator first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyQuery {
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// TCP/UDP/SCTP ports; the echo identifier (both) for ICMP echo; else 0.
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// The packet was guessed to be a reply: src/dst here are the packet's swapped.
    pub is_reply: bool,
    /// The (initiator's) destination is in the service range: cni-ctl should answer with a DNAT.
    pub nat: bool,
}

impl PolicyQuery {
    /// The query for the packet `key`, oriented by the reply guess (`is_reply` swaps the sides,
    /// so `src` is always the initiator). `nat` is set when the initiator's destination is an
    /// IPv4 address inside `service_cidr`.
    pub fn from_flow(key: &FlowKey, is_reply: bool, service_cidr: &Ipv4Cidr) -> PolicyQuery {
        let icmp = matches!(key.ip_proto, 1 | 58);
        let (sp, dp) = if icmp { (key.icmp_id, key.icmp_id) } else { (key.l4_src, key.l4_dst) };
        let mut q = PolicyQuery {
            src_ip: key.ip_src,
            dst_ip: key.ip_dst,
            src_mac: key.eth_src,
            dst_mac: key.eth_dst,
            src_port: sp,
            dst_port: dp,
            protocol: key.ip_proto,
            is_reply,
            nat: false,
        };
        if is_reply {
            std::mem::swap(&mut q.src_ip, &mut q.dst_ip);
            std::mem::swap(&mut q.src_mac, &mut q.dst_mac);
            std::mem::swap(&mut q.src_port, &mut q.dst_port);
        }
        q.nat = matches!(q.dst_ip, IpAddr::V4(d) if service_cidr.contains(d));
        q
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
