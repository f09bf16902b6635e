//! A second component for the echo route: it answers with its own name, so
//! that a hot-swap test can check that the version the gateway reports is the
//! component that actually ran.

use sfop_sdk::{ApiError, Request, Response, api};

fn handle(req: &Request) -> Result<Response, ApiError> {
    Ok(Response::success(&serde_json::json!({
        "plugin": "release-b",
        "path": req.path(),
    })))
}

api!(handle);
