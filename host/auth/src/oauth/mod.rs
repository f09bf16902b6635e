//! The OAuth 2.0 authorization server, with the reference platform's endpoints
//! and fields:
//!
//! | endpoint | what |
//! |---|---|
//! | `GET/POST /oauth/2.0/authorize` | 3-legged: sign in, pick accounts, consent per scope, redirect with `code` |
//! | `POST /oauth/2.0/token` | `authorization_code` (+ PKCE S256), `refresh_token` (rotating), `client_credentials` (`oob`) |
//! | `POST /oauth/2.0/revoke` | revoke an access or refresh token |
//! | `POST /v2.0/user/unlink` | the user withdraws consent for a client; its tokens die |
//!
//! Clients authenticate at the token and revoke endpoints with their secret
//! in the form or with HTTP Basic (RFC 6749 §2.3.1), never both. Every
//! client uses PKCE (S256). Codes live at most [`MAX_CODE_TTL`] seconds and
//! are redeemed at most once; a replayed code or a replayed (rotated)
//! refresh token revokes every token of its authorization (its family).
//! Sign-in is throttled per account and per client address
//! ([`throttle`]).
//!
//! The server takes typed requests ([`AuthorizeQuery`], [`AuthorizeStep`],
//! [`TokenRequest`], [`RevokeRequest`]), read by the platform's router with
//! [`form::decode`], which refuses a parameter given twice (RFC 6749 §3.1),
//! and answers plain [`HttpResponse`] values; the platform binary mounts it
//! on the gateway's router.

use sfop_core::form;
pub mod grants;
mod pages;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sfop_store::{Store, Tree};

use crate::policy::Denial;
use crate::secret::{random_hex, sha256_hex};
use crate::{
    AccessGrant, AuthInput, Client, ClientRegistry, KeyRing, Revocations, TokenAuthorizer,
};
use grants::{CodeRecord, Grants, IssuedRecord, Redeem, RefreshRecord, Rotate, SledGrants};

pub use form::parse as parse_form;

/// What this server does; the platform's router maps a `METHOD path` to
/// each (`host/sfop/src/endpoints.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET /oauth/2.0/authorize`: the sign-in page of a new request.
    AuthorizeStart,
    /// `POST /oauth/2.0/authorize`: sign-in, then consent, then the redirect.
    AuthorizeStep,
    /// `POST /oauth/2.0/token`.
    Token,
    /// `POST /oauth/2.0/revoke`.
    Revoke,
    /// `POST /v2.0/user/unlink`.
    Unlink,
}

/// The paths of the operations.
pub const AUTHORIZE: &str = "/oauth/2.0/authorize";
pub const TOKEN: &str = "/oauth/2.0/token";
pub const REVOKE: &str = "/oauth/2.0/revoke";
pub const UNLINK: &str = "/v2.0/user/unlink";

/// The scopes a user can consent to (the 3-legged flow).
pub const USER_SCOPES: &[&str] = &["login", "inquiry", "transfer"];

/// `GET /oauth/2.0/authorize`'s query (RFC 6749 §4.1.1, RFC 7636 §4.3).
/// Every field is optional here: which is missing decides the answer (an
/// error page, or a redirect with `error`), as the protocol says.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeQuery {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

impl form::Fields for AuthorizeQuery {}

/// `POST /oauth/2.0/authorize`: the sign-in and consent pages' form. The
/// consent form lists every account and scope chosen.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeStep {
    pub pending: Option<String>,
    pub action: Option<String>,
    pub login_id: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub account: Vec<String>,
    #[serde(default)]
    pub scope: Vec<String>,
}

impl form::Fields for AuthorizeStep {
    const LISTS: &'static [&'static str] = &["account", "scope"];
}

/// `POST /oauth/2.0/token` (RFC 6749 §4.1.3, §4.4.2, §6; RFC 7636 §4.5).
/// The grant decides which fields it needs and answers for a missing one.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
}

impl form::Fields for TokenRequest {}

/// `POST /oauth/2.0/revoke` (RFC 7009 §2.1).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RevokeRequest {
    pub token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl form::Fields for RevokeRequest {}

/// A client's credentials in a form (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default)]
struct FormCredentials<'a> {
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
}

/// One response. `envelope` asks the gateway to add the common response
/// header (`api_tran_id`, `api_tran_dtm`) to the JSON body, as for APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub envelope: bool,
}

impl HttpResponse {
    fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=UTF-8".into(),
                ),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.to_string().into_bytes(),
            envelope: false,
        }
    }

    fn html(status: u16, page: String) -> Self {
        Self {
            status,
            // The platform's page headers: among them, the consent page must
            // not be framed by another site.
            headers: sfop_core::html::PAGE_HEADERS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: page.into_bytes(),
            envelope: false,
        }
    }

    /// A page whose form may end in a redirect to one of `redirect_uris`.
    fn html_redirecting_to(status: u16, page: String, redirect_uris: &[String]) -> Self {
        Self {
            headers: sfop_core::html::page_headers_redirecting_to(redirect_uris),
            ..Self::html(status, page)
        }
    }

    fn redirect(location: String) -> Self {
        Self {
            status: 302,
            headers: vec![
                ("location".into(), location),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Vec::new(),
            envelope: false,
        }
    }

    /// An OAuth error in the reference platform's shape (`rsp_code`,
    /// `rsp_message`) plus RFC 6749's `error` for generic OAuth clients.
    fn error(status: u16, rsp_code: &str, error: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({ "rsp_code": rsp_code, "rsp_message": message, "error": error, "error_description": message }),
        )
    }

    /// A refusal of a bearer-token request; a 401 or 403 carries
    /// `WWW-Authenticate` (RFC 6750 §3).
    fn denial(d: &Denial) -> Self {
        let mut r = Self::json(
            d.status,
            json!({ "rsp_code": d.rsp_code, "rsp_message": d.message }),
        );
        r.envelope = true;
        let challenge = match (d.status, d.rsp_code) {
            // No token at all: no error code (RFC 6750 §3.1).
            (401, crate::policy::rsp::AUTH_PARAMETER) => Some("Bearer realm=\"sfop\"".to_owned()),
            (401, _) => Some(
                "Bearer realm=\"sfop\", error=\"invalid_token\", error_description=\"the access token was rejected\""
                    .to_owned(),
            ),
            (403, crate::policy::rsp::NO_PERMISSION) => Some(
                "Bearer realm=\"sfop\", error=\"insufficient_scope\"".to_owned(),
            ),
            _ => None,
        };
        if let Some(challenge) = challenge {
            r.headers.push(("www-authenticate".into(), challenge));
        }
        r
    }

    /// A client authentication failure (RFC 6749 §5.2): 401 with a Basic
    /// challenge.
    fn invalid_client() -> Self {
        let mut r = Self::error(
            401,
            "O0001",
            "invalid_client",
            "client_id or client_secret is not correct",
        );
        r.headers
            .push(("www-authenticate".into(), "Basic realm=\"sfop\"".into()));
        r
    }

    /// 429 with `Retry-After`.
    fn with_retry_after(mut self, secs: u64) -> Self {
        self.status = 429;
        self.headers.push(("retry-after".into(), secs.to_string()));
        self
    }
}

/// An account a user can register on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChoice {
    /// Opaque id the directory understands.
    pub id: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_alias: String,
}

/// The users of the bank side: who can sign in, which accounts they hold, and
/// where consents are recorded. The virtual bank implements it.
pub trait UserDirectory: Send + Sync + std::fmt::Debug {
    /// The user_seq_no of the user with these credentials, if they match.
    fn authenticate(
        &self,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError>;
    /// The accounts the user may register.
    fn accounts(&self, user_seq_no: &str) -> Result<Vec<AccountChoice>, DirectoryError>;
    /// Records consent for `scopes` on `account_ids` for the client; returns
    /// the fintech_use_num issued for each account, in order.
    fn register(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
    ) -> Result<Vec<String>, DirectoryError>;
    /// Withdraws every consent the user gave the client.
    fn unlink(&self, user_seq_no: &str, client_id: &str) -> Result<(), DirectoryError>;
}

/// Why the user directory (the home bank) did not answer. Neither is the
/// user's or the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The bank cannot be reached now (down, too slow, answering garbage):
    /// the sign-in and consent pages say so and ask to try again shortly
    /// (503 with `Retry-After`); an API call gets 503 `A0013`.
    #[error("the home bank cannot be reached: {0}")]
    Unavailable(String),
    /// The directory failed otherwise: 500, logged, nothing internal shown.
    #[error("the user directory failed: {0}")]
    Failed(String),
}

/// The longest an authorization code lives, seconds, whatever the config
/// says (RFC 6749 §4.1.2 recommends at most ten minutes; a code only has
/// to survive one redirect and one back-channel call).
pub const MAX_CODE_TTL: u64 = 60;

/// Lifetimes of what the server issues.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Access token lifetime, seconds (the reference: about 90 days).
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    /// Authorization code lifetime, seconds; capped at [`MAX_CODE_TTL`].
    pub code_ttl: u64,
    /// Time a user has to finish the sign-in and consent pages.
    pub pending_ttl: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_ttl: 7_775_999,
            refresh_ttl: 8_639_999,
            code_ttl: MAX_CODE_TTL,
            pending_ttl: 900,
        }
    }
}

/// The server's clock, seconds since the Unix epoch. Tests set it to
/// expire codes and open throttles without waiting.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(crate::now_secs)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// An authorization request between the first page and the redirect.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: String,
    code_challenge: Option<String>,
    user_seq_no: Option<String>,
    expires_at: u64,
}

/// The authorization server.
#[derive(Debug, Clone)]
pub struct OAuthServer {
    clients: ClientRegistry,
    ring: KeyRing,
    revocations: Arc<Revocations>,
    authorizer: Arc<TokenAuthorizer>,
    directory: Arc<dyn UserDirectory>,
    config: OAuthConfig,
    /// Authorization requests between their pages: this node's (a browser
    /// finishes the pages on the node that started them).
    pending: Tree,
    /// Codes, refresh tokens, what was issued, revoked families: sled's or
    /// the cluster's.
    grants: Arc<dyn Grants>,
    clock: Clock,
    sign_in: Arc<throttle::SignInThrottle>,
}

type Outcome = Result<HttpResponse, HttpResponse>;

impl OAuthServer {
    pub fn open(
        store: &Store,
        ring: KeyRing,
        revocations: Arc<Revocations>,
        authorizer: Arc<TokenAuthorizer>,
        directory: Arc<dyn UserDirectory>,
        config: OAuthConfig,
    ) -> crate::Result<Self> {
        Ok(Self {
            clients: ClientRegistry::open(store)?,
            ring,
            revocations,
            authorizer,
            directory,
            config,
            pending: store.tree("auth.pending")?,
            grants: Arc::new(SledGrants::open(store)?),
            clock: Clock::default(),
            sign_in: Arc::new(throttle::SignInThrottle::default()),
        })
    }

    /// The same server with `clients` as its registry (a cluster node's,
    /// ADR 0029).
    pub fn with_clients(mut self, clients: ClientRegistry) -> Self {
        self.clients = clients;
        self
    }

    /// The same server keeping what it issues in `grants` (a cluster
    /// node's, ADR 0029).
    pub fn with_grants(mut self, grants: Arc<dyn Grants>) -> Self {
        self.grants = grants;
        self
    }

    /// The same server on another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn code_ttl(&self) -> u64 {
        self.config.code_ttl.min(MAX_CODE_TTL)
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// The answer to a request whose query or form did not read (a
    /// parameter given twice, RFC 6749 §3.1): the browser's pages get an
    /// error page and no redirect (the client and its redirect URI are
    /// among what may be ambiguous); the token and revoke endpoints the
    /// JSON error of RFC 6749 §5.2, `invalid_request` naming the parameter.
    pub fn refused(operation: Operation, error: &form::FormError) -> HttpResponse {
        let message = match error {
            form::FormError::Repeated(_) => format!("{error} (RFC 6749 §3.1)"),
            form::FormError::Invalid(_) => error.to_string(),
        };
        match operation {
            Operation::AuthorizeStart | Operation::AuthorizeStep => {
                pages::error_page(400, "Invalid request", &message)
            }
            _ => HttpResponse::error(400, "O0001", "invalid_request", &message),
        }
    }

    /// `GET /oauth/2.0/authorize`: the sign-in page of a new request.
    pub fn authorize_start(&self, query: &AuthorizeQuery) -> HttpResponse {
        self.start(query).unwrap_or_else(|e| e)
    }

    /// `POST /oauth/2.0/authorize`: sign-in, then consent, then the redirect.
    pub fn authorize_step(&self, form: &AuthorizeStep, peer: Option<IpAddr>) -> HttpResponse {
        self.step(form, peer).unwrap_or_else(|e| e)
    }

    /// `POST /oauth/2.0/token`, the client authenticated by `authorization`
    /// (HTTP Basic) or the form.
    pub fn token(&self, authorization: Option<&str>, form: &TokenRequest) -> HttpResponse {
        self.grant(authorization, form).unwrap_or_else(|e| e)
    }

    /// `POST /oauth/2.0/revoke`.
    pub fn revoke(&self, authorization: Option<&str>, form: &RevokeRequest) -> HttpResponse {
        self.revoke_token(authorization, form).unwrap_or_else(|e| e)
    }

    /// `POST /v2.0/user/unlink` with its JSON body.
    pub fn unlink(&self, authorization: Option<&str>, body: &[u8]) -> HttpResponse {
        self.unlink_user(authorization, body).unwrap_or_else(|e| e)
    }

    /// The directory did not answer a page's question: the bank away is a
    /// page saying so (503, retry shortly), for the person at the browser;
    /// anything else is the platform's failure.
    fn directory_failed_page(e: DirectoryError) -> HttpResponse {
        match e {
            DirectoryError::Unavailable(cause) => {
                tracing::warn!(%cause, "sign-in: the home bank cannot be reached");
                let mut page = pages::error_page(
                    503,
                    "Your bank cannot be reached",
                    "Your bank is not answering right now. Nothing was changed. \
                     Try again in a moment.",
                );
                page.headers.push(("retry-after".into(), "1".into()));
                page
            }
            DirectoryError::Failed(cause) => Self::store_failed(cause),
        }
    }

    /// [`Self::directory_failed_page`] for an API call (unlink): JSON, 503
    /// `A0013` when the bank is away.
    fn directory_failed_api(e: DirectoryError) -> HttpResponse {
        match e {
            DirectoryError::Unavailable(cause) => {
                tracing::warn!(%cause, "unlink: the home bank cannot be reached");
                let mut r = HttpResponse::json(
                    503,
                    json!({
                        "rsp_code": "A0013",
                        "rsp_message": "the home bank cannot be reached now; retry shortly",
                    }),
                );
                r.envelope = true;
                r.headers.push(("retry-after".into(), "1".into()));
                r
            }
            DirectoryError::Failed(cause) => Self::store_failed(cause),
        }
    }

    fn store_failed(e: impl std::fmt::Display) -> HttpResponse {
        tracing::error!(error = %e, "authorization server store failure");
        HttpResponse::error(500, "A0003", "server_error", "platform internal error")
    }

    /// The client registry or the grants failed: the cluster's database
    /// away (ADR 0029) is 503 `A0013` `temporarily_unavailable` with
    /// `Retry-After`, the platform's failure, which the client may retry;
    /// anything else the store's.
    fn shared_failed(e: crate::Error) -> HttpResponse {
        match e {
            crate::Error::Unavailable(cause) => {
                tracing::warn!(%cause, "the authorization server's store is unavailable");
                let mut r = HttpResponse::error(
                    503,
                    "A0013",
                    "temporarily_unavailable",
                    "the authorization server cannot reach its store on this node now; retry shortly",
                );
                r.headers.push(("retry-after".into(), "1".into()));
                r
            }
            e => Self::store_failed(e),
        }
    }

    /// A revocation not written: when the cluster's database cannot be
    /// reached (ADR 0029), 503 with `Retry-After` (RFC 7009 §2.2.1: the
    /// client must assume the token still lives and retry), otherwise the
    /// store's failure.
    fn revocation_failed(e: crate::Error) -> HttpResponse {
        match e {
            crate::Error::Unavailable(cause) => {
                tracing::warn!(%cause, "revocation not written");
                let mut r = HttpResponse::error(
                    503,
                    "A0013",
                    "temporarily_unavailable",
                    "tokens cannot be revoked on this node now; retry shortly",
                );
                r.headers.push(("retry-after".into(), "1".into()));
                r
            }
            e => Self::store_failed(e),
        }
    }

    // ---------- 3-legged: authorize ----------

    fn start(&self, q: &AuthorizeQuery) -> Outcome {
        let client_id = q.client_id.as_deref().unwrap_or_default();
        let client = match self.clients.get(client_id).map_err(Self::shared_failed)? {
            Some(c) => c,
            None => {
                return Err(pages::error_page(
                    400,
                    "Unknown application",
                    "client_id is not a registered application.",
                ));
            }
        };
        let redirect_uri = q.redirect_uri.as_deref().unwrap_or_default();
        // Exact match with a registered URI, and that URI still a valid one
        // (clients registered before URIs were parsed are held to it too).
        if !client.redirect_uris.iter().any(|u| u == redirect_uri)
            || crate::clients::check_redirect_uri(redirect_uri).is_err()
        {
            // Never redirect to an unregistered URI: show the error here.
            return Err(pages::error_page(
                400,
                "Invalid redirect_uri",
                "redirect_uri is not registered for this application.",
            ));
        }
        let state = q.state.clone().unwrap_or_default();
        let fail = |error: &str, rsp_code: &str, message: &str| {
            HttpResponse::redirect(append_query(
                redirect_uri,
                &[
                    ("error", error),
                    ("rsp_code", rsp_code),
                    ("error_description", message),
                    ("state", &state),
                ],
            ))
        };
        if q.response_type.as_deref() != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "O0001",
                "response_type must be code",
            ));
        }
        if state.is_empty() || state.len() > 64 {
            return Err(fail(
                "invalid_request",
                "O0001",
                "state is required (up to 64 characters)",
            ));
        }
        let scopes: Vec<String> = q
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "O0011", "scope is required"));
        }
        if let Some(bad) = scopes.iter().find(|s| !USER_SCOPES.contains(&s.as_str())) {
            let code = if bad == "oob" { "O0001" } else { "O0011" };
            return Err(fail(
                "invalid_scope",
                code,
                &format!("scope {bad} cannot be granted by a user"),
            ));
        }
        if let Some(bad) = scopes.iter().find(|s| !client.allows_scope(s)) {
            return Err(fail(
                "invalid_scope",
                "O0011",
                &format!("this application may not ask for scope {bad}"),
            ));
        }
        let code_challenge = match (
            q.code_challenge.as_deref(),
            q.code_challenge_method.as_deref(),
        ) {
            (Some(c), Some("S256")) if is_pkce_challenge(c) => Some(c.to_owned()),
            (Some(_), _) => {
                return Err(fail(
                    "invalid_request",
                    "O0001",
                    "code_challenge must be a base64url SHA-256 with code_challenge_method=S256",
                ));
            }
            // Every client, confidential or public (OAuth 2.1, RFC 9700
            // §2.1.1): a stolen code is useless without the verifier.
            (None, _) => {
                return Err(fail(
                    "invalid_request",
                    "O0001",
                    "code_challenge with code_challenge_method=S256 is required (PKCE)",
                ));
            }
        };
        let id = random_hex(32).map_err(Self::store_failed)?;
        let pending = Pending {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            code_challenge,
            user_seq_no: None,
            expires_at: self.now() + self.config.pending_ttl,
        };
        self.pending
            .insert_json(&id, &pending)
            .map_err(Self::store_failed)?;
        Ok(pages::sign_in(&client, &id, None))
    }

    fn step(&self, f: &AuthorizeStep, peer: Option<IpAddr>) -> Outcome {
        let id = f.pending.as_deref().unwrap_or_default();
        let expired = || {
            pages::error_page(
                400,
                "Request expired",
                "This authorization request has expired or was already used. Start again from the application.",
            )
        };
        let mut pending: Pending = match self.pending.get_json(id).map_err(Self::store_failed)? {
            Some(p) if !id.is_empty() => p,
            _ => return Err(expired()),
        };
        if pending.expires_at < self.now() {
            let _ = self.pending.remove(id.as_bytes());
            return Err(expired());
        }
        let client = self
            .clients
            .get(&pending.client_id)
            .map_err(Self::shared_failed)?
            .ok_or_else(expired)?;
        match (f.action.as_deref(), &pending.user_seq_no) {
            (Some("login"), _) => {
                let login_id = f.login_id.as_deref().unwrap_or_default();
                // Checked before the password: a closed account or address
                // costs no hash and learns nothing.
                if let Err(wait) = self.sign_in.check(login_id, peer, self.now() * 1000) {
                    return Err(pages::sign_in(
                        &client,
                        id,
                        Some(&format!(
                            "Too many failed sign-ins. Wait {wait} s before trying again."
                        )),
                    )
                    .with_retry_after(wait));
                }
                let user = self
                    .directory
                    .authenticate(login_id, f.password.as_deref().unwrap_or_default())
                    .map_err(Self::directory_failed_page)?;
                let Some(user) = user else {
                    self.sign_in.failure(login_id, peer, self.now() * 1000);
                    return Ok(pages::sign_in(
                        &client,
                        id,
                        Some("The ID or password is not correct."),
                    ));
                };
                self.sign_in.success(login_id);
                let accounts = self
                    .directory
                    .accounts(&user)
                    .map_err(Self::directory_failed_page)?;
                pending.user_seq_no = Some(user);
                self.pending
                    .insert_json(id, &pending)
                    .map_err(Self::store_failed)?;
                Ok(pages::consent(
                    &client,
                    id,
                    &pending.scopes,
                    &accounts,
                    None,
                ))
            }
            (Some("deny"), _) => {
                let _ = self.pending.remove(id.as_bytes());
                Ok(HttpResponse::redirect(append_query(
                    &pending.redirect_uri,
                    &[
                        ("error", "access_denied"),
                        ("rsp_code", "O0001"),
                        ("error_description", "the user declined"),
                        ("state", &pending.state),
                    ],
                )))
            }
            (Some("consent"), Some(user)) => self.consent(&client, id, &pending, user, f),
            _ => Err(expired()),
        }
    }

    fn consent(
        &self,
        client: &Client,
        id: &str,
        pending: &Pending,
        user: &str,
        f: &AuthorizeStep,
    ) -> Outcome {
        let scopes: Vec<String> = f
            .scope
            .iter()
            .filter(|s| pending.scopes.contains(s))
            .cloned()
            .collect();
        let accounts = &f.account;
        let needs_accounts = scopes.iter().any(|s| s == "inquiry" || s == "transfer");
        if scopes.is_empty() || (needs_accounts && accounts.is_empty()) {
            let choices = self
                .directory
                .accounts(user)
                .map_err(Self::directory_failed_page)?;
            let message = if scopes.is_empty() {
                "Choose at least one permission, or press Decline."
            } else {
                "Choose at least one account for inquiry or transfer."
            };
            return Ok(pages::consent(
                client,
                id,
                &pending.scopes,
                &choices,
                Some(message),
            ));
        }
        // The accounts must be the signed-in user's own: another user's or
        // an unknown account is the client's error (400), not the server's.
        let choices = self.directory.accounts(user).map_err(Self::store_failed)?;
        if let Some(bad) = accounts
            .iter()
            .find(|a| !choices.iter().any(|c| &c.id == *a))
        {
            tracing::info!(account = %bad, "consent names an account that is not the user's");
            let mut page = pages::consent(
                client,
                id,
                &pending.scopes,
                &choices,
                Some("An account you chose is not one of yours. Choose among those listed."),
            );
            page.status = 400;
            return Err(page);
        }
        // Single use: whoever takes the pending record finishes the flow.
        if self
            .pending
            .take(id.as_bytes())
            .map_err(Self::store_failed)?
            .is_none()
        {
            return Err(pages::error_page(
                400,
                "Request expired",
                "This authorization request was already used.",
            ));
        }
        let fintech_use_nums = self
            .directory
            .register(
                user,
                &client.client_id,
                &client.client_use_code,
                accounts,
                &scopes,
            )
            .map_err(Self::directory_failed_page)?;
        let code = random_hex(32).map_err(Self::store_failed)?;
        let record = CodeRecord {
            client_id: client.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            user_seq_no: user.to_owned(),
            scopes: scopes.clone(),
            fintech_use_nums,
            code_challenge: pending.code_challenge.clone(),
            expires_at: self.now() + self.code_ttl(),
            redeemed: None,
        };
        self.grants
            .put_code(&sha256_hex(&[code.as_bytes()]), &record)
            .map_err(Self::shared_failed)?;
        self.grants.flush().map_err(Self::shared_failed)?;
        Ok(HttpResponse::redirect(append_query(
            &pending.redirect_uri,
            &[
                ("code", &code),
                ("scope", &scopes.join(" ")),
                ("state", &pending.state),
            ],
        )))
    }

    // ---------- token endpoint ----------

    fn grant(&self, authorization: Option<&str>, f: &TokenRequest) -> Outcome {
        let credentials = FormCredentials {
            client_id: f.client_id.as_deref(),
            client_secret: f.client_secret.as_deref(),
        };
        let client = self.authenticate_client(authorization, credentials)?;
        match f.grant_type.as_deref() {
            Some("authorization_code") => self.grant_code(&client, f),
            Some("refresh_token") => self.grant_refresh(&client, f),
            Some("client_credentials") => self.grant_client_credentials(&client, f),
            Some(other) => Err(HttpResponse::error(
                400,
                "O0001",
                "unsupported_grant_type",
                &format!("grant_type {other} is not supported"),
            )),
            None => Err(HttpResponse::error(
                400,
                "O0001",
                "invalid_request",
                "grant_type is required",
            )),
        }
    }

    /// The client, from HTTP Basic (RFC 6749 §2.3.1) or the form's
    /// `client_id` and `client_secret`: one way only.
    fn authenticate_client(
        &self,
        authorization: Option<&str>,
        f: FormCredentials<'_>,
    ) -> Result<Client, HttpResponse> {
        let bad_request = |m: &str| HttpResponse::error(400, "O0001", "invalid_request", m);
        let basic = match authorization.map(str::trim).and_then(|v| v.split_once(' ')) {
            Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("basic") => {
                Some(parse_basic(credentials.trim()).ok_or_else(HttpResponse::invalid_client)?)
            }
            _ => None,
        };
        let (client_id, secret) = match basic {
            Some((id, secret)) => {
                if f.client_secret.is_some() || f.client_id.is_some_and(|form_id| form_id != id) {
                    return Err(bad_request(
                        "client credentials must be sent one way: HTTP Basic or the form, not both",
                    ));
                }
                (id, Some(secret))
            }
            None => (
                f.client_id
                    .ok_or_else(|| bad_request("client_id is required"))?
                    .to_owned(),
                f.client_secret.map(str::to_owned),
            ),
        };
        let client = self
            .clients
            .get(&client_id)
            .map_err(Self::shared_failed)?
            .ok_or_else(HttpResponse::invalid_client)?;
        let secret = secret.filter(|s| !s.is_empty());
        if !client.secret_matches(secret.as_deref()) {
            return Err(HttpResponse::invalid_client());
        }
        Ok(client)
    }

    fn grant_code(&self, client: &Client, f: &TokenRequest) -> Outcome {
        let invalid = |m: &str| HttpResponse::error(400, "O0001", "invalid_grant", m);
        let code = f
            .code
            .as_deref()
            .ok_or_else(|| invalid("code is required"))?;
        let key = sha256_hex(&[code.as_bytes()]);
        let family = random_hex(16).map_err(Self::store_failed)?;
        let now = self.now();
        let (redirect_uri, verifier) = (f.redirect_uri.as_deref(), f.code_verifier.as_deref());
        // At most once, and only by the client it was issued to with the
        // right redirect_uri and verifier: every check runs inside one
        // transaction that marks the code redeemed only if all pass, so a
        // failed attempt (another client, a wrong verifier) leaves the code
        // to its rightful client, and two concurrent redemptions cannot
        // both win.
        let check = |record: &CodeRecord| -> Result<(), Redeem> {
            if record.redeemed.is_some() {
                return Err(Redeem::Replayed(Box::new(record.clone())));
            }
            if record.client_id != client.client_id {
                return Err(Redeem::OtherClient);
            }
            if record.expires_at <= now {
                return Err(Redeem::Expired);
            }
            if redirect_uri != Some(record.redirect_uri.as_str()) {
                return Err(Redeem::RedirectMismatch);
            }
            let (Some(challenge), Some(verifier)) = (&record.code_challenge, verifier) else {
                return Err(Redeem::NoVerifier);
            };
            if !(43..=128).contains(&verifier.len()) || &pkce_s256(verifier) != challenge {
                return Err(Redeem::BadVerifier);
            }
            Ok(())
        };
        let outcome = self
            .grants
            .redeem_code(&key, &family, &check)
            .map_err(Self::shared_failed)?;
        let record = match outcome.unwrap_or(Err(Redeem::Unknown)) {
            Ok(record) => record,
            Err(why) => {
                return Err(invalid(match why {
                    Redeem::Unknown | Redeem::Expired => "code is unknown, expired or already used",
                    Redeem::OtherClient => "code was issued to another client",
                    Redeem::RedirectMismatch => {
                        "redirect_uri does not match the authorization request"
                    }
                    Redeem::NoVerifier => "code_verifier is required (PKCE)",
                    Redeem::BadVerifier => "code_verifier does not match code_challenge",
                    Redeem::Replayed(record) => {
                        // RFC 6749 §4.1.2: the code leaked; what it gave is
                        // revoked.
                        tracing::warn!(
                            client_id = %record.client_id,
                            "authorization code replayed: its tokens are revoked"
                        );
                        if let Some(family) = &record.redeemed {
                            self.revoke_family(&record.client_id, &record.user_seq_no, family)?;
                        }
                        "code is unknown, expired or already used"
                    }
                }));
            }
        };
        self.grants.flush().map_err(Self::shared_failed)?;
        self.issue_user_tokens(
            client,
            &record.user_seq_no,
            &record.scopes,
            &record.fintech_use_nums,
            &family,
        )
    }

    fn issue_user_tokens(
        &self,
        client: &Client,
        user: &str,
        scopes: &[String],
        accounts: &[String],
        family: &str,
    ) -> Outcome {
        let now = self.now();
        let grant = AccessGrant {
            client_id: client.client_id.clone(),
            client_use_code: Some(client.client_use_code.clone()),
            user_seq_no: Some(user.to_owned()),
            scopes: scopes.to_vec(),
            fintech_use_nums: accounts.to_vec(),
            expires_at: now + self.config.access_ttl,
        };
        let access = grant.issue(&self.ring).map_err(Self::store_failed)?;
        let refresh = random_hex(32).map_err(Self::store_failed)?;
        let refresh_hash = sha256_hex(&[refresh.as_bytes()]);
        self.grants
            .put_refresh(
                &refresh_hash,
                &RefreshRecord {
                    client_id: client.client_id.clone(),
                    user_seq_no: user.to_owned(),
                    scopes: scopes.to_vec(),
                    fintech_use_nums: accounts.to_vec(),
                    expires_at: now + self.config.refresh_ttl,
                    family: Some(family.to_owned()),
                    rotated: false,
                },
            )
            .map_err(Self::shared_failed)?;
        self.record_issued(
            &client.client_id,
            user,
            &access,
            Some(refresh_hash),
            Some(family),
        )?;
        Ok(HttpResponse::json(
            200,
            json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.config.access_ttl,
                "refresh_token": refresh,
                "scope": scopes.join(" "),
                "user_seq_no": user,
            }),
        ))
    }

    fn record_issued(
        &self,
        client_id: &str,
        user: &str,
        access: &str,
        refresh_hash: Option<String>,
        family: Option<&str>,
    ) -> Result<(), HttpResponse> {
        let verified = crate::token::verify(&self.ring, access).map_err(Self::store_failed)?;
        self.grants
            .put_issued(
                client_id,
                user,
                &IssuedRecord {
                    revocation_ids: verified.revocation_ids,
                    refresh_hash,
                    family: family.map(str::to_owned),
                },
            )
            .map_err(Self::shared_failed)?;
        // A replay that revoked the family while these were being issued
        // (on this node or another): they die with it.
        if let Some(family) = family
            && self
                .grants
                .family_revoked(family)
                .map_err(Self::shared_failed)?
        {
            self.revoke_family(client_id, user, family)?;
            return Err(HttpResponse::error(
                400,
                "O0001",
                "invalid_grant",
                "this authorization was revoked",
            ));
        }
        self.grants.flush().map_err(Self::shared_failed)
    }

    fn grant_refresh(&self, client: &Client, f: &TokenRequest) -> Outcome {
        let invalid = |m: &str| HttpResponse::error(400, "O0002", "invalid_grant", m);
        let token = f
            .refresh_token
            .as_deref()
            .ok_or_else(|| invalid("refresh_token is required"))?;
        let key = sha256_hex(&[token.as_bytes()]);
        let asked: Option<Vec<String>> = f
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|asked| !asked.is_empty());
        let now = self.now();
        // Rotation: a token is exchanged once; it stays, marked, so that a
        // second use (a replay: someone else holds a copy) is recognised.
        let check = |record: &RefreshRecord| -> Result<(), Rotate> {
            if record.rotated {
                return Err(Rotate::Replayed(Box::new(record.clone())));
            }
            if record.client_id != client.client_id || record.expires_at <= now {
                return Err(Rotate::Unknown);
            }
            // A narrower scope may be asked for, never a wider one.
            if let Some(extra) = asked.iter().flatten().find(|s| !record.scopes.contains(s)) {
                return Err(Rotate::Scope(extra.clone()));
            }
            Ok(())
        };
        let outcome = self
            .grants
            .rotate_refresh(&key, &check)
            .map_err(Self::shared_failed)?;
        let record = match outcome.unwrap_or(Err(Rotate::Unknown)) {
            Ok(record) => record,
            Err(Rotate::Unknown) => {
                return Err(invalid("refresh_token is unknown, expired or already used"));
            }
            Err(Rotate::Scope(extra)) => {
                return Err(HttpResponse::error(
                    400,
                    "O0011",
                    "invalid_scope",
                    &format!("scope {extra} was not granted"),
                ));
            }
            Err(Rotate::Replayed(record)) => {
                // RFC 9700 §4.14.2: a rotated refresh token used again
                // means two parties hold it; the whole family dies.
                tracing::warn!(
                    client_id = %record.client_id,
                    "rotated refresh token replayed: its token family is revoked"
                );
                match &record.family {
                    Some(family) => {
                        self.revoke_family(&record.client_id, &record.user_seq_no, family)?
                    }
                    None => self.revoke_all(&record.client_id, &record.user_seq_no)?,
                }
                return Err(invalid("refresh_token is unknown, expired or already used"));
            }
        };
        self.grants.flush().map_err(Self::shared_failed)?;
        let family = match record.family.clone() {
            Some(family) => family,
            None => random_hex(16).map_err(Self::store_failed)?,
        };
        self.issue_user_tokens(
            client,
            &record.user_seq_no,
            asked.as_deref().unwrap_or(&record.scopes),
            &record.fintech_use_nums,
            &family,
        )
    }

    fn grant_client_credentials(&self, client: &Client, f: &TokenRequest) -> Outcome {
        let scope = f.scope.as_deref().unwrap_or_default();
        match scope {
            "oob" if client.allows_scope("oob") => {}
            "oob" => {
                return Err(HttpResponse::error(
                    400,
                    "O0011",
                    "invalid_scope",
                    "this application may not use scope oob",
                ));
            }
            "login" | "inquiry" | "transfer" => {
                return Err(HttpResponse::error(
                    400,
                    "O0001",
                    "invalid_scope",
                    &format!("scope {scope} needs the user's authorization (authorization_code)"),
                ));
            }
            _ => {
                return Err(HttpResponse::error(
                    400,
                    "O0011",
                    "invalid_scope",
                    &format!("scope {scope:?} is not known; client_credentials grants oob"),
                ));
            }
        }
        let grant = AccessGrant {
            client_id: client.client_id.clone(),
            client_use_code: Some(client.client_use_code.clone()),
            user_seq_no: None,
            scopes: vec!["oob".into()],
            fintech_use_nums: Vec::new(),
            expires_at: self.now() + self.config.access_ttl,
        };
        let access = grant.issue(&self.ring).map_err(Self::store_failed)?;
        self.record_issued(&client.client_id, "", &access, None, None)?;
        Ok(HttpResponse::json(
            200,
            json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.config.access_ttl,
                "scope": "oob",
                "client_use_code": client.client_use_code,
            }),
        ))
    }

    // ---------- revoke and unlink ----------

    fn revoke_token(&self, authorization: Option<&str>, f: &RevokeRequest) -> Outcome {
        let credentials = FormCredentials {
            client_id: f.client_id.as_deref(),
            client_secret: f.client_secret.as_deref(),
        };
        let client = self.authenticate_client(authorization, credentials)?;
        let token = f.token.as_deref().ok_or_else(|| {
            HttpResponse::error(400, "O0001", "invalid_request", "token is required")
        })?;
        let refresh_key = sha256_hex(&[token.as_bytes()]);
        let refresh = self
            .grants
            .refresh(&refresh_key)
            .map_err(Self::shared_failed)?;
        match refresh {
            Some(record) if record.client_id == client.client_id => {
                // RFC 7009 §2.1: the access tokens of the same grant go too.
                match &record.family {
                    Some(family) => {
                        self.revoke_family(&record.client_id, &record.user_seq_no, family)?
                    }
                    None => self
                        .grants
                        .remove_refresh(&refresh_key)
                        .map_err(Self::shared_failed)?,
                }
            }
            Some(_) => {}
            None => {
                // An access token of this client (authenticated by its
                // secret, not by the token): revoke its blocks.
                if let Ok(verified) = crate::token::verify(&self.ring, token)
                    && verified.claims.client_id == client.client_id
                {
                    self.revocations
                        .revoke(&verified.revocation_ids)
                        .map_err(Self::revocation_failed)?;
                }
            }
        }
        self.grants.flush().map_err(Self::shared_failed)?;
        // RFC 7009: the answer does not reveal whether the token existed.
        Ok(HttpResponse::json(
            200,
            json!({ "rsp_code": "A0000", "rsp_message": "" }),
        ))
    }

    /// `POST /v2.0/user/unlink`: decided like any API call, by the full
    /// authorisation with every block of the token (a holder's attenuation
    /// included), as API [`UNLINK_API`] needing scope `login` on the body's
    /// user. Withdrawing consent is not a read: a token narrowed with
    /// `check if operation("read")` cannot unlink.
    fn unlink_user(&self, authorization: Option<&str>, body: &[u8]) -> Outcome {
        // Who is calling, before the body is looked at.
        self.authorizer
            .verify_bearer(authorization)
            .map_err(|d| HttpResponse::denial(&d))?;
        #[derive(Deserialize)]
        struct Body {
            client_use_code: String,
            user_seq_no: String,
        }
        let body: Body = serde_json::from_slice(body).map_err(|e| {
            let mut r = HttpResponse::json(
                200,
                json!({ "rsp_code": "A0004", "rsp_message": format!("request body: {e}") }),
            );
            r.envelope = true;
            r
        })?;
        let claims = self
            .authorizer
            .authorize(&AuthInput {
                authorization,
                api: UNLINK_API,
                required_scope: "login",
                accounts: Vec::new(),
                user: Some(body.user_seq_no.clone()),
                amount: None,
            })
            .map_err(|d| HttpResponse::denial(&d))?;
        if Some(&body.client_use_code) != claims.client_use_code.as_ref() {
            return Err(HttpResponse::denial(&Denial::refused(
                crate::policy::rsp::NO_ACCESS,
                "user_seq_no and client_use_code must be the access token's",
            )));
        }
        self.directory
            .unlink(&body.user_seq_no, &claims.client_id)
            .map_err(Self::directory_failed_api)?;
        self.revoke_all(&claims.client_id, &body.user_seq_no)?;
        let mut r = HttpResponse::json(
            200,
            json!({ "rsp_code": "A0000", "rsp_message": "", "user_seq_no": body.user_seq_no, "client_use_code": body.client_use_code }),
        );
        r.envelope = true;
        Ok(r)
    }

    /// Revokes every access and refresh token issued to `client_id` for `user`.
    fn revoke_all(&self, client_id: &str, user: &str) -> Result<(), HttpResponse> {
        self.revoke_where(client_id, user, |_| true)
    }

    /// Revokes every token of one authorization (its code and the refresh
    /// tokens descended from it), now and if any is issued later.
    fn revoke_family(&self, client_id: &str, user: &str, family: &str) -> Result<(), HttpResponse> {
        self.grants
            .revoke_family(client_id, user, family)
            .map_err(Self::shared_failed)?;
        self.revoke_where(client_id, user, |i| i.family.as_deref() == Some(family))
    }

    fn revoke_where(
        &self,
        client_id: &str,
        user: &str,
        which: impl Fn(&IssuedRecord) -> bool,
    ) -> Result<(), HttpResponse> {
        let issued: Vec<(String, IssuedRecord)> = self
            .grants
            .issued(client_id, user)
            .map_err(Self::shared_failed)?
            .into_iter()
            .filter(|(_, i)| which(i))
            .collect();
        let ids: Vec<String> = issued
            .iter()
            .flat_map(|(_, i)| i.revocation_ids.iter().cloned())
            .collect();
        self.revocations
            .revoke(&ids)
            .map_err(Self::revocation_failed)?;
        for (key, record) in issued {
            if let Some(hash) = record.refresh_hash {
                self.grants
                    .remove_refresh(&hash)
                    .map_err(Self::shared_failed)?;
            }
            self.grants
                .remove_issued(&key)
                .map_err(Self::shared_failed)?;
        }
        self.grants.flush().map_err(Self::shared_failed)
    }
}

/// The API name unlink is authorised as (attenuation blocks may name it in
/// `api($name)` checks).
pub const UNLINK_API: &str = "user/unlink";

/// `client_id` and `client_secret` from the credentials of an HTTP Basic
/// header: `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |part: &str| -> Option<String> {
        // One urlencoded value: `&` and `=` would be escaped in it.
        if part.contains('&') {
            return None;
        }
        form::parse(format!("v={part}").as_bytes())
            .get("v")
            .map(str::to_owned)
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    (!id.is_empty()).then_some((id, secret))
}

/// `BASE64URL(SHA256(verifier))` without padding (RFC 7636 S256).
pub fn pkce_s256(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn is_pkce_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `uri` with `params` appended to its query.
fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_owned();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&form::encode(v));
        sep = '&';
    }
    out
}
