//! Two servers on one PostgreSQL database, sharing the master key: a revocation made on one
//! node is in force on the other within a second (the change log every node follows).

mod common;

use std::time::Duration;

use common::{Backend, TestServer, json, open_jwe, wait_until};
use serde_json::json;

const MASTER: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// Node A on a fresh PostgreSQL database, node B on the same database; `None` without
/// PostgreSQL outside CI.
async fn two_nodes() -> Option<(TestServer, TestServer)> {
    two_nodes_polling(Duration::from_secs(1)).await
}

/// The same, with node B polling the change log only every `poll`.
async fn two_nodes_polling(poll: Duration) -> Option<(TestServer, TestServer)> {
    let a =
        TestServer::start_with(Backend::Postgres, |c| c.master_key = MASTER.into(), None).await?;
    let url = a.pg.as_ref().unwrap().url.clone();
    let b = TestServer::start_options(
        Backend::Sqlite,
        |c| {
            c.master_key = MASTER.into();
            c.database_url = url;
        },
        |o| o.change_poll = poll,
    )
    .await
    .unwrap();
    Some((a, b))
}

/// A new key on node `a` (its JSON, with the secret in `key`).
async fn new_key(a: &TestServer, token: &str, ws: &str, name: &str) -> serde_json::Value {
    let (status, key) = json(
        a.post_with(
            &format!("/api/v1/w/{ws}/keys"),
            token,
            &json!({ "name": name }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key
}

/// Logs out on node `a`; how long until node `b` refuses the access token.
async fn logout_reaches(a: &TestServer, b: &TestServer, token: &str, what: &str) -> Duration {
    let resp = a
        .http
        .post(a.url("/api/v1/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    wait_until(what, async || {
        b.get_with("/api/v1/profile", token).await.status() == 401
    })
    .await
}

#[tokio::test]
async fn revocations_reach_the_other_node_within_a_second() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };

    let (token, ws) = a.owner_with_workspace("owner@example.com").await;
    let key = new_key(&a, &token, &ws, "k").await;
    let secret = key["key"].as_str().unwrap().to_owned();

    // Node B caches the key as valid, and accepts node A's access token.
    assert_eq!(b.verify_code(&secret).await, "VALID");
    assert_eq!(b.get_with("/api/v1/profile", &token).await.status(), 200);

    a.revoke_key(&token, &ws, key["id"].as_str().unwrap()).await;
    let took = wait_until("key revocation", async || {
        b.verify_code(&secret).await == "REVOKED"
    })
    .await;
    eprintln!("key revocation reached node B after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    let took = logout_reaches(&a, &b, &token, "logout").await;
    eprintln!("logout reached node B after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    b.stop().await;
    a.stop().await;
}

/// An app token made on one node works on the other (the inner-token keys are shared through
/// the store), and revoking its grant or rotating the app's secret on one node stops it on the
/// other at once: every use checks the grant and the app in the store.
#[tokio::test]
async fn app_tokens_work_across_nodes_and_stop_at_once() {
    use base64::Engine as _;
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let owner = a.user("apps-owner@example.com").await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    let (_, ws) = json(
        a.post_with("/api/v1/workspaces", &token, &json!({"name": "Acme"}))
            .await,
    )
    .await;
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (_, profile) = json(
        a.post_with("/api/v1/builder-profiles", &token, &json!({"name": "Dev"}))
            .await,
    )
    .await;
    let (status, app) = json(
        a.post_with(
            "/api/v1/apps",
            &token,
            &json!({"name": "Sync", "builder_profile_id": profile["id"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&secret)
        .unwrap();

    // A grant and a token per grant, both made on node A.
    let mint = async |grant: &str| -> String {
        let (status, body) = json(
            a.http
                .post(a.url(&format!("/api/v1/apps/{client_id}/tokens")))
                .basic_auth(&client_id, Some(&secret))
                .json(&json!({"grant_id": grant}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let outer = body["token"].as_str().unwrap();
        let jwe = outer.strip_prefix(&format!("{client_id}:")).unwrap();
        let (_, payload) = open_jwe(jwe, &key).expect("the outer layer opens with the secret");
        payload["api_token"].as_str().unwrap().to_owned()
    };
    let grant = async |scopes: &[&str]| -> String {
        let (status, g) = json(
            a.post_with(
                &format!("/api/v1/w/{ws}/grants"),
                &token,
                &json!({"client_id": client_id, "scopes": scopes, "shared": scopes.len() > 1}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{g}");
        g["id"].as_str().unwrap().to_owned()
    };
    let personal = grant(&["workspace:read"]).await;
    let shared = grant(&["workspace:read", "members:read"]).await;
    let first = mint(&personal).await;
    let second = mint(&shared).await;
    let path = format!("/api/v1/w/{ws}");
    assert_eq!(
        b.get_with(&path, &first).await.status(),
        200,
        "node B opens A's token"
    );
    assert_eq!(b.get_with(&path, &second).await.status(), 200);

    let resp = a
        .http
        .delete(a.url(&format!("/api/v1/w/{ws}/grants/{personal}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        b.get_with(&path, &first).await.status(),
        401,
        "revoked on A, dead on B"
    );
    assert_eq!(b.get_with(&path, &second).await.status(), 200);

    let resp = a
        .post_with(
            &format!("/api/v1/apps/{client_id}/secret"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        b.get_with(&path, &second).await.status(),
        401,
        "new secret on A, dead on B"
    );

    b.stop().await;
    a.stop().await;
}

/// With node B's poll an hour apart, only PostgreSQL's announcements (LISTEN/NOTIFY) can carry
/// node A's revocations to it: each one still takes effect on B, in milliseconds.
#[tokio::test]
async fn announced_revocations_need_no_poll() {
    let Some((a, b)) = two_nodes_polling(Duration::from_secs(3600)).await else {
        return;
    };
    let (token, ws) = a.owner_with_workspace("notify@example.com").await;
    let mut took = Vec::new();
    for i in 0..10 {
        let key = new_key(&a, &token, &ws, &format!("k{i}")).await;
        let secret = key["key"].as_str().unwrap().to_owned();
        // Cached as valid on B: from here on only an eviction can change B's answer.
        assert_eq!(b.verify_code(&secret).await, "VALID");
        a.revoke_key(&token, &ws, key["id"].as_str().unwrap()).await;
        took.push(
            wait_until("an announced revocation", async || {
                b.verify_code(&secret).await == "REVOKED"
            })
            .await,
        );
    }
    took.sort();
    eprintln!("announced revocations reached node B after {took:?}");

    // A session revoked on A (logout) is announced the same way.
    assert_eq!(b.get_with("/api/v1/profile", &token).await.status(), 200);
    logout_reaches(&a, &b, &token, "an announced logout").await;

    b.stop().await;
    a.stop().await;
}

/// A key node B has looked up and found unknown (and so remembers briefly as unknown) works on
/// B as soon as node A imports it, and a new key as soon as A creates it: creation and import
/// announce the new keys through the change log, which drops B's negative entries.
#[tokio::test]
async fn imported_keys_work_on_the_other_node_at_once() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (token, ws) = a.owner_with_workspace("import@example.com").await;
    let imported = "sk_live_two_nodes_0123456789abcdef";
    assert_eq!(b.verify_code(imported).await, "NOT_FOUND");
    assert_eq!(b.verify_code(imported).await, "NOT_FOUND", "now remembered");
    let (status, body) = json(
        a.post_with(
            &format!("/api/v1/w/{ws}/keys/import"),
            &token,
            &json!({"keys": [{"key": imported, "name": "legacy"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let took = wait_until("an imported key", async || {
        b.verify_code(imported).await == "VALID"
    })
    .await;
    eprintln!("the import reached node B after {took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    b.stop().await;
    a.stop().await;
}
