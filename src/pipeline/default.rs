//! The default pipeline of a node: the fixed tables every bridge gets before any policy flow,
//! built from [`PipelineConfig`]. `docs/pipeline.md` describes each table, register and
//! conntrack zone for operators, with the flows of its example configuration (checked by
//! `tests/pipeline_ovs.rs` against a real Open vSwitch).
//!
//! ```text
//!  table 0 classifier --arp--------------------------------------------> 20 ARP (responder / NORMAL or packet-in)
//!     | ICMPv6 neighbour discovery from pods / the gateway -> NORMAL (with pod_cidr6)
//!     | ip from uplink/tunnel (reg0[0]/reg0[1]) -> 4 --tcp/udp/sctp--> 15 learn --> 5 forwarding
//!     |                                              \--other ip------------------> 5
//!     | ip to service_cidr (first packet) -> packet-in dispatch (DNAT flows come from the policy, 100-199)
//!     | ip from a local pod (reg0[2]) -> 6 learned return flows --hit--> out of uplink/tunnel
//!     |                                   \--miss--> 1
//!     | ip from the gateway port (reg0[3]) --------------------------------> 1
//!  table 1 ct(zone=pod_zone) -> 2 verdicts: +est/+rel -> 5, +inv drop, +new -> 3 policy
//!  table 3 policy (per-connection flows, priority 100, from the policy) miss -> packet-in dispatch
//!  table 5 forwarding: local pods by nw_dst (eth_dst rewritten), gateway, pod traffic out via the gateway
//! ```
//!
//! Every flow carries the cookie `generation | Pipeline | object`, where the object id is
//! `table << 32 | rule << 24 | sub` (`sub` = an OpenFlow port or an IP protocol number), stable
//! across runs so that a resync can tell flows apart. Learned flows get `rule` [`LEARNED_RULE`]
//! in table 6. [`generate`] also returns the packet-in dispatch flows (table 0 priority 0 and
//! table 250, category Dispatch), which the pipeline's table misses lead to.
//!
//! With `pod_cidr6` every `ip` flow (but the service one) has an `ipv6` twin (`ipv6_src`/`ipv6_dst`,
//! `tcp6`/`udp6`/`sctp6`, IPv6 learn specs) under its own rule byte, so the IPv4 flows and
//! cookies do not change; `arp = "controller"` replaces table 20's `arp -> NORMAL` by
//! `arp,arp_op=1` -> packet-in dispatch and `arp,arp_op=2` -> `NORMAL`.

mod config;

pub use config::{
    ArpMode, FirstPacket, Ipv4Cidr, Ipv6Cidr, LocalPod, PacketInLimits, PacketInMeters, PipelineConfig, PipelineError,
    TunnelRoute, MAX_PORT,
};

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::pipeline::dispatch::Mode;

use super::cookie::{self, Category};
use super::dispatch;
use super::meters;

/// The tables of the default pipeline.
pub mod table {
    /// Classifier: by EtherType and ingress port.
    pub const CLASSIFIER: u8 = 0;
    /// Conntrack of pod traffic: `ct(table=2,zone=pod_zone)`.
    pub const CONNTRACK: u8 = 1;
    /// Conntrack verdicts.
    pub const CT_VERDICT: u8 = 2;
    /// Per-connection policy flows (from the policy); miss: packet-in.
    pub const POLICY: u8 = 3;
    /// Traffic from the uplink or the tunnel.
    pub const FROM_UPLINK: u8 = 4;
    /// L3 forwarding to pods, the gateway, or drop.
    pub const FORWARD: u8 = 5;
    /// Learned return flows (written by table 15).
    pub const LEARNED: u8 = 6;
    /// Learns the return flow of uplink/tunnel traffic into table 6.
    pub const LEARN: u8 = 15;
    /// ARP: responder for the gateway address, NORMAL for the rest.
    pub const ARP: u8 = 20;
}

/// reg0 bits set by the classifier: where the packet came from.
pub mod reg0 {
    /// `reg0[0]`: from the uplink port.
    pub const FROM_UPLINK: u32 = 1 << 0;
    /// `reg0[1]`: from the tunnel port.
    pub const FROM_TUNNEL: u32 = 1 << 1;
    /// `reg0[2]`: from a local pod (source address checked).
    pub const FROM_POD: u32 = 1 << 2;
    /// `reg0[3]`: from the gateway port (the host).
    pub const FROM_GATEWAY: u32 = 1 << 3;
    /// `reg0[5]`: from a learning port (zero-config: a port with no pod metadata, source not
    /// checked; the Tracker learns who is behind it).
    pub const FROM_LEARNING: u32 = 1 << 5;
}

/// Table-0 priorities the policy's per-connection service (DNAT) flows use.
pub const SERVICE_PRIORITIES: std::ops::RangeInclusive<u16> = 100..=199;
/// Priority of the policy's per-connection flows in table 3.
pub const POLICY_PRIORITY: u16 = 100;
/// Priority of learned return flows in table 6.
pub const LEARNED_PRIORITY: u16 = 100;
/// The `rule` byte of learned flows' object ids (table 6): `6 << 32 | LEARNED_RULE << 24 | proto`.
pub const LEARNED_RULE: u8 = 0x80;

/// ICMPv6 neighbour discovery types switched by `NORMAL` (solicitation, advertisement), with
/// their table-0 rule byte.
const ND_TYPES: [(u8, u8); 2] = [(135, 8), (136, 9)];

/// The IPv6 match keyword of an IP protocol of [`LEARNED_PROTOCOLS`].
fn kw6(kw: &str) -> String {
    format!("{kw}6")
}

/// IP protocols that get learned return flows, with their match keyword and learn fields.
const LEARNED_PROTOCOLS: [(u8, &str, &str, &str); 3] = [
    (6, "tcp", "NXM_OF_TCP_SRC", "NXM_OF_TCP_DST"),
    (17, "udp", "NXM_OF_UDP_SRC", "NXM_OF_UDP_DST"),
    // There is no NXM_OF_ field for SCTP ports.
    (132, "sctp", "OXM_OF_SCTP_SRC", "OXM_OF_SCTP_DST"),
];

/// The object id of a pipeline flow: `table << 32 | rule << 24 | sub` (sub: 24 bits).
pub const fn object(table: u8, rule: u8, sub: u32) -> u64 {
    ((table as u64) << 32) | ((rule as u64) << 24) | (sub as u64 & 0xff_ffff)
}

/// The cookie learned return flows of IP protocol `proto` get (category Learned, so a resync never
/// deletes them; table 6, rule [`LEARNED_RULE`]): `cookie=C/-1` in `dump-flows` selects them.
pub const fn learned_cookie(generation: u16, proto: u8) -> u64 {
    cookie::make(generation, Category::Learned, object(table::LEARNED, LEARNED_RULE, proto as u32))
}

/// Accumulates flow texts in `ovs-ofctl` syntax.
struct Texts {
    generation: u16,
    out: Vec<String>,
}

impl Texts {
    fn add(&mut self, table: u8, priority: u16, rule: u8, sub: u32, matches: &str, actions: &str) {
        let c = cookie::make(self.generation, Category::Pipeline, object(table, rule, sub));
        let m = if matches.is_empty() { String::new() } else { format!(",{matches}") };
        self.out.push(format!("table={table},priority={priority},cookie={c:#x}{m},actions={actions}"));
    }
}

/// reg0 bit 4: the packet was paused at the controller and resumed (`first_packet = "resume"`).
pub const RESUMED: u32 = 0x10;

/// The actions of the dispatch table-miss flow (multipath + resubmit in fan-out mode,
/// `controller` in single mode), reused by the pipeline's own packet-in verdicts.
fn dispatch_actions(mode: Mode, shards: usize, generation: u16, pause: bool) -> String {
    dispatch::flow_texts_with(mode, shards, generation, pause)
        .first()
        .and_then(|t| t.split_once("actions=").map(|(_, a)| a.to_string()))
        .unwrap_or_else(|| "controller".to_string())
}

fn check_shards(shards: usize) -> Result<(), PipelineError> {
    if shards == 0 || shards > crate::pipeline::dispatch::MAX_SHARDS {
        return Err(PipelineError::Invalid {
            key: "shards.count".into(),
            reason: format!(
                "{shards} shards: the packet-in dispatch needs 1-{}",
                crate::pipeline::dispatch::MAX_SHARDS
            ),
        });
    }
    Ok(())
}

/// The pipeline flows (without the dispatch flows) as text, in `ovs-ofctl` syntax, ordered by
/// table then priority. Does not validate `cfg` (see [`generate`]).
pub fn pipeline_texts(cfg: &PipelineConfig, mode: Mode, shards: usize, generation: u16) -> Vec<String> {
    use table::*;
    let mut t = Texts { generation, out: Vec::new() };
    let to_controller = dispatch_actions(mode, shards, generation, cfg.first_packet == FirstPacket::Resume);
    // Each packet-in class through its own meter (pipeline::meters), when enabled.
    let metered = |id: u32| match meters::meter_of(&cfg.meters, id) {
        Some(m) => format!("meter:{m},{to_controller}"),
        None => to_controller.clone(),
    };
    let new_conn = metered(meters::NEW_CONNECTIONS);
    let gw_mac = cfg.gateway_mac;
    let gw_ip = cfg.gateway_ip;
    let v6 = cfg.pod_cidr6.is_some();
    // Zero-config: no addresses, and port 0 is "no such port" (see PipelineConfig::zero_config).
    let zero = cfg.zero_config;
    let has_uplink = !zero || cfg.uplink_port != 0;
    let has_gateway = !zero || cfg.gateway_port != 0;

    // --- table 0: classifier ---
    t.add(CLASSIFIER, 300, 1, 0, "arp", &format!("goto_table:{ARP}"));
    if has_uplink {
        t.add(
            CLASSIFIER,
            200,
            2,
            cfg.uplink_port,
            &format!("ip,in_port={}", cfg.uplink_port),
            &format!("load:0x1->NXM_NX_REG0[0],goto_table:{FROM_UPLINK}"),
        );
    }
    if let Some(tun) = cfg.tunnel_port {
        t.add(
            CLASSIFIER,
            200,
            3,
            tun,
            &format!("ip,in_port={tun}"),
            &format!("load:0x1->NXM_NX_REG0[1],goto_table:{FROM_UPLINK}"),
        );
    }
    // 100-199: the policy's per-connection service (DNAT) flows. Below them, the first packet
    // of a service connection goes to the controller.
    let resume = cfg.first_packet == FirstPacket::Resume;
    if zero {
        // No service range: nothing to send to the controller before conntrack.
    } else if resume {
        // Resume mode: after NXT_RESUME the packet looks table 0 up again (the service flows
        // are there now); one that was already asked about is dropped, never asked again.
        t.add(CLASSIFIER, 91, 30, 0, &format!("ip,reg0={RESUMED:#x}/{RESUMED:#x},nw_dst={}", cfg.service_cidr), "drop");
        t.add(
            CLASSIFIER,
            90,
            4,
            0,
            &format!("ip,nw_dst={}", cfg.service_cidr),
            &format!("{new_conn},resubmit(,{CLASSIFIER})"),
        );
    } else {
        t.add(CLASSIFIER, 90, 4, 0, &format!("ip,nw_dst={}", cfg.service_cidr), &new_conn);
    }
    for p in &cfg.local_pods {
        t.add(
            CLASSIFIER,
            50,
            5,
            p.port,
            &format!("ip,in_port={},dl_src={},nw_src={}", p.port, p.mac, p.ip),
            &format!("load:0x1->NXM_NX_REG0[2],goto_table:{LEARNED}"),
        );
        // Anything else IPv4 from the pod's port is spoofed.
        t.add(CLASSIFIER, 40, 6, p.port, &format!("ip,in_port={}", p.port), "drop");
    }
    if has_gateway {
        t.add(
            CLASSIFIER,
            50,
            7,
            cfg.gateway_port,
            &format!("ip,in_port={}", cfg.gateway_port),
            &format!("load:0x1->NXM_NX_REG0[3],goto_table:{CONNTRACK}"),
        );
    }
    if zero {
        // Learning ports: IP from any other port goes through conntrack and the policy; the
        // source is not checked (nobody said who is behind the port).
        t.add(CLASSIFIER, 10, 15, 0, "ip", &format!("load:0x1->NXM_NX_REG0[5],goto_table:{CONNTRACK}"));
    }
    if v6 {
        // Neighbour discovery from pods and the gateway is switched, never tracked.
        let nd_ports = cfg.local_pods.iter().map(|p| p.port).chain([cfg.gateway_port]);
        for port in nd_ports {
            for (ty, rule) in ND_TYPES {
                t.add(CLASSIFIER, 300, rule, port, &format!("icmp6,in_port={port},icmp_type={ty}"), "NORMAL");
            }
        }
        t.add(
            CLASSIFIER,
            200,
            10,
            cfg.uplink_port,
            &format!("ipv6,in_port={}", cfg.uplink_port),
            &format!("load:0x1->NXM_NX_REG0[0],goto_table:{FROM_UPLINK}"),
        );
        if let Some(tun) = cfg.tunnel_port {
            t.add(
                CLASSIFIER,
                200,
                11,
                tun,
                &format!("ipv6,in_port={tun}"),
                &format!("load:0x1->NXM_NX_REG0[1],goto_table:{FROM_UPLINK}"),
            );
        }
        for p in &cfg.local_pods {
            if let Some(ip6) = p.ipv6 {
                t.add(
                    CLASSIFIER,
                    50,
                    12,
                    p.port,
                    &format!("ipv6,in_port={},dl_src={},ipv6_src={ip6}", p.port, p.mac),
                    &format!("load:0x1->NXM_NX_REG0[2],goto_table:{LEARNED}"),
                );
            }
            // Any other IPv6 from the pod's port (a pod without IPv6 too) is spoofed.
            t.add(CLASSIFIER, 40, 13, p.port, &format!("ipv6,in_port={}", p.port), "drop");
        }
        t.add(
            CLASSIFIER,
            50,
            14,
            cfg.gateway_port,
            &format!("ipv6,in_port={}", cfg.gateway_port),
            &format!("load:0x1->NXM_NX_REG0[3],goto_table:{CONNTRACK}"),
        );
    }

    // --- table 1: conntrack ---
    t.add(CONNTRACK, 100, 1, 0, "ip", &format!("ct(table={CT_VERDICT},zone={})", cfg.pod_zone));
    if v6 {
        t.add(CONNTRACK, 100, 2, 0, "ipv6", &format!("ct(table={CT_VERDICT},zone={})", cfg.pod_zone));
    }
    t.add(CONNTRACK, 0, 0, 0, "", "drop");

    // --- table 2: conntrack verdicts ---
    t.add(CT_VERDICT, 200, 1, 0, "ct_state=+inv+trk", "drop");
    // Zero-config: learned hosts have no delivery flow in table 5, so established and related
    // packets go through their connection's own flows in table 3 (a miss asks again).
    let after_ct = if zero { POLICY } else { FORWARD };
    t.add(CT_VERDICT, 150, 2, 0, "ct_state=+est-inv+trk", &format!("goto_table:{after_ct}"));
    t.add(CT_VERDICT, 140, 3, 0, "ct_state=+rel-inv+trk", &format!("goto_table:{after_ct}"));
    t.add(CT_VERDICT, 100, 4, 0, "ct_state=+new-inv+trk", &format!("goto_table:{POLICY}"));
    t.add(CT_VERDICT, 0, 0, 0, "", "drop");

    // --- table 3: per-connection policy (flows from the policy at POLICY_PRIORITY) ---
    if resume {
        t.add(POLICY, 1, 1, 0, &format!("reg0={RESUMED:#x}/{RESUMED:#x}"), "drop");
        t.add(POLICY, 0, 0, 0, "", &format!("{new_conn},resubmit(,{POLICY})"));
    } else {
        t.add(POLICY, 0, 0, 0, "", &new_conn);
    }

    // --- table 4: from uplink / tunnel ---
    for (proto, kw, _, _) in LEARNED_PROTOCOLS {
        t.add(FROM_UPLINK, 100, 1, u32::from(proto), kw, &format!("goto_table:{LEARN}"));
    }
    t.add(FROM_UPLINK, 50, 2, 0, "ip", &format!("goto_table:{FORWARD}"));
    if v6 {
        for (proto, kw, _, _) in LEARNED_PROTOCOLS {
            t.add(FROM_UPLINK, 100, 3, u32::from(proto), &kw6(kw), &format!("goto_table:{LEARN}"));
        }
        t.add(FROM_UPLINK, 50, 4, 0, "ipv6", &format!("goto_table:{FORWARD}"));
    }
    t.add(FROM_UPLINK, 0, 0, 0, "", "drop");

    // --- table 5: forwarding ---
    for p in &cfg.local_pods {
        t.add(
            FORWARD,
            100,
            1,
            p.port,
            &format!("ip,nw_dst={}", p.ip),
            &format!("set_field:{}->eth_dst,output:{}", p.mac, p.port),
        );
    }
    if !zero {
        t.add(
            FORWARD,
            90,
            2,
            cfg.gateway_port,
            &format!("ip,nw_dst={gw_ip}"),
            &format!("set_field:{gw_mac}->eth_dst,output:{}", cfg.gateway_port),
        );
        t.add(FORWARD, 80, 3, 0, &format!("ip,nw_dst={}", cfg.pod_cidr), "drop");
    }
    // Other nodes' pods: out of the tunnel to their node (rule 9, one per route). For traffic
    // that reaches table 5 without a decided flow of its own (established connections after
    // conntrack); decided flows set the same tun_dst themselves (policy::Locator).
    if let Some(tunnel) = cfg.tunnel_port.filter(|_| !zero) {
        for (i, r) in cfg.tunnel_routes.iter().enumerate() {
            t.add(
                FORWARD,
                85,
                9,
                i as u32,
                &format!("ip,nw_dst={}", r.cidr),
                &format!("set_field:{}->tun_dst,output:{tunnel}", r.remote_ip),
            );
        }
    }
    if has_gateway {
        t.add(
            FORWARD,
            10,
            4,
            cfg.gateway_port,
            &format!("ip,reg0={:#x}/{:#x}", reg0::FROM_POD, reg0::FROM_POD),
            &format!("output:{}", cfg.gateway_port),
        );
    }
    if let Some(cidr6) = cfg.pod_cidr6 {
        for p in &cfg.local_pods {
            if let Some(ip6) = p.ipv6 {
                t.add(
                    FORWARD,
                    100,
                    5,
                    p.port,
                    &format!("ipv6,ipv6_dst={ip6}"),
                    &format!("set_field:{}->eth_dst,output:{}", p.mac, p.port),
                );
            }
        }
        if let Some(gw6) = cfg.gateway_ip6 {
            t.add(
                FORWARD,
                90,
                6,
                cfg.gateway_port,
                &format!("ipv6,ipv6_dst={gw6}"),
                &format!("set_field:{gw_mac}->eth_dst,output:{}", cfg.gateway_port),
            );
        }
        t.add(FORWARD, 80, 7, 0, &format!("ipv6,ipv6_dst={cidr6}"), "drop");
        t.add(
            FORWARD,
            10,
            8,
            cfg.gateway_port,
            &format!("ipv6,reg0={:#x}/{:#x}", reg0::FROM_POD, reg0::FROM_POD),
            &format!("output:{}", cfg.gateway_port),
        );
    }
    t.add(FORWARD, 0, 0, 0, "", "drop");

    // --- table 6: learned return flows (written by table 15); miss: the normal path ---
    t.add(LEARNED, 0, 0, 0, "", &format!("resubmit(,{CONNTRACK})"));

    // --- table 15: learn the return flow, then deliver ---
    let mut timeouts = format!("idle_timeout={}", cfg.learn_idle_timeout);
    if cfg.learn_hard_timeout != 0 {
        timeouts.push_str(&format!(",hard_timeout={}", cfg.learn_hard_timeout));
    }
    for (proto, kw, src, dst) in LEARNED_PROTOCOLS {
        let learn = format!(
            "learn(table={LEARNED},{timeouts},priority={LEARNED_PRIORITY},cookie={:#x},eth_type=0x800,nw_proto={proto},\
             NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],{src}[]={dst}[],{dst}[]={src}[],\
             load:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[],\
             load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],output:NXM_OF_IN_PORT[])",
            learned_cookie(generation, proto)
        );
        t.add(LEARN, 100, 1, u32::from(proto), kw, &format!("{learn},resubmit(,{FORWARD})"));
    }
    if v6 {
        for (proto, kw, src, dst) in LEARNED_PROTOCOLS {
            let learn = format!(
                "learn(table={LEARNED},{timeouts},priority={LEARNED_PRIORITY},cookie={:#x},eth_type=0x86dd,nw_proto={proto},\
                 NXM_NX_IPV6_SRC[]=NXM_NX_IPV6_DST[],NXM_NX_IPV6_DST[]=NXM_NX_IPV6_SRC[],{src}[]={dst}[],{dst}[]={src}[],\
                 load:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[],\
                 load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],output:NXM_OF_IN_PORT[])",
                learned_cookie(generation, proto)
            );
            t.add(LEARN, 100, 2, u32::from(proto), &kw6(kw), &format!("{learn},resubmit(,{FORWARD})"));
        }
    }
    t.add(LEARN, 0, 0, 0, "", "drop");

    // --- table 20: ARP ---
    if !zero {
        t.add(
            ARP,
            100,
            1,
            0,
            &format!("arp,arp_tpa={gw_ip},arp_op=1"),
            &format!(
                "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{gw_mac}->eth_src,load:0x2->NXM_OF_ARP_OP[],\
                 move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{gw_mac}->arp_sha,\
                 move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{gw_ip}->arp_spa,IN_PORT"
            ),
        );
    }
    match cfg.arp {
        _ if zero => {
            // Both ways to the controller: the Tracker learns every host from its ARP (a reply
            // switched by NORMAL would leave the replier unknown), and the controller answers
            // or floods requests and forwards (floods) replies.
            t.add(ARP, 50, 3, 0, "arp,arp_op=1", &metered(meters::ARP));
            t.add(ARP, 10, 5, 0, "arp,arp_op=2", &metered(meters::ARP));
        }
        ArpMode::Responder => t.add(ARP, 10, 2, 0, "arp", "NORMAL"),
        ArpMode::Controller => {
            // Other requests: the packet-in path answers (or floods); replies are switched.
            t.add(ARP, 50, 3, 0, "arp,arp_op=1", &metered(meters::ARP));
            t.add(ARP, 10, 4, 0, "arp,arp_op=2", "NORMAL");
        }
    }
    t.add(ARP, 0, 0, 0, "", "drop");

    t.out
}

/// Every flow of the bridge in `mode`, as text in `ovs-ofctl` syntax: the pipeline, then the
/// packet-in dispatch flows. Does not validate (see [`generate_mode`]).
pub fn flow_texts_mode(cfg: &PipelineConfig, mode: Mode, shards: usize, generation: u16) -> Vec<String> {
    let mut v = pipeline_texts(cfg, mode, shards, generation);
    let pause = cfg.first_packet == FirstPacket::Resume;
    let miss_meter = meters::meter_of(&cfg.meters, meters::OTHER);
    v.extend(dispatch::flow_texts_metered(mode, shards, generation, pause, miss_meter));
    v
}

/// The packet-in meters the flows of [`flow_texts_mode`] name, in `ovs-ofctl add-meter`
/// syntax: add them before the flows (OVS refuses a flow whose meter does not exist).
pub fn meter_texts(cfg: &PipelineConfig) -> Vec<String> {
    meters::meter_texts(&cfg.meters)
}

/// [`flow_texts_mode`] in fan-out mode (the default).
pub fn flow_texts(cfg: &PipelineConfig, shards: usize, generation: u16) -> Vec<String> {
    flow_texts_mode(cfg, Mode::Fanout, shards, generation)
}

/// Validates `cfg` and returns every flow of the bridge in `mode` (ADDs: installing them again
/// is harmless), pipeline first, then the packet-in dispatch flows.
pub fn generate_mode(
    cfg: &PipelineConfig,
    mode: Mode,
    shards: usize,
    generation: u16,
) -> Result<Vec<FlowMod>, PipelineError> {
    cfg.validate()?;
    check_shards(shards)?;
    flow_texts_mode(cfg, mode, shards, generation)
        .into_iter()
        .map(|t| {
            FlowMod::parse(&t, FlowModCommand::Add).map_err(|e| PipelineError::Flow { reason: e.to_string(), flow: t })
        })
        .collect()
}

/// [`generate_mode`] in fan-out mode (the default): shard *i*'s connection is `controller(id=i+1)`.
pub fn generate(cfg: &PipelineConfig, shards: usize, generation: u16) -> Result<Vec<FlowMod>, PipelineError> {
    generate_mode(cfg, Mode::Fanout, shards, generation)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::oracle;
    use crate::packet::MacAddr;

    fn sample() -> PipelineConfig {
        PipelineConfig {
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway_ip: Ipv4Addr::new(10, 244, 1, 1),
            gateway_mac: "02:00:0a:f4:01:01".parse().unwrap(),
            gateway_port: 3,
            uplink_port: 1,
            tunnel_port: Some(5),
            local_pods: vec![
                LocalPod {
                    port: 2,
                    ip: Ipv4Addr::new(10, 244, 1, 2),
                    mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 2]),
                    ipv6: None,
                },
                LocalPod {
                    port: 4,
                    ip: Ipv4Addr::new(10, 244, 1, 4),
                    mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]),
                    ipv6: None,
                },
            ],
            learn_hard_timeout: 600,
            ..PipelineConfig::default()
        }
    }

    /// [`sample`] with IPv6 (pod A only) and, if `controller`, ARP controller mode.
    fn sample6(controller: bool) -> PipelineConfig {
        let mut c = sample();
        c.pod_cidr6 = Some("fd00:10:244:1::/64".parse().unwrap());
        c.gateway_ip6 = Some("fd00:10:244:1::1".parse().unwrap());
        c.local_pods[0].ipv6 = Some("fd00:10:244:1::2".parse().unwrap());
        if controller {
            c.arp = ArpMode::Controller;
        }
        c
    }

    #[test]
    fn ipv6_and_arp_controller_flows() {
        let v4 = flow_texts(&sample(), 2, 1);
        let v6 = flow_texts(&sample6(false), 2, 1);
        // IPv6 only adds flows.
        assert!(v4.iter().all(|t| v6.contains(t)));
        let added: Vec<&String> = v6.iter().filter(|t| !v4.contains(t)).collect();
        for want in [
            "icmp6,in_port=2,icmp_type=135,actions=NORMAL",
            "icmp6,in_port=3,icmp_type=136,actions=NORMAL",
            "ipv6,in_port=2,dl_src=0a:58:0a:f4:01:02,ipv6_src=fd00:10:244:1::2,actions=load:0x1->NXM_NX_REG0[2],goto_table:6",
            "table=0,priority=40,cookie=0x102000d000004,ipv6,in_port=4,actions=drop",
            "ipv6,actions=ct(table=2,zone=1)",
            "table=5,priority=100,cookie=0x1020505000002,ipv6,ipv6_dst=fd00:10:244:1::2,",
            "ipv6,ipv6_dst=fd00:10:244:1::/64,actions=drop",
            "eth_type=0x86dd,nw_proto=6,NXM_NX_IPV6_SRC[]=NXM_NX_IPV6_DST[],NXM_NX_IPV6_DST[]=NXM_NX_IPV6_SRC[]",
        ] {
            assert!(added.iter().any(|t| t.contains(want)), "no {want:?} in {added:#?}");
        }
        // Pod B has no IPv6: no table-0 accept or table-5 delivery for it.
        assert!(!added.iter().any(|t| t.contains("priority=50") && t.contains("in_port=4")), "{added:#?}");
        // ARP controller mode: requests to the dispatch, replies switched, the responder kept.
        let c = flow_texts(&sample6(true), 2, 1);
        let arp: Vec<&String> = c.iter().filter(|t| t.starts_with("table=20,")).collect();
        assert_eq!(arp.len(), 4, "{arp:#?}");
        assert!(arp[0].contains("arp_tpa=10.244.1.1,arp_op=1"));
        assert!(arp[1].contains("priority=50,") && arp[1].contains("arp,arp_op=1,actions=meter:2,multipath("));
        assert!(arp[1].ends_with("resubmit(,250)"));
        assert!(arp[2].contains("priority=10,") && arp[2].ends_with("arp,arp_op=2,actions=NORMAL"));
    }

    #[test]
    fn each_controller_class_goes_through_its_meter() {
        let count = |cfg: &PipelineConfig, m: &str| flow_texts(cfg, 2, 1).iter().filter(|t| t.contains(m)).count();
        let on = sample6(true);
        let texts = flow_texts(&on, 2, 1);
        let metered: Vec<&String> = texts.iter().filter(|t| t.contains("meter:")).collect();
        assert_eq!(metered.len(), 4, "{metered:#?}");
        assert!(metered.iter().all(|t| t.contains("actions=meter:") && t.contains("multipath(")), "{metered:#?}");
        assert_eq!((count(&on, "meter:1,"), count(&on, "meter:2,"), count(&on, "meter:3,")), (2, 1, 1));
        // The table-0 miss (dispatch) carries meter 3; table 250 none.
        assert!(texts.iter().any(|t| t.starts_with("table=0,priority=0,") && t.contains("actions=meter:3,")));
        assert!(texts.iter().filter(|t| t.starts_with("table=250,")).all(|t| !t.contains("meter:")));
        // A rate of 0 removes that class's meter; all 0, no meter at all.
        let no_arp = PipelineConfig { meters: PacketInMeters { arp_pps: 0, ..on.meters }, ..on.clone() };
        assert_eq!((count(&no_arp, "meter:2,"), count(&no_arp, "meter:")), (0, 3));
        assert_eq!(meter_texts(&no_arp).len(), 2);
        let off = PipelineConfig { meters: PacketInMeters::OFF, ..on.clone() };
        assert_eq!(count(&off, "meter:"), 0);
        assert!(meter_texts(&off).is_empty());
        // Resume mode keeps the meter in front of the pause.
        let resume = PipelineConfig { first_packet: FirstPacket::Resume, ..on };
        let t3 =
            flow_texts_mode(&resume, Mode::Single, 1, 1).into_iter().find(|t| t.starts_with("table=3,priority=0,"));
        assert!(t3.unwrap().ends_with("actions=meter:1,load:0x1->NXM_NX_REG0[4],controller(pause),resubmit(,3)"));
    }

    #[test]
    fn the_locator_finds_pods_by_ipv4_and_ipv6() {
        use crate::policy::decision::{Location, Locator};
        let c = sample6(false);
        let a = Some(Location { port: 2, mac: c.local_pods[0].mac, tun_dst: None });
        assert_eq!(c.locate("10.244.1.2".parse().unwrap()), a);
        assert_eq!(c.locate("fd00:10:244:1::2".parse().unwrap()), a);
        assert_eq!(c.locate("fd00:10:244:1::4".parse().unwrap()), None, "pod B has no IPv6 address");
        assert_eq!(c.locate("fd00:10:244:1::1".parse().unwrap()), None, "the gateway is not a pod");
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn every_flow_is_what_ovs_encodes_and_round_trips() {
        assert!(oracle::available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
        for (cfg, mode, shards) in [
            (sample(), Mode::Fanout, 2),
            (sample(), Mode::Single, 1),
            (PipelineConfig { tunnel_port: None, learn_hard_timeout: 0, ..sample() }, Mode::Fanout, 3),
            (sample6(false), Mode::Fanout, 2),
            (sample6(true), Mode::Single, 1),
            (PipelineConfig { tunnel_port: None, gateway_ip6: None, ..sample6(true) }, Mode::Fanout, 3),
            (PipelineConfig { first_packet: FirstPacket::Resume, ..sample() }, Mode::Fanout, 2),
            (PipelineConfig { first_packet: FirstPacket::Resume, ..sample6(true) }, Mode::Single, 1),
        ] {
            let texts = flow_texts_mode(&cfg, mode, shards, 7);
            let flows = generate_mode(&cfg, mode, shards, 7).unwrap();
            assert_eq!(texts.len(), flows.len());
            for (t, fm) in texts.iter().zip(&flows) {
                let ovs = oracle::parse_flow(t).unwrap_or_else(|e| panic!("OVS refuses {t}: {e}"));
                let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);
                assert_eq!(fm.encode(xid), ovs.bytes, "{t}");
                // The dump-flows form reads back to the same flow (OVS's side: tests/pipeline_ovs.rs).
                let back = FlowMod::parse(&fm.to_flow_text(), FlowModCommand::Add).unwrap();
                assert_eq!(&back, fm, "{}", fm.to_flow_text());
            }
        }
    }

    #[test]
    fn flows_and_cookies_are_unique_and_categorised() {
        for cfg in [sample(), sample6(false), sample6(true)] {
            flows_and_cookies_are_unique(&cfg);
        }
    }

    fn flows_and_cookies_are_unique(cfg: &PipelineConfig) {
        let flows = generate(cfg, 2, 9).unwrap();
        let mut keys = HashSet::new();
        let mut cookies = HashSet::new();
        for fm in &flows {
            let text = fm.to_flow_text();
            // The match is what follows the priority up to the actions.
            let m = text.split(" actions=").next().unwrap().split("priority=").nth(1).unwrap().to_string();
            assert!(keys.insert((fm.table_id, m.clone())), "two flows with table {} and {m}", fm.table_id);
            assert!(cookies.insert(fm.cookie), "cookie {:#x} twice", fm.cookie);
            assert_eq!(cookie::generation(fm.cookie), 9);
            let cat = cookie::category(fm.cookie).unwrap();
            assert_eq!(
                cat == Category::Dispatch,
                fm.table_id == 250 || (fm.table_id == 0 && fm.priority == 0),
                "{text}"
            );
            if cat == Category::Pipeline {
                assert_eq!((fm.cookie & cookie::OBJECT_MASK) >> 32, u64::from(fm.table_id), "{text}");
            }
        }
        // Learned flows' cookies are distinct from every installed flow's.
        for (proto, ..) in LEARNED_PROTOCOLS {
            assert!(!cookies.contains(&learned_cookie(9, proto)));
        }
        // Every pipeline table ends in an explicit miss flow.
        for tbl in [0, 1, 2, 3, 4, 5, 6, 15, 20] {
            assert!(flows.iter().any(|f| f.table_id == tbl && f.priority == 0), "table {tbl} has no miss flow");
        }
    }

    #[test]
    fn cookies_are_stable_when_pods_come_and_go() {
        let all = sample();
        let one = PipelineConfig { local_pods: all.local_pods[..1].to_vec(), ..sample() };
        let a: HashSet<(u64, String)> =
            generate(&all, 2, 1).unwrap().iter().map(|f| (f.cookie, f.to_flow_text())).collect();
        let b: HashSet<(u64, String)> =
            generate(&one, 2, 1).unwrap().iter().map(|f| (f.cookie, f.to_flow_text())).collect();
        assert!(b.is_subset(&a));
        let gone: Vec<_> = a.difference(&b).map(|(_, t)| t.clone()).collect();
        assert_eq!(gone.len(), 3, "{gone:?}");
        assert!(gone.iter().all(|t| t.contains("10.244.1.4") || t.contains("in_port=4")), "{gone:?}");
    }

    #[test]
    fn tunnel_routes_send_other_nodes_pods_into_the_tunnel() {
        let mut c = sample();
        c.tunnel_routes = vec![
            TunnelRoute { cidr: "10.244.2.0/24".parse().unwrap(), remote_ip: Ipv4Addr::new(172, 31, 0, 2) },
            TunnelRoute { cidr: "10.244.3.0/24".parse().unwrap(), remote_ip: Ipv4Addr::new(172, 31, 0, 3) },
        ];
        c.validate().unwrap();
        let texts = flow_texts(&c, 2, 1);
        let routes: Vec<&String> = texts.iter().filter(|t| t.contains("tun_dst")).collect();
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert!(routes[0].contains("table=5,priority=85,"), "{}", routes[0]);
        assert!(
            routes[0].ends_with("ip,nw_dst=10.244.2.0/24,actions=set_field:172.31.0.2->tun_dst,output:5"),
            "{}",
            routes[0]
        );
        flows_and_cookies_are_unique(&c);
        // Every route flow is what OVS encodes.
        if crate::oracle::available() {
            for t in routes {
                crate::oracle::parse_flow(t).unwrap_or_else(|e| panic!("OVS refuses {t}: {e}"));
            }
        }
        // No tunnel port: no route flows.
        c.tunnel_port = None;
        assert!(!flow_texts(&c, 2, 1).iter().any(|t| t.contains("tun_dst")));
        // Bad routes are refused, naming the key.
        let mut bad = sample();
        bad.tunnel_routes =
            vec![TunnelRoute { cidr: "10.244.0.0/16".parse().unwrap(), remote_ip: Ipv4Addr::new(172, 31, 0, 2) }];
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("pipeline.tunnel_routes[0].cidr"), "{e}");
        bad.tunnel_routes[0].cidr = "10.244.2.0/24".parse().unwrap();
        bad.tunnel_routes[0].remote_ip = Ipv4Addr::UNSPECIFIED;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("pipeline.tunnel_routes[0].remote_ip"), "{e}");
    }

    #[test]
    fn learn_specs_and_timeouts() {
        let texts = flow_texts(&sample(), 2, 1);
        let learns: Vec<&String> = texts.iter().filter(|t| t.contains("learn(")).collect();
        assert_eq!(learns.len(), 3);
        assert!(learns[0].contains(
            "idle_timeout=60,hard_timeout=600,priority=100,cookie=0x1040680000006,eth_type=0x800,nw_proto=6,"
        ));
        assert!(learns[2].contains("nw_proto=132,") && learns[2].contains("OXM_OF_SCTP_SRC[]=OXM_OF_SCTP_DST[]"));
        assert!(learns.iter().all(|t| t.ends_with("output:NXM_OF_IN_PORT[]),resubmit(,5)")));
    }

    #[test]
    fn refuses_bad_config_and_shard_counts() {
        let mut bad = sample();
        bad.pod_zone = 0;
        assert!(matches!(generate(&bad, 2, 1), Err(PipelineError::Invalid { key, .. }) if key == "pipeline.pod_zone"));
        assert!(matches!(generate(&sample(), 0, 1), Err(PipelineError::Invalid { key, .. }) if key == "shards.count"));
    }
}
