//! The cluster store against a real PostgreSQL: `SFOP_TEST_PG_URL` names a
//! superuser connection (`cargo xtask pg start` prints one; `cargo xtask ci`
//! starts a private server and sets it). Each test makes its own database.
//! Without the variable a test fails under CI and is skipped, saying so,
//! elsewhere. Nodes are separate `Cluster`s (own pools, own LISTEN
//! connections), as separate processes would have.

mod consents;
mod proxy;
mod server;
mod tls;
mod variables;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sfop_store_pg::{
    ApiState, AuditEvent, BlobCache, ClientRow, Cluster, CodeRow, CodeUse, Error, Feed,
    FeedSettings, IssuedRow, NewSandboxRule, NewTransfer, NewVersion, Pushed, RefreshRow,
    Registered, Snapshot, TransferOutcome,
};
use tokio_postgres::NoTls;

/// A fresh database for `name` on the test server, or `None` (skip) when no
/// server is configured outside CI.
async fn database(name: &str) -> Result<Option<String>> {
    let Ok(admin) = std::env::var("SFOP_TEST_PG_URL") else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            bail!(
                "SFOP_TEST_PG_URL is not set: under CI the PostgreSQL tests must run \
                 (`cargo xtask ci` starts a server and sets it)"
            );
        }
        eprintln!(
            "skipped {name}: SFOP_TEST_PG_URL is not set (run `cargo xtask pg start` and \
             export what it prints)"
        );
        return Ok(None);
    };
    Ok(Some(
        sfop_store_pg::recreate_database(&admin, &format!("sfop_t_{name}"))
            .await
            .with_context(|| format!("a database for {name}"))?,
    ))
}

/// A direct connection (for what no node API does: tampering, probing).
async fn raw(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn settings(max_lag_ms: u64) -> FeedSettings {
    FeedSettings::for_max_lag(Duration::from_millis(max_lag_ms))
}

/// Waits (polling, bounded by `within`) until `ready` holds.
async fn until(within: Duration, mut ready: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > within {
            bail!("not reached within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(start.elapsed())
}

/// Waits until `feed`'s snapshot is at `version` or later.
async fn snapshot_at(feed: &Feed, version: u64, within: Duration) -> Result<Arc<Snapshot>> {
    let mut rx = feed.snapshots();
    let snapshot = tokio::time::timeout(within, rx.wait_for(|s| s.version >= version))
        .await
        .with_context(|| format!("config version {version} not seen within {within:?}"))??
        .clone();
    Ok(snapshot)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn event<'a>(action: &'a str, api: &'a str, version: Option<&'a str>) -> AuditEvent<'a> {
    AuditEvent {
        actor: "ops",
        action,
        api,
        version,
        detail: format!("{action} {}", version.unwrap_or("-")),
    }
}

async fn push(
    node: &Cluster,
    api: &str,
    version: &str,
    component: &[u8],
) -> sfop_store_pg::Result<Pushed> {
    node.push(&NewVersion {
        api,
        version,
        component,
        manifest: &format!("name = \"{api}\"\nversion = \"{version}\"\n"),
        cases: None,
        uploaded_by: "ops",
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() -> Result<()> {
    let Some(url) = database("migrations").await? else {
        return Ok(());
    };
    // Three nodes starting at once: one migrates, the others find it done.
    let (a, b, c) = tokio::join!(
        Cluster::connect(&url, 2),
        Cluster::connect(&url, 2),
        Cluster::connect(&url, 2)
    );
    let (a, _b, _c) = (a?, b?, c?);
    assert_eq!(a.config_version().await?, 0);
    let client = raw(&url).await?;
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await?
        .get(0);
    assert_eq!(applied, i64::from(sfop_store_pg::schema_version()));

    // A database migrated by a newer sfop: this one refuses to start.
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            &[],
        )
        .await?;
    let refused = Cluster::connect(&url, 2).await;
    match refused {
        Err(Error::Schema(message)) => {
            assert!(
                message.contains("schema version 999") && message.contains("upgrade this node"),
                "{message}"
            );
        }
        other => bail!("a newer schema was not refused: {other:?}"),
    }

    // Nothing listening: unreachable, said so, within the connect timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let away = Cluster::connect(&format!("postgres://sfop@127.0.0.1:{closed}/x"), 1).await;
    assert!(
        matches!(&away, Err(Error::Unavailable(m)) if m.contains("unreachable") || m.contains("connect")),
        "{away:?}"
    );
    assert!(
        away.as_ref().err().is_some_and(|e| e
            .to_string()
            .starts_with("the cluster database is unreachable")),
        "{away:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Not PostgreSQL at all: the key is named.
    let bad = Cluster::connect("mysql://x", 1).await;
    assert!(
        matches!(&bad, Err(Error::Url(m)) if m.contains("not a PostgreSQL URL")),
        "{bad:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_keeps_its_constraints() -> Result<()> {
    let Some(url) = database("constraints").await? else {
        return Ok(());
    };
    let node = Cluster::connect(&url, 2).await?;
    assert_eq!(
        push(&node, "hello", "1.0.0", b"component one").await?,
        Pushed::New
    );
    assert_eq!(
        push(&node, "hello", "1.0.0", b"component one").await?,
        Pushed::Existing
    );
    let other = push(&node, "hello", "1.0.0", b"other bytes").await;
    assert!(
        matches!(&other, Err(Error::Conflict(m)) if m.contains("already registered with other bytes")),
        "{other:?}"
    );
    // The same new version pushed through three nodes at once: one
    // registers it, the others find it.
    let nodes = [
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
    ];
    let pushes = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| push(n, "hello", "2.0.0", b"component two")),
    )
    .await;
    let mut outcomes: Vec<Pushed> = pushes.into_iter().collect::<Result<_, _>>()?;
    outcomes.sort_by_key(|p| *p == Pushed::New);
    assert_eq!(outcomes, [Pushed::Existing, Pushed::Existing, Pushed::New]);
    let client = raw(&url).await?;
    // A blob under a key that is not its hash.
    let wrong = client
        .execute(
            "INSERT INTO component_blobs (sha256, bytes) VALUES (repeat('a', 64), '\\x01')",
            &[],
        )
        .await;
    assert!(wrong.is_err(), "a blob under a wrong hash was stored");
    // A registered version never changes.
    let changed = client
        .execute("UPDATE api_versions SET manifest = 'x'", &[])
        .await;
    let message = changed.err().map(|e| format!("{e:?}")).unwrap_or_default();
    assert!(message.contains("immutable"), "{message}");
    // A live version must be registered.
    let unknown = node
        .set_api(
            &ApiState {
                name: "hello".into(),
                live: Some("9.9.9".into()),
                ..ApiState::default()
            },
            None,
            &event("promote", "hello", Some("9.9.9")),
        )
        .await;
    assert!(matches!(unknown, Err(Error::Constraint(_))), "{unknown:?}");
    assert_eq!(
        node.config_version().await?,
        0,
        "a refused change bumped the version"
    );
    Ok(())
}

/// Acceptance 1 at the store: promote and roll back on A 20 times; B and C
/// see every version, each snapshot is exactly one state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_every_node() -> Result<()> {
    let Some(url) = database("propagation").await? else {
        return Ok(());
    };
    let a = Cluster::connect(&url, 4).await?;
    let (b, c) = (
        Cluster::connect(&url, 4).await?,
        Cluster::connect(&url, 4).await?,
    );
    push(&a, "hello", "1.0.0", b"hello one").await?;
    push(&a, "hello", "1.1.0", b"hello two").await?;
    let feed_b = Feed::start(&b, settings(1000)).await?;
    let feed_c = Feed::start(&c, settings(1000)).await?;
    until(Duration::from_secs(5), || {
        feed_b.connected() && feed_c.connected()
    })
    .await?;

    let mut lags = Vec::new();
    let mut expected = a.config_version().await?;
    for round in 0..20 {
        let (live, previous) = if round % 2 == 0 {
            ("1.1.0", vec!["1.0.0".to_owned()])
        } else {
            ("1.0.0", vec![])
        };
        let state = ApiState {
            name: "hello".into(),
            live: Some(live.into()),
            previous,
            ..ApiState::default()
        };
        let version = a
            .set_api(
                &state,
                Some(expected),
                &event("promote", "hello", Some(live)),
            )
            .await?;
        assert_eq!(version, expected + 1);
        expected = version;
        let returned = Instant::now();
        for feed in [&feed_b, &feed_c] {
            let snapshot = snapshot_at(feed, version, Duration::from_secs(5)).await?;
            lags.push(returned.elapsed());
            assert_eq!(snapshot.version, version);
            let api = snapshot.api("hello").context("hello missing")?;
            assert_eq!(api.live.as_deref(), Some(live), "version {version}");
            let release = snapshot
                .releases
                .get(&("hello".to_owned(), live.to_owned()))
                .context("the live release is not in the snapshot")?;
            assert_eq!(release.component_sha256.len(), 64);
        }
    }
    lags.sort();
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    eprintln!(
        "propagation over {} node-changes: p50 {:.1} ms, p99 {:.1} ms",
        lags.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");

    // A change made against a version already moved on is refused.
    let stale = a
        .set_api(
            &ApiState {
                name: "hello".into(),
                live: Some("1.1.0".into()),
                ..ApiState::default()
            },
            Some(expected - 1),
            &event("promote", "hello", Some("1.1.0")),
        )
        .await;
    assert!(
        matches!(&stale, Err(Error::Conflict(m)) if m.contains("changed meanwhile")),
        "{stale:?}"
    );

    // Component bytes: fetched once, then from the node's own disk.
    let dir = tempfile::tempdir()?;
    let cache = BlobCache::new(dir.path());
    let snapshot = feed_b.snapshots().borrow().clone();
    let release = snapshot
        .releases
        .get(&("hello".to_owned(), "1.0.0".to_owned()))
        .context("1.0.0 missing")?;
    let (bytes, from_disk) = cache.get(&b, &release.component_sha256).await?;
    assert_eq!((bytes.as_slice(), from_disk), (&b"hello one"[..], false));
    let (_, from_disk) = cache.get(&b, &release.component_sha256).await?;
    assert!(from_disk);
    Ok(())
}

/// Acceptance 2 at the store: a revocation on A is seen by B and C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_node_within_the_bound() -> Result<()> {
    let Some(url) = database("revocation").await? else {
        return Ok(());
    };
    let max_lag = Duration::from_millis(1000);
    let a = Cluster::connect(&url, 2).await?;
    let (b, c) = (
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
    );
    // A node that starts can tell at once: what was revoked before it
    // started is refused, anything else accepted, with no stale window.
    let before = vec!["00c0ffee".to_owned()];
    a.revoke(&before).await?;
    let feed_b = Feed::start(&b, settings(1000)).await?;
    let feed_c = Feed::start(&c, settings(1000)).await?;
    for feed in [&feed_b, &feed_c] {
        assert_eq!(feed.check_revoked(&before, max_lag), Ok(true));
        assert_eq!(feed.check_revoked(&["00beef".into()], max_lag), Ok(false));
    }
    // The lags below are the notification's: both listen first.
    until(Duration::from_secs(5), || {
        feed_b.connected() && feed_c.connected()
    })
    .await?;
    let mut lags = Vec::new();
    for i in 0..20 {
        let id = format!("{i:02x}beef");
        let ids = vec![id.clone()];
        assert_eq!(feed_b.check_revoked(&ids, max_lag), Ok(false));
        a.revoke(&ids).await?;
        let returned = Instant::now();
        for feed in [&feed_b, &feed_c] {
            until(Duration::from_secs(2), || {
                feed.check_revoked(&ids, max_lag) == Ok(true)
            })
            .await?;
            lags.push(returned.elapsed());
        }
    }
    lags.sort();
    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    eprintln!(
        "revocation over {} node-checks: p50 {:.1} ms, p99 {:.1} ms",
        lags.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    // A reader catching up reads the same set.
    let (ids, seq) = a.revocations_since(0).await?;
    assert_eq!((ids.len(), seq), (21, 21));
    Ok(())
}

/// Acceptance 3 at the store: one bank_tran_id sent 100 times at once over
/// three nodes moves money once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bank_tran_id_is_booked_once_across_nodes() -> Result<()> {
    let Some(url) = database("ledger").await? else {
        return Ok(());
    };
    let nodes = [
        Cluster::connect(&url, 8).await?,
        Cluster::connect(&url, 8).await?,
        Cluster::connect(&url, 8).await?,
    ];
    nodes[0]
        .open_account("097-1", "097", "Kim", 1_000_000)
        .await?;
    nodes[0].open_account("088-1", "088", "Lee", 0).await?;
    let before = nodes[0].total_balance().await?;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let node = nodes[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            node.transfer(&NewTransfer {
                institution: "M202300001",
                bank_tran_id: "M202300001U000000001",
                business_date: "2026-12-02",
                from_account: "097-1",
                to_account: "088-1",
                amount: 12_345,
            })
            .await
        }));
    }
    let (mut posted, mut duplicates) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await?? {
            TransferOutcome::Posted { id } => posted.push(id),
            TransferOutcome::Duplicate { id } => duplicates.push(id),
            other => bail!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((posted.len(), duplicates.len()), (1, 99));
    // Every duplicate names the one transfer.
    assert!(duplicates.iter().all(|id| *id == posted[0]));
    // Double entry: one transfer, two postings.
    assert_eq!(
        nodes[1]
            .postings_of("M202300001", "M202300001U000000001")
            .await?,
        2
    );
    assert_eq!(nodes[2].total_balance().await?, before);
    assert_eq!(nodes[2].balance("097-1").await?, Some(1_000_000 - 12_345));
    assert_eq!(nodes[2].balance("088-1").await?, Some(12_345));
    // The same id on another business day is another transfer; an
    // overdraft moves nothing.
    let next_day = nodes[1]
        .transfer(&NewTransfer {
            institution: "M202300001",
            bank_tran_id: "M202300001U000000001",
            business_date: "2026-12-03",
            from_account: "097-1",
            to_account: "088-1",
            amount: 1,
        })
        .await?;
    assert!(matches!(next_day, TransferOutcome::Posted { .. }));
    let overdraft = nodes[1]
        .transfer(&NewTransfer {
            institution: "M202300001",
            bank_tran_id: "M202300001U000000002",
            business_date: "2026-12-03",
            from_account: "088-1",
            to_account: "097-1",
            amount: 1_000_000_000,
        })
        .await?;
    assert_eq!(overdraft, TransferOutcome::InsufficientFunds);
    assert_eq!(nodes[0].total_balance().await?, before);

    // A figure (this server runs without fsync: latency, not durability):
    // 300 distinct transfers, 16 at a time over the three nodes, between
    // two hot accounts (the worst case for SERIALIZABLE).
    let started = Instant::now();
    let mut tasks = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..300 {
        let node = nodes[i % 3].clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let id = format!("M202300001U{i:09}X");
            let t = Instant::now();
            let outcome = node
                .transfer(&NewTransfer {
                    institution: "M202300001",
                    bank_tran_id: &id,
                    business_date: "2026-12-04",
                    from_account: "097-1",
                    to_account: "088-1",
                    amount: 1,
                })
                .await?;
            anyhow::ensure!(
                matches!(outcome, TransferOutcome::Posted { .. }),
                "{outcome:?}"
            );
            Ok::<_, anyhow::Error>(t.elapsed())
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await??);
    }
    let wall = started.elapsed();
    times.sort();
    eprintln!(
        "ledger: 300 transfers (16 concurrent, 3 nodes, 2 hot accounts) in {:.0} ms: \
         p50 {:.1} ms, p99 {:.1} ms, {:.0} transfers/s",
        wall.as_secs_f64() * 1e3,
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        300.0 / wall.as_secs_f64()
    );
    assert_eq!(nodes[0].total_balance().await?, before);
    assert_eq!(nodes[0].balance("088-1").await?, Some(12_345 + 1 + 300));
    Ok(())
}

/// Acceptance 5 at the store, for one node: cut off from the database, a
/// node keeps its snapshot, refuses tokens once its revocation set is older
/// than the bound, and refuses writes; back, it catches up by version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_keeps_its_snapshot_fails_closed_and_catches_up() -> Result<()> {
    let Some(url) = database("outage").await? else {
        return Ok(());
    };
    let a = Cluster::connect(&url, 2).await?;
    push(&a, "hello", "1.0.0", b"hello one").await?;
    push(&a, "hello", "1.1.0", b"hello two").await?;
    let promote = |live: &str| ApiState {
        name: "hello".into(),
        live: Some(live.into()),
        ..ApiState::default()
    };
    let v1 = a
        .set_api(
            &promote("1.0.0"),
            None,
            &event("promote", "hello", Some("1.0.0")),
        )
        .await?;

    a.open_account("097-1", "097", "Kim", 1_000).await?;
    a.open_account("088-1", "088", "Lee", 0).await?;
    let (proxy, c_url) = proxy::Proxy::to_database(&url).await?;
    let c = Cluster::connect(&c_url, 2).await?;
    let max_lag = Duration::from_millis(300);
    let feed = Feed::start(&c, settings(300)).await?;
    // Fresh from its start; cut once it also listens, so that its
    // reconnection afterwards is seen.
    assert!(feed.check_revoked(&[], max_lag).is_ok());
    until(Duration::from_secs(5), || feed.connected()).await?;
    assert_eq!(feed.snapshots().borrow().version, v1);

    proxy.cut();
    let stale_after = until(Duration::from_secs(5), || {
        feed.check_revoked(&["ab".into()], max_lag).is_err()
    })
    .await?;
    eprintln!(
        "cut off: tokens refused after {:.0} ms (bound {} ms)",
        stale_after.as_secs_f64() * 1e3,
        max_lag.as_millis()
    );
    let refusal = feed.check_revoked(&["ab".into()], max_lag);
    assert!(
        matches!(refusal, Err(s) if s.age_ms > 300 && s.max_ms == 300),
        "{refusal:?}"
    );
    assert!(feed.stale_refusals() >= 1);
    // The last snapshot stays.
    assert_eq!(
        feed.snapshots()
            .borrow()
            .api("hello")
            .and_then(|h| h.live.clone()),
        Some("1.0.0".into())
    );
    // Writes through the cut-off node fail, saying why; a transfer is
    // refused, never acknowledged and lost.
    let write = c.revoke(&["cd".into()]).await;
    assert!(matches!(write, Err(Error::Unavailable(_))), "{write:?}");
    let transfer = c
        .transfer(&NewTransfer {
            institution: "M202300001",
            bank_tran_id: "M202300001U000000009",
            business_date: "2026-12-02",
            from_account: "097-1",
            to_account: "088-1",
            amount: 1,
        })
        .await;
    assert!(
        matches!(&transfer, Err(Error::Unavailable(_))),
        "{transfer:?}"
    );

    // Meanwhile the others go on.
    let v2 = a
        .set_api(
            &promote("1.1.0"),
            Some(v1),
            &event("promote", "hello", Some("1.1.0")),
        )
        .await?;
    a.revoke(&["ab".into()]).await?;

    proxy.restore();
    let snapshot = snapshot_at(&feed, v2, Duration::from_secs(10)).await?;
    assert_eq!(
        snapshot.api("hello").and_then(|h| h.live.clone()),
        Some("1.1.0".into())
    );
    until(Duration::from_secs(10), || {
        feed.check_revoked(&["ab".into()], max_lag) == Ok(true)
    })
    .await?;
    assert!(feed.connects() >= 2, "the feed did not reconnect");
    // Nothing the cut-off node refused was booked; its resend books once.
    assert_eq!(
        a.postings_of("M202300001", "M202300001U000000009").await?,
        0
    );
    let resent = c
        .transfer(&NewTransfer {
            institution: "M202300001",
            bank_tran_id: "M202300001U000000009",
            business_date: "2026-12-02",
            from_account: "097-1",
            to_account: "088-1",
            amount: 1,
        })
        .await?;
    assert!(matches!(resent, TransferOutcome::Posted { .. }));
    Ok(())
}

/// Acceptance 6 at the store: the chain holds with appends from three
/// nodes at once, and an edited row is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_holds_across_nodes_and_a_tampered_row_is_found() -> Result<()> {
    let Some(url) = database("audit").await? else {
        return Ok(());
    };
    let nodes = [
        Cluster::connect(&url, 4).await?,
        Cluster::connect(&url, 4).await?,
        Cluster::connect(&url, 4).await?,
    ];
    let mut tasks = Vec::new();
    for i in 0..60 {
        let node = nodes[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            node.audit_append(&AuditEvent {
                actor: "ops",
                action: "note",
                api: "hello",
                version: None,
                detail: format!("entry from task {i}"),
            })
            .await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let verified = nodes[1].verify_audit().await?;
    assert_eq!((verified.entries, verified.broken), (60, None));

    let client = raw(&url).await?;
    // Append-only for anyone short of disabling the trigger.
    assert!(
        client
            .execute("DELETE FROM audit_log WHERE seq = 60", &[])
            .await
            .is_err()
    );
    client
        .batch_execute(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only; \
             UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 7",
        )
        .await?;
    let tampered = nodes[2].verify_audit().await?;
    assert_eq!(tampered.entries, 6);
    assert!(
        tampered
            .broken
            .as_deref()
            .is_some_and(|b| b.contains("entry 7 was altered")),
        "{tampered:?}"
    );
    Ok(())
}

/// Acceptance 5 at the store: the database restarts under load. Token checks
/// and the snapshot go on, transfers and writes fail with `Unavailable`
/// meanwhile, no acknowledged transfer is lost, and no version change is
/// missed after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_nothing() -> Result<()> {
    let Some(server) = server::Server::start()? else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            bail!(
                "PostgreSQL's server binaries are missing under CI (`cargo xtask ci` installs them)"
            );
        }
        eprintln!("skipped: no /usr/lib/postgresql/*/bin/initdb");
        return Ok(());
    };
    let url = server.url();
    let a = Cluster::connect(&url, 8).await?;
    let b = Cluster::connect(&url, 8).await?;
    push(&a, "hello", "1.0.0", b"hello one").await?;
    push(&a, "hello", "1.1.0", b"hello two").await?;
    let promote = |live: &str| ApiState {
        name: "hello".into(),
        live: Some(live.into()),
        ..ApiState::default()
    };
    let v1 = a
        .set_api(
            &promote("1.0.0"),
            None,
            &event("promote", "hello", Some("1.0.0")),
        )
        .await?;
    a.open_account("097-1", "097", "Kim", 1_000_000).await?;
    a.open_account("088-1", "088", "Lee", 0).await?;
    let before = a.total_balance().await?;
    let max_lag = Duration::from_secs(5);
    let feed = Arc::new(Feed::start(&b, settings(5000)).await?);
    snapshot_at(&feed, v1, Duration::from_secs(5)).await?;
    assert!(feed.check_revoked(&[], max_lag).is_ok());
    until(Duration::from_secs(5), || feed.connected()).await?;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Token checks on B, every millisecond.
    let checks = {
        let (feed, stop) = (feed.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut stale) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match feed.check_revoked(&["ab".into()], max_lag) {
                    Ok(_) => ok += 1,
                    Err(_) => stale += 1,
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (ok, stale)
        })
    };
    // Transfers through A, one after another, each with a new id.
    let transfers = {
        let (a, stop) = (a.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acknowledged, mut refused, mut unavailable) = (Vec::new(), Vec::new(), 0);
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = format!("M202300001U{i:09}");
                let outcome = a
                    .transfer(&NewTransfer {
                        institution: "M202300001",
                        bank_tran_id: &id,
                        business_date: "2026-12-02",
                        from_account: "097-1",
                        to_account: "088-1",
                        amount: 10,
                    })
                    .await;
                match outcome {
                    Ok(TransferOutcome::Posted { .. }) => acknowledged.push(id),
                    Ok(other) => refused.push(format!("{other:?}")),
                    Err(Error::Unavailable(_)) => unavailable += 1,
                    Err(e) => refused.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acknowledged, refused, unavailable)
        })
    };
    // Some load before the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarting = Instant::now();
    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server)).await??;
    let server_back = restarting.elapsed();
    // A write right after: the first that gets through bumps the version.
    let v2 = loop {
        match a
            .set_api(
                &promote("1.1.0"),
                Some(v1),
                &event("promote", "hello", Some("1.1.0")),
            )
            .await
        {
            Ok(v) => break v,
            Err(Error::Unavailable(_)) if restarting.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let seen = snapshot_at(&feed, v2, Duration::from_secs(10)).await?;
    assert_eq!(
        seen.api("hello").and_then(|h| h.live.clone()),
        Some("1.1.0".into())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, stale) = checks.await?;
    let (acknowledged, refused, unavailable) = transfers.await?;
    eprintln!(
        "restart: server back in {:.0} ms; token checks {ok} answered, {stale} refused; \
         {} transfers acknowledged, {unavailable} refused as unavailable",
        server_back.as_secs_f64() * 1e3,
        acknowledged.len()
    );
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(stale, 0, "token checks stopped during the restart");
    assert!(feed.connects() >= 2, "the feed did not reconnect");
    // Every acknowledged transfer is booked, once; money is conserved.
    for id in &acknowledged {
        assert_eq!(a.postings_of("M202300001", id).await?, 2, "{id}");
    }
    let booked: i64 = raw(&url)
        .await?
        .query_one("SELECT count(*) FROM ledger_transfers", &[])
        .await?
        .get(0);
    assert!(booked as usize >= acknowledged.len());
    assert_eq!(a.total_balance().await?, before);
    assert_eq!(
        a.balance("088-1").await?,
        Some(booked * 10),
        "a booked transfer is missing from the balance"
    );
    drop(server);
    Ok(())
}

/// Admin and portal on any node, at the store: a developer signs up and
/// registers an app through A; B finds both; the schema's rules hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_registered_on_one_node_is_known_to_the_others() -> Result<()> {
    let Some(url) = database("apps").await? else {
        return Ok(());
    };
    let (a, b) = (
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
    );
    a.add_developer(
        "dev@example.com",
        "pbkdf2-sha256$1000$00$00",
        1_700_000_000_000,
    )
    .await?;
    let again = b
        .add_developer(
            "dev@example.com",
            "pbkdf2-sha256$1000$00$00",
            1_700_000_000_000,
        )
        .await;
    assert!(
        matches!(&again, Err(Error::Conflict(m)) if m.starts_with("email:")),
        "{again:?}"
    );
    let app = ClientRow {
        client_id: "c1".into(),
        name: "Payments".into(),
        client_use_code: "M202300001".into(),
        public: false,
        secret_hash: Some("ab".repeat(32)),
        salt: "00".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: vec!["inquiry".into(), "login".into()],
        created_at: 1_700_000_000,
    };
    assert_eq!(
        a.register_client(&app, CodeUse::New, Some("dev@example.com"))
            .await?,
        Registered::Done
    );
    assert_eq!(b.client("c1").await?, Some(app.clone()));
    assert_eq!(b.clients().await?, std::slice::from_ref(&app));
    assert_eq!(b.developer_apps("dev@example.com").await?, ["c1"]);
    let dev = b.developer("dev@example.com").await?.context("developer")?;
    assert_eq!(
        (dev.password.as_str(), dev.created_at_ms, dev.apps),
        (
            "pbkdf2-sha256$1000$00$00",
            1_700_000_000_000,
            vec!["c1".to_owned()]
        )
    );
    assert_eq!(b.client("nobody").await?, None);

    // A second app joins the first one's institution; a new institution
    // under a taken code, an unknown one to join, a taken id: refused.
    let joined = ClientRow {
        client_id: "c2".into(),
        ..app.clone()
    };
    assert_eq!(
        b.register_client(&joined, CodeUse::New, None).await?,
        Registered::CodeTaken
    );
    assert_eq!(
        b.register_client(&joined, CodeUse::Join, None).await?,
        Registered::Done
    );
    assert_eq!(
        b.register_client(&joined, CodeUse::Join, None).await?,
        Registered::ClientIdTaken
    );
    let nowhere = ClientRow {
        client_id: "c5".into(),
        client_use_code: "M202300005".into(),
        ..app.clone()
    };
    assert_eq!(
        b.register_client(&nowhere, CodeUse::Join, None).await?,
        Registered::NoInstitution
    );
    assert!(b.reserve_code("M202300005").await?);
    assert!(!a.reserve_code("M202300005").await?);
    assert!(a.code_claimed("M202300005").await?);
    assert_eq!(
        a.register_client(&nowhere, CodeUse::Join, None).await?,
        Registered::Done
    );
    assert!(a.set_client_secret("c5", "11", &"cd".repeat(32)).await?);
    assert_eq!(
        b.client("c5").await?.map(|c| (c.salt, c.secret_hash)),
        Some(("11".to_owned(), Some("cd".repeat(32))))
    );

    // A public app with a secret; an unknown developer: refused by the
    // schema, nothing half-written.
    let public_with_secret = ClientRow {
        client_id: "c3".into(),
        client_use_code: "M202300003".into(),
        public: true,
        ..app.clone()
    };
    assert!(matches!(
        b.register_client(&public_with_secret, CodeUse::New, None)
            .await,
        Err(Error::Constraint(_))
    ));
    assert!(!b.set_client_secret("c3", "11", "x").await?);
    let orphan = ClientRow {
        client_id: "c4".into(),
        client_use_code: "M202300004".into(),
        ..app
    };
    assert!(matches!(
        b.register_client(&orphan, CodeUse::New, Some("nobody@example.com"))
            .await,
        Err(Error::Constraint(_))
    ));
    assert_eq!(
        a.client("c4").await?,
        None,
        "a refused app was half-written"
    );
    assert!(
        !a.code_claimed("M202300004").await?,
        "a refused app's code was kept"
    );
    Ok(())
}

/// Grants at the store: of eight redemptions of one code at once through
/// two nodes' pools, exactly one wins (the others see it redeemed, under
/// the row lock); the same for a refresh token's rotation; a family
/// revoked through one node is revoked for the other; issues are listed
/// per (client, user) and removed by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_and_a_refresh_token_are_used_once_across_nodes() -> Result<()> {
    let Some(url) = database("grants").await? else {
        return Ok(());
    };
    let (a, b) = (
        Cluster::connect(&url, 4).await?,
        Cluster::connect(&url, 4).await?,
    );
    let app = ClientRow {
        client_id: "c1".into(),
        name: "Payments".into(),
        client_use_code: "M202300001".into(),
        public: false,
        secret_hash: Some("ab".repeat(32)),
        salt: "00".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: vec!["login".into()],
        created_at: 1_700_000_000,
    };
    assert_eq!(
        a.register_client(&app, CodeUse::New, None).await?,
        Registered::Done
    );
    let code = CodeRow {
        client_id: "c1".into(),
        redirect_uri: "https://app.example/cb".into(),
        user_seq_no: "1100000001".into(),
        scopes: vec!["login".into()],
        fintech_use_nums: vec![],
        code_challenge: Some("x".repeat(43)),
        expires_at: 4_000_000_000,
        redeemed_family: None,
    };
    a.put_code("h1", &code).await?;
    let mut tries = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tries.push(tokio::spawn(async move {
            node.redeem_code("h1", &format!("f{i}"), |c| match c.redeemed_family {
                Some(_) => Err("replayed"),
                None => Ok(()),
            })
            .await
        }));
    }
    let mut won = Vec::new();
    for t in tries {
        match t.await?? {
            Some(Ok(redeemed)) => won.push(redeemed.redeemed_family),
            Some(Err(why)) => assert_eq!(why, "replayed"),
            None => bail!("the code vanished"),
        }
    }
    assert_eq!(won.len(), 1, "redeemed {won:?}");
    let family = won.pop().flatten().context("no family")?;
    assert!(
        b.redeem_code("unknown", "f", |_| Ok::<_, ()>(()))
            .await?
            .is_none()
    );

    let refresh = RefreshRow {
        client_id: "c1".into(),
        user_seq_no: "1100000001".into(),
        scopes: vec!["login".into()],
        fintech_use_nums: vec![],
        expires_at: 4_000_000_000,
        family: family.clone(),
        rotated: false,
    };
    b.put_refresh("r1", &refresh).await?;
    assert_eq!(a.refresh_token("r1").await?, Some(refresh.clone()));
    let mut tries = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tries.push(tokio::spawn(async move {
            node.rotate_refresh("r1", |r| if r.rotated { Err(()) } else { Ok(()) })
                .await
        }));
    }
    let mut rotated = 0;
    for t in tries {
        if let Some(Ok(_)) = t.await?? {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
    assert!(a.refresh_token("r1").await?.is_some_and(|r| r.rotated));

    let issued = IssuedRow {
        revocation_ids: vec!["0a".into()],
        refresh_hash: Some("r1".into()),
        family: Some(family.clone()),
    };
    a.put_issued("c1", "1100000001", &issued).await?;
    a.put_issued(
        "c1",
        "",
        &IssuedRow {
            family: None,
            refresh_hash: None,
            ..issued.clone()
        },
    )
    .await?;
    let listed = b.issued("c1", "1100000001").await?;
    assert_eq!(listed.iter().map(|(_, i)| i).collect::<Vec<_>>(), [&issued]);
    assert!(!b.family_revoked(&family).await?);
    a.revoke_family(&family, "c1", "1100000001").await?;
    a.revoke_family(&family, "c1", "1100000001").await?;
    assert!(b.family_revoked(&family).await?);
    b.remove_issued(listed[0].0).await?;
    b.remove_refresh("r1").await?;
    assert!(a.issued("c1", "1100000001").await?.is_empty());
    assert_eq!(a.issued("c1", "").await?.len(), 1);
    assert_eq!(a.refresh_token("r1").await?, None);
    Ok(())
}

/// Sandbox rules at the store: a rule that applies three times, taken by
/// twelve calls at once through two nodes' pools, applies to exactly three
/// and is then gone; every change moves the version a node follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_sandbox_rule_applies_its_times_across_nodes() -> Result<()> {
    let Some(url) = database("sandbox").await? else {
        return Ok(());
    };
    let (a, b) = (
        Cluster::connect(&url, 4).await?,
        Cluster::connect(&url, 4).await?,
    );
    let before = b.sandbox_version().await?;
    let id = a
        .add_sandbox_rule(&NewSandboxRule {
            client_id: None,
            operation: Some("withdraw"),
            bank_code: Some("097"),
            rule: r#"{"operation":"withdraw","fault":"outage","bank_code":"097","times":3}"#,
            times: Some(3),
        })
        .await?;
    assert!(b.sandbox_version().await? > before);
    let (_, rules) = b.sandbox_rules().await?;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].times, Some(3));
    let mut takes = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        takes.push(tokio::spawn(
            async move { node.take_sandbox_rule(id).await },
        ));
    }
    let mut applied = 0;
    for t in takes {
        if t.await?? {
            applied += 1;
        }
    }
    assert_eq!(applied, 3);
    assert!(a.sandbox_rules().await?.1.is_empty());
    let other = b
        .add_sandbox_rule(&NewSandboxRule {
            client_id: None,
            operation: None,
            bank_code: None,
            rule: r#"{"fault":"outage"}"#,
            times: None,
        })
        .await?;
    let (_, rules) = a.sandbox_rules().await?;
    assert_eq!(
        rules.iter().map(|r| (r.id, r.times)).collect::<Vec<_>>(),
        [(other, None)]
    );
    assert!(a.remove_sandbox_rule(other).await?);
    assert!(!b.remove_sandbox_rule(other).await?);
    assert_eq!(b.clear_sandbox_rules(None).await?, 0);
    Ok(())
}
