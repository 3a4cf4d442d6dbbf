//! The `/docs` page: an interactive API reference (Swagger UI) over `/api/v1/openapi.json`.
//!
//! Swagger UI's built bundle is vendored from the npm package `swagger-ui-dist` under
//! `assets/swagger-ui/` (its README says which version and how to update it) and carried in
//! the binary, as is the script that starts it (`assets/docs/init.js`): the page loads nothing
//! from any other host and works offline.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The vendored `swagger-ui-dist` version. It is part of the assets' paths, so that they can
/// be cached for good and a new version is fetched anew.
macro_rules! swagger_ui_version {
    () => {
        "5.35.0"
    };
}

pub const SWAGGER_UI_VERSION: &str = swagger_ui_version!();
pub const BUNDLE_PATH: &str = concat!(
    "/docs/swagger-ui-",
    swagger_ui_version!(),
    "/swagger-ui-bundle.js"
);
pub const CSS_PATH: &str = concat!(
    "/docs/swagger-ui-",
    swagger_ui_version!(),
    "/swagger-ui.css"
);
pub const INIT_PATH: &str = "/docs/init.js";

const PAGE: &str = concat!(
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n",
    "<title>keyrail API reference</title>\n",
    // No icon, so that the browser does not ask for /favicon.ico.
    "<link rel=\"icon\" href=\"data:,\">\n",
    "<link rel=\"stylesheet\" href=\"/docs/swagger-ui-",
    swagger_ui_version!(),
    "/swagger-ui.css\">\n",
    "</head>\n<body>\n",
    "<noscript><p>This reference needs JavaScript. The OpenAPI document it shows is at ",
    "<a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p></noscript>\n",
    "<div id=\"swagger-ui\"></div>\n",
    "<script src=\"/docs/swagger-ui-",
    swagger_ui_version!(),
    "/swagger-ui-bundle.js\" defer></script>\n",
    "<script src=\"/docs/init.js\" defer></script>\n",
    "</body>\n</html>\n"
);

const INIT_JS: &[u8] = include_bytes!("../assets/docs/init.js");
const BUNDLE_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const BUNDLE_JS_GZ: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js.gz");
const CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const CSS_GZ: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css.gz");

/// The page's policy: scripts, styles, images and requests ("try it out", the document) from
/// this server only; no inline script, no eval, no inline style either (Swagger UI sets its
/// element styles through the DOM, which the policy does not govern; `tests/docs.rs` loads the
/// page in Chromium and finds nothing refused). `data:` images are the icons inside Swagger
/// UI's CSS.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The asset routes (not API operations, so not in the OpenAPI document; `/docs` itself is,
/// in [`crate::routes::system`]).
pub fn asset_routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .route(INIT_PATH, get(init_js))
        .route(BUNDLE_PATH, get(bundle_js))
        .route(CSS_PATH, get(css))
}

/// The `/docs` page.
pub fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response()
}

async fn init_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            // Not versioned: asked again (it is small) so that an upgrade takes effect.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        INIT_JS,
    )
        .into_response()
}

async fn bundle_js(headers: HeaderMap) -> Response {
    asset(
        &headers,
        "text/javascript; charset=utf-8",
        BUNDLE_JS,
        BUNDLE_JS_GZ,
    )
}

async fn css(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", CSS, CSS_GZ)
}

/// A versioned asset: cached for a year, gzipped for a client that takes gzip.
fn asset(
    headers: &HeaderMap,
    content_type: &'static str,
    plain: &'static [u8],
    gzipped: &'static [u8],
) -> Response {
    let gzip = accepts_gzip(headers);
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        if gzip { gzipped } else { plain },
    )
        .into_response();
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// Whether `Accept-Encoding` takes gzip (by name or `*`) with a quality above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_only_when_the_client_takes_it() {
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&with("br, gzip;q=0")));
        assert!(!accepts_gzip(&with("gzipx")));
    }

    #[test]
    fn the_page_names_the_assets_it_is_served_with() {
        for path in [BUNDLE_PATH, CSS_PATH, INIT_PATH] {
            assert!(PAGE.contains(&format!("\"{path}\"")), "{path}");
        }
        assert!(BUNDLE_PATH.contains(SWAGGER_UI_VERSION));
    }
}
