//! Scripted faults and fixture answers in front of a bank backend, as the
//! real operator's simulator offers them, while the default stays the
//! stateful bank: a rule applies to matching calls (per OAuth client, per
//! ledger operation, per participant bank, a number of times) and every
//! other call reaches the bank untouched.
//!
//! - `timeout`: the bank **does** the operation (money moves, the
//!   `bank_tran_id` is used) and the answer is lost: the plugin sees
//!   `timeout` (`A0017`), and the outcome is found with `transfer-result`.
//! - `outage`: the bank is not reached: `timeout` (`A0017`), nothing
//!   happens; `bank-status` lists the bank (or every bank) as not available.
//! - `hang`: the bank is not reached and never answers; the host ends the
//!   wait at the plugin's deadline with `timeout` (`A0017`), nothing happens.
//! - `duplicate`: refused as a repeated `bank_tran_id` (`A0326`), nothing happens.
//! - `refuse`: a fixture refusal with the rule's `rsp_code` (and, with
//!   `bank_rsp_code`, a bank answer: `A0009` unless `rsp_code` says otherwise).
//! - `fixture`: the bank answers as usual (its access and consent checks
//!   included) and the rule's `fixture` values replace fields of the answer
//!   of `balance`, `real-name` or `receive`.
//!
//! The testbed registers rules per case ([`FaultScript::default`], in
//! memory); the running platform keeps them in the store
//! ([`FaultScript::open`]) so they survive a restart, and its admin API adds
//! and removes them (docs/adr/0010-sandbox-faults.md). A node of a cluster
//! keeps them in the cluster's database ([`FaultScript::clustered`], ADR
//! 0029): set on one node, they apply on every node, and a rule's `times`
//! counts calls across the nodes.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sfop_core::ledger::{
    Balance, BankAnswer, BankCall, ConsentScope, DepositRequest, HistoryPage, HistoryQuery,
    RealName, RealNameQuery, ReceiveCheck, ReceiveQuery, Recipient, Refusal, RegisteredAccount,
    RemitQuery, ResultQuery, TransferReceipt, UserInfo, WithdrawRequest, codes,
};
use sfop_core::{Bank, BankBackend, BankError};
use sfop_store::{Store, Tree};

use crate::VirtualBank;
use crate::model::FintechLink;

/// The store tree of the platform's rules: zero-padded id → [`FaultRule`].
pub const TREE: &str = "sandbox.faults";

/// What a rule does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Timeout,
    Outage,
    /// The bank is not reached and never answers: the call waits until the
    /// plugin's `timeout_ms` ends it (the host answers `timeout`, `A0017`).
    Hang,
    Duplicate,
    Refuse,
    Fixture,
}

/// Values a `fixture` rule puts into an answer; each applies to the
/// operations named on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// `balance`: the balance in won (negative when overdrawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_amt: Option<i64>,
    /// `balance`: what may be withdrawn now, in won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_amt: Option<u64>,
    /// `balance`: the product name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// `real-name`: the holder; `receive`: the recipient's holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_holder_name: Option<String>,
}

impl Fixture {
    /// The fields set, for checking them against the operation.
    fn fields(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.balance_amt.is_some() {
            set.push("balance_amt");
        }
        if self.available_amt.is_some() {
            set.push("available_amt");
        }
        if self.product_name.is_some() {
            set.push("product_name");
        }
        if self.account_holder_name.is_some() {
            set.push("account_holder_name");
        }
        set
    }
}

/// The operations a `fixture` rule can answer for, with the fields each takes.
pub const FIXTURE_FIELDS: &[(&str, &[&str])] = &[
    ("balance", &["balance_amt", "available_amt", "product_name"]),
    ("real-name", &["account_holder_name"]),
    ("receive", &["account_holder_name"]),
];

/// One scripted fault, fixture refusal or fixture answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Only calls of this OAuth client; every client when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Only this ledger operation (WIT name, e.g. `withdraw`); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub fault: FaultKind,
    /// Only calls about an account at this participant bank (3 digits);
    /// for `bank-status`, the bank an `outage` lists as down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    /// For `refuse`: the `rsp_code` to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsp_code: Option<String>,
    /// For `refuse`: the bank's own 3-digit code, answered as a bank failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_rsp_code: Option<String>,
    /// For `refuse`: the message; a default names the fixture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsp_message: Option<String>,
    /// For `fixture`: the values to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<Fixture>,
    /// How many matching calls it still applies to; until removed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Operations that carry no `bank_tran_id`, so a duplicate cannot apply.
const NO_TRAN_ID: &[&str] = &[
    "bank-status",
    "user-info",
    "registered-accounts",
    "transfer-result",
];

/// The keys of a rule, in the order [`FaultRule::from_json`] checks them.
const KEYS: &[&str] = &[
    "client_id",
    "operation",
    "fault",
    "bank_code",
    "rsp_code",
    "bank_rsp_code",
    "rsp_message",
    "fixture",
    "times",
];

/// Longest `client_id` and `rsp_message` a rule takes.
const MAX_TEXT: usize = 200;

/// A rule that cannot be registered, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: &'static str,
    pub message: String,
}

impl RuleError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Why a [`FaultScript`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error(transparent)]
    Store(#[from] sfop_store::Error),
    /// The cluster's database (a clustered script).
    #[error(transparent)]
    Cluster(#[from] sfop_store_pg::Error),
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

impl FaultRule {
    /// A rule from a JSON object, every error naming its key (serde alone
    /// names the line and column, not the field).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, RuleError> {
        let Some(obj) = value.as_object() else {
            return Err(RuleError::new("body", "a JSON object is expected"));
        };
        if let Some(unknown) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(RuleError::new(
                "body",
                format!("unknown field {unknown:?}; known: {}", KEYS.join(", ")),
            ));
        }
        fn get<T: DeserializeOwned>(
            obj: &serde_json::Map<String, serde_json::Value>,
            key: &'static str,
        ) -> Result<Option<T>, RuleError> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|e| RuleError::new(key, e.to_string())),
            }
        }
        let rule = FaultRule {
            client_id: get(obj, "client_id")?,
            operation: get(obj, "operation")?,
            fault: get(obj, "fault")?.ok_or_else(|| {
                RuleError::new(
                    "fault",
                    "required: timeout, outage, duplicate, refuse or fixture",
                )
            })?,
            bank_code: get(obj, "bank_code")?,
            rsp_code: get(obj, "rsp_code")?,
            bank_rsp_code: get(obj, "bank_rsp_code")?,
            rsp_message: get(obj, "rsp_message")?,
            fixture: get(obj, "fixture")?,
            times: get(obj, "times")?,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(id) = &self.client_id
            && (id.is_empty()
                || id.len() > MAX_TEXT
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(RuleError::new(
                "client_id",
                format!("{id:?} is not a client id (letters, digits, - _ .)"),
            ));
        }
        if let Some(op) = &self.operation
            && !OPERATIONS.contains(&op.as_str())
        {
            return Err(RuleError::new(
                "operation",
                format!("{op:?} is not one of {}", OPERATIONS.join(", ")),
            ));
        }
        if let Some(code) = &self.bank_code
            && !digits(code, 3)
        {
            return Err(RuleError::new(
                "bank_code",
                format!("{code:?} is not a 3-digit bank code"),
            ));
        }
        if self.times == Some(0) {
            return Err(RuleError::new(
                "times",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        if let Some(m) = &self.rsp_message
            && m.len() > MAX_TEXT
        {
            return Err(RuleError::new(
                "rsp_message",
                format!("longer than {MAX_TEXT} bytes"),
            ));
        }
        let refuse = self.fault == FaultKind::Refuse;
        if !refuse {
            for (field, set) in [
                ("rsp_code", self.rsp_code.is_some()),
                ("bank_rsp_code", self.bank_rsp_code.is_some()),
                ("rsp_message", self.rsp_message.is_some()),
            ] {
                if set {
                    return Err(RuleError::new(field, "only for fault \"refuse\""));
                }
            }
        }
        if self.fault != FaultKind::Fixture && self.fixture.is_some() {
            return Err(RuleError::new("fixture", "only for fault \"fixture\""));
        }
        let op = self.operation.as_deref();
        match self.fault {
            FaultKind::Refuse => {
                if self.rsp_code.is_none() && self.bank_rsp_code.is_none() {
                    return Err(RuleError::new(
                        "rsp_code",
                        "fault \"refuse\" needs rsp_code or bank_rsp_code",
                    ));
                }
                if let Some(code) = &self.rsp_code
                    && (code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()))
                {
                    return Err(RuleError::new(
                        "rsp_code",
                        format!("{code:?} is not a 5-character code"),
                    ));
                }
                if self.rsp_code.as_deref() == Some(codes::SUCCESS) {
                    return Err(RuleError::new("rsp_code", "a refusal cannot be A0000"));
                }
                if let Some(code) = &self.bank_rsp_code
                    && !digits(code, 3)
                {
                    return Err(RuleError::new(
                        "bank_rsp_code",
                        format!("{code:?} is not a 3-digit bank code"),
                    ));
                }
            }
            FaultKind::Duplicate => {
                if let Some(op) = op
                    && NO_TRAN_ID.contains(&op)
                {
                    return Err(RuleError::new(
                        "operation",
                        format!("{op} takes no bank_tran_id, so it cannot be a duplicate"),
                    ));
                }
            }
            FaultKind::Fixture => {
                let Some((_, allowed)) = FIXTURE_FIELDS.iter().find(|(o, _)| Some(*o) == op) else {
                    return Err(RuleError::new(
                        "operation",
                        format!(
                            "fault \"fixture\" needs one of {}",
                            FIXTURE_FIELDS
                                .iter()
                                .map(|(o, _)| *o)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                let set = self
                    .fixture
                    .as_ref()
                    .map(Fixture::fields)
                    .unwrap_or_default();
                if set.is_empty() {
                    return Err(RuleError::new(
                        "fixture",
                        format!("needs at least one of {}", allowed.join(", ")),
                    ));
                }
                if let Some(f) = set.iter().find(|f| !allowed.contains(f)) {
                    return Err(RuleError::new(
                        "fixture",
                        format!(
                            "{f} is not part of the {} answer (it takes {})",
                            op.unwrap_or_default(),
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            FaultKind::Timeout | FaultKind::Outage | FaultKind::Hang => {}
        }
        Ok(())
    }

    fn matches(
        &self,
        operation: &str,
        client_id: Option<&str>,
        bank: &mut impl FnMut() -> Option<String>,
    ) -> bool {
        self.operation.as_deref().is_none_or(|o| o == operation)
            && self
                .client_id
                .as_deref()
                .is_none_or(|c| Some(c) == client_id)
            && match &self.bank_code {
                None => true,
                // bank-status lists every bank: an outage marks one of them.
                Some(_) if operation == "bank-status" => self.fault == FaultKind::Outage,
                Some(code) => bank().as_deref() == Some(code.as_str()),
            }
    }
}

/// A registered rule and the id to remove it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scripted {
    pub id: u64,
    #[serde(flatten)]
    pub rule: FaultRule,
}

#[derive(Debug, Default)]
struct Rules {
    list: Vec<Scripted>,
    next_id: u64,
}

/// The registered rules; clones share them. In memory
/// ([`FaultScript::default`]), kept in the store ([`FaultScript::open`]) or
/// the cluster's ([`FaultScript::clustered`]).
#[derive(Debug, Clone, Default)]
pub struct FaultScript {
    rules: Arc<Mutex<Rules>>,
    tree: Option<Tree>,
    cluster: Option<Shared>,
}

/// A clustered script's database and the version of the rules it holds.
#[derive(Debug, Clone)]
struct Shared {
    cluster: sfop_store_pg::Cluster,
    version: Arc<AtomicI64>,
}

/// How often a clustered script checks the cluster's rules' version.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

impl Shared {
    /// Reads the cluster's rules into `rules`.
    async fn reload(&self, rules: &Mutex<Rules>) -> Result<(), FaultError> {
        let (version, stored) = self.cluster.sandbox_rules().await?;
        let mut list = Vec::with_capacity(stored.len());
        for row in stored {
            match serde_json::from_str::<FaultRule>(&row.rule) {
                Ok(mut rule) => {
                    rule.times = row.times.and_then(|t| u32::try_from(t).ok());
                    list.push(Scripted {
                        id: u64::try_from(row.id).unwrap_or_default(),
                        rule,
                    });
                }
                Err(e) => tracing::warn!(id = row.id, error = %e, "an unreadable sandbox rule"),
            }
        }
        let mut held = rules.lock().unwrap_or_else(|p| p.into_inner());
        held.list = list;
        self.version.store(version, Ordering::Release);
        Ok(())
    }

    /// Re-reads the rules whenever the cluster's version moves, until the
    /// script is dropped.
    async fn follow(self, rules: Weak<Mutex<Rules>>) {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let Some(rules) = rules.upgrade() else {
                return;
            };
            let moved = match self.cluster.sandbox_version().await {
                Ok(version) => version != self.version.load(Ordering::Acquire),
                Err(e) => {
                    tracing::debug!(error = %e, "sandbox rules: the cluster is unreachable");
                    false
                }
            };
            if moved && let Err(e) = self.reload(&rules).await {
                tracing::debug!(error = %e, "sandbox rules: re-reading");
            }
        }
    }
}

/// `work` waited for by a synchronous caller of a clustered script (the
/// portal's pages): the worker is handed over first (`block_in_place`); a
/// current-thread runtime could not drive the database while it waits, so
/// the call is refused there.
fn blocking<T>(work: impl Future<Output = Result<T, FaultError>>) -> Result<T, FaultError> {
    let unavailable = |why: &str| {
        FaultError::Cluster(sfop_store_pg::Error::Unavailable(format!(
            "sandbox rules: {why}"
        )))
    };
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| unavailable("no runtime to reach the cluster on"))?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(unavailable(
            "a current-thread runtime cannot wait for the cluster",
        ));
    }
    tokio::task::block_in_place(|| handle.block_on(work))
}

fn key(id: u64) -> String {
    format!("{id:020}")
}

impl FaultScript {
    /// The rules kept in `store` (tree [`TREE`]), as they were left.
    pub fn open(store: &Store) -> Result<Self, FaultError> {
        let tree = store.tree(TREE)?;
        let mut rules = Rules::default();
        for (k, rule) in tree.values_json::<FaultRule>()? {
            let id = k.parse::<u64>().unwrap_or_default();
            rules.next_id = rules.next_id.max(id + 1);
            rules.list.push(Scripted { id, rule });
        }
        Ok(Self {
            rules: Arc::new(Mutex::new(rules)),
            tree: Some(tree),
            cluster: None,
        })
    }

    /// The cluster's rules (a node of a cluster), read now and followed: a
    /// task re-reads them whenever the cluster's version moves (checked
    /// every [`FOLLOW_EVERY`]) until the last clone is dropped.
    pub async fn clustered(cluster: sfop_store_pg::Cluster) -> Result<Self, FaultError> {
        let shared = Shared {
            cluster,
            version: Arc::new(AtomicI64::new(-1)),
        };
        let rules = Arc::new(Mutex::new(Rules::default()));
        shared.reload(&rules).await?;
        tokio::spawn(shared.clone().follow(Arc::downgrade(&rules)));
        Ok(Self {
            rules,
            tree: None,
            cluster: Some(shared),
        })
    }

    /// [`add`](Self::add) from an async worker.
    pub async fn add_async(&self, rule: FaultRule) -> Result<u64, FaultError> {
        let Some(shared) = &self.cluster else {
            return self.add(rule);
        };
        rule.validate()?;
        let json = serde_json::to_string(&rule)
            .map_err(|e| RuleError::new("body", format!("not storable: {e}")))?;
        let times = rule.times.map(|t| i32::try_from(t).unwrap_or(i32::MAX));
        let id = shared
            .cluster
            .add_sandbox_rule(&sfop_store_pg::NewSandboxRule {
                client_id: rule.client_id.as_deref(),
                operation: rule.operation.as_deref(),
                bank_code: rule.bank_code.as_deref(),
                rule: &json,
                times,
            })
            .await?;
        shared.reload(&self.rules).await?;
        Ok(u64::try_from(id).unwrap_or_default())
    }

    /// [`remove`](Self::remove) from an async worker.
    pub async fn remove_async(&self, id: u64) -> Result<bool, FaultError> {
        let Some(shared) = &self.cluster else {
            return self.remove(id);
        };
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let removed = shared.cluster.remove_sandbox_rule(id).await?;
        shared.reload(&self.rules).await?;
        Ok(removed)
    }

    /// [`clear_client`](Self::clear_client) from an async worker.
    pub async fn clear_client_async(&self, client_id: Option<&str>) -> Result<usize, FaultError> {
        let Some(shared) = &self.cluster else {
            return self.clear_client(client_id);
        };
        let removed = shared.cluster.clear_sandbox_rules(client_id).await?;
        shared.reload(&self.rules).await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a rule (checked first); returns its id.
    pub fn add(&self, rule: FaultRule) -> Result<u64, FaultError> {
        if self.cluster.is_some() {
            return blocking(self.add_async(rule));
        }
        rule.validate()?;
        let mut rules = self.lock();
        let id = rules.next_id;
        if let Some(tree) = &self.tree {
            tree.insert_json(&key(id), &rule)?;
        }
        rules.next_id += 1;
        rules.list.push(Scripted { id, rule });
        Ok(id)
    }

    /// Removes rule `id`; whether it was there.
    pub fn remove(&self, id: u64) -> Result<bool, FaultError> {
        if self.cluster.is_some() {
            return blocking(self.remove_async(id));
        }
        let mut rules = self.lock();
        let Some(i) = rules.list.iter().position(|s| s.id == id) else {
            return Ok(false);
        };
        if let Some(tree) = &self.tree {
            tree.remove(key(id).as_bytes())?;
        }
        rules.list.remove(i);
        Ok(true)
    }

    /// Removes every rule of `client_id` (every rule when `None`); how many.
    pub fn clear_client(&self, client_id: Option<&str>) -> Result<usize, FaultError> {
        if self.cluster.is_some() {
            return blocking(self.clear_client_async(client_id));
        }
        let mut rules = self.lock();
        let doomed: Vec<u64> = rules
            .list
            .iter()
            .filter(|s| client_id.is_none_or(|c| s.rule.client_id.as_deref() == Some(c)))
            .map(|s| s.id)
            .collect();
        for id in &doomed {
            if let Some(tree) = &self.tree {
                tree.remove(key(*id).as_bytes())?;
            }
            rules.list.retain(|s| s.id != *id);
        }
        Ok(doomed.len())
    }

    /// Removes every rule: the bank is itself again.
    pub fn clear(&self) {
        if let Err(e) = self.clear_client(None) {
            tracing::warn!(error = %e, "clearing the scripted faults");
        }
    }

    /// The rules in force, oldest first (the first match applies).
    pub fn rules(&self) -> Vec<Scripted> {
        self.lock().list.clone()
    }

    /// The first rule matching a call, counting it down. `bank` names the
    /// participant bank the call is about; asked only when a rule filters
    /// on it.
    fn take(
        &self,
        operation: &str,
        client_id: Option<&str>,
        mut bank: impl FnMut() -> Option<String>,
    ) -> Option<FaultRule> {
        let mut rules = self.lock();
        if rules.list.is_empty() {
            return None;
        }
        let i = rules
            .list
            .iter()
            .position(|s| s.rule.matches(operation, client_id, &mut bank))?;
        let Scripted { id, rule } = rules.list[i].clone();
        let write = match rule.times {
            Some(0) | Some(1) => {
                rules.list.remove(i);
                self.tree.as_ref().map(|t| t.remove(key(id).as_bytes()))
            }
            Some(n) => {
                rules.list[i].rule.times = Some(n - 1);
                let left = &rules.list[i].rule;
                self.tree.as_ref().map(|t| t.insert_json(&key(id), left))
            }
            None => None,
        };
        if let Some(Err(e)) = write {
            // The rule still applied; only its count may come back after a restart.
            tracing::warn!(error = %e, id, "storing a scripted fault's count");
        }
        Some(rule)
    }

    /// [`take`](Self::take) for any script: a clustered script counts a
    /// rule with `times` down in the cluster's database, so its last call
    /// is taken once across the nodes (a rule another node exhausted does
    /// not apply). The database away, no counted rule applies: the bank
    /// answers as itself.
    /// Whether a rule applies to one participant bank only.
    fn names_a_bank(&self) -> bool {
        self.lock().list.iter().any(|s| s.rule.bank_code.is_some())
    }

    async fn take_async(
        &self,
        operation: &str,
        client_id: Option<&str>,
        mut bank: impl FnMut() -> Option<String>,
    ) -> Option<FaultRule> {
        let Some(shared) = &self.cluster else {
            return self.take(operation, client_id, bank);
        };
        for _ in 0..8 {
            let Scripted { id, rule } = {
                let rules = self.lock();
                rules
                    .list
                    .iter()
                    .find(|s| s.rule.matches(operation, client_id, &mut bank))
                    .cloned()?
            };
            if rule.times.is_none() {
                return Some(rule);
            }
            let taken = shared
                .cluster
                .take_sandbox_rule(i64::try_from(id).unwrap_or(i64::MAX))
                .await;
            let mut rules = self.lock();
            let at = rules.list.iter().position(|s| s.id == id);
            match (taken, at) {
                (Ok(true), Some(i)) => {
                    match rules.list[i].rule.times {
                        Some(n) if n > 1 => rules.list[i].rule.times = Some(n - 1),
                        _ => {
                            rules.list.remove(i);
                        }
                    }
                    return Some(rule);
                }
                (Ok(true), None) => return Some(rule),
                // Exhausted elsewhere: gone here too; the next match, if any.
                (Ok(false), Some(i)) => {
                    rules.list.remove(i);
                }
                (Ok(false), None) => {}
                (Err(e), _) => {
                    tracing::warn!(error = %e, id, "sandbox rule not counted: not applied");
                    return None;
                }
            }
        }
        None
    }
}

/// Which participant bank holds the account behind a fintech number, so a
/// rule's `bank_code` applies to calls that name accounts that way.
#[async_trait::async_trait]
pub trait AccountBanks {
    async fn bank_of_fintech_num(&self, fintech_use_num: &str) -> Option<String>;
}

#[async_trait::async_trait]
impl AccountBanks for VirtualBank {
    async fn bank_of_fintech_num(&self, fintech_use_num: &str) -> Option<String> {
        let link = self
            .t
            .fintech
            .get_json::<FintechLink>(fintech_use_num)
            .ok()??;
        link.account.split('/').next().map(str::to_owned)
    }
}

/// A bank backend with a [`FaultScript`] in front of it.
#[derive(Debug)]
pub struct ScriptedBank<B> {
    inner: B,
    script: FaultScript,
}

/// What a call is about, for the rules that filter on it and the answers
/// they make.
struct About<'a> {
    operation: &'static str,
    call: &'a BankCall<'a>,
    bank_tran_id: Option<&'a str>,
    fintech_use_num: Option<&'a str>,
    bank_code: Option<&'a str>,
}

impl<'a> About<'a> {
    fn new(operation: &'static str, call: &'a BankCall<'a>) -> Self {
        Self {
            operation,
            call,
            bank_tran_id: None,
            fintech_use_num: None,
            bank_code: None,
        }
    }

    fn tran_id(mut self, id: &'a str) -> Self {
        self.bank_tran_id = Some(id);
        self
    }

    fn fintech(mut self, num: &'a str) -> Self {
        self.fintech_use_num = Some(num);
        self
    }

    fn bank(mut self, code: &'a str) -> Self {
        self.bank_code = Some(code);
        self
    }

    fn recipient(self, r: &'a Recipient) -> Self {
        match r {
            Recipient::FintechUseNum(n) => self.fintech(n),
            Recipient::Account(a, _) => self.bank(&a.bank_code_std),
        }
    }
}

impl<B: BankBackend + AccountBanks + Sync> ScriptedBank<B> {
    pub fn new(inner: B, script: FaultScript) -> Self {
        Self { inner, script }
    }

    /// The bank behind the call.
    async fn bank_of(&self, about: &About<'_>) -> Option<String> {
        match (about.bank_code, about.fintech_use_num) {
            (Some(code), _) => Some(code.to_owned()),
            (None, Some(num)) => self.inner.bank_of_fintech_num(num).await,
            (None, None) => None,
        }
    }

    async fn rule_for(&self, about: &About<'_>) -> Option<FaultRule> {
        let client = about.call.caller.map(|c| c.client_id.as_str());
        // Resolved (a read of the bank's, maybe the cluster's) only while
        // some rule names a bank.
        let bank = match self.script.names_a_bank() {
            true => self.bank_of(about).await,
            false => None,
        };
        self.script
            .take_async(about.operation, client, || bank.clone())
            .await
    }

    /// Applies the first matching rule, if any, around `op`; `fixture`
    /// rules go to [`Self::answer`].
    async fn guard<T>(
        &self,
        about: &About<'_>,
        rule: Option<FaultRule>,
        op: impl Future<Output = Result<T, BankError>>,
    ) -> Result<T, BankError> {
        let Some(rule) = rule else {
            return op.await;
        };
        match rule.fault {
            FaultKind::Timeout => {
                // Done at the bank; only the answer is lost.
                let _ = op.await;
                Err(BankError::Timeout)
            }
            FaultKind::Outage => Err(BankError::Timeout),
            FaultKind::Hang => {
                // Never reached, never answers: the caller's deadline ends it.
                std::future::pending::<()>().await;
                Err(BankError::Timeout)
            }
            FaultKind::Duplicate => Err(Refusal::new(
                codes::DUPLICATE_BANK_TRAN_ID,
                "bank_tran_id: already used today (scripted duplicate)",
            )
            .into()),
            FaultKind::Refuse => {
                let message = rule
                    .rsp_message
                    .clone()
                    .unwrap_or_else(|| format!("scripted refusal of {}", about.operation));
                let bank_code_tran = match rule.bank_rsp_code {
                    Some(_) => self.bank_of(about).await.unwrap_or_default(),
                    None => String::new(),
                };
                let bank = rule.bank_rsp_code.as_ref().map(|code| BankAnswer {
                    bank_tran_id: about.bank_tran_id.unwrap_or_default().to_owned(),
                    bank_tran_date: sfop_core::time::format_dtm(
                        about.call.now_millis,
                        about.call.utc_offset_minutes,
                    )
                    .chars()
                    .take(8)
                    .collect(),
                    bank_code_tran,
                    bank_rsp_code: code.clone(),
                    bank_rsp_message: message.clone(),
                });
                let rsp_code = rule.rsp_code.as_deref().unwrap_or(codes::BANK_FAILURE);
                Err(Refusal {
                    rsp_code: rsp_code.to_owned(),
                    rsp_message: message,
                    bank,
                }
                .into())
            }
            // Validation keeps fixtures to the operations that apply them.
            FaultKind::Fixture => op.await,
        }
    }

    /// [`Self::guard`] for the operations a `fixture` rule can answer:
    /// the bank's own answer, with the fixture's values in it.
    async fn answer<T>(
        &self,
        about: &About<'_>,
        op: impl Future<Output = Result<T, BankError>>,
        apply: impl FnOnce(&mut T, &Fixture),
    ) -> Result<T, BankError> {
        let rule = self.rule_for(about).await;
        match rule {
            Some(FaultRule {
                fault: FaultKind::Fixture,
                fixture: Some(fixture),
                ..
            }) => {
                let mut answer = op.await?;
                apply(&mut answer, &fixture);
                Ok(answer)
            }
            rule => self.guard(about, rule, op).await,
        }
    }

    async fn plain<T>(
        &self,
        about: &About<'_>,
        op: impl Future<Output = Result<T, BankError>>,
    ) -> Result<T, BankError> {
        let rule = self.rule_for(about).await;
        self.guard(about, rule, op).await
    }
}

#[async_trait::async_trait]
impl<B: BankBackend + AccountBanks> BankBackend for ScriptedBank<B> {
    async fn bank_status(&self, call: &BankCall<'_>) -> Result<Vec<Bank>, BankError> {
        let about = About::new("bank-status", call);
        match self.rule_for(&about).await {
            Some(rule) if rule.fault == FaultKind::Outage => {
                let mut banks = self.inner.bank_status(call).await?;
                for bank in &mut banks {
                    if rule.bank_code.as_deref().is_none_or(|c| c == bank.code) {
                        bank.available = false;
                    }
                }
                Ok(banks)
            }
            rule => self.guard(&about, rule, self.inner.bank_status(call)).await,
        }
    }

    async fn user_info(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<UserInfo, BankError> {
        self.plain(
            &About::new("user-info", call),
            self.inner.user_info(call, user_seq_no),
        )
        .await
    }

    async fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> Result<Vec<RegisteredAccount>, BankError> {
        self.plain(
            &About::new("registered-accounts", call),
            self.inner
                .registered_accounts(call, user_seq_no, include_cancelled),
        )
        .await
    }

    async fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> Result<Balance, BankError> {
        let about = About::new("balance", call)
            .tran_id(bank_tran_id)
            .fintech(fintech_use_num);
        self.answer(
            &about,
            self.inner.balance(call, bank_tran_id, fintech_use_num),
            |b, f| {
                if let Some(v) = f.balance_amt {
                    b.balance_amt = v;
                }
                if let Some(v) = f.available_amt {
                    b.available_amt = v;
                }
                if let Some(v) = &f.product_name {
                    b.product_name.clone_from(v);
                }
            },
        )
        .await
    }

    async fn transactions(
        &self,
        call: &BankCall<'_>,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BankError> {
        let about = About::new("transactions", call)
            .tran_id(&query.bank_tran_id)
            .fintech(&query.fintech_use_num);
        self.plain(&about, self.inner.transactions(call, query))
            .await
    }

    async fn remit_list(
        &self,
        call: &BankCall<'_>,
        query: &RemitQuery,
    ) -> Result<HistoryPage, BankError> {
        let about = About::new("remit-list", call)
            .tran_id(&query.bank_tran_id)
            .bank(&query.account.bank_code_std);
        self.plain(&about, self.inner.remit_list(call, query)).await
    }

    async fn withdraw(
        &self,
        call: &BankCall<'_>,
        request: &WithdrawRequest,
    ) -> Result<TransferReceipt, BankError> {
        let about = About::new("withdraw", call)
            .tran_id(&request.bank_tran_id)
            .fintech(&request.fintech_use_num);
        self.plain(&about, self.inner.withdraw(call, request)).await
    }

    async fn deposit(
        &self,
        call: &BankCall<'_>,
        request: &DepositRequest,
    ) -> Result<TransferReceipt, BankError> {
        let about = About::new("deposit", call)
            .tran_id(&request.bank_tran_id)
            .recipient(&request.recipient);
        self.plain(&about, self.inner.deposit(call, request)).await
    }

    async fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> Result<Vec<Result<TransferReceipt, Refusal>>, BankError> {
        self.plain(
            &About::new("transfer-result", call),
            self.inner.transfer_result(call, queries),
        )
        .await
    }

    async fn real_name(
        &self,
        call: &BankCall<'_>,
        query: &RealNameQuery,
    ) -> Result<RealName, BankError> {
        let about = About::new("real-name", call)
            .tran_id(&query.bank_tran_id)
            .bank(&query.account.bank_code_std);
        self.answer(&about, self.inner.real_name(call, query), |r, f| {
            if let Some(v) = &f.account_holder_name {
                r.account_holder_name.clone_from(v);
            }
        })
        .await
    }

    async fn receive(
        &self,
        call: &BankCall<'_>,
        query: &ReceiveQuery,
    ) -> Result<ReceiveCheck, BankError> {
        let about = About::new("receive", call)
            .tran_id(&query.bank_tran_id)
            .recipient(&query.recipient);
        self.answer(&about, self.inner.receive(call, query), |r, f| {
            if let Some(v) = &f.account_holder_name {
                r.dps.account_holder_name.clone_from(v);
            }
        })
        .await
    }

    async fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> Result<BankAnswer, BankError> {
        let about = About::new("cancel-account", call)
            .tran_id(bank_tran_id)
            .fintech(fintech_use_num);
        self.plain(
            &about,
            self.inner
                .cancel_account(call, bank_tran_id, fintech_use_num, scope),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
    use sfop_core::Claims;
    use sfop_core::ledger::TransferKind;

    const HONG_FINTECH: &str = "120230000100000000000015";

    fn withdraw(id: &str) -> WithdrawRequest {
        WithdrawRequest {
            bank_tran_id: id.into(),
            fintech_use_num: HONG_FINTECH.into(),
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

    fn rule(fault: FaultKind) -> FaultRule {
        FaultRule {
            client_id: None,
            operation: None,
            fault,
            bank_code: None,
            rsp_code: None,
            bank_rsp_code: None,
            rsp_message: None,
            fixture: None,
            times: None,
        }
    }

    fn hong() -> Claims {
        Claims {
            client_id: DEMO_CLIENT_ID.into(),
            client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
            user_seq_no: Some("1100000001".into()),
            scopes: vec!["transfer".into(), "inquiry".into()],
            fintech_use_nums: Vec::new(),
        }
    }

    fn call(claims: &Claims) -> BankCall<'_> {
        BankCall {
            caller: Some(claims),
            now_millis: sfop_core::time::now_millis(),
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        }
    }

    #[tokio::test]
    async fn a_scripted_timeout_books_the_transfer_and_transfer_result_finds_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let vbank = VirtualBank::open(&store)?;
        let script = FaultScript::default();
        let bank = ScriptedBank::new(vbank.clone(), script.clone());
        let hong = hong();
        let call = call(&hong);
        let total = vbank.total_balance()?;

        // Only the next withdraw of this client, once.
        script.add(FaultRule {
            client_id: Some(DEMO_CLIENT_ID.into()),
            operation: Some("withdraw".into()),
            times: Some(1),
            ..rule(FaultKind::Timeout)
        })?;
        let id = format!("{DEMO_CLIENT_USE_CODE}U000000901");
        assert!(matches!(
            bank.withdraw(&call, &withdraw(&id)).await,
            Err(BankError::Timeout)
        ));
        assert!(script.rules().is_empty(), "the rule was used up");
        let date = sfop_core::time::format_dtm(call.now_millis, call.utc_offset_minutes);
        let found = bank
            .transfer_result(
                &call,
                &[ResultQuery {
                    kind: TransferKind::Withdraw,
                    org_bank_tran_id: id.clone(),
                    org_bank_tran_date: date[..8].into(),
                    org_tran_amt: 1000,
                }],
            )
            .await?;
        assert!(
            matches!(found.as_slice(), [Ok(r)] if r.tran_amt == 1000),
            "{found:?}"
        );
        assert_eq!(vbank.total_balance()?, total, "money moved, none created");

        // A duplicate and a fixture refusal do nothing at the bank.
        script.add(FaultRule {
            operation: Some("withdraw".into()),
            times: Some(1),
            ..rule(FaultKind::Duplicate)
        })?;
        let fresh = format!("{DEMO_CLIENT_USE_CODE}U000000902");
        match bank.withdraw(&call, &withdraw(&fresh)).await {
            Err(BankError::Refused(r)) => assert_eq!(r.rsp_code, "A0326"),
            other => panic!("expected A0326, got {other:?}"),
        }
        // The id was not consumed: the real bank takes it now.
        bank.withdraw(&call, &withdraw(&fresh)).await?;
        // Another client's rule does not apply.
        script.add(FaultRule {
            client_id: Some("someone-else".into()),
            ..rule(FaultKind::Outage)
        })?;
        assert!(bank.bank_status(&call).await?.iter().all(|b| b.available));
        script.clear();
        assert!(
            FaultRule {
                operation: Some("steal".into()),
                ..rule(FaultKind::Outage)
            }
            .validate()
            .is_err()
        );
        Ok(())
    }

    #[tokio::test]
    async fn outages_refusals_and_fixtures_follow_the_bank_filter()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let vbank = VirtualBank::open(&store)?;
        let script = FaultScript::default();
        let bank = ScriptedBank::new(vbank.clone(), script.clone());
        let hong = hong();
        let call = call(&hong);
        let hong_bank = vbank
            .bank_of_fintech_num(HONG_FINTECH)
            .await
            .ok_or("hong's fintech number has a bank")?;
        let other_bank = if hong_bank == "002" { "003" } else { "002" };
        let tran = |n: u32| format!("{DEMO_CLIENT_USE_CODE}U{n:09}");

        // An outage of another bank: hong's bank answers, bank status shows only that one down.
        script.add(FaultRule {
            bank_code: Some(other_bank.into()),
            ..rule(FaultKind::Outage)
        })?;
        bank.balance(&call, &tran(801), HONG_FINTECH).await?;
        let banks = bank.bank_status(&call).await?;
        assert!(
            banks
                .iter()
                .all(|b| b.available == (b.code.as_str() != other_bank))
        );
        script.clear();

        // A bank failure with its own code, on hong's bank only.
        script.add(FaultRule {
            operation: Some("balance".into()),
            bank_code: Some(hong_bank.clone()),
            bank_rsp_code: Some("551".into()),
            ..rule(FaultKind::Refuse)
        })?;
        match bank.balance(&call, &tran(802), HONG_FINTECH).await {
            Err(BankError::Refused(r)) => {
                assert_eq!(r.rsp_code, "A0009");
                let answer = r.bank.ok_or("a bank answer")?;
                assert_eq!(
                    (
                        answer.bank_rsp_code.as_str(),
                        answer.bank_code_tran.as_str()
                    ),
                    ("551", hong_bank.as_str())
                );
                assert_eq!(answer.bank_tran_id, tran(802));
            }
            other => panic!("expected A0009, got {other:?}"),
        }
        script.clear();

        // A fixture answer: the bank's checks, the rule's numbers.
        script.add(FaultRule {
            operation: Some("balance".into()),
            fixture: Some(Fixture {
                balance_amt: Some(-5),
                ..Fixture::default()
            }),
            ..rule(FaultKind::Fixture)
        })?;
        let b = bank.balance(&call, &tran(803), HONG_FINTECH).await?;
        assert_eq!(b.balance_amt, -5);
        assert!(
            matches!(bank.balance(&call, &tran(803), HONG_FINTECH).await, Err(BankError::Refused(r)) if r.rsp_code == "A0326"),
            "the bank still refuses a repeated bank_tran_id"
        );
        Ok(())
    }

    #[test]
    fn stored_rules_keep_their_ids_and_counts() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let script = FaultScript::open(&store)?;
        let a = script.add(FaultRule {
            client_id: Some("app-a".into()),
            times: Some(3),
            ..rule(FaultKind::Outage)
        })?;
        let b = script.add(FaultRule {
            client_id: Some("app-b".into()),
            ..rule(FaultKind::Outage)
        })?;
        assert!(script.take("balance", Some("app-a"), || None).is_some());
        let again = FaultScript::open(&store)?;
        let rules = again.rules();
        assert_eq!(
            rules
                .iter()
                .map(|s| (s.id, s.rule.times))
                .collect::<Vec<_>>(),
            vec![(a, Some(2)), (b, None)]
        );
        assert!(again.remove(a)?);
        assert!(!again.remove(a)?);
        let c = again.add(rule(FaultKind::Timeout))?;
        assert!(c > b, "ids are never reused");
        assert_eq!(again.clear_client(Some("app-b"))?, 1);
        assert_eq!(FaultScript::open(&store)?.rules().len(), 1);
        Ok(())
    }

    #[test]
    fn json_rules_name_the_field_they_get_wrong() {
        let err = |v: serde_json::Value| FaultRule::from_json(&v).err().map(|e| e.field);
        use serde_json::json;
        assert_eq!(err(json!({"fault": "explode"})), Some("fault"));
        assert_eq!(err(json!({"operation": "withdraw"})), Some("fault"));
        assert_eq!(err(json!({"fault": "outage", "times": 0})), Some("times"));
        assert_eq!(err(json!({"fault": "outage", "times": -1})), Some("times"));
        assert_eq!(
            err(json!({"fault": "outage", "client_id": "a b"})),
            Some("client_id")
        );
        assert_eq!(
            err(json!({"fault": "outage", "bank_code": "97"})),
            Some("bank_code")
        );
        assert_eq!(
            err(json!({"fault": "outage", "rsp_code": "A0001"})),
            Some("rsp_code")
        );
        assert_eq!(err(json!({"fault": "refuse"})), Some("rsp_code"));
        assert_eq!(
            err(json!({"fault": "duplicate", "operation": "bank-status"})),
            Some("operation")
        );
        assert_eq!(
            err(
                json!({"fault": "fixture", "operation": "withdraw", "fixture": {"balance_amt": 1}})
            ),
            Some("operation")
        );
        assert_eq!(
            err(
                json!({"fault": "fixture", "operation": "real-name", "fixture": {"balance_amt": 1}})
            ),
            Some("fixture")
        );
        assert_eq!(err(json!({"fault": "outage", "rogue": 1})), Some("body"));
        assert_eq!(
            err(json!({"fault": "outage", "client_id": "app-1", "times": 2})),
            None
        );
    }
}
