//! Issue 7: the testbed. Every reference API passes; each acceptance package
//! under `plugins/tests/tb-*` (and `undeclared-import`) breaks exactly one
//! rule and is rejected with a report naming it; attestations bind the exact
//! bytes and are refused when tampered with, about other bytes, or missing.
//! Real components, a real sled store and the real gateway on 127.0.0.1:0.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sfop_testbed::attestation::verify_dir;
use sfop_testbed::{
    AttestationError, AttestationSigner, Outcome, Package, Report, RunOptions, run, run_and_attest,
    verify,
};

use crate::harness::built_plugins;

fn package(group_and_name: &str) -> Result<Package> {
    let dir = built_plugins()?.join(group_and_name);
    Package::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))
}

/// The failures of a report, for assertion messages.
fn failures(report: &Report) -> String {
    report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| format!("\n  {} {}: {}", c.rule, c.name, c.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_api_passes_within_a_minute() -> Result<()> {
    let api = built_plugins()?.join("api");
    let mut names: Vec<String> = std::fs::read_dir(&api)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    ensure!(
        names.len() >= 12,
        "expected the 12 reference APIs, found {names:?}"
    );
    for name in names {
        let package = package(&format!("api/{name}"))?;
        ensure!(
            package.cases_text.is_some(),
            "{name} ships no testbed.toml next to its component"
        );
        let started = Instant::now();
        let report = run(&package, &RunOptions::default()).await?;
        let took = started.elapsed();
        assert!(report.passed(), "{name} failed:{}", failures(&report));
        assert!(took.as_secs() < 60, "{name}: a full run took {took:?}");
        // Its own cases ran.
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.rule == "CONF-CASE" && c.name.starts_with("case: ")),
            "{name}: no own case in the report"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_acceptance_package_is_rejected_naming_its_one_rule() -> Result<()> {
    let cases = [
        ("test/undeclared-import", "STATIC-IMPORTS"),
        ("test/tb-inquiry-withdraws", "STATIC-KIND"),
        ("test/tb-wrong-field", "CONF-FIELDS"),
        ("test/tb-http500", "CONF-BIZ-200"),
        ("test/tb-trap-malformed", "ROB-NO-FAULT"),
        ("test/tb-busy-loop", "RES-RUNAWAY"),
    ];
    let signer_dir = tempfile::tempdir()?;
    let signer = AttestationSigner::open_or_create(signer_dir.path())?;
    for (name, rule) in cases {
        let package = package(name)?;
        let (report, attestation) =
            run_and_attest(&package, &RunOptions::default(), &signer).await?;
        assert!(!report.passed(), "{name} passed");
        assert!(attestation.is_none(), "{name} got an attestation");
        assert_eq!(
            report.failed_rules(),
            BTreeSet::from([rule]),
            "{name} should fail exactly {rule}:{}",
            failures(&report)
        );
        // The rule is named in what the portal and the CLI show.
        let json = String::from_utf8(report.to_json())?;
        assert!(json.contains(rule) && json.contains("\"verdict\": \"fail\""));
        assert!(report.to_html().contains(rule));
        assert!(report.summary_table().contains(rule));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaking_change_needs_a_major_bump() -> Result<()> {
    let live = package("api/bank-status")?;
    let candidate = package("test/tb-breaking-minor")?;
    let options = RunOptions {
        live: Some(live.clone()),
        ..RunOptions::default()
    };
    let report = run(&candidate, &options).await?;
    let failed = report.failed_rules();
    assert!(failed.contains("COMPAT-SEMVER"), "{}", failures(&report));
    assert!(
        failed.is_subset(&BTreeSet::from(["COMPAT-SEMVER", "COMPAT-REPLAY"])),
        "only compatibility may fail:{}",
        failures(&report)
    );
    let semver = report
        .checks
        .iter()
        .find(|c| c.rule == "COMPAT-SEMVER")
        .context("COMPAT-SEMVER row")?;
    assert!(semver.detail.contains("minor bump"), "{}", semver.detail);
    assert!(
        semver
            .diff
            .iter()
            .any(|d| d.path == "response field res_list[].bank_status"
                && d.change.starts_with("removed")),
        "{:?}",
        semver.diff
    );
    // The replay shows the same change, field by field.
    let replay = report
        .checks
        .iter()
        .find(|c| c.rule == "COMPAT-REPLAY")
        .context("COMPAT-REPLAY row")?;
    assert!(
        replay
            .diff
            .iter()
            .any(|d| d.path == "res_list[0].bank_status" && d.change == "removed"),
        "{:?}",
        replay.diff
    );
    assert!(report.to_html().contains("res_list[0].bank_status"));

    // The same bytes under a major version are a legitimate successor.
    let major = Package::from_parts(
        candidate
            .manifest_text
            .replace("version = \"1.1.0\"", "version = \"2.0.0\""),
        candidate.component.clone(),
        None,
    )?;
    let report = run(&major, &options).await?;
    assert!(report.passed(), "2.0.0 should pass:{}", failures(&report));

    // A candidate that is not a successor at all.
    let older = run(
        &live,
        &RunOptions {
            live: Some(live.clone()),
            ..RunOptions::default()
        },
    )
    .await?;
    assert!(older.failed_rules().contains("COMPAT-VERSION"));
    Ok(())
}

/// A copy of a built package in `dir`.
fn copy_package(from: &str, dir: &Path) -> Result<PathBuf> {
    let src = built_plugins()?.join(from);
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&src)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    Ok(dir.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_bind_the_exact_bytes() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let signer = AttestationSigner::open_or_create(keys.path())?;
    // The same key on reopening, stored owner-only.
    assert_eq!(
        AttestationSigner::open_or_create(keys.path())?.public_key(),
        signer.public_key()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.path().join("testbed-signing.key"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let trusted = [signer.public_key()];
    // What operators copy to gateways and management centers.
    assert_eq!(
        sfop_testbed::TrustedKey::read_file(&keys.path().join("testbed-signing.pub.json"))?,
        trusted
    );
    let package = package("api/bank-status")?;
    let (report, attestation) = run_and_attest(&package, &RunOptions::default(), &signer).await?;
    let attestation =
        attestation.with_context(|| format!("no attestation:{}", failures(&report)))?;
    assert_eq!(attestation.format, "sfop-attestation/1");
    assert_eq!(attestation.wit_world, "sfop:platform/api@0.2.0");
    assert_eq!(attestation.component_sha256, package.component_sha256());
    assert_eq!(
        attestation.report_sha256,
        sfop_testbed::package::sha256_hex(&report.to_json())
    );
    verify(&attestation, &trusted, &package)?;
    // Round trip through the JSON document.
    let parsed = sfop_testbed::Attestation::from_json(&attestation.to_json())?;
    verify(&parsed, &trusted, &package)?;

    let refused = |a: &sfop_testbed::Attestation,
                   p: &Package,
                   keys: &[sfop_testbed::TrustedKey]| {
        match verify(a, keys, p) {
            Ok(()) => panic!("accepted"),
            Err(e) => e,
        }
    };
    // Tampered: any signed field changed.
    let tampers: [fn(&mut sfop_testbed::Attestation); 4] = [
        |a: &mut sfop_testbed::Attestation| a.version = "9.9.9".into(),
        |a: &mut sfop_testbed::Attestation| a.component_sha256 = "00".repeat(32),
        |a: &mut sfop_testbed::Attestation| a.issued_at += 1,
        |a: &mut sfop_testbed::Attestation| a.signature = "00".repeat(64),
    ];
    for tamper in tampers {
        let mut bad = attestation.clone();
        tamper(&mut bad);
        let e = refused(&bad, &package, &trusted);
        assert!(matches!(e, AttestationError::BadSignature(_)), "{e}");
        assert!(e.to_string().contains("altered"), "{e}");
    }
    // For other bytes: the component or the manifest differs.
    let mut other_component = package.clone();
    other_component.component.push(0);
    let e = refused(&attestation, &other_component, &trusted);
    assert!(e.to_string().contains("attestation for other bytes"), "{e}");
    assert!(e.to_string().contains("component"), "{e}");
    let other_manifest = Package::from_parts(
        format!("{}\n# edited\n", package.manifest_text),
        package.component.clone(),
        None,
    )?;
    let e = refused(&attestation, &other_manifest, &trusted);
    assert!(e.to_string().contains("manifest"), "{e}");
    // Signed by a key nobody trusts.
    let stranger = AttestationSigner::open_or_create(&keys.path().join("stranger"))?;
    let e = refused(&attestation, &package, &[stranger.public_key()]);
    assert!(matches!(e, AttestationError::UnknownKey { .. }), "{e}");
    // Another API's attestation.
    let balance = Package::read_dir(&built_plugins()?.join("api/account-balance"))?;
    let e = refused(&attestation, &balance, &trusted);
    assert!(e.to_string().contains("bank-status@1.0.0"), "{e}");

    // Missing: a package folder without attestation.json.
    let dir = tempfile::tempdir()?;
    let folder = copy_package("api/bank-status", &dir.path().join("bank-status"))?;
    match verify_dir(&folder, &trusted) {
        Err(AttestationError::Missing(why)) => assert!(why.contains("attestation.json"), "{why}"),
        other => panic!("expected Missing, got {other:?}"),
    }
    std::fs::write(folder.join("attestation.json"), attestation.to_json())?;
    verify_dir(&folder, &trusted)?;
    // The folder's component swapped for another API's: refused.
    std::fs::copy(
        built_plugins()?.join("api/user-me/api.wasm"),
        folder.join("api.wasm"),
    )?;
    let e = verify_dir(&folder, &trusted)
        .err()
        .context("accepted swapped bytes")?;
    assert!(e.to_string().contains("attestation for other bytes"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_reports_and_exits_non_zero_on_failure() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cli = |package: &Path, out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sfop"))
            .args(["testbed", "run"])
            .arg(package)
            .arg("--out")
            .arg(out)
            .arg("--data-dir")
            .arg(&data)
            .output()
    };
    let good = copy_package("api/account-balance", &dir.path().join("good"))?;
    let out = cli(&good, &dir.path().join("good-out"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("verdict: PASS") && stdout.contains("STATIC-IMPORTS"),
        "{stdout}"
    );
    for file in ["report.json", "report.html", "attestation.json"] {
        assert!(
            dir.path().join("good-out").join(file).is_file(),
            "{file} missing"
        );
    }
    // The attestation the CLI wrote verifies with the key in DATA_DIR/testbed.
    let signer = AttestationSigner::open_or_create(&data.join("testbed"))?;
    let attestation = sfop_testbed::Attestation::read_dir(&dir.path().join("good-out"))?;
    verify(
        &attestation,
        &[signer.public_key()],
        &Package::read_dir(&good)?,
    )?;

    let bad = copy_package("test/tb-wrong-field", &dir.path().join("bad"))?;
    let out = cli(&bad, &bad)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed rules: CONF-FIELDS"), "{stdout}");
    assert!(bad.join("report.html").is_file());
    assert!(!bad.join("attestation.json").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_cases_and_declared_budgets_are_held_to() -> Result<()> {
    let bank_status = package("api/bank-status")?;
    // A case whose expectation the API does not meet.
    let wrong_case = Package::from_parts(
        bank_status.manifest_text.clone(),
        bank_status.component.clone(),
        Some(
            "[[case]]\nname = \"nine banks\"\n[case.expect]\nfields = { res_cnt = \"9\" }\n".into(),
        ),
    )?;
    let report = run(&wrong_case, &RunOptions::default()).await?;
    assert_eq!(
        report.failed_rules(),
        BTreeSet::from(["CONF-CASE"]),
        "{}",
        failures(&report)
    );
    let row = report
        .checks
        .iter()
        .find(|c| c.name == "case: nine banks")
        .context("the case's row")?;
    assert!(
        row.detail.contains("res_cnt is \"8\", expected \"9\""),
        "{}",
        row.detail
    );

    // A memory budget below what the component needs (its initial memory
    // alone is over 1 MiB).
    let tight = Package::from_parts(
        format!("{}\n[budget]\nmemory_mib = 1\n", bank_status.manifest_text),
        bank_status.component.clone(),
        None,
    )?;
    let report = run(&tight, &RunOptions::default()).await?;
    assert_eq!(
        report.failed_rules(),
        BTreeSet::from(["RES-MEMORY"]),
        "{}",
        failures(&report)
    );
    Ok(())
}
