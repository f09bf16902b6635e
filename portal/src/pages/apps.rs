//! Developers and their apps: sign-up and sign-in, app registration (the
//! secret shown once), and test tokens through the consent page or client
//! credentials.

use maud::{Markup, html};

use super::*;
use crate::render::error_line;

// ---------- developers ----------

/// The hidden `next` field of the sign-in and sign-up forms, and the query
/// that carries it to the other form.
fn next_parts(next: &str) -> (Markup, String) {
    match crate::render::safe_next(next) {
        Some(next) => (
            html! { input type="hidden" name="next" value=(next); },
            format!("?next={}", encode(next)),
        ),
        None => (html! {}, String::new()),
    }
}

pub(super) fn sign_up_page(message: Option<&str>, email: &str, next: &str) -> PortalResponse {
    let (next_field, next_query) = next_parts(next);
    let body = html! {
        h1 { "Create a developer account" }
        (error_line(message))
        form method="post" action="/portal/signup" {
            (next_field)
            label for="email" { "E-mail" }
            input type="email" id="email" name="email" value=(email) autocomplete="email" required;
            label for="password" { "Password " small { "(10 characters or more)" } }
            input type="password" id="password" name="password" autocomplete="new-password" required;
            p { button.primary type="submit" { "Sign up" } }
        }
        p { small { "Already registered? " a href={ "/portal/signin" (next_query) } { "Sign in" } "." } }
    };
    narrow_page(if message.is_some() { 400 } else { 200 }, "Sign up", body)
}

pub(super) fn sign_in_page(message: Option<&str>, email: &str, next: &str) -> PortalResponse {
    let (next_field, next_query) = next_parts(next);
    let body = html! {
        h1 { "Sign in to the developer portal" }
        (error_line(message))
        form method="post" action="/portal/signin" {
            (next_field)
            label for="email" { "E-mail" }
            input type="email" id="email" name="email" value=(email) autocomplete="username" required;
            label for="password" { "Password" }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            p { button.primary type="submit" { "Sign in" } }
        }
        p { small { "New here? " a href={ "/portal/signup" (next_query) } { "Create an account" } "." } }
    };
    narrow_page(if message.is_some() { 401 } else { 200 }, "Sign in", body)
}

/// Starts a session and returns to `next` when it is a portal path (never
/// another origin), else to the developer's apps.
pub(super) fn signed_in(ctx: &Ctx<'_>, email: &str, next: &str) -> Result<PortalResponse> {
    let id = ctx.portal.developers.start_session(email)?;
    Ok(with_header(
        redirect(crate::render::safe_next(next).unwrap_or("/portal/apps")),
        "set-cookie",
        session_cookie(&id, ctx.portal.config.session_ttl_secs),
    ))
}

pub(super) async fn sign_up(ctx: &Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let email = form_get(form, "email");
    match ctx
        .portal
        .developers
        .sign_up_async(email, form_get(form, "password"))
        .await?
    {
        Ok(dev) => signed_in(ctx, &dev.email, form_get(form, "next")),
        Err(e @ (SignUpError::BadEmail | SignUpError::WeakPassword | SignUpError::Taken)) => Ok(
            sign_up_page(Some(&e.to_string()), email, form_get(form, "next")),
        ),
    }
}

pub(super) async fn sign_in(ctx: &Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let email = form_get(form, "email");
    match ctx
        .portal
        .developers
        .sign_in(email, form_get(form, "password"), ctx.req.peer)
        .await?
    {
        Ok(Some(dev)) => signed_in(ctx, &dev.email, form_get(form, "next")),
        Ok(None) => Ok(sign_in_page(
            Some("The e-mail address or password is not correct."),
            email,
            form_get(form, "next"),
        )),
        Err(wait) => {
            let mut page = sign_in_page(
                Some(&format!(
                    "Too many failed sign-ins. Wait {wait} s before trying again."
                )),
                email,
                form_get(form, "next"),
            );
            page.status = 429;
            Ok(with_header(page, "retry-after", wait.to_string()))
        }
    }
}

// ---------- apps ----------

pub(super) async fn owned_app(ctx: &Ctx<'_>, client_id: &str) -> Result<Option<sfop_auth::Client>> {
    let Some((_, session)) = &ctx.session else {
        return Ok(None);
    };
    let owns = ctx
        .portal
        .developers
        .get_async(&session.email)
        .await?
        .is_some_and(|d| d.apps.iter().any(|a| a == client_id));
    if !owns {
        return Ok(None);
    }
    Ok(ctx.portal.clients.get_async(client_id).await?)
}

pub(super) async fn apps_page(ctx: &Ctx<'_>, message: Option<&str>) -> Result<PortalResponse> {
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let developer = ctx.portal.developers.get_async(&session.email).await?;
    let mut apps = Vec::new();
    for id in developer.map(|d| d.apps).unwrap_or_default() {
        if let Some(c) = ctx.portal.clients.get_async(&id).await? {
            apps.push(c);
        }
    }
    let body = html! {
        h1 { "My apps" }
        @if apps.is_empty() {
            p.muted { "No apps yet." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "App" } th { "client_id" } th { "client_use_code" } th { "Scopes" } } }
                tbody {
                    @for c in &apps {
                        tr {
                            td { a href={ "/portal/apps/" (encode(&c.client_id)) } { (c.name) } }
                            td { code { (c.client_id) } }
                            td { (c.client_use_code) }
                            td { (scope_badges(&c.scopes)) }
                        }
                    }
                }
            } }
        }
        h2 { "Register an app" }
        (error_line(message))
        form method="post" action="/portal/apps" {
            (ctx.csrf())
            label for="name" { "App name " small { "(users see it on the consent page)" } }
            input type="text" id="name" name="name" maxlength="100" required;
            label for="redirect_uris" {
                "Redirect URIs "
                small { "(one per line, matched exactly: https://host/path, or http:// on localhost, 127.0.0.1 or [::1]; no fragment or user@)" }
            }
            textarea id="redirect_uris" name="redirect_uris" rows="3" {}
            p { small {
                "The portal's own callback " code { (ctx.callback_url()) }
                " is added, so you can get test tokens here."
            } }
            fieldset {
                legend { "Scopes" }
                @for s in SCOPES {
                    div.row {
                        input type="checkbox" id={ "scope-" (s) } name="scope" value=(s);
                        " "
                        label for={ "scope-" (s) } { b { (s) } ": " (scope_text(s)) }
                    }
                }
            }
            p { button.primary type="submit" id="register" { "Register" } }
        }
    };
    Ok(ctx.page("My apps", "/portal/apps", body))
}

pub(super) async fn register_app(
    ctx: &Ctx<'_>,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let mut redirect_uris: Vec<String> = form_get(form, "redirect_uris")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    redirect_uris.push(ctx.callback_url());
    let spec = ClientSpec {
        name: form_get(form, "name").trim().to_owned(),
        redirect_uris,
        scopes: form_all(form, "scope")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        client_use_code: None,
        public: false,
        institution: None,
    };
    let (client, secret) = match ctx.portal.clients.register_async(spec).await {
        Ok(registered) => registered,
        Err(sfop_auth::Error::Invalid(message)) => return apps_page(ctx, Some(&message)).await,
        Err(e) => return Err(e.into()),
    };
    ctx.portal
        .developers
        .add_app_async(&session.email, &client.client_id)
        .await?;
    tracing::info!(developer = %session.email, client_id = %client.client_id, "app registered on the portal");
    let body = html! {
        h1 { (client.name) " is registered" }
        p.notice {
            b { "Copy the client secret now." }
            " It is shown this once and stored only hashed; if you lose it, rotate it on the app's page."
        }
        div.table-wrap { table { tbody {
            tr { th { "client_id" } td { code #client-id { (client.client_id) } } }
            tr { th { "client_secret" } td { code #client-secret { (secret.as_deref().unwrap_or_default()) } } }
            tr { th { "client_use_code" } td { code { (client.client_use_code) } } }
            tr { th { "Scopes" } td { (scope_badges(&client.scopes)) } }
            tr { th { "Redirect URIs" } td { (uri_lines(&client.redirect_uris)) } }
        } } }
        p { a.button.primary href={ "/portal/apps/" (encode(&client.client_id)) } #continue { "Continue to the app" } }
    };
    let mut r = ctx.page("App registered", "/portal/apps", body);
    r.status = 201;
    Ok(r)
}

/// The token's accounts: bank, alias and masked number with each
/// fintech_use_num, when the account list said them.
fn token_accounts_html(t: &TestToken) -> Markup {
    html! {
        @if t.accounts.is_empty() {
            "—"
        }
        @for fin in &t.accounts {
            @match t.account_details.iter().find(|d| d.fintech_use_num == *fin) {
                Some(d) => {
                    div.token-account {
                        b.account-bank { (d.bank_name) } " (" (d.bank_code_std) ") · "
                        span.account-alias {
                            (if d.account_alias.is_empty() { "no alias" } else { &d.account_alias })
                        }
                        " · " (d.account_num_masked) br; code { (fin) }
                    }
                }
                None => { div.token-account { code { (fin) } } }
            }
        }
    }
}

pub(super) fn token_html(label: &str, t: &TestToken) -> Markup {
    html! {
        h3 { (label) }
        div.table-wrap { table { tbody {
            tr { th { "Scope" } td { (t.scope) } }
            tr { th { "User" } td { (t.user_seq_no.as_deref().unwrap_or("— (institution)")) } }
            tr {
                th { "Accounts " small { "(bank · alias · number; fintech_use_num)" } }
                td #token-accounts { (token_accounts_html(t)) }
            }
            tr { th { "Expires" } td { (kst(t.expires_at_ms)) } }
        } } }
        label { "Access token " small { "(send as " code { "Authorization: Bearer …" } ")" } }
        textarea readonly rows="3" { (t.access_token) }
    }
}

pub(super) async fn app_page(
    ctx: &Ctx<'_>,
    client_id: &str,
    message: Option<&str>,
) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id).await? else {
        return Ok(no_such_app());
    };
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let href = encode(&client.client_id);
    let institution = institution_html(ctx, &client)?;
    let head = html! {
        h1 { (client.name) }
        (error_line(message))
        div.table-wrap { table { tbody {
            tr { th { "client_id" } td { code { (client.client_id) } } }
            tr { th { "client_use_code" } td { code { (client.client_use_code) } } }
            tr { th { "Scopes" } td { (scope_badges(&client.scopes)) } }
            tr { th { "Redirect URIs" } td { (uri_lines(&client.redirect_uris)) } }
        } } }
        (institution)
        h2 { "Test tokens" }
        p.muted {
            "Tokens for calling the APIs from their pages (\"try it\") against the virtual bank. \
             Its users sign in on the consent page, e.g. " code { "hong" } " / " code { "hong1234" } "."
        }
    };
    let user_scopes: Vec<&String> = client
        .scopes
        .iter()
        .filter(|s| sfop_auth::oauth::USER_SCOPES.contains(&s.as_str()))
        .collect();
    let user_token = session
        .user_token
        .as_ref()
        .filter(|t| t.client_id == client.client_id);
    let oob_token = session
        .oob_token
        .as_ref()
        .filter(|t| t.client_id == client.client_id);
    let forms = html! {
        @if !user_scopes.is_empty() {
            form method="post" action={ "/portal/apps/" (href) "/authorize" } {
                (ctx.csrf())
                fieldset {
                    legend { "Get a user token through the consent page" }
                    @for s in &user_scopes {
                        div.row {
                            input type="checkbox" id={ "ts-" (s) } name="scope" value=(s) checked;
                            " "
                            label for={ "ts-" (s) } { b { (s) } }
                        }
                    }
                    p { button.primary type="submit" #get-user-token { "Get a user token" } }
                }
            }
        }
        @if let Some(t) = oob_token {
            (token_html("Institution (oob) token", t))
        }
        @if client.allows_scope("oob") {
            form method="post" action={ "/portal/apps/" (href) "/oob-token" } {
                (ctx.csrf())
                fieldset {
                    legend { "Get an institution (oob) token: client credentials" }
                    label for="oob-secret" { "client_secret" }
                    input type="password" id="oob-secret" name="client_secret" autocomplete="off" required;
                    p { button type="submit" { "Get an oob token" } }
                }
            }
        }
        @if !client.public {
            h2 { "Client secret" }
            p.muted {
                "If the secret leaked or someone left, rotate it: a new secret is shown once, and the old one \
                 stops working at once (token requests with it are refused). Tokens already issued stay valid \
                 until they expire."
            }
            form method="post" action={ "/portal/apps/" (href) "/secret" } {
                (ctx.csrf())
                p { button type="submit" #rotate-secret { "Rotate the client secret" } }
            }
        }
    };
    let body = html! {
        (head)
        @if let Some(t) = user_token { (token_html("User token", t)) }
        (forms)
        @if let Some(sandbox) = &ctx.portal.sandbox {
            (faults_html(ctx, sandbox.as_ref(), &client.client_id))
        }
    };
    Ok(ctx.page(&client.name, "/portal/apps", body))
}

/// `POST /portal/apps/{id}/secret`: a new client secret for the developer's
/// own app, shown this once; the old one no longer authenticates.
pub(super) async fn rotate_secret(ctx: &Ctx<'_>, client_id: &str) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id).await? else {
        return Ok(no_such_app());
    };
    let secret = match ctx
        .portal
        .clients
        .rotate_secret_async(&client.client_id)
        .await
    {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(no_such_app()),
        Err(sfop_auth::Error::Invalid(message)) => {
            return refused_on_app_page(ctx, client_id, &message).await;
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((_, session)) = &ctx.session {
        tracing::info!(developer = %session.email, client_id = %client.client_id, "client secret rotated on the portal");
    }
    let body = html! {
        h1 { "New secret for " (client.name) }
        p.notice #rotated {
            b { "Copy the new client secret now." }
            " It is shown this once and stored only hashed. The old secret no longer works."
        }
        div.table-wrap { table { tbody {
            tr { th { "client_id" } td { code #client-id { (client.client_id) } } }
            tr { th { "client_secret" } td { code #client-secret { (secret) } } }
        } } }
        p { a.button.primary href={ "/portal/apps/" (encode(&client.client_id)) } #continue { "Back to the app" } }
    };
    Ok(ctx.page("Client secret rotated", "/portal/apps", body))
}

/// The ledger operations a fault can name, for the form.
const FAULT_OPERATIONS: &[&str] = &[
    "bank-status",
    "user-info",
    "registered-accounts",
    "balance",
    "transactions",
    "remit-list",
    "withdraw",
    "deposit",
    "transfer-result",
    "real-name",
    "receive",
    "cancel-account",
];

/// The app's scripted faults with a remove button each, and the form to add one.
fn faults_html(ctx: &Ctx<'_>, sandbox: &dyn crate::Sandbox, client_id: &str) -> Markup {
    let href = encode(client_id);
    let rules = sandbox.rules(client_id);
    let text = |v: &Value, or: &str| v.as_str().unwrap_or(or).to_owned();
    html! {
        h2 { "Sandbox faults" }
        p.muted {
            "Script the virtual bank for this app only, as a real bank misbehaves: "
            b { "timeout" } " (the bank books it, the answer is lost: A0017, find it with transfer result), "
            b { "outage" } " (A0017, nothing happens; bank status N), " b { "duplicate" } " (A0326), "
            b { "refuse" } " (your rsp_code, or a bank code as A0009). Other apps are not affected."
        }
        @if rules.is_empty() {
            p.muted #no-faults { "None: this app sees the stateful virtual bank." }
        } @else {
            div.table-wrap { table #faults {
                thead { tr {
                    th { "Id" } th { "Operation" } th { "Fault" } th { "Bank" } th { "Times left" } th { "Detail" } th {}
                } }
                tbody {
                    @for rule in &rules {
                        @let id = rule["id"].as_u64().unwrap_or_default();
                        @let detail = ["rsp_code", "bank_rsp_code", "rsp_message", "fixture"]
                            .iter()
                            .filter(|k| !rule[**k].is_null())
                            .map(|k| format!("{k}={}", rule[*k]))
                            .collect::<Vec<_>>()
                            .join(" ");
                        tr {
                            td { (id) }
                            td { (text(&rule["operation"], "any")) }
                            td { (text(&rule["fault"], "?")) }
                            td { (text(&rule["bank_code"], "any")) }
                            td { (rule["times"].as_u64().map_or("until removed".to_owned(), |n| n.to_string())) }
                            td { (detail) }
                            td {
                                form method="post" action={ "/portal/apps/" (href) "/faults/remove" } {
                                    (ctx.csrf())
                                    input type="hidden" name="id" value=(id);
                                    button type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        form method="post" action={ "/portal/apps/" (href) "/faults" } {
            (ctx.csrf())
            fieldset {
                legend { "Add a fault" }
                label for="f-fault" { "Fault" }
                select #f-fault name="fault" {
                    @for o in ["timeout", "outage", "duplicate", "refuse"] { option value=(o) { (o) } }
                }
                label for="f-operation" { "Operation" }
                select #f-operation name="operation" {
                    option value="" { "any" }
                    @for o in FAULT_OPERATIONS { option value=(o) { (o) } }
                }
                label for="f-times" { "Times " small { "(empty: until removed)" } }
                input type="number" min="1" id="f-times" name="times";
                label for="f-bank" { "Bank code " small { "(optional, 3 digits)" } }
                input type="text" id="f-bank" name="bank_code" maxlength="3";
                label for="f-rsp" { "rsp_code " small { "(refuse)" } }
                input type="text" id="f-rsp" name="rsp_code" maxlength="5";
                label for="f-bank-rsp" { "bank_rsp_code " small { "(refuse)" } }
                input type="text" id="f-bank-rsp" name="bank_rsp_code" maxlength="3";
                p { button type="submit" #add-fault { "Add the fault" } }
            }
        }
    }
}

fn no_such_app() -> PortalResponse {
    error_page(404, "No such app", "You have no app with this client_id.")
}

/// `POST /portal/apps/{id}/faults`: a fault for the developer's own app.
pub(super) async fn add_fault(
    ctx: &Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let (Some(client), Some(sandbox)) = (owned_app(ctx, client_id).await?, &ctx.portal.sandbox)
    else {
        return Ok(no_such_app());
    };
    let mut rule = serde_json::Map::new();
    for key in [
        "fault",
        "operation",
        "bank_code",
        "rsp_code",
        "bank_rsp_code",
    ] {
        let value = form_get(form, key).trim();
        if !value.is_empty() {
            rule.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
    let times = form_get(form, "times").trim();
    if !times.is_empty() {
        let Ok(n) = times.parse::<u64>() else {
            return refused_on_app_page(ctx, client_id, "times: not a whole number").await;
        };
        rule.insert("times".to_owned(), Value::from(n));
    }
    match sandbox.add(&client.client_id, Value::Object(rule)) {
        Ok(id) => {
            tracing::info!(client_id = %client.client_id, id, "sandbox fault added on the portal");
            Ok(redirect(&format!(
                "/portal/apps/{}",
                encode(&client.client_id)
            )))
        }
        Err(ServiceError::Invalid(message)) => refused_on_app_page(ctx, client_id, &message).await,
        Err(ServiceError::Failed(source)) => Err(Error::Service {
            what: "changing the sandbox's faults",
            source,
        }),
    }
}

/// The app's page again with `message`, for input it refused (400).
async fn refused_on_app_page(
    ctx: &Ctx<'_>,
    client_id: &str,
    message: &str,
) -> Result<PortalResponse> {
    let mut page = app_page(ctx, client_id, Some(message)).await?;
    page.status = 400;
    Ok(page)
}

/// `POST /portal/apps/{id}/faults/remove`.
pub(super) async fn remove_fault(
    ctx: &Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let (Some(client), Some(sandbox)) = (owned_app(ctx, client_id).await?, &ctx.portal.sandbox)
    else {
        return Ok(no_such_app());
    };
    let Ok(id) = form_get(form, "id").parse::<u64>() else {
        return refused_on_app_page(ctx, client_id, "id: not a rule id").await;
    };
    match sandbox.remove(&client.client_id, id) {
        Ok(_) => Ok(redirect(&format!(
            "/portal/apps/{}",
            encode(&client.client_id)
        ))),
        Err(ServiceError::Invalid(message)) => refused_on_app_page(ctx, client_id, &message).await,
        Err(ServiceError::Failed(source)) => Err(Error::Service {
            what: "changing the sandbox's faults",
            source,
        }),
    }
}

pub(super) async fn start_authorization(
    ctx: &mut Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id).await? else {
        return Ok(no_such_app());
    };
    let scopes: Vec<&str> = form_all(form, "scope")
        .into_iter()
        .filter(|s| client.allows_scope(s) && sfop_auth::oauth::USER_SCOPES.contains(s))
        .collect();
    if scopes.is_empty() {
        return refused_on_app_page(ctx, client_id, "scope: pick at least one of the app's").await;
    }
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        state: random_hex(16)?,
        code_verifier: random_hex(32)?,
    };
    let challenge = sfop_auth::oauth::pkce_s256(&pending.code_verifier);
    let location = format!(
        "/oauth/2.0/authorize?{}",
        sfop_core::form::serialize([
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", ctx.callback_url().as_str()),
            ("scope", scopes.join(" ").as_str()),
            ("state", pending.state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
    );
    if let Some((id, session)) = &mut ctx.session {
        session.pending = Some(pending);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&location))
}

pub(super) fn callback_page(ctx: &Ctx<'_>) -> PortalResponse {
    let q = parse_form(ctx.req.query.as_bytes());
    let pending = ctx.session.as_ref().and_then(|(_, s)| s.pending.as_ref());
    let Some(pending) = pending.filter(|p| p.state == form_get(&q, "state")) else {
        return error_page(
            400,
            "Authorization not recognised",
            "This callback does not match an authorization you started here. Start again from your app's page.",
        );
    };
    if !form_get(&q, "error").is_empty() {
        return error_page(
            400,
            "Authorization refused",
            &format!(
                "{} ({})",
                form_get(&q, "error_description"),
                form_get(&q, "error")
            ),
        );
    }
    let body = html! {
        h1 { "Exchange the code for a token" }
        p {
            "The user agreed; the platform sent back an authorization code for " code { (pending.client_id) }
            " with scope " code { (form_get(&q, "scope")) } ". Your server would now call "
            code { "POST /oauth/2.0/token" } " with the code, the PKCE verifier and its client secret. \
             The portal does it for you: enter the secret you were shown at registration."
        }
        form method="post" action="/portal/callback" {
            (ctx.csrf())
            input type="hidden" name="code" value=(form_get(&q, "code"));
            label for="client_secret" { "client_secret" }
            input type="password" id="client_secret" name="client_secret" autocomplete="off" required;
            p { button.primary type="submit" #exchange { "Get the token" } }
        }
    };
    ctx.page("Exchange the code", "/portal/apps", body)
}

/// POSTs a form to the token endpoint; the JSON answer or the reason it
/// gave. `Err` when the platform could not be asked at all.
pub(super) async fn token_request(
    ctx: &Ctx<'_>,
    fields: &[(&str, &str)],
) -> Result<std::result::Result<Value, String>> {
    let body = sfop_core::form::serialize(fields.iter().copied());
    let answer = ctx
        .call_platform(
            "POST",
            "/oauth/2.0/token".into(),
            vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body.into_bytes(),
        )
        .await?;
    if answer.status >= 500 {
        return Err(Error::PlatformAnswered {
            what: "the token request",
            status: answer.status,
        });
    }
    let Ok(json) = serde_json::from_slice::<Value>(&answer.body) else {
        return Ok(Err(format!(
            "the token endpoint answered {}",
            answer.status
        )));
    };
    if answer.status != 200 {
        return Ok(Err(format!(
            "{} ({})",
            json["rsp_message"].as_str().unwrap_or("refused"),
            json["rsp_code"].as_str().unwrap_or_default()
        )));
    }
    Ok(Ok(json))
}

pub(super) fn test_token(client: &sfop_auth::Client, json: &Value) -> Option<TestToken> {
    Some(TestToken {
        client_id: client.client_id.clone(),
        client_use_code: client.client_use_code.clone(),
        access_token: json["access_token"].as_str()?.to_owned(),
        scope: json["scope"].as_str().unwrap_or_default().to_owned(),
        user_seq_no: json["user_seq_no"].as_str().map(str::to_owned),
        accounts: Vec::new(),
        account_details: Vec::new(),
        expires_at_ms: sfop_core::time::now_millis()
            + json["expires_in"].as_u64().unwrap_or_default() * 1000,
        contract_account: None,
    })
}

// ---------- institutions ----------

/// The app's institution, for its test tokens: its first verified
/// contract account ("try it" pre-fills `cntr_account_num` with it).
fn contract_account_of(ctx: &Ctx<'_>, client: &sfop_auth::Client) -> Option<String> {
    let institution = ctx
        .portal
        .institutions
        .as_ref()?
        .get(&client.client_use_code)
        .ok()??;
    institution.contract_account().map(str::to_owned)
}

fn won(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} won")
}

/// The app page's institution section: the institution with its contract
/// accounts and limits, or the form to request one.
fn institution_html(ctx: &Ctx<'_>, client: &sfop_auth::Client) -> Result<Markup> {
    let Some(institutions) = &ctx.portal.institutions else {
        return Ok(html! {});
    };
    let href = encode(&client.client_id);
    let limits = |l: &[u64; 3]| format!("{} / {} / {}", won(l[0]), won(l[1]), won(l[2]));
    Ok(match institutions.get(&client.client_use_code) {
        Ok(Some(i)) => html! {
            h2 { "Institution" }
            div.table-wrap { table #institution { tbody {
                tr { th { "Name" } td { (i.name) } }
                tr { th { "client_use_code" } td { code { (i.client_use_code) } } }
                tr {
                    th { "State" }
                    td #institution-state {
                        @match i.state.as_str() {
                            "active" => { span.badge.live { "active" } }
                            "requested" => { span.badge.canary { "requested: waiting for the operator's approval" } }
                            other => { span.badge.retired { (other) } }
                        }
                    }
                }
                tr {
                    th { "Withdrawal limits " small { "(per transaction / daily / monthly)" } }
                    td { (limits(&i.withdraw_limits)) }
                }
                tr {
                    th { "Deposit limits " small { "(per transaction / daily / monthly)" } }
                    td { (limits(&i.deposit_limits)) }
                }
            } } }
            @if i.contract_accounts.is_empty() {
                p.muted { "No contract account yet: the operator registers one." }
            } @else {
                div.table-wrap { table #contract-accounts {
                    thead { tr {
                        th { "Bank" } th { "Contract account (cntr_account_num)" } th { "Holder" }
                        th { "Status" } th { "Balance (won)" }
                    } }
                    tbody {
                        @for a in &i.contract_accounts {
                            tr {
                                td { (a.bank_name) " (" (a.bank_code_std) ")" }
                                td { code.contract-account { (a.account_num) } }
                                td { (a.account_holder_name) }
                                td { (if a.verified { "verified" } else { "waiting for verification" }) }
                                td { (a.balance_amt) }
                            }
                        }
                    }
                } }
            }
            p.muted {
                "Withdrawals are collected into the contract account and deposits are paid from it. \
                 Every app of the institution shares it and its limits."
            }
        },
        Ok(None) => html! {
            h2 { "Institution" }
            p {
                "To move money (withdraw, deposit), the app needs an institution with a contract account \
                 (where withdrawals are collected and deposits are paid from). Request one; the platform \
                 operator approves it."
            }
            form method="post" action={ "/portal/apps/" (href) "/institution" } {
                (ctx.csrf())
                label for="institution-name" { "Institution (company) name" }
                input type="text" id="institution-name" name="name" maxlength="50" required;
                div.row {
                    input type="checkbox" id="sandbox-account" name="sandbox_account" value="yes" checked;
                    " "
                    label for="sandbox-account" {
                        "Open a sandbox contract account at the virtual bank (opened at once, with test funds)"
                    }
                }
                p { button.primary type="submit" #request-institution { "Request the institution" } }
            }
        },
        Err(ServiceError::Invalid(message)) => html! {
            h2 { "Institution" }
            p.error { (message) }
        },
        Err(ServiceError::Failed(source)) => {
            return Err(Error::Service {
                what: "reading the app's institution",
                source,
            });
        }
    })
}

/// `POST /portal/apps/{id}/institution`: the developer requests an
/// institution for their app, pending until the operator approves it.
pub(super) async fn request_institution(
    ctx: &Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let (Some(client), Some(institutions)) =
        (owned_app(ctx, client_id).await?, &ctx.portal.institutions)
    else {
        return Ok(no_such_app());
    };
    let sandbox_account = form_get(form, "sandbox_account") == "yes";
    match institutions.request(
        &client.client_use_code,
        form_get(form, "name").trim(),
        sandbox_account,
    ) {
        Ok(_) => {
            tracing::info!(client_id = %client.client_id, client_use_code = %client.client_use_code, "institution requested on the portal");
            Ok(redirect(&format!(
                "/portal/apps/{}",
                encode(&client.client_id)
            )))
        }
        Err(ServiceError::Invalid(message)) => refused_on_app_page(ctx, client_id, &message).await,
        Err(ServiceError::Failed(source)) => Err(Error::Service {
            what: "requesting an institution",
            source,
        }),
    }
}

/// The accounts the token may use, from the account list API (when it is
/// live and the token has `login`): fintech_use_num with bank and alias.
pub(super) async fn accounts_of(ctx: &Ctx<'_>, token: &TestToken) -> Vec<TokenAccount> {
    let Some(user) = &token.user_seq_no else {
        return Vec::new();
    };
    if !token.scope.split_whitespace().any(|s| s == "login") {
        return Vec::new();
    }
    let answer = ctx
        .call_platform(
            "GET",
            format!(
                "/v2.0/account/list?user_seq_no={}&include_cancel_yn=N&sort_order=D",
                encode(user)
            ),
            vec![(
                "authorization".into(),
                format!("Bearer {}", token.access_token),
            )],
            Vec::new(),
        )
        .await;
    let Ok(answer) = answer else {
        return Vec::new();
    };
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let text = |a: &Value, k: &str| a[k].as_str().unwrap_or_default().to_owned();
    json["res_list"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|a| a["fintech_use_num"].is_string())
                .map(|a| TokenAccount {
                    fintech_use_num: text(a, "fintech_use_num"),
                    bank_code_std: text(a, "bank_code_std"),
                    bank_name: text(a, "bank_name"),
                    account_alias: text(a, "account_alias"),
                    account_num_masked: text(a, "account_num_masked"),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) async fn exchange_code(
    ctx: &mut Ctx<'_>,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(pending) = ctx.session.as_ref().and_then(|(_, s)| s.pending.clone()) else {
        return Ok(error_page(
            400,
            "Authorization not recognised",
            "Start again from your app's page.",
        ));
    };
    let Some(client) = owned_app(ctx, &pending.client_id).await? else {
        return Ok(no_such_app());
    };
    let callback = ctx.callback_url();
    let answer = token_request(
        ctx,
        &[
            ("grant_type", "authorization_code"),
            ("code", form_get(form, "code")),
            ("client_id", &client.client_id),
            ("client_secret", form_get(form, "client_secret")),
            ("redirect_uri", &callback),
            ("code_verifier", &pending.code_verifier),
        ],
    )
    .await?;
    let token = match answer.map(|json| test_token(&client, &json)) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Ok(error_page(
                502,
                "No token",
                "The token endpoint sent no access_token.",
            ));
        }
        Err(message) => {
            return Ok(error_page(
                400,
                "The token endpoint refused",
                &format!("{message}. Start again from your app's page."),
            ));
        }
    };
    let details = accounts_of(ctx, &token).await;
    let token = TestToken {
        accounts: details.iter().map(|d| d.fintech_use_num.clone()).collect(),
        account_details: details,
        contract_account: contract_account_of(ctx, &client),
        ..token
    };
    if let Some((id, session)) = &mut ctx.session {
        session.pending = None;
        session.user_token = Some(token);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&format!(
        "/portal/apps/{}",
        encode(&client.client_id)
    )))
}

pub(super) async fn oob_token(
    ctx: &mut Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id).await? else {
        return Ok(no_such_app());
    };
    let answer = token_request(
        ctx,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", &client.client_id),
            ("client_secret", form_get(form, "client_secret")),
        ],
    )
    .await?;
    let token = match answer.map(|json| test_token(&client, &json)) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return app_page(
                ctx,
                client_id,
                Some("The token endpoint sent no access_token."),
            )
            .await;
        }
        Err(message) => return refused_on_app_page(ctx, client_id, &message).await,
    };
    let token = TestToken {
        contract_account: contract_account_of(ctx, &client),
        ..token
    };
    if let Some((id, session)) = &mut ctx.session {
        session.oob_token = Some(token);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&format!("/portal/apps/{}", encode(client_id))))
}

/// An app's scopes as badges.
fn scope_badges(scopes: &[String]) -> Markup {
    html! {
        @for (i, s) in scopes.iter().enumerate() {
            @if i > 0 { " " }
            span.badge.scope { (s) }
        }
    }
}

/// An app's redirect URIs, one a line.
fn uri_lines(uris: &[String]) -> Markup {
    html! {
        @for (i, u) in uris.iter().enumerate() {
            @if i > 0 { br; }
            code { (u) }
        }
    }
}
