//! The route table: `METHOD path` to the API release that serves it. The
//! gateway holds it behind an atomic pointer, so a new table replaces the old
//! one while requests are in flight; each request keeps the release it started on.

use std::collections::HashMap;
use std::sync::Arc;

use sfop_runtime::Api;

use crate::authz::Endpoint;
use crate::metrics::ApiStats;

/// A loaded release of an API, with its counters.
#[derive(Debug, Clone)]
pub struct Release {
    pub api: Arc<Api>,
    pub(crate) stats: Arc<ApiStats>,
}

/// What a route leads to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A loaded release.
    Live(Release),
    /// One of the platform's own endpoints (OAuth, admin).
    Native {
        endpoint: Arc<dyn Endpoint>,
        stats: Arc<ApiStats>,
    },
    /// An API whose package failed to load: its routes stay closed.
    Closed { api: String, stats: Arc<ApiStats> },
}

/// An immutable route table.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    by_path: HashMap<String, Vec<(String, Target)>>,
}

/// A route that another API already serves.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} is already served by {owner}")]
pub struct RouteConflict {
    pub method: String,
    pub path: String,
    pub owner: String,
}

impl Target {
    fn api_name(&self) -> &str {
        match self {
            Target::Live(release) => &release.api.manifest().name,
            Target::Native { endpoint, .. } => endpoint.name(),
            Target::Closed { api, .. } => api,
        }
    }
}

impl RouteTable {
    /// Adds every route of `api` to the table, or none if any is taken.
    pub fn add(
        &mut self,
        routes: &[sfop_core::Route],
        target: Target,
    ) -> Result<(), RouteConflict> {
        for route in routes {
            if let Some(owner) = self.get_exact(&route.method, &route.path) {
                return Err(RouteConflict {
                    method: route.method.clone(),
                    path: route.path.clone(),
                    owner: owner.api_name().to_owned(),
                });
            }
        }
        for route in routes {
            self.by_path
                .entry(route.path.clone())
                .or_default()
                .push((route.method.clone(), target.clone()));
        }
        Ok(())
    }

    fn get_exact(&self, method: &str, path: &str) -> Option<&Target> {
        self.by_path
            .get(path)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t)
    }

    /// Looks a request up: its target, or the methods the path does allow
    /// (empty when the path is unknown).
    pub fn lookup(&self, method: &str, path: &str) -> Result<&Target, Vec<String>> {
        let Some(methods) = self.by_path.get(path) else {
            return Err(Vec::new());
        };
        methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t)
            .ok_or_else(|| methods.iter().map(|(m, _)| m.clone()).collect())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.by_path.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Numbers of live and closed routes.
    pub fn counts(&self) -> (usize, usize) {
        let closed = self
            .by_path
            .values()
            .flatten()
            .filter(|(_, t)| matches!(t, Target::Closed { .. }))
            .count();
        (self.len() - closed, closed)
    }
}
