//! The packet-in path: classify and budget a packet-in, feed the Tracker, answer ARP, hand the
//! connection to the shard that owns it, decide there (at once, or in a task waiting for the
//! policy source) and send the answer on the connection it came from.

use super::*;
use crate::openflow::message::PacketIn2;
use crate::policy::arp::{arp_answer_for, ArpDecision};

impl Shard {
    // === packet-in path ===

    pub(super) fn on_packet_in(self: &Rc<Self>, conn: &Rc<Conn>, pi: PacketIn, paused: Option<Box<PacketIn2>>) {
        let t0 = self.batch_now.get();
        self.packet_ins.set(self.packet_ins.get() + 1);
        // Only the dpid's routed connection speaks for it: the Tracker never moves an address,
        // and nothing is decided, on the word of a connection whose claim was not verified.
        let dpid = conn.dpid().unwrap_or(0);
        if self.by_dpid.borrow().get(&dpid) != Some(&conn.id) {
            self.metrics.packet_in_dropped("unverified");
            return;
        }
        let in_port = pi.r#match.get(Field::IN_PORT_OXM).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let key = match FlowKey::extract(in_port, &pi.data) {
            Ok(k) => k,
            Err(e) => {
                self.metrics.packet_in("invalid");
                self.metrics.packet_in_dropped("invalid");
                tracing::debug!(shard = self.id(), "unparsable packet-in: {e}");
                return;
            }
        };
        let kind = if key.is_arp() {
            "arp"
        } else {
            match key.ip_proto {
                6 => "tcp",
                17 => "udp",
                132 => "sctp",
                1 => "icmp",
                58 => "icmpv6",
                _ if key.is_ip() => "ip_other",
                _ => "other",
            }
        };
        self.metrics.packet_in(kind);
        let ct_state = pi.r#match.get(Field::CT_STATE).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let reg0 = pi.r#match.get(Field::reg(0)).map(|e| e.value.to_u128() as u32).unwrap_or(0);
        let decide = self.decider.as_ref().is_some_and(|d| d.should_decide(&key, in_port, reg0));
        // The shard's budget per class: over it, the packet-in costs nothing more.
        let class = match (key.is_arp(), decide) {
            (true, _) => Class::Arp,
            (false, true) => Class::NewConnection,
            (false, false) => Class::Other,
        };
        if !self.budget.admit(class, t0) {
            self.metrics.packet_in_dropped(class.rate_cause());
            return;
        }
        tracing::debug!(
            shard = self.id(),
            table = pi.table_id,
            cookie = %format!("{:#x}", pi.cookie),
            packet = %crate::packet::describe(&pi.data),
            "packet-in"
        );
        self.shared.tracker.observe(dpid, in_port, self.id(), &key, t0);
        if key.is_arp() {
            self.answer_arp(conn, &key, in_port, &pi.data);
            return;
        }
        let ck = key.conn_key();
        let conn_hash = ck.hash64();
        let owner = match self.shared.cfg.openflow.mode {
            // The switch already hashed the connection to this shard.
            Mode::Fanout => self.id(),
            Mode::Single => shard_of(conn_hash, self.ctx.n_shards),
        };
        let packet = decide
            .then(|| Box::new(HandoffPacket { flow: key, conn_hash, paused, in_port, ct_state, data: pi.data, dpid }));
        if packet.is_none() {
            // Recorded only: the time to here is the whole of it. (Decisions record their own.)
            self.observe_latency(t0);
        }
        if owner == self.id() {
            self.record(ck, conn_hash, false);
            if let Some(p) = packet {
                self.decide_and_send(p, conn.id, t0);
            }
        } else {
            self.handoffs_out.set(self.handoffs_out.get() + 1);
            self.metrics.handoff(owner);
            let h = Handoff { from: self.ctx.id, conn: conn.id, dpid: conn.dpid().unwrap_or(0), key: ck, packet };
            self.send_to_shard(ShardId(owner), ShardMsg::Handoff(h));
        }
    }

    /// Sends to another shard's inbox without waiting: when it is full the message waits in
    /// this shard's bounded outbox towards it (in order, one draining task per target); when
    /// that is full too it is dropped and counted by cause (`handoff_full`, `answer_full`).
    pub(super) fn send_to_shard(&self, to: ShardId, msg: ShardMsg) {
        if let Err(back) = self.outbox.send(to, msg) {
            let cause = match back.msg {
                ShardMsg::Handoff(_) => "handoff_full",
                ShardMsg::Answer { .. } => "answer_full",
                _ => "mesh_full",
            };
            self.metrics.dropped(cause, 1);
            tracing::debug!(shard = self.id(), to = to.0, cause, "message to shard dropped: {}", back.error);
        }
    }

    /// Packet-in to answer sent: the shard's histogram (`/v1/shards` p50/p99) and prometheus.
    pub(super) fn observe_latency(&self, t0: Instant) {
        let took = t0.elapsed();
        let us = took.as_micros().max(1) as u64;
        let _ = self.decision_us.borrow_mut().record(us.min(60_000_000));
        self.metrics.observe_decision(took);
    }

    /// ARP from the packet-in path (`pipeline.arp = "controller"`): answered from the configured
    /// pods and the Tracker when the target is known, else flooded.
    pub(super) fn answer_arp(&self, conn: &Rc<Conn>, key: &FlowKey, in_port: u32, frame: &[u8]) {
        let Some(decider) = &self.decider else { return };
        let dpid = conn.dpid().unwrap_or(0);
        let view = self.shared.tracker.view(dpid);
        // The configured pods and the node's (from its database), then what was learned.
        let pods = decider.pipeline();
        let chain = crate::tracker::Chain { first: &*pods, second: &view };
        let decision = arp_answer_for(key, in_port, &chain, &[decider.gateway_mac()]);
        let label = match &decision {
            ArpDecision::Reply(_) => "arp_reply",
            ArpDecision::Flood(_) => "arp_flood",
            ArpDecision::Nothing => "arp_nothing",
        };
        self.metrics.decision(label);
        if let Some(m) = decision.message(frame) {
            conn.send_all(&[m]);
        }
    }

    /// Decides a packet-in on this (owning) shard and sends the answer on connection `conn`,
    /// here or on the shard that received it.
    pub(super) fn decide_and_send(self: &Rc<Self>, p: Box<HandoffPacket>, conn: u64, t0: Instant) {
        self.decide_then(p, t0, move |shard, outcome| shard.send_on(conn, outcome.messages, outcome.decided));
    }

    /// Decides at once when the answer is at hand (no task, no await); a policy query waits in
    /// a task of its own while other packet-ins go on.
    pub(super) fn decide_then(
        self: &Rc<Self>,
        p: Box<HandoffPacket>,
        t0: Instant,
        then: impl FnOnce(&Rc<Shard>, Outcome) + 'static,
    ) {
        let Some(decider) = self.decider.clone() else { return };
        let HandoffPacket { dpid, flow, conn_hash, paused, in_port, ct_state, data } = *p;
        let view = self.shared.tracker.view(dpid);
        match decider.decide_now(&flow, conn_hash, in_port, ct_state, (data, paused), &view, t0) {
            Ok(outcome) => {
                self.metrics.decision(outcome.label);
                then(self, outcome);
                self.observe_latency(t0);
            }
            Err((q, data)) => {
                // Each held packet is a task with the frame: bounded before the task exists.
                if self.held.get() >= self.shared.cfg.policy.max_pending {
                    self.metrics.packet_in_dropped("held_full");
                    return;
                }
                self.held.set(self.held.get() + 1);
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let view = shard.shared.tracker.view(dpid);
                    let outcome = decider.decide_later(&flow, conn_hash, in_port, q, data, &view).await;
                    shard.held.set(shard.held.get() - 1);
                    shard.metrics.decision(outcome.label);
                    then(&shard, outcome);
                    shard.observe_latency(t0);
                })
                .detach();
            }
        }
    }

    /// Sends decided messages on one of this shard's connections and keeps the decided
    /// connection's record (so a resync after an ovs-vswitchd restart rebuilds its flows).
    pub(super) fn send_on(&self, conn: u64, messages: Vec<Message>, decided: Option<Decided>) {
        if messages.is_empty() {
            return;
        }
        let c = self.conns.borrow().get(&conn).cloned();
        let Some(c) = c else { return };
        if c.send_all(&messages) == 0 {
            // Dropped at the connection's output bound (counted there): nothing was installed.
            return;
        }
        let n = messages.iter().filter(|m| matches!(m, Message::FlowMod(_))).count() as u64;
        self.flow_mods.set(self.flow_mods.get() + n);
        self.metrics.flow_mods_n("ok", n);
        if let (Some(d), Some(dpid)) = (decided, c.dpid()) {
            self.keep_decided(dpid, d);
        }
    }
}
