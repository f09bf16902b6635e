//! The sandbox's scripted fault rules (ADR 0010), shared by every node: a
//! rule set through one node applies on all, and a rule that applies a
//! number of times is counted down once per call whichever node serves it.
//! Rules are stored as their JSON (the vbank's `FaultRule`), with the
//! columns a reader filters on beside it; `sandbox_version` moves with
//! every change.

use crate::{Cluster, Result};

/// One stored rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRule {
    pub id: i64,
    /// The rule as JSON, `times` as it was written.
    pub rule: String,
    /// How many calls it still applies to; until removed when `None`.
    pub times: Option<i32>,
}

/// The columns of a new rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSandboxRule<'a> {
    pub client_id: Option<&'a str>,
    pub operation: Option<&'a str>,
    pub bank_code: Option<&'a str>,
    pub rule: &'a str,
    pub times: Option<i32>,
}

async fn bump(tx: &tokio_postgres::Transaction<'_>) -> Result<i64> {
    Ok(tx
        .query_one(
            "UPDATE sandbox_version SET version = version + 1 RETURNING version",
            &[],
        )
        .await?
        .get(0))
}

impl Cluster {
    /// The rules' version.
    pub async fn sandbox_version(&self) -> Result<i64> {
        let conn = self.conn().await?;
        Ok(conn
            .query_one("SELECT version FROM sandbox_version", &[])
            .await?
            .get(0))
    }

    /// Every rule, oldest first, at one version (which is returned).
    pub async fn sandbox_rules(&self) -> Result<(i64, Vec<SandboxRule>)> {
        let mut conn = self.conn().await?;
        let tx = crate::consistent(&mut conn).await?;
        let version: i64 = tx
            .query_one("SELECT version FROM sandbox_version", &[])
            .await?
            .get(0);
        let rules = tx
            .query(
                "SELECT id, rule::text, times FROM sandbox_rules ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| SandboxRule {
                id: r.get(0),
                rule: r.get(1),
                times: r.get(2),
            })
            .collect();
        tx.commit().await?;
        Ok((version, rules))
    }

    /// Adds a rule; its id.
    pub async fn add_sandbox_rule(&self, rule: &NewSandboxRule<'_>) -> Result<i64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO sandbox_rules (client_id, operation, bank_code, rule, times) \
                 VALUES ($1, $2, $3, $4::text::jsonb, $5) RETURNING id",
                &[
                    &rule.client_id,
                    &rule.operation,
                    &rule.bank_code,
                    &rule.rule,
                    &rule.times,
                ],
            )
            .await?
            .get(0);
        bump(&tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Removes rule `id`; whether it was there.
    pub async fn remove_sandbox_rule(&self, id: i64) -> Result<bool> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let removed = tx
            .execute("DELETE FROM sandbox_rules WHERE id = $1", &[&id])
            .await?;
        if removed == 0 {
            return Ok(false);
        }
        bump(&tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes every rule of `client_id` (every rule when `None`); how many.
    pub async fn clear_sandbox_rules(&self, client_id: Option<&str>) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let removed = match client_id {
            Some(client) => {
                tx.execute("DELETE FROM sandbox_rules WHERE client_id = $1", &[&client])
                    .await?
            }
            None => tx.execute("DELETE FROM sandbox_rules", &[]).await?,
        };
        if removed > 0 {
            bump(&tx).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Counts rule `id` down for one call it applies to (removing it at
    /// its last): `false` when it is gone (its last call was taken, on
    /// this node or another), so it does not apply.
    pub async fn take_sandbox_rule(&self, id: i64) -> Result<bool> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let mut taken = tx
            .execute(
                "UPDATE sandbox_rules SET times = times - 1, \
                 rule = jsonb_set(rule, '{times}', to_jsonb(times - 1)) \
                 WHERE id = $1 AND times > 1",
                &[&id],
            )
            .await?;
        if taken == 0 {
            taken = tx
                .execute(
                    "DELETE FROM sandbox_rules WHERE id = $1 AND times = 1",
                    &[&id],
                )
                .await?;
        }
        if taken == 0 {
            return Ok(false);
        }
        bump(&tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}
