//! The glommio adapter of the decision machine ([`crate::policy::machine`]): the same calls the
//! shard always made, with the only runtime part here. When the answer is at hand (cache hit,
//! embedded policy, policy file) [`Decider::decide_now`] is synchronous: no task, no await.
//! Otherwise the shard's task calls [`Decider::decide_later`], which takes a place among the
//! waiting packets (bounded by `policy.max_pending`), asks the source, races its answer against
//! a glommio timer (`policy.timeout_ms`), and feeds the result back into the machine. The
//! shard never blocks: other packet-ins go on while one waits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::PolicyConfig;
use crate::openflow::flow::FlowMod;
use crate::packet::{FlowKey, MacAddr};
use crate::pipeline::default::PipelineConfig;
use crate::policy::machine::{DecisionMachine, DecisionSettings};
use crate::policy::{Decided, PolicyQuery, PolicySource};

pub use crate::policy::machine::{Held, Label, Outcome};

/// A shard's decider: the sans-IO machine and the timeout of a cni-ctl query.
pub struct Decider {
    machine: DecisionMachine,
    timeout: Duration,
}

/// The machine's settings from `[policy]`.
fn settings(cfg: &PolicyConfig) -> DecisionSettings {
    DecisionSettings {
        fail_open: cfg.fail_open,
        conn_idle_timeout: cfg.conn_idle_timeout,
        deny_idle_timeout: cfg.deny_idle_timeout,
        max_pending: cfg.max_pending,
    }
}

impl Decider {
    pub fn new(pipeline: PipelineConfig, generation: u16, cfg: PolicyConfig, answers: Arc<PolicySource>) -> Decider {
        Decider {
            machine: DecisionMachine::new(pipeline, generation, settings(&cfg), answers),
            timeout: Duration::from_millis(cfg.timeout_ms),
        }
    }

    /// The pipeline decisions are made for, now.
    pub fn pipeline(&self) -> Arc<PipelineConfig> {
        self.machine.pipeline()
    }

    /// Takes the node's current pipeline (its pods are located, its ports are infrastructure).
    pub fn set_pipeline(&self, p: Arc<PipelineConfig>) {
        self.machine.set_pipeline(p)
    }

    /// See [`DecisionMachine::supports`].
    pub fn supports(&self, key: &FlowKey) -> bool {
        self.machine.supports(key)
    }

    /// See [`DecisionMachine::should_decide`].
    pub fn should_decide(&self, key: &FlowKey, in_port: u32, reg0: u32) -> bool {
        self.machine.should_decide(key, in_port, reg0)
    }

    /// Decides at once when the answer is at hand; otherwise hands the query back (with the
    /// packet) for [`Decider::decide_later`]. See [`DecisionMachine::decide_now`].
    #[allow(clippy::too_many_arguments)]
    pub fn decide_now(
        &self,
        key: &FlowKey,
        conn_hash: u64,
        in_port: u32,
        ct_state: u32,
        data: Held,
        tracker: &crate::tracker::TrackerView<'_>,
        now: Instant,
    ) -> Result<Outcome, (PolicyQuery, Held)> {
        self.machine.decide_now(key, conn_hash, in_port, ct_state, data, tracker, now)
    }

    /// Asks the policy source (cni-ctl) and decides; the packet waits in the caller's task.
    pub async fn decide_later(
        &self,
        key: &FlowKey,
        conn_hash: u64,
        in_port: u32,
        q: PolicyQuery,
        data: Held,
        tracker: &crate::tracker::TrackerView<'_>,
    ) -> Outcome {
        let answer = match self.machine.reserve() {
            Ok(_slot) => self.ask(q).await,
            Err(why) => Err(why),
        };
        self.machine.answered(key, conn_hash, in_port, q, answer, data, tracker, Instant::now())
    }

    /// The source's answer, or why there is none within the timeout.
    async fn ask(&self, q: PolicyQuery) -> Result<crate::policy::NetworkPolicy, String> {
        let rx = self.machine.source().ask(q);
        let timeout = self.timeout;
        futures_lite::future::race(
            async {
                match rx.recv_async().await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("policy source went away".to_string()),
                }
            },
            async {
                glommio::timer::sleep(timeout).await;
                Err(format!("no answer within {} ms", timeout.as_millis()))
            },
        )
        .await
    }

    /// The flows of a decided connection, rebuilt (for a resync).
    pub fn flows_of(&self, d: &Decided) -> Vec<FlowMod> {
        self.machine.flows_of(d)
    }

    /// See [`DecisionMachine::invalidate`].
    pub fn invalidate(&self, ips: &[IpAddr], below_version: u64, all: bool) -> Vec<PolicyQuery> {
        self.machine.invalidate(ips, below_version, all)
    }

    /// See [`DecisionMachine::refresh_policy`].
    pub fn refresh_policy(&self) -> u64 {
        self.machine.refresh_policy()
    }

    pub fn cached_answers(&self) -> usize {
        self.machine.cached_answers()
    }

    pub fn hot_syn_len(&self) -> usize {
        self.machine.hot_syn_len()
    }

    /// The gateway MAC: ARP replies to it are ours, not to be flooded.
    pub fn gateway_mac(&self) -> MacAddr {
        self.machine.gateway_mac()
    }

    /// Ports where remote addresses show up (their sources must not be located there).
    pub fn infrastructure_ports(&self) -> Vec<u32> {
        self.machine.infrastructure_ports()
    }

    pub fn pending(&self) -> usize {
        self.machine.pending()
    }
}
