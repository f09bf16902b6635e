//! Issue 3: a broken, slow or hostile plugin ends only its own request, with a
//! documented error, while every other API keeps answering.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Package, TestPlatform, assert_envelope, send};

fn manifest(name: &str, path: &str, limits: &str) -> String {
    format!(
        r#"
name = "{name}"
version = "0.1.0"
description = "test"
scope = "oob"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "GET"
path = "{path}"

[[routes]]
method = "POST"
path = "{path}"

[limits]
{limits}
"#
    )
}

async fn hostile_platform() -> Result<TestPlatform> {
    TestPlatform::start(vec![
        Package::built("api/bank-status"),
        Package::built("test/trap"),
        Package::built("test/hog").with_manifest(&manifest("hog", "/test/hog", "memory_mib = 8")),
        Package::built("test/spin").with_manifest(&manifest(
            "spin",
            "/test/spin",
            "cpu_ms = 300\ntimeout_ms = 20000",
        )),
        Package::built("test/echo").with_manifest(&manifest(
            "echo",
            "/test/echo",
            "max_body_kib = 8\nmax_response_kib = 2",
        )),
    ])
    .await
}

/// The error envelope of a contained failure: status, `rsp_code`, and a
/// message that reveals nothing of the plugin's internals.
async fn assert_contained(t: &TestPlatform, path: &str, status: u16, code: &str) -> Result<()> {
    let reply = t.get(path).await?;
    assert_eq!(reply.status, status, "{path}: {:?}", reply.body);
    assert_eq!(assert_envelope(&reply)?, code, "{path}");
    let message = reply.json()?["rsp_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("api_tran_id"), "{path}: {message}");
    assert!(
        !message.contains("panic") && !message.contains("wasm"),
        "{path} leaks: {message}"
    );
    Ok(())
}

async fn bank_status_still_serves(t: &TestPlatform) -> Result<()> {
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    assert!(
        !reply.json()?["res_list"]
            .as_array()
            .context("res_list")?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_only_its_request() -> Result<()> {
    let t = hostile_platform().await?;
    for _ in 0..3 {
        assert_contained(&t, "/test/trap", 500, "A0003").await?;
        bank_status_still_serves(&t).await?;
    }
    let stats = t.platform.gateway.metrics().api("trap", "0.1.0");
    assert_eq!(stats.outcome(sfop_core::Outcome::Trap), 3);
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() -> Result<()> {
    let t = hostile_platform().await?;
    assert_contained(&t, "/test/hog", 500, "A0003").await?;
    bank_status_still_serves(&t).await?;
    assert_eq!(
        t.platform
            .gateway
            .metrics()
            .api("hog", "0.1.0")
            .outcome(sfop_core::Outcome::Memory),
        1
    );
    // The pool slot was returned: the next call fails the same way, not worse.
    assert_contained(&t, "/test/hog", 500, "A0003").await?;
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_the_deadline_while_others_serve() -> Result<()> {
    let t = hostile_platform().await?;
    let addr = t.addr();
    let started = Instant::now();
    let spinning =
        tokio::spawn(async move { send(addr, "GET", "/test/spin", &[], Vec::new()).await });
    // While the loop runs, other APIs answer (the loop yields at every epoch tick).
    for _ in 0..5 {
        bank_status_still_serves(&t).await?;
    }
    let reply = spinning.await??;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(assert_envelope(&reply)?, "A0007");
    // The deadline is 300 ms of the plugin's CPU time. On a machine whose
    // cores are shared (CI, or this suite's other tests) that can take
    // seconds of wall time, so the wall bound only says the loop did not
    // run on: the call's own wall-clock limit is 20 s, and the outcome
    // below says the CPU deadline, not that limit, ended it.
    assert!(
        elapsed >= Duration::from_millis(300),
        "ended early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(15), "ended late: {elapsed:?}");
    assert_eq!(
        t.platform
            .gateway
            .metrics()
            .api("spin", "0.1.0")
            .outcome(sfop_core::Outcome::Deadline),
        1
    );
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_both_ways() -> Result<()> {
    let t = hostile_platform().await?;
    // Request over the API's 8 KiB cap: a client error, the plugin never runs.
    let reply = send(t.addr(), "POST", "/test/echo", &[], vec![b'x'; 9 * 1024]).await?;
    assert_eq!(reply.status, 413);
    assert_eq!(assert_envelope(&reply)?, "A0004");
    assert!(
        reply.json()?["rsp_message"]
            .as_str()
            .unwrap_or_default()
            .contains("8 KiB")
    );

    // Under the request cap but the echo answer is over the 2 KiB response cap.
    let reply = send(t.addr(), "POST", "/test/echo", &[], vec![b'y'; 4 * 1024]).await?;
    assert_eq!(reply.status, 500);
    assert_eq!(assert_envelope(&reply)?, "A0003");
    let stats = t.platform.gateway.metrics().api("echo", "0.1.0");
    assert_eq!(stats.outcome(sfop_core::Outcome::BodyTooLarge), 1);
    assert_eq!(stats.outcome(sfop_core::Outcome::BadResponse), 1);

    // A small one still goes through.
    let reply = send(t.addr(), "POST", "/test/echo", &[], b"ok".to_vec()).await?;
    assert_eq!(assert_envelope(&reply)?, "A0000");
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_gets_a_format_error_naming_the_problem() -> Result<()> {
    let t = hostile_platform().await?;
    let reply = send(
        t.addr(),
        "POST",
        "/test/echo",
        &[("content-type", "application/json")],
        br#"{"tran_amt": 10000"#.to_vec(),
    )
    .await?;
    // A business-level format error: HTTP 200, A0004, as the reference platform does.
    assert_eq!(reply.status, 200);
    assert_eq!(assert_envelope(&reply)?, "A0004");
    let message = reply.json()?["rsp_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("request body"), "{message}");
    t.platform.stop().await
}

/// Raw bytes to the gateway, and the first line of whatever it answers.
async fn raw_exchange(t: &TestPlatform, request: &[u8]) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(t.addr()).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_and_the_gateway_stays_up() -> Result<()> {
    let t = hostile_platform().await?;
    let cases: [&[u8]; 4] = [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /v2.0/bank/status HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
        b"GET /v2.0/bank/status HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for case in cases {
        let status_line = raw_exchange(&t, case).await?;
        assert!(
            status_line.starts_with("HTTP/1.1 400"),
            "{:?} got {status_line:?}",
            String::from_utf8_lossy(case)
        );
    }
    bank_status_still_serves(&t).await?;
    t.platform.stop().await
}

/// The `sfop_instances_*` series of one release, from `/metrics`.
fn instance_series(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every request runs in an instance nothing ran in before, also once the
/// gateway makes instances ahead of their requests: a plugin's globals never
/// carry one caller's data into another request.
#[tokio::test]
async fn every_request_gets_a_fresh_instance_also_when_made_ahead() -> Result<()> {
    let t = TestPlatform::start(vec![Package::built("test/echo")]).await?;
    let metrics = || async {
        Ok::<_, anyhow::Error>(String::from_utf8(t.ops("/metrics").await?.body.to_vec())?)
    };
    let ready = r#"sfop_instances_ready{api="echo",version="0.1.0"}"#;
    let prepared = r#"sfop_instances_total{api="echo",version="0.1.0",source="prepared"}"#;
    let on_request = r#"sfop_instances_total{api="echo",version="0.1.0",source="on_request"}"#;

    // No request yet: nothing is made for an API nobody calls.
    assert_eq!(instance_series(&metrics().await?, ready), 0);
    let first = t.get("/test/echo").await?;
    assert_eq!(first.json()?["instance_calls"], 1);
    // The first call made its own instance and asked for more to be made.
    let deadline = Instant::now() + Duration::from_secs(30);
    while instance_series(&metrics().await?, ready) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no instance was made ahead");
        tokio::task::yield_now().await;
    }

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let addr = t.addr();
        calls.spawn(async move { send(addr, "GET", "/test/echo", &[], Vec::new()).await });
    }
    while let Some(reply) = calls.join_next().await {
        let reply = reply??;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()?["instance_calls"],
            1,
            "an instance served twice"
        );
    }
    let text = metrics().await?;
    let (made_ahead, made_on_request) = (
        instance_series(&text, prepared),
        instance_series(&text, on_request),
    );
    assert_eq!(made_ahead + made_on_request, 49, "{text}");
    assert!(made_ahead >= 1, "{text}");
    Ok(())
}

/// Instances made ahead and used stores waiting to be dropped never take
/// the pool slots that requests in flight need: with a pool of 16 slots,
/// 8 clients in parallel, each sending requests back to back, get no error.
#[tokio::test]
async fn instances_made_ahead_leave_the_pool_to_requests_in_flight() -> Result<()> {
    let t = TestPlatform::start_with(vec![Package::built("test/hello")], |config| {
        config.tls.mode = sfop::TlsMode::Off;
        config.auth.mode = sfop::AuthMode::Off;
        config.runtime.max_instances = 16;
    })
    .await?;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = t.addr();
        clients.spawn(async move {
            for _ in 0..60 {
                let reply = send(addr, "GET", "/test/hello", &[], Vec::new()).await?;
                anyhow::ensure!(
                    reply.status == 200,
                    "{}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            Ok(())
        });
    }
    while let Some(client) = clients.join_next().await {
        client??;
    }
    Ok(())
}
