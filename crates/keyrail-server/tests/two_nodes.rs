//! Two servers on one PostgreSQL database, sharing the master key: a revocation made on one
//! node is in force on the other within a second (the change log every node follows).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, json};
use serde_json::json;

const MASTER: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not reach the other node within 3 s");
}

#[tokio::test]
async fn revocations_reach_the_other_node_within_a_second() {
    let Some(a) =
        TestServer::start_with(Backend::Postgres, |c| c.master_key = MASTER.into(), None).await
    else {
        return;
    };
    let url = a.pg.as_ref().unwrap().url.clone();
    let b = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.master_key = MASTER.into();
            c.database_url = url;
        },
        None,
    )
    .await
    .unwrap();

    let owner = a.user("owner@example.com").await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    let (_, ws) = json(
        a.post_with("/api/v1/workspaces", &token, &json!({"name": "Acme"}))
            .await,
    )
    .await;
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (_, key) = json(
        a.post_with(
            &format!("/api/v1/w/{ws}/keys"),
            &token,
            &json!({"name": "k"}),
        )
        .await,
    )
    .await;
    let secret = key["key"].as_str().unwrap().to_owned();

    // Node B caches the key as valid, and accepts node A's access token.
    let code_on_b = async |b: &TestServer, secret: &str| -> String {
        json(
            b.post_json("/api/v1/keys/verify", &json!({"key": secret}))
                .await,
        )
        .await
        .1["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(code_on_b(&b, &secret).await, "VALID");
    assert_eq!(b.get_with("/api/v1/profile", &token).await.status(), 200);

    let resp = a
        .post_with(
            &format!("/api/v1/w/{ws}/keys/{}/revoke", key["id"].as_str().unwrap()),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let took = wait_until("key revocation", async || {
        code_on_b(&b, &secret).await == "REVOKED"
    })
    .await;
    eprintln!("key revocation reached node B after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    let resp = a
        .http
        .post(a.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let took = wait_until("logout", async || {
        b.get_with("/api/v1/profile", &token).await.status() == 401
    })
    .await;
    eprintln!("logout reached node B after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    b.stop().await;
    a.stop().await;
}
