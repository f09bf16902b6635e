//! Loops forever; only the gateway's CPU deadline ends the call.

use sfop_sdk::{ApiError, Request, Response, api};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let mut n: u64 = req.body().len() as u64;
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        if n == 0 && req.method() == "NEVER" {
            break;
        }
    }
    Ok(Response::success(
        &serde_json::json!({ "n": n.to_string() }),
    ))
}

api!(handle);
