//! Packet-in meters: one OpenFlow meter per class of pipeline flows that send packets to the
//! controller, so that a flood of one class is dropped at the switch (and counted in the meter's
//! band statistics) before it reaches a shard, and cannot crowd out the other classes.
//!
//! | class | meter id | flows carrying `meter:N` |
//! | --- | --- | --- |
//! | new connections | [`NEW_CONNECTIONS`] (1) | table 0 priority 90 (service range), table 3 priority 0 (policy miss) |
//! | ARP | [`ARP`] (2) | table 20 priority 50 (`arp = "controller"` only) |
//! | other | [`OTHER`] (3) | table 0 priority 0 (the dispatch table miss) |
//!
//! Each meter is `pktps,stats` with one drop band at the configured rate
//! (`[pipeline.meters]`, [`PacketInMeters`]); a rate of 0 means no meter and no `meter:`
//! instruction for that class. Meters 1-3 belong to shardflow on a bridge with the pipeline:
//! [`plan`] adds, modifies or deletes them to match the configuration and leaves every other
//! meter alone.
//!
//! Meter mods cannot go in an ONF bundle (OVS bundles flow, group and port mods only), so they
//! are applied around the flows' bundle: adds and modifies before it (a flow that names a meter
//! the switch lacks is refused), deletes after it (OVS deletes the flows that use a deleted
//! meter, so the flows must have stopped naming it first).

use crate::openflow::message::meter::{meter_command, MeterBand, MeterConfig, MeterMod, METER_BURST};
use crate::openflow::text::meter::{parse_meter_mod, MeterCommand};

use super::default::PacketInMeters;

/// Meter of first packets of connections (service range and policy misses).
pub const NEW_CONNECTIONS: u32 = 1;
/// Meter of ARP requests sent to the controller.
pub const ARP: u32 = 2;
/// Meter of the table-0 miss (everything the classifier does not know).
pub const OTHER: u32 = 3;
/// The meter ids the pipeline owns, with their class names (`dump-meters` shows the ids).
pub const OWNED: [(u32, &str); 3] = [(NEW_CONNECTIONS, "new_connections"), (ARP, "arp"), (OTHER, "other")];

/// The rate of meter `id` in `cfg` (0: disabled).
fn rate(cfg: &PacketInMeters, id: u32) -> u32 {
    match id {
        NEW_CONNECTIONS => cfg.new_connections_pps,
        ARP => cfg.arp_pps,
        OTHER => cfg.other_pps,
        _ => 0,
    }
}

/// The meter id the flows of class `id` carry: `Some(id)` when its rate is not 0.
pub fn meter_of(cfg: &PacketInMeters, id: u32) -> Option<u32> {
    (rate(cfg, id) != 0).then_some(id)
}

/// The enabled meters in `ovs-ofctl add-meter` syntax (`meter=1,pktps,stats,band=type=drop,rate=N`).
pub fn meter_texts(cfg: &PacketInMeters) -> Vec<String> {
    OWNED
        .iter()
        .filter(|(id, _)| rate(cfg, *id) != 0)
        .map(|(id, _)| format!("meter={id},pktps,stats,band=type=drop,rate={}", rate(cfg, *id)))
        .collect()
}

/// The enabled meters as METER_MOD ADDs (parsed from [`meter_texts`], so they are what
/// `ovs-ofctl -O OpenFlow13 add-meter` sends for the same text).
pub fn meter_mods(cfg: &PacketInMeters) -> Vec<MeterMod> {
    meter_texts(cfg).iter().filter_map(|t| parse_meter_mod(t, MeterCommand::Add).ok()).collect()
}

/// What to send so that the switch's meters 1-3 are the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterPlan {
    /// ADDs of missing meters and MODIFYs of changed ones: before the flows.
    pub before: Vec<MeterMod>,
    /// DELETEs of owned meters no longer configured: after the flows stopped naming them.
    pub after: Vec<MeterMod>,
    /// Desired meters already on the switch as desired.
    pub unchanged: usize,
}

impl MeterPlan {
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// A band as compared: without the burst size unless the meter has `OFPMF_BURST` (OVS's
/// datapath fills in a burst of one second's rate when none is given).
fn normal_bands(flags: u16, bands: &[MeterBand]) -> Vec<MeterBand> {
    bands
        .iter()
        .map(|b| match b.clone() {
            MeterBand::Drop { rate, .. } if flags & METER_BURST == 0 => MeterBand::Drop { rate, burst_size: 0 },
            other => other,
        })
        .collect()
}

/// Compares `desired` (ADDs, ids among [`OWNED`]) with the switch's meter configurations
/// (`actual`, an OFPMP_METER_CONFIG dump of all meters): missing ones are added, different ones
/// modified, owned ids not desired deleted; meters with other ids are never touched.
pub fn plan(desired: &[MeterMod], actual: &[MeterConfig]) -> MeterPlan {
    let mut out = MeterPlan::default();
    for d in desired {
        match actual.iter().find(|a| a.meter_id == d.meter_id) {
            None => out.before.push(MeterMod { command: meter_command::ADD, ..d.clone() }),
            Some(a) if a.flags == d.flags && normal_bands(a.flags, &a.bands) == normal_bands(d.flags, &d.bands) => {
                out.unchanged += 1
            }
            Some(_) => out.before.push(MeterMod { command: meter_command::MODIFY, ..d.clone() }),
        }
    }
    for (id, _) in OWNED {
        if actual.iter().any(|a| a.meter_id == id) && !desired.iter().any(|d| d.meter_id == id) {
            out.after.push(MeterMod { command: meter_command::DELETE, flags: 0, meter_id: id, bands: Vec::new() });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openflow::message::meter::{METER_PKTPS, METER_STATS};
    use crate::openflow::message::Message;
    use crate::openflow::text::meter::format_meter_mod;
    use crate::oracle;

    fn config(m: &MeterMod) -> MeterConfig {
        MeterConfig { flags: m.flags, meter_id: m.meter_id, bands: m.bands.clone() }
    }

    #[test]
    fn texts_follow_the_rates_and_zero_disables() {
        let cfg = PacketInMeters { new_connections_pps: 500, arp_pps: 0, other_pps: 7 };
        assert_eq!(
            meter_texts(&cfg),
            vec![
                "meter=1,pktps,stats,band=type=drop,rate=500".to_string(),
                "meter=3,pktps,stats,band=type=drop,rate=7".to_string()
            ]
        );
        assert_eq!(
            (meter_of(&cfg, NEW_CONNECTIONS), meter_of(&cfg, ARP), meter_of(&cfg, OTHER)),
            (Some(1), None, Some(3))
        );
        assert!(meter_texts(&PacketInMeters::OFF).is_empty());
        let mods = meter_mods(&cfg);
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].flags, METER_PKTPS | METER_STATS);
        assert_eq!(mods[0].bands, vec![MeterBand::Drop { rate: 500, burst_size: 0 }]);
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn meter_mods_are_what_ovs_reads() {
        assert!(oracle::available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
        for mm in meter_mods(&PacketInMeters::default()) {
            let bytes = crate::openflow::message::encode(&Message::MeterMod(mm.clone()), 1);
            let printed = oracle::ofp_print(&bytes).unwrap();
            let want = format!("OFPT_METER_MOD (OF1.3) (xid=0x1): {}", format_meter_mod(&mm));
            assert_eq!(printed.trim(), want, "{mm:?}");
            assert!(printed.contains("pktps stats bands=\ntype=drop rate="), "{printed}");
        }
    }

    #[test]
    fn plan_adds_modifies_keeps_and_deletes_only_owned_meters() {
        let want = meter_mods(&PacketInMeters { new_connections_pps: 100, arp_pps: 50, other_pps: 0 });
        // Nothing on the switch: both added.
        let p = plan(&want, &[]);
        assert_eq!(p.before, want);
        assert!(p.after.is_empty());
        // Meter 1 as desired (OVS filled in a burst size), meter 2 at another rate, meter 3 stale,
        // meter 9 the operator's.
        let mut m2 = config(&want[1]);
        m2.bands = vec![MeterBand::Drop { rate: 60, burst_size: 0 }];
        let mut m1 = config(&want[0]);
        m1.bands = vec![MeterBand::Drop { rate: 100, burst_size: 100 }];
        let m3 =
            MeterConfig { flags: METER_PKTPS, meter_id: 3, bands: vec![MeterBand::Drop { rate: 1, burst_size: 0 }] };
        let m9 = MeterConfig { meter_id: 9, ..m3.clone() };
        let p = plan(&want, &[m1, m2, m3, m9]);
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.before.len(), 1);
        assert_eq!((p.before[0].command, p.before[0].meter_id), (meter_command::MODIFY, 2));
        assert_eq!(p.after.len(), 1);
        assert_eq!((p.after[0].command, p.after[0].meter_id), (meter_command::DELETE, 3));
        // Everything in place: nothing to send.
        let all: Vec<MeterConfig> = want.iter().map(config).collect();
        assert!(plan(&want, &all).is_empty());
    }
}
