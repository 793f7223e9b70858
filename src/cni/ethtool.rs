//! TX checksum offload off, through ethtool's generic netlink family (`ETHTOOL_MSG_FEATURES_SET`),
//! and read back (`ETHTOOL_MSG_FEATURES_GET`).
//!
//! Why: a veth hands TCP segments to its peer with partial checksums when TX checksumming is on;
//! Open vSwitch's userspace datapath forwards them as they are and the receiving stack drops
//! them (ARP and ping still work, which hides it). So both ends of every pod's veth get
//! `tx-checksum-*` off, as `ethtool -K IF tx off` does.
//!
//! The `ethtool` crate of rust-netlink can only read features, so the messages are built here
//! with `netlink-packet-generic` (family resolution, headers) and `netlink-packet-core`
//! attributes, over a blocking `netlink-sys` socket opened in the caller's network namespace.

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use rtnetlink::packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, NlasIterator, ParseableParametrized, NLM_F_ACK,
    NLM_F_REQUEST,
};
use rtnetlink::sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// The features `ethtool -K IF tx off` turns off (the kernel ignores those a device lacks).
pub const TX_CHECKSUM_FEATURES: &[&str] =
    &["tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6", "tx-checksum-fcoe-crc", "tx-checksum-sctp"];

const ETHTOOL_GENL_NAME: &str = "ethtool";
const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_GET: u8 = 11;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_FEATURES_ACTIVE: u16 = 4;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_BITSET_NOMASK: u16 = 1;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
/// A features reply is a few KiB (every feature by name); one datagram at most this big.
const RECV_BUF: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the kernel has no ethtool netlink family (Linux 5.6 or later needed)")]
    NoFamily,
    #[error("{dev}: ethtool {what}: {err}")]
    Kernel { dev: String, what: &'static str, err: std::io::Error },
    #[error("undecodable netlink answer: {0}")]
    Decode(String),
}

impl From<DecodeError> for EthtoolError {
    fn from(e: DecodeError) -> Self {
        EthtoolError::Decode(e.to_string())
    }
}

/// An ethtool message as raw attributes: the two commands used here need nothing more.
#[derive(Debug, Clone)]
struct EthtoolMsg {
    cmd: u8,
    attrs: Vec<u8>,
}

impl GenlFamily for EthtoolMsg {
    fn family_name() -> &'static str {
        ETHTOOL_GENL_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        ETHTOOL_GENL_VERSION
    }
}

impl Emitable for EthtoolMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for EthtoolMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(EthtoolMsg { cmd: header.cmd, attrs: buf.to_vec() })
    }
}

fn emit_nlas(nlas: &[DefaultNla]) -> Vec<u8> {
    let mut buf = vec![0; nlas.buffer_len()];
    nlas.emit(&mut buf);
    buf
}

fn nested(kind: u16, inner: &[DefaultNla]) -> DefaultNla {
    DefaultNla::new(kind | NLA_F_NESTED, emit_nlas(inner))
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn header(dev: &str) -> DefaultNla {
    nested(ETHTOOL_A_FEATURES_HEADER, &[DefaultNla::new(ETHTOOL_A_HEADER_DEV_NAME, cstring(dev))])
}

/// A generic netlink socket in the calling thread's network namespace, with the ethtool
/// family's id resolved.
pub struct Ethtool {
    socket: Socket,
    family: u16,
    seq: u32,
}

impl Ethtool {
    pub fn open() -> Result<Ethtool, EthtoolError> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut me = Ethtool { socket, family: 0, seq: 0 };
        me.family = me.resolve_family()?;
        Ok(me)
    }

    fn resolve_family(&mut self) -> Result<u16, EthtoolError> {
        let msg = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(ETHTOOL_GENL_NAME.into())],
        });
        let replies = self.request(msg, "family")?;
        replies
            .iter()
            .flat_map(|m: &GenlMessage<GenlCtrl>| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(EthtoolError::NoFamily)
    }

    /// Sends one request (with an ACK asked for) and collects its answers until the ACK.
    fn request<F>(&mut self, mut msg: GenlMessage<F>, what: &'static str) -> Result<Vec<GenlMessage<F>>, EthtoolError>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    {
        if self.family != 0 {
            msg.set_resolved_family_id(self.family);
        }
        msg.finalize();
        let mut nl = NetlinkMessage::from(msg);
        self.seq = self.seq.wrapping_add(1);
        nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        nl.header.sequence_number = self.seq;
        nl.finalize();
        let mut tx = vec![0; nl.buffer_len()];
        nl.serialize(&mut tx);
        self.socket.send(&tx, 0)?;
        let mut out = Vec::new();
        let mut rx: Vec<u8> = Vec::with_capacity(RECV_BUF);
        loop {
            rx.clear();
            let n = self.socket.recv(&mut rx, 0)?;
            let mut at = 0;
            while at < n {
                let m = NetlinkMessage::<GenlMessage<F>>::deserialize(&rx[at..n])?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(out),
                                Some(c) => Err(EthtoolError::Kernel {
                                    dev: String::new(),
                                    what,
                                    err: std::io::Error::from_raw_os_error(-c.get()),
                                }),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(inner) => out.push(inner),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    /// Turns TX checksum offload off on `dev` (ethtool -K DEV tx off).
    pub fn tx_checksum_off(&mut self, dev: &str) -> Result<(), EthtoolError> {
        let bits: Vec<DefaultNla> = TX_CHECKSUM_FEATURES
            .iter()
            // No VALUE flag: the bit is wanted off (the bitset is a mask: only these change).
            .map(|f| nested(ETHTOOL_A_BITSET_BITS_BIT, &[DefaultNla::new(ETHTOOL_A_BITSET_BIT_NAME, cstring(f))]))
            .collect();
        let wanted = nested(ETHTOOL_A_FEATURES_WANTED, &[nested(ETHTOOL_A_BITSET_BITS, &bits)]);
        let msg = GenlMessage::from_payload(EthtoolMsg {
            cmd: ETHTOOL_MSG_FEATURES_SET,
            attrs: emit_nlas(&[header(dev), wanted]),
        });
        self.request(msg, "features set").map(|_| ()).map_err(|e| with_dev(e, dev))
    }

    /// The names of `dev`'s active features (ethtool -k DEV, the ones shown `on`).
    pub fn active_features(&mut self, dev: &str) -> Result<Vec<String>, EthtoolError> {
        let msg =
            GenlMessage::from_payload(EthtoolMsg { cmd: ETHTOOL_MSG_FEATURES_GET, attrs: emit_nlas(&[header(dev)]) });
        let replies = self.request(msg, "features get").map_err(|e| with_dev(e, dev))?;
        let mut out = Vec::new();
        for r in &replies {
            for a in NlasIterator::new(&r.payload.attrs[..]) {
                let a = a?;
                if a.kind() & !NLA_F_NESTED == ETHTOOL_A_FEATURES_ACTIVE {
                    out.extend(bitset_on(a.value())?);
                }
            }
        }
        Ok(out)
    }

    /// True when any TX checksum feature is active on `dev`.
    pub fn tx_checksum_on(&mut self, dev: &str) -> Result<bool, EthtoolError> {
        Ok(self.active_features(dev)?.iter().any(|f| TX_CHECKSUM_FEATURES.contains(&f.as_str())))
    }
}

fn with_dev(e: EthtoolError, dev: &str) -> EthtoolError {
    match e {
        EthtoolError::Kernel { what, err, .. } => EthtoolError::Kernel { dev: dev.to_string(), what, err },
        e => e,
    }
}

/// The names of the bits that are on in a bit-list bitset: every listed bit when the set has no
/// mask (`NOMASK`), else those with the `VALUE` flag.
fn bitset_on(set: &[u8]) -> Result<Vec<String>, EthtoolError> {
    let mut nomask = false;
    let mut bits = Vec::new();
    for a in NlasIterator::new(set) {
        let a = a?;
        match a.kind() & !NLA_F_NESTED {
            ETHTOOL_A_BITSET_NOMASK => nomask = true,
            ETHTOOL_A_BITSET_BITS => {
                for b in NlasIterator::new(a.value()) {
                    let b = b?;
                    if b.kind() & !NLA_F_NESTED != ETHTOOL_A_BITSET_BITS_BIT {
                        continue;
                    }
                    let (mut name, mut value) = (None, false);
                    for f in NlasIterator::new(b.value()) {
                        let f = f?;
                        match f.kind() & !NLA_F_NESTED {
                            ETHTOOL_A_BITSET_BIT_NAME => {
                                let v = f.value();
                                let v = v.strip_suffix(&[0]).unwrap_or(v);
                                name = Some(String::from_utf8_lossy(v).into_owned());
                            }
                            ETHTOOL_A_BITSET_BIT_VALUE => value = true,
                            _ => {}
                        }
                    }
                    if let Some(n) = name {
                        bits.push((n, value));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(bits.into_iter().filter(|(_, v)| nomask || *v).map(|(n, _)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_features_set_lists_the_tx_checksum_bits_without_values() {
        // Parse what tx_checksum_off would send back with the same reader used on replies:
        // every bit named and none with VALUE (i.e. all wanted off).
        let bits: Vec<DefaultNla> = ["tx-checksum-ipv4", "rx-gro"]
            .iter()
            .map(|f| nested(ETHTOOL_A_BITSET_BITS_BIT, &[DefaultNla::new(ETHTOOL_A_BITSET_BIT_NAME, cstring(f))]))
            .collect();
        let set = emit_nlas(&[nested(ETHTOOL_A_BITSET_BITS, &bits)]);
        assert_eq!(bitset_on(&set).ok(), Some(vec![]));
        // The same list without a mask: every listed bit is on.
        let mut nomask = emit_nlas(&[DefaultNla::new(ETHTOOL_A_BITSET_NOMASK, vec![])]);
        nomask.extend(&set);
        assert_eq!(bitset_on(&nomask).ok(), Some(vec!["tx-checksum-ipv4".to_string(), "rx-gro".to_string()]));
        // Truncated input is an error, not a panic.
        assert!(bitset_on(&set[..set.len() - 3]).is_err());
    }
}
