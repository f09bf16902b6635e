//! sfop's cluster store on PostgreSQL: the relational schema that N gateway
//! nodes share (registry, config version, revocations, audit log, ledger,
//! consents), its versioned migrations, and the feed through which each
//! node learns of changes (LISTEN/NOTIFY plus a periodic check). The only
//! crate that names tokio-postgres. See
//! docs/adr/0029-postgresql-store-and-multi-node.md.

mod apps;
mod audit;
mod bank;
mod bank_log;
mod blobs;
mod consents;
mod feed;
mod grants;
mod ledger;
mod registry;
mod revocation;
mod sandbox;
mod tls;
mod variables;

use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use apps::{ClientRow, CodeUse, DeveloperRow, Registered};
pub use audit::{AuditEntry, AuditEvent, AuditVerification};
pub use bank::{
    AccountRow, BankOutcome, BankTransfer, Direction, PostingRow, SeedAccount, TranKey, TranRecord,
    Usage,
};
pub use bank_log::{BankChangeRow, OpenedAccount};
pub use blobs::BlobCache;
pub use consents::{Cancelled, ConsentRow, FintechNum, NewConsents, RegistrationRow, Scope};
pub use feed::{Feed, FeedSettings, Stale};
pub use grants::{CodeRow, IssuedRow, RefreshRow};
pub use ledger::{NewTransfer, TransferOutcome};
pub use registry::{ApiState, CanaryState, NewVersion, Pushed, Release, Snapshot};
pub use sandbox::{NewSandboxRule, SandboxRule};
pub use variables::SealedValues;

refinery::embed_migrations!("migrations");

/// The channel on which every change of the config version is announced
/// (payload: the new version).
pub const CONFIG_CHANNEL: &str = "sfop_config";
/// The channel on which every revocation is announced (payload: its seq).
pub const REVOCATION_CHANNEL: &str = "sfop_revocations";

/// Why a cluster-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database cannot be reached now: the operation did nothing and
    /// may be tried again (a write is refused rather than queued).
    #[error("the cluster database is unreachable: {0}")]
    Unavailable(String),
    /// The database holds a schema this build does not know.
    #[error("database schema: {0}")]
    Schema(String),
    /// The configured URL is not a PostgreSQL URL this build can use.
    #[error("store.url: {0}")]
    Url(String),
    /// TLS to the database is refused: a CA that cannot be read, a server
    /// without TLS where TLS is required, a certificate not trusted or for
    /// another host. A setting to fix, not a database away: not retried.
    #[error("TLS to the cluster database: {0}")]
    Tls(String),
    /// The request contradicts what is stored.
    #[error("{0}")]
    Conflict(String),
    /// A constraint of the schema refused the write (the message names it).
    #[error("refused by the schema: {0}")]
    Constraint(String),
    #[error("database: {0}")]
    Database(#[source] tokio_postgres::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(e)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => classify(e),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

/// Connection trouble is [`Error::Unavailable`], a refused TLS handshake
/// [`Error::Tls`]; a constraint is named.
fn classify(e: tokio_postgres::Error) -> Error {
    if let Some(refusal) = tls::refusal(&e) {
        return Error::Tls(refusal);
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code == &SqlState::ADMIN_SHUTDOWN
            || code == &SqlState::CRASH_SHUTDOWN
            || code == &SqlState::CANNOT_CONNECT_NOW
        {
            return Error::Unavailable(db.message().to_owned());
        }
        if code.code().starts_with("23") {
            let what = db.constraint().unwrap_or(db.message());
            return Error::Constraint(format!("{what}: {}", db.message()));
        }
        return Error::Database(e);
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return Error::Unavailable(e.to_string());
    }
    Error::Database(e)
}

/// Whether `e` asks for the transaction to be run again (serialization
/// failure, deadlock, or a unique key another transaction just took).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        c == &SqlState::T_R_SERIALIZATION_FAILURE
            || c == &SqlState::T_R_DEADLOCK_DETECTED
            || c == &SqlState::UNIQUE_VIOLATION
    })
}

/// Why a `store.url` is not a PostgreSQL URL this build can use. No
/// variant repeats the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be a postgres:// URL (postgres://user@host:port/database)")]
    Scheme,
    #[error("not a PostgreSQL URL: {0}")]
    Unparsable(String),
    #[error("names no host (postgres://user@host:port/database)")]
    NoHost,
    #[error("names no database (postgres://user@host:port/database)")]
    NoDatabase,
    #[error(
        "sslmode={0}: sfop knows disable, prefer, require, verify-ca and verify-full \
         (docs/adr/0029, \"TLS to the database\")"
    )]
    SslMode(String),
    #[error("{0}: client certificates are not supported (authenticate with a password)")]
    ClientCertificate(String),
    #[error("names a CA twice (sslrootcert in store.url and store.ca): keep one")]
    TwoCas,
    #[error(
        "a CA is given but sslmode={0} lets the connection fall back to plaintext: \
         use sslmode=verify-full (or leave sslmode out)"
    )]
    CaWithPlaintext(&'static str),
}

/// Checks that `url` is a PostgreSQL URL this build can connect with
/// (`postgres://user@host:port/db`, with libpq's `sslmode` and
/// `sslrootcert` if any), without connecting.
pub fn check_url(url: &str) -> std::result::Result<(), UrlError> {
    check_tls(url, None)
}

/// [`check_url`] with the CA file `ca` (`store.ca`) beside the URL: the two
/// must agree (one CA; a CA means no plaintext). Reads no file.
pub fn check_tls(url: &str, ca: Option<&Path>) -> std::result::Result<(), UrlError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(UrlError::Scheme);
    }
    let settings = tls::settings(url, ca)?;
    let config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| UrlError::Unparsable(e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(UrlError::NoHost);
    }
    if config.get_dbname().is_none() {
        return Err(UrlError::NoDatabase);
    }
    Ok(())
}

/// How long a write waits for a pooled connection before it is refused.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The advisory lock held while migrations run (one node at a time).
const MIGRATION_LOCK: i64 = 0x5f0b_0001;

/// A connection pool to the cluster database, its schema checked and
/// brought up to date. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// The newest schema version this build knows.
pub fn schema_version() -> u32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0)
}

impl Cluster {
    /// Connects to `url` (`postgres://user@host:port/db`), applies the
    /// migrations this build has that the database lacks, and refuses a
    /// database whose schema is newer than this build or differs from it.
    /// TLS as the URL's `sslmode` and `sslrootcert` ask (none without them).
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self> {
        Self::connect_with_ca(url, None, max_connections).await
    }

    /// [`Cluster::connect`] trusting the CA certificates in the PEM file
    /// `ca` (`store.ca`) for the server's certificate: TLS or nothing, the
    /// host name checked unless the URL says `sslmode=verify-ca`.
    pub async fn connect_with_ca(
        url: &str,
        ca: Option<&Path>,
        max_connections: usize,
    ) -> Result<Self> {
        let settings = tls::settings(url, ca).map_err(|e| Error::Url(e.to_string()))?;
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| Error::Url(format!("not a PostgreSQL URL: {e}")))?;
        if config.get_hosts().is_empty() {
            return Err(Error::Url("the URL names no host".into()));
        }
        config.ssl_mode(settings.ssl_mode());
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("sfop");
        if settings.mode == tls::Mode::Disable && !config.get_hosts().iter().all(tls::is_local) {
            tracing::warn!(
                "store.url: plaintext to a database on another machine (no sslmode, no \
                 store.ca): passwords and data cross the network readable; plaintext is for \
                 loopback only (set store.ca, docs/adr/0029 \"TLS to the database\")"
            );
        }
        let tls = settings.connector()?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(CHECKOUT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Url(e.to_string()))?;
        let cluster = Self { pool, config, tls };
        cluster.migrate().await?;
        Ok(cluster)
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut conn;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let outcome = self.migrate_locked(client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        outcome?;
        unlocked?;
        Ok(())
    }

    async fn migrate_locked(&self, client: &mut tokio_postgres::Client) -> Result<()> {
        let known = schema_version();
        let history = client
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await?
            .get::<_, bool>(0);
        if history {
            let applied: Option<i32> = client
                .query_one("SELECT max(version) FROM refinery_schema_history", &[])
                .await?
                .get(0);
            if let Some(applied) = applied
                && applied > known as i32
            {
                return Err(Error::Schema(format!(
                    "the database is at schema version {applied}, this sfop knows up to {known}: \
                     upgrade this node (a node never runs on a schema newer than its own)"
                )));
            }
        }
        let report = migrations::runner()
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .run_async(client)
            .await
            .map_err(|e| {
                Error::Schema(format!(
                    "migrating to version {known} failed: {e} (a migration this build has \
                     differs from the one the database applied, or the database is not sfop's)"
                ))
            })?;
        for m in report.applied_migrations() {
            tracing::info!(
                version = m.version(),
                name = m.name(),
                "schema migration applied"
            );
        }
        Ok(())
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// A read-only transaction on `conn` that sees one consistent snapshot of
/// the database (a version number and the rows it numbers, read together).
pub(crate) async fn consistent(
    conn: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

impl Cluster {
    /// The connection settings (the feed opens its own LISTEN connection).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector of the pool's connections, for the feed's.
    pub(crate) fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The current config version.
    pub async fn config_version(&self) -> Result<u64> {
        let conn = self.conn().await?;
        let row = conn
            .query_one("SELECT version FROM config_version", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// Locks the config version row inside `tx` (concurrent changes queue
/// behind it) and, with `expected`, refuses when the version moved since
/// the caller read it: two nodes' operators never overwrite each other's
/// change unseen.
pub(crate) async fn expect_config_version(
    tx: &tokio_postgres::Transaction<'_>,
    expected: Option<u64>,
) -> Result<()> {
    let current: i64 = tx
        .query_one("SELECT version FROM config_version FOR UPDATE", &[])
        .await?
        .get(0);
    match expected {
        Some(expected) if current as u64 != expected => Err(Error::Conflict(format!(
            "the configuration changed meanwhile (version {current}, expected {expected}): read \
             it again and retry"
        ))),
        _ => Ok(()),
    }
}

/// Bumps the config version inside `tx` and announces it at commit. The
/// row lock orders concurrent bumps: versions commit in increasing order.
pub(crate) async fn bump_config_version(tx: &tokio_postgres::Transaction<'_>) -> Result<u64> {
    let row = tx
        .query_one(
            "UPDATE config_version SET version = version + 1 RETURNING version",
            &[],
        )
        .await?;
    let version: i64 = row.get(0);
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CONFIG_CHANNEL, &version.to_string()],
    )
    .await?;
    Ok(version as u64)
}

/// Drops and creates the database `name` on the server that `admin_url`
/// (a role allowed to create databases) names, and returns the URL of the
/// new database (same host, port and user; no password: the servers this
/// is for trust local connections; the same `sslmode` and `sslrootcert`):
/// for tests and local clusters, never for a database that holds anything.
/// `name` is lowercase letters, digits and `_`.
pub async fn recreate_database(admin_url: &str, name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(Error::Url(format!(
            "database name {name:?}: lowercase letters, digits and _ only"
        )));
    }
    let settings = tls::settings(admin_url, None).map_err(|e| Error::Url(e.to_string()))?;
    let mut config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e| Error::Url(format!("not a PostgreSQL URL: {e}")))?;
    config.ssl_mode(settings.ssl_mode());
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(settings.connector()?).await?;
    tokio::spawn(connection);
    // Two statements: CREATE DATABASE cannot share an implicit transaction.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    config.dbname(name);
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err(Error::Url("the admin URL names no TCP host".into())),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let mut url = format!("postgres://{user}@{host}:{port}/{name}");
    if !settings.tls_query.is_empty() {
        url = format!("{url}?{}", settings.tls_query.join("&"));
    }
    Ok(url)
}
