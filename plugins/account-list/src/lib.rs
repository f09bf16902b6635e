//! `GET /v2.0/account/list`: the accounts the user registered with the
//! calling client, cancelled ones too with `include_cancel_yn=Y`.

use serde_json::{Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, ledger, yn};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_query(req);
    let user_seq_no = f.digits("user_seq_no", 10)?;
    let include_cancelled = f.one_of("include_cancel_yn", &["Y", "N"])? == "Y";
    let newest_first = f.one_of("sort_order", &["D", "A"])? == "D";
    let user = ledger::user_info(user_seq_no).map_err(ApiError::from)?;
    let mut accounts =
        ledger::registered_accounts(user_seq_no, include_cancelled).map_err(ApiError::from)?;
    if newest_first {
        accounts.reverse();
    }
    let res_list: Vec<Value> = accounts
        .iter()
        .map(|a| {
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
                // 01 in use, 09 cancelled.
                "account_state": if a.cancelled { "09" } else { "01" },
            })
        })
        .collect();
    Ok(Response::success(&json!({
        "user_name": user.user_name,
        "res_cnt": res_list.len().to_string(),
        "res_list": res_list,
    })))
}

api!(handle);
