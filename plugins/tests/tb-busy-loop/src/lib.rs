//! Testbed acceptance plugin: bank status that never finishes (a busy loop
//! on every call). Only the CPU deadline ends it. Must fail `RES-RUNAWAY`.

use sfop_sdk::{ApiError, Request, Response, api, ledger};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let banks = ledger::bank_status()?;
    let mut n = banks.len() as u64 + req.body().len() as u64;
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        if n == 0 && req.method() == "NEVER" {
            break;
        }
    }
    Ok(Response::success(
        &serde_json::json!({ "res_cnt": n.to_string(), "res_list": [] }),
    ))
}

api!(handle);
