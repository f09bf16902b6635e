//! Issue 15, the gateway's part, each attack over real HTTPS with real
//! biscuit tokens: parameter pollution (defect 3), admin bodies pushed by
//! anonymous clients (defect 5), slowloris and idle connections and HSTS
//! (defect 6), `nosniff` and `no-store` on every answer (defect 7).

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sfop::{AuthMode, TlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::auth::{REDIRECT, VERIFIER, consented_accounts, form, rsp_code, token_of};
use crate::harness::{Package, Reply, TestPlatform};

/// Longest any single exchange of these tests may take before it fails.
const BOUND: Duration = Duration::from_secs(20);

/// A client of one platform's HTTPS listener, trusting its generated certificate.
struct Https {
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
}

impl Https {
    fn of(t: &TestPlatform) -> Result<Self> {
        let ca = t
            .platform
            .tls_cert
            .as_deref()
            .context("no TLS certificate")?;
        Ok(Self {
            addr: t.addr(),
            roots: Arc::new(roots(ca)?),
        })
    }

    async fn connect(&self, alpn: &[u8]) -> Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr).await?;
        Ok(TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }

    /// One HTTP/1.1 request on a fresh TLS connection.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        let io = TokioIo::new(self.connect(b"http/1.1").await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = tokio::time::timeout(
            BOUND,
            sender.send_request(req.body(Full::new(Bytes::from(body)))?),
        )
        .await??;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.send("GET", path, &headers, Vec::new()).await
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", content_type)];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        self.send("POST", path, &headers, body).await
    }
}

fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    Ok(roots)
}

async fn https_platform(
    packages: Vec<Package>,
    configure: impl FnOnce(&mut sfop::Config),
) -> Result<TestPlatform> {
    TestPlatform::start_with(packages, |c| {
        c.tls.mode = TlsMode::SelfSigned;
        c.auth.mode = AuthMode::Biscuit;
        configure(c);
    })
    .await
}

fn admin_token(t: &TestPlatform) -> Result<String> {
    let path = t.platform.admin_token.as_ref().context("no admin token")?;
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// Every `name="NAME" value="…"` in an HTML page.
fn html_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(i, _)| {
            let start = i + marker.len();
            let end = html[start..].find('"')?;
            Some(html[start..start + end].to_owned())
        })
        .collect()
}

/// The user `hong` consents, over HTTPS, to a newly registered app reading
/// every account the consent page offers. Returns the access token and the
/// app's `client_use_code`.
async fn user_token(https: &Https, admin: &str) -> Result<(String, String)> {
    let spec = json!({
        "name": "Pay app",
        "redirect_uris": [REDIRECT],
        "scopes": ["login", "inquiry", "transfer", "oob"],
    });
    let reply = https
        .post(
            "/admin/v1/clients",
            Some(admin),
            "application/json",
            spec.to_string().into_bytes(),
        )
        .await?;
    ensure!(reply.status == 201, "{:?}", reply.body);
    let client = reply.json()?;
    let field = |k: &str| {
        client[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in {client}"))
    };
    let (client_id, secret, use_code) = (
        field("client_id")?,
        field("client_secret")?,
        field("client_use_code")?,
    );
    let state = "0123456789abcdef0123456789abcdef";
    let challenge = sfop_auth::oauth::pkce_s256(VERIFIER);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "login inquiry transfer"),
        ("state", state),
        ("auth_type", "0"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let page = https
        .get(
            &format!("/oauth/2.0/authorize?{}", String::from_utf8(query)?),
            None,
        )
        .await?;
    let html = String::from_utf8(page.body.to_vec())?;
    let pending = html_values(&html, "pending")
        .pop()
        .context("no pending id on the sign-in page")?;
    const FORM: &str = "application/x-www-form-urlencoded";
    let login = form(&[
        ("pending", &pending),
        ("action", "login"),
        ("login_id", "hong"),
        ("password", "hong1234"),
    ]);
    let consent = https
        .post("/oauth/2.0/authorize", None, FORM, login)
        .await?;
    let html = String::from_utf8(consent.body.to_vec())?;
    let accounts = html_values(&html, "account");
    ensure!(accounts.len() >= 2, "hong should have two accounts: {html}");
    let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
    fields.extend(accounts.iter().map(|a| ("account", a.as_str())));
    fields.extend(["login", "inquiry", "transfer"].map(|s| ("scope", s)));
    let redirect = https
        .post("/oauth/2.0/authorize", None, FORM, form(&fields))
        .await?;
    ensure!(redirect.status == 302, "{:?}", redirect.body);
    let location = redirect.header("location").context("no Location")?;
    let code = location
        .split_once('?')
        .map(|(_, q)| sfop_core::form::parse(q.as_bytes()))
        .and_then(|q| q.get("code").map(str::to_owned))
        .context("no code in the redirect")?;
    let exchange = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("client_id", &client_id),
        ("client_secret", &secret),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]);
    let token = https.post("/oauth/2.0/token", None, FORM, exchange).await?;
    Ok((token_of(&token)?.0, use_code))
}

/// The headers every answer carries over HTTPS (defects 6 and 7).
fn assert_hardened(reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains"),
        "{what}"
    );
}

/// Defect 3: a token narrowed to one account reads only that account, however
/// the account is repeated in the query or the JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_field_is_refused_before_authorisation() -> Result<()> {
    let t = https_platform(
        vec![
            Package::built("api/account-balance"),
            Package::built("api/transfer-withdraw"),
        ],
        |_| {},
    )
    .await?;
    let https = Https::of(&t)?;
    let (access, use_code) = user_token(&https, &admin_token(&t)?).await?;
    let accounts = consented_accounts(&access)?;
    let [allowed, other] = [&accounts[0], &accounts[1]];
    // The app narrows its token offline to one account, for a partner.
    let narrowed = sfop_auth::holder::attenuate(
        &access,
        &format!(r#"check if resource_account("{allowed}");"#),
    )?;
    let serial = AtomicUsize::new(1);
    let balance = |query: String| {
        let n = serial.fetch_add(1, Ordering::Relaxed);
        format!(
            "/v2.0/account/balance/fin_num?bank_tran_id={use_code}U{n:09}&tran_dtime=20261122120000&{query}"
        )
    };

    // The narrowed token reads its account, not the other one.
    let own = https
        .get(
            &balance(format!("fintech_use_num={allowed}")),
            Some(&narrowed),
        )
        .await?;
    assert_eq!(rsp_code(&own), "A0000", "{:?}", own.body);
    assert_hardened(&own, "a plugin's answer");
    let theirs = https
        .get(
            &balance(format!("fintech_use_num={other}")),
            Some(&narrowed),
        )
        .await?;
    assert_eq!(
        (theirs.status, rsp_code(&theirs).as_str()),
        (200, "A0301"),
        "{:?}",
        theirs.body
    );
    assert_hardened(&theirs, "a denial");
    // The other account is the user's: the full token reads it.
    let full = https
        .get(&balance(format!("fintech_use_num={other}")), Some(&access))
        .await?;
    assert_eq!(rsp_code(&full), "A0000", "{:?}", full.body);

    // The attack: both accounts, in either order, however spelled.
    for query in [
        format!("fintech_use_num={other}&fintech_use_num={allowed}"),
        format!("fintech_use_num={allowed}&fintech_use_num={other}"),
        format!("fintech%5Fuse%5Fnum={other}&fintech_use_num={allowed}"),
    ] {
        let reply = https.get(&balance(query.clone()), Some(&narrowed)).await?;
        let body = reply.json()?;
        assert_eq!(
            (reply.status, body["rsp_code"].as_str()),
            (200, Some("A0004")),
            "{query}: {body}"
        );
        let message = body["rsp_message"].as_str().unwrap_or_default();
        assert!(message.contains("fintech_use_num"), "{message}");
        assert!(body.get("balance_amt").is_none(), "{body}");
        assert!(body["api_tran_id"].is_string(), "{body}");
        assert_hardened(&reply, "a refusal");
    }

    // The same in a JSON body: a key given twice in one object.
    let withdraw = |first: &str, second: &str| {
        let n = serial.fetch_add(1, Ordering::Relaxed);
        format!(
            r#"{{"bank_tran_id":"{use_code}U{n:09}","cntr_account_type":"N","cntr_account_num":"5000000000001","dps_print_content":"sfop test","fintech_use_num":"{first}","wd_print_content":"coffee","tran_amt":"1000","tran_dtime":"20261122120000","req_client_name":"홍길동","req_client_num":"HONG","transfer_purpose":"TR","fintech_use_num":"{second}"}}"#
        )
        .into_bytes()
    };
    for (first, second) in [(other, allowed), (allowed, other)] {
        let reply = https
            .post(
                "/v2.0/transfer/withdraw/fin_num",
                Some(&narrowed),
                "application/json",
                withdraw(first, second),
            )
            .await?;
        let body = reply.json()?;
        assert_eq!(
            (reply.status, body["rsp_code"].as_str()),
            (200, Some("A0004")),
            "{body}"
        );
        assert!(
            body["rsp_message"]
                .as_str()
                .is_some_and(|m| m.contains("fintech_use_num")),
            "{body}"
        );
    }
    // Nothing moved: the balance is what it was.
    let after = https
        .get(&balance(format!("fintech_use_num={other}")), Some(&access))
        .await?;
    assert_eq!(after.json()?["balance_amt"], full.json()?["balance_amt"]);
    t.platform.stop().await
}

/// A request body of `total` bytes in 64 KiB chunks that counts what the
/// client was asked for: what went out, or sits in its send buffer.
struct Counted {
    left: usize,
    pulled: Arc<AtomicUsize>,
}

static CHUNK: [u8; 64 * 1024] = [b'A'; 64 * 1024];

impl Body for Counted {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len());
        self.left -= n;
        self.pulled.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left as u64)
    }
}

const PUSH: usize = 30 * 1024 * 1024;

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Defect 5: anonymous pushes to the admin API are refused from their head;
/// their bodies are never read. An admin's push still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_read_only_after_the_caller_is_known() -> Result<()> {
    let t = https_platform(vec![Package::built("api/bank-status")], |_| {}).await?;
    let https = Https::of(&t)?;

    // HTTP/1.1: a head announcing 30 MiB and no body byte sent. The answer
    // comes at once, so it did not wait for the body.
    for path in [
        "/admin/v1/apis/push",
        "/admin/v1/sandbox/faults",
        "/admin/v1/clients",
        "/admin/v1/keys/rotate",
    ] {
        let mut tls = https.connect(b"http/1.1").await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {PUSH}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(BOUND, tls.read_to_end(&mut answer))
            .await
            .context("the server waited for the body")??;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains("\"rsp_code\""), "{path}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("x-content-type-options: nosniff"),
            "{answer}"
        );
    }

    // HTTP/2: eight anonymous 30 MiB pushes at once, each on its own
    // connection. Each is refused while nearly all of its body is unsent.
    let rss_before = vm_rss_kib();
    let mut pushes = Vec::new();
    for _ in 0..8 {
        let io = TokioIo::new(https.connect(b"h2").await?);
        pushes.push(tokio::spawn(async move {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let pulled = Arc::new(AtomicUsize::new(0));
            let req = Request::builder()
                .method("POST")
                .uri("https://localhost/admin/v1/apis/push")
                .header("content-type", "application/json")
                .body(Counted {
                    left: PUSH,
                    pulled: pulled.clone(),
                })?;
            let res = tokio::time::timeout(BOUND, sender.send_request(req)).await??;
            let sent_when_answered = pulled.load(Ordering::Relaxed);
            let status = res.status().as_u16();
            let body = res.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body, sent_when_answered))
        }));
    }
    for push in pushes {
        let (status, body, sent) = push.await??;
        let body: Value = serde_json::from_slice(&body)?;
        assert_eq!(status, 401, "{body}");
        assert!(body["rsp_code"].is_string(), "{body}");
        assert!(
            sent < PUSH / 8,
            "{sent} of {PUSH} bytes were sent before the refusal"
        );
    }
    let rss_after = vm_rss_kib();
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let grown = after.saturating_sub(before);
        eprintln!("RSS of the test process grew by {grown} KiB during 8 anonymous 30 MiB pushes");
        // Buffering the bodies would take 240 MiB.
        assert!(grown < 120 * 1024, "RSS grew by {grown} KiB");
    }

    // An admin pushes a real package bigger than the anonymous cap.
    let component = std::fs::read(crate::harness::built_plugins()?.join("test/echo/api.wasm"))?;
    let manifest = r#"name = "echo"
version = "1.0.0"
description = "echo"
scope = "oob"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "GET"
path = "/test/echo"
"#;
    let package = sfop_management::Package::from_parts(manifest.to_owned(), component, None)?;
    let upload = serde_json::to_vec(&sfop_management::Upload::of(&package))?;
    assert!(upload.len() > sfop_gateway::UNAUTHENTICATED_MAX_BODY);
    let reply = https
        .post(
            "/admin/v1/apis/push",
            Some(&admin_token(&t)?),
            "application/json",
            upload,
        )
        .await?;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_hardened(&reply, "an admin answer");
    // Anonymous bodies of the OAuth endpoints stay capped small.
    let big_form = vec![b'a'; sfop_gateway::UNAUTHENTICATED_MAX_BODY + 1];
    let reply = https
        .post(
            "/oauth/2.0/token",
            None,
            "application/x-www-form-urlencoded",
            big_form,
        )
        .await?;
    assert_eq!(
        reply.status,
        413,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    t.platform.stop().await
}

/// Writes `head` one byte at a time until the server closes the
/// connection; returns how long after the handshake that was.
async fn slowloris(https: &Https, head: &'static [u8], pace: Duration) -> Result<Duration> {
    let tls = https.connect(b"http/1.1").await?;
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(tls);
    let trickle = async {
        for byte in head.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(pace).await;
        }
    };
    let closed = async {
        let mut sink = [0u8; 1024];
        // Whatever the server says, then its end of the stream.
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(BOUND, async {
        tokio::select! {
            () = closed => {}
            () = trickle => {}
        }
    })
    .await
    .context("the server kept a slow connection open")?;
    Ok(started.elapsed())
}

/// Defect 6: 150 connections that send their head a byte at a time are all
/// closed within the header-read bound while the gateway keeps answering;
/// a client that never starts TLS and an idle HTTP/2 connection are closed
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() -> Result<()> {
    const LIMIT: Duration = Duration::from_millis(1000);
    let t = https_platform(vec![Package::built("api/bank-status")], |c| {
        c.gateway.header_read_timeout_ms = 1000;
        c.gateway.idle_timeout_ms = 1000;
        // 150 handshakes at once on two cores in a debug build need longer.
        c.gateway.tls_handshake_timeout_ms = 3000;
    })
    .await?;
    let https = Arc::new(Https::of(&t)?);
    const HEAD: &[u8] = b"GET /v2.0/bank/status HTTP/1.1\r\nhost: localhost\r\nx-slow: ";

    let mut attackers = Vec::new();
    for _ in 0..150 {
        let https = https.clone();
        attackers.push(tokio::spawn(async move {
            slowloris(&https, HEAD, Duration::from_millis(50)).await
        }));
    }
    // The gateway still answers while they trickle.
    let reply = https.get("/v2.0/bank/status", None).await?;
    assert_eq!(reply.status, 401, "{:?}", reply.body);
    assert_hardened(&reply, "a 401 during the attack");

    let mut longest = Duration::ZERO;
    for attacker in attackers {
        longest = longest.max(attacker.await??);
    }
    eprintln!("150 slowloris connections: the last was closed {longest:?} after its handshake");
    // The bound, with room for a loaded two-core machine.
    assert!(longest < LIMIT * 4, "a slow connection lived {longest:?}");

    // A client that opens TCP and never says hello.
    let mut silent = TcpStream::connect(t.addr()).await?;
    let started = Instant::now();
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(BOUND, silent.read(&mut sink))
        .await
        .context("a silent TCP client was kept")?;
    assert!(started.elapsed() < Duration::from_secs(3) * 2);

    // An HTTP/2 connection that made one request and then stays quiet.
    let io = TokioIo::new(https.connect(b"h2").await?);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .uri("https://localhost/v2.0/bank/status")
        .body(http_body_util::Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000; includeSubDomains")
    );
    drop(res);
    let started = Instant::now();
    match tokio::time::timeout(BOUND, conn).await {
        Ok(_) => {}
        Err(_) => bail!("an idle HTTP/2 connection was kept"),
    }
    let idle = started.elapsed();
    eprintln!("idle HTTP/2 connection closed after {idle:?}");
    assert!(idle < LIMIT * 4, "idle for {idle:?}");
    t.platform.stop().await
}

/// Defect 7: native endpoints' answers, errors included, and the gateway's
/// own errors carry `nosniff`, `no-store` and HSTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_hardened() -> Result<()> {
    let t = https_platform(vec![Package::built("api/bank-status")], |_| {}).await?;
    let https = Https::of(&t)?;
    let cases = [
        https.get("/no/such/route", None).await?,
        https
            .post(
                "/oauth/2.0/token",
                None,
                "application/x-www-form-urlencoded",
                b"grant_type=client_credentials".to_vec(),
            )
            .await?,
        https.get("/admin/v1/apis", None).await?,
        https.get("/admin/v1/apis", Some(&admin_token(&t)?)).await?,
        https
            .get("/v2.0/bank/status", Some("not-a-biscuit"))
            .await?,
    ];
    for reply in &cases {
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{reply:?}"
        );
        assert!(reply.header("cache-control").is_some(), "{reply:?}");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{reply:?}"
        );
    }
    // The JSON answers among them have no cache policy of their own.
    for reply in &cases {
        if reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            assert_eq!(reply.header("cache-control"), Some("no-store"), "{reply:?}");
        }
    }
    t.platform.stop().await
}
