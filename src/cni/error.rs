//! CNI errors as the spec wants them: a well-known code, a short message and details, printed as
//! `{"cniVersion","code","msg","details"}` on stdout with a non-zero exit status.

use serde::Serialize;

/// The spec's well-known error codes (CNI 1.0.0, "Error"). Codes 1-99 are reserved by the spec;
/// 100 and up are this plugin's own.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container (its network namespace) is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure (netlink, OVSDB, executing the IPAM plugin).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (the configuration on stdin, an IPAM plugin's answer).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (a transient condition, e.g. OVSDB not reachable yet).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// CHECK found the container's network different from what ADD made (plugin-specific).
    pub const CHECK_FAILED: u32 = 100;
}

/// One failure of the plugin: what the runtime gets back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details} (CNI error code {code})")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: details.into() }
    }

    pub fn env(details: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENV, "invalid environment variables", details)
    }

    pub fn config(details: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, "invalid network configuration", details)
    }

    pub fn decode(details: impl Into<String>) -> CniError {
        CniError::new(code::DECODE, "failed to decode content", details)
    }

    pub fn io(msg: impl Into<String>, details: impl std::fmt::Display) -> CniError {
        CniError::new(code::IO_FAILURE, msg, details.to_string())
    }

    pub fn check(details: impl Into<String>) -> CniError {
        CniError::new(code::CHECK_FAILED, "container network differs from what ADD made", details)
    }

    /// The error document for the runtime, in the version the configuration asked for.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Doc { cni_version, code: self.code, msg: &self.msg, details: &self.details })
            .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's own example error (CNI 1.0.0, "Error").
    #[test]
    fn error_json_matches_the_spec_example() {
        let e = CniError::new(7, "Invalid Configuration", "Network 192.168.0.0/31 too small to allocate from.");
        let want: serde_json::Value = serde_json::from_str(
            r#"{"cniVersion": "1.0.0", "code": 7, "msg": "Invalid Configuration",
                "details": "Network 192.168.0.0/31 too small to allocate from."}"#,
        )
        .unwrap_or_default();
        assert_eq!(e.to_json("1.0.0"), want);
        // No details: the field is left out rather than sent empty.
        let e = CniError::new(code::TRY_AGAIN_LATER, "ovsdb not ready", "");
        assert_eq!(e.to_json("1.0.0").to_string(), r#"{"cniVersion":"1.0.0","code":11,"msg":"ovsdb not ready"}"#);
    }
}
