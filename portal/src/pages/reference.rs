//! `/portal/reference`: the OpenAPI document in Redoc, the interactive
//! reference. Redoc is vendored (`portal/assets/redoc-2.5.4`, MIT, from
//! `npm pack redoc@2.5.4`) and served from the portal's own origin: the page
//! fetches nothing from elsewhere.

use super::*;

/// This page's content-security-policy, as tight as Redoc allows:
/// - `script-src 'self'`: the vendored bundle only; Redoc starts itself from
///   the `<redoc spec-url>` element, so no inline script is needed;
/// - `style-src 'self' 'unsafe-inline'`: Redoc (styled-components) writes its
///   styles into `<style>` elements at run time, and the platform's own
///   stylesheet is inline;
/// - `connect-src 'self'`: Redoc fetches `/portal/openapi.json`;
/// - `worker-src blob:`: Redoc's search index runs in a worker it creates
///   from a `blob:` URL of code inside the bundle;
/// - `img-src 'self' data:` and `font-src 'self' data:` for its icons;
/// - no `'unsafe-eval'`, no other origin; no framing, forms to this origin.
pub(super) const REFERENCE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn reference_page(ctx: &Ctx<'_>) -> PortalResponse {
    let body = maud::html! {
        h1 { "API reference" }
        p.muted {
            "Every served API's current version from " a href="/portal/openapi.json" { "openapi.json" }
            ", rendered by " a href="/portal/assets/redoc-2.5.4/LICENSE" { "Redoc" } " (served by this platform)."
        }
        div #reference {
            redoc spec-url="/portal/openapi.json" hide-download-button="false" native-scrollbars="true"
                scroll-y-offset="0" {}
        }
    };
    crate::render::scripted_page(
        "API reference",
        "/portal/reference",
        &ctx.viewer,
        body,
        &[crate::assets::url(crate::assets::REDOC)],
        REFERENCE_CSP,
    )
}
