//! `/mcp`: keyrail's management API as tools for AI clients (the Model Context Protocol over
//! Streamable HTTP). The credential is an API key or an OAuth access token made for this
//! resource (see `crate::oauth`); without one the answer is 401 with the `WWW-Authenticate`
//! challenge that points an MCP client at the protected-resource metadata (RFC 9728).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyrail_core::workspaces::Actor;

use crate::auth;
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
