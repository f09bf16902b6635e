//! `GET /v2.0/user/me`: the caller's user and the accounts they registered
//! with the calling client. The bank checks that `user_seq_no` is the
//! caller's own user.

use serde_json::{Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, ledger, yn};

/// One registered account as `res_list` shows it.
pub fn account_json(a: &ledger::RegisteredAccount) -> Value {
    json!({
        "fintech_use_num": a.fintech_use_num,
        "account_alias": a.account_alias,
        "bank_code_std": a.bank_code_std,
        "bank_name": a.bank_name,
        "account_num_masked": a.account_num_masked,
        "account_holder_name": a.account_holder_name,
        "account_type": a.account_type,
        "inquiry_agree_yn": yn(a.inquiry_agree_dtime.is_some()),
        "inquiry_agree_dtime": a.inquiry_agree_dtime.clone().unwrap_or_default(),
        "transfer_agree_yn": yn(a.transfer_agree_dtime.is_some()),
        "transfer_agree_dtime": a.transfer_agree_dtime.clone().unwrap_or_default(),
    })
}

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_query(req);
    let user_seq_no = f.digits("user_seq_no", 10)?;
    let user = ledger::user_info(user_seq_no).map_err(ApiError::from)?;
    let res_list: Vec<Value> = user.accounts.iter().map(account_json).collect();
    Ok(Response::success(&json!({
        "user_seq_no": user.user_seq_no,
        "user_ci": user.user_ci,
        "user_name": user.user_name,
        "res_cnt": res_list.len().to_string(),
        "res_list": res_list,
    })))
}

api!(handle);
