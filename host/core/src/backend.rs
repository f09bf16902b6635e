//! The services behind the capability interfaces. The runtime calls these
//! traits; the embedded defaults (virtual bank, sled store) implement them, and
//! a real deployment points them at participant banks.

use std::fmt;

use crate::ledger::{
    Balance, BankAnswer, BankCall, ConsentScope, DepositRequest, HistoryPage, HistoryQuery,
    RealName, RealNameQuery, ReceiveCheck, ReceiveQuery, Refusal, RegisteredAccount, RemitQuery,
    ResultQuery, TransferReceipt, UserInfo, WithdrawRequest,
};
pub use crate::ledger::{Bank, BankError};

/// The `ledger` capability's backend. Every call gets the verified caller
/// from the host in [`BankCall`] and decides with it: a plugin cannot choose
/// whom it acts for. Each operation's contract is the
/// WIT interface `sfop:platform/ledger` (wit/platform@0.1.0/world.wit).
///
/// Every operation is async: a backend waits for its bank (a durable flush,
/// a network round trip) without holding a thread, and whatever blocks runs
/// off the async workers (docs/adr/0022-async-capabilities.md). The host
/// bounds each call by the plugin's `timeout_ms` and drops the future when
/// it passes, so an operation must tolerate being abandoned at any await
/// point: a transfer already decided still completes and is found with
/// `transfer_result`. Held as `Arc<dyn BankBackend>`, hence `async_trait`.
#[async_trait::async_trait]
pub trait BankBackend: Send + Sync + fmt::Debug {
    /// All participant banks, ordered by bank code. The same for every
    /// caller at a real bank; the caller lets a sandbox script outages per app.
    async fn bank_status(&self, call: &BankCall<'_>) -> Result<Vec<Bank>, BankError>;

    /// The caller's user with the accounts they registered with the client.
    async fn user_info(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<UserInfo, BankError>;

    /// The accounts the caller's user registered with the calling client.
    async fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> Result<Vec<RegisteredAccount>, BankError>;

    async fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> Result<Balance, BankError>;

    async fn transactions(
        &self,
        call: &BankCall<'_>,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BankError>;

    async fn remit_list(
        &self,
        call: &BankCall<'_>,
        query: &RemitQuery,
    ) -> Result<HistoryPage, BankError>;

    /// Moves money exactly once per `bank_tran_id`; answers only when durable.
    async fn withdraw(
        &self,
        call: &BankCall<'_>,
        request: &WithdrawRequest,
    ) -> Result<TransferReceipt, BankError>;

    /// Moves money exactly once per `bank_tran_id`; answers only when durable.
    async fn deposit(
        &self,
        call: &BankCall<'_>,
        request: &DepositRequest,
    ) -> Result<TransferReceipt, BankError>;

    /// The original outcome of each queried transfer, in order.
    async fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> Result<Vec<Result<TransferReceipt, Refusal>>, BankError>;

    async fn real_name(
        &self,
        call: &BankCall<'_>,
        query: &RealNameQuery,
    ) -> Result<RealName, BankError>;

    async fn receive(
        &self,
        call: &BankCall<'_>,
        query: &ReceiveQuery,
    ) -> Result<ReceiveCheck, BankError>;

    /// Withdraws the user's consent of `scope` on the account for the client.
    async fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> Result<BankAnswer, BankError>;
}

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("store: {0}")]
    Store(String),
}

/// The `kv` capability's backend: one private namespace per plugin name.
pub trait KvStore: Send + Sync + fmt::Debug {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError>;
}

/// The verified claims of a caller, handed to plugins through `auth-context`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub client_id: String,
    pub client_use_code: Option<String>,
    pub user_seq_no: Option<String>,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
}
