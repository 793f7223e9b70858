//! The controller's ARP answers, sans-IO: what to send back for an ARP packet-in.
//!
//! The caller learns the sender first (`Tracker::learn`: `arp_spa` -> `arp_sha` at the port),
//! then asks [`arp_answer`] with a [`Locator`] (the tracker's view of this switch, the
//! configured pods, or both chained). The cases, for Ethernet/IPv4 ARP only:
//!
//! | packet | answer |
//! | --- | --- |
//! | not ARP, opcode not 1/2, non-Ethernet/IPv4 ARP, sender MAC zero or multicast | [`ArpDecision::Nothing`] |
//! | gratuitous (`arp_spa == arp_tpa`, request or reply) | `Nothing`: learned by the caller, not forwarded |
//! | request, probe (`arp_spa = 0.0.0.0`, RFC 5227) | [`ArpDecision::Flood`]: the owner must defend its address itself; answering from (possibly stale) learned data would fake a conflict |
//! | request, target located, MAC != the asker's | [`ArpDecision::Reply`]: "`tpa` is-at `mac`" to the asker, out of the port it came from |
//! | request, target unknown (or located at the asker's own MAC: stale data) | `Flood` of the request |
//! | request in a double-tagged (QinQ) frame | `Flood` (the reply would not carry both tags) |
//! | reply for one of `own` MACs ([`arp_answer_for`]: `arp_tha` or `eth_dst`) | `Nothing`: it answers the controller |
//! | any other reply | `Flood`, so the requester gets it (unsolicited replies only refresh existing ARP entries on Linux) |
//!
//! The reply is sent with `in_port` = the request's port and `actions=output:IN_PORT` (OpenFlow
//! does not send a packet out of the port it names as `in_port` unless told `IN_PORT`); it
//! carries the request's outer VLAN tag, if any. A flood is `in_port` = the port,
//! `actions=FLOOD` (every port but that one) and carries the original frame, which the
//! decision does not have: fill it with [`ArpDecision::with_frame`].

use std::net::{IpAddr, Ipv4Addr};

use crate::openflow::action::Action;
use crate::openflow::message::packet::NO_BUFFER;
use crate::openflow::message::{Message, PacketOut};
use crate::packet::{build, FlowKey, MacAddr};

use super::decision::Locator;

/// OFPP_IN_PORT: output to the port named by the packet-out's `in_port`.
pub const OFPP_IN_PORT: u32 = 0xffff_fff8;
/// OFPP_FLOOD: every port but `in_port` (and those with `no_flood`).
pub const OFPP_FLOOD: u32 = 0xffff_fffb;
/// OFPP_CONTROLLER: the `in_port` of a packet that came from no port.
pub const OFPP_CONTROLLER: u32 = 0xffff_fffd;

const ETH_TYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// What to send for one ARP packet-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArpDecision {
    /// The controller answers: the packet-out carries the ARP reply frame.
    Reply(PacketOut),
    /// Flood the original frame (`in_port` = its port, `actions=FLOOD`). `data` is empty until
    /// [`ArpDecision::with_frame`] puts the packet-in's bytes in.
    Flood(PacketOut),
    /// Send nothing.
    Nothing,
}

impl ArpDecision {
    /// Puts the packet-in's `frame` into a [`Flood`](ArpDecision::Flood); others unchanged.
    pub fn with_frame(self, frame: &[u8]) -> ArpDecision {
        match self {
            ArpDecision::Flood(po) => ArpDecision::Flood(PacketOut { data: frame.to_vec(), ..po }),
            d => d,
        }
    }

    pub fn packet_out(&self) -> Option<&PacketOut> {
        match self {
            ArpDecision::Reply(po) | ArpDecision::Flood(po) => Some(po),
            ArpDecision::Nothing => None,
        }
    }

    /// The message to send, the flood carrying `frame`.
    pub fn message(self, frame: &[u8]) -> Option<Message> {
        match self.with_frame(frame) {
            ArpDecision::Reply(po) | ArpDecision::Flood(po) => Some(Message::PacketOut(po)),
            ArpDecision::Nothing => None,
        }
    }
}

fn good_mac(m: MacAddr) -> bool {
    m != MacAddr::ZERO && !m.is_multicast()
}

fn flood(in_port: u32) -> ArpDecision {
    ArpDecision::Flood(PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions: vec![Action::Output { port: OFPP_FLOOD, max_len: 0 }],
        data: Vec::new(),
    })
}

/// The answer to the ARP packet `key` that came in on `in_port` (see the module table).
pub fn arp_answer(key: &FlowKey, in_port: u32, known: &dyn Locator) -> ArpDecision {
    arp_answer_for(key, in_port, known, &[])
}

/// [`arp_answer`], where replies addressed to one of `own` MACs (`arp_tha` or `eth_dst`) are
/// the controller's own and are not forwarded.
pub fn arp_answer_for(key: &FlowKey, in_port: u32, known: &dyn Locator, own: &[MacAddr]) -> ArpDecision {
    if key.eth_type != ETH_TYPE_ARP || !good_mac(key.arp_sha) {
        return ArpDecision::Nothing;
    }
    let (spa, tpa) = (key.arp_spa, key.arp_tpa);
    let gratuitous = spa == tpa && !spa.is_unspecified();
    match key.arp_op {
        _ if gratuitous => ArpDecision::Nothing,
        ARP_REQUEST => {
            if spa.is_unspecified() || key.vlan_inner.is_some() {
                return flood(in_port);
            }
            match known.locate(IpAddr::V4(tpa)) {
                Some(loc) if good_mac(loc.mac) && loc.mac != key.arp_sha => reply(key, in_port, tpa, loc.mac),
                _ => flood(in_port),
            }
        }
        ARP_REPLY => {
            if own.iter().any(|m| *m == key.arp_tha || *m == key.eth_dst) {
                ArpDecision::Nothing
            } else {
                flood(in_port)
            }
        }
        _ => ArpDecision::Nothing,
    }
}

/// "`tpa` is-at `mac`" to the asker, out of the port the request came in on.
fn reply(key: &FlowKey, in_port: u32, tpa: Ipv4Addr, mac: MacAddr) -> ArpDecision {
    let frame = build::arp_reply(mac, tpa, key.arp_sha, key.arp_spa);
    let data = match key.vlan {
        Some(vid) => match build::push_vlan(&frame, 0x8100, vid) {
            Ok(f) => f,
            Err(_) => return flood(in_port), // unreachable: the frame is a full Ethernet frame
        },
        None => frame,
    };
    ArpDecision::Reply(PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions: vec![Action::Output { port: OFPP_IN_PORT, max_len: 0 }],
        data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openflow::message;
    use crate::oracle;
    use crate::policy::decision::Location;

    const A_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);
    const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x04]);
    const OWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Knows 10.244.1.4 at port 4 (B) and 10.244.1.9 at A's own MAC (stale).
    struct Known;
    impl Locator for Known {
        fn locate(&self, ip: IpAddr) -> Option<Location> {
            match ip.to_string().as_str() {
                "10.244.1.4" => Some(Location { port: 4, mac: B_MAC, tun_dst: None }),
                "10.244.1.9" => Some(Location { port: 2, mac: A_MAC, tun_dst: None }),
                _ => None,
            }
        }
    }

    fn key(frame: &[u8], port: u32) -> FlowKey {
        FlowKey::extract(port, frame).unwrap()
    }

    fn print(po: &PacketOut) -> String {
        oracle::ofp_print(&message::encode(&Message::PacketOut(po.clone()), 7)).unwrap()
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn request_for_a_known_ip_is_answered_out_of_in_port() {
        let req = build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4"));
        let d = arp_answer(&key(&req, 2), 2, &Known);
        let ArpDecision::Reply(po) = &d else { panic!("{d:?}") };
        assert_eq!(po.in_port, 2);
        assert_eq!(po.actions, vec![Action::Output { port: OFPP_IN_PORT, max_len: 0 }]);
        assert_eq!(po.data, build::arp_reply(B_MAC, v4("10.244.1.4"), A_MAC, v4("10.244.1.2")));
        let k = key(&po.data, 2);
        assert_eq!(
            (k.arp_op, k.arp_spa, k.arp_sha, k.arp_tpa, k.arp_tha),
            (2, v4("10.244.1.4"), B_MAC, v4("10.244.1.2"), A_MAC)
        );
        assert_eq!((k.eth_src, k.eth_dst), (B_MAC, A_MAC));
        // OVS reads it the same way; the frame does not need the flood fill.
        assert_eq!(d.clone().with_frame(&req), d);
        let p = print(po);
        assert!(p.contains("in_port=2 actions=IN_PORT data_len=42"), "{p}");
        for f in [
            "arp,",
            "dl_src=0a:58:0a:f4:01:04,dl_dst=0a:58:0a:f4:01:02",
            "arp_spa=10.244.1.4,arp_tpa=10.244.1.2,arp_op=2",
            "arp_sha=0a:58:0a:f4:01:04,arp_tha=0a:58:0a:f4:01:02",
        ] {
            assert!(p.contains(f), "{f} in {p}");
        }
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn a_tagged_request_gets_a_tagged_reply() {
        let req = build::push_vlan(&build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4")), 0x8100, 10).unwrap();
        let d = arp_answer(&key(&req, 2), 2, &Known);
        let ArpDecision::Reply(po) = &d else { panic!("{d:?}") };
        let k = key(&po.data, 2);
        assert_eq!((k.vlan, k.arp_op, k.arp_spa), (Some(10), 2, v4("10.244.1.4")));
        let p = print(po);
        assert!(p.contains("in_port=2 actions=IN_PORT data_len=46"), "{p}");
        assert!(p.contains("dl_vlan=10"), "{p}");
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn request_for_an_unknown_ip_is_flooded() {
        let req = build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.77"));
        let d = arp_answer(&key(&req, 2), 2, &Known);
        let ArpDecision::Flood(po) = &d else { panic!("{d:?}") };
        assert!(po.data.is_empty());
        assert_eq!(po.actions, vec![Action::Output { port: OFPP_FLOOD, max_len: 0 }]);
        let Some(Message::PacketOut(po)) = d.message(&req) else { panic!("a packet-out") };
        assert_eq!(po.data, req);
        let p = print(&po);
        assert!(p.contains("in_port=2 actions=FLOOD data_len=42"), "{p}");
        assert!(p.contains("arp_spa=10.244.1.2,arp_tpa=10.244.1.77,arp_op=1"), "{p}");
    }

    #[test]
    fn request_for_an_ip_located_at_the_askers_mac_is_flooded() {
        let req = build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.9"));
        assert!(matches!(arp_answer(&key(&req, 2), 2, &Known), ArpDecision::Flood(_)));
    }

    #[test]
    fn probe_is_flooded_not_answered() {
        let req = build::arp_request(A_MAC, Ipv4Addr::UNSPECIFIED, v4("10.244.1.4"));
        assert!(matches!(arp_answer(&key(&req, 2), 2, &Known), ArpDecision::Flood(_)));
    }

    #[test]
    fn gratuitous_request_and_reply_send_nothing() {
        let g = build::arp_request(B_MAC, v4("10.244.1.4"), v4("10.244.1.4"));
        assert_eq!(arp_answer(&key(&g, 4), 4, &Known), ArpDecision::Nothing);
        let g = build::arp_reply(B_MAC, v4("10.244.1.4"), MacAddr::BROADCAST, v4("10.244.1.4"));
        assert_eq!(arp_answer(&key(&g, 4), 4, &Known), ArpDecision::Nothing);
    }

    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn reply_is_flooded_unless_it_is_for_us() {
        let r = build::arp_reply(B_MAC, v4("10.244.1.4"), A_MAC, v4("10.244.1.2"));
        let d = arp_answer(&key(&r, 4), 4, &Known);
        let ArpDecision::Flood(_) = &d else { panic!("{d:?}") };
        let Some(Message::PacketOut(po)) = d.message(&r) else { panic!("a packet-out") };
        let p = print(&po);
        assert!(p.contains("in_port=4 actions=FLOOD data_len=42"), "{p}");
        assert!(p.contains("arp_op=2"), "{p}");
        assert_eq!(arp_answer_for(&key(&r, 4), 4, &Known, &[A_MAC]), ArpDecision::Nothing);
        let r = build::arp_reply(B_MAC, v4("10.244.1.4"), OWN, v4("10.244.1.1"));
        assert_eq!(arp_answer_for(&key(&r, 4), 4, &Known, &[OWN]), ArpDecision::Nothing);
        assert!(matches!(arp_answer_for(&key(&r, 4), 4, &Known, &[A_MAC]), ArpDecision::Flood(_)));
    }

    #[test]
    fn not_arp_or_bogus_arp_sends_nothing() {
        let syn = build::tcp_syn(A_MAC, B_MAC, "10.244.1.2".parse().unwrap(), "10.244.1.4".parse().unwrap(), 1, 2);
        assert_eq!(arp_answer(&key(&syn, 2), 2, &Known), ArpDecision::Nothing);
        let bad = build::arp_request(MacAddr::BROADCAST, v4("10.244.1.2"), v4("10.244.1.4"));
        assert_eq!(arp_answer(&key(&bad, 2), 2, &Known), ArpDecision::Nothing);
        let zero = build::arp_request(MacAddr::ZERO, v4("10.244.1.2"), v4("10.244.1.4"));
        assert_eq!(arp_answer(&key(&zero, 2), 2, &Known), ArpDecision::Nothing);
        let mut k = key(&build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4")), 2);
        k.arp_op = 3; // RARP request opcode
        assert_eq!(arp_answer(&k, 2, &Known), ArpDecision::Nothing);
        assert_eq!(ArpDecision::Nothing.message(&syn), None);
    }

    #[test]
    fn double_tagged_request_is_flooded() {
        let req = build::arp_request(A_MAC, v4("10.244.1.2"), v4("10.244.1.4"));
        let qq = build::push_vlan(&build::push_vlan(&req, 0x8100, 10).unwrap(), 0x88a8, 20).unwrap();
        let k = key(&qq, 2);
        assert_eq!((k.vlan, k.vlan_inner), (Some(20), Some(10)));
        assert!(matches!(arp_answer(&k, 2, &Known), ArpDecision::Flood(_)));
    }
}
