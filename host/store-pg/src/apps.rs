//! OAuth clients (apps) and developer accounts: an app registered or a
//! developer signed up through any node is there for every node.

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
}

impl Cluster {
    /// Registers `client` (and, with `developer`, makes it that developer's
    /// app) in one transaction.
    pub async fn register_client(&self, client: &ClientRow, developer: Option<&str>) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "INSERT INTO oauth_clients (client_id, name, client_use_code, public, secret_hash, \
             salt, created_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
            &[
                &client.client_id,
                &client.name,
                &client.client_use_code,
                &client.public,
                &client.secret_hash,
                &client.salt,
            ],
        )
        .await?;
        for uri in &client.redirect_uris {
            tx.execute(
                "INSERT INTO oauth_client_redirect_uris (client_id, redirect_uri) VALUES ($1, $2)",
                &[&client.client_id, uri],
            )
            .await?;
        }
        for scope in &client.scopes {
            tx.execute(
                "INSERT INTO oauth_client_scopes (client_id, scope) VALUES ($1, $2)",
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
        Ok(())
    }

    /// The client `client_id`, if registered.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        let conn = self.conn().await?;
        let Some(row) = conn
            .query_opt(
                "SELECT c.name, c.client_use_code, c.public, c.secret_hash, c.salt, \
                 coalesce((SELECT array_agg(redirect_uri ORDER BY redirect_uri) \
                   FROM oauth_client_redirect_uris u WHERE u.client_id = c.client_id), '{}'), \
                 coalesce((SELECT array_agg(scope ORDER BY scope) \
                   FROM oauth_client_scopes s WHERE s.client_id = c.client_id), '{}') \
                 FROM oauth_clients c WHERE c.client_id = $1",
                &[&client_id],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ClientRow {
            client_id: client_id.to_owned(),
            name: row.get(0),
            client_use_code: row.get(1),
            public: row.get(2),
            secret_hash: row.get(3),
            salt: row.get(4),
            redirect_uris: row.get(5),
            scopes: row.get(6),
        }))
    }

    /// Signs a developer up; an address already taken is a conflict.
    pub async fn add_developer(&self, email: &str, password_hash: &str) -> Result<()> {
        let conn = self.conn().await?;
        let added = conn
            .execute(
                "INSERT INTO developers (email, password, created_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (email) DO NOTHING",
                &[&email, &password_hash],
            )
            .await?;
        if added == 0 {
            return Err(Error::Conflict(format!(
                "email: {email} already has a developer account"
            )));
        }
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
