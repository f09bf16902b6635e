//! Institution onboarding on the admin API: `/admin/v1/institutions` (list,
//! create) and its actions (register, verify or open a contract account,
//! limits, approve, suspend, resume), authorised by admin biscuits
//! (`role("admin")`) before the body is read, like the rest of the admin
//! API; deny by default. The request and answer bodies are the types here,
//! shared by the server and `sfop institution …`. The developer portal's
//! institution requests go through [`PortalInstitutions`]. The records live
//! in the virtual bank, which reads them in the transaction that books a
//! transfer (docs/adr/0017-institutions.md). Every change is a
//! [`BankChange`]: applied to the node's bank, or on a cluster submitted to
//! the cluster's order of changes, which every node applies to its own
//! bank (docs/adr/0030).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use sfop_auth::ClientRegistry;
use sfop_gateway::PlatformError;
use sfop_gateway::platform::{Body, BodyLimit, Enveloped};
use sfop_vbank::{
    Applied, BankChange, ClusterBank, InstitutionState, InstitutionView, Limits, NewInstitution,
    VirtualBank,
};

use crate::admin_http::Admin;
/// The routes' paths: the admin API's one definition, which the CLI also speaks.
pub use sfop_admin_api::institutions::{ACCOUNTS, APPROVE, LIMITS, LIST, RESUME, SUSPEND, VERIFY};

/// Test funds a sandbox contract account opens with, in won.
pub const SANDBOX_TEST_FUNDS: u64 = 100_000_000;

/// Largest request body: a request is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

/// Body of `POST` [`LIST`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    /// `M` and 9 digits; allocated when absent. A code apps already use
    /// (an app registered without `--institution`) becomes theirs.
    #[serde(default)]
    pub client_use_code: Option<String>,
    /// `wd_pass_phrase` deposits must carry; `NONE` when absent.
    #[serde(default)]
    pub wd_pass_phrase: Option<String>,
    #[serde(default)]
    pub withdraw_limits: Option<Limits>,
    #[serde(default)]
    pub deposit_limits: Option<Limits>,
}

/// Body of [`ACCOUNTS`]: either `bank_code_std` and `account_num` of an
/// existing account (registered unverified), or `open_sandbox` (an account
/// opened at the virtual bank with test funds, verified at once).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    pub client_use_code: String,
    #[serde(default)]
    pub bank_code_std: Option<String>,
    #[serde(default)]
    pub account_num: Option<String>,
    #[serde(default)]
    pub open_sandbox: bool,
    /// Test funds of a sandbox account; [`SANDBOX_TEST_FUNDS`] when absent.
    #[serde(default)]
    pub opening_balance: Option<u64>,
}

/// Body of [`VERIFY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub client_use_code: String,
    pub bank_code_std: String,
    pub account_num: String,
}

/// Body of [`LIMITS`]: the limits given change, the others stay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub client_use_code: String,
    #[serde(default)]
    pub withdraw_limits: Option<Limits>,
    #[serde(default)]
    pub deposit_limits: Option<Limits>,
}

/// Body of [`APPROVE`], [`SUSPEND`] and [`RESUME`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub client_use_code: String,
}

/// One institution and the apps (`client_id`s) that belong to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstitutionEntry {
    #[serde(flatten)]
    pub institution: InstitutionView,
    #[serde(default)]
    pub apps: Vec<String>,
}

/// The answer of every route (besides the common envelope): the
/// institutions listed, or the one the call changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstitutionsAnswer {
    pub rsp_code: String,
    #[serde(default)]
    pub rsp_message: String,
    #[serde(default)]
    pub res_list: Vec<InstitutionEntry>,
    /// [`ACCOUNTS`] with `open_sandbox`: the new account's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_num: Option<String>,
}

/// The onboarding routes (the caller admitted as an admin by the
/// router's admin layer). Each call runs on the blocking pool: it flushes
/// the store.
pub fn routes(onboarding: Onboarding) -> Router {
    Router::new()
        .route(LIST, get(list).post(create))
        .route(ACCOUNTS, post(accounts))
        .route(VERIFY, post(verify))
        .route(LIMITS, post(limits))
        .route(APPROVE, post(approve))
        .route(SUSPEND, post(suspend))
        .route(RESUME, post(resume))
        .layer(Extension(BodyLimit(MAX_BODY)))
        .with_state(onboarding)
}

/// Why a call was refused.
enum Refused {
    /// The caller's fault: 400 (404 for an unknown institution, 409 for a
    /// state that does not allow it), `A0004`; the message names the field.
    Invalid(u16, String),
    /// The cluster's database cannot be reached: 503 `A0013`, nothing
    /// changed.
    Unavailable(String),
    Internal(String),
}

impl From<Refused> for PlatformError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Invalid(status, message) => PlatformError::refused(status, "A0004", message),
            Refused::Unavailable(cause) => PlatformError::refused(
                503,
                "A0013",
                format!(
                    "the cluster database is unreachable from this node ({cause}); institution \
                     changes wait until it is back: retry"
                ),
            ),
            Refused::Internal(e) => PlatformError::internal("the institutions endpoint", e),
        }
    }
}

type Answer = Result<Enveloped<InstitutionsAnswer>, PlatformError>;

/// Runs `call` on the blocking pool; logs an admin's successful change.
async fn blocking(
    onboarding: Onboarding,
    admin: Option<(String, &'static str)>,
    status: StatusCode,
    call: impl FnOnce(&Onboarding) -> Result<InstitutionsAnswer, Refused> + Send + 'static,
) -> Answer {
    let answer = tokio::task::spawn_blocking(move || call(&onboarding))
        .await
        .map_err(|e| PlatformError::internal("the institutions endpoint", e))??;
    if let Some((admin, path)) = admin {
        tracing::info!(%admin, %path, "institution admin call");
    }
    Ok(Enveloped(status, answer))
}

async fn list(State(o): State<Onboarding>, Admin(_): Admin) -> Answer {
    blocking(o, None, StatusCode::OK, Onboarding::list).await
}

async fn create(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let r: CreateRequest = body(&b)?;
    blocking(o, Some((admin, LIST)), StatusCode::CREATED, move |o| {
        let view = o.create(r, InstitutionState::Requested)?;
        o.answer(view, None)
    })
    .await
}

async fn accounts(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let r: AccountRequest = body(&b)?;
    blocking(o, Some((admin, ACCOUNTS)), StatusCode::OK, move |o| {
        let (view, num) = o.account(r)?;
        o.answer(view, num)
    })
    .await
}

async fn verify(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let r: VerifyRequest = body(&b)?;
    blocking(o, Some((admin, VERIFY)), StatusCode::OK, move |o| {
        let applied = o.change(&BankChange::VerifyContractAccount {
            client_use_code: r.client_use_code,
            bank_code_std: r.bank_code_std,
            account_num: r.account_num,
        })?;
        o.answer(applied.institution, None)
    })
    .await
}

async fn limits(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let r: LimitsRequest = body(&b)?;
    blocking(o, Some((admin, LIMITS)), StatusCode::OK, move |o| {
        let applied = o.change(&BankChange::SetInstitutionLimits {
            client_use_code: r.client_use_code,
            withdraw_limits: r.withdraw_limits,
            deposit_limits: r.deposit_limits,
        })?;
        o.answer(applied.institution, None)
    })
    .await
}

async fn approve(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let code = body::<CodeRequest>(&b)?.client_use_code;
    blocking(o, Some((admin, APPROVE)), StatusCode::OK, move |o| {
        o.set_state(code, InstitutionState::Active)
    })
    .await
}

async fn suspend(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let code = body::<CodeRequest>(&b)?.client_use_code;
    blocking(o, Some((admin, SUSPEND)), StatusCode::OK, move |o| {
        o.set_state(code, InstitutionState::Suspended)
    })
    .await
}

async fn resume(State(o): State<Onboarding>, Admin(admin): Admin, Body(b): Body) -> Answer {
    let code = body::<CodeRequest>(&b)?.client_use_code;
    blocking(o, Some((admin, RESUME)), StatusCode::OK, move |o| {
        let applied = o.change(&BankChange::ResumeInstitution {
            client_use_code: code.clone(),
        })?;
        tracing::info!(client_use_code = %code, "institution resumed");
        o.answer(applied.institution, None)
    })
    .await
}

impl From<sfop_vbank::Error> for Refused {
    fn from(e: sfop_vbank::Error) -> Self {
        match e {
            sfop_vbank::Error::Invalid(m) => Refused::Invalid(400, m),
            sfop_vbank::Error::UnknownInstitution(code) => {
                Refused::Invalid(404, format!("client_use_code: no institution {code}"))
            }
            sfop_vbank::Error::UnknownBank(code) => {
                Refused::Invalid(400, format!("bank_code_std: no participant bank {code}"))
            }
            sfop_vbank::Error::Conflict(m) => Refused::Invalid(409, m),
            sfop_vbank::Error::Cluster(sfop_store_pg::Error::Unavailable(cause)) => {
                Refused::Unavailable(cause)
            }
            e => Refused::Internal(e.to_string()),
        }
    }
}

impl From<sfop_auth::Error> for Refused {
    fn from(e: sfop_auth::Error) -> Self {
        match e {
            sfop_auth::Error::Invalid(m) => Refused::Invalid(400, m),
            sfop_auth::Error::Unavailable(m) => Refused::Unavailable(m),
            e => Refused::Internal(e.to_string()),
        }
    }
}

/// The onboarding operations, over the bank's records and the client
/// registry's codes.
#[derive(Debug, Clone)]
pub struct Onboarding {
    /// Where the records are read (on a cluster, this node's copy, which
    /// the cluster's changes keep current).
    bank: VirtualBank,
    clients: ClientRegistry,
    /// On a cluster: where changes go, and the runtime that waits for the
    /// database for the blocking callers.
    cluster: Option<(ClusterBank, tokio::runtime::Handle)>,
}

/// Runs `f`, which writes and flushes the bank's store: on a worker of the
/// multi-threaded runtime (the portal calls from one) the worker's other
/// tasks are handed over first, so a flush stalls only this call.
fn flushing<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(bytes).map_err(|e| Refused::Invalid(400, format!("body: {e}")))
}

impl Onboarding {
    /// Makes `change`: on this node's bank, or on every node's through the
    /// cluster. Called on the blocking pool.
    fn change(&self, change: &BankChange) -> Result<Applied, Refused> {
        let Some((clustered, runtime)) = &self.cluster else {
            return Ok(flushing(|| self.bank.apply_change(change, None))?);
        };
        match crate::cluster::apps::wait(runtime, clustered.submit(change)) {
            Ok(applied) => Ok(applied?),
            Err(e) => Err(Refused::Unavailable(e.to_string())),
        }
    }

    /// `view` as it stands: on a cluster, its contract accounts' balances
    /// are the ledger's.
    fn current(&self, view: InstitutionView) -> Result<InstitutionView, Refused> {
        let Some((clustered, runtime)) = &self.cluster else {
            return Ok(view);
        };
        match crate::cluster::apps::wait(runtime, clustered.with_ledger_balances(view)) {
            Ok(view) => Ok(view?),
            Err(e) => Err(Refused::Unavailable(e.to_string())),
        }
    }

    fn entry(&self, institution: InstitutionView) -> Result<InstitutionEntry, Refused> {
        let institution = self.current(institution)?;
        let apps = self
            .clients
            .of_institution(&institution.client_use_code)?
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        Ok(InstitutionEntry { institution, apps })
    }

    fn answer(
        &self,
        institution: InstitutionView,
        account_num: Option<String>,
    ) -> Result<InstitutionsAnswer, Refused> {
        Ok(InstitutionsAnswer {
            rsp_code: "A0000".into(),
            rsp_message: String::new(),
            res_list: vec![self.entry(institution)?],
            account_num,
        })
    }

    fn list(&self) -> Result<InstitutionsAnswer, Refused> {
        let res_list = self
            .bank
            .institutions()?
            .into_iter()
            .map(|i| self.entry(i))
            .collect::<Result<_, _>>()?;
        Ok(InstitutionsAnswer {
            rsp_code: "A0000".into(),
            rsp_message: String::new(),
            res_list,
            account_num: None,
        })
    }

    fn create(
        &self,
        r: CreateRequest,
        state: InstitutionState,
    ) -> Result<InstitutionView, Refused> {
        if let Some(code) = &r.client_use_code
            && self.bank.institution(code)?.is_some()
        {
            return Err(Refused::Invalid(
                409,
                format!("client_use_code: institution {code} exists"),
            ));
        }
        let code = self.clients.reserve_code(r.client_use_code.as_deref())?;
        let applied = self.change(&BankChange::CreateInstitution(NewInstitution {
            client_use_code: code,
            name: r.name,
            state,
            wd_pass_phrase: r.wd_pass_phrase,
            withdraw_limits: r.withdraw_limits,
            deposit_limits: r.deposit_limits,
        }))?;
        Ok(applied.institution)
    }

    fn account(&self, r: AccountRequest) -> Result<(InstitutionView, Option<String>), Refused> {
        if r.open_sandbox {
            if r.account_num.is_some() {
                return Err(Refused::Invalid(
                    400,
                    "account_num: not with open_sandbox (the bank numbers the new account)".into(),
                ));
            }
            let applied = self.change(&BankChange::OpenSandboxContractAccount {
                client_use_code: r.client_use_code,
                opening_balance: r.opening_balance.unwrap_or(SANDBOX_TEST_FUNDS),
                now_millis: sfop_core::time::now_millis(),
            })?;
            return Ok((applied.institution, applied.account_num));
        }
        let (Some(bank_code), Some(num)) = (&r.bank_code_std, &r.account_num) else {
            return Err(Refused::Invalid(
                400,
                "account_num: bank_code_std and account_num of an existing account, or open_sandbox"
                    .into(),
            ));
        };
        let applied = self.change(&BankChange::RegisterContractAccount {
            client_use_code: r.client_use_code.clone(),
            bank_code_std: bank_code.clone(),
            account_num: num.clone(),
        })?;
        Ok((applied.institution, None))
    }

    fn set_state(
        &self,
        code: String,
        state: InstitutionState,
    ) -> Result<InstitutionsAnswer, Refused> {
        let view = self
            .change(&BankChange::SetInstitutionState {
                client_use_code: code.clone(),
                state,
            })?
            .institution;
        tracing::info!(client_use_code = %code, state = state.as_str(), "institution state changed");
        self.answer(view, None)
    }
}

/// The portal's view of institutions: a developer requests one for an app
/// (pending until the operator approves), optionally with a sandbox
/// contract account opened at once with test funds.
#[derive(Debug)]
pub struct PortalInstitutions {
    onboarding: Onboarding,
}

impl Onboarding {
    /// Onboarding over `bank` (this node's) and `clients`; with
    /// `cluster`, changes go through the cluster's bank.
    pub fn new(
        bank: VirtualBank,
        clients: ClientRegistry,
        cluster: Option<(ClusterBank, tokio::runtime::Handle)>,
    ) -> Self {
        Self {
            bank,
            clients,
            cluster,
        }
    }
}

impl PortalInstitutions {
    pub fn new(onboarding: Onboarding) -> Self {
        Self { onboarding }
    }
}

fn portal_view(v: InstitutionView) -> sfop_portal::InstitutionInfo {
    let limits = |l: Limits| [l.per_tran, l.daily, l.monthly];
    sfop_portal::InstitutionInfo {
        client_use_code: v.client_use_code,
        name: v.name,
        state: v.state.as_str().to_owned(),
        withdraw_limits: limits(v.withdraw_limits),
        deposit_limits: limits(v.deposit_limits),
        contract_accounts: v
            .contract_accounts
            .into_iter()
            .map(|a| sfop_portal::ContractAccountInfo {
                bank_code_std: a.bank_code_std,
                bank_name: a.bank_name,
                account_num: a.account_num,
                account_holder_name: a.account_holder_name,
                verified: a.verified,
                balance_amt: a.balance_amt,
            })
            .collect(),
    }
}

/// The developer's input, or the platform's failure (the portal logs it
/// and answers 503).
fn service_error(r: Refused) -> sfop_portal::ServiceError {
    match r {
        Refused::Invalid(_, m) => sfop_portal::ServiceError::Invalid(m),
        Refused::Unavailable(e) | Refused::Internal(e) => {
            sfop_portal::ServiceError::Failed(e.into())
        }
    }
}

impl sfop_portal::Institutions for PortalInstitutions {
    fn get(
        &self,
        client_use_code: &str,
    ) -> Result<Option<sfop_portal::InstitutionInfo>, sfop_portal::ServiceError> {
        let view = self
            .onboarding
            .bank
            .institution(client_use_code)
            .map_err(|e| service_error(e.into()))?;
        view.map(|v| self.onboarding.current(v).map(portal_view))
            .transpose()
            .map_err(service_error)
    }

    fn request(
        &self,
        client_use_code: &str,
        name: &str,
        sandbox_account: bool,
    ) -> Result<sfop_portal::InstitutionInfo, sfop_portal::ServiceError> {
        let created = self
            .onboarding
            .create(
                CreateRequest {
                    name: name.to_owned(),
                    client_use_code: Some(client_use_code.to_owned()),
                    ..CreateRequest::default()
                },
                InstitutionState::Requested,
            )
            .map_err(service_error)?;
        let view = if sandbox_account {
            self.onboarding
                .account(AccountRequest {
                    client_use_code: created.client_use_code,
                    open_sandbox: true,
                    ..AccountRequest::default()
                })
                .map_err(service_error)?
                .0
        } else {
            created
        };
        tracing::info!(
            client_use_code,
            sandbox_account,
            "institution requested on the portal"
        );
        Ok(portal_view(
            self.onboarding.current(view).map_err(service_error)?,
        ))
    }
}
