//! How a node follows the cluster: one LISTEN connection per node hears
//! every change of the config version and every revocation, and the same
//! connection checks both numbers on every (re)connect and every
//! `check_every` (NOTIFY is not durable: a notice sent while the node was
//! disconnected is lost, the numbers are not). On a newer config version the
//! node re-reads a [`Snapshot`]; while the database is away it keeps the
//! last one it read. The revocation set is fresh as of the start of the last
//! check that succeeded; a node asked to decide on a token with a staler set
//! refuses ([`Stale`]) rather than guess.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use crate::registry::Snapshot;
use crate::{CONFIG_CHANNEL, Cluster, Error, REVOCATION_CHANNEL, Result};

/// How a [`Feed`] checks and reconnects.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// How often the numbers are checked without a notice (also what keeps
    /// the revocation set's age below the lag a node accepts: keep it a
    /// fraction of `auth.revocation_max_lag_ms`).
    pub check_every: Duration,
    /// How long one check may take before the connection is given up.
    pub check_timeout: Duration,
    /// The pause before reconnecting after the connection failed.
    pub reconnect_after: Duration,
}

impl FeedSettings {
    /// Checks four times within `max_lag`.
    pub fn for_max_lag(max_lag: Duration) -> Self {
        Self {
            check_every: (max_lag / 4).max(Duration::from_millis(10)),
            check_timeout: Duration::from_secs(2),
            reconnect_after: Duration::from_millis(100),
        }
    }
}

/// The revocation set is older than the caller accepts: nothing proves the
/// token unrevoked, so it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the revocation list is {age_ms} ms old (at most {max_ms} ms accepted): the cluster \
     database has not been reached since"
)]
pub struct Stale {
    /// `None`-like `u64::MAX` when it was never read.
    pub age_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug)]
struct Shared {
    base: Instant,
    revoked: RwLock<HashSet<String>>,
    revocation_seq: AtomicU64,
    /// Milliseconds since `base` of the start of the last good check, plus
    /// one (0: never).
    fresh_at: AtomicU64,
    connected: AtomicBool,
    connects: AtomicU64,
    stale_refusals: AtomicU64,
}

/// A node's view of the cluster, kept current by a background task.
#[derive(Debug)]
pub struct Feed {
    shared: Arc<Shared>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Reads the first snapshot and the revocations (so a node starts with
    /// what the cluster serves and can prove tokens unrevoked at once; it
    /// fails when the database is away) and starts following.
    pub async fn start(cluster: &Cluster, settings: FeedSettings) -> Result<Self> {
        let first = cluster.snapshot().await?;
        let (tx, snapshots) = watch::channel(Arc::new(first));
        let shared = Arc::new(Shared {
            base: Instant::now(),
            revoked: RwLock::new(HashSet::new()),
            revocation_seq: AtomicU64::new(0),
            fresh_at: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            stale_refusals: AtomicU64::new(0),
        });
        // The revocations too, before the node serves a token: otherwise a
        // node just started refuses every token as unproven (503) until its
        // feed's first check, which a client that saw it listening meets.
        {
            let conn = cluster.conn().await?;
            sync(cluster, &conn, &shared, &tx).await?;
        }
        let task = tokio::spawn(follow(cluster.clone(), shared.clone(), tx, settings));
        Ok(Self {
            shared,
            snapshots,
            task,
        })
    }

    /// The last snapshot read; changes when a newer config version has been
    /// read.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Whether any of `ids` is revoked, if the revocation set is no older
    /// than `max_lag`; otherwise [`Stale`] (counted in
    /// [`Feed::stale_refusals`]).
    pub fn check_revoked(&self, ids: &[String], max_lag: Duration) -> Result<bool, Stale> {
        let max_ms = max_lag.as_millis() as u64;
        let age_ms = self
            .revocation_age()
            .map_or(u64::MAX, |a| a.as_millis() as u64);
        if age_ms > max_ms {
            self.shared.stale_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(Stale { age_ms, max_ms });
        }
        let set = self
            .shared
            .revoked
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Ok(ids.iter().any(|id| set.contains(id)))
    }

    /// Adds `ids`, revoked through this node and durable in the cluster, to
    /// the set now: the node that revoked a token refuses it from then on,
    /// without waiting for its feed to read the revocation back.
    pub fn note_revoked(&self, ids: &[String]) {
        let mut set = self
            .shared
            .revoked
            .write()
            .unwrap_or_else(|p| p.into_inner());
        set.extend(ids.iter().cloned());
    }

    /// How old the revocation set is (`None`: never read).
    pub fn revocation_age(&self) -> Option<Duration> {
        let at = self.shared.fresh_at.load(Ordering::Acquire);
        (at > 0).then(|| {
            let read_at = self.shared.base + Duration::from_millis(at - 1);
            Instant::now().saturating_duration_since(read_at)
        })
    }

    /// Whether the LISTEN connection is up now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// How many times the LISTEN connection was (re)established.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Tokens refused because the revocation set was too old (the metric).
    pub fn stale_refusals(&self) -> u64 {
        self.shared.stale_refusals.load(Ordering::Relaxed)
    }
}

async fn follow(
    cluster: Cluster,
    shared: Arc<Shared>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    settings: FeedSettings,
) {
    loop {
        if let Err(e) = session(&cluster, &shared, &snapshots, settings).await {
            tracing::warn!("cluster feed: {e}; keeping the last snapshot and reconnecting");
        }
        shared.connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(settings.reconnect_after).await;
    }
}

/// One LISTEN connection, until it fails.
async fn session(
    cluster: &Cluster,
    shared: &Shared,
    snapshots: &watch::Sender<Arc<Snapshot>>,
    settings: FeedSettings,
) -> Result<()> {
    let (client, mut connection) = cluster.config().connect(cluster.tls()).await?;
    let (notices, mut heard) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notices.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("cluster feed connection: {e}");
                    return;
                }
            }
        }
    });
    // The driver ends with the connection; dropping the session ends both.
    let _driver = AbortOnDrop(driver);
    client
        .batch_execute(&format!(
            "LISTEN {CONFIG_CHANNEL}; LISTEN {REVOCATION_CHANNEL}"
        ))
        .await?;
    shared.connected.store(true, Ordering::Relaxed);
    shared.connects.fetch_add(1, Ordering::Relaxed);
    let mut tick = tokio::time::interval(settings.check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let check = sync(cluster, &client, shared, snapshots);
        match tokio::time::timeout(settings.check_timeout, check).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "a check took more than {:?}",
                    settings.check_timeout
                )));
            }
        }
        tokio::select! {
            notice = heard.recv() => {
                if notice.is_none() {
                    return Err(Error::Unavailable("the LISTEN connection closed".into()));
                }
                // Several notices at once need one check.
                while heard.try_recv().is_ok() {}
            }
            _ = tick.tick() => {}
        }
    }
}

/// Compares both numbers with what this node has, reads what is newer.
async fn sync(
    cluster: &Cluster,
    client: &tokio_postgres::Client,
    shared: &Shared,
    snapshots: &watch::Sender<Arc<Snapshot>>,
) -> Result<()> {
    let started = shared.base.elapsed();
    let row = client
        .query_one(
            "SELECT (SELECT version FROM config_version), (SELECT seq FROM revocation_feed)",
            &[],
        )
        .await?;
    let (config_version, revocation_seq) =
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    let known = shared.revocation_seq.load(Ordering::Acquire);
    if revocation_seq > known {
        let ids: Vec<String> = client
            .query(
                "SELECT revocation_id FROM revocations WHERE seq > $1 AND seq <= $2",
                &[&(known as i64), &(revocation_seq as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut set = shared.revoked.write().unwrap_or_else(|p| p.into_inner());
        set.extend(ids);
        shared
            .revocation_seq
            .store(revocation_seq, Ordering::Release);
    }
    // Everything revoked before `started` is in the set now.
    shared
        .fresh_at
        .fetch_max(started.as_millis() as u64 + 1, Ordering::AcqRel);
    if config_version > snapshots.borrow().version {
        let snapshot = cluster.snapshot().await?;
        snapshots.send_if_modified(|current| {
            if snapshot.version > current.version {
                *current = Arc::new(snapshot);
                true
            } else {
                false
            }
        });
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
