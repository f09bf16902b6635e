//! The sfop testbed: runs a candidate API package in isolation (static
//! checks, conformance against a fresh seeded virtual bank through the real
//! gateway, malformed inputs, a resource budget, compatibility with the live
//! version), reports every check under a stable rule id, and signs an
//! attestation bound to the package's bytes when all pass.
//!
//! ```ignore
//! let package = Package::read_dir(dir)?;
//! let signer = AttestationSigner::open_or_create(&data_dir.join("testbed"))?;
//! let (report, attestation) = run_and_attest(&package, &RunOptions::default(), &signer).await?;
//! // later, before promotion or loading:
//! verify(&attestation?, &[signer.public_key()], &package)?;
//! ```

mod answer;
pub mod attestation;
mod bench;
mod call;
pub mod cases;
mod compat;
mod conformance;
pub mod package;
pub mod report;
mod robustness;
pub mod statics;
mod upstreams;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use attestation::{
    Attestation, AttestationError, AttestationSigner, TrustedKey, verify, verify_dir,
};
pub use cases::{Case, Cases, Expect};
pub use package::{Package, PackageError};
pub use report::{CheckResult, FieldDiff, Outcome, Phase, Report, Verdict};
/// Scripted faults live with the virtual bank, which the running platform's
/// sandbox shares; the testbed registers them per case.
pub use sfop_vbank::faults::{self, FaultKind, FaultRule, FaultScript, Fixture, ScriptedBank};

/// The version of this testbed, as reports and attestations name it.
pub const TESTBED_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a run could not be made at all (as opposed to a package failing it).
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("testbed environment: {0}")]
    Bench(String),
    #[error(transparent)]
    Attestation(#[from] AttestationError),
}

/// Called with every check as soon as it is decided (CLI progress).
pub type Progress = Arc<dyn Fn(&CheckResult) + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// The live version of the same API, for the compatibility checks.
    pub live: Option<Package>,
    /// Where the run's temporary store goes; the system temp dir when `None`.
    /// Removed when the run ends.
    pub scratch_dir: Option<PathBuf>,
    /// Calls of the load check (at most; it also stops at `load_time`).
    pub load_requests: usize,
    /// Concurrent callers of the load check.
    pub load_concurrency: usize,
    /// Longest the load check runs.
    pub load_time: Duration,
    /// Progress callback.
    pub progress: Option<Progress>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("live", &self.live.as_ref().map(Package::label))
            .field("scratch_dir", &self.scratch_dir)
            .field("load_requests", &self.load_requests)
            .field("load_concurrency", &self.load_concurrency)
            .field("load_time", &self.load_time)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            live: None,
            scratch_dir: None,
            load_requests: 200,
            load_concurrency: 4,
            load_time: Duration::from_secs(10),
            progress: None,
        }
    }
}

/// Collects check results and reports progress.
pub(crate) struct Log {
    pub checks: Vec<CheckResult>,
    progress: Option<Progress>,
}

impl Log {
    pub fn push(&mut self, check: CheckResult) {
        if let Some(p) = &self.progress {
            p(&check);
        }
        self.checks.push(check);
    }

    pub fn failed(&self, rule: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.rule == rule && c.outcome == Outcome::Fail)
    }
}

/// Runs every check on `package` and returns the report. `Err` only when
/// the testbed itself could not run (no temp dir, no port); a package that
/// fails checks gets a report with verdict `fail`.
pub async fn run(package: &Package, options: &RunOptions) -> Result<Report, TestbedError> {
    let started_at = sfop_core::time::now_millis();
    let clock = Instant::now();
    let mut log = Log {
        checks: Vec::new(),
        progress: options.progress.clone(),
    };

    let statics = statics::check(package);
    for c in statics.checks {
        log.push(c);
    }

    let scratch = match &options.scratch_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| TestbedError::Bench(format!("{}: {e}", dir.display())))?;
            tempfile::Builder::new()
                .prefix("sfop-testbed-")
                .tempdir_in(dir)
        }
        None => tempfile::Builder::new().prefix("sfop-testbed-").tempdir(),
    }
    .map_err(|e| TestbedError::Bench(format!("creating a scratch dir: {e}")))?;
    let mut bench = bench::Bench::open(&scratch.path().join("store"))?;

    let loaded = if statics.ok {
        match bench.load(package) {
            Ok(api) => {
                log.push(CheckResult::pass(
                    "STATIC-LOAD",
                    Phase::Static,
                    "loads in the runtime",
                    "compiled and linked with the manifest's grants",
                ));
                Some(api)
            }
            Err(e) => {
                log.push(CheckResult::fail(
                    "STATIC-LOAD",
                    Phase::Static,
                    "loads in the runtime",
                    e,
                ));
                None
            }
        }
    } else {
        log.push(CheckResult::skip(
            "STATIC-LOAD",
            Phase::Static,
            "loads in the runtime",
            "static checks failed",
        ));
        None
    };

    match loaded {
        Some(api) => {
            let candidate = bench.serve(api).await?;
            conformance::run(
                &bench,
                candidate,
                package,
                &statics.ledger_functions,
                &mut log,
            )
            .await;
            robustness::run(&bench, candidate, package, &mut log).await;
            robustness::budget(&bench, candidate, package, options, &mut log).await;
            match &options.live {
                Some(live) => compat::run(&mut bench, candidate, package, live, &mut log).await?,
                None => log.push(CheckResult::skip(
                    "COMPAT-SEMVER",
                    Phase::Compatibility,
                    "compatibility with the live version",
                    "no live version given",
                )),
            }
        }
        None => {
            for (rule, phase) in [
                ("CONF-CASE", Phase::Conformance),
                ("ROB-NO-FAULT", Phase::Robustness),
                ("RES-LATENCY", Phase::Budget),
                ("COMPAT-SEMVER", Phase::Compatibility),
            ] {
                log.push(CheckResult::skip(
                    rule,
                    phase,
                    phase.as_str(),
                    "the package does not load",
                ));
            }
        }
    }
    bench.close().await;
    drop(scratch);

    let mut report = Report {
        format: report::REPORT_FORMAT.into(),
        api: package.manifest.name.clone(),
        version: package.manifest.version.to_string(),
        component_sha256: package.component_sha256(),
        manifest_sha256: package.manifest_sha256(),
        testbed_version: TESTBED_VERSION.into(),
        live: options.live.as_ref().map(Package::label),
        started_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        verdict: Verdict::Fail,
        checks: log.checks,
    };
    report.decide();
    Ok(report)
}

/// [`run`], then, when the verdict is pass, an attestation signed by `signer`.
pub async fn run_and_attest(
    package: &Package,
    options: &RunOptions,
    signer: &AttestationSigner,
) -> Result<(Report, Option<Attestation>), TestbedError> {
    let report = run(package, options).await?;
    let attestation = if report.passed() {
        Some(signer.sign(package, &report)?)
    } else {
        None
    };
    Ok((report, attestation))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(Report, Option<Attestation>), TestbedError>;
    type SendFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;

    /// The management center runs the testbed inside boxed `Send` futures
    /// (its promotion gate); this stops compiling if a run stops being `Send`.
    #[allow(dead_code)]
    fn runs_are_send<'a>(
        package: &'a Package,
        options: &'a RunOptions,
        signer: &'a AttestationSigner,
    ) -> SendFuture<'a> {
        Box::pin(run_and_attest(package, options, signer))
    }

    #[test]
    fn signer_and_keys_are_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<AttestationSigner>();
        shareable::<TrustedKey>();
        shareable::<RunOptions>();
    }
}
