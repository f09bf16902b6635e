//! The virtual bank on a cluster: its money and its consents in the
//! PostgreSQL database that every node shares (`[store] url`), so that a
//! transfer booked through one node is booked once for all of them, and a
//! consent given (or withdrawn) through one node is the one every node
//! decides by.
//!
//! What moves money or consumes a `bank_tran_id` goes to the cluster:
//! withdraw, deposit, transfer-result, cancel-account, and the balance and
//! statement reads (their ids, their figures). So do fintech numbers and
//! registrations: the sign-in pages' registrations and unlinks (through
//! [`sfop_core::BankDirectory`]) write them there, and every call that
//! names a fintech number or lists registered accounts reads them there
//! first (the database away, the call fails with `A0002`, never decided
//! from a node's stale copy). The rest of who may do what (users,
//! institutions, account ownership and states, per-transfer limits) is
//! decided from the node's own bank, which every node seeds identically,
//! as the embedded bank decides it; the cluster then decides what needs the
//! shared state (duplicates, daily and monthly limits, funds) in one
//! SERIALIZABLE transaction
//! (docs/adr/0030-ledger-and-accounts-on-postgresql.md).

use sfop_core::ledger::{
    Balance, BankAnswer, BankCall, BankError, ConsentScope, DepositRequest, Direction, HistoryPage,
    HistoryQuery, InoutFilter, Posting, RealName, RealNameQuery, ReceiveCheck, ReceiveQuery,
    Recipient, Refusal, RegisteredAccount, RemitQuery, ResultQuery, SortOrder, TransferKind,
    TransferReceipt, UserInfo, WithdrawRequest, codes,
};
use sfop_core::{Bank, BankBackend, Claims};
use sfop_store_pg::{
    BankOutcome, BankTransfer, Cancelled, Cluster, ConsentRow, FintechNum, NewConsents,
    RegistrationRow, Scope, SeedAccount, TranKey, Usage,
};

use super::{
    Consents, Ctx, OrBackend, Paging, R, Transfer, bank_codes, check_tran_id, not_found, party,
    refuse,
};
use crate::faults::AccountBanks;
use crate::model::{Account, Consent, FintechLink, Registration, mask_account_num};
use crate::{VirtualBank, secret};

/// The virtual bank with its ledger and consents on the cluster. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct ClusterBank {
    pub(crate) bank: VirtualBank,
    pub(crate) cluster: Cluster,
    /// The changes to the bank's records this node applies in the
    /// cluster's order (`crate::changes`).
    pub(crate) changes: std::sync::Arc<crate::changes::Applier>,
}

/// What the cluster holds for the fintech number a call names: what it
/// stands for, and the registration of its account with the caller's
/// client. Read before the bank's rules run, which see nothing else: any
/// other number or registration is unknown to them (refused).
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    link: Option<(String, FintechLink)>,
    /// Keyed by user, client and account.
    registration: Option<((String, String, String), Registration)>,
}

impl Consents for Fetched {
    fn link(&self, fintech_use_num: &str) -> R<Option<FintechLink>> {
        Ok(self
            .link
            .as_ref()
            .filter(|(num, _)| num == fintech_use_num)
            .map(|(_, link)| link.clone()))
    }

    fn registration(&self, user: &str, client_id: &str, account: &str) -> R<Option<Registration>> {
        Ok(self
            .registration
            .as_ref()
            .filter(|((u, c, a), _)| u == user && c == client_id && a == account)
            .map(|(_, r)| r.clone()))
    }
}

fn consent_of(row: ConsentRow) -> Consent {
    Consent {
        agreed_dtime: row.agreed_dtime,
        expires_millis: u64::try_from(row.expires_millis).unwrap_or(0),
        withdrawn: row.withdrawn,
    }
}

fn consent_row(c: &Consent) -> ConsentRow {
    ConsentRow {
        agreed_dtime: c.agreed_dtime.clone(),
        expires_millis: i64::try_from(c.expires_millis).unwrap_or(i64::MAX),
        withdrawn: c.withdrawn,
    }
}

fn registration_of(row: RegistrationRow) -> Registration {
    Registration {
        fintech_use_num: row.fintech_use_num,
        registered_dtime: row.registered_dtime,
        inquiry: row.inquiry.map(consent_of),
        transfer: row.transfer.map(consent_of),
    }
}

/// The cluster's consents cannot be read or written (`A0002`): nothing
/// was decided, nothing was done.
fn consents_unavailable(e: &sfop_store_pg::Error) -> BankError {
    tracing::error!(error = %e, "virtual bank: the cluster's consents failed");
    BankError::Backend(
        "the bank's consent records are unreachable: nothing was done; send it again".into(),
    )
}

/// A cluster failure, as the plugin sees it (`A0002`): the platform's, not
/// the caller's. A transfer cut at its commit may have been booked, so the
/// answer says how to find out rather than that nothing happened.
fn unavailable(e: &sfop_store_pg::Error) -> BankError {
    tracing::error!(error = %e, "virtual bank: the cluster ledger failed");
    BankError::Backend(
        "the bank's ledger is unreachable: send it again with the same bank_tran_id (it is \
         never booked twice) or ask transfer-result"
            .into(),
    )
}

fn duplicate<T>() -> R<T> {
    refuse(
        codes::DUPLICATE_BANK_TRAN_ID,
        "bank_tran_id: already used today",
    )
}

fn to_json<T: serde::Serialize>(value: &T) -> R<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "virtual bank: encoding an answer");
        BankError::Backend("virtual bank answer could not be recorded".into())
    })
}

fn refusal_of(answer: serde_json::Value) -> BankError {
    match serde_json::from_value::<Refusal>(answer) {
        Ok(refusal) => refusal.into(),
        Err(e) => {
            tracing::error!(error = %e, "virtual bank: a recorded refusal does not decode");
            BankError::Backend("virtual bank record unreadable".into())
        }
    }
}

/// What a checked transfer comes to before the cluster sees it.
enum Plan {
    /// Refused by the node's own rules; recorded under its id.
    Refuse {
        key: TranKey,
        kind: &'static str,
        amount: i64,
        refusal: Box<Refusal>,
    },
    /// To book, with the receipt it gets.
    Book {
        transfer: Box<BankTransfer>,
        receipt: Box<TransferReceipt>,
    },
}

/// `bank_tran_id` of `institution` on the call's business date.
fn tran_key(ctx: &Ctx<'_>, institution: &str, bank_tran_id: &str) -> TranKey {
    TranKey {
        institution: institution.to_owned(),
        bank_tran_id: bank_tran_id.to_owned(),
        business_date: ctx.date().to_owned(),
    }
}

fn kind_name(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Withdraw => "withdraw",
        TransferKind::Deposit => "deposit",
    }
}

impl ClusterBank {
    /// The bank over `bank` (the node's own: users, institutions, accounts)
    /// with its money and consents on `cluster`. The first node to start on
    /// an empty ledger opens every account of its seeded bank there with
    /// its balance, and copies its seeded fintech numbers and consents to a
    /// cluster that has none; every other start finds them (nodes starting
    /// at once seed once).
    pub async fn open(bank: VirtualBank, cluster: Cluster) -> crate::Result<Self> {
        let mut seed = Vec::new();
        for entry in bank.t.accounts.prefix_json::<Account>("") {
            let (id, a) = entry?;
            seed.push(SeedAccount {
                id,
                bank_code: a.bank_code,
                holder_name: a.holder_name,
                balance: a.balance,
                overdraft_limit: i64::try_from(a.overdraft_limit).unwrap_or(i64::MAX),
            });
        }
        let opened = cluster.seed_accounts(&seed).await?;
        if opened > 0 {
            tracing::info!(accounts = opened, "virtual bank: the cluster ledger seeded");
        }
        let (nums, registrations) = seeded_consents(&bank)?;
        let copied = cluster.seed_consents(&nums, &registrations).await?;
        if copied > 0 {
            tracing::info!(
                registrations = copied,
                "virtual bank: the cluster's consents seeded"
            );
        }
        let bank = Self {
            bank,
            cluster,
            changes: Default::default(),
        };
        // A node (re)starting applies what changed while it was away
        // before it serves.
        bank.catch_up(None).await?;
        Ok(bank)
    }

    /// The node's own bank (users, institutions, accounts). Its consents
    /// are the seed's only: the cluster's are what this bank decides by.
    pub fn local(&self) -> &VirtualBank {
        &self.bank
    }

    /// [`VirtualBank::register_accounts`] on the cluster: the user and the
    /// accounts checked in the node's bank, the numbers and consents
    /// recorded in the cluster's database (one transaction), so that every
    /// node knows them when this returns.
    pub async fn register_accounts(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
        now_millis: u64,
    ) -> crate::Result<Vec<String>> {
        self.bank
            .check_registration(user_seq_no, client_id, client_use_code)?;
        self.bank.check_registrable(user_seq_no, account_ids)?;
        let (now, inquiry, transfer) = VirtualBank::consents_given(scopes, now_millis);
        let code = client_use_code.to_owned();
        let nums = self
            .cluster
            .register_consents(
                &NewConsents {
                    user_seq_no,
                    client_id,
                    client_use_code,
                    accounts: account_ids,
                    now_dtime: &now,
                    inquiry: inquiry.as_ref().map(consent_row),
                    transfer: transfer.as_ref().map(consent_row),
                },
                move |seq| {
                    u64::try_from(seq)
                        .ok()
                        .and_then(|seq| secret::fintech_use_num(&code, seq))
                },
            )
            .await?;
        Ok(nums)
    }

    /// [`VirtualBank::unlink`] on the cluster: every consent of the user
    /// for `client_id` withdrawn for every node; how many registrations had
    /// one.
    pub async fn unlink(&self, user_seq_no: &str, client_id: &str) -> crate::Result<u64> {
        Ok(self.cluster.unlink_consents(user_seq_no, client_id).await?)
    }

    /// [`VirtualBank::fintech_use_nums`] on the cluster.
    pub async fn fintech_use_nums(
        &self,
        user_seq_no: &str,
        client_id: &str,
        now_millis: u64,
    ) -> crate::Result<Vec<String>> {
        let now = i64::try_from(now_millis).unwrap_or(i64::MAX);
        Ok(self
            .cluster
            .live_fintech_nums(user_seq_no, client_id, now)
            .await?)
    }

    /// What the cluster holds of `fintech_use_num` for `caller`'s client.
    /// Nothing is asked for a call without a verified caller or for a
    /// number the bank never issues (its rules refuse both).
    async fn fetched(&self, caller: Option<&Claims>, fintech_use_num: &str) -> R<Fetched> {
        let Some(caller) = caller else {
            return Ok(Fetched::default());
        };
        if !secret::fintech_num_well_formed(fintech_use_num) {
            return Ok(Fetched::default());
        }
        let found = self
            .cluster
            .fintech_num(fintech_use_num, &caller.client_id)
            .await
            .map_err(|e| consents_unavailable(&e))?;
        let Some((num, registration)) = found else {
            return Ok(Fetched::default());
        };
        let FintechNum {
            fintech_use_num,
            client_use_code,
            user_seq_no,
            account,
        } = num;
        Ok(Fetched {
            registration: registration.map(|r| {
                let key = (
                    r.user_seq_no.clone(),
                    r.client_id.clone(),
                    r.account.clone(),
                );
                (key, registration_of(r))
            }),
            link: Some((
                fintech_use_num,
                FintechLink {
                    user_seq_no,
                    account,
                    client_use_code,
                },
            )),
        })
    }

    /// The fintech number a deposit or recipient check names, if any.
    async fn recipient(&self, caller: Option<&Claims>, recipient: &Recipient) -> R<Fetched> {
        match recipient {
            Recipient::FintechUseNum(num) => self.fetched(caller, num).await,
            Recipient::Account(..) => Ok(Fetched::default()),
        }
    }

    /// The caller's user's registered accounts, from the cluster.
    async fn registered(
        &self,
        ctx: &Ctx<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        let user = VirtualBank::own_user(ctx, user_seq_no)?;
        let rows = self
            .cluster
            .registrations(user, &ctx.caller.client_id)
            .await
            .map_err(|e| consents_unavailable(&e))?;
        let registered = rows
            .into_iter()
            .map(|r| (r.account.clone(), registration_of(r)))
            .collect();
        self.bank
            .registered_list(ctx, registered, include_cancelled)
    }

    /// The cluster the money is on.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Uses up `bank_tran_id` for an inquiry on every node.
    async fn consume(&self, ctx: &Ctx<'_>, institution: &str, bank_tran_id: &str) -> R<()> {
        let fresh = self
            .cluster
            .consume_tran_id(&tran_key(ctx, institution, bank_tran_id))
            .await
            .map_err(|e| unavailable(&e))?;
        if fresh { Ok(()) } else { duplicate() }
    }

    /// Books or records what `plan` says.
    async fn execute(&self, plan: Plan) -> R<TransferReceipt> {
        match plan {
            Plan::Refuse {
                key,
                kind,
                amount,
                refusal,
            } => {
                let recorded = self
                    .cluster
                    .record_refusal(&key, kind, amount, &to_json(&refusal)?)
                    .await
                    .map_err(|e| unavailable(&e))?;
                if recorded {
                    Err(BankError::Refused(refusal))
                } else {
                    duplicate()
                }
            }
            Plan::Book { transfer, receipt } => {
                let user_limit = transfer.kind == "withdraw";
                match self
                    .cluster
                    .bank_transfer(*transfer)
                    .await
                    .map_err(|e| unavailable(&e))?
                {
                    BankOutcome::Booked { remaining, .. } => Ok(TransferReceipt {
                        wd_limit_remain_amt: remaining_of(user_limit, &remaining),
                        ..*receipt
                    }),
                    BankOutcome::Refused(answer) => Err(refusal_of(answer)),
                    BankOutcome::Duplicate => duplicate(),
                }
            }
        }
    }

    /// One page of `account_id`'s postings on the cluster.
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        account_id: &str,
        account: &Account,
        filter: InoutFilter,
        period: (&str, &str),
        order: SortOrder,
        cursor: Option<&str>,
        page_size: u32,
    ) -> R<HistoryPage> {
        let paging = Paging::new(period, order, cursor, page_size)?;
        let dir = match filter {
            InoutFilter::All => sfop_store_pg::Direction::All,
            InoutFilter::Deposits => sfop_store_pg::Direction::In,
            InoutFilter::Withdrawals => sfop_store_pg::Direction::Out,
        };
        let rows = self
            .cluster
            .postings(account_id, period, dir, paging.reverse)
            .await
            .map_err(|e| unavailable(&e))?;
        let balance = self
            .cluster
            .account(account_id)
            .await
            .map_err(|e| unavailable(&e))?
            .map_or(account.balance, |a| a.balance);
        let page = paging.page(
            rows.into_iter().map(Ok),
            |p| u64::try_from(p.seq).unwrap_or(0),
            to_posting,
        )?;
        self.bank
            .history_page(ctx, bank_tran_id, account, balance, page)
    }

    /// The account behind a user's fintech number, checked for an inquiry
    /// with its id consumed on the cluster.
    async fn inquired(
        &self,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> R<(String, String, Account)> {
        let fetched = self.fetched(Some(ctx.caller), fintech_use_num).await?;
        let (key, bank_code) =
            self.bank
                .inquiry_link(&fetched, ctx, bank_tran_id, fintech_use_num)?;
        self.consume(ctx, ctx.institution()?, bank_tran_id).await?;
        let account = self
            .bank
            .inquired_account(ctx, bank_tran_id, &bank_code, &key)?;
        Ok((key, bank_code, account))
    }
}

/// The fintech numbers (with their sequence values) and registrations of
/// the node's seeded bank, for a cluster that has none yet.
type SeededConsents = (Vec<(i64, FintechNum)>, Vec<RegistrationRow>);

fn seeded_consents(bank: &VirtualBank) -> crate::Result<SeededConsents> {
    let mut nums = Vec::new();
    for entry in bank.t.fintech.prefix_json::<FintechLink>("") {
        let (num, link) = entry?;
        let seq = secret::fintech_seq(&num)
            .and_then(|s| i64::try_from(s).ok())
            .ok_or_else(|| crate::Error::Invalid(format!("fintech number {num:?} is malformed")))?;
        nums.push((
            seq,
            FintechNum {
                fintech_use_num: num,
                client_use_code: link.client_use_code,
                user_seq_no: link.user_seq_no,
                account: link.account,
            },
        ));
    }
    let mut registrations = Vec::new();
    for entry in bank.t.registrations.prefix_json::<Registration>("") {
        let (key, reg) = entry?;
        let mut parts = key.splitn(3, '/');
        let (Some(user), Some(client), Some(account)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(crate::Error::Invalid(format!(
                "registration {key:?} is malformed"
            )));
        };
        registrations.push(RegistrationRow {
            user_seq_no: user.to_owned(),
            client_id: client.to_owned(),
            account: account.to_owned(),
            fintech_use_num: reg.fintech_use_num,
            registered_dtime: reg.registered_dtime,
            inquiry: reg.inquiry.as_ref().map(consent_row),
            transfer: reg.transfer.as_ref().map(consent_row),
        });
    }
    Ok((nums, registrations))
}

/// `YYYYMMDD` naming a real day: the cluster's `to_date` fails on any
/// other (an error that is the caller's, not the ledger's).
fn business_date(yyyymmdd: &str) -> bool {
    let part = |r: std::ops::Range<usize>| yyyymmdd.get(r);
    match (yyyymmdd.len(), part(0..4), part(4..6), part(6..8)) {
        (8, Some(y), Some(m), Some(d)) => {
            sfop_core::time::Date::parse(&format!("{y}-{m}-{d}")).is_some()
        }
        _ => false,
    }
}

fn remaining_of(user_limit: bool, remaining: &[i64]) -> Option<u64> {
    if !user_limit {
        return None;
    }
    remaining.first().map(|r| u64::try_from(*r).unwrap_or(0))
}

fn to_posting(p: sfop_store_pg::PostingRow) -> Posting {
    let counterparty_num = p
        .counterparty
        .split_once('/')
        .map_or("", |(_, num)| num)
        .to_owned();
    Posting {
        tran_date: p.dtime.get(..8).unwrap_or_default().to_owned(),
        tran_time: p.dtime.get(8..14).unwrap_or_default().to_owned(),
        direction: if p.amount > 0 {
            Direction::Deposit
        } else {
            Direction::Withdrawal
        },
        tran_type: p.tran_type,
        print_content: p.print_content,
        tran_amt: p.amount.unsigned_abs(),
        after_balance_amt: p.after_balance,
        branch_name: p.branch,
        counterparty_name: p.counterparty_name,
        counterparty_bank_code: p.counterparty_bank,
        counterparty_account_num_masked: mask_account_num(&counterparty_num),
    }
}

impl VirtualBank {
    /// What the cluster is to do with a checked transfer: the node's own
    /// rules refuse it (recorded), or it goes to the cluster with every
    /// answer it may get there. Mirrors `decide`, without what needs the
    /// shared state (funds, daily and monthly usage).
    fn plan(&self, ctx: &Ctx<'_>, t: Transfer<'_>) -> R<Plan> {
        let answer_bank = t.answer_bank();
        let key = tran_key(ctx, t.institution, t.bank_tran_id);
        let kind = kind_name(t.kind);
        let amount = i64::try_from(t.tran_amt).unwrap_or(i64::MAX);
        let refused = |refusal: Refusal| {
            Ok(Plan::Refuse {
                key: key.clone(),
                kind,
                amount,
                refusal: Box::new(refusal),
            })
        };
        let no = |why| refused(ctx.bank_refusal(t.bank_tran_id, answer_bank, why));
        let Some(wd) = self.account(t.wd_key)? else {
            return no(bank_codes::NO_ACCOUNT);
        };
        let Some(dps) = self.account(t.dps_key)? else {
            return no(bank_codes::NO_ACCOUNT);
        };
        if let Some(why) = t.refused_between(&wd, &dps) {
            return no(why);
        }
        let exceeded =
            |code: &str, what: &str| refused(Refusal::new(code, format!("{what} exceeded")));
        let limit = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let amt = t.tran_amt;
        let mut usage = Vec::new();
        if let Some(user) = t.user {
            if amt > user.wd_per_tran {
                return exceeded(
                    codes::USER_WD_PER_TRAN,
                    "the user's per-transaction withdrawal limit",
                );
            }
            usage.push(Usage {
                key: format!("uwd/{}/{}/{}", t.institution, user.user_seq_no, ctx.date()),
                limit: limit(user.wd_daily),
                refusal: to_json(&Refusal::new(
                    codes::USER_WD_DAILY,
                    "the user's daily withdrawal limit exceeded",
                ))?,
            });
        }
        let (limits, tag, codes3) = t.inst_limits();
        if amt > limits.per_tran {
            return exceeded(codes3[0], "the institution's per-transaction limit");
        }
        usage.push(Usage {
            key: format!("{tag}/{}/{}", t.institution, ctx.date()),
            limit: limit(limits.daily),
            refusal: to_json(&Refusal::new(
                codes3[1],
                "the institution's daily limit exceeded",
            ))?,
        });
        usage.push(Usage {
            key: format!("{tag}m/{}/{}", t.institution, &ctx.now[..6]),
            limit: limit(limits.monthly),
            refusal: to_json(&Refusal::new(
                codes3[2],
                "the institution's monthly limit exceeded",
            ))?,
        });
        let names = self.bank_names()?;
        let name = |a: &Account| names.get(&a.bank_code).cloned().unwrap_or_default();
        fn fintech(f: &Option<(String, String)>) -> Option<(&str, &str)> {
            f.as_ref().map(|(n, a)| (n.as_str(), a.as_str()))
        }
        let receipt = TransferReceipt {
            answer: ctx.answer(t.bank_tran_id, answer_bank, bank_codes::OK),
            kind: t.kind,
            tran_amt: amt,
            wd: party(name(&wd), &wd, t.wd_print, fintech(&t.wd_fintech)),
            dps: party(name(&dps), &dps, t.dps_print, fintech(&t.dps_fintech)),
            wd_limit_remain_amt: None,
        };
        Ok(Plan::Book {
            transfer: Box::new(BankTransfer {
                key,
                kind,
                from_account: t.wd_key.to_owned(),
                to_account: t.dps_key.to_owned(),
                amount,
                dtime: ctx.now.clone(),
                tran_type: "이체".to_owned(),
                wd_print: t.wd_print.to_owned(),
                dps_print: t.dps_print.to_owned(),
                branch: "오픈뱅킹".to_owned(),
                usage,
                receipt: to_json(&receipt)?,
                insufficient_funds: to_json(&ctx.bank_refusal(
                    t.bank_tran_id,
                    answer_bank,
                    bank_codes::INSUFFICIENT_FUNDS,
                ))?,
                no_account: to_json(&ctx.bank_refusal(
                    t.bank_tran_id,
                    answer_bank,
                    bank_codes::NO_ACCOUNT,
                ))?,
            }),
            receipt: Box::new(receipt),
        })
    }
}

/// The account behind a number is the cluster's record: a number issued
/// through any node has its bank here.
#[async_trait::async_trait]
impl AccountBanks for ClusterBank {
    async fn bank_of_fintech_num(&self, fintech_use_num: &str) -> Option<String> {
        match self.cluster.fintech_account(fintech_use_num).await {
            Ok(account) => account?.split('/').next().map(str::to_owned),
            // No rule matches; the call itself then fails on the same
            // database (A0002).
            Err(e) => {
                tracing::warn!(error = %e, "virtual bank: a fintech number's bank unreadable");
                None
            }
        }
    }
}

/// Reads and decisions that book nothing, consume no id and need no
/// consent run in the node's own bank; the rest as the module says.
#[async_trait::async_trait]
impl BankBackend for ClusterBank {
    async fn bank_status(&self, call: &BankCall<'_>) -> R<Vec<Bank>> {
        VirtualBank::bank_status(&self.bank, call)
    }

    async fn user_info(&self, call: &BankCall<'_>, user_seq_no: &str) -> R<UserInfo> {
        let ctx = Ctx::new(call)?;
        let accounts = self.registered(&ctx, user_seq_no, false).await?;
        self.bank.user_answer(user_seq_no, accounts)
    }

    async fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        let ctx = Ctx::new(call)?;
        self.registered(&ctx, user_seq_no, include_cancelled).await
    }

    async fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> R<Balance> {
        let ctx = Ctx::new(call)?;
        let (account_id, bank_code, account) =
            self.inquired(&ctx, bank_tran_id, fintech_use_num).await?;
        let Some(row) = self
            .cluster
            .account(&account_id)
            .await
            .map_err(|e| unavailable(&e))?
        else {
            return Err(ctx
                .bank_refusal(bank_tran_id, &bank_code, bank_codes::NO_ACCOUNT)
                .into());
        };
        let available = i128::from(row.balance) + i128::from(row.overdraft_limit);
        Ok(Balance {
            answer: ctx.answer(bank_tran_id, &bank_code, bank_codes::OK),
            fintech_use_num: fintech_use_num.to_owned(),
            bank_name: self.bank.bank_name(&bank_code).bank()?,
            balance_amt: row.balance,
            available_amt: u64::try_from(available.max(0)).unwrap_or(u64::MAX),
            account_type: account.account_type,
            product_name: account.product_name,
            account_issue_date: account.issue_date,
            maturity_date: account.maturity_date,
            last_tran_date: row.last_tran_date.or(account.last_tran_date),
        })
    }

    async fn transactions(&self, call: &BankCall<'_>, q: &HistoryQuery) -> R<HistoryPage> {
        let ctx = Ctx::new(call)?;
        let (account_id, _, account) = self
            .inquired(&ctx, &q.bank_tran_id, &q.fintech_use_num)
            .await?;
        self.history(
            &ctx,
            &q.bank_tran_id,
            &account_id,
            &account,
            q.inquiry_type,
            (&q.from_dtime, &q.to_dtime),
            q.sort_order,
            q.cursor.as_deref(),
            q.page_size,
        )
        .await
    }

    async fn remit_list(&self, call: &BankCall<'_>, q: &RemitQuery) -> R<HistoryPage> {
        self.ensure_current()?;
        let ctx = Ctx::new(call)?;
        let key = self.bank.remit_account(&ctx, q)?;
        self.consume(&ctx, ctx.institution()?, &q.bank_tran_id)
            .await?;
        let Some(account) = self.bank.account(&key)? else {
            return Err(ctx
                .bank_refusal(
                    &q.bank_tran_id,
                    &q.account.bank_code_std,
                    bank_codes::NO_ACCOUNT,
                )
                .into());
        };
        self.history(
            &ctx,
            &q.bank_tran_id,
            &key,
            &account,
            InoutFilter::Deposits,
            (&q.from_dtime, &q.to_dtime),
            q.sort_order,
            q.cursor.as_deref(),
            q.page_size,
        )
        .await
    }

    async fn withdraw(&self, call: &BankCall<'_>, r: &WithdrawRequest) -> R<TransferReceipt> {
        self.ensure_current()?;
        let fetched = self.fetched(call.caller, &r.fintech_use_num).await?;
        let plan = self
            .bank
            .with_withdraw(&fetched, call, r, |bank, ctx, t| bank.plan(ctx, t))?;
        self.execute(plan).await
    }

    async fn deposit(&self, call: &BankCall<'_>, r: &DepositRequest) -> R<TransferReceipt> {
        self.ensure_current()?;
        let fetched = self.recipient(call.caller, &r.recipient).await?;
        let plan = self
            .bank
            .with_deposit(&fetched, call, r, |bank, ctx, t| bank.plan(ctx, t))?;
        self.execute(plan).await
    }

    async fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> R<Vec<Result<TransferReceipt, Refusal>>> {
        let ctx = Ctx::new(call)?;
        let institution = ctx.institution()?;
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let not_found = |why| not_found(q, why);
            let record = if business_date(&q.org_bank_tran_date)
                && q.org_bank_tran_id.starts_with(institution)
            {
                self.cluster
                    .tran_record(&TranKey {
                        institution: institution.to_owned(),
                        bank_tran_id: q.org_bank_tran_id.clone(),
                        business_date: q.org_bank_tran_date.clone(),
                    })
                    .await
                    .map_err(|e| unavailable(&e))?
            } else {
                None
            };
            let item = match record {
                Some(r) if r.kind == kind_name(q.kind) => {
                    let amount = r.amount.and_then(|a| u64::try_from(a).ok());
                    match (amount, r.answer) {
                        (Some(a), _) if a != q.org_tran_amt => {
                            Err(not_found(bank_codes::AMOUNT_MISMATCH))
                        }
                        (_, Some(answer)) if r.booked => {
                            match serde_json::from_value::<TransferReceipt>(answer) {
                                Ok(receipt) => Ok(TransferReceipt {
                                    wd_limit_remain_amt: remaining_of(
                                        q.kind == TransferKind::Withdraw,
                                        &r.remaining,
                                    ),
                                    ..receipt
                                }),
                                Err(e) => {
                                    tracing::error!(error = %e, "virtual bank: a receipt does not decode");
                                    return Err(BankError::Backend(
                                        "virtual bank record unreadable".into(),
                                    ));
                                }
                            }
                        }
                        (_, Some(answer)) => match refusal_of(answer) {
                            BankError::Refused(refusal) => Err(*refusal),
                            other => return Err(other),
                        },
                        (_, None) => Err(not_found(bank_codes::NO_ORIGINAL)),
                    }
                }
                _ => Err(not_found(bank_codes::NO_ORIGINAL)),
            };
            out.push(item);
        }
        Ok(out)
    }

    /// Checked by the node's bank, the id used up on the cluster (a repeat
    /// through any node is `A0326`), answered by the node's bank.
    async fn real_name(&self, call: &BankCall<'_>, q: &RealNameQuery) -> R<RealName> {
        let ctx = self.bank.real_name_checked(call, q)?;
        self.consume(&ctx, ctx.institution()?, &q.bank_tran_id)
            .await?;
        self.bank.real_name_answer(&ctx, q)
    }

    /// As [`Self::real_name`], the recipient's number read from the
    /// cluster.
    async fn receive(&self, call: &BankCall<'_>, q: &ReceiveQuery) -> R<ReceiveCheck> {
        self.ensure_current()?;
        let fetched = self.recipient(call.caller, &q.recipient).await?;
        let (ctx, checked) = self.bank.receive_checked(&fetched, call, q)?;
        self.consume(&ctx, ctx.institution()?, &q.bank_tran_id)
            .await?;
        self.bank.receive_answer(&ctx, q, checked)
    }

    /// The consent withdrawn and the id used up on the cluster, together.
    async fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> R<BankAnswer> {
        let ctx = Ctx::new(call)?;
        let (institution, user) = (ctx.institution()?, ctx.user()?);
        check_tran_id(bank_tran_id, institution)?;
        let fetched = self.fetched(Some(ctx.caller), fintech_use_num).await?;
        let link = VirtualBank::owned_link(&fetched, fintech_use_num, user, institution)?;
        let (missing, which) = match scope {
            ConsentScope::Inquiry => (codes::INQUIRY_CONSENT_MISSING, Scope::Inquiry),
            ConsentScope::Transfer => (codes::TRANSFER_CONSENT_MISSING, Scope::Transfer),
        };
        let outcome = self
            .cluster
            .cancel_consent(
                &tran_key(&ctx, institution, bank_tran_id),
                user,
                &ctx.caller.client_id,
                &link.account,
                which,
            )
            .await
            .map_err(|e| consents_unavailable(&e))?;
        match outcome {
            Cancelled::Done => Ok(ctx.answer(
                bank_tran_id,
                VirtualBank::bank_code_of(&link.account),
                bank_codes::OK,
            )),
            Cancelled::Duplicate => duplicate(),
            Cancelled::NotRegistered => {
                refuse(missing, "the account is not registered with this client")
            }
            Cancelled::NoConsent => {
                refuse(missing, format!("no {} consent to cancel", scope.as_str()))
            }
        }
    }
}
