//! Served beside the API: health, readiness, metrics, the OpenAPI document and the docs page.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    crate::docs::asset_routes(OpenApiRouter::new())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
        .routes(routes!(jwks))
}

/// The public keys that verify access tokens (RFC 7517), by `kid`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "`{\"keys\": [{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\", \"kid\", \"alg\": \"EdDSA\", \"use\": \"sig\"}]}`", content_type = "application/json", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.identity.keyring.jwks(state.clock.now());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (process up) or `ready` (store reachable).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// With `redis_url` only: `up`, or `degraded` while Redis does not answer (the node then
    /// limits as `on_redis_error` says; it stays ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "up")]
    pub redis: Option<&'static str>,
}

const OK_BODY: &[u8] = br#"{"status":"ok"}"#;

/// Process up.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The process is up", body = Status)))]
pub async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OK_BODY,
    )
        .into_response()
}

/// Store reachable.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "The store answers", body = Status),
        (status = 503, description = "The store does not answer; `Retry-After` is set", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Status>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            let redis = match &state.shared_limiter {
                Some(s) if s.redis.ping().await => Some("up"),
                Some(_) => Some("degraded"),
                None => None,
            };
            Ok(axum::Json(Status {
                status: "ready",
                redis,
            }))
        }
        // During a known outage its beginning and end are logged once each, not every probe.
        Ok(Err(e)) if state.verifier.down_since().is_some() => {
            tracing::debug!(error = %e, "readiness check failed");
            Err(unavailable())
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(unavailable())
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            Err(unavailable())
        }
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Store unavailable",
    )
    .retry_after(1)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        {
            let mut text = crate::metrics::HttpMetrics::global().render();
            crate::conn::ConnStats::global().render(&mut text);
            state.request_log.render(&mut text);
            crate::outage::render(&state, &mut text);
            if let Some(shared) = &state.shared_limiter {
                shared.render(&mut text);
            }
            text
        },
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state
            .docs
            .get()
            .map(|d| d.openapi_json.clone())
            .unwrap_or_default(),
    )
        .into_response()
}

/// The interactive API reference (Swagger UI, served by this binary: it works offline).
#[utoipa::path(get, path = "/docs", tag = "system",
    responses((status = 200, description = "The API reference page: Swagger UI over this document, grouped by tag, with search and \"try it out\". Its scripts and styles are served by this server under `/docs/`.", content_type = "text/html", body = String)))]
pub async fn docs() -> Response {
    crate::docs::page()
}
