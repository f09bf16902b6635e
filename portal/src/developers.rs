//! Developer accounts and their sessions, in their own sled trees.
//! Passwords are stored as salted PBKDF2-HMAC-SHA256 (people choose
//! guessable passwords, unlike the 256-bit client secrets sfop-auth hashes
//! with one SHA-256); session ids are random and stored only hashed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sfop_auth::oauth::throttle::SignInThrottle;
use sfop_store::{Store, Tree};
use tokio::sync::Semaphore;

use crate::{Error, Result, random_hex, sha256_hex};

/// Password hashes computed at once; more wait their turn, so a flood of
/// sign-in attempts cannot take every core.
const CONCURRENT_HASHES: usize = 2;

/// A registered developer, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Developer {
    pub email: String,
    salt: String,
    rounds: u32,
    /// Hex PBKDF2 output.
    hash: String,
    pub created_at_ms: u64,
    /// client_ids of the apps this developer registered.
    pub apps: Vec<String>,
}

impl Developer {
    /// The password as a shared store keeps it:
    /// `pbkdf2-sha256$<rounds>$<salt>$<hash>`.
    pub fn password_record(&self) -> String {
        format!("pbkdf2-sha256${}${}${}", self.rounds, self.salt, self.hash)
    }

    /// A developer from a shared store's row; `None` when `password` is not
    /// a [`password_record`](Self::password_record).
    pub fn from_record(
        email: String,
        password: &str,
        created_at_ms: u64,
        apps: Vec<String>,
    ) -> Option<Self> {
        let mut parts = password.split('$');
        let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        Some(Self {
            email,
            salt: salt.to_owned(),
            rounds: rounds.parse().ok()?,
            hash: hash.to_owned(),
            created_at_ms,
            apps,
        })
    }
}

/// What a shared store's failure carries.
pub type SharedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A future a shared store answers with.
pub type SharedFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<T, SharedError>> + Send + 'a>,
>;

/// A cluster's developer accounts (ADR 0029), kept by the composition root
/// over the cluster database. Sessions stay on the node that started them.
pub trait SharedDevelopers: Send + Sync + std::fmt::Debug {
    /// The developer `email` (lower-cased), with their apps.
    fn get<'a>(&'a self, email: &'a str) -> SharedFuture<'a, Option<Developer>>;
    /// Stores a new developer; `false` when the address is taken.
    fn insert<'a>(&'a self, developer: &'a Developer) -> SharedFuture<'a, bool>;
    /// Records that `email` registered app `client_id`.
    fn add_app<'a>(&'a self, email: &'a str, client_id: &'a str) -> SharedFuture<'a, ()>;
}

/// A token the developer obtained through the portal, for "try it".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestToken {
    pub client_id: String,
    pub client_use_code: String,
    pub access_token: String,
    pub scope: String,
    pub user_seq_no: Option<String>,
    /// fintech_use_nums the token may act on (from the account list API).
    pub accounts: Vec<String>,
    /// The same accounts with their bank and alias, as the account list
    /// answered (empty for sessions stored before it was kept).
    #[serde(default)]
    pub account_details: Vec<TokenAccount>,
    pub expires_at_ms: u64,
    /// The app's institution's first verified contract account, for "try
    /// it" (`cntr_account_num`).
    #[serde(default)]
    pub contract_account: Option<String>,
}

/// An account a user token may act on, as the account list API answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAccount {
    pub fintech_use_num: String,
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_alias: String,
    pub account_num_masked: String,
}

/// A contract account of an institution, as the app page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractAccountInfo {
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num: String,
    pub account_holder_name: String,
    /// Transfers use only verified contract accounts.
    pub verified: bool,
    pub balance_amt: i64,
}

/// The using institution an app belongs to, as the app page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionInfo {
    pub client_use_code: String,
    pub name: String,
    /// `requested`, `active` or `suspended`.
    pub state: String,
    pub contract_accounts: Vec<ContractAccountInfo>,
    /// Per transaction, daily, monthly, in won.
    pub withdraw_limits: [u64; 3],
    pub deposit_limits: [u64; 3],
}

impl InstitutionInfo {
    /// The account number transfers use: the first verified one.
    pub fn contract_account(&self) -> Option<&str> {
        self.contract_accounts
            .iter()
            .find(|a| a.verified)
            .map(|a| a.account_num.as_str())
    }
}

/// Institution onboarding, as a developer may see and ask for it for their
/// own apps. Implemented by the platform binary over the virtual bank's
/// records (the portal does not name the bank; docs/adr/0017-institutions.md).
pub trait Institutions: Send + Sync + std::fmt::Debug {
    /// The institution with code `client_use_code`, if there is one.
    fn get(
        &self,
        client_use_code: &str,
    ) -> std::result::Result<Option<InstitutionInfo>, crate::ServiceError>;
    /// Requests an institution named `name` under the app's code, pending
    /// until the operator approves it; with `sandbox_account`, a contract
    /// account at the virtual bank is opened at once with test funds.
    /// [`crate::ServiceError::Invalid`] names the offending field.
    fn request(
        &self,
        client_use_code: &str,
        name: &str,
        sandbox_account: bool,
    ) -> std::result::Result<InstitutionInfo, crate::ServiceError>;
}

/// An authorization request the developer started from the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub state: String,
    pub code_verifier: String,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub email: String,
    /// Sent back in every form; a post without it is refused.
    pub csrf: String,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub user_token: Option<TestToken>,
    #[serde(default)]
    pub oob_token: Option<TestToken>,
    #[serde(default)]
    pub pending: Option<PendingAuthorization>,
}

/// Why a sign-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignUpError {
    #[error("Enter a valid e-mail address.")]
    BadEmail,
    #[error("Choose a password of at least 10 characters.")]
    WeakPassword,
    #[error("This e-mail address is already registered. Sign in instead.")]
    Taken,
}

/// Developers and sessions.
#[derive(Debug, Clone)]
pub struct Developers {
    store: Store,
    developers: Tree,
    sessions: Tree,
    rounds: u32,
    session_ttl_ms: u64,
    hashing: Arc<Semaphore>,
    /// Failed sign-ins per e-mail address and per client address.
    sign_in: Arc<SignInThrottle>,
    /// The cluster's accounts instead of `developers` (sessions stay here).
    shared: Option<Arc<dyn SharedDevelopers>>,
}

fn now_ms() -> u64 {
    sfop_core::time::now_millis()
}

/// PBKDF2-HMAC-SHA256 (ring, as the virtual bank's passwords), hex.
fn pbkdf2_hex(password: &str, salt: &str, rounds: u32) -> String {
    let mut out = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(rounds).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt.as_bytes(),
        password.as_bytes(),
        &mut out,
    );
    hex::encode(out)
}

fn email_ok(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && !domain.contains('@')
}

/// What a new account's address and password must be.
fn check_sign_up(email: &str, password: &str) -> std::result::Result<(), SignUpError> {
    if !email_ok(email) {
        return Err(SignUpError::BadEmail);
    }
    if password.chars().count() < 10 {
        return Err(SignUpError::WeakPassword);
    }
    Ok(())
}

impl Developers {
    pub fn open(store: &Store, rounds: u32, session_ttl_secs: u64) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            developers: store.tree("portal.developers")?,
            sessions: store.tree("portal.sessions")?,
            rounds: rounds.max(1),
            session_ttl_ms: session_ttl_secs * 1000,
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            sign_in: Arc::new(SignInThrottle::default()),
            shared: None,
        })
    }

    /// The same accounts kept by `shared` (a cluster node's); sessions stay
    /// in this node's store.
    pub fn with_shared(mut self, shared: Arc<dyn SharedDevelopers>) -> Self {
        self.shared = Some(shared);
        self
    }

    fn shared_failed(e: SharedError) -> Error {
        Error::Service {
            what: "the developer accounts",
            source: e,
        }
    }

    /// Runs `f` (which hashes a password: a good fraction of a CPU second)
    /// on the blocking pool, at most [`CONCURRENT_HASHES`] at a time, so the
    /// async workers keep serving.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Developers) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?
    }

    /// [`sign_up`](Self::sign_up) off the async workers.
    pub async fn sign_up_async(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Result<Developer, SignUpError>> {
        let Some(shared) = self.shared.clone() else {
            let (email, password) = (email.to_owned(), password.to_owned());
            return self.hashing(move |d| d.sign_up(&email, &password)).await;
        };
        let email = email.trim().to_lowercase();
        if let Err(refused) = check_sign_up(&email, password) {
            return Ok(Err(refused));
        }
        if shared
            .get(&email)
            .await
            .map_err(Self::shared_failed)?
            .is_some()
        {
            return Ok(Err(SignUpError::Taken));
        }
        let password = password.to_owned();
        let developer = self
            .hashing(move |d| d.new_developer(email, &password))
            .await?;
        if !shared
            .insert(&developer)
            .await
            .map_err(Self::shared_failed)?
        {
            return Ok(Err(SignUpError::Taken));
        }
        Ok(Ok(developer))
    }

    /// [`authenticate_async`](Self::authenticate_async) behind the guessing
    /// throttle (per e-mail address and per client address):
    /// `Err(seconds to wait)` while either is closed, checked before any
    /// hash is computed.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Result<Option<Developer>, u64>> {
        if let Err(wait) = self.sign_in.check(email, peer, now_ms()) {
            return Ok(Err(wait));
        }
        let found = self.authenticate_async(email, password).await?;
        match &found {
            Some(_) => self.sign_in.success(email),
            None => self.sign_in.failure(email, peer, now_ms()),
        }
        Ok(Ok(found))
    }

    /// [`authenticate`](Self::authenticate) off the async workers.
    pub async fn authenticate_async(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<Developer>> {
        let Some(shared) = self.shared.clone() else {
            let (email, password) = (email.to_owned(), password.to_owned());
            return self
                .hashing(move |d| d.authenticate(&email, &password))
                .await;
        };
        let email = email.trim().to_lowercase();
        let found = shared.get(&email).await.map_err(Self::shared_failed)?;
        let password = password.to_owned();
        self.hashing(move |d| Ok(d.check_password(found, &password)))
            .await
    }

    /// [`get`](Self::get) from an async worker.
    pub async fn get_async(&self, email: &str) -> Result<Option<Developer>> {
        match &self.shared {
            Some(shared) => shared.get(email).await.map_err(Self::shared_failed),
            None => self.get(email),
        }
    }

    /// [`add_app`](Self::add_app) from an async worker.
    pub async fn add_app_async(&self, email: &str, client_id: &str) -> Result<()> {
        match &self.shared {
            Some(shared) => shared
                .add_app(email, client_id)
                .await
                .map_err(Self::shared_failed),
            None => self.add_app(email, client_id),
        }
    }

    /// Registers a developer. The e-mail address is the account name,
    /// compared case-insensitively.
    pub fn sign_up(&self, email: &str, password: &str) -> Result<Result<Developer, SignUpError>> {
        let email = email.trim().to_lowercase();
        if let Err(refused) = check_sign_up(&email, password) {
            return Ok(Err(refused));
        }
        if self.get(&email)?.is_some() {
            return Ok(Err(SignUpError::Taken));
        }
        let developer = self.new_developer(email.clone(), password)?;
        self.developers.insert_json(&email, &developer)?;
        self.store.flush()?;
        Ok(Ok(developer))
    }

    /// A new account for `email` (checked) with `password` hashed.
    fn new_developer(&self, email: String, password: &str) -> Result<Developer> {
        let salt = random_hex(16)?;
        Ok(Developer {
            hash: pbkdf2_hex(password, &salt, self.rounds),
            salt,
            rounds: self.rounds,
            email,
            created_at_ms: now_ms(),
            apps: Vec::new(),
        })
    }

    /// The developer with these credentials, if they match.
    pub fn authenticate(&self, email: &str, password: &str) -> Result<Option<Developer>> {
        let email = email.trim().to_lowercase();
        let found = self.get(&email)?;
        Ok(self.check_password(found, password))
    }

    /// `developer`, if `password` is theirs.
    fn check_password(&self, developer: Option<Developer>, password: &str) -> Option<Developer> {
        let Some(developer) = developer else {
            // Spend the same time as a real check, so timing does not say
            // which addresses are registered.
            std::hint::black_box(pbkdf2_hex(password, "no-such-developer", self.rounds));
            return None;
        };
        let candidate = pbkdf2_hex(password, &developer.salt, developer.rounds);
        sfop_auth::constant_time_eq(candidate.as_bytes(), developer.hash.as_bytes())
            .then_some(developer)
    }

    pub fn get(&self, email: &str) -> Result<Option<Developer>> {
        Ok(self.developers.get_json(email)?)
    }

    /// Records that `email` registered app `client_id`.
    pub fn add_app(&self, email: &str, client_id: &str) -> Result<()> {
        if let Some(mut developer) = self.get(email)? {
            developer.apps.push(client_id.to_owned());
            self.developers.insert_json(email, &developer)?;
            self.store.flush()?;
        }
        Ok(())
    }

    /// Starts a session; returns the id for the cookie (stored only hashed).
    /// Sessions that have expired are swept out on the way.
    pub fn start_session(&self, email: &str) -> Result<String> {
        let now = now_ms();
        for (key, session) in self.sessions.values_json::<Session>()? {
            if session.expires_at_ms <= now {
                self.sessions.remove(key.as_bytes())?;
            }
        }
        let id = random_hex(32)?;
        let session = Session {
            email: email.to_owned(),
            csrf: random_hex(16)?,
            expires_at_ms: now_ms() + self.session_ttl_ms,
            user_token: None,
            oob_token: None,
            pending: None,
        };
        self.sessions
            .insert_json(&sha256_hex(id.as_bytes()), &session)?;
        Ok(id)
    }

    /// The live session with cookie value `id`.
    pub fn session(&self, id: &str) -> Result<Option<Session>> {
        if id.is_empty() {
            return Ok(None);
        }
        let key = sha256_hex(id.as_bytes());
        match self.sessions.get_json::<Session>(&key)? {
            Some(s) if s.expires_at_ms > now_ms() => Ok(Some(s)),
            Some(_) => {
                self.sessions.remove(key.as_bytes())?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    pub fn save_session(&self, id: &str, session: &Session) -> Result<()> {
        Ok(self
            .sessions
            .insert_json(&sha256_hex(id.as_bytes()), session)?)
    }

    pub fn end_session(&self, id: &str) -> Result<()> {
        Ok(self.sessions.remove(sha256_hex(id.as_bytes()).as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_salted_slow_hashes() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let developers = Developers::open(&Store::open(dir.path())?, 1000, 60)?;
        let dev = developers.sign_up("Dev@Example.com", "correct horse battery")??;
        assert_eq!(dev.email, "dev@example.com");
        let stored = serde_json::to_string(&developers.get("dev@example.com")?)?;
        assert!(
            !stored.contains("correct horse"),
            "password stored in clear"
        );
        assert!(
            developers
                .authenticate("dev@example.com", "correct horse battery")?
                .is_some()
        );
        assert!(
            developers
                .authenticate("DEV@example.com ", "correct horse battery")?
                .is_some()
        );
        assert!(
            developers
                .authenticate("dev@example.com", "wrong password!")?
                .is_none()
        );
        assert!(
            developers
                .authenticate("nobody@example.com", "x")?
                .is_none()
        );
        assert_eq!(
            developers.sign_up("dev@example.com", "another password")?,
            Err(SignUpError::Taken)
        );
        assert_eq!(
            developers.sign_up("<b>@x", "0123456789")?,
            Err(SignUpError::BadEmail)
        );
        assert_eq!(
            developers.sign_up("a@b.co", "short")?,
            Err(SignUpError::WeakPassword)
        );
        // Same password, different salt, different hash.
        let other = developers.sign_up("other@example.com", "correct horse battery")??;
        assert_ne!(other.hash, dev.hash);
        Ok(())
    }

    /// An unknown address costs the same hash as a wrong password, so the
    /// time of the answer does not say who is registered: medians of 50
    /// sign-ins each, taken in turns, within 20 %.
    #[test]
    fn an_unknown_address_costs_what_a_wrong_password_costs() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let developers = Developers::open(&Store::open(dir.path())?, 10_000, 60)?;
        developers.sign_up("dev@example.com", "correct horse battery")??;
        let mut wrong = Vec::new();
        let mut unknown = Vec::new();
        for i in 0..50 {
            let started = std::time::Instant::now();
            let found = developers.authenticate("dev@example.com", &format!("guess {i}"))?;
            wrong.push(started.elapsed());
            assert!(found.is_none());
            let started = std::time::Instant::now();
            let found = developers.authenticate(&format!("nobody{i}@example.com"), "guess")?;
            unknown.push(started.elapsed());
            assert!(found.is_none());
        }
        wrong.sort();
        unknown.sort();
        let (w, u) = (wrong[25], unknown[25]);
        eprintln!("portal sign-in medians of 50: wrong password {w:?}, unknown address {u:?}");
        assert!(
            u * 5 >= w * 4 && w * 5 >= u * 4,
            "wrong password {w:?} vs unknown address {u:?}: the time tells"
        );
        assert!(
            w > std::time::Duration::from_micros(500),
            "no hash was computed: {w:?}"
        );
        Ok(())
    }

    #[test]
    fn sessions_are_stored_hashed_and_end() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let developers = Developers::open(&store, 1000, 60)?;
        let id = developers.start_session("dev@example.com")?;
        assert_eq!(
            developers.session(&id)?.map(|s| s.email).as_deref(),
            Some("dev@example.com")
        );
        assert!(store.tree("portal.sessions")?.get(id.as_bytes())?.is_none());
        assert!(developers.session("forged")?.is_none());
        developers.end_session(&id)?;
        assert!(developers.session(&id)?.is_none());

        // Expired sessions are refused, and swept out when the next starts.
        let short = Developers::open(&store, 1000, 0)?;
        let old = short.start_session("dev@example.com")?;
        assert!(short.session(&old)?.is_none());
        let tree = store.tree("portal.sessions")?;
        short.start_session("dev@example.com")?;
        assert_eq!(tree.values_json::<Session>()?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn hashing_runs_off_the_async_workers() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let developers = Developers::open(&Store::open(dir.path())?, 1000, 60)?;
        developers
            .sign_up_async("dev@example.com", "correct horse battery")
            .await??;
        let found = developers
            .authenticate_async("dev@example.com", "correct horse battery")
            .await?;
        assert_eq!(found.map(|d| d.email).as_deref(), Some("dev@example.com"));
        Ok(())
    }
}
