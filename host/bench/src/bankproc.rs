//! The participant bank of B3r/B4r: `sfop bank serve` as a child process
//! (HTTPS with its self-signed certificate, its own data dir, an
//! ephemeral port), which the gateway reaches through the REST connector
//! (`[bank] mode = "rest"`, docs/bank-connector.md).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long the bank process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What `sfop bank serve` prints once it listens.
const LISTENING: &str = "sfop bank listening on ";

/// A running `sfop bank serve`; killed when dropped.
#[derive(Debug)]
pub struct BankProcess {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The certificate it serves (`DATA_DIR/tls/cert.pem`), for `ca`.
    pub cert: PathBuf,
}

impl BankProcess {
    /// Starts `sfop bank serve` on `127.0.0.1:0` with its store in
    /// `data_dir`, with `workers` tokio workers, and waits until it listens.
    pub fn start(sfop: &Path, data_dir: &Path, workers: usize) -> Result<Self> {
        if !sfop.is_file() {
            bail!(
                "B3r/B4r run the bank as `sfop bank serve`, and {} does not exist: build it \
                 (`cargo build --release -p sfop`; `cargo xtask bench` does), pass --sfop PATH, \
                 or leave the rows out with --only",
                sfop.display()
            );
        }
        let mut child = Command::new(sfop)
            .args([
                "bank",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls",
                "self-signed",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("TOKIO_WORKER_THREADS", workers.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} bank serve", sfop.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the bank process has no stdout")?;
        // Its first line says where it listens; read on a thread so that a
        // silent child cannot hold the bench past the timeout.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("bench-bank-out".into())
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let first = lines.next();
                let _ = tx.send(first);
                // Drain the rest so the child never blocks on a full pipe.
                for _ in lines {}
            })
            .context("starting the bank process reader")?;
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => {
                let _ = child.kill();
                return Err(e).context("reading the bank process's stdout");
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!(
                    "`sfop bank serve` did not say where it listens within {START_TIMEOUT:?} \
                     (exit status: {status:?})"
                );
            }
        };
        let Some(url) = line.strip_prefix(LISTENING) else {
            let _ = child.kill();
            bail!("`sfop bank serve` said {line:?}, not {LISTENING:?}...");
        };
        if !url.starts_with("https://127.0.0.1:") {
            let _ = child.kill();
            bail!("`sfop bank serve` listens on {url}, not https on loopback");
        }
        Ok(Self {
            url: url.to_owned(),
            cert: data_dir.join("tls/cert.pem"),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BankProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
