//! The hash-chained audit log in `audit_log`: one writer at a time (a
//! transaction-scoped advisory lock), each entry hashing its content and the
//! previous entry's hash, the head kept in `audit_head`. The hashed content
//! is the same JSON as the embedded store's log (management's `audit.rs`),
//! so a chain reads the same on either store.

use sfop_core::audit::{ChainLink, GENESIS};

use crate::{Cluster, Result};

/// The hash before the first entry.
/// The advisory lock that makes appends one at a time.
const AUDIT_LOCK: i64 = 0x5f0b_0002;

/// What a caller records; the log adds the sequence, time and hashes.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub api: &'a str,
    pub version: Option<&'a str>,
    pub detail: String,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    pub actor: String,
    pub action: String,
    pub api: String,
    pub version: Option<String>,
    pub detail: String,
    pub prev: String,
    pub hash: String,
}

/// The outcome of [`Cluster::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries checked and found sound, from the first.
    pub entries: u64,
    /// Where and why the chain breaks, if it does.
    pub broken: Option<String>,
}

fn hash_of(e: &AuditEntry) -> String {
    ChainLink {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: &e.actor,
        action: &e.action,
        api: &e.api,
        version: e.version.as_deref(),
        detail: &e.detail,
        prev: &e.prev,
    }
    .hash()
}

/// Appends `event` inside `tx`: the entry commits with the change it
/// describes, or not at all.
pub(crate) async fn append(
    tx: &tokio_postgres::Transaction<'_>,
    event: &AuditEvent<'_>,
) -> Result<AuditEntry> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
        .await?;
    let head = tx
        .query_one(
            "SELECT seq, hash, (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
             FROM audit_head",
            &[],
        )
        .await?;
    let (seq, prev, now_ms): (i64, String, i64) = (head.get(0), head.get(1), head.get(2));
    let mut entry = AuditEntry {
        seq: seq as u64 + 1,
        at_ms: now_ms as u64,
        actor: event.actor.to_owned(),
        action: event.action.to_owned(),
        api: event.api.to_owned(),
        version: event.version.map(str::to_owned),
        detail: event.detail.clone(),
        prev,
        hash: String::new(),
    };
    entry.hash = hash_of(&entry);
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, api, version, detail, prev, hash) \
         VALUES ($1, to_timestamp($2::bigint / 1000.0), $3, $4, $5, $6, $7, $8, $9)",
        &[
            &(entry.seq as i64),
            &(entry.at_ms as i64),
            &entry.actor,
            &entry.action,
            &entry.api,
            &entry.version,
            &entry.detail,
            &entry.prev,
            &entry.hash,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2",
        &[&(entry.seq as i64), &entry.hash],
    )
    .await?;
    Ok(entry)
}

impl Cluster {
    /// Appends one entry on its own (an event with no state change).
    pub async fn audit_append(&self, event: &AuditEvent<'_>) -> Result<AuditEntry> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let entry = append(&tx, event).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Every entry, oldest first.
    pub async fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT seq, (extract(epoch FROM at) * 1000)::bigint, actor, action, api, \
                 version, detail, prev, hash FROM audit_log ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get::<_, i64>(0) as u64,
                at_ms: r.get::<_, i64>(1) as u64,
                actor: r.get(2),
                action: r.get(3),
                api: r.get(4),
                version: r.get(5),
                detail: r.get(6),
                prev: r.get(7),
                hash: r.get(8),
            })
            .collect())
    }

    /// Re-computes the chain from the first entry and compares it with the
    /// stored hashes and head.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        let entries = self.audit_entries().await?;
        let conn = self.conn().await?;
        let head = conn
            .query_one("SELECT seq, hash FROM audit_head", &[])
            .await?;
        let (head_seq, head_hash): (i64, String) = (head.get(0), head.get(1));
        let mut prev = GENESIS.to_owned();
        let mut checked = 0u64;
        let broken = |checked, why: String| AuditVerification {
            entries: checked,
            broken: Some(why),
        };
        for entry in entries {
            let expected = checked + 1;
            if entry.seq != expected {
                return Ok(broken(
                    checked,
                    format!("entry {expected} is missing (found {})", entry.seq),
                ));
            }
            if entry.prev != prev {
                return Ok(broken(
                    checked,
                    format!("entry {} does not follow entry {checked}", entry.seq),
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
        if head_seq as u64 != checked || head_hash != prev {
            return Ok(broken(
                checked,
                format!(
                    "the log ends at entry {checked} but its head names entry {head_seq}: \
                     entries were removed"
                ),
            ));
        }
        Ok(AuditVerification {
            entries: checked,
            broken: None,
        })
    }
}
