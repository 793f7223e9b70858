//! The resync engine (`pipeline::resync`) against a real Open vSwitch: flow stats read and
//! bundles applied over the bridge's management socket with a small blocking client.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::message::bundle::{ctrl_type, BUNDLE_ATOMIC, BUNDLE_ORDERED};
use shardflow::openflow::message::multipart::MULTIPART_MORE;
use shardflow::openflow::message::{
    self, BundleAdd, BundleControl, FlowStats, FlowStatsRequest, Header, Hello, Message, MultipartReplyBody,
    MultipartRequest, MultipartRequestBody,
};
use shardflow::pipeline::cookie::{self, Category};
use shardflow::pipeline::dispatch::{self, Mode};
use shardflow::pipeline::resync::{self, ResyncPlan, ResyncPolicy};
use support::{wait_until, Ovs};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking OpenFlow 1.3 connection to a bridge's management socket.
struct Client {
    s: UnixStream,
    buf: Vec<u8>,
    xid: u32,
    /// Every message sent, with its xid (for order checks).
    sent: Vec<(u32, Message)>,
}

impl Client {
    fn connect(ovs: &Ovs, br: &str) -> Client {
        let s = UnixStream::connect(ovs.path(&format!("{br}.mgmt"))).expect("connect to the management socket");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client { s, buf: Vec::new(), xid: 100, sent: Vec::new() };
        c.send(Message::Hello(Hello::with_bitmap(1 << 4)));
        loop {
            let (h, m) = c.recv();
            if let Message::Hello(_) = m {
                assert!(h.version >= 4, "bridge does not speak OpenFlow 1.3");
                return c;
            }
        }
    }

    fn send(&mut self, m: Message) -> u32 {
        self.xid += 1;
        self.s.write_all(&message::encode(&m, self.xid)).unwrap();
        self.sent.push((self.xid, m));
        self.xid
    }

    fn recv(&mut self) -> (Header, Message) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(n) = message::frame_len(&self.buf).unwrap() {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let (h, m) = message::decode(&frame).unwrap_or_else(|e| panic!("undecodable message: {e}"));
                if let Message::EchoRequest(d) = &m {
                    self.s.write_all(&message::encode(&Message::EchoReply(d.clone()), h.xid)).unwrap();
                    continue;
                }
                return (h, m);
            }
            assert!(Instant::now() < deadline, "timed out waiting for the switch");
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "switch closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The reply to `xid` (other messages skipped); an OFPT_ERROR for it panics.
    fn reply(&mut self, xid: u32) -> Message {
        loop {
            let (h, m) = self.recv();
            if h.xid != xid {
                continue;
            }
            if let Message::Error(e) = &m {
                panic!("switch answered xid {xid} with {}", e.code);
            }
            return m;
        }
    }

    /// Every flow of every table.
    fn flows(&mut self) -> Vec<FlowStats> {
        let xid = self.send(Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(
            FlowStatsRequest::default(),
        ))));
        let mut out = Vec::new();
        loop {
            match self.reply(xid) {
                Message::MultipartReply(r) => {
                    if let MultipartReplyBody::Flow(f) = r.body {
                        out.extend(f);
                    }
                    if r.flags & MULTIPART_MORE == 0 {
                        return out;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Applies `msgs` in one atomic, ordered ONF bundle; returns the xids of the adds.
    fn bundle(&mut self, msgs: Vec<Message>) -> Vec<u32> {
        let id = self.xid + 1;
        let flags = BUNDLE_ATOMIC | BUNDLE_ORDERED;
        let ctrl = |t| Message::BundleControl(BundleControl { bundle_id: id, ctrl_type: t, flags, properties: vec![] });
        let x = self.send(ctrl(ctrl_type::OPEN_REQUEST));
        assert!(matches!(self.reply(x), Message::BundleControl(c) if c.ctrl_type == ctrl_type::OPEN_REPLY));
        let mut xids = Vec::new();
        for m in msgs {
            xids.push(self.send(Message::BundleAdd(BundleAdd {
                bundle_id: id,
                flags,
                message: Box::new(m),
                properties: vec![],
            })));
        }
        // Adds are answered only by errors: a barrier shows none came.
        let b = self.send(Message::BarrierRequest);
        loop {
            let (h, m) = self.recv();
            if let Message::Error(e) = &m {
                panic!("bundle add xid {} refused: {}", h.xid, e.code);
            }
            if h.xid == b && m == Message::BarrierReply {
                break;
            }
        }
        let x = self.send(ctrl(ctrl_type::COMMIT_REQUEST));
        assert!(matches!(self.reply(x), Message::BundleControl(c) if c.ctrl_type == ctrl_type::COMMIT_REPLY));
        xids
    }

    /// The flow_mods of the last bundle as sent on the wire, in order.
    fn bundled_flow_mods(&self, xids: &[u32]) -> Vec<FlowMod> {
        self.sent
            .iter()
            .filter(|(x, _)| xids.contains(x))
            .map(|(_, m)| match m {
                Message::BundleAdd(a) => match a.message.as_ref() {
                    Message::FlowMod(f) => f.clone(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect()
    }
}

fn c(gen: u16, cat: Category, obj: u64) -> String {
    format!("{:#x}", cookie::make(gen, cat, obj))
}

/// The desired pipeline of generation `gen`, as flow text: the dispatch flows, a spread of
/// pipeline flows (conntrack, learn, registers, masks, IPv6, VLAN, timeouts, flags) and two
/// connection flows.
fn desired_texts(gen: u16) -> Vec<String> {
    let p = |o| c(gen, Category::Pipeline, o);
    let k = |o| c(gen, Category::Connection, o);
    let mut v = dispatch::flow_texts(Mode::Fanout, 2, gen);
    v.extend([
        format!("table=0,priority=100,cookie={},in_port=1,ip,actions=goto_table:1", p(1)),
        format!("table=0,priority=90,cookie={},arp,actions=NORMAL", p(2)),
        format!("table=0,priority=80,cookie={},ip,nw_tos=32,actions=controller", p(3)),
        format!("table=1,priority=50,cookie={},tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:2", p(4)),
        format!(
            "table=1,priority=40,cookie={},ct_state=+new+trk,tcp,actions=ct(commit,zone=5,exec(set_field:0x1->ct_mark)),goto_table:2",
            p(5)
        ),
        format!("table=1,priority=30,cookie={},ct_state=-trk,ip,actions=ct(table=2,zone=5)", p(6)),
        format!("table=2,priority=10,cookie={},reg0=0x5/0xff,ip,actions=set_field:0x2->reg1,write_metadata:0x1/0xff,goto_table:3", p(7)),
        format!("table=3,priority=10,cookie={},idle_timeout=300,send_flow_rem,udp6,ipv6_dst=fd00::1,udp_dst=53,actions=drop", p(8)),
        format!("table=4,priority=10,cookie={},dl_vlan=5,actions=pop_vlan,output:1", p(9)),
        format!(
            "table=5,priority=10,cookie={},tcp,actions=learn(table=6,idle_timeout=60,priority=10,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],load:0x1->NXM_NX_REG0[]),goto_table:6",
            p(10)
        ),
        format!("table=7,priority=5,cookie={},xreg1=0x100000002,actions=drop", p(11)),
        format!("table=7,priority=6,cookie={},hard_timeout=3600,ip,nw_src=192.168.0.0/16,actions=mod_nw_dst:10.0.0.9,output:2", p(12)),
        format!("table=3,priority=100,cookie={},tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80,actions=goto_table:4", k(1)),
        format!("table=3,priority=100,cookie={},idle_timeout=120,tcp,nw_src=10.0.0.3,nw_dst=10.0.0.2,tp_dst=80,actions=goto_table:4", k(2)),
    ]);
    v
}

fn parse(texts: &[String]) -> Vec<FlowMod> {
    texts.iter().map(|t| FlowMod::parse(t, FlowModCommand::Add).unwrap_or_else(|e| panic!("{t}: {e}"))).collect()
}

/// Flows of other owners: a learned-like flow (cookie 0, idle timeout), a foreign cookie, and a
/// Manual flow.
fn foreign_texts() -> Vec<String> {
    vec![
        "table=6,priority=10,idle_timeout=600,tcp,nw_src=10.0.0.2,nw_dst=10.0.0.1,actions=load:0x1->NXM_NX_REG0[]"
            .into(),
        "table=0,priority=200,cookie=0xabcd000000000000,in_port=2,actions=drop".into(),
        format!("table=0,priority=300,cookie={},in_port=2,udp,actions=drop", c(1, Category::Manual, 1)),
    ]
}

/// `dump-flows --no-stats` lines for these flows, sorted (what `Ovs::flows` returns).
fn texts_of(flows: &[FlowMod]) -> Vec<String> {
    let mut v: Vec<String> = flows.iter().map(FlowMod::to_flow_text).collect();
    v.sort();
    v
}

fn generation() -> u16 {
    resync::generation_of(&desired_texts(0))
}

fn describe(p: &ResyncPlan) -> String {
    let mut s = String::new();
    for a in &p.adds {
        s.push_str(&format!("ADD{}\n", a.to_flow_text()));
    }
    for (a, what) in &p.changed {
        s.push_str(&format!("CHANGED({what}){}\n", a.to_flow_text()));
    }
    for d in &p.deletes {
        s.push_str(&format!("{}\n", d.ofp_print_body()));
    }
    s
}

/// Installs the desired set (a plan against an empty bridge) plus the foreign flows.
fn install(ovs: &Ovs, client: &mut Client, desired: &[FlowMod]) {
    for t in foreign_texts() {
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", &t]);
    }
    let p = resync::plan(desired, &client.flows(), &ResyncPolicy::all());
    assert_eq!((p.adds.len(), p.changed.len(), p.deletes.len()), (desired.len(), 0, 0), "{}", describe(&p));
    client.bundle(p.messages());
}

/// (1) A desired set installed, then planned against the switch: nothing to do. This is the
/// check that the identity and the comparison agree with how OVS stores and reports flows.
#[test]
fn installed_set_plans_empty() {
    let ovs = Ovs::start(&["br0"]);
    let mut client = Client::connect(&ovs, "br0");
    let desired = parse(&desired_texts(generation()));
    install(&ovs, &mut client, &desired);
    let actual = client.flows();
    assert_eq!(actual.len(), desired.len() + foreign_texts().len());
    let p = resync::plan(&desired, &actual, &ResyncPolicy::all());
    assert!(p.is_empty(), "plan against the installed set is not empty:\n{}", describe(&p));
    assert_eq!(p.unchanged, desired.len());
    // What the switch dumps is what we meant to install (and what adopt gives back).
    let mut want = texts_of(&desired);
    want.extend(texts_of(&parse(&foreign_texts())));
    want.sort();
    assert_eq!(ovs.flows("br0"), want);
    let adopted = resync::adopt(&actual, Category::Connection);
    assert_eq!(texts_of(&adopted), texts_of(&desired[desired.len() - 2..]));
    assert!(resync::plan(
        &adopted,
        &actual,
        &ResyncPolicy::all().without(Category::Pipeline).without(Category::Dispatch)
    )
    .is_empty());
}

/// A desired flow built by hand in a form OVS normalises (fields out of OVS's order, all-ones
/// masks, NXM `in_port`, an `xreg`, an empty apply-actions): OVS stores and reports it
/// differently, and the plan still sees it as the same, unchanged flow.
#[test]
fn hand_built_flow_in_unnormal_form_plans_empty() {
    use shardflow::openflow::field::{Field, Value};
    use shardflow::openflow::instruction::Instruction;
    use shardflow::openflow::oxm::{Match, MatchEntry};
    let ovs = Ovs::start(&["br0"]);
    let mut client = Client::connect(&ovs, "br0");
    let mut f = FlowMod::new(FlowModCommand::Add);
    f.table_id = 9;
    f.priority = 77;
    f.cookie = cookie::make(generation(), Category::Pipeline, 99);
    let e = |field: Field, v: u128, mask: Option<u128>| MatchEntry {
        field,
        value: Value::from_u128(v, field.bytes()),
        mask: mask.map(|m| Value::from_u128(m, field.bytes())),
    };
    f.r#match = Match {
        entries: vec![
            e(Field::xreg(0), 0x0000_0007_0000_0008, None),
            e(Field::ETH_TYPE, 0x800, None),
            e(Field::IPV4_DST, 0x0a00_0001, Some(0xffff_ffff)),
            e(Field::IN_PORT, 2, None),
        ],
        unknown: vec![],
    };
    f.instructions = vec![Instruction::ApplyActions(vec![])];
    client.bundle(vec![Message::FlowMod(f.clone())]);
    let actual = client.flows();
    assert_eq!(actual.len(), 1);
    // OVS really did store it in another form.
    assert_ne!(actual[0].r#match, f.r#match);
    let p = resync::plan(std::slice::from_ref(&f), &actual, &ResyncPolicy::all());
    assert!(p.is_empty(), "{}", describe(&p));
    assert_eq!(p.unchanged, 1);
    assert_eq!(
        ovs.flows("br0"),
        vec![format!(
            " cookie={:#x}, table=9, priority=77,ip,reg0=0x7,reg1=0x8,in_port=2,nw_dst=10.0.0.1 actions=drop",
            f.cookie
        )]
    );
}

/// (2) A stale flow of an old generation appears and a desired flow disappears: one bundle
/// deletes the first, re-adds the second (adds before deletes), and the switch equals the
/// desired set again, foreign flows untouched. (4) The bundle as sent: adds, then deletes.
#[test]
fn stale_and_missing_flows_are_fixed_in_one_bundle() {
    let ovs = Ovs::start(&["br0"]);
    let mut client = Client::connect(&ovs, "br0");
    let gen = generation();
    let desired = parse(&desired_texts(gen));
    install(&ovs, &mut client, &desired);
    let old = gen.wrapping_sub(1).max(1);
    let stale = format!("table=1,priority=45,cookie={},udp,actions=output:1", c(old, Category::Pipeline, 77));
    let stale_conn =
        format!("table=3,priority=100,cookie={},tcp,nw_src=10.0.0.9,actions=drop", c(old, Category::Connection, 78));
    for t in [&stale, &stale_conn] {
        ovs.ok("ovs-ofctl", &["-O", "OpenFlow13", "add-flow", "br0", t]);
    }
    ovs.ok(
        "ovs-ofctl",
        &["-O", "OpenFlow13", "del-flows", "--strict", "br0", "table=1,priority=50,tcp,nw_dst=10.0.0.0/24,tp_dst=80"],
    );

    let p = resync::plan(&desired, &client.flows(), &ResyncPolicy::all());
    assert_eq!(p.adds.len(), 1, "{}", describe(&p));
    assert_eq!(p.adds[0].to_flow_text(), desired[6].to_flow_text());
    assert!(p.changed.is_empty(), "{}", describe(&p));
    assert_eq!(p.deletes.len(), 2, "{}", describe(&p));
    // Connection flows are left alone when the policy does not manage them.
    let q = resync::plan(&desired, &client.flows(), &ResyncPolicy::all().without(Category::Connection));
    assert_eq!(q.deletes.len(), 1, "{}", describe(&q));

    let xids = client.bundle(p.messages());
    // (4) One bundle, adds strictly before deletes.
    let sent: Vec<FlowModCommand> = client.bundled_flow_mods(&xids).iter().map(|f| f.command).collect();
    assert_eq!(sent, vec![FlowModCommand::Add, FlowModCommand::DeleteStrict, FlowModCommand::DeleteStrict]);

    let mut want = texts_of(&desired);
    want.extend(texts_of(&parse(&foreign_texts())));
    want.sort();
    assert_eq!(ovs.flows("br0"), want);
    assert!(resync::plan(&desired, &client.flows(), &ResyncPolicy::all()).is_empty());
}

/// (3) A flow changed on the switch (other actions, same match) is replaced by an ADD, never
/// deleted and re-added: its packet counter survives. A new generation replaces every flow's
/// cookie the same way and deletes what the new set no longer has.
#[test]
fn changed_flow_is_replaced_in_place() {
    let ovs = Ovs::start(&["br0"]);
    let mut client = Client::connect(&ovs, "br0");
    let gen = generation();
    let desired = parse(&desired_texts(gen));
    install(&ovs, &mut client, &desired);
    ovs.ok(
        "ovs-ofctl",
        &[
            "-O",
            "OpenFlow13",
            "mod-flows",
            "--strict",
            "br0",
            "table=1,priority=50,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:1",
        ],
    );
    // Traffic through the changed flow, so that a delete + add would show (counter back to 0).
    let pkt = "in_port(1),eth(src=50:54:00:00:00:01,dst=50:54:00:00:00:02),eth_type(0x0800),ipv4(src=10.0.0.7,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=1234,dst=80)";
    let key = resync::FlowIdentity::of_flow_mod(&desired[6]);
    let count = |client: &mut Client| {
        client.flows().iter().find(|f| resync::FlowIdentity::of_stats(f) == key).map(|f| f.packet_count).unwrap_or(0)
    };
    for _ in 0..3 {
        ovs.ok("ovs-appctl", &["netdev-dummy/receive", "br0-p1", pkt]);
    }
    assert!(wait_until(Duration::from_secs(5), || count(&mut client) >= 3), "counter {}", count(&mut client));

    let p = resync::plan(&desired, &client.flows(), &ResyncPolicy::all());
    assert_eq!(p.changed.len(), 1, "{}", describe(&p));
    assert_eq!(p.changed[0].1, "instructions");
    assert!(p.adds.is_empty() && p.deletes.is_empty(), "{}", describe(&p));
    assert!(p.messages().iter().all(|m| matches!(m, Message::FlowMod(f) if f.command == FlowModCommand::Add)));
    client.bundle(p.messages());
    assert!(resync::plan(&desired, &client.flows(), &ResyncPolicy::all()).is_empty());
    assert!(count(&mut client) >= 3, "the replaced flow lost its counter: it was deleted and added");

    // A new generation: every kept flow's cookie changes in place, a dropped flow goes.
    let gen2 = gen.wrapping_add(1).max(1);
    let mut texts2 = desired_texts(gen2);
    let dropped = texts2.remove(8);
    assert!(dropped.contains("priority=30"));
    let desired2 = parse(&texts2);
    let p = resync::plan(&desired2, &client.flows(), &ResyncPolicy::all());
    assert!(p.adds.is_empty(), "{}", describe(&p));
    assert_eq!(p.changed.len(), desired2.len(), "{}", describe(&p));
    assert!(p.changed.iter().all(|(_, w)| *w == "cookie"), "{}", describe(&p));
    assert_eq!(p.deletes.len(), 1);
    assert_eq!(cookie::generation(p.deletes[0].cookie), gen);
    client.bundle(p.messages());
    let after = client.flows();
    assert!(resync::plan(&desired2, &after, &ResyncPolicy::all()).is_empty(), "OVS did not take the new cookies");
    assert!(count(&mut client) >= 3, "a cookie change lost the counter");
    let mut want = texts_of(&desired2);
    want.extend(texts_of(&parse(&foreign_texts())));
    want.sort();
    assert_eq!(ovs.flows("br0"), want);
}
