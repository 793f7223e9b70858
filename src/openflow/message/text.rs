//! Small text helpers shared by the message printers, matching `ovs-ofctl ofp-print` output.

use std::fmt::Write;

use crate::openflow::error::ErrorCode;

/// OVS's `ovs_hex_dump(.., ofs=0, ascii=true)`: 16 bytes a line, an 8-digit offset, a `-`
/// after the eighth byte and the printable ASCII between bars. Every line ends in `\n`.
pub fn hex_dump(data: &[u8]) -> String {
    let mut s = String::new();
    for (line, chunk) in data.chunks(16).enumerate() {
        let _ = write!(s, "{:08x}  ", line * 16);
        for (i, b) in chunk.iter().enumerate() {
            let _ = write!(s, "{:02x}{}", b, if i == 7 { '-' } else { ' ' });
        }
        for _ in chunk.len()..16 {
            s.push_str("   ");
        }
        s.push('|');
        for b in chunk {
            s.push(if (0x20..0x7f).contains(b) { *b as char } else { '.' });
        }
        for _ in chunk.len()..16 {
            s.push(' ');
        }
        s.push_str("|\n");
    }
    s
}

/// The names of the set bits of `bits` (`names[i]` for bit `i`), separated by spaces; unnamed
/// bits print as `0x..` the way OVS's `ofp_print_bit_names` does.
pub fn bit_names(bits: u32, names: &[&str], sep: &str) -> String {
    let mut parts = Vec::new();
    for i in 0..32 {
        let bit = 1u32 << i;
        if bits & bit != 0 {
            match names.get(i) {
                Some(n) if !n.is_empty() => parts.push((*n).to_string()),
                _ => parts.push(format!("0x{bit:x}")),
            }
        }
    }
    parts.join(sep)
}

/// `"(OF1.3)"`-style version tag as OVS prints after a message name (empty for OF1.0).
pub fn version_tag(version: u8) -> String {
    match version {
        1 => String::new(),
        2..=6 => format!(" (OF1.{})", version - 1),
        v => format!(" (OF 0x{v:02x})"),
    }
}

/// A match as OVS prints it inside a message (`in_port=1,reg0=0x5`).
///
/// The one place that turns a [`Match`](crate::openflow::oxm::Match) into text here, so the
/// message printers follow whatever the match module prints.
pub fn match_text(m: &crate::openflow::oxm::Match) -> String {
    m.to_string()
}

/// OVS's text for a 32-bit (OpenFlow 1.1+) port number: reserved ports by name, others in
/// decimal.
pub fn port_text(port: u32) -> String {
    const NAMES: [&str; 8] = ["IN_PORT", "TABLE", "NORMAL", "FLOOD", "ALL", "CONTROLLER", "LOCAL", "ANY"];
    if port >= 0xffff_fff8 {
        NAMES[(port - 0xffff_fff8) as usize].to_string()
    } else if port >= 0xffff_ff00 {
        (port - 0xffff_0000).to_string()
    } else {
        port.to_string()
    }
}

/// The command of a GROUP_MOD or METER_MOD as OVS prints it (`ADD`, `MOD`, `DEL`, `cmd:N`).
pub fn mod_command_text(command: u16) -> String {
    match command {
        0 => "ADD".to_string(),
        1 => "MOD".to_string(),
        2 => "DEL".to_string(),
        n => format!("cmd:{n}"),
    }
}

/// OVS's `ofp_print_duration`: seconds, then the nanoseconds with trailing zeros dropped but
/// at least milliseconds kept (`10.500s`, `10.0000001s`).
pub fn duration_text(sec: u32, nsec: u32) -> String {
    let mut s = sec.to_string();
    if nsec > 0 {
        let frac = format!("{nsec:09}");
        let mut frac = frac.as_str();
        while frac.len() > 3 && frac.ends_with('0') {
            frac = &frac[..frac.len() - 1];
        }
        s.push('.');
        s.push_str(frac);
    }
    s.push('s');
    s
}

/// OFPT_QUEUE_GET_CONFIG_REPLY (OpenFlow 1.3) as OVS prints it
/// (`ofputil_queue_get_config_reply_format`): queues sorted by port and id, each with its
/// min/max rate in tenths of a percent. What OVS cannot read ends the text with a decode error
/// and the hex dump, after the queues read so far.
pub fn queue_config_text(body: &[u8], whole: &[u8]) -> String {
    let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let rate_text = |name: &str, rate: u16| match rate {
        0..=1000 => format!(" {name}:{}.{}%", rate / 10, rate % 10),
        u16::MAX => String::new(),
        _ => format!(" {name}:(disabled)"),
    };
    let port = if body.len() >= 4 { be32(body, 0) } else { 0 };
    let mut queues: Vec<(u32, u16, u16)> = Vec::new();
    let mut rest = body.get(8..).unwrap_or(&[]);
    let mut error = None;
    'queues: while !rest.is_empty() {
        if rest.len() < 16 {
            error = Some(ErrorCode::BAD_REQUEST_BAD_LEN);
            break;
        }
        let (queue, len) = (be32(rest, 0), be16(rest, 8) as usize);
        if len < 16 || len > rest.len() || len % 8 != 0 {
            error = Some(ErrorCode::BAD_REQUEST_BAD_LEN);
            break;
        }
        let (mut min, mut max) = (u16::MAX, u16::MAX);
        let mut props = &rest[16..len];
        while !props.is_empty() {
            let plen = if props.len() >= 4 { be16(props, 2) as usize } else { 0 };
            if plen < 8 || plen > props.len() || plen % 8 != 0 {
                error = Some(ErrorCode::BAD_REQUEST_BAD_LEN);
                break 'queues;
            }
            match be16(props, 0) {
                1 | 2 if plen != 16 => {
                    error = Some(ErrorCode::BAD_REQUEST_BAD_LEN);
                    break 'queues;
                }
                1 => min = be16(props, 8),
                2 => max = be16(props, 8),
                _ => {}
            }
            props = &props[plen..];
        }
        queues.push((queue, min, max));
        rest = &rest[len..];
    }
    queues.sort_by_key(|q| q.0);
    let mut s = String::from(" ");
    if port != 0 && !queues.is_empty() {
        s.push_str(&format!("port={}\n", port_text(port)));
    }
    for (queue, min, max) in queues {
        s.push_str(&format!("queue {queue}:{}{}\n", rate_text("min_rate", min), rate_text("max_rate", max)));
    }
    if let Some(code) = error {
        if s.len() > 1 {
            s.truncate(s.trim_end_matches(' ').len());
            if !s.ends_with('\n') {
                s.push('\n');
            }
        }
        s.push_str(&format!("***decode error: {code}***\n{}", hex_dump(whole)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_matches_ovs_layout() {
        assert_eq!(hex_dump(b"abcd"), "00000000  61 62 63 64                                     |abcd            |\n");
        let d: Vec<u8> = (0..17).collect();
        let s = hex_dump(&d);
        assert!(s.starts_with("00000000  00 01 02 03 04 05 06 07-08 09"));
        assert!(s.contains("\n00000010  10 "));
    }
}
