//! The platform's root keys. Each has a numeric id carried in the tokens it
//! signs (`root_key_id`), so keys can rotate: new tokens use the current key,
//! tokens signed by older keys keep verifying until those keys are retired.
//!
//! Private keys live in one file, `<keys dir>/root-keys.json`, mode 0600 in
//! a 0700 directory, written atomically (temporary file, fsync, rename). At
//! start a key file or directory that group or others may read or write is
//! refused: the platform does not sign with a key someone else may hold.
//! The store never holds private keys; a store written by an older version
//! (tree `auth.root-keys`) is migrated into the file on first start and
//! emptied, and since those keys sat in files others could read, a fresh key
//! takes over signing at once. See `docs/keys.md`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use biscuit_auth::{Algorithm, Biscuit, KeyPair, PrivateKey, PublicKey, UnverifiedBiscuit};
use serde::{Deserialize, Serialize};
use sfop_store::Store;

use crate::{Error, Result};

/// The file, in the keys directory, that holds the private root keys.
pub const KEY_FILE: &str = "root-keys.json";

/// The store tree where versions before the key file kept private keys.
/// Read once, to migrate; never written.
const LEGACY_TREE: &str = "auth.root-keys";

/// How a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens (and verifies).
    Current,
    /// Verifies tokens it signed earlier; signs nothing new.
    Active,
    /// Verifies nothing: tokens it signed are refused.
    Retired,
}

/// A root public key as the platform publishes it
/// (`/.well-known/sfop-keys.json`, `GET /admin/v1/keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub root_key_id: u32,
    /// Always `ed25519`.
    pub algorithm: String,
    /// `ed25519/<64 hex digits>`, as biscuit-cli and biscuit-auth read it.
    pub public_key: String,
    pub status: KeyStatus,
    /// When the key was made, seconds since the Unix epoch (0: unknown).
    #[serde(default)]
    pub created_at: u64,
    /// Whether the key was once kept in the store, readable by others:
    /// retire it once the tokens it signed have expired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exposed: bool,
}

/// The body of the well-known document and of the admin list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishedKeys {
    pub keys: Vec<PublishedKey>,
}

/// The key file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    root_key_id: u32,
    algorithm: String,
    /// Hex Ed25519 private key.
    private_key: String,
    retired: bool,
    #[serde(default)]
    created_at: u64,
    /// Migrated from the store, where others could read it.
    #[serde(default)]
    exposed: bool,
}

/// What older versions stored in the store tree.
#[derive(Deserialize)]
struct LegacyKey {
    private: String,
    retired: bool,
}

/// One key in memory. The pair is leaked on purpose: keys are few, added
/// only by a rotation and never removed while the process runs, and a
/// `'static` borrow lets [`KeyRing::current`] lend the signing key without
/// holding a lock while a token is built.
#[derive(Clone, Copy)]
struct Entry {
    pair: &'static KeyPair,
    retired: bool,
    created_at: u64,
    exposed: bool,
}

struct Shared {
    keys: RwLock<BTreeMap<u32, Entry>>,
    /// The key file; `None` for rings that live in memory only.
    file: Option<PathBuf>,
    /// Held across a change and its write to the file, so that two
    /// rotations cannot write the file in the wrong order.
    change: Mutex<()>,
}

/// Root key pairs by id; the highest non-retired id signs. Clones share
/// one ring: a rotation or retirement is seen by every clone at once.
#[derive(Clone)]
pub struct KeyRing {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.read().keys().collect::<Vec<_>>())
            .field("current", &self.current_id())
            .field("file", &self.shared.file)
            .finish()
    }
}

impl KeyRing {
    /// The key ring in `keys_dir` (created mode 0700 if absent), with the
    /// keys of an older `store` migrated into it and a first key generated
    /// if there is none. Refuses a key file or directory that group or
    /// others may read or write, with a message naming it and the fix.
    pub fn load(keys_dir: &Path, store: &Store) -> Result<Self> {
        private_dir(keys_dir)?;
        let path = keys_dir.join(KEY_FILE);
        let mut keys = read_key_file(&path)?;
        let tree = store.tree(LEGACY_TREE)?;
        let legacy = tree.values_json::<LegacyKey>()?;
        let mut changed = false;
        for (id, stored) in &legacy {
            let id: u32 = id
                .parse()
                .map_err(|_| Error::Key(format!("stored root key id {id:?} is not a number")))?;
            let pair = keypair_from_hex(&stored.private)?;
            match keys.get(&id) {
                // Already moved (a start that stopped before emptying the tree).
                Some(e) if e.pair.private().to_bytes() == pair.private().to_bytes() => {}
                Some(_) => {
                    return Err(Error::Key(format!(
                        "root key {id} in the store differs from root key {id} in {}; \
                         refusing to guess which one signs",
                        path.display()
                    )));
                }
                None => {
                    keys.insert(
                        id,
                        Entry {
                            pair: Box::leak(Box::new(pair)),
                            retired: stored.retired,
                            created_at: 0,
                            exposed: true,
                        },
                    );
                    changed = true;
                }
            }
        }
        if changed {
            write_key_file(&path, &keys)?;
        }
        if !legacy.is_empty() {
            for (id, _) in &legacy {
                tree.remove(id.as_bytes())?;
            }
            store.flush()?;
            tracing::warn!(
                ids = ?legacy.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
                file = %path.display(),
                "root keys moved out of the store into the key file; they were readable by \
                 anyone who could read the data dir: a new key now signs, retire the old ones \
                 (`sfop keys retire <id>`) once the tokens they signed have expired"
            );
        }
        let ring = Self {
            shared: Arc::new(Shared {
                keys: RwLock::new(keys),
                file: Some(path),
                change: Mutex::new(()),
            }),
        };
        // No key yet, or the signing key is one that sat in the store.
        let current_exposed = ring
            .current_id()
            .and_then(|id| ring.read().get(&id).map(|e| e.exposed));
        if current_exposed != Some(false) {
            ring.rotate()?;
        }
        Ok(ring)
    }

    /// A ring with one fresh random key, kept in memory only.
    pub fn generate() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(1, Entry::new(KeyPair::new()));
        Self::in_memory(keys)
    }

    /// For the crate's tests written when keys lived in the store: a fresh
    /// ring in memory; `store` is not used.
    #[cfg(test)]
    pub(crate) fn open(_store: &Store) -> Result<Self> {
        Ok(Self::generate())
    }

    /// A ring with one fixed key, for deterministic samples and tests.
    pub fn from_seed(id: u32, seed: &[u8; 32]) -> Result<Self> {
        let private = PrivateKey::from_bytes(seed, Algorithm::Ed25519)
            .map_err(|e| Error::Key(e.to_string()))?;
        let mut keys = BTreeMap::new();
        keys.insert(id, Entry::new(KeyPair::from(&private)));
        Ok(Self::in_memory(keys))
    }

    fn in_memory(keys: BTreeMap<u32, Entry>) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys: RwLock::new(keys),
                file: None,
                change: Mutex::new(()),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Entry>> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to a copy of the keys, writes the copy to the key
    /// file, then makes it the ring's: a failed write changes nothing.
    fn change<T>(&self, change: impl FnOnce(&mut BTreeMap<u32, Entry>) -> Result<T>) -> Result<T> {
        let _serial = self
            .shared
            .change
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut keys = self.read().clone();
        let out = change(&mut keys)?;
        if let Some(path) = &self.shared.file {
            write_key_file(path, &keys)?;
        }
        *self
            .shared
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(out)
    }

    /// Adds a new key that signs from now on; older keys still verify.
    /// Returns its id.
    pub fn rotate(&self) -> Result<u32> {
        self.change(|keys| {
            let id = keys.keys().next_back().map_or(1, |last| last + 1);
            keys.insert(id, Entry::new(KeyPair::new()));
            Ok(id)
        })
    }

    /// Retires key `id`: tokens it signed stop verifying at once. The
    /// current key cannot be retired (rotate first), nor an unknown one.
    /// Retiring a retired key does nothing.
    pub fn retire(&self, id: u32) -> Result<()> {
        let current = self.current_id();
        self.change(|keys| {
            if current == Some(id) {
                return Err(Error::Invalid(format!(
                    "root key {id} is the current signing key; rotate first"
                )));
            }
            match keys.get_mut(&id) {
                Some(entry) => {
                    entry.retired = true;
                    Ok(())
                }
                None => Err(Error::Invalid(format!("there is no root key {id}"))),
            }
        })
    }

    /// The id of the signing key.
    pub fn current_id(&self) -> Option<u32> {
        self.read()
            .iter()
            .rev()
            .find(|(_, e)| !e.retired)
            .map(|(id, _)| *id)
    }

    /// The signing key and its id.
    pub(crate) fn current(&self) -> Result<(u32, &KeyPair)> {
        let keys = self.read();
        let (id, entry) = keys
            .iter()
            .rev()
            .find(|(_, e)| !e.retired)
            .ok_or_else(|| Error::Key("no usable root key".into()))?;
        Ok((*id, entry.pair))
    }

    /// The public key with `id`, if it exists and is not retired.
    pub fn public_key(&self, id: Option<u32>) -> Option<PublicKey> {
        let id = id?;
        match self.read().get(&id) {
            Some(e) if !e.retired => Some(e.pair.public()),
            _ => None,
        }
    }

    /// Every key's public half and status, by id; what the platform
    /// publishes. Never a private key.
    pub fn published(&self) -> PublishedKeys {
        let current = self.current_id();
        let keys = self
            .read()
            .iter()
            .map(|(id, e)| PublishedKey {
                root_key_id: *id,
                algorithm: "ed25519".into(),
                public_key: format!("ed25519/{}", e.pair.public().to_bytes_hex()),
                status: if e.retired {
                    KeyStatus::Retired
                } else if Some(*id) == current {
                    KeyStatus::Current
                } else {
                    KeyStatus::Active
                },
                created_at: e.created_at,
                exposed: e.exposed,
            })
            .collect();
        PublishedKeys { keys }
    }

    /// The key file, for rings that have one.
    pub fn file(&self) -> Option<&Path> {
        self.shared.file.as_deref()
    }
}

impl Entry {
    fn new(pair: KeyPair) -> Self {
        Self {
            pair: Box::leak(Box::new(pair)),
            retired: false,
            created_at: crate::now_secs(),
            exposed: false,
        }
    }
}

/// The `root_key_id` a token claims, without checking its signatures.
pub fn root_key_id_of(token: &str) -> Option<u32> {
    UnverifiedBiscuit::from_base64(token.trim())
        .ok()?
        .root_key_id()
}

/// What a third party does offline: checks the signatures of `token` with
/// the published keys alone (the key its `root_key_id` names, unless
/// retired). Returns that id. Decides nothing about a request.
pub fn verify_offline(token: &str, published: &[PublishedKey]) -> Result<u32> {
    let id = root_key_id_of(token).ok_or_else(|| Error::Invalid("no root_key_id".into()))?;
    let key = published
        .iter()
        .find(|k| k.root_key_id == id && k.status != KeyStatus::Retired)
        .ok_or_else(|| Error::Invalid(format!("root key {id} is not published or is retired")))?;
    let public = parse_public(&key.public_key)?;
    Biscuit::from_base64(token.trim(), public)?;
    Ok(id)
}

/// `ed25519/<hex>` as a public key.
fn parse_public(text: &str) -> Result<PublicKey> {
    let hex = text
        .strip_prefix("ed25519/")
        .ok_or_else(|| Error::Key(format!("public key {text:?} is not ed25519/<hex>")))?;
    PublicKey::from_bytes_hex(hex, Algorithm::Ed25519)
        .map_err(|e| Error::Key(format!("public key {text:?}: {e}")))
}

fn keypair_from_hex(hex: &str) -> Result<KeyPair> {
    let private = PrivateKey::from_bytes_hex(hex, Algorithm::Ed25519)
        .map_err(|e| Error::Key(format!("stored root key: {e}")))?;
    Ok(KeyPair::from(&private))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Key(format!("{what} {}: {e}", path.display()))
}

/// Creates `dir` mode 0700, or checks that an existing one is private.
fn private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| io_error("creating the keys directory", dir, e))?;
    }
    refuse_if_shared(dir, "root keys directory", "700")
}

/// A clear refusal when group or others may read, write or enter `path`.
#[cfg(unix)]
fn refuse_if_shared(path: &Path, what: &str, fix: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| io_error("reading the mode of", path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Key(format!(
            "{what} {path} has mode {mode:04o}: group or others may read or change it, so the \
             root keys may be known to someone else; refusing to use it. Fix: chmod {fix} {path} \
             (and rotate the keys if others could have read them)",
            path = path.display(),
            mode = mode & 0o7777,
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path, _what: &str, _fix: &str) -> Result<()> {
    Ok(())
}

fn read_key_file(path: &Path) -> Result<BTreeMap<u32, Entry>> {
    let mut keys = BTreeMap::new();
    if !path.exists() {
        return Ok(keys);
    }
    refuse_if_shared(path, "root key file", "600")?;
    let text = std::fs::read(path).map_err(|e| io_error("reading", path, e))?;
    let file: KeyFile = serde_json::from_slice(&text)
        .map_err(|e| Error::Key(format!("root key file {}: {e}", path.display())))?;
    for key in file.keys {
        if key.algorithm != "ed25519" {
            return Err(Error::Key(format!(
                "root key file {}: key {} has algorithm {:?}; only ed25519 is known",
                path.display(),
                key.root_key_id,
                key.algorithm
            )));
        }
        let entry = Entry {
            pair: Box::leak(Box::new(keypair_from_hex(&key.private_key)?)),
            retired: key.retired,
            created_at: key.created_at,
            exposed: key.exposed,
        };
        if keys.insert(key.root_key_id, entry).is_some() {
            return Err(Error::Key(format!(
                "root key file {}: key {} appears twice",
                path.display(),
                key.root_key_id
            )));
        }
    }
    Ok(keys)
}

/// Writes the key file atomically: a new file created mode 0600, written,
/// synced, renamed over the old one, and the directory synced.
fn write_key_file(path: &Path, keys: &BTreeMap<u32, Entry>) -> Result<()> {
    let file = KeyFile {
        keys: keys
            .iter()
            .map(|(id, e)| FileKey {
                root_key_id: *id,
                algorithm: "ed25519".into(),
                private_key: e.pair.private().to_bytes_hex(),
                retired: e.retired,
                created_at: e.created_at,
                exposed: e.exposed,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Key(format!("encoding the root keys: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    // A temporary file left by a crash: its mode is not ours to trust.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("removing", &tmp, e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options
        .open(&tmp)
        .map_err(|e| io_error("creating", &tmp, e))?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| io_error("writing", &tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| io_error("renaming into", path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> std::io::Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn keys_persist_and_rotate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let keys_dir = dir.path().join("keys");
        let store_dir = dir.path().join("store");
        let first_public = {
            let store = Store::open(&store_dir)?;
            let ring = KeyRing::load(&keys_dir, &store)?;
            assert_eq!(ring.current_id(), Some(1));
            let public = ring.public_key(Some(1));
            // A clone sees the rotation.
            let clone = ring.clone();
            assert_eq!(ring.rotate()?, 2);
            assert_eq!(clone.current_id(), Some(2));
            public
        };
        let ring = KeyRing::load(&keys_dir, &Store::open(&store_dir)?)?;
        assert_eq!(ring.current_id(), Some(2));
        assert_eq!(
            ring.public_key(Some(1)).map(|k| k.to_bytes_hex()),
            first_public.map(|k| k.to_bytes_hex())
        );
        assert!(ring.public_key(Some(9)).is_none());
        assert!(ring.public_key(None).is_none());
        #[cfg(unix)]
        {
            assert_eq!(mode(&keys_dir)?, 0o700);
            assert_eq!(mode(&keys_dir.join(KEY_FILE))?, 0o600);
        }
        Ok(())
    }

    #[test]
    fn retire_stops_verification_but_not_the_current_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("store"))?;
        let ring = KeyRing::load(&dir.path().join("keys"), &store)?;
        assert!(ring.retire(1).is_err(), "the current key cannot retire");
        assert!(ring.retire(7).is_err(), "no key 7");
        let token = crate::issue_admin(&ring, "op", crate::now_secs() + 60)?;
        let published = ring.published().keys;
        assert_eq!(verify_offline(&token, &published)?, 1);
        ring.rotate()?;
        let statuses: Vec<_> = ring.published().keys.iter().map(|k| k.status).collect();
        assert_eq!(statuses, [KeyStatus::Active, KeyStatus::Current]);
        assert_eq!(verify_offline(&token, &ring.published().keys)?, 1);
        ring.retire(1)?;
        assert!(ring.public_key(Some(1)).is_none());
        assert!(verify_offline(&token, &ring.published().keys).is_err());
        // Retirement is in the file.
        let again = KeyRing::load(&dir.path().join("keys"), &store)?;
        assert_eq!(again.published().keys[0].status, KeyStatus::Retired);
        // A key from elsewhere does not verify the token.
        let other = KeyRing::generate().published().keys;
        assert!(verify_offline(&token, &other).is_err());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("store"))?;
        let keys_dir = dir.path().join("keys");
        KeyRing::load(&keys_dir, &store)?;
        let file = keys_dir.join(KEY_FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        let e = KeyRing::load(&keys_dir, &store)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains(&format!("chmod 600 {}", file.display())), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755))?;
        let e = KeyRing::load(&keys_dir, &store)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains(&format!("chmod 700 {}", keys_dir.display())),
            "{e}"
        );
        Ok(())
    }

    /// A store as versions before the key file wrote it.
    fn legacy_store(path: &Path, keys: &[(u32, &KeyPair, bool)]) -> anyhow::Result<Store> {
        let store = Store::open(path)?;
        let tree = store.tree(LEGACY_TREE)?;
        for (id, pair, retired) in keys {
            tree.insert_json(
                &id.to_string(),
                &serde_json::json!({ "private": pair.private().to_bytes_hex(), "retired": retired }),
            )?;
        }
        store.flush()?;
        Ok(store)
    }

    #[test]
    fn keys_in_an_old_store_move_to_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (one, two) = (KeyPair::new(), KeyPair::new());
        let store = legacy_store(
            &dir.path().join("store"),
            &[(1, &one, true), (2, &two, false)],
        )?;
        let old_ring = KeyRing::from_seed(2, &{
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&two.private().to_bytes());
            seed
        })?;
        let old_token = crate::issue_admin(&old_ring, "op", crate::now_secs() + 60)?;

        let keys_dir = dir.path().join("keys");
        let ring = KeyRing::load(&keys_dir, &store)?;
        // The store holds no key any more.
        assert!(store.tree(LEGACY_TREE)?.is_empty());
        // Both keys are in the file, marked exposed; a fresh key signs.
        let published = ring.published().keys;
        let summary: Vec<_> = published
            .iter()
            .map(|k| (k.root_key_id, k.status, k.exposed))
            .collect();
        assert_eq!(
            summary,
            [
                (1, KeyStatus::Retired, true),
                (2, KeyStatus::Active, true),
                (3, KeyStatus::Current, false)
            ]
        );
        assert_eq!(
            published[1].public_key,
            format!("ed25519/{}", two.public().to_bytes_hex())
        );
        // Tokens signed before the upgrade still verify.
        assert_eq!(verify_offline(&old_token, &published)?, 2);
        let text = std::fs::read_to_string(keys_dir.join(KEY_FILE))?;
        assert!(text.contains(&two.private().to_bytes_hex()));
        // A second start finds nothing to migrate and keeps key 3 current.
        let again = KeyRing::load(&keys_dir, &store)?;
        assert_eq!(again.current_id(), Some(3));
        assert_eq!(again.published().keys.len(), 3);
        Ok(())
    }

    #[test]
    fn a_migration_cut_short_is_finished_and_a_conflict_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let one = KeyPair::new();
        let keys_dir = dir.path().join("keys");
        let store = legacy_store(&dir.path().join("store"), &[(1, &one, false)])?;
        KeyRing::load(&keys_dir, &store)?;
        // The tree filled again, as if the last start stopped before emptying it.
        let tree = store.tree(LEGACY_TREE)?;
        tree.insert_json(
            "1",
            &serde_json::json!({ "private": one.private().to_bytes_hex(), "retired": false }),
        )?;
        let ring = KeyRing::load(&keys_dir, &store)?;
        assert!(tree.is_empty());
        assert_eq!(ring.published().keys.len(), 2);
        // The same id with another key: refuse rather than guess.
        tree.insert_json(
            "1",
            &serde_json::json!({ "private": KeyPair::new().private().to_bytes_hex(), "retired": false }),
        )?;
        let e = KeyRing::load(&keys_dir, &store)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("differs"), "{e}");
        Ok(())
    }
}
