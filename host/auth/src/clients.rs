//! Registered fintech apps (OAuth clients): id, hashed secret, redirect URIs,
//! allowed scopes and the institution code `client_use_code`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sfop_store::{Store, Tree};

use crate::secret::{constant_time_eq, random_hex, sha256_hex};
use crate::{Error, Result};

/// Scopes a client may be allowed.
pub const SCOPES: &[&str] = &["login", "inquiry", "transfer", "oob"];

/// What an operator fills in to register an app: the admin API's
/// `POST /admin/v1/clients` body, one definition for the wire and the
/// registry.
pub use sfop_admin_api::clients::RegisterClient as ClientSpec;

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub client_use_code: String,
    pub public: bool,
    /// Hex SHA-256 of salt and secret; `None` for public clients.
    secret_hash: Option<String>,
    salt: String,
    pub created_at: u64,
}

impl Client {
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether `secret` is this client's secret. Public clients have none.
    pub fn secret_matches(&self, secret: Option<&str>) -> bool {
        match (&self.secret_hash, secret) {
            (Some(hash), Some(secret)) => {
                let candidate = sha256_hex(&[self.salt.as_bytes(), secret.as_bytes()]);
                constant_time_eq(candidate.as_bytes(), hash.as_bytes())
            }
            (None, None) => self.public,
            _ => false,
        }
    }
}

/// A client as a shared store keeps it: its public part and its secret,
/// only hashed (ADR 0029).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub client_use_code: String,
    pub public: bool,
    /// Hex SHA-256 of salt and secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub salt: String,
    pub created_at: u64,
}

impl From<StoredClient> for Client {
    fn from(s: StoredClient) -> Self {
        Self {
            client_id: s.client_id,
            name: s.name,
            redirect_uris: s.redirect_uris,
            scopes: s.scopes,
            client_use_code: s.client_use_code,
            public: s.public,
            secret_hash: s.secret_hash,
            salt: s.salt,
            created_at: s.created_at,
        }
    }
}

impl From<&Client> for StoredClient {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            client_use_code: c.client_use_code.clone(),
            public: c.public,
            secret_hash: c.secret_hash.clone(),
            salt: c.salt.clone(),
            created_at: c.created_at,
        }
    }
}

/// A future a shared store answers with.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a new client takes its `client_use_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    /// A new institution: the code must not be claimed yet.
    New,
    /// An existing institution (an app or a reservation claimed the code).
    Join,
}

/// What a shared store did with a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Done,
    ClientIdTaken,
    CodeTaken,
    NoInstitution,
}

/// A cluster's OAuth clients (ADR 0029), kept by the composition root over
/// the cluster database. Its operations are async; the registry's blocking
/// callers (the OAuth server, on the blocking pool) run them through
/// [`SharedClients::wait`]. A database that cannot be reached is
/// [`Error::Unavailable`](crate::Error::Unavailable).
pub trait SharedClients: Send + Sync + fmt::Debug {
    fn get<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<Client>>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<Client>>>;
    /// Stores a new client, claiming or joining its institution code, in
    /// one transaction; anything but [`Registered::Done`] wrote nothing.
    fn insert<'a>(&'a self, client: &'a Client, code: CodeUse)
    -> BoxFuture<'a, Result<Registered>>;
    /// Replaces a confidential client's secret; `false` if there is none.
    fn set_secret<'a>(
        &'a self,
        client_id: &'a str,
        salt: &'a str,
        secret_hash: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;
    /// Claims institution code `code`; `false` if it was claimed already.
    fn reserve_code<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Runs `work` to its end for a caller on a blocking thread (never an
    /// async worker); [`Error::Unavailable`](crate::Error::Unavailable) when
    /// it does not end in time.
    fn wait(&self, work: BoxFuture<'_, ()>) -> Result<()>;
}

/// The client registry: in sled on one node, the cluster's on a cluster
/// node ([`SharedClients`]). Every operation has a blocking form (the OAuth
/// server's, on the blocking pool; sled's are quick) and an async one for
/// callers on an async worker (`*_async`), which never blocks on the
/// cluster's database.
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local {
        store: Store,
        clients: Tree,
        codes: Tree,
    },
    Shared(Arc<dyn SharedClients>),
}

fn invalid(field: &str, problem: &str) -> Error {
    Error::Invalid(format!("{field}: {problem}"))
}

/// `work` run to its end through `shared`'s blocking bridge.
fn blocking<T: Send>(
    shared: &dyn SharedClients,
    work: impl Future<Output = Result<T>> + Send,
) -> Result<T> {
    let mut out = None;
    shared.wait(Box::pin(async {
        out = Some(work.await);
    }))?;
    out.unwrap_or_else(|| Err(Error::Unavailable("the cluster's answer was lost".into())))
}

/// A new random institution code, `M` and 9 digits.
fn random_code() -> Result<String> {
    let digits = u64::from_str_radix(&random_hex(8)?, 16).map_err(|e| Error::Key(e.to_string()))?
        % 1_000_000_000;
    Ok(format!("M{digits:09}"))
}

/// A new client under `client_use_code` and its secret (none for public
/// clients), from a validated `spec`.
fn new_client(
    client_id: String,
    client_use_code: String,
    spec: ClientSpec,
) -> Result<(Client, Option<String>)> {
    let salt = random_hex(16)?;
    let secret = if spec.public {
        None
    } else {
        Some(random_hex(32)?)
    };
    let client = Client {
        secret_hash: secret
            .as_deref()
            .map(|s| sha256_hex(&[salt.as_bytes(), s.as_bytes()])),
        salt,
        client_id,
        name: spec.name,
        redirect_uris: spec.redirect_uris,
        scopes: spec.scopes,
        client_use_code,
        public: spec.public,
        created_at: crate::now_secs(),
    };
    Ok((client, secret))
}

fn check_client_id(client_id: &str) -> Result<()> {
    if client_id.is_empty() || client_id.len() > 64 {
        return Err(taken(client_id));
    }
    Ok(())
}

fn taken(client_id: &str) -> Error {
    invalid(
        "client_id",
        &format!("{client_id:?} is empty, too long or taken"),
    )
}

impl ClientRegistry {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            backend: Backend::Local {
                store: store.clone(),
                clients: store.tree("auth.clients")?,
                codes: store.tree("auth.client-use-codes")?,
            },
        })
    }

    /// A cluster node's registry.
    pub fn shared(shared: Arc<dyn SharedClients>) -> Self {
        Self {
            backend: Backend::Shared(shared),
        }
    }

    /// Registers an app; returns it and, for confidential clients, the secret
    /// (shown once, stored only hashed).
    pub fn register(&self, spec: ClientSpec) -> Result<(Client, Option<String>)> {
        self.register_as(random_hex(16)?, spec)
    }

    /// [`register`](Self::register) from an async worker.
    pub async fn register_async(&self, spec: ClientSpec) -> Result<(Client, Option<String>)> {
        self.register_as_async(random_hex(16)?, spec).await
    }

    /// [`register`](Self::register) under a chosen `client_id` (for seeded
    /// demo clients); refuses an id already taken.
    pub fn register_as(
        &self,
        client_id: String,
        spec: ClientSpec,
    ) -> Result<(Client, Option<String>)> {
        match &self.backend {
            Backend::Local {
                store,
                clients,
                codes,
            } => Self::register_local(store, clients, codes, client_id, spec),
            Backend::Shared(shared) => blocking(
                shared.as_ref(),
                Self::register_shared(shared.as_ref(), client_id, spec),
            ),
        }
    }

    /// [`register_as`](Self::register_as) from an async worker.
    pub async fn register_as_async(
        &self,
        client_id: String,
        spec: ClientSpec,
    ) -> Result<(Client, Option<String>)> {
        match &self.backend {
            Backend::Local { .. } => self.register_as(client_id, spec),
            Backend::Shared(shared) => {
                Self::register_shared(shared.as_ref(), client_id, spec).await
            }
        }
    }

    fn register_local(
        store: &Store,
        clients: &Tree,
        codes: &Tree,
        client_id: String,
        spec: ClientSpec,
    ) -> Result<(Client, Option<String>)> {
        validate(&spec)?;
        check_client_id(&client_id)?;
        if clients.get_json::<Client>(&client_id)?.is_some() {
            return Err(taken(&client_id));
        }
        let client_use_code = match (spec.institution.clone(), spec.client_use_code.clone()) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "institution",
                    "give either institution (join one) or client_use_code (a new one)",
                ));
            }
            (Some(code), None) => {
                if codes.get(code.as_bytes())?.is_none() {
                    return Err(invalid("institution", &format!("no institution {code}")));
                }
                code
            }
            (None, Some(code)) => {
                if codes.get(code.as_bytes())?.is_some() {
                    return Err(invalid(
                        "client_use_code",
                        &format!("{code} is already registered"),
                    ));
                }
                code
            }
            (None, None) => Self::allocate_local(codes)?,
        };
        let (client, secret) = new_client(client_id.clone(), client_use_code.clone(), spec)?;
        // The code's first app is kept; later apps join it.
        if codes
            .get(client_use_code.as_bytes())?
            .is_none_or(|v| v.is_empty())
        {
            codes.insert(client_use_code.as_bytes(), client_id.as_bytes())?;
        }
        clients.insert_json(&client_id, &client)?;
        store.flush()?;
        Ok((client, secret))
    }

    async fn register_shared(
        shared: &dyn SharedClients,
        client_id: String,
        spec: ClientSpec,
    ) -> Result<(Client, Option<String>)> {
        validate(&spec)?;
        check_client_id(&client_id)?;
        let (code, use_code, allocated) =
            match (spec.institution.clone(), spec.client_use_code.clone()) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "institution",
                        "give either institution (join one) or client_use_code (a new one)",
                    ));
                }
                (Some(code), None) => (code, CodeUse::Join, false),
                (None, Some(code)) => (code, CodeUse::New, false),
                (None, None) => (random_code()?, CodeUse::New, true),
            };
        let (mut client, secret) = new_client(client_id.clone(), code, spec)?;
        // An allocated code that happens to be taken is drawn again.
        for _ in 0..16 {
            match shared.insert(&client, use_code).await? {
                Registered::Done => return Ok((client, secret)),
                Registered::ClientIdTaken => return Err(taken(&client_id)),
                Registered::NoInstitution => {
                    return Err(invalid(
                        "institution",
                        &format!("no institution {}", client.client_use_code),
                    ));
                }
                Registered::CodeTaken if allocated => client.client_use_code = random_code()?,
                Registered::CodeTaken => {
                    return Err(invalid(
                        "client_use_code",
                        &format!("{} is already registered", client.client_use_code),
                    ));
                }
            }
        }
        Err(Error::Invalid(
            "client_use_code: could not allocate a free code".into(),
        ))
    }

    /// Claims an institution code before any app has it (an operator
    /// onboards the institution first): `code`, or a new one when `None`.
    /// A code that apps already use is returned as it is (the institution
    /// takes over that code). Durable when it returns.
    pub fn reserve_code(&self, code: Option<&str>) -> Result<String> {
        if let Some(code) = code {
            check_code("client_use_code", code)?;
        }
        match &self.backend {
            Backend::Local { store, codes, .. } => {
                let code = match code {
                    Some(code) => {
                        if codes.get(code.as_bytes())?.is_some() {
                            return Ok(code.to_owned());
                        }
                        code.to_owned()
                    }
                    None => Self::allocate_local(codes)?,
                };
                codes.insert(code.as_bytes(), b"")?;
                store.flush()?;
                Ok(code)
            }
            Backend::Shared(shared) => blocking(shared.as_ref(), async {
                match code {
                    Some(code) => {
                        shared.reserve_code(code).await?;
                        Ok(code.to_owned())
                    }
                    None => {
                        for _ in 0..16 {
                            let code = random_code()?;
                            if shared.reserve_code(&code).await? {
                                return Ok(code);
                            }
                        }
                        Err(Error::Invalid(
                            "client_use_code: could not allocate a free code".into(),
                        ))
                    }
                }
            }),
        }
    }

    /// The apps of institution `code`.
    pub fn of_institution(&self, code: &str) -> Result<Vec<Client>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.client_use_code == code)
            .collect())
    }

    fn allocate_local(codes: &Tree) -> Result<String> {
        for _ in 0..16 {
            let code = random_code()?;
            if codes.get(code.as_bytes())?.is_none() {
                return Ok(code);
            }
        }
        Err(Error::Invalid(
            "client_use_code: could not allocate a free code".into(),
        ))
    }

    /// Gives confidential client `client_id` a new secret, returned once and
    /// stored only hashed (under a new salt); the old secret stops working
    /// as soon as this returns (durable). `None` when there is no such
    /// client; refused for public clients, which have no secret.
    pub fn rotate_secret(&self, client_id: &str) -> Result<Option<String>> {
        match &self.backend {
            Backend::Local { store, clients, .. } => {
                let Some(mut client) = clients.get_json::<Client>(client_id)? else {
                    return Ok(None);
                };
                if client.public {
                    return Err(invalid("client_id", "a public client has no secret"));
                }
                let secret = random_hex(32)?;
                client.salt = random_hex(16)?;
                client.secret_hash = Some(sha256_hex(&[client.salt.as_bytes(), secret.as_bytes()]));
                clients.insert_json(client_id, &client)?;
                store.flush()?;
                Ok(Some(secret))
            }
            Backend::Shared(shared) => blocking(
                shared.as_ref(),
                Self::rotate_shared(shared.as_ref(), client_id),
            ),
        }
    }

    /// [`rotate_secret`](Self::rotate_secret) from an async worker.
    pub async fn rotate_secret_async(&self, client_id: &str) -> Result<Option<String>> {
        match &self.backend {
            Backend::Local { .. } => self.rotate_secret(client_id),
            Backend::Shared(shared) => Self::rotate_shared(shared.as_ref(), client_id).await,
        }
    }

    async fn rotate_shared(shared: &dyn SharedClients, client_id: &str) -> Result<Option<String>> {
        let Some(client) = shared.get(client_id).await? else {
            return Ok(None);
        };
        if client.public {
            return Err(invalid("client_id", "a public client has no secret"));
        }
        let secret = random_hex(32)?;
        let salt = random_hex(16)?;
        let hash = sha256_hex(&[salt.as_bytes(), secret.as_bytes()]);
        Ok(shared
            .set_secret(client_id, &salt, &hash)
            .await?
            .then_some(secret))
    }

    pub fn get(&self, client_id: &str) -> Result<Option<Client>> {
        match &self.backend {
            Backend::Local { clients, .. } => Ok(clients.get_json(client_id)?),
            Backend::Shared(shared) => blocking(shared.as_ref(), shared.get(client_id)),
        }
    }

    /// [`get`](Self::get) from an async worker.
    pub async fn get_async(&self, client_id: &str) -> Result<Option<Client>> {
        match &self.backend {
            Backend::Local { .. } => self.get(client_id),
            Backend::Shared(shared) => shared.get(client_id).await,
        }
    }

    pub fn list(&self) -> Result<Vec<Client>> {
        match &self.backend {
            Backend::Local { clients, .. } => {
                Ok(clients.values_json()?.into_iter().map(|(_, c)| c).collect())
            }
            Backend::Shared(shared) => blocking(shared.as_ref(), shared.list()),
        }
    }

    /// [`list`](Self::list) from an async worker.
    pub async fn list_async(&self) -> Result<Vec<Client>> {
        match &self.backend {
            Backend::Local { .. } => self.list(),
            Backend::Shared(shared) => shared.list().await,
        }
    }
}

/// Whether `uri` may be registered (and redirected to) as an OAuth redirect
/// URI: parsed as a browser parses it (WHATWG, the `url` crate), an
/// absolute `https` URI with a host, or `http` to the loopback interface
/// (RFC 8252 §7.3: `127.0.0.0/8`, `[::1]`, `localhost`; any port), with no
/// user information and no fragment. Returns the problem otherwise.
pub fn check_redirect_uri(uri: &str) -> std::result::Result<url::Url, String> {
    let refuse = |why: &str| Err(format!("{uri:?} {why}"));
    if uri.len() > 512 {
        return refuse("is longer than 512 characters");
    }
    if uri.contains('#') {
        return refuse("must not have a fragment");
    }
    let parsed = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(e) => return refuse(&format!("is not an absolute URI ({e})")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("must not carry user information (user@host)");
    }
    // The host must be written where a reader expects it: WHATWG parsing
    // forgives `https:///host`, `http://127.1` and the like, which a
    // developer or a reviewer reading the registration would misread.
    let written = format!(
        "{}://{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default()
    );
    if !uri
        .get(..written.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(&written))
    {
        return refuse(&format!("must be written {written}/..."));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return refuse("has no host"),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return refuse(
                "must be https://host/..., or http:// on the loopback interface (localhost, 127.0.0.1, [::1])",
            );
        }
    }
    Ok(parsed)
}

fn validate(spec: &ClientSpec) -> Result<()> {
    if spec.name.trim().is_empty() || spec.name.len() > 100 {
        return Err(invalid("name", "must be 1-100 characters"));
    }
    if spec.scopes.is_empty() {
        return Err(invalid("scopes", "at least one scope is required"));
    }
    if let Some(bad) = spec.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(invalid(
            "scopes",
            &format!("{bad:?} is not one of {}", SCOPES.join(", ")),
        ));
    }
    let needs_redirect = spec.scopes.iter().any(|s| s != "oob");
    if needs_redirect && spec.redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uris",
            "user scopes need at least one redirect URI",
        ));
    }
    for uri in &spec.redirect_uris {
        check_redirect_uri(uri).map_err(|problem| invalid("redirect_uris", &problem))?;
    }
    if spec.public && spec.scopes.iter().any(|s| s == "oob") {
        return Err(invalid(
            "scopes",
            "a public client cannot hold the institution scope oob",
        ));
    }
    if let Some(code) = &spec.client_use_code {
        check_code("client_use_code", code)?;
    }
    if let Some(code) = &spec.institution {
        check_code("institution", code)?;
    }
    Ok(())
}

fn check_code(field: &str, code: &str) -> Result<()> {
    let ok =
        code.len() == 10 && code.starts_with('M') && code[1..].bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(invalid(field, "must be M followed by 9 digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            name: "Pay app".into(),
            redirect_uris: vec!["https://pay.example/callback".into()],
            scopes: vec![
                "login".into(),
                "inquiry".into(),
                "transfer".into(),
                "oob".into(),
            ],
            client_use_code: Some("M202200382".into()),
            public: false,
            institution: None,
        }
    }

    #[test]
    fn register_and_authenticate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let registry = ClientRegistry::open(&Store::open(dir.path())?)?;
        let (client, secret) = registry.register(spec())?;
        let secret = secret.ok_or_else(|| anyhow::anyhow!("no secret"))?;
        let stored = registry
            .get(&client.client_id)?
            .ok_or_else(|| anyhow::anyhow!("not stored"))?;
        assert!(stored.secret_matches(Some(&secret)));
        assert!(!stored.secret_matches(Some("wrong")));
        assert!(!stored.secret_matches(None));
        assert!(
            !serde_json::to_string(&stored)?.contains(&secret),
            "secret stored in clear"
        );
        // The institution code is unique.
        let e = registry
            .register(spec())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("client_use_code"), "{e}");
        // Allocated codes have the reference format.
        let (other, _) = registry.register(ClientSpec {
            client_use_code: None,
            ..spec()
        })?;
        assert!(other.client_use_code.starts_with('M') && other.client_use_code.len() == 10);
        // A second app joins the first one's institution.
        let (joined, _) = registry.register(ClientSpec {
            client_use_code: None,
            institution: Some("M202200382".into()),
            ..spec()
        })?;
        assert_eq!(joined.client_use_code, "M202200382");
        assert_eq!(registry.of_institution("M202200382")?.len(), 2);
        for (institution, code) in [("M999999999", None), ("M202200382", Some("M202200383"))] {
            let e = registry
                .register(ClientSpec {
                    client_use_code: code.map(str::to_owned),
                    institution: Some(institution.into()),
                    ..spec()
                })
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("institution"), "{e}");
        }
        // An institution onboarded before its first app.
        let reserved = registry.reserve_code(None)?;
        let (first, _) = registry.register(ClientSpec {
            client_use_code: None,
            institution: Some(reserved.clone()),
            ..spec()
        })?;
        assert_eq!(first.client_use_code, reserved);
        assert_eq!(registry.reserve_code(Some(&reserved))?, reserved);
        Ok(())
    }

    #[test]
    fn a_rotated_secret_replaces_the_old_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let registry = ClientRegistry::open(&Store::open(dir.path())?)?;
        let (client, old) = registry.register(spec())?;
        let old = old.ok_or_else(|| anyhow::anyhow!("no secret"))?;
        let new = registry
            .rotate_secret(&client.client_id)?
            .ok_or_else(|| anyhow::anyhow!("not rotated"))?;
        assert_ne!(new, old);
        let stored = registry
            .get(&client.client_id)?
            .ok_or_else(|| anyhow::anyhow!("gone"))?;
        assert!(stored.secret_matches(Some(&new)));
        assert!(
            !stored.secret_matches(Some(&old)),
            "the old secret still works"
        );
        assert!(!serde_json::to_string(&stored)?.contains(&new));
        assert_eq!(registry.rotate_secret("nobody")?, None);
        let (public, _) = registry.register(ClientSpec {
            public: true,
            scopes: vec!["login".into()],
            client_use_code: None,
            ..spec()
        })?;
        assert!(registry.rotate_secret(&public.client_id).is_err());
        Ok(())
    }

    #[test]
    fn bad_specs_name_the_field() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let registry = ClientRegistry::open(&Store::open(dir.path())?)?;
        let cases = [
            (
                ClientSpec {
                    name: " ".into(),
                    ..spec()
                },
                "name",
            ),
            (
                ClientSpec {
                    scopes: vec!["admin".into()],
                    ..spec()
                },
                "scopes",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["http://evil.example/cb".into()],
                    ..spec()
                },
                "redirect_uris",
            ),
            (
                ClientSpec {
                    redirect_uris: vec![],
                    ..spec()
                },
                "redirect_uris",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["http://localhost.evil.example/cb".into()],
                    ..spec()
                },
                "redirect_uris",
            ),
            (
                ClientSpec {
                    client_use_code: Some("X1".into()),
                    ..spec()
                },
                "client_use_code",
            ),
            (
                ClientSpec {
                    public: true,
                    ..spec()
                },
                "scopes",
            ),
        ];
        for (spec, field) in cases {
            let e = registry
                .register(spec)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(field), "{field}: {e}");
        }
        Ok(())
    }

    #[test]
    fn redirect_uris_are_parsed_not_prefixed() {
        for good in [
            "https://pay.example/callback",
            "https://pay.example:8443/cb?x=1",
            "https://192.0.2.1/cb",
            "http://localhost/cb",
            "http://localhost:8000/callback",
            "http://127.0.0.1:49152/cb",
            "http://[::1]:8080/cb",
        ] {
            assert!(check_redirect_uri(good).is_ok(), "{good} refused");
        }
        for bad in [
            "http://localhost.evil.example/cb",
            "http://localhost@evil.example/cb",
            "https://user:pw@pay.example/cb",
            "https://",
            "https:///cb",
            "https://pay.example/cb#frag",
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://[::2]/cb",
            "javascript:alert(1)",
            "custom.scheme:/cb",
            "/relative/cb",
            "",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
