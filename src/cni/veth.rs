//! The pod's veth pair over rtnetlink: the host end (named from the container id, so DEL finds
//! it), the pod's end created straight inside the pod's namespace as `CNI_IFNAME`, the MTU,
//! the IPAM result applied inside (addresses, routes, link and `lo` up), and TX checksum
//! offload off on both ends.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::CniError;
use super::ethtool::Ethtool;
use super::netns;
use super::result::{Cidr, CniResult};

const ENODEV: i32 = 19;

/// The host end's name: `sf` and 12 hex digits of a hash of the container id and interface
/// name (14 bytes: under IFNAMSIZ; deterministic, so DEL and CHECK find it from the same env).
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a 64: stable across builds and platforms (std's hashers are not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sf{:012x}", h >> 16)
}

/// A link as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mac: String,
    pub up: bool,
    pub mtu: Option<u32>,
}

/// The two ends of a pod's pair after ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub host: LinkInfo,
    pub container: LinkInfo,
}

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> CniError + '_ {
    move |e| CniError::io(format!("netlink: {what}"), e)
}

pub fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn link_info(m: &LinkMessage) -> LinkInfo {
    let mut info =
        LinkInfo { index: m.header.index, mac: String::new(), up: m.header.flags.contains(LinkFlags::Up), mtu: None };
    for a in &m.attributes {
        match a {
            LinkAttribute::Address(b) => info.mac = format_mac(b),
            LinkAttribute::Mtu(v) => info.mtu = Some(*v),
            _ => {}
        }
    }
    info
}

/// The link named `name`, or None.
pub async fn link(handle: &Handle, name: &str) -> Result<Option<LinkInfo>, CniError> {
    let mut s = handle.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(link_info(&m))),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(None),
        Err(e) => Err(nl(&format!("get link {name}"))(e)),
    }
}

async fn set_up(handle: &Handle, index: u32) -> Result<(), CniError> {
    handle.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(nl("set link up"))
}

/// Deletes link `name` if it exists; true when there was one.
pub async fn delete(handle: &Handle, name: &str) -> Result<bool, CniError> {
    let Some(l) = link(handle, name).await? else { return Ok(false) };
    match handle.link().del(l.index).execute().await {
        Ok(()) => Ok(true),
        // Gone in between (its peer's namespace went away): the same outcome.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(false),
        Err(e) => Err(nl(&format!("delete link {name}"))(e)),
    }
}

fn tx_off(dev: &str) -> Result<(), CniError> {
    Ethtool::open()
        .and_then(|mut e| e.tx_checksum_off(dev))
        .map_err(|e| CniError::io(format!("cannot turn TX checksum offload off on {dev}"), e))
}

/// True when TX checksum offload is on for `dev` (in the calling thread's namespace).
pub fn tx_checksum_on(dev: &str) -> Result<bool, CniError> {
    Ethtool::open()
        .and_then(|mut e| e.tx_checksum_on(dev))
        .map_err(|e| CniError::io(format!("cannot read the offload features of {dev}"), e))
}

/// Creates the pair (a stale host end of the same name, from an ADD that failed half-way, is
/// removed first), brings the host end up with TX checksumming off, and configures the pod's
/// end inside `ns` with `ipam`'s addresses and routes.
pub fn create(ns: &File, host: &str, ifname: &str, mtu: Option<u32>, ipam: &CniResult) -> Result<Pair, CniError> {
    let host_link = netns::run(None, |h| async move {
        if delete(&h, host).await? {
            tracing::warn!(host, "removed a stale host veth of the same name");
        }
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(ifname.to_string()).setns_by_fd(ns.as_raw_fd());
        let mut me = LinkVeth::new(host, ifname);
        if let Some(m) = mtu {
            peer = peer.mtu(m);
            me = me.mtu(m);
        }
        let msg = me.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build()))).build();
        h.link().add(msg).execute().await.map_err(nl(&format!("create veth {host} (peer {ifname} in the pod)")))?;
        let l =
            link(&h, host).await?.ok_or_else(|| CniError::io("netlink", format!("{host} vanished after creation")))?;
        set_up(&h, l.index).await?;
        tx_off(host)?;
        Ok(l)
    })?;
    let container = netns::run(Some(ns), |h| async move {
        let l = link(&h, ifname)
            .await?
            .ok_or_else(|| CniError::io("netlink", format!("{ifname} is not in the pod's namespace after creation")))?;
        tx_off(ifname)?;
        if let Some(lo) = link(&h, "lo").await? {
            set_up(&h, lo.index).await?;
        }
        for ip in &ipam.ips {
            let mut req = h.address().add(l.index, ip.address.addr, ip.address.prefix);
            if ip.address.addr.is_ipv6() {
                // No duplicate address detection: the address is usable at once (IPAM made it unique).
                req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute().await.map_err(nl(&format!("add address {} to {ifname}", ip.address)))?;
        }
        set_up(&h, l.index).await?;
        for r in &ipam.routes {
            add_route(&h, l.index, r.dst, r.gw.or_else(|| gateway_for(ipam, r.dst.addr))).await?;
        }
        Ok(l)
    })?;
    Ok(Pair { host: host_link, container })
}

/// The gateway IPAM gave for the route's family, if any.
fn gateway_for(ipam: &CniResult, dst: IpAddr) -> Option<IpAddr> {
    ipam.ips.iter().filter_map(|i| i.gateway).find(|g| g.is_ipv4() == dst.is_ipv4())
}

async fn add_route(h: &Handle, index: u32, dst: Cidr, gw: Option<IpAddr>) -> Result<(), CniError> {
    let bad = |e| CniError::config(format!("route to {dst}: {e}"));
    let mut b = RouteMessageBuilder::<IpAddr>::new().destination_prefix(dst.addr, dst.prefix).map_err(bad)?;
    if let Some(gw) = gw {
        b = b.gateway(gw).map_err(bad)?;
    }
    let msg = b.output_interface(index).build();
    h.route().add(msg).execute().await.map_err(nl(&format!("add route to {dst}")))
}

/// The addresses on link `index` (in the handle's namespace).
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<Cidr>, CniError> {
    let mut s = h.address().get().set_link_index_filter(index).execute();
    let mut out = Vec::new();
    while let Some(m) = s.try_next().await.map_err(nl("list addresses"))? {
        if m.header.index != index {
            continue;
        }
        for a in &m.attributes {
            if let AddressAttribute::Address(ip) = a {
                out.push(Cidr { addr: *ip, prefix: m.header.prefix_len });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_deterministic_and_distinct() {
        let a = host_veth_name("3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e", "eth0");
        assert_eq!(a, host_veth_name("3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("sf") && a[2..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        // Another interface of the same container, or another container: another name.
        assert_ne!(a, host_veth_name("3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e7d6c5b4a3f1c2a9b8e", "net1"));
        assert_ne!(host_veth_name("c1", "eth0"), host_veth_name("c2", "eth0"));
        // Fixed (FNV-1a of "c1/eth0", computed independently): a name must not change between
        // two builds (DEL of a pod added by an older one).
        assert_eq!(host_veth_name("c1", "eth0"), "sf9e27a0abdbb0");
    }
}
