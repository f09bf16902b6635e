//! `testbed.toml`: a package's own conformance cases. The schema is
//! documented in testbed/README.md; parsing is strict (unknown keys are
//! errors that name the key), like `sfop.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The cases of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cases {
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
    /// Answers of the package's upstreams during the run (`[[upstream]]`),
    /// for a package granted `http`: its backends are virtual in the testbed.
    #[serde(default, rename = "upstream", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamFixture>,
    /// Values of the package's variables during the run (`[variables]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// One upstream answer: a request to exactly `url` (and `method`, when
/// given) is answered with `status`, `headers` and `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFixture {
    /// Upper-case method; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// The absolute URL, query included.
    pub url: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

/// One request and what its answer must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the report; unique within the file.
    pub name: String,
    /// Who calls: `hong`, `kim`, `lee` (seeded users of the demo app, scopes
    /// `login inquiry transfer`), `institution` (the demo app itself, `oob`)
    /// or `none` (no verified caller). Default: by the manifest's scope.
    #[serde(default, rename = "as")]
    pub persona: Option<String>,
    /// Default: the method of the manifest's first route.
    #[serde(default)]
    pub method: Option<String>,
    /// Default: the path of the manifest's first route.
    #[serde(default)]
    pub path: Option<String>,
    /// Query string without `?`; placeholders are replaced.
    #[serde(default)]
    pub query: Option<String>,
    /// JSON body text; placeholders are replaced. Sent as `application/json`.
    #[serde(default)]
    pub body: Option<String>,
    /// Participant banks (3-digit codes) taken down for this case only.
    #[serde(default)]
    pub banks_down: Vec<String>,
    /// Scripted faults in front of the bank for this case only
    /// (`crate::faults`): e.g. `{ operation = "withdraw", fault = "timeout" }`.
    #[serde(default)]
    pub faults: Vec<crate::faults::FaultRule>,
    /// Send the same request twice; `expect` applies to the second answer
    /// (a repeated `bank_tran_id`, for example).
    #[serde(default)]
    pub send_twice: bool,
    #[serde(default)]
    pub expect: Expect,
}

/// What the answer must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// HTTP status.
    pub status: u16,
    /// `rsp_code`, when given.
    pub rsp_code: Option<String>,
    /// Exact string values by path (`res_list[0].bank_name`).
    pub fields: BTreeMap<String, String>,
    /// Paths that must be present.
    pub present: Vec<String>,
    /// Paths that must be absent.
    pub absent: Vec<String>,
    /// Text `rsp_message` must contain (e.g. the field a format error names).
    pub message_contains: Option<String>,
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            status: 200,
            rsp_code: None,
            fields: BTreeMap::new(),
            present: Vec::new(),
            absent: Vec::new(),
            message_contains: None,
        }
    }
}

/// Personas a case may name.
pub const PERSONAS: &[&str] = &["hong", "kim", "lee", "institution", "none"];

impl Cases {
    /// Parses and checks `testbed.toml` text; the error names the key or case.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cases: Cases = toml::from_str(text).map_err(|e| e.to_string())?;
        for upstream in &cases.upstreams {
            if let Err(e) = url::Url::parse(&upstream.url) {
                return Err(format!("upstream.url {:?}: {e}", upstream.url));
            }
            if !(100..=599).contains(&upstream.status) {
                return Err(format!(
                    "upstream {:?}: status {} is not an HTTP status",
                    upstream.url, upstream.status
                ));
            }
            if let Some(m) = &upstream.method
                && (m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(format!(
                    "upstream {:?}: method {m:?} must be upper-case letters",
                    upstream.url
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for case in &cases.cases {
            if case.name.is_empty() {
                return Err("case.name: must not be empty".into());
            }
            if !names.insert(case.name.as_str()) {
                return Err(format!("case {:?}: name is used twice", case.name));
            }
            if let Some(p) = &case.persona
                && !PERSONAS.contains(&p.as_str())
            {
                return Err(format!(
                    "case {:?}: as = {p:?} is not one of {}",
                    case.name,
                    PERSONAS.join(", ")
                ));
            }
            for rule in &case.faults {
                rule.validate()
                    .map_err(|e| format!("case {:?}: faults: {e}", case.name))?;
            }
            if let Some(body) = &case.body
                && serde_json::from_str::<serde_json::Value>(&fill_for_check(body)).is_err()
            {
                return Err(format!(
                    "case {:?}: body is not JSON (placeholders aside)",
                    case.name
                ));
            }
        }
        Ok(cases)
    }
}

/// The body with placeholders replaced by dummies, to check it is JSON.
fn fill_for_check(body: &str) -> String {
    body.replace("{bank_tran_id}", "M202300001U000000000")
        .replace("{today}", "20260101")
        .replace("{now}", "20260101000000")
}

/// A JSON value at a path like `res_list[0].bank_name` or `res_cnt`.
pub fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut current = value;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.strip_suffix(']')?.parse::<usize>().ok()),
            None => (part, None),
        };
        current = current.get(name)?;
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cases_with_defaults() -> Result<(), String> {
        let cases = Cases::parse(
            r#"
            [[case]]
            name = "balance"
            as = "hong"
            query = "bank_tran_id={bank_tran_id}"
            [case.expect]
            rsp_code = "A0000"
            fields = { "res_list[0].bank_code_std" = "002" }
            present = ["bank_name"]

            [[case]]
            name = "body"
            body = '{"bank_tran_id": "{bank_tran_id}"}'
            "#,
        )?;
        assert_eq!(cases.cases.len(), 2);
        assert_eq!(cases.cases[0].expect.status, 200);
        assert_eq!(cases.cases[1].expect, Expect::default());
        Ok(())
    }

    #[test]
    fn mistakes_name_the_key_or_case() {
        let err = |t: &str| Cases::parse(t).err().unwrap_or_default();
        assert!(err("[[case]]\nname = \"a\"\nrogue = 1\n").contains("rogue"));
        assert!(err("[[case]]\nname = \"a\"\nas = \"root\"\n").contains("root"));
        assert!(err("[[case]]\nname = \"a\"\n[[case]]\nname = \"a\"\n").contains("twice"));
        assert!(err("[[case]]\nname = \"a\"\nbody = \"{\"\n").contains("not JSON"));
        assert!(
            err("[[case]]\nname = \"a\"\nfaults = [{ fault = \"refuse\" }]\n")
                .contains("needs rsp_code")
        );
    }

    #[test]
    fn upstream_fixtures_and_variables_parse_and_are_checked() -> Result<(), String> {
        let cases = Cases::parse(
            r#"
            [variables]
            api_key = "test-key"

            [[upstream]]
            method = "GET"
            url = "https://core.bank.example:8443/v1/accounts/1"
            body = '{"balance":"1000"}'
            "#,
        )?;
        assert_eq!(cases.upstreams[0].status, 200);
        assert_eq!(cases.variables["api_key"], "test-key");
        let err = |t: &str| Cases::parse(t).err().unwrap_or_default();
        assert!(err("[[upstream]]\nurl = \"nope\"\n").contains("upstream.url"));
        assert!(err("[[upstream]]\nurl = \"https://x.example/\"\nstatus = 42\n").contains("42"));
        assert!(
            err("[[upstream]]\nurl = \"https://x.example/\"\nmethod = \"get\"\n")
                .contains("upper-case")
        );
        Ok(())
    }

    #[test]
    fn paths_reach_into_lists() {
        let v = serde_json::json!({"res_list": [{"bank_name": "x"}], "res_cnt": "1"});
        assert_eq!(
            lookup(&v, "res_list[0].bank_name"),
            Some(&serde_json::json!("x"))
        );
        assert_eq!(lookup(&v, "res_cnt"), Some(&serde_json::json!("1")));
        assert_eq!(lookup(&v, "res_list[1].bank_name"), None);
    }
}
