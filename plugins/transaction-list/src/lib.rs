//! `GET /v2.0/account/transaction_list/fin_num`: an account's postings in a
//! date (or date-time) range, 25 per page; pass `befor_inquiry_trace_info`
//! from one page to get the next while `next_page_yn` is `Y`.

use serde_json::{Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_success, fields, ledger, yn};

/// Postings per page.
const PAGE: u32 = 25;

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_query(req);
    let bank_tran_id = f.bank_tran_id("bank_tran_id")?;
    let fintech_use_num = f.fintech_use_num("fintech_use_num")?;
    let inquiry_type = match f.one_of("inquiry_type", &["A", "I", "O"])? {
        "I" => ledger::InoutFilter::Deposits,
        "O" => ledger::InoutFilter::Withdrawals,
        _ => ledger::InoutFilter::All,
    };
    let by_time = f.one_of("inquiry_base", &["D", "T"])? == "T";
    let from_date = f.date("from_date")?;
    let to_date = f.date("to_date")?;
    let (from_time, to_time) = if by_time {
        (f.time("from_time")?, f.time("to_time")?)
    } else {
        ("000000", "235959")
    };
    let sort_order = match f.one_of("sort_order", &["D", "A"])? {
        "A" => ledger::SortOrder::Ascending,
        _ => ledger::SortOrder::Descending,
    };
    f.dtime("tran_dtime")?;
    let cursor = f.text("befor_inquiry_trace_info", 20)?;
    if !cursor.is_empty() {
        fields::digits("befor_inquiry_trace_info", cursor, 20)?;
    }
    let (from, to) = (
        format!("{from_date}{from_time}"),
        format!("{to_date}{to_time}"),
    );
    if from > to {
        return Err(ApiError::invalid_field(
            "from_date",
            "no later than to_date",
        ));
    }
    let page = ledger::transactions(&ledger::HistoryQuery {
        bank_tran_id: bank_tran_id.into(),
        fintech_use_num: fintech_use_num.into(),
        inquiry_type,
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
                "inout_type": match p.direction {
                    ledger::Direction::Deposit => "입금",
                    ledger::Direction::Withdrawal => "출금",
                },
                "tran_type": p.tran_type,
                "print_content": p.print_content,
                "tran_amt": p.tran_amt.to_string(),
                "after_balance_amt": p.after_balance_amt.to_string(),
                "branch_name": p.branch_name,
            })
        })
        .collect();
    Ok(bank_success(
        &page.answer,
        json!({
            "bank_name": page.bank_name,
            "fintech_use_num": fintech_use_num,
            "balance_amt": page.balance_amt.to_string(),
            "total_record_cnt": page.total_record_cnt.to_string(),
            "page_record_cnt": res_list.len().to_string(),
            "next_page_yn": yn(page.next_cursor.is_some()),
            "befor_inquiry_trace_info": page.next_cursor.unwrap_or_default(),
            "res_list": res_list,
        }),
    ))
}

api!(handle);
