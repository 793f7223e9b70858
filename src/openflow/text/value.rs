//! Field values as `ovs-ofctl` writes and reads them (OVS `mf_format` / `mf_parse`).
//!
//! Integers: decimal fields print in decimal, hexadecimal fields as `0x` with no leading zeros
//! (zero prints as `0`), masks always in hex. Input accepts C `strtoull` base-0 syntax (`0x..`,
//! leading `0` octal, decimal) like OVS. Addresses, ports and flag sets have their own forms.

use crate::openflow::error::TextError;
use crate::openflow::field::{Field, Format, Subfield, Value};

/// Names of the TCP flag bits, lowest bit first (OVS `packet_tcp_flag_to_string`).
pub const TCP_FLAG_NAMES: &[(u32, &str)] = &[
    (0x001, "fin"),
    (0x002, "syn"),
    (0x004, "rst"),
    (0x008, "psh"),
    (0x010, "ack"),
    (0x020, "urg"),
    (0x040, "ece"),
    (0x080, "cwr"),
    (0x100, "ns"),
    (0x200, "[200]"),
    (0x400, "[400]"),
    (0x800, "[800]"),
];

/// Names of the conntrack state bits (OVS `ct_state_to_string`).
pub const CT_STATE_NAMES: &[(u32, &str)] = &[
    (0x01, "new"),
    (0x02, "est"),
    (0x04, "rel"),
    (0x08, "rpl"),
    (0x10, "inv"),
    (0x20, "trk"),
    (0x40, "snat"),
    (0x80, "dnat"),
];

/// The public tunnel flags (`FLOW_TNL_PUB_F_MASK`: only `oam`).
pub const TUN_FLAG_NAMES: &[(u32, &str)] = &[(0x1, "oam")];

/// `ip_frag` names and their (value, mask) (OVS `all_frags`).
const FRAG_NAMES: &[(&str, u8, u8)] =
    &[("no", 0, 3), ("yes", 1, 1), ("first", 1, 3), ("later", 3, 3), ("not_later", 0, 2)];

/// Reserved OpenFlow 1.0 port numbers and their names (OVS `ofputil_port_to_string`).
pub(crate) const PORT_NAMES: &[(u16, &str)] = &[
    (0xfff8, "IN_PORT"),
    (0xfff9, "TABLE"),
    (0xfffa, "NORMAL"),
    (0xfffb, "FLOOD"),
    (0xfffc, "ALL"),
    (0xfffd, "CONTROLLER"),
    (0xfffe, "LOCAL"),
    (0xffff, "ANY"),
];

// === formatting ===

/// OVS `ds_put_hex`: `0x` and the value without leading zeros, or `0`. Any length (learn
/// immediates can be far wider than 128 bits).
pub(crate) fn put_hex(s: &mut String, bytes: &[u8]) {
    match bytes.iter().position(|b| *b != 0) {
        None => s.push('0'),
        Some(i) => {
            s.push_str(&format!("{:#x}", bytes[i]));
            for b in &bytes[i + 1..] {
                s.push_str(&format!("{b:02x}"));
            }
        }
    }
}

/// [`put_hex`] into a new string.
pub fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    put_hex(&mut s, bytes);
    s
}

/// A 16-bit OpenFlow 1.0 port number as OVS prints it (`LOCAL`, `CONTROLLER`, `3`).
pub fn format_port(port: u16) -> String {
    match PORT_NAMES.iter().find(|(p, _)| *p == port) {
        Some((_, n)) => (*n).to_string(),
        None => port.to_string(),
    }
}

/// An OpenFlow 1.1+ 32-bit port mapped to the 16-bit space OVS uses internally
/// (`ofputil_port_from_ofp11`); `None` for numbers that have no 16-bit form.
pub fn port_from_ofp11(p: u32) -> Option<u16> {
    if p < 0xff00 {
        Some(p as u16)
    } else if p >= 0xffff_ff00 {
        Some((p - 0xffff_0000) as u16)
    } else {
        None
    }
}

/// The 32-bit wire form of a 16-bit port (`ofputil_port_to_ofp11`).
pub fn port_to_ofp11(p: u16) -> u32 {
    if p < 0xff00 {
        p as u32
    } else {
        p as u32 + 0xffff_0000
    }
}

/// Formats a set of flag bits. With `mask == max` (or no mask) as `a|b` (`0` when none), else as
/// `+a-b` for every masked bit (OVS `format_flags_masked`).
pub(crate) fn format_flags(s: &mut String, names: &[(u32, &str)], flags: u32, mask: u32, max: u32) {
    let name = |bit: u32| names.iter().find(|(b, _)| *b == bit).map(|(_, n)| *n);
    if mask == max {
        if flags == 0 {
            s.push('0');
            return;
        }
        let mut bad = 0;
        let mut first = true;
        let mut f = flags;
        while f != 0 {
            let bit = f & f.wrapping_neg();
            match name(bit) {
                Some(n) => {
                    if !first {
                        s.push('|');
                    }
                    s.push_str(n);
                    first = false;
                }
                None => bad |= bit,
            }
            f &= !bit;
        }
        if bad != 0 {
            if !first {
                s.push('|');
            }
            s.push_str(&format!("0x{bad:x}"));
        }
        return;
    }
    if mask == 0 {
        s.push_str("0/0");
        return;
    }
    let mut m = mask;
    while m != 0 {
        let bit = m & m.wrapping_neg();
        s.push(if flags & bit != 0 { '+' } else { '-' });
        s.push_str(name(bit).unwrap_or("[Unknown]"));
        m &= !bit;
    }
}

/// Lower-case `xx:xx:xx:xx:xx:xx`.
pub(crate) fn format_eth(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// Dotted quad of the last four bytes (shorter input is zero-extended on the left).
pub(crate) fn format_ipv4(b: &[u8]) -> String {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[4 - n..].copy_from_slice(&b[b.len() - n..]);
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Number of leading one bits if the mask is a CIDR prefix, else `None`.
pub(crate) fn cidr_len(mask: &[u8]) -> Option<u32> {
    let v = mask.iter().fold(0u128, |a, b| (a << 8) | *b as u128);
    let bits = mask.len() as u32 * 8;
    let ones = (v << (128 - bits)).leading_ones();
    let shifted = if ones >= bits { 0 } else { v << (128 - bits + ones) };
    if shifted == 0 {
        Some(ones.min(bits))
    } else {
        None
    }
}

/// OVS `ip_format_masked`: `a.b.c.d`, `a.b.c.d/n` or `a.b.c.d/m.m.m.m`.
pub(crate) fn format_ipv4_masked(v: &[u8], mask: Option<&[u8]>) -> String {
    format_masked(v, mask, format_ipv4)
}

/// An address, then `/n` for a CIDR mask or `/MASK` for any other; nothing for an exact match.
fn format_masked(v: &[u8], mask: Option<&[u8]>, addr: fn(&[u8]) -> String) -> String {
    let mut s = addr(v);
    if let Some(m) = mask {
        if !m.iter().all(|b| *b == 0xff) {
            match cidr_len(m) {
                Some(n) => s.push_str(&format!("/{n}")),
                None => {
                    s.push('/');
                    s.push_str(&addr(m));
                }
            }
        }
    }
    s
}

/// IPv6 text as glibc's `inet_ntop` writes it (longest run of two or more zero groups as `::`,
/// IPv4-compatible and -mapped forms with a dotted tail).
pub(crate) fn format_ipv6(b: &[u8]) -> String {
    let mut a = [0u8; 16];
    let n = b.len().min(16);
    a[16 - n..].copy_from_slice(&b[b.len() - n..]);
    let b = &a;
    let w: Vec<u16> = (0..8).map(|i| u16::from_be_bytes([b[2 * i], b[2 * i + 1]])).collect();
    // Longest run of zero words (first one on ties), only if at least 2 long.
    let (mut best_base, mut best_len) = (usize::MAX, 0usize);
    let mut i = 0;
    while i < 8 {
        if w[i] == 0 {
            let start = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_base = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_base = usize::MAX;
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best_base {
            s.push(':');
            i += best_len;
            if i == 8 {
                s.push(':');
            }
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            s.push_str(&format_ipv4(&b[12..16]));
            break;
        }
        s.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    s
}

/// OVS `ipv6_format_masked`.
pub(crate) fn format_ipv6_masked(v: &[u8], mask: Option<&[u8]>) -> String {
    format_masked(v, mask, format_ipv6)
}

/// Formats a field value (and optional mask) as OVS's `mf_format` does, e.g. for `set_field`
/// and `learn`. An all-ones mask counts as none; an all-zero mask prints `ANY`.
pub fn format_value(field: Field, value: &Value, mask: Option<&Value>) -> String {
    let mask = match mask {
        Some(m) if m.is_zero() => return "ANY".to_string(),
        Some(m) if m.is_all_ones() => None,
        m => m,
    };
    let v = value.as_bytes();
    let uv = value.to_u128();
    let mut s = String::new();
    let integer = |s: &mut String, hex: bool| {
        if hex {
            put_hex(s, v);
        } else {
            s.push_str(&uv.to_string());
        }
        if let Some(m) = mask {
            s.push('/');
            put_hex(s, m.as_bytes());
        }
    };
    match field.def().format {
        Format::Port16 if mask.is_none() => s.push_str(&format_port(uv as u16)),
        Format::Port32 if mask.is_none() => match port_from_ofp11(uv as u32) {
            Some(p) => s.push_str(&format_port(p)),
            None => s.push_str(&uv.to_string()),
        },
        Format::Port16 | Format::Port32 | Format::Decimal => integer(&mut s, false),
        Format::Hex => integer(&mut s, true),
        Format::Ethernet => {
            s.push_str(&format_eth(v));
            if let Some(m) = mask {
                s.push('/');
                s.push_str(&format_eth(m.as_bytes()));
            }
        }
        Format::Ipv4 => s.push_str(&format_ipv4_masked(v, mask.map(|m| m.as_bytes()))),
        Format::Ipv6 => s.push_str(&format_ipv6_masked(v, mask.map(|m| m.as_bytes()))),
        Format::Frag => {
            let m = mask.map(|m| m.to_u128() as u8).unwrap_or(0xff) & 3;
            let val = uv as u8 & m;
            match FRAG_NAMES.iter().find(|(_, fv, fm)| *fv == val && *fm == m) {
                Some((n, _, _)) => s.push_str(n),
                None => s.push_str("<error>"),
            }
        }
        Format::TunnelFlags => {
            let m = mask.map(|m| m.to_u128() as u32).unwrap_or(0xffff) & 1;
            format_flags(&mut s, TUN_FLAG_NAMES, uv as u32, m, 1);
        }
        Format::TcpFlags => {
            let m = mask.map(|m| m.to_u128() as u32).unwrap_or(0xffff) & 0xfff;
            format_flags(&mut s, TCP_FLAG_NAMES, uv as u32, m, 0xfff);
        }
        Format::CtState => {
            let m = mask.map(|m| m.to_u128() as u32).unwrap_or(0xffff_ffff);
            if m == 0xffff_ffff {
                format_flags(&mut s, CT_STATE_NAMES, uv as u32, 0xff, 0xff);
            } else {
                format_flags(&mut s, CT_STATE_NAMES, uv as u32, m, 0xffff);
            }
        }
    }
    s
}

// === parsing ===

fn err(token: &str, reason: impl Into<String>) -> TextError {
    TextError::new(token, reason)
}

/// An IPv4 address as OVS's `inet_pton` reads it (`mod_nw_src:`, `mod_nw_dst:`): no leading
/// zeros in an octet (`10.0.05.2` is refused there, while [`parse_ipv4`], the `ip_parse` of
/// matches, `set_field`, `learn` and `nat`, reads it as 10.0.5.2).
pub(crate) fn parse_ipv4_strict(s: &str) -> Result<[u8; 4], TextError> {
    s.parse::<std::net::Ipv4Addr>().map(|a| a.octets()).map_err(|_| err(s, "could not convert to IP address"))
}

/// Parses an unsigned integer the way C `strtoull(s, NULL, 0)` does (`0x` hex, leading-`0` octal,
/// decimal), up to 128 bits.
pub fn parse_number(s: &str) -> Result<u128, TextError> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(err(s, "not a number"));
    }
    u128::from_str_radix(digits, radix).map_err(|_| err(s, "number too large"))
}

fn int_value(field: Field, s: &str) -> Result<Value, TextError> {
    let n = parse_number(s)?;
    let bytes = field.bytes();
    if bytes < 16 && n >> (bytes * 8) != 0 {
        return Err(err(s, format!("value too large for {}-byte field {}", bytes, field.name())));
    }
    Ok(Value::from_u128(n, bytes))
}

/// A port name or number in OVS's 16-bit space (`LOCAL`, `controller`, `3`, `NONE`).
pub fn parse_port(s: &str) -> Result<u16, TextError> {
    if let Some((p, _)) = PORT_NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)) {
        return Ok(*p);
    }
    if s.eq_ignore_ascii_case("NONE") {
        return Ok(0xffff);
    }
    if s.eq_ignore_ascii_case("UNSET") {
        return Ok(0xfff7);
    }
    let n = parse_number(s).map_err(|_| err(s, "invalid or unknown port"))?;
    if n < 0xfff7 {
        Ok(n as u16)
    } else if n <= 0xffff {
        Err(err(s, "invalid or unknown port (reserved port numbers are written by name)"))
    } else if n <= u32::MAX as u128 {
        port_from_ofp11(n as u32).ok_or_else(|| err(s, "port number out of range"))
    } else {
        Err(err(s, "port number out of range"))
    }
}

/// `xx:xx:xx:xx:xx:xx` with one or two hex digits per byte.
pub(crate) fn parse_eth(s: &str) -> Result<[u8; 6], TextError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(err(s, "invalid Ethernet address"));
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(err(s, "invalid Ethernet address"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| err(s, "invalid Ethernet address"))?;
    }
    Ok(out)
}

pub(crate) fn parse_ipv4(s: &str) -> Result<[u8; 4], TextError> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(err(s, "invalid IP address"));
    }
    let mut out = [0u8; 4];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(s, "invalid IP address"));
        }
        *o = p.parse().map_err(|_| err(s, "invalid IP address"))?;
    }
    Ok(out)
}

pub(crate) fn parse_ipv6(s: &str) -> Result<[u8; 16], TextError> {
    let bad = || err(s, "invalid IPv6 address");
    let mut words: Vec<u16> = Vec::with_capacity(8);
    let (head, tail) = match s.find("::") {
        Some(i) => (&s[..i], Some(&s[i + 2..])),
        None => (s, None),
    };
    let parse_part = |part: &str, out: &mut Vec<u16>, allow_v4: bool| -> Result<(), TextError> {
        if part.is_empty() {
            return Ok(());
        }
        let groups: Vec<&str> = part.split(':').collect();
        for (i, g) in groups.iter().enumerate() {
            if allow_v4 && i == groups.len() - 1 && g.contains('.') {
                let v4 = parse_ipv4(g).map_err(|_| bad())?;
                out.push(u16::from_be_bytes([v4[0], v4[1]]));
                out.push(u16::from_be_bytes([v4[2], v4[3]]));
            } else {
                if g.is_empty() || g.len() > 4 {
                    return Err(bad());
                }
                out.push(u16::from_str_radix(g, 16).map_err(|_| bad())?);
            }
        }
        Ok(())
    };
    match tail {
        None => {
            parse_part(head, &mut words, true)?;
            if words.len() != 8 {
                return Err(bad());
            }
        }
        Some(t) => {
            if t.contains("::") {
                return Err(bad());
            }
            let mut back = Vec::new();
            parse_part(head, &mut words, false)?;
            parse_part(t, &mut back, true)?;
            if words.len() + back.len() > 7 {
                return Err(bad());
            }
            words.resize(8 - back.len(), 0);
            words.extend(back);
        }
    }
    let mut out = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    Ok(out)
}

fn prefix_mask(bits: u32, len: usize) -> Value {
    let total = len as u32 * 8;
    let v = if bits == 0 { 0 } else { (!0u128 << (128 - bits)) >> (128 - total) };
    Value::from_u128(v, len)
}

fn parse_flags(field: Field, s: &str, names: &[(u32, &str)], allowed: u32) -> Result<(u32, u32, bool), TextError> {
    // Numeric form: VALUE[/MASK].
    if s.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        let (v, m) = match s.split_once('/') {
            Some((v, m)) => (parse_number(v)?, Some(parse_number(m)?)),
            None => (parse_number(s)?, None),
        };
        // OVS's `parse_flags`: a numeric value or mask with bits outside the known flags is
        // refused (`tun_flags=0x1/0x3`, `tcp_flags=0x1001`: "unknown tunnel flag(s)").
        if v & !(allowed as u128) != 0 || m.is_some_and(|m| m & !(allowed as u128) != 0) {
            return Err(err(s, format!("unknown {} flag(s)", field.name())));
        }
        let (v, m) = (v as u32, m.map(|m| m as u32));
        return Ok((v, m.unwrap_or(u32::MAX), m.is_none()));
    }
    let lookup = |n: &str| {
        names
            .iter()
            .find(|(_, name)| *name == n)
            .map(|(b, _)| *b)
            .ok_or_else(|| err(s, format!("unknown {} flag(s)", field.name())))
    };
    let mut flags = 0u32;
    let mut mask = 0u32;
    if s.starts_with('+') || s.starts_with('-') {
        let mut rest = s;
        while !rest.is_empty() {
            let sign = rest.as_bytes()[0];
            if sign != b'+' && sign != b'-' {
                return Err(err(s, format!("{}: expected + or - before each flag", field.name())));
            }
            rest = &rest[1..];
            let end = rest.find(['+', '-']).unwrap_or(rest.len());
            let bit = lookup(&rest[..end])?;
            if mask & bit != 0 {
                return Err(err(s, format!("{}: flag specified more than once", field.name())));
            }
            mask |= bit;
            if sign == b'+' {
                flags |= bit;
            }
            rest = &rest[end..];
        }
        Ok((flags, mask, false))
    } else {
        for n in s.split('|') {
            flags |= lookup(n)?;
        }
        Ok((flags, allowed, true))
    }
}

/// An IPv4 or IPv6 address with an optional mask: an address (it contains `sep`) or a prefix
/// length.
fn ip_value<const N: usize>(
    s: &str,
    vs: &str,
    ms: Option<&str>,
    sep: char,
    parse: fn(&str) -> Result<[u8; N], TextError>,
    what: &str,
) -> Result<(Value, Option<Value>), TextError> {
    let v = Value::new(&parse(vs)?).ok_or_else(|| err(s, "bad value"))?;
    let m = match ms {
        None => None,
        Some(m) if m.contains(sep) => Some(Value::new(&parse(m)?).unwrap_or(Value::ones(N))),
        Some(m) => {
            let n = parse_number(m)?;
            if n > N as u128 * 8 {
                return Err(err(s, format!("invalid {what} prefix length")));
            }
            Some(prefix_mask(n as u32, N))
        }
    };
    Ok((v, m))
}

/// Parses a field value (and `/mask`) as OVS's `mf_parse` does. The mask is `None` for an exact
/// match; an explicit all-ones mask is kept so that the caller can write it as OVS would.
pub fn parse_value(field: Field, s: &str) -> Result<(Value, Option<Value>), TextError> {
    let len = field.bytes();
    let def = field.def();
    let (vs, ms) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let out = match def.format {
        Format::Decimal | Format::Hex => {
            let v = int_value(field, vs)?;
            let m = ms.map(|m| int_value(field, m)).transpose()?;
            (v, m)
        }
        Format::Port16 | Format::Port32 => {
            if ms.is_some() {
                let v = int_value(field, vs)?;
                (v, ms.map(|m| int_value(field, m)).transpose()?)
            } else {
                let p = parse_port(vs)?;
                let n = if def.format == Format::Port32 { port_to_ofp11(p) } else { p as u32 };
                (Value::from_u128(n as u128, len), None)
            }
        }
        Format::Ethernet => {
            let v = Value::new(&parse_eth(vs)?).ok_or_else(|| err(s, "bad value"))?;
            let m = ms.map(|m| parse_eth(m).map(|b| Value::new(&b).unwrap_or(Value::ones(6)))).transpose()?;
            (v, m)
        }
        Format::Ipv4 => ip_value(s, vs, ms, '.', parse_ipv4, "IP")?,
        Format::Ipv6 => ip_value(s, vs, ms, ':', parse_ipv6, "IPv6")?,
        Format::Frag => {
            let (_, v, m) = FRAG_NAMES
                .iter()
                .find(|(n, _, _)| *n == s)
                .ok_or_else(|| err(s, "unknown fragment type (use no, yes, first, later, not_later)"))?;
            let m = if *m == 3 { None } else { Some(Value::from_u128(*m as u128, 1)) };
            (Value::from_u128(*v as u128, 1), m)
        }
        Format::TunnelFlags | Format::TcpFlags | Format::CtState => {
            let (names, allowed) = match def.format {
                Format::TunnelFlags => (TUN_FLAG_NAMES, 0x1),
                Format::TcpFlags => (TCP_FLAG_NAMES, 0xfff),
                _ => (CT_STATE_NAMES, 0xff),
            };
            let (v, m, exact) = parse_flags(field, s, names, allowed)?;
            let lim = if len >= 4 { u32::MAX } else { (1u32 << (len * 8)) - 1 };
            if v > lim || (m != u32::MAX && m > lim) {
                return Err(err(s, format!("value too large for field {}", field.name())));
            }
            let value = Value::from_u128(v as u128, len);
            let mask = if exact && m == u32::MAX {
                None
            } else if exact && matches!(def.format, Format::TcpFlags | Format::TunnelFlags) && m == allowed {
                // `syn|ack` is an exact match for OVS. So is a plain `oam`, unlike `+oam`
                // (which only touches that bit): `set_field:oam->tun_flags` stays a set_field,
                // `set_field:+oam->tun_flags` becomes a load. (A match narrows both to the
                // public flag bit, so they read the same there.)
                // `syn|ack` is an exact match for OVS.
                None
            } else {
                Some(Value::from_u128(m as u128, len))
            };
            (value, mask)
        }
    };
    if out.1.is_some() && !def.maskable {
        return Err(err(s, format!("{}: invalid mask for field {}", s, field.name())));
    }
    Ok(out)
}

/// Parses a sub-field like OVS's `mf_parse_subfield`: `NXM_NX_REG0[0..15]`, `reg0[]`,
/// `reg0[5]`, or a bare field name (whole). Bits are counted against the field's meaningful bits
/// (`tcp_flags[]` is 12 bits, `tcp_flags[12]` is out of range), as OVS does.
pub fn parse_subfield(s: &str) -> Result<Subfield, TextError> {
    let s = s.trim();
    let (name, range) = match s.find('[') {
        Some(i) => {
            let r = s[i + 1..].strip_suffix(']').ok_or_else(|| err(s, "missing ] in sub-field"))?;
            (&s[..i], Some(r))
        }
        None => (s, None),
    };
    let field = Field::from_name(name).ok_or_else(|| err(s, format!("unknown field `{name}'")))?;
    let width = field.bits();
    let num = |t: &str| t.trim().parse::<u16>().map_err(|_| err(s, format!("bad bit number `{t}'")));
    let (lo, hi) = match range {
        None | Some("") => return Ok(Subfield::whole(field)),
        Some(r) => match r.split_once("..") {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(r)?;
                (n, n)
            }
        },
    };
    if lo > hi {
        return Err(err(s, format!("starting bit {lo} is after ending bit {hi}")));
    }
    if hi >= width {
        return Err(err(s, format!("bit {hi} is out of range for {width}-bit field {name}")));
    }
    Ok(Subfield { field, ofs: lo, n_bits: hi - lo + 1 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(f: Field, s: &str) -> String {
        let (v, m) = parse_value(f, s).unwrap();
        format_value(f, &v, m.as_ref())
    }

    #[test]
    fn integers() {
        assert_eq!(v(Field::reg(0), "5"), "0x5");
        assert_eq!(v(Field::reg(0), "010"), "0x8");
        assert_eq!(v(Field::reg(0), "0"), "0");
        assert_eq!(v(Field::reg(0), "0x10/0xf0"), "0x10/0xf0");
        assert_eq!(v(Field::TCP_DST, "0x50"), "80");
        assert_eq!(v(Field::TCP_DST, "16/0xf0"), "16/0xf0");
        assert!(parse_value(Field::TCP_DST, "65536").is_err());
        assert!(parse_value(Field::IP_PROTO, "6/0xff").is_err());
        assert_eq!(v(Field::CT_LABEL, "0x1234567890abcdef1234567890abcdef"), "0x1234567890abcdef1234567890abcdef");
    }

    #[test]
    fn addresses() {
        assert_eq!(v(Field::ETH_SRC, "0:1:2:3:4:5"), "00:01:02:03:04:05");
        assert_eq!(v(Field::ETH_DST, "01:00:00:00:00:00/01:00:00:00:00:00"), "01:00:00:00:00:00/01:00:00:00:00:00");
        assert_eq!(v(Field::IPV4_SRC, "10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(v(Field::IPV4_SRC, "10.0.0.0/255.0.255.0"), "10.0.0.0/255.0.255.0");
        assert_eq!(v(Field::IPV4_SRC, "10.0.0.1/32"), "10.0.0.1");
        assert_eq!(v(Field::IPV6_SRC, "2001:db8::/32"), "2001:db8::/32");
        assert_eq!(v(Field::IPV6_SRC, "::1:2"), "::0.1.0.2");
        assert_eq!(v(Field::IPV6_SRC, "::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(v(Field::IPV6_SRC, "1:0:0:1:0:0:0:1"), "1:0:0:1::1");
        assert_eq!(v(Field::IPV6_SRC, "::"), "::");
        assert_eq!(v(Field::IPV6_SRC, "fe80::1/ffff:0:ffff::"), "fe80::1/ffff:0:ffff::");
        assert!(parse_value(Field::IPV4_SRC, "10.0.0").is_err());
        assert!(parse_value(Field::IPV6_SRC, "1::2::3").is_err());
    }

    #[test]
    fn ports_and_flags() {
        assert_eq!(v(Field::IN_PORT, "local"), "LOCAL");
        assert_eq!(v(Field::IN_PORT_OXM, "CONTROLLER"), "CONTROLLER");
        assert_eq!(parse_value(Field::IN_PORT_OXM, "LOCAL").unwrap().0.to_u128(), 0xffff_fffe);
        assert!(parse_port("0xfff8").is_err());
        assert_eq!(v(Field::CT_STATE, "+trk+new"), "+new+trk");
        assert_eq!(v(Field::CT_STATE, "-trk+est"), "+est-trk");
        assert_eq!(v(Field::TCP_FLAGS, "+syn-ack"), "+syn-ack");
        assert_eq!(v(Field::TCP_FLAGS, "syn|ack"), "syn|ack");
        assert_eq!(v(Field::IP_FRAG, "first"), "first");
        assert_eq!(v(Field::IP_FRAG, "not_later"), "not_later");
        assert_eq!(v(Field::TUN_FLAGS, "+oam"), "oam");
        // A plain `oam` is exact, `+oam` masked (as OVS: set_field vs load).
        assert_eq!(parse_value(Field::TUN_FLAGS, "oam").unwrap().1, None);
        assert!(parse_value(Field::TUN_FLAGS, "+oam").unwrap().1.is_some());
        assert_eq!(parse_value(Field::TUN_FLAGS, "0x1").unwrap().1, None);
        // Bits beyond the known flags are refused, like OVS.
        for bad in ["0x1/0x3", "0x3", "2"] {
            assert!(parse_value(Field::TUN_FLAGS, bad).is_err(), "{bad}");
        }
        assert!(parse_value(Field::TCP_FLAGS, "0x1001").is_err());
        assert!(parse_value(Field::TCP_FLAGS, "0x1/0xffff").is_err());
        assert!(parse_value(Field::CT_STATE, "0x100").is_err());
        assert!(parse_value(Field::TCP_FLAGS, "0xfff").is_ok());
        // ip_parse reads octets as decimal, leading zeros and all; inet_pton does not.
        assert_eq!(v(Field::IPV4_SRC, "10.0.05.2"), "10.0.5.2");
        assert!(parse_ipv4_strict("10.0.05.2").is_err());
        assert_eq!(parse_ipv4_strict("10.0.5.2").unwrap(), [10, 0, 5, 2]);
        assert!(parse_value(Field::CT_STATE, "+bogus").is_err());
    }

    #[test]
    fn subfields() {
        let s = parse_subfield("NXM_NX_REG0[0..15]").unwrap();
        assert_eq!((s.field, s.ofs, s.n_bits), (Field::reg(0), 0, 16));
        assert_eq!(s.to_string(), "NXM_NX_REG0[0..15]");
        assert!(parse_subfield("reg0[]").unwrap().is_whole());
        assert_eq!(parse_subfield("reg0[5]").unwrap().to_string(), "NXM_NX_REG0[5]");
        assert!(parse_subfield("reg0[30..40]").is_err());
        assert!(parse_subfield("nosuch[]").is_err());
        let flags = parse_subfield("tcp_flags").unwrap();
        assert_eq!(flags.n_bits, 12);
        assert_eq!(flags.to_string(), "NXM_NX_TCP_FLAGS[]");
        assert_eq!(parse_subfield("NXM_NX_TCP_FLAGS[]").unwrap(), flags);
        assert!(parse_subfield("tcp_flags[12]").is_err());
        assert!(parse_subfield("reg0[5..3]").is_err());
        assert!(parse_subfield("reg0[0..15").is_err());
        assert_eq!(parse_subfield("ip_dscp[]").unwrap().n_bits, 6);
    }
}
