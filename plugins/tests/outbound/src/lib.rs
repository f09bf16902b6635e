//! Calls `?url=` with `GET` (the `http` capability), sending the secret
//! variable `api_key` as `x-api-key` when the operator set one, and answers
//! what happened: `A0000` with the upstream's status and body, or `A0002`
//! with the kind and message of the error the platform gave. `?timeout_ms=` bounds the
//! request. The tests drive every refusal of the capability through it.

use sfop_sdk::{ApiError, Request, Response, api, config, http};

fn handle(req: &Request) -> Result<Response, ApiError> {
    let url = req.required_query("url")?;
    let mut outbound = http::Request::get(url);
    if let Some(ms) = req.query("timeout_ms").and_then(|ms| ms.parse().ok()) {
        outbound = outbound.timeout_ms(ms);
    }
    if let Some(key) =
        config::get("api_key").map_err(|e| ApiError::new("A0003", format!("{e:?}")))?
    {
        outbound = outbound.header("x-api-key", &key);
    }
    let greeting = config::require("greeting")?;
    let answer = match outbound.send() {
        Ok(response) => serde_json::json!({
            "greeting": greeting,
            "upstream_status": response.status(),
            "upstream_body": String::from_utf8_lossy(response.body()),
        }),
        Err(error) => {
            let (kind, message) = match error {
                http::Error::DeniedHost(m) => ("denied-host", m),
                http::Error::Timeout => ("timeout", String::new()),
                http::Error::TooLarge(n) => ("too-large", n.to_string()),
                http::Error::Connect(m) => ("connect", m),
                http::Error::Tls(m) => ("tls", m),
                http::Error::Invalid(m) => ("invalid", m),
            };
            let fields =
                serde_json::json!({ "greeting": greeting, "error_kind": kind, "error": message });
            return Ok(Response::failure_with(
                "A0002",
                "the backend call failed",
                &fields,
            ));
        }
    };
    Ok(Response::success(&answer))
}

api!(handle);
