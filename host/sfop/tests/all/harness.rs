//! Starting a platform over chosen packages, and a small HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sfop::{AuthMode, Config, Platform, TlsMode};
use tempfile::TempDir;

/// Where `cargo xtask build-plugins` puts components.
pub fn built_plugins() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sfop-plugins");
    if !dir.join("api/bank-status/api.wasm").is_file() {
        bail!(
            "plugins are not built in {}: run `cargo xtask build-plugins` (or `cargo xtask ci`)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A package folder assembled for a test, from a built component and a manifest.
pub struct Package {
    /// Folder name under the plugins dir.
    pub name: String,
    /// `group/name` of the built package whose component to use, e.g. `test/echo`.
    pub component_of: String,
    /// Manifest text; `None` copies the built package's own manifest.
    pub manifest: Option<String>,
    /// Raw bytes to use instead of a built component.
    pub component_bytes: Option<Vec<u8>>,
}

impl Package {
    /// The built package `group/name` as it is.
    pub fn built(group_and_name: &str) -> Self {
        let name = group_and_name.rsplit('/').next().unwrap_or(group_and_name);
        Self {
            name: name.to_owned(),
            component_of: group_and_name.to_owned(),
            manifest: None,
            component_bytes: None,
        }
    }

    /// The built package with its manifest replaced.
    pub fn with_manifest(mut self, manifest: &str) -> Self {
        self.manifest = Some(manifest.to_owned());
        self
    }

    /// Stored under another folder name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The component replaced by arbitrary bytes.
    pub fn with_component_bytes(mut self, bytes: &[u8]) -> Self {
        self.component_bytes = Some(bytes.to_vec());
        self
    }

    pub(crate) fn write(&self, plugins: &Path, built: &Path) -> Result<()> {
        let src = built.join(&self.component_of);
        let dst = plugins.join(&self.name);
        std::fs::create_dir_all(&dst)?;
        let manifest = match &self.manifest {
            Some(text) => text.clone(),
            None => std::fs::read_to_string(src.join("sfop.toml"))
                .with_context(|| format!("manifest of {}", src.display()))?,
        };
        std::fs::write(dst.join("sfop.toml"), manifest)?;
        let component = match &self.component_bytes {
            Some(bytes) => bytes.clone(),
            None => std::fs::read(src.join("api.wasm"))
                .with_context(|| format!("component of {}", src.display()))?,
        };
        std::fs::write(dst.join("api.wasm"), component)?;
        // The package's own testbed cases travel with it.
        let cases = src.join("testbed.toml");
        if self.manifest.is_none() && cases.is_file() {
            std::fs::copy(cases, dst.join("testbed.toml"))?;
        }
        Ok(())
    }
}

/// A platform started for one test, with its temp dirs.
pub struct TestPlatform {
    pub platform: Platform,
    _plugins: TempDir,
    _data: TempDir,
}

impl TestPlatform {
    /// The data plane alone: cleartext HTTP, no authorisation, everything
    /// else as the embedded default.
    pub async fn start(packages: Vec<Package>) -> Result<Self> {
        Self::start_with(packages, |config| {
            config.tls.mode = TlsMode::Off;
            config.auth.mode = AuthMode::Off;
        })
        .await
    }

    /// With `configure` applied to a default config on ephemeral ports.
    pub async fn start_with(
        packages: Vec<Package>,
        configure: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        Self::start_overriding(packages, configure, sfop::Overrides::default()).await
    }

    /// [`TestPlatform::start_with`], with parts of the platform replaced.
    pub async fn start_overriding(
        packages: Vec<Package>,
        configure: impl FnOnce(&mut Config),
        overrides: sfop::Overrides,
    ) -> Result<Self> {
        let built = built_plugins()?;
        let plugins = tempfile::tempdir()?;
        let data = tempfile::tempdir()?;
        for package in &packages {
            package.write(plugins.path(), &built)?;
        }
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            ops_listen: "127.0.0.1:0".parse()?,
            plugins: plugins.path().to_owned(),
            data_dir: data.path().to_owned(),
            // Tests of the data plane load plugins that misbehave on
            // purpose; the testbed-gated path has its own tests.
            management: sfop::config::ManagementSection {
                bootstrap: sfop::Bootstrap::Trusted,
                ..Default::default()
            },
            ..Config::default()
        };
        configure(&mut config);
        let platform = sfop::start_with(config, overrides).await?;
        Ok(Self {
            platform,
            _plugins: plugins,
            _data: data,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    /// The load error of package folder `name`, if it was refused.
    pub fn refusal(&self, name: &str) -> Option<String> {
        self.platform
            .packages
            .iter()
            .find_map(|p| match &p.outcome {
                sfop::LoadOutcome::Refused { error } if p.dir.ends_with(name) => {
                    Some(error.clone())
                }
                _ => None,
            })
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        send(self.addr(), "GET", path, &[], Vec::new()).await
    }

    /// GET on the ops listener.
    pub async fn ops(&self, path: &str) -> Result<Reply> {
        send(self.platform.ops_addr, "GET", path, &[], Vec::new()).await
    }

    /// The platform's data dir (kept for a restart).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// Stops the platform and returns its temp dirs, for a restart over them.
    pub async fn stop_keeping_dirs(self) -> Result<(TempDir, TempDir)> {
        self.platform.stop().await?;
        Ok((self._plugins, self._data))
    }

    /// Starts again over the dirs of a stopped platform.
    pub async fn restart(dirs: (TempDir, TempDir)) -> Result<Self> {
        Self::restart_with(dirs, |_| {}).await
    }

    /// [`TestPlatform::restart`] with `configure` applied to its config.
    pub async fn restart_with(
        dirs: (TempDir, TempDir),
        configure: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        Self::restart_overriding(dirs, configure, sfop::Overrides::default()).await
    }

    /// [`TestPlatform::restart_with`], with parts of the platform replaced.
    pub async fn restart_overriding(
        dirs: (TempDir, TempDir),
        configure: impl FnOnce(&mut Config),
        overrides: sfop::Overrides,
    ) -> Result<Self> {
        let (plugins, data) = dirs;
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            ops_listen: "127.0.0.1:0".parse()?,
            plugins: plugins.path().to_owned(),
            data_dir: data.path().to_owned(),
            tls: sfop::config::TlsConfig {
                mode: TlsMode::Off,
                ..Default::default()
            },
            auth: sfop::config::AuthSection {
                mode: AuthMode::Off,
                ..Default::default()
            },
            management: sfop::config::ManagementSection {
                bootstrap: sfop::Bootstrap::Trusted,
                ..Default::default()
            },
            ..Config::default()
        };
        configure(&mut config);
        let platform = sfop::start_with(config, overrides).await?;
        Ok(Self {
            platform,
            _plugins: plugins,
            _data: data,
        })
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Reply> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
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

/// Asserts the common envelope: `api_tran_id` (also in the header) and a
/// 17-digit `api_tran_dtm`. Returns `rsp_code`.
pub fn assert_envelope(reply: &Reply) -> Result<String> {
    let body = reply.json()?;
    let id = body["api_tran_id"]
        .as_str()
        .context("api_tran_id missing")?;
    assert!(!id.is_empty() && id.len() <= 40, "api_tran_id {id:?}");
    assert_eq!(
        reply.header("x-api-tran-id"),
        Some(id),
        "header and body ids differ"
    );
    let dtm = body["api_tran_dtm"]
        .as_str()
        .context("api_tran_dtm missing")?;
    assert!(
        dtm.len() == 17 && dtm.bytes().all(|b| b.is_ascii_digit()),
        "api_tran_dtm {dtm:?}"
    );
    Ok(body["rsp_code"]
        .as_str()
        .context("rsp_code missing")?
        .to_owned())
}

/// The `sfop serve` binary as a child process on ephemeral ports, cleartext,
/// no authorisation, the built reference APIs, and `data` as its data dir.
/// Returns once it printed its listening line, with the API address.
pub fn spawn_serve(data: &Path) -> Result<(std::process::Child, SocketAddr)> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
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
        .arg("--plugins")
        .arg(built_plugins()?.join("api"))
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("stdout")?;
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .with_context(|| format!("no URL in {line:?}"))
        .and_then(|a| Ok(a.parse()?));
    match addr {
        Ok(addr) => Ok((child, addr)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}
