//! The audit log: an append-only, hash-chained record of who did what to
//! which API and when. Each entry's hash covers its content and the previous
//! entry's hash, and the chain's head is stored beside the entries, so an
//! edited, removed, reordered or truncated entry breaks [`verify`].
//!
//! Entries are written inside the same store transaction as the state change
//! they describe (see [`append`]): there is no change without its entry.

use serde::{Deserialize, Serialize};
use sfop_core::audit::{ChainLink, GENESIS};
use sfop_store::{Abort, Tree, TxTree};

/// The hash before the first entry.
const HEAD_KEY: &str = "head";
const ENTRY_PREFIX: &str = "e:";

/// What happened, as the log keeps it (an admin API type).
pub use sfop_admin_api::audit::{Entry, Verification};

/// What a caller records; the log adds the sequence, time and hashes.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub api: &'a str,
    pub version: Option<&'a semver::Version>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

fn hash_of(entry: &Entry) -> String {
    ChainLink {
        seq: entry.seq,
        at_ms: entry.at_ms,
        actor: &entry.actor,
        action: &entry.action,
        api: &entry.api,
        version: entry.version.as_deref(),
        detail: &entry.detail,
        prev: &entry.prev,
    }
    .hash()
}

fn entry_key(seq: u64) -> String {
    format!("{ENTRY_PREFIX}{seq:020}")
}

/// Appends `event` to the log held in `tree`, inside the caller's transaction.
pub fn append<E>(tree: &TxTree<'_>, event: &Event<'_>, at_ms: u64) -> Result<Entry, Abort<E>> {
    let head: Head = tree.get_json(HEAD_KEY)?.unwrap_or(Head {
        seq: 0,
        hash: GENESIS.to_owned(),
    });
    let mut entry = Entry {
        seq: head.seq + 1,
        at_ms,
        actor: event.actor.to_owned(),
        action: event.action.to_owned(),
        api: event.api.to_owned(),
        version: event.version.map(ToString::to_string),
        detail: event.detail.clone(),
        prev: head.hash,
        hash: String::new(),
    };
    entry.hash = hash_of(&entry);
    tree.insert_json(&entry_key(entry.seq), &entry)?;
    tree.insert_json(
        HEAD_KEY,
        &Head {
            seq: entry.seq,
            hash: entry.hash.clone(),
        },
    )?;
    Ok(entry)
}

/// Every entry, oldest first.
pub fn entries(tree: &Tree) -> sfop_store::Result<Vec<Entry>> {
    tree.prefix_json::<Entry>(ENTRY_PREFIX)
        .map(|r| r.map(|(_, e)| e))
        .collect()
}

/// Re-computes the chain from the first entry and compares it with what is
/// stored, including the head.
pub fn verify(tree: &Tree) -> sfop_store::Result<Verification> {
    let mut prev = GENESIS.to_owned();
    let mut checked = 0;
    let broken = |checked, why: String| Verification {
        entries: checked,
        broken: Some(why),
    };
    for item in tree.prefix_json::<Entry>(ENTRY_PREFIX) {
        let (key, entry) = match item {
            Ok(kv) => kv,
            Err(e) => return Ok(broken(checked, format!("an entry is unreadable: {e}"))),
        };
        let expected_seq = checked + 1;
        if entry.seq != expected_seq || key != entry_key(entry.seq) {
            return Ok(broken(
                checked,
                format!("entry {expected_seq} is missing or out of place (found {key})"),
            ));
        }
        if entry.prev != prev {
            return Ok(broken(
                checked,
                format!("entry {} does not follow entry {}", entry.seq, checked),
            ));
        }
        if hash_of(&entry) != entry.hash {
            return Ok(broken(
                checked,
                format!("entry {} was altered after it was written", entry.seq),
            ));
        }
        prev = entry.hash;
        checked += 1;
    }
    let head: Option<Head> = match tree.get_json(HEAD_KEY) {
        Ok(head) => head,
        Err(e) => return Ok(broken(checked, format!("the head is unreadable: {e}"))),
    };
    let (head_seq, head_hash) = head.map_or((0, GENESIS.to_owned()), |h| (h.seq, h.hash));
    if head_seq != checked || head_hash != prev {
        return Ok(broken(
            checked,
            format!(
                "the log ends at entry {checked} but its head names entry {head_seq}: entries were removed"
            ),
        ));
    }
    Ok(Verification {
        entries: checked,
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfop_store::Store;

    fn log(store: &Store, tree: &Tree, n: u64) {
        for i in 0..n {
            let version = semver::Version::new(1, i, 0);
            let r = store.transaction::<_, ()>(&[tree], |t| {
                append(
                    &t[0],
                    &Event {
                        actor: "ops",
                        action: "promote",
                        api: "bank-status",
                        version: Some(&version),
                        detail: format!("step {i}"),
                    },
                    1_000 + i,
                )
            });
            assert!(r.is_ok());
        }
    }

    #[test]
    fn detects_edits_removals_and_truncation() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let tree = store.tree("audit")?;
        assert_eq!(verify(&tree)?.broken, None);
        log(&store, &tree, 4);
        assert_eq!(
            verify(&tree)?,
            Verification {
                entries: 4,
                broken: None
            }
        );
        let all = entries(&tree)?;
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].prev, all[0].hash);

        // An edited detail.
        let mut edited = all[1].clone();
        edited.detail = "step 9".into();
        tree.insert_json(&entry_key(2), &edited)?;
        let v = verify(&tree)?;
        assert_eq!(v.entries, 1);
        assert!(v.broken.unwrap_or_default().contains("entry 2 was altered"));
        // Rehashing the edited entry does not help: the next one no longer follows.
        edited.hash = hash_of(&edited);
        tree.insert_json(&entry_key(2), &edited)?;
        let v = verify(&tree)?;
        assert!(
            v.broken
                .unwrap_or_default()
                .contains("entry 3 does not follow")
        );
        tree.insert_json(&entry_key(2), &all[1])?;
        assert_eq!(verify(&tree)?.broken, None);

        // A removed entry in the middle, and at the end.
        tree.remove(entry_key(3).as_bytes())?;
        assert!(
            verify(&tree)?
                .broken
                .unwrap_or_default()
                .contains("entry 3 is missing")
        );
        tree.insert_json(&entry_key(3), &all[2])?;
        tree.remove(entry_key(4).as_bytes())?;
        assert!(
            verify(&tree)?
                .broken
                .unwrap_or_default()
                .contains("entries were removed")
        );
        Ok(())
    }
}
