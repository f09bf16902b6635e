//! Files the portal serves from its own origin under `/portal/assets/`:
//! its copy-button script and the vendored Redoc bundle (`assets/redoc-*`,
//! with its licence). Compiled into the binary, so nothing is fetched from
//! elsewhere at run time. Pages link them with `?v=` and the first 16 hex
//! digits of their SHA-256, so they can be cached for a year: a changed file
//! has a new URL.

use std::sync::LazyLock;

use crate::PortalResponse;

/// One file.
struct Asset {
    /// Its path under `/portal/assets/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The vendored Redoc release (from `npm pack redoc@2.5.4`, `bundles/`).
pub(crate) const REDOC: &str = "redoc-2.5.4/redoc.standalone.js";
/// Copy buttons and version selectors.
pub(crate) const PORTAL_JS: &str = "portal.js";

const ASSETS: &[Asset] = &[
    Asset {
        path: PORTAL_JS,
        content_type: "text/javascript; charset=UTF-8",
        body: include_bytes!("../assets/portal.js"),
    },
    Asset {
        path: REDOC,
        content_type: "text/javascript; charset=UTF-8",
        body: include_bytes!("../assets/redoc-2.5.4/redoc.standalone.js"),
    },
    Asset {
        path: "redoc-2.5.4/redoc.standalone.js.LICENSE.txt",
        content_type: "text/plain; charset=UTF-8",
        body: include_bytes!("../assets/redoc-2.5.4/redoc.standalone.js.LICENSE.txt"),
    },
    Asset {
        path: "redoc-2.5.4/LICENSE",
        content_type: "text/plain; charset=UTF-8",
        body: include_bytes!("../assets/redoc-2.5.4/LICENSE"),
    },
];

/// Each asset's version tag, computed once.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| crate::sha256_hex(a.body)[..16].to_owned())
        .collect()
});

/// The URL of asset `path`, with its version tag.
pub(crate) fn url(path: &str) -> String {
    let tag = ASSETS
        .iter()
        .position(|a| a.path == path)
        .and_then(|i| TAGS.get(i))
        .map(String::as_str)
        .unwrap_or_default();
    format!("{}/assets/{path}?v={tag}", crate::PREFIX)
}

/// `GET /portal/assets/{path}`, or `None` when there is no such file.
pub(crate) fn serve(path: &str) -> Option<PortalResponse> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    Some(PortalResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), asset.content_type.into()),
            // Versioned URLs (`?v=`): a new file gets a new URL.
            (
                "cache-control".into(),
                "public, max-age=31536000, immutable".into(),
            ),
            ("x-content-type-options".into(), "nosniff".into()),
            ("cross-origin-resource-policy".into(), "same-origin".into()),
        ],
        body: asset.body.to_vec(),
    })
}
