//! `/mcp`: keyrail's management API as tools for AI clients (the Model Context Protocol over
//! Streamable HTTP). The credential is an API key or an OAuth access token made for this
//! resource (see `crate::oauth`); without one the answer is 401 with the `WWW-Authenticate`
//! challenge that points an MCP client at the protected-resource metadata (RFC 9728).

mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyrail_core::workspaces::Actor;

use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use tools::{KeyrailTools, TOOL_NAMES};

use crate::auth;
use crate::error::ApiError;
use crate::routes::common::actor_of;
use crate::state::AppState;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// The resource identifier of `/mcp` (RFC 8707): the audience of the tokens made for it.
pub fn resource(state: &AppState) -> String {
    format!("{}{PATH}", state.config.public_url.as_str())
}

/// Where a client finds the protected-resource metadata of `/mcp` (RFC 9728).
pub fn resource_metadata_url(state: &AppState) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource",
        state.config.public_url.as_str()
    )
}

/// A directive every log filter of the server adds (see `keyrail`'s logging): rmcp logs whole
/// JSON-RPC messages at debug and trace level, and the tools' arguments and results hold
/// secrets (a key to verify, a new key), which must never reach a log.
pub const LOG_DIRECTIVE: &str = "rmcp=warn";

/// The largest request body `/mcp` reads (a JSON-RPC message); larger ones get 413.
pub const BODY_LIMIT: usize = crate::json::BODY_LIMIT;

/// `/mcp`: rmcp's Streamable HTTP transport, stateless (every POST is served on its own; no
/// session is kept in memory, so any node of a cluster answers any request), JSON answers,
/// behind [`require_caller`].
pub fn router(state: &AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(allowed_hosts(state.config.public_url.as_str()))
        // `read_message` has read the body within BODY_LIMIT already.
        .with_max_request_body_bytes(BODY_LIMIT);
    let tools_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(KeyrailTools::new(tools_state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn(read_message))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_caller,
        ))
        // A tool's result may hold a secret (a new key): no answer of /mcp is cached.
        .layer(axum::middleware::from_fn(no_store))
        // Outermost: a browser's preflight carries no credential.
        .layer(axum::middleware::from_fn(crate::oauth::cors))
}

/// `Cache-Control: no-store` on every answer (API.md "Conventions": an answer that may hold a
/// secret is not cached).
async fn no_store(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Reads a POST's body (at most [`BODY_LIMIT`], else 413) before rmcp does, so that a body
/// that is no JSON-RPC message gets the JSON-RPC error the protocol defines (400 with
/// `-32700` parse error, or `-32600` invalid request) rather than rmcp's plain-text 415.
async fn read_message(req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST || !is_json(req.headers()) {
        // rmcp answers these (405, 415), as the transport defines.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            let error = if e.into_inner().is::<http_body_util::LengthLimitError>() {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::invalid("body", "The request body could not be read")
            };
            return error.into_response();
        }
    };
    let is_json_value = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
    if !is_json_value {
        return jsonrpc_error(-32700, "Parse error: the body is not JSON");
    }
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if resp.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The body was JSON with the right Content-Type: rmcp could not read it as a message.
        return jsonrpc_error(-32600, "Invalid request: the body is no JSON-RPC message");
    }
    resp
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON-RPC error answer that belongs to no request (`id: null`), with HTTP 400.
fn jsonrpc_error(code: i64, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// The `Host` values `/mcp` answers (rmcp's guard against DNS rebinding): the public URL's
/// host (any port) and loopback.
fn allowed_hosts(public_url: &str) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    if let Some(host) = public_url
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        && !hosts.contains(&host)
    {
        hosts.push(host);
    }
    hosts
}

/// Who is calling a tool, as the domain sees them: a key (`Actor::Key`) or an MCP client acting
/// through a grant (`Actor::App`). Put in the request's extensions by [`require_caller`].
#[derive(Debug, Clone)]
pub struct McpCaller(pub Actor);

/// Middleware of `/mcp`: authenticates the request, or answers 401 with the RFC 9728
/// challenge (RFC 6750 `error="invalid_token"` when a credential was presented).
pub async fn require_caller(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let principal = match auth::authenticate_resource(&parts, &state, &resource(&state)).await {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let presented = parts.headers.contains_key(header::AUTHORIZATION);
            return challenge(&state, e.into_response(), presented);
        }
        Err(e) => return e.into_response(),
    };
    match actor_of(principal, &state).await {
        Ok(actor) => {
            parts.extensions.insert(McpCaller(actor));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

fn challenge(state: &AppState, mut resp: Response, presented: bool) -> Response {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        resource_metadata_url(state)
    );
    if presented {
        value.push_str(", error=\"invalid_token\"");
    }
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}
