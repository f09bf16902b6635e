//! The bank side of the contract: any [`BankBackend`] behind
//! `POST /v1/ledger/{operation}` and, when given one, a [`BankDirectory`]
//! behind `POST /v1/directory/{operation}`, over HTTP/1.1, with or without
//! TLS. What `sfop bank serve` is to run in front of the virtual bank.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sfop_core::ledger::{
    DepositRequest, HistoryQuery, RealNameQuery, ReceiveQuery, RegisterRequest, RemitQuery,
    WithdrawRequest,
};
use sfop_core::{BankBackend, BankDirectory, BankError};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::wire::{
    API_TRAN_ID, Answer, AuthenticateArgs, Authenticated, BalanceArgs, CancelArgs, DEADLINE_MS,
    ErrorBody, Incoming, NoArgs, RegisteredArgs, ResultArgs, UnlinkArgs, Unlinked, UserArgs,
};

/// Largest request body a bank server reads.
const MAX_BODY: usize = 1 << 20;

/// The longest a request's work may take when the platform names no
/// deadline (`x-sfop-deadline-ms`), and the most it may name.
const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// Serves `bank` on `listener` until `stop` resolves; connections in
/// flight finish on their own. No directory: `/v1/directory/...` is 404.
pub async fn serve(
    listener: TcpListener,
    bank: Arc<dyn BankBackend>,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_bank(
        listener,
        Offered {
            bank,
            directory: None,
        },
        tls,
        stop,
    )
    .await
}

/// [`serve`], and `directory` behind `/v1/directory/...` (the OAuth
/// server's sign-in and consent pages).
pub async fn serve_with_directory(
    listener: TcpListener,
    bank: Arc<dyn BankBackend>,
    directory: Arc<dyn BankDirectory>,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let offered = Offered {
        bank,
        directory: Some(directory),
    };
    serve_bank(listener, offered, tls, stop).await
}

/// What one bank server offers.
#[derive(Clone)]
struct Offered {
    bank: Arc<dyn BankBackend>,
    directory: Option<Arc<dyn BankDirectory>>,
}

async fn serve_bank(
    listener: TcpListener,
    offered: Offered,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => return Ok(()),
        };
        let (offered, tls) = (offered.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let offered = offered.clone();
                async move { Ok::<_, Infallible>(handle(&offered, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "bank server: TLS handshake failed");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "bank server: connection ended");
            }
        });
    }
}

/// Which of the contract's two sets of endpoints a request names.
enum Endpoints<'a> {
    Ledger(&'a dyn BankBackend),
    Directory(&'a dyn BankDirectory),
}

async fn handle(offered: &Offered, req: Request<Body>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let (endpoints, operation) = if let Some(op) = path.strip_prefix("/v1/ledger/") {
        (Endpoints::Ledger(offered.bank.as_ref()), op.to_owned())
    } else if let Some(op) = path.strip_prefix("/v1/directory/") {
        match &offered.directory {
            Some(directory) => (Endpoints::Directory(directory.as_ref()), op.to_owned()),
            None => return error(StatusCode::NOT_FOUND, "this bank offers no directory"),
        }
    } else {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    };
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    // The call this request serves, for the bank's log, and how long the
    // platform still waits: work that cannot answer by then is dropped
    // (a booking already made stays made; the platform reconciles with
    // transfer-result).
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let api_tran_id = header(API_TRAN_ID).unwrap_or_default();
    let deadline = header(DEADLINE_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(MAX_DEADLINE, |ms| {
            Duration::from_millis(ms).min(MAX_DEADLINE)
        });
    let span = tracing::debug_span!(
        target: "sfop::bank_server",
        "bank_request",
        operation = %operation,
        api_tran_id = %api_tran_id,
        deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
    );
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "body unreadable or too large"),
    };
    let work = async {
        let reply = match endpoints {
            Endpoints::Ledger(bank) => dispatch(bank, &operation, &body).await,
            Endpoints::Directory(directory) => {
                directory_dispatch(directory, &operation, &body).await
            }
        };
        reply.unwrap_or_else(|refused| *refused)
    };
    use tracing::Instrument;
    match tokio::time::timeout(deadline, work.instrument(span)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::info!(operation = %operation, api_tran_id = %api_tran_id, "bank server: the platform's deadline passed");
            error(StatusCode::GATEWAY_TIMEOUT, "the deadline passed")
        }
    }
}

/// `/v1/directory/{operation}`.
async fn directory_dispatch(directory: &dyn BankDirectory, operation: &str, body: &[u8]) -> Reply {
    Ok(match operation {
        "authenticate" => {
            let c: Incoming<AuthenticateArgs> = parse(body)?;
            let a = &c.args;
            answer(
                directory
                    .authenticate(&c.call(), &a.login_id, &a.password)
                    .await
                    .map(|user_seq_no| Authenticated { user_seq_no }),
            )
        }
        "accounts" => {
            let c: Incoming<UserArgs> = parse(body)?;
            answer(directory.accounts(&c.call(), &c.args.user_seq_no).await)
        }
        "register" => {
            let c: Incoming<RegisterRequest> = parse(body)?;
            answer(directory.register(&c.call(), &c.args).await)
        }
        "unlink" => {
            let c: Incoming<UnlinkArgs> = parse(body)?;
            let a = &c.args;
            answer(
                directory
                    .unlink(&c.call(), &a.user_seq_no, &a.client_id)
                    .await
                    .map(|accounts| Unlinked { accounts }),
            )
        }
        _ => error(StatusCode::NOT_FOUND, "no such operation"),
    })
}

/// An answer, or (boxed, it is the rare path) the refusal of a bad request.
type Reply = Result<Response<Full<Bytes>>, Box<Response<Full<Bytes>>>>;

async fn dispatch(bank: &dyn BankBackend, operation: &str, body: &[u8]) -> Reply {
    Ok(match operation {
        "bank-status" => {
            let c: Incoming<NoArgs> = parse(body)?;
            answer(bank.bank_status(&c.call()).await)
        }
        "user-info" => {
            let c: Incoming<UserArgs> = parse(body)?;
            answer(bank.user_info(&c.call(), &c.args.user_seq_no).await)
        }
        "registered-accounts" => {
            let c: Incoming<RegisteredArgs> = parse(body)?;
            let a = &c.args;
            answer(
                bank.registered_accounts(&c.call(), &a.user_seq_no, a.include_cancelled)
                    .await,
            )
        }
        "balance" => {
            let c: Incoming<BalanceArgs> = parse(body)?;
            let a = &c.args;
            answer(
                bank.balance(&c.call(), &a.bank_tran_id, &a.fintech_use_num)
                    .await,
            )
        }
        "transactions" => {
            let c: Incoming<HistoryQuery> = parse(body)?;
            answer(bank.transactions(&c.call(), &c.args).await)
        }
        "remit-list" => {
            let c: Incoming<RemitQuery> = parse(body)?;
            answer(bank.remit_list(&c.call(), &c.args).await)
        }
        "withdraw" => {
            let c: Incoming<WithdrawRequest> = parse(body)?;
            answer(bank.withdraw(&c.call(), &c.args).await)
        }
        "deposit" => {
            let c: Incoming<DepositRequest> = parse(body)?;
            answer(bank.deposit(&c.call(), &c.args).await)
        }
        "transfer-result" => {
            let c: Incoming<ResultArgs> = parse(body)?;
            let results = bank.transfer_result(&c.call(), &c.args.queries).await;
            answer(results.map(|items| {
                items
                    .into_iter()
                    .map(|item| match item {
                        Ok(receipt) => Answer::Ok(receipt),
                        Err(refusal) => Answer::Refused(refusal),
                    })
                    .collect::<Vec<_>>()
            }))
        }
        "real-name" => {
            let c: Incoming<RealNameQuery> = parse(body)?;
            answer(bank.real_name(&c.call(), &c.args).await)
        }
        "receive" => {
            let c: Incoming<ReceiveQuery> = parse(body)?;
            answer(bank.receive(&c.call(), &c.args).await)
        }
        "cancel-account" => {
            let c: Incoming<CancelArgs> = parse(body)?;
            let a = &c.args;
            answer(
                bank.cancel_account(&c.call(), &a.bank_tran_id, &a.fintech_use_num, a.scope)
                    .await,
            )
        }
        _ => error(StatusCode::NOT_FOUND, "no such operation"),
    })
}

fn parse<A: DeserializeOwned>(body: &[u8]) -> Result<Incoming<A>, Box<Response<Full<Bytes>>>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &e.to_string())))
}

fn answer<T: Serialize>(result: Result<T, BankError>) -> Response<Full<Bytes>> {
    match result {
        Ok(value) => json(StatusCode::OK, &Answer::Ok(value)),
        Err(BankError::Refused(refusal)) => json(StatusCode::OK, &Answer::<T>::Refused(*refusal)),
        Err(BankError::Timeout) => error(StatusCode::GATEWAY_TIMEOUT, "participant bank timeout"),
        Err(BankError::Backend(message)) => error(StatusCode::SERVICE_UNAVAILABLE, &message),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorBody {
            error: message.to_owned(),
        },
    )
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{\"error\":\"encoding\"}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
