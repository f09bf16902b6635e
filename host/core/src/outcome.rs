//! How a request to the gateway ended, as one `Copy + Hash` enum: the
//! `outcome` label of `sfop_requests_total`, the `fault` field of the
//! request's log line, and the canary's error count all read this one
//! definition (linkerd2-proxy's `errors::Reason`), so none of them can
//! drift from the others or meet a label it does not know.

use std::fmt;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The plugin answered, with anything but a 5xx status.
    Ok,
    /// The plugin answered with a 5xx status.
    ServerError,
    /// The API's live release could not be loaded: its routes answer 503.
    RouteClosed,
    BodyTooLarge,
    BodyUnreadable,
    /// A query or form field given twice.
    RepeatedField,
    /// The access token or scope refused the call.
    Denied,
    /// The token could not be proven unrevoked: this cluster node's list of
    /// revoked tokens is older than `auth.revocation_max_lag_ms`, so it
    /// refused (fail closed, 503 `A0013`; ADR 0029).
    Unproven,
    /// The caller asked for a version this API does not serve.
    VersionNotServed,
    /// The plugin ran past its CPU deadline.
    Deadline,
    /// The call ran past its wall-clock timeout.
    Timeout,
    /// The plugin ran out of its linear memory.
    Memory,
    /// The plugin trapped (panicked).
    Trap,
    /// The plugin's answer was not a valid HTTP answer (status, body size,
    /// envelope).
    BadResponse,
    /// No instance of the release could be made for the call.
    Overloaded,
    /// A bound of the gateway was reached; refused at once.
    Shed,
    /// The guest memory budget (or the version's share) was full.
    MemoryBudget,
    /// Refused because the release is quarantined for its own faults.
    Quarantined,
    /// No route for the path (not counted per API).
    RouteNotFound,
    /// A route, but not for this method (not counted per API).
    MethodNotAllowed,
    /// The API was retired (not counted per API).
    Retired,
}

impl Outcome {
    /// Every outcome, in the order `/metrics` lists them.
    pub const ALL: [Outcome; 21] = [
        Outcome::Ok,
        Outcome::ServerError,
        Outcome::RouteClosed,
        Outcome::BodyTooLarge,
        Outcome::BodyUnreadable,
        Outcome::RepeatedField,
        Outcome::Denied,
        Outcome::Unproven,
        Outcome::VersionNotServed,
        Outcome::Deadline,
        Outcome::Timeout,
        Outcome::Memory,
        Outcome::Trap,
        Outcome::BadResponse,
        Outcome::Overloaded,
        Outcome::Shed,
        Outcome::MemoryBudget,
        Outcome::Quarantined,
        Outcome::RouteNotFound,
        Outcome::MethodNotAllowed,
        Outcome::Retired,
    ];

    /// Outcomes of requests that found no API version to count them on.
    pub const UNROUTED: [Outcome; 3] = [
        Outcome::RouteNotFound,
        Outcome::MethodNotAllowed,
        Outcome::Retired,
    ];

    /// The metric label and log field: stable, lowercase, `_`-separated.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ServerError => "server_error",
            Outcome::RouteClosed => "route_closed",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::BodyUnreadable => "body_unreadable",
            Outcome::RepeatedField => "repeated_field",
            Outcome::Denied => "denied",
            Outcome::Unproven => "unproven",
            Outcome::VersionNotServed => "version_not_served",
            Outcome::Deadline => "deadline",
            Outcome::Timeout => "timeout",
            Outcome::Memory => "memory",
            Outcome::Trap => "trap",
            Outcome::BadResponse => "bad_response",
            Outcome::Overloaded => "overloaded",
            Outcome::Shed => "shed",
            Outcome::MemoryBudget => "memory_budget",
            Outcome::Quarantined => "quarantined",
            Outcome::RouteNotFound => "route_not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::Retired => "retired",
        }
    }

    /// Position in [`Outcome::ALL`], for counters kept in an array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the release that served the request is to blame: these
    /// count towards a canary's error rate, so a candidate that traps,
    /// overruns, answers badly or cannot be instantiated is rolled back.
    /// Refusals of the caller and of the platform's own bounds do not.
    /// Exhaustive on purpose: a new outcome must be decided here.
    pub const fn is_release_fault(self) -> bool {
        match self {
            Outcome::ServerError
            | Outcome::Deadline
            | Outcome::Timeout
            | Outcome::Memory
            | Outcome::Trap
            | Outcome::BadResponse
            | Outcome::Overloaded
            | Outcome::Quarantined => true,
            Outcome::Ok
            | Outcome::RouteClosed
            | Outcome::BodyTooLarge
            | Outcome::BodyUnreadable
            | Outcome::RepeatedField
            | Outcome::Denied
            | Outcome::Unproven
            | Outcome::VersionNotServed
            | Outcome::Shed
            | Outcome::MemoryBudget
            | Outcome::RouteNotFound
            | Outcome::MethodNotAllowed
            | Outcome::Retired => false,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_labels_are_unique() {
        let mut labels = std::collections::BTreeSet::new();
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome}");
            assert!(labels.insert(outcome.as_str()), "{outcome} twice");
        }
    }

    #[test]
    fn the_canary_counts_overloaded_and_the_plugins_faults_but_not_the_callers() {
        let faults: Vec<&str> = Outcome::ALL
            .iter()
            .filter(|o| o.is_release_fault())
            .map(|o| o.as_str())
            .collect();
        assert_eq!(
            faults,
            [
                "server_error",
                "deadline",
                "timeout",
                "memory",
                "trap",
                "bad_response",
                "overloaded",
                "quarantined"
            ]
        );
        for o in [
            Outcome::Ok,
            Outcome::Denied,
            Outcome::Shed,
            Outcome::BodyTooLarge,
        ] {
            assert!(!o.is_release_fault(), "{o}");
        }
    }
}
