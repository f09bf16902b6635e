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
use crate::manage::{self, Center};
use crate::portal;
use crate::sandbox::{self, Sandbox};

/// The boxes whose endpoints the router serves.
#[derive(Debug, Clone)]
pub struct Boxes {
    /// The developer portal (`/portal/...`), served in every auth mode.
    pub portal: Arc<sfop_portal::Portal>,
    /// OAuth and the admin API: with auth mode `biscuit` only.
    pub admin: Option<AdminBoxes>,
}

/// The boxes behind OAuth and the admin API.
#[derive(Debug, Clone)]
pub struct AdminBoxes {
    /// The authorization server (OAuth 2.0, sign-in and consent pages).
    pub oauth: OAuth,
    /// The OAuth clients (fintech apps) operators register.
    pub clients: Clients,
    /// Decides who is an admin (`role("admin")`), from the request head.
    pub admins: Arc<TokenAuthorizer>,
    /// The management center (`/admin/v1/apis`, `/admin/v1/audit`).
    pub management: Center,
    pub sandbox: Sandbox,
    pub keys: Keys,
    pub institutions: Onboarding,
}

/// The paths of OAuth and the admin API, by prefix, and the name their
/// requests are counted under.
const ADMIN_PREFIXES: &[(&str, &str)] = &[
    ("/oauth/2.0", "oauth"),
    (sfop_auth::oauth::UNLINK, "oauth"),
    (auth::CLIENTS, "admin"),
    ("/admin/v1/apis", "management"),
    ("/admin/v1/audit", "management"),
    ("/admin/v1/sandbox", "sandbox"),
    ("/admin/v1/keys", "admin-keys"),
    ("/admin/v1/institutions", "institutions"),
    ("/.well-known", "keys"),
];

/// Reserves the router's paths in `routes`, before any package is added:
/// the portal's always, OAuth's and the admin API's `with_admin`.
pub fn reserve(
    gateway: &Gateway,
    routes: &mut RouteTable,
    with_admin: bool,
) -> Result<(), RouteConflict> {
    routes.add_prefix(sfop_portal::PREFIX, gateway.platform("portal"))?;
    if with_admin {
        for (prefix, name) in ADMIN_PREFIXES {
            routes.add_prefix(prefix, gateway.platform(name))?;
        }
    }
    Ok(())
}

/// The platform's endpoints. Admin routes admit only admins, from the
/// request head, before any of the body is read; every other route reads
/// at most `UNAUTHENTICATED_MAX_BODY` unless it says less. The portal and
/// OAuth routes answer within [`PAGE_LIMIT`].
pub fn router(boxes: Boxes) -> Router {
    let router = sfop_gateway::platform::within(portal::routes(boxes.portal), PAGE_LIMIT);
    let Some(boxes) = boxes.admin else {
        return router;
    };
    let admin = Router::new()
        .merge(manage::routes(boxes.management))
        .merge(auth::client_routes(boxes.clients))
        .merge(sandbox::routes(boxes.sandbox))
        .merge(keys::admin_routes(boxes.keys.clone()))
        .merge(institutions::routes(boxes.institutions))
        .route_layer(axum::middleware::from_fn_with_state(
            boxes.admins,
            admin_http::admin_only,
        ));
    router
        .merge(admin)
        .merge(keys::public_routes(boxes.keys.ring))
        .merge(sfop_gateway::platform::within(
            auth::oauth_routes(boxes.oauth),
            PAGE_LIMIT,
        ))
}

/// The longest a portal page or an OAuth request may take before the
/// platform answers 503 (a backstop: what they wait for is bounded below,
/// a try-it call by its API's `timeout_ms`, at most `MAX_TIMEOUT_MS`).
const PAGE_LIMIT: std::time::Duration =
    std::time::Duration::from_millis(sfop_core::manifest::MAX_TIMEOUT_MS as u64 + 5_000);
