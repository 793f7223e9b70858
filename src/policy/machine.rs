//! The Packet-In decision state machine, sans-IO: what a shard does with a new connection's
//! packet between the packet-in and the messages it sends back. No runtime, no await, no clock:
//! the caller passes `now`, and when the answer must come from cni-ctl the machine hands the
//! query back; the runtime asks, waits (with its timer) and feeds the answer (or why there is
//! none) to [`DecisionMachine::answered`]. The glommio adapter is `daemon::decider`.
//!
//! What it keeps (one per shard, not `Sync`):
//! - the reply guess: the hot-SYN cache ([`super::classify`]);
//! - the answer cache: answers until their deadline (`now + ttl`), tagged with the policy file
//!   generation they came from (0 for cni-ctl), so a reloaded file's old answers are misses;
//!   bounded by [`CACHE_MAX`] (expired then all entries dropped at the bound); invalidated by
//!   address, by version or whole ([`DecisionMachine::invalidate`]);
//! - the pending bound: at most `max_pending` packets wait for cni-ctl
//!   ([`DecisionMachine::reserve`]); past it a packet is decided as if cni-ctl were down.
//!
//! What it decides (see [`DecisionMachine::answered`]): no answer -> fail-open (allow, with the
//! deny idle timeout so that it is asked again soon) or fail-closed (nothing installed, the
//! packet dropped); an allowed service address without endpoints -> a short drop flow
//! (`no_endpoints`); an allowed connection to a pod address nobody located yet -> the packet
//! flooded without flows (`flood_unknown`) until the destination answers; otherwise the flows
//! and the packet-out (or NXT_RESUME) of [`super::plan_hashed`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shards::HotSynCache;

use super::decision::Chain;
use super::source::PolicyView;
use super::{Decided, DecisionContext, HotTarget, Locator, NetworkPolicy, PolicyQuery, PolicySource, Verdict};
use crate::openflow::action::Action;
use crate::openflow::flow::FlowMod;
use crate::openflow::message::{Message, PacketIn2, PacketOut};
use crate::packet::{FlowKey, MacAddr};
use crate::pipeline::default::PipelineConfig;

/// OFPP_FLOOD as an OpenFlow 1.3 port.
const OFPP_FLOOD: u32 = 0xffff_fffb;
/// Hot-SYN cache: connections whose SYN was seen, to guess that a packet is a reply.
const HOT_SYN_CAPACITY: usize = 65_536;
const HOT_SYN_TTL: Duration = Duration::from_secs(30);
/// Most cached answers per shard; at the bound expired entries go, then all.
pub const CACHE_MAX: usize = 100_000;

/// The settings the machine decides with (the daemon fills them from `[policy]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionSettings {
    /// No answer from cni-ctl: allow (true) or drop and install nothing (false).
    pub fail_open: bool,
    /// Idle timeout of an allowed connection's flows, seconds.
    pub conn_idle_timeout: u16,
    /// Idle timeout of a drop flow (and of a fail-open allow), seconds.
    pub deny_idle_timeout: u16,
    /// Packets that may wait for cni-ctl at once.
    pub max_pending: usize,
}

/// What a decision did, for counters and logs.
pub type Label = &'static str;

/// The packet a decision is about: its bytes, and the paused packet-in to resume
/// (`first_packet = "resume"`).
pub type Held = (Vec<u8>, Option<Box<PacketIn2>>);

/// A decision: its label, the decided connection (None when nothing was installed: flooded,
/// fail-closed) and the messages to send, flows first, then the packet-out.
pub struct Outcome {
    pub label: Label,
    pub decided: Option<Decided>,
    pub messages: Vec<Message>,
}

/// One shard's decision state (see the module doc).
pub struct DecisionMachine {
    /// The bridge's pipeline as it is now: the configured (or zero-config) one with the node's
    /// pods and ports (`pipeline::node::effective`), replaced when the node changes.
    pipeline: RefCell<Arc<PipelineConfig>>,
    generation: u16,
    settings: DecisionSettings,
    answers: Arc<PolicySource>,
    /// A policy file's snapshot on this shard (refreshed, never waited for, after a reload).
    view: Option<PolicyView>,
    /// Answers until their deadline, with the policy file generation they came from (0 for
    /// cni-ctl): an answer of a replaced file is not used. Bounded by [`CACHE_MAX`].
    cache: RefCell<HashMap<PolicyQuery, (NetworkPolicy, Instant, u64), shards::FastBuild>>,
    hot: RefCell<HotSynCache<HotTarget>>,
    pending: Cell<usize>,
}

/// A place among the packets waiting for cni-ctl; freed when dropped (also when the waiting
/// task is cancelled).
pub struct PendingSlot<'a> {
    pending: &'a Cell<usize>,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.pending.set(self.pending.get().saturating_sub(1));
    }
}

impl DecisionMachine {
    pub fn new(
        pipeline: PipelineConfig,
        generation: u16,
        settings: DecisionSettings,
        answers: Arc<PolicySource>,
    ) -> DecisionMachine {
        let view = answers.file().map(|cell| PolicyView::new(cell.clone()));
        DecisionMachine {
            pipeline: RefCell::new(Arc::new(pipeline)),
            generation,
            settings,
            answers,
            view,
            cache: RefCell::new(HashMap::default()),
            hot: RefCell::new(HotSynCache::new(HOT_SYN_CAPACITY, HOT_SYN_TTL)),
            pending: Cell::new(0),
        }
    }

    /// Where answers come from (the runtime asks it when [`DecisionMachine::decide_now`] hands
    /// a query back).
    pub fn source(&self) -> &PolicySource {
        &self.answers
    }

    /// The pipeline decisions are made for, now.
    pub fn pipeline(&self) -> Arc<PipelineConfig> {
        self.pipeline.borrow().clone()
    }

    /// Takes the node's current pipeline (its pods are located, its ports are infrastructure).
    pub fn set_pipeline(&self, p: Arc<PipelineConfig>) {
        *self.pipeline.borrow_mut() = p;
    }

    /// Whether the pipeline can carry a decision for this packet: TCP, UDP, SCTP and ICMP over
    /// IPv4, and over IPv6 when the pipeline has an IPv6 pod range; others are only recorded.
    pub fn supports(&self, key: &FlowKey) -> bool {
        match key.ip_src {
            IpAddr::V4(_) => matches!(key.ip_proto, 6 | 17 | 132 | 1),
            IpAddr::V6(_) => self.pipeline.borrow().pod_cidr6.is_some() && matches!(key.ip_proto, 6 | 17 | 132 | 58),
        }
    }

    /// Whether a packet-in is a new connection the pipeline asks the policy about: one that
    /// missed the policy table after conntrack (table 0 marked it as from a local pod or the
    /// gateway: reg0 bits 2 and 3), or the first packet of a service connection from a local
    /// pod. Anything else (a table-0 miss: unknown port, spoofed source, other protocols) is
    /// recorded but not decided: flows installed for it would never be reached.
    pub fn should_decide(&self, key: &FlowKey, in_port: u32, reg0: u32) -> bool {
        if !self.supports(key) {
            return false;
        }
        use crate::pipeline::default::reg0::{FROM_GATEWAY, FROM_LEARNING, FROM_POD};
        let from_pod_or_gateway = reg0 & (FROM_POD | FROM_GATEWAY | FROM_LEARNING) != 0;
        let pipeline = self.pipeline.borrow();
        let service_from_pod = match key.ip_dst {
            IpAddr::V4(d) => pipeline.service_cidr.contains(d) && pipeline.local_pods.iter().any(|p| p.port == in_port),
            IpAddr::V6(_) => false,
        };
        from_pod_or_gateway || service_from_pod
    }

    /// Decides for one packet-in when the answer is at hand (this shard's cache, or a policy
    /// source that answers without IO: the embedded policy, the policy file). Otherwise hands
    /// the query back (with the packet): ask the source, then [`DecisionMachine::answered`].
    // The packet's facts travel as separate arguments: they come out of the handoff by move.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_now(
        &self,
        key: &FlowKey,
        conn_hash: u64,
        in_port: u32,
        ct_state: u32,
        data: Held,
        tracker: &dyn Locator,
        now: Instant,
    ) -> Result<Outcome, (PolicyQuery, Held)> {
        let is_reply = super::classify(key, ct_state, &mut self.hot.borrow_mut(), now);
        let q = PolicyQuery::from_flow(key, is_reply, &self.pipeline.borrow().service_cidr);
        // The embedded policy answers for free: nothing to cache. A policy file's answer (an
        // index lookup) is cached like cni-ctl's, so that invalidation works the same way, and
        // tagged with the file's generation: a reload makes the old answers misses.
        let answer = match &self.view {
            Some(view) => {
                let gen = view.refresh();
                Some(self.cached(&q, now, gen).unwrap_or_else(|| {
                    let p = view.with(|f| f.evaluate(&q));
                    self.remember(q, &p, now, gen);
                    p
                }))
            }
            None => self.cached(&q, now, 0).or_else(|| self.answers.answer_now(q)),
        };
        match answer {
            Some(p) => Ok(self.conclude(key, conn_hash, in_port, &q, Ok(p), data, tracker)),
            None => Err((q, data)),
        }
    }

    /// A place among the packets waiting for cni-ctl, or why there is none (`max_pending`
    /// already wait): then the packet is decided as without an answer.
    pub fn reserve(&self) -> Result<PendingSlot<'_>, String> {
        if self.pending.get() >= self.settings.max_pending {
            return Err(format!("{} packets already wait for the policy", self.pending.get()));
        }
        self.pending.set(self.pending.get() + 1);
        Ok(PendingSlot { pending: &self.pending })
    }

    /// cni-ctl's answer for a query [`DecisionMachine::decide_now`] handed back (or why there
    /// is none: timeout, error, pending bound) at `now`: cached when there is one, then decided.
    #[allow(clippy::too_many_arguments)]
    pub fn answered(
        &self,
        key: &FlowKey,
        conn_hash: u64,
        in_port: u32,
        q: PolicyQuery,
        answer: Result<NetworkPolicy, String>,
        data: Held,
        tracker: &dyn Locator,
        now: Instant,
    ) -> Outcome {
        if let Ok(p) = &answer {
            self.remember(q, p, now, 0);
        }
        self.conclude(key, conn_hash, in_port, &q, answer, data, tracker)
    }

    /// From the answer (or why there is none) to the messages.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &self,
        key: &FlowKey,
        conn_hash: u64,
        in_port: u32,
        q: &PolicyQuery,
        answer: Result<NetworkPolicy, String>,
        (data, paused): Held,
        tracker: &dyn Locator,
    ) -> Outcome {
        let mut label_override = None;
        let mut answer = match answer {
            Ok(p) => p,
            Err(why) if self.settings.fail_open => {
                tracing::warn!("policy unavailable ({why}): allowing (fail-open)");
                label_override = Some("fail_open");
                NetworkPolicy::allow()
            }
            Err(why) => {
                // Fail closed: drop this packet, install nothing, so that the next packet of
                // the connection asks again once the policy is back.
                tracing::warn!("policy unavailable ({why}): dropping (fail-closed)");
                return Outcome { label: "fail_closed", decided: None, messages: Vec::new() };
            }
        };
        if q.nat && matches!(answer.dst_type, super::DstType::Direct) && answer.allowed {
            // A service address the policy knows no endpoints for: nothing to DNAT to. A short
            // drop flow keeps the rest of the connection off the controller.
            answer = NetworkPolicy::deny();
            label_override = Some("no_endpoints");
        }
        // The configured pods first, then the policy file's static endpoints, then what the
        // Tracker has seen on this switch.
        let file: &dyn Locator = match &self.view {
            Some(v) => v,
            None => &*self.answers,
        };
        let known = Chain { first: file, second: tracker };
        let pipeline = self.pipeline();
        let locator = Chain { first: &*pipeline, second: &known };
        // A learning switch for the pod range: an allowed connection to a pod address nobody has
        // seen yet is flooded, without flows, until the destination answers (the Tracker learns
        // it from that answer) and the next packet is decided with a location.
        if answer.allowed && matches!(answer.dst_type, super::DstType::Direct) && !q.nat {
            let in_pod_range = match key.ip_dst {
                IpAddr::V4(d) => pipeline.pod_cidr.contains(d),
                IpAddr::V6(d) => pipeline.pod_cidr6.as_ref().is_some_and(|c| c.contains(d)),
            };
            let is_gateway = (!pipeline.zero_config && key.ip_dst == IpAddr::V4(pipeline.gateway_ip))
                || pipeline.gateway_ip6.is_some_and(|g| key.ip_dst == IpAddr::V6(g));
            if in_pod_range && !is_gateway && locator.locate(key.ip_dst).is_none() {
                let flood = |data| {
                    Message::PacketOut(PacketOut {
                        buffer_id: 0xffff_ffff,
                        in_port,
                        actions: vec![Action::Output { port: OFPP_FLOOD, max_len: 0 }],
                        data,
                    })
                };
                let mut messages = vec![flood(data)];
                // Without configuration, ARP replies come to the controller: ask for the
                // destination on the sender's behalf, so that a host that never ARPs (a warm
                // neighbour cache, a static entry) is learned from its reply. Otherwise its answer
                // to the flooded packet is invalid to conntrack (no committed connection), never
                // reaches us, and the destination stays unknown for ever.
                if let (true, IpAddr::V4(src), IpAddr::V4(dst)) = (pipeline.zero_config, key.ip_src, key.ip_dst) {
                    messages.push(flood(crate::packet::build::arp_request(key.eth_src, src, dst)));
                }
                return Outcome { label: "flood_unknown", decided: None, messages };
            }
        }
        let conn_idle_timeout = match label_override {
            // Let through while the policy was away: re-asked soon, not allowed for good.
            Some("fail_open") => self.settings.deny_idle_timeout,
            _ => self.settings.conn_idle_timeout,
        };
        let ctx = DecisionContext {
            pipeline: &pipeline,
            generation: self.generation,
            conn_idle_timeout,
            deny_idle_timeout: self.settings.deny_idle_timeout,
            locator: &locator,
        };
        let decided = super::plan_hashed(key, conn_hash, in_port, &answer, &ctx);
        let label = label_override.unwrap_or(match decided.verdict() {
            Verdict::Allow => "allow",
            Verdict::Service { .. } => "service",
            Verdict::Deny => "deny",
        });
        let messages = match paused {
            // The flows, then NXT_RESUME: OVS continues the paused pipeline, which looks the
            // decided table up again (a denied packet meets its drop flow).
            Some(p) => decided.messages_resume(&pipeline, *p),
            None => decided.messages(&pipeline, data),
        };
        Outcome { label, decided: Some(decided), messages }
    }

    /// The flows of a decided connection, rebuilt (for a resync).
    pub fn flows_of(&self, d: &Decided) -> Vec<FlowMod> {
        d.flows(&self.pipeline.borrow())
    }

    /// A cached answer still valid at `now` and of policy file generation `gen`.
    fn cached(&self, q: &PolicyQuery, now: Instant, gen: u64) -> Option<NetworkPolicy> {
        let mut cache = self.cache.borrow_mut();
        if cache.is_empty() {
            return None;
        }
        match cache.get(q) {
            Some((p, until, g)) if *until > now && *g == gen => Some(p.clone()),
            Some(_) => {
                cache.remove(q);
                None
            }
            None => None,
        }
    }

    fn remember(&self, q: PolicyQuery, p: &NetworkPolicy, now: Instant, gen: u64) {
        if p.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, until, g)| *until > now && *g == gen);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(q, (p.clone(), now + p.ttl, gen));
    }

    /// Drops cached answers about `ips` (source or destination), of a version below
    /// `below_version`, or all; returns the queries dropped.
    pub fn invalidate(&self, ips: &[IpAddr], below_version: u64, all: bool) -> Vec<PolicyQuery> {
        let mut cache = self.cache.borrow_mut();
        let mut dropped = Vec::new();
        cache.retain(|q, (p, _, _)| {
            let gone = all || ips.contains(&q.src_ip) || ips.contains(&q.dst_ip) || p.version < below_version;
            if gone {
                dropped.push(*q);
            }
            !gone
        });
        dropped
    }

    /// Takes a reloaded policy file now (a shard's periodic tick: an idle shard must not keep
    /// the old one alive). Returns the generation in use (0 without a file).
    pub fn refresh_policy(&self) -> u64 {
        self.view.as_ref().map_or(0, PolicyView::refresh)
    }

    pub fn cached_answers(&self) -> usize {
        self.cache.borrow().len()
    }

    pub fn hot_syn_len(&self) -> usize {
        self.hot.borrow().len()
    }

    /// The gateway MAC: ARP replies to it are ours, not to be flooded.
    pub fn gateway_mac(&self) -> MacAddr {
        self.pipeline.borrow().gateway_mac
    }

    /// Ports where remote addresses show up (their sources must not be located there).
    pub fn infrastructure_ports(&self) -> Vec<u32> {
        let p = self.pipeline.borrow();
        let mut v: Vec<u32> = [p.gateway_port, p.uplink_port].into_iter().filter(|p| *p != 0).collect();
        v.extend(p.tunnel_port);
        v
    }

    /// Packets waiting for cni-ctl now.
    pub fn pending(&self) -> usize {
        self.pending.get()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
