//! The sandbox's scripted faults on the admin API: `/admin/v1/sandbox/faults`
//! (list, add) and its `remove` and `clear` actions, authorised by admin
//! biscuits (`role("admin")`) like the rest of the admin API; deny by
//! default. Every rule names a registered OAuth client: the rules apply to
//! that client's calls only, everyone else sees the stateful virtual bank
//! (docs/adr/0010-sandbox-faults.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};
use sfop_auth::ClientRegistry;
use sfop_gateway::PlatformError;
use sfop_gateway::platform::{Body, BodyLimit, Enveloped};
use sfop_vbank::faults::{FaultError, FaultRule, FaultScript, RuleError, Scripted};

use crate::admin_http::Admin;
/// The routes' paths: the admin API's one definition, which the CLI also speaks.
pub use sfop_admin_api::sandbox::{CLEAR, FAULTS, REMOVE};

/// Largest request body: a rule is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

/// What the sandbox's handlers work on.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub faults: FaultScript,
    pub clients: ClientRegistry,
}

/// The sandbox's admin routes (the caller admitted as an admin by the
/// router's admin layer).
pub fn routes(sandbox: Sandbox) -> Router {
    Router::new()
        .route(FAULTS, get(list).post(add))
        .route(REMOVE, post(remove))
        .route(CLEAR, post(clear))
        .layer(Extension(BodyLimit(MAX_BODY)))
        .with_state(sandbox)
}

type Answer = Result<Enveloped<Value>, PlatformError>;

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> PlatformError {
    PlatformError::internal("the sandbox endpoint", e)
}

/// The script's failure: the cluster's database away is 503 `A0013` (the
/// platform's, retried later, ADR 0029); anything else is internal.
fn failed(e: FaultError) -> PlatformError {
    match e {
        FaultError::Cluster(sfop_store_pg::Error::Unavailable(cause)) => {
            tracing::warn!(%cause, "the sandbox endpoint: the cluster is unavailable");
            PlatformError::refused(
                503,
                "A0013",
                format!("the cluster database is unreachable: {cause}"),
            )
        }
        e => internal(e),
    }
}

fn listed(rules: &[Scripted]) -> Value {
    json!({
        "rsp_code": "A0000",
        "rsp_message": "",
        "res_cnt": rules.len().to_string(),
        "res_list": rules,
    })
}

/// A JSON object body; an empty body is `{}`.
fn object(body: &[u8]) -> Result<Value, PlatformError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| PlatformError::invalid("body", format!("not JSON: {e}")))
}

async fn list(State(sandbox): State<Sandbox>) -> Enveloped<Value> {
    Enveloped(StatusCode::OK, listed(&sandbox.faults.rules()))
}

async fn add(State(sandbox): State<Sandbox>, Admin(admin): Admin, Body(body): Body) -> Answer {
    let rule = FaultRule::from_json(&object(&body)?)
        .map_err(|RuleError { field, message }| PlatformError::invalid(field, message))?;
    // The sandbox scripts one app at a time; the testbed may script all.
    let Some(client_id) = rule.client_id.as_deref() else {
        return Err(PlatformError::invalid(
            "client_id",
            "required: the OAuth client the rule applies to",
        ));
    };
    if sandbox
        .clients
        .get_async(client_id)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(PlatformError::invalid(
            "client_id",
            format!("no registered client {client_id:?}"),
        ));
    }
    let shown = serde_json::to_value(&rule).unwrap_or(Value::Null);
    match sandbox.faults.add_async(rule).await {
        Ok(id) => {
            tracing::info!(%admin, id, rule = %shown, "sandbox fault added");
            let mut answer = json!({ "rsp_code": "A0000", "rsp_message": "", "id": id });
            if let (Some(a), Some(r)) = (answer.as_object_mut(), shown.as_object()) {
                a.extend(r.clone());
            }
            Ok(Enveloped(StatusCode::CREATED, answer))
        }
        Err(FaultError::Invalid(RuleError { field, message })) => {
            Err(PlatformError::invalid(field, message))
        }
        Err(e) => Err(failed(e)),
    }
}

async fn remove(State(sandbox): State<Sandbox>, Admin(admin): Admin, Body(body): Body) -> Answer {
    let Some(id) = object(&body)?.get("id").and_then(Value::as_u64) else {
        return Err(PlatformError::invalid(
            "id",
            "required: the rule's id (a non-negative integer)",
        ));
    };
    if !sandbox.faults.remove_async(id).await.map_err(failed)? {
        return Err(PlatformError::not_found("id", format!("no rule {id}")));
    }
    tracing::info!(%admin, id, "sandbox fault removed");
    Ok(Enveloped(
        StatusCode::OK,
        json!({ "rsp_code": "A0000", "rsp_message": "", "id": id }),
    ))
}

async fn clear(State(sandbox): State<Sandbox>, Admin(admin): Admin, Body(body): Body) -> Answer {
    let body = object(&body)?;
    let client_id = match body.get("client_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => {
            return Err(PlatformError::invalid(
                "client_id",
                "a string, or absent for every client",
            ));
        }
    };
    let removed = sandbox
        .faults
        .clear_client_async(client_id)
        .await
        .map_err(failed)?;
    tracing::info!(%admin, client_id, removed, "sandbox faults cleared");
    Ok(Enveloped(
        StatusCode::OK,
        json!({ "rsp_code": "A0000", "rsp_message": "", "removed": removed }),
    ))
}
