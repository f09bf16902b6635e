//! The management center's admin API, as plain JSON in and out, so that the
//! platform can mount it behind its admin authorisation (the caller's
//! identity arrives as `actor`). Every answer carries `rsp_code` and
//! `rsp_message`; refusals name what to fix.
//!
//! | method and path | body / query | does |
//! |---|---|---|
//! | `GET /admin/v1/apis` | | every API with its versions |
//! | `GET /admin/v1/apis/show` | `?name=` | one API |
//! | `GET /admin/v1/apis/version` | `?name=&version=` | one version with its testbed report |
//! | `POST /admin/v1/apis/push` | [`Upload`] | register a package |
//! | `POST /admin/v1/apis/test` | `{name, version}` | run the testbed |
//! | `POST /admin/v1/apis/promote` | `{name, version}` | make it live |
//! | `POST /admin/v1/apis/canary` | `{name, version, percent, sticky?, max_error_rate?, min_requests?}` | split traffic |
//! | `POST /admin/v1/apis/rollback` | `{name}` | end the canary, or return to the previous version |
//! | `POST /admin/v1/apis/deprecate` | `{name, sunset}` | announce the sunset date |
//! | `POST /admin/v1/apis/retire` | `{name}` | take it out of service |
//! | `GET /admin/v1/audit` | | the audit log |
//! | `GET /admin/v1/audit/verify` | | check the log's hash chain |

use semver::Version;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{CanarySpec, DataPlane, Error, Management, Sticky, Upload};

/// The routes this module answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/v1/apis"),
    ("GET", "/admin/v1/apis/show"),
    ("GET", "/admin/v1/apis/version"),
    ("POST", "/admin/v1/apis/push"),
    ("POST", "/admin/v1/apis/test"),
    ("POST", "/admin/v1/apis/promote"),
    ("POST", "/admin/v1/apis/canary"),
    ("POST", "/admin/v1/apis/rollback"),
    ("POST", "/admin/v1/apis/deprecate"),
    ("POST", "/admin/v1/apis/retire"),
    ("GET", "/admin/v1/audit"),
    ("GET", "/admin/v1/audit/verify"),
];

/// Largest package upload, bytes (the component in base64 plus the texts).
pub const MAX_UPLOAD: usize = 32 * 1024 * 1024;

/// An answer: HTTP status and JSON body.
pub type Answer = (u16, Value);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedVersion {
    name: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryBody {
    name: String,
    version: String,
    percent: u8,
    #[serde(default)]
    sticky: Option<Sticky>,
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    min_requests: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeprecateBody {
    name: String,
    sunset: String,
}

/// Answers one admin request on behalf of `actor`.
pub async fn handle<P: DataPlane>(
    mgmt: &Management<P>,
    actor: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Answer {
    match route(mgmt, actor, method, path, query, body).await {
        Ok(answer) => answer,
        Err(e) => refusal(&e),
    }
}

async fn route<P: DataPlane>(
    mgmt: &Management<P>,
    actor: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Answer, Error> {
    let q = sfop_core::form::parse(query.as_bytes());
    let param = |name: &'static str| {
        q.get(name)
            .map(str::to_owned)
            .ok_or_else(|| Error::Invalid(format!("query parameter `{name}` is missing")))
    };
    Ok(match (method, path) {
        ("GET", "/admin/v1/apis") => {
            let apis = mgmt.list().await?;
            ok(json!({ "res_cnt": apis.len().to_string(), "res_list": apis }))
        }
        ("GET", "/admin/v1/apis/show") => ok(json!({ "api": mgmt.show(&param("name")?).await? })),
        ("GET", "/admin/v1/apis/version") => {
            let version = parse_version(&param("version")?)?;
            let record = mgmt.version(&param("name")?, &version)?;
            ok(json!({ "version": record }))
        }
        ("POST", "/admin/v1/apis/push") => {
            let upload: Upload = parse(body)?;
            let package = upload
                .into_package()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let record = mgmt.push(package, actor).await?;
            created(json!({
                "name": record.name,
                "version": record.version,
                "component_sha256": record.component_sha256,
                "uploaded_at_ms": record.uploaded_at_ms,
            }))
        }
        ("POST", "/admin/v1/apis/test") => {
            let b: NamedVersion = parse(body)?;
            let test = mgmt
                .test(&b.name, &parse_version(&b.version)?, actor)
                .await?;
            ok(json!({
                "passed": test.passed,
                "report": test.report,
                "attestation": test.attestation,
            }))
        }
        ("POST", "/admin/v1/apis/promote") => {
            let b: NamedVersion = parse(body)?;
            let api = mgmt
                .promote(&b.name, &parse_version(&b.version)?, actor)
                .await?;
            ok(json!({ "api": api }))
        }
        ("POST", "/admin/v1/apis/canary") => {
            let b: CanaryBody = parse(body)?;
            let defaults = CanarySpec::default();
            let spec = CanarySpec {
                percent: b.percent,
                sticky: b.sticky.unwrap_or(defaults.sticky),
                max_error_rate: b.max_error_rate.unwrap_or(defaults.max_error_rate),
                min_requests: b.min_requests.unwrap_or(defaults.min_requests),
            };
            let api = mgmt
                .canary(&b.name, &parse_version(&b.version)?, spec, actor)
                .await?;
            ok(json!({ "api": api }))
        }
        ("POST", "/admin/v1/apis/rollback") => {
            let b: Named = parse(body)?;
            ok(json!({ "api": mgmt.rollback(&b.name, actor).await? }))
        }
        ("POST", "/admin/v1/apis/deprecate") => {
            let b: DeprecateBody = parse(body)?;
            ok(json!({ "api": mgmt.deprecate(&b.name, &b.sunset, actor).await? }))
        }
        ("POST", "/admin/v1/apis/retire") => {
            let b: Named = parse(body)?;
            ok(json!({ "api": mgmt.retire(&b.name, actor).await? }))
        }
        ("GET", "/admin/v1/audit") => {
            let entries = mgmt.audit()?;
            ok(json!({ "res_cnt": entries.len().to_string(), "res_list": entries }))
        }
        ("GET", "/admin/v1/audit/verify") => {
            let v = mgmt.verify_audit()?;
            let intact = v.broken.is_none();
            (
                if intact { 200 } else { 409 },
                json!({
                    "rsp_code": if intact { "A0000" } else { "A0003" },
                    "rsp_message": v.broken.clone().unwrap_or_default(),
                    "intact": intact,
                    "entries": v.entries,
                }),
            )
        }
        _ => {
            return Err(Error::NotFound(format!(
                "no admin endpoint {method} {path}"
            )));
        }
    })
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("request body: {e}")))
}

fn parse_version(text: &str) -> Result<Version, Error> {
    Version::parse(text)
        .map_err(|e| Error::Invalid(format!("version: {text:?} is not a semantic version: {e}")))
}

fn ok(mut body: Value) -> Answer {
    stamp(&mut body, "A0000", "");
    (200, body)
}

fn created(mut body: Value) -> Answer {
    stamp(&mut body, "A0000", "");
    (201, body)
}

fn stamp(body: &mut Value, code: &str, message: &str) {
    if let Value::Object(map) = body {
        map.insert("rsp_code".into(), code.into());
        map.insert("rsp_message".into(), message.into());
    }
}

/// The one mapping from a refusal to status and `rsp_code`.
fn refusal(e: &Error) -> Answer {
    let (status, code) = match e {
        Error::NotFound(_) => (404, "A0004"),
        Error::Invalid(_) => (400, "A0004"),
        Error::Conflict(_) => (409, "A0004"),
        Error::Refused(_) => (422, "A0004"),
        Error::Store(_) => (500, "A0003"),
    };
    let message = match e {
        Error::Store(e) => {
            tracing::error!("admin API: store failed: {e}");
            "platform internal error".to_owned()
        }
        e => e.to_string(),
    };
    (status, json!({ "rsp_code": code, "rsp_message": message }))
}
