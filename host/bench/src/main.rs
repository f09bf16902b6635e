//! `sfop-bench`: what the gateway costs over a bare HTTP server.
//!
//! Measured in one process run, on the same machine:
//!
//! - **B0** a bare hyper 1 HTTP/1.1 server answering every request with the
//!   status, headers and body captured once from the gateway's `GET
//!   /test/echo` (so the same response bytes, and the same size);
//! - **B1** the sfop gateway (`sfop::start`, `tls.mode = off`, everything
//!   else at its defaults) serving the test
//!   plugin `test/echo`, mounted from `target/sfop-plugins/test/echo` into a
//!   temp plugins dir, with a temp data dir;
//! - **B1-404** (diagnostic, `--no-404` skips it) the same gateway answering
//!   a route that does not exist: routing, envelope and error body, but no
//!   Wasm. B1 minus B1-404 is what the Wasm call costs.
//!
//! Each is loaded by the same generator ([`load`]): `--connections`
//! keep-alive HTTP/1.1 connections sending GETs back to back. After one
//! warm-up per scenario, the scenarios run in turn, `--rounds` times
//! (B0, B1, B1-404, B0, B1, ...), and the table reports the median over
//! rounds of requests/s, p50 and p99, the summed errors, and the ratio of the
//! B1 and B0 medians.
//!
//! # Runtimes
//!
//! Server and client run in this process on two separate tokio runtimes, each
//! multi-threaded with **one worker by default** (`--server-threads`,
//! `--client-threads`). The reference machine has 2 cores: one worker per
//! side keeps the two from fighting over the same core and makes B0 and B1
//! comparable, since the only thing that changes between them is the work the
//! server does per request. Default runtimes (one worker per core on each
//! side) would oversubscribe 2 cores 2:1 and mostly measure the scheduler.
//! The gateway's wasmtime epoch ticker thread is counted as server CPU.
//!
//! Because the client has a single worker too, a very cheap server (B0) can
//! end up client-bound; the CPU columns (from `/proc/self/task`, see [`cpu`])
//! show that, and "server CPU per request" is comparable either way.

mod bare;
mod cpu;
mod load;
mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use sfop::config::TlsConfig;
use sfop::{Config, LoadOutcome, TlsMode};
use tokio::runtime::Runtime;

use crate::bare::{BareServer, Canned};
use crate::cpu::Usage;
use crate::load::{RunResult, Target};

/// Thread name prefix of the server runtime's workers (see [`cpu`]).
pub(crate) const SERVER_THREAD_NAME: &str = "bench-srv";
/// Thread name prefix of the client runtime's workers.
pub(crate) const CLIENT_THREAD_NAME: &str = "bench-cli";

/// The plugin B1 serves, as built by `cargo xtask build-plugins`.
const PLUGIN: &str = "test/echo";
/// The API of the authorisation scenarios (B1-auth-off vs B2).
const AUTH_PLUGIN: &str = "api/bank-status";
const AUTH_PATH: &str = "/v2.0/bank/status";
const ECHO_PATH: &str = "/test/echo";
const MISSING_PATH: &str = "/bench/no-such-route";

#[derive(Parser, Debug)]
#[command(
    name = "sfop-bench",
    about = "Gateway overhead: a bare hyper server (B0) against sfop serving test/echo (B1)"
)]
struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Seconds of warm-up per scenario, before the first round.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Rounds over all scenarios; medians are taken over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker threads of the server runtime (both servers share it).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Built plugins (holding test/echo/{sfop.toml,api.wasm}); default
    /// <project>/target/sfop-plugins.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Where to write the JSON report; default <project>/target/bench/gateway.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the diagnostic B1-404 scenario (gateway without Wasm).
    #[arg(long)]
    no_404: bool,
}

impl Args {
    fn check(&self) -> Result<()> {
        if !(1..=1024).contains(&self.connections) {
            bail!("--connections must be 1..=1024");
        }
        if !(self.duration_secs > 0.0 && self.duration_secs <= 600.0) {
            bail!("--duration-secs must be in (0, 600]");
        }
        if !(self.warmup_secs >= 0.0 && self.warmup_secs <= 600.0) {
            bail!("--warmup-secs must be in [0, 600]");
        }
        if !(1..=50).contains(&self.rounds) {
            bail!("--rounds must be 1..=50");
        }
        if !(1..=64).contains(&self.server_threads) || !(1..=64).contains(&self.client_threads) {
            bail!("--server-threads and --client-threads must be 1..=64");
        }
        Ok(())
    }
}

/// One scenario to load.
struct Scenario {
    key: &'static str,
    label: &'static str,
    target: Target,
    rounds: Vec<Round>,
}

/// One measurement of one scenario.
struct Round {
    run: RunResult,
    server: Option<Usage>,
    client: Option<Usage>,
}

impl Round {
    fn p_us(&self, p: f64) -> Option<f64> {
        stats::percentile(&self.run.latencies_ns, p).map(|ns| ns as f64 / 1000.0)
    }

    fn per_request(&self, total: f64) -> Option<f64> {
        let ok = self.run.ok();
        (ok > 0).then_some(total / ok as f64)
    }

    fn server_cpu_us_per_req(&self) -> Option<f64> {
        self.per_request(self.server?.cpu_secs * 1e6)
    }

    fn server_faults_per_req(&self) -> Option<f64> {
        self.per_request(self.server?.minor_faults as f64)
    }

    /// CPU cores kept busy by one side on average.
    fn busy(&self, usage: Option<Usage>) -> Option<f64> {
        Some(usage?.cpu_secs / self.run.elapsed.as_secs_f64())
    }

    fn to_json(&self) -> Value {
        json!({
            "requests_per_sec": self.run.requests_per_sec(),
            "ok": self.run.ok(),
            "errors": self.run.errors,
            "elapsed_secs": self.run.elapsed.as_secs_f64(),
            "p50_us": self.p_us(50.0),
            "p99_us": self.p_us(99.0),
            "max_us": self.run.latencies_ns.last().map(|ns| *ns as f64 / 1000.0),
            "server_cpu_secs": self.server.map(|u| u.cpu_secs),
            "client_cpu_secs": self.client.map(|u| u.cpu_secs),
            "server_cpu_us_per_req": self.server_cpu_us_per_req(),
            "server_minor_faults_per_req": self.server_faults_per_req(),
            "server_cores_busy": self.busy(self.server),
            "client_cores_busy": self.busy(self.client),
        })
    }
}

/// Medians over a scenario's rounds.
struct Summary {
    rps: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    errors: u64,
    server_cpu_us_per_req: Option<f64>,
    server_faults_per_req: Option<f64>,
    server_busy: Option<f64>,
    client_busy: Option<f64>,
}

impl Scenario {
    fn summary(&self) -> Summary {
        let med = |f: &dyn Fn(&Round) -> Option<f64>| {
            let values: Vec<f64> = self.rounds.iter().filter_map(f).collect();
            stats::median(&values)
        };
        Summary {
            rps: med(&|r| Some(r.run.requests_per_sec())),
            p50_us: med(&|r| r.p_us(50.0)),
            p99_us: med(&|r| r.p_us(99.0)),
            errors: self.rounds.iter().map(|r| r.run.errors).sum(),
            server_cpu_us_per_req: med(&|r| r.server_cpu_us_per_req()),
            server_faults_per_req: med(&|r| r.server_faults_per_req()),
            server_busy: med(&|r| r.busy(r.server)),
            client_busy: med(&|r| r.busy(r.client)),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    let root = project_root()?;
    let plugins = args
        .plugins
        .clone()
        .unwrap_or_else(|| root.join("target/sfop-plugins"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/bench/gateway.json"));

    let server_rt = runtime(SERVER_THREAD_NAME, args.server_threads)?;
    let client_rt = runtime(CLIENT_THREAD_NAME, args.client_threads)?;

    // B1's platform: test/echo alone in a temp plugins dir, temp data dir.
    let plugins_dir = tempfile::tempdir().context("creating a temp plugins dir")?;
    let data_dir = tempfile::tempdir().context("creating a temp data dir")?;
    mount_plugin(&plugins.join(PLUGIN), &plugins_dir.path().join("echo"))?;
    // Authorisation is measured on an API whose answer does not depend on the
    // caller (echo would echo the claims, doing more work only when authorised).
    mount_plugin(
        &plugins.join(AUTH_PLUGIN),
        &plugins_dir.path().join("bank-status"),
    )?;
    let platform = server_rt.block_on(sfop::start(Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        plugins: plugins_dir.path().to_owned(),
        data_dir: data_dir.path().to_owned(),
        // Plain HTTP: B0 is plain too, and TLS is not what is measured here.
        tls: TlsConfig {
            mode: TlsMode::Off,
            ..TlsConfig::default()
        },
        // B1 is the data plane alone; authorisation is measured separately.
        auth: sfop::config::AuthSection {
            mode: sfop::AuthMode::Off,
            ..Default::default()
        },
        ..Config::default()
    }))?;
    for package in &platform.packages {
        if let LoadOutcome::Refused { error } = &package.outcome {
            bail!("the gateway refused {}: {error}", package.dir.display());
        }
    }
    let gateway = platform.local_addr;

    // Capture the plugin's answer once; B0 repeats it.
    let (status, headers, body) = client_rt.block_on(load::fetch_once(gateway, ECHO_PATH, None))?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 || !text.contains("\"rsp_code\":\"A0000\"") {
        bail!("GET {ECHO_PATH} answered {status}: {text}");
    }
    let body_len = body.len();
    let header_names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
    let bare = server_rt.block_on(BareServer::start(Canned::new(status, headers, body)?))?;
    let (status_404, _, body_404) =
        client_rt.block_on(load::fetch_once(gateway, MISSING_PATH, None))?;

    // B2's platform: the same plugin with authorisation on, called with an
    // institution (oob) token of the seeded demo client.
    let auth_data_dir = tempfile::tempdir().context("creating a temp data dir")?;
    let authed = server_rt.block_on(sfop::start(Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        plugins: plugins_dir.path().to_owned(),
        data_dir: auth_data_dir.path().to_owned(),
        tls: TlsConfig {
            mode: TlsMode::Off,
            ..TlsConfig::default()
        },
        ..Config::default()
    }))?;
    let bearer = format!(
        "Bearer {}",
        client_rt.block_on(oob_token(authed.local_addr, auth_data_dir.path()))?
    );
    let (status_auth, _, body_auth) = client_rt.block_on(load::fetch_once(
        authed.local_addr,
        AUTH_PATH,
        Some(&bearer),
    ))?;
    if status_auth != 200 || !String::from_utf8_lossy(&body_auth).contains("\"rsp_code\":\"A0000\"")
    {
        bail!(
            "authorised GET {AUTH_PATH} answered {status_auth}: {}",
            String::from_utf8_lossy(&body_auth)
        );
    }
    let (status_open, _, body_open) =
        client_rt.block_on(load::fetch_once(gateway, AUTH_PATH, None))?;
    if status_open != 200 {
        bail!("GET {AUTH_PATH} without auth answered {status_open}");
    }

    let mut scenarios = vec![
        Scenario {
            key: "b0_bare_hyper",
            label: "B0 bare hyper",
            target: target(bare.local_addr, ECHO_PATH, 200, body_len),
            rounds: Vec::new(),
        },
        Scenario {
            key: "b1_gateway_echo",
            label: "B1 gateway test/echo",
            target: target(gateway, ECHO_PATH, 200, body_len),
            rounds: Vec::new(),
        },
    ];
    scenarios.push(Scenario {
        key: "b1_gateway_bank_status",
        label: "B1 bank-status, no auth",
        target: target(gateway, AUTH_PATH, 200, body_open.len()),
        rounds: Vec::new(),
    });
    scenarios.push(Scenario {
        key: "b2_gateway_bank_status_auth",
        label: "B2 bank-status + biscuit",
        target: Target {
            authorization: Some(bearer),
            ..target(authed.local_addr, AUTH_PATH, 200, body_auth.len())
        },
        rounds: Vec::new(),
    });
    if !args.no_404 {
        scenarios.push(Scenario {
            key: "b1_gateway_404",
            label: "B1-404 gateway, no Wasm",
            target: target(gateway, MISSING_PATH, status_404, body_404.len()),
            rounds: Vec::new(),
        });
    }

    eprintln!(
        "sfop-bench: {} connections, {}s x {} rounds (+{}s warm-up), server {} worker(s), \
         client {} worker(s), {} CPU(s); response {body_len} bytes",
        args.connections,
        args.duration_secs,
        args.rounds,
        args.warmup_secs,
        args.server_threads,
        args.client_threads,
        cpus(),
    );
    let measured = client_rt.block_on(measure(&args, &mut scenarios));

    // Stop both servers whatever happened; report the measurement error first.
    let stopped = server_rt.block_on(async {
        bare.stop().await?;
        tokio::time::timeout(Duration::from_secs(10), authed.stop())
            .await
            .context("the authorising gateway did not stop within 10 s")??;
        tokio::time::timeout(Duration::from_secs(10), platform.stop())
            .await
            .context("the gateway did not stop within 10 s")?
    });
    measured?;
    stopped?;
    client_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));

    let report = report_json(&args, &scenarios, body_len, &header_names);
    print_table(&scenarios);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

/// Warm-up, then `rounds` rounds over every scenario in turn.
async fn measure(args: &Args, scenarios: &mut [Scenario]) -> Result<()> {
    let duration = Duration::from_secs_f64(args.duration_secs);
    if args.warmup_secs > 0.0 {
        let warmup = Duration::from_secs_f64(args.warmup_secs);
        for scenario in scenarios.iter() {
            let run = load::run(&scenario.target, args.connections, warmup).await?;
            eprintln!(
                "  warm-up  {:<26} {:>9.0} req/s, {} errors",
                scenario.label,
                run.requests_per_sec(),
                run.errors
            );
        }
    }
    for round in 1..=args.rounds {
        for scenario in scenarios.iter_mut() {
            let before = cpu::Sample::now();
            let run = load::run(&scenario.target, args.connections, duration).await?;
            let after = cpu::Sample::now();
            let round_result = Round {
                server: after.since(&before, "server"),
                client: after.since(&before, "client"),
                run,
            };
            eprintln!(
                "  round {round}  {:<26} {:>9.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                scenario.label,
                round_result.run.requests_per_sec(),
                ms(round_result.p_us(50.0)),
                ms(round_result.p_us(99.0)),
                round_result.run.errors
            );
            scenario.rounds.push(round_result);
        }
    }
    Ok(())
}

fn ratio(scenarios: &[Scenario]) -> Option<f64> {
    ratio_of(scenarios, "b1_gateway_echo", "b0_bare_hyper")
}

/// Requests/s of scenario `num` over scenario `den`.
fn ratio_of(scenarios: &[Scenario], num: &str, den: &str) -> Option<f64> {
    let rps = |key: &str| scenarios.iter().find(|s| s.key == key)?.summary().rps;
    let (n, d) = (rps(num)?, rps(den)?);
    (d > 0.0).then_some(n / d)
}

/// A client-credentials token of the demo client seeded in `data_dir`.
async fn oob_token(addr: SocketAddr, data_dir: &std::path::Path) -> Result<String> {
    let demo: Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("demo-client.json")).context("reading demo-client.json")?,
    )?;
    let field = |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .context("demo-client.json")
    };
    let form = format!(
        "grant_type=client_credentials&scope=oob&client_id={}&client_secret={}",
        field("client_id")?,
        field("client_secret")?
    );
    let body = load::post_form(addr, "/oauth/2.0/token", form).await?;
    let token: Value = serde_json::from_slice(&body)?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("token endpoint said {}", String::from_utf8_lossy(&body)))
}

fn print_table(scenarios: &[Scenario]) {
    println!();
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>7} {:>12} {:>11} {:>9} {:>9}",
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "srv CPU/req",
        "faults/req",
        "srv busy",
        "cli busy"
    );
    for scenario in scenarios {
        let s = scenario.summary();
        println!(
            "{:<26} {:>10} {:>9} {:>9} {:>7} {:>12} {:>11} {:>9} {:>9}",
            scenario.label,
            s.rps.map_or("-".into(), |v| format!("{v:.0}")),
            ms(s.p50_us),
            ms(s.p99_us),
            s.errors,
            s.server_cpu_us_per_req
                .map_or("-".into(), |v| format!("{v:.1} us")),
            s.server_faults_per_req
                .map_or("-".into(), |v| format!("{v:.1}")),
            pct(s.server_busy),
            pct(s.client_busy),
        );
    }
    match ratio(scenarios) {
        Some(r) => println!(
            "\nB1/B0 requests/s ratio: {r:.3} (target >= 0.5: {})",
            if r >= 0.5 { "met" } else { "NOT met" }
        ),
        None => println!("\nB1/B0 requests/s ratio: n/a"),
    }
    match ratio_of(
        scenarios,
        "b2_gateway_bank_status_auth",
        "b1_gateway_bank_status",
    ) {
        Some(r) => println!(
            "B2/B1 requests/s ratio (authorised / unauthorised): {r:.3} (target >= 0.7: {})",
            if r >= 0.7 { "met" } else { "NOT met" }
        ),
        None => println!("B2/B1 requests/s ratio: n/a"),
    }
    println!(
        "(medians over rounds; errors summed; srv CPU/req and faults/req = server threads' \
         CPU time and minor page faults per request; busy = CPU cores in use by that side)"
    );
}

fn report_json(
    args: &Args,
    scenarios: &[Scenario],
    body_len: usize,
    header_names: &[String],
) -> Value {
    let scenarios_json: serde_json::Map<String, Value> = scenarios
        .iter()
        .map(|scenario| {
            let s = scenario.summary();
            let value = json!({
                "label": scenario.label,
                "path": scenario.target.path,
                "expect_status": scenario.target.expect_status,
                "median": {
                    "requests_per_sec": s.rps,
                    "p50_us": s.p50_us,
                    "p99_us": s.p99_us,
                    "server_cpu_us_per_req": s.server_cpu_us_per_req,
                    "server_minor_faults_per_req": s.server_faults_per_req,
                    "server_cores_busy": s.server_busy,
                    "client_cores_busy": s.client_busy,
                },
                "errors": s.errors,
                "rounds": scenario.rounds.iter().map(Round::to_json).collect::<Vec<_>>(),
            });
            (scenario.key.to_owned(), value)
        })
        .collect();
    json!({
        "bench": "sfop gateway overhead",
        "config": {
            "connections": args.connections,
            "duration_secs": args.duration_secs,
            "warmup_secs": args.warmup_secs,
            "rounds": args.rounds,
            "server_threads": args.server_threads,
            "client_threads": args.client_threads,
            "cpus": cpus(),
            "plugin": PLUGIN,
            "response_body_bytes": body_len,
            "response_headers": header_names,
        },
        "scenarios": scenarios_json,
        "ratio_b1_over_b0": ratio(scenarios),
        "ratio_target": 0.5,
        "ratio_b2_over_b1": ratio_of(scenarios, "b2_gateway_bank_status_auth", "b1_gateway_bank_status"),
        "ratio_b2_target": 0.7,
    })
}

fn target(addr: SocketAddr, path: &str, status: u16, body_len: usize) -> Target {
    Target {
        addr,
        path: path.to_owned(),
        expect_status: status,
        expect_body_len: Some(body_len),
        authorization: None,
    }
}

/// Copies a built package (`sfop.toml`, `api.wasm`) into `dst`.
fn mount_plugin(src: &Path, dst: &Path) -> Result<()> {
    if !src.join("api.wasm").is_file() {
        bail!(
            "{} is not built: run `cargo xtask build-plugins` (or `cargo xtask bench`)",
            src.display()
        );
    }
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for file in ["sfop.toml", "api.wasm"] {
        std::fs::copy(src.join(file), dst.join(file))
            .with_context(|| format!("copying {}", src.join(file).display()))?;
    }
    Ok(())
}

fn runtime(name: &str, workers: usize) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("building the {name} runtime"))
}

fn project_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .context("sfop-bench must live two levels below the project root")
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn ms(us: Option<f64>) -> String {
    us.map_or("-".into(), |us| format!("{:.3}", us / 1000.0))
}

fn pct(fraction: Option<f64>) -> String {
    fraction.map_or("-".into(), |f| format!("{:.0}%", f * 100.0))
}
