//! Testbed acceptance plugin: an `inquiry` API that imports the money-moving
//! `ledger.withdraw`. Its manifest declares `ledger`, which inquiry APIs may
//! use, so only the testbed's per-function scope policy refuses it. Must
//! fail `STATIC-KIND`.

use sfop_sdk::{ApiError, Request, Response, api, ledger};

fn handle(_req: &Request) -> Result<Response, ApiError> {
    let receipt = ledger::withdraw(&ledger::WithdrawRequest {
        bank_tran_id: "M202300001U000000001".into(),
        fintech_use_num: "120230000100000000000015".into(),
        tran_amt: 1,
        cntr_account_num: "5000000000001".into(),
        wd_print_content: String::new(),
        dps_print_content: String::new(),
        req_client_name: String::new(),
        req_client_num: String::new(),
        transfer_purpose: "TR".into(),
        recv_client_name: String::new(),
        recv_client_bank_code: String::new(),
        recv_client_account_num: String::new(),
    })
    .map_err(|e| ApiError::from_bank(e, "M202300001U000000001"))?;
    Ok(Response::success(
        &serde_json::json!({ "tran_amt": receipt.tran_amt.to_string() }),
    ))
}

api!(handle);
