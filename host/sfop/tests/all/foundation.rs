//! Issue 2: a real Wasm API live end to end, and packages refused at load.

use anyhow::{Context, Result};

use crate::harness::{Package, TestPlatform, assert_envelope, send, spawn_serve};

const ECHO_ON_BANK_STATUS: &str = r#"
name = "echo"
version = "0.1.0"
description = "The echo test plugin mounted on the bank status route."
scope = "oob"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "GET"
path = "/v2.0/bank/status"
"#;

#[tokio::test]
async fn bank_status_lists_the_virtual_banks() -> Result<()> {
    let t = TestPlatform::start(vec![Package::built("api/bank-status")]).await?;
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(assert_envelope(&reply)?, "A0000");
    let body = reply.json()?;
    let list = body["res_list"].as_array().context("res_list")?;
    assert_eq!(list.len(), sfop_vbank::SEED_BANKS.len());
    // Counts are digit strings, as in the reference API.
    assert_eq!(body["res_cnt"], list.len().to_string());
    assert_eq!(list[0]["bank_code_std"], "002");
    assert_eq!(list[0]["bank_name"], "산업은행");
    assert!(list.iter().all(|b| b["bank_status"] == "Y"));
    // The envelope comes first, in the reference's field order.
    let keys: Vec<&String> = body.as_object().context("object")?.keys().collect();
    assert_eq!(
        keys[..4],
        ["api_tran_id", "api_tran_dtm", "rsp_code", "rsp_message"]
    );
    t.platform.stop().await
}

#[tokio::test]
async fn bank_status_reads_the_ledger_live() -> Result<()> {
    let t = TestPlatform::start(vec![Package::built("api/bank-status")]).await?;
    t.platform.bank.set_available("097", false)?;
    let body = t.get("/v2.0/bank/status").await?.json()?;
    let open_bank = body["res_list"]
        .as_array()
        .context("res_list")?
        .iter()
        .find(|b| b["bank_code_std"] == "097")
        .context("bank 097")?;
    assert_eq!(open_bank["bank_status"], "N");
    t.platform.stop().await
}

#[tokio::test]
async fn the_route_answers_with_whatever_component_is_installed() -> Result<()> {
    // The echo test component installed under the bank status route: the
    // answer is the component's, not something the gateway made up.
    let t = TestPlatform::start(vec![
        Package::built("test/echo").with_manifest(ECHO_ON_BANK_STATUS),
    ])
    .await?;
    let reply = t.get("/v2.0/bank/status?name=%ED%99%8D").await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    let body = reply.json()?;
    assert_eq!(body["plugin"], "echo");
    assert_eq!(body["path"], "/v2.0/bank/status");
    assert_eq!(body["query_name"], "홍");
    assert!(body.get("res_list").is_none());
    t.platform.stop().await
}

#[tokio::test]
async fn the_gateway_owns_the_envelope() -> Result<()> {
    let t = TestPlatform::start(vec![Package::built("test/echo")]).await?;
    let reply = send(
        t.addr(),
        "POST",
        "/test/echo",
        &[("x-test", "yes"), ("content-type", "application/json")],
        br#"{"hello":"world"}"#.to_vec(),
    )
    .await?;
    assert_eq!(reply.status, 200);
    assert_envelope(&reply)?;
    let body = reply.json()?;
    // The plugin wrote "forged"; the gateway's id wins, and it is the id the plugin saw.
    assert_ne!(body["api_tran_id"], "forged");
    assert_eq!(body["api_tran_id"], body["seen_api_tran_id"]);
    assert_eq!(body["method"], "POST");
    assert_eq!(body["header_x_test"], "yes");
    assert_eq!(body["body"], r#"{"hello":"world"}"#);
    // The clock capability works: within a minute of the test's clock.
    let now = sfop_core::time::now_millis();
    let seen: u64 = body["now_millis"].as_str().context("now_millis")?.parse()?;
    assert!(
        seen.abs_diff(now) < 60_000,
        "plugin clock {seen}, test clock {now}"
    );

    // Every call gets its own id.
    let again = t.get("/test/echo").await?.json()?;
    assert_ne!(again["api_tran_id"], body["api_tran_id"]);
    t.platform.stop().await
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_envelope() -> Result<()> {
    let t = TestPlatform::start(vec![Package::built("api/bank-status")]).await?;

    let reply = t.get("/v2.0/no/such/api").await?;
    assert_eq!(reply.status, 404);
    assert_eq!(assert_envelope(&reply)?, "A0004");
    let message = reply.json()?["rsp_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("/v2.0/no/such/api"), "{message}");

    let reply = send(t.addr(), "DELETE", "/v2.0/bank/status", &[], Vec::new()).await?;
    assert_eq!(reply.status, 405);
    assert_eq!(assert_envelope(&reply)?, "O0010");
    assert_eq!(reply.header("allow"), Some("GET"));
    t.platform.stop().await
}

#[tokio::test]
async fn an_undeclared_import_is_refused_and_the_rest_serves() -> Result<()> {
    let t = TestPlatform::start(vec![
        Package::built("api/bank-status"),
        Package::built("test/undeclared-import"),
    ])
    .await?;
    let error = t
        .refusal("undeclared-import")
        .context("package was not refused")?;
    assert!(error.contains("sfop:platform/kv@0.1.0"), "{error}");
    assert!(error.contains("capability `kv`"), "{error}");

    // Its route is closed, not open: the component never runs.
    let reply = t.get("/test/undeclared").await?;
    assert_eq!(reply.status, 503);
    assert_eq!(assert_envelope(&reply)?, "A0013");

    // Everything else serves.
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    t.platform.stop().await
}

#[tokio::test]
async fn the_same_component_loads_once_it_declares_the_capability() -> Result<()> {
    let declared = r#"
        name = "undeclared-import"
        version = "0.1.0"
        description = "Now declares kv."
        scope = "oob"
        capabilities = ["kv"]

        [[routes]]
        method = "GET"
        path = "/test/undeclared"
    "#;
    let t = TestPlatform::start(vec![
        Package::built("test/undeclared-import").with_manifest(declared),
    ])
    .await?;
    assert_eq!(t.refusal("undeclared-import"), None);
    let reply = t.get("/test/undeclared").await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    assert_eq!(reply.json()?["hits"], serde_json::Value::Null);
    t.platform.stop().await
}

#[tokio::test]
async fn malformed_components_and_manifests_are_refused_with_a_reason() -> Result<()> {
    let t = TestPlatform::start(vec![
        Package::built("api/bank-status"),
        Package::built("test/echo")
            .named("garbage-component")
            .with_manifest(&ECHO_ON_BANK_STATUS.replace("/v2.0/bank/status", "/test/garbage"))
            .with_component_bytes(b"\0asm\x0d\0\x01\0 this is not a component"),
        Package::built("test/echo")
            .named("bad-manifest")
            .with_manifest(&format!("{ECHO_ON_BANK_STATUS}\nwildcard = true\n")),
    ])
    .await?;

    let error = t
        .refusal("garbage-component")
        .context("garbage was loaded")?;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );
    let reply = t.get("/test/garbage").await?;
    assert_eq!(reply.status, 503);
    assert_eq!(assert_envelope(&reply)?, "A0013");

    let error = t
        .refusal("bad-manifest")
        .context("bad manifest was loaded")?;
    assert!(error.contains("wildcard"), "{error}");

    // The bad manifest claimed /v2.0/bank/status; the good package still owns it.
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    assert!(reply.json()?["res_list"].is_array());
    t.platform.stop().await
}

#[tokio::test]
async fn two_packages_cannot_claim_one_route() -> Result<()> {
    let t = TestPlatform::start(vec![
        Package::built("api/bank-status"),
        Package::built("test/echo")
            .named("zz-echo-squatter")
            .with_manifest(ECHO_ON_BANK_STATUS),
    ])
    .await?;
    let error = t.refusal("zz-echo-squatter").context("squatter loaded")?;
    assert!(error.contains("already served by bank-status"), "{error}");
    let body = t.get("/v2.0/bank/status").await?.json()?;
    assert!(body["res_list"].is_array());
    t.platform.stop().await
}

/// README command 1, in miniature: the real binary, started as a user would.
#[test]
fn the_binary_serves_the_reference_api() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (mut child, addr) = spawn_serve(data.path())?;
    let result = (|| -> Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        let reply = runtime.block_on(send(addr, "GET", "/v2.0/bank/status", &[], Vec::new()))?;
        assert_eq!(reply.status, 200);
        assert_eq!(assert_envelope(&reply)?, "A0000");
        assert!(
            !reply.json()?["res_list"]
                .as_array()
                .context("res_list")?
                .is_empty()
        );
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    result
}
