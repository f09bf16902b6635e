//! The Wasm guest toolchain: set-up with a fallback, and building every
//! plugin crate into a validated component.
//!
//! Guests are built for `wasm32-unknown-unknown` and turned into components
//! with `wit-component`, so a plugin imports nothing but the `sfop:platform`
//! capabilities it uses (see docs/adr/0002-guest-target.md).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{cargo, run, step};

pub const TARGET: &str = "wasm32-unknown-unknown";

/// Debian's fallback toolchain (see shared notes): rustc-web with std built
/// from rust-web-src, linked by LLVM's wasm-ld.
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-22"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_WASM_LD: &str = "/usr/lib/llvm-22/bin/wasm-ld";

/// Set `SFOP_GUEST_TOOLCHAIN=debian` to force the fallback route (to test it).
const FORCE_ENV: &str = "SFOP_GUEST_TOOLCHAIN";

/// Which toolchain builds the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's prebuilt std for the target.
    Rustup,
    /// Debian's rustc-web building std from source.
    Debian,
}

/// Makes the guest target available; quiet when it already is.
pub fn setup(_root: &Path) -> Result<Toolchain> {
    let forced_debian = std::env::var(FORCE_ENV).is_ok_and(|v| v == "debian");
    if !forced_debian {
        if rustup_has_target() {
            return Ok(Toolchain::Rustup);
        }
        eprintln!("setup: installing the {TARGET} target with rustup");
        match rustup_add_target() {
            Ok(()) => return Ok(Toolchain::Rustup),
            Err(e) => eprintln!(
                "setup: rustup could not install {TARGET} ({e:#}); \
                 falling back to Debian's rustc-web"
            ),
        }
    }
    if let Ok(()) = debian_ready() {
        return Ok(Toolchain::Debian);
    }
    eprintln!(
        "setup: installing Debian packages {}",
        DEBIAN_PACKAGES.join(" ")
    );
    let installed = apt_install(DEBIAN_PACKAGES);
    match (installed, debian_ready()) {
        (_, Ok(())) => Ok(Toolchain::Debian),
        (Err(apt), Err(missing)) => bail!(
            "no Wasm guest toolchain: rustup could not add {TARGET}, and the \
             Debian fallback failed: {apt:#}; still missing: {missing}"
        ),
        (Ok(()), Err(missing)) => bail!(
            "no Wasm guest toolchain: rustup could not add {TARGET}, and after \
             installing {} this is still missing: {missing}",
            DEBIAN_PACKAGES.join(" ")
        ),
    }
}

fn rustup_has_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
        })
}

fn rustup_add_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "add", TARGET])
        .output()
        .context("rustup is not on PATH")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `Ok` when every piece of the Debian route is present, else what is missing.
fn debian_ready() -> std::result::Result<(), String> {
    let missing: Vec<&str> = [DEBIAN_RUSTC, DEBIAN_CARGO, DEBIAN_RUST_SRC, DEBIAN_WASM_LD]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    let quiet = |cmd: &mut Command| -> Result<()> {
        let out = cmd
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    quiet(Command::new("apt-get").args(["update", "-qq"]))?;
    quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages),
    )
}

/// Overrides the guest target dir (default `plugins/target`), e.g. to share
/// compiled dependencies between copies of the project.
const TARGET_DIR_ENV: &str = "SFOP_GUEST_TARGET_DIR";

impl Toolchain {
    fn target_dir(self, root: &Path) -> PathBuf {
        let base = std::env::var_os(TARGET_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| root.join("plugins/target"), PathBuf::from);
        match self {
            Toolchain::Rustup => base,
            // std built from source: keep it apart from rustup's artefacts.
            Toolchain::Debian => base.join("debian"),
        }
    }

    /// `cargo <subcommand>` for the guest workspace with this toolchain.
    fn cargo(self, root: &Path, subcommand: &str) -> Command {
        let mut cmd = match self {
            Toolchain::Rustup => cargo(root),
            Toolchain::Debian => {
                let mut cmd = Command::new(DEBIAN_CARGO);
                cmd.current_dir(root)
                    .env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTDOC", "/usr/bin/rustdoc")
                    .env("RUSTC_BOOTSTRAP", "1");
                cmd
            }
        };
        cmd.arg(subcommand)
            .args(["--release", "--target", TARGET])
            .arg("--manifest-path")
            .arg(root.join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target_dir(root));
        if locked(root) {
            cmd.arg("--locked");
        }
        if self == Toolchain::Debian {
            cmd.arg("-Zbuild-std=std,panic_abort")
                .arg("--config")
                .arg(format!("target.{TARGET}.linker=\"{DEBIAN_WASM_LD}\""));
        }
        cmd
    }

    /// Lints the guest crates for the Wasm target.
    pub fn clippy(self, root: &Path) -> Result<()> {
        if self == Toolchain::Debian {
            eprintln!("clippy: skipped for guests (Debian's rustc-web ships no clippy)");
            return Ok(());
        }
        run(self.cargo(root, "clippy").args([
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    }
}

/// Whether cargo may not touch plugins/Cargo.lock: always in CI (`CI` set,
/// not `false` or `0`), so a lock file that lags behind fails the build;
/// elsewhere only when the lock file already lists every member, so that a
/// crate just added to the workspace builds and is added to the lock file.
fn locked(root: &Path) -> bool {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if in_ci {
        return true;
    }
    let lock = fs::read_to_string(root.join("plugins/Cargo.lock")).unwrap_or_default();
    let listed = lock_packages(&lock);
    match members(root) {
        Ok(members) => {
            let missing: Vec<&String> = members.iter().filter(|m| !listed.contains(m)).collect();
            if missing.is_empty() {
                return true;
            }
            eprintln!(
                "plugins/Cargo.lock does not list {} yet: building without --locked, \
                 cargo adds it (commit plugins/Cargo.lock)",
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            false
        }
        // cargo itself will say what is wrong with the workspace.
        Err(_) => true,
    }
}

/// The package names a lock file lists.
fn lock_packages(lock: &str) -> Vec<String> {
    lock.lines()
        .filter_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_owned())
        .collect()
}

/// The guest workspace's members (names), without resolving dependencies.
fn members(root: &Path) -> Result<Vec<String>> {
    Ok(metadata(root)?
        .packages
        .into_iter()
        .map(|p| p.name)
        .collect())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// One plugin crate: a `cdylib` with an `sfop.toml` manifest beside it.
struct Plugin {
    crate_name: String,
    lib_name: String,
    dir: PathBuf,
    group: &'static str,
}

/// Builds all plugin crates and writes, for each,
/// `target/sfop-plugins/<group>/<dir name>/{api.wasm, sfop.toml}` (and the
/// crate's `testbed.toml`, when it has one), where the
/// group is `api` for reference APIs and `test` for crates under plugins/tests.
/// Returns the output root.
pub fn build_plugins(root: &Path, package: Option<&str>) -> Result<PathBuf> {
    let toolchain = setup(root)?;
    let mut plugins = plugin_crates(root)?;
    if let Some(name) = package {
        plugins.retain(|p| p.crate_name == name);
        if plugins.is_empty() {
            bail!("no plugin crate {name} in plugins/Cargo.toml (a member with an sfop.toml)");
        }
    }
    step(&format!(
        "building plugins ({TARGET}, {toolchain:?} toolchain)"
    ));
    let mut build = toolchain.cargo(root, "build");
    match package {
        Some(name) => build.args(["--package", name]),
        None => build.arg("--workspace"),
    };
    run(&mut build)?;

    let out_root = root.join("target/sfop-plugins");
    let mut written = 0;
    for plugin in &plugins {
        let module = toolchain
            .target_dir(root)
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", plugin.lib_name));
        let manifest = plugin.dir.join("sfop.toml");
        let dir_name = plugin
            .dir
            .file_name()
            .context("plugin crate has no directory name")?;
        let out = out_root.join(plugin.group).join(dir_name);
        let component = out.join("api.wasm");
        let out_manifest = out.join("sfop.toml");
        // The package's own testbed cases travel with it (testbed/README.md).
        let cases = plugin.dir.join("testbed.toml");
        let out_cases = out.join("testbed.toml");
        let cases_fresh = if cases.is_file() {
            is_fresh(&out_cases, &[&cases])
        } else {
            !out_cases.exists()
        };
        if is_fresh(&component, &[&module]) && is_fresh(&out_manifest, &[&manifest]) && cases_fresh
        {
            continue;
        }
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let bytes = encode_component(&module)
            .with_context(|| format!("plugin crate {}", plugin.crate_name))?;
        fs::write(&component, bytes).with_context(|| format!("writing {}", component.display()))?;
        fs::copy(&manifest, &out_manifest)
            .with_context(|| format!("copying {}", manifest.display()))?;
        if cases.is_file() {
            fs::copy(&cases, &out_cases).with_context(|| format!("copying {}", cases.display()))?;
        } else if out_cases.exists() {
            fs::remove_file(&out_cases)
                .with_context(|| format!("removing {}", out_cases.display()))?;
        }
        written += 1;
    }
    eprintln!(
        "plugins: {} components in {} ({written} rebuilt)",
        plugins.len(),
        out_root.display()
    );
    Ok(out_root)
}

/// `cargo metadata --no-deps` of the guest workspace (reads no lock file).
fn metadata(root: &Path) -> Result<Metadata> {
    let out = cargo(root)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("plugins/Cargo.toml"))
        .output()
        .context("running cargo metadata on plugins/")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

fn plugin_crates(root: &Path) -> Result<Vec<Plugin>> {
    let meta = metadata(root)?;
    let tests_dir = root.join("plugins/tests");
    let mut plugins = Vec::new();
    for package in meta.packages {
        let Some(lib) = package
            .targets
            .iter()
            .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        else {
            continue; // the SDK and other libraries
        };
        let dir = package
            .manifest_path
            .parent()
            .context("manifest path has no parent")?
            .to_path_buf();
        if !dir.join("sfop.toml").is_file() {
            bail!(
                "plugin crate {} has no sfop.toml manifest in {}",
                package.name,
                dir.display()
            );
        }
        plugins.push(Plugin {
            lib_name: lib.name.replace('-', "_"),
            group: if dir.starts_with(&tests_dir) {
                "test"
            } else {
                "api"
            },
            crate_name: package.name,
            dir,
        });
    }
    Ok(plugins)
}

/// Wraps a core module (with the component-type section wit-bindgen embeds)
/// into a component, and validates the result.
fn encode_component(module: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .context("not a module built with wit-bindgen")?
        .validate(true)
        .encode()
        .context("encoding the component")
}

fn is_fresh(output: &Path, inputs: &[&Path]) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(out) = modified(output) else {
        return false;
    };
    inputs
        .iter()
        .all(|i| modified(i).is_some_and(|t: SystemTime| t <= out))
}
