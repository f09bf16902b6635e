//! Packages on the wire: the admin API's JSON form of sfop-core's
//! [`Package`] (the manifest text, the component in base64, the cases).

use base64::Engine;
use serde::{Deserialize, Serialize};
use sfop_core::package::{Package, PackageError};

/// A package as JSON: the manifest text, the component in base64, the cases.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub manifest: String,
    pub component: String,
    #[serde(default)]
    pub cases: Option<String>,
}

impl Upload {
    /// The wire form of `package`.
    pub fn of(package: &Package) -> Self {
        Self {
            manifest: package.manifest_text.clone(),
            component: base64::engine::general_purpose::STANDARD.encode(&package.component),
            cases: package.cases_text.clone(),
        }
    }

    /// The package; errors name the field.
    pub fn into_package(self) -> Result<Package, PackageError> {
        let component = base64::engine::general_purpose::STANDARD
            .decode(self.component.as_bytes())
            .map_err(|e| PackageError::Field {
                field: "component",
                problem: format!("is not base64: {e}"),
            })?;
        Package::from_parts(self.manifest, component, self.cases)
    }
}
