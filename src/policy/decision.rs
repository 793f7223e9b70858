//! The flows and the packet-out a shard sends for one packet-in, from cni-ctl's answer.
//!
//! Two builders of the same flows: the packet path builds them typed ([`plan`], then
//! [`Decided::flows`]: no text, no parsing), and [`decision_texts`] writes them as `ovs-ofctl`
//! text, the readable oracle. Tests require the typed flows to equal the parsed texts and the
//! texts to encode exactly as OVS's own encoder does.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::openflow::action::ct::{Ct, CtZone, Nat, NatRange, CT_COMMIT, NAT_DST, NAT_SRC};
use crate::openflow::action::port::OFPP11_IN_PORT;
use crate::openflow::action::Action;
use crate::openflow::field::{Field, Value};
use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message::packet::NO_BUFFER;
use crate::openflow::message::{Message, PacketOut};
use crate::openflow::oxm::{Match, MatchEntry};
use crate::packet::key::{fmix64, fnv1a64};
use crate::packet::{ConnKey, FlowKey, MacAddr};
use crate::pipeline::cookie::{self, Category};
use crate::pipeline::default::{table, PipelineConfig, POLICY_PRIORITY};

use super::{DstType, Endpoint, NetworkPolicy};

/// Table-0 priority of the per-connection NAT flows (services, source NAT, service denies):
/// inside the pipeline's 100-199 slot, above the classifier's 50/90.
pub const NAT_PRIORITY: u16 = 150;
/// Idle timeout of allowed connections' flows, seconds.
pub const DEFAULT_CONN_IDLE_TIMEOUT: u16 = 300;
/// Idle timeout of deny flows, seconds: the connection does not come back for that long.
pub const DEFAULT_DENY_IDLE_TIMEOUT: u16 = 10;
/// OFPP_TABLE as an OpenFlow 1.3 port: a packet-out runs the packet through the tables from 0.
pub const OFPP_TABLE: u32 = 0xffff_fff9;

/// Where an address lives on the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub port: u32,
    pub mac: MacAddr,
    /// Behind the tunnel port, on the node with this underlay address
    /// (`[[pipeline.tunnel_routes]]`): delivery sets `tun_dst` instead of the Ethernet
    /// destination (the remote node's table 5 writes that), and `mac` is not used.
    pub tun_dst: Option<Ipv4Addr>,
}

/// Where destinations live: local pods have a port and a MAC, other nodes' pods a tunnel
/// destination; anything else (`None`) is reached through the gateway port, with the frame's
/// Ethernet destination kept.
pub trait Locator {
    fn locate(&self, ip: IpAddr) -> Option<Location>;
}

/// Tries `first`, then `second`: e.g. the configured pods, then the tracker.
#[derive(Clone, Copy)]
pub struct Chain<'a> {
    pub first: &'a dyn Locator,
    pub second: &'a dyn Locator,
}

impl Locator for Chain<'_> {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.first.locate(ip).or_else(|| self.second.locate(ip))
    }
}

/// The configured local pods, by their IPv4 or IPv6 address.
impl Locator for PipelineConfig {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.local_pods
            .iter()
            .find(|p| match ip {
                IpAddr::V4(v4) => p.ip == v4,
                IpAddr::V6(v6) => p.ipv6 == Some(v6),
            })
            .map(|p| Location { port: p.port, mac: p.mac, tun_dst: None })
            .or_else(|| self.tunnel_location(ip))
    }
}

impl PipelineConfig {
    /// The tunnel port and the remote node of `ip` when a tunnel route covers it and the
    /// bridge has a tunnel port.
    pub fn tunnel_location(&self, ip: IpAddr) -> Option<Location> {
        let (IpAddr::V4(v4), Some(port)) = (ip, self.tunnel_port) else { return None };
        self.tunnel_routes.iter().find(|r| r.cidr.contains(v4)).map(|r| Location {
            port,
            mac: MacAddr::ZERO,
            tun_dst: Some(r.remote_ip),
        })
    }
}

/// What [`decide`] needs besides the packet and the answer.
pub struct DecisionContext<'a> {
    /// Zones, gateway, service range.
    pub pipeline: &'a PipelineConfig,
    /// The cookie generation of this daemon run.
    pub generation: u16,
    /// Idle timeout of allowed connections' flows (seconds).
    pub conn_idle_timeout: u16,
    /// Idle timeout of deny flows (seconds).
    pub deny_idle_timeout: u16,
    pub locator: &'a dyn Locator,
}

impl<'a> DecisionContext<'a> {
    /// Default timeouts, the pipeline's local pods as the locator.
    pub fn new(pipeline: &'a PipelineConfig, generation: u16) -> DecisionContext<'a> {
        DecisionContext {
            pipeline,
            generation,
            conn_idle_timeout: DEFAULT_CONN_IDLE_TIMEOUT,
            deny_idle_timeout: DEFAULT_DENY_IDLE_TIMEOUT,
            locator: pipeline,
        }
    }
}

/// What was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed, possibly with source NAT.
    Allow,
    /// A service connection, DNATed to `endpoint`.
    Service { endpoint: Endpoint },
    /// Denied (or a service without a usable endpoint): dropped, no packet-out.
    Deny,
}

/// The answer to one packet-in: flows first, then the packet-out, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub flows: Vec<FlowMod>,
    /// Sends the packet back through the tables from table 0 (`in_port` = the packet's port,
    /// `actions=output:TABLE`); `data` is empty: the caller puts the packet-in's bytes in
    /// (OVS never buffers), see [`Decision::messages`].
    pub packet_out: Option<PacketOut>,
}

impl Decision {
    /// The messages to send, in order: the flow mods, then the packet-out carrying `data`.
    pub fn messages(&self, data: &[u8]) -> Vec<Message> {
        let mut v: Vec<Message> = self.flows.iter().cloned().map(Message::FlowMod).collect();
        if let Some(po) = &self.packet_out {
            v.push(Message::PacketOut(PacketOut { data: data.to_vec(), ..po.clone() }));
        }
        v
    }
}

// === the consistent endpoint choice ===

fn ip_bytes(ip: IpAddr) -> [u8; 17] {
    let mut b = [0u8; 17];
    match ip {
        IpAddr::V4(a) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b[0] = 6;
            b[1..].copy_from_slice(&a.octets());
        }
    }
    b
}

/// Weighted rendezvous (highest random weight) hashing: each endpoint scores
/// `weight / -ln(u)` with `u` in (0, 1) a hash of the connection and the endpoint; the highest
/// wins. The choice of a connection only changes when its endpoint goes away (or a new one
/// outscores it): removing another endpoint never moves it. Weight 0 is never chosen; `None`
/// when no endpoint has a weight.
pub fn choose_endpoint<'e>(conn: &ConnKey, endpoints: &'e [Endpoint]) -> Option<&'e Endpoint> {
    choose_endpoint_hashed(conn.hash64(), endpoints)
}

/// [`choose_endpoint`] for a connection whose `hash64` is `c`.
pub fn choose_endpoint_hashed(c: u64, endpoints: &[Endpoint]) -> Option<&Endpoint> {
    let mut best: Option<(f64, &Endpoint)> = None;
    for ep in endpoints.iter().filter(|e| e.weight > 0) {
        let mut b = [0u8; 19];
        b[..17].copy_from_slice(&ip_bytes(ep.ip));
        b[17..].copy_from_slice(&ep.port.to_be_bytes());
        let h = fmix64(c ^ fnv1a64(&b));
        // 53 random bits in (0, 1), never 0 or 1.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(ep.weight) / -u.ln();
        let better = match best {
            None => true,
            Some((s, e)) => score > s || (score == s && (ip_bytes(ep.ip), ep.port) < (ip_bytes(e.ip), e.port)),
        };
        if better {
            best = Some((score, ep));
        }
    }
    best.map(|(_, e)| e)
}

// === flow text ===

/// One direction of a connection: addresses, L4 ports or ICMP type/code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dir {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// TCP/UDP/SCTP ports (None: not matched, e.g. a later fragment).
    ports: Option<(u16, u16)>,
    /// ICMP type and code (None: not matched).
    icmp: Option<(u8, u8)>,
}

/// The reply type of an ICMP query type, if it has one.
fn icmp_reply_type(v6: bool, t: u8) -> Option<u8> {
    if v6 {
        match t {
            128 => Some(129),
            129 => Some(128),
            _ => None,
        }
    } else {
        match t {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        }
    }
}

impl Dir {
    fn of(key: &FlowKey) -> Dir {
        let later = key.ip_frag == crate::packet::key::IpFrag::Later;
        let (ports, icmp) = match key.ip_proto {
            6 | 17 | 132 if !later => (Some((key.l4_src, key.l4_dst)), None),
            1 | 58 if !later => (None, Some((key.icmp_type, key.icmp_code))),
            _ => (None, None),
        };
        Dir { src: key.ip_src, dst: key.ip_dst, proto: key.ip_proto, ports, icmp }
    }

    fn reversed(&self) -> Dir {
        let v6 = self.src.is_ipv6();
        Dir {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            ports: self.ports.map(|(s, d)| (d, s)),
            icmp: self.icmp.and_then(|(t, c)| icmp_reply_type(v6, t).map(|r| (r, c))),
        }
    }

    /// `tcp,nw_src=A,nw_dst=B,tp_src=1,tp_dst=2` (IPv6: `tcp6,ipv6_src=...`).
    fn match_text(&self, out: &mut String) {
        let v6 = self.src.is_ipv6();
        let kw = match (self.proto, v6) {
            (6, false) => "tcp",
            (17, false) => "udp",
            (132, false) => "sctp",
            (1, false) => "icmp",
            (6, true) => "tcp6",
            (17, true) => "udp6",
            (132, true) => "sctp6",
            (58, true) => "icmp6",
            (_, false) => "ip",
            (_, true) => "ipv6",
        };
        out.push_str(kw);
        if kw == "ip" || kw == "ipv6" {
            let _ = write!(out, ",nw_proto={}", self.proto);
        }
        let (s, d) = if v6 { ("ipv6_src", "ipv6_dst") } else { ("nw_src", "nw_dst") };
        let _ = write!(out, ",{s}={},{d}={}", self.src, self.dst);
        if let Some((sp, dp)) = self.ports {
            let _ = write!(out, ",tp_src={sp},tp_dst={dp}");
        }
        if let Some((t, c)) = self.icmp {
            let _ = write!(out, ",icmp_type={t},icmp_code={c}");
        }
    }
}

/// `IP` or `[IP]` (IPv6, needed when a port follows), `:PORT` when `port` is non-zero.
fn nat_addr(ip: IpAddr, port: u16) -> String {
    match (ip, port) {
        (IpAddr::V4(a), 0) => a.to_string(),
        (IpAddr::V4(a), p) => format!("{a}:{p}"),
        (IpAddr::V6(a), 0) => a.to_string(),
        (IpAddr::V6(a), p) => format!("[{a}]:{p}"),
    }
}

/// `set_field:MAC->eth_dst,output:P` towards `loc` (the gateway when None), `IN_PORT` when the
/// output is where the packet came in.
fn deliver(out: &mut String, loc: Option<Location>, gateway_port: u32, in_port: u32) {
    let port = match loc {
        Some(Location { port, tun_dst: Some(remote), .. }) => {
            let _ = write!(out, ",set_field:{remote}->tun_dst");
            port
        }
        Some(l) => {
            let _ = write!(out, ",set_field:{}->eth_dst", l.mac);
            l.port
        }
        None => gateway_port,
    };
    if port == in_port {
        out.push_str(",IN_PORT");
    } else {
        let _ = write!(out, ",output:{port}");
    }
}

struct Builder {
    cookie: u64,
    out: Vec<String>,
}

impl Builder {
    /// `table=T,priority=P,cookie=C,idle_timeout=I,[in_port=N,]MATCH,actions=ACTIONS`.
    fn flow(&mut self, tbl: u8, prio: u16, idle: u16, in_port: Option<u32>, dir: &Dir, actions: &str) {
        let mut s = format!("table={tbl},priority={prio},cookie={:#x},idle_timeout={idle},", self.cookie);
        dir.match_text(&mut s);
        if let Some(p) = in_port {
            let _ = write!(s, ",in_port={p}");
        }
        let _ = write!(s, ",actions={actions}");
        self.out.push(s);
    }
}

/// The flow texts of [`decide`] and its packet-out (without data). See [`decide`].
pub fn decision_texts(
    key: &FlowKey,
    in_port: u32,
    policy: &NetworkPolicy,
    ctx: &DecisionContext<'_>,
) -> (Verdict, Vec<String>, Option<PacketOut>) {
    let conn = key.conn_key();
    let mut b = Builder {
        cookie: cookie::make(ctx.generation, Category::Connection, conn.hash64()),
        out: Vec::with_capacity(2),
    };
    let cfg = ctx.pipeline;
    let (pod_zone, svc_zone, gw) = (cfg.pod_zone, cfg.service_zone, cfg.gateway_port);
    let conn_idle = ctx.conn_idle_timeout;
    let fwd = Dir::of(key);
    let rev = fwd.reversed();
    let to_service = matches!(key.ip_dst, IpAddr::V4(d) if cfg.service_cidr.contains(d));
    let is_service = to_service || matches!(policy.dst_type, DstType::Dnat { .. });
    // Back to the sender: its port and MAC as the packet shows them.
    let sender = Some(Location { port: in_port, mac: key.eth_src, tun_dst: None });

    let endpoint = match &policy.dst_type {
        DstType::Dnat { endpoints } if policy.allowed => choose_endpoint(&conn, endpoints).cloned(),
        _ => None,
    };
    let deny = !policy.allowed || (matches!(policy.dst_type, DstType::Dnat { .. }) && endpoint.is_none());
    if deny {
        let idle = ctx.deny_idle_timeout;
        if is_service {
            b.flow(table::CLASSIFIER, NAT_PRIORITY, idle, Some(in_port), &fwd, "drop");
        } else {
            b.flow(table::POLICY, POLICY_PRIORITY, idle, None, &fwd, "drop");
        }
        return (Verdict::Deny, b.out, None);
    }

    let verdict = match (&policy.dst_type, endpoint) {
        (DstType::Dnat { .. }, Some(ep)) => {
            // Table 0: client -> VIP, DNAT in the service zone, straight to the endpoint; the
            // endpoint's reply un-DNATed (source back to the VIP) straight to the client.
            let loc = ctx.locator.locate(ep.ip);
            let ep_in = loc.map_or(gw, |l| l.port);
            let mut a = format!("ct(commit,zone={svc_zone},nat(dst={}))", nat_addr(ep.ip, ep.port));
            deliver(&mut a, loc, gw, in_port);
            b.flow(table::CLASSIFIER, NAT_PRIORITY, conn_idle, Some(in_port), &fwd, &a);
            let mut reply = rev;
            reply.src = ep.ip;
            if let (Some(p), true) = (reply.ports.as_mut(), ep.port != 0) {
                p.0 = ep.port;
            }
            let mut a = format!("ct(zone={svc_zone},nat)");
            deliver(&mut a, sender, gw, ep_in);
            b.flow(table::CLASSIFIER, NAT_PRIORITY, conn_idle, Some(ep_in), &reply, &a);
            Verdict::Service { endpoint: ep }
        }
        (dst_type, _) => {
            let snat_ip = match dst_type {
                DstType::Snat { ip } => Some(*ip),
                _ => policy.src_port.map(|_| key.ip_src),
            };
            let dst_loc = ctx.locator.locate(key.ip_dst);
            let dst_in = dst_loc.map_or(gw, |l| l.port);
            match snat_ip {
                None => {
                    // Table 3 (reached for ct_state=+new in the pod zone): commit and deliver,
                    // both directions, so whichever comes first (or after a conntrack flush)
                    // passes and is committed.
                    let mut a = format!("ct(commit,zone={pod_zone})");
                    deliver(&mut a, dst_loc, gw, in_port);
                    b.flow(table::POLICY, POLICY_PRIORITY, conn_idle, None, &fwd, &a);
                    let mut a = format!("ct(commit,zone={pod_zone})");
                    deliver(&mut a, sender, gw, dst_in);
                    b.flow(table::POLICY, POLICY_PRIORITY, conn_idle, None, &rev, &a);
                }
                Some(ip) => {
                    // Table 0 (every packet must be translated): SNAT in the service zone, the
                    // reply (to the translated address) un-SNATed.
                    let port = policy.src_port.unwrap_or(0);
                    let mut a = format!("ct(commit,zone={svc_zone},nat(src={}))", nat_addr(ip, port));
                    deliver(&mut a, dst_loc, gw, in_port);
                    b.flow(table::CLASSIFIER, NAT_PRIORITY, conn_idle, Some(in_port), &fwd, &a);
                    let mut reply = rev;
                    reply.dst = ip;
                    if let (Some(p), Some(sp)) = (reply.ports.as_mut(), policy.src_port) {
                        p.1 = sp;
                    }
                    let mut a = format!("ct(zone={svc_zone},nat)");
                    deliver(&mut a, sender, gw, dst_in);
                    b.flow(table::CLASSIFIER, NAT_PRIORITY, conn_idle, Some(dst_in), &reply, &a);
                }
            }
            Verdict::Allow
        }
    };
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions: vec![Action::Output { port: OFPP_TABLE, max_len: 0 }],
        data: Vec::new(),
    };
    (verdict, b.out, Some(po))
}

/// The decision for the packet `key` that came in on `in_port`, given cni-ctl's answer.
///
/// `key` is the packet as received (whatever the hot-SYN guess said: both directions are
/// installed from it). `C` = `generation | Connection (0x03) | ConnKey::hash64() & 2^40-1`, the
/// same on every flow of the connection, so `del-flows cookie=C/-1` removes them all. `PZ`/`SZ`
/// = pod/service zone, `I` = conn idle timeout (300), `D` = deny idle timeout (10). Matches are
/// `tcp|udp|sctp,nw_src,nw_dst,tp_src,tp_dst`, `icmp,...,icmp_type,icmp_code` (reverse: the
/// reply type, 8<->0 ...; other types: no type match), IPv6 with `tcp6`/`ipv6_src`/...;
/// `deliver(X)` = `set_field:MAC->eth_dst,output:PORT` of X if local (the [`Locator`]), else
/// `output:GATEWAY` (eth_dst kept); back to the sender = the packet's `in_port` and `eth_src`.
///
/// - **allowed, direct** (table 3 is reached for `+new-inv+trk` in the pod zone):
///   `table=3,priority=100,cookie=C,idle_timeout=I,tcp,nw_src=A,nw_dst=B,tp_src=a,tp_dst=b,actions=ct(commit,zone=PZ),deliver(B)`
///   and the swapped 5-tuple `...nw_src=B,nw_dst=A,tp_src=b,tp_dst=a,actions=ct(commit,zone=PZ),deliver(A)`.
/// - **service** (`Dnat`, endpoint E:e chosen by [`choose_endpoint`]), table 0 priority 150:
///   `table=0,priority=150,...,tcp,nw_src=A,nw_dst=VIP,tp_src=a,tp_dst=v,in_port=IN,actions=ct(commit,zone=SZ,nat(dst=E:e)),deliver(E)`
///   and `...,tcp,nw_src=E,nw_dst=A,tp_src=e,tp_dst=a,in_port=port(E),actions=ct(zone=SZ,nat),deliver(A)`
///   (the reply leaves with source VIP:v). No usable endpoint: as denied.
/// - **source NAT** (`Snat{ip}` or `src_port`; IP = the Snat ip or A, PORT = src_port), table 0
///   priority 150 (every packet is translated, so not table 3):
///   `...,nw_src=A,nw_dst=B,tp_src=a,tp_dst=b,in_port=IN,actions=ct(commit,zone=SZ,nat(src=IP:PORT)),deliver(B)`
///   and `...,nw_src=B,nw_dst=IP,tp_src=b,tp_dst=PORT,in_port=port(B),actions=ct(zone=SZ,nat),deliver(A)`.
/// - **denied**: one flow, the packet's direction, `idle_timeout=D`, `actions=drop`: table 3
///   priority 100, or table 0 priority 150 with `in_port` for a service (destination in the
///   service range or a `Dnat` answer). No packet-out.
///
/// Allowed: a packet-out with `in_port=IN` and the actions of the flow of the packet's own
/// direction (the first flow): conntrack commit, NAT, delivery. Sending it through the tables
/// again (`output:TABLE`) would also work, but the re-run's conntrack recirculation can race the
/// new flows and come back as a second packet-in; applying the decided actions cannot.
pub fn decide(key: &FlowKey, in_port: u32, policy: &NetworkPolicy, ctx: &DecisionContext<'_>) -> Decision {
    let decided = plan(key, in_port, policy, ctx);
    let flows = decided.flows(ctx.pipeline);
    let packet_out = decided.packet_out_actions(ctx.pipeline).map(|actions| PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions,
        data: Vec::new(),
    });
    Decision { verdict: decided.verdict(), flows, packet_out }
}

// === typed decisions: the packet path ===

/// How a decided connection is carried out; with [`Decided`] it is all that is needed to
/// (re)build the connection's flows, so a shard keeps this instead of the flows themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A drop flow: table 0 with `in_port` for a service, else table 3.
    Deny { service: bool },
    /// Forward and reverse flows in table 3, delivered to `dst` (None: the gateway).
    Direct { dst: Option<Location> },
    /// Table-0 DNAT to `endpoint` (located at `loc`, None: the gateway) and the un-DNAT reply.
    Service { endpoint: Endpoint, loc: Option<Location> },
    /// Table-0 source NAT to `ip` (and `port`), delivered to `dst`; the reply un-SNATed.
    Snat { ip: IpAddr, port: Option<u16>, dst: Option<Location> },
}

/// One decided connection, compact: the packet's direction as received, where it came in, its
/// sender's MAC, the plan, its cookie and the idle timeout of its flows. Everything the flows
/// are built from, so they can be rebuilt on a resync without keeping `FlowMod`s around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    fwd: Dir,
    pub in_port: u32,
    pub eth_src: MacAddr,
    pub plan: Plan,
    /// `ConnKey::hash64` of the connection: its identity on the shards.
    pub conn_hash: u64,
    pub cookie: u64,
    pub idle_timeout: u16,
}

/// Resolves a decision without building anything: the endpoint choice, the locations, the
/// timeouts. [`Decided::flows`] then builds the messages; the text form of the same flows is
/// [`decision_texts`] (the test oracle, checked against OVS's encoder).
pub fn plan(key: &FlowKey, in_port: u32, policy: &NetworkPolicy, ctx: &DecisionContext<'_>) -> Decided {
    plan_hashed(key, key.conn_key().hash64(), in_port, policy, ctx)
}

/// [`plan`] with the connection's `ConnKey::hash64` already known (the shard computed it to
/// place the packet-in): one hash per packet.
pub fn plan_hashed(
    key: &FlowKey,
    conn_hash: u64,
    in_port: u32,
    policy: &NetworkPolicy,
    ctx: &DecisionContext<'_>,
) -> Decided {
    let cookie = cookie::make(ctx.generation, Category::Connection, conn_hash);
    let cfg = ctx.pipeline;
    let fwd = Dir::of(key);
    let to_service = matches!(key.ip_dst, IpAddr::V4(d) if cfg.service_cidr.contains(d));
    let is_service = to_service || matches!(policy.dst_type, DstType::Dnat { .. });
    let endpoint = match &policy.dst_type {
        DstType::Dnat { endpoints } if policy.allowed => choose_endpoint_hashed(conn_hash, endpoints).cloned(),
        _ => None,
    };
    let decided =
        |plan, idle_timeout| Decided { fwd, in_port, eth_src: key.eth_src, plan, conn_hash, cookie, idle_timeout };
    let deny = !policy.allowed || (matches!(policy.dst_type, DstType::Dnat { .. }) && endpoint.is_none());
    if deny {
        return decided(Plan::Deny { service: is_service }, ctx.deny_idle_timeout);
    }
    let plan = match (&policy.dst_type, endpoint) {
        (DstType::Dnat { .. }, Some(ep)) => {
            let loc = ctx.locator.locate(ep.ip);
            Plan::Service { endpoint: ep, loc }
        }
        (dst_type, _) => {
            let snat_ip = match dst_type {
                DstType::Snat { ip } => Some(*ip),
                _ => policy.src_port.map(|_| key.ip_src),
            };
            let dst = ctx.locator.locate(key.ip_dst);
            match snat_ip {
                None => Plan::Direct { dst },
                Some(ip) => Plan::Snat { ip, port: policy.src_port, dst },
            }
        }
    };
    decided(plan, ctx.conn_idle_timeout)
}

/// `proto src:port -> dst:port` (the decided packet's direction).
impl std::fmt::Display for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.fwd.proto {
            6 => "tcp",
            17 => "udp",
            132 => "sctp",
            1 => "icmp",
            58 => "icmpv6",
            _ => "ip",
        };
        let (sp, dp) = self.fwd.ports.unwrap_or((0, 0));
        let ep = |ip: IpAddr, p: u16| std::net::SocketAddr::new(ip, p).to_string();
        write!(f, "{proto} {} -> {}", ep(self.fwd.src, sp), ep(self.fwd.dst, dp))
    }
}

impl Decided {
    pub fn verdict(&self) -> Verdict {
        match &self.plan {
            Plan::Deny { .. } => Verdict::Deny,
            Plan::Service { endpoint, .. } => Verdict::Service { endpoint: endpoint.clone() },
            Plan::Direct { .. } | Plan::Snat { .. } => Verdict::Allow,
        }
    }

    /// Source and destination address of the packet the connection was decided on.
    pub fn addresses(&self) -> (IpAddr, IpAddr) {
        (self.fwd.src, self.fwd.dst)
    }

    /// The connection's flows, typed, in the order of [`decision_texts`] (the packet's own
    /// direction first): byte for byte what the text form encodes to.
    pub fn flows(&self, cfg: &PipelineConfig) -> Vec<FlowMod> {
        let (pz, sz, gw) = (cfg.pod_zone, cfg.service_zone, cfg.gateway_port);
        let sender = Some(Location { port: self.in_port, mac: self.eth_src, tun_dst: None });
        let fwd = &self.fwd;
        let rev = fwd.reversed();
        let mut out = Vec::with_capacity(2);
        match &self.plan {
            Plan::Deny { service: true } => {
                out.push(self.flow(table::CLASSIFIER, NAT_PRIORITY, Some(self.in_port), fwd, Vec::new()))
            }
            Plan::Deny { service: false } => out.push(self.flow(table::POLICY, POLICY_PRIORITY, None, fwd, Vec::new())),
            Plan::Direct { dst } => {
                let dst_in = dst.map_or(gw, |l| l.port);
                let a = with_delivery(vec![ct(pz, None)], *dst, gw, self.in_port);
                out.push(self.flow(table::POLICY, POLICY_PRIORITY, None, fwd, a));
                let a = with_delivery(vec![ct(pz, None)], sender, gw, dst_in);
                out.push(self.flow(table::POLICY, POLICY_PRIORITY, None, &rev, a));
            }
            Plan::Service { endpoint: ep, loc } => {
                let ep_in = loc.map_or(gw, |l| l.port);
                let nat = nat(NAT_DST, ep.ip, ep.port);
                let a = with_delivery(vec![ct(sz, Some(nat))], *loc, gw, self.in_port);
                out.push(self.flow(table::CLASSIFIER, NAT_PRIORITY, Some(self.in_port), fwd, a));
                let mut reply = rev;
                reply.src = ep.ip;
                if let (Some(p), true) = (reply.ports.as_mut(), ep.port != 0) {
                    p.0 = ep.port;
                }
                let a = with_delivery(vec![ct_nat(sz)], sender, gw, ep_in);
                out.push(self.flow(table::CLASSIFIER, NAT_PRIORITY, Some(ep_in), &reply, a));
            }
            Plan::Snat { ip, port, dst } => {
                let dst_in = dst.map_or(gw, |l| l.port);
                let nat = nat(NAT_SRC, *ip, port.unwrap_or(0));
                let a = with_delivery(vec![ct(sz, Some(nat))], *dst, gw, self.in_port);
                out.push(self.flow(table::CLASSIFIER, NAT_PRIORITY, Some(self.in_port), fwd, a));
                let mut reply = rev;
                reply.dst = *ip;
                if let (Some(p), Some(sp)) = (reply.ports.as_mut(), *port) {
                    p.1 = sp;
                }
                let a = with_delivery(vec![ct_nat(sz)], sender, gw, dst_in);
                out.push(self.flow(table::CLASSIFIER, NAT_PRIORITY, Some(dst_in), &reply, a));
            }
        }
        out
    }

    /// The actions the first packet goes on with (those of its own direction's flow), or None
    /// when it is dropped.
    pub fn packet_out_actions(&self, cfg: &PipelineConfig) -> Option<Vec<Action>> {
        if matches!(self.plan, Plan::Deny { .. }) {
            return None;
        }
        self.flows(cfg).first().map(apply_actions)
    }

    /// The flows, then the packet-out carrying `data` (moved, not copied).
    pub fn messages(&self, cfg: &PipelineConfig, data: Vec<u8>) -> Vec<Message> {
        let mut flows = self.flows(cfg);
        let po = if matches!(self.plan, Plan::Deny { .. }) {
            None
        } else {
            flows.first().map(|f| PacketOut {
                buffer_id: NO_BUFFER,
                in_port: self.in_port,
                actions: apply_actions(f),
                data,
            })
        };
        let mut out: Vec<Message> = flows.drain(..).map(Message::FlowMod).collect();
        out.extend(po.map(Message::PacketOut));
        out
    }

    /// The flows, then NXT_RESUME of the paused packet-in `paused` (sent back as received).
    pub fn messages_resume(&self, cfg: &PipelineConfig, paused: crate::openflow::message::PacketIn2) -> Vec<Message> {
        let mut out: Vec<Message> = self.flows(cfg).into_iter().map(Message::FlowMod).collect();
        out.push(Message::Resume(paused));
        out
    }

    fn flow(&self, table: u8, priority: u16, in_port: Option<u32>, dir: &Dir, actions: Vec<Action>) -> FlowMod {
        let mut fm = FlowMod::new(FlowModCommand::Add);
        fm.table_id = table;
        fm.priority = priority;
        fm.cookie = self.cookie;
        fm.idle_timeout = self.idle_timeout;
        fm.r#match = dir.into_match(in_port);
        if !actions.is_empty() {
            fm.instructions = vec![crate::openflow::instruction::Instruction::ApplyActions(actions)];
        }
        fm
    }
}

/// The apply-actions of a flow, flattened.
fn apply_actions(f: &FlowMod) -> Vec<Action> {
    let actions: Vec<Action> = f
        .instructions
        .iter()
        .filter_map(|i| match i {
            crate::openflow::instruction::Instruction::ApplyActions(a) => Some(a.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    if actions.is_empty() {
        vec![Action::Output { port: OFPP_TABLE, max_len: 0 }]
    } else {
        actions
    }
}

/// `ct(commit,zone=Z[,nat(...)])`.
fn ct(zone: u16, nat: Option<Nat>) -> Action {
    Action::Ct(Ct {
        flags: CT_COMMIT,
        zone: CtZone::Immediate(zone),
        actions: nat.map(Action::Nat).into_iter().collect(),
        ..Ct::default()
    })
}

/// `ct(zone=Z,nat)`: un-NAT the reply.
fn ct_nat(zone: u16) -> Action {
    Action::Ct(Ct { zone: CtZone::Immediate(zone), actions: vec![Action::Nat(Nat::default())], ..Ct::default() })
}

/// `nat(src|dst=IP[:PORT])`.
fn nat(kind: u16, ip: IpAddr, port: u16) -> Nat {
    let range = match ip {
        IpAddr::V4(a) => NatRange::V4 { min: a, max: None },
        IpAddr::V6(a) => NatRange::V6 { min: a, max: None },
    };
    Nat { flags: kind, range, ports: (port != 0).then_some((port, None)) }
}

/// Appends [`deliver`]'s actions: `set_field:MAC->eth_dst,output:P` (or `IN_PORT`).
fn with_delivery(mut actions: Vec<Action>, loc: Option<Location>, gateway_port: u32, in_port: u32) -> Vec<Action> {
    let port = match loc {
        Some(Location { port, tun_dst: Some(remote), .. }) => {
            actions.push(Action::SetField {
                field: Field::TUN_DST,
                value: Value::from_u128(u128::from(u32::from(remote)), 4),
            });
            port
        }
        Some(l) => {
            actions.push(Action::SetField { field: Field::ETH_DST, value: Value::from_u128(mac_u128(l.mac), 6) });
            l.port
        }
        None => gateway_port,
    };
    let out = if port == in_port { OFPP11_IN_PORT } else { port };
    actions.push(Action::Output { port: out, max_len: 0 });
    actions
}

fn mac_u128(m: MacAddr) -> u128 {
    m.0.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

fn ip_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Dir {
    /// The match [`Dir::match_text`] writes, built directly in OVS's wire order (in_port,
    /// eth_type, addresses, ip_proto, ports or ICMP type/code): no search, one allocation.
    fn into_match(self, in_port: Option<u32>) -> Match {
        let v6 = self.src.is_ipv6();
        let mut entries = Vec::with_capacity(8);
        let mut put = |field: Field, v: u128, len: usize| {
            entries.push(MatchEntry { field, value: Value::from_u128(v, len), mask: None });
        };
        if let Some(p) = in_port {
            put(Field::IN_PORT_OXM, u128::from(p), 4);
        }
        put(Field::ETH_TYPE, if v6 { 0x86dd } else { 0x0800 }, 2);
        let (s, d, n) = if v6 { (Field::IPV6_SRC, Field::IPV6_DST, 16) } else { (Field::IPV4_SRC, Field::IPV4_DST, 4) };
        put(s, ip_u128(self.src), n);
        put(d, ip_u128(self.dst), n);
        put(Field::IP_PROTO, u128::from(self.proto), 1);
        if let Some((sp, dp)) = self.ports {
            let (fs, fd) = match self.proto {
                17 => (Field::UDP_SRC, Field::UDP_DST),
                132 => (Field::SCTP_SRC, Field::SCTP_DST),
                _ => (Field::TCP_SRC, Field::TCP_DST),
            };
            put(fs, u128::from(sp), 2);
            put(fd, u128::from(dp), 2);
        }
        if let Some((t, c)) = self.icmp {
            let (ft, fc) =
                if v6 { (Field::ICMPV6_TYPE, Field::ICMPV6_CODE) } else { (Field::ICMPV4_TYPE, Field::ICMPV4_CODE) };
            put(ft, u128::from(t), 1);
            put(fc, u128::from(c), 1);
        }
        Match { entries, unknown: Vec::new() }
    }
}
