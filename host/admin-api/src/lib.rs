//! The admin API's contract: every path, request body and answer the
//! platform's admin handlers and the operator CLI (`sfop api|audit|keys|
//! institution|sandbox|client …`) exchange, defined once so that neither side reads
//! the other as untyped JSON.
//!
//! Every answer carries the common envelope's `rsp_code` and `rsp_message`
//! (`A0000` and empty on success); the gateway adds `api_tran_id` and
//! `api_tran_dtm`, which the answers here ignore. Requests refuse unknown
//! fields; answers accept them, so that a newer platform can add fields
//! without breaking an older CLI.
//!
//! This crate depends on sfop-core and serde only: the management center,
//! the virtual bank and the binary depend on it, never the other way round.

pub mod apis;
pub mod audit;
pub mod clients;
pub mod institutions;
pub mod keys;
pub mod sandbox;

use serde::{Deserialize, Serialize};

pub use apis::{
    ApiRecord, ApiView, CanaryRecord, Sticky, TestRecord, Upload, VersionRecord, VersionState,
    VersionView,
};

/// `rsp_code` of a successful answer.
pub const OK: &str = "A0000";

/// Every path of the admin API, for the router and the CLI.
pub const PATHS: &[&str] = &[
    apis::LIST,
    apis::SHOW,
    apis::VERSION,
    apis::PUSH,
    apis::TEST,
    apis::PROMOTE,
    apis::CANARY,
    apis::ROLLBACK,
    apis::DEPRECATE,
    apis::RETIRE,
    apis::VARIABLES,
    apis::SET_VARIABLE,
    apis::UNSET_VARIABLE,
    audit::LIST,
    audit::VERIFY,
    keys::LIST,
    keys::ROTATE,
    keys::RETIRE,
    institutions::LIST,
    institutions::ACCOUNTS,
    institutions::VERIFY,
    institutions::LIMITS,
    institutions::APPROVE,
    institutions::SUSPEND,
    institutions::RESUME,
    sandbox::FAULTS,
    sandbox::REMOVE,
    sandbox::CLEAR,
    clients::CLIENTS,
];

/// The envelope's result fields alone: a refusal's whole answer, and the
/// part of every answer a client checks first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
}

impl Status {
    /// `A0000`, no message.
    pub fn ok() -> Self {
        Self {
            rsp_code: OK.to_owned(),
            rsp_message: String::new(),
        }
    }

    /// A refusal or failure with its code and message.
    pub fn refused(rsp_code: &str, rsp_message: impl Into<String>) -> Self {
        Self {
            rsp_code: rsp_code.to_owned(),
            rsp_message: rsp_message.into(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.rsp_code == OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_ignore_the_gateway_envelope_fields() -> Result<(), serde_json::Error> {
        let answer: apis::ApiAnswer = serde_json::from_str(
            r#"{"rsp_code":"A0000","rsp_message":"","api_tran_id":"T1","api_tran_dtm":"20261202",
                "api":{"name":"pay","live":"1.0.0","previous":[],"canary":null,"sunset":null,
                       "retired_at_ms":null}}"#,
        )?;
        assert_eq!(answer.rsp_code, OK);
        assert_eq!(answer.api.live, Some(semver::Version::new(1, 0, 0)));
        Ok(())
    }

    #[test]
    fn requests_refuse_unknown_fields_naming_them() {
        let err = serde_json::from_str::<apis::NamedVersion>(
            r#"{"name":"pay","version":"1.0.0","percent":5}"#,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("percent"), "{err}");
    }

    #[test]
    fn every_path_is_under_admin_v1_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for path in PATHS {
            assert!(path.starts_with("/admin/v1/"), "{path}");
            assert!(seen.insert(path), "{path} listed twice");
        }
    }
}
