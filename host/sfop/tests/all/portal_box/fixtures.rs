//! A catalogue the test changes at will, an upstream that answers like the
//! platform, and a portal over them with its store in a temp dir.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sfop_core::Manifest;
use sfop_gateway::platform::Caller;
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

/// `account-balance` 1.0.0, deprecated with sunset 2027-06-30.
pub fn balance_v1_deprecated() -> Result<VersionEntry> {
    version(
        BALANCE_V1,
        VersionState::Deprecated {
            sunset: "2027-06-30".into(),
        },
        1_000,
    )
}

/// `account-balance` with `versions`.
pub fn balance(versions: Vec<VersionEntry>) -> ApiEntry {
    ApiEntry {
        name: "account-balance".into(),
        versions,
    }
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
    /// A portal whose catalogue is `account-balance` 1.0.0, live.
    pub fn balance_live() -> Result<Self> {
        Self::new(vec![balance(vec![version(
            BALANCE_V1,
            VersionState::Live,
            1_000,
        )?])])
    }

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
        self.send(PortalRequest {
            method: method.into(),
            path: path_and_query.into(),
            cookie: cookie.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            ..PortalRequest::default()
        })
        .await
    }

    /// `req` as it is, headers included, through the platform's router for
    /// `/portal` (`path` may carry the query). A request the router cannot
    /// take is a test bug: the page says so with status 0.
    pub async fn send(&self, req: PortalRequest) -> Page {
        match self.route(req).await {
            Ok(page) => page,
            Err(e) => Page(PortalResponse {
                status: 0,
                headers: Vec::new(),
                body: format!("{e:#}").into_bytes(),
            }),
        }
    }

    async fn route(&self, req: PortalRequest) -> Result<Page> {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let uri = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        let mut builder = hyper::Request::builder()
            .method(req.method.as_str())
            .uri(uri)
            .header("host", "portal.test");
        for (name, value) in [
            ("cookie", &req.cookie),
            ("origin", &req.origin),
            ("sec-fetch-site", &req.fetch_site),
        ] {
            if let Some(value) = value {
                builder = builder.header(name, value.as_str());
            }
        }
        let mut request = builder.body(axum::body::Body::from(req.body))?;
        request.extensions_mut().insert(Caller {
            api_tran_id: "portal-box-test".into(),
            peer: req.peer.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            client_cert: None,
            authority: Some("portal.test".into()),
        });
        let router = sfop::portal::routes(Arc::new(self.portal.clone()));
        let response = router.oneshot(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Page(PortalResponse {
            status,
            headers,
            body,
        }))
    }

    /// The CSRF token of the signed-in developer with `cookie`, as the
    /// apps page's forms carry it.
    pub async fn csrf(&self, cookie: &str) -> Result<String> {
        self.request("GET", "/portal/apps", Some(cookie), "")
            .await
            .input("csrf")
            .context("no csrf field on /portal/apps")
    }

    /// Registers an app for the developer with `cookie`: `fields` is the
    /// form after the CSRF token. The registration page (201), its client
    /// id and its secret.
    pub async fn register_app(&self, cookie: &str, fields: &str) -> Result<(Page, String, String)> {
        let csrf = self.csrf(cookie).await?;
        let page = self
            .request(
                "POST",
                "/portal/apps",
                Some(cookie),
                &format!("csrf={csrf}&{fields}"),
            )
            .await;
        anyhow::ensure!(
            page.status() == 201,
            "registering {fields}: {}",
            page.text()
        );
        let client_id = page.by_id("client-id").context("client id")?;
        let secret = page.by_id("client-secret").context("secret")?;
        Ok((page, client_id, secret))
    }

    /// The page of app `client_id` for the developer with `cookie`.
    pub async fn app_page(&self, cookie: &str, client_id: &str) -> String {
        self.request(
            "GET",
            &format!("/portal/apps/{client_id}"),
            Some(cookie),
            "",
        )
        .await
        .text()
    }

    /// Posts `body` to app `client_id`'s secret rotation as the developer
    /// with `cookie`.
    pub async fn rotate_secret(&self, cookie: &str, client_id: &str, body: &str) -> Page {
        self.request(
            "POST",
            &format!("/portal/apps/{client_id}/secret"),
            Some(cookie),
            body,
        )
        .await
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

/// Percent-encodes a form value (the project's own encoder).
pub use sfop_core::form::encode as enc;
