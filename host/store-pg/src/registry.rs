//! The registry: components by SHA-256, immutable versions, and how each
//! API is served (live, canary, earlier live versions). A change of what is
//! served bumps the config version in the same transaction as its audit
//! entry; nodes apply it by reading a [`Snapshot`].

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::audit::{self, AuditEvent};
use crate::variables::{self, SealedValues};
use crate::{Cluster, Error, Result, bump_config_version, expect_config_version};

/// A version to register.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub api: &'a str,
    pub version: &'a str,
    pub component: &'a [u8],
    pub manifest: &'a str,
    pub cases: Option<&'a str>,
    pub uploaded_by: &'a str,
}

/// What [`Cluster::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Registered now.
    New,
    /// The same bytes were registered before: nothing changed.
    Existing,
}

/// A running canary.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryState {
    pub version: String,
    pub percent: u8,
    /// `client`, `user` or `none`.
    pub sticky: String,
    pub max_error_rate: f64,
    pub min_requests: u64,
    pub started_at_ms: u64,
}

/// How one API is served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiState {
    pub name: String,
    pub live: Option<String>,
    /// Earlier live versions, oldest first.
    pub previous: Vec<String>,
    pub canary: Option<CanaryState>,
    /// `YYYY-MM-DD`.
    pub sunset: Option<String>,
    pub retired: bool,
}

/// One version a node may have to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub component_sha256: String,
    pub manifest: String,
}

/// Everything a node serves, as of one config version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    pub apis: Vec<ApiState>,
    /// The live, canary and earlier live versions of every API, by
    /// (api, version).
    pub releases: BTreeMap<(String, String), Release>,
    /// The values set through the admin API for plugins' variables, sealed.
    pub variables: SealedValues,
}

impl Snapshot {
    /// The state of `api`.
    pub fn api(&self, name: &str) -> Option<&ApiState> {
        self.apis.iter().find(|a| a.name == name)
    }
}

impl Cluster {
    /// Registers a version (its component stored once by SHA-256) with its
    /// audit entry. The same name and version with other bytes is refused.
    /// Nothing served changes, so the config version stays.
    pub async fn push(&self, new: &NewVersion<'_>) -> Result<Pushed> {
        match self.push_once(new).await {
            // The same version pushed through another node at the same
            // moment: look again, it is now either the same bytes or not.
            Err(Error::Constraint(_)) => self.push_once(new).await,
            other => other,
        }
    }

    async fn push_once(&self, new: &NewVersion<'_>) -> Result<Pushed> {
        let sha = hex::encode(Sha256::digest(new.component));
        let manifest_sha = hex::encode(Sha256::digest(new.manifest.as_bytes()));
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let existing = tx
            .query_opt(
                "SELECT component_sha256, manifest_sha256 FROM api_versions \
                 WHERE api = $1 AND version = $2",
                &[&new.api, &new.version],
            )
            .await?;
        if let Some(row) = existing {
            let (c, m): (String, String) = (row.get(0), row.get(1));
            if c == sha && m == manifest_sha {
                return Ok(Pushed::Existing);
            }
            return Err(Error::Conflict(format!(
                "{}@{} is already registered with other bytes (component sha256 {c}); \
                 a version never changes: publish this one under a new version",
                new.api, new.version
            )));
        }
        tx.execute(
            "INSERT INTO component_blobs (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&sha, &new.component],
        )
        .await?;
        tx.execute(
            "INSERT INTO apis (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&new.api],
        )
        .await?;
        tx.execute(
            "INSERT INTO api_versions (api, version, component_sha256, manifest, \
             manifest_sha256, cases, uploaded_at, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, now(), $7)",
            &[
                &new.api,
                &new.version,
                &sha,
                &new.manifest,
                &manifest_sha,
                &new.cases,
                &new.uploaded_by,
            ],
        )
        .await?;
        audit::append(
            &tx,
            &AuditEvent {
                actor: new.uploaded_by,
                action: "push",
                api: new.api,
                version: Some(new.version),
                detail: format!("component sha256 {sha}, {} bytes", new.component.len()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Pushed::New)
    }

    /// Stores the testbed's verdict on a version, with its audit entry.
    pub async fn record_test(
        &self,
        api: &str,
        version: &str,
        report: &serde_json::Value,
        report_html: &str,
        attestation: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        let passed = attestation.is_some();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "INSERT INTO api_tests (api, version, passed, at, report, report_html, attestation) \
             VALUES ($1, $2, $3, now(), $4::text::jsonb, $5, $6) \
             ON CONFLICT (api, version) DO UPDATE SET passed = EXCLUDED.passed, \
             at = EXCLUDED.at, report = EXCLUDED.report, report_html = EXCLUDED.report_html, \
             attestation = EXCLUDED.attestation",
            &[
                &api,
                &version,
                &passed,
                &report.to_string(),
                &report_html,
                &attestation,
            ],
        )
        .await?;
        audit::append(
            &tx,
            &AuditEvent {
                actor,
                action: "test",
                api,
                version: Some(version),
                detail: if passed {
                    "passed; attestation signed".into()
                } else {
                    "failed".into()
                },
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces how `state.name` is served, writes `event` to the audit log
    /// and bumps the config version, in one transaction; returns the new
    /// version. With `expected`, refuses (changing nothing) when the config
    /// version moved since the caller read it: two nodes' operators never
    /// overwrite each other's change unseen.
    pub async fn set_api(
        &self,
        state: &ApiState,
        expected: Option<u64>,
        event: &AuditEvent<'_>,
    ) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        expect_config_version(&tx, expected).await?;
        tx.execute(
            "INSERT INTO apis (name, live_version, sunset, retired_at) \
             VALUES ($1, $2, $3::text::date, CASE WHEN $4 THEN now() END) \
             ON CONFLICT (name) DO UPDATE SET live_version = EXCLUDED.live_version, \
             sunset = EXCLUDED.sunset, \
             retired_at = CASE WHEN $4 THEN coalesce(apis.retired_at, now()) END",
            &[&state.name, &state.live, &state.sunset, &state.retired],
        )
        .await?;
        tx.execute("DELETE FROM canaries WHERE api = $1", &[&state.name])
            .await?;
        if let Some(c) = &state.canary {
            tx.execute(
                "INSERT INTO canaries (api, version, percent, sticky, max_error_rate, \
                 min_requests, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::bigint / 1000.0))",
                &[
                    &state.name,
                    &c.version,
                    &i16::from(c.percent),
                    &c.sticky,
                    &c.max_error_rate,
                    &(c.min_requests as i64),
                    &(c.started_at_ms as i64),
                ],
            )
            .await?;
        }
        tx.execute(
            "DELETE FROM previous_releases WHERE api = $1",
            &[&state.name],
        )
        .await?;
        for (position, version) in state.previous.iter().enumerate() {
            tx.execute(
                "INSERT INTO previous_releases (api, position, version) VALUES ($1, $2, $3)",
                &[&state.name, &(position as i32), version],
            )
            .await?;
        }
        audit::append(&tx, event).await?;
        let version = bump_config_version(&tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Everything served, read in one consistent snapshot of the database.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut conn = self.conn().await?;
        let tx = crate::consistent(&mut conn).await?;
        let version: i64 = tx
            .query_one("SELECT version FROM config_version", &[])
            .await?
            .get(0);
        let mut apis: Vec<ApiState> = tx
            .query(
                "SELECT name, live_version, sunset::text, retired_at IS NOT NULL FROM apis \
                 ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| ApiState {
                name: r.get(0),
                live: r.get(1),
                sunset: r.get(2),
                retired: r.get(3),
                ..ApiState::default()
            })
            .collect();
        for r in tx
            .query(
                "SELECT api, version, percent, sticky, max_error_rate, min_requests, \
                 (extract(epoch FROM started_at) * 1000)::bigint FROM canaries",
                &[],
            )
            .await?
        {
            let name: String = r.get(0);
            if let Some(api) = apis.iter_mut().find(|a| a.name == name) {
                api.canary = Some(CanaryState {
                    version: r.get(1),
                    percent: r.get::<_, i16>(2).clamp(0, 100) as u8,
                    sticky: r.get(3),
                    max_error_rate: r.get(4),
                    min_requests: r.get::<_, i64>(5) as u64,
                    started_at_ms: r.get::<_, i64>(6) as u64,
                });
            }
        }
        for r in tx
            .query(
                "SELECT api, version FROM previous_releases ORDER BY api, position",
                &[],
            )
            .await?
        {
            let name: String = r.get(0);
            if let Some(api) = apis.iter_mut().find(|a| a.name == name) {
                api.previous.push(r.get(1));
            }
        }
        let mut releases = BTreeMap::new();
        for r in tx
            .query(
                "SELECT v.api, v.version, v.component_sha256, v.manifest FROM api_versions v \
                 WHERE EXISTS (SELECT 1 FROM apis a WHERE a.name = v.api AND a.live_version = v.version) \
                 OR EXISTS (SELECT 1 FROM canaries c WHERE c.api = v.api AND c.version = v.version) \
                 OR EXISTS (SELECT 1 FROM previous_releases p WHERE p.api = v.api AND p.version = v.version)",
                &[],
            )
            .await?
        {
            releases.insert(
                (r.get(0), r.get(1)),
                Release {
                    component_sha256: r.get(2),
                    manifest: r.get(3),
                },
            );
        }
        let variables = variables::read_all(&tx).await?;
        tx.commit().await?;
        Ok(Snapshot {
            version: version as u64,
            apis,
            releases,
            variables,
        })
    }

    /// The component with this SHA-256, if stored.
    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT bytes FROM component_blobs WHERE sha256 = $1",
                &[&sha256],
            )
            .await?
            .map(|r| r.get(0)))
    }
}
