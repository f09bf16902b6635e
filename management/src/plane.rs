//! The two seams of the management center: the data plane it drives (load a
//! release, publish the routing of every API at once) and the testbed gate it
//! asks before anything goes live. One process wires both in (the embedded
//! default); a cluster could put either behind a network call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sfop_core::Manifest;
use sfop_core::outbound::SetValues;

use sfop_core::package::Package;

/// How one API is served after a publish.
#[derive(Debug, Clone)]
pub enum Published<R> {
    /// The stable release, and a canary candidate with its share.
    Serving {
        stable: R,
        canary: Option<CanarySplit<R>>,
        /// Deprecated: the sunset date (`YYYY-MM-DD`) clients are told.
        sunset: Option<String>,
    },
    /// The API should serve but its release could not be loaded: its routes
    /// answer "unavailable", never fall through.
    Closed { manifest: Manifest },
    /// Taken out of service: its routes say so.
    Retired {
        manifest: Manifest,
        sunset: Option<String>,
    },
}

/// A canary candidate as the data plane needs it.
#[derive(Debug, Clone)]
pub struct CanarySplit<R> {
    pub release: R,
    pub percent: u8,
    pub sticky: Sticky,
}

/// What keeps a caller on one version during a canary (an admin API type).
pub use sfop_admin_api::Sticky;

/// Requests a release has answered so far, and how many of them failed
/// through the release's fault (traps, deadlines, 5xx answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub requests: u64,
    pub errors: u64,
    /// The release is quarantined now (throttled for repeated plugin
    /// faults), and by which fault: `deadline`, `memory` or `trap`.
    pub quarantined: Option<&'static str>,
}

/// The data plane as the management center sees it.
pub trait DataPlane: Send + Sync + 'static {
    /// A compiled, pre-linked release, cheap to clone.
    type Release: Clone + Send + Sync + 'static;
    /// A complete routing, built but not yet serving.
    type Table: Send + 'static;

    /// Validates, compiles and pre-links a component (slow: called on a
    /// blocking thread, never on the request path).
    /// `set`: the values an operator set through the admin API for the
    /// package's variables.
    fn load(
        &self,
        manifest: Manifest,
        component: &[u8],
        set: &SetValues,
    ) -> Result<Self::Release, PlaneError>;
    /// Whether a release came from the on-disk compile cache.
    fn compiled_from_cache(&self, release: &Self::Release) -> bool;
    /// Builds the routing of every API (and the platform's own endpoints);
    /// fails, changing nothing, when two APIs claim one route.
    fn build(&self, apis: &[Published<Self::Release>]) -> Result<Self::Table, PlaneError>;
    /// Switches to `table` atomically; requests in flight finish on the
    /// release they started on.
    fn swap(&self, table: Self::Table);
    /// The counters of a release.
    fn health(&self, release: &Self::Release) -> Health;
    /// The counters of `name` at `version` in this process, whether or not
    /// a release of it is loaded now (a version rolled back from and no
    /// longer kept compiled still shows what it served); `None` when the
    /// data plane never counted it.
    fn recorded(&self, name: &str, version: &semver::Version) -> Option<Health>;
}

/// A boxed cause, kept as the error's source.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the data plane could not load a component or build a routing, and
/// who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// The package is at fault (not a valid component, an import it may
    /// not have, a route another API serves): refused, naming what to fix.
    #[error(transparent)]
    Rejected(Cause),
    /// The platform failed; nothing is known against the package.
    #[error(transparent)]
    Internal(Cause),
}

/// Why the gate could not test or verify, and who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The attestation does not vouch for these bytes (tampered, for other
    /// bytes, signed by a key this platform does not trust).
    #[error(transparent)]
    Refused(Cause),
    /// The testbed itself failed (could not run, could not sign).
    #[error(transparent)]
    Internal(Cause),
}

/// A testbed run's outcome.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub passed: bool,
    /// The report (JSON), kept in the registry.
    pub report: serde_json::Value,
    /// The same, rendered for people (escaped HTML).
    pub report_html: String,
    /// On pass: the signed attestation (JSON text) for exactly these bytes.
    pub attestation: Option<String>,
}

/// Boxed future of the gate.
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, GateError>> + Send + 'a>>;

/// The testbed, as the promotion gate.
pub trait Gate: Send + Sync + fmt::Debug {
    /// Runs the testbed on `candidate` (compared with `live` when given).
    fn test<'a>(&'a self, candidate: &'a Package, live: Option<&'a Package>) -> GateFuture<'a>;
    /// Checks that `attestation` is a valid, signed pass for exactly
    /// `package`'s bytes; the error says what is wrong.
    fn verify(&self, attestation: &str, package: &Package) -> Result<(), GateError>;
}
