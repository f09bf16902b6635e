//! A PostgreSQL server of the test's own (in a temporary directory, on a
//! free port), for the test that restarts it: the shared test server keeps
//! serving the other tests meanwhile. Debian's server binaries
//! (`/usr/lib/postgresql/<n>/bin`, which `cargo xtask ci` installs); as the
//! `postgres` user when the test runs as root, since the server refuses root.
//! [`Server::start_with`] turns on TLS with a certificate of the test's.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// `-c` settings beyond port, socket folder and address.
    settings: String,
    _dir: tempfile::TempDir,
}

/// How a server of the test's own is set up.
#[derive(Debug, Default)]
pub struct Options {
    /// PEM certificate chain and private key: `ssl = on` with them.
    pub tls: Option<(String, String)>,
    /// `pg_hba.conf` accepts TCP connections over TLS only (`hostssl`).
    pub tls_only: bool,
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(bin: &Path, program: &str, args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    };
    let out = cmd
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Server {
    /// A new server, started; `None` when the server binaries are missing.
    pub fn start() -> Result<Option<Self>> {
        Self::start_with(Options::default())
    }

    /// A new server set up as `options` say, started; `None` when the
    /// server binaries are missing.
    pub fn start_with(options: Options) -> Result<Option<Self>> {
        let Some(bin) = bin_dir() else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("sfop-pg-").tempdir()?;
        if is_root() {
            let out = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .output()?;
            if !out.status.success() {
                bail!("chown: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let data = dir.path().join("data");
        let data_arg = data.to_string_lossy().into_owned();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_arg,
                "-U",
                "sfop",
                "--auth=trust",
                "--no-sync",
                "--locale=C",
            ],
        )?;
        let mut settings = String::new();
        if let Some((cert, key)) = &options.tls {
            // Beside the data folder, readable by the server's user only
            // (the server refuses a key others can read).
            let (cert_path, key_path) =
                (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert_path, cert)?;
            std::fs::write(&key_path, key)?;
            for path in [&cert_path, &key_path] {
                owned_by_server(path)?;
            }
            settings = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_path.display(),
                key_path.display()
            );
        }
        if options.tls_only {
            let hba = data.join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )?;
            owned_by_server(&hba)?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server = Self {
            bin,
            data,
            port,
            settings,
            _dir: dir,
        };
        server.pg_ctl("start")?;
        Ok(Some(server))
    }

    fn pg_ctl(&self, action: &str) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{}",
            self.port,
            self.data.display(),
            self.settings
        );
        let log = self.data.join("server.log");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                action,
            ],
        )
    }

    /// Stops the server (sessions cut) and starts it again.
    // The store's tests restart; the cluster's, which include this file,
    // stop and start with a call between.
    #[allow(dead_code)]
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Stops the server (sessions cut); [`Server::start_again`] brings it
    /// back on the same port and data.
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl("stop")
    }

    pub fn start_again(&self) -> Result<()> {
        self.pg_ctl("start")
    }

    pub fn url(&self) -> String {
        format!("postgres://sfop@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port on 127.0.0.1.
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Mode 0600, and owned by `postgres` when the server runs as that user.
fn owned_by_server(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if is_root() {
        let out = Command::new("chown").arg("postgres:").arg(path).output()?;
        if !out.status.success() {
            bail!("chown: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
    }
}
