//! The datapath view: `ovs-appctl dpctl/dump-flows [-m]` text as structured flows.
//!
//! OpenFlow flows are what shardflow installs; the datapath flows (megaflows) are what
//! ovs-vswitchd actually runs per packet after translating the OpenFlow tables, and they are
//! what OVS hands to TC flower and from there to a NIC. Operators look at them with
//! `ovs-appctl dpctl/dump-flows -m` (`type=offloaded` for the ones in hardware); this module
//! reads that text so each flow can be explained against a capability profile.
//!
//! The grammar follows OVS's printers (`lib/dpctl.c` `format_dpif_flow`, `lib/odp-util.c`
//! `odp_flow_format`, `format_odp_key_attr__`, `format_odp_action`):
//!
//! ```text
//! [ufid:UUID, ]KEYS, packets:N, bytes:N, used:(never|S.sssS)[, flags:F]
//!     [, offloaded:(yes|partial)][, dp:LAYER], actions:ACTIONS[, dp-extra-info:X]
//! ```
//!
//! KEYS and ACTIONS are comma lists (no space) of attributes: `name`, `name=value[/mask]`,
//! `name(value[/mask])`, `name(attr,attr,...)`, and the two unnamed groups OVS prints, geneve's
//! `{class=..,type=..,len=..,0x1/0xff}` and GRE's `((flags=..,proto=..),key=..)`. One generic,
//! lossless tree ([`DpKey`]) holds all of them: printing a parsed flow gives back its line (the
//! tests check this on real captures), so nothing OVS said is dropped on the way to the
//! explanation. Meaning (which action is an output, where the zone of a `ct` is) is read from
//! the tree by [`DpAction::kind`] and [`lower`], which turns a flow into the [`Requirements`]
//! a capability profile judges ([`explain`]).
//!
//! Bad input is an error naming the line and column ([`ParseError`]); nothing here panics on
//! any input, recursion is bounded ([`MAX_DEPTH`]) and so is a line ([`MAX_LINE`]).

mod lower;
mod parse;

use std::fmt;

use super::profile::Profile;
use super::requirement::Requirements;
use super::verdict::Verdict;

pub use lower::{chain_depths, datapath_field, lower, lower_dump, lower_first_pass, RecircLinks, DP_FIELDS};
pub use parse::{parse_dump, parse_flow, parse_lines, ErrorKind, ParseError, MAX_DEPTH, MAX_LINE};

/// One datapath flow, as one line of `dpctl/dump-flows` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct DpFlow {
    /// The flow's unique id (`ufid:...`, printed with `-m`).
    pub ufid: Option<String>,
    /// Whether (and how much of) the flow runs in hardware; see [`DpFlow::flow_type`].
    pub offloaded: Offloaded,
    /// The layer holding the flow (`dp:ovs`, `dp:tc`, `dp:dpdk`; printed with `-m`).
    pub dp: Option<String>,
    /// Match keys, in OVS's order.
    pub keys: Vec<DpKey>,
    /// Actions, in order (an empty action list prints as `drop`).
    pub actions: Vec<DpAction>,
    pub stats: DpStats,
    /// `dp-extra-info:...` (the userspace datapath's miniflow bits), verbatim.
    pub dp_extra_info: Option<String>,
    /// `label:value` parts this parser does not know (a newer OVS), kept in order, verbatim.
    pub extra: Vec<(String, String)>,
}

/// `offloaded:` of a `-m` dump: absent, `yes` (fully in hardware) or `partial` (the userspace
/// datapath's partial offload: the match in the NIC, the actions in OVS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offloaded {
    #[default]
    No,
    Yes,
    Partial,
}

/// Packet and byte counters, last use and TCP flags seen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DpStats {
    pub packets: u64,
    pub bytes: u64,
    /// Seconds since the flow was last used; `None` for `used:never`.
    pub used: Option<f64>,
    /// `flags:` (TCP flags seen, OVS's letters: `S`, `F`, `R`, `P`, `.` for ACK, ...).
    pub tcp_flags: Option<String>,
}

/// How an attribute was written; kept so a parsed flow prints back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `name` (a flag such as `commit`, an output port, `drop`).
    Bare,
    /// `name=value[/mask]`.
    Assign,
    /// `name(value[/mask])` or `name(attr,...)` or `name()`.
    Call,
    /// `{attr,...}`: a geneve option.
    Braces,
    /// `(attr,...)` with no name: GRE's header in `tnl_push`.
    Parens,
}

/// One attribute of a key or an action: a generic tree for OVS's `name(...)` syntax.
///
/// `ipv4(src=10.0.0.0/255.0.0.0,proto=6)` is `ipv4` with nested `src` (value `10.0.0.0`, mask
/// `255.0.0.0`) and `proto` (value `6`, no mask: exact); `recirc_id(0x1)` is `recirc_id` with
/// value `0x1`; `ct_state(0x21/0x3f)` has value and mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpKey {
    pub name: String,
    pub value: Option<String>,
    pub mask: Option<String>,
    pub nested: Vec<DpKey>,
    pub form: Form,
}

/// One action: the same tree as a key (`ct(commit,zone=1,nat(dst=10.0.0.5:8080))` is `ct` with
/// nested `commit`, `zone=1` and `nat(...)`), read through [`DpAction::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpAction {
    pub name: String,
    pub value: Option<String>,
    pub args: Vec<DpKey>,
    form: Form,
    mask: Option<String>,
}

/// What an action does, as far as offload is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpActionKind {
    /// A port number or name.
    Output,
    Drop,
    /// `ct(...)`: conntrack, maybe with commit, zone, mark, label, helper, nat.
    Ct,
    CtClear,
    /// `recirc(ID)`: back through the datapath with a new recirculation id.
    Recirc,
    /// `set(...)`: a header or tunnel rewrite (masked or not).
    Set,
    PushVlan,
    PopVlan,
    PushMpls,
    PopMpls,
    PushEth,
    PopEth,
    /// `userspace(...)`: to ovs-vswitchd (controller, slow path, sFlow, IPFIX).
    Userspace,
    /// `clone(...)`: nested actions on a copy.
    Clone,
    /// `sample(...)`: nested actions with a probability.
    Sample,
    Meter,
    /// `tnl_push(...)`: userspace tunnel encapsulation.
    TunnelPush,
    /// `tnl_pop(PORT)`: userspace tunnel decapsulation.
    TunnelPop,
    Hash,
    Trunc,
    CheckPktLen,
    DecTtl,
    /// Anything else OVS prints (`lb_output`, `push_nsh`, `psample`, `actionN(...)`).
    Other,
}

// === explanation ===

/// One datapath flow judged under a profile.
#[derive(Debug, Clone)]
pub struct Explained<'a> {
    pub flow: &'a DpFlow,
    pub requirements: Requirements,
    pub verdict: Verdict,
}

impl fmt::Display for Explained<'_> {
    /// `offloadable` or `not offloadable: R1; R2` (as `shardflow offload check` prints), then
    /// ` | type=TYPE | ` and the flow's short form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} | type={} | {}", self.verdict.line(), self.flow.flow_type(), self.flow.short())
    }
}

/// Judges every flow of a dump under `profile`, recirculation depth taken along the dump's
/// `recirc(N)` chain ([`lower_dump`]). Offloaded flows are judged too: a profile that refuses
/// a flow the NIC runs is worth seeing.
pub fn explain<'a>(flows: &'a [DpFlow], profile: &Profile) -> Vec<Explained<'a>> {
    flows
        .iter()
        .zip(lower_dump(flows))
        .map(|(flow, requirements)| {
            let verdict = profile.judge(&requirements);
            Explained { flow, requirements, verdict }
        })
        .collect()
}

/// One line of a dump judged, without the parsed flow (what a long dump keeps per flow).
#[derive(Debug, Clone)]
pub struct Judged {
    /// The line number in the text.
    pub line: usize,
    pub flow_type: String,
    pub offloaded: Offloaded,
    /// [`DpFlow::short`].
    pub short: String,
    pub requirements: Requirements,
    pub verdict: Verdict,
}

impl fmt::Display for Judged {
    /// As [`Explained`] prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} | type={} | {}", self.verdict.line(), self.flow_type, self.short)
    }
}

/// Parses and judges a whole dump keeping only a few hundred bytes per flow (a parsed flow is
/// ten times its line): each line is lowered as it is parsed and dropped, the recirculation
/// chain is completed at the end. Bad lines go to `on_error` and are left out.
pub fn judge_dump(text: &str, profile: &Profile, mut on_error: impl FnMut(ParseError)) -> Vec<Judged> {
    let mut judged = Vec::new();
    let mut links = Vec::new();
    for (line, r) in parse_lines(text) {
        match r {
            Ok(flow) => {
                links.push(RecircLinks::of(&flow));
                judged.push(Judged {
                    line,
                    flow_type: flow.flow_type().to_string(),
                    offloaded: flow.offloaded,
                    short: flow.short(),
                    requirements: lower_first_pass(&flow),
                    verdict: Verdict::from_reasons(Vec::new()),
                });
            }
            Err(e) => on_error(e),
        }
    }
    for (j, depth) in judged.iter_mut().zip(chain_depths(&links)) {
        // (The `recirc_id` match itself is in the requirements already, from the key.)
        j.requirements.recirculations = j.requirements.recirculations.saturating_add(depth);
        j.verdict = profile.judge(&j.requirements);
    }
    judged
}

// === impl DpFlow ===

impl DpFlow {
    /// `offloaded`, `partial`, or the layer's name (`ovs`, or `tc` for a flow in TC's software
    /// path, not in hardware); `ovs` when the dump did not say (no `-m`).
    pub fn flow_type(&self) -> &str {
        match self.offloaded {
            Offloaded::Yes => "offloaded",
            Offloaded::Partial => "partial",
            Offloaded::No => self.dp.as_deref().unwrap_or("ovs"),
        }
    }

    /// The key named `name` (top level), if present.
    pub fn key(&self, name: &str) -> Option<&DpKey> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// The flow as `dpctl/dump-flows` prints it without `-m`: wildcarded keys and fields left out,
    /// then ` actions:` and the actions. What an operator recognises at a glance.
    pub fn short(&self) -> String {
        let keys: Vec<String> = self.keys.iter().filter_map(DpKey::short).collect();
        let keys = if keys.is_empty() { "<empty>".to_string() } else { keys.join(",") };
        format!("{keys} actions:{}", join_actions(&self.actions))
    }
}

impl fmt::Display for DpFlow {
    /// The line `dpctl/dump-flows` printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.ufid {
            write!(f, "ufid:{u}, ")?;
        }
        write!(f, "{}", join_keys(&self.keys))?;
        write!(f, ", packets:{}, bytes:{}, used:", self.stats.packets, self.stats.bytes)?;
        match self.stats.used {
            Some(s) => write!(f, "{s:.3}s")?,
            None => f.write_str("never")?,
        }
        if let Some(fl) = &self.stats.tcp_flags {
            write!(f, ", flags:{fl}")?;
        }
        match self.offloaded {
            Offloaded::Yes => f.write_str(", offloaded:yes")?,
            Offloaded::Partial => f.write_str(", offloaded:partial")?,
            Offloaded::No => {}
        }
        if let Some(dp) = &self.dp {
            write!(f, ", dp:{dp}")?;
        }
        for (k, v) in &self.extra {
            write!(f, ", {k}:{v}")?;
        }
        write!(f, ", actions:{}", join_actions(&self.actions))?;
        if let Some(x) = &self.dp_extra_info {
            write!(f, ", dp-extra-info:{x}")?;
        }
        Ok(())
    }
}

fn join_keys(keys: &[DpKey]) -> String {
    let mut s = String::new();
    for (i, k) in keys.iter().enumerate() {
        // Geneve options follow each other without a comma: `{..}{..}`.
        if i > 0 && !(k.form == Form::Braces && keys[i - 1].form == Form::Braces) {
            s.push(',');
        }
        s.push_str(&k.to_string());
    }
    s
}

fn join_actions(actions: &[DpAction]) -> String {
    if actions.is_empty() {
        return "drop".to_string();
    }
    actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

// === impl DpKey ===

impl DpKey {
    pub(crate) fn bare(name: &str) -> DpKey {
        DpKey { name: name.to_string(), value: None, mask: None, nested: Vec::new(), form: Form::Bare }
    }

    /// The nested attribute named `name`.
    pub fn get(&self, name: &str) -> Option<&DpKey> {
        self.nested.iter().find(|k| k.name == name)
    }

    /// True when the attribute matches nothing: its mask is all zero bits (`0`, `0x0`,
    /// `0.0.0.0`, `00:00:00:00:00:00`, `::`), or every nested field is wildcarded.
    pub fn is_wildcard(&self) -> bool {
        match (&self.mask, self.nested.is_empty()) {
            (Some(m), _) => mask_is_zero(m),
            (None, false) => self.form == Form::Call && self.nested.iter().all(DpKey::is_wildcard),
            (None, true) => false,
        }
    }

    /// True when the value is matched under a printed mask that is not all zero (OVS prints no
    /// mask for an exact match, and a zero mask for a wildcard): a partial match. Whether the
    /// mask is a prefix or arbitrary is the lowering's business (`lower::mask_kind`).
    pub fn is_masked(&self) -> bool {
        self.mask.as_deref().is_some_and(|m| !mask_is_zero(m))
    }

    /// The attribute without its wildcarded parts (`None` when nothing is left).
    fn short(&self) -> Option<String> {
        if self.is_wildcard() {
            return None;
        }
        if self.form == Form::Call && !self.nested.is_empty() {
            let inner: Vec<DpKey> = self.nested.iter().filter(|k| !k.is_wildcard()).cloned().collect();
            let k = DpKey { nested: inner, ..self.clone() };
            return Some(k.to_string());
        }
        Some(self.to_string())
    }
}

/// True for a mask with no bit set, whatever its notation.
pub(crate) fn mask_is_zero(m: &str) -> bool {
    let m = m.strip_prefix("0x").unwrap_or(m);
    !m.is_empty() && m.chars().all(|c| matches!(c, '0' | '.' | ':'))
}

impl fmt::Display for DpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if let Some(v) = &self.value {
                f.write_str(v)?;
            }
            if let Some(m) = &self.mask {
                write!(f, "/{m}")?;
            }
            Ok(())
        };
        match self.form {
            Form::Bare => f.write_str(&self.name),
            Form::Assign => {
                write!(f, "{}=", self.name)?;
                value(f)
            }
            Form::Call => {
                write!(f, "{}(", self.name)?;
                if self.nested.is_empty() {
                    value(f)?;
                } else {
                    f.write_str(&join_keys(&self.nested))?;
                }
                f.write_str(")")
            }
            Form::Braces => write!(f, "{{{}}}", join_keys(&self.nested)),
            Form::Parens => write!(f, "({})", join_keys(&self.nested)),
        }
    }
}

// === impl DpAction ===

impl From<DpKey> for DpAction {
    fn from(k: DpKey) -> DpAction {
        DpAction { name: k.name, value: k.value, args: k.nested, form: k.form, mask: k.mask }
    }
}

impl DpAction {
    fn as_key(&self) -> DpKey {
        DpKey {
            name: self.name.clone(),
            value: self.value.clone(),
            mask: self.mask.clone(),
            nested: self.args.clone(),
            form: self.form,
        }
    }

    /// The argument named `name` (`zone` of `ct(...)`, `nat`, `controller` of `userspace`).
    pub fn arg(&self, name: &str) -> Option<&DpKey> {
        self.args.iter().find(|k| k.name == name)
    }

    pub fn kind(&self) -> DpActionKind {
        use DpActionKind as K;
        let bare = self.form == Form::Bare;
        match self.name.as_str() {
            "drop" if bare => K::Drop,
            "ct" => K::Ct,
            "ct_clear" => K::CtClear,
            "recirc" => K::Recirc,
            "set" => K::Set,
            "push_vlan" => K::PushVlan,
            "pop_vlan" => K::PopVlan,
            "push_mpls" | "add_mpls" => K::PushMpls,
            "pop_mpls" => K::PopMpls,
            "push_eth" => K::PushEth,
            "pop_eth" => K::PopEth,
            "userspace" => K::Userspace,
            "clone" => K::Clone,
            "sample" => K::Sample,
            "meter" => K::Meter,
            "tnl_push" => K::TunnelPush,
            "tnl_pop" => K::TunnelPop,
            "hash" => K::Hash,
            "trunc" => K::Trunc,
            "check_pkt_len" => K::CheckPktLen,
            "dec_ttl" => K::DecTtl,
            "lb_output" | "push_nsh" | "pop_nsh" | "psample" => K::Other,
            n if bare && is_port(n) => K::Output,
            _ => K::Other,
        }
    }

    /// The actions nested in this one: `clone(...)`'s, `sample(...,actions(...))`'s,
    /// `check_pkt_len(size=N,gt(...),le(...))`'s (both branches), `dec_ttl(le_1(...))`'s.
    pub fn sub_actions(&self) -> Vec<DpAction> {
        fn list(k: &DpKey) -> Vec<DpAction> {
            if k.nested.is_empty() {
                // `clone(2)`: a single action printed as the value.
                match &k.value {
                    Some(v) => vec![DpAction::from(DpKey::bare(v))],
                    None => Vec::new(),
                }
            } else {
                k.nested.iter().cloned().map(DpAction::from).collect()
            }
        }
        match self.kind() {
            DpActionKind::Clone => list(&self.as_key()),
            DpActionKind::Sample => self.arg("actions").map(list).unwrap_or_default(),
            DpActionKind::CheckPktLen => {
                self.args.iter().filter(|a| a.name == "gt" || a.name == "le").flat_map(list).collect()
            }
            DpActionKind::DecTtl => self.arg("le_1").map(list).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// A bare action word that is an output port: a number or a port name (anything that is not
/// one of the datapath's bare action words).
fn is_port(name: &str) -> bool {
    !name.is_empty()
        && !matches!(name, "drop" | "pop_vlan" | "pop_eth" | "ct_clear" | "ct" | "<empty>")
        && !name.contains(' ')
}

impl fmt::Display for DpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_key().fmt(f)
    }
}

#[cfg(test)]
mod tests;
