//! Plugins' variables set through the admin API on the cluster (V7, ADR
//! 0027): a value set or unset through one node bumps the config version
//! with its audit entry and reaches another node's snapshot; a change based
//! on a stale version, an unset of nothing and a value of no sealed shape
//! change nothing; the table holds what the node sealed, nothing else.

use std::time::Duration;

use anyhow::{Result, bail};
use sfop_store_pg::{AuditEvent, Cluster, Error, Feed};

use super::{database, raw, settings, snapshot_at};

fn event<'a>(action: &'a str, api: &'a str, variable: &str) -> AuditEvent<'a> {
    AuditEvent {
        actor: "ops",
        action,
        api,
        version: None,
        detail: format!("{variable} (secret)"),
    }
}

/// What the node would have sealed: nonce, ciphertext, tag (opaque here).
fn sealed(fill: u8) -> Vec<u8> {
    vec![fill; 12 + 5 + 16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_through_one_node_is_in_every_snapshot_and_stays_sealed() -> Result<()> {
    let Some(url) = database("variables").await? else {
        return Ok(());
    };
    let (a, b) = (
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
    );
    let feed = Feed::start(&b, settings(1_000)).await?;
    let within = Duration::from_secs(10);
    let start = a.config_version().await?;
    let audited = a.audit_entries().await?.len();

    // Set through A (no API registered yet: its values may come first).
    let set = event("variable set", "outbound", "api_key");
    let v1 = a
        .set_variable("outbound", "api_key", Some(&sealed(1)), Some(start), &set)
        .await?;
    assert_eq!(v1, start + 1);
    let seen = snapshot_at(&feed, v1, within).await?;
    assert_eq!(seen.variables["outbound"]["api_key"], sealed(1));

    // Replaced: still one row, the new bytes.
    let v2 = a
        .set_variable("outbound", "api_key", Some(&sealed(2)), Some(v1), &set)
        .await?;
    let seen = snapshot_at(&feed, v2, within).await?;
    assert_eq!(seen.variables["outbound"].len(), 1);
    assert_eq!(seen.variables["outbound"]["api_key"], sealed(2));

    // Based on a version another change moved past: refused, nothing
    // written.
    match b
        .set_variable("outbound", "api_key", Some(&sealed(3)), Some(v1), &set)
        .await
    {
        Err(Error::Conflict(m)) => assert!(m.contains("changed meanwhile"), "{m}"),
        other => bail!("a stale change: {other:?}"),
    }
    // A value too short to be sealed, a name of no variable's shape: the
    // schema refuses them.
    for (name, bytes) in [("api_key", vec![0u8; 4]), ("Api-Key", sealed(4))] {
        match b
            .set_variable("outbound", name, Some(&bytes), None, &set)
            .await
        {
            Err(Error::Constraint(_)) => {}
            other => bail!("{name} with {} bytes: {other:?}", bytes.len()),
        }
    }
    assert_eq!(a.config_version().await?, v2);
    assert_eq!(a.variables().await?["outbound"]["api_key"], sealed(2));

    // Unset through B: gone from every snapshot; unsetting it again is
    // refused.
    let unset = event("variable unset", "outbound", "api_key");
    let v3 = b
        .set_variable("outbound", "api_key", None, Some(v2), &unset)
        .await?;
    let seen = snapshot_at(&feed, v3, within).await?;
    assert!(seen.variables.is_empty(), "{:?}", seen.variables);
    match a
        .set_variable("outbound", "api_key", None, Some(v3), &unset)
        .await
    {
        Err(Error::Conflict(_)) => {}
        other => bail!("unsetting nothing: {other:?}"),
    }
    assert_eq!(a.config_version().await?, v3);

    // One audit entry per change, naming the variable; the chain holds.
    let entries = a.audit_entries().await?;
    let actions: Vec<(&str, &str)> = entries[audited..]
        .iter()
        .map(|e| (e.action.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("variable set", "api_key (secret)"),
            ("variable set", "api_key (secret)"),
            ("variable unset", "api_key (secret)"),
        ]
    );
    assert_eq!(a.verify_audit().await?.broken, None);

    // The row holds the sealed bytes as given.
    a.set_variable("outbound", "greeting", Some(&sealed(7)), Some(v3), &set)
        .await?;
    let row = raw(&url)
        .await?
        .query_one("SELECT api, variable, sealed FROM api_variables", &[])
        .await?;
    let (api, variable, bytes): (String, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((api.as_str(), variable.as_str()), ("outbound", "greeting"));
    assert_eq!(bytes, sealed(7));
    Ok(())
}
