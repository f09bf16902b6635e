//! The registry's records in the store: one per API version (immutable bytes
//! plus what the testbed said), one per API (which version is live, the
//! canary, the earlier live versions for rollback), and the components
//! themselves, content-addressed by SHA-256.

use serde::{Deserialize, Serialize};
use sfop_store::{Store, Tree};

use crate::plane::Sticky;

/// Tree names.
pub(crate) const VERSIONS: &str = "mgmt.versions";
pub(crate) const APIS: &str = "mgmt.apis";
pub(crate) const BLOBS: &str = "mgmt.blobs";
pub(crate) const AUDIT: &str = "mgmt.audit";

/// One uploaded API version. Its bytes never change once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub name: String,
    pub version: semver::Version,
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
    pub live: Option<semver::Version>,
    /// Earlier live versions, oldest first: `rollback` returns to the last.
    pub previous: Vec<semver::Version>,
    pub canary: Option<CanaryRecord>,
    /// Deprecated, to be retired on this date (`YYYY-MM-DD`).
    pub sunset: Option<String>,
    /// Taken out of service (unix ms).
    pub retired_at_ms: Option<u64>,
}

/// A running canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    pub version: semver::Version,
    pub percent: u8,
    pub sticky: Sticky,
    /// Roll back automatically when the candidate's error rate exceeds this
    /// (0.0..=1.0) over at least `min_requests` requests.
    pub max_error_rate: f64,
    pub min_requests: u64,
    pub started_at_ms: u64,
}

/// The state of a version, derived from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// The state of `version` of the API `api`.
pub fn state_of(api: Option<&ApiRecord>, version: &VersionRecord) -> VersionState {
    let v = &version.version;
    if let Some(api) = api {
        if api.live.as_ref() == Some(v) {
            return match (api.retired_at_ms, &api.sunset) {
                (Some(_), _) => VersionState::Retired,
                (None, Some(_)) => VersionState::Deprecated,
                (None, None) => VersionState::Live,
            };
        }
        if api.canary.as_ref().map(|c| &c.version) == Some(v) {
            return VersionState::Canary;
        }
        if api.previous.contains(v) {
            return VersionState::Previous;
        }
    }
    match &version.test {
        None => VersionState::Uploaded,
        Some(t) if t.passed => VersionState::Tested,
        Some(_) => VersionState::Failed,
    }
}

/// Store keys.
pub(crate) fn version_key(name: &str, version: &semver::Version) -> String {
    format!("{name}@{version}")
}

/// The registry's trees.
#[derive(Debug, Clone)]
pub(crate) struct Trees {
    pub versions: Tree,
    pub apis: Tree,
    pub blobs: Tree,
    pub audit: Tree,
}

impl Trees {
    pub fn open(store: &Store) -> sfop_store::Result<Self> {
        Ok(Self {
            versions: store.tree(VERSIONS)?,
            apis: store.tree(APIS)?,
            blobs: store.tree(BLOBS)?,
            audit: store.tree(AUDIT)?,
        })
    }

    pub fn version(
        &self,
        name: &str,
        version: &semver::Version,
    ) -> sfop_store::Result<Option<VersionRecord>> {
        self.versions.get_json(&version_key(name, version))
    }

    /// Every version of `name`, lowest first.
    pub fn versions_of(&self, name: &str) -> sfop_store::Result<Vec<VersionRecord>> {
        let mut all: Vec<VersionRecord> = self
            .versions
            .prefix_json::<VersionRecord>(&format!("{name}@"))
            .map(|r| r.map(|(_, v)| v))
            .collect::<sfop_store::Result<_>>()?;
        all.retain(|v| v.name == name);
        all.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(all)
    }

    pub fn api(&self, name: &str) -> sfop_store::Result<Option<ApiRecord>> {
        self.apis.get_json(name)
    }

    pub fn apis(&self) -> sfop_store::Result<Vec<ApiRecord>> {
        Ok(self
            .apis
            .values_json::<ApiRecord>()?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    pub fn blob(&self, sha256: &str) -> sfop_store::Result<Option<Vec<u8>>> {
        self.blobs.get(sha256.as_bytes())
    }
}
