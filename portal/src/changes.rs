//! Change notices: the contract diff between consecutive versions of an API
//! (documented fields, response codes, routes, scope), and deprecations with
//! their sunset dates.

use std::collections::BTreeMap;

use sfop_core::Manifest;
use sfop_core::manifest::FieldDoc;

use crate::{ApiEntry, VersionState};

/// What happened to one part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// One difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// What changed, e.g. `response field balance_amt`.
    pub subject: String,
    /// How, e.g. `N(12) → N(13)`; empty when `kind` says it all.
    pub detail: String,
    /// Whether existing callers may break: a removed or newly required
    /// request field, a removed response field, a changed type or route.
    pub breaking: bool,
}

fn field_text(f: &FieldDoc) -> String {
    format!("{}{}", f.kind, if f.required { ", required" } else { "" })
}

fn diff_fields(out: &mut Vec<Change>, side: &str, old: &[FieldDoc], new: &[FieldDoc]) {
    let old: BTreeMap<&str, &FieldDoc> = old.iter().map(|f| (f.name.as_str(), f)).collect();
    let new: BTreeMap<&str, &FieldDoc> = new.iter().map(|f| (f.name.as_str(), f)).collect();
    let request = side == "request";
    for (name, f) in &new {
        match old.get(name) {
            None => out.push(Change {
                kind: ChangeKind::Added,
                subject: format!("{side} field {name}"),
                detail: field_text(f),
                breaking: request && f.required,
            }),
            Some(o) => {
                let mut details = Vec::new();
                if o.kind != f.kind {
                    details.push(format!("type {} → {}", o.kind, f.kind));
                }
                if o.required != f.required {
                    details.push(if f.required {
                        "now required".to_owned()
                    } else {
                        "now optional".to_owned()
                    });
                }
                if o.description != f.description {
                    details.push(format!("description: {}", f.description));
                }
                if !details.is_empty() {
                    out.push(Change {
                        kind: ChangeKind::Changed,
                        subject: format!("{side} field {name}"),
                        detail: details.join("; "),
                        breaking: o.kind != f.kind || (request && f.required && !o.required),
                    });
                }
            }
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(Change {
            kind: ChangeKind::Removed,
            subject: format!("{side} field {name}"),
            detail: String::new(),
            breaking: !request,
        });
    }
}

/// The contract diff from `old` to `new`.
pub fn contract_diff(old: &Manifest, new: &Manifest) -> Vec<Change> {
    let mut out = Vec::new();
    if old.scope != new.scope {
        out.push(Change {
            kind: ChangeKind::Changed,
            subject: "scope".into(),
            detail: format!("{} → {}", old.scope, new.scope),
            breaking: true,
        });
    }
    for route in new.routes.iter().filter(|r| !old.routes.contains(r)) {
        out.push(Change {
            kind: ChangeKind::Added,
            subject: format!("route {route}"),
            detail: String::new(),
            breaking: false,
        });
    }
    for route in old.routes.iter().filter(|r| !new.routes.contains(r)) {
        out.push(Change {
            kind: ChangeKind::Removed,
            subject: format!("route {route}"),
            detail: String::new(),
            breaking: true,
        });
    }
    let empty = sfop_core::Docs::default();
    let (od, nd) = (
        old.docs.as_ref().unwrap_or(&empty),
        new.docs.as_ref().unwrap_or(&empty),
    );
    diff_fields(&mut out, "request", &od.request, &nd.request);
    diff_fields(&mut out, "response", &od.response, &nd.response);
    let old_codes: BTreeMap<&str, &str> = od
        .codes
        .iter()
        .map(|c| (c.code.as_str(), c.meaning.as_str()))
        .collect();
    let new_codes: BTreeMap<&str, &str> = nd
        .codes
        .iter()
        .map(|c| (c.code.as_str(), c.meaning.as_str()))
        .collect();
    for (code, meaning) in &new_codes {
        match old_codes.get(code) {
            None => out.push(Change {
                kind: ChangeKind::Added,
                subject: format!("response code {code}"),
                detail: (*meaning).to_owned(),
                breaking: false,
            }),
            Some(m) if m != meaning => out.push(Change {
                kind: ChangeKind::Changed,
                subject: format!("response code {code}"),
                detail: (*meaning).to_owned(),
                breaking: false,
            }),
            Some(_) => {}
        }
    }
    for code in old_codes.keys().filter(|c| !new_codes.contains_key(*c)) {
        out.push(Change {
            kind: ChangeKind::Removed,
            subject: format!("response code {code}"),
            detail: String::new(),
            breaking: false,
        });
    }
    if old.description != new.description {
        out.push(Change {
            kind: ChangeKind::Changed,
            subject: "description".into(),
            detail: new.description.clone(),
            breaking: false,
        });
    }
    out
}

/// One change notice: a version and what it changes, or a deprecation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub api: String,
    pub version: String,
    /// The version diffed against; `None` for an API's first version.
    pub previous: Option<String>,
    pub state: VersionState,
    pub at_ms: u64,
    pub changes: Vec<Change>,
}

/// Notices for every version that has reached callers or is about to
/// (live, canary, deprecated, retired), newest first.
pub(crate) fn notices(apis: &[ApiEntry]) -> Vec<Notice> {
    let mut out = Vec::new();
    for api in apis {
        let published: Vec<_> = api
            .versions
            .iter()
            .filter(|v| v.state.is_served() || v.state == VersionState::Retired)
            .collect();
        for (i, v) in published.iter().enumerate() {
            let previous = published.get(i + 1);
            out.push(Notice {
                api: api.name.clone(),
                version: v.manifest.version.to_string(),
                previous: previous.map(|p| p.manifest.version.to_string()),
                state: v.state.clone(),
                at_ms: v.uploaded_at_ms,
                changes: previous
                    .map(|p| contract_diff(&p.manifest, &v.manifest))
                    .unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.api.cmp(&b.api)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, extra: &str) -> Manifest {
        let text = format!(
            r#"
            name = "balance"
            version = "{version}"
            description = "Balance"
            scope = "inquiry"
            [[routes]]
            method = "GET"
            path = "/v2.0/account/balance/fin_num"
            {extra}
            "#
        );
        match Manifest::parse(&text) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn diff_names_added_removed_and_changed_fields() {
        let old = manifest(
            "1.0.0",
            r#"
            [[docs.request]]
            name = "fintech_use_num"
            type = "N(24)"
            required = true
            description = "The account"
            [[docs.response]]
            name = "balance_amt"
            type = "N(12)"
            description = "Balance"
            [[docs.response]]
            name = "bank_name"
            type = "AH(20)"
            description = "Bank"
            "#,
        );
        let new = manifest(
            "1.1.0",
            r#"
            [[docs.request]]
            name = "fintech_use_num"
            type = "N(24)"
            required = true
            description = "The account"
            [[docs.request]]
            name = "tran_dtime"
            type = "N(14)"
            required = true
            description = "Request time"
            [[docs.response]]
            name = "balance_amt"
            type = "N(13)"
            description = "Balance"
            [[docs.response]]
            name = "available_amt"
            type = "N(12)"
            description = "Withdrawable"
            "#,
        );
        let changes = contract_diff(&old, &new);
        let find = |subject: &str| changes.iter().find(|c| c.subject == subject);
        let added = find("request field tran_dtime");
        assert!(matches!(added, Some(c) if c.kind == ChangeKind::Added && c.breaking));
        let changed = find("response field balance_amt");
        assert!(
            matches!(changed, Some(c) if c.kind == ChangeKind::Changed && c.detail == "type N(12) → N(13)")
        );
        assert!(matches!(find("response field available_amt"), Some(c) if !c.breaking));
        assert!(
            matches!(find("response field bank_name"), Some(c) if c.kind == ChangeKind::Removed && c.breaking)
        );
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(contract_diff(&old, &old).is_empty());
    }
}
