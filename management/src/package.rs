//! An API package as the registry stores it: the manifest text, the
//! component's bytes and the package's own testbed cases.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sfop_core::Manifest;
use sha2::{Digest, Sha256};

/// File names inside a package folder.
pub const MANIFEST_FILE: &str = "sfop.toml";
pub const COMPONENT_FILE: &str = "api.wasm";
pub const CASES_FILE: &str = "testbed.toml";

/// An API package: what `sfop api push` uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub manifest_text: String,
    pub manifest: Manifest,
    pub component: Vec<u8>,
    /// The package's conformance cases (`testbed.toml`), if it ships any.
    pub cases: Option<String>,
}

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: String,
        source: sfop_core::ManifestError,
    },
    #[error("package field `{field}`: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl Package {
    /// A package from its parts; the manifest is parsed and validated.
    pub fn new(
        manifest_text: String,
        component: Vec<u8>,
        cases: Option<String>,
    ) -> Result<Self, PackageError> {
        let manifest =
            Manifest::parse(&manifest_text).map_err(|source| PackageError::Manifest {
                path: MANIFEST_FILE.into(),
                source,
            })?;
        if component.is_empty() {
            return Err(PackageError::Field {
                field: "component",
                problem: "is empty".into(),
            });
        }
        Ok(Self {
            manifest_text,
            manifest,
            component,
            cases,
        })
    }

    /// Reads a package folder (`sfop.toml`, `api.wasm`, optional `testbed.toml`).
    pub fn read_dir(dir: &Path) -> Result<Self, PackageError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| PackageError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_text =
            String::from_utf8(read(MANIFEST_FILE)?).map_err(|e| PackageError::Manifest {
                path: manifest_path.display().to_string(),
                source: sfop_core::ManifestError::Invalid {
                    key: "(file)",
                    problem: format!("not UTF-8: {e}"),
                },
            })?;
        let manifest =
            Manifest::parse(&manifest_text).map_err(|source| PackageError::Manifest {
                path: manifest_path.display().to_string(),
                source,
            })?;
        let component = read(COMPONENT_FILE)?;
        let cases = match std::fs::read_to_string(dir.join(CASES_FILE)) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(PackageError::Io {
                    path: dir.join(CASES_FILE).display().to_string(),
                    source,
                });
            }
        };
        Ok(Self {
            manifest_text,
            manifest,
            component,
            cases,
        })
    }

    /// Hex SHA-256 of the component: its identity in the registry.
    pub fn component_sha256(&self) -> String {
        sha256(&self.component)
    }

    /// Hex SHA-256 of the manifest text.
    pub fn manifest_sha256(&self) -> String {
        sha256(self.manifest_text.as_bytes())
    }

    /// The wire form for the admin API.
    pub fn to_upload(&self) -> Upload {
        use base64::Engine;
        Upload {
            manifest: self.manifest_text.clone(),
            component: base64::engine::general_purpose::STANDARD.encode(&self.component),
            cases: self.cases.clone(),
        }
    }

    /// From the wire form; errors name the field.
    pub fn from_upload(upload: Upload) -> Result<Self, PackageError> {
        use base64::Engine;
        let component = base64::engine::general_purpose::STANDARD
            .decode(upload.component.as_bytes())
            .map_err(|e| PackageError::Field {
                field: "component",
                problem: format!("is not base64: {e}"),
            })?;
        Self::new(upload.manifest, component, upload.cases)
    }
}

/// A package as JSON: the manifest text, the component in base64, the cases.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub manifest: String,
    pub component: String,
    #[serde(default)]
    pub cases: Option<String>,
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
