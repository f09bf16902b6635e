//! The vocabulary of the `ledger` capability: the Rust side of the WIT
//! interface `sfop:platform/ledger`, shared by the runtime (which converts
//! to and from the WIT types) and every bank backend. Field names are the
//! open-banking API's; amounts are integer won.

use crate::backend::Claims;

/// Open-banking response codes a bank backend answers with.
pub mod codes {
    /// Success.
    pub const SUCCESS: &str = "A0000";
    /// Participant bank error.
    pub const BANK_ERROR: &str = "A0002";
    /// Request format error (the message names the field).
    pub const FORMAT: &str = "A0004";
    /// Bank-level failure; `bank_rsp_code` says which.
    pub const BANK_FAILURE: &str = "A0009";
    /// Participant bank timeout.
    pub const BANK_TIMEOUT: &str = "A0017";
    /// Institution per-transaction withdrawal limit exceeded.
    pub const INST_WD_PER_TRAN: &str = "A0101";
    /// Institution daily withdrawal limit exceeded.
    pub const INST_WD_DAILY: &str = "A0102";
    /// Institution monthly withdrawal limit exceeded.
    pub const INST_WD_MONTHLY: &str = "A0103";
    /// Institution per-transaction deposit limit exceeded.
    pub const INST_DP_PER_TRAN: &str = "A0104";
    /// Institution daily deposit limit exceeded.
    pub const INST_DP_DAILY: &str = "A0105";
    /// Institution monthly deposit limit exceeded.
    pub const INST_DP_MONTHLY: &str = "A0106";
    /// User per-transaction withdrawal limit exceeded.
    pub const USER_WD_PER_TRAN: &str = "A0111";
    /// User daily withdrawal limit exceeded.
    pub const USER_WD_DAILY: &str = "A0112";
    /// No access (no verified caller, or another user's data).
    pub const NO_ACCESS: &str = "A0301";
    /// The fintech_use_num is not the caller's.
    pub const FINTECH_NUM_MISMATCH: &str = "A0304";
    /// Inquiry (data-sharing) consent missing.
    pub const INQUIRY_CONSENT_MISSING: &str = "A0305";
    /// Withdrawal consent missing.
    pub const TRANSFER_CONSENT_MISSING: &str = "A0306";
    /// Inquiry consent expired.
    pub const INQUIRY_CONSENT_EXPIRED: &str = "A0316";
    /// Withdrawal consent expired.
    pub const TRANSFER_CONSENT_EXPIRED: &str = "A0319";
    /// The contract account is not registered to the institution.
    pub const UNREGISTERED_CONTRACT: &str = "A0322";
    /// `bank_tran_id` already used by this institution today.
    pub const DUPLICATE_BANK_TRAN_ID: &str = "A0326";
}

/// A participant bank and whether it takes requests now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bank {
    /// Standard 3-digit bank code, e.g. `097`.
    pub code: String,
    pub name: String,
    pub available: bool,
}

/// The bank part of the common response header of a bank-touching call.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BankAnswer {
    /// The request's `bank_tran_id`, echoed.
    pub bank_tran_id: String,
    /// The bank's business date, 8 digits.
    pub bank_tran_date: String,
    /// The 3-digit code of the bank that processed the call.
    pub bank_code_tran: String,
    /// The bank's result code, 3 digits; `000` is success.
    pub bank_rsp_code: String,
    pub bank_rsp_message: String,
}

/// A business failure decided by the platform or a bank: the open-banking
/// `rsp_code` and, when a bank answered, its own code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub rsp_code: String,
    pub rsp_message: String,
    pub bank: Option<BankAnswer>,
}

impl Refusal {
    /// A refusal by the platform, with no bank answer.
    pub fn new(rsp_code: &str, rsp_message: impl Into<String>) -> Self {
        Self {
            rsp_code: rsp_code.to_owned(),
            rsp_message: rsp_message.into(),
            bank: None,
        }
    }

    /// A bank-level failure (`A0009`) with the bank's own code.
    pub fn by_bank(answer: BankAnswer) -> Self {
        Self {
            rsp_code: codes::BANK_FAILURE.to_owned(),
            rsp_message: answer.bank_rsp_message.clone(),
            bank: Some(answer),
        }
    }
}

/// Why a bank backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The bank did not answer in time.
    #[error("participant bank timeout")]
    Timeout,
    /// The backend failed; the message is safe to show to a plugin.
    #[error("bank backend: {0}")]
    Backend(String),
    /// A business failure, to be answered with its codes.
    #[error("refused {}: {}", .0.rsp_code, .0.rsp_message)]
    Refused(Box<Refusal>),
}

impl From<Refusal> for BankError {
    fn from(r: Refusal) -> Self {
        BankError::Refused(Box::new(r))
    }
}

/// Who calls the bank and when: filled by the host for every call, never by
/// the plugin.
#[derive(Debug, Clone, Copy)]
pub struct BankCall<'a> {
    /// The verified caller; `None` when the route is public.
    pub caller: Option<&'a Claims>,
    /// Milliseconds since the Unix epoch.
    pub now_millis: u64,
    /// The business time zone, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

/// A scope of account consent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    Inquiry,
    Transfer,
}

impl ConsentScope {
    /// The OAuth scope name, `inquiry` or `transfer`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::Inquiry => "inquiry",
            ConsentScope::Transfer => "transfer",
        }
    }

    /// The consent scope of OAuth scope `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "inquiry" => Some(ConsentScope::Inquiry),
            "transfer" => Some(ConsentScope::Transfer),
            _ => None,
        }
    }
}

/// An account the user registered with the calling client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegisteredAccount {
    pub fintech_use_num: String,
    pub account_alias: String,
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_holder_name: String,
    /// KFTC account type: `1` demand deposit, `2` savings, `6` securities, `T` overall.
    pub account_type: String,
    /// When inquiry consent was given (14 digits); `None` if never, withdrawn or expired.
    pub inquiry_agree_dtime: Option<String>,
    /// The same for the transfer (withdrawal) consent.
    pub transfer_agree_dtime: Option<String>,
    pub registered_dtime: String,
    /// Every consent withdrawn (KFTC `account_state` `09`).
    pub cancelled: bool,
}

/// A user as the calling client may see them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    pub user_seq_no: String,
    pub user_ci: String,
    pub user_name: String,
    pub accounts: Vec<RegisteredAccount>,
}

/// One side of a transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Party {
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_holder_name: String,
    pub print_content: String,
    pub fintech_use_num: Option<String>,
    pub account_alias: Option<String>,
}

/// The balance of one account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Balance {
    pub answer: BankAnswer,
    pub fintech_use_num: String,
    pub bank_name: String,
    pub balance_amt: i64,
    pub available_amt: u64,
    pub account_type: String,
    pub product_name: String,
    pub account_issue_date: String,
    pub maturity_date: Option<String>,
    pub last_tran_date: Option<String>,
}

/// Money in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Deposit,
    Withdrawal,
}

/// Which postings a history query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InoutFilter {
    All,
    Deposits,
    Withdrawals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Ascending,
    Descending,
}

/// One posting on an account's statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Posting {
    pub tran_date: String,
    pub tran_time: String,
    pub direction: Direction,
    pub tran_type: String,
    pub print_content: String,
    pub tran_amt: u64,
    pub after_balance_amt: i64,
    pub branch_name: String,
    pub counterparty_name: String,
    pub counterparty_bank_code: String,
    pub counterparty_account_num_masked: String,
}

/// One page of an account's postings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryPage {
    pub answer: BankAnswer,
    pub bank_name: String,
    pub account_num_masked: String,
    pub balance_amt: i64,
    pub total_record_cnt: u32,
    pub postings: Vec<Posting>,
    pub next_cursor: Option<String>,
}

/// A user's account history by fintech number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryQuery {
    pub bank_tran_id: String,
    pub fintech_use_num: String,
    pub inquiry_type: InoutFilter,
    /// Inclusive bounds, 14 digits each.
    pub from_dtime: String,
    pub to_dtime: String,
    pub sort_order: SortOrder,
    pub cursor: Option<String>,
    pub page_size: u32,
}

/// Deposits into an account of the caller's institution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemitQuery {
    pub bank_tran_id: String,
    pub account: AccountRef,
    pub from_dtime: String,
    pub to_dtime: String,
    pub sort_order: SortOrder,
    pub cursor: Option<String>,
    pub page_size: u32,
}

/// An account named by bank and number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRef {
    pub bank_code_std: String,
    pub account_num: String,
}

/// Where a deposit goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// A fintech number issued to the caller's institution.
    FintechUseNum(String),
    /// Any account, with a holder name to check when `Some`.
    Account(AccountRef, Option<String>),
}

/// Withdraw from a user's account to the institution's contract account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WithdrawRequest {
    pub bank_tran_id: String,
    pub fintech_use_num: String,
    pub tran_amt: u64,
    pub cntr_account_num: String,
    pub wd_print_content: String,
    pub dps_print_content: String,
    pub req_client_name: String,
    pub req_client_num: String,
    pub transfer_purpose: String,
    pub recv_client_name: String,
    pub recv_client_bank_code: String,
    pub recv_client_account_num: String,
}

/// Deposit from the institution's contract account to a recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DepositRequest {
    pub bank_tran_id: String,
    pub recipient: Recipient,
    pub tran_amt: u64,
    pub cntr_account_num: String,
    pub wd_pass_phrase: String,
    pub wd_print_content: String,
    pub print_content: String,
    pub req_client_name: String,
    pub req_client_num: String,
    pub transfer_purpose: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Withdraw,
    Deposit,
}

/// A completed transfer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferReceipt {
    pub answer: BankAnswer,
    pub kind: TransferKind,
    pub tran_amt: u64,
    pub wd: Party,
    pub dps: Party,
    pub wd_limit_remain_amt: Option<u64>,
}

/// Which earlier transfer `transfer_result` asks about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResultQuery {
    pub kind: TransferKind,
    pub org_bank_tran_id: String,
    pub org_bank_tran_date: String,
    pub org_tran_amt: u64,
}

/// Real-name check of an account holder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RealNameQuery {
    pub bank_tran_id: String,
    pub account: AccountRef,
    pub account_holder_info_type: String,
    pub account_holder_info: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RealName {
    pub answer: BankAnswer,
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num: String,
    pub account_holder_info_type: String,
    pub account_holder_info: String,
    pub account_holder_name: String,
    pub account_type: String,
}

/// Check a recipient before depositing to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiveQuery {
    pub bank_tran_id: String,
    pub recipient: Recipient,
    pub tran_amt: u64,
    pub cntr_account_num: String,
    pub print_content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiveCheck {
    pub answer: BankAnswer,
    pub dps: Party,
    pub wd: Party,
    pub tran_amt: u64,
}

/// An account the user may register on the consent page, as the bank's
/// directory offers it ([`crate::BankDirectory::accounts`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryAccount {
    /// Opaque to the platform: passed back in [`RegisterRequest::account_ids`].
    pub id: String,
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub account_alias: String,
}

/// The consent a user gave on the consent page, for the bank to record
/// ([`crate::BankDirectory::register`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub user_seq_no: String,
    pub client_id: String,
    pub client_use_code: String,
    /// Ids from [`DirectoryAccount::id`].
    pub account_ids: Vec<String>,
    /// The OAuth scopes consented to; the bank records `inquiry` and
    /// `transfer` and ignores the others.
    pub scopes: Vec<String>,
}

/// The host call a bank operation serves: its `api_tran_id` and the instant
/// after which nobody waits for the answer. Set by the host around each
/// ledger call (a tokio task-local, [`CallScope::run`]); a backend that
/// forwards calls (the REST connector) reads it with [`CallScope::current`]
/// and passes it on (`x-sfop-api-tran-id`, `x-sfop-deadline-ms`). Not a
/// field of [`BankCall`], which every backend and test builds by hand: a
/// backend that has no use for it never sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallScope {
    pub api_tran_id: String,
    pub deadline: Option<std::time::Instant>,
}

tokio::task_local! {
    static CALL_SCOPE: CallScope;
}

impl CallScope {
    /// Runs `call` with this scope visible to [`CallScope::current`].
    pub async fn run<F: std::future::Future>(self, call: F) -> F::Output {
        CALL_SCOPE.scope(self, call).await
    }

    /// The scope of the host call being served, if any (none outside a
    /// host call: the OAuth pages, the CLI, tests).
    pub fn current() -> Option<CallScope> {
        CALL_SCOPE.try_with(Clone::clone).ok()
    }
}
