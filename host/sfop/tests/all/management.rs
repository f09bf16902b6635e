//! Issue 6: the management center through the real platform: hot swap under
//! load, canary split and automatic rollback, refusals that change nothing,
//! the audit log's tamper evidence, and state across a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use semver::Version;
use serde_json::{Value, json};
use sfop::{AuthMode, Bootstrap, TlsMode};
use sfop_management::{CanarySpec, Gate, GateError, GateFuture, Package as Pkg, Sticky, Verdict};
use sha2::{Digest, Sha256};

use crate::harness::{Package, Reply, TestPlatform, send};

/// A stand-in for the testbed, used only by these tests (the testbed's own
/// tests cover the real one): it passes every package whose description does
/// not say "fail", and its attestation is the component's hash bound by a
/// keyed digest, so a tampered or transplanted attestation is refused.
#[derive(Debug)]
pub struct TestGate;

const GATE_KEY: &str = "test-gate-key";

fn seal(sha: &str) -> String {
    hex::encode(Sha256::digest(format!("{GATE_KEY}:{sha}")))
}

impl Gate for TestGate {
    fn test<'a>(&'a self, candidate: &'a Pkg, _live: Option<&'a Pkg>) -> GateFuture<'a> {
        let passed = !candidate.manifest.description.contains("fail");
        let sha = candidate.component_sha256();
        Box::pin(async move {
            Ok(Verdict {
                passed,
                report: json!({ "checks": [{
                    "rule": "test-gate",
                    "outcome": if passed { "pass" } else { "fail" },
                    "detail": "",
                }] }),
                report_html: "<p>test gate</p>".into(),
                attestation: passed
                    .then(|| json!({ "component_sha256": sha, "seal": seal(&sha) }).to_string()),
            })
        })
    }

    fn verify(&self, attestation: &str, package: &Pkg) -> Result<(), GateError> {
        let a: Value =
            serde_json::from_str(attestation).map_err(|e| GateError::Refused(e.into()))?;
        let sha = a["component_sha256"].as_str().unwrap_or_default();
        if a["seal"].as_str() != Some(seal(sha).as_str()) {
            return Err(GateError::Refused("bad seal".into()));
        }
        if sha != package.component_sha256() {
            return Err(GateError::Refused("attestation is for other bytes".into()));
        }
        Ok(())
    }
}

/// The echo test plugin's manifest at `version`, with `[access]` so that a
/// canary can stick to the request's account.
fn echo_manifest(version: &str, description: &str) -> String {
    format!(
        r#"name = "echo"
version = "{version}"
description = "{description}"
scope = "oob"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "GET"
path = "/test/echo"

[access]
account = "query:fintech_use_num"
"#
    )
}

fn built(group_and_name: &str) -> Result<Vec<u8>> {
    let dir = crate::harness::built_plugins()?.join(group_and_name);
    Ok(std::fs::read(dir.join("api.wasm"))?)
}

fn echo_package(version: &str, description: &str) -> Result<Pkg> {
    Ok(Pkg::from_parts(
        echo_manifest(version, description),
        built("test/echo")?,
        None,
    )?)
}

fn testbed_mode(c: &mut sfop::Config) {
    c.tls.mode = TlsMode::Off;
    c.auth.mode = AuthMode::Off;
    c.management.bootstrap = Bootstrap::Testbed;
    c.management.check_ms = 20;
}

fn gated() -> sfop::Overrides {
    sfop::Overrides {
        gate: Some(Arc::new(TestGate)),
        ..Default::default()
    }
}

/// Echo 1.0.0 through the test gate, with biscuit authorisation: the admin
/// API and the operator's admin token.
async fn admin_platform(tls: TlsMode) -> Result<TestPlatform> {
    TestPlatform::start_overriding(
        vec![Package::built("test/echo").with_manifest(&echo_manifest("1.0.0", "echo"))],
        |c| {
            c.tls.mode = tls;
            c.auth.mode = AuthMode::Biscuit;
            c.management.bootstrap = Bootstrap::Testbed;
        },
        gated(),
    )
    .await
}

/// A platform serving echo 1.0.0 (bootstrapped through the test gate) on
/// cleartext HTTP with no authorisation, the watchdog every 20 ms.
async fn platform() -> Result<TestPlatform> {
    TestPlatform::start_overriding(
        vec![Package::built("test/echo").with_manifest(&echo_manifest("1.0.0", "echo"))],
        testbed_mode,
        gated(),
    )
    .await
}

/// Pushes `package` and runs the (test) gate on it, as an operator would
/// before a promotion or canary.
async fn register(
    mgmt: &sfop_management::Management<sfop::EmbeddedPlane>,
    package: Pkg,
) -> Result<()> {
    let (name, version) = (
        package.manifest.name.clone(),
        package.manifest.version.clone(),
    );
    mgmt.push(package, "ops").await?;
    let test = mgmt.test(&name, &version, "ops").await?;
    anyhow::ensure!(test.passed, "{name}@{version} failed the gate");
    Ok(())
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap_or_else(|_| Version::new(0, 0, 0))
}

fn version_of(reply: &Reply) -> String {
    reply
        .header("x-sfop-api-version")
        .unwrap_or_default()
        .to_owned()
}

/// The component that answered, from the body: `echo` (1.0.0) or
/// `release-b` (1.1.0).
fn plugin_of(reply: &Reply) -> String {
    reply
        .json()
        .ok()
        .and_then(|b| b["plugin"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_fails_no_request_and_mixes_no_versions() -> Result<()> {
    let t = platform().await?;
    let mgmt = t.platform.management.clone();
    // 1.1.0 is another component, so each answer shows which one ran.
    let next = Pkg::from_parts(
        echo_manifest("1.1.0", "echo, second component"),
        built("test/release-b")?,
        None,
    )?;
    register(&mgmt, next).await?;
    let component = HashMap::from([("1.0.0", "echo"), ("1.1.0", "release-b")]);

    let stop = Arc::new(AtomicBool::new(false));
    let (addr, mut clients) = (t.addr(), Vec::new());
    for client in 0..8 {
        let (stop, component) = (stop.clone(), component.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/test/echo?fintech_use_num=c{client}-{i}");
                let reply = send(addr, "GET", &path, &[], Vec::new()).await?;
                let (version, plugin) = (version_of(&reply), plugin_of(&reply));
                if reply.status != 200 || component.get(version.as_str()) != Some(&plugin.as_str())
                {
                    bail!(
                        "request {i} of client {client}: {} from version {version:?}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    );
                }
                *seen.entry(version).or_default() += 1;
                i += 1;
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }

    let swaps = 24;
    for swap in 0..swaps {
        let next = if swap % 2 == 0 {
            mgmt.promote("echo", &v("1.1.0"), "ops").await?;
            "1.1.0"
        } else {
            mgmt.rollback("echo", "ops").await?;
            "1.0.0"
        };
        // Every request sent after the swap returned is served by the new
        // release.
        for _ in 0..3 {
            let reply = t.get("/test/echo?fintech_use_num=probe").await?;
            assert_eq!(version_of(&reply), next, "swap {swap}");
            assert_eq!(Some(&plugin_of(&reply).as_str()), component.get(next));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total: HashMap<String, usize> = HashMap::new();
    for client in clients {
        for (version, n) in client.await?? {
            *total.entry(version).or_default() += n;
        }
    }
    assert!(
        total.len() == 2 && total.values().all(|n| *n > 0),
        "both versions served under load: {total:?}"
    );
    // Every swap is in the audit log, which is intact.
    let audit = mgmt.audit()?;
    let swaps_logged = audit
        .iter()
        .filter(|e| e.action == "promote" || e.action == "rollback")
        .count();
    assert_eq!(
        swaps_logged,
        swaps + 1,
        "the bootstrap promotion and {swaps} swaps"
    );
    assert_eq!(mgmt.verify_audit()?.broken, None);
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_splits_sticks_and_rolls_back_a_failing_candidate() -> Result<()> {
    let t = platform().await?;
    let mgmt = t.platform.management.clone();
    register(&mgmt, echo_package("1.1.0", "echo, next")?).await?;
    let spec = CanarySpec {
        percent: 30,
        sticky: Sticky::Account,
        max_error_rate: 0.5,
        min_requests: 1_000_000,
    };
    mgmt.canary("echo", &v("1.1.0"), spec, "ops").await?;

    // The split is within tolerance of 30%, per account.
    let mut first: HashMap<String, String> = HashMap::new();
    for i in 0..600 {
        let key = format!("acct-{i}");
        let reply = t.get(&format!("/test/echo?fintech_use_num={key}")).await?;
        assert_eq!(reply.status, 200);
        first.insert(key, version_of(&reply));
    }
    let canary = first.values().filter(|v| *v == "1.1.0").count();
    assert!(
        (130..=230).contains(&canary),
        "{canary} of 600 accounts on the candidate, expected about 180"
    );
    // Sticky: the same account always lands on the same version.
    for (key, version) in first.iter().take(150) {
        let reply = t.get(&format!("/test/echo?fintech_use_num={key}")).await?;
        assert_eq!(&version_of(&reply), version, "{key} flipped");
    }
    // A tester pins a version with the header, whatever the split says.
    let (on_stable, _) = first
        .iter()
        .find(|(_, v)| *v == "1.0.0")
        .context("an account on the stable release")?;
    let pinned = send(
        t.addr(),
        "GET",
        &format!("/test/echo?fintech_use_num={on_stable}"),
        &[("x-sfop-api-version", "1.1.0")],
        Vec::new(),
    )
    .await?;
    assert_eq!(version_of(&pinned), "1.1.0");
    let unknown = send(
        t.addr(),
        "GET",
        "/test/echo",
        &[("x-sfop-api-version", "9.9.9")],
        Vec::new(),
    )
    .await?;
    assert_eq!(unknown.status, 404);
    assert!(String::from_utf8_lossy(&unknown.body).contains("9.9.9"));

    // Operator ends this canary; then a candidate that traps is tried.
    mgmt.rollback("echo", "ops").await?;
    let trap = Pkg::from_parts(
        echo_manifest("1.2.0", "echo that traps"),
        built("test/trap")?,
        None,
    )?;
    register(&mgmt, trap).await?;
    let spec = CanarySpec {
        percent: 50,
        sticky: Sticky::Account,
        max_error_rate: 0.2,
        min_requests: 10,
    };
    mgmt.canary("echo", &v("1.2.0"), spec, "ops").await?;
    let failures = Arc::new(AtomicUsize::new(0));
    let rolled_back = async {
        // Traffic until the watchdog acts (bounded).
        for i in 0..2_000 {
            let reply = t.get(&format!("/test/echo?fintech_use_num=k{i}")).await?;
            if reply.status != 200 {
                failures.fetch_add(1, Ordering::Relaxed);
                assert_eq!(version_of(&reply), "1.2.0", "only the candidate fails");
            }
            if mgmt.show("echo").await?.canary.is_none() {
                return Ok::<_, anyhow::Error>(i);
            }
        }
        bail!("the failing canary was not rolled back")
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), rolled_back).await??;
    assert!(
        failures.load(Ordering::Relaxed) >= 3,
        "the candidate did fail"
    );
    let last = mgmt.audit()?.pop().context("audit entry")?;
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("canary-monitor", "rollback"),
        "{last:?}"
    );
    // The error-rate threshold or the quarantine of a version that keeps
    // trapping (ADR 0020), whichever the watchdog sees first.
    assert!(
        last.detail.contains("errors in") || last.detail.contains("quarantined for repeated trap"),
        "{}",
        last.detail
    );
    // After the rollback every account is back on the stable release.
    for i in 0..50 {
        let reply = t.get(&format!("/test/echo?fintech_use_num=k{i}")).await?;
        assert_eq!((reply.status, version_of(&reply).as_str()), (200, "1.0.0"));
    }
    assert!(sent < 2_000);
    t.platform.stop().await
}

/// Admin calls through the real HTTP admin API with the operator's token.
struct Admin<'a> {
    t: &'a TestPlatform,
    token: String,
}

impl Admin<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply> {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        send(
            self.t.addr(),
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// The registry as the admin API lists it, and the audit log's length.
    async fn state(&self) -> Result<(Value, usize)> {
        let apis = self.call("GET", "/admin/v1/apis", None).await?.json()?;
        let audit = self.call("GET", "/admin/v1/audit", None).await?.json()?;
        Ok((
            apis["res_list"].clone(),
            audit["res_list"].as_array().map_or(0, Vec::len),
        ))
    }
}

fn upload(package: &Pkg) -> Result<Value> {
    Ok(serde_json::to_value(sfop_management::Upload::of(package))?)
}

fn refused(reply: &Reply, status: u16, needle: &str) {
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, status, "{body}");
    assert!(body.contains(needle), "{needle:?} not in {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refusals_change_nothing() -> Result<()> {
    let t = admin_platform(TlsMode::Off).await?;
    let token_file = t.platform.admin_token.clone().context("admin token")?;
    let admin = Admin {
        t: &t,
        token: std::fs::read_to_string(token_file)?.trim().to_owned(),
    };

    // The happy path: push, test, promote.
    let next = echo_package("1.1.0", "echo, next")?;
    let reply = admin
        .call("POST", "/admin/v1/apis/push", Some(upload(&next)?))
        .await?;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let named = json!({ "name": "echo", "version": "1.1.0" });
    let before = admin.state().await?;

    // Each refusal: status, the reason named, and nothing changed.
    let garbage = Pkg::from_parts(echo_manifest("1.1.0", "echo"), b"not wasm".to_vec(), None)?;
    let mut other = echo_package("1.1.0", "echo, other bytes")?;
    other.component.extend_from_slice(b"\0");
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/admin/v1/apis/promote",
            Some(named.clone()),
            422,
            "no testbed attestation",
        ),
        (
            "POST",
            "/admin/v1/apis/push",
            Some(upload(&other)?),
            409,
            "already registered with other bytes",
        ),
        (
            "POST",
            "/admin/v1/apis/push",
            Some(upload(&garbage)?),
            409,
            "already registered",
        ),
        (
            "POST",
            "/admin/v1/apis/push",
            Some(json!({ "manifest": "name = 1", "component": "AAAA" })),
            400,
            "manifest",
        ),
        (
            "POST",
            "/admin/v1/apis/push",
            Some(json!({ "manifest": echo_manifest("2.0.0", "x"), "component": "%%%" })),
            400,
            "component",
        ),
        (
            "POST",
            "/admin/v1/apis/push",
            Some(upload(&Pkg::from_parts(
                echo_manifest("3.0.0", "x"),
                b"\0asm-not".to_vec(),
                None,
            )?)?),
            422,
            "cannot be loaded",
        ),
        (
            "POST",
            "/admin/v1/apis/promote",
            Some(json!({ "name": "echo", "version": "0.9.0" })),
            404,
            "not in the registry",
        ),
        (
            "POST",
            "/admin/v1/apis/promote",
            Some(json!({ "name": "echo" })),
            400,
            "version",
        ),
        (
            "POST",
            "/admin/v1/apis/canary",
            Some(json!({ "name": "echo", "version": "1.1.0", "percent": 101 })),
            400,
            "percent",
        ),
        (
            "POST",
            "/admin/v1/apis/rollback",
            Some(json!({ "name": "echo" })),
            422,
            "no earlier live version",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let reply = admin.call(method, path, body).await?;
        refused(&reply, status, needle);
        assert_eq!(
            admin.state().await?,
            before,
            "{path} {needle} changed state"
        );
    }
    // Without an admin token, or with a forged one: refused, nothing done.
    for token in ["", "Bearer not-a-biscuit"] {
        let reply = send(
            t.addr(),
            "POST",
            "/admin/v1/apis/promote",
            &[("authorization", token)],
            named.to_string().into_bytes(),
        )
        .await?;
        assert!(
            reply.status == 401 || reply.status == 403,
            "{}",
            reply.status
        );
        assert_eq!(admin.state().await?, before);
    }

    // Tested, promoted; then a lower version and a breaking change refused.
    let reply = admin
        .call("POST", "/admin/v1/apis/test", Some(named.clone()))
        .await?;
    assert_eq!(reply.json()?["passed"], true);
    let reply = admin
        .call("POST", "/admin/v1/apis/promote", Some(named.clone()))
        .await?;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Without a token the call is refused, by the new release.
    let reply = t.get("/test/echo").await?;
    assert_eq!((reply.status, version_of(&reply).as_str()), (401, "1.1.0"));
    let after_promote = admin.state().await?;
    let reply = admin
        .call(
            "POST",
            "/admin/v1/apis/promote",
            Some(json!({ "name": "echo", "version": "1.0.0" })),
        )
        .await?;
    refused(&reply, 422, "not higher than the live version 1.1.0");
    let breaking = Pkg::from_parts(
        echo_manifest("1.2.0", "echo").replace(
            "[[routes]]\nmethod = \"GET\"\npath = \"/test/echo\"",
            "[[routes]]\nmethod = \"GET\"\npath = \"/test/echo2\"",
        ),
        built("test/echo")?,
        None,
    )?;
    let reply = admin
        .call("POST", "/admin/v1/apis/push", Some(upload(&breaking)?))
        .await?;
    assert_eq!(reply.status, 201);
    let breaking_named = json!({ "name": "echo", "version": "1.2.0" });
    admin
        .call("POST", "/admin/v1/apis/test", Some(breaking_named.clone()))
        .await?;
    let state = admin.state().await?;
    let reply = admin
        .call("POST", "/admin/v1/apis/promote", Some(breaking_named))
        .await?;
    refused(&reply, 422, "needs a major one");
    assert!(String::from_utf8_lossy(&reply.body).contains("route GET /test/echo removed"));
    assert_eq!(admin.state().await?, state);
    assert_ne!(state, after_promote, "the push and test were recorded");

    // The audit log checks out, and names the operator.
    let verify = admin.call("GET", "/admin/v1/audit/verify", None).await?;
    assert_eq!(verify.json()?["intact"], true);
    let audit = admin.call("GET", "/admin/v1/audit", None).await?.json()?;
    let actions: Vec<&str> = audit["res_list"]
        .as_array()
        .context("res_list")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "push", "test", "promote", "push", "test", "promote", "push", "test"
        ]
    );
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecate_retire_restart_and_a_tampered_audit_log() -> Result<()> {
    let t = platform().await?;
    let mgmt = t.platform.management.clone();
    register(&mgmt, echo_package("1.1.0", "echo, next")?).await?;
    mgmt.promote("echo", &v("1.1.0"), "ops").await?;
    assert!(mgmt.deprecate("echo", "2026-02-30", "ops").await.is_err());
    mgmt.deprecate("echo", "2999-12-31", "ops").await?;
    let reply = t.get("/test/echo").await?;
    assert_eq!(
        reply.header("sunset"),
        Some("Tue, 31 Dec 2999 00:00:00 GMT")
    );
    assert_eq!(version_of(&reply), "1.1.0");

    // State survives a restart: 1.1.0 stays live, deprecated, over the
    // folder's 1.0.0.
    drop(mgmt);
    let dirs = t.stop_keeping_dirs().await?;
    let t = TestPlatform::restart_overriding(dirs, testbed_mode, gated()).await?;
    let reply = t.get("/test/echo").await?;
    assert_eq!(version_of(&reply), "1.1.0");
    assert!(reply.header("sunset").is_some());
    let mgmt = t.platform.management.clone();
    // Rollback works from the registry after a restart (1.0.0 compiled anew).
    mgmt.rollback("echo", "ops").await?;
    assert_eq!(version_of(&t.get("/test/echo").await?), "1.0.0");
    mgmt.retire("echo", "ops").await?;
    let reply = t.get("/test/echo").await?;
    assert_eq!(reply.status, 410);
    assert_eq!(reply.json()?["rsp_code"], "A0013");
    assert_eq!(mgmt.verify_audit()?.broken, None);
    let entries = mgmt.audit()?.len();

    // Someone edits the log on disk while the platform is down.
    drop(mgmt);
    let dirs = t.stop_keeping_dirs().await?;
    {
        let store = sfop_store::Store::open(dirs.1.path())?;
        let tree = store.tree("mgmt.audit")?;
        let key = format!("e:{:020}", 3);
        let mut entry: Value = tree.get_json(&key)?.context("entry 3")?;
        entry["actor"] = json!("someone-else");
        tree.insert_json(&key, &entry)?;
        store.flush()?;
    }
    let t = TestPlatform::restart_with(dirs, |_| {}).await?;
    let verification = t.platform.management.verify_audit()?;
    assert_eq!(verification.entries, 2);
    assert!(
        verification
            .broken
            .as_deref()
            .is_some_and(|b| b.contains("entry 3 was altered")),
        "{verification:?} of {entries}"
    );
    // The retired API stays retired across the restart.
    assert_eq!(t.get("/test/echo").await?.status, 410);
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_tests_promotes_and_rolls_back_over_https() -> Result<()> {
    let t = admin_platform(TlsMode::SelfSigned).await?;
    let package = tempfile::tempdir()?;
    std::fs::write(
        package.path().join("sfop.toml"),
        echo_manifest("1.1.0", "echo, second component"),
    )?;
    std::fs::write(package.path().join("api.wasm"), built("test/release-b")?)?;
    let (url, data_dir) = (t.platform.url(), t.data_dir().to_owned());
    let cli = |args: Vec<String>| {
        let (url, data_dir) = (url.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sfop"))
                .args(&args)
                .arg("--url")
                .arg(&url)
                .arg("--data-dir")
                .arg(&data_dir)
                .output()
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let dir = package.path().display().to_string();
    let out = cli(args(&["api", "push", &dir, "--promote"])).await??;
    assert!(out.status.success(), "{}", text(&out));
    // Progress per step, on stderr.
    let said = text(&out);
    for step in [
        "pushing echo@1.1.0",
        "testing echo@1.1.0",
        "promoting echo@1.1.0",
    ] {
        assert!(said.contains(step), "{step:?} missing from {said}");
    }
    let out = cli(args(&["api", "list"])).await??;
    let listed = text(&out);
    assert!(
        listed.contains("echo")
            && listed.contains("1.1.0 live")
            && listed.contains("1.0.0 previous"),
        "{listed}"
    );
    // The same push again changes nothing and succeeds; other bytes are refused.
    let out = cli(args(&["api", "push", &dir])).await??;
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(package.path().join("api.wasm"), built("test/echo")?)?;
    let out = cli(args(&["api", "push", &dir])).await??;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("already registered with other bytes"),
        "{}",
        text(&out)
    );

    let out = cli(args(&["api", "rollback", "echo"])).await??;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("live version 1.0.0"), "{}", text(&out));
    let out = cli(args(&["audit", "verify"])).await??;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("audit log intact"), "{}", text(&out));
    // A wrong admin token is refused with a non-zero exit.
    let bad = data_dir.join("bad.token");
    std::fs::write(&bad, "not-a-token")?;
    let out = cli(vec![
        "api".into(),
        "rollback".into(),
        "echo".into(),
        "--admin-token".into(),
        bad.display().to_string(),
    ])
    .await??;
    assert!(!out.status.success());
    assert!(text(&out).contains("refused (401"), "{}", text(&out));
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_attestation_was_tampered_with_does_not_load() -> Result<()> {
    let t = platform().await?;
    let mgmt = t.platform.management.clone();
    register(&mgmt, echo_package("1.1.0", "echo, next")?).await?;
    mgmt.promote("echo", &v("1.1.0"), "ops").await?;
    drop(mgmt);
    let dirs = t.stop_keeping_dirs().await?;
    // The stored attestation of 1.1.0 is edited while the platform is down.
    {
        let store = sfop_store::Store::open(dirs.1.path())?;
        let tree = store.tree("mgmt.versions")?;
        let mut record: Value = tree.get_json("echo@1.1.0")?.context("record")?;
        let attestation = record["test"]["attestation"]
            .as_str()
            .context("attestation")?
            .replace("\"seal\":\"", "\"seal\":\"00");
        record["test"]["attestation"] = json!(attestation);
        tree.insert_json("echo@1.1.0", &record)?;
        store.flush()?;
    }
    let t = TestPlatform::restart_overriding(dirs, testbed_mode, gated()).await?;
    // Fail closed: the live release is not loaded, its routes stay closed,
    // and the refusal says why.
    let reply = t.get("/test/echo").await?;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()?["rsp_code"], "A0013");
    let mgmt = t.platform.management.clone();
    assert!(mgmt.show("echo").await?.closed);
    let refusal = mgmt.promote("echo", &v("1.1.0"), "ops").await;
    assert!(
        matches!(&refusal, Err(e) if e.to_string().contains("attestation refused")),
        "{refusal:?}"
    );
    // Rolling back to the earlier release, whose attestation is intact, serves.
    mgmt.rollback("echo", "ops").await?;
    assert_eq!(version_of(&t.get("/test/echo").await?), "1.0.0");
    drop(mgmt);
    t.platform.stop().await
}

/// A stored record that no longer reads is the platform's failure: the
/// upgrade check refuses (it used to let the promotion through unchecked)
/// and the caller is not blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_live_manifest_stops_promotion_as_an_internal_error() -> Result<()> {
    let t = platform().await?;
    let mgmt = t.platform.management.clone();
    register(&mgmt, echo_package("2.0.0", "echo, next")?).await?;
    drop(mgmt);
    let dirs = t.stop_keeping_dirs().await?;
    {
        let store = sfop_store::Store::open(dirs.1.path())?;
        let tree = store.tree("mgmt.versions")?;
        let mut record: Value = tree.get_json("echo@1.0.0")?.context("record")?;
        record["manifest"] = json!("name = [not toml");
        tree.insert_json("echo@1.0.0", &record)?;
        store.flush()?;
    }
    let t = TestPlatform::restart_overriding(dirs, testbed_mode, gated()).await?;
    let mgmt = t.platform.management.clone();
    let refusal = mgmt.promote("echo", &v("2.0.0"), "ops").await;
    match &refusal {
        Err(e @ sfop_management::Error::Internal { .. }) => {
            assert!(!e.is_client_fault());
            assert!(e.to_string().contains("echo@1.0.0"), "{e}");
        }
        other => anyhow::bail!("expected an internal error, got {other:?}"),
    }
    assert_ne!(version_of(&t.get("/test/echo").await?), "2.0.0");
    drop(mgmt);
    t.platform.stop().await
}

/// The package of a built plugin, with its manifest's version replaced.
fn built_package(group_and_name: &str, version: Option<&str>) -> Result<Pkg> {
    let dir = crate::harness::built_plugins()?.join(group_and_name);
    let mut package = Pkg::read_dir(&dir)?;
    if let Some(version) = version {
        let text = package.manifest_text.replacen(
            &format!("version = \"{}\"", package.manifest.version),
            &format!("version = \"{version}\""),
            1,
        );
        package = Pkg::from_parts(text, package.component, package.cases_text)?;
    }
    Ok(package)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_testbed_gates_start_and_promotion() -> Result<()> {
    // The embedded default: the folder's package goes live through the testbed.
    let t = TestPlatform::start_with(vec![Package::built("api/bank-status")], |c| {
        c.tls.mode = TlsMode::Off;
        c.auth.mode = AuthMode::Off;
        c.management.bootstrap = Bootstrap::Testbed;
    })
    .await?;
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(
        (reply.status, version_of(&reply).as_str()),
        (200, "1.0.0"),
        "{:?}",
        t.platform.packages
    );
    let mgmt = t.platform.management.clone();
    let first = mgmt.version("bank-status", &v("1.0.0"))?;
    let test = first.test.context("bootstrap ran the testbed")?;
    assert!(test.passed && test.attestation.is_some());
    // The report as a page shows it: its verdict and component, without a
    // document of its own.
    assert!(
        test.report_html.contains("Verdict: PASS")
            && test.report_html.contains(&first.component_sha256)
            && !test.report_html.contains("<html"),
        "{}",
        test.report_html
    );
    // The portal shows it inside its own page: one document, not restyled
    // by the report's.
    let page = t.get("/portal/reports/bank-status/1.0.0").await?;
    let text = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(text.contains("Verdict: PASS"), "{text}");
    assert_eq!(text.matches("<html").count(), 1, "{text}");
    assert!(
        !text.contains(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Testbed"
        )
    );
    assert!(
        !text.contains("margin:2em;max-width:80em"),
        "the report's own style"
    );

    // A candidate that breaks the contract with a minor bump fails the
    // testbed, and promotion is refused naming why.
    mgmt.push(built_package("test/tb-breaking-minor", None)?, "ops")
        .await?;
    let test = mgmt.test("bank-status", &v("1.1.0"), "ops").await?;
    assert!(!test.passed);
    let refusal = mgmt.promote("bank-status", &v("1.1.0"), "ops").await;
    assert!(
        matches!(&refusal, Err(e) if e.to_string().contains("failed the testbed")),
        "{refusal:?}"
    );
    let audit = mgmt.audit()?;
    let failed = audit
        .iter()
        .rev()
        .find(|e| e.action == "test")
        .context("test entry")?;
    assert!(failed.detail.starts_with("failed: "), "{}", failed.detail);

    // A compatible candidate passes, is attested, and goes live.
    mgmt.push(built_package("api/bank-status", Some("1.0.1"))?, "ops")
        .await?;
    let test = mgmt.test("bank-status", &v("1.0.1"), "ops").await?;
    assert!(test.passed, "{}", test.report);
    mgmt.promote("bank-status", &v("1.0.1"), "ops").await?;
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!((reply.status, version_of(&reply).as_str()), (200, "1.0.1"));
    drop(mgmt);
    t.platform.stop().await
}
