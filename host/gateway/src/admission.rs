//! Admission control: bounds on open connections, TLS handshakes in progress
//! and requests in progress. What is over a bound is refused at once (a
//! connection closed, a request answered `503 A0013` with `Retry-After`),
//! never queued: under overload the client learns in microseconds to come
//! back later instead of waiting seconds for a timeout.
//!
//! Every bound is one relaxed atomic add and compare; the permit gives it
//! back when dropped. See docs/adr/0019-shutdown-and-admission.md.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Seconds a shed client is asked to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// The bounds of one API listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Open connections; one more is closed at once when accepted.
    pub max_connections: usize,
    /// TLS handshakes in progress; one more connection is closed at once
    /// instead of waiting for the handshakes ahead of it.
    pub max_handshakes: usize,
    /// Requests in progress on the whole listener; one more is answered 503.
    pub max_in_flight: usize,
    /// Requests in progress on one API version (its manifest's
    /// `limits.max_concurrency`, never above this); one more is answered 503.
    pub api_max_in_flight: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_handshakes: 256,
            max_in_flight: 1_024,
            api_max_in_flight: 256,
        }
    }
}

impl AdmissionLimits {
    /// No bound (the ops listener).
    pub(crate) const UNBOUNDED: Self = Self {
        max_connections: usize::MAX,
        max_handshakes: usize::MAX,
        max_in_flight: usize::MAX,
        api_max_in_flight: usize::MAX,
    };
}

/// Which bound refused a connection or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shed {
    /// `gateway.max_connections`: the connection was closed when accepted.
    Connections,
    /// `gateway.max_handshakes`: the connection was closed before its handshake.
    Handshakes,
    /// `gateway.max_in_flight`: the request was answered 503 before routing.
    InFlight,
    /// The API version's concurrency limit: answered 503 before its plugin ran.
    ApiInFlight,
}

impl Shed {
    pub(crate) const ALL: [Shed; 4] = [
        Shed::Connections,
        Shed::Handshakes,
        Shed::InFlight,
        Shed::ApiInFlight,
    ];

    /// The metric label (`sfop_shed_total{reason=..}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Connections => "connections",
            Shed::Handshakes => "handshakes",
            Shed::InFlight => "in_flight",
            Shed::ApiInFlight => "api_in_flight",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A count with a bound.
#[derive(Debug)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    max: usize,
}

impl Gauge {
    pub(crate) const fn new(max: usize) -> Self {
        Self {
            now: AtomicUsize::new(0),
            max,
        }
    }

    /// One more, unless that would pass the bound.
    pub(crate) fn try_enter(&self) -> Option<Permit<'_>> {
        // Add first, then look: two racing callers can never both pass the
        // last place.
        if self.now.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(Permit(&self.now))
        } else {
            self.now.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    pub(crate) fn now(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
}

/// A place under a bound; given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit<'a>(&'a AtomicUsize);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Connection(std::sync::Arc<Admission>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connections.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bounds of one listener and what they refused.
#[derive(Debug)]
pub struct Admission {
    pub(crate) limits: AdmissionLimits,
    pub(crate) connections: Gauge,
    pub(crate) handshakes: Gauge,
    pub(crate) in_flight: Gauge,
    shed: [AtomicU64; Shed::ALL.len()],
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            connections: Gauge::new(limits.max_connections),
            handshakes: Gauge::new(limits.max_handshakes),
            in_flight: Gauge::new(limits.max_in_flight),
            shed: Default::default(),
        }
    }

    /// A place for one more open connection, held by the connection's task.
    pub(crate) fn try_connection(self: &std::sync::Arc<Self>) -> Option<Connection> {
        let permit = self.connections.try_enter()?;
        std::mem::forget(permit);
        Some(Connection(self.clone()))
    }

    pub(crate) fn count(&self, shed: Shed) {
        self.shed[shed.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections or requests refused by `shed`'s bound so far.
    pub fn shed(&self, shed: Shed) -> u64 {
        self.shed[shed.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_admits_up_to_its_bound_and_takes_back_on_drop() {
        let gauge = Gauge::new(2);
        let a = gauge.try_enter();
        let b = gauge.try_enter();
        assert!(a.is_some() && b.is_some());
        assert!(gauge.try_enter().is_none(), "a third place");
        assert_eq!(gauge.now(), 2, "a refusal takes nothing");
        drop(a);
        assert!(gauge.try_enter().is_some());
        drop(b);
        assert_eq!(gauge.now(), 0);
    }

    #[test]
    fn shed_counts_by_reason() {
        let admission = Admission::new(AdmissionLimits::default());
        admission.count(Shed::InFlight);
        admission.count(Shed::InFlight);
        admission.count(Shed::Handshakes);
        assert_eq!(admission.shed(Shed::InFlight), 2);
        assert_eq!(admission.shed(Shed::Handshakes), 1);
        assert_eq!(admission.shed(Shed::Connections), 0);
        for (i, s) in Shed::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}
