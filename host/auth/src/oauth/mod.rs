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
//! The server speaks plain request/response values ([`HttpRequest`],
//! [`HttpResponse`]); the platform binary mounts it on the gateway.

use sfop_core::form;
mod pages;

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sfop_store::{Store, Tree};

use crate::policy::Denial;
use crate::secret::{random_hex, sha256_hex};
use crate::{AccessGrant, Client, ClientRegistry, KeyRing, Revocations, TokenAuthorizer};

pub use form::parse as parse_form;

/// Every `METHOD path` this server answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/oauth/2.0/authorize"),
    ("POST", "/oauth/2.0/authorize"),
    ("POST", "/oauth/2.0/token"),
    ("POST", "/oauth/2.0/revoke"),
    ("POST", "/v2.0/user/unlink"),
];

/// The scopes a user can consent to (the 3-legged flow).
pub const USER_SCOPES: &[&str] = &["login", "inquiry", "transfer"];

/// One request, as the gateway hands it over.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
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

    fn denial(d: &Denial) -> Self {
        let mut r = Self::json(
            d.status,
            json!({ "rsp_code": d.rsp_code, "rsp_message": d.message }),
        );
        r.envelope = true;
        r
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
    fn authenticate(&self, login_id: &str, password: &str) -> Result<Option<String>, String>;
    /// The accounts the user may register.
    fn accounts(&self, user_seq_no: &str) -> Result<Vec<AccountChoice>, String>;
    /// Records consent for `scopes` on `account_ids` for the client; returns
    /// the fintech_use_num issued for each account, in order.
    fn register(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
    ) -> Result<Vec<String>, String>;
    /// Withdraws every consent the user gave the client.
    fn unlink(&self, user_seq_no: &str, client_id: &str) -> Result<(), String>;
}

/// Lifetimes of what the server issues.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Access token lifetime, seconds (the reference: about 90 days).
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub code_ttl: u64,
    /// Time a user has to finish the sign-in and consent pages.
    pub pending_ttl: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_ttl: 7_775_999,
            refresh_ttl: 8_639_999,
            code_ttl: 600,
            pending_ttl: 900,
        }
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

/// An issued authorization code (stored under its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Code {
    client_id: String,
    redirect_uri: String,
    user_seq_no: String,
    scopes: Vec<String>,
    fintech_use_nums: Vec<String>,
    code_challenge: Option<String>,
    expires_at: u64,
}

/// A refresh token (stored under its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refresh {
    client_id: String,
    user_seq_no: String,
    scopes: Vec<String>,
    fintech_use_nums: Vec<String>,
    expires_at: u64,
}

/// What was issued to a (client, user) pair, so that unlink can revoke it all.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    revocation_ids: Vec<String>,
    refresh_hash: Option<String>,
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
    store: Store,
    pending: Tree,
    codes: Tree,
    refresh: Tree,
    issued: Tree,
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
            store: store.clone(),
            pending: store.tree("auth.pending")?,
            codes: store.tree("auth.codes")?,
            refresh: store.tree("auth.refresh")?,
            issued: store.tree("auth.issued")?,
        })
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// Answers one request to one of [`ROUTES`].
    pub fn handle(&self, req: &HttpRequest<'_>) -> HttpResponse {
        let outcome = match (req.method, req.path) {
            ("GET", "/oauth/2.0/authorize") => self.authorize_start(req.query),
            ("POST", "/oauth/2.0/authorize") => self.authorize_step(req.body),
            ("POST", "/oauth/2.0/token") => self.token(req.body),
            ("POST", "/oauth/2.0/revoke") => self.revoke(req.body),
            ("POST", "/v2.0/user/unlink") => self.unlink(req),
            _ => Err(HttpResponse::error(
                404,
                "A0004",
                "invalid_request",
                "no such endpoint",
            )),
        };
        outcome.unwrap_or_else(|e| e)
    }

    fn store_failed(e: impl std::fmt::Display) -> HttpResponse {
        tracing::error!(error = %e, "authorization server store failure");
        HttpResponse::error(500, "A0003", "server_error", "platform internal error")
    }

    // ---------- 3-legged: authorize ----------

    fn authorize_start(&self, query: &str) -> Outcome {
        let q = form::parse(query.as_bytes());
        let client_id = q.get("client_id").unwrap_or_default();
        let client = match self.clients.get(client_id).map_err(Self::store_failed)? {
            Some(c) => c,
            None => {
                return Err(pages::error_page(
                    400,
                    "Unknown application",
                    "client_id is not a registered application.",
                ));
            }
        };
        let redirect_uri = q.get("redirect_uri").unwrap_or_default();
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            // Never redirect to an unregistered URI: show the error here.
            return Err(pages::error_page(
                400,
                "Invalid redirect_uri",
                "redirect_uri is not registered for this application.",
            ));
        }
        let state = q.get("state").unwrap_or_default().to_owned();
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
        if q.get("response_type") != Some("code") {
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
            .get("scope")
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
        let code_challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
            (Some(c), Some("S256")) if is_pkce_challenge(c) => Some(c.to_owned()),
            (Some(_), _) => {
                return Err(fail(
                    "invalid_request",
                    "O0001",
                    "code_challenge must be a base64url SHA-256 with code_challenge_method=S256",
                ));
            }
            (None, _) if client.public => {
                return Err(fail(
                    "invalid_request",
                    "O0001",
                    "public clients must use PKCE (code_challenge, S256)",
                ));
            }
            (None, _) => None,
        };
        let id = random_hex(32).map_err(Self::store_failed)?;
        let pending = Pending {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            code_challenge,
            user_seq_no: None,
            expires_at: crate::now_secs() + self.config.pending_ttl,
        };
        self.pending
            .insert_json(&id, &pending)
            .map_err(Self::store_failed)?;
        Ok(pages::sign_in(&client, &id, None))
    }

    fn authorize_step(&self, body: &[u8]) -> Outcome {
        let f = form::parse(body);
        let id = f.get("pending").unwrap_or_default();
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
        if pending.expires_at < crate::now_secs() {
            let _ = self.pending.remove(id.as_bytes());
            return Err(expired());
        }
        let client = self
            .clients
            .get(&pending.client_id)
            .map_err(Self::store_failed)?
            .ok_or_else(expired)?;
        match (f.get("action"), &pending.user_seq_no) {
            (Some("login"), _) => {
                let user = self
                    .directory
                    .authenticate(
                        f.get("login_id").unwrap_or_default(),
                        f.get("password").unwrap_or_default(),
                    )
                    .map_err(Self::store_failed)?;
                let Some(user) = user else {
                    return Ok(pages::sign_in(
                        &client,
                        id,
                        Some("The ID or password is not correct."),
                    ));
                };
                let accounts = self.directory.accounts(&user).map_err(Self::store_failed)?;
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
            (Some("consent"), Some(user)) => self.consent(&client, id, &pending, user, &f),
            _ => Err(expired()),
        }
    }

    fn consent(
        &self,
        client: &Client,
        id: &str,
        pending: &Pending,
        user: &str,
        f: &form::Form,
    ) -> Outcome {
        let scopes: Vec<String> = f
            .all("scope")
            .into_iter()
            .filter(|s| pending.scopes.iter().any(|p| p == s))
            .map(str::to_owned)
            .collect();
        let accounts: Vec<String> = f.all("account").into_iter().map(str::to_owned).collect();
        let needs_accounts = scopes.iter().any(|s| s == "inquiry" || s == "transfer");
        if scopes.is_empty() || (needs_accounts && accounts.is_empty()) {
            let choices = self.directory.accounts(user).map_err(Self::store_failed)?;
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
                &accounts,
                &scopes,
            )
            .map_err(Self::store_failed)?;
        let code = random_hex(32).map_err(Self::store_failed)?;
        let record = Code {
            client_id: client.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            user_seq_no: user.to_owned(),
            scopes: scopes.clone(),
            fintech_use_nums,
            code_challenge: pending.code_challenge.clone(),
            expires_at: crate::now_secs() + self.config.code_ttl,
        };
        self.codes
            .insert_json(&sha256_hex(&[code.as_bytes()]), &record)
            .map_err(Self::store_failed)?;
        self.store.flush().map_err(Self::store_failed)?;
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

    fn token(&self, body: &[u8]) -> Outcome {
        let f = form::parse(body);
        let client = self.authenticate_client(&f)?;
        match f.get("grant_type") {
            Some("authorization_code") => self.grant_code(&client, &f),
            Some("refresh_token") => self.grant_refresh(&client, &f),
            Some("client_credentials") => self.grant_client_credentials(&client, &f),
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

    fn authenticate_client(&self, f: &form::Form) -> Result<Client, HttpResponse> {
        let unauthorized = || {
            HttpResponse::error(
                401,
                "O0001",
                "invalid_client",
                "client_id or client_secret is not correct",
            )
        };
        let client_id = f.get("client_id").ok_or_else(|| {
            HttpResponse::error(400, "O0001", "invalid_request", "client_id is required")
        })?;
        let client = self
            .clients
            .get(client_id)
            .map_err(Self::store_failed)?
            .ok_or_else(unauthorized)?;
        let secret = f.get("client_secret").filter(|s| !s.is_empty());
        if !client.secret_matches(secret) {
            return Err(unauthorized());
        }
        Ok(client)
    }

    fn grant_code(&self, client: &Client, f: &form::Form) -> Outcome {
        let invalid = |m: &str| HttpResponse::error(400, "O0001", "invalid_grant", m);
        let code = f.get("code").ok_or_else(|| invalid("code is required"))?;
        // Single use: the first redemption removes it.
        let record: Code = self
            .codes
            .take_json(&sha256_hex(&[code.as_bytes()]))
            .map_err(Self::store_failed)?
            .ok_or_else(|| invalid("code is unknown, expired or already used"))?;
        if record.client_id != client.client_id {
            return Err(invalid("code was issued to another client"));
        }
        if record.expires_at < crate::now_secs() {
            return Err(invalid("code is unknown, expired or already used"));
        }
        if f.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
            return Err(invalid(
                "redirect_uri does not match the authorization request",
            ));
        }
        if let Some(challenge) = &record.code_challenge {
            let verifier = f
                .get("code_verifier")
                .ok_or_else(|| invalid("code_verifier is required (PKCE)"))?;
            if !(43..=128).contains(&verifier.len()) || &pkce_s256(verifier) != challenge {
                return Err(invalid("code_verifier does not match code_challenge"));
            }
        }
        self.issue_user_tokens(
            client,
            &record.user_seq_no,
            &record.scopes,
            &record.fintech_use_nums,
        )
    }

    fn issue_user_tokens(
        &self,
        client: &Client,
        user: &str,
        scopes: &[String],
        accounts: &[String],
    ) -> Outcome {
        let now = crate::now_secs();
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
        self.refresh
            .insert_json(
                &refresh_hash,
                &Refresh {
                    client_id: client.client_id.clone(),
                    user_seq_no: user.to_owned(),
                    scopes: scopes.to_vec(),
                    fintech_use_nums: accounts.to_vec(),
                    expires_at: now + self.config.refresh_ttl,
                },
            )
            .map_err(Self::store_failed)?;
        self.record_issued(&client.client_id, user, &access, Some(refresh_hash))?;
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
    ) -> Result<(), HttpResponse> {
        let verified = crate::token::verify(&self.ring, access).map_err(Self::store_failed)?;
        let key = format!(
            "{client_id}\0{user}\0{}",
            random_hex(8).map_err(Self::store_failed)?
        );
        self.issued
            .insert_json(
                &key,
                &Issued {
                    revocation_ids: verified.revocation_ids,
                    refresh_hash,
                },
            )
            .map_err(Self::store_failed)?;
        self.store.flush().map_err(Self::store_failed)
    }

    fn grant_refresh(&self, client: &Client, f: &form::Form) -> Outcome {
        let invalid = |m: &str| HttpResponse::error(400, "O0002", "invalid_grant", m);
        let token = f
            .get("refresh_token")
            .ok_or_else(|| invalid("refresh_token is required"))?;
        // Rotation: the presented token is consumed whatever happens next.
        let record: Refresh = self
            .refresh
            .take_json(&sha256_hex(&[token.as_bytes()]))
            .map_err(Self::store_failed)?
            .ok_or_else(|| invalid("refresh_token is unknown, expired or already used"))?;
        if record.client_id != client.client_id || record.expires_at < crate::now_secs() {
            return Err(invalid("refresh_token is unknown, expired or already used"));
        }
        // A narrower scope may be asked for, never a wider one.
        let scopes = match f
            .get("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        {
            Some(asked) if !asked.is_empty() => {
                if let Some(extra) = asked.iter().find(|s| !record.scopes.contains(s)) {
                    return Err(HttpResponse::error(
                        400,
                        "O0011",
                        "invalid_scope",
                        &format!("scope {extra} was not granted"),
                    ));
                }
                asked
            }
            _ => record.scopes.clone(),
        };
        self.issue_user_tokens(
            client,
            &record.user_seq_no,
            &scopes,
            &record.fintech_use_nums,
        )
    }

    fn grant_client_credentials(&self, client: &Client, f: &form::Form) -> Outcome {
        let scope = f.get("scope").unwrap_or_default();
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
            expires_at: crate::now_secs() + self.config.access_ttl,
        };
        let access = grant.issue(&self.ring).map_err(Self::store_failed)?;
        self.record_issued(&client.client_id, "", &access, None)?;
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

    fn revoke(&self, body: &[u8]) -> Outcome {
        let f = form::parse(body);
        let client = self.authenticate_client(&f)?;
        let token = f.get("token").ok_or_else(|| {
            HttpResponse::error(400, "O0001", "invalid_request", "token is required")
        })?;
        let refresh_key = sha256_hex(&[token.as_bytes()]);
        let refresh: Option<Refresh> = self
            .refresh
            .get_json(&refresh_key)
            .map_err(Self::store_failed)?;
        match refresh {
            Some(record) if record.client_id == client.client_id => {
                self.refresh
                    .remove(refresh_key.as_bytes())
                    .map_err(Self::store_failed)?;
            }
            Some(_) => {}
            None => {
                // An access token of this client: revoke its blocks.
                if let Ok(verified) = crate::token::verify(&self.ring, token)
                    && verified.claims.client_id == client.client_id
                {
                    self.revocations
                        .revoke(&verified.revocation_ids)
                        .map_err(Self::store_failed)?;
                }
            }
        }
        self.store.flush().map_err(Self::store_failed)?;
        // RFC 7009: the answer does not reveal whether the token existed.
        Ok(HttpResponse::json(
            200,
            json!({ "rsp_code": "A0000", "rsp_message": "" }),
        ))
    }

    fn unlink(&self, req: &HttpRequest<'_>) -> Outcome {
        let verified = self
            .authorizer
            .verify_bearer(req.authorization)
            .map_err(|d| HttpResponse::denial(&d))?;
        let claims = &verified.claims;
        if !claims.scopes.iter().any(|s| s == "login") {
            return Err(HttpResponse::denial(&Denial {
                status: 403,
                rsp_code: crate::policy::rsp::NO_PERMISSION,
                message: "unlink needs an access token with scope login".into(),
            }));
        }
        #[derive(Deserialize)]
        struct Body {
            client_use_code: String,
            user_seq_no: String,
        }
        let body: Body = serde_json::from_slice(req.body).map_err(|e| {
            let mut r = HttpResponse::json(
                200,
                json!({ "rsp_code": "A0004", "rsp_message": format!("request body: {e}") }),
            );
            r.envelope = true;
            r
        })?;
        if Some(&body.user_seq_no) != claims.user_seq_no.as_ref()
            || Some(&body.client_use_code) != claims.client_use_code.as_ref()
        {
            return Err(HttpResponse::denial(&Denial {
                status: 403,
                rsp_code: crate::policy::rsp::NO_ACCESS,
                message: "user_seq_no and client_use_code must be the access token's".into(),
            }));
        }
        self.directory
            .unlink(&body.user_seq_no, &claims.client_id)
            .map_err(Self::store_failed)?;
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
        let issued: Vec<(String, Issued)> = self
            .issued
            .prefix_json(&format!("{client_id}\0{user}\0"))
            .collect::<Result<_, _>>()
            .map_err(Self::store_failed)?;
        let ids: Vec<String> = issued
            .iter()
            .flat_map(|(_, i)| i.revocation_ids.iter().cloned())
            .collect();
        self.revocations.revoke(&ids).map_err(Self::store_failed)?;
        for (key, record) in issued {
            if let Some(hash) = record.refresh_hash {
                self.refresh
                    .remove(hash.as_bytes())
                    .map_err(Self::store_failed)?;
            }
            self.issued
                .remove(key.as_bytes())
                .map_err(Self::store_failed)?;
        }
        self.store.flush().map_err(Self::store_failed)
    }
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
