//! The virtual bank's ledger on PostgreSQL: accounts, transfers unique per
//! (institution, bank_tran_id, business date), and double-entry postings,
//! each transfer one SERIALIZABLE transaction, run again when it conflicts.

use std::time::Duration;

use deadpool_postgres::Object;

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

/// The advisory-lock key space of accounts (two-int keys: apart from the
/// single-key locks of migrations and the audit log).
const ACCOUNT_LOCKS: i32 = 0x5f0b;

#[derive(Debug)]
struct OwnedTransfer {
    institution: String,
    bank_tran_id: String,
    business_date: String,
    from_account: String,
    to_account: String,
    amount: i64,
}

/// `d` scaled by a factor in [0.5, 1.5) from the clock's low bits, so that
/// transfers that conflicted do not retry in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

/// How one run of a transfer's transaction ended without an outcome.
pub(crate) enum Attempt {
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

/// A booking between two accounts: queued on their advisory locks, run in
/// one SERIALIZABLE transaction, run again when it conflicts
/// ([`Cluster::queued`]).
pub(crate) trait Queued: Send + Sync + 'static {
    type Outcome: Send + 'static;
    /// The paying and the receiving account.
    fn accounts(&self) -> [&str; 2];
    /// Won: more than zero.
    fn amount(&self) -> i64;
    /// For the message when it kept conflicting.
    fn bank_tran_id(&self) -> &str;
    /// One run, inside the locks.
    fn book(
        &self,
        conn: &mut Object,
    ) -> impl Future<Output = std::result::Result<Self::Outcome, Attempt>> + Send;
}

impl Queued for OwnedTransfer {
    type Outcome = TransferOutcome;

    fn accounts(&self) -> [&str; 2] {
        [&self.from_account, &self.to_account]
    }

    fn amount(&self) -> i64 {
        self.amount
    }

    fn bank_tran_id(&self) -> &str {
        &self.bank_tran_id
    }

    async fn book(&self, conn: &mut Object) -> std::result::Result<TransferOutcome, Attempt> {
        let t = self;
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
        for account in [&t.from_account, &t.to_account] {
            if tx
                .query_opt("SELECT 1 FROM ledger_accounts WHERE id = $1", &[&account])
                .await?
                .is_none()
            {
                return Ok(TransferOutcome::NoAccount(account.clone()));
            }
        }
        let debited = tx
            .execute(
                "UPDATE ledger_accounts SET balance = balance - $2 \
                 WHERE id = $1 AND balance + overdraft_limit >= $2",
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
    /// only once the outcome is committed. The booking runs in its own task:
    /// a caller that stops waiting (its deadline passed) does not cancel a
    /// transfer mid-way; its outcome is found by a resend.
    pub async fn transfer(&self, t: &NewTransfer<'_>) -> Result<TransferOutcome> {
        self.queued(OwnedTransfer {
            institution: t.institution.to_owned(),
            bank_tran_id: t.bank_tran_id.to_owned(),
            business_date: t.business_date.to_owned(),
            from_account: t.from_account.to_owned(),
            to_account: t.to_account.to_owned(),
            amount: t.amount,
        })
        .await
    }

    /// Runs `q` exactly once to an outcome, in its own task (a caller that
    /// stops waiting does not cut it mid-way), again while it conflicts with
    /// concurrent transactions, up to [`MAX_ATTEMPTS`] times.
    pub(crate) async fn queued<Q: Queued>(&self, q: Q) -> Result<Q::Outcome> {
        if q.amount() <= 0 {
            return Err(Error::Constraint(format!(
                "amount: {} is not more than zero",
                q.amount()
            )));
        }
        let cluster = self.clone();
        tokio::spawn(async move { cluster.retrying(&q).await })
            .await
            .map_err(|e| Error::Unavailable(format!("the transfer task failed: {e}")))?
    }

    async fn retrying<Q: Queued>(&self, q: &Q) -> Result<Q::Outcome> {
        let mut backoff = Duration::from_millis(1);
        for _ in 0..MAX_ATTEMPTS {
            match self.queued_once(q).await {
                Ok(outcome) => return Ok(outcome),
                Err(Attempt::Retry) => {
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "transfer {} kept conflicting with concurrent transfers ({MAX_ATTEMPTS} attempts): \
             nothing was booked; send it again",
            q.bank_tran_id()
        )))
    }

    /// One run. Transfers that touch the same account queue on a session
    /// advisory lock per account (taken in account order, so no deadlock)
    /// before their SERIALIZABLE transaction starts: its snapshot is taken
    /// after the previous one committed, so they do not abort each other
    /// (with 16 transfers on one hot pair, unqueued SERIALIZABLE runs
    /// starved past 32 retries). Serializability still guards the rest.
    async fn queued_once<Q: Queued>(&self, q: &Q) -> std::result::Result<Q::Outcome, Attempt> {
        let mut conn = self.conn().await.map_err(Attempt::Failed)?;
        let mut accounts = q.accounts();
        accounts.sort_unstable();
        let locked = async {
            for account in accounts {
                conn.execute(
                    "SELECT pg_advisory_lock($1, hashtext($2))",
                    &[&ACCOUNT_LOCKS, &account],
                )
                .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        let outcome = match locked {
            Ok(()) => q.book(&mut conn).await,
            Err(e) => Err(e.into()),
        };
        // Session locks outlive the transaction: release them, whatever
        // happened (a broken connection released them already).
        if let Err(e) = conn.execute("SELECT pg_advisory_unlock_all()", &[]).await {
            tracing::debug!("releasing transfer locks: {e}");
        }
        outcome
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
