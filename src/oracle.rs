//! Open vSwitch's own encoder and decoder as a test oracle: `ovs-ofctl -mmmmm parse-flow` prints
//! the FLOW_MOD bytes OVS builds for a flow text, `ovs-ofctl ofp-print` decodes any bytes.
//!
//! Used by tests and tools only; it runs `ovs-ofctl` as a child process, so nothing on a shard
//! may call it. Not part of the sans-IO codec.

use std::process::Command;

/// What OVS makes of a flow text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsFlow {
    /// The `OFPT_FLOW_MOD ...` line OVS prints for it (ofp-print form), without a trailing newline.
    pub text: String,
    /// The FLOW_MOD bytes, xid included (OVS uses xid 1... for parse-flow).
    pub bytes: Vec<u8>,
}

/// Runs `ovs-ofctl -O OpenFlow13 -mmmmm parse-flow TEXT`. `Err` holds OVS's error message.
pub fn parse_flow(flow: &str) -> Result<OvsFlow, String> {
    parse_flow_with(flow, &[])
}

/// Like [`parse_flow`] with extra `ovs-ofctl` arguments placed before the command
/// (e.g. `["--strict"]`); the command is `parse-flow`.
pub fn parse_flow_with(flow: &str, extra: &[&str]) -> Result<OvsFlow, String> {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "-mmmmm"])
        .args(extra)
        .args(["parse-flow", flow])
        .output()
        .map_err(cannot_run)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut text = None;
    let mut bytes = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("OFPT_") || line.starts_with("NXT_") || line.starts_with("ONFT_") {
            text.get_or_insert_with(|| line.to_string());
        } else if let Some(hex) = hexdump_line(line) {
            bytes.extend(hex);
        }
    }
    let text = text.ok_or_else(|| format!("no message line in ovs-ofctl output: {stdout}"))?;
    Ok(OvsFlow { text, bytes })
}

/// Runs `ovs-ofctl -O OpenFlow13 -mmmmm parse-group TEXT` (what `add-group` would send).
/// `text` is all OVS prints for the message (`OFPT_GROUP_MOD (OF1.3) (xid=0x1):\n ADD group_id=...`,
/// lines joined by `\n`), `bytes` the GROUP_MOD. `Err` holds OVS's error message.
pub fn parse_group(group: &str) -> Result<OvsFlow, String> {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "-mmmmm", "parse-group", group])
        .output()
        .map_err(cannot_run)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut lines: Vec<&str> = Vec::new();
    let mut bytes = Vec::new();
    for line in stdout.lines() {
        if let Some(hex) = hexdump_line(line) {
            bytes.extend(hex);
        } else if !lines.is_empty() || line.starts_with("OFPT_") {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return Err(format!("no message line in ovs-ofctl output: {stdout}"));
    }
    Ok(OvsFlow { text: lines.join("\n"), bytes })
}

/// Parses one line of OVS's hex dump (`00000010  00 00 ...-00 00 |...|`) into its bytes.
fn hexdump_line(line: &str) -> Option<Vec<u8>> {
    let (offset, rest) = line.split_once("  ")?;
    if offset.len() != 8 || !offset.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex_part = rest.split('|').next()?;
    let cleaned: String = hex_part.chars().map(|c| if c == '-' { ' ' } else { c }).collect();
    crate::openflow::wire::from_hex(&cleaned)
}

/// Runs `ovs-ofctl ofp-print HEX` and returns what it prints (trailing white space trimmed).
/// `Err` holds OVS's error output when it exits non-zero.
pub fn ofp_print(bytes: &[u8]) -> Result<String, String> {
    ofp_print_with(bytes, &[])
}

/// Like [`ofp_print`] with extra arguments before `ofp-print` (e.g. `["--verbosity=2"]`... as
/// accepted by ovs-ofctl).
pub fn ofp_print_with(bytes: &[u8], extra: &[&str]) -> Result<String, String> {
    let hex = crate::openflow::wire::to_hex(bytes);
    let out = Command::new("ovs-ofctl").args(extra).args(["ofp-print", &hex]).output().map_err(cannot_run)?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The error when `ovs-ofctl` cannot be started: names what to install.
fn cannot_run(e: std::io::Error) -> String {
    format!("{NEEDS_OVS}: cannot run ovs-ofctl: {e}")
}

/// What a test that uses this oracle needs, and how to get it.
pub const NEEDS_OVS: &str = "this test needs Open vSwitch's ovs-ofctl (Debian: apt-get install openvswitch-common; \
                             scripts/install-ovs.sh installs it)";

/// Whether `ovs-ofctl` can be run here (tests say clearly when it cannot).
pub fn available() -> bool {
    Command::new("ovs-ofctl").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn oracle_reads_ovs_bytes() {
        assert!(available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
        let f = parse_flow("table=3,priority=100,tcp,actions=drop").expect("OVS parses this flow");
        assert!(f.text.starts_with("OFPT_FLOW_MOD (OF1.3)"), "{}", f.text);
        assert_eq!(f.bytes[0], 4);
        assert_eq!(u16::from_be_bytes([f.bytes[2], f.bytes[3]]) as usize, f.bytes.len());
        let printed = ofp_print(&f.bytes).expect("OVS prints its own bytes");
        assert!(printed.contains("priority=100,tcp"), "{printed}");
        assert!(parse_flow("tcp,bogus=1,actions=drop").is_err());
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    #[allow(clippy::unwrap_used)]
    fn oracle_reads_ovs_group_mods() {
        assert!(available(), "ovs-ofctl is needed: scripts/test.sh installs Open vSwitch");
        let g = parse_group("group_id=1,type=all,bucket=output:1").unwrap();
        assert_eq!(g.text, "OFPT_GROUP_MOD (OF1.3) (xid=0x1):\n ADD group_id=1,type=all,bucket=actions=output:1");
        assert_eq!(g.bytes[1], 15);
        assert_eq!(u16::from_be_bytes([g.bytes[2], g.bytes[3]]) as usize, g.bytes.len());
        assert!(parse_group("group_id=1,type=bogus").is_err());
    }
}
