//! A catalogue the test changes at will, an upstream that answers like the
//! platform, and a portal over them with its store in a temp dir.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sfop_core::Manifest;
use sfop_portal::{
    ApiEntry, Catalog, Portal, PortalConfig, PortalRequest, PortalResponse, Upstream,
    UpstreamFuture, UpstreamRequest, UpstreamResponse, VersionEntry, VersionState,
};
use sfop_store::Store;
use tempfile::TempDir;

/// A catalogue held in memory; `set` stands in for a promotion.
#[derive(Debug, Default)]
pub struct MemCatalog(Mutex<Vec<ApiEntry>>);

impl MemCatalog {
    pub fn set(&self, apis: Vec<ApiEntry>) {
        if let Ok(mut held) = self.0.lock() {
            *held = apis;
        }
    }
}

impl Catalog for MemCatalog {
    fn apis(&self) -> Vec<ApiEntry> {
        self.0.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// Records what the portal sends and answers `A0000`.
#[derive(Debug, Default)]
pub struct Recorder(pub Mutex<Vec<UpstreamRequest>>);

impl Upstream for Recorder {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture {
        if let Ok(mut sent) = self.0.lock() {
            sent.push(request);
        }
        Box::pin(async {
            Ok(UpstreamResponse {
                status: 200,
                body: br#"{"rsp_code":"A0000","rsp_message":""}"#.to_vec(),
            })
        })
    }
}

pub const BALANCE_V1: &str = r#"
name = "account-balance"
version = "1.0.0"
description = "The balance of a registered account (잔액조회)."
scope = "inquiry"
capabilities = ["ledger"]

[[routes]]
method = "GET"
path = "/v2.0/account/balance/fin_num"

[docs]
codes = [{ code = "A0304", meaning = "fintech_use_num is not the caller's user's" }]

[[docs.request]]
name = "fintech_use_num"
type = "N(24)"
required = true
description = "The account (핀테크이용번호)"

[[docs.response]]
name = "balance_amt"
type = "N(12)"
description = "Balance in won"

[docs.example]
request = 'fintech_use_num=120230000100000000000015'
response = '{"rsp_code": "A0000", "rsp_message": "", "balance_amt": "3089900"}'
"#;

/// Version 1.1.0: one response field added, one type widened.
pub fn balance_v1_1() -> String {
    BALANCE_V1
        .replace("version = \"1.0.0\"", "version = \"1.1.0\"")
        .replace("type = \"N(12)\"", "type = \"N(13)\"")
        + r#"
[[docs.response]]
name = "available_amt"
type = "N(12)"
description = "Withdrawable now"
"#
}

pub fn manifest(text: &str) -> Result<Manifest> {
    Manifest::parse(text).context("test manifest")
}

pub fn version(text: &str, state: VersionState, at_ms: u64) -> Result<VersionEntry> {
    Ok(VersionEntry {
        manifest: manifest(text)?,
        sha256: format!("{:064x}", at_ms),
        state,
        uploaded_at_ms: at_ms,
        report_html: None,
        milestones: Vec::new(),
    })
}

pub struct TestPortal {
    pub portal: Portal,
    /// The portal's client registry, to check what it stored.
    pub clients: sfop_auth::ClientRegistry,
    pub catalog: Arc<MemCatalog>,
    pub upstream: Arc<Recorder>,
    _dir: TempDir,
}

impl TestPortal {
    pub fn new(apis: Vec<ApiEntry>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let catalog = Arc::new(MemCatalog::default());
        catalog.set(apis);
        let upstream = Arc::new(Recorder::default());
        let clients = sfop_auth::ClientRegistry::open(&store)?;
        let portal = Portal::open(
            &store,
            catalog.clone(),
            clients.clone(),
            PortalConfig {
                password_rounds: 1000,
                ..PortalConfig::default()
            },
        )?
        .with_platform(upstream.clone());
        Ok(Self {
            portal,
            clients,
            catalog,
            upstream,
            _dir: dir,
        })
    }

    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        cookie: Option<&str>,
        body: &str,
    ) -> Page {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let response = self
            .portal
            .handle(PortalRequest {
                method: method.into(),
                path: path.into(),
                query: query.into(),
                authority: Some("portal.test".into()),
                cookie: cookie.map(str::to_owned),
                body: body.as_bytes().to_vec(),
                peer: None,
                ..PortalRequest::default()
            })
            .await;
        Page(response)
    }

    /// `req` as it is, headers included.
    pub async fn send(&self, req: PortalRequest) -> Page {
        Page(self.portal.handle(req).await)
    }

    pub async fn get(&self, path: &str) -> Page {
        self.request("GET", path, None, "").await
    }
}

/// A response, read as text.
pub struct Page(pub PortalResponse);

impl Page {
    pub fn status(&self) -> u16 {
        self.0.status
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The text of the element with id `id`, up to its first tag (a
    /// registered app's `client-id` and `client-secret`).
    pub fn by_id(&self, id: &str) -> Option<String> {
        let text = self.text();
        let marker = format!("id=\"{id}\">");
        let start = text.find(&marker)? + marker.len();
        let end = text[start..].find('<')?;
        Some(text[start..start + end].to_owned())
    }

    /// The value of the first `name="NAME" value="…"` in the page.
    pub fn input(&self, name: &str) -> Option<String> {
        let text = self.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = text.find(&marker)? + marker.len();
        let end = text[start..].find('"')?;
        Some(text[start..start + end].to_owned())
    }
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
