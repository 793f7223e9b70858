//! What the runtime hands the plugin: the network configuration on stdin and the `CNI_*`
//! environment variables, parsed and checked before anything is touched.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{code, CniError};

/// The CNI versions whose configuration and result formats this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// The bridge pods are plugged into when the configuration names none (the daemon's default).
pub const DEFAULT_BRIDGE: &str = "br-int";

/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_IFNAME: usize = 15;

/// The network configuration (`{"cniVersion","name","type","bridge","mtu","ipam",...}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The Open vSwitch bridge the host end is attached to.
    #[serde(default)]
    pub bridge: Option<String>,
    /// MTU of both veth ends (the kernel's default, 1500, when absent).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Passed whole to the IPAM plugin; only `type` is read here.
    #[serde(default)]
    pub ipam: Option<Ipam>,
    /// OVSDB address (`unix:PATH` or `tcp:IP:PORT`); see [`default_ovsdb`].
    #[serde(default)]
    pub ovsdb: Option<String>,
    /// The result of ADD, given back on CHECK and DEL.
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ipam {
    #[serde(rename = "type")]
    pub plugin_type: String,
}

impl NetConf {
    /// Parses and checks the configuration. Not JSON: code 6; an unsupported `cniVersion`:
    /// code 1; anything else wrong (a missing `name`, a bad `mtu`, ...): code 7.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: serde_json::Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("network configuration is not JSON: {e}")))?;
        if !raw.is_object() {
            return Err(CniError::decode("network configuration is not a JSON object"));
        }
        // The version first: a config of another version may well not parse as this one.
        match raw.get("cniVersion") {
            Some(serde_json::Value::String(v)) => check_version(v)?,
            Some(_) => return Err(CniError::config("cniVersion is not a string")),
            None => return Err(CniError::config("cniVersion is missing")),
        }
        let conf: NetConf = serde_json::from_value(raw).map_err(|e| CniError::config(e.to_string()))?;
        if conf.name.is_empty() {
            return Err(CniError::config("name is empty"));
        }
        if let Some(mtu) = conf.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(CniError::config(format!("mtu {mtu} is outside 68..65535")));
            }
        }
        let br = conf.bridge();
        if br.is_empty() || br.len() > MAX_IFNAME || br.contains(['/', ' ', ':']) {
            return Err(CniError::config(format!("bridge {br:?} is not a valid bridge name")));
        }
        if let Some(ipam) = &conf.ipam {
            // It is looked up as a file name on CNI_PATH: no paths.
            if ipam.plugin_type.is_empty() || ipam.plugin_type.contains('/') || ipam.plugin_type.starts_with('.') {
                return Err(CniError::config(format!("ipam.type {:?} is not a plugin name", ipam.plugin_type)));
            }
        }
        Ok(conf)
    }

    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    /// The IPAM plugin's name; ADD, DEL and CHECK need one.
    pub fn ipam_type(&self) -> Result<&str, CniError> {
        self.ipam.as_ref().map(|i| i.plugin_type.as_str()).ok_or_else(|| CniError::config("ipam is missing"))
    }

    /// The OVSDB address: the configuration's, else [`default_ovsdb`].
    pub fn ovsdb(&self, env: impl Fn(&str) -> Option<String>) -> String {
        self.ovsdb.clone().unwrap_or_else(|| default_ovsdb(env))
    }
}

/// As `ovs-vsctl` finds the database: `unix:$OVS_RUNDIR/db.sock` when `OVS_RUNDIR` is set, else
/// `unix:/var/run/openvswitch/db.sock`.
pub fn default_ovsdb(env: impl Fn(&str) -> Option<String>) -> String {
    match env("OVS_RUNDIR").filter(|d| !d.is_empty()) {
        Some(dir) => format!("unix:{dir}/db.sock"),
        None => "unix:/var/run/openvswitch/db.sock".to_string(),
    }
}

fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!("cniVersion {v:?} is not supported; supported: {}", SUPPORTED_VERSIONS.join(", ")),
        ))
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

/// The `CNI_*` environment of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`: required by ADD and CHECK, optional for DEL (the namespace may be gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_PATH`, split on `:`: where the IPAM plugin is looked for.
    pub path: Vec<PathBuf>,
    pub args: CniArgs,
}

/// The `CNI_ARGS` this plugin reads (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`); others are ignored,
/// as kubelet's `IgnoreUnknown=1` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

impl CniArgs {
    /// `K1=V1;K2=V2`. A pair without `=` or with an empty key is refused (code 4).
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut out = CniArgs::default();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::env(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")));
            };
            if k.is_empty() {
                return Err(CniError::env(format!("CNI_ARGS: {pair:?} has an empty key")));
            }
            match k {
                "K8S_POD_NAMESPACE" => out.pod_namespace = Some(v.to_string()),
                "K8S_POD_NAME" => out.pod_name = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Invocation {
    /// Reads the environment through `env` (the process's, or a map in tests). Missing or
    /// malformed variables: code 4.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::env(format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK or VERSION")))
            }
            None => return Err(CniError::env("CNI_COMMAND is not set")),
        };
        if command == Command::Version {
            return Ok(Invocation {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                path: Vec::new(),
                args: CniArgs::default(),
            });
        }
        let need = |k: &str| var(k).ok_or_else(|| CniError::env(format!("{k} is not set")));
        let container_id = need("CNI_CONTAINERID")?;
        if !container_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(CniError::env(format!(
                "CNI_CONTAINERID {container_id:?} has characters other than letters, digits, '_', '.', '-'"
            )));
        }
        let ifname = need("CNI_IFNAME")?;
        check_ifname(&ifname)?;
        let netns = match command {
            Command::Del => var("CNI_NETNS").map(PathBuf::from),
            _ => Some(PathBuf::from(need("CNI_NETNS")?)),
        };
        let path: Vec<PathBuf> = need("CNI_PATH")?.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation { command, container_id, netns, ifname, path, args })
    }
}

/// An interface name the kernel takes: 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn check_ifname(name: &str) -> Result<(), CniError> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(CniError::env(format!("CNI_IFNAME {name:?} must be 1 to {MAX_IFNAME} bytes")));
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(CniError::env(format!("CNI_IFNAME {name:?} is not a valid interface name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123_x.y-z"),
        ("CNI_NETNS", "/var/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc"),
    ];

    #[test]
    fn full_add_environment_parses() {
        let inv = Invocation::from_env(env(ADD_ENV)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.container_id, "abc123_x.y-z");
        assert_eq!(inv.netns, Some(PathBuf::from("/var/run/netns/pod1")));
        assert_eq!(inv.ifname, "eth0");
        assert_eq!(inv.path, vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
        assert_eq!(inv.args.pod_namespace.as_deref(), Some("default"));
        assert_eq!(inv.args.pod_name.as_deref(), Some("web-0"));
    }

    fn env_error(over: &[(&str, Option<&str>)]) -> CniError {
        let mut pairs: Vec<(&str, &str)> = ADD_ENV.to_vec();
        for (k, v) in over {
            pairs.retain(|(pk, _)| pk != k);
            if let Some(v) = v {
                pairs.push((k, v));
            }
        }
        match Invocation::from_env(env(&pairs)) {
            Ok(inv) => panic!("accepted {inv:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn missing_or_bad_variables_are_code_4_and_say_which() {
        for (over, needle) in [
            (vec![("CNI_COMMAND", None)], "CNI_COMMAND"),
            (vec![("CNI_COMMAND", Some("UP"))], "CNI_COMMAND"),
            (vec![("CNI_CONTAINERID", None)], "CNI_CONTAINERID"),
            (vec![("CNI_CONTAINERID", Some("a/b"))], "CNI_CONTAINERID"),
            (vec![("CNI_NETNS", None)], "CNI_NETNS"),
            (vec![("CNI_IFNAME", None)], "CNI_IFNAME"),
            (vec![("CNI_IFNAME", Some("a-name-too-long-x"))], "CNI_IFNAME"),
            (vec![("CNI_IFNAME", Some(".."))], "CNI_IFNAME"),
            (vec![("CNI_IFNAME", Some("eth 0"))], "CNI_IFNAME"),
            (vec![("CNI_PATH", None)], "CNI_PATH"),
            (vec![("CNI_ARGS", Some("K8S_POD_NAME"))], "CNI_ARGS"),
            (vec![("CNI_ARGS", Some("=x"))], "CNI_ARGS"),
        ] {
            let e = env_error(&over);
            assert_eq!(e.code, code::INVALID_ENV, "{over:?}: {e}");
            assert!(e.details.contains(needle), "{over:?}: {e}");
        }
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing_but_the_command() {
        let mut pairs: Vec<(&str, &str)> = ADD_ENV.iter().filter(|(k, _)| *k != "CNI_NETNS").copied().collect();
        pairs.retain(|(k, _)| *k != "CNI_COMMAND");
        pairs.push(("CNI_COMMAND", "DEL"));
        let inv = Invocation::from_env(env(&pairs)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((inv.command, inv.netns), (Command::Del, None));
        let inv = Invocation::from_env(env(&[("CNI_COMMAND", "VERSION")])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.command, Command::Version);
    }

    #[test]
    fn config_parses_with_defaults() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"pods","type":"shardflow-cni","mtu":1400,
                 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bridge(), "br-int");
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.ipam_type().ok(), Some("host-local"));
        assert_eq!(c.ovsdb(env(&[])), "unix:/var/run/openvswitch/db.sock");
        assert_eq!(c.ovsdb(env(&[("OVS_RUNDIR", "/tmp/ovs")])), "unix:/tmp/ovs/db.sock");
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"t","bridge":"br0","ovsdb":"tcp:127.0.0.1:6640"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.bridge(), c.ovsdb(env(&[("OVS_RUNDIR", "/x")])).as_str()), ("br0", "tcp:127.0.0.1:6640"));
        assert_eq!(c.ipam_type().map_err(|e| e.code), Err(code::INVALID_CONFIG));
    }

    #[test]
    fn bad_configs_get_the_spec_codes() {
        for (text, want) in [
            (&b"not json"[..], code::DECODE),
            (b"[1,2]", code::DECODE),
            (br#"{"name":"n","type":"t"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#, code::INCOMPATIBLE_VERSION),
            (br#"{"cniVersion":"1.0.0","type":"t"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"","type":"t"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"big"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":20}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","bridge":"a/b"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"../sh"}}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{}}"#, code::INVALID_CONFIG),
        ] {
            match NetConf::parse(text) {
                Ok(c) => panic!("{} accepted: {c:?}", String::from_utf8_lossy(text)),
                Err(e) => assert_eq!(e.code, want, "{}: {e}", String::from_utf8_lossy(text)),
            }
        }
    }
}
