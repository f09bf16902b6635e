//! Issue 18: the portal's errors are typed. A failure of the platform or of
//! a box behind the portal is a 5xx page that says nothing of the cause and
//! does not blame the developer; the developer's own mistakes stay 4xx
//! pages naming the field.

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;
use sfop_portal::{
    ApiEntry, Sandbox, ServiceError, Upstream, UpstreamError, UpstreamFuture, UpstreamRequest,
    VersionState,
};

use super::fixtures::{BALANCE_V1, TestPortal, enc, version};

/// A sandbox whose store is broken for adds, and that refuses bad input.
#[derive(Debug)]
struct BrokenSandbox;

impl Sandbox for BrokenSandbox {
    fn rules(&self, _: &str) -> Vec<Value> {
        Vec::new()
    }
    fn add(&self, _: &str, rule: Value) -> Result<u64, ServiceError> {
        if rule["fault"] == "outage" {
            Err(ServiceError::failed(std::io::Error::other(
                "secret-internal-cause: disk full",
            )))
        } else {
            Err(ServiceError::Invalid("fault: not a fault kind".into()))
        }
    }
    fn remove(&self, _: &str, _: u64) -> Result<bool, ServiceError> {
        Ok(false)
    }
}

/// A platform that is stopping.
#[derive(Debug)]
struct Stopping;

impl Upstream for Stopping {
    fn send(&self, _: UpstreamRequest) -> UpstreamFuture {
        Box::pin(async { Err(UpstreamError::Stopped) })
    }
}

#[tokio::test]
async fn platform_failures_are_5xx_pages_and_input_stays_4xx() -> Result<()> {
    let mut t = TestPortal::new(vec![ApiEntry {
        name: "account-balance".into(),
        versions: vec![version(
            &BALANCE_V1.replace("scope = \"inquiry\"", "scope = \"oob\""),
            VersionState::Live,
            1_000,
        )?],
    }])?;
    t.portal = t
        .portal
        .clone()
        .with_platform(Arc::new(Stopping))
        .with_sandbox(Arc::new(BrokenSandbox));
    let cookie = super::pages::sign_up(&t, "dev@example.com").await?;
    let (_, client_id, _) = t
        .register_app(&cookie, "name=Pay&redirect_uris=&scope=oob")
        .await?;
    let csrf = t.csrf(&cookie).await?;
    let post = |path: String, form: String| {
        let (t, cookie) = (&t, &cookie);
        async move { t.request("POST", &path, Some(cookie), &form).await }
    };

    // The developer's mistake: 400, the field named.
    let refused = post(
        format!("/portal/apps/{client_id}/faults"),
        format!("csrf={csrf}&fault=refuse"),
    )
    .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    assert!(refused.text().contains("fault: not a fault kind"));

    // The sandbox's store fails: 503, no cause shown.
    let failed = post(
        format!("/portal/apps/{client_id}/faults"),
        format!("csrf={csrf}&fault=outage"),
    )
    .await;
    assert_eq!(failed.status(), 503, "{}", failed.text());
    assert!(!failed.text().contains("secret-internal-cause"));
    assert!(failed.text().contains("Try again"), "{}", failed.text());

    // The platform is stopping: the token request is a 503, not "the
    // token endpoint refused" (400).
    let token = post(
        format!("/portal/apps/{client_id}/oob-token"),
        format!("csrf={csrf}&client_secret={}", enc("whatever")),
    )
    .await;
    assert_eq!(token.status(), 503, "{}", token.text());
    assert!(!token.text().contains("refused"), "{}", token.text());
    Ok(())
}
