//! Per-client-IP limits on public endpoints (signup, login, password reset): every response
//! carries the RateLimit fields; over the limit, 429 with `Retry-After`.

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use keyrail_core::limits::Rate;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{client_ip, ip_key};
use crate::error::ApiError;
use crate::limiter::{rate_limit_headers, too_many};
use crate::state::AppState;

#[derive(Clone)]
struct IpLimit {
    state: AppState,
    name: &'static str,
    rate: Rate,
}

/// Puts every route of `routes` under the per-IP limit `name`.
pub fn ip_limited(
    routes: OpenApiRouter<AppState>,
    state: &AppState,
    name: &'static str,
    rate: Rate,
) -> OpenApiRouter<AppState> {
    let limit = IpLimit {
        state: state.clone(),
        name,
        rate,
    };
    routes.route_layer(middleware::from_fn_with_state(limit, enforce))
}

/// Counts one request from the client's address against the per-IP limit `name` (the API's
/// public routes through [`ip_limited`], the console's forms directly: one bucket for both).
pub async fn check(
    state: &AppState,
    parts: &axum::http::request::Parts,
    name: &str,
    rate: Rate,
) -> Result<keyrail_core::ratelimit::Decision, ApiError> {
    let key = format!("{name}:{}", ip_key(client_ip(parts)));
    state
        .limiter
        .check(&key, rate, 1, state.clock.now())
        .await
        // Only `on_redis_error = "deny"` gets here: refuse, as every other limit does.
        .map_err(|_| ApiError::from(keyrail_core::Error::Unavailable))
}

/// [`check`], refusing with 429 (and `Retry-After`) over the limit: for handlers that count a
/// request themselves (the console's sign-in, sign-up and reset forms).
pub async fn require(
    state: &AppState,
    parts: &axum::http::request::Parts,
    name: &str,
    rate: Rate,
) -> Result<(), ApiError> {
    let decision = check(state, parts, name, rate).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(too_many(&decision))
    }
}

async fn enforce(State(limit): State<IpLimit>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let decision = match check(&limit.state, &parts, limit.name, limit.rate).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let mut resp = if decision.allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        too_many(&decision).into_response()
    };
    // A response that already reports a narrower limit (a key's own) keeps it.
    if !resp
        .headers()
        .contains_key(crate::limiter::RATELIMIT.clone())
        || !decision.allowed
    {
        rate_limit_headers(resp.headers_mut(), limit.name, limit.rate, &decision);
    }
    resp
}
