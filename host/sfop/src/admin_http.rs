//! What every admin endpoint on the gateway shares: the admin check (an
//! admin biscuit, `role("admin")`; deny by default) and JSON answers in the
//! common envelope.

use serde_json::{Value, json};
use sfop_auth::TokenAuthorizer;
use sfop_gateway::{NativeRequest, NativeResponse};

/// A JSON answer; the gateway adds `api_tran_id` and `api_tran_dtm`.
pub fn json(status: u16, body: Value) -> NativeResponse {
    NativeResponse {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=UTF-8".into(),
        )],
        body: body.to_string().into_bytes(),
        envelope: true,
    }
}

/// The admin behind `req`'s bearer token, or the refusal to answer with.
pub fn admin(
    authorizer: &TokenAuthorizer,
    req: &NativeRequest<'_>,
) -> Result<String, NativeResponse> {
    admin_of(authorizer, req.headers)
}

/// An admin endpoint's admission: the caller must be an admin before the
/// gateway reads any of the body, then up to `max_body` bytes are read.
pub fn admit(
    authorizer: &TokenAuthorizer,
    head: &hyper::http::request::Parts,
    max_body: usize,
) -> Result<usize, NativeResponse> {
    admin_of(authorizer, &head.headers).map(|_| max_body)
}

fn admin_of(
    authorizer: &TokenAuthorizer,
    headers: &hyper::HeaderMap,
) -> Result<String, NativeResponse> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    authorizer.authorize_admin(authorization).map_err(|d| {
        json(
            d.status,
            json!({ "rsp_code": d.rsp_code, "rsp_message": d.message }),
        )
    })
}

/// The admin a request was admitted as, by [`admin_only`].
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Admin {
    type Rejection = sfop_gateway::PlatformError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        // Only routes behind `admin_only` take an `Admin`: without one, the
        // router was built wrong, and nothing is served.
        parts.extensions.get::<Admin>().cloned().ok_or_else(|| {
            sfop_gateway::PlatformError::internal("the admin check", "route not behind admin_only")
        })
    }
}

/// The admin API's admission, as a layer on its routes: the caller must
/// be an admin (an admin biscuit, `role("admin")`) from the request head,
/// before any of the body is read; a refusal is the answer.
pub async fn admin_only(
    axum::extract::State(authorizer): axum::extract::State<std::sync::Arc<TokenAuthorizer>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match authorizer.authorize_admin(authorization) {
        Ok(admin) => {
            request.extensions_mut().insert(Admin(admin));
            next.run(request).await
        }
        Err(d) => {
            sfop_gateway::PlatformError::refused(d.status, d.rsp_code, d.message).into_response()
        }
    }
}
