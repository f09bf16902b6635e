//! `/admin/v1/institutions…`: onboarding of using institutions
//! (docs/adr/0017-institutions.md). The views here are also what the
//! virtual bank answers with (it re-exports them).
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET` [`LIST`] | | [`InstitutionsAnswer`]: every institution |
//! | `POST` [`LIST`] | [`CreateRequest`] | [`InstitutionsAnswer`]: the new one |
//! | `POST` [`ACCOUNTS`] | [`AccountRequest`] | [`InstitutionsAnswer`] |
//! | `POST` [`VERIFY`] | [`VerifyRequest`] | [`InstitutionsAnswer`] |
//! | `POST` [`LIMITS`] | [`LimitsRequest`] | [`InstitutionsAnswer`] |
//! | `POST` [`APPROVE`], [`SUSPEND`], [`RESUME`] | [`CodeRequest`] | [`InstitutionsAnswer`] |

use serde::{Deserialize, Serialize};

/// `GET`: every institution; `POST` [`CreateRequest`]: a new one (requested).
pub const LIST: &str = "/admin/v1/institutions";
/// [`AccountRequest`]: register an existing account, or open a sandbox one.
pub const ACCOUNTS: &str = "/admin/v1/institutions/accounts";
/// [`VerifyRequest`]: verify a registered contract account.
pub const VERIFY: &str = "/admin/v1/institutions/accounts/verify";
/// [`LimitsRequest`].
pub const LIMITS: &str = "/admin/v1/institutions/limits";
/// [`CodeRequest`]: requested → active (needs a verified contract account).
pub const APPROVE: &str = "/admin/v1/institutions/approve";
/// [`CodeRequest`]: no money moves until resumed (`A0301`).
pub const SUSPEND: &str = "/admin/v1/institutions/suspend";
/// [`CodeRequest`]: suspended → active.
pub const RESUME: &str = "/admin/v1/institutions/resume";

/// Per-transaction, daily and monthly limits, in won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub per_tran: u64,
    pub daily: u64,
    pub monthly: u64,
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// A contract account as operators and developers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractAccount {
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num: String,
    pub account_holder_name: String,
    /// Transfers use only verified contract accounts.
    pub verified: bool,
    pub balance_amt: i64,
}

/// An institution as operators and developers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionView {
    pub client_use_code: String,
    pub name: String,
    pub state: InstitutionState,
    pub contract_accounts: Vec<ContractAccount>,
    pub withdraw_limits: Limits,
    pub deposit_limits: Limits,
}

/// Body of `POST` [`LIST`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    /// `M` and 9 digits; allocated when absent. A code apps already use
    /// (an app registered without `--institution`) becomes theirs.
    #[serde(default)]
    pub client_use_code: Option<String>,
    /// `wd_pass_phrase` deposits must carry; `NONE` when absent.
    #[serde(default)]
    pub wd_pass_phrase: Option<String>,
    #[serde(default)]
    pub withdraw_limits: Option<Limits>,
    #[serde(default)]
    pub deposit_limits: Option<Limits>,
}

/// Body of [`ACCOUNTS`]: either `bank_code_std` and `account_num` of an
/// existing account (registered unverified), or `open_sandbox` (an account
/// opened at the virtual bank with test funds, verified at once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    pub client_use_code: String,
    #[serde(default)]
    pub bank_code_std: Option<String>,
    #[serde(default)]
    pub account_num: Option<String>,
    #[serde(default)]
    pub open_sandbox: bool,
    /// Test funds of a sandbox account; the platform's default when absent.
    #[serde(default)]
    pub opening_balance: Option<u64>,
}

/// Body of [`VERIFY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub client_use_code: String,
    pub bank_code_std: String,
    pub account_num: String,
}

/// Body of [`LIMITS`]: the limits given change, the others stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub client_use_code: String,
    #[serde(default)]
    pub withdraw_limits: Option<Limits>,
    #[serde(default)]
    pub deposit_limits: Option<Limits>,
}

/// Body of [`APPROVE`], [`SUSPEND`] and [`RESUME`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub client_use_code: String,
}

/// One institution and the apps (`client_id`s) that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionEntry {
    #[serde(flatten)]
    pub institution: InstitutionView,
    #[serde(default)]
    pub apps: Vec<String>,
}

/// The answer of every route: the institutions listed, or the one the
/// call changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionsAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    #[serde(default)]
    pub res_list: Vec<InstitutionEntry>,
    /// [`ACCOUNTS`] with `open_sandbox`: the new account's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_num: Option<String>,
}
