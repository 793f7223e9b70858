//! The datapath id: a switch's name in OpenFlow (FEATURES_REPLY), shared by the codec's users
//! (tracker, registry) and the REST API, so it lives here at the bottom of the crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// An OpenFlow datapath id. Prints and serialises as 16 hex digits, like OVS
/// (`0000000000000001`); parses with or without `0x`, and with `:` separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dpid(pub u64);

impl fmt::Display for Dpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Dpid {
    type Err = String;
    fn from_str(s: &str) -> Result<Dpid, String> {
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || digits.len() > 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("bad dpid {s:?}: expected up to 16 hex digits, e.g. 0000000000000001"));
        }
        u64::from_str_radix(&digits, 16).map(Dpid).map_err(|e| format!("bad dpid {s:?}: {e}"))
    }
}

impl Serialize for Dpid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dpid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dpid, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
