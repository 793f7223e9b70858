//! Resync, sans IO: what to send so that a switch's flow tables hold exactly the desired flows
//! (plus the flows shardflow does not own), computed from a flow-stats dump.
//!
//! A flow's identity is what OVS makes it: (table, priority, match), the match taken as a set of
//! (field, value, mask) in OVS's normal form (order-free, values ANDed with their masks, an
//! all-ones mask the same as no mask, registers per 32-bit register whether matched as `reg`,
//! `xreg` or `xxreg`, ...). Two flows with the same identity are the same flow: an OpenFlow ADD
//! of one replaces the other atomically (counters kept), which is how a changed flow is fixed
//! without a moment where the table lacks it.
//!
//! [`plan`] compares the desired flows with the switch's:
//! - desired, missing on the switch: ADD;
//! - same identity, different instructions / cookie / timeouts / flags: ADD again (listed in
//!   [`ResyncPlan::changed`] with what differed);
//! - on the switch, not desired, owned by shardflow (cookie category Dispatch, Pipeline or
//!   Connection) and managed by the [`ResyncPolicy`]: DELETE_STRICT of exactly that flow (its
//!   cookie with a full mask, so a flow another owner re-added meanwhile is not hit);
//! - anything else (learned flows, cookies shardflow did not write, Manual flows) is kept.
//!
//! [`ResyncPlan::messages`] puts adds and replacements first and deletes last: applied in one
//! ONF bundle (atomic and ordered, `daemon::conn::Conn::bundle`), no table is ever seen without
//! its flows, before, during or after the commit.
//!
//! The cookie generation is not used to decide anything (a changed cookie is just a difference);
//! it makes stale flows visible in `dump-flows` and lets a whole old generation be deleted by mask.

use std::collections::{BTreeMap, HashMap};

use crate::openflow::field::Field;
use crate::openflow::flow::{
    FlowMod, FlowModCommand, ANY, OFPFF_NO_BYT_COUNTS, OFPFF_NO_PKT_COUNTS, OFPFF_SEND_FLOW_REM,
};
use crate::openflow::instruction::{format_instructions, Instruction};
use crate::openflow::message::multipart::FlowStats;
use crate::openflow::message::Message;
use crate::openflow::oxm::Match;
use crate::openflow::text::value::port_to_ofp11;

use super::cookie::{self, Category};

/// `OFPTT_ALL`: never a table of a flow; in a delete it would mean every table.
pub const ALL_TABLES: u8 = 0xff;

/// The flags OVS keeps with a flow and reports in flow stats (`OFPUTIL_FF_STATE`);
/// `check_overlap` and `reset_counts` act on the flow_mod only and never come back.
pub const STATE_FLAGS: u16 = OFPFF_SEND_FLOW_REM | OFPFF_NO_PKT_COUNTS | OFPFF_NO_BYT_COUNTS;

/// The categories shardflow owns and may delete (Manual flows belong to the operator).
pub const OWNED: [Category; 3] = [Category::Dispatch, Category::Pipeline, Category::Connection];

/// Which owned categories a resync may delete stale flows of. Desired flows are always
/// installed; this only limits deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncPolicy {
    /// Categories whose undesired flows are deleted. Manual is never deleted, even if listed.
    pub managed: Vec<Category>,
}

impl Default for ResyncPolicy {
    /// Every owned category is managed.
    fn default() -> Self {
        ResyncPolicy::all()
    }
}

impl ResyncPolicy {
    /// Dispatch, Pipeline and Connection flows are managed.
    pub fn all() -> ResyncPolicy {
        ResyncPolicy { managed: OWNED.to_vec() }
    }

    /// Nothing is deleted (adds and replacements only).
    pub fn none() -> ResyncPolicy {
        ResyncPolicy { managed: Vec::new() }
    }

    /// Only these categories are managed.
    pub fn only(categories: &[Category]) -> ResyncPolicy {
        ResyncPolicy { managed: categories.to_vec() }
    }

    /// Every owned category but `category` (a restarted daemon that adopts the live
    /// connection flows: `ResyncPolicy::all().without(Category::Connection)`).
    pub fn without(mut self, category: Category) -> ResyncPolicy {
        self.managed.retain(|c| *c != category);
        self
    }

    /// Whether a flow with `cookie` may be deleted when it is not desired.
    pub fn may_delete(&self, cookie: u64) -> bool {
        match cookie::category(cookie) {
            Some(c) if OWNED.contains(&c) => self.managed.contains(&c),
            _ => false,
        }
    }
}

/// What a resync sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncPlan {
    /// Desired flows missing on the switch (ADD).
    pub adds: Vec<FlowMod>,
    /// Stale owned flows (DELETE_STRICT, full cookie mask).
    pub deletes: Vec<FlowMod>,
    /// Desired flows already on the switch as desired.
    pub unchanged: usize,
    /// Desired flows on the switch with the same identity but something else different, and
    /// what differed (`"instructions"`, `"cookie+idle_timeout"`, ...): re-added (ADD replaces).
    pub changed: Vec<(FlowMod, &'static str)>,
    /// Desired flows that can never be installed (table 255), left out of the plan.
    pub skipped: Vec<FlowMod>,
}

impl ResyncPlan {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.deletes.is_empty() && self.changed.is_empty()
    }

    /// The flow_mods in the order to apply them: adds, then replacements, then deletes. Send
    /// them in one bundle (`Conn::bundle`): OVS applies it atomically and in order, so a table is
    /// never without its flows.
    pub fn messages(&self) -> Vec<Message> {
        self.adds
            .iter()
            .chain(self.changed.iter().map(|(f, _)| f))
            .chain(self.deletes.iter())
            .map(|f| Message::FlowMod(f.clone()))
            .collect()
    }
}

// === identity ===

/// A match in OVS's normal form: (field, value, mask) by field, the mask always explicit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    entries: BTreeMap<Field, (u128, u128)>,
    unknown: Vec<Vec<u8>>,
}

fn ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl MatchKey {
    /// The normal form of `m`: order-free; masks ANDed to the field's width (and to the bits OVS
    /// keeps for ct_state, tun_flags, ip_frag); an all-ones mask equals no mask; values ANDed
    /// with masks; all-zero masks dropped; `xreg`/`xxreg` split into their 32-bit registers;
    /// NXM `in_port` as the OXM 32-bit port; `nw_tos` as `ip_dscp`; VLAN as OVS's TCI.
    pub fn new(m: &Match) -> MatchKey {
        let mut entries: BTreeMap<Field, (u128, u128)> = BTreeMap::new();
        let mut put = |f: Field, v: u128, mask: u128| {
            if mask == 0 {
                return;
            }
            let e = entries.entry(f).or_insert((0, 0));
            e.0 = (e.0 & !mask) | (v & mask);
            e.1 |= mask;
        };
        let mut tci: Option<(u128, u128)> = None;
        for e in &m.entries {
            let f = e.field;
            let mut full = ones(f.bits() as u32) & ones(8 * f.bytes() as u32);
            if f == Field::CT_STATE {
                full &= 0xff;
            } else if f == Field::TUN_FLAGS {
                full &= 0x1;
            } else if f == Field::IP_FRAG {
                full &= 0x3;
            }
            let mask = e.mask.map(|m| m.to_u128()).unwrap_or(full) & full;
            let v = e.value.to_u128() & mask;
            let regs = |base: Field, first: Field, n: u32| ((f.0 - base.0) as u32 * n, first);
            let split = if (Field::REG0.0..=Field::REG15.0).contains(&f.0) {
                Some((regs(Field::REG0, Field::REG0, 1), 1))
            } else if (Field::XREG0.0..=Field::XREG7.0).contains(&f.0) {
                Some((regs(Field::XREG0, Field::REG0, 2), 2))
            } else if (Field::XXREG0.0..=Field::XXREG3.0).contains(&f.0) {
                Some((regs(Field::XXREG0, Field::REG0, 4), 4))
            } else {
                None
            };
            if let Some(((base, reg0), n)) = split {
                for i in 0..n {
                    let shift = 32 * (n - 1 - i);
                    let r = Field(reg0.0 + (base + i) as u16);
                    put(r, (v >> shift) & 0xffff_ffff, (mask >> shift) & 0xffff_ffff);
                }
            } else if f == Field::IN_PORT {
                put(Field::IN_PORT_OXM, port_to_ofp11(v as u16) as u128, 0xffff_ffff);
            } else if f == Field::IP_DSCP_SHIFTED {
                put(Field::IP_DSCP, (v >> 2) & 0x3f, (mask >> 2) & 0x3f);
            } else if f == Field::VLAN_TCI || f == Field::VLAN_VID || f == Field::VLAN_PCP {
                let (tv, tm) = tci.get_or_insert((0, 0));
                if f == Field::VLAN_TCI {
                    (*tv, *tm) = (v & 0xffff, mask & 0xffff);
                } else if f == Field::VLAN_VID {
                    *tv |= v & 0x1fff;
                    *tm |= mask & 0x1fff;
                } else {
                    *tv |= ((v & 7) << 13) | 0x1000;
                    *tm |= 0xe000 | 0x1000;
                }
            } else {
                put(f, v, mask);
            }
        }
        if let Some((v, m)) = tci {
            put(Field::VLAN_TCI, v & m, m);
        }
        let mut unknown = m.unknown.clone();
        unknown.sort();
        MatchKey { entries, unknown }
    }
}

/// A flow entry's identity as OVS defines it: table, priority and match (what a strict
/// modify or delete names). Not a packet's flow key: that is `packet::FlowKey`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowIdentity {
    pub table_id: u8,
    pub priority: u16,
    pub r#match: MatchKey,
}

impl FlowIdentity {
    pub fn new(table_id: u8, priority: u16, m: &Match) -> FlowIdentity {
        FlowIdentity { table_id, priority, r#match: MatchKey::new(m) }
    }

    pub fn of_flow_mod(f: &FlowMod) -> FlowIdentity {
        FlowIdentity::new(f.table_id, f.priority, &f.r#match)
    }

    pub fn of_stats(f: &FlowStats) -> FlowIdentity {
        FlowIdentity::new(f.table_id, f.priority, &f.r#match)
    }
}

/// Whether two instruction lists do the same: the same bytes, or failing that the same text
/// in OVS's syntax (which is what OVS's normal form prints; e.g. an empty apply_actions and no
/// instruction both print `drop`).
pub fn same_instructions(a: &[Instruction], b: &[Instruction]) -> bool {
    let enc = |l: &[Instruction]| {
        let mut v = Vec::new();
        Instruction::encode_list(l, &mut v);
        v
    };
    enc(a) == enc(b) || format_instructions(a) == format_instructions(b)
}

// === what differed ===

const D_INSTRUCTIONS: usize = 1;
const D_COOKIE: usize = 2;
const D_IDLE: usize = 4;
const D_HARD: usize = 8;
const D_FLAGS: usize = 16;

/// Every combination of differences, by bit (instructions, cookie, idle, hard, flags).
const DIFF_NAMES: [&str; 32] = [
    "",
    "instructions",
    "cookie",
    "instructions+cookie",
    "idle_timeout",
    "instructions+idle_timeout",
    "cookie+idle_timeout",
    "instructions+cookie+idle_timeout",
    "hard_timeout",
    "instructions+hard_timeout",
    "cookie+hard_timeout",
    "instructions+cookie+hard_timeout",
    "idle_timeout+hard_timeout",
    "instructions+idle_timeout+hard_timeout",
    "cookie+idle_timeout+hard_timeout",
    "instructions+cookie+idle_timeout+hard_timeout",
    "flags",
    "instructions+flags",
    "cookie+flags",
    "instructions+cookie+flags",
    "idle_timeout+flags",
    "instructions+idle_timeout+flags",
    "cookie+idle_timeout+flags",
    "instructions+cookie+idle_timeout+flags",
    "hard_timeout+flags",
    "instructions+hard_timeout+flags",
    "cookie+hard_timeout+flags",
    "instructions+cookie+hard_timeout+flags",
    "idle_timeout+hard_timeout+flags",
    "instructions+idle_timeout+hard_timeout+flags",
    "cookie+idle_timeout+hard_timeout+flags",
    "instructions+cookie+idle_timeout+hard_timeout+flags",
];

/// What differs between a desired flow and the switch's flow of the same identity (`""` when
/// nothing does).
pub fn difference(desired: &FlowMod, actual: &FlowStats) -> &'static str {
    let mut d = 0;
    if !same_instructions(&desired.instructions, &actual.instructions) {
        d |= D_INSTRUCTIONS;
    }
    if desired.cookie != actual.cookie {
        d |= D_COOKIE;
    }
    if desired.idle_timeout != actual.idle_timeout {
        d |= D_IDLE;
    }
    if desired.hard_timeout != actual.hard_timeout {
        d |= D_HARD;
    }
    if desired.flags & STATE_FLAGS != actual.flags & STATE_FLAGS {
        d |= D_FLAGS;
    }
    DIFF_NAMES[d]
}

// === plan ===

/// The flow_mods that make the switch (`actual`, a flow-stats dump of all tables) hold exactly
/// `desired`, deleting only stale flows of the categories `policy` manages. Desired flows are
/// sent as given, as ADDs; of several with one identity the last wins (as it would in an ordered
/// bundle). Table 255 is never touched: desired flows there are `skipped`, switch flows there
/// are ignored (a delete naming it would hit every table).
pub fn plan(desired: &[FlowMod], actual: &[FlowStats], policy: &ResyncPolicy) -> ResyncPlan {
    let mut out = ResyncPlan::default();
    // Desired flows by identity, the last of duplicates winning, kept in first-seen order.
    let mut want: Vec<(FlowIdentity, FlowMod)> = Vec::with_capacity(desired.len());
    let mut index: HashMap<FlowIdentity, usize> = HashMap::with_capacity(desired.len());
    for d in desired {
        if d.table_id == ALL_TABLES {
            out.skipped.push(d.clone());
            continue;
        }
        let mut fm = d.clone();
        fm.command = FlowModCommand::Add;
        let key = FlowIdentity::of_flow_mod(&fm);
        match index.get(&key) {
            Some(&i) => want[i].1 = fm,
            None => {
                index.insert(key.clone(), want.len());
                want.push((key, fm));
            }
        }
    }
    let mut have: HashMap<FlowIdentity, &FlowStats> = HashMap::with_capacity(actual.len());
    for a in actual {
        if a.table_id == ALL_TABLES {
            continue;
        }
        let key = FlowIdentity::of_stats(a);
        if index.contains_key(&key) {
            have.insert(key, a);
        } else if policy.may_delete(a.cookie) {
            out.deletes.push(delete_strict(a));
        }
    }
    for (key, fm) in want {
        match have.get(&key) {
            None => out.adds.push(fm),
            Some(a) => match difference(&fm, a) {
                "" => out.unchanged += 1,
                what => out.changed.push((fm, what)),
            },
        }
    }
    out
}

/// DELETE_STRICT of exactly the switch's flow `a`: its table, priority, match, and its cookie
/// with a full mask.
pub fn delete_strict(a: &FlowStats) -> FlowMod {
    let mut fm = FlowMod::new(FlowModCommand::DeleteStrict);
    fm.table_id = a.table_id;
    fm.priority = a.priority;
    fm.r#match = a.r#match.clone();
    fm.cookie = a.cookie;
    fm.cookie_mask = u64::MAX;
    fm.out_port = ANY;
    fm.out_group = ANY;
    fm
}

/// The switch's flow `a` as the ADD that installs it as it is (cookie, timeouts, state flags,
/// match, instructions).
pub fn to_flow_mod(a: &FlowStats) -> FlowMod {
    let mut fm = FlowMod::new(FlowModCommand::Add);
    fm.cookie = a.cookie;
    fm.table_id = a.table_id;
    fm.priority = a.priority;
    fm.idle_timeout = a.idle_timeout;
    fm.hard_timeout = a.hard_timeout;
    fm.flags = a.flags & STATE_FLAGS;
    fm.r#match = a.r#match.clone();
    fm.instructions = a.instructions.clone();
    fm
}

/// The switch's flows of `category`, as ADDs: what a restarted daemon takes over (e.g. the live
/// connection flows) instead of deleting them. Put them in the desired set and they come out
/// of [`plan`] unchanged. (Re-sending one resets its hard timeout: OVS restarts timeouts on an
/// ADD that replaces a flow; plan does not re-send unchanged flows.)
pub fn adopt(actual: &[FlowStats], category: Category) -> Vec<FlowMod> {
    actual
        .iter()
        .filter(|a| a.table_id != ALL_TABLES && cookie::category(a.cookie) == Some(category))
        .map(to_flow_mod)
        .collect()
}

/// The cookie generation of a desired pipeline: a stable hash (FNV-1a, 64 bits folded to 16)
/// of its flow texts, order-free, never 0. Hash the texts *without* generation in their cookies
/// (built with generation 0): the same config gives the same generation, so its flows are
/// byte-identical to the installed ones and a resync sends nothing; a changed config gives
/// (almost always) another generation, which marks the old flows stale in `dump-flows`.
/// (A collision only keeps the old cookies of flows whose identity did not change; plan still
/// finds every other difference.)
pub fn generation_of(desired_texts: &[String]) -> u16 {
    let mut texts: Vec<&str> = desired_texts.iter().map(String::as_str).collect();
    texts.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in texts {
        for b in t.as_bytes().iter().chain(std::iter::once(&b'\n')) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let g = (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16;
    if g == 0 {
        1
    } else {
        g
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
