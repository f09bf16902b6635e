//! The virtual bank's ledger on PostgreSQL: accounts, transfers unique per
//! (institution, bank_tran_id, business date), and double-entry postings,
//! each transfer one SERIALIZABLE transaction, run again when it conflicts.

use std::time::Duration;

use crate::{Cluster, Error, Result, retryable};

/// How many times a conflicting transfer is run again before the caller is
/// told the bank is busy.
const MAX_ATTEMPTS: u32 = 32;

/// A transfer to book.
#[derive(Debug, Clone)]
pub struct NewTransfer<'a> {
    /// The using institution (`client_use_code`).
    pub institution: &'a str,
    pub bank_tran_id: &'a str,
    /// `YYYY-MM-DD` in the bank's time zone.
    pub business_date: &'a str,
    pub from_account: &'a str,
    pub to_account: &'a str,
    /// Won, more than zero.
    pub amount: i64,
}

/// What a transfer request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Booked now, as transfer `id`.
    Posted { id: i64 },
    /// The same (institution, bank_tran_id, business date) was booked
    /// before as transfer `id`: nothing moved now.
    Duplicate { id: i64 },
    /// Not booked: the paying account lacks the funds.
    InsufficientFunds,
    /// Not booked: no such account.
    NoAccount(String),
}

/// How one run of a transfer's transaction ended without an outcome.
enum Attempt {
    /// It conflicted with a concurrent one: run it again.
    Retry,
    Failed(Error),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        if retryable(&e) {
            Attempt::Retry
        } else {
            Attempt::Failed(e.into())
        }
    }
}

impl Cluster {
    /// Opens an account with an opening balance.
    pub async fn open_account(
        &self,
        id: &str,
        bank_code: &str,
        holder_name: &str,
        balance: i64,
    ) -> Result<()> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO ledger_accounts (id, bank_code, holder_name, balance) \
             VALUES ($1, $2, $3, $4)",
            &[&id, &bank_code, &holder_name, &balance],
        )
        .await?;
        Ok(())
    }

    /// Books `t` exactly once: a resend of the same (institution,
    /// bank_tran_id, business date), from any node, is a duplicate. Answers
    /// only once the outcome is committed.
    pub async fn transfer(&self, t: &NewTransfer<'_>) -> Result<TransferOutcome> {
        if t.amount <= 0 {
            return Err(Error::Constraint(format!(
                "amount: {} is not more than zero",
                t.amount
            )));
        }
        let mut backoff = Duration::from_millis(1);
        for _ in 0..MAX_ATTEMPTS {
            match self.transfer_once(t).await {
                Ok(outcome) => return Ok(outcome),
                Err(Attempt::Retry) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "transfer {} kept conflicting with concurrent transfers ({MAX_ATTEMPTS} attempts): \
             nothing was booked; send it again",
            t.bank_tran_id
        )))
    }

    async fn transfer_once(
        &self,
        t: &NewTransfer<'_>,
    ) -> std::result::Result<TransferOutcome, Attempt> {
        let mut conn = self.conn().await.map_err(Attempt::Failed)?;
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::Serializable)
            .start()
            .await?;
        if let Some(row) = tx
            .query_opt(
                "SELECT id FROM ledger_transfers WHERE institution = $1 AND bank_tran_id = $2 \
                 AND business_date = to_date($3, 'YYYY-MM-DD')",
                &[&t.institution, &t.bank_tran_id, &t.business_date],
            )
            .await?
        {
            tx.commit().await?;
            return Ok(TransferOutcome::Duplicate { id: row.get(0) });
        }
        for account in [t.from_account, t.to_account] {
            if tx
                .query_opt("SELECT 1 FROM ledger_accounts WHERE id = $1", &[&account])
                .await?
                .is_none()
            {
                return Ok(TransferOutcome::NoAccount(account.to_owned()));
            }
        }
        let debited = tx
            .execute(
                "UPDATE ledger_accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2",
                &[&t.from_account, &t.amount],
            )
            .await?;
        if debited == 0 {
            return Ok(TransferOutcome::InsufficientFunds);
        }
        tx.execute(
            "UPDATE ledger_accounts SET balance = balance + $2 WHERE id = $1",
            &[&t.to_account, &t.amount],
        )
        .await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO ledger_transfers (institution, bank_tran_id, business_date, \
                 from_account, to_account, amount, at) \
                 VALUES ($1, $2, to_date($3, 'YYYY-MM-DD'), $4, $5, $6, now()) RETURNING id",
                &[
                    &t.institution,
                    &t.bank_tran_id,
                    &t.business_date,
                    &t.from_account,
                    &t.to_account,
                    &t.amount,
                ],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO ledger_postings (transfer_id, account, amount) \
             VALUES ($1, $2, -$3::bigint), ($1, $4, $3::bigint)",
            &[&id, &t.from_account, &t.amount, &t.to_account],
        )
        .await?;
        tx.commit().await?;
        Ok(TransferOutcome::Posted { id })
    }

    /// The balance of an account.
    pub async fn balance(&self, id: &str) -> Result<Option<i64>> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt("SELECT balance FROM ledger_accounts WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get(0)))
    }

    /// The sum of every balance (unchanged by any transfer).
    pub async fn total_balance(&self) -> Result<i64> {
        let conn = self.conn().await?;
        Ok(conn
            .query_one(
                "SELECT coalesce(sum(balance), 0)::bigint FROM ledger_accounts",
                &[],
            )
            .await?
            .get(0))
    }

    /// How many postings a bank_tran_id of an institution produced.
    pub async fn postings_of(&self, institution: &str, bank_tran_id: &str) -> Result<i64> {
        let conn = self.conn().await?;
        Ok(conn
            .query_one(
                "SELECT count(*) FROM ledger_postings p JOIN ledger_transfers t \
                 ON t.id = p.transfer_id WHERE t.institution = $1 AND t.bank_tran_id = $2",
                &[&institution, &bank_tran_id],
            )
            .await?
            .get(0))
    }
}
