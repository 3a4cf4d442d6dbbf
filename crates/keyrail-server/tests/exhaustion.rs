//! Unauthenticated clients cannot exhaust the server: no request grows memory without bound
//! (metrics labels), and idle or half-open connections cannot starve the others.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer};

/// Odd methods and paths all fall into a fixed set of labels: `/metrics` stays small.
#[tokio::test]
async fn odd_methods_and_paths_do_not_grow_the_metrics() {
    let s = TestServer::start().await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let http = s.http.clone();
        let base = s.base.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..5_000).step_by(8) {
                let method = reqwest::Method::from_bytes(format!("ODD{i}").as_bytes()).unwrap();
                let path = match i % 3 {
                    0 => format!("/no/such/path/{i}"),
                    1 => format!("/api/v1/w/ws_{i}/keys"),
                    _ => format!("/%{i:x}?q={i}"),
                };
                let resp = http
                    .request(method, format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.len() < 64 * 1024,
        "/metrics grew to {} bytes:\n{}",
        body.len(),
        &body[..4096.min(body.len())]
    );
    assert!(
        body.contains(r#"method="OTHER",route="unmatched""#),
        "{body}"
    );
    assert!(
        body.contains(r#"method="OTHER",route="/api/v1/w/{workspace_id}/keys""#),
        "{body}"
    );
    assert!(!body.contains("ODD"), "{body}");
    s.stop().await;
}

/// Opens `n` connections that send the start of a request and never finish it.
async fn half_open(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        socks.push(sock);
    }
    socks
}

/// How many of `socks` the server closes within `wait`.
async fn closed_within(socks: Vec<tokio::net::TcpStream>, wait: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let mut set = tokio::task::JoinSet::new();
    for mut sock in socks {
        set.spawn(async move {
            let mut buf = [0u8; 256];
            match tokio::time::timeout(wait, sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => true,
                Ok(Ok(_)) | Err(_) => false,
            }
        });
    }
    let mut closed = 0;
    while let Some(r) = set.join_next().await {
        closed += usize::from(r.unwrap());
    }
    closed
}

/// Slowloris: 2,000 half-open connections from one address neither starve a new client nor
/// stay open beyond the per-address cap (the oldest of them are closed to make room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_cannot_starve_the_server() {
    let s = TestServer::start().await;
    let addr = s.server.as_ref().unwrap().local_addr();
    let idle = half_open(addr, 2_000).await;
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(3),
        reqwest::Client::new().get(s.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answers within 3 s")
    .unwrap();
    assert_eq!(resp.status(), 200);
    eprintln!(
        "/healthz after 2,000 half-open sockets: {:?}",
        started.elapsed()
    );
    let closed = closed_within(idle, Duration::from_secs(2)).await;
    assert!(
        closed >= 1_000,
        "only {closed} of 2,000 half-open sockets were closed; the per-address cap is 1,000"
    );
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("keyrail_connections_closed_total{reason=\"evicted\"}"),
        "{metrics}"
    );
    s.stop().await;
}

/// A connection that never completes its request head is closed after `header_read_timeout`.
#[tokio::test]
async fn a_half_open_connection_is_closed_after_the_header_timeout() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.header_read_timeout = "1s".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let addr = s.server.as_ref().unwrap().local_addr();
    let started = Instant::now();
    let idle = half_open(addr, 3).await;
    // A connection that sends nothing at all is closed too.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut all = idle;
    all.push(silent);
    assert_eq!(closed_within(all, Duration::from_secs(5)).await, 4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    // The server still answers.
    assert_eq!(s.get("/healthz").await.status(), 200);
    s.stop().await;
}

/// Reads one `/healthz` answer (its body ends the response) from a kept-alive connection.
async fn healthz_on(sock: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(br#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut buf))
            .await
            .expect("an answer within 3 s")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).unwrap()
}

/// Making room for new connections closes half-open ones, never a connection in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_outlives_a_flood_of_half_open_ones() {
    let s = TestServer::start().await;
    let addr = s.server.as_ref().unwrap().local_addr();
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"));
    let idle = half_open(addr, 1_500).await;
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"));
    drop(idle);
    s.stop().await;
}

/// Over TLS too: a connection that never starts (or never finishes) its handshake is closed
/// after `header_read_timeout`.
#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.tls_cert = fixtures.join("cert.pem");
            c.tls_key = fixtures.join("key.pem");
            c.header_read_timeout = "1s".parse().unwrap();
        },
        None,
    )
    .await
    .unwrap();
    let addr = s.server.as_ref().unwrap().local_addr();
    let started = Instant::now();
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The first bytes of a TLS ClientHello record, and nothing more.
    tokio::io::AsyncWriteExt::write_all(&mut partial, &[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert_eq!(
        closed_within(vec![silent, partial], Duration::from_secs(5)).await,
        2
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    s.stop().await;
}
