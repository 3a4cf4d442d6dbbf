//! Black-box tests of the HTTP skeleton: health, readiness, metrics, OpenAPI, the error shapes,
//! request ids, panics, timeouts, TLS and graceful shutdown (the docs page: `tests/docs.rs`).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use common::{Backend, TestServer, json};
use keyrail_server::AppState;
use keyrail_server::json::ApiJson;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Probe {
    name: String,
    count: Option<u32>,
}

/// Routes only these tests mount, under the same middleware as the server's own.
fn probe_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/__probe/echo",
            post(|ApiJson(p): ApiJson<Probe>| async move { axum::Json(json!({"name": p.name})) }),
        )
        .route("/__probe/items/{id}", get(|| async { "item" }))
        .route(
            "/__probe/panic",
            get(|| async {
                panic!("secret detail that must not leak");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/__probe/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        )
}

async fn probe_server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, |_| {}, Some(probe_routes()))
        .await
        .unwrap()
}

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let s = TestServer::start().await;
    let resp = s.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), r#"{"status":"ok"}"#);
    let (status, body) = json(s.get("/readyz").await).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    s.stop().await;
}

#[tokio::test]
async fn readyz_on_postgres_and_503_when_the_store_goes_away() {
    let Some(s) = TestServer::start_with(Backend::Postgres, |_| {}, None).await else {
        return;
    };
    let (status, body) = json(s.get("/readyz").await).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    // Drop the database under the running server: readiness must say so, not hang or panic.
    let pg_name = s.pg.as_ref().unwrap().name.clone();
    let admin = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| keyrail_store::testing::DEFAULT_TEST_POSTGRES_URL.to_owned());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{pg_name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let resp = s.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let (_, body) = json(resp).await;
    assert_eq!(body["code"], "store_unavailable");
    let (status, _) = json(s.get("/healthz").await).await;
    assert_eq!(status, 200, "the process itself is still up");
    s.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_error_shape() {
    let s = TestServer::start().await;
    let (status, body) = json(s.get("/api/v1/nothing-here").await).await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "Not found", "code": "not_found"}))
    );
    let resp = s.http.delete(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    let (_, body) = json(resp).await;
    assert_eq!(
        body,
        json!({"error": "Method not allowed", "code": "method_not_allowed"})
    );
    s.stop().await;
}

#[tokio::test]
async fn request_bodies_are_checked_with_clear_errors() {
    let s = probe_server().await;
    let url = s.url("/__probe/echo");

    let (status, body) = json(s.post_json("/__probe/echo", &json!({"name": "a"})).await).await;
    assert_eq!((status, body), (200, json!({"name": "a"})));

    let (status, body) = json(
        s.post_json("/__probe/echo", &json!({"name": "a", "is_admin": true}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(body["error"], "Unknown field `is_admin`");

    let (status, body) = json(s.post_json("/__probe/echo", &json!({"count": 1})).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Missing field `name`"))
    );

    let (status, body) = json(
        s.post_json("/__probe/echo", &json!({"name": "a", "count": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("`count`"),
        "{body}"
    );

    let malformed = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = json(malformed).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_request");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON"),
        "{body}"
    );

    let text = s
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("name=a")
        .send()
        .await
        .unwrap();
    let (status, body) = json(text).await;
    assert_eq!(
        (status, body),
        (
            415,
            json!({"error": "Content-Type must be application/json", "code": "unsupported_media_type"})
        )
    );
    let none = s.http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(none.status(), 415);

    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(64 * 1024));
    let resp = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Just under the limit is fine.
    let fits = format!("{{\"name\": \"{}\"}}", "a".repeat(64 * 1024 - 20));
    let resp = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(fits)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let s = TestServer::start().await;
    let resp = s
        .http
        .get(s.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc.123");
    let resp = s
        .http
        .get(s.url("/healthz"))
        .header("x-request-id", "bad id\"{}")
        .send()
        .await
        .unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made, "bad id\"{}");
    assert_eq!(made.len(), 29, "{made}");
    let other = s.get("/nope").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(made, other);
    s.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_without_details() {
    let s = probe_server().await;
    let (status, body) = json(s.get("/__probe/panic").await).await;
    assert_eq!(
        (status, body),
        (
            500,
            json!({"error": "Internal server error", "code": "internal_error"})
        )
    );
    // The server is still serving.
    assert_eq!(s.get("/healthz").await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn slow_requests_time_out_with_408() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.request_timeout = "1s".parse().unwrap(),
        Some(probe_routes()),
    )
    .await
    .unwrap();
    let (status, body) = json(s.get("/__probe/slow").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("request_timeout"))
    );
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let s = probe_server().await;
    for id in ["a", "b", "c"] {
        s.get(&format!("/__probe/items/{id}")).await;
    }
    s.get("/definitely/not/a/route").await;
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("keyrail_http_requests_total")
                && l.contains(r#"route="/__probe/items/{id}""#)
        })
        .unwrap_or_else(|| panic!("no counter for the template:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(
        !text.contains("/__probe/items/a"),
        "raw paths must not become labels"
    );
    assert!(text.contains(r#"route="unmatched""#));
    assert!(text.contains("keyrail_http_request_duration_seconds_bucket"));
    s.stop().await;
}

/// Walks every `$ref` in the document and checks that it resolves.
fn check_refs(doc: &Value, node: &Value, seen: &mut usize) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("external $ref {r}"));
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
                *seen += 1;
            }
            for v in map.values() {
                check_refs(doc, v, seen);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v, seen)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_is_valid_3_1() {
    let s = TestServer::start().await;
    let (status, doc) = json(s.get("/api/v1/openapi.json").await).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "keyrail");
    assert!(doc["info"]["version"].is_string());
    let mut refs = 0;
    check_refs(&doc, &doc, &mut refs);
    assert!(refs > 0);
    for scheme in ["bearer", "basic", "cookie"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let mut op_ids = HashSet::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let declared: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(
                ["get", "post", "put", "patch", "delete"].contains(&method.as_str()),
                "{method}"
            );
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(op_ids.insert(id.to_owned()), "duplicate operationId {id}");
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} lists no responses");
            for (code, r) in responses {
                assert!(code == "default" || code.parse::<u16>().is_ok(), "{code}");
                // A shared response is a `$ref` into components/responses.
                let r = match r["$ref"].as_str() {
                    Some(ptr) => doc
                        .pointer(ptr.trim_start_matches('#'))
                        .unwrap_or_else(|| panic!("{method} {path} {code}: {ptr} missing")),
                    None => r,
                };
                assert!(r["description"].is_string(), "{method} {path} {code}");
            }
            let params: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(params, declared, "{method} {path}: path parameters");
        }
    }
    for served in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/docs",
    ] {
        assert!(
            paths.contains_key(served),
            "{served} missing from the document"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let s = probe_server().await;
    let url = s.url("/__probe/slow");
    let client = s.http.clone();
    let in_flight =
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = s.base.clone();
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "shutdown did not wait"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    let after = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(after.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn serves_https_when_cert_and_key_are_set() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        self, pki_types::CertificateDer, pki_types::ServerName, pki_types::pem::PemObject,
    };

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.tls_cert = fixtures.join("cert.pem");
            c.tls_key = fixtures.join("key.pem");
        },
        None,
    )
    .await
    .unwrap();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let addr = s.server.as_ref().unwrap().local_addr();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("cert.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the configured certificate");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");

    // Plain HTTP on the TLS port is refused.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    s.stop().await;
}

/// The client preface of HTTP/2 and an empty SETTINGS frame; the server answers with its own
/// SETTINGS frame (type 4) when it speaks HTTP/2.
async fn speaks_http2<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut head))
        .await
        .is_ok_and(|r| r.is_ok() && head[3] == 4)
}

#[tokio::test]
async fn serves_http2_in_clear_text_and_over_tls() {
    use std::sync::Arc;
    use tokio_rustls::rustls::{
        self, pki_types::CertificateDer, pki_types::ServerName, pki_types::pem::PemObject,
    };

    let plain = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(plain.server.as_ref().unwrap().local_addr())
        .await
        .unwrap();
    assert!(speaks_http2(tcp).await, "h2c with prior knowledge");
    plain.stop().await;

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.tls_cert = fixtures.join("cert.pem");
            c.tls_key = fixtures.join("key.pem");
        },
        None,
    )
    .await
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("cert.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(s.server.as_ref().unwrap().local_addr())
        .await
        .unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert!(speaks_http2(stream).await, "h2 over TLS");
    s.stop().await;
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_in(dir.path());
    config.tls_cert = dir.path().join("missing.pem");
    config.tls_key = dir.path().join("missing-key.pem");
    let err = match keyrail_server::start(config, Default::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without its certificate"),
    };
    assert!(
        err.contains("tls_cert") && err.contains("missing.pem"),
        "{err}"
    );
}
