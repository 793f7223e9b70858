//! The OVSDB client against a real ovsdb-server (a private sandbox per test): transact (results
//! and an operation's error), monitor (initial rows, then rows added and removed by
//! `ovs-vsctl`), unix and tcp, on a current-thread runtime as the CNI plugin uses it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use shardflow::ovsdb::{datum, Client, Monitor, OvsdbAddr, OvsdbError, TableCache, VSWITCH_DB};
use support::Ovs;

/// Waits (bounded) for a monitored state that satisfies `cond`.
async fn until(m: &mut Monitor, what: &str, cond: impl Fn(&TableCache) -> bool) -> std::sync::Arc<TableCache> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = m.current();
    while !cond(&now) {
        let left = deadline.saturating_duration_since(Instant::now());
        now = match tokio::time::timeout(left, m.changed()).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("not seen within 10 s: {what}; cache: {now:?}"),
        };
    }
    now
}

fn iface<'a>(c: &'a TableCache, name: &str) -> Option<&'a shardflow::ovsdb::Row> {
    c.table("Interface").map(|(_, r)| r).find(|r| r.get("name").and_then(datum::string) == Some(name))
}

#[tokio::test]
async fn transact_and_monitor_over_unix() {
    let ovs = Ovs::start(&["br0"]);
    let addr = OvsdbAddr::parse(&ovs.db()).unwrap();
    let mut c = Client::connect(&addr).await.unwrap();

    let dbs = c.call("list_dbs", json!([])).await.unwrap();
    assert!(dbs.as_array().unwrap().contains(&json!("Open_vSwitch")), "{dbs}");

    let r = c
        .transact(
            VSWITCH_DB,
            vec![json!({"op": "select", "table": "Bridge", "where": [["name", "==", "br0"]], "columns": ["name", "fail_mode"]})],
        )
        .await
        .unwrap();
    assert_eq!(r[0]["rows"][0]["name"], "br0");
    assert_eq!(r[0]["rows"][0]["fail_mode"], "secure");

    // The second operation fails (a `wait` whose condition does not hold): named by its index.
    let e = c
        .transact(
            VSWITCH_DB,
            vec![
                json!({"op": "select", "table": "Bridge", "where": [], "columns": ["name"]}),
                json!({"op": "wait", "table": "Bridge", "timeout": 0, "where": [["name", "==", "br0"]],
                       "columns": ["fail_mode"], "until": "==", "rows": [{"fail_mode": "standalone"}]}),
            ],
        )
        .await
        .unwrap_err();
    match &e {
        OvsdbError::Operation { index, error, .. } => assert_eq!((*index, error.as_str()), (1, "timed out")),
        other => panic!("{other:?}"),
    }
    // A request the server refuses as a whole.
    let e = c.transact("NoSuchDb", vec![]).await.unwrap_err();
    assert!(matches!(&e, OvsdbError::Rpc { error, .. } if error == "unknown database"), "{e:?}");

    let mut m = c
        .monitor(VSWITCH_DB, &[("Bridge", &["name", "ports"]), ("Interface", &["name", "ofport", "external_ids"])])
        .await
        .unwrap();
    let first = m.current();
    assert!(iface(&first, "br0-p1").is_some(), "{first:?}");
    assert_eq!(first.table("Bridge").count(), 1);

    ovs.ok(
        "ovs-vsctl",
        &["add-port", "br0", "pod1", "--", "set", "interface", "pod1", "type=dummy", "external_ids:pod-name=web"],
    );
    let now = until(&mut m, "pod1 numbered", |c| {
        iface(c, "pod1").and_then(|r| r.get("ofport")).and_then(datum::integer).is_some_and(|n| n > 0)
    })
    .await;
    let ids = datum::string_map(&iface(&now, "pod1").unwrap()["external_ids"]).into_iter().collect::<Vec<_>>();
    assert_eq!(ids, vec![("pod-name", "web")]);

    ovs.ok("ovs-vsctl", &["del-port", "br0", "pod1"]);
    until(&mut m, "pod1 gone", |c| iface(c, "pod1").is_none()).await;
    assert!(c.stats().pending_refused() == 0);
}

#[tokio::test]
async fn tcp_remote_and_closed_connection() {
    let ovs = Ovs::start(&["br0"]);
    let port = support::free_port();
    ovs.ok("ovs-appctl", &["-t", "ovsdb-server", "ovsdb-server/add-remote", &format!("ptcp:{port}:127.0.0.1")]);
    let addr = OvsdbAddr::parse(&format!("tcp:127.0.0.1:{port}")).unwrap();
    // The remote is added asynchronously: retry the connect for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        match Client::connect(&addr).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let r = c.transact(VSWITCH_DB, vec![json!({"op": "select", "table": "Open_vSwitch", "where": []})]).await.unwrap();
    assert_eq!(r[0]["rows"].as_array().unwrap().len(), 1);
    let mut m = c.monitor(VSWITCH_DB, &[("Bridge", &["name"])]).await.unwrap();

    // The server goes away: the monitor ends, calls fail with Closed.
    ovs.stop_ovsdb();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = m.changed().await {
                return e;
            }
        }
    })
    .await
    .expect("monitor did not end after ovsdb-server stopped");
    assert!(matches!(end, OvsdbError::Closed), "{end:?}");
    let e = c.transact(VSWITCH_DB, vec![]).await.unwrap_err();
    assert!(matches!(e, OvsdbError::Closed), "{e:?}");

    // Nothing listens: connect fails with the address named.
    let e = Client::connect(&OvsdbAddr::parse(&ovs.db()).unwrap()).await.err().unwrap();
    assert!(e.to_string().contains("db.sock"), "{e}");
}
