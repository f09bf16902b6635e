//! Issue 21: the `http` and `config` capabilities of `sfop:platform@0.2.0`
//! over real sockets. An HTTPS upstream on 127.0.0.1 (its own CA given to
//! the platform as the operator's bundle) answers the `test/outbound`
//! plugin; every refusal the capability documents (ADR 0027) is driven
//! through the gateway, a 0.1.0 plugin serves beside it throughout, and
//! loads that must fail do, naming why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use sfop::outbound::VariableValue;

use crate::harness::{Package, TestPlatform, send};

/// What the upstream saw of each request: path, `x-api-key`, `traceparent`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// An HTTPS server on 127.0.0.1 with a certificate for `localhost` and
/// `127.0.0.1`, speaking HTTP/1.1 and HTTP/2.
struct Upstream {
    addr: SocketAddr,
    ca_file: tempfile::NamedTempFile,
    seen: Seen,
    connections: Arc<AtomicUsize>,
}

const BIG: usize = 100 * 1024;

async fn answer(req: Request<hyper::body::Incoming>, seen: Seen) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = req.uri().path().to_owned();
    if let Ok(mut seen) = seen.lock() {
        seen.push((path.clone(), header("x-api-key"), header("traceparent")));
    }
    let redirect = |to: &str| {
        Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    match path.as_str() {
        "/ok" => Response::new(Full::new(Bytes::from_static(b"pong"))),
        "/redirect-in" => redirect("/ok"),
        "/redirect-out" => redirect("https://unlisted.example/ok"),
        "/big" => Response::new(Full::new(Bytes::from(vec![b'x'; BIG]))),
        // An upstream that never answers.
        "/slow" => std::future::pending().await,
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default(),
    }
}

impl Upstream {
    async fn start() -> Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let cert = params.self_signed(&key)?;
        let ca_file = tempfile::NamedTempFile::new()?;
        std::fs::write(ca_file.path(), cert.pem())?;
        let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes())?];
        let private = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen: Seen = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections2.fetch_add(1, Ordering::Relaxed);
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(req, seen).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_file,
            seen,
            connections,
        })
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    fn seen(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn manifest(name: &str, path: &str, allowed: &[String], extra: &str) -> String {
    let allowed = allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"name = "{name}"
version = "0.1.0"
description = "outbound test"
scope = "oob"
capabilities = ["http", "config"]
allowed_hosts = [{allowed}]
{extra}
[variables]
api_key = {{ secret = true }}
greeting = {{ default = "hello" }}

[limits]
timeout_ms = 1000

[[routes]]
method = "GET"
path = "{path}"
"#
    )
}

/// `GET {path}?url=...` on the platform; the plugin's JSON answer.
async fn call(t: &TestPlatform, path: &str, url: &str, more: &str) -> Result<Value> {
    // The test URLs hold no `&`, `#`, `+` or `%`: they go into the query as they are.
    let reply = send(
        t.addr(),
        "GET",
        &format!("{path}?url={url}{more}"),
        &[("traceparent", TRACEPARENT)],
        Vec::new(),
    )
    .await?;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json()?;
    // A0000 with the upstream's answer, A0002 with the error the plugin saw.
    let expected = if body.get("error_kind").is_some() {
        "A0002"
    } else {
        "A0000"
    };
    assert_eq!(body["rsp_code"], expected, "{body}");
    Ok(body)
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const SECRET: &str = "s3cr3t-api-key-5f1d";

#[tokio::test]
async fn outbound_http_is_allowed_only_where_the_manifest_says_and_refusals_are_clear() -> Result<()>
{
    let up = Upstream::start().await?;
    let wide = manifest(
        "outbound",
        "/test/outbound",
        &[up.url("127.0.0.1", ""), up.url("localhost", "")],
        "",
    );
    let narrow = manifest(
        "outbound-narrow",
        "/test/outbound-narrow",
        &[up.url("localhost", "")],
        "",
    );
    // `http` imported but not declared: refused at load, naming the import.
    let undeclared = wide
        .replace(
            r#"capabilities = ["http", "config"]"#,
            r#"capabilities = ["config"]"#,
        )
        .replace(
            &format!(
                "allowed_hosts = [{:?}, {:?}]",
                up.url("127.0.0.1", ""),
                up.url("localhost", "")
            ),
            "",
        )
        .replace("name = \"outbound\"", "name = \"outbound-undeclared\"")
        .replace("/test/outbound\"", "/test/outbound-undeclared\"");
    // A required variable the operator did not set: refused at load.
    let required = manifest(
        "outbound-required",
        "/test/outbound-required",
        &[up.url("127.0.0.1", "")],
        "",
    )
    .replace(
        "greeting = { default = \"hello\" }",
        "greeting = { required = true }",
    );
    let ca = up.ca_file.path().to_owned();
    let t = TestPlatform::start_with(
        vec![
            Package::built("test/hello"),
            Package::built("test/outbound").with_manifest(&wide),
            Package::built("test/outbound")
                .named("outbound-narrow")
                .with_manifest(&narrow),
            Package::built("test/outbound")
                .named("outbound-undeclared")
                .with_manifest(&undeclared),
            Package::built("test/outbound")
                .named("outbound-required")
                .with_manifest(&required),
        ],
        |c| {
            c.tls.mode = sfop::TlsMode::Off;
            c.auth.mode = sfop::AuthMode::Off;
            c.outbound.system_roots = false;
            c.outbound.ca = Some(ca);
            c.outbound.max_response_kib = 64;
            c.variables.insert(
                "outbound".into(),
                [("api_key".to_owned(), VariableValue::new(SECRET))].into(),
            );
        },
    )
    .await?;

    let refused = t
        .refusal("outbound-undeclared")
        .context("a plugin importing http without declaring it was loaded")?;
    assert!(
        refused.contains("sfop:platform/http@0.2.0") && refused.contains("`http`"),
        "{refused}"
    );
    let refused = t
        .refusal("outbound-required")
        .context("a plugin missing a required variable was loaded")?;
    assert!(
        refused.contains("greeting") && refused.contains("required"),
        "{refused}"
    );

    // A 0.1.0 plugin serves beside the 0.2.0 one.
    let hello = t.get("/test/hello").await?;
    assert_eq!(hello.json()?["greeting"], "hello");

    // Allowed: answered, with the secret variable and the caller's traceparent.
    for _ in 0..5 {
        let body = call(&t, "/test/outbound", &up.url("127.0.0.1", "/ok"), "").await?;
        assert_eq!(body["upstream_status"], 200, "{body}");
        assert_eq!(body["upstream_body"], "pong", "{body}");
        assert_eq!(body["greeting"], "hello", "{body}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 5);
    for (path, key, parent) in &seen {
        assert_eq!(path, "/ok");
        assert_eq!(key.as_deref(), Some(SECRET));
        assert_eq!(parent.as_deref(), Some(TRACEPARENT));
    }
    // The host keeps the pool: five calls from five instances, one connection.
    assert_eq!(up.connections.load(Ordering::Relaxed), 1);

    // A redirect within the allowed origin is followed.
    let body = call(
        &t,
        "/test/outbound",
        &up.url("127.0.0.1", "/redirect-in"),
        "",
    )
    .await?;
    assert_eq!(body["upstream_body"], "pong", "{body}");

    let refusal = |body: &Value, kind: &str, says: &str| {
        assert_eq!(body["error_kind"], kind, "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}");
    };
    // An unlisted host.
    let body = call(&t, "/test/outbound", "https://unlisted.example/ok", "").await?;
    refusal(&body, "denied-host", "https://unlisted.example is not in");
    // A redirect to an unlisted host.
    let body = call(
        &t,
        "/test/outbound",
        &up.url("127.0.0.1", "/redirect-out"),
        "",
    )
    .await?;
    refusal(
        &body,
        "denied-host",
        "a redirect to https://unlisted.example",
    );
    // 127.0.0.1 not listed (only the name is).
    let body = call(&t, "/test/outbound-narrow", &up.url("127.0.0.1", "/ok"), "").await?;
    refusal(
        &body,
        "denied-host",
        "is not in the manifest's allowed_hosts",
    );
    // A listed name that resolves to a loopback address (SSRF).
    let body = call(&t, "/test/outbound-narrow", &up.url("localhost", "/ok"), "").await?;
    refusal(&body, "denied-host", "resolves to 127.0.0.1");
    // An oversized answer.
    let body = call(&t, "/test/outbound", &up.url("127.0.0.1", "/big"), "").await?;
    refusal(&body, "too-large", "65536");
    // Not a URL.
    let body = call(&t, "/test/outbound", "core.bank.example/x", "").await?;
    refusal(&body, "invalid", "url");
    let served_before = up.seen().len();

    // A slow upstream, past the plugin's own timeout, and past the call's
    // deadline (timeout_ms 1000, less the margin): each `timeout`, while
    // the other APIs keep serving.
    let slow_url = up.url("127.0.0.1", "/slow");
    let started = Instant::now();
    let (short, whole, hello) = tokio::join!(
        call(&t, "/test/outbound", &slow_url, "&timeout_ms=300"),
        call(&t, "/test/outbound", &slow_url, ""),
        async {
            let started = Instant::now();
            let mut served = 0;
            while started.elapsed() < Duration::from_millis(250) {
                let r = t.get("/test/hello").await?;
                anyhow::ensure!(r.status == 200, "hello answered {}", r.status);
                served += 1;
            }
            Ok::<_, anyhow::Error>(served)
        }
    );
    let elapsed = started.elapsed();
    refusal(&short?, "timeout", "");
    refusal(&whole?, "timeout", "");
    assert!(hello? > 5, "hello stopped serving while upstreams hung");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    assert_eq!(up.seen().len(), served_before + 2);
    Ok(())
}

/// The testbed answers a package's allowed origins from its `testbed.toml`
/// (`[[upstream]]`) and gives it that file's `[variables]`: a package that
/// calls its backend passes and is attested without the backend, and the
/// run's report never shows the secret variable's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbed_answers_declared_upstreams_from_fixtures() -> Result<()> {
    let dir = crate::harness::built_plugins()?.join("test/outbound");
    let component = std::fs::read(dir.join("api.wasm"))?;
    let manifest = r#"name = "core-ping"
version = "1.0.0"
description = "Pings the bank's core system"
scope = "oob"
capabilities = ["http", "config"]
allowed_hosts = ["https://core.bank.example:8443"]

[variables]
api_key = { required = true, secret = true }
greeting = { default = "hello" }

[[routes]]
method = "GET"
path = "/v2.0/core/ping"

[docs]
[[docs.request]]
name = "url"
type = "AN(200)"
required = true
description = "What to call"
[[docs.response]]
name = "greeting"
type = "AN(20)"
description = "The greeting variable"
[[docs.response]]
name = "upstream_status"
type = "Number"
description = "The upstream's status"
[[docs.response]]
name = "upstream_body"
type = "AN(100)"
description = "The upstream's body"
[docs.example]
request = "url=https://core.bank.example:8443/v1/ping"
response = '{"rsp_code":"A0000","rsp_message":"","greeting":"hello","upstream_status":200,"upstream_body":"pong"}'
"#;
    let cases = format!(
        r#"[variables]
api_key = "{SECRET}"

[[upstream]]
method = "GET"
url = "https://core.bank.example:8443/v1/ping"
body = "pong"

[[case]]
name = "the backend answers through its fixture"
query = "url=https://core.bank.example:8443/v1/ping"
[case.expect]
rsp_code = "A0000"
fields = {{ upstream_body = "pong", greeting = "hello" }}

[[case]]
name = "a URL without a fixture is a backend not reached"
query = "url=https://core.bank.example:8443/v1/other"
[case.expect]
rsp_code = "A0002"
fields = {{ error_kind = "connect" }}

[[case]]
name = "an origin the manifest does not allow is denied"
query = "url=https://evil.example/v1/ping"
[case.expect]
rsp_code = "A0002"
fields = {{ error_kind = "denied-host" }}
"#
    );
    let package =
        sfop_testbed::Package::from_parts(manifest.to_owned(), component.clone(), Some(cases))?;
    let keys = tempfile::tempdir()?;
    let signer = sfop_testbed::AttestationSigner::open_or_create(keys.path())?;
    let (report, attestation) =
        sfop_testbed::run_and_attest(&package, &sfop_testbed::RunOptions::default(), &signer)
            .await?;
    let failures: String = report
        .checks
        .iter()
        .filter(|c| c.outcome == sfop_testbed::Outcome::Fail)
        .map(|c| format!("\n  {} {}: {}", c.rule, c.name, c.detail))
        .collect();
    assert!(report.passed(), "failed:{failures}");
    assert!(attestation.is_some());
    let json = serde_json::to_string(&report)?;
    let html = report.to_html();
    assert!(!json.contains(SECRET) && !html.contains(SECRET));

    // Without the required variable the package does not load (STATIC-LOAD).
    let package = sfop_testbed::Package::from_parts(manifest.to_owned(), component, None)?;
    let report = sfop_testbed::run(&package, &sfop_testbed::RunOptions::default()).await?;
    let load = report
        .checks
        .iter()
        .find(|c| c.rule == "STATIC-LOAD")
        .context("no STATIC-LOAD check")?;
    assert_eq!(load.outcome, sfop_testbed::Outcome::Fail);
    assert!(load.detail.contains("api_key"), "{}", load.detail);
    Ok(())
}

/// The README's backend plugin (`test/core-balance`) against the runnable
/// stand-in core-banking system of `examples/bank-backend`, over HTTPS with
/// the operator's CA, its secret key from the operator's `[variables]`.
#[tokio::test]
async fn the_example_plugin_reads_a_balance_from_the_example_bank_backend() -> Result<()> {
    let key = "example-core-key-7c1e";
    let backend = bank_backend::start("127.0.0.1:0".parse()?, key.to_owned()).await?;
    let origin = format!("https://127.0.0.1:{}", backend.addr.port());
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), &backend.cert_pem)?;
    let manifest = std::fs::read_to_string(
        crate::harness::built_plugins()?.join("test/core-balance/sfop.toml"),
    )?
    .replace("https://core.bank.example:8443", &origin);
    let start = |api_key: &'static str| {
        let (manifest, ca, origin) = (manifest.clone(), ca.path().to_owned(), origin.clone());
        async move {
            TestPlatform::start_with(
                vec![Package::built("test/core-balance").with_manifest(&manifest)],
                move |c| {
                    c.tls.mode = sfop::TlsMode::Off;
                    c.auth.mode = sfop::AuthMode::Off;
                    c.outbound.system_roots = false;
                    c.outbound.ca = Some(ca);
                    c.variables.insert(
                        "core-balance".into(),
                        [
                            ("core_url".to_owned(), VariableValue::new(origin)),
                            ("core_api_key".to_owned(), VariableValue::new(api_key)),
                        ]
                        .into(),
                    );
                },
            )
            .await
        }
    };
    let t = start(key).await?;
    let reply = t.get("/v2.0/core/balance?account_num=100012345678").await?;
    let body = reply.json()?;
    assert_eq!(body["rsp_code"], "A0000", "{body}");
    assert_eq!(body["account_num"], "100012345678");
    let expected = bank_backend::balance_of("100012345678").map(|b| b.to_string());
    assert_eq!(body["balance_amt"].as_str(), expected.as_deref());
    let reply = t.get("/v2.0/core/balance?account_num=12").await?;
    assert_eq!(reply.json()?["rsp_code"], "A0004");
    // A wrong key: the backend refuses, the plugin answers A0002.
    let t = start("not-the-key").await?;
    let reply = t.get("/v2.0/core/balance?account_num=100012345678").await?;
    let body = reply.json()?;
    assert_eq!(body["rsp_code"], "A0002", "{body}");
    assert!(
        body["rsp_message"]
            .as_str()
            .unwrap_or_default()
            .contains("401"),
        "{body}"
    );
    Ok(())
}

/// A secret variable set in the environment reaches the plugin (and, through
/// it, the upstream) and nowhere else: the `sfop serve` process's whole log
/// at debug level, the portal's pages about the API and every file of its
/// data dir (store, audit log) are searched for the value.
#[tokio::test]
async fn a_secret_variable_reaches_the_plugin_and_no_log_or_store() -> Result<()> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let up = Upstream::start().await?;
    let plugins = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let package = plugins.path().join("outbound");
    std::fs::create_dir_all(&package)?;
    std::fs::write(
        package.join("sfop.toml"),
        manifest("outbound", "/test/outbound", &[up.url("127.0.0.1", "")], ""),
    )?;
    std::fs::copy(
        crate::harness::built_plugins()?.join("test/outbound/api.wasm"),
        package.join("api.wasm"),
    )?;
    let config = data.path().join("sfop.toml");
    std::fs::write(
        &config,
        format!(
            // Tracing on, to a collector that is not there: the log lines
            // of a request name its trace (ADR 0028).
            "[outbound]\nsystem_roots = false\nca = {:?}\n\
             [telemetry]\nendpoint = \"http://127.0.0.1:9\"\nsampling_ratio = 1.0\n",
            up.ca_file.path().display().to_string()
        ),
    )?;
    let log = tempfile::NamedTempFile::new()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfop"))
        .args([
            "serve",
            "--tls",
            "off",
            "--auth",
            "off",
            "--bootstrap",
            "trusted",
        ])
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env("SFOP_VAR_OUTBOUND__API_KEY", SECRET)
        .env("SFOP_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(log.reopen()?)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let served = async {
        let addr: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .with_context(|| format!("no URL in {line:?}"))?
            .trim_end_matches('/')
            .parse()?;
        for url in [up.url("127.0.0.1", "/ok"), up.url("127.0.0.1", "/big")] {
            let reply = send(
                addr,
                "GET",
                &format!("/test/outbound?url={url}"),
                &[("traceparent", TRACEPARENT)],
                Vec::new(),
            )
            .await?;
            anyhow::ensure!(
                reply.status == 200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
        }
        // The portal's pages about the API: the catalogue, its docs, its
        // try-it page, the reference, the status page and the OpenAPI
        // document show no value of its variables.
        let mut pages = 0;
        for page in [
            "/portal",
            "/portal/apis/outbound",
            "/portal/try/outbound",
            "/portal/reference",
            "/portal/status",
            "/portal/openapi.json",
        ] {
            let reply = send(addr, "GET", page, &[], Vec::new()).await?;
            let body = String::from_utf8_lossy(&reply.body);
            anyhow::ensure!(!body.contains(SECRET), "the secret is on {page}");
            if reply.status == 200 {
                pages += 1;
            }
        }
        let docs = send(addr, "GET", "/portal/apis/outbound", &[], Vec::new()).await?;
        anyhow::ensure!(
            docs.status == 200 && String::from_utf8_lossy(&docs.body).contains("outbound test"),
            "the API's docs page answered {}",
            docs.status
        );
        anyhow::ensure!(pages >= 4, "only {pages} portal pages answered 200");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    served?;
    // The value reached the upstream, from the environment.
    assert!(
        up.seen()
            .iter()
            .any(|(path, key, _)| path == "/ok" && key.as_deref() == Some(SECRET))
    );
    let mut text = line;
    stdout.read_to_string(&mut text)?;
    text.push_str(&std::fs::read_to_string(log.path())?);
    assert!(text.contains("outbound"), "the log is empty: {text}");
    assert!(!text.contains(SECRET), "the secret is in the log");
    // The request's log lines carry the trace id the caller started.
    assert!(
        text.lines()
            .any(|l| l.contains("trace_id") && l.contains("0af7651916cd43dd8448eb211c80319c")),
        "no trace id in the log: {text}"
    );
    assert_no_file_holds(data.path(), SECRET)
}

/// No file under `dir` holds `secret` (and `dir` has files to search).
fn assert_no_file_holds(dir: &std::path::Path, secret: &str) -> Result<()> {
    let mut files = vec![dir.to_owned()];
    let mut searched = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                files.push(entry?.path());
            }
        } else {
            let bytes = std::fs::read(&path)?;
            searched += 1;
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {}",
                path.display()
            );
        }
    }
    assert!(searched > 3, "only {searched} files in {}", dir.display());
    Ok(())
}

/// The platform's config for the admin-API variable test: HTTPS off,
/// authorisation on (the admin API needs it), the upstream's CA, and the
/// config file's value of `api_key`.
fn with_admin(ca: std::path::PathBuf) -> impl Fn(&mut sfop::Config) + Clone {
    move |c: &mut sfop::Config| {
        c.tls.mode = sfop::TlsMode::Off;
        c.auth.mode = sfop::AuthMode::Biscuit;
        c.outbound.system_roots = false;
        c.outbound.ca = Some(ca.clone());
        c.variables.insert(
            "outbound".into(),
            [("api_key".to_owned(), VariableValue::new(FILE_KEY))].into(),
        );
    }
}

const FILE_KEY: &str = "key-from-the-config-file";

/// An admin call on `t` (JSON body unless GET).
async fn admin(
    t: &TestPlatform,
    method: &str,
    path: &str,
    body: &str,
) -> Result<crate::harness::Reply> {
    let token =
        std::fs::read_to_string(t.platform.admin_token.as_ref().context("no admin token")?)?;
    let auth = format!("Bearer {token}");
    send(
        t.addr(),
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes().to_vec(),
    )
    .await
}

/// `GET {path}?url=...` as the bearer of `token`: the plugin's answer.
async fn call_as(t: &TestPlatform, token: &str, path: &str, url: &str) -> Result<Value> {
    let auth = format!("Bearer {token}");
    let reply = send(
        t.addr(),
        "GET",
        &format!("{path}?url={url}"),
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await?;
    anyhow::ensure!(
        reply.status == 200,
        "{path}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// Variables set through the admin API (ADR 0027): they win over the config
/// file, the API's serving versions reload with them at once, they persist
/// sealed across a restart, the audit log names the variable and never its
/// value, a secret's value is never shown back, a change that would leave a
/// serving version without a required value is refused and changes
/// nothing, and what an attacker or a careless operator sends is refused
/// naming the field.
#[tokio::test]
async fn variables_set_through_the_admin_api_reload_the_api_and_keep_their_secrets() -> Result<()> {
    let up = Upstream::start().await?;
    let origin = [up.url("127.0.0.1", "")];
    let wide = manifest("outbound", "/test/outbound", &origin, "");
    let required = manifest("outbound-required", "/test/outbound-required", &origin, "").replace(
        "greeting = { default = \"hello\" }",
        "greeting = { required = true }",
    );
    let configure = with_admin(up.ca_file.path().to_owned());
    let t = TestPlatform::start_with(
        vec![Package::built("test/outbound").with_manifest(&wide)],
        configure.clone(),
    )
    .await?;
    let (client_id, secret, _) = crate::auth::register_client(&t).await?;
    let oob = crate::auth::token_of(
        &crate::auth::post_form(
            &t,
            "/oauth/2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "oob"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        )
        .await?,
    )?
    .0;
    let ok = up.url("127.0.0.1", "/ok");
    let last_key = || up.seen().last().and_then(|(_, key, _)| key.clone());

    // Before: the config file's key and the manifest's default greeting.
    let body = call_as(&t, &oob, "/test/outbound", &ok).await?;
    assert_eq!(body["greeting"], "hello", "{body}");
    assert_eq!(last_key().as_deref(), Some(FILE_KEY));

    // Set both: the next call sees them, with no restart.
    let set = |api: &str, variable: &str, value: &str| {
        serde_json::json!({ "name": api, "variable": variable, "value": value }).to_string()
    };
    let reply = admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/set",
        &set("outbound", "greeting", "bonjour"),
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/set",
        &set("outbound", "api_key", SECRET),
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let shown = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(!shown.contains(SECRET), "the secret is shown back: {shown}");
    let body = call_as(&t, &oob, "/test/outbound", &ok).await?;
    assert_eq!(body["greeting"], "bonjour", "{body}");
    assert_eq!(last_key().as_deref(), Some(SECRET));

    // The listing: the non-secret value, never the secret's.
    let reply = admin(&t, "GET", "/admin/v1/apis/variables?name=outbound", "").await?;
    assert_eq!(reply.status, 200);
    let listed = reply.json()?;
    let variable = |name: &str| {
        listed["variables"]
            .as_array()
            .and_then(|all| all.iter().find(|v| v["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(variable("greeting")["value"], "bonjour", "{listed}");
    assert_eq!(variable("api_key")["set_by_admin"], true, "{listed}");
    assert_eq!(variable("api_key")["secret"], true, "{listed}");
    assert!(variable("api_key").get("value").is_none(), "{listed}");
    assert!(!listed.to_string().contains(SECRET));

    // The audit log names each change and its actor, never a value.
    let audit = admin(&t, "GET", "/admin/v1/audit", "").await?;
    let text = String::from_utf8_lossy(&audit.body).into_owned();
    assert!(
        !text.contains(SECRET) && !text.contains("bonjour"),
        "{text}"
    );
    let entries = audit.json()?["res_list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let changes: Vec<String> = entries
        .iter()
        .filter(|e| e["action"] == "variable set" && e["api"] == "outbound")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(changes, ["greeting", "api_key (secret)"], "{text}");

    // What an attacker or a careless operator sends: refused, naming the
    // field, nothing changed.
    let no_admin = send(
        t.addr(),
        "POST",
        "/admin/v1/apis/variables/set",
        &[
            ("authorization", &format!("Bearer {oob}")),
            ("content-type", "application/json"),
        ],
        set("outbound", "greeting", "pwned").into_bytes(),
    )
    .await?;
    assert_eq!(no_admin.status, 403, "{:?}", no_admin.body);
    let anonymous = send(
        t.addr(),
        "POST",
        "/admin/v1/apis/variables/set",
        &[("content-type", "application/json")],
        set("outbound", "greeting", "pwned").into_bytes(),
    )
    .await?;
    assert_eq!(anonymous.status, 401);
    let long = "x".repeat(16 * 1024 + 1);
    let refusals = [
        (set("outbound", "undeclared", "x"), 404, "undeclared"),
        (
            r#"{"name":"outbound","variable":"greeting","value":"a","value":"pwned"}"#.to_owned(),
            400,
            "value",
        ),
        (
            r#"{"name":"outbound","variable":"greeting","value":"a","admin":true}"#.to_owned(),
            400,
            "admin",
        ),
        (
            r#"{"name":"outbound","variable":"greeting","value":["pwned"]}"#.to_owned(),
            400,
            "request body",
        ),
        (
            r#"{"name":"outbound","variable":"greeting"}"#.to_owned(),
            400,
            "value",
        ),
        (set("outbound", "greeting", &long), 400, "value"),
        ("not json".to_owned(), 400, "request body"),
    ];
    for (body, status, names) in refusals {
        let reply = admin(&t, "POST", "/admin/v1/apis/variables/set", &body).await?;
        let answer = reply.json()?;
        assert_eq!(reply.status, status, "{body:.80}: {answer}");
        assert_eq!(answer["rsp_code"], "A0004", "{answer}");
        let message = answer["rsp_message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{body:.80}: {message}");
        assert!(!message.contains("pwned"), "{message}");
    }
    let reply = admin(&t, "GET", "/admin/v1/apis/variables?name=no-such-api", "").await?;
    assert_eq!(reply.status, 404);
    let body = call_as(&t, &oob, "/test/outbound", &ok).await?;
    assert_eq!(body["greeting"], "bonjour", "{body}");

    // A value for an API not registered yet, for its first load.
    let reply = admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/set",
        &set("outbound-required", "greeting", "hi"),
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // Unset: the config file's key applies again.
    let reply = admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/unset",
        r#"{"name":"outbound","variable":"api_key"}"#,
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    call_as(&t, &oob, "/test/outbound", &ok).await?;
    assert_eq!(last_key().as_deref(), Some(FILE_KEY));
    admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/set",
        &set("outbound", "api_key", SECRET),
    )
    .await?;

    // Restart over the same dirs, with the package that requires `greeting`
    // added: the values were kept (sealed), and it loads with the admin's.
    let dirs = t.stop_keeping_dirs().await?;
    Package::built("test/outbound")
        .named("outbound-required")
        .with_manifest(&required)
        .write(dirs.0.path(), &crate::harness::built_plugins()?)?;
    let t = TestPlatform::restart_with(dirs, configure).await?;
    assert_eq!(t.refusal("outbound-required"), None);
    let body = call_as(&t, &oob, "/test/outbound", &ok).await?;
    assert_eq!(body["greeting"], "bonjour", "{body}");
    assert_eq!(last_key().as_deref(), Some(SECRET));
    let body = call_as(&t, &oob, "/test/outbound-required", &ok).await?;
    assert_eq!(body["greeting"], "hi", "{body}");

    // Unsetting the only value of a required variable of a serving version:
    // refused, naming it; the version keeps serving with it.
    let reply = admin(
        &t,
        "POST",
        "/admin/v1/apis/variables/unset",
        r#"{"name":"outbound-required","variable":"greeting"}"#,
    )
    .await?;
    let answer = reply.json()?;
    assert_eq!(reply.status, 422, "{answer}");
    assert!(
        answer["rsp_message"]
            .as_str()
            .unwrap_or_default()
            .contains("greeting"),
        "{answer}"
    );
    let body = call_as(&t, &oob, "/test/outbound-required", &ok).await?;
    assert_eq!(body["greeting"], "hi", "{body}");

    // Nothing on disk holds the secret in clear.
    assert_no_file_holds(t.data_dir(), SECRET)
}

/// `sfop api var …` against a running `sfop serve`: a value piped on stdin
/// reaches the plugin at once; the listing marks a secret without showing
/// it; no command's output and no line of the server's log holds it.
#[tokio::test]
async fn the_cli_sets_a_variable_from_stdin_and_never_prints_a_secret() -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir()?;
    let (data, log, plugins) = (
        dir.path().join("data"),
        dir.path().join("serve.log"),
        dir.path().join("plugins"),
    );
    // Nothing listens on port 9: the plugin answers its greeting with the
    // error it saw.
    Package::built("test/outbound")
        .with_manifest(&manifest(
            "outbound",
            "/test/outbound",
            &["https://127.0.0.1:9".to_owned()],
            "",
        ))
        .write(&plugins, &crate::harness::built_plugins()?)?;
    let cmd = crate::served::serve_plugins(&plugins, &data, &log)?;
    let server = crate::served::Served::spawn(cmd, &data, &log)?;
    let oob = server.oob_token().await?;
    let greeting = async || -> Result<Value> {
        let mut conn = server.connect().await?;
        let reply = conn
            .get_bearer("/test/outbound?url=https://127.0.0.1:9/ok", &oob)
            .await?;
        anyhow::ensure!(reply.status == 200, "{:?}", reply.body);
        Ok(reply.json()?["greeting"].clone())
    };
    assert_eq!(greeting().await?, "hello");

    let cli = |args: &[&str], stdin: &str| -> Result<std::process::Output> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sfop"))
            .args(args)
            .arg("--url")
            .arg(server.url())
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    };
    let mut printed = String::new();
    let mut run = |args: &[&str], stdin: &str| -> Result<String> {
        let out = cli(args, stdin)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push_str(&text);
        anyhow::ensure!(out.status.success(), "{args:?}: {text}");
        Ok(text)
    };
    run(
        &["api", "var", "set", "outbound", "greeting"],
        "from the cli\n",
    )?;
    assert_eq!(greeting().await?, "from the cli");
    run(
        &["api", "var", "set", "outbound", "api_key"],
        &format!("{SECRET}\n"),
    )?;
    let listed = run(&["api", "var", "list", "outbound"], "")?;
    let row = |name: &str| {
        listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("greeting").contains("from the cli"), "{listed}");
    assert!(row("api_key").contains("(secret)"), "{listed}");
    // An undeclared variable: the command fails, naming it.
    let out = cli(
        &["api", "var", "set", "outbound", "nope", "--value", "x"],
        "",
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    run(&["api", "var", "unset", "outbound", "greeting"], "")?;
    assert_eq!(greeting().await?, "hello");
    server.stop()?;
    assert!(
        !printed.contains(SECRET),
        "a command printed the secret: {printed}"
    );
    let logged = std::fs::read_to_string(&log)?;
    assert!(logged.contains("variable set"), "{logged}");
    assert!(!logged.contains(SECRET), "the secret is in the log");
    Ok(())
}
