//! Actions as `ovs-ofctl` text: printing as OVS's `ofpacts_format` does, and parsing OVS's
//! action grammar (ovs-actions(7)), including the older spellings OVS maps onto OXM set_field
//! in OpenFlow 1.3 (`mod_dl_src`, `mod_nw_tos`, `mod_vlan_vid`, `set_tunnel`, ...).

use std::fmt;

use super::port::{self, parse_u16, parse_u32, parse_u8, OFPP_CONTROLLER, OFPP_IN_PORT, OFPP_MAX};
use super::value::{self, format_value, parse_value};
use super::{bundle, conjunction, ct, learn, multipath, Action, Controller};
use crate::openflow::text::parse_subfield;
use crate::openflow::text::value::parse_ipv4_strict;
use crate::openflow::{Field, Subfield, TextError, Value};

// === printing ===

/// Bytes as OVS prints notes and userdata: `01.02.03`.
pub fn dotted_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(".")
}

/// OVS's text for a list of actions: comma-separated, `drop` when empty.
pub fn format_actions(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    actions.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

fn fmt_ofp11_port(port: u32) -> String {
    match port::port_from_ofp11(port, "port") {
        Ok(p) if p < OFPP_MAX => format!("output:{p}"),
        Ok(p) => port::format_port16(p),
        Err(_) => format!("output:{port}"),
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output { port, max_len } => {
                f.write_str(&fmt_ofp11_port(*port))?;
                if *port == port::OFPP11_CONTROLLER {
                    write!(f, ":{max_len}")?;
                }
                Ok(())
            }
            Action::OutputTrunc { port, max_len } => {
                write!(f, "output(port={},max_len={max_len})", port::format_port16(*port))
            }
            Action::OutputReg { src, .. } => write!(f, "output:{}", src),
            Action::Group(g) => write!(f, "group:{g}"),
            Action::SetField { field, value } => {
                write!(f, "set_field:{}->{}", format_value(*field, value, None), field.name())
            }
            Action::RegLoad { dst, value } => {
                write!(f, "load:{}->{}", value::hex(*value as u128), dst)
            }
            Action::RegLoad2 { field, value, mask } => {
                write!(f, "set_field:{}->{}", format_value(*field, value, mask.as_ref()), field.name())
            }
            Action::RegMove { src, dst } => {
                write!(f, "move:{}->{}", src, dst)
            }
            Action::PushVlan(e) => write!(f, "push_vlan:{e:#06x}"),
            Action::PopVlan => f.write_str("pop_vlan"),
            Action::PushMpls(e) => write!(f, "push_mpls:{e:#06x}"),
            Action::PopMpls(e) => write!(f, "pop_mpls:{e:#06x}"),
            Action::SetQueue(q) => write!(f, "set_queue:{q}"),
            Action::PopQueue => f.write_str("pop_queue"),
            Action::DecTtl => f.write_str("dec_ttl"),
            Action::DecTtlCntIds(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "dec_ttl({})", ids.join(","))
            }
            Action::SetNwTtl(t) => write!(f, "mod_nw_ttl:{t}"),
            Action::SetMplsTtl(t) => write!(f, "set_mpls_ttl({t})"),
            Action::DecMplsTtl => f.write_str("dec_mpls_ttl"),
            Action::CopyTtlOut => f.write_str("copy_ttl_out"),
            Action::CopyTtlIn => f.write_str("copy_ttl_in"),
            Action::Resubmit { in_port, table, ct, .. } => {
                if *in_port != OFPP_IN_PORT && *table == 255 && !ct {
                    return write!(f, "resubmit:{}", port::format_port16(*in_port));
                }
                f.write_str("resubmit(")?;
                if *in_port != OFPP_IN_PORT {
                    f.write_str(&port::format_port16(*in_port))?;
                }
                f.write_str(",")?;
                if *table != 255 {
                    write!(f, "{table}")?;
                }
                if *ct {
                    f.write_str(",ct")?;
                }
                f.write_str(")")
            }
            Action::Note(bytes) => write!(f, "note:{}", dotted_hex(bytes)),
            Action::CtClear => f.write_str("ct_clear"),
            Action::Exit => f.write_str("exit"),
            Action::FinTimeout { idle_timeout, hard_timeout } => {
                let mut parts = Vec::new();
                if *idle_timeout != 0 {
                    parts.push(format!("idle_timeout={idle_timeout}"));
                }
                if *hard_timeout != 0 {
                    parts.push(format!("hard_timeout={hard_timeout}"));
                }
                write!(f, "fin_timeout({})", parts.join(","))
            }
            Action::Controller(c) => c.fmt(f),
            Action::Clone(acts) => write!(f, "clone({})", format_actions(acts)),
            Action::StackPush(sf) => write!(f, "push:{}", sf),
            Action::StackPop(sf) => write!(f, "pop:{}", sf),
            Action::Sample(smp) => {
                write!(
                    f,
                    "sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={}",
                    smp.probability, smp.collector_set_id, smp.obs_domain_id, smp.obs_point_id
                )?;
                if smp.sampling_port != port::OFPP_NONE {
                    write!(f, ",sampling_port={}", port::format_port16(smp.sampling_port))?;
                }
                match smp.direction {
                    1 => f.write_str(",ingress")?,
                    2 => f.write_str(",egress")?,
                    _ => {}
                }
                f.write_str(")")
            }
            Action::CheckPktLarger { pkt_len, dst } => {
                write!(f, "check_pkt_larger({pkt_len})->{}", dst)
            }
            Action::Ct(a) => a.fmt(f),
            Action::Nat(a) => a.fmt(f),
            Action::Learn(a) => a.fmt(f),
            Action::Multipath(a) => a.fmt(f),
            Action::Bundle(a) => a.fmt(f),
            Action::Conjunction(a) => a.fmt(f),
            // OVS would refuse the whole message; show the bytes so nothing is hidden.
            Action::Unknown { bytes } => write!(f, "unknown({})", crate::openflow::wire::to_hex(bytes)),
        }
    }
}

// === parsing ===

/// Splits `s` at the commas that are not inside parentheses or brackets, trimming each piece
/// and dropping empty ones. OVS also separates actions with white space outside parentheses.
pub fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | ' ' | '\t' | '\r' | '\n' if depth <= 0 => {
                let piece = s[start..i].trim();
                if !piece.is_empty() {
                    out.push(piece);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let piece = s[start..].trim();
    if !piece.is_empty() {
        out.push(piece);
    }
    out
}

/// Splits one action into its keyword and argument as `ofputil_parse_key_value` does:
/// `name(args)`, `name:arg`, `name=arg` or a bare `name` (argument "").
pub fn split_key_value(item: &str) -> Result<(&str, &str), TextError> {
    match item.find([':', '=', '(']) {
        None => Ok((item, "")),
        // `check_pkt_larger(LEN)->DST`: the argument runs past the parenthesis.
        Some(i) if item.as_bytes()[i] == b'(' && item[i + 1..].contains(")->") => Ok((&item[..i], &item[i + 1..])),
        Some(i) if item.as_bytes()[i] == b'(' => match item[i + 1..].strip_suffix(')') {
            Some(inner) => Ok((&item[..i], inner)),
            None => Err(TextError::new(item, "unbalanced parentheses")),
        },
        Some(i) => Ok((&item[..i], &item[i + 1..])),
    }
}

/// What OVS consults from the flow's match when it translates old action spellings:
/// `mod_tp_src` needs the IP protocol, `mod_vlan_vid` pushes a tag unless the flow matches one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseContext {
    /// The match's `nw_proto`, if it sets one exactly (6 TCP, 17 UDP, 132 SCTP).
    pub ip_proto: Option<u8>,
    /// Whether the match requires a VLAN tag (so `mod_vlan_vid` needs no push_vlan).
    pub has_vlan: bool,
}

/// Parses an action list in OVS's syntax (`output:2,load:0x1->NXM_NX_REG0[]`); `drop` or ""
/// is the empty list. Spellings that depend on the match (`mod_tp_src`) need
/// [`parse_actions_in`].
pub fn parse_actions(s: &str) -> Result<Vec<Action>, TextError> {
    parse_actions_in(s, &ParseContext::default())
}

/// [`parse_actions`] knowing what the flow matches.
pub fn parse_actions_in(s: &str, ctx: &ParseContext) -> Result<Vec<Action>, TextError> {
    let out = parse_nested(s, ctx)?;
    // OVS's `ofpacts_verify_nested`: `nat` only means something inside `ct(...)`.
    if out.iter().any(|a| matches!(a, Action::Nat(_))) {
        return Err(TextError::new(s, "Cannot have NAT action outside of \"ct\" action"));
    }
    Ok(out)
}

/// The action list inside `ct(exec(...))`, where `nat` is allowed (`ct` checks the rest).
pub(crate) fn parse_nested(s: &str, ctx: &ParseContext) -> Result<Vec<Action>, TextError> {
    let items = split_top_level(s);
    let mut out = Vec::new();
    let mut saw_drop = false;
    for item in &items {
        let (key, arg) = split_key_value(item)?;
        if key.eq_ignore_ascii_case("drop") {
            saw_drop = true;
            continue;
        }
        parse_one(key, arg, ctx, &mut out)?;
    }
    if saw_drop && !out.is_empty() {
        return Err(TextError::new(s, "\"drop\" must not be accompanied by any other action"));
    }
    Ok(out)
}

fn need<T>(v: Option<T>, arg: &str, what: &str) -> Result<T, TextError> {
    v.ok_or_else(|| TextError::new(arg, format!("invalid {what}")))
}

/// `load:`'s and partial `set_field:`'s NXAST_REG_LOAD actions: one per run of set mask bits,
/// at most 64 bits each, as OVS's `next_load_segment` cuts them.
fn reg_loads(field: Field, value: u128, mask: u128, out: &mut Vec<Action>) {
    let width = field.bits() as u32;
    let bit = |v: u128, i: u32| (v >> i) & 1 == 1;
    let mut i = 0;
    while i < width {
        if !bit(mask, i) {
            i += 1;
            continue;
        }
        let ofs = i;
        let limit = (ofs + 64).min(width);
        while i < limit && bit(mask, i) {
            i += 1;
        }
        let n = i - ofs;
        let v = (value >> ofs) & if n >= 128 { !0 } else { (1u128 << n) - 1 };
        out.push(Action::RegLoad { dst: Subfield { field, ofs: ofs as u16, n_bits: n as u16 }, value: v as u64 });
    }
}

/// A set_field of `field` to `value`/`mask` the way OVS encodes it in OpenFlow 1.3: whole
/// field -> OFPAT_SET_FIELD; part of it -> NXAST_REG_LOAD runs, or REG_LOAD2 when the field
/// has only an experimenter OXM header.
fn push_set_field(field: Field, value: Value, mask: Option<Value>, out: &mut Vec<Action>) {
    match mask.filter(|m| !m.is_all_ones()) {
        None => out.push(Action::SetField { field, value }),
        Some(m) if value::fits_nxm_slot(field) => reg_loads(field, value.to_u128() & m.to_u128(), m.to_u128(), out),
        Some(m) => out.push(Action::RegLoad2 { field, value, mask: Some(m) }),
    }
}

fn set_field_text(arg: &str, out: &mut Vec<Action>) -> Result<(), TextError> {
    let (v, name) = arg.split_once("->").ok_or_else(|| TextError::new(arg, "missing `->'"))?;
    let field = Field::from_name(name.trim()).ok_or_else(|| TextError::new(name, "is not a valid OXM field name"))?;
    if !field.def().writable {
        return Err(TextError::new(name, "is read-only"));
    }
    let (value, mask) = parse_value(field, v)?;
    check_value(field, &value)?;
    // A vlan_vid without the OFPVID_PRESENT bit is refused by the check against the match,
    // after its prerequisites, as OVS orders it (`check::check_actions`).
    push_set_field(field, value, mask, out);
    Ok(())
}

fn load_text(arg: &str, out: &mut Vec<Action>) -> Result<(), TextError> {
    let (v, dst) = arg.split_once("->").ok_or_else(|| TextError::new(arg, "missing `->'"))?;
    let dst = parse_subfield(dst)?;
    let v = value::parse_u128(v).ok_or_else(|| TextError::new(arg, "cannot parse integer value"))?;
    if dst.n_bits < 128 && v >> dst.n_bits != 0 {
        return Err(TextError::new(arg, format!("value does not fit into {} bits", dst.n_bits)));
    }
    let ones = if dst.n_bits >= 128 { !0u128 } else { (1u128 << dst.n_bits) - 1 };
    if value::fits_nxm_slot(dst.field) {
        reg_loads(dst.field, v << dst.ofs, ones << dst.ofs, out);
    } else {
        let n = dst.field.bytes();
        let mask = Value::from_u128(ones << dst.ofs, n);
        out.push(Action::RegLoad2 { field: dst.field, value: Value::from_u128(v << dst.ofs, n), mask: Some(mask) });
    }
    Ok(())
}

fn move_text(arg: &str) -> Result<Action, TextError> {
    let (s, d) = arg.split_once("->").ok_or_else(|| TextError::new(arg, "missing `->'"))?;
    let src = parse_subfield(s)?;
    let dst = parse_subfield(d)?;
    if src.n_bits != dst.n_bits {
        return Err(TextError::new(
            arg,
            format!("source field is {} bits wide but destination is {} bits wide", src.n_bits, dst.n_bits),
        ));
    }
    if !dst.field.def().writable {
        return Err(TextError::new(d, "destination field is not writable (OFPBAC_BAD_SET_ARGUMENT)"));
    }
    Ok(Action::RegMove { src, dst })
}

/// `output:ARG`: a port, a sub-field (NXAST_OUTPUT_REG) or `output(port=..,max_len=..)`.
fn output_text(arg: &str) -> Result<Action, TextError> {
    if arg.contains("port") && arg.contains("max_len") {
        let mut port = None;
        let mut max_len = None;
        for kv in split_top_level(arg) {
            match kv.split_once('=') {
                Some(("port", v)) => {
                    let p = port::parse_port16(v)?;
                    if p >= OFPP_MAX && p != port::OFPP_LOCAL && p != OFPP_IN_PORT {
                        return Err(TextError::new(v, "output to unsupported truncate port"));
                    }
                    port = Some(p)
                }
                Some(("max_len", v)) => {
                    let n = need(parse_u32(v), v, "max_len")?;
                    if n < 14 {
                        return Err(TextError::new(v, "max_len is less than the minimum value 14"));
                    }
                    max_len = Some(n)
                }
                _ => return Err(TextError::new(kv, "invalid key in output_trunc argument")),
            }
        }
        return Ok(Action::OutputTrunc { port: need(port, arg, "port")?, max_len: need(max_len, arg, "max_len")? });
    }
    if let Ok(p) = port::parse_port16(arg) {
        return output_port(p, arg);
    }
    match parse_subfield(arg) {
        Ok(src) => Ok(Action::OutputReg { src, max_len: u16::MAX, reg2: !value::fits_nxm_slot(src.field) }),
        Err(_) => Err(TextError::new(arg, "output to unknown port (OFPBAC_BAD_OUT_PORT)")),
    }
}

fn output_port(p: u16, arg: &str) -> Result<Action, TextError> {
    if !port::is_valid_output(p) {
        return Err(TextError::new(arg, "invalid output port (OFPBAC_BAD_OUT_PORT)"));
    }
    let max_len = if p == OFPP_CONTROLLER { u16::MAX } else { 0 };
    Ok(Action::Output { port: port::port_to_ofp11(p), max_len })
}

fn resubmit_text(arg: &str) -> Result<Action, TextError> {
    let mut parts = arg.splitn(3, ',');
    let p = parts.next().unwrap_or("");
    let t = parts.next().unwrap_or("");
    let c = parts.next().unwrap_or("");
    if arg.contains(char::is_whitespace) {
        return Err(TextError::new(arg, "white space in resubmit arguments"));
    }
    let in_port = if p.is_empty() { OFPP_IN_PORT } else { port::parse_port16(p)? };
    // Table ids are decimal in OVS (`resubmit(,010)` is table 10).
    let table =
        if t.is_empty() { 255 } else { need(port::parse_dec(t).and_then(|v| u8::try_from(v).ok()), t, "table")? };
    let ct = match c {
        "" => false,
        "ct" => true,
        _ => return Err(TextError::new(c, "unknown resubmit argument")),
    };
    if in_port == OFPP_IN_PORT && table == 255 {
        return Err(TextError::new(arg, "at least one \"in_port\" or \"table\" must be specified on resubmit"));
    }
    Ok(Action::Resubmit { in_port, table, ct, legacy: false })
}

/// Hex bytes as OVS's `ofpbuf_put_hex` reads them: pairs of hex digits, each optionally
/// followed by a `.` (`01.02.03`, `010203`).
pub fn parse_dotted_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hi = (b[i] as char).to_digit(16)?;
        let lo = (*b.get(i + 1)? as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
        i += 2;
        if b.get(i) == Some(&b'.') {
            i += 1;
        }
    }
    Some(out)
}

fn note_text(arg: &str) -> Result<Action, TextError> {
    let mut bytes = parse_dotted_hex(arg).ok_or_else(|| TextError::new(arg, "bad hex digit in `note' argument"))?;
    // Pad so the action (10-byte header + note) is a multiple of 8, at least 16.
    let total = crate::openflow::wire::pad8(10 + bytes.len()).max(16);
    bytes.resize(total - 10, 0);
    Ok(Action::Note(bytes))
}

fn fin_timeout_text(arg: &str) -> Result<Action, TextError> {
    let (mut idle_timeout, mut hard_timeout) = (0, 0);
    for kv in split_top_level(arg) {
        match kv.split_once('=') {
            Some(("idle_timeout", v)) => idle_timeout = need(parse_u16(v), v, "idle_timeout")?,
            Some(("hard_timeout", v)) => hard_timeout = need(parse_u16(v), v, "hard_timeout")?,
            _ => return Err(TextError::new(kv, "invalid key in fin_timeout argument")),
        }
    }
    Ok(Action::FinTimeout { idle_timeout, hard_timeout })
}

fn sample_text(arg: &str) -> Result<Action, TextError> {
    let mut smp = super::Sample {
        probability: 0,
        collector_set_id: 0,
        obs_domain_id: 0,
        obs_point_id: 0,
        sampling_port: port::OFPP_NONE,
        direction: 0,
        subtype: 0,
    };
    for kv in split_top_level(arg) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "probability" => smp.probability = need(parse_u16(v).filter(|p| *p != 0), v, "probability")?,
            "collector_set_id" => smp.collector_set_id = need(parse_u32(v), v, "collector_set_id")?,
            "obs_domain_id" => smp.obs_domain_id = need(parse_u32(v), v, "obs_domain_id")?,
            "obs_point_id" => smp.obs_point_id = need(parse_u32(v), v, "obs_point_id")?,
            "sampling_port" => smp.sampling_port = port::parse_port16(v)?,
            "ingress" => smp.direction = 1,
            "egress" => smp.direction = 2,
            _ => return Err(TextError::new(kv, "invalid key in sample argument")),
        }
    }
    if smp.probability == 0 {
        return Err(TextError::new(arg, "non-zero \"probability\" must be specified on sample"));
    }
    smp.subtype = smp.wire_subtype();
    Ok(Action::Sample(smp))
}

fn ethertype(arg: &str) -> Result<u16, TextError> {
    need(parse_u16(arg), arg, "ethertype")
}

fn set_one(field: Field, v: u128) -> Result<Action, TextError> {
    let value = Value::from_u128(v, field.bytes());
    check_value(field, &value)?;
    Ok(Action::SetField { field, value })
}

/// OVS's `mf_is_value_valid` for integer fields: no bits beyond the field's meaningful ones
/// (13 for vlan_vid with its present bit, 20 for ipv6_label and mpls_label, 3 for mpls_tc).
pub(super) fn check_value(field: Field, value: &Value) -> Result<(), TextError> {
    let bits = field.bits() as u32;
    if bits < 128 && bits < field.bytes() as u32 * 8 && value.to_u128() >> bits != 0 {
        return Err(TextError::new(
            format!("{:#x}", value.to_u128()),
            format!("is not a valid value for field {}", field.name()),
        ));
    }
    Ok(())
}

fn parse_field_value(field: Field, arg: &str) -> Result<Value, TextError> {
    match parse_value(field, arg)? {
        (v, None) => Ok(v),
        (_, Some(_)) => Err(TextError::new(arg, "mask not allowed here")),
    }
}

/// Parses one `key[:arg]` action onto `out` (some spellings give two actions).
fn parse_one(key: &str, arg: &str, ctx: &ParseContext, out: &mut Vec<Action>) -> Result<(), TextError> {
    let key_l = key.to_ascii_lowercase();
    let raw_arg = arg;
    let arg = arg.trim();
    let a = match key_l.as_str() {
        "output" => output_text(arg)?,
        "group" => Action::Group(need(parse_u32(arg), arg, "group id")?),
        "controller" => {
            let c = Controller::parse(arg)?;
            if c.is_plain() {
                Action::Output { port: port::OFPP11_CONTROLLER, max_len: c.max_len }
            } else {
                Action::Controller(c)
            }
        }
        "enqueue" => {
            let (p, q) = arg
                .split_once([':', ',', 'q'])
                .ok_or_else(|| TextError::new(arg, "\"enqueue\" syntax is \"enqueue:PORT:QUEUE\""))?;
            let p = port::parse_port16(p)?;
            out.push(Action::SetQueue(need(parse_u32(q), q, "queue")?));
            out.push(Action::Output { port: port::port_to_ofp11(p), max_len: u16::MAX });
            Action::PopQueue
        }
        "set_field" => return set_field_text(arg, out),
        "load" => return load_text(arg, out),
        "move" => move_text(arg)?,
        "push_vlan" => match ethertype(arg)? {
            e @ (0x8100 | 0x88a8) => Action::PushVlan(e),
            _ => return Err(TextError::new(arg, "not a valid VLAN ethertype")),
        },
        "pop_vlan" | "strip_vlan" => Action::PopVlan,
        "push_mpls" => match ethertype(arg)? {
            e @ (0x8847 | 0x8848) => Action::PushMpls(e),
            _ => return Err(TextError::new(arg, "not an MPLS ethertype (OFPBAC_BAD_ARGUMENT)")),
        },
        "pop_mpls" => Action::PopMpls(ethertype(arg)?),
        "set_queue" => Action::SetQueue(need(parse_u32(arg), arg, "queue")?),
        "pop_queue" => Action::PopQueue,
        "dec_ttl" => {
            if arg.is_empty() {
                Action::DecTtl
            } else {
                let ids = split_top_level(arg)
                    .into_iter()
                    .map(|i| need(port::parse_dec(i).and_then(|v| u16::try_from(v).ok()), i, "controller id"))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.is_empty() {
                    return Err(TextError::new(arg, "dec_ttl_cnt_ids: expected at least one controller id."));
                }
                Action::DecTtlCntIds(ids)
            }
        }
        "mod_nw_ttl" | "set_nw_ttl" => Action::SetNwTtl(need(parse_u8(arg), arg, "TTL")?),
        "set_mpls_ttl" => Action::SetMplsTtl(need(parse_u8(arg), arg, "TTL")?),
        "dec_mpls_ttl" => Action::DecMplsTtl,
        "copy_ttl_in" => Action::CopyTtlIn,
        "copy_ttl_out" => Action::CopyTtlOut,
        // OVS refuses white space inside resubmit's arguments.
        "resubmit" => resubmit_text(raw_arg)?,
        "note" => note_text(arg)?,
        "ct_clear" => Action::CtClear,
        "exit" => Action::Exit,
        "fin_timeout" => fin_timeout_text(arg)?,
        "output_reg" => output_text(arg)?,
        // Old spellings that OpenFlow 1.3 expresses as set_field.
        "mod_dl_src" => Action::SetField { field: Field::ETH_SRC, value: parse_field_value(Field::ETH_SRC, arg)? },
        "mod_dl_dst" => Action::SetField { field: Field::ETH_DST, value: parse_field_value(Field::ETH_DST, arg)? },
        // OVS reads these with `inet_pton` (`str_to_ip`), stricter than a match's `ip_parse`.
        "mod_nw_src" => Action::SetField {
            field: Field::IPV4_SRC,
            value: Value::from_u128(u32::from_be_bytes(parse_ipv4_strict(arg)?) as u128, 4),
        },
        "mod_nw_dst" => Action::SetField {
            field: Field::IPV4_DST,
            value: Value::from_u128(u32::from_be_bytes(parse_ipv4_strict(arg)?) as u128, 4),
        },
        "mod_nw_tos" => {
            let tos = need(parse_u8(arg), arg, "TOS")?;
            if tos & 3 != 0 {
                return Err(TextError::new(arg, "not a valid TOS (low 2 bits must be zero)"));
            }
            set_one(Field::IP_DSCP, (tos >> 2) as u128)?
        }
        "mod_nw_ecn" => {
            let ecn = need(parse_u8(arg).filter(|e| *e < 4), arg, "ECN")?;
            set_one(Field::IP_ECN, ecn as u128)?
        }
        "mod_tp_src" | "mod_tp_dst" => {
            let p = need(parse_u16(arg), arg, "port")?;
            let src = key_l == "mod_tp_src";
            let field = match ctx.ip_proto {
                Some(6) => {
                    if src {
                        Field::TCP_SRC
                    } else {
                        Field::TCP_DST
                    }
                }
                Some(17) => {
                    if src {
                        Field::UDP_SRC
                    } else {
                        Field::UDP_DST
                    }
                }
                Some(132) => {
                    if src {
                        Field::SCTP_SRC
                    } else {
                        Field::SCTP_DST
                    }
                }
                _ => return Err(TextError::new(key, "needs a tcp, udp or sctp match (OFPBAC_MATCH_INCONSISTENT)")),
            };
            set_one(field, p as u128)?
        }
        "mod_vlan_vid" | "set_vlan_vid" => {
            let vid = need(parse_u16(arg).filter(|v| *v < 4096), arg, "VLAN id")?;
            if key_l == "mod_vlan_vid" && !ctx.has_vlan {
                out.push(Action::PushVlan(0x8100));
            }
            set_one(Field::VLAN_VID, (vid | 0x1000) as u128)?
        }
        "mod_vlan_pcp" | "set_vlan_pcp" => {
            let pcp = need(parse_u8(arg).filter(|v| *v < 8), arg, "VLAN priority")?;
            if key_l == "mod_vlan_pcp" && !ctx.has_vlan {
                out.push(Action::PushVlan(0x8100));
            }
            set_one(Field::VLAN_PCP, pcp as u128)?
        }
        "set_tunnel" | "set_tunnel64" => {
            let v = value::parse_u128(arg).and_then(|v| u64::try_from(v).ok());
            set_one(Field::TUN_ID, need(v, arg, "tunnel id")? as u128)?
        }
        "set_mpls_label" => set_one(Field::MPLS_LABEL, need(parse_u32(arg), arg, "label")? as u128)?,
        "set_mpls_tc" => set_one(Field::MPLS_TC, need(parse_u8(arg), arg, "tc")? as u128)?,
        "clone" => Action::Clone(parse_actions_in(arg, ctx)?),
        "push" => Action::StackPush(parse_subfield(arg)?),
        "pop" => Action::StackPop(parse_subfield(arg)?),
        "sample" => sample_text(arg)?,
        "check_pkt_larger" => {
            let (len, dst) =
                arg.split_once(")->").ok_or_else(|| TextError::new(arg, "expected check_pkt_larger(LEN)->DST[bit]"))?;
            let dst = parse_subfield(dst)?;
            if dst.n_bits != 1 {
                return Err(TextError::new(arg, "check_pkt_larger destination must be a single bit"));
            }
            Action::CheckPktLarger { pkt_len: need(parse_u16(len), len, "packet length")?, dst }
        }
        "ct" => Action::Ct(ct::Ct::parse(arg)?),
        "nat" => Action::Nat(ct::Nat::parse(arg)?),
        "learn" => Action::Learn(learn::Learn::parse(arg)?),
        "multipath" => Action::Multipath(multipath::Multipath::parse(&key_l, arg)?),
        "bundle" | "bundle_load" => Action::Bundle(bundle::Bundle::parse(&key_l, arg)?),
        "conjunction" => Action::Conjunction(conjunction::Conjunction::parse(&key_l, arg)?),
        _ => match port::parse_port16(key) {
            // A bare port number or name means output to it.
            Ok(p) if arg.is_empty() => output_port(p, key)?,
            _ => return Err(TextError::new(key, "unknown action")),
        },
    };
    out.push(a);
    Ok(())
}
