//! `POST /v2.0/transfer/result`: the final outcome of up to 25 earlier
//! withdrawals (`check_type` 1) or deposits (2) of the calling institution,
//! by original `bank_tran_id`, date and amount. Each item carries the
//! original answer: the bank's codes and, as an sfop extension, the
//! original `rsp_code`/`rsp_message` (limits refusals have no bank code).

use serde_json::{Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_answer_fields, fields, ledger};

const MAX_ITEMS: usize = 25;

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    let kind = match f.one_of("check_type", &["1", "2"])? {
        "1" => ledger::TransferKind::Withdraw,
        _ => ledger::TransferKind::Deposit,
    };
    f.dtime("tran_dtime")?;
    let req_cnt = f.required("req_cnt")?;
    let items = f.list("req_list")?;
    let count_ok = req_cnt.parse::<usize>().ok() == Some(items.len())
        && (1..=MAX_ITEMS).contains(&items.len());
    if !count_ok {
        return Err(ApiError::invalid_field(
            "req_cnt",
            "1 to 25, the number of items in req_list",
        ));
    }
    let mut tran_nos = Vec::with_capacity(items.len());
    let mut queries = Vec::with_capacity(items.len());
    for item in &items {
        let tran_no = item.required("tran_no")?;
        fields::max_chars("tran_no", tran_no, 2)?;
        tran_nos.push(tran_no.to_owned());
        queries.push(ledger::ResultQuery {
            kind,
            org_bank_tran_id: item.bank_tran_id("org_bank_tran_id")?.into(),
            org_bank_tran_date: item.date("org_bank_tran_date")?.into(),
            org_tran_amt: item.amount("org_tran_amt")?,
        });
    }
    let results = ledger::transfer_result(&queries).map_err(ApiError::from)?;
    let res_list: Vec<Value> = results
        .into_iter()
        .zip(tran_nos.iter().zip(&queries))
        .map(|(result, (tran_no, q))| match result {
            Ok(receipt) => {
                let mut line = bank_answer_fields(&receipt.answer);
                // The user's side: where money left on a withdrawal, arrived on a deposit.
                let user = match kind {
                    ledger::TransferKind::Withdraw => &receipt.wd,
                    ledger::TransferKind::Deposit => &receipt.dps,
                };
                for (k, v) in [
                    ("tran_no", tran_no.clone()),
                    ("rsp_code", "A0000".to_owned()),
                    ("rsp_message", String::new()),
                    (
                        "fintech_use_num",
                        user.fintech_use_num.clone().unwrap_or_default(),
                    ),
                    (
                        "account_alias",
                        user.account_alias.clone().unwrap_or_default(),
                    ),
                    ("bank_code_std", user.bank_code_std.clone()),
                    ("bank_name", user.bank_name.clone()),
                    ("account_num_masked", user.account_num_masked.clone()),
                    ("print_content", user.print_content.clone()),
                    ("account_holder_name", user.account_holder_name.clone()),
                    ("tran_amt", receipt.tran_amt.to_string()),
                    (
                        "wd_limit_remain_amt",
                        receipt
                            .wd_limit_remain_amt
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                    ),
                ] {
                    line.insert(k.into(), v.into());
                }
                Value::Object(line)
            }
            Err(refusal) => {
                let mut line = refusal
                    .bank
                    .as_ref()
                    .map(bank_answer_fields)
                    .unwrap_or_else(|| {
                        bank_answer_fields(&ledger::BankAnswer {
                            bank_tran_id: q.org_bank_tran_id.clone(),
                            bank_tran_date: q.org_bank_tran_date.clone(),
                            bank_code_tran: String::new(),
                            bank_rsp_code: String::new(),
                            bank_rsp_message: String::new(),
                        })
                    });
                line.insert("tran_no".into(), tran_no.clone().into());
                line.insert("rsp_code".into(), refusal.rsp_code.into());
                line.insert("rsp_message".into(), refusal.rsp_message.into());
                line.insert("tran_amt".into(), q.org_tran_amt.to_string().into());
                Value::Object(line)
            }
        })
        .collect();
    Ok(Response::success(&json!({
        "res_cnt": res_list.len().to_string(),
        "res_list": res_list,
    })))
}

api!(handle);
