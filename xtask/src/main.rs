//! sfop's build automation: `cargo xtask <task>`, the one entry point a
//! newcomer and CI both use.

mod guest;
mod layers;
mod portal_tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "sfop build automation", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make the Wasm guest toolchain available (rustup target, or Debian's
    /// rustc-web fallback). Idempotent and quiet when already done.
    Setup,
    /// Build every guest crate under plugins/ into validated components in
    /// target/sfop-plugins/{api,test}/<name>/.
    BuildPlugins,
    /// Set up, build the plugins and run the platform with its embedded
    /// defaults (release build). Extra arguments go to `sfop serve`.
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Everything CI does: setup, build-plugins, fmt, clippy, dependency
    /// rules, the portal's test tools, tests.
    Ci,
    /// Install what the developer portal's acceptance tests use: headless
    /// Chromium and chromedriver (Debian), selenium and
    /// openapi-spec-validator (PyPI). Idempotent; part of `ci`.
    PortalTestTools,
    /// Check the crate dependency rules (data plane never depends on the
    /// control plane; sled, wasmtime and biscuit-auth each in one crate).
    Layers,
    /// Build the plugins, then measure the gateway against a bare hyper
    /// server in one run (B0-B4, T1, T2, S; release build); prints the table
    /// and writes target/bench/gateway.json. Extra arguments go to
    /// `sfop-bench` (e.g. `-- --connections 64`, `-- --only b1_,s_`).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the plugins, then run the criterion micro-benchmarks
    /// (instantiate+call, token verification, durable ledger commit).
    /// Extra arguments go to criterion (e.g. a name filter: `-- ledger`).
    BenchMicro {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root()?;
    match cli.task {
        Task::Setup => guest::setup(&root).map(|_| ()),
        Task::BuildPlugins => guest::build_plugins(&root).map(|_| ()),
        Task::Serve { args } => serve(&root, &args),
        Task::Ci => ci(&root),
        Task::Layers => layers::check(&root),
        Task::PortalTestTools => portal_tools::install(),
        Task::Bench { args } => bench(&root, &args),
        Task::BenchMicro { args } => bench_micro(&root, &args),
    }
}

fn project_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask must live one level below the project root")
}

fn serve(root: &Path, args: &[String]) -> Result<()> {
    guest::build_plugins(root)?;
    let plugins = root.join("target/sfop-plugins/api");
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--release",
        "--locked",
        "--package",
        "sfop",
        "--",
        "serve",
    ])
    .arg("--plugins")
    .arg(&plugins)
    .args(args);
    run(&mut cmd)
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    guest::build_plugins(root)?;
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--release",
        "--locked",
        "--package",
        "sfop-bench",
        "--",
    ])
    .args(args);
    run(&mut cmd)
}

fn bench_micro(root: &Path, args: &[String]) -> Result<()> {
    guest::build_plugins(root)?;
    let mut cmd = cargo(root);
    cmd.args([
        "bench",
        "--locked",
        "--package",
        "sfop-bench",
        "--bench",
        "micro",
        "--",
    ])
    .args(args);
    run(&mut cmd)
}

fn ci(root: &Path) -> Result<()> {
    let plugins_manifest = root.join("plugins/Cargo.toml");
    step("formatting (host and guest workspaces)");
    run(cargo(root).args(["fmt", "--all", "--check"]))?;
    run(cargo(root)
        .args(["fmt", "--all", "--check", "--manifest-path"])
        .arg(&plugins_manifest))?;

    step("dependency rules");
    layers::check(root)?;

    // Plugins first: the host's tests load them.
    guest::build_plugins(root)?;

    step("clippy (host workspace)");
    run(cargo(root).args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy (guest workspace)");
    let toolchain = guest::setup(root)?;
    toolchain.clippy(root)?;

    step("tests (guest SDK, natively)");
    run(cargo(root)
        .args(["test", "--locked", "--manifest-path"])
        .arg(&plugins_manifest)
        .args(["--package", "sfop-sdk"]))?;

    // The portal's tests validate its OpenAPI and drive a real browser.
    portal_tools::install()?;

    step("tests (host workspace)");
    run(cargo(root).args(["test", "--locked", "--workspace"]))?;
    Ok(())
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// `cargo` as invoked by this xtask (the same toolchain).
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
