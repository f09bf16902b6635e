//! `sfop-bench`: what the gateway costs over a bare HTTP server, in one run
//! on one machine (issue 9). Every row is read as a ratio to the bare server
//! measured alongside it, since absolute numbers move with the machine.
//!
//! Scenarios (all HTTP/1.1, `--connections` concurrent connections):
//!
//! - **B0** a bare hyper server answering every request with the status,
//!   headers and body captured once from the gateway's `GET /test/hello` (the
//!   same bytes): the ceiling;
//! - **B1** the sfop gateway (`sfop::start`, cleartext, auth off, everything
//!   else at its defaults, pooling allocator on) serving the trivial test
//!   plugin `test/hello` (a constant answer, no capability), a fresh Wasm
//!   instance per request;
//! - **B1e** the same gateway serving `test/echo`, which reflects the request
//!   through three capabilities (log, clock, auth-context): what a plugin
//!   that does some work of its own costs;
//! - **B1b** the same gateway serving `api/bank-status` without auth, the
//!   baseline of B2 (echo would echo the claims, doing more work only when
//!   authorised);
//! - **B2** `api/bank-status` on a second gateway with biscuit authorisation
//!   on, called with the demo client's `oob` token;
//! - **B3** balance inquiry through the real `account-balance` plugin and the
//!   virtual bank, with a user token obtained through the authorize pages
//!   (a fresh `bank_tran_id` per request);
//! - **B4** 1-won withdrawals through `transfer-withdraw`, each acknowledged
//!   only after the ledger is flushed to disk (fresh `bank_tran_id` each);
//! - **B3r**, **B4r** B3 and B4 on a gateway whose bank is a separate
//!   process, `sfop bank serve` (HTTPS, its own store, one tokio worker),
//!   reached through the REST connector (`[bank] mode = "rest"`); the seeded
//!   user 홍길동 (the bank server seeds its own store the same way);
//! - **B2pg**, **B4pg** B2 and B4 on a gateway whose store is PostgreSQL
//!   (`[store] url`, a database made on `--pg-url`'s server): the ledger,
//!   the ids and the limits in one SERIALIZABLE transaction per withdrawal
//!   (docs/adr/0030); the seeded user 홍길동; only with `--pg-url`;
//! - **T1** B1 over TLS (rustls, self-signed, TLS 1.3) with keep-alive;
//! - **T2** B1 over TLS with a new TCP connection and a full TLS handshake
//!   per request (session resumption off);
//! - **S** B1 while the management center swaps the API between two
//!   versions every `--swap-ms` (promote, rollback, promote, ...): failed
//!   requests, p99 against B1, and the time from each promote/rollback call
//!   to the first answer from the new version (`x-sfop-api-version`);
//! - **N1** B1b while 16 more connections call `test/spin` (a loop to its
//!   100 ms CPU deadline, answered 504): the neighbour's p99 against B1b's,
//!   with a bad API hammered beside it (issue 22, ADR 0020);
//! - **B1o** B1 on a gateway with OpenTelemetry on, sampling 1% of
//!   traces and exporting them over OTLP/HTTP to a local sink (ADR 0028);
//! - **B1-404** (diagnostic, `--no-404` skips it) the gateway answering an
//!   unknown route: routing, envelope and error body, no Wasm.
//!
//! After one warm-up per scenario, the scenarios run in turn, `--rounds`
//! times, and the table reports medians over rounds (max latency: the worst
//! round), errors summed.
//!
//! # Runtimes
//!
//! Servers and client run in this process on two separate tokio runtimes,
//! each multi-threaded with **one worker by default** (`--server-threads`,
//! `--client-threads`). The reference machine has 2 cores: one worker per
//! side keeps the two from fighting over the same core and makes B0 and B1
//! comparable, since the only thing that changes between them is the work the
//! server does per request. The gateways' wasmtime epoch ticker threads are
//! counted as server CPU ([`cpu`]).

mod bankproc;
mod bare;
mod cpu;
mod load;
mod setup;
mod sink;
mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use sfop::config::TlsConfig;
use sfop::{AuthMode, Config, LoadOutcome, Platform, TlsMode};
use tokio::runtime::Runtime;

use crate::bare::{BareServer, Canned};
use crate::cpu::Usage;
use crate::load::{RunResult, Target, Transport};

/// The same global allocator as the `sfop` binary, so that the gateway is
/// measured as it runs in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Thread name prefix of the server runtime's workers (see [`cpu`]).
pub(crate) const SERVER_THREAD_NAME: &str = "bench-srv";
/// Thread name prefix of the client runtime's workers.
pub(crate) const CLIENT_THREAD_NAME: &str = "bench-cli";

const HELLO_PATH: &str = "/test/hello";
const ECHO_PATH: &str = "/test/echo";
const STATUS_PATH: &str = "/v2.0/bank/status";
/// A plugin that loops to its CPU deadline (100 ms here), hammered beside
/// bank-status in scenario N1 (issue 22, ADR 0020).
const SPIN_PATH: &str = "/test/spin";
const SPIN_MANIFEST: &str = "name = \"spin\"\nversion = \"0.1.0\"\ndescription = \"Loops forever (test plugin).\"\nscope = \"oob\"\ncapabilities = []\n\n[[routes]]\nmethod = \"GET\"\npath = \"/test/spin\"\n\n[limits]\ncpu_ms = 100\n";
/// Connections that call the spinning plugin during N1.
const SPIN_CONNECTIONS: usize = 16;
const WITHDRAW_PATH: &str = "/v2.0/transfer/withdraw/fin_num";
const MISSING_PATH: &str = "/bench/no-such-route";
const OK: &str = "\"rsp_code\":\"A0000\"";
/// The version the hot-swap scenario swaps to and from the bootstrapped one.
const SWAP_VERSION: &str = "0.2.0";

mod key {
    pub const B0: &str = "b0_bare_hyper";
    pub const B1: &str = "b1_gateway_hello";
    pub const B1_ECHO: &str = "b1e_gateway_echo";
    pub const B1_STATUS: &str = "b1b_bank_status_no_auth";
    pub const B2: &str = "b2_bank_status_biscuit";
    pub const B3: &str = "b3_balance_inquiry";
    pub const B4: &str = "b4_withdraw_durable";
    pub const B3R: &str = "b3r_balance_inquiry_rest";
    pub const B4R: &str = "b4r_withdraw_durable_rest";
    pub const B2PG: &str = "b2pg_bank_status_biscuit_postgres";
    pub const B4PG: &str = "b4pg_withdraw_durable_postgres";
    pub const T1: &str = "t1_tls_keepalive";
    pub const T2: &str = "t2_tls_new_connection";
    pub const S: &str = "s_hot_swap";
    pub const B1_404: &str = "b1_404_no_wasm";
    pub const B1O: &str = "b1o_gateway_hello_otel_1pct";
    pub const N1: &str = "n1_bank_status_beside_spin";
}

#[derive(Parser, Debug)]
#[command(
    name = "sfop-bench",
    about = "Gateway overhead against a bare hyper server: B0-B4, T1, T2, S (issue 9)"
)]
struct Args {
    /// Concurrent connections per scenario.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.5)]
    duration_secs: f64,
    /// Seconds of warm-up per scenario, before the first round.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Rounds over all scenarios; medians are taken over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Worker threads of the server runtime (all servers share it).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Milliseconds between two swaps in scenario S.
    #[arg(long, default_value_t = 250)]
    swap_ms: u64,
    /// Built plugins (`test/hello`, `test/echo`, `api/*`); default <project>/target/sfop-plugins.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// The `sfop` binary that runs the bank server of B3r/B4r
    /// (`sfop bank serve`); default: `sfop` next to this executable.
    #[arg(long)]
    sfop: Option<PathBuf>,
    /// A PostgreSQL server for B2pg and B4pg: the URL of a role that may
    /// create databases (`cargo xtask pg start` prints one); the bench makes
    /// (drops and makes again) the database `sfop_bench` on it. Without it
    /// B2pg and B4pg do not run.
    #[arg(long, env = "SFOP_BENCH_PG_URL")]
    pg_url: Option<String>,
    /// Where to write the JSON report; default <project>/target/bench/gateway.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the diagnostic B1-404 scenario (gateway without Wasm).
    #[arg(long)]
    no_404: bool,
    /// Run only the scenarios whose key starts with one of these prefixes
    /// (comma-separated, e.g. `b1_gateway,s_`; keys are in the JSON report);
    /// B0 always runs.
    #[arg(long)]
    only: Option<String>,
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
        if !(20..=60_000).contains(&self.swap_ms) {
            bail!("--swap-ms must be 20..=60000");
        }
        Ok(())
    }

    fn wants(&self, key: &str) -> bool {
        key == key::B0
            || self
                .only
                .as_deref()
                .is_none_or(|only| only.split(',').any(|w| !w.is_empty() && key.starts_with(w)))
    }
}

/// One scenario to load.
struct Scenario {
    key: &'static str,
    label: &'static str,
    target: Target,
    /// Called at the same time by other connections, not measured (N1).
    hammer: Option<Target>,
    /// The in-process virtual bank behind the scenario, whose group commit
    /// is counted per round (B3, B4).
    bank: Option<sfop_vbank::VirtualBank>,
    /// The bank server process behind the scenario (B3r, B4r), whose CPU
    /// time is counted per round.
    bank_pid: Option<u32>,
    rounds: Vec<Round>,
}

/// One measurement of one scenario.
struct Round {
    run: RunResult,
    server: Option<Usage>,
    /// The server's CPU by thread name prefix (see `cpu::GROUPS`).
    server_threads: Vec<(&'static str, Usage)>,
    client: Option<Usage>,
    swaps: Option<SwapStats>,
    /// What the virtual bank's group commit did during the round.
    commits: Option<CommitRound>,
    /// CPU time of the bank server process (B3r, B4r).
    bank_process: Option<Usage>,
}

/// Flushes of the virtual bank's group commit in one round, and the answers
/// they made durable.
#[derive(Debug, Clone, Copy)]
struct CommitRound {
    flushes: u64,
    acknowledged: u64,
}

impl CommitRound {
    fn between(before: sfop_vbank::CommitStats, after: sfop_vbank::CommitStats) -> Self {
        Self {
            flushes: after.flushes.saturating_sub(before.flushes),
            acknowledged: after.acknowledged.saturating_sub(before.acknowledged),
        }
    }

    /// Answers per flush.
    fn batch(&self) -> Option<f64> {
        (self.flushes > 0).then(|| self.acknowledged as f64 / self.flushes as f64)
    }
}

impl Round {
    fn p_us(&self, p: f64) -> Option<f64> {
        stats::percentile(&self.run.latencies_ns, p).map(|ns| ns as f64 / 1000.0)
    }

    fn max_us(&self) -> Option<f64> {
        self.run.latencies_ns.last().map(|ns| *ns as f64 / 1000.0)
    }

    fn per_request(&self, total: f64) -> Option<f64> {
        let ok = self.run.ok();
        (ok > 0).then_some(total / ok as f64)
    }

    fn server_cpu_us_per_req(&self) -> Option<f64> {
        self.per_request(self.server?.cpu_secs * 1e6)
    }

    /// Server CPU per request by thread name prefix, threads that ran.
    fn server_threads_us_per_req(&self) -> serde_json::Map<String, Value> {
        self.server_threads
            .iter()
            .filter(|(_, usage)| usage.cpu_secs > 0.0)
            .filter_map(|(prefix, usage)| {
                Some((
                    (*prefix).to_owned(),
                    json!(self.per_request(usage.cpu_secs * 1e6)?),
                ))
            })
            .collect()
    }

    fn bank_cpu_us_per_req(&self) -> Option<f64> {
        self.per_request(self.bank_process?.cpu_secs * 1e6)
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
            "first_failures": self.run.failures,
            "elapsed_secs": self.run.elapsed.as_secs_f64(),
            "p50_us": self.p_us(50.0),
            "p99_us": self.p_us(99.0),
            "max_us": self.max_us(),
            "server_cpu_secs": self.server.map(|u| u.cpu_secs),
            "client_cpu_secs": self.client.map(|u| u.cpu_secs),
            "server_cpu_us_per_req": self.server_cpu_us_per_req(),
            "server_cpu_us_per_req_by_thread": self.server_threads_us_per_req(),
            "bank_process_cpu_us_per_req": self.bank_cpu_us_per_req(),
            "server_minor_faults_per_req": self.server_faults_per_req(),
            "server_cores_busy": self.busy(self.server),
            "client_cores_busy": self.busy(self.client),
            "swaps": self.swaps.as_ref().map(SwapStats::to_json),
            "group_commit": self.commits.map(|c| json!({
                "flushes": c.flushes,
                "acknowledged": c.acknowledged,
                "answers_per_flush": c.batch(),
            })),
        })
    }
}

/// Medians over a scenario's rounds.
struct Summary {
    rps: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    max_us: Option<f64>,
    errors: u64,
    server_cpu_us_per_req: Option<f64>,
    bank_cpu_us_per_req: Option<f64>,
    answers_per_flush: Option<f64>,
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
            max_us: self
                .rounds
                .iter()
                .filter_map(Round::max_us)
                .reduce(f64::max),
            errors: self.rounds.iter().map(|r| r.run.errors).sum(),
            server_cpu_us_per_req: med(&|r| r.server_cpu_us_per_req()),
            bank_cpu_us_per_req: med(&|r| r.bank_cpu_us_per_req()),
            answers_per_flush: med(&|r| r.commits.and_then(|c| c.batch())),
            server_faults_per_req: med(&|r| r.server_faults_per_req()),
            server_busy: med(&|r| r.busy(r.server)),
            client_busy: med(&|r| r.busy(r.client)),
        }
    }
}

/// One promote or rollback during scenario S.
#[derive(Debug, Clone)]
struct Swap {
    /// When the call was made.
    at: Instant,
    /// How long the call took.
    took: Duration,
    /// The version it made live.
    to: String,
}

/// What the swaps of one S round did.
#[derive(Debug, Clone, Default)]
struct SwapStats {
    swaps: usize,
    failed_calls: usize,
    /// Per swap: from the call to the first answer by the new version, µs.
    to_first_answer_us: Vec<f64>,
    /// Swaps after which answers came, but none from the new version
    /// before the next swap (swaps after the run's last answer are not
    /// counted at all).
    unobserved: usize,
    /// Per swap: how long the promote/rollback call took, µs.
    call_us: Vec<f64>,
}

impl SwapStats {
    fn of(swaps: &[Swap], failed_calls: usize, seen: &[load::Seen]) -> Self {
        let mut out = Self {
            swaps: swaps.len(),
            failed_calls,
            ..Self::default()
        };
        for (i, swap) in swaps.iter().enumerate() {
            out.call_us.push(swap.took.as_secs_f64() * 1e6);
            let until = swaps.get(i + 1).map(|s| s.at);
            let from = seen.partition_point(|s| s.at < swap.at);
            if from >= seen.len() {
                // Made after the last answer of the run: nothing to observe.
                out.swaps -= 1;
                out.call_us.pop();
                continue;
            }
            let first = seen
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|s| until.is_none_or(|u| s.at < u))
                .find(|s| s.version == swap.to);
            match first {
                Some(s) => out
                    .to_first_answer_us
                    .push(s.at.duration_since(swap.at).as_secs_f64() * 1e6),
                // The last swap may simply have come too close to the end.
                None if until.is_none() => {
                    out.swaps -= 1;
                    out.call_us.pop();
                }
                None => out.unobserved += 1,
            }
        }
        out
    }

    fn median_first_us(&self) -> Option<f64> {
        stats::median(&self.to_first_answer_us)
    }

    fn max_first_us(&self) -> Option<f64> {
        self.to_first_answer_us.iter().copied().reduce(f64::max)
    }

    fn to_json(&self) -> Value {
        json!({
            "swaps": self.swaps,
            "failed_calls": self.failed_calls,
            "unobserved": self.unobserved,
            "promote_to_first_answer_us_median": self.median_first_us(),
            "promote_to_first_answer_us_max": self.max_first_us(),
            "call_us_median": stats::median(&self.call_us),
            "call_us_max": self.call_us.iter().copied().reduce(f64::max),
        })
    }
}

/// The platforms under test, kept alive for the whole run.
struct Platforms {
    /// Cleartext, no auth: B1, B1b, S, B1-404.
    plain: Platform,
    /// Cleartext, biscuit auth: B2, B3, B4.
    authed: Platform,
    /// TLS (self-signed), no auth: T1, T2.
    tls: Platform,
    /// Cleartext, no auth, tracing on at 1% to `sink`: B1o.
    traced: Platform,
    sink: sink::Sink,
    /// Cleartext, biscuit auth, the bank over the REST connector: B3r, B4r.
    rest: Option<Rest>,
    /// Cleartext, biscuit auth, the store on PostgreSQL: B2pg, B4pg.
    pg: Option<(Platform, tempfile::TempDir)>,
    /// The authorising platform's data dir (`demo-client.json`).
    authed_data: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
}

/// The gateway of B3r/B4r and the bank server process it reaches.
struct Rest {
    platform: Platform,
    data: tempfile::TempDir,
    /// Killed when dropped, after the platform has stopped.
    bank: bankproc::BankProcess,
    _bank_data: tempfile::TempDir,
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

    let sfop_bin = match args.sfop.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating sfop-bench")?
            .with_file_name("sfop"),
    };
    let rest_wanted = args.wants(key::B3R) || args.wants(key::B4R);
    let platforms = server_rt.block_on(start_platforms(
        &plugins,
        rest_wanted.then_some(sfop_bin.as_path()),
        args.pg_url.as_deref(),
    ))?;
    let (mut scenarios, bare, hello_body_len, hello_headers) =
        client_rt.block_on(prepare(&args, &platforms, &server_rt))?;

    eprintln!(
        "sfop-bench: {} connections, {}s x {} rounds (+{}s warm-up), server {} worker(s), \
         client {} worker(s), {} CPU(s); hello response {hello_body_len} bytes",
        args.connections,
        args.duration_secs,
        args.rounds,
        args.warmup_secs,
        args.server_threads,
        args.client_threads,
        cpus(),
    );
    let management = platforms.plain.management.clone();
    let swapper = Swapper {
        management,
        every: Duration::from_millis(args.swap_ms),
        runtime: server_rt.handle().clone(),
    };
    let measured = client_rt.block_on(measure(&args, &mut scenarios, &swapper));
    if args.wants(key::B1O) {
        eprintln!(
            "B1o: the OTLP sink received {} export requests",
            platforms
                .sink
                .exports
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    // Stop everything whatever happened; report the measurement error first.
    let stopped = server_rt.block_on(async {
        bare.stop().await?;
        let mut bank_process = None;
        let mut all = vec![
            platforms.plain,
            platforms.authed,
            platforms.tls,
            platforms.traced,
        ];
        if let Some(rest) = platforms.rest {
            all.push(rest.platform);
            bank_process = Some((rest.bank, rest.data, rest._bank_data));
        }
        let mut pg_data = None;
        if let Some((pg, data)) = platforms.pg {
            all.push(pg);
            pg_data = Some(data);
        }
        for platform in all {
            tokio::time::timeout(Duration::from_secs(10), platform.stop())
                .await
                .context("a gateway did not stop within 10 s")??;
        }
        drop(bank_process);
        drop(pg_data);
        Ok::<_, anyhow::Error>(())
    });
    measured?;
    stopped?;
    client_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));

    let report = report_json(&args, &scenarios, hello_body_len, &hello_headers);
    print_table(&scenarios);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

async fn start_platforms(
    plugins: &Path,
    sfop_bin: Option<&Path>,
    pg_url: Option<&str>,
) -> Result<Platforms> {
    // One plugins dir per platform, each with only what it serves.
    let plain_plugins = tempfile::tempdir().context("creating a temp plugins dir")?;
    for name in ["hello", "echo"] {
        mount_plugin(
            &plugins.join("test").join(name),
            &plain_plugins.path().join(name),
        )?;
    }
    mount_plugin(
        &plugins.join("api/bank-status"),
        &plain_plugins.path().join("bank-status"),
    )?;
    mount_plugin(
        &plugins.join("test/spin"),
        &plain_plugins.path().join("spin"),
    )?;
    std::fs::write(plain_plugins.path().join("spin/sfop.toml"), SPIN_MANIFEST)?;
    let authed_plugins = tempfile::tempdir().context("creating a temp plugins dir")?;
    for name in ["bank-status", "account-balance", "transfer-withdraw"] {
        mount_plugin(
            &plugins.join("api").join(name),
            &authed_plugins.path().join(name),
        )?;
    }
    let tls_plugins = tempfile::tempdir().context("creating a temp plugins dir")?;
    mount_plugin(
        &plugins.join("test/hello"),
        &tls_plugins.path().join("hello"),
    )?;

    let (plain_data, authed_data, tls_data) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    let config = |plugins: &Path, data: &Path, tls: TlsMode, auth: AuthMode| Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        plugins: plugins.to_owned(),
        data_dir: data.to_owned(),
        tls: TlsConfig {
            mode: tls,
            ..TlsConfig::default()
        },
        auth: sfop::config::AuthSection {
            mode: auth,
            ..Default::default()
        },
        ..Config::default()
    };
    let plain = sfop::start_with(
        config(
            plain_plugins.path(),
            plain_data.path(),
            TlsMode::Off,
            AuthMode::Off,
        ),
        sfop::Overrides {
            gate: Some(Arc::new(setup::BenchGate)),
            ..Default::default()
        },
    )
    .await?;
    let authed = sfop::start(config(
        authed_plugins.path(),
        authed_data.path(),
        TlsMode::Off,
        AuthMode::Biscuit,
    ))
    .await?;
    let tls = sfop::start(config(
        tls_plugins.path(),
        tls_data.path(),
        TlsMode::SelfSigned,
        AuthMode::Off,
    ))
    .await?;
    // B1o: hello again, tracing on at 1%, exporting to a local sink.
    let sink = sink::Sink::start().await?;
    let traced_data = tempfile::tempdir()?;
    let mut traced_config = config(
        tls_plugins.path(),
        traced_data.path(),
        TlsMode::Off,
        AuthMode::Off,
    );
    traced_config.telemetry.endpoint = Some(format!("http://{}", sink.addr));
    traced_config.telemetry.sampling_ratio = 0.01;
    let traced = sfop::start(traced_config).await?;
    let rest = match sfop_bin {
        Some(sfop_bin) => Some(start_rest(sfop_bin, &authed_plugins).await?),
        None => None,
    };
    let pg = match pg_url {
        Some(admin) => {
            let url = sfop_store_pg::recreate_database(admin, "sfop_bench")
                .await
                .context("--pg-url: making the bench's cluster database")?;
            let data = tempfile::tempdir()?;
            let mut pg_config = config(
                authed_plugins.path(),
                data.path(),
                TlsMode::Off,
                AuthMode::Biscuit,
            );
            pg_config.store.url = Some(url);
            Some((sfop::start(pg_config).await?, data))
        }
        None => None,
    };
    let mut platforms = vec![&plain, &authed, &tls, &traced];
    if let Some(rest) = &rest {
        platforms.push(&rest.platform);
    }
    if let Some((pg, _)) = &pg {
        platforms.push(pg);
    }
    for platform in platforms {
        for package in &platform.packages {
            if let LoadOutcome::Refused { error } = &package.outcome {
                bail!("the gateway refused {}: {error}", package.dir.display());
            }
        }
    }
    // The second version of hello for scenario S: the same component under
    // another version, so S measures the swap and not a different plugin.
    let hello_dir = plugins.join("test/hello");
    let manifest = std::fs::read_to_string(hello_dir.join("sfop.toml"))?;
    let manifest = manifest
        .lines()
        .map(|line| {
            if line.starts_with("version = ") {
                format!("version = \"{SWAP_VERSION}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let component = std::fs::read(hello_dir.join("api.wasm"))?;
    let package = sfop_management::Package::from_parts(manifest, component, None)?;
    let mgmt = &plain.management;
    mgmt.push(package, "bench").await?;
    mgmt.test("hello", &semver::Version::parse(SWAP_VERSION)?, "bench")
        .await?;

    Ok(Platforms {
        plain,
        authed,
        tls,
        traced,
        sink,
        rest,
        pg,
        authed_data,
        _dirs: vec![
            plain_plugins,
            authed_plugins,
            tls_plugins,
            plain_data,
            tls_data,
            traced_data,
        ],
    })
}

/// B3r/B4r: `sfop bank serve` in its own temp data dir, then a gateway
/// like the authorising one whose `[bank]` is that server over HTTPS (its
/// self-signed certificate as `ca`).
async fn start_rest(sfop_bin: &Path, authed_plugins: &tempfile::TempDir) -> Result<Rest> {
    let bank_data = tempfile::tempdir().context("creating the bank's temp data dir")?;
    // One worker: the machine has two cores for client, gateway and bank.
    let bank = bankproc::BankProcess::start(sfop_bin, bank_data.path(), 1)?;
    let data = tempfile::tempdir()?;
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        plugins: authed_plugins.path().to_owned(),
        data_dir: data.path().to_owned(),
        tls: TlsConfig {
            mode: TlsMode::Off,
            ..TlsConfig::default()
        },
        auth: sfop::config::AuthSection {
            mode: AuthMode::Biscuit,
            ..Default::default()
        },
        bank: sfop::bank::BankSection {
            mode: sfop::bank::BankMode::Rest,
            home: Some(sfop::bank::BankServer {
                url: bank.url.clone(),
                ca: Some(bank.cert.clone()),
                client_cert: None,
                client_key: None,
            }),
            ..Default::default()
        },
        ..Config::default()
    };
    let platform = sfop::start(config).await?;
    Ok(Rest {
        platform,
        data,
        bank,
        _bank_data: bank_data,
    })
}

/// Checks every target answers as expected once, starts B0 on the captured
/// hello answer, and lists the scenarios.
async fn prepare(
    args: &Args,
    p: &Platforms,
    server_rt: &Runtime,
) -> Result<(Vec<Scenario>, BareServer, usize, Vec<String>)> {
    let gateway = p.plain.local_addr;
    let hello = Target::get(gateway, HELLO_PATH);
    let (status, headers, body) = load::fetch_once(&hello).await?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 || !text.contains(OK) {
        bail!("GET {HELLO_PATH} answered {status}: {text}");
    }
    let hello_len = body.len();
    let header_names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
    let canned = Canned::new(status, headers, body)?;
    let bare = server_rt.spawn(BareServer::start(canned)).await??;
    let bare_addr = bare.local_addr;

    let fixed = |target: Target, len: usize| Target {
        expect_body_len: Some(len),
        ..target
    };
    let status_open = Target::get(gateway, STATUS_PATH);
    let (s, _, body_open) = load::fetch_once(&status_open).await?;
    if s != 200 {
        bail!("GET {STATUS_PATH} without auth answered {s}");
    }

    let authed = p.authed.local_addr;
    let authed_dir = p.authed_data.path();
    let oob = format!("Bearer {}", setup::oob_token(authed, authed_dir).await?);
    let status_auth = Target {
        authorization: Some(oob),
        ..Target::get(authed, STATUS_PATH)
    };
    let user = setup::bench_user(&p.authed.bank, authed, authed_dir).await?;
    let bearer = format!("Bearer {}", user.access_token);
    let balance = Target {
        authorization: Some(bearer.clone()),
        expect_body_contains: Some(OK.into()),
        ..Target::get(authed, &setup::balance_path(&user.fintech_use_num))
    };
    let withdraw = Target {
        method: hyper::Method::POST,
        body: Some(setup::withdraw_body(&user.fintech_use_num)),
        authorization: Some(bearer),
        expect_body_contains: Some(OK.into()),
        ..Target::get(authed, WITHDRAW_PATH)
    };
    let cert = p
        .tls
        .tls_cert
        .clone()
        .context("the TLS platform has no certificate")?;
    let tls_keepalive = Target {
        transport: Transport::Tls(setup::tls_client(&cert, true)?),
        ..Target::get(p.tls.local_addr, HELLO_PATH)
    };
    let tls_new = Target {
        transport: Transport::Tls(setup::tls_client(&cert, false)?),
        connection_per_request: true,
        ..Target::get(p.tls.local_addr, HELLO_PATH)
    };
    let swap = Target {
        expect_body_len: Some(hello_len),
        record_versions: true,
        ..hello.clone()
    };
    let echo = Target {
        expect_body_contains: Some(OK.into()),
        ..Target::get(gateway, ECHO_PATH)
    };
    let missing = Target {
        expect_status: 404,
        ..Target::get(gateway, MISSING_PATH)
    };

    let mut rest_targets = Vec::new();
    if let Some(rest) = &p.rest {
        let addr = rest.platform.local_addr;
        let user = setup::seeded_user(&rest.platform.bank, addr, rest.data.path()).await?;
        let bearer = format!("Bearer {}", user.access_token);
        rest_targets.push((
            key::B3R,
            "B3r balance, REST bank",
            Target {
                authorization: Some(bearer.clone()),
                expect_body_contains: Some(OK.into()),
                ..Target::get(addr, &setup::balance_path(&user.fintech_use_num))
            },
        ));
        rest_targets.push((
            key::B4R,
            "B4r withdraw, REST bank",
            Target {
                method: hyper::Method::POST,
                body: Some(setup::withdraw_body(&user.fintech_use_num)),
                authorization: Some(bearer),
                expect_body_contains: Some(OK.into()),
                ..Target::get(addr, WITHDRAW_PATH)
            },
        ));
    }
    if let Some((pg, data)) = &p.pg {
        let addr = pg.local_addr;
        let oob = format!("Bearer {}", setup::oob_token(addr, data.path()).await?);
        let user = setup::seeded_user(&pg.bank, addr, data.path()).await?;
        rest_targets.push((
            key::B2PG,
            "B2pg B2, store on PostgreSQL",
            Target {
                authorization: Some(oob),
                ..Target::get(addr, STATUS_PATH)
            },
        ));
        rest_targets.push((
            key::B4PG,
            "B4pg B4, ledger on PostgreSQL",
            Target {
                method: hyper::Method::POST,
                body: Some(setup::withdraw_body(&user.fintech_use_num)),
                authorization: Some(format!("Bearer {}", user.access_token)),
                expect_body_contains: Some(OK.into()),
                ..Target::get(addr, WITHDRAW_PATH)
            },
        ));
    }
    let mut all = vec![
        (
            key::B0,
            "B0 bare hyper",
            fixed(Target::get(bare_addr, HELLO_PATH), hello_len),
        ),
        (key::B1, "B1 gateway, test/hello", fixed(hello, hello_len)),
        (
            key::B1O,
            "B1o B1 + OTel 1% sampled",
            fixed(Target::get(p.traced.local_addr, HELLO_PATH), hello_len),
        ),
        (
            key::B1_STATUS,
            "B1b bank-status, no auth",
            fixed(status_open.clone(), body_open.len()),
        ),
        (key::B2, "B2 bank-status + biscuit", status_auth),
        (key::B3, "B3 balance inquiry", balance),
        (key::B4, "B4 withdraw, durable", withdraw),
    ];
    all.extend(rest_targets);
    all.extend([
        (key::T1, "T1 TLS keep-alive", tls_keepalive),
        (key::T2, "T2 TLS new conn/request", tls_new),
        (key::S, "S hot swap every 250ms", swap),
        (key::B1_ECHO, "B1e gateway, test/echo", echo),
        (
            key::N1,
            "N1 bank-status beside spin",
            fixed(status_open, body_open.len()),
        ),
    ]);
    if !args.no_404 {
        all.push((key::B1_404, "B1-404 gateway, no Wasm", missing));
    }
    let mut scenarios = Vec::new();
    for (key, label, target) in all {
        if !args.wants(key) {
            continue;
        }
        // Every scenario answers as expected before it is measured.
        let (status, _, body) = load::fetch_once(&target).await?;
        let text = String::from_utf8_lossy(&body);
        let body_ok = target
            .expect_body_contains
            .as_deref()
            .is_none_or(|n| text.contains(n));
        if status != target.expect_status || !body_ok {
            bail!(
                "{label}: {} {} answered {status}: {text}",
                target.method,
                target.path
            );
        }
        // B2's body is that of bank-status, learnt here.
        let target = if key == key::B2 {
            fixed(target, body.len())
        } else {
            target
        };
        // N1: the same bank-status while a plugin loops to its CPU
        // deadline on other connections (its calls answer 504).
        let hammer = (key == key::N1).then(|| Target {
            expect_status: 504,
            ..Target::get(gateway, SPIN_PATH)
        });
        let bank = matches!(key, key::B3 | key::B4).then(|| p.authed.bank.clone());
        let bank_pid = p
            .rest
            .as_ref()
            .filter(|_| matches!(key, key::B3R | key::B4R))
            .map(|rest| rest.bank.pid());
        scenarios.push(Scenario {
            key,
            label,
            target,
            hammer,
            bank,
            bank_pid,
            rounds: Vec::new(),
        });
    }
    Ok((scenarios, bare, hello_len, header_names))
}

/// Swaps the hello API between its two versions while scenario S runs.
struct Swapper {
    management: Arc<sfop_management::Management<sfop::EmbeddedPlane>>,
    every: Duration,
    runtime: tokio::runtime::Handle,
}

impl Swapper {
    /// Starts swapping on the server runtime (where the admin API would run
    /// it); stop with the returned flag, then await the handle.
    fn start(&self) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(Vec<Swap>, usize)>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (mgmt, every, flag) = (self.management.clone(), self.every, stop.clone());
        let handle = self.runtime.spawn(async move {
            let (mut swaps, mut failed) = (Vec::new(), 0usize);
            let next = semver::Version::new(0, 2, 0);
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await; // the first tick is immediate
            let mut promote = true;
            while !flag.load(Ordering::Relaxed) {
                ticker.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let at = Instant::now();
                let result = if promote {
                    mgmt.promote("hello", &next, "bench").await
                } else {
                    mgmt.rollback("hello", "bench").await
                };
                let took = at.elapsed();
                match result {
                    Ok(record) => swaps.push(Swap {
                        at,
                        took,
                        to: record.live.map(|v| v.to_string()).unwrap_or_default(),
                    }),
                    Err(e) => {
                        failed += 1;
                        eprintln!("  swap failed: {e:#}");
                    }
                }
                promote = !promote;
            }
            // Leave the bootstrapped version live for the other scenarios.
            if !promote && let Err(e) = mgmt.rollback("hello", "bench").await {
                eprintln!("  final rollback failed: {e:#}");
                failed += 1;
            }
            (swaps, failed)
        });
        (stop, handle)
    }
}

/// Warm-up, then `rounds` rounds over every scenario in turn.
async fn measure(args: &Args, scenarios: &mut [Scenario], swapper: &Swapper) -> Result<()> {
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
            let swapping = (scenario.key == key::S).then(|| swapper.start());
            let hammering = scenario.hammer.clone().map(|hammer| {
                tokio::spawn(async move {
                    load::run(&hammer, SPIN_CONNECTIONS, duration + Duration::from_secs(1)).await
                })
            });
            if hammering.is_some() {
                // The hammer's calls are on the execution pool first.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let commits_before = scenario.bank.as_ref().map(|b| b.commit_stats());
            let bank_before = scenario.bank_pid.and_then(cpu::process);
            let before = cpu::Sample::now();
            let run = load::run(&scenario.target, args.connections, duration).await?;
            let after = cpu::Sample::now();
            let bank_process = scenario
                .bank_pid
                .and_then(cpu::process)
                .zip(bank_before)
                .map(|(now, before)| Usage {
                    cpu_secs: now.cpu_secs - before.cpu_secs,
                    minor_faults: now.minor_faults.saturating_sub(before.minor_faults),
                });
            let commits = scenario
                .bank
                .as_ref()
                .zip(commits_before)
                .map(|(b, before)| CommitRound::between(before, b.commit_stats()));
            if let Some(hammering) = hammering {
                hammering.await.context("the hammer panicked")??;
            }
            let swaps = match swapping {
                Some((stop, handle)) => {
                    stop.store(true, Ordering::Relaxed);
                    let (swaps, failed) = handle.await.context("the swapper panicked")?;
                    Some(SwapStats::of(&swaps, failed, &run.versions))
                }
                None => None,
            };
            let mut round_result = Round {
                server: after.since(&before, "server"),
                server_threads: after.threads_since(&before, "server"),
                client: after.since(&before, "client"),
                run,
                swaps,
                commits,
                bank_process,
            };
            // The versions seen are only needed for the swap statistics.
            round_result.run.versions = Vec::new();
            eprintln!(
                "  round {round}  {:<26} {:>9.0} req/s, p50 {} ms, p99 {} ms, {} errors{}",
                scenario.label,
                round_result.run.requests_per_sec(),
                ms(round_result.p_us(50.0)),
                ms(round_result.p_us(99.0)),
                round_result.run.errors,
                round_result
                    .run
                    .failures
                    .first()
                    .map(|f| format!(" (first: {f})"))
                    .unwrap_or_default(),
            );
            if let Some(c) = round_result.commits.filter(|c| c.flushes > 0) {
                eprintln!(
                    "           group commit: {} flushes for {} durable answers ({:.1} per flush)",
                    c.flushes,
                    c.acknowledged,
                    c.batch().unwrap_or_default(),
                );
            }
            if scenario.bank.is_some() {
                let threads: Vec<String> = round_result
                    .server_threads_us_per_req()
                    .iter()
                    .map(|(prefix, us)| format!("{prefix} {:.0}", us.as_f64().unwrap_or_default()))
                    .collect();
                eprintln!(
                    "           server CPU per request by thread, us: {}",
                    threads.join(", ")
                );
            }
            if let Some(s) = &round_result.swaps {
                eprintln!(
                    "           {} swaps ({} failed calls, {} unobserved), call to first answer: \
                     median {} ms, max {} ms",
                    s.swaps,
                    s.failed_calls,
                    s.unobserved,
                    ms(s.median_first_us()),
                    ms(s.max_first_us()),
                );
            }
            scenario.rounds.push(round_result);
        }
    }
    Ok(())
}

/// Requests/s of scenario `num` over scenario `den`.
fn ratio_of(scenarios: &[Scenario], num: &str, den: &str) -> Option<f64> {
    let rps = |key: &str| scenarios.iter().find(|s| s.key == key)?.summary().rps;
    let (n, d) = (rps(num)?, rps(den)?);
    (d > 0.0).then_some(n / d)
}

/// Server CPU per request of `den` over that of `num`: the requests/s ratio
/// the two would have if the server were the only bottleneck (on a shared
/// machine, steadier than requests/s).
fn cpu_ratio(scenarios: &[Scenario], num: &str, den: &str) -> Option<f64> {
    let cpu = |key: &str| {
        scenarios
            .iter()
            .find(|s| s.key == key)?
            .summary()
            .server_cpu_us_per_req
    };
    let (n, d) = (cpu(num)?, cpu(den)?);
    (n > 0.0).then_some(d / n)
}

/// The ratios of the targets, from server CPU per request.
fn cpu_ratios(scenarios: &[Scenario]) -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("B1/B0", cpu_ratio(scenarios, key::B1, key::B0)),
        ("B2/B1b", cpu_ratio(scenarios, key::B2, key::B1_STATUS)),
        ("T1/B1", cpu_ratio(scenarios, key::T1, key::B1)),
        ("B1o/B1", cpu_ratio(scenarios, key::B1O, key::B1)),
    ]
}

/// p99 of scenario `num` over that of `den`.
fn p99_ratio(scenarios: &[Scenario], num: &str, den: &str) -> Option<f64> {
    let p99 = |key: &str| scenarios.iter().find(|s| s.key == key)?.summary().p99_us;
    let (n, d) = (p99(num)?, p99(den)?);
    (d > 0.0).then_some(n / d)
}

/// The targets of issues 3, 4 and 9: (name, value, target, higher is better).
fn targets(scenarios: &[Scenario]) -> Vec<(&'static str, Option<f64>, f64, bool)> {
    let s_errors = scenarios
        .iter()
        .find(|s| s.key == key::S)
        .map(|s| s.summary().errors as f64);
    vec![
        (
            "B1/B0 req/s",
            ratio_of(scenarios, key::B1, key::B0),
            0.5,
            true,
        ),
        (
            "B2/B1b req/s (auth/no auth)",
            ratio_of(scenarios, key::B2, key::B1_STATUS),
            0.7,
            true,
        ),
        (
            "T1/B1 req/s",
            ratio_of(scenarios, key::T1, key::B1),
            0.85,
            true,
        ),
        (
            "B1o/B1 req/s (tracing 1%)",
            ratio_of(scenarios, key::B1O, key::B1),
            0.95,
            true,
        ),
        ("S failed requests", s_errors, 0.0, false),
        (
            "S p99 / B1 p99",
            p99_ratio(scenarios, key::S, key::B1),
            1.2,
            false,
        ),
        (
            "B4/B3 req/s (durable withdraw)",
            ratio_of(scenarios, key::B4, key::B3),
            0.5,
            true,
        ),
        (
            "N1 p99 / B1b p99 (spin hammered)",
            p99_ratio(scenarios, key::N1, key::B1_STATUS),
            2.0,
            false,
        ),
    ]
}

fn met(value: Option<f64>, target: f64, higher: bool) -> Option<bool> {
    value.map(|v| if higher { v >= target } else { v <= target })
}

fn print_table(scenarios: &[Scenario]) {
    println!();
    println!(
        "{:<27} {:>9} {:>6} {:>8} {:>8} {:>8} {:>6} {:>11} {:>7} {:>8} {:>8}",
        "scenario",
        "req/s",
        "/B0",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "srv CPU/req",
        "flt/req",
        "srv busy",
        "cli busy"
    );
    for scenario in scenarios {
        let s = scenario.summary();
        println!(
            "{:<27} {:>9} {:>6} {:>8} {:>8} {:>8} {:>6} {:>11} {:>7} {:>8} {:>8}",
            scenario.label,
            s.rps.map_or("-".into(), |v| format!("{v:.0}")),
            ratio_of(scenarios, scenario.key, key::B0).map_or("-".into(), |r| format!("{r:.2}")),
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.max_us),
            s.errors,
            s.server_cpu_us_per_req
                .map_or("-".into(), |v| format!("{v:.1} us")),
            s.server_faults_per_req
                .map_or("-".into(), |v| format!("{v:.1}")),
            pct(s.server_busy),
            pct(s.client_busy),
        );
    }
    if let Some(s) = scenarios.iter().find(|s| s.key == key::S) {
        let all: Vec<&SwapStats> = s.rounds.iter().filter_map(|r| r.swaps.as_ref()).collect();
        let firsts: Vec<f64> = all
            .iter()
            .flat_map(|s| s.to_first_answer_us.iter().copied())
            .collect();
        let calls: Vec<f64> = all.iter().flat_map(|s| s.call_us.iter().copied()).collect();
        println!(
            "\nS: {} swaps, {} failed swap calls, {} swaps with no answer seen from the new \
             version; promote/rollback call to first answer by the new version: median {} ms, \
             max {} ms; the call itself: median {} ms, max {} ms",
            all.iter().map(|s| s.swaps).sum::<usize>(),
            all.iter().map(|s| s.failed_calls).sum::<usize>(),
            all.iter().map(|s| s.unobserved).sum::<usize>(),
            ms(stats::median(&firsts)),
            ms(firsts.iter().copied().reduce(f64::max)),
            ms(stats::median(&calls)),
            ms(calls.iter().copied().reduce(f64::max)),
        );
    }
    for scenario in scenarios {
        let s = scenario.summary();
        if let Some(batch) = s.answers_per_flush {
            println!(
                "{}: the virtual bank's group commit made {batch:.1} answers durable per flush \
                 (median over rounds)",
                scenario.label
            );
        }
        if let Some(bank) = s.bank_cpu_us_per_req {
            println!(
                "{}: the bank server process used {bank:.1} us of CPU per request besides the \
                 gateway's srv CPU/req",
                scenario.label
            );
        }
    }
    let rest_ratios: Vec<String> = [
        ("B3r/B0", key::B3R, key::B0),
        ("B4r/B0", key::B4R, key::B0),
        ("B3r/B3", key::B3R, key::B3),
        ("B4r/B4", key::B4R, key::B4),
        ("B4r/B3r", key::B4R, key::B3R),
    ]
    .into_iter()
    .filter_map(|(name, num, den)| Some(format!("{name} {:.3}", ratio_of(scenarios, num, den)?)))
    .collect();
    if !rest_ratios.is_empty() {
        println!("REST bank rows (req/s): {}", rest_ratios.join(", "));
    }
    println!();
    for (name, value, target, higher) in targets(scenarios) {
        let verdict = match met(value, target, higher) {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "n/a",
        };
        println!(
            "{name:<30} {:>8}  (target {} {target}: {verdict})",
            value.map_or("-".into(), |v| format!("{v:.3}")),
            if higher { ">=" } else { "<=" },
        );
    }
    let by_cpu: Vec<String> = cpu_ratios(scenarios)
        .into_iter()
        .map(|(name, r)| format!("{name} {}", r.map_or("-".into(), |r| format!("{r:.3}"))))
        .collect();
    println!(
        "same ratios from server CPU per request (den/num): {}",
        by_cpu.join(", ")
    );
    println!(
        "(medians over rounds, max = worst round, errors summed; srv CPU/req and flt/req = \
         server threads' CPU time and minor page faults per request; busy = CPU cores in use \
         by that side)"
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
                "method": scenario.target.method.as_str(),
                "path": scenario.target.path,
                "tls": matches!(scenario.target.transport, Transport::Tls(_)),
                "connection_per_request": scenario.target.connection_per_request,
                "expect_status": scenario.target.expect_status,
                "median": {
                    "requests_per_sec": s.rps,
                    "p50_us": s.p50_us,
                    "p99_us": s.p99_us,
                    "server_cpu_us_per_req": s.server_cpu_us_per_req,
                    "bank_process_cpu_us_per_req": s.bank_cpu_us_per_req,
                    "group_commit_answers_per_flush": s.answers_per_flush,
                    "server_minor_faults_per_req": s.server_faults_per_req,
                    "server_cores_busy": s.server_busy,
                    "client_cores_busy": s.client_busy,
                },
                "max_us": s.max_us,
                "ratio_to_b0": ratio_of(scenarios, scenario.key, key::B0),
                "errors": s.errors,
                "rounds": scenario.rounds.iter().map(Round::to_json).collect::<Vec<_>>(),
            });
            (scenario.key.to_owned(), value)
        })
        .collect();
    let targets_json: Vec<Value> = targets(scenarios)
        .into_iter()
        .map(|(name, value, target, higher)| {
            json!({
                "name": name,
                "value": value,
                "target": target,
                "higher_is_better": higher,
                "met": met(value, target, higher),
            })
        })
        .collect();
    json!({
        "bench": "sfop gateway overhead (issue 9)",
        "machine": {
            "cpus": cpus(),
            "cpu_model": cpu_model(),
        },
        "config": {
            "connections": args.connections,
            "duration_secs": args.duration_secs,
            "warmup_secs": args.warmup_secs,
            "rounds": args.rounds,
            "server_threads": args.server_threads,
            "client_threads": args.client_threads,
            "swap_ms": args.swap_ms,
            "b0_response_body_bytes": body_len,
            "b0_response_headers": header_names,
        },
        "scenarios": scenarios_json,
        "ratios": {
            "b1_over_b0": ratio_of(scenarios, key::B1, key::B0),
            "b2_over_b1b": ratio_of(scenarios, key::B2, key::B1_STATUS),
            "t1_over_b1": ratio_of(scenarios, key::T1, key::B1),
            "t2_over_b1": ratio_of(scenarios, key::T2, key::B1),
            "s_over_b1": ratio_of(scenarios, key::S, key::B1),
            "s_p99_over_b1_p99": p99_ratio(scenarios, key::S, key::B1),
            "n1_p99_over_b1b_p99": p99_ratio(scenarios, key::N1, key::B1_STATUS),
            "b3_over_b0": ratio_of(scenarios, key::B3, key::B0),
            "b4_over_b0": ratio_of(scenarios, key::B4, key::B0),
            "b4_over_b3": ratio_of(scenarios, key::B4, key::B3),
            "b3r_over_b0": ratio_of(scenarios, key::B3R, key::B0),
            "b4r_over_b0": ratio_of(scenarios, key::B4R, key::B0),
            "b3r_over_b3": ratio_of(scenarios, key::B3R, key::B3),
            "b4r_over_b4": ratio_of(scenarios, key::B4R, key::B4),
            "b4r_over_b3r": ratio_of(scenarios, key::B4R, key::B3R),
            "b2pg_over_b2": ratio_of(scenarios, key::B2PG, key::B2),
            "b4pg_over_b4": ratio_of(scenarios, key::B4PG, key::B4),
        },
        "targets": targets_json,
        "cpu_ratios": cpu_ratios(scenarios)
            .into_iter()
            .map(|(name, r)| (name.to_owned(), json!(r)))
            .collect::<serde_json::Map<String, Value>>(),
    })
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

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

fn ms(us: Option<f64>) -> String {
    us.map_or("-".into(), |us| format!("{:.3}", us / 1000.0))
}

fn pct(fraction: Option<f64>) -> String {
    fraction.map_or("-".into(), |f| format!("{:.0}%", f * 100.0))
}
