//! Lowering an OpenFlow flow (typed, from the codec) to the [`Requirements`] of the datapath flow
//! OVS would make of it.
//!
//! OVS does not run OpenFlow tables in the datapath: ovs-vswitchd translates a packet's whole walk
//! through the tables into one datapath flow (a match and a list of datapath actions), and only
//! that flow can go to TC and a NIC. So, as far as one OpenFlow flow tells:
//! - `goto_table`, `resubmit`, `write_metadata`, register loads and moves, `multipath`,
//!   `bundle`, `stack push/pop`, `exit`, `note` and `conjunction` are resolved during translation
//!   and leave nothing in the datapath flow (a `move` from a packet field does leave an exact
//!   match on that field);
//! - matches on registers, `metadata` and `conj_id` are folded away for the same reason (values
//!   carried across a recirculation travel in the frozen state that `recirc_id` names);
//! - `ct(table=N)` ends the datapath flow with `ct(...),recirc(id)`: one recirculation, and the
//!   flows of table N belong to a second datapath flow matching that `recirc_id`;
//! - `dec_ttl` becomes an exact TTL match and a masked TTL rewrite; `set_field` on the VLAN becomes
//!   `pop_vlan,push_vlan`; writes to `tun_*` become tunnel encapsulation metadata;
//! - `NORMAL`, `FLOOD` and `ALL` become one output per port (NORMAL after MAC learning);
//! - `controller` becomes `userspace(...)` (the slow path); `learn` runs in ovs-vswitchd at
//!   translation and leaves no datapath action, but the fields it reads become exact matches
//!   (`learn_mask()`); `fin_timeout` needs the TCP flags of the datapath's statistics.
//!
//! Limits: one OpenFlow flow is only a piece of a datapath flow. The matches and actions of the
//! other tables on the packet's way are not seen (the pipeline report composes the recirculation
//! depth from the whole pipeline, see [`super::report`]), nor the fields OVS unwildcards for
//! hashing (`multipath`, select groups) or for `learn`'s reads; a group's buckets are not in the
//! flow; a zone taken from a register is a number in the datapath but unknown here.

use super::requirement::{ActionReq, CtFlag, CtReq, MaskKind, MatchField, MatchReq, NatKind, OutputKind, Requirements};
use crate::openflow::action::ct::{CT_COMMIT, CT_FORCE, CT_RECIRC_NONE, NAT_DST, NAT_SRC};
use crate::openflow::action::{port, Action};
use crate::openflow::field::Field;
use crate::openflow::flow::FlowMod;
use crate::openflow::instruction::Instruction;

/// Where a flow sits in the pipeline, when the caller knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// Recirculations a packet has taken before it reaches this flow (a table only reached after
    /// `ct(table=N)` is one deep). 0 when unknown.
    pub recirculations_before: u32,
}

/// What OVS's datapath flow would ask for this OpenFlow flow, alone (see the module doc).
pub fn lower_flow_mod(fm: &FlowMod) -> Requirements {
    lower_flow_mod_in(fm, Context::default())
}

/// [`lower_flow_mod`] for a flow whose place in the pipeline is known.
pub fn lower_flow_mod_in(fm: &FlowMod, ctx: Context) -> Requirements {
    let mut req = Requirements { recirculations: ctx.recirculations_before, ..Default::default() };
    if ctx.recirculations_before > 0 {
        req.add_match(MatchReq::new(MatchField::RecircId, MaskKind::Exact));
    }
    lower_match(fm, &mut req);
    let mut goes_on = false;
    for ins in &fm.instructions {
        match ins {
            Instruction::ApplyActions(list) | Instruction::WriteActions(list) => {
                for a in list {
                    goes_on |= lower_action(a, &mut req);
                }
            }
            Instruction::Meter(_) => req.actions.push(ActionReq::Meter),
            Instruction::GotoTable(t) => {
                goes_on = true;
                req.notes.push(format!("goto_table:{t} is folded into the same datapath flow"));
            }
            Instruction::WriteMetadata { .. } => {
                req.notes.push("write_metadata is resolved at translation".to_string());
            }
            Instruction::ClearActions | Instruction::Unknown { .. } => {}
        }
    }
    // A flow that neither sends the packet anywhere nor hands it on drops it.
    let sends = req.actions.iter().any(|a| {
        matches!(
            a,
            ActionReq::Output { .. }
                | ActionReq::Controller
                | ActionReq::Group
                | ActionReq::Userspace
                | ActionReq::Truncate
                | ActionReq::Clone
                | ActionReq::Sample
                | ActionReq::Recirculate
        )
    });
    if !sends && !goes_on {
        req.actions.push(ActionReq::Drop);
    }
    req
}

// === matches ===

/// The datapath field an OpenFlow match field lands in; `None` for fields folded at translation.
fn match_field(f: Field) -> Option<MatchField> {
    Some(match f {
        Field::IN_PORT | Field::IN_PORT_OXM => MatchField::InPort,
        Field::RECIRC_ID => MatchField::RecircId,
        Field::DP_HASH => MatchField::DpHash,
        Field::ACTSET_OUTPUT => MatchField::ActsetOutput,
        Field::PKT_MARK => MatchField::PktMark,
        Field::TUN_ID => MatchField::TunId,
        Field::TUN_SRC => MatchField::TunIpv4Src,
        Field::TUN_DST => MatchField::TunIpv4Dst,
        Field::TUN_IPV6_SRC => MatchField::TunIpv6Src,
        Field::TUN_IPV6_DST => MatchField::TunIpv6Dst,
        Field::TUN_FLAGS => MatchField::TunFlags,
        Field::TUN_GBP_ID | Field::TUN_GBP_FLAGS => MatchField::TunGbp,
        Field::CT_STATE => MatchField::CtState,
        Field::CT_ZONE => MatchField::CtZone,
        Field::CT_MARK => MatchField::CtMark,
        Field::CT_LABEL => MatchField::CtLabel,
        Field::CT_NW_PROTO
        | Field::CT_NW_SRC
        | Field::CT_NW_DST
        | Field::CT_IPV6_SRC
        | Field::CT_IPV6_DST
        | Field::CT_TP_SRC
        | Field::CT_TP_DST => MatchField::CtTuple,
        Field::ETH_SRC => MatchField::EthSrc,
        Field::ETH_DST => MatchField::EthDst,
        Field::ETH_TYPE => MatchField::EthType,
        Field::VLAN_TCI | Field::VLAN_VID => MatchField::VlanVid,
        Field::VLAN_PCP => MatchField::VlanPcp,
        Field::MPLS_LABEL => MatchField::MplsLabel,
        Field::MPLS_TC => MatchField::MplsTc,
        Field::MPLS_BOS => MatchField::MplsBos,
        Field::MPLS_TTL => MatchField::MplsTtl,
        Field::IPV4_SRC => MatchField::Ipv4Src,
        Field::IPV4_DST => MatchField::Ipv4Dst,
        Field::IPV6_SRC => MatchField::Ipv6Src,
        Field::IPV6_DST => MatchField::Ipv6Dst,
        Field::IPV6_LABEL => MatchField::Ipv6Label,
        Field::IP_PROTO => MatchField::IpProto,
        Field::IP_DSCP | Field::IP_DSCP_SHIFTED | Field::IP_ECN => MatchField::IpTos,
        Field::IP_TTL => MatchField::IpTtl,
        Field::IP_FRAG => MatchField::IpFrag,
        Field::TCP_SRC => MatchField::TcpSrc,
        Field::TCP_DST => MatchField::TcpDst,
        Field::TCP_FLAGS => MatchField::TcpFlags,
        Field::UDP_SRC => MatchField::UdpSrc,
        Field::UDP_DST => MatchField::UdpDst,
        Field::SCTP_SRC => MatchField::SctpSrc,
        Field::SCTP_DST => MatchField::SctpDst,
        Field::ICMPV4_TYPE => MatchField::IcmpType,
        Field::ICMPV4_CODE => MatchField::IcmpCode,
        Field::ICMPV6_TYPE => MatchField::Icmpv6Type,
        Field::ICMPV6_CODE => MatchField::Icmpv6Code,
        Field::ARP_OP => MatchField::ArpOp,
        Field::ARP_SPA => MatchField::ArpSpa,
        Field::ARP_TPA => MatchField::ArpTpa,
        Field::ARP_SHA => MatchField::ArpSha,
        Field::ARP_THA => MatchField::ArpTha,
        Field::ND_TARGET => MatchField::NdTarget,
        Field::ND_SLL => MatchField::NdSll,
        Field::ND_TLL => MatchField::NdTll,
        _ => return None,
    })
}

/// The mask kind of a match entry as it lands in the datapath field (sub-byte OpenFlow fields
/// such as DSCP and ECN are parts of the TOS byte there).
fn datapath_mask(f: Field, mask: Option<&[u8]>) -> MaskKind {
    match f {
        // DSCP is the TOS byte's high six bits (a prefix), ECN its low two.
        Field::IP_DSCP | Field::IP_DSCP_SHIFTED => MaskKind::of_mask(mask).max(MaskKind::Prefix),
        Field::IP_ECN => MaskKind::Arbitrary,
        _ => MaskKind::of_mask(mask),
    }
}

fn lower_match(fm: &FlowMod, req: &mut Requirements) {
    for e in &fm.r#match.entries {
        let Some(field) = match_field(e.field) else {
            req.notes.push(format!("{} is matched at translation only (not in the datapath flow)", e.field.name()));
            continue;
        };
        if field == MatchField::CtState {
            let value = e.value.to_u128() as u32;
            let mask = e.mask.map(|m| m.to_u128() as u32).unwrap_or(u32::MAX);
            let on = CtFlag::from_bits(value & mask);
            let off = CtFlag::from_bits(mask & !value & 0xff);
            req.add_match(MatchReq::ct_state(on, off));
            continue;
        }
        if e.field == Field::VLAN_TCI || e.field == Field::VLAN_VID {
            lower_vlan(e.field, e.value.to_u128() as u16, e.mask.map(|m| m.to_u128() as u16), req);
            continue;
        }
        if field == MatchField::CtZone {
            req.add_zone(e.value.to_u128() as u16);
        }
        let mask = datapath_mask(e.field, e.mask.as_ref().map(|m| m.as_bytes()));
        req.add_match(MatchReq::new(field, mask));
    }
    if !fm.r#match.unknown.is_empty() {
        req.notes.push(format!("{} unknown match field(s) left out", fm.r#match.unknown.len()));
    }
}

/// A VLAN match as OVS's TC provider splits it: VID and PCP each exact or not at all (a partial
/// mask, or a match on "any VLAN" alone, is refused there: `netdev_offload_tc_flow_put()`).
fn lower_vlan(f: Field, value: u16, mask: Option<u16>, req: &mut Requirements) {
    // vlan_vid (OXM) is 13 bits with the "present" bit at 0x1000; vlan_tci is the whole TCI with
    // the CFI bit (0x1000) meaning "present".
    let full = if f == Field::VLAN_VID { 0x1fff } else { 0xffff };
    let m = mask.unwrap_or(full);
    if m == full && value == 0 {
        // "No VLAN": an exact match on an absent tag.
        req.add_match(MatchReq::new(MatchField::VlanVid, MaskKind::Exact));
        return;
    }
    let vid = m & 0x0fff;
    let pcp = m & 0xe000;
    if vid == 0 && pcp == 0 {
        req.add_match(MatchReq::new(MatchField::VlanVid, MaskKind::Arbitrary));
        return;
    }
    if vid != 0 {
        req.add_match(MatchReq::new(
            MatchField::VlanVid,
            if vid == 0x0fff { MaskKind::Exact } else { MaskKind::Arbitrary },
        ));
    }
    if pcp != 0 {
        req.add_match(MatchReq::new(
            MatchField::VlanPcp,
            if pcp == 0xe000 { MaskKind::Exact } else { MaskKind::Arbitrary },
        ));
    }
}

// === actions ===

/// Lowers one action into `req`; true when it hands the packet on to more OpenFlow tables
/// (the rest of the datapath flow lies elsewhere).
fn lower_action(a: &Action, req: &mut Requirements) -> bool {
    match a {
        Action::Output { port: p, .. } => match port::port_from_ofp11(*p, "output") {
            Ok(port::OFPP_CONTROLLER) => req.actions.push(ActionReq::Controller),
            Ok(p16) => req.actions.push(ActionReq::Output { to: output_kind(p16) }),
            Err(_) => req.actions.push(ActionReq::Other { name: "output".into() }),
        },
        Action::OutputTrunc { .. } => req.actions.push(ActionReq::Truncate),
        Action::OutputReg { src, .. } => {
            req.notes.push(format!("output to the port in {} (resolved at translation)", src.field.name()));
            req.actions.push(ActionReq::Output { to: OutputKind::Port });
        }
        Action::Group(_) => req.actions.push(ActionReq::Group),
        Action::SetField { field, .. } => set_field(*field, false, req),
        Action::RegLoad2 { field, mask, .. } => set_field(*field, mask.is_some_and(|m| !m.is_all_ones()), req),
        Action::RegLoad { dst, .. } => set_field(dst.field, dst.n_bits < dst.field.bits(), req),
        Action::RegMove { src, dst } => {
            // Reading a packet field makes the datapath flow match it exactly.
            if let Some(f) = match_field(src.field) {
                if !is_metadata(src.field) {
                    req.add_match(MatchReq::new(f, MaskKind::Exact));
                }
            }
            set_field(dst.field, dst.n_bits < dst.field.bits(), req);
        }
        Action::PushVlan(_) => req.actions.push(ActionReq::PushVlan),
        Action::PopVlan => req.actions.push(ActionReq::PopVlan),
        Action::PushMpls(_) => req.actions.push(ActionReq::PushMpls),
        Action::PopMpls(_) => req.actions.push(ActionReq::PopMpls),
        Action::SetQueue(_) | Action::PopQueue => req.actions.push(ActionReq::SetQueue),
        Action::DecTtl | Action::DecTtlCntIds(_) => {
            req.add_match(MatchReq::new(MatchField::IpTtl, MaskKind::Exact));
            req.actions.push(ActionReq::DecTtl);
        }
        Action::SetNwTtl(_) => req.actions.push(ActionReq::SetField { field: MatchField::IpTtl, masked: false }),
        Action::SetMplsTtl(_) | Action::DecMplsTtl => {
            req.actions.push(ActionReq::SetField { field: MatchField::MplsTtl, masked: false })
        }
        Action::CopyTtlOut => req.actions.push(ActionReq::Other { name: "copy_ttl_out".into() }),
        Action::CopyTtlIn => req.actions.push(ActionReq::Other { name: "copy_ttl_in".into() }),
        Action::Resubmit { table, .. } => {
            req.notes.push(format!("resubmit(,{table}) is folded into the same datapath flow"));
            return true;
        }
        Action::Note(_) => req.notes.push("note has no datapath action".to_string()),
        Action::CtClear => req.actions.push(ActionReq::CtClear),
        Action::Exit | Action::StackPush(_) | Action::StackPop(_) | Action::Conjunction(_) => {}
        Action::FinTimeout { .. } => req.actions.push(ActionReq::FinTimeout),
        Action::Controller(_) => req.actions.push(ActionReq::Controller),
        Action::Clone(_) => req.actions.push(ActionReq::Clone),
        Action::Sample(_) => req.actions.push(ActionReq::Sample),
        Action::CheckPktLarger { .. } => req.actions.push(ActionReq::CheckPktLen),
        Action::Ct(ct) => return lower_ct(ct, req),
        Action::Nat(_) => req.actions.push(ActionReq::Other { name: "nat".into() }),
        Action::Learn(l) => {
            // learn_mask(): the fields learn reads become (exact) matches of the datapath flow.
            for spec in &l.specs {
                if let crate::openflow::action::learn::LearnSrc::Field(sf) = &spec.src {
                    if let Some(f) =
                        match_field(sf.field).filter(|_| !is_metadata(sf.field) || sf.field == Field::IN_PORT)
                    {
                        let mask = if sf.n_bits < sf.field.bits() { MaskKind::Arbitrary } else { MaskKind::Exact };
                        req.add_match(MatchReq::new(f, mask));
                    }
                }
            }
            req.notes.push("learn runs at translation: one datapath flow per value of the fields it reads".to_string());
            req.actions.push(ActionReq::Learn);
        }
        Action::Multipath(_) => {
            req.notes.push("multipath hashes at translation (the hashed fields become exact matches)".to_string())
        }
        Action::Bundle(b) => {
            if b.dst.is_none() {
                req.actions.push(ActionReq::Output { to: OutputKind::Port });
            }
        }
        Action::Unknown { .. } => req.actions.push(ActionReq::Other { name: "unknown".into() }),
    }
    false
}

fn output_kind(p: u16) -> OutputKind {
    match p {
        port::OFPP_IN_PORT => OutputKind::InPort,
        port::OFPP_LOCAL => OutputKind::Local,
        port::OFPP_NORMAL | port::OFPP_FLOOD | port::OFPP_ALL => OutputKind::Multiple,
        _ => OutputKind::Port,
    }
}

/// Registers and other translation-time state: writes to them leave nothing in the datapath.
fn is_metadata(f: Field) -> bool {
    let i = f.0;
    (Field::REG0.0..=Field::XXREG3.0).contains(&i)
        || f == Field::METADATA
        || f == Field::IN_PORT
        || f == Field::IN_PORT_OXM
}

fn set_field(f: Field, masked: bool, req: &mut Requirements) {
    if is_metadata(f) {
        return;
    }
    match f {
        Field::TUN_ID
        | Field::TUN_SRC
        | Field::TUN_DST
        | Field::TUN_FLAGS
        | Field::TUN_GBP_ID
        | Field::TUN_GBP_FLAGS => push_once(req, ActionReq::TunnelEncap { ipv6: false }),
        Field::TUN_IPV6_SRC | Field::TUN_IPV6_DST => push_once(req, ActionReq::TunnelEncap { ipv6: true }),
        Field::VLAN_TCI | Field::VLAN_VID | Field::VLAN_PCP => {
            // commit_vlan_action(): a changed TCI is a pop and a push (a tag pushed by this flow
            // is pushed with its final TCI instead).
            if !req.actions.contains(&ActionReq::PushVlan) {
                push_once(req, ActionReq::PopVlan);
                push_once(req, ActionReq::PushVlan);
            }
        }
        _ => match match_field(f) {
            Some(mf) => req.actions.push(ActionReq::SetField { field: mf, masked }),
            None => req.actions.push(ActionReq::Other { name: format!("set_field:{}", f.name()) }),
        },
    }
}

fn push_once(req: &mut Requirements, a: ActionReq) {
    if !req.actions.contains(&a) {
        req.actions.push(a);
    }
}

fn lower_ct(ct: &crate::openflow::action::ct::Ct, req: &mut Requirements) -> bool {
    let mut c = CtReq {
        commit: ct.flags & (CT_COMMIT | CT_FORCE) != 0,
        force: ct.flags & CT_FORCE != 0,
        alg: (ct.alg != 0).then_some(ct.alg),
        recirculates: ct.recirc_table != CT_RECIRC_NONE,
        ..Default::default()
    };
    match ct.zone {
        crate::openflow::action::ct::CtZone::Immediate(z) => {
            c.zone = Some(z);
            req.add_zone(z);
        }
        crate::openflow::action::ct::CtZone::Field(sf) => {
            c.zone_from_field = true;
            req.notes.push(format!("ct zone from {} (a number in the datapath flow, unknown here)", sf.field.name()));
        }
    }
    for a in &ct.actions {
        match a {
            Action::Nat(n) => {
                c.nat = Some(if n.flags & NAT_SRC != 0 {
                    NatKind::Src
                } else if n.flags & NAT_DST != 0 {
                    NatKind::Dst
                } else {
                    NatKind::Reverse
                });
            }
            Action::SetField { field, .. } | Action::RegLoad2 { field, .. } => mark_or_label(*field, &mut c),
            Action::RegLoad { dst, .. } | Action::RegMove { dst, .. } => mark_or_label(dst.field, &mut c),
            _ => {}
        }
    }
    let recirc = c.recirculates;
    req.actions.push(ActionReq::Ct(c));
    if recirc {
        req.recirculations += 1;
        req.actions.push(ActionReq::Recirculate);
        req.notes.push(format!(
            "ct(table={}) recirculates: table {} is a second datapath flow",
            ct.recirc_table, ct.recirc_table
        ));
    }
    false
}

fn mark_or_label(f: Field, c: &mut CtReq) {
    if f == Field::CT_MARK {
        c.set_mark = true;
    } else if f == Field::CT_LABEL {
        c.set_label = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::flow::FlowModCommand;

    fn lower(t: &str) -> Requirements {
        lower_flow_mod(&FlowMod::parse(t, FlowModCommand::Add).unwrap_or_else(|e| panic!("{t}: {e}")))
    }

    fn fields(r: &Requirements) -> Vec<(MatchField, MaskKind)> {
        r.matches.iter().map(|m| (m.field, m.mask)).collect()
    }

    #[test]
    fn translation_time_state_leaves_nothing() {
        let r = lower("table=5,priority=10,ip,reg0=0x4/0x4,metadata=0x1,actions=load:0x1->NXM_NX_REG1[],goto_table:6");
        assert_eq!(fields(&r), vec![(MatchField::EthType, MaskKind::Exact)]);
        assert!(r.actions.is_empty(), "{:?}", r.actions);
        assert!(r.notes.iter().any(|n| n.contains("reg0")) && r.notes.iter().any(|n| n.contains("goto_table:6")));
        // A flow that ends the pipeline without an output drops.
        assert_eq!(lower("ip,actions=load:0x1->NXM_NX_REG1[]").actions, vec![ActionReq::Drop]);
    }

    #[test]
    fn ct_recirculates_and_counts_zones() {
        let r =
            lower("table=1,ip,actions=ct(commit,zone=2,nat(dst=10.244.1.4:8080),exec(set_field:0x1->ct_mark),table=5)");
        assert_eq!(r.recirculations, 1);
        assert_eq!(r.ct_zones, vec![2]);
        assert_eq!(
            r.actions,
            vec![
                ActionReq::Ct(CtReq {
                    zone: Some(2),
                    commit: true,
                    nat: Some(NatKind::Dst),
                    set_mark: true,
                    recirculates: true,
                    ..Default::default()
                }),
                ActionReq::Recirculate
            ]
        );
        let r = lower_flow_mod_in(
            &FlowMod::parse("table=2,ct_state=+est-new+trk,ip,actions=goto_table:5", FlowModCommand::Add)
                .unwrap_or_else(|e| panic!("{e}")),
            Context { recirculations_before: 1 },
        );
        assert_eq!(r.recirculations, 1);
        assert!(r.has_match(MatchField::RecircId));
        let ct = r.matches.iter().find(|m| m.field == MatchField::CtState).unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!((ct.flags_on.clone(), ct.flags_off.clone()), (vec![CtFlag::Est, CtFlag::Trk], vec![CtFlag::New]));
    }

    #[test]
    fn rewrites_as_the_datapath_sees_them() {
        let r =
            lower("ip,actions=dec_ttl,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:0x1->NXM_OF_IP_TOS[2..3],output:2");
        assert!(fields(&r).contains(&(MatchField::IpTtl, MaskKind::Exact)), "dec_ttl matches the TTL");
        assert!(fields(&r).contains(&(MatchField::EthSrc, MaskKind::Exact)), "move reads eth_src");
        assert_eq!(
            r.actions,
            vec![
                ActionReq::DecTtl,
                ActionReq::SetField { field: MatchField::EthDst, masked: false },
                ActionReq::SetField { field: MatchField::IpTos, masked: true },
                ActionReq::Output { to: OutputKind::Port },
            ]
        );
        // A changed VLAN is a pop and a push; a pushed tag is pushed with its final TCI.
        assert_eq!(
            lower("dl_vlan=5,actions=mod_vlan_vid:7,output:2").actions[..2],
            [ActionReq::PopVlan, ActionReq::PushVlan]
        );
        assert_eq!(
            lower("actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2").actions,
            vec![ActionReq::PushVlan, ActionReq::Output { to: OutputKind::Port }]
        );
        assert_eq!(
            lower("ip,actions=set_field:10.0.0.5->tun_dst,set_field:0x5->tun_id,output:5").actions,
            vec![ActionReq::TunnelEncap { ipv6: false }, ActionReq::Output { to: OutputKind::Port }]
        );
    }

    #[test]
    fn vlan_and_mask_kinds() {
        assert_eq!(fields(&lower("dl_vlan=100,actions=drop")), vec![(MatchField::VlanVid, MaskKind::Exact)]);
        assert_eq!(fields(&lower("vlan_tci=0,actions=drop")), vec![(MatchField::VlanVid, MaskKind::Exact)]);
        assert_eq!(
            fields(&lower("vlan_tci=0x1000/0x1000,actions=drop")),
            vec![(MatchField::VlanVid, MaskKind::Arbitrary)]
        );
        let r = lower("ip,nw_src=10.0.0.0/8,nw_dst=10.0.0.0/255.0.255.0,actions=drop");
        assert!(fields(&r).contains(&(MatchField::Ipv4Src, MaskKind::Prefix)));
        assert!(fields(&r).contains(&(MatchField::Ipv4Dst, MaskKind::Arbitrary)));
        let r = lower("ip,ip_dscp=8,actions=drop");
        assert!(fields(&r).contains(&(MatchField::IpTos, MaskKind::Prefix)), "DSCP is the TOS byte's top bits");
    }

    #[test]
    fn outputs_by_kind() {
        let r = lower("ip,in_port=2,actions=IN_PORT,LOCAL,NORMAL,controller,output:3");
        assert_eq!(
            r.actions,
            vec![
                ActionReq::Output { to: OutputKind::InPort },
                ActionReq::Output { to: OutputKind::Local },
                ActionReq::Output { to: OutputKind::Multiple },
                ActionReq::Controller,
                ActionReq::Output { to: OutputKind::Port },
            ]
        );
    }
}
