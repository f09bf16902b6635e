//! `POST /v2.0/inquiry/remit_list`: the deposits into one of the calling
//! institution's own accounts and who sent each, 25 per page.

use serde_json::{Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, fields, ledger, yn};

const PAGE: u32 = 25;

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    let bank_code_std = f.digits("bank_code_std", 3)?;
    let account_num = f.required("account_num")?;
    if account_num.len() > 16 || !account_num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field("account_num", "1 to 16 digits"));
    }
    let from = format!("{}{}", f.date("from_date")?, f.time("from_time")?);
    let to = format!("{}{}", f.date("to_date")?, f.time("to_time")?);
    if from > to {
        return Err(ApiError::invalid_field(
            "from_date",
            "no later than to_date",
        ));
    }
    let sort_order = match f.one_of("sort_order", &["D", "A"])? {
        "A" => ledger::SortOrder::Ascending,
        _ => ledger::SortOrder::Descending,
    };
    f.dtime("tran_dtime")?;
    let cursor = f.text("befor_inquiry_trace_info", 20)?;
    if !cursor.is_empty() {
        fields::digits("befor_inquiry_trace_info", cursor, 20)?;
    }
    let page = ledger::remit_list(&ledger::RemitQuery {
        bank_tran_id: bank_tran_id.into(),
        bank_code_std: bank_code_std.into(),
        account_num: account_num.into(),
        from_dtime: from,
        to_dtime: to,
        sort_order,
        cursor: (!cursor.is_empty()).then(|| cursor.to_owned()),
        page_size: PAGE,
    })
    .map_err(|e| ApiError::from_bank(e, bank_tran_id))?;
    let res_list: Vec<Value> = page
        .postings
        .iter()
        .map(|p| {
            json!({
                "tran_date": p.tran_date,
                "tran_time": p.tran_time,
                "print_content": p.print_content,
                "tran_amt": p.tran_amt.to_string(),
                "remitter_name": p.counterparty_name,
                "remitter_bank_code": p.counterparty_bank_code,
                "remitter_account_num": p.counterparty_account_num_masked,
            })
        })
        .collect();
    Ok(bank_success(
        &page.answer,
        json!({
            "bank_code_std": bank_code_std,
            "bank_name": page.bank_name,
            "account_num_masked": page.account_num_masked,
            "total_record_cnt": page.total_record_cnt.to_string(),
            "page_record_cnt": res_list.len().to_string(),
            "next_page_yn": yn(page.next_cursor.is_some()),
            "befor_inquiry_trace_info": page.next_cursor.unwrap_or_default(),
            "res_list": res_list,
        }),
    ))
}

api!(handle);
