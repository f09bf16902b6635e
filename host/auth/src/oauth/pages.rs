//! The HTML pages of the 3-legged flow: sign-in, consent, errors. Plain
//! server-rendered forms (no script), every value escaped.

use super::{AccountChoice, HttpResponse};
use crate::Client;

use sfop_core::html::{Chrome, document, escape};

fn page(title: &str, body: &str) -> String {
    document(
        title,
        &Chrome {
            narrow: true,
            ..Chrome::default()
        },
        body,
    )
}

fn error_line(message: Option<&str>) -> String {
    message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default()
}

pub(super) fn sign_in(client: &Client, pending: &str, message: Option<&str>) -> HttpResponse {
    let body = format!(
        "<h1>Sign in to connect {name}</h1>\
         <p><small>{name} asks to use your bank accounts through the open banking platform. \
         Sign in with your bank credentials; {name} never sees them.</small></p>{error}\
         <form method=\"post\" action=\"/oauth/2.0/authorize\">\
         <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
         <input type=\"hidden\" name=\"action\" value=\"login\">\
         <label for=\"login_id\">User ID</label><input type=\"text\" id=\"login_id\" name=\"login_id\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <p><button class=\"primary\" type=\"submit\">Sign in</button></p></form>",
        name = escape(&client.name),
        error = error_line(message),
        pending = escape(pending),
    );
    HttpResponse::html_redirecting_to(200, page("Sign in", &body), &client.redirect_uris)
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
    let scope_rows: String = scopes
        .iter()
        .map(|s| {
            format!(
                "<div class=\"row\"><input type=\"checkbox\" id=\"scope-{s}\" name=\"scope\" value=\"{s}\" checked> \
                 <label for=\"scope-{s}\"><b>{s}</b>: {text}</label></div>",
                s = escape(s),
                text = scope_text(s)
            )
        })
        .collect();
    let account_rows: String = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "<div class=\"row\"><input type=\"checkbox\" id=\"account-{i}\" name=\"account\" value=\"{id}\"> \
                 <label for=\"account-{i}\">{bank} {num} <small>{alias}</small></label></div>",
                id = escape(&a.id),
                bank = escape(&a.bank_name),
                num = escape(&a.account_num_masked),
                alias = escape(&a.account_alias),
            )
        })
        .collect();
    let body = format!(
        "<h1>Allow {name}?</h1>{error}\
         <form method=\"post\" action=\"/oauth/2.0/authorize\">\
         <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
         <fieldset><legend>Permissions</legend>{scope_rows}</fieldset>\
         <fieldset><legend>Accounts to register</legend>{account_rows}</fieldset>\
         <p><small>You can withdraw this consent at any time; {name}'s access ends at once.</small></p>\
         <p><button class=\"primary\" type=\"submit\" name=\"action\" value=\"consent\">Agree</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Decline</button></p></form>",
        name = escape(&client.name),
        error = error_line(message),
        pending = escape(pending),
    );
    // Agree and Decline end in a redirect to the app, which `form-action`
    // governs too.
    HttpResponse::html_redirecting_to(200, page("Consent", &body), &client.redirect_uris)
}

pub(super) fn error_page(status: u16, title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p>",
        escape(title),
        escape(message)
    );
    HttpResponse::html(status, page(title, &body))
}
