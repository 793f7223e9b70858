//! Test support: a private, real Open vSwitch per test (scripts/ovs-sandbox.sh), stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One sandboxed OVS (ovsdb-server + ovs-vswitchd, userspace datapath) in a temporary folder.
pub struct Ovs {
    pub dir: PathBuf,
}

impl Ovs {
    /// Starts OVS with the given bridges (each with dummy ports 1 and 2, named `BR-p1`, `BR-p2`).
    pub fn start(bridges: &[&str]) -> Ovs {
        let base = std::env::temp_dir();
        let dir = base.join(format!(
            "shardflow-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(repo().join("scripts/ovs-sandbox.sh"))
            .arg("up")
            .arg(&dir)
            .args(bridges)
            .output()
            .expect("run scripts/ovs-sandbox.sh (is Open vSwitch installed? scripts/test.sh installs it)");
        assert!(out.status.success(), "ovs sandbox did not start: {}", String::from_utf8_lossy(&out.stderr));
        Ovs { dir }
    }

    fn env(&self, cmd: &mut Command) {
        for v in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            cmd.env(v, &self.dir);
        }
        cmd.env("OVS_PKGDATADIR", "/usr/share/openvswitch");
    }

    /// Runs an OVS tool (`ovs-ofctl`, `ovs-appctl`, `ovs-vsctl`) against this instance.
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool);
        self.env(&mut cmd);
        if tool == "ovs-vsctl" {
            cmd.arg(format!("--db=unix:{}/db.sock", self.dir.display()));
        }
        cmd.args(args).output().unwrap()
    }

    /// Like [`tool`] but panics with OVS's message on failure, returning stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.tool(tool, args);
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ovs-ofctl -O OpenFlow13 dump-flows BR --no-stats`, sorted lines.
    pub fn flows(&self, br: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("ovs-ofctl", &["-O", "OpenFlow13", "dump-flows", br, "--no-stats"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    pub fn mgmt(&self, br: &str) -> String {
        format!("unix:{}/{br}.mgmt", self.dir.display())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/ovs-sandbox.sh")).arg("down").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the built `shardflow` binary.
pub fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow")).args(args).output().unwrap()
}

pub fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}
