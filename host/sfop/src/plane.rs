//! The embedded data plane as the management center drives it: the Wasm
//! runtime compiles releases, and the gateway's route table is rebuilt from
//! the platform's own endpoints plus every published API, then swapped in.

use std::sync::Arc;

use sfop_core::Manifest;
use sfop_core::outbound::SetValues;
use sfop_gateway::{ApiRoute, ApiStats, Canary, Gateway, Release, RouteTable, StickyKey, Target};
use sfop_management::{DataPlane, Health, PlaneError, Published, Sticky, Version};
use sfop_runtime::Runtime;

/// The runtime and gateway of this process.
#[derive(Debug)]
pub struct EmbeddedPlane {
    runtime: Runtime,
    gateway: Arc<Gateway>,
    /// The platform's own endpoints (OAuth, admin, portal), mounted first so
    /// that no API can take their routes.
    base: RouteTable,
}

impl EmbeddedPlane {
    pub fn new(runtime: Runtime, gateway: Arc<Gateway>, base: RouteTable) -> Self {
        gateway.metrics().count_loads(runtime.loads());
        Self {
            runtime,
            gateway,
            base,
        }
    }
}

impl DataPlane for EmbeddedPlane {
    type Release = Release;
    type Table = RouteTable;

    /// Every load error names what is wrong with the package.
    fn load(
        &self,
        manifest: Manifest,
        component: &[u8],
        set: &SetValues,
    ) -> Result<Release, PlaneError> {
        let api = self
            .runtime
            .load_with(manifest, component, set)
            .map_err(|e| PlaneError::Rejected(e.into()))?;
        Ok(self.gateway.release(Arc::new(api)))
    }

    fn compiled_from_cache(&self, release: &Release) -> bool {
        release.api.from_cache()
    }

    /// A route two APIs claim is the newcomer's to change.
    fn build(&self, apis: &[Published<Release>]) -> Result<RouteTable, PlaneError> {
        let mut table = self.base.clone();
        for api in apis {
            let (routes, target) = match api {
                Published::Serving {
                    stable,
                    canary,
                    sunset,
                } => (
                    &stable.api.manifest().routes,
                    Target::Api(Arc::new(ApiRoute {
                        stable: stable.clone(),
                        canary: canary.as_ref().map(|c| Canary {
                            release: c.release.clone(),
                            percent: c.percent,
                            sticky: match c.sticky {
                                Sticky::Client => StickyKey::Client,
                                Sticky::Account => StickyKey::Account,
                            },
                        }),
                        sunset: sunset.clone(),
                    })),
                ),
                Published::Closed { manifest } => (
                    &manifest.routes,
                    self.gateway
                        .closed(&manifest.name, &manifest.version.to_string()),
                ),
                Published::Retired { manifest, sunset } => (
                    &manifest.routes,
                    Target::Retired {
                        api: manifest.name.clone(),
                        sunset: sunset.clone(),
                    },
                ),
            };
            table
                .add(routes, target)
                .map_err(|e| PlaneError::Rejected(e.into()))?;
        }
        Ok(table)
    }

    fn swap(&self, table: RouteTable) {
        self.gateway.swap_routes(table);
    }

    fn health(&self, release: &Release) -> Health {
        Health {
            quarantined: release
                .api
                .health()
                .quarantined
                .map(sfop_runtime::FaultKind::as_str),
            ..health(release.stats())
        }
    }

    fn recorded(&self, name: &str, version: &Version) -> Option<Health> {
        // The gateway keeps each version's counters for the process's life.
        self.gateway
            .metrics()
            .existing(name, &version.to_string())
            .map(|stats| health(&stats))
    }
}

fn health(stats: &ApiStats) -> Health {
    Health {
        requests: stats.requests(),
        // The release's own faults (sfop_core::Outcome::is_release_fault).
        errors: stats.release_faults(),
        quarantined: None,
    }
}
