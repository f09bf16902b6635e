//! The CPU time a plugin's instance really ran, read from the running
//! thread's own CPU clock (ADR 0018).
//!
//! Epoch ticks say only that wall-clock time passed. On a busy machine a
//! worker thread that runs a plugin can be off its core for most of a tick,
//! and a store's instantiation can wait for a pool lock; counting ticks then
//! charges a plugin for time it did not run, and valid calls are cut short.
//! The meter charges what the thread's CPU clock says instead. It costs
//! nothing until the first tick of a call or an instantiation: short calls
//! (nearly all) never read a clock. From the first tick on, the meter reads
//! the clock at every tick and at both ends of every poll of the call's
//! future (the future moves between worker threads, each with its own clock,
//! so only a poll's own stretch is measured on one clock).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The CPU time charged to one call (or one instantiation).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// A tick came: the clock is read from now on.
    armed: AtomicBool,
    /// CPU time charged so far, ns.
    spent: AtomicU64,
    /// The running thread's CPU clock when the current stretch began, ns.
    since: AtomicU64,
}

impl Meter {
    /// Starts over for a new call: nothing charged, no clock read.
    pub(crate) fn reset(&self) {
        self.armed.store(false, Ordering::Relaxed);
        self.spent.store(0, Ordering::Relaxed);
    }

    /// At a tick, while the instance runs on this thread: charges the stretch
    /// since the last reading and returns everything charged so far. The
    /// first tick only starts the measure (what ran before it, at most one
    /// tick, is not charged).
    pub(crate) fn tick(&self) -> u64 {
        let now = thread_cpu_ns();
        if !self.armed.swap(true, Ordering::Relaxed) {
            self.since.store(now, Ordering::Relaxed);
            return self.spent.load(Ordering::Relaxed);
        }
        let stretch = now.saturating_sub(self.since.swap(now, Ordering::Relaxed));
        self.spent.fetch_add(stretch, Ordering::Relaxed) + stretch
    }

    /// Runs one poll of the call's future on this thread: its stretch is
    /// charged; the time until the next poll (queued behind other requests,
    /// or waiting for I/O) is not the call's.
    pub(crate) fn poll<T>(&self, poll: impl FnOnce() -> T) -> T {
        if !self.armed.load(Ordering::Relaxed) {
            let out = poll();
            // Armed during this poll: charge from the tick that armed it.
            if self.armed.load(Ordering::Relaxed) {
                self.charge_stretch();
            }
            return out;
        }
        self.since.store(thread_cpu_ns(), Ordering::Relaxed);
        let out = poll();
        self.charge_stretch();
        out
    }

    fn charge_stretch(&self) {
        let stretch = thread_cpu_ns().saturating_sub(self.since.load(Ordering::Relaxed));
        self.spent.fetch_add(stretch, Ordering::Relaxed);
    }

    /// CPU time charged so far, ns.
    pub(crate) fn spent_ns(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }
}

/// The CPU time the calling thread has run, ns.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes only the `timespec` passed, which is
    // initialised and outlives the call; CLOCK_THREAD_CPUTIME_ID names the
    // calling thread's clock, which always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Elsewhere, a monotonic clock stands in (wall-clock time, as before).
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_cpu_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn burn(cpu: Duration) {
        let start = thread_cpu_ns();
        let mut n = 1u64;
        while thread_cpu_ns().saturating_sub(start) < cpu.as_nanos() as u64 {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    /// Ticks that come while the thread does not run (asleep here; on a
    /// busy machine, off its core or queued) charge nothing.
    #[test]
    fn time_off_the_core_is_not_charged() {
        let meter = Meter::default();
        let started = Instant::now();
        meter.poll(|| {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(2));
                assert!(meter.tick() < 5_000_000, "charged while asleep");
            }
        });
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(meter.spent_ns() < 5_000_000, "{} ns", meter.spent_ns());
    }

    /// Running is charged, across polls, and not the gaps between them.
    #[test]
    fn running_is_charged_poll_by_poll() {
        let meter = Meter::default();
        meter.poll(|| {
            meter.tick(); // arms
            burn(Duration::from_millis(10));
            assert!(meter.tick() >= 10_000_000);
        });
        std::thread::sleep(Duration::from_millis(30)); // queued between polls
        meter.poll(|| burn(Duration::from_millis(10)));
        let spent = meter.spent_ns();
        assert!((20_000_000..30_000_000).contains(&spent), "{spent} ns");

        meter.reset();
        assert_eq!(meter.spent_ns(), 0);
        meter.poll(|| burn(Duration::from_millis(5)));
        assert_eq!(meter.spent_ns(), 0, "nothing is read before the first tick");
    }
}
