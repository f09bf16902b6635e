//! Echoes the request the gateway handed over, plus the platform clock, so
//! that tests can see exactly what crosses the WIT boundary.

use std::sync::atomic::{AtomicU32, Ordering};

use sfop_sdk::{ApiError, Request, Response, api, auth_context, clock, log};

/// Calls this instance has served, this one included: a global that would
/// carry state from one request to the next if an instance were reused.
static CALLS: AtomicU32 = AtomicU32::new(0);

fn handle(req: &Request) -> Result<Response, ApiError> {
    log::log(log::Level::Info, &format!("echo {}", req.path()));
    // JSON bodies are parsed, so malformed JSON gets the SDK's A0004.
    let json = match req.header("content-type") {
        Some(t) if t.starts_with("application/json") => Some(req.json::<serde_json::Value>()?),
        _ => None,
    };
    Ok(Response::success(&serde_json::json!({
        "plugin": "echo",
        "method": req.method(),
        "path": req.path(),
        "query_name": req.query("name"),
        "header_x_test": req.header("x-test"),
        "header_authorization": req.header("authorization"),
        "body": String::from_utf8_lossy(req.body()),
        "json": json,
        "seen_api_tran_id": req.api_tran_id(),
        "now_millis": clock::now_millis().to_string(),
        "instance_calls": CALLS.fetch_add(1, Ordering::Relaxed) + 1,
        "caller": auth_context::caller().map(|c| serde_json::json!({
            "client_id": c.client_id,
            "client_use_code": c.client_use_code,
            "user_seq_no": c.user_seq_no,
            "scopes": c.scopes,
            "fintech_use_nums": c.fintech_use_nums,
        })),
        // A plugin cannot forge the envelope: the gateway overwrites these.
        "api_tran_id": "forged",
    })))
}

api!(handle);
