//! Uses the `kv` capability that its manifest does not declare.

use sfop_sdk::{ApiError, Request, Response, api, kv};

fn handle(_req: &Request) -> Result<Response, ApiError> {
    let hits = kv::get("hits")?;
    Ok(Response::success(
        &serde_json::json!({ "hits": hits.map(|h| h.len()) }),
    ))
}

api!(handle);
