//! OpenFlow 1.3 FLOW_MOD: bytes both ways, `ovs-ofctl` flow text in, and the two texts OVS
//! prints for a flow (`ofp-print` of the message, and `dump-flows`).
//!
//! Layout after the 8-byte `ofp_header` (`struct ofp11_flow_mod`): cookie, cookie_mask,
//! table_id, command, idle_timeout, hard_timeout, priority, buffer_id, out_port, out_group,
//! flags, 2 pad bytes (40 bytes), then the `ofp_match` and the instructions.

use super::action::ParseContext;
use super::check;
use super::error::{ErrorCode, TextError};
use super::field::Field;
use super::instruction::{format_instructions, parse_instructions_in, Instruction};
use super::oxm::{split_items, Match, MatchParser};
use super::text::value::{format_port, parse_number, parse_port, port_from_ofp11, port_to_ofp11};
use super::wire::{patch_u16, Reader};
use super::DecodeError;

/// OpenFlow message type of FLOW_MOD.
pub const OFPT_FLOW_MOD: u8 = 14;

pub const OFPFF_SEND_FLOW_REM: u16 = 1 << 0;
pub const OFPFF_CHECK_OVERLAP: u16 = 1 << 1;
pub const OFPFF_RESET_COUNTS: u16 = 1 << 2;
pub const OFPFF_NO_PKT_COUNTS: u16 = 1 << 3;
pub const OFPFF_NO_BYT_COUNTS: u16 = 1 << 4;

/// Flag bits and their names, in the order OVS prints them.
const FLAG_NAMES: &[(u16, &str)] = &[
    (OFPFF_SEND_FLOW_REM, "send_flow_rem"),
    (OFPFF_CHECK_OVERLAP, "check_overlap"),
    (OFPFF_RESET_COUNTS, "reset_counts"),
    (OFPFF_NO_PKT_COUNTS, "no_packet_counts"),
    (OFPFF_NO_BYT_COUNTS, "no_byte_counts"),
];

/// `OFP_DEFAULT_PRIORITY`.
pub const DEFAULT_PRIORITY: u16 = 0x8000;
/// `OFPP_ANY` / `OFPG_ANY` / no buffer.
pub const ANY: u32 = 0xffff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowModCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
    Unknown(u8),
}

impl From<u8> for FlowModCommand {
    fn from(v: u8) -> Self {
        match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            n => FlowModCommand::Unknown(n),
        }
    }
}

impl From<FlowModCommand> for u8 {
    fn from(c: FlowModCommand) -> u8 {
        match c {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
            FlowModCommand::Unknown(n) => n,
        }
    }
}

impl FlowModCommand {
    /// The word `ofp-print` shows (`ADD`, `MOD_STRICT`, ...).
    pub fn ovs_name(self) -> String {
        match self {
            FlowModCommand::Add => "ADD".into(),
            FlowModCommand::Modify => "MOD".into(),
            FlowModCommand::ModifyStrict => "MOD_STRICT".into(),
            FlowModCommand::Delete => "DEL".into(),
            FlowModCommand::DeleteStrict => "DEL_STRICT".into(),
            FlowModCommand::Unknown(n) => format!("cmd:{n}"),
        }
    }
}

/// An OpenFlow 1.3 flow table modification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

/// A 64-bit number as C's `strtoull` reads it, which is how OVS reads cookies: decimal, `0x` hex or
/// `0` octal, and a leading `-` negates modulo 2^64 (so the customary mask `-1` is all ones).
fn parse_u64_strtoull(s: &str) -> Option<u64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let n = u64::try_from(parse_number(digits).ok()?).ok()?;
    Some(if neg { n.wrapping_neg() } else { n })
}

impl FlowMod {
    /// A flow_mod with OVS's defaults for `command`: priority 0x8000, no buffer, out_port and
    /// out_group ANY, all tables (0xff) for a delete and table 0 otherwise (OpenFlow 1.2+
    /// allows 0xff only in deletes).
    pub fn new(command: FlowModCommand) -> FlowMod {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id: if matches!(command, FlowModCommand::Delete | FlowModCommand::DeleteStrict) { 0xff } else { 0 },
            command,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: DEFAULT_PRIORITY,
            buffer_id: ANY,
            out_port: ANY,
            out_group: ANY,
            flags: 0,
            r#match: Match::new(),
            instructions: Vec::new(),
        }
    }

    // === wire ===

    /// Reads the body of a FLOW_MOD (everything after the 8-byte `ofp_header`).
    pub fn decode_body(r: &mut Reader<'_>) -> Result<FlowMod, DecodeError> {
        let bad = |e: DecodeError| DecodeError::new(ErrorCode::BAD_REQUEST_BAD_LEN, "ofp_flow_mod", e.detail);
        let mut fixed = r.sub(40).map_err(bad)?;
        let cookie = fixed.u64()?;
        let cookie_mask = fixed.u64()?;
        let table_id = fixed.u8()?;
        let command = FlowModCommand::from(fixed.u8()?);
        let idle_timeout = fixed.u16()?;
        let hard_timeout = fixed.u16()?;
        let priority = fixed.u16()?;
        let buffer_id = fixed.u32()?;
        let out_port = fixed.u32()?;
        let out_group = fixed.u32()?;
        let flags = fixed.u16()?;
        // OpenFlow 1.2+ allows OFPTT_ALL only in deletes.
        if table_id == 0xff && !matches!(command, FlowModCommand::Delete | FlowModCommand::DeleteStrict) {
            return Err(DecodeError::new(
                ErrorCode::FLOW_MOD_FAILED_BAD_TABLE_ID,
                "ofp_flow_mod",
                "table 255 (all tables) in a flow_mod that is not a delete",
            ));
        }
        let m = Match::decode(r)?;
        let mut ir = Reader::new(r.take_rest(), "ofp_instruction", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        let instructions = Instruction::decode_list(&mut ir)?;
        // As OVS (`ofputil_decode_flow_mod` -> `ofpacts_check_consistency`): actions that do
        // not fit the match make the whole flow_mod invalid.
        check::check_instructions(&m, table_id, &instructions)
            .map_err(|e| DecodeError::new(e.code, "ofp_flow_mod", e.to_string()))?;
        Ok(FlowMod {
            cookie,
            cookie_mask,
            table_id,
            command,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            r#match: m,
            instructions,
        })
    }

    /// Writes the body (after the `ofp_header`).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&self.cookie_mask.to_be_bytes());
        out.push(self.table_id);
        out.push(self.command.into());
        out.extend_from_slice(&self.idle_timeout.to_be_bytes());
        out.extend_from_slice(&self.hard_timeout.to_be_bytes());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&self.buffer_id.to_be_bytes());
        out.extend_from_slice(&self.out_port.to_be_bytes());
        out.extend_from_slice(&self.out_group.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        self.r#match.encode(out);
        Instruction::encode_list(&self.instructions, out);
    }

    /// The whole OpenFlow 1.3 message.
    ///
    /// # Panics
    /// When it is over 65,535 bytes (thousands of actions): tests and tools with small flows;
    /// anything built from outside input uses [`FlowMod::try_encode`].
    pub fn encode(&self, xid: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(xid, &mut out);
        out
    }

    /// [`FlowMod::encode`] that refuses a flow mod whose length does not fit its u16.
    pub fn try_encode(&self, xid: u32) -> Result<Vec<u8>, crate::openflow::message::EncodeError> {
        let mut out = Vec::with_capacity(128);
        self.try_encode_into(xid, &mut out)?;
        Ok(out)
    }

    /// Appends the whole OpenFlow 1.3 message to `out` (no allocation beyond `out`'s growth).
    ///
    /// # Panics
    /// When it is over 65,535 bytes (see [`FlowMod::encode`]).
    pub fn encode_into(&self, xid: u32, out: &mut Vec<u8>) {
        if let Err(e) = self.try_encode_into(xid, out) {
            panic!("{e}");
        }
    }

    /// Appends the message to `out`, or leaves `out` as it was and refuses a flow mod over
    /// 65,535 bytes (its length field would wrap and corrupt the stream).
    pub fn try_encode_into(&self, xid: u32, out: &mut Vec<u8>) -> Result<(), crate::openflow::message::EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[4, OFPT_FLOW_MOD, 0, 0]);
        out.extend_from_slice(&xid.to_be_bytes());
        self.encode_body(out);
        let len = out.len() - start;
        if len > crate::openflow::message::MAX_MESSAGE_LEN {
            out.truncate(start);
            return Err(crate::openflow::message::EncodeError::TooLong {
                msg_type: crate::openflow::message::MsgType::FlowMod,
                len,
            });
        }
        patch_u16(out, start + 2, len as u16);
        Ok(())
    }

    // === text ===

    /// Parses `ovs-ofctl` flow text (`table=3,priority=100,tcp,tp_dst=80,actions=output:2`) as
    /// a flow_mod with `command`, as `ovs-ofctl add-flow`/`mod-flows`/`del-flows` read it, and
    /// checks its actions against its match as OVS does ([`check::check_flow_mod`]): a flow OVS
    /// would refuse is refused here, with OVS's error name in the reason.
    pub fn parse(text: &str, command: FlowModCommand) -> Result<FlowMod, TextError> {
        let fm = FlowMod::parse_unchecked(text, command)?;
        check::check_flow_mod(&fm).map_err(|e| TextError::new("actions", e.to_string()))?;
        Ok(fm)
    }

    /// [`FlowMod::parse`] without the check of the actions against the match: for tools and
    /// tests that need to build a flow OVS would refuse.
    pub fn parse_unchecked(text: &str, command: FlowModCommand) -> Result<FlowMod, TextError> {
        let mut fm = FlowMod::new(command);
        let (head, actions) = split_actions(text);
        let is_add = command == FlowModCommand::Add;
        let is_delete = matches!(command, FlowModCommand::Delete | FlowModCommand::DeleteStrict);
        let mut mp = MatchParser::new();
        for (k, v) in split_items(head) {
            let item = || match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            };
            let need = || v.ok_or_else(|| TextError::new(k, format!("{k} needs a value")));
            let num = |max: u128| -> Result<u128, TextError> {
                let s = need()?;
                let n = parse_number(s).map_err(|_| TextError::new(item(), "not a number"))?;
                if n > max {
                    return Err(TextError::new(item(), "value out of range"));
                }
                Ok(n)
            };
            match k {
                "table" => {
                    let s = need()?;
                    fm.table_id = if s.eq_ignore_ascii_case("all") { 0xff } else { num(0xff)? as u8 };
                }
                "priority" => fm.priority = num(0xffff)? as u16,
                "idle_timeout" => fm.idle_timeout = num(0xffff)? as u16,
                "hard_timeout" => fm.hard_timeout = num(0xffff)? as u16,
                "cookie" => {
                    let s = need()?;
                    match s.split_once('/') {
                        Some((c, m)) => {
                            if is_add {
                                return Err(TextError::new(item(), "flow additions cannot use a cookie mask"));
                            }
                            fm.cookie = parse_u64_strtoull(c).ok_or_else(|| TextError::new(item(), "bad cookie"))?;
                            fm.cookie_mask =
                                parse_u64_strtoull(m).ok_or_else(|| TextError::new(item(), "bad cookie mask"))?;
                        }
                        None => {
                            let c = parse_number(s).map_err(|_| TextError::new(item(), "bad cookie"))?;
                            if c > u64::MAX as u128 {
                                return Err(TextError::new(item(), "cookie out of range"));
                            }
                            // OpenFlow 1.3 can only set a cookie when adding; for modify and
                            // delete a cookie without mask is a new cookie OVS cannot send.
                            if is_add {
                                fm.cookie = c as u64;
                            }
                        }
                    }
                }
                "out_port" if !is_add => {
                    let p = parse_port(need()?).map_err(|e| TextError::new(item(), e.reason))?;
                    fm.out_port = port_to_ofp11(p);
                }
                "out_group" if !is_add => {
                    let s = need()?;
                    fm.out_group = if s.eq_ignore_ascii_case("any") {
                        ANY
                    } else if s.eq_ignore_ascii_case("all") {
                        0xffff_fffc
                    } else {
                        num(u32::MAX as u128)? as u32
                    };
                }
                // What dump-flows prints and add-flow ignores.
                "duration" | "n_packets" | "n_bytes" | "idle_age" | "hard_age" => {}
                _ => {
                    if let (None, Some((bit, _))) = (v, FLAG_NAMES.iter().find(|(_, n)| *n == k)) {
                        fm.flags |= bit;
                    } else if k == "out_port" || k == "out_group" || k == "importance" {
                        return Err(TextError::new(k, format!("unknown keyword {k}")));
                    } else {
                        mp.apply(k, v)?;
                    }
                }
            }
        }
        if fm.table_id == 0xff && !is_delete {
            return Err(TextError::new("table=255", "only a delete may name all tables (255)"));
        }
        fm.r#match = mp.finish()?;
        match actions {
            Some(a) => {
                if is_delete {
                    return Err(TextError::new("actions", "a delete takes no actions"));
                }
                let ctx = ParseContext {
                    ip_proto: fm
                        .r#match
                        .get(Field::IP_PROTO)
                        .filter(|e| e.mask.is_none())
                        .map(|e| e.value.to_u128() as u8),
                    has_vlan: fm.r#match.prereqs_ok(Field::VLAN_PCP),
                };
                fm.instructions = parse_instructions_in(a, &ctx)?;
            }
            None if !is_delete => return Err(TextError::new(text, "must specify an action (actions=...)")),
            None => {}
        }
        Ok(fm)
    }

    /// What `ovs-ofctl ofp-print` shows after `OFPT_FLOW_MOD (OF1.3) (xid=0x1): `.
    pub fn ofp_print_body(&self) -> String {
        let mut s = self.command.ovs_name();
        if self.table_id != 0 {
            s.push_str(&format!(" table:{}", self.table_id));
        }
        s.push(' ');
        s.push_str(&self.match_with_priority());
        if !s.ends_with(' ') {
            s.push(' ');
        }
        if self.command == FlowModCommand::Add {
            if self.cookie != 0 && self.cookie != u64::MAX {
                s.push_str(&format!("cookie:{:#x} ", self.cookie));
            }
        } else if self.cookie_mask != 0 {
            s.push_str(&format!("cookie:{:#x}/{:#x} ", self.cookie, self.cookie_mask));
        }
        if self.idle_timeout != 0 {
            s.push_str(&format!("idle:{} ", self.idle_timeout));
        }
        if self.hard_timeout != 0 {
            s.push_str(&format!("hard:{} ", self.hard_timeout));
        }
        if self.buffer_id != ANY {
            s.push_str(&format!("buf:{:#x} ", self.buffer_id));
        }
        if self.out_port != ANY {
            s.push_str("out_port:");
            s.push_str(&match port_from_ofp11(self.out_port) {
                Some(p) => format_port(p),
                None => self.out_port.to_string(),
            });
            s.push(' ');
        }
        let mut rest = self.flags;
        for (bit, name) in FLAG_NAMES {
            if self.flags & bit != 0 {
                s.push_str(name);
                s.push(' ');
                rest &= !bit;
            }
        }
        if rest != 0 {
            s.push_str(&format!("flags:{rest:#x} "));
        }
        s.push_str("actions=");
        s.push_str(&format_instructions(&self.instructions));
        s
    }

    /// The flow as `ovs-ofctl -O OpenFlow13 dump-flows --no-stats` prints it (leading space
    /// included); [`FlowMod::parse`] and `ovs-ofctl add-flow` accept it back.
    pub fn to_flow_text(&self) -> String {
        let mut s = String::from(" ");
        if self.cookie != 0 {
            s.push_str(&format!("cookie={:#x}, ", self.cookie));
        }
        if self.table_id != 0 {
            s.push_str(&format!("table={}, ", self.table_id));
        }
        if self.idle_timeout != 0 {
            s.push_str(&format!("idle_timeout={}, ", self.idle_timeout));
        }
        if self.hard_timeout != 0 {
            s.push_str(&format!("hard_timeout={}, ", self.hard_timeout));
        }
        for (bit, name) in FLAG_NAMES {
            if self.flags & bit != 0 {
                s.push_str(name);
                s.push(' ');
            }
        }
        s.push_str(&self.match_with_priority());
        if !s.ends_with(' ') {
            s.push(' ');
        }
        s.push_str("actions=");
        s.push_str(&format_instructions(&self.instructions));
        s
    }

    /// `match_format` with the priority in front when it is not the default.
    fn match_with_priority(&self) -> String {
        let m = self.r#match.to_string();
        if self.priority == DEFAULT_PRIORITY {
            m
        } else if m.is_empty() {
            format!("priority={}", self.priority)
        } else {
            format!("priority={},{m}", self.priority)
        }
    }
}

/// Splits flow text at its `actions=` (which must come last), as OVS does.
fn split_actions(text: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ => {}
        }
        // Compare bytes, not `text[i..]`: `i` walks bytes and may sit inside a multi-byte char
        // (fuzz finding flow_text crash-1b7af...). A match starts and ends on ASCII, so the
        // slices below are on char boundaries.
        if depth == 0 && bytes[i..].starts_with(b"actions") {
            let before_ok = i == 0 || matches!(bytes[i - 1], b',' | b' ' | b'\t');
            let rest = text[i + 7..].trim_start();
            if before_ok {
                if let Some(a) = rest.strip_prefix(['=', ':']) {
                    return (&text[..i], Some(a.trim()));
                }
            }
        }
    }
    (text, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::oracle;

    /// Fuzz finding (flow_text crash-1b7af...): a multi-byte char just before `actions` made the
    /// splitter slice inside it and panic. Any UTF-8 must be an error at worst.
    #[test]
    fn split_actions_on_multibyte_text() {
        assert_eq!(split_actions("actions\u{d5}esubmit:3"), ("actions\u{d5}esubmit:3", None));
        assert_eq!(split_actions("ip,\u{e9}actions=drop"), ("ip,\u{e9}actions=drop", None));
        assert_eq!(split_actions("ip,\u{e9},actions=drop"), ("ip,\u{e9},", Some("drop")));
        for t in
            ["actions\u{d5}esubmit:3", "\u{1f600}actions=\u{1f600}", "ip,nw_src=\u{e9}\u{e9},actions=output:\u{e9}"]
        {
            assert!(FlowMod::parse(t, FlowModCommand::Add).is_err());
            crate::fuzzing::flow_text(t.as_bytes());
        }
    }

    fn check(text: &str) {
        let ovs = oracle::parse_flow(text).unwrap_or_else(|e| panic!("OVS refuses {text}: {e}"));
        let xid = u32::from_be_bytes([ovs.bytes[4], ovs.bytes[5], ovs.bytes[6], ovs.bytes[7]]);
        let fm = FlowMod::parse(text, FlowModCommand::Add).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut ours = vec![0xa5u8; 5];
        fm.encode_into(xid, &mut ours);
        assert_eq!(crate::openflow::wire::to_hex(&ours[5..]), crate::openflow::wire::to_hex(&ovs.bytes), "{text}");
        let mut r = Reader::new(&ovs.bytes[8..], "flow_mod", ErrorCode::BAD_REQUEST_BAD_LEN);
        let d = FlowMod::decode_body(&mut r).unwrap();
        assert_eq!(d, fm, "{text}");
        assert_eq!(format!("OFPT_FLOW_MOD (OF1.3) (xid={xid:#x}): {}", d.ofp_print_body()), ovs.text, "{text}");
        // Every cut inside the fixed part or the match is an error; a cut between instructions
        // is a shorter valid body, but never a panic.
        let match_end = 40 + crate::openflow::wire::pad8(u16::from_be_bytes([ovs.bytes[50], ovs.bytes[51]]) as usize);
        for n in 0..ovs.bytes.len() - 8 {
            let mut r = Reader::new(&ovs.bytes[8..8 + n], "flow_mod", ErrorCode::BAD_REQUEST_BAD_LEN);
            let res = FlowMod::decode_body(&mut r);
            if n < match_end {
                assert!(res.is_err(), "{text}: prefix {n} decoded");
            }
        }
        let back = FlowMod::parse(&fm.to_flow_text(), FlowModCommand::Add).unwrap();
        assert_eq!(back, fm, "{}", fm.to_flow_text());
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn flow_mods_match_ovs() {
        check("table=3,priority=100,cookie=0xff00000000000001,idle_timeout=30,hard_timeout=40,send_flow_rem,check_overlap,reset_counts,no_packet_counts,no_byte_counts,tcp,actions=output:2");
        check("priority=5 actions=drop");
        check("table=3,priority=100,ct_state=+new+trk,tcp,reg0=0x1/0xff,nw_src=10.0.0.1,tp_dst=80,cookie=0x1,idle_timeout=30,actions=goto_table:4");
        check("in_port=1,dl_vlan=5,actions=drop");
    }

    /// Matches OVS's text parser never writes (NXM headers, xxreg, masked VLAN, ...), built by
    /// hand: our printing of them must still equal what `ofp-print` makes of our bytes.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn hand_built_matches_print_like_ovs() {
        use crate::openflow::oxm::Match;
        let cases = vec![
            Match::new().with(Field::VLAN_VID, 0x1005).with(Field::VLAN_PCP, 3),
            Match::new().with_masked(Field::VLAN_VID, 0, 0x1000),
            Match::new().with_masked(Field::VLAN_VID, 0x1000, 0x1f00),
            Match::new().with(Field::VLAN_TCI, 0x1005),
            Match::new().with_proto(0x800, 0).with(Field::IP_DSCP_SHIFTED, 0x20),
            Match::new().with(Field::IN_PORT, 3),
            Match::new().with(Field::IN_PORT, 0xfffe),
            Match::new().with(Field::xxreg(0), 5),
            Match::new().with_masked(Field::xreg(1), 0x1_0000_0002, 0xffff_0000_ffff),
            Match::new().with(Field::CT_STATE, 0x21),
            Match::new().with_masked(Field::CT_STATE, 0x20, 0x30),
            Match::new().with_proto(0x800, 6).with_masked(Field::TCP_FLAGS, 0x10, 0x12),
            Match::new().with_proto(0x86dd, 0).with_masked(Field::IP_FRAG, 1, 1),
            Match::new().with(Field::ETH_TYPE, 0x800).with_ipv4(Field::IPV4_DST, [10, 0, 0, 0], 8),
            Match::new().with(Field::DP_HASH, 7).with(Field::ACTSET_OUTPUT, 0xffff_fffd),
            Match::new().with_masked(Field::ETH_SRC, 0x0000_0000_0001, 0x0000_0000_00ff),
            Match::new().with_masked(Field::TUN_FLAGS, 1, 1),
            {
                // An all-zero mask, which only a peer would send.
                let mut m = Match::new().with_proto(0x800, 0);
                m.entries.push(crate::openflow::oxm::MatchEntry {
                    field: Field::IPV4_SRC,
                    value: crate::openflow::Value::zero(4),
                    mask: Some(crate::openflow::Value::zero(4)),
                });
                m
            },
        ];
        let mut bad = Vec::new();
        for m in cases {
            let mut fm = FlowMod::new(FlowModCommand::Add);
            fm.r#match = m;
            let bytes = fm.encode(1);
            let ovs = oracle::ofp_print(&bytes).unwrap_or_else(|e| e);
            let ovs = ovs.lines().next().unwrap_or("").to_string();
            let ours = format!("OFPT_FLOW_MOD (OF1.3) (xid=0x1): {}", fm.ofp_print_body());
            if ours != ovs {
                bad.push(format!("ours: {ours}\novs:  {ovs}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        // Values OVS refuses with OFPBMC_BAD_VALUE, and so do we.
        for m in [
            Match::new().with(Field::IN_PORT_OXM, 0x1234_5678),
            Match::new().with(Field::VLAN_VID, 0x2000),
            Match::new().with_proto(0x800, 0).with(Field::IP_DSCP, 64),
            Match::new().with_proto(0x800, 0).with(Field::IP_DSCP_SHIFTED, 1),
        ] {
            let mut fm = FlowMod::new(FlowModCommand::Add);
            fm.r#match = m;
            let bytes = fm.encode(1);
            let ovs = oracle::ofp_print(&bytes).unwrap_or_else(|e| e);
            assert!(ovs.contains("OFPBMC_BAD_VALUE"), "{ovs}");
            let e =
                FlowMod::decode_body(&mut Reader::new(&bytes[8..], "t", ErrorCode::BAD_REQUEST_BAD_LEN)).unwrap_err();
            assert_eq!(e.code, ErrorCode::BAD_MATCH_BAD_VALUE);
        }
    }

    /// Modify and delete cannot come from `parse-flow`; `ofp-print` of our bytes checks them.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn modify_and_delete_print_like_ovs() {
        let cases = [
            ("cookie=0x5/0xff,out_port=5,out_group=7,table=3,priority=100,tcp,actions=drop", FlowModCommand::Modify),
            ("priority=100,tcp,tp_dst=80,actions=goto_table:3", FlowModCommand::ModifyStrict),
            ("cookie=0x1/0x1,in_port=1", FlowModCommand::Delete),
            ("table=5,priority=7,out_port=LOCAL,ip,nw_dst=10.0.0.0/8", FlowModCommand::DeleteStrict),
            ("", FlowModCommand::Delete),
        ];
        for (text, cmd) in cases {
            let fm = FlowMod::parse(text, cmd).unwrap_or_else(|e| panic!("{text}: {e}"));
            let bytes = fm.encode(7);
            let ovs = oracle::ofp_print(&bytes).unwrap();
            let ovs = ovs.lines().next().unwrap_or("");
            assert_eq!(format!("OFPT_FLOW_MOD (OF1.3) (xid=0x7): {}", fm.ofp_print_body()), ovs, "{text}");
            let d = FlowMod::decode_body(&mut Reader::new(&bytes[8..], "t", ErrorCode::BAD_REQUEST_BAD_LEN)).unwrap();
            assert_eq!(d, fm);
        }
        let mut fm = FlowMod::parse("actions=drop", FlowModCommand::Add).unwrap();
        fm.buffer_id = 0x10;
        fm.flags = OFPFF_SEND_FLOW_REM;
        let ovs = oracle::ofp_print(&fm.encode(7)).unwrap();
        assert_eq!(
            format!("OFPT_FLOW_MOD (OF1.3) (xid=0x7): {}", fm.ofp_print_body()),
            ovs.lines().next().unwrap_or("")
        );
        // OVS refuses an unknown command (OFPFMFC_BAD_COMMAND); we keep it, losslessly.
        fm.command = FlowModCommand::Unknown(9);
        let bytes = fm.encode(7);
        let d = FlowMod::decode_body(&mut Reader::new(&bytes[8..], "t", ErrorCode::BAD_REQUEST_BAD_LEN)).unwrap();
        assert_eq!(d.encode(7), bytes);
        // Table 255 outside a delete: OVS's OFPFMFC_BAD_TABLE_ID, ours too.
        let mut fm = FlowMod::parse("actions=drop", FlowModCommand::Add).unwrap();
        fm.table_id = 0xff;
        let bytes = fm.encode(7);
        assert!(oracle::ofp_print(&bytes).unwrap().contains("OFPFMFC_BAD_TABLE_ID"));
        let e = FlowMod::decode_body(&mut Reader::new(&bytes[8..], "t", ErrorCode::BAD_REQUEST_BAD_LEN)).unwrap_err();
        assert_eq!(e.code, ErrorCode::FLOW_MOD_FAILED_BAD_TABLE_ID);
        assert!(FlowMod::parse("table=255,actions=drop", FlowModCommand::Modify).is_err());
    }

    #[test]
    fn flow_text_and_errors() {
        let fm =
            FlowMod::parse("table=3,priority=100,cookie=0x1,idle_timeout=30,tcp,actions=drop", FlowModCommand::Add)
                .unwrap();
        assert_eq!(fm.to_flow_text(), " cookie=0x1, table=3, idle_timeout=30, priority=100,tcp actions=drop");
        assert!(FlowMod::parse("tcp", FlowModCommand::Add).is_err());
        assert!(FlowMod::parse("cookie=1/1,actions=drop", FlowModCommand::Add).is_err());
        assert!(FlowMod::parse("out_port=1,actions=drop", FlowModCommand::Add).is_err());
        let d = FlowMod::parse("cookie=1/0xff,out_port=LOCAL,tcp", FlowModCommand::Delete).unwrap();
        assert_eq!((d.cookie, d.cookie_mask, d.out_port, d.table_id), (1, 0xff, 0xffff_fffe, 0xff));
        assert_eq!(d.ofp_print_body(), "DEL table:255 tcp cookie:0x1/0xff out_port:LOCAL actions=drop");
        let e = FlowMod::parse("priority=70000,actions=drop", FlowModCommand::Add).unwrap_err();
        assert_eq!(e.token, "priority=70000");
    }
}
