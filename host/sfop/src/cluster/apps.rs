//! Apps (OAuth clients) and developer accounts on a cluster node (ADR
//! 0029): the auth box's [`SharedClients`] and the portal's
//! [`SharedDevelopers`] over the cluster database, so an app registered or
//! a developer signed up on one node is known to every node.

use std::time::Duration;

use sfop_auth::{BoxFuture, Client, CodeUse, Registered, SharedClients, StoredClient};
use sfop_portal::{Developer, SharedDevelopers, SharedError, SharedFuture};
use sfop_store_pg::{ClientRow, Cluster};

/// How long a blocking caller (the OAuth server) waits for the database.
const WAIT: Duration = Duration::from_secs(5);

/// The cluster's apps and developers.
#[derive(Debug, Clone)]
pub struct ClusterApps {
    cluster: Cluster,
    runtime: tokio::runtime::Handle,
}

impl ClusterApps {
    pub fn new(cluster: Cluster, runtime: tokio::runtime::Handle) -> Self {
        Self { cluster, runtime }
    }
}

/// The database away is the platform's failure the caller may retry
/// (`Unavailable`: 503 `A0013`); anything else an internal one.
pub(crate) fn auth_error(e: sfop_store_pg::Error) -> sfop_auth::Error {
    match e {
        sfop_store_pg::Error::Unavailable(cause) => {
            sfop_auth::Error::Unavailable(format!("the cluster database is unreachable: {cause}"))
        }
        other => sfop_auth::Error::Cluster(other.to_string()),
    }
}

fn client(row: ClientRow) -> Client {
    StoredClient {
        client_id: row.client_id,
        name: row.name,
        redirect_uris: row.redirect_uris,
        scopes: row.scopes,
        client_use_code: row.client_use_code,
        public: row.public,
        secret_hash: row.secret_hash,
        salt: row.salt,
        created_at: u64::try_from(row.created_at).unwrap_or_default(),
    }
    .into()
}

fn row(client: &Client) -> ClientRow {
    let s = StoredClient::from(client);
    ClientRow {
        client_id: s.client_id,
        name: s.name,
        client_use_code: s.client_use_code,
        public: s.public,
        secret_hash: s.secret_hash,
        salt: s.salt,
        redirect_uris: s.redirect_uris,
        scopes: s.scopes,
        created_at: i64::try_from(s.created_at).unwrap_or(i64::MAX),
    }
}

impl SharedClients for ClusterApps {
    fn get<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, sfop_auth::Result<Option<Client>>> {
        Box::pin(async move {
            Ok(self
                .cluster
                .client(client_id)
                .await
                .map_err(auth_error)?
                .map(client))
        })
    }

    fn list(&self) -> BoxFuture<'_, sfop_auth::Result<Vec<Client>>> {
        Box::pin(async move {
            Ok(self
                .cluster
                .clients()
                .await
                .map_err(auth_error)?
                .into_iter()
                .map(client)
                .collect())
        })
    }

    fn insert<'a>(
        &'a self,
        client: &'a Client,
        code: CodeUse,
    ) -> BoxFuture<'a, sfop_auth::Result<Registered>> {
        Box::pin(async move {
            let code = match code {
                CodeUse::New => sfop_store_pg::CodeUse::New,
                CodeUse::Join => sfop_store_pg::CodeUse::Join,
            };
            let done = self
                .cluster
                .register_client(&row(client), code, None)
                .await
                .map_err(auth_error)?;
            Ok(match done {
                sfop_store_pg::Registered::Done => Registered::Done,
                sfop_store_pg::Registered::ClientIdTaken => Registered::ClientIdTaken,
                sfop_store_pg::Registered::CodeTaken => Registered::CodeTaken,
                sfop_store_pg::Registered::NoInstitution => Registered::NoInstitution,
            })
        })
    }

    fn set_secret<'a>(
        &'a self,
        client_id: &'a str,
        salt: &'a str,
        secret_hash: &'a str,
    ) -> BoxFuture<'a, sfop_auth::Result<bool>> {
        Box::pin(async move {
            self.cluster
                .set_client_secret(client_id, salt, secret_hash)
                .await
                .map_err(auth_error)
        })
    }

    fn reserve_code<'a>(&'a self, code: &'a str) -> BoxFuture<'a, sfop_auth::Result<bool>> {
        Box::pin(async move { self.cluster.reserve_code(code).await.map_err(auth_error) })
    }

    fn wait(&self, work: BoxFuture<'_, ()>) -> sfop_auth::Result<()> {
        wait(&self.runtime, work)
    }
}

/// Runs `work` on `runtime` for a blocking caller, at most [`WAIT`]. On a
/// worker of the multi-threaded runtime the worker is handed over first
/// (`block_in_place`), so the others keep serving; a current-thread
/// runtime could not drive the database's I/O while its one thread waits,
/// so it is refused rather than hung.
pub(crate) fn wait<T>(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = T>,
) -> sfop_auth::Result<T> {
    let bounded = async { tokio::time::timeout(WAIT, work).await };
    let answer = match tokio::runtime::Handle::try_current() {
        Ok(current) => match current.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| current.block_on(bounded))
            }
            _ => {
                return Err(sfop_auth::Error::Unavailable(
                    "the cluster database cannot be waited for on this runtime".into(),
                ));
            }
        },
        Err(_) => runtime.block_on(bounded),
    };
    answer.map_err(|_| {
        sfop_auth::Error::Unavailable(format!(
            "the cluster database did not answer within {WAIT:?}"
        ))
    })
}

fn developer(row: sfop_store_pg::DeveloperRow) -> Result<Developer, SharedError> {
    Developer::from_record(
        row.email.clone(),
        &row.password,
        u64::try_from(row.created_at_ms).unwrap_or_default(),
        row.apps,
    )
    .ok_or_else(|| format!("developer {}: an unreadable password record", row.email).into())
}

impl SharedDevelopers for ClusterApps {
    fn get<'a>(&'a self, email: &'a str) -> SharedFuture<'a, Option<Developer>> {
        Box::pin(async move {
            match self.cluster.developer(email).await? {
                Some(row) => Ok(Some(developer(row)?)),
                None => Ok(None),
            }
        })
    }

    fn insert<'a>(&'a self, developer: &'a Developer) -> SharedFuture<'a, bool> {
        Box::pin(async move {
            let created = i64::try_from(developer.created_at_ms).unwrap_or(i64::MAX);
            match self
                .cluster
                .add_developer(&developer.email, &developer.password_record(), created)
                .await
            {
                Ok(()) => Ok(true),
                Err(sfop_store_pg::Error::Conflict(_)) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn add_app<'a>(&'a self, email: &'a str, client_id: &'a str) -> SharedFuture<'a, ()> {
        Box::pin(async move { Ok(self.cluster.add_developer_app(email, client_id).await?) })
    }
}
