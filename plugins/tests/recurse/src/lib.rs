//! Recurses without end: the guest's stack overflows, which is a trap.

use sfop_sdk::{ApiError, Request, Response, api};

#[inline(never)]
#[allow(unconditional_recursion)]
fn deeper(n: u64, frame: &mut [u64; 32]) -> u64 {
    frame[(n % 32) as usize] = n;
    let mut next = std::hint::black_box([0u64; 32]);
    std::hint::black_box(deeper(n + 1, &mut next)) + frame[0]
}

fn handle(req: &Request) -> Result<Response, ApiError> {
    let mut frame = [0u64; 32];
    let depth = deeper(req.body().len() as u64, &mut frame);
    Ok(Response::success(
        &serde_json::json!({ "depth": depth.to_string() }),
    ))
}

api!(handle);
