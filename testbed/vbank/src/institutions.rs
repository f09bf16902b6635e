//! Using institutions as first-class records: onboarding (requested →
//! active ⇄ suspended), contract accounts at participant banks (registered,
//! then verified by the operator, or opened at once in the sandbox), and
//! per-transaction, daily and monthly limits. The ledger operations read the
//! same record in the transaction that books a transfer
//! (docs/adr/0017-institutions.md).

use serde::{Deserialize, Serialize};

use crate::model::{Account, Institution, InstitutionState, Limits, Owner, account_key};
use crate::{Error, NewAccount, Result, VirtualBank, secret};

/// What the operator (or a developer's request) fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstitution {
    /// `M` and 9 digits.
    pub client_use_code: String,
    pub name: String,
    pub state: InstitutionState,
    /// What `wd_pass_phrase` must be for deposits; `NONE` as in the
    /// reference testbed when absent.
    #[serde(default)]
    pub wd_pass_phrase: Option<String>,
    #[serde(default)]
    pub withdraw_limits: Option<Limits>,
    #[serde(default)]
    pub deposit_limits: Option<Limits>,
}

/// Limits of a new institution unless the operator sets others.
pub const DEFAULT_LIMITS: Limits = Limits {
    per_tran: 5_000_000,
    daily: 50_000_000,
    monthly: 500_000_000,
};

/// A contract account as operators and developers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractAccount {
    pub bank_code_std: String,
    pub bank_name: String,
    pub account_num: String,
    pub account_holder_name: String,
    /// Transfers use only verified contract accounts.
    pub verified: bool,
    pub balance_amt: i64,
}

/// An institution as operators and developers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionView {
    pub client_use_code: String,
    pub name: String,
    pub state: InstitutionState,
    pub contract_accounts: Vec<ContractAccount>,
    pub withdraw_limits: Limits,
    pub deposit_limits: Limits,
}

/// Where the virtual bank opens sandbox contract accounts.
pub const SANDBOX_BANK: &str = "097";

/// The holder name of an institution's sandbox account: its name, cut to
/// the 20 characters an account's holder name has.
pub(crate) fn sandbox_holder_name(institution_name: &str) -> String {
    institution_name.chars().take(20).collect()
}

fn check_code(code: &str) -> Result<()> {
    let ok =
        code.len() == 10 && code.starts_with('M') && secret::fintech_use_num(code, 0).is_some();
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "client_use_code: {code:?} must be M followed by 9 digits"
        )))
    }
}

fn check_limits(field: &str, l: &Limits) -> Result<()> {
    if l.per_tran == 0 || l.per_tran > l.daily || l.daily > l.monthly {
        return Err(Error::Invalid(format!(
            "{field}: 0 < per_tran <= daily <= monthly ({} / {} / {})",
            l.per_tran, l.daily, l.monthly
        )));
    }
    Ok(())
}

impl VirtualBank {
    fn stored_institution(&self, code: &str) -> Result<Institution> {
        self.t
            .institutions
            .get_json(code)?
            .ok_or_else(|| Error::UnknownInstitution(code.to_owned()))
    }

    /// Changes the stored institution `code` with `f`, under the writer
    /// lock; durable when it returns.
    fn update_institution(
        &self,
        code: &str,
        f: impl FnOnce(&mut Institution) -> Result<()>,
    ) -> Result<InstitutionView> {
        {
            let _w = self.lock();
            let mut inst = self.stored_institution(code)?;
            f(&mut inst)?;
            self.t.institutions.insert_json(code, &inst)?;
            self.flush()?;
        }
        self.institution(code)?
            .ok_or_else(|| Error::UnknownInstitution(code.to_owned()))
    }

    /// Checks `edit` of institution `code` against its record as it is,
    /// changing nothing (what a cluster node does before it submits a
    /// change, so that a change refused here is not recorded for every
    /// node).
    pub(crate) fn check_edit(
        &self,
        code: &str,
        edit: impl FnOnce(&mut Institution) -> Result<()>,
    ) -> Result<()> {
        edit(&mut self.stored_institution(code)?)
    }

    /// The record `new` creates, checked: its code, name and limits, and
    /// that the code is not onboarded yet.
    pub(crate) fn new_record(&self, new: &NewInstitution) -> Result<Institution> {
        check_code(&new.client_use_code)?;
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 50 {
            return Err(Error::Invalid("name: must be 1-50 characters".into()));
        }
        let withdraw_limits = new.withdraw_limits.unwrap_or(DEFAULT_LIMITS);
        let deposit_limits = new.deposit_limits.unwrap_or(DEFAULT_LIMITS);
        check_limits("withdraw_limits", &withdraw_limits)?;
        check_limits("deposit_limits", &deposit_limits)?;
        if self
            .t
            .institutions
            .get(new.client_use_code.as_bytes())?
            .is_some()
        {
            return Err(Error::Invalid(format!(
                "client_use_code: institution {} exists",
                new.client_use_code
            )));
        }
        Ok(Institution {
            name: name.to_owned(),
            contract_accounts: Vec::new(),
            wd_pass_phrase: new.wd_pass_phrase.clone().unwrap_or_else(|| "NONE".into()),
            withdraw_limits,
            deposit_limits,
            state: new.state,
            unverified_accounts: Vec::new(),
        })
    }

    /// Creates an institution; refuses a code already onboarded.
    pub fn create_institution(&self, new: &NewInstitution) -> Result<InstitutionView> {
        {
            let _w = self.lock();
            let record = self.new_record(new)?;
            self.t
                .institutions
                .insert_json(&new.client_use_code, &record)?;
            self.flush()?;
        }
        self.institution(&new.client_use_code)?
            .ok_or_else(|| Error::UnknownInstitution(new.client_use_code.clone()))
    }

    /// The institution `code`, with its contract accounts' balances.
    pub fn institution(&self, code: &str) -> Result<Option<InstitutionView>> {
        let Some(inst) = self.t.institutions.get_json::<Institution>(code)? else {
            return Ok(None);
        };
        let mut contract_accounts = Vec::new();
        let keys = inst
            .contract_accounts
            .iter()
            .map(|k| (k, true))
            .chain(inst.unverified_accounts.iter().map(|k| (k, false)));
        for (key, verified) in keys {
            let (bank_code, account_num) = key.split_once('/').unwrap_or((key, ""));
            let account: Option<Account> = self.t.accounts.get_json(key)?;
            contract_accounts.push(ContractAccount {
                bank_name: self.bank_name(bank_code)?,
                bank_code_std: bank_code.to_owned(),
                account_num: account_num.to_owned(),
                account_holder_name: account
                    .as_ref()
                    .map(|a| a.holder_name.clone())
                    .unwrap_or_default(),
                verified,
                balance_amt: account.map_or(0, |a| a.balance),
            });
        }
        Ok(Some(InstitutionView {
            client_use_code: code.to_owned(),
            name: inst.name,
            state: inst.state,
            contract_accounts,
            withdraw_limits: inst.withdraw_limits,
            deposit_limits: inst.deposit_limits,
        }))
    }

    /// Every institution, by code.
    pub fn institutions(&self) -> Result<Vec<InstitutionView>> {
        let codes: Vec<String> = self
            .t
            .institutions
            .values_json::<Institution>()?
            .into_iter()
            .map(|(code, _)| code)
            .collect();
        let mut out = Vec::with_capacity(codes.len());
        for code in codes {
            if let Some(view) = self.institution(&code)? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// Registers an existing account at a participant bank as a contract
    /// account of `code`, unverified: transfers use it once the operator
    /// has verified it ([`Self::verify_contract_account`]).
    pub fn register_contract_account(
        &self,
        code: &str,
        bank_code: &str,
        account_num: &str,
    ) -> Result<InstitutionView> {
        let edit = self.register_edit(bank_code, account_num)?;
        self.update_institution(code, edit)
    }

    /// What registering an account as a contract account does to an
    /// institution: the account must exist.
    pub(crate) fn register_edit(
        &self,
        bank_code: &str,
        account_num: &str,
    ) -> Result<impl FnOnce(&mut Institution) -> Result<()> + use<>> {
        let key = account_key(bank_code, account_num);
        if self.t.accounts.get_json::<Account>(&key)?.is_none() {
            return Err(Error::Invalid(format!(
                "account_num: no account {account_num} at bank {bank_code}"
            )));
        }
        Ok(move |inst: &mut Institution| {
            if !inst.contract_accounts.contains(&key) && !inst.unverified_accounts.contains(&key) {
                inst.unverified_accounts.push(key);
            }
            Ok(())
        })
    }

    /// Verifies a registered contract account: it exists, is open and
    /// active, and is held by the institution itself.
    pub fn verify_contract_account(
        &self,
        code: &str,
        bank_code: &str,
        account_num: &str,
    ) -> Result<InstitutionView> {
        let edit = self.verify_edit(code, bank_code, account_num)?;
        self.update_institution(code, edit)
    }

    /// What verifying a registered contract account does to institution
    /// `code`: it exists, is open and active, and is the institution's own.
    pub(crate) fn verify_edit(
        &self,
        code: &str,
        bank_code: &str,
        account_num: &str,
    ) -> Result<impl FnOnce(&mut Institution) -> Result<()> + use<>> {
        let key = account_key(bank_code, account_num);
        let account: Option<Account> = self.t.accounts.get_json(&key)?;
        let (code, bank_code, account_num) = (
            code.to_owned(),
            bank_code.to_owned(),
            account_num.to_owned(),
        );
        Ok(move |inst: &mut Institution| {
            if inst.contract_accounts.contains(&key) {
                return Ok(());
            }
            if !inst.unverified_accounts.contains(&key) {
                return Err(Error::Invalid(format!(
                    "account_num: {account_num} at bank {bank_code} is not registered to {code}"
                )));
            }
            match &account {
                None => {
                    return Err(Error::Invalid(format!(
                        "account_num: no account {account_num} at bank {bank_code}"
                    )));
                }
                Some(a) if a.owner != Owner::Institution(code.clone()) => {
                    return Err(Error::Invalid(format!(
                        "account_num: the account is held by {:?}, not by institution {code}",
                        a.holder_name
                    )));
                }
                Some(a) if a.state != crate::AccountState::Active => {
                    return Err(Error::Invalid(format!(
                        "account_num: the account is {:?}",
                        a.state
                    )));
                }
                Some(_) => {}
            }
            inst.unverified_accounts.retain(|k| k != &key);
            inst.contract_accounts.push(key);
            Ok(())
        })
    }

    /// Opens a sandbox contract account for `code` at the virtual bank
    /// ([`SANDBOX_BANK`]), held by the institution, with `opening_balance`
    /// of test funds from the bank's treasury; verified at once (the bank
    /// itself opened it). Returns the institution and the account number.
    pub fn open_sandbox_contract_account(
        &self,
        code: &str,
        opening_balance: u64,
        now_millis: u64,
    ) -> Result<(InstitutionView, String)> {
        self.stored_institution(code)?;
        let seq = {
            let _w = self.lock();
            let seq = self.t.meta.get_json::<u64>("contract_seq")?.unwrap_or(0) + 1;
            self.t.meta.insert_json("contract_seq", &seq)?;
            seq
        };
        // `5` (institution accounts, as the demo's), then 12 digits.
        let account_num = format!("5{:012}", 100_000_000_000 + seq);
        let view = self.open_sandbox_contract_account_numbered(
            code,
            &account_num,
            opening_balance,
            now_millis,
        )?;
        Ok((view, account_num))
    }

    /// [`Self::open_sandbox_contract_account`] with the number chosen by
    /// the caller (a cluster numbers it by its change, the same on every
    /// node). Opening it again is a no-op: the account is there and is
    /// the institution's contract account already.
    pub(crate) fn open_sandbox_contract_account_numbered(
        &self,
        code: &str,
        account_num: &str,
        opening_balance: u64,
        now_millis: u64,
    ) -> Result<InstitutionView> {
        let inst = self.stored_institution(code)?;
        let key = account_key(SANDBOX_BANK, account_num);
        if inst.contract_accounts.contains(&key) {
            return self
                .institution(code)?
                .ok_or_else(|| Error::UnknownInstitution(code.to_owned()));
        }
        self.open_account(
            &NewAccount {
                bank_code: SANDBOX_BANK.into(),
                account_num: account_num.to_owned(),
                owner: Owner::Institution(code.to_owned()),
                holder_name: sandbox_holder_name(&inst.name),
                holder_info: code.to_owned(),
                alias: "모계좌".into(),
                product_name: "기업자유예금".into(),
                account_type: "1".into(),
                maturity_date: None,
                overdraft_limit: 0,
                opening_balance,
            },
            now_millis,
        )?;
        self.update_institution(code, |inst| {
            inst.contract_accounts.push(key);
            Ok(())
        })
    }

    /// Sets an institution's limits (those given; the others stay).
    pub fn set_institution_limits(
        &self,
        code: &str,
        withdraw: Option<Limits>,
        deposit: Option<Limits>,
    ) -> Result<InstitutionView> {
        self.update_institution(code, limits_edit(withdraw, deposit)?)
    }

    /// Approves, suspends or resumes an institution. Approval needs a
    /// verified contract account (its apps could move no money otherwise);
    /// resuming applies only to a suspended one.
    pub fn set_institution_state(
        &self,
        code: &str,
        state: InstitutionState,
    ) -> Result<InstitutionView> {
        self.update_institution(code, state_edit(code, state))
    }

    /// Resumes institution `code`, refused unless it is suspended.
    pub fn resume_institution(&self, code: &str) -> Result<InstitutionView> {
        self.update_institution(code, resume_edit(code))
    }
}

/// What setting limits (those given) does to an institution.
pub(crate) fn limits_edit(
    withdraw: Option<Limits>,
    deposit: Option<Limits>,
) -> Result<impl FnOnce(&mut Institution) -> Result<()>> {
    for (field, l) in [("withdraw_limits", &withdraw), ("deposit_limits", &deposit)] {
        if let Some(l) = l {
            check_limits(field, l)?;
        }
    }
    Ok(move |inst: &mut Institution| {
        inst.withdraw_limits = withdraw.unwrap_or(inst.withdraw_limits);
        inst.deposit_limits = deposit.unwrap_or(inst.deposit_limits);
        Ok(())
    })
}

/// What resuming does to institution `code`: refused unless suspended.
pub(crate) fn resume_edit(code: &str) -> impl FnOnce(&mut Institution) -> Result<()> + use<'_> {
    move |inst: &mut Institution| match inst.state {
        InstitutionState::Suspended => {
            inst.state = InstitutionState::Active;
            Ok(())
        }
        _ => Err(Error::Conflict(format!(
            "client_use_code: {code} is not suspended"
        ))),
    }
}

/// What approving, suspending or resuming does to institution `code`.
pub(crate) fn state_edit(
    code: &str,
    state: InstitutionState,
) -> impl FnOnce(&mut Institution) -> Result<()> + use<'_> {
    move |inst: &mut Institution| {
        match (inst.state, state) {
            (_, InstitutionState::Active) if inst.contract_accounts.is_empty() => {
                return Err(Error::Invalid(format!(
                    "client_use_code: {code} has no verified contract account; add and verify one first"
                )));
            }
            (_, InstitutionState::Requested) => {
                return Err(Error::Invalid(
                    "state: an institution does not go back to requested".into(),
                ));
            }
            _ => {}
        }
        inst.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfop_store::Store;

    fn new(code: &str) -> NewInstitution {
        NewInstitution {
            client_use_code: code.into(),
            name: "새핀테크".into(),
            state: InstitutionState::Requested,
            wd_pass_phrase: None,
            withdraw_limits: None,
            deposit_limits: None,
        }
    }

    #[test]
    fn onboarding_from_request_to_suspension() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        let code = "M123456789";
        let view = bank.create_institution(&new(code))?;
        assert_eq!(view.state, InstitutionState::Requested);
        assert_eq!(view.withdraw_limits, DEFAULT_LIMITS);
        assert!(
            bank.create_institution(&new(code)).is_err(),
            "created twice"
        );
        assert!(bank.create_institution(&new("X1")).is_err());
        // No approval without a verified contract account.
        assert!(
            bank.set_institution_state(code, InstitutionState::Active)
                .is_err()
        );
        let (view, num) = bank.open_sandbox_contract_account(code, 1_000_000, 0)?;
        assert_eq!(view.contract_accounts.len(), 1);
        assert!(view.contract_accounts[0].verified);
        assert_eq!(view.contract_accounts[0].balance_amt, 1_000_000);
        assert_eq!(view.contract_accounts[0].account_num, num);
        // Someone else's account can be registered but not verified.
        let demo = crate::seed::DEMO_CONTRACT_ACCOUNT_NUM;
        let view = bank.register_contract_account(code, "097", demo)?;
        assert!(!view.contract_accounts[1].verified);
        assert!(bank.verify_contract_account(code, "097", demo).is_err());
        let view = bank.set_institution_state(code, InstitutionState::Active)?;
        assert_eq!(view.state, InstitutionState::Active);
        let limits = Limits {
            per_tran: 10,
            daily: 20,
            monthly: 30,
        };
        let view = bank.set_institution_limits(code, Some(limits), None)?;
        assert_eq!(view.withdraw_limits, limits);
        assert_eq!(view.deposit_limits, DEFAULT_LIMITS);
        let bad = Limits {
            per_tran: 30,
            daily: 20,
            monthly: 30,
        };
        assert!(bank.set_institution_limits(code, Some(bad), None).is_err());
        let view = bank.set_institution_state(code, InstitutionState::Suspended)?;
        assert_eq!(view.state, InstitutionState::Suspended);
        assert!(
            bank.institutions()?
                .iter()
                .any(|i| i.client_use_code == code)
        );
        assert_eq!(bank.audit()?, Ok(()));
        Ok(())
    }
}
