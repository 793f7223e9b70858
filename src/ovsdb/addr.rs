//! Where the OVSDB server listens, in `ovs-vsctl --db` syntax (`unix:PATH`, `tcp:IP:PORT`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::OvsdbError;

/// The socket `ovs-vsctl` uses when `OVS_RUNDIR` is not set.
pub const SYSTEM_DB_SOCK: &str = "/var/run/openvswitch/db.sock";

/// An OVSDB server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvsdbAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl OvsdbAddr {
    /// `unix:/path/db.sock` or `tcp:127.0.0.1:6640` (`tcp:[::1]:6640` for IPv6).
    pub fn parse(s: &str) -> Result<OvsdbAddr, OvsdbError> {
        let bad = |reason: &str| OvsdbError::Addr { addr: s.to_string(), reason: reason.to_string() };
        let s_trim = s.trim();
        if let Some(path) = s_trim.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            if path.contains('\0') {
                return Err(bad("NUL in socket path"));
            }
            return Ok(OvsdbAddr::Unix(PathBuf::from(path)));
        }
        if let Some(hp) = s_trim.strip_prefix("tcp:") {
            return hp.parse::<SocketAddr>().map(OvsdbAddr::Tcp).map_err(|_| bad("not IP:PORT after tcp:"));
        }
        Err(bad("unknown scheme"))
    }

    /// The default: `unix:$OVS_RUNDIR/db.sock` when `OVS_RUNDIR` is set (as `ovs-vsctl` does),
    /// else `unix:/var/run/openvswitch/db.sock`. `rundir` is passed in so tests stay hermetic.
    pub fn default_for(rundir: Option<&str>) -> OvsdbAddr {
        match rundir.filter(|d| !d.is_empty()) {
            Some(dir) => OvsdbAddr::Unix(PathBuf::from(dir).join("db.sock")),
            None => OvsdbAddr::Unix(PathBuf::from(SYSTEM_DB_SOCK)),
        }
    }
}

impl fmt::Display for OvsdbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OvsdbAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            OvsdbAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_refuses_others() {
        assert_eq!(OvsdbAddr::parse("unix:/run/db.sock").unwrap(), OvsdbAddr::Unix("/run/db.sock".into()));
        assert_eq!(OvsdbAddr::parse("tcp:127.0.0.1:6640").unwrap(), OvsdbAddr::Tcp("127.0.0.1:6640".parse().unwrap()));
        assert_eq!(OvsdbAddr::parse("tcp:[::1]:6640").unwrap().to_string(), "tcp:[::1]:6640");
        for bad in ["", "unix:", "tcp:localhost:6640", "tcp:127.0.0.1", "ssl:1.2.3.4:6640", "/run/db.sock"] {
            let e = OvsdbAddr::parse(bad).unwrap_err();
            assert!(matches!(e, OvsdbError::Addr { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn default_follows_ovs_rundir() {
        assert_eq!(OvsdbAddr::default_for(Some("/tmp/x")).to_string(), "unix:/tmp/x/db.sock");
        assert_eq!(OvsdbAddr::default_for(None).to_string(), "unix:/var/run/openvswitch/db.sock");
        assert_eq!(OvsdbAddr::default_for(Some("")).to_string(), "unix:/var/run/openvswitch/db.sock");
    }
}
