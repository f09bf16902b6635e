//! The management center's admin API on the platform router, one typed
//! handler per endpoint, authorised by admin biscuits (`role("admin")`) like
//! the rest of the admin API; deny by default. The router is built after
//! the management center is open, so it holds the center itself: no slot
//! to fill later. Every answer carries `rsp_code` and `rsp_message`;
//! refusals name what to fix, through [`refused`], the one mapping from the
//! management center's errors to status and `rsp_code`.
//!
//! | method and path | body / query | does |
//! |---|---|---|
//! | `GET /admin/v1/apis` | | every API with its versions |
//! | `GET /admin/v1/apis/show` | `?name=` | one API |
//! | `GET /admin/v1/apis/version` | `?name=&version=` | one version with its testbed report |
//! | `POST /admin/v1/apis/push` | `Upload` | register a package |
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

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};

use sfop_admin_api::apis::{
    self, ApiAnswer, CanaryRequest, DeprecateRequest, ListAnswer, NameQuery, NameVersionQuery,
    Named, NamedVersion, PushAnswer, SetVariable, ShowAnswer, TestAnswer, UnsetVariable,
    VariableView, VariablesAnswer, VersionAnswer,
};
use sfop_admin_api::audit::{self, AuditAnswer, VerifyAnswer};
use sfop_gateway::PlatformError;
use sfop_gateway::platform::{BodyLimit, Enveloped, Json, Query};
use sfop_management::{ApiRecord, CanarySpec, Error, Management, Upload, Version};

use crate::admin_http::Admin;
use crate::plane::EmbeddedPlane;

/// The management center the admin API acts on.
pub type Center = Arc<Management<EmbeddedPlane>>;

/// Largest request body: a package upload (the component in base64 plus the
/// texts).
pub const MAX_UPLOAD: usize = 32 * 1024 * 1024;

/// The management center's routes, with bodies up to [`MAX_UPLOAD`], read
/// only once the caller is an admin (the router's admin layer).
pub fn routes(management: Center) -> Router {
    Router::new()
        .route(apis::LIST, get(list))
        .route(apis::SHOW, get(show))
        .route(apis::VERSION, get(version))
        .route(apis::PUSH, post(push))
        .route(apis::TEST, post(test))
        .route(apis::PROMOTE, post(promote))
        .route(apis::CANARY, post(canary))
        .route(apis::ROLLBACK, post(rollback))
        .route(apis::DEPRECATE, post(deprecate))
        .route(apis::RETIRE, post(retire))
        .route(apis::VARIABLES, get(variables))
        .route(apis::SET_VARIABLE, post(set_variable))
        .route(apis::UNSET_VARIABLE, post(unset_variable))
        .route(audit::LIST, get(audit_log))
        .route(audit::VERIFY, get(verify_audit_log))
        .layer(Extension(BodyLimit(MAX_UPLOAD)))
        .with_state(management)
}

type Answer<T> = Result<Enveloped<T>, PlatformError>;

fn ok<T>(body: T) -> Answer<T> {
    Ok(Enveloped(StatusCode::OK, body))
}

fn code() -> String {
    sfop_admin_api::OK.to_owned()
}

/// The one mapping from the management center's refusals to status and
/// `rsp_code`. The database away says so (nothing internal in it); other
/// platform failures say nothing and are logged with their cause.
fn refused(e: Error) -> PlatformError {
    let status = match &e {
        Error::NotFound(_) => 404,
        Error::Invalid(_) => 400,
        Error::Conflict(_) => 409,
        Error::Refused(_) => 422,
        Error::Unavailable(_) => {
            return PlatformError::refused(503, "A0013", e.to_string());
        }
        Error::Store(_) | Error::Internal { .. } => {
            return PlatformError::internal("the management center", e);
        }
    };
    PlatformError::refused(status, "A0004", e.to_string())
}

fn version_of(text: &str) -> Result<Version, PlatformError> {
    Version::parse(text).map_err(|e| {
        PlatformError::invalid(
            "version",
            format!("{text:?} is not a semantic version: {e}"),
        )
    })
}

fn api_answer(api: ApiRecord) -> Answer<ApiAnswer> {
    ok(ApiAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        api,
    })
}

async fn list(State(m): State<Center>) -> Answer<ListAnswer> {
    let apis = m.list().await.map_err(refused)?;
    ok(ListAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        res_cnt: apis.len().to_string(),
        res_list: apis,
    })
}

async fn show(State(m): State<Center>, Query(q): Query<NameQuery>) -> Answer<ShowAnswer> {
    ok(ShowAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        api: m.show(&q.name).await.map_err(refused)?,
    })
}

async fn version(
    State(m): State<Center>,
    Query(q): Query<NameVersionQuery>,
) -> Answer<VersionAnswer> {
    let version = version_of(&q.version)?;
    ok(VersionAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        version: m.version(&q.name, &version).map_err(refused)?,
    })
}

async fn push(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(upload): Json<Upload>,
) -> Answer<PushAnswer> {
    let package = upload
        .into_package()
        .map_err(|e| refused(Error::Invalid(e.to_string())))?;
    let record = m.push(package, &actor).await.map_err(refused)?;
    Ok(Enveloped(
        StatusCode::CREATED,
        PushAnswer {
            rsp_code: code(),
            rsp_message: String::new(),
            name: record.name,
            version: record.version,
            component_sha256: record.component_sha256,
            uploaded_at_ms: record.uploaded_at_ms,
        },
    ))
}

async fn test(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<NamedVersion>,
) -> Answer<TestAnswer> {
    let version = version_of(&b.version)?;
    let test = m.test(&b.name, &version, &actor).await.map_err(refused)?;
    ok(TestAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        passed: test.passed,
        report: test.report,
        attestation: test.attestation,
    })
}

async fn promote(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<NamedVersion>,
) -> Answer<ApiAnswer> {
    let version = version_of(&b.version)?;
    api_answer(
        m.promote(&b.name, &version, &actor)
            .await
            .map_err(refused)?,
    )
}

async fn canary(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<CanaryRequest>,
) -> Answer<ApiAnswer> {
    let version = version_of(&b.version)?;
    let defaults = CanarySpec::default();
    let spec = CanarySpec {
        percent: b.percent,
        sticky: b.sticky.unwrap_or(defaults.sticky),
        max_error_rate: b.max_error_rate.unwrap_or(defaults.max_error_rate),
        min_requests: b.min_requests.unwrap_or(defaults.min_requests),
    };
    api_answer(
        m.canary(&b.name, &version, spec, &actor)
            .await
            .map_err(refused)?,
    )
}

async fn rollback(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<Named>,
) -> Answer<ApiAnswer> {
    api_answer(m.rollback(&b.name, &actor).await.map_err(refused)?)
}

async fn deprecate(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<DeprecateRequest>,
) -> Answer<ApiAnswer> {
    api_answer(
        m.deprecate(&b.name, &b.sunset, &actor)
            .await
            .map_err(refused)?,
    )
}

async fn retire(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<Named>,
) -> Answer<ApiAnswer> {
    api_answer(m.retire(&b.name, &actor).await.map_err(refused)?)
}

fn variables_answer(name: String, variables: Vec<VariableView>) -> Answer<VariablesAnswer> {
    ok(VariablesAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        name,
        variables,
    })
}

async fn variables(State(m): State<Center>, Query(q): Query<NameQuery>) -> Answer<VariablesAnswer> {
    let variables = m.variables(&q.name).await.map_err(refused)?;
    variables_answer(q.name, variables)
}

async fn set_variable(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<SetVariable>,
) -> Answer<VariablesAnswer> {
    let variables = m
        .set_variable(&b.name, &b.variable, Some(b.value), &actor)
        .await
        .map_err(refused)?;
    variables_answer(b.name, variables)
}

async fn unset_variable(
    State(m): State<Center>,
    Admin(actor): Admin,
    Json(b): Json<UnsetVariable>,
) -> Answer<VariablesAnswer> {
    let variables = m
        .set_variable(&b.name, &b.variable, None, &actor)
        .await
        .map_err(refused)?;
    variables_answer(b.name, variables)
}

async fn audit_log(State(m): State<Center>) -> Answer<AuditAnswer> {
    let entries = m.audit_log().await.map_err(refused)?;
    ok(AuditAnswer {
        rsp_code: code(),
        rsp_message: String::new(),
        res_cnt: entries.len().to_string(),
        res_list: entries,
    })
}

/// 200 when the hash chain checks out; 409 `A0003` naming the first break.
async fn verify_audit_log(State(m): State<Center>) -> Answer<VerifyAnswer> {
    let v = m.verify_audit_log().await.map_err(refused)?;
    let intact = v.broken.is_none();
    Ok(Enveloped(
        if intact {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        },
        VerifyAnswer {
            rsp_code: if intact { code() } else { "A0003".to_owned() },
            rsp_message: v.broken.unwrap_or_default(),
            intact,
            entries: v.entries,
        },
    ))
}
