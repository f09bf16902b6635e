//! An API package as the management center stores it and the testbed judges
//! it: `sfop.toml` (the manifest), `api.wasm` (the component) and, optionally,
//! `testbed.toml` (the package's own conformance cases), as a folder or as
//! the exact texts and bytes.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, ManifestError};

/// File names inside a package folder.
pub const MANIFEST_FILE: &str = "sfop.toml";
pub const COMPONENT_FILE: &str = "api.wasm";
pub const CASES_FILE: &str = "testbed.toml";
/// Where `sfop testbed run` writes the attestation of a passing package.
pub const ATTESTATION_FILE: &str = "attestation.json";

/// Why a package folder could not be read. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest { path: String, source: ManifestError },
    #[error("{path}: {problem}")]
    Cases { path: String, problem: String },
    #[error("package field `{field}`: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

/// One API package: the exact bytes that will run, and what they claim.
#[derive(Debug, Clone)]
pub struct Package {
    /// `sfop.toml` exactly as shipped (its bytes are what `manifest_sha256` hashes).
    pub manifest_text: String,
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// `api.wasm` exactly as shipped.
    pub component: Vec<u8>,
    /// `testbed.toml` exactly as shipped, when the package has one.
    pub cases_text: Option<String>,
}

impl Package {
    /// Reads and parses a package folder.
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
                source: ManifestError::Invalid {
                    key: "(file)",
                    problem: format!("not UTF-8: {e}"),
                },
            })?;
        let component = read(COMPONENT_FILE)?;
        let cases_path = dir.join(CASES_FILE);
        let cases_text = if cases_path.is_file() {
            let bytes = read(CASES_FILE)?;
            Some(String::from_utf8(bytes).map_err(|e| PackageError::Cases {
                path: cases_path.display().to_string(),
                problem: format!("not UTF-8: {e}"),
            })?)
        } else {
            None
        };
        Self::from_parts(manifest_text, component, cases_text).map_err(|e| match e {
            PackageError::Manifest { source, .. } => PackageError::Manifest {
                path: manifest_path.display().to_string(),
                source,
            },
            PackageError::Cases { problem, .. } => PackageError::Cases {
                path: cases_path.display().to_string(),
                problem,
            },
            other => other,
        })
    }

    /// A package from its parts (what the management center stores).
    pub fn from_parts(
        manifest_text: String,
        component: Vec<u8>,
        cases_text: Option<String>,
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
            cases_text,
        })
    }

    /// Writes the package into `dir` (created if needed).
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(MANIFEST_FILE), &self.manifest_text)?;
        std::fs::write(dir.join(COMPONENT_FILE), &self.component)?;
        if let Some(cases) = &self.cases_text {
            std::fs::write(dir.join(CASES_FILE), cases)?;
        }
        Ok(())
    }

    /// Lower-case hex SHA-256 of `api.wasm`.
    pub fn component_sha256(&self) -> String {
        sha256_hex(&self.component)
    }

    /// Lower-case hex SHA-256 of `sfop.toml` as shipped.
    pub fn manifest_sha256(&self) -> String {
        sha256_hex(self.manifest_text.as_bytes())
    }

    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
