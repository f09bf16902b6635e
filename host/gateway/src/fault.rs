//! Everything that can go wrong on the request path, who is to blame, and the
//! one mapping from that to HTTP status, `rsp_code` and metric label.

use sfop_core::{Outcome, rsp};
use sfop_runtime::CallError;

use crate::admission::Shed;
use crate::authz::{Denial, DenialKind};

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The caller sent something the platform cannot serve.
    Client,
    /// The API's plugin misbehaved (trap, deadline, memory, bad output, failed load).
    Plugin,
    /// The platform itself (overload, internal failure).
    Platform,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Plugin => "plugin",
            ErrorSource::Platform => "platform",
        }
    }
}

/// A request the gateway answers with an error envelope.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("no API serves {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<String>,
    },
    #[error("request body exceeds the API's limit of {limit_kib} KiB")]
    BodyTooLarge { limit_kib: u32 },
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("API {api} is unavailable")]
    RouteClosed { api: String },
    #[error("API {api} has been retired{}", sunset.as_ref().map(|d| format!(" (sunset {d})")).unwrap_or_default())]
    Retired { api: String, sunset: Option<String> },
    #[error("API {api} does not serve version {asked:?} (x-sfop-api-version)")]
    VersionNotServed { api: String, asked: String },
    #[error("API call failed: {0}")]
    Call(#[from] CallError),
    #[error("API answered with a malformed JSON body")]
    BadPluginBody,
    #[error("API call exceeded its wall-clock limit of {limit_ms} ms")]
    Timeout { limit_ms: u32 },
    #[error("not authorised: {0}")]
    Denied(Denial),
    /// A single-valued field given twice (query, form or JSON object key).
    #[error("{0}")]
    Repeated(sfop_core::access::Repeated),
    /// Refused at once because a bound of admission control was reached
    /// (answered with `Retry-After`).
    #[error("shed: the {} bound was reached", .0.as_str())]
    Shed(Shed),
}

impl Fault {
    pub fn source(&self) -> ErrorSource {
        match self {
            Fault::RouteNotFound { .. }
            | Fault::MethodNotAllowed { .. }
            | Fault::BodyTooLarge { .. }
            | Fault::BodyUnreadable
            | Fault::Retired { .. }
            | Fault::VersionNotServed { .. }
            | Fault::Repeated(_) => ErrorSource::Client,
            Fault::Denied(denial) => match denial.kind {
                DenialKind::Internal | DenialKind::Unavailable => ErrorSource::Platform,
                DenialKind::Unauthenticated | DenialKind::Refused => ErrorSource::Client,
            },
            Fault::RouteClosed { .. } | Fault::BadPluginBody | Fault::Timeout { .. } => {
                ErrorSource::Plugin
            }
            Fault::Call(CallError::Instantiate(_) | CallError::MemoryBudget) | Fault::Shed(_) => {
                ErrorSource::Platform
            }
            Fault::Call(_) => ErrorSource::Plugin,
        }
    }

    /// HTTP status and `rsp_code`: the one table of how the gateway answers
    /// (ADR 0021). As on the KFTC platform, a business refusal is HTTP 200
    /// with its `rsp_code` (scope, ownership, consent, format); HTTP-level
    /// statuses are kept for what is not a business answer: authentication
    /// (401 with `WWW-Authenticate`), the route (404, 405, 410), the
    /// transport (400 unreadable body, 413), and the platform or the API
    /// failing (500, 503 with `Retry-After` when shed, 504).
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Fault::Denied(denial) => match denial.kind {
                DenialKind::Unauthenticated => (401, denial.rsp_code),
                DenialKind::Refused => (200, denial.rsp_code),
                DenialKind::Internal => (500, denial.rsp_code),
                DenialKind::Unavailable => (503, denial.rsp_code),
            },
            // A field given twice is a request format error, like any other.
            Fault::Repeated(_) => (200, rsp::FORMAT),
            Fault::RouteNotFound { .. } | Fault::VersionNotServed { .. } => (404, rsp::FORMAT),
            Fault::Retired { .. } => (410, rsp::UNAVAILABLE),
            Fault::MethodNotAllowed { .. } => (405, rsp::METHOD_NOT_ALLOWED),
            Fault::BodyTooLarge { .. } => (413, rsp::FORMAT),
            Fault::BodyUnreadable => (400, rsp::FORMAT),
            Fault::RouteClosed { .. } => (503, rsp::UNAVAILABLE),
            Fault::Call(CallError::Deadline(_)) | Fault::Timeout { .. } => (504, rsp::TIMEOUT),
            Fault::Call(
                CallError::Instantiate(_) | CallError::MemoryBudget | CallError::Quarantined(_),
            )
            | Fault::Shed(_) => (503, rsp::UNAVAILABLE),
            Fault::Call(_) | Fault::BadPluginBody => (500, rsp::INTERNAL),
        }
    }

    /// How the request ended, for metrics, logs and the canary.
    pub fn outcome(&self) -> Outcome {
        match self {
            Fault::RouteNotFound { .. } => Outcome::RouteNotFound,
            Fault::Retired { .. } => Outcome::Retired,
            Fault::VersionNotServed { .. } => Outcome::VersionNotServed,
            Fault::MethodNotAllowed { .. } => Outcome::MethodNotAllowed,
            Fault::BodyTooLarge { .. } => Outcome::BodyTooLarge,
            Fault::BodyUnreadable => Outcome::BodyUnreadable,
            Fault::Denied(d) if d.kind == DenialKind::Unavailable => Outcome::Unproven,
            Fault::Denied(_) => Outcome::Denied,
            Fault::Repeated(_) => Outcome::RepeatedField,
            Fault::RouteClosed { .. } => Outcome::RouteClosed,
            Fault::Call(CallError::Deadline(_)) => Outcome::Deadline,
            Fault::Call(CallError::MemoryExhausted(_)) => Outcome::Memory,
            Fault::Call(CallError::Trap(_)) => Outcome::Trap,
            Fault::Timeout { .. } => Outcome::Timeout,
            Fault::Call(CallError::BadStatus(_) | CallError::ResponseTooLarge(_))
            | Fault::BadPluginBody => Outcome::BadResponse,
            Fault::Call(CallError::Instantiate(_)) => Outcome::Overloaded,
            Fault::Call(CallError::MemoryBudget) => Outcome::MemoryBudget,
            Fault::Call(CallError::Quarantined(_)) => Outcome::Quarantined,
            Fault::Shed(_) => Outcome::Shed,
        }
    }

    /// The outcome's label, for log fields.
    pub fn label(&self) -> &'static str {
        self.outcome().as_str()
    }

    /// Refused at once, before the plugin ran, for a reason that passes
    /// (overload, or a node that cannot check tokens until it reaches its
    /// cluster again): the answer carries `Retry-After`, and the gateway
    /// logs no line per request.
    pub fn retry_later(&self) -> bool {
        match self {
            Fault::Shed(_) | Fault::Call(CallError::MemoryBudget | CallError::Quarantined(_)) => {
                true
            }
            Fault::Denied(denial) => denial.kind == DenialKind::Unavailable,
            _ => false,
        }
    }

    /// Logged by the runtime, at a bounded rate per API version with the
    /// guest's panic message (ADR 0020); the gateway does not log it again.
    pub fn logged_by_runtime(&self) -> bool {
        matches!(
            self,
            Fault::Call(
                CallError::Deadline(_)
                    | CallError::MemoryExhausted(_)
                    | CallError::MemoryBudget
                    | CallError::Trap(_)
            )
        )
    }

    /// What the client is told. Client faults say what to fix; plugin and
    /// platform faults reveal nothing internal: the client quotes `api_tran_id`.
    pub fn public_message(&self) -> String {
        match self.source() {
            ErrorSource::Client => match self {
                Fault::Denied(denial) => denial.message.clone(),
                _ => self.to_string(),
            },
            ErrorSource::Plugin | ErrorSource::Platform => match self {
                Fault::Call(CallError::Deadline(_)) | Fault::Timeout { .. } => {
                    "the API did not finish in time; quote api_tran_id to the operator".into()
                }
                Fault::Shed(_)
                | Fault::Call(CallError::MemoryBudget | CallError::Quarantined(_)) => {
                    "the platform is busy; retry after the time in Retry-After".into()
                }
                // Says only that this node cannot check tokens now, not why.
                Fault::Denied(denial) if denial.kind == DenialKind::Unavailable => {
                    "token checks are unavailable on this node; retry shortly".into()
                }
                Fault::RouteClosed { .. } | Fault::Call(CallError::Instantiate(_)) => {
                    "the API is unavailable; retry later or quote api_tran_id to the operator"
                        .into()
                }
                _ => "platform internal error; quote api_tran_id to the operator".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The faults of a routed request are counted on its API version.
    #[test]
    fn routed_faults_have_routed_outcomes() {
        // The faults of a routed request (counted per API version).
        let faults = [
            Fault::BodyTooLarge { limit_kib: 1 },
            Fault::BodyUnreadable,
            Fault::RouteClosed { api: "a".into() },
            Fault::Repeated(sfop_core::access::Repeated {
                place: sfop_core::access::Place::Query,
                field: "fintech_use_num".into(),
            }),
            Fault::Denied(Denial::refused("A0304", "")),
            Fault::BadPluginBody,
            Fault::Timeout { limit_ms: 1 },
            Fault::Shed(Shed::ApiInFlight),
        ];
        for fault in &faults {
            assert!(
                !Outcome::UNROUTED.contains(&fault.outcome()),
                "{}",
                fault.label()
            );
        }
        let repeated = &faults[3];
        assert_eq!(repeated.status_and_code(), (200, "A0004"));
        assert_eq!(
            repeated.public_message(),
            "fintech_use_num: query parameter given more than once"
        );
        for refused in [
            Fault::Call(CallError::MemoryBudget),
            Fault::Call(CallError::Quarantined("trap")),
        ] {
            assert!(!Outcome::UNROUTED.contains(&refused.outcome()));
            assert_eq!(refused.status_and_code(), (503, "A0013"));
            assert!(refused.retry_later());
            assert!(!refused.public_message().contains("trap"), "no internals");
        }
        let shed = Fault::Shed(Shed::InFlight);
        assert_eq!(shed.status_and_code(), (503, "A0013"));
        assert_eq!(shed.source(), ErrorSource::Platform);
        assert!(!shed.public_message().contains("in_flight"), "no internals");
        // A node that cannot prove a token unrevoked: the platform's 503,
        // its cause not told (fail closed, never the caller's fault).
        let unproven = Fault::Denied(Denial::unavailable("the list is 2000 ms old"));
        assert_eq!(unproven.status_and_code(), (503, "A0013"));
        assert_eq!(unproven.source(), ErrorSource::Platform);
        assert!(unproven.retry_later());
        assert!(!Fault::Denied(Denial::internal("")).retry_later());
        assert!(!unproven.public_message().contains("2000"), "no internals");
        // Counted apart from the caller's refusals: an operator alerts on it.
        assert_eq!(unproven.outcome(), Outcome::Unproven);
        assert_eq!(
            Fault::Denied(Denial::refused("A0011", "")).outcome(),
            Outcome::Denied
        );
    }

    /// ADR 0021's table: business refusals are HTTP 200 with their
    /// `rsp_code`; only authentication, the route and the transport are
    /// HTTP-level answers.
    #[test]
    fn business_refusals_are_200_and_only_http_level_answers_are_not() {
        let cases = [
            (
                Fault::Denied(Denial::unauthenticated("O0001", "")),
                (401, "O0001"),
            ),
            (
                Fault::Denied(Denial::unauthenticated("O0002", "")),
                (401, "O0002"),
            ),
            (Fault::Denied(Denial::refused("A0011", "")), (200, "A0011")),
            (Fault::Denied(Denial::refused("A0301", "")), (200, "A0301")),
            (Fault::Denied(Denial::refused("A0304", "")), (200, "A0304")),
            (Fault::Denied(Denial::refused("A0004", "")), (200, "A0004")),
            (Fault::Denied(Denial::internal("")), (500, "A0003")),
            (
                Fault::RouteNotFound {
                    method: "GET".into(),
                    path: "/v2.0/nothing".into(),
                },
                (404, "A0004"),
            ),
            (
                Fault::MethodNotAllowed {
                    method: "DELETE".into(),
                    path: "/v2.0/bank/status".into(),
                    allowed: vec!["GET".into()],
                },
                (405, "O0010"),
            ),
            (Fault::BodyTooLarge { limit_kib: 1 }, (413, "A0004")),
            (Fault::Shed(Shed::ApiInFlight), (503, "A0013")),
        ];
        for (fault, expected) in cases {
            assert_eq!(fault.status_and_code(), expected, "{fault}");
        }
        // A refusal tells the client what to fix, not the kind.
        let refused = Fault::Denied(Denial::refused("A0304", "not yours"));
        assert_eq!(refused.public_message(), "not yours");
        assert_eq!(refused.source(), ErrorSource::Client);
    }
}
