//! Testbed acceptance plugin: the real-name check, but a body that is not
//! JSON makes it panic (a Wasm trap) instead of answering `A0004`. Must
//! fail `ROB-NO-FAULT` only.

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    // The mistake under test: trusting the body to be JSON.
    if serde_json::from_slice::<serde_json::Value>(req.body()).is_err() {
        panic!("request body is not JSON");
    }
    let f = Fields::from_body(req)?;
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    let bank_code_std = f.digits("bank_code_std", 3)?;
    let account_num = f.required("account_num")?;
    if account_num.len() > 16 || !account_num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field("account_num", "1 to 16 digits"));
    }
    // The type is a single space for a birth date, so it may not be trimmed away.
    let info_type = f
        .optional("account_holder_info_type")?
        .ok_or_else(|| ApiError::missing_field("account_holder_info_type"))?;
    sfop_sdk::fields::one_of("account_holder_info_type", info_type, &[" ", "6"])?;
    let info = if info_type == "6" {
        f.digits("account_holder_info", 10)?
    } else {
        f.digits("account_holder_info", 6)?
    };
    f.dtime("tran_dtime")?;
    let r = ledger::real_name(&ledger::RealNameQuery {
        bank_tran_id: bank_tran_id.into(),
        account: ledger::AccountRef {
            bank_code_std: bank_code_std.into(),
            account_num: account_num.into(),
        },
        account_holder_info_type: info_type.into(),
        account_holder_info: info.into(),
    })
    .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    Ok(bank_success(
        &r.answer,
        json!({
            "bank_code_std": r.bank_code_std,
            "bank_name": r.bank_name,
            "account_num": r.account_num,
            "account_holder_info_type": r.account_holder_info_type,
            "account_holder_info": r.account_holder_info,
            "account_holder_name": r.account_holder_name,
            "account_type": r.account_type,
        }),
    ))
}

api!(handle);
