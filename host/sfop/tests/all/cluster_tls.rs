//! A real `sfop serve` node whose database is on TLS only (ADR 0029, "TLS
//! to the database"): a PostgreSQL server of the test's own with `ssl = on`,
//! a certificate for `localhost` signed by the test's CA and a pg_hba that
//! takes TCP over TLS only. With `[store] ca` the node joins and serves;
//! with another CA it refuses to start, saying why.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::cluster::status;
use crate::cluster_money::{node, pg_server};

/// A CA written to `dir/<name>.pem`; its key pair and parameters to sign with.
fn ca(dir: &Path, name: &str) -> Result<(std::path::PathBuf, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("sfop test {name}"));
    let cert = params.self_signed(&key)?;
    let file = dir.join(format!("{name}.pem"));
    std::fs::write(&file, cert.pem())?;
    Ok((file, Issuer::new(params, key)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_database_on_tls_with_store_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca_file, issuer) = ca(dir.path(), "database-ca")?;
    let (other_ca, _) = ca(dir.path(), "other-ca")?;
    let server_key = KeyPair::generate()?;
    let server_cert =
        CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&server_key, &issuer)?;
    let Some(server) = pg_server::Server::start_with(pg_server::Options {
        tls: Some((server_cert.pem(), server_key.serialize_pem())),
        tls_only: true,
    })?
    else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        ensure!(
            !ci,
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): `cargo xtask ci` \
             installs them"
        );
        eprintln!("skipped: no PostgreSQL server binaries");
        return Ok(());
    };
    // The database made over TLS too (libpq's sslrootcert in the URL).
    let admin = format!(
        "postgres://sfop@localhost:{}/postgres?sslrootcert={}",
        server.port(),
        ca_file.display()
    );
    let made = sfop_store_pg::recreate_database(&admin, "sfop_tls").await?;
    ensure!(made.contains("sslrootcert="), "{made}");
    let url = format!("postgres://sfop@localhost:{}/sfop_tls", server.port());

    // Another CA: the node refuses to start, naming the certificate.
    let (data, log) = (dir.path().join("refused"), dir.path().join("refused.log"));
    let config = format!("[store]\nca = \"{}\"\n", other_ca.display());
    let refused = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || node(&data, &log, &url, Some(&config))).await?
    };
    match refused {
        Ok(served) => {
            served.stop()?;
            bail!("a node trusting another CA joined the cluster");
        }
        Err(e) => {
            let said = format!("{e:#}");
            ensure!(
                said.contains("certificate is not signed by a CA this node trusts"),
                "{said}"
            );
            eprintln!("refused as expected: {said}");
        }
    }

    // The right CA: the node joins (schema, first snapshot, ledger seeded,
    // all through TLS: the server takes nothing else) and serves a call
    // of the demo app, registered in the cluster, by a token it issued.
    let (data, log) = (dir.path().join("a"), dir.path().join("a.log"));
    let config = format!("[store]\nca = \"{}\"\n", ca_file.display());
    let a = tokio::task::spawn_blocking(move || node(&data, &log, &url, Some(&config))).await??;
    let token = a.oob_token().await?;
    let mut conn = a.connect().await?;
    let (code, answer, _) = status(&mut conn, &token).await?;
    ensure!(
        code == 200 && answer["rsp_code"] == "A0000",
        "{code} {answer}"
    );
    let joined = std::fs::read_to_string(&a.log).context("the node's log")?;
    ensure!(joined.contains("joined the cluster"), "{joined}");
    a.stop()?;
    drop(server);
    Ok(())
}
