//! `GET /v2.0/core/balance?account_num=`: the balance of an account, from
//! the bank's own core-banking system (the README's "Calling your bank's own
//! backend"; `examples/bank-backend` stands in for that system).

use sfop_sdk::{ApiError, Fields, Request, Response, api, config, http};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let f = Fields::from_query(req);
    let account = f.digits("account_num", 12)?;
    let url = format!("{}/v1/accounts/{account}", config::require("core_url")?);
    let answer = http::Request::get(&url)
        .header(
            "authorization",
            &format!("Bearer {}", config::require("core_api_key")?),
        )
        .timeout_ms(800)
        .send()?; // a timeout is A0017, an upstream failure A0002
    if answer.status() != 200 {
        return Err(ApiError::new(
            "A0002",
            format!("core banking answered HTTP {}", answer.status()),
        ));
    }
    let account: serde_json::Value = answer.json()?;
    Ok(Response::success(&account))
}

api!(handle);
