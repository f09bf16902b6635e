//! Allocates without end; only the gateway's memory cap ends the call.

use sfop_sdk::{ApiError, Request, Response, api};

fn handle(_req: &Request) -> Result<Response, ApiError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = hoard.len() as u8;
        hoard.push(std::hint::black_box(chunk));
        if hoard.len() == usize::MAX {
            break;
        }
    }
    Ok(Response::success(
        &serde_json::json!({ "chunks": hoard.len().to_string() }),
    ))
}

api!(handle);
