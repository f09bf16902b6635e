//! The platform side: [`RestBank`], a [`BankBackend`] that asks participant
//! banks over HTTP(S), one base URL per bank code, with a small connection
//! pool per bank and a timeout on every request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sfop_core::ledger::{
    Balance, BankAnswer, BankCall, CallScope, ConsentScope, DepositRequest, DirectoryAccount,
    HistoryPage, HistoryQuery, RealName, RealNameQuery, ReceiveCheck, ReceiveQuery, Recipient,
    Refusal, RegisterRequest, RegisteredAccount, RemitQuery, ResultQuery, TransferReceipt,
    UserInfo, WithdrawRequest,
};
use sfop_core::{Bank, BankBackend, BankDirectory, BankError};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::wire::{
    API_TRAN_ID, Answer, AuthenticateArgs, Authenticated, DEADLINE_MS, Outgoing, UnlinkArgs,
    Unlinked,
};

/// Idle connections kept per bank.
const MAX_IDLE: usize = 32;

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bank URL {0:?}: {1}")]
    Url(String, &'static str),
}

/// One participant bank's endpoint.
#[derive(Debug, Clone)]
pub struct BankEndpoint {
    /// `http://host:port/` or `https://host:port/` (a path prefix allowed).
    pub url: String,
    /// TLS settings for `https` (trusted roots, optional client certificate);
    /// `None` for `http`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where each operation goes, and how long to wait.
#[derive(Debug, Clone)]
pub struct RestBankConfig {
    /// The bank server that issued the fintech numbers: every call that
    /// does not name a bank code.
    pub home: BankEndpoint,
    /// Calls that name a bank code, by code.
    pub banks: BTreeMap<String, BankEndpoint>,
    pub connect_timeout: Duration,
    /// An upper bound per request; a plugin call's own deadline (ADR 0022)
    /// usually ends the wait sooner.
    pub request_timeout: Duration,
}

/// A [`BankBackend`] over the contract of docs/bank-connector.md.
#[derive(Debug)]
pub struct RestBank {
    home: Endpoint,
    banks: BTreeMap<String, Endpoint>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

struct Endpoint {
    /// `host:port`, to connect to and for the `host` header.
    authority: String,
    host: String,
    /// Path prefix ending in `/`.
    base: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("authority", &self.authority)
            .field("base", &self.base)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn new(endpoint: &BankEndpoint) -> Result<Self, ConfigError> {
        let url = endpoint.url.as_str();
        let bad = |why| ConfigError::Url(url.to_owned(), why);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("not http:// or https://"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => return Err(bad("no port")),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = match (tls, &endpoint.tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| bad("host is not a TLS name"))?;
                Some((TlsConnector::from(config.clone()), name))
            }
            (true, None) => return Err(bad("https needs TLS settings")),
            (false, _) => None,
        };
        let mut base = format!("/{path}");
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self {
            authority: authority.to_owned(),
            host,
            base,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn pooled(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            // One that is not ready yet hands the request back unsent.
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }

    /// A new connection. Any failure to reach the bank is `timeout`
    /// (`A0017`): the bank was not reached, nothing happened there.
    async fn connect(&self, timeout: Duration) -> Result<SendRequest<Full<Bytes>>, BankError> {
        let unreached = |e: &dyn std::fmt::Display| {
            tracing::warn!(bank = %self.authority, error = %e, "participant bank not reached");
            BankError::Timeout
        };
        let connecting = async {
            let tcp = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| unreached(&e))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| unreached(&e))?;
                    handshake(TokioIo::new(stream)).await
                }
                None => handshake(TokioIo::new(tcp)).await,
            }
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .unwrap_or(Err(BankError::Timeout))
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, BankError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| BankError::Timeout)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl RestBank {
    pub fn new(config: &RestBankConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            home: Endpoint::new(&config.home)?,
            banks: config
                .banks
                .iter()
                .map(|(code, endpoint)| Ok((code.clone(), Endpoint::new(endpoint)?)))
                .collect::<Result<_, ConfigError>>()?,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
    }

    fn by_code(&self, bank_code: &str) -> Result<&Endpoint, BankError> {
        self.banks
            .get(bank_code)
            .ok_or_else(|| BankError::Backend(format!("no route to participant bank {bank_code}")))
    }

    fn for_recipient(&self, recipient: &Recipient) -> Result<&Endpoint, BankError> {
        match recipient {
            Recipient::Account(account, _) => self.by_code(&account.bank_code_std),
            Recipient::FintechUseNum(_) => Ok(&self.home),
        }
    }

    /// One ledger operation: never retried (a money movement's lost answer
    /// is `timeout`, reconciled with `transfer-result`).
    async fn post<A: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        operation: &str,
        call: &BankCall<'_>,
        args: A,
    ) -> Result<T, BankError> {
        self.exchange(endpoint, "ledger", operation, call, args)
            .await
    }

    /// One request to `{base}v1/{set}/{operation}`, with the headers of the
    /// host call it serves (if any) and of how long the platform waits.
    async fn exchange<A: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        set: &str,
        operation: &str,
        call: &BankCall<'_>,
        args: A,
    ) -> Result<T, BankError> {
        let body = serde_json::to_vec(&Outgoing::new(call, args))
            .map_err(|e| BankError::Backend(format!("encoding the request: {e}")))?;
        // The host's deadline for this call (ADR 0022) if sooner than ours.
        let scope = CallScope::current();
        let started = Instant::now();
        let timeout =
            scope
                .as_ref()
                .and_then(|s| s.deadline)
                .map_or(self.request_timeout, |deadline| {
                    deadline
                        .saturating_duration_since(started)
                        .min(self.request_timeout)
                });
        let exchange = async {
            let mut request = Request::post(format!("{}v1/{set}/{operation}", endpoint.base))
                .header(hyper::header::HOST, endpoint.host.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(
                    DEADLINE_MS,
                    timeout
                        .saturating_sub(started.elapsed())
                        .as_millis()
                        .to_string(),
                );
            if let Some(id) = scope.as_ref().map(|s| s.api_tran_id.as_str())
                && !id.is_empty()
            {
                request = request.header(API_TRAN_ID, id);
            }
            let request = request
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| BankError::Backend(format!("building the request: {e}")))?;
            // A pooled connection the bank closed meanwhile hands the
            // request back unwritten: then, and only then, a fresh
            // connection gets it (nothing reached the bank).
            let (sender, sent) = match endpoint.pooled() {
                Some(mut pooled) => match pooled.try_send_request(request).await {
                    Err(mut unsent) => match unsent.take_message() {
                        Some(request) => {
                            let mut fresh = endpoint.connect(self.connect_timeout).await?;
                            let sent = fresh.send_request(request).await;
                            (fresh, sent)
                        }
                        None => (pooled, Err(unsent.into_error())),
                    },
                    Ok(response) => (pooled, Ok(response)),
                },
                None => {
                    let mut fresh = endpoint.connect(self.connect_timeout).await?;
                    let sent = fresh.send_request(request).await;
                    (fresh, sent)
                }
            };
            let response = sent.map_err(|e| {
                tracing::warn!(bank = %endpoint.authority, error = %e, operation, "participant bank closed the connection");
                BankError::Backend("participant bank error: the connection closed".into())
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|_| {
                    BankError::Backend("participant bank error: the answer was cut".into())
                })?
                .to_bytes();
            endpoint.give_back(sender);
            decode(status, &bytes)
        };
        tokio::time::timeout_at(tokio::time::Instant::from_std(started + timeout), exchange)
            .await
            .unwrap_or(Err(BankError::Timeout))
    }
}

/// The answer, as the contract says: a refusal is a 200 too; a 504 is the
/// bank's own timeout; anything else, or anything unreadable, is an error.
fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, BankError> {
    match status {
        StatusCode::OK => match serde_json::from_slice::<Answer<T>>(body) {
            Ok(Answer::Ok(value)) => Ok(value),
            Ok(Answer::Refused(refusal)) => Err(BankError::Refused(Box::new(refusal))),
            Err(e) => {
                tracing::warn!(error = %e, "participant bank answered outside the contract");
                Err(BankError::Backend(
                    "participant bank error: the answer is not readable".into(),
                ))
            }
        },
        StatusCode::GATEWAY_TIMEOUT => Err(BankError::Timeout),
        status => Err(BankError::Backend(format!(
            "participant bank error (HTTP {})",
            status.as_u16()
        ))),
    }
}

#[async_trait::async_trait]
impl BankBackend for RestBank {
    async fn bank_status(&self, call: &BankCall<'_>) -> Result<Vec<Bank>, BankError> {
        self.post(&self.home, "bank-status", call, json!({})).await
    }

    async fn user_info(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<UserInfo, BankError> {
        let args = json!({ "user_seq_no": user_seq_no });
        self.post(&self.home, "user-info", call, args).await
    }

    async fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> Result<Vec<RegisteredAccount>, BankError> {
        let args = json!({ "user_seq_no": user_seq_no, "include_cancelled": include_cancelled });
        self.post(&self.home, "registered-accounts", call, args)
            .await
    }

    async fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> Result<Balance, BankError> {
        let args = json!({ "bank_tran_id": bank_tran_id, "fintech_use_num": fintech_use_num });
        self.post(&self.home, "balance", call, args).await
    }

    async fn transactions(
        &self,
        call: &BankCall<'_>,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BankError> {
        self.post(&self.home, "transactions", call, query).await
    }

    async fn remit_list(
        &self,
        call: &BankCall<'_>,
        query: &RemitQuery,
    ) -> Result<HistoryPage, BankError> {
        let endpoint = self.by_code(&query.account.bank_code_std)?;
        self.post(endpoint, "remit-list", call, query).await
    }

    async fn withdraw(
        &self,
        call: &BankCall<'_>,
        request: &WithdrawRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.post(&self.home, "withdraw", call, request).await
    }

    async fn deposit(
        &self,
        call: &BankCall<'_>,
        request: &DepositRequest,
    ) -> Result<TransferReceipt, BankError> {
        let endpoint = self.for_recipient(&request.recipient)?;
        self.post(endpoint, "deposit", call, request).await
    }

    // The item type is the trait's (the WIT interface's `result<transfer-receipt, refusal>`).
    #[allow(clippy::result_large_err)]
    async fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> Result<Vec<Result<TransferReceipt, Refusal>>, BankError> {
        let items: Vec<Answer<TransferReceipt>> = self
            .post(
                &self.home,
                "transfer-result",
                call,
                json!({ "queries": queries }),
            )
            .await?;
        Ok(items
            .into_iter()
            .map(|item| match item {
                Answer::Ok(receipt) => Ok(receipt),
                Answer::Refused(refusal) => Err(refusal),
            })
            .collect())
    }

    async fn real_name(
        &self,
        call: &BankCall<'_>,
        query: &RealNameQuery,
    ) -> Result<RealName, BankError> {
        let endpoint = self.by_code(&query.account.bank_code_std)?;
        self.post(endpoint, "real-name", call, query).await
    }

    async fn receive(
        &self,
        call: &BankCall<'_>,
        query: &ReceiveQuery,
    ) -> Result<ReceiveCheck, BankError> {
        let endpoint = self.for_recipient(&query.recipient)?;
        self.post(endpoint, "receive", call, query).await
    }

    async fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> Result<BankAnswer, BankError> {
        let args = json!({
            "bank_tran_id": bank_tran_id,
            "fintech_use_num": fintech_use_num,
            "scope": scope,
        });
        self.post(&self.home, "cancel-account", call, args).await
    }
}

/// The home bank's directory (`/v1/directory/...`): the OAuth server's
/// sign-in and consent pages ask the bank that issues the fintech numbers.
#[async_trait::async_trait]
impl BankDirectory for RestBank {
    async fn authenticate(
        &self,
        call: &BankCall<'_>,
        login_id: &str,
        password: &str,
    ) -> Result<Option<String>, BankError> {
        let args = AuthenticateArgs {
            login_id: login_id.to_owned(),
            password: password.to_owned(),
        };
        let answer: Authenticated = self
            .exchange(&self.home, "directory", "authenticate", call, args)
            .await?;
        Ok(answer.user_seq_no)
    }

    async fn accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
    ) -> Result<Vec<DirectoryAccount>, BankError> {
        let args = json!({ "user_seq_no": user_seq_no });
        self.exchange(&self.home, "directory", "accounts", call, args)
            .await
    }

    async fn register(
        &self,
        call: &BankCall<'_>,
        request: &RegisterRequest,
    ) -> Result<Vec<String>, BankError> {
        self.exchange(&self.home, "directory", "register", call, request)
            .await
    }

    async fn unlink(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        client_id: &str,
    ) -> Result<u64, BankError> {
        let args = UnlinkArgs {
            user_seq_no: user_seq_no.to_owned(),
            client_id: client_id.to_owned(),
        };
        let answer: Unlinked = self
            .exchange(&self.home, "directory", "unlink", call, args)
            .await?;
        Ok(answer.accounts)
    }
}
