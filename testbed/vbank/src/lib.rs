//! The virtual bank: sfop's embedded default bank backend, kept in sled, that
//! plugins reach through the `ledger` capability.
//!
//! A fresh store is seeded with the participant banks below; after that the
//! stored state is the truth (an operator or a test can take a bank down).

use serde::{Deserialize, Serialize};
use sfop_core::{Bank, BankBackend, BankError};
use sfop_store::{Store, Tree};

/// Why a virtual-bank operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] sfop_store::Error),
    #[error("no participant bank with code {0:?}")]
    UnknownBank(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The participant banks a fresh virtual bank starts with: standard bank
/// codes and names as the reference platform lists them.
pub const SEED_BANKS: &[(&str, &str)] = &[
    ("002", "산업은행"),
    ("003", "기업은행"),
    ("004", "국민은행"),
    ("011", "농협은행"),
    ("020", "우리은행"),
    ("081", "하나은행"),
    ("088", "신한은행"),
    ("097", "오픈은행"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredBank {
    name: String,
    available: bool,
}

/// The virtual bank over an open [`Store`].
#[derive(Debug, Clone)]
pub struct VirtualBank {
    banks: Tree,
}

impl VirtualBank {
    /// Opens the virtual bank in `store`, seeding it if it is new.
    pub fn open(store: &Store) -> Result<Self> {
        let banks = store.tree("vbank.banks")?;
        if banks.is_empty() {
            for (code, name) in SEED_BANKS {
                banks.insert_json(
                    code,
                    &StoredBank {
                        name: (*name).to_owned(),
                        available: true,
                    },
                )?;
            }
            store.flush()?;
        }
        Ok(Self { banks })
    }

    /// Takes a bank down (`false`, an outage) or brings it back.
    pub fn set_available(&self, code: &str, available: bool) -> Result<()> {
        let mut bank: StoredBank = self
            .banks
            .get_json(code)?
            .ok_or_else(|| Error::UnknownBank(code.to_owned()))?;
        bank.available = available;
        self.banks.insert_json(code, &bank)?;
        Ok(())
    }

    /// Every participant bank, by code.
    pub fn banks(&self) -> Result<Vec<Bank>> {
        Ok(self
            .banks
            .values_json::<StoredBank>()?
            .into_iter()
            .map(|(code, b)| Bank {
                code,
                name: b.name,
                available: b.available,
            })
            .collect())
    }
}

impl BankBackend for VirtualBank {
    fn bank_status(&self) -> Result<Vec<Bank>, BankError> {
        self.banks().map_err(|e| {
            tracing::error!(error = %e, "virtual bank: reading bank status failed");
            BankError::Backend("virtual bank store failed".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_once_and_keeps_outages_across_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let bank = VirtualBank::open(&Store::open(dir.path())?)?;
            let banks = bank.banks()?;
            assert_eq!(banks.len(), SEED_BANKS.len());
            assert!(banks.windows(2).all(|w| w[0].code < w[1].code));
            assert!(banks.iter().all(|b| b.available));
            bank.set_available("097", false)?;
        }
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        let open_bank = bank.banks()?.into_iter().find(|b| b.code == "097");
        assert_eq!(open_bank.map(|b| b.available), Some(false));
        Ok(())
    }

    #[test]
    fn unknown_bank_is_an_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        assert!(matches!(
            bank.set_available("999", false),
            Err(Error::UnknownBank(code)) if code == "999"
        ));
        Ok(())
    }
}
