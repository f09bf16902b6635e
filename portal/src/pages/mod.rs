//! The portal's pages and their routes. Every page reads the catalogue
//! afresh. Every page is a maud template: every string that came from a
//! package, a developer or an API answer is escaped by the template
//! (docs/adr/0025); the only `PreEscaped` are the testbed's report (escaped
//! by the testbed), the stylesheet and the feed's XML declaration.

mod apps;
mod docs;
mod keys;
mod reference;
mod samples;
mod search;
mod status;
mod try_it;

use std::fmt::Write as _;

use serde_json::Value;
use sfop_auth::ClientSpec;

use crate::changes::{Notice, notices};
use crate::developers::{PendingAuthorization, Session, SignUpError, TestToken, TokenAccount};
use crate::openapi::parse_kind;
use crate::render::{
    COOKIE, Viewer, cookie_value, encode, error_page, form_all, form_get, json_response, kst,
    narrow_page, page, parse_form, pretty_json, redirect, rfc3339, scope_text, session_cookie,
    with_header,
};
use crate::{
    ApiEntry, Error, Portal, PortalRequest, PortalResponse, Result, ServiceError, UpstreamRequest,
    VersionEntry, VersionState, random_hex,
};

use apps::*;
use docs::*;
use keys::*;
use reference::*;
use samples::*;
use search::*;
use status::*;
use try_it::*;

const SCOPES: &[&str] = &["login", "inquiry", "transfer", "oob"];

/// The fields of the portal's forms that may repeat (checkboxes).
const FORM_LISTS: &[&str] = &["scope"];

/// The request in the portal's terms.
struct Ctx<'a> {
    portal: &'a Portal,
    req: &'a PortalRequest,
    /// The session cookie's value and the session, when signed in.
    session: Option<(String, Session)>,
    viewer: Viewer,
}

impl Ctx<'_> {
    fn base_url(&self) -> String {
        let authority = self.req.authority.as_deref().unwrap_or("localhost");
        format!("{}://{authority}", self.portal.config.scheme)
    }

    fn callback_url(&self) -> String {
        format!("{}/portal/callback", self.base_url())
    }

    fn page(&self, title: &str, current: &str, body: maud::Markup) -> PortalResponse {
        page(200, title, current, &self.viewer, body)
    }

    /// A page with the portal's script (copy buttons, version selector),
    /// sent with a policy that allows scripts from this origin only.
    fn scripted_page(&self, title: &str, current: &str, body: maud::Markup) -> PortalResponse {
        crate::render::scripted_page(
            title,
            current,
            &self.viewer,
            body,
            &[crate::assets::url(crate::assets::PORTAL_JS)],
            sfop_core::html::CSP_SELF_SCRIPTS,
        )
    }

    /// Sends a request to the platform on this developer's behalf: with the
    /// `Host` their browser used and their address, so the platform's
    /// throttles count them, not the portal.
    async fn call_platform(
        &self,
        method: &str,
        path_and_query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> std::result::Result<crate::UpstreamResponse, crate::UpstreamError> {
        self.portal
            .call(UpstreamRequest {
                method: method.to_owned(),
                path_and_query,
                headers,
                body,
                authority: self.req.authority.clone(),
                peer: self.req.peer,
            })
            .await
    }

    /// The hidden CSRF field of a form.
    fn csrf(&self) -> maud::Markup {
        maud::html! { input type="hidden" name="csrf" value=(self.viewer.csrf); }
    }
}

/// The path and query of a GET request, to come back to.
fn page_path(req: &PortalRequest) -> String {
    if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    }
}

/// The validated `next` of a sign-in or sign-up page's query; empty when
/// there is none or it is not a portal path.
fn query_next(req: &PortalRequest) -> String {
    let q = parse_form(req.query.as_bytes());
    crate::render::safe_next(form_get(&q, "next"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether a browser sent `req` from another site than the portal at
/// `base` (`scheme://authority`): by Fetch Metadata (`Sec-Fetch-Site`,
/// which every current browser sends), else by `Origin` (an opaque `null`
/// included). A client that sends neither (curl, a script) is no browser
/// acting for someone else.
fn cross_site(req: &PortalRequest, base: &str) -> bool {
    match req.fetch_site.as_deref() {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => req
            .origin
            .as_deref()
            .is_some_and(|origin| !origin.eq_ignore_ascii_case(base)),
    }
}

/// A page of the portal: what the platform's one router resolved a request
/// to (the routes are in `host/sfop/src/portal.rs`), with the path's
/// parameters, percent-decoded. The method is part of the page: the
/// router answers a method a path lacks with its 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `GET /portal`: the catalogue.
    Catalogue,
    /// `GET /portal/apis/{name}`.
    Api { name: String },
    /// `GET /portal/openapi.json`.
    OpenApi,
    /// `GET /portal/permissions`.
    Permissions,
    /// `GET /portal/keys`.
    Keys,
    /// `GET /portal/changes`.
    Changes,
    /// `GET /portal/changes.atom`.
    ChangesFeed,
    /// `GET /portal/reports/{name}/{version}`.
    Report { name: String, version: String },
    /// `GET /portal/search`.
    Search,
    /// `GET /portal/status`.
    Status,
    /// `GET /portal/reference`.
    Reference,
    /// `GET /portal/assets/{*file}`.
    Asset { file: String },
    /// `GET /portal/signup`.
    SignUpForm,
    /// `POST /portal/signup`.
    SignUp,
    /// `GET /portal/signin`.
    SignInForm,
    /// `POST /portal/signin`.
    SignIn,
    /// `POST /portal/signout`.
    SignOut,
    /// `GET /portal/apps`.
    Apps,
    /// `POST /portal/apps`.
    RegisterApp,
    /// `GET /portal/apps/{id}`.
    App { id: String },
    /// `POST /portal/apps/{id}/authorize`.
    Authorize { id: String },
    /// `POST /portal/apps/{id}/oob-token`.
    OobToken { id: String },
    /// `POST /portal/apps/{id}/faults`.
    AddFault { id: String },
    /// `POST /portal/apps/{id}/faults/remove`.
    RemoveFault { id: String },
    /// `POST /portal/apps/{id}/institution`.
    RequestInstitution { id: String },
    /// `POST /portal/apps/{id}/secret`.
    RotateSecret { id: String },
    /// `GET /portal/callback`.
    Callback,
    /// `POST /portal/callback`.
    ExchangeCode,
    /// `POST /portal/try/{name}`.
    TryIt { name: String },
    /// Any other path under `/portal`: the portal's own 404 page.
    NotFound,
}

impl Page {
    /// Pages only a signed-in developer sees; others are sent to sign in.
    fn needs_session(&self) -> bool {
        matches!(
            self,
            Self::Apps
                | Self::RegisterApp
                | Self::App { .. }
                | Self::Authorize { .. }
                | Self::OobToken { .. }
                | Self::AddFault { .. }
                | Self::RemoveFault { .. }
                | Self::RequestInstitution { .. }
                | Self::RotateSecret { .. }
                | Self::Callback
                | Self::ExchangeCode
                | Self::TryIt { .. }
        )
    }

    /// Where a developer sent to sign in comes back to.
    fn after_sign_in(&self, req: &PortalRequest) -> String {
        match self {
            Self::TryIt { name } => format!("/portal/apis/{}#try", encode(name)),
            Self::Apps | Self::App { .. } => page_path(req),
            _ => "/portal/apps".to_owned(),
        }
    }

    /// Sign-in and sign-up forms are posted without a session's CSRF token.
    fn signs_in(&self) -> bool {
        matches!(
            self,
            Self::SignUpForm | Self::SignUp | Self::SignInForm | Self::SignIn
        )
    }
}

/// Answers `page`: the checks every page shares (session, cross-site posts,
/// CSRF, repeated fields, sign-in), then the page's own handler.
pub(crate) async fn serve(
    portal: &Portal,
    page: &Page,
    req: &PortalRequest,
) -> Result<PortalResponse> {
    let session = match cookie_value(req.cookie.as_deref(), COOKIE) {
        Some(id) => portal.developers.session(id)?.map(|s| (id.to_owned(), s)),
        None => None,
    };
    let viewer = Viewer {
        email: session.as_ref().map(|(_, s)| s.email.clone()),
        csrf: session
            .as_ref()
            .map(|(_, s)| s.csrf.clone())
            .unwrap_or_default(),
        next: if req.method == "GET" && !page.signs_in() {
            page_path(req)
        } else {
            String::new()
        },
    };
    let mut ctx = Ctx {
        portal,
        req,
        session,
        viewer,
    };
    let form = if req.method == "POST" {
        parse_form(&req.body)
    } else {
        Vec::new()
    };
    // A browser's post from another site is refused before anything else.
    // The session cookie (SameSite=Strict) already keeps a signed-in
    // browser's posts to this site; this also covers the sign-in and
    // sign-up forms, which have no session yet (login CSRF: another site
    // signing the browser in to an account of its choosing).
    if req.method == "POST" && cross_site(req, &ctx.base_url()) {
        return Ok(error_page(
            403,
            "Form refused",
            "This form was sent from another site. Open the portal and try again.",
        ));
    }
    // Every post of a signed-in browser carries the session's CSRF token.
    if req.method == "POST"
        && let Some((_, s)) = &ctx.session
        && !sfop_auth::constant_time_eq(form_get(&form, "csrf").as_bytes(), s.csrf.as_bytes())
        && !page.signs_in()
    {
        return Ok(error_page(
            403,
            "Form expired",
            "This form is no longer valid. Reload the page and try again.",
        ));
    }
    // A field given twice is refused before any handler reads one of its
    // values, by the rule the platform holds every form to: which of two
    // `name`s or `client_secret`s counts is no handler's choice. Only the
    // scope checkboxes repeat.
    if req.method == "POST"
        && let Some(name) = sfop_core::form::repeated_name_except(&req.body, FORM_LISTS)
    {
        return Ok(error_page(
            400,
            "Invalid form",
            &format!("{name}: given more than once. Reload the page and try again."),
        ));
    }
    if page.needs_session() && ctx.session.is_none() {
        // Back to the page that asked, once signed in.
        let next = page.after_sign_in(req);
        return Ok(redirect(&format!("/portal/signin?next={}", encode(&next))));
    }
    match page {
        Page::Catalogue => Ok(catalogue(&ctx)),
        Page::Api { name } => Ok(api_page(&ctx, name, None)),
        Page::OpenApi => {
            let doc = crate::openapi(&portal.catalog.apis(), &ctx.base_url());
            let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            Ok(json_response(200, "application/json; charset=UTF-8", body))
        }
        Page::Permissions => Ok(permissions(&ctx)),
        Page::Keys => Ok(keys_page(&ctx)),
        Page::Changes => Ok(changes_page(&ctx)),
        Page::ChangesFeed => Ok(atom(&ctx)),
        Page::Report { name, version } => Ok(report(&ctx, name, version)),
        Page::Search => Ok(search_page(&ctx)),
        Page::Status => Ok(status_page(&ctx)),
        Page::Reference => Ok(reference_page(&ctx)),
        Page::Asset { file } => Ok(crate::assets::serve(file)
            .unwrap_or_else(|| error_page(404, "Not found", "There is no such file."))),
        Page::SignUpForm => Ok(sign_up_page(None, "", &query_next(req))),
        Page::SignUp => sign_up(&ctx, &form).await,
        Page::SignInForm => Ok(sign_in_page(None, "", &query_next(req))),
        Page::SignIn => sign_in(&ctx, &form).await,
        Page::SignOut => {
            if let Some((id, _)) = &ctx.session {
                portal.developers.end_session(id)?;
            }
            Ok(with_header(
                redirect("/portal"),
                "set-cookie",
                session_cookie("", 0),
            ))
        }
        Page::Apps => apps_page(&ctx, None).await,
        Page::RegisterApp => register_app(&ctx, &form).await,
        Page::App { id } => app_page(&ctx, id, None).await,
        Page::Authorize { id } => start_authorization(&mut ctx, id, &form).await,
        Page::OobToken { id } => oob_token(&mut ctx, id, &form).await,
        Page::AddFault { id } => add_fault(&ctx, id, &form).await,
        Page::RequestInstitution { id } => request_institution(&ctx, id, &form).await,
        Page::RotateSecret { id } => rotate_secret(&ctx, id).await,
        Page::RemoveFault { id } => remove_fault(&ctx, id, &form).await,
        Page::Callback => Ok(callback_page(&ctx)),
        Page::ExchangeCode => exchange_code(&mut ctx, &form).await,
        Page::TryIt { name } => try_it(&ctx, name, &form).await,
        Page::NotFound => Ok(error_page(
            404,
            "Not found",
            "There is no such page on the developer portal.",
        )),
    }
}
