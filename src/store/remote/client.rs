//! The reader's side: a connection to the process that holds a store.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Result, anyhow, bail};

use super::protocol::{Reply, Request, read_frame, write_frame};

/// The connection to a store's holder ended (it closed the store or exited); the store can
/// be opened again, by this process or through whoever holds it next.
#[derive(Debug)]
pub(crate) struct HolderGone {
    pub pid: u32,
}

impl std::fmt::Display for HolderGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "glint process {} closed the store it was serving",
            self.pid
        )
    }
}

impl std::error::Error for HolderGone {}

/// A connection to the glint process holding a store; one request at a time.
pub(crate) struct Client {
    stream: Mutex<UnixStream>,
    /// The holder's process id.
    pub pid: u32,
    /// What the holder runs.
    pub command: String,
}

impl Client {
    /// Connect to the holder of the store in `dir`; `None` when no process serves it.
    pub(crate) fn connect(dir: &Path) -> Option<Client> {
        let address = super::address(dir)?;
        let stream = UnixStream::connect_addr(&address).ok()?;
        let mut client = Client {
            stream: Mutex::new(stream),
            pid: 0,
            command: String::new(),
        };
        match client.call(&Request::Hello).ok()? {
            Reply::Holder { pid, command } => {
                (client.pid, client.command) = (pid, command);
                Some(client)
            }
            _ => None,
        }
    }

    /// Send `request` and wait for its reply; a broken connection is a [`HolderGone`] error.
    fn call(&self, request: &Request) -> Result<Reply> {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let gone = || anyhow::Error::new(HolderGone { pid: self.pid });
        write_frame(&mut *stream, &request.encode()).map_err(|_| gone())?;
        let body = read_frame(&mut *stream)
            .map_err(|_| gone())?
            .ok_or_else(gone)?;
        match Reply::decode(&body)? {
            Reply::Refused(why) => Err(anyhow!(why)),
            reply => Ok(reply),
        }
    }

    /// The value under `key` of `tree` (`""`: the cache's records).
    pub(crate) fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.call(&Request::Get {
            tree: tree.into(),
            key: key.to_vec(),
        })? {
            Reply::Value(v) => Ok(v),
            other => bail!("the store's holder answered a read with {other:?}"),
        }
    }

    /// Every pair of `tree` under `prefix`, in key order.
    pub(crate) fn scan(&self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.call(&Request::Scan {
            tree: tree.into(),
            prefix: prefix.to_vec(),
        })? {
            Reply::Pairs(p) => Ok(p),
            other => bail!("the store's holder answered a scan with {other:?}"),
        }
    }

    /// Write, delete (`value` `None`) or flush (`key` `None`) in a user tree.
    pub(crate) fn write(&self, tree: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<()> {
        let tree = tree.to_string();
        let request = match (key, value) {
            (Some(k), Some(v)) => Request::Insert {
                tree,
                key: k.to_vec(),
                value: v.to_vec(),
            },
            (Some(k), None) => Request::Remove {
                tree,
                key: k.to_vec(),
            },
            (None, _) => Request::Flush { tree },
        };
        match self.call(&request)? {
            Reply::Done => Ok(()),
            other => bail!("the store's holder answered a write with {other:?}"),
        }
    }
}
