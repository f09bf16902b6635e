//! The contract of an API version as its callers see it (routes, scope and
//! the documented request and response fields), and the difference between
//! two versions: what was added, removed or changed, and whether the change
//! breaks callers and so needs a major version.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::manifest::{FieldDoc, Manifest};

/// Which side of a call a field is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Request,
    Response,
}

/// One difference between two contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A route the new version no longer serves. Breaking.
    RouteRemoved { route: String },
    /// A route only the new version serves.
    RouteAdded { route: String },
    /// Another scope is required. Breaking: existing tokens stop working.
    ScopeChanged { from: String, to: String },
    /// A field appeared. Breaking only for a required request field.
    FieldAdded {
        side: Side,
        name: String,
        kind: String,
        required: bool,
    },
    /// A field disappeared. Breaking for a response field (callers read it);
    /// harmless for a request field (the API ignores it).
    FieldRemoved { side: Side, name: String },
    /// A field's type or requiredness changed. Breaking, except a request
    /// field becoming optional.
    FieldChanged {
        side: Side,
        name: String,
        from: String,
        to: String,
    },
}

impl Change {
    /// Whether an existing, correct caller of the old version can fail
    /// against the new one.
    pub fn is_breaking(&self) -> bool {
        match self {
            Change::RouteRemoved { .. } | Change::ScopeChanged { .. } => true,
            Change::RouteAdded { .. } => false,
            Change::FieldAdded { side, required, .. } => *side == Side::Request && *required,
            Change::FieldRemoved { side, .. } => *side == Side::Response,
            Change::FieldChanged { side, from, to, .. } => {
                // `N(12)` → `N(12), optional` is the one harmless direction.
                !(*side == Side::Request
                    && from.ends_with(REQUIRED)
                    && !to.ends_with(REQUIRED)
                    && from.trim_end_matches(REQUIRED) == to)
            }
        }
    }
}

const REQUIRED: &str = ", required";

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Side| match s {
            Side::Request => "request",
            Side::Response => "response",
        };
        match self {
            Change::RouteRemoved { route } => write!(f, "route {route} removed"),
            Change::RouteAdded { route } => write!(f, "route {route} added"),
            Change::ScopeChanged { from, to } => write!(f, "scope {from} → {to}"),
            Change::FieldAdded {
                side: s,
                name,
                kind,
                required,
            } => write!(
                f,
                "{} field {name} added ({kind}{})",
                side(s),
                if *required { REQUIRED } else { "" }
            ),
            Change::FieldRemoved { side: s, name } => write!(f, "{} field {name} removed", side(s)),
            Change::FieldChanged {
                side: s,
                name,
                from,
                to,
            } => write!(f, "{} field {name}: {from} → {to}", side(s)),
        }
    }
}

/// The differences from `old` to `new`, in a stable order.
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    let routes = |m: &Manifest| -> Vec<String> { m.routes.iter().map(|r| r.to_string()).collect() };
    let (old_routes, new_routes) = (routes(old), routes(new));
    for route in old_routes.iter().filter(|r| !new_routes.contains(r)) {
        changes.push(Change::RouteRemoved {
            route: route.clone(),
        });
    }
    for route in new_routes.iter().filter(|r| !old_routes.contains(r)) {
        changes.push(Change::RouteAdded {
            route: route.clone(),
        });
    }
    if old.scope != new.scope {
        changes.push(Change::ScopeChanged {
            from: old.scope.clone(),
            to: new.scope.clone(),
        });
    }
    for side in [Side::Request, Side::Response] {
        let fields = |m: &Manifest| -> BTreeMap<String, FieldDoc> {
            m.docs
                .iter()
                .flat_map(|d| match side {
                    Side::Request => &d.request,
                    Side::Response => &d.response,
                })
                .map(|f| (f.name.clone(), f.clone()))
                .collect()
        };
        let (before, after) = (fields(old), fields(new));
        let shape = |f: &FieldDoc| {
            if f.required {
                format!("{}{REQUIRED}", f.kind)
            } else {
                f.kind.clone()
            }
        };
        for (name, field) in &before {
            match after.get(name) {
                None => changes.push(Change::FieldRemoved {
                    side,
                    name: name.clone(),
                }),
                Some(now) if shape(now) != shape(field) => changes.push(Change::FieldChanged {
                    side,
                    name: name.clone(),
                    from: shape(field),
                    to: shape(now),
                }),
                Some(_) => {}
            }
        }
        for (name, field) in after.iter().filter(|(n, _)| !before.contains_key(*n)) {
            changes.push(Change::FieldAdded {
                side,
                name: name.clone(),
                kind: field.kind.clone(),
                required: field.required,
            });
        }
    }
    changes
}

/// The smallest version bump that `changes` allow under semver: a breaking
/// change needs a new major version (a new minor one before 1.0.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Patch,
    Minor,
    Major,
}

impl Bump {
    /// What `changes` require.
    pub fn required(changes: &[Change]) -> Bump {
        if changes.iter().any(Change::is_breaking) {
            Bump::Major
        } else if changes.is_empty() {
            Bump::Patch
        } else {
            Bump::Minor
        }
    }

    /// The bump from `old` to `new` (`None` when `new` is not higher).
    /// Before 1.0.0, a minor bump counts as major and a patch as minor.
    pub fn between(old: &semver::Version, new: &semver::Version) -> Option<Bump> {
        if new <= old {
            return None;
        }
        Some(if new.major != old.major {
            Bump::Major
        } else if new.minor != old.minor {
            if old.major == 0 {
                Bump::Major
            } else {
                Bump::Minor
            }
        } else if old.major == 0 {
            Bump::Minor
        } else {
            Bump::Patch
        })
    }
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        })
    }
}

/// Why `new` may not follow `old`: a contract change that needs a bigger
/// version step than the one taken. `None` when the step is enough.
pub fn check_bump(old: &Manifest, new: &Manifest) -> Option<String> {
    let changes = diff(old, new);
    let needed = Bump::required(&changes);
    let taken = Bump::between(&old.version, &new.version)?;
    (taken < needed).then(|| {
        let breaking: Vec<String> = changes
            .iter()
            .filter(|c| c.is_breaking())
            .map(ToString::to_string)
            .collect();
        format!(
            "{} → {} is a {taken} bump, but the contract change needs a {needed} one ({})",
            old.version,
            new.version,
            breaking.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, extra: &str) -> Manifest {
        let text = format!(
            r#"
name = "demo"
version = "{version}"
description = "d"
scope = "inquiry"
[[routes]]
method = "GET"
path = "/v2.0/demo"
[docs]
request = [{{ name = "fintech_use_num", type = "AN(24)", required = true, description = "x" }}]
{extra}
"#
        );
        match Manifest::parse(&text) {
            Ok(m) => m,
            Err(e) => unreachable!("test manifest: {e}"),
        }
    }

    const BALANCE: &str =
        r#"response = [{ name = "balance_amt", type = "N(15)", description = "x" }]"#;

    #[test]
    fn removing_a_response_field_is_breaking_and_needs_a_major() {
        let old = manifest("1.0.0", BALANCE);
        let new = manifest("1.1.0", "");
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![Change::FieldRemoved {
                side: Side::Response,
                name: "balance_amt".into()
            }]
        );
        assert_eq!(Bump::required(&changes), Bump::Major);
        let refusal = check_bump(&old, &new).unwrap_or_default();
        assert!(
            refusal.contains("minor bump") && refusal.contains("balance_amt"),
            "{refusal}"
        );
        assert_eq!(check_bump(&old, &manifest("2.0.0", "")), None);
    }

    #[test]
    fn adding_a_response_field_is_a_minor_change() {
        let old = manifest("1.0.0", "");
        let new = manifest("1.0.1", BALANCE);
        assert_eq!(Bump::required(&diff(&old, &new)), Bump::Minor);
        assert!(check_bump(&old, &new).is_some());
        assert_eq!(check_bump(&old, &manifest("1.1.0", BALANCE)), None);
        assert_eq!(check_bump(&old, &manifest("1.0.1", "")), None);
    }

    #[test]
    fn changed_types_and_zero_versions() {
        let old = manifest("0.1.0", BALANCE);
        let new = manifest("0.1.1", &BALANCE.replace("N(15)", "AN(15)"));
        let changes = diff(&old, &new);
        assert!(changes[0].is_breaking(), "{changes:?}");
        assert!(check_bump(&old, &new).is_some());
        // Before 1.0.0 a minor step is the major one.
        assert_eq!(
            check_bump(
                &old,
                &manifest("0.2.0", &BALANCE.replace("N(15)", "AN(15)"))
            ),
            None
        );
        assert_eq!(Bump::between(&new.version, &old.version), None);
    }
}
