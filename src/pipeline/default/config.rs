//! `[pipeline]`: what the default pipeline needs to know about the node, with defaults and
//! [`PipelineConfig::validate`]. Addresses are written as text (`"10.244.1.0/24"`,
//! `"10.244.1.1"`, `"02:00:0a:f4:01:01"`); unknown keys are errors.
//!
//! ```toml
//! [pipeline]
//! pod_cidr = "10.244.1.0/24"          # this node's pod subnet
//! service_cidr = "10.96.0.0/12"       # cluster services (DNAT flows in table 0)
//! gateway_ip = "10.244.1.1"           # the pods' default gateway, answered by the ARP responder
//! gateway_mac = "02:00:0a:f4:01:01"
//! gateway_port = 2                    # OpenFlow port of the host's gateway interface
//! uplink_port = 1                     # OpenFlow port of the uplink NIC
//! # tunnel_port = 3                   # OpenFlow port of the tunnel (geneve/vxlan), if any
//! pod_zone = 1                        # conntrack zone of pod traffic (table 1)
//! service_zone = 2                    # conntrack zone of service (DNAT) traffic
//! learn_idle_timeout = 60             # learned return flows (table 6)
//! learn_hard_timeout = 0
//! # pod_cidr6 = "fd00:10:244:1::/64"  # IPv6 pod subnet: IPv6 flows only when set
//! # gateway_ip6 = "fd00:10:244:1::1"  # the pods' IPv6 gateway (inside pod_cidr6)
//! # arp = "responder"                 # or "controller": non-gateway ARP requests to the packet-in path
//! [pipeline.meters]                   # packet-in protection: packets/s per class, 0 = no meter
//! new_connections_pps = 10000         # table 0 service miss and table 3 policy miss (meter 1)
//! arp_pps = 1000                      # table 20 ARP requests with arp = "controller" (meter 2)
//! other_pps = 1000                    # the table-0 miss: anything the classifier does not know (meter 3)
//! [pipeline.shard_limits]             # per shard, packet-ins/s acted on per class; beyond: dropped, counted
//! new_connections_pps = 0             # 0 = no limit (the switch's meter 1 bounds it)
//! arp_pps = 10000
//! other_pps = 10000
//! [[pipeline.local_pods]]
//! port = 10
//! ip = "10.244.1.10"
//! mac = "0a:58:0a:f4:01:0a"
//! # ipv6 = "fd00:10:244:1::a"         # inside pod_cidr6
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::packet::MacAddr;

/// Highest OpenFlow port number accepted for a configured port (`OFPP_MAX` of OpenFlow 1.0;
/// also keeps port numbers inside the 24 bits a cookie's object id has for them).
pub const MAX_PORT: u32 = 0xfeff;

/// Why a pipeline configuration (or the shard count given with it) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// `key` is the configuration key at fault (`pipeline.local_pods[1].ip`).
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A generated flow text the codec refused (a bug in the generator).
    #[error("generated flow {flow:?} does not parse: {reason}")]
    Flow { flow: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { key: key.into(), reason: reason.into() }
}

// === Ipv4Cidr ===

/// An IPv4 network in CIDR form (`10.244.1.0/24`). The address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network `addr/prefix`; `None` if `prefix > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        if prefix > 32 {
            return None;
        }
        let c = Ipv4Cidr { addr, prefix };
        (u32::from(addr) & !c.mask() == 0).then_some(c)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number (`/24` -> `0xffffff00`).
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// The last address (the broadcast address of the subnet).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Ipv4Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv4 network (a.b.c.d/len)"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("{s:?}: prefix length {p:?} is not 0-32"))?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(|| {
            let net = Ipv4Addr::from(u32::from(addr) & Ipv4Cidr { addr, prefix }.mask());
            format!("{s:?} has host bits set (did you mean {net}/{prefix}?)")
        })
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// === Ipv6Cidr ===

/// An IPv6 network in CIDR form (`fd00:10:244:1::/64`). The address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    prefix: u8,
}

impl Ipv6Cidr {
    /// The network `addr/prefix`; `None` if `prefix > 128` or `addr` has host bits set.
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Option<Ipv6Cidr> {
        if prefix > 128 {
            return None;
        }
        let c = Ipv6Cidr { addr, prefix };
        (u128::from(addr) & !c.mask() == 0).then_some(c)
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number (`/64` -> the upper 64 bits set).
    pub fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv6Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Ipv6Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv6 network (addr/len)"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IPv6 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 128).ok_or_else(|| format!("{s:?}: prefix length {p:?} is not 0-128"))?;
        Ipv6Cidr::new(addr, prefix).ok_or_else(|| {
            let net = Ipv6Addr::from(u128::from(addr) & Ipv6Cidr { addr, prefix }.mask());
            format!("{s:?} has host bits set (did you mean {net}/{prefix}?)")
        })
    }
}

impl Serialize for Ipv6Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv6Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// === MAC addresses as text ===

mod mac_text {
    use super::*;

    pub fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
    }
}

// === sections ===

/// A pod attached to this node's bridge (static for now; the Tracker fills these later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPod {
    /// The OpenFlow port of the pod's interface.
    pub port: u32,
    pub ip: Ipv4Addr,
    #[serde(with = "mac_text")]
    pub mac: MacAddr,
    /// The pod's IPv6 address (inside `pipeline.pod_cidr6`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

/// Another node's pods, reached through this node's tunnel port (`[[pipeline.tunnel_routes]]`):
/// traffic to `cidr` leaves with `tun_dst = remote_ip`. Static until cni-ctl's routing hands
/// them out; the replies need no route (they are learned with `tun_dst`, tables 15 -> 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelRoute {
    /// The remote node's pod subnet.
    pub cidr: Ipv4Cidr,
    /// The remote node's underlay (tunnel endpoint) address.
    pub remote_ip: Ipv4Addr,
}

/// `pipeline.arp`: who answers ARP requests that are not for the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpMode {
    /// The gateway is answered by flows (table 20), other ARP is switched (`NORMAL`).
    #[default]
    Responder,
    /// The gateway is answered by flows; other ARP requests go to the packet-in dispatch (the
    /// controller answers from what it knows, or floods); replies are switched (`NORMAL`).
    Controller,
}

/// `pipeline.first_packet`: how the first packet of a decided connection goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstPacket {
    /// The packet-in carries the packet; the controller sends it back in a PACKET_OUT that
    /// applies the decided actions.
    #[default]
    PacketOut,
    /// The pipeline pauses at the controller (`controller(...,pause)`, NXT_PACKET_IN2); after
    /// the flows the controller sends NXT_RESUME and OVS continues the paused pipeline, which
    /// looks the decided table up again. reg0 bit 4 marks a resumed packet so that a decision
    /// that installed nothing cannot send it to the controller twice.
    Resume,
}

/// `[pipeline.meters]`: packet-in protection. Each class of flows that sends packets to the
/// controller goes through its own OpenFlow meter (`OFPMF_PKTPS` with one drop band at the rate
/// given here), so a flood of one class (new connections from a port scan, an ARP storm, junk
/// EtherTypes) is dropped at the switch, counted in its meter's band statistics, and cannot
/// starve the others. `0` leaves that class unmetered (no meter, no `meter:` instruction).
/// See `pipeline::meters` for the meter ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacketInMeters {
    /// First packets of connections: the table-0 service-range flow and the table-3 policy miss.
    pub new_connections_pps: u32,
    /// ARP requests sent to the controller (table 20, only with `arp = "controller"`).
    pub arp_pps: u32,
    /// The table-0 miss (dispatch): traffic the classifier does not recognise.
    pub other_pps: u32,
}

impl Default for PacketInMeters {
    /// 10,000 first packets/s (a shard alone answers ~400 k packet-ins/s; OVS's own upcall path
    /// and the decisions' flow mods are the tighter limit), 1,000 ARP requests/s, 1,000 others/s.
    fn default() -> Self {
        PacketInMeters { new_connections_pps: 10_000, arp_pps: 1_000, other_pps: 1_000 }
    }
}

impl PacketInMeters {
    /// No meters at all.
    pub const OFF: PacketInMeters = PacketInMeters { new_connections_pps: 0, arp_pps: 0, other_pps: 0 };
}

/// `[pipeline.shard_limits]`: the daemon's own packet-in budget per shard and class, a second
/// line of defence behind the switch's meters (a switch without them, another controller's
/// flows, an emulated switch): packet-ins beyond it are dropped right after parsing, before any
/// decision, Tracker update or flow mod, and counted in
/// `shardflow_packet_in_dropped_total{cause="rate_new_connection"|"rate_arp"|"rate_other"}`.
/// Token buckets refilled at the rate, holding a tenth of a second's worth. `0`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacketInLimits {
    /// Packet-ins to decide (new connections) per second and shard.
    pub new_connections_pps: u32,
    /// ARP packet-ins answered per second and shard.
    pub arp_pps: u32,
    /// Other packet-ins (recorded, not decided) per second and shard.
    pub other_pps: u32,
}

impl PacketInLimits {
    /// No limit on any class.
    pub const OFF: PacketInLimits = PacketInLimits { new_connections_pps: 0, arp_pps: 0, other_pps: 0 };
}

impl Default for PacketInLimits {
    /// New connections unlimited (a shard decides ~400 k/s here; the switch's meter is the
    /// bound), 10,000 ARP and 10,000 other packet-ins per second and shard.
    fn default() -> Self {
        PacketInLimits { new_connections_pps: 0, arp_pps: 10_000, other_pps: 10_000 }
    }
}

/// `[pipeline]`: the node's addresses and ports the default pipeline is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// This node's pod subnet.
    pub pod_cidr: Ipv4Cidr,
    /// The cluster's service (ClusterIP) range.
    pub service_cidr: Ipv4Cidr,
    /// The pods' default gateway (inside `pod_cidr`), answered by the ARP responder.
    pub gateway_ip: Ipv4Addr,
    #[serde(with = "mac_text")]
    pub gateway_mac: MacAddr,
    /// OpenFlow port of the host's gateway interface.
    pub gateway_port: u32,
    /// OpenFlow port of the uplink NIC.
    pub uplink_port: u32,
    /// OpenFlow port of the tunnel interface, if the node has one.
    pub tunnel_port: Option<u32>,
    /// Pods on this bridge.
    pub local_pods: Vec<LocalPod>,
    /// Other nodes' pod subnets behind the tunnel port (used only when the bridge has one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnel_routes: Vec<TunnelRoute>,
    /// Conntrack zone of pod traffic (table 1).
    pub pod_zone: u16,
    /// Conntrack zone of service (DNAT) traffic; used by the policy's table-0 flows.
    pub service_zone: u16,
    /// `idle_timeout` of learned return flows (table 6), seconds; 0 = none.
    pub learn_idle_timeout: u16,
    /// `hard_timeout` of learned return flows, seconds; 0 = none.
    pub learn_hard_timeout: u16,
    /// This node's IPv6 pod subnet; without it the pipeline has no IPv6 flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_cidr6: Option<Ipv6Cidr>,
    /// The pods' IPv6 gateway address (inside `pod_cidr6`), delivered to the gateway port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_ip6: Option<Ipv6Addr>,
    /// Who answers ARP requests that are not for the gateway (`"responder"`: OVS switches them;
    /// `"controller"`: the packet-in path).
    pub arp: ArpMode,
    /// How the first packet of a decided connection goes on (`"packet_out"` or `"resume"`).
    pub first_packet: FirstPacket,
    /// Packet-in meters per class (`[pipeline.meters]`).
    pub meters: PacketInMeters,
    /// The shards' own packet-in budget per class (`[pipeline.shard_limits]`).
    pub shard_limits: PacketInLimits,
    /// Set by the daemon, never read from a file: there is no `[pipeline]` section, so the
    /// node-specific parts (pod and service ranges, gateway address, uplink) are unknown. Ports
    /// without pod metadata are learning ports (table 0 marks their IP traffic reg0[5] and
    /// sends it to conntrack), ARP goes to the controller both ways, established traffic goes
    /// through the connection's own flows (table 3), and a port number of 0 means "none".
    /// See [`PipelineConfig::zero_config`] and docs/pipeline.md "Zero-config".
    #[serde(skip)]
    pub zero_config: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            pod_cidr: Ipv4Cidr { addr: Ipv4Addr::new(10, 244, 0, 0), prefix: 24 },
            service_cidr: Ipv4Cidr { addr: Ipv4Addr::new(10, 96, 0, 0), prefix: 12 },
            gateway_ip: Ipv4Addr::new(10, 244, 0, 1),
            gateway_mac: MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x00, 0x01]),
            gateway_port: 2,
            uplink_port: 1,
            tunnel_port: None,
            local_pods: Vec::new(),
            tunnel_routes: Vec::new(),
            pod_zone: 1,
            service_zone: 2,
            learn_idle_timeout: 60,
            learn_hard_timeout: 0,
            pod_cidr6: None,
            gateway_ip6: None,
            arp: ArpMode::Responder,
            first_packet: FirstPacket::PacketOut,
            meters: PacketInMeters::default(),
            shard_limits: PacketInLimits::default(),
            zero_config: false,
        }
    }
}

impl PipelineConfig {
    /// The pipeline of a node with no `[pipeline]` section: no pod or service range, no
    /// gateway, no uplink (the node's database may name them: `pipeline::node`). Every
    /// destination is "in range" (`0.0.0.0/0`: unknown ones are flooded until learned), no
    /// address is a service (`0.0.0.0/32`), and ARP is the controller's (so the Tracker learns
    /// every host from its ARP, requests and replies alike).
    pub fn zero_config() -> PipelineConfig {
        PipelineConfig {
            pod_cidr: Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
            service_cidr: Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 32 },
            gateway_ip: Ipv4Addr::UNSPECIFIED,
            gateway_port: 0,
            uplink_port: 0,
            arp: ArpMode::Controller,
            zero_config: true,
            ..PipelineConfig::default()
        }
    }
}

impl PipelineConfig {
    /// Checks everything the generator relies on; the error names the key at fault.
    pub fn validate(&self) -> Result<(), PipelineError> {
        if self.zero_config {
            return self.validate_zero_config();
        }
        if self.pod_cidr.prefix() > 30 {
            return Err(invalid(
                "pipeline.pod_cidr",
                format!("{} leaves no room for pods (at most /30)", self.pod_cidr),
            ));
        }
        if self.pod_cidr.overlaps(&self.service_cidr) {
            return Err(invalid(
                "pipeline.service_cidr",
                format!("{} overlaps pipeline.pod_cidr {}", self.service_cidr, self.pod_cidr),
            ));
        }
        let usable = |ip: Ipv4Addr| {
            if !self.pod_cidr.contains(ip) {
                Err(format!("{ip} is not inside pipeline.pod_cidr {}", self.pod_cidr))
            } else if ip == self.pod_cidr.addr() || ip == self.pod_cidr.last() {
                Err(format!("{ip} is the network or broadcast address of {}", self.pod_cidr))
            } else {
                Ok(())
            }
        };
        usable(self.gateway_ip).map_err(|r| invalid("pipeline.gateway_ip", r))?;
        for (i, r) in self.tunnel_routes.iter().enumerate() {
            let key = format!("pipeline.tunnel_routes[{i}]");
            if r.cidr.overlaps(&self.pod_cidr) || r.cidr.overlaps(&self.service_cidr) {
                return Err(invalid(
                    format!("{key}.cidr"),
                    format!("{} overlaps this node's pod_cidr or the service_cidr", r.cidr),
                ));
            }
            if let Some(j) = self.tunnel_routes[..i].iter().position(|o| o.cidr.overlaps(&r.cidr)) {
                return Err(invalid(format!("{key}.cidr"), format!("{} overlaps tunnel_routes[{j}]", r.cidr)));
            }
            if r.remote_ip.is_unspecified() || r.remote_ip.is_broadcast() || r.remote_ip.is_multicast() {
                return Err(invalid(format!("{key}.remote_ip"), format!("{} is not a unicast address", r.remote_ip)));
            }
        }
        let unicast = |m: &MacAddr| {
            if *m == MacAddr::ZERO {
                Err("the all-zero MAC address is not usable".to_string())
            } else if m.is_multicast() {
                Err(format!("{m} is a multicast/broadcast MAC address"))
            } else {
                Ok(())
            }
        };
        unicast(&self.gateway_mac).map_err(|r| invalid("pipeline.gateway_mac", r))?;

        // Ports: in range and all distinct.
        let mut ports: Vec<(String, u32)> = vec![
            ("pipeline.uplink_port".into(), self.uplink_port),
            ("pipeline.gateway_port".into(), self.gateway_port),
        ];
        if let Some(t) = self.tunnel_port {
            ports.push(("pipeline.tunnel_port".into(), t));
        }
        self.check_ports(ports)?;

        let mut ips = BTreeSet::from([self.gateway_ip]);
        let mut macs = BTreeSet::from([self.gateway_mac]);
        for (i, p) in self.local_pods.iter().enumerate() {
            usable(p.ip).map_err(|r| invalid(format!("pipeline.local_pods[{i}].ip"), r))?;
            if !ips.insert(p.ip) {
                return Err(invalid(
                    format!("pipeline.local_pods[{i}].ip"),
                    format!("{} is already the gateway's or another pod's address", p.ip),
                ));
            }
            unicast(&p.mac).map_err(|r| invalid(format!("pipeline.local_pods[{i}].mac"), r))?;
            if !macs.insert(p.mac) {
                return Err(invalid(
                    format!("pipeline.local_pods[{i}].mac"),
                    format!("{} is already the gateway's or another pod's MAC address", p.mac),
                ));
            }
        }

        self.validate_ipv6()?;

        if self.pod_zone == 0 {
            return Err(invalid("pipeline.pod_zone", "must not be 0 (zone 0 is the default zone of everything else)"));
        }
        if self.service_zone == 0 {
            return Err(invalid(
                "pipeline.service_zone",
                "must not be 0 (zone 0 is the default zone of everything else)",
            ));
        }
        if self.service_zone == self.pod_zone {
            return Err(invalid(
                "pipeline.service_zone",
                format!("must differ from pipeline.pod_zone ({})", self.pod_zone),
            ));
        }
        if self.learn_idle_timeout == 0 && self.learn_hard_timeout == 0 {
            return Err(invalid(
                "pipeline.learn_idle_timeout",
                "learned return flows need an idle or a hard timeout (both are 0: they would never expire)",
            ));
        }
        Ok(())
    }

    /// `ports` (the infrastructure ports, named by key) and the pods' ports: each an OpenFlow
    /// port number, no two the same.
    fn check_ports(&self, mut ports: Vec<(String, u32)>) -> Result<(), PipelineError> {
        for (i, p) in self.local_pods.iter().enumerate() {
            ports.push((format!("pipeline.local_pods[{i}].port"), p.port));
        }
        for (i, (key, port)) in ports.iter().enumerate() {
            if *port == 0 || *port > MAX_PORT {
                return Err(invalid(key.clone(), format!("{port} is not an OpenFlow port number (1-{MAX_PORT})")));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, q)| q == port) {
                return Err(invalid(key.clone(), format!("port {port} is already {other}")));
            }
        }
        Ok(())
    }

    /// The zero-config pipeline: no addresses to check; ports (0 = none), zones and timeouts.
    fn validate_zero_config(&self) -> Result<(), PipelineError> {
        let mut ports: Vec<(String, u32)> = Vec::new();
        for (key, p) in [("pipeline.uplink_port", self.uplink_port), ("pipeline.gateway_port", self.gateway_port)] {
            if p != 0 {
                ports.push((key.into(), p));
            }
        }
        if let Some(t) = self.tunnel_port {
            ports.push(("pipeline.tunnel_port".into(), t));
        }
        self.check_ports(ports)?;
        if self.pod_zone == 0 || self.service_zone == 0 || self.pod_zone == self.service_zone {
            return Err(invalid("pipeline.pod_zone", "zones must be non-zero and distinct"));
        }
        if self.learn_idle_timeout == 0 && self.learn_hard_timeout == 0 {
            return Err(invalid("pipeline.learn_idle_timeout", "learned return flows need an idle or a hard timeout"));
        }
        Ok(())
    }

    /// `pod_cidr6`, `gateway_ip6` and the pods' `ipv6`: inside the IPv6 pod subnet, distinct.
    fn validate_ipv6(&self) -> Result<(), PipelineError> {
        let Some(cidr) = self.pod_cidr6 else {
            if self.gateway_ip6.is_some() {
                return Err(invalid("pipeline.gateway_ip6", "needs pipeline.pod_cidr6"));
            }
            if let Some(i) = self.local_pods.iter().position(|p| p.ipv6.is_some()) {
                return Err(invalid(format!("pipeline.local_pods[{i}].ipv6"), "needs pipeline.pod_cidr6"));
            }
            return Ok(());
        };
        if cidr.prefix() > 126 {
            return Err(invalid("pipeline.pod_cidr6", format!("{cidr} leaves no room for pods (at most /126)")));
        }
        let reserved: [(&str, Ipv6Cidr); 4] = [
            ("the unspecified/loopback range", Ipv6Cidr { addr: Ipv6Addr::UNSPECIFIED, prefix: 127 }),
            ("multicast", Ipv6Cidr { addr: Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), prefix: 8 }),
            ("link-local", Ipv6Cidr { addr: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), prefix: 10 }),
            ("IPv4-mapped", Ipv6Cidr { addr: Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), prefix: 96 }),
        ];
        if let Some((what, r)) = reserved.iter().find(|(_, r)| r.overlaps(&cidr)) {
            return Err(invalid("pipeline.pod_cidr6", format!("{cidr} overlaps {what} ({r})")));
        }
        let usable = |ip: Ipv6Addr| {
            if !cidr.contains(ip) {
                Err(format!("{ip} is not inside pipeline.pod_cidr6 {cidr}"))
            } else if ip == cidr.addr() {
                Err(format!("{ip} is the subnet-router anycast address of {cidr}"))
            } else {
                Ok(())
            }
        };
        let mut ips = BTreeSet::new();
        if let Some(gw) = self.gateway_ip6 {
            usable(gw).map_err(|r| invalid("pipeline.gateway_ip6", r))?;
            ips.insert(gw);
        }
        for (i, p) in self.local_pods.iter().enumerate() {
            let Some(ip) = p.ipv6 else { continue };
            let key = format!("pipeline.local_pods[{i}].ipv6");
            usable(ip).map_err(|r| invalid(key.clone(), r))?;
            if !ips.insert(ip) {
                return Err(invalid(key, format!("{ip} is already the gateway's or another pod's address")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_prints_and_contains() {
        let c: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 1)));
        assert_eq!(c.last(), Ipv4Addr::new(10, 244, 1, 255));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)) && all.overlaps(&c));
        let host: Ipv4Cidr = "10.0.0.7/32".parse().unwrap();
        assert!(host.contains(Ipv4Addr::new(10, 0, 0, 7)) && !host.contains(Ipv4Addr::new(10, 0, 0, 8)));
        let svc: Ipv4Cidr = "10.96.0.0/12".parse().unwrap();
        assert!(!svc.overlaps(&c));
        for bad in ["10.244.1.0", "10.244.1.0/33", "10.244.1.1/24", "10.244.1/24", "x/8", "10.0.0.0/-1"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert!("10.244.1.1/24".parse::<Ipv4Cidr>().unwrap_err().contains("10.244.1.0/24"));
    }

    fn key_of(cfg: &PipelineConfig) -> String {
        match cfg.validate() {
            Err(PipelineError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        let ok = PipelineConfig::default();
        ok.validate().unwrap();
        let pod = |port, ip: [u8; 4], mac: u8| LocalPod {
            port,
            ip: Ipv4Addr::from(ip),
            mac: MacAddr([0x0a, 0x58, 0, 0, 0, mac]),
            ipv6: None,
        };
        let mut c = ok.clone();
        c.local_pods = vec![pod(10, [10, 244, 0, 10], 10), pod(11, [10, 244, 0, 11], 11)];
        c.validate().unwrap();

        type Edit = Box<dyn Fn(&mut PipelineConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("pipeline.service_cidr", Box::new(|c| c.service_cidr = "10.0.0.0/8".parse().unwrap())),
            ("pipeline.pod_cidr", Box::new(|c| c.pod_cidr = "10.244.0.0/31".parse().unwrap())),
            ("pipeline.gateway_ip", Box::new(|c| c.gateway_ip = Ipv4Addr::new(10, 245, 0, 1))),
            ("pipeline.gateway_ip", Box::new(|c| c.gateway_ip = Ipv4Addr::new(10, 244, 0, 255))),
            ("pipeline.gateway_mac", Box::new(|c| c.gateway_mac = MacAddr::BROADCAST)),
            ("pipeline.gateway_port", Box::new(|c| c.gateway_port = c.uplink_port)),
            ("pipeline.uplink_port", Box::new(|c| c.uplink_port = 0)),
            ("pipeline.tunnel_port", Box::new(|c| c.tunnel_port = Some(0xff00))),
            ("pipeline.tunnel_port", Box::new(|c| c.tunnel_port = Some(2))),
            ("pipeline.local_pods[1].port", Box::new(|c| c.local_pods[1].port = 10)),
            ("pipeline.local_pods[0].port", Box::new(|c| c.local_pods[0].port = 1)),
            ("pipeline.local_pods[1].ip", Box::new(|c| c.local_pods[1].ip = Ipv4Addr::new(10, 244, 0, 10))),
            ("pipeline.local_pods[0].ip", Box::new(|c| c.local_pods[0].ip = Ipv4Addr::new(10, 244, 0, 1))),
            ("pipeline.local_pods[0].ip", Box::new(|c| c.local_pods[0].ip = Ipv4Addr::new(192, 168, 0, 1))),
            ("pipeline.local_pods[1].mac", Box::new(|c| c.local_pods[1].mac = c.local_pods[0].mac)),
            ("pipeline.local_pods[0].mac", Box::new(|c| c.local_pods[0].mac = MacAddr::ZERO)),
            ("pipeline.pod_zone", Box::new(|c| c.pod_zone = 0)),
            ("pipeline.service_zone", Box::new(|c| c.service_zone = 0)),
            ("pipeline.service_zone", Box::new(|c| c.service_zone = c.pod_zone)),
            ("pipeline.learn_idle_timeout", Box::new(|c| c.learn_idle_timeout = 0)),
        ];
        for (key, edit) in cases {
            let mut bad = c.clone();
            edit(&mut bad);
            assert_eq!(key_of(&bad), key, "{bad:?}");
        }
        // IPv6: every address inside pod_cidr6, distinct; nothing IPv6 without pod_cidr6.
        let mut c6 = c.clone();
        c6.pod_cidr6 = Some("fd00:10:244::/64".parse().unwrap());
        c6.gateway_ip6 = Some("fd00:10:244::1".parse().unwrap());
        c6.local_pods[0].ipv6 = Some("fd00:10:244::a".parse().unwrap());
        c6.validate().unwrap();
        let v6 = |s: &str| Some(s.parse::<Ipv6Addr>().unwrap());
        let cases6: Vec<(&str, Edit)> = vec![
            ("pipeline.gateway_ip6", Box::new(|c| c.pod_cidr6 = None)),
            ("pipeline.local_pods[0].ipv6", Box::new(|c| (c.pod_cidr6, c.gateway_ip6) = (None, None))),
            ("pipeline.pod_cidr6", Box::new(|c| c.pod_cidr6 = Some("fd00:10:244::/127".parse().unwrap()))),
            ("pipeline.pod_cidr6", Box::new(|c| c.pod_cidr6 = Some("fe80::/64".parse().unwrap()))),
            ("pipeline.pod_cidr6", Box::new(|c| c.pod_cidr6 = Some("::/0".parse().unwrap()))),
            ("pipeline.gateway_ip6", Box::new(move |c| c.gateway_ip6 = v6("fd00:10:245::1"))),
            ("pipeline.gateway_ip6", Box::new(move |c| c.gateway_ip6 = v6("fd00:10:244::"))),
            ("pipeline.local_pods[0].ipv6", Box::new(move |c| c.local_pods[0].ipv6 = v6("fd00:10:244::1"))),
            ("pipeline.local_pods[1].ipv6", Box::new(move |c| c.local_pods[1].ipv6 = v6("fd00:10:244::a"))),
            ("pipeline.local_pods[1].ipv6", Box::new(move |c| c.local_pods[1].ipv6 = v6("2001:db8::1"))),
        ];
        for (key, edit) in cases6 {
            let mut bad = c6.clone();
            edit(&mut bad);
            assert_eq!(key_of(&bad), key, "{bad:?}");
        }
        let mut hard_only = c.clone();
        hard_only.learn_idle_timeout = 0;
        hard_only.learn_hard_timeout = 300;
        hard_only.validate().unwrap();
    }

    #[test]
    fn reads_toml_with_defaults_and_rejects_unknown_keys() {
        let c: PipelineConfig = toml::from_str(
            r#"
            pod_cidr = "10.244.1.0/24"
            gateway_ip = "10.244.1.1"
            gateway_mac = "02:00:0a:f4:01:01"
            tunnel_port = 3
            [[local_pods]]
            port = 10
            ip = "10.244.1.10"
            mac = "0a:58:0a:f4:01:0a"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(c.service_cidr.to_string(), "10.96.0.0/12");
        assert_eq!(c.tunnel_port, Some(3));
        assert_eq!(c.local_pods[0].mac.to_string(), "0a:58:0a:f4:01:0a");
        assert_eq!((c.pod_zone, c.service_zone, c.learn_idle_timeout, c.learn_hard_timeout), (1, 2, 60, 0));
        // Serializes back to the same text form.
        let again: PipelineConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(toml::from_str::<PipelineConfig>("pod_zone = 1\nbogus = 2").is_err());
        let e = toml::from_str::<PipelineConfig>("pod_cidr = \"10.244.1.1/24\"").unwrap_err().to_string();
        assert!(e.contains("host bits"), "{e}");
        assert!(toml::from_str::<PipelineConfig>("gateway_mac = \"02:00\"").is_err());
        // The IPv6 keys and the ARP mode are optional; existing configs keep their meaning.
        assert_eq!((c.pod_cidr6, c.gateway_ip6, c.arp, c.local_pods[0].ipv6), (None, None, ArpMode::Responder, None));
        assert!(!toml::to_string(&c).unwrap().contains("ipv6"));
        let c6: PipelineConfig = toml::from_str(
            r#"
            pod_cidr = "10.244.1.0/24"
            gateway_ip = "10.244.1.1"
            pod_cidr6 = "fd00:10:244:1::/64"
            gateway_ip6 = "fd00:10:244:1::1"
            arp = "controller"
            [[local_pods]]
            port = 10
            ip = "10.244.1.10"
            mac = "0a:58:0a:f4:01:0a"
            ipv6 = "fd00:10:244:1::a"
            "#,
        )
        .unwrap();
        c6.validate().unwrap();
        assert_eq!(c6.arp, ArpMode::Controller);
        assert_eq!(c6.pod_cidr6.unwrap().to_string(), "fd00:10:244:1::/64");
        assert_eq!(c6.local_pods[0].ipv6, Some("fd00:10:244:1::a".parse().unwrap()));
        let again: PipelineConfig = toml::from_str(&toml::to_string(&c6).unwrap()).unwrap();
        assert_eq!(again, c6);
        assert!(toml::from_str::<PipelineConfig>("arp = \"proxy\"").is_err());
        let e = toml::from_str::<PipelineConfig>("pod_cidr6 = \"fd00::1/64\"").unwrap_err().to_string();
        assert!(e.contains("host bits") && e.contains("fd00::/64"), "{e}");
    }

    #[test]
    fn ipv6_cidr_parses_prints_and_contains() {
        let c: Ipv6Cidr = "fd00:10:244:1::/64".parse().unwrap();
        assert_eq!(c.to_string(), "fd00:10:244:1::/64");
        assert!(c.contains("fd00:10:244:1::ffff".parse().unwrap()));
        assert!(!c.contains("fd00:10:244:2::1".parse().unwrap()));
        let all: Ipv6Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()) && all.overlaps(&c));
        for bad in ["fd00::", "fd00::/129", "fd00::1/64", "10.0.0.0/8", "x/8"] {
            assert!(bad.parse::<Ipv6Cidr>().is_err(), "{bad}");
        }
    }
}
