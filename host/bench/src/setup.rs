//! What the scenarios need besides a running platform: a real user access
//! token with consent (obtained through the authorize pages and the token
//! endpoint, as a fintech app would), a bench user with high limits in the
//! bench's own temp data dir, a TLS client configuration, and a promotion
//! gate for the hot-swap scenario.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use sfop_management::{Gate, GateError, GateFuture, Package, Verdict};
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE};
use sfop_vbank::{NewAccount, NewUser, Owner, VirtualBank};

use crate::load;

/// The bench user's login; only ever exists in the bench's temp data dir.
const LOGIN: &str = "bench";
const PASSWORD: &str = "bench-password-1234";

/// A consented user of the demo client.
#[derive(Debug, Clone)]
pub struct BenchUser {
    pub access_token: String,
    pub fintech_use_num: String,
}

/// Adds a user with one well-funded demand-deposit account and limits far
/// above what a bench run withdraws, then drives the authorize pages and the
/// token endpoint as the demo client to get an access token for
/// `login inquiry transfer` on that account.
pub async fn bench_user(
    bank: &VirtualBank,
    addr: SocketAddr,
    data_dir: &Path,
) -> Result<BenchUser> {
    let user_seq_no = bank.add_user(&NewUser {
        name: "벤치".into(),
        birth_date: "900101".into(),
        login_id: LOGIN.into(),
        password: PASSWORD.into(),
        wd_per_tran: 10_000_000,
        wd_daily: 1_000_000_000,
    })?;
    bank.open_account(
        &NewAccount {
            bank_code: "097".into(),
            account_num: "1109999000001".into(),
            owner: Owner::User(user_seq_no.clone()),
            holder_name: "벤치".into(),
            holder_info: "900101".into(),
            alias: "bench".into(),
            product_name: "bench demand deposit".into(),
            account_type: "1".into(),
            maturity_date: None,
            overdraft_limit: 0,
            opening_balance: 100_000_000,
        },
        sfop_core::time::now_millis(),
    )?;

    let access_token = authorize(addr, data_dir, LOGIN, PASSWORD).await?;
    let nums =
        bank.fintech_use_nums(&user_seq_no, DEMO_CLIENT_ID, sfop_core::time::now_millis())?;
    let [fintech_use_num] = nums.as_slice() else {
        bail!("the bench user should have exactly one registered account, has {nums:?}");
    };
    Ok(BenchUser {
        access_token,
        fintech_use_num: fintech_use_num.clone(),
    })
}

/// The seeded user 홍길동 (`hong`) of a platform whose bank is a separate
/// participant-bank server (B3r/B4r): the bank server seeds the same users,
/// accounts and consents as the platform's own store, so the fintech numbers
/// of the seeded consents are the same on both sides. The access token comes
/// from the authorize pages and the token endpoint (whichever directory the
/// platform's sign-in asks); the account used is the first seeded fintech
/// number that the token may read (a balance inquiry through the API
/// answers `A0000`).
pub async fn seeded_user(
    seeded: &VirtualBank,
    addr: SocketAddr,
    data_dir: &Path,
) -> Result<BenchUser> {
    let hong = sfop_vbank::seed::USERS
        .first()
        .context("the virtual bank seeds no users")?;
    let access_token = authorize(addr, data_dir, hong.login_id, hong.password).await?;
    let nums = seeded.fintech_use_nums(
        hong.user_seq_no,
        DEMO_CLIENT_ID,
        sfop_core::time::now_millis(),
    )?;
    let mut answers = Vec::new();
    for num in nums {
        let probe = load::Target {
            authorization: Some(format!("Bearer {access_token}")),
            ..load::Target::get(addr, &balance_path(&num))
        };
        let (status, _, body) = load::fetch_once(&probe).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status == 200 && text.contains("\"rsp_code\":\"A0000\"") {
            return Ok(BenchUser {
                access_token,
                fintech_use_num: num,
            });
        }
        answers.push(format!("{num}: {status} {text}"));
    }
    bail!(
        "no seeded account of {} answers a balance inquiry through the bank server: {answers:?}",
        hong.login_id
    )
}

/// Signs `login` in through the authorize pages as the demo client seeded in
/// `data_dir`, consents to the first account the consent page offers for
/// `login inquiry transfer`, and exchanges the code at the token endpoint:
/// the user's access token.
pub async fn authorize(
    addr: SocketAddr,
    data_dir: &Path,
    login: &str,
    password: &str,
) -> Result<String> {
    let field = demo_client(data_dir)?;
    let (client_id, secret, redirect) = (
        field("client_id")?,
        field("client_secret")?,
        field("redirect_uri")?,
    );
    let state = "bench0123456789abcdef";
    // PKCE, as every client must: BASE64URL(SHA256(verifier)), worked out
    // once (the bench does not link the auth crate).
    let verifier = "bench-pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyz";
    let challenge = "nNXSXIAPh_gvnj1fakhR9r29EIkizMk0nlEpUHWvF7c";
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", &redirect),
        ("scope", "login inquiry transfer"),
        ("state", state),
        ("auth_type", "0"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]);
    let page = load::fetch_once(&load::Target::get(
        addr,
        &format!("/oauth/2.0/authorize?{query}"),
    ))
    .await?;
    let html = String::from_utf8_lossy(&page.2).into_owned();
    let pending = html_value(&html, "pending").context("no pending id on the sign-in page")?;
    let (_, _, consent) = load::post_form(
        addr,
        "/oauth/2.0/authorize",
        form(&[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", login),
            ("password", password),
        ]),
    )
    .await?;
    let html = String::from_utf8_lossy(&consent).into_owned();
    let account = html_value(&html, "account").context("no account on the consent page")?;
    let (status, headers, body) = load::post_form(
        addr,
        "/oauth/2.0/authorize",
        form(&[
            ("pending", &pending),
            ("action", "consent"),
            ("account", &account),
            ("scope", "login"),
            ("scope", "inquiry"),
            ("scope", "transfer"),
        ]),
    )
    .await?;
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .with_context(|| {
            format!(
                "consent answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
    let code = query_param(location, "code").context("no code in the redirect")?;
    let (status, _, body) = load::post_form(
        addr,
        "/oauth/2.0/token",
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier),
        ]),
    )
    .await?;
    let token: Value = serde_json::from_slice(&body)?;
    let access_token = token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("token endpoint said {status}: {token}"))?;
    Ok(access_token)
}

/// The demo client seeded in `data_dir` (`demo-client.json`): its fields by
/// name.
fn demo_client(data_dir: &Path) -> Result<impl Fn(&str) -> Result<String>> {
    let demo: Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("demo-client.json")).context("reading demo-client.json")?,
    )?;
    Ok(move |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in demo-client.json"))
    })
}

/// A client-credentials (`oob`) token of the demo client seeded in `data_dir`.
pub async fn oob_token(addr: SocketAddr, data_dir: &Path) -> Result<String> {
    let field = demo_client(data_dir)?;
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("scope", "oob"),
        ("client_id", &field("client_id")?),
        ("client_secret", &field("client_secret")?),
    ]);
    let (_, _, body) = load::post_form(addr, "/oauth/2.0/token", body).await?;
    let token: Value = serde_json::from_slice(&body)?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("token endpoint said {}", String::from_utf8_lossy(&body)))
}

/// `bank_tran_id` with a fresh `{seq}` per request: institution code + `U` +
/// 9 digits.
pub fn bank_tran_id_template() -> String {
    format!("{DEMO_CLIENT_USE_CODE}U{}", load::SEQ)
}

/// The balance inquiry's path and query.
pub fn balance_path(fintech_use_num: &str) -> String {
    format!(
        "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={fintech_use_num}&tran_dtime={}",
        bank_tran_id_template(),
        dtime()
    )
}

/// A 1-won withdrawal to the demo institution's contract account.
pub fn withdraw_body(fintech_use_num: &str) -> String {
    json!({
        "bank_tran_id": bank_tran_id_template(),
        "cntr_account_type": "N",
        "cntr_account_num": sfop_vbank::seed::DEMO_CONTRACT_ACCOUNT_NUM,
        "dps_print_content": "bench",
        "fintech_use_num": fintech_use_num,
        "wd_print_content": "bench",
        "tran_amt": "1",
        "tran_dtime": dtime(),
        "req_client_name": "벤치",
        "req_client_num": "BENCH0001",
        "transfer_purpose": "TR",
    })
    .to_string()
}

fn dtime() -> String {
    // YYYYMMDDhhmmss in business time; the plugins check only the format.
    let dtm = sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    );
    dtm.chars().take(14).collect()
}

/// A TLS client trusting the gateway's self-signed certificate, HTTP/1.1 by
/// ALPN; with `resume`, TLS session resumption as rustls does by default.
pub fn tls_client(cert_pem: &Path, resume: bool) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_pem)
        .with_context(|| format!("reading {}", cert_pem.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// BENCH ONLY: the promotion gate of the hot-swap scenario. It passes every
/// package; its attestation is the component's sha256, checked on promotion.
/// It stands in for the testbed so that the scenario measures the swap, not
/// the conformance run; only the bench's own temp platform ever uses it.
#[derive(Debug)]
pub struct BenchGate;

impl Gate for BenchGate {
    fn test<'a>(&'a self, candidate: &'a Package, _live: Option<&'a Package>) -> GateFuture<'a> {
        let sha = candidate.component_sha256();
        Box::pin(async move {
            Ok(Verdict {
                passed: true,
                report: json!({ "checks": [{ "rule": "bench-gate", "passed": true, "detail": "" }] }),
                report_html: "<p>bench gate</p>".into(),
                attestation: Some(json!({ "component_sha256": sha }).to_string()),
            })
        })
    }

    fn verify(&self, attestation: &str, package: &Package) -> Result<(), GateError> {
        let a: Value =
            serde_json::from_str(attestation).map_err(|e| GateError::Refused(e.into()))?;
        if a["component_sha256"].as_str() == Some(package.component_sha256().as_str()) {
            Ok(())
        } else {
            Err(GateError::Refused("attestation is for other bytes".into()))
        }
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of the first `name="NAME" value="…"` in an HTML page.
fn html_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html.get(start..)?.find('"')?;
    html.get(start..start + end).map(str::to_owned)
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}
