//! The route table: `METHOD path` to the API release that serves it. The
//! gateway holds it behind an atomic pointer, so a new table replaces the old
//! one while requests are in flight; each request keeps the release it started on.

use std::collections::HashMap;
use std::sync::Arc;

use sfop_runtime::Api;

use crate::metrics::ApiStats;

/// A loaded release of an API, with its counters.
#[derive(Debug, Clone)]
pub struct Release {
    pub api: Arc<Api>,
    pub(crate) stats: Arc<ApiStats>,
}

impl Release {
    /// The release's version, as the `x-sfop-api-version` header says it.
    pub fn version(&self) -> &semver::Version {
        &self.api.manifest().version
    }

    /// The counters of this API version.
    pub fn stats(&self) -> &ApiStats {
        &self.stats
    }
}

/// The releases of one API that its routes lead to: the stable release and,
/// during a canary, a candidate that takes a share of the traffic.
#[derive(Debug, Clone)]
pub struct ApiRoute {
    pub stable: Release,
    pub canary: Option<Canary>,
    /// Deprecation: the date (`YYYY-MM-DD`) after which the API is retired,
    /// announced on every answer in a `Sunset` header.
    pub sunset: Option<String>,
}

/// A candidate release taking `percent` of the traffic, chosen per sticky key.
#[derive(Debug, Clone)]
pub struct Canary {
    pub release: Release,
    /// Share of sticky keys routed to the candidate, 0..=100.
    pub percent: u8,
    pub sticky: StickyKey,
}

/// What keeps one caller on one version during a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyKey {
    /// The OAuth client (fintech app) of the token.
    Client,
    /// The account the request acts on (the manifest's `access.account`),
    /// else the client.
    Account,
}

impl ApiRoute {
    /// A route to one release.
    pub fn single(stable: Release) -> Self {
        Self {
            stable,
            canary: None,
            sunset: None,
        }
    }

    /// The release that serves `key`: the candidate for `percent` of all keys,
    /// always the same one for the same key.
    pub fn pick(&self, key: &str) -> &Release {
        match &self.canary {
            Some(canary) if bucket(&self.stable.api.manifest().name, key) < canary.percent => {
                &canary.release
            }
            _ => &self.stable,
        }
    }

    /// The release of `version`, when this route serves it.
    pub fn version(&self, version: &semver::Version) -> Option<&Release> {
        std::iter::once(&self.stable)
            .chain(self.canary.as_ref().map(|c| &c.release))
            .find(|r| r.version() == version)
    }
}

/// A stable bucket 0..100 of `key` for `api`: FNV-1a, then MurmurHash3's
/// 64-bit finaliser so that similar keys spread evenly. Fixed across runs and
/// platforms, so a key never changes side while the split stays the same.
fn bucket(api: &str, key: &str) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in api.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    u8::try_from(hash % 100).unwrap_or(0)
}

/// What a route leads to.
#[derive(Debug, Clone)]
pub enum Target {
    /// An API's live release (and canary candidate).
    Api(Arc<ApiRoute>),
    /// The platform's own endpoints: the router of
    /// [`crate::platform::Endpoints`] answers, under `name` in the metrics.
    Platform { name: String, stats: Arc<ApiStats> },
    /// An API whose package failed to load: its routes stay closed.
    Closed { api: String, stats: Arc<ApiStats> },
    /// An API taken out of service by the operator.
    Retired {
        api: String,
        /// The announced sunset date, if there was one.
        sunset: Option<String>,
    },
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
            Target::Api(route) => &route.stable.api.manifest().name,
            Target::Platform { name, .. } => name,
            Target::Closed { api, .. } | Target::Retired { api, .. } => api,
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

    /// Number of exact routes (prefixes are platform pages, not API routes).
    pub fn len(&self) -> usize {
        self.by_path.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty() && self.prefixes.is_empty()
    }

    /// Every release the table serves (stable and canary), once each.
    pub fn releases(&self) -> Vec<Arc<Api>> {
        let mut seen: Vec<Arc<Api>> = Vec::new();
        for (_, target) in self.by_path.values().flatten() {
            if let Target::Api(route) = target {
                let canary = route.canary.as_ref().map(|c| &c.release);
                for release in std::iter::once(&route.stable).chain(canary) {
                    if !seen.iter().any(|a| Arc::ptr_eq(a, &release.api)) {
                        seen.push(release.api.clone());
                    }
                }
            }
        }
        seen
    }

    /// Numbers of live and closed routes.
    pub fn counts(&self) -> (usize, usize) {
        let closed = self
            .by_path
            .values()
            .flatten()
            .filter(|(_, t)| matches!(t, Target::Closed { .. } | Target::Retired { .. }))
            .count();
        (self.len() - closed, closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(name: &'static str) -> Target {
        Target::Platform {
            name: name.to_owned(),
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
        table.add_prefix("/portal", platform("portal"))?;
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
        table.add_prefix("/portal/", platform("portal"))?;
        table.add_prefix("/portal/admin", platform("portal-admin"))?;
        table.add(&[route("GET", "/portal/exact")], platform("exact"))?;
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
        table.add_prefix("/portal", platform("portal"))?;
        let conflict = table
            .add_prefix("/portal/", platform("other"))
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

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("echo", "k1"), bucket("echo", "k1"));
        let mut counts = [0u32; 100];
        for i in 0..10_000 {
            counts[usize::from(bucket("echo", &format!("key-{i}")))] += 1;
        }
        // Every bucket is used and none takes more than twice its share.
        assert!(counts.iter().all(|&c| c > 0 && c < 200), "{counts:?}");
        // The API name is part of the key: splits of two APIs are independent.
        let same = (0..1000)
            .filter(|i| bucket("a", &i.to_string()) == bucket("b", &i.to_string()))
            .count();
        assert!(same < 50, "{same}");
    }
}
