//! What operators and developers change in the bank's records (an
//! institution onboarded, its contract accounts, limits and state), as
//! values. The admin API and the portal describe a change and hand it to
//! [`VirtualBank::apply_change`] on one node, or to
//! [`ClusterBank::submit`](crate::ClusterBank::submit) on a cluster, where
//! every node applies the same changes in the same order to its own bank
//! (docs/adr/0030-ledger-and-accounts-on-postgresql.md, "The bank's records
//! on every node"). Applying is the decision: a change refused on one node
//! is refused on every node, since they all apply it to the same records.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sfop_core::ledger::BankError;
use sfop_store_pg::{OpenedAccount, Snapshot};
use tokio::sync::{Mutex, watch};

use crate::institutions::{
    InstitutionView, NewInstitution, SANDBOX_BANK, limits_edit, resume_edit, sandbox_holder_name,
    state_edit,
};
use crate::model::{InstitutionState, Limits, account_key};
use crate::{ClusterBank, Error, Result, TREASURY_ACCOUNT_NUM, VirtualBank};

/// How many applied changes' outcomes a node keeps for the callers that
/// submitted them (each takes its own at once).
const OUTCOMES_KEPT: usize = 256;

/// How long a node waits before trying again to apply a change it could
/// not (its disk, or the database, failed).
const RETRY: Duration = Duration::from_secs(1);

/// One change to the bank's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BankChange {
    /// Onboards an institution ([`VirtualBank::create_institution`]).
    CreateInstitution(NewInstitution),
    /// Registers an existing account as a contract account, unverified.
    RegisterContractAccount {
        client_use_code: String,
        bank_code_std: String,
        account_num: String,
    },
    /// Verifies a registered contract account.
    VerifyContractAccount {
        client_use_code: String,
        bank_code_std: String,
        account_num: String,
    },
    /// Opens a sandbox contract account with test funds, at `now_millis`.
    OpenSandboxContractAccount {
        client_use_code: String,
        opening_balance: u64,
        now_millis: u64,
    },
    /// Sets the limits given; the others stay.
    SetInstitutionLimits {
        client_use_code: String,
        #[serde(default)]
        withdraw_limits: Option<Limits>,
        #[serde(default)]
        deposit_limits: Option<Limits>,
    },
    /// Approves or suspends.
    SetInstitutionState {
        client_use_code: String,
        state: InstitutionState,
    },
    /// Resumes a suspended institution (refused for any other state).
    ResumeInstitution { client_use_code: String },
}

/// What an applied change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The institution as the change left it.
    pub institution: InstitutionView,
    /// The account a sandbox opening opened.
    pub account_num: Option<String>,
}

impl Applied {
    fn of(institution: InstitutionView) -> Self {
        Self {
            institution,
            account_num: None,
        }
    }
}

/// The number of the sandbox contract account that the change at cluster
/// version `version` opens: `52` and 11 digits, apart from the numbers a
/// single node gives (`51…`, from its own counter), and the same on every
/// node.
pub(crate) fn clustered_sandbox_account_num(version: u64) -> String {
    format!("5{:012}", 200_000_000_000 + version % 100_000_000_000)
}

impl Error {
    /// Whether this is the change's refusal (its input or the records it
    /// meets), which every node applying it meets the same way, rather
    /// than this node's failure to apply it.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_)
                | Error::Conflict(_)
                | Error::UnknownBank(_)
                | Error::UnknownUser(_)
                | Error::UnknownAccount(_)
                | Error::UnknownInstitution(_)
                | Error::NotTheirs { .. }
        )
    }
}

impl VirtualBank {
    /// Applies `change`. `version` is its place in a cluster's order
    /// (`None` on a single node): it numbers a sandbox account, so that a
    /// change applied twice (a node stopped between applying it and
    /// recording so) opens one account.
    pub fn apply_change(&self, change: &BankChange, version: Option<u64>) -> Result<Applied> {
        match change {
            BankChange::CreateInstitution(new) => self.create_institution(new).map(Applied::of),
            BankChange::RegisterContractAccount {
                client_use_code,
                bank_code_std,
                account_num,
            } => self
                .register_contract_account(client_use_code, bank_code_std, account_num)
                .map(Applied::of),
            BankChange::VerifyContractAccount {
                client_use_code,
                bank_code_std,
                account_num,
            } => self
                .verify_contract_account(client_use_code, bank_code_std, account_num)
                .map(Applied::of),
            BankChange::OpenSandboxContractAccount {
                client_use_code,
                opening_balance,
                now_millis,
            } => {
                let (institution, num) = match version {
                    None => self.open_sandbox_contract_account(
                        client_use_code,
                        *opening_balance,
                        *now_millis,
                    )?,
                    Some(version) => {
                        let num = clustered_sandbox_account_num(version);
                        let view = self.open_sandbox_contract_account_numbered(
                            client_use_code,
                            &num,
                            *opening_balance,
                            *now_millis,
                        )?;
                        (view, num)
                    }
                };
                Ok(Applied {
                    institution,
                    account_num: Some(num),
                })
            }
            BankChange::SetInstitutionLimits {
                client_use_code,
                withdraw_limits,
                deposit_limits,
            } => self
                .set_institution_limits(client_use_code, *withdraw_limits, *deposit_limits)
                .map(Applied::of),
            BankChange::SetInstitutionState {
                client_use_code,
                state,
            } => self
                .set_institution_state(client_use_code, *state)
                .map(Applied::of),
            BankChange::ResumeInstitution { client_use_code } => {
                self.resume_institution(client_use_code).map(Applied::of)
            }
        }
    }

    /// Checks `change` against this bank's records as they are, changing
    /// nothing: the rules [`Self::apply_change`] applies. A cluster node
    /// checks before it submits, so that what it would refuse is not
    /// recorded for every node; applying stays the decision (another
    /// node's change may come first).
    pub(crate) fn check_change(&self, change: &BankChange) -> Result<()> {
        match change {
            BankChange::CreateInstitution(new) => self.new_record(new).map(drop),
            BankChange::RegisterContractAccount {
                client_use_code,
                bank_code_std,
                account_num,
            } => self.check_edit(
                client_use_code,
                self.register_edit(bank_code_std, account_num)?,
            ),
            BankChange::VerifyContractAccount {
                client_use_code,
                bank_code_std,
                account_num,
            } => self.check_edit(
                client_use_code,
                self.verify_edit(client_use_code, bank_code_std, account_num)?,
            ),
            BankChange::OpenSandboxContractAccount {
                client_use_code, ..
            } => self.check_edit(client_use_code, |_| Ok(())),
            BankChange::SetInstitutionLimits {
                client_use_code,
                withdraw_limits,
                deposit_limits,
            } => self.check_edit(
                client_use_code,
                limits_edit(*withdraw_limits, *deposit_limits)?,
            ),
            BankChange::SetInstitutionState {
                client_use_code,
                state,
            } => self.check_edit(client_use_code, state_edit(client_use_code, *state)),
            BankChange::ResumeInstitution { client_use_code } => {
                self.check_edit(client_use_code, resume_edit(client_use_code))
            }
        }
    }

    /// The cluster version of the last change this node's bank applied.
    pub(crate) fn applied_change_version(&self) -> Result<u64> {
        Ok(self
            .t
            .meta
            .get_json::<u64>("cluster_change_version")?
            .unwrap_or(0))
    }

    /// Records that every change up to `version` is applied; durable when
    /// it returns.
    pub(crate) fn set_applied_change_version(&self, version: u64) -> Result<()> {
        let _w = self.lock();
        self.t
            .meta
            .insert_json("cluster_change_version", &version)?;
        self.flush()
    }
}

/// A node's applying of the cluster's changes: one at a time, in order;
/// the outcomes of the last few kept for their submitters.
#[derive(Debug, Default)]
pub(crate) struct Applier {
    outcomes: Mutex<VecDeque<(u64, Result<Applied>)>>,
    /// The last applying failed: this node's records may miss a change
    /// (a suspension, a limit), so what they decide is refused until an
    /// applying succeeds.
    stalled: AtomicBool,
}

impl ClusterBank {
    /// Makes `change` on every node. This node first applies every change
    /// the cluster has recorded (so that one another node acknowledged is
    /// known here, not refused as unknown), then checks `change` against
    /// its records: what they refuse is refused here and recorded nowhere.
    /// Then the change is appended to the cluster's changes, applied here,
    /// and answered with what applying it came to. The other nodes apply it
    /// when their feed reaches its version; they meet the same records, so
    /// they decide the same way. The database away, nothing is changed
    /// ([`Error::Cluster`]).
    pub async fn submit(&self, change: &BankChange) -> Result<Applied> {
        self.catch_up(None).await?;
        let (bank, checked) = (self.bank.clone(), change.clone());
        crate::on_blocking_pool(move || bank.check_change(&checked)).await?;
        let value = serde_json::to_value(change)
            .map_err(|e| Error::Failed(format!("the change does not encode: {e}")))?;
        let version = self.cluster.append_bank_change(&value).await?;
        match self.catch_up(Some(version)).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Err(Error::Failed(format!(
                "change {version} was applied, but its outcome was not kept: read the \
                 institution back"
            ))),
            // Recorded for every node, not applied here yet: saying
            // "nothing changed" would be wrong, and a retry may be refused
            // as a repeat.
            Err(e) => Err(Error::Failed(format!(
                "change {version} is recorded for every node, but this node has not applied it \
                 yet ({e}); read the institution back before sending it again"
            ))),
        }
    }

    /// Applies every change this node has not, in order, and takes the
    /// outcome of `want` if it was among them (or among the last ones
    /// applied). A change that fails on this node (not refused: its disk
    /// or the database failed) stops the applying there, to be tried
    /// again: skipping it would leave this node's records apart from the
    /// others'.
    pub(crate) async fn catch_up(&self, want: Option<u64>) -> Result<Option<Result<Applied>>> {
        let caught_up = self.catch_up_locked(want).await;
        self.changes
            .stalled
            .store(caught_up.is_err(), Ordering::Release);
        caught_up
    }

    /// Whether this node applied every cluster change it has read so far:
    /// false while one cannot be applied here (and this node refuses to
    /// move money, [`ClusterBank::ensure_current`]), for an operator's
    /// readiness check.
    pub fn is_current(&self) -> bool {
        !self.changes.stalled.load(Ordering::Acquire)
    }

    /// Refused (`A0002`, the platform's failure) while this node could not
    /// apply the cluster's changes: its institutions may be out of date,
    /// and a suspended one must not move money here. Nothing was done.
    pub(crate) fn ensure_current(&self) -> std::result::Result<(), BankError> {
        if !self.is_current() {
            tracing::warn!("virtual bank: refused while the cluster's changes cannot be applied");
            return Err(BankError::Backend(
                "this node's bank records are behind the cluster's (a change could not be \
                 applied here): nothing was done; send it again, through another node if it \
                 persists"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn catch_up_locked(&self, want: Option<u64>) -> Result<Option<Result<Applied>>> {
        let mut outcomes = self.changes.outcomes.lock().await;
        let mut applied = self.bank.applied_change_version()?;
        loop {
            let rows = self.cluster.bank_changes_after(applied).await?;
            let Some(last) = rows.last().map(|r| r.version) else {
                break;
            };
            for row in rows {
                let change: BankChange = serde_json::from_value(row.change).map_err(|e| {
                    Error::Failed(format!(
                        "cluster change {}: not a change this build knows ({e}); upgrade \
                         every node to the same build",
                        row.version
                    ))
                })?;
                let outcome = match self.apply_one(change, row.version).await {
                    Err(e) if !e.is_refusal() => return Err(e),
                    outcome => outcome,
                };
                let bank = self.bank.clone();
                let version = row.version;
                crate::on_blocking_pool(move || bank.set_applied_change_version(version)).await?;
                applied = version;
                if outcomes.len() == OUTCOMES_KEPT {
                    outcomes.pop_front();
                }
                outcomes.push_back((version, outcome));
            }
            debug_assert_eq!(applied, last);
        }
        Ok(want.and_then(|want| {
            let at = outcomes.iter().position(|(v, _)| *v == want)?;
            outcomes.remove(at).map(|(_, outcome)| outcome)
        }))
    }

    /// Applies one change to this node's bank (on the blocking pool: it
    /// writes and flushes) and, for an account it opened, puts that on the
    /// ledger with its opening balance (once for the cluster, whichever
    /// node gets there first).
    async fn apply_one(&self, change: BankChange, version: u64) -> Result<Applied> {
        let bank = self.bank.clone();
        let opening = match &change {
            BankChange::OpenSandboxContractAccount {
                opening_balance, ..
            } => Some(*opening_balance),
            _ => None,
        };
        let applied =
            crate::on_blocking_pool(move || bank.apply_change(&change, Some(version))).await?;
        if let (Some(balance), Some(num)) = (opening, &applied.account_num) {
            let id = account_key(SANDBOX_BANK, num);
            let funded_from = account_key(SANDBOX_BANK, TREASURY_ACCOUNT_NUM);
            let holder_name = sandbox_holder_name(&applied.institution.name);
            let opened = self
                .cluster
                .open_ledger_account(&OpenedAccount {
                    id: &id,
                    bank_code: SANDBOX_BANK,
                    holder_name: &holder_name,
                    opening_balance: i64::try_from(balance).map_err(|_| {
                        Error::Invalid(format!("opening_balance: {balance} is too large"))
                    })?,
                    funded_from: &funded_from,
                })
                .await?;
            if opened {
                tracing::info!(account = %id, balance, "virtual bank: account opened on the ledger");
            }
        }
        Ok(applied)
    }

    /// `view` with its contract accounts' balances as the cluster's ledger
    /// holds them: on a cluster the node's own bank keeps only what they
    /// opened with.
    pub async fn with_ledger_balances(&self, mut view: InstitutionView) -> Result<InstitutionView> {
        for account in &mut view.contract_accounts {
            let id = account_key(&account.bank_code_std, &account.account_num);
            if let Some(balance) = self.cluster.balance(&id).await? {
                account.balance_amt = balance;
            }
        }
        Ok(view)
    }

    /// Applies the cluster's changes whenever the feed publishes a newer
    /// version, until the feed stops; and, while this node is behind (an
    /// applying failed, here or in a [`ClusterBank::submit`] that met the
    /// database away), again every [`RETRY`]: a node that recovers without
    /// a new version (the database back, nothing changed meanwhile) must
    /// not stay behind, refusing money and out of rotation.
    pub async fn follow(self, mut snapshots: watch::Receiver<Arc<Snapshot>>) {
        loop {
            // `changed` is cancel-safe: a version published during the
            // wait is seen at the next turn.
            match tokio::time::timeout(RETRY, snapshots.changed()).await {
                Ok(Err(_)) => return, // the feed stopped
                Ok(Ok(())) => {}
                Err(_) if self.is_current() => continue,
                Err(_) => {}
            }
            if let Err(e) = self.catch_up(None).await {
                tracing::error!(
                    error = %e,
                    "virtual bank: applying the cluster's changes failed; trying again"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfop_store::Store;

    #[test]
    fn a_change_applied_twice_opens_one_account() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        let create = BankChange::CreateInstitution(NewInstitution {
            client_use_code: "M223456789".into(),
            name: "둘째핀테크".into(),
            state: InstitutionState::Requested,
            wd_pass_phrase: None,
            withdraw_limits: None,
            deposit_limits: None,
        });
        bank.apply_change(&create, Some(1))?;
        assert!(
            matches!(bank.apply_change(&create, Some(1)), Err(e) if e.is_refusal()),
            "a second create is refused as the first node's would be"
        );
        let open = BankChange::OpenSandboxContractAccount {
            client_use_code: "M223456789".into(),
            opening_balance: 1_000,
            now_millis: 1_700_000_000_000,
        };
        let total = bank.total_balance()?;
        let first = bank.apply_change(&open, Some(7))?;
        let again = bank.apply_change(&open, Some(7))?;
        assert_eq!(first.account_num.as_deref(), Some("5200000000007"));
        assert_eq!(first, again);
        assert_eq!(first.institution.contract_accounts.len(), 1);
        assert_eq!(first.institution.contract_accounts[0].balance_amt, 1_000);
        assert_eq!(bank.total_balance()?, total);
        // The round trip through JSON the cluster stores.
        let json = serde_json::to_value(&open)?;
        assert_eq!(json["op"], "open_sandbox_contract_account");
        assert_eq!(serde_json::from_value::<BankChange>(json)?, open);
        let resume = BankChange::ResumeInstitution {
            client_use_code: "M223456789".into(),
        };
        assert!(matches!(
            bank.apply_change(&resume, None),
            Err(Error::Conflict(_))
        ));
        Ok(())
    }
}
