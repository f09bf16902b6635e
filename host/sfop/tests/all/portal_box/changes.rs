//! Issue 17: the change feed keeps history. An Atom entry's id never
//! changes and no entry is replaced as a version moves on; a deprecation or
//! a retirement is a new dated entry; "move to the live version" only when
//! one exists; a superseded version is not called retired.

use anyhow::Result;
use sfop_portal::{Milestone, MilestoneKind, VersionState};

use super::fixtures::{TestPortal, balance, balance_v1_1, balance_v1_deprecated, version};

/// Every entry of a feed as (id, updated, whole entry text).
fn entries(feed: &str) -> Vec<(String, String, String)> {
    feed.split("<entry>")
        .skip(1)
        .map(|e| {
            let e = e.split("</entry>").next().unwrap_or_default();
            let tag = |t: &str| {
                e.split(&format!("<{t}>"))
                    .nth(1)
                    .and_then(|r| r.split(&format!("</{t}>")).next())
                    .unwrap_or_default()
                    .to_owned()
            };
            (tag("id"), tag("updated"), e.to_owned())
        })
        .collect()
}

fn deprecated(at_ms: u64) -> Milestone {
    Milestone {
        at_ms,
        kind: MilestoneKind::Deprecated {
            sunset: "2027-06-30".into(),
        },
    }
}

#[tokio::test]
async fn entries_keep_their_ids_and_events_are_new_dated_entries() -> Result<()> {
    // 1. 1.0.0 live.
    let t = TestPortal::balance_live()?;
    let first = entries(&t.get("/portal/changes.atom").await.text());
    assert_eq!(first.len(), 1, "{first:?}");

    // 2. 1.1.0 live, 1.0.0 deprecated a day later (the audit's date).
    let mut old = balance_v1_deprecated()?;
    old.milestones.push(deprecated(86_400_000));
    t.catalog.set(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Live, 2_000)?,
        old.clone(),
    ])]);
    let second = entries(&t.get("/portal/changes.atom").await.text());
    assert_eq!(second.len(), 3, "{second:?}");
    for entry in &first {
        assert!(
            second.contains(entry),
            "entry changed: {entry:?}\n{second:?}"
        );
    }
    let deprecation = second
        .iter()
        .find(|(id, _, _)| id.contains(":deprecated"))
        .expect("a deprecation entry");
    assert_eq!(
        deprecation.1, "1970-01-02T00:00:00Z",
        "dated when it happened"
    );
    assert!(
        deprecation.2.contains("Move to the live version"),
        "a successor is live: {deprecation:?}"
    );

    // 3. 1.0.0 superseded (no longer served), then the API retired.
    old.state = VersionState::Superseded;
    let mut new = version(&balance_v1_1(), VersionState::Live, 2_000)?;
    t.catalog.set(vec![balance(vec![new.clone(), old.clone()])]);
    let third = entries(&t.get("/portal/changes.atom").await.text());
    assert_eq!(third, second, "superseding adds and replaces nothing");
    let page = t.get("/portal/apis/account-balance").await.text();
    assert!(page.contains(">superseded</span>"), "{page}");
    assert!(
        !page.contains(">retired</span>"),
        "superseded is not retired: {page}"
    );
    let changes = t.get("/portal/changes").await.text();
    assert!(!changes.contains(">retired</span>"), "{changes}");

    new.state = VersionState::Retired;
    new.milestones.push(Milestone {
        at_ms: 2 * 86_400_000,
        kind: MilestoneKind::Retired,
    });
    t.catalog.set(vec![balance(vec![new, old])]);
    let fourth = entries(&t.get("/portal/changes.atom").await.text());
    assert_eq!(fourth.len(), 4, "{fourth:?}");
    for entry in &second {
        assert!(
            fourth.contains(entry) || entry.0.contains(":deprecated"),
            "entry changed: {entry:?}"
        );
        assert!(
            fourth.iter().any(|e| e.0 == entry.0),
            "entry gone: {entry:?}"
        );
    }
    let retirement = fourth
        .iter()
        .find(|(id, _, _)| id.ends_with(":retired"))
        .expect("a retirement entry");
    assert_eq!(retirement.1, "1970-01-03T00:00:00Z");
    assert!(
        !retirement.2.contains("Move to"),
        "nothing newer to move to: {retirement:?}"
    );
    let ids: Vec<&String> = fourth.iter().map(|e| &e.0).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "ids are unique: {ids:?}");
    Ok(())
}

#[tokio::test]
async fn move_to_the_live_version_only_when_one_exists() -> Result<()> {
    // The only version is deprecated: nothing to move to.
    let mut only = balance_v1_deprecated()?;
    only.milestones.push(deprecated(5_000));
    let t = TestPortal::new(vec![balance(vec![only])])?;
    let feed = t.get("/portal/changes.atom").await.text();
    let changes = t.get("/portal/changes").await.text();
    for text in [&feed, &changes] {
        assert!(text.contains("deprecated, sunset 2027-06-30"), "{text}");
        assert!(!text.contains("Move to"), "{text}");
    }
    // A canary is not live: still nothing to move to.
    let mut only = balance_v1_deprecated()?;
    only.milestones.push(deprecated(5_000));
    t.catalog.set(vec![balance(vec![
        version(&balance_v1_1(), VersionState::Canary { percent: 10 }, 6_000)?,
        only,
    ])]);
    let changes = t.get("/portal/changes").await.text();
    assert!(!changes.contains("Move to"), "{changes}");
    Ok(())
}
