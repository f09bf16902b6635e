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
//! | `GET /admin/v1/apis/variables` | `?name=` | the API's variables (never a secret's value) |
//! | `POST /admin/v1/apis/variables/set` | `{name, variable, value}` | set a variable; its serving versions reload |
//! | `POST /admin/v1/apis/variables/unset` | `{name, variable}` | drop the admin API's value |
//! | `GET /admin/v1/audit` | | the audit log |
//! | `GET /admin/v1/audit/verify` | | check the log's hash chain |

use semver::Version;
use serde::Deserialize;
use serde_json::{Value, json};

use serde::Serialize;
use sfop_admin_api::apis::{
    self as paths, ApiAnswer, CanaryRequest, DeprecateRequest, ListAnswer, Named, NamedVersion,
    PushAnswer, SetVariable, ShowAnswer, TestAnswer, UnsetVariable, VariableView, VariablesAnswer,
    VersionAnswer,
};
use sfop_admin_api::audit::{self, AuditAnswer, VerifyAnswer};

use crate::{ApiRecord, CanarySpec, DataPlane, Error, Management, Upload};

/// The routes this module answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", paths::LIST),
    ("GET", paths::SHOW),
    ("GET", paths::VERSION),
    ("POST", paths::PUSH),
    ("POST", paths::TEST),
    ("POST", paths::PROMOTE),
    ("POST", paths::CANARY),
    ("POST", paths::ROLLBACK),
    ("POST", paths::DEPRECATE),
    ("POST", paths::RETIRE),
    ("GET", paths::VARIABLES),
    ("POST", paths::SET_VARIABLE),
    ("POST", paths::UNSET_VARIABLE),
    ("GET", audit::LIST),
    ("GET", audit::VERIFY),
];

/// Largest package upload, bytes (the component in base64 plus the texts).
pub const MAX_UPLOAD: usize = 32 * 1024 * 1024;

/// An answer: HTTP status and JSON body.
pub type Answer = (u16, Value);

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
    let ok = || sfop_admin_api::OK.to_owned();
    let empty = String::new;
    Ok(match (method, path) {
        ("GET", paths::LIST) => {
            let apis = mgmt.list().await?;
            typed(
                200,
                &ListAnswer {
                    rsp_code: ok(),
                    rsp_message: empty(),
                    res_cnt: apis.len().to_string(),
                    res_list: apis,
                },
            )
        }
        ("GET", paths::SHOW) => typed(
            200,
            &ShowAnswer {
                rsp_code: ok(),
                rsp_message: empty(),
                api: mgmt.show(&param("name")?).await?,
            },
        ),
        ("GET", paths::VERSION) => {
            let version = parse_version(&param("version")?)?;
            typed(
                200,
                &VersionAnswer {
                    rsp_code: ok(),
                    rsp_message: empty(),
                    version: mgmt.version(&param("name")?, &version)?,
                },
            )
        }
        ("POST", paths::PUSH) => {
            let upload: Upload = parse(body)?;
            let package = upload
                .into_package()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let record = mgmt.push(package, actor).await?;
            typed(
                201,
                &PushAnswer {
                    rsp_code: ok(),
                    rsp_message: empty(),
                    name: record.name,
                    version: record.version,
                    component_sha256: record.component_sha256,
                    uploaded_at_ms: record.uploaded_at_ms,
                },
            )
        }
        ("POST", paths::TEST) => {
            let b: NamedVersion = parse(body)?;
            let test = mgmt
                .test(&b.name, &parse_version(&b.version)?, actor)
                .await?;
            typed(
                200,
                &TestAnswer {
                    rsp_code: ok(),
                    rsp_message: empty(),
                    passed: test.passed,
                    report: test.report,
                    attestation: test.attestation,
                },
            )
        }
        ("POST", paths::PROMOTE) => {
            let b: NamedVersion = parse(body)?;
            let api = mgmt
                .promote(&b.name, &parse_version(&b.version)?, actor)
                .await?;
            api_answer(api)
        }
        ("POST", paths::CANARY) => {
            let b: CanaryRequest = parse(body)?;
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
            api_answer(api)
        }
        ("POST", paths::ROLLBACK) => {
            let b: Named = parse(body)?;
            api_answer(mgmt.rollback(&b.name, actor).await?)
        }
        ("POST", paths::DEPRECATE) => {
            let b: DeprecateRequest = parse(body)?;
            api_answer(mgmt.deprecate(&b.name, &b.sunset, actor).await?)
        }
        ("POST", paths::RETIRE) => {
            let b: Named = parse(body)?;
            api_answer(mgmt.retire(&b.name, actor).await?)
        }
        ("GET", paths::VARIABLES) => {
            let name = param("name")?;
            let variables = mgmt.variables(&name).await?;
            variables_answer(name, variables)
        }
        ("POST", paths::SET_VARIABLE) => {
            let b: SetVariable = parse(body)?;
            let variables = mgmt
                .set_variable(&b.name, &b.variable, Some(b.value), actor)
                .await?;
            variables_answer(b.name, variables)
        }
        ("POST", paths::UNSET_VARIABLE) => {
            let b: UnsetVariable = parse(body)?;
            let variables = mgmt.set_variable(&b.name, &b.variable, None, actor).await?;
            variables_answer(b.name, variables)
        }
        ("GET", audit::LIST) => {
            let entries = mgmt.audit_log().await?;
            typed(
                200,
                &AuditAnswer {
                    rsp_code: ok(),
                    rsp_message: empty(),
                    res_cnt: entries.len().to_string(),
                    res_list: entries,
                },
            )
        }
        ("GET", audit::VERIFY) => {
            let v = mgmt.verify_audit_log().await?;
            let intact = v.broken.is_none();
            typed(
                if intact { 200 } else { 409 },
                &VerifyAnswer {
                    rsp_code: if intact { ok() } else { "A0003".to_owned() },
                    rsp_message: v.broken.unwrap_or_default(),
                    intact,
                    entries: v.entries,
                },
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

fn api_answer(api: ApiRecord) -> Answer {
    typed(
        200,
        &ApiAnswer {
            rsp_code: sfop_admin_api::OK.to_owned(),
            rsp_message: String::new(),
            api,
        },
    )
}

fn variables_answer(name: String, variables: Vec<VariableView>) -> Answer {
    typed(
        200,
        &VariablesAnswer {
            rsp_code: sfop_admin_api::OK.to_owned(),
            rsp_message: String::new(),
            name,
            variables,
        },
    )
}

/// A typed answer as JSON; these types always serialise, but if one did
/// not, that is the platform's failure, never the caller's.
fn typed<T: Serialize>(status: u16, body: &T) -> Answer {
    match serde_json::to_value(body) {
        Ok(json) => (status, json),
        Err(e) => {
            tracing::error!("admin API: answer not serialisable: {e}");
            (
                500,
                json!({ "rsp_code": "A0003", "rsp_message": "platform internal error" }),
            )
        }
    }
}

/// The one mapping from a refusal to status and `rsp_code`.
fn refusal(e: &Error) -> Answer {
    let (status, code) = match e {
        Error::NotFound(_) => (404, "A0004"),
        Error::Invalid(_) => (400, "A0004"),
        Error::Conflict(_) => (409, "A0004"),
        Error::Refused(_) => (422, "A0004"),
        Error::Store(_) | Error::Internal { .. } => (500, "A0003"),
        Error::Unavailable(_) => (503, "A0013"),
    };
    // The database away says so (nothing internal in it); other platform
    // failures say nothing.
    let message = if e.is_client_fault() || matches!(e, Error::Unavailable(_)) {
        e.to_string()
    } else {
        let cause = std::error::Error::source(e).map(ToString::to_string);
        tracing::error!(error = %e, cause, "admin API: platform failure");
        "platform internal error".to_owned()
    };
    (status, json!({ "rsp_code": code, "rsp_message": message }))
}
