//! Wiring the authorization server into the platform: adapters from
//! `sfop-auth`'s plain types to the gateway's traits, the user directory
//! (the embedded virtual bank, or the home bank over the connector), the admin endpoint for client registration, and the
//! operator's bootstrap admin token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::IgnoredAny;
use serde_json::json;
use sfop_admin_api::clients::{ClientView, ClientsAnswer, RegisteredClient};
use sfop_auth::oauth::{
    AccountChoice, AuthorizeQuery, AuthorizeStep, DirectoryError, OAuthServer, Operation,
    RevokeRequest, TokenRequest, UserDirectory,
};
use sfop_auth::{ClientSpec, TokenAuthorizer};
use sfop_core::Claims;
use sfop_gateway::platform::{Body, Caller, Envelope, Enveloped, Form, FormRejection, Json, Query};
use sfop_gateway::{AuthRequest, Authorizer, Denial, PlatformError};
use sfop_vbank::VirtualBank;

use crate::admin_http::Admin;

/// The gateway's authoriser: biscuit access tokens checked with Datalog.
#[derive(Debug)]
pub struct GatewayAuth(pub Arc<TokenAuthorizer>);

impl Authorizer for GatewayAuth {
    fn authorize(&self, r: &AuthRequest<'_>) -> Result<Option<Claims>, Denial> {
        let authorization = r.headers.get("authorization").and_then(|v| v.to_str().ok());
        // Format before ownership: a malformed user or account is the format
        // error the plugin would answer (HTTP 200, A0004, the SDK's message),
        // as in the testbed, not a refusal for someone else's resource. Only
        // for a caller with a valid token.
        if let Some(bad) = sfop_core::access::malformed(r.manifest, r.query, r.body) {
            self.0
                .verify_bearer(authorization)
                .map_err(gateway_denial)?;
            return Err(Denial::refused(sfop_core::rsp::FORMAT, bad.to_string()));
        }
        let resources = sfop_core::access::extract(&r.manifest.access, r.query, r.body);
        let input = sfop_auth::AuthInput {
            authorization,
            api: &r.manifest.name,
            required_scope: &r.manifest.scope,
            accounts: resources.accounts,
            user: resources.user,
            amount: resources.amount,
        };
        self.0.authorize(&input).map(Some).map_err(gateway_denial)
    }
}

/// The authoriser's refusal as the gateway's: which kind it is, so the
/// gateway's one table (`Fault::status_and_code`, ADR 0021) decides the
/// HTTP status. A 401 (`O0001`, `O0002`) is an authentication failure, a
/// 5xx the authoriser's own; anything else is a business refusal.
fn gateway_denial(d: sfop_auth::Denial) -> Denial {
    match d.status {
        401 => Denial::unauthenticated(d.rsp_code, d.message),
        503 => Denial::unavailable(d.message),
        500.. => Denial::internal(d.message),
        _ => Denial::refused(d.rsp_code, d.message),
    }
}

/// The virtual bank's users, for the sign-in and consent pages.
#[derive(Debug)]
pub struct VbankDirectory(pub VirtualBank);

/// The bank in this process failed: its store, not its reachability.
fn local_failed(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Failed(e.to_string())
}

impl UserDirectory for VbankDirectory {
    fn authenticate(
        &self,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        self.0
            .authenticate(login_id, password)
            .map_err(local_failed)
    }

    fn accounts(&self, user_seq_no: &str) -> Result<Vec<AccountChoice>, DirectoryError> {
        Ok(self
            .0
            .accounts_of(user_seq_no)
            .map_err(local_failed)?
            .into_iter()
            .map(|a| AccountChoice {
                id: a.id,
                bank_name: a.bank_name,
                account_num_masked: a.account_num_masked,
                account_alias: a.account_alias,
            })
            .collect())
    }

    fn register(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        self.0
            .register_accounts(
                user_seq_no,
                client_id,
                client_use_code,
                account_ids,
                scopes,
                sfop_core::time::now_millis(),
            )
            .map_err(local_failed)
    }

    fn unlink(&self, user_seq_no: &str, client_id: &str) -> Result<(), DirectoryError> {
        self.0
            .unlink(user_seq_no, client_id)
            .map(|_| ())
            .map_err(local_failed)
    }
}

/// The home bank's users over the connector (`[bank] mode = "rest"`), or a
/// cluster's embedded bank (its consents in the cluster's database): the
/// sign-in and consent pages ask the bank that issues the fintech numbers
/// and records consents, so a consent given here is the bank's own. The
/// OAuth server calls its directory synchronously, on the blocking pool
/// ([`OAuthEndpoint`], at most [`OAUTH_BLOCKING`] at once); each call is
/// handed to the runtime's async connector (or database pool) and its
/// answer waited for on that blocking thread, bounded by the connector's
/// request timeout (the pool's checkout and connect timeouts). Never to be
/// called on an async worker.
#[derive(Debug)]
pub struct RemoteDirectory {
    bank: Arc<dyn sfop_core::BankDirectory>,
    runtime: tokio::runtime::Handle,
    utc_offset_minutes: i32,
}

impl RemoteDirectory {
    pub fn new(
        bank: Arc<dyn sfop_core::BankDirectory>,
        runtime: tokio::runtime::Handle,
        utc_offset_minutes: i32,
    ) -> Self {
        Self {
            bank,
            runtime,
            utc_offset_minutes,
        }
    }

    /// `ask(bank, call)` on the runtime; its answer, waited for here.
    fn wait<T, F>(
        &self,
        ask: impl FnOnce(Arc<dyn sfop_core::BankDirectory>, i32) -> F,
    ) -> Result<T, DirectoryError>
    where
        F: std::future::Future<Output = Result<T, sfop_core::BankError>> + Send + 'static,
        T: Send + 'static,
    {
        let asked = ask(self.bank.clone(), self.utc_offset_minutes);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(asked.await);
        });
        match rx.recv() {
            Ok(Ok(answer)) => Ok(answer),
            // Down, too slow, or answering what the connector cannot read.
            Ok(Err(e @ (sfop_core::BankError::Timeout | sfop_core::BankError::Backend(_)))) => {
                Err(DirectoryError::Unavailable(e.to_string()))
            }
            Ok(Err(e @ sfop_core::BankError::Refused(_))) => Err(DirectoryError::Failed(format!(
                "the home bank's directory: {e}"
            ))),
            Err(_) => Err(DirectoryError::Failed(
                "the home bank's directory: the call was dropped".into(),
            )),
        }
    }
}

/// The clock and caller of a directory call: no caller (the pages have none).
fn directory_call(utc_offset_minutes: i32) -> sfop_core::BankCall<'static> {
    sfop_core::BankCall {
        caller: None,
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes,
    }
}

impl UserDirectory for RemoteDirectory {
    fn authenticate(
        &self,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        let (login_id, password) = (login_id.to_owned(), password.to_owned());
        self.wait(|bank, offset| async move {
            bank.authenticate(&directory_call(offset), &login_id, &password)
                .await
        })
    }

    fn accounts(&self, user_seq_no: &str) -> Result<Vec<AccountChoice>, DirectoryError> {
        let user = user_seq_no.to_owned();
        let accounts = self.wait(|bank, offset| async move {
            bank.accounts(&directory_call(offset), &user).await
        })?;
        Ok(accounts
            .into_iter()
            .map(|a| AccountChoice {
                id: a.id,
                bank_name: a.bank_name,
                account_num_masked: a.account_num_masked,
                account_alias: a.account_alias,
            })
            .collect())
    }

    fn register(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        let request = sfop_core::ledger::RegisterRequest {
            user_seq_no: user_seq_no.to_owned(),
            client_id: client_id.to_owned(),
            client_use_code: client_use_code.to_owned(),
            account_ids: account_ids.to_vec(),
            scopes: scopes.to_vec(),
        };
        self.wait(
            |bank, offset| async move { bank.register(&directory_call(offset), &request).await },
        )
    }

    fn unlink(&self, user_seq_no: &str, client_id: &str) -> Result<(), DirectoryError> {
        let (user, client) = (user_seq_no.to_owned(), client_id.to_owned());
        self.wait(|bank, offset| async move {
            bank.unlink(&directory_call(offset), &user, &client).await
        })
        .map(|_| ())
    }
}

/// `/oauth/2.0/*` and `/v2.0/user/unlink`. Each request runs on the
/// blocking pool, at most [`OAUTH_BLOCKING`] at a time: sign-in hashes a
/// password (tens of milliseconds of CPU) and the token endpoint flushes
/// the store, neither of which may hold an async worker.
#[derive(Debug, Clone)]
pub struct OAuth {
    server: OAuthServer,
    blocking: Arc<tokio::sync::Semaphore>,
}

/// OAuth requests being answered at once; more wait their turn.
pub const OAUTH_BLOCKING: usize = 4;

impl OAuth {
    pub fn new(server: OAuthServer) -> Self {
        Self {
            server,
            blocking: Arc::new(tokio::sync::Semaphore::new(OAUTH_BLOCKING)),
        }
    }
}

/// The OAuth server's routes, anonymous (a body of at most the gateway's
/// `UNAUTHENTICATED_MAX_BODY`). Each reads its typed query or form with
/// the gateway's [`Form`] and [`Query`], which refuse a parameter given
/// twice (RFC 6749 §3.1); that refusal is answered in the operation's shape
/// ([`OAuthServer::refused`]).
pub fn oauth_routes(oauth: OAuth) -> Router {
    use sfop_auth::oauth::{AUTHORIZE, REVOKE, TOKEN, UNLINK};
    Router::new()
        .route(AUTHORIZE, get(authorize_start).post(authorize_step))
        .route(TOKEN, post(token))
        .route(REVOKE, post(revoke))
        .route(UNLINK, post(unlink))
        .with_state(oauth)
}

/// A query or form as read, or why not.
type Read<T> = Result<T, FormRejection>;

/// A query or form that did not read: the body's own failure (too large,
/// unreadable) as the gateway answers it, a field's in the operation's
/// shape.
fn refused(operation: Operation, rejection: FormRejection) -> Response {
    match rejection {
        FormRejection::Body(e) => e.into_response(),
        FormRejection::Fields(e) | FormRejection::QueryFields(e) => {
            response(OAuthServer::refused(operation, &e))
        }
    }
}

/// The `Authorization` header, for the server's client authentication.
fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn authorize_start(
    State(oauth): State<OAuth>,
    query: Read<Query<AuthorizeQuery>>,
) -> Response {
    let op = Operation::AuthorizeStart;
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return refused(op, e),
    };
    oauth
        .run(move |server| server.authorize_start(&query))
        .await
}

async fn authorize_step(
    State(oauth): State<OAuth>,
    caller: Caller,
    query: Read<Query<IgnoredAny>>,
    form: Read<Form<AuthorizeStep>>,
) -> Response {
    let op = Operation::AuthorizeStep;
    let Form(form) = match query.and(form) {
        Ok(form) => form,
        Err(e) => return refused(op, e),
    };
    oauth
        .run(move |server| server.authorize_step(&form, Some(caller.peer)))
        .await
}

async fn token(
    State(oauth): State<OAuth>,
    headers: HeaderMap,
    query: Read<Query<IgnoredAny>>,
    form: Read<Form<TokenRequest>>,
) -> Response {
    let op = Operation::Token;
    let Form(form) = match query.and(form) {
        Ok(form) => form,
        Err(e) => return refused(op, e),
    };
    let authorization = authorization(&headers);
    oauth
        .run(move |server| server.token(authorization.as_deref(), &form))
        .await
}

async fn revoke(
    State(oauth): State<OAuth>,
    headers: HeaderMap,
    query: Read<Query<IgnoredAny>>,
    form: Read<Form<RevokeRequest>>,
) -> Response {
    let op = Operation::Revoke;
    let Form(form) = match query.and(form) {
        Ok(form) => form,
        Err(e) => return refused(op, e),
    };
    let authorization = authorization(&headers);
    oauth
        .run(move |server| server.revoke(authorization.as_deref(), &form))
        .await
}

/// Unlink reads a JSON body once, for its authorisation and its action
/// alike; only its query is checked for repeated names.
async fn unlink(
    State(oauth): State<OAuth>,
    headers: HeaderMap,
    query: Read<Query<IgnoredAny>>,
    Body(body): Body,
) -> Response {
    if let Err(e) = query {
        return refused(Operation::Unlink, e);
    }
    let authorization = authorization(&headers);
    oauth
        .run(move |server| server.unlink(authorization.as_deref(), &body))
        .await
}

impl OAuth {
    /// Runs `operation` on the blocking pool, at most [`OAUTH_BLOCKING`]
    /// at once.
    async fn run(
        self,
        operation: impl FnOnce(&OAuthServer) -> sfop_auth::oauth::HttpResponse + Send + 'static,
    ) -> Response {
        let Ok(_permit) = self.blocking.clone().acquire_owned().await else {
            return PlatformError::internal("the OAuth endpoint", "its bound closed")
                .into_response();
        };
        let server = self.server.clone();
        match tokio::task::spawn_blocking(move || operation(&server)).await {
            Ok(answer) => response(answer),
            Err(e) => {
                PlatformError::internal("an OAuth request on the blocking pool", e).into_response()
            }
        }
    }
}

/// The OAuth server's answer as the router's.
fn response(answer: sfop_auth::oauth::HttpResponse) -> Response {
    let mut response = Response::new(axum::body::Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    if answer.envelope {
        response.extensions_mut().insert(Envelope);
    }
    response
}

/// `/admin/v1/clients`: operators register fintech apps (the caller
/// admitted as an admin by the router's admin layer).
#[derive(Debug, Clone)]
pub struct Clients {
    pub clients: sfop_auth::ClientRegistry,
    /// Where institutions are onboarded: an app joins only one that exists.
    pub bank: VirtualBank,
}

/// The path of the clients admin routes: the admin API's one definition.
pub use sfop_admin_api::clients::CLIENTS;

pub fn client_routes(clients: Clients) -> Router {
    Router::new()
        .route(CLIENTS, get(list_clients).post(register_client))
        .with_state(clients)
}

/// The cluster's database away is 503 `A0013` (the platform's failure,
/// retried later, ADR 0029); any other failure is internal.
fn clients_failed(e: sfop_auth::Error) -> PlatformError {
    match e {
        sfop_auth::Error::Unavailable(cause) => {
            tracing::warn!(%cause, "the clients admin endpoint: the cluster is unavailable");
            PlatformError::refused(503, "A0013", cause)
        }
        e => PlatformError::internal("the clients admin endpoint", e),
    }
}

async fn list_clients(
    State(c): State<Clients>,
    Admin(_): Admin,
) -> Result<Enveloped<ClientsAnswer>, PlatformError> {
    let list = c.clients.list_async().await.map_err(clients_failed)?;
    Ok(Enveloped(
        StatusCode::OK,
        ClientsAnswer {
            rsp_code: sfop_admin_api::OK.to_owned(),
            rsp_message: String::new(),
            res_cnt: list.len().to_string(),
            res_list: list
                .into_iter()
                .map(|c| ClientView {
                    client_id: c.client_id,
                    name: c.name,
                    client_use_code: c.client_use_code,
                    scopes: c.scopes,
                    redirect_uris: c.redirect_uris,
                    public: c.public,
                })
                .collect(),
        },
    ))
}

async fn register_client(
    State(c): State<Clients>,
    Admin(admin): Admin,
    Json(spec): Json<ClientSpec>,
) -> Result<Enveloped<RegisteredClient>, PlatformError> {
    if let Some(code) = &spec.institution
        && c.bank
            .institution(code)
            .map_err(|e| PlatformError::internal("the clients admin endpoint", e))?
            .is_none()
    {
        return Err(PlatformError::invalid(
            "institution",
            format!("no institution {code}; create it with sfop institution create"),
        ));
    }
    match c.clients.register_async(spec).await {
        Ok((client, secret)) => {
            tracing::info!(%admin, client_id = %client.client_id, name = %client.name, "client registered");
            Ok(Enveloped(
                StatusCode::CREATED,
                RegisteredClient {
                    rsp_code: sfop_admin_api::OK.to_owned(),
                    rsp_message: String::new(),
                    client_id: client.client_id,
                    client_secret: secret,
                    client_use_code: client.client_use_code,
                    scopes: client.scopes,
                    redirect_uris: client.redirect_uris,
                },
            ))
        }
        Err(sfop_auth::Error::Invalid(message)) => {
            Err(PlatformError::refused(400, "A0004", message))
        }
        Err(e) => Err(clients_failed(e)),
    }
}

/// Registers the virtual bank's demo institution as an OAuth client on first
/// start, so a newcomer can call every API at once. Its secret is random and
/// written to `data_dir/demo-client.json` (mode 0600), never hard-coded.
///
/// On a cluster the first node to start registers it (the others find it,
/// or lose the race to register it, and go on); its secret is in that
/// node's file, which the operator provisions to the others with the keys.
fn seed_demo_client(server: &OAuthServer, data_dir: &Path) -> anyhow::Result<()> {
    let clients = server.clients();
    if clients.get(sfop_vbank::seed::DEMO_CLIENT_ID)?.is_some() {
        return Ok(());
    }
    let registered = clients.register_as(
        sfop_vbank::seed::DEMO_CLIENT_ID.to_owned(),
        ClientSpec {
            name: "sfop demo app".into(),
            redirect_uris: vec!["http://localhost:8000/callback".into()],
            scopes: ["login", "inquiry", "transfer", "oob"]
                .map(String::from)
                .to_vec(),
            client_use_code: Some(sfop_vbank::seed::DEMO_CLIENT_USE_CODE.to_owned()),
            public: false,
            institution: None,
        },
    );
    let (client, secret) = match registered {
        Ok(registered) => registered,
        // Another node of the cluster registered it meanwhile.
        Err(sfop_auth::Error::Invalid(_))
            if clients.get(sfop_vbank::seed::DEMO_CLIENT_ID)?.is_some() =>
        {
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let file = json!({
        "client_id": client.client_id,
        "client_secret": secret,
        "client_use_code": client.client_use_code,
        "redirect_uri": client.redirect_uris.first(),
    });
    let path = data_dir.join("demo-client.json");
    sfop_core::files::write_private(&path, serde_json::to_string_pretty(&file)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes an admin token for the local operator into `data_dir/admin.token`
/// (mode 0600) unless one is there; returns its path.
pub fn bootstrap_admin_token(
    ring: &sfop_auth::KeyRing,
    data_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("admin.token");
    if path.is_file() {
        return Ok(path);
    }
    // Ten years: the operator rotates it by revoking and deleting the file.
    let expires = sfop_core::time::now_millis() / 1000 + 10 * 365 * 86_400;
    let token = sfop_auth::issue_admin(ring, "local-operator", expires)?;
    sfop_core::files::write_private(&path, token.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

impl AuthParts {
    /// The OAuth server on `clock` instead of the system's (tests expire
    /// codes and reopen throttles without waiting).
    pub fn with_oauth_clock(mut self, clock: Option<sfop_auth::oauth::Clock>) -> Self {
        if let Some(clock) = clock {
            self.server = self.server.with_clock(clock);
        }
        self
    }
}

/// The authorization side of a running platform.
#[derive(Debug)]
pub struct AuthParts {
    /// The root keys (shared with the authoriser and the server).
    pub ring: sfop_auth::KeyRing,
    pub authorizer: Arc<TokenAuthorizer>,
    pub server: OAuthServer,
    pub admin_token: PathBuf,
}

impl AuthParts {
    /// `cluster_bank`: the embedded bank of a cluster's node, whose
    /// consents are the cluster's (ADR 0030).
    pub fn open(
        store: &sfop_store::Store,
        bank: &VirtualBank,
        cluster_bank: Option<&sfop_vbank::ClusterBank>,
        config: &crate::Config,
        node: Option<&Arc<crate::cluster::Node>>,
    ) -> anyhow::Result<Self> {
        let ring = sfop_auth::KeyRing::load(&config.data_dir.join("keys"), store)
            .context("opening the root key ring")?;
        // A cluster's nodes refuse the same revoked tokens (ADR 0029).
        let revocations = Arc::new(match node {
            Some(node) => sfop_auth::Revocations::shared(Arc::new(
                crate::cluster::FeedRevocations::new(node.clone())?,
            )),
            None => sfop_auth::Revocations::open(store).context("opening revocations")?,
        });
        let mut policy = sfop_auth::PolicyConfig::default();
        for bank_consent in &config.auth.bank_consent {
            policy = policy
                .require_bank_consent(&bank_consent.public_key, bank_consent.scopes.clone())
                .context("auth.bank_consent")?;
        }
        let authorizer = Arc::new(TokenAuthorizer::new(
            ring.clone(),
            revocations.clone(),
            policy,
        ));
        // Sign-in and consents: the bank that issues the fintech numbers.
        let directory: Arc<dyn UserDirectory> = match (config.bank.mode, cluster_bank) {
            // A cluster's: a consent given on one node is every node's.
            (crate::bank::BankMode::Embedded, Some(clustered)) => Arc::new(RemoteDirectory::new(
                Arc::new(clustered.clone()),
                tokio::runtime::Handle::try_current()
                    .context("the authorization server needs a tokio runtime")?,
                config.utc_offset_minutes,
            )),
            (crate::bank::BankMode::Embedded, None) => Arc::new(VbankDirectory(bank.clone())),
            (crate::bank::BankMode::Rest, _) => Arc::new(RemoteDirectory::new(
                Arc::new(config.bank.connector()?),
                tokio::runtime::Handle::try_current()
                    .context("the authorization server needs a tokio runtime")?,
                config.utc_offset_minutes,
            )),
        };
        let server = OAuthServer::open(
            store,
            ring.clone(),
            revocations,
            authorizer.clone(),
            directory,
            sfop_auth::oauth::OAuthConfig::default(),
        )
        .context("opening the authorization server")?;
        // A cluster's nodes know the same apps, codes, refresh tokens and
        // token families (ADR 0029).
        let server = match node {
            Some(node) => {
                let runtime = tokio::runtime::Handle::try_current()
                    .context("the cluster's apps need a tokio runtime")?;
                server
                    .with_clients(sfop_auth::ClientRegistry::shared(Arc::new(
                        crate::cluster::apps::ClusterApps::new(
                            node.cluster.clone(),
                            runtime.clone(),
                        ),
                    )))
                    .with_grants(Arc::new(crate::cluster::grants::ClusterGrants::new(
                        node.cluster.clone(),
                        runtime,
                    )))
            }
            None => server,
        };
        let admin_token = bootstrap_admin_token(&ring, &config.data_dir)?;
        seed_demo_client(&server, &config.data_dir)?;
        Ok(Self {
            ring,
            authorizer,
            server,
            admin_token,
        })
    }
}
