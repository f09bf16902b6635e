//! TLS to the database (ADR 0029, "TLS to the database"), through the real
//! path: a server of the test's own with `ssl = on` and a certificate the
//! test made, reached by `Cluster` (pool and feed) over rustls. A node
//! trusts the CA it is given and no other, checks the host name unless told
//! `verify-ca`, and never falls back to plaintext when it asks for TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sfop_store_pg::{Cluster, Error, Feed};

use crate::server::{Options, Server};
use crate::{settings, until};

/// A server of the test's own, or `None` (skip) without the binaries
/// outside CI.
fn server(options: Options) -> Result<Option<Server>> {
    let started = Server::start_with(options)?;
    if started.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            bail!(
                "PostgreSQL's server binaries are missing under CI (`cargo xtask ci` installs them)"
            );
        }
        eprintln!("skipped: no /usr/lib/postgresql/*/bin/initdb");
    }
    Ok(started)
}

/// A CA (its certificate written to `dir/<name>.pem`) and, when `server_name`
/// is given, a server certificate and key it signed for that name.
struct Pki {
    ca_file: PathBuf,
    server: Option<(String, String)>,
}

fn pki(dir: &Path, name: &str, server_name: Option<&str>) -> Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("sfop test {name}"));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_file = dir.join(format!("{name}.pem"));
    std::fs::write(&ca_file, ca_cert.pem())?;
    let server = match server_name {
        Some(host) => {
            let key = KeyPair::generate()?;
            let params = CertificateParams::new(vec![host.to_owned()])?;
            let cert = params.signed_by(&key, &Issuer::new(ca_params, ca_key))?;
            Some((cert.pem(), key.serialize_pem()))
        }
        None => None,
    };
    Ok(Pki { ca_file, server })
}

/// What a refused connection said, or a failure when it was not refused.
fn refused(outcome: sfop_store_pg::Result<Cluster>) -> Result<Error> {
    match outcome {
        Ok(_) => bail!("connected where it must be refused"),
        Err(e) => Ok(e),
    }
}

/// The server's certificate names `localhost`, signed by the test's CA;
/// its pg_hba takes TCP over TLS only (`hostssl`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_its_database_over_tls_and_trusts_only_its_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let right = pki(dir.path(), "database-ca", Some("localhost"))?;
    let wrong = pki(dir.path(), "other-ca", None)?;
    let Some(server) = server(Options {
        tls: right.server.clone(),
        tls_only: true,
    })?
    else {
        return Ok(());
    };
    let by_name = format!("postgres://sfop@localhost:{}/postgres", server.port());
    let by_address = format!("postgres://sfop@127.0.0.1:{}/postgres", server.port());

    // The right CA: the pool connects, migrates, answers; the feed's LISTEN
    // connection, TLS too (the server takes nothing else), follows.
    let node = Cluster::connect_with_ca(&by_name, Some(&right.ca_file), 2).await?;
    assert_eq!(node.config_version().await?, 0);
    let feed = Feed::start(&node, settings(1000)).await?;
    until(Duration::from_secs(10), || feed.connected()).await?;
    // The same CA named in the URL (libpq's sslrootcert).
    let in_url = format!(
        "{by_name}?sslmode=verify-full&sslrootcert={}",
        right.ca_file.display()
    );
    assert_eq!(
        Cluster::connect(&in_url, 1).await?.config_version().await?,
        0
    );

    // Another CA: refused, the certificate named as the cause.
    let e = refused(Cluster::connect_with_ca(&by_name, Some(&wrong.ca_file), 1).await)?;
    let message = e.to_string();
    assert!(
        matches!(e, Error::Tls(_))
            && message.contains("certificate is not signed by a CA this node trusts")
            && message.contains("UnknownIssuer"),
        "{message}"
    );
    // sslmode=require without a CA: the system's roots, which do not hold
    // the test's CA: refused as well (require is not "any certificate").
    let e = refused(Cluster::connect(&format!("{by_name}?sslmode=require"), 1).await)?;
    assert!(
        matches!(&e, Error::Tls(m) if m.contains("not signed")),
        "{e}"
    );

    // A host name the certificate does not carry: refused under
    // verify-full (the default with a CA) ...
    let e = refused(Cluster::connect_with_ca(&by_address, Some(&right.ca_file), 1).await)?;
    let message = e.to_string();
    assert!(
        matches!(e, Error::Tls(_))
            && message.contains("certificate is for another host name")
            && message.contains("127.0.0.1"),
        "{message}"
    );
    // ... accepted under verify-ca, which checks the chain only ...
    let chain_only = format!("{by_address}?sslmode=verify-ca");
    let node_ca = Cluster::connect_with_ca(&chain_only, Some(&right.ca_file), 1).await?;
    assert_eq!(node_ca.config_version().await?, 0);
    // ... whose chain check still holds.
    let e = refused(Cluster::connect_with_ca(&chain_only, Some(&wrong.ca_file), 1).await)?;
    assert!(
        matches!(&e, Error::Tls(m) if m.contains("UnknownIssuer")),
        "{e}"
    );

    // Plaintext, as a node without TLS settings speaks: the server refuses.
    let e = refused(Cluster::connect(&by_name, 1).await)?;
    let said = match &e {
        Error::Database(db) => db.as_db_error().map(|d| d.message().to_owned()),
        _ => None,
    };
    assert!(
        said.as_deref()
            .is_some_and(|m| m.contains("pg_hba.conf") && m.contains("no encryption")),
        "plaintext was not refused by the server for the reason expected: {e:?}"
    );

    // A CA file that holds no certificate: said so, naming the file.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n")?;
    let e = refused(Cluster::connect_with_ca(&by_name, Some(&empty), 1).await)?;
    assert!(
        matches!(&e, Error::Tls(m) if m.contains("holds no PEM certificate") && m.contains("empty.pem")),
        "{e}"
    );
    drop(feed);
    Ok(())
}

/// A server with `ssl = off`: a node that asks for TLS is refused, never
/// sent in plaintext; `prefer` (no CA) falls back, as it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_when_tls_is_required() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = pki(dir.path(), "database-ca", None)?;
    let Some(server) = server(Options::default())? else {
        return Ok(());
    };
    let url = server.url();
    for (what, outcome) in [
        (
            "sslmode=require",
            Cluster::connect(&format!("{url}?sslmode=require"), 1).await,
        ),
        (
            "sslmode=verify-full",
            Cluster::connect(&format!("{url}?sslmode=verify-full"), 1).await,
        ),
        (
            "store.ca",
            Cluster::connect_with_ca(&url, Some(&ca.ca_file), 1).await,
        ),
    ] {
        let e = refused(outcome)?;
        assert!(
            matches!(&e, Error::Tls(m) if m.contains("does not do TLS") && m.contains("never sent in plaintext")),
            "{what}: {e}"
        );
    }
    let preferred = Cluster::connect(&format!("{url}?sslmode=prefer"), 1).await?;
    assert_eq!(preferred.config_version().await?, 0);
    // A CA with a mode that would fall back: refused before connecting.
    let e = refused(
        Cluster::connect_with_ca(&format!("{url}?sslmode=prefer"), Some(&ca.ca_file), 1).await,
    )?;
    assert!(
        matches!(&e, Error::Url(m) if m.contains("fall back to plaintext")),
        "{e}"
    );
    Ok(())
}
