//! sfop's embedded storage on sled: named trees of bytes, JSON helpers, and the
//! per-plugin `kv` namespaces. The only crate that names sled.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sfop_core::{KvError, KvStore};

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open store. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
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
        Ok(Self { db })
    }

    /// The tree called `name`, created on first use.
    pub fn tree(&self, name: &str) -> Result<Tree> {
        Ok(Tree {
            tree: self.db.open_tree(name)?,
        })
    }

    /// Waits until everything written so far is durable on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// A named keyspace of a [`Store`].
#[derive(Debug, Clone)]
pub struct Tree {
    tree: sled::Tree,
}

impl Tree {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    pub fn remove(&self, key: &[u8]) -> Result<()> {
        self.tree.remove(key)?;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Removes `key` and returns what it held, atomically: of two concurrent
    /// takers, exactly one gets the value (single-use codes rely on this).
    pub fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.remove(key)?.map(|v| v.to_vec()))
    }

    /// `take` for a JSON value.
    pub fn take_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.take(key.as_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Entries whose key starts with `prefix`, in key order, decoded from JSON.
    pub fn scan_prefix_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>> {
        self.tree
            .scan_prefix(prefix.as_bytes())
            .map(|entry| {
                let (k, v) = entry?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let value = serde_json::from_slice(&v).map_err(|source| Error::Decode {
                    key: key.clone(),
                    source,
                })?;
                Ok((key, value))
            })
            .collect()
    }

    /// The value under `key`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key.as_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub fn insert_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(Error::Encode)?;
        self.insert(key.as_bytes(), &bytes)
    }

    /// All entries in key order, decoded from JSON.
    pub fn values_json<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        self.tree
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let value = serde_json::from_slice(&v).map_err(|source| Error::Decode {
                    key: key.clone(),
                    source,
                })?;
                Ok((key, value))
            })
            .collect()
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
    fn corrupt_json_is_an_error_naming_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let tree = Store::open(dir.path())?.tree("t")?;
        tree.insert(b"bad", b"{not json")?;
        let err = tree.get_json::<u32>("bad").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("\"bad\"")));
        Ok(())
    }
}
