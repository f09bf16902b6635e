//! Revoked token blocks. Each revocation takes the next number of the
//! `revocation_feed` row, whose lock orders revokers, so a node that has
//! read every revocation up to N has missed none numbered N or lower.

use crate::{Cluster, REVOCATION_CHANNEL, Result};

impl Cluster {
    /// Revokes every block with one of `ids` (hex revocation ids); durable
    /// and announced when this returns. Returns the feed's new number.
    pub async fn revoke(&self, ids: &[String]) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let seq: i64 = tx
            .query_one(
                "UPDATE revocation_feed SET seq = seq + 1 RETURNING seq",
                &[],
            )
            .await?
            .get(0);
        for id in ids {
            tx.execute(
                "INSERT INTO revocations (revocation_id, seq, revoked_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (revocation_id) DO NOTHING",
                &[id, &seq],
            )
            .await?;
        }
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&REVOCATION_CHANNEL, &seq.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(seq as u64)
    }

    /// The revocations numbered above `after`, and the feed's number they
    /// bring a reader up to.
    pub async fn revocations_since(&self, after: u64) -> Result<(Vec<String>, u64)> {
        let mut conn = self.conn().await?;
        let tx = crate::consistent(&mut conn).await?;
        let seq: i64 = tx
            .query_one("SELECT seq FROM revocation_feed", &[])
            .await?
            .get(0);
        let ids = tx
            .query(
                "SELECT revocation_id FROM revocations WHERE seq > $1 AND seq <= $2",
                &[&(after as i64), &seq],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await?;
        Ok((ids, seq as u64))
    }
}
