//! Fresh instances made before their request arrives, and used stores torn
//! down after their reply has left: both off the request's path.
//!
//! Every call still gets an instance that nothing ran in before and that is
//! thrown away after that one call. What moves is *when* the two costly ends
//! of an instance's life happen. Instantiating (pool slot, vmctx, the
//! adapter's core instances, lazy tables) and resetting a slot on drop
//! (dirty-page scan and zeroing) take about as long as the call itself for a
//! small API. One `sfop-instances` thread per runtime does both, in batches,
//! while the gateway's workers serve; a worker only pops a ready instance
//! and pushes the used store back.
//!
//! Bounds keep this from changing what the pool can serve: each release
//! keeps at most [`DEPTH`] instances ready, all releases together at most a
//! quarter of the pool's slots, and when the thread falls behind (too many
//! stores waiting to be dropped, or no ready instance) the worker simply
//! instantiates or drops inline, as it did before.
//!
//! The thread runs under `SCHED_BATCH` (ADR 0014): it gets its share of CPU
//! but never preempts a worker or client in the middle of a request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::Duration;

use wasmtime::Store;

use sfop_core::Manifest;

use crate::Services;
use crate::bindings::{Api as Bindings, ApiPre};
use crate::host::HostState;

/// Instances each release keeps ready.
pub(crate) const DEPTH: usize = 64;
/// Used stores waiting for the thread before a worker wakes it.
const BATCH: usize = 32;
/// How long the thread sleeps with nothing to do before it drops what is
/// waiting anyway, so that a quiet gateway does not hold used slots.
const IDLE: Duration = Duration::from_millis(20);
/// A shelf nobody took from for this long gives way when another needs the
/// budget.
const EVICT_IDLE_MS: u64 = 100;
/// A shelf nobody took from for this long is given back to the pool.
const RELEASE_IDLE_MS: u64 = 5_000;

/// One instance ready for one call.
pub(crate) struct Ready {
    pub(crate) store: Store<HostState>,
    pub(crate) bindings: Bindings,
}

/// What a release needs to make instances of itself.
pub(crate) struct Maker {
    pub(crate) pre: ApiPre<HostState>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) services: Arc<Services>,
    /// CPU time an instantiation, and then separately its call, may run, ns.
    pub(crate) cpu_budget_ns: u64,
    /// This release's part of the guest memory budget.
    pub(crate) memory: Arc<crate::budget::ApiMemory>,
    /// Allowed origins, variables, the outbound client (ADR 0027).
    pub(crate) grants: Arc<crate::outbound::Grants>,
}

impl Maker {
    /// A new instance. Instantiation runs no guest code of an sfop plugin
    /// except the component adapter's table set-up, but a start function
    /// could: it gets its own CPU budget, as large as a call's and measured
    /// on the thread's CPU clock, so that neither waiting for a pool slot
    /// nor a busy machine counts, and nothing of it is charged to the call
    /// (the call's budget starts in [`HostState::begin`]).
    pub(crate) fn make(&self) -> wasmtime::Result<Ready> {
        let state = HostState::new(
            self.manifest.clone(),
            self.services.clone(),
            self.cpu_budget_ns,
            self.memory.clone(),
            self.grants.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // One callback for the store's life (no box per call): it reads
        // which phase the instance is in.
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_epoch_tick()));
        store.set_epoch_deadline(1);
        let bindings = crate::bindings::instantiate_now(&self.pre, &mut store)?;
        Ok(Ready { store, bindings })
    }
}

/// The ready instances of one release.
pub(crate) struct Shelf {
    pub(crate) maker: Maker,
    ready: Mutex<Vec<Ready>>,
    /// A refill of this shelf is queued or running.
    refilling: AtomicBool,
    /// The release is routed; one that is not keeps nothing ready.
    serving: AtomicBool,
    factory: Arc<Factory>,
    /// Calls served by an instance made ahead, and by one made on request.
    prepared: AtomicU64,
    on_request: AtomicU64,
    /// A call took an instance since the thread last looked; the thread
    /// turns it into `last_use_ms`, so that taking reads no clock.
    taken: AtomicBool,
    /// When the thread last saw the shelf used, ms on the factory's clock.
    last_use_ms: AtomicU64,
}

impl Shelf {
    pub(crate) fn new(maker: Maker, factory: Arc<Factory>) -> Arc<Self> {
        Arc::new(Self {
            maker,
            ready: Mutex::new(Vec::with_capacity(DEPTH)),
            refilling: AtomicBool::new(false),
            serving: AtomicBool::new(true),
            factory,
            prepared: AtomicU64::new(0),
            on_request: AtomicU64::new(0),
            taken: AtomicBool::new(false),
            last_use_ms: AtomicU64::new(0),
        })
    }

    /// An instance for one call: a ready one if there is one, else made now.
    /// Asks for a refill when the shelf runs low.
    pub(crate) fn take(self: &Arc<Self>) -> wasmtime::Result<Ready> {
        self.taken.store(true, Ordering::Relaxed);
        let (ready, left) = match self.ready.lock() {
            Ok(mut shelf) => {
                let ready = shelf.pop();
                (ready, shelf.len())
            }
            Err(_) => (None, 0),
        };
        if left <= DEPTH / 2
            && self.serving.load(Ordering::Relaxed)
            && !self.refilling.swap(true, Ordering::AcqRel)
        {
            self.factory.refill(Arc::downgrade(self));
        }
        match ready {
            Some(ready) => {
                self.factory.unreserve(1);
                self.prepared.fetch_add(1, Ordering::Relaxed);
                Ok(ready)
            }
            None => {
                self.on_request.fetch_add(1, Ordering::Relaxed);
                self.maker.make()
            }
        }
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
        if !serving {
            self.drain();
        }
    }

    /// Makes up to `n` instances now, on the calling thread, within the
    /// budget: a release about to replace a busy one starts warm.
    pub(crate) fn prepare(&self, n: usize) {
        // Counts as use: the instances are for the traffic about to come.
        self.taken.store(true, Ordering::Relaxed);
        for _ in 0..n.min(DEPTH) {
            if !self.factory.reserve() || !self.stock_one() {
                break;
            }
        }
    }

    /// Makes one instance under a reservation already held and puts it on
    /// the shelf; gives the reservation back when it cannot.
    fn stock_one(&self) -> bool {
        if !self.maker.memory.room_for_ready() {
            self.factory.unreserve(1);
            return false;
        }
        let ready = match self.maker.make() {
            Ok(ready) => ready,
            Err(e) => {
                // The call that takes an instance will make its own and
                // report the error as that call's outcome.
                tracing::debug!(error = %e, "could not prepare an instance");
                self.factory.unreserve(1);
                return false;
            }
        };
        match self.ready.lock() {
            // Not for a release that stopped being routed meanwhile.
            Ok(mut shelf) if self.serving.load(Ordering::Relaxed) => {
                shelf.push(ready);
                true
            }
            _ => {
                self.factory.unreserve(1);
                false
            }
        }
    }

    /// Gives every ready instance back to the pool.
    fn drain(&self) {
        let dropped = match self.ready.lock() {
            Ok(mut shelf) => std::mem::take(&mut *shelf),
            Err(_) => Vec::new(),
        };
        self.factory.unreserve(dropped.len());
    }

    /// How long no call took from this shelf, as far as the thread knows.
    fn idle_for_ms(&self, now_ms: u64) -> u64 {
        if self.taken.swap(false, Ordering::Relaxed) {
            self.last_use_ms.store(now_ms, Ordering::Relaxed);
        }
        now_ms.saturating_sub(self.last_use_ms.load(Ordering::Relaxed))
    }

    fn is_empty(&self) -> bool {
        self.ready.lock().map_or(true, |s| s.is_empty())
    }

    /// Instances ready now, and how calls were served so far.
    pub(crate) fn counts(&self) -> crate::InstanceCounts {
        crate::InstanceCounts {
            ready: self.ready.lock().map_or(0, |s| s.len()),
            prepared: self.prepared.load(Ordering::Relaxed),
            on_request: self.on_request.load(Ordering::Relaxed),
        }
    }

    /// Hands a used store to the thread, to be dropped off the request path.
    pub(crate) fn retire(&self, store: Store<HostState>) {
        self.factory.retire(store);
    }

    /// Makes instances until the shelf is full or the runtime-wide budget
    /// of ready instances is spent. Runs on the factory thread.
    fn refill(&self) {
        while self.ready.lock().is_ok_and(|s| s.len() < DEPTH)
            && self.serving.load(Ordering::Relaxed)
            && !self.factory.stopping()
            // Instances follow the traffic: when the budget is spent, shelves
            // that nobody took from lately give theirs back first.
            && (self.factory.reserve()
                || (self.factory.evict_idle(Some(self), EVICT_IDLE_MS) > 0
                    && self.factory.reserve()))
            && self.stock_one()
        {}
        self.refilling.store(false, Ordering::Release);
    }
}

impl Drop for Shelf {
    fn drop(&mut self) {
        if let Ok(shelf) = self.ready.get_mut() {
            self.factory.unreserve(shelf.len());
        }
    }
}

#[derive(Default)]
struct Work {
    used: Vec<Store<HostState>>,
    refill: Vec<Weak<Shelf>>,
    asleep: bool,
    stop: bool,
}

/// The runtime's `sfop-instances` thread and its inbox.
pub(crate) struct Factory {
    work: Mutex<Work>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    wake: Condvar,
    /// Instances on all shelves.
    shelved: AtomicUsize,
    /// Most instances all shelves may hold together.
    budget: usize,
    /// Most used stores waiting to be dropped; beyond, workers drop their own.
    max_waiting: usize,
    /// Every shelf the thread has filled, to give back idle ones.
    shelves: Mutex<Vec<Weak<Shelf>>>,
    /// The factory's clock, for when shelves were last used.
    epoch: std::time::Instant,
}

impl std::fmt::Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory")
            .field("shelved", &self.shelved.load(Ordering::Relaxed))
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Factory {
    /// Starts the thread; it ends when [`Factory::stop`] is called.
    pub(crate) fn start(max_instances: u32) -> std::io::Result<Arc<Self>> {
        let factory = Arc::new(Self {
            work: Mutex::new(Work::default()),
            thread: Mutex::new(None),
            wake: Condvar::new(),
            shelved: AtomicUsize::new(0),
            budget: max_instances as usize / 4,
            max_waiting: max_instances as usize / 4,
            shelves: Mutex::new(Vec::new()),
            epoch: std::time::Instant::now(),
        });
        let worker = factory.clone();
        let (started, policy_set) = std::sync::mpsc::sync_channel(1);
        let handle = thread::Builder::new()
            .name("sfop-instances".into())
            .spawn(move || {
                batch_policy();
                let _ = started.send(());
                worker.run();
            })?;
        // The thread runs under its policy before the runtime is used.
        let _ = policy_set.recv();
        if let Ok(mut thread) = factory.thread.lock() {
            *thread = Some(handle);
        }
        Ok(factory)
    }

    /// Ends the thread and drops every store it held before returning: the
    /// services those stores reach (the sled store among them) are released
    /// when the runtime is, not some time later.
    pub(crate) fn stop(&self) {
        let waiting = match self.work.lock() {
            Ok(mut work) => {
                work.stop = true;
                work.refill.clear();
                std::mem::take(&mut work.used)
            }
            Err(_) => Vec::new(),
        };
        self.wake.notify_one();
        drop(waiting);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle
            && handle.thread().id() != thread::current().id()
        {
            let _ = handle.join();
        }
    }

    fn stopping(&self) -> bool {
        self.work.lock().map_or(true, |w| w.stop)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Drains the shelves (other than `keep`) that no call took from for
    /// `idle_ms`; returns how many were drained. Forgets dropped shelves.
    fn evict_idle(&self, keep: Option<&Shelf>, idle_ms: u64) -> usize {
        let now = self.now_ms();
        let idle: Vec<Arc<Shelf>> = match self.shelves.lock() {
            Ok(mut shelves) => {
                shelves.retain(|s| s.strong_count() > 0);
                shelves
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|s| keep.is_none_or(|keep| !std::ptr::eq(&**s, keep)))
                    .filter(|s| s.idle_for_ms(now) >= idle_ms && !s.is_empty())
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for shelf in &idle {
            shelf.drain();
        }
        idle.len()
    }

    fn any_shelved(&self) -> bool {
        self.shelved.load(Ordering::Relaxed) > 0
    }

    /// Gives back `n` places of the budget (instances taken, dropped, or
    /// never made).
    fn unreserve(&self, n: usize) {
        self.shelved.fetch_sub(n, Ordering::Relaxed);
    }

    fn reserve(&self) -> bool {
        self.shelved
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.budget).then_some(n + 1)
            })
            .is_ok()
    }

    fn refill(&self, shelf: Weak<Shelf>) {
        let Ok(mut work) = self.work.lock() else {
            return;
        };
        work.refill.push(shelf);
        self.wake_if_asleep(work);
    }

    fn retire(&self, store: Store<HostState>) {
        let Ok(mut work) = self.work.lock() else {
            return; // dropped here
        };
        if work.used.len() >= self.max_waiting || work.stop {
            drop(work);
            drop(store);
            return;
        }
        work.used.push(store);
        if work.used.len() >= BATCH {
            self.wake_if_asleep(work);
        }
    }

    fn wake_if_asleep(&self, mut work: std::sync::MutexGuard<'_, Work>) {
        if work.asleep {
            work.asleep = false;
            drop(work);
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut used = Vec::new();
        let mut refill = Vec::new();
        loop {
            {
                let Ok(mut work) = self.work.lock() else {
                    return;
                };
                if work.refill.is_empty() && work.used.len() < BATCH && !work.stop {
                    work.asleep = true;
                    // Used stores below a batch are dropped after a pause,
                    // and shelves nobody uses are given back after a while,
                    // so that a quiet gateway does not hold slots.
                    let woken = if !work.used.is_empty() {
                        self.wake.wait_timeout(work, IDLE).ok().map(|(w, _)| w)
                    } else if self.any_shelved() {
                        self.wake
                            .wait_timeout(work, Duration::from_millis(RELEASE_IDLE_MS))
                            .ok()
                            .map(|(w, _)| w)
                    } else {
                        self.wake.wait(work).ok()
                    };
                    let Some(mut woken) = woken else {
                        return;
                    };
                    woken.asleep = false;
                    work = woken;
                }
                if work.stop {
                    return;
                }
                std::mem::swap(&mut used, &mut work.used);
                std::mem::swap(&mut refill, &mut work.refill);
            }
            // Drop first: that frees the pool slots a refill needs.
            used.clear();
            for shelf in refill.drain(..) {
                if let Some(shelf) = shelf.upgrade() {
                    if let Ok(mut shelves) = self.shelves.lock()
                        && !shelves.iter().any(|s| std::ptr::eq(s.as_ptr(), &*shelf))
                    {
                        shelves.push(Arc::downgrade(&shelf));
                    }
                    shelf.refill();
                }
            }
            if self.any_shelved() {
                self.evict_idle(None, RELEASE_IDLE_MS);
            }
        }
    }
}

/// Puts the calling thread (the instance thread) under `SCHED_BATCH`: the
/// same share of CPU as any other thread, but its wake-ups do not preempt a
/// running one. Work done ahead of requests then waits for a free moment
/// instead of interrupting the worker or the client mid-request. A lower
/// priority (nice, `SCHED_IDLE`) was tried and rejected: a starved instance
/// thread holding one of wasmtime's pool locks stalls the workers (ADR 0014).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads the `sched_param` passed, which
    // is initialised and outlives the call; pid 0 names the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "SCHED_BATCH refused; the instance thread keeps the default policy"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn batch_policy() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Scheduling policy 3 is `SCHED_BATCH` in `/proc/<pid>/task/<tid>/sched`.
    fn batch_instance_threads() -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "sfop-instances")
            })
            .filter(|task| {
                std::fs::read_to_string(task.path().join("sched")).is_ok_and(|sched| {
                    sched.lines().any(|line| {
                        line.starts_with("policy")
                            && line.rsplit(':').next().map(str::trim) == Some("3")
                    })
                })
            })
            .count()
    }

    #[test]
    fn the_instance_thread_runs_as_a_batch_thread() {
        let factory = Factory::start(16).expect("thread starts");
        assert!(
            batch_instance_threads() >= 1,
            "no sfop-instances thread runs under SCHED_BATCH"
        );
        factory.stop();
    }
}
