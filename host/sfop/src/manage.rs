//! The management center's admin API on the platform router:
//! `/admin/v1/apis/*` and `/admin/v1/audit*`, authorised by admin biscuits
//! (`role("admin")`) like the rest of the admin API; deny by default. The
//! router is built after the management center is open, so it holds the
//! center itself: no slot to fill later.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{MethodFilter, on};
use axum::{Extension, Router};
use sfop_gateway::platform::{Body, BodyLimit, Enveloped};
use sfop_management::{Management, admin};

use crate::admin_http::Admin;
use crate::plane::EmbeddedPlane;

/// The management center the admin API acts on.
pub type Center = Arc<Management<EmbeddedPlane>>;

/// Every route of `admin::ROUTES` (the management center's list), with
/// bodies up to `admin::MAX_UPLOAD` (a package), read only once the caller
/// is an admin (the router's admin layer).
pub fn routes(management: Center) -> Router {
    let mut router = Router::new();
    for (method, path) in admin::ROUTES {
        match Method::from_bytes(method.as_bytes())
            .ok()
            .and_then(|m| MethodFilter::try_from(m).ok())
        {
            Some(filter) => router = router.route(path, on(filter, call)),
            None => tracing::error!(
                method,
                path,
                "admin route with an unknown method: not served"
            ),
        }
    }
    router
        .layer(Extension(BodyLimit(admin::MAX_UPLOAD)))
        .with_state(management)
}

async fn call(
    State(management): State<Center>,
    Admin(actor): Admin,
    method: Method,
    uri: Uri,
    Body(body): Body,
) -> Enveloped<serde_json::Value> {
    let (status, answer) = admin::handle(
        &management,
        &actor,
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or_default(),
        &body,
    )
    .await;
    Enveloped(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        answer,
    )
}
