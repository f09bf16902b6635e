//! `POST /v2.0/inquiry/receive`: before a deposit, whether the recipient
//! account can take it now, and who holds it.

use serde_json::json;
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, fields, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    f.one_of("cntr_account_type", &["N"])?;
    let cntr_account_num = f.required("cntr_account_num")?;
    fields::max_chars("cntr_account_num", cntr_account_num, 16)?;
    let bank_code_std = f.digits("bank_code_std", 3)?;
    let account_num = f.required("account_num")?;
    if account_num.len() > 16 || !account_num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field("account_num", "1 to 16 digits"));
    }
    let print_content = f.text("print_content", 20)?;
    let tran_amt = f.amount("tran_amt")?;
    f.required("req_client_name")?;
    f.required("req_client_num")?;
    f.one_of("transfer_purpose", &["TR", "ST", "RC", "AU"])?;
    f.dtime("tran_dtime")?;
    let r = ledger::receive(&ledger::ReceiveQuery {
        bank_tran_id: bank_tran_id.into(),
        recipient: ledger::Recipient::Account((
            ledger::AccountRef {
                bank_code_std: bank_code_std.into(),
                account_num: account_num.into(),
            },
            None,
        )),
        tran_amt,
        cntr_account_num: cntr_account_num.into(),
        print_content: print_content.into(),
    })
    .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    Ok(bank_success(
        &r.answer,
        json!({
            "bank_code_std": r.dps.bank_code_std,
            "bank_name": r.dps.bank_name,
            "account_num_masked": r.dps.account_num_masked,
            "account_holder_name": r.dps.account_holder_name,
            "print_content": r.dps.print_content,
            "tran_amt": r.tran_amt.to_string(),
            "cntr_account_type": "N",
            "cntr_account_num": cntr_account_num,
            "wd_bank_code_std": r.wd.bank_code_std,
            "wd_bank_name": r.wd.bank_name,
            "wd_account_num_masked": r.wd.account_num_masked,
            "wd_account_holder_name": r.wd.account_holder_name,
        }),
    ))
}

api!(handle);
