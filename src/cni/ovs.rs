//! The pod's port on the Open vSwitch bridge, through OVSDB: attach (Interface with the pod's
//! `external_ids`, Port, the Bridge's `ports` mutated, in one transaction), detach, check.
//!
//! The operations are built here as RFC 7047 JSON and sent through [`Db`], which the OVSDB
//! client (`crate::ovsdb::Client`) implements; the plugin opens one connection per call.

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::{json, Value};

use super::error::{code, CniError};
use crate::node::keys;

/// Something that runs an OVSDB transaction on the Open_vSwitch database and returns the
/// operations' results.
pub trait Db {
    fn transact(&self, ops: Vec<Value>) -> impl Future<Output = Result<Vec<Value>, CniError>>;
}

/// What the pod's Interface carries in `external_ids` (see [`crate::node::keys`]), which is how
/// the daemon tells a pod port from a learning port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPort {
    pub bridge: String,
    /// The host end of the veth: the Interface's and the Port's name.
    pub name: String,
    /// The pod's interface's MAC (the container end).
    pub attached_mac: String,
    /// Comma-separated CIDRs.
    pub ip_address: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub container_id: String,
}

impl PodPort {
    pub fn external_ids(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert(keys::ATTACHED_MAC, self.attached_mac.clone());
        m.insert(keys::IP_ADDRESS, self.ip_address.clone());
        m.insert(keys::CONTAINER_ID, self.container_id.clone());
        m.insert(keys::POD_NAME, self.pod_name.clone());
        m.insert(keys::POD_NAMESPACE, self.pod_namespace.clone());
        m
    }
}

fn ovs_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    json!(["map", pairs.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()])
}

/// One transaction: the Interface (with the pod's external_ids), its Port, and the bridge's
/// `ports` with the new Port added. The mutate's row count says whether the bridge exists.
pub fn attach_ops(p: &PodPort) -> Vec<Value> {
    let ids = p.external_ids();
    vec![
        json!({"op": "insert", "table": "Interface", "uuid-name": "iface",
               "row": {"name": p.name, "external_ids": ovs_map(ids.iter().map(|(k, v)| (*k, v.as_str())))}}),
        json!({"op": "insert", "table": "Port", "uuid-name": "port",
               "row": {"name": p.name, "interfaces": ["named-uuid", "iface"],
                       "external_ids": ovs_map([(keys::CONTAINER_ID, p.container_id.as_str())])}}),
        json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", p.bridge]],
               "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]]]}),
        json!({"op": "comment", "comment": format!("shardflow-cni: add {} for {}", p.name, p.container_id)}),
    ]
}

/// The Port named `name`: its uuid (select).
fn select_port(name: &str) -> Value {
    json!({"op": "select", "table": "Port", "where": [["name", "==", name]], "columns": ["_uuid"]})
}

/// Takes the Port out of whichever bridge holds it; Port and Interface, no longer referenced,
/// are removed by the database (they are not root tables).
pub fn detach_ops(port_uuid: &str, name: &str) -> Vec<Value> {
    vec![
        json!({"op": "mutate", "table": "Bridge", "where": [["ports", "includes", ["uuid", port_uuid]]],
               "mutations": [["ports", "delete", ["set", [["uuid", port_uuid]]]]]}),
        json!({"op": "comment", "comment": format!("shardflow-cni: delete {name}")}),
    ]
}

fn rows(result: &Value) -> &[Value] {
    result.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn uuid_of(v: &Value) -> Option<&str> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(u)]) if tag == "uuid" => Some(u),
        _ => None,
    }
}

/// `["map", [[k, v], ...]]` as pairs (non-string entries skipped).
fn map_pairs(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some([tag, Value::Array(items)]) = v.as_array().map(Vec::as_slice) {
        if tag == "map" {
            for it in items {
                if let Some([Value::String(k), Value::String(v)]) = it.as_array().map(Vec::as_slice) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

/// The uuid of the Port named `name`, if there is one.
pub async fn port_uuid(db: &impl Db, name: &str) -> Result<Option<String>, CniError> {
    let res = db.transact(vec![select_port(name)]).await?;
    Ok(res.first().and_then(|r| rows(r).first()).and_then(|row| row.get("_uuid")).and_then(uuid_of).map(str::to_string))
}

/// Removes the Port named `name` from its bridge; Ok(false) when there was none.
pub async fn detach(db: &impl Db, name: &str) -> Result<bool, CniError> {
    let Some(u) = port_uuid(db, name).await? else { return Ok(false) };
    db.transact(detach_ops(&u, name)).await?;
    Ok(true)
}

/// Adds the pod's port (a stale one of the same name, from an ADD that failed half-way, is
/// removed first). A bridge that does not exist (yet: the daemon creates it) is "try again
/// later" (code 11).
pub async fn attach(db: &impl Db, p: &PodPort) -> Result<(), CniError> {
    if detach(db, &p.name).await? {
        tracing::warn!(port = %p.name, "removed a stale port of the same name");
    }
    let res = db.transact(attach_ops(p)).await?;
    let count = res.get(2).and_then(|r| r.get("count")).and_then(Value::as_u64).unwrap_or(0);
    if count != 1 {
        return Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "bridge not found",
            format!("no bridge {:?} in OVSDB (the node agent creates it): the port was not added", p.bridge),
        ));
    }
    Ok(())
}

/// CHECK: the Port exists on `p.bridge` and its Interface carries `p`'s external_ids.
pub async fn check(db: &impl Db, p: &PodPort) -> Result<(), CniError> {
    let res = db
        .transact(vec![
            select_port(&p.name),
            json!({"op": "select", "table": "Bridge", "where": [["name", "==", p.bridge]], "columns": ["ports"]}),
            json!({"op": "select", "table": "Interface", "where": [["name", "==", p.name]], "columns": ["external_ids"]}),
        ])
        .await?;
    let port = res
        .first()
        .and_then(|r| rows(r).first())
        .and_then(|row| row.get("_uuid"))
        .and_then(uuid_of)
        .ok_or_else(|| CniError::check(format!("no OVS port {}", p.name)))?;
    let bridge =
        res.get(1).and_then(|r| rows(r).first()).ok_or_else(|| CniError::check(format!("no bridge {}", p.bridge)))?;
    let ports = bridge.get("ports").cloned().unwrap_or(Value::Null);
    let on_bridge = uuid_of(&ports) == Some(port)
        || ports
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(Value::as_array)
            .is_some_and(|set| set.iter().any(|u| uuid_of(u) == Some(port)));
    if !on_bridge {
        return Err(CniError::check(format!("port {} is not on bridge {}", p.name, p.bridge)));
    }
    let ids = res
        .get(2)
        .and_then(|r| rows(r).first())
        .and_then(|row| row.get("external_ids"))
        .map(map_pairs)
        .ok_or_else(|| CniError::check(format!("no OVS interface {}", p.name)))?;
    for (k, want) in p.external_ids() {
        let got = ids.get(k).map(String::as_str).unwrap_or("");
        if got != want {
            return Err(CniError::check(format!(
                "interface {} external_ids:{k} is {got:?}, expected {want:?}",
                p.name
            )));
        }
    }
    Ok(())
}

// === the OVSDB client as the plugin's Db ===

/// One OVSDB connection for one plugin call.
pub struct OvsdbDb(crate::ovsdb::Client);

impl Db for OvsdbDb {
    async fn transact(&self, ops: Vec<Value>) -> Result<Vec<Value>, CniError> {
        self.0.transact(crate::ovsdb::VSWITCH_DB, ops).await.map_err(ovsdb_error)
    }
}

/// Connects to `addr` (`unix:PATH`, `tcp:IP:PORT`). A bad address is invalid configuration
/// (code 7); a server that is not there (yet) is "try again later" (code 11).
pub async fn connect(addr: String) -> Result<OvsdbDb, CniError> {
    let a = crate::ovsdb::OvsdbAddr::parse(&addr).map_err(|e| CniError::config(e.to_string()))?;
    crate::ovsdb::Client::connect(&a).await.map(OvsdbDb).map_err(ovsdb_error)
}

fn ovsdb_error(e: crate::ovsdb::OvsdbError) -> CniError {
    use crate::ovsdb::OvsdbError as E;
    match e {
        E::Connect { .. } | E::Timeout(_) | E::Closed => {
            CniError::new(code::TRY_AGAIN_LATER, "OVSDB not reachable", e.to_string())
        }
        E::Addr { .. } => CniError::config(e.to_string()),
        e => CniError::io("OVSDB", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn pod() -> PodPort {
        PodPort {
            bridge: "br-int".into(),
            name: "sf0123456789ab".into(),
            attached_mac: "0a:58:0a:f4:01:02".into(),
            ip_address: "10.244.1.2/24".into(),
            pod_name: "web-0".into(),
            pod_namespace: "default".into(),
            container_id: "c1".into(),
        }
    }

    #[test]
    fn attach_is_one_transaction_of_interface_port_and_bridge() {
        let ops = attach_ops(&pod());
        assert_eq!(ops[0]["table"], "Interface");
        assert_eq!(
            ops[0]["row"]["external_ids"],
            json!([
                "map",
                [
                    ["attached-mac", "0a:58:0a:f4:01:02"],
                    ["container-id", "c1"],
                    ["ip_address", "10.244.1.2/24"],
                    ["pod-name", "web-0"],
                    ["pod-namespace", "default"]
                ]
            ])
        );
        assert_eq!(ops[1]["row"]["interfaces"], json!(["named-uuid", "iface"]));
        assert_eq!(ops[2]["where"], json!([["name", "==", "br-int"]]));
        assert_eq!(ops[2]["mutations"], json!([["ports", "insert", ["set", [["named-uuid", "port"]]]]]));
    }

    /// Answers scripted results and records the operations sent.
    struct Scripted {
        answers: RefCell<Vec<Vec<Value>>>,
        sent: RefCell<Vec<Vec<Value>>>,
    }

    impl Db for Scripted {
        async fn transact(&self, ops: Vec<Value>) -> Result<Vec<Value>, CniError> {
            self.sent.borrow_mut().push(ops);
            let mut a = self.answers.borrow_mut();
            if a.is_empty() {
                return Err(CniError::io("ovsdb", "no scripted answer"));
            }
            Ok(a.remove(0))
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}")).block_on(f)
    }

    #[test]
    fn attach_to_a_missing_bridge_is_try_again_later_and_a_stale_port_goes_first() {
        let db = Scripted {
            answers: RefCell::new(vec![
                vec![json!({"rows": [{"_uuid": ["uuid", "u-stale"]}]})],
                vec![json!({"count": 1}), json!({})],
                vec![json!({"uuid": ["uuid", "i"]}), json!({"uuid": ["uuid", "p"]}), json!({"count": 0}), json!({})],
            ]),
            sent: RefCell::new(Vec::new()),
        };
        let e = block_on(attach(&db, &pod())).err().unwrap_or_else(|| panic!("attached to no bridge"));
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        let sent = db.sent.borrow();
        assert_eq!(sent[1][0]["where"], json!([["ports", "includes", ["uuid", "u-stale"]]]));
    }

    #[test]
    fn check_names_the_external_id_that_differs() {
        let answer = |mac: &str| {
            vec![
                json!({"rows": [{"_uuid": ["uuid", "p1"]}]}),
                json!({"rows": [{"ports": ["set", [["uuid", "p0"], ["uuid", "p1"]]]}]}),
                json!({"rows": [{"external_ids": ["map", [["attached-mac", mac], ["container-id", "c1"],
                    ["ip_address", "10.244.1.2/24"], ["pod-name", "web-0"], ["pod-namespace", "default"]]]}]}),
            ]
        };
        let db = Scripted {
            answers: RefCell::new(vec![answer("0a:58:0a:f4:01:02"), answer("02:00:00:00:00:01")]),
            sent: RefCell::new(Vec::new()),
        };
        assert_eq!(block_on(check(&db, &pod())), Ok(()));
        let e = block_on(check(&db, &pod())).err().unwrap_or_else(|| panic!("passed"));
        assert_eq!(e.code, code::CHECK_FAILED);
        assert!(e.details.contains("attached-mac"), "{e}");
    }
}
