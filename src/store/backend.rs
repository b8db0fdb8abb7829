//! Where a [`Store`]'s records are read and written: the sled database this process holds
//! (served to this user's other glint processes while it is open), or, when another process
//! holds it, that process (see `store::remote`).

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use sled::IVec;

use super::Store;
use super::folder::open_db_settled;
use super::guard::catch_sled;
use super::remote::{Client, HolderGone, Server};

/// The database behind a store handle.
pub(crate) enum Backend {
    /// This process holds the database and serves it.
    Local {
        db: sled::Db,
        _server: Option<Server>,
    },
    /// Another process holds it: reads and user-tree writes go there.
    Remote(Client),
}

/// A store handle's backend, shared by its clones and replaced when a holder goes away.
pub(crate) type SharedBackend = Arc<RwLock<Arc<Backend>>>;

impl Backend {
    /// Hold `db`, the database of the store in `dir`, and serve it.
    pub(crate) fn local(db: sled::Db, dir: &Path) -> SharedBackend {
        let server = Server::start(db.clone(), dir);
        Arc::new(RwLock::new(Arc::new(Backend::Local {
            db,
            _server: server,
        })))
    }

    /// Reach `client`'s store through it.
    pub(crate) fn remote(client: Client) -> SharedBackend {
        Arc::new(RwLock::new(Arc::new(Backend::Remote(client))))
    }

    /// Attach to the store in `dir` after its holder went away: hold it now, or reach
    /// whichever process holds it next.
    fn attach(dir: &Path) -> Result<Backend> {
        match open_db_settled(dir) {
            Ok(db) => {
                let server = Server::start(db.clone(), dir);
                Ok(Backend::Local {
                    db,
                    _server: server,
                })
            }
            Err(e) => Client::connect(dir).map(Backend::Remote).ok_or(e),
        }
    }
}

impl Store {
    /// The backend now in use.
    pub(crate) fn backend(&self) -> Arc<Backend> {
        self.backend
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether another process holds this store (this handle reads through it).
    pub fn is_remote(&self) -> bool {
        matches!(*self.backend(), Backend::Remote(_))
    }

    /// Run `op` on the backend; when the holder it reads through has gone, attach to the store
    /// again (holding it, or through its next holder) and run `op` once more.
    pub(crate) fn with_backend<T>(&self, op: impl Fn(&Backend) -> Result<T>) -> Result<T> {
        let backend = self.backend();
        match op(&backend) {
            Err(e) if e.downcast_ref::<HolderGone>().is_some() => {
                self.reattach(&backend).with_context(|| {
                    format!(
                        "{e}, and store {} cannot be opened again",
                        self.dir().display()
                    )
                })?;
                op(&self.backend())
            }
            other => other,
        }
    }

    fn reattach(&self, stale: &Arc<Backend>) -> Result<()> {
        let mut slot = self.backend.write().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&slot, stale) {
            *slot = Arc::new(Backend::attach(self.dir())?);
            self.forget_state();
        }
        Ok(())
    }

    /// The database, for writes of the cache's own records, which only its holder makes.
    pub(crate) fn held_db(&self) -> Result<sled::Db> {
        match &*self.backend() {
            Backend::Local { db, .. } => Ok(db.clone()),
            Backend::Remote(c) => bail!(
                "store {} is open in glint process {} ({}), and its cache records are written \
                 only there; run this once that process has ended",
                self.dir().display(),
                c.pid,
                c.command
            ),
        }
    }

    /// The value under `k` of the cache's records.
    pub(crate) fn get_record_bytes(&self, k: &[u8]) -> Result<Option<IVec>> {
        self.with_backend(|b| match b {
            Backend::Local { db, .. } => catch_sled(|| db.get(k))
                .map_err(|()| super::folder::damaged_db(self.dir()))?
                .map_err(Into::into),
            Backend::Remote(c) => Ok(c.get("", k)?.map(IVec::from)),
        })
    }

    /// The pairs of the cache's records under `prefix`, read whole from a remote holder.
    pub(crate) fn remote_scan(&self, prefix: &[u8]) -> Result<Vec<(IVec, IVec)>> {
        self.with_backend(|b| match b {
            Backend::Local { db, .. } => {
                let mut out = Vec::new();
                for kv in db.scan_prefix(prefix) {
                    out.push(kv?);
                }
                Ok(out)
            }
            Backend::Remote(c) => Ok(pairs(c.scan("", prefix)?)),
        })
    }

    /// A named tree beside the cache records (its writes never join the cache's batches).
    pub(crate) fn tree<'a>(&'a self, name: &'a str) -> Result<StoreTree<'a>> {
        Ok(StoreTree { store: self, name })
    }
}

fn pairs(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(IVec, IVec)> {
    raw.into_iter()
        .map(|(k, v)| (IVec::from(k), IVec::from(v)))
        .collect()
}

/// One user tree of a store (labels, lists, explanations, scores, pages), wherever it is held.
pub(crate) struct StoreTree<'a> {
    store: &'a Store,
    name: &'a str,
}

impl StoreTree<'_> {
    fn local<T>(&self, db: &sled::Db, op: impl FnOnce(sled::Tree) -> sled::Result<T>) -> Result<T> {
        let ctx = || {
            format!(
                "cannot use tree {:?} of store {}",
                self.name,
                self.store.dir().display()
            )
        };
        db.open_tree(self.name).and_then(op).with_context(ctx)
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>> {
        let key = key.as_ref();
        self.store.with_backend(|b| match b {
            Backend::Local { db, .. } => self.local(db, |t| t.get(key)),
            Backend::Remote(c) => Ok(c.get(self.name, key)?.map(IVec::from)),
        })
    }

    /// Write `value` under `key` (not yet durable: see [`StoreTree::flush`]).
    pub(crate) fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.store.with_backend(|b| match b {
            Backend::Local { db, .. } => self.local(db, |t| t.insert(key, value).map(drop)),
            Backend::Remote(c) => c.write(self.name, Some(key), Some(value)),
        })
    }

    /// Delete `key`.
    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        self.store.with_backend(|b| match b {
            Backend::Local { db, .. } => self.local(db, |t| t.remove(key).map(drop)),
            Backend::Remote(c) => c.write(self.name, Some(key), None),
        })
    }

    /// Make the tree's writes durable.
    pub(crate) fn flush(&self) -> Result<()> {
        self.store.with_backend(|b| match b {
            Backend::Local { db, .. } => self.local(db, |t| t.flush().map(drop)),
            Backend::Remote(c) => c.write(self.name, None, None),
        })
    }

    /// Every pair whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<(IVec, IVec)>> {
        let prefix = prefix.as_ref();
        self.store.with_backend(|b| match b {
            Backend::Local { db, .. } => self.local(db, |t| t.scan_prefix(prefix).collect()),
            Backend::Remote(c) => Ok(pairs(c.scan(self.name, prefix)?)),
        })
    }

    /// Every pair, in key order.
    pub(crate) fn iter(&self) -> Result<Vec<(IVec, IVec)>> {
        self.scan_prefix([])
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
