//! The registry's records in the store: one per API version (immutable bytes
//! plus what the testbed said), one per API (which version is live, the
//! canary, the earlier live versions for rollback), and the components
//! themselves, content-addressed by SHA-256.

use sfop_store::{Store, Tree};

/// Tree names.
pub(crate) const VERSIONS: &str = "mgmt.versions";
pub(crate) const APIS: &str = "mgmt.apis";
pub(crate) const BLOBS: &str = "mgmt.blobs";
pub(crate) const AUDIT: &str = "mgmt.audit";
/// Per API, the values set through the admin API, sealed (`variables`).
pub(crate) const VARIABLES: &str = "mgmt.variables";

/// The records are the admin API's types (sfop-admin-api): the API shows
/// them as stored, so the wire and the store cannot drift apart.
pub use sfop_admin_api::apis::{ApiRecord, CanaryRecord, TestRecord, VersionRecord, VersionState};

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
    pub variables: Tree,
}

impl Trees {
    pub fn open(store: &Store) -> sfop_store::Result<Self> {
        Ok(Self {
            versions: store.tree(VERSIONS)?,
            apis: store.tree(APIS)?,
            blobs: store.tree(BLOBS)?,
            audit: store.tree(AUDIT)?,
            variables: store.tree(VARIABLES)?,
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
