//! Packet-in fan-out: which controller connection (and so which shard) gets a table miss.
//!
//! In fan-out mode the daemon has one controller connection per shard on every bridge, each
//! named with `NXT_SET_CONTROLLER_ID` = shard + 1. The table-miss flow hashes the packet with
//! `multipath(symmetric_l3l4+udp, ...)`, which gives both directions of a connection the same
//! value, into [`HASH_REG`], and the dispatch table sends the packet-in to `controller(id=K+1)`.
//! So a connection's packet-ins, in both directions, reach one shard and never cross cores.
//! (A `controller()` inside a group bucket is silently dropped by OVS, hence multipath + a table.)
//!
//! In single mode there is one connection (controller id 0) and a plain `CONTROLLER` output;
//! the receiving shard hands a packet-in to the shard that owns its key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::TextError;

use super::cookie::{self, Category};

/// Upper bound on the number of shards (sanity, not a hard technical limit): the
/// configuration checks `shards.count` against it, the dispatch flows too.
pub const MAX_SHARDS: usize = 256;

/// How switch connections are spread over the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Shard i listens on `base_port + i`; OVS connects to every port and each connection
    /// narrows its packet-ins to the flows the shard owns.
    #[default]
    Fanout,
    /// One port; packet-ins are handed to the shard that owns the flow.
    Single,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fanout" => Ok(Mode::Fanout),
            "single" => Ok(Mode::Single),
            _ => Err(format!("unknown mode {s:?}, expected \"fanout\" or \"single\"")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Fanout => "fanout",
            Mode::Single => "single",
        })
    }
}

/// The table the table-miss flow resubmits to after hashing.
pub const DISPATCH_TABLE: u8 = 250;
/// Where the symmetric hash lands (`NXM_NX_REG15[0..15]`): kept out of reg0-reg7, which the
/// pipeline uses.
pub const HASH_REG: &str = "NXM_NX_REG15[0..15]";

/// The controller id of shard `shard` (ids start at 1: 0 means "unnamed" to OVS).
pub const fn controller_id(shard: usize) -> u16 {
    shard as u16 + 1
}

/// The dispatch flows as text, in `ovs-ofctl` syntax (documentation and tests print these).
pub fn flow_texts(mode: Mode, shards: usize, generation: u16) -> Vec<String> {
    flow_texts_with(mode, shards, generation, false)
}

/// [`flow_texts`]; with `pause`, the packet-in pauses the pipeline (NXT_PACKET_IN2 with a
/// continuation, for NXT_RESUME) after marking reg0 bit 4 (resumed), the pipeline's
/// `first_packet = "resume"`.
pub fn flow_texts_with(mode: Mode, shards: usize, generation: u16, pause: bool) -> Vec<String> {
    flow_texts_metered(mode, shards, generation, pause, None)
}

/// [`flow_texts_with`]; with `miss_meter`, the table-0 miss goes through that meter first
/// (`meter:N,...`: the pipeline's "other" packet-in class, see `pipeline::meters`).
pub fn flow_texts_metered(
    mode: Mode,
    shards: usize,
    generation: u16,
    pause: bool,
    miss_meter: Option<u32>,
) -> Vec<String> {
    let meter = miss_meter.map(|m| format!("meter:{m},")).unwrap_or_default();
    let c = |obj: u64| format!("{:#x}", cookie::make(generation, Category::Dispatch, obj));
    let to = |id: Option<u16>| match (id, pause) {
        (None, false) => "controller".to_string(),
        (None, true) => "load:0x1->NXM_NX_REG0[4],controller(pause)".to_string(),
        (Some(id), false) => format!("controller(id={id})"),
        (Some(id), true) => format!("load:0x1->NXM_NX_REG0[4],controller(id={id},pause)"),
    };
    match mode {
        Mode::Single => vec![format!("table=0,priority=0,cookie={},actions={meter}{}", c(0), to(None))],
        Mode::Fanout => {
            let mut v = vec![format!(
                "table=0,priority=0,cookie={},actions={meter}multipath(symmetric_l3l4+udp,0,hrw,{shards},0,{HASH_REG}),resubmit(,{DISPATCH_TABLE})",
                c(0)
            )];
            for k in 0..shards {
                v.push(format!(
                    "table={DISPATCH_TABLE},priority=10,cookie={},reg15={k},actions={}",
                    c(k as u64 + 1),
                    to(Some(controller_id(k)))
                ));
            }
            v
        }
    }
}

/// The dispatch flows, ready to send (ADD: installing them again is harmless).
pub fn flows(mode: Mode, shards: usize, generation: u16) -> Result<Vec<FlowMod>, TextError> {
    flow_texts(mode, shards, generation).iter().map(|t| FlowMod::parse(t, FlowModCommand::Add)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle;

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn dispatch_flows_are_what_ovs_encodes() {
        for (mode, n, pause) in [
            (Mode::Fanout, 2, false),
            (Mode::Fanout, 5, false),
            (Mode::Single, 3, false),
            (Mode::Fanout, 2, true),
            (Mode::Single, 1, true),
        ] {
            let texts = flow_texts_with(mode, n, 3, pause);
            assert_eq!(texts.len(), if mode == Mode::Fanout { n + 1 } else { 1 });
            let parsed: Vec<FlowMod> =
                texts.iter().map(|t| FlowMod::parse(t, FlowModCommand::Add).expect("dispatch flows parse")).collect();
            for (t, fm) in texts.iter().zip(parsed) {
                let ovs = oracle::parse_flow(t).unwrap_or_else(|e| panic!("OVS refuses {t}: {e}"));
                let ours = fm.encode(u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]));
                assert_eq!(ours, ovs.bytes, "{t}");
            }
        }
    }

    #[test]
    fn controller_ids_start_at_one() {
        assert_eq!(controller_id(0), 1);
        assert_eq!(controller_id(3), 4);
    }
}
