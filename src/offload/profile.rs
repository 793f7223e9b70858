//! Capability profiles: what one offload target (the Linux kernel's TC flower classifier and its
//! actions, a ConnectX-class NIC behind it) can run, as data. The profiles shipped with shardflow
//! live in `src/offload/profiles/*.toml` (embedded at build time); an operator can load another
//! from a file. Every fact in a profile names its source (`source = "..."`); what a source does
//! not settle is marked `assumption = true` in the file.
//!
//! A profile judges [`Requirements`] (see [`Profile::judge`]): a field, action or rewrite the
//! profile does not list is not supported. The file format is checked when loading: unknown
//! fields, actions and keys are errors, so a typo cannot silently turn a capability off.

use super::requirement::{ActionReq, CtFlag, CtReq, MaskKind, MatchField, NatKind, Requirements};
use super::verdict::{Reason, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "tc-flower";

/// The profiles shipped with shardflow: (name, TOML text).
const BUILTIN: &[(&str, &str)] =
    &[("tc-flower", include_str!("profiles/tc-flower.toml")), ("connectx", include_str!("profiles/connectx.toml"))];

/// Every action kind a profile may name in `[actions.NAME]` (see [`ActionReq::kind`]); `ct` and
/// `set_field` have their own tables.
pub const ACTION_KINDS: &[&str] = &[
    "output",
    "output_in_port",
    "output_local",
    "output_multiple",
    "drop",
    "push_vlan",
    "pop_vlan",
    "push_mpls",
    "pop_mpls",
    "dec_ttl",
    "tunnel_encap",
    "tnl_push",
    "tnl_pop",
    "ct_clear",
    "recirc",
    "meter",
    "group",
    "hash",
    "sample",
    "clone",
    "truncate",
    "check_pkt_len",
    "controller",
    "learn",
    "fin_timeout",
    "userspace",
    "set_queue",
];

/// Why a profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile {name:?} (built in: {known}; or give a path to a .toml file)")]
    Unknown { name: String, known: String },
    #[error("cannot read profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("profile {name}: {source}")]
    Syntax { name: String, source: toml::de::Error },
    #[error("profile {name}: {what}")]
    Invalid { name: String, what: String },
}

/// How a field can be matched.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCap {
    #[serde(default = "yes")]
    pub matchable: bool,
    /// The widest mask the target takes (required when matchable).
    pub mask: Option<MaskKind>,
    #[serde(default)]
    pub why: Option<String>,
    pub source: String,
    #[serde(default)]
    pub assumption: bool,
}

/// How an action is handled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCap {
    pub supported: bool,
    /// For an unsupported action: why the packet cannot stay in hardware. `slow_path` (the
    /// packet goes up to ovs-vswitchd), `userspace_only` (ovs-vswitchd must do it), or
    /// `unsupported` (the default: the target cannot express it).
    #[serde(default)]
    pub class: ActionClass,
    #[serde(default)]
    pub why: Option<String>,
    pub source: String,
    #[serde(default)]
    pub assumption: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionClass {
    SlowPath,
    UserspaceOnly,
    #[default]
    Unsupported,
}

/// How a header field can be rewritten.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteCap {
    pub supported: bool,
    /// Whether a partial (masked) rewrite is possible too.
    #[serde(default)]
    pub masked: bool,
    pub source: String,
    #[serde(default)]
    pub assumption: bool,
}

/// Conntrack: the `ct` action and the `ct_state` match.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CtCaps {
    pub supported: bool,
    pub commit: bool,
    pub force: bool,
    pub nat: bool,
    /// Application-layer gateways (`alg=ftp`).
    pub alg: bool,
    pub set_mark: bool,
    pub set_label: bool,
    /// The highest zone number.
    pub max_zone: u16,
    /// How many different zones the target can tell apart at once (None: no limit known).
    #[serde(default)]
    pub max_distinct_zones: Option<u32>,
    /// `ct_state` flags matchable as set (`+est`).
    pub state_flags_set: Vec<CtFlag>,
    /// `ct_state` flags matchable as clear (`-new`).
    pub state_flags_clear: Vec<CtFlag>,
    pub source: String,
    /// Sources for single facts above, by key.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    #[serde(default)]
    pub assumptions: Vec<String>,
}

/// Limits on one hardware rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Recirculations (TC chains) one packet may take; None: no limit known.
    #[serde(default)]
    pub max_recirculations: Option<u32>,
    #[serde(default)]
    pub max_recirculations_source: Option<String>,
    /// Actions in one rule; None: no limit known.
    #[serde(default)]
    pub max_actions: Option<usize>,
    #[serde(default)]
    pub max_actions_source: Option<String>,
    #[serde(default)]
    pub assumptions: Vec<String>,
}

/// A capability profile (see the module doc).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// The profile's general sources (documents the whole file leans on).
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    pub ct: CtCaps,
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, FieldCap>,
    pub actions: BTreeMap<String, ActionCap>,
    #[serde(default)]
    pub rewrite: BTreeMap<String, RewriteCap>,
    /// The source for "a field not in `[rewrite]` cannot be rewritten".
    #[serde(default)]
    pub rewrite_unlisted_source: Option<String>,
}

fn yes() -> bool {
    true
}

impl Profile {
    /// The names of the built-in profiles.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let Some((n, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
            return Err(ProfileError::Unknown { name: name.to_string(), known: Profile::builtin_names().join(", ") });
        };
        Profile::from_toml(n, text)
    }

    /// The default profile ([`DEFAULT_PROFILE`]).
    pub fn default_profile() -> Profile {
        // The embedded files are checked by this crate's tests; a broken one is a build defect.
        #[allow(clippy::expect_used)]
        Profile::builtin(DEFAULT_PROFILE).expect("the embedded default profile parses")
    }

    /// A built-in profile by name, or else a profile file at that path (the CLI's `--profile`).
    pub fn named_or_file(name_or_path: &str) -> Result<Profile, ProfileError> {
        match Profile::builtin(name_or_path) {
            Ok(p) => Ok(p),
            Err(e) => {
                let path = Path::new(name_or_path);
                if path.extension().is_some_and(|x| x == "toml") || path.exists() {
                    Profile::load(path)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProfileError::Read { path: path.display().to_string(), source })?;
        Profile::from_toml(&path.display().to_string(), &text)
    }

    /// Parses and checks a profile's TOML text (`origin` names it in errors).
    pub fn from_toml(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let p: Profile =
            toml::from_str(text).map_err(|source| ProfileError::Syntax { name: origin.to_string(), source })?;
        p.validate().map_err(|what| ProfileError::Invalid { name: origin.to_string(), what })?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, cap) in &self.matches {
            if MatchField::from_name(name).is_none() {
                return Err(format!("[match.{name}]: unknown field"));
            }
            if cap.matchable && cap.mask.is_none() {
                return Err(format!("[match.{name}]: a matchable field needs `mask`"));
            }
        }
        for name in self.rewrite.keys() {
            if MatchField::from_name(name).is_none() {
                return Err(format!("[rewrite.{name}]: unknown field"));
            }
        }
        for name in self.actions.keys() {
            if !ACTION_KINDS.contains(&name.as_str()) {
                return Err(format!("[actions.{name}]: unknown action (known: {})", ACTION_KINDS.join(", ")));
            }
        }
        Ok(())
    }

    /// Judges what a flow asks of the datapath: every reason it cannot go to hardware.
    pub fn judge(&self, req: &Requirements) -> Verdict {
        let mut reasons: Vec<Reason> = Vec::new();
        let mut push = |r: Reason| {
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        };
        for m in &req.matches {
            match self.matches.get(m.field.name()) {
                Some(cap) if cap.matchable => {
                    let allowed = cap.mask.unwrap_or(MaskKind::Exact);
                    if m.field != MatchField::CtState && m.mask > allowed {
                        push(Reason::MaskUnsupported { field: m.field, mask: m.mask, allowed });
                    }
                }
                _ => push(Reason::FieldNotMatchable { field: m.field }),
            }
            if m.field == MatchField::CtState {
                for f in &m.flags_on {
                    if !self.ct.state_flags_set.contains(f) {
                        push(Reason::CtStateFlag { flag: *f, set: true });
                    }
                }
                for f in &m.flags_off {
                    if !self.ct.state_flags_clear.contains(f) {
                        push(Reason::CtStateFlag { flag: *f, set: false });
                    }
                }
            }
        }
        for a in &req.actions {
            match a {
                ActionReq::SetField { field, masked } => match self.rewrite.get(field.name()) {
                    Some(cap) if cap.supported && (!masked || cap.masked) => {}
                    Some(cap) if cap.supported => push(Reason::RewriteUnsupported { field: *field, masked: true }),
                    _ => push(Reason::RewriteUnsupported { field: *field, masked: false }),
                },
                ActionReq::Ct(ct) => self.judge_ct(ct, &mut push),
                other => {
                    let kind = other.kind();
                    match self.actions.get(kind) {
                        Some(cap) if cap.supported => {}
                        Some(cap) => push(match cap.class {
                            ActionClass::SlowPath => Reason::SlowPath { action: kind.to_string() },
                            ActionClass::UserspaceOnly => Reason::UserspaceOnly { action: kind.to_string() },
                            ActionClass::Unsupported => Reason::ActionUnsupported { action: kind.to_string() },
                        }),
                        None => push(Reason::ActionUnsupported { action: kind.to_string() }),
                    }
                }
            }
        }
        for z in &req.ct_zones {
            if *z > self.ct.max_zone {
                push(Reason::CtZoneTooHigh { zone: *z, max: self.ct.max_zone });
            }
        }
        if let Some(max) = self.limits.max_recirculations {
            if req.recirculations > max {
                push(Reason::TooManyRecirculations { count: req.recirculations, max });
            }
        }
        if let Some(max) = self.limits.max_actions {
            if req.actions.len() > max {
                push(Reason::TooManyActions { count: req.actions.len(), max });
            }
        }
        Verdict::from_reasons(reasons)
    }

    fn judge_ct(&self, ct: &CtReq, push: &mut impl FnMut(Reason)) {
        let c = &self.ct;
        if !c.supported {
            push(Reason::ActionUnsupported { action: "ct".into() });
            return;
        }
        let mut feature = |ok: bool, name: &str| {
            if !ok {
                push(Reason::CtFeature { feature: name.to_string() });
            }
        };
        feature(!ct.commit || c.commit, "commit");
        feature(!ct.force || c.force, "force");
        feature(ct.nat.is_none() || c.nat, "nat");
        feature(ct.alg.is_none() || c.alg, "alg");
        feature(!ct.set_mark || c.set_mark, "mark");
        feature(!ct.set_label || c.set_label, "label");
        if let Some(z) = ct.zone.filter(|z| *z > c.max_zone) {
            push(Reason::CtZoneTooHigh { zone: z, max: c.max_zone });
        }
    }

    /// The source the profile cites for the fact behind a reason.
    pub fn source_for(&self, reason: &Reason) -> Option<&str> {
        let s = match reason {
            Reason::SlowPath { action } | Reason::UserspaceOnly { action } | Reason::ActionUnsupported { action } => {
                if action == "ct" {
                    return Some(&self.ct.source);
                }
                &self.actions.get(action)?.source
            }
            Reason::FieldNotMatchable { field } | Reason::MaskUnsupported { field, .. } => {
                &self.matches.get(field.name())?.source
            }
            Reason::RewriteUnsupported { field, .. } => match self.rewrite.get(field.name()) {
                Some(r) => &r.source,
                None => self.rewrite_unlisted_source.as_ref()?,
            },
            Reason::CtStateFlag { .. } => self.ct.sources.get("state_flags").unwrap_or(&self.ct.source),
            Reason::CtFeature { feature } => self.ct.sources.get(feature).unwrap_or(&self.ct.source),
            Reason::CtZoneTooHigh { .. } => self.ct.sources.get("max_zone").unwrap_or(&self.ct.source),
            Reason::TooManyRecirculations { .. } => self.limits.max_recirculations_source.as_ref()?,
            Reason::TooManyActions { .. } => self.limits.max_actions_source.as_ref()?,
            Reason::ContinuesInto { .. } => return None,
        };
        Some(s.as_str())
    }
}

/// The NAT kinds as profiles and reasons name them.
impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Reverse => "nat",
            NatKind::Src => "snat",
            NatKind::Dst => "dnat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::requirement::{MatchReq, OutputKind};

    #[test]
    fn builtin_profiles_load_and_cite_every_fact() {
        for name in Profile::builtin_names() {
            let p = Profile::builtin(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name, name);
            for (k, m) in &p.matches {
                assert!(!m.source.trim().is_empty(), "{name}: match.{k} has no source");
            }
            for (k, a) in &p.actions {
                assert!(!a.source.trim().is_empty(), "{name}: actions.{k} has no source");
            }
            for (k, r) in &p.rewrite {
                assert!(!r.source.trim().is_empty(), "{name}: rewrite.{k} has no source");
            }
            assert!(p.rewrite_unlisted_source.as_ref().is_some_and(|s| !s.trim().is_empty()), "{name}");
            // Every field and every action kind is settled one way or the other.
            for f in MatchField::ALL {
                assert!(p.matches.contains_key(f.name()), "{name}: match.{} missing", f.name());
            }
            for k in ACTION_KINDS {
                assert!(p.actions.contains_key(*k), "{name}: actions.{k} missing");
            }
        }
        assert_eq!(Profile::default_profile().name, DEFAULT_PROFILE);
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = Profile::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("unknown profile \"nope\"") && e.contains("tc-flower"), "{e}");
        let text = include_str!("profiles/tc-flower.toml").replace("[match.eth_src]", "[match.eth_sorc]");
        let e = Profile::from_toml("x", &text).unwrap_err().to_string();
        assert!(e.contains("eth_sorc") && e.contains("unknown field"), "{e}");
        let text = include_str!("profiles/tc-flower.toml").replace("[actions.hash]", "[actions.hasj]");
        let e = Profile::from_toml("x", &text).unwrap_err().to_string();
        assert!(e.contains("hasj"), "{e}");
        let e = Profile::from_toml("x", "name = 1").unwrap_err().to_string();
        assert!(e.starts_with("profile x:"), "{e}");
        let e = Profile::named_or_file("/nonexistent/p.toml").unwrap_err().to_string();
        assert!(e.contains("cannot read profile /nonexistent/p.toml"), "{e}");
    }

    #[test]
    fn judge_gives_every_reason() {
        let p = Profile::builtin("connectx").unwrap_or_else(|e| panic!("{e}"));
        let req = Requirements {
            matches: vec![
                MatchReq::new(MatchField::ArpTpa, MaskKind::Exact),
                MatchReq::new(MatchField::CtZone, MaskKind::Arbitrary),
                MatchReq::ct_state(vec![CtFlag::New, CtFlag::Trk], vec![CtFlag::Inv]),
            ],
            actions: vec![ActionReq::Controller, ActionReq::FinTimeout, ActionReq::Output { to: OutputKind::Port }],
            recirculations: 4,
            ct_zones: vec![7],
            notes: vec![],
        };
        let v = p.judge(&req);
        assert!(!v.offloadable);
        assert_eq!(
            v.line(),
            "not offloadable: field arp_tpa not matchable; mask on ct_zone unsupported (arbitrary, exact at most); \
             ct_state +new not matchable; controller is a slow-path action; fin_timeout is userspace-only; \
             too many recirculations (4, at most 3)"
        );
        assert!(p.source_for(&v.reasons[0]).is_some_and(|s| s.contains("FLOW_DISSECTOR_KEY_ARP")));
        let ok = Requirements { actions: vec![ActionReq::Drop], ..Default::default() };
        assert_eq!(p.judge(&ok).line(), "offloadable");
    }

    #[test]
    fn ct_parts_and_zones_are_judged() {
        let text = include_str!("profiles/tc-flower.toml")
            .replace("max_zone = 65535", "max_zone = 100")
            .replace("nat = true\nalg = false", "nat = false\nalg = false");
        let p = Profile::from_toml("small", &text).unwrap_or_else(|e| panic!("{e}"));
        let ct = CtReq { zone: Some(200), commit: true, nat: Some(NatKind::Dst), alg: Some(21), ..Default::default() };
        let req = Requirements { actions: vec![ActionReq::Ct(ct)], ct_zones: vec![200], ..Default::default() };
        assert_eq!(
            p.judge(&req).line(),
            "not offloadable: ct nat unsupported; ct alg unsupported; ct zone 200 above 100"
        );
    }
}
