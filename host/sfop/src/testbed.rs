//! `sfop testbed run <package-dir>`: runs the testbed on a package folder,
//! prints each check as it is decided and a summary table, and writes
//! `report.json`, `report.html` and, on pass, `attestation.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use sfop_testbed::{AttestationSigner, Outcome, Package, RunOptions};

/// The testbed's commands.
#[derive(Debug, Subcommand)]
pub enum TestbedCommand {
    /// Check a package (a folder with sfop.toml, api.wasm and optionally
    /// testbed.toml) and, on pass, sign an attestation for it.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The candidate package folder.
    pub package: PathBuf,
    /// The live version's package folder, for the compatibility checks.
    #[arg(long)]
    pub live: Option<PathBuf>,
    /// Where to write report.json, report.html and attestation.json
    /// [default: the package folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The platform's data dir; the signing key is DATA_DIR/testbed/.
    #[arg(long, env = "SFOP_DATA_DIR", default_value = "sfop-data")]
    pub data_dir: PathBuf,
}

/// Runs a testbed command; `Ok(false)` when the package failed.
pub async fn run(command: TestbedCommand) -> anyhow::Result<bool> {
    match command {
        TestbedCommand::Run(args) => run_package(&args).await,
    }
}

async fn run_package(args: &RunArgs) -> anyhow::Result<bool> {
    let package = Package::read_dir(&args.package)
        .with_context(|| format!("reading the package {}", args.package.display()))?;
    let live = args
        .live
        .as_deref()
        .map(|dir| {
            Package::read_dir(dir)
                .with_context(|| format!("reading the live package {}", dir.display()))
        })
        .transpose()?;
    let signer = AttestationSigner::open_or_create(&args.data_dir.join("testbed"))?;
    let out = args.out.clone().unwrap_or_else(|| args.package.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    println!(
        "testbed: {} (component sha256 {}){}",
        package.label(),
        package.component_sha256(),
        live.as_ref()
            .map(|l| format!(", live {}", l.label()))
            .unwrap_or_default()
    );
    let options = RunOptions {
        live,
        scratch_dir: Some(args.data_dir.join("testbed/scratch")),
        progress: Some(Arc::new(|c: &sfop_testbed::CheckResult| {
            let mark = match c.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            let mut detail: String = c.detail.chars().take(160).collect();
            if c.detail.chars().count() > 160 {
                detail.push('…');
            }
            println!(
                "  [{:<13}] {mark} {:<15} {}: {detail}",
                c.phase.as_str(),
                c.rule,
                c.name
            );
            let _ = std::io::stdout().flush();
        })),
        ..RunOptions::default()
    };
    let (report, attestation) = sfop_testbed::run_and_attest(&package, &options, &signer).await?;
    println!("\n{}", report.summary_table());

    write(&out.join("report.json"), &report.to_json())?;
    write(&out.join("report.html"), report.to_html().as_bytes())?;
    let attestation_path = out.join(sfop_testbed::package::ATTESTATION_FILE);
    match attestation {
        Some(a) => {
            write(&attestation_path, &a.to_json())?;
            println!(
                "attestation: {} (key {})",
                attestation_path.display(),
                a.key_id
            );
        }
        None => {
            // A stale attestation next to a failing package must not survive.
            if attestation_path.exists() {
                std::fs::remove_file(&attestation_path)
                    .with_context(|| format!("removing {}", attestation_path.display()))?;
            }
            println!(
                "failed rules: {}",
                report
                    .failed_rules()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    println!("report: {}", out.join("report.html").display());
    Ok(report.passed())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
