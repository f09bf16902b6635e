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
    /// Path prefixes served whole (every method), longest first; consulted
    /// only when no exact route has the path.
    prefixes: Vec<(String, Target)>,
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

    /// Serves every method on `prefix` and every path below it: `/portal`
    /// matches `/portal` and `/portal/...`, not `/portalx`. Exact routes win;
    /// among prefixes the longest wins. Refused if `prefix` is taken.
    pub fn add_prefix(&mut self, prefix: &str, target: Target) -> Result<(), RouteConflict> {
        let prefix = prefix.trim_end_matches('/');
        if let Some((_, owner)) = self.prefixes.iter().find(|(p, _)| p == prefix) {
            return Err(RouteConflict {
                method: "*".into(),
                path: format!("{prefix}/..."),
                owner: owner.api_name().to_owned(),
            });
        }
        self.prefixes.push((prefix.to_owned(), target));
        self.prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(())
    }

    fn get_prefix(&self, path: &str) -> Option<&Target> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(_, t)| t)
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
            return self.get_prefix(path).ok_or_else(Vec::new);
        };
        methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t)
            .ok_or_else(|| methods.iter().map(|(m, _)| m.clone()).collect())
    }

    /// The distinct loaded releases the table routes to, in no set order.
    pub fn releases(&self) -> Vec<&Release> {
        let mut out: Vec<&Release> = Vec::new();
        for (_, target) in self.by_path.values().flatten().chain(&self.prefixes) {
            if let Target::Live(release) = target
                && !out.iter().any(|r| Arc::ptr_eq(&r.api, &release.api))
            {
                out.push(release);
            }
        }
        out
    }

    /// Number of exact routes (prefixes are platform pages, not API routes).
    pub fn len(&self) -> usize {
        self.by_path.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty() && self.prefixes.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NativeRequest, NativeResponse};

    #[derive(Debug)]
    struct Named(&'static str);

    impl Endpoint for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn handle(&self, _request: &NativeRequest<'_>) -> NativeResponse {
            NativeResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
                envelope: false,
            }
        }
    }

    fn native(name: &'static str) -> Target {
        Target::Native {
            endpoint: Arc::new(Named(name)),
            stats: Arc::default(),
        }
    }

    fn served_by(table: &RouteTable, method: &str, path: &str) -> Option<String> {
        table
            .lookup(method, path)
            .ok()
            .map(|t| t.api_name().to_owned())
    }

    fn route(method: &str, path: &str) -> sfop_core::Route {
        sfop_core::Route {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn a_prefix_serves_itself_and_below_only() -> Result<(), RouteConflict> {
        let mut table = RouteTable::default();
        table.add_prefix("/portal", native("portal"))?;
        for path in ["/portal", "/portal/", "/portal/apis/x", "/portal/a/b/c"] {
            for method in ["GET", "POST"] {
                assert_eq!(
                    served_by(&table, method, path).as_deref(),
                    Some("portal"),
                    "{method} {path}"
                );
            }
        }
        for path in ["/portalx", "/portal.json", "/", "/por", "/v2.0/portal"] {
            assert!(
                matches!(table.lookup("GET", path), Err(allowed) if allowed.is_empty()),
                "{path}"
            );
        }
        assert_eq!(table.len(), 0);
        assert!(!table.is_empty());
        Ok(())
    }

    #[test]
    fn exact_routes_win_then_the_longest_prefix() -> Result<(), RouteConflict> {
        let mut table = RouteTable::default();
        // A trailing slash is the same prefix.
        table.add_prefix("/portal/", native("portal"))?;
        table.add_prefix("/portal/admin", native("portal-admin"))?;
        table.add(&[route("GET", "/portal/exact")], native("exact"))?;
        assert_eq!(
            served_by(&table, "GET", "/portal/exact").as_deref(),
            Some("exact")
        );
        // The exact path's other methods stay "method not allowed".
        assert!(matches!(table.lookup("POST", "/portal/exact"), Err(m) if m == ["GET"]));
        assert_eq!(
            served_by(&table, "GET", "/portal/admin/x").as_deref(),
            Some("portal-admin")
        );
        assert_eq!(
            served_by(&table, "GET", "/portal/adminx").as_deref(),
            Some("portal")
        );
        assert_eq!(
            served_by(&table, "GET", "/portal").as_deref(),
            Some("portal")
        );
        Ok(())
    }

    #[test]
    fn a_taken_prefix_is_a_conflict_naming_its_owner() -> Result<(), RouteConflict> {
        let mut table = RouteTable::default();
        table.add_prefix("/portal", native("portal"))?;
        let conflict = table
            .add_prefix("/portal/", native("other"))
            .err()
            .map(|c| c.to_string())
            .unwrap_or_default();
        assert!(
            conflict.contains("/portal/...") && conflict.contains("portal"),
            "{conflict}"
        );
        // The table is unchanged: the first owner still serves.
        assert_eq!(
            served_by(&table, "GET", "/portal/x").as_deref(),
            Some("portal")
        );
        Ok(())
    }
}
