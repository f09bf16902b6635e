//! The sandbox's scripted faults on the admin API: `/admin/v1/sandbox/faults`
//! (list, add) and its `remove` and `clear` actions, authorised by admin
//! biscuits (`role("admin")`) like the rest of the admin API; deny by
//! default. Every rule names a registered OAuth client: the rules apply to
//! that client's calls only, everyone else sees the stateful virtual bank
//! (docs/adr/0010-sandbox-faults.md).

use std::sync::Arc;

use serde_json::{Value, json};
use sfop_auth::{ClientRegistry, TokenAuthorizer};
use sfop_gateway::{Endpoint, EndpointFuture, Gateway, NativeRequest, NativeResponse, RouteTable};
use sfop_vbank::faults::{FaultError, FaultRule, FaultScript, RuleError, Scripted};

use crate::admin_http;

/// The list, and adding a rule.
pub const FAULTS: &str = "/admin/v1/sandbox/faults";
/// Removing one rule by id: `{"id": 3}`.
pub const REMOVE: &str = "/admin/v1/sandbox/faults/remove";
/// Removing every rule, or every rule of `{"client_id": "…"}`.
pub const CLEAR: &str = "/admin/v1/sandbox/faults/clear";

/// The routes of the endpoint.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", FAULTS),
    ("POST", FAULTS),
    ("POST", REMOVE),
    ("POST", CLEAR),
];

/// Largest request body: a rule is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

/// Mounts the endpoint.
pub fn mount(
    gateway: &Gateway,
    routes: &mut RouteTable,
    faults: FaultScript,
    clients: ClientRegistry,
    authorizer: Arc<TokenAuthorizer>,
) -> anyhow::Result<()> {
    routes.add_static(
        ROUTES,
        gateway.native(Arc::new(SandboxEndpoint {
            faults,
            clients,
            authorizer,
        })),
    )?;
    Ok(())
}

#[derive(Debug)]
struct SandboxEndpoint {
    faults: FaultScript,
    clients: ClientRegistry,
    authorizer: Arc<TokenAuthorizer>,
}

impl Endpoint for SandboxEndpoint {
    fn name(&self) -> &str {
        "sandbox"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    /// Admins only, checked before the gateway reads the body.
    fn admit(&self, head: &hyper::http::request::Parts) -> Result<usize, NativeResponse> {
        admin_http::admit(&self.authorizer, head, self.max_body())
    }

    fn handle<'a>(&'a self, req: NativeRequest<'a>) -> EndpointFuture<'a> {
        Box::pin(std::future::ready(self.respond(&req)))
    }
}

fn invalid(field: &str, message: impl std::fmt::Display) -> NativeResponse {
    admin_http::json(
        400,
        json!({ "rsp_code": "A0004", "rsp_message": format!("{field}: {message}") }),
    )
}

fn listed(rules: &[Scripted]) -> Value {
    json!({
        "rsp_code": "A0000",
        "rsp_message": "",
        "res_cnt": rules.len().to_string(),
        "res_list": rules,
    })
}

impl SandboxEndpoint {
    fn respond(&self, req: &NativeRequest<'_>) -> NativeResponse {
        let admin = match admin_http::admin(&self.authorizer, req) {
            Ok(admin) => admin,
            Err(refusal) => return refusal,
        };
        if req.method == "GET" {
            return admin_http::json(200, listed(&self.faults.rules()));
        }
        let body: Value = if req.body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(req.body) {
                Ok(v) => v,
                Err(e) => return invalid("body", format!("not JSON: {e}")),
            }
        };
        match req.path {
            REMOVE => self.remove(&admin, &body),
            CLEAR => self.clear(&admin, &body),
            _ => self.add(&admin, &body),
        }
    }

    fn add(&self, admin: &str, body: &Value) -> NativeResponse {
        let rule = match FaultRule::from_json(body) {
            Ok(rule) => rule,
            Err(RuleError { field, message }) => return invalid(field, message),
        };
        // The sandbox scripts one app at a time; the testbed may script all.
        let Some(client_id) = rule.client_id.as_deref() else {
            return invalid(
                "client_id",
                "required: the OAuth client the rule applies to",
            );
        };
        match self.clients.get(client_id) {
            Ok(Some(_)) => {}
            Ok(None) => return invalid("client_id", format!("no registered client {client_id:?}")),
            Err(e) => return admin_http::internal("the sandbox endpoint", &e),
        }
        let shown = serde_json::to_value(&rule).unwrap_or(Value::Null);
        match self.faults.add(rule) {
            Ok(id) => {
                tracing::info!(%admin, id, rule = %shown, "sandbox fault added");
                let mut answer = json!({ "rsp_code": "A0000", "rsp_message": "", "id": id });
                if let (Some(a), Some(r)) = (answer.as_object_mut(), shown.as_object()) {
                    a.extend(r.clone());
                }
                admin_http::json(201, answer)
            }
            Err(FaultError::Invalid(RuleError { field, message })) => invalid(field, message),
            Err(e) => admin_http::internal("the sandbox endpoint", &e),
        }
    }

    fn remove(&self, admin: &str, body: &Value) -> NativeResponse {
        let Some(id) = body.get("id").and_then(Value::as_u64) else {
            return invalid("id", "required: the rule's id (a non-negative integer)");
        };
        match self.faults.remove(id) {
            Ok(true) => {
                tracing::info!(%admin, id, "sandbox fault removed");
                admin_http::json(
                    200,
                    json!({ "rsp_code": "A0000", "rsp_message": "", "id": id }),
                )
            }
            Ok(false) => admin_http::json(
                404,
                json!({ "rsp_code": "A0004", "rsp_message": format!("id: no rule {id}") }),
            ),
            Err(e) => admin_http::internal("the sandbox endpoint", &e),
        }
    }

    fn clear(&self, admin: &str, body: &Value) -> NativeResponse {
        let client_id = match body.get("client_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(c.as_str()),
            Some(_) => return invalid("client_id", "a string, or absent for every client"),
        };
        match self.faults.clear_client(client_id) {
            Ok(removed) => {
                tracing::info!(%admin, client_id, removed, "sandbox faults cleared");
                admin_http::json(
                    200,
                    json!({ "rsp_code": "A0000", "rsp_message": "", "removed": removed }),
                )
            }
            Err(e) => admin_http::internal("the sandbox endpoint", &e),
        }
    }
}
