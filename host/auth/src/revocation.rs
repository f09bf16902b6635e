//! Revoked token blocks, by revocation id. On one node: persisted in sled
//! (durable before `revoke` returns) and mirrored in memory for the
//! per-request check. On a cluster node: the cluster's list, kept by the
//! composition root behind [`SharedRevocations`] (ADR 0029), which may be
//! unable to prove a token unrevoked; the check then fails closed.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use sfop_store::{Store, Tree};

/// A cluster's revocations, as this node knows them.
pub trait SharedRevocations: Send + Sync + fmt::Debug {
    /// Whether any of `ids` is revoked; [`Unproven`] when this node's list
    /// is too old to tell.
    fn check(&self, ids: &[String]) -> Result<bool, Unproven>;
    /// Revokes every block with one of `ids`: durable on the cluster and
    /// announced to every node when this returns. Called on a blocking
    /// thread (the OAuth server's), never on an async worker.
    fn revoke(&self, ids: &[String]) -> Result<(), NotRevoked>;
}

/// A revocation the cluster did not take (its database unreachable or too
/// slow): nothing is acknowledged; the client retries (RFC 7009 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotRevoked(pub String);

/// This node cannot prove a token unrevoked now (its list of revocations is
/// older than it may be); the token is refused, as a platform failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unproven(pub String);

/// The set of revoked block revocation ids (hex).
#[derive(Debug)]
pub struct Revocations {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Local {
        store: Store,
        tree: Tree,
        ids: RwLock<HashSet<String>>,
    },
    Shared(Arc<dyn SharedRevocations>),
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
            backend: Backend::Local {
                store: store.clone(),
                tree,
                ids: RwLock::new(ids),
            },
        })
    }

    /// A cluster node's revocations.
    pub fn shared(shared: Arc<dyn SharedRevocations>) -> Self {
        Self {
            backend: Backend::Shared(shared),
        }
    }

    /// Revokes every block with one of `ids`; durable when this returns.
    pub fn revoke(&self, ids: &[String]) -> crate::Result<()> {
        match &self.backend {
            Backend::Local {
                store,
                tree,
                ids: set,
            } => {
                let now = crate::now_secs();
                for id in ids {
                    tree.insert_json(id, &now)?;
                }
                store.flush()?;
                let mut set = set.write().unwrap_or_else(|p| p.into_inner());
                set.extend(ids.iter().cloned());
                Ok(())
            }
            Backend::Shared(shared) => shared
                .revoke(ids)
                .map_err(|e| crate::Error::Unavailable(e.0)),
        }
    }

    /// Whether any of `ids` is revoked, or [`Unproven`] when this node
    /// cannot tell now.
    pub fn check(&self, ids: &[String]) -> Result<bool, Unproven> {
        match &self.backend {
            Backend::Local { ids: set, .. } => {
                let set = set.read().unwrap_or_else(|p| p.into_inner());
                Ok(ids.iter().any(|id| set.contains(id)))
            }
            Backend::Shared(shared) => shared.check(ids),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn revocations_are_durable() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let r = Revocations::open(&Store::open(dir.path())?)?;
            assert_eq!(r.check(&["aa".into()]), Ok(false));
            r.revoke(&["aa".into()])?;
            assert_eq!(r.check(&["bb".into(), "aa".into()]), Ok(true));
        }
        let r = Revocations::open(&Store::open(dir.path())?)?;
        assert_eq!(r.check(&["aa".into()]), Ok(true));
        assert_eq!(r.check(&["bb".into()]), Ok(false));
        Ok(())
    }

    /// A cluster's list this node cannot prove fresh, and a cluster
    /// database it cannot reach.
    #[derive(Debug)]
    pub(crate) struct Away;

    impl SharedRevocations for Away {
        fn check(&self, _: &[String]) -> Result<bool, Unproven> {
            Err(Unproven("the list is 2000 ms old".into()))
        }
        fn revoke(&self, _: &[String]) -> Result<(), NotRevoked> {
            Err(NotRevoked("the cluster database is unreachable".into()))
        }
    }

    #[test]
    fn a_shared_list_that_cannot_tell_fails_closed() {
        let r = Revocations::shared(Arc::new(Away));
        assert!(r.check(&["aa".into()]).is_err());
        assert!(r.revoke(&["aa".into()]).is_err());
    }
}
