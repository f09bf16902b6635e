//! The testbed as the management center's promotion gate: runs
//! `sfop-testbed` on a candidate (against the live version when there is
//! one), signs the verdict with the platform's testbed key, and verifies
//! attestations against the keys this platform trusts.

use std::path::{Path, PathBuf};

use sfop_management::{Gate, GateError, GateFuture, Package, Verdict};
use sfop_testbed::{Attestation, AttestationSigner, RunOptions, TrustedKey};

/// The embedded testbed.
#[derive(Debug)]
pub struct TestbedGate {
    signer: AttestationSigner,
    trusted: Vec<TrustedKey>,
    scratch: PathBuf,
}

impl TestbedGate {
    /// The signing key lives in `data_dir/testbed/` (created on first use),
    /// the key `sfop testbed run --data-dir` uses too; only it is trusted.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("testbed");
        let signer = AttestationSigner::open_or_create(&dir)?;
        Ok(Self {
            trusted: vec![signer.public_key()],
            signer,
            scratch: dir.join("scratch"),
        })
    }
}

impl Gate for TestbedGate {
    fn test<'a>(&'a self, candidate: &'a Package, live: Option<&'a Package>) -> GateFuture<'a> {
        Box::pin(async move {
            let options = RunOptions {
                live: live.cloned(),
                scratch_dir: Some(self.scratch.clone()),
                ..RunOptions::default()
            };
            let (report, attestation) =
                sfop_testbed::run_and_attest(candidate, &options, &self.signer)
                    .await
                    .map_err(|e| GateError::Internal(e.into()))?;
            Ok(Verdict {
                passed: report.passed(),
                report: serde_json::to_value(&report).map_err(|e| GateError::Internal(e.into()))?,
                report_html: report.to_html_fragment(),
                attestation: attestation
                    .map(|a| String::from_utf8_lossy(&a.to_json()).into_owned()),
            })
        })
    }

    /// An attestation that does not read or does not vouch for `package`
    /// is refused.
    fn verify(&self, attestation: &str, package: &Package) -> Result<(), GateError> {
        let attestation = Attestation::from_json(attestation.as_bytes())
            .map_err(|e| GateError::Refused(e.into()))?;
        sfop_testbed::verify(&attestation, &self.trusted, package)
            .map_err(|e| GateError::Refused(e.into()))
    }
}
