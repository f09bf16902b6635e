//! Plugins' variables set through the admin API on a cluster (issue 20,
//! ADR 0027 "Variables on a cluster"), with three real `sfop serve`
//! processes on one PostgreSQL serving the `test/outbound` plugin (which
//! answers its `greeting` variable):
//!
//! - a value set on A is answered by B and C; unset on B, A and C answer
//!   the manifest's default again;
//! - what an attacker or a careless operator sends to a cluster node (no
//!   token, a token that is not an admin's, an undeclared variable, a value
//!   over the limit, a change a serving version refuses) changes nothing on
//!   any node: config version, audit log and stored values stay, every node
//!   answers as before;
//! - a value set for an API not registered yet serves, on every node, the
//!   version pushed later that requires it;
//! - the database and the shared audit log never hold a value in clear;
//! - a node whose variable key is not the cluster's keeps those APIs
//!   closed (503, `sfop_routes{state="closed"}`, its log says why), and its
//!   admin API says what is wrong; the other nodes serve on.
//!
//! The nodes share the variable key as the operator provisions it
//! ([`crate::cluster::provision`] copies A's `variables.key`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sfop_admin_api::apis::{SET_VARIABLE, UNSET_VARIABLE, VARIABLES};
use sfop_store_pg::Cluster;

use crate::cluster::three_nodes_serving;
use crate::cluster_money::{database, node_serving};
use crate::harness::{Package, built_plugins};
use crate::served::Served;

/// Bound on one request or one wait: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);
const SECRET: &str = "s3cr3t-cluster-key-8c2e";
const GREETING: &str = "bonjour-from-a";
/// Nothing listens there: the plugin answers its greeting with the error
/// it saw.
const NOWHERE: &str = "https://127.0.0.1:9";

/// The `test/outbound` plugin as `name` at `/test/{name}`; `required`:
/// its greeting has no default and must be set.
fn manifest(name: &str, required: bool) -> String {
    let greeting = if required {
        "{ required = true }"
    } else {
        "{ default = \"hello\" }"
    };
    format!(
        r#"name = "{name}"
version = "0.1.0"
description = "outbound test"
scope = "oob"
capabilities = ["http", "config"]
allowed_hosts = ["{NOWHERE}"]

[variables]
api_key = {{ secret = true }}
greeting = {greeting}

[limits]
timeout_ms = 1000

[[routes]]
method = "GET"
path = "/test/{name}"
"#
    )
}

/// `GET /test/{api}` on `node` with `token`: status and answer.
async fn call(node: &Served, token: &str, api: &str) -> Result<(u16, Value)> {
    let path = format!("/test/{api}?url={NOWHERE}/ok");
    let reply = tokio::time::timeout(BOUND, async {
        node.connect().await?.get_bearer(&path, token).await
    })
    .await
    .with_context(|| format!("{path} hung"))??;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

/// The greeting `node`'s `api` answers.
async fn greeting(node: &Served, token: &str, api: &str) -> Result<String> {
    let (status, answer) = call(node, token, api).await?;
    ensure!(status == 200, "{api}: {status} {answer}");
    answer["greeting"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{api}: no greeting in {answer}"))
}

/// Polls `node` until its `api` answers `wanted`; how long that took.
async fn answers(node: &Served, token: &str, api: &str, wanted: &str) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let (status, answer) = call(node, token, api).await?;
        if status == 200 && answer["greeting"] == wanted {
            return Ok(start.elapsed());
        }
        if start.elapsed() > BOUND {
            bail!(
                "{api} on {} answers {status} {answer}, not {wanted:?}",
                node.addr
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn admin_token(node: &Served) -> Result<String> {
    Ok(std::fs::read_to_string(node.data.join("admin.token"))?
        .trim()
        .to_owned())
}

/// An admin call on `node` as the bearer of `token` (none: no credentials).
async fn admin_as(
    node: &Served,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, Value)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut head = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        head.push(("authorization", auth.as_str()));
    }
    let reply = tokio::time::timeout(
        BOUND,
        node.https(method, path, &head, body.as_bytes().to_vec()),
    )
    .await
    .with_context(|| format!("{path} hung"))??;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

/// An admin call on `node` with its admin token (every node's is signed by
/// the shared root key).
async fn admin(node: &Served, method: &str, path: &str, body: &str) -> Result<(u16, Value)> {
    admin_as(node, method, path, Some(&admin_token(node)?), body).await
}

/// Variable `name` of a listing.
fn variable(listed: &Value, name: &str) -> Value {
    listed["variables"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .cloned()
        .unwrap_or_default()
}

fn set(api: &str, variable: &str, value: &str) -> String {
    json!({ "name": api, "variable": variable, "value": value }).to_string()
}

fn unset(api: &str, variable: &str) -> String {
    json!({ "name": api, "variable": variable }).to_string()
}

/// What the cluster holds of the variables: config version, audit entries,
/// and every stored (api, variable, sealed value).
async fn recorded(db: &Cluster, raw: &tokio_postgres::Client) -> Result<(u64, usize, Vec<Row>)> {
    let rows = raw
        .query(
            "SELECT api, variable, sealed FROM api_variables ORDER BY api, variable",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok((
        db.config_version().await?,
        db.audit_entries().await?.len(),
        rows,
    ))
}

type Row = (String, String, Vec<u8>);

async fn raw(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variables_set_on_any_node_serve_on_every_node() -> Result<()> {
    let Some(url) = database("cluster_variables").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    let built = built_plugins()?;
    Package::built("test/outbound")
        .with_manifest(&manifest("outbound", false))
        .write(&plugins, &built)?;
    let (a, b, c) = three_nodes_serving(dir.path(), &url, None, Some(&plugins)).await?;
    let (db, sql) = (Cluster::connect(&url, 1).await?, raw(&url).await?);
    // The demo app's token; every node checks it (shared root key).
    let token = a.oob_token().await?;
    for node in [&a, &b, &c] {
        assert_eq!(greeting(node, &token, "outbound").await?, "hello");
    }

    // Set on A: A answers with it when its call returned, B and C soon.
    let (status, answer) = admin(
        &a,
        "POST",
        SET_VARIABLE,
        &set("outbound", "greeting", GREETING),
    )
    .await?;
    ensure!(status == 200, "{status} {answer}");
    assert_eq!(greeting(&a, &token, "outbound").await?, GREETING);
    for node in [&b, &c] {
        let took = answers(node, &token, "outbound", GREETING).await?;
        eprintln!("set on A, served by {}: {took:?}", node.addr);
    }
    // A secret too: never shown back, listed on B as set.
    let (status, answer) = admin(
        &a,
        "POST",
        SET_VARIABLE,
        &set("outbound", "api_key", SECRET),
    )
    .await?;
    ensure!(status == 200, "{status} {answer}");
    assert!(!answer.to_string().contains(SECRET), "{answer}");
    let start = Instant::now();
    let listed = loop {
        let (status, listed) = admin(&b, "GET", &format!("{VARIABLES}?name=outbound"), "").await?;
        ensure!(status == 200, "{status} {listed}");
        let api_key = variable(&listed, "api_key");
        if api_key["set_by_admin"] == true {
            assert!(api_key.get("value").is_none(), "{listed}");
            break listed;
        }
        ensure!(
            start.elapsed() < BOUND,
            "B never listed the secret as set: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(!listed.to_string().contains(SECRET), "{listed}");
    assert_eq!(variable(&listed, "greeting")["value"], GREETING, "{listed}");

    // Unset on B: the manifest's default again on A and C.
    let (status, answer) =
        admin(&b, "POST", UNSET_VARIABLE, &unset("outbound", "greeting")).await?;
    ensure!(status == 200, "{status} {answer}");
    assert_eq!(greeting(&b, &token, "outbound").await?, "hello");
    for node in [&a, &c] {
        answers(node, &token, "outbound", "hello").await?;
    }

    // Refused on C, written nowhere: no credentials, a token that is not
    // an admin's, an undeclared variable, a value over the limit.
    let before = recorded(&db, &sql).await?;
    let admin_c = admin_token(&c)?;
    let long = "x".repeat(sfop_admin_api::apis::MAX_VARIABLE_VALUE + 1);
    let attempts = [
        (
            "no credentials",
            None,
            set("outbound", "greeting", "pwned"),
            401,
        ),
        (
            "a client's token",
            Some(token.as_str()),
            set("outbound", "greeting", "pwned"),
            403,
        ),
        (
            "an undeclared variable",
            Some(admin_c.as_str()),
            set("outbound", "undeclared", "pwned"),
            404,
        ),
        (
            "a value over the limit",
            Some(admin_c.as_str()),
            set("outbound", "greeting", &long),
            400,
        ),
    ];
    for (what, bearer, body, wanted) in attempts {
        let (status, answer) = admin_as(&c, "POST", SET_VARIABLE, bearer, &body).await?;
        ensure!(status == wanted, "{what}: {status} {answer}");
        assert!(!answer.to_string().contains("pwned"), "{what}: {answer}");
    }
    assert_eq!(
        recorded(&db, &sql).await?,
        before,
        "a refused change was written"
    );
    for node in [&a, &b, &c] {
        assert_eq!(greeting(node, &token, "outbound").await?, "hello");
    }

    // Stored sealed: the rows and the shared audit log hold no value.
    let (_, _, rows) = &before;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (api, variable, sealed) = &rows[0];
    assert_eq!((api.as_str(), variable.as_str()), ("outbound", "api_key"));
    assert!(
        sealed.len() >= 12 + SECRET.len() + 16,
        "{} bytes",
        sealed.len()
    );
    assert!(!contains(sealed, SECRET), "the secret is stored in clear");
    let dumped: String = sql
        .query("SELECT api_variables::text FROM api_variables", &[])
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(!dumped.contains(SECRET), "{dumped}");
    let audit = db.audit_entries().await?;
    let text = format!("{audit:?}");
    assert!(!text.contains(SECRET) && !text.contains(GREETING), "{text}");
    let changes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.api == "outbound" && e.action.starts_with("variable"))
        .map(|e| (e.action.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("variable set", "greeting"),
            ("variable set", "api_key (secret)"),
            ("variable unset", "greeting"),
        ]
    );
    assert_eq!(db.verify_audit().await?.broken, None);

    // A value for an API not registered yet, set on A; A restarted with a
    // package that requires it: every node serves it with that value.
    let (status, answer) = admin(
        &a,
        "POST",
        SET_VARIABLE,
        &set("outbound-required", "greeting", "hi"),
    )
    .await?;
    ensure!(status == 200, "{status} {answer}");
    let more = dir.path().join("plugins-more");
    Package::built("test/outbound")
        .with_manifest(&manifest("outbound", false))
        .write(&more, &built)?;
    Package::built("test/outbound")
        .named("outbound-required")
        .with_manifest(&manifest("outbound-required", true))
        .write(&more, &built)?;
    a.stop()?;
    let a = restart(
        &more,
        &dir.path().join("a"),
        &dir.path().join("a2.log"),
        &url,
    )
    .await?;
    for node in [&a, &b, &c] {
        answers(node, &token, "outbound-required", "hi").await?;
    }
    // Unsetting its only value on C: a serving version refuses it (422
    // naming the variable), nothing is written, every node answers as
    // before.
    let before = recorded(&db, &sql).await?;
    let (status, answer) = admin(
        &c,
        "POST",
        UNSET_VARIABLE,
        &unset("outbound-required", "greeting"),
    )
    .await?;
    ensure!(status == 422, "{status} {answer}");
    let message = answer["rsp_message"].as_str().unwrap_or_default();
    assert!(message.contains("greeting"), "{message}");
    assert_eq!(
        recorded(&db, &sql).await?,
        before,
        "a refused unset was written"
    );
    for node in [&a, &b, &c] {
        assert_eq!(greeting(node, &token, "outbound-required").await?, "hi");
    }

    // C restarted with a variable key that is not the cluster's: the APIs
    // with values stay closed on C, which says why; A and B serve on.
    let c_data = c.data.clone();
    c.stop()?;
    let key = c_data.join("variables.key");
    std::fs::remove_file(&key)?;
    std::fs::write(&key, [0x5au8; 32])?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    let c_log = dir.path().join("c2.log");
    let c = restart(&plugins, &c_data, &c_log, &url).await?;
    for api in ["outbound", "outbound-required"] {
        let (status, answer) = call(&c, &token, api).await?;
        ensure!(
            status == 503 && answer["rsp_code"] == "A0013",
            "{api} on a node with another key: {status} {answer}"
        );
        assert!(!answer.to_string().contains(SECRET), "{answer}");
    }
    let (status, answer) = admin(&c, "GET", &format!("{VARIABLES}?name=outbound"), "").await?;
    ensure!(status == 503, "{status} {answer}");
    let message = answer["rsp_message"].as_str().unwrap_or_default();
    assert!(message.contains("variables.key"), "{message}");
    let metrics = c.metrics().await?;
    let closed = metrics
        .lines()
        .find(|l| l.starts_with("sfop_routes{state=\"closed\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no closed-routes gauge: {metrics}"))?;
    assert!(closed >= 2, "closed routes: {closed}");
    let logged = std::fs::read_to_string(&c_log)?;
    assert!(
        logged.contains("does not open with this node's variable key"),
        "{logged}"
    );
    assert!(!logged.contains(SECRET), "the secret is in C's log");
    for node in [&a, &b] {
        assert_eq!(greeting(node, &token, "outbound-required").await?, "hi");
        assert_eq!(greeting(node, &token, "outbound").await?, "hello");
    }
    for node in [a, b, c] {
        node.stop()?;
    }
    for log in ["a.log", "b.log", "c.log", "a2.log", "c2.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap_or_default();
        assert!(!text.contains(SECRET), "the secret is in {log}");
    }
    Ok(())
}

/// A node of the cluster at `url` started again on `data`, serving
/// `plugins`.
async fn restart(plugins: &Path, data: &Path, log: &Path, url: &str) -> Result<Served> {
    let (plugins, data, log, url) = (
        plugins.to_owned(),
        data.to_owned(),
        log.to_owned(),
        url.to_owned(),
    );
    tokio::task::spawn_blocking(move || node_serving(Some(&plugins), &data, &log, &url, None))
        .await?
}
