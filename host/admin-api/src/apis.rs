//! `/admin/v1/apis…`: the management center's registry of API packages.
//! The records here are also what the management center stores (it
//! re-exports them), so the wire and the store cannot drift apart.
//!
//! | method and path | body / query | answer |
//! |---|---|---|
//! | `GET` [`LIST`] | | [`ListAnswer`] |
//! | `GET` [`SHOW`] | `?name=` | [`ShowAnswer`] |
//! | `GET` [`VERSION`] | `?name=&version=` | [`VersionAnswer`] |
//! | `POST` [`PUSH`] | [`Upload`] | [`PushAnswer`] (201) |
//! | `POST` [`TEST`] | [`NamedVersion`] | [`TestAnswer`] |
//! | `POST` [`PROMOTE`] | [`NamedVersion`] | [`ApiAnswer`] |
//! | `POST` [`CANARY`] | [`CanaryRequest`] | [`ApiAnswer`] |
//! | `POST` [`ROLLBACK`] | [`Named`] | [`ApiAnswer`] |
//! | `POST` [`DEPRECATE`] | [`DeprecateRequest`] | [`ApiAnswer`] |
//! | `POST` [`RETIRE`] | [`Named`] | [`ApiAnswer`] |
//! | `GET` [`VARIABLES`] | `?name=` | [`VariablesAnswer`] |
//! | `POST` [`SET_VARIABLE`] | [`SetVariable`] | [`VariablesAnswer`] |
//! | `POST` [`UNSET_VARIABLE`] | [`UnsetVariable`] | [`VariablesAnswer`] |

use base64::Engine;
use semver::Version;
use serde::{Deserialize, Serialize};
use sfop_core::package::{Package, PackageError};

pub const LIST: &str = "/admin/v1/apis";
pub const SHOW: &str = "/admin/v1/apis/show";
pub const VERSION: &str = "/admin/v1/apis/version";
pub const PUSH: &str = "/admin/v1/apis/push";
pub const TEST: &str = "/admin/v1/apis/test";
pub const PROMOTE: &str = "/admin/v1/apis/promote";
pub const CANARY: &str = "/admin/v1/apis/canary";
pub const ROLLBACK: &str = "/admin/v1/apis/rollback";
pub const DEPRECATE: &str = "/admin/v1/apis/deprecate";
pub const RETIRE: &str = "/admin/v1/apis/retire";
pub const VARIABLES: &str = "/admin/v1/apis/variables";
pub const SET_VARIABLE: &str = "/admin/v1/apis/variables/set";
pub const UNSET_VARIABLE: &str = "/admin/v1/apis/variables/unset";

/// The longest value an operator may set for a variable, bytes.
pub const MAX_VARIABLE_VALUE: usize = 16 * 1024;

// ---------------------------------------------------------------- requests

/// A package as JSON: the manifest text, the component in base64, the cases.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub manifest: String,
    pub component: String,
    #[serde(default)]
    pub cases: Option<String>,
}

impl Upload {
    /// The wire form of `package`.
    pub fn of(package: &Package) -> Self {
        Self {
            manifest: package.manifest_text.clone(),
            component: base64::engine::general_purpose::STANDARD.encode(&package.component),
            cases: package.cases_text.clone(),
        }
    }

    /// The package; errors name the field.
    pub fn into_package(self) -> Result<Package, PackageError> {
        let component = base64::engine::general_purpose::STANDARD
            .decode(self.component.as_bytes())
            .map_err(|e| PackageError::Field {
                field: "component",
                problem: format!("is not base64: {e}"),
            })?;
        Package::from_parts(self.manifest, component, self.cases)
    }
}

/// Query of [`SHOW`] and [`VARIABLES`]: `?name=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameQuery {
    pub name: String,
}

impl sfop_core::form::Fields for NameQuery {}

/// Query of [`VERSION`]: `?name=&version=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameVersionQuery {
    pub name: String,
    pub version: String,
}

impl sfop_core::form::Fields for NameVersionQuery {}

/// Body of [`ROLLBACK`] and [`RETIRE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub name: String,
}

/// Body of [`TEST`] and [`PROMOTE`]. The version is text so that a bad one
/// is refused naming the field (`version: "x" is not a semantic version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedVersion {
    pub name: String,
    pub version: String,
}

/// Body of [`CANARY`]; absent options take the management center's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRequest {
    pub name: String,
    pub version: String,
    /// Share of traffic for the candidate, 1..=99.
    pub percent: u8,
    #[serde(default)]
    pub sticky: Option<Sticky>,
    /// Error rate (0.0..=1.0) above which the candidate is rolled back.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Requests the candidate must have answered before its rate counts.
    #[serde(default)]
    pub min_requests: Option<u64>,
}

/// Body of [`DEPRECATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecateRequest {
    pub name: String,
    /// `YYYY-MM-DD`, a day in the business time zone.
    pub sunset: String,
}

/// Body of [`SET_VARIABLE`]: the operator's value for variable `variable`
/// of API `name` (ADR 0027). It wins over the environment and the config
/// file, and the API's serving versions are reloaded with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVariable {
    pub name: String,
    pub variable: String,
    pub value: String,
}

/// Never shows the value: it may be a secret.
impl std::fmt::Debug for SetVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetVariable")
            .field("name", &self.name)
            .field("variable", &self.variable)
            .finish_non_exhaustive()
    }
}

/// Body of [`UNSET_VARIABLE`]: the operator's value goes; the environment's,
/// the config file's or the manifest's default applies again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsetVariable {
    pub name: String,
    pub variable: String,
}

// ----------------------------------------------------------------- answers

/// Answer of [`LIST`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    /// The count, as text (the common envelope's convention).
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<ApiView>,
}

/// Answer of [`SHOW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub api: ApiView,
}

/// Answer of [`VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub version: VersionRecord,
}

/// Answer of [`PUSH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub name: String,
    pub version: Version,
    pub component_sha256: String,
    pub uploaded_at_ms: u64,
}

/// Answer of [`TEST`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub passed: bool,
    /// The testbed's report (its own published format, `sfop-testbed`'s
    /// `Report`); [`ReportChecks`] reads the part the CLI shows.
    pub report: serde_json::Value,
    /// The signed attestation (JSON text) on pass.
    #[serde(default)]
    pub attestation: Option<String>,
}

/// Answer of [`PROMOTE`], [`CANARY`], [`ROLLBACK`], [`DEPRECATE`] and
/// [`RETIRE`]: the API's record after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    pub api: ApiRecord,
}

/// The checks of a testbed report, as far as an operator is shown them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReportChecks {
    #[serde(default)]
    pub checks: Vec<ReportCheck>,
}

/// One check of a testbed report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReportCheck {
    /// Stable rule id, e.g. `CONF-FIELDS`.
    pub rule: String,
    pub outcome: CheckOutcome,
    #[serde(default)]
    pub detail: String,
}

/// A testbed check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    Pass,
    Fail,
    Skip,
}

// ----------------------------------------------------------------- records

/// What keeps a caller on one version during a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sticky {
    /// The OAuth client (fintech app).
    Client,
    /// The fintech_use_num the request acts on.
    Account,
}

/// One uploaded API version. Its bytes never change once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub name: String,
    pub version: Version,
    pub component_sha256: String,
    pub manifest_sha256: String,
    pub manifest: String,
    pub cases: Option<String>,
    pub uploaded_at_ms: u64,
    pub uploaded_by: String,
    /// The latest testbed run, if any.
    pub test: Option<TestRecord>,
}

/// What the testbed said about a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    pub passed: bool,
    pub at_ms: u64,
    pub report: serde_json::Value,
    pub report_html: String,
    /// The signed attestation (JSON text) on pass.
    pub attestation: Option<String>,
}

/// How one API is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiRecord {
    pub name: String,
    /// The stable version.
    pub live: Option<Version>,
    /// Earlier live versions, oldest first: `rollback` returns to the last.
    pub previous: Vec<Version>,
    pub canary: Option<CanaryRecord>,
    /// Deprecated, to be retired on this date (`YYYY-MM-DD`).
    pub sunset: Option<String>,
    /// Taken out of service (unix ms).
    pub retired_at_ms: Option<u64>,
}

/// A running canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    pub version: Version,
    pub percent: u8,
    pub sticky: Sticky,
    /// Roll back automatically when the candidate's error rate exceeds this
    /// (0.0..=1.0) over at least `min_requests` requests.
    pub max_error_rate: f64,
    pub min_requests: u64,
    pub started_at_ms: u64,
}

/// The state of a version, derived from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    Uploaded,
    Failed,
    Tested,
    Live,
    Canary,
    Deprecated,
    /// Was live; `rollback` returns to it.
    Previous,
    Retired,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Uploaded => "uploaded",
            VersionState::Failed => "failed",
            VersionState::Tested => "tested",
            VersionState::Live => "live",
            VersionState::Canary => "canary",
            VersionState::Deprecated => "deprecated",
            VersionState::Previous => "previous",
            VersionState::Retired => "retired",
        }
    }
}

/// Operator-facing summary of one API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiView {
    pub name: String,
    pub live: Option<Version>,
    pub canary: Option<CanaryRecord>,
    pub sunset: Option<String>,
    pub retired: bool,
    /// The live release could not be loaded; its routes answer 503.
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub previous: Vec<Version>,
    #[serde(default)]
    pub versions: Vec<VersionView>,
}

/// Operator-facing summary of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: Version,
    pub state: VersionState,
    pub component_sha256: String,
    pub uploaded_at_ms: u64,
    pub uploaded_by: String,
    pub description: String,
    /// Requests answered and failed by this version in this process.
    pub requests: u64,
    pub errors: u64,
    /// Throttled now for repeated plugin faults, and by which fault
    /// (`deadline`, `memory`, `trap`); see docs/adr/0020.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

/// One variable an API declares, as the admin API shows it: never a
/// secret's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableView {
    pub name: String,
    pub required: bool,
    pub secret: bool,
    /// The manifest's default (not shown for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether an operator set a value through the admin API.
    pub set_by_admin: bool,
    /// That value, unless the variable is secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Answer of [`VARIABLES`], [`SET_VARIABLE`] and [`UNSET_VARIABLE`]: the
/// variables the API's newest serving version declares (its newest version
/// when none serves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariablesAnswer {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub variables: Vec<VariableView>,
}
