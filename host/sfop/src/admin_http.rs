//! What every admin endpoint on the platform router shares: the admin
//! check (an admin biscuit, `role("admin")`; deny by default), made from
//! the request head before any of the body is read.

use sfop_auth::TokenAuthorizer;

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
