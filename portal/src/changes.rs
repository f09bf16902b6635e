//! Change notices: the contract diff between consecutive versions of an API
//! (documented fields, response codes, routes, scope), and deprecations with
//! their sunset dates.

use sfop_core::contract::{Change, diff};

use crate::{ApiEntry, VersionState};

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
                    .map(|p| diff(&p.manifest, &v.manifest))
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
    use sfop_core::Manifest;
    use sfop_core::contract::ChangeKind;

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
        let changes = diff(&old, &new);
        let find = |subject: &str| changes.iter().find(|c| c.subject == subject);
        let added = find("request field tran_dtime");
        assert!(matches!(added, Some(c) if c.kind == ChangeKind::Added && c.is_breaking()));
        let changed = find("response field balance_amt");
        assert!(
            matches!(changed, Some(c) if c.kind == ChangeKind::Changed && c.detail() == "N(12) → N(13)")
        );
        assert!(matches!(find("response field available_amt"), Some(c) if !c.is_breaking()));
        assert!(
            matches!(find("response field bank_name"), Some(c) if c.kind == ChangeKind::Removed && c.is_breaking())
        );
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(diff(&old, &old).is_empty());
    }
}
