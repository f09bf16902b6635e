//! The management center's admin API on the gateway: `/admin/v1/apis/*` and
//! `/admin/v1/audit*`, authorised by admin biscuits (`role("admin")`) like
//! the rest of the admin API; deny by default.

use std::sync::{Arc, OnceLock, Weak};

use serde_json::json;
use sfop_auth::TokenAuthorizer;
use sfop_gateway::{Endpoint, EndpointFuture, Gateway, NativeRequest, NativeResponse, RouteTable};
use sfop_management::{Management, admin};

use crate::admin_http;
use crate::plane::EmbeddedPlane;

/// Where the endpoint finds the management center, which is built after the
/// route table that mounts the endpoint (the data plane owns that table).
/// Weak: the management center owns the data plane, which owns the table.
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<OnceLock<Weak<Management<EmbeddedPlane>>>>);

impl Slot {
    pub fn fill(&self, management: &Arc<Management<EmbeddedPlane>>) {
        // Filled once at start; a second fill would be a wiring bug, and the
        // first value stays.
        let _ = self.0.set(Arc::downgrade(management));
    }

    /// The management center, once it is open and while the platform runs.
    pub fn get(&self) -> Option<Arc<Management<EmbeddedPlane>>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

/// Mounts the admin API of the management center.
pub fn mount(
    gateway: &Gateway,
    routes: &mut RouteTable,
    slot: &Slot,
    authorizer: Arc<TokenAuthorizer>,
) -> anyhow::Result<()> {
    routes.add_static(
        admin::ROUTES,
        gateway.native(Arc::new(ManagementEndpoint {
            slot: slot.clone(),
            authorizer,
        })),
    )?;
    Ok(())
}

#[derive(Debug)]
struct ManagementEndpoint {
    slot: Slot,
    authorizer: Arc<TokenAuthorizer>,
}

impl Endpoint for ManagementEndpoint {
    fn name(&self) -> &str {
        "management"
    }

    fn max_body(&self) -> usize {
        admin::MAX_UPLOAD
    }

    /// Admins only, checked before the gateway reads the body.
    fn admit(&self, head: &hyper::http::request::Parts) -> Result<usize, NativeResponse> {
        admin_http::admit(&self.authorizer, head, self.max_body())
    }

    fn handle<'a>(&'a self, req: NativeRequest<'a>) -> EndpointFuture<'a> {
        Box::pin(async move {
            let actor = match admin_http::admin(&self.authorizer, &req) {
                Ok(actor) => actor,
                Err(refusal) => return refusal,
            };
            let Some(management) = self.slot.get() else {
                return admin_http::json(
                    503,
                    json!({ "rsp_code": "A0013", "rsp_message": "the management center is starting" }),
                );
            };
            let (status, body) = admin::handle(
                &management,
                &actor,
                req.method,
                req.path,
                req.query,
                req.body,
            )
            .await;
            admin_http::json(status, body)
        })
    }
}
