//! The virtual bank as the OAuth server's user directory behind the async
//! [`BankDirectory`] (what `sfop bank serve` offers at `/v1/directory/...`).
//! Each operation blocks (a PBKDF2 hash, a durable flush), so it runs on
//! tokio's blocking pool, at most [`DIRECTORY_BLOCKING`] at a time: a burst
//! of sign-ins waits for a permit instead of taking every blocking thread,
//! and never runs on an async worker. On a cluster ([`ClusterBank`]) sign-in
//! and the accounts offered are the node's bank's, and registrations and
//! unlinks are written to the cluster's database, awaited (ADR 0030).

use sfop_core::ledger::{BankCall, DirectoryAccount, Refusal, RegisterRequest, codes};
use sfop_core::{BankDirectory, BankError};
use tokio::sync::Semaphore;

use crate::{ClusterBank, Error, VirtualBank};

/// Directory operations running at once; more wait their turn.
pub const DIRECTORY_BLOCKING: usize = 4;

static BLOCKING: Semaphore = Semaphore::const_new(DIRECTORY_BLOCKING);

/// `work` on the blocking pool, behind the bound.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, BankError> {
    let _permit = BLOCKING
        .acquire()
        .await
        .map_err(|_| BankError::Backend("the bank's directory is closed".into()))?;
    crate::on_blocking_pool(work).await.map_err(directory_error)
}

/// The store's failure is the bank's own; anything else is a refusal of
/// the request (an unknown user or account, another's account).
fn directory_error(e: Error) -> BankError {
    match e {
        Error::Store(e) => {
            tracing::error!(error = %e, "the virtual bank's store failed");
            BankError::Backend("participant bank internal error".into())
        }
        Error::Cluster(e) => {
            tracing::error!(error = %e, "the cluster's consents failed");
            BankError::Backend("participant bank internal error".into())
        }
        Error::Failed(e) => {
            tracing::error!(error = %e, "the virtual bank failed");
            BankError::Backend("participant bank internal error".into())
        }
        other => BankError::from(Refusal {
            rsp_code: codes::FORMAT.into(),
            rsp_message: other.to_string(),
            bank: None,
        }),
    }
}

#[async_trait::async_trait]
impl BankDirectory for VirtualBank {
    async fn authenticate(
        &self,
        _call: &BankCall<'_>,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, BankError> {
        let (bank, login_id, password) = (self.clone(), login_id.to_owned(), password.to_owned());
        blocking(move || bank.authenticate(&login_id, &password)).await
    }

    async fn accounts(
        &self,
        _call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<Vec<DirectoryAccount>, BankError> {
        let (bank, user) = (self.clone(), user_seq_no.to_owned());
        let accounts = blocking(move || bank.accounts_of(&user)).await?;
        Ok(accounts
            .into_iter()
            .map(|a| DirectoryAccount {
                id: a.id,
                bank_code_std: a.bank_code_std,
                bank_name: a.bank_name,
                account_num_masked: a.account_num_masked,
                account_alias: a.account_alias,
            })
            .collect())
    }

    async fn register(
        &self,
        call: &BankCall<'_>,
        request: &RegisterRequest,
    ) -> Result<Vec<String>, BankError> {
        let (bank, r, now) = (self.clone(), request.clone(), call.now_millis);
        blocking(move || {
            bank.register_accounts(
                &r.user_seq_no,
                &r.client_id,
                &r.client_use_code,
                &r.account_ids,
                &r.scopes,
                now,
            )
        })
        .await
    }

    async fn unlink(
        &self,
        _call: &BankCall<'_>,
        user_seq_no: &str,
        client_id: &str,
    ) -> Result<u64, BankError> {
        let (bank, user, client) = (self.clone(), user_seq_no.to_owned(), client_id.to_owned());
        let changed = blocking(move || bank.unlink(&user, &client)).await?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}

#[async_trait::async_trait]
impl BankDirectory for ClusterBank {
    async fn authenticate(
        &self,
        call: &BankCall<'_>,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, BankError> {
        BankDirectory::authenticate(self.local(), call, login_id, password).await
    }

    async fn accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<Vec<DirectoryAccount>, BankError> {
        BankDirectory::accounts(self.local(), call, user_seq_no).await
    }

    async fn register(
        &self,
        call: &BankCall<'_>,
        r: &RegisterRequest,
    ) -> Result<Vec<String>, BankError> {
        self.register_accounts(
            &r.user_seq_no,
            &r.client_id,
            &r.client_use_code,
            &r.account_ids,
            &r.scopes,
            call.now_millis,
        )
        .await
        .map_err(directory_error)
    }

    async fn unlink(
        &self,
        _call: &BankCall<'_>,
        user_seq_no: &str,
        client_id: &str,
    ) -> Result<u64, BankError> {
        ClusterBank::unlink(self, user_seq_no, client_id)
            .await
            .map_err(directory_error)
    }
}
