//! The web console (`GET /` and the pages under it): server-rendered HTML for a person, with
//! plain forms and one small script (the copy button). Every page calls the same use cases as
//! the API (`keyrail_core`), so authorization, validation and audit are the API's own.
//!
//! Security: the session cookie of the API, the CSRF token in every form (`csrf_token`), a
//! strict Content-Security-Policy (no inline script or style), `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` (a reset token in a link never leaks), `no-store` on every
//! page, and writes refused when the browser says they come from another site.

mod admin;
mod apps;
mod audit;
mod auth;
mod builder;
mod keys;
mod members;
pub mod oauth;
mod profile;
pub mod session;
mod settings;
pub mod view;
mod webhooks;
mod workspaces;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::console::session::is_write;
use crate::console::view::Failure;
use crate::error::ApiError;
use crate::state::AppState;

/// The console's Content-Security-Policy: only this server's scripts, styles and images;
/// no inline script or style, no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
object-src 'none'";

pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(workspaces::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/mfa", post(auth::login_mfa))
        .route("/logout", post(auth::logout))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route(
            "/forgot-password",
            get(auth::forgot_page).post(auth::forgot),
        )
        .route("/reset-password", get(auth::reset_page).post(auth::reset))
        .route(
            "/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .merge(keys::router())
        .merge(audit::router())
        .merge(profile::router())
        .merge(admin::router())
        .merge(members::router())
        .merge(settings::router())
        .merge(apps::router())
        .merge(builder::router())
        .merge(webhooks::router())
        .merge(oauth::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::refresh,
        ));
    Router::new()
        .merge(pages)
        .route("/console/assets/{name}", get(asset))
        .layer(middleware::from_fn(guard))
}

/// Security headers on every console response, and the cross-site check of writes: a browser
/// says where a request comes from (`Sec-Fetch-Site`, `Origin`); a form posted from another
/// site is refused before anything reads it (the signed-in forms also carry the CSRF token;
/// this covers the sign-in and sign-up forms, which have no session to bind one to).
async fn guard(req: Request, next: Next) -> Response {
    if is_write(req.method()) && !same_origin(&req) {
        return Failure::from(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "CSRF token missing or invalid",
        ))
        .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // A page may widen it (the consent page lets its form lead to the client's redirect URI).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn same_origin(req: &Request) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: typed in the address bar or a bookmark.
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return false;
        }
    }
    // With `Referrer-Policy: no-referrer` a browser sends `Origin: null` for a form post.
    match headers.get(header::ORIGIN).map(HeaderValue::as_bytes) {
        None | Some(b"null") => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            let authority = origin
                .strip_prefix(b"https://")
                .or_else(|| origin.strip_prefix(b"http://"));
            authority == Some(host)
        }
    }
}

const CSS: &str = include_str!("../../assets/console/console.css");
const JS: &str = include_str!("../../assets/console/console.js");
const ICON: &str = include_str!("../../assets/console/icon.svg");

async fn asset(Path(name): Path<String>) -> Response {
    let (body, ty) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return Failure::from(ApiError::not_found()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ty)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn post(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method("POST").uri("/login");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        assert!(same_origin(&post(&[])));
        assert!(same_origin(&post(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&post(&[
            ("host", "a.test"),
            ("origin", "https://a.test")
        ])));
        assert!(same_origin(&post(&[("origin", "null")])));
        assert!(!same_origin(&post(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&post(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&post(&[
            ("host", "a.test"),
            ("origin", "https://evil.test")
        ])));
        assert!(!same_origin(&post(&[
            ("host", "a.test"),
            ("origin", "https://a.test.evil.test")
        ])));
    }
}
