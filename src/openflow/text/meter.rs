//! Meters as `ovs-ofctl` text, both ways: `add-meter`/`mod-meter`/`del-meters` syntax into a
//! [`MeterMod`] (OVS's `parse_ofp_meter_mod_str`), and a meter as `ofp-print` and `dump-meters`
//! print it.
//!
//! ```
//! use shardflow::openflow::text::meter::{format_meter_mod, parse_meter_mod, MeterCommand};
//!
//! let mm = parse_meter_mod("meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100", MeterCommand::Add).unwrap();
//! assert_eq!(format_meter_mod(&mm), "ADD meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100");
//! ```

use crate::openflow::error::TextError;
use crate::openflow::message::meter::{
    meter_command, MeterBand, MeterConfig, MeterMod, METER_ALL, METER_BURST, METER_KBPS, METER_PKTPS, METER_STATS,
};
use crate::openflow::text::group::{str_to_u32, str_to_uint};

/// OFPM13_MAX: the highest id of an ordinary meter.
const METER_MAX: u32 = 0xffff_0000;
/// OFPM13_SLOWPATH and OFPM13_CONTROLLER, the virtual meters.
const METER_SLOWPATH: u32 = 0xffff_fffd;
const METER_CONTROLLER: u32 = 0xffff_fffe;

/// The command of a METER_MOD, as `ovs-ofctl add-meter`, `mod-meter` and `del-meters` send it.
/// On the wire it is [`MeterMod::command`] (`meter_command::ADD`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterCommand {
    Add,
    Modify,
    Delete,
}

impl From<MeterCommand> for u16 {
    fn from(c: MeterCommand) -> u16 {
        match c {
            MeterCommand::Add => meter_command::ADD,
            MeterCommand::Modify => meter_command::MODIFY,
            MeterCommand::Delete => meter_command::DELETE,
        }
    }
}

impl TryFrom<u16> for MeterCommand {
    type Error = u16;
    fn try_from(c: u16) -> Result<MeterCommand, u16> {
        match c {
            meter_command::ADD => Ok(MeterCommand::Add),
            meter_command::MODIFY => Ok(MeterCommand::Modify),
            meter_command::DELETE => Ok(MeterCommand::Delete),
            n => Err(n),
        }
    }
}

// === printing ===

/// What `ovs-ofctl ofp-print` prints for a METER_MOD after `OFPT_METER_MOD (OF1.3) (xid=0x1): `
/// (`ADD meter=1 kbps bands=\ntype=drop rate=1000`).
pub fn format_meter_mod(mm: &MeterMod) -> String {
    let body = mm.fmt_body();
    body.strip_prefix(' ').map(str::to_string).unwrap_or(body)
}

/// One meter as `ovs-ofctl -O OpenFlow13 dump-meters` prints it, one line for the meter and
/// one per band, without the blank line that follows (`meter=1 kbps bands=\ntype=drop rate=1000`).
pub fn format_meter_config(mc: &MeterConfig) -> String {
    let body = mc.fmt();
    let body = body.strip_prefix('\n').unwrap_or(&body);
    body.strip_suffix('\n').unwrap_or(body).to_string()
}

// === parsing ===

/// C `strtok_r`: tokens separated by any run of `delims`; the delimiter ending a token is used up.
struct Strtok<'a> {
    rest: &'a str,
}

impl<'a> Strtok<'a> {
    fn next(&mut self, delims: &str) -> Option<&'a str> {
        let s = self.rest.trim_start_matches(|c| delims.contains(c));
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let end = s.find(|c| delims.contains(c)).unwrap_or(s.len());
        // Skip the one delimiter that ended the token (it is ASCII).
        self.rest = &s[(end + 1).min(s.len())..];
        Some(&s[..end])
    }
}

const NAME_DELIMS: &str = "=, \t\r\n";
const VALUE_DELIMS: &str = ", \t\r\n";

/// A band under construction: OVS's `ofputil_meter_band`.
#[derive(Default)]
struct Band {
    /// 1 drop, 2 dscp_remark.
    band_type: u16,
    rate: u32,
    burst_size: u32,
    prec_level: u8,
}

/// Parses `ovs-ofctl` meter text (`meter=1,kbps,burst,stats,band=type=drop,rate=1000,burst_size=100`)
/// into a METER_MOD with `command`, as `ovs-ofctl -O OpenFlow13 add-meter`, `mod-meter` and
/// `del-meters` read it. A delete takes only `meter=N|all`; empty text means every meter (what
/// `ovs-ofctl del-meters BRIDGE` sends).
pub fn parse_meter_mod(text: &str, command: MeterCommand) -> Result<MeterMod, TextError> {
    let with_bands = command != MeterCommand::Delete;
    let mut mm = MeterMod { command: command.into(), flags: 0, meter_id: 0, bands: Vec::new() };
    if !with_bands && text.is_empty() {
        mm.meter_id = METER_ALL;
        return Ok(mm);
    }

    let (head, bands_text) = if with_bands {
        let i = text.find("band").ok_or_else(|| TextError::new(text, "must specify bands"))?;
        let after = &text[i + 1..];
        let eq = after.find('=').ok_or_else(|| TextError::new(text, "must specify bands"))?;
        (&text[..i], &after[eq + 1..])
    } else {
        (text, "")
    };

    let mut tok = Strtok { rest: head };
    while let Some(name) = tok.next(NAME_DELIMS) {
        let flag = match name {
            "kbps" => METER_KBPS,
            "pktps" => METER_PKTPS,
            "burst" => METER_BURST,
            "stats" => METER_STATS,
            _ => 0,
        };
        if with_bands && flag != 0 {
            mm.flags |= flag;
            continue;
        }
        let value =
            tok.next(VALUE_DELIMS).ok_or_else(|| TextError::new(name, format!("field {name} missing value")))?;
        if name != "meter" {
            return Err(TextError::new(name, format!("unknown keyword {name}")));
        }
        mm.meter_id = match value {
            "all" => METER_ALL,
            "controller" => METER_CONTROLLER,
            "slowpath" => METER_SLOWPATH,
            _ => {
                let id = str_to_u32(value)?;
                if id > METER_MAX || id == 0 {
                    return Err(TextError::new(value, "invalid value for meter"));
                }
                id
            }
        };
    }
    if mm.meter_id == 0 {
        return Err(TextError::new(text, "must specify 'meter'"));
    }
    if !with_bands {
        return Ok(mm);
    }
    if mm.flags == 0 {
        return Err(TextError::new(text, "meter must specify either 'kbps' or 'pktps'"));
    }

    let mut bands: Vec<Band> = Vec::new();
    let mut tok = Strtok { rest: bands_text };
    while let Some(name) = tok.next(NAME_DELIMS) {
        let value =
            tok.next(VALUE_DELIMS).ok_or_else(|| TextError::new(name, format!("field {name} missing value")))?;
        if name == "type" {
            let band_type = match value {
                "drop" => 1,
                "dscp_remark" => 2,
                _ => return Err(TextError::new(value, format!("field {name} unknown value {value}"))),
            };
            bands.push(Band { band_type, ..Band::default() });
            continue;
        }
        let band = bands.last_mut().ok_or_else(|| TextError::new(name, "band must start with the 'type' keyword"))?;
        match name {
            "rate" => band.rate = str_to_u32(value)?,
            "burst_size" => band.burst_size = str_to_u32(value)?,
            "prec_level" => band.prec_level = str_to_uint(value, name, u8::MAX as i64)? as u8,
            _ => return Err(TextError::new(name, format!("unknown keyword {name}"))),
        }
    }
    if bands.is_empty() {
        return Err(TextError::new(bands_text, "meter must have bands"));
    }
    for b in &bands {
        let fail = |why: &str| Err(TextError::new(bands_text, why));
        if b.band_type == 2 && b.prec_level == 0 {
            return fail("'dscp_remark' band must have 'prec_level'");
        }
        if b.band_type != 2 && b.prec_level != 0 {
            return fail("Only 'dscp_remark' band may have 'prec_level'");
        }
        if b.rate == 0 {
            return fail("band must have 'rate'");
        }
        if mm.flags & METER_BURST != 0 && b.burst_size == 0 {
            return fail("band must have 'burst_size' when 'burst' flag is set");
        }
        if mm.flags & METER_BURST == 0 && b.burst_size != 0 {
            return fail("band may have 'burst_size' only when 'burst' flag is set");
        }
    }
    mm.bands = bands
        .into_iter()
        .map(|b| match b.band_type {
            2 => MeterBand::DscpRemark { rate: b.rate, burst_size: b.burst_size, prec_level: b.prec_level },
            _ => MeterBand::Drop { rate: b.rate, burst_size: b.burst_size },
        })
        .collect();
    Ok(mm)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openflow::message::{encode, Message};
    use crate::oracle;

    /// Our METER_MOD for `text`, printed by OVS, is `expected` (OVS has no `parse-meter`).
    fn ovs_prints(text: &str, command: MeterCommand, expected: &str) {
        let mm = parse_meter_mod(text, command).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let bytes = encode(&Message::MeterMod(mm.clone()), 1);
        let printed = oracle::ofp_print(&bytes).unwrap_or_else(|e| panic!("{text}: OVS cannot print it: {e}"));
        assert_eq!(printed, format!("OFPT_METER_MOD (OF1.3) (xid=0x1): {expected}"), "{text}");
        assert_eq!(format_meter_mod(&mm), expected, "{text}");
        // And back: what we print, as add-meter text, is the same meter again.
        if command != MeterCommand::Delete {
            let again = expected.split_once(' ').unwrap().1.replace("\n", " ").replace(" bands= ", " bands=");
            assert_eq!(parse_meter_mod(&again, command).unwrap(), mm, "{again}");
        }
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn meter_mods_print_as_ovs_prints_them() {
        assert!(oracle::available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
        use MeterCommand::*;
        ovs_prints("meter=1,kbps,band=type=drop,rate=1000", Add, "ADD meter=1 kbps bands=\ntype=drop rate=1000");
        ovs_prints(
            "meter=2,pktps,burst,stats,bands=type=drop,rate=100,burst_size=10",
            Add,
            "ADD meter=2 pktps burst stats bands=\ntype=drop rate=100 burst_size=10",
        );
        ovs_prints(
            "meter=3 kbps stats band=type=dscp_remark rate=500 prec_level=2 type=drop rate=1000",
            Modify,
            "MOD meter=3 kbps stats bands=\ntype=dscp_remark rate=500 prec_level=2\ntype=drop rate=1000",
        );
        ovs_prints(
            "meter=0x10,kbps,burst,band=type=drop,rate=0x100,burst_size=010",
            Add,
            "ADD meter=16 kbps burst bands=\ntype=drop rate=256 burst_size=8",
        );
        ovs_prints(
            "meter=controller,pktps,band=type=drop,rate=10",
            Add,
            "ADD meter=controller pktps bands=\ntype=drop rate=10",
        );
        ovs_prints(
            "meter=slowpath,pktps,band=type=drop,rate=10",
            Add,
            "ADD meter=slowpath pktps bands=\ntype=drop rate=10",
        );
        ovs_prints("meter=5", Delete, "DEL meter=5 bands=");
        ovs_prints("meter=all", Delete, "DEL meter=all bands=");
        ovs_prints("", Delete, "DEL meter=all bands=");
    }

    #[test]
    fn meter_bytes() {
        let mm = parse_meter_mod(
            "meter=2,pktps,burst,band=type=dscp_remark,rate=100,burst_size=10,prec_level=3",
            MeterCommand::Add,
        )
        .unwrap();
        let bytes = encode(&Message::MeterMod(mm), 7);
        assert_eq!(
            crate::openflow::wire::to_hex(&bytes),
            crate::openflow::wire::to_hex(&[
                4, 29, 0, 32, 0, 0, 0, 7, // header
                0, 0, 0, 6, 0, 0, 0, 2, // ADD, pktps|burst, meter 2
                0, 2, 0, 16, 0, 0, 0, 100, 0, 0, 0, 10, 3, 0, 0, 0, // dscp_remark band
            ])
        );
    }

    #[test]
    fn format_meter_config_is_dump_meters() {
        let mc = MeterConfig {
            flags: METER_KBPS | METER_BURST,
            meter_id: 4,
            bands: vec![MeterBand::Drop { rate: 10, burst_size: 2 }, MeterBand::Drop { rate: 20, burst_size: 3 }],
        };
        assert_eq!(
            format_meter_config(&mc),
            "meter=4 kbps burst bands=\ntype=drop rate=10 burst_size=2\ntype=drop rate=20 burst_size=3"
        );
    }

    /// The refusals, with OVS 3.1's own words.
    #[test]
    fn refusals_match_ovs() {
        use MeterCommand::*;
        for (text, command, why) in [
            ("meter=1,kbps", Add, "must specify bands"),
            ("meter=1,kbps,band", Add, "must specify bands"),
            ("kbps,band=type=drop,rate=1", Add, "must specify 'meter'"),
            ("meter=0,kbps,band=type=drop,rate=1", Add, "invalid value for meter"),
            ("meter=4294901761,kbps,band=type=drop,rate=1", Add, "invalid value for meter"),
            ("meter=1,band=type=drop,rate=1", Add, "meter must specify either 'kbps' or 'pktps'"),
            ("meter=1,kbps,foo=1,band=type=drop,rate=1", Add, "unknown keyword foo"),
            ("meter=1,kbps,band=rate=1", Add, "band must start with the 'type' keyword"),
            ("meter=1,kbps,band=type=police,rate=1", Add, "field type unknown value police"),
            ("meter=1,kbps,band=type=drop,rate", Add, "field rate missing value"),
            ("meter=1,kbps,band=type=drop", Add, "band must have 'rate'"),
            ("meter=1,kbps,band=type=drop,rate=1,prec_level=1", Add, "Only 'dscp_remark' band may have 'prec_level'"),
            ("meter=1,kbps,band=type=dscp_remark,rate=1", Add, "'dscp_remark' band must have 'prec_level'"),
            ("meter=1,kbps,band=type=dscp_remark,rate=1,prec_level=256", Add, "invalid prec_level \"256\""),
            (
                "meter=1,kbps,band=type=drop,rate=1,burst_size=5",
                Add,
                "band may have 'burst_size' only when 'burst' flag is set",
            ),
            (
                "meter=1,kbps,burst,band=type=drop,rate=1",
                Modify,
                "band must have 'burst_size' when 'burst' flag is set",
            ),
            ("meter=1,kbps", Delete, "field kbps missing value"),
            ("meter=1,kbps=1", Delete, "unknown keyword kbps"),
            ("", Add, "must specify bands"),
            (" ", Delete, "must specify 'meter'"),
        ] {
            match parse_meter_mod(text, command) {
                Ok(mm) => panic!("{text}: accepted as {mm:?}"),
                Err(e) => assert_eq!(e.reason, why, "{text}"),
            }
        }
    }
}
