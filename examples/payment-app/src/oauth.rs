//! OAuth 2.0 as a fintech app does it: the 3-legged authorization code flow
//! with PKCE for the user's token, and client credentials (`oob`) for the
//! institution's own token.
//!
//! In a real app the user's browser shows the platform's sign-in and consent
//! pages. Here the example plays that user: it reads the forms the pages
//! serve and submits them as a browser would, saying what the user sees.

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http::{Platform, Reply, form, query_param};
use crate::{AppCredentials, random_bytes};

/// What the token endpoint gave for the user.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub access_token: String,
    pub refresh_token: String,
    pub user_seq_no: String,
    pub scope: String,
    pub expires_in: u64,
}

/// The 3-legged flow, with `login_id`/`password` typed into the sign-in
/// page and every offered account ticked on the consent page.
pub async fn authorize_user(
    platform: &Platform,
    app: &AppCredentials,
    login_id: &str,
    password: &str,
    scope: &str,
    out: &mut (dyn Write + Send),
) -> Result<UserToken> {
    let verifier = base64url(&random_bytes::<32>()?);
    let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
    let state = hex(&random_bytes::<16>()?);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &app.client_id),
        ("redirect_uri", &app.redirect_uri),
        ("scope", scope),
        ("state", &state),
        ("auth_type", "0"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let path = format!("/oauth/2.0/authorize?{query}");
    writeln!(
        out,
        "   The app sends the user's browser to\n     {}{path}",
        platform.url()
    )?;

    let page = platform.send("GET", &path, &[], Vec::new()).await?;
    if page.status != 200 {
        bail!(
            "the authorize endpoint refused (HTTP {}): {}",
            page.status,
            page_error(&page)
        );
    }
    let html = page.text();
    let pending = input_values(&html, "pending")
        .into_iter()
        .next()
        .context("the sign-in page has no form (no `pending` field)")?;
    writeln!(
        out,
        "   Sign-in page: \"{}\". The user types id {login_id:?} and the password.",
        title(&html)
    )?;

    let consent = platform
        .post_form(
            "/oauth/2.0/authorize",
            &[
                ("pending", &pending),
                ("action", "login"),
                ("login_id", login_id),
                ("password", password),
            ],
        )
        .await?;
    let html = consent.text();
    let accounts = input_values(&html, "account");
    if consent.status != 200 || accounts.is_empty() {
        bail!(
            "signing in as {login_id:?} failed (HTTP {}): {}",
            consent.status,
            page_error(&consent)
        );
    }
    let scopes = input_values(&html, "scope");
    writeln!(out, "   Consent page: \"{}\"", title(&html))?;
    for s in &scopes {
        writeln!(out, "     [x] permission {s}")?;
    }
    for (i, _) in accounts.iter().enumerate() {
        let label = label_text(&html, &format!("account-{i}")).unwrap_or_default();
        writeln!(out, "     [x] account {label}")?;
    }
    writeln!(out, "   The user ticks every account and presses Agree.")?;

    let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
    fields.extend(accounts.iter().map(|a| ("account", a.as_str())));
    fields.extend(scopes.iter().map(|s| ("scope", s.as_str())));
    let redirect = platform.post_form("/oauth/2.0/authorize", &fields).await?;
    let location = match (redirect.status, redirect.header("location")) {
        (302 | 303, Some(location)) => location.to_owned(),
        _ => bail!(
            "the consent was not accepted (HTTP {}): {}",
            redirect.status,
            page_error(&redirect)
        ),
    };
    if !location.starts_with(&app.redirect_uri) {
        bail!("redirected to {location:?}, not to our redirect_uri");
    }
    if let Some(error) = query_param(&location, "error") {
        bail!(
            "the platform redirected back with error {error}: {}",
            query_param(&location, "error_description").unwrap_or_default()
        );
    }
    if query_param(&location, "state").as_deref() != Some(state.as_str()) {
        bail!("the redirect's state does not match ours: not our request");
    }
    let code = query_param(&location, "code").context("no code in the redirect")?;
    writeln!(
        out,
        "   The browser comes back to {}?code=…&state=… (state matches).",
        app.redirect_uri
    )?;

    let reply = platform
        .post_form(
            "/oauth/2.0/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("redirect_uri", &app.redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    let token = token_answer(&reply, "exchanging the code")?;
    let field = |k: &str| -> Result<String> {
        token[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the token answer has no {k}: {token}"))
    };
    let token = UserToken {
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        user_seq_no: field("user_seq_no")?,
        scope: field("scope")?,
        expires_in: token["expires_in"].as_u64().unwrap_or_default(),
    };
    writeln!(
        out,
        "   The app's server exchanges the code (with the PKCE verifier) at /oauth/2.0/token:\n     \
         user_seq_no {}, scope \"{}\", access token valid {} days",
        token.user_seq_no,
        token.scope,
        token.expires_in.div_ceil(86_400)
    )?;
    Ok(token)
}

/// The institution's own token (`client_credentials`, scope `oob`): deposits,
/// transfer results and other calls that act for the app, not for a user.
pub async fn institution_token(platform: &Platform, app: &AppCredentials) -> Result<String> {
    let reply = platform
        .post_form(
            "/oauth/2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "oob"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
            ],
        )
        .await?;
    let token = token_answer(&reply, "getting the institution (oob) token")?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the token answer has no access_token: {token}"))
}

fn token_answer(reply: &Reply, what: &str) -> Result<Value> {
    let body = reply.json().with_context(|| what.to_owned())?;
    if reply.status != 200 {
        bail!(
            "{what}: the token endpoint refused (HTTP {}): {} {}",
            reply.status,
            body["error"]
                .as_str()
                .or(body["rsp_code"].as_str())
                .unwrap_or_default(),
            body["error_description"]
                .as_str()
                .or(body["rsp_message"].as_str())
                .unwrap_or_default(),
        );
    }
    Ok(body)
}

/// Every `value` of inputs named `name`, in page order.
fn input_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest.find('"').map(|end| unescape(&rest[..end]))
        })
        .collect()
}

/// The text of `<label for="id">`, tags stripped.
fn label_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("<label for=\"{id}\">"))?;
    let rest = &html[start..];
    let rest = &rest[rest.find('>')? + 1..];
    let inner = &rest[..rest.find("</label>")?];
    Some(unescape(&strip_tags(inner)).trim().to_owned())
}

fn title(html: &str) -> String {
    html.find("<h1>")
        .and_then(|s| {
            let rest = &html[s + 4..];
            rest.find("</h1>").map(|e| unescape(&rest[..e]))
        })
        .unwrap_or_default()
}

/// The error a page shows (`<p class="error">`), or its status and text.
fn page_error(reply: &Reply) -> String {
    let html = reply.text();
    let shown = html.find("class=\"error\"").and_then(|s| {
        let rest = &html[s..];
        let rest = &rest[rest.find('>')? + 1..];
        rest.find("</p>").map(|e| unescape(&strip_tags(&rest[..e])))
    });
    shown.unwrap_or_else(|| {
        let text = strip_tags(&html);
        text.chars().take(200).collect()
    })
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// base64url without padding (RFC 7636's encoding of the PKCE values).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            base64url(&Sha256::digest(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn forms_are_read_from_the_pages() {
        let html = "<h1>Allow &quot;Pay&quot;?</h1><p class=\"error\" role=\"alert\">The id or password is not correct.</p>\
            <input type=\"checkbox\" id=\"scope-login\" name=\"scope\" value=\"login\" checked>\
            <input type=\"checkbox\" id=\"account-0\" name=\"account\" value=\"097/1&amp;2\"> \
            <label for=\"account-0\">오픈은행 110-***-890 <small>주거래</small></label>";
        assert_eq!(input_values(html, "scope"), ["login"]);
        assert_eq!(input_values(html, "account"), ["097/1&2"]);
        assert!(input_values(html, "pending").is_empty());
        assert_eq!(
            label_text(html, "account-0").as_deref(),
            Some("오픈은행 110-***-890 주거래")
        );
        assert_eq!(title(html), "Allow \"Pay\"?");
        let reply = Reply {
            status: 200,
            headers: Default::default(),
            body: html.as_bytes().to_vec().into(),
        };
        assert_eq!(page_error(&reply), "The id or password is not correct.");
    }
}
