//! The virtual bank's money on the cluster: its accounts seeded once, its
//! transfers booked exactly once per (institution, bank_tran_id, business
//! date) from any node with the answer recorded beside them, its usage
//! limits, its statements, and the inquiry ids it consumed. The bank's
//! rules (who may move what) stay in the bank's crate; this file books what
//! it decided and decides only what needs the shared state: duplicates,
//! funds and limits, inside one SERIALIZABLE transaction
//! (docs/adr/0030-ledger-and-accounts-on-postgresql.md).

use deadpool_postgres::Object;

use crate::ledger::{Attempt, Queued};
use crate::{Cluster, Result};

/// The advisory lock the first start's seeding holds (one node seeds).
const SEED_LOCK: i64 = 0x5f0b_0003;

/// An account as the bank opens it on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedAccount {
    /// The bank's key for it (`bank/num`).
    pub id: String,
    pub bank_code: String,
    pub holder_name: String,
    pub balance: i64,
    pub overdraft_limit: i64,
}

/// What the cluster holds of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub balance: i64,
    pub overdraft_limit: i64,
    /// `YYYYMMDD` of its last transfer on the cluster.
    pub last_tran_date: Option<String>,
}

/// Which bank_tran_id: an institution's, on a business date (`YYYYMMDD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranKey {
    pub institution: String,
    pub bank_tran_id: String,
    pub business_date: String,
}

/// A limit a transfer counts against: `key` names the period's counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub key: String,
    /// The most the counter may reach.
    pub limit: i64,
    /// The answer recorded when this limit refuses the transfer.
    pub refusal: serde_json::Value,
}

/// A transfer the bank decided to make, with every answer it may get.
#[derive(Debug, Clone, PartialEq)]
pub struct BankTransfer {
    pub key: TranKey,
    /// `withdraw` or `deposit`.
    pub kind: &'static str,
    pub from_account: String,
    pub to_account: String,
    /// Won, more than zero.
    pub amount: i64,
    /// 14 digits, the bank's local time.
    pub dtime: String,
    pub tran_type: String,
    pub wd_print: String,
    pub dps_print: String,
    pub branch: String,
    /// Counted in order; the first that would pass its limit refuses.
    pub usage: Vec<Usage>,
    /// Recorded (and given back to a transfer-result) when it is booked.
    pub receipt: serde_json::Value,
    /// Recorded when the paying account lacks the funds.
    pub insufficient_funds: serde_json::Value,
    /// Recorded when an account is not on the cluster.
    pub no_account: serde_json::Value,
}

/// What a transfer came to.
#[derive(Debug, Clone, PartialEq)]
pub enum BankOutcome {
    /// Booked now; what is left of each usage limit, in order.
    Booked { id: i64, remaining: Vec<i64> },
    /// Refused now, with this recorded answer.
    Refused(serde_json::Value),
    /// The bank_tran_id was consumed before (by any node): nothing happened.
    Duplicate,
}

/// What was recorded under a bank_tran_id.
#[derive(Debug, Clone, PartialEq)]
pub struct TranRecord {
    /// `inquiry`, `withdraw` or `deposit`.
    pub kind: String,
    pub amount: Option<i64>,
    pub booked: bool,
    pub answer: Option<serde_json::Value>,
    pub remaining: Vec<i64>,
}

/// Which postings of an account a statement shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    All,
    In,
    Out,
}

/// One posting on a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRow {
    /// The transfer's id: postings sort by it.
    pub seq: i64,
    pub dtime: String,
    /// Signed: money in is positive.
    pub amount: i64,
    pub after_balance: i64,
    pub tran_type: String,
    pub print_content: String,
    pub branch: String,
    /// The other side's account key (`bank/num`), name and bank.
    pub counterparty: String,
    pub counterparty_name: String,
    pub counterparty_bank: String,
}

impl Cluster {
    /// Opens `accounts` on a cluster whose ledger is empty, in one
    /// transaction under an advisory lock: nodes starting at once seed once,
    /// and a ledger that has accounts is never seeded again (its balances
    /// are the truth). How many accounts were opened.
    pub async fn seed_accounts(&self, accounts: &[SeedAccount]) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEED_LOCK])
            .await?;
        let existing: i64 = tx
            .query_one("SELECT count(*) FROM ledger_accounts", &[])
            .await?
            .get(0);
        if existing > 0 {
            return Ok(0);
        }
        let mut opened = 0;
        for a in accounts {
            opened += tx
                .execute(
                    "INSERT INTO ledger_accounts (id, bank_code, holder_name, balance, \
                     overdraft_limit) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    &[
                        &a.id,
                        &a.bank_code,
                        &a.holder_name,
                        &a.balance,
                        &a.overdraft_limit,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(opened)
    }

    /// The account `id` as the cluster holds it.
    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT balance, overdraft_limit, last_tran_date FROM ledger_accounts \
                 WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|r| AccountRow {
                balance: r.get(0),
                overdraft_limit: r.get(1),
                last_tran_date: r.get(2),
            }))
    }

    /// Consumes `key` for an inquiry: `false` when it was used before.
    pub async fn consume_tran_id(&self, key: &TranKey) -> Result<bool> {
        let conn = self.conn().await?;
        let inserted = conn
            .execute(
                "INSERT INTO ledger_tran_ids (institution, bank_tran_id, business_date, kind) \
                 VALUES ($1, $2, to_date($3, 'YYYYMMDD'), 'inquiry') ON CONFLICT DO NOTHING",
                &[&key.institution, &key.bank_tran_id, &key.business_date],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Records a transfer the bank refused before it needed the shared
    /// state (a wrong holder name...): `false` when `key` was used before.
    pub async fn record_refusal(
        &self,
        key: &TranKey,
        kind: &'static str,
        amount: i64,
        answer: &serde_json::Value,
    ) -> Result<bool> {
        let conn = self.conn().await?;
        let inserted = conn
            .execute(
                "INSERT INTO ledger_tran_ids (institution, bank_tran_id, business_date, kind, \
                 amount, answer) VALUES ($1, $2, to_date($3, 'YYYYMMDD'), $4, $5, $6::text::jsonb) \
                 ON CONFLICT DO NOTHING",
                &[
                    &key.institution,
                    &key.bank_tran_id,
                    &key.business_date,
                    &kind,
                    &amount,
                    &answer.to_string(),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// What was recorded under `key`, if anything.
    pub async fn tran_record(&self, key: &TranKey) -> Result<Option<TranRecord>> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT kind, amount, transfer_id IS NOT NULL, answer::text, \
                 coalesce(remaining, '{}') FROM ledger_tran_ids WHERE institution = $1 \
                 AND bank_tran_id = $2 AND business_date = to_date($3, 'YYYYMMDD')",
                &[&key.institution, &key.bank_tran_id, &key.business_date],
            )
            .await?
            .map(|r| TranRecord {
                kind: r.get(0),
                amount: r.get(1),
                booked: r.get(2),
                answer: r
                    .get::<_, Option<String>>(3)
                    .and_then(|a| serde_json::from_str(&a).ok()),
                remaining: r.get(4),
            }))
    }

    /// The postings of `account` with `dtime` in `[from, to]` (14 digits)
    /// in direction `dir`, by booking order (or the reverse).
    pub async fn postings(
        &self,
        account: &str,
        (from, to): (&str, &str),
        dir: Direction,
        descending: bool,
    ) -> Result<Vec<PostingRow>> {
        let conn = self.conn().await?;
        let dir = match dir {
            Direction::All => "all",
            Direction::In => "in",
            Direction::Out => "out",
        };
        let order = if descending { "DESC" } else { "ASC" };
        let rows = conn
            .query(
                &format!(
                    "SELECT p.transfer_id, p.dtime, p.amount, p.after_balance, \
                     coalesce(p.tran_type, ''), coalesce(p.print_content, ''), \
                     coalesce(p.branch, ''), c.id, c.holder_name, c.bank_code \
                     FROM ledger_postings p JOIN ledger_transfers t ON t.id = p.transfer_id \
                     JOIN ledger_accounts c ON c.id = CASE WHEN t.from_account = p.account \
                       THEN t.to_account ELSE t.from_account END \
                     WHERE p.account = $1 AND p.dtime IS NOT NULL AND p.dtime BETWEEN $2 AND $3 \
                     AND ($4 = 'all' OR ($4 = 'in' AND p.amount > 0) \
                       OR ($4 = 'out' AND p.amount < 0)) \
                     ORDER BY p.transfer_id {order}"
                ),
                &[&account, &from, &to, &dir],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PostingRow {
                seq: r.get(0),
                dtime: r.get(1),
                amount: r.get(2),
                after_balance: r.get(3),
                tran_type: r.get(4),
                print_content: r.get(5),
                branch: r.get(6),
                counterparty: r.get(7),
                counterparty_name: r.get(8),
                counterparty_bank: r.get(9),
            })
            .collect())
    }

    /// Books `t` exactly once, from any node: a key used before is a
    /// duplicate; otherwise the transfer is booked or refused (no account,
    /// a limit, funds) and its answer recorded, in one SERIALIZABLE
    /// transaction queued per account like [`Cluster::transfer`]. Answers
    /// only once committed; runs in its own task, so a caller that stops
    /// waiting does not cut it.
    pub async fn bank_transfer(&self, t: BankTransfer) -> Result<BankOutcome> {
        self.queued(t).await
    }
}

impl Queued for BankTransfer {
    type Outcome = BankOutcome;

    fn accounts(&self) -> [&str; 2] {
        [&self.from_account, &self.to_account]
    }

    fn amount(&self) -> i64 {
        self.amount
    }

    fn bank_tran_id(&self) -> &str {
        &self.key.bank_tran_id
    }

    async fn book(&self, conn: &mut Object) -> std::result::Result<BankOutcome, Attempt> {
        book(conn, self).await
    }
}

async fn book(conn: &mut Object, t: &BankTransfer) -> std::result::Result<BankOutcome, Attempt> {
    let k = &t.key;
    let keys: Vec<&str> = t.usage.iter().map(|u| u.key.as_str()).collect();
    let limits: Vec<i64> = t.usage.iter().map(|u| u.limit).collect();
    let refusals: Vec<String> = t.usage.iter().map(|u| u.refusal.to_string()).collect();
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await?;
    // The whole booking in one round trip (schema V9's `ledger_book`).
    let row = tx
        .query_one(
            "SELECT outcome, transfer_id, remaining, answer FROM ledger_book($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            &[
                &k.institution,
                &k.bank_tran_id,
                &k.business_date,
                &t.kind,
                &t.from_account,
                &t.to_account,
                &t.amount,
                &keys,
                &limits,
                &refusals,
                &t.no_account.to_string(),
                &t.insufficient_funds.to_string(),
                &t.receipt.to_string(),
                &t.dtime,
                &t.tran_type,
                &t.wd_print,
                &t.dps_print,
                &t.branch,
            ],
        )
        .await?;
    tx.commit().await?;
    let outcome: &str = row.get(0);
    match outcome {
        "duplicate" => Ok(BankOutcome::Duplicate),
        "booked" => Ok(BankOutcome::Booked {
            id: row.get(1),
            remaining: row.get(2),
        }),
        "refused" => {
            let answer: String = row.get(3);
            serde_json::from_str(&answer)
                .map(BankOutcome::Refused)
                .map_err(|e| {
                    Attempt::Failed(crate::Error::Schema(format!(
                        "ledger_book recorded a refusal that is not JSON: {e}"
                    )))
                })
        }
        other => Err(Attempt::Failed(crate::Error::Schema(format!(
            "ledger_book answered {other:?}"
        )))),
    }
}
