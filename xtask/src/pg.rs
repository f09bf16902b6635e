//! A private PostgreSQL for the tests and for a local cluster: Debian's
//! server binaries (installed when missing), a data directory under
//! `target/pg/`, a free loopback port, run as a non-root user (the server
//! refuses root), stopped by the guard that started it. Idempotent: a
//! running instance of the same data directory is reused.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The environment variable through which the tests receive the server's
/// URL (a superuser on the `postgres` database; each test makes its own).
pub const URL_VAR: &str = "SFOP_TEST_PG_URL";

/// The database superuser the instance is initialised with.
const SUPERUSER: &str = "sfop";
/// The system user the server runs as when xtask runs as root.
const SYSTEM_USER: &str = "postgres";

/// A running private instance.
#[derive(Debug)]
pub struct Instance {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Whether this guard started it (and so stops it when dropped).
    started: bool,
}

impl Instance {
    /// The URL the tests connect to.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the instance kept in `root/target/pg/<name>` (creating it on
    /// first use), or finds it already running. `stop_on_drop`: whether the
    /// returned guard stops it when dropped.
    pub fn start(root: &Path, name: &str, stop_on_drop: bool) -> Result<Self> {
        let bin = server_bin_dir()?;
        let base = root.join("target/pg").join(name);
        let data = base.join("data");
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let as_root = is_root();
        if as_root {
            // The server runs as `postgres`: it must reach its own folder.
            ensure_system_user()?;
            open_path_to(&base)?;
            chown(&base)?;
        }
        if !data.join("PG_VERSION").is_file() {
            if data.exists() {
                fs::remove_dir_all(&data)
                    .with_context(|| format!("removing a half-made {}", data.display()))?;
            }
            let mut initdb = server_command(&bin, "initdb", as_root);
            initdb
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
                .args(["--locale=C"]);
            run_quiet(&mut initdb).context("initdb")?;
        }
        let port_file = base.join("port");
        let mut instance = Instance {
            bin,
            data,
            port: 0,
            started: false,
        };
        if instance.running(as_root)?
            && let Some(port) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
        {
            instance.port = port;
            // Left running by an earlier run that did not end cleanly: this
            // guard stops it all the same.
            instance.started = stop_on_drop;
            eprintln!("postgres: reusing the instance on port {port}");
            return Ok(instance);
        }
        instance.port = free_port()?;
        fs::write(&port_file, instance.port.to_string())?;
        let log = base.join("server.log");
        if as_root && log.exists() {
            chown(&log)?;
        }
        // Tests only: no fsync (a crash of the machine loses the test data,
        // which no test outlives); the socket in the data dir, not /run.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            instance.port,
            base.display()
        );
        let mut pg_ctl = server_command(&instance.bin, "pg_ctl", as_root);
        pg_ctl
            .arg("-D")
            .arg(&instance.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        run_quiet(&mut pg_ctl)
            .with_context(|| format!("starting PostgreSQL (its log: {})", log.display()))?;
        instance.started = stop_on_drop;
        eprintln!(
            "postgres: started on port {} ({})",
            instance.port,
            instance.data.display()
        );
        Ok(instance)
    }

    fn running(&self, as_root: bool) -> Result<bool> {
        let mut status = server_command(&self.bin, "pg_ctl", as_root);
        status.arg("-D").arg(&self.data).arg("status");
        let out = status.output().context("pg_ctl status")?;
        Ok(out.status.success())
    }

    /// Stops the instance (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) -> Result<()> {
        self.started = false;
        stop_data_dir(&self.bin, &self.data)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.started
            && let Err(e) = self.stop()
        {
            eprintln!("postgres: stopping {} failed: {e:#}", self.data.display());
        }
    }
}

/// Stops the instance in `root/target/pg/<name>` if it runs.
pub fn stop(root: &Path, name: &str) -> Result<()> {
    let bin = server_bin_dir()?;
    let data = root.join("target/pg").join(name).join("data");
    if !data.join("PG_VERSION").is_file() {
        eprintln!("postgres: no instance at {}", data.display());
        return Ok(());
    }
    stop_data_dir(&bin, &data)
}

fn stop_data_dir(bin: &Path, data: &Path) -> Result<()> {
    let as_root = is_root();
    let mut status = server_command(bin, "pg_ctl", as_root);
    status.arg("-D").arg(data).arg("status");
    if !status.output().context("pg_ctl status")?.status.success() {
        return Ok(());
    }
    let mut pg_ctl = server_command(bin, "pg_ctl", as_root);
    pg_ctl
        .arg("-D")
        .arg(data)
        .args(["-m", "fast", "-w", "-t", "60", "stop"]);
    run_quiet(&mut pg_ctl).context("stopping PostgreSQL")?;
    eprintln!("postgres: stopped ({})", data.display());
    Ok(())
}

/// The directory of Debian's server binaries (the highest version), after
/// installing the `postgresql` package when none is there.
fn server_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = find_bin_dir() {
        return Ok(dir);
    }
    if !is_root() {
        bail!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb); \
             install Debian's package `postgresql` (sudo apt-get install -y postgresql) \
             or run as root to have it installed"
        );
    }
    eprintln!("postgres: installing Debian's postgresql package");
    let started = std::time::Instant::now();
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_quiet(&mut cmd)
    };
    apt(&["update", "-q"])?;
    apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
    ])?;
    eprintln!(
        "postgres: installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    find_bin_dir().context("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb")
}

fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, dir)| dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A server program, run as `postgres` when we are root.
fn server_command(bin: &Path, program: &str, as_root: bool) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SYSTEM_USER, "--"]).arg(bin.join(program));
        cmd
    } else {
        Command::new(bin.join(program))
    }
}

fn ensure_system_user() -> Result<()> {
    let exists = Command::new("id")
        .arg(SYSTEM_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run_quiet(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ]))
        .context("creating the postgres system user")?;
    }
    Ok(())
}

/// Lets other users traverse every folder above `dir` (the server, running
/// as `postgres`, must reach its data directory under the checkout).
fn open_path_to(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                .with_context(|| format!("letting the server traverse {}", ancestor.display()))?;
        }
    }
    Ok(())
}

fn chown(path: &Path) -> Result<()> {
    run_quiet(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{SYSTEM_USER}:"))
            .arg(path),
    )
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
