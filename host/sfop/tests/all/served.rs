//! The real `sfop serve` binary as a child process, over real HTTPS: started
//! on ephemeral ports with a data dir of the test's, reached through
//! connections that trust the certificate it generated, stopped with
//! SIGTERM. For tests where the process itself matters (file modes, exit
//! codes, CPU time, signals).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::harness::{Reply, built_plugins};

/// `sfop serve` as a child: HTTPS with the generated certificate, biscuit
/// authorisation, the built reference APIs (trusted at bootstrap, so the
/// start takes a second, not a testbed run per API).
pub struct Served {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Where the child's stderr goes (outside the data dir).
    pub log: PathBuf,
    /// The operator listener (`/metrics`, cleartext), from the listening line.
    pub ops: Option<SocketAddr>,
}

/// The command [`Served::start`] runs, for tests that run it themselves.
pub fn serve_command(data: &Path, log: &Path) -> Result<Command> {
    serve_plugins(&built_plugins()?.join("api"), data, log)
}

/// [`serve_command`] with the packages in `plugins` instead of the
/// reference APIs.
pub fn serve_plugins(plugins: &Path, data: &Path, log: &Path) -> Result<Command> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfop"));
    cmd.args(["serve", "--tls", "self-signed", "--auth", "biscuit"])
        .args(["--bootstrap", "trusted"])
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        // No load balancer to wait for: SIGTERM drains at once (the drain
        // tests remove the variable and set their grace in a config file).
        .env("SFOP_SHUTDOWN_GRACE_MS", "0")
        .arg("--plugins")
        .arg(plugins)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?);
    Ok(cmd)
}

impl Served {
    /// Starts and waits for the listening line.
    pub fn start(data: &Path, log: &Path) -> Result<Self> {
        Self::spawn(serve_command(data, log)?, data, log)
    }

    /// Runs `cmd` (a [`serve_command`], changed) and waits for its
    /// listening line.
    pub fn spawn(mut cmd: Command, data: &Path, log: &Path) -> Result<Self> {
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("https://"))
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(Self {
                child,
                addr,
                data: data.to_owned(),
                log: log.to_owned(),
                ops: line
                    .split_once("ops on http://")
                    .and_then(|(_, rest)| rest.trim_end().trim_end_matches(')').parse().ok()),
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "no https URL in {line:?}; stderr: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            }
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has run so far, every thread, in nanoseconds
    /// from the scheduler's account (`/proc/<pid>/task/*/schedstat`): time
    /// spent waiting for a core is not counted. Threads that ended are not
    /// either, so compare readings taken while the same threads run.
    pub fn cpu(&self) -> Result<Duration> {
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
                continue; // the thread ended meanwhile
            };
            total += stat
                .split_whitespace()
                .next()
                .context("schedstat")?
                .parse::<u64>()?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// SIGTERM, then waits: the platform drains and flushes its store.
    pub fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        assert!(
            exit.success(),
            "sfop serve exited {exit:?}: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        Ok(())
    }

    /// A keep-alive HTTP/1.1 connection over TLS, trusting the generated
    /// certificate.
    pub async fn connect(&self) -> Result<Connection> {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await?)).await?;
        tokio::spawn(conn);
        Ok(Connection {
            sender,
            host: format!("localhost:{}", self.addr.port()),
        })
    }

    /// A TLS connection trusting the generated certificate, for tests that
    /// write their own bytes.
    pub async fn tls(&self) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.data.join("tls/cert.pem"))? {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }

    /// Sends only the head of an HTTP/1.1 request announcing a body of
    /// `content_length` bytes, none of which is sent, and reads what the
    /// server answers (until it closes): whether it decided without the body.
    pub async fn head_only(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_length: usize,
    ) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.tls().await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {content_length}\r\n"
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer))
            .await
            .context("the server waited for the body")??;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// One request on a fresh connection.
    pub async fn https(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        self.connect()
            .await?
            .send(method, path, headers, body)
            .await
    }

    /// A client-credentials (`oob`) token of the seeded demo app.
    pub async fn oob_token(&self) -> Result<String> {
        let demo: Value = serde_json::from_str(&std::fs::read_to_string(
            self.data.join("demo-client.json"),
        )?)?;
        let form = format!(
            "grant_type=client_credentials&scope=oob&client_id={}&client_secret={}",
            demo["client_id"].as_str().context("client_id")?,
            demo["client_secret"].as_str().context("client_secret")?,
        );
        let reply = self
            .https(
                "POST",
                "/oauth/2.0/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                form.into_bytes(),
            )
            .await?;
        let body = reply.json()?;
        Ok(body["access_token"]
            .as_str()
            .with_context(|| format!("no access_token in {body}"))?
            .to_owned())
    }
}

impl Served {
    /// `/metrics` from the operator listener.
    pub async fn metrics(&self) -> Result<String> {
        let ops = self.ops.context("no ops address in the listening line")?;
        let reply = crate::harness::send(ops, "GET", "/metrics", &[], Vec::new()).await?;
        Ok(String::from_utf8(reply.body.to_vec())?)
    }

    /// The `sfop` CLI against this server (`--url`, `--data-dir`: the admin
    /// token and the certificate to trust), on a blocking thread.
    pub async fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfop"));
        cmd.args(args)
            .arg("--url")
            .arg(self.url())
            .arg("--data-dir")
            .arg(&self.data);
        Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
    }

    /// A user's access token for the seeded demo app (scopes login, inquiry
    /// and transfer, every account ticked): the authorize pages over HTTPS,
    /// the code exchanged with PKCE.
    pub async fn user_token(&self, login: &str, password: &str) -> Result<String> {
        let code = self.authorization_code(login, password).await?;
        let token = self.redeem(&code).await?.json()?;
        Ok(token["access_token"]
            .as_str()
            .with_context(|| format!("no access token: {token}"))?
            .to_owned())
    }

    /// The demo app's `client_id`, secret and redirect URI on this node.
    pub fn demo_client(&self) -> Result<(String, String, String)> {
        let demo: Value = serde_json::from_str(&std::fs::read_to_string(
            self.data.join("demo-client.json"),
        )?)?;
        let field = |k: &str| {
            demo[k]
                .as_str()
                .map(str::to_owned)
                .context("demo-client.json field")
        };
        Ok((
            field("client_id")?,
            field("client_secret")?,
            field("redirect_uri")?,
        ))
    }

    /// `POST /oauth/2.0/token` on this node: `code` (of
    /// [`authorization_code`](Self::authorization_code)) exchanged for the
    /// demo app.
    pub async fn redeem(&self, code: &str) -> Result<Reply> {
        let (client_id, secret, redirect) = self.demo_client()?;
        let exchange = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("redirect_uri", &redirect),
            ("code_verifier", USER_VERIFIER),
        ]);
        self.https(
            "POST",
            "/oauth/2.0/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            exchange.into_bytes(),
        )
        .await
    }

    /// An authorization code for the demo app from a user's sign-in and
    /// consent (scopes login, inquiry and transfer, every account ticked)
    /// on this node's authorize pages, its challenge [`USER_VERIFIER`]'s.
    pub async fn authorization_code(&self, login: &str, password: &str) -> Result<String> {
        let form_type = [("content-type", "application/x-www-form-urlencoded")];
        let (pending, consent) = self.sign_in(login, password).await?;
        let accounts = inputs(&String::from_utf8(consent.body.to_vec())?, "account");
        anyhow::ensure!(!accounts.is_empty(), "no accounts on the consent page");
        let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
        fields.extend(accounts.iter().map(|a| ("account", a.as_str())));
        fields.extend(["login", "inquiry", "transfer"].map(|s| ("scope", s)));
        let redirected = self
            .https(
                "POST",
                "/oauth/2.0/authorize",
                &form_type,
                form(&fields).into_bytes(),
            )
            .await?;
        Self::code_of(&redirected)
    }

    /// The demo app's authorize page (scopes login, inquiry and transfer,
    /// [`USER_VERIFIER`]'s challenge) and a user's sign-in on it: the
    /// pending authorization and the answer to the sign-in (the consent
    /// page, when it succeeds).
    pub async fn sign_in(&self, login: &str, password: &str) -> Result<(String, Reply)> {
        const VERIFIER: &str = USER_VERIFIER;
        let (client_id, _, redirect) = self.demo_client()?;
        let form_type = [("content-type", "application/x-www-form-urlencoded")];
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", &redirect),
            ("scope", "login inquiry transfer"),
            ("state", USER_STATE),
            ("auth_type", "0"),
            ("code_challenge", &sfop_auth::oauth::pkce_s256(VERIFIER)),
            ("code_challenge_method", "S256"),
        ]);
        let page = self
            .https(
                "GET",
                &format!("/oauth/2.0/authorize?{query}"),
                &[],
                Vec::new(),
            )
            .await?;
        let html = String::from_utf8(page.body.to_vec())?;
        let pending = inputs(&html, "pending")
            .pop()
            .with_context(|| format!("no sign-in form ({}): {html}", page.status))?;
        let signed_in = form(&[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", login),
            ("password", password),
        ]);
        let consent = self
            .https(
                "POST",
                "/oauth/2.0/authorize",
                &form_type,
                signed_in.into_bytes(),
            )
            .await?;
        Ok((pending, consent))
    }

    /// The code in the redirect that ends a consent, its `state` checked.
    fn code_of(redirected: &Reply) -> Result<String> {
        let location = redirected.header("location").context("no redirect")?;
        let param = |name: &str| {
            location.split_once('?')?.1.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == name).then(|| v.to_owned())
            })
        };
        anyhow::ensure!(
            param("state").as_deref() == Some(USER_STATE),
            "state: {location}"
        );
        param("code").context("no code")
    }
}

/// The PKCE verifier of [`Served::authorization_code`].
pub const USER_VERIFIER: &str = "served-user-token-pkce-verifier-0123456789-abcdefghij";
/// The `state` of the demo app's authorizations in these tests.
const USER_STATE: &str = "0123456789abcdef0123456789abcdef";

/// An `application/x-www-form-urlencoded` body or query.
fn form(fields: &[(&str, &str)]) -> String {
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every `value` of inputs named `name` on a page.
fn inputs(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

impl Drop for Served {
    fn drop(&mut self) {
        // A test that failed before `stop` leaves no server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive connection to a [`Served`] platform.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await?;
        let res = self
            .sender
            .send_request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET path` with a bearer token.
    pub async fn get_bearer(&mut self, path: &str, token: &str) -> Result<Reply> {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("authorization", &auth)], Vec::new())
            .await
    }
}
