//! The seam where the gateway asks "may this request reach this API, and as
//! whom?". The platform's OAuth/biscuit authoriser implements it; the gateway
//! only knows the trait, so the data plane does not depend on how tokens work.

use std::fmt;

use hyper::HeaderMap;
use sfop_core::{Claims, Manifest};

/// Everything an authoriser may look at.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub manifest: &'a Manifest,
    pub method: &'a str,
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The request body (already within the API's size cap).
    pub body: &'a [u8],
    /// SHA-256 fingerprint of a verified client certificate (mutual TLS).
    pub client_cert: Option<&'a str>,
}

/// What kind of refusal a [`Denial`] is. The gateway turns each kind into an
/// HTTP status in one place, [`crate::Fault::status_and_code`] (ADR 0021):
/// only authentication is an HTTP-level answer; every other refusal is a
/// business answer, HTTP 200 with its `rsp_code`, as the KFTC platform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialKind {
    /// No credentials, or credentials the platform rejects (`O0001`,
    /// `O0002`): HTTP 401 with `WWW-Authenticate`.
    Unauthenticated,
    /// The caller is known but may not do this: a scope the token lacks
    /// (`A0011`), someone else's account or user (`A0304`, `A0301`), a
    /// malformed field (`A0004`). HTTP 200 with the `rsp_code`.
    Refused,
    /// The authoriser itself failed (`A0003`): HTTP 500.
    Internal,
    /// The authoriser cannot decide now, through no fault of the caller's
    /// or its own: a cluster node whose list of revoked tokens is too old
    /// to prove a token unrevoked (ADR 0029). HTTP 503, `A0013`.
    Unavailable,
}

/// A refusal: the gateway answers with the status of its kind, its
/// `rsp_code` and message in the common envelope. The message must say what
/// to fix without revealing policy internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub kind: DenialKind,
    pub rsp_code: &'static str,
    pub message: String,
}

impl Denial {
    /// No or rejected credentials (`O0001`, `O0002`).
    pub fn unauthenticated(rsp_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: DenialKind::Unauthenticated,
            rsp_code,
            message: message.into(),
        }
    }

    /// A business refusal of a known caller.
    pub fn refused(rsp_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: DenialKind::Refused,
            rsp_code,
            message: message.into(),
        }
    }

    /// The authoriser cannot decide now (fail closed); the client retries.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: DenialKind::Unavailable,
            rsp_code: sfop_core::rsp::UNAVAILABLE,
            message: message.into(),
        }
    }

    /// The authoriser failed; the client quotes `api_tran_id`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: DenialKind::Internal,
            rsp_code: sfop_core::rsp::INTERNAL,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.kind, self.rsp_code, self.message)
    }
}

/// Decides every routed request. Implementations deny by default.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// The verified claims the plugin will see through `auth-context`, or a
    /// denial. `Ok(None)` lets the request through with no caller, which only
    /// [`NoAuth`] does.
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Option<Claims>, Denial>;
}

/// No authorisation at all: every routed request reaches its API with no
/// caller. Only for development and for tests of the data plane itself; the
/// platform never selects it unless told to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAuth;

impl Authorizer for NoAuth {
    fn authorize(&self, _request: &AuthRequest<'_>) -> Result<Option<Claims>, Denial> {
        Ok(None)
    }
}

/// The largest body the platform's router reads for a request whose route
/// has not admitted its caller from the request head (and set a
/// `platform::BodyLimit`): enough for any OAuth or portal form.
pub const UNAUTHENTICATED_MAX_BODY: usize = 64 * 1024;
