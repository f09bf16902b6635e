//! A node's own copy of the components it serves, by SHA-256: fetched from
//! the cluster once, then read from disk (also while the database is away).
//! The compiled artefacts sit beside, in the runtime's compile cache (also
//! keyed by the component's hash, docs/adr/0004).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Cluster, Error, Result};

/// Component bytes on local disk, by SHA-256.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.dir.join(sha256))
    }

    /// The bytes on disk, if present and intact (a damaged file is removed
    /// and reported absent).
    pub async fn local(&self, sha256: &str) -> Option<Vec<u8>> {
        let path = self.path(sha256)?;
        let bytes = tokio::fs::read(&path).await.ok()?;
        if hex::encode(Sha256::digest(&bytes)) == sha256 {
            return Some(bytes);
        }
        tracing::warn!(%sha256, "cached component is damaged; fetching it again");
        let _ = tokio::fs::remove_file(&path).await;
        None
    }

    /// The component's bytes: from disk, or else from the cluster (then
    /// kept on disk). Returns whether they came from disk.
    pub async fn get(&self, cluster: &Cluster, sha256: &str) -> Result<(Vec<u8>, bool)> {
        if let Some(bytes) = self.local(sha256).await {
            return Ok((bytes, true));
        }
        let Some(path) = self.path(sha256) else {
            return Err(Error::Conflict(format!(
                "{sha256:?} is not a SHA-256 in hex"
            )));
        };
        let bytes = cluster.blob(sha256).await?.ok_or_else(|| {
            Error::Conflict(format!("component {sha256} is not in the cluster store"))
        })?;
        let write = async {
            tokio::fs::create_dir_all(&self.dir).await?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            // Serving does not depend on the copy: the next start fetches again.
            tracing::warn!(%sha256, "keeping the component on disk failed: {e}");
        }
        Ok((bytes, false))
    }
}
