//! `POST /v2.0/transfer/deposit/fin_num` and `/v2.0/transfer/deposit/acnt_num`:
//! move money from the institution's contract account to a recipient (a
//! refund, a payout), named by fintech number or by bank and account
//! number. As in the reference, `req_cnt` is 1. Exactly once per
//! `bank_tran_id`; answered only when durable.

use serde_json::{Map, Value, json};
use sfop_sdk::{ApiError, Fields, Request, Response, api, bank_answer_fields, fields, ledger};

const BY_ACCOUNT: &str = "/v2.0/transfer/deposit/acnt_num";

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_body(req)?;
    f.one_of("cntr_account_type", &["N"])?;
    let cntr_account_num = f.required("cntr_account_num")?;
    fields::max_chars("cntr_account_num", cntr_account_num, 16)?;
    let wd_pass_phrase = f.required("wd_pass_phrase")?;
    let wd_print_content = f.text("wd_print_content", 20)?;
    let name_check = f.one_of("name_check_option", &["on", "off"])? == "on";
    f.dtime("tran_dtime")?;
    f.one_of("req_cnt", &["1"])?;
    let items = f.list("req_list")?;
    let [item] = items.as_slice() else {
        return Err(ApiError::invalid_field(
            "req_list",
            "one item, as req_cnt says",
        ));
    };
    let tran_no = item.one_of("tran_no", &["1"])?;
    let bank_tran_id = item.bank_tran_id("bank_tran_id")?;
    let recipient = if req.path() == BY_ACCOUNT {
        let bank = item.digits("bank_code_std", 3)?;
        let num = item.required("account_num")?;
        if num.len() > 16 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid_field(
                "req_list[0].account_num",
                "1 to 16 digits",
            ));
        }
        let holder = item.required("account_holder_name")?;
        fields::max_chars("req_list[0].account_holder_name", holder, 20)?;
        ledger::Recipient::Account((
            ledger::AccountRef {
                bank_code_std: bank.into(),
                account_num: num.into(),
            },
            name_check.then(|| holder.to_owned()),
        ))
    } else {
        ledger::Recipient::FintechUseNum(item.fintech_use_num("fintech_use_num")?.into())
    };
    let print_content = item.required("print_content")?;
    fields::max_chars("req_list[0].print_content", print_content, 20)?;
    let tran_amt = item.amount("tran_amt")?;
    let req_client_name = item.required("req_client_name")?;
    let req_client_num = item.required("req_client_num")?;
    let transfer_purpose = item.one_of("transfer_purpose", &["TR", "ST", "RC", "AU"])?;
    let outcome = ledger::deposit(&ledger::DepositRequest {
        bank_tran_id: bank_tran_id.into(),
        recipient,
        tran_amt,
        cntr_account_num: cntr_account_num.into(),
        wd_pass_phrase: wd_pass_phrase.into(),
        wd_print_content: wd_print_content.into(),
        print_content: print_content.into(),
        req_client_name: req_client_name.into(),
        req_client_num: req_client_num.into(),
        transfer_purpose: transfer_purpose.into(),
    });
    match outcome {
        Ok(receipt) => {
            let (wd, dps) = (&receipt.wd, &receipt.dps);
            let mut line = bank_answer_fields(&receipt.answer);
            line.extend(object(json!({
                "tran_no": tran_no,
                "fintech_use_num": dps.fintech_use_num.clone().unwrap_or_default(),
                "account_alias": dps.account_alias.clone().unwrap_or_default(),
                "bank_code_std": dps.bank_code_std,
                "bank_name": dps.bank_name,
                "account_num_masked": dps.account_num_masked,
                "print_content": dps.print_content,
                "account_holder_name": dps.account_holder_name,
                "tran_amt": receipt.tran_amt.to_string(),
            })));
            Ok(Response::success(&json!({
                "wd_bank_code_std": wd.bank_code_std,
                "wd_bank_name": wd.bank_name,
                "wd_account_num_masked": wd.account_num_masked,
                "wd_print_content": wd.print_content,
                "wd_account_holder_name": wd.account_holder_name,
                "res_cnt": "1",
                "res_list": [line],
            })))
        }
        // A bank's refusal of the item: its codes at the top, and the item
        // with the bank's answer, as the reference answers one-item lists.
        Err(ledger::Error::Refused(r)) if r.bank.is_some() => {
            let mut line = r.bank.as_ref().map(bank_answer_fields).unwrap_or_default();
            line.insert("tran_no".into(), tran_no.into());
            line.insert("tran_amt".into(), tran_amt.to_string().into());
            Err(ApiError {
                rsp_code: r.rsp_code,
                rsp_message: r.rsp_message,
                fields: object(json!({ "res_cnt": "1", "res_list": [line] })),
            })
        }
        Err(e) => Err(ApiError::from_bank(e, bank_tran_id)),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

api!(handle);
