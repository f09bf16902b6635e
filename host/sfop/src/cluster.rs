//! A node of a cluster (ADR 0029): with `[store] url`, the node connects to
//! the cluster's PostgreSQL database before anything else (the schema is
//! checked and brought up to date), reads the first snapshot of what the
//! cluster serves and follows it through a [`Feed`], all before a port is
//! bound. The boxes that keep shared state (management, auth, portal, the
//! virtual bank) are handed the [`Node`] by the composition root.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sfop_store_pg::{BlobCache, Cluster, Feed, FeedSettings};

use crate::Config;

/// This process as one node of a cluster.
#[derive(Debug)]
pub struct Node {
    /// The pool to the cluster database (writes, reads not in the feed).
    pub cluster: Cluster,
    /// What the cluster serves and which tokens it revoked, kept current.
    pub feed: Feed,
    /// Component bytes on this node's disk, by SHA-256.
    pub blobs: BlobCache,
    /// `auth.revocation_max_lag_ms`.
    pub revocation_max_lag: Duration,
}

/// Joins the cluster named by `config.store.url`; `None` without one (the
/// embedded sled store serves alone).
pub async fn join(config: &Config) -> anyhow::Result<Option<Arc<Node>>> {
    let Some(url) = &config.store.url else {
        return Ok(None);
    };
    let cluster = Cluster::connect(url, config.store.max_connections)
        .await
        .context("store.url: joining the cluster")?;
    let revocation_max_lag = Duration::from_millis(config.auth.revocation_max_lag_ms);
    let feed = Feed::start(&cluster, FeedSettings::for_max_lag(revocation_max_lag))
        .await
        .context("store.url: reading what the cluster serves")?;
    tracing::info!(
        config_version = feed.snapshots().borrow().version,
        "joined the cluster"
    );
    Ok(Some(Arc::new(Node {
        cluster,
        feed,
        blobs: BlobCache::new(&config.data_dir.join("cluster-blobs")),
        revocation_max_lag,
    })))
}
