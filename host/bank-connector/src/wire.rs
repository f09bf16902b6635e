//! The JSON bodies of the contract (docs/bank-connector.md): one request
//! envelope, one answer envelope, and the arguments of the operations that
//! take plain parameters rather than a record.

use serde::{Deserialize, Serialize};
use sfop_core::Claims;
use sfop_core::ledger::{BankCall, ConsentScope, Refusal, ResultQuery};

/// A request as the platform sends it.
#[derive(Debug, Serialize)]
pub(crate) struct Outgoing<'a, A: Serialize> {
    pub caller: Option<&'a Claims>,
    pub now_millis: u64,
    pub utc_offset_minutes: i32,
    pub args: A,
}

impl<'a, A: Serialize> Outgoing<'a, A> {
    pub(crate) fn new(call: &BankCall<'a>, args: A) -> Self {
        Self {
            caller: call.caller,
            now_millis: call.now_millis,
            utc_offset_minutes: call.utc_offset_minutes,
            args,
        }
    }
}

/// A request as the bank server reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Incoming<A> {
    pub caller: Option<Claims>,
    pub now_millis: u64,
    pub utc_offset_minutes: i32,
    pub args: A,
}

impl<A> Incoming<A> {
    pub(crate) fn call(&self) -> BankCall<'_> {
        BankCall {
            caller: self.caller.as_ref(),
            now_millis: self.now_millis,
            utc_offset_minutes: self.utc_offset_minutes,
        }
    }
}

/// A `200` answer: the result, or the bank's refusal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Answer<T> {
    Ok(T),
    Refused(Refusal),
}

/// The body of every other status.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArgs {}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserArgs {
    pub user_seq_no: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisteredArgs {
    pub user_seq_no: String,
    pub include_cancelled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BalanceArgs {
    pub bank_tran_id: String,
    pub fintech_use_num: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultArgs {
    pub queries: Vec<ResultQuery>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelArgs {
    pub bank_tran_id: String,
    pub fintech_use_num: String,
    pub scope: ConsentScope,
}

/// `/v1/directory/authenticate`. The password travels in the body, over
/// TLS; no `Debug` shows it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthenticateArgs {
    pub login_id: String,
    pub password: String,
}

impl std::fmt::Debug for AuthenticateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateArgs")
            .field("login_id", &self.login_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnlinkArgs {
    pub user_seq_no: String,
    pub client_id: String,
}

/// `/v1/directory/authenticate`'s answer: `null` when the credentials do
/// not match.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Authenticated {
    pub user_seq_no: Option<String>,
}

/// `/v1/directory/unlink`'s answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Unlinked {
    pub accounts: u64,
}

/// The headers of the call a request serves (docs/bank-connector.md).
pub(crate) const API_TRAN_ID: &str = "x-sfop-api-tran-id";
pub(crate) const DEADLINE_MS: &str = "x-sfop-deadline-ms";
