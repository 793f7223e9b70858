//! Network namespaces: open the pod's (`CNI_NETNS`), and run netlink work inside one.
//!
//! A netlink socket belongs to the namespace of the thread that opened it, so work inside the
//! pod's namespace runs on a thread of its own that enters it with setns(2) first and opens its
//! sockets after; the plugin's main thread never changes namespace. Each such thread runs a
//! current-thread tokio runtime for rtnetlink.

use std::fs::File;
use std::future::Future;
use std::path::Path;

use nix_netns::sched::{setns, CloneFlags};

use super::error::{code, CniError};

/// Opens a network namespace by path (`/var/run/netns/NAME`, `/proc/PID/ns/net`). Ok(None) when
/// it does not exist (the caller decides whether that is an error: DEL takes it as done).
pub fn open(path: &Path) -> Result<Option<File>, CniError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(format!("cannot open network namespace {}", path.display()), e)),
    }
}

/// Like [`open`], but a missing namespace is an error (code 3: the container is unknown).
pub fn open_existing(path: &Path) -> Result<File, CniError> {
    open(path)?.ok_or_else(|| {
        CniError::new(code::UNKNOWN_CONTAINER, "network namespace not found", path.display().to_string())
    })
}

/// Runs `job` with an rtnetlink handle in namespace `ns` (None: the plugin's own), on a
/// thread of its own, and waits for it.
pub fn run<T, F, Fut>(ns: Option<&File>, job: F) -> Result<T, CniError>
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, CniError>>,
{
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            if let Some(ns) = ns {
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    CniError::io("cannot enter the network namespace (is CNI_NETNS a network namespace?)", e)
                })?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| CniError::io("cannot start a runtime for netlink", e))?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| CniError::io("cannot open a netlink socket", e))?;
                tokio::spawn(conn);
                job(handle).await
            })
        });
        worker.join().unwrap_or_else(|_| Err(CniError::io("netlink worker", "panicked")))
    })
}
