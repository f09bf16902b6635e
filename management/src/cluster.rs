//! The management center as one node of a cluster (ADR 0029). The cluster's
//! PostgreSQL database is the registry of record: a push and a testbed
//! verdict are written there as well as here, and a change of what is served
//! (promote, canary, rollback, deprecate, retire) is written only there,
//! with the config version this node last applied (a change made meanwhile
//! on another node is refused, not overwritten). Every node, the writer
//! included, then serves the change the same way: when its feed publishes
//! the snapshot, [`Management::sync_locked`] copies the records it names
//! into the local store (the component bytes through the node's
//! [`BlobCache`], compiled through the runtime's cache), builds the routing
//! and swaps it. The writer waits for its own version before answering, so
//! a promote that returned is served on the node that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sfop_core::time::now_millis;
use sfop_store_pg::{
    ApiState, AuditEvent, BlobCache, CanaryState, Cluster, NewVersion, SealedValues, Snapshot,
};
use tokio::sync::watch;

use crate::plane::DataPlane;
use crate::registry::version_key;
use crate::variables::Sealed;
use crate::{
    ApiRecord, CanaryRecord, Control, Error, Management, Result, TestRecord, Version,
    VersionRecord, serving,
};

/// How long a writer waits to read its own change back before answering.
const READ_BACK: Duration = Duration::from_secs(10);

/// What a clustered management center needs of its node.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    pub cluster: Cluster,
    /// The feed's snapshots.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Component bytes on this node's disk, by SHA-256.
    pub blobs: BlobCache,
}

/// A variable's change, as [`Management::set_variable`] checked it.
pub(crate) struct VariableChange<'a> {
    pub api: &'a str,
    pub variable: &'a str,
    /// The new value, sealed; `None`: unset.
    pub sealed: Option<Vec<u8>>,
    pub action: &'a str,
    pub actor: &'a str,
    /// The audit entry's detail (never the value).
    pub detail: String,
}

/// Waits until this node's feed has read config version `written` (what
/// `what` wrote), for at most [`READ_BACK`].
async fn read_back(link: &ClusterLink, written: u64, what: &str) -> Result<Arc<Snapshot>> {
    let mut snapshots = link.snapshots.clone();
    match tokio::time::timeout(READ_BACK, snapshots.wait_for(|s| s.version >= written)).await {
        Ok(Ok(s)) => Ok(s.clone()),
        Ok(Err(_)) => Err(Error::internal(what.to_owned(), "the cluster feed stopped")),
        Err(_) => Err(Error::Unavailable(format!(
            "{what} is recorded (config version {written}) but this node has not read it back \
             within {READ_BACK:?}; every node serves it once it has"
        ))),
    }
}

/// A cluster-store failure as the management center's: the database away
/// is the platform's trouble (503), a change made meanwhile is a conflict.
fn shared(what: &str, e: sfop_store_pg::Error) -> Error {
    match e {
        sfop_store_pg::Error::Unavailable(cause) => Error::Unavailable(format!(
            "{what}: the cluster database is unreachable from this node ({cause}); \
             management changes wait until it is back: retry"
        )),
        sfop_store_pg::Error::Conflict(m) => Error::Conflict(m),
        other => Error::internal(what.to_owned(), other),
    }
}

fn to_state(api: &ApiRecord) -> ApiState {
    ApiState {
        name: api.name.clone(),
        live: api.live.as_ref().map(ToString::to_string),
        previous: api.previous.iter().map(ToString::to_string).collect(),
        canary: api.canary.as_ref().map(|c| CanaryState {
            version: c.version.to_string(),
            percent: c.percent,
            sticky: serde_json::to_value(c.sticky)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            max_error_rate: c.max_error_rate,
            min_requests: c.min_requests,
            started_at_ms: c.started_at_ms,
        }),
        sunset: api.sunset.clone(),
        retired: api.retired_at_ms.is_some(),
    }
}

fn to_record(state: &ApiState, before: Option<&ApiRecord>) -> Result<ApiRecord> {
    let version = |v: &str| {
        Version::parse(v).map_err(|e| {
            Error::internal(
                format!("reading {} from the cluster", state.name),
                format!("version {v:?}: {e}"),
            )
        })
    };
    let canary = match &state.canary {
        None => None,
        Some(c) => Some(CanaryRecord {
            version: version(&c.version)?,
            percent: c.percent,
            sticky: serde_json::from_value(serde_json::Value::String(c.sticky.clone())).map_err(
                |e| {
                    Error::internal(
                        format!("reading the canary of {} from the cluster", state.name),
                        e,
                    )
                },
            )?,
            max_error_rate: c.max_error_rate,
            min_requests: c.min_requests,
            started_at_ms: c.started_at_ms,
        }),
    };
    Ok(ApiRecord {
        name: state.name.clone(),
        live: state.live.as_deref().map(version).transpose()?,
        previous: state
            .previous
            .iter()
            .map(|v| version(v))
            .collect::<Result<_>>()?,
        canary,
        sunset: state.sunset.clone(),
        retired_at_ms: state.retired.then(|| {
            before
                .and_then(|b| b.retired_at_ms)
                .unwrap_or_else(now_millis)
        }),
    })
}

impl<P: DataPlane> Management<P> {
    /// Makes this management center one node of a cluster.
    pub fn with_cluster(mut self, link: ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    /// Registers `record` in the cluster too (idempotent for the same bytes).
    pub(crate) async fn push_shared(
        &self,
        link: &ClusterLink,
        record: &VersionRecord,
        component: &[u8],
    ) -> Result<()> {
        let version = record.version.to_string();
        link.cluster
            .push(&NewVersion {
                api: &record.name,
                version: &version,
                component,
                manifest: &record.manifest,
                cases: record.cases.as_deref(),
                uploaded_by: &record.uploaded_by,
            })
            .await
            .map_err(|e| shared(&format!("registering {}@{version}", record.name), e))?;
        Ok(())
    }

    /// Stores a testbed verdict in the cluster too.
    pub(crate) async fn test_shared(
        &self,
        link: &ClusterLink,
        name: &str,
        version: &Version,
        test: &TestRecord,
        actor: &str,
    ) -> Result<()> {
        link.cluster
            .record_test(
                name,
                &version.to_string(),
                &test.report,
                &test.report_html,
                test.attestation.as_deref(),
                actor,
            )
            .await
            .map_err(|e| shared(&format!("recording the test of {name}@{version}"), e))
    }

    /// A change of what is served, on a clustered node: written to the
    /// cluster with its audit entry and the config version this node last
    /// applied, then read back and applied like any node applies it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn apply_shared(
        &self,
        link: &ClusterLink,
        control: &mut Control<P::Release>,
        api: ApiRecord,
        action: &str,
        actor: &str,
        version: Option<&Version>,
        detail: String,
    ) -> Result<ApiRecord> {
        let version_text = version.map(ToString::to_string);
        let event = AuditEvent {
            actor,
            action,
            api: &api.name,
            version: version_text.as_deref(),
            detail: detail.clone(),
        };
        let written = link
            .cluster
            .set_api(&to_state(&api), Some(control.applied.unwrap_or(0)), &event)
            .await
            .map_err(|e| shared(&format!("recording the {action} of {}", api.name), e))?;
        let snapshot = read_back(link, written, &format!("the {action} of {}", api.name)).await?;
        self.sync_locked(control, &snapshot).await?;
        tracing::info!(api = %api.name, version = ?version_text, %actor, config_version = written, "{action}: {detail}");
        Ok(self.trees.api(&api.name)?.unwrap_or(api))
    }

    /// A variable's value set or unset on a clustered node, checked as on
    /// one node (`loaded`: the API's serving versions, loaded with the new
    /// values): written to the cluster sealed, with its audit entry and the
    /// config version this node last applied (a change made meanwhile on
    /// another node is refused, not overwritten), then read back and served
    /// like any node serves it. `loaded` serve here without loading again
    /// unless the values changed meanwhile.
    pub(crate) async fn set_variable_shared(
        &self,
        link: &ClusterLink,
        control: &mut Control<P::Release>,
        change: VariableChange<'_>,
        loaded: Vec<(Version, P::Release)>,
    ) -> Result<()> {
        let VariableChange {
            api,
            variable,
            sealed,
            action,
            actor,
            detail,
        } = change;
        let event = AuditEvent {
            actor,
            action,
            api,
            version: None,
            detail: detail.clone(),
        };
        let written = link
            .cluster
            .set_variable(
                api,
                variable,
                sealed.as_deref(),
                Some(control.applied.unwrap_or(0)),
                &event,
            )
            .await
            .map_err(|e| shared(&format!("recording the {action} of {api}"), e))?;
        // This node's copy as the cluster's is now, so that the releases
        // just loaded with it serve (a change made since on another node
        // differs from it and loads them again).
        let mut copy = self
            .trees
            .variables
            .get_json::<Sealed>(api)?
            .unwrap_or_default();
        match &sealed {
            Some(bytes) => {
                copy.insert(variable.to_owned(), STANDARD.encode(bytes));
            }
            None => {
                copy.remove(variable);
            }
        }
        self.keep_variables(api, &copy)?;
        control.warm.retain(|(name, _), _| name != api);
        for (version, release) in loaded {
            control.warm.insert((api.to_owned(), version), release);
        }
        let snapshot = read_back(link, written, &format!("the {action} of {api}")).await?;
        self.sync_locked(control, &snapshot).await?;
        tracing::info!(%api, %variable, %actor, config_version = written, "{action}");
        Ok(())
    }

    /// Keeps `values` as this node's copy of `api`'s (none: removed).
    fn keep_variables(&self, api: &str, values: &Sealed) -> Result<()> {
        if values.is_empty() {
            self.trees.variables.remove(api.as_bytes())?;
        } else {
            self.trees.variables.insert_json(api, values)?;
        }
        Ok(())
    }

    /// Makes this node's copy of the values set through the admin API the
    /// cluster's (`shared`); returns the APIs whose values changed.
    fn replicate_variables(&self, shared: &SealedValues) -> Result<Vec<String>> {
        let local: BTreeMap<String, Sealed> = self
            .trees
            .variables
            .values_json::<Sealed>()?
            .into_iter()
            .collect();
        let mut changed = Vec::new();
        let apis: BTreeSet<&String> = local.keys().chain(shared.keys()).collect();
        for api in apis {
            let wanted: Sealed = shared
                .get(api)
                .map(|values| {
                    values
                        .iter()
                        .map(|(name, bytes)| (name.clone(), STANDARD.encode(bytes)))
                        .collect()
                })
                .unwrap_or_default();
            if local.get(api).cloned().unwrap_or_default() != wanted {
                self.keep_variables(api, &wanted)?;
                changed.push(api.clone());
            }
        }
        Ok(changed)
    }

    /// Serves `snapshot` (a newer one than this node applied): copies the
    /// records and bytes of the releases it names, compiles what is not
    /// warm (the runtime's compile cache first), builds the routing of
    /// every API and swaps it.
    pub(crate) async fn sync_locked(
        &self,
        control: &mut Control<P::Release>,
        snapshot: &Snapshot,
    ) -> Result<()> {
        let Some(link) = &self.cluster else {
            return Ok(());
        };
        if control.applied.is_some_and(|a| a >= snapshot.version) {
            return Ok(());
        }
        // Values changed: the API's versions load again with them (below for
        // those serving, when next needed for the others).
        for api in self.replicate_variables(&snapshot.variables)? {
            control.warm.retain(|(name, _), _| name != &api);
            tracing::info!(%api, "variables changed on the cluster; the API loads with them");
        }
        for ((name, text), release) in &snapshot.releases {
            let version = Version::parse(text).map_err(|e| {
                Error::internal(
                    format!("reading {name}@{text} from the cluster"),
                    e.to_string(),
                )
            })?;
            if self.trees.version(name, &version)?.is_some() {
                continue;
            }
            let (component, from_disk) = link
                .blobs
                .get(&link.cluster, &release.component_sha256)
                .await
                .map_err(|e| shared(&format!("fetching the component of {name}@{text}"), e))?;
            let record = VersionRecord {
                name: name.clone(),
                version: version.clone(),
                component_sha256: release.component_sha256.clone(),
                manifest_sha256: sfop_core::package::sha256_hex(release.manifest.as_bytes()),
                manifest: release.manifest.clone(),
                cases: None,
                uploaded_at_ms: now_millis(),
                uploaded_by: "cluster".into(),
                test: None,
            };
            let t = &self.trees;
            self.store.transaction(&[&t.versions, &t.blobs], |tx| {
                tx[0].insert_json(&version_key(name, &version), &record)?;
                tx[1].insert(record.component_sha256.as_bytes(), &component)?;
                Ok::<_, sfop_store::Abort<Error>>(())
            })?;
            tracing::info!(api = %name, version = %text, from_disk, "cluster release copied to this node");
        }
        for state in &snapshot.apis {
            let before = self.trees.api(&state.name)?;
            let api = to_record(state, before.as_ref())?;
            for version in serving(&api) {
                let key = (api.name.clone(), version.clone());
                let warm = control.warm.contains_key(&key);
                match self.warm_up(control, &api.name, &version).await {
                    Ok(release) if !warm => {
                        tracing::info!(
                            api = %api.name, %version,
                            from_cache = self.plane.compiled_from_cache(&release),
                            "cluster release loaded"
                        );
                        control.closed.remove(&api.name);
                    }
                    Ok(_) => {
                        control.closed.remove(&api.name);
                    }
                    Err(e) => {
                        tracing::error!(api = %api.name, %version, "release cannot be loaded; its routes stay closed: {e}");
                        if let Ok(Some(manifest)) = self.manifest_of(&api.name, &version) {
                            control.closed.insert(api.name.clone(), manifest);
                        }
                    }
                }
            }
            if before.as_ref() != Some(&api) {
                self.trees.apis.insert_json(&api.name, &api)?;
            }
            self.served(control, before.as_ref(), &api);
        }
        let table = self.build(control, None)?;
        self.plane.swap(table);
        control.applied = Some(snapshot.version);
        tracing::debug!(config_version = snapshot.version, "cluster snapshot served");
        Ok(())
    }

    /// Serves every snapshot the node's feed publishes, until `stop`; a
    /// snapshot that could not be served (its bytes unreachable) is tried
    /// again every second.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(link) = &self.cluster else {
            return;
        };
        let mut snapshots = link.snapshots.clone();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = retry.tick() => {}
                () = &mut stopped => return,
            }
            let snapshot = snapshots.borrow_and_update().clone();
            let mut control = self.control.lock().await;
            if control.applied.is_some_and(|a| a >= snapshot.version) {
                continue;
            }
            if let Err(e) = self.sync_locked(&mut control, &snapshot).await {
                tracing::error!(
                    config_version = snapshot.version,
                    "serving the cluster's snapshot failed; keeping the last one: {e}"
                );
            }
        }
    }

    /// The cluster's audit log (the one every node writes), oldest first.
    pub(crate) async fn audit_shared(
        &self,
        link: &ClusterLink,
    ) -> Result<Vec<crate::audit::Entry>> {
        let entries = link
            .cluster
            .audit_entries()
            .await
            .map_err(|e| shared("reading the audit log", e))?;
        Ok(entries
            .into_iter()
            .map(|e| crate::audit::Entry {
                seq: e.seq,
                at_ms: e.at_ms,
                actor: e.actor,
                action: e.action,
                api: e.api,
                version: e.version,
                detail: e.detail,
                prev: e.prev,
                hash: e.hash,
            })
            .collect())
    }

    /// Checks the cluster's audit log's hash chain.
    pub(crate) async fn verify_shared(
        &self,
        link: &ClusterLink,
    ) -> Result<crate::audit::Verification> {
        let v = link
            .cluster
            .verify_audit()
            .await
            .map_err(|e| shared("verifying the audit log", e))?;
        Ok(crate::audit::Verification {
            entries: v.entries,
            broken: v.broken,
        })
    }
}
