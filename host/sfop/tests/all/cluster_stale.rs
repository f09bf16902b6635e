//! A cluster node cut off from its database (ADR 0029) for longer than
//! `auth.revocation_max_lag_ms` cannot prove a token unrevoked: through the
//! real gateway it refuses every token with 503 `A0013` in the platform's
//! envelope with `Retry-After`, the platform's failure and not the
//! caller's, and never lets one through; what it decides alone (no token,
//! a forged one) stays the caller's 401; a revocation it cannot write is
//! 503 with `Retry-After` (RFC 7009 §2.2.1), not acknowledged. Back in
//! touch, it serves the same token again. One `sfop serve` process, its
//! database reached through the store tests' forwarder, which the test
//! cuts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::cluster::start_configured;
use crate::cluster_money::database;
use crate::harness::{Reply, assert_envelope};
use crate::served::Served;

#[path = "../../../store-pg/tests/all/proxy.rs"]
pub(crate) mod proxy;

const STATUS: &str = "/v2.0/bank/status";
/// Bound on every wait: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);

async fn status(node: &Served, token: Option<&str>) -> Result<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let head: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    tokio::time::timeout(BOUND, node.https("GET", STATUS, &head, Vec::new()))
        .await
        .context("bank/status hung")?
}

/// Calls `ask` until `done` holds for its answer, within [`BOUND`]; past
/// it, fails showing the last answer.
async fn poll<T, F: std::future::Future<Output = Result<T>>>(
    mut ask: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
    show: impl Fn(&T) -> String,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let answer = ask().await?;
        if done(&answer) {
            return Ok(answer);
        }
        if start.elapsed() > BOUND {
            bail!("still {} after {BOUND:?}", show(&answer));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks `bank/status` with `token` until `done` holds for the answer.
async fn until(node: &Served, token: &str, done: impl Fn(&Reply) -> bool) -> Result<Reply> {
    poll(
        || status(node, Some(token)),
        done,
        |reply| format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body)),
    )
    .await
}

/// One `sfop serve` on the cluster at `url`, in `dir`.
async fn one_node(dir: &std::path::Path, url: &str, config: Option<&str>) -> Result<Served> {
    start_configured(dir.join("a"), dir.join("a.log"), url.to_owned(), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_refuses_tokens_as_unavailable_and_never_lets_one_through() -> Result<()> {
    let Some(url) = database("stale_revocations").await? else {
        return Ok(());
    };
    let (proxy, through) = proxy::Proxy::to_database(&url).await?;

    let dir = tempfile::tempdir()?;
    let served = one_node(
        dir.path(),
        &through,
        Some("[auth]\nrevocation_max_lag_ms = 300\n"),
    )
    .await?;
    let token = served.oob_token().await?;
    let ok = until(&served, &token, |r| r.status == 200).await?;
    ensure!(assert_envelope(&ok)? == "A0000");

    proxy.cut();
    let refused = until(&served, &token, |r| r.status != 200).await?;
    let body = refused.json()?;
    ensure!(
        (refused.status, assert_envelope(&refused)?.as_str()) == (503, "A0013"),
        "{body}"
    );
    ensure!(
        body["rsp_message"]
            .as_str()
            .is_some_and(|m| m.contains("token checks are unavailable") && !m.contains("300")),
        "says what, not why: {body}"
    );
    ensure!(
        refused.header("retry-after") == Some(sfop_gateway::RETRY_AFTER_SECS.to_string().as_str()),
        "a refusal that passes says when to retry"
    );
    ensure!(
        refused.header("www-authenticate").is_none(),
        "not the caller's fault"
    );
    // Fail closed: while cut off, the token is never let through.
    for _ in 0..20 {
        let reply = status(&served, Some(&token)).await?;
        ensure!(
            reply.status == 503,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // Counted apart from the caller's refusals, for an operator to alert on.
    let metrics = served.metrics().await?;
    let unproven = metrics
        .lines()
        .find(|l| {
            l.starts_with("sfop_requests_total{")
                && l.contains(r#"api="bank-status""#)
                && l.contains(r#"outcome="unproven""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .with_context(|| format!("no unproven count on /metrics: {metrics}"))?;
    ensure!(
        unproven >= 21.0,
        "{unproven} unproven refusals counted, 21 made"
    );
    // What the node decides alone stays the caller's 401.
    for token in [None, Some("not-a-biscuit")] {
        let reply = status(&served, token).await?;
        let code = assert_envelope(&reply)?;
        ensure!(
            reply.status == 401 && matches!(code.as_str(), "O0001" | "O0002"),
            "{token:?}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // A revocation it cannot write to the cluster is not acknowledged, nor
    // blamed on the client: 503, the client retries (RFC 7009 §2.2.1).
    let demo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        served.data.join("demo-client.json"),
    )?)?;
    let form = format!(
        "token={token}&client_id={}&client_secret={}",
        demo["client_id"].as_str().context("client_id")?,
        demo["client_secret"].as_str().context("client_secret")?,
    );
    let reply = served
        .https(
            "POST",
            "/oauth/2.0/revoke",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await?;
    let body = reply.json()?;
    ensure!(
        (reply.status, &body["error"]) == (503, &serde_json::json!("temporarily_unavailable")),
        "revoke while cut off: {} {body}",
        reply.status,
    );
    ensure!(body["rsp_code"] == "A0013", "{body}");
    ensure!(reply.header("retry-after") == Some("1"), "RFC 7009 §2.2.1");

    // Back in touch: the same token is served again (the refused
    // revocation wrote nothing).
    proxy.restore();
    let back = until(&served, &token, |r| r.status != 503).await?;
    ensure!(
        (back.status, assert_envelope(&back)?.as_str()) == (200, "A0000"),
        "{}",
        String::from_utf8_lossy(&back.body)
    );
    served.stop()
}

/// `/readyz` from the node's operator listener: status and body.
async fn readyz(node: &Served) -> Result<(u16, serde_json::Value)> {
    let ops = node.ops.context("no ops address in the listening line")?;
    let reply = tokio::time::timeout(
        BOUND,
        crate::harness::send(ops, "GET", "/readyz", &[], Vec::new()),
    )
    .await
    .context("/readyz hung")??;
    Ok((reply.status, reply.json()?))
}

/// Asks `/readyz` until its status is `want`; its body.
async fn ready_until(node: &Served, want: u16) -> Result<serde_json::Value> {
    let (_, body) = poll(
        || readyz(node),
        |(status, _)| *status == want,
        |(status, body)| format!("/readyz {status}: {body}"),
    )
    .await?;
    Ok(body)
}

/// The value of `sfop_ready_check{check="bank_changes"}` on `/metrics`.
async fn bank_changes_check(node: &Served) -> Result<String> {
    let metrics = node.metrics().await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"sfop_ready_check{check="bank_changes"} "#))
        .map(str::to_owned)
        .with_context(|| format!("no bank_changes check on /metrics: {metrics}"))
}

/// A node whose bank cannot apply a change the cluster recorded (one a
/// newer build wrote, say) moves no money, so it takes itself out of
/// rotation: `/readyz` answers 503 naming `bank_changes`, `/metrics` shows
/// the check at 0 for an operator to alert on, and the process stays
/// healthy. Once it can apply the cluster's changes again (here the change
/// is removed; an operator would upgrade the node) it is ready again,
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_apply_a_bank_change_leaves_rotation_until_it_can() -> Result<()> {
    let Some(url) = database("ready_bank_changes").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let served = one_node(dir.path(), &url, None).await?;
    ready_until(&served, 200).await?;
    ensure!(bank_changes_check(&served).await? == "1");

    let cluster = sfop_store_pg::Cluster::connect(&url, 1).await?;
    let version = cluster
        .append_bank_change(&serde_json::json!({ "op": "from_a_newer_build" }))
        .await?;
    let body = ready_until(&served, 503).await?;
    // Names the check, says nothing of why (the change, the error).
    ensure!(
        body == serde_json::json!({ "status": "not ready", "failing": ["bank_changes"] }),
        "{body}"
    );
    ensure!(bank_changes_check(&served).await? == "0");
    let ops = served.ops.context("no ops address")?;
    let health = crate::harness::send(ops, "GET", "/healthz", &[], Vec::new()).await?;
    ensure!(health.status == 200, "the process itself is healthy");

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let removed = client
        .execute(
            "DELETE FROM vbank_changes WHERE version = $1",
            &[&i64::try_from(version)?],
        )
        .await?;
    ensure!(removed == 1, "{removed} rows removed");
    ready_until(&served, 200).await?;
    ensure!(bank_changes_check(&served).await? == "1");
    Ok(())
}

/// A bank change sent through a node cut off from its database is refused
/// 503 `A0013` and leaves that node behind (it could not read the
/// cluster's changes first), so the node is out of rotation while cut off;
/// back in touch it rejoins by itself, although no version changed
/// meanwhile (nothing would wake it on the feed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_in_touch_rejoins_rotation_without_a_new_version() -> Result<()> {
    let Some(url) = database("ready_after_cut").await? else {
        return Ok(());
    };
    let (proxy, through) = proxy::Proxy::to_database(&url).await?;
    let dir = tempfile::tempdir()?;
    // The admin token must stay provable while cut off, so that the
    // change reaches the bank.
    let served = one_node(
        dir.path(),
        &through,
        Some("[auth]\nrevocation_max_lag_ms = 600000\n"),
    )
    .await?;
    ready_until(&served, 200).await?;

    proxy.cut();
    let (code, answer) = crate::cluster::admin(
        &served,
        sfop_admin_api::institutions::SUSPEND,
        serde_json::json!({ "client_use_code": sfop_vbank::seed::DEMO_CLIENT_USE_CODE }),
    )
    .await?;
    ensure!(
        code == 503 && answer["rsp_code"] == "A0013",
        "a suspension on a node cut off: {code} {answer}"
    );
    let body = ready_until(&served, 503).await?;
    ensure!(
        body["failing"] == serde_json::json!(["bank_changes"]),
        "{body}"
    );

    proxy.restore();
    ready_until(&served, 200).await?;
    ensure!(bank_changes_check(&served).await? == "1");
    Ok(())
}
