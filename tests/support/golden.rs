//! Byte comparisons for the golden tests (tests/golden_flows.rs, tests/golden_groups.rs), which
//! check our encodings against the bytes `ovs-ofctl -mmmmm parse-*` gives.
#![allow(dead_code)]

use shardflow::openflow::wire::to_hex;

/// Where two byte strings first differ, shown as hex around that point.
pub fn byte_diff(ours: &[u8], ovs: &[u8]) -> String {
    let at = ours.iter().zip(ovs).position(|(a, b)| a != b).unwrap_or(ours.len().min(ovs.len()));
    let from = at.saturating_sub(8) & !7;
    let show = |b: &[u8]| to_hex(&b[from.min(b.len())..(at + 16).min(b.len())]);
    format!(
        "first difference at byte {at} (ours {} bytes, OVS {} bytes)\n      ours @{from}: {}\n      ovs  @{from}: {}",
        ours.len(),
        ovs.len(),
        show(ours),
        show(ovs)
    )
}

/// True when two OpenFlow messages are equal except for their xid (header bytes 4..8).
pub fn same_ignoring_xid(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.len() >= 8 && a[..4] == b[..4] && a[8..] == b[8..]
}
