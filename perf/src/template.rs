//! The PACKET_IN template: encoded once with shardflow's codec, then patched in place per packet
//! (addresses come with the template; ports, IPv4 identification, the per-packet sequence and the
//! checksums are written per packet). Also the 5-tuple sequence and the symmetric hash.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};
use shardflow::openflow::message::{encode, Message, PacketIn};
use shardflow::openflow::oxm::Match;
use shardflow::openflow::Field;
use shardflow::packet::build;
use shardflow::packet::MacAddr;

/// One emulated host (a pod on the bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub port: u32,
}

impl std::str::FromStr for Host {
    type Err = String;
    /// `IP,MAC,PORT`, e.g. `10.244.1.2,0a:58:0a:f4:01:02,2`.
    fn from_str(s: &str) -> std::result::Result<Host, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [ip, mac, port] = parts[..] else {
            return Err(format!("{s:?}: expected IP,MAC,PORT"));
        };
        let ip = ip.parse().map_err(|e| format!("{s:?}: bad IPv4 address {ip:?}: {e}"))?;
        let mac = mac.parse().map_err(|e| format!("{s:?}: bad MAC {mac:?}: {e:?}"))?;
        let port = port.parse().map_err(|e| format!("{s:?}: bad port {port:?}: {e}"))?;
        Ok(Host { ip, mac, port })
    }
}

/// The pods of docs/pipeline.md's example configuration.
pub fn default_pods() -> Vec<Host> {
    vec![
        Host { ip: Ipv4Addr::new(10, 244, 1, 2), mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]), port: 2 },
        Host { ip: Ipv4Addr::new(10, 244, 1, 4), mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x04]), port: 4 },
    ]
}

/// `n` source hosts: the configured pods first, then synthesized ones (10.244.1.100+k).
pub fn hosts(pods: &[Host], n: usize) -> Vec<Host> {
    let mut v: Vec<Host> = pods.iter().take(n).copied().collect();
    let mut k = 0u32;
    while v.len() < n {
        let x = (100 + k) as u8;
        v.push(Host {
            ip: Ipv4Addr::new(10, 244, 1, x),
            mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, x]),
            port: 100 + k,
        });
        k += 1;
    }
    v
}

/// Ordered (source, destination) pairs: every host to every other host; with one host, to the
/// gateway.
pub fn pairs(hosts: &[Host], gateway: Host) -> Vec<(Host, Host)> {
    if hosts.len() == 1 {
        return vec![(hosts[0], gateway)];
    }
    let mut v = Vec::new();
    for a in hosts {
        for b in hosts {
            if a != b {
                v.push((*a, *b));
            }
        }
    }
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Mix,
}

/// What the packet-in's match carries besides in_port, as OVS sends it after `ct()`.
#[derive(Debug, Clone, Copy)]
pub struct MatchMeta {
    pub reg0: u32,
    pub ct_state: u32,
    pub ct_zone: u16,
    /// The connection index OVS's multipath put in reg15 (omitted when 0, as OVS omits zero
    /// registers).
    pub reg15: u32,
    pub table_id: u8,
    pub cookie: u64,
}

/// Where things are in an encoded template (offsets from the message start).
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The Ethernet frame.
    data: usize,
    /// IPv4 header.
    ip: usize,
    /// TCP or UDP header.
    l4: usize,
    /// Frame length.
    frame_len: usize,
    tcp: bool,
}

/// One encoded OFPT_PACKET_IN for a (source, destination, protocol), ready to be patched.
#[derive(Debug, Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    layout: Layout,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

pub const UDP_PAYLOAD_LEN: usize = 4;

impl Template {
    /// Builds the frame with shardflow's packet builders and the PACKET_IN with its codec.
    pub fn new(src: Host, dst: Host, tcp: bool, meta: MatchMeta) -> Result<Template> {
        let (s, d) = (IpAddr::V4(src.ip), IpAddr::V4(dst.ip));
        let frame = if tcp {
            build::tcp_syn(src.mac, dst.mac, s, d, 1024, 80)
        } else {
            build::udp(src.mac, dst.mac, s, d, 1024, 53, &[0; UDP_PAYLOAD_LEN])
        };
        let port = u16::try_from(src.port).context("in_port must fit 16 bits")?;
        let mut m = Match::new().with_in_port(port).with(Field::CT_STATE, meta.ct_state as u128);
        if meta.ct_zone != 0 {
            m = m.with(Field::CT_ZONE, meta.ct_zone as u128);
        }
        if meta.reg0 != 0 {
            m = m.with(Field::reg(0), meta.reg0 as u128);
        }
        if meta.reg15 != 0 {
            m = m.with(Field::reg(15), meta.reg15 as u128);
        }
        let frame_len = frame.len();
        let pi = PacketIn {
            buffer_id: shardflow::openflow::message::packet::NO_BUFFER,
            total_len: frame_len as u16,
            reason: 1, // OFPR_ACTION: controller() in a flow, as the pipeline's table 250 does
            table_id: meta.table_id,
            cookie: meta.cookie,
            r#match: m,
            data: frame,
        };
        let bytes = encode(&Message::PacketIn(pi), 0);
        let data = bytes.len() - frame_len;
        if bytes[data + 12..data + 14] != [0x08, 0x00] {
            bail!("template frame is not IPv4");
        }
        let ip = data + 14;
        let ihl = usize::from(bytes[ip] & 0x0f) * 4;
        let layout = Layout { data, ip, l4: ip + ihl, frame_len, tcp };
        Ok(Template { bytes, layout, src: src.ip, dst: dst.ip })
    }

    /// Appends the packet-in for (sport, dport, seq) to `out`: one copy and a few stores.
    pub fn write(&self, out: &mut Vec<u8>, sport: u16, dport: u16, seq: u32) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let b = &mut out[start..];
        let Layout { ip, l4, tcp, frame_len, data } = self.layout;
        // IPv4 identification = low bits of the sequence; header checksum recomputed.
        b[ip + 4..ip + 6].copy_from_slice(&(seq as u16).to_be_bytes());
        b[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&b[ip..l4]));
        b[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        b[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        b[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        let l4_end = data + frame_len;
        let l4_len = l4_end - l4;
        let (proto, csum_at) = if tcp {
            b[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            (6u32, l4 + 16)
        } else {
            b[l4 + 8..l4 + 12].copy_from_slice(&seq.to_be_bytes());
            (17u32, l4 + 6)
        };
        b[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let pseudo = sum(&self.src.octets()) + sum(&self.dst.octets()) + proto + l4_len as u32;
        let mut c = !fold(pseudo + sum(&b[l4..l4_end]));
        if !tcp && c == 0 {
            c = 0xffff;
        }
        b[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// One's complement sum of 16-bit big-endian words (not folded).
fn sum(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [x] = chunks.remainder() {
        s += u32::from(*x) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The PACKET_IN of an ARP request from `src` (sender MAC `sha`, which carries the request's
/// id) for `target`, with the match OVS sends after the pipeline's table 20 (in_port, reg15).
pub fn arp_packet_in(sha: MacAddr, src: Host, target: Ipv4Addr, meta: MatchMeta) -> Result<Vec<u8>> {
    let frame = build::arp_request(sha, src.ip, target);
    let port = u16::try_from(src.port).context("in_port must fit 16 bits")?;
    let mut m = Match::new().with_in_port(port);
    if meta.reg15 != 0 {
        m = m.with(Field::reg(15), meta.reg15 as u128);
    }
    let pi = PacketIn {
        buffer_id: shardflow::openflow::message::packet::NO_BUFFER,
        total_len: frame.len() as u16,
        reason: 1,
        table_id: meta.table_id,
        cookie: meta.cookie,
        r#match: m,
        data: frame,
    };
    Ok(encode(&Message::PacketIn(pi), 0))
}

/// Identifies the packet a PACKET_OUT carries: (sequence, source port) from the frame after the
/// actions. `msg` is the whole OpenFlow message.
pub fn packet_out_id(msg: &[u8]) -> Option<(u32, u16)> {
    // header 8, buffer_id 4, in_port 4, actions_len 2, pad 6
    let actions_len = usize::from(u16::from_be_bytes([*msg.get(16)?, *msg.get(17)?]));
    frame_id(msg.get(24 + actions_len..)?)
}

/// (sequence, source port) of one of our frames: TCP sequence number or the UDP payload's first
/// four bytes.
pub fn frame_id(f: &[u8]) -> Option<(u32, u16)> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    let l4 = 14 + ihl;
    let be16 = |at: usize| f.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    let be32 = |at: usize| f.get(at..at + 4).map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
    match f.get(23)? {
        6 => Some((be32(l4 + 4)?, be16(l4)?)),
        17 => Some((be32(l4 + 8)?, be16(l4)?)),
        _ => None,
    }
}

// === 5-tuples ===

const SPORTS: u64 = 65536 - 1024;
const DPORTS: u64 = 1023;

/// The `k`-th packet of switch `s` of `n_switches`: (pair index, sport, dport, tcp). Globally
/// unique over all switches for `n_pairs * 64512 * 1023` packets; source ports are >= 1024 and
/// destination ports < 1024, so no tuple is another one's reverse.
pub fn tuple(k: u64, s: u64, n_switches: u64, n_pairs: u64, proto: Proto) -> (usize, u16, u16, bool) {
    let g = k * n_switches + s;
    let pair = g % n_pairs;
    let r = g / n_pairs;
    let sport = 1024 + r % SPORTS;
    let r2 = r / SPORTS;
    let dport = 1 + r2 % DPORTS;
    let tcp = match proto {
        Proto::Tcp => true,
        Proto::Udp => false,
        Proto::Mix => k % 2 == 0,
    };
    (pair as usize, sport as u16, dport as u16, tcp)
}

/// A symmetric hash of a connection (both directions hash alike, as OVS's
/// `multipath(symmetric_l3l4+udp)`).
pub fn symmetric_hash(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> u64 {
    let a = (u64::from(u32::from(src)) << 16) | u64::from(sport);
    let b = (u64::from(u32::from(dst)) << 16) | u64::from(dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    splitmix(lo ^ splitmix(hi ^ u64::from(proto)))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow::openflow::message::{decode, ofp_print};
    use std::collections::HashSet;

    fn meta() -> MatchMeta {
        MatchMeta { reg0: 0x4, ct_state: 0x21, ct_zone: 1, reg15: 1, table_id: 250, cookie: 0x1010000000002 }
    }

    #[test]
    fn template_decodes_with_shardflow() {
        let pods = default_pods();
        for tcp in [true, false] {
            let t = Template::new(pods[0], pods[1], tcp, meta()).expect("template");
            let mut out = Vec::new();
            t.write(&mut out, 40000, 443, 0xdead_beef);
            let (h, msg) = decode(&out).expect("decodes");
            let Message::PacketIn(pi) = &msg else { panic!("not a packet-in: {msg:?}") };
            assert_eq!(pi.buffer_id, 0xffff_ffff);
            assert_eq!(pi.reason, 1);
            assert_eq!(pi.table_id, 250);
            assert_eq!(pi.r#match.get(Field::IN_PORT_OXM).map(|e| e.value.to_u128()), Some(2));
            assert_eq!(pi.r#match.get(Field::reg(0)).map(|e| e.value.to_u128()), Some(4));
            assert_eq!(pi.r#match.get(Field::CT_STATE).map(|e| e.value.to_u128() & 0xff), Some(0x21));
            shardflow::packet::verify_checksums(&pi.data).expect("checksums");
            let key = shardflow::packet::FlowKey::extract(2, &pi.data).expect("flow key");
            assert_eq!(key.l4_src, 40000);
            assert_eq!(key.l4_dst, 443);
            assert_eq!(key.ip_proto, if tcp { 6 } else { 17 });
            assert_eq!(frame_id(&pi.data), Some((0xdead_beef, 40000)));
            let text = ofp_print(&h, &msg);
            assert!(text.contains("reg0=0x4"), "{text}");
            assert!(text.contains("ct_state=new|trk"), "{text}");
        }
    }

    #[test]
    fn ovs_ofctl_prints_it() {
        let ofctl = std::path::Path::new("/usr/bin/ovs-ofctl");
        if !ofctl.exists() {
            eprintln!("skipped: no /usr/bin/ovs-ofctl");
            return;
        }
        let pods = default_pods();
        let t = Template::new(pods[0], pods[1], true, meta()).expect("template");
        let mut out = Vec::new();
        t.write(&mut out, 40000, 443, 7);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        let o = std::process::Command::new(ofctl).args(["ofp-print", &hex]).output().expect("ovs-ofctl runs");
        let text = String::from_utf8_lossy(&o.stdout);
        println!("{hex}\n{text}");
        assert!(text.contains("OFPT_PACKET_IN (OF1.3)"), "{text}");
        assert!(text.contains("reg0=0x4"), "{text}");
        assert!(text.contains("ct_state=new|trk"), "{text}");
        assert!(text.contains("tcp_csum:") || text.contains("tp_src=40000"), "{text}");
        // Our printer agrees with OVS's.
        let (h, msg) = decode(&out).expect("decodes");
        assert_eq!(ofp_print(&h, &msg).trim(), text.trim());
    }

    #[test]
    fn packet_out_is_matched() {
        use shardflow::openflow::action::Action;
        use shardflow::openflow::message::PacketOut;
        let pods = default_pods();
        let t = Template::new(pods[1], pods[0], false, meta()).expect("template");
        let mut out = Vec::new();
        t.write(&mut out, 5000, 53, 99);
        let Ok((_, Message::PacketIn(pi))) = decode(&out) else { panic!() };
        let po = PacketOut {
            buffer_id: 0xffff_ffff,
            in_port: 4,
            actions: vec![Action::Output { port: 2, max_len: 0 }],
            data: pi.data,
        };
        let bytes = encode(&Message::PacketOut(po), 5);
        assert_eq!(packet_out_id(&bytes), Some((99, 5000)));
    }

    #[test]
    fn tuples_are_unique_and_never_reversed() {
        let mut seen = HashSet::new();
        let n_switches = 3;
        for s in 0..n_switches {
            for k in 0..100_000 {
                let (pair, sp, dp, _) = tuple(k, s, n_switches, 2, Proto::Tcp);
                assert!(sp >= 1024 && (1..1024).contains(&dp));
                assert!(seen.insert((pair, sp, dp)), "duplicate at s={s} k={k}");
            }
        }
        // Pair 0 is A->B and pair 1 is B->A: a reverse would need sport < 1024.
    }

    #[test]
    fn hosts_parse_and_synthesize() {
        let h: Host = "10.244.1.2,0a:58:0a:f4:01:02,2".parse().expect("parses");
        assert_eq!(h, default_pods()[0]);
        assert!("10.244.1.2,0a:58:0a:f4:01:02".parse::<Host>().is_err());
        assert!("10.244.1.2,zz,2".parse::<Host>().is_err());
        let hs = hosts(&default_pods(), 4);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[2].ip, Ipv4Addr::new(10, 244, 1, 100));
        let gw: Host = "10.244.1.1,02:00:0a:f4:01:01,3".parse().expect("parses");
        assert_eq!(pairs(&hs[..1], gw), vec![(hs[0], gw)]);
        assert_eq!(pairs(&default_pods(), gw).len(), 2);
    }

    #[test]
    fn hash_is_symmetric() {
        let a = Ipv4Addr::new(10, 244, 1, 2);
        let b = Ipv4Addr::new(10, 244, 1, 4);
        for (sp, dp) in [(1024u16, 80u16), (65535, 1), (4000, 4000)] {
            assert_eq!(symmetric_hash(a, b, 6, sp, dp), symmetric_hash(b, a, 6, dp, sp));
        }
        assert_ne!(symmetric_hash(a, b, 6, 1024, 80), symmetric_hash(a, b, 6, 1025, 80));
        // Spreads over two connections.
        let ones = (1024..3024u16).filter(|p| symmetric_hash(a, b, 6, *p, 80) % 2 == 1).count();
        assert!((800..1200).contains(&ones), "{ones}");
    }
}
