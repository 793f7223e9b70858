//! Pipeline report: per table (and per cookie category: the pipeline, the packet-in dispatch,
//! the decided connection flows, learned flows), the share of flows a profile could offload and
//! the reasons that block the rest, with hints where a pipeline change would help.
//!
//! Unlike [`super::check_flow`], the report sees the whole pipeline, which lets it say two things
//! one flow cannot:
//! - **recirculation depth**: a table reached only after `ct(table=N)` is one recirculation deep
//!   (tables reached both ways count the deeper way), so the flows there carry that depth into
//!   the profile's recirculation limit;
//! - **continuation**: `goto_table` and `resubmit` put the next table's flow into the *same*
//!   datapath flow. When every flow of the next table that the packet can meet is blocked (the
//!   highest-priority flow whose match covers this one's, and the overlapping flows above it),
//!   this flow is blocked too, with [`Reason::ContinuesInto`]. When only some are, the flow
//!   offloads for some packets and keeps its own verdict.
//!
//! Registers are not followed (a flow in the next table matching a register is taken as one the
//! packet may meet but need not), so continuation errs towards "may offload".

use super::lower::{lower_flow_mod_in, Context};
use super::profile::Profile;
use super::requirement::{ActionReq, CtFlag};
use super::verdict::{Reason, Verdict};
use crate::openflow::action::ct::CT_RECIRC_NONE;
use crate::openflow::action::Action;
use crate::openflow::flow::{FlowMod, FlowModCommand};
use crate::openflow::instruction::Instruction;
use crate::openflow::oxm::Match;
use crate::openflow::TextError;
use crate::pipeline::cookie::{self, Category};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The default pipeline's table names (docs/pipeline.md).
pub const TABLE_NAMES: &[(u8, &str)] = &[
    (0, "classifier"),
    (1, "conntrack"),
    (2, "ct verdicts"),
    (3, "policy"),
    (4, "from uplink"),
    (5, "forwarding"),
    (6, "learned return flows"),
    (15, "learn"),
    (20, "arp"),
    (250, "packet-in dispatch"),
];

/// At most this many unparsable dump lines are kept in a report (the rest are counted).
const MAX_UNPARSED: usize = 16;

/// One flow's verdict in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowVerdict {
    pub table: u8,
    pub priority: u16,
    pub cookie: String,
    pub category: String,
    /// The match, as `ovs-ofctl` prints it.
    #[serde(rename = "match")]
    pub match_text: String,
    pub recirculations: u32,
    pub offloadable: bool,
    pub reasons: Vec<String>,
}

/// A share of flows and what blocks the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Share {
    pub flows: usize,
    pub offloadable: usize,
    /// `offloadable / flows` (1 for no flows: nothing is in the way).
    pub ratio: f64,
    /// Reason text -> how many flows it blocks, most first.
    pub blocking: Vec<Blocking>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocking {
    pub reason: String,
    pub flows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableShare {
    pub table: u8,
    pub name: Option<String>,
    #[serde(flatten)]
    pub share: Share,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryShare {
    pub category: String,
    #[serde(flatten)]
    pub share: Share,
}

/// The report (JSON in `GET /v1/switches/{dpid}/offload`, text in `shardflow offload report`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub profile: String,
    pub total: Share,
    pub tables: Vec<TableShare>,
    pub categories: Vec<CategoryShare>,
    /// The conntrack zones the flows use (numbers only).
    pub ct_zones: Vec<u16>,
    /// Set when the flows use more zones than the profile can tell apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_zones_problem: Option<String>,
    pub hints: Vec<String>,
    pub flows: Vec<FlowVerdict>,
    /// Dump lines that did not parse (at most 16 kept) and how many there were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unparsed: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unparsed_count: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The category name of a cookie.
pub fn category_name(c: u64) -> &'static str {
    match cookie::category(c) {
        Some(Category::Dispatch) => "dispatch",
        Some(Category::Pipeline) => "pipeline",
        Some(Category::Connection) => "connection",
        Some(Category::Learned) => "learned",
        Some(Category::Manual) => "manual",
        None => "other",
    }
}

pub fn table_name(t: u8) -> Option<&'static str> {
    TABLE_NAMES.iter().find(|(n, _)| *n == t).map(|(_, s)| *s)
}

/// Reads one `ovs-ofctl dump-flows` line (as `GET /v1/switches/{dpid}/flows` returns them) back
/// into a flow: the statistics (`duration`, `n_packets`, `n_bytes`, ages) are dropped.
pub fn flow_from_dump_line(line: &str) -> Result<FlowMod, TextError> {
    let line = line.trim();
    let (head, actions) = match line.find("actions=") {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    let mut kept = String::with_capacity(line.len());
    for item in head.split(',') {
        let t = item.trim();
        // `n_bytes=0, priority=5,ip` splits into words separated by spaces too.
        for word in t.split(' ').filter(|w| !w.is_empty()) {
            let key = word.split('=').next().unwrap_or("");
            if matches!(key, "duration" | "n_packets" | "n_bytes" | "idle_age" | "hard_age") {
                continue;
            }
            if !kept.is_empty() {
                kept.push(',');
            }
            kept.push_str(word);
        }
    }
    if !kept.is_empty() {
        kept.push(',');
    }
    kept.push_str(actions);
    FlowMod::parse_unchecked(&kept, FlowModCommand::Add)
}

/// A report over dump-flows lines (a live switch's flows).
pub fn analyze_dump(profile: &Profile, lines: &[String]) -> Report {
    let mut flows = Vec::with_capacity(lines.len());
    let mut unparsed = Vec::new();
    let mut unparsed_count = 0;
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        match flow_from_dump_line(l) {
            Ok(fm) => flows.push(fm),
            Err(e) => {
                unparsed_count += 1;
                if unparsed.len() < MAX_UNPARSED {
                    unparsed.push(format!("{}: {e}", l.trim()));
                }
            }
        }
    }
    let mut r = analyze(profile, &flows);
    r.unparsed = unparsed;
    r.unparsed_count = unparsed_count;
    r
}

/// Where a flow sends the packet on: tables in the same datapath flow, and tables after a
/// recirculation.
fn next_tables(fm: &FlowMod) -> (Vec<u8>, Vec<u8>) {
    let (mut same, mut recirc) = (Vec::new(), Vec::new());
    fn walk(actions: &[Action], this: u8, same: &mut Vec<u8>, recirc: &mut Vec<u8>) {
        for a in actions {
            match a {
                Action::Resubmit { table, .. } => same.push(if *table == 255 { this } else { *table }),
                Action::Ct(ct) if ct.recirc_table != CT_RECIRC_NONE => recirc.push(ct.recirc_table),
                Action::Clone(inner) => walk(inner, this, same, recirc),
                _ => {}
            }
        }
    }
    for i in &fm.instructions {
        match i {
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => walk(a, fm.table_id, &mut same, &mut recirc),
            Instruction::GotoTable(t) => same.push(*t),
            _ => {}
        }
    }
    same.retain(|t| *t != fm.table_id);
    (same, recirc)
}

/// Recirculations before each table, the deeper path winning (bounded: loops and long chains
/// stop at 8).
fn depths(flows: &[FlowMod]) -> BTreeMap<u8, u32> {
    let mut depth: BTreeMap<u8, u32> = BTreeMap::new();
    depth.insert(0, 0);
    let edges: Vec<(u8, Vec<u8>, Vec<u8>)> = flows
        .iter()
        .map(|f| {
            let (s, r) = next_tables(f);
            (f.table_id, s, r)
        })
        .collect();
    for _ in 0..64 {
        let mut changed = false;
        for (from, same, recirc) in &edges {
            let Some(&d) = depth.get(from) else { continue };
            for (targets, add) in [(same, 0), (recirc, 1)] {
                for t in targets {
                    let nd = (d + add).min(8);
                    let e = depth.entry(*t).or_insert(nd);
                    if *e < nd {
                        *e = nd;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// Whether two matches can hold for one packet (no field pinned to different values).
fn overlaps(a: &Match, b: &Match) -> bool {
    a.entries.iter().all(|ea| match b.get(ea.field) {
        None => true,
        Some(eb) => {
            let ma = ea.mask.map(|m| m.to_u128()).unwrap_or(u128::MAX);
            let mb = eb.mask.map(|m| m.to_u128()).unwrap_or(u128::MAX);
            let m = ma & mb;
            ea.value.to_u128() & m == eb.value.to_u128() & m
        }
    })
}

/// Whether every packet matching `narrow` matches `wide` too.
fn covers(wide: &Match, narrow: &Match) -> bool {
    wide.entries.iter().all(|ew| match narrow.get(ew.field) {
        None => false,
        Some(en) => {
            let mw = ew.mask.map(|m| m.to_u128()).unwrap_or(u128::MAX);
            let mn = en.mask.map(|m| m.to_u128()).unwrap_or(u128::MAX);
            // narrow pins at least the bits wide looks at, to the same values.
            mw & !mn == 0 && ew.value.to_u128() & mw == en.value.to_u128() & mw
        }
    })
}

/// Judges a set of flows (a pipeline, a switch's flows) under `profile`. See the module doc.
pub fn analyze(profile: &Profile, flows: &[FlowMod]) -> Report {
    let depth = depths(flows);
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(flows.len());
    let mut recircs: Vec<u32> = Vec::with_capacity(flows.len());
    let mut zones: BTreeSet<u16> = BTreeSet::new();
    let mut learn_tables: BTreeSet<u8> = BTreeSet::new();
    for fm in flows {
        let before = depth.get(&fm.table_id).copied().unwrap_or(0);
        let req = lower_flow_mod_in(fm, Context { recirculations_before: before });
        zones.extend(req.ct_zones.iter().copied());
        if fm.priority > 0 && req.actions.contains(&ActionReq::Learn) {
            learn_tables.insert(fm.table_id);
        }
        recircs.push(req.recirculations);
        verdicts.push(profile.judge(&req));
    }
    // Flows by table, highest priority first, for continuation.
    let mut by_table: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for (i, fm) in flows.iter().enumerate() {
        by_table.entry(fm.table_id).or_default().push(i);
    }
    for v in by_table.values_mut() {
        v.sort_by(|a, b| flows[*b].priority.cmp(&flows[*a].priority));
    }
    let nexts: Vec<Vec<u8>> = flows.iter().map(|f| next_tables(f).0).collect();
    for _ in 0..16 {
        let mut changed = false;
        for i in 0..flows.len() {
            for t in &nexts[i] {
                if verdicts[i].reasons.iter().any(|r| matches!(r, Reason::ContinuesInto { table, .. } if table == t)) {
                    continue;
                }
                let Some(cands) = by_table.get(t) else { continue };
                let mut reached = Vec::new();
                for &j in cands {
                    if !overlaps(&flows[j].r#match, &flows[i].r#match) {
                        continue;
                    }
                    reached.push(j);
                    if covers(&flows[j].r#match, &flows[i].r#match) {
                        break;
                    }
                }
                if reached.is_empty() || reached.iter().any(|&j| verdicts[j].offloadable) {
                    continue;
                }
                let why = verdicts[reached[0]].reasons.first().map(|r| r.to_string()).unwrap_or_default();
                let mut reasons = verdicts[i].reasons.clone();
                reasons.push(Reason::ContinuesInto { table: *t, why });
                verdicts[i] = Verdict::from_reasons(reasons);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    let entries: Vec<FlowVerdict> = flows
        .iter()
        .zip(&verdicts)
        .zip(&recircs)
        .map(|((fm, v), r)| FlowVerdict {
            table: fm.table_id,
            priority: fm.priority,
            cookie: format!("{:#x}", fm.cookie),
            category: category_name(fm.cookie).to_string(),
            match_text: fm.r#match.to_string(),
            recirculations: *r,
            offloadable: v.offloadable,
            reasons: v.reasons.iter().map(|r| r.to_string()).collect(),
        })
        .collect();

    let share = |pick: &dyn Fn(&FlowVerdict) -> bool| -> Share {
        let sel: Vec<&FlowVerdict> = entries.iter().filter(|e| pick(e)).collect();
        let ok = sel.iter().filter(|e| e.offloadable).count();
        let mut blocking: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &sel {
            for r in &e.reasons {
                *blocking.entry(r.as_str()).or_default() += 1;
            }
        }
        let mut blocking: Vec<Blocking> =
            blocking.into_iter().map(|(reason, flows)| Blocking { reason: reason.to_string(), flows }).collect();
        blocking.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.reason.cmp(&b.reason)));
        Share {
            flows: sel.len(),
            offloadable: ok,
            ratio: if sel.is_empty() { 1.0 } else { ok as f64 / sel.len() as f64 },
            blocking,
        }
    };
    let tables: Vec<TableShare> = by_table
        .keys()
        .map(|t| TableShare { table: *t, name: table_name(*t).map(str::to_string), share: share(&|e| e.table == *t) })
        .collect();
    let cats: BTreeSet<&str> = entries.iter().map(|e| e.category.as_str()).collect();
    let categories: Vec<CategoryShare> = cats
        .into_iter()
        .map(|c| CategoryShare { category: c.to_string(), share: share(&|e| e.category == c) })
        .collect();
    let total = share(&|_| true);

    let ct_zones: Vec<u16> = zones.into_iter().collect();
    let ct_zones_problem = profile.ct.max_distinct_zones.and_then(|max| {
        (ct_zones.len() as u32 > max).then(|| {
            format!("{} conntrack zones in use, the profile tells at most {max} apart at once", ct_zones.len())
        })
    });
    let hints = hints(profile, &entries, &learn_tables);
    Report {
        profile: profile.name.clone(),
        total,
        tables,
        categories,
        ct_zones,
        ct_zones_problem,
        hints,
        flows: entries,
        unparsed: Vec::new(),
        unparsed_count: 0,
    }
}

/// What the blocking reasons mean for traffic, and what a pipeline change could do about them.
fn hints(profile: &Profile, entries: &[FlowVerdict], learn_tables: &BTreeSet<u8>) -> Vec<String> {
    let blocked: Vec<&FlowVerdict> = entries.iter().filter(|e| !e.offloadable).collect();
    let any = |needle: &str| blocked.iter().any(|e| e.reasons.iter().any(|r| r.contains(needle)));
    let mut out = Vec::new();
    if any("controller is a slow-path action") {
        out.push(
            "controller: the packet-in flows (table misses, a service's first packet) see only a connection's \
             first packets; once its flows are in place, the connection does not meet them"
                .to_string(),
        );
    }
    if !learn_tables.is_empty() {
        let t: Vec<String> = learn_tables.iter().map(|t| t.to_string()).collect();
        out.push(format!(
            "learn (table {}): OVS runs learn() at translation and matches the fields it reads exactly, so \
             every connection through it is a datapath flow of its own and its first packet an upcall; \
             those flows can offload (the learned flow is kept alive from their statistics), but the \
             datapath holds one flow per connection there",
            t.join(", ")
        ));
    }
    let flag_blocked: Vec<String> = CtFlag::ALL
        .iter()
        .filter(|f| !profile.ct.state_flags_set.contains(f))
        .map(|f| format!("ct_state +{} not matchable", f.name()))
        .filter(|needle| any(needle))
        .collect();
    if !flag_blocked.is_empty() {
        out.push(format!(
            "{}: these conntrack verdicts (new connections' first packets, related and invalid packets) stay in \
             software on {}; established traffic (+est) is not affected",
            flag_blocked.join(", "),
            profile.name
        ));
    }
    if any("arp_") {
        out.push(
            "arp: the ARP responder's rewrites (or matches on ARP fields) stay in software; ARP is a few \
             packets per neighbour and minute"
                .to_string(),
        );
    }
    out
}

impl Report {
    /// The report as text (`shardflow offload report`, the README).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let pct = |r: f64| format!("{:.0}%", r * 100.0);
        let _ = writeln!(
            s,
            "profile {}: {} of {} flows offloadable ({})",
            self.profile,
            self.total.offloadable,
            self.total.flows,
            pct(self.total.ratio)
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "table  name                  flows  offloadable  share");
        for t in &self.tables {
            let _ = writeln!(
                s,
                "{:<6} {:<21} {:>5}  {:>11}  {:>5}",
                t.table,
                t.name.as_deref().unwrap_or("-"),
                t.share.flows,
                t.share.offloadable,
                pct(t.share.ratio)
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "category     flows  offloadable  share");
        for c in &self.categories {
            let _ = writeln!(
                s,
                "{:<12} {:>5}  {:>11}  {:>5}",
                c.category,
                c.share.flows,
                c.share.offloadable,
                pct(c.share.ratio)
            );
        }
        if !self.total.blocking.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "blocking reasons (flows):");
            for b in &self.total.blocking {
                let _ = writeln!(s, "  {:>3}  {}", b.flows, b.reason);
            }
        }
        let blocked: Vec<&FlowVerdict> = self.flows.iter().filter(|f| !f.offloadable).collect();
        if !blocked.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "not offloadable:");
            for f in blocked {
                let m = if f.match_text.is_empty() { "(any)".to_string() } else { f.match_text.clone() };
                let _ = writeln!(
                    s,
                    "  table={} priority={} {} [{}]: {}",
                    f.table,
                    f.priority,
                    m,
                    f.category,
                    f.reasons.join("; ")
                );
            }
        }
        if !self.ct_zones.is_empty() {
            let z: Vec<String> = self.ct_zones.iter().map(|z| z.to_string()).collect();
            let _ = writeln!(s);
            let _ = writeln!(s, "conntrack zones: {}", z.join(", "));
        }
        if let Some(p) = &self.ct_zones_problem {
            let _ = writeln!(s, "  {p}");
        }
        if !self.hints.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "hints:");
            for h in &self.hints {
                let _ = writeln!(s, "- {h}");
            }
        }
        if self.unparsed_count > 0 {
            let _ = writeln!(s);
            let _ = writeln!(s, "{} dump lines not understood:", self.unparsed_count);
            for u in &self.unparsed {
                let _ = writeln!(s, "  {u}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(t: &str) -> FlowMod {
        FlowMod::parse(t, FlowModCommand::Add).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn dump_lines_read_back() {
        let f = flow_from_dump_line(
            " cookie=0x1020101000000, duration=3.021s, table=1, n_packets=7, n_bytes=420, idle_timeout=60, \
             priority=100,ip actions=ct(table=2,zone=1)",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.table_id, 1);
        assert_eq!(f.priority, 100);
        assert_eq!(f.idle_timeout, 60);
        assert_eq!(f.cookie, 0x1020101000000);
        assert_eq!(
            f.to_flow_text(),
            fm("cookie=0x1020101000000,table=1,idle_timeout=60,priority=100,ip,actions=ct(table=2,zone=1)")
                .to_flow_text()
        );
        assert!(flow_from_dump_line(" cookie=0x1, table=1, priority=1,bogus=3 actions=drop").is_err());
    }

    #[test]
    fn depth_and_continuation() {
        let p = Profile::builtin("connectx").unwrap_or_else(|e| panic!("{e}"));
        let flows = vec![
            fm("table=0,priority=10,ip,actions=goto_table:1"),
            fm("table=0,priority=5,arp,actions=resubmit(,9)"),
            fm("table=1,priority=10,ip,actions=ct(table=2,zone=1)"),
            fm("table=2,priority=10,ct_state=+est+trk,ip,actions=ct(table=3,zone=2)"),
            fm("table=3,priority=10,ip,actions=ct(table=4,zone=3)"),
            fm("table=4,priority=10,ip,actions=ct(table=5,zone=4)"),
            fm("table=5,priority=10,ip,actions=output:2"),
            fm("table=9,priority=10,arp,actions=controller"),
            fm("table=9,priority=0,actions=drop"),
        ];
        let r = analyze(&p, &flows);
        let f = |t: u8, prio: u16| {
            r.flows.iter().find(|f| f.table == t && f.priority == prio).unwrap_or_else(|| panic!("{t}/{prio}"))
        };
        assert_eq!(f(2, 10).recirculations, 2);
        assert!(f(2, 10).offloadable);
        assert_eq!(f(4, 10).recirculations, 4);
        assert_eq!(f(4, 10).reasons, vec!["too many recirculations (4, at most 3)".to_string()]);
        assert_eq!(f(5, 10).reasons, vec!["too many recirculations (4, at most 3)".to_string()]);
        // arp meets table 9's controller flow first and its drop flow never: blocked.
        assert_eq!(f(0, 5).reasons, vec!["continues into table 9 (controller is a slow-path action)".to_string()]);
        assert!(f(0, 10).offloadable);
        assert_eq!(r.tables.iter().find(|t| t.table == 9).map(|t| t.share.offloadable), Some(1));
    }
}
