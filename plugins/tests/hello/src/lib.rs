//! The smallest useful API: a constant answer in the open-banking envelope,
//! no capability imported. What the gateway costs per request is measured
//! against this plugin (`cargo xtask bench`, scenario B1), so that the
//! plugin's own work does not hide the gateway's.

use sfop_sdk::{ApiError, Request, Response, api};

fn handle(_req: &Request) -> Result<Response, ApiError> {
    Ok(Response::success(
        &serde_json::json!({ "greeting": "hello" }),
    ))
}

api!(handle);
