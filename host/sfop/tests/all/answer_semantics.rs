//! Issue 17, KFTC answer semantics (ADR 0021): every reference API, listed
//! from the built plugin manifests, answers authentication failures with
//! HTTP 401 and `WWW-Authenticate`, business refusals (scope, someone else's
//! account or user, a malformed field) with HTTP 200 and the `rsp_code`, and
//! an unknown route or a wrong method with 404 and 405; always in the common
//! envelope. One platform, real tokens, every route through it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sfop::{AuthMode, TlsMode};
use sfop_core::Manifest;

use crate::auth::{VERIFIER, authorize_with, exchange, post_form, token_of};
use crate::harness::{Package, Reply, TestPlatform, assert_envelope, built_plugins, send};

/// A well-formed fintech_use_num that is not the user's.
const OTHER_ACCOUNT: &str = "120230000100000000000023";
/// A well-formed user_seq_no that is not the user's.
const OTHER_USER: &str = "1100000099";

/// What a route acts on, and so which refusals it can be asked for.
struct Case {
    /// (d): the field naming the user's resource, another's value, the code.
    other: Option<(&'static str, &'static str, &'static str)>,
    /// (e): a field and a malformed value for it (answered `A0004`).
    malformed: Option<(&'static str, &'static str)>,
}

/// Every reference API route. A route the manifests add and this table does
/// not name fails the test: its answers must be decided, not assumed.
fn cases() -> BTreeMap<&'static str, Case> {
    let account = || Case {
        other: Some(("fintech_use_num", OTHER_ACCOUNT, "A0304")),
        malformed: Some(("fintech_use_num", "12345")),
    };
    let user = || Case {
        other: Some(("user_seq_no", OTHER_USER, "A0301")),
        malformed: Some(("user_seq_no", "11000000x1")),
    };
    // Institution-level (oob) APIs act on no user's resource: (d) does not
    // apply; the plugin itself answers the format error.
    let institution = || Case {
        other: None,
        malformed: Some(("tran_dtime", "2026112212")),
    };
    BTreeMap::from([
        ("GET /v2.0/account/balance/fin_num", account()),
        ("GET /v2.0/account/transaction_list/fin_num", account()),
        ("POST /v2.0/account/cancel", account()),
        ("POST /v2.0/transfer/withdraw/fin_num", account()),
        ("GET /v2.0/account/list", user()),
        ("GET /v2.0/user/me", user()),
        (
            "GET /v2.0/bank/status",
            // Takes no fields at all: nothing to malform.
            Case {
                other: None,
                malformed: None,
            },
        ),
        ("POST /v2.0/inquiry/real_name", institution()),
        ("POST /v2.0/inquiry/receive", institution()),
        ("POST /v2.0/inquiry/remit_list", institution()),
        ("POST /v2.0/transfer/deposit/fin_num", institution()),
        ("POST /v2.0/transfer/deposit/acnt_num", institution()),
        ("POST /v2.0/transfer/result", institution()),
    ])
}

/// One route of a built reference API, with its documented example request.
struct Route {
    method: String,
    path: String,
    scope: String,
    /// A query string (GET) or a JSON body (POST).
    example: String,
}

fn reference_routes() -> Result<(Vec<String>, Vec<Route>)> {
    let dir = built_plugins()?.join("api");
    let mut names = Vec::new();
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path().join("sfop.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let manifest = Manifest::parse(&text).with_context(|| format!("{}", path.display()))?;
        names.push(manifest.name.clone());
        let docs = manifest.docs.as_ref();
        for (i, route) in manifest.routes.iter().enumerate() {
            let example = docs
                .and_then(|d| {
                    d.example
                        .iter()
                        .chain(&d.examples)
                        .find(|e| e.route.as_deref() == Some(&route.path))
                        .or(d.example.as_ref().filter(|e| e.route.is_none() && i == 0))
                })
                .map(|e| e.request.clone())
                .with_context(|| format!("{}: no example for {}", manifest.name, route.path))?;
            routes.push(Route {
                method: route.method.clone(),
                path: route.path.clone(),
                scope: manifest.scope.clone(),
                example,
            });
        }
    }
    names.sort();
    Ok((names, routes))
}

/// The example with `field` set to `value`: a query parameter, or a key of
/// the JSON body's top level.
fn with_field(route: &Route, field: &str, value: &str) -> Result<String> {
    if route.method == "GET" {
        let mut found = false;
        let pairs: Vec<String> = route
            .example
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k == field => {
                    found = true;
                    format!("{k}={value}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        if !found {
            bail!("{}: the example has no {field}", route.path);
        }
        Ok(pairs.join("&"))
    } else {
        let mut body: Value = serde_json::from_str(&route.example)?;
        let slot = body
            .get_mut(field)
            .with_context(|| format!("{}: the example has no {field}", route.path))?;
        *slot = Value::String(value.to_owned());
        Ok(body.to_string())
    }
}

struct Client<'a> {
    t: &'a TestPlatform,
}

impl Client<'_> {
    /// Sends `method path` with `request` (query or JSON body) and `token`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        request: &str,
        token: Option<&str>,
    ) -> Result<Reply> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        if method == "GET" {
            let uri = if request.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{request}")
            };
            send(self.t.addr(), method, &uri, &headers, Vec::new()).await
        } else {
            headers.push(("content-type", "application/json"));
            send(
                self.t.addr(),
                method,
                path,
                &headers,
                request.as_bytes().to_vec(),
            )
            .await
        }
    }
}

/// Asserts the answer: HTTP status, the envelope, `rsp_code` and a message.
fn expect(reply: &Reply, what: &str, status: u16, code: &str) -> Result<Value> {
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(
        (
            reply.status,
            reply
                .json()
                .ok()
                .and_then(|v| v["rsp_code"].as_str().map(str::to_owned))
        ),
        (status, Some(code.to_owned())),
        "{what}: {text}"
    );
    assert_eq!(assert_envelope(reply)?, code, "{what}");
    let body = reply.json()?;
    assert!(
        body["rsp_message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: rsp_message: {text}"
    );
    if status == 200 {
        // A business answer is no authentication challenge.
        assert_eq!(reply.header("www-authenticate"), None, "{what}");
    }
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_api_answers_with_kftc_semantics() -> Result<()> {
    let (names, routes) = reference_routes()?;
    let table = cases();
    let listed: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let tabled: Vec<String> = table.keys().map(|k| (*k).to_owned()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, tabled,
        "every built reference API route has a row in this test's table"
    );

    let t = TestPlatform::start_with(
        names
            .iter()
            .map(|n| Package::built(&format!("api/{n}")))
            .collect(),
        |c| {
            c.tls.mode = TlsMode::Off;
            c.auth.mode = AuthMode::Biscuit;
        },
    )
    .await?;
    // The seeded demo app and user hong: a user token (login inquiry
    // transfer) and the app's institution token (oob).
    let demo: Value =
        serde_json::from_slice(&std::fs::read(t.data_dir().join("demo-client.json"))?)?;
    let field = |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .context("demo-client.json")
    };
    let client = (
        field("client_id")?,
        field("client_secret")?,
        field("client_use_code")?,
    );
    let redirect = field("redirect_uri")?;
    let code = authorize_with(&t, &client.0, &redirect, "login inquiry transfer").await?;
    let (user, _) = token_of(&exchange(&t, &client, &code, VERIFIER, &redirect).await?)?;
    let (oob, _) = token_of(
        &post_form(
            &t,
            "/oauth/2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "oob"),
                ("client_id", &client.0),
                ("client_secret", &client.1),
            ],
        )
        .await?,
    )?;
    let c = Client { t: &t };

    for route in &routes {
        let key = format!("{} {}", route.method, route.path);
        let case = &table[key.as_str()];
        // A token with the route's scope, and one without it.
        let (granted, lacking) = match route.scope.as_str() {
            "oob" => (&oob, &user),
            _ => (&user, &oob),
        };
        let (m, p, ex) = (route.method.as_str(), route.path.as_str(), &route.example);

        // (a) No token: 401 O0001 with a bare Bearer challenge.
        let reply = c.call(m, p, ex, None).await?;
        expect(&reply, &format!("{key}: no token"), 401, "O0001")?;
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="sfop""#),
            "{key}"
        );

        // (b) A garbage token: 401 O0002, invalid_token.
        let reply = c.call(m, p, ex, Some("not-a-biscuit")).await?;
        expect(&reply, &format!("{key}: garbage token"), 401, "O0002")?;
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with(r#"Bearer realm="sfop""#)
                    && h.contains(r#"error="invalid_token""#)),
            "{key}: {:?}",
            reply.header("www-authenticate")
        );

        // (c) A valid token without the API's scope: 200 A0011.
        let reply = c.call(m, p, ex, Some(lacking)).await?;
        let body = expect(&reply, &format!("{key}: no scope"), 200, "A0011")?;
        assert!(
            body["rsp_message"]
                .as_str()
                .is_some_and(|m| m.contains(&route.scope)),
            "{key}: names the scope: {body}"
        );

        // (d) Someone else's account or user: 200 A0304 / A0301.
        if let Some((field, other, code)) = case.other {
            let request = with_field(route, field, other)?;
            let reply = c.call(m, p, &request, Some(granted)).await?;
            expect(&reply, &format!("{key}: another's {field}"), 200, code)?;
        }

        // (e) A malformed field: 200 A0004, the message names the field.
        if let Some((field, bad)) = case.malformed {
            let request = with_field(route, field, bad)?;
            let reply = c.call(m, p, &request, Some(granted)).await?;
            let body = expect(&reply, &format!("{key}: malformed {field}"), 200, "A0004")?;
            assert!(
                body["rsp_message"]
                    .as_str()
                    .is_some_and(|m| m.contains(field)),
                "{key}: names {field}: {body}"
            );
        }

        // (f) An unknown route: 404; a method the route does not take: 405
        // O0010 with Allow. Both before any token is looked at.
        let reply = c
            .call(m, &format!("{p}/nothing-here"), ex, Some(granted))
            .await?;
        expect(&reply, &format!("{key}: unknown route"), 404, "A0004")?;
        let wrong = if m == "GET" { "POST" } else { "GET" };
        let reply = c.call(wrong, p, "", Some(granted)).await?;
        expect(&reply, &format!("{key}: {wrong}"), 405, "O0010")?;
        assert_eq!(reply.header("allow"), Some(m), "{key}");
    }
    t.platform.stop().await
}
