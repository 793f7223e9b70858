//! A first-match index over a policy file's rules: the answer of the in-order scan
//! ([`PolicyFile::allows`](super::file::PolicyFile::allows)) at a cost that does not grow with the
//! number of rules.
//!
//! Tuple-space search. Rules are grouped by the *shape* of their address sides, the pair
//! (src prefix length, dst prefix length) with `any` as its own shape; inside one shape a hash map
//! keyed by the two masked networks finds the rules of exactly those networks in one probe. A
//! query probes each shape of its address families once (masking its addresses with the shape's
//! prefixes), shapes visited in the order of the lowest rule id they hold, and stops as soon as
//! no shape left can hold a lower id than the best match found: the lowest matching rule id is
//! the in-order scan's first match.
//!
//! Within one pair of networks the rules differ by protocol and destination ports. Up to
//! [`SMALL_GROUP`] of them are checked in order; a larger group gets, per protocol slot
//! (tcp, udp, sctp, icmp, other), a table of port segments, each holding the lowest rule id that
//! covers it, so the lookup is a binary search.
//!
//! Cost of one decision: one hash probe per shape present in the file for the query's families
//! (in practice a handful; at most 1 + 33 + 33 + 33 x 33 for IPv4), plus a binary search in a
//! large group. Memory: about 20 bytes per rule on top of the rules themselves.

use std::collections::HashMap;
use std::net::IpAddr;

use shards::FastBuild;

use super::decision::{Location, Locator};
use super::file::{AddrMatch, PolicyFile, Protocol, Rule, RuleAction, Service};
use super::{DstType, NetworkPolicy, PolicyQuery};

/// Groups of rules sharing both networks are scanned in order up to this size; above it they
/// get port segment tables.
pub const SMALL_GROUP: usize = 8;

/// No rule (in a port segment).
const NONE: u32 = u32::MAX;
/// A map value with this bit set is an index into `groups`; without, a single rule id.
const GROUP_BIT: u32 = 1 << 31;

/// The most rules an index holds (rule ids are 31 bits).
pub const MAX_RULES: usize = (GROUP_BIT - 1) as usize;

// Every file the parser accepts fits.
const _: () = assert!(super::file::MAX_RULES <= MAX_RULES);

/// One side's shape: any address, or an IPv4 / IPv6 network of a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Side {
    Any,
    V4(u8),
    V6(u8),
}

impl Side {
    fn of(m: &AddrMatch) -> (Side, u128) {
        match m {
            AddrMatch::Any => (Side::Any, 0),
            AddrMatch::Net(n) => match n.addr() {
                IpAddr::V4(a) => (Side::V4(n.prefix()), u128::from(u32::from(a))),
                IpAddr::V6(a) => (Side::V6(n.prefix()), u128::from(a)),
            },
        }
    }

    /// The address's bits under this shape, or `None` if the family does not fit.
    #[inline]
    fn key(self, ip: IpAddr) -> Option<u128> {
        match (self, ip) {
            (Side::Any, _) => Some(0),
            (Side::V4(len), IpAddr::V4(a)) => {
                let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Some(u128::from(u32::from(a) & m))
            }
            (Side::V6(len), IpAddr::V6(a)) => {
                let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Some(u128::from(a) & m)
            }
            _ => None,
        }
    }

    fn fits(self, v6: bool) -> bool {
        match self {
            Side::Any => true,
            Side::V4(_) => !v6,
            Side::V6(_) => v6,
        }
    }

    fn is_wide(self) -> bool {
        matches!(self, Side::V6(_))
    }
}

/// The networks of one shape to what they hold (a rule id, or `GROUP_BIT | group index`).
/// Shapes with no IPv6 side key on one `u64` (both IPv4 networks), the others on both `u128`s.
enum Networks {
    Narrow(HashMap<u64, u32, FastBuild>),
    Wide(HashMap<(u128, u128), u32, FastBuild>),
}

struct Shape {
    src: Side,
    dst: Side,
    /// The lowest rule id of this shape: a query stops when it already matched below it.
    min_id: u32,
    networks: Networks,
}

impl Shape {
    #[inline]
    fn probe(&self, q: &PolicyQuery) -> Option<u32> {
        let s = self.src.key(q.src_ip)?;
        let d = self.dst.key(q.dst_ip)?;
        match &self.networks {
            Networks::Narrow(m) => m.get(&((s as u64) << 32 | d as u64)).copied(),
            Networks::Wide(m) => m.get(&(s, d)).copied(),
        }
    }
}

/// The protocol slot of a query's IP protocol number.
#[inline]
fn slot_of(proto: u8) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        132 => 2,
        1 | 58 => 3,
        _ => 4,
    }
}

const SLOTS: usize = 5;

/// Whether a rule of protocol `p` can match queries of slot `slot`.
fn in_slot(p: Protocol, slot: usize) -> bool {
    match p {
        Protocol::Any => true,
        Protocol::Tcp => slot == 0,
        Protocol::Udp => slot == 1,
        Protocol::Sctp => slot == 2,
        Protocol::Icmp => slot == 3,
    }
}

/// Destination ports to the lowest rule id covering them: `starts[i]..starts[i+1]` (the last
/// up to 65535) belongs to `ids[i]` (`NONE`: no rule).
#[derive(Default)]
struct PortSegments {
    starts: Box<[u16]>,
    ids: Box<[u32]>,
}

impl PortSegments {
    /// `ranges` in ascending rule id order.
    fn build(ranges: &[(u32, u16, u16)]) -> PortSegments {
        if ranges.is_empty() {
            return PortSegments::default();
        }
        let mut cuts: Vec<u32> = Vec::with_capacity(ranges.len() * 2 + 1);
        cuts.push(0);
        for &(_, lo, hi) in ranges {
            cuts.push(u32::from(lo));
            cuts.push(u32::from(hi) + 1);
        }
        cuts.sort_unstable();
        cuts.dedup();
        cuts.retain(|c| *c <= 65535);
        let mut ids = vec![NONE; cuts.len()];
        // Paint in rule order; `next[i]` leads to the first unpainted segment at or after `i`
        // (path-halving union-find), so each segment is painted once.
        let mut next: Vec<u32> = (0..=cuts.len() as u32).collect();
        fn find(next: &mut [u32], mut i: u32) -> u32 {
            while next[i as usize] != i {
                let up = next[next[i as usize] as usize];
                next[i as usize] = up;
                i = up;
            }
            i
        }
        for &(id, lo, hi) in ranges {
            let first = cuts.partition_point(|c| *c <= u32::from(lo)) - 1;
            let last = cuts.partition_point(|c| *c <= u32::from(hi)) - 1;
            let mut i = find(&mut next, first as u32) as usize;
            while i <= last {
                ids[i] = id;
                next[i] = i as u32 + 1;
                i = find(&mut next, i as u32 + 1) as usize;
            }
        }
        PortSegments { starts: cuts.into_iter().map(|c| c as u16).collect(), ids: ids.into_boxed_slice() }
    }

    #[inline]
    fn get(&self, port: u16) -> u32 {
        match self.starts.partition_point(|s| *s <= port) {
            0 => NONE,
            i => self.ids[i - 1],
        }
    }
}

/// Rules sharing both networks.
struct Group {
    /// Ascending rule ids.
    ids: Box<[u32]>,
    /// Per protocol slot, above [`SMALL_GROUP`] rules.
    slots: Option<Box<[PortSegments; SLOTS]>>,
}

/// The first-match index of a rule list (see the module documentation).
pub struct RuleIndex {
    shapes: Vec<Shape>,
    /// Per query family pair (src v6?, dst v6?) as `2 * src + dst`: the shapes that can match,
    /// in ascending `min_id` order.
    order: [Vec<u32>; 4],
    groups: Vec<Group>,
}

impl std::fmt::Debug for RuleIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleIndex").field("shapes", &self.shapes.len()).field("groups", &self.groups.len()).finish()
    }
}

impl RuleIndex {
    /// Indexes `rules` (at most [`MAX_RULES`]; the parser refuses more). Linear in the rules
    /// (plus sorting within large groups).
    pub fn build(rules: &[Rule]) -> RuleIndex {
        let rules = &rules[..rules.len().min(MAX_RULES)];
        // Shape -> position in `shapes`.
        let mut shape_of: HashMap<(Side, Side), usize> = HashMap::new();
        let mut shapes: Vec<Shape> = Vec::new();
        // Networks seen twice or more: value -> the ids (the map holds GROUP_BIT | index).
        let mut pending: Vec<Vec<u32>> = Vec::new();
        for (id, r) in rules.iter().enumerate() {
            let id = id as u32;
            let (ss, sk) = Side::of(&r.src);
            let (ds, dk) = Side::of(&r.dst);
            let at = *shape_of.entry((ss, ds)).or_insert_with(|| {
                shapes.push(Shape {
                    src: ss,
                    dst: ds,
                    min_id: id,
                    networks: if ss.is_wide() || ds.is_wide() {
                        Networks::Wide(HashMap::default())
                    } else {
                        Networks::Narrow(HashMap::default())
                    },
                });
                shapes.len() - 1
            });
            let v = match &mut shapes[at].networks {
                Networks::Narrow(m) => m.entry((sk as u64) << 32 | dk as u64).or_insert(id),
                Networks::Wide(m) => m.entry((sk, dk)).or_insert(id),
            };
            if *v == id {
                continue;
            }
            if *v & GROUP_BIT == 0 {
                pending.push(vec![*v]);
                *v = GROUP_BIT | (pending.len() - 1) as u32;
            }
            pending[(*v & !GROUP_BIT) as usize].push(id);
        }
        let groups = pending
            .into_iter()
            .map(|ids| {
                let slots = (ids.len() > SMALL_GROUP).then(|| {
                    Box::new(std::array::from_fn(|slot| {
                        let ranges: Vec<(u32, u16, u16)> = ids
                            .iter()
                            .filter_map(|&id| {
                                let r = &rules[id as usize];
                                // As `Rule::matches`: ports apply to the query's destination
                                // port whatever the protocol (the parser allows them with
                                // tcp, udp and sctp only).
                                let (lo, hi) = r.ports.map_or((0, u16::MAX), |p| (p.lo, p.hi));
                                in_slot(r.protocol, slot).then_some((id, lo, hi))
                            })
                            .collect();
                        PortSegments::build(&ranges)
                    }))
                });
                Group { ids: ids.into_boxed_slice(), slots }
            })
            .collect();
        for s in &mut shapes {
            match &mut s.networks {
                Networks::Narrow(m) => m.shrink_to_fit(),
                Networks::Wide(m) => m.shrink_to_fit(),
            }
        }
        let order = std::array::from_fn(|fams| {
            let (src6, dst6) = (fams & 2 != 0, fams & 1 != 0);
            let mut v: Vec<u32> = (0..shapes.len() as u32)
                .filter(|&i| shapes[i as usize].src.fits(src6) && shapes[i as usize].dst.fits(dst6))
                .collect();
            v.sort_by_key(|&i| shapes[i as usize].min_id);
            v
        });
        RuleIndex { shapes, order, groups }
    }

    /// The id (position) of the first rule of `rules` that matches `q`, as the in-order scan
    /// finds it. `rules` must be the slice the index was built from.
    pub fn first_match(&self, rules: &[Rule], q: &PolicyQuery) -> Option<usize> {
        let fams = 2 * usize::from(q.src_ip.is_ipv6()) + usize::from(q.dst_ip.is_ipv6());
        let mut best = NONE;
        for &i in &self.order[fams] {
            let shape = &self.shapes[i as usize];
            if shape.min_id >= best {
                break;
            }
            let Some(v) = shape.probe(q) else { continue };
            let found = if v & GROUP_BIT == 0 {
                if ports_and_protocol(&rules[v as usize], q) {
                    v
                } else {
                    NONE
                }
            } else {
                self.groups[(v & !GROUP_BIT) as usize].first(rules, q, best)
            };
            best = best.min(found);
        }
        (best != NONE).then_some(best as usize)
    }

    /// Distinct address shapes (prefix length pairs): the number of probes a query may cost.
    pub fn shapes(&self) -> usize {
        self.shapes.len()
    }
}

impl Group {
    /// The lowest id of this group matching `q`'s protocol and port, if below `best`.
    #[inline]
    fn first(&self, rules: &[Rule], q: &PolicyQuery, best: u32) -> u32 {
        match &self.slots {
            Some(slots) => slots[slot_of(q.protocol)].get(q.dst_port),
            None => self
                .ids
                .iter()
                .copied()
                .take_while(|&id| id < best)
                .find(|&id| ports_and_protocol(&rules[id as usize], q))
                .unwrap_or(NONE),
        }
    }
}

/// The parts of [`Rule::matches`] the networks do not decide.
#[inline]
fn ports_and_protocol(r: &Rule, q: &PolicyQuery) -> bool {
    r.protocol.matches(q.protocol) && r.ports.is_none_or(|p| (p.lo..=p.hi).contains(&q.dst_port))
}

// === a policy file with its indexes ===

/// A policy file ready to answer: its rules behind a [`RuleIndex`], its services and static
/// endpoints behind hash maps. Answers exactly as [`PolicyFile::evaluate`] (the in-order scan,
/// kept as the reference) does. Built off the shards (it takes about a second per million
/// rules), then shared read-only.
pub struct IndexedPolicy {
    file: PolicyFile,
    rules: RuleIndex,
    /// (VIP, port) to the services of that address, in file order (their protocols differ).
    services: HashMap<(IpAddr, u16), Vec<u32>, FastBuild>,
    /// The first `[[endpoint]]` of each address.
    endpoints: HashMap<IpAddr, Location, FastBuild>,
}

impl std::fmt::Debug for IndexedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexedPolicy(version {}, {} rules, {:?})", self.file.version, self.file.rules.len(), self.rules)
    }
}

impl IndexedPolicy {
    pub fn new(file: PolicyFile) -> IndexedPolicy {
        let rules = RuleIndex::build(&file.rules);
        let mut services: HashMap<(IpAddr, u16), Vec<u32>, FastBuild> = HashMap::default();
        for (i, s) in file.services.iter().enumerate() {
            services.entry((s.vip, s.port)).or_default().push(i as u32);
        }
        let mut endpoints: HashMap<IpAddr, Location, FastBuild> = HashMap::default();
        for e in &file.endpoints {
            endpoints.entry(e.ip).or_insert(Location { port: e.port, mac: e.mac, tun_dst: None });
        }
        IndexedPolicy { file, rules, services, endpoints }
    }

    pub fn file(&self) -> &PolicyFile {
        &self.file
    }

    pub fn version(&self) -> u64 {
        self.file.version
    }

    /// The position of the first rule matching `q` (what the in-order scan finds).
    pub fn first_match(&self, q: &PolicyQuery) -> Option<usize> {
        self.rules.first_match(&self.file.rules, q)
    }

    /// Whether the first matching rule (or the default) allows `q`.
    pub fn allows(&self, q: &PolicyQuery) -> bool {
        let action = self.first_match(q).map_or(self.file.default, |i| self.file.rules[i].action);
        action == RuleAction::Allow
    }

    /// The service `q` is addressed to, if any.
    pub fn service_for(&self, q: &PolicyQuery) -> Option<&Service> {
        self.services
            .get(&(q.dst_ip, q.dst_port))?
            .iter()
            .map(|&i| &self.file.services[i as usize])
            .find(|s| s.protocol.matches(q.protocol))
    }

    /// The answer for `q`, as [`PolicyFile::evaluate`] gives it.
    pub fn evaluate(&self, q: &PolicyQuery) -> NetworkPolicy {
        let dst_type = match self.service_for(q) {
            Some(s) => DstType::Dnat { endpoints: s.endpoints.clone() },
            None => DstType::Direct,
        };
        NetworkPolicy {
            allowed: self.allows(q),
            dst_type,
            src_port: None,
            version: self.file.version,
            ttl: self.file.ttl,
        }
    }

    /// Address shapes of the rule index (the probes a decision may cost).
    pub fn shapes(&self) -> usize {
        self.rules.shapes()
    }
}

/// The file's `[[endpoint]]` entries.
impl Locator for IndexedPolicy {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self.endpoints.get(&ip).copied()
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
