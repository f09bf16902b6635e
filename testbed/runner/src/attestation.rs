//! Attestations: the testbed's signed statement that exactly these bytes
//! (component and manifest) passed, under this WIT world and testbed
//! version. The management center verifies one before promotion and the
//! gateway before loading a release (see docs/adr/0009-testbed-attestation.md).
//!
//! # Format (`sfop-attestation/1`)
//! A JSON object with the fields of [`Attestation`]. `signature` is the
//! lower-case hex of an Ed25519 signature over the **canonical encoding of
//! every other field**: one JSON object holding all fields except
//! `signature`, keys sorted by their bytes, no insignificant whitespace,
//! strings escaped as JSON requires (only `"`, `\` and control characters;
//! everything else as UTF-8), integers in decimal. For these value types that
//! is the JSON Canonicalization Scheme (RFC 8785). Field order and
//! whitespace of the stored file do not matter; any change to a value does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::package::{ATTESTATION_FILE, Package};
use crate::report::Report;

/// The only attestation format this code reads and writes.
pub const ATTESTATION_FORMAT: &str = "sfop-attestation/1";
/// File holding the signing key (PKCS#8, owner-only) in the signer's dir.
pub const KEY_FILE: &str = "testbed-signing.key";
/// File holding the signer's [`TrustedKey`] as JSON, for operators to copy.
pub const PUBLIC_KEY_FILE: &str = "testbed-signing.pub.json";

/// The WIT world this platform serves, as attestations name it.
pub fn wit_world() -> String {
    format!(
        "{}/api@{}",
        sfop_runtime::PLATFORM_PACKAGE,
        sfop_runtime::PLATFORM_VERSION
    )
}

/// A signed testbed verdict bound to a package's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// [`ATTESTATION_FORMAT`].
    pub format: String,
    /// The manifest's `name`.
    pub api: String,
    /// The manifest's `version`.
    pub version: String,
    /// Lower-case hex SHA-256 of `api.wasm`.
    pub component_sha256: String,
    /// Lower-case hex SHA-256 of `sfop.toml` as shipped.
    pub manifest_sha256: String,
    /// The WIT world the package was checked against, e.g. `sfop:platform/api@0.1.0`.
    pub wit_world: String,
    /// The `sfop-testbed` version that ran the checks.
    pub testbed_version: String,
    /// `pass` (the testbed signs nothing else).
    pub verdict: String,
    /// Lower-case hex SHA-256 of the report JSON (`report.json`).
    pub report_sha256: String,
    /// When it was signed, Unix milliseconds.
    pub issued_at: u64,
    /// Which key signed: [`TrustedKey::key_id`].
    pub key_id: String,
    /// Lower-case hex Ed25519 signature over the canonical encoding of every
    /// other field (module docs).
    pub signature: String,
}

/// Why an attestation was refused (or could not be made). Each message
/// names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("no attestation: {0}")]
    Missing(String),
    #[error("attestation is not a valid sfop attestation document: {0}")]
    Malformed(String),
    #[error("package: {0}")]
    Package(String),
    #[error("unsupported attestation format {0:?} (this platform reads {ATTESTATION_FORMAT})")]
    UnsupportedFormat(String),
    #[error("attestation is for WIT world {attested:?}, but this platform serves {served}")]
    UnsupportedWorld { attested: String, served: String },
    #[error("attestation is signed by unknown key {key_id:?} (trusted: {trusted})")]
    UnknownKey { key_id: String, trusted: String },
    #[error("attestation signature does not verify with key {0}: the attestation was altered")]
    BadSignature(String),
    #[error("attestation is for {attested}, but the package is {package}")]
    OtherPackage { attested: String, package: String },
    #[error(
        "attestation for other bytes: it attests {what} sha256 {attested}, \
         the package's {what} has sha256 {actual}"
    )]
    OtherBytes {
        what: &'static str,
        attested: String,
        actual: String,
    },
    #[error("attestation verdict is {0:?}, not \"pass\"")]
    NotPassed(String),
    #[error("cannot sign: {0}")]
    Refused(String),
    #[error("testbed signing key {path}: {problem}")]
    Key { path: String, problem: String },
}

/// A public key whose attestations are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// First 16 bytes of SHA-256 of the public key, lower-case hex.
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
}

impl TrustedKey {
    /// The trusted key for a raw Ed25519 public key, with its derived id.
    pub fn from_public_key(public_key: &[u8]) -> Self {
        Self {
            key_id: key_id(public_key),
            public_key: public_key.to_vec(),
        }
    }
}

impl TrustedKey {
    /// Reads trusted keys from a JSON file holding one key (as the signer
    /// writes `testbed-signing.pub.json`) or a list of keys.
    pub fn read_file(path: &Path) -> Result<Vec<TrustedKey>, AttestationError> {
        let key_error = |problem: String| AttestationError::Key {
            path: path.display().to_string(),
            problem,
        };
        let bytes = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(TrustedKey),
            Many(Vec<TrustedKey>),
        }
        let keys = match serde_json::from_slice(&bytes).map_err(|e| key_error(e.to_string()))? {
            OneOrMany::One(k) => vec![k],
            OneOrMany::Many(ks) => ks,
        };
        for k in &keys {
            if k.key_id != key_id(&k.public_key) {
                return Err(key_error(format!(
                    "key_id {} is not derived from its public key",
                    k.key_id
                )));
            }
        }
        Ok(keys)
    }
}

fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..16])
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

impl Attestation {
    /// The bytes the signature covers (module docs).
    pub fn signed_message(&self) -> Vec<u8> {
        let fields: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
            ("format", self.format.clone().into()),
            ("api", self.api.clone().into()),
            ("version", self.version.clone().into()),
            ("component_sha256", self.component_sha256.clone().into()),
            ("manifest_sha256", self.manifest_sha256.clone().into()),
            ("wit_world", self.wit_world.clone().into()),
            ("testbed_version", self.testbed_version.clone().into()),
            ("verdict", self.verdict.clone().into()),
            ("report_sha256", self.report_sha256.clone().into()),
            ("issued_at", self.issued_at.into()),
            ("key_id", self.key_id.clone().into()),
        ]);
        serde_json::to_vec(&fields).unwrap_or_default()
    }

    /// Pretty JSON, as `attestation.json` holds it.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses an attestation document (no verification).
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        serde_json::from_slice(bytes).map_err(|e| AttestationError::Malformed(e.to_string()))
    }

    /// Reads `attestation.json` from a package folder.
    pub fn read_dir(dir: &Path) -> Result<Self, AttestationError> {
        let path = dir.join(ATTESTATION_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_json(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AttestationError::Missing(
                format!("{} does not exist", path.display()),
            )),
            Err(e) => Err(AttestationError::Missing(format!(
                "{}: {e}",
                path.display()
            ))),
        }
    }
}

/// Checks that `attestation` is a valid, trusted, passing statement about
/// exactly `package`'s bytes. Refuses, naming the reason: unsupported format
/// or WIT world, unknown key, bad signature (altered attestation), another
/// API or version, other component or manifest bytes, a verdict other than pass.
pub fn verify(
    attestation: &Attestation,
    trusted: &[TrustedKey],
    package: &Package,
) -> Result<(), AttestationError> {
    if attestation.format != ATTESTATION_FORMAT {
        return Err(AttestationError::UnsupportedFormat(
            attestation.format.clone(),
        ));
    }
    let key = trusted
        .iter()
        .find(|k| k.key_id == attestation.key_id)
        .ok_or_else(|| AttestationError::UnknownKey {
            key_id: attestation.key_id.clone(),
            trusted: if trusted.is_empty() {
                "none".into()
            } else {
                trusted
                    .iter()
                    .map(|k| k.key_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    let signature = hex::decode(&attestation.signature)
        .map_err(|_| AttestationError::BadSignature(key.key_id.clone()))?;
    UnparsedPublicKey::new(&ED25519, &key.public_key)
        .verify(&attestation.signed_message(), &signature)
        .map_err(|_| AttestationError::BadSignature(key.key_id.clone()))?;
    // Signed, so these are the testbed's own words from here on.
    // Every world served side by side (0.1.0 packages attested before 0.2.0
    // keep their attestations).
    let served = wit_world();
    let still_served = sfop_runtime::PLATFORM_VERSIONS
        .iter()
        .any(|v| attestation.wit_world == format!("{}/api@{v}", sfop_runtime::PLATFORM_PACKAGE));
    if !still_served {
        return Err(AttestationError::UnsupportedWorld {
            attested: attestation.wit_world.clone(),
            served,
        });
    }
    let package_label = package.label();
    let attested_label = format!("{}@{}", attestation.api, attestation.version);
    if attested_label != package_label {
        return Err(AttestationError::OtherPackage {
            attested: attested_label,
            package: package_label,
        });
    }
    for (what, attested, actual) in [
        (
            "component",
            &attestation.component_sha256,
            package.component_sha256(),
        ),
        (
            "manifest",
            &attestation.manifest_sha256,
            package.manifest_sha256(),
        ),
    ] {
        if *attested != actual {
            return Err(AttestationError::OtherBytes {
                what,
                attested: attested.clone(),
                actual,
            });
        }
    }
    if attestation.verdict != "pass" {
        return Err(AttestationError::NotPassed(attestation.verdict.clone()));
    }
    Ok(())
}

/// Reads a package folder and its `attestation.json` and verifies them:
/// what a gateway or management center does before serving a release.
pub fn verify_dir(
    dir: &Path,
    trusted: &[TrustedKey],
) -> Result<(Package, Attestation), AttestationError> {
    let package = Package::read_dir(dir).map_err(|e| AttestationError::Malformed(e.to_string()))?;
    let attestation = Attestation::read_dir(dir)?;
    verify(&attestation, trusted, &package)?;
    Ok((package, attestation))
}

/// The testbed's signing key.
pub struct AttestationSigner {
    key: Ed25519KeyPair,
    trusted: TrustedKey,
    path: PathBuf,
}

impl std::fmt::Debug for AttestationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationSigner")
            .field("key_id", &self.trusted.key_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AttestationSigner {
    /// Opens the key in `dir/testbed-signing.key`, or creates one there
    /// (PKCS#8 v2, owner-only) with its public half in
    /// `dir/testbed-signing.pub.json`.
    pub fn open_or_create(dir: &Path) -> Result<Self, AttestationError> {
        let path = dir.join(KEY_FILE);
        let key_error = |problem: String| AttestationError::Key {
            path: path.display().to_string(),
            problem,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| key_error(e.to_string()))?;
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| key_error("the system random source failed".into()))?;
                sfop_core::files::write_private(&path, doc.as_ref())
                    .map_err(|e| key_error(e.to_string()))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(key_error(e.to_string())),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| key_error(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let trusted = TrustedKey::from_public_key(key.public_key().as_ref());
        let public_path = dir.join(PUBLIC_KEY_FILE);
        if !public_path.exists() {
            let json = serde_json::to_vec_pretty(&trusted).unwrap_or_default();
            std::fs::write(&public_path, json).map_err(|e| AttestationError::Key {
                path: public_path.display().to_string(),
                problem: e.to_string(),
            })?;
        }
        Ok(Self { key, trusted, path })
    }

    /// The public key to trust for this signer's attestations.
    pub fn public_key(&self) -> TrustedKey {
        self.trusted.clone()
    }

    /// Signs the verdict of `report` about `package`. Refuses a report that
    /// did not pass or that is about other bytes.
    pub fn sign(
        &self,
        package: &Package,
        report: &Report,
    ) -> Result<Attestation, AttestationError> {
        if !report.passed() {
            return Err(AttestationError::Refused(format!(
                "the report's verdict is {}; failed rules: {}",
                report.verdict.as_str(),
                report
                    .failed_rules()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if report.component_sha256 != package.component_sha256()
            || report.manifest_sha256 != package.manifest_sha256()
        {
            return Err(AttestationError::Refused(
                "the report is about other bytes than the package".into(),
            ));
        }
        let mut attestation = Attestation {
            format: ATTESTATION_FORMAT.into(),
            api: package.manifest.name.clone(),
            version: package.manifest.version.to_string(),
            component_sha256: package.component_sha256(),
            manifest_sha256: package.manifest_sha256(),
            wit_world: wit_world(),
            testbed_version: crate::TESTBED_VERSION.into(),
            verdict: "pass".into(),
            report_sha256: report.sha256(),
            issued_at: sfop_core::time::now_millis(),
            key_id: self.trusted.key_id.clone(),
            signature: String::new(),
        };
        let signature = self.key.sign(&attestation.signed_message());
        attestation.signature = hex::encode(signature.as_ref());
        Ok(attestation)
    }
}
