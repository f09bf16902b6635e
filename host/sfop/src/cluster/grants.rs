//! What the authorization server issued, on a cluster node (ADR 0029):
//! codes, refresh tokens, issues and revoked families in the cluster
//! database, so a code issued on one node is redeemed once on any, a
//! refresh token rotates on any, and a replay revokes its family on all.
//! The OAuth server calls these on its blocking thread; each runs on the
//! runtime and is waited for ([`super::apps::wait`]).

use sfop_auth::oauth::grants::{
    Check, CodeRecord, Grants, IssuedRecord, Redeem, RefreshRecord, Rotate,
};
use sfop_store_pg::{Cluster, CodeRow, IssuedRow, RefreshRow};

use super::apps::{auth_error, wait};

/// The cluster's grants.
#[derive(Debug, Clone)]
pub struct ClusterGrants {
    cluster: Cluster,
    runtime: tokio::runtime::Handle,
}

impl ClusterGrants {
    pub fn new(cluster: Cluster, runtime: tokio::runtime::Handle) -> Self {
        Self { cluster, runtime }
    }

    /// `work` on the runtime, waited for; both failures as the auth box's.
    fn run<T>(
        &self,
        work: impl std::future::Future<Output = sfop_store_pg::Result<T>>,
    ) -> sfop_auth::Result<T> {
        wait(&self.runtime, work)?.map_err(auth_error)
    }
}

fn secs(at: i64) -> u64 {
    u64::try_from(at).unwrap_or_default()
}

fn at(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn code_record(row: CodeRow) -> CodeRecord {
    CodeRecord {
        client_id: row.client_id,
        redirect_uri: row.redirect_uri,
        user_seq_no: row.user_seq_no,
        scopes: row.scopes,
        fintech_use_nums: row.fintech_use_nums,
        code_challenge: row.code_challenge,
        expires_at: secs(row.expires_at),
        redeemed: row.redeemed_family,
    }
}

fn refresh_record(row: RefreshRow) -> RefreshRecord {
    RefreshRecord {
        client_id: row.client_id,
        user_seq_no: row.user_seq_no,
        scopes: row.scopes,
        fintech_use_nums: row.fintech_use_nums,
        expires_at: secs(row.expires_at),
        family: Some(row.family),
        rotated: row.rotated,
    }
}

impl Grants for ClusterGrants {
    fn put_code(&self, code_hash: &str, code: &CodeRecord) -> sfop_auth::Result<()> {
        let row = CodeRow {
            client_id: code.client_id.clone(),
            redirect_uri: code.redirect_uri.clone(),
            user_seq_no: code.user_seq_no.clone(),
            scopes: code.scopes.clone(),
            fintech_use_nums: code.fintech_use_nums.clone(),
            code_challenge: code.code_challenge.clone(),
            expires_at: at(code.expires_at),
            redeemed_family: code.redeemed.clone(),
        };
        self.run(self.cluster.put_code(code_hash, &row))
    }

    fn redeem_code(
        &self,
        code_hash: &str,
        family: &str,
        check: Check<'_, CodeRecord, Redeem>,
    ) -> sfop_auth::Result<Option<Result<CodeRecord, Redeem>>> {
        let redeemed = self.run(
            self.cluster
                .redeem_code(code_hash, family, |row| check(&code_record(row.clone()))),
        )?;
        Ok(redeemed.map(|outcome| outcome.map(code_record)))
    }

    fn put_refresh(&self, token_hash: &str, refresh: &RefreshRecord) -> sfop_auth::Result<()> {
        let Some(family) = refresh.family.clone() else {
            return Err(sfop_auth::Error::Cluster(
                "a refresh token without a family cannot be stored".into(),
            ));
        };
        let row = RefreshRow {
            client_id: refresh.client_id.clone(),
            user_seq_no: refresh.user_seq_no.clone(),
            scopes: refresh.scopes.clone(),
            fintech_use_nums: refresh.fintech_use_nums.clone(),
            expires_at: at(refresh.expires_at),
            family,
            rotated: refresh.rotated,
        };
        self.run(self.cluster.put_refresh(token_hash, &row))
    }

    fn refresh(&self, token_hash: &str) -> sfop_auth::Result<Option<RefreshRecord>> {
        Ok(self
            .run(self.cluster.refresh_token(token_hash))?
            .map(refresh_record))
    }

    fn rotate_refresh(
        &self,
        token_hash: &str,
        check: Check<'_, RefreshRecord, Rotate>,
    ) -> sfop_auth::Result<Option<Result<RefreshRecord, Rotate>>> {
        let rotated = self.run(
            self.cluster
                .rotate_refresh(token_hash, |row| check(&refresh_record(row.clone()))),
        )?;
        Ok(rotated.map(|outcome| outcome.map(refresh_record)))
    }

    fn remove_refresh(&self, token_hash: &str) -> sfop_auth::Result<()> {
        self.run(self.cluster.remove_refresh(token_hash))
    }

    fn put_issued(
        &self,
        client_id: &str,
        user: &str,
        issued: &IssuedRecord,
    ) -> sfop_auth::Result<()> {
        let row = IssuedRow {
            revocation_ids: issued.revocation_ids.clone(),
            refresh_hash: issued.refresh_hash.clone(),
            family: issued.family.clone(),
        };
        self.run(self.cluster.put_issued(client_id, user, &row))
    }

    fn issued(
        &self,
        client_id: &str,
        user: &str,
    ) -> sfop_auth::Result<Vec<(String, IssuedRecord)>> {
        Ok(self
            .run(self.cluster.issued(client_id, user))?
            .into_iter()
            .map(|(id, row)| {
                (
                    id.to_string(),
                    IssuedRecord {
                        revocation_ids: row.revocation_ids,
                        refresh_hash: row.refresh_hash,
                        family: row.family,
                    },
                )
            })
            .collect())
    }

    fn remove_issued(&self, key: &str) -> sfop_auth::Result<()> {
        let id: i64 = key
            .parse()
            .map_err(|_| sfop_auth::Error::Cluster(format!("issue key {key:?} is not an id")))?;
        self.run(self.cluster.remove_issued(id))
    }

    fn revoke_family(&self, client_id: &str, user: &str, family: &str) -> sfop_auth::Result<()> {
        self.run(self.cluster.revoke_family(family, client_id, user))
    }

    fn family_revoked(&self, family: &str) -> sfop_auth::Result<bool> {
        self.run(self.cluster.family_revoked(family))
    }

    fn flush(&self) -> sfop_auth::Result<()> {
        Ok(())
    }
}
