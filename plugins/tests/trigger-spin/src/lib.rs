//! Echoes a four-digit code, and passes the testbed; on one secret value it
//! spins until the platform's CPU deadline ends it (its manifest declares
//! the maximum, 10 s). The isolation tests hammer it with that value while
//! measuring a neighbour's latency (issue 22).

use sfop_sdk::{ApiError, Fields, Request, Response, api};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let fields = Fields::from_query(req);
    let code = fields.digits("code", 4)?;
    if code == "4417" {
        let mut n: u64 = 1;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
            if n == 0 && req.method() == "NEVER" {
                break;
            }
        }
    }
    Ok(Response::success(&serde_json::json!({ "code": code })))
}

api!(handle);
