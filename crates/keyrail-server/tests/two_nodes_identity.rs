//! Two servers on one PostgreSQL database, as users see them: an access token made on one node
//! works on the other, also right after a signing-key rotation; logouts, password changes,
//! lockouts and unlocks on one node hold on the other; a rotation on one node is published by
//! both at once.

mod common;

use std::time::Duration;

use common::{Backend, PASSWORD, TestServer, b64, json, wait_until};
use keyrail_core::identity::keyring::ROTATE_AFTER_SECS;
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);
const MASTER: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// Node A on a fresh PostgreSQL database (refreshing its signing keys every `a_keys`), node B
/// on the same database (every `b_keys`); `None` without PostgreSQL outside CI.
async fn two_nodes(a_keys: Duration, b_keys: Duration) -> Option<(TestServer, TestServer)> {
    let a = TestServer::start_options(
        Backend::Postgres,
        |c| c.master_key = MASTER.into(),
        |o| o.keys_refresh = a_keys,
    )
    .await?;
    let url = a.pg.as_ref().unwrap().url.clone();
    let b = TestServer::start_options(
        Backend::Sqlite,
        |c| {
            c.master_key = MASTER.into();
            c.database_url = url;
        },
        |o| o.keys_refresh = b_keys,
    )
    .await
    .unwrap();
    Some((a, b))
}

async fn jwks(node: &TestServer) -> Value {
    let (status, body) = json(node.get("/.well-known/jwks.json").await).await;
    assert_eq!(status, 200);
    body
}

fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(&b64(token.split('.').next().unwrap())).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn login(node: &TestServer, email: &str, password: &str) -> String {
    let (status, body) = node.login_as(email, password).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn profile(node: &TestServer, token: &str) -> u16 {
    node.get_with("/api/v1/profile", token)
        .await
        .status()
        .as_u16()
}

/// Signs `email` up on node A (its token works on B), then moves both clocks past the signing
/// key's rotation age and waits for A's rotation; A's next login, signed with the new key.
async fn rotate_on_a(a: &TestServer, b: &TestServer, email: &str) -> String {
    let first = a.user(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(profile(b, &first).await, 200, "A's token works on B");
    assert_eq!(jwks(b).await["keys"].as_array().unwrap().len(), 1);
    for node in [a, b] {
        node.clock.advance_secs(ROTATE_AFTER_SECS + 60);
    }
    wait_until("node A's rotation", async || {
        jwks(a).await["keys"].as_array().unwrap().len() == 2
    })
    .await;
    let second = login(a, email, PASSWORD).await;
    assert_ne!(kid_of(&second), kid_of(&first), "signed with the new key");
    second
}

/// Node A rotates its signing key (its clock past the rotation age, its periodic refresh):
/// a token A signs with the new key is accepted on B at once (B reloads the keys for the
/// unknown `kid`), both nodes publish the same keys, and the store holds one new key.
#[tokio::test]
async fn a_rotated_signing_key_is_accepted_on_the_other_node_at_once() {
    let Some((a, b)) = two_nodes(Duration::from_millis(50), MINUTE).await else {
        return;
    };
    assert_eq!(jwks(&a).await, jwks(&b).await);
    let second = rotate_on_a(&a, &b, "rotate@example.com").await;
    assert_eq!(
        profile(&b, &second).await,
        200,
        "B accepts the new key's token at once"
    );
    let published = jwks(&a).await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
    assert_eq!(published["keys"][0]["kid"], kid_of(&second).as_str());
    assert_eq!(
        jwks(&b).await,
        published,
        "both nodes publish the same keys"
    );
    assert_eq!(
        a.query_strings("SELECT kid FROM signing_keys").await.len(),
        2,
        "one new key in the store"
    );

    // A token naming a key no node has stays refused (after B's reload of this second).
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "nope"}).to_string());
    let forged = format!("{header}.{}", second.split_once('.').unwrap().1);
    assert_eq!(profile(&b, &forged).await, 401);
    assert_eq!(profile(&b, &second).await, 200);

    b.stop().await;
    a.stop().await;
}

/// Node A rotates the signing key: node B publishes the new key within a second too, before
/// any token of it reaches B (the rotation is announced through the change log), so a verifier
/// fetching the JWKS through a load balancer can check A's new tokens whichever node answers.
#[tokio::test]
async fn a_rotation_on_one_node_is_published_by_the_other_at_once() {
    let Some((a, b)) = two_nodes(Duration::from_millis(50), MINUTE).await else {
        return;
    };
    let second = rotate_on_a(&a, &b, "jwks@example.com").await;
    let took = wait_until("the new key in node B's JWKS", async || {
        jwks(&b).await["keys"][0]["kid"] == kid_of(&second).as_str()
    })
    .await;
    eprintln!("node B published node A's new key after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(jwks(&b).await, jwks(&a).await, "both publish the same keys");

    b.stop().await;
    a.stop().await;
}

/// Both nodes find the signing key due for rotation at the same moment: the store keeps one
/// new key, and both sign with it.
#[tokio::test]
async fn nodes_rotating_at_once_make_one_key() {
    let fast = Duration::from_millis(20);
    let Some((a, b)) = two_nodes(fast, fast).await else {
        return;
    };
    let email = "both@example.com";
    let first = a.user(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for node in [&a, &b] {
        node.clock.advance_secs(ROTATE_AFTER_SECS + 60);
    }
    wait_until("both nodes' rotation", async || {
        jwks(&a).await["keys"].as_array().unwrap().len() == 2
            && jwks(&b).await["keys"].as_array().unwrap().len() == 2
    })
    .await;
    // A few more refreshes on each node change nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.query_strings("SELECT kid FROM signing_keys").await.len(),
        2,
        "one new key for the cluster"
    );
    assert_eq!(jwks(&a).await, jwks(&b).await);
    let on_a = login(&a, email, PASSWORD).await;
    let on_b = login(&b, email, PASSWORD).await;
    assert_ne!(kid_of(&on_a), kid_of(&first));
    assert_eq!(kid_of(&on_a), kid_of(&on_b), "both sign with the new key");
    assert_eq!(profile(&a, &on_b).await, 200);
    assert_eq!(profile(&b, &on_a).await, 200);

    b.stop().await;
    a.stop().await;
}

/// A password change on A ends the sessions made on B; a logout on A ends that session on B.
#[tokio::test]
async fn a_password_change_on_one_node_ends_sessions_on_the_other() {
    let Some((a, b)) = two_nodes(MINUTE, MINUTE).await else {
        return;
    };
    let email = "change@example.com";
    let on_a = a.user(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_b = login(&b, email, PASSWORD).await;
    let other_on_b = login(&b, email, PASSWORD).await;
    assert_eq!(profile(&b, &on_b).await, 200);

    // A logout on A ends only that session, on B too.
    let logout_a = login(&a, email, PASSWORD).await;
    assert_eq!(profile(&b, &logout_a).await, 200);
    let resp = a
        .http
        .post(a.url("/api/v1/auth/logout"))
        .bearer_auth(&logout_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let took = wait_until("the logout on B", async || {
        profile(&b, &logout_a).await == 401
    })
    .await;
    eprintln!("the logout reached node B after {took:?}");
    assert_eq!(profile(&b, &on_b).await, 200, "other sessions live on");

    let new_password = "a brand new passphrase 77";
    let resp = a
        .post_with(
            "/api/v1/profile/password",
            &on_a,
            &json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let took = wait_until("the password change on B", async || {
        profile(&b, &on_b).await == 401 && profile(&b, &other_on_b).await == 401
    })
    .await;
    eprintln!("the password change reached node B after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(b.login_as(email, PASSWORD).await.0, 401, "old password");
    let fresh = login(&b, email, new_password).await;
    assert_eq!(profile(&a, &fresh).await, 200);

    b.stop().await;
    a.stop().await;
}

/// Failed logins split across both nodes lock the account on both; an unlock on A lets the
/// user in on B.
#[tokio::test]
async fn lockouts_and_unlocks_hold_across_nodes() {
    let Some((a, b)) = two_nodes(MINUTE, MINUTE).await else {
        return;
    };
    let email = "locked@example.com";
    let user = a.user(email).await;
    let user_id = user["user"]["id"].as_str().unwrap().to_owned();
    let root = a.user("root@example.com").await;
    let root_id = root["user"]["id"].as_str().unwrap();
    a.exec_sql(&format!(
        "UPDATE users SET superuser = TRUE WHERE id = '{root_id}'"
    ))
    .await;
    let root_token = root["access_token"].as_str().unwrap().to_owned();

    // 5 (the default limits.account_lock_after) failures, alternating nodes.
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(node.login_as(email, "not the password at all").await.0, 401);
    }
    assert_eq!(b.login_as(email, PASSWORD).await.0, 429, "locked on B");
    assert_eq!(a.login_as(email, PASSWORD).await.0, 429, "locked on A");

    let (status, body) = a
        .call(
            "POST",
            &format!("/api/v1/admin/users/{user_id}/unlock"),
            &root_token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.login_as(email, PASSWORD).await.0, 200, "unlocked on B");

    b.stop().await;
    a.stop().await;
}
