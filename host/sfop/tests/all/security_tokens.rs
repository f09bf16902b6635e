//! Issue 15, defect 1, through the real `sfop serve` binary over real HTTPS:
//! a registered app appends costly Datalog to its own `oob` token offline (a
//! block of facts and a check joining three of them with arithmetic) and
//! sends it. Such tokens are refused at verification with `O0002` and a
//! message naming the published limit, each costs the server well under
//! 5 ms of CPU, and other clients' latency holds while four of them are sent
//! without pause.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::served::Served;

/// A block of `n` facts and one check joining three of them (the review's
/// token, about 2 s of CPU per request at n = 120 before the limits).
fn cube(n: usize) -> String {
    let mut block: String = (0..n).map(|i| format!("f({i});\n")).collect();
    block.push_str("check if f($a), f($b), f($c), $a + $b + $c == -1;");
    block
}

/// A costly token the estimate lets through: a full block of facts and a
/// join of two.
fn within_the_limits() -> String {
    let mut block: String = (0..32).map(|i| format!("g({i});\n")).collect();
    block.push_str("check if g($a), g($b), $a + $b == -1;\n");
    block
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let i = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples.get(i).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_datalog_in_a_token_is_refused_cheaply_and_slows_no_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = Served::start(&data, &dir.path().join("serve.log"))?;
    let oob = server.oob_token().await?;
    let mut conn = server.connect().await?;

    // The token as issued works.
    let reply = conn.get_bearer("/v2.0/bank/status", &oob).await?;
    ensure!(reply.json()?["rsp_code"] == "A0000", "{:?}", reply.body);

    // Each attack shape, built offline as any holder can.
    let attacks = [
        (cube(120), "block 1 has 120 facts; the limit is 32"),
        (cube(32), "may cost up to"),
        (
            (0..2_000).map(|i| format!("f({i});\n")).collect::<String>(),
            "characters long; the limit is 16384",
        ),
    ];
    let mut tokens = Vec::new();
    for (block, limit) in &attacks {
        let token = sfop_auth::holder::attenuate(&oob, block)?;
        let reply = conn.get_bearer("/v2.0/bank/status", &token).await?;
        let body = reply.json()?;
        ensure!(
            reply.status == 401
                && body["rsp_code"] == "O0002"
                && body["rsp_message"]
                    .as_str()
                    .is_some_and(|m| m.contains(limit)),
            "expected a refusal naming {limit:?}: {} {body}",
            reply.status
        );
        tokens.push((*limit, token));
    }
    // Within the limits, decided on its merits (its check cannot hold).
    let widest = sfop_auth::holder::attenuate(&oob, &within_the_limits())?;
    let reply = conn.get_bearer("/v2.0/bank/status", &widest).await?;
    ensure!(
        (reply.status, reply.json()?["rsp_code"].as_str()) == (200, Some("A0301")),
        "{:?}",
        reply.body
    );
    tokens.push(("decided within the limits", widest));

    // The server's CPU per request: each token sent 50 times on one
    // keep-alive connection, against the token as issued.
    const N: u32 = 50;
    let per_request = |token: String| {
        let server = &server;
        async move {
            let mut conn = server.connect().await?;
            let before = server.cpu()?;
            for _ in 0..N {
                conn.get_bearer("/v2.0/bank/status", &token).await?;
            }
            anyhow::Ok((server.cpu()? - before) / N)
        }
    };
    let baseline = per_request(oob.clone()).await?;
    let mut report = vec![format!("token as issued: {baseline:?}")];
    for (what, token) in &tokens {
        let cost = per_request(token.clone()).await?;
        report.push(format!("{what}: {cost:?}"));
        ensure!(
            cost < baseline + Duration::from_millis(5),
            "a token refused for {what:?} cost {cost:?} of server CPU per request"
        );
    }
    eprintln!("server CPU per request:\n  {}", report.join("\n  "));

    // Unrelated requests keep their p99 while four costly tokens are sent
    // without pause, each on its own connection.
    let mut quiet = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        conn.get_bearer("/v2.0/bank/status", &oob).await?;
        quiet.push(started.elapsed());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for (_, token) in tokens.iter().take(4) {
        let token = token.clone();
        let mut attacker = server.connect().await?;
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                attacker.get_bearer("/v2.0/bank/status", &token).await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut loaded = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let reply = conn.get_bearer("/v2.0/bank/status", &oob).await?;
        loaded.push(started.elapsed());
        ensure!(reply.json()?["rsp_code"] == "A0000", "{:?}", reply.body);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for attacker in attackers {
        sent += attacker.await??;
    }
    let (quiet, loaded) = (p99(quiet), p99(loaded));
    eprintln!(
        "bank/status p99: quiet {quiet:?}, with 4 costly-token senders {loaded:?} ({sent} costly requests)"
    );
    // Before the limits, two such requests at once delayed others by 6-16 s.
    // Four busy senders share the two cores with the measured client (and,
    // in the full suite, with other tests), so the bound allows for their
    // plain HTTP work and a busy machine, not for token evaluation: a
    // single costly decision of the old kind took longer than all of it.
    ensure!(
        loaded < quiet * 5 + Duration::from_millis(150),
        "p99 went from {quiet:?} to {loaded:?}"
    );
    server.stop()
}
