//! The virtual bank's changes on a cluster: what an operator or a developer
//! changed in the bank through one node (an institution onboarded, its
//! contract account registered, verified or opened, its limits or state),
//! kept in the order every node applies it to its own bank (schema V8,
//! docs/adr/0030). A change bumps the config version in its transaction,
//! so the feed announces it as it announces a promote; the change's key is
//! that version.
//!
//! The store does not read the changes: they are opaque JSON that the
//! bank's code writes and applies.

use crate::{Cluster, Error, Result, bump_config_version};

/// One change, as the bank wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct BankChangeRow {
    /// The config version the change bumped to: its place in the order.
    pub version: u64,
    pub change: serde_json::Value,
}

/// An account the bank opened after the ledger was seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedAccount<'a> {
    /// `bank/num`.
    pub id: &'a str,
    pub bank_code: &'a str,
    pub holder_name: &'a str,
    /// Moved from `funded_from` (`bank/num`) as the account opens.
    pub opening_balance: i64,
    pub funded_from: &'a str,
}

/// How many changes one read returns at most.
const PAGE: i64 = 512;

impl Cluster {
    /// Appends `change` after every change committed before it; returns
    /// its version. Every node (this one too) applies it when its feed
    /// reaches that version.
    pub async fn append_bank_change(&self, change: &serde_json::Value) -> Result<u64> {
        let text = change.to_string();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let version = bump_config_version(&tx).await?;
        tx.execute(
            "INSERT INTO vbank_changes (version, change) VALUES ($1, $2::text::jsonb)",
            &[&(version as i64), &text],
        )
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// The changes after `version`, oldest first, at most a page of them:
    /// read again from the last one's version until it returns none.
    pub async fn bank_changes_after(&self, version: u64) -> Result<Vec<BankChangeRow>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT version, change::text FROM vbank_changes WHERE version > $1 \
                 ORDER BY version LIMIT $2",
                &[&(version as i64), &PAGE],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let version: i64 = r.get(0);
                let text: String = r.get(1);
                let change = serde_json::from_str(&text).map_err(|e| {
                    Error::Schema(format!("bank change {version} is not JSON: {e}"))
                })?;
                Ok(BankChangeRow {
                    version: version as u64,
                    change,
                })
            })
            .collect()
    }

    /// Puts `account` on the ledger with its opening balance taken from
    /// `funded_from`, both or neither; an account already there is left as
    /// it is (every node applying the change that opened it calls this:
    /// the first one opens it). Returns whether this call opened it.
    pub async fn open_ledger_account(&self, account: &OpenedAccount<'_>) -> Result<bool> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let opened = tx
            .execute(
                "INSERT INTO ledger_accounts (id, bank_code, holder_name, balance, \
                 overdraft_limit) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (id) DO NOTHING",
                &[
                    &account.id,
                    &account.bank_code,
                    &account.holder_name,
                    &account.opening_balance,
                ],
            )
            .await?;
        if opened == 0 {
            return Ok(false);
        }
        if account.opening_balance != 0 {
            let funded = tx
                .execute(
                    "UPDATE ledger_accounts SET balance = balance - $1 WHERE id = $2",
                    &[&account.opening_balance, &account.funded_from],
                )
                .await?;
            if funded != 1 {
                return Err(Error::Conflict(format!(
                    "the ledger has no account {} to fund {} from",
                    account.funded_from, account.id
                )));
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
