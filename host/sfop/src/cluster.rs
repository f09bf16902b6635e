//! A node of a cluster (ADR 0029): with `[store] url`, the node connects to
//! the cluster's PostgreSQL database before anything else (the schema is
//! checked and brought up to date), reads the first snapshot of what the
//! cluster serves and follows it through a [`Feed`], all before a port is
//! bound. The boxes that keep shared state (management, auth, portal, the
//! virtual bank) are handed the [`Node`] by the composition root.

pub mod apps;
pub mod grants;

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
    let cluster = Cluster::connect_with_ca(
        url,
        config.store.ca.as_deref(),
        config.store.max_connections,
    )
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

/// The management center, made a node of the cluster when there is one.
pub(crate) fn management<P: sfop_management::DataPlane>(
    management: sfop_management::Management<P>,
    node: Option<&Node>,
) -> sfop_management::Management<P> {
    match node {
        Some(node) => management.with_cluster(sfop_management::cluster::ClusterLink {
            cluster: node.cluster.clone(),
            snapshots: node.feed.snapshots(),
            blobs: node.blobs.clone(),
        }),
        None => management,
    }
}

/// How long a revocation may take to be written to the cluster.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The auth box's revocations on a cluster node: checked against the list
/// the feed keeps (refused when it is older than
/// `auth.revocation_max_lag_ms`), written through the cluster database, from
/// which every node's feed reads them.
#[derive(Debug)]
pub struct FeedRevocations {
    node: Arc<Node>,
    runtime: tokio::runtime::Handle,
}

impl FeedRevocations {
    pub fn new(node: Arc<Node>) -> anyhow::Result<Self> {
        Ok(Self {
            node,
            runtime: tokio::runtime::Handle::try_current()
                .context("the cluster's revocations need a tokio runtime")?,
        })
    }
}

impl sfop_auth::SharedRevocations for FeedRevocations {
    fn check(&self, ids: &[String]) -> Result<bool, sfop_auth::Unproven> {
        self.node
            .feed
            .check_revoked(ids, self.node.revocation_max_lag)
            .map_err(|stale| sfop_auth::Unproven(stale.to_string()))
    }

    fn revoke(&self, ids: &[String]) -> Result<(), sfop_auth::NotRevoked> {
        // The caller is on a blocking thread; the write runs on the runtime.
        let (done, answer) = std::sync::mpsc::channel();
        let (node, owned) = (self.node.clone(), ids.to_vec());
        self.runtime.spawn(async move {
            let _ = done.send(node.cluster.revoke(&owned).await);
        });
        match answer.recv_timeout(REVOKE_TIMEOUT) {
            Ok(Ok(seq)) => {
                // Refused here at once, as on a single node; the other
                // nodes within their feed's lag.
                self.node.feed.note_revoked(ids);
                tracing::info!(seq, "revocation written to the cluster");
                Ok(())
            }
            Ok(Err(e)) => Err(sfop_auth::NotRevoked(format!(
                "revoking through the cluster database: {e}"
            ))),
            Err(_) => Err(sfop_auth::NotRevoked(format!(
                "revoking through the cluster database: no answer within {REVOKE_TIMEOUT:?}"
            ))),
        }
    }
}

/// `/readyz`'s check on a cluster node: its bank applied every change the
/// cluster recorded (ADR 0030). While one cannot be applied here the node
/// refuses to move money, so it asks to be taken out of rotation.
#[derive(Debug)]
pub struct BankChangesApplied(pub sfop_vbank::ClusterBank);

impl sfop_gateway::ReadyCheck for BankChangesApplied {
    fn name(&self) -> &'static str {
        "bank_changes"
    }

    fn holds(&self) -> bool {
        self.0.is_current()
    }
}
