//! The cross-domain walkthrough as a function, so a test keeps it working.
//! See `main.rs` for the story.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sfop::config::{AuthSection, BankConsent, TlsConfig};
use sfop::{AuthMode, Config, TlsMode};

/// What the partner got, step by step.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub within_limit: String,
    pub over_limit: String,
    pub without_bank_consent: String,
}

/// Runs the walkthrough against an in-process platform over `plugins`.
pub async fn run(plugins: &Path, narrate: bool) -> Result<Outcome> {
    let say = |s: &str| {
        if narrate {
            println!("{s}");
        }
    };
    // 1. The bank's key, and a platform that trusts it for transfer consent.
    let (bank_private, bank_public) = sfop_auth::holder::generate_bank_key();
    say(&format!("[bank]     my public key is {bank_public}"));
    let data = tempfile::tempdir()?;
    let platform = sfop::start(Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        plugins: plugins.to_owned(),
        data_dir: data.path().to_owned(),
        // Cleartext to keep the example short; the default is HTTPS.
        tls: TlsConfig {
            mode: TlsMode::Off,
            ..TlsConfig::default()
        },
        auth: AuthSection {
            mode: AuthMode::Biscuit,
            bank_consent: vec![BankConsent {
                public_key: bank_public,
                scopes: vec!["transfer".into()],
            }],
            ..AuthSection::default()
        },
        ..Config::default()
    })
    .await?;
    let addr = platform.local_addr;
    say(&format!(
        "[platform] listening on {}; transfers need the bank's co-signature",
        platform.url()
    ));

    // 2. The user authorises the demo app (sign-in and consent pages, PKCE).
    let demo: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("demo-client.json"))?)?;
    let field = |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in demo-client.json"))
    };
    let (client_id, secret, use_code, redirect) = (
        field("client_id")?,
        field("client_secret")?,
        field("client_use_code")?,
        field("redirect_uri")?,
    );
    let access = user_token(addr, &client_id, &secret, &redirect).await?;
    let account = consented_account(&access)?;
    say(&format!(
        "[user]     hong authorised {client_id} for transfers from {account}"
    ));

    // 3. The bank co-signs consent for that account, offline.
    let request = sfop_auth::holder::third_party_request(&access)?;
    let signed = sfop_auth::holder::cosign_consent(&request, &bank_private, &account, "transfer")?;
    let cosigned = sfop_auth::holder::append_cosigned(&access, &signed)?;
    say("[bank]     co-signed bank_consent(account, \"transfer\") in a third-party block");

    // 4. The fintech app narrows the token for a partner, offline.
    let partner = sfop_auth::holder::attenuate(&cosigned, "check if amount($a), $a <= 10000;")?;
    say("[fintech]  gave the partner a copy limited to 10,000 won per payment");

    // 5. The partner pays.
    let mut serial = 0;
    let mut pay = async |token: &str, amount: &str| -> Result<String> {
        serial += 1;
        let body = json!({
            "bank_tran_id": format!("{use_code}U{serial:09}"),
            "cntr_account_type": "N",
            "cntr_account_num": "5000000000001",
            "dps_print_content": "partner shop",
            "fintech_use_num": account,
            "wd_print_content": "partner shop",
            "tran_amt": amount,
            "tran_dtime": "20261122120000",
            "req_client_name": "홍길동",
            "req_client_num": "HONG",
            "transfer_purpose": "TR",
        });
        let reply = post_json(addr, "/v2.0/transfer/withdraw/fin_num", Some(token), &body).await?;
        Ok(format!(
            "{} {}",
            reply["rsp_code"].as_str().unwrap_or("?"),
            reply["rsp_message"].as_str().unwrap_or("")
        ))
    };
    let within_limit = pay(&partner, "5000").await?;
    say(&format!("[partner]  pays 5,000 won  -> {within_limit}"));
    let over_limit = pay(&partner, "20000").await?;
    say(&format!("[partner]  pays 20,000 won -> {over_limit}"));
    let unsigned = sfop_auth::holder::attenuate(&access, "check if amount($a), $a <= 10000;")?;
    let without_bank_consent = pay(&unsigned, "5000").await?;
    say(&format!(
        "[partner]  same, without the bank's block -> {without_bank_consent}"
    ));
    platform.stop().await?;
    Ok(Outcome {
        within_limit,
        over_limit,
        without_bank_consent,
    })
}

/// The consented fintech_use_num in the token's authority block (readable by
/// any holder; only its signature needs the platform's key).
fn consented_account(token: &str) -> Result<String> {
    let claims = sfop_auth::holder::authority_facts(token)?;
    claims
        .iter()
        .find_map(|f| {
            f.strip_prefix("account(\"")?
                .strip_suffix("\")")
                .map(str::to_owned)
        })
        .context("no account in the token")
}

async fn user_token(
    addr: SocketAddr,
    client_id: &str,
    secret: &str,
    redirect: &str,
) -> Result<String> {
    let verifier = "cross-domain-example-verifier-0123456789abcdefghijklmnop";
    let challenge = sfop_auth::oauth::pkce_s256(verifier);
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope=login%20inquiry%20transfer&state=0123456789abcdef0123456789abcdef&code_challenge={challenge}&code_challenge_method=S256",
        encode(redirect)
    );
    let (_, _, page) = http(
        addr,
        "GET",
        &format!("/oauth/2.0/authorize?{query}"),
        None,
        None,
        Vec::new(),
    )
    .await?;
    let pending = html_value(&page, "pending").context("sign-in page")?;
    let form = |fields: &[(&str, &str)]| {
        fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (_, _, page) = http(
        addr,
        "POST",
        "/oauth/2.0/authorize",
        None,
        Some("application/x-www-form-urlencoded"),
        form(&[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", "hong"),
            ("password", "hong1234"),
        ])
        .into_bytes(),
    )
    .await?;
    let account = html_value(&page, "account").context("consent page")?;
    let (_, location, _) = http(
        addr,
        "POST",
        "/oauth/2.0/authorize",
        None,
        Some("application/x-www-form-urlencoded"),
        form(&[
            ("pending", &pending),
            ("action", "consent"),
            ("account", &account),
            ("scope", "login"),
            ("scope", "inquiry"),
            ("scope", "transfer"),
        ])
        .into_bytes(),
    )
    .await?;
    let code = location
        .as_deref()
        .and_then(|l| l.split(['?', '&']).find_map(|p| p.strip_prefix("code=")))
        .context("no code in the redirect")?
        .to_owned();
    let (_, _, body) = http(
        addr,
        "POST",
        "/oauth/2.0/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", client_id),
            ("client_secret", secret),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .into_bytes(),
    )
    .await?;
    let token: Value = serde_json::from_str(&body)?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("token endpoint said {body}"))
}

async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<Value> {
    let (_, _, text) = http(
        addr,
        "POST",
        path,
        token,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await?;
    Ok(serde_json::from_str(&text)?)
}

/// One HTTP/1.1 exchange: status, Location, body text.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Option<String>, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = String::from_utf8(res.into_body().collect().await?.to_bytes().to_vec())?;
    if status >= 500 {
        bail!("{method} {path} failed with {status}: {text}");
    }
    Ok((status, location, text))
}

fn html_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
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

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_walkthrough_behaves_as_documented() -> anyhow::Result<()> {
        let plugins =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sfop-plugins/api");
        let outcome = super::run(&plugins, false).await?;
        assert!(outcome.within_limit.starts_with("A0000"), "{outcome:?}");
        assert!(outcome.over_limit.starts_with("A0301"), "{outcome:?}");
        assert!(
            outcome.without_bank_consent.starts_with("A0301"),
            "{outcome:?}"
        );
        assert!(
            outcome.without_bank_consent.contains("co-signed"),
            "{outcome:?}"
        );
        Ok(())
    }
}
