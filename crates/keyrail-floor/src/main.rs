//! keyrail-floor: the bare axum server that `bench/run` compares keyrail against.
//!
//! It answers the same bytes as keyrail on the paths the benchmark uses, with nothing else in
//! the way (no middleware, no state), so the ratio keyrail/floor measures what keyrail adds on
//! top of axum + hyper + tokio on the same machine in the same run. Paths: `GET /healthz`,
//! `POST /api/v1/keys/verify` (parses the JSON, answers a fixed VALID body) and
//! `GET /api/v1/forward-auth` (reads the `Authorization` header, answers 200 with fixed
//! `X-Keyrail-*` headers, or 401 without the header); used by `bench/run` and `bench/verify`.
//!
//! Usage: `keyrail-floor [ADDR]` (or env `FLOOR_LISTEN`), default `127.0.0.1:0`. Prints one
//! line `listening on <addr>` on stdout once bound; stops on SIGTERM or ctrl-c.

use std::hint::black_box;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Deserialize;
use tokio::net::TcpListener;

/// Exactly what keyrail's `GET /healthz` answers.
const HEALTHZ_BODY: &str = r#"{"status":"ok"}"#;

/// A representative answer of `POST /api/v1/keys/verify` for a valid key.
const VERIFY_BODY: &str = concat!(
    r#"{"valid":true,"code":"VALID","key_id":"key_0000000000000000000000000a","#,
    r#""workspace_id":"ws_0000000000000000000000000a","name":"bench","scopes":[],"#,
    r#""meta":null,"external_id":null,"expires_at":null,"remaining":null,"rate_limit":null}"#
);

const JSON: [(HeaderName, &str); 1] = [(CONTENT_TYPE, "application/json")];

/// What keyrail's `GET /api/v1/forward-auth` sets on a 200 for a key (representative values).
const FORWARD_AUTH_HEADERS: [(HeaderName, &str); 4] = [
    (
        HeaderName::from_static("x-keyrail-principal"),
        "key_0000000000000000000000000a",
    ),
    (
        HeaderName::from_static("x-keyrail-workspace"),
        "ws_0000000000000000000000000a",
    ),
    (HeaderName::from_static("x-keyrail-scopes"), ""),
    (HeaderName::from_static("x-keyrail-external-id"), "c0000001"),
];

/// The verify request as keyrail reads it: `{key, scopes?, cost?}`.
#[derive(Deserialize)]
struct VerifyRequest {
    key: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    cost: Option<i64>,
}

async fn healthz() -> impl IntoResponse {
    (JSON, HEALTHZ_BODY)
}

async fn verify(Json(req): Json<VerifyRequest>) -> impl IntoResponse {
    // Touch the parsed fields so the parsing cannot be optimised away.
    black_box((req.key.len(), req.scopes.len(), req.cost));
    (JSON, VERIFY_BODY)
}

/// Reads the credential like keyrail does (`Authorization: Bearer <key>`), then answers 200
/// with the `X-Keyrail-*` headers and no body; 401 without credentials.
async fn forward_auth(headers: HeaderMap) -> axum::response::Response {
    let key = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match key {
        Some(k) => {
            black_box(k.len());
            (StatusCode::OK, FORWARD_AUTH_HEADERS).into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn listen_addr() -> Result<SocketAddr, String> {
    let raw = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FLOOR_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    raw.parse()
        .map_err(|e| format!("invalid listen address {raw:?}: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let addr = match listen_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keyrail-floor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("keyrail-floor: cannot listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keyrail-floor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // axum 0.8 has no `serve(..).tcp_nodelay(..)`; set it on each accepted stream instead.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("keyrail-floor: TCP_NODELAY: {e}");
        }
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/keys/verify", post(verify))
        .route("/api/v1/forward-auth", get(forward_auth));

    // stdout is line-buffered: the line is out as soon as println! returns.
    println!("listening on {local}");

    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("keyrail-floor: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
