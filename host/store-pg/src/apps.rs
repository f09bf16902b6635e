//! OAuth clients (apps), their institution codes and developer accounts:
//! an app registered or a developer signed up through any node is there
//! for every node.

use crate::{Cluster, Error, Result};

/// A registered OAuth client, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub client_use_code: String,
    pub public: bool,
    /// Hex SHA-256 of salt and secret; `None` for a public client.
    pub secret_hash: Option<String>,
    pub salt: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// How a new client takes its `client_use_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    /// A new institution: the code must not be taken.
    New,
    /// An institution that exists (an app or a reservation has the code).
    Join,
}

/// What [`Cluster::register_client`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Done,
    /// Another client has this `client_id`.
    ClientIdTaken,
    /// [`CodeUse::New`] with a code already claimed.
    CodeTaken,
    /// [`CodeUse::Join`] with a code nobody claimed.
    NoInstitution,
}

/// A developer account, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeveloperRow {
    pub email: String,
    /// `pbkdf2-sha256$rounds$salt$hash` (or an argon2 PHC string).
    pub password: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The client ids of the developer's apps, by id.
    pub apps: Vec<String>,
}

const CLIENT_COLUMNS: &str = "c.client_id, c.name, c.client_use_code, c.public, c.secret_hash, \
     c.salt, \
     coalesce((SELECT array_agg(redirect_uri ORDER BY redirect_uri) \
       FROM oauth_client_redirect_uris u WHERE u.client_id = c.client_id), '{}'), \
     coalesce((SELECT array_agg(scope ORDER BY scope) \
       FROM oauth_client_scopes s WHERE s.client_id = c.client_id), '{}'), \
     extract(epoch FROM c.created_at)::bigint";

fn client_row(row: &tokio_postgres::Row) -> ClientRow {
    ClientRow {
        client_id: row.get(0),
        name: row.get(1),
        client_use_code: row.get(2),
        public: row.get(3),
        secret_hash: row.get(4),
        salt: row.get(5),
        redirect_uris: row.get(6),
        scopes: row.get(7),
        created_at: row.get(8),
    }
}

impl Cluster {
    /// Registers `client` (and, with `developer`, makes it that developer's
    /// app) in one transaction; a taken id or code, or an institution that
    /// does not exist, writes nothing and says which.
    pub async fn register_client(
        &self,
        client: &ClientRow,
        code: CodeUse,
        developer: Option<&str>,
    ) -> Result<Registered> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        match code {
            CodeUse::New => {
                let claimed = tx
                    .execute(
                        "INSERT INTO institution_codes (code, reserved_at) VALUES ($1, now()) \
                         ON CONFLICT (code) DO NOTHING",
                        &[&client.client_use_code],
                    )
                    .await?;
                if claimed == 0 {
                    return Ok(Registered::CodeTaken);
                }
            }
            CodeUse::Join => {
                // Shared lock: a reservation cannot go away meanwhile.
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM institution_codes WHERE code = $1 FOR SHARE",
                        &[&client.client_use_code],
                    )
                    .await?;
                if exists.is_none() {
                    return Ok(Registered::NoInstitution);
                }
            }
        }
        let inserted = tx
            .execute(
                "INSERT INTO oauth_clients (client_id, name, client_use_code, public, secret_hash, \
                 salt, created_at) VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7)) \
                 ON CONFLICT (client_id) DO NOTHING",
                &[
                    &client.client_id,
                    &client.name,
                    &client.client_use_code,
                    &client.public,
                    &client.secret_hash,
                    &client.salt,
                    &(client.created_at as f64),
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(Registered::ClientIdTaken);
        }
        for uri in &client.redirect_uris {
            tx.execute(
                "INSERT INTO oauth_client_redirect_uris (client_id, redirect_uri) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&client.client_id, uri],
            )
            .await?;
        }
        for scope in &client.scopes {
            tx.execute(
                "INSERT INTO oauth_client_scopes (client_id, scope) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&client.client_id, scope],
            )
            .await?;
        }
        if let Some(email) = developer {
            tx.execute(
                "INSERT INTO developer_apps (email, client_id) VALUES ($1, $2)",
                &[&email, &client.client_id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Registered::Done)
    }

    /// The client `client_id`, if registered.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients c WHERE c.client_id = $1"),
                &[&client_id],
            )
            .await?;
        Ok(row.as_ref().map(client_row))
    }

    /// Every registered client, by id.
    pub async fn clients(&self) -> Result<Vec<ClientRow>> {
        let conn = self.conn().await?;
        Ok(conn
            .query(
                &format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients c ORDER BY c.client_id"),
                &[],
            )
            .await?
            .iter()
            .map(client_row)
            .collect())
    }

    /// Replaces the secret of confidential client `client_id`; `false` when
    /// there is no such confidential client.
    pub async fn set_client_secret(
        &self,
        client_id: &str,
        salt: &str,
        secret_hash: &str,
    ) -> Result<bool> {
        let conn = self.conn().await?;
        let changed = conn
            .execute(
                "UPDATE oauth_clients SET salt = $2, secret_hash = $3 \
                 WHERE client_id = $1 AND NOT public",
                &[&client_id, &salt, &secret_hash],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Claims institution code `code` before any app has it; `false` when
    /// it was claimed already (by a reservation or an app).
    pub async fn reserve_code(&self, code: &str) -> Result<bool> {
        let conn = self.conn().await?;
        let claimed = conn
            .execute(
                "INSERT INTO institution_codes (code, reserved_at) VALUES ($1, now()) \
                 ON CONFLICT (code) DO NOTHING",
                &[&code],
            )
            .await?;
        Ok(claimed == 1)
    }

    /// Whether institution code `code` is claimed.
    pub async fn code_claimed(&self, code: &str) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt("SELECT 1 FROM institution_codes WHERE code = $1", &[&code])
            .await?
            .is_some())
    }

    /// Signs a developer up; an address already taken is a conflict.
    pub async fn add_developer(
        &self,
        email: &str,
        password_hash: &str,
        created_at_ms: i64,
    ) -> Result<()> {
        let conn = self.conn().await?;
        let added = conn
            .execute(
                "INSERT INTO developers (email, password, created_at) \
                 VALUES ($1, $2, to_timestamp($3::double precision / 1000)) \
                 ON CONFLICT (email) DO NOTHING",
                &[&email, &password_hash, &(created_at_ms as f64)],
            )
            .await?;
        if added == 0 {
            return Err(Error::Conflict(format!(
                "email: {email} already has a developer account"
            )));
        }
        Ok(())
    }

    /// The developer `email` with their apps, if signed up.
    pub async fn developer(&self, email: &str) -> Result<Option<DeveloperRow>> {
        let conn = self.conn().await?;
        let Some(row) = conn
            .query_opt(
                "SELECT d.password, (extract(epoch FROM d.created_at) * 1000)::bigint, \
                 coalesce((SELECT array_agg(a.client_id ORDER BY a.client_id) \
                   FROM developer_apps a WHERE a.email = d.email), '{}') \
                 FROM developers d WHERE d.email = $1",
                &[&email],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(DeveloperRow {
            email: email.to_owned(),
            password: row.get(0),
            created_at_ms: row.get(1),
            apps: row.get(2),
        }))
    }

    /// Makes registered client `client_id` an app of developer `email`.
    pub async fn add_developer_app(&self, email: &str, client_id: &str) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO developer_apps (email, client_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&email, &client_id],
        )
        .await?;
        Ok(())
    }

    /// The client ids of a developer's apps.
    pub async fn developer_apps(&self, email: &str) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        Ok(conn
            .query(
                "SELECT client_id FROM developer_apps WHERE email = $1 ORDER BY client_id",
                &[&email],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}
