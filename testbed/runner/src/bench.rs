//! The isolated environment one run tests in: a fresh sled store in a temp
//! dir, the seeded virtual bank, the real runtime and the real gateway on
//! `127.0.0.1:0` (cleartext), and an HTTP client for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sfop_core::Claims;
use sfop_gateway::{
    AuthRequest, Authorizer, Denial, Gateway, GatewayConfig, RouteTable, Transport,
};
use sfop_runtime::{Api, Runtime, RuntimeConfig, Services};
use sfop_store::{PluginKv, Store};
use sfop_vbank::VirtualBank;
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, USERS};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::TestbedError;
use crate::faults::{FaultScript, ScriptedBank};

/// The request header naming the persona a call is made as. Only the
/// testbed's own in-process gateway reads it; the platform never does.
pub const PERSONA_HEADER: &str = "x-sfop-testbed-as";

/// The testbed's authoriser: the verified claims of a seeded persona, chosen
/// per request by [`PERSONA_HEADER`]. The testbed judges the plugin, not the
/// token path (sfop-auth has its own tests), and these claims are exactly
/// what a plugin sees through `auth-context` and the bank decides with
/// (ADR 9 says why not real biscuit tokens).
#[derive(Debug)]
pub(crate) struct PersonaAuth {
    personas: BTreeMap<&'static str, Claims>,
}

impl PersonaAuth {
    fn new(bank: &VirtualBank) -> Result<Self, TestbedError> {
        let mut personas = BTreeMap::new();
        for user in USERS {
            let nums = bank
                .fintech_use_nums(
                    user.user_seq_no,
                    DEMO_CLIENT_ID,
                    sfop_core::time::now_millis(),
                )
                .map_err(|e| TestbedError::Bench(format!("reading seeded consents: {e}")))?;
            personas.insert(
                user.login_id,
                Claims {
                    client_id: DEMO_CLIENT_ID.into(),
                    client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
                    user_seq_no: Some(user.user_seq_no.into()),
                    scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
                    fintech_use_nums: nums,
                },
            );
        }
        personas.insert(
            "institution",
            Claims {
                client_id: DEMO_CLIENT_ID.into(),
                client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
                user_seq_no: None,
                scopes: vec!["oob".into()],
                fintech_use_nums: Vec::new(),
            },
        );
        Ok(Self { personas })
    }
}

impl Authorizer for PersonaAuth {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Option<Claims>, Denial> {
        let persona = request
            .headers
            .get(PERSONA_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| default_persona(&request.manifest.scope));
        if persona == "none" {
            return Ok(None);
        }
        let claims = self.personas.get(persona).ok_or_else(|| {
            Denial::unauthenticated("O0002", format!("unknown testbed persona {persona:?}"))
        })?;
        if !claims.scopes.contains(&request.manifest.scope) {
            return Err(Denial::refused(
                "O0011",
                format!("persona {persona} has no scope {}", request.manifest.scope),
            ));
        }
        Ok(Some(claims.clone()))
    }
}

/// Who calls an API of `scope` when a case does not say.
pub fn default_persona(scope: &str) -> &'static str {
    match scope {
        "oob" => "institution",
        _ => "hong",
    }
}

/// One package served by its own gateway.
pub(crate) struct Served {
    pub api: Arc<Api>,
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Calls of this API that ran into the CPU deadline or the wall clock.
    pub fn runaways(&self) -> u64 {
        let m = self.api.manifest();
        let stats = self.gateway.metrics().api(&m.name, &m.version.to_string());
        stats.outcome(sfop_core::Outcome::Deadline) + stats.outcome(sfop_core::Outcome::Timeout)
    }
}

/// The environment of one run.
pub(crate) struct Bench {
    pub bank: VirtualBank,
    /// Scripted faults in front of the bank, as plugins reach it.
    pub faults: FaultScript,
    store: Store,
    runtime: Runtime,
    auth: Arc<PersonaAuth>,
    tran_ids: AtomicU64,
    served: Vec<Served>,
    /// The packages' upstreams and variables, from their `testbed.toml`.
    pub upstreams: Arc<crate::upstreams::VirtualUpstreams>,
}

impl Bench {
    /// A fresh store in `dir`, seeded bank, runtime.
    pub fn open(dir: &Path) -> Result<Self, TestbedError> {
        let store =
            Store::open(dir).map_err(|e| TestbedError::Bench(format!("opening the store: {e}")))?;
        let bank = VirtualBank::open(&store)
            .map_err(|e| TestbedError::Bench(format!("seeding the virtual bank: {e}")))?;
        let kv = PluginKv::open(&store)
            .map_err(|e| TestbedError::Bench(format!("opening plugin storage: {e}")))?;
        let faults = FaultScript::default();
        let upstreams = Arc::new(crate::upstreams::VirtualUpstreams::default());
        let services = Services {
            bank: Arc::new(ScriptedBank::new(bank.clone(), faults.clone())),
            kv: Arc::new(kv),
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        };
        let runtime = Runtime::new(
            services,
            &RuntimeConfig {
                max_instances: 32,
                outbound: Some(upstreams.clone()),
                variables: upstreams.clone(),
                ..RuntimeConfig::default()
            },
        )
        .map_err(|e| TestbedError::Bench(format!("starting the runtime: {e:#}")))?;
        let auth = Arc::new(PersonaAuth::new(&bank)?);
        Ok(Self {
            bank,
            faults,
            store,
            runtime,
            auth,
            // Far from the small literal ids examples and cases use.
            tran_ids: AtomicU64::new(700_000_000),
            served: Vec::new(),
            upstreams,
        })
    }

    /// Loads a package into the runtime (the STATIC-LOAD check), with the
    /// upstreams and variables of its `testbed.toml` (when it parses).
    pub fn load(&self, package: &crate::Package) -> Result<Arc<Api>, String> {
        if let Ok(cases) = crate::package::cases(package) {
            self.upstreams.register(&package.manifest.name, &cases);
        }
        let (manifest, component) = (&package.manifest, &package.component);
        self.runtime
            .load(manifest.clone(), component)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// Serves a loaded API on its own gateway on 127.0.0.1:0; returns its index.
    pub async fn serve(&mut self, api: Arc<Api>) -> Result<usize, TestbedError> {
        let gateway = Arc::new(Gateway::new(
            GatewayConfig::default(),
            self.auth.clone() as Arc<dyn Authorizer>,
        ));
        let mut routes = RouteTable::default();
        routes
            .add(&api.manifest().routes, gateway.live(api.clone()))
            .map_err(|e| TestbedError::Bench(e.to_string()))?;
        gateway.swap_routes(routes);
        gateway.set_ready(true);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestbedError::Bench(format!("binding 127.0.0.1:0: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestbedError::Bench(e.to_string()))?;
        let (stop, stopping) = watch::channel(false);
        let server = tokio::spawn(sfop_gateway::serve(
            listener,
            Transport::Plain,
            gateway.clone(),
            async move {
                let mut rx = stopping;
                let _ = rx.wait_for(|s| *s).await;
            },
            Duration::from_secs(1),
        ));
        self.served.push(Served {
            api,
            gateway,
            addr,
            stop,
            server,
        });
        Ok(self.served.len() - 1)
    }

    pub fn served(&self, index: usize) -> Option<&Served> {
        self.served.get(index)
    }

    /// A fresh `bank_tran_id` of the demo institution.
    pub fn tran_id(&self) -> String {
        let n = self.tran_ids.fetch_add(1, Ordering::Relaxed);
        format!("{DEMO_CLIENT_USE_CODE}U{:09}", n % 1_000_000_000)
    }

    /// Takes the given banks down (`false`) or brings them back.
    pub fn set_banks(&self, codes: &[String], available: bool) -> Result<(), String> {
        for code in codes {
            self.bank
                .set_available(code, available)
                .map_err(|e| format!("bank {code}: {e}"))?;
        }
        Ok(())
    }

    /// Stops every gateway and flushes the store.
    pub async fn close(self) {
        for served in self.served {
            let _ = served.stop.send(true);
            let _ = served.server.await;
        }
        let _ = self.store.flush();
    }
}

/// One HTTP request as the testbed sends it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, already percent-encoded where needed.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub header_tran_id: Option<String>,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl HttpReply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `STATUS rsp_code rsp_message`, for report details.
    pub fn brief(&self) -> String {
        match self.json() {
            Some(v) => format!(
                "HTTP {} {} {}",
                self.status,
                v.get("rsp_code")
                    .and_then(Value::as_str)
                    .unwrap_or("(no rsp_code)"),
                v.get("rsp_message").and_then(Value::as_str).unwrap_or("")
            ),
            None => format!(
                "HTTP {} non-JSON body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(120)])
            ),
        }
    }
}

/// Sends one request on a fresh connection, within `limit`.
pub async fn send(
    addr: SocketAddr,
    req: &HttpRequest,
    limit: Duration,
) -> Result<HttpReply, String> {
    let started = Instant::now();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(req.method.as_str())
            .uri(req.target.as_str())
            .header("host", addr.to_string());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (content_type, header_tran_id) = (
            header("content-type"),
            header(sfop_gateway::API_TRAN_ID_HEADER),
        );
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok(HttpReply {
            status,
            content_type,
            header_tran_id,
            body,
            elapsed: started.elapsed(),
        })
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
}

/// Percent-encodes a query component (keeps unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("a b&c=홍"), "a%20b%26c%3D%ED%99%8D");
        assert_eq!(encode_query_value("M2023-_.~"), "M2023-_.~");
    }
}
