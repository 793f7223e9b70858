//! ADD, DEL, CHECK and VERSION: the steps in order, and what is undone when one fails.

use std::future::Future;
use std::path::Path;

use super::config::{Command, Invocation, NetConf, SUPPORTED_VERSIONS};
use super::error::CniError;
use super::ovs::{self, Db, PodPort};
use super::result::{CniResult, Interface, IpConfig, VersionResult};
use super::{ipam, netns, veth};

/// What one call printed: the JSON for stdout (empty for DEL and CHECK), or the error and
/// the `cniVersion` to report it in.
pub type Outcome = Result<String, (CniError, String)>;

/// Runs one plugin call. `env` reads the environment; `connect` opens the OVSDB connection
/// (given the address) on the call's tokio runtime, only when the command needs one.
pub fn run<D, C, F>(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8], connect: C) -> Outcome
where
    D: Db,
    C: FnOnce(String) -> F,
    F: Future<Output = Result<D, CniError>>,
{
    let fallback = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string();
    let inv = Invocation::from_env(env).map_err(|e| (e, version_hint(stdin).unwrap_or_else(|| fallback.clone())))?;
    if inv.command == Command::Version {
        let v = VersionResult {
            cni_version: fallback.clone(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|s| s.to_string()).collect(),
        };
        return Ok(serde_json::to_string(&v).unwrap_or_default());
    }
    let conf = NetConf::parse(stdin).map_err(|e| (e, version_hint(stdin).unwrap_or_else(|| fallback.clone())))?;
    let version = conf.cni_version.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (CniError::io("cannot start a runtime", e), version.clone()))?;
    let ovsdb = conf.ovsdb(env);
    let connect = || rt.block_on(connect(ovsdb));
    let r = match inv.command {
        Command::Add => add(&inv, &conf, stdin, &rt, connect),
        Command::Del => del(&inv, &conf, stdin, &rt, connect).map(|()| String::new()),
        Command::Check => check(&inv, &conf, stdin, &rt, connect).map(|()| String::new()),
        Command::Version => Ok(String::new()),
    };
    r.map_err(|e| (e, version))
}

/// The `cniVersion` of a configuration that did not parse, to answer in its version if it has one.
fn version_hint(stdin: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn netns_path(inv: &Invocation) -> Result<&Path, CniError> {
    inv.netns.as_deref().ok_or_else(|| CniError::env("CNI_NETNS is not set"))
}

/// The port's record. The daemon takes an Interface with pod keys for a pod only when all of
/// them are there, so a call without `K8S_POD_NAME` / `K8S_POD_NAMESPACE` (a runtime other than
/// kubelet) names the pod by its container id in a namespace named after the network.
fn pod_port(inv: &Invocation, conf: &NetConf, host: &str, mac: &str, ips: &str) -> PodPort {
    PodPort {
        bridge: conf.bridge().to_string(),
        name: host.to_string(),
        attached_mac: mac.to_string(),
        ip_address: ips.to_string(),
        pod_name: inv.args.pod_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| inv.container_id.clone()),
        pod_namespace: inv.args.pod_namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| conf.name.clone()),
        container_id: inv.container_id.clone(),
    }
}

fn add<D: Db>(
    inv: &Invocation,
    conf: &NetConf,
    stdin: &[u8],
    rt: &tokio::runtime::Runtime,
    connect: impl FnOnce() -> Result<D, CniError>,
) -> Result<String, CniError> {
    let ns_path = netns_path(inv)?;
    let ns = netns::open_existing(ns_path)?;
    let plugin = ipam::find_plugin(conf.ipam_type()?, &inv.path)?;
    // OVSDB first: when it is not there, nothing has been taken yet.
    let db = connect()?;
    let lease = ipam::exec(&plugin, "ADD", stdin)?.unwrap_or_default();
    let host = veth::host_veth_name(&inv.container_id, &inv.ifname);
    let host_ref = host.as_str();
    let undo = |e: CniError| {
        tracing::warn!(error = %e, "ADD failed; undoing");
        let _ = rt.block_on(ovs::detach(&db, host_ref));
        let _ = netns::run(None, |h| async move { veth::delete(&h, host_ref).await });
        if let Err(e2) = ipam::exec(&plugin, "DEL", stdin) {
            tracing::warn!(error = %e2, "IPAM DEL after a failed ADD");
        }
        e
    };
    let pair = veth::create(&ns, &host, &inv.ifname, conf.mtu, &lease).map_err(&undo)?;
    let port = pod_port(inv, conf, &host, &pair.container.mac, &lease.ip_address_list());
    rt.block_on(ovs::attach(&db, &port)).map_err(&undo)?;
    let result = CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface { name: host.clone(), mac: pair.host.mac.clone(), sandbox: None },
            Interface {
                name: inv.ifname.clone(),
                mac: pair.container.mac.clone(),
                sandbox: Some(ns_path.display().to_string()),
            },
        ],
        ips: lease.ips.iter().map(|ip| IpConfig { interface: Some(1), ..ip.clone() }).collect(),
        routes: lease.routes.clone(),
        dns: lease.dns.clone(),
    };
    serde_json::to_string(&result).map_err(|e| CniError::io("encoding the result", e))
}

/// Idempotent: a missing namespace, veth or port is already deleted. The lease is released last.
fn del<D: Db>(
    inv: &Invocation,
    conf: &NetConf,
    stdin: &[u8],
    rt: &tokio::runtime::Runtime,
    connect: impl FnOnce() -> Result<D, CniError>,
) -> Result<(), CniError> {
    let host = veth::host_veth_name(&inv.container_id, &inv.ifname);
    let db = connect()?;
    rt.block_on(ovs::detach(&db, &host))?;
    // The pod's end goes with it (a veth pair dies whole), whether or not its namespace exists.
    netns::run(None, |h| async move { veth::delete(&h, &host).await })?;
    if let Some(ipam) = &conf.ipam {
        let plugin = ipam::find_plugin(&ipam.plugin_type, &inv.path)?;
        ipam::exec(&plugin, "DEL", stdin)?;
    }
    Ok(())
}

/// Verifies what ADD made against `prevResult`: the pod's interface (MAC, addresses, up, TX
/// checksumming off), the host end, the OVS port and its external_ids; and the IPAM lease.
fn check<D: Db>(
    inv: &Invocation,
    conf: &NetConf,
    stdin: &[u8],
    rt: &tokio::runtime::Runtime,
    connect: impl FnOnce() -> Result<D, CniError>,
) -> Result<(), CniError> {
    let prev: CniResult = match &conf.prev_result {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| CniError::config(format!("prevResult: {e}")))?,
        None => return Err(CniError::config("CHECK needs prevResult")),
    };
    let ns = netns::open_existing(netns_path(inv)?)?;
    let plugin = ipam::find_plugin(conf.ipam_type()?, &inv.path)?;
    ipam::exec(&plugin, "CHECK", stdin)?;
    let host = veth::host_veth_name(&inv.container_id, &inv.ifname);
    let (idx, want) = prev
        .sandbox_interface(&inv.ifname)
        .ok_or_else(|| CniError::check(format!("prevResult has no sandbox interface {}", inv.ifname)))?;
    let want_ips: Vec<_> =
        prev.ips.iter().filter(|ip| ip.interface.is_none_or(|i| i == idx)).map(|ip| ip.address).collect();
    let ifname = inv.ifname.as_str();
    let want_ips = &want_ips;
    let want_mac = want.mac.to_ascii_lowercase();
    netns::run(Some(&ns), |h| async move {
        let l = veth::link(&h, ifname)
            .await?
            .ok_or_else(|| CniError::check(format!("no {ifname} in the pod's namespace")))?;
        if l.mac != want_mac {
            return Err(CniError::check(format!("{ifname} has MAC {}, prevResult says {want_mac}", l.mac)));
        }
        if !l.up {
            return Err(CniError::check(format!("{ifname} is down")));
        }
        let have = veth::addresses(&h, l.index).await?;
        for a in want_ips {
            if !have.contains(a) {
                return Err(CniError::check(format!("{ifname} lacks address {a}")));
            }
        }
        if veth::tx_checksum_on(ifname)? {
            return Err(CniError::check(format!("TX checksum offload is on for {ifname}")));
        }
        Ok(())
    })?;
    let host_ref = host.as_str();
    netns::run(None, |h| async move {
        let l = veth::link(&h, host_ref).await?.ok_or_else(|| CniError::check(format!("no host veth {host_ref}")))?;
        if !l.up {
            return Err(CniError::check(format!("{host_ref} is down")));
        }
        if veth::tx_checksum_on(host_ref)? {
            return Err(CniError::check(format!("TX checksum offload is on for {host_ref}")));
        }
        Ok(())
    })?;
    let ips = want_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let db = connect()?;
    rt.block_on(ovs::check(&db, &pod_port(inv, conf, &host, &want.mac.to_ascii_lowercase(), &ips)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::code;
    use std::collections::HashMap;

    struct NoDb;
    impl Db for NoDb {
        async fn transact(&self, _ops: Vec<serde_json::Value>) -> Result<Vec<serde_json::Value>, CniError> {
            Err(CniError::io("ovsdb", "not in this test"))
        }
    }

    fn call(env: &[(&str, &str)], stdin: &str) -> (Outcome, bool) {
        let m: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| m.get(k).cloned();
        let connected = std::cell::Cell::new(false);
        let out = run(&lookup, stdin.as_bytes(), |_addr| {
            connected.set(true);
            async { Ok(NoDb) }
        });
        (out, connected.get())
    }

    #[test]
    fn version_and_early_errors_need_no_ovsdb() {
        let (out, connected) = call(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(out.ok().as_deref(), Some(r#"{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}"#));
        assert!(!connected);
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/none"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/nonexistent"),
        ];
        for (stdin, want, version) in [
            ("{", code::DECODE, "1.0.0"),
            (r#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#, code::INCOMPATIBLE_VERSION, "0.2.0"),
            (r#"{"cniVersion":"1.0.0","type":"t"}"#, code::INVALID_CONFIG, "1.0.0"),
            // The namespace is looked at before OVSDB is.
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"host-local"}}"#,
                code::UNKNOWN_CONTAINER,
                "1.0.0",
            ),
        ] {
            let (out, connected) = call(&env, stdin);
            let (e, v) = out.err().unwrap_or_else(|| panic!("{stdin} accepted"));
            assert_eq!((e.code, v.as_str()), (want, version), "{stdin}: {e}");
            assert!(!connected, "{stdin}: connected to OVSDB");
        }
        let (out, _) = call(&[("CNI_COMMAND", "ADD")], "{}");
        assert_eq!(out.err().map(|(e, _)| e.code), Some(code::INVALID_ENV));
    }
}
