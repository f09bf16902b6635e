//! What a developer expects of the portal (issue 17): search across APIs
//! and fields, client code from the documented example with copy buttons,
//! the version selector, the Redoc reference served from the portal, the
//! status page, client-secret rotation, and sign-in that returns to the page
//! that asked, never to another origin.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sfop_portal::{ApiEntry, BankState, Sandbox, ServiceError, VersionState};

use super::fixtures::{BALANCE_V1, TestPortal, balance, balance_v1_1, enc, version};
use super::pages::{sign_up, without_own_scripts};

/// A withdrawal-like API with a JSON body.
const WITHDRAW: &str = r#"
name = "transfer-withdraw"
version = "1.0.0"
description = "Withdraw from the user's account (출금이체)."
scope = "transfer"
capabilities = ["ledger"]

[[routes]]
method = "POST"
path = "/v2.0/transfer/withdraw/fin_num"

[[docs.request]]
name = "bank_tran_id"
type = "AN(20)"
required = true
description = "Unique per call"

[[docs.response]]
name = "tran_amt"
type = "N(12)"
description = "Amount moved"

[docs.example]
request = '''{"bank_tran_id": "M202300001U000000001", "tran_amt": "1000", "it's": true, "n": null}'''
response = '{"rsp_code": "A0000", "rsp_message": ""}'
"#;

fn csp(page: &super::fixtures::Page) -> String {
    page.header("content-security-policy")
        .unwrap_or_default()
        .to_owned()
}

/// `account-balance` and `transfer-withdraw`, 1.0.0 each, live.
fn balance_and_withdraw() -> Result<Vec<ApiEntry>> {
    Ok(vec![
        balance(vec![version(BALANCE_V1, VersionState::Live, 1_000)?]),
        ApiEntry {
            name: "transfer-withdraw".into(),
            versions: vec![version(WITHDRAW, VersionState::Live, 1_000)?],
        },
    ])
}

#[tokio::test]
async fn search_finds_apis_and_fields_by_name_and_description() -> Result<()> {
    let t = TestPortal::new(balance_and_withdraw()?)?;
    // The box in the top bar of every page.
    let catalogue = t.get("/portal").await.text();
    assert!(
        catalogue.contains("action=\"/portal/search\"") && catalogue.contains("name=\"q\""),
        "{catalogue}"
    );
    // An API by its name.
    let page = t.get("/portal/search?q=BALANCE").await;
    assert_eq!(page.status(), 200);
    let text = page.text();
    assert!(
        text.contains("href=\"/portal/apis/account-balance\""),
        "{text}"
    );
    assert!(
        !text.contains("href=\"/portal/apis/transfer-withdraw\""),
        "{text}"
    );
    // A field by its name, linked to its row on the API page.
    let text = t.get("/portal/search?q=balance_amt").await.text();
    assert!(
        text.contains("href=\"/portal/apis/account-balance#res-balance_amt\""),
        "{text}"
    );
    // A field by its description, and an API by a Korean description.
    let text = t.get("/portal/search?q=unique+per").await.text();
    assert!(
        text.contains("href=\"/portal/apis/transfer-withdraw#req-bank_tran_id\""),
        "{text}"
    );
    let text = t
        .get(&format!("/portal/search?q={}", enc("출금")))
        .await
        .text();
    assert!(text.contains("/portal/apis/transfer-withdraw"), "{text}");
    // The API page has the rows the results link to.
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(api.contains("id=\"res-balance_amt\""), "{api}");
    // Nothing found, and the query escaped.
    let text = t
        .get(&format!("/portal/search?q={}", enc("<script>x</script>")))
        .await
        .text();
    assert!(text.contains("Nothing matches"), "{text}");
    assert!(!without_own_scripts(&text).contains("<script>"), "{text}");
    Ok(())
}

#[tokio::test]
async fn client_code_comes_from_the_example_with_copy_buttons_on_self_scripts() -> Result<()> {
    let t = TestPortal::new(balance_and_withdraw()?)?;
    let page = t.get("/portal/apis/account-balance").await;
    let text = page.text();
    let url =
        "https://portal.test/v2.0/account/balance/fin_num?fintech_use_num=120230000100000000000015";
    for (id, expected) in [
        ("sample-curl", format!("curl -X GET '{url}'")),
        ("sample-python", format!("&quot;{url}&quot;")),
        ("sample-javascript", format!("fetch(&quot;{url}&quot;")),
    ] {
        let start = text
            .find(&format!("<pre id=\"{id}\">"))
            .with_context(|| format!("no {id}"))?;
        let end = start + text[start..].find("</pre>").context("unclosed")?;
        assert!(
            text[start..end].contains(&expected),
            "{id}: {}",
            &text[start..end]
        );
        assert!(
            text.contains(&format!("data-copy=\"{id}\"")),
            "copy button for {id}"
        );
    }
    assert!(text.contains("import requests"));
    // The page runs the portal's own script file and nothing inline.
    let policy = csp(&page);
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let script_src = policy
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap_or_default();
    assert_eq!(script_src.trim(), "script-src 'self'", "{policy}");
    assert!(!policy.contains("http"), "{policy}");
    let start = text
        .find("<script src=\"/portal/assets/portal.js?v=")
        .context("no script tag")?;
    assert_eq!(
        text.matches("<script").count(),
        1,
        "only the one script file"
    );
    let src = &text[start + 13..start + 13 + text[start + 13..].find('"').context("src")?];
    let asset = t.get(src).await;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.header("content-type"),
        Some("text/javascript; charset=UTF-8")
    );
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(asset.text().contains("data-copy"));
    assert_eq!(t.get("/portal/assets/nothing.js").await.status(), 404);
    assert_eq!(t.get("/portal/assets/../Cargo.toml").await.status(), 404);
    // Pages without copy buttons keep the policy without scripts.
    let catalogue = t.get("/portal").await;
    assert!(
        !csp(&catalogue).contains("script-src"),
        "{}",
        csp(&catalogue)
    );
    // A JSON body becomes the same body in all three.
    let text = t.get("/portal/apis/transfer-withdraw").await.text();
    assert!(
        text.contains("--data '{&quot;bank_tran_id&quot;:&quot;M202300001U000000001&quot;"),
        "{text}"
    );
    assert!(text.contains("&quot;it's&quot;: True"), "{text}");
    assert!(text.contains("&quot;n&quot;: None"), "{text}");
    assert!(text.contains("&quot;it's&quot;: true"), "{text}");
    assert!(text.contains("body: JSON.stringify("), "{text}");
    // The shell quote of it's is closed and reopened.
    assert!(text.contains("it'\\''s"), "{text}");
    Ok(())
}

#[tokio::test]
async fn the_version_selector_lists_every_version_and_shows_the_chosen_one() -> Result<()> {
    let t = TestPortal::new(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Live, 2_000)?,
        version(
            BALANCE_V1,
            VersionState::Deprecated {
                sunset: "2027-01-31".into(),
            },
            1_000,
        )?,
    ])])?;
    let current = t.get("/portal/apis/account-balance").await.text();
    assert!(
        current.contains("<select id=\"version-select\" name=\"version\""),
        "{current}"
    );
    assert!(
        current.contains("<option value=\"1.1.0\" selected>1.1.0 — live</option>"),
        "{current}"
    );
    assert!(
        current.contains("<option value=\"1.0.0\">1.0.0 — deprecated, sunset 2027-01-31</option>"),
        "{current}"
    );
    assert!(current.contains("available_amt"));
    let old = t
        .get("/portal/apis/account-balance?version=1.0.0")
        .await
        .text();
    assert!(old.contains("<option value=\"1.0.0\" selected>"), "{old}");
    assert!(!old.contains("available_amt"), "1.0.0's own fields");
    assert_eq!(
        t.get("/portal/apis/account-balance?version=9.9.9")
            .await
            .status(),
        404
    );
    Ok(())
}

#[tokio::test]
async fn the_reference_page_runs_the_vendored_redoc_under_a_tight_policy() -> Result<()> {
    let t = TestPortal::balance_live()?;
    let page = t.get("/portal/reference").await;
    assert_eq!(page.status(), 200);
    let text = page.text();
    assert!(
        text.contains("<redoc spec-url=\"/portal/openapi.json\""),
        "{text}"
    );
    let start = text
        .find("<script src=\"/portal/assets/redoc-2.5.4/redoc.standalone.js?v=")
        .context("no Redoc script")?;
    let src = &text[start + 13..start + 13 + text[start + 13..].find('"').context("src")?];
    let bundle = t.get(src).await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.0.body.len() > 500_000, "the whole bundle");
    // The one external image of the published bundle is patched out
    // (portal/assets/redoc-2.5.4/README.md).
    assert!(
        !bundle.text().contains("cdn.redoc.ly"),
        "Redoc's logo from its CDN"
    );
    assert!(
        bundle
            .header("cache-control")
            .is_some_and(|c| c.contains("immutable"))
    );
    let license = t.get("/portal/assets/redoc-2.5.4/LICENSE").await.text();
    assert!(license.contains("MIT"), "{license}");
    let policy = csp(&page);
    for part in [
        "default-src 'none'",
        "script-src 'self';",
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{part} in {policy}");
    }
    for never in [
        "unsafe-eval",
        "http",
        "*",
        "script-src 'self' 'unsafe-inline'",
    ] {
        assert!(!policy.contains(never), "{never} in {policy}");
    }
    Ok(())
}

/// A sandbox with two banks, one switched off, and a platform-wide outage.
#[derive(Debug)]
struct FakeSandbox;

impl Sandbox for FakeSandbox {
    fn rules(&self, client_id: &str) -> Vec<Value> {
        vec![json!({"id": 7, "client_id": client_id, "fault": "outage", "operation": "deposit"})]
    }
    fn add(&self, _: &str, _: Value) -> Result<u64, ServiceError> {
        Ok(1)
    }
    fn remove(&self, _: &str, _: u64) -> Result<bool, ServiceError> {
        Ok(true)
    }
    fn banks(&self) -> Vec<BankState> {
        vec![
            BankState {
                code: "097".into(),
                name: "Virtual Bank".into(),
                available: true,
            },
            BankState {
                code: "088".into(),
                name: "Other <Bank>".into(),
                available: false,
            },
        ]
    }
    fn platform_rules(&self) -> Vec<Value> {
        vec![
            json!({"id": 1, "fault": "outage", "bank_code": "097", "operation": "withdraw", "times": 3}),
            json!({"id": 2, "fault": "refuse", "rsp_code": "A0009"}),
        ]
    }
}

#[tokio::test]
async fn the_status_page_shows_banks_apis_and_incidents() -> Result<()> {
    let mut t = TestPortal::new(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Canary { percent: 10 }, 2_000)?,
        version(
            BALANCE_V1,
            VersionState::Deprecated {
                sunset: "2027-01-31".into(),
            },
            1_000,
        )?,
    ])])?;
    // Without a sandbox: APIs, no banks.
    let bare = t.get("/portal/status").await.text();
    assert!(bare.contains("No participant bank"), "{bare}");
    t.portal = t
        .portal
        .clone()
        .with_sandbox(std::sync::Arc::new(FakeSandbox));
    let page = t.get("/portal/status").await;
    assert_eq!(page.status(), 200);
    let text = page.text();
    let row = |code: &str| {
        text.split("<tr class=\"bank\"")
            .find(|r| r.contains(&format!("data-code=\"{code}\"")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(
        row("097").contains("degraded") && row("097").contains("withdraw"),
        "{}",
        row("097")
    );
    assert!(
        row("088").contains(">outage<") && row("088").contains("Other &lt;Bank&gt;"),
        "{}",
        row("088")
    );
    assert!(
        text.contains("canary 10%") && text.contains("2027-01-31"),
        "{text}"
    );
    let incidents = &text[text.find("id=\"status-incidents\"").context("incidents")?..];
    assert!(
        incidents.contains("switched off by the operator"),
        "{incidents}"
    );
    assert!(
        incidents.contains("bank 097, withdraw, 3 more calls"),
        "{incidents}"
    );
    assert!(
        !incidents.contains("A0009"),
        "a refusal is no incident: {incidents}"
    );
    Ok(())
}

#[tokio::test]
async fn a_rotated_secret_is_shown_once_and_the_old_one_stops_working() -> Result<()> {
    let t = TestPortal::new(vec![])?;
    let cookie = sign_up(&t, "dev@example.com").await?;
    let (_, client_id, old) = t
        .register_app(&cookie, "name=Pay&redirect_uris=&scope=oob")
        .await?;
    let csrf = t.csrf(&cookie).await?;
    let app = t.app_page(&cookie, &client_id).await;
    assert!(
        app.contains(&format!("action=\"/portal/apps/{client_id}/secret\"")),
        "{app}"
    );
    assert!(!app.contains(&old), "the secret is not shown again");
    // Without the form's CSRF token: refused, nothing changes.
    let forged = t.rotate_secret(&cookie, &client_id, "").await;
    assert_eq!(forged.status(), 403);
    let rotated = t
        .rotate_secret(&cookie, &client_id, &format!("csrf={csrf}"))
        .await;
    assert_eq!(rotated.status(), 200, "{}", rotated.text());
    let new = rotated.by_id("client-secret").context("new secret")?;
    assert!(new.len() == 64 && new != old, "{new}");
    let stored = t.clients.get(&client_id)?.context("client")?;
    assert!(stored.secret_matches(Some(&new)));
    assert!(
        !stored.secret_matches(Some(&old)),
        "the old secret still works"
    );
    // Someone else's app: no.
    let other = sign_up(&t, "other@example.com").await?;
    let other_csrf = t.csrf(&other).await?;
    let refused = t
        .rotate_secret(&other, &client_id, &format!("csrf={other_csrf}"))
        .await;
    assert_eq!(refused.status(), 404);
    let stored = t.clients.get(&client_id)?.context("client")?;
    assert!(stored.secret_matches(Some(&new)));
    Ok(())
}

#[tokio::test]
async fn sign_in_returns_to_the_page_that_asked_and_never_off_the_portal() -> Result<()> {
    let t = TestPortal::balance_live()?;
    sign_up(&t, "dev@example.com").await?;
    // A page that needs a session sends to sign-in with itself as next.
    let asked = t.get("/portal/apps/abc?x=1").await;
    assert_eq!(asked.status(), 303);
    assert_eq!(
        asked.header("location"),
        Some("/portal/signin?next=%2Fportal%2Fapps%2Fabc%3Fx%3D1")
    );
    // The top bar's "Sign in" carries the page it is on.
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(
        api.contains("href=\"/portal/signin?next=%2Fportal%2Fapis%2Faccount-balance\""),
        "{api}"
    );
    let form = t
        .get("/portal/signin?next=%2Fportal%2Fapis%2Faccount-balance")
        .await;
    assert_eq!(
        form.input("next").as_deref(),
        Some("/portal/apis/account-balance")
    );
    let sign_in = |next: &str| {
        format!(
            "email={}&password={}&next={}",
            enc("dev@example.com"),
            enc("a long password"),
            enc(next)
        )
    };
    let back = t
        .request(
            "POST",
            "/portal/signin",
            None,
            &sign_in("/portal/apis/account-balance"),
        )
        .await;
    assert_eq!(back.status(), 303);
    assert_eq!(
        back.header("location"),
        Some("/portal/apis/account-balance")
    );
    for hostile in [
        "https://evil.example/",
        "//evil.example/portal",
        "/\\evil.example",
        "/portal\\..\\evil",
        "javascript:alert(1)",
        "/portalevil",
    ] {
        let page = t
            .get(&format!("/portal/signin?next={}", enc(hostile)))
            .await;
        assert_eq!(page.input("next"), None, "{hostile}");
        let answer = t
            .request("POST", "/portal/signin", None, &sign_in(hostile))
            .await;
        assert_eq!(answer.header("location"), Some("/portal/apps"), "{hostile}");
    }
    Ok(())
}
