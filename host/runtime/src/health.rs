//! How one API version's calls are faring (ADR 0020): its plugin faults
//! (CPU deadline, memory cap or budget, traps), logged at a bounded rate
//! with a count of the lines left out, and quarantine: a version whose calls
//! keep failing is throttled to a few calls at once for a while.
//!
//! A call that ends well costs one relaxed add; only faults read a clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::CallError;

/// When a version is quarantined, and what quarantine allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Plugin faults within one window that quarantine a version, at least…
    pub min_faults: u32,
    /// …and at least this share of its calls in that window, percent.
    pub fault_percent: u8,
    /// The window faults are counted in.
    pub window: Duration,
    /// How long quarantine lasts after the last window that called for it.
    pub hold: Duration,
    /// Calls of a quarantined version running at once; more are refused.
    pub concurrency: usize,
    /// Fault log lines per version and window; the rest are counted.
    pub log_lines: u32,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            min_faults: 20,
            fault_percent: 50,
            window: Duration::from_secs(10),
            hold: Duration::from_secs(30),
            concurrency: 2,
            log_lines: 10,
        }
    }
}

/// The kinds of plugin fault that count towards quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Deadline,
    Memory,
    Trap,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::Trap => "trap",
        }
    }

    pub(crate) fn of(error: &CallError) -> Option<Self> {
        match error {
            CallError::Deadline(_) => Some(FaultKind::Deadline),
            CallError::MemoryExhausted(_) | CallError::MemoryBudget => Some(FaultKind::Memory),
            CallError::Trap(_) => Some(FaultKind::Trap),
            _ => None,
        }
    }
}

/// What the operator sees of a version's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// Throttled now, and by which fault most calls of the window ended.
    pub quarantined: Option<FaultKind>,
    /// Times this version was put in quarantine.
    pub quarantines: u64,
    /// Plugin faults so far.
    pub faults: u64,
    /// Fault log lines left out so far.
    pub suppressed_logs: u64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    faults: u32,
    by_kind: [u32; 3],
    logged: u32,
    suppressed: u64,
    /// Quarantined until then, for the most frequent kind.
    until: Option<(Instant, FaultKind)>,
}

#[derive(Debug)]
pub(crate) struct Tracker {
    policy: QuarantinePolicy,
    /// Calls since the window began (also counted on success: one add).
    calls: AtomicU64,
    quarantined: AtomicBool,
    running: AtomicUsize,
    window: Mutex<Window>,
    faults: AtomicU64,
    quarantines: AtomicU64,
    suppressed: AtomicU64,
}

/// A place of a quarantined version's few; given back when dropped.
pub(crate) struct Place<'a>(Option<&'a AtomicUsize>);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(running) = self.0 {
            running.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Tracker {
    pub(crate) fn new(policy: QuarantinePolicy) -> Self {
        Self {
            policy,
            calls: AtomicU64::new(0),
            quarantined: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            window: Mutex::new(Window {
                started: Instant::now(),
                faults: 0,
                by_kind: [0; 3],
                logged: 0,
                suppressed: 0,
                until: None,
            }),
            faults: AtomicU64::new(0),
            quarantines: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// A place for one call: always, unless the version is quarantined and
    /// its few places are taken (`None`: refuse the call).
    pub(crate) fn enter(&self) -> Option<Place<'_>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.quarantined.load(Ordering::Relaxed) {
            return Some(Place(None));
        }
        if self.still_quarantined().is_none() {
            return Some(Place(None));
        }
        if self.running.fetch_add(1, Ordering::Relaxed) < self.policy.concurrency {
            Some(Place(Some(&self.running)))
        } else {
            self.running.fetch_sub(1, Ordering::Relaxed);
            // A refused call ran nothing: it does not dilute the share of
            // faults that keeps a failing version in quarantine.
            self.calls.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    fn still_quarantined(&self) -> Option<FaultKind> {
        let mut window = self.window.lock().ok()?;
        match window.until {
            Some((until, kind)) if Instant::now() < until => Some(kind),
            Some(_) => {
                window.until = None;
                self.quarantined.store(false, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    /// Counts a plugin fault; returns whether to log it and, if so, how
    /// many lines were left out before it.
    pub(crate) fn fault(&self, kind: FaultKind) -> Option<u64> {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let Ok(mut w) = self.window.lock() else {
            return None;
        };
        let now = Instant::now();
        if now.duration_since(w.started) >= self.policy.window {
            w.started = now;
            w.faults = 0;
            w.by_kind = [0; 3];
            w.logged = 0;
            self.calls.store(1, Ordering::Relaxed);
        }
        w.faults += 1;
        w.by_kind[kind as usize] += 1;
        let calls = self.calls.load(Ordering::Relaxed).max(1);
        if w.faults >= self.policy.min_faults
            && u64::from(w.faults) * 100 >= calls * u64::from(self.policy.fault_percent)
        {
            let worst = [FaultKind::Deadline, FaultKind::Memory, FaultKind::Trap]
                .into_iter()
                .max_by_key(|k| w.by_kind[*k as usize])
                .unwrap_or(kind);
            if w.until.is_none() {
                self.quarantines.fetch_add(1, Ordering::Relaxed);
            }
            w.until = Some((now + self.policy.hold, worst));
            self.quarantined.store(true, Ordering::Relaxed);
        }
        if w.logged < self.policy.log_lines {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub(crate) fn health(&self) -> Health {
        Health {
            quarantined: if self.quarantined.load(Ordering::Relaxed) {
                self.still_quarantined()
            } else {
                None
            },
            quarantines: self.quarantines.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            suppressed_logs: self.suppressed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> QuarantinePolicy {
        QuarantinePolicy {
            min_faults: 5,
            fault_percent: 50,
            window: Duration::from_secs(60),
            hold: Duration::from_secs(60),
            concurrency: 1,
            log_lines: 3,
        }
    }

    #[test]
    fn repeated_faults_quarantine_and_throttle_a_version() {
        let t = Tracker::new(policy());
        for _ in 0..4 {
            let _p = t.enter().unwrap();
            t.fault(FaultKind::Deadline);
        }
        assert_eq!(t.health().quarantined, None, "4 faults are below 5");
        let _p = t.enter().unwrap();
        t.fault(FaultKind::Deadline);
        assert_eq!(t.health().quarantined, Some(FaultKind::Deadline));
        assert_eq!(t.health().quarantines, 1);
        let first = t.enter();
        assert!(first.is_some());
        assert!(t.enter().is_none(), "one call at a time in quarantine");
        drop(first);
        assert!(t.enter().is_some());
    }

    #[test]
    fn a_few_faults_among_many_good_calls_do_not_quarantine() {
        let t = Tracker::new(policy());
        for _ in 0..100 {
            drop(t.enter());
        }
        for _ in 0..10 {
            t.fault(FaultKind::Trap);
        }
        assert_eq!(t.health().quarantined, None, "10 of 110 calls");
    }

    #[test]
    fn fault_logs_are_bounded_per_window_and_count_what_they_left_out() {
        let t = Tracker::new(policy());
        let logged: Vec<Option<u64>> = (0..6).map(|_| t.fault(FaultKind::Trap)).collect();
        assert_eq!(logged, [Some(0), Some(0), Some(0), None, None, None]);
        assert_eq!(t.health().suppressed_logs, 3);
    }
}
