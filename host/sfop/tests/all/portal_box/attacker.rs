//! What an attacker sends to the portal's forms: another developer's app
//! ids, forged or missing CSRF tokens and session cookies, repeated fields.
//! Each is refused with its status and nothing is written: no app, no
//! secret, no fault, no token request.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sfop_portal::{PortalRequest, Sandbox, ServiceError};

use super::fixtures::{TestPortal, enc};
use super::pages::sign_up;

/// A sandbox that records every change asked of it; each app has rule 7.
#[derive(Debug, Default)]
struct Recording(Mutex<Vec<String>>);

impl Recording {
    fn changes(&self) -> Vec<String> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Sandbox for Recording {
    fn rules(&self, client_id: &str) -> Vec<Value> {
        vec![json!({ "id": 7, "client_id": client_id, "fault": "outage" })]
    }
    fn add(&self, client_id: &str, rule: Value) -> Result<u64, ServiceError> {
        if let Ok(mut c) = self.0.lock() {
            c.push(format!("add {client_id} {rule}"));
        }
        Ok(8)
    }
    fn remove(&self, client_id: &str, id: u64) -> Result<bool, ServiceError> {
        if let Ok(mut c) = self.0.lock() {
            c.push(format!("remove {client_id} {id}"));
        }
        Ok(true)
    }
}

/// A portal with a recording sandbox, developer A signed in with an app
/// (oob and login): (portal, sandbox, A's cookie, A's csrf, client_id,
/// secret).
async fn with_an_app() -> Result<(TestPortal, Arc<Recording>, String, String, String, String)> {
    let mut t = TestPortal::new(vec![])?;
    let sandbox = Arc::new(Recording::default());
    t.portal = t.portal.clone().with_sandbox(sandbox.clone());
    let cookie = sign_up(&t, "a@dev.example").await?;
    let (_, client_id, secret) = t
        .register_app(&cookie, "name=Pay&redirect_uris=&scope=oob&scope=login")
        .await?;
    let csrf = t.csrf(&cookie).await?;
    Ok((t, sandbox, cookie, csrf, client_id, secret))
}

#[tokio::test]
async fn another_developers_app_is_404_on_every_route_and_nothing_changes() -> Result<()> {
    let (t, sandbox, _, _, client_id, secret) = with_an_app().await?;
    let b = sign_up(&t, "b@dev.example").await?;
    let b_csrf = t.csrf(&b).await?;
    let app = format!("/portal/apps/{client_id}");
    let page = t.request("GET", &app, Some(&b), "").await;
    assert_eq!(page.status(), 404, "{}", page.text());
    assert!(!page.text().contains("Pay"), "{}", page.text());
    // Every action on A's app, with B's own valid CSRF token; the oob
    // token even with A's secret.
    for (action, form) in [
        ("authorize", "scope=login".to_owned()),
        ("oob-token", format!("client_secret={secret}")),
        ("faults", "fault=outage".to_owned()),
        ("faults/remove", "id=7".to_owned()),
        ("institution", "name=Evil&sandbox_account=yes".to_owned()),
        ("secret", String::new()),
    ] {
        let refused = t
            .request(
                "POST",
                &format!("{app}/{action}"),
                Some(&b),
                &format!("csrf={b_csrf}&{form}"),
            )
            .await;
        assert_eq!(refused.status(), 404, "{action}: {}", refused.text());
        assert!(refused.header("location").is_none(), "{action}");
        assert!(!refused.text().contains(&client_id), "{action}");
    }
    assert_eq!(sandbox.changes(), Vec::<String>::new());
    let sent = t.upstream.0.lock().map(|s| s.len()).unwrap_or(usize::MAX);
    assert_eq!(sent, 0, "a token was requested for another's app");
    let stored = t.clients.get(&client_id)?.context("client")?;
    assert!(
        stored.secret_matches(Some(&secret)),
        "the secret was rotated"
    );
    // B started no authorization: the callback knows none.
    let callback = t
        .request("GET", "/portal/callback?state=x&code=y", Some(&b), "")
        .await;
    assert_eq!(callback.status(), 400, "{}", callback.text());
    Ok(())
}

#[tokio::test]
async fn forged_and_repeated_forms_are_refused_and_nothing_is_written() -> Result<()> {
    let (t, sandbox, cookie, csrf, client_id, secret) = with_an_app().await?;
    let b = sign_up(&t, "b@dev.example").await?;
    let b_csrf = t.csrf(&b).await?;
    let post = |path: String, cookie: Option<String>, form: String| {
        let t = &t;
        async move { t.request("POST", &path, cookie.as_deref(), &form).await }
    };
    let apps_of = |cookie: String| {
        let t = &t;
        async move {
            t.request("GET", "/portal/apps", Some(&cookie), "")
                .await
                .text()
                .matches("href=\"/portal/apps/")
                .count()
        }
    };
    let faults = format!("/portal/apps/{client_id}/faults");
    let rotate = format!("/portal/apps/{client_id}/secret");

    // CSRF: none, another session's, an empty one, the right one second.
    for form in [
        "fault=outage".to_owned(),
        format!("csrf={b_csrf}&fault=outage"),
        "csrf=&fault=outage".to_owned(),
        format!("csrf=x&csrf={csrf}&fault=outage"),
    ] {
        let refused = post(faults.clone(), Some(cookie.clone()), form.clone()).await;
        assert_eq!(refused.status(), 403, "{form}: {}", refused.text());
    }
    let refused = post(
        "/portal/apps".into(),
        Some(cookie.clone()),
        format!("csrf={b_csrf}&name=Evil&scope=oob"),
    )
    .await;
    assert_eq!(refused.status(), 403, "{}", refused.text());
    assert_eq!(apps_of(cookie.clone()).await, 1, "an app was registered");

    // No session, or a forged one: sent to sign in, nothing rotated.
    for cookie in [None, Some("sfop_portal=0123456789abcdef".to_owned())] {
        let refused = post(rotate.clone(), cookie.clone(), format!("csrf={csrf}")).await;
        assert_eq!(refused.status(), 303, "{cookie:?}");
        assert!(
            refused
                .header("location")
                .is_some_and(|l| l.starts_with("/portal/signin?")),
            "{cookie:?}"
        );
    }
    let stored = t.clients.get(&client_id)?.context("client")?;
    assert!(
        stored.secret_matches(Some(&secret)),
        "the secret was rotated"
    );

    // A field given twice, the right token included: 400 naming it.
    for (path, form, field) in [
        (
            faults.clone(),
            format!("csrf={csrf}&fault=outage&fault=timeout"),
            "fault",
        ),
        (
            faults.clone(),
            format!("csrf={csrf}&csrf={csrf}&fault=outage"),
            "csrf",
        ),
        (
            "/portal/apps".to_owned(),
            format!("csrf={csrf}&name=A&n%61me=B&scope=oob"),
            "name",
        ),
        (
            format!("/portal/apps/{client_id}/oob-token"),
            format!("csrf={csrf}&client_secret=x&client_secret={secret}"),
            "client_secret",
        ),
    ] {
        let refused = post(path.clone(), Some(cookie.clone()), form).await;
        assert_eq!(refused.status(), 400, "{path}: {}", refused.text());
        assert!(
            refused
                .text()
                .contains(&format!("{field}: given more than once")),
            "{path}: {}",
            refused.text()
        );
    }
    assert_eq!(sandbox.changes(), Vec::<String>::new());
    assert_eq!(apps_of(cookie.clone()).await, 1, "an app was registered");
    let sent = t.upstream.0.lock().map(|s| s.len()).unwrap_or(usize::MAX);
    assert_eq!(sent, 0, "a token was requested");

    // Sign-up with the address twice: refused, no account for either.
    let refused = post(
        "/portal/signup".into(),
        None,
        format!(
            "email={}&email={}&password={}",
            enc("c@dev.example"),
            enc("d@dev.example"),
            enc("a long password")
        ),
    )
    .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    assert!(refused.header("set-cookie").is_none());
    for email in ["c@dev.example", "d@dev.example"] {
        let signin = post(
            "/portal/signin".into(),
            None,
            format!("email={}&password={}", enc(email), enc("a long password")),
        )
        .await;
        assert_eq!(signin.status(), 401, "{email}: {}", signin.text());
    }

    // A scope the app does not have: the app's page again, 400, no
    // authorization started.
    let refused = post(
        format!("/portal/apps/{client_id}/authorize"),
        Some(cookie.clone()),
        format!("csrf={csrf}&scope=transfer"),
    )
    .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    assert!(refused.header("location").is_none());
    assert!(refused.text().contains("scope: pick at least one"));

    // The scope checkboxes may repeat: the same form, once, is accepted.
    let added = post(
        faults,
        Some(cookie.clone()),
        format!("csrf={csrf}&fault=outage"),
    )
    .await;
    assert_eq!(added.status(), 303, "{}", added.text());
    assert_eq!(sandbox.changes().len(), 1);
    let registered = post(
        "/portal/apps".into(),
        Some(cookie.clone()),
        format!("csrf={csrf}&name=Two&scope=oob&scope=login"),
    )
    .await;
    assert_eq!(registered.status(), 201, "{}", registered.text());
    Ok(())
}

/// Login CSRF: another site's page posting the sign-in or sign-up form
/// (with the attacker's credentials) would sign the victim's browser in to
/// the attacker's account. A browser's post from another site (Fetch
/// Metadata, else `Origin`; a header given twice counts as foreign) is
/// 403 with no session and no account; the portal's own pages, and clients
/// that are not browsers, are served.
#[tokio::test]
async fn forms_posted_from_another_site_are_refused_before_anything_is_written() -> Result<()> {
    let t = TestPortal::new(vec![])?;
    let attacker = "attacker@evil.example";
    sign_up(&t, attacker).await?;
    let form = |path: &str, email: &str, origin: Option<&str>, site: Option<&str>| PortalRequest {
        method: "POST".into(),
        path: path.into(),
        authority: Some("portal.test".into()),
        body: format!("email={}&password={}", enc(email), enc("a long password")).into_bytes(),
        origin: origin.map(str::to_owned),
        fetch_site: site.map(str::to_owned),
        ..PortalRequest::default()
    };
    let foreign = [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (Some("http://portal.test"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
        (Some("https://portal.test"), Some("cross-site")),
    ];
    for (origin, site) in foreign {
        let signin = t.send(form("/portal/signin", attacker, origin, site)).await;
        assert_eq!(
            signin.status(),
            403,
            "{origin:?} {site:?}: {}",
            signin.text()
        );
        assert!(signin.header("set-cookie").is_none(), "{origin:?} {site:?}");
        let signup = t
            .send(form("/portal/signup", "victim@dev.example", origin, site))
            .await;
        assert_eq!(signup.status(), 403, "{origin:?} {site:?}");
        assert!(signup.header("set-cookie").is_none());
    }
    // No account was made by any of those.
    let signin = t
        .send(form("/portal/signin", "victim@dev.example", None, None))
        .await;
    assert_eq!(signin.status(), 401, "{}", signin.text());
    // The portal's own form, from a browser or not.
    for (origin, site) in [
        (Some("https://portal.test"), Some("same-origin")),
        (Some("https://portal.test"), None),
        (None, Some("same-origin")),
        (None, None),
    ] {
        let signin = t.send(form("/portal/signin", attacker, origin, site)).await;
        assert_eq!(
            signin.status(),
            303,
            "{origin:?} {site:?}: {}",
            signin.text()
        );
        assert!(signin.header("set-cookie").is_some());
    }
    Ok(())
}
