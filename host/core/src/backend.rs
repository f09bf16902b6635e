//! The services behind the capability interfaces. The runtime calls these
//! traits; the embedded defaults (virtual bank, sled store) implement them, and
//! a real deployment points them at participant banks.

use std::fmt;

/// A participant bank and whether it takes requests now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bank {
    /// Standard 3-digit bank code, e.g. `097`.
    pub code: String,
    pub name: String,
    pub available: bool,
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
}

/// The `ledger` capability's backend.
pub trait BankBackend: Send + Sync + fmt::Debug {
    /// All participant banks, ordered by bank code.
    fn bank_status(&self) -> Result<Vec<Bank>, BankError>;
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub client_id: String,
    pub client_use_code: Option<String>,
    pub user_seq_no: Option<String>,
    pub scopes: Vec<String>,
    pub fintech_use_nums: Vec<String>,
}
