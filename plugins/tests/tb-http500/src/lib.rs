//! Testbed acceptance plugin: the real-name check, but every business
//! failure (format error, bank refusal, outage) is answered with HTTP 500
//! instead of HTTP 200 and its `rsp_code`. Must fail `CONF-BIZ-200` only.

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, ledger};

fn check(req: &Request) -> Result<Response, ApiError> {
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

/// The mistake under test: business failures as HTTP errors.
fn handle(req: &Request) -> Result<Response, ApiError> {
    Ok(check(req).unwrap_or_else(|e| {
        let body = json!({ "rsp_code": e.rsp_code, "rsp_message": e.rsp_message });
        Response::raw(500, "application/json; charset=UTF-8", body.to_string())
    }))
}

api!(handle);
