//! The README's "Write your first API plugin", run as a bank team would type
//! it, in a copy of the project: its `sh` blocks verbatim through bash (scaffold,
//! build, testbed; then push, a CLI-issued user token and two calls), its
//! Rust block compared with the scaffolded handler that was just built, its
//! JSON block compared with what the calls answered.
//!
//! Only the launchers differ from a developer's machine, and not the code
//! they run: `cargo run -q -p sfop -- ARGS` runs this test's `sfop` binary
//! and `cargo xtask ARGS` the built `target/debug/xtask`, both from the copy
//! (xtask finds the project from where it runs), so nothing of the host is
//! rebuilt; `cargo xtask serve` is the real `sfop serve` binary started by
//! [`Served`] on an ephemeral port, with the copy's `sfop-data` as its data
//! dir, reached by the CLI through `SFOP_URL` and by curl through a
//! `connect-to` line in its config. Guests build in
//! `target/first-plugin-guest`, so only the SDK and the new crate compile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::served::Served;

/// A fenced block of the README: its language and text.
struct Block {
    lang: String,
    text: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fenced blocks of the README section titled `title`.
fn section_blocks(readme: &str, title: &str) -> Result<Vec<Block>> {
    let start = readme
        .find(&format!("\n## {title}\n"))
        .with_context(|| format!("README has no section {title:?}"))?;
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut lines = rest[..end].lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let mut text = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        blocks.push(Block {
            lang: lang.trim().to_owned(),
            text,
        });
    }
    Ok(blocks)
}

/// The project's files as git knows them (the working tree's content), not
/// its build output.
fn copy_project(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(from)
        .output()
        .context("git ls-files")?;
    ensure!(out.status.success(), "git ls-files failed");
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name)?;
        let source = from.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&source) else {
            continue; // deleted in the working tree
        };
        let target = to.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if meta.file_type().is_symlink() {
            // e.g. wit/platform@0.2.0/deps/platform@0.1.0: git keeps the link.
            let link = std::fs::read_link(&source)?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("linking {name}"))?;
        } else if meta.is_file() {
            std::fs::copy(&source, &target).with_context(|| format!("copying {name}"))?;
        }
    }
    Ok(())
}

/// `cargo` as the README's commands reach it: the two launchers, nothing else.
fn cargo_shim(dir: &Path, xtask: &Path) -> Result<()> {
    let script = format!(
        r#"#!/bin/sh
if [ "$1 $2 $3 $4 $5" = "run -q -p sfop --" ]; then
    shift 5
    exec "{sfop}" "$@"
fi
if [ "$1" = xtask ]; then
    shift
    exec "{xtask}" "$@"
fi
echo "first_plugin: the README runs 'cargo $*', which this test does not know" >&2
exit 97
"#,
        sfop = env!("CARGO_BIN_EXE_sfop"),
        xtask = xtask.display(),
    );
    let path = dir.join("cargo");
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs `script` with bash (`-eu -o pipefail`) in `dir`; its stdout.
fn bash(script: &str, dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Result<String> {
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.args(["-eu", "-o", "pipefail", "-c", script])
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running bash")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "--- {:.1} s:\n{script}--- stderr:\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        bail!(
            "the README's commands failed ({}):\n{script}--- stdout:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_plugin_commands_work_verbatim() -> Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let xtask = root.join("target/debug/xtask");
    ensure!(
        xtask.is_file(),
        "{} is not built: run `cargo xtask build-plugins` first",
        xtask.display()
    );
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let blocks = section_blocks(&readme, "Write your first API plugin")?;
    let of = |lang: &'static str| blocks.iter().filter(move |b| b.lang == lang);
    let sh: Vec<&Block> = of("sh").collect();
    let [build, live] = sh.as_slice() else {
        bail!(
            "expected two sh blocks (scaffold..testbed, push..call), found {}",
            sh.len()
        );
    };
    let rust = of("rust").next().context("no rust block")?;
    let answers = of("json").next().context("no json block of the answers")?;

    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("sfop");
    copy_project(&root, &project)?;
    let shim = tmp.path().join("bin");
    std::fs::create_dir_all(&shim)?;
    cargo_shim(&shim, &xtask)?;
    let path = std::env::join_paths(std::iter::once(shim.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let guest_target = root.join("target/first-plugin-guest");
    let base_env = [
        ("PATH", path.as_os_str()),
        // The real cargo, for what xtask and `api new` run themselves.
        ("CARGO", cargo.as_os_str()),
        ("SFOP_GUEST_TARGET_DIR", guest_target.as_os_str()),
    ];

    // Scaffold, build, testbed (its report goes under the copy's target/).
    bash(&build.text, &project, &base_env)?;
    let crate_dir = project.join("plugins/user-greeting");
    let handler = std::fs::read_to_string(crate_dir.join("src/lib.rs"))?;
    assert_eq!(
        rust.text, handler,
        "the README's handler is not the one `sfop api new` writes (and the build compiled)"
    );
    let members = std::fs::read_to_string(project.join("plugins/Cargo.toml"))?;
    assert!(members.contains("\"user-greeting\","), "{members}");
    let lock = std::fs::read_to_string(project.join("plugins/Cargo.lock"))?;
    assert!(lock.contains("name = \"user-greeting\""));
    let package = project.join("target/sfop-plugins/api/user-greeting");
    for file in ["api.wasm", "sfop.toml", "testbed.toml"] {
        assert!(package.join(file).is_file(), "{file} was not built");
    }
    assert!(
        project
            .join("target/testbed/user-greeting/attestation.json")
            .is_file()
    );

    // The platform running (`cargo xtask serve`), as a child on its own port.
    let data = project.join("sfop-data");
    let served = Served::start(&data, &tmp.path().join("serve.log"))?;
    let curl_home = tmp.path().join("curl");
    std::fs::create_dir_all(&curl_home)?;
    std::fs::write(
        curl_home.join(".curlrc"),
        format!(
            "connect-to = 127.0.0.1:8443:127.0.0.1:{}\n",
            served.addr.port()
        ),
    )?;
    let url = format!("https://127.0.0.1:{}", served.addr.port());
    let mut env = base_env.to_vec();
    env.push(("SFOP_URL", url.as_ref()));
    env.push(("CURL_HOME", curl_home.as_os_str()));
    let out = bash(&live.text, &project, &env)?;

    // Each call's answer as the README shows it ("…": any value).
    let got: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .with_context(|| format!("the calls' answers: {out}"))?;
    let shown: Vec<Value> = answers
        .text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(got.len(), shown.len(), "{out}");
    for (got, shown) in got.iter().zip(&shown) {
        let shown = shown.as_object().context("an answer is an object")?;
        let got_keys: Vec<&String> = got.as_object().context("object")?.keys().collect();
        assert_eq!(got_keys, shown.keys().collect::<Vec<_>>(), "{got}");
        for (key, value) in shown {
            if value != "…" {
                assert_eq!(&got[key], value, "{key} in {got}");
            }
        }
    }
    served.stop()?;
    eprintln!(
        "first plugin: README commands in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
