//! Runs sfop API plugins: compiles each component once, checks that it imports
//! only the capabilities its manifest declares, pre-links it, and serves every
//! call from a fresh instance with a memory cap and a CPU deadline. The only
//! crate that touches wasmtime.

mod bindings;
mod budget;
mod cache;
mod exec;
mod health;
mod host;
mod meter;
mod outbound;
mod warm;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use sfop_core::outbound::{NoValues, Outbound, SetValues, VariableValues};
use sfop_core::{BankBackend, Capability, Claims, KvStore, Manifest};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::ApiPre;
use crate::bindings::platform::{auth_context, clock, config, http, kv, ledger, log, types};
use crate::host::HostState;

pub use crate::health::{FaultKind, Health, QuarantinePolicy};
pub use crate::host::PANIC_PREFIX;

/// CPU a call runs on the calling thread, measured from its first tick,
/// before it moves to the execution pool at a yield (ADR 0020).
const MOVE_AFTER_NS: u64 = 500_000;

/// After a call of a version moved to the execution pool or failed, this
/// many of its next calls start there (ADR 0020), by default.
pub const SUSPECT_CALLS: u32 = 1_000;

/// Frames of a trap's backtrace that are kept.
const BACKTRACE_FRAMES: usize = 8;

/// The WIT package this runtime serves; components must import a
/// semver-compatible version of it.
pub const PLATFORM_PACKAGE: &str = "sfop:platform";
/// The newest version served. Each interface keeps the version of the folder
/// that defines it ([`interface_version_supported`]): `0.2.0` adds `http`
/// and `config` and imports the rest at `0.1.0`.
pub const PLATFORM_VERSION: &str = "0.2.0";
/// The versions served side by side, oldest first.
pub const PLATFORM_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Why a package could not be loaded. Each message names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    #[error(
        "component imports `{import}`, which is not an sfop:platform capability \
         (allowed: {allowed})"
    )]
    ForbiddenImport { import: String, allowed: String },
    #[error(
        "component imports `{import}` but the manifest does not declare capability `{capability}`"
    )]
    UndeclaredCapability {
        import: String,
        capability: Capability,
    },
    #[error(
        "component imports `{import}`, but this platform serves that interface at {PLATFORM_PACKAGE}@{served}"
    )]
    UnsupportedVersion {
        import: String,
        served: &'static str,
    },
    #[error(
        "variable `{name}` of {api} is required and has no value: set it in the platform config \
         ([variables.\"{api}\"]) or the environment"
    )]
    MissingVariable { api: String, name: String },
    #[error("{0}")]
    Grant(String),
    #[error("component does not fit the sfop:platform/api world: {0}")]
    Link(String),
}

/// Why one call failed. Each ends only its own call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the plugin exceeded its CPU deadline of {0} ms")]
    Deadline(u32),
    #[error("the plugin exceeded its memory cap of {0} MiB")]
    MemoryExhausted(u32),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin answered HTTP status {0}, which is not valid")]
    BadStatus(u16),
    #[error("the plugin's response body exceeds its limit of {0} KiB")]
    ResponseTooLarge(u32),
    #[error("no instance could be created: {0}")]
    Instantiate(String),
    /// The platform's guest memory budget, or this API's share of it, has
    /// no room: refused before the call took an instance, or ended when its
    /// memory would have grown past it.
    #[error("the guest memory budget is full")]
    MemoryBudget,
    /// The version is quarantined (its calls kept failing) and its few
    /// places are taken.
    #[error("the API version is quarantined after repeated {0} faults")]
    Quarantined(&'static str),
}

/// The services plugins reach through their capabilities.
#[derive(Debug, Clone)]
pub struct Services {
    pub bank: Arc<dyn BankBackend>,
    pub kv: Arc<dyn KvStore>,
    /// Business time zone offset, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may be alive at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Epoch tick: the granularity of CPU deadlines and of yielding to other
    /// requests while a plugin runs.
    pub tick: Duration,
    /// Where compiled components are cached; `None` compiles at every start.
    pub compile_cache: Option<PathBuf>,
    /// Threads of the execution pool, where calls that run past their first
    /// tick finish (ADR 0020); 0: one less than the machine's cores, at least 1.
    pub execution_threads: usize,
    /// After a call of a version moved to the execution pool or failed, this
    /// many of its next calls start there (ADR 0020 rule 3).
    pub suspect_calls: u32,
    /// The platform's guest memory budget: the sum of the linear memories
    /// of all live instances, bytes.
    pub guest_memory_bytes: u64,
    /// The most one API version's instances may hold, percent of the budget.
    pub api_memory_share_percent: u8,
    /// When a version's faults quarantine it, and how its fault lines are
    /// rate-limited.
    pub quarantine: QuarantinePolicy,
    /// The client of the `http` capability; `None`: packages declaring
    /// `http` are refused.
    pub outbound: Option<Arc<dyn Outbound>>,
    /// The operator's values of plugins' variables (`config`).
    pub variables: Arc<dyn VariableValues>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            tick: Duration::from_millis(2),
            compile_cache: None,
            execution_threads: 0,
            suspect_calls: SUSPECT_CALLS,
            guest_memory_bytes: 2 << 30,
            api_memory_share_percent: 50,
            quarantine: QuarantinePolicy::default(),
            outbound: None,
            variables: Arc::new(NoValues),
        }
    }
}

/// The platform's guest memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestMemory {
    /// Linear memory of all live instances, bytes.
    pub live_bytes: u64,
    /// The budget, bytes.
    pub limit_bytes: u64,
    /// The most one API version may hold, bytes.
    pub api_share_bytes: u64,
    /// Calls refused and growths failed for want of room, so far.
    pub refused: u64,
}

/// A process-unique number, for temporary file names.
pub(crate) fn unique_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The wasmtime engine with its epoch ticker and the services to offer.
#[derive(Debug)]
pub struct Runtime {
    engine: Engine,
    services: Arc<Services>,
    ticker: Arc<Ticker>,
    cache: Option<cache::CompileCache>,
    loads: Arc<Loads>,
    budget: Arc<budget::Budget>,
    quarantine: QuarantinePolicy,
    suspect_calls: u32,
    outbound: Option<Arc<dyn Outbound>>,
    variables: Arc<dyn VariableValues>,
}

/// How the runtime got the native code of the components it loaded: a
/// release kept warm by the management center is not loaded again at all.
#[derive(Debug, Default)]
pub struct Loads {
    compiled: AtomicU64,
    from_cache: AtomicU64,
}

impl Loads {
    /// Components compiled (Cranelift ran).
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Components whose native code came from the compile cache.
    pub fn from_cache(&self) -> u64 {
        self.from_cache.load(Ordering::Relaxed)
    }
}

/// Stops the epoch and instance threads when the runtime and every API
/// loaded from it are gone: deadlines keep working for as long as anything
/// can run.
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    factory: Arc<warm::Factory>,
    pool: exec::Pool,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.factory.stop();
    }
}

impl Runtime {
    pub fn new(services: Services, config: &RuntimeConfig) -> anyhow::Result<Self> {
        let mut pooling = PoolingAllocationConfig::default();
        let n = config.max_instances;
        pooling
            .total_component_instances(n)
            // wit-component adapts a module with a few helper core instances.
            .total_core_instances(n * 4)
            .total_memories(n)
            .total_tables(n * 2)
            .total_stacks(n)
            .max_memory_size(sfop_core::manifest::MAX_MEMORY_MIB as usize * (1 << 20));
        // A fresh instance per request means a reset slot per request. Where the
        // kernel can report which pages a call dirtied (pagemap_scan, Linux
        // 6.7+), keep the first pages resident and zero only those: measured
        // here, server CPU per call fell from about 58 to 30-36 us and page
        // faults from 10 to 0. Without pagemap_scan, keeping pages resident
        // costs as much as the faults it saves, so it stays off.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pooling
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(2 << 20)
                .table_keep_resident(64 << 10);
        }
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            // A trap's backtrace names where the guest was; a deep recursion
            // would otherwise walk (and the fault line print) thousands of
            // frames, on every call (ADR 0020).
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&wasm)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = Arc::new(Ticker {
            stop: stop.clone(),
            factory: warm::Factory::start(n)?,
            pool: exec::Pool::start(match config.execution_threads {
                0 => exec::default_threads(),
                n => n,
            })?,
        });
        let (ticking, tick) = (engine.clone(), config.tick);
        thread::Builder::new()
            .name("sfop-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(tick);
                    ticking.increment_epoch();
                }
            })?;
        let cache = config
            .compile_cache
            .as_deref()
            .map(|dir| cache::CompileCache::new(dir, &engine));
        Ok(Self {
            engine,
            services: Arc::new(services),
            ticker,
            cache,
            loads: Arc::new(Loads::default()),
            budget: budget::Budget::new(config.guest_memory_bytes, config.api_memory_share_percent),
            quarantine: config.quarantine,
            suspect_calls: config.suspect_calls,
            outbound: config.outbound.clone(),
            variables: config.variables.clone(),
        })
    }

    /// The platform's guest memory budget and what is live of it now.
    pub fn guest_memory(&self) -> GuestMemory {
        self.budget.snapshot()
    }

    /// How many components this runtime compiled, and loaded from the
    /// compile cache, so far.
    pub fn loads(&self) -> Arc<Loads> {
        self.loads.clone()
    }

    /// Compiles, checks and pre-links one package. Nothing of a package that
    /// fails here is ever served.
    pub fn load(&self, manifest: Manifest, component: &[u8]) -> Result<Api, LoadError> {
        self.load_with(manifest, component, &SetValues::new())
    }

    /// [`Runtime::load`], with the values an operator set through the admin
    /// API for the package's variables (they win over the environment and
    /// the config file).
    pub fn load_with(
        &self,
        manifest: Manifest,
        component: &[u8],
        set: &SetValues,
    ) -> Result<Api, LoadError> {
        let sha256 = hex::encode(Sha256::digest(component));
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, &sha256));
        let from_cache = cached.is_some();
        let compiled = match (cached, &self.cache) {
            (Some(compiled), _) => Ok(compiled),
            (None, Some(cache)) => cache.compile_and_store(&self.engine, &sha256, component),
            (None, None) => Component::new(&self.engine, component),
        }
        .map_err(|e| LoadError::InvalidComponent(format!("{e:#}")))?;
        let counter = if from_cache {
            &self.loads.from_cache
        } else {
            &self.loads.compiled
        };
        counter.fetch_add(1, Ordering::Relaxed);
        check_imports(&self.engine, &compiled, &manifest)?;
        let grants = outbound::Grants::resolve(
            &manifest,
            set,
            self.variables.as_ref(),
            self.outbound.as_ref(),
        )?;

        let mut linker = Linker::<HostState>::new(&self.engine);
        link_capabilities(&mut linker, &manifest).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&compiled)
            .and_then(ApiPre::new)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let cpu_budget_ns = u64::from(manifest.limits.cpu_ms) * 1_000_000;
        let maker = warm::Maker {
            pre,
            engine: self.engine.clone(),
            manifest: Arc::new(manifest),
            services: self.services.clone(),
            cpu_budget_ns,
            memory: budget::ApiMemory::new(self.budget.clone()),
            grants: Arc::new(grants),
        };
        Ok(Api {
            pool: self.ticker.pool.handle(),
            tracker: health::Tracker::new(self.quarantine),
            moved: AtomicU64::new(0),
            suspect: std::sync::atomic::AtomicU32::new(0),
            suspect_calls: self.suspect_calls,
            sha256,
            from_cache,
            shelf: warm::Shelf::new(maker, self.ticker.factory.clone()),
            peak_memory: AtomicU64::new(0),
            _ticker: self.ticker.clone(),
        })
    }
}

/// Every import must be an `sfop:platform` interface at a served version, and
/// every capability interface must be declared in the manifest.
fn check_imports(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<(), LoadError> {
    let allowed = || {
        manifest
            .capabilities
            .iter()
            .map(|c| c.interface())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (import, _) in component.component_type().imports(engine) {
        let Some((interface, version)) = import
            .strip_prefix(PLATFORM_PACKAGE)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split_once('@'))
        else {
            return Err(LoadError::ForbiddenImport {
                import: import.to_owned(),
                allowed: allowed(),
            });
        };
        let served = served_version(interface);
        if !version_compatible(version, served) {
            return Err(LoadError::UnsupportedVersion {
                import: import.to_owned(),
                served,
            });
        }
        if interface == "types" {
            continue; // shapes only, no functions
        }
        match Capability::from_interface(interface) {
            Some(capability) if manifest.capabilities.contains(&capability) => {}
            Some(capability) => {
                return Err(LoadError::UndeclaredCapability {
                    import: import.to_owned(),
                    capability,
                });
            }
            None => {
                return Err(LoadError::ForbiddenImport {
                    import: import.to_owned(),
                    allowed: allowed(),
                });
            }
        }
    }
    Ok(())
}

/// The version of the folder that defines `interface` (types and the
/// handler: 0.1.0; a capability: [`Capability::wit_version`]).
fn served_version(interface: &str) -> &'static str {
    Capability::from_interface(interface).map_or("0.1.0", Capability::wit_version)
}

/// Whether this platform serves `sfop:platform/{interface}@{version}`.
pub fn interface_version_supported(interface: &str, version: &str) -> bool {
    version_compatible(version, served_version(interface))
}

/// Semver-compatible with the served version: same `0.minor`, patch not newer.
fn version_compatible(version: &str, served: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut parts = v.splitn(3, '.').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    };
    match (parse(version), parse(served)) {
        (Some((0, minor, patch)), Some((0, served_minor, served_patch))) => {
            minor == served_minor && patch <= served_patch
        }
        (Some((major, minor, _)), Some((served_major, served_minor, _))) => {
            major == served_major && major > 0 && minor <= served_minor
        }
        _ => false,
    }
}

/// Links exactly the capabilities the manifest grants: an undeclared
/// interface is not even present in the linker.
fn link_capabilities(linker: &mut Linker<HostState>, manifest: &Manifest) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    for capability in &manifest.capabilities {
        match capability {
            Capability::Log => log::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Clock => clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::AuthContext => auth_context::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Kv => kv::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Ledger => ledger::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Http => http::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Config => config::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
        }
    }
    Ok(())
}

/// One call's input.
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub api_tran_id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub caller: Option<Claims>,
}

/// One call's output, as the plugin produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a release's calls got their instances. Every call gets a fresh one;
/// these say whether it was made ahead of the call or when the call came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceCounts {
    /// Instances made and waiting for a call now.
    pub ready: usize,
    /// Calls served by an instance made ahead.
    pub prepared: u64,
    /// Calls that had to make their instance (none was ready).
    pub on_request: u64,
}

/// A loaded, pre-linked API package, ready to serve calls.
pub struct Api {
    sha256: String,
    from_cache: bool,
    /// Fresh instances of this release, made ahead of their calls; its
    /// maker holds the manifest and the CPU budget.
    shelf: Arc<warm::Shelf>,
    /// The largest linear memory any call's instance reached, bytes.
    peak_memory: AtomicU64,
    /// The execution pool (ADR 0020).
    pool: tokio::runtime::Handle,
    /// Faults, their log lines and quarantine.
    tracker: health::Tracker,
    /// Calls that moved to the execution pool.
    moved: AtomicU64,
    /// Calls that start on the execution pool from the outset, because a
    /// call of this version lately moved there or failed.
    suspect: std::sync::atomic::AtomicU32,
    /// How many calls one suspicion lasts.
    suspect_calls: u32,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("name", &self.manifest().name)
            .field("version", &self.manifest().version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn manifest(&self) -> &Manifest {
        &self.shelf.maker.manifest
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The largest linear memory (bytes) that any instance of this release
    /// has reached so far: what the testbed compares with a memory budget.
    pub fn peak_memory_bytes(&self) -> u64 {
        self.peak_memory.load(Ordering::Relaxed)
    }

    /// How this release's calls got their (always fresh) instances.
    pub fn instances(&self) -> InstanceCounts {
        self.shelf.counts()
    }

    /// Whether this release is routed. Only a routed release keeps
    /// instances made ahead; one that stops being routed drops them now.
    pub fn set_serving(&self, serving: bool) {
        self.shelf.set_serving(serving);
    }

    /// Makes up to `n` fresh instances ahead, now, on the calling thread
    /// (within the runtime's budget of ready instances).
    pub fn prepare_instances(&self, n: usize) {
        self.shelf.prepare(n);
    }

    /// Whether the native code came from the compile cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Serves one call from a fresh instance. Its CPU budget starts when the
    /// call does (after the instance was made) and counts only the CPU the
    /// call's polls really ran (see `meter`). The call starts on the calling
    /// thread; if it is still running guest code at an epoch tick it moves to
    /// the execution pool (`exec`). Refused at once when the version is
    /// quarantined and full, or when the guest memory budget has no room.
    pub async fn call(&self, call: Call) -> Result<Reply, CallError> {
        // The plugin call's span, a child of the request's (ADR 0028).
        let trace = sfop_telemetry::current();
        let mut span = if trace.is_sampled() {
            let manifest = self.manifest();
            let mut span = trace.child(
                format!("plugin {}", manifest.name),
                sfop_telemetry::Kind::Internal,
            );
            span.set("sfop.api.name", manifest.name.clone());
            span.set("sfop.api.version", manifest.version.to_string());
            span.set("sfop.api_tran_id", call.api_tran_id.clone());
            span
        } else {
            sfop_telemetry::Span::none()
        };
        let result = self.call_traced(call, &span, trace).await;
        if span.is_recording() {
            match &result {
                Ok(reply) => {
                    span.set("sfop.plugin.outcome", "ok");
                    span.set("sfop.plugin.status", i64::from(reply.status));
                }
                Err(error) => {
                    let kind = FaultKind::of(error).map_or("refused", FaultKind::as_str);
                    span.set("sfop.plugin.outcome", kind);
                    span.fail(kind);
                }
            }
        }
        result
    }

    async fn call_traced(
        &self,
        call: Call,
        span: &sfop_telemetry::Span,
        trace: sfop_telemetry::Parent,
    ) -> Result<Reply, CallError> {
        let Some(_place) = self.tracker.enter() else {
            let kind = self.tracker.health().quarantined;
            return Err(CallError::Quarantined(
                kind.map(FaultKind::as_str).unwrap_or("plugin"),
            ));
        };
        // Room for the instance's smallest memory (one page): a call is not
        // refused for what it may never use; its growth is charged as it goes.
        if !self.shelf.maker.memory.admits(1 << 16) {
            return Err(CallError::MemoryBudget);
        }
        let warm::Ready {
            mut store,
            bindings,
        } = self.shelf.take().map_err(|e| self.instantiate_error(&e))?;
        store
            .data_mut()
            .begin(call.api_tran_id.clone(), call.caller);
        if store.data().grants.outbound.is_some() {
            store.data_mut().traceparent = call
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
                .map(|(_, value)| value.clone());
        }
        // Host calls are children of the plugin call's span; unsampled, the
        // request's place in its trace still goes to outbound requests.
        store.data_mut().trace = if span.is_recording() {
            span.parent().clone()
        } else {
            trace
        };
        let meter = store.data().meter.clone();
        let request = types::Request {
            api_tran_id: call.api_tran_id,
            method: call.method,
            path: call.path,
            query: call.query,
            headers: call.headers,
            body: call.body,
        };
        // Boxed so that it can move to the pool after its first polls.
        let mut running = Box::pin(async move {
            // The call's ticks count from when it starts to run, not from
            // when it was queued: a call that waited on the pool would
            // otherwise meet a stale deadline at its first instruction, be
            // metered from its start (not from a tick, as on the I/O
            // worker) and yield once for nothing.
            store.set_epoch_deadline(1);
            let outcome = bindings
                .sfop_platform0_1_0_handler()
                .call_handle(&mut store, &request)
                .await;
            (store, outcome)
        });
        // A version whose calls lately ran long or failed starts on the
        // pool: a plugin whose every call burns just under a tick (a deep
        // recursion, a trap after much work) never reaches a tick to move at.
        let suspected = self.suspect.load(Ordering::Relaxed) > 0
            && self
                .suspect
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        let here = if suspected {
            None
        } else {
            std::future::poll_fn(|cx| {
                match meter.poll(|| running.as_mut().poll(cx)) {
                    Poll::Ready(done) => Poll::Ready(Some(done)),
                    // Ran guest code from one tick to the next: it moves.
                    Poll::Pending if meter.spent_ns() >= MOVE_AFTER_NS => Poll::Ready(None),
                    // Waits for host I/O, or a tick merely caught a short
                    // call running (it was re-woken): it stays.
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        let (store, outcome) = match here {
            Some(done) => done,
            None => {
                self.moved.fetch_add(1, Ordering::Relaxed);
                // Only a call that really moved makes the version suspect
                // (rule 3): one that merely started on the pool because of
                // an earlier call does not, or a single slow call would keep
                // every later call of the version off its I/O worker for
                // good (ADR 0023).
                if !suspected {
                    self.suspect.store(self.suspect_calls, Ordering::Relaxed);
                }
                let task = self.pool.spawn({
                    let meter = meter.clone();
                    // Whether the call, had it started on its I/O worker,
                    // would have moved: the same rule as above.
                    let mut would_move = false;
                    std::future::poll_fn(move |cx| match meter.poll(|| running.as_mut().poll(cx)) {
                        Poll::Ready(done) => Poll::Ready((done, would_move)),
                        Poll::Pending => {
                            would_move |= meter.spent_ns() >= MOVE_AFTER_NS;
                            Poll::Pending
                        }
                    })
                });
                let (done, would_move) = exec::Moved(task)
                    .await
                    .map_err(|e| CallError::Trap(format!("execution task ended: {e}")))?;
                // Started on the pool and ran as long as a call that moves:
                // the version stays suspect.
                if suspected && would_move {
                    self.suspect.store(self.suspect_calls, Ordering::Relaxed);
                }
                done
            }
        };
        let result = self.outcome(store.data(), outcome);
        if let Err(error) = &result {
            self.fault(store.data(), error);
        }
        self.shelf.retire(store);
        result
    }

    /// Counts a plugin fault towards quarantine and logs it, at a bounded
    /// rate per version, with the guest's panic message when it left one.
    fn fault(&self, state: &HostState, error: &CallError) {
        let Some(kind) = FaultKind::of(error) else {
            return;
        };
        self.suspect.store(self.suspect_calls, Ordering::Relaxed);
        let Some(suppressed) = self.tracker.fault(kind) else {
            return;
        };
        let manifest = self.manifest();
        tracing::warn!(
            target: "sfop::plugin",
            api = manifest.name.as_str(),
            version = %manifest.version,
            api_tran_id = state.api_tran_id(),
            fault = kind.as_str(),
            panic = state.panic_message.as_deref(),
            suppressed,
            "{error}"
        );
    }

    /// This version's faults, their log lines and quarantine.
    pub fn health(&self) -> Health {
        self.tracker.health()
    }

    /// Linear memory this version's live instances hold now, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.shelf.maker.memory.live()
    }

    /// The platform's guest memory budget and what is live of it now (the
    /// same for every release of one runtime).
    pub fn guest_memory(&self) -> GuestMemory {
        self.shelf.maker.memory.budget_snapshot()
    }

    /// Calls of this version that moved to the execution pool.
    pub fn moved_calls(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// An instance that could not be made: a start function that ran out of
    /// its CPU budget is the plugin's doing; anything else (no pool slot) is
    /// the platform's.
    fn instantiate_error(&self, e: &wasmtime::Error) -> CallError {
        if e.downcast_ref::<budget::BudgetFull>().is_some() {
            return CallError::MemoryBudget;
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => CallError::Deadline(self.manifest().limits.cpu_ms),
            _ => CallError::Instantiate(format!("{e:#}")),
        }
    }

    fn outcome(
        &self,
        state: &HostState,
        outcome: wasmtime::Result<types::Response>,
    ) -> Result<Reply, CallError> {
        let limits = &self.manifest().limits;
        self.peak_memory.fetch_max(
            u64::try_from(state.limits.peak_bytes()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match outcome {
            Ok(reply) if reply.body.len() > limits.max_response_kib as usize * 1024 => {
                Err(CallError::ResponseTooLarge(limits.max_response_kib))
            }
            Ok(reply) if (100..=599).contains(&reply.status) => Ok(Reply {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            }),
            Ok(reply) => Err(CallError::BadStatus(reply.status)),
            Err(_) if state.deadline_hit() => Err(CallError::Deadline(limits.cpu_ms)),
            Err(_) if state.limits.memory_hit() => {
                Err(CallError::MemoryExhausted(limits.memory_mib))
            }
            Err(_) if state.limits.budget_hit() => Err(CallError::MemoryBudget),
            Err(e) if e.downcast_ref::<wasmtime::Trap>().is_some() => {
                Err(CallError::Trap(format!("{e:#}")))
            }
            Err(e) => Err(CallError::Instantiate(format!("{e:#}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_semver_for_zero_majors() {
        assert!(version_compatible("0.1.0", "0.1.0"));
        assert!(!version_compatible("0.1.1", "0.1.0")); // newer than served
        assert!(!version_compatible("0.2.0", "0.1.0"));
        assert!(!version_compatible("1.0.0", "0.1.0"));
        assert!(!version_compatible("0.1", "0.1.0"));
        assert!(!version_compatible("x", "0.1.0"));
    }

    #[test]
    fn each_interface_is_served_at_the_version_that_defines_it() {
        assert!(interface_version_supported("ledger", "0.1.0"));
        assert!(interface_version_supported("handler", "0.1.0"));
        assert!(!interface_version_supported("ledger", "0.2.0"));
        assert!(interface_version_supported("http", "0.2.0"));
        assert!(interface_version_supported("config", "0.2.0"));
        assert!(!interface_version_supported("http", "0.1.0"));
    }
}
