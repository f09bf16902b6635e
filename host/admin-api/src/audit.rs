//! `/admin/v1/audit…`: the management center's hash-chained audit log.
//! [`Entry`] is also the stored form (the management center re-exports it).
//!
//! | method and path | answer |
//! |---|---|
//! | `GET` [`LIST`] | [`AuditAnswer`] |
//! | `GET` [`VERIFY`] | [`VerifyAnswer`]: 200 intact, 409 broken |

use serde::{Deserialize, Serialize};

pub const LIST: &str = "/admin/v1/audit";
pub const VERIFY: &str = "/admin/v1/audit/verify";

/// What happened, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Who: the admin token's identity, `bootstrap`, `canary-monitor`, ...
    pub actor: String,
    /// `push`, `test`, `promote`, `canary`, `rollback`, `deprecate`, `retire`.
    pub action: String,
    pub api: String,
    pub version: Option<String>,
    /// Free text: the outcome, numbers that led to an automatic action.
    pub detail: String,
    /// Hash of the previous entry (hex SHA-256).
    pub prev: String,
    /// Hash of this entry.
    pub hash: String,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// `None` when the chain is intact; else the first problem found.
    pub broken: Option<String>,
}

/// Answer of [`LIST`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<Entry>,
}

/// Answer of [`VERIFY`]: `rsp_message` names the first break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub intact: bool,
    /// Entries that check out.
    pub entries: u64,
}
