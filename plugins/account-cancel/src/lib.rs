//! `POST /v2.0/account/cancel`: the user withdraws their `inquiry` or
//! `transfer` consent on a registered account for the calling client; with
//! no consent left, the account shows as cancelled (`account_state` `09`).

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    let scope = match f.one_of("scope", &["inquiry", "transfer"])? {
        "transfer" => ledger::ConsentScope::Transfer,
        _ => ledger::ConsentScope::Inquiry,
    };
    let fintech_use_num = f.fintech_use_num("fintech_use_num")?;
    let answer = ledger::cancel_account(bank_tran_id, fintech_use_num, scope)
        .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    Ok(bank_success(&answer, json!({})))
}

api!(handle);
