//! `cargo xtask serve -- --nodes N`: a local cluster to try (ADR 0029): the
//! private PostgreSQL of `cargo xtask pg start` (target/pg/dev; it keeps
//! running afterwards: `cargo xtask pg stop` stops it) and N
//! `sfop serve` processes on it, node i listening on 127.0.0.1:(8443 + i)
//! with ops on 127.0.0.1:(9090 + i) and its data dir in
//! target/sfop-cluster/node<i>. Node 0 starts first (it bootstraps the
//! plugins folder into the cluster); the others get its root-key file and
//! compile cache, as an operator's image would carry them, so a token
//! issued on one node verifies on every node. Ctrl-C stops the nodes (each
//! drains; they share the terminal's process group).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, pg, run};

/// Removes `--nodes N` from `args`; `None` when absent.
pub fn take_nodes(args: &mut Vec<String>) -> Result<Option<usize>> {
    let Some(at) = args.iter().position(|a| a == "--nodes") else {
        return Ok(None);
    };
    let n = args
        .get(at + 1)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=9).contains(n))
        .context("--nodes takes a number from 1 to 9")?;
    args.drain(at..at + 2);
    Ok(Some(n))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if !target.exists() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Starts node `i` and waits for its listening line (printed through).
fn start(root: &Path, i: usize, url: &str, args: &[String]) -> Result<Child> {
    let data = root.join(format!("target/sfop-cluster/node{i}"));
    let mut child = Command::new(root.join("target/release/sfop"))
        .arg("serve")
        .arg("--plugins")
        .arg(root.join("target/sfop-plugins/api"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", 8443 + i))
        .arg("--ops-listen")
        .arg(format!("127.0.0.1:{}", 9090 + i))
        .args(args)
        .env("SFOP_STORE_URL", url)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting sfop serve")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if line.is_empty() {
        let status = child.wait()?;
        bail!("node {i} did not start ({status}); see its messages above");
    }
    print!("node {i} ({}): {line}", data.display());
    Ok(child)
}

pub fn serve(root: &Path, nodes: usize, args: &[String]) -> Result<()> {
    crate::guest::build_plugins(root, None)?;
    run(cargo(root).args(["build", "--release", "--locked", "--package", "sfop"]))?;
    let postgres = pg::Instance::start(root, "dev", false)?;
    let url = postgres.url();
    println!("cluster database: {url}");
    let first = root.join("target/sfop-cluster/node0");
    let mut children = vec![start(root, 0, &url, args)?];
    for i in 1..nodes {
        let data = root.join(format!("target/sfop-cluster/node{i}"));
        copy_dir(&first.join("keys"), &data.join("keys"))?;
        copy_dir(&first.join("compile-cache"), &data.join("compile-cache"))?;
        // Values set through the admin API open on every node only under
        // one variable key (ADR 0027): the first node's.
        std::fs::copy(first.join("variables.key"), data.join("variables.key"))?;
        // The demo app is the cluster's (node 0 registered it); its secret
        // file goes with the keys.
        let demo = first.join("demo-client.json");
        if demo.is_file() {
            std::fs::copy(&demo, data.join("demo-client.json"))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for dir in [data.clone(), data.join("keys")] {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        children.push(start(root, i, &url, args)?);
    }
    println!("{nodes} nodes up; Ctrl-C stops them (`cargo xtask pg stop` stops the database)");
    // Ctrl-C reaches the nodes too (one process group): each drains.
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait()?;
        println!("node {i} stopped: {status}");
    }
    Ok(())
}
