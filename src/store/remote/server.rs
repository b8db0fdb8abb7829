//! The holder's side: the store this process holds, served to the same user's other glint
//! processes while it is open.

use std::os::fd::AsRawFd;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::protocol::{Reply, Request, read_frame, write_frame};
use crate::store::guard::catch_sled;

/// How often an idle connection looks whether the store is being closed.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The longest a request may take to arrive once it has begun.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one open database until dropped; dropping it ends every connection, so the
/// database (and sled's lock) is released with the store.
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    address: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `db`, the database of the store in `dir`, at the store's address; `None` where
    /// this system has no such address or it cannot be bound (the store is then served to
    /// nobody, and other processes get the lock error).
    pub(crate) fn start(db: sled::Db, dir: &Path) -> Option<Server> {
        let address = super::address(dir)?;
        let listener = UnixListener::bind_addr(&address).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name("glint-store-server".into())
            .spawn(move || accept_loop(listener, db, flag))
            .ok()?;
        Some(Server {
            stop,
            address,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        drop(UnixStream::connect_addr(&self.address));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: UnixListener, db: sled::Db, stop: Arc<AtomicBool>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        // Anyone on the machine can reach the address; only the same user gets an answer.
        if !same_user(&stream) {
            continue;
        }
        let (db, stop) = (db.clone(), stop.clone());
        if let Ok(h) = std::thread::Builder::new()
            .name("glint-store-reader".into())
            .spawn(move || serve(stream, &db, &stop))
        {
            connections.retain(|h| !h.is_finished());
            connections.push(h);
        }
    }
    for h in connections {
        let _ = h.join();
    }
}

/// Whether the peer of `stream` runs as this process's user.
#[cfg(target_os = "linux")]
fn same_user(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes passed, and the descriptor
    // is open for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    // SAFETY: getuid has no preconditions.
    rc == 0 && cred.uid == unsafe { libc::getuid() }
}

/// Elsewhere no peer is trusted (and [`super::address`] gives no address to reach).
#[cfg(not(target_os = "linux"))]
fn same_user(_stream: &UnixStream) -> bool {
    false
}

/// Answer one connection's requests until it closes or the store is closed.
fn serve(mut stream: UnixStream, db: &sled::Db, stop: &AtomicBool) {
    if stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err() {
        return;
    }
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match readable(&stream, IDLE_POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let reply = match read_frame(&mut stream) {
            Ok(Some(body)) => match Request::decode(&body) {
                Ok(request) => answer(db, &request),
                Err(e) => Reply::Refused(format!("{e:#}")),
            },
            Ok(None) | Err(_) => return,
        };
        if write_frame(&mut stream, &reply.encode()).is_err() {
            return;
        }
    }
}

/// Wait up to `timeout` for `stream` to have bytes (or its end) to read.
fn readable(stream: &UnixStream, timeout: Duration) -> std::io::Result<bool> {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd is passed with its count; the descriptor stays open.
    let n = unsafe { libc::poll(&raw mut fd, 1, timeout.as_millis() as libc::c_int) };
    match n {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// The reply to `request` on `db`; failures are replies too, so a reader never hangs.
pub(crate) fn answer(db: &sled::Db, request: &Request) -> Reply {
    match handle(db, request) {
        Ok(reply) => reply,
        Err(e) => Reply::Refused(format!("{e:#}")),
    }
}

fn handle(db: &sled::Db, request: &Request) -> Result<Reply> {
    if request.writes() && request.tree() == Some("") {
        bail!(
            "the cache's own records are written only by the process holding the store; run \
             the job that writes them once that process has ended"
        );
    }
    let tree = |name: &str| -> Result<sled::Tree> {
        if name.is_empty() {
            Ok((**db).clone())
        } else {
            Ok(db.open_tree(name)?)
        }
    };
    let damaged = || anyhow!("the store's database failed to read its files (sled panicked)");
    catch_sled(|| -> Result<Reply> {
        Ok(match request {
            Request::Hello => Reply::Holder {
                pid: std::process::id(),
                command: holder_command(),
            },
            Request::Get { tree: t, key } => Reply::Value(tree(t)?.get(key)?.map(|v| v.to_vec())),
            Request::Scan { tree: t, prefix } => {
                let mut pairs = Vec::new();
                for kv in tree(t)?.scan_prefix(prefix) {
                    let (k, v) = kv?;
                    pairs.push((k.to_vec(), v.to_vec()));
                }
                Reply::Pairs(pairs)
            }
            Request::Insert {
                tree: t,
                key,
                value,
            } => {
                tree(t)?.insert(key.as_slice(), value.as_slice())?;
                Reply::Done
            }
            Request::Remove { tree: t, key } => {
                tree(t)?.remove(key.as_slice())?;
                Reply::Done
            }
            Request::Flush { tree: t } => {
                tree(t)?.flush()?;
                Reply::Done
            }
        })
    })
    .map_err(|()| damaged())?
}

/// What this process runs, for the messages of processes that find the store held.
fn holder_command() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut text = args.join(" ");
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
