//! Testbed acceptance plugin: bank-status 1.1.0 without `bank_status` in the
//! items, a breaking change under a minor bump. Must fail `COMPAT-SEMVER`
//! against the live bank-status 1.0.0.

use serde::Serialize;
use sfop_sdk::{ApiError, Request, Response, api, ledger};

#[derive(Serialize)]
struct BankStatusList {
    res_cnt: String,
    res_list: Vec<BankStatus>,
}

#[derive(Serialize)]
struct BankStatus {
    bank_code_std: String,
    bank_name: String,
}

fn handle(_req: &Request) -> Result<Response, ApiError> {
    let banks = ledger::bank_status()?;
    let res_list: Vec<BankStatus> = banks
        .into_iter()
        .map(|b| BankStatus {
            bank_code_std: b.bank_code_std,
            bank_name: b.bank_name,
        })
        .collect();
    Ok(Response::success(&BankStatusList {
        res_cnt: res_list.len().to_string(),
        res_list,
    }))
}

api!(handle);
