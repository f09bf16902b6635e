//! The `[outbound]` section (the client behind plugins' `http` capability)
//! and `[variables]` (the operator's values of plugins' variables, read
//! through `config`), docs/adr/0027-outbound-http-and-variables.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sfop_core::outbound::VariableValues;
use sfop_outbound::{Client, ClientCert, ClientConfig};

use crate::config::ConfigError;

/// Environment variables that set a plugin's variable:
/// `SFOP_VAR_{API}__{NAME}`, upper case, `-` as `_`
/// (`SFOP_VAR_BANK_SCORE__API_KEY`). They win over the config file.
pub const VARIABLE_ENV_PREFIX: &str = "SFOP_VAR_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSection {
    /// Trust the system's CA certificates.
    pub system_roots: bool,
    /// A PEM bundle of more CA certificates (an internal CA of the banks).
    pub ca: Option<PathBuf>,
    /// Client certificates, one per origin that asks for one.
    pub client_certs: Vec<OutboundClientCert>,
    /// The largest response body a plugin receives, KiB.
    pub max_response_kib: u64,
    pub connect_timeout_ms: u64,
    /// Redirects followed per request (each to an allowed origin only).
    pub max_redirects: u8,
}

impl Default for OutboundSection {
    fn default() -> Self {
        Self {
            system_roots: true,
            ca: None,
            client_certs: Vec::new(),
            max_response_kib: 1024,
            connect_timeout_ms: 5_000,
            max_redirects: 5,
        }
    }
}

/// A client certificate for one origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundClientCert {
    /// `https://host:port`.
    pub origin: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl OutboundSection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.client().map(|_| ())
    }

    /// The client this section describes.
    pub(crate) fn client(&self) -> Result<Client, ConfigError> {
        if !(1..=(256 << 10)).contains(&self.max_response_kib) {
            return Err(invalid(
                "outbound.max_response_kib",
                "must be between 1 and 262144".into(),
            ));
        }
        if !(10..=60_000).contains(&self.connect_timeout_ms) {
            return Err(invalid(
                "outbound.connect_timeout_ms",
                "must be between 10 and 60000".into(),
            ));
        }
        if self.max_redirects > 20 {
            return Err(invalid(
                "outbound.max_redirects",
                "must be at most 20".into(),
            ));
        }
        let extra_roots = match &self.ca {
            Some(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid("outbound.ca", format!("{}: {e}", path.display())))?,
            None => Vec::new(),
        };
        let mut client_certs = Vec::new();
        for cert in &self.client_certs {
            let key = "outbound.client_certs";
            let chain = CertificateDer::pem_file_iter(&cert.cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid(key, format!("{}: {e}", cert.cert.display())))?;
            let private = PrivateKeyDer::from_pem_file(&cert.key)
                .map_err(|e| invalid(key, format!("{}: {e}", cert.key.display())))?;
            client_certs.push(ClientCert {
                origin: cert.origin.clone(),
                chain,
                key: private,
            });
        }
        Client::new(ClientConfig {
            system_roots: self.system_roots,
            extra_roots,
            client_certs,
            max_response_bytes: self.max_response_kib << 10,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            max_redirects: self.max_redirects,
            ..ClientConfig::default()
        })
        .map_err(|e| invalid("outbound", e.to_string()))
    }
}

fn invalid(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

/// A value the operator set: read from the file as a string, never written
/// back out (`Debug` and `Serialize` give `[redacted]`), so a config dump
/// holds no secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct VariableValue(String);

impl VariableValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for VariableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for VariableValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// `[variables."api-name"] name = "value"`: values by API, then by name.
pub type VariablesSection = BTreeMap<String, BTreeMap<String, VariableValue>>;

/// The operator's values: the environment's over the config file's.
#[derive(Debug, Clone)]
pub(crate) struct OperatorValues {
    file: VariablesSection,
}

impl OperatorValues {
    pub(crate) fn new(file: VariablesSection) -> Self {
        Self { file }
    }
}

/// `SFOP_VAR_{API}__{NAME}`.
pub fn variable_env(api: &str, name: &str) -> String {
    let upper = |s: &str| s.to_ascii_uppercase().replace('-', "_");
    format!("{VARIABLE_ENV_PREFIX}{}__{}", upper(api), upper(name))
}

impl VariableValues for OperatorValues {
    fn value(&self, api: &str, name: &str) -> Option<String> {
        std::env::var(variable_env(api, name)).ok().or_else(|| {
            self.file
                .get(api)
                .and_then(|values| values.get(name))
                .map(|v| v.0.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn a_config_dump_or_debug_line_holds_no_variable_value() -> anyhow::Result<()> {
        let mut config = Config::default();
        config.variables.insert(
            "core-balance".into(),
            [("api_key".to_owned(), VariableValue::new("s3cret-value"))].into(),
        );
        let dump = toml::to_string(&config)?;
        assert!(!dump.contains("s3cret-value"), "{dump}");
        assert!(dump.contains("[redacted]"), "{dump}");
        assert!(!format!("{config:?}").contains("s3cret-value"));
        let values = OperatorValues::new(config.variables.clone());
        assert_eq!(
            values.value("core-balance", "api_key").as_deref(),
            Some("s3cret-value")
        );
        assert_eq!(values.value("core-balance", "other"), None);
        assert_eq!(
            variable_env("core-balance", "api_key"),
            "SFOP_VAR_CORE_BALANCE__API_KEY"
        );
        Ok(())
    }
}
