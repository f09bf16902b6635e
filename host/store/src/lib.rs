//! sfop's embedded storage on sled: named trees of bytes, JSON helpers,
//! atomic multi-tree transactions, and the per-plugin `kv` namespaces. The
//! only crate that names sled. Beside it, a [`Journal`] (trees in memory,
//! an append-only log on disk) for the virtual bank's books (ADR 0031).

mod journal;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use journal::Journal;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sfop_core::{KvError, KvStore};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value under {key:?} is not valid JSON for its type: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("value does not serialise to JSON: {0}")]
    Encode(serde_json::Error),
    #[error("journal at {path}: {message}")]
    Journal { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open store. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// The journals opened in this store's directory, by name: every clone
    /// gets the same one (a journal has one writer).
    journals: Arc<Mutex<HashMap<String, Journal>>>,
}

impl Store {
    /// Opens (creating if needed) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| Error::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            db,
            path: path.to_owned(),
            journals: Arc::default(),
        })
    }

    /// The tree called `name`, created on first use.
    pub fn tree(&self, name: &str) -> Result<Tree> {
        Ok(Tree {
            kind: TreeKind::Sled(self.db.open_tree(name)?),
        })
    }

    /// The journal called `name` in this store's directory, opened on first
    /// use and shared by every clone of this store. The first time, the
    /// sled trees whose names start with `{name}.` are moved into it (a
    /// data dir from before the journal keeps its data) and dropped.
    pub fn journal(&self, name: &str) -> Result<Journal> {
        let mut journals = self.journals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(journal) = journals.get(name) {
            return Ok(journal.clone());
        }
        let journal = Journal::open(&self.path.join(format!("{name}.journal")))?;
        self.move_into(name, &journal)?;
        journals.insert(name.to_owned(), journal.clone());
        Ok(journal)
    }

    /// Moves the sled trees `{name}.*` into `journal` if it is empty, then
    /// drops them once the journal has them on disk.
    fn move_into(&self, name: &str, journal: &Journal) -> Result<()> {
        let prefix = format!("{name}.");
        let trees: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if trees.is_empty() {
            return Ok(());
        }
        if journal.is_empty() {
            // One transaction, so one record: a crash while it is written
            // leaves a torn record that the next open cuts off, and the
            // move runs again from the sled trees, still there.
            let mut targets = Vec::with_capacity(trees.len());
            let mut entries = Vec::with_capacity(trees.len());
            for name in &trees {
                targets.push(journal.tree(name.strip_prefix(&prefix).unwrap_or(name))?);
                entries.push(
                    self.db
                        .open_tree(name)?
                        .iter()
                        .collect::<sled::Result<Vec<_>>>()?,
                );
            }
            let refs: Vec<&Tree> = targets.iter().collect();
            journal
                .transaction(&refs, |tx| {
                    for (tree, entries) in tx.iter().zip(&entries) {
                        for (k, v) in entries {
                            tree.insert::<()>(k, v)?;
                        }
                    }
                    Ok(())
                })
                .map_err(|e| match e {
                    TxError::Store(e) => e,
                    TxError::Abort(()) => Error::Journal {
                        path: self.path.display().to_string(),
                        message: "moving the sled trees in was refused".to_owned(),
                    },
                })?;
            journal.flush()?;
            let moved: usize = entries.iter().map(Vec::len).sum();
            tracing::info!(
                journal = name,
                entries = moved,
                "store: sled trees moved into a journal"
            );
        }
        for name in &trees {
            self.db.drop_tree(name)?;
        }
        self.flush()
    }

    /// Waits until everything written so far is durable on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Runs `f` over `trees` as one atomic transaction: either every write
    /// it made is applied (and, after a [`Store::flush`], durable) or none
    /// is, also across a crash. `f` may run more than once when it conflicts
    /// with a concurrent transaction, so it must not have other side effects.
    /// `f` must reach the store only through its [`TxTree`]s: sled holds a
    /// process-wide lock while `f` runs, and any other read or write of the
    /// store from inside `f` waits for it forever.
    /// `f` ends the transaction without writing by returning
    /// [`Abort::with`]`(e)`; the call then returns [`TxError::Abort`]`(e)`.
    pub fn transaction<T, E>(
        &self,
        trees: &[&Tree],
        f: impl Fn(&[TxTree<'_>]) -> Result<T, Abort<E>>,
    ) -> Result<T, TxError<E>> {
        let mut sled_trees: Vec<&sled::Tree> = Vec::with_capacity(trees.len());
        for tree in trees {
            match &tree.kind {
                TreeKind::Sled(tree) => sled_trees.push(tree),
                TreeKind::Journal(_) => {
                    return Err(TxError::Store(Error::Journal {
                        path: self.path.display().to_string(),
                        message: "a sled transaction over a journal's tree".to_owned(),
                    }));
                }
            }
        }
        let result = sled::Transactional::<TxError<E>>::transaction(
            sled_trees.as_slice(),
            |views: &Vec<TransactionalTree>| {
                let wrapped: Vec<TxTree<'_>> = views
                    .iter()
                    .map(|tree| TxTree {
                        kind: TxKind::Sled(tree),
                    })
                    .collect();
                f(&wrapped).map_err(|abort| match abort.0 {
                    AbortKind::User(e) => ConflictableTransactionError::Abort(TxError::Abort(e)),
                    AbortKind::Sled(e) => e.into(),
                    AbortKind::Store(e) => ConflictableTransactionError::Abort(TxError::Store(e)),
                })
            },
        );
        match result {
            Ok(value) => Ok(value),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(TxError::Store(Error::Sled(e))),
        }
    }
}

/// Why a [`Store::transaction`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum TxError<E> {
    /// The transaction's function gave up with this value.
    #[error("transaction aborted")]
    Abort(E),
    /// The store failed.
    #[error(transparent)]
    Store(Error),
}

/// How a transaction's function stops: its own reason, or a store failure
/// from a [`TxTree`] call (propagate those with `?`).
#[derive(Debug)]
pub struct Abort<E>(AbortKind<E>);

#[derive(Debug)]
enum AbortKind<E> {
    User(E),
    Sled(UnabortableTransactionError),
    Store(Error),
}

impl<E> Abort<E> {
    /// Ends the transaction, writing nothing, with `reason`.
    pub fn with(reason: E) -> Self {
        Self(AbortKind::User(reason))
    }
}

impl<E> From<UnabortableTransactionError> for Abort<E> {
    fn from(e: UnabortableTransactionError) -> Self {
        Self(AbortKind::Sled(e))
    }
}

/// One tree inside a [`Store::transaction`] or [`Journal::transaction`]:
/// reads see the transaction's own writes.
pub struct TxTree<'a> {
    kind: TxKind<'a>,
}

enum TxKind<'a> {
    Sled(&'a TransactionalTree),
    Journal(journal::TxView<'a>),
}

impl std::fmt::Debug for TxTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxTree").finish_non_exhaustive()
    }
}

impl TxTree<'_> {
    pub fn get<E>(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Abort<E>> {
        Ok(match &self.kind {
            TxKind::Sled(tree) => tree.get(key)?.map(|v| v.to_vec()),
            TxKind::Journal(view) => view.get(key),
        })
    }

    pub fn insert<E>(&self, key: &[u8], value: &[u8]) -> Result<(), Abort<E>> {
        match &self.kind {
            TxKind::Sled(tree) => {
                tree.insert(key, value)?;
            }
            TxKind::Journal(view) => view.set(key, Some(value)),
        }
        Ok(())
    }

    pub fn remove<E>(&self, key: &[u8]) -> Result<(), Abort<E>> {
        match &self.kind {
            TxKind::Sled(tree) => {
                tree.remove(key)?;
            }
            TxKind::Journal(view) => view.set(key, None),
        }
        Ok(())
    }

    /// The value under `key`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned, E>(&self, key: &str) -> Result<Option<T>, Abort<E>> {
        self.get(key.as_bytes())?
            .map(|bytes| decode(key, &bytes))
            .transpose()
            .map_err(|e| Abort(AbortKind::Store(e)))
    }

    /// Stores `value` as JSON under `key`.
    pub fn insert_json<T: Serialize, E>(&self, key: &str, value: &T) -> Result<(), Abort<E>> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Abort(AbortKind::Store(Error::Encode(e))))?;
        self.insert(key.as_bytes(), &bytes)
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Decode {
        key: key.to_owned(),
        source,
    })
}

/// A named keyspace of a [`Store`] or a [`Journal`].
#[derive(Debug, Clone)]
pub struct Tree {
    kind: TreeKind,
}

#[derive(Debug, Clone)]
enum TreeKind {
    Sled(sled::Tree),
    Journal(journal::JTree),
}

/// A tree's raw entries, in the order asked for.
type Entries = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>>;

/// Raw entries as the JSON iterators yield them: the key as text, the
/// value decoded.
fn decoded<T: DeserializeOwned>(entries: Entries) -> impl Iterator<Item = Result<(String, T)>> {
    entries.map(|entry| {
        let (k, v) = entry?;
        let key = String::from_utf8_lossy(&k).into_owned();
        let value = decode(&key, &v)?;
        Ok((key, value))
    })
}

/// The smallest key above every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

impl Tree {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(match &self.kind {
            TreeKind::Sled(tree) => tree.get(key)?.map(|v| v.to_vec()),
            TreeKind::Journal(tree) => tree.get(key),
        })
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        match &self.kind {
            TreeKind::Sled(tree) => {
                tree.insert(key, value)?;
            }
            TreeKind::Journal(tree) => {
                tree.set(key, Some(value));
            }
        }
        Ok(())
    }

    pub fn remove(&self, key: &[u8]) -> Result<()> {
        self.take(key).map(drop)
    }

    pub fn is_empty(&self) -> bool {
        match &self.kind {
            TreeKind::Sled(tree) => tree.is_empty(),
            TreeKind::Journal(tree) => tree.is_empty(),
        }
    }

    /// Removes `key` and returns what it held, atomically: of two concurrent
    /// takers, exactly one gets the value (single-use codes rely on this).
    pub fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(match &self.kind {
            TreeKind::Sled(tree) => tree.remove(key)?.map(|v| v.to_vec()),
            TreeKind::Journal(tree) => tree.set(key, None),
        })
    }

    /// `take` for a JSON value.
    pub fn take_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.take(key.as_bytes())?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Entries with keys in `[from, to)` (`to` `None`: to the end), in key
    /// order or, with `reverse`, backwards, decoded from JSON.
    pub fn range_json<T: DeserializeOwned>(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = Result<(String, T)>> + use<T> {
        let end = match to {
            Some(to) => Bound::Excluded(to.to_vec()),
            None => Bound::Unbounded,
        };
        decoded(self.entries(Bound::Included(from.to_vec()), end, reverse))
    }

    /// Entries whose keys start with `prefix`, in key order, decoded from JSON.
    pub fn prefix_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, T)>> + use<T> {
        let prefix = prefix.as_bytes();
        decoded(self.entries(Bound::Included(prefix.to_vec()), prefix_end(prefix), false))
    }

    /// The raw entries between two bounds, forwards or backwards.
    fn entries(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, reverse: bool) -> Entries {
        match &self.kind {
            TreeKind::Sled(tree) => {
                let iter = tree.range::<Vec<u8>, _>((lower, upper));
                let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
                    if reverse {
                        Box::new(iter.rev())
                    } else {
                        Box::new(iter)
                    };
                Box::new(iter.map(|entry| {
                    let (k, v) = entry?;
                    Ok((k.to_vec(), v.to_vec()))
                }))
            }
            TreeKind::Journal(tree) => Box::new(tree.range(lower, upper, reverse).map(Ok)),
        }
    }

    /// The value under `key`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key.as_bytes())?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub fn insert_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(Error::Encode)?;
        self.insert(key.as_bytes(), &bytes)
    }

    /// All entries in key order, decoded from JSON.
    pub fn values_json<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        decoded(self.entries(Bound::Unbounded, Bound::Unbounded, false)).collect()
    }
}

/// Largest key and value a plugin may store through `kv`.
pub const KV_MAX_KEY: usize = 512;
pub const KV_MAX_VALUE: usize = 1 << 20;

/// Plugin-private key-value storage: one sled tree, keys prefixed by the
/// plugin's name and a NUL, which no plugin name contains.
#[derive(Debug, Clone)]
pub struct PluginKv {
    tree: Tree,
}

impl PluginKv {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            tree: store.tree("plugin-kv")?,
        })
    }

    fn key(namespace: &str, key: &str) -> Result<Vec<u8>, KvError> {
        if key.len() > KV_MAX_KEY {
            return Err(KvError::TooLarge(format!(
                "key is {} bytes; at most {KV_MAX_KEY}",
                key.len()
            )));
        }
        let mut k = Vec::with_capacity(namespace.len() + 1 + key.len());
        k.extend_from_slice(namespace.as_bytes());
        k.push(0);
        k.extend_from_slice(key.as_bytes());
        Ok(k)
    }
}

fn store_error(e: Error) -> KvError {
    KvError::Store(e.to_string())
}

impl KvStore for PluginKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.tree
            .get(&Self::key(namespace, key)?)
            .map_err(store_error)
    }

    fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        if value.len() > KV_MAX_VALUE {
            return Err(KvError::TooLarge(format!(
                "value is {} bytes; at most {KV_MAX_VALUE}",
                value.len()
            )));
        }
        self.tree
            .insert(&Self::key(namespace, key)?, value)
            .map_err(store_error)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.tree
            .remove(&Self::key(namespace, key)?)
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_namespaces_are_private_and_survive_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let kv = PluginKv::open(&Store::open(dir.path())?)?;
            kv.set("alpha", "k", b"a")?;
            kv.set("beta", "k", b"b")?;
            assert_eq!(kv.get("alpha", "k")?, Some(b"a".to_vec()));
            assert_eq!(kv.get("beta", "k")?, Some(b"b".to_vec()));
            // A namespace cannot reach into another by embedding the separator.
            assert_eq!(kv.get("alph", "a\0k")?, None);
            kv.delete("beta", "k")?;
            assert_eq!(kv.get("beta", "k")?, None);
        }
        let kv = PluginKv::open(&Store::open(dir.path())?)?;
        assert_eq!(kv.get("alpha", "k")?, Some(b"a".to_vec()));
        Ok(())
    }

    #[test]
    fn kv_refuses_oversized_keys_and_values() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let kv = PluginKv::open(&Store::open(dir.path())?)?;
        let long_key = "k".repeat(KV_MAX_KEY + 1);
        assert!(matches!(
            kv.set("a", &long_key, b""),
            Err(KvError::TooLarge(_))
        ));
        let big = vec![0u8; KV_MAX_VALUE + 1];
        assert!(matches!(kv.set("a", "k", &big), Err(KvError::TooLarge(_))));
        Ok(())
    }

    #[test]
    fn transactions_write_all_trees_or_none() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let (a, b) = (store.tree("a")?, store.tree("b")?);
        store.transaction::<_, ()>(&[&a, &b], |t| {
            t[0].insert_json("k", &1u32)?;
            t[1].insert_json("k", &2u32)?;
            // Reads see the transaction's own writes.
            assert_eq!(t[0].get_json::<u32, ()>("k")?, Some(1));
            Ok(())
        })?;
        let aborted = store.transaction::<(), &str>(&[&a, &b], |t| {
            t[0].insert_json("k", &10u32)?;
            t[1].insert_json("k", &20u32)?;
            Err(Abort::with("changed my mind"))
        });
        assert!(matches!(aborted, Err(TxError::Abort("changed my mind"))));
        assert_eq!(a.get_json::<u32>("k")?, Some(1));
        assert_eq!(b.get_json::<u32>("k")?, Some(2));
        Ok(())
    }

    #[test]
    fn ranges_and_prefixes_iterate_in_key_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let tree = Store::open(dir.path())?.tree("t")?;
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            tree.insert_json(k, &k)?;
        }
        let keys = |it: &mut dyn Iterator<Item = Result<(String, String)>>| -> Result<Vec<String>> {
            it.map(|e| e.map(|(k, _)| k)).collect()
        };
        assert_eq!(keys(&mut tree.prefix_json("a/"))?, ["a/1", "a/2", "a/3"]);
        assert_eq!(
            keys(&mut tree.range_json(b"a/2", Some(b"b"), false))?,
            ["a/2", "a/3"]
        );
        assert_eq!(
            keys(&mut tree.range_json(b"a/", Some(b"a/3"), true))?,
            ["a/2", "a/1"]
        );
        Ok(())
    }

    #[test]
    fn corrupt_json_is_an_error_naming_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let tree = Store::open(dir.path())?.tree("t")?;
        tree.insert(b"bad", b"{not json")?;
        let err = tree.get_json::<u32>("bad").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("\"bad\"")));
        Ok(())
    }
}
