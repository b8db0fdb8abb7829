//! A store open in another process: the holder of sled's lock serves the store's records over
//! a local socket to the same user's other glint processes, so the workbench, explain, score
//! and export work beside a running job (and a job beside the workbench). Readers see each
//! commit as it lands; they write only the user trees (labels, lists, explanations, scores,
//! pages), never the cache's own records, which stay with their one writer.

mod client;
mod protocol;
mod server;

use std::path::Path;

pub(crate) use client::{Client, HolderGone};
pub(crate) use server::Server;

/// The socket address of the store in `dir`: an abstract Unix socket named after the store's
/// canonical path, so it needs no file, is gone with its process, and has no length limit.
#[cfg(target_os = "linux")]
fn address(dir: &Path) -> Option<std::os::unix::net::SocketAddr> {
    use std::hash::Hasher;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let canonical = dir.canonicalize().ok()?;
    let mut h = twox_hash::XxHash3_64::with_seed(0x0067_6c69_6e74);
    h.write(canonical.as_os_str().as_bytes());
    let name = format!("glint-store-{:016x}", h.finish());
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()
}

/// Other systems have no abstract sockets: stores open in one process at a time there.
#[cfg(not(target_os = "linux"))]
fn address(_dir: &Path) -> Option<std::os::unix::net::SocketAddr> {
    None
}
