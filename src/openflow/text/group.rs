//! Groups as `ovs-ofctl` text, both ways: `add-group`/`mod-group`/`del-groups` syntax into a
//! [`GroupMod`] (OVS's `parse_ofp_group_mod_str`, OpenFlow 1.3 only), and a group as `ofp-print`
//! and `dump-groups` print it.
//!
//! ```
//! use shardflow::openflow::text::group::{format_group_mod, parse_group_mod, GroupCommand};
//!
//! let gm = parse_group_mod("group_id=1,type=select,bucket=weight:10,output:1,bucket=output:2", GroupCommand::Add)
//!     .unwrap();
//! assert_eq!(gm.buckets[1].weight, 1); // a select bucket weighs 1 unless told
//! assert_eq!(
//!     format_group_mod(&gm),
//!     "ADD group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=actions=output:2"
//! );
//! ```
//!
//! What OpenFlow 1.3 cannot carry is checked as OVS checks it and then dropped, as
//! `ovs-ofctl -O OpenFlow13` drops it: `selection_method`, `selection_method_param`, `fields`
//! and a bucket's `bucket_id`.

use crate::openflow::action::parse_actions;
use crate::openflow::error::TextError;
use crate::openflow::field::Field;
use crate::openflow::message::group::{
    group_command, group_type, Bucket, GroupDesc, GroupMod, GROUP_ALL, GROUP_ANY, PORT_ANY,
};
use crate::openflow::text::value::{parse_number, parse_value, port_to_ofp11, PORT_NAMES};

/// OFPG_MAX: the highest group id a group may have.
const GROUP_MAX: u32 = 0xffff_ff00;
/// OFPG15_BUCKET_MAX (bucket ids are OpenFlow 1.5; checked, then dropped).
const BUCKET_MAX: u32 = 0xffff_ff00;
/// NTR_MAX_SELECTION_METHOD_LEN, terminating NUL included.
const MAX_SELECTION_METHOD_LEN: usize = 16;

/// The command of a GROUP_MOD, as `ovs-ofctl add-group`, `mod-group` and `del-groups` send it.
/// On the wire it is [`GroupMod::command`] (`group_command::ADD`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupCommand {
    Add,
    Modify,
    Delete,
}

impl From<GroupCommand> for u16 {
    fn from(c: GroupCommand) -> u16 {
        match c {
            GroupCommand::Add => group_command::ADD,
            GroupCommand::Modify => group_command::MODIFY,
            GroupCommand::Delete => group_command::DELETE,
        }
    }
}

impl TryFrom<u16> for GroupCommand {
    type Error = u16;
    fn try_from(c: u16) -> Result<GroupCommand, u16> {
        match c {
            group_command::ADD => Ok(GroupCommand::Add),
            group_command::MODIFY => Ok(GroupCommand::Modify),
            group_command::DELETE => Ok(GroupCommand::Delete),
            n => Err(n),
        }
    }
}

// === printing ===

/// What `ovs-ofctl ofp-print` prints for a GROUP_MOD after `OFPT_GROUP_MOD (OF1.3) (xid=0x1):\n `
/// (`ADD group_id=1,type=all,bucket=actions=output:1`).
pub fn format_group_mod(gm: &GroupMod) -> String {
    let body = gm.fmt_body();
    body.strip_prefix("\n ").map(str::to_string).unwrap_or(body)
}

/// One group as `ovs-ofctl -O OpenFlow13 dump-groups` prints it, leading space included
/// (` group_id=1,type=select,bucket=weight:10,actions=output:1`); without that space it is
/// `add-group` text again.
pub fn format_group_desc(gd: &GroupDesc) -> String {
    let body = gd.fmt();
    body.strip_prefix('\n').map(str::to_string).unwrap_or(body)
}

// === parsing ===

/// Parses `ovs-ofctl` group text (`group_id=1,type=select,bucket=weight:10,actions=output:1,...`)
/// into a GROUP_MOD with `command`, as `ovs-ofctl -O OpenFlow13 add-group`, `mod-group` and
/// `del-groups` read it. For a delete, empty text means every group (`group_id=all`).
pub fn parse_group_mod(text: &str, command: GroupCommand) -> Result<GroupMod, TextError> {
    let is_delete = command == GroupCommand::Delete;
    let mut gm =
        GroupMod { command: command.into(), group_type: group_type::ALL, group_id: GROUP_ANY, buckets: Vec::new() };
    if is_delete && text.is_empty() {
        gm.group_id = GROUP_ALL;
        return Ok(gm);
    }

    // The buckets come last: their defaults depend on the type.
    let (head, buckets) = match text.find("bucket=") {
        Some(_) if is_delete => return Err(TextError::new("bucket", "bucket is not needed")),
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };

    let mut had_type = false;
    let mut selection_method = "";
    let mut selection_method_param = 0u64;
    let mut had_fields = false;
    let mut rest = head;
    while let Some(p) = next_pair(&mut rest) {
        let (name, value) = (p.key, p.value);
        let not_needed = |what: &str| TextError::new(p.raw, format!("{what} is not needed"));
        match name {
            "command_bucket_id" => return Err(not_needed("command bucket id")),
            "group_id" => {
                gm.group_id = if value == "all" { GROUP_ALL } else { str_to_u32(value)? };
                if gm.group_id != GROUP_ALL && gm.group_id > GROUP_MAX {
                    return Err(TextError::new(p.raw, format!("invalid group id {}", gm.group_id)));
                }
            }
            "type" => {
                if is_delete {
                    return Err(not_needed("type"));
                }
                gm.group_type = match value {
                    "all" => group_type::ALL,
                    "select" => group_type::SELECT,
                    "indirect" => group_type::INDIRECT,
                    "ff" | "fast_failover" => group_type::FF,
                    _ => return Err(TextError::new(p.raw, format!("invalid group type {value}"))),
                };
                had_type = true;
            }
            "selection_method" => {
                if is_delete {
                    return Err(not_needed("selection method"));
                }
                if value.len() >= MAX_SELECTION_METHOD_LEN {
                    return Err(TextError::new(
                        p.raw,
                        format!("selection method is longer than {} bytes long", MAX_SELECTION_METHOD_LEN - 1),
                    ));
                }
                selection_method = value;
            }
            "selection_method_param" => {
                if is_delete {
                    return Err(not_needed("selection method param"));
                }
                selection_method_param = str_to_u64(value)?;
            }
            "fields" => {
                if is_delete {
                    return Err(not_needed("fields are"));
                }
                had_fields |= parse_select_group_fields(value)?;
            }
            _ => return Err(TextError::new(name, format!("unknown keyword {name}"))),
        }
    }
    if gm.group_id == GROUP_ANY {
        return Err(TextError::new(text, "must specify a group_id"));
    }
    if !is_delete && !had_type {
        return Err(TextError::new(text, "must specify a type"));
    }
    if selection_method != "hash" && had_fields {
        return Err(TextError::new("fields", "fields may only be specified with \"selection_method=hash\""));
    }
    if selection_method.is_empty() && selection_method_param != 0 {
        return Err(TextError::new(
            "selection_method_param",
            "selection_method_param is only allowed with \"selection_method\"",
        ));
    }

    // Each bucket runs from its `bucket=` to the next one.
    let mut rest = buckets;
    while let Some(s) = rest {
        let content = &s["bucket=".len()..];
        let (this, next) = match content.find("bucket=") {
            Some(i) => (&content[..i], Some(&content[i..])),
            None => (content, None),
        };
        let bucket = parse_bucket(this, gm.group_type)?;
        if gm.group_type != group_type::SELECT && bucket.weight != 0 {
            return Err(TextError::new(this, "Only select groups can have bucket weights."));
        }
        gm.buckets.push(bucket);
        rest = next;
    }
    if gm.group_type == group_type::INDIRECT && gm.buckets.len() > 1 {
        return Err(TextError::new(text, "Indirect groups can have at most one bucket."));
    }
    Ok(gm)
}

/// One bucket's text (after `bucket=`): OVS's `parse_bucket_str`. Keys it does not know are
/// actions, so `bucket=output:1` and `bucket=actions=output:1` are the same bucket.
fn parse_bucket(text: &str, gtype: u8) -> Result<Bucket, TextError> {
    let mut b = Bucket::new(Vec::new());
    if gtype == group_type::SELECT {
        b.weight = 1;
    }
    // OVS gathers the actions in one string, in order: `actions=` values as written, any other
    // item rewritten as `key(value)`.
    let mut actions: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(p) = next_pair(&mut rest) {
        let value = p.value;
        if p.key.eq_ignore_ascii_case("weight") {
            b.weight = str_to_uint(value, "weight", u16::MAX as i64)? as u16;
        } else if p.key.eq_ignore_ascii_case("watch_port") {
            let port =
                watch_port(value).ok_or_else(|| TextError::new(value, format!("{value}: invalid watch_port")))?;
            b.watch_port = port_to_ofp11(port);
        } else if p.key.eq_ignore_ascii_case("watch_group") {
            b.watch_group = str_to_u32(value)?;
            if b.watch_group > GROUP_MAX {
                return Err(TextError::new(p.raw, format!("invalid watch_group id {}", b.watch_group)));
            }
        } else if p.key.eq_ignore_ascii_case("bucket_id") {
            // OpenFlow 1.5 only: checked, then dropped.
            let id = str_to_u32(value)?;
            if id > BUCKET_MAX {
                return Err(TextError::new(p.raw, format!("invalid bucket_id id {id}")));
            }
        } else if p.key.eq_ignore_ascii_case("action") || p.key.eq_ignore_ascii_case("actions") {
            actions.push(value.to_string());
        } else {
            actions.push(format!("{}({})", p.key, value));
        }
    }
    if actions.is_empty() {
        return Err(TextError::new(text, "bucket must specify actions"));
    }
    if gtype == group_type::FF && b.watch_port == PORT_ANY && b.watch_group == GROUP_ANY {
        return Err(TextError::new(text, "fast failover bucket requires watch_port or watch_group"));
    }
    b.actions = parse_actions(&actions.join(","))?;
    Ok(b)
}

/// A bucket's `watch_port` (OVS's `ofputil_port_from_string` without a port map, then the
/// bucket's own limit): a decimal port below 0xff00, `CONTROLLER` or `ANY`/`NONE` (no port),
/// also as 65533/65535 or their 32-bit forms. Port names and hex are refused, as OVS refuses them.
fn watch_port(s: &str) -> Option<u16> {
    let port = if s.starts_with('-') {
        return None;
    } else if let Some(n) = decimal(s) {
        match n {
            0..=0xffff => n as u16,
            0x1_0000..=0xffff_feff => return None,
            _ => (n - 0xffff_0000) as u16,
        }
    } else if s.eq_ignore_ascii_case("NONE") {
        0xffff
    } else if s.eq_ignore_ascii_case("UNSET") {
        0xfff7
    } else {
        PORT_NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)).map(|(p, _)| *p)?
    };
    // OFPP_MAX and above, except ANY (no port) and CONTROLLER.
    (port < 0xff00 || port == 0xffff || port == 0xfffd).then_some(port)
}

/// C `str_to_uint(s, 10)`: decimal, an optional `+`, up to `u32::MAX`.
fn decimal(s: &str) -> Option<u32> {
    let d = s.strip_prefix('+').unwrap_or(s);
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    d.parse::<u64>().ok().and_then(|n| u32::try_from(n).ok())
}

/// `fields(eth_dst,ip_dst=255.255.255.0)` of a hash select group (OVS's
/// `parse_select_group_field`); true when it names at least one field. OpenFlow 1.3 cannot carry
/// them, so they are only checked.
fn parse_select_group_fields(s: &str) -> Result<bool, TextError> {
    let mut seen: Vec<Field> = Vec::new();
    let mut rest = s;
    while let Some(p) = next_pair(&mut rest) {
        let field =
            Field::from_name(p.key).ok_or_else(|| TextError::new(p.key, format!("{s}: unknown field {}", p.key)))?;
        if seen.contains(&field) {
            return Err(TextError::new(p.key, format!("{}: duplicate field", p.key)));
        }
        if !p.value.is_empty() {
            let (value, mask) = parse_value(field, p.value)?;
            if mask.is_some() {
                return Err(TextError::new(p.raw, format!("{}: invalid mask for field", p.key)));
            }
            if value.is_zero() {
                return Err(TextError::new(p.raw, format!("{s}: values are wildcards here and must not be all-zeros")));
            }
        }
        seen.push(field);
    }
    Ok(!seen.is_empty())
}

// === OVS's key-value and number readers ===

/// One `key`, `key=value`, `key:value` or `key(value)` item, as `ofputil_parse_key_value` cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pair<'a> {
    pub key: &'a str,
    /// "" when there is none.
    pub value: &'a str,
    /// The whole item as written (`resubmit(,2)`, `output:1`).
    pub raw: &'a str,
}

/// Cuts the next item off `rest` (`ofputil_parse_key_value`): items are separated by commas or
/// white space; a value after `=` or `:` runs to the next separator outside parentheses, one
/// after `(` to the matching `)` (or on past `)->`, for `check_pkt_larger(N)->DST`).
pub(super) fn next_pair<'a>(rest: &mut &'a str) -> Option<Pair<'a>> {
    const SEPARATORS: &[u8] = b", \t\r\n";
    let s = rest.trim_start_matches(|c: char| c.is_ascii() && SEPARATORS.contains(&(c as u8)));
    if s.is_empty() {
        *rest = s;
        return None;
    }
    let b = s.as_bytes();
    let key_len = b.iter().position(|c| b":=(, \t\r\n".contains(c)).unwrap_or(b.len());
    let key = &s[..key_len];
    let delim = b.get(key_len).copied();
    let after = key_len + usize::from(delim.is_some());
    let value_delims: &[u8] = match delim {
        Some(b':') | Some(b'=') => SEPARATORS,
        Some(b'(') => b")",
        _ => {
            *rest = &s[after..];
            return Some(Pair { key, value: "", raw: key });
        }
    };
    let v = &s[after..];
    let mut n = value_len(v.as_bytes(), value_delims);
    let mut raw_end = after + n;
    if delim == Some(b'(') && v[n..].starts_with(")->") {
        n += value_len(&v.as_bytes()[n..], SEPARATORS);
        raw_end = after + n;
    } else if delim == Some(b'(') && n < v.len() {
        raw_end += 1; // the closing parenthesis
    }
    let value = &v[..n];
    *rest = &s[(after + n + usize::from(n < v.len())).min(s.len())..];
    Some(Pair { key, value, raw: &s[..raw_end] })
}

/// OVS's `parse_value`: bytes up to one of `delims`, skipping over balanced parentheses.
fn value_len(b: &[u8], delims: &[u8]) -> usize {
    let mut n = 0;
    while n < b.len() && !delims.contains(&b[n]) {
        if b[n] == b'(' {
            let mut level = 0i32;
            loop {
                match b.get(n) {
                    None => return n,
                    Some(b'(') => level += 1,
                    Some(b')') => level -= 1,
                    Some(_) => {}
                }
                n += 1;
                if level <= 0 {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// OVS's `str_to_u32` (`strtoul(s, NULL, 0)`: decimal, `0x` hex, leading-`0` octal). Unlike
/// OVS on a 64-bit host, a negative number or one above 2^32-1 is refused rather than wrapped
/// or cut to 32 bits.
pub(super) fn str_to_u32(s: &str) -> Result<u32, TextError> {
    if s.is_empty() {
        return Err(TextError::new(s, "missing required numeric argument"));
    }
    match parse_number(s.strip_prefix('+').unwrap_or(s)) {
        Ok(n) if n <= u32::MAX as u128 => Ok(n as u32),
        _ => Err(TextError::new(s, format!("invalid numeric format {s}"))),
    }
}

/// OVS's `str_to_u64` (`strtoull(s, NULL, 0)`).
pub(super) fn str_to_u64(s: &str) -> Result<u64, TextError> {
    if s.is_empty() {
        return Err(TextError::new(s, "missing required numeric argument"));
    }
    match parse_number(s.strip_prefix('+').unwrap_or(s)) {
        Ok(n) if n <= u64::MAX as u128 => Ok(n as u64),
        _ => Err(TextError::new(s, format!("invalid numeric format {s}"))),
    }
}

/// OVS's `str_to_u16`/`str_to_u8` (`strtol` base 0, then 0..=`max`): `invalid NAME "S"`.
pub(super) fn str_to_uint(s: &str, name: &str, max: i64) -> Result<i64, TextError> {
    let bad = || TextError::new(s, format!("invalid {name} \"{s}\""));
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = parse_number(digits).map_err(|_| bad())?;
    if neg && n != 0 || n > max as u128 {
        return Err(bad());
    }
    Ok(n as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(&str, &str, &str)> {
        let mut rest = s;
        let mut v = Vec::new();
        while let Some(p) = next_pair(&mut rest) {
            v.push((p.key, p.value, p.raw));
        }
        v
    }

    #[test]
    fn key_values_are_cut_as_ovs_cuts_them() {
        assert_eq!(
            pairs("actions=ct(commit,zone=1),output:2 resubmit(,3),drop,,check_pkt_larger(100)->reg0[0]"),
            vec![
                ("actions", "ct(commit,zone=1)", "actions=ct(commit,zone=1)"),
                ("output", "2", "output:2"),
                ("resubmit", ",3", "resubmit(,3)"),
                ("drop", "", "drop"),
                ("check_pkt_larger", "100)->reg0[0]", "check_pkt_larger(100)->reg0[0]"),
            ]
        );
        assert_eq!(pairs("a(b"), vec![("a", "b", "a(b")]);
        assert_eq!(pairs("x="), vec![("x", "", "x=")]);
        assert_eq!(pairs(" ,\t"), vec![]);
    }

    #[test]
    fn buckets_get_the_defaults_of_their_type() {
        let gm = parse_group_mod("group_id=7,type=select,bucket=output:1,bucket=weight:0,output:2", GroupCommand::Add)
            .unwrap();
        assert_eq!(gm.command, group_command::ADD);
        assert_eq!((gm.group_id, gm.group_type), (7, group_type::SELECT));
        assert_eq!(gm.buckets[0].weight, 1);
        assert_eq!(gm.buckets[1].weight, 0);
        assert_eq!(gm.buckets[0].watch_port, PORT_ANY);
        let gm = parse_group_mod(
            "group_id=7,type=ff,bucket=watch_port:CONTROLLER,watch_group:3,actions=output:1",
            GroupCommand::Modify,
        )
        .unwrap();
        assert_eq!(gm.command, group_command::MODIFY);
        assert_eq!((gm.buckets[0].weight, gm.buckets[0].watch_port, gm.buckets[0].watch_group), (0, 0xffff_fffd, 3));
    }

    #[test]
    fn deletes() {
        let all = parse_group_mod("", GroupCommand::Delete).unwrap();
        assert_eq!((all.command, all.group_id, all.group_type), (group_command::DELETE, GROUP_ALL, 0));
        assert_eq!(parse_group_mod("group_id=all", GroupCommand::Delete).unwrap().group_id, GROUP_ALL);
        assert_eq!(parse_group_mod("group_id=5", GroupCommand::Delete).unwrap().group_id, 5);
        assert!(parse_group_mod("group_id=5,type=all", GroupCommand::Delete).is_err());
        assert!(parse_group_mod("group_id=5,bucket=output:1", GroupCommand::Delete).is_err());
    }

    /// The refusals, with OVS 3.1's own words (`ovs-ofctl -O OpenFlow13 parse-group`).
    #[test]
    fn refusals_match_ovs() {
        for (text, why) in [
            ("type=all", "must specify a group_id"),
            ("group_id=1", "must specify a type"),
            ("group_id=1,type=ALL", "invalid group type ALL"),
            ("GROUP_ID=1,type=all", "unknown keyword GROUP_ID"),
            ("group_id=4294967041,type=all", "invalid group id 4294967041"),
            ("group_id=1,type=all,bucket=weight:3,output:1", "Only select groups can have bucket weights."),
            ("group_id=1,type=ff,bucket=output:1", "fast failover bucket requires watch_port or watch_group"),
            (
                "group_id=1,type=ff,bucket=watch_port:ANY,output:1",
                "fast failover bucket requires watch_port or watch_group",
            ),
            ("group_id=1,type=ff,bucket=watch_port:LOCAL,output:1", "LOCAL: invalid watch_port"),
            ("group_id=1,type=ff,bucket=watch_group:4294967041,output:1", "invalid watch_group id 4294967041"),
            (
                "group_id=1,type=indirect,bucket=output:1,bucket=output:2",
                "Indirect groups can have at most one bucket.",
            ),
            ("group_id=1,type=all,bucket=watch_port:2", "bucket must specify actions"),
            ("group_id=1,type=all,bucket=", "bucket must specify actions"),
            ("group_id=1,type=select,bucket=weight:65536,output:1", "invalid weight \"65536\""),
            (
                "group_id=1,type=select,selection_method_param=7,bucket=output:1",
                "selection_method_param is only allowed with \"selection_method\"",
            ),
            (
                "group_id=1,type=select,selection_method=hashhashhashhash,bucket=output:1",
                "selection method is longer than 15 bytes long",
            ),
            (
                "group_id=1,type=select,selection_method=dp_hash,fields(ip_src),bucket=output:1",
                "fields may only be specified with \"selection_method=hash\"",
            ),
            ("group_id=1,type=select,command_bucket_id=1,bucket=output:1", "command bucket id is not needed"),
        ] {
            match parse_group_mod(text, GroupCommand::Add) {
                Ok(gm) => panic!("{text}: accepted as {gm:?}"),
                Err(e) => assert_eq!(e.reason, why, "{text}"),
            }
        }
        assert!(parse_group_mod("group_id=1,type=all,bucket=output:1,foo=bar", GroupCommand::Add).is_err());
        assert!(parse_group_mod(
            "group_id=1,type=select,selection_method=hash,fields(bogus),bucket=output:1",
            GroupCommand::Add
        )
        .is_err());
    }

    /// OpenFlow 1.5 settings are checked, then dropped, as `ovs-ofctl -O OpenFlow13` drops them.
    #[test]
    fn of15_settings_are_dropped() {
        let plain = parse_group_mod("group_id=1,type=select,bucket=output:1", GroupCommand::Add).unwrap();
        for text in [
            "group_id=1,type=select,selection_method=hash,fields(ip_src,ip_dst),bucket=output:1",
            "group_id=1,type=select,selection_method=dp_hash,selection_method_param=7,bucket=output:1",
            "group_id=1,type=select,bucket=bucket_id:3,output:1",
        ] {
            assert_eq!(parse_group_mod(text, GroupCommand::Add).unwrap(), plain, "{text}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(str_to_u32("0x10").unwrap(), 16);
        assert_eq!(str_to_u32("010").unwrap(), 8);
        assert!(str_to_u32("").is_err());
        assert!(str_to_u32("4294967296").is_err());
        assert_eq!(str_to_uint("-0", "weight", 65535).unwrap(), 0);
        assert!(str_to_uint("-1", "weight", 65535).is_err());
    }
}
