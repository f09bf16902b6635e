//! The services behind the capability interfaces. The runtime calls these
//! traits; the embedded defaults (virtual bank, sled store) implement them, and
//! a real deployment points them at participant banks.

use std::fmt;

use crate::ledger::{
    Balance, BankAnswer, BankCall, ConsentScope, DepositRequest, DirectoryAccount, HistoryPage,
    HistoryQuery, RealName, RealNameQuery, ReceiveCheck, ReceiveQuery, Refusal, RegisterRequest,
    RegisteredAccount, RemitQuery, ResultQuery, TransferReceipt, UserInfo, WithdrawRequest,
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

/// The bank's users, for the OAuth server's sign-in and consent pages: who
/// can sign in, which accounts they may register, and where consents (and
/// the fintech numbers they issue) are recorded. The bank decides; the
/// platform only shows its answers. The virtual bank implements it, and the
/// REST connector asks a participant bank for it (docs/bank-connector.md,
/// `/v1/directory/...`). Every operation may block on a password hash, a
/// durable write or the network, so implementations run that off the
/// async workers.
#[async_trait::async_trait]
pub trait BankDirectory: Send + Sync + fmt::Debug {
    /// The `user_seq_no` of the user with these credentials, if they match.
    /// Never logs the password.
    async fn authenticate(
        &self,
        call: &BankCall<'_>,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, BankError>;

    /// The accounts the user may register.
    async fn accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<Vec<DirectoryAccount>, BankError>;

    /// Records the consent (durable when it answers); the fintech number
    /// issued for each account, in the order of `account_ids`.
    async fn register(
        &self,
        call: &BankCall<'_>,
        request: &RegisterRequest,
    ) -> Result<Vec<String>, BankError>;

    /// Withdraws every consent the user gave the client (durable when it
    /// answers); how many accounts it touched.
    async fn unlink(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        client_id: &str,
    ) -> Result<u64, BankError>;
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
