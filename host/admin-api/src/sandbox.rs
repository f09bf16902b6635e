//! `/admin/v1/sandbox/faults…`: scripted faults of the sandbox, per OAuth
//! client (docs/adr/0010-sandbox-faults.md). The platform checks a rule
//! field by field (the virtual bank's `FaultRule::from_json`, whose errors
//! name the key); [`FaultRule`] is its wire shape.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET` [`FAULTS`] | | [`FaultsAnswer`] |
//! | `POST` [`FAULTS`] | [`FaultRule`] | [`FaultAdded`] (201) |
//! | `POST` [`REMOVE`] | [`RemoveRequest`] | [`FaultRemoved`]; 404 for an unknown id |
//! | `POST` [`CLEAR`] | [`ClearRequest`] | [`FaultsCleared`] |

use serde::{Deserialize, Serialize};

/// The list, and adding a rule.
pub const FAULTS: &str = "/admin/v1/sandbox/faults";
/// Removing one rule by id.
pub const REMOVE: &str = "/admin/v1/sandbox/faults/remove";
/// Removing every rule, or every rule of one client.
pub const CLEAR: &str = "/admin/v1/sandbox/faults/clear";

/// What a rule does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Timeout,
    Outage,
    Hang,
    Duplicate,
    Refuse,
    Fixture,
}

/// Values a `fixture` rule puts into an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_amt: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_amt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_holder_name: Option<String>,
}

impl Fixture {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// One scripted fault, fixture refusal or fixture answer; body of `POST`
/// [`FAULTS`]. Absent filters match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The OAuth client the rule applies to (required by the sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub fault: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsp_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_rsp_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsp_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<Fixture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// A registered rule and the id to remove it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedFault {
    pub id: u64,
    #[serde(flatten)]
    pub rule: FaultRule,
}

/// Answer of `GET` [`FAULTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<ScriptedFault>,
}

/// Answer of `POST` [`FAULTS`]: the rule as registered, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultAdded {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub id: u64,
}

/// Body of [`REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    pub id: u64,
}

/// Answer of [`REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRemoved {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub id: u64,
}

/// Body of [`CLEAR`]: every rule of `client_id`, or every rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Answer of [`CLEAR`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsCleared {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub removed: u64,
}
