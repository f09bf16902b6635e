//! The virtual bank's consents on the cluster: the fintech numbers it
//! issued (one per institution, user and account, drawn from one sequence
//! so that nodes never collide) and the accounts users registered with each
//! client, with their inquiry and transfer consents. Whoever registers,
//! unlinks or cancels on whichever node, every node decides by the same
//! rows. The bank's rules (whose account, which scopes) stay in the bank's
//! crate; this file stores what it decided
//! (docs/adr/0030-ledger-and-accounts-on-postgresql.md).

use std::time::Duration;

use crate::bank::TranKey;
use crate::ledger::{Attempt, jitter};
use crate::{Cluster, Error, Result};

/// The advisory lock the first start's copy of the seeded consents holds.
const SEED_LOCK: i64 = 0x5f0b_0004;

/// How many times a registration that conflicted (a deadlock with a
/// concurrent one) runs again.
const MAX_ATTEMPTS: u32 = 16;

/// A fintech number and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FintechNum {
    pub fintech_use_num: String,
    /// The institution it was issued to.
    pub client_use_code: String,
    pub user_seq_no: String,
    /// The account's key (`bank/num`).
    pub account: String,
}

/// One consent (of one scope) on a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// 14 digits, the bank's local time.
    pub agreed_dtime: String,
    /// Milliseconds since the Unix epoch.
    pub expires_millis: i64,
    pub withdrawn: bool,
}

/// An account a user registered with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRow {
    pub user_seq_no: String,
    pub client_id: String,
    pub account: String,
    pub fintech_use_num: String,
    /// 14 digits, the bank's local time of the first registration.
    pub registered_dtime: String,
    pub inquiry: Option<ConsentRow>,
    pub transfer: Option<ConsentRow>,
}

/// A user registering accounts with a client, as the bank checked it.
#[derive(Debug, Clone)]
pub struct NewConsents<'a> {
    pub user_seq_no: &'a str,
    pub client_id: &'a str,
    /// The client's institution: numbers are per institution.
    pub client_use_code: &'a str,
    /// Account keys, in the order their numbers are answered.
    pub accounts: &'a [String],
    /// 14 digits: the registration time of an account registered now.
    pub now_dtime: &'a str,
    /// The consents given now; a scope not given keeps what it had.
    pub inquiry: Option<ConsentRow>,
    pub transfer: Option<ConsentRow>,
}

/// Which consent of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Inquiry,
    Transfer,
}

/// What withdrawing one consent came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Withdrawn now; the bank_tran_id is used up.
    Done,
    /// The bank_tran_id was used before (by any node): nothing changed.
    Duplicate,
    /// The account is not registered with the client: nothing changed.
    NotRegistered,
    /// No such consent, or withdrawn before: nothing changed.
    NoConsent,
}

/// The columns of a registration, in [`registration_row`]'s order.
const REGISTRATION_COLUMNS: &str = "r.user_seq_no, r.client_id, r.account, r.fintech_use_num, \
     r.registered_dtime, \
     r.inquiry_agreed_dtime, (extract(epoch FROM r.inquiry_expires_at) * 1000)::bigint, \
     r.inquiry_withdrawn, \
     r.transfer_agreed_dtime, (extract(epoch FROM r.transfer_expires_at) * 1000)::bigint, \
     r.transfer_withdrawn";

/// `timestamptz` of parameter `$n` in milliseconds since the epoch.
fn at_millis(n: u32) -> String {
    format!("(timestamptz 'epoch' + ${n}::bigint * interval '1 millisecond')")
}

fn consent_at(row: &tokio_postgres::Row, first: usize) -> Option<ConsentRow> {
    let agreed: Option<String> = row.get(first);
    let expires: Option<i64> = row.get(first + 1);
    let withdrawn: Option<bool> = row.get(first + 2);
    Some(ConsentRow {
        agreed_dtime: agreed?,
        expires_millis: expires?,
        withdrawn: withdrawn?,
    })
}

/// A registration read with [`REGISTRATION_COLUMNS`] from column `first` on.
fn registration_row(row: &tokio_postgres::Row, first: usize) -> RegistrationRow {
    RegistrationRow {
        user_seq_no: row.get(first),
        client_id: row.get(first + 1),
        account: row.get(first + 2),
        fintech_use_num: row.get(first + 3),
        registered_dtime: row.get(first + 4),
        inquiry: consent_at(row, first + 5),
        transfer: consent_at(row, first + 8),
    }
}

/// A consent's three columns as parameters.
fn consent_params(c: &Option<ConsentRow>) -> (Option<&str>, Option<i64>, Option<bool>) {
    match c {
        Some(c) => (
            Some(c.agreed_dtime.as_str()),
            Some(c.expires_millis),
            Some(c.withdrawn),
        ),
        None => (None, None, None),
    }
}

/// Records `r` inside `tx`: a registration made now, or an earlier one
/// with the consents given now (a scope not given keeps what it had, the
/// registration time stays the first).
async fn upsert_registration(
    tx: &tokio_postgres::Transaction<'_>,
    r: &RegistrationRow,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (ia, ie, iw) = consent_params(&r.inquiry);
    let (ta, te, tw) = consent_params(&r.transfer);
    // Each scope's three columns move together: from the new row when it
    // gives that consent, else as they were.
    let keep = |scope: &str, col: &str| {
        format!(
            "{scope}_{col} = CASE WHEN EXCLUDED.{scope}_agreed_dtime IS NULL \
             THEN vbank_registrations.{scope}_{col} ELSE EXCLUDED.{scope}_{col} END"
        )
    };
    let sets: Vec<String> = ["inquiry", "transfer"]
        .into_iter()
        .flat_map(|s| {
            ["agreed_dtime", "expires_at", "withdrawn"]
                .into_iter()
                .map(move |c| keep(s, c))
        })
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO vbank_registrations (user_seq_no, client_id, account, fintech_use_num, \
             registered_dtime, inquiry_agreed_dtime, inquiry_expires_at, inquiry_withdrawn, \
             transfer_agreed_dtime, transfer_expires_at, transfer_withdrawn) \
             VALUES ($1, $2, $3, $4, $5, $6, {}, $8, $9, {}, $11) \
             ON CONFLICT (user_seq_no, client_id, account) DO UPDATE SET \
             fintech_use_num = EXCLUDED.fintech_use_num, {}",
            at_millis(7),
            at_millis(10),
            sets.join(", ")
        ),
        &[
            &r.user_seq_no,
            &r.client_id,
            &r.account,
            &r.fintech_use_num,
            &r.registered_dtime,
            &ia,
            &ie,
            &iw,
            &ta,
            &te,
            &tw,
        ],
    )
    .await?;
    Ok(())
}

impl Cluster {
    /// Registers `c.accounts` of the user with the client and records the
    /// consents given, in one transaction: each account gets the fintech
    /// number its (institution, user, account) already has, or a new one
    /// made by `number` from the next value of the cluster's sequence.
    /// Registrations of the same account racing on several nodes get the
    /// same number (the unique key picks one; the other reads it). The
    /// numbers, in the order of `c.accounts`.
    pub async fn register_consents(
        &self,
        c: &NewConsents<'_>,
        number: impl Fn(i64) -> Option<String> + Send + Sync,
    ) -> Result<Vec<String>> {
        let mut backoff = Duration::from_millis(1);
        for _ in 0..MAX_ATTEMPTS {
            match self.register_once(c, &number).await {
                Ok(nums) => return Ok(nums),
                Err(Attempt::Retry) => {
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "registering accounts kept conflicting with concurrent registrations \
             ({MAX_ATTEMPTS} attempts): nothing was registered"
        )))
    }

    async fn register_once(
        &self,
        c: &NewConsents<'_>,
        number: &(impl Fn(i64) -> Option<String> + Send + Sync),
    ) -> std::result::Result<Vec<String>, Attempt> {
        let mut conn = self.conn().await.map_err(Attempt::Failed)?;
        let tx = conn.transaction().await?;
        // In account order, so two registrations of the same accounts
        // queue rather than deadlock.
        let mut order: Vec<usize> = (0..c.accounts.len()).collect();
        order.sort_by(|a, b| c.accounts[*a].cmp(&c.accounts[*b]));
        let mut nums = vec![String::new(); c.accounts.len()];
        const ISSUED: &str = "SELECT fintech_use_num FROM vbank_fintech_nums \
             WHERE client_use_code = $1 AND user_seq_no = $2 AND account = $3";
        for i in order {
            let account = &c.accounts[i];
            let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&c.client_use_code, &c.user_seq_no, account];
            let num: String = match tx.query_opt(ISSUED, &key).await? {
                Some(row) => row.get(0),
                None => {
                    let seq: i64 = tx
                        .query_one("SELECT nextval('vbank_fintech_seq')", &[])
                        .await?
                        .get(0);
                    let num = number(seq).ok_or_else(|| {
                        Attempt::Failed(Error::Conflict(format!(
                            "no fintech number for sequence value {seq} of {}",
                            c.client_use_code
                        )))
                    })?;
                    // A concurrent registration of the same account may
                    // have issued one meanwhile: the key waits for it and
                    // keeps its number.
                    let inserted = tx
                        .query_opt(
                            "INSERT INTO vbank_fintech_nums (fintech_use_num, seq, \
                             client_use_code, user_seq_no, account) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (client_use_code, user_seq_no, account) DO NOTHING \
                             RETURNING fintech_use_num",
                            &[&num, &seq, &c.client_use_code, &c.user_seq_no, account],
                        )
                        .await?;
                    match inserted {
                        Some(row) => row.get(0),
                        None => tx.query_one(ISSUED, &key).await?.get(0),
                    }
                }
            };
            upsert_registration(
                &tx,
                &RegistrationRow {
                    user_seq_no: c.user_seq_no.to_owned(),
                    client_id: c.client_id.to_owned(),
                    account: account.clone(),
                    fintech_use_num: num.clone(),
                    registered_dtime: c.now_dtime.to_owned(),
                    inquiry: c.inquiry.clone(),
                    transfer: c.transfer.clone(),
                },
            )
            .await?;
            nums[i] = num;
        }
        tx.commit().await?;
        Ok(nums)
    }

    /// Withdraws every consent the user gave `client_id`; how many
    /// registrations had one still given.
    pub async fn unlink_consents(&self, user_seq_no: &str, client_id: &str) -> Result<u64> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE vbank_registrations SET \
                 inquiry_withdrawn = inquiry_withdrawn OR inquiry_withdrawn IS NOT NULL, \
                 transfer_withdrawn = transfer_withdrawn OR transfer_withdrawn IS NOT NULL \
                 WHERE user_seq_no = $1 AND client_id = $2 \
                 AND (inquiry_withdrawn IS FALSE OR transfer_withdrawn IS FALSE)",
                &[&user_seq_no, &client_id],
            )
            .await?)
    }

    /// The fintech numbers of the user's accounts with at least one consent
    /// for `client_id` live at `now_millis` (given, not withdrawn, not
    /// expired), by account.
    pub async fn live_fintech_nums(
        &self,
        user_seq_no: &str,
        client_id: &str,
        now_millis: i64,
    ) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        let now = at_millis(3);
        let rows = conn
            .query(
                &format!(
                    "SELECT fintech_use_num FROM vbank_registrations \
                     WHERE user_seq_no = $1 AND client_id = $2 \
                     AND ((inquiry_withdrawn IS FALSE AND inquiry_expires_at > {now}) \
                       OR (transfer_withdrawn IS FALSE AND transfer_expires_at > {now})) \
                     ORDER BY account"
                ),
                &[&user_seq_no, &client_id, &now_millis],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// What `fintech_use_num` stands for, and the registration of its
    /// user's account with `client_id` (whatever number that registration
    /// names, as the bank's rules read it), if any.
    pub async fn fintech_num(
        &self,
        fintech_use_num: &str,
        client_id: &str,
    ) -> Result<Option<(FintechNum, Option<RegistrationRow>)>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT f.fintech_use_num, f.client_use_code, f.user_seq_no, f.account, \
                     r.user_seq_no IS NOT NULL, {REGISTRATION_COLUMNS} \
                     FROM vbank_fintech_nums f LEFT JOIN vbank_registrations r \
                     ON r.user_seq_no = f.user_seq_no AND r.account = f.account \
                     AND r.client_id = $2 WHERE f.fintech_use_num = $1"
                ),
                &[&fintech_use_num, &client_id],
            )
            .await?;
        Ok(row.map(|row| {
            let link = FintechNum {
                fintech_use_num: row.get(0),
                client_use_code: row.get(1),
                user_seq_no: row.get(2),
                account: row.get(3),
            };
            let registered: bool = row.get(4);
            (link, registered.then(|| registration_row(&row, 5)))
        }))
    }

    /// The account (`bank/num`) `fintech_use_num` stands for, if the
    /// cluster issued it.
    pub async fn fintech_account(&self, fintech_use_num: &str) -> Result<Option<String>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT account FROM vbank_fintech_nums WHERE fintech_use_num = $1",
                &[&fintech_use_num],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Every account the user registered with `client_id`, by account.
    pub async fn registrations(
        &self,
        user_seq_no: &str,
        client_id: &str,
    ) -> Result<Vec<RegistrationRow>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {REGISTRATION_COLUMNS} FROM vbank_registrations r \
                     WHERE r.user_seq_no = $1 AND r.client_id = $2 ORDER BY r.account"
                ),
                &[&user_seq_no, &client_id],
            )
            .await?;
        Ok(rows.iter().map(|r| registration_row(r, 0)).collect())
    }

    /// Withdraws the user's consent of `scope` on `account` for `client_id`
    /// and uses up `key` (as an inquiry id), both or neither, in one
    /// transaction: a key used before, a registration or consent that is
    /// not there, changes nothing.
    pub async fn cancel_consent(
        &self,
        key: &TranKey,
        user_seq_no: &str,
        client_id: &str,
        account: &str,
        scope: Scope,
    ) -> Result<Cancelled> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let fresh = tx
            .execute(
                "INSERT INTO ledger_tran_ids (institution, bank_tran_id, business_date, kind) \
                 VALUES ($1, $2, to_date($3, 'YYYYMMDD'), 'inquiry') ON CONFLICT DO NOTHING",
                &[&key.institution, &key.bank_tran_id, &key.business_date],
            )
            .await?;
        if fresh == 0 {
            tx.rollback().await?;
            return Ok(Cancelled::Duplicate);
        }
        let column = match scope {
            Scope::Inquiry => "inquiry_withdrawn",
            Scope::Transfer => "transfer_withdrawn",
        };
        let withdrawn = tx
            .execute(
                &format!(
                    "UPDATE vbank_registrations SET {column} = true WHERE user_seq_no = $1 \
                     AND client_id = $2 AND account = $3 AND {column} IS FALSE"
                ),
                &[&user_seq_no, &client_id, &account],
            )
            .await?;
        if withdrawn == 1 {
            tx.commit().await?;
            return Ok(Cancelled::Done);
        }
        let registered = tx
            .query_opt(
                "SELECT 1 FROM vbank_registrations WHERE user_seq_no = $1 AND client_id = $2 \
                 AND account = $3",
                &[&user_seq_no, &client_id, &account],
            )
            .await?
            .is_some();
        tx.rollback().await?;
        Ok(if registered {
            Cancelled::NoConsent
        } else {
            Cancelled::NotRegistered
        })
    }

    /// Copies the consents a node's bank was seeded with to a cluster that
    /// has none, in one transaction under an advisory lock (nodes starting
    /// at once copy once): `nums` with their sequence values, then
    /// `registrations`; the sequence goes on after the largest value. A
    /// cluster that has issued a number is never seeded again. How many
    /// registrations were copied.
    pub async fn seed_consents(
        &self,
        nums: &[(i64, FintechNum)],
        registrations: &[RegistrationRow],
    ) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEED_LOCK])
            .await?;
        let existing: i64 = tx
            .query_one("SELECT count(*) FROM vbank_fintech_nums", &[])
            .await?
            .get(0);
        if existing > 0 {
            return Ok(0);
        }
        for (seq, n) in nums {
            tx.execute(
                "INSERT INTO vbank_fintech_nums (fintech_use_num, seq, client_use_code, \
                 user_seq_no, account) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &n.fintech_use_num,
                    seq,
                    &n.client_use_code,
                    &n.user_seq_no,
                    &n.account,
                ],
            )
            .await?;
        }
        if let Some(last) = nums.iter().map(|(seq, _)| *seq).max() {
            tx.execute("SELECT setval('vbank_fintech_seq', $1)", &[&last])
                .await?;
        }
        let mut copied = 0;
        for r in registrations {
            upsert_registration(&tx, r).await?;
            copied += 1;
        }
        tx.commit().await?;
        Ok(copied)
    }
}
