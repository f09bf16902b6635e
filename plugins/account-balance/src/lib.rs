//! `GET /v2.0/account/balance/fin_num`: the balance of a registered account.
//! The bank checks that the number is the caller's user's and that inquiry
//! consent is live.

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_query(req);
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    let fintech_use_num = f.fintech_use_num("fintech_use_num")?;
    f.dtime("tran_dtime")?;
    let b = ledger::balance(bank_tran_id, fintech_use_num)
        .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    Ok(bank_success(
        &b.answer,
        json!({
            "bank_name": b.bank_name,
            "fintech_use_num": b.fintech_use_num,
            "balance_amt": b.balance_amt.to_string(),
            "available_amt": b.available_amt.to_string(),
            "account_type": b.account_type,
            "product_name": b.product_name,
            "account_issue_date": b.account_issue_date,
            "maturity_date": b.maturity_date.unwrap_or_default(),
            "last_tran_date": b.last_tran_date.unwrap_or_default(),
        }),
    ))
}

api!(handle);
