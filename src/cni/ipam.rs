//! IPAM delegation, as the spec has it: the plugin named by `ipam.type` is found on `CNI_PATH`
//! and executed with this plugin's own environment (`CNI_COMMAND` possibly replaced, e.g. DEL to
//! release what a failed ADD took) and the same network configuration on stdin.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{code, CniError};
use super::result::CniResult;

/// The most of an IPAM plugin's stdout read (a result is a few hundred bytes); past this the
/// answer is refused as undecodable rather than held in memory.
pub const MAX_OUTPUT: u64 = 1 << 20;

/// How long an IPAM plugin may run before it is killed (host-local answers in milliseconds; a
/// plugin stuck on a lock must not hold the pod's sandbox forever).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The first executable file named `name` in `path`'s directories.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    use std::os::unix::fs::PermissionsExt as _;
    for dir in path {
        let p = dir.join(name);
        if let Ok(md) = std::fs::metadata(&p) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    Err(CniError::config(format!(
        "IPAM plugin {name:?} not found in CNI_PATH ({})",
        path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
    )))
}

/// Runs `plugin` for `command` (ADD, DEL, CHECK) with `config` on stdin. ADD returns the
/// plugin's result; DEL and CHECK return None. A plugin's own error document is passed through
/// with its code; a plugin that fails without one is an I/O failure (code 5) quoting its stderr.
pub fn exec(plugin: &Path, command: &str, config: &[u8]) -> Result<Option<CniResult>, CniError> {
    exec_within(plugin, command, config, DEADLINE)
}

/// [`exec`] with a given deadline; past it the plugin is killed and the call is "try again
/// later" (code 11).
pub fn exec_within(
    plugin: &Path,
    command: &str,
    config: &[u8],
    deadline: std::time::Duration,
) -> Result<Option<CniResult>, CniError> {
    let what = format!("IPAM plugin {} {command}", plugin.display());
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::io(format!("cannot run {what}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // On a thread too: a plugin that does not read its input must not block this one. A
        // plugin that exits without reading it is judged by its exit status below.
        let config = config.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&config);
        });
    }
    // stdout and stderr on threads of their own, so that neither pipe can fill and stall the
    // plugin, while this thread keeps the deadline.
    let stderr = child.stderr.take().map(|e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.take(64 * 1024).read_to_string(&mut s);
            s
        })
    });
    let stdout = child.stdout.take().map(|o| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            // Past the bound the rest is not read: the plugin is killed below.
            let r = o.take(MAX_OUTPUT + 1).read_to_end(&mut out);
            r.map(|_| out)
        })
    });
    let until = std::time::Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::new(
                    code::TRY_AGAIN_LATER,
                    format!("{what} timed out"),
                    format!("no exit within {deadline:?}: killed"),
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => return Err(CniError::io(format!("waiting for {what}"), e)),
        }
    };
    let out = match stdout.map(|h| h.join()) {
        Some(Ok(Ok(out))) => out,
        Some(Ok(Err(e))) => return Err(CniError::io(format!("reading {what}"), e)),
        _ => Vec::new(),
    };
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if out.len() as u64 > MAX_OUTPUT {
        return Err(CniError::decode(format!("{what}: output over {MAX_OUTPUT} bytes")));
    }
    if !status.success() {
        return Err(plugin_error(&what, &out, &stderr));
    }
    if command != "ADD" {
        return Ok(None);
    }
    let result: CniResult = serde_json::from_slice(&out)
        .map_err(|e| CniError::decode(format!("{what}: result is not a CNI result ({e}): {}", lossy(&out))))?;
    if result.ips.is_empty() {
        return Err(CniError::new(code::IO_FAILURE, "IPAM gave no address", format!("{what}: {}", lossy(&out))));
    }
    Ok(Some(result))
}

/// The error a failed plugin printed (its code kept), else an I/O failure with its stderr.
fn plugin_error(what: &str, out: &[u8], stderr: &str) -> CniError {
    #[derive(serde::Deserialize)]
    struct Doc {
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<Doc>(out) {
        Ok(d) if d.code != 0 => CniError::new(d.code, format!("{what}: {}", d.msg), d.details),
        _ => CniError::io(format!("{what} failed"), format!("stdout {:?}, stderr {:?}", lossy(out), stderr.trim())),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardflow-ipam-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn plugin_is_found_on_the_path_and_its_result_and_errors_come_back() {
        let d = tempdir("exec");
        let empty = d.join("empty");
        std::fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(empty.join("fake"), "not executable").unwrap_or_else(|e| panic!("{e}"));
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
        // Echoes its command and stdin back inside a result, so both are checked.
        script(
            &bin,
            "fake",
            r#"in=$(cat); if [ "$CNI_COMMAND" = ADD ]; then
                 echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"}],"dns":{"domain":"'"$in"'"}}'; fi"#,
        );
        script(&bin, "failing", r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"lock"}'; exit 1"#);
        script(&bin, "crashing", "echo boom >&2; exit 2");
        script(&bin, "noip", r#"echo '{"cniVersion":"1.0.0"}'"#);
        let path = vec![empty.clone(), bin.clone()];
        let p = find_plugin("fake", &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, bin.join("fake"), "the non-executable file of the first folder is skipped");
        let r = exec(&p, "ADD", b"conf").unwrap_or_else(|e| panic!("{e}")).unwrap_or_default();
        assert_eq!(r.ip_address_list(), "10.9.0.2/24");
        assert_eq!(r.dns.domain.as_deref(), Some("conf"));
        assert_eq!(exec(&p, "DEL", b"conf").map_err(|e| e.to_string()), Ok(None));

        let e = exec(&bin.join("failing"), "ADD", b"{}").err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!((e.code, e.details.as_str()), (11, "lock"));
        let e = exec(&bin.join("crashing"), "ADD", b"{}").err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.code, code::IO_FAILURE);
        assert!(e.details.contains("boom"), "{e}");
        let e = exec(&bin.join("noip"), "ADD", b"{}").err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.code, code::IO_FAILURE);
        // A plugin that hangs is killed at the deadline.
        script(&bin, "hanging", "exec sleep 30");
        let t0 = std::time::Instant::now();
        let e = exec_within(&bin.join("hanging"), "ADD", b"{}", std::time::Duration::from_millis(300))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.code, code::TRY_AGAIN_LATER, "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{:?}", t0.elapsed());
        let e = find_plugin("absent", &path).err().unwrap_or_else(|| panic!("found"));
        assert_eq!(e.code, code::INVALID_CONFIG);
        let _ = std::fs::remove_dir_all(&d);
    }
}
