//! Testbed acceptance plugin: bank status, but each item says `bank_nm`
//! where the manifest documents `bank_name`. Must fail `CONF-FIELDS` only.

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
    bank_nm: String,
    /// `Y` available, `N` not.
    bank_status: &'static str,
}

fn handle(_req: &Request) -> Result<Response, ApiError> {
    let banks = ledger::bank_status()?;
    let res_list: Vec<BankStatus> = banks
        .into_iter()
        .map(|b| BankStatus {
            bank_code_std: b.bank_code_std,
            bank_nm: b.bank_name,
            bank_status: if b.available { "Y" } else { "N" },
        })
        .collect();
    Ok(Response::success(&BankStatusList {
        res_cnt: res_list.len().to_string(),
        res_list,
    }))
}

api!(handle);
