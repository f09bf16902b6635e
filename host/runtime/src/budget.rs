//! The platform-wide budget of guest memory (ADR 0020): the sum of the
//! linear memories of every live instance (ready on a shelf or serving a
//! call), with a share per API version. Each store's `ResourceLimiter`
//! charges what its memory grows by and gives it back when the store is
//! dropped; a growth that would pass either bound fails (the call ends with
//! [`crate::CallError::MemoryBudget`]), and a call is refused before it takes
//! an instance when its API, or the platform, has no room left.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A growth refused by the budget (the limiter's error).
#[derive(Debug, thiserror::Error)]
#[error("guest memory budget reached")]
pub(crate) struct BudgetFull;

/// The platform's guest memory: what is live and the bound.
#[derive(Debug)]
pub(crate) struct Budget {
    live: AtomicU64,
    limit: u64,
    /// The most one API version's instances may hold together.
    api_share: u64,
    refused: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64, api_share_percent: u8) -> Arc<Self> {
        let share = u64::from(api_share_percent.clamp(1, 100));
        Arc::new(Self {
            live: AtomicU64::new(0),
            limit,
            api_share: limit / 100 * share,
            refused: AtomicU64::new(0),
        })
    }

    pub(crate) fn snapshot(&self) -> crate::GuestMemory {
        crate::GuestMemory {
            live_bytes: self.live.load(Ordering::Relaxed),
            limit_bytes: self.limit,
            api_share_bytes: self.api_share,
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// One API version's part of the budget.
#[derive(Debug)]
pub(crate) struct ApiMemory {
    live: AtomicU64,
    budget: Arc<Budget>,
}

impl ApiMemory {
    pub(crate) fn new(budget: Arc<Budget>) -> Arc<Self> {
        Arc::new(Self {
            live: AtomicU64::new(0),
            budget,
        })
    }

    pub(crate) fn budget_snapshot(&self) -> crate::GuestMemory {
        self.budget.snapshot()
    }

    /// Bytes this API version's live instances hold.
    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether a new call may start: its API and the platform each have
    /// room for at least `need` more bytes. Two relaxed loads.
    pub(crate) fn admits(&self, need: u64) -> bool {
        let api = self.live.load(Ordering::Relaxed);
        let all = self.budget.live.load(Ordering::Relaxed);
        let ok = api.saturating_add(need) <= self.budget.api_share
            && all.saturating_add(need) <= self.budget.limit;
        if !ok {
            self.budget.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Whether a shelf may make one more ready instance: ready instances
    /// take at most half of the API's share and of the platform's limit
    /// (together with what calls hold), so that a call always finds room
    /// to grow and a full shelf never refuses the calls it is there for.
    pub(crate) fn room_for_ready(&self) -> bool {
        self.live.load(Ordering::Relaxed) < self.budget.api_share / 2
            && self.budget.live.load(Ordering::Relaxed) < self.budget.limit / 2
    }

    /// Charges `bytes` more, unless that passes the API's share or the
    /// platform's limit (then nothing is charged). Neither count is ever
    /// seen past its bound, not even for an instant, so a growth that fails
    /// cannot make [`Self::admits`] refuse a call that fits.
    pub(crate) fn charge(&self, bytes: u64) -> bool {
        let within = |bound: u64| move |live: u64| live.checked_add(bytes).filter(|n| *n <= bound);
        let charged = self
            .live
            .fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                within(self.budget.api_share),
            )
            .is_ok()
            && (self
                .budget
                .live
                .fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    within(self.budget.limit),
                )
                .is_ok()
                || {
                    self.live.fetch_sub(bytes, Ordering::Relaxed);
                    false
                });
        if !charged {
            self.budget.refused.fetch_add(1, Ordering::Relaxed);
        }
        charged
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_share_or_the_limit_is_refused_and_nothing_is_charged() {
        let budget = Budget::new(100 << 20, 50);
        let a = ApiMemory::new(budget.clone());
        let b = ApiMemory::new(budget.clone());
        assert!(a.charge(40 << 20));
        assert!(!a.charge(20 << 20), "past a's share of 50 MiB");
        assert_eq!(a.live(), 40 << 20);
        assert!(b.charge(50 << 20));
        assert!(!b.admits(1 << 20), "b's share is full");
        assert!(a.admits(10 << 20));
        assert!(!a.admits(11 << 20), "the platform has 10 MiB left");
        a.release(40 << 20);
        assert_eq!(budget.snapshot().live_bytes, 50 << 20);
        assert_eq!(budget.snapshot().refused, 3);
    }

    #[test]
    fn a_failed_growth_is_never_seen_past_the_bound() {
        let budget = Budget::new(100 << 20, 50);
        let a = ApiMemory::new(budget.clone());
        assert!(a.charge((50 << 20) - (1 << 16)));
        // One thread keeps trying a growth that cannot fit; another keeps
        // asking for the 64 KiB that is left. With "add, then look" the
        // first made the second refuse.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let grower = {
            let (a, stop) = (a.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    assert!(!a.charge(1 << 20));
                }
            })
        };
        let refused = (0..200_000).filter(|_| !a.admits(1 << 16)).count();
        stop.store(true, Ordering::Relaxed);
        assert!(grower.join().is_ok());
        assert_eq!(refused, 0, "calls refused while the share had room");
        assert_eq!(a.live(), (50 << 20) - (1 << 16));
    }

    #[test]
    fn ready_instances_leave_half_of_the_share_and_of_the_limit() {
        let budget = Budget::new(100 << 20, 50);
        let a = ApiMemory::new(budget.clone());
        let b = ApiMemory::new(budget.clone());
        assert!(a.room_for_ready());
        assert!(a.charge(25 << 20));
        assert!(!a.room_for_ready(), "half of a's 50 MiB share");
        assert!(b.room_for_ready());
        assert!(b.charge(25 << 20));
        assert!(!b.room_for_ready(), "half of the platform's 100 MiB");
    }
}
