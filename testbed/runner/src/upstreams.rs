//! Virtual upstreams: during a run, the origins a package's manifest allows
//! are answered by the fixtures of its `testbed.toml` (`[[upstream]]`), so a
//! package that calls its bank's backend through `http` is tested and
//! attested without that backend. The manifest's `allowed_hosts` is held to
//! exactly as the platform's client holds it; a request no fixture answers
//! is `connect`, as an unreachable backend would be
//! (docs/adr/0027-outbound-http-and-variables.md). The variables of the run
//! are the `[variables]` of `testbed.toml`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sfop_core::origin::AllowedHosts;
use sfop_core::outbound::{
    Outbound, OutboundError, OutboundRequest, OutboundResponse, VariableValues,
};

use crate::cases::{Cases, UpstreamFixture};

/// The fixtures and variables of the packages loaded in one run, by API name.
#[derive(Debug, Default)]
pub(crate) struct VirtualUpstreams {
    fixtures: Mutex<BTreeMap<String, Vec<UpstreamFixture>>>,
    variables: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl VirtualUpstreams {
    /// What `api`'s cases declare, before it is loaded.
    pub(crate) fn register(&self, api: &str, cases: &Cases) {
        if let Ok(mut f) = self.fixtures.lock() {
            f.insert(api.to_owned(), cases.upstreams.clone());
        }
        if let Ok(mut v) = self.variables.lock() {
            v.insert(api.to_owned(), cases.variables.clone());
        }
    }
}

#[async_trait::async_trait]
impl Outbound for VirtualUpstreams {
    async fn send(
        &self,
        allowed: &AllowedHosts,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| OutboundError::Invalid(format!("url {:?}: {e}", request.url)))?;
        if allowed.allowing(&url).is_none() {
            return Err(OutboundError::DeniedHost(format!(
                "{} is not in the manifest's allowed_hosts",
                url.origin().ascii_serialization()
            )));
        }
        let fixture = self.fixtures.lock().ok().and_then(|f| {
            f.get(&request.api)?
                .iter()
                .find(|u| {
                    u.method.as_deref().is_none_or(|m| m == request.method)
                        && url::Url::parse(&u.url).is_ok_and(|fixed| fixed == url)
                })
                .cloned()
        });
        let Some(fixture) = fixture else {
            return Err(OutboundError::Connect(format!(
                "testbed: no [[upstream]] in testbed.toml answers {} {url}",
                request.method
            )));
        };
        Ok(OutboundResponse {
            status: fixture.status,
            headers: fixture
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: fixture.body.into_bytes(),
        })
    }
}

impl VariableValues for VirtualUpstreams {
    fn value(&self, api: &str, name: &str) -> Option<String> {
        self.variables
            .lock()
            .ok()?
            .get(api)
            .and_then(|v| v.get(name))
            .cloned()
    }
}
