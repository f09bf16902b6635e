//! What the virtual bank keeps in its journal, and small pure helpers over it.
//!
//! Stored records are this crate's own serde types, not the `sfop-core`
//! vocabulary, so that the on-disk format changes only when this file does.

use serde::{Deserialize, Serialize};
use sfop_core::ledger::{BankAnswer, Party, TransferKind};

/// A participant bank (tree `vbank.banks`, key: bank code).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredBank {
    pub name: String,
    pub available: bool,
}

/// Per-transaction, daily and monthly limits, in won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub per_tran: u64,
    pub daily: u64,
    pub monthly: u64,
}

/// A using institution (tree `vbank.institutions`, key: `client_use_code`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Institution {
    pub name: String,
    /// Account keys (`bank/num`) of its registered contract accounts.
    pub contract_accounts: Vec<String>,
    /// What `wd_pass_phrase` must be for deposits from its accounts.
    pub wd_pass_phrase: String,
    pub withdraw_limits: Limits,
    pub deposit_limits: Limits,
    /// Records stored before institutions had a state were live.
    #[serde(default = "InstitutionState::active")]
    pub state: InstitutionState,
    /// Account keys registered as contract accounts but not yet verified
    /// by the operator: transfers do not use them (`A0322`).
    #[serde(default)]
    pub unverified_accounts: Vec<String>,
}

/// Where a using institution is in its onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstitutionState {
    /// Asked for (by a developer or the operator), not yet approved: no
    /// money moves.
    Requested,
    /// Approved: its apps move money within its limits.
    Active,
    /// Stopped by the operator: no money moves until resumed.
    Suspended,
}

impl InstitutionState {
    fn active() -> Self {
        Self::Active
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// A bank customer (tree `vbank.users`, key: `user_seq_no`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct User {
    pub user_seq_no: String,
    pub user_ci: String,
    pub name: String,
    /// `YYMMDD`, what a real-name check compares with.
    pub birth_date: String,
    pub login_id: String,
    /// `pbkdf2-sha256$iterations$salt-hex$hash-hex`.
    pub password: String,
    /// Withdrawal limits through the platform (per transaction, daily).
    pub wd_per_tran: u64,
    pub wd_daily: u64,
}

/// Who holds an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A customer, by `user_seq_no`.
    User(String),
    /// A using institution, by `client_use_code`.
    Institution(String),
    /// A company that is not an institution (employers, merchants).
    Company,
    /// The bank itself (its treasury account, where seeded money comes from).
    Bank,
}

/// The state of an account at its bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountState {
    Active,
    /// 거래정지: no money in or out.
    Suspended,
    /// 해지.
    Closed,
}

/// An account (tree `vbank.accounts`, key: `bank/num`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Account {
    pub bank_code: String,
    pub account_num: String,
    pub owner: Owner,
    pub holder_name: String,
    /// Birth date `YYMMDD` of a person, business number of a company.
    pub holder_info: String,
    pub alias: String,
    pub product_name: String,
    /// KFTC account type code.
    pub account_type: String,
    pub issue_date: String,
    pub maturity_date: Option<String>,
    pub state: AccountState,
    /// How far below zero the balance may go.
    pub overdraft_limit: u64,
    pub balance: i64,
    pub last_tran_date: Option<String>,
}

impl Account {
    /// What can be withdrawn now.
    pub fn available(&self) -> u64 {
        let available = i128::from(self.balance) + i128::from(self.overdraft_limit);
        u64::try_from(available.max(0)).unwrap_or(u64::MAX)
    }
}

/// Money in or out of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    In,
    Out,
}

/// One side of a booked transfer (tree `vbank.postings`, key:
/// `bank/num/seq` with a 20-digit sequence number).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredPosting {
    pub seq: u64,
    /// 14 digits, business time.
    pub dtime: String,
    pub dir: Dir,
    pub tran_type: String,
    pub print_content: String,
    pub amount: u64,
    pub after_balance: i64,
    pub branch_name: String,
    pub counterparty_name: String,
    pub counterparty_bank_code: String,
    pub counterparty_account_num: String,
    /// The transfer's `bank_tran_id`, when it came through the platform.
    pub bank_tran_id: Option<String>,
}

/// A fintech number (tree `vbank.fintech`, key: the number).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FintechLink {
    pub user_seq_no: String,
    pub account: String,
    pub client_use_code: String,
}

/// One consent of a user on an account for a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Consent {
    pub agreed_dtime: String,
    pub expires_millis: u64,
    pub withdrawn: bool,
}

impl Consent {
    pub fn live(&self, now_millis: u64) -> bool {
        !self.withdrawn && now_millis < self.expires_millis
    }
}

/// An account registered by a user with a client (tree
/// `vbank.registrations`, key: `user/client_id/bank/num`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Registration {
    pub fintech_use_num: String,
    pub registered_dtime: String,
    pub inquiry: Option<Consent>,
    pub transfer: Option<Consent>,
}

impl Registration {
    /// Every consent withdrawn (or none given).
    pub fn cancelled(&self) -> bool {
        [&self.inquiry, &self.transfer]
            .iter()
            .all(|c| c.as_ref().is_none_or(|c| c.withdrawn))
    }
}

/// What became of a `bank_tran_id` (tree `vbank.tranids`, key:
/// `date/bank_tran_id`).
// Stored shapes, decoded one at a time: their size in memory does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum TranRecord {
    /// Used by an inquiry; no money moved.
    Inquiry,
    Transfer(StoredTransfer),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredTransfer {
    pub kind: Kind,
    pub tran_amt: u64,
    pub outcome: StoredOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Withdraw,
    Deposit,
}

impl From<TransferKind> for Kind {
    fn from(k: TransferKind) -> Self {
        match k {
            TransferKind::Withdraw => Kind::Withdraw,
            TransferKind::Deposit => Kind::Deposit,
        }
    }
}

impl From<Kind> for TransferKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Withdraw => TransferKind::Withdraw,
            Kind::Deposit => TransferKind::Deposit,
        }
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoredOutcome {
    Done {
        answer: AnswerRec,
        wd: PartyRec,
        dps: PartyRec,
        wd_limit_remain_amt: Option<u64>,
    },
    Refused {
        rsp_code: String,
        rsp_message: String,
        answer: Option<AnswerRec>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AnswerRec {
    pub bank_tran_id: String,
    pub bank_tran_date: String,
    pub bank_code_tran: String,
    pub bank_rsp_code: String,
    pub bank_rsp_message: String,
}

impl From<&BankAnswer> for AnswerRec {
    fn from(a: &BankAnswer) -> Self {
        Self {
            bank_tran_id: a.bank_tran_id.clone(),
            bank_tran_date: a.bank_tran_date.clone(),
            bank_code_tran: a.bank_code_tran.clone(),
            bank_rsp_code: a.bank_rsp_code.clone(),
            bank_rsp_message: a.bank_rsp_message.clone(),
        }
    }
}

impl From<AnswerRec> for BankAnswer {
    fn from(a: AnswerRec) -> Self {
        Self {
            bank_tran_id: a.bank_tran_id,
            bank_tran_date: a.bank_tran_date,
            bank_code_tran: a.bank_code_tran,
            bank_rsp_code: a.bank_rsp_code,
            bank_rsp_message: a.bank_rsp_message,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartyRec {
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_holder_name: String,
    pub print_content: String,
    pub fintech_use_num: Option<String>,
    pub account_alias: Option<String>,
}

impl From<&Party> for PartyRec {
    fn from(p: &Party) -> Self {
        Self {
            bank_code_std: p.bank_code_std.clone(),
            bank_name: p.bank_name.clone(),
            account_num_masked: p.account_num_masked.clone(),
            account_holder_name: p.account_holder_name.clone(),
            print_content: p.print_content.clone(),
            fintech_use_num: p.fintech_use_num.clone(),
            account_alias: p.account_alias.clone(),
        }
    }
}

impl From<PartyRec> for Party {
    fn from(p: PartyRec) -> Self {
        Self {
            bank_code_std: p.bank_code_std,
            bank_name: p.bank_name,
            account_num_masked: p.account_num_masked,
            account_holder_name: p.account_holder_name,
            print_content: p.print_content,
            fintech_use_num: p.fintech_use_num,
            account_alias: p.account_alias,
        }
    }
}

/// The key of an account: `bank/num`.
pub(crate) fn account_key(bank_code: &str, account_num: &str) -> String {
    format!("{bank_code}/{account_num}")
}

/// The key of a posting: `bank/num/` and a 20-digit sequence number, so an
/// account's postings are one prefix in booking order.
pub(crate) fn posting_key(account: &str, seq: u64) -> String {
    format!("{account}/{seq:020}")
}

/// An account number as clients see it: the last three digits hidden.
pub fn mask_account_num(num: &str) -> String {
    let keep = num.chars().count().saturating_sub(3);
    num.chars()
        .enumerate()
        .map(|(i, c)| if i < keep { c } else { '*' })
        .collect()
}

/// `YYYYMMDDhhmmss` in the business time zone.
pub(crate) fn dtime(now_millis: u64, utc_offset_minutes: i32) -> String {
    let mut s = sfop_core::time::format_dtm(now_millis, utc_offset_minutes);
    s.truncate(14);
    s
}

/// Milliseconds in a day.
pub(crate) const DAY_MILLIS: u64 = 86_400_000;

/// How long a consent lasts: one year, as the reference platform's.
pub(crate) const CONSENT_MILLIS: u64 = 365 * DAY_MILLIS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_last_three_digits() {
        assert_eq!(mask_account_num("1101234567890"), "1101234567***");
        assert_eq!(mask_account_num("12"), "**");
    }

    #[test]
    fn available_includes_the_overdraft_line() {
        let mut a = Account {
            bank_code: "097".into(),
            account_num: "1".into(),
            owner: Owner::Bank,
            holder_name: String::new(),
            holder_info: String::new(),
            alias: String::new(),
            product_name: String::new(),
            account_type: "1".into(),
            issue_date: String::new(),
            maturity_date: None,
            state: AccountState::Active,
            overdraft_limit: 1_000,
            balance: -300,
            last_tran_date: None,
        };
        assert_eq!(a.available(), 700);
        a.balance = -2_000;
        assert_eq!(a.available(), 0);
    }
}
