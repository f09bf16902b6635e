//! Revoked token blocks, by revocation id. Persisted in sled (durable before
//! `revoke` returns) and mirrored in memory for the per-request check.

use std::collections::HashSet;
use std::sync::RwLock;

use sfop_store::{Store, Tree};

/// The set of revoked block revocation ids (hex).
#[derive(Debug)]
pub struct Revocations {
    store: Store,
    tree: Tree,
    ids: RwLock<HashSet<String>>,
}

impl Revocations {
    pub fn open(store: &Store) -> crate::Result<Self> {
        let tree = store.tree("auth.revoked")?;
        let ids = tree
            .values_json::<u64>()?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        Ok(Self {
            store: store.clone(),
            tree,
            ids: RwLock::new(ids),
        })
    }

    /// Revokes every block with one of `ids`; durable when this returns.
    pub fn revoke(&self, ids: &[String]) -> crate::Result<()> {
        let now = crate::now_secs();
        for id in ids {
            self.tree.insert_json(id, &now)?;
        }
        self.store.flush()?;
        let mut set = self.ids.write().unwrap_or_else(|p| p.into_inner());
        set.extend(ids.iter().cloned());
        Ok(())
    }

    /// Whether any of `ids` is revoked.
    pub fn any_revoked(&self, ids: &[String]) -> bool {
        let set = self.ids.read().unwrap_or_else(|p| p.into_inner());
        ids.iter().any(|id| set.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_are_durable() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let r = Revocations::open(&Store::open(dir.path())?)?;
            assert!(!r.any_revoked(&["aa".into()]));
            r.revoke(&["aa".into()])?;
            assert!(r.any_revoked(&["bb".into(), "aa".into()]));
        }
        let r = Revocations::open(&Store::open(dir.path())?)?;
        assert!(r.any_revoked(&["aa".into()]));
        assert!(!r.any_revoked(&["bb".into()]));
        Ok(())
    }
}
