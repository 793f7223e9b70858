//! Small text helpers shared by the message printers, matching `ovs-ofctl ofp-print` output.

use std::fmt::Write;

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
