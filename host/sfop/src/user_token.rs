//! `sfop token user`: a sandbox user's access token through the platform's
//! real 3-legged flow (authorize pages with PKCE, then the token endpoint),
//! played by the CLI as a browser would, so that a team can call a user API
//! without scripting HTML forms.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use sfop_admin_api::clients::{CLIENTS, ClientsAnswer};
use sfop_core::form;

use crate::cli::Target;

/// What `sfop token user` was asked for.
#[derive(Debug)]
pub struct UserTokenRequest {
    pub login: String,
    /// `None`: the seeded password of a virtual-bank user.
    pub password: Option<String>,
    pub client_id: String,
    /// `None`: the demo app's secret from `DATA_DIR/demo-client.json`, or a
    /// public client.
    pub client_secret: Option<String>,
    /// `None`: the client's first registered redirect URI.
    pub redirect_uri: Option<String>,
    /// Empty: every user scope the client may ask for.
    pub scopes: Vec<String>,
    pub data_dir: PathBuf,
}

/// The user scopes, in the order consent pages show them.
const USER_SCOPES: &[&str] = &["login", "inquiry", "transfer"];

/// `DATA_DIR/demo-client.json`, written by the first start.
#[derive(Debug, Deserialize)]
struct DemoClient {
    client_id: String,
    client_secret: String,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    scope: String,
    user_seq_no: String,
}

/// Runs the flow and prints the access token on stdout (what it is for on
/// stderr).
pub async fn user_token(target: &Target, req: UserTokenRequest) -> Result<()> {
    let list: ClientsAnswer = target
        .client()?
        .get(CLIENTS)
        .await
        .context("listing the clients")?;
    let client = list
        .res_list
        .into_iter()
        .find(|c| c.client_id == req.client_id)
        .with_context(|| format!("no client {} (sfop client list shows them)", req.client_id))?;
    let redirect_uri = match req.redirect_uri {
        Some(uri) => uri,
        None => client.redirect_uris.first().cloned().with_context(|| {
            format!("client {} has no redirect URI registered", client.client_id)
        })?,
    };
    let scopes: Vec<String> = if req.scopes.is_empty() {
        USER_SCOPES
            .iter()
            .filter(|s| client.scopes.iter().any(|c| c == *s))
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        req.scopes
    };
    let secret = match req.client_secret {
        Some(secret) => Some(secret),
        None => demo_secret(&req.data_dir, &client.client_id)?,
    };
    let password = match req.password {
        Some(p) => p,
        None => sfop_vbank::seed::USERS
            .iter()
            .find(|u| u.login_id == req.login)
            .map(|u| u.password.to_owned())
            .with_context(|| {
                format!(
                    "{} is not a seeded virtual-bank user: give --password",
                    req.login
                )
            })?,
    };
    let https = Pages::new(&target.url, &target.cacert)?;

    // 1. The app sends the browser to the authorize page, with PKCE.
    let verifier = random_hex(32)?;
    let state = random_hex(16)?;
    let scope = scopes.join(" ");
    let challenge = sfop_auth::oauth::pkce_s256(&verifier);
    let query = encode(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", &redirect_uri),
        ("scope", &scope),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let page = https
        .send(Method::GET, &format!("/oauth/2.0/authorize?{query}"), None)
        .await?;
    let refused = |what: &str, page: &Reply| {
        anyhow::anyhow!(
            "{what} (HTTP {}{}): {}",
            page.status,
            page.location
                .as_deref()
                .map(|l| format!(", to {l}"))
                .unwrap_or_default(),
            page.error_text()
        )
    };
    let pending = match (page.status, page.values("pending").into_iter().next()) {
        (200, Some(p)) => p,
        _ => return Err(refused("the authorize page refused the request", &page)),
    };

    // 2. The user signs in.
    let consent = https
        .send(
            Method::POST,
            "/oauth/2.0/authorize",
            Some(encode(&[
                ("pending", &pending),
                ("action", "login"),
                ("login_id", &req.login),
                ("password", &password),
            ])),
        )
        .await?;
    let accounts = consent.values("account");
    let offered = consent.values("scope");
    if consent.status != 200 || offered.is_empty() {
        return Err(refused(
            &format!("signing in as {} failed", req.login),
            &consent,
        ));
    }

    // 3. And agrees: every scope asked for, every account offered.
    let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
    fields.extend(offered.iter().map(|s| ("scope", s.as_str())));
    fields.extend(accounts.iter().map(|a| ("account", a.as_str())));
    let back = https
        .send(Method::POST, "/oauth/2.0/authorize", Some(encode(&fields)))
        .await?;
    let location = match (back.status, &back.location) {
        (302 | 303, Some(l)) => l.clone(),
        _ => return Err(refused("the consent was not accepted", &back)),
    };
    let returned = form::parse(location.split_once('?').map_or("", |(_, q)| q).as_bytes());
    if let Some(error) = returned.get("error") {
        bail!(
            "the platform redirected with {error}: {}",
            returned.get("error_description").unwrap_or_default()
        );
    }
    if returned.get("state") != Some(state.as_str()) {
        bail!("the redirect's state is not ours: {location}");
    }
    let code = returned.get("code").context("no code in the redirect")?;

    // 4. The app's server exchanges the code.
    let mut token_form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", client.client_id.as_str()),
    ];
    if let Some(secret) = &secret {
        token_form.push(("client_secret", secret));
    }
    let reply = https
        .send(Method::POST, "/oauth/2.0/token", Some(encode(&token_form)))
        .await?;
    if reply.status != 200 {
        return Err(refused("the token endpoint refused the code", &reply));
    }
    let token: TokenAnswer =
        serde_json::from_slice(&reply.body).context("the token endpoint's answer")?;
    eprintln!(
        "user {} ({}), client {}, scope \"{}\", {} account(s) registered",
        req.login,
        token.user_seq_no,
        client.client_id,
        token.scope,
        accounts.len()
    );
    println!("{}", token.access_token);
    Ok(())
}

/// The demo app's secret when `client_id` is the demo app, else `None`.
fn demo_secret(data_dir: &Path, client_id: &str) -> Result<Option<String>> {
    let path = data_dir.join("demo-client.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let demo: DemoClient =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok((demo.client_id == client_id).then_some(demo.client_secret))
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form::serialize(pairs.iter().copied())
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buf))
}

/// One answer of the platform.
#[derive(Debug)]
struct Reply {
    status: u16,
    location: Option<String>,
    body: Bytes,
}

impl Reply {
    /// The `value`s of the form inputs named `name`, in page order.
    fn values(&self, name: &str) -> Vec<String> {
        let html = String::from_utf8_lossy(&self.body);
        let marker = format!("name=\"{name}\" value=\"");
        html.match_indices(&marker)
            .filter_map(|(at, _)| {
                let rest = &html[at + marker.len()..];
                rest.find('"').map(|end| unescape(&rest[..end]))
            })
            .collect()
    }

    /// The error a page or JSON answer shows.
    fn error_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&self.body) {
            return json.to_string();
        }
        match text.find("class=\"error\"") {
            Some(at) => {
                let rest = &text[at..];
                let start = rest.find('>').map_or(0, |i| i + 1);
                let end = rest.find("</p>").unwrap_or(rest.len());
                unescape(rest.get(start..end).unwrap_or_default())
            }
            None => text.chars().take(200).collect(),
        }
    }
}

/// Text of the page as its reader sees it: every character reference
/// decoded (maud writes `&amp;`, `&lt;`, `&gt;` and `&quot;`).
fn unescape(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// The platform's OAuth pages and token endpoint, through the CLI's one
/// HTTP client ([`sfop::admin_client::platform_client`]).
struct Pages {
    http: reqwest::Client,
    base: String,
}

impl Pages {
    fn new(url: &str, cacert: &Path) -> Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        Ok(Self {
            http: sfop::admin_client::platform_client(&base, cacert)?,
            base,
        })
    }

    async fn send(&self, method: Method, path: &str, form_body: Option<String>) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = form_body {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        Ok(Reply {
            status,
            location,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::unescape;

    /// What maud escapes (`&`, `<`, `>`, `"`) comes back as written,
    /// decoded once: an escaped entity stays an entity, numeric references
    /// decode too.
    #[test]
    fn page_text_is_decoded_once() {
        let page = "&lt;b&gt;&quot;Tom &amp; Jerry's&quot; &amp;lt;tag&amp;gt;&lt;/b&gt;";
        assert_eq!(unescape(page), r#"<b>"Tom & Jerry's" &lt;tag&gt;</b>"#);
        assert_eq!(unescape("&#39;&#x41;&amp;amp;"), "'A&amp;");
    }
}
