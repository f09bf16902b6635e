//! Every endpoint of the platform itself, in one place: [`router`] builds
//! the one axum router that answers them, and [`reserve`] gives their paths
//! to it in the gateway's route table, ahead of any package, so a plugin
//! can never take one over (docs/adr/0024-platform-router.md).

use std::sync::Arc;

use axum::Router;
use sfop_auth::TokenAuthorizer;
use sfop_gateway::{Gateway, RouteConflict, RouteTable};

use crate::admin_http;
use crate::auth::{self, Clients, OAuth};
use crate::institutions::{self, Onboarding};
use crate::keys::{self, Keys};
use crate::sandbox::{self, Sandbox};

/// The boxes whose endpoints the router serves.
#[derive(Debug, Clone)]
pub struct Boxes {
    /// The authorization server (OAuth 2.0, sign-in and consent pages).
    pub oauth: OAuth,
    /// The OAuth clients (fintech apps) operators register.
    pub clients: Clients,
    /// Decides who is an admin (`role("admin")`), from the request head.
    pub admins: Arc<TokenAuthorizer>,
    pub sandbox: Sandbox,
    pub keys: Keys,
    pub institutions: Onboarding,
}

/// The paths the router serves, by prefix, and the name their requests
/// are counted under.
const PREFIXES: &[(&str, &str)] = &[
    ("/oauth/2.0", "oauth"),
    (sfop_auth::oauth::UNLINK, "oauth"),
    (auth::CLIENTS, "admin"),
    ("/admin/v1/sandbox", "sandbox"),
    ("/admin/v1/keys", "admin-keys"),
    ("/admin/v1/institutions", "institutions"),
    ("/.well-known", "keys"),
];

/// Reserves the router's paths in `routes`, before any package is added.
pub fn reserve(gateway: &Gateway, routes: &mut RouteTable) -> Result<(), RouteConflict> {
    for (prefix, name) in PREFIXES {
        routes.add_prefix(prefix, gateway.platform(name))?;
    }
    Ok(())
}

/// The platform's endpoints. Admin routes admit only admins, from the
/// request head, before any of the body is read; every other route reads
/// at most `UNAUTHENTICATED_MAX_BODY` unless it says less.
pub fn router(boxes: Boxes) -> Router {
    let admin = Router::new()
        .merge(auth::client_routes(boxes.clients))
        .merge(sandbox::routes(boxes.sandbox))
        .merge(keys::admin_routes(boxes.keys.clone()))
        .merge(institutions::routes(boxes.institutions))
        .route_layer(axum::middleware::from_fn_with_state(
            boxes.admins,
            admin_http::admin_only,
        ));
    Router::new()
        .merge(admin)
        .merge(keys::public_routes(boxes.keys.ring))
        .merge(auth::oauth_routes(boxes.oauth))
}
