//! Golden groups: every line of `tests/golden/groups.txt` is checked against Open vSwitch itself,
//! and groups and meters go through a real (sandboxed) bridge.
//!
//! For each group text, `ovs-ofctl -O OpenFlow13 -mmmmm parse-group` gives OVS's GROUP_MOD bytes
//! and its `ofp-print` text. We require:
//! 1. our `parse_group_mod(text, Add)`, encoded, equals OVS's bytes (xid taken from OVS's);
//! 2. our decode of OVS's bytes re-encodes to the same bytes;
//! 3. `OFPT_GROUP_MOD (OF1.3) (xid=..):\n ` + our `format_group_mod` of it equals OVS's text;
//! 4. round trip: our printed text, parsed by us, is the decoded group again, and parsed by OVS
//!    gives the same bytes.
//!
//! Then on a bridge: `add-group` of every line, and `dump-groups` must print each group as our
//! `format_group_desc` of our parse does; likewise `add-meter` + `dump-meters` against
//! `format_meter_config`, and `mod-group`/`del-groups`/`mod-meter`/`del-meters`.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use shardflow::openflow::message::{decode, encode, ofp_print, GroupDesc, GroupMod, Message, MeterConfig, MeterMod};
use shardflow::openflow::text::group::{format_group_desc, format_group_mod, parse_group_mod, GroupCommand};
use shardflow::openflow::text::meter::{format_meter_config, format_meter_mod, parse_meter_mod, MeterCommand};
use shardflow::oracle;
use support::golden::{byte_diff, same_ignoring_xid};
use support::Ovs;

/// The group texts of tests/golden/groups.txt with their line numbers.
fn golden_groups() -> Vec<(usize, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/groups.txt");
    let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Vec<(usize, String)> = content
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(v.len() >= 20, "tests/golden/groups.txt should hold at least 20 groups, has {}", v.len());
    v
}

fn group_bytes(gm: &GroupMod, xid: u32) -> Vec<u8> {
    encode(&Message::GroupMod(gm.clone()), xid)
}

/// Checks one group text; returns the problems found (empty when all is well).
fn check(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let ovs = match oracle::parse_group(text) {
        Ok(o) => o,
        Err(e) => return vec![format!("OVS refuses it: {e}")],
    };
    if ovs.bytes.len() < 8 {
        return vec![format!("OVS gave no bytes: {:?}", ovs.text)];
    }
    let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);

    // 1. Our encoder from the text.
    let ours = match parse_group_mod(text, GroupCommand::Add) {
        Ok(gm) => Some(gm),
        Err(e) => {
            problems.push(format!("we refuse it: {e:?}"));
            None
        }
    };
    if let Some(gm) = &ours {
        let bytes = group_bytes(gm, xid);
        if bytes != ovs.bytes {
            problems.push(format!("encode(parse(text)) differs: {}", byte_diff(&bytes, &ovs.bytes)));
        }
    }

    // 2. and 3. Our decoder on OVS's bytes.
    let gm = match decode(&ovs.bytes) {
        Ok((_, Message::GroupMod(gm))) => gm,
        Ok((_, other)) => return [problems, vec![format!("OVS's bytes decode as {other:?}")]].concat(),
        Err(e) => return [problems, vec![format!("we cannot decode OVS's bytes: {e}")]].concat(),
    };
    let again = group_bytes(&gm, xid);
    if again != ovs.bytes {
        problems.push(format!("decode -> encode differs: {}", byte_diff(&again, &ovs.bytes)));
    }
    let printed = format!("OFPT_GROUP_MOD (OF1.3) (xid={xid:#x}):\n {}", format_group_mod(&gm));
    if printed != ovs.text {
        problems.push(format!("ofp-print differs:\n      ours: {printed:?}\n      ovs:  {:?}", ovs.text));
    }
    let (header, msg) = decode(&ovs.bytes).unwrap();
    if ofp_print(&header, &msg) != printed {
        problems.push("message::ofp_print and format_group_mod disagree".to_string());
    }

    // 4. Round trip through our printed text.
    let back_text = format_group_mod(&gm).strip_prefix("ADD ").map(str::to_string);
    match back_text {
        None => problems.push(format!("printed text does not start with ADD: {printed:?}")),
        Some(t) => {
            match parse_group_mod(&t, GroupCommand::Add) {
                Ok(back) if back == gm => {}
                Ok(back) => problems.push(format!("our text {t:?} reads back as {back:?}, not {gm:?}")),
                Err(e) => problems.push(format!("we refuse our own text {t:?}: {e:?}")),
            }
            match oracle::parse_group(&t) {
                Ok(o) if same_ignoring_xid(&o.bytes, &ovs.bytes) => {}
                Ok(o) => {
                    problems.push(format!("OVS reads our text {t:?} differently: {}", byte_diff(&o.bytes, &ovs.bytes)))
                }
                Err(e) => problems.push(format!("OVS refuses our text {t:?}: {e}")),
            }
        }
    }
    problems
}

#[test]
fn golden_groups_match_ovs() {
    assert!(oracle::available(), "ovs-ofctl is needed for the golden groups (install openvswitch-switch)");
    let groups = golden_groups();
    let mut failures: Vec<String> = groups
        .iter()
        .filter_map(|(line, text)| {
            let p = check(text);
            (!p.is_empty()).then(|| format!("groups.txt:{line}: {text}\n    {}", p.join("\n    ")))
        })
        .collect();
    failures.sort();
    println!("golden groups: {} checked, {} failed", groups.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} golden groups differ from OVS:\n\n{}\n",
        failures.len(),
        groups.len(),
        failures.join("\n\n")
    );
}

/// Odd spellings and mistakes: we accept what OVS accepts (with the same bytes) and refuse what
/// it refuses.
#[test]
fn edge_cases_agree_with_ovs() {
    assert!(oracle::available(), "ovs-ofctl is needed (install openvswitch-switch)");
    let texts = [
        "group_id=1,type=all,bucket=actions=",
        "group_id=1,type=all,bucket=actions=drop,output:1",
        "group_id=1,type=all,bucket=output:1,drop",
        "group_id=1,type=all,bucket=output:1,actions=output:2,output:3",
        "group_id=1,type=all,bucket=actions=output:1,actions=output:2",
        "group_id=1,type=select,bucket=weight:-0,output:1",
        "group_id=1,type=select,bucket=weight:+5,output:1",
        "group_id=1,type=select,bucket=weight:-5,output:1",
        "group_id=1,type=select,bucket=output:1,weight:9",
        "group_id=1,type=ff,bucket=watch_port:0xfffffffd,output:1",
        "group_id=1,type=ff,bucket=watch_port:4294967293,output:1",
        "group_id=1,type=ff,bucket=watch_port:65533,output:1",
        "group_id=1,type=ff,bucket=watch_port:0x10,output:1",
        "group_id=1,type=ff,bucket=watch_port:65280,output:1",
        "group_id=1,type=ff,bucket=watch_port:65279,output:1",
        "group_id=1,type=ff,bucket=watch_port:br0-p1,output:1",
        "group_id=1,type=ff,bucket=watch_port:none,watch_group:0,output:1",
        "group_id=1,type=all,bucket=check_pkt_larger(100)->NXM_NX_REG0[0]",
        "group_id=1,type=all,bucket=actions=nat",
        "group_id=1,type=all,bucket=actions=mod_vlan_vid:5",
        "group_id=1,type=all,bucket=strip_vlan,output:1",
        "group_id=1,type=all,bucket=actions=learn(table=1,NXM_OF_ETH_SRC[]),output:1",
        "group_id=1,type=select,selection_method=hash,fields=ip_src,bucket=output:1",
        "group_id=1,type=select,selection_method=hash,fields(ip_src=0.0.0.0),bucket=output:1",
        "group_id=1,type=select,selection_method=hash,fields(ip_src=255.255.0.0),bucket=output:1",
        "group_id=1,type=select,selection_method=hash,fields(ip_src,ip_src),bucket=output:1",
        "group_id=1,type=select,selection_method=hash,fields(eth_dst,bogus),bucket=output:1",
        "group_id=1,type=select,selection_method=hash,fields(),bucket=output:1",
        "group_id=1,type=select,selection_method=,bucket=output:1",
        "group_id=1,type=select,selection_method=hash,selection_method_param=0x10,bucket=output:1",
        "group_id=1,type=all,bucket=output:1,bucket",
        "group_id=1,type=all,xbucket=output:1",
        "group_id=,type=all",
        "group_id=1,type=all,group_id=2",
        "group_id=+3,type=all",
        "group_id=0,type=all",
        "group_id=4294967040,type=all",
        "group_id=4294967041,type=all",
        "group_id=1,type=all,bucket=watch_group:ANY,output:1",
        "group_id=1,type=ff,bucket=watch_group:4294967295,output:1",
        "group_id=1,type=select,bucket=bucket_id:4294967041,output:1",
        "group_id=1,type=all,bucket=output:1 , bucket=output:2",
        "group_id=1,type=indirect",
        "type=all,group_id=1,bucket=output:1",
        "group_id:1,type:all,bucket=output:1",
        "group_id=1,type=all,bucket=output:1,bucket=",
    ];
    let mut failures = Vec::new();
    for text in texts {
        let ours = parse_group_mod(text, GroupCommand::Add);
        match (oracle::parse_group(text), ours) {
            (Err(_), Err(_)) => {}
            (Err(e), Ok(gm)) => failures.push(format!("{text}: OVS refuses it ({e}), we accept it as {gm:?}")),
            (Ok(o), Err(e)) => failures.push(format!("{text}: OVS accepts it ({}), we refuse it: {e:?}", o.text)),
            (Ok(o), Ok(gm)) => {
                let xid = u32::from_be_bytes([o.bytes[4], o.bytes[5], o.bytes[6], o.bytes[7]]);
                let bytes = group_bytes(&gm, xid);
                if bytes != o.bytes {
                    failures.push(format!("{text}: bytes differ: {}", byte_diff(&bytes, &o.bytes)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements with OVS:\n{}", failures.len(), failures.join("\n"));
}

/// MODIFY and DELETE (parse-group only makes ADDs): what OVS prints for our bytes.
#[test]
fn modify_and_delete_print_as_ovs() {
    assert!(oracle::available(), "ovs-ofctl is needed (install openvswitch-switch)");
    for (text, command, expected) in [
        (
            "group_id=1,type=select,bucket=weight:2,output:1",
            GroupCommand::Modify,
            "MOD group_id=1,type=select,bucket=weight:2,actions=output:1",
        ),
        ("group_id=1,type=all", GroupCommand::Modify, "MOD group_id=1,type=all"),
        ("group_id=5", GroupCommand::Delete, "DEL group_id=5,type=all"),
        ("group_id=all", GroupCommand::Delete, "DEL group_id=4294967292,type=all"),
        ("", GroupCommand::Delete, "DEL group_id=4294967292,type=all"),
    ] {
        let gm = parse_group_mod(text, command).unwrap();
        let printed = oracle::ofp_print(&group_bytes(&gm, 1)).unwrap();
        assert_eq!(printed, format!("OFPT_GROUP_MOD (OF1.3) (xid=0x1):\n {expected}"), "{text}");
        assert_eq!(format_group_mod(&gm), expected, "{text}");
    }
}

/// The groups of `dump-groups` output by group id (lines ` group_id=N,...`).
fn dumped_groups(out: &str) -> BTreeMap<u32, String> {
    out.lines()
        .filter(|l| l.starts_with(" group_id="))
        .map(|l| {
            let id = l[" group_id=".len()..].split(',').next().unwrap().parse().unwrap();
            (id, l.to_string())
        })
        .collect()
}

fn desc(gm: &GroupMod) -> GroupDesc {
    GroupDesc { group_type: gm.group_type, group_id: gm.group_id, buckets: gm.buckets.clone() }
}

#[test]
fn groups_on_a_real_bridge() {
    let ovs = Ovs::start(&["br0"]);
    let ofctl = |args: &[&str]| ovs.ok("ovs-ofctl", &[&["-O", "OpenFlow13"], args].concat());
    let mut expected: BTreeMap<u32, String> = BTreeMap::new();
    for (line, text) in golden_groups() {
        ofctl(&["add-group", "br0", &text]);
        let gm = parse_group_mod(&text, GroupCommand::Add).unwrap_or_else(|e| panic!("groups.txt:{line}: {e:?}"));
        expected.insert(gm.group_id, format_group_desc(&desc(&gm)));
    }
    let dumped = dumped_groups(&ofctl(&["dump-groups", "br0"]));
    for (id, want) in &expected {
        assert_eq!(dumped.get(id), Some(want), "group {id}");
        // What OVS prints reads back (by us) as the same group.
        let back = parse_group_mod(want.trim_start(), GroupCommand::Add).unwrap();
        assert_eq!(format_group_desc(&desc(&back)), *want);
    }
    assert_eq!(dumped.len(), expected.len(), "{dumped:#?}");

    // mod-group, del-groups with an id, del-groups with nothing.
    let text = "group_id=1,type=select,bucket=weight:7,actions=output:2,bucket=actions=output:1";
    ofctl(&["mod-group", "br0", text]);
    let gm = parse_group_mod(text, GroupCommand::Modify).unwrap();
    assert_eq!(dumped_groups(&ofctl(&["dump-groups", "br0"]))[&1], format_group_desc(&desc(&gm)));
    ofctl(&["del-groups", "br0", "group_id=1"]);
    assert!(!dumped_groups(&ofctl(&["dump-groups", "br0"])).contains_key(&1));
    ofctl(&["del-groups", "br0"]);
    assert!(dumped_groups(&ofctl(&["dump-groups", "br0"])).is_empty());
}

/// The meters of `dump-meters` output by meter id: blocks of a `meter=N ...` line and its bands.
fn dumped_meters(out: &str) -> BTreeMap<u32, String> {
    let mut m = BTreeMap::new();
    let mut cur: Option<(u32, Vec<&str>)> = None;
    for l in out.lines().skip(1) {
        if let Some(rest) = l.strip_prefix("meter=") {
            if let Some((id, lines)) = cur.take() {
                m.insert(id, lines.join("\n"));
            }
            cur = Some((rest.split(' ').next().unwrap().parse().unwrap(), vec![l]));
        } else if !l.is_empty() {
            cur.as_mut().unwrap().1.push(l);
        }
    }
    if let Some((id, lines)) = cur {
        m.insert(id, lines.join("\n"));
    }
    m
}

fn config(mm: &MeterMod) -> MeterConfig {
    MeterConfig { flags: mm.flags, meter_id: mm.meter_id, bands: mm.bands.clone() }
}

/// The userspace datapath has drop bands only, so dscp_remark is covered by the ofp-print unit
/// tests in src/openflow/text/meter.rs.
#[test]
fn meters_on_a_real_bridge() {
    let ovs = Ovs::start(&["br0"]);
    let ofctl = |args: &[&str]| ovs.ok("ovs-ofctl", &[&["-O", "OpenFlow13"], args].concat());
    let meters = [
        "meter=1,kbps,band=type=drop,rate=1000",
        "meter=2,pktps,burst,stats,bands=type=drop,rate=100,burst_size=10",
        "meter=3 kbps stats band=type=drop rate=5000 type=drop rate=10000",
        "meter=0x4,kbps,burst,band=type=drop,rate=0x100,burst_size=64",
        "meter=5,stats,pktps,band=type=drop,rate=7",
    ];
    let mut expected = BTreeMap::new();
    for text in meters {
        ofctl(&["add-meter", "br0", text]);
        let mm = parse_meter_mod(text, MeterCommand::Add).unwrap();
        assert!(format_meter_mod(&mm).starts_with("ADD meter="));
        expected.insert(mm.meter_id, format_meter_config(&config(&mm)));
    }
    assert_eq!(dumped_meters(&ofctl(&["dump-meters", "br0"])), expected);

    let text = "meter=1,pktps,stats,band=type=drop,rate=20";
    ofctl(&["mod-meter", "br0", text]);
    let mm = parse_meter_mod(text, MeterCommand::Modify).unwrap();
    assert_eq!(dumped_meters(&ofctl(&["dump-meters", "br0"]))[&1], format_meter_config(&config(&mm)));
    ofctl(&["del-meters", "br0", "meter=1"]);
    assert!(!dumped_meters(&ofctl(&["dump-meters", "br0"])).contains_key(&1));
    ofctl(&["del-meters", "br0"]);
    assert!(dumped_meters(&ofctl(&["dump-meters", "br0"])).is_empty());
}
