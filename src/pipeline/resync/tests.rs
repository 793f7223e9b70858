use super::*;
use crate::openflow::field::Value;
use crate::openflow::oxm::MatchEntry;
use crate::pipeline::cookie::make;

/// Whether two matches are the same to OVS (what [`FlowIdentity`] compares).
fn same_match(a: &Match, b: &Match) -> bool {
    MatchKey::new(a) == MatchKey::new(b)
}

fn fm(text: &str) -> FlowMod {
    FlowMod::parse(text, FlowModCommand::Add).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A switch flow as a flow-stats entry (what OVS would report for `text`).
fn stats_of(f: &FlowMod) -> FlowStats {
    FlowStats {
        table_id: f.table_id,
        duration_sec: 12,
        duration_nsec: 0,
        priority: f.priority,
        idle_timeout: f.idle_timeout,
        hard_timeout: f.hard_timeout,
        flags: f.flags & STATE_FLAGS,
        cookie: f.cookie,
        packet_count: 3,
        byte_count: 180,
        r#match: f.r#match.clone(),
        instructions: f.instructions.clone(),
    }
}

fn st(text: &str) -> FlowStats {
    stats_of(&fm(text))
}

fn c(gen: u16, cat: Category, obj: u64) -> String {
    format!("{:#x}", make(gen, cat, obj))
}

#[test]
fn identical_sets_plan_nothing() {
    let d = vec![
        fm(&format!("table=0,priority=0,cookie={},actions=resubmit(,250)", c(1, Category::Dispatch, 0))),
        fm(&format!("table=250,priority=10,cookie={},reg15=0,actions=controller(id=1)", c(1, Category::Dispatch, 1))),
        fm(&format!(
            "table=3,priority=100,cookie={},tcp,nw_dst=10.0.0.1,tp_dst=80,actions=goto_table:4",
            c(1, Category::Pipeline, 7)
        )),
    ];
    let a: Vec<FlowStats> = d.iter().map(stats_of).collect();
    let p = plan(&d, &a, &ResyncPolicy::all());
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.unchanged, 3);
    assert!(p.messages().is_empty());
}

#[test]
fn missing_flows_are_added_as_desired() {
    let d = vec![
        fm(&format!("table=1,priority=5,cookie={},ip,actions=drop", c(2, Category::Pipeline, 1))),
        fm(&format!("table=1,priority=6,cookie={},ip,actions=drop", c(2, Category::Pipeline, 2))),
    ];
    let a = vec![stats_of(&d[0])];
    let p = plan(&d, &a, &ResyncPolicy::all());
    assert_eq!(p.adds, vec![d[1].clone()]);
    assert_eq!(p.unchanged, 1);
    assert!(p.deletes.is_empty() && p.changed.is_empty());
    // A desired flow given with another command still goes out as an ADD.
    let mut m = d[1].clone();
    m.command = FlowModCommand::ModifyStrict;
    let p = plan(&[m], &[], &ResyncPolicy::all());
    assert_eq!(p.adds[0].command, FlowModCommand::Add);
}

#[test]
fn changed_flows_are_replaced_with_what_differed() {
    let ck = c(3, Category::Pipeline, 9);
    let want = fm(&format!("table=2,priority=50,cookie={ck},idle_timeout=10,send_flow_rem,udp,actions=output:2"));
    let cases: Vec<(String, &str)> = vec![
        (format!("table=2,priority=50,cookie={ck},idle_timeout=10,send_flow_rem,udp,actions=output:3"), "instructions"),
        (
            format!(
                "table=2,priority=50,cookie={},idle_timeout=10,send_flow_rem,udp,actions=output:2",
                c(2, Category::Pipeline, 9)
            ),
            "cookie",
        ),
        (format!("table=2,priority=50,cookie={ck},idle_timeout=11,send_flow_rem,udp,actions=output:2"), "idle_timeout"),
        (
            format!(
                "table=2,priority=50,cookie={ck},idle_timeout=10,hard_timeout=5,send_flow_rem,udp,actions=output:2"
            ),
            "hard_timeout",
        ),
        (format!("table=2,priority=50,cookie={ck},idle_timeout=10,udp,actions=output:2"), "flags"),
        (
            "table=2,priority=50,cookie=0x5,idle_timeout=0,udp,actions=drop".to_string(),
            "instructions+cookie+idle_timeout+flags",
        ),
    ];
    for (on_switch, what) in cases {
        let p = plan(std::slice::from_ref(&want), &[st(&on_switch)], &ResyncPolicy::all());
        assert_eq!(p.changed, vec![(want.clone(), what)], "{on_switch}");
        // Replaced by an ADD, never deleted and added.
        assert!(p.adds.is_empty() && p.deletes.is_empty(), "{on_switch}");
        assert_eq!(p.messages(), vec![Message::FlowMod(want.clone())]);
    }
    // check_overlap / reset_counts are not kept by OVS: no difference.
    let w = fm(&format!("table=2,priority=50,cookie={ck},check_overlap,reset_counts,udp,actions=output:2"));
    let p = plan(
        std::slice::from_ref(&w),
        &[st(&format!("table=2,priority=50,cookie={ck},udp,actions=output:2"))],
        &ResyncPolicy::all(),
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn diff_names_list_every_bit() {
    let names = ["instructions", "cookie", "idle_timeout", "hard_timeout", "flags"];
    for (bits, s) in DIFF_NAMES.iter().enumerate() {
        let want: Vec<&str> = names.iter().enumerate().filter(|(i, _)| bits >> i & 1 == 1).map(|(_, n)| *n).collect();
        assert_eq!(*s, want.join("+"));
    }
}

#[test]
fn stale_owned_flows_are_deleted_strictly() {
    let keep = fm(&format!("table=0,priority=0,cookie={},actions=drop", c(5, Category::Dispatch, 0)));
    let stale =
        st(&format!("table=3,priority=100,cookie={},tcp,tp_dst=80,actions=goto_table:4", c(4, Category::Pipeline, 3)));
    let p = plan(std::slice::from_ref(&keep), &[stats_of(&keep), stale.clone()], &ResyncPolicy::all());
    assert_eq!(p.deletes.len(), 1);
    let d = &p.deletes[0];
    assert_eq!(d.command, FlowModCommand::DeleteStrict);
    assert_eq!((d.table_id, d.priority, d.cookie, d.cookie_mask), (3, 100, stale.cookie, u64::MAX));
    assert_eq!(d.r#match, stale.r#match);
    assert_eq!((d.out_port, d.out_group), (ANY, ANY));
    assert!(d.instructions.is_empty());
    assert_eq!(
        d.ofp_print_body(),
        format!(
            "DEL_STRICT table:3 priority=100,tcp,tp_dst=80 cookie:{:#x}/0xffffffffffffffff actions=drop",
            stale.cookie
        )
    );
}

#[test]
fn other_owners_are_kept_and_policy_limits_deletes() {
    let on_switch = vec![
        // A learned return flow (cookie 0, idle timeout) in table 6.
        st("table=6,priority=10,idle_timeout=60,tcp,nw_src=10.0.0.2,nw_dst=10.0.0.1,tp_src=80,tp_dst=3333,actions=goto_table:7"),
        // A flow added by hand without a cookie, and one with a foreign cookie.
        st("table=0,priority=200,in_port=1,actions=drop"),
        st("table=0,priority=201,cookie=0xabcd000000000000,in_port=1,actions=drop"),
        // Manual flows through shardflow's REST API.
        st(&format!("table=0,priority=300,cookie={},in_port=2,actions=drop", c(1, Category::Manual, 1))),
        // Owned flows of the three categories.
        st(&format!("table=0,priority=0,cookie={},actions=drop", c(1, Category::Dispatch, 0))),
        st(&format!("table=1,priority=1,cookie={},actions=drop", c(1, Category::Pipeline, 0))),
        st(&format!("table=3,priority=1,cookie={},ip,nw_src=10.0.0.9,actions=drop", c(1, Category::Connection, 0))),
    ];
    let cats = |p: &ResyncPlan| p.deletes.iter().map(|d| cookie::category(d.cookie).unwrap()).collect::<Vec<_>>();
    let p = plan(&[], &on_switch, &ResyncPolicy::all());
    assert_eq!(cats(&p), vec![Category::Dispatch, Category::Pipeline, Category::Connection]);
    let p = plan(&[], &on_switch, &ResyncPolicy::all().without(Category::Connection));
    assert_eq!(cats(&p), vec![Category::Dispatch, Category::Pipeline]);
    let p = plan(&[], &on_switch, &ResyncPolicy::none());
    assert!(p.is_empty());
    // Manual is never deleted, even when listed.
    let p = plan(&[], &on_switch, &ResyncPolicy::only(&[Category::Manual]));
    assert!(p.is_empty());
}

#[test]
fn identity_is_table_priority_and_match_set() {
    let ck = c(1, Category::Pipeline, 1);
    let want = fm(&format!("table=4,priority=10,cookie={ck},tcp,nw_src=10.0.0.1,tp_dst=80,actions=drop"));
    // Same entries in another order, and with all-ones masks: the same flow.
    let mut other = stats_of(&want);
    other.r#match.entries.reverse();
    for e in &mut other.r#match.entries {
        e.mask = Some(Value::ones(e.field.bytes()));
    }
    assert!(plan(std::slice::from_ref(&want), &[other], &ResyncPolicy::all()).is_empty());
    // Another priority or table or match value: another flow (added; the old one deleted).
    for t in [
        format!("table=4,priority=11,cookie={ck},tcp,nw_src=10.0.0.1,tp_dst=80,actions=drop"),
        format!("table=5,priority=10,cookie={ck},tcp,nw_src=10.0.0.1,tp_dst=80,actions=drop"),
        format!("table=4,priority=10,cookie={ck},tcp,nw_src=10.0.0.1/31,tp_dst=80,actions=drop"),
        format!("table=4,priority=10,cookie={ck},tcp,nw_src=10.0.0.1,actions=drop"),
    ] {
        let p = plan(std::slice::from_ref(&want), &[st(&t)], &ResyncPolicy::all());
        assert_eq!((p.adds.len(), p.deletes.len(), p.changed.len()), (1, 1, 0), "{t}");
    }
}

#[test]
fn match_normal_form() {
    let same = |a: Match, b: Match| assert!(same_match(&a, &b), "{a:?} vs {b:?}");
    let differ = |a: Match, b: Match| assert!(!same_match(&a, &b), "{a:?} vs {b:?}");
    // xreg / xxreg against their 32-bit registers (xreg0 = reg0 high, reg1 low).
    same(
        Match::new().with(Field::xreg(0), 0x0000_0001_0000_0002),
        Match::new().with(Field::reg(0), 1).with(Field::reg(1), 2),
    );
    same(
        Match::new().with_masked(Field::xreg(1), 0x1_0000_0002, 0xffff_0000_ffff),
        Match::new().with_masked(Field::reg(2), 1, 0xffff).with_masked(Field::reg(3), 2, 0xffff),
    );
    same(
        Match::new().with(Field::xxreg(0), 7),
        Match::new().with(Field::reg(0), 0).with(Field::reg(1), 0).with(Field::reg(2), 0).with(Field::reg(3), 7),
    );
    differ(Match::new().with(Field::reg(0), 1), Match::new().with_masked(Field::reg(0), 1, 0xff));
    // NXM in_port against OXM in_port.
    same(Match::new().with(Field::IN_PORT, 3), Match::new().with_in_port(3));
    same(Match::new().with(Field::IN_PORT, 0xfffe), Match::new().with_in_port(0xfffe));
    // nw_tos against ip_dscp.
    same(
        Match::new().with_proto(0x800, 0).with(Field::IP_DSCP_SHIFTED, 0x20),
        Match::new().with_proto(0x800, 0).with(Field::IP_DSCP, 8),
    );
    // VLAN as TCI or as VID + PCP.
    same(
        Match::new().with(Field::VLAN_VID, 0x1005).with(Field::VLAN_PCP, 3),
        Match::new().with(Field::VLAN_TCI, 0x7005),
    );
    same(Match::new().with(Field::VLAN_VID, 0x1005), Match::new().with_masked(Field::VLAN_TCI, 0x1005, 0x1fff));
    differ(Match::new().with(Field::VLAN_VID, 0x1005), Match::new().with(Field::VLAN_VID, 0x1006));
    // Value bits outside the mask, and an all-zero mask (matches anything).
    let mut m = Match::new().with_proto(0x800, 0);
    m.entries.push(MatchEntry {
        field: Field::IPV4_SRC,
        value: Value::from_u128(0x0a00_0001, 4),
        mask: Some(Value::from_u128(0xffff_ff00, 4)),
    });
    same(m, Match::new().with_proto(0x800, 0).with_ipv4(Field::IPV4_SRC, [10, 0, 0, 0], 24));
    let mut m = Match::new().with_proto(0x800, 0);
    m.entries.push(MatchEntry { field: Field::IPV4_SRC, value: Value::zero(4), mask: Some(Value::zero(4)) });
    same(m, Match::new().with_proto(0x800, 0));
    // ct_state: OVS keeps 8 bits; an exact 32-bit match equals the 0xff mask.
    let mut m = Match::new();
    m.entries.push(MatchEntry { field: Field::CT_STATE, value: Value::from_u128(0x21, 4), mask: None });
    same(m, Match::new().with_masked(Field::CT_STATE, 0x21, 0xff));
    // The text forms of equal matches print alike too (OVS's match_format).
    let a = Match::parse("tcp,tp_dst=80,nw_src=10.0.0.0/8,reg0=5").unwrap();
    let b = Match::parse("reg0=5/0xffffffff,nw_src=10.0.0.0/255.0.0.0,tp_dst=80,tcp").unwrap();
    assert!(same_match(&a, &b));
    assert_eq!(a.to_string(), b.to_string());
}

#[test]
fn instructions_compare_as_ovs_normalises() {
    let a = fm("actions=drop");
    let mut b = a.clone();
    b.instructions = vec![Instruction::ApplyActions(vec![])];
    assert!(same_instructions(&a.instructions, &b.instructions));
    assert!(!same_instructions(&fm("actions=output:1").instructions, &fm("actions=output:2").instructions));
    assert!(same_instructions(
        &fm("ip,actions=ct(commit,zone=5),goto_table:4").instructions,
        &fm("ip,actions=ct(zone=5,commit),goto_table:4").instructions
    ));
}

#[test]
fn adds_come_before_replacements_before_deletes() {
    let g1 = |cat, o| c(1, cat, o);
    let g2 = |cat, o| c(2, cat, o);
    let d = vec![
        fm(&format!("table=0,priority=0,cookie={},actions=resubmit(,250)", g2(Category::Dispatch, 0))),
        fm(&format!("table=1,priority=9,cookie={},ip,actions=goto_table:2", g2(Category::Pipeline, 1))),
        fm(&format!("table=2,priority=9,cookie={},ip,actions=drop", g2(Category::Pipeline, 2))),
    ];
    let a = vec![
        st(&format!("table=1,priority=9,cookie={},arp,actions=goto_table:2", g1(Category::Pipeline, 1))),
        st(&format!("table=0,priority=0,cookie={},actions=resubmit(,250)", g1(Category::Dispatch, 0))),
        st(&format!("table=1,priority=9,cookie={},ip,actions=goto_table:2", g2(Category::Pipeline, 1))),
    ];
    let p = plan(&d, &a, &ResyncPolicy::all());
    assert_eq!(p.adds, vec![d[2].clone()]);
    assert_eq!(p.changed, vec![(d[0].clone(), "cookie")]);
    assert_eq!(p.unchanged, 1);
    assert_eq!(p.deletes.len(), 1);
    let cmds: Vec<FlowModCommand> = p
        .messages()
        .iter()
        .map(|m| match m {
            Message::FlowMod(f) => f.command,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(cmds, vec![FlowModCommand::Add, FlowModCommand::Add, FlowModCommand::DeleteStrict]);
    let first_delete = cmds.iter().position(|c| *c == FlowModCommand::DeleteStrict).unwrap();
    assert!(cmds[..first_delete].iter().all(|c| *c == FlowModCommand::Add));
}

#[test]
fn table_255_is_never_used() {
    let mut bad = fm("actions=drop");
    bad.table_id = ALL_TABLES;
    let mut on_switch = st(&format!("priority=3,cookie={},actions=drop", c(1, Category::Pipeline, 1)));
    on_switch.table_id = ALL_TABLES;
    let p = plan(std::slice::from_ref(&bad), std::slice::from_ref(&on_switch), &ResyncPolicy::all());
    assert!(p.is_empty());
    assert_eq!(p.skipped, vec![bad]);
    assert!(adopt(&[on_switch], Category::Pipeline).is_empty());
}

#[test]
fn duplicates_in_desired_last_wins() {
    let a = fm(&format!("table=1,priority=1,cookie={},ip,actions=output:1", c(1, Category::Pipeline, 1)));
    let b = fm(&format!("table=1,priority=1,cookie={},ip,actions=output:2", c(1, Category::Pipeline, 1)));
    let p = plan(&[a.clone(), b.clone()], &[], &ResyncPolicy::all());
    assert_eq!(p.adds, vec![b.clone()]);
    let p = plan(&[a, b.clone()], &[stats_of(&b)], &ResyncPolicy::all());
    assert!(p.is_empty());
}

#[test]
fn adopted_flows_plan_as_unchanged() {
    let on_switch = vec![
        st(&format!("table=3,priority=100,cookie={},idle_timeout=300,send_flow_rem,tcp,nw_src=10.0.0.1,tp_dst=80,actions=goto_table:4", c(7, Category::Connection, 1))),
        st(&format!("table=3,priority=100,cookie={},tcp,nw_src=10.0.0.2,tp_dst=80,actions=drop", c(6, Category::Connection, 2))),
        st(&format!("table=0,priority=0,cookie={},actions=drop", c(7, Category::Dispatch, 0))),
        st("table=6,priority=5,idle_timeout=30,ip,actions=drop"),
    ];
    let conns = adopt(&on_switch, Category::Connection);
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].idle_timeout, 300);
    assert_eq!(conns[0].flags, OFPFF_SEND_FLOW_REM);
    assert!(conns.iter().all(|f| f.command == FlowModCommand::Add));
    let mut desired = conns.clone();
    desired.push(fm(&format!("table=0,priority=0,cookie={},actions=drop", c(7, Category::Dispatch, 0))));
    let p = plan(&desired, &on_switch, &ResyncPolicy::all());
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.unchanged, 3);
    // Not adopted and not managed: kept; not adopted and managed: deleted.
    let p = plan(&desired[2..], &on_switch, &ResyncPolicy::all().without(Category::Connection));
    assert!(p.is_empty());
    let p = plan(&desired[2..], &on_switch, &ResyncPolicy::all());
    assert_eq!(p.deletes.len(), 2);
}

#[test]
fn generation_is_stable_order_free_and_never_zero() {
    let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let a = t(&["table=0,priority=0,actions=drop", "table=1,ip,actions=goto_table:2"]);
    let b = t(&["table=1,ip,actions=goto_table:2", "table=0,priority=0,actions=drop"]);
    assert_eq!(generation_of(&a), generation_of(&b));
    assert_eq!(generation_of(&a), generation_of(&a.clone()));
    assert_ne!(generation_of(&a), generation_of(&t(&["table=0,priority=0,actions=drop"])));
    // Boundaries between texts count.
    assert_ne!(generation_of(&t(&["ab", "c"])), generation_of(&t(&["a", "bc"])));
    let mut seen = std::collections::HashSet::new();
    for i in 0..20_000 {
        let g = generation_of(&[format!("table={i},actions=drop")]);
        assert_ne!(g, 0);
        seen.insert(g);
    }
    // Spread: 20k inputs into 65535 values, few collisions.
    assert!(seen.len() > 17_000, "{}", seen.len());
    assert_ne!(generation_of(&[]), 0);
}
