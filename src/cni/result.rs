//! The CNI 1.0.0 Result: what ADD prints, what an IPAM plugin answers, and what CHECK and DEL
//! get back as `prevResult`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with its prefix length, written `10.244.1.5/24` (also a route's destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{s:?}: {p:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix length {prefix} is over {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The network namespace path for an interface inside the container; absent on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface that holds the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty() && self.options.is_empty()
    }
}

impl CniResult {
    /// The `ip_address` external_id: every address, comma-separated, as CIDRs.
    pub fn ip_address_list(&self) -> String {
        self.ips.iter().map(|ip| ip.address.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The interface inside the sandbox named `ifname`, with its index in `interfaces`.
    pub fn sandbox_interface(&self, ifname: &str) -> Option<(usize, &Interface)> {
        self.interfaces.iter().enumerate().find(|(_, i)| i.sandbox.is_some() && i.name == ifname)
    }
}

/// What VERSION prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionResult {
    pub cni_version: String,
    pub supported_versions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example Result (CNI 1.0.0, "Success"), parsed and printed back unchanged.
    const SPEC_EXAMPLE: &str = r#"{
      "cniVersion": "1.0.0",
      "interfaces": [
          {"name": "cni0", "mac": "00:11:22:33:44:55"},
          {"name": "veth3243", "mac": "55:44:33:22:11:11"},
          {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
      ],
      "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dns": {"nameservers": ["10.1.0.1"]}
    }"#;

    #[test]
    fn spec_example_round_trips() {
        let r: CniResult = serde_json::from_str(SPEC_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.ips[0].address, Cidr { addr: IpAddr::from([10, 1, 0, 5]), prefix: 16 });
        assert_eq!(r.ips[0].gateway, Some(IpAddr::from([10, 1, 0, 1])));
        assert_eq!(r.sandbox_interface("eth0").map(|(i, _)| i), Some(2));
        assert_eq!(r.sandbox_interface("veth3243"), None, "a host interface is not the sandbox's");
        let back = serde_json::to_value(&r).unwrap_or_default();
        let want: serde_json::Value = serde_json::from_str(SPEC_EXAMPLE).unwrap_or_default();
        assert_eq!(back, want);
    }

    #[test]
    fn host_local_answer_parses_and_lists_its_addresses() {
        // What host-local prints for a dual-stack range (no interfaces: IPAM does not make any).
        let r: CniResult = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1"},
                {"address":"fd00:1::2/64"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.ip_address_list(), "10.244.1.2/24,fd00:1::2/64");
        assert_eq!(r.routes[0].gw, Some(IpAddr::from([10, 244, 1, 1])));
        assert!(r.dns.is_empty());
        // Printed back without the empty parts.
        assert!(!serde_json::to_string(&r).unwrap_or_default().contains("dns"));
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in ["10.0.0.1", "10.0.0.1/33", "fd00::1/129", "x/24", "10.0.0.1/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
            assert!(serde_json::from_str::<Route>(&format!(r#"{{"dst":"{bad}"}}"#)).is_err(), "{bad}");
        }
    }
}
