//! Panics on every request; with `panic = "abort"` that is a Wasm trap. The
//! SDK logs the panic's message first (`log_panics`), so the platform's
//! fault line carries it.

use sfop_sdk::{ApiError, Request, Response, api};

fn handle(req: &Request) -> Result<Response, ApiError> {
    if req.method() != "NEVER" {
        panic!("test plugin trap: deliberate panic");
    }
    Ok(Response::success(&serde_json::json!({})))
}

api!(handle, log_panics);
