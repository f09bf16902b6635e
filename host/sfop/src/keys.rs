//! The root keys on the gateway: their public halves at
//! `/.well-known/sfop-keys.json` for anyone who verifies or attenuates
//! tokens offline (no authorisation, cacheable for five minutes), and
//! `/admin/v1/keys` for operators to list, rotate and retire them while the
//! platform runs (admin biscuits, `role("admin")`; deny by default).
//! `docs/keys.md` describes both.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sfop_auth::{KeyRing, PublishedKeys, TokenAuthorizer};
use sfop_gateway::{Endpoint, EndpointFuture, Gateway, NativeRequest, NativeResponse, RouteTable};

use crate::admin_http;

/// The public keys, for third parties.
pub const WELL_KNOWN: &str = "/.well-known/sfop-keys.json";
/// How long verifiers may cache [`WELL_KNOWN`], seconds. A rotation is seen
/// by them within this time; a new key signs at once, so verifiers that
/// meet an unknown `root_key_id` should fetch the document again.
pub const MAX_AGE_SECS: u32 = 300;
/// Every key with its status.
pub const LIST: &str = "/admin/v1/keys";
/// A new key signs from now on; the answer names it.
pub const ROTATE: &str = "/admin/v1/keys/rotate";
/// Retire one key: body [`RetireRequest`].
pub const RETIRE: &str = "/admin/v1/keys/retire";

/// Routes of the admin endpoint.
pub const ADMIN_ROUTES: &[(&str, &str)] = &[("GET", LIST), ("POST", ROTATE), ("POST", RETIRE)];

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

/// Mounts the well-known document and the admin endpoint.
pub fn mount(
    gateway: &Gateway,
    routes: &mut RouteTable,
    ring: KeyRing,
    authorizer: Arc<TokenAuthorizer>,
    data_dir: PathBuf,
) -> anyhow::Result<()> {
    routes.add_static(
        &[("GET", WELL_KNOWN)],
        gateway.native(Arc::new(WellKnownKeys(ring.clone()))),
    )?;
    routes.add_static(
        ADMIN_ROUTES,
        gateway.native(Arc::new(KeysAdmin {
            ring,
            authorizer,
            data_dir,
        })),
    )?;
    Ok(())
}

/// `GET /.well-known/sfop-keys.json`.
#[derive(Debug)]
struct WellKnownKeys(KeyRing);

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

impl Endpoint for WellKnownKeys {
    fn name(&self) -> &str {
        "keys"
    }

    fn max_body(&self) -> usize {
        0
    }

    fn handle<'a>(&'a self, _req: NativeRequest<'a>) -> EndpointFuture<'a> {
        let body = well_known_body(&self.0.published());
        Box::pin(std::future::ready(NativeResponse {
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=UTF-8".into(),
                ),
                (
                    "cache-control".into(),
                    format!("public, max-age={MAX_AGE_SECS}"),
                ),
            ],
            body: body.to_string().into_bytes(),
            envelope: false,
        }))
    }
}

/// `/admin/v1/keys*`.
#[derive(Debug)]
struct KeysAdmin {
    ring: KeyRing,
    authorizer: Arc<TokenAuthorizer>,
    data_dir: PathBuf,
}

fn answer(status: u16, answer: &KeysAnswer) -> NativeResponse {
    match serde_json::to_value(answer) {
        Ok(body) => admin_http::json(status, body),
        Err(e) => admin_http::internal("the keys admin endpoint", &e),
    }
}

fn refused(status: u16, rsp_code: &str, message: String) -> NativeResponse {
    admin_http::json(
        status,
        json!({ "rsp_code": rsp_code, "rsp_message": message }),
    )
}

impl Endpoint for KeysAdmin {
    fn name(&self) -> &str {
        "admin-keys"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    /// Admins only, checked before the gateway reads the body.
    fn admit(&self, head: &hyper::http::request::Parts) -> Result<usize, NativeResponse> {
        admin_http::admit(&self.authorizer, head, self.max_body())
    }

    fn handle<'a>(&'a self, req: NativeRequest<'a>) -> EndpointFuture<'a> {
        Box::pin(async move {
            let admin = match admin_http::admin(&self.authorizer, &req) {
                Ok(admin) => admin,
                Err(refusal) => return refusal,
            };
            let ok = |root_key_id, admin_token_reissued| KeysAnswer {
                rsp_code: "A0000".into(),
                rsp_message: String::new(),
                keys: self.ring.published().keys,
                root_key_id,
                admin_token_reissued,
            };
            match (req.method, req.path) {
                ("GET", LIST) => answer(200, &ok(None, false)),
                ("POST", ROTATE) => {
                    // Writes and syncs the key file: off the async workers.
                    let ring = self.ring.clone();
                    match tokio::task::spawn_blocking(move || ring.rotate()).await {
                        Ok(Ok(id)) => {
                            tracing::warn!(%admin, root_key_id = id, "root key rotated");
                            answer(200, &ok(Some(id), false))
                        }
                        Ok(Err(e)) => admin_http::internal("rotating the root key", &e),
                        Err(e) => admin_http::internal("rotating the root key", &e),
                    }
                }
                ("POST", RETIRE) => {
                    let body: RetireRequest = match serde_json::from_slice(req.body) {
                        Ok(body) => body,
                        Err(e) => return refused(400, "A0004", format!("request body: {e}")),
                    };
                    let (ring, data_dir) = (self.ring.clone(), self.data_dir.clone());
                    let id = body.root_key_id;
                    let work = move || -> anyhow::Result<Result<bool, String>> {
                        match ring.retire(id) {
                            Ok(()) => Ok(Ok(reissue_admin_token(&ring, &data_dir, id)?)),
                            Err(sfop_auth::Error::Invalid(message)) => Ok(Err(message)),
                            Err(e) => Err(e.into()),
                        }
                    };
                    match tokio::task::spawn_blocking(work).await {
                        Ok(Ok(Ok(reissued))) => {
                            tracing::warn!(%admin, root_key_id = id, "root key retired");
                            answer(200, &ok(None, reissued))
                        }
                        Ok(Ok(Err(message))) => refused(400, "A0004", message),
                        Ok(Err(e)) => admin_http::internal("retiring a root key", &e),
                        Err(e) => admin_http::internal("retiring a root key", &e),
                    }
                }
                _ => refused(404, "A0002", "no such keys route".into()),
            }
        })
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
