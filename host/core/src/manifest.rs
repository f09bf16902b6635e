//! The manifest of an API package (`sfop.toml`): what the gateway needs to
//! route to a component, authorise calls, grant capabilities and bound its
//! resources. Parsed strictly: unknown keys are errors that name the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Platform maxima; a manifest may ask for less, never more.
pub const MAX_MEMORY_MIB: u32 = 256;
pub const MAX_CPU_MS: u32 = 10_000;
pub const MAX_BODY_KIB: u32 = 10 * 1024;
pub const MAX_TIMEOUT_MS: u32 = 60_000;
pub const MAX_CONCURRENCY: u32 = 100_000;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The API's name: lower-case letters, digits and `-`, e.g. `bank-status`.
    pub name: String,
    /// The package's semantic version.
    pub version: semver::Version,
    /// One line for the catalogue.
    pub description: String,
    /// The OAuth scope a caller needs: `login`, `inquiry`, `transfer` or `oob`.
    pub scope: String,
    /// Capability interfaces the component may import.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// Origins the `http` capability may call, `scheme://host:port`, a
    /// wildcard only for subdomains (`https://*.bank.example`). Required
    /// with `http`, refused without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Variables the plugin reads through `config` (`[variables]`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Variable>,
    /// `METHOD path` pairs served by this API.
    pub routes: Vec<Route>,
    /// Resource limits for one call.
    #[serde(default)]
    pub limits: Limits,
    /// Where a request names what it acts on, for the gateway's authorisation.
    #[serde(default)]
    pub access: Access,
    /// What the portal and testbed show: request and response fields, an example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<Docs>,
    /// What the testbed holds the API to under a short load (`[budget]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// The resource budget a package declares for the testbed's load check.
/// Absent keys take the testbed's defaults (testbed/README.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// 99th percentile latency of one call under the short load, ms.
    #[serde(default)]
    pub p99_ms: Option<u32>,
    /// Peak linear memory of one instance, MiB; at most `limits.memory_mib`.
    #[serde(default)]
    pub memory_mib: Option<u32>,
}

/// Where the gateway finds, in a request, the resources the API acts on. Each
/// is a field reference: `query:NAME`, `body:NAME` (top-level JSON field) or
/// `body:LIST[].NAME` (that field of every item of a JSON array).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// The fintech_use_num(s) acted on; each must be consented in the token.
    #[serde(default)]
    pub account: Option<String>,
    /// The user_seq_no named; it must be the token's user.
    #[serde(default)]
    pub user: Option<String>,
    /// The amount moved (digits), offered to token restrictions as `amount($n)`.
    #[serde(default)]
    pub amount: Option<String>,
}

/// A parsed field reference of [`Access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef<'a> {
    Query(&'a str),
    Body(&'a str),
    BodyList { list: &'a str, field: &'a str },
}

impl<'a> FieldRef<'a> {
    /// Parses `query:NAME`, `body:NAME` or `body:LIST[].NAME`.
    pub fn parse(text: &'a str) -> Option<Self> {
        let name_ok =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if let Some(name) = text.strip_prefix("query:") {
            return name_ok(name).then_some(FieldRef::Query(name));
        }
        let rest = text.strip_prefix("body:")?;
        match rest.split_once("[].") {
            Some((list, field)) if name_ok(list) && name_ok(field) => {
                Some(FieldRef::BodyList { list, field })
            }
            Some(_) => None,
            None => name_ok(rest).then_some(FieldRef::Body(rest)),
        }
    }
}

/// The API's documentation, as its package ships it (`[docs]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Docs {
    /// Request fields (query parameters of a `GET`, JSON body fields otherwise).
    #[serde(default)]
    pub request: Vec<FieldDoc>,
    /// Response fields after the common header.
    #[serde(default)]
    pub response: Vec<FieldDoc>,
    /// `rsp_code`s this API answers besides `A0000`, with their meaning.
    #[serde(default)]
    pub codes: Vec<CodeDoc>,
    /// The example of the first route (or of its own `route`).
    pub example: Option<Example>,
    /// Examples of the other routes, each naming its `route`
    /// (`[[docs.examples]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
}

/// One documented field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDoc {
    /// The field's name; items of a list as `res_list[].tran_amt`.
    pub name: String,
    /// The reference's notation: `AN(20)` alphanumeric, `N(12)` digits,
    /// `A(1)`, `Object[]`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    pub description: String,
    /// The paths of the routes this field belongs to (e.g. only
    /// `/v2.0/transfer/deposit/acnt_num`); empty: every route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

impl FieldDoc {
    /// `n` when the type is `N(n)`: a string of digits.
    pub fn digits(&self) -> Option<usize> {
        self.kind
            .strip_prefix("N(")?
            .strip_suffix(')')?
            .parse()
            .ok()
            .filter(|n| *n > 0)
    }
}

/// One documented response code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeDoc {
    pub code: String,
    pub meaning: String,
}

/// An example call: the request (a query string or a JSON body) and the
/// JSON response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The path of the route it calls; none: the first route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub request: String,
    pub response: String,
}

/// Whether `name` is an API name: 1-64 lower-case letters, digits or '-',
/// not starting with '-'.
pub fn api_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// Whether `name` is a variable name: 1-64 lower-case letters, digits or
/// '_', not starting with a digit.
pub fn variable_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// One variable a plugin reads through `config` (`[variables]`):
/// `api_key = { required = true, secret = true }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// The package is refused (load, promote) unless the operator set a value.
    #[serde(default)]
    pub required: bool,
    /// The value is never logged or shown (portal, testbed report, audit log).
    #[serde(default)]
    pub secret: bool,
    /// The value when the operator set none; not with `required` or `secret`
    /// (a secret shipped in a package is no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A capability interface of `sfop:platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Clock,
    AuthContext,
    Kv,
    Ledger,
    /// Outbound HTTP to `allowed_hosts` (since `sfop:platform@0.2.0`).
    Http,
    /// The plugin's variables (since `sfop:platform@0.2.0`).
    Config,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Clock,
        Capability::AuthContext,
        Capability::Kv,
        Capability::Ledger,
        Capability::Http,
        Capability::Config,
    ];

    /// The WIT interface name, e.g. `auth-context`.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::AuthContext => "auth-context",
            Capability::Kv => "kv",
            Capability::Ledger => "ledger",
            Capability::Http => "http",
            Capability::Config => "config",
        }
    }

    /// The version of `sfop:platform` whose folder defines the interface
    /// (interfaces keep their version until they change: wit/README.md).
    pub fn wit_version(self) -> &'static str {
        match self {
            Capability::Http | Capability::Config => "0.2.0",
            _ => "0.1.0",
        }
    }

    /// The capability whose WIT interface is `name`.
    pub fn from_interface(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.interface() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

/// One route: an HTTP method and an exact path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Per-call resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory cap of one instance, MiB.
    pub memory_mib: u32,
    /// CPU deadline of one call, milliseconds of guest execution.
    pub cpu_ms: u32,
    /// Largest request body accepted, KiB.
    pub max_body_kib: u32,
    /// Largest response body a plugin may produce, KiB.
    pub max_response_kib: u32,
    /// Wall-clock limit of one call, milliseconds, including time spent in
    /// host capabilities (bank calls) and waiting to be scheduled.
    pub timeout_ms: u32,
    /// Calls of this version running at once; one more is answered `503
    /// A0013` at once. 0 (the default): the platform's per-API bound
    /// (`gateway.api_max_in_flight`), which also caps any value given here.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_concurrency: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 16,
            cpu_ms: 100,
            max_body_kib: 64,
            max_response_kib: 256,
            timeout_ms: 5_000,
            max_concurrency: 0,
        }
    }
}

/// Why a manifest was refused. Every message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid TOML for sfop.toml: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("manifest key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

const SCOPES: &[&str] = &["login", "inquiry", "transfer", "oob"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl Manifest {
    /// The documented request field `name` (`[[docs.request]]`; items of a
    /// list as `req_list[].tran_amt`), if any.
    pub fn request_field(&self, name: &str) -> Option<&FieldDoc> {
        self.docs.as_ref()?.request.iter().find(|f| f.name == name)
    }

    /// Parses and validates `sfop.toml` text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what serde cannot: formats, non-emptiness and platform maxima.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |key, problem: String| Err(ManifestError::Invalid { key, problem });
        if !api_name_ok(&self.name) {
            return invalid(
                "name",
                format!(
                    "{:?} must be 1-64 lower-case letters, digits or '-'",
                    self.name
                ),
            );
        }
        if !SCOPES.contains(&self.scope.as_str()) {
            return invalid(
                "scope",
                format!("{:?} is not one of {}", self.scope, SCOPES.join(", ")),
            );
        }
        if self.routes.is_empty() {
            return invalid("routes", "at least one route is required".into());
        }
        let mut seen = BTreeSet::new();
        for route in &self.routes {
            if !METHODS.contains(&route.method.as_str()) {
                return invalid(
                    "routes.method",
                    format!("{:?} is not one of {}", route.method, METHODS.join(", ")),
                );
            }
            let path_ok = route.path.starts_with('/')
                && route.path.len() <= 256
                && route
                    .path
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
            if !path_ok {
                return invalid(
                    "routes.path",
                    format!(
                        "{:?} must start with '/' and hold no spaces, '?' or '#'",
                        route.path
                    ),
                );
            }
            if !seen.insert(route) {
                return invalid("routes", format!("{route} is listed twice"));
            }
        }
        let limits = &self.limits;
        for (key, value, max) in [
            ("limits.memory_mib", limits.memory_mib, MAX_MEMORY_MIB),
            ("limits.cpu_ms", limits.cpu_ms, MAX_CPU_MS),
            ("limits.max_body_kib", limits.max_body_kib, MAX_BODY_KIB),
            (
                "limits.max_response_kib",
                limits.max_response_kib,
                MAX_BODY_KIB,
            ),
            ("limits.timeout_ms", limits.timeout_ms, MAX_TIMEOUT_MS),
        ] {
            if value == 0 || value > max {
                return invalid(key, format!("{value} must be between 1 and {max}"));
            }
        }
        if limits.max_concurrency > MAX_CONCURRENCY {
            return invalid(
                "limits.max_concurrency",
                format!(
                    "{} must be at most {MAX_CONCURRENCY} (0: the platform's bound)",
                    limits.max_concurrency
                ),
            );
        }
        for (key, value) in [
            ("access.account", &self.access.account),
            ("access.user", &self.access.user),
            ("access.amount", &self.access.amount),
        ] {
            if let Some(v) = value
                && FieldRef::parse(v).is_none()
            {
                return invalid(
                    key,
                    format!("{v:?} must be query:NAME, body:NAME or body:LIST[].NAME"),
                );
            }
        }
        if let Some(docs) = &self.docs {
            docs.validate()?;
            let paths: Vec<&str> = self.routes.iter().map(|r| r.path.as_str()).collect();
            let fields = docs.request.iter().chain(&docs.response);
            let named = fields
                .flat_map(|f| f.routes.iter().map(move |r| ("docs.request", r)))
                .chain(
                    docs.examples
                        .iter()
                        .map(|e| ("docs.examples", e.route.as_ref()))
                        .filter_map(|(k, r)| Some((k, r?))),
                )
                .chain(
                    docs.example
                        .iter()
                        .filter_map(|e| Some(("docs.example", e.route.as_ref()?))),
                );
            for (key, route) in named {
                if !paths.contains(&route.as_str()) {
                    return invalid(key, format!("route {route:?} is not one of [[routes]]"));
                }
            }
            if docs.examples.iter().any(|e| e.route.is_none()) {
                return invalid("docs.examples", "each example names its route".into());
            }
        }
        if let Some(budget) = &self.budget {
            if let Some(p99) = budget.p99_ms
                && (p99 == 0 || p99 > limits.timeout_ms)
            {
                return invalid(
                    "budget.p99_ms",
                    format!(
                        "{p99} must be between 1 and limits.timeout_ms ({})",
                        limits.timeout_ms
                    ),
                );
            }
            if let Some(mib) = budget.memory_mib
                && (mib == 0 || mib > limits.memory_mib)
            {
                return invalid(
                    "budget.memory_mib",
                    format!(
                        "{mib} must be between 1 and limits.memory_mib ({})",
                        limits.memory_mib
                    ),
                );
            }
        }
        self.validate_outbound()?;
        if limits.timeout_ms < limits.cpu_ms {
            return invalid(
                "limits.timeout_ms",
                format!(
                    "{} must be at least limits.cpu_ms ({})",
                    limits.timeout_ms, limits.cpu_ms
                ),
            );
        }
        Ok(())
    }
}

impl Manifest {
    /// `allowed_hosts` and `[variables]`.
    fn validate_outbound(&self) -> Result<(), ManifestError> {
        let invalid = |key, problem: String| Err(ManifestError::Invalid { key, problem });
        let http = self.capabilities.contains(&Capability::Http);
        if let Err(problem) = crate::origin::AllowedHosts::parse(&self.allowed_hosts) {
            return invalid("allowed_hosts", problem.to_string());
        }
        if http && self.allowed_hosts.is_empty() {
            return invalid(
                "allowed_hosts",
                "capability `http` needs at least one allowed origin (deny by default)".into(),
            );
        }
        if !http && !self.allowed_hosts.is_empty() {
            return invalid(
                "allowed_hosts",
                "is set but `capabilities` does not declare `http`".into(),
            );
        }
        for (name, variable) in &self.variables {
            if !variable_name_ok(name) {
                return invalid(
                    "variables",
                    format!("{name:?} must be 1-64 lower-case letters, digits or '_'"),
                );
            }
            if variable.default.is_some() && (variable.required || variable.secret) {
                return invalid(
                    "variables",
                    format!("{name:?}: a default is not allowed with `required` or `secret`"),
                );
            }
        }
        if !self.variables.is_empty() && !self.capabilities.contains(&Capability::Config) {
            return invalid(
                "variables",
                "are declared but `capabilities` does not declare `config`".into(),
            );
        }
        Ok(())
    }
}

impl Docs {
    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |key, problem: String| Err(ManifestError::Invalid { key, problem });
        for (key, fields) in [
            ("docs.request", &self.request),
            ("docs.response", &self.response),
        ] {
            let mut seen = BTreeSet::new();
            for f in fields {
                let name_ok = !f.name.is_empty()
                    && f.name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_[].".contains(&b)
                    });
                if !name_ok {
                    return invalid(
                        key,
                        format!(
                            "field name {:?} must be lower-case letters, digits, '_', '[]' or '.'",
                            f.name
                        ),
                    );
                }
                if f.kind.is_empty() || f.description.is_empty() {
                    return invalid(
                        key,
                        format!("field {:?} needs a type and a description", f.name),
                    );
                }
                if !seen.insert(f.name.as_str()) {
                    return invalid(key, format!("field {:?} is listed twice", f.name));
                }
            }
        }
        for c in &self.codes {
            let ok = c.code.len() == 5 && c.code.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok || c.meaning.is_empty() {
                return invalid(
                    "docs.codes",
                    format!("{:?} must be a 5-character rsp_code with a meaning", c.code),
                );
            }
        }
        for example in self.example.iter().chain(&self.examples) {
            let body: Result<serde_json::Map<String, serde_json::Value>, _> =
                serde_json::from_str(&example.response);
            if let Err(e) = body {
                return invalid(
                    "docs.example.response",
                    format!("must be a JSON object: {e}"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "bank-status"
        version = "1.0.0"
        description = "Participant banks"
        scope = "oob"
        capabilities = ["ledger", "log"]

        [[routes]]
        method = "GET"
        path = "/v2.0/bank/status"
    "#;

    fn error_of(text: &str) -> String {
        match Manifest::parse(text) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_a_good_manifest_with_default_limits() -> Result<(), ManifestError> {
        let m = Manifest::parse(GOOD)?;
        assert_eq!(m.name, "bank-status");
        assert_eq!(m.version, semver::Version::new(1, 0, 0));
        assert!(m.capabilities.contains(&Capability::Ledger));
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.budget, None);
        let m = Manifest::parse(&format!("{GOOD}\n[budget]\np99_ms = 50\n"))?;
        assert_eq!(m.budget.and_then(|b| b.p99_ms), Some(50));
        Ok(())
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error_of(&format!("{GOOD}\nrogue = 1\n"));
        assert!(e.contains("rogue"), "{e}");
    }

    #[test]
    fn unknown_capability_is_named() {
        let e = error_of(&GOOD.replace(r#""ledger", "log""#, r#""ledger", "sockets""#));
        assert!(e.contains("sockets"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (GOOD.replace("bank-status\"", "Bank Status\""), "`name`"),
            (GOOD.replace("\"oob\"", "\"admin\""), "`scope`"),
            (GOOD.replace("\"GET\"", "\"FETCH\""), "`routes.method`"),
            (
                GOOD.replace("\"/v2.0/bank/status\"", "\"v2/x?y\""),
                "`routes.path`",
            ),
            (
                format!("{GOOD}\n[limits]\nmemory_mib = 100000\n"),
                "`limits.memory_mib`",
            ),
            (
                format!("{GOOD}\n[limits]\nmax_concurrency = 100001\n"),
                "`limits.max_concurrency`",
            ),
            (GOOD.replace("\"1.0.0\"", "\"one\""), "version"),
            (format!("{GOOD}\n[budget]\np99_ms = 0\n"), "`budget.p99_ms`"),
            (
                format!("{GOOD}\n[budget]\nmemory_mib = 17\n"),
                "`budget.memory_mib`",
            ),
            (
                format!("{GOOD}\n[access]\naccount = \"header:x\"\n"),
                "`access.account`",
            ),
            (
                format!("{GOOD}\n[limits]\ncpu_ms = 500\ntimeout_ms = 100\n"),
                "`limits.timeout_ms`",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&text);
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }

    #[test]
    fn field_references_parse() {
        assert_eq!(
            FieldRef::parse("query:fintech_use_num"),
            Some(FieldRef::Query("fintech_use_num"))
        );
        assert_eq!(
            FieldRef::parse("body:tran_amt"),
            Some(FieldRef::Body("tran_amt"))
        );
        assert_eq!(
            FieldRef::parse("body:req_list[].fintech_use_num"),
            Some(FieldRef::BodyList {
                list: "req_list",
                field: "fintech_use_num"
            })
        );
        assert_eq!(FieldRef::parse("body:"), None);
        assert_eq!(FieldRef::parse("cookie:x"), None);
    }

    #[test]
    fn docs_are_optional_and_checked() -> Result<(), ManifestError> {
        let docs = r#"
            [docs]
            codes = [{ code = "A0009", meaning = "bank refused" }]
            [[docs.request]]
            name = "bank_tran_id"
            type = "AN(20)"
            required = true
            description = "Transaction id"
            [[docs.response]]
            name = "res_list[].bank_name"
            type = "AN(20)"
            description = "Bank name"
            [docs.example]
            request = ""
            response = '{"rsp_code":"A0000"}'
        "#;
        let m = Manifest::parse(&format!("{GOOD}{docs}"))?;
        let d = m.docs.unwrap_or_default();
        assert_eq!(d.request[0].name, "bank_tran_id");
        assert!(d.request[0].required);
        assert_eq!(d.codes[0].code, "A0009");
        let cases = [
            (docs.replace("bank_tran_id", "Bank Tran"), "`docs.request`"),
            (
                docs.replace(r#"{"rsp_code":"A0000"}"#, "[1]"),
                "`docs.example.response`",
            ),
            (docs.replace("A0009", "A9"), "`docs.codes`"),
            (
                docs.replace("required = true", "required = true\nrogue = 1"),
                "rogue",
            ),
            (
                docs.replace("res_list[].bank_name", "bank_tran_id")
                    .replace("[[docs.response]]", "[[docs.request]]"),
                "listed twice",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&format!("{GOOD}{text}"));
            assert!(e.contains(key), "expected {key} in {e}");
        }
        Ok(())
    }

    #[test]
    fn outbound_grants_and_variables_are_checked() -> Result<(), ManifestError> {
        let http = GOOD.replace(r#""ledger", "log""#, r#""http", "config""#);
        let m = Manifest::parse(&format!(
            "{}\n[variables]\napi_key = {{ secret = true }}\nurl = {{ default = \"x\" }}\n",
            http.replace(
                "scope = \"oob\"",
                "scope = \"oob\"\nallowed_hosts = [\"https://*.bank.example:8443\"]"
            )
        ))?;
        assert!(m.variables["api_key"].secret);
        assert_eq!(m.variables["url"].default.as_deref(), Some("x"));
        let with_hosts = |hosts: &str| {
            http.replace(
                "scope = \"oob\"",
                &format!("scope = \"oob\"\nallowed_hosts = [{hosts}]"),
            )
        };
        let cases = [
            (http.clone(), "`allowed_hosts`"),
            (with_hosts("\"https://a.*.example\""), "`allowed_hosts`"),
            (with_hosts("\"https://x.example/path\""), "`allowed_hosts`"),
            (
                GOOD.replace(
                    "scope = \"oob\"",
                    "scope = \"oob\"\nallowed_hosts = [\"https://x.example\"]",
                ),
                "does not declare `http`",
            ),
            (
                format!(
                    "{}\n[variables]\nk = {{ secret = true, default = \"s\" }}\n",
                    with_hosts("\"https://x.example\"")
                ),
                "`variables`",
            ),
            (
                format!(
                    "{}\n[variables]\nBad-Name = {{}}\n",
                    with_hosts("\"https://x.example\"")
                ),
                "`variables`",
            ),
            (
                format!("{GOOD}\n[variables]\nk = {{}}\n"),
                "does not declare `config`",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&text);
            assert!(e.contains(key), "expected {key} in {e}");
        }
        Ok(())
    }

    #[test]
    fn capability_interface_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_interface(c.interface()), Some(c));
        }
        assert_eq!(Capability::from_interface("wasi:cli/environment"), None);
    }
}
