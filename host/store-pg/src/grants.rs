//! What the authorization server issued, for every node: authorization
//! codes (single use), refresh tokens (rotated once), token families (a
//! replay revokes one everywhere) and what each issue gave (unlink and
//! replays revoke from it). The server decides; these run its checks under
//! a row lock, so two nodes cannot both redeem a code or rotate a token.

use crate::{Cluster, Result};

/// An authorization code, stored by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_seq_no: String,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
    pub code_challenge: Option<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    /// The family its redemption started, once redeemed.
    pub redeemed_family: Option<String>,
}

/// A refresh token, stored by hash, with its family's client and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub client_id: String,
    pub user_seq_no: String,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    pub family: String,
    pub rotated: bool,
}

/// What one issue gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedRow {
    pub revocation_ids: Vec<String>,
    pub refresh_hash: Option<String>,
    pub family: Option<String>,
}

const CODE_COLUMNS: &str = "client_id, redirect_uri, user_seq_no, scopes, fintech_use_nums, \
     code_challenge, extract(epoch FROM expires_at)::bigint, redeemed_family";

fn code_row(row: &tokio_postgres::Row) -> CodeRow {
    CodeRow {
        client_id: row.get(0),
        redirect_uri: row.get(1),
        user_seq_no: row.get(2),
        scopes: row.get(3),
        fintech_use_nums: row.get(4),
        code_challenge: row.get(5),
        expires_at: row.get(6),
        redeemed_family: row.get(7),
    }
}

const REFRESH_SELECT: &str = "SELECT f.client_id, f.user_seq_no, r.scopes, r.fintech_use_nums, \
     extract(epoch FROM r.expires_at)::bigint, r.family, r.rotated \
     FROM refresh_tokens r JOIN refresh_families f ON f.family = r.family \
     WHERE r.token_hash = $1";

fn refresh_row(row: &tokio_postgres::Row) -> RefreshRow {
    RefreshRow {
        client_id: row.get(0),
        user_seq_no: row.get(1),
        scopes: row.get(2),
        fintech_use_nums: row.get(3),
        expires_at: row.get(4),
        family: row.get(5),
        rotated: row.get(6),
    }
}

/// Makes family `family` of (`client_id`, `user`) exist.
async fn ensure_family(
    tx: &tokio_postgres::Transaction<'_>,
    family: &str,
    client_id: &str,
    user: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO refresh_families (family, client_id, user_seq_no, created_at) \
         VALUES ($1, $2, $3, now()) ON CONFLICT (family) DO NOTHING",
        &[&family, &client_id, &user],
    )
    .await?;
    Ok(())
}

impl Cluster {
    /// Stores a new authorization code under `code_hash`.
    pub async fn put_code(&self, code_hash: &str, code: &CodeRow) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, user_seq_no, scopes, \
             fintech_use_nums, code_challenge, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8))",
            &[
                &code_hash,
                &code.client_id,
                &code.redirect_uri,
                &code.user_seq_no,
                &code.scopes,
                &code.fintech_use_nums,
                &code.code_challenge,
                &(code.expires_at as f64),
            ],
        )
        .await?;
        Ok(())
    }

    /// Redeems code `code_hash` into `family` if `check` passes, under the
    /// code's row lock: `None` for an unknown code, `Some(Err)` with what
    /// `check` refused (nothing written), else the code as redeemed.
    pub async fn redeem_code<E>(
        &self,
        code_hash: &str,
        family: &str,
        check: impl Fn(&CodeRow) -> std::result::Result<(), E>,
    ) -> Result<Option<std::result::Result<CodeRow, E>>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let Some(row) = tx
            .query_opt(
                &format!("SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1 FOR UPDATE"),
                &[&code_hash],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut code = code_row(&row);
        if let Err(refused) = check(&code) {
            return Ok(Some(Err(refused)));
        }
        ensure_family(&tx, family, &code.client_id, &code.user_seq_no).await?;
        tx.execute(
            "UPDATE oauth_codes SET redeemed_family = $2 WHERE code_hash = $1",
            &[&code_hash, &family],
        )
        .await?;
        tx.commit().await?;
        code.redeemed_family = Some(family.to_owned());
        Ok(Some(Ok(code)))
    }

    /// Stores a new refresh token under `token_hash` (its family made to
    /// exist).
    pub async fn put_refresh(&self, token_hash: &str, refresh: &RefreshRow) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        ensure_family(
            &tx,
            &refresh.family,
            &refresh.client_id,
            &refresh.user_seq_no,
        )
        .await?;
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, family, scopes, fintech_use_nums, \
             expires_at, rotated) VALUES ($1, $2, $3, $4, to_timestamp($5), $6)",
            &[
                &token_hash,
                &refresh.family,
                &refresh.scopes,
                &refresh.fintech_use_nums,
                &(refresh.expires_at as f64),
                &refresh.rotated,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The refresh token `token_hash`, if stored.
    pub async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRow>> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(REFRESH_SELECT, &[&token_hash])
            .await?
            .as_ref()
            .map(refresh_row))
    }

    /// Marks refresh token `token_hash` rotated if `check` passes, under
    /// its row lock: `None` for an unknown token, `Some(Err)` with what
    /// `check` refused (nothing written), else the token as it was.
    pub async fn rotate_refresh<E>(
        &self,
        token_hash: &str,
        check: impl Fn(&RefreshRow) -> std::result::Result<(), E>,
    ) -> Result<Option<std::result::Result<RefreshRow, E>>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let Some(row) = tx
            .query_opt(&format!("{REFRESH_SELECT} FOR UPDATE OF r"), &[&token_hash])
            .await?
        else {
            return Ok(None);
        };
        let refresh = refresh_row(&row);
        if let Err(refused) = check(&refresh) {
            return Ok(Some(Err(refused)));
        }
        tx.execute(
            "UPDATE refresh_tokens SET rotated = true WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Ok(refresh)))
    }

    /// Forgets refresh token `token_hash`.
    pub async fn remove_refresh(&self, token_hash: &str) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "DELETE FROM refresh_tokens WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?;
        Ok(())
    }

    /// Records what one issue to (`client_id`, `user`) gave.
    pub async fn put_issued(&self, client_id: &str, user: &str, issued: &IssuedRow) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        if let Some(family) = &issued.family {
            ensure_family(&tx, family, client_id, user).await?;
        }
        tx.execute(
            "INSERT INTO oauth_issued (client_id, user_seq_no, revocation_ids, refresh_hash, \
             family) VALUES ($1, $2, $3, $4, $5)",
            &[
                &client_id,
                &user,
                &issued.revocation_ids,
                &issued.refresh_hash,
                &issued.family,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What was issued to (`client_id`, `user`), each with its id.
    pub async fn issued(&self, client_id: &str, user: &str) -> Result<Vec<(i64, IssuedRow)>> {
        let conn = self.conn().await?;
        Ok(conn
            .query(
                "SELECT id, revocation_ids, refresh_hash, family FROM oauth_issued \
                 WHERE client_id = $1 AND user_seq_no = $2 ORDER BY id",
                &[&client_id, &user],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    IssuedRow {
                        revocation_ids: r.get(1),
                        refresh_hash: r.get(2),
                        family: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Forgets issue `id`.
    pub async fn remove_issued(&self, id: i64) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute("DELETE FROM oauth_issued WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    /// Marks family `family` (of `client_id` and `user`) revoked: a token
    /// issued into it later dies at once.
    pub async fn revoke_family(&self, family: &str, client_id: &str, user: &str) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO refresh_families (family, client_id, user_seq_no, created_at, revoked_at) \
             VALUES ($1, $2, $3, now(), now()) ON CONFLICT (family) \
             DO UPDATE SET revoked_at = coalesce(refresh_families.revoked_at, now())",
            &[&family, &client_id, &user],
        )
        .await?;
        Ok(())
    }

    /// Whether family `family` was revoked.
    pub async fn family_revoked(&self, family: &str) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT 1 FROM refresh_families WHERE family = $1 AND revoked_at IS NOT NULL",
                &[&family],
            )
            .await?
            .is_some())
    }
}
