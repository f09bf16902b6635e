//! Scripted faults and fixture refusals in front of the virtual bank, as
//! the real operator's simulator offers them, while the default stays the
//! stateful bank: a rule applies to matching calls (per client, per ledger
//! operation, a number of times) and everything else reaches the bank.
//!
//! - `timeout`: the bank **does** the operation (money moves, the
//!   `bank_tran_id` is used) and the answer is lost: the plugin sees
//!   `timeout` (`A0017`), and the outcome is found with `transfer-result`.
//! - `outage`: the bank is not reached: `timeout`, nothing happens.
//! - `duplicate`: refused as a repeated `bank_tran_id` (`A0326`), nothing happens.
//! - `refuse`: a fixture refusal with the rule's `rsp_code` and `rsp_message`.
//!
//! Register rules from Rust with [`FaultScript::add`], or per case in
//! `testbed.toml` (`faults = [...]`, testbed/README.md).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sfop_core::ledger::{
    Balance, BankAnswer, BankCall, ConsentScope, DepositRequest, HistoryPage, HistoryQuery,
    RealName, RealNameQuery, ReceiveCheck, ReceiveQuery, Refusal, RegisteredAccount, RemitQuery,
    ResultQuery, TransferReceipt, UserInfo, WithdrawRequest,
};
use sfop_core::{Bank, BankBackend, BankError};

/// What a rule does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Timeout,
    Outage,
    Duplicate,
    Refuse,
}

/// One scripted fault or fixture refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Only calls of this OAuth client; every client when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Only this ledger operation (WIT name, e.g. `withdraw`); all when absent.
    #[serde(default)]
    pub operation: Option<String>,
    pub fault: FaultKind,
    /// For `refuse`: the `rsp_code` to answer.
    #[serde(default)]
    pub rsp_code: Option<String>,
    /// For `refuse`: the message; a default names the fixture.
    #[serde(default)]
    pub rsp_message: Option<String>,
    /// How many matching calls it applies to; until cleared when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

/// The `ledger` operations a rule may name.
pub const OPERATIONS: &[&str] = &[
    "bank-status",
    "user-info",
    "registered-accounts",
    "balance",
    "transactions",
    "remit-list",
    "withdraw",
    "deposit",
    "transfer-result",
    "real-name",
    "receive",
    "cancel-account",
];

impl FaultRule {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(op) = &self.operation
            && !OPERATIONS.contains(&op.as_str())
        {
            return Err(format!(
                "operation {op:?} is not one of {}",
                OPERATIONS.join(", ")
            ));
        }
        match (&self.fault, &self.rsp_code) {
            (FaultKind::Refuse, None) => Err("fault \"refuse\" needs rsp_code".into()),
            (FaultKind::Refuse, Some(code))
                if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Err(format!("rsp_code {code:?} is not a 5-character code"))
            }
            _ => Ok(()),
        }
    }

    fn matches(&self, operation: &str, client_id: Option<&str>) -> bool {
        self.operation.as_deref().is_none_or(|o| o == operation)
            && self
                .client_id
                .as_deref()
                .is_none_or(|c| Some(c) == client_id)
    }
}

/// The registered rules; clones share them.
#[derive(Debug, Clone, Default)]
pub struct FaultScript {
    rules: Arc<Mutex<Vec<FaultRule>>>,
}

impl FaultScript {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a rule (checked first).
    pub fn add(&self, rule: FaultRule) -> Result<(), String> {
        rule.validate()?;
        self.lock().push(rule);
        Ok(())
    }

    /// Removes every rule: the bank is itself again.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// The first rule matching a call, counting it down.
    fn take(&self, operation: &str, client_id: Option<&str>) -> Option<FaultRule> {
        let mut rules = self.lock();
        let i = rules.iter().position(|r| r.matches(operation, client_id))?;
        let rule = rules[i].clone();
        match &mut rules[i].times {
            Some(1) | Some(0) => {
                rules.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(rule)
    }
}

/// A bank backend with a [`FaultScript`] in front of it.
#[derive(Debug)]
pub struct ScriptedBank<B> {
    inner: B,
    script: FaultScript,
}

impl<B: BankBackend> ScriptedBank<B> {
    pub fn new(inner: B, script: FaultScript) -> Self {
        Self { inner, script }
    }

    fn guard<T>(
        &self,
        operation: &str,
        call: Option<&BankCall<'_>>,
        op: impl FnOnce() -> Result<T, BankError>,
    ) -> Result<T, BankError> {
        let client = call.and_then(|c| c.caller).map(|c| c.client_id.as_str());
        let Some(rule) = self.script.take(operation, client) else {
            return op();
        };
        match rule.fault {
            FaultKind::Timeout => {
                // Done at the bank; only the answer is lost.
                let _ = op();
                Err(BankError::Timeout)
            }
            FaultKind::Outage => Err(BankError::Timeout),
            FaultKind::Duplicate => Err(Refusal::new(
                "A0326",
                "bank_tran_id: already used today (scripted duplicate)",
            )
            .into()),
            FaultKind::Refuse => Err(Refusal::new(
                rule.rsp_code.as_deref().unwrap_or("A0002"),
                rule.rsp_message
                    .unwrap_or_else(|| format!("scripted refusal of {operation}")),
            )
            .into()),
        }
    }
}

impl<B: BankBackend> BankBackend for ScriptedBank<B> {
    fn bank_status(&self) -> Result<Vec<Bank>, BankError> {
        self.guard("bank-status", None, || self.inner.bank_status())
    }

    fn user_info(&self, call: &BankCall<'_>, user_seq_no: &str) -> Result<UserInfo, BankError> {
        self.guard("user-info", Some(call), || {
            self.inner.user_info(call, user_seq_no)
        })
    }

    fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> Result<Vec<RegisteredAccount>, BankError> {
        self.guard("registered-accounts", Some(call), || {
            self.inner
                .registered_accounts(call, user_seq_no, include_cancelled)
        })
    }

    fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> Result<Balance, BankError> {
        self.guard("balance", Some(call), || {
            self.inner.balance(call, bank_tran_id, fintech_use_num)
        })
    }

    fn transactions(
        &self,
        call: &BankCall<'_>,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BankError> {
        self.guard("transactions", Some(call), || {
            self.inner.transactions(call, query)
        })
    }

    fn remit_list(
        &self,
        call: &BankCall<'_>,
        query: &RemitQuery,
    ) -> Result<HistoryPage, BankError> {
        self.guard("remit-list", Some(call), || {
            self.inner.remit_list(call, query)
        })
    }

    fn withdraw(
        &self,
        call: &BankCall<'_>,
        request: &WithdrawRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.guard("withdraw", Some(call), || {
            self.inner.withdraw(call, request)
        })
    }

    fn deposit(
        &self,
        call: &BankCall<'_>,
        request: &DepositRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.guard("deposit", Some(call), || self.inner.deposit(call, request))
    }

    fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> Result<Vec<Result<TransferReceipt, Refusal>>, BankError> {
        self.guard("transfer-result", Some(call), || {
            self.inner.transfer_result(call, queries)
        })
    }

    fn real_name(&self, call: &BankCall<'_>, query: &RealNameQuery) -> Result<RealName, BankError> {
        self.guard("real-name", Some(call), || {
            self.inner.real_name(call, query)
        })
    }

    fn receive(
        &self,
        call: &BankCall<'_>,
        query: &ReceiveQuery,
    ) -> Result<ReceiveCheck, BankError> {
        self.guard("receive", Some(call), || self.inner.receive(call, query))
    }

    fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> Result<BankAnswer, BankError> {
        self.guard("cancel-account", Some(call), || {
            self.inner
                .cancel_account(call, bank_tran_id, fintech_use_num, scope)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfop_core::Claims;
    use sfop_core::ledger::TransferKind;
    use sfop_vbank::VirtualBank;
    use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};

    fn withdraw(id: &str) -> WithdrawRequest {
        WithdrawRequest {
            bank_tran_id: id.into(),
            fintech_use_num: "120230000100000000000015".into(),
            tran_amt: 1000,
            cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
            wd_print_content: "t".into(),
            dps_print_content: "t".into(),
            req_client_name: "홍길동".into(),
            req_client_num: "HONG0001".into(),
            transfer_purpose: "TR".into(),
            recv_client_name: String::new(),
            recv_client_bank_code: String::new(),
            recv_client_account_num: String::new(),
        }
    }

    #[test]
    fn a_scripted_timeout_books_the_transfer_and_transfer_result_finds_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = sfop_store::Store::open(dir.path())?;
        let vbank = VirtualBank::open(&store)?;
        let script = FaultScript::default();
        let bank = ScriptedBank::new(vbank.clone(), script.clone());
        let hong = Claims {
            client_id: DEMO_CLIENT_ID.into(),
            client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
            user_seq_no: Some("1100000001".into()),
            scopes: vec!["transfer".into()],
            fintech_use_nums: Vec::new(),
        };
        let now = sfop_core::time::now_millis();
        let call = BankCall {
            caller: Some(&hong),
            now_millis: now,
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        };
        let total = vbank.total_balance()?;

        // Only the next withdraw of this client, once.
        script.add(FaultRule {
            client_id: Some(DEMO_CLIENT_ID.into()),
            operation: Some("withdraw".into()),
            fault: FaultKind::Timeout,
            rsp_code: None,
            rsp_message: None,
            times: Some(1),
        })?;
        let id = format!("{DEMO_CLIENT_USE_CODE}U000000901");
        assert!(matches!(
            bank.withdraw(&call, &withdraw(&id)),
            Err(BankError::Timeout)
        ));
        assert!(script.rules().is_empty(), "the rule was used up");
        let date = sfop_core::time::format_dtm(now, sfop_core::time::KST_OFFSET_MINUTES);
        let found = bank.transfer_result(
            &call,
            &[ResultQuery {
                kind: TransferKind::Withdraw,
                org_bank_tran_id: id.clone(),
                org_bank_tran_date: date[..8].into(),
                org_tran_amt: 1000,
            }],
        )?;
        assert!(
            matches!(found.as_slice(), [Ok(r)] if r.tran_amt == 1000),
            "{found:?}"
        );
        assert_eq!(vbank.total_balance()?, total, "money moved, none created");

        // A duplicate and a fixture refusal do nothing at the bank.
        script.add(FaultRule {
            client_id: None,
            operation: Some("withdraw".into()),
            fault: FaultKind::Duplicate,
            rsp_code: None,
            rsp_message: None,
            times: Some(1),
        })?;
        let fresh = format!("{DEMO_CLIENT_USE_CODE}U000000902");
        match bank.withdraw(&call, &withdraw(&fresh)) {
            Err(BankError::Refused(r)) => assert_eq!(r.rsp_code, "A0326"),
            other => panic!("expected A0326, got {other:?}"),
        }
        // The id was not consumed: the real bank takes it now.
        bank.withdraw(&call, &withdraw(&fresh))?;
        // Another client's rule does not apply.
        script.add(FaultRule {
            client_id: Some("someone-else".into()),
            operation: None,
            fault: FaultKind::Outage,
            rsp_code: None,
            rsp_message: None,
            times: None,
        })?;
        assert!(bank.bank_status().is_ok());
        script.clear();
        assert!(
            FaultRule {
                client_id: None,
                operation: Some("steal".into()),
                fault: FaultKind::Outage,
                rsp_code: None,
                rsp_message: None,
                times: None,
            }
            .validate()
            .is_err()
        );
        Ok(())
    }
}
