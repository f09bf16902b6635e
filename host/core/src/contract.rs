//! The contract of an API version as its callers see it (routes, scope,
//! documented request and response fields, response codes, description),
//! and the difference between two versions: what was added, removed or
//! changed, and the semver step each change needs. The management center's
//! promotion rule, the testbed's compatibility check and the portal's change
//! notices all read this one definition.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::manifest::{Docs, FieldDoc, Manifest};

/// What happened to one part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// The version step a change needs under semver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    /// Documentation only: callers see no difference.
    Patch,
    /// Something new that existing callers may ignore.
    Minor,
    /// An existing, correct caller can fail.
    Major,
}

/// One difference between two contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// What changed: `scope`, `route GET /v2.0/x`, `request field x`,
    /// `response field res_list[].y`, `response code A0001`, `description`.
    pub subject: String,
    /// The old shape (`N(12), required`, a scope, a code's meaning), if any.
    pub before: Option<String>,
    /// The new shape, if any.
    pub after: Option<String>,
    /// The version step this change needs.
    pub needs: Bump,
}

impl Change {
    /// Whether an existing, correct caller of the old version can fail
    /// against the new one.
    pub fn is_breaking(&self) -> bool {
        self.needs == Bump::Major
    }

    /// How, in words: `N(12) → N(13)`, the new shape, or nothing.
    pub fn detail(&self) -> String {
        match (&self.before, &self.after, self.kind) {
            (Some(b), Some(a), _) => format!("{b} → {a}"),
            (_, Some(a), ChangeKind::Added | ChangeKind::Changed) => a.clone(),
            _ => String::new(),
        }
    }

    fn new(
        kind: ChangeKind,
        subject: String,
        before: Option<String>,
        after: Option<String>,
        needs: Bump,
    ) -> Self {
        Self {
            kind,
            subject,
            before,
            after,
            needs,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.kind.label())?;
        match self.detail() {
            d if d.is_empty() => Ok(()),
            d => write!(f, " ({d})"),
        }
    }
}

/// The differences from `old` to `new`, in a stable order: scope, routes,
/// request fields, response fields, codes, description.
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<Change> {
    use ChangeKind::{Added, Changed, Removed};
    let mut out = Vec::new();
    if old.scope != new.scope {
        out.push(Change::new(
            Changed,
            "scope".into(),
            Some(old.scope.clone()),
            Some(new.scope.clone()),
            Bump::Major,
        ));
    }
    for route in old.routes.iter().filter(|r| !new.routes.contains(r)) {
        out.push(Change::new(
            Removed,
            format!("route {route}"),
            None,
            None,
            Bump::Major,
        ));
    }
    for route in new.routes.iter().filter(|r| !old.routes.contains(r)) {
        out.push(Change::new(
            Added,
            format!("route {route}"),
            None,
            None,
            Bump::Minor,
        ));
    }
    let empty = Docs::default();
    let (od, nd) = (
        old.docs.as_ref().unwrap_or(&empty),
        new.docs.as_ref().unwrap_or(&empty),
    );
    diff_fields(&mut out, Side::Request, &od.request, &nd.request);
    diff_fields(&mut out, Side::Response, &od.response, &nd.response);

    let codes = |d: &Docs| -> BTreeMap<String, String> {
        d.codes
            .iter()
            .map(|c| (c.code.clone(), c.meaning.clone()))
            .collect()
    };
    let (old_codes, new_codes) = (codes(od), codes(nd));
    for (code, meaning) in &old_codes {
        let subject = format!("response code {code}");
        match new_codes.get(code) {
            // Clients handle codes they do not know as failures already.
            None => out.push(Change::new(
                Removed,
                subject,
                Some(meaning.clone()),
                None,
                Bump::Minor,
            )),
            Some(now) if now != meaning => out.push(Change::new(
                Changed,
                subject,
                Some(meaning.clone()),
                Some(now.clone()),
                Bump::Patch,
            )),
            Some(_) => {}
        }
    }
    for (code, meaning) in new_codes
        .iter()
        .filter(|(c, _)| !old_codes.contains_key(*c))
    {
        out.push(Change::new(
            Added,
            format!("response code {code}"),
            None,
            Some(meaning.clone()),
            Bump::Minor,
        ));
    }
    if old.description != new.description {
        out.push(Change::new(
            Changed,
            "description".into(),
            Some(old.description.clone()),
            Some(new.description.clone()),
            Bump::Patch,
        ));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

fn shape(f: &FieldDoc) -> String {
    if f.required {
        format!("{}, required", f.kind)
    } else {
        f.kind.clone()
    }
}

fn diff_fields(out: &mut Vec<Change>, side: Side, old: &[FieldDoc], new: &[FieldDoc]) {
    use ChangeKind::{Added, Changed, Removed};
    let label = match side {
        Side::Request => "request",
        Side::Response => "response",
    };
    let request = side == Side::Request;
    let old: BTreeMap<&str, &FieldDoc> = old.iter().map(|f| (f.name.as_str(), f)).collect();
    let new: BTreeMap<&str, &FieldDoc> = new.iter().map(|f| (f.name.as_str(), f)).collect();
    for (name, was) in &old {
        let subject = format!("{label} field {name}");
        let Some(now) = new.get(name) else {
            // Callers read response fields; a request field the API no
            // longer reads is ignored.
            let needs = if request { Bump::Minor } else { Bump::Major };
            out.push(Change::new(Removed, subject, Some(shape(was)), None, needs));
            continue;
        };
        let needs = if was.kind != now.kind || (request && now.required && !was.required) {
            Bump::Major
        } else if request && was.required && !now.required {
            Bump::Minor
        } else if was.required != now.required || was.description != now.description {
            Bump::Patch
        } else {
            continue;
        };
        let (before, after) = if shape(was) == shape(now) {
            (was.description.clone(), now.description.clone())
        } else {
            (shape(was), shape(now))
        };
        out.push(Change::new(
            Changed,
            subject,
            Some(before),
            Some(after),
            needs,
        ));
    }
    for (name, now) in new.iter().filter(|(n, _)| !old.contains_key(*n)) {
        let needs = if request && now.required {
            Bump::Major
        } else {
            Bump::Minor
        };
        out.push(Change::new(
            Added,
            format!("{label} field {name}"),
            None,
            Some(shape(now)),
            needs,
        ));
    }
}

impl Bump {
    /// What `changes` require together.
    pub fn required(changes: &[Change]) -> Bump {
        changes.iter().map(|c| c.needs).max().unwrap_or(Bump::Patch)
    }

    /// The step from `old` to `new` (`None` when `new` is not higher). Before
    /// 1.0.0, a minor step counts as major and a patch step as minor (Cargo's
    /// reading of semver).
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

    pub fn as_str(self) -> &'static str {
        match self {
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        }
    }
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `new` may not follow `old`: a contract change that needs a bigger
/// version step than the one taken. `None` when the step is enough (or `new`
/// is not higher, which is another rule's business).
pub fn check_bump(old: &Manifest, new: &Manifest) -> Option<String> {
    let changes = diff(old, new);
    let needed = Bump::required(&changes);
    let taken = Bump::between(&old.version, &new.version)?;
    (taken < needed).then(|| {
        let reasons: Vec<String> = changes
            .iter()
            .filter(|c| c.needs > taken)
            .map(ToString::to_string)
            .collect();
        format!(
            "{} → {} is a {taken} bump, but the contract change needs a {needed} one ({})",
            old.version,
            new.version,
            reasons.join("; ")
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
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].to_string(), "response field balance_amt removed");
        assert!(changes[0].is_breaking());
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
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn changed_types_requiredness_and_descriptions() {
        let old = manifest("0.1.0", BALANCE);
        let retyped = manifest("0.1.1", &BALANCE.replace("N(15)", "AN(15)"));
        let changes = diff(&old, &retyped);
        assert_eq!(changes[0].detail(), "N(15) → AN(15)");
        assert!(changes[0].is_breaking(), "{changes:?}");
        assert!(check_bump(&old, &retyped).is_some());
        // Before 1.0.0 a minor step is the major one.
        assert_eq!(
            check_bump(
                &old,
                &manifest("0.2.0", &BALANCE.replace("N(15)", "AN(15)"))
            ),
            None
        );
        assert_eq!(Bump::between(&retyped.version, &old.version), None);
        // Documentation only: a patch.
        let reworded = manifest("0.1.1", &BALANCE.replace("\"x\" }", "\"잔액\" }"));
        let changes = diff(&old, &reworded);
        assert_eq!(
            (
                changes.len(),
                changes[0].needs,
                changes[0].detail().as_str()
            ),
            (1, Bump::Patch, "x → 잔액")
        );
        // A request field that becomes optional is harmless, the reverse is not.
        let loose = manifest("1.0.0", "").docs.map(|mut d| {
            d.request[0].required = false;
            d
        });
        let mut optional = manifest("1.0.1", "");
        optional.docs = loose;
        let strict = manifest("1.0.0", "");
        assert_eq!(Bump::required(&diff(&strict, &optional)), Bump::Minor);
        assert_eq!(Bump::required(&diff(&optional, &strict)), Bump::Major);
    }
}
