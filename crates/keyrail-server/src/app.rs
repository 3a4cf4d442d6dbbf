//! Builds the router: the API routes with their OpenAPI document, then the middleware every
//! request passes through.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::json::BODY_LIMIT;
use crate::observe::{observe, panic_response};
use crate::openapi::{ApiDoc, BodyRules, SharedResponses};
use crate::routes;
use crate::state::AppState;

/// Every route of the server and the OpenAPI document generated from them.
pub fn routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let needs_store = |router| crate::outage::needs_store(router, state);
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::system::router())
        .merge(needs_store(routes::auth::router(state)))
        .merge(needs_store(routes::profile::router()))
        .merge(needs_store(routes::workspaces::router()))
        .merge(needs_store(routes::export::router()))
        .merge(needs_store(routes::admin::router()))
        // Its management routes need the store; verify and forward-auth do not.
        .merge(routes::keys::router(state))
        .merge(needs_store(routes::apps::router(state)))
        .merge(needs_store(routes::logs::router()))
        .merge(needs_store(routes::webhooks::router()))
        .merge(needs_store(crate::oauth::router(state)))
        .split_for_parts();
    // The authorization endpoint is a console page, documented with the OAuth endpoints.
    crate::console::oauth::document(&mut openapi);
    // After the merge, so that it sees every operation.
    SharedResponses.modify(&mut openapi);
    BodyRules.modify(&mut openapi);
    // The console's pages are HTML for people, not API: outside the OpenAPI document. So is
    // `/mcp`, which speaks JSON-RPC (the Model Context Protocol), not REST.
    let router = router
        .merge(crate::console::router(state))
        .merge(crate::mcp::router(state));
    (router, openapi)
}

/// Adds the fallbacks and the middleware. `extra` routes (tests, embedders) get the same
/// treatment as the server's own.
pub fn finish(routes: Router<AppState>, state: AppState, request_timeout: Duration) -> Router {
    routes
        .fallback(|| async { ApiError::not_found() })
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(middleware::from_fn_with_state(
            state.request_log.clone(),
            observe,
        ))
        .layer(axum::Extension(
            crate::proxies::TrustedProxies::parse(&state.config.trusted_proxies)
                .unwrap_or_default(),
        ))
        .with_state(state)
}
