//! The platform's root keys. Each has a numeric id carried in the tokens it
//! signs (`root_key_id`), so keys can rotate: new tokens use the current key,
//! tokens signed by older keys keep verifying until those keys are retired.

use std::collections::BTreeMap;
use std::sync::Arc;

use biscuit_auth::{Algorithm, KeyPair, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use sfop_store::{Store, Tree};

use crate::{Error, Result};

#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// Hex Ed25519 private key.
    private: String,
    retired: bool,
}

/// Root key pairs by id; the highest non-retired id signs.
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<BTreeMap<u32, (Arc<KeyPair>, bool)>>,
    tree: Option<Tree>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current_id())
            .finish()
    }
}

impl KeyRing {
    /// The key ring stored in `store`, with a first key generated if empty.
    pub fn open(store: &Store) -> Result<Self> {
        let tree = store.tree("auth.root-keys")?;
        let mut keys = BTreeMap::new();
        for (id, stored) in tree.values_json::<StoredKey>()? {
            let id: u32 = id
                .parse()
                .map_err(|_| Error::Key(format!("root key id {id:?} is not a number")))?;
            keys.insert(
                id,
                (Arc::new(keypair_from_hex(&stored.private)?), stored.retired),
            );
        }
        let mut ring = Self {
            keys: Arc::new(keys),
            tree: Some(tree),
        };
        if ring.current_id().is_none() {
            ring.rotate()?;
            store.flush()?;
        }
        Ok(ring)
    }

    /// A ring with one fixed key, for deterministic samples and tests.
    pub fn from_seed(id: u32, seed: &[u8; 32]) -> Result<Self> {
        let private = PrivateKey::from_bytes(seed, Algorithm::Ed25519)
            .map_err(|e| Error::Key(e.to_string()))?;
        let mut keys = BTreeMap::new();
        keys.insert(id, (Arc::new(KeyPair::from(&private)), false));
        Ok(Self {
            keys: Arc::new(keys),
            tree: None,
        })
    }

    /// Adds a new key that signs from now on; older keys still verify.
    pub fn rotate(&mut self) -> Result<u32> {
        let id = self.keys.keys().next_back().map_or(1, |last| last + 1);
        let pair = KeyPair::new();
        if let Some(tree) = &self.tree {
            tree.insert_json(
                &id.to_string(),
                &StoredKey {
                    private: pair.private().to_bytes_hex(),
                    retired: false,
                },
            )?;
        }
        let mut keys = (*self.keys).clone();
        keys.insert(id, (Arc::new(pair), false));
        self.keys = Arc::new(keys);
        Ok(id)
    }

    /// The id of the signing key.
    pub fn current_id(&self) -> Option<u32> {
        self.keys
            .iter()
            .rev()
            .find(|(_, (_, retired))| !retired)
            .map(|(id, _)| *id)
    }

    /// The signing key and its id.
    pub(crate) fn current(&self) -> Result<(u32, &KeyPair)> {
        let id = self
            .current_id()
            .ok_or_else(|| Error::Key("no usable root key".into()))?;
        let (pair, _) = self
            .keys
            .get(&id)
            .ok_or_else(|| Error::Key("no usable root key".into()))?;
        Ok((id, pair.as_ref()))
    }

    /// The public key with `id`, if it exists and is not retired.
    pub fn public_key(&self, id: Option<u32>) -> Option<PublicKey> {
        let id = id?;
        match self.keys.get(&id) {
            Some((pair, false)) => Some(pair.public()),
            _ => None,
        }
    }
}

fn keypair_from_hex(hex: &str) -> Result<KeyPair> {
    let private = PrivateKey::from_bytes_hex(hex, Algorithm::Ed25519)
        .map_err(|e| Error::Key(format!("stored root key: {e}")))?;
    Ok(KeyPair::from(&private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_rotate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first_public = {
            let store = Store::open(dir.path())?;
            let mut ring = KeyRing::open(&store)?;
            assert_eq!(ring.current_id(), Some(1));
            let public = ring.public_key(Some(1));
            assert_eq!(ring.rotate()?, 2);
            store.flush()?;
            public
        };
        let ring = KeyRing::open(&Store::open(dir.path())?)?;
        assert_eq!(ring.current_id(), Some(2));
        assert_eq!(
            ring.public_key(Some(1)).map(|k| k.to_bytes_hex()),
            first_public.map(|k| k.to_bytes_hex())
        );
        assert!(ring.public_key(Some(9)).is_none());
        assert!(ring.public_key(None).is_none());
        Ok(())
    }
}
