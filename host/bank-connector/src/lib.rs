//! The participant-bank connector (docs/bank-connector.md): [`RestBank`], a
//! `BankBackend` and `BankDirectory` that asks banks over HTTP(S), and
//! [`serve`] / [`serve_with_directory`], which offer any `BankBackend` (and
//! `BankDirectory`: the virtual bank) behind the same contract.

mod client;
mod server;
mod wire;

pub use client::{BankEndpoint, ConfigError, RestBank, RestBankConfig};
pub use server::{serve, serve_with_directory};
