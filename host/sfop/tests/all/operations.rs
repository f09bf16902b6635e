//! Issue 3: what operators rely on: metrics, health, the compile cache across
//! restarts, configuration errors, and a clean stop on SIGTERM.

use std::process::Command;

use anyhow::Result;

use crate::harness::{Package, TestPlatform, send, spawn_serve};

#[tokio::test]
async fn metrics_count_per_api_version_and_health_answers() -> Result<()> {
    let t = TestPlatform::start(vec![
        Package::built("api/bank-status"),
        Package::built("test/trap"),
    ])
    .await?;
    for _ in 0..2 {
        t.get("/v2.0/bank/status").await?;
    }
    t.get("/test/trap").await?;
    t.get("/nowhere").await?;

    let metrics = t.ops("/metrics").await?;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    // OpenMetrics (prometheus-client): counter families are named without
    // `_total`, and the exposition ends in `# EOF`.
    assert!(text.contains("# TYPE sfop_requests counter\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in [
        r#"sfop_requests_total{api="bank-status",version="1.0.0",outcome="ok"} 2"#,
        r#"sfop_requests_total{api="trap",version="0.1.0",outcome="trap"} 1"#,
        r#"sfop_plugin_traps_total{api="trap",version="0.1.0"} 1"#,
        r#"sfop_request_duration_seconds_count{api="bank-status",version="1.0.0"} 2"#,
        r#"sfop_unrouted_requests_total{reason="route_not_found"} 1"#,
        r#"sfop_routes{state="live"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(t.ops("/healthz").await?.status, 200);
    assert_eq!(t.ops("/readyz").await?.status, 200);
    // Ops endpoints are not on the API listener.
    assert_eq!(t.get("/metrics").await?.status, 404);
    t.platform.stop().await
}

#[tokio::test]
async fn a_restart_loads_every_plugin_from_the_compile_cache() -> Result<()> {
    let packages = vec![
        Package::built("api/bank-status"),
        Package::built("test/echo"),
    ];
    let t = TestPlatform::start(packages).await?;
    let cached = |t: &TestPlatform| -> Vec<bool> {
        t.platform
            .packages
            .iter()
            .map(|p| {
                matches!(
                    p.outcome,
                    sfop::LoadOutcome::Live {
                        from_cache: true,
                        ..
                    }
                )
            })
            .collect()
    };
    assert_eq!(cached(&t), [false, false], "first start compiles");
    let entries = std::fs::read_dir(t.data_dir().join("compile-cache"))?.count();
    assert_eq!(entries, 2);

    let t = TestPlatform::restart(t.stop_keeping_dirs().await?).await?;
    assert_eq!(cached(&t), [true, true], "restart must not recompile");
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(reply.json()?["rsp_code"], "A0000");

    // A damaged cache entry is a miss, never a failure.
    for entry in std::fs::read_dir(t.data_dir().join("compile-cache"))? {
        std::fs::write(entry?.path(), b"damaged")?;
    }
    let t = TestPlatform::restart(t.stop_keeping_dirs().await?).await?;
    assert_eq!(cached(&t), [false, false]);
    assert_eq!(
        t.get("/v2.0/bank/status").await?.json()?["rsp_code"],
        "A0000"
    );
    t.platform.stop().await
}

#[test]
fn a_bad_config_key_is_named_and_nothing_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sfop.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[tls]\nmode = \"off\"\nsertificate = \"x.pem\"\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_sfop"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sertificate"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing may start: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A flag overrides the file, and a value that is wrong names its key.
    std::fs::write(&config, "[tls]\nmode = \"files\"\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_sfop"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`tls.cert`"));
    Ok(())
}

#[test]
fn sigterm_stops_the_binary_cleanly() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (child, addr) = spawn_serve(data.path())?;
    let reply = tokio::runtime::Runtime::new()?.block_on(send(
        addr,
        "GET",
        "/v2.0/bank/status",
        &[],
        Vec::new(),
    ))?;
    assert_eq!(reply.status, 200);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(kill.success());
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("draining"));
    Ok(())
}
