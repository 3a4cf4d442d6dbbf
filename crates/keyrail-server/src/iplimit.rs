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

async fn enforce(State(limit): State<IpLimit>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let key = format!("{}:{}", limit.name, ip_key(client_ip(&parts)));
    let now = limit.state.clock.now();
    let decision = match limit.state.limiter.check(&key, limit.rate, 1, now).await {
        Ok(d) => d,
        // Only `on_redis_error = "deny"` gets here: refuse, as every other limit does.
        Err(_) => return ApiError::from(keyrail_core::Error::Unavailable).into_response(),
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
