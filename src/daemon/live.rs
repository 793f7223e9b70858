//! The flows a switch should have beyond the fixed pipeline: what was installed through the
//! FlowManager (per-connection flows, flows added by hand), remembered per switch by the shard
//! that installs them. A resync after an ovs-vswitchd restart (empty tables) puts them back in
//! the same bundle as the pipeline; after a daemon restart they are adopted from the switch.
//!
//! Loose MODIFY and DELETE are applied to the remembered flows the way OVS applies them for the
//! cases the controller sends (whole table, cookie under a mask, an identical match); a loose
//! match that selects flows by a subset of their fields is not modelled and leaves the store
//! unchanged (the next resync still deletes nothing it does not own).

use std::collections::HashMap;

use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::message::Message;
use crate::pipeline::cookie::{self, Category};
use crate::pipeline::resync::FlowIdentity;

const ALL_TABLES: u8 = 0xff;

#[derive(Debug, Default)]
pub struct LiveFlows {
    by_dpid: HashMap<u64, HashMap<FlowIdentity, FlowMod>>,
}

impl LiveFlows {
    /// Remembers the effect of messages the switch accepted.
    pub fn record(&mut self, dpid: u64, msgs: &[Message]) {
        let flows = self.by_dpid.entry(dpid).or_default();
        for m in msgs {
            let Message::FlowMod(fm) = m else { continue };
            // The fixed pipeline is desired state already; it is not "live".
            if matches!(cookie::category(fm.cookie), Some(Category::Dispatch | Category::Pipeline)) {
                continue;
            }
            let key = FlowIdentity::of_flow_mod(fm);
            match fm.command {
                FlowModCommand::Add => {
                    let mut add = fm.clone();
                    add.cookie_mask = 0;
                    flows.insert(key, add);
                }
                FlowModCommand::ModifyStrict => {
                    if let Some(f) = flows.get_mut(&key) {
                        if cookie_matches(f.cookie, fm) {
                            f.instructions = fm.instructions.clone();
                        }
                    }
                }
                FlowModCommand::Modify => {
                    for (k, f) in flows.iter_mut() {
                        if loose_selects(k, f, fm, &key) {
                            f.instructions = fm.instructions.clone();
                        }
                    }
                }
                FlowModCommand::DeleteStrict => {
                    if flows.get(&key).is_some_and(|f| cookie_matches(f.cookie, fm)) {
                        flows.remove(&key);
                    }
                }
                FlowModCommand::Delete => flows.retain(|k, f| !loose_selects(k, f, fm, &key)),
                FlowModCommand::Unknown(_) => {}
            }
        }
    }

    /// Takes over flows found on the switch (after a daemon restart) that are not known yet.
    pub fn adopt(&mut self, dpid: u64, found: Vec<FlowMod>) -> usize {
        let flows = self.by_dpid.entry(dpid).or_default();
        let mut n = 0;
        for f in found {
            flows.entry(FlowIdentity::of_flow_mod(&f)).or_insert_with(|| {
                n += 1;
                f
            });
        }
        n
    }

    /// Cookies of remembered connection flows whose match names one of `ips` (as IPv4 or IPv6
    /// source or destination), or of every connection flow when `all`.
    pub fn connection_cookies(&self, ips: &[std::net::IpAddr], all: bool) -> Vec<u64> {
        use crate::openflow::field::Field;
        let mut out = Vec::new();
        for flows in self.by_dpid.values() {
            for f in flows.values() {
                if cookie::category(f.cookie) != Some(Category::Connection) {
                    continue;
                }
                let hit = all
                    || [Field::IPV4_SRC, Field::IPV4_DST, Field::IPV6_SRC, Field::IPV6_DST].iter().any(|fld| {
                        f.r#match.get(*fld).is_some_and(|e| {
                            let b = e.value.as_bytes();
                            ips.iter().any(|ip| match ip {
                                std::net::IpAddr::V4(v4) => b == v4.octets(),
                                std::net::IpAddr::V6(v6) => b == v6.octets(),
                            })
                        })
                    });
                if hit {
                    out.push(f.cookie);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Forgets every flow with exactly this cookie, on every switch; returns how many.
    pub fn remove_cookie(&mut self, cookie: u64) -> usize {
        let mut n = 0;
        for flows in self.by_dpid.values_mut() {
            let before = flows.len();
            flows.retain(|_, f| f.cookie != cookie);
            n += before - flows.len();
        }
        n
    }

    pub fn flows(&self, dpid: u64) -> Vec<FlowMod> {
        self.by_dpid.get(&dpid).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    pub fn len(&self, dpid: u64) -> usize {
        self.by_dpid.get(&dpid).map_or(0, |m| m.len())
    }
}

fn cookie_matches(cookie: u64, fm: &FlowMod) -> bool {
    cookie & fm.cookie_mask == fm.cookie & fm.cookie_mask
}

/// Whether a loose MODIFY/DELETE `fm` (whose own identity is `fm_key`) selects the remembered
/// flow `f`: same table (or all tables for a delete), cookie under the mask, and a match that
/// is empty (all flows) or identical. The priority does not matter to a loose command.
fn loose_selects(k: &FlowIdentity, f: &FlowMod, fm: &FlowMod, fm_key: &FlowIdentity) -> bool {
    let table_ok = fm.table_id == ALL_TABLES || fm.table_id == k.table_id;
    let match_ok = fm.r#match.entries.is_empty() || fm_key.r#match == k.r#match;
    table_ok && match_ok && cookie_matches(f.cookie, fm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(text: &str, cmd: FlowModCommand) -> Message {
        Message::FlowMod(FlowMod::parse(text, cmd).expect("valid flow"))
    }

    #[test]
    fn records_adds_modifies_and_deletes() {
        let mut live = LiveFlows::default();
        live.record(
            1,
            &[
                fm(
                    "table=3,priority=100,cookie=0x0001030000000001,tcp,tp_dst=80,actions=output:2",
                    FlowModCommand::Add,
                ),
                fm(
                    "table=3,priority=100,cookie=0x0001030000000002,tcp,tp_dst=81,actions=output:2",
                    FlowModCommand::Add,
                ),
                fm("table=4,priority=1,cookie=0x77,actions=drop", FlowModCommand::Add),
                // Pipeline flows are not live state.
                fm("table=1,priority=1,cookie=0x0001020000000009,actions=drop", FlowModCommand::Add),
            ],
        );
        assert_eq!(live.len(1), 3);
        live.record(1, &[fm("table=3,priority=100,tcp,tp_dst=80,actions=output:3", FlowModCommand::ModifyStrict)]);
        let f = live.flows(1);
        let changed = f.iter().find(|f| f.to_flow_text().contains("tp_dst=80")).expect("kept");
        assert!(changed.to_flow_text().ends_with("actions=output:3"), "{}", changed.to_flow_text());
        // Delete by cookie under a mask, in every table.
        live.record(1, &[fm("cookie=0x0000030000000000/0x0000ff0000000000", FlowModCommand::Delete)]);
        assert_eq!(live.len(1), 1);
        live.record(1, &[fm("table=4,priority=1", FlowModCommand::DeleteStrict)]);
        assert_eq!(live.len(1), 0);
        assert_eq!(live.len(2), 0);
    }

    #[test]
    fn adopts_only_unknown_flows() {
        let mut live = LiveFlows::default();
        live.record(1, &[fm("table=3,priority=100,tcp,tp_dst=80,actions=output:2", FlowModCommand::Add)]);
        let found = vec![
            FlowMod::parse("table=3,priority=100,tcp,tp_dst=80,actions=output:9", FlowModCommand::Add).expect("ok"),
            FlowMod::parse("table=3,priority=100,udp,tp_dst=53,actions=output:2", FlowModCommand::Add).expect("ok"),
        ];
        assert_eq!(live.adopt(1, found), 1);
        assert_eq!(live.len(1), 2);
    }
}
