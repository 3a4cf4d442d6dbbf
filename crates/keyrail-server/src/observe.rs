//! The request middleware: request ids, Prometheus counters and latency histograms by route
//! template, one log line per request, the API request log's record ([`crate::request_log`]),
//! the contract's JSON body for errors the framework produced itself (404, 405, 408, 413,
//! panics), and `X-Content-Type-Options: nosniff` on every response.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, InternalDetail};
use crate::keyauth::{RateSlot, key_rate_headers};
use crate::metrics::HttpMetrics;
use crate::request_log::{self, Record, RequestLog, Who};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, also echoed in `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A request id: this process's random prefix and a counter, hex (`3f9a0c1d7e2b4a65-00000000002a`).
/// Unique without a random draw or a clock read per request.
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::now_v7().as_u64_pair().1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 29];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..16 {
        buf[i] = HEX[((prefix >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf[16] = b'-';
    for i in 0..12 {
        buf[17 + i] = HEX[((n >> (44 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).expect("ascii")
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// What the request log needs from the request, taken before it goes to the handler.
struct LogStart {
    ip: std::net::IpAddr,
    user_agent: Option<Box<str>>,
    /// The workspace of a `/api/v1/w/{workspace_id}/...` route (for a person's request).
    route_workspace: Option<keyrail_core::id::WorkspaceId>,
}

fn log_start(req: &Request, route: &str) -> LogStart {
    LogStart {
        ip: crate::auth::client_ip_of(req.extensions(), req.headers()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .map(request_log::user_agent),
        route_workspace: route
            .starts_with("/api/v1/w/{workspace_id}")
            .then(|| req.uri().path().split('/').nth(4))
            .flatten()
            .and_then(keyrail_core::id::WorkspaceId::parse),
    }
}

pub async fn observe(State(log): State<Arc<RequestLog>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| acceptable_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let rate_slot = req
        .headers()
        .contains_key(header::AUTHORIZATION)
        .then(RateSlot::default);
    if let Some(slot) = &rate_slot {
        req.extensions_mut().insert(slot.clone());
    }
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    // The request log: API routes only (a path that matched no route is not logged: its raw
    // text could hold anything).
    let logged = match &matched {
        Some(m) if log.enabled() && request_log::logged_route(m.as_str()) => {
            Some((m.clone(), log_start(&req, m.as_str())))
        }
        _ => None,
    };

    let (mut resp, who) = if logged.is_some() {
        request_log::scoped(next.run(req)).await
    } else {
        (next.run(req).await, None)
    };

    let status = resp.status();
    if (status.is_client_error() || status.is_server_error())
        && !is_json(&resp)
        && resp
            .extensions()
            .get::<crate::console::view::ErrorPage>()
            .is_none()
    {
        let mut replaced = ApiError::for_status(status).into_response();
        // Keep what the framework said about the failure (e.g. `Allow` on a 405).
        for (name, value) in resp.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                replaced.headers_mut().insert(name.clone(), value.clone());
            }
        }
        std::mem::swap(replaced.extensions_mut(), resp.extensions_mut());
        resp = replaced;
    }
    let headers = resp.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    // API.md "Conventions": no response is content-sniffed.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some((limit, decision)) = rate_slot.and_then(|s| s.take()) {
        key_rate_headers(resp.headers_mut(), limit, &decision);
    }

    let elapsed = start.elapsed();
    let template = matched.as_ref().map(MatchedPath::as_str);
    HttpMetrics::global().record(&method, template, status.as_u16(), elapsed);
    let route = template.unwrap_or(crate::metrics::UNMATCHED);

    if let Some((route, start)) = logged {
        // A person's request belongs to the workspace of its route, unless it was answered
        // 404 (the caller is no member there, or nothing is there).
        let route_workspace = match who {
            Some(Who::User(_)) if status != axum::http::StatusCode::NOT_FOUND => {
                start.route_workspace
            }
            _ => None,
        };
        log.push(Record {
            at: log.clock.now(),
            method: method.clone(),
            route,
            status: status.as_u16(),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            who,
            route_workspace,
            ip: start.ip,
            user_agent: start.user_agent,
            request_id: request_id.clone(),
        });
    }

    let rid = request_id.to_str().unwrap_or("");
    if let Some(InternalDetail(detail)) = resp.extensions().get::<InternalDetail>() {
        tracing::error!(request_id = rid, %method, route, status = status.as_u16(), error = %detail, "request failed");
    } else if status.is_server_error() {
        tracing::error!(request_id = rid, %method, route, status = status.as_u16(), latency_us = elapsed.as_micros() as u64, "request failed");
    } else {
        tracing::debug!(request_id = rid, %method, route, status = status.as_u16(), latency_us = elapsed.as_micros() as u64, "request");
    }
    resp
}

/// The answer of the catch-panic layer: a 500 in the contract's shape; the panic is logged.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "unknown panic payload".to_owned()
    };
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert!(acceptable_request_id(&HeaderValue::from_static(
            "abc-123_x.y"
        )));
        assert!(!acceptable_request_id(&HeaderValue::from_static("")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("a b")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("x\"}{")));
        let long = "a".repeat(65);
        assert!(!acceptable_request_id(
            &HeaderValue::from_str(&long).unwrap()
        ));
        assert!(acceptable_request_id(&new_request_id()));
    }
}
