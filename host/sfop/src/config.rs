//! The platform's configuration: one typed schema, read from a TOML file (all
//! keys optional), overridden by `SFOP_*` environment variables, overridden
//! by command-line flags, and validated as a whole before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything `sfop serve` needs. `Config::default()` is the embedded default:
/// HTTPS with a self-signed certificate, sled in `./sfop-data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the API gateway listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (cleartext; keep local).
    pub ops_listen: SocketAddr,
    /// Folder of API packages: one sub-folder each with `sfop.toml` and `api.wasm`.
    pub plugins: PathBuf,
    /// Folder of the embedded store, TLS material and compile cache.
    pub data_dir: PathBuf,
    /// Business time zone for `api_tran_dtm`, minutes east of UTC (KST: 540).
    pub utc_offset_minutes: i32,
    pub tls: TlsConfig,
    pub gateway: GatewaySection,
    pub auth: AuthSection,
    pub runtime: RuntimeSection,
    pub management: ManagementSection,
    pub shutdown: ShutdownSection,
    pub isolation: IsolationSection,
    /// Which bank the `ledger` capability reaches (docs/bank-connector.md).
    pub bank: crate::bank::BankSection,
    /// The client of plugins' `http` capability (ADR 0027).
    pub outbound: crate::outbound::OutboundSection,
    /// Values of plugins' variables, `[variables."api-name"]` (ADR 0027);
    /// `SFOP_VAR_{API}__{NAME}` in the environment wins.
    pub variables: crate::outbound::VariablesSection,
    /// OpenTelemetry traces over OTLP/HTTP; off by default (ADR 0028).
    pub telemetry: crate::telemetry::TelemetrySection,
    /// The cluster store (ADR 0029): absent, this node keeps everything in
    /// its own sled store in `data_dir`.
    pub store: StoreSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            plugins: PathBuf::from("target/sfop-plugins/api"),
            data_dir: PathBuf::from("sfop-data"),
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
            tls: TlsConfig::default(),
            gateway: GatewaySection::default(),
            auth: AuthSection::default(),
            runtime: RuntimeSection::default(),
            management: ManagementSection::default(),
            shutdown: ShutdownSection::default(),
            isolation: IsolationSection::default(),
            bank: crate::bank::BankSection::default(),
            outbound: crate::outbound::OutboundSection::default(),
            variables: crate::outbound::VariablesSection::default(),
            telemetry: crate::telemetry::TelemetrySection::default(),
            store: StoreSection::default(),
        }
    }
}

/// Where the durable state shared by a cluster's nodes lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `postgres://user[:password]@host:port/database`: this node is one of
    /// a cluster sharing that PostgreSQL database (ADR 0029). Absent: the
    /// embedded sled store in `data_dir`, one node. libpq's `sslmode`
    /// (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`) and
    /// `sslrootcert` are read; without either (and without `ca`) the
    /// connection is plaintext, for a database on loopback only.
    pub url: Option<String>,
    /// PEM file of the CA certificates that sign the database server's
    /// certificate: connections are TLS or nothing, the server's host name
    /// checked (`sslmode=verify-ca` in the URL: the chain only).
    pub ca: Option<PathBuf>,
    /// Connections of this node's pool to the cluster database (the feed
    /// holds one more of its own).
    pub max_connections: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: None,
            ca: None,
            max_connections: 16,
        }
    }
}

impl StoreSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_connections) {
            return Err(ConfigError::Invalid {
                key: "store.max_connections",
                problem: "must be between 1 and 1000".into(),
            });
        }
        if let Some(url) = &self.url {
            sfop_store_pg::check_url(url).map_err(|problem| ConfigError::Invalid {
                key: "store.url",
                problem: problem.to_string(),
            })?;
        }
        match (&self.url, &self.ca) {
            (Some(url), Some(ca)) => {
                sfop_store_pg::check_tls(url, Some(ca)).map_err(|problem| {
                    ConfigError::Invalid {
                        key: "store.ca",
                        problem: problem.to_string(),
                    }
                })?;
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "store.ca",
                    problem: "is the CA of the cluster database: set store.url too".into(),
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// How the gateway speaks TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// PEM certificate chain (mode `files`).
    pub cert: Option<PathBuf>,
    /// PEM private key (mode `files`).
    pub key: Option<PathBuf>,
    /// PEM CA certificates of institution clients: when set, every client must
    /// present a certificate they signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Generate a certificate for localhost on first run; keep it in the data dir.
    #[default]
    SelfSigned,
    /// Use `tls.cert` and `tls.key`.
    Files,
    /// Cleartext HTTP. Only for development behind something that terminates TLS.
    Off,
}

/// How long the gateway waits for a client (slowloris and idle connections).
/// Every key is in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Longest a client may take to complete the TLS handshake. Default 10 s.
    pub tls_handshake_timeout_ms: u64,
    /// Longest an HTTP/1.1 client may take to send a request's head, from
    /// the first byte (or, on a kept-alive connection, from the end of the
    /// previous answer). Default 10 s.
    pub header_read_timeout_ms: u64,
    /// A connection (HTTP/1.1 or HTTP/2) with no request in progress and
    /// none started for this long is closed, gracefully (HTTP/2 `GOAWAY`).
    /// It is closed between one and two periods after its last request.
    /// Default 60 s.
    pub idle_timeout_ms: u64,
    /// HTTP/2: how often to ping a connection that sent nothing. Default 20 s.
    pub h2_keep_alive_interval_ms: u64,
    /// HTTP/2: how long to wait for a ping's answer before closing. Default 10 s.
    pub h2_keep_alive_timeout_ms: u64,
    /// Open connections on the API listener; one more is closed at once
    /// (cleartext: after a `503`). Default 10000.
    pub max_connections: usize,
    /// TLS handshakes in progress (counted from the client's hello); one
    /// more connection is closed at once rather than queued. Default 256.
    pub max_handshakes: usize,
    /// Requests in progress on the API listener; one more is answered
    /// `503 A0013` with `Retry-After` at once. Default 1024.
    pub max_in_flight: usize,
    /// Requests in progress on one API version, so one API cannot take the
    /// whole pool: the default of an API whose manifest sets no
    /// `limits.max_concurrency`, and the cap of one that does. Default 256.
    pub api_max_in_flight: usize,
}

impl Default for GatewaySection {
    fn default() -> Self {
        let limits = sfop_gateway::ConnLimits::default();
        let admission = sfop_gateway::AdmissionLimits::default();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            max_connections: admission.max_connections,
            max_handshakes: admission.max_handshakes,
            max_in_flight: admission.max_in_flight,
            api_max_in_flight: admission.api_max_in_flight,
            tls_handshake_timeout_ms: ms(limits.handshake_timeout),
            header_read_timeout_ms: ms(limits.header_read_timeout),
            idle_timeout_ms: ms(limits.idle_timeout),
            h2_keep_alive_interval_ms: ms(limits.h2_keep_alive_interval),
            h2_keep_alive_timeout_ms: ms(limits.h2_keep_alive_timeout),
        }
    }
}

impl GatewaySection {
    /// The connection limits the gateway applies.
    pub fn conn_limits(&self) -> sfop_gateway::ConnLimits {
        use std::time::Duration;
        sfop_gateway::ConnLimits {
            handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            h2_keep_alive_interval: Duration::from_millis(self.h2_keep_alive_interval_ms),
            h2_keep_alive_timeout: Duration::from_millis(self.h2_keep_alive_timeout_ms),
        }
    }

    /// The admission bounds the API listener applies.
    pub fn admission(&self) -> sfop_gateway::AdmissionLimits {
        sfop_gateway::AdmissionLimits {
            max_connections: self.max_connections,
            max_handshakes: self.max_handshakes,
            max_in_flight: self.max_in_flight,
            api_max_in_flight: self.api_max_in_flight,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("gateway.max_connections", self.max_connections),
            ("gateway.max_handshakes", self.max_handshakes),
            ("gateway.max_in_flight", self.max_in_flight),
            ("gateway.api_max_in_flight", self.api_max_in_flight),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be between 1 and 1000000".to_owned(),
                });
            }
        }
        for (key, value) in [
            (
                "gateway.tls_handshake_timeout_ms",
                self.tls_handshake_timeout_ms,
            ),
            (
                "gateway.header_read_timeout_ms",
                self.header_read_timeout_ms,
            ),
            ("gateway.idle_timeout_ms", self.idle_timeout_ms),
            (
                "gateway.h2_keep_alive_interval_ms",
                self.h2_keep_alive_interval_ms,
            ),
            (
                "gateway.h2_keep_alive_timeout_ms",
                self.h2_keep_alive_timeout_ms,
            ),
        ] {
            if !(100..=3_600_000).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be between 100 and 3600000 (an hour)".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// How API calls are authorised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub mode: AuthMode,
    /// Banks whose co-signed consent (a third-party block in the token) is
    /// required for the listed scopes.
    pub bank_consent: Vec<BankConsent>,
    /// With a cluster store: a node whose list of revoked tokens is older
    /// than this (it has not reached the database since) refuses every
    /// token it cannot prove unrevoked (503, fail closed). Milliseconds.
    pub revocation_max_lag_ms: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: AuthMode::default(),
            bank_consent: Vec::new(),
            revocation_max_lag_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// OAuth 2.0 server on; every API call needs a biscuit access token.
    #[default]
    Biscuit,
    /// No authorisation: every routed call reaches its API with no caller.
    /// Only for developing the data plane.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConsent {
    /// The bank's public key, `ed25519/<hex>`.
    pub public_key: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Plugin instances alive at once (concurrent calls).
    pub max_instances: u32,
    /// Keep compiled components in `<data_dir>/compile-cache`.
    pub compile_cache: bool,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            max_instances: 256,
            compile_cache: true,
        }
    }
}

/// One API cannot slow another (ADR 0020): where plugin calls run, the
/// guest memory budget, quarantine and fault logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationSection {
    /// Threads of the execution pool that calls move to after their first
    /// epoch tick; 0: one less than the machine's cores, at least 1.
    pub execution_threads: usize,
    /// After a call of a version moved to the execution pool or failed, this
    /// many of its next calls start there (ADR 0020 rule 3).
    pub suspect_calls: u32,
    /// The platform's guest memory budget (all live instances), MiB.
    pub guest_memory_mib: u64,
    /// The most one API version may hold of it, percent.
    pub api_memory_share_percent: u8,
    /// Plugin faults (CPU deadline, memory, traps) within
    /// `quarantine_window_ms` that quarantine a version, at least…
    pub quarantine_faults: u32,
    /// …and at least this share of its calls in the window, percent.
    pub quarantine_fault_percent: u8,
    pub quarantine_window_ms: u64,
    /// How long quarantine lasts after the last window that called for it.
    pub quarantine_hold_ms: u64,
    /// Calls of a quarantined version running at once.
    pub quarantine_concurrency: usize,
    /// Plugin fault log lines per version and window; the rest are counted.
    pub fault_log_lines: u32,
}

impl Default for IsolationSection {
    fn default() -> Self {
        let q = sfop_runtime::QuarantinePolicy::default();
        let r = sfop_runtime::RuntimeConfig::default();
        Self {
            execution_threads: 0,
            suspect_calls: r.suspect_calls,
            guest_memory_mib: r.guest_memory_bytes >> 20,
            api_memory_share_percent: r.api_memory_share_percent,
            quarantine_faults: q.min_faults,
            quarantine_fault_percent: q.fault_percent,
            quarantine_window_ms: u64::try_from(q.window.as_millis()).unwrap_or(u64::MAX),
            quarantine_hold_ms: u64::try_from(q.hold.as_millis()).unwrap_or(u64::MAX),
            quarantine_concurrency: q.concurrency,
            fault_log_lines: q.log_lines,
        }
    }
}

impl IsolationSection {
    /// The policy the runtime applies.
    pub fn quarantine(&self) -> sfop_runtime::QuarantinePolicy {
        sfop_runtime::QuarantinePolicy {
            min_faults: self.quarantine_faults,
            fault_percent: self.quarantine_fault_percent,
            window: std::time::Duration::from_millis(self.quarantine_window_ms),
            hold: std::time::Duration::from_millis(self.quarantine_hold_ms),
            concurrency: self.quarantine_concurrency,
            log_lines: self.fault_log_lines,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.execution_threads > 256 {
            return invalid("isolation.execution_threads", "must be at most 256");
        }
        if !(1..=1_000_000).contains(&self.suspect_calls) {
            return invalid("isolation.suspect_calls", "must be between 1 and 1000000");
        }
        if !(16..=1 << 20).contains(&self.guest_memory_mib) {
            return invalid(
                "isolation.guest_memory_mib",
                "must be between 16 and 1048576",
            );
        }
        if !(1..=100).contains(&self.api_memory_share_percent) {
            return invalid(
                "isolation.api_memory_share_percent",
                "must be between 1 and 100",
            );
        }
        if self.quarantine_faults == 0 {
            return invalid("isolation.quarantine_faults", "must be at least 1");
        }
        if self.quarantine_fault_percent > 100 {
            return invalid("isolation.quarantine_fault_percent", "must be at most 100");
        }
        if !(100..=3_600_000).contains(&self.quarantine_window_ms) {
            return invalid(
                "isolation.quarantine_window_ms",
                "must be between 100 and 3600000",
            );
        }
        if self.quarantine_hold_ms > 86_400_000 {
            return invalid("isolation.quarantine_hold_ms", "must be at most 86400000");
        }
        if self.quarantine_concurrency == 0 {
            return invalid("isolation.quarantine_concurrency", "must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementSection {
    /// How the packages of the plugins folder go live at start.
    pub bootstrap: Bootstrap,
    /// Period of the watchdog that rolls back failing canaries and retires
    /// APIs past their sunset, milliseconds.
    pub check_ms: u64,
    /// Per API, how many earlier live releases (rollback targets) and how
    /// many releases that stopped serving (rolled back from, promoted over)
    /// stay compiled and pre-linked, for an instant rollback or re-promote
    /// (ADR 0018).
    pub keep_warm: usize,
}

impl Default for ManagementSection {
    fn default() -> Self {
        Self {
            bootstrap: Bootstrap::default(),
            check_ms: 1_000,
            keep_warm: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Bootstrap {
    /// Each package must pass the testbed; its attestation is checked before
    /// it is promoted and whenever a release is loaded, as for any promotion.
    #[default]
    Testbed,
    /// Packages go live without the testbed (recorded as such in the audit
    /// log), and releases load without an attestation. Only for developing
    /// the data plane with plugins that are meant to misbehave.
    Trusted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSection {
    /// After a stop signal, how long the gateway keeps accepting and
    /// serving while `/readyz` answers 503, so a load balancer stops
    /// sending; answers carry `Connection: close` (HTTP/2: `GOAWAY`) meanwhile.
    /// Milliseconds; default 5 s.
    pub grace_ms: u64,
    /// Then, with the listener closed, the longest wait for the requests
    /// already read to be answered, milliseconds; default 10 s.
    pub drain_ms: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        Self {
            grace_ms: 5_000,
            drain_ms: 10_000,
        }
    }
}

/// A configuration that cannot be used. Every message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Config {
    /// The file's settings over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Checks the configuration as a whole.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        match self.tls.mode {
            TlsMode::Files => {
                for (key, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
                    match path {
                        None => return invalid(key, "required when tls.mode is \"files\""),
                        Some(p) if !p.is_file() => {
                            return Err(ConfigError::Invalid {
                                key,
                                problem: format!("{} is not a readable file", p.display()),
                            });
                        }
                        Some(_) => {}
                    }
                }
            }
            TlsMode::SelfSigned | TlsMode::Off => {
                if self.tls.cert.is_some() || self.tls.key.is_some() {
                    return invalid(
                        "tls.mode",
                        "tls.cert and tls.key are only used with tls.mode \"files\"",
                    );
                }
            }
        }
        if let Some(ca) = &self.tls.client_ca {
            if self.tls.mode == TlsMode::Off {
                return invalid("tls.client_ca", "mutual TLS needs TLS; tls.mode is \"off\"");
            }
            if !ca.is_file() {
                return Err(ConfigError::Invalid {
                    key: "tls.client_ca",
                    problem: format!("{} is not a readable file", ca.display()),
                });
            }
        }
        for bank in &self.auth.bank_consent {
            let hex = bank.public_key.strip_prefix("ed25519/").unwrap_or_default();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    "auth.bank_consent.public_key",
                    "must be ed25519/ and 64 hex digits",
                );
            }
            if bank.scopes.is_empty() {
                return invalid("auth.bank_consent.scopes", "list at least one scope");
            }
        }
        if !(50..=600_000).contains(&self.auth.revocation_max_lag_ms) {
            return invalid(
                "auth.revocation_max_lag_ms",
                "must be between 50 and 600000",
            );
        }
        self.store.validate()?;
        self.gateway.validate()?;
        if !(-720..=840).contains(&self.utc_offset_minutes) {
            return invalid("utc_offset_minutes", "must be between -720 and 840");
        }
        if !(1..=100_000).contains(&self.runtime.max_instances) {
            return invalid("runtime.max_instances", "must be between 1 and 100000");
        }
        if !(10..=3_600_000).contains(&self.management.check_ms) {
            return invalid("management.check_ms", "must be between 10 and 3600000");
        }
        if self.management.keep_warm > 16 {
            return invalid("management.keep_warm", "must be at most 16");
        }
        self.isolation.validate()?;
        self.bank.validate()?;
        self.outbound.validate()?;
        self.telemetry.validate()?;
        if self.shutdown.drain_ms > 600_000 {
            return invalid("shutdown.drain_ms", "must be at most 600000 (10 minutes)");
        }
        if self.shutdown.grace_ms > 600_000 {
            return invalid("shutdown.grace_ms", "must be at most 600000 (10 minutes)");
        }
        if self.listen == self.ops_listen && self.listen.port() != 0 {
            return invalid("ops_listen", "must differ from listen");
        }
        if !self.plugins.is_dir() {
            return Err(ConfigError::Invalid {
                key: "plugins",
                problem: format!(
                    "{} is not a folder (build the plugins with `cargo xtask build-plugins`)",
                    self.plugins.display()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        assert_eq!(parse(""), Ok(Config::default()));
    }

    #[test]
    fn unknown_keys_are_named_even_in_sections() {
        let e = parse("[tls]\nmode = \"off\"\ncertificate = \"x\"\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("certificate"), "{e}");
        let e = parse("listen_addr = \"127.0.0.1:1\"\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("listen_addr"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let plugins = dir.path().to_str().unwrap_or_default();
        let cases = [
            ("[tls]\nmode = \"files\"\n", "tls.cert"),
            ("[tls]\nmode = \"off\"\ncert = \"c.pem\"\n", "tls.mode"),
            (
                "[tls]\nmode = \"off\"\nclient_ca = \"ca.pem\"\n",
                "tls.client_ca",
            ),
            ("utc_offset_minutes = 9999\n", "utc_offset_minutes"),
            ("[runtime]\nmax_instances = 0\n", "runtime.max_instances"),
            (
                "[isolation]\napi_memory_share_percent = 0\n",
                "isolation.api_memory_share_percent",
            ),
            (
                "[isolation]\nguest_memory_mib = 1\n",
                "isolation.guest_memory_mib",
            ),
            (
                "[gateway]\nheader_read_timeout_ms = 0\n",
                "gateway.header_read_timeout_ms",
            ),
            ("[gateway]\nmax_in_flight = 0\n", "gateway.max_in_flight"),
            ("[shutdown]\ngrace_ms = 600001\n", "shutdown.grace_ms"),
            ("[store]\nurl = \"mysql://db/sfop\"\n", "store.url"),
            ("[store]\nurl = \"postgres:///sfop\"\n", "store.url"),
            ("[store]\nmax_connections = 0\n", "store.max_connections"),
            (
                "[store]\nurl = \"postgres://db/sfop?sslmode=allow\"\n",
                "store.url",
            ),
            ("[store]\nca = \"ca.pem\"\n", "store.ca"),
            (
                "[store]\nurl = \"postgres://db/sfop?sslmode=disable\"\nca = \"ca.pem\"\n",
                "store.ca",
            ),
            (
                "[auth]\nrevocation_max_lag_ms = 1\n",
                "auth.revocation_max_lag_ms",
            ),
            (
                "listen = \"127.0.0.1:7000\"\nops_listen = \"127.0.0.1:7000\"\n",
                "ops_listen",
            ),
        ];
        for (text, key) in cases {
            let config =
                parse(&format!("plugins = {plugins:?}\n{text}")).map_err(anyhow::Error::msg)?;
            let e = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
        }
        let e = parse("plugins = \"/no/such/dir\"\n")
            .map_err(anyhow::Error::msg)?
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("`plugins`"), "{e}");
        Ok(())
    }
}
