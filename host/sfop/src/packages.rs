//! Loading API packages from a folder into a route table. A package that fails
//! to load never serves: its routes (when its manifest could be read) answer
//! "unavailable", and every other package serves as usual.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sfop_core::Manifest;
use sfop_gateway::{Gateway, RouteTable};
use sfop_runtime::Runtime;

/// File names inside a package folder.
pub const MANIFEST_FILE: &str = "sfop.toml";
pub const COMPONENT_FILE: &str = "api.wasm";

/// What happened to one package folder.
#[derive(Debug, Clone)]
pub struct PackageReport {
    pub dir: PathBuf,
    pub outcome: LoadOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Serving `name@version` on its routes; `from_cache` when its native
    /// code came from the compile cache instead of a fresh compile.
    Live {
        name: String,
        version: String,
        from_cache: bool,
    },
    /// Refused; the routes listed in its manifest (if readable) are closed.
    Refused { error: String },
}

/// Loads every package folder under `dir`, in name order.
pub fn load_dir(
    runtime: &Runtime,
    gateway: &Gateway,
    mut routes: RouteTable,
    dir: &Path,
) -> anyhow::Result<(RouteTable, Vec<PackageReport>)> {
    let mut folders: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading the plugins folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();

    let mut reports = Vec::with_capacity(folders.len());
    for folder in folders {
        let outcome = load_one(runtime, gateway, &folder, &mut routes);
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
    Ok((routes, reports))
}

fn load_one(
    runtime: &Runtime,
    gateway: &Gateway,
    folder: &Path,
    routes: &mut RouteTable,
) -> LoadOutcome {
    let refused = |error: String| LoadOutcome::Refused { error };
    let manifest_path = folder.join(MANIFEST_FILE);
    let manifest = match fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))
        .and_then(|text| {
            Manifest::parse(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))
        }) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let component_path = folder.join(COMPONENT_FILE);
    let loaded = fs::read(&component_path)
        .map_err(|e| format!("{}: {e}", component_path.display()))
        .and_then(|bytes| {
            runtime
                .load(manifest.clone(), &bytes)
                .map_err(|e| format!("{}: {e}", component_path.display()))
        });
    let (target, result) = match loaded {
        Ok(api) => {
            let from_cache = api.from_cache();
            (
                gateway.live(Arc::new(api)),
                LoadOutcome::Live {
                    name: manifest.name.clone(),
                    version: manifest.version.to_string(),
                    from_cache,
                },
            )
        }
        Err(error) => (
            gateway.closed(&manifest.name, &manifest.version.to_string()),
            refused(error),
        ),
    };
    match routes.add(&manifest.routes, target) {
        Ok(()) => result,
        Err(conflict) => refused(format!("{}: {conflict}", manifest_path.display())),
    }
}
