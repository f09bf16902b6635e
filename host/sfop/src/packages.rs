//! The plugins folder at start: every package in it is offered to the
//! management center, which registers it and makes it live when its API has
//! nothing newer live (through the testbed, unless the operator trusts the
//! folder). A package that fails never serves: its routes (when its manifest
//! could be read) answer "unavailable", and every other package serves.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sfop_management::{Management, Package};

use crate::plane::EmbeddedPlane;

/// What happened to one package folder.
#[derive(Debug, Clone)]
pub struct PackageReport {
    pub dir: PathBuf,
    pub outcome: LoadOutcome,
}

/// What happened to one package folder: live (with the version that serves,
/// which is newer when the registry already had one), or refused and why.
pub use sfop_management::Bootstrapped as LoadOutcome;

/// Offers every package folder under `dir`, in name order.
pub async fn bootstrap_dir(
    management: &Management<EmbeddedPlane>,
    dir: &Path,
    trusted: bool,
) -> anyhow::Result<Vec<PackageReport>> {
    let mut folders: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading the plugins folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();

    let mut reports = Vec::with_capacity(folders.len());
    for folder in folders {
        let outcome = match Package::read_dir(&folder) {
            Ok(package) => management.bootstrap(package, trusted).await,
            Err(e) => LoadOutcome::Refused {
                error: e.to_string(),
            },
        };
        match &outcome {
            LoadOutcome::Live {
                name,
                version,
                from_cache,
            } => {
                tracing::info!(api = %name, %version, from_cache, dir = %folder.display(), "API live");
            }
            LoadOutcome::Refused { error } => {
                tracing::error!(dir = %folder.display(), "API package refused: {error}");
            }
        }
        reports.push(PackageReport {
            dir: folder,
            outcome,
        });
    }
    Ok(reports)
}
