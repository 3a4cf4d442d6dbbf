//! Unauthenticated clients cannot exhaust the server: no request grows memory without bound
//! (metrics labels), and idle or half-open connections cannot starve the others.

mod common;

use common::TestServer;

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
