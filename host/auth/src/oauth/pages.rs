//! The HTML pages of the 3-legged flow: sign-in, consent, errors. Plain
//! server-rendered forms (no script), written as maud templates: every value
//! is escaped.

use maud::{Markup, html};

use super::{AccountChoice, HttpResponse};
use crate::Client;

use sfop_core::html::{Chrome, error_line, layout};

fn page(title: &str, body: Markup) -> String {
    layout(
        title,
        &Chrome {
            narrow: true,
            ..Chrome::default()
        },
        body,
    )
    .into_string()
}

pub(super) fn sign_in(client: &Client, pending: &str, message: Option<&str>) -> HttpResponse {
    let name = client.name.as_str();
    let body = html! {
        h1 { "Sign in to connect " (name) }
        p { small {
            (name) " asks to use your bank accounts through the open banking platform. \
             Sign in with your bank credentials; " (name) " never sees them."
        } }
        (error_line(message))
        form method="post" action="/oauth/2.0/authorize" {
            input type="hidden" name="pending" value=(pending);
            input type="hidden" name="action" value="login";
            label for="login_id" { "User ID" }
            input type="text" id="login_id" name="login_id" autocomplete="username" required;
            label for="password" { "Password" }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            p { button.primary type="submit" { "Sign in" } }
        }
    };
    HttpResponse::html_redirecting_to(200, page("Sign in", body), &client.redirect_uris)
}

fn scope_text(scope: &str) -> &'static str {
    match scope {
        "login" => "See your name and which accounts you registered (user info, account list)",
        "inquiry" => "See balances and transactions of the accounts you pick",
        "transfer" => "Withdraw from the accounts you pick (payments)",
        _ => "Other access",
    }
}

pub(super) fn consent(
    client: &Client,
    pending: &str,
    scopes: &[String],
    accounts: &[AccountChoice],
    message: Option<&str>,
) -> HttpResponse {
    let name = client.name.as_str();
    let body = html! {
        h1 { "Allow " (name) "?" }
        (error_line(message))
        form method="post" action="/oauth/2.0/authorize" {
            input type="hidden" name="pending" value=(pending);
            fieldset {
                legend { "Permissions" }
                @for s in scopes {
                    div.row {
                        input type="checkbox" id={ "scope-" (s) } name="scope" value=(s) checked;
                        " "
                        label for={ "scope-" (s) } { b { (s) } ": " (scope_text(s)) }
                    }
                }
            }
            fieldset {
                legend { "Accounts to register" }
                @for (i, a) in accounts.iter().enumerate() {
                    div.row {
                        input type="checkbox" id={ "account-" (i) } name="account" value=(a.id);
                        " "
                        label for={ "account-" (i) } {
                            (a.bank_name) " " (a.account_num_masked) " " small { (a.account_alias) }
                        }
                    }
                }
            }
            p { small { "You can withdraw this consent at any time; " (name) "'s access ends at once." } }
            p {
                button.primary type="submit" name="action" value="consent" { "Agree" }
                button type="submit" name="action" value="deny" { "Decline" }
            }
        }
    };
    // Agree and Decline end in a redirect to the app, which `form-action`
    // governs too.
    HttpResponse::html_redirecting_to(200, page("Consent", body), &client.redirect_uris)
}

pub(super) fn error_page(status: u16, title: &str, message: &str) -> HttpResponse {
    let body = html! {
        h1 { (title) }
        p.error { (message) }
    };
    HttpResponse::html(status, page(title, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup, quotes and an ampersand, in everything a page shows.
    const HOSTILE: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)> & Co";
    const ESCAPED: &str = "&lt;script&gt;alert('x')&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; Co";

    fn client() -> Result<Client, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "client_id": "c1",
            "name": HOSTILE,
            "redirect_uris": ["https://pay.example/cb?a=\"<x>&b=1"],
            "scopes": ["login"],
            "client_use_code": "M202300001",
            "public": true,
            "secret_hash": null,
            "salt": "",
            "created_at": 0,
        }))
    }

    fn text(r: &HttpResponse) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    fn assert_escaped(page: &str) {
        assert!(page.contains(ESCAPED), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
    }

    #[test]
    fn sign_in_escapes_the_app_name_and_the_message() -> Result<(), serde_json::Error> {
        let page = text(&sign_in(&client()?, HOSTILE, Some(HOSTILE)));
        assert_escaped(&page);
        assert_eq!(page.matches(ESCAPED).count(), 5, "{page}");
        assert!(
            page.contains("<h1>Sign in to connect &lt;script&gt;"),
            "{page}"
        );
        assert!(
            page.contains(&format!("name=\"pending\" value=\"{ESCAPED}\"")),
            "{page}"
        );
        Ok(())
    }

    #[test]
    fn consent_escapes_names_scopes_and_accounts() -> Result<(), serde_json::Error> {
        let account = AccountChoice {
            id: HOSTILE.into(),
            bank_name: HOSTILE.into(),
            account_num_masked: "1101234567***".into(),
            account_alias: HOSTILE.into(),
        };
        let page = text(&consent(
            &client()?,
            "p1",
            &["login".into(), HOSTILE.into()],
            &[account],
            Some(HOSTILE),
        ));
        assert_escaped(&page);
        assert!(
            page.contains(&format!("name=\"account\" value=\"{ESCAPED}\"")),
            "{page}"
        );
        assert!(
            page.contains("<label for=\"scope-login\"><b>login</b>: See your name"),
            "{page}"
        );
        Ok(())
    }

    #[test]
    fn error_pages_escape_title_and_message() {
        let page = text(&error_page(400, HOSTILE, HOSTILE));
        assert_escaped(&page);
        assert!(page.contains(&format!("<title>{ESCAPED} · sfop</title>")));
    }
}
