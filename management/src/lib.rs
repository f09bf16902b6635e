//! The management center: a registry of versioned API packages, promotion
//! only with a passing testbed attestation, atomic hot swap of releases,
//! canary with automatic rollback, retire with a sunset date, and a
//! hash-chained audit log of every change. It drives the data plane through
//! [`DataPlane`] and asks the testbed through [`Gate`].
//!
//! Control operations are serialised (one at a time); each is checked in
//! full, then its new routing is built (compiled and pre-linked), then its
//! records and audit entry are written in one store transaction and flushed,
//! and only then is the routing switched. A refused operation changes
//! nothing.

pub mod audit;
pub mod cluster;
pub mod package;
pub mod plane;
pub mod registry;
pub mod variables;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sfop_core::Manifest;
use sfop_core::time::now_millis;
use sfop_store::{Store, TxError};
use tokio::sync::{Mutex, watch};

pub use package::Upload;
pub use plane::{
    CanarySplit, Cause, DataPlane, Gate, GateError, GateFuture, Health, PlaneError, Published,
    Sticky, Verdict,
};
pub use registry::{ApiRecord, CanaryRecord, TestRecord, VersionRecord, VersionState};
/// API versions, as the registry and [`DataPlane`] name them.
pub use semver::Version;
pub use sfop_core::outbound::SetValues;
pub use sfop_core::package::{Package, PackageError};

use audit::Event;
use registry::{Trees, version_key};

/// Why an operation was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such API or version.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (other bytes for a version, a
    /// canary already running).
    #[error("{0}")]
    Conflict(String),
    /// A rule of the platform says no (no attestation, lower version,
    /// breaking change without a major bump, route taken).
    #[error("{0}")]
    Refused(String),
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] sfop_store::Error),
    /// The cluster database cannot be reached from this node, or this node
    /// lacks what the cluster shares outside it (the variable key, ADR
    /// 0027): nothing was changed; the message says which (503, never the
    /// caller's fault).
    #[error("{0}")]
    Unavailable(String),
    /// The platform failed (a loader that panicked, a stored record that no
    /// longer reads): never the caller's fault, answered as an internal
    /// error and logged with its cause.
    #[error("{what}: {cause}")]
    Internal {
        what: String,
        #[source]
        cause: Cause,
    },
}

impl Error {
    /// The platform's failure doing `what`.
    pub fn internal(what: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Internal {
            what: what.into(),
            cause: cause.into(),
        }
    }

    /// Whether the caller is to blame (and is told what to fix); otherwise
    /// the platform is, and the caller is told nothing internal.
    pub fn is_client_fault(&self) -> bool {
        match self {
            Error::NotFound(_) | Error::Conflict(_) | Error::Refused(_) | Error::Invalid(_) => true,
            Error::Store(_) | Error::Internal { .. } | Error::Unavailable(_) => false,
        }
    }

    /// A data-plane failure loading or building for `what`.
    fn plane(what: String, e: PlaneError) -> Self {
        match e {
            PlaneError::Rejected(cause) => Error::Refused(format!("{what}: {cause}")),
            PlaneError::Internal(cause) => Error::Internal { what, cause },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<TxError<Error>> for Error {
    fn from(e: TxError<Error>) -> Self {
        match e {
            TxError::Abort(e) => e,
            TxError::Store(e) => Error::Store(e),
        }
    }
}

/// How a canary is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanarySpec {
    pub percent: u8,
    pub sticky: Sticky,
    /// Error rate (0.0..=1.0) above which the candidate is rolled back.
    pub max_error_rate: f64,
    /// Requests the candidate must have answered before its rate counts.
    pub min_requests: u64,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            percent: 10,
            sticky: Sticky::Client,
            max_error_rate: 0.05,
            min_requests: 20,
        }
    }
}

/// Settings of the management center.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Every release is checked against its testbed attestation again before
    /// it is loaded to serve (at start, on promotion, on rollback). Off only
    /// when the operator trusts the plugins folder.
    pub require_attestation: bool,
    /// Per API, how many earlier live releases (rollback targets) and how
    /// many releases that stopped serving stay compiled, for an instant
    /// rollback or re-promote.
    pub keep_warm: usize,
    /// Business time zone (sunset dates are days there), minutes east of UTC.
    pub utc_offset_minutes: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            require_attestation: true,
            keep_warm: 2,
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        }
    }
}

/// What happened to a package offered at start (the plugins folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    /// Serving this version; `from_cache` when its code came from the
    /// compile cache.
    Live {
        name: String,
        version: String,
        from_cache: bool,
    },
    /// Not serving this package; why.
    Refused { error: String },
}

type Key = (String, Version);

/// In-memory state next to the records: compiled releases and counters.
struct Control<R> {
    /// Releases kept compiled: live, canary, the last `keep_warm` rollback
    /// targets and the last `keep_warm` releases that stopped serving.
    warm: HashMap<Key, R>,
    /// Per API, the versions that stopped serving in this process (promoted
    /// over, rolled back from, canaries ended), most recent last.
    left: HashMap<String, Vec<Version>>,
    /// APIs whose live release could not be loaded: their routes stay closed.
    closed: BTreeMap<String, Manifest>,
    /// A canary candidate's counters when its canary started.
    baselines: HashMap<Key, Health>,
    /// Releases seen quarantined by the watchdog (audited once per spell).
    quarantined: HashMap<Key, &'static str>,
    /// On a clustered node: the config version served now.
    applied: Option<u64>,
}

/// The management center.
pub struct Management<P: DataPlane> {
    plane: Arc<P>,
    gate: Option<Arc<dyn Gate>>,
    store: Store,
    trees: Trees,
    settings: Settings,
    control: Mutex<Control<P::Release>>,
    /// On a clustered node, the cluster (ADR 0029).
    cluster: Option<cluster::ClusterLink>,
    /// Seals the values set through the admin API; without it none can be
    /// set.
    sealer: Option<variables::Sealer>,
}

impl<P: DataPlane> std::fmt::Debug for Management<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("gate", &self.gate)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Operator-facing summaries of an API and its versions (admin API types).
pub use sfop_admin_api::apis::{ApiView, VersionView};

impl<P: DataPlane> Management<P> {
    /// Opens the registry in `store`. Call [`Management::restore`] next to
    /// serve what was live before.
    pub fn open(
        store: &Store,
        plane: Arc<P>,
        gate: Option<Arc<dyn Gate>>,
        settings: Settings,
    ) -> Result<Self> {
        Ok(Self {
            plane,
            gate,
            store: store.clone(),
            trees: Trees::open(store)?,
            settings,
            control: Mutex::new(Control {
                warm: HashMap::new(),
                left: HashMap::new(),
                closed: BTreeMap::new(),
                baselines: HashMap::new(),
                quarantined: HashMap::new(),
                applied: None,
            }),
            cluster: None,
            sealer: None,
        })
    }

    /// Loads and publishes every API that was live (and its canary) when
    /// the platform last ran. An API whose release cannot be loaded keeps
    /// its routes closed.
    pub async fn restore(&self) -> Result<()> {
        let mut control = self.control.lock().await;
        if let Some(link) = &self.cluster {
            // What the cluster serves, not what this node served last.
            let snapshot = link.snapshots.borrow().clone();
            return self.sync_locked(&mut control, &snapshot).await;
        }
        for api in self.trees.apis()? {
            if api.retired_at_ms.is_some() {
                continue;
            }
            let wanted = api
                .live
                .iter()
                .chain(api.canary.as_ref().map(|c| &c.version));
            for version in wanted {
                if let Err(e) = self.warm_up(&mut control, &api.name, version).await {
                    tracing::error!(api = %api.name, %version, "release cannot be loaded; its routes stay closed: {e}");
                    match self.manifest_of(&api.name, version) {
                        Ok(Some(manifest)) => {
                            control.closed.insert(api.name.clone(), manifest);
                        }
                        Ok(None) => {}
                        // Its routes are unknown, so nothing can be closed;
                        // they are not served either.
                        Err(e) => tracing::error!(api = %api.name, %version, "{e}"),
                    }
                }
            }
        }
        let table = self.build(&control, None)?;
        self.plane.swap(table);
        Ok(())
    }

    /// Registers `package` (immutable: the same name and version with other
    /// bytes is refused). The component is compiled once here, so a package
    /// that cannot load never enters the registry.
    pub async fn push(&self, package: Package, actor: &str) -> Result<VersionRecord> {
        let mut control = self.control.lock().await;
        self.push_locked(&mut control, package, actor).await
    }

    async fn push_locked(
        &self,
        control: &mut Control<P::Release>,
        package: Package,
        actor: &str,
    ) -> Result<VersionRecord> {
        let (name, version) = (
            package.manifest.name.clone(),
            package.manifest.version.clone(),
        );
        let component_sha256 = package.component_sha256();
        let manifest_sha256 = package.manifest_sha256();
        if let Some(existing) = self.trees.version(&name, &version)? {
            if existing.component_sha256 == component_sha256
                && existing.manifest_sha256 == manifest_sha256
            {
                return Ok(existing);
            }
            return Err(Error::Conflict(format!(
                "{name}@{version} is already registered with other bytes (component sha256 {}); \
                 a version never changes: publish this one under a new version",
                existing.component_sha256
            )));
        }
        let plane = self.plane.clone();
        let (manifest, component) = (package.manifest.clone(), package.component.clone());
        let set = self.set_values(&name)?;
        let release = tokio::task::spawn_blocking(move || plane.load(manifest, &component, &set))
            .await
            .map_err(|e| Error::internal(format!("loading {name}@{version}"), e))?
            .map_err(|e| Error::plane(format!("{name}@{version} cannot be loaded"), e))?;

        let record = VersionRecord {
            name: name.clone(),
            version: version.clone(),
            component_sha256: component_sha256.clone(),
            manifest_sha256,
            manifest: package.manifest_text,
            cases: package.cases_text,
            uploaded_at_ms: now_millis(),
            uploaded_by: actor.to_owned(),
            test: None,
        };
        let event = Event {
            actor,
            action: "push",
            api: &name,
            version: Some(&version),
            detail: format!(
                "component sha256 {component_sha256}, {} bytes",
                package.component.len()
            ),
        };
        if let Some(link) = &self.cluster {
            self.push_shared(link, &record, &package.component).await?;
        }
        let t = &self.trees;
        self.store
            .transaction(&[&t.versions, &t.blobs, &t.audit], |tx| {
                tx[0].insert_json(&version_key(&name, &version), &record)?;
                tx[1].insert(component_sha256.as_bytes(), &package.component)?;
                audit::append(&tx[2], &event, record.uploaded_at_ms)?;
                Ok::<_, sfop_store::Abort<Error>>(())
            })?;
        self.store.flush()?;
        // Kept compiled: a push is usually followed by its promotion.
        control
            .warm
            .insert((name.clone(), version.clone()), release);
        tracing::info!(api = %name, %version, %actor, "package pushed");
        Ok(record)
    }

    /// Runs the testbed on a registered version and stores its verdict.
    pub async fn test(&self, name: &str, version: &Version, actor: &str) -> Result<TestRecord> {
        let gate = self.gate()?;
        let record = self.record(name, version)?;
        let candidate = self.package(&record)?;
        let live = match self.trees.api(name)?.and_then(|a| a.live) {
            Some(live) if &live != version => Some(self.package(&self.record(name, &live)?)?),
            _ => None,
        };
        // The run may take a while: other operations go on meanwhile; the
        // record it annotates is immutable.
        let verdict = gate
            .test(&candidate, live.as_ref())
            .await
            .map_err(|e| match e {
                GateError::Refused(cause) => {
                    Error::Refused(format!("the testbed refused: {cause}"))
                }
                GateError::Internal(cause) => Error::Internal {
                    what: format!("testing {name}@{version}"),
                    cause,
                },
            })?;
        let _control = self.control.lock().await;
        let test = TestRecord {
            passed: verdict.passed,
            at_ms: now_millis(),
            report: verdict.report,
            report_html: verdict.report_html,
            attestation: verdict.attestation,
        };
        if let Some(link) = &self.cluster {
            self.test_shared(link, name, version, &test, actor).await?;
        }
        let mut updated = record;
        updated.test = Some(test.clone());
        let event = Event {
            actor,
            action: "test",
            api: name,
            version: Some(version),
            detail: if test.passed {
                "passed; attestation signed".into()
            } else {
                format!("failed: {}", failed_rules(&test.report))
            },
        };
        let t = &self.trees;
        self.store.transaction(&[&t.versions, &t.audit], |tx| {
            tx[0].insert_json(&version_key(name, version), &updated)?;
            audit::append(&tx[1], &event, test.at_ms)?;
            Ok::<_, sfop_store::Abort<Error>>(())
        })?;
        self.store.flush()?;
        Ok(test)
    }

    /// Makes `version` the live release of `name`: only with a passing
    /// attestation for its exact bytes, only upwards, and a contract change
    /// only with the version step it needs. Completes a canary of the same
    /// version.
    pub async fn promote(&self, name: &str, version: &Version, actor: &str) -> Result<ApiRecord> {
        let mut control = self.control.lock().await;
        self.promote_locked(&mut control, name, version, actor, true)
            .await
    }

    async fn promote_locked(
        &self,
        control: &mut Control<P::Release>,
        name: &str,
        version: &Version,
        actor: &str,
        gated: bool,
    ) -> Result<ApiRecord> {
        let record = self.record(name, version)?;
        let mut api = self.trees.api(name)?.unwrap_or_else(|| ApiRecord {
            name: name.to_owned(),
            ..ApiRecord::default()
        });
        if let Some(canary) = &api.canary
            && &canary.version != version
        {
            return Err(Error::Conflict(format!(
                "a canary of {name}@{} is running: promote or roll back that one first",
                canary.version
            )));
        }
        if gated {
            self.check_gate(&record)?;
        }
        self.check_upgrade(&api, &record)?;
        self.warm_up(control, name, version).await?;
        let detail = match &api.live {
            Some(old) => format!("{old} → {version}"),
            None => format!("first live version {version}"),
        } + if gated {
            ""
        } else {
            " (trusted bootstrap, no testbed)"
        };
        if let Some(old) = api.live.take()
            && api.retired_at_ms.is_none()
        {
            api.previous.retain(|v| v != &old);
            api.previous.push(old);
        }
        api.live = Some(version.clone());
        api.canary = None;
        api.retired_at_ms = None;
        api.sunset = None;
        let reopened = control.closed.remove(name);
        let applied = self
            .apply(control, api, "promote", actor, Some(version), detail)
            .await;
        if let (Err(_), Some(manifest)) = (&applied, reopened) {
            control.closed.insert(name.to_owned(), manifest);
        }
        applied
    }

    /// Sends `spec.percent` of `name`'s traffic to `version`, sticky per key;
    /// the candidate must pass the same checks as a promotion.
    pub async fn canary(
        &self,
        name: &str,
        version: &Version,
        spec: CanarySpec,
        actor: &str,
    ) -> Result<ApiRecord> {
        if spec.percent > 100 {
            return Err(Error::Invalid(format!(
                "percent: {} is not within 0..=100",
                spec.percent
            )));
        }
        if !(0.0..=1.0).contains(&spec.max_error_rate) {
            return Err(Error::Invalid(format!(
                "max_error_rate: {} is not within 0.0..=1.0",
                spec.max_error_rate
            )));
        }
        let mut control = self.control.lock().await;
        let record = self.record(name, version)?;
        let Some(mut api) = self.trees.api(name)?.filter(|a| a.live.is_some()) else {
            return Err(Error::Refused(format!(
                "{name} has no live version to split traffic with: promote one first"
            )));
        };
        if let Some(canary) = &api.canary
            && &canary.version != version
        {
            return Err(Error::Conflict(format!(
                "a canary of {name}@{} is running: promote or roll back that one first",
                canary.version
            )));
        }
        self.check_gate(&record)?;
        self.check_upgrade(&api, &record)?;
        let release = self.warm_up(&mut control, name, version).await?;
        control.baselines.insert(
            (name.to_owned(), version.clone()),
            self.plane.health(&release),
        );
        api.canary = Some(CanaryRecord {
            version: version.clone(),
            percent: spec.percent,
            sticky: spec.sticky,
            max_error_rate: spec.max_error_rate,
            min_requests: spec.min_requests,
            started_at_ms: now_millis(),
        });
        let detail = format!(
            "{}% of traffic, sticky by {:?}, rollback above {:.1}% errors over {} requests",
            spec.percent,
            spec.sticky,
            spec.max_error_rate * 100.0,
            spec.min_requests
        );
        self.apply(&mut control, api, "canary", actor, Some(version), detail)
            .await
    }

    /// Ends a running canary, or else returns `name` to its previous live
    /// version (kept compiled, so the switch is immediate).
    pub async fn rollback(&self, name: &str, actor: &str) -> Result<ApiRecord> {
        let mut control = self.control.lock().await;
        self.rollback_locked(&mut control, name, actor, String::new())
            .await
    }

    async fn rollback_locked(
        &self,
        control: &mut Control<P::Release>,
        name: &str,
        actor: &str,
        why: String,
    ) -> Result<ApiRecord> {
        let mut api = self.api_record(name)?;
        if let Some(canary) = api.canary.take() {
            control
                .baselines
                .remove(&(name.to_owned(), canary.version.clone()));
            let detail = format!("canary {} ended{why}", canary.version);
            return self
                .apply(
                    control,
                    api,
                    "rollback",
                    actor,
                    Some(&canary.version),
                    detail,
                )
                .await;
        }
        let Some(previous) = api.previous.pop() else {
            return Err(Error::Refused(format!(
                "{name} has no earlier live version to roll back to"
            )));
        };
        self.warm_up(control, name, &previous).await?;
        let detail = format!(
            "{} → {previous}{why}",
            api.live
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        api.live = Some(previous.clone());
        api.retired_at_ms = None;
        let reopened = control.closed.remove(name);
        let applied = self
            .apply(control, api, "rollback", actor, Some(&previous), detail)
            .await;
        if let (Err(_), Some(manifest)) = (&applied, reopened) {
            control.closed.insert(name.to_owned(), manifest);
        }
        applied
    }

    /// Announces that `name` will be retired on `sunset` (`YYYY-MM-DD`):
    /// clients see it in a `Sunset` header and in the portal.
    pub async fn deprecate(&self, name: &str, sunset: &str, actor: &str) -> Result<ApiRecord> {
        let Some(date) = sfop_core::time::Date::parse(sunset) else {
            return Err(Error::Invalid(format!(
                "sunset: {sunset:?} is not a date YYYY-MM-DD"
            )));
        };
        let mut control = self.control.lock().await;
        let mut api = self.api_record(name)?;
        if api.live.is_none() || api.retired_at_ms.is_some() {
            return Err(Error::Refused(format!("{name} is not live")));
        }
        api.sunset = Some(date.to_string());
        let live = api.live.clone();
        self.apply(
            &mut control,
            api,
            "deprecate",
            actor,
            live.as_ref(),
            format!("sunset {date}"),
        )
        .await
    }

    /// Takes `name` out of service: its routes answer 410 with `A0013`.
    pub async fn retire(&self, name: &str, actor: &str) -> Result<ApiRecord> {
        let mut control = self.control.lock().await;
        self.retire_locked(&mut control, name, actor, String::new())
            .await
    }

    async fn retire_locked(
        &self,
        control: &mut Control<P::Release>,
        name: &str,
        actor: &str,
        detail: String,
    ) -> Result<ApiRecord> {
        let mut api = self.api_record(name)?;
        if api.retired_at_ms.is_some() {
            return Err(Error::Refused(format!("{name} is already retired")));
        }
        if api.live.is_none() {
            return Err(Error::Refused(format!("{name} is not live")));
        }
        api.canary = None;
        api.retired_at_ms = Some(now_millis());
        let live = api.live.clone();
        self.apply(control, api, "retire", actor, live.as_ref(), detail)
            .await
    }

    /// Offers a package found at start: registers it, and makes it live when
    /// its API has no live version yet or this one is higher. `trusted`
    /// skips the testbed (only for an operator who said so).
    pub async fn bootstrap(&self, package: Package, trusted: bool) -> Bootstrapped {
        let (name, version) = (
            package.manifest.name.clone(),
            package.manifest.version.clone(),
        );
        let refused = |e: &dyn std::fmt::Display| Bootstrapped::Refused {
            error: e.to_string(),
        };
        let manifest = package.manifest.clone();
        let pushed = {
            let mut control = self.control.lock().await;
            self.push_locked(&mut control, package, "bootstrap").await
        };
        if let Err(e) = pushed {
            // Its routes stay closed unless another version serves them.
            let mut control = self.control.lock().await;
            let serving = matches!(self.trees.api(&name), Ok(Some(a)) if a.live.is_some());
            if !serving {
                control.closed.insert(name.clone(), manifest);
                if let Ok(table) = self.build(&control, None) {
                    self.plane.swap(table);
                }
            }
            return refused(&e);
        }
        let api = match self.trees.api(&name) {
            Ok(api) => api,
            Err(e) => return refused(&e),
        };
        let live = |from_cache| Bootstrapped::Live {
            name: name.clone(),
            version: version.to_string(),
            from_cache,
        };
        match api.as_ref().and_then(|a| a.live.as_ref()) {
            Some(_) if api.as_ref().is_some_and(|a| a.retired_at_ms.is_some()) => {
                return refused(&format!("{name} is retired"));
            }
            // The registry is the truth: what was promoted since stays live.
            Some(current) if current >= &version => {
                let control = self.control.lock().await;
                let from_cache = control
                    .warm
                    .get(&(name.clone(), current.clone()))
                    .is_some_and(|r| self.plane.compiled_from_cache(r));
                return Bootstrapped::Live {
                    name: name.clone(),
                    version: current.to_string(),
                    from_cache,
                };
            }
            _ => {}
        }
        if !trusted {
            match self.test(&name, &version, "bootstrap").await {
                Ok(t) if t.passed => {}
                Ok(t) => {
                    self.close_unserved(&name).await;
                    return refused(&format!(
                        "{name}@{version} failed the testbed: {}",
                        failed_rules(&t.report)
                    ));
                }
                Err(e) => {
                    self.close_unserved(&name).await;
                    return refused(&e);
                }
            }
        }
        let mut control = self.control.lock().await;
        match self
            .promote_locked(&mut control, &name, &version, "bootstrap", !trusted)
            .await
        {
            Ok(_) => {
                let from_cache = control
                    .warm
                    .get(&(name.clone(), version.clone()))
                    .is_some_and(|r| self.plane.compiled_from_cache(r));
                live(from_cache)
            }
            Err(e) => refused(&e),
        }
    }

    /// Closes the routes of `name` when no version of it serves.
    async fn close_unserved(&self, name: &str) {
        let mut control = self.control.lock().await;
        let serving = matches!(self.trees.api(name), Ok(Some(a)) if a.live.is_some());
        if serving {
            return;
        }
        let manifest = self
            .trees
            .versions_of(name)
            .ok()
            .and_then(|v| v.last().cloned())
            .and_then(|r| Manifest::parse(&r.manifest).ok());
        if let Some(manifest) = manifest {
            control.closed.insert(name.to_owned(), manifest);
            if let Ok(table) = self.build(&control, None) {
                self.plane.swap(table);
            }
        }
    }

    /// One round of the watchdog: rolls back canaries whose error rate is
    /// over their threshold, and retires APIs whose sunset date has passed.
    pub async fn check(&self) -> Result<()> {
        let mut control = self.control.lock().await;
        let today = sfop_core::time::Date::of(now_millis(), self.settings.utc_offset_minutes);
        for api in self.trees.apis()? {
            self.watch_quarantine(&mut control, &api)?;
            if let Some(canary) = &api.canary {
                let key = (api.name.clone(), canary.version.clone());
                let Some(release) = control.warm.get(&key) else {
                    continue;
                };
                let now = self.plane.health(release);
                if let Some(reason) = now.quarantined {
                    let why = format!(": quarantined for repeated {reason} faults");
                    tracing::warn!(api = %api.name, version = %canary.version, "canary rolled back{why}");
                    self.rollback_locked(&mut control, &api.name, "canary-monitor", why)
                        .await?;
                    continue;
                }
                let base = control.baselines.get(&key).copied().unwrap_or_default();
                let requests = now.requests.saturating_sub(base.requests);
                let errors = now.errors.saturating_sub(base.errors);
                if requests >= canary.min_requests.max(1)
                    && errors as f64 / requests as f64 > canary.max_error_rate
                {
                    let why = format!(
                        ": {errors} errors in {requests} requests exceed {:.1}%",
                        canary.max_error_rate * 100.0
                    );
                    tracing::warn!(api = %api.name, version = %canary.version, "canary rolled back{why}");
                    self.rollback_locked(&mut control, &api.name, "canary-monitor", why)
                        .await?;
                }
            }
            let past_sunset = api
                .sunset
                .as_deref()
                .and_then(sfop_core::time::Date::parse)
                .is_some_and(|sunset| sunset < today);
            if past_sunset && api.retired_at_ms.is_none() {
                let detail = format!("sunset {} passed", api.sunset.unwrap_or_default());
                self.retire_locked(&mut control, &api.name, "sunset", detail)
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes to the audit log when the live or canary release of `api`
    /// enters quarantine (the data plane throttled it for repeated plugin
    /// faults) and when it leaves it, once each.
    fn watch_quarantine(
        &self,
        control: &mut Control<P::Release>,
        api: &registry::ApiRecord,
    ) -> Result<()> {
        let versions = api
            .live
            .iter()
            .chain(api.canary.as_ref().map(|c| &c.version));
        for version in versions {
            let key = (api.name.clone(), version.clone());
            let Some(release) = control.warm.get(&key) else {
                continue;
            };
            let now = self.plane.health(release).quarantined;
            let before = control.quarantined.get(&key).copied();
            let detail = match (before, now) {
                (None, Some(reason)) => {
                    control.quarantined.insert(key, reason);
                    format!("quarantined: its calls keep failing ({reason}); throttled")
                }
                (Some(reason), None) => {
                    control.quarantined.remove(&key);
                    format!("quarantine over (was {reason})")
                }
                _ => continue,
            };
            tracing::warn!(api = %api.name, %version, "{detail}");
            let event = Event {
                actor: "quarantine-monitor",
                action: "quarantine",
                api: &api.name,
                version: Some(version),
                detail,
            };
            let at = now_millis();
            self.store.transaction(&[&self.trees.audit], |tx| {
                audit::append(&tx[0], &event, at)?;
                Ok::<_, sfop_store::Abort<Error>>(())
            })?;
        }
        Ok(())
    }

    /// Runs [`Management::check`] every `every` until `stop` turns true.
    pub async fn watch(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = async move {
            // A stop request, or the platform dropped.
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.check().await {
                        tracing::error!("management watchdog: {e}");
                    }
                }
                () = &mut stopped => return,
            }
        }
    }

    /// Every API with its versions.
    pub async fn list(&self) -> Result<Vec<ApiView>> {
        let control = self.control.lock().await;
        let mut names: Vec<String> = self.trees.apis()?.into_iter().map(|a| a.name).collect();
        for record in self.trees.versions.values_json::<VersionRecord>()? {
            names.push(record.1.name);
        }
        names.sort();
        names.dedup();
        names.iter().map(|name| self.view(&control, name)).collect()
    }

    /// One API with its versions.
    pub async fn show(&self, name: &str) -> Result<ApiView> {
        let control = self.control.lock().await;
        let view = self.view(&control, name)?;
        if view.versions.is_empty() {
            return Err(Error::NotFound(format!("no API named {name:?}")));
        }
        Ok(view)
    }

    /// A stored version, with its manifest and testbed report.
    pub fn version(&self, name: &str, version: &Version) -> Result<VersionRecord> {
        self.record(name, version)
    }

    /// Every version of `name`, lowest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        Ok(self.trees.versions_of(name)?)
    }

    /// Every API record.
    pub fn apis(&self) -> Result<Vec<ApiRecord>> {
        Ok(self.trees.apis()?)
    }

    /// The audit log of record, oldest first: on a clustered node the
    /// cluster's, which every node writes.
    pub async fn audit_log(&self) -> Result<Vec<audit::Entry>> {
        match &self.cluster {
            Some(link) => self.audit_shared(link).await,
            None => self.audit(),
        }
    }

    /// Checks the hash chain of the audit log of record.
    pub async fn verify_audit_log(&self) -> Result<audit::Verification> {
        match &self.cluster {
            Some(link) => self.verify_shared(link).await,
            None => self.verify_audit(),
        }
    }

    /// This process's audit log, oldest first.
    pub fn audit(&self) -> Result<Vec<audit::Entry>> {
        Ok(audit::entries(&self.trees.audit)?)
    }

    /// Checks the audit log's hash chain.
    pub fn verify_audit(&self) -> Result<audit::Verification> {
        Ok(audit::verify(&self.trees.audit)?)
    }

    fn view(&self, control: &Control<P::Release>, name: &str) -> Result<ApiView> {
        let api = self.trees.api(name)?;
        let versions = self
            .trees
            .versions_of(name)?
            .into_iter()
            .rev()
            .map(|record| {
                // Counted as long as the registry knows the version, warm
                // or not.
                let health = control
                    .warm
                    .get(&(name.to_owned(), record.version.clone()))
                    .map(|r| self.plane.health(r))
                    .or_else(|| self.plane.recorded(name, &record.version))
                    .unwrap_or_default();
                VersionView {
                    state: registry::state_of(api.as_ref(), &record),
                    description: Manifest::parse(&record.manifest)
                        .map(|m| m.description)
                        .unwrap_or_default(),
                    version: record.version,
                    component_sha256: record.component_sha256,
                    uploaded_at_ms: record.uploaded_at_ms,
                    uploaded_by: record.uploaded_by,
                    requests: health.requests,
                    errors: health.errors,
                    quarantined: health.quarantined.map(str::to_owned),
                }
            })
            .collect();
        let api = api.unwrap_or_default();
        Ok(ApiView {
            name: name.to_owned(),
            live: api.live,
            canary: api.canary,
            sunset: api.sunset,
            retired: api.retired_at_ms.is_some(),
            closed: control.closed.contains_key(name),
            previous: api.previous,
            versions,
        })
    }

    fn gate(&self) -> Result<&Arc<dyn Gate>> {
        self.gate.as_ref().ok_or_else(|| {
            Error::Refused(
                "no testbed is configured on this platform, so nothing can be attested or promoted"
                    .into(),
            )
        })
    }

    /// A passing attestation for exactly this version's bytes, verified now.
    fn check_gate(&self, record: &VersionRecord) -> Result<()> {
        let gate = self.gate()?;
        let id = format!("{}@{}", record.name, record.version);
        let attestation = match &record.test {
            Some(TestRecord {
                passed: true,
                attestation: Some(a),
                ..
            }) => a,
            Some(TestRecord { passed: false, .. }) => {
                return Err(Error::Refused(format!(
                    "{id} failed the testbed; it cannot go live"
                )));
            }
            _ => {
                return Err(Error::Refused(format!(
                    "{id} has no testbed attestation: run `sfop api test {} {}` first",
                    record.name, record.version
                )));
            }
        };
        gate.verify(attestation, &self.package(record)?)
            .map_err(|e| match e {
                GateError::Refused(cause) => {
                    Error::Refused(format!("{id}: attestation refused: {cause}"))
                }
                GateError::Internal(cause) => Error::Internal {
                    what: format!("verifying the attestation of {id}"),
                    cause,
                },
            })
    }

    /// Upwards only, and with the version step the contract change needs.
    fn check_upgrade(&self, api: &ApiRecord, record: &VersionRecord) -> Result<()> {
        let Some(live) = &api.live else {
            return Ok(());
        };
        if api.retired_at_ms.is_some() {
            return Ok(());
        }
        if &record.version <= live {
            return Err(Error::Refused(format!(
                "{}@{} is not higher than the live version {live}; \
                 `sfop api rollback` returns to an earlier version",
                record.name, record.version
            )));
        }
        // Never fails open: a record that cannot be read is the platform's
        // failure, and the change waits until it is repaired.
        let old = self.manifest_of(&api.name, live)?.ok_or_else(|| {
            Error::internal(
                format!("checking the upgrade of {}", api.name),
                format!("the live version {live} is missing from the registry"),
            )
        })?;
        let new = Manifest::parse(&record.manifest).map_err(|e| {
            Error::internal(
                format!(
                    "reading the stored manifest of {}@{}",
                    record.name, record.version
                ),
                e,
            )
        })?;
        match sfop_core::contract::check_bump(&old, &new) {
            Some(why) => Err(Error::Refused(format!("{}: {why}", record.name))),
            None => Ok(()),
        }
    }

    fn record(&self, name: &str, version: &Version) -> Result<VersionRecord> {
        self.trees
            .version(name, version)?
            .ok_or_else(|| Error::NotFound(format!("{name}@{version} is not in the registry")))
    }

    fn api_record(&self, name: &str) -> Result<ApiRecord> {
        self.trees
            .api(name)?
            .ok_or_else(|| Error::NotFound(format!("{name} has never been live")))
    }

    /// The stored manifest of a version; `None` when the version is not
    /// registered, an internal error when its stored text does not parse.
    fn manifest_of(&self, name: &str, version: &Version) -> Result<Option<Manifest>> {
        let Some(record) = self.trees.version(name, version)? else {
            return Ok(None);
        };
        Manifest::parse(&record.manifest).map(Some).map_err(|e| {
            Error::internal(
                format!("reading the stored manifest of {name}@{version}"),
                e,
            )
        })
    }

    /// The stored package of a version.
    fn package(&self, record: &VersionRecord) -> Result<Package> {
        let id = format!("{}@{}", record.name, record.version);
        let component = self.trees.blob(&record.component_sha256)?.ok_or_else(|| {
            Error::internal(
                format!("reading the package of {id}"),
                "its component is missing from the store",
            )
        })?;
        Package::from_parts(record.manifest.clone(), component, record.cases.clone())
            .map_err(|e| Error::internal(format!("reading the stored package of {id}"), e))
    }

    /// The compiled release of a version, compiling it when it is not warm.
    async fn warm_up(
        &self,
        control: &mut Control<P::Release>,
        name: &str,
        version: &Version,
    ) -> Result<P::Release> {
        let key = (name.to_owned(), version.clone());
        if let Some(release) = control.warm.get(&key) {
            return Ok(release.clone());
        }
        let record = self.record(name, version)?;
        // A clustered node serves what the cluster says: the node that made
        // the change checked the attestation (ADR 0029).
        if self.settings.require_attestation && self.cluster.is_none() {
            self.check_gate(&record)?;
        }
        let set = self.set_values(name)?;
        let release = self.load(&record, set).await?;
        control.warm.insert(key, release.clone());
        Ok(release)
    }

    /// Compiles (or takes from the compile cache) and pre-links a version,
    /// with `set` as the values set through the admin API.
    async fn load(&self, record: &VersionRecord, set: SetValues) -> Result<P::Release> {
        let id = format!("{}@{}", record.name, record.version);
        let package = self.package(record)?;
        let plane = self.plane.clone();
        tokio::task::spawn_blocking(move || plane.load(package.manifest, &package.component, &set))
            .await
            .map_err(|e| Error::internal(format!("loading {id}"), e))?
            .map_err(|e| Error::plane(format!("{id} cannot be loaded"), e))
    }

    /// Builds the routing with `api` changed, writes the change and its audit
    /// entry atomically, then switches the data plane to it.
    async fn apply(
        &self,
        control: &mut Control<P::Release>,
        api: ApiRecord,
        action: &str,
        actor: &str,
        version: Option<&Version>,
        detail: String,
    ) -> Result<ApiRecord> {
        // Built first on every node: a routing that cannot be built is
        // refused before anything is written.
        let table = self.build(control, Some(&api))?;
        if let Some(link) = &self.cluster {
            // The cluster's feed builds it again from what was written.
            drop(table);
            return self
                .apply_shared(link, control, api, action, actor, version, detail)
                .await;
        }
        let before = self.trees.api(&api.name)?;
        let at = now_millis();
        // The write, its flush (an fsync) and the swap run on a blocking
        // thread: on a gateway worker the fsync would stall every request
        // that worker serves (the bench's hot-swap scenario S saw p99 double).
        // The three happen together even if this future is dropped: a
        // blocking task is not cancelled with its handle.
        let (store, apis, audit_tree, plane) = (
            self.store.clone(),
            self.trees.apis.clone(),
            self.trees.audit.clone(),
            self.plane.clone(),
        );
        let (record, owned_actor, owned_action, owned_version, owned_detail) = (
            api.clone(),
            actor.to_owned(),
            action.to_owned(),
            version.cloned(),
            detail.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            let event = Event {
                actor: &owned_actor,
                action: &owned_action,
                api: &record.name,
                version: owned_version.as_ref(),
                detail: owned_detail,
            };
            store.transaction(&[&apis, &audit_tree], |tx| {
                tx[0].insert_json(&record.name, &record)?;
                audit::append(&tx[1], &event, at)?;
                Ok::<_, sfop_store::Abort<Error>>(())
            })?;
            store.flush()?;
            plane.swap(table);
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("recording the {action}"), e))??;
        tracing::info!(api = %api.name, version = ?version.map(ToString::to_string), %actor, "{action}: {detail}");
        self.served(control, before.as_ref(), &api);
        Ok(api)
    }

    /// After `api` changed from `before`: the versions that stopped serving
    /// join its recently left (promotable again at once), and what may not
    /// serve soon is evicted.
    fn served(
        &self,
        control: &mut Control<P::Release>,
        before: Option<&ApiRecord>,
        api: &ApiRecord,
    ) {
        let serving_now = serving(api);
        let left = control.left.entry(api.name.clone()).or_default();
        for version in before.map(serving).unwrap_or_default() {
            if !serving_now.contains(&version) {
                left.retain(|v| v != &version);
                left.push(version);
            }
        }
        self.evict(control, api);
    }

    /// Keeps compiled only what may serve soon: live, canary, the last
    /// `keep_warm` earlier live versions (rollback targets) and the last
    /// `keep_warm` versions that stopped serving (a version rolled back from
    /// can be promoted again at once). A release kept warm but not routed
    /// holds its compiled code and pre-linked `InstancePre`, no instances.
    fn evict(&self, control: &mut Control<P::Release>, api: &ApiRecord) {
        let serving = serving(api);
        let left = control.left.entry(api.name.clone()).or_default();
        let mut stopped: Vec<Version> = left
            .iter()
            .rev()
            .filter(|v| !serving.contains(v))
            .take(self.settings.keep_warm)
            .cloned()
            .collect();
        // Older ones are no longer kept: forget them.
        left.retain(|v| serving.contains(v) || stopped.contains(v));
        stopped.extend(
            api.previous
                .iter()
                .rev()
                .take(self.settings.keep_warm)
                .cloned(),
        );
        control.warm.retain(|(name, version), _| {
            name != &api.name || serving.contains(version) || stopped.contains(version)
        });
    }

    /// The routing of every API, with `changed` in place of its stored record.
    fn build(
        &self,
        control: &Control<P::Release>,
        changed: Option<&ApiRecord>,
    ) -> Result<P::Table> {
        let mut apis = self.trees.apis()?;
        if let Some(changed) = changed {
            apis.retain(|a| a.name != changed.name);
            apis.push(changed.clone());
        }
        let mut published = Vec::new();
        for api in &apis {
            let Some(live) = &api.live else { continue };
            if api.retired_at_ms.is_some() {
                if let Some(manifest) = self.manifest_of(&api.name, live)? {
                    published.push(Published::Retired {
                        manifest,
                        sunset: api.sunset.clone(),
                    });
                }
                continue;
            }
            let Some(stable) = control.warm.get(&(api.name.clone(), live.clone())) else {
                if let Some(manifest) = control.closed.get(&api.name) {
                    published.push(Published::Closed {
                        manifest: manifest.clone(),
                    });
                }
                continue;
            };
            let canary = api.canary.as_ref().and_then(|c| {
                control
                    .warm
                    .get(&(api.name.clone(), c.version.clone()))
                    .map(|release| CanarySplit {
                        release: release.clone(),
                        percent: c.percent,
                        sticky: c.sticky,
                    })
            });
            published.push(Published::Serving {
                stable: stable.clone(),
                canary,
                sunset: api.sunset.clone(),
            });
        }
        // APIs that never went live but whose package failed at start.
        for (name, manifest) in &control.closed {
            if !apis.iter().any(|a| &a.name == name && a.live.is_some()) {
                published.push(Published::Closed {
                    manifest: manifest.clone(),
                });
            }
        }
        self.plane
            .build(&published)
            .map_err(|e| Error::plane("the new routing cannot be built".into(), e))
    }
}

/// The versions of `api` that take traffic: live (unless retired) and canary.
fn serving(api: &ApiRecord) -> Vec<Version> {
    api.live
        .iter()
        .filter(|_| api.retired_at_ms.is_none())
        .chain(api.canary.as_ref().map(|c| &c.version))
        .cloned()
        .collect()
}

/// The rule ids of a failed report, for messages (`checks[].rule` where
/// `outcome` is `fail`), or a generic phrase.
fn failed_rules(report: &serde_json::Value) -> String {
    let mut rules: Vec<&str> = report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["outcome"] == "fail")
                .filter_map(|c| c["rule"].as_str())
                .collect()
        })
        .unwrap_or_default();
    rules.sort_unstable();
    rules.dedup();
    if rules.is_empty() {
        "see the testbed report".into()
    } else {
        rules.join(", ")
    }
}
