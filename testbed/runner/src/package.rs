//! The package the testbed judges is sfop-core's [`Package`]; the testbed
//! adds how it reads the package's own conformance cases.

pub use sfop_core::package::{
    CASES_FILE, COMPONENT_FILE, MANIFEST_FILE, Package, PackageError, sha256_hex,
};

use crate::cases::Cases;

/// Where `sfop testbed run` writes the attestation of a passing package.
pub const ATTESTATION_FILE: &str = "attestation.json";

/// The package's own conformance cases: none without `testbed.toml`, and an
/// error naming the key or case when it does not parse.
pub fn cases(package: &Package) -> Result<Cases, String> {
    package
        .cases_text
        .as_deref()
        .map(Cases::parse)
        .transpose()
        .map(Option::unwrap_or_default)
}
