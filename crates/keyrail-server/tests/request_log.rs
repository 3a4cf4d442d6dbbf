//! Black-box tests of the API request log (API.md "Audit, logs, export"): verify, forward-auth
//! and management calls are recorded with their principal, workspace, route and status, never a
//! secret; the listings filter and page; a workspace sees only its own requests; the admin
//! listing is for superusers; `api_logs = false` records nothing.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, json};
use serde_json::{Value, json};

/// A test's server, a superuser, and an owner with a workspace and a key in it.
struct T {
    s: TestServer,
    root: String,
    owner: String,
    ws: String,
    key: String,
    key_id: String,
}

impl T {
    async fn new(backend: Backend) -> Option<Self> {
        let s = TestServer::start_with(backend, |_| {}, None).await?;
        Some(Self::on(s).await)
    }

    async fn on(s: TestServer) -> Self {
        let root = superuser(&s, "root@example.com").await;
        let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
        let (key, key_id) = make_key(&s, &owner, &ws, &["audit:read"]).await;
        Self {
            s,
            root,
            owner,
            ws,
            key,
            key_id,
        }
    }

    /// The admin listing with `query`, as the superuser: status and body.
    async fn admin(&self, query: &str) -> (u16, Value) {
        self.s
            .call(
                "GET",
                &format!("/api/v1/admin/logs{query}"),
                &self.root,
                None,
            )
            .await
    }

    /// Polls the admin listing until a row with `request_id` shows up (the writer batches for up
    /// to a second); that row.
    async fn row(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.admin("?limit=200").await;
            assert_eq!(status, 200, "{body}");
            if let Some(r) = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["request_id"] == request_id)
            {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log row for {request_id}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn superuser(s: &TestServer, email: &str) -> String {
    let root = s.user(email).await;
    let store = &s.server.as_ref().unwrap().state.store;
    let id = keyrail_core::id::UserId::parse(root["user"]["id"].as_str().unwrap()).unwrap();
    store
        .set_superuser(&id, true, keyrail_core::Timestamp::now())
        .await
        .unwrap();
    root["access_token"].as_str().unwrap().to_owned()
}

/// A new key of `ws` with `scopes`: the key and its id.
async fn make_key(s: &TestServer, token: &str, ws: &str, scopes: &[&str]) -> (String, String) {
    let (status, k) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/keys"),
            token,
            Some(&json!({"name": "svc", "scopes": scopes})),
        )
        .await;
    assert_eq!(status, 201, "{k}");
    (
        k["key"].as_str().unwrap().to_owned(),
        k["id"].as_str().unwrap().to_owned(),
    )
}

/// POST verify of `key` with a request id and a user agent; the answer's code.
async fn verify(s: &TestServer, key: &str, rid: &str) -> String {
    let resp = s
        .http
        .post(s.url("/api/v1/keys/verify"))
        .header("x-request-id", rid)
        .header("user-agent", "reqlog-test/1.0")
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], rid);
    let (status, body) = json(resp).await;
    assert_eq!(status, 200, "{body}");
    body["code"].as_str().unwrap().to_owned()
}

/// GET forward-auth with `key` as the bearer credential; the status.
async fn forward(s: &TestServer, key: &str, rid: &str) -> u16 {
    s.http
        .get(s.url("/api/v1/forward-auth"))
        .header("x-request-id", rid)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get_rid(s: &TestServer, path: &str, token: &str, rid: &str) -> u16 {
    s.http
        .get(s.url(path))
        .header("x-request-id", rid)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn verify_forward_and_management_calls_are_logged(backend: Backend) {
    let Some(t) = T::new(backend).await else {
        return;
    };
    let s = &t.s;
    assert_eq!(verify(s, &t.key, "rid-verify").await, "VALID");
    assert_eq!(
        verify(s, "kr_nosuchkey0000000000000000000000000000", "rid-unknown").await,
        "NOT_FOUND"
    );
    assert_eq!(forward(s, &t.key, "rid-forward").await, 200);
    assert_eq!(forward(s, "kr_wrong", "rid-forward-bad").await, 401);
    let keys_path = format!("/api/v1/w/{}/keys/{}", t.ws, t.key_id);
    assert_eq!(get_rid(s, &keys_path, &t.owner, "rid-manage").await, 200);
    // Not the API: not logged.
    for path in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        assert_eq!(
            get_rid(s, path, &t.owner, "rid-system").await,
            200,
            "{path}"
        );
    }
    let unmatched = format!("/api/v1/w/{}/nothing/{}", t.ws, t.key);
    assert_eq!(get_rid(s, &unmatched, &t.owner, "rid-unmatched").await, 404);

    let key_principal = json!({"type": "key", "id": t.key_id});
    let r = t.row("rid-verify").await;
    assert_eq!(r["method"], "POST", "{r}");
    assert_eq!(r["route"], "/api/v1/keys/verify", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["principal"], key_principal, "{r}");
    assert_eq!(r["workspace_id"], t.ws.as_str(), "{r}");
    assert_eq!(r["ip"], "127.0.0.1", "{r}");
    assert_eq!(r["user_agent"], "reqlog-test/1.0", "{r}");
    assert!(r["latency_us"].as_i64().unwrap() >= 0, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("log_"), "{r}");
    assert!(r["at"].as_str().unwrap().ends_with('Z'), "{r}");

    let r = t.row("rid-unknown").await;
    assert_eq!(
        (&r["status"], &r["principal"]),
        (&json!(200), &Value::Null),
        "{r}"
    );
    assert_eq!(r["workspace_id"], Value::Null, "{r}");

    let r = t.row("rid-forward").await;
    assert_eq!(r["method"], "GET", "{r}");
    assert_eq!(r["route"], "/api/v1/forward-auth", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["principal"], key_principal, "{r}");
    assert_eq!(r["workspace_id"], t.ws.as_str(), "{r}");
    let r = t.row("rid-forward-bad").await;
    assert_eq!(
        (&r["status"], &r["principal"]),
        (&json!(401), &Value::Null),
        "{r}"
    );

    let r = t.row("rid-manage").await;
    assert_eq!(r["route"], "/api/v1/w/{workspace_id}/keys/{key_id}", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["principal"]["type"], "user", "{r}");
    assert!(
        r["principal"]["id"].as_str().unwrap().starts_with("usr_"),
        "{r}"
    );
    assert_eq!(r["workspace_id"], t.ws.as_str(), "{r}");

    // Everything the log holds now, every column: no secret, no raw path.
    let (_, all) = t.admin("?limit=200").await;
    let rows = all["data"].as_array().unwrap();
    let text = all.to_string();
    for secret in [&t.key, &t.owner, &t.root] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in the log: {text}"
        );
    }
    assert!(
        !text.contains(&t.key_id.replace("key_", "/keys/key_")),
        "{text}"
    );
    for r in rows {
        assert_ne!(r["request_id"], "rid-system", "{r}");
        assert_ne!(r["request_id"], "rid-unmatched", "{r}");
        assert!(r["route"].as_str().unwrap().starts_with("/api/v1/"), "{r}");
    }
    // The logins and key creation of the setup are there, with no password.
    assert!(
        rows.iter().any(|r| r["route"] == "/api/v1/auth/login"),
        "{text}"
    );
    assert!(!text.contains(common::PASSWORD), "{text}");
    t.s.stop().await;
}

#[tokio::test]
async fn sqlite_verify_forward_and_management_calls_are_logged() {
    verify_forward_and_management_calls_are_logged(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_verify_forward_and_management_calls_are_logged() {
    verify_forward_and_management_calls_are_logged(Backend::Postgres).await;
}

#[tokio::test]
async fn filters_and_pages() {
    let t = T::new(Backend::Sqlite).await.unwrap();
    let s = &t.s;
    let (other_key, other_id) = make_key(s, &t.owner, &t.ws, &[]).await;
    for i in 0..5 {
        assert_eq!(forward(s, &t.key, &format!("rid-a{i}")).await, 200);
    }
    for i in 0..3 {
        assert_eq!(forward(s, &other_key, &format!("rid-b{i}")).await, 200);
    }
    assert_eq!(forward(s, "kr_wrong", "rid-bad").await, 401);
    t.row("rid-bad").await;
    t.row("rid-b2").await;

    // ?principal=, through pages of 2: newest first, each row once.
    let mut seen = Vec::new();
    let mut query = format!("?principal={}&limit=2", t.key_id);
    loop {
        let (status, page) = t.admin(&query).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|r| r["request_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?principal={}&limit=2&cursor={c}", t.key_id),
            None => break,
        }
    }
    // The key's forward-auths, and the key's own creation (made by the owner) is not its.
    assert_eq!(seen, ["rid-a4", "rid-a3", "rid-a2", "rid-a1", "rid-a0"]);

    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, b) = t.admin(&format!("?principal={other_id}")).await;
    assert_eq!(ids(&b), ["rid-b2", "rid-b1", "rid-b0"]);
    let (_, b) = t.admin("?status=401").await;
    assert_eq!(ids(&b), ["rid-bad"]);
    let (_, b) = t.admin("?status=4xx").await;
    assert_eq!(ids(&b), ["rid-bad"]);
    let (_, b) = t.admin("?status=503").await;
    assert!(ids(&b).is_empty());
    let (_, b) = t
        .admin(&format!(
            "?workspace_id={}&status=2xx&principal={other_id}",
            t.ws
        ))
        .await;
    assert_eq!(ids(&b), ["rid-b2", "rid-b1", "rid-b0"]);
    let (_, b) = t.admin("?workspace_id=ws_none").await;
    assert!(ids(&b).is_empty());

    // since / until against the server's clock: everything so far is before `later` (within
    // the access token's 15 minutes).
    t.s.clock.advance_secs(600);
    let later = keyrail_core::Timestamp::now().plus_secs(300).to_string();
    assert_eq!(forward(s, &t.key, "rid-late").await, 200);
    t.row("rid-late").await;
    let (_, b) = t
        .admin(&format!("?since={later}&principal={}", t.key_id))
        .await;
    assert_eq!(ids(&b), ["rid-late"]);
    let (_, b) = t
        .admin(&format!("?until={later}&principal={}", t.key_id))
        .await;
    assert_eq!(ids(&b).len(), 5);

    // Bad filters: 400 naming the field.
    for (query, field) in [
        ("?status=abc", "status"),
        ("?status=600", "status"),
        ("?since=yesterday", "since"),
        ("?until=2024-13-01T00:00:00Z", "until"),
        ("?limit=0", "limit"),
        ("?cursor=aud_x", "cursor"),
        ("?cursor=log_x", "cursor"),
        ("?principal=", "principal"),
        ("?workspace_id=", "workspace_id"),
    ] {
        let (status, body) = t.admin(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "invalid_request", "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }
    let (status, body) =
        t.s.call(
            "GET",
            &format!("/api/v1/w/{}/logs?status=2x", t.ws),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    t.s.stop().await;
}

#[tokio::test]
async fn a_workspace_sees_only_its_own_requests_and_the_admin_listing_is_for_superusers() {
    let t = T::new(Backend::Sqlite).await.unwrap();
    let s = &t.s;
    let (owner_b, ws_b) = s.owner_with_workspace("b@example.com").await;
    let (key_b, key_b_id) = make_key(s, &owner_b, &ws_b, &[]).await;
    assert_eq!(verify(s, &t.key, "rid-a").await, "VALID");
    assert_eq!(verify(s, &key_b, "rid-b").await, "VALID");
    let b_path = format!("/api/v1/w/{ws_b}/keys");
    assert_eq!(get_rid(s, &b_path, &owner_b, "rid-b-manage").await, 200);
    // A's owner knocking on B's door: 404, and not in B's log.
    assert_eq!(get_rid(s, &b_path, &t.owner, "rid-a-knocks").await, 404);
    t.row("rid-a-knocks").await;
    t.row("rid-b").await;

    let list = |token: String, ws: String| {
        let s = &t.s;
        async move {
            let (status, body) = s
                .call(
                    "GET",
                    &format!("/api/v1/w/{ws}/logs?limit=200"),
                    &token,
                    None,
                )
                .await;
            (status, body)
        }
    };
    let (status, a) = list(t.owner.clone(), t.ws.clone()).await;
    assert_eq!(status, 200, "{a}");
    let a_rows = a["data"].as_array().unwrap();
    assert!(a_rows.iter().any(|r| r["request_id"] == "rid-a"), "{a}");
    assert!(
        a_rows.iter().all(|r| r["workspace_id"] == t.ws.as_str()),
        "{a}"
    );
    assert!(!a.to_string().contains(&key_b_id), "{a}");

    let (status, b) = list(owner_b.clone(), ws_b.clone()).await;
    assert_eq!(status, 200, "{b}");
    let b_rows = b["data"].as_array().unwrap();
    let b_ids: Vec<&str> = b_rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        b_ids.contains(&"rid-b") && b_ids.contains(&"rid-b-manage"),
        "{b}"
    );
    assert!(
        !b_ids.contains(&"rid-a") && !b_ids.contains(&"rid-a-knocks"),
        "{b}"
    );
    assert!(
        b_rows.iter().all(|r| r["workspace_id"] == ws_b.as_str()),
        "{b}"
    );

    // Not a member: 404; a key with audit:read reads its own workspace's log.
    let (status, _) = list(t.owner.clone(), ws_b.clone()).await;
    assert_eq!(status, 404);
    let (status, own) = list(t.key.clone(), t.ws.clone()).await;
    assert_eq!(status, 200, "{own}");
    let (status, body) = list(key_b.clone(), ws_b.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "insufficient_scope", "{body}");

    // The platform listing: superusers only.
    for token in [&t.owner, &owner_b, &t.key] {
        let (status, body) = s.call("GET", "/api/v1/admin/logs", token, None).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "insufficient_scope", "{body}");
    }
    let (status, all) = t.admin("?limit=200").await;
    assert_eq!(status, 200);
    let all = all.to_string();
    assert!(all.contains("rid-a") && all.contains("rid-b"), "{all}");
    t.s.stop().await;
}

/// Every row of the server's SQLite database's request log, after the server stopped (which
/// writes what was queued).
async fn rows_after_stop(mut s: TestServer) -> Vec<keyrail_core::request_log::RequestLogRow> {
    s.server.take().unwrap().shutdown().await.unwrap();
    let store = keyrail_store::open("", &s.dir.path().join("data"))
        .await
        .unwrap();
    let rows = store
        .list_request_logs(&Default::default(), &keyrail_core::model::Page::first(200))
        .await
        .unwrap();
    store.close().await;
    rows
}

#[tokio::test]
async fn stopping_writes_what_is_queued_and_api_logs_false_records_nothing() {
    for on in [true, false] {
        let s = TestServer::start_with(Backend::Sqlite, |c| c.api_logs = on, None)
            .await
            .unwrap();
        let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
        let (key, _) = make_key(&s, &owner, &ws, &[]).await;
        assert_eq!(verify(&s, &key, "rid-1").await, "VALID");
        assert_eq!(forward(&s, &key, "rid-2").await, 200);
        // No polling: stopping the server writes the queue out.
        let rows = rows_after_stop(s).await;
        let rids: Vec<&str> = rows.iter().map(|r| r.entry.request_id.as_str()).collect();
        if on {
            assert!(rids.starts_with(&["rid-2", "rid-1"]), "{rids:?}");
            // signup, login, workspace, key, verify, forward-auth
            assert_eq!(rows.len(), 6, "{rids:?}");
        } else {
            assert!(rows.is_empty(), "{rids:?}");
        }
    }
}

#[tokio::test]
async fn metrics_count_dropped_records() {
    let s = TestServer::start().await;
    let text = s.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("# TYPE keyrail_api_log_dropped_total counter"),
        "{text}"
    );
    assert!(
        text.contains("\nkeyrail_api_log_dropped_total 0\n"),
        "{text}"
    );
    s.stop().await;
}

/// An in-memory database lives only in the server's own pool: the log is written there.
#[tokio::test]
async fn an_in_memory_database_gets_its_log_too() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.database_url = "sqlite::memory:".into(),
        None,
    )
    .await
    .unwrap();
    let t = T::on(s).await;
    assert_eq!(verify(&t.s, &t.key, "rid-mem").await, "VALID");
    let r = t.row("rid-mem").await;
    assert_eq!(r["principal"]["id"], t.key_id.as_str(), "{r}");
    t.s.stop().await;
}

/// The cleanup deletes rows older than `api_logs_days`, and only those.
#[tokio::test]
async fn rows_go_after_api_logs_days() {
    let s = TestServer::start_with(Backend::Sqlite, |c| c.api_logs_days = 7, None)
        .await
        .unwrap();
    let t = T::on(s).await;
    assert_eq!(verify(&t.s, &t.key, "rid-old").await, "VALID");
    t.row("rid-old").await;
    let state = &t.s.server.as_ref().unwrap().state;
    let all = |state: &keyrail_server::AppState| {
        let store = state.store.clone();
        async move {
            store
                .list_request_logs(&Default::default(), &keyrail_core::model::Page::first(200))
                .await
                .unwrap()
        }
    };
    let before = all(state).await.len();
    // Six days on: nothing is old enough.
    t.s.clock.advance_secs(6 * 86_400);
    let done = keyrail_server::background::cleanup(state).await.unwrap();
    assert_eq!(done.request_logs, 0);
    // A day and a bit later, every row of the first day goes; a new one stays.
    t.s.clock.advance_secs(86_400 + 60);
    assert_eq!(verify(&t.s, &t.key, "rid-new").await, "VALID");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all(state)
        .await
        .iter()
        .any(|r| r.entry.request_id == "rid-new")
    {
        assert!(Instant::now() < deadline, "rid-new never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = keyrail_server::background::cleanup(state).await.unwrap();
    // (The last poll of `row` may have been written after `before` was counted.)
    assert!(done.request_logs as usize >= before, "{done:?}");
    let left = all(state).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].entry.request_id, "rid-new");
    t.s.stop().await;
}

/// Both listings are in the OpenAPI document.
#[tokio::test]
async fn the_listings_are_documented() {
    let s = TestServer::start().await;
    let (status, doc) = json(s.get("/api/v1/openapi.json").await).await;
    assert_eq!(status, 200);
    for path in ["/api/v1/admin/logs", "/api/v1/w/{workspace_id}/logs"] {
        let op = &doc["paths"][path]["get"];
        assert!(op.is_object(), "{path} missing");
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for p in ["status", "principal", "since", "until", "limit", "cursor"] {
            assert!(params.contains(&p), "{path}: {params:?}");
        }
    }
    s.stop().await;
}
