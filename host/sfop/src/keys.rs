//! The root keys on the gateway: their public halves at
//! `/.well-known/sfop-keys.json` for anyone who verifies or attenuates
//! tokens offline (no authorisation, cacheable for five minutes), and
//! `/admin/v1/keys` for operators to list, rotate and retire them while the
//! platform runs (admin biscuits, `role("admin")`; deny by default).
//! `docs/keys.md` describes both.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sfop_auth::{KeyRing, PublishedKeys};
use sfop_gateway::PlatformError;
use sfop_gateway::platform::{Body, BodyLimit, Enveloped};

use crate::admin_http::Admin;
/// The routes' paths: the admin API's one definition, which the CLI also speaks.
pub use sfop_admin_api::keys::{LIST, RETIRE, ROTATE};

/// The public keys, for third parties.
pub const WELL_KNOWN: &str = "/.well-known/sfop-keys.json";
/// How long verifiers may cache [`WELL_KNOWN`], seconds. A rotation is seen
/// by them within this time; a new key signs at once, so verifiers that
/// meet an unknown `root_key_id` should fetch the document again.
pub const MAX_AGE_SECS: u32 = 300;

/// Body of [`RETIRE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    pub root_key_id: u32,
}

/// The answer of every admin keys route (besides the common envelope).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysAnswer {
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    /// Every key after the call.
    #[serde(default)]
    pub keys: Vec<sfop_auth::PublishedKey>,
    /// [`ROTATE`]: the new signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key_id: Option<u32>,
    /// [`RETIRE`]: the local operator's admin token was signed by the
    /// retired key and has been replaced (same file, new token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_token_reissued: bool,
}

/// Largest request body: `{"root_key_id": 4294967295}`.
const MAX_BODY: usize = 1024;

/// What the keys' handlers work on.
#[derive(Debug, Clone)]
pub struct Keys {
    pub ring: KeyRing,
    pub data_dir: PathBuf,
}

/// `GET /.well-known/sfop-keys.json`, for anyone.
pub fn public_routes(ring: KeyRing) -> Router {
    Router::new()
        .route(WELL_KNOWN, get(well_known))
        .layer(Extension(BodyLimit(0)))
        .with_state(ring)
}

/// `/admin/v1/keys*` (the caller admitted as an admin by the router's
/// admin layer).
pub fn admin_routes(keys: Keys) -> Router {
    Router::new()
        .route(LIST, get(list))
        .route(ROTATE, post(rotate))
        .route(RETIRE, post(retire))
        .layer(Extension(BodyLimit(MAX_BODY)))
        .with_state(keys)
}

/// The well-known document's body.
pub fn well_known_body(keys: &PublishedKeys) -> serde_json::Value {
    json!({
        "keys": keys.keys.iter().map(|k| json!({
            "root_key_id": k.root_key_id,
            "algorithm": k.algorithm,
            "public_key": k.public_key,
            "status": k.status,
        })).collect::<Vec<_>>(),
    })
}

async fn well_known(State(ring): State<KeyRing>) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/json; charset=UTF-8".to_owned(),
            ),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={MAX_AGE_SECS}"),
            ),
        ],
        well_known_body(&ring.published()).to_string(),
    )
}

fn ok(keys: &Keys, root_key_id: Option<u32>, admin_token_reissued: bool) -> Enveloped<KeysAnswer> {
    Enveloped(
        StatusCode::OK,
        KeysAnswer {
            rsp_code: "A0000".into(),
            rsp_message: String::new(),
            keys: keys.ring.published().keys,
            root_key_id,
            admin_token_reissued,
        },
    )
}

type Answer = Result<Enveloped<KeysAnswer>, PlatformError>;

async fn list(State(keys): State<Keys>, Admin(_): Admin) -> Enveloped<KeysAnswer> {
    ok(&keys, None, false)
}

async fn rotate(State(keys): State<Keys>, Admin(admin): Admin) -> Answer {
    // Writes and syncs the key file: off the async workers.
    let ring = keys.ring.clone();
    let id = tokio::task::spawn_blocking(move || ring.rotate())
        .await
        .map_err(|e| PlatformError::internal("rotating the root key", e))?
        .map_err(|e| PlatformError::internal("rotating the root key", e))?;
    tracing::warn!(%admin, root_key_id = id, "root key rotated");
    Ok(ok(&keys, Some(id), false))
}

async fn retire(State(keys): State<Keys>, Admin(admin): Admin, Body(body): Body) -> Answer {
    let body: RetireRequest =
        serde_json::from_slice(&body).map_err(|e| PlatformError::invalid("request body", e))?;
    let (ring, data_dir) = (keys.ring.clone(), keys.data_dir.clone());
    let id = body.root_key_id;
    let work = move || -> anyhow::Result<Result<bool, String>> {
        match ring.retire(id) {
            Ok(()) => Ok(Ok(reissue_admin_token(&ring, &data_dir, id)?)),
            Err(sfop_auth::Error::Invalid(message)) => Ok(Err(message)),
            Err(e) => Err(e.into()),
        }
    };
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        PlatformError::internal("retiring a root key", e)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(Ok(reissued))) => {
            tracing::warn!(%admin, root_key_id = id, "root key retired");
            Ok(ok(&keys, None, reissued))
        }
        Ok(Ok(Err(message))) => Err(PlatformError::invalid("root_key_id", message)),
        Ok(Err(e)) => Err(failed(e.into())),
        Err(e) => Err(failed(e.into())),
    }
}

/// When the local operator's `admin.token` was signed by the key just
/// retired, replaces it with one signed by the current key, so that
/// retiring a key does not lock the operator out. Whether it did.
fn reissue_admin_token(
    ring: &KeyRing,
    data_dir: &std::path::Path,
    retired: u32,
) -> anyhow::Result<bool> {
    let path = data_dir.join("admin.token");
    let Ok(token) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    if sfop_auth::keys::root_key_id_of(&token) != Some(retired) {
        return Ok(false);
    }
    std::fs::remove_file(&path)?;
    crate::auth::bootstrap_admin_token(ring, data_dir)?;
    Ok(true)
}
