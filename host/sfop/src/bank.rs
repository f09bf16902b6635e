//! The `[bank]` section: which bank backend the `ledger` capability
//! reaches. `embedded` (the default): the virtual bank in the platform's own
//! store, behind the sandbox's scripted faults. `rest`: participant banks
//! over HTTPS through the connector (docs/bank-connector.md), e.g. a
//! `sfop bank serve`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sfop_bank_connector::{BankEndpoint, RestBank, RestBankConfig};

use crate::config::ConfigError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BankMode {
    #[default]
    Embedded,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSection {
    pub mode: BankMode,
    /// `rest`: the bank server that issued the fintech numbers; every call
    /// that names no bank code goes there.
    pub home: Option<BankServer>,
    /// `rest`: calls that name a bank code, by code (`"097"`).
    pub banks: BTreeMap<String, BankServer>,
    pub connect_timeout_ms: u64,
    /// Upper bound per request; a plugin's `timeout_ms` usually ends it sooner.
    pub request_timeout_ms: u64,
}

impl Default for BankSection {
    fn default() -> Self {
        Self {
            mode: BankMode::Embedded,
            home: None,
            banks: BTreeMap::new(),
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
        }
    }
}

/// One bank server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankServer {
    /// `https://host:port/` (`http://` only for loopback tests).
    pub url: String,
    /// PEM certificates to trust for this bank (required for `https`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl BankSection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self.mode {
            BankMode::Embedded if self.home.is_some() || !self.banks.is_empty() => Err(invalid(
                "bank.mode",
                "bank.home and bank.banks are only used with mode = \"rest\"".into(),
            )),
            BankMode::Embedded => Ok(()),
            BankMode::Rest => self.connector().map(|_| ()),
        }
    }

    /// The connector this section describes (`mode = "rest"`).
    pub(crate) fn connector(&self) -> Result<RestBank, ConfigError> {
        for (key, ms) in [
            ("bank.connect_timeout_ms", self.connect_timeout_ms),
            ("bank.request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(10..=60_000).contains(&ms) {
                return Err(invalid(key, "must be between 10 and 60000".into()));
            }
        }
        let home = self
            .home
            .as_ref()
            .ok_or_else(|| invalid("bank.home", "required when bank.mode is \"rest\"".into()))?;
        let config = RestBankConfig {
            home: endpoint("bank.home", home)?,
            banks: self
                .banks
                .iter()
                .map(|(code, server)| Ok((code.clone(), endpoint("bank.banks", server)?)))
                .collect::<Result<_, ConfigError>>()?,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        };
        RestBank::new(&config).map_err(|e| invalid("bank", e.to_string()))
    }
}

fn invalid(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

fn endpoint(key: &'static str, server: &BankServer) -> Result<BankEndpoint, ConfigError> {
    if !server.url.starts_with("https://") {
        return Ok(BankEndpoint {
            url: server.url.clone(),
            tls: None,
        });
    }
    let file = |path: &PathBuf, e: &dyn std::fmt::Display| {
        invalid(key, format!("{}: {e}", path.display()))
    };
    let ca = server
        .ca
        .as_ref()
        .ok_or_else(|| invalid(key, format!("{}: https needs `ca`", server.url)))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file(ca, &e))? {
        roots
            .add(cert.map_err(|e| file(ca, &e))?)
            .map_err(|e| file(ca, &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(key, e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&server.client_cert, &server.client_key) {
        (Some(cert), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| file(cert, &e))?;
            let private = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file(key_file, &e))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| invalid(key, e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(invalid(
                key,
                "client_cert and client_key go together".into(),
            ));
        }
    };
    Ok(BankEndpoint {
        url: server.url.clone(),
        tls: Some(Arc::new(config)),
    })
}
