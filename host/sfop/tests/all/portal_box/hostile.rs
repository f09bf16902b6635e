//! Issue 18: every page is a template that escapes what it is given. One
//! catalogue, app, developer, sandbox and API answer full of markup, quotes
//! and ampersands, and every page of the portal visited with it.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Value, json};
use sfop_portal::{
    ApiEntry, BankState, Sandbox, ServiceError, Upstream, UpstreamFuture, UpstreamRequest,
    UpstreamResponse, VersionState,
};

use super::fixtures::{BALANCE_V1, TestPortal, enc, version};
use super::pages::without_own_scripts;

/// Markup, both quotes and an ampersand.
const HOSTILE: &str = "<script>alert(\"pwned\")</script> & 'q'";
/// [`HOSTILE`] as a template writes it (maud leaves `'` alone: every
/// attribute is double-quoted).
const ESCAPED: &str = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; 'q'";

/// [`HOSTILE`] inside a TOML basic string.
fn toml(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The platform as the portal sees it: a token endpoint that issues an oob
/// token, and an API whose answer carries [`HOSTILE`].
#[derive(Debug, Default)]
struct HostilePlatform(Mutex<Vec<String>>);

impl Upstream for HostilePlatform {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(request.path_and_query.clone());
        }
        let body = if request.path_and_query == "/oauth/2.0/token" {
            json!({ "access_token": "tok-0123456789abcdef", "token_type": "Bearer",
                    "expires_in": 600, "scope": "oob" })
        } else {
            json!({ "rsp_code": "A0000", "rsp_message": HOSTILE, "bank_name": HOSTILE })
        };
        Box::pin(async move {
            Ok(UpstreamResponse {
                status: 200,
                body: body.to_string().into_bytes(),
            })
        })
    }
}

/// Banks, rules and incidents full of [`HOSTILE`].
#[derive(Debug)]
struct HostileSandbox;

impl Sandbox for HostileSandbox {
    fn rules(&self, client_id: &str) -> Vec<Value> {
        vec![json!({ "id": 7, "client_id": client_id, "fault": "refuse",
                     "rsp_code": "A0009", "rsp_message": HOSTILE })]
    }
    fn add(&self, _: &str, _: Value) -> Result<u64, ServiceError> {
        Ok(1)
    }
    fn remove(&self, _: &str, _: u64) -> Result<bool, ServiceError> {
        Ok(true)
    }
    fn banks(&self) -> Vec<BankState> {
        vec![BankState {
            code: "097".into(),
            name: HOSTILE.into(),
            available: true,
        }]
    }
    fn platform_rules(&self) -> Vec<Value> {
        vec![json!({ "id": 1, "fault": "refuse", "rsp_code": "A0009", "rsp_message": HOSTILE })]
    }
}

/// No markup from input on `page`, whatever else it shows.
fn assert_escaped(what: &str, page: &str, shows_it: bool) {
    let page = without_own_scripts(page);
    assert!(!page.contains("<script"), "{what}: raw <script in\n{page}");
    assert!(
        !page.contains("alert(\"pwned\")"),
        "{what}: raw quotes in\n{page}"
    );
    assert!(!page.contains("& 'q'"), "{what}: raw & in\n{page}");
    if shows_it {
        assert!(page.contains(ESCAPED), "{what}: not shown escaped\n{page}");
    }
}

#[tokio::test]
async fn every_page_escapes_hostile_names_descriptions_and_answers() -> Result<()> {
    let hostile = BALANCE_V1
        .replace(
            "\"The balance of a registered account (잔액조회).\"",
            &toml(HOSTILE),
        )
        .replace("\"Balance in won\"", &toml(HOSTILE))
        .replace("\"The account (핀테크이용번호)\"", &toml(HOSTILE))
        .replace(
            "\"fintech_use_num is not the caller's user's\"",
            &toml(HOSTILE),
        )
        .replace("scope = \"inquiry\"", "scope = \"oob\"");
    let mut live = version(
        &hostile.replace("1.0.0", "1.1.0"),
        VersionState::Live,
        2_000,
    )?;
    live.report_html = Some("<p>12 of 12 passed</p>".into());
    let old = version(
        &BALANCE_V1.replace("scope = \"inquiry\"", "scope = \"oob\""),
        VersionState::Deprecated {
            sunset: HOSTILE.into(),
        },
        1_000,
    )?;
    let mut t = TestPortal::new(vec![ApiEntry {
        name: "account-balance".into(),
        versions: vec![live, old],
    }])?;
    let platform = Arc::new(HostilePlatform::default());
    t.portal = t
        .portal
        .clone()
        .with_platform(platform.clone())
        .with_sandbox(Arc::new(HostileSandbox));

    // A developer whose address holds quotes and an ampersand registers an
    // app with a hostile name and redirect URI.
    let email = "o\"b'r&co@dev.example";
    let cookie = super::pages::sign_up(&t, email).await?;
    let (registered, client_id, secret) = t
        .register_app(
            &cookie,
            &format!(
                "name={}&redirect_uris={}&scope=oob",
                enc(HOSTILE),
                enc("https://app.example/cb?a=1&b=\"<script>\"")
            ),
        )
        .await?;
    assert_escaped("registration", &registered.text(), true);
    let csrf = t.csrf(&cookie).await?;
    let got = t
        .request(
            "POST",
            &format!("/portal/apps/{client_id}/oob-token"),
            Some(&cookie),
            &format!("csrf={csrf}&client_secret={secret}"),
        )
        .await;
    assert_eq!(got.status(), 303, "{}", got.text());

    let escaped_email = "o&quot;b'r&amp;co@dev.example";
    let pages = [
        ("/portal", true),
        ("/portal/apis/account-balance", true),
        ("/portal/apis/account-balance?version=1.0.0", true),
        ("/portal/permissions", false),
        ("/portal/changes", true),
        ("/portal/reports/account-balance/1.1.0", false),
        ("/portal/search?q=script", true),
        ("/portal/status", true),
        ("/portal/reference", false),
        ("/portal/keys", false),
        ("/portal/apps", true),
        (&format!("/portal/apps/{client_id}"), true),
        // As a browser sends it: a raw `<` is no URI character (the
        // router, like hyper, never sees one).
        ("/portal/nowhere?%3Cscript%3E%22", false),
    ];
    for (path, shows_it) in pages {
        let page = t.request("GET", path, Some(&cookie), "").await;
        let text = page.text();
        // Every page renders (a 404 would show nothing to escape), but
        // the one that is not there.
        let found = !path.starts_with("/portal/nowhere");
        assert_eq!(
            page.status(),
            if found { 200 } else { 404 },
            "{path}\n{text}"
        );
        assert_escaped(path, &text, shows_it);
        if found {
            assert!(text.contains(escaped_email), "{path}: no developer\n{text}");
        }
        // Every table scrolls in its own box on a narrow screen.
        assert_eq!(
            text.matches("<table").count(),
            text.matches("<div class=\"table-wrap\"><table").count(),
            "{path}: a table outside div.table-wrap\n{text}"
        );
    }
    for path in [
        "/portal/signin?next=%22%3E%3Cscript%3E",
        "/portal/signup?next=/portal/%22%3E%3Cscript%3E",
    ] {
        assert_escaped(path, &t.get(path).await.text(), false);
    }
    // The feed: escaped as XML, the notice's HTML escaped once more.
    let feed = t.get("/portal/changes.atom").await.text();
    assert!(
        !feed.contains("<script") && !feed.contains("& 'q'"),
        "{feed}"
    );
    assert!(feed.contains("&amp;lt;script&amp;gt;"), "{feed}");

    // Try it: the API's answer, shown escaped.
    let tried = t
        .request(
            "POST",
            "/portal/try/account-balance",
            Some(&cookie),
            &format!("csrf={csrf}&fintech_use_num={}", enc(HOSTILE)),
        )
        .await;
    assert_eq!(tried.status(), 200, "{}", tried.text());
    let text = tried.text();
    assert_escaped("try it", &text, true);
    assert!(text.contains("data-outcome=\"success\""), "{text}");
    assert!(
        platform
            .0
            .lock()
            .map(|seen| seen.iter().any(|p| p.starts_with("/v2.0/account/balance")))
            .unwrap_or(false),
        "the API was not called"
    );
    // The rotated secret's page.
    let rotated = t
        .rotate_secret(&cookie, &client_id, &format!("csrf={csrf}"))
        .await;
    assert_escaped("rotation", &rotated.text(), true);
    Ok(())
}
