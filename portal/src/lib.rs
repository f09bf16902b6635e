//! The sfop developer portal: catalogue, per-API docs, OpenAPI 3.1, scopes and
//! permissions, change notices (with an Atom feed), testbed reports, developer
//! sign-up, app registration and "try it", all generated on every request
//! from the [`Catalog`] of what the platform runs, so the portal cannot drift
//! from it.
//!
//! The portal speaks plain request/response values ([`PortalRequest`],
//! [`PortalResponse`]); the platform binary mounts it on the gateway under
//! `/portal`. Calls it makes to the platform (code exchange, "try it") go
//! through an [`Upstream`], which the binary implements in process: a
//! request built in memory and served by the gateway's own request path
//! (route table, authorisation, envelope), with no socket and no TLS.

mod assets;
mod changes;
mod developers;
mod openapi;
mod pages;
mod render;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sfop_auth::ClientRegistry;
use sfop_core::Manifest;
use sfop_store::Store;

pub use developers::{
    ContractAccountInfo, Developer, Developers, InstitutionInfo, Institutions, SharedDevelopers,
    SharedError, SharedFuture, TokenAccount,
};
pub use openapi::openapi;
pub use pages::Page;
pub use sfop_core::contract::{Change, ChangeKind};

/// Every API the platform knows. Implemented by the management center's
/// registry; until then the platform binary implements it over the live route
/// table. Read on every request: nothing is cached across requests.
pub trait Catalog: Send + Sync + fmt::Debug {
    /// Every API the platform knows, each with all its versions, newest first.
    fn apis(&self) -> Vec<ApiEntry>;
}

/// The sandbox's scripted faults, as a developer may see and change them for
/// their own apps. Implemented by the platform binary over the virtual
/// bank's fault script (the portal does not name the bank). Rules are JSON
/// objects in the admin API's shape (`testbed/README.md`).
pub trait Sandbox: Send + Sync + fmt::Debug {
    /// The rules of `client_id`, oldest first, each with its `id`.
    fn rules(&self, client_id: &str) -> Vec<serde_json::Value>;
    /// Adds `rule` for `client_id` (its own `client_id` is ignored); the
    /// new id. [`ServiceError::Invalid`] names the offending field.
    fn add(&self, client_id: &str, rule: serde_json::Value) -> Result<u64, ServiceError>;
    /// Removes rule `id` if it is one of `client_id`'s; whether it was.
    fn remove(&self, client_id: &str, id: u64) -> Result<bool, ServiceError>;
    /// The participant banks and whether each answers (the operator's
    /// outage switch), for the status page.
    fn banks(&self) -> Vec<BankState> {
        Vec::new()
    }
    /// The rules that apply to every app (no `client_id`), oldest first, in
    /// the same shape as [`Sandbox::rules`]: the status page's incidents.
    fn platform_rules(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}

/// Why the sandbox or the institutions did not do what a developer asked:
/// their input (shown on the page they came from, 400) or a failure of the
/// platform behind them (a 503 page, logged; never the developer's fault).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The developer's input; the message starts with the offending field.
    #[error("{0}")]
    Invalid(String),
    /// The platform failed (store, bank).
    #[error("the platform failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ServiceError {
    /// A platform failure from anything that is an error.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ServiceError::Failed(Box::new(e))
    }
}

/// A participant bank of the sandbox, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankState {
    /// Standard 3-digit code, e.g. `097`.
    pub code: String,
    pub name: String,
    /// `false` while the operator has the bank in an outage.
    pub available: bool,
}

/// One API and its versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEntry {
    pub name: String,
    pub versions: Vec<VersionEntry>,
}

/// One uploaded version of an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub manifest: Manifest,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    pub state: VersionState,
    pub uploaded_at_ms: u64,
    /// The testbed's report, already rendered as HTML and escaped by the
    /// testbed; the portal shows it as it is.
    pub report_html: Option<String>,
    /// What happened to this version after it was published, oldest first
    /// (from the management center's audit log): each is its own dated
    /// change notice, kept after the version moves on.
    pub milestones: Vec<Milestone>,
}

/// A dated event in a published version's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    pub at_ms: u64,
    pub kind: MilestoneKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilestoneKind {
    /// Deprecated, to stop serving on `sunset` (`YYYY-MM-DD`).
    Deprecated { sunset: String },
    /// Taken out of service.
    Retired,
}

/// Where a version is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionState {
    Uploaded,
    Tested {
        passed: bool,
    },
    Live,
    /// Serving `percent` of calls next to the live version.
    Canary {
        percent: u8,
    },
    /// Still served until `sunset` (`YYYY-MM-DD`).
    Deprecated {
        sunset: String,
    },
    /// Was live; a newer version serves in its place (it may come back by a
    /// rollback). Not out of service: that is [`VersionState::Retired`].
    Superseded,
    /// Out of service: the API no longer answers.
    Retired,
}

impl VersionState {
    /// Whether calls reach this version.
    pub fn is_served(&self) -> bool {
        matches!(
            self,
            VersionState::Live | VersionState::Canary { .. } | VersionState::Deprecated { .. }
        )
    }

    /// A short label, e.g. `canary 10%`.
    pub fn label(&self) -> String {
        match self {
            VersionState::Uploaded => "uploaded".into(),
            VersionState::Tested { passed: true } => "tested: passed".into(),
            VersionState::Tested { passed: false } => "tested: failed".into(),
            VersionState::Live => "live".into(),
            VersionState::Canary { percent } => format!("canary {percent}%"),
            VersionState::Deprecated { sunset } => format!("deprecated, sunset {sunset}"),
            VersionState::Superseded => "superseded".into(),
            VersionState::Retired => "retired".into(),
        }
    }

    /// The CSS class of its badge.
    fn class(&self) -> &'static str {
        match self {
            VersionState::Live => "live",
            VersionState::Canary { .. } => "canary",
            VersionState::Deprecated { .. } => "deprecated",
            VersionState::Retired => "retired",
            VersionState::Uploaded | VersionState::Tested { .. } | VersionState::Superseded => "",
        }
    }
}

impl ApiEntry {
    /// The version the docs describe: the live one, else a deprecated one
    /// still served, else a canary.
    pub fn current(&self) -> Option<&VersionEntry> {
        let find = |f: fn(&VersionState) -> bool| self.versions.iter().find(|v| f(&v.state));
        find(|s| matches!(s, VersionState::Live))
            .or_else(|| find(|s| matches!(s, VersionState::Deprecated { .. })))
            .or_else(|| find(|s| matches!(s, VersionState::Canary { .. })))
    }
}

/// A request the platform sends on the portal's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub method: String,
    /// Path and query, e.g. `/v2.0/bank/status?x=1`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `host[:port]` the developer's browser used (the `Host` the
    /// platform sees).
    pub authority: Option<String>,
    /// The developer's address, so the platform's throttles count the
    /// developer, not the portal.
    pub peer: Option<std::net::IpAddr>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why the platform could not be asked. Never the developer's doing: the
/// portal answers 503 and logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The platform is stopping: its endpoints are gone.
    #[error("the platform is stopping")]
    Stopped,
    /// The portal was built without [`Portal::with_platform`].
    #[error("the portal is not connected to a platform")]
    NotConnected,
    /// The portal built a request the platform's HTTP types refuse (a bug
    /// of the portal, not of the developer's input, which it encodes).
    #[error("the portal built an invalid request: {0}")]
    InvalidRequest(String),
}

/// A boxed future of an upstream answer.
pub type UpstreamFuture =
    Pin<Box<dyn Future<Output = Result<UpstreamResponse, UpstreamError>> + Send + 'static>>;

/// Sends requests to the platform (token endpoint, APIs), the way a
/// client's request is served.
pub trait Upstream: Send + Sync + fmt::Debug {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture;
}

/// One request to the portal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalRequest {
    pub method: String,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// `host[:port]` the client addressed.
    pub authority: Option<String>,
    /// The `Cookie` header.
    pub cookie: Option<String>,
    pub body: Vec<u8>,
    /// The client's address, for the sign-in throttle.
    pub peer: Option<std::net::IpAddr>,
    /// The `Origin` header, when the browser sent one.
    pub origin: Option<String>,
    /// The `Sec-Fetch-Site` header (Fetch Metadata), when the browser sent
    /// one.
    pub fetch_site: Option<String>,
}

/// The portal's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Portal settings.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// `https` or `http`: how browsers reach the platform (for the portal's
    /// OAuth callback and the OpenAPI server URL).
    pub scheme: String,
    /// PBKDF2-HMAC-SHA256 rounds for developer passwords.
    pub password_rounds: u32,
    /// How long a developer stays signed in, seconds.
    pub session_ttl_secs: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            scheme: "https".into(),
            // OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
            password_rounds: 600_000,
            session_ttl_secs: 8 * 3600,
        }
    }
}

/// Why the portal could not answer. Every variant is the platform's
/// failure, never the developer's: what a developer got wrong is a page
/// with its 4xx status, not an `Error`. Rendered by [`Error::page`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] sfop_store::Error),
    #[error(transparent)]
    Auth(#[from] sfop_auth::Error),
    #[error("OS randomness: {0}")]
    Random(String),
    #[error("a password check did not finish: {0}")]
    Hashing(String),
    /// The platform could not be asked (the portal's calls of it).
    #[error(transparent)]
    Platform(#[from] UpstreamError),
    /// The platform answered one of the portal's calls with a server error.
    #[error("the platform answered {status} to {what}")]
    PlatformAnswered { what: &'static str, status: u16 },
    /// The sandbox or the institutions failed.
    #[error("{what}: {source}")]
    Service {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// The status of the page: 503 when the platform or a box behind it is
    /// unavailable (retrying may help), 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Error::Store(_)
            | Error::Auth(sfop_auth::Error::Unavailable(_))
            | Error::Platform(UpstreamError::Stopped | UpstreamError::NotConnected)
            | Error::Service { .. } => 503,
            Error::PlatformAnswered { .. } => 502,
            Error::Auth(_)
            | Error::Random(_)
            | Error::Hashing(_)
            | Error::Platform(UpstreamError::InvalidRequest(_)) => 500,
        }
    }

    /// The error as a page with [`Error::status`]: what went wrong in the
    /// developer's terms, no internals (they are logged).
    pub fn page(&self) -> PortalResponse {
        let (title, message) = match self {
            Error::Platform(_) | Error::PlatformAnswered { .. } => (
                "The platform is not available",
                "The portal could not get an answer from the platform. Try again.",
            ),
            Error::Store(_)
            | Error::Auth(sfop_auth::Error::Unavailable(_))
            | Error::Service { .. } => (
                "Temporarily unavailable",
                "The portal could not read or record this just now. Try again.",
            ),
            Error::Auth(_) | Error::Random(_) | Error::Hashing(_) => (
                "Something went wrong",
                "The portal could not answer. Try again.",
            ),
        };
        render::error_page(self.status(), title, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The mount point.
pub const PREFIX: &str = "/portal";

/// The developer portal.
#[derive(Debug, Clone)]
pub struct Portal {
    catalog: Arc<dyn Catalog>,
    clients: ClientRegistry,
    developers: Developers,
    upstream: Option<Arc<dyn Upstream>>,
    sandbox: Option<Arc<dyn Sandbox>>,
    institutions: Option<Arc<dyn Institutions>>,
    /// The platform's root keys, for the keys page (public halves only).
    keys: Option<sfop_auth::KeyRing>,
    config: PortalConfig,
}

impl Portal {
    /// A portal over `catalog`, registering apps in `clients`, keeping
    /// developers and sessions in `store`. It calls the platform (token
    /// endpoint, "try it") once given one with [`Portal::with_platform`].
    pub fn open(
        store: &Store,
        catalog: Arc<dyn Catalog>,
        clients: ClientRegistry,
        config: PortalConfig,
    ) -> Result<Self> {
        Ok(Self {
            developers: Developers::open(store, config.password_rounds, config.session_ttl_secs)?,
            catalog,
            clients,
            upstream: None,
            sandbox: None,
            institutions: None,
            keys: None,
            config,
        })
    }

    /// Calls the platform through `upstream`: the code exchange, test
    /// tokens and "try it".
    pub fn with_platform(mut self, upstream: Arc<dyn Upstream>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Sends `request` to the platform.
    pub(crate) async fn call(
        &self,
        request: UpstreamRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match &self.upstream {
            Some(upstream) => upstream.send(request).await,
            None => Err(UpstreamError::NotConnected),
        }
    }

    /// Lets developers script the sandbox's faults for their own apps on
    /// each app's page.
    pub fn with_sandbox(mut self, sandbox: Arc<dyn Sandbox>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Shows each app's institution on its page, and lets developers
    /// request one (docs/adr/0017-institutions.md).
    pub fn with_institutions(mut self, institutions: Arc<dyn Institutions>) -> Self {
        self.institutions = Some(institutions);
        self
    }

    /// Lists the platform's root public keys on `/portal/keys`, with how to
    /// verify and attenuate tokens offline.
    pub fn with_keys(mut self, ring: sfop_auth::KeyRing) -> Self {
        self.keys = Some(ring);
        self
    }

    /// Keeps developer accounts in `shared` (a cluster node's, ADR 0029);
    /// sessions stay on this node.
    pub fn with_shared_developers(mut self, shared: Arc<dyn SharedDevelopers>) -> Self {
        self.developers = self.developers.with_shared(shared);
        self
    }

    /// The developer accounts.
    pub fn developers(&self) -> &Developers {
        &self.developers
    }

    /// Answers `page`, which the platform's router resolved `req` to. Never
    /// fails: every outcome is a page.
    pub async fn handle(&self, page: &Page, req: PortalRequest) -> PortalResponse {
        match pages::serve(self, page, &req).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(error = %e, status = e.status(), path = %req.path, "portal failed");
                e.page()
            }
        }
    }
}

/// `n` random bytes, hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Hex SHA-256 of `s`.
pub(crate) fn sha256_hex(s: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s))
}
