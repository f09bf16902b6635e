//! The host side of the capability interfaces, and the per-call state.
//!
//! Every capability call is async on the host side and may trap
//! (`imports: { default: async | trappable }`), and each runs in a
//! `sfop::host` span carrying the API, its version, the `api_tran_id`, the
//! operation, its outcome and its duration (docs/adr/0022-async-capabilities.md).
//! A bank call is bounded by the plugin's `timeout_ms`: a bank that has not
//! answered shortly before the call's deadline gets `timeout` (`A0017`), and
//! its future is dropped, so it holds no thread and no worker.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfop_core::ledger as cl;
use sfop_core::{BankCall, BankError, Manifest, time};
use wasmtime::{ResourceLimiter, UpdateDeadline};

use crate::Services;
use crate::bindings::platform::{auth_context, clock, kv, ledger, log, types};
use crate::budget::ApiMemory;
use crate::meter::Meter;

/// Longest log message a plugin may write; the rest is cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Everything one call's store holds.
pub struct HostState {
    manifest: Arc<Manifest>,
    services: Arc<Services>,
    api_tran_id: String,
    caller: Option<sfop_core::Claims>,
    /// When the bank calls (and outbound HTTP requests) of this call must
    /// have answered: set at [`HostState::begin`] for plugins granted
    /// `ledger` or `http` only.
    bank_deadline: Option<Instant>,
    /// What the manifest and the operator grant this API beyond its
    /// interfaces: allowed origins, variables, the outbound client.
    pub(crate) grants: Arc<crate::outbound::Grants>,
    /// The caller's W3C `traceparent`, passed on to outbound requests
    /// when tracing is off.
    pub(crate) traceparent: Option<String>,
    /// The plugin call's place in its trace (tracing on): the parent of
    /// host call spans and of outbound requests' `traceparent`.
    pub(crate) trace: sfop_telemetry::Parent,
    /// CPU time the instance may run, ns: first its instantiation, then
    /// (measured afresh) its call.
    cpu_budget_ns: u64,
    /// The CPU time charged so far, shared with the poll loop of the call.
    pub(crate) meter: Arc<Meter>,
    /// The call began: ticks yield to other requests (instantiation is
    /// synchronous and cannot).
    calling: bool,
    deadline_hit: bool,
    pub(crate) limits: Limits,
    /// What the guest said when it panicked (the SDK's panic hook logs it
    /// through the log capability, with [`PANIC_PREFIX`], before the trap):
    /// it goes into the call's fault line instead of a log line of its own.
    pub(crate) panic_message: Option<String>,
}

/// How the SDK's panic hook begins its log message.
pub const PANIC_PREFIX: &str = "panicked at ";

impl HostState {
    /// The state of an instance made before its call is known.
    pub(crate) fn new(
        manifest: Arc<Manifest>,
        services: Arc<Services>,
        cpu_budget_ns: u64,
        memory: Arc<ApiMemory>,
        grants: Arc<crate::outbound::Grants>,
    ) -> Self {
        let memory_bytes = manifest.limits.memory_mib as usize * (1 << 20);
        Self {
            manifest,
            services,
            api_tran_id: String::new(),
            caller: None,
            bank_deadline: None,
            grants,
            traceparent: None,
            trace: sfop_telemetry::Parent::default(),
            cpu_budget_ns,
            meter: Arc::new(Meter::default()),
            calling: false,
            deadline_hit: false,
            limits: Limits {
                memory_bytes,
                memory_hit: false,
                budget_hit: false,
                peak_bytes: 0,
                charged: 0,
                memory,
            },
            panic_message: None,
        }
    }

    /// Binds the instance to the one call it serves; the CPU budget starts
    /// now, not when the instance was made, and its instantiation is not
    /// charged to it.
    pub(crate) fn begin(&mut self, api_tran_id: String, caller: Option<sfop_core::Claims>) {
        self.bank_deadline = bank_deadline(&self.manifest);
        self.api_tran_id = api_tran_id;
        self.caller = caller;
        self.calling = true;
        self.deadline_hit = false;
        self.panic_message = None;
        self.meter.reset();
    }

    /// Called by wasmtime at each epoch tick that finds the guest running
    /// (instantiating or serving): ends it once the CPU it really ran, as
    /// its thread's CPU clock tells, exceeds the budget. A call yields to
    /// other requests at every tick; an instantiation cannot yield.
    pub(crate) fn on_epoch_tick(&mut self) -> UpdateDeadline {
        if self.meter.tick() > self.cpu_budget_ns {
            self.deadline_hit = true;
            UpdateDeadline::Interrupt
        } else if self.calling {
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(1)
        }
    }

    pub(crate) fn api_tran_id(&self) -> &str {
        &self.api_tran_id
    }

    pub(crate) fn deadline_hit(&self) -> bool {
        self.deadline_hit
    }

    /// When this call's bank and outbound calls must be over.
    pub(crate) fn host_deadline(&self) -> Option<Instant> {
        self.bank_deadline
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// The memory cap of one call's instance, and its part of the platform's
/// guest memory budget (given back when the store is dropped).
pub(crate) struct Limits {
    memory_bytes: usize,
    memory_hit: bool,
    budget_hit: bool,
    /// The largest linear memory size granted to this instance.
    peak_bytes: usize,
    /// Bytes charged to the budget for this instance.
    charged: u64,
    memory: Arc<ApiMemory>,
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.memory.release(self.charged);
    }
}

impl Limits {
    pub(crate) fn memory_hit(&self) -> bool {
        self.memory_hit
    }

    /// A growth was refused because the API's share or the platform's
    /// guest memory budget was full.
    pub(crate) fn budget_hit(&self) -> bool {
        self.budget_hit
    }

    pub(crate) fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            // Trap rather than fail the grow: a guest allocator would abort anyway,
            // and the trap tells us why the call ended.
            self.memory_hit = true;
            return Err(wasmtime::Error::msg("memory cap reached"));
        }
        let more = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        if !self.memory.charge(more) {
            self.budget_hit = true;
            return Err(wasmtime::Error::new(crate::budget::BudgetFull));
        }
        self.charged += more;
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

impl types::Host for HostState {}

impl HostState {
    fn write_log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if level == log::Level::Error && message.starts_with(PANIC_PREFIX) {
            self.panic_message = Some(message);
            return;
        }
        let (api, version, id) = (
            self.manifest.name.as_str(),
            &self.manifest.version,
            self.api_tran_id.as_str(),
        );
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "sfop::plugin", api, %version, api_tran_id = id, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "sfop::plugin", api, %version, api_tran_id = id, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "sfop::plugin", api, %version, api_tran_id = id, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "sfop::plugin", api, %version, api_tran_id = id, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "sfop::plugin", api, %version, api_tran_id = id, "{message}")
            }
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let span = self.span("log.log");
        let started = start(&span);
        self.write_log(level, message);
        finish(&span, started, HostOutcome::Ok);
        Ok(())
    }
}

impl clock::Host for HostState {
    async fn now_millis(&mut self) -> wasmtime::Result<u64> {
        let span = self.span("clock.now-millis");
        let started = start(&span);
        let now = time::now_millis();
        finish(&span, started, HostOutcome::Ok);
        Ok(now)
    }

    async fn utc_offset_minutes(&mut self) -> wasmtime::Result<i32> {
        let span = self.span("clock.utc-offset-minutes");
        let started = start(&span);
        finish(&span, started, HostOutcome::Ok);
        Ok(self.services.utc_offset_minutes)
    }
}

impl auth_context::Host for HostState {
    async fn caller(&mut self) -> wasmtime::Result<Option<auth_context::Claims>> {
        let span = self.span("auth-context.caller");
        let started = start(&span);
        let claims = self.caller.as_ref().map(|c| auth_context::Claims {
            client_id: c.client_id.clone(),
            client_use_code: c.client_use_code.clone(),
            user_seq_no: c.user_seq_no.clone(),
            scopes: c.scopes.clone(),
            fintech_use_nums: c.fintech_use_nums.clone(),
        });
        finish(&span, started, HostOutcome::Ok);
        Ok(claims)
    }
}

fn kv_error(e: sfop_core::KvError) -> kv::Error {
    match e {
        sfop_core::KvError::TooLarge(m) => kv::Error::TooLarge(m),
        sfop_core::KvError::Store(m) => kv::Error::Store(m),
    }
}

// The plugin store's operations are in-memory sled operations (no flush):
// they run inline, traced like every host call.
impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let span = self.span("kv.get");
        let started = start(&span);
        let otel = self.otel_span("kv.get", sfop_telemetry::Kind::Internal);
        let result = self
            .services
            .kv
            .get(&self.manifest.name, &key)
            .map_err(kv_error);
        finish(&span, started, kv_outcome(&result));
        end_otel(otel, kv_outcome(&result));
        Ok(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let span = self.span("kv.set");
        let started = start(&span);
        let otel = self.otel_span("kv.set", sfop_telemetry::Kind::Internal);
        let result = self
            .services
            .kv
            .set(&self.manifest.name, &key, &value)
            .map_err(kv_error);
        finish(&span, started, kv_outcome(&result));
        end_otel(otel, kv_outcome(&result));
        Ok(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::Error>> {
        let span = self.span("kv.delete");
        let started = start(&span);
        let otel = self.otel_span("kv.delete", sfop_telemetry::Kind::Internal);
        let result = self
            .services
            .kv
            .delete(&self.manifest.name, &key)
            .map_err(kv_error);
        finish(&span, started, kv_outcome(&result));
        end_otel(otel, kv_outcome(&result));
        Ok(result)
    }
}

impl HostState {
    /// The caller and clock the bank decides with: from the host, never
    /// from the plugin.
    fn bank_call(&self) -> BankCall<'_> {
        BankCall {
            caller: self.caller.as_ref(),
            now_millis: time::now_millis(),
            utc_offset_minutes: self.services.utc_offset_minutes,
        }
    }

    /// The span of one host call; disabled (and free) unless `sfop::host`
    /// is enabled at debug level.
    pub(crate) fn span(&self, operation: &'static str) -> tracing::Span {
        tracing::debug_span!(
            target: "sfop::host",
            "host_call",
            api = %self.manifest.name,
            version = %self.manifest.version,
            api_tran_id = %self.api_tran_id,
            operation,
        )
    }

    /// Runs one bank operation: traced, and bounded by the call's bank
    /// deadline. The timer is armed only if the bank does not answer at the
    /// first poll (the virtual bank's reads do), so an answer that is ready
    /// costs no timer. A bank still waiting at the deadline is dropped and
    /// the plugin gets `timeout`.
    async fn bank<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, BankError>>,
    ) -> Result<T, BankError> {
        let span = self.span(operation);
        let started = start(&span);
        let otel = self.otel_span(operation, sfop_telemetry::Kind::Client);
        // The call it serves travels with it, for a backend that passes it
        // on (the REST connector's `x-sfop-*` headers).
        let scope = sfop_core::ledger::CallScope {
            api_tran_id: self.api_tran_id.clone(),
            deadline: self.bank_deadline,
        };
        let result = bounded(self.bank_deadline, scope.run(call), &span).await;
        finish(&span, started, bank_outcome(&result));
        end_otel(otel, bank_outcome(&result));
        result
    }

    /// The OpenTelemetry span of a host call (kv, ledger, http): a child of
    /// the plugin call's span, created only when the request is sampled.
    pub(crate) fn otel_span(
        &self,
        operation: &'static str,
        kind: sfop_telemetry::Kind,
    ) -> sfop_telemetry::Span {
        if !self.trace.is_sampled() {
            return sfop_telemetry::Span::none();
        }
        let mut span = self.trace.child(operation, kind);
        span.set("sfop.host.operation", operation);
        span
    }
}

/// Ends a host call's OpenTelemetry span with its outcome: failed when the
/// call failed (a bank's refusal is an answer, not a failure).
pub(crate) fn end_otel(mut span: sfop_telemetry::Span, outcome: HostOutcome) {
    if span.is_recording() {
        span.set("sfop.host.outcome", outcome.as_str());
        if !matches!(outcome, HostOutcome::Ok | HostOutcome::Refused) {
            span.fail(outcome.as_str());
        }
    }
}

/// The deadline of a call's bank operations: the plugin's `timeout_ms`,
/// less a margin (a tenth of it, at most 50 ms) in which the plugin can
/// still answer `A0017` itself before the gateway's own limit ends the call.
fn bank_deadline(manifest: &Manifest) -> Option<Instant> {
    let caps = &manifest.capabilities;
    if !caps.contains(&sfop_core::Capability::Ledger)
        && !caps.contains(&sfop_core::Capability::Http)
    {
        return None;
    }
    let limit = Duration::from_millis(u64::from(manifest.limits.timeout_ms));
    let margin = (limit / 10).min(Duration::from_millis(50));
    Some(Instant::now() + (limit - margin))
}

/// `call`, or `timeout` once `deadline` passed. Without a tokio timer (no
/// runtime on this thread) the call is awaited unbounded.
async fn bounded<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, BankError>>,
    span: &tracing::Span,
) -> Result<T, BankError> {
    use tracing::Instrument;
    let mut call = std::pin::pin!(call.instrument(span.clone()));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => match deadline {
            Some(deadline) if tokio::runtime::Handle::try_current().is_ok() => {
                tokio::time::timeout_at(deadline.into(), call)
                    .await
                    .unwrap_or(Err(BankError::Timeout))
            }
            _ => call.await,
        },
    }
}

/// How a host call ended, for its span (and, later, its metric): one
/// definition, never a string built per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HostOutcome {
    Ok,
    /// The bank decided against the caller (an `rsp_code`).
    Refused,
    /// The bank did not answer in time.
    BankTimeout,
    /// The bank (or the platform store) failed.
    BackendError,
    /// The plugin asked for more than a capability allows.
    TooLarge,
    /// An outbound request to an origin (or address) not allowed.
    Denied,
    /// An outbound request not answered before its deadline.
    UpstreamTimeout,
    /// An outbound request that failed otherwise (connect, TLS, invalid).
    UpstreamError,
}

impl HostOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::BankTimeout => "bank_timeout",
            Self::BackendError => "backend_error",
            Self::TooLarge => "too_large",
            Self::Denied => "denied",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamError => "upstream_error",
        }
    }
}

/// The start of a traced call: no clock is read when its span is disabled.
pub(crate) fn start(span: &tracing::Span) -> Option<Instant> {
    (!span.is_disabled()).then(Instant::now)
}

pub(crate) fn finish(span: &tracing::Span, started: Option<Instant>, outcome: HostOutcome) {
    if let Some(started) = started {
        let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.in_scope(|| {
            tracing::debug!(
                target: "sfop::host",
                outcome = outcome.as_str(),
                duration_us,
                "host call"
            );
        });
    }
}

fn bank_outcome<T>(result: &Result<T, BankError>) -> HostOutcome {
    match result {
        Ok(_) => HostOutcome::Ok,
        Err(BankError::Refused(_)) => HostOutcome::Refused,
        Err(BankError::Timeout) => HostOutcome::BankTimeout,
        Err(BankError::Backend(_)) => HostOutcome::BackendError,
    }
}

fn kv_outcome<T>(result: &Result<T, kv::Error>) -> HostOutcome {
    match result {
        Ok(_) => HostOutcome::Ok,
        Err(kv::Error::TooLarge(_)) => HostOutcome::TooLarge,
        Err(kv::Error::Store(_)) => HostOutcome::BackendError,
    }
}

impl ledger::Host for HostState {
    async fn bank_status(&mut self) -> wasmtime::Result<Result<Vec<ledger::Bank>, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let banks = this
                .bank("ledger.bank-status", this.services.bank.bank_status(&call))
                .await
                .map_err(bank_error)?;
            Ok(banks
                .into_iter()
                .map(|b| ledger::Bank {
                    bank_code_std: b.code,
                    bank_name: b.name,
                    available: b.available,
                })
                .collect())
        }
        .await;
        Ok(result)
    }

    async fn user_info(
        &mut self,
        user_seq_no: String,
    ) -> wasmtime::Result<Result<ledger::User, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let u = this
                .bank(
                    "ledger.user-info",
                    this.services.bank.user_info(&call, &user_seq_no),
                )
                .await
                .map_err(bank_error)?;
            Ok(ledger::User {
                user_seq_no: u.user_seq_no,
                user_ci: u.user_ci,
                user_name: u.user_name,
                accounts: u.accounts.into_iter().map(registered).collect(),
            })
        }
        .await;
        Ok(result)
    }

    async fn registered_accounts(
        &mut self,
        user_seq_no: String,
        include_cancelled: bool,
    ) -> wasmtime::Result<Result<Vec<ledger::RegisteredAccount>, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let accounts = this
                .bank(
                    "ledger.registered-accounts",
                    this.services
                        .bank
                        .registered_accounts(&call, &user_seq_no, include_cancelled),
                )
                .await
                .map_err(bank_error)?;
            Ok(accounts.into_iter().map(registered).collect())
        }
        .await;
        Ok(result)
    }

    async fn balance(
        &mut self,
        bank_tran_id: String,
        fintech_use_num: String,
    ) -> wasmtime::Result<Result<ledger::AccountBalance, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let b = this
                .bank(
                    "ledger.balance",
                    this.services
                        .bank
                        .balance(&call, &bank_tran_id, &fintech_use_num),
                )
                .await
                .map_err(bank_error)?;
            Ok(ledger::AccountBalance {
                answer: answer(b.answer),
                fintech_use_num: b.fintech_use_num,
                bank_name: b.bank_name,
                balance_amt: b.balance_amt,
                available_amt: b.available_amt,
                account_type: b.account_type,
                product_name: b.product_name,
                account_issue_date: b.account_issue_date,
                maturity_date: b.maturity_date,
                last_tran_date: b.last_tran_date,
            })
        }
        .await;
        Ok(result)
    }

    async fn transactions(
        &mut self,
        q: ledger::HistoryQuery,
    ) -> wasmtime::Result<Result<ledger::HistoryPage, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let query = cl::HistoryQuery {
                bank_tran_id: q.bank_tran_id,
                fintech_use_num: q.fintech_use_num,
                inquiry_type: match q.inquiry_type {
                    ledger::InoutFilter::All => cl::InoutFilter::All,
                    ledger::InoutFilter::Deposits => cl::InoutFilter::Deposits,
                    ledger::InoutFilter::Withdrawals => cl::InoutFilter::Withdrawals,
                },
                from_dtime: q.from_dtime,
                to_dtime: q.to_dtime,
                sort_order: sort_order(q.sort_order),
                cursor: q.cursor,
                page_size: q.page_size,
            };
            this.bank(
                "ledger.transactions",
                this.services.bank.transactions(&call, &query),
            )
            .await
            .map(history_page)
            .map_err(bank_error)
        }
        .await;
        Ok(result)
    }

    async fn remit_list(
        &mut self,
        q: ledger::RemitQuery,
    ) -> wasmtime::Result<Result<ledger::HistoryPage, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let query = cl::RemitQuery {
                bank_tran_id: q.bank_tran_id,
                account: cl::AccountRef {
                    bank_code_std: q.bank_code_std,
                    account_num: q.account_num,
                },
                from_dtime: q.from_dtime,
                to_dtime: q.to_dtime,
                sort_order: sort_order(q.sort_order),
                cursor: q.cursor,
                page_size: q.page_size,
            };
            this.bank(
                "ledger.remit-list",
                this.services.bank.remit_list(&call, &query),
            )
            .await
            .map(history_page)
            .map_err(bank_error)
        }
        .await;
        Ok(result)
    }

    async fn withdraw(
        &mut self,
        r: ledger::WithdrawRequest,
    ) -> wasmtime::Result<Result<ledger::TransferReceipt, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let request = cl::WithdrawRequest {
                bank_tran_id: r.bank_tran_id,
                fintech_use_num: r.fintech_use_num,
                tran_amt: r.tran_amt,
                cntr_account_num: r.cntr_account_num,
                wd_print_content: r.wd_print_content,
                dps_print_content: r.dps_print_content,
                req_client_name: r.req_client_name,
                req_client_num: r.req_client_num,
                transfer_purpose: r.transfer_purpose,
                recv_client_name: r.recv_client_name,
                recv_client_bank_code: r.recv_client_bank_code,
                recv_client_account_num: r.recv_client_account_num,
            };
            this.bank(
                "ledger.withdraw",
                this.services.bank.withdraw(&call, &request),
            )
            .await
            .map(receipt)
            .map_err(bank_error)
        }
        .await;
        Ok(result)
    }

    async fn deposit(
        &mut self,
        r: ledger::DepositRequest,
    ) -> wasmtime::Result<Result<ledger::TransferReceipt, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let request = cl::DepositRequest {
                bank_tran_id: r.bank_tran_id,
                recipient: recipient(r.recipient),
                tran_amt: r.tran_amt,
                cntr_account_num: r.cntr_account_num,
                wd_pass_phrase: r.wd_pass_phrase,
                wd_print_content: r.wd_print_content,
                print_content: r.print_content,
                req_client_name: r.req_client_name,
                req_client_num: r.req_client_num,
                transfer_purpose: r.transfer_purpose,
            };
            this.bank(
                "ledger.deposit",
                this.services.bank.deposit(&call, &request),
            )
            .await
            .map(receipt)
            .map_err(bank_error)
        }
        .await;
        Ok(result)
    }

    // The item type is the WIT interface's `result<transfer-receipt, refusal>`.
    #[allow(clippy::result_large_err)]
    async fn transfer_result(
        &mut self,
        queries: Vec<ledger::ResultQuery>,
    ) -> wasmtime::Result<
        Result<Vec<Result<ledger::TransferReceipt, ledger::Refusal>>, ledger::Error>,
    > {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let queries: Vec<cl::ResultQuery> = queries
                .into_iter()
                .map(|q| cl::ResultQuery {
                    kind: match q.kind {
                        ledger::TransferKind::Withdraw => cl::TransferKind::Withdraw,
                        ledger::TransferKind::Deposit => cl::TransferKind::Deposit,
                    },
                    org_bank_tran_id: q.org_bank_tran_id,
                    org_bank_tran_date: q.org_bank_tran_date,
                    org_tran_amt: q.org_tran_amt,
                })
                .collect();
            let results = this
                .bank(
                    "ledger.transfer-result",
                    this.services.bank.transfer_result(&call, &queries),
                )
                .await
                .map_err(bank_error)?;
            Ok(results
                .into_iter()
                .map(|r| r.map(receipt).map_err(refusal))
                .collect())
        }
        .await;
        Ok(result)
    }

    async fn real_name(
        &mut self,
        q: ledger::RealNameQuery,
    ) -> wasmtime::Result<Result<ledger::RealNameResult, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let query = cl::RealNameQuery {
                bank_tran_id: q.bank_tran_id,
                account: account_ref(q.account),
                account_holder_info_type: q.account_holder_info_type,
                account_holder_info: q.account_holder_info,
            };
            let r = this
                .bank(
                    "ledger.real-name",
                    this.services.bank.real_name(&call, &query),
                )
                .await
                .map_err(bank_error)?;
            Ok(ledger::RealNameResult {
                answer: answer(r.answer),
                bank_code_std: r.bank_code_std,
                bank_name: r.bank_name,
                account_num: r.account_num,
                account_holder_info_type: r.account_holder_info_type,
                account_holder_info: r.account_holder_info,
                account_holder_name: r.account_holder_name,
                account_type: r.account_type,
            })
        }
        .await;
        Ok(result)
    }

    async fn receive(
        &mut self,
        q: ledger::ReceiveQuery,
    ) -> wasmtime::Result<Result<ledger::ReceiveCheck, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let query = cl::ReceiveQuery {
                bank_tran_id: q.bank_tran_id,
                recipient: recipient(q.recipient),
                tran_amt: q.tran_amt,
                cntr_account_num: q.cntr_account_num,
                print_content: q.print_content,
            };
            let r = this
                .bank("ledger.receive", this.services.bank.receive(&call, &query))
                .await
                .map_err(bank_error)?;
            Ok(ledger::ReceiveCheck {
                answer: answer(r.answer),
                dps: party(r.dps),
                wd: party(r.wd),
                tran_amt: r.tran_amt,
            })
        }
        .await;
        Ok(result)
    }

    async fn cancel_account(
        &mut self,
        bank_tran_id: String,
        fintech_use_num: String,
        scope: ledger::ConsentScope,
    ) -> wasmtime::Result<Result<ledger::BankAnswer, ledger::Error>> {
        let call = self.bank_call();
        let this = &*self;
        let result = async {
            let scope = match scope {
                ledger::ConsentScope::Inquiry => cl::ConsentScope::Inquiry,
                ledger::ConsentScope::Transfer => cl::ConsentScope::Transfer,
            };
            this.bank(
                "ledger.cancel-account",
                this.services
                    .bank
                    .cancel_account(&call, &bank_tran_id, &fintech_use_num, scope),
            )
            .await
            .map(answer)
            .map_err(bank_error)
        }
        .await;
        Ok(result)
    }
}

// Conversions between the WIT types and sfop-core's: field for field.

fn bank_error(e: BankError) -> ledger::Error {
    match e {
        BankError::Timeout => ledger::Error::Timeout,
        BankError::Backend(m) => ledger::Error::Backend(m),
        BankError::Refused(r) => ledger::Error::Refused(refusal(*r)),
    }
}

fn refusal(r: cl::Refusal) -> ledger::Refusal {
    ledger::Refusal {
        rsp_code: r.rsp_code,
        rsp_message: r.rsp_message,
        bank: r.bank.map(answer),
    }
}

fn answer(a: cl::BankAnswer) -> ledger::BankAnswer {
    ledger::BankAnswer {
        bank_tran_id: a.bank_tran_id,
        bank_tran_date: a.bank_tran_date,
        bank_code_tran: a.bank_code_tran,
        bank_rsp_code: a.bank_rsp_code,
        bank_rsp_message: a.bank_rsp_message,
    }
}

fn registered(a: cl::RegisteredAccount) -> ledger::RegisteredAccount {
    ledger::RegisteredAccount {
        fintech_use_num: a.fintech_use_num,
        account_alias: a.account_alias,
        bank_code_std: a.bank_code_std,
        bank_name: a.bank_name,
        account_num_masked: a.account_num_masked,
        account_holder_name: a.account_holder_name,
        account_type: a.account_type,
        inquiry_agree_dtime: a.inquiry_agree_dtime,
        transfer_agree_dtime: a.transfer_agree_dtime,
        registered_dtime: a.registered_dtime,
        cancelled: a.cancelled,
    }
}

fn party(p: cl::Party) -> ledger::Party {
    ledger::Party {
        bank_code_std: p.bank_code_std,
        bank_name: p.bank_name,
        account_num_masked: p.account_num_masked,
        account_holder_name: p.account_holder_name,
        print_content: p.print_content,
        fintech_use_num: p.fintech_use_num,
        account_alias: p.account_alias,
    }
}

fn receipt(r: cl::TransferReceipt) -> ledger::TransferReceipt {
    ledger::TransferReceipt {
        answer: answer(r.answer),
        kind: match r.kind {
            cl::TransferKind::Withdraw => ledger::TransferKind::Withdraw,
            cl::TransferKind::Deposit => ledger::TransferKind::Deposit,
        },
        tran_amt: r.tran_amt,
        wd: party(r.wd),
        dps: party(r.dps),
        wd_limit_remain_amt: r.wd_limit_remain_amt,
    }
}

fn sort_order(o: ledger::SortOrder) -> cl::SortOrder {
    match o {
        ledger::SortOrder::Ascending => cl::SortOrder::Ascending,
        ledger::SortOrder::Descending => cl::SortOrder::Descending,
    }
}

fn history_page(p: cl::HistoryPage) -> ledger::HistoryPage {
    ledger::HistoryPage {
        answer: answer(p.answer),
        bank_name: p.bank_name,
        account_num_masked: p.account_num_masked,
        balance_amt: p.balance_amt,
        total_record_cnt: p.total_record_cnt,
        postings: p
            .postings
            .into_iter()
            .map(|p| ledger::Posting {
                tran_date: p.tran_date,
                tran_time: p.tran_time,
                direction: match p.direction {
                    cl::Direction::Deposit => ledger::Direction::Deposit,
                    cl::Direction::Withdrawal => ledger::Direction::Withdrawal,
                },
                tran_type: p.tran_type,
                print_content: p.print_content,
                tran_amt: p.tran_amt,
                after_balance_amt: p.after_balance_amt,
                branch_name: p.branch_name,
                counterparty_name: p.counterparty_name,
                counterparty_bank_code: p.counterparty_bank_code,
                counterparty_account_num_masked: p.counterparty_account_num_masked,
            })
            .collect(),
        next_cursor: p.next_cursor,
    }
}

fn account_ref(a: ledger::AccountRef) -> cl::AccountRef {
    cl::AccountRef {
        bank_code_std: a.bank_code_std,
        account_num: a.account_num,
    }
}

fn recipient(r: ledger::Recipient) -> cl::Recipient {
    match r {
        ledger::Recipient::FintechUseNum(n) => cl::Recipient::FintechUseNum(n),
        ledger::Recipient::Account((a, holder)) => cl::Recipient::Account(account_ref(a), holder),
    }
}
