//! `POST /v2.0/transfer/withdraw/fin_num`: move money from the user's
//! account to the institution's contract account (a payment). Exactly once
//! per `bank_tran_id`; answered only when durable.

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    f.one_of("cntr_account_type", &["N"])?;
    let cntr_account_num = f.required("cntr_account_num")?;
    sfop_sdk::fields::max_chars("cntr_account_num", cntr_account_num, 16)?;
    let dps_print_content = f.required("dps_print_content")?;
    sfop_sdk::fields::max_chars("dps_print_content", dps_print_content, 20)?;
    let fintech_use_num = f.fintech_use_num("fintech_use_num")?;
    let wd_print_content = f.text("wd_print_content", 20)?;
    let tran_amt = f.amount("tran_amt")?;
    f.dtime("tran_dtime")?;
    let req_client_name = f.required("req_client_name")?;
    sfop_sdk::fields::max_chars("req_client_name", req_client_name, 20)?;
    let req_client_num = f.required("req_client_num")?;
    sfop_sdk::fields::max_chars("req_client_num", req_client_num, 20)?;
    if let Some(n) = f
        .optional("req_client_fintech_use_num")?
        .filter(|n| !n.is_empty())
    {
        sfop_sdk::fields::fintech_use_num("req_client_fintech_use_num", n)?;
    }
    let transfer_purpose = f.one_of("transfer_purpose", &["TR", "ST", "RC", "AU"])?;
    let receipt = ledger::withdraw(&ledger::WithdrawRequest {
        bank_tran_id: bank_tran_id.into(),
        fintech_use_num: fintech_use_num.into(),
        tran_amt,
        cntr_account_num: cntr_account_num.into(),
        wd_print_content: wd_print_content.into(),
        dps_print_content: dps_print_content.into(),
        req_client_name: req_client_name.into(),
        req_client_num: req_client_num.into(),
        transfer_purpose: transfer_purpose.into(),
        recv_client_name: f.text("recv_client_name", 20)?.into(),
        recv_client_bank_code: f.text("recv_client_bank_code", 3)?.into(),
        recv_client_account_num: f.text("recv_client_account_num", 16)?.into(),
    })
    .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    let (wd, dps) = (&receipt.wd, &receipt.dps);
    Ok(bank_success(
        &receipt.answer,
        json!({
            "dps_bank_code_std": dps.bank_code_std,
            "dps_bank_name": dps.bank_name,
            "dps_account_num_masked": dps.account_num_masked,
            "dps_print_content": dps.print_content,
            "dps_account_holder_name": dps.account_holder_name,
            "fintech_use_num": wd.fintech_use_num.clone().unwrap_or_default(),
            "account_alias": wd.account_alias.clone().unwrap_or_default(),
            "bank_code_std": wd.bank_code_std,
            "bank_name": wd.bank_name,
            "account_num_masked": wd.account_num_masked,
            "print_content": wd.print_content,
            "account_holder_name": wd.account_holder_name,
            "tran_amt": receipt.tran_amt.to_string(),
            "wd_limit_remain_amt": receipt.wd_limit_remain_amt.unwrap_or_default().to_string(),
        }),
    ))
}

api!(handle);
