//! Change notices: the contract diff between consecutive versions of an API
//! (documented fields, response codes, routes, scope), and each deprecation
//! and retirement as its own dated notice. The feed keeps history: a
//! notice's id depends only on what it announces (API, version, event), its
//! text only on facts fixed when it happened, so an entry is never replaced
//! when the version moves on.

use sfop_core::contract::{Change, diff};

use crate::{ApiEntry, MilestoneKind, VersionState};

/// What a notice announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The version was published (reached callers).
    Published,
    /// It was deprecated, to stop serving on `sunset`.
    Deprecated { sunset: String },
    /// It was taken out of service.
    Retired,
}

/// One change notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub api: String,
    pub version: String,
    /// The version diffed against; `None` for an API's first version.
    pub previous: Option<String>,
    /// The version's state now (for the page's badge; never in the feed).
    pub state: VersionState,
    pub event: Event,
    pub at_ms: u64,
    pub changes: Vec<Change>,
    /// A newer version serving now (live), to move to; `None` when there is
    /// none.
    pub successor: Option<String>,
}

impl Notice {
    /// The Atom id: fixed by the API, the version and the event.
    pub fn id(&self) -> String {
        let event = match &self.event {
            Event::Published => String::new(),
            Event::Deprecated { sunset } => format!(":deprecated:{sunset}"),
            Event::Retired => ":retired".into(),
        };
        format!(
            "urn:sfop:change:{}:{}{event}",
            crate::render::encode(&self.api),
            crate::render::encode(&self.version)
        )
    }

    /// The title, from facts fixed when the event happened.
    pub fn title(&self) -> String {
        match (&self.event, &self.previous) {
            (Event::Deprecated { sunset }, _) => {
                format!("{} {} deprecated, sunset {sunset}", self.api, self.version)
            }
            (Event::Retired, _) => {
                format!("{} {} retired (out of service)", self.api, self.version)
            }
            (Event::Published, None) => format!("{} {}: first version", self.api, self.version),
            (Event::Published, Some(prev)) => format!(
                "{} {}: {} change(s) since {prev}",
                self.api,
                self.version,
                self.changes.len()
            ),
        }
    }
}

/// Notices for every version that has reached callers (live, canary,
/// deprecated, superseded, retired), and one per milestone of each, newest
/// first.
pub(crate) fn notices(apis: &[ApiEntry]) -> Vec<Notice> {
    let mut out = Vec::new();
    for api in apis {
        let published: Vec<_> = api
            .versions
            .iter()
            .filter(|v| {
                v.state.is_served()
                    || matches!(v.state, VersionState::Retired | VersionState::Superseded)
            })
            .collect();
        let live = api
            .versions
            .iter()
            .find(|v| v.state == VersionState::Live)
            .map(|v| &v.manifest.version);
        for (i, v) in published.iter().enumerate() {
            let previous = published.get(i + 1);
            let notice = Notice {
                api: api.name.clone(),
                version: v.manifest.version.to_string(),
                previous: previous.map(|p| p.manifest.version.to_string()),
                state: v.state.clone(),
                event: Event::Published,
                at_ms: v.uploaded_at_ms,
                changes: previous
                    .map(|p| diff(&p.manifest, &v.manifest))
                    .unwrap_or_default(),
                successor: live
                    .filter(|l| **l > v.manifest.version)
                    .map(|l| l.to_string()),
            };
            let mut events: Vec<(Event, u64)> = v
                .milestones
                .iter()
                .map(|m| match &m.kind {
                    MilestoneKind::Deprecated { sunset } => (
                        Event::Deprecated {
                            sunset: sunset.clone(),
                        },
                        m.at_ms,
                    ),
                    MilestoneKind::Retired => (Event::Retired, m.at_ms),
                })
                .collect();
            // A catalogue that knows the state but not when it changed: the
            // event is dated by the newest upload of the API, the latest it
            // can be known to have been announced by.
            let fallback = || {
                api.versions
                    .iter()
                    .map(|x| x.uploaded_at_ms)
                    .max()
                    .unwrap_or(v.uploaded_at_ms)
            };
            match &v.state {
                VersionState::Deprecated { sunset }
                    if !events
                        .iter()
                        .any(|(e, _)| matches!(e, Event::Deprecated { .. })) =>
                {
                    let sunset = sunset.clone();
                    events.push((Event::Deprecated { sunset }, fallback()));
                }
                VersionState::Retired if !events.iter().any(|(e, _)| *e == Event::Retired) => {
                    events.push((Event::Retired, fallback()));
                }
                _ => {}
            }
            for (event, at_ms) in events {
                out.push(Notice {
                    event,
                    at_ms,
                    changes: Vec::new(),
                    ..notice.clone()
                });
            }
            out.push(notice);
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
