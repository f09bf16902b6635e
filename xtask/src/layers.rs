//! The dependency rules of the architecture, checked on `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cargo;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
}

/// Third-party crates that exactly one workspace crate may name.
const OWNED: &[(&str, &str)] = &[
    ("wasmtime", "sfop-runtime"),
    ("sled", "sfop-store"),
    ("tokio-postgres", "sfop-store-pg"),
    ("deadpool-postgres", "sfop-store-pg"),
    ("refinery", "sfop-store-pg"),
    ("biscuit-auth", "sfop-auth"),
    // The OpenTelemetry SDK and exporter (ADR 0028); the others see the
    // platform's own `Tracing`, `Parent` and `Span`.
    ("opentelemetry_sdk", "sfop-telemetry"),
    ("opentelemetry-otlp", "sfop-telemetry"),
    ("opentelemetry-http", "sfop-telemetry"),
];

/// The HTTP server stack of the platform's own endpoints (one axum router,
/// tower layers: ADR 0024) and the crates that may name it: the gateway,
/// which serves the router, and the binary, which builds it. The boxes
/// (auth, management, portal, ...) expose typed functions and typed errors,
/// so they stay usable without a web framework.
/// (`tower-service` alone is not in it: it is the trait hyper-util's client
/// is written against.)
const HTTP_STACK: &[&str] = &["axum", "axum-core", "tower", "tower-http"];
const HTTP_STACK_USERS: &[&str] = &["sfop-gateway", "sfop"];

/// Data-plane crates, which must never depend on control-plane crates.
const DATA_PLANE: &[&str] = &[
    "sfop-core",
    "sfop-runtime",
    "sfop-gateway",
    "sfop-store",
    "sfop-store-pg",
    "sfop-auth",
];
const CONTROL_PLANE_PREFIXES: &[&str] = &["sfop-management", "sfop-testbed", "sfop-portal"];

/// Control-plane crates and the crates they must not depend on: the testbed
/// judges packages for the management center and the portal, so it cannot
/// depend on either; the portal sees the platform only through its own
/// traits (`Catalog`, `Upstream`), so it can run beside the gateway or apart.
const CONTROL_PLANE_RULES: &[(&str, &[&str])] = &[
    ("sfop-testbed", &["sfop-management", "sfop-portal"]),
    (
        "sfop-portal",
        &[
            "sfop-runtime",
            "sfop-gateway",
            "sfop-vbank",
            "wasmtime",
            "sfop-management",
            "sfop-testbed",
        ],
    ),
];

pub fn check(root: &Path) -> Result<()> {
    let out = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let members: BTreeSet<&str> = meta.workspace_members.iter().map(String::as_str).collect();
    // Normal (non-dev, non-build) dependencies of each workspace crate.
    let deps: BTreeMap<&str, BTreeSet<&str>> = meta
        .packages
        .iter()
        .filter(|p| members.contains(p.id.as_str()))
        .map(|p| {
            let normal = p
                .dependencies
                .iter()
                .filter(|d| d.kind.is_none())
                .map(|d| d.name.as_str())
                .collect();
            (p.name.as_str(), normal)
        })
        .collect();

    let mut violations = Vec::new();
    for (krate, owner) in OWNED {
        for (name, uses) in &deps {
            if uses.contains(krate) && name != owner {
                violations.push(format!("{name} depends on {krate}; only {owner} may"));
            }
        }
    }
    for (name, uses) in &deps {
        for krate in HTTP_STACK {
            if uses.contains(krate) && !HTTP_STACK_USERS.contains(name) {
                violations.push(format!(
                    "{name} depends on {krate}; only {} may (ADR 0024)",
                    HTTP_STACK_USERS.join(" and ")
                ));
            }
        }
    }
    for plane in DATA_PLANE {
        for dep in deps.get(plane).into_iter().flatten() {
            if CONTROL_PLANE_PREFIXES.iter().any(|p| dep.starts_with(p)) {
                violations.push(format!(
                    "data-plane crate {plane} depends on control-plane crate {dep}"
                ));
            }
        }
    }
    for (krate, forbidden) in CONTROL_PLANE_RULES {
        for dep in deps.get(krate).into_iter().flatten() {
            if forbidden.iter().any(|p| dep.starts_with(p)) {
                violations.push(format!("{krate} depends on {dep}; it must not"));
            }
        }
    }
    if !violations.is_empty() {
        bail!("dependency rules broken:\n  {}", violations.join("\n  "));
    }
    eprintln!("layers: {} crates follow the dependency rules", deps.len());
    Ok(())
}
