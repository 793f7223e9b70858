//! Actions checked against the match they run under, as Open vSwitch's `ofpacts_check` does
//! (`lib/ofp-actions.c`, `learn_check` in `lib/learn.c`, `mf_check_src`/`mf_check_dst` and
//! `mf_are_prereqs_ok` in `lib/meta-flow.c`), so that a flow OVS would refuse is refused at our
//! edge (CLI, REST, FlowManager) with OVS's reason instead of by the switch, later.
//!
//! The check walks the actions in order over a small model of the packet as the actions see it
//! (`FlowView`): the match's values, with the Ethertype, IP protocol and VLAN tags updated by the
//! actions that change them (push/pop MPLS, push/pop VLAN, a set_field of vlan_tci). Nested
//! actions (`clone`, `ct(exec(...))`, `write_actions`) are checked over the same model, and a
//! `learn`'s specs over the match of the flow it would learn. Two kinds of failure, as in OVS:
//! - a hard error (OVS returns it from `ofpacts_check`): a set_field or a field read or written
//!   without its prerequisites, two VLAN tags pushed on two, a bad port, goto to an earlier table;
//! - an *inconsistency* (OVS's `inconsistent_match`, which leaves only OpenFlow 1.0 usable):
//!   `dec_ttl` on a flow that is not IP, `pop_vlan` without a VLAN, `fin_timeout` without TCP...
//!   OpenFlow 1.3 cannot carry such a flow, and OVS answers OFPBAC_MATCH_INCONSISTENT (from
//!   `ofpacts_check_consistency`); so do we. As in OVS, an inconsistency inside `write_actions`
//!   does not count (an action set's consistency cannot be checked), but hard errors there do.

use std::fmt;

use super::action::ct::{needs_commit, NatRange, ALG_FTP, ALG_TFTP, CT_COMMIT, NEEDS_COMMIT};
use super::action::learn::{Learn, LearnDst, LearnSrc};
use super::action::{port, Action};
use super::error::ErrorCode;
use super::field::{Field, Prereq, Subfield};
use super::flow::FlowMod;
use super::instruction::Instruction;
use super::oxm::Match;

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_RARP: u16 = 0x8035;
const ETH_TYPE_MPLS: u16 = 0x8847;
const ETH_TYPE_MPLS_MCAST: u16 = 0x8848;
const VLAN_CFI: u128 = 0x1000;
/// `FLOW_NW_FRAG_LATER`: a later fragment has no L4 header.
const NW_FRAG_LATER: u128 = 2;
/// conntrack state bits (`CS_*`).
const CS_NEW: u128 = 0x01;
const CS_ESTABLISHED: u128 = 0x02;
const CS_RELATED: u128 = 0x04;
const CS_REPLY_DIR: u128 = 0x08;
const CS_INVALID: u128 = 0x10;
const CS_TRACKED: u128 = 0x20;
const CS_SRC_NAT: u128 = 0x40;
const CS_DST_NAT: u128 = 0x80;
/// `OFPM13_MAX`: the last meter id a flow may name.
const OFPM13_MAX: u32 = 0xffff_0000;

/// Why a flow's actions do not fit its match, with the error OVS answers such a flow with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CheckError {
    pub code: ErrorCode,
    /// OVS's log message for it, in our words (`set_field ip_dst lacks correct prerequisites`).
    pub detail: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "actions are invalid with specified match: {} ({})", self.detail, self.code)
    }
}

impl CheckError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        CheckError { code, detail: detail.into() }
    }
}

// === entry points ===

/// Checks a flow_mod's instructions against its match and table, as OVS does before it accepts
/// one (`ofpacts_check_consistency` for OpenFlow 1.3). A delete carries no actions and passes.
pub fn check_flow_mod(fm: &FlowMod) -> Result<(), CheckError> {
    check_instructions(&fm.r#match, fm.table_id, &fm.instructions)
}

/// Checks instructions for a flow in `table_id` (255: unknown, no goto check) matching `m`.
pub fn check_instructions(m: &Match, table_id: u8, instructions: &[Instruction]) -> Result<(), CheckError> {
    conjunction_alone(instructions)?;
    let mut cx = Checker { flow: FlowView::from_match(m), inconsistent: None };
    for i in instructions {
        match i {
            // One list in OVS: what apply-actions change, write-actions see.
            Instruction::ApplyActions(a) => a.iter().try_for_each(|a| cx.action(a))?,
            Instruction::WriteActions(a) => {
                // OVS checks an action set on a copy: its inconsistencies do not count.
                let mut set = Checker { flow: cx.flow.clone(), inconsistent: None };
                set.actions(a)?;
            }
            Instruction::GotoTable(t) => {
                if table_id != 255 && *t <= table_id {
                    return Err(CheckError::new(
                        ErrorCode::BAD_INSTRUCTION_BAD_TABLE_ID,
                        format!("goto_table:{t} from table {table_id} (only later tables)"),
                    ));
                }
            }
            Instruction::Meter(id) => {
                if *id == 0 || *id > OFPM13_MAX {
                    return Err(CheckError::new(
                        ErrorCode::METER_MOD_FAILED_INVALID_METER,
                        format!("meter:{id} is not a valid meter id"),
                    ));
                }
            }
            Instruction::ClearActions | Instruction::WriteMetadata { .. } | Instruction::Unknown { .. } => {}
        }
    }
    cx.finish()
}

/// OVS `ofpacts_verify`: a flow with `conjunction` may have nothing else but `note`.
fn conjunction_alone(instructions: &[Instruction]) -> Result<(), CheckError> {
    let is_conj = |a: &Action| matches!(a, Action::Conjunction(_));
    let has_conj = instructions.iter().any(|i| matches!(i, Instruction::ApplyActions(a) if a.iter().any(is_conj)));
    if !has_conj {
        return Ok(());
    }
    let other = instructions.iter().find_map(|i| match i {
        Instruction::ApplyActions(a) => {
            a.iter().find(|a| !matches!(a, Action::Conjunction(_) | Action::Note(_))).map(|a| format!("{a:?}"))
        }
        other => Some(format!("{other:?}")),
    });
    match other {
        None => Ok(()),
        Some(what) => Err(CheckError::new(
            ErrorCode::NX_BAD_ACTION_BAD_CONJUNCTION,
            format!(
                "\"conjunction\" actions may be used along with \"note\" but not any other kind of action (here {})",
                short(&what)
            ),
        )),
    }
}

/// The variant name of a `Debug` rendering (`DecTtl`, `Output`), for messages.
fn short(debug: &str) -> &str {
    debug.split(['(', ' ', '{']).next().unwrap_or(debug)
}

/// Checks an action list (apply-actions) against `m`.
pub fn check_actions(m: &Match, actions: &[Action]) -> Result<(), CheckError> {
    let mut cx = Checker { flow: FlowView::from_match(m), inconsistent: None };
    cx.actions(actions)?;
    cx.finish()
}

// === the packet as the actions see it ===

/// The fields of OVS's `struct flow` the checks read: each matched field's value (ANDed with its
/// mask; 0 when not matched, as in OVS), and the two VLAN headers' presence. Actions update it.
#[derive(Debug, Clone, Default)]
struct FlowView {
    /// (field, value & mask, mask).
    fields: Vec<(Field, u128, u128)>,
    /// `vlans[i].tci & VLAN_CFI` for the outer and inner tag.
    vlans: [bool; 2],
}

impl FlowView {
    fn from_match(m: &Match) -> FlowView {
        let mut v = FlowView::default();
        for e in &m.entries {
            let ones = all_ones(e.field);
            let mask = e.mask.map(|m| m.to_u128()).unwrap_or(ones);
            v.fields.push((e.field, e.value.to_u128() & mask, mask));
        }
        v.vlans[0] = v.tci_present();
        v
    }

    fn get(&self, f: Field) -> u128 {
        self.fields.iter().find(|(g, ..)| *g == f).map(|(_, v, _)| *v).unwrap_or(0)
    }

    fn mask(&self, f: Field) -> u128 {
        self.fields.iter().find(|(g, ..)| *g == f).map(|(.., m)| *m).unwrap_or(0)
    }

    /// Sets a field's value in the flow (OVS changes `flow`, never the wildcards).
    fn put(&mut self, f: Field, value: u128) {
        match self.fields.iter_mut().find(|(g, ..)| *g == f) {
            Some(e) => e.1 = value,
            None => self.fields.push((f, value, 0)),
        }
    }

    /// Writes `value` into the bits of `sf` and marks them matched (`mf_write_subfield_value`
    /// into a learned flow's match).
    fn write_subfield(&mut self, sf: &Subfield, value: u128) {
        let bits = if sf.n_bits >= 128 { u128::MAX } else { (1u128 << sf.n_bits) - 1 };
        let mask = bits.checked_shl(sf.ofs as u32).unwrap_or(0);
        let shifted = (value & bits).checked_shl(sf.ofs as u32).unwrap_or(0);
        match self.fields.iter_mut().find(|(g, ..)| *g == sf.field) {
            Some(e) => {
                e.1 = (e.1 & !mask) | shifted;
                e.2 |= mask;
            }
            None => self.fields.push((sf.field, shifted, mask)),
        }
        if sf.field == Field::VLAN_TCI || sf.field == Field::VLAN_VID {
            self.vlans[0] = self.tci_present();
        }
    }

    fn tci_present(&self) -> bool {
        (self.get(Field::VLAN_VID) | self.get(Field::VLAN_TCI)) & VLAN_CFI != 0
    }

    fn dl_type(&self) -> u16 {
        self.get(Field::ETH_TYPE) as u16
    }

    fn nw_proto(&self) -> u8 {
        self.get(Field::IP_PROTO) as u8
    }

    fn is_ip_any(&self) -> bool {
        matches!(self.dl_type(), ETH_TYPE_IP | ETH_TYPE_IPV6)
    }

    fn is_mpls(&self) -> bool {
        matches!(self.dl_type(), ETH_TYPE_MPLS | ETH_TYPE_MPLS_MCAST)
    }

    fn l4_ok(&self, proto: u8) -> bool {
        self.is_ip_any() && self.nw_proto() == proto && self.get(Field::IP_FRAG) & NW_FRAG_LATER == 0
    }

    /// OVS `is_ct_valid`: with the match's mask (checking a flow's match), or without (checking a
    /// packet, where a valid state always has new, est or rel).
    fn is_ct_valid(&self, with_mask: bool) -> bool {
        let st = self.get(Field::CT_STATE);
        if with_mask {
            st & (CS_NEW | CS_ESTABLISHED | CS_RELATED | CS_REPLY_DIR | CS_SRC_NAT | CS_DST_NAT) != 0
                || (st & CS_TRACKED != 0 && self.mask(Field::CT_STATE) & CS_INVALID != 0 && st & CS_INVALID == 0)
        } else {
            st & (CS_NEW | CS_ESTABLISHED | CS_RELATED) != 0
        }
    }

    /// OVS `mf_are_prereqs_ok__`.
    fn prereqs_ok(&self, f: Field, with_mask: bool) -> bool {
        let dl = self.dl_type();
        let nd = || {
            dl == ETH_TYPE_IPV6 && self.nw_proto() == 58 && self.get(Field::ICMPV6_CODE) == 0 && {
                let t = self.get(Field::ICMPV6_TYPE);
                t == 135 || t == 136
            }
        };
        match f.def().prereq {
            Prereq::None => true,
            Prereq::Vlan => self.vlans[0],
            Prereq::Arp => matches!(dl, ETH_TYPE_ARP | ETH_TYPE_RARP),
            Prereq::Ip | Prereq::Ipv4 => dl == ETH_TYPE_IP,
            Prereq::Ipv6 => dl == ETH_TYPE_IPV6,
            Prereq::Ipv4OrIpv6AnyIp => self.is_ip_any(),
            Prereq::Mpls => self.is_mpls(),
            Prereq::Ct => self.is_ct_valid(with_mask),
            Prereq::Tcp => self.l4_ok(6),
            Prereq::Udp => self.l4_ok(17),
            Prereq::Sctp => self.l4_ok(132),
            Prereq::TcpOrUdpOrSctp => self.l4_ok(6) || self.l4_ok(17) || self.l4_ok(132),
            Prereq::Icmpv4 => dl == ETH_TYPE_IP && self.nw_proto() == 1,
            Prereq::Icmpv6 => dl == ETH_TYPE_IPV6 && self.nw_proto() == 58,
            Prereq::Nd => nd(),
            Prereq::NdSolicit => nd() && self.get(Field::ICMPV6_TYPE) == 135,
            Prereq::NdAdvert => nd() && self.get(Field::ICMPV6_TYPE) == 136,
        }
    }

    /// OVS `mf_check__`: the bits exist and the field's prerequisites hold.
    fn check_subfield(&self, sf: &Subfield, what: &str) -> Result<(), CheckError> {
        let name = sf.field.name();
        let width = sf.field.bits();
        if sf.n_bits == 0 || sf.ofs >= width || sf.ofs as u32 + sf.n_bits as u32 > width as u32 {
            return Err(CheckError::new(
                ErrorCode::BAD_ACTION_BAD_SET_LEN,
                format!("bits {}..{} of the {width}-bit {what} field {name}", sf.ofs, sf.ofs + sf.n_bits),
            ));
        }
        if !self.prereqs_ok(sf.field, true) {
            return Err(CheckError::new(
                ErrorCode::BAD_ACTION_MATCH_INCONSISTENT,
                format!("{what} field {name} lacks correct prerequisites"),
            ));
        }
        Ok(())
    }

    /// OVS `mf_check_src`.
    fn check_src(&self, sf: &Subfield) -> Result<(), CheckError> {
        self.check_subfield(sf, "source")
    }

    /// OVS `mf_check_dst`: also writable.
    fn check_dst(&self, sf: &Subfield) -> Result<(), CheckError> {
        self.check_subfield(sf, "destination")?;
        if !sf.field.def().writable {
            return Err(CheckError::new(
                ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT,
                format!("destination field {} is not writable", sf.field.name()),
            ));
        }
        Ok(())
    }
}

/// A field's all-ones mask (its whole wire width).
fn all_ones(f: Field) -> u128 {
    match f.bytes() {
        n if n >= 16 => u128::MAX,
        n => (1u128 << (8 * n)) - 1,
    }
}

// === the walk ===

struct Checker {
    flow: FlowView,
    /// The first inconsistency seen (OVS's `inconsistent_match`), if any.
    inconsistent: Option<String>,
}

impl Checker {
    fn finish(self) -> Result<(), CheckError> {
        match self.inconsistent {
            Some(why) => Err(CheckError::new(ErrorCode::BAD_ACTION_MATCH_INCONSISTENT, why)),
            None => Ok(()),
        }
    }

    fn inconsistent(&mut self, why: impl FnOnce() -> String) {
        if self.inconsistent.is_none() {
            self.inconsistent = Some(why());
        }
    }

    /// OVS `ofpacts_check`: the actions in order; what they change in the flow is undone after.
    fn actions(&mut self, actions: &[Action]) -> Result<(), CheckError> {
        let saved = self.flow.clone();
        let r = actions.iter().try_for_each(|a| self.action(a));
        self.flow = saved;
        r
    }

    fn set_ip(&mut self, what: &str) {
        if !self.flow.is_ip_any() {
            self.inconsistent(|| format!("{what} needs an IP match (ip or ipv6)"));
        }
    }

    fn set_mpls(&mut self, what: &str) {
        if !self.flow.is_mpls() {
            self.inconsistent(|| format!("{what} needs an MPLS match (mpls or mplsm)"));
        }
    }

    /// OVS `check_SET_FIELD` (also what NXAST_REG_LOAD and REG_LOAD2 become).
    fn set_field(&mut self, f: Field, value: u128, whole: bool) -> Result<(), CheckError> {
        if !f.def().writable {
            // OVS's decoder refuses it before any check.
            return Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, format!("{} is read-only", f.name())));
        }
        if !self.flow.prereqs_ok(f, false) || (f == Field::VLAN_VID && !self.flow.vlans[0]) {
            return Err(CheckError::new(
                ErrorCode::BAD_ACTION_MATCH_INCONSISTENT,
                format!("set_field {} lacks correct prerequisites", f.name()),
            ));
        }
        if f == Field::VLAN_VID && whole && value & VLAN_CFI == 0 {
            // OVS's text parser writes it; its decoder refuses it.
            return Err(CheckError::new(
                ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT,
                format!("set_field {value:#x}->vlan_vid lacks the OFPVID_PRESENT bit (0x1000)"),
            ));
        }
        if f == Field::VLAN_TCI {
            // The set_field may add or remove the tag.
            self.flow.vlans[0] = value & VLAN_CFI != 0;
        }
        Ok(())
    }

    fn output_port(&self, p: u16) -> Result<(), CheckError> {
        use port::*;
        let ok =
            matches!(p, OFPP_IN_PORT | OFPP_TABLE | OFPP_NORMAL | OFPP_FLOOD | OFPP_ALL | OFPP_CONTROLLER | OFPP_LOCAL)
                || p < OFPP_MAX;
        if ok {
            Ok(())
        } else {
            Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_OUT_PORT, format!("output to port {p}")))
        }
    }

    fn action(&mut self, a: &Action) -> Result<(), CheckError> {
        match a {
            Action::Output { port: p, .. } => match port::port_from_ofp11(*p, "output") {
                Ok(p) => self.output_port(p),
                Err(_) => Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_OUT_PORT, format!("output to port {p:#x}"))),
            },
            Action::OutputTrunc { port: p, .. } => self.output_port(*p),
            Action::OutputReg { src, .. } => self.flow.check_src(src),
            Action::SetField { field, value } => self.set_field(*field, value.to_u128(), true),
            Action::RegLoad { dst, value } => {
                let v = (*value as u128).checked_shl(dst.ofs as u32).unwrap_or(0);
                self.set_field(dst.field, v, false)
            }
            Action::RegLoad2 { field, value, mask } => self.set_field(*field, value.to_u128(), mask.is_none()),
            Action::RegMove { src, dst } => {
                self.flow.check_src(src)?;
                self.flow.check_dst(dst)
            }
            Action::PushVlan(_) => {
                if self.flow.vlans[1] {
                    return Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_TAG, "push_vlan on two VLAN tags"));
                }
                self.flow.vlans = [true, self.flow.vlans[0]];
                Ok(())
            }
            Action::PopVlan => {
                if !self.flow.vlans[0] {
                    self.inconsistent(|| "pop_vlan needs a VLAN match (e.g. dl_vlan or vlan_tci=0x1000/0x1000)".into());
                }
                self.flow.vlans = [self.flow.vlans[1], false];
                Ok(())
            }
            Action::PushMpls(eth) => {
                self.flow.put(Field::ETH_TYPE, *eth as u128);
                // The MPLS payload is opaque: no network protocol any more.
                self.flow.put(Field::IP_PROTO, 0);
                Ok(())
            }
            Action::PopMpls(eth) => {
                if !self.flow.is_mpls() {
                    self.inconsistent(|| "pop_mpls needs an MPLS match (mpls or mplsm)".into());
                }
                self.flow.put(Field::ETH_TYPE, *eth as u128);
                Ok(())
            }
            Action::DecTtl | Action::DecTtlCntIds(_) => {
                self.set_ip("dec_ttl");
                Ok(())
            }
            Action::SetNwTtl(_) => {
                self.set_ip("mod_nw_ttl");
                Ok(())
            }
            Action::SetMplsTtl(_) => {
                self.set_mpls("set_mpls_ttl");
                Ok(())
            }
            Action::DecMplsTtl => {
                self.set_mpls("dec_mpls_ttl");
                Ok(())
            }
            Action::FinTimeout { .. } => {
                if self.flow.nw_proto() != 6 {
                    self.inconsistent(|| "fin_timeout needs a TCP match (tcp or tcp6)".into());
                }
                Ok(())
            }
            Action::Resubmit { ct: true, .. } => {
                if self.flow.is_ct_valid(true) {
                    Ok(())
                } else {
                    Err(CheckError::new(
                        ErrorCode::BAD_ACTION_MATCH_INCONSISTENT,
                        "resubmit(...,ct) needs a valid connection in the match (ct_state with +new, +est, +rel, +rpl, +snat, +dnat or +trk-inv)",
                    ))
                }
            }
            Action::Clone(inner) => self.nested(inner),
            Action::StackPush(sf) => self.flow.check_src(sf),
            Action::StackPop(sf) => self.flow.check_dst(sf),
            Action::Ct(ct) => {
                let f = &self.flow;
                let bad = if !f.is_ip_any() {
                    Some("ct needs an IP match (ip or ipv6)")
                } else if f.get(Field::CT_STATE) & CS_INVALID != 0 && ct.flags & CT_COMMIT != 0 {
                    Some("ct(commit) on a flow that matches +inv")
                } else if ct.alg == ALG_FTP && f.nw_proto() != 6 {
                    Some("ct(alg=ftp) needs a TCP match")
                } else if ct.alg == ALG_TFTP && f.nw_proto() != 17 {
                    Some("ct(alg=tftp) needs a UDP match")
                } else {
                    None
                };
                if let Some(why) = bad {
                    return Err(CheckError::new(ErrorCode::BAD_ACTION_MATCH_INCONSISTENT, why));
                }
                if ct.flags & CT_COMMIT == 0 && needs_commit(&ct.actions) {
                    // OVS's decoder refuses it (its text parser lets it through to the switch).
                    return Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_ARGUMENT, NEEDS_COMMIT));
                }
                match &ct.zone {
                    // As OVS: a zone taken from a field is all that is checked then.
                    super::action::ct::CtZone::Field(sf) => self.flow.check_src(sf),
                    super::action::ct::CtZone::Immediate(_) => self.nested(&ct.actions),
                }
            }
            Action::Nat(nat) => {
                let dl = self.flow.dl_type();
                let ok = match nat.range {
                    NatRange::None => self.flow.is_ip_any(),
                    NatRange::V4 { .. } => dl == ETH_TYPE_IP,
                    NatRange::V6 { .. } => dl == ETH_TYPE_IPV6,
                };
                if ok {
                    Ok(())
                } else {
                    Err(CheckError::new(
                        ErrorCode::BAD_ACTION_MATCH_INCONSISTENT,
                        "nat needs an IP match of the address family of its range",
                    ))
                }
            }
            Action::Learn(l) => self.learn(l),
            Action::Multipath(mp) => self.flow.check_dst(&mp.dst),
            Action::Bundle(b) => {
                if let Some(dst) = &b.dst {
                    self.flow.check_dst(dst)?;
                }
                for m in &b.members {
                    if *m == port::OFPP_CONTROLLER {
                        // OVS: no max_len to send it with.
                        return Err(CheckError::new(ErrorCode::BAD_ACTION_BAD_OUT_PORT, "bundle member CONTROLLER"));
                    }
                    if *m != port::OFPP_NONE {
                        self.output_port(*m)?;
                    }
                }
                Ok(())
            }
            Action::Group(_)
            | Action::SetQueue(_)
            | Action::PopQueue
            | Action::CopyTtlOut
            | Action::CopyTtlIn
            | Action::Resubmit { .. }
            | Action::Note(_)
            | Action::CtClear
            | Action::Exit
            | Action::Controller(_)
            | Action::Sample(_)
            | Action::CheckPktLarger { .. }
            | Action::Conjunction(_)
            | Action::Unknown { .. } => Ok(()),
        }
    }

    /// OVS `check_subactions`: nested actions over the same flow; their inconsistencies count.
    fn nested(&mut self, inner: &[Action]) -> Result<(), CheckError> {
        let mut sub = Checker { flow: self.flow.clone(), inconsistent: None };
        let r = sub.actions(inner);
        if let Some(why) = sub.inconsistent {
            self.inconsistent(|| why);
        }
        r
    }

    /// OVS `learn_check`: sources against this flow, destinations against the learned flow's
    /// match as the specs before them build it.
    fn learn(&mut self, l: &Learn) -> Result<(), CheckError> {
        let mut learned = FlowView::default();
        for spec in &l.specs {
            if let LearnSrc::Field(sf) = &spec.src {
                self.flow.check_src(sf)?;
            }
            match &spec.dst {
                LearnDst::Match(dst) => {
                    learned.check_src(dst).map_err(|e| in_learned(e, l))?;
                    if let LearnSrc::Immediate { bytes, .. } = &spec.src {
                        let v = bytes.iter().rev().take(16).rev().fold(0u128, |acc, b| (acc << 8) | *b as u128);
                        learned.write_subfield(dst, v);
                    }
                }
                LearnDst::Load(dst) => learned.check_dst(dst).map_err(|e| in_learned(e, l))?,
                LearnDst::Output => {}
            }
        }
        Ok(())
    }
}

/// Says that a learn spec's field lacks prerequisites in the *learned* flow (the fix is to add
/// them as specs, e.g. `eth_type=0x800,nw_proto=6`, before it).
fn in_learned(mut e: CheckError, l: &Learn) -> CheckError {
    e.detail = format!(
        "{} in the flow learn(table={}) would add (put its prerequisites first, e.g. eth_type=0x800,nw_proto=6)",
        e.detail, l.table_id
    );
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openflow::flow::{FlowMod, FlowModCommand};

    /// Parses without the check (so that the check itself is what is tested).
    fn fm(text: &str) -> FlowMod {
        FlowMod::parse_unchecked(text, FlowModCommand::Add).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn verdict(text: &str) -> Result<(), String> {
        check_flow_mod(&fm(text)).map_err(|e| e.code.to_string())
    }

    #[test]
    fn known_cases_from_the_issue() {
        // A learned match without its prerequisites, under a plain tcp match.
        assert_eq!(
            verdict("table=0,tcp,actions=learn(table=25,NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],output:NXM_OF_IN_PORT[])"),
            Err("OFPBAC_MATCH_INCONSISTENT".into())
        );
        // An action nested in clone() whose prerequisites the match does not meet.
        assert_eq!(
            verdict("reg0=0x8/0x8,actions=clone(set_field:10.0.0.99->ip_dst,output:2)"),
            Err("OFPBAC_MATCH_INCONSISTENT".into())
        );
        // Only OpenFlow 1.0 could carry it (OVS: "usable protocols: NXM+table_id").
        assert_eq!(verdict("table=1,ct_state=+trk,actions=dec_ttl"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        // ... and their fixed forms pass.
        assert_eq!(
            verdict("tcp,actions=learn(table=25,eth_type=0x800,nw_proto=6,NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],output:NXM_OF_IN_PORT[])"),
            Ok(())
        );
        assert_eq!(verdict("ip,reg0=0x8/0x8,actions=clone(set_field:10.0.0.99->ip_dst,output:2)"), Ok(()));
        assert_eq!(verdict("table=1,ip,ct_state=+trk,actions=dec_ttl"), Ok(()));
    }

    #[test]
    fn actions_change_what_later_actions_see() {
        assert_eq!(
            verdict("ip,actions=push_mpls:0x8847,set_field:1.1.1.1->ip_dst"),
            Err("OFPBAC_MATCH_INCONSISTENT".into())
        );
        assert_eq!(verdict("mpls,actions=pop_mpls:0x0800,set_field:1.1.1.1->ip_dst"), Ok(()));
        assert_eq!(verdict("actions=push_vlan:0x8100,set_field:1->vlan_pcp"), Ok(()));
        assert_eq!(verdict("actions=set_field:1->vlan_pcp"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(verdict("dl_vlan=5,actions=push_vlan:0x8100,push_vlan:0x8100"), Err("OFPBAC_BAD_TAG".into()));
        assert_eq!(verdict("dl_vlan=5,actions=pop_vlan,push_vlan:0x8100,push_vlan:0x8100"), Ok(()));
        // What clone() changes is undone after it.
        assert_eq!(verdict("ip,actions=clone(push_mpls:0x8847),set_field:1.1.1.1->ip_dst"), Ok(()));
    }

    #[test]
    fn conjunction_goes_alone() {
        assert_eq!(verdict("ip,actions=conjunction(1,1/2),note:01"), Ok(()));
        assert_eq!(verdict("ip,actions=conjunction(1,1/2),dec_ttl"), Err("NXBAC_BAD_CONJUNCTION".into()));
    }

    #[test]
    fn write_actions_see_what_apply_actions_changed() {
        assert_eq!(verdict("actions=push_vlan:0x8100,write_actions(set_field:1->vlan_pcp)"), Ok(()));
    }

    #[test]
    fn write_actions_count_hard_errors_only() {
        assert_eq!(verdict("actions=write_actions(dec_ttl)"), Ok(()));
        assert_eq!(verdict("actions=clone(dec_ttl)"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(
            verdict("actions=write_actions(set_field:1.1.1.1->ip_dst)"),
            Err("OFPBAC_MATCH_INCONSISTENT".into())
        );
    }

    #[test]
    fn conntrack() {
        assert_eq!(verdict("actions=ct(commit)"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(verdict("ip,ct_state=+inv+trk,actions=ct(commit)"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(verdict("ipv6,actions=ct(commit,nat(src=10.0.0.1))"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(verdict("ip,actions=ct(commit,nat(src=10.0.0.1))"), Ok(()));
        assert_eq!(verdict("ip,ct_state=+trk,actions=resubmit(,2,ct)"), Err("OFPBAC_MATCH_INCONSISTENT".into()));
        assert_eq!(verdict("ip,ct_state=+trk-inv,actions=resubmit(,2,ct)"), Ok(()));
        assert_eq!(
            verdict("ip,actions=ct(commit,exec(move:NXM_OF_TCP_SRC[]->NXM_NX_CT_MARK[0..15]))"),
            Err("OFPBAC_MATCH_INCONSISTENT".into())
        );
    }

    #[test]
    fn goto_and_meter() {
        let mut f = fm("table=3,actions=goto_table:4");
        assert_eq!(check_flow_mod(&f), Ok(()));
        f.instructions = vec![Instruction::GotoTable(3)];
        assert_eq!(check_flow_mod(&f).unwrap_err().code, ErrorCode::BAD_INSTRUCTION_BAD_TABLE_ID);
        f.instructions = vec![Instruction::Meter(0)];
        assert_eq!(check_flow_mod(&f).unwrap_err().code, ErrorCode::METER_MOD_FAILED_INVALID_METER);
    }

    #[test]
    fn the_message_names_the_field_and_the_error() {
        let e = check_flow_mod(&fm("actions=load:1->NXM_OF_IP_SRC[]")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "actions are invalid with specified match: set_field ip_src lacks correct prerequisites (OFPBAC_MATCH_INCONSISTENT)"
        );
    }
}
