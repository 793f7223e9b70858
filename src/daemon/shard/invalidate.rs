//! Policy invalidation: cached answers dropped, and the connections decided from them (or
//! naming an invalidated address) forgotten and their flows deleted by cookie.

use super::*;
use std::net::IpAddr;

use crate::daemon::Invalidated;
use crate::openflow::flow::FlowModCommand;
use crate::packet::key::{ConnAddr, ConnEnd, ConnFamily};
use crate::policy::PolicyQuery;

impl Shard {
    /// Drops cached answers and removes the connections decided from them: their flows are
    /// deleted by cookie on every switch this shard talks to (the next packet asks again).
    pub(super) fn invalidate(&self, ips: &[IpAddr], below_version: u64, all: bool) -> Invalidated {
        let dropped = self.decider.as_ref().map(|d| d.invalidate(ips, below_version, all)).unwrap_or_default();
        // The connections decided from the dropped answers, and those naming an address.
        let mut doomed: HashSet<u64> = dropped.iter().filter_map(query_conn_key).map(|k| k.hash64()).collect();
        let touched = self.keys.borrow_mut().remove_where(|hash, r| {
            all || doomed.contains(&hash)
                || match r {
                    ConnRecord::Seen { key, .. } => {
                        let touches = |e: ConnEnd| match e.addr {
                            ConnAddr::Ip(ip) => ips.contains(&ip),
                            ConnAddr::Mac(_) => false,
                        };
                        touches(key.lo()) || touches(key.hi())
                    }
                    ConnRecord::Decided { decided, .. } => {
                        let (a, b) = decided.addresses();
                        ips.contains(&a) || ips.contains(&b)
                    }
                }
        });
        doomed.extend(touched.iter().map(|(hash, _)| *hash));
        for (_, r) in touched {
            self.forget(Inserted::Replaced(r));
        }
        let mut cookies: Vec<u64> =
            doomed.iter().map(|h| cookie::make(self.shared.generation, cookie::Category::Connection, *h)).collect();
        // Connection flows adopted from the switch (a previous run decided them) count too.
        cookies.extend(self.live.borrow().connection_cookies(ips, all));
        cookies.sort_unstable();
        cookies.dedup();
        let mut deletes = Vec::new();
        for c in cookies {
            self.live.borrow_mut().remove_cookie(c);
            let mut fm = FlowMod::new(FlowModCommand::Delete);
            fm.table_id = 0xff;
            fm.cookie = c;
            fm.cookie_mask = u64::MAX;
            deletes.push(Message::FlowMod(fm));
        }
        if !deletes.is_empty() {
            // Only to routed connections: an unverified one learns nothing of the flows.
            let routed = self.routed.borrow();
            for c in self.conns.borrow().values().filter(|c| routed.contains(&c.id)) {
                c.send_all(&deletes);
            }
        }
        let removed = deletes.len();
        tracing::info!(shard = self.id(), answers = dropped.len(), connections = removed, "policy invalidated");
        Invalidated { answers_dropped: dropped.len() as u64, connections_removed: removed as u64 }
    }
}

/// The connection a cached policy query was about.
pub(super) fn query_conn_key(q: &PolicyQuery) -> Option<ConnKey> {
    let family = match q.src_ip {
        IpAddr::V4(_) => ConnFamily::Ipv4,
        IpAddr::V6(_) => ConnFamily::Ipv6,
    };
    let src = ConnEnd { addr: ConnAddr::Ip(q.src_ip), port: q.src_port };
    let dst = ConnEnd { addr: ConnAddr::Ip(q.dst_ip), port: q.dst_port };
    Some(ConnKey::new(family, q.protocol, src, dst))
}
