//! The participant-bank connector (docs/bank-connector.md): [`RestBank`], a
//! `BankBackend` that asks banks over HTTP(S), and [`serve`], which offers
//! any `BankBackend` (the virtual bank) behind the same contract.

mod client;
mod server;
mod wire;

pub use client::{BankEndpoint, ConfigError, RestBank, RestBankConfig};
pub use server::serve;
