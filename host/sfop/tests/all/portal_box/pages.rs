use anyhow::{Context, Result};
use serde_json::Value;
use sfop_portal::VersionState;

use super::fixtures::{
    BALANCE_V1, TestPortal, balance, balance_v1_1, balance_v1_deprecated, enc, version,
};

const HOSTILE: &str = "<script>alert(\"pwned\")</script>";

/// The page without the portal's own script tags (files on its origin).
pub fn without_own_scripts(page: &str) -> String {
    let mut out = page.to_owned();
    while let Some(start) = out.find("<script src=\"/portal/assets/") {
        let Some(len) = out[start..].find("</script>") else {
            break;
        };
        out.replace_range(start..start + len + "</script>".len(), "");
    }
    out
}

fn assert_no_markup_from_input(page: &str) {
    let page = &without_own_scripts(page);
    assert!(!page.contains("<script"), "raw <script in:\n{page}");
    assert!(
        !page.contains("alert(\"pwned\")"),
        "unescaped quotes in:\n{page}"
    );
}

#[tokio::test]
async fn promotion_changes_catalogue_api_page_and_feed_without_restart() -> Result<()> {
    let t = TestPortal::balance_live()?;

    let catalogue = t.get("/portal").await.text();
    assert!(catalogue.contains("account-balance") && catalogue.contains("1.0.0"));
    assert!(catalogue.contains("잔액조회"), "UTF-8 descriptions kept");
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(api.contains("balance_amt") && !api.contains("available_amt"));
    let feed = t.get("/portal/changes.atom").await.text();
    assert_eq!(feed.matches("<entry>").count(), 1, "{feed}");

    // Promote 1.1.0; 1.0.0 stays served until its sunset. Nothing restarts:
    // the same portal reads the changed catalogue on the next request.
    t.catalog.set(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Live, 2_000)?,
        balance_v1_deprecated()?,
    ])]);
    let catalogue = t.get("/portal").await.text();
    assert!(catalogue.contains("<td>1.1.0</td>"), "{catalogue}");
    assert!(
        catalogue.contains("deprecated, sunset 2027-06-30"),
        "{catalogue}"
    );
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(api.contains("available_amt"), "new field documented");
    assert!(api.contains("<small>1.1.0</small>"));
    // Version history lists both, and the old one's page says it is deprecated.
    assert!(api.contains("?version=1.0.0"));
    let old = t
        .get("/portal/apis/account-balance?version=1.0.0")
        .await
        .text();
    assert!(old.contains("stops serving on <b>2027-06-30</b>"), "{old}");

    let feed = t.get("/portal/changes.atom").await;
    assert_eq!(
        feed.header("content-type"),
        Some("application/atom+xml; charset=UTF-8")
    );
    let feed = feed.text();
    // Both versions' publications and the deprecation, each its own entry.
    assert_eq!(feed.matches("<entry>").count(), 3, "{feed}");
    assert!(
        feed.contains("account-balance 1.1.0: 2 change(s) since 1.0.0"),
        "{feed}"
    );
    assert!(
        feed.contains("account-balance 1.0.0 deprecated, sunset 2027-06-30"),
        "{feed}"
    );
    // The diff, as escaped HTML inside the XML.
    assert!(feed.contains("response field available_amt"), "{feed}");
    assert!(feed.contains("N(12) → N(13)"), "{feed}");
    let changes = t.get("/portal/changes").await.text();
    assert!(
        changes.contains("<b>added</b> response field available_amt"),
        "{changes}"
    );

    // A canary shows with its share.
    t.catalog.set(vec![balance(vec![
        version(
            &balance_v1_1().replace("1.1.0", "1.2.0"),
            VersionState::Canary { percent: 10 },
            3_000,
        )?,
        version(&balance_v1_1(), VersionState::Live, 2_000)?,
    ])]);
    let catalogue = t.get("/portal").await.text();
    assert!(
        catalogue.contains("canary 10%") && catalogue.contains("<td>1.1.0</td>"),
        "{catalogue}"
    );
    Ok(())
}

#[tokio::test]
async fn openapi_follows_the_catalogue() -> Result<()> {
    let t = TestPortal::balance_live()?;
    let doc: Value = serde_json::from_str(&t.get("/portal/openapi.json").await.text())?;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "https://portal.test");
    let op = &doc["paths"]["/v2.0/account/balance/fin_num"]["get"];
    assert_eq!(op["security"][0]["openBanking"][0], "inquiry");
    assert_eq!(op["parameters"][0]["name"], "fintech_use_num");
    assert_eq!(op["parameters"][0]["schema"]["maxLength"], 24);
    assert_eq!(op["parameters"][0]["example"], "120230000100000000000015");
    let version_before = doc["info"]["version"].clone();
    t.catalog.set(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Live, 2_000)?,
        balance_v1_deprecated()?,
    ])]);
    let doc: Value = serde_json::from_str(&t.get("/portal/openapi.json").await.text())?;
    let props = &doc["paths"]["/v2.0/account/balance/fin_num"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"];
    assert!(props["available_amt"].is_object(), "{props}");
    assert_ne!(doc["info"]["version"], version_before);
    Ok(())
}

/// Signs a developer up; returns the cookie header value.
pub(crate) async fn sign_up(t: &TestPortal, email: &str) -> Result<String> {
    let page = t
        .request(
            "POST",
            "/portal/signup",
            None,
            &format!("email={}&password={}", enc(email), enc("a long password")),
        )
        .await;
    assert_eq!(page.status(), 303, "{}", page.text());
    let cookie = page.header("set-cookie").context("no session cookie")?;
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Strict")
    );
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn pages_escape_what_packages_and_developers_supply() -> Result<()> {
    let hostile_manifest = BALANCE_V1
        .replace(
            "\"The balance of a registered account (잔액조회).\"",
            &format!("'{HOSTILE}'"),
        )
        .replace("Balance in won", "<img src=x onerror=alert(1)>")
        .replace(
            "fintech_use_num is not the caller's user's",
            "</td><script>x</script>",
        );
    let mut entry = version(
        &hostile_manifest,
        VersionState::Deprecated {
            sunset: "<b>soon</b>".into(),
        },
        1_000,
    )?;
    entry.sha256 = "<i>sha</i>".into();
    let t = TestPortal::new(vec![balance(vec![entry])])?;
    for path in [
        "/portal",
        "/portal/apis/account-balance",
        "/portal/changes",
        "/portal/permissions",
        "/portal/apis/<script>",
        "/portal/nowhere?<script>",
        "/portal/search?q=%3Cscript%3Ealert(%22pwned%22)%3C/script%3E",
        "/portal/search?q=balance",
        "/portal/keys",
    ] {
        let page = t.get(path).await.text();
        assert_no_markup_from_input(&page);
        assert!(!page.contains("<img src=x"), "{path}: {page}");
        assert!(!page.contains("<b>soon</b>"), "{path}: {page}");
    }
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(
        api.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"),
        "{api}"
    );
    let feed = t.get("/portal/changes.atom").await.text();
    assert!(
        !feed.contains("<b>soon</b>") && !feed.contains("<script"),
        "{feed}"
    );

    // A developer registers an app with a hostile name.
    let cookie = sign_up(&t, "dev@example.com").await?;
    let apps = t.request("GET", "/portal/apps", Some(&cookie), "").await;
    let csrf = apps.input("csrf").context("no csrf field")?;
    let form = format!(
        "csrf={csrf}&name={}&redirect_uris={}&scope=login&scope=inquiry",
        enc(HOSTILE),
        enc("https://app.example/cb\n\"><script>x</script>")
    );
    let refused = t
        .request("POST", "/portal/apps", Some(&cookie), &form)
        .await;
    assert_eq!(
        refused.status(),
        200,
        "a bad redirect URI is refused on the form"
    );
    assert!(
        refused.text().contains("redirect_uris"),
        "{}",
        refused.text()
    );
    assert_no_markup_from_input(&refused.text());
    let form = format!(
        "csrf={csrf}&name={}&redirect_uris={}&scope=login&scope=inquiry",
        enc(HOSTILE),
        enc("https://app.example/cb?a=1&b=2")
    );
    let registered = t
        .request("POST", "/portal/apps", Some(&cookie), &form)
        .await;
    assert_eq!(registered.status(), 201, "{}", registered.text());
    assert_no_markup_from_input(&registered.text());
    let client_id = &registered.by_id("client-id").context("client id")?;
    for path in [
        "/portal/apps".to_owned(),
        format!("/portal/apps/{client_id}"),
    ] {
        let page = t.request("GET", &path, Some(&cookie), "").await;
        assert_eq!(page.status(), 200, "{path}");
        assert!(
            page.text()
                .contains("&lt;script&gt;alert(&quot;pwned&quot;)"),
            "{path}"
        );
        assert_no_markup_from_input(&page.text());
    }
    // The app's page shows the redirect URI with its `&` escaped.
    let app = t.app_page(&cookie, client_id).await;
    assert!(
        app.contains("<code>https://app.example/cb?a=1&amp;b=2</code>"),
        "{app}"
    );
    // A hostile e-mail address is refused, and shown back escaped in the
    // form's field and in the top bar of no page.
    let email = "\"><script>alert(\"pwned\")</script>&@x.example";
    let refused = t
        .request(
            "POST",
            "/portal/signup",
            None,
            &format!("email={}&password={}", enc(email), enc("a long password")),
        )
        .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    assert_no_markup_from_input(&refused.text());
    assert!(
        refused.text().contains(
            "value=\"&quot;&gt;&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&amp;@x.example\""
        ),
        "{}",
        refused.text()
    );
    let refused = t
        .request(
            "POST",
            "/portal/signin",
            None,
            &format!(
                "email={}&password=x&next={}",
                enc(email),
                enc("/portal?a=\"<b>")
            ),
        )
        .await;
    assert_eq!(refused.status(), 401, "{}", refused.text());
    assert_no_markup_from_input(&refused.text());
    assert!(!refused.text().contains("<b>"), "{}", refused.text());
    // A post without the session's CSRF token is refused.
    let forged = t
        .request("POST", "/portal/apps", Some(&cookie), "name=x&scope=oob")
        .await;
    assert_eq!(forged.status(), 403);
    // Another developer does not see the app.
    let other = sign_up(&t, "other@example.com").await?;
    let page = t
        .request(
            "GET",
            &format!("/portal/apps/{client_id}"),
            Some(&other),
            "",
        )
        .await;
    assert_eq!(page.status(), 404);
    Ok(())
}

#[tokio::test]
async fn try_it_sends_the_form_with_the_test_token_only_when_signed_in() -> Result<()> {
    let t = TestPortal::balance_live()?;
    let anonymous = t.get("/portal/apis/account-balance").await.text();
    assert!(anonymous.contains("Sign in</a>, register an app"));
    let refused = t
        .request(
            "POST",
            "/portal/try/account-balance",
            None,
            "fintech_use_num=1",
        )
        .await;
    assert_eq!(refused.status(), 303);
    // Signing in comes back to the API's "try it".
    assert_eq!(
        refused.header("location"),
        Some("/portal/signin?next=%2Fportal%2Fapis%2Faccount-balance%23try")
    );
    assert!(t.upstream.0.lock().map(|s| s.is_empty()).unwrap_or(false));
    Ok(())
}

#[tokio::test]
async fn testbed_reports_and_permissions_come_from_the_catalogue() -> Result<()> {
    let mut v = version(BALANCE_V1, VersionState::Live, 1_000)?;
    v.report_html = Some("<h2>Conformance: 12 of 12 passed</h2>".into());
    let t = TestPortal::new(vec![balance(vec![v])])?;
    let api = t.get("/portal/apis/account-balance").await.text();
    assert!(
        api.contains("href=\"/portal/reports/account-balance/1.0.0\""),
        "{api}"
    );
    let report = t.get("/portal/reports/account-balance/1.0.0").await;
    assert_eq!(report.status(), 200);
    // Rendered and escaped by the testbed: shown as it is.
    assert!(
        report
            .text()
            .contains("<h2>Conformance: 12 of 12 passed</h2>")
    );
    assert_eq!(
        t.get("/portal/reports/account-balance/9.9.9")
            .await
            .status(),
        404
    );
    let permissions = t.get("/portal/permissions").await.text();
    let inquiry_row = permissions
        .split("<tr>")
        .find(|row| row.contains(">inquiry</span>"))
        .context("no inquiry row")?;
    assert!(
        inquiry_row.contains("/portal/apis/account-balance"),
        "{inquiry_row}"
    );
    assert!(
        permissions.contains("check if operation(&quot;read&quot;) or amount($a), $a &lt;= 30000")
    );
    Ok(())
}

/// The platform's router resolves every portal page: path parameters
/// percent-decoded, a method a page lacks answered 405 with `Allow` (the
/// gateway turns it into its envelope), any other path the portal's own
/// 404 page, pages for signed-in developers sent to sign in first.
#[tokio::test]
async fn the_router_resolves_pages_methods_and_parameters() -> Result<()> {
    let t = TestPortal::balance_live()?;
    for path in ["/portal", "/portal/"] {
        let page = t.get(path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert!(page.text().contains("account-balance"), "{path}");
    }
    // `%2D` is `-`: the name the page is for is the decoded one.
    let api = t.get("/portal/apis/account%2Dbalance").await;
    assert_eq!(api.status(), 200, "{}", api.text());
    assert!(api.text().contains("balance_amt"));
    // Not UTF-8 once decoded, or not there: the portal's 404 page.
    for path in [
        "/portal/apis/%FF",
        "/portal/nowhere",
        "/portal/apps/x/y/z",
        "/portal/assets/../../Cargo.toml",
    ] {
        let page = t.get(path).await;
        assert_eq!(page.status(), 404, "{path}: {}", page.text());
        assert!(page.text().contains("Not found"), "{path}");
    }
    // The method is part of the page.
    for (method, path, allow) in [
        ("DELETE", "/portal/apps", "GET,HEAD,POST"),
        ("POST", "/portal/apis/account-balance", "GET,HEAD"),
        ("GET", "/portal/signout", "POST"),
        ("PUT", "/portal/signin", "GET,HEAD,POST"),
    ] {
        let page = t.request(method, path, None, "").await;
        assert_eq!(page.status(), 405, "{method} {path}");
        assert_eq!(page.header("allow"), Some(allow), "{method} {path}");
    }
    // Signed out: to the sign-in page, and back to what was asked.
    for (method, path, next) in [
        (
            "GET",
            "/portal/apps/abc?tab=keys",
            "/portal/apps/abc?tab=keys",
        ),
        (
            "POST",
            "/portal/try/account-balance",
            "/portal/apis/account-balance#try",
        ),
        ("POST", "/portal/apps/abc/secret", "/portal/apps"),
    ] {
        let page = t.request(method, path, None, "").await;
        assert_eq!(page.status(), 303, "{method} {path}: {}", page.text());
        assert_eq!(
            page.header("location"),
            Some(format!("/portal/signin?next={}", enc(next)).as_str()),
            "{method} {path}"
        );
    }
    Ok(())
}
