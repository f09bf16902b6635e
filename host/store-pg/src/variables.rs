//! Plugins' variables set through the admin API, shared by every node
//! (`api_variables`, V7; ADR 0027). The store holds each value as the node
//! that set it sealed it under the cluster's shared variable key: it never
//! sees one in clear, nor does the audit log. A change bumps the config
//! version with its audit entry in one transaction; nodes read every value
//! with the [`Snapshot`](crate::Snapshot) and load the API's serving
//! versions with them.

use std::collections::BTreeMap;

use crate::audit::{self, AuditEvent};
use crate::{Cluster, Error, Result, bump_config_version, expect_config_version};

/// Every value set through the admin API: API, then variable, to the sealed
/// bytes.
pub type SealedValues = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

impl Cluster {
    /// Sets (`Some`: the sealed bytes) or unsets (`None`) the value of
    /// `variable` of `api`, writes `event` to the audit log and bumps the
    /// config version, in one transaction; returns the new version. With
    /// `expected`, refuses (changing nothing) when the config version moved
    /// since the caller read it: the caller checked the change against the
    /// values and versions of that config version. Unsetting a value that
    /// is not set is refused too.
    pub async fn set_variable(
        &self,
        api: &str,
        variable: &str,
        sealed: Option<&[u8]>,
        expected: Option<u64>,
        event: &AuditEvent<'_>,
    ) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        expect_config_version(&tx, expected).await?;
        match sealed {
            Some(sealed) => {
                tx.execute(
                    "INSERT INTO api_variables (api, variable, sealed, updated_at) \
                     VALUES ($1, $2, $3, now()) \
                     ON CONFLICT (api, variable) DO UPDATE SET sealed = EXCLUDED.sealed, \
                     updated_at = EXCLUDED.updated_at",
                    &[&api, &variable, &sealed],
                )
                .await?;
            }
            None => {
                let removed = tx
                    .execute(
                        "DELETE FROM api_variables WHERE api = $1 AND variable = $2",
                        &[&api, &variable],
                    )
                    .await?;
                if removed == 0 {
                    return Err(Error::Conflict(format!(
                        "{api} has no value of {variable} set through the admin API"
                    )));
                }
            }
        }
        audit::append(&tx, event).await?;
        let version = bump_config_version(&tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Every value set through the admin API, as of now.
    pub async fn variables(&self) -> Result<SealedValues> {
        let mut conn = self.conn().await?;
        let tx = crate::consistent(&mut conn).await?;
        let values = read_all(&tx).await?;
        tx.commit().await?;
        Ok(values)
    }
}

/// Every value, read inside `tx` (the snapshot's transaction, so that the
/// values and the config version that numbers them agree).
pub(crate) async fn read_all(tx: &tokio_postgres::Transaction<'_>) -> Result<SealedValues> {
    let mut values = SealedValues::new();
    for row in tx
        .query(
            "SELECT api, variable, sealed FROM api_variables ORDER BY api, variable",
            &[],
        )
        .await?
    {
        values
            .entry(row.get(0))
            .or_default()
            .insert(row.get(1), row.get(2));
    }
    Ok(values)
}
