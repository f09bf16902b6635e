//! The example's journey against a real platform started in-process: HTTPS
//! with a self-signed certificate, biscuit tokens, every reference API built
//! by `cargo xtask build-plugins`, the virtual bank in a temp dir. So the
//! example cannot rot.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use payment_app::{AppCredentials, DEFAULT_QR, DEMO_CONTRACT_ACCOUNT, Options};
use sfop::{AuthMode, Config, Platform, TlsMode};
use tempfile::TempDir;

fn built_apis() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sfop-plugins/api");
    if !dir.join("transfer-withdraw/api.wasm").is_file() {
        bail!(
            "plugins are not built in {}: run `cargo xtask build-plugins` (or `cargo xtask ci`)",
            dir.display()
        );
    }
    Ok(dir)
}

async fn platform() -> Result<(Platform, TempDir)> {
    let data = tempfile::tempdir()?;
    let platform = sfop::start(Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        plugins: built_apis()?,
        data_dir: data.path().to_owned(),
        tls: sfop::config::TlsConfig {
            mode: TlsMode::SelfSigned,
            ..Default::default()
        },
        auth: sfop::config::AuthSection {
            mode: AuthMode::Biscuit,
            ..Default::default()
        },
        ..Config::default()
    })
    .await?;
    for p in &platform.packages {
        if let sfop::LoadOutcome::Refused { error } = &p.outcome {
            bail!("package {} refused: {error}", p.dir.display());
        }
    }
    Ok((platform, data))
}

/// What `cargo run -p sfop-example-payment-app -- --url URL --data-dir DIR` builds.
fn options(platform: &Platform, data: &Path) -> Result<Options> {
    Ok(Options {
        url: platform.url(),
        cacert: platform.tls_cert.clone().context("no certificate")?,
        app: AppCredentials::load(&data.join("demo-client.json"))?,
        login_id: "hong".into(),
        password: "hong1234".into(),
        qr: DEFAULT_QR.into(),
        contract_account: DEMO_CONTRACT_ACCOUNT.into(),
        wd_pass_phrase: "NONE".into(),
        pay_from: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_app_journey_runs_against_the_platform() -> Result<()> {
    let (platform, data) = platform().await?;
    let options = options(&platform, data.path())?;
    let main_account = "097/1101234567890";
    let contract = format!("097/{DEMO_CONTRACT_ACCOUNT}");
    let (hong_before, contract_before) = (
        platform.bank.balance_of(main_account)?,
        platform.bank.balance_of(&contract)?,
    );

    let mut printed = Vec::new();
    let journey = payment_app::run(&options, &mut printed).await?;
    let printed = String::from_utf8(printed)?;
    eprintln!("{printed}"); // shown with --nocapture

    // Every step was shown.
    for heading in [
        "1. Connect",
        "2. Who is this",
        "3. Balance",
        "4. Pay by QR",
        "5. Refund",
        "6. Reconcile",
        "Done:",
    ] {
        assert!(
            printed.contains(heading),
            "{heading:?} missing in:\n{printed}"
        );
    }
    assert!(printed.contains("Sign-in page"), "{printed}");
    assert!(printed.contains("홍길동"), "{printed}");

    // Hong, all three registered accounts, paying from the main one.
    assert_eq!(journey.user_seq_no, "1100000001");
    assert_eq!(journey.user_name, "홍길동");
    assert_eq!(journey.accounts.len(), 3, "{:?}", journey.accounts);
    let paying = journey
        .accounts
        .iter()
        .find(|a| a["fintech_use_num"] == journey.fintech_use_num.as_str())
        .context("the paying account is listed")?;
    assert_eq!(paying["bank_code_std"], "097");
    assert_eq!(journey.history.len(), 5, "the seed has 37 postings");

    // The payment moved 4,500 won out and the refund brought it back, as the
    // API and the bank itself say.
    assert_eq!(journey.balance_before, hong_before);
    assert_eq!(journey.balance_after_payment, hong_before - 4500);
    assert_eq!(journey.balance_after_refund, hong_before);
    assert_eq!(platform.bank.balance_of(main_account)?, hong_before);
    assert_eq!(platform.bank.balance_of(&contract)?, contract_before);
    assert_eq!(journey.payment["tran_amt"], "4500");
    assert_eq!(journey.refund["res_list"][0]["tran_amt"], "4500");
    for r in [&journey.payment_result, &journey.refund_result] {
        assert_eq!(
            (&r["rsp_code"], &r["bank_rsp_code"]),
            (&"A0000".into(), &"000".into())
        );
    }
    assert_eq!(
        journey.payment_result["bank_tran_id"],
        journey.payment["bank_tran_id"]
    );
    let statement = platform.bank.statement(main_account)?;
    for id in [
        &journey.payment["bank_tran_id"],
        &journey.refund["res_list"][0]["bank_tran_id"],
    ] {
        let id = id.as_str().context("bank_tran_id")?;
        let n = statement
            .iter()
            .filter(|p| p.bank_tran_id.as_deref() == Some(id))
            .count();
        assert_eq!(n, 1, "{id} booked {n} times");
    }

    // Running it again works too (fresh bank_tran_ids, a new consent).
    let again = payment_app::run(&options, &mut Vec::new()).await?;
    assert_eq!(again.balance_after_refund, hong_before);
    assert_eq!(platform.bank.audit()?, Ok(()));
    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_stops_with_a_clear_error() -> Result<()> {
    let (platform, data) = platform().await?;
    let good = options(&platform, data.path())?;
    let fails = |o: Options| async move {
        match payment_app::run(&o, &mut Vec::new()).await {
            Ok(_) => "it succeeded".to_owned(),
            Err(e) => format!("{e:#}"),
        }
    };

    let wrong_password = Options {
        password: "nope".into(),
        ..good.clone()
    };
    let e = fails(wrong_password).await;
    assert!(
        e.contains("signing in as \"hong\" failed") && e.contains("not correct"),
        "{e}"
    );

    let no_such_account = Options {
        pay_from: Some("999".into()),
        ..good.clone()
    };
    let e = fails(no_such_account).await;
    assert!(e.contains("--pay-from 999: no registered account"), "{e}");

    let bad_qr = Options {
        qr: "sfop-pay:v1?merchant=x&amount=12x".into(),
        ..good.clone()
    };
    assert!(fails(bad_qr).await.contains("amount \"12x\""));

    // More than hong's per-transaction limit: the bank's code, named.
    let too_much = Options {
        qr: "sfop-pay:v1?merchant=x&amount=3000000".into(),
        ..good.clone()
    };
    let e = fails(too_much).await;
    assert!(e.contains("step 4, withdraw") && e.contains("A0111"), "{e}");

    let wrong_contract = Options {
        contract_account: "5000000000002".into(),
        ..good.clone()
    };
    let e = fails(wrong_contract).await;
    assert!(e.contains("A0322"), "{e}");

    // Another certificate: the TLS handshake fails, nothing is sent.
    let other = tempfile::tempdir()?;
    let other_cert = other.path().join("cert.pem");
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    std::fs::write(&other_cert, stranger.cert.pem())?;
    let untrusted = Options {
        cacert: other_cert,
        ..good.clone()
    };
    assert!(fails(untrusted).await.contains("TLS handshake"));

    let url = platform.url();
    platform.stop().await?;
    let e = fails(good).await;
    assert!(
        e.contains(&format!("cannot reach the platform at {url}"))
            && e.contains("cargo xtask serve"),
        "{e}"
    );
    Ok(())
}
