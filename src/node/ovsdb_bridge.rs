//! The node's bridge as the daemon needs it, as OVSDB operations: no IO here. The agent reads
//! the current rows with [`read_ops`], turns the answer into [`Current`], and sends the
//! operations [`ensure_ops`] returns (none when the bridge is already right, so a second start
//! writes nothing).
//!
//! What "right" is: `datapath_type` as configured (or detected), `protocols=OpenFlow13`,
//! `fail_mode=secure` (a bridge without its controller must not turn into a learning switch),
//! and exactly the daemon's OpenFlow listeners as controllers, each `connection_mode=out-of-band`.
//! Other columns, other bridges and the bridge's ports are left alone.

use serde_json::{json, Value};

use crate::ovsdb::{datum, OvsdbError};

/// What the bridge must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    /// `system` or `netdev`.
    pub datapath_type: String,
    /// Controller targets (`tcp:127.0.0.1:6653`), one per shard in fan-out mode.
    pub controllers: Vec<String>,
}

/// The bridge as the database has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The `Open_vSwitch` row (absent before `ovs-vsctl init`).
    pub ovs_uuid: Option<String>,
    /// `Open_vSwitch.datapath_types`: what ovs-vswitchd offers (empty before it runs).
    pub datapath_types: Vec<String>,
    pub bridge: Option<BridgeRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeRow {
    pub uuid: String,
    pub datapath_type: String,
    pub protocols: Vec<String>,
    pub fail_mode: Option<String>,
    /// `(target, connection_mode)` of each of its controllers.
    pub controllers: Vec<(String, Option<String>)>,
}

/// The reads that [`Current::from_results`] understands.
pub fn read_ops(bridge: &str) -> Vec<Value> {
    vec![
        json!({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["_uuid", "datapath_types"]}),
        json!({"op": "select", "table": "Bridge", "where": [["name", "==", bridge]],
               "columns": ["_uuid", "datapath_type", "protocols", "fail_mode", "controller"]}),
        json!({"op": "select", "table": "Controller", "where": [], "columns": ["_uuid", "target", "connection_mode"]}),
    ]
}

impl Current {
    /// From the results of [`read_ops`].
    pub fn from_results(r: &[Value]) -> Result<Current, OvsdbError> {
        let rows = |i: usize| -> Result<&Vec<Value>, OvsdbError> {
            r.get(i)
                .and_then(|x| x.get("rows"))
                .and_then(Value::as_array)
                .ok_or_else(|| OvsdbError::Protocol(format!("select {i} answered without rows")))
        };
        let ovs = rows(0)?.first();
        let ovs_uuid = ovs.and_then(|o| o.get("_uuid")).and_then(datum::uuid).map(str::to_string);
        let datapath_types = ovs
            .and_then(|o| o.get("datapath_types"))
            .map(|v| datum::strings(v).into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        let controllers = rows(2)?;
        let bridge = rows(1)?.first().map(|b| {
            let refs = b.get("controller").map(datum::uuids).unwrap_or_default();
            BridgeRow {
                uuid: b.get("_uuid").and_then(datum::uuid).unwrap_or_default().to_string(),
                datapath_type: b.get("datapath_type").and_then(datum::string).unwrap_or_default().to_string(),
                protocols: b
                    .get("protocols")
                    .map(|v| datum::strings(v).into_iter().map(str::to_string).collect())
                    .unwrap_or_default(),
                fail_mode: b.get("fail_mode").and_then(datum::string).map(str::to_string),
                controllers: controllers
                    .iter()
                    .filter(|c| c.get("_uuid").and_then(datum::uuid).is_some_and(|u| refs.contains(&u)))
                    .map(|c| {
                        (
                            c.get("target").and_then(datum::string).unwrap_or_default().to_string(),
                            c.get("connection_mode").and_then(datum::string).map(str::to_string),
                        )
                    })
                    .collect(),
            }
        });
        Ok(Current { ovs_uuid, datapath_types, bridge })
    }
}

/// `system` when the kernel datapath can be used: the `openvswitch` module is loaded and
/// ovs-vswitchd offers `system` (or has not said yet). `netdev` (userspace) otherwise.
/// (ovs-vswitchd lists `system` even when started with `--disable-system`, so its list alone
/// is not enough.)
pub fn detect_datapath(datapath_types: &[String], kernel_module_loaded: bool) -> &'static str {
    let offered = datapath_types.is_empty() || datapath_types.iter().any(|t| t == "system");
    if kernel_module_loaded && offered {
        "system"
    } else {
        "netdev"
    }
}

/// The datapath for `datapath_type = "auto"`: an existing bridge keeps its datapath when it
/// can work here (`netdev` always; `system` with the kernel module), so a deliberate choice is
/// not undone; a new bridge, or one on a datapath that cannot work, gets [`detect_datapath`].
pub fn auto_datapath(cur: &Current, kernel_module_loaded: bool) -> &'static str {
    match cur.bridge.as_ref().map(|b| b.datapath_type.as_str()) {
        Some("netdev") => "netdev",
        Some("system" | "") if kernel_module_loaded => "system",
        _ => detect_datapath(&cur.datapath_types, kernel_module_loaded),
    }
}

/// The operations that make the bridge as `spec` says; empty when it already is.
pub fn ensure_ops(spec: &BridgeSpec, cur: &Current) -> Vec<Value> {
    let mut ops = Vec::new();
    let ctl_names: Vec<String> = (0..spec.controllers.len()).map(|i| format!("ctl{i}")).collect();
    let insert_controllers = |ops: &mut Vec<Value>| {
        for (t, n) in spec.controllers.iter().zip(&ctl_names) {
            ops.push(json!({"op": "insert", "table": "Controller", "uuid-name": n,
                            "row": {"target": t, "connection_mode": "out-of-band"}}));
        }
    };
    let ctl_set = || json!(["set", ctl_names.iter().map(|n| datum::named_uuid(n)).collect::<Vec<_>>()]);
    match &cur.bridge {
        None => {
            // Fails (and nothing is written) if another client created it meanwhile.
            ops.push(json!({"op": "wait", "table": "Bridge", "timeout": 0, "where": [["name", "==", spec.name]],
                            "columns": ["name"], "until": "==", "rows": []}));
            // As `ovs-vsctl add-br` does: the bridge's own internal port, named as the bridge.
            ops.push(json!({"op": "insert", "table": "Interface", "uuid-name": "iface",
                            "row": {"name": spec.name, "type": "internal"}}));
            ops.push(json!({"op": "insert", "table": "Port", "uuid-name": "port",
                            "row": {"name": spec.name, "interfaces": datum::named_uuid("iface")}}));
            insert_controllers(&mut ops);
            ops.push(json!({"op": "insert", "table": "Bridge", "uuid-name": "br", "row": {
                "name": spec.name,
                "ports": datum::named_uuid("port"),
                "datapath_type": spec.datapath_type,
                "protocols": datum::string_set(["OpenFlow13"]),
                "fail_mode": "secure",
                "controller": ctl_set(),
            }}));
            ops.push(match &cur.ovs_uuid {
                Some(u) => {
                    json!({"op": "mutate", "table": "Open_vSwitch", "where": [["_uuid", "==", datum::uuid_ref(u)]],
                                  "mutations": [["bridges", "insert", ["set", [datum::named_uuid("br")]]]]})
                }
                None => json!({"op": "insert", "table": "Open_vSwitch", "row": {"bridges": datum::named_uuid("br")}}),
            });
        }
        Some(b) => {
            let mut row = serde_json::Map::new();
            let dt_now = if b.datapath_type.is_empty() { "system" } else { b.datapath_type.as_str() };
            if dt_now != spec.datapath_type {
                row.insert("datapath_type".into(), json!(spec.datapath_type));
            }
            if b.protocols != ["OpenFlow13"] {
                row.insert("protocols".into(), datum::string_set(["OpenFlow13"]));
            }
            if b.fail_mode.as_deref() != Some("secure") {
                row.insert("fail_mode".into(), json!("secure"));
            }
            let mut have: Vec<&str> = b.controllers.iter().map(|(t, _)| t.as_str()).collect();
            let mut want: Vec<&str> = spec.controllers.iter().map(String::as_str).collect();
            have.sort_unstable();
            want.sort_unstable();
            let modes_ok = b.controllers.iter().all(|(_, m)| m.as_deref() == Some("out-of-band"));
            if have != want || !modes_ok {
                // New rows; the old ones, no longer referenced, are garbage-collected.
                insert_controllers(&mut ops);
                row.insert("controller".into(), ctl_set());
            }
            if !row.is_empty() {
                ops.push(
                    json!({"op": "update", "table": "Bridge", "where": [["_uuid", "==", datum::uuid_ref(&b.uuid)]],
                                "row": row}),
                );
            }
        }
    }
    ops
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> BridgeSpec {
        BridgeSpec {
            name: "br-int".into(),
            datapath_type: "netdev".into(),
            controllers: vec!["tcp:127.0.0.1:6653".into(), "tcp:127.0.0.1:6654".into()],
        }
    }

    fn right() -> BridgeRow {
        BridgeRow {
            uuid: "b".into(),
            datapath_type: "netdev".into(),
            protocols: vec!["OpenFlow13".into()],
            fail_mode: Some("secure".into()),
            controllers: vec![
                ("tcp:127.0.0.1:6654".into(), Some("out-of-band".into())),
                ("tcp:127.0.0.1:6653".into(), Some("out-of-band".into())),
            ],
        }
    }

    #[test]
    fn nothing_to_do_when_right() {
        let cur = Current { ovs_uuid: Some("o".into()), datapath_types: vec![], bridge: Some(right()) };
        assert!(ensure_ops(&spec(), &cur).is_empty());
    }

    #[test]
    fn creates_the_bridge_with_its_port_and_controllers() {
        let cur = Current { ovs_uuid: Some("o".into()), ..Default::default() };
        let ops = ensure_ops(&spec(), &cur);
        let kinds: Vec<_> = ops.iter().map(|o| format!("{}:{}", o["op"], o["table"])).collect();
        assert_eq!(
            kinds,
            [
                "\"wait\":\"Bridge\"",
                "\"insert\":\"Interface\"",
                "\"insert\":\"Port\"",
                "\"insert\":\"Controller\"",
                "\"insert\":\"Controller\"",
                "\"insert\":\"Bridge\"",
                "\"mutate\":\"Open_vSwitch\""
            ]
        );
        let br = &ops[5]["row"];
        assert_eq!(br["fail_mode"], "secure");
        assert_eq!(br["protocols"], json!(["set", ["OpenFlow13"]]));
        assert_eq!(br["controller"], json!(["set", [["named-uuid", "ctl0"], ["named-uuid", "ctl1"]]]));
        assert_eq!(ops[3]["row"]["connection_mode"], "out-of-band");
    }

    #[test]
    fn fixes_only_what_differs() {
        let mut b = right();
        b.fail_mode = None;
        b.controllers[1].1 = None;
        let cur = Current { ovs_uuid: Some("o".into()), datapath_types: vec![], bridge: Some(b) };
        let ops = ensure_ops(&spec(), &cur);
        assert_eq!(ops.len(), 3, "{ops:?}");
        let row = ops[2]["row"].as_object().unwrap();
        let mut cols: Vec<_> = row.keys().cloned().collect();
        cols.sort();
        assert_eq!(cols, ["controller", "fail_mode"]);
        // "" is the system datapath.
        let mut b = right();
        b.datapath_type = String::new();
        let s = BridgeSpec { datapath_type: "system".into(), ..spec() };
        assert!(ensure_ops(&s, &Current { bridge: Some(b), ..Default::default() }).is_empty());
    }

    #[test]
    fn datapath_detection() {
        let all = vec!["dummy".to_string(), "netdev".into(), "system".into()];
        assert_eq!(detect_datapath(&all, false), "netdev", "no kernel module: userspace");
        assert_eq!(detect_datapath(&all, true), "system");
        assert_eq!(detect_datapath(&["netdev".to_string()], true), "netdev");
        assert_eq!(detect_datapath(&[], true), "system");
    }

    #[test]
    fn auto_keeps_a_datapath_that_works() {
        let with = |dt: &str| Current {
            bridge: Some(BridgeRow { datapath_type: dt.into(), ..right() }),
            ..Default::default()
        };
        assert_eq!(auto_datapath(&with("netdev"), true), "netdev", "a deliberate netdev bridge is kept");
        assert_eq!(auto_datapath(&with(""), true), "system");
        assert_eq!(auto_datapath(&with("system"), false), "netdev", "system cannot work without the module");
        assert_eq!(auto_datapath(&Current::default(), false), "netdev");
    }

    #[test]
    fn reads_the_select_answers() {
        let r = vec![
            json!({"rows": [{"_uuid": ["uuid", "o"], "datapath_types": ["set", ["netdev", "system"]]}]}),
            json!({"rows": [{"_uuid": ["uuid", "b"], "datapath_type": "netdev", "protocols": "OpenFlow13",
                             "fail_mode": ["set", ["secure"]], "controller": ["uuid", "c1"]}]}),
            json!({"rows": [{"_uuid": ["uuid", "c1"], "target": "tcp:127.0.0.1:6653", "connection_mode": "out-of-band"},
                            {"_uuid": ["uuid", "c2"], "target": "tcp:127.0.0.1:9999", "connection_mode": ["set", []]}]}),
        ];
        let c = Current::from_results(&r).unwrap();
        assert_eq!(c.ovs_uuid.as_deref(), Some("o"));
        assert_eq!(c.datapath_types, ["netdev", "system"]);
        let b = c.bridge.unwrap();
        assert_eq!(b.fail_mode.as_deref(), Some("secure"));
        assert_eq!(b.controllers, vec![("tcp:127.0.0.1:6653".to_string(), Some("out-of-band".to_string()))]);
        assert!(Current::from_results(&r[..1]).is_err());
    }
}
