//! The virtual bank: sfop's embedded default bank backend, kept in a
//! journal of its own (trees in memory, an append-only log on disk; ADR
//! 0031), that plugins reach through the `ledger` capability.
//!
//! It behaves like a set of participant banks rather than a fixture table:
//! users, accounts and products; a double-entry ledger (every transfer books
//! a withdrawal posting on one account and a deposit posting on another, so
//! the sum of all balances never changes after the opening balances);
//! per-transaction, daily and monthly limits; consents per user, account,
//! client and scope with expiry; fintech numbers per user, account and
//! institution; an outage switch per bank. `bank_tran_id` is the idempotency
//! key of every money movement, and a transfer is answered only once it is
//! durable (the journal's flush). See `docs/adr/0005-virtual-bank.md`.
//!
//! A fresh store is seeded (see [`seed`] and the README); after that the
//! stored state is the truth.
//!
//! # For the OAuth server
//! The sign-in and consent pages use four calls, none of which go through a
//! plugin:
//! - [`VirtualBank::authenticate`]`(login_id, password)`: the user's
//!   `user_seq_no` when the password is right.
//! - [`VirtualBank::accounts_of`]`(user_seq_no)`: the accounts to offer on
//!   the consent page (bank, masked number, alias, type); pass their `id`s
//!   back to `register_accounts`.
//! - [`VirtualBank::register_accounts`]`(user_seq_no, client_id,
//!   client_use_code, account_ids, scopes, now_millis)`: records consent for
//!   the `inquiry`/`transfer` scopes among `scopes` (others are ignored) for
//!   one year, issues or reuses each account's fintech number for the
//!   institution, and returns them in the order of `account_ids`.
//! - [`VirtualBank::unlink`]`(user_seq_no, client_id)`: withdraws every
//!   consent of that user for that client (`POST /v2.0/user/unlink`).
//!
//! [`VirtualBank::fintech_use_nums`] gives the numbers with a live consent,
//! for a token's `fintech_use_nums` claim; [`VirtualBank::user`] the name
//! and CI for the consent page. On a cluster, [`ClusterBank`]'s
//! `register_accounts`, `unlink` and `fintech_use_nums` (and its
//! `sfop_core::BankDirectory`) keep them in the cluster's database instead,
//! where every node reads them (docs/adr/0030).
//!
//! What the bank needs in the verified claims (`sfop_core::Claims`) of
//! every call: `client_id` (consents are per client), `client_use_code`
//! (also in user tokens: `bank_tran_id` prefixes, fintech numbers and limits
//! are per institution) and, for user APIs, `user_seq_no`. The bank decides
//! from its own records, so `fintech_use_nums` is informational and `scopes`
//! are the gateway's to check against the manifest.

mod changes;
mod commit;
mod directory;
pub mod faults;
mod institutions;
mod model;
mod ops;
mod secret;
pub mod seed;

use std::sync::{Arc, Mutex, MutexGuard};

pub use changes::{Applied, BankChange};
pub use commit::CommitStats;
pub use directory::DIRECTORY_BLOCKING;
pub use institutions::{ContractAccount, InstitutionView, NewInstitution};
use model::{
    Account, Consent, FintechLink, Institution, Registration, StoredBank, StoredPosting, User,
    account_key,
};
pub use model::{AccountState, InstitutionState, Limits, Owner, mask_account_num};
pub use ops::cluster::ClusterBank;
use sfop_core::Bank;
use sfop_store::{Abort, Journal, Store, Tree, TxError};

/// Why a virtual-bank operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] sfop_store::Error),
    /// The cluster's ledger (`[store] url`) failed.
    #[error(transparent)]
    Cluster(#[from] sfop_store_pg::Error),
    #[error("no participant bank with code {0:?}")]
    UnknownBank(String),
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("no account {0:?}")]
    UnknownAccount(String),
    #[error("no institution {0:?}")]
    UnknownInstitution(String),
    #[error("account {account:?} is not {user:?}'s")]
    NotTheirs { account: String, user: String },
    #[error("{0}")]
    Invalid(String),
    /// The records' state does not allow it (an institution resumed that
    /// is not suspended); the message names the field.
    #[error("{0}")]
    Conflict(String),
    /// This node failed to do it (not the caller's fault).
    #[error("{0}")]
    Failed(String),
}

impl From<TxError<Error>> for Error {
    fn from(e: TxError<Error>) -> Self {
        match e {
            TxError::Abort(e) => e,
            TxError::Store(e) => Error::Store(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `work` (which reads and writes the store, and may flush it) on
/// tokio's blocking pool, never on an async worker; a panic there is this
/// node's failure ([`Error::Failed`]).
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "virtual bank: an operation failed on the blocking pool");
        Error::Failed(format!("an operation failed on the blocking pool: {e}"))
    })?
}

/// The participant banks a fresh virtual bank starts with: standard bank
/// codes and names as the reference platform lists them.
pub const SEED_BANKS: &[(&str, &str)] = &[
    ("002", "산업은행"),
    ("003", "기업은행"),
    ("004", "국민은행"),
    ("011", "농협은행"),
    ("020", "우리은행"),
    ("081", "하나은행"),
    ("088", "신한은행"),
    ("097", "오픈은행"),
];

/// The trees of the virtual bank, in its journal.
#[derive(Debug, Clone)]
pub(crate) struct Trees {
    pub banks: Tree,
    pub meta: Tree,
    pub institutions: Tree,
    pub users: Tree,
    pub logins: Tree,
    pub accounts: Tree,
    pub postings: Tree,
    pub fintech: Tree,
    /// `client_use_code/user/bank/num` → fintech number.
    pub fintech_by_owner: Tree,
    pub registrations: Tree,
    pub tranids: Tree,
    pub usage: Tree,
}

/// The virtual bank over an open [`Store`]. Cheap to clone; clones share
/// the store and the writer lock.
#[derive(Debug, Clone)]
pub struct VirtualBank {
    /// The bank's books: trees in memory, changes appended to a log that
    /// a flush makes durable (ADR 0031).
    store: Journal,
    t: Trees,
    /// Serialises writers: every decision that moves money or consumes a
    /// `bank_tran_id` reads and writes under it, so concurrent requests
    /// never decide on the same state twice.
    writer: Arc<Mutex<()>>,
    /// Makes the answers of the async backend durable, many per flush.
    commit: Arc<commit::GroupCommit>,
}

/// An account offered on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Pass back to [`VirtualBank::register_accounts`].
    pub id: String,
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_alias: String,
    /// KFTC account type: `1` demand deposit, `2` savings.
    pub account_type: String,
    pub product_name: String,
}

/// A user as the consent page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub user_seq_no: String,
    pub user_ci: String,
    pub user_name: String,
}

/// A new customer.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    /// `YYMMDD`.
    pub birth_date: String,
    pub login_id: String,
    pub password: String,
    /// Withdrawal limits through the platform.
    pub wd_per_tran: u64,
    pub wd_daily: u64,
}

/// A new account, opened with `opening_balance` moved from its bank's
/// treasury account (so the ledger stays balanced).
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub bank_code: String,
    pub account_num: String,
    pub owner: Owner,
    pub holder_name: String,
    pub holder_info: String,
    pub alias: String,
    pub product_name: String,
    pub account_type: String,
    pub maturity_date: Option<String>,
    pub overdraft_limit: u64,
    pub opening_balance: u64,
}

/// One line of an account's statement, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub seq: u64,
    pub dtime: String,
    /// `true` for money in.
    pub deposit: bool,
    pub amount: u64,
    pub after_balance: i64,
    pub print_content: String,
    pub bank_tran_id: Option<String>,
}

/// The account number of each bank's treasury account, where opening
/// balances come from.
pub const TREASURY_ACCOUNT_NUM: &str = "9000000000001";

/// How much each bank's treasury holds at genesis.
pub const TREASURY_CAPITAL: u64 = 10_000_000_000_000;

impl VirtualBank {
    /// Opens the virtual bank in `store`, seeding it if it is new.
    pub fn open(store: &Store) -> Result<Self> {
        let journal = store.journal("vbank")?;
        let tree = |name: &str| journal.tree(name);
        let bank = Self {
            store: journal.clone(),
            t: Trees {
                banks: tree("banks")?,
                meta: tree("meta")?,
                institutions: tree("institutions")?,
                users: tree("users")?,
                logins: tree("logins")?,
                accounts: tree("accounts")?,
                postings: tree("postings")?,
                fintech: tree("fintech")?,
                fintech_by_owner: tree("fintech_by_owner")?,
                registrations: tree("registrations")?,
                tranids: tree("tranids")?,
                usage: tree("usage")?,
            },
            writer: Arc::new(Mutex::new(())),
            commit: Arc::new(commit::GroupCommit::new(journal.clone())),
        };
        seed::ensure(&bank, sfop_core::time::now_millis())?;
        Ok(bank)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded state lives in the journal, not behind the lock: a panic
        // while holding it leaves nothing half-written in memory.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Runs `booking` on the commit thread (with its own copy of `call`) and
    /// answers its outcome once it is on disk, without holding a thread
    /// meanwhile (group commit: one flush for every booking waiting).
    pub(crate) async fn booked<T: Send + 'static>(
        &self,
        call: &sfop_core::BankCall<'_>,
        booking: impl FnOnce(
            &VirtualBank,
            &sfop_core::BankCall<'_>,
        ) -> std::result::Result<T, sfop_core::BankError>
        + Send
        + 'static,
    ) -> std::result::Result<T, sfop_core::BankError> {
        let bank = self.clone();
        let caller = call.caller.cloned();
        let (now_millis, utc_offset_minutes) = (call.now_millis, call.utc_offset_minutes);
        self.commit
            .book(move || {
                let call = sfop_core::BankCall {
                    caller: caller.as_ref(),
                    now_millis,
                    utc_offset_minutes,
                };
                booking(&bank, &call)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "virtual bank: flush failed");
                sfop_core::BankError::Backend("virtual bank store failed".into())
            })?
    }

    /// Flushes made by the group commit, and the answers they made durable.
    pub fn commit_stats(&self) -> CommitStats {
        self.commit.stats()
    }

    /// Takes a bank down (`false`, an outage) or brings it back.
    pub fn set_available(&self, code: &str, available: bool) -> Result<()> {
        let _w = self.lock();
        let mut bank: StoredBank = self
            .t
            .banks
            .get_json(code)?
            .ok_or_else(|| Error::UnknownBank(code.to_owned()))?;
        bank.available = available;
        self.t.banks.insert_json(code, &bank)?;
        self.flush()
    }

    /// Every participant bank, by code.
    pub fn banks(&self) -> Result<Vec<Bank>> {
        Ok(self
            .t
            .banks
            .values_json::<StoredBank>()?
            .into_iter()
            .map(|(code, b)| Bank {
                code,
                name: b.name,
                available: b.available,
            })
            .collect())
    }

    pub(crate) fn bank_name(&self, code: &str) -> Result<String> {
        Ok(self
            .t
            .banks
            .get_json::<StoredBank>(code)?
            .map(|b| b.name)
            .unwrap_or_default())
    }

    // ---- For the OAuth server ----------------------------------------

    /// The `user_seq_no` of the user signing in, if the password is right.
    pub fn authenticate(&self, login_id: &str, password: &str) -> Result<Option<String>> {
        let user: Option<User> = match self.t.logins.get_json::<String>(login_id)? {
            Some(user_seq_no) => self.t.users.get_json(&user_seq_no)?,
            None => None,
        };
        // An unknown login costs the same hash as a known one: the time of
        // the answer does not say whether the login exists.
        let stored = user
            .as_ref()
            .map_or(secret::dummy_hash(), |u| u.password.as_str());
        let matches = secret::verify_password(password, stored);
        Ok(user.filter(|_| matches).map(|u| u.user_seq_no))
    }

    /// The user's name and CI.
    pub fn user(&self, user_seq_no: &str) -> Result<Option<UserSummary>> {
        Ok(self
            .t
            .users
            .get_json::<User>(user_seq_no)?
            .map(|u| UserSummary {
                user_seq_no: u.user_seq_no,
                user_ci: u.user_ci,
                user_name: u.name,
            }))
    }

    /// The user's accounts that can be registered (not closed), by bank and number.
    pub fn accounts_of(&self, user_seq_no: &str) -> Result<Vec<AccountSummary>> {
        let mut out = Vec::new();
        for entry in self.t.accounts.prefix_json::<Account>("") {
            let (id, a) = entry?;
            if a.owner != Owner::User(user_seq_no.to_owned()) || a.state == AccountState::Closed {
                continue;
            }
            out.push(AccountSummary {
                id,
                bank_name: self.bank_name(&a.bank_code)?,
                bank_code_std: a.bank_code,
                account_num_masked: mask_account_num(&a.account_num),
                account_alias: a.alias,
                account_type: a.account_type,
                product_name: a.product_name,
            });
        }
        Ok(out)
    }

    /// Registers `account_ids` (from [`Self::accounts_of`]) of the user with
    /// client `client_id` of institution `client_use_code`, consenting to the
    /// `inquiry` and `transfer` scopes among `scopes` for one year from
    /// `now_millis`. Returns each account's fintech number, in order: the
    /// same number whenever the same user registers the same account with
    /// the same institution. Durable when it returns.
    pub fn register_accounts(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
        account_ids: &[String],
        scopes: &[String],
        now_millis: u64,
    ) -> Result<Vec<String>> {
        self.check_registration(user_seq_no, client_id, client_use_code)?;
        // Every writer of accounts holds this lock: what is checked under
        // it holds for the transaction.
        let _w = self.lock();
        self.check_registrable(user_seq_no, account_ids)?;
        let (now, inquiry, transfer) = Self::consents_given(scopes, now_millis);
        let t = &self.t;
        let nums = self.store.transaction(
            &[&t.fintech, &t.fintech_by_owner, &t.registrations, &t.meta],
            |tx| {
                let [fintech, by_owner, registrations, meta] = tx else {
                    return Err(Abort::with(Error::Invalid("transaction trees".into())));
                };
                let mut nums = Vec::with_capacity(account_ids.len());
                for id in account_ids {
                    let owner_key = format!("{client_use_code}/{user_seq_no}/{id}");
                    let num = match by_owner.get_json::<String, _>(&owner_key)? {
                        Some(num) => num,
                        None => {
                            let seq = meta.get_json::<u64, _>("fintech_seq")?.unwrap_or(0) + 1;
                            meta.insert_json("fintech_seq", &seq)?;
                            let num =
                                secret::fintech_use_num(client_use_code, seq).ok_or_else(|| {
                                    Abort::with(Error::Invalid("fintech numbers exhausted".into()))
                                })?;
                            by_owner.insert_json(&owner_key, &num)?;
                            fintech.insert_json(
                                &num,
                                &FintechLink {
                                    user_seq_no: user_seq_no.to_owned(),
                                    account: id.clone(),
                                    client_use_code: client_use_code.to_owned(),
                                },
                            )?;
                            num
                        }
                    };
                    let reg_key = format!("{user_seq_no}/{client_id}/{id}");
                    let previous: Option<Registration> = registrations.get_json(&reg_key)?;
                    let registration = Registration {
                        fintech_use_num: num.clone(),
                        registered_dtime: previous
                            .as_ref()
                            .map(|p| p.registered_dtime.clone())
                            .unwrap_or_else(|| now.clone()),
                        // A scope not asked this time keeps what it had.
                        inquiry: inquiry
                            .clone()
                            .or_else(|| previous.as_ref().and_then(|p| p.inquiry.clone())),
                        transfer: transfer
                            .clone()
                            .or_else(|| previous.as_ref().and_then(|p| p.transfer.clone())),
                    };
                    registrations.insert_json(&reg_key, &registration)?;
                    nums.push(num);
                }
                Ok(nums)
            },
        )?;
        self.flush()?;
        Ok(nums)
    }

    /// Checks what a registration names: a client id, an institution code,
    /// a user the bank knows.
    pub(crate) fn check_registration(
        &self,
        user_seq_no: &str,
        client_id: &str,
        client_use_code: &str,
    ) -> Result<()> {
        if client_id.is_empty() || client_id.contains('/') {
            return Err(Error::Invalid(format!(
                "client_id {client_id:?} is not valid"
            )));
        }
        if secret::fintech_use_num(client_use_code, 0).is_none() {
            return Err(Error::Invalid(format!(
                "client_use_code {client_use_code:?} must be a letter and nine digits"
            )));
        }
        if self.t.users.get_json::<User>(user_seq_no)?.is_none() {
            return Err(Error::UnknownUser(user_seq_no.to_owned()));
        }
        Ok(())
    }

    /// Checks that every one of `account_ids` is the user's and not closed.
    pub(crate) fn check_registrable(
        &self,
        user_seq_no: &str,
        account_ids: &[String],
    ) -> Result<()> {
        for id in account_ids {
            let account: Account = self
                .t
                .accounts
                .get_json(id)?
                .ok_or_else(|| Error::UnknownAccount(id.clone()))?;
            if account.owner != Owner::User(user_seq_no.to_owned())
                || account.state == AccountState::Closed
            {
                return Err(Error::NotTheirs {
                    account: id.clone(),
                    user: user_seq_no.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// What registering with `scopes` at `now_millis` records: the time
    /// (14 digits, the bank's) and the `inquiry` and `transfer` consents
    /// asked (others are ignored), each for one year.
    pub(crate) fn consents_given(
        scopes: &[String],
        now_millis: u64,
    ) -> (String, Option<Consent>, Option<Consent>) {
        let now = model::dtime(now_millis, sfop_core::time::KST_OFFSET_MINUTES);
        let consent = |wanted: &str| {
            scopes.iter().any(|s| s == wanted).then(|| Consent {
                agreed_dtime: now.clone(),
                expires_millis: now_millis.saturating_add(model::CONSENT_MILLIS),
                withdrawn: false,
            })
        };
        let (inquiry, transfer) = (consent("inquiry"), consent("transfer"));
        (now, inquiry, transfer)
    }

    /// Withdraws every consent of the user for `client_id`; returns how many
    /// accounts were affected. Durable when it returns.
    pub fn unlink(&self, user_seq_no: &str, client_id: &str) -> Result<usize> {
        let _w = self.lock();
        let prefix = format!("{user_seq_no}/{client_id}/");
        let mut changed = 0;
        for entry in self.t.registrations.prefix_json::<Registration>(&prefix) {
            let (key, mut reg) = entry?;
            if reg.cancelled() {
                continue;
            }
            for consent in [&mut reg.inquiry, &mut reg.transfer].into_iter().flatten() {
                consent.withdrawn = true;
            }
            self.t.registrations.insert_json(&key, &reg)?;
            changed += 1;
        }
        self.flush()?;
        Ok(changed)
    }

    /// The fintech numbers of the user's accounts with at least one live
    /// consent for `client_id` at `now_millis`.
    pub fn fintech_use_nums(
        &self,
        user_seq_no: &str,
        client_id: &str,
        now_millis: u64,
    ) -> Result<Vec<String>> {
        let prefix = format!("{user_seq_no}/{client_id}/");
        let mut nums = Vec::new();
        for entry in self.t.registrations.prefix_json::<Registration>(&prefix) {
            let (_, reg) = entry?;
            let live = [&reg.inquiry, &reg.transfer]
                .into_iter()
                .flatten()
                .any(|c| c.live(now_millis));
            if live {
                nums.push(reg.fintech_use_num);
            }
        }
        Ok(nums)
    }

    // ---- For operators and tests -------------------------------------

    /// Registers (or replaces) a using institution with its pass phrase and
    /// limits; a new one is active at once (seeds and tests; operators
    /// onboard through [`Self::create_institution`]).
    pub fn add_institution(
        &self,
        client_use_code: &str,
        name: &str,
        wd_pass_phrase: &str,
        withdraw_limits: Limits,
        deposit_limits: Limits,
    ) -> Result<()> {
        if secret::fintech_use_num(client_use_code, 0).is_none() {
            return Err(Error::Invalid(format!(
                "client_use_code {client_use_code:?} must be a letter and nine digits"
            )));
        }
        let _w = self.lock();
        let previous = self
            .t
            .institutions
            .get_json::<Institution>(client_use_code)?;
        let (contract_accounts, unverified_accounts, state) = previous
            .map(|i| (i.contract_accounts, i.unverified_accounts, i.state))
            .unwrap_or((Vec::new(), Vec::new(), InstitutionState::Active));
        self.t.institutions.insert_json(
            client_use_code,
            &Institution {
                name: name.to_owned(),
                contract_accounts,
                wd_pass_phrase: wd_pass_phrase.to_owned(),
                withdraw_limits,
                deposit_limits,
                state,
                unverified_accounts,
            },
        )?;
        self.flush()
    }

    /// Registers an account of the institution as its contract account
    /// (where withdrawals go and deposits come from).
    pub fn add_contract_account(
        &self,
        client_use_code: &str,
        bank_code: &str,
        account_num: &str,
    ) -> Result<()> {
        let _w = self.lock();
        let key = account_key(bank_code, account_num);
        let account: Account = self
            .t
            .accounts
            .get_json(&key)?
            .ok_or_else(|| Error::UnknownAccount(key.clone()))?;
        if account.owner != Owner::Institution(client_use_code.to_owned()) {
            return Err(Error::NotTheirs {
                account: key,
                user: client_use_code.to_owned(),
            });
        }
        let mut inst: Institution = self
            .t
            .institutions
            .get_json(client_use_code)?
            .ok_or_else(|| Error::UnknownInstitution(client_use_code.to_owned()))?;
        if !inst.contract_accounts.contains(&key) {
            inst.contract_accounts.push(key);
        }
        self.t.institutions.insert_json(client_use_code, &inst)?;
        self.flush()
    }

    /// Adds a customer; returns their new `user_seq_no` (10 digits).
    pub fn add_user(&self, new: &NewUser) -> Result<String> {
        if new.login_id.is_empty() || new.birth_date.len() != 6 {
            return Err(Error::Invalid(
                "a user needs a login id and a 6-digit birth date".into(),
            ));
        }
        let password = secret::hash_password(&new.password, &new.login_id);
        let _w = self.lock();
        if self.t.logins.get(new.login_id.as_bytes())?.is_some() {
            return Err(Error::Invalid(format!(
                "login id {:?} is taken",
                new.login_id
            )));
        }
        let seq = self.t.meta.get_json::<u64>("user_seq")?.unwrap_or(0) + 1;
        let user_seq_no = format!("{:010}", 1_100_000_000 + seq);
        let user = User {
            user_ci: secret::user_ci(&user_seq_no, &new.name),
            user_seq_no: user_seq_no.clone(),
            name: new.name.clone(),
            birth_date: new.birth_date.clone(),
            login_id: new.login_id.clone(),
            password,
            wd_per_tran: new.wd_per_tran,
            wd_daily: new.wd_daily,
        };
        let t = &self.t;
        self.store
            .transaction(&[&t.meta, &t.users, &t.logins], |tx| {
                let [meta, users, logins] = tx else {
                    return Err(Abort::with(Error::Invalid("transaction trees".into())));
                };
                meta.insert_json("user_seq", &seq)?;
                users.insert_json(&user_seq_no, &user)?;
                logins.insert_json(&user.login_id, &user_seq_no)?;
                Ok(())
            })?;
        self.flush()?;
        Ok(user_seq_no)
    }

    /// Changes a user's withdrawal limits.
    pub fn set_user_limits(
        &self,
        user_seq_no: &str,
        wd_per_tran: u64,
        wd_daily: u64,
    ) -> Result<()> {
        let _w = self.lock();
        let mut user: User = self
            .t
            .users
            .get_json(user_seq_no)?
            .ok_or_else(|| Error::UnknownUser(user_seq_no.to_owned()))?;
        user.wd_per_tran = wd_per_tran;
        user.wd_daily = wd_daily;
        self.t.users.insert_json(user_seq_no, &user)?;
        self.flush()
    }

    /// Opens an account at `now_millis`, moving its opening balance from the
    /// bank's treasury; returns its id (`bank/num`).
    pub fn open_account(&self, new: &NewAccount, now_millis: u64) -> Result<String> {
        let _w = self.lock();
        if self.t.banks.get(new.bank_code.as_bytes())?.is_none() {
            return Err(Error::UnknownBank(new.bank_code.clone()));
        }
        if new.account_num.is_empty() || !new.account_num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Invalid(format!(
                "account number {:?} must be digits",
                new.account_num
            )));
        }
        let key = account_key(&new.bank_code, &new.account_num);
        if self.t.accounts.get(key.as_bytes())?.is_some() {
            return Err(Error::Invalid(format!("account {key} exists")));
        }
        let now = model::dtime(now_millis, sfop_core::time::KST_OFFSET_MINUTES);
        let account = Account {
            bank_code: new.bank_code.clone(),
            account_num: new.account_num.clone(),
            owner: new.owner.clone(),
            holder_name: new.holder_name.clone(),
            holder_info: new.holder_info.clone(),
            alias: new.alias.clone(),
            product_name: new.product_name.clone(),
            account_type: new.account_type.clone(),
            issue_date: now[..8].to_owned(),
            maturity_date: new.maturity_date.clone(),
            state: AccountState::Active,
            overdraft_limit: new.overdraft_limit,
            balance: 0,
            last_tran_date: None,
        };
        self.t.accounts.insert_json(&key, &account)?;
        if new.opening_balance > 0 {
            let treasury = account_key(&new.bank_code, TREASURY_ACCOUNT_NUM);
            ops::book_internal(
                self,
                &treasury,
                &key,
                new.opening_balance,
                &now,
                "신규",
                "신규개설",
            )?;
        }
        self.flush()?;
        Ok(key)
    }

    /// Moves money between two accounts outside the platform (a branch
    /// transfer: salary, card payment), booked at `now_millis`. The seed uses
    /// it for history; tests use it to arrange balances.
    pub fn book_transfer(
        &self,
        from: &str,
        to: &str,
        amount: u64,
        now_millis: u64,
        tran_type: &str,
        print_content: &str,
    ) -> Result<()> {
        let _w = self.lock();
        let now = model::dtime(now_millis, sfop_core::time::KST_OFFSET_MINUTES);
        ops::book_internal(self, from, to, amount, &now, tran_type, print_content)?;
        self.flush()
    }

    /// Suspends, closes or reopens an account.
    pub fn set_account_state(&self, id: &str, state: AccountState) -> Result<()> {
        let _w = self.lock();
        let mut account: Account = self
            .t
            .accounts
            .get_json(id)?
            .ok_or_else(|| Error::UnknownAccount(id.to_owned()))?;
        account.state = state;
        self.t.accounts.insert_json(id, &account)?;
        self.flush()
    }

    /// The balance of account `id`.
    pub fn balance_of(&self, id: &str) -> Result<i64> {
        Ok(self
            .t
            .accounts
            .get_json::<Account>(id)?
            .ok_or_else(|| Error::UnknownAccount(id.to_owned()))?
            .balance)
    }

    /// The sum of every account's balance. Constant after genesis: it
    /// equals [`Self::capital`] whatever transfers happen.
    pub fn total_balance(&self) -> Result<i128> {
        let mut total = 0i128;
        for entry in self.t.accounts.prefix_json::<Account>("") {
            total += i128::from(entry?.1.balance);
        }
        Ok(total)
    }

    /// The money created at genesis (the treasuries' capital).
    pub fn capital(&self) -> Result<i128> {
        Ok(i128::from(
            self.t.meta.get_json::<u64>("capital")?.unwrap_or(0),
        ))
    }

    /// Every posting of account `id`, in booking order.
    pub fn statement(&self, id: &str) -> Result<Vec<StatementLine>> {
        self.t
            .postings
            .prefix_json::<StoredPosting>(&format!("{id}/"))
            .map(|entry| {
                let (_, p) = entry?;
                Ok(StatementLine {
                    seq: p.seq,
                    dtime: p.dtime,
                    deposit: p.dir == model::Dir::In,
                    amount: p.amount,
                    after_balance: p.after_balance,
                    print_content: p.print_content,
                    bank_tran_id: p.bank_tran_id,
                })
            })
            .collect()
    }

    /// Checks the ledger: every account's balance is its postings replayed,
    /// every posting has its opposite, and the balances sum to the capital.
    /// Returns a description of the first inconsistency.
    pub fn audit(&self) -> Result<Result<(), String>> {
        let mut by_seq: std::collections::BTreeMap<u64, i128> = std::collections::BTreeMap::new();
        let mut total = 0i128;
        for entry in self.t.accounts.prefix_json::<Account>("") {
            let (id, account) = entry?;
            let is_treasury = id.ends_with(&format!("/{TREASURY_ACCOUNT_NUM}"));
            let opening = if is_treasury {
                i128::from(TREASURY_CAPITAL)
            } else {
                0
            };
            let mut replayed = opening;
            for line in self.statement(&id)? {
                let signed = if line.deposit {
                    i128::from(line.amount)
                } else {
                    -i128::from(line.amount)
                };
                replayed += signed;
                if replayed != i128::from(line.after_balance) {
                    return Ok(Err(format!(
                        "{id}: posting {} says {} after, replay gives {replayed}",
                        line.seq, line.after_balance
                    )));
                }
                *by_seq.entry(line.seq).or_default() += signed;
            }
            if replayed != i128::from(account.balance) {
                return Ok(Err(format!(
                    "{id}: balance {} but opening and postings sum to {replayed}",
                    account.balance
                )));
            }
            total += i128::from(account.balance);
        }
        if let Some((seq, sum)) = by_seq.iter().find(|(_, sum)| **sum != 0) {
            return Ok(Err(format!("transfer {seq} does not balance: {sum}")));
        }
        if total != self.capital()? {
            return Ok(Err(format!(
                "balances sum to {total}, capital is {}",
                self.capital()?
            )));
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests;
