//! The host side of the capability interfaces, and the per-call state.

use std::sync::Arc;

use sfop_core::{Manifest, time};
use wasmtime::{ResourceLimiter, UpdateDeadline};

use crate::Services;
use crate::bindings::sfop::platform::{auth_context, clock, kv, ledger, log, types};

/// Longest log message a plugin may write; the rest is cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Everything one call's store holds.
pub struct HostState {
    manifest: Arc<Manifest>,
    services: Arc<Services>,
    api_tran_id: String,
    caller: Option<sfop_core::Claims>,
    ticks_left: u64,
    deadline_hit: bool,
    pub(crate) limits: Limits,
}

impl HostState {
    pub(crate) fn new(
        manifest: Arc<Manifest>,
        services: Arc<Services>,
        api_tran_id: String,
        caller: Option<sfop_core::Claims>,
        deadline_ticks: u64,
    ) -> Self {
        let memory_bytes = manifest.limits.memory_mib as usize * (1 << 20);
        Self {
            manifest,
            services,
            api_tran_id,
            caller,
            ticks_left: deadline_ticks,
            deadline_hit: false,
            limits: Limits {
                memory_bytes,
                memory_hit: false,
            },
        }
    }

    /// Called by wasmtime each epoch tick while the guest runs: yield to
    /// other requests, or end the call once its CPU budget is spent.
    pub(crate) fn on_epoch_tick(&mut self) -> UpdateDeadline {
        if self.ticks_left == 0 {
            self.deadline_hit = true;
            UpdateDeadline::Interrupt
        } else {
            self.ticks_left -= 1;
            UpdateDeadline::Yield(1)
        }
    }

    pub(crate) fn deadline_hit(&self) -> bool {
        self.deadline_hit
    }
}

/// The memory cap of one call's instance.
pub(crate) struct Limits {
    memory_bytes: usize,
    memory_hit: bool,
}

impl Limits {
    pub(crate) fn memory_hit(&self) -> bool {
        self.memory_hit
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            // Trap rather than fail the grow: a guest allocator would abort anyway,
            // and the trap tells us why the call ended.
            self.memory_hit = true;
            return Err(wasmtime::Error::msg("memory cap reached"));
        }
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

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
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

impl clock::Host for HostState {
    fn now_millis(&mut self) -> u64 {
        time::now_millis()
    }

    fn utc_offset_minutes(&mut self) -> i32 {
        self.services.utc_offset_minutes
    }
}

impl auth_context::Host for HostState {
    fn caller(&mut self) -> Option<auth_context::Claims> {
        self.caller.as_ref().map(|c| auth_context::Claims {
            client_id: c.client_id.clone(),
            client_use_code: c.client_use_code.clone(),
            user_seq_no: c.user_seq_no.clone(),
            scopes: c.scopes.clone(),
            fintech_use_nums: c.fintech_use_nums.clone(),
        })
    }
}

fn kv_error(e: sfop_core::KvError) -> kv::Error {
    match e {
        sfop_core::KvError::TooLarge(m) => kv::Error::TooLarge(m),
        sfop_core::KvError::Store(m) => kv::Error::Store(m),
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::Error> {
        self.services
            .kv
            .get(&self.manifest.name, &key)
            .map_err(kv_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv::Error> {
        self.services
            .kv
            .set(&self.manifest.name, &key, &value)
            .map_err(kv_error)
    }

    fn delete(&mut self, key: String) -> Result<(), kv::Error> {
        self.services
            .kv
            .delete(&self.manifest.name, &key)
            .map_err(kv_error)
    }
}

impl ledger::Host for HostState {
    fn bank_status(&mut self) -> Result<Vec<ledger::Bank>, ledger::Error> {
        match self.services.bank.bank_status() {
            Ok(banks) => Ok(banks
                .into_iter()
                .map(|b| ledger::Bank {
                    bank_code_std: b.code,
                    bank_name: b.name,
                    available: b.available,
                })
                .collect()),
            Err(sfop_core::BankError::Timeout) => Err(ledger::Error::Timeout),
            Err(sfop_core::BankError::Backend(m)) => Err(ledger::Error::Backend(m)),
        }
    }
}
