//! The `http` and `config` capabilities' backends as the runtime sees them:
//! an [`Outbound`] client (the platform's, or the testbed's virtual
//! upstreams) and the operator's [`VariableValues`]
//! (docs/adr/0027-outbound-http-and-variables.md).

use std::fmt;
use std::time::Instant;

use crate::origin::AllowedHosts;

/// One outbound request, checked and bounded by the host.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Upper-case method.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the whole exchange (redirects included) must be over.
    pub deadline: Instant,
    /// The API making the call, for the client's logs.
    pub api: String,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why an outbound request got no answer: the WIT `http.error`, one case
/// each. Messages name what was wrong and hold nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("denied: {0}")]
    DeniedHost(String),
    #[error("no complete answer before the deadline")]
    Timeout,
    #[error("the response body exceeds {0} bytes")]
    TooLarge(u64),
    #[error("upstream not reached: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Sends plugins' outbound requests. Shared by every instance: it keeps
/// the connection pool.
#[async_trait::async_trait]
pub trait Outbound: Send + Sync + fmt::Debug {
    /// Sends `request` if `allowed` permits its origin (and every redirect's).
    async fn send(
        &self,
        allowed: &AllowedHosts,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError>;
}

/// The values the operator set for plugins' variables.
pub trait VariableValues: Send + Sync + fmt::Debug {
    /// The value of variable `name` of API `api`, if the operator set one.
    fn value(&self, api: &str, name: &str) -> Option<String>;
}

/// The values an operator set through the admin API for one API's
/// variables, by name: they win over the environment and the config file
/// (ADR 0027).
pub type SetValues = std::collections::BTreeMap<String, Secret>;

/// No values set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoValues;

impl VariableValues for NoValues {
    fn value(&self, _api: &str, _name: &str) -> Option<String> {
        None
    }
}

/// A value that must not be shown: its `Debug` and `Display` print
/// `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
